//! Latency summaries for the `zuul-sim` benchmark modes: nearest-rank percentiles over the
//! submission-to-fulfilled times of the requests of one run.

use std::time::Duration;

use serde::Serialize;

/// Min, mean, p50, p90, p99 and max of a set of latencies, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: usize,
    /// Smallest.
    pub min_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// 50th percentile (nearest rank).
    pub p50_ms: f64,
    /// 90th percentile (nearest rank).
    pub p90_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of `sorted` (ascending, non-empty).
fn nearest_rank(sorted: &[Duration], p: f64) -> Duration {
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl LatencySummary {
    /// Summarises `samples`; all zero when empty.
    pub fn from_samples(samples: &[Duration]) -> LatencySummary {
        if samples.is_empty() {
            return LatencySummary::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort();
        let total: Duration = sorted.iter().sum();
        LatencySummary {
            count: sorted.len(),
            min_ms: ms(sorted[0]),
            mean_ms: ms(total) / sorted.len() as f64,
            p50_ms: ms(nearest_rank(&sorted, 50.0)),
            p90_ms: ms(nearest_rank(&sorted, 90.0)),
            p99_ms: ms(nearest_rank(&sorted, 99.0)),
            max_ms: ms(sorted[sorted.len() - 1]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let s = LatencySummary::from_samples(&samples);
        assert_eq!(s.count, 100);
        assert_eq!(s.min_ms, 1.0);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p90_ms, 90.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert_eq!(s.mean_ms, 50.5);
        let one = LatencySummary::from_samples(&[Duration::from_millis(7)]);
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
        assert_eq!(LatencySummary::from_samples(&[]).count, 0);
    }
}
