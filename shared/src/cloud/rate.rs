//! Per-provider API rate limit: a provider's `rate` is the minimum number of seconds
//! between two API calls (Nodepool's `RateLimiter`). The first call goes at once; each
//! later call waits for its slot. Slots are handed out in call order, so concurrent
//! callers are spaced evenly rather than released in bursts.

use std::sync::Mutex;
use std::time::Duration;

use crate::sync::MutexExt;
use tokio::time::Instant;

/// Spaces calls at least `interval` apart.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `rate` in seconds between calls; 0, negative or non-finite disables limiting.
    pub fn from_rate(rate: f64) -> Self {
        let interval = if rate.is_finite() && rate > 0.0 {
            Duration::from_secs_f64(rate)
        } else {
            Duration::ZERO
        };
        RateLimiter {
            interval,
            next: Mutex::new(None),
        }
    }

    /// The spacing between calls.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Reserves the next slot for a call made at `now` and returns when it may start.
    pub fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next.lock_or_recover();
        let at = match *next {
            Some(t) if t > now => t,
            _ => now,
        };
        *next = Some(at + self.interval);
        at
    }

    /// Waits for this call's slot.
    pub async fn acquire(&self) {
        if self.interval.is_zero() {
            return;
        }
        let at = self.reserve(Instant::now());
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_in_call_order() {
        let r = RateLimiter::from_rate(2.0);
        let t0 = Instant::now();
        assert_eq!(r.reserve(t0), t0);
        assert_eq!(r.reserve(t0), t0 + Duration::from_secs(2));
        assert_eq!(
            r.reserve(t0 + Duration::from_secs(1)),
            t0 + Duration::from_secs(4)
        );
        // After a quiet period the next call goes at once.
        let later = t0 + Duration::from_secs(100);
        assert_eq!(r.reserve(later), later);
    }

    #[test]
    fn disabled_for_zero_negative_nan() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(RateLimiter::from_rate(rate).interval().is_zero());
        }
        assert_eq!(
            RateLimiter::from_rate(0.5).interval(),
            Duration::from_millis(500)
        );
    }

    #[tokio::test]
    async fn acquire_without_limit_returns() {
        RateLimiter::from_rate(0.0).acquire().await;
    }
}
