//! The result of one run: the JSON file (`--out`) that `chart` reads back,
//! and the Markdown summary printed on stdout.

use crate::procfs::Usage;
use crate::stats::Percentiles;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    pub scenario: String,
    pub label: String,
    /// The command line that produced this result.
    pub command: String,
    pub started_unix_s: u64,
    /// How many server URLs the connections were spread over.
    pub servers: usize,
    /// `i/n`: this process ran every n-th connection, starting at i.
    pub shard: String,
    pub rooms: usize,
    pub members_per_room: usize,
    pub senders_per_room: usize,
    /// Connections this process opened (for `connect --churn`: workers).
    pub connections: usize,
    pub joined: u64,
    pub setup_failed: u64,
    /// Joined connections that ended before the run did (their close codes are in `close_codes`).
    pub dropped: u64,
    /// Seconds from the first connect to the last `joined`.
    pub setup_s: f64,
    pub sessions_per_s: f64,
    /// The measured window, in seconds.
    pub duration_s: f64,
    /// What the senders were asked to send (all shards), and what this process should receive of it.
    pub offered_msgs_per_s: f64,
    pub offered_deliveries_per_s: f64,
    pub sent: u64,
    pub acked: u64,
    pub deliveries: u64,
    /// `sent` replies per second (messages the server accepted from this process).
    pub msgs_per_s: f64,
    pub deliveries_per_s: f64,
    /// `end_to_end` (send → receive) or `session_setup` (connect → `joined`).
    pub latency_kind: String,
    pub latency: Percentiles,
    pub errors: BTreeMap<String, u64>,
    pub close_codes: BTreeMap<String, u64>,
    pub server: Option<Resources>,
    pub generator: Resources,
}

/// CPU and memory of a set of processes over the measured window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub pids: Vec<u32>,
    /// CPU seconds used in the measured window, and as a share of one core.
    pub cpu_s: f64,
    pub cpu_percent: f64,
    /// CPU microseconds per delivery in the window.
    pub cpu_us_per_delivery: Option<f64>,
    /// RSS before any connection was opened, and at the end of the window.
    pub rss_start_kib: u64,
    pub rss_kib: u64,
    pub rss_peak_kib: u64,
    /// (RSS at the end − RSS at the start) / joined connections.
    pub bytes_per_connection: Option<f64>,
}

impl Resources {
    pub fn measure(
        pids: &[u32],
        start: Usage,
        before: Usage,
        after: Usage,
        window_s: f64,
        deliveries: u64,
        connections: u64,
    ) -> Resources {
        let cpu_s = (after.cpu_s - before.cpu_s).max(0.0);
        Resources {
            pids: pids.to_vec(),
            cpu_s,
            cpu_percent: cpu_s / window_s.max(1e-9) * 100.0,
            cpu_us_per_delivery: (deliveries > 0).then(|| cpu_s * 1e6 / deliveries as f64),
            rss_start_kib: start.rss_kib,
            rss_kib: after.rss_kib,
            rss_peak_kib: after.rss_peak_kib,
            bytes_per_connection: (connections > 0)
                .then(|| (after.rss_kib as f64 - start.rss_kib as f64) * 1024.0 / connections as f64),
        }
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let title = if self.label.is_empty() { self.scenario.clone() } else { format!("{} ({})", self.scenario, self.label) };
        // Writing to a String cannot fail.
        let _ = writeln!(s, "## kindred-loadtest: {title}\n");
        let _ = writeln!(s, "| metric | value |\n| --- | --- |");
        let mut row = |k: &str, v: String| {
            let _ = writeln!(s, "| {k} | {v} |");
        };
        row("command", format!("`{}`", self.command));
        row("servers / shard", format!("{} / {}", self.servers, self.shard));
        row("rooms × members (senders)", format!("{} × {} ({})", self.rooms, self.members_per_room, self.senders_per_room));
        row(
            "connections joined / failed / dropped",
            format!("{} of {} / {} / {}", self.joined, self.connections, self.setup_failed, self.dropped),
        );
        row("setup", format!("{:.1} s, {:.0} sessions/s", self.setup_s, self.sessions_per_s));
        row("measured window", format!("{:.1} s", self.duration_s));
        if self.offered_msgs_per_s > 0.0 {
            row(
                "offered",
                format!("{:.0} msgs/s → {:.0} deliveries/s", self.offered_msgs_per_s, self.offered_deliveries_per_s),
            );
            row("accepted msgs/s", format!("{:.0}", self.msgs_per_s));
        }
        row("deliveries (per s)", format!("{} ({:.0}/s)", self.deliveries, self.deliveries_per_s));
        let l = &self.latency;
        row(
            &format!("latency {} (ms)", self.latency_kind),
            format!(
                "p50 {:.2} · p90 {:.2} · p99 {:.2} · p99.9 {:.2} · max {:.2} ({} samples)",
                l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.samples
            ),
        );
        let list = |m: &BTreeMap<String, u64>| {
            if m.is_empty() { "none".to_owned() } else { m.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ") }
        };
        row("errors", list(&self.errors));
        row("close codes", list(&self.close_codes));
        if let Some(sv) = &self.server {
            row(
                "server CPU",
                format!(
                    "{:.0}% of a core{}",
                    sv.cpu_percent,
                    sv.cpu_us_per_delivery.map(|u| format!(", {u:.2} µs/delivery")).unwrap_or_default()
                ),
            );
            row(
                "server RSS",
                format!(
                    "{:.1} → {:.1} MiB (peak {:.1}){}",
                    sv.rss_start_kib as f64 / 1024.0,
                    sv.rss_kib as f64 / 1024.0,
                    sv.rss_peak_kib as f64 / 1024.0,
                    sv.bytes_per_connection.map(|b| format!(", {:.1} KiB/connection", b / 1024.0)).unwrap_or_default()
                ),
            );
        }
        let g = &self.generator;
        row(
            "generator",
            format!("{:.0}% CPU, RSS {:.1} MiB", g.cpu_percent, g.rss_kib as f64 / 1024.0),
        );
        s
    }
}
