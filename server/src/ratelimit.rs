//! A token bucket: `capacity` messages at once, refilled evenly over a
//! window. Kept per connection, on the session's own task, so the hot path
//! shares no lock; a member with several tabs gets that many buckets, which
//! the per-IP connection limit bounds.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(capacity: u32, window: Duration) -> TokenBucket {
        let capacity = f64::from(capacity.max(1));
        TokenBucket { capacity, per_second: capacity / window.as_secs_f64(), tokens: capacity, last: Instant::now() }
    }

    /// Take one token, or say how long until one is free.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refills_evenly() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, Duration::from_secs(10));
        for _ in 0..10 {
            assert!(bucket.take(start).is_ok());
        }
        let wait = bucket.take(start).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(bucket.take(start + Duration::from_millis(1001)).is_ok());
        assert!(bucket.take(start + Duration::from_millis(1002)).is_err());
    }
}
