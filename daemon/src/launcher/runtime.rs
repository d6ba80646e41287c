//! What every part of a running launcher shares: ZooKeeper (store + tree cache), statsd,
//! the current config, the started providers, and the launcher's identity and intervals.
//!
//! The launcher is a set of tasks (pool workers, request handlers, the deleted-node
//! worker, the cleanup worker, the stats worker, the web API) that all hold an
//! `Arc<LauncherContext>`. The config is swapped as a whole on reload (`watch` channel),
//! providers are started/stopped by the main loop and looked up by name.
//!
//! The provider seam: a started provider is either a cloud ([`ProviderRuntime`], in
//! `providers`) or a set of fixed hosts (a static provider, in `static_providers`);
//! [`LauncherContext::started_provider`] gives either as a [`StartedProvider`] to the
//! tasks that handle nodes of both kinds (the DeletedNodeWorker, min-ready, the state
//! dump). Each kind has its own pool workers and request handling, as in Nodepool.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use nodepool_shared::cloud::{provider_driver, CloudConfig, CloudDriver, CloudError, CloudsFile};
use nodepool_shared::config::{Config, Provider};
use nodepool_shared::model::NodeId;
use nodepool_shared::stats::Statsd;
use nodepool_shared::zk::{TreeCache, ZkStore};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::leaks::{LeakCleaner, LeakSettings};
use super::quota::{KnownNodes, LabelNeedCache, ProviderQuota};
use super::static_driver::StaticProvider;
use nodepool_shared::sync::{MutexExt, RwLockExt};

/// How often the periodic workers run. Nodepool's values by default; tests shorten them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intervals {
    /// CleanupWorker period (Nodepool: 60 s); also the retry delay of a static host that
    /// failed its check (Nodepool retries it in its cleanup pass).
    pub cleanup: Duration,
    /// DeletedNodeWorker fallback period when no cache event arrives (Nodepool: 5 s).
    pub delete: Duration,
    /// Minimum time between two stats gauge passes (Nodepool: 1 s).
    pub stats: Duration,
    /// How often the config file's mtime is checked (Nodepool: 1 s).
    pub config_check: Duration,
    /// Pool worker fallback period when nothing wakes it (timeouts, paused handlers).
    pub pool_tick: Duration,
    /// How often a pool worker looks at every waiting request again, also at those
    /// whose verdict no cache event has changed (for what changes in the cloud alone:
    /// its images, its limits).
    pub pool_recheck: Duration,
    /// Request-lock directories older than this are removed once their request is gone
    /// (Nodepool: 8 h).
    pub request_lock_age: Duration,
    /// How long a stopping task (pool worker, request handler, launch, housekeeping
    /// worker) may take to end by itself before it is aborted.
    pub stop_grace: Duration,
    /// How long a cloud image found missing is taken as missing before the cloud is
    /// asked again (Nodepool: 5 min).
    pub image_recheck: Duration,
    /// How long a provider's limit (the cloud's limits less what servers Nodepool does
    /// not manage use) is taken as fresh before the cloud is asked again (Nodepool: 5 min).
    pub provider_quota: Duration,
    /// After a min-ready request of a label failed, the wait before the next one for
    /// that label; it doubles with every failure in a row up to
    /// [`min_ready_backoff_max`](Self::min_ready_backoff_max).
    pub min_ready_backoff: Duration,
    /// The longest wait between min-ready requests of a label that keep failing.
    pub min_ready_backoff_max: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            cleanup: Duration::from_secs(60),
            delete: Duration::from_secs(5),
            stats: Duration::from_secs(1),
            config_check: Duration::from_secs(1),
            pool_tick: Duration::from_secs(1),
            pool_recheck: Duration::from_secs(60),
            request_lock_age: Duration::from_secs(8 * 3600),
            stop_grace: Duration::from_secs(10),
            image_recheck: Duration::from_secs(300),
            provider_quota: super::quota::PROVIDER_QUOTA_TTL,
            min_ready_backoff: Duration::from_secs(5),
            min_ready_backoff_max: Duration::from_secs(120),
        }
    }
}

/// Counters shown by the SIGUSR2 dump and the benchmark.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests accepted by a pool of this launcher.
    pub requests_accepted: AtomicU64,
    /// Requests declined by a pool of this launcher.
    pub requests_declined: AtomicU64,
    /// Requests fulfilled.
    pub requests_fulfilled: AtomicU64,
    /// Requests failed.
    pub requests_failed: AtomicU64,
    /// Requests abandoned because their lock went with the ZooKeeper session.
    pub requests_abandoned: AtomicU64,
    /// Launch attempts started.
    pub launches_started: AtomicU64,
    /// Launches that ended ready.
    pub launches_ready: AtomicU64,
    /// Launches that failed (after retries) or aborted.
    pub launches_failed: AtomicU64,
    /// Nodes deleted.
    pub nodes_deleted: AtomicU64,
}

impl Counters {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `name=value` pairs of every counter.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("requests_accepted", get(&self.requests_accepted)),
            ("requests_declined", get(&self.requests_declined)),
            ("requests_fulfilled", get(&self.requests_fulfilled)),
            ("requests_failed", get(&self.requests_failed)),
            ("requests_abandoned", get(&self.requests_abandoned)),
            ("launches_started", get(&self.launches_started)),
            ("launches_ready", get(&self.launches_ready)),
            ("launches_failed", get(&self.launches_failed)),
            ("nodes_deleted", get(&self.nodes_deleted)),
        ]
    }
}

/// One started provider: its cloud driver and the per-provider caches.
pub struct ProviderRuntime {
    /// The provider's config as it was when started (restart on change).
    pub config: Provider,
    /// Its clouds.yaml entry as it was when started (restart on change; `None` for a
    /// driver given by a test).
    pub cloud: Option<CloudConfig>,
    /// The cloud.
    pub driver: Arc<dyn CloudDriver>,
    /// Provider quota (cloud limits − unmanaged usage), cached.
    pub quota: ProviderQuota,
    /// Quota need per label, cached.
    pub label_needs: LabelNeedCache,
    /// Leak detection state across cleanup passes.
    pub leaks: tokio::sync::Mutex<LeakCleaner>,
}

impl ProviderRuntime {
    /// Wraps a driver for `config` (tests pass any driver; daemons use [`Self::start`]).
    pub fn new(config: Provider, driver: Arc<dyn CloudDriver>, statsd: Statsd) -> Self {
        let mut leak = LeakSettings::new(config.name.clone());
        leak.port_cleanup_interval = config.port_cleanup_interval.unwrap_or(Duration::ZERO);
        leak.clean_floating_ips = config.clean_floating_ips;
        ProviderRuntime {
            quota: ProviderQuota::new(config.name.clone()),
            label_needs: LabelNeedCache::new(),
            leaks: tokio::sync::Mutex::new(LeakCleaner::new(leak, statsd)),
            driver,
            config,
            cloud: None,
        }
    }

    /// Builds the provider's OpenStack driver ([`provider_driver`]).
    pub fn start(
        config: &Provider,
        clouds: &CloudsFile,
        statsd: &Statsd,
    ) -> Result<Self, CloudError> {
        let driver = provider_driver(config, clouds, statsd)?;
        let mut rt = Self::new(config.clone(), Arc::new(driver), statsd.clone());
        rt.cloud = clouds.cloud(&config.cloud).ok().cloned();
        Ok(rt)
    }

    /// The provider name.
    pub fn name(&self) -> &str {
        &self.config.name
    }
}

/// A started provider of either kind (the provider seam, see the module doc).
#[derive(Clone)]
pub enum StartedProvider {
    /// An OpenStack cloud: nodes are servers, deleted through its driver.
    Cloud(Arc<ProviderRuntime>),
    /// Fixed hosts: a node is only a ZooKeeper record; its slot is registered again once
    /// it is deleted.
    Static(Arc<StaticProvider>),
}

/// Everything the launcher's tasks share.
pub struct LauncherContext {
    /// Typed ZooKeeper access (writes, locks via `store.client()`).
    pub store: ZkStore,
    /// The watch-driven cache of `/nodepool` (reads).
    pub cache: TreeCache,
    /// statsd (a no-op without `STATSD_HOST`).
    pub statsd: Statsd,
    /// The current config; replaced as a whole on reload.
    pub config: watch::Receiver<Arc<Config>>,
    /// Started providers by name (the main loop adds and removes them).
    pub providers: RwLock<HashMap<String, Arc<ProviderRuntime>>>,
    /// Started static providers by name (the main loop adds and removes them).
    pub static_providers: RwLock<HashMap<String, Arc<StaticProvider>>>,
    /// `socket.gethostname()`.
    pub hostname: String,
    /// `socket.getfqdn()` (used in pool worker ids).
    pub fqdn: String,
    /// Periods of the workers.
    pub intervals: Intervals,
    /// Set once the main loop finished its first pass (`/ready`).
    pub ready: Arc<AtomicBool>,
    /// Counters for the state dump.
    pub counters: Counters,
    /// Fires on shutdown.
    pub cancel: CancellationToken,
    /// Human-readable state of each task (for the SIGUSR2 dump), by task name.
    pub task_states: Mutex<HashMap<String, String>>,
    /// The request locks a pool worker is trying (one pool worker at a time each).
    pub request_tries: super::request_tries::RequestTries,
    /// The ids of the pool workers this launcher has started (a node's `launcher`): the
    /// DeletedNodeWorker deletes the nodes they created first (see `owner_first`).
    pub own_pool_workers: Mutex<HashSet<String>>,
}

impl LauncherContext {
    /// The current config.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// A started provider by name.
    pub fn provider(&self, name: &str) -> Option<Arc<ProviderRuntime>> {
        self.providers.read_or_recover().get(name).cloned()
    }

    /// Names of the started providers, of either kind.
    pub fn provider_names(&self) -> HashSet<String> {
        let mut names: HashSet<String> = self.providers.read_or_recover().keys().cloned().collect();
        names.extend(self.static_providers.read_or_recover().keys().cloned());
        names
    }

    /// A started provider of either kind by name.
    pub fn started_provider(&self, name: &str) -> Option<StartedProvider> {
        if let Some(rt) = self.provider(name) {
            return Some(StartedProvider::Cloud(rt));
        }
        self.static_providers
            .read_or_recover()
            .get(name)
            .cloned()
            .map(StartedProvider::Static)
    }

    /// Records what a task is doing (shown by SIGUSR2).
    pub fn set_task_state(&self, task: &str, state: impl Into<String> + AsRef<str>) {
        let mut states = self.task_states.lock_or_recover();
        // Pool workers set theirs on every wake: unchanged, nothing is allocated.
        if states.get(task).map(String::as_str) == Some(state.as_ref()) {
            return;
        }
        states.insert(task.to_string(), state.into());
    }

    /// The ZooKeeper nodes of `provider` (any state) as the quota and leak checks ask
    /// about them: a lookup in the tree cache per server.
    pub fn known_nodes<'a>(&'a self, provider: &'a str) -> CachedNodesOf<'a> {
        CachedNodesOf {
            cache: &self.cache,
            provider,
        }
    }
}

/// The nodes of one provider in the tree cache, looked up by id ([`KnownNodes`]). The
/// cache's tree is replaced only by a complete load, so a lookup never sees a half-loaded
/// tree.
pub struct CachedNodesOf<'a> {
    cache: &'a TreeCache,
    provider: &'a str,
}

impl KnownNodes for CachedNodesOf<'_> {
    fn knows(&self, node_id: &str) -> bool {
        self.cache
            .node(&NodeId::from(node_id))
            .is_some_and(|n| n.node.provider() == Some(self.provider))
    }
}
