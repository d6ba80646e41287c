//! Metrics: the exact statsd names Nodepool emits in [`names`], a small client wrapper in
//! [`client`] configured from `STATSD_HOST` / `STATSD_PORT` (a no-op when unset), and the
//! Prometheus export in [`prometheus`], fed by the same calls.
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
pub mod prometheus;

pub use client::{StatsError, Statsd};
pub use names::normalize;
pub use prometheus::{Key, MetricKey, Metrics};
