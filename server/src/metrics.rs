//! Counters for `/metrics` (Prometheus text format). Plain relaxed atomics:
//! the fan-out adds its delivery count once per message, not per recipient.

use kindred_protocol::ErrorCode;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub frames_in: AtomicU64,
    pub messages_in: AtomicU64,
    pub deliveries: AtomicU64,
    /// Flushes of mailbox frames to sockets: deliveries / writes is frames per write.
    pub socket_writes: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
    /// Cluster: room changes not handed to Redis because its queue was full.
    pub cluster_events_dropped: AtomicU64,
    /// Cluster: times a Redis connection was found lost (each one is repaired).
    pub redis_reconnects: AtomicU64,
    /// Cluster: gaps in a room's seq filled from the stored history.
    pub redis_gap_fills: AtomicU64,
    /// Cluster: the last health-check round trip to Redis, in microseconds.
    pub redis_rtt_us: AtomicU64,
    /// Crisis alerts raised (new stored alerts, not repeats).
    pub alerts: AtomicU64,
    /// Escalation webhook attempts that failed (non-2xx, timeout, refused).
    pub alert_webhook_failures: AtomicU64,
    /// Message accepted → alert written to the first staff connection.
    pub alert_delivery: Histogram,
    /// One node: messages written to the history log, and the commits (each one fsync) that wrote them.
    pub history_appends: AtomicU64,
    pub history_commits: AtomicU64,
    /// One node: one commit of the history log (its write and fsync).
    pub history_commit: FineHistogram,
    /// One node: a message handed to the history log → on disk (what durability adds before `sent`).
    pub history_wait: FineHistogram,
    /// One counter per code, in the order of `ErrorCode::ALL`.
    errors: [AtomicU64; ErrorCode::ALL.len()],
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The text exposition; `gauges` are (name, help, value) read at scrape time.
    pub fn render(&self, gauges: &[(&str, &str, u64)]) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, value: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
        };
        counter(&mut out, "kindred_connections_opened_total", "WebSocket connections accepted.", &self.connections_opened);
        counter(&mut out, "kindred_connections_closed_total", "WebSocket connections ended.", &self.connections_closed);
        counter(&mut out, "kindred_frames_in_total", "Frames read from clients.", &self.frames_in);
        counter(&mut out, "kindred_messages_in_total", "Chat messages accepted (sent).", &self.messages_in);
        counter(&mut out, "kindred_deliveries_total", "Frames queued to connections by room fan-out.", &self.deliveries);
        counter(
            &mut out,
            "kindred_socket_writes_total",
            "Writes of frames to sockets, replies included (each one send; see write_coalesce_ms).",
            &self.socket_writes,
        );
        counter(&mut out, "kindred_slow_consumer_closes_total", "Connections closed with 4408 for not keeping up.", &self.slow_consumer_closes);
        counter(&mut out, "kindred_cluster_events_dropped_total", "Room changes not sent to Redis because its queue was full.", &self.cluster_events_dropped);
        counter(&mut out, "kindred_redis_reconnects_total", "Redis connections found lost and repaired.", &self.redis_reconnects);
        counter(&mut out, "kindred_redis_gap_fills_total", "Gaps in a room's seq filled from Redis history.", &self.redis_gap_fills);
        let _ = writeln!(
            out,
            "# HELP kindred_redis_rtt_seconds Last health-check round trip to Redis.\n# TYPE kindred_redis_rtt_seconds gauge\nkindred_redis_rtt_seconds {:.6}",
            self.redis_rtt_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        counter(&mut out, "kindred_alerts_total", "Crisis alerts raised.", &self.alerts);
        counter(&mut out, "kindred_alert_webhook_failures_total", "Escalation webhook attempts that failed (each is retried).", &self.alert_webhook_failures);
        self.alert_delivery.render(
            &mut out,
            "kindred_alert_delivery_seconds",
            "From a crisis message accepted to its alert written to the first staff connection.",
        );
        counter(&mut out, "kindred_history_appends_total", "One node: messages written to the history log.", &self.history_appends);
        counter(&mut out, "kindred_history_commits_total", "One node: commits of the history log, each one write and one fsync.", &self.history_commits);
        self.history_commit.0.render(&mut out, "kindred_history_commit_seconds", "One node: one commit of the history log (write and fsync).");
        self.history_wait.0.render(
            &mut out,
            "kindred_history_wait_seconds",
            "One node: a message handed to the history log until it is on disk (what durability adds before sent).",
        );
        let _ = writeln!(out, "# HELP kindred_errors_total Error frames sent, by code.\n# TYPE kindred_errors_total counter");
        for (code, value) in ErrorCode::ALL.iter().zip(&self.errors) {
            let _ = writeln!(out, "kindred_errors_total{{code=\"{}\"}} {}", code.as_str(), value.load(Ordering::Relaxed));
        }
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}

/// A Prometheus histogram with fixed buckets, in seconds.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in microseconds; the last bucket is +Inf.
    bounds_us: &'static [u64],
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        const BOUNDS_US: &[u64] = &[1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000];
        Histogram::with_bounds(BOUNDS_US)
    }
}

/// A [`Histogram`] with buckets from 100 µs, for disk writes.
#[derive(Debug)]
pub struct FineHistogram(pub Histogram);

impl Default for FineHistogram {
    fn default() -> Self {
        const BOUNDS_US: &[u64] = &[100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];
        FineHistogram(Histogram::with_bounds(BOUNDS_US))
    }
}

impl Histogram {
    fn with_bounds(bounds_us: &'static [u64]) -> Histogram {
        Histogram { bounds_us, counts: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(), sum_us: AtomicU64::new(0), count: AtomicU64::new(0) }
    }

    pub fn observe(&self, d: std::time::Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let i = self.bounds_us.iter().position(|b| us <= *b).unwrap_or(self.bounds_us.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            match self.bounds_us.get(i) {
                Some(b) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", *b as f64 / 1e6);
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let _ = writeln!(out, "{name}_sum {:.6}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {}", self.count.load(Ordering::Relaxed));
    }
}
