//! The Rust client library (`kindred_protocol::connection`, feature
//! `client`) against the real server: chat, a server killed and restarted
//! mid-conversation, close codes after which it must not reconnect, and the
//! example bot of `docs/clients.md`.

use crate::common::*;
use crate::process::Process;
use futures_util::StreamExt;
use kindred_protocol::connection::{Client, ClientError, Event, Events, Options};
use kindred_protocol::{ChatMessage, ClientMessage, ErrorCode, ModerationAction, Role, ServerMessage};
use std::time::Duration;

#[allow(dead_code, reason = "the example's main: the test calls its `run`")]
#[path = "../../../protocol/examples/bot.rs"]
mod bot;

const ROOM: &str = "grief";
const WAIT: Duration = Duration::from_secs(15);

/// A reconnect in tests waits at most about a quarter of a second.
pub(crate) fn quick() -> Options {
    Options { base_delay: Duration::from_millis(50), max_delay: Duration::from_millis(200), ..Options::default() }
}

/// Join, accepting the room's rules when asked, as a client would after showing them.
pub(crate) async fn join(client: &Client) -> ServerMessage {
    join_room(client, ROOM).await
}

async fn join_room(client: &Client, room: &str) -> ServerMessage {
    match client.join(room, None).await {
        Err(ClientError::Refused(e)) if e.code == ErrorCode::RulesNotAccepted => client.join(room, e.rules_version).await.expect("joined"),
        other => other.expect("joined"),
    }
}

pub(crate) async fn next(events: &mut Events, what: &str) -> Event {
    tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
        .unwrap_or_else(|| panic!("events ended before {what}"))
}

async fn next_message(events: &mut Events) -> ChatMessage {
    loop {
        if let Event::Frame(ServerMessage::Message(m)) = next(events, "a message").await {
            return m;
        }
    }
}

fn sent_id(reply: &ServerMessage) -> String {
    match reply {
        ServerMessage::Sent { message_id, .. } => message_id.0.clone(),
        other => panic!("expected sent, got {other:?}"),
    }
}

#[tokio::test]
async fn two_clients_chat() {
    let server = TestServer::start().await;
    let (ann, _ann_events) = Client::connect(server.url(), quick()).await.expect("Ann connects");
    let (bo, mut bo_events) = Client::connect(server.url(), quick()).await.expect("Bo connects");
    join(&ann).await;
    join(&bo).await;
    let id = sent_id(&ann.send(ROOM, "Is anyone else up tonight?").await.expect("sent"));
    let got = next_message(&mut bo_events).await;
    assert_eq!((got.message_id.0.as_str(), got.text.as_str()), (id.as_str(), "Is anyone else up tonight?"));
    let ServerMessage::Welcome { limits, .. } = ann.welcome() else { panic!("expected welcome") };
    let refused = ann.send(ROOM, "x".repeat(limits.max_text_chars as usize + 1)).await.expect_err("too long");
    assert_eq!(refused.code(), Some(ErrorCode::TooLarge), "{refused:?}");
}

/// SIGKILL mid-conversation, the same server back on the same port and data
/// dir: every message acked before and after reaches the reader exactly once
/// and in order, and `reconnected` says the resume was complete.
#[tokio::test]
async fn every_acked_message_arrives_once_in_order_across_a_sigkill() {
    let data = TempDir::new();
    let dir = data.0.to_str().unwrap().to_owned();
    let args = ["--data-dir", dir.as_str(), "--messages-per-10s", "1000"];
    let server = Process::spawn(&args, &[]);
    let (reader, mut events) = Client::connect(&server.url, quick()).await.expect("the reader connects");
    let (writer, mut writer_events) = Client::connect(&server.url, quick()).await.expect("the writer connects");
    join(&reader).await;
    join(&writer).await;
    let mut acked = Vec::new();
    for i in 0..10 {
        acked.push(sent_id(&writer.send(ROOM, format!("before {i}")).await.expect("sent")));
    }
    // The reader has seen some of them, not necessarily all, when the server dies.
    let mut seen = vec![next_message(&mut events).await.message_id.0];
    let listen = server.addr().to_owned();
    drop(server);

    let server = Process::spawn_at(&listen, &args, &[]);
    // The writer reconnects on its own; its requests wait for that.
    loop {
        if let Event::Reconnected { rooms } = next(&mut writer_events, "the writer's reconnect").await {
            assert!(rooms.iter().all(|r| r.recovered && r.refused.is_none()), "{rooms:?}");
            break;
        }
    }
    for i in 0..10 {
        acked.push(sent_id(&writer.send(ROOM, format!("after {i}")).await.expect("sent after the restart")));
    }
    let mut reconnected = None;
    while seen.len() < acked.len() || reconnected.is_none() {
        match next(&mut events, "the rest of the messages").await {
            Event::Frame(ServerMessage::Message(m)) => seen.push(m.message_id.0),
            Event::Reconnected { rooms } => reconnected = Some(rooms),
            _ => {}
        }
    }
    assert_eq!(seen, acked, "every acked message once, in order");
    let rooms = reconnected.expect("the reader was told it reconnected");
    assert_eq!(rooms.len(), 1);
    assert!(rooms[0].recovered, "history on disk: the resume is complete");
    // Nothing comes twice later either.
    let extra = tokio::time::timeout(Duration::from_millis(500), next_message(&mut events)).await;
    assert!(extra.is_err(), "a duplicate: {extra:?}");
    drop(server);
}

/// A room that keeps no history loses it with the process: the resume after
/// a restart says `recovered: false`, never passing the gap off as complete.
#[tokio::test]
async fn a_lost_history_is_reported_not_recovered() {
    let data = TempDir::new();
    let config = data.0.join("kindred.toml");
    std::fs::write(&config, "[[rooms]]\nid = \"ephemeral\"\nname = \"Ephemeral\"\ntopic = \"grief\"\ndescription = \"Nothing kept.\"\nhistory_minutes = 0\n")
        .unwrap();
    let (dir, config) = (data.0.to_str().unwrap().to_owned(), config.to_str().unwrap().to_owned());
    let args = ["--data-dir", dir.as_str(), "--config", config.as_str()];
    let server = Process::spawn(&args, &[]);
    let (reader, mut events) = Client::connect(&server.url, quick()).await.expect("connects");
    join_room(&reader, "ephemeral").await;
    let listen = server.addr().to_owned();
    drop(server);
    let _server = Process::spawn_at(&listen, &args, &[]);
    loop {
        match next(&mut events, "the reconnect").await {
            Event::Reconnected { rooms } => {
                assert_eq!(rooms.len(), 1);
                assert!(!rooms[0].recovered, "{rooms:?}");
                break;
            }
            Event::Closed { reconnect, .. } => assert!(reconnect, "a dropped socket is worth another try"),
            _ => {}
        }
    }
}

/// 4401 (the account was erased from another tab) and 4403 (banned from the
/// whole service): the client stops, says it will not reconnect, and its
/// events end.
#[tokio::test]
async fn a_4401_or_4403_close_is_final() {
    let server = TestServer::start().await;
    let (ann, _ann_events) = Client::connect(server.url(), quick()).await.expect("Ann connects");
    let token = match ann.welcome() {
        ServerMessage::Welcome { session_token, .. } => session_token.clone(),
        other => panic!("{other:?}"),
    };
    let second_tab = Options { token: Some(token), ..quick() };
    let (_tab, mut tab_events) = Client::connect(server.url(), second_tab).await.expect("Ann's second tab connects");
    assert!(matches!(ann.request(ClientMessage::ForgetMe { id: None }).await, Ok(ServerMessage::Forgotten { .. })));
    assert_final(&mut tab_events, 4401).await;

    let (bo, mut bo_events) = Client::connect(server.url(), quick()).await.expect("Bo connects");
    let ServerMessage::Joined { me, .. } = join(&bo).await else { panic!("expected joined") };
    let mut admin = server.staff(Role::Admin, None, ROOM).await;
    let ban = ModerationAction::Ban { member_id: me.member_id, duration_s: None, reason: None, service: true };
    moderated(&admin.moderate(ROOM, ban).await);
    assert_final(&mut bo_events, 4403).await;
    let after = bo.send(ROOM, "still here?").await.expect_err("a closed client sends nothing");
    assert!(matches!(after, ClientError::Closed), "{after:?}");
}

async fn assert_final(events: &mut Events, code: u16) {
    loop {
        match next(events, "the close").await {
            Event::Closed { code: got, reconnect } => {
                assert_eq!((got, reconnect), (Some(code), false));
                break;
            }
            Event::Reconnecting { .. } | Event::Reconnected { .. } => panic!("reconnecting after {code}"),
            Event::Frame(_) => {}
        }
    }
    let end = tokio::time::timeout(Duration::from_secs(2), events.next()).await;
    assert!(matches!(end, Ok(None)), "the events end after a final close: {end:?}");
}

/// The example bot of docs/clients.md, run as written, answers "hello".
#[tokio::test]
async fn the_example_bot_answers_hello() {
    let server = TestServer::start().await;
    let (ann, mut events) = Client::connect(server.url(), quick()).await.expect("Ann connects");
    join(&ann).await;
    let url = server.url();
    let bot = tokio::spawn(async move { bot::run(&url, ROOM).await });
    loop {
        if let Event::Frame(ServerMessage::Presence { joined: Some(_), .. }) = next(&mut events, "the bot joining").await {
            break;
        }
    }
    let hello = sent_id(&ann.send(ROOM, "hello").await.expect("sent"));
    let answer = loop {
        let m = next_message(&mut events).await;
        if m.reply_to.as_ref().is_some_and(|r| r.0 == hello) {
            break m;
        }
    };
    assert!(answer.text.starts_with("Hello, "), "{}", answer.text);
    bot.abort();
}
