//! The `kindred` binary as an operator runs it: `kindred token` against a
//! running server with no setup, and SIGTERM draining connections with 1012.

use crate::common::*;
use kindred_protocol::{Role, ServerMessage};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_kindred");

/// A `kindred serve` process on an ephemeral port; killed on drop.
pub(crate) struct Process {
    pub child: Child,
    pub url: String,
}

impl Process {
    fn start(data_dir: &std::path::Path) -> Process {
        let data = data_dir.to_str().unwrap();
        Process::spawn(&["--data-dir", data], &[])
    }

    /// `kindred serve --listen 127.0.0.1:0` with more flags and environment;
    /// returns once it printed where it listens.
    pub(crate) fn spawn(args: &[&str], env: &[(&str, &str)]) -> Process {
        Process::spawn_at("127.0.0.1:0", args, env)
    }

    /// The same on a given address: a server back where its clients left it.
    pub(crate) fn spawn_at(listen: &str, args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", listen])
            .args(args)
            .env_remove("KINDRED_JWT_SECRET")
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kindred starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("kindred listening on http://").unwrap_or_else(|| panic!("{line:?}")).to_owned();
        Process { child, url: format!("ws://{addr}/ws") }
    }
}

impl Process {
    /// `host:port` it listens on (to start it again on the same address).
    pub(crate) fn addr(&self) -> &str {
        self.url.trim_start_matches("ws://").trim_end_matches("/ws")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn kindred_token_signs_in_a_facilitator_on_a_fresh_data_dir() {
    let data = TempDir::new();
    let server = Process::start(&data.0);
    let out = Command::new(BIN)
        .args(["token", "--role", "facilitator", "--name", "Sam Rivers", "--rooms", "grief,anxiety", "--ttl", "1h", "--data-dir"])
        .arg(&data.0)
        .env_remove("KINDRED_JWT_SECRET")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut c = TestClient::connect(&server.url).await;
    let welcome = c.hello(Some(&token), None).await;
    assert!(matches!(welcome, ServerMessage::Welcome { role: Role::Facilitator, .. }), "{welcome:?}");
}

#[tokio::test]
async fn sigterm_asks_every_client_to_reconnect_and_exits() {
    let data = TempDir::new();
    let mut server = Process::start(&data.0);
    let mut c = TestClient::connect(&server.url).await;
    c.hello(None, None).await;
    c.join("grief").await;
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    c.expect("shutdown notice", |m| matches!(m, ServerMessage::Notice(_))).await;
    assert_eq!(c.closed(WAIT).await, Closed::Code(1012));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the server did not exit after SIGTERM");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_ban_survives_a_real_restart_of_the_server_process() {
    let data = TempDir::new();
    let server = Process::start(&data.0);
    let out = Command::new(BIN).args(["token", "--role", "facilitator", "--name", "Sam", "--data-dir"]).arg(&data.0).output().unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut f = TestClient::connect(&server.url).await;
    f.hello(Some(&token), None).await;
    f.join("grief").await;
    let mut a = TestClient::connect(&server.url).await;
    let welcome = a.hello(None, None).await;
    let a_id = match a.join("grief").await {
        ServerMessage::Joined { me, .. } => me.member_id,
        other => panic!("{other:?}"),
    };
    let reply = f
        .moderate("grief", kindred_protocol::ModerationAction::Ban { member_id: a_id, duration_s: None, reason: Some("harassment".into()), service: false })
        .await;
    assert!(matches!(reply, ServerMessage::Moderated { .. }), "{reply:?}");
    drop(server); // SIGKILL: no graceful shutdown, so the ban must already be on disk

    let server = Process::start(&data.0);
    let mut a = TestClient::connect(&server.url).await;
    a.hello(Some(&token_of(&welcome)), None).await;
    a.send(&kindred_protocol::ClientMessage::Join { id: Some(1.into()), room: "grief".into(), accept_rules: Some(1), since: None }).await;
    let e = a.expect_error(kindred_protocol::ErrorCode::Banned).await;
    assert_eq!(e.message, "harassment");
}

#[tokio::test]
async fn an_open_crisis_alert_survives_sigkill_and_reaches_the_facilitator_who_signs_in_after() {
    let data = TempDir::new();
    let server = Process::start(&data.0);
    let mut a = TestClient::connect(&server.url).await;
    a.hello(None, Some("Willow")).await;
    a.join("depression").await;
    let (message_id, _) = a.say("depression", "everyone would be better off without me").await;
    a.expect("crisis notice", |m| matches!(m, ServerMessage::Notice(n) if n.facilitators_alerted == Some(0))).await;
    drop(server); // SIGKILL: the alert must already be on disk

    let server = Process::start(&data.0);
    let out = Command::new(BIN).args(["token", "--role", "facilitator", "--name", "Sam", "--rooms", "depression", "--data-dir"]).arg(&data.0).output().unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut f = TestClient::connect(&server.url).await;
    f.hello(Some(&token), None).await;
    let got = f.expect("the alert, before any join", |m| matches!(m, ServerMessage::Alert { .. })).await;
    assert!(matches!(got, ServerMessage::Alert { message, .. } if message.message_id.0 == message_id));
}

/// Every message a member was told was `sent` is in history after SIGKILL
/// and a restart on one node: a resume from before the kill gets exactly the
/// missed ones, in order, once; a deleted one does not come back.
#[tokio::test]
async fn acked_messages_survive_sigkill_and_a_resume_gets_exactly_the_missed_ones() {
    let data = TempDir::new();
    let server = Process::spawn(&["--data-dir", data.0.to_str().unwrap(), "--messages-per-10s", "1000"], &[]);
    let out = Command::new(BIN).args(["token", "--role", "facilitator", "--name", "Sam", "--data-dir"]).arg(&data.0).output().unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut f = TestClient::connect(&server.url).await;
    f.hello(Some(&token), None).await;
    f.join("grief").await;
    let mut reader = TestClient::connect(&server.url).await;
    let welcome = reader.hello(None, None).await;
    let (_, _, epoch, _, _) = {
        let joined = reader.join("grief").await;
        let (me, history, epoch, seq, recovered) = joined_parts(&joined);
        (me.clone(), history.len(), epoch.to_owned(), seq, recovered)
    };
    let mut writer = TestClient::connect(&server.url).await;
    writer.hello(None, None).await;
    writer.join("grief").await;
    let mut acked = Vec::new();
    for i in 0..30 {
        acked.push(writer.say("grief", &format!("message {i}")).await);
    }
    let seen = reader.messages(5).await;
    let position = kindred_protocol::Position { epoch: epoch.clone(), seq: seen[4].seq };
    // A facilitator deletes one of the messages the reader has not seen yet.
    let (deleted, _) = acked[10].clone();
    let reply =
        f.moderate("grief", kindred_protocol::ModerationAction::DeleteMessage { message_id: kindred_protocol::MessageId(deleted.clone()), reason: None }).await;
    assert!(matches!(reply, ServerMessage::Moderated { .. }), "{reply:?}");
    f.expect("the deletion", |m| matches!(m, ServerMessage::MessageDeleted { .. })).await;
    drop(server); // SIGKILL, mid-conversation: no graceful shutdown

    let server = Process::spawn(&["--data-dir", data.0.to_str().unwrap(), "--messages-per-10s", "1000"], &[]);
    let mut reader = TestClient::connect(&server.url).await;
    reader.hello(Some(&token_of(&welcome)), None).await;
    let joined = reader.join_since("grief", Some(position)).await;
    let (_, history, epoch_after, seq, recovered) = joined_parts(&joined);
    assert!(recovered, "the resume is honoured after a restart");
    assert_eq!(epoch_after, epoch, "the room's history kept its epoch");
    let got: Vec<(String, u64)> = history.iter().map(|m| (m.message_id.0.clone(), m.seq)).collect();
    let expected: Vec<(String, u64)> = acked[5..].iter().filter(|(id, _)| *id != deleted).cloned().collect();
    assert_eq!(got, expected, "exactly the missed messages, in order, once, without the deleted one");
    assert_eq!(seq, acked[29].1);

    // And the room goes on from there: the next message takes the next seq.
    let mut writer = TestClient::connect(&server.url).await;
    writer.hello(None, None).await;
    writer.join("grief").await;
    let (_, next) = writer.say("grief", "after the restart").await;
    assert_eq!(next, acked[29].1 + 1);
}

/// A room that keeps no history writes nothing to disk.
#[tokio::test]
async fn a_room_keeping_no_history_writes_nothing_to_disk() {
    let data = TempDir::new();
    std::fs::write(
        data.0.join("kindred.toml"),
        "[[rooms]]\nid = \"ephemeral\"\nname = \"Ephemeral\"\ntopic = \"grief\"\ndescription = \"Nothing kept.\"\nhistory_minutes = 0\n",
    )
    .unwrap();
    let config = data.0.join("kindred.toml");
    let server = Process::spawn(&["--data-dir", data.0.to_str().unwrap(), "--config", config.to_str().unwrap(), "--messages-per-10s", "1000"], &[]);
    let mut a = TestClient::connect(&server.url).await;
    a.hello(None, None).await;
    a.join("ephemeral").await;
    let before = history_bytes(&data.0);
    let secret = "a line that must never reach the disk";
    for _ in 0..20 {
        a.say("ephemeral", secret).await;
    }
    drop(server);
    let after = history_bytes(&data.0);
    assert_eq!(before.len(), after.len(), "the history log did not grow");
    assert!(!after.windows(secret.len()).any(|w| w == secret.as_bytes()), "the text is not in the log");
}

/// Every segment of the history log, oldest first, end to end.
fn history_bytes(data_dir: &std::path::Path) -> Vec<u8> {
    let mut paths: Vec<_> = std::fs::read_dir(data_dir.join("history")).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths.iter().flat_map(|p| std::fs::read(p).unwrap()).collect()
}

/// Damage in the history log, before the segment the last run was writing,
/// fails start-up with an error naming the file, never a panic.
#[tokio::test]
async fn a_damaged_history_log_fails_start_up_with_a_clear_error() {
    let data = TempDir::new();
    let history = data.0.join("history");
    std::fs::create_dir_all(&history).unwrap();
    std::fs::write(history.join("0000000000000001.log"), b"this is not a log, it was overwritten by a full disk").unwrap();
    std::fs::write(history.join("0000000000000002.log"), b"").unwrap();
    let out = Command::new(BIN).args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(&data.0).env_remove("KINDRED_JWT_SECRET").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("0000000000000001.log") && stderr.contains("is damaged at byte 0"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
