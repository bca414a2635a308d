//! Members control their own words (`unsend`, `react`) and facilitators
//! run a session (`pin`, `unpin`, `start_session`, `end_session`), and
//! staff see who is new: each run on both brokers (`both_brokers!`). On
//! Redis the facilitator and the first member are on node A, the second
//! member on node B, so every effect is checked across nodes: a reaction
//! counted once, a pin made on A shown on B.

use crate::common::deployment::{Deployment, both_brokers};
use crate::common::*;
use kindred_protocol::{ClientMessage, ErrorCode, MessageId, ModerationAction as A, NoticeKind, Position, ReactionCounts, Role, RoomId, ServerMessage};
use std::time::Duration;

const ROOM: &str = "grief";

/// How long a client must stay free of a frame meant for someone else.
const QUIET: Duration = Duration::from_millis(500);

fn unsend(message_id: &str) -> ClientMessage {
    ClientMessage::Unsend { id: None, room: RoomId::from(ROOM), message_id: MessageId::from(message_id) }
}

fn react(message_id: &str, reaction: &str, on: bool) -> ClientMessage {
    ClientMessage::React { id: None, room: RoomId::from(ROOM), message_id: MessageId::from(message_id), reaction: reaction.into(), on }
}

fn counts(pairs: &[(&str, u32)]) -> ReactionCounts {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

/// The next `reactions` frame for `message_id`.
async fn reactions(c: &mut TestClient, message_id: &str) -> ReactionCounts {
    match c.expect("reactions", |m| matches!(m, ServerMessage::Reactions { message_id: id, .. } if id.0 == message_id)).await {
        ServerMessage::Reactions { counts, .. } => counts,
        _ => unreachable!(),
    }
}

/// Wait for `reactions` of `message_id` until they equal `want` (a client
/// may see the steps of changes made on two nodes at once).
async fn reactions_reach(c: &mut TestClient, message_id: &str, want: &ReactionCounts) {
    while reactions(c, message_id).await != *want {}
}

async fn reacted(c: &mut TestClient, frame: ClientMessage) {
    let reply = c.request(frame).await;
    assert!(matches!(reply, ServerMessage::Reacted { .. }), "{reply:?}");
}

/// The `room_update` whose info satisfies `pred`.
async fn room_update(c: &mut TestClient, what: &str, pred: impl Fn(&kindred_protocol::RoomInfo) -> bool) -> kindred_protocol::RoomInfo {
    match c.expect(what, |m| matches!(m, ServerMessage::RoomUpdate { info, .. } if pred(info))).await {
        ServerMessage::RoomUpdate { info, .. } => info,
        _ => unreachable!(),
    }
}

fn joined_info(joined: &ServerMessage) -> &kindred_protocol::RoomInfo {
    match joined {
        ServerMessage::Joined { room, .. } => room,
        other => panic!("not joined: {other:?}"),
    }
}

async fn a_member_unsends_their_own_message_and_no_one_elses(d: &Deployment) {
    let (mut ann, welcome) = d.a().member(Some("Ann")).await;
    let joined = ann.join(ROOM).await;
    let epoch = joined_parts(&joined).2.to_owned();
    let (mut bo, _) = d.b().member_in(ROOM, Some("Bo")).await;
    let mut sam = d.a().staff(Role::Facilitator, None, ROOM).await;

    let (first, first_seq) = ann.say(ROOM, "I said too much just now").await;
    let (second, _) = ann.say(ROOM, "but thank you for listening").await;
    bo.messages(2).await;

    // Someone else's message, a member or a facilitator: refused, still there.
    let e = bo.refused(unsend(&first), ErrorCode::Forbidden).await;
    assert!(e.message.contains("your own"), "{e:?}");
    sam.refused(unsend(&first), ErrorCode::Forbidden).await;
    ann.refused(unsend("no-such-message"), ErrorCode::NotFound).await;
    let ClientMessage::Unsend { message_id, .. } = unsend(&first) else { unreachable!() };
    let outsider = ClientMessage::Unsend { id: None, room: RoomId::from("caregivers"), message_id };
    ann.refused(outsider, ErrorCode::NotMember).await;

    let reply = ann.request(unsend(&first)).await;
    assert_eq!(reply, ServerMessage::Unsent { id: reply.id().cloned(), room: RoomId::from(ROOM), message_id: MessageId::from(first.as_str()) });
    for c in [&mut bo, &mut sam] {
        let deleted = c.expect("message_deleted", |m| matches!(m, ServerMessage::MessageDeleted { .. })).await;
        assert_eq!(deleted, ServerMessage::MessageDeleted { room: RoomId::from(ROOM), message_id: MessageId::from(first.as_str()) });
    }
    ann.refused(unsend(&first), ErrorCode::NotFound).await;

    // Gone from the history every node serves, and from a resume from before it.
    for node in [d.a(), d.b()] {
        let (mut newcomer, _) = node.member(None).await;
        let joined = newcomer.join(ROOM).await;
        let ids: Vec<&str> = joined_parts(&joined).1.iter().map(|m| m.message_id.0.as_str()).collect();
        assert_eq!(ids, [second.as_str()]);
        let mut back = node.client().await;
        back.hello(Some(&token_of(&welcome)), None).await;
        let resumed = back.join_since(ROOM, Some(Position { epoch: epoch.clone(), seq: first_seq - 1 })).await;
        let (_, history, _, _, recovered) = joined_parts(&resumed);
        assert!(recovered);
        assert_eq!(history.iter().map(|m| m.message_id.0.as_str()).collect::<Vec<_>>(), [second.as_str()]);
    }
}

async fn reactions_are_anonymous_counts_counted_once_across_nodes(d: &Deployment) {
    let (mut ann, _) = d.a().member_in(ROOM, Some("Ann")).await;
    let (mut bo, bo_welcome) = d.b().member(Some("Bo")).await;
    bo.join(ROOM).await;
    let (message_id, _) = ann.say(ROOM, "Three years today").await;
    bo.messages(1).await;

    // Bo on node B: everyone hears the counts, without who.
    reacted(&mut bo, react(&message_id, "support", true)).await;
    for c in [&mut ann, &mut bo] {
        assert_eq!(reactions(c, &message_id).await, counts(&[("support", 1)]));
    }
    // Ann on node A: the same count, once each.
    reacted(&mut ann, react(&message_id, "support", true)).await;
    reacted(&mut ann, react(&message_id, "hug", true)).await;
    let both = counts(&[("hug", 1), ("support", 2)]);
    for c in [&mut ann, &mut bo] {
        reactions_reach(c, &message_id, &both).await;
    }

    // One per member per kind: Bo again, and Bo's second tab on node A at the same time.
    let mut tab = d.a().client().await;
    tab.hello(Some(&token_of(&bo_welcome)), None).await;
    tab.join(ROOM).await;
    let (r1, r2) = tokio::join!(bo.request(react(&message_id, "support", true)), tab.request(react(&message_id, "support", true)));
    assert!(matches!((&r1, &r2), (ServerMessage::Reacted { .. }, ServerMessage::Reacted { .. })), "{r1:?} {r2:?}");
    ann.assert_none_for("a count that went up twice for one member", QUIET, |m| matches!(m, ServerMessage::Reactions { .. })).await;

    // Taken back (from the other tab): counted down once.
    reacted(&mut tab, react(&message_id, "support", false)).await;
    let after = counts(&[("hug", 1), ("support", 1)]);
    for c in [&mut ann, &mut bo] {
        reactions_reach(c, &message_id, &after).await;
    }

    // A newcomer on either node sees the counts with the message.
    for node in [d.a(), d.b()] {
        let (mut newcomer, _) = node.member(None).await;
        let joined = newcomer.join(ROOM).await;
        let history = joined_parts(&joined).1;
        assert_eq!(history[0].reactions.as_ref(), Some(&after), "{history:?}");
    }

    // Bad input, and a message no longer in the history.
    let e = bo.refused(react(&message_id, "love", true), ErrorCode::BadRequest).await;
    assert!(e.message.contains("support, hug, same"), "{e:?}");
    bo.refused(react("no-such-message", "hug", true), ErrorCode::NotFound).await;
    let reply = ann.request(unsend(&message_id)).await;
    assert!(matches!(reply, ServerMessage::Unsent { .. }), "{reply:?}");
    bo.expect("message_deleted", |m| matches!(m, ServerMessage::MessageDeleted { .. })).await;
    bo.refused(react(&message_id, "hug", true), ErrorCode::NotFound).await;
    let outsider = ClientMessage::React { id: None, room: RoomId::from("caregivers"), message_id: MessageId::from("x"), reaction: "hug".into(), on: true };
    bo.refused(outsider, ErrorCode::NotMember).await;
}

async fn reactions_are_rate_limited(d: &Deployment) {
    let (mut ann, _) = d.a().member_in(ROOM, Some("Ann")).await;
    let (mut bo, _) = d.b().member_in(ROOM, Some("Bo")).await;
    let (message_id, _) = ann.say(ROOM, "hello all").await;
    bo.messages(1).await;
    let mut refused = None;
    for i in 0..40 {
        match bo.request(react(&message_id, "hug", i % 2 == 0)).await {
            ServerMessage::Reacted { .. } => {}
            ServerMessage::Error(e) => {
                refused = Some((i, e));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let (i, e) = refused.expect("a flood of reactions is refused");
    assert_eq!(e.code, ErrorCode::RateLimited, "{e:?}");
    assert!(e.retry_after_ms.is_some_and(|ms| ms > 0) && i >= 10, "after the default 10 per 10 s: {i} {e:?}");
}

async fn a_pin_made_on_one_node_shows_on_every_node(d: &Deployment) {
    let mut sam = d.a().staff(Role::Facilitator, Some(vec![ROOM]), ROOM).await;
    let (mut ann, _) = d.a().member_in(ROOM, Some("Ann")).await;
    let (mut bo, _) = d.b().member_in(ROOM, Some("Bo")).await;
    let (message_id, seq) = sam.say(ROOM, "Welcome. Tonight: one hour, cameras off, pass any time.").await;
    bo.messages(1).await;

    moderated(&sam.moderate(ROOM, A::Pin { message_id: MessageId::from(message_id.as_str()) }).await);
    for c in [&mut ann, &mut bo] {
        let info = room_update(c, "the pin", |i| i.pinned.is_some()).await;
        let pinned = info.pinned.expect("pinned");
        assert_eq!(
            (pinned.message_id.0.as_str(), pinned.seq, pinned.text.as_str()),
            (message_id.as_str(), seq, "Welcome. Tonight: one hour, cameras off, pass any time.")
        );
    }
    for node in [d.a(), d.b()] {
        let (mut newcomer, _) = node.member(None).await;
        let joined = newcomer.join(ROOM).await;
        assert_eq!(joined_info(&joined).pinned.as_ref().map(|m| m.message_id.0.as_str()), Some(message_id.as_str()));
    }

    // Members and facilitators of other rooms may not; a message not in the history cannot be.
    let pin = |id: &str| A::Pin { message_id: MessageId::from(id) };
    let e = bo.request(ClientMessage::Moderate { id: None, room: RoomId::from(ROOM), action: pin(&message_id) }).await;
    assert!(matches!(&e, ServerMessage::Error(e) if e.code == ErrorCode::Forbidden), "{e:?}");
    let mut elsewhere = d.b().staff(Role::Facilitator, Some(vec!["caregivers"]), ROOM).await;
    let e = elsewhere.moderate(ROOM, A::Unpin).await;
    assert!(matches!(&e, ServerMessage::Error(e) if e.code == ErrorCode::Forbidden), "{e:?}");
    let e = sam.moderate(ROOM, pin("no-such-message")).await;
    assert!(matches!(&e, ServerMessage::Error(e) if e.code == ErrorCode::NotFound), "{e:?}");

    moderated(&sam.moderate(ROOM, A::Unpin).await);
    room_update(&mut bo, "the unpin", |i| i.pinned.is_none()).await;

    // A pinned message its author takes back is unpinned with it, on every node.
    let (mine, _) = ann.say(ROOM, "Remember to drink some water").await;
    bo.expect("Ann's message", |m| matches!(m, ServerMessage::Message(msg) if msg.message_id.0 == mine)).await;
    moderated(&sam.moderate(ROOM, pin(&mine)).await);
    room_update(&mut bo, "Ann's message pinned", |i| i.pinned.as_ref().is_some_and(|p| p.message_id.0 == mine)).await;
    let reply = ann.request(unsend(&mine)).await;
    assert!(matches!(reply, ServerMessage::Unsent { .. }), "{reply:?}");
    room_update(&mut bo, "unpinned with the unsend", |i| i.pinned.is_none()).await;
    let (mut late, _) = d.b().member(None).await;
    assert!(joined_info(&late.join(ROOM).await).pinned.is_none());

    let audit = d.a().app.moderation.audit_log(50).await.expect("the audit log");
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).filter(|a| a.contains("pin")).collect();
    assert_eq!(actions.len(), 3, "pin, unpin, pin: {actions:?}");

    // Each writes to the whole room: a flood of them is refused like other room actions.
    let mut refused = None;
    for _ in 0..40 {
        if let ServerMessage::Error(e) = sam.moderate(ROOM, A::Unpin).await {
            refused = Some(e);
            break;
        }
    }
    assert_eq!(refused.map(|e| e.code), Some(ErrorCode::RateLimited));
}

async fn a_session_starts_with_an_agenda_and_ends_with_a_note(d: &Deployment) {
    let mut sam = d.a().staff(Role::Facilitator, Some(vec![ROOM]), ROOM).await;
    let (mut ann, _) = d.a().member_in(ROOM, Some("Ann")).await;
    let (mut bo, _) = d.b().member_in(ROOM, Some("Bo")).await;
    let start = |minutes: u32, agenda: Option<String>| A::StartSession { minutes, agenda };

    // Bad input, and people who may not.
    for bad in [start(4, None), start(241, None), start(60, Some("x".repeat(501)))] {
        let e = sam.moderate(ROOM, bad).await;
        assert!(matches!(&e, ServerMessage::Error(e) if e.code == ErrorCode::BadRequest), "{e:?}");
    }
    let e = bo.request(ClientMessage::Moderate { id: None, room: RoomId::from(ROOM), action: start(60, None) }).await;
    assert!(matches!(&e, ServerMessage::Error(e) if e.code == ErrorCode::Forbidden), "{e:?}");
    let mut elsewhere = d.b().staff(Role::Facilitator, Some(vec!["caregivers"]), ROOM).await;
    let e = elsewhere.moderate(ROOM, start(60, None)).await;
    assert!(matches!(&e, ServerMessage::Error(e) if e.code == ErrorCode::Forbidden), "{e:?}");
    let e = sam.moderate(ROOM, A::EndSession { note: None }).await;
    assert!(matches!(&e, ServerMessage::Error(e) if e.code == ErrorCode::NotFound), "no session yet: {e:?}");

    moderated(&sam.moderate(ROOM, start(90, Some("Check-in, then open sharing".into()))).await);
    for c in [&mut ann, &mut bo] {
        let session = room_update(c, "the session", |i| i.session.is_some()).await.session.expect("session");
        assert_eq!(session.agenda.as_deref(), Some("Check-in, then open sharing"));
        let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).expect("RFC 3339");
        assert_eq!((at(&session.ends_at) - at(&session.started_at)).num_minutes(), 90);
    }
    let (mut newcomer, _) = d.b().member(None).await;
    assert!(joined_info(&newcomer.join(ROOM).await).session.is_some(), "a newcomer on the other node sees it");

    let note = A::EndSession { note: Some("Thank you all. Same time next week.".into()) };
    let e = elsewhere.moderate(ROOM, note.clone()).await;
    assert!(matches!(&e, ServerMessage::Error(e) if e.code == ErrorCode::Forbidden), "{e:?}");
    moderated(&sam.moderate(ROOM, note).await);
    for c in [&mut ann, &mut bo, &mut newcomer] {
        room_update(c, "the session's end", |i| i.session.is_none()).await;
        let notice = c.expect("the closing note", |m| matches!(m, ServerMessage::Notice(n) if n.kind == NoticeKind::System)).await;
        let ServerMessage::Notice(notice) = notice else { unreachable!() };
        assert_eq!((notice.text.as_str(), notice.room.as_ref().map(RoomId::as_str)), ("Thank you all. Same time next week.", Some(ROOM)));
    }
    let audit = d.a().app.moderation.audit_log(50).await.expect("the audit log");
    assert!(audit.iter().any(|e| e.action == "start_session" && e.reason.as_deref() == Some("Check-in, then open sharing")), "{audit:?}");
    assert!(audit.iter().any(|e| e.action == "end_session"), "{audit:?}");
}

/// `member` joining, as `c` is told.
async fn arrival(c: &mut TestClient, member: &kindred_protocol::MemberId) -> kindred_protocol::Member {
    match c.expect("an arrival", |m| matches!(m, ServerMessage::Presence { joined: Some(j), .. } if j.member_id == *member)).await {
        ServerMessage::Presence { joined: Some(j), .. } => j,
        _ => unreachable!(),
    }
}

async fn a_newcomer_is_marked_for_staff_in_scope_only(d: &Deployment) {
    let mut sam = d.a().staff(Role::Facilitator, Some(vec![ROOM]), ROOM).await;
    let mut elsewhere = d.a().staff(Role::Facilitator, Some(vec!["caregivers"]), ROOM).await;
    let (mut ann, _) = d.a().member_in(ROOM, Some("Ann")).await;
    let (mut bo, bo_id) = d.b().member_in(ROOM, Some("Bo")).await;

    assert!(arrival(&mut sam, &bo_id).await.first_time, "the facilitator sees Bo is new");
    assert!(!arrival(&mut ann, &bo_id).await.first_time, "members are not told");
    assert!(!arrival(&mut elsewhere, &bo_id).await.first_time, "nor a facilitator outside its scope");

    // The same on a later join: the member list in `joined`, and Bo's own view.
    let (mut late_staff, _) = d.b().staff_in(Role::Facilitator, None, "caregivers").await;
    let joined = late_staff.join(ROOM).await;
    let ServerMessage::Joined { members, me, .. } = &joined else { unreachable!() };
    assert!(!me.first_time, "staff are never marked");
    assert!(members.iter().any(|m| m.member_id == bo_id && m.first_time), "{members:?}");
    let (mut cy, _) = d.b().member(None).await;
    let ServerMessage::Joined { members, .. } = cy.join(ROOM).await else { unreachable!() };
    assert!(members.iter().all(|m| !m.first_time), "{members:?}");
    // A member's flags changing keep the mark for staff alone.
    bo.send(&ClientMessage::RaiseHand { id: None, room: RoomId::from(ROOM) }).await;
    let update = sam.expect("Bo's hand", |m| matches!(m, ServerMessage::MemberUpdate { member, .. } if member.member_id == bo_id)).await;
    assert!(matches!(update, ServerMessage::MemberUpdate { member, .. } if member.first_time && member.hand_raised));
    let update = ann.expect("Bo's hand", |m| matches!(m, ServerMessage::MemberUpdate { member, .. } if member.member_id == bo_id)).await;
    assert!(matches!(update, ServerMessage::MemberUpdate { member, .. } if !member.first_time && member.hand_raised));
}

/// On Redis, node B has nobody in the room until the newcomer: it warms the
/// room then, and must read the pin, the session and the counts from Redis.
async fn a_node_that_opens_the_room_later_shows_the_pin_the_session_and_the_counts(d: &Deployment) {
    const QUIET_ROOM: &str = "caregivers";
    let mut sam = d.a().staff(Role::Facilitator, None, QUIET_ROOM).await;
    let (mut ann, _) = d.a().member_in(QUIET_ROOM, Some("Ann")).await;
    let (message_id, _) = ann.say(QUIET_ROOM, "Looking after Mum is all I do now").await;
    sam.expect("Ann's message", |m| matches!(m, ServerMessage::Message(msg) if msg.message_id.0 == message_id)).await;
    let room_react = |on: bool| ClientMessage::React {
        id: None,
        room: RoomId::from(QUIET_ROOM),
        message_id: MessageId::from(message_id.as_str()),
        reaction: "hug".into(),
        on,
    };
    // Each reaches node A's members, so Redis has it before node B looks.
    reacted(&mut sam, room_react(true)).await;
    reactions_reach(&mut ann, &message_id, &counts(&[("hug", 1)])).await;
    moderated(&sam.moderate(QUIET_ROOM, A::Pin { message_id: MessageId::from(message_id.as_str()) }).await);
    moderated(&sam.moderate(QUIET_ROOM, A::StartSession { minutes: 60, agenda: None }).await);
    room_update(&mut ann, "the session", |i| i.session.is_some() && i.pinned.is_some()).await;

    let (mut bo, _) = d.b().member(Some("Bo")).await;
    let joined = bo.join(QUIET_ROOM).await;
    let info = joined_info(&joined);
    assert_eq!(info.pinned.as_ref().map(|m| m.message_id.0.as_str()), Some(message_id.as_str()));
    assert!(info.session.is_some());
    let history = joined_parts(&joined).1;
    assert_eq!(history.iter().find(|m| m.message_id.0 == message_id).and_then(|m| m.reactions.clone()), Some(counts(&[("hug", 1)])));
    // And Bo's hug, through node B, is the second one.
    reacted(&mut bo, room_react(true)).await;
    reactions_reach(&mut ann, &message_id, &counts(&[("hug", 2)])).await;
}

async fn forget_me_takes_back_the_members_reactions(d: &Deployment) {
    let (mut cedar, _) = d.b().member_in(ROOM, Some("Cedar")).await;
    let (mut willow, _) = d.a().member_in(ROOM, Some("Willow")).await;
    let (message_id, _) = cedar.say(ROOM, "Two years since the accident").await;
    willow.messages(1).await;
    reacted(&mut willow, react(&message_id, "hug", true)).await;
    reacted(&mut willow, react(&message_id, "support", true)).await;
    reactions_reach(&mut cedar, &message_id, &counts(&[("hug", 1), ("support", 1)])).await;

    let reply = willow.request(ClientMessage::ForgetMe { id: None }).await;
    assert!(matches!(reply, ServerMessage::Forgotten { .. }), "{reply:?}");
    reactions_reach(&mut cedar, &message_id, &counts(&[])).await;
    let (mut newcomer, _) = d.a().member(None).await;
    let joined = newcomer.join(ROOM).await;
    assert_eq!(joined_parts(&joined).1[0].reactions, None, "no counts left on the message");
}

both_brokers!(
    forget_me_takes_back_the_members_reactions,
    a_node_that_opens_the_room_later_shows_the_pin_the_session_and_the_counts,
    a_member_unsends_their_own_message_and_no_one_elses,
    reactions_are_anonymous_counts_counted_once_across_nodes,
    reactions_are_rate_limited,
    a_pin_made_on_one_node_shows_on_every_node,
    a_session_starts_with_an_agenda_and_ends_with_a_note,
    a_newcomer_is_marked_for_staff_in_scope_only,
);

/// The operator may narrow the reactions or turn them off; `welcome` says which.
#[tokio::test]
async fn the_operator_chooses_the_reactions_and_welcome_lists_them() {
    for (configured, listed) in [(None, vec!["support", "hug", "same"]), (Some(vec!["same", "hug", "love"]), vec!["hug", "same"]), (Some(vec![]), vec![])] {
        let server = TestServer::with(|c| {
            if let Some(kinds) = &configured {
                c.limits.reactions = kinds.iter().map(|k| (*k).to_owned()).collect();
            }
        })
        .await;
        let (mut ann, welcome) = server.member(Some("Ann")).await;
        let ServerMessage::Welcome { limits, .. } = &welcome else { panic!("{welcome:?}") };
        assert_eq!(limits.reactions, listed, "configured {configured:?}");
        ann.join(ROOM).await;
        let (message_id, _) = ann.say(ROOM, "hello").await;
        for kind in ["support", "hug", "same"] {
            let reply = ann.request(react(&message_id, kind, true)).await;
            match reply {
                ServerMessage::Reacted { .. } => assert!(listed.contains(&kind), "{kind} accepted though not allowed"),
                ServerMessage::Error(e) => {
                    assert!(!listed.contains(&kind) && e.code == ErrorCode::BadRequest, "{kind}: {e:?}");
                    if listed.is_empty() {
                        assert!(e.message.contains("turned off"), "{e:?}");
                    }
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
