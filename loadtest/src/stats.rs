//! Counters shared by every connection task: deliveries, sends, errors by
//! code, close codes, and latency histograms (sharded so that thousands of
//! tasks never queue on one lock). Snapshots and the live progress line are
//! taken from here; nothing here touches a socket.

use crate::crisis::Alerts;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Latency shards: a connection records into shard `index % SHARDS`.
const SHARDS: usize = 32;
/// The largest latency recorded, in microseconds (60 s); larger values are clamped.
pub const MAX_MICROS: u64 = 60_000_000;

/// One latency shard: the whole measured window, and the last second for the progress line.
struct Shard {
    total: Histogram<u64>,
    interval: Histogram<u64>,
}

pub fn histogram() -> Histogram<u64> {
    // Bounds are constants within hdrhistogram's limits.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

pub struct Stats {
    /// Connections that reached `joined`.
    pub joined: AtomicU64,
    /// Connections that failed before `joined`.
    pub setup_failed: AtomicU64,
    /// Joined connections that ended before the run did.
    pub dropped: AtomicU64,
    /// `send` requests written.
    pub sent: AtomicU64,
    /// `sent` replies received.
    pub acked: AtomicU64,
    /// `message` frames received, on every connection.
    pub deliveries: AtomicU64,
    /// Every other frame received (presence, joined, …).
    pub other_frames: AtomicU64,
    /// Whether latency samples are being kept (the measured window).
    pub measuring: AtomicBool,
    /// Crisis messages and their alerts (`--crisis-per-s`, `--staff-token`).
    pub alerts: Alerts,
    errors: Mutex<BTreeMap<String, u64>>,
    closes: Mutex<BTreeMap<String, u64>>,
    shards: Vec<Mutex<Shard>>,
    /// `send` → its `sent`, on the sampled senders (sharded like `shards`).
    acks: Vec<Mutex<Histogram<u64>>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new(0.0)
    }
}

impl Stats {
    /// Counters for a run whose senders make `crisis_per_s` crisis messages a second.
    pub fn new(crisis_per_s: f64) -> Self {
        Stats {
            joined: AtomicU64::new(0),
            setup_failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            other_frames: AtomicU64::new(0),
            measuring: AtomicBool::new(false),
            alerts: Alerts::new(crisis_per_s),
            errors: Mutex::new(BTreeMap::new()),
            closes: Mutex::new(BTreeMap::new()),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard { total: histogram(), interval: histogram() })).collect(),
            acks: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Percentiles {
    pub samples: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            samples: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

impl Stats {
    /// Count an `error` frame by its code (or a setup failure by its kind).
    pub fn error(&self, code: &str) {
        *self.errors.lock().entry(code.to_owned()).or_default() += 1;
    }

    /// Count a close the server initiated (or `1006` for a connection that just ended).
    pub fn close(&self, code: u16) {
        *self.closes.lock().entry(code.to_string()).or_default() += 1;
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().clone()
    }

    pub fn closes(&self) -> BTreeMap<String, u64> {
        self.closes.lock().clone()
    }

    /// Record one latency sample, if the measured window is open.
    pub fn latency(&self, conn: usize, micros: u64) {
        if !self.measuring.load(Relaxed) {
            return;
        }
        let v = micros.clamp(1, MAX_MICROS);
        let mut shard = self.shards[conn % SHARDS].lock();
        // Clamped into the histogram's bounds above, so recording cannot fail.
        let _ = shard.total.record(v);
        let _ = shard.interval.record(v);
    }

    /// Record how long one `send` waited for its `sent`, if the measured window is open.
    pub fn ack_latency(&self, conn: usize, micros: u64) {
        if self.measuring.load(Relaxed) {
            // Clamped into the histogram's bounds, so recording cannot fail.
            let _ = self.acks[conn % SHARDS].lock().record(micros.clamp(1, MAX_MICROS));
        }
    }

    /// Forget every latency sample (the start of the measured window).
    pub fn reset_latency(&self) {
        for shard in &self.shards {
            let mut s = shard.lock();
            s.total.reset();
            s.interval.reset();
        }
        for shard in &self.acks {
            shard.lock().reset();
        }
    }

    /// `send` → `sent` percentiles over the whole measured window.
    pub fn total_ack_latency(&self) -> Percentiles {
        let mut all = histogram();
        for shard in &self.acks {
            // Same bounds everywhere, so adding cannot fail.
            let _ = all.add(&*shard.lock());
        }
        Percentiles::of(&all)
    }

    /// Percentiles over the whole measured window.
    pub fn total_latency(&self) -> Percentiles {
        let mut all = histogram();
        for shard in &self.shards {
            // Same bounds everywhere, so adding cannot fail.
            let _ = all.add(&shard.lock().total);
        }
        Percentiles::of(&all)
    }

    /// Percentiles since the last call, for the progress line.
    pub fn take_interval_latency(&self) -> Percentiles {
        let mut all = histogram();
        for shard in &self.shards {
            let mut s = shard.lock();
            let _ = all.add(&s.interval);
            s.interval.reset();
        }
        Percentiles::of(&all)
    }

    pub fn error_total(&self) -> u64 {
        self.errors.lock().values().sum()
    }

    pub fn snapshot(&self) -> Counts {
        Counts { joined: self.joined.load(Relaxed), sent: self.sent.load(Relaxed), acked: self.acked.load(Relaxed), deliveries: self.deliveries.load(Relaxed) }
    }
}

/// The counters that are reported as a difference over the measured window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub joined: u64,
    pub sent: u64,
    pub acked: u64,
    pub deliveries: u64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts { joined: self.joined - o.joined, sent: self.sent - o.sent, acked: self.acked - o.acked, deliveries: self.deliveries - o.deliveries }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_kept_only_while_measuring() {
        let stats = Stats::default();
        stats.latency(0, 500);
        assert_eq!(stats.total_latency().samples, 0);
        stats.measuring.store(true, Relaxed);
        for i in 0..100 {
            stats.latency(i, 1000 * (i as u64 + 1));
        }
        let p = stats.total_latency();
        assert_eq!(p.samples, 100);
        assert!((p.p50_ms - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.max_ms - 100.0).abs() < 0.1, "{p:?}");
        assert_eq!(stats.take_interval_latency().samples, 100);
        assert_eq!(stats.take_interval_latency().samples, 0);
    }

    #[test]
    fn ack_latency_is_kept_only_while_measuring_and_reset_with_the_rest() {
        let stats = Stats::default();
        stats.ack_latency(0, 500);
        assert_eq!(stats.total_ack_latency().samples, 0);
        stats.measuring.store(true, Relaxed);
        stats.ack_latency(1, 2000);
        stats.ack_latency(2, 4000);
        let p = stats.total_ack_latency();
        assert_eq!(p.samples, 2);
        assert!((p.max_ms - 4.0).abs() < 0.01, "{p:?}");
        stats.reset_latency();
        assert_eq!(stats.total_ack_latency().samples, 0);
    }
}
