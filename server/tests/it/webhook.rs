//! The escalation webhook end to end: a real server (and two real cluster
//! nodes) POSTing to a real HTTP receiver that checks the signature and that
//! the message text stays out.

use crate::common::*;
use hmac::{Hmac, Mac};
use kindred_protocol::{NoticeKind, ServerMessage};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "webhook-test-secret-0123456789";

/// What the receiver got: (signature header, content type, raw body).
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// An HTTP receiver on 127.0.0.1:0 that answers 200 and keeps every request.
pub async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                keep.lock().unwrap().push((header("x-kindred-signature"), header("content-type"), body.to_vec()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

pub fn escalation(url: &str, include_text: bool) -> kindred_server::escalation::EscalationConfig {
    serde_json::from_value(serde_json::json!({"webhook_url": url, "secret": SECRET, "include_text": include_text})).unwrap()
}

pub async fn wait_for_posts(got: &Received, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "{n} webhook POSTs did not arrive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn verify(signature: &str, body: &[u8]) {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(signature, format!("sha256={expected}"));
}

#[tokio::test]
async fn a_new_alert_is_posted_signed_within_a_second_without_the_text() {
    let (url, got) = receiver().await;
    let server = TestServer::with(|c| c.safety.escalation = Some(escalation(&url, false))).await;
    let (mut a, _) = server.member(Some("Willow")).await;
    a.join("grief").await;
    let text = "I keep thinking everyone would be better off without me";
    let sent_at = Instant::now();
    a.say("grief", text).await;
    a.expect("crisis notice", |m| matches!(m, ServerMessage::Notice(n) if n.kind == NoticeKind::CrisisResources)).await;
    wait_for_posts(&got, 1).await;
    assert!(sent_at.elapsed() < Duration::from_secs(1), "posted {:?} after the message", sent_at.elapsed());
    let (signature, content_type, body) = got.lock().unwrap()[0].clone();
    assert_eq!(content_type, "application/json");
    verify(&signature, &body);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let alert = server.app.moderation.open_alerts(|_| true).remove(0);
    assert_eq!(json["kind"], "crisis");
    assert_eq!(json["alert_id"], alert.alert_id.0);
    assert_eq!(json["room"], "grief");
    assert_eq!(json["room_name"], server.app.hub.room(&"grief".into()).unwrap().def().name);
    assert_eq!(json["language"], "en");
    assert_eq!(json["at"], alert.at);
    assert_eq!(json["facilitators_alerted"], 0);
    assert!(json.get("text").is_none(), "{json}");
    assert!(!String::from_utf8_lossy(&body).contains("better off"), "the words never leave the server");

    // The same member again: the alert is still open, so no second POST.
    a.say("grief", text).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(got.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_text_goes_out_only_when_the_operator_asks() {
    let (url, got) = receiver().await;
    let server = TestServer::with(|c| c.safety.escalation = Some(escalation(&url, true))).await;
    let (mut a, _) = server.member(Some("Willow")).await;
    a.join("anxiety").await;
    a.say("anxiety", "I want to die").await;
    wait_for_posts(&got, 1).await;
    let (signature, _, body) = got.lock().unwrap()[0].clone();
    verify(&signature, &body);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["text"], "I want to die");
}
