//! Smoke test: start the real `kindred` server (building it first if this
//! profile has none), run every scenario for a second or two at small scale,
//! and check that messages flowed, nothing failed, and the JSON results parse
//! and chart; and that crisis messages' alerts reach a staff connection.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const LOADTEST: &str = env!("CARGO_BIN_EXE_kindred-loadtest");

/// The server process; killed when the test ends, however it ends.
struct Server {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `<target>/<profile>/kindred`, next to this test's own profile directory.
fn server_binary() -> PathBuf {
    // The test runs from <target>/<profile>/deps/smoke-<hash>.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("<target>/<profile>").to_path_buf();
    let binary = profile_dir.join("kindred");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "kindred-server", "--bin", "kindred"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.current_dir(env!("CARGO_MANIFEST_DIR")).status().expect("run cargo build");
        assert!(status.success(), "building the kindred server failed");
    }
    assert!(binary.exists(), "no server binary at {}", binary.display());
    binary
}

/// A server with its own data dir (`name` keeps tests running in parallel apart).
fn start_server(name: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("kindred-loadtest-smoke-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = Command::new(LOADTEST).args(["config", "--rooms", "20", "--capacity", "100"]).output().expect("run kindred-loadtest config");
    assert!(config.status.success());
    std::fs::write(dir.join("rooms.toml"), &config.stdout).expect("write config");
    let mut child = Command::new(server_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.join("rooms.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kindred");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line).expect("server output");
    let addr = line.trim().strip_prefix("kindred listening on http://").unwrap_or_else(|| panic!("unexpected: {line}"));
    Server { url: format!("ws://{addr}/ws"), child, dir }
}

/// Run one scenario and return its parsed JSON result.
fn run(server: &Server, name: &str, args: &[&str]) -> Value {
    let out = server.dir.join(format!("{name}.json"));
    let pid = server.child.id().to_string();
    let output = Command::new(LOADTEST)
        .args(args)
        .args(["--url", &server.url, "--server-pid", &pid, "--quiet", "--warmup", "0.3", "--out"])
        .arg(&out)
        .output()
        .expect("run kindred-loadtest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{name} failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("| deliveries (per s) |"), "{name}: no summary in {stdout}");
    let result: Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("result file")).expect("result is JSON");
    assert_eq!(result["errors"], serde_json::json!({}), "{name}: {stdout}");
    assert_eq!(result["close_codes"], serde_json::json!({}), "{name}: {stdout}");
    assert_eq!(result["setup_failed"], 0, "{name}: {stdout}");
    assert!(result["server"]["cpu_s"].is_number(), "{name}: server usage missing");
    result
}

#[test]
fn every_scenario_runs_against_the_real_server() {
    let server = start_server("scenarios");

    let rooms = run(&server, "rooms", &["rooms", "--rooms", "5", "--members", "4", "--interval", "0.2", "--duration", "1.5"]);
    assert!(rooms["deliveries"].as_u64().unwrap() > 0);
    assert!(rooms["latency"]["samples"].as_u64().unwrap() > 0);
    assert!(rooms["latency"]["p99_ms"].as_f64().unwrap() > 0.0);

    let fanout =
        run(&server, "fanout", &["fanout", "--room-prefix", "lt", "--rooms", "1", "--members", "40", "--senders", "4", "--rate", "4000", "--duration", "1.5"]);
    assert!(fanout["deliveries"].as_u64().unwrap() > 0);
    assert_eq!(fanout["joined"], 40);

    let connect = run(&server, "connect", &["connect", "--connections", "200", "--members", "10", "--duration", "0"]);
    assert_eq!(connect["joined"], 200);
    assert!(connect["sessions_per_s"].as_f64().unwrap() > 0.0);

    let churn = run(&server, "churn", &["connect", "--churn", "--concurrency", "8", "--rooms", "5", "--duration", "1"]);
    assert!(churn["joined"].as_u64().unwrap() > 0);

    let idle = run(&server, "idle", &["idle", "--connections", "100", "--duration", "0.5"]);
    assert_eq!(idle["joined"], 100);
    assert!(idle["server"]["bytes_per_connection"].is_number());

    let svg = server.dir.join("chart.svg");
    let chart = Command::new(LOADTEST)
        .arg("chart")
        .args(["rooms", "fanout", "idle"].map(|n| server.dir.join(format!("{n}.json"))))
        .arg("--out")
        .arg(&svg)
        .output()
        .expect("run chart");
    assert!(chart.status.success(), "{}", String::from_utf8_lossy(&chart.stderr));
    let svg = std::fs::read_to_string(svg).expect("chart written");
    assert!(svg.starts_with("<svg") && svg.contains("<circle"));
}

#[test]
fn crisis_messages_raise_alerts_that_the_staff_connection_times() {
    let server = start_server("crisis");
    let token = Command::new(server_binary())
        .args(["token", "--role", "facilitator", "--name", "Bench", "--data-dir"])
        .arg(server.dir.join("data"))
        .env_remove("KINDRED_JWT_SECRET")
        .output()
        .expect("run kindred token");
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    let token = String::from_utf8(token.stdout).expect("token is text").trim().to_owned();

    let rooms = run(
        &server,
        "rooms-crisis",
        &["rooms", "--rooms", "5", "--members", "4", "--interval", "0.2", "--duration", "1.5", "--crisis-per-s", "4", "--staff-token", &token],
    );
    // Crisis messages are delivered like any other.
    assert!(rooms["deliveries"].as_u64().unwrap() > 0);
    assert!(rooms["latency"]["samples"].as_u64().unwrap() > 0);
    let alerts = &rooms["alerts"];
    let sent = alerts["crisis_sent"].as_u64().unwrap();
    let received = alerts["alerts_received"].as_u64().unwrap();
    assert!((1..=20).contains(&sent), "one a sender at most: {alerts}");
    assert_eq!(alerts["staff_connection"], true);
    assert!(received >= 1, "{alerts}");
    assert_eq!(received, sent, "every crisis message from a different member raises one alert: {alerts}");
    assert_eq!(alerts["staff_dropped"], false);
    let latency = &alerts["latency"];
    assert_eq!(latency["samples"].as_u64(), Some(received));
    let max_ms = latency["max_ms"].as_f64().unwrap();
    assert!(max_ms > 0.0 && max_ms < 10_000.0, "a sane alert latency: {latency}");
    // The server's own count, read from /metrics before and after.
    let server_view = &alerts["server"];
    assert_eq!(server_view["alerts_total"].as_u64(), Some(received), "{server_view}");
    assert_eq!(server_view["delivery_count"].as_u64(), Some(received), "{server_view}");
    assert!(!rooms["command"].as_str().unwrap().contains(&token), "the token must not be written to the results");

    // Without a crisis rate nothing is sent, and old-style runs have no alerts section.
    let plain = run(&server, "rooms-plain", &["rooms", "--rooms", "2", "--members", "4", "--interval", "0.2", "--duration", "0.5"]);
    assert!(plain.get("alerts").is_none(), "{plain}");

    // A bad token fails the run instead of quietly timing nothing.
    let bad = Command::new(LOADTEST)
        .args(["rooms", "--rooms", "1", "--members", "2", "--duration", "0.2", "--quiet", "--url", &server.url])
        .args(["--crisis-per-s", "1", "--staff-token", "not-a-token"])
        .output()
        .expect("run kindred-loadtest");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("staff connection"), "{}", String::from_utf8_lossy(&bad.stderr));
}
