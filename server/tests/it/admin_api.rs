//! The admin HTTP API, its authorization, and what survives a restart.

use crate::common::*;
use kindred_protocol::{ClientMessage, ErrorCode, ModerationAction as A, NoticeKind, RemovedReason, Role, ServerMessage};
use std::time::Duration;

/// A raw HTTP/1.1 request; (status, body).
pub(crate) async fn request(server: &TestServer, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out)).await.unwrap().unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn admin_token(server: &TestServer) -> String {
    server.app.auth.staff_token(Role::Admin, "Alex Admin", None, Duration::from_secs(3600))
}

pub(crate) const NEW_ROOM: &str = r#"{"id":"widowed-young","name":"Widowed young","topic":"grief","description":"For people who lost a partner early.","tags":["grief","partner"],"capacity":12,"rules":"Be gentle.","rules_version":1}"#;

#[tokio::test]
async fn only_admins_may_use_the_api() {
    let server = TestServer::start().await;
    let (_, welcome) = server.member(None).await;
    let facilitator = server.app.auth.staff_token(Role::Facilitator, "Sam", None, Duration::from_secs(60));
    assert_eq!(request(&server, "GET", "/api/reports", None, None).await.0, 401);
    assert_eq!(request(&server, "GET", "/api/reports", Some("garbage"), None).await.0, 401);
    assert_eq!(request(&server, "GET", "/api/reports", Some(&token_of(&welcome)), None).await.0, 401, "a member's session token is no credential here");
    assert_eq!(request(&server, "POST", "/api/rooms", Some(&facilitator), Some(NEW_ROOM)).await.0, 403);
    assert_eq!(request(&server, "GET", "/api/reports", Some(&admin_token(&server)), None).await.0, 200);
}

#[tokio::test]
async fn admins_create_update_and_close_rooms() {
    let server = TestServer::start().await;
    let token = admin_token(&server);
    let (status, body) = request(&server, "POST", "/api/rooms", Some(&token), Some(NEW_ROOM)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(request(&server, "POST", "/api/rooms", Some(&token), Some(NEW_ROOM)).await.0, 409);
    let (status, body) = request(&server, "POST", "/api/rooms", Some(&token), Some(r#"{"id":"Bad Id!","name":"x"}"#)).await;
    assert_eq!(status, 400);
    assert!(body.contains("bad_request"), "{body}");
    assert_eq!(request(&server, "POST", "/api/rooms", Some(&token), Some("{not json")).await.0, 400);
    assert_eq!(request(&server, "PATCH", "/api/rooms/nowhere", Some(&token), Some("{}")).await.0, 404);

    let (mut a, _) = server.member(None).await;
    a.join("widowed-young").await;
    // New rules: the version goes up, the room is told, and a newcomer must accept the new rules.
    let (status, body) =
        request(&server, "PATCH", "/api/rooms/widowed-young", Some(&token), Some(r#"{"rules":"Be gentle. No advice unless asked.","capacity":8}"#)).await;
    assert_eq!(status, 200, "{body}");
    let update = a.expect("room_update", |m| matches!(m, ServerMessage::RoomUpdate { .. })).await;
    assert!(matches!(update, ServerMessage::RoomUpdate { info, .. } if info.summary.rules_version == 2 && info.summary.capacity == 8));
    let (mut b, _) = server.member(None).await;
    b.send(&ClientMessage::Join { id: Some(1.into()), room: "widowed-young".into(), accept_rules: Some(1), since: None }).await;
    let e = b.expect_error(ErrorCode::RulesNotAccepted).await;
    assert_eq!(e.rules_version, Some(2));
    assert_eq!(e.rules.as_deref(), Some("Be gentle. No advice unless asked."));

    let (status, _) = request(&server, "POST", "/api/rooms/widowed-young/notice", Some(&token), Some(r#"{"text":"This room closes in 5 minutes."}"#)).await;
    assert_eq!(status, 204);
    a.expect("system notice", |m| matches!(m, ServerMessage::Notice(n) if n.kind == NoticeKind::System)).await;

    assert_eq!(request(&server, "DELETE", "/api/rooms/widowed-young", Some(&token), None).await.0, 204);
    let removed = a.expect("removed", |m| matches!(m, ServerMessage::Removed { .. })).await;
    assert!(matches!(removed, ServerMessage::Removed { reason: RemovedReason::Closed, .. }));
    let audit = request(&server, "GET", "/api/audit?limit=10", Some(&token), None).await.1;
    for action in ["create_room", "update_room", "notice", "close_room"] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
}

#[tokio::test]
async fn rooms_mutes_reports_and_the_audit_log_survive_a_restart() {
    let server = TestServer::start().await;
    let token = admin_token(&server);
    assert_eq!(request(&server, "POST", "/api/rooms", Some(&token), Some(NEW_ROOM)).await.0, 201);
    assert_eq!(request(&server, "DELETE", "/api/rooms/veterans", Some(&token), None).await.0, 204);
    let mut f = server.staff(Role::Facilitator, None, "grief").await;
    let (mut a, welcome) = server.member(None).await;
    let a_id = a.join_returning_id("grief").await;
    let (message_id, _) = a.say("grief", "a hurtful message").await;
    let mut b = server.member(None).await.0;
    b.join("grief").await;
    b.send(&ClientMessage::Report { id: Some(1.into()), room: "grief".into(), message_id: kindred_protocol::MessageId(message_id), reason: "unkind".into() })
        .await;
    b.expect("reported", |m| matches!(m, ServerMessage::Reported { .. })).await;
    let reply = f.moderate("grief", A::Mute { member_id: a_id, duration_s: None, reason: Some("cooling off".into()) }).await;
    assert!(matches!(reply, ServerMessage::Moderated { .. }));

    let server = TestServer::with_data(server.stop().await, |_| {}).await;
    let (mut c, _) = server.member(None).await;
    c.send(&ClientMessage::ListRooms { id: None }).await;
    let ServerMessage::Rooms { rooms, .. } = c.expect("rooms", |m| matches!(m, ServerMessage::Rooms { .. })).await else { unreachable!() };
    assert!(rooms.iter().any(|r| r.id.as_str() == "widowed-young"), "the API-made room is back");
    assert!(!rooms.iter().any(|r| r.id.as_str() == "veterans"), "the closed room stays closed");
    let mut a = server.client().await;
    a.hello(Some(&token_of(&welcome)), None).await;
    let joined = a.join("grief").await;
    assert!(joined_parts(&joined).0.muted, "still muted");
    a.send(&ClientMessage::Send { id: Some(1.into()), room: "grief".into(), text: "hello?".into(), reply_to: None, cw: None, staff: false }).await;
    a.expect_error(ErrorCode::Muted).await;
    let mut f = server.staff(Role::Facilitator, None, "grief").await;
    f.expect("open report", |m| matches!(m, ServerMessage::ReportFiled { report, .. } if report.reason == "unkind")).await;
    let reports = request(&server, "GET", "/api/reports", Some(&admin_token(&server)), None).await.1;
    assert!(reports.contains("unkind"), "{reports}");
    let audit = request(&server, "GET", "/api/audit", Some(&admin_token(&server)), None).await.1;
    assert!(audit.contains("\"mute\"") && audit.contains("create_room"), "{audit}");
}

#[tokio::test]
async fn a_room_that_requires_a_facilitator_waits_for_one() {
    let server = TestServer::start().await;
    let token = admin_token(&server);
    let spec = r#"{"id":"circle","name":"Circle","topic":"grief","requires_facilitator":true}"#;
    assert_eq!(request(&server, "POST", "/api/rooms", Some(&token), Some(spec)).await.0, 201);
    let (mut a, _) = server.member(None).await;
    a.join("circle").await;
    a.send(&ClientMessage::Send { id: Some(1.into()), room: "circle".into(), text: "hello?".into(), reply_to: None, cw: None, staff: false }).await;
    a.expect_error(ErrorCode::WaitingForFacilitator).await;
    let _f = server.staff(Role::Facilitator, None, "circle").await;
    a.say("circle", "hello!").await;
}

#[tokio::test]
async fn a_member_token_is_unauthorized_and_every_room_field_is_bounded() {
    let server = TestServer::start().await;
    let (_, welcome) = server.member(None).await;
    assert_eq!(request(&server, "GET", "/api/rooms", Some(&token_of(&welcome)), None).await.0, 401, "a session token is no admin credential");
    let token = admin_token(&server);
    let long = |n: usize| "x".repeat(n);
    for (what, spec) in [
        ("an empty name", r#"{"id":"a1","name":""}"#.to_owned()),
        ("a blank name", r#"{"id":"a2","name":"   "}"#.to_owned()),
        ("a long name", format!(r#"{{"id":"a3","name":"{}"}}"#, long(81))),
        ("a long description", format!(r#"{{"id":"a4","name":"A","description":"{}"}}"#, long(501))),
        ("too many tags", format!(r#"{{"id":"a5","name":"A","tags":[{}]}}"#, ["\"t\""; 11].join(","))),
        ("a bad language", r#"{"id":"a6","name":"A","language":"<script>"}"#.to_owned()),
        ("a huge capacity", r#"{"id":"a7","name":"A","capacity":1000000}"#.to_owned()),
        ("long rules", format!(r#"{{"id":"a8","name":"A","rules":"{}"}}"#, long(5001))),
    ] {
        let (status, body) = request(&server, "POST", "/api/rooms", Some(&token), Some(&spec)).await;
        assert_eq!(status, 400, "{what}: {body}");
    }
    let ok = r#"{"id":"ok","name":"Duelo y pérdida","language":"es","tags":["duelo"],"capacity":20}"#;
    assert_eq!(request(&server, "POST", "/api/rooms", Some(&token), Some(ok)).await.0, 201);
}
