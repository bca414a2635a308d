//! Every moderation action and its effect on other clients; every forbidden path.

use crate::common::*;
use kindred_protocol::client::ReportResolution;
use kindred_protocol::{ClientMessage, ErrorCode, MessageId, ModerationAction as A, NoticeKind, RemovedReason, Role, RoomMode, ServerMessage};
use std::time::Duration;

#[tokio::test]
async fn a_deleted_message_disappears_for_everyone_and_from_history() {
    let server = TestServer::start().await;
    let mut f = server.staff(Role::Facilitator, Some(vec!["grief"]), "grief").await;
    let (mut a, _) = server.member_in("grief", Some("Willow")).await;
    let (mut b, _) = server.member_in("grief", Some("Cedar")).await;
    let (message_id, _) = a.say("grief", "something hurtful").await;
    a.say("grief", "something kind").await;
    let reply = f.moderate("grief", A::DeleteMessage { message_id: MessageId(message_id.clone()), reason: Some("off topic".into()) }).await;
    moderated(&reply);
    for c in [&mut a, &mut b] {
        let got = c.expect("message_deleted", |m| matches!(m, ServerMessage::MessageDeleted { .. })).await;
        assert_eq!(got, ServerMessage::MessageDeleted { room: "grief".into(), message_id: MessageId(message_id.clone()) });
    }
    let (_, _) = server.member_in("grief", Some("Latecomer")).await;
    let (mut late, _) = server.member(None).await;
    let joined = late.join("grief").await;
    let texts: Vec<&str> = joined_parts(&joined).1.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["something kind"], "gone from history");
}

#[tokio::test]
async fn warn_reaches_the_member_alone_with_the_reason() {
    let server = TestServer::start().await;
    let mut f = server.staff(Role::Facilitator, None, "anxiety").await;
    let (mut a, a_id) = server.member_in("anxiety", Some("Willow")).await;
    let (mut b, _) = server.member_in("anxiety", Some("Cedar")).await;
    moderated(&f.moderate("anxiety", A::Warn { member_id: a_id, reason: "Please keep advice gentle".into() }).await);
    let got = a.expect("notice", |m| matches!(m, ServerMessage::Notice(_))).await;
    assert!(matches!(got, ServerMessage::Notice(n) if n.kind == NoticeKind::Warning && n.text == "Please keep advice gentle"));
    assert!(b.try_recv(Duration::from_millis(300)).await.is_none_or(|m| !matches!(m, ServerMessage::Notice(_))));
}

#[tokio::test]
async fn a_timed_mute_silences_then_ends_by_itself() {
    let server = TestServer::start().await;
    let mut f = server.staff(Role::Facilitator, None, "recovery").await;
    let (mut a, a_id) = server.member_in("recovery", Some("Willow")).await;
    let (mut b, _) = server.member_in("recovery", Some("Cedar")).await;
    moderated(&f.moderate("recovery", A::Mute { member_id: a_id.clone(), duration_s: Some(1), reason: Some("take a breather".into()) }).await);
    let update = b.expect("member_update", |m| matches!(m, ServerMessage::MemberUpdate { .. })).await;
    assert!(matches!(&update, ServerMessage::MemberUpdate { member, .. } if member.muted && member.muted_until.is_some()));
    let notice = a.expect("warning", |m| matches!(m, ServerMessage::Notice(_))).await;
    assert!(matches!(notice, ServerMessage::Notice(n) if n.text.contains("take a breather")));
    a.send(&ClientMessage::Send { id: Some(1.into()), room: "recovery".into(), text: "hello?".into(), reply_to: None, cw: None, staff: false }).await;
    let e = a.expect_error(ErrorCode::Muted).await;
    assert!(e.until.is_some() && e.message.contains("take a breather"));
    // It ends by itself and the room is told.
    let update = b.expect("unmute update", |m| matches!(m, ServerMessage::MemberUpdate { member, .. } if !member.muted)).await;
    assert!(matches!(update, ServerMessage::MemberUpdate { member, .. } if member.member_id == a_id));
    a.say("recovery", "thank you, I'm calmer now").await;
}

#[tokio::test]
async fn kick_removes_with_the_reason_and_allows_a_return() {
    let server = TestServer::start().await;
    let mut f = server.staff(Role::Facilitator, None, "veterans").await;
    let (mut a, a_id) = server.member_in("veterans", Some("Willow")).await;
    let (mut b, _) = server.member_in("veterans", Some("Cedar")).await;
    moderated(&f.moderate("veterans", A::Kick { member_id: a_id.clone(), reason: Some("let's take a break".into()) }).await);
    let removed = a.expect("removed", |m| matches!(m, ServerMessage::Removed { .. })).await;
    assert_eq!(
        removed,
        ServerMessage::Removed { room: "veterans".into(), reason: RemovedReason::Kicked, note: Some("let's take a break".into()), until: None }
    );
    let left = b.expect("presence left", |m| matches!(m, ServerMessage::Presence { left: Some(_), .. })).await;
    assert!(matches!(left, ServerMessage::Presence { left: Some(id), .. } if id == a_id));
    a.send(&ClientMessage::Send { id: Some(1.into()), room: "veterans".into(), text: "x".into(), reply_to: None, cw: None, staff: false }).await;
    a.expect_error(ErrorCode::NotMember).await;
    a.join("veterans").await;
}

#[tokio::test]
async fn a_ban_keeps_the_member_out_until_lifted_and_survives_a_restart() {
    let server = TestServer::start().await;
    let mut f = server.staff(Role::Facilitator, None, "parenting").await;
    let (mut a, welcome) = server.member(Some("Willow")).await;
    let a_id = a.join_returning_id("parenting").await;
    moderated(&f.moderate("parenting", A::Ban { member_id: a_id.clone(), duration_s: None, reason: Some("repeated harassment".into()), service: false }).await);
    let removed = a.expect("removed", |m| matches!(m, ServerMessage::Removed { .. })).await;
    assert!(matches!(removed, ServerMessage::Removed { reason: RemovedReason::Banned, note: Some(ref n), .. } if n == "repeated harassment"));
    a.send(&ClientMessage::Join { id: Some(1.into()), room: "parenting".into(), accept_rules: Some(1), since: None }).await;
    a.expect_error(ErrorCode::Banned).await;
    // Another room is fine.
    a.join("caregivers").await;

    let data = server.stop().await;
    let server = TestServer::with_data(data, |_| {}).await;
    let mut a = server.client().await;
    a.hello(Some(&token_of(&welcome)), None).await;
    a.send(&ClientMessage::Join { id: Some(2.into()), room: "parenting".into(), accept_rules: Some(1), since: None }).await;
    let e = a.expect_error(ErrorCode::Banned).await;
    assert_eq!(e.message, "repeated harassment");
    let mut f = server.staff(Role::Facilitator, None, "parenting").await;
    moderated(&f.moderate("parenting", A::Unban { member_id: a_id, reason: None }).await);
    a.join("parenting").await;
}

#[tokio::test]
async fn room_settings_change_for_everyone() {
    let server = TestServer::start().await;
    let mut f = server.staff(Role::Admin, None, "depression").await;
    let (mut a, _) = server.member_in("depression", Some("Willow")).await;
    moderated(&f.moderate("depression", A::SetTopic { text: "Small wins this week".into() }).await);
    let update = a.expect("room_update", |m| matches!(m, ServerMessage::RoomUpdate { .. })).await;
    assert!(matches!(update, ServerMessage::RoomUpdate { info, .. } if info.topic_now.as_deref() == Some("Small wins this week")));

    moderated(&f.moderate("depression", A::SlowMode { seconds: 30 }).await);
    a.expect("room_update", |m| matches!(m, ServerMessage::RoomUpdate { info, .. } if info.slow_mode_s == 30)).await;
    a.say("depression", "first").await;
    a.send(&ClientMessage::Send { id: Some(1.into()), room: "depression".into(), text: "second".into(), reply_to: None, cw: None, staff: false }).await;
    let e = a.expect_error(ErrorCode::SlowMode).await;
    assert!(e.retry_after_ms.unwrap() > 25_000);
    moderated(&f.moderate("depression", A::SlowMode { seconds: 0 }).await);
    a.say("depression", "second").await;

    moderated(&f.moderate("depression", A::Lock).await);
    a.expect("room_update", |m| matches!(m, ServerMessage::RoomUpdate { info, .. } if info.summary.locked)).await;
    let (mut b, _) = server.member(None).await;
    b.send(&ClientMessage::Join { id: Some(1.into()), room: "depression".into(), accept_rules: Some(1), since: None }).await;
    b.expect_error(ErrorCode::RoomLocked).await;
    moderated(&f.moderate("depression", A::Unlock).await);
    b.join("depression").await;
}

#[tokio::test]
async fn structured_mode_passes_the_floor() {
    let server = TestServer::start().await;
    let mut f = server.staff(Role::Facilitator, None, "mens-circle").await;
    let (mut a, a_id) = server.member_in("mens-circle", Some("Willow")).await;
    moderated(&f.moderate("mens-circle", A::SetMode { mode: RoomMode::Structured }).await);
    a.expect("room_update", |m| matches!(m, ServerMessage::RoomUpdate { info, .. } if info.summary.mode == RoomMode::Structured)).await;
    a.send(&ClientMessage::Send { id: Some(1.into()), room: "mens-circle".into(), text: "can I speak?".into(), reply_to: None, cw: None, staff: false }).await;
    a.expect_error(ErrorCode::NotYourTurn).await;
    a.send(&ClientMessage::RaiseHand { id: None, room: "mens-circle".into() }).await;
    let hands = f.expect("hands", |m| matches!(m, ServerMessage::Hands { queue, .. } if !queue.is_empty())).await;
    assert_eq!(hands, ServerMessage::Hands { room: "mens-circle".into(), queue: vec![a_id.clone()] });
    moderated(&f.moderate("mens-circle", A::GiveFloor { member_id: a_id.clone() }).await);
    a.expect("has_floor", |m| matches!(m, ServerMessage::MemberUpdate { member, .. } if member.has_floor)).await;
    a.say("mens-circle", "thanks for the space").await;
    f.say("mens-circle", "facilitators can always speak").await;
    moderated(&f.moderate("mens-circle", A::EndFloor { member_id: None }).await);
    a.expect("floor ended", |m| matches!(m, ServerMessage::MemberUpdate { member, .. } if !member.has_floor)).await;
    a.send(&ClientMessage::Send { id: Some(2.into()), room: "mens-circle".into(), text: "one more".into(), reply_to: None, cw: None, staff: false }).await;
    a.expect_error(ErrorCode::NotYourTurn).await;
}

#[tokio::test]
async fn moderation_is_authorized_on_the_server() {
    let server = TestServer::start().await;
    let (mut a, a_id) = server.member_in("grief", Some("Willow")).await;
    let (mut b, b_id) = server.member_in("grief", Some("Cedar")).await;
    // A member cannot moderate.
    let reply = b.moderate("grief", A::Kick { member_id: a_id.clone(), reason: None }).await;
    assert!(matches!(reply, ServerMessage::Error(ref e) if e.code == ErrorCode::Forbidden), "{reply:?}");
    // A facilitator of another room cannot either.
    let mut f = server.staff(Role::Facilitator, Some(vec!["anxiety"]), "grief").await;
    let reply = f.moderate("grief", A::Kick { member_id: a_id.clone(), reason: None }).await;
    assert!(matches!(reply, ServerMessage::Error(ref e) if e.code == ErrorCode::Forbidden), "{reply:?}");
    // Nor may a facilitator ban from the whole service: that is for admins.
    let mut g = server.staff(Role::Facilitator, None, "grief").await;
    let reply = g.moderate("grief", A::Ban { member_id: a_id.clone(), duration_s: None, reason: None, service: true }).await;
    assert!(matches!(reply, ServerMessage::Error(ref e) if e.code == ErrorCode::Forbidden), "{reply:?}");
    // Members cannot whisper to members.
    a.send(&ClientMessage::Whisper { id: Some(1.into()), room: "grief".into(), to: b_id.clone(), text: "psst".into() }).await;
    a.expect_error(ErrorCode::Forbidden).await;
    // Nothing happened to anyone.
    b.say("grief", "still here").await;
    let _ = a.messages(1).await;
}

#[tokio::test]
async fn whispers_go_between_a_member_and_a_facilitator_only() {
    let server = TestServer::start().await;
    let (mut f, f_id) = server.staff_in(Role::Facilitator, None, "chronic-illness").await;
    let (mut a, a_id) = server.member_in("chronic-illness", Some("Willow")).await;
    let (mut b, _) = server.member_in("chronic-illness", Some("Cedar")).await;
    f.send(&ClientMessage::Whisper { id: Some(1.into()), room: "chronic-illness".into(), to: a_id.clone(), text: "How are you holding up?".into() }).await;
    f.expect("whispered", |m| matches!(m, ServerMessage::Whispered { .. })).await;
    let got = a.expect("whisper", |m| matches!(m, ServerMessage::Whisper { .. })).await;
    assert!(matches!(got, ServerMessage::Whisper { ref text, ref to, .. } if text == "How are you holding up?" && *to == a_id));
    a.send(&ClientMessage::Whisper { id: Some(2.into()), room: "chronic-illness".into(), to: f_id, text: "Not great, honestly".into() }).await;
    a.expect("whispered", |m| matches!(m, ServerMessage::Whispered { .. })).await;
    f.expect("reply whisper", |m| matches!(m, ServerMessage::Whisper { text, .. } if text == "Not great, honestly")).await;
    assert!(b.try_recv(Duration::from_millis(300)).await.is_none_or(|m| !matches!(m, ServerMessage::Whisper { .. })));
}

#[tokio::test]
async fn the_staff_channel_is_for_facilitators_and_leaves_no_gap_for_members() {
    let server = TestServer::start().await;
    let mut f = server.staff(Role::Facilitator, None, "lgbtq").await;
    let mut g = server.staff(Role::Facilitator, None, "lgbtq").await;
    let (mut a, _) = server.member_in("lgbtq", Some("Willow")).await;
    let (_, first) = a.say("lgbtq", "hi all").await;
    f.send(&ClientMessage::Send { id: Some(1.into()), room: "lgbtq".into(), text: "keep an eye on Willow".into(), reply_to: None, cw: None, staff: true })
        .await;
    g.expect("staff message", |m| matches!(m, ServerMessage::Message(msg) if msg.staff && msg.text == "keep an eye on Willow")).await;
    let (_, second) = a.say("lgbtq", "thanks for having me").await;
    assert_eq!(second, first + 1, "no hole in the members' sequence");
    let got = a.messages(1).await;
    assert!(got.iter().all(|m| !m.staff), "members never see the staff channel");
    let (mut late, _) = server.member(None).await;
    let joined = late.join("lgbtq").await;
    let texts: Vec<&str> = joined_parts(&joined).1.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["hi all", "thanks for having me"], "nor its history");
    let joined = g.join("lgbtq").await;
    assert!(joined_parts(&joined).1.iter().any(|m| m.staff), "facilitators do see it in history");
}

#[tokio::test]
async fn reports_reach_facilitators_now_and_later_until_resolved() {
    let server = TestServer::start().await;
    let mut f = server.staff(Role::Facilitator, None, "families-of-addiction").await;
    let (mut a, _) = server.member_in("families-of-addiction", Some("Willow")).await;
    let (mut b, _) = server.member_in("families-of-addiction", Some("Cedar")).await;
    let (message_id, _) = a.say("families-of-addiction", "you people are pathetic").await;
    b.send(&ClientMessage::Report {
        id: Some(1.into()),
        room: "families-of-addiction".into(),
        message_id: MessageId(message_id.clone()),
        reason: "insulting".into(),
    })
    .await;
    let ServerMessage::Reported { report_id, .. } = b.expect("reported", |m| matches!(m, ServerMessage::Reported { .. })).await else { unreachable!() };
    let filed = f.expect("report_filed", |m| matches!(m, ServerMessage::ReportFiled { .. })).await;
    assert!(matches!(&filed, ServerMessage::ReportFiled { report, .. } if report.message.message_id.0 == message_id && report.reason == "insulting"));
    // A facilitator who joins later sees it too.
    let mut late = server.staff(Role::Facilitator, None, "families-of-addiction").await;
    late.expect("open report", |m| matches!(m, ServerMessage::ReportFiled { report, .. } if report.id == report_id)).await;
    // Members cannot resolve; the facilitator can.
    b.send(&ClientMessage::ResolveReport {
        id: Some(2.into()),
        room: "families-of-addiction".into(),
        report_id: report_id.clone(),
        resolution: ReportResolution::Dismissed,
    })
    .await;
    b.expect_error(ErrorCode::Forbidden).await;
    f.send(&ClientMessage::ResolveReport {
        id: Some(3.into()),
        room: "families-of-addiction".into(),
        report_id: report_id.clone(),
        resolution: ReportResolution::Acted,
    })
    .await;
    f.expect("resolved", |m| matches!(m, ServerMessage::ReportResolved { id: Some(_), .. })).await;
    let mut later = server.staff(Role::Facilitator, None, "families-of-addiction").await;
    assert!(later.try_recv(Duration::from_millis(300)).await.is_none_or(|m| !matches!(m, ServerMessage::ReportFiled { .. })));
    // The audit log holds the report (with the quoted text) and the resolution.
    let audit = server.app.moderation.audit_log(10).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["report", "resolve_report"]);
}

#[tokio::test]
async fn an_admin_service_ban_closes_every_connection_with_4403() {
    let server = TestServer::start().await;
    let mut admin = server.staff(Role::Admin, None, "new-in-town").await;
    let (mut a, welcome) = server.member(None).await;
    let a_id = a.join_returning_id("new-in-town").await;
    let mut a2 = server.client().await;
    a2.hello(Some(&token_of(&welcome)), None).await;
    moderated(&admin.moderate("new-in-town", A::Ban { member_id: a_id, duration_s: Some(3600), reason: Some("spam".into()), service: true }).await);
    assert_eq!(a.closed(WAIT).await, Closed::Code(4403));
    assert_eq!(a2.closed(WAIT).await, Closed::Code(4403));
    let mut again = server.client().await;
    again.send(&ClientMessage::Hello { id: Some(1.into()), token: Some(token_of(&welcome)), handle: None, locale: None }).await;
    let e = again.expect_error(ErrorCode::Banned).await;
    assert!(e.until.is_some());
    assert_eq!(again.closed(WAIT).await, Closed::Code(4403));
}

#[tokio::test]
async fn forget_me_erases_the_members_messages_and_ends_its_token() {
    let server = TestServer::start().await;
    let (mut a, welcome) = server.member(Some("Willow")).await;
    let (mut b, _) = server.member_in("pet-loss", Some("Cedar")).await;
    a.join("pet-loss").await;
    let (m1, _) = a.say("pet-loss", "My cat Miso died on Sunday").await;
    let (m2, _) = a.say("pet-loss", "I keep looking for her").await;
    b.say("pet-loss", "I'm so sorry").await;
    a.send(&ClientMessage::ForgetMe { id: Some(9.into()) }).await;
    a.expect("forgotten", |m| matches!(m, ServerMessage::Forgotten { .. })).await;
    assert_eq!(a.closed(WAIT).await, Closed::Code(1000));
    for id in [m1, m2] {
        b.expect("message_deleted", |m| matches!(m, ServerMessage::MessageDeleted { message_id, .. } if message_id.0 == id)).await;
    }
    let (mut c, _) = server.member(None).await;
    let joined = c.join("pet-loss").await;
    let texts: Vec<&str> = joined_parts(&joined).1.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["I'm so sorry"]);
    let mut back = server.client().await;
    back.send(&ClientMessage::Hello { id: Some(1.into()), token: Some(token_of(&welcome)), handle: None, locale: None }).await;
    back.expect_error(ErrorCode::Unauthorized).await;
}

#[tokio::test]
async fn a_facilitator_whose_token_expires_is_asked_to_sign_in_again() {
    let server = TestServer::start().await;
    let token = server.app.auth.staff_token(Role::Facilitator, "Sam", None, Duration::from_secs(1));
    let mut f = server.client().await;
    f.hello(Some(&token), None).await;
    let notice = f.expect("system notice", |m| matches!(m, ServerMessage::Notice(_))).await;
    assert!(matches!(notice, ServerMessage::Notice(n) if n.kind == NoticeKind::System));
    assert_eq!(f.closed(WAIT).await, Closed::Code(4401));
}

#[tokio::test]
async fn a_kicked_member_is_not_held_to_the_room_it_was_removed_from() {
    let server = TestServer::with(|c| c.limits.max_rooms_per_connection = 1).await;
    let mut f = server.staff(Role::Facilitator, None, "anxiety").await;
    let (mut a, a_id) = server.member_in("anxiety", Some("Willow")).await;
    moderated(&f.moderate("anxiety", A::Kick { member_id: a_id, reason: Some("take a pause".into()) }).await);
    a.expect("removed", |m| matches!(m, ServerMessage::Removed { .. })).await;
    // The room it was removed from no longer counts against its room limit.
    a.join("grief").await;
}
