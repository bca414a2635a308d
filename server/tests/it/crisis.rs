//! The crisis pathway when nobody is watching (protocol v1.1 sections 1 and
//! 2): alerts are stored, reach staff in scope whether or not they joined
//! the room, wait for a facilitator who was offline, survive a restart, and
//! are resolved once for everyone; a staff token outside its scope is a
//! member in every way.

use crate::common::*;
use kindred_protocol::{AlertId, ClientMessage, ErrorCode, ModerationAction as A, NoticeKind, Role, RoomId, ServerMessage};
use std::time::Duration;

const CRISIS: &str = "honestly everyone would be better off without me";

/// The member's `crisis_resources` notice after a crisis message.
async fn crisis_notice(c: &mut TestClient) -> kindred_protocol::Notice {
    match c.expect("crisis resources", |m| matches!(m, ServerMessage::Notice(n) if n.kind == NoticeKind::CrisisResources)).await {
        ServerMessage::Notice(n) => n,
        _ => unreachable!(),
    }
}

async fn alert(c: &mut TestClient) -> (AlertId, String, u32, kindred_protocol::ChatMessage) {
    match c.expect("alert", |m| matches!(m, ServerMessage::Alert { .. })).await {
        ServerMessage::Alert { alert_id, at, facilitators_alerted, message, .. } => (alert_id, at, facilitators_alerted, message),
        _ => unreachable!(),
    }
}

fn no_alert(m: &Option<ServerMessage>) -> bool {
    m.as_ref().is_none_or(|m| !matches!(m, ServerMessage::Alert { .. }))
}

/// Nothing but `pred`-free frames for a while.
async fn quiet(c: &mut TestClient, what: &str, pred: impl Fn(&ServerMessage) -> bool) {
    c.assert_none_for(what, Duration::from_millis(400), pred).await;
}

#[tokio::test]
async fn with_nobody_on_duty_the_member_is_told_so_and_a_facilitator_who_signs_in_later_gets_the_alert() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(Some("Willow")).await;
    a.join("depression").await;
    let (message_id, _) = a.say("depression", CRISIS).await;
    let notice = crisis_notice(&mut a).await;
    assert_eq!(notice.facilitators_alerted, Some(0), "nobody was told, and the member hears so");
    assert!(notice.resources.is_some_and(|r| !r.is_empty()));

    // A facilitator signs in a minute later and joins no room: the alert comes right after welcome.
    let mut f = server.on_duty(Role::Facilitator, "Sam", Some(vec!["depression"])).await;
    let (alert_id, at, alerted, message) = alert(&mut f).await;
    assert_eq!(message.message_id.0, message_id);
    assert_eq!(message.text, CRISIS);
    assert_eq!(alerted, 0);
    assert!(chrono::DateTime::parse_from_rfc3339(&at).is_ok(), "{at}");

    // A second facilitator on duty; the first resolves the alert.
    let mut g = server.on_duty(Role::Admin, "Ana", None).await;
    assert_eq!(alert(&mut g).await.0, alert_id, "every open alert in scope after welcome");
    f.send(&ClientMessage::ResolveAlert { id: Some(7.into()), room: "depression".into(), alert_id: alert_id.clone(), note: Some("called back".into()) }).await;
    let reply = f.expect("alert_resolved reply", |m| matches!(m, ServerMessage::AlertResolved { .. })).await;
    assert_eq!(reply, ServerMessage::AlertResolved { id: Some(7.into()), room: "depression".into(), alert_id: alert_id.clone(), by: "Sam".into() });
    let event = g.expect("alert_resolved event", |m| matches!(m, ServerMessage::AlertResolved { .. })).await;
    assert_eq!(event, ServerMessage::AlertResolved { id: None, room: "depression".into(), alert_id: alert_id.clone(), by: "Sam".into() });
    quiet(&mut f, "second alert_resolved for the resolver", |m| matches!(m, ServerMessage::AlertResolved { .. })).await;

    // Resolved means never sent again, and a second resolve finds nothing open.
    let mut late = server.on_duty(Role::Admin, "Kim", None).await;
    assert!(no_alert(&late.try_recv(Duration::from_millis(400)).await));
    g.send(&ClientMessage::ResolveAlert { id: Some(8.into()), room: "depression".into(), alert_id, note: None }).await;
    g.expect_error(ErrorCode::NotFound).await;
    late.assert_alive().await;
}

#[tokio::test]
async fn an_alert_reaches_staff_in_scope_who_never_joined_the_room_and_nobody_out_of_scope() {
    let server = TestServer::start().await;
    let mut scoped = server.on_duty(Role::Facilitator, "Sam", Some(vec!["depression"])).await;
    let mut admin = server.on_duty(Role::Admin, "Ana", None).await;
    // Scoped to grief, but sitting in the depression room: a member there.
    let mut elsewhere = server.staff(Role::Facilitator, Some(vec!["grief"]), "depression").await;
    let (mut a, _) = server.member(Some("Willow")).await;
    a.join("depression").await;
    let (message_id, _) = a.say("depression", CRISIS).await;
    let notice = crisis_notice(&mut a).await;
    assert_eq!(notice.facilitators_alerted, Some(2));
    for c in [&mut scoped, &mut admin] {
        let (_, _, alerted, message) = alert(c).await;
        assert_eq!((message.message_id.0.as_str(), alerted), (message_id.as_str(), 2));
    }
    quiet(&mut elsewhere, "alert out of scope", |m| matches!(m, ServerMessage::Alert { .. })).await;
    // Out of scope may not resolve either, and a member may not.
    let open = server.app.moderation.open_alerts(|_| true);
    assert_eq!(open.len(), 1);
    elsewhere.send(&ClientMessage::ResolveAlert { id: Some(1.into()), room: "depression".into(), alert_id: open[0].alert_id.clone(), note: None }).await;
    elsewhere.expect_error(ErrorCode::Forbidden).await;
    a.send(&ClientMessage::ResolveAlert { id: Some(1.into()), room: "depression".into(), alert_id: open[0].alert_id.clone(), note: None }).await;
    a.expect_error(ErrorCode::Forbidden).await;
    assert_eq!(server.app.moderation.open_alerts(|_| true).len(), 1, "still open");
}

#[tokio::test]
async fn a_member_repeating_themselves_raises_one_open_alert() {
    let server = TestServer::start().await;
    let mut f = server.on_duty(Role::Facilitator, "Sam", None).await;
    let (mut a, _) = server.member(Some("Willow")).await;
    a.join("anxiety").await;
    for _ in 0..3 {
        a.say("anxiety", "I want to die").await;
        assert_eq!(crisis_notice(&mut a).await.facilitators_alerted, Some(1), "each time the member hears someone knows");
    }
    alert(&mut f).await;
    quiet(&mut f, "a second alert for the same member", |m| matches!(m, ServerMessage::Alert { .. })).await;
    assert_eq!(server.app.moderation.open_alerts(|_| true).len(), 1);
    let metrics = crate::session::http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("kindred_alerts_total 1\n"), "{metrics}");
    assert!(metrics.contains("kindred_alert_delivery_seconds_count 1\n"), "{metrics}");
}

#[tokio::test]
async fn open_alerts_survive_a_restart_and_resolved_ones_stay_resolved() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(Some("Willow")).await;
    a.join("grief").await;
    a.say("grief", CRISIS).await;
    crisis_notice(&mut a).await;
    let (mut b, _) = server.member(Some("Cedar")).await;
    b.join("pet-loss").await;
    b.say("pet-loss", "I keep thinking about how to end my life").await;
    crisis_notice(&mut b).await;
    let data = server.stop().await;

    let server = TestServer::with_data(data, |_| {}).await;
    let mut f = server.on_duty(Role::Admin, "Ana", None).await;
    let (first, ..) = alert(&mut f).await;
    let (second, _, _, message) = alert(&mut f).await;
    assert_eq!(message.room, RoomId::from("pet-loss"), "in the order they were raised");
    f.send(&ClientMessage::ResolveAlert { id: Some(1.into()), room: "grief".into(), alert_id: first, note: None }).await;
    f.expect("resolved", |m| matches!(m, ServerMessage::AlertResolved { .. })).await;
    let data = server.stop().await;

    let server = TestServer::with_data(data, |_| {}).await;
    let mut g = server.on_duty(Role::Admin, "Kim", None).await;
    assert_eq!(alert(&mut g).await.0, second, "only the open one comes back");
    assert!(no_alert(&g.try_recv(Duration::from_millis(400)).await));
}

#[tokio::test]
async fn forget_me_erases_the_text_of_the_members_alert_but_not_the_alert() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(Some("Willow")).await;
    a.join("recovery").await;
    a.say("recovery", CRISIS).await;
    crisis_notice(&mut a).await;
    a.send(&ClientMessage::ForgetMe { id: Some(1.into()) }).await;
    a.expect("forgotten", |m| matches!(m, ServerMessage::Forgotten { .. })).await;
    let mut f = server.on_duty(Role::Admin, "Ana", None).await;
    let (_, _, _, message) = alert(&mut f).await;
    assert_eq!(message.text, "", "the member's words are gone");
    assert!(!std::fs::read_to_string(server.app.config.data_dir.join("moderation.json")).unwrap().contains("better off without me"));
}

#[tokio::test]
async fn out_of_scope_a_facilitator_is_a_member_in_every_way() {
    let server = TestServer::with(|c| {
        c.rooms.iter_mut().filter(|r| r.id.as_str() == "anxiety").for_each(|r| r.requires_facilitator = true);
    })
    .await;
    let (mut a, _) = server.member(Some("Willow")).await;
    a.join("anxiety").await;
    // Sam may moderate grief only, and joins anxiety.
    let mut sam = server.client().await;
    let token = server.app.auth.staff_token(Role::Facilitator, "Sam", Some(vec!["grief".into()]), Duration::from_secs(3600));
    sam.hello(Some(&token), None).await;
    let joined = sam.join("anxiety").await;
    let (me, ..) = joined_parts(&joined);
    assert_eq!(me.role, Role::Member, "no Facilitator badge out of scope");
    let sam_id = me.member_id.clone();
    let seen = a.expect("sam's presence", |m| matches!(m, ServerMessage::Presence { joined: Some(_), .. })).await;
    assert!(matches!(seen, ServerMessage::Presence { joined: Some(m), .. } if m.role == Role::Member));

    // Does not satisfy requires_facilitator: members still cannot post.
    a.send(&ClientMessage::Send { id: Some(1.into()), room: "anxiety".into(), text: "hello?".into(), reply_to: None, cw: None, staff: false }).await;
    let e = a.expect_error(ErrorCode::WaitingForFacilitator).await;
    assert!(e.id.is_some());
    // Cannot use the staff channel, and is held to the same rule as members.
    sam.send(&ClientMessage::Send { id: Some(2.into()), room: "anxiety".into(), text: "staff note".into(), reply_to: None, cw: None, staff: true }).await;
    sam.expect_error(ErrorCode::Forbidden).await;
    sam.send(&ClientMessage::Send { id: Some(3.into()), room: "anxiety".into(), text: "hi".into(), reply_to: None, cw: None, staff: false }).await;
    sam.expect_error(ErrorCode::WaitingForFacilitator).await;

    // An in-scope facilitator arrives: Sam sees no staff traffic.
    let mut f = server.staff(Role::Facilitator, Some(vec!["anxiety"]), "anxiety").await;
    let (message_id, _) = a.say("anxiety", "my panic attacks are back").await;
    f.send(&ClientMessage::Send { id: Some(4.into()), room: "anxiety".into(), text: "keep an eye on Willow".into(), reply_to: None, cw: None, staff: true })
        .await;
    f.expect("staff copy", |m| matches!(m, ServerMessage::Message(msg) if msg.staff)).await;
    a.send(&ClientMessage::Report { id: Some(5.into()), room: "anxiety".into(), message_id: message_id.as_str().into(), reason: "test".into() }).await;
    a.expect("reported", |m| matches!(m, ServerMessage::Reported { .. })).await;
    f.expect("report_filed", |m| matches!(m, ServerMessage::ReportFiled { .. })).await;
    a.send(&ClientMessage::RaiseHand { id: None, room: "anxiety".into() }).await;
    f.expect("hands", |m| matches!(m, ServerMessage::Hands { queue, .. } if !queue.is_empty())).await;
    a.say("anxiety", CRISIS).await;
    f.expect("alert", |m| matches!(m, ServerMessage::Alert { .. })).await;
    quiet(&mut sam, "staff traffic out of scope", |m| {
        matches!(m, ServerMessage::Message(msg) if msg.staff)
            || matches!(m, ServerMessage::ReportFiled { .. } | ServerMessage::Hands { .. } | ServerMessage::Alert { .. })
    })
    .await;
    // Members cannot whisper to Sam here: Sam is not staff in this room.
    a.send(&ClientMessage::Whisper { id: Some(6.into()), room: "anxiety".into(), to: sam_id.clone(), text: "help".into() }).await;
    a.expect_error(ErrorCode::Forbidden).await;

    // Locks and slow mode apply to Sam as to any member.
    f.moderate("anxiety", A::SlowMode { seconds: 60 }).await;
    sam.say("anxiety", "first").await;
    sam.send(&ClientMessage::Send { id: Some(7.into()), room: "anxiety".into(), text: "second".into(), reply_to: None, cw: None, staff: false }).await;
    sam.expect_error(ErrorCode::SlowMode).await;
    f.moderate("anxiety", A::Lock).await;
    let mut kai = server.client().await;
    let token = server.app.auth.staff_token(Role::Facilitator, "Kai", Some(vec!["grief".into()]), Duration::from_secs(3600));
    kai.hello(Some(&token), None).await;
    kai.send(&ClientMessage::Join { id: Some(1.into()), room: "anxiety".into(), accept_rules: Some(1), since: None }).await;
    kai.expect_error(ErrorCode::RoomLocked).await;
}

#[tokio::test]
async fn the_notice_speaks_the_members_language_and_lists_its_helplines_first() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    a.send(&ClientMessage::Hello { id: Some(1.into()), token: None, handle: Some("Sol".into()), locale: Some("es-MX".into()) }).await;
    a.expect("welcome", |m| matches!(m, ServerMessage::Welcome { .. })).await;
    a.join("grief").await; // an English room: members write in their own language
    a.say("grief", "ya no puedo más, quiero morir").await;
    let notice = crisis_notice(&mut a).await;
    assert_eq!(notice.facilitators_alerted, Some(0));
    let english = server.app.safety.crisis_text(Some("en"), 0);
    assert_ne!(notice.text, english, "es-MX falls back to Spanish, not English");
    assert_eq!(notice.text, server.app.safety.crisis_text(Some("es"), 0));
    let first = &notice.resources.expect("resources")[0];
    assert!(first.contact.contains("024"), "the Spanish helpline first: {first:?}");
}
