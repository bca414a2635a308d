//! hello/welcome, session tokens, handles, subprotocols, heartbeats, shutdown.

use crate::common::*;
use kindred_protocol::{ClientMessage, ErrorCode, NoticeKind, Role, ServerMessage};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test]
async fn an_anonymous_member_gets_a_friendly_handle_and_a_token_that_brings_it_back() {
    let server = TestServer::start().await;
    let (mut a, welcome) = server.member(None).await;
    let ServerMessage::Welcome { account, handle, role, heartbeat_s, limits, .. } = &welcome else { unreachable!() };
    assert_eq!(*role, Role::Member);
    assert!(handle.split(' ').count() == 3, "a generated handle like 'Quiet Heron 42': {handle}");
    assert_eq!(limits.max_text_chars, 2000);
    assert_eq!(limits.messages_per_10s, 10);
    assert!(*heartbeat_s > 0);
    let joined = a.join("grief").await;
    let (me, ..) = joined_parts(&joined);
    let member_id = me.member_id.clone();
    a.close().await;

    let mut again = server.client().await;
    let back = again.hello(Some(&token_of(&welcome)), None).await;
    let ServerMessage::Welcome { account: account2, handle: handle2, .. } = &back else { unreachable!() };
    assert_eq!(account2, account, "same account");
    assert_eq!(handle2, handle, "same handle");
    let joined = again.join("grief").await;
    assert_eq!(joined_parts(&joined).0.member_id, member_id, "same member id in the room");
}

#[tokio::test]
async fn member_ids_differ_between_rooms_so_presence_cannot_be_linked() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(None).await;
    let grief = a.join("grief").await;
    let anxiety = a.join("anxiety").await;
    assert_ne!(joined_parts(&grief).0.member_id, joined_parts(&anxiety).0.member_id);
}

#[tokio::test]
async fn generated_handles_differ_by_room_and_stay_with_the_account_while_a_chosen_one_is_used_everywhere() {
    let server = TestServer::start().await;
    let rooms = ["grief", "anxiety", "new-in-town"];
    let (mut a, welcome) = server.member(None).await;
    let mut handles = Vec::new();
    for room in rooms {
        let joined = a.join(room).await;
        handles.push(joined_parts(&joined).0.handle.clone());
    }
    let ServerMessage::Welcome { handle: outside, .. } = &welcome else { unreachable!() };
    assert!(handles.iter().all(|h| h.split(' ').count() == 3), "generated handles: {handles:?}");
    // 36,000 generated names: three rooms sharing one (or the welcome's) by chance is one in a billion.
    assert!(!(handles[0] == handles[1] && handles[1] == handles[2]), "one name in every room: {handles:?}");
    assert!(handles.iter().filter(|h| *h == outside).count() < 3, "the welcome's name is not the rooms' name: {handles:?}");
    a.close().await;

    // The same account gets the same generated handle in each room again.
    let mut again = server.client().await;
    again.hello(Some(&token_of(&welcome)), None).await;
    for (room, handle) in rooms.iter().zip(&handles) {
        let joined = again.join(room).await;
        assert_eq!(&joined_parts(&joined).0.handle, handle, "{room}");
    }

    // A chosen handle is the same in every room, and after a reconnect.
    let (mut b, welcome) = server.member(Some("River Song")).await;
    for room in rooms {
        assert_eq!(joined_parts(&b.join(room).await).0.handle, "River Song");
    }
    b.close().await;
    let mut again = server.client().await;
    again.hello(Some(&token_of(&welcome)), None).await;
    assert_eq!(joined_parts(&again.join("grief").await).0.handle, "River Song");
}

#[tokio::test]
async fn wished_handles_are_validated() {
    let server = TestServer::start().await;
    let (_, welcome) = server.member(Some("  River   Song ")).await;
    assert!(matches!(&welcome, ServerMessage::Welcome { handle, .. } if handle == "River Song"));

    for bad in ["sam@example.com", "call me 07700 900123", "call me ٠٧٧٠٠٩٠٠١٢٣", "x", "see www.example.com", "<script>"] {
        let mut c = server.client().await;
        c.send(&ClientMessage::Hello { id: Some(1.into()), token: None, handle: Some(bad.into()), locale: None }).await;
        let e = c.expect_error(ErrorCode::InvalidHandle).await;
        assert_eq!(e.id, Some(1.into()));
        // The connection stays open for another hello.
        c.hello(None, Some("Brave Finch")).await;
    }
}

#[tokio::test]
async fn forged_and_expired_tokens_are_refused_and_the_connection_may_start_fresh() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.send(&ClientMessage::Hello { id: Some(1.into()), token: Some("not.a.token".into()), handle: None, locale: None }).await;
    c.expect_error(ErrorCode::Unauthorized).await;
    // A token signed by someone else's secret.
    let other = kindred_server::auth::Auth::new(b"someone-elses-secret-someone-else", "kindred", "kindred");
    let forged = other.staff_token(Role::Admin, "Mallory", None, Duration::from_secs(600));
    c.send(&ClientMessage::Hello { id: Some(2.into()), token: Some(forged), handle: None, locale: None }).await;
    c.expect_error(ErrorCode::Unauthorized).await;
    // An expired token signed with the right secret.
    let expired = server.app.auth.staff_token(Role::Facilitator, "Sam", None, Duration::from_secs(0));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut validation_leeway_passed = expired.clone();
    validation_leeway_passed.push('x'); // a broken signature, whatever the leeway
    c.send(&ClientMessage::Hello { id: Some(3.into()), token: Some(validation_leeway_passed), handle: None, locale: None }).await;
    c.expect_error(ErrorCode::Unauthorized).await;
    c.hello(None, None).await;
}

#[tokio::test]
async fn a_token_from_kindred_token_signs_in_a_facilitator() {
    let server = TestServer::start().await;
    let token = server.app.auth.staff_token(Role::Facilitator, "Sam Rivers", Some(vec!["grief".into()]), Duration::from_secs(3600));
    let mut c = server.client().await;
    let welcome = c.hello(Some(&token), None).await;
    let ServerMessage::Welcome { role, handle, .. } = welcome else { unreachable!() };
    assert_eq!(role, Role::Facilitator);
    assert_eq!(handle, "Sam Rivers");
    let joined = c.join("grief").await;
    assert_eq!(joined_parts(&joined).0.role, Role::Facilitator);
}

#[tokio::test]
async fn the_first_frame_must_be_hello() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.send(&ClientMessage::ListRooms { id: Some(5.into()) }).await;
    let e = c.expect_error(ErrorCode::BadRequest).await;
    assert_eq!(e.id, Some(5.into()));
    assert_eq!(c.closed(WAIT).await, Closed::Code(1008));
}

#[tokio::test]
async fn a_connection_that_never_says_hello_is_closed() {
    let server = TestServer::with(|c| c.limits.hello_timeout_s = 1).await;
    let mut c = server.client().await;
    assert_eq!(c.closed(WAIT).await, Closed::Code(1008));
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_two_heartbeats() {
    let server = TestServer::with(|c| c.limits.heartbeat_s = 1).await;
    let (mut c, _) = server.member(None).await;
    // Not reading means not answering the server's pings.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // 1001 tells the client to reconnect and resume.
    assert_eq!(c.closed(WAIT).await, Closed::Code(1001));
    assert!(kindred_protocol::CloseCode::GoingAway.should_reconnect());
}

#[tokio::test]
async fn a_connection_that_answers_pings_stays_open() {
    let server = TestServer::with(|c| c.limits.heartbeat_s = 1).await;
    let (mut c, _) = server.member(None).await;
    // Reading for three heartbeats answers the pings (tungstenite replies to them).
    assert!(c.try_recv(Duration::from_millis(3500)).await.is_none());
    c.assert_alive().await;
}

#[tokio::test]
async fn only_kindred_v1_or_no_subprotocol_is_accepted() {
    let server = TestServer::start().await;
    let mut request = server.url().into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "kindred.v9".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
            let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("unsupported_version"), "{body}");
        }
        other => panic!("expected a refused handshake, got {other:?}"),
    }
    // No subprotocol at all is served v1.
    let (ws, _) = tokio_tungstenite::connect_async(server.url()).await.unwrap();
    let mut c = TestClient::from_ws(ws);
    c.hello(None, None).await;
}

#[tokio::test]
async fn graceful_shutdown_tells_clients_to_reconnect() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(None).await;
    a.join("grief").await;
    server.shutdown().await;
    let notice = a.expect("shutdown notice", |m| matches!(m, ServerMessage::Notice(_))).await;
    assert!(matches!(notice, ServerMessage::Notice(n) if n.kind == NoticeKind::Shutdown));
    assert_eq!(a.closed(WAIT).await, Closed::Code(1012));
}

#[tokio::test]
async fn too_many_connections_from_one_address_are_refused() {
    let server = TestServer::with(|c| c.limits.max_connections_per_ip = 2).await;
    let (_a, _) = server.member(None).await;
    let (b, _) = server.member(None).await;
    match tokio_tungstenite::connect_async(server.url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    // A freed slot can be used again.
    b.close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if tokio_tungstenite::connect_async(server.url()).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let server = TestServer::start().await;
    for (path, body) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let got = http_get(server.addr, path).await;
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        assert!(got.ends_with(body), "{got}");
    }
}

pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out)).await.unwrap().unwrap();
    out
}

#[tokio::test]
async fn metrics_count_messages_deliveries_and_errors() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(None).await;
    let (mut b, _) = server.member(None).await;
    a.join("grief").await;
    b.join("grief").await;
    a.say("grief", "hello").await;
    b.messages(1).await;
    a.send(&ClientMessage::Leave { id: None, room: "anxiety".into() }).await;
    a.expect_error(ErrorCode::NotMember).await;
    let page = http_get(server.addr, "/metrics").await;
    assert!(page.contains("text/plain; version=0.0.4"), "{page}");
    let value = |name: &str| -> u64 {
        let line = page.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name} in {page}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("kindred_messages_in_total"), 1);
    // b's presence to a, then the message to both.
    assert_eq!(value("kindred_deliveries_total"), 3);
    assert_eq!(value("kindred_errors_total{code=\"not_member\"}"), 1);
    assert_eq!(value("kindred_connections"), 2);
    assert_eq!(value("kindred_room_members"), 2);
    // On the history log before `sent`: one append, in one commit.
    assert_eq!(value("kindred_history_appends_total"), 1);
    assert_eq!(value("kindred_history_commits_total"), 1);
    assert_eq!(value("kindred_history_wait_seconds_count"), 1);
    assert_eq!(value("kindred_history_commit_seconds_count"), 1);
}

#[tokio::test]
async fn handles_that_hide_or_pass_for_staff_are_refused_and_look_alikes_of_a_facilitator_are_numbered() {
    let server = TestServer::start().await;
    for bad in ["\u{3164}\u{3164}\u{3164}", "\u{FFA0}\u{FFA0}", "\u{115F}\u{115F}", "Facilitator", "ADMIN", "System", "Ｍｏｄｅｒａｔｏｒ", "Fаcilitator"]
    {
        let mut c = server.client().await;
        c.send(&ClientMessage::Hello { id: Some(1.into()), token: None, handle: Some(bad.into()), locale: None }).await;
        let e = c.expect_error(ErrorCode::BadRequest).await;
        assert_eq!(e.id, Some(1.into()), "{bad:?}");
        c.hello(None, Some("Brave Finch")).await;
    }
    // Facilitator Sam is in the room: "Sаm" (Cyrillic а) and "Ｓａｍ" (fullwidth) cannot stand beside him as "Sam".
    let token = server.app.auth.staff_token(kindred_protocol::Role::Facilitator, "Sam", None, std::time::Duration::from_secs(600));
    let mut f = server.client().await;
    f.hello(Some(&token), None).await;
    f.join("grief").await;
    for lookalike in ["Sаm", "Ｓａｍ"] {
        let (mut m, _) = server.member(Some(lookalike)).await;
        let joined = m.join("grief").await;
        let handle = &joined_parts(&joined).0.handle;
        assert_ne!(crate::common::look(handle), crate::common::look("Sam"), "{lookalike:?} joined as {handle:?}");
    }
}
