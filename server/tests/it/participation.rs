//! `participation`: a facilitator's private view of who has spoken, as
//! counts only, on one node and on two Redis nodes (the facilitator on node
//! A, some members on node B, so B's messages are counted where they arrive).

use crate::common::deployment::{Deployment, both_brokers};
use crate::common::*;
use kindred_protocol::{ClientMessage, ErrorCode, MemberId, Role, RoomId, ServerMessage};

const ROOM: &str = "grief";

/// Wait until `c` has seen `members` join the room (its node knows them).
async fn sees_join(c: &mut TestClient, members: &[&MemberId]) {
    let mut unseen: Vec<&MemberId> = members.to_vec();
    while !unseen.is_empty() {
        let seen = c.expect("the members' presence", |m| matches!(m, ServerMessage::Presence { joined: Some(j), .. } if unseen.contains(&&j.member_id))).await;
        let ServerMessage::Presence { joined: Some(j), .. } = seen else { unreachable!() };
        unseen.retain(|id| **id != j.member_id);
    }
}

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

both_brokers!(counts_after_a_known_conversation_quietest_first_with_no_text, only_staff_in_scope_may_see_participation);
