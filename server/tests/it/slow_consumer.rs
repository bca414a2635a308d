//! A client that stops reading is closed with 4408 while the room carries on;
//! the server never buffers without bound on its behalf.

use crate::common::*;
use futures_util::SinkExt;
use kindred_protocol::{ClientMessage, ServerMessage};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A client with a 4 KiB receive buffer, so the server's writes to it back
/// up as soon as it stops reading.
async fn tiny_buffered_client(server: &TestServer) -> TestClient {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let mut request = server.url().into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "kindred.v1".parse().unwrap());
    let (ws, _) = tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream)).await.unwrap();
    TestClient::from_ws(ws)
}

#[tokio::test]
async fn a_slow_consumer_is_closed_with_4408_and_the_others_get_everything() {
    let server = TestServer::with(|c| {
        c.limits.messages_per_10s = 100_000;
        c.limits.mailbox_frames = 256;
        c.limits.write_timeout_s = 30;
    })
    .await;
    let (mut sender, _) = server.member(None).await; // joined below, then split
    let (mut fast, _) = server.member(None).await;
    sender.join("new-in-town").await;
    fast.join("new-in-town").await;

    // The slow client: it stops reading after joining.
    let mut slow = tiny_buffered_client(&server).await;
    slow.hello(None, None).await;
    slow.join("new-in-town").await;

    const TOTAL: usize = 5000;
    const CHUNK: usize = 100;
    let text = "a long and heartfelt message about settling in ".repeat(30);
    // The sender's own echoes and acks are drained on the side, so only `slow` falls behind.
    let (mut sink, mut stream) = futures_util::StreamExt::split(sender.ws);
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = futures_util::StreamExt::next(&mut stream).await {} });
    let mut got = Vec::with_capacity(TOTAL);
    for chunk in 0..TOTAL / CHUNK {
        for i in 0..CHUNK {
            let n = chunk * CHUNK + i;
            let msg = ClientMessage::Send { id: None, room: "new-in-town".into(), text: format!("{n} {text}"), reply_to: None, cw: None, staff: false };
            sink.feed(Message::text(serde_json::to_string(&msg).unwrap())).await.unwrap();
        }
        sink.flush().await.unwrap();
        got.extend(fast.messages(CHUNK).await);
    }
    assert_eq!(got.last().unwrap().seq - got[0].seq, TOTAL as u64 - 1, "the fast member got every message");

    // Now the slow client reads: some of the backlog, then a close with 4408 —
    // not all 3000 messages, which the server would have had to buffer.
    let mut received = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), futures_util::StreamExt::next(&mut slow.ws)).await {
            Ok(Some(Ok(Message::Text(_)))) => received += 1,
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a close frame, got {other:?} after {received} frames"),
        }
    };
    assert_eq!(code, Some(4408));
    assert!(received < TOTAL, "the slow client got {received} frames: the server buffered everything");
    // The room is still served.
    let msg = ClientMessage::Send { id: None, room: "new-in-town".into(), text: "still here?".into(), reply_to: None, cw: None, staff: false };
    sink.send(Message::text(serde_json::to_string(&msg).unwrap())).await.unwrap();
    let last = fast.messages(1).await.remove(0);
    assert_eq!(last.text, "still here?");
    drain.abort();
}

/// Attack run: 4,000 raise/lower pairs in one write closed every member
/// with 4408. A member who has fallen behind now gets the newest state of
/// the hand (and presence) instead of every step, and stays.
#[tokio::test]
async fn a_hand_flood_does_not_close_a_member_who_fell_behind() {
    let server = TestServer::with(|c| {
        c.limits.messages_per_10s = 100_000;
        c.limits.actions_per_10s = 100_000;
        c.limits.max_text_chars = 1_000_000;
        c.limits.max_frame_bytes = 4 << 20;
        c.limits.mailbox_frames = 64;
        c.limits.write_timeout_s = 30;
    })
    .await;
    const ROOM: &str = "new-in-town";
    let (mut flooder, _) = server.member(None).await;
    let flooder_id = joined_parts(&flooder.join(ROOM).await).0.member_id.clone();

    // The member who falls behind: not reading for now.
    let mut behind = tiny_buffered_client(&server).await;
    behind.hello(None, None).await;
    behind.join(ROOM).await;

    let (mut sink, mut stream) = futures_util::StreamExt::split(flooder.ws);
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = futures_util::StreamExt::next(&mut stream).await {} });
    let send = |msg: &ClientMessage| Message::text(serde_json::to_string(msg).unwrap());
    // Megabyte messages fill the kernel's buffers, so what follows waits in the mailbox.
    let big = "a long and heartfelt message ".repeat(30_000);
    for _ in 0..12 {
        sink.feed(send(&ClientMessage::Send { id: None, room: ROOM.into(), text: big.clone(), reply_to: None, cw: None, staff: false })).await.unwrap();
    }
    for _ in 0..2_000 {
        sink.feed(send(&ClientMessage::RaiseHand { id: None, room: ROOM.into() })).await.unwrap();
        sink.feed(send(&ClientMessage::LowerHand { id: None, room: ROOM.into() })).await.unwrap();
    }
    sink.feed(send(&ClientMessage::Send { id: None, room: ROOM.into(), text: "after the flood".into(), reply_to: None, cw: None, staff: false }))
        .await
        .unwrap();
    sink.flush().await.unwrap();

    let (mut updates, mut messages) = (0, 0);
    loop {
        match tokio::time::timeout(Duration::from_secs(30), behind.recv()).await {
            Ok(ServerMessage::MemberUpdate { member, .. }) if member.member_id == flooder_id => updates += 1,
            Ok(ServerMessage::Message(m)) if m.text == "after the flood" => break,
            Ok(ServerMessage::Message(_)) => messages += 1,
            Ok(_) => {}
            Err(_) => panic!("no 'after the flood' within 30 s ({messages} messages, {updates} updates)"),
        }
    }
    assert_eq!(messages, 12, "every message arrived");
    assert!(updates < 400, "the member who fell behind got the newest state, not 4,000 steps: {updates} updates");
    behind.assert_alive().await;
    drain.abort();
}
