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
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
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
