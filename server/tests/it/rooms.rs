//! The directory, ground rules, capacity, schedules, presence, typing.

use crate::common::*;
use kindred_protocol::{ClientMessage, ErrorCode, RoomId, RoomKind, ServerMessage};
use kindred_server::rooms::RoomsFile;
use std::time::Duration;

#[tokio::test]
async fn the_directory_lists_the_seeded_rooms_with_live_counts() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(None).await;
    a.join("pet-loss").await;
    a.send(&ClientMessage::ListRooms { id: Some(1.into()) }).await;
    let ServerMessage::Rooms { rooms, id } = a.recv().await else { panic!("expected rooms") };
    assert_eq!(id, Some(1.into()));
    assert!(rooms.len() >= 12);
    for expected in ["anxiety", "grief", "pet-loss", "recovery", "caregivers", "veterans", "lgbtq"] {
        assert!(rooms.iter().any(|r| r.id.as_str() == expected), "{expected} is listed");
    }
    let pet = rooms.iter().find(|r| r.id.as_str() == "pet-loss").unwrap();
    assert_eq!(pet.member_count, 1);
    assert!(pet.open && pet.rules_version >= 1 && pet.capacity <= 20);
    let scheduled = rooms.iter().find(|r| r.kind == RoomKind::Scheduled).expect("a scheduled room");
    let schedule = scheduled.schedule.as_ref().unwrap();
    assert_eq!(schedule.description, "2nd and 4th Thursday of the month, 19:00–20:30 Europe/London");
    assert!(schedule.next_open_at.is_some() || schedule.closes_at.is_some());
}

#[tokio::test]
async fn joining_needs_the_current_ground_rules_accepted() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(None).await;
    a.send(&ClientMessage::Join { id: Some(1.into()), room: "grief".into(), accept_rules: None, since: None }).await;
    let e = a.expect_error(ErrorCode::RulesNotAccepted).await;
    assert_eq!(e.rules_version, Some(1));
    assert!(e.rules.unwrap().contains("stays here"));
    a.send(&ClientMessage::Join { id: Some(2.into()), room: "grief".into(), accept_rules: Some(0), since: None }).await;
    a.expect_error(ErrorCode::RulesNotAccepted).await;
    a.send(&ClientMessage::Join { id: Some(3.into()), room: "grief".into(), accept_rules: Some(1), since: None }).await;
    let joined = a.recv().await;
    let ServerMessage::Joined { id, room, .. } = joined else { panic!("expected joined, got {joined:?}") };
    assert_eq!(id, Some(3.into()));
    assert!(!room.rules.is_empty());
    // Accepted once: leaving and joining again does not ask again.
    a.send(&ClientMessage::Leave { id: Some(4.into()), room: "grief".into() }).await;
    assert!(matches!(a.recv().await, ServerMessage::Left { .. }));
    a.send(&ClientMessage::Join { id: Some(5.into()), room: "grief".into(), accept_rules: None, since: None }).await;
    assert!(matches!(a.recv().await, ServerMessage::Joined { .. }));
}

#[tokio::test]
async fn unknown_rooms_are_not_found() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(None).await;
    a.send(&ClientMessage::Join { id: Some(1.into()), room: "nowhere".into(), accept_rules: Some(1), since: None }).await;
    a.expect_error(ErrorCode::NotFound).await;
}

fn rooms(toml: &str) -> Vec<kindred_server::rooms::RoomDef> {
    toml::from_str::<RoomsFile>(toml).unwrap().into_defs().unwrap()
}

#[tokio::test]
async fn a_full_room_offers_open_rooms_on_the_same_topic() {
    let server = TestServer::with(|c| {
        c.rooms = rooms(
            r#"
            [[rooms]]
            id = "grief-a"
            name = "Grief A"
            topic = "grief"
            capacity = 2
            [[rooms]]
            id = "grief-b"
            name = "Grief B"
            topic = "grief"
            [[rooms]]
            id = "anxiety"
            name = "Anxiety"
            topic = "anxiety"
            "#,
        )
    })
    .await;
    let (mut a, _) = server.member(None).await;
    let (mut b, _) = server.member(None).await;
    let (mut c, _) = server.member(None).await;
    a.join("grief-a").await;
    b.join("grief-a").await;
    c.send(&ClientMessage::Join { id: Some(1.into()), room: "grief-a".into(), accept_rules: Some(1), since: None }).await;
    let e = c.expect_error(ErrorCode::RoomFull).await;
    let alternatives: Vec<String> = e.alternatives.unwrap().into_iter().map(|r| r.id.0).collect();
    assert_eq!(alternatives, vec!["grief-b".to_string()]);
    // A facilitator is never locked out by capacity.
    let token = server.app.auth.staff_token(kindred_protocol::Role::Facilitator, "Sam", None, Duration::from_secs(60));
    let mut f = server.client().await;
    f.hello(Some(&token), None).await;
    f.join("grief-a").await;
}

#[tokio::test]
async fn a_scheduled_room_outside_its_session_is_closed_with_the_next_opening() {
    // A one-minute session twelve hours from now, in UTC.
    let start = chrono::Utc::now() + chrono::Duration::hours(12);
    let end = start + chrono::Duration::minutes(1);
    let day = start.format("%a").to_string().to_lowercase();
    let toml = format!(
        "[[rooms]]\nid = \"circle\"\nname = \"Circle\"\n[rooms.schedule]\ntimezone = \"UTC\"\ndays = [\"{day}\"]\nstart = \"{}\"\nend = \"{}\"\n",
        start.format("%H:%M"),
        end.format("%H:%M")
    );
    let server = TestServer::with(|c| c.rooms = rooms(&toml)).await;
    let (mut a, _) = server.member(None).await;
    a.send(&ClientMessage::Join { id: Some(1.into()), room: "circle".into(), accept_rules: Some(1), since: None }).await;
    let e = a.expect_error(ErrorCode::RoomClosed).await;
    let next: chrono::DateTime<chrono::Utc> = e.next_open_at.unwrap().parse().unwrap();
    assert_eq!(next.format("%H:%M").to_string(), start.format("%H:%M").to_string());
    assert!(next > chrono::Utc::now());
}

#[tokio::test]
async fn presence_and_typing_reach_the_others() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(Some("Willow")).await;
    let (mut b, _) = server.member(Some("Cedar")).await;
    a.join("anxiety").await;
    let joined = b.join("anxiety").await;
    let ServerMessage::Joined { members, me, .. } = &joined else { unreachable!() };
    assert_eq!(members.len(), 2);
    let b_id = me.member_id.clone();
    let presence = a.expect("presence", |m| matches!(m, ServerMessage::Presence { .. })).await;
    let ServerMessage::Presence { joined: Some(who), member_count, .. } = presence else { panic!() };
    assert_eq!((who.handle.as_str(), member_count), ("Cedar", 2));

    b.send(&ClientMessage::Typing { id: None, room: "anxiety".into() }).await;
    let typing = a.expect("typing", |m| matches!(m, ServerMessage::Typing { .. })).await;
    assert_eq!(typing, ServerMessage::Typing { room: "anxiety".into(), member_id: b_id.clone() });
    assert!(b.try_recv(Duration::from_millis(200)).await.is_none(), "the typist is not told about itself");

    b.send(&ClientMessage::Leave { id: Some(9.into()), room: "anxiety".into() }).await;
    let left = a.expect("presence left", |m| matches!(m, ServerMessage::Presence { left: Some(_), .. })).await;
    assert!(matches!(left, ServerMessage::Presence { left: Some(id), member_count: 1, .. } if id == b_id));
}

#[tokio::test]
async fn a_dropped_connection_leaves_its_rooms() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(None).await;
    let (b, _) = server.member(None).await;
    a.join("caregivers").await;
    let mut b = b;
    b.join("caregivers").await;
    drop(b);
    a.expect("presence left", |m| matches!(m, ServerMessage::Presence { left: Some(_), .. })).await;
    assert_eq!(server.app.hub.room(&RoomId::from("caregivers")).unwrap().member_count(), 1);
}

#[tokio::test]
async fn handles_are_unique_within_a_room() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(Some("Sam")).await;
    let (mut b, _) = server.member(Some("sam")).await;
    a.join("veterans").await;
    let joined = b.join("veterans").await;
    assert_eq!(joined_parts(&joined).0.handle, "sam 2");
    // In another room with no clash, the wished handle stands.
    let joined = b.join("parenting").await;
    assert_eq!(joined_parts(&joined).0.handle, "sam");
}
