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
    /// `send` → `sent` on the sampled senders (none for scenarios that do not send).
    pub ack_latency: Percentiles,
    pub errors: BTreeMap<String, u64>,
    pub close_codes: BTreeMap<String, u64>,
    pub server: Option<Resources>,
    pub generator: Resources,
    /// `--crisis-per-s`: crisis messages sent and the alerts they raised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertReport>,
}

/// Crisis alerts under load: what this process's senders sent, and what its
/// staff connection (shard 0 with `--staff-token`) received and when.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertReport {
    /// Crisis messages per second this process offered (`--crisis-per-s` / shards), in the measured window.
    pub crisis_per_s: f64,
    /// Crisis messages this process's senders wrote.
    pub crisis_sent: u64,
    /// Whether this process had the staff connection (the fields below are 0 without it).
    pub staff_connection: bool,
    /// Alerts for this run's crisis messages, each counted once.
    pub alerts_received: u64,
    /// Alerts for messages sent before the window opened (replays of older open alerts): not timed.
    pub alerts_before_window: u64,
    pub alerts_duplicate: u64,
    pub alerts_unreadable: u64,
    /// The staff connection ended early.
    pub staff_dropped: bool,
    /// Send (the stamp in the message text) → the `alert` frame read by the staff connection.
    pub latency: Percentiles,
    /// Ordinary messages sent within this many ms after one of this process's crisis messages…
    pub after_crisis_ms: u64,
    /// …and their end-to-end latency, to set against the whole run's (does storing an alert hold up the chat?).
    pub after_crisis_latency: Percentiles,
    /// The server's own view over the same time (`/metrics`, read before the window and after the last alert).
    pub server: Option<ServerAlerts>,
}

/// `kindred_alerts_total` and `kindred_alert_delivery_seconds` (message
/// accepted → alert queued to the first staff connection).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerAlerts {
    pub alerts_total: u64,
    pub delivery_count: u64,
    pub delivery_sum_s: f64,
    /// Cumulative counts, as Prometheus writes them.
    pub buckets: Vec<Bucket>,
    /// The upper bound (`le`, in seconds) of the bucket holding the 99th percentile.
    pub delivery_p99_le: Option<String>,
    pub delivery_mean_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bucket {
    pub le: String,
    pub count: u64,
}

impl ServerAlerts {
    /// Fill in the derived fields.
    pub fn finish(mut self) -> ServerAlerts {
        let rank = (self.delivery_count as f64 * 0.99).ceil() as u64;
        self.delivery_p99_le = (self.delivery_count > 0).then(|| self.buckets.iter().find(|b| b.count >= rank).map(|b| b.le.clone())).flatten();
        self.delivery_mean_ms = (self.delivery_count > 0).then(|| self.delivery_sum_s * 1000.0 / self.delivery_count as f64);
        self
    }

    /// What happened between two scrapes of the same server.
    pub fn since(&self, before: &ServerAlerts) -> ServerAlerts {
        let earlier = |le: &str| before.buckets.iter().find(|b| b.le == le).map_or(0, |b| b.count);
        ServerAlerts {
            alerts_total: self.alerts_total.saturating_sub(before.alerts_total),
            delivery_count: self.delivery_count.saturating_sub(before.delivery_count),
            delivery_sum_s: (self.delivery_sum_s - before.delivery_sum_s).max(0.0),
            buckets: self.buckets.iter().map(|b| Bucket { le: b.le.clone(), count: b.count.saturating_sub(earlier(&b.le)) }).collect(),
            delivery_p99_le: None,
            delivery_mean_ms: None,
        }
        .finish()
    }
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
    pub fn measure(pids: &[u32], start: Usage, before: Usage, after: Usage, window_s: f64, deliveries: u64, connections: u64) -> Resources {
        let cpu_s = (after.cpu_s - before.cpu_s).max(0.0);
        Resources {
            pids: pids.to_vec(),
            cpu_s,
            cpu_percent: cpu_s / window_s.max(1e-9) * 100.0,
            cpu_us_per_delivery: (deliveries > 0).then(|| cpu_s * 1e6 / deliveries as f64),
            rss_start_kib: start.rss_kib,
            rss_kib: after.rss_kib,
            rss_peak_kib: after.rss_peak_kib,
            bytes_per_connection: (connections > 0).then(|| (after.rss_kib as f64 - start.rss_kib as f64) * 1024.0 / connections as f64),
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
        row("connections joined / failed / dropped", format!("{} of {} / {} / {}", self.joined, self.connections, self.setup_failed, self.dropped));
        row("setup", format!("{:.1} s, {:.0} sessions/s", self.setup_s, self.sessions_per_s));
        row("measured window", format!("{:.1} s", self.duration_s));
        if self.offered_msgs_per_s > 0.0 {
            row("offered", format!("{:.0} msgs/s → {:.0} deliveries/s", self.offered_msgs_per_s, self.offered_deliveries_per_s));
            row("accepted msgs/s", format!("{:.0}", self.msgs_per_s));
        }
        row("deliveries (per s)", format!("{} ({:.0}/s)", self.deliveries, self.deliveries_per_s));
        let l = &self.latency;
        row(
            &format!("latency {} (ms)", self.latency_kind),
            format!("p50 {:.2} · p90 {:.2} · p99 {:.2} · p99.9 {:.2} · max {:.2} ({} samples)", l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.samples),
        );
        let a = &self.ack_latency;
        if a.samples > 0 {
            row(
                "latency send → sent (ms)",
                format!(
                    "p50 {:.2} · p90 {:.2} · p99 {:.2} · p99.9 {:.2} · max {:.2} ({} samples)",
                    a.p50_ms, a.p90_ms, a.p99_ms, a.p999_ms, a.max_ms, a.samples
                ),
            );
        }
        let list = |m: &BTreeMap<String, u64>| {
            if m.is_empty() { "none".to_owned() } else { m.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ") }
        };
        row("errors", list(&self.errors));
        row("close codes", list(&self.close_codes));
        if let Some(sv) = &self.server {
            row(
                "server CPU",
                format!("{:.0}% of a core{}", sv.cpu_percent, sv.cpu_us_per_delivery.map(|u| format!(", {u:.2} µs/delivery")).unwrap_or_default()),
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
        if let Some(a) = &self.alerts {
            row("crisis messages sent", format!("{} ({:.2}/s offered in the window)", a.crisis_sent, a.crisis_per_s));
            if a.staff_connection {
                let mut extra = Vec::new();
                for (n, what) in [(a.alerts_before_window, "from before the window"), (a.alerts_duplicate, "duplicate"), (a.alerts_unreadable, "unreadable")] {
                    if n > 0 {
                        extra.push(format!("{n} {what}"));
                    }
                }
                if a.staff_dropped {
                    extra.push("the staff connection dropped".into());
                }
                let extra = if extra.is_empty() { String::new() } else { format!(" ({})", extra.join(", ")) };
                row("alerts received by staff", format!("{}{extra}", a.alerts_received));
                let l = &a.latency;
                row("alert latency, send → staff (ms)", format!("p50 {:.2} · p99 {:.2} · max {:.2} ({} samples)", l.p50_ms, l.p99_ms, l.max_ms, l.samples));
            }
            let n = &a.after_crisis_latency;
            if n.samples > 0 {
                row(
                    &format!("latency of messages sent ≤ {} ms after a crisis message (ms)", a.after_crisis_ms),
                    format!("p50 {:.2} · p90 {:.2} · p99 {:.2} · max {:.2} ({} samples)", n.p50_ms, n.p90_ms, n.p99_ms, n.max_ms, n.samples),
                );
            }
            if let Some(sv) = &a.server {
                row(
                    "server: kindred_alerts_total / alert delivery",
                    format!(
                        "{} / {} observed, mean {}, p99 ≤ {} s",
                        sv.alerts_total,
                        sv.delivery_count,
                        sv.delivery_mean_ms.map_or("-".into(), |m| format!("{m:.2} ms")),
                        sv.delivery_p99_le.as_deref().unwrap_or("-")
                    ),
                );
            }
        }
        let g = &self.generator;
        row("generator", format!("{:.0}% CPU, RSS {:.1} MiB", g.cpu_percent, g.rss_kib as f64 / 1024.0));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_without_alerts_still_parse_and_stay_without_them() {
        let old: Report = serde_json::from_str(include_str!("../results/rooms-15000.json")).unwrap();
        assert!(old.alerts.is_none() && old.deliveries > 0);
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("\"alerts\""));
        assert!(!old.markdown().contains("alert"));

        let mut with = old;
        with.alerts = Some(AlertReport {
            crisis_per_s: 1.0,
            crisis_sent: 30,
            staff_connection: true,
            alerts_received: 30,
            latency: Percentiles { samples: 30, p50_ms: 1.5, p99_ms: 4.0, max_ms: 4.0, ..Percentiles::default() },
            ..AlertReport::default()
        });
        let back: Report = serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back.alerts.unwrap().alerts_received, 30);
        let md = with.markdown();
        assert!(md.contains("| alerts received by staff | 30 |"), "{md}");
        assert!(md.contains("p50 1.50 · p99 4.00 · max 4.00 (30 samples)"), "{md}");
    }
}
