//! What a member and a facilitator do in a room, run on both brokers
//! (`both_brokers!`): on the embedded broker, and on two nodes sharing one
//! `redis-server`, where the facilitator (node A) and the member acted upon
//! (node B) are on different nodes. Messaging in one order, resume after a
//! disconnect, warn, mute, kick and ban, whispers, hands and the floor,
//! `forget_me`, the crisis pathway and the contact-details guard.

use crate::common::deployment::{CROSS_NODE_WAIT, Deployment, both_brokers};
use crate::common::*;
use kindred_protocol::{
    ChatMessage, ClientMessage, ErrorCode, MemberId, ModerationAction as A, Notice, NoticeKind, Position, RemovedReason, Role, RoomId, RoomMode, ServerMessage,
};
use std::collections::BTreeSet;
use std::time::Duration;

const ROOM: &str = "grief";

/// How long a client must stay free of a frame meant for someone else.
const QUIET: Duration = Duration::from_millis(500);

/// The next `member_update` about `member` that satisfies `state`.
async fn member_update(c: &mut TestClient, member: &MemberId, what: &str, state: impl Fn(&kindred_protocol::Member) -> bool) -> kindred_protocol::Member {
    match c.expect(what, |m| matches!(m, ServerMessage::MemberUpdate { member: u, .. } if u.member_id == *member && state(u))).await {
        ServerMessage::MemberUpdate { room, member } => {
            assert_eq!(room, RoomId::from(ROOM));
            member
        }
        _ => unreachable!(),
    }
}

/// `n` sends in a row, each with its own id, without waiting for replies.
async fn send_burst(c: &mut TestClient, tag: &str, n: usize) {
    for i in 0..n {
        let mut frame = chat(ROOM, &format!("{tag} {i}"));
        frame.set_id(Some(c.next_id()));
        c.send(&frame).await;
    }
}

/// Read until `messages` messages and `acks` `sent` replies have arrived.
async fn messages_and_acks(c: &mut TestClient, messages: usize, acks: usize) -> (Vec<ChatMessage>, Vec<(String, u64)>) {
    let (mut got, mut sent) = (Vec::new(), Vec::new());
    while got.len() < messages || sent.len() < acks {
        match c.expect("a message or a sent", |m| matches!(m, ServerMessage::Message(_) | ServerMessage::Sent { .. })).await {
            ServerMessage::Message(m) => got.push(m),
            ServerMessage::Sent { message_id, seq, .. } => sent.push((message_id.0, seq)),
            _ => unreachable!(),
        }
    }
    assert_eq!((got.len(), sent.len()), (messages, acks), "more than expected arrived");
    (got, sent)
}

async fn messages_reach_everyone_in_one_order(d: &Deployment) {
    let (mut ann, ann_id) = d.a().member_in(ROOM, Some("Ann")).await;
    let (mut bo, bo_id) = d.b().member_in(ROOM, Some("Bo")).await;
    let (mut cy, _) = d.b().member_in(ROOM, Some("Cy")).await;

    // One message: acked to its sender, then delivered to everyone as it was written.
    let (message_id, seq) = ann.say(ROOM, "Today would have been her birthday.").await;
    for c in [&mut ann, &mut bo, &mut cy] {
        let got = c.messages(1).await.remove(0);
        assert_eq!((got.message_id.0.as_str(), got.seq, got.room.as_str()), (message_id.as_str(), seq, ROOM));
        assert_eq!(got.text, "Today would have been her birthday.");
        assert_eq!((&got.from.member_id, got.from.handle.as_str(), got.from.role), (&ann_id, "Ann", Role::Member));
        assert!(got.ts.ends_with('Z'), "{}", got.ts);
    }

    // Two senders on two nodes at once: everyone sees one contiguous order
    // that keeps each sender's own order, and each `sent` names its place in it.
    const EACH: usize = 20;
    tokio::join!(send_burst(&mut ann, "ann", EACH), send_burst(&mut bo, "bo", EACH));
    let (seen_a, acks_a) = messages_and_acks(&mut ann, 2 * EACH, EACH).await;
    let (seen_b, acks_b) = messages_and_acks(&mut bo, 2 * EACH, EACH).await;
    let (seen_c, _) = messages_and_acks(&mut cy, 2 * EACH, 0).await;
    assert_eq!(seqs_and_ids(&seen_a), seqs_and_ids(&seen_b), "Ann and Bo saw different orders");
    assert_eq!(seqs_and_ids(&seen_a), seqs_and_ids(&seen_c), "Ann and Cy saw different orders");
    assert_contiguous(&seen_a);
    assert_eq!(seen_a[0].seq, seq + 1, "right after the first message");
    for (tag, sender, acks) in [("ann", &ann_id, &acks_a), ("bo", &bo_id, &acks_b)] {
        let mine: Vec<&ChatMessage> = seen_a.iter().filter(|m| m.from.member_id == *sender).collect();
        let texts: Vec<&str> = mine.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, (0..EACH).map(|i| format!("{tag} {i}")).collect::<Vec<_>>(), "{tag}'s messages out of order");
        assert_eq!(&mine.iter().map(|m| (m.message_id.0.clone(), m.seq)).collect::<Vec<_>>(), acks, "{tag}'s acks and deliveries differ");
    }
}

/// Messages are pipelined (the server reads on while they are stored), but
/// every answer still comes in the order of the requests: a refusal in the
/// middle of a burst comes between the `sent`s around it, and a request
/// after a burst (`leave` then `join`; `forget_me`) sees every message of it stored.
async fn answers_come_in_request_order_and_a_request_after_a_burst_sees_it_stored(d: &Deployment) {
    let (mut mo, _) = d.a().member_in(ROOM, Some("Mo")).await;
    let mut asked = Vec::new();
    for i in 0..11 {
        let mut frame = chat(ROOM, &if i == 5 { " ".to_string() } else { format!("burst {i}") });
        let id = mo.next_id();
        frame.set_id(Some(id.clone()));
        asked.push(id);
        mo.send(&frame).await;
    }
    let mut leave = ClientMessage::Leave { id: None, room: RoomId::from(ROOM) };
    let leave_id = mo.next_id();
    leave.set_id(Some(leave_id.clone()));
    mo.send(&leave).await;
    asked.push(leave_id);

    let mut answered = Vec::new();
    while answered.len() < asked.len() {
        let answer = mo.expect("an answer", |m| matches!(m, ServerMessage::Sent { .. } | ServerMessage::Error(_) | ServerMessage::Left { .. })).await;
        if let ServerMessage::Error(e) = &answer {
            assert_eq!(e.code, ErrorCode::BadRequest, "{e:?}");
        }
        answered.push(answer.id().cloned().expect("every request had an id"));
    }
    assert_eq!(answered, asked, "answers out of request order");
    assert!(matches!(mo.request(ClientMessage::Ping { id: None }).await, ServerMessage::Pong { .. }));

    let joined = mo.join(ROOM).await;
    let (_, history, ..) = joined_parts(&joined);
    let texts: Vec<&str> = history.iter().rev().take(10).rev().map(|m| m.text.as_str()).collect();
    let burst: Vec<String> = (0..11).filter(|i| *i != 5).map(|i| format!("burst {i}")).collect();
    assert_eq!(texts, burst, "the join after the burst missed some of it");

    // A `forget_me` right behind a burst (no `sent` waited for) forgets all
    // of it: none of it is stored after the erasure.
    send_burst(&mut mo, "last words", 5).await;
    let reply = mo.request(ClientMessage::ForgetMe { id: None }).await;
    assert!(matches!(reply, ServerMessage::Forgotten { .. }), "{reply:?}");
    for node in [d.a(), d.b()] {
        let (mut newcomer, _) = node.member(None).await;
        let joined = newcomer.join(ROOM).await;
        let left: Vec<&str> = joined_parts(&joined).1.iter().map(|m| m.text.as_str()).filter(|t| t.contains("burst") || t.contains("last words")).collect();
        assert!(left.is_empty(), "forgotten messages are still in the history: {left:?}");
    }
}

async fn a_reconnecting_member_resumes_with_exactly_what_it_missed(d: &Deployment) {
    let (mut ann, welcome) = d.a().member(Some("Ann")).await;
    let joined = ann.join(ROOM).await;
    let (me, _, epoch, _, _) = joined_parts(&joined);
    let (ann_id, epoch) = (me.member_id.clone(), epoch.to_owned());
    let (mut bo, _) = d.b().member_in(ROOM, Some("Bo")).await;
    bo.say(ROOM, "one").await;
    let last = ann.messages(1).await.remove(0);
    assert_eq!(last.text, "one");
    drop(ann);

    for text in ["two", "three", "four"] {
        bo.say(ROOM, text).await;
    }
    // Ann comes back on node B (on Redis, not the node it left).
    let mut back = d.b().client().await;
    back.hello(Some(&token_of(&welcome)), None).await;
    let resumed = back.join_since(ROOM, Some(Position { epoch: epoch.clone(), seq: last.seq })).await;
    let (me, history, _, seq, recovered) = joined_parts(&resumed);
    assert!(recovered, "the resume is honoured");
    assert_eq!(me.member_id, ann_id, "the same member after the reconnect");
    let missed: Vec<(&str, u64)> = history.iter().map(|m| (m.text.as_str(), m.seq)).collect();
    assert_eq!(missed, [("two", last.seq + 1), ("three", last.seq + 2), ("four", last.seq + 3)], "exactly the missed messages");
    assert_eq!(seq, last.seq + 3);
    // Live again from there: the next message, nothing missed told twice.
    bo.say(ROOM, "five").await;
    let live = back.messages(1).await.remove(0);
    assert_eq!((live.text.as_str(), live.seq), ("five", seq + 1));

    // A position in a history the room never had is not honoured: the latest window, `recovered: false`.
    let mut other = d.b().client().await;
    other.hello(Some(&token_of(&welcome)), None).await;
    let joined = other.join_since(ROOM, Some(Position { epoch: "elsewhere".into(), seq: 2 })).await;
    let (_, history, _, _, recovered) = joined_parts(&joined);
    assert!(!recovered);
    assert_eq!(history.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["one", "two", "three", "four", "five"]);
}

async fn a_warning_reaches_the_member_alone(d: &Deployment) {
    let mut sam = d.a().staff(Role::Facilitator, None, ROOM).await;
    let (mut mo, mo_id) = d.b().member_in(ROOM, Some("Mo")).await;
    let (mut wren, _) = d.a().member_in(ROOM, Some("Wren")).await;
    let (mut cy, _) = d.b().member_in(ROOM, Some("Cy")).await;
    sees_join(&mut sam, &[&mo_id]).await;

    moderated(&sam.moderate(ROOM, A::Warn { member_id: mo_id, reason: "Please keep advice gentle".into() }).await);
    let got = mo.expect("the warning", |m| matches!(m, ServerMessage::Notice(_))).await;
    let text = "Please keep advice gentle".into();
    let expected = Notice { room: Some(RoomId::from(ROOM)), kind: NoticeKind::Warning, text, resources: None, facilitators_alerted: None };
    assert_eq!(got, ServerMessage::Notice(expected), "the facilitator's words, to Mo");
    for c in [&mut wren, &mut cy, &mut sam] {
        c.assert_none_for("a warning meant for Mo", QUIET, |m| matches!(m, ServerMessage::Notice(_))).await;
    }
}

async fn a_muted_member_cannot_send_until_unmuted(d: &Deployment) {
    let mut sam = d.a().staff(Role::Facilitator, None, ROOM).await;
    let (mut mo, mo_id) = d.b().member_in(ROOM, Some("Mo")).await;
    let (mut wren, _) = d.a().member_in(ROOM, Some("Wren")).await;
    sees_join(&mut sam, &[&mo_id]).await;

    moderated(&sam.moderate(ROOM, A::Mute { member_id: mo_id.clone(), duration_s: None, reason: Some("take a breather".into()) }).await);
    let seen = member_update(&mut wren, &mo_id, "Mo muted, seen by Wren", |m| m.muted).await;
    assert_eq!(seen.muted_until, None, "a mute without a duration has no end");
    member_update(&mut mo, &mo_id, "Mo's own state: muted", |m| m.muted).await;
    let notice = mo.expect("the mute's warning", |m| matches!(m, ServerMessage::Notice(_))).await;
    assert!(matches!(&notice, ServerMessage::Notice(n) if n.kind == NoticeKind::Warning && n.text == "take a breather"), "{notice:?}");
    let e = mo.refused(chat(ROOM, "hello?"), ErrorCode::Muted).await;
    assert_eq!((e.message.as_str(), e.until), ("take a breather", None));

    moderated(&sam.moderate(ROOM, A::Unmute { member_id: mo_id.clone(), reason: None }).await);
    member_update(&mut wren, &mo_id, "Mo unmuted, seen by Wren", |m| !m.muted).await;
    member_update(&mut mo, &mo_id, "Mo's own state: unmuted", |m| !m.muted).await;
    let (message_id, _) = mo.say(ROOM, "thank you, I'm calmer now").await;
    let got = wren.messages(1).await.remove(0);
    assert_eq!((got.message_id.0.as_str(), got.text.as_str(), &got.from.member_id), (message_id.as_str(), "thank you, I'm calmer now", &mo_id));
}

async fn a_kicked_member_may_return_and_a_banned_one_may_not(d: &Deployment) {
    let mut sam = d.a().staff(Role::Facilitator, None, ROOM).await;
    let (mut mo, welcome) = d.b().member(Some("Mo")).await;
    let mo_id = mo.join_returning_id(ROOM).await;
    let (mut wren, _) = d.a().member_in(ROOM, Some("Wren")).await;
    sees_join(&mut sam, &[&mo_id]).await;
    let left = |m: &ServerMessage| matches!(m, ServerMessage::Presence { left: Some(l), .. } if *l == mo_id);

    moderated(&sam.moderate(ROOM, A::Kick { member_id: mo_id.clone(), reason: Some("let's take a break".into()) }).await);
    let removed = mo.expect("removed", |m| matches!(m, ServerMessage::Removed { .. })).await;
    assert_eq!(
        removed,
        ServerMessage::Removed { room: RoomId::from(ROOM), reason: RemovedReason::Kicked, note: Some("let's take a break".into()), until: None }
    );
    wren.expect("Mo leaving after the kick", left).await;
    mo.refused(chat(ROOM, "wait"), ErrorCode::NotMember).await;
    // A kick is not a ban: Mo may come back.
    assert_eq!(mo.join_returning_id(ROOM).await, mo_id);
    sees_join(&mut sam, &[&mo_id]).await;

    moderated(&sam.moderate(ROOM, A::Ban { member_id: mo_id.clone(), duration_s: None, reason: Some("repeated harassment".into()), service: false }).await);
    let removed = mo.expect("removed", |m| matches!(m, ServerMessage::Removed { .. })).await;
    assert_eq!(
        removed,
        ServerMessage::Removed { room: RoomId::from(ROOM), reason: RemovedReason::Banned, note: Some("repeated harassment".into()), until: None }
    );
    wren.expect("Mo leaving after the ban", left).await;
    let rejoin = || ClientMessage::Join { id: None, room: RoomId::from(ROOM), accept_rules: Some(1), since: None };
    let e = mo.refused(rejoin(), ErrorCode::Banned).await;
    assert_eq!(e.message, "repeated harassment");
    // Nor on a new connection to either node; another room is fine.
    for node in [d.a(), d.b()] {
        let mut again = node.client().await;
        again.hello(Some(&token_of(&welcome)), None).await;
        again.refused(rejoin(), ErrorCode::Banned).await;
        again.join("caregivers").await;
    }
}

async fn a_whisper_reaches_only_its_recipient(d: &Deployment) {
    let (mut sam, sam_id) = d.a().staff_in(Role::Facilitator, None, ROOM).await;
    let (mut mo, mo_id) = d.b().member_in(ROOM, Some("Mo")).await;
    let (mut cy, _) = d.b().member_in(ROOM, Some("Cy")).await;
    let (mut wren, _) = d.a().member_in(ROOM, Some("Wren")).await;
    sees_join(&mut sam, &[&mo_id]).await;
    let whisper = |to: &MemberId, text: &str| ClientMessage::Whisper { id: None, room: RoomId::from(ROOM), to: to.clone(), text: text.into() };

    let reply = sam.request(whisper(&mo_id, "How are you holding up?")).await;
    assert!(matches!(reply, ServerMessage::Whispered { .. }), "{reply:?}");
    let got = mo.expect("the whisper", |m| matches!(m, ServerMessage::Whisper { .. })).await;
    let ServerMessage::Whisper { room, from, to, text, .. } = got else { unreachable!() };
    assert_eq!((room.as_str(), &to, text.as_str()), (ROOM, &mo_id, "How are you holding up?"));
    assert_eq!((&from.member_id, from.handle.as_str(), from.role), (&sam_id, "Sam Rivers", Role::Facilitator));

    // The member answers the facilitator (on the other node).
    let reply = mo.request(whisper(&sam_id, "Not great, honestly")).await;
    assert!(matches!(reply, ServerMessage::Whispered { .. }), "{reply:?}");
    let got = sam.expect("the answer", |m| matches!(m, ServerMessage::Whisper { .. })).await;
    assert!(
        matches!(&got, ServerMessage::Whisper { from, to, text, .. } if from.member_id == mo_id && *to == sam_id && text == "Not great, honestly"),
        "{got:?}"
    );

    // Nobody else hears either; and members cannot whisper to each other.
    for c in [&mut cy, &mut wren] {
        c.assert_none_for("a whisper meant for someone else", QUIET, |m| matches!(m, ServerMessage::Whisper { .. })).await;
    }
    wren.refused(whisper(&mo_id, "psst"), ErrorCode::Forbidden).await;
    mo.assert_none_for("a whisper from a member", QUIET, |m| matches!(m, ServerMessage::Whisper { .. })).await;
}

async fn the_floor_passes_by_raised_hand_in_structured_mode(d: &Deployment) {
    let mut sam = d.a().staff(Role::Facilitator, None, ROOM).await;
    let (mut mo, mo_id) = d.b().member_in(ROOM, Some("Mo")).await;
    let (mut wren, wren_id) = d.a().member_in(ROOM, Some("Wren")).await;
    sees_join(&mut sam, &[&mo_id, &wren_id]).await;

    moderated(&sam.moderate(ROOM, A::SetMode { mode: RoomMode::Structured }).await);
    for c in [&mut mo, &mut wren] {
        c.expect("structured mode", |m| matches!(m, ServerMessage::RoomUpdate { info, .. } if info.summary.mode == RoomMode::Structured)).await;
    }
    mo.refused(chat(ROOM, "can I speak?"), ErrorCode::NotYourTurn).await;

    // A raised hand on node B: the facilitator on node A sees the queue.
    mo.send(&ClientMessage::RaiseHand { id: None, room: RoomId::from(ROOM) }).await;
    let hands = sam.expect("hands", |m| matches!(m, ServerMessage::Hands { queue, .. } if !queue.is_empty())).await;
    assert_eq!(hands, ServerMessage::Hands { room: RoomId::from(ROOM), queue: vec![mo_id.clone()] });
    member_update(&mut mo, &mo_id, "Mo's hand raised", |m| m.hand_raised).await;

    moderated(&sam.moderate(ROOM, A::GiveFloor { member_id: mo_id.clone() }).await);
    let me = member_update(&mut mo, &mo_id, "Mo given the floor", |m| m.has_floor).await;
    assert!(!me.hand_raised, "the floor lowers the hand");
    let (message_id, _) = mo.say(ROOM, "thanks for the space").await;
    sam.expect("Mo's turn, on node A", |m| matches!(m, ServerMessage::Message(msg) if msg.message_id.0 == message_id && msg.text == "thanks for the space"))
        .await;
    // Only the floor holder among members; facilitators always.
    wren.refused(chat(ROOM, "me too"), ErrorCode::NotYourTurn).await;
    sam.say(ROOM, "facilitators can always speak").await;

    moderated(&sam.moderate(ROOM, A::EndFloor { member_id: None }).await);
    member_update(&mut mo, &mo_id, "Mo's floor ended", |m| !m.has_floor).await;
    mo.refused(chat(ROOM, "one more"), ErrorCode::NotYourTurn).await;
    // The queue is for staff only.
    for c in [&mut mo, &mut wren] {
        c.assert_none_for("hands sent to a member", QUIET, |m| matches!(m, ServerMessage::Hands { .. })).await;
    }
}

async fn forget_me_removes_the_members_messages_everywhere_and_ends_its_other_connections(d: &Deployment) {
    let (mut willow, welcome) = d.a().member(Some("Willow")).await;
    willow.join(ROOM).await;
    // The same account in a second tab, on node B.
    let mut tab = d.b().client().await;
    tab.hello(Some(&token_of(&welcome)), None).await;
    tab.join(ROOM).await;
    let (mut cedar, _) = d.b().member_in(ROOM, Some("Cedar")).await;

    let (m1, _) = willow.say(ROOM, "My cat Miso died on Sunday").await;
    let (m2, _) = willow.say(ROOM, "I keep looking for her").await;
    let seen: Vec<String> = cedar.messages(2).await.into_iter().map(|m| m.message_id.0).collect();
    assert_eq!(seen, [m1.clone(), m2.clone()]);
    let (sorry, _) = cedar.say(ROOM, "I'm so sorry").await;
    // (Once Willow has it, node A holds it too: it is in the history checked below.)
    willow.expect("Cedar's reply", |m| matches!(m, ServerMessage::Message(msg) if msg.message_id.0 == sorry)).await;

    let reply = willow.request(ClientMessage::ForgetMe { id: None }).await;
    assert!(matches!(reply, ServerMessage::Forgotten { .. }), "{reply:?}");
    assert_eq!(willow.closed(WAIT).await, Closed::Code(1000));
    let mut deleted = BTreeSet::new();
    while deleted.len() < 2 {
        match cedar.expect("message_deleted", |m| matches!(m, ServerMessage::MessageDeleted { .. })).await {
            ServerMessage::MessageDeleted { room, message_id } if room.as_str() == ROOM => deleted.insert(message_id.0),
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(deleted, BTreeSet::from([m1, m2]));
    assert_eq!(tab.closed(CROSS_NODE_WAIT).await, Closed::Code(4401), "the other tab cannot post after the erasure");

    // Gone from the history every node serves, and the token works nowhere.
    for node in [d.a(), d.b()] {
        let (mut newcomer, _) = node.member(None).await;
        let joined = newcomer.join(ROOM).await;
        let texts: Vec<&str> = joined_parts(&joined).1.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["I'm so sorry"]);
        let mut back = node.client().await;
        let hello = ClientMessage::Hello { id: None, token: Some(token_of(&welcome)), handle: None, locale: None };
        back.refused(hello, ErrorCode::Unauthorized).await;
    }
}

const CRISIS: &str = "honestly I just want to die, I can't do this anymore";

async fn a_crisis_message_brings_the_member_helplines_and_staff_an_alert(d: &Deployment) {
    let mut sam = d.a().staff(Role::Facilitator, Some(vec![ROOM]), ROOM).await;
    let (mut mo, mo_id) = d.b().member_in(ROOM, Some("Mo")).await;
    let (mut wren, _) = d.a().member_in(ROOM, Some("Wren")).await;
    // Node B counts Sam (on node A) once a health tick has carried A's staff.
    d.wait_on_duty(ROOM, 1).await;

    let (message_id, seq) = mo.say(ROOM, CRISIS).await;
    let notice = mo.expect("crisis resources", |m| matches!(m, ServerMessage::Notice(n) if n.kind == NoticeKind::CrisisResources)).await;
    let ServerMessage::Notice(notice) = notice else { unreachable!() };
    assert_eq!(notice.facilitators_alerted, Some(1), "Sam, on duty, was told");
    assert_eq!(notice.text, d.b().app.safety.crisis_text(Some("en"), 1));
    assert!(notice.resources.expect("resources").iter().any(|r| r.url.as_deref() == Some("https://findahelpline.com")));

    let alert = sam.expect("alert", |m| matches!(m, ServerMessage::Alert { .. })).await;
    let ServerMessage::Alert { room, kind, message, facilitators_alerted, .. } = alert else { unreachable!() };
    assert_eq!((room.as_str(), kind, facilitators_alerted), (ROOM, kindred_protocol::AlertKind::Crisis, 1));
    assert_eq!((message.message_id.0.as_str(), message.seq, message.text.as_str(), &message.from.member_id), (message_id.as_str(), seq, CRISIS, &mo_id));

    // The message is still delivered; the notice and the alert are for Mo and staff alone.
    let got = wren.messages(1).await.remove(0);
    assert_eq!((got.message_id.0.as_str(), got.text.as_str()), (message_id.as_str(), CRISIS));
    wren.assert_none_for("a notice or alert for a bystander", QUIET, |m| matches!(m, ServerMessage::Notice(_) | ServerMessage::Alert { .. })).await;
}

async fn a_phone_number_is_refused_and_never_delivered(d: &Deployment) {
    let (mut mo, _) = d.b().member_in(ROOM, Some("Mo")).await;
    let (mut wren, _) = d.a().member_in(ROOM, Some("Wren")).await;
    let e = mo.refused(chat(ROOM, "text me 07700 900123 anytime"), ErrorCode::ContentBlocked).await;
    assert!(e.message.contains("contact details"), "{e:?}");
    // Everyday talk about phones goes through, and it is the first message Wren gets.
    let (message_id, _) = mo.say(ROOM, "my phone charger died and I felt so cut off").await;
    let got = wren.messages(1).await.remove(0);
    assert_eq!((got.message_id.0.as_str(), got.text.as_str()), (message_id.as_str(), "my phone charger died and I felt so cut off"));
}

/// A report is kept in the moderation state (a file, or the document the
/// nodes share): every facilitator hears of it once, one who arrives later
/// is shown it, and once it is resolved it is closed on every node.
async fn a_report_reaches_every_facilitator_once_and_its_resolution_closes_it_everywhere(d: &Deployment) {
    let (mut sam, _) = d.a().staff_in(Role::Facilitator, None, ROOM).await;
    let (mut tess, _) = d.b().staff_in(Role::Facilitator, None, ROOM).await;
    let (mut mo, mo_id) = d.b().member_in(ROOM, Some("Mo")).await;
    let (mut wren, _) = d.a().member_in(ROOM, Some("Wren")).await;
    sees_join(&mut sam, &[&mo_id]).await;
    sees_join(&mut tess, &[&mo_id]).await;

    let (said, _) = mo.say(ROOM, "a paid course cures grief in 7 days").await;
    wren.expect("Mo's message", |m| matches!(m, ServerMessage::Message(msg) if msg.message_id.0 == said)).await;
    let report = |reason: &str| ClientMessage::Report {
        id: None,
        room: RoomId::from(ROOM),
        message_id: kindred_protocol::MessageId(said.clone()),
        reason: reason.into(),
    };
    let ServerMessage::Reported { report_id, .. } = wren.request(report("selling a cure")).await else { panic!("not reported") };
    for staff in [&mut sam, &mut tess] {
        let filed = staff.expect("report_filed", |m| matches!(m, ServerMessage::ReportFiled { .. })).await;
        let ServerMessage::ReportFiled { report, .. } = filed else { unreachable!() };
        assert_eq!((&report.id, report.message.message_id.0.as_str(), report.reason.as_str()), (&report_id, said.as_str(), "selling a cure"));
    }
    // Reported again while open: the same report, and nobody is told twice.
    let again = wren.request(report("still selling")).await;
    assert!(matches!(&again, ServerMessage::Reported { report_id: same, .. } if *same == report_id), "{again:?}");
    sam.assert_none_for("a second report_filed", QUIET, |m| matches!(m, ServerMessage::ReportFiled { .. })).await;

    // A facilitator who arrives on node B later is shown the open report.
    let room = RoomId::from(ROOM);
    eventually("node B never held the report", CROSS_NODE_WAIT, || d.b().app.moderation.open_reports(Some(&room)).len() == 1).await;
    let (mut kit, _) = d.b().staff_in(Role::Facilitator, None, ROOM).await;
    kit.expect("the open report", |m| matches!(m, ServerMessage::ReportFiled { report, .. } if report.id == report_id)).await;

    let resolve = |id: &kindred_protocol::ReportId| ClientMessage::ResolveReport {
        id: None,
        room: RoomId::from(ROOM),
        report_id: id.clone(),
        resolution: kindred_protocol::client::ReportResolution::Acted,
    };
    let done = sam.request(resolve(&report_id)).await;
    assert!(matches!(&done, ServerMessage::ReportResolved { report_id: r, .. } if *r == report_id), "{done:?}");
    tess.expect("report_resolved", |m| matches!(m, ServerMessage::ReportResolved { id: None, report_id: r, .. } if *r == report_id)).await;
    // Closed for every node: resolving it again on node B finds nothing open.
    tess.refused(resolve(&report_id), ErrorCode::NotFound).await;
    eventually("node B still holds the report", CROSS_NODE_WAIT, || d.b().app.moderation.open_reports(None).is_empty()).await;
    let (mut lee, _) = d.b().staff_in(Role::Facilitator, None, ROOM).await;
    lee.assert_none_for("a resolved report", QUIET, |m| matches!(m, ServerMessage::ReportFiled { .. })).await;
}

/// A message a facilitator deletes leaves every screen and the stored
/// history (the embedded broker's log, or Redis's stream).
async fn a_deleted_message_leaves_every_screen_and_the_history(d: &Deployment) {
    let (mut sam, _) = d.a().staff_in(Role::Facilitator, None, ROOM).await;
    let (mut mo, mo_id) = d.b().member_in(ROOM, Some("Mo")).await;
    let (mut wren, _) = d.a().member_in(ROOM, Some("Wren")).await;
    sees_join(&mut sam, &[&mo_id]).await;
    let mut said = Vec::new();
    for text in ["one", "an unkind two", "three"] {
        said.push(mo.say(ROOM, text).await.0);
    }
    wren.messages(3).await;
    sam.messages(3).await;

    let doomed = kindred_protocol::MessageId(said[1].clone());
    moderated(&sam.moderate(ROOM, A::DeleteMessage { message_id: doomed.clone(), reason: None }).await);
    for c in [&mut mo, &mut wren] {
        let gone = c.expect("message_deleted", |m| matches!(m, ServerMessage::MessageDeleted { .. })).await;
        assert!(matches!(&gone, ServerMessage::MessageDeleted { message_id, .. } if *message_id == doomed), "{gone:?}");
    }
    for node in [d.a(), d.b()] {
        let (mut newcomer, _) = node.member(None).await;
        let joined = newcomer.join(ROOM).await;
        let texts: Vec<&str> = joined_parts(&joined).1.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["one", "three"], "on node {}", node.app.config.node);
    }
}

both_brokers!(
    messages_reach_everyone_in_one_order,
    answers_come_in_request_order_and_a_request_after_a_burst_sees_it_stored,
    a_reconnecting_member_resumes_with_exactly_what_it_missed,
    a_warning_reaches_the_member_alone,
    a_muted_member_cannot_send_until_unmuted,
    a_kicked_member_may_return_and_a_banned_one_may_not,
    a_whisper_reaches_only_its_recipient,
    the_floor_passes_by_raised_hand_in_structured_mode,
    forget_me_removes_the_members_messages_everywhere_and_ends_its_other_connections,
    a_crisis_message_brings_the_member_helplines_and_staff_an_alert,
    a_phone_number_is_refused_and_never_delivered,
    a_report_reaches_every_facilitator_once_and_its_resolution_closes_it_everywhere,
    a_deleted_message_leaves_every_screen_and_the_history,
);
