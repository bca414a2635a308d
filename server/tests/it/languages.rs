//! What the server writes for people comes in the reader's language:
//! `hello.locale` (es-MX → es → en) for everything written to that
//! connection, the room's language for a default text one person's action
//! sends to another, and English for a locale without a catalogue.

use crate::common::*;
use kindred_protocol::{ClientMessage, ErrorCode, ModerationAction, NoticeKind, Role, RoomId, ServerMessage};

async fn speaking(server: &TestServer, locale: &str) -> TestClient {
    let mut c = server.client().await;
    c.send(&ClientMessage::Hello { id: Some(1.into()), token: None, handle: None, locale: Some(locale.into()) }).await;
    c.expect("welcome", |m| matches!(m, ServerMessage::Welcome { .. })).await;
    c
}

fn join(room: &str) -> ClientMessage {
    ClientMessage::Join { id: None, room: RoomId::from(room), accept_rules: None, since: None }
}

#[tokio::test]
async fn errors_and_notices_come_in_the_members_language() {
    let server = TestServer::start().await;
    let mut sol = speaking(&server, "es-MX").await;
    let e = sol.refused(join("nowhere"), ErrorCode::NotFound).await;
    assert_eq!(e.message, "No hay ninguna sala llamada 'nowhere'.");
    let e = sol.refused(chat("grief", "hola"), ErrorCode::NotMember).await;
    assert_eq!(e.message, "No estás en la sala 'grief'; entra primero.");
    let e = sol.refused(join("grief"), ErrorCode::RulesNotAccepted).await;
    assert_eq!(e.message, "Lee las normas de la sala y vuelve a entrar con accept_rules.");
    sol.join("grief").await;
    let e = sol.refused(chat("grief", &"a".repeat(5000)), ErrorCode::TooLarge).await;
    assert!(e.message.starts_with("Los mensajes pueden tener hasta ") && e.message.ends_with("este tiene 5000."), "{}", e.message);

    let e = sol.refused(chat("grief", "escríbeme a ana.lopez@example.org"), ErrorCode::ContentBlocked).await;
    assert!(e.message.starts_with("Este mensaje no se publicó: parece que contiene una dirección de correo electrónico."), "{}", e.message);
}

#[tokio::test]
async fn a_notice_the_server_writes_to_the_member_is_in_its_language() {
    let server = TestServer::with(|c| c.safety.pii = kindred_server::safety::PiiAction::Warn).await;
    let mut ana = speaking(&server, "pt-BR").await;
    ana.join("grief").await;
    ana.say("grief", "me liga no 11 98765-4321").await;
    let notice = ana.expect("a warning about personal details", |m| matches!(m, ServerMessage::Notice(n) if n.kind == NoticeKind::PiiWarning)).await;
    let ServerMessage::Notice(notice) = notice else { unreachable!() };
    assert_eq!(
        notice.text,
        "Parece que sua mensagem contém um número de telefone. Tenha cuidado ao compartilhar dados que possam identificar você ou outras pessoas."
    );
}

#[tokio::test]
async fn every_catalogue_is_used_and_an_unknown_locale_gets_english() {
    let server = TestServer::start().await;
    for (locale, text) in [
        ("fr-CA", "Il n'y a pas de salon nommé 'nowhere'."),
        ("de", "Es gibt keinen Raum namens 'nowhere'."),
        ("pt-BR", "Não existe nenhuma sala chamada 'nowhere'."),
        ("ar", "لا توجد غرفة باسم 'nowhere'."),
        ("tlh", "There is no room called 'nowhere'."),
        ("en-GB", "There is no room called 'nowhere'."),
    ] {
        let mut c = speaking(&server, locale).await;
        assert_eq!(c.refused(join("nowhere"), ErrorCode::NotFound).await.message, text, "{locale}");
    }
    // Before `hello` nobody has said which language: English.
    let mut c = server.client().await;
    c.send(&join("grief")).await;
    assert_eq!(c.expect_error(ErrorCode::BadRequest).await.message, "The first frame must be hello.");
}

#[tokio::test]
async fn a_kick_without_a_reason_tells_the_member_in_the_rooms_language() {
    let server = TestServer::start().await;
    // The facilitator's own texts are English; the member reads the Spanish room.
    let mut sam = server.staff(Role::Facilitator, None, "grief-es").await;
    let mut sol = speaking(&server, "es").await;
    let member = sol.join_returning_id("grief-es").await;
    assert!(matches!(sam.moderate("grief-es", ModerationAction::Kick { member_id: member, reason: None }).await, ServerMessage::Moderated { .. }));
    let removed = sol.expect("removed", |m| matches!(m, ServerMessage::Removed { .. })).await;
    let ServerMessage::Removed { note, .. } = removed else { unreachable!() };
    assert_eq!(note.as_deref(), Some("Una persona facilitadora te ha pedido que salgas de esta sala por ahora."));
    let e = sam.refused(join("nowhere"), ErrorCode::NotFound).await;
    assert_eq!(e.message, "There is no room called 'nowhere'.", "the facilitator said no locale");
}
