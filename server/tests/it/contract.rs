//! Where a client written from docs/protocol.md alone used to disagree with
//! the server (issue 14, protocol v1.1 section 5): each test failed before
//! its fix.

use crate::common::*;
use kindred_protocol::{ClientMessage, ErrorCode, ModerationAction as A, NoticeKind, RemovedReason, Role, ServerMessage};
use std::time::Duration;

async fn summary(c: &mut TestClient, room: &str) -> kindred_protocol::RoomSummary {
    c.send(&ClientMessage::ListRooms { id: Some(1.into()) }).await;
    match c.expect("rooms", |m| matches!(m, ServerMessage::Rooms { .. })).await {
        ServerMessage::Rooms { rooms, .. } => rooms.into_iter().find(|r| r.id.as_str() == room).expect("the room is listed"),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_locked_or_full_room_is_not_open_and_says_so() {
    let server = TestServer::with(|c| c.rooms.iter_mut().filter(|r| r.id.as_str() == "veterans").for_each(|r| r.capacity = 1)).await;
    let mut f = server.staff(Role::Facilitator, None, "grief").await;
    let (mut a, _) = server.member(None).await;
    let s = summary(&mut a, "grief").await;
    assert!(s.open && !s.locked);
    f.moderate("grief", A::Lock).await;
    let s = summary(&mut a, "grief").await;
    assert!(!s.open && s.locked, "{s:?}");
    let joined = f.join("grief").await;
    assert!(matches!(joined, ServerMessage::Joined { ref room, .. } if room.summary.locked && !room.summary.open));
    f.moderate("grief", A::Unlock).await;
    assert!(summary(&mut a, "grief").await.open);

    a.join("veterans").await;
    let (mut b, _) = server.member(None).await;
    let s = summary(&mut b, "veterans").await;
    assert!(!s.open && !s.locked, "a full room is not open: {s:?}");
}

#[tokio::test]
async fn welcome_states_the_room_and_content_warning_limits() {
    let server = TestServer::start().await;
    let (_, welcome) = server.member(None).await;
    let ServerMessage::Welcome { limits, .. } = welcome else { unreachable!() };
    assert_eq!(limits.max_rooms_per_connection, server.app.config.limits.max_rooms_per_connection as u32);
    assert_eq!(limits.max_cw_chars, server.app.config.limits.max_cw_chars);
    assert!(limits.max_rooms_per_connection > 0 && limits.max_cw_chars > 0);
}

#[tokio::test]
async fn a_removal_always_says_why_and_a_mute_gives_the_reason_alone() {
    let server = TestServer::start().await;
    let mut f = server.staff(Role::Facilitator, None, "grief").await;
    let (mut a, _) = server.member(Some("Willow")).await;
    let a_id = a.join_returning_id("grief").await;
    f.moderate("grief", A::Mute { member_id: a_id.clone(), duration_s: None, reason: Some("Let's give others a turn.".into()) }).await;
    let n = a.expect("warning", |m| matches!(m, ServerMessage::Notice(n) if n.kind == NoticeKind::Warning)).await;
    assert!(matches!(n, ServerMessage::Notice(n) if n.text == "Let's give others a turn."), "the reason, not a sentence around it");
    f.moderate("grief", A::Kick { member_id: a_id.clone(), reason: None }).await;
    let removed = a.expect("removed", |m| matches!(m, ServerMessage::Removed { .. })).await;
    assert!(matches!(removed, ServerMessage::Removed { reason: RemovedReason::Kicked, note: Some(ref n), .. } if !n.is_empty()), "{removed:?}");

    let (mut b, _) = server.member(Some("Cedar")).await;
    let b_id = b.join_returning_id("grief").await;
    f.moderate("grief", A::Ban { member_id: b_id, duration_s: None, reason: None, service: false }).await;
    let removed = b.expect("removed", |m| matches!(m, ServerMessage::Removed { .. })).await;
    assert!(matches!(removed, ServerMessage::Removed { reason: RemovedReason::Banned, note: Some(ref n), .. } if !n.is_empty()), "{removed:?}");
}

#[tokio::test]
async fn sending_to_an_unknown_room_is_not_found_and_to_one_not_joined_is_not_member() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(None).await;
    let send = |room: &str, id: i64| ClientMessage::Send { id: Some(id.into()), room: room.into(), text: "hi".into(), reply_to: None, cw: None, staff: false };
    a.send(&send("no-such-room", 1)).await;
    assert_eq!(a.expect_error(ErrorCode::NotFound).await.id, Some(1.into()));
    a.send(&send("grief", 2)).await;
    assert_eq!(a.expect_error(ErrorCode::NotMember).await.id, Some(2.into()));
}

#[tokio::test]
async fn an_unknown_moderation_action_is_named_as_such() {
    let server = TestServer::start().await;
    let mut f = server.staff(Role::Facilitator, None, "grief").await;
    f.send_raw(tokio_tungstenite::tungstenite::Message::text(r#"{"type":"moderate","id":3,"room":"grief","action":"explode"}"#)).await;
    let e = f.expect_error(ErrorCode::BadRequest).await;
    assert_eq!(e.id, Some(3.into()));
    assert!(e.message.contains("moderation action 'explode'"), "{}", e.message);
}

#[tokio::test]
async fn forget_me_closes_the_accounts_other_connections() {
    let server = TestServer::start().await;
    let (mut a, welcome) = server.member(Some("Willow")).await;
    a.join("grief").await;
    let mut tab = server.client().await;
    tab.hello(Some(&token_of(&welcome)), None).await;
    tab.join("grief").await;
    a.send(&ClientMessage::ForgetMe { id: Some(1.into()) }).await;
    a.expect("forgotten", |m| matches!(m, ServerMessage::Forgotten { .. })).await;
    assert_eq!(tab.closed(Duration::from_secs(5)).await, Closed::Code(4401), "the second tab cannot post after the erasure");
}

#[tokio::test]
async fn a_member_who_joined_and_left_without_posting_can_still_be_sanctioned() {
    let server = TestServer::start().await;
    let mut f = server.staff(Role::Facilitator, None, "grief").await;
    let (mut a, welcome) = server.member(Some("Willow")).await;
    let a_id = a.join_returning_id("grief").await;
    a.send(&ClientMessage::Leave { id: Some(1.into()), room: "grief".into() }).await;
    a.expect("left", |m| matches!(m, ServerMessage::Left { .. })).await;
    let ok = |m: &ServerMessage| matches!(m, ServerMessage::Moderated { .. });
    assert!(ok(&f.moderate("grief", A::Warn { member_id: a_id.clone(), reason: "Please be kind.".into() }).await));
    assert!(ok(&f.moderate("grief", A::Mute { member_id: a_id.clone(), duration_s: Some(60), reason: None }).await));
    assert!(ok(&f.moderate("grief", A::Kick { member_id: a_id.clone(), reason: None }).await), "a no-op for someone absent");
    assert!(ok(&f.moderate("grief", A::Ban { member_id: a_id.clone(), duration_s: None, reason: Some("spam".into()), service: false }).await));
    // Reconnecting does not evade the ban.
    let mut again = server.client().await;
    again.hello(Some(&token_of(&welcome)), None).await;
    again.send(&ClientMessage::Join { id: Some(2.into()), room: "grief".into(), accept_rules: Some(1), since: None }).await;
    again.expect_error(ErrorCode::Banned).await;
    assert!(ok(&f.moderate("grief", A::Unban { member_id: a_id.clone(), reason: None }).await));
    again.join("grief").await;
}

#[tokio::test]
async fn an_admin_lifts_a_service_ban_with_unban() {
    let server = TestServer::start().await;
    let mut admin = server.staff(Role::Admin, None, "grief").await;
    let (mut a, welcome) = server.member(Some("Willow")).await;
    let a_id = a.join_returning_id("grief").await;
    admin.moderate("grief", A::Ban { member_id: a_id.clone(), duration_s: None, reason: None, service: true }).await;
    assert_eq!(a.closed(Duration::from_secs(5)).await, Closed::Code(4403));
    let reply = admin.moderate("grief", A::Unban { member_id: a_id, reason: Some("appeal accepted".into()) }).await;
    assert!(matches!(reply, ServerMessage::Moderated { .. }), "{reply:?}");
    let mut back = server.client().await;
    back.hello(Some(&token_of(&welcome)), None).await;
    back.join("grief").await;
}

#[tokio::test]
async fn the_server_answers_a_clients_close_frame() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
    let server = TestServer::start().await;
    let (mut a, _) = server.member(None).await;
    a.join("grief").await;
    a.ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() }))).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(frame) = a.ws.next().await {
            match frame {
                Ok(Message::Close(frame)) => return Some(frame),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the server answers in time");
    assert!(answer.is_some(), "a close frame comes back, not a dropped connection");
}

#[tokio::test]
async fn reporting_the_same_message_again_files_nothing_new() {
    let server = TestServer::start().await;
    let mut f = server.staff(Role::Facilitator, None, "grief").await;
    let (mut a, _) = server.member(Some("Willow")).await;
    a.join("grief").await;
    let (mut b, _) = server.member(Some("Cedar")).await;
    b.join("grief").await;
    let (message_id, _) = a.say("grief", "something unkind").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        b.send(&ClientMessage::Report { id: Some(i.into()), room: "grief".into(), message_id: message_id.as_str().into(), reason: "unkind".into() }).await;
        match b.expect("reported", |m| matches!(m, ServerMessage::Reported { .. })).await {
            ServerMessage::Reported { report_id, .. } => ids.push(report_id),
            _ => unreachable!(),
        }
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one open report: {ids:?}");
    f.expect("report_filed", |m| matches!(m, ServerMessage::ReportFiled { .. })).await;
    let again = f.try_recv(Duration::from_millis(400)).await;
    assert!(again.is_none_or(|m| !matches!(m, ServerMessage::ReportFiled { .. })), "the facilitator is told once");
    assert_eq!(server.app.moderation.open_reports(None).len(), 1);
}

#[tokio::test]
async fn a_staff_note_posted_while_a_facilitator_was_away_comes_back_on_resume() {
    let server = TestServer::start().await;
    let mut f1 = server.staff(Role::Facilitator, None, "lgbtq").await;
    let mut f2 = server.staff(Role::Admin, None, "lgbtq").await;
    let (mut a, _) = server.member(Some("Willow")).await;
    a.join("lgbtq").await;
    let (_, seq) = a.say("lgbtq", "hi all").await;
    f1.expect("the member's message", |m| matches!(m, ServerMessage::Message(msg) if msg.seq == seq)).await;
    let joined = f1.join("lgbtq").await;
    let (_, _, epoch, _, _) = joined_parts(&joined);
    let position = kindred_protocol::Position { epoch: epoch.to_owned(), seq };
    f1.close().await;
    f2.send(&ClientMessage::Send { id: Some(1.into()), room: "lgbtq".into(), text: "keep an eye on Willow".into(), reply_to: None, cw: None, staff: true })
        .await;
    let note = f2.expect("staff copy", |m| matches!(m, ServerMessage::Message(msg) if msg.staff)).await;
    let ServerMessage::Message(note) = note else { unreachable!() };
    assert_eq!((note.seq, note.staff_seq), (seq, Some(1)), "keeps the seq before it, with a staff_seq of its own");

    let mut back = server.client().await;
    let token = server.app.auth.staff_token(Role::Facilitator, "Sam Rivers", None, Duration::from_secs(600));
    back.hello(Some(&token), None).await;
    let joined = back.join_since("lgbtq", Some(position)).await;
    let (_, history, _, _, recovered) = joined_parts(&joined);
    assert!(recovered);
    assert!(history.iter().any(|m| m.message_id == note.message_id), "the staff note is not lost: {history:?}");
    // A second staff note counts on.
    f2.send(&ClientMessage::Send { id: Some(2.into()), room: "lgbtq".into(), text: "she's ok".into(), reply_to: None, cw: None, staff: true }).await;
    let next = back.expect("second note", |m| matches!(m, ServerMessage::Message(msg) if msg.staff)).await;
    assert!(matches!(next, ServerMessage::Message(msg) if msg.staff_seq == Some(2)));
}
