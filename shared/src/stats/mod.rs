//! statsd metrics: the exact metric names Nodepool emits (docs/metrics.md) in [`names`],
//! and a small client wrapper in [`client`] configured from `STATSD_HOST` /
//! `STATSD_PORT` (a no-op when unset).
//!
//! ```no_run
//! use nodepool_shared::stats::{names, Statsd};
//! # async fn f() -> Result<(), nodepool_shared::stats::StatsError> {
//! let statsd = Statsd::from_env()?;
//! let _flusher = statsd.spawn_flush_task(std::time::Duration::from_secs(1));
//! for key in names::launch_keys("prov", Some("az1"), Some("zuul"), names::result::READY) {
//!     statsd.timer_and_count(&key, std::time::Duration::from_millis(1234));
//! }
//! # Ok(()) }
//! ```

pub mod client;
pub mod names;

pub use client::{StatsError, Statsd};
pub use names::normalize;
