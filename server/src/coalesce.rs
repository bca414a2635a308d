//! Write coalescing: how long a busy connection holds its next write so that
//! the frames arriving meanwhile share one `send`.
//!
//! On a quiet node every frame is written at once. As the node's fan-out
//! rate climbs, per-frame syscalls become most of its CPU (one `send` costs
//! several times the rest of a delivery), so a connection written to less
//! than `hold` ago waits out the rest of it. The hold is 0 up to
//! `write_coalesce_start_rate` deliveries per second, then grows linearly,
//! reaching `write_coalesce_ms` at `write_coalesce_full_rate`: latency is
//! spent only when it buys throughput. (Measured at 100k/s in a room of
//! 1000 with fixed holds: 7 ms cost so much CPU that p99 was 26 ms, 10 ms
//! gave 18 ms, 12 ms 17 ms, 17 ms 21 ms. The defaults give 12 ms there.)

use crate::config::Limits;
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the delivery rate is re-read.
const TICK: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct Coalescing {
    max_hold_us: u32,
    start_rate: f64,
    full_rate: f64,
    hold_us: AtomicU32,
}

impl Coalescing {
    pub fn new(limits: &Limits) -> Coalescing {
        Coalescing {
            max_hold_us: limits.write_coalesce_ms.saturating_mul(1000),
            start_rate: limits.write_coalesce_start_rate as f64,
            full_rate: limits.write_coalesce_full_rate.max(limits.write_coalesce_start_rate + 1) as f64,
            hold_us: AtomicU32::new(0),
        }
    }

    /// The current hold for a connection that was just written to.
    pub fn hold(&self) -> Duration {
        Duration::from_micros(self.hold_us.load(Ordering::Relaxed).into())
    }

    /// The hold for a node delivering `rate` frames per second.
    fn hold_for(&self, rate: f64) -> u32 {
        let share = (rate - self.start_rate) / (self.full_rate - self.start_rate);
        (f64::from(self.max_hold_us) * share.clamp(0.0, 1.0)) as u32
    }

    /// Follow the node's delivery rate until shutdown.
    pub async fn follow(&self, metrics: &Metrics, shutdown: CancellationToken) {
        if self.max_hold_us == 0 {
            return;
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = metrics.deliveries.load(Ordering::Relaxed);
        let mut rate = 0.0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let now = metrics.deliveries.load(Ordering::Relaxed);
            let sample = now.saturating_sub(last) as f64 / TICK.as_secs_f64();
            last = now;
            // Smoothed over about a second, so one burst does not swing it.
            rate = 0.75 * rate + 0.25 * sample;
            self.hold_us.store(self.hold_for(rate), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_grows_with_the_rate_up_to_its_maximum() {
        let limits = Limits { write_coalesce_ms: 20, write_coalesce_start_rate: 100_000, write_coalesce_full_rate: 300_000, ..Limits::default() };
        let c = Coalescing::new(&limits);
        assert_eq!(c.hold_for(0.0), 0);
        assert_eq!(c.hold_for(100_000.0), 0);
        assert_eq!(c.hold_for(200_000.0), 10_000);
        assert_eq!(c.hold_for(300_000.0), 20_000);
        assert_eq!(c.hold_for(3_000_000.0), 20_000);
        let defaults = Coalescing::new(&Limits::default());
        assert_eq!(defaults.hold_for(100_000.0), 12_000, "the hold measured best at 100k/s");
        let off = Coalescing::new(&Limits { write_coalesce_ms: 0, ..Limits::default() });
        assert_eq!(off.hold_for(1e9), 0);
    }
}
