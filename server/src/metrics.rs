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
        Histogram {
            bounds_us: BOUNDS_US,
            counts: (0..=BOUNDS_US.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
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
