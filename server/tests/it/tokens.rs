//! Facilitator tokens: forged, expired, wrong audience, wrong algorithm,
//! `alg: none` and key confusion are refused; the pinned algorithm is accepted.

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kindred_protocol::{ClientMessage, ErrorCode, Role, ServerMessage};
use kindred_server::auth::{StaffClaims, now_s};

fn claims(aud: &str, exp: u64) -> StaffClaims {
    StaffClaims {
        sub: "idp|42".into(),
        name: "Sam Rivers".into(),
        role: Role::Facilitator,
        rooms: None,
        exp,
        nbf: None,
        iat: Some(now_s()),
        iss: "kindred".into(),
        aud: aud.into(),
    }
}

async fn refused(server: &TestServer, token: String) {
    let mut c = server.client().await;
    c.send(&ClientMessage::Hello { id: Some(1.into()), token: Some(token), handle: None, locale: None }).await;
    let e = c.expect_error(ErrorCode::Unauthorized).await;
    // Fit to show a person: no internal type names such as InvalidSignature or Json(Error(..)).
    assert!(!e.message.contains("Invalid") && !e.message.contains("Error(") && !e.message.contains("::"), "{}", e.message);
}

async fn accepted(server: &TestServer, token: String) {
    let mut c = server.client().await;
    let welcome = c.hello(Some(&token), None).await;
    assert!(matches!(welcome, ServerMessage::Welcome { role: Role::Facilitator, .. }));
}

#[tokio::test]
async fn hs256_tokens_are_checked_for_expiry_audience_and_signature() {
    let server = TestServer::with(|c| c.jwt_secret = Some("a-test-secret-that-is-long-enough!!".into())).await;
    let key = EncodingKey::from_secret(b"a-test-secret-that-is-long-enough!!");
    let sign = |c: &StaffClaims| jsonwebtoken::encode(&Header::new(Algorithm::HS256), c, &key).unwrap();
    accepted(&server, sign(&claims("kindred", now_s() + 600))).await;
    refused(&server, sign(&claims("kindred", now_s() - 3600))).await; // expired beyond the leeway
    refused(&server, sign(&claims("another-service", now_s() + 600))).await;
    let mut not_yet = claims("kindred", now_s() + 600);
    not_yet.nbf = Some(now_s() + 3600);
    refused(&server, sign(&not_yet)).await;
    let other = EncodingKey::from_secret(b"not-the-secret-not-the-secret-xx");
    refused(&server, jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims("kindred", now_s() + 600), &other).unwrap()).await;
    // alg: none, unsigned.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims("kindred", now_s() + 600)).unwrap());
    refused(&server, format!("{header}.{body}.")).await;
    // A member session token is not a facilitator token, and never the other way round.
    let (_, welcome) = server.member(None).await;
    let mut c = server.client().await;
    let back = c.hello(Some(&token_of(&welcome)), None).await;
    assert!(matches!(back, ServerMessage::Welcome { role: Role::Member, .. }));
}

fn openssl(args: &[&str]) {
    let status = std::process::Command::new("openssl").args(args).status().expect("openssl runs");
    assert!(status.success(), "openssl {args:?}");
}

#[tokio::test]
async fn a_pinned_public_key_algorithm_refuses_hs256_key_confusion() {
    let dir = TempDir::new();
    let private = dir.0.join("idp.pem");
    let public = dir.0.join("idp.pub.pem");
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", private.to_str().unwrap()]);
    openssl(&["pkey", "-in", private.to_str().unwrap(), "-pubout", "-out", public.to_str().unwrap()]);
    let public_pem = std::fs::read(&public).unwrap();
    let server = TestServer::with(|c| {
        c.jwt_algorithm = Algorithm::EdDSA;
        c.jwt_public_key = Some(public.clone());
    })
    .await;
    let key = EncodingKey::from_ed_pem(&std::fs::read(&private).unwrap()).unwrap();
    accepted(&server, jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims("kindred", now_s() + 600), &key).unwrap()).await;
    // HS256 "signed" with the public key as the secret: the classic confusion.
    let confused = EncodingKey::from_secret(&public_pem);
    refused(&server, jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims("kindred", now_s() + 600), &confused).unwrap()).await;
    // And `kindred token`'s HS256 tokens no longer pass either.
    refused(&server, server.app.auth.staff_token(Role::Admin, "Mallory", None, std::time::Duration::from_secs(600))).await;
}

#[tokio::test]
async fn tokens_without_iat_or_with_an_audience_array_are_accepted() {
    let server = TestServer::with(|c| c.jwt_secret = Some("a-test-secret-that-is-long-enough!!".into())).await;
    let key = EncodingKey::from_secret(b"a-test-secret-that-is-long-enough!!");
    let sign = |c: &StaffClaims| jsonwebtoken::encode(&Header::new(Algorithm::HS256), c, &key).unwrap();
    let mut no_iat = claims("kindred", now_s() + 600);
    no_iat.iat = None;
    accepted(&server, sign(&no_iat)).await;
    let mut many = claims("kindred", now_s() + 600);
    many.aud = kindred_server::auth::Audience::Many(vec!["another-service".into(), "kindred".into()]);
    accepted(&server, sign(&many)).await;
    many.aud = kindred_server::auth::Audience::Many(vec!["another-service".into()]);
    refused(&server, sign(&many)).await;
    let mut c = server.client().await;
    c.send(&ClientMessage::Hello { id: Some(1.into()), token: Some("not.a.token".into()), handle: None, locale: None }).await;
    let e = c.expect_error(ErrorCode::Unauthorized).await;
    assert!(e.message.contains("not a token this server can read"), "{}", e.message);
}
