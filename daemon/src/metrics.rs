//! Prometheus `/metrics` for the daemons. The event metrics (launches, leaks, API calls,
//! builds, uploads) are recorded by `nodepool_shared::stats` from the same calls that
//! send statsd; this module adds the launcher's state gauges, computed from its
//! ZooKeeper tree cache and config at scrape time (so every launcher serves the same,
//! current numbers, without a timer), and the builder's optional listener (`/metrics`
//! and the `/health` check).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use nodepool_shared::config::Config;
use nodepool_shared::model::quota::{CORES, INSTANCES, RAM};
use nodepool_shared::model::{ComponentKind, NodeState, RequestState};
use nodepool_shared::stats::prometheus::CONTENT_TYPE;
use nodepool_shared::stats::Metrics;
use nodepool_shared::zk::TreeCache;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

type Labels = Vec<(&'static str, String)>;

/// Gauges of one scrape: family → (help, series).
#[derive(Default)]
struct Gauges(BTreeMap<&'static str, (&'static str, BTreeMap<Labels, f64>)>);

impl Gauges {
    fn set(&mut self, fam: &'static str, help: &'static str, labels: Labels, v: f64) {
        self.0
            .entry(fam)
            .or_insert((help, BTreeMap::new()))
            .1
            .insert(labels, v);
    }

    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, (help, series)) in &self.0 {
            let mut fam = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, v) in series {
                ConstGauge::new(*v).encode(fam.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

const NODES: &str = "nodepool_nodes";
const NODES_HELP: &str = "Nodes by state (statsd nodepool.nodes.<state>)";
const PROVIDER_NODES: &str = "nodepool_provider_nodes";
const PROVIDER_NODES_HELP: &str =
    "Nodes by provider and state (statsd nodepool.provider.<p>.nodes.<state>)";
const LABEL_NODES: &str = "nodepool_label_nodes";
const LABEL_NODES_HELP: &str = "Nodes by label and state (statsd nodepool.label.<l>.nodes.<state>)";

/// The launcher's scrape-time gauges.
#[derive(Debug)]
pub struct LauncherCollector {
    cache: TreeCache,
    config: watch::Receiver<Arc<Config>>,
}

impl LauncherCollector {
    /// Over the launcher's cache and current config.
    pub fn new(cache: TreeCache, config: watch::Receiver<Arc<Config>>) -> Self {
        LauncherCollector { cache, config }
    }

    fn gauges(&self) -> Gauges {
        let mut g = Gauges::default();
        let pools = self.cache.components(ComponentKind::Pool);
        let nodes = self.cache.nodes();
        self.nodes(&mut g, &pools, &nodes);
        self.requests(&mut g, &pools);
        self.quota(&mut g);
        g
    }

    /// Node gauges. Counted on borrowed names first (one map entry per provider, label
    /// and pool, not per node), so a scrape of 10,000 nodes allocates little.
    fn nodes(
        &self,
        g: &mut Gauges,
        pools: &[Arc<nodepool_shared::zk::CachedComponent>],
        nodes: &[Arc<nodepool_shared::zk::CachedNode>],
    ) {
        let mut providers: BTreeSet<&str> = BTreeSet::new();
        let mut labels: BTreeSet<&str> = BTreeSet::new();
        for c in pools {
            if let Some(p) = &c.component.pool {
                providers.extend(p.provider_name.as_deref());
                labels.extend(p.supported_labels.iter().map(String::as_str));
            }
        }
        let mut by_state: BTreeMap<NodeState, u64> = BTreeMap::new();
        let mut by_provider: BTreeMap<(&str, NodeState), u64> = BTreeMap::new();
        let mut by_label: BTreeMap<(&str, NodeState), u64> = BTreeMap::new();
        let mut by_pool: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        // Resource names borrowed for what a launcher writes (`cores`, `instances`,
        // `ram`), owned for anything else.
        let mut resources: BTreeMap<(&str, &str, Cow<'_, str>), f64> = BTreeMap::new();
        for n in nodes {
            let node = &n.node;
            let state = node.state();
            *by_state.entry(state).or_default() += 1;
            if let Some(p) = node.provider() {
                providers.insert(p);
                *by_provider.entry((p, state)).or_default() += 1;
                let pool = node.pool().unwrap_or("");
                *by_pool.entry((p, pool)).or_default() += 1;
                if let Some(r) = node.standard_resources() {
                    for (k, v) in [CORES, INSTANCES, RAM].into_iter().zip(r) {
                        *resources.entry((p, pool, Cow::Borrowed(k))).or_default() += v as f64;
                    }
                } else {
                    for (k, v) in node.resources().into_iter().flatten() {
                        if let Some(v) = v.as_f64() {
                            *resources.entry((p, pool, Cow::Owned(k))).or_default() += v;
                        }
                    }
                }
            }
            // A node counts once per label in its type.
            let mut seen: BTreeSet<&str> = BTreeSet::new();
            for l in node.labels() {
                labels.insert(l);
                if seen.insert(l) {
                    *by_label.entry((l, state)).or_default() += 1;
                }
            }
        }
        for state in NodeState::ALL {
            let s = ("state", state.as_str().to_string());
            let n = by_state.get(&state).copied().unwrap_or(0);
            g.set(NODES, NODES_HELP, vec![s.clone()], n as f64);
            for p in &providers {
                let n = by_provider.get(&(*p, state)).copied().unwrap_or(0);
                let l = vec![("provider", p.to_string()), s.clone()];
                g.set(PROVIDER_NODES, PROVIDER_NODES_HELP, l, n as f64);
            }
            for l in &labels {
                let n = by_label.get(&(*l, state)).copied().unwrap_or(0);
                let ls = vec![("label", l.to_string()), s.clone()];
                g.set(LABEL_NODES, LABEL_NODES_HELP, ls, n as f64);
            }
        }
        for ((p, pool), n) in by_pool {
            g.set(
                "nodepool_pool_nodes",
                "Nodes of a provider pool in any state: its usage of max-servers",
                vec![("provider", p.to_string()), ("pool", pool.to_string())],
                n as f64,
            );
        }
        for ((p, pool, r), v) in resources {
            g.set(
                "nodepool_pool_resources",
                "Quota resources (cores, instances, ram, …) held by a provider pool's nodes",
                vec![
                    ("provider", p.to_string()),
                    ("pool", pool.to_string()),
                    ("resource", r.to_string()),
                ],
                v,
            );
        }
    }

    fn requests(&self, g: &mut Gauges, pools: &[Arc<nodepool_shared::zk::CachedComponent>]) {
        let requests = self.cache.requests();
        const HELP: &str = "Node requests by state";
        let mut by_state: BTreeMap<RequestState, u64> = BTreeMap::new();
        for r in &requests {
            *by_state.entry(r.request.state).or_default() += 1;
        }
        for s in RequestState::ALL {
            let n = by_state.get(&s).copied().unwrap_or(0);
            g.set(
                "nodepool_requests",
                HELP,
                vec![("state", s.as_str().into())],
                n as f64,
            );
        }
        for c in pools {
            let Some(pool) = &c.component.pool else {
                continue;
            };
            let (Some(provider), Some(name)) = (&pool.provider_name, &pool.name) else {
                continue;
            };
            let served: BTreeSet<&String> = pool.supported_labels.iter().collect();
            let count = requests
                .iter()
                .filter(|r| r.request.node_types.iter().all(|t| served.contains(t)))
                .count();
            g.set(
                "nodepool_pool_addressable_requests",
                "Requests whose labels a pool serves (statsd nodepool.provider.<p>.pool.<pool>.addressable_requests)",
                vec![("provider", provider.clone()), ("pool", name.clone())],
                count as f64,
            );
        }
    }

    fn quota(&self, g: &mut Gauges) {
        let config = self.config.borrow().clone();
        for p in &config.providers {
            let mut total = 0.0;
            for pool in &p.pools {
                let max = pool.max_servers.map_or(f64::INFINITY, |m| m as f64);
                total += max;
                g.set(
                    "nodepool_pool_max_servers",
                    "max-servers of a provider pool (+Inf when unset)",
                    vec![("provider", p.name.clone()), ("pool", pool.name.clone())],
                    max,
                );
            }
            g.set(
                "nodepool_provider_max_servers",
                "Sum of max-servers of a provider's pools (statsd nodepool.provider.<p>.max_servers)",
                vec![("provider", p.name.clone())],
                total,
            );
        }
    }
}

impl Collector for LauncherCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.gauges().encode(encoder)
    }
}

/// The `/metrics` page, rendered at most once per [`PAGE_TTL`]: scrapes within it get
/// the same page. A render walks the launcher's whole cache on a runtime thread (3.5 ms
/// of CPU at 10,000 nodes, growing with the cache), so clients scraping as fast as they can
/// would otherwise keep the launcher's two runtime threads busy; Prometheus scrapes
/// every 15 s or so and loses nothing. Concurrent scrapes of a stale page wait for one
/// render.
#[derive(Clone)]
pub struct MetricsPage {
    metrics: Arc<Metrics>,
    ttl: Duration,
    page: Arc<tokio::sync::Mutex<Option<(Instant, Bytes)>>>,
}

/// How long a rendered `/metrics` page is served.
pub const PAGE_TTL: Duration = Duration::from_secs(1);

impl MetricsPage {
    /// The page of `metrics`, kept for [`PAGE_TTL`].
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self::with_ttl(metrics, PAGE_TTL)
    }

    /// The page of `metrics`, kept for `ttl`.
    pub fn with_ttl(metrics: Arc<Metrics>, ttl: Duration) -> Self {
        MetricsPage {
            metrics,
            ttl,
            page: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// The current page's body, rendered if it is older than the TTL.
    pub async fn body(&self) -> Bytes {
        let mut page = self.page.lock().await;
        match &*page {
            Some((made, body)) if made.elapsed() < self.ttl => body.clone(),
            _ => {
                let body = Bytes::from(self.metrics.render());
                *page = Some((Instant::now(), body.clone()));
                body
            }
        }
    }

    /// The HTTP answer of a scrape.
    pub async fn response(&self) -> Response {
        ([(header::CONTENT_TYPE, CONTENT_TYPE)], self.body().await).into_response()
    }
}

/// The builder's health: running and connected to ZooKeeper.
pub type Health = Arc<dyn Fn() -> bool + Send + Sync>;

/// What the builder's listener serves.
#[derive(Clone)]
struct BuilderState {
    page: MetricsPage,
    healthy: Health,
}

/// The builder's listener: `/metrics` and `/health` (200 `OK` while `healthy()`, else 503).
pub fn builder_router(metrics: Arc<Metrics>, healthy: Health) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<BuilderState>| async move { s.page.response().await }),
        )
        .route(
            "/health",
            get(|State(s): State<BuilderState>| async move {
                if (s.healthy)() {
                    (StatusCode::OK, "OK\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not running\n")
                }
            }),
        )
        .with_state(BuilderState {
            page: MetricsPage::new(metrics),
            healthy,
        })
}

/// Binds `addr` (errors name it) and serves the builder's listener until `cancel`.
pub async fn serve_builder(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    healthy: Health,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("metrics listener {addr}: {e}")))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "metrics listener (/metrics, /health)");
    tokio::spawn(async move {
        let app = builder_router(metrics, healthy);
        let limits = crate::http_serve::Limits::default();
        if let Err(e) =
            crate::http_serve::serve(listener, app, limits, "metrics listener", cancel).await
        {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use nodepool_shared::stats::Metrics;
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::DescriptorEncoder;

    use super::MetricsPage;

    /// Counts its renders.
    #[derive(Debug)]
    struct Renders(Arc<AtomicUsize>);

    impl Collector for Renders {
        fn encode(&self, _: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn scrapes_within_the_ttl_share_one_render() {
        let renders = Arc::new(AtomicUsize::new(0));
        let mut metrics = Metrics::new();
        metrics.register_collector(Box::new(Renders(renders.clone())));
        let page = MetricsPage::with_ttl(Arc::new(metrics), Duration::from_millis(300));
        let scrapes: Vec<_> = (0..50)
            .map(|_| {
                let page = page.clone();
                tokio::spawn(async move { page.body().await })
            })
            .collect();
        for s in scrapes {
            s.await.unwrap();
        }
        assert_eq!(renders.load(Ordering::SeqCst), 1, "50 scrapes at once");
        tokio::time::sleep(Duration::from_millis(400)).await;
        page.body().await;
        assert_eq!(renders.load(Ordering::SeqCst), 2, "a scrape after the TTL");
    }
}
