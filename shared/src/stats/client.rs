//! A small statsd client on cadence, configured like Python Nodepool: from the
//! `STATSD_HOST` / `STATSD_PORT` environment variables, and a no-op when neither is set.
//!
//! Metrics are buffered into datagrams of up to 512 bytes (like python-statsd
//! pipelines); cadence only sends a buffer when it is full, so daemons must run
//! [`Statsd::spawn_flush_task`] (or call [`Statsd::flush`]). Sending never blocks and
//! send errors are ignored, as in python-statsd.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::panic::RefUnwindSafe;
use std::sync::{Arc, Weak};
use std::time::Duration;

use cadence::prelude::*;
use cadence::{BufferedUdpMetricSink, MetricSink, StatsdClient};

use super::prometheus::{MetricKey, Metrics};

/// Default statsd port when only `STATSD_HOST` is set.
pub const DEFAULT_PORT: u16 = 8125;
/// Default host when only `STATSD_PORT` is set.
pub const DEFAULT_HOST: &str = "localhost";
/// Datagram buffer size, as python-statsd pipelines.
pub const BUFFER_SIZE: usize = 512;

/// Why the statsd client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// `STATSD_PORT` is not a port number.
    #[error("STATSD_PORT `{0}` is not a valid port number")]
    InvalidPort(String),
    /// The host name did not resolve.
    #[error("cannot resolve statsd host `{host}`: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    /// The local UDP socket could not be set up.
    #[error("cannot open UDP socket for statsd: {0}")]
    Socket(#[source] std::io::Error),
    /// cadence refused the sink.
    #[error("cannot create statsd sink: {0}")]
    Sink(#[from] cadence::MetricError),
}

/// A cheap-to-clone statsd handle; a no-op when statsd is not configured. With
/// [`Statsd::with_prometheus`] every call whose key names a Prometheus series is also
/// recorded there (whether or not statsd is configured).
#[derive(Clone, Default)]
pub struct Statsd {
    inner: Option<Arc<StatsdClient>>,
    prom: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for Statsd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statsd")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl Statsd {
    /// A client that sends nothing.
    pub fn noop() -> Self {
        Statsd {
            inner: None,
            prom: None,
        }
    }

    /// The same client, also recording into `metrics`.
    pub fn with_prometheus(mut self, metrics: Arc<Metrics>) -> Self {
        self.prom = Some(metrics);
        self
    }

    /// The attached Prometheus metrics, if any.
    pub fn prometheus(&self) -> Option<&Arc<Metrics>> {
        self.prom.as_ref()
    }

    /// Configured from `STATSD_HOST` / `STATSD_PORT`; neither set (or both empty) → no-op.
    pub fn from_env() -> Result<Self, StatsError> {
        let host = std::env::var("STATSD_HOST").ok();
        let port = std::env::var("STATSD_PORT").ok();
        Self::from_env_values(host.as_deref(), port.as_deref())
    }

    /// [`Statsd::from_env`] with the variable values passed in (empty = unset). A missing
    /// host defaults to `localhost`, a missing port to 8125, as python-statsd does.
    pub fn from_env_values(host: Option<&str>, port: Option<&str>) -> Result<Self, StatsError> {
        let host = host.map(str::trim).filter(|h| !h.is_empty());
        let port = port.map(str::trim).filter(|p| !p.is_empty());
        if host.is_none() && port.is_none() {
            return Ok(Self::noop());
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| StatsError::InvalidPort(p.to_string()))?,
            None => DEFAULT_PORT,
        };
        Self::udp(host.unwrap_or(DEFAULT_HOST), port)
    }

    /// Sends to `host:port` over UDP (the host is resolved once, first address wins).
    pub fn udp(host: &str, port: u16) -> Result<Self, StatsError> {
        let resolve_err = |source| StatsError::Resolve {
            host: host.to_string(),
            source,
        };
        let addr: SocketAddr = (host, port)
            .to_socket_addrs()
            .map_err(resolve_err)?
            .next()
            .ok_or_else(|| resolve_err(std::io::Error::other("no addresses")))?;
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0".parse().expect("literal address")
        } else {
            "0.0.0.0:0".parse().expect("literal address")
        };
        let socket = UdpSocket::bind(bind).map_err(StatsError::Socket)?;
        socket.set_nonblocking(true).map_err(StatsError::Socket)?;
        let sink = BufferedUdpMetricSink::with_capacity(addr, socket, BUFFER_SIZE)?;
        Ok(Self::from_sink(sink))
    }

    /// Uses any cadence sink (tests use `SpyMetricSink`).
    pub fn from_sink<S>(sink: S) -> Self
    where
        S: MetricSink + Send + Sync + RefUnwindSafe + 'static,
    {
        Statsd {
            inner: Some(Arc::new(StatsdClient::from_sink("", sink))),
            prom: None,
        }
    }

    /// True unless this is the no-op client.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Counter +1 (`key:1|c`).
    pub fn incr<K: MetricKey + ?Sized>(&self, key: &K) {
        self.count(key, 1);
    }

    /// Counter by `n` (`key:n|c`).
    pub fn count<K: MetricKey + ?Sized>(&self, key: &K, n: i64) {
        if let Some(c) = &self.inner {
            let _ = c.count(key.name(), n);
        }
        if let (Some(p), Some(s)) = (&self.prom, key.series()) {
            p.count(s, n);
        }
    }

    /// Gauge with an integer value (`key:v|g`).
    pub fn gauge<K: MetricKey + ?Sized>(&self, key: &K, value: u64) {
        if let Some(c) = &self.inner {
            let _ = c.gauge(key.name(), value);
        }
        if let (Some(p), Some(s)) = (&self.prom, key.series()) {
            p.gauge(s, value as f64);
        }
    }

    /// Gauge with a float value. A negative value is sent as `0` followed by the value,
    /// as python-statsd does, so that it is not taken as a delta.
    pub fn gauge_f64<K: MetricKey + ?Sized>(&self, key: &K, value: f64) {
        if let Some(c) = &self.inner {
            if value < 0.0 {
                let _ = c.gauge(key.name(), 0u64);
            }
            let _ = c.gauge(key.name(), value);
        }
        if let (Some(p), Some(s)) = (&self.prom, key.series()) {
            p.gauge(s, value);
        }
    }

    /// Timer (`key:ms|ms`, whole milliseconds).
    pub fn timing<K: MetricKey + ?Sized>(&self, key: &K, elapsed: Duration) {
        if let Some(c) = &self.inner {
            let _ = c.time(key.name(), elapsed);
        }
        if let (Some(p), Some(s)) = (&self.prom, key.series()) {
            p.timing(s, elapsed);
        }
    }

    /// Timer in milliseconds.
    pub fn timing_ms<K: MetricKey + ?Sized>(&self, key: &K, ms: u64) {
        self.timing(key, Duration::from_millis(ms));
    }

    /// The "c+ms" pattern: a timer and a +1 counter with the same key (timer first, as
    /// Nodepool does). In Prometheus the histogram's `_count` is the counter.
    pub fn timer_and_count<K: MetricKey + ?Sized>(&self, key: &K, elapsed: Duration) {
        self.timing(key, elapsed);
        if let Some(c) = &self.inner {
            let _ = c.count(key.name(), 1);
        }
    }

    /// Sends whatever is buffered.
    pub fn flush(&self) {
        if let Some(c) = &self.inner {
            let _ = c.flush();
        }
    }

    /// Spawns a tokio task that flushes every `period` until every clone of this client
    /// is dropped (it holds only a weak reference). `None` for the no-op client.
    /// Must be called from within a tokio runtime.
    pub fn spawn_flush_task(&self, period: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let weak: Weak<StatsdClient> = Arc::downgrade(self.inner.as_ref()?);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(c) => {
                        let _ = c.flush();
                    }
                    None => break,
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadence::SpyMetricSink;

    fn lines(raw: impl Iterator<Item = Vec<u8>>) -> Vec<String> {
        raw.map(|b| String::from_utf8(b).unwrap()).collect()
    }

    #[test]
    fn noop_when_unconfigured() {
        let s = Statsd::from_env_values(None, None).unwrap();
        assert!(!s.is_enabled());
        let s = Statsd::from_env_values(Some(""), Some(" ")).unwrap();
        assert!(!s.is_enabled());
        // No panic, nothing sent.
        s.incr("x");
        s.flush();
        assert!(s.spawn_flush_task(Duration::from_secs(1)).is_none());
        assert!(matches!(
            Statsd::from_env_values(Some("127.0.0.1"), Some("nope")),
            Err(StatsError::InvalidPort(_))
        ));
    }

    #[test]
    fn line_formats() {
        let (rx, sink) = SpyMetricSink::new();
        let s = Statsd::from_sink(sink);
        s.incr("nodepool.provider.p.leaked.instances");
        s.count("nodepool.provider.p.leaked.ports", 3);
        s.gauge("nodepool.nodes.ready", 5);
        s.gauge_f64("nodepool.tenant_limits.t.ram", 12.5);
        s.gauge_f64("g.neg", -2.0);
        s.timing("t", Duration::from_millis(1234));
        s.timer_and_count("nodepool.launch.ready", Duration::from_millis(50));
        assert_eq!(
            lines(rx.try_iter()),
            [
                "nodepool.provider.p.leaked.instances:1|c",
                "nodepool.provider.p.leaked.ports:3|c",
                "nodepool.nodes.ready:5|g",
                "nodepool.tenant_limits.t.ram:12.5|g",
                "g.neg:0|g",
                "g.neg:-2|g",
                "t:1234|ms",
                "nodepool.launch.ready:50|ms",
                "nodepool.launch.ready:1|c",
            ]
        );
    }

    #[tokio::test]
    async fn udp_with_periodic_flush() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let port = server.local_addr().unwrap().port();
        let s = Statsd::from_env_values(Some("127.0.0.1"), Some(&port.to_string())).unwrap();
        assert!(s.is_enabled());
        s.gauge("nodepool.nodes.ready", 3);
        s.gauge("nodepool.nodes.building", 1);
        let task = s.spawn_flush_task(Duration::from_millis(20)).unwrap();
        // Small metrics sit in the 512-byte buffer until the flush task sends them.
        let mut buf = [0u8; 2048];
        let n = tokio::task::spawn_blocking(move || {
            let n = server.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        })
        .await
        .unwrap();
        assert_eq!(n, "nodepool.nodes.ready:3|g\nnodepool.nodes.building:1|g\n");
        drop(s);
        // The task ends once the client is gone.
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }
}
