//! The code's habits, checked with every test run (and so by `.ci/run`):
//! rustfmt's style as `rustfmt.toml` sets it, and clippy without a warning.
//! Its own test binary, so the clippy build never competes with the timing
//! of the integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("server/ is inside the workspace").to_owned()
}

/// Run `cargo args…` in the workspace; panic with its output and `fix` when it fails.
fn cargo(args: &[&str], fix: &str) {
    let root = workspace();
    let out = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(&root)
        // Its own target dir: this test runs inside `cargo test`, which holds the lock on the other.
        .env("CARGO_TARGET_DIR", root.join("target").join("habits"))
        .output()
        .unwrap_or_else(|e| panic!("could not run cargo {}: {e}", args.join(" ")));
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let missing = if stderr.contains("is not installed") { "\n(the component is missing: `rustup component add rustfmt clippy`)" } else { "" };
        panic!("`cargo {}` failed; {fix}{missing}\n{stdout}\n{stderr}", args.join(" "));
    }
}

#[test]
fn the_code_is_formatted_and_clippy_clean() {
    cargo(&["fmt", "--all", "--check"], "run `cargo fmt --all` and commit the result");
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], "fix what clippy says");
}
