//! Logs never hold message text, tokens or IP addresses, even at trace level.

use crate::common::*;

#[tokio::test]
async fn trace_logs_hold_no_message_text_token_or_address() {
    let server = TestServer::start().await;
    let marker = format!("MARKER-{:x}", rand::random::<u64>());
    let (mut a, welcome) = server.member(Some("Quiet Fern")).await;
    a.join("lgbtq").await;
    a.say("lgbtq", &format!("my secret is {marker}")).await;
    let token = token_of(&welcome);
    a.close().await;
    let mut b = server.client().await;
    b.hello(Some(&token), None).await;
    b.close().await;
    // Wait for the server to log the closes (proof that capture works).
    let deadline = tokio::time::Instant::now() + WAIT;
    while captured_logs().matches("connection closed").count() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the server's debug logs were not captured");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let logs = captured_logs();
    assert!(logs.contains("hello"), "debug logging is on");
    assert!(!logs.contains(&marker), "message text leaked into logs");
    assert!(!logs.contains(&token), "a session token leaked into logs");
    assert!(!logs.contains(&token[token.len() - 20..]), "part of a token leaked into logs");
    assert!(!logs.contains("127.0.0.1"), "an IP address leaked into logs");
    assert!(!logs.contains("Quiet Fern"), "a handle leaked into logs");
}
