//! Runs the web client's browser tests (`client-web/tests`, node's test
//! runner driving Debian's Chromium through playwright-core) against the
//! `kindred` binary built for these tests, after making sure what they need
//! is installed. Also checks the embedded client is served with its CSP.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn have(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program} >/dev/null 2>&1")]).status().is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Install Debian packages when missing, or fail saying how to.
///
/// Tests run in parallel and several may need the same package at once: one
/// installs while the others wait (two `apt-get`s at once fail on dpkg's lock,
/// which `DPkg::Lock::Timeout` also waits for when another process holds it).
pub(crate) fn ensure_packages(binary: &str, packages: &[&str]) {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if have(binary) {
        return;
    }
    assert!(is_root(), "`{binary}` is missing and these tests are not running as root: install it with `sudo apt-get install -y {}`", packages.join(" "));
    let script = format!(
        "(apt-get {o} install -y --no-install-recommends {pk} || (apt-get {o} update && apt-get {o} install -y --no-install-recommends {pk})) >/tmp/kindred-apt.log 2>&1",
        o = "-o DPkg::Lock::Timeout=300",
        pk = packages.join(" ")
    );
    let ok = Command::new("sh").args(["-c", &script]).env("DEBIAN_FRONTEND", "noninteractive").status().is_ok_and(|s| s.success());
    assert!(ok && have(binary), "installing {} failed: see /tmp/kindred-apt.log", packages.join(" "));
}

#[tokio::test]
async fn the_embedded_client_is_served_with_a_strict_csp() {
    let server = crate::common::TestServer::start().await;
    let page = crate::session::http_get(server.addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.to_lowercase().contains("content-security-policy: default-src 'self'"), "{page}");
    assert!(page.contains("<html"), "index.html is served at /");
    // The page imports the client library from /sdk/, embedded from client-web/sdk/.
    let sdk = crate::session::http_get(server.addr, "/sdk/kindred-client.js").await;
    assert!(sdk.starts_with("HTTP/1.1 200"), "{sdk}");
    assert!(sdk.to_lowercase().contains("content-type: text/javascript"), "{sdk}");
    assert!(sdk.contains("export class KindredClient"), "the client library is served at /sdk/");
    let missing = crate::session::http_get(server.addr, "/../../etc/passwd").await;
    assert!(missing.starts_with("HTTP/1.1 404") || missing.starts_with("HTTP/1.1 400"), "{missing}");
}

#[test]
fn browser_tests_pass_in_headless_chromium() {
    if std::env::var_os("KINDRED_SKIP_BROWSER_TESTS").is_some() {
        eprintln!("KINDRED_SKIP_BROWSER_TESTS is set: browser tests not run");
        return;
    }
    let web = workspace().join("client-web");
    ensure_packages("node", &["nodejs", "npm"]);
    ensure_packages("chromium", &["chromium"]);
    if !web.join("node_modules/playwright-core").exists() || !web.join("node_modules/axe-core").exists() {
        let status = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&web).status().expect("npm runs");
        assert!(status.success(), "`npm ci` in client-web failed");
    }
    // The client library's tests use Node's global WebSocket, behind a flag before Node 22.
    let node_major = Command::new("node").arg("--version").output().ok().and_then(|o| {
        let version = String::from_utf8_lossy(&o.stdout).trim().trim_start_matches('v').to_owned();
        version.split('.').next().and_then(|major| major.parse::<u32>().ok())
    });
    let websocket_flag: &[&str] = if node_major.is_some_and(|major| major < 22) { &["--experimental-websocket"] } else { &[] };
    ensure_packages("redis-server", &["redis-server"]);
    let output = Command::new("node")
        .args(websocket_flag)
        .args(["--test", "--test-concurrency=1", "tests/"])
        .current_dir(&web)
        .env("KINDRED_BIN", env!("CARGO_BIN_EXE_kindred"))
        .output()
        .expect("node runs");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{report}");
    assert!(output.status.success(), "browser tests failed:\n{report}");
}
