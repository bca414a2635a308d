//! `participation`: a facilitator's private view of who has spoken, as
//! counts only, on one node and on two Redis nodes (the facilitator on node
//! A, some members on node B, so B's messages are counted where they arrive).

use crate::common::deployment::{Deployment, both_brokers};
use crate::common::*;
use kindred_protocol::{ClientMessage, ErrorCode, MemberId, Role, RoomId, ServerMessage};

const ROOM: &str = "grief";

fn participation() -> ClientMessage {
    ClientMessage::Participation { id: None, room: RoomId::from(ROOM) }
}

async fn counts_after_a_known_conversation_quietest_first_with_no_text(d: &Deployment) {
    let (mut sam, sam_id) = d.a().staff_in(Role::Facilitator, Some(vec![ROOM]), ROOM).await;
    let (mut ann, ann_id) = d.a().member_in(ROOM, Some("Ann")).await;
    let (mut bo, bo_id) = d.b().member_in(ROOM, Some("Bo")).await;
    let (_cy, cy_id) = d.b().member_in(ROOM, Some("Cy")).await;
    sees_join(&mut sam, &[&ann_id, &bo_id, &cy_id]).await;

    let texts = ["one", "two two", "three three three", "I have been listening.", "Welcome."];
    for text in &texts[..3] {
        ann.say(ROOM, text).await;
    }
    bo.say(ROOM, texts[3]).await;
    sam.say(ROOM, texts[4]).await;
    // A back-channel note between staff is not the room's conversation.
    let note = ClientMessage::Send { id: None, room: RoomId::from(ROOM), text: "Cy has been quiet tonight.".into(), reply_to: None, cw: None, staff: true };
    assert!(matches!(sam.request(note).await, ServerMessage::Sent { .. }));
    // Poll until everything has reached node A's room (counted where it is delivered).
    let deadline = tokio::time::Instant::now() + crate::common::deployment::CROSS_NODE_WAIT;
    let (before, reply) = loop {
        let before = chrono::Utc::now();
        let reply = sam.request(participation()).await;
        let total: u32 = match &reply {
            ServerMessage::Participation { members, .. } => members.iter().map(|p| p.messages).sum(),
            _ => panic!("expected participation, got {reply:?}"),
        };
        if total >= 5 || tokio::time::Instant::now() > deadline {
            break (before, reply);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let json = serde_json::to_string(&reply).unwrap();
    let ServerMessage::Participation { room, since, members, .. } = reply else { panic!("expected participation, got {json}") };
    assert_eq!(room.as_str(), ROOM);
    let since: chrono::DateTime<chrono::Utc> = since.parse().unwrap();
    let window = before - since;
    assert!(window >= chrono::Duration::minutes(59) && window <= chrono::Duration::minutes(61), "the last 60 minutes: {since}");

    let got: Vec<(&MemberId, &str, u32, u64, bool)> =
        members.iter().map(|p| (&p.member_id, p.handle.as_str(), p.messages, p.chars, p.last_at.is_some())).collect();
    assert_eq!(
        got,
        vec![(&cy_id, "Cy", 0, 0, false), (&sam_id, "Sam Rivers", 1, 8, true), (&bo_id, "Bo", 1, 22, true), (&ann_id, "Ann", 3, 27, true)],
        "every member present, quietest first, on {}",
        d.a().app.config.node
    );
    for p in &members {
        if let Some(at) = &p.last_at {
            let at: chrono::DateTime<chrono::Utc> = at.parse().unwrap();
            assert!(at >= since && at <= chrono::Utc::now(), "{at}");
        }
    }
    for text in texts.iter().chain(["Cy has been quiet tonight."].iter()) {
        assert!(!json.contains(text), "no message text in the reply: {text:?} in {json}");
    }
}

async fn only_staff_in_scope_may_see_participation(d: &Deployment) {
    let (mut ann, _) = d.a().member_in(ROOM, Some("Ann")).await;
    let (mut bo, _) = d.b().member_in(ROOM, Some("Bo")).await;
    ann.refused(participation(), ErrorCode::Forbidden).await;
    bo.refused(participation(), ErrorCode::Forbidden).await;
    // A facilitator of another room, in that room or not.
    let mut other = d.b().staff(Role::Facilitator, Some(vec!["anxiety"]), "anxiety").await;
    other.refused(participation(), ErrorCode::Forbidden).await;
    // In scope but not in the room: this node may not hear it.
    let mut admin = d.b().on_duty(Role::Admin, "Alex", None).await;
    admin.refused(participation(), ErrorCode::NotMember).await;
    admin.refused(ClientMessage::Participation { id: None, room: RoomId::from("nowhere") }, ErrorCode::NotFound).await;
}

/// With a session running, the view covers the session, not the last hour:
/// what was said before it started is not counted.
async fn a_running_session_is_the_window(d: &Deployment) {
    let (mut sam, _) = d.a().staff_in(Role::Facilitator, Some(vec![ROOM]), ROOM).await;
    let (mut ann, ann_id) = d.b().member_in(ROOM, Some("Ann")).await;
    sees_join(&mut sam, &[&ann_id]).await;
    ann.say(ROOM, "Before the session.").await;
    sam.expect("Ann's first message", |m| matches!(m, ServerMessage::Message(_))).await;
    // Times are to the millisecond, and a message stamped in the millisecond the
    // session starts counts as said in it: let the clock move past Ann's message.
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let start = kindred_protocol::ModerationAction::StartSession { minutes: 60, agenda: None };
    assert!(matches!(sam.moderate(ROOM, start).await, ServerMessage::Moderated { .. }));
    let update = sam.expect("the session", |m| matches!(m, ServerMessage::RoomUpdate { info, .. } if info.session.is_some())).await;
    let ServerMessage::RoomUpdate { info, .. } = update else { unreachable!() };
    let started_at = info.session.expect("a session").started_at;
    // Ann's node must know of the session before her message, or it could count
    // it either way; her own copy of the update says it does.
    ann.expect("the session, on Ann's node", |m| matches!(m, ServerMessage::RoomUpdate { info, .. } if info.session.is_some())).await;
    ann.say(ROOM, "During the session.").await;
    sam.expect("Ann's second message", |m| matches!(m, ServerMessage::Message(msg) if msg.text == "During the session.")).await;
    let ServerMessage::Participation { since, members, .. } = sam.request(participation()).await else { panic!("expected participation") };
    assert_eq!(since, started_at, "the window is the session");
    let ann_row = members.iter().find(|m| m.member_id == ann_id).expect("Ann is listed");
    assert_eq!(ann_row.messages, 1, "only what Ann said during the session");
}

both_brokers!(counts_after_a_known_conversation_quietest_first_with_no_text, only_staff_in_scope_may_see_participation, a_running_session_is_the_window);

/// Every staff request writes to someone. A scripted or stolen staff token
/// gets `rate_limited` like a member, and the member it points at gets no
/// more warnings than the budget lets through.
#[tokio::test]
async fn staff_requests_have_the_room_action_budget() {
    let server = TestServer::start().await;
    let (mut ann, ann_id) = server.member_in(ROOM, Some("Ann")).await;
    let mut views = server.staff(Role::Facilitator, Some(vec![ROOM]), ROOM).await;
    let budget = server.app.config.limits.actions_per_10s as usize;
    let mut shown = 0;
    let refusal = loop {
        match views.request(participation()).await {
            ServerMessage::Participation { .. } => shown += 1,
            ServerMessage::Error(e) => break e,
            other => panic!("unexpected {other:?}"),
        }
        assert!(shown <= budget, "{shown} participation views in a row and none refused");
    };
    assert_eq!(refusal.code, ErrorCode::RateLimited, "{refusal:?}");
    assert!(refusal.retry_after_ms.is_some_and(|ms| ms > 0), "{refusal:?}");

    let mut sam = server.staff(Role::Facilitator, Some(vec![ROOM]), ROOM).await;
    let warn = || kindred_protocol::ModerationAction::Warn { member_id: ann_id.clone(), reason: "Please keep it kind.".into() };
    let mut warned = 0;
    for _ in 0..budget + 5 {
        match sam.moderate(ROOM, warn()).await {
            ServerMessage::Moderated { .. } => warned += 1,
            ServerMessage::Error(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited, "{e:?}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(warned < budget + 5, "no warning refused");
    for _ in 0..warned {
        ann.expect("a warning", |m| matches!(m, ServerMessage::Notice(n) if n.kind == kindred_protocol::NoticeKind::Warning)).await;
    }
    ann.assert_none_for("a warning past the budget", std::time::Duration::from_millis(300), |m| matches!(m, ServerMessage::Notice(_))).await;
}

/// A room that asks for the nudge: more than half of the last 15 minutes' messages.
fn nudging(c: &mut kindred_server::config::Config) {
    c.jwt_secret = Some(crate::common::redis_server::SECRET.into());
    c.limits.messages_per_10s = 10_000;
    let file: kindred_server::rooms::RoomsFile =
        toml::from_str("[[rooms]]\nid = \"circle\"\nname = \"Circle\"\ndominance_share = 0.5\n[[rooms]]\nid = \"quiet\"\nname = \"Quiet\"\n").unwrap();
    c.rooms = file.into_defs().unwrap();
}

fn is_nudge(m: &ServerMessage) -> bool {
    matches!(m, ServerMessage::Notice(n) if n.kind == kindred_protocol::NoticeKind::System && n.room.as_ref().is_some_and(|r| r.as_str() == "circle"))
}

/// Dee (on `b`) dominates once their share passes one half with four
/// members speaking; they alone are told, once, and the staff (on `a`) get
/// the `participation` event.
async fn the_nudge_comes_past_the_threshold_once(a: &TestServer, b: &TestServer) {
    let room = "circle";
    let mut sam = a.staff(Role::Facilitator, Some(vec![room]), room).await;
    let (mut ann, _) = a.member_in(room, Some("Ann")).await;
    let (mut bo, _) = b.member_in(room, Some("Bo")).await;
    let (mut cy, _) = a.member_in(room, Some("Cy")).await;
    let (mut dee, dee_id) = b.member_in(room, Some("Dee")).await;
    for c in [&mut ann, &mut bo, &mut cy] {
        c.say(room, "hello").await;
    }
    // Wait until Dee's node has all three before Dee speaks.
    dee.messages(3).await;
    // 1/4, 2/5, 3/6: not more than half.
    for i in 0..3 {
        dee.say(room, &format!("thought {i}")).await;
    }
    let quiet = std::time::Duration::from_millis(400);
    dee.assert_none_for("a nudge at half or less", quiet, is_nudge).await;
    // 4/7: more than half.
    dee.say(room, "and another thing").await;
    let nudge = dee.expect("the nudge", is_nudge).await;
    let ServerMessage::Notice(n) = nudge else { unreachable!() };
    assert!(n.text.contains("space"), "kind words: {}", n.text);
    let event = sam.expect("the participation event", |m| matches!(m, ServerMessage::Participation { id: None, .. })).await;
    let ServerMessage::Participation { members, .. } = event else { unreachable!() };
    assert_eq!(members.last().map(|p| (&p.member_id, p.messages)), Some((&dee_id, 4)), "{members:?}");
    // Still dominating: no second nudge within 15 minutes.
    dee.say(room, "one more").await;
    dee.assert_none_for("a second nudge", quiet, is_nudge).await;
    for c in [&mut ann, &mut bo, &mut cy] {
        c.assert_none_for("someone else's nudge", std::time::Duration::from_millis(100), is_nudge).await;
    }
    // Members never get the staff event.
    ann.assert_none_for("the staff event", std::time::Duration::from_millis(100), |m| matches!(m, ServerMessage::Participation { .. })).await;
}

mod dominance_nudge {
    use super::*;

    #[tokio::test]
    async fn embedded() {
        let server = TestServer::with(nudging).await;
        the_nudge_comes_past_the_threshold_once(&server, &server).await;
    }

    #[tokio::test]
    async fn redis() {
        let redis = crate::common::redis_server::Redis::start();
        let mut a = crate::common::redis_server::node_with(redis.url(), false, "a", std::time::Duration::from_secs(3), nudging).await;
        let mut b = crate::common::redis_server::node_with(redis.url(), false, "b", std::time::Duration::from_secs(3), nudging).await;
        a.client_wait = crate::common::deployment::CROSS_NODE_WAIT;
        b.client_wait = crate::common::deployment::CROSS_NODE_WAIT;
        the_nudge_comes_past_the_threshold_once(&a, &b).await;
        drop((a, b));
    }
}

#[test]
fn dominance_share_is_above_0_and_at_most_1() {
    for bad in ["0", "1.5", "-0.2"] {
        let file: kindred_server::rooms::RoomsFile = toml::from_str(&format!("[[rooms]]\nid = \"a\"\nname = \"A\"\ndominance_share = {bad}\n")).unwrap();
        assert!(file.into_defs().is_err(), "{bad}");
    }
}
