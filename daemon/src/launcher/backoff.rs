//! Polling intervals for cloud state machines: start short (a fast cloud finishes in
//! well under a second), double up to a ceiling so that a slow boot does not hammer the
//! API. Deadlines are enforced by the callers; [`Backoff::next_before`] never sleeps past
//! one.

use std::time::Duration;

use tokio::time::Instant;

/// Exponential backoff between `initial` and `max`.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling up to 5 s.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl Backoff {
    /// Backoff from `initial`, doubling up to `max` (`max` is raised to `initial` if lower).
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            current: initial,
        }
    }

    /// The next interval (then doubles it).
    pub fn next_interval(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        d
    }

    /// The next interval, cut so that it ends no later than `deadline` (zero if past).
    pub fn next_before(&mut self, deadline: Instant) -> Duration {
        let d = self.next_interval();
        d.min(deadline.saturating_duration_since(Instant::now()))
    }

    /// Back to the initial interval (after progress).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let got: Vec<u128> = (0..4).map(|_| b.next_interval().as_millis()).collect();
        assert_eq!(got, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_interval(), Duration::from_millis(100));
        let past = Instant::now() - Duration::from_secs(1);
        assert_eq!(b.next_before(past), Duration::ZERO);
    }
}
