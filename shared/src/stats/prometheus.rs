//! The Prometheus side of the metrics: every statsd metric sent through a
//! [`Statsd`](super::Statsd) with a [`Metrics`] attached and named by a [`Key`] that
//! carries a [`Series`] is also recorded here, so both exports come from the same call
//! sites. Timers become histograms (seconds), counters counters, gauges gauges; the
//! statsd key's variable parts become labels. [`Metrics::render`] writes the Prometheus
//! text format (0.0.4), including any scrape-time [`Collector`] (the launcher's node and
//! request gauges, computed from its ZooKeeper cache when scraped).
//!
//! Names and their statsd equivalents are listed in docs/metrics.md.

use std::sync::atomic::AtomicU64;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label pairs of one series.
pub type Labels = Vec<(&'static str, String)>;

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// A metric family recorded from statsd calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fam {
    /// `nodepool_launch_duration_seconds{provider,az,requestor,result}` (histogram).
    LaunchDuration,
    /// `nodepool_leaked_resources_total{provider,resource}` (counter).
    Leaked,
    /// `nodepool_cloud_api_duration_seconds{provider,service,method,operation}`.
    ApiDuration,
    /// `nodepool_image_build_duration_seconds{image}`.
    BuildDuration,
    /// `nodepool_image_build_exit_code{image}` (gauge).
    BuildRc,
    /// `nodepool_image_build_last_timestamp_seconds{image}` (gauge).
    BuildLast,
    /// `nodepool_image_build_size_bytes{image,format}` (gauge).
    BuildSize,
    /// `nodepool_image_upload_duration_seconds{image,provider}` (histogram).
    UploadDuration,
    /// `nodepool_builder_build_state{image}` (gauge).
    BuildState,
    /// `nodepool_builder_upload_state{image,provider}` (gauge).
    UploadState,
    /// `nodepool_image_build_requests{image}` (gauge).
    BuildRequests,
}

/// The Prometheus series a statsd key stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// The family.
    pub fam: Fam,
    /// Its labels.
    pub labels: Labels,
}

/// A statsd key that may also name a Prometheus series. Dereferences to the statsd name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    name: String,
    series: Option<Series>,
}

impl Key {
    /// A key recorded in Prometheus as `fam{labels}`.
    pub fn new(name: String, fam: Fam, labels: Labels) -> Key {
        Key {
            name,
            series: Some(Series { fam, labels }),
        }
    }

    /// A statsd-only key.
    pub fn statsd_only(name: String) -> Key {
        Key { name, series: None }
    }

    /// The statsd name.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl std::ops::Deref for Key {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl PartialEq<str> for Key {
    fn eq(&self, other: &str) -> bool {
        self.name == other
    }
}

impl PartialEq<&str> for Key {
    fn eq(&self, other: &&str) -> bool {
        self.name == *other
    }
}

/// Anything a [`Statsd`](super::Statsd) method takes as a key.
pub trait MetricKey {
    /// The statsd name.
    fn name(&self) -> &str;
    /// The Prometheus series, if any.
    fn series(&self) -> Option<&Series> {
        None
    }
}

impl MetricKey for str {
    fn name(&self) -> &str {
        self
    }
}

impl MetricKey for String {
    fn name(&self) -> &str {
        self
    }
}

impl MetricKey for Key {
    fn name(&self) -> &str {
        &self.name
    }
    fn series(&self) -> Option<&Series> {
        self.series.as_ref()
    }
}

type Hist = Family<Labels, Histogram, fn() -> Histogram>;
type FGauge = Family<Labels, Gauge<f64, AtomicU64>>;

fn launch_buckets() -> Histogram {
    Histogram::new([
        1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
    ])
}

fn api_buckets() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

fn build_buckets() -> Histogram {
    Histogram::new([60.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0])
}

fn upload_buckets() -> Histogram {
    Histogram::new([
        10.0, 30.0, 60.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
    ])
}

/// The registry and the families fed by statsd calls.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    launch: Hist,
    leaked: Family<Labels, Counter>,
    api: Hist,
    build: Hist,
    build_rc: FGauge,
    build_last: FGauge,
    build_size: FGauge,
    upload: Hist,
    build_state: FGauge,
    upload_state: FGauge,
    build_requests: FGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family, registered (a family appears in the output once it has a series).
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            launch: Hist::new_with_constructor(launch_buckets),
            leaked: Family::default(),
            api: Hist::new_with_constructor(api_buckets),
            build: Hist::new_with_constructor(build_buckets),
            build_rc: FGauge::default(),
            build_last: FGauge::default(),
            build_size: FGauge::default(),
            upload: Hist::new_with_constructor(upload_buckets),
            build_state: FGauge::default(),
            upload_state: FGauge::default(),
            build_requests: FGauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "nodepool_launch_duration_seconds",
            "Node launches by outcome: time from start to ready or failure (statsd nodepool.launch.*)",
            m.launch.clone(),
        );
        registry.register(
            "nodepool_leaked_resources",
            "Leaked cloud resources removed (statsd nodepool.provider.<p>.leaked.<resource>)",
            m.leaked.clone(),
        );
        registry.register(
            "nodepool_cloud_api_duration_seconds",
            "Cloud API calls (statsd nodepool.task.<p>.<service>.<method>.<operation>)",
            m.api.clone(),
        );
        registry.register(
            "nodepool_image_build_duration_seconds",
            "Diskimage builds (statsd nodepool.dib_image_build.<image>.status.duration)",
            m.build.clone(),
        );
        registry.register(
            "nodepool_image_build_exit_code",
            "Exit code of the last build (statsd nodepool.dib_image_build.<image>.status.rc)",
            m.build_rc.clone(),
        );
        registry.register(
            "nodepool_image_build_last_timestamp_seconds",
            "End of the last build, epoch seconds (statsd ….status.last_build)",
            m.build_last.clone(),
        );
        registry.register(
            "nodepool_image_build_size_bytes",
            "Size of the last successful build per format (statsd nodepool.dib_image_build.<image>.<format>.size)",
            m.build_size.clone(),
        );
        registry.register(
            "nodepool_image_upload_duration_seconds",
            "Successful image uploads (statsd nodepool.image_update.<image>.<provider>)",
            m.upload.clone(),
        );
        registry.register(
            "nodepool_builder_build_state",
            "This builder's build state per image: 0 idle, 1 building, 3 paused",
            m.build_state.clone(),
        );
        registry.register(
            "nodepool_builder_upload_state",
            "This builder's upload state per image and provider: 0 idle, 2 uploading, 3 paused",
            m.upload_state.clone(),
        );
        registry.register(
            "nodepool_image_build_requests",
            "Pending image-build requests per image (statsd nodepool.image.<image>.image_build_requests)",
            m.build_requests.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Adds a scrape-time collector (before the metrics are shared).
    pub fn register_collector(&mut self, c: Box<dyn Collector>) {
        self.registry.register_collector(c);
    }

    fn hist(&self, fam: Fam) -> Option<&Hist> {
        match fam {
            Fam::LaunchDuration => Some(&self.launch),
            Fam::ApiDuration => Some(&self.api),
            Fam::BuildDuration => Some(&self.build),
            Fam::UploadDuration => Some(&self.upload),
            _ => None,
        }
    }

    fn gauge_fam(&self, fam: Fam) -> Option<&FGauge> {
        match fam {
            Fam::BuildRc => Some(&self.build_rc),
            Fam::BuildLast => Some(&self.build_last),
            Fam::BuildSize => Some(&self.build_size),
            Fam::BuildState => Some(&self.build_state),
            Fam::UploadState => Some(&self.upload_state),
            Fam::BuildRequests => Some(&self.build_requests),
            _ => None,
        }
    }

    /// A statsd counter of `n` on `s`.
    pub fn count(&self, s: &Series, n: i64) {
        if s.fam == Fam::Leaked && n > 0 {
            self.leaked.get_or_create(&s.labels).inc_by(n as u64);
        }
    }

    /// A statsd gauge.
    pub fn gauge(&self, s: &Series, v: f64) {
        if let Some(g) = self.gauge_fam(s.fam) {
            g.get_or_create(&s.labels).set(v);
        }
    }

    /// A statsd timer.
    pub fn timing(&self, s: &Series, d: std::time::Duration) {
        if let Some(h) = self.hist(s.fam) {
            h.get_or_create(&s.labels).observe(d.as_secs_f64());
        }
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail; a collector error leaves a partial page.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn records_and_renders() {
        let m = Metrics::new();
        let launch = Series {
            fam: Fam::LaunchDuration,
            labels: vec![
                ("provider", "cloud1".into()),
                ("az", "".into()),
                ("requestor", "zuul".into()),
                ("result", "ready".into()),
            ],
        };
        m.timing(&launch, Duration::from_secs(42));
        m.count(&launch, 1);
        let leaked = Series {
            fam: Fam::Leaked,
            labels: vec![("provider", "cloud1".into()), ("resource", "ports".into())],
        };
        m.count(&leaked, 3);
        m.count(&leaked, 2);
        let text = m.render();
        assert!(
            text.contains(r#"nodepool_launch_duration_seconds_count{provider="cloud1",az="",requestor="zuul",result="ready"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"nodepool_launch_duration_seconds_sum{provider="cloud1",az="",requestor="zuul",result="ready"} 42"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"nodepool_leaked_resources_total{provider="cloud1",resource="ports"} 5"#
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE nodepool_leaked_resources_total counter"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "Prometheus text, not OpenMetrics");
    }
}
