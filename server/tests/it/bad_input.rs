//! Bad input gets the contract's error (or close) and never disturbs anyone else.

use crate::common::*;
use kindred_protocol::{ClientMessage, ErrorCode, ServerMessage};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// A bystander chatting in a room while a test misbehaves beside it.
async fn bystanders(server: &TestServer) -> (TestClient, TestClient) {
    let (a, _) = server.member_in("anxiety", None).await;
    let (b, _) = server.member_in("anxiety", None).await;
    (a, b)
}

async fn still_chatting(a: &mut TestClient, b: &mut TestClient, text: &str) {
    a.say("anxiety", text).await;
    let got = b.messages(1).await.remove(0);
    assert_eq!(got.text, text);
}

#[tokio::test]
async fn frames_that_are_not_json_break_the_protocol() {
    let server = TestServer::start().await;
    let (mut a, mut b) = bystanders(&server).await;
    for junk in ["not json", "{\"type\":", "[1,2,3]", "\"hello\"", ""] {
        let (mut c, _) = server.member(None).await;
        c.send_raw(Message::text(junk)).await;
        c.expect_error(ErrorCode::BadRequest).await;
        assert_eq!(c.closed(WAIT).await, Closed::Code(1008), "{junk:?}");
    }
    still_chatting(&mut a, &mut b, "still here").await;
}

#[tokio::test]
async fn binary_frames_are_a_protocol_error() {
    let server = TestServer::start().await;
    let (mut a, mut b) = bystanders(&server).await;
    let (mut c, _) = server.member(None).await;
    c.send_raw(Message::binary(vec![0u8, 159, 146, 150])).await;
    c.expect_error(ErrorCode::BadRequest).await;
    assert_eq!(c.closed(WAIT).await, Closed::Code(1008));
    still_chatting(&mut a, &mut b, "after binary").await;
}

#[tokio::test]
async fn unknown_types_and_bad_fields_get_bad_request_and_the_connection_stays() {
    let server = TestServer::start().await;
    let (mut a, mut b) = bystanders(&server).await;
    let (mut c, _) = server.member(None).await;
    let cases = [
        r#"{"type":"dance","id":"d1"}"#,
        r#"{"id":"d2"}"#,
        r#"{"type":"join","id":"d3"}"#,
        r#"{"type":"join","id":"d4","room":42}"#,
        r#"{"type":"join","id":"d5","room":"grief","accept_rules":-1}"#,
        r#"{"type":"join","id":"d6","room":"grief","accept_rules":99999999999999999999}"#,
        r#"{"type":"join","id":"d7","room":"grief","since":{"epoch":"e","seq":-5}}"#,
        r#"{"type":"send","id":"d8","room":"anxiety","text":null}"#,
        r#"{"type":"send","id":"d9","room":"anxiety","text":"x","staff":"yes"}"#,
    ];
    for (i, case) in cases.iter().enumerate() {
        c.send_raw(Message::text(*case)).await;
        let e = c.expect_error(ErrorCode::BadRequest).await;
        assert_eq!(e.id, Some(format!("d{}", i + 1).as_str().into()), "{case}: {e:?}");
    }
    c.assert_alive().await;
    still_chatting(&mut a, &mut b, "after bad fields").await;
}

#[tokio::test]
async fn absurd_values_are_refused_with_the_right_code() {
    let server = TestServer::start().await;
    let (mut c, _) = server.member(None).await;
    c.join("anxiety").await;
    // A request id longer than 64 characters.
    c.send(&ClientMessage::Ping { id: Some("x".repeat(65).as_str().into()) }).await;
    c.expect_error(ErrorCode::BadRequest).await;
    // Text over the limit, and empty text.
    for (text, code) in [("y".repeat(2001), ErrorCode::TooLarge), ("   ".into(), ErrorCode::BadRequest)] {
        c.send(&ClientMessage::Send { id: Some(1.into()), room: "anxiety".into(), text, reply_to: None, cw: None, staff: false }).await;
        c.expect_error(code).await;
    }
    // Exactly at the limit is fine, counted in characters, not bytes.
    c.say("anxiety", &"é".repeat(2000)).await;
    // A content warning that is an essay.
    c.send(&ClientMessage::Send { id: Some(2.into()), room: "anxiety".into(), text: "x".into(), reply_to: None, cw: Some("w".repeat(500)), staff: false })
        .await;
    c.expect_error(ErrorCode::BadRequest).await;
    // Members cannot post on the staff channel.
    c.send(&ClientMessage::Send { id: Some(3.into()), room: "anxiety".into(), text: "x".into(), reply_to: None, cw: None, staff: true }).await;
    c.expect_error(ErrorCode::Forbidden).await;
    c.assert_alive().await;
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009_and_others_carry_on() {
    let server = TestServer::start().await;
    let (mut a, mut b) = bystanders(&server).await;
    let (mut c, _) = server.member(None).await;
    let huge = format!(r#"{{"type":"ping","pad":"{}"}}"#, "z".repeat(1024 * 1024));
    c.send_raw(Message::text(huge)).await;
    assert_eq!(c.closed(WAIT).await, Closed::Code(1009));
    still_chatting(&mut a, &mut b, "after a huge frame").await;
}

#[tokio::test]
async fn a_flood_is_rate_limited_then_closed() {
    let server = TestServer::with(|c| c.limits.flood_close_after = 5).await;
    let (mut a, mut b) = bystanders(&server).await;
    let (mut c, _) = server.member(None).await;
    c.join("anxiety").await;
    for i in 0..10 {
        c.say("anxiety", &format!("ok {i}")).await;
    }
    c.send(&ClientMessage::Send { id: Some(99.into()), room: "anxiety".into(), text: "one too many".into(), reply_to: None, cw: None, staff: false }).await;
    let e = c.expect_error(ErrorCode::RateLimited).await;
    assert_eq!(e.id, Some(99.into()));
    let wait = e.retry_after_ms.expect("retry_after_ms");
    assert!((1..=1001).contains(&wait), "{wait}");
    // Keep flooding: closed with 4429.
    for _ in 0..10 {
        c.send(&ClientMessage::Send { id: None, room: "anxiety".into(), text: "flood".into(), reply_to: None, cw: None, staff: false }).await;
    }
    assert_eq!(c.closed(WAIT).await, Closed::Code(4429));
    // The bystanders saw the ten good messages and nothing of the flood.
    let texts: Vec<String> = b.messages(10).await.into_iter().map(|m| m.text).collect();
    assert!(texts.iter().all(|t| t.starts_with("ok ")));
    assert!(b.try_recv(Duration::from_millis(200)).await.is_none_or(|m| !matches!(m, ServerMessage::Message(_))));
    still_chatting(&mut a, &mut b, "after the flood").await;
}

/// Write `frames` in one go (one flush), as a hostile client would.
async fn burst(c: &mut TestClient, frames: impl IntoIterator<Item = ClientMessage>) {
    use futures_util::SinkExt;
    for f in frames {
        c.ws.feed(Message::text(serde_json::to_string(&f).unwrap())).await.unwrap();
    }
    c.ws.flush().await.unwrap();
}

/// Frames `c` receives until it has been quiet for a moment.
async fn drain(c: &mut TestClient) -> Vec<ServerMessage> {
    let mut got = Vec::new();
    while let Some(m) = c.try_recv(Duration::from_millis(500)).await {
        got.push(m);
    }
    got
}

#[tokio::test]
async fn a_hand_flood_closes_the_flooder_and_nobody_else() {
    let server = TestServer::start().await;
    let mut f = server.staff(kindred_protocol::Role::Facilitator, None, "mens-circle").await;
    let (mut a, _) = server.member(Some("Willow")).await;
    a.join("mens-circle").await;
    let (mut c, _) = server.member(Some("Flood")).await;
    c.join("mens-circle").await;
    drain(&mut f).await;
    drain(&mut a).await;
    let room = kindred_protocol::RoomId::from("mens-circle");
    burst(
        &mut c,
        (0..4000).flat_map(|_| [ClientMessage::RaiseHand { id: None, room: room.clone() }, ClientMessage::LowerHand { id: None, room: room.clone() }]),
    )
    .await;
    assert_eq!(c.closed(WAIT).await, Closed::Code(4429));
    let seen = drain(&mut a).await;
    let updates = seen.iter().filter(|m| matches!(m, ServerMessage::MemberUpdate { .. })).count();
    assert!(updates <= 31, "the room was told {updates} hand changes");
    let hands = drain(&mut f).await.iter().filter(|m| matches!(m, ServerMessage::Hands { .. })).count();
    assert!(hands <= 31, "the facilitator got {hands} queues");
    a.say("mens-circle", "still here").await;
    f.expect("the room goes on", |m| matches!(m, ServerMessage::Message(msg) if msg.text == "still here")).await;
}

#[tokio::test]
async fn a_join_and_leave_flood_is_throttled() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(Some("Willow")).await;
    a.join("veterans").await;
    let (mut c, _) = server.member(Some("Flood")).await;
    c.join("veterans").await;
    drain(&mut a).await;
    let room = kindred_protocol::RoomId::from("veterans");
    burst(
        &mut c,
        (0..2000).flat_map(|_| {
            [ClientMessage::Leave { id: None, room: room.clone() }, ClientMessage::Join { id: None, room: room.clone(), accept_rules: Some(1), since: None }]
        }),
    )
    .await;
    assert_eq!(c.closed(WAIT).await, Closed::Code(4429));
    let presence = drain(&mut a).await.iter().filter(|m| matches!(m, ServerMessage::Presence { .. })).count();
    assert!(presence <= 32, "the room was told of {presence} comings and goings");
    a.assert_alive().await;
}

#[tokio::test]
async fn an_id_or_type_of_the_wrong_kind_is_a_bad_request_and_the_connection_stays() {
    let server = TestServer::start().await;
    let (mut c, _) = server.member(None).await;
    for id in ["1.5", "1.0", "1e3", "true", "{}", "[1]", "9223372036854775808", "null"] {
        c.send_raw(Message::text(format!(r#"{{"type":"ping","id":{id}}}"#))).await;
        let reply = c.recv().await;
        match (id, reply) {
            // A null id is no id: a ping without one is answered.
            ("null", ServerMessage::Pong { id: None }) => {}
            (_, ServerMessage::Error(e)) if id != "null" => {
                assert_eq!((e.code, e.id), (ErrorCode::BadRequest, None), "id {id}");
            }
            (_, other) => panic!("id {id}: {other:?}"),
        }
    }
    c.send_raw(Message::text(r#"{"type":5,"id":"t"}"#)).await;
    let e = c.expect_error(ErrorCode::BadRequest).await;
    assert_eq!(e.id, Some("t".into()));
    c.assert_alive().await;
    // An array is not an object, whatever it holds.
    c.send_raw(Message::text(r#"["ping"]"#)).await;
    c.expect_error(ErrorCode::BadRequest).await;
    assert_eq!(c.closed(WAIT).await, Closed::Code(1008));
}

/// The server does the WebSocket handshake itself (see `wire`): a request
/// to /ws that is not an upgrade gets a clear error, not a hang or a 500.
#[tokio::test]
async fn a_plain_request_to_the_websocket_path_is_refused_clearly() {
    let server = TestServer::start().await;
    let reply = crate::session::http_get(server.addr, "/ws").await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("\"code\":\"bad_request\"") && reply.contains("WebSocket"), "{reply}");
    // And the server goes on taking real WebSockets.
    let (mut a, _) = server.member(None).await;
    a.join("grief").await;
}

/// A `joined` far larger than a fragment (a long history of long messages)
/// goes out in fragments and arrives as one message, whole, in a room that
/// goes on after it.
#[tokio::test]
async fn a_large_reply_arrives_whole() {
    let server = TestServer::with(|c| c.limits.messages_per_10s = 1000).await;
    let (mut writer, _) = server.member(None).await;
    writer.join("grief").await;
    let text = "I keep thinking about the last thing I said to her. ".repeat(30);
    for _ in 0..40 {
        writer.say("grief", &text).await;
    }
    let (mut reader, _) = server.member(None).await;
    let joined = reader.join("grief").await;
    let (_, history, _, _, _) = joined_parts(&joined);
    assert_eq!(history.len(), 40);
    assert!(history.iter().all(|m| m.text == text), "every message whole");
    assert!(serde_json::to_string(&joined).unwrap().len() > 20 * 2048, "spans many fragments");
    writer.say("grief", "still here").await;
    reader.expect("the next message", |m| matches!(m, ServerMessage::Message(msg) if msg.text == "still here")).await;
}
