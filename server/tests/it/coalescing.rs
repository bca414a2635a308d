//! Write coalescing: a busy connection's frames share writes, and nothing is
//! lost or reordered by waiting.

use crate::common::*;
use crate::session::http_get;
use kindred_protocol::ServerMessage;
use std::time::Duration;

pub async fn metric(server: &TestServer, name: &str) -> u64 {
    let page = http_get(server.addr, "/metrics").await;
    let line = page.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name} in {page}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Sends `n` messages at least 5 ms apart and returns how many socket writes the
/// server made meanwhile, after checking every listener got every message in order.
async fn paced_burst(server: &TestServer, n: usize) -> u64 {
    let (mut sender, _) = server.member(None).await;
    sender.join("grief").await;
    let mut listeners = Vec::new();
    for _ in 0..3 {
        let (mut l, _) = server.member(None).await;
        l.join("grief").await;
        listeners.push(l);
    }
    // Let the joins' presence frames go out before counting.
    for l in &mut listeners {
        l.assert_alive().await;
    }
    sender.assert_alive().await;
    // The hold follows the node's delivery rate, re-read every 250 ms: give it
    // time to see the joins' presence frames (with coalescing on, any rate is full rate).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = metric(server, "kindred_socket_writes_total").await;
    for i in 0..n {
        sender.say("grief", &format!("message {i}")).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for l in &mut listeners {
        let got = l.messages(n).await;
        let texts: Vec<String> = got.iter().map(|m| m.text.clone()).collect();
        let want: Vec<String> = (0..n).map(|i| format!("message {i}")).collect();
        assert_eq!(texts, want, "every message, in order");
        assert!(got.windows(2).all(|w| w[1].seq == w[0].seq + 1), "contiguous seqs");
    }
    metric(server, "kindred_socket_writes_total").await - before
}

#[tokio::test]
async fn a_busy_connections_frames_share_writes_in_order() {
    const N: usize = 40;
    // Coalescing at its longest from the first delivery on.
    let server = TestServer::with(|c| {
        c.limits.messages_per_10s = 10_000;
        c.limits.write_coalesce_ms = 50;
        c.limits.write_coalesce_start_rate = 0;
        c.limits.write_coalesce_full_rate = 1;
    })
    .await;
    let writes = paced_burst(&server, N).await;
    // Four connections receive N frames each, 5 ms apart: written one by one
    // that is about 4 × N writes. The sender's are one per message (its
    // `sent` carries its own copy along); the three listeners', held 50 ms,
    // a handful per connection.
    assert!(writes <= 2 * N as u64, "{writes} writes for {} frames and {N} replies", 4 * N);

    // With coalescing off the same load takes a write per frame, or nearly.
    let server = TestServer::with(|c| {
        c.limits.messages_per_10s = 10_000;
        c.limits.write_coalesce_ms = 0;
    })
    .await;
    let writes = paced_burst(&server, N).await;
    assert!(writes > 3 * N as u64, "{writes} writes for {} frames without coalescing", 4 * N);
}

/// A sender's `sent` and its own copy of the message (queued by the hub
/// before the reply is written) go out in one `send`, not two.
#[tokio::test]
async fn a_senders_reply_and_its_copy_of_the_message_share_one_write() {
    const N: u64 = 5;
    let server = TestServer::with(|c| c.limits.write_coalesce_ms = 0).await;
    let (mut sender, _) = server.member(None).await;
    sender.join("pet-loss").await;
    sender.assert_alive().await;
    let before = metric(&server, "kindred_socket_writes_total").await;
    for i in 0..N {
        sender.say("pet-loss", &format!("message {i}")).await;
        // (`say` returns at `sent`; the copy follows it.)
        let copy = sender.messages(1).await;
        assert_eq!(copy[0].text, format!("message {i}"));
    }
    assert_eq!(metric(&server, "kindred_socket_writes_total").await - before, N, "one write per message");
}

#[tokio::test]
async fn a_held_notice_is_written_before_the_connection_closes() {
    use kindred_protocol::{ModerationAction, RemovedReason, Role};
    let server = TestServer::with(|c| {
        c.limits.write_coalesce_ms = 500;
        c.limits.write_coalesce_start_rate = 0;
        c.limits.write_coalesce_full_rate = 1;
    })
    .await;
    let mut admin = server.staff(Role::Admin, None, "grief").await;
    let (mut member, _) = server.member(None).await;
    let joined = member.join("grief").await;
    let member_id = joined_parts(&joined).0.member_id.clone();
    // Wait until the hold is on, then give the member a frame: its next one is held.
    tokio::time::sleep(Duration::from_secs(1)).await;
    admin.say("grief", "welcome, everyone").await;
    member.messages(1).await;
    let ban = ModerationAction::Ban { member_id, duration_s: Some(3600), reason: Some("spam".into()), service: true };
    assert!(matches!(admin.moderate("grief", ban).await, ServerMessage::Moderated { .. }));
    // The `removed` notice was queued (and held) before the close was asked for.
    member.expect("removed", |m| matches!(m, ServerMessage::Removed { reason: RemovedReason::Banned, .. })).await;
    assert_eq!(member.closed(Duration::from_secs(5)).await, Closed::Code(4403));
}

#[tokio::test]
async fn a_connection_whose_hold_gathered_nothing_is_written_at_once_again() {
    const HOLD: Duration = Duration::from_secs(3);
    let server = TestServer::with(|c| {
        c.limits.messages_per_10s = 10_000;
        c.limits.write_coalesce_ms = HOLD.as_millis() as u32;
        c.limits.write_coalesce_start_rate = 0;
        c.limits.write_coalesce_full_rate = 1;
    })
    .await;
    let (mut listener, _) = server.member(None).await;
    listener.join("grief").await;
    let (mut sender, _) = server.member(None).await;
    sender.join("grief").await;
    // Chatter in another room keeps the node's rate, and so the hold, up.
    let (mut chatter, _) = server.member(None).await;
    chatter.join("anxiety").await;
    chat_until(&mut chatter, std::time::Instant::now() + Duration::from_secs(1)).await;
    // Written to moments ago, the listener holds this one; its next hold
    // starts when it is written, and finds nothing.
    sender.say("grief", "first").await;
    assert_eq!(listener.messages(1).await[0].text, "first");
    let written = std::time::Instant::now();
    chat_until(&mut chatter, written + HOLD + HOLD / 5).await;
    // That hold is over: the listener waits on its mailbox again.
    let sent_at = std::time::Instant::now();
    sender.say("grief", "anyone here?").await;
    assert_eq!(listener.messages(1).await[0].text, "anyone here?");
    assert!(sent_at.elapsed() < HOLD / 2, "delivered after {:?}: still holding", sent_at.elapsed());
}

/// Say something in "anxiety" every 50 ms until `until`.
async fn chat_until(chatter: &mut TestClient, until: std::time::Instant) {
    while std::time::Instant::now() < until {
        chatter.say("anxiety", "keeping the node busy").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
