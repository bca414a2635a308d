//! The crisis pathway and the personal-details guard, with realistic messages.

use crate::common::*;
use kindred_protocol::{ClientMessage, ErrorCode, NoticeKind, Role, ServerMessage};
use std::time::Duration;

#[tokio::test]
async fn a_crisis_message_is_delivered_the_sender_gets_helplines_and_facilitators_an_alert() {
    let server = TestServer::start().await;
    let mut f = server.staff(Role::Facilitator, None, "depression").await;
    let (mut a, _) = server.member(Some("Willow")).await;
    let (mut b, _) = server.member(Some("Cedar")).await;
    a.join("depression").await;
    b.join("depression").await;
    let text = "honestly I just want to die, I can't do this anymore";
    let (message_id, _) = a.say("depression", text).await;
    let notice = a.expect("crisis resources", |m| matches!(m, ServerMessage::Notice(_))).await;
    let ServerMessage::Notice(notice) = notice else { unreachable!() };
    assert_eq!(notice.kind, NoticeKind::CrisisResources);
    let resources = notice.resources.expect("resources");
    assert!(resources.iter().any(|r| r.url.as_deref() == Some("https://findahelpline.com")));
    let got = b.messages(1).await.remove(0);
    assert_eq!(got.text, text, "the message is still delivered");
    assert!(b.try_recv(Duration::from_millis(300)).await.is_none_or(|m| !matches!(m, ServerMessage::Notice(_) | ServerMessage::Alert { .. })));
    let alert = f.expect("alert", |m| matches!(m, ServerMessage::Alert { .. })).await;
    assert!(matches!(alert, ServerMessage::Alert { message, .. } if message.message_id.0 == message_id));
}

#[tokio::test]
async fn contact_details_are_caught_before_they_expose_someone() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(None).await;
    let (mut b, _) = server.member(None).await;
    a.join("new-in-town").await;
    b.join("new-in-town").await;
    for (i, text) in [
        "message me at jo.bloggs@example.com",
        "text me 07700 900123 anytime",
        "I'm at 14 Elm Grove if anyone's near",
        // The same number in Arabic-Indic and in fullwidth digits.
        "راسلني على ٠٧٧٠٠ ٩٠٠١٢٣",
        "text me ０７７００ ９００１２３ anytime",
    ]
    .iter()
    .enumerate()
    {
        a.send(&ClientMessage::Send { id: Some((i as i64).into()), room: "new-in-town".into(), text: (*text).into(), reply_to: None, cw: None, staff: false })
            .await;
        let e = a.expect_error(ErrorCode::ContentBlocked).await;
        assert!(e.message.contains("contact details"), "{e:?}");
    }
    // Everyday talk about phones and numbers goes through.
    a.say("new-in-town", "my phone charger died and I felt so cut off, 3 days without it").await;
    let got = b.messages(1).await.remove(0);
    assert!(got.text.starts_with("my phone charger"), "only the harmless message arrived: {}", got.text);
}

#[tokio::test]
async fn an_operator_may_choose_to_warn_instead_of_block() {
    let server = TestServer::with(|c| c.safety.pii = kindred_server::safety::PiiAction::Warn).await;
    let (mut a, _) = server.member(None).await;
    let (mut b, _) = server.member(None).await;
    a.join("anxiety").await;
    b.join("anxiety").await;
    a.say("anxiety", "my old blog is at calmthoughts.org").await;
    let notice = a.expect("pii warning", |m| matches!(m, ServerMessage::Notice(_))).await;
    assert!(matches!(notice, ServerMessage::Notice(n) if n.kind == NoticeKind::PiiWarning));
    b.messages(1).await;
}

#[tokio::test]
async fn the_operator_blocklist_is_enforced() {
    let server = TestServer::with(|c| c.safety.blocklist = vec!["miracle cure".into()]).await;
    let (mut a, _) = server.member(None).await;
    a.join("chronic-illness").await;
    a.send(&ClientMessage::Send {
        id: Some(1.into()),
        room: "chronic-illness".into(),
        text: "Try this MIRACLE CURE!!".into(),
        reply_to: None,
        cw: None,
        staff: false,
    })
    .await;
    a.expect_error(ErrorCode::ContentBlocked).await;
}
