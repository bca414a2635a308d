//! send → sent → message, one order for everyone, history and resume.

use crate::common::*;
use kindred_protocol::{ClientMessage, MessageId, Position};

#[tokio::test]
async fn a_message_is_acked_then_delivered_to_everyone_including_the_sender() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(Some("Willow")).await;
    let (mut b, _) = server.member(Some("Cedar")).await;
    a.join("grief").await;
    b.join("grief").await;
    let (message_id, seq) = a.say("grief", "Today would have been her birthday.").await;
    for c in [&mut a, &mut b] {
        let got = c.messages(1).await.remove(0);
        assert_eq!((got.message_id.0.as_str(), got.seq), (message_id.as_str(), seq));
        assert_eq!(got.text, "Today would have been her birthday.");
        assert_eq!(got.from.handle, "Willow");
        assert!(got.ts.ends_with('Z'));
    }
    // A reply with a content warning carries both.
    b.send(&ClientMessage::Send {
        id: Some(7.into()),
        room: "grief".into(),
        text: "I remember those days too.".into(),
        reply_to: Some(MessageId(message_id.clone())),
        cw: Some("loss".into()),
        staff: false,
    })
    .await;
    let got = a.messages(1).await.remove(0);
    assert_eq!(got.reply_to, Some(MessageId(message_id)));
    assert_eq!(got.cw.as_deref(), Some("loss"));
    assert_eq!(got.seq, seq + 1);
}

#[tokio::test]
async fn concurrent_senders_are_seen_in_one_order_with_no_gaps() {
    let server = TestServer::with(|c| c.limits.messages_per_10s = 10_000).await;
    let (mut a, _) = server.member(None).await;
    let (mut b, _) = server.member(None).await;
    let (mut reader, _) = server.member(None).await;
    for c in [&mut a, &mut b, &mut reader] {
        c.join("recovery").await;
    }
    const EACH: usize = 100;
    let send_all = |mut c: TestClient, tag: &'static str| async move {
        for i in 0..EACH {
            c.send(&ClientMessage::Send { id: None, room: "recovery".into(), text: format!("{tag}{i}"), reply_to: None, cw: None, staff: false }).await;
        }
        c
    };
    let (a, b) = tokio::join!(send_all(a, "a"), send_all(b, "b"));
    let mut seen = Vec::new();
    for mut c in [a, b, reader] {
        let got = c.messages(2 * EACH).await;
        let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
        let first = seqs[0];
        assert_eq!(seqs, (first..first + 2 * EACH as u64).collect::<Vec<_>>(), "contiguous, in order, no duplicates");
        // Each sender's own messages keep their order.
        for tag in ["a", "b"] {
            let mine: Vec<&str> = got.iter().filter(|m| m.text.starts_with(tag)).map(|m| m.text.as_str()).collect();
            assert_eq!(mine, (0..EACH).map(|i| format!("{tag}{i}")).collect::<Vec<_>>());
        }
        seen.push(got.into_iter().map(|m| m.message_id).collect::<Vec<_>>());
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "every client saw the same order");
}

#[tokio::test]
async fn a_member_who_reconnects_resumes_without_a_gap_or_a_duplicate() {
    let server = TestServer::with(|c| c.limits.messages_per_10s = 1000).await;
    let (mut a, welcome) = server.member(None).await;
    let (mut b, _) = server.member(None).await;
    a.join("depression").await;
    b.join("depression").await;
    b.say("depression", "one").await;
    let last = a.messages(1).await.remove(0);
    let joined = a.join("depression").await; // re-join is harmless and tells the epoch
    let epoch = joined_parts(&joined).2.to_owned();
    drop(a);

    for text in ["two", "three", "four"] {
        b.say("depression", text).await;
    }
    let mut a = server.client().await;
    a.hello(Some(&token_of(&welcome)), None).await;
    let joined = a.join_since("depression", Some(Position { epoch: epoch.clone(), seq: last.seq })).await;
    let (_, history, _, seq, recovered) = joined_parts(&joined);
    assert!(recovered);
    assert_eq!(history.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["two", "three", "four"]);
    assert_eq!(seq, last.seq + 3);
    b.say("depression", "five").await;
    let live = a.messages(1).await.remove(0);
    assert_eq!((live.text.as_str(), live.seq), ("five", seq + 1));

    // A resume from another epoch cannot be honoured: the latest window, recovered false.
    let mut c = server.client().await;
    c.hello(Some(&token_of(&welcome)), None).await;
    let joined = c.join_since("depression", Some(Position { epoch: "elsewhere".into(), seq: 2 })).await;
    let (_, history, _, _, recovered) = joined_parts(&joined);
    assert!(!recovered);
    assert_eq!(history.len(), 5);
}

#[tokio::test]
async fn history_is_bounded_by_count_and_can_be_turned_off() {
    let server = TestServer::with(|c| {
        c.limits.messages_per_10s = 1000;
        c.limits.history_max_messages = 3;
        c.rooms.iter_mut().find(|r| r.id.as_str() == "parenting").unwrap().history_minutes = Some(0);
    })
    .await;
    let (mut a, _) = server.member(None).await;
    a.join("grief").await;
    a.join("parenting").await;
    for i in 0..5 {
        a.say("grief", &format!("g{i}")).await;
        a.say("parenting", &format!("p{i}")).await;
    }
    let (mut b, _) = server.member(None).await;
    let joined = b.join("grief").await;
    let texts: Vec<String> = joined_parts(&joined).1.iter().map(|m| m.text.clone()).collect();
    assert_eq!(texts, ["g2", "g3", "g4"]);
    let joined = b.join("parenting").await;
    assert!(joined_parts(&joined).1.is_empty(), "a room with zero retention keeps nothing");
    // A resume from before the window is not recovered.
    let epoch = joined_parts(&joined).2.to_owned();
    let (mut c, _) = server.member(None).await;
    let joined = c.join_since("grief", Some(Position { epoch, seq: 1 })).await;
    assert!(!joined_parts(&joined).4);
}

#[tokio::test]
async fn sending_needs_membership() {
    let server = TestServer::start().await;
    let (mut a, _) = server.member(None).await;
    a.send(&ClientMessage::Send { id: Some(1.into()), room: "grief".into(), text: "hi".into(), reply_to: None, cw: None, staff: false }).await;
    let e = a.expect_error(kindred_protocol::ErrorCode::NotMember).await;
    assert_eq!(e.id, Some(1.into()));
    a.send(&ClientMessage::Typing { id: Some(2.into()), room: "grief".into() }).await;
    a.expect_error(kindred_protocol::ErrorCode::NotMember).await;
    a.send(&ClientMessage::Leave { id: Some(3.into()), room: "grief".into() }).await;
    a.expect_error(kindred_protocol::ErrorCode::NotMember).await;
}

#[tokio::test]
async fn a_join_whose_reply_is_hundreds_of_kib_is_delivered() {
    // 100 messages of 2,000 characters: the `joined` reply is about 210 KiB,
    // more than the old write-buffer cap (128 KiB), which reset the connection.
    let server = TestServer::with(|c| {
        c.limits.messages_per_10s = 1000;
        c.limits.history_on_join = 100;
    })
    .await;
    let (mut a, _) = server.member(None).await;
    a.join("grief").await;
    let text = "I remember the last walk we took together by the sea. ".repeat(40);
    for _ in 0..100 {
        a.say("grief", &text[..2000]).await;
    }
    let (mut b, _) = server.member(None).await;
    let joined = b.join("grief").await;
    assert_eq!(joined_parts(&joined).1.len(), 100);
}
