//! The `nodepool-launcher` main loop (docs/launcher.md): read the config, connect
//! ZooKeeper, start the tree cache, register the launcher component, start providers
//! and one pool worker per provider-pool, start the housekeeping tasks and the web API,
//! then every `config_check` interval: re-read the config if its files changed (moving
//! to new ZooKeeper servers if those changed, [`crate::zk_settings`]), reconcile
//! providers and pool workers with it, and run min-ready. `ready` is set after the first
//! full pass. A provider is restarted (a new cloud driver) when its config section
//! changes or, after clouds.yaml changed (its modification time, checked on the same
//! interval) or the config was reloaded, when its clouds.yaml entry differs from the one
//! it was started with: a corrected password or `auth_url` takes effect at once, and the
//! running node deletes carry on with the new driver.
//!
//! Providers of both kinds are reconciled here (the provider seam): an OpenStack provider
//! gets a cloud driver and cloud pool workers; a static provider (`driver: static`)
//! gets its sync task (`static_driver::sync`) and static pool workers.
//!
//! Every task it starts is tracked (see `tasks`). On cancel they are stopped in order,
//! each group told to stop, waited for `stop_grace` and aborted after it: the pool
//! workers (they unregister; the component of one aborted is removed here), the static
//! providers' sync tasks, the request handlers (they stop their launches), the
//! housekeeping tasks and the web API; then the launcher component goes and the
//! ZooKeeper session is closed, so every lock and ephemeral znode goes at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use nodepool_shared::cloud::CloudsFile;
use nodepool_shared::config::{Config, ConfigError, ConfigSource, Provider};
use nodepool_shared::model::{Component, ComponentKind};
use nodepool_shared::stats::{StatsError, Statsd};
use nodepool_shared::zk::{ComponentRegistration, TreeCache, ZkClient, ZkError, ZkStore};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::min_ready::MinReady;
use super::pool_context::PoolContext;
use super::pool_worker::{self, RegistrationSlot, COMPONENT_VERSION};
use super::providers::{ProviderHandle, ProviderHandles};
use super::quota::ProviderQuota;
use super::runtime::{Intervals, LauncherContext, ProviderRuntime};
use super::static_driver::{self, StaticProvider};
use super::tasks::{stop_task, stop_task_by, Stopped, TaskGroup};
use nodepool_shared::sync::{MutexExt, RwLockExt};

/// How the launcher is started (the binary maps its flags onto this).
#[derive(Clone, Debug)]
pub struct LauncherOptions {
    /// `-c`: nodepool.yaml.
    pub config: PathBuf,
    /// `-s`: secure file.
    pub secure: Option<PathBuf>,
    /// Serve the web API (`--no-webapp` turns it off).
    pub webapp: bool,
    /// Worker periods.
    pub intervals: Intervals,
    /// clouds.yaml to use instead of the openstacksdk search path.
    pub clouds_file: Option<PathBuf>,
    /// statsd client; `None` = from `STATSD_HOST`/`STATSD_PORT`.
    pub statsd: Option<Statsd>,
    /// Overrides `gethostname()` and the fully qualified name (tests running two
    /// launchers in one process; the name is used as given, never resolved).
    pub hostname: Option<String>,
    /// Called with the web API's bound address.
    pub web_bound: Option<Arc<Mutex<Option<SocketAddr>>>>,
    /// Notified once, after the first full pass (ZooKeeper connected, config loaded,
    /// launcher and pool components registered): systemd's `READY=1`.
    pub on_ready: Option<Arc<tokio::sync::Notify>>,
}

impl LauncherOptions {
    /// Defaults for `config`: web API on, Nodepool's intervals, statsd from the env.
    pub fn new(config: impl Into<PathBuf>) -> Self {
        LauncherOptions {
            config: config.into(),
            secure: None,
            webapp: true,
            intervals: Intervals::default(),
            clouds_file: None,
            statsd: None,
            hostname: None,
            web_bound: None,
            on_ready: None,
        }
    }
}

/// Why the launcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config at start is invalid (later bad configs are only logged).
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    /// ZooKeeper could not be reached.
    #[error("zookeeper: {0}")]
    Zk(#[from] ZkError),
    /// statsd could not be set up.
    #[error("statsd: {0}")]
    Stats(#[from] StatsError),
}

/// A running pool worker.
struct WorkerHandle {
    /// Whether it is a static pool's worker.
    is_static: bool,
    pc: Arc<PoolContext>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    registration: RegistrationSlot,
}

/// The main loop's own state.
struct MainLoop {
    ctx: Arc<LauncherContext>,
    config_tx: watch::Sender<Arc<Config>>,
    source: ConfigSource,
    clouds_file: Option<PathBuf>,
    handles: Arc<ProviderHandles>,
    handlers: Arc<TaskGroup>,
    workers: HashMap<(String, String), WorkerHandle>,
    /// The sync task of each started static provider.
    static_syncs: HashMap<String, (CancellationToken, JoinHandle<()>)>,
    min_ready: MinReady,
    /// clouds.yaml changed (or the config was reloaded) since providers last compared
    /// their clouds.yaml entries.
    clouds_changed: bool,
}

/// Modification times of the clouds.yaml files the launcher reads (the given file, or
/// every file of the openstacksdk search path).
fn clouds_stamp(file: &Option<PathBuf>) -> Vec<Option<SystemTime>> {
    let paths = match file {
        Some(p) => vec![p.clone()],
        None => nodepool_shared::cloud::clouds_yaml::search_paths(),
    };
    paths
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// `(gethostname(), getfqdn())`, or the override as both.
async fn names(hostname: Option<String>) -> (String, String) {
    if let Some(h) = hostname {
        return (h.clone(), h);
    }
    let host = crate::host::hostname();
    let h = host.clone();
    let fqdn = tokio::task::spawn_blocking(move || crate::host::fqdn_of(&h))
        .await
        .unwrap_or_else(|_| host.clone());
    (host, fqdn)
}

/// Runs the launcher until `cancel` fires.
pub async fn run(opts: LauncherOptions, cancel: CancellationToken) -> Result<(), DaemonError> {
    let source = ConfigSource::new(opts.config.clone(), opts.secure.clone());
    let mut stamp = source.stamp();
    let config = Arc::new(source.load()?);
    let statsd = match opts.statsd.clone() {
        Some(s) => s,
        None => Statsd::from_env()?,
    };
    let client = ZkClient::connect(config.zk_settings()).await?;
    let cache = TreeCache::start(client.clone());
    if !cache.wait_synced(Duration::from_secs(30)).await {
        tracing::warn!("tree cache not synced after 30 s; continuing");
    }
    let (hostname, fqdn) = names(opts.hostname.clone()).await;
    let (config_tx, config_rx) = watch::channel(config.clone());
    // Prometheus (`/metrics`): the statsd calls' series plus gauges from the cache.
    let mut metrics = nodepool_shared::stats::Metrics::new();
    metrics.register_collector(Box::new(crate::metrics::LauncherCollector::new(
        cache.clone(),
        config_rx.clone(),
    )));
    let statsd = statsd.with_prometheus(Arc::new(metrics));
    let ready = Arc::new(AtomicBool::new(false));
    let ctx_cancel = cancel.child_token();
    let ctx = Arc::new(LauncherContext {
        store: ZkStore::new(client.clone()),
        cache: cache.clone(),
        statsd,
        config: config_rx,
        providers: RwLock::new(HashMap::new()),
        static_providers: RwLock::new(HashMap::new()),
        fqdn,
        hostname: hostname.clone(),
        intervals: opts.intervals.clone(),
        ready: ready.clone(),
        counters: Default::default(),
        cancel: ctx_cancel.clone(),
        task_states: Mutex::new(HashMap::new()),
        request_tries: Default::default(),
        own_pool_workers: Default::default(),
    });
    let launcher_component = register_launcher(&ctx, &cancel).await;
    let housekeeping = spawn_housekeeping(&ctx, &config, &opts);
    let mut main = MainLoop {
        ctx: ctx.clone(),
        config_tx,
        source,
        clouds_file: opts.clouds_file.clone(),
        handles: Arc::new(ProviderHandles::default()),
        handlers: Arc::new(TaskGroup::new("request handlers")),
        workers: HashMap::new(),
        static_syncs: HashMap::new(),
        min_ready: MinReady::new(),
        clouds_changed: false,
    };
    let mut clouds_seen = clouds_stamp(&opts.clouds_file);
    tracing::info!(hostname = %hostname, fqdn = %ctx.fqdn, "launcher started");
    loop {
        main.reconcile().await;
        main.min_ready.pass(&ctx, &main.handles).await;
        if !ready.swap(true, Ordering::AcqRel) {
            tracing::info!("launcher ready");
            if let Some(n) = &opts.on_ready {
                n.notify_one();
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(ctx.intervals.config_check) => {}
        }
        let now = main.source.stamp();
        if now != stamp {
            stamp = now;
            main.reload(&client).await;
            main.clouds_changed = true;
        }
        let clouds_now = clouds_stamp(&opts.clouds_file);
        if clouds_now != clouds_seen {
            clouds_seen = clouds_now;
            tracing::info!("clouds.yaml changed");
            main.clouds_changed = true;
        }
    }
    tracing::info!("launcher stopping");
    ready.store(false, Ordering::Release);
    ctx_cancel.cancel();
    let grace = ctx.intervals.stop_grace;
    main.stop_workers(|_| true).await;
    main.stop_static_syncs(|_| true).await;
    main.handlers.stop(grace).await;
    housekeeping.stop(grace).await;
    if let Some(reg) = launcher_component {
        let _ = reg.unregister().await;
    }
    cache.stop();
    client.close().await;
    tracing::info!("launcher stopped");
    Ok(())
}

async fn register_launcher(
    ctx: &LauncherContext,
    cancel: &CancellationToken,
) -> Option<ComponentRegistration> {
    let component = Component::new(ComponentKind::Launcher, &ctx.hostname, COMPONENT_VERSION);
    loop {
        match ctx.store.register_component(component.clone()).await {
            Ok(r) => return Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "cannot register launcher component; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// The housekeeping tasks (DeletedNodeWorker, CleanupWorker, StatsWorker, the local
/// ZooKeeper gauges), the statsd
/// flush, the SIGUSR2 dump and the web API, all ending on `ctx.cancel`.
fn spawn_housekeeping(
    ctx: &Arc<LauncherContext>,
    config: &Config,
    opts: &LauncherOptions,
) -> TaskGroup {
    let group = TaskGroup::new("housekeeping");
    group.spawn("DeletedNodeWorker", super::deleter::run(ctx.clone()));
    group.spawn("CleanupWorker", super::cleanup::run(ctx.clone()));
    group.spawn("StatsWorker", super::stats_worker::run(ctx.clone()));
    group.spawn("zk gauges", super::zk_stats::run(ctx.clone()));
    group.spawn("statsd flush", flush_statsd(ctx.clone()));
    group.spawn("SIGUSR2 dump", dump_on_sigusr2(ctx.clone()));
    if opts.webapp {
        group.spawn(
            "web API",
            serve_webapp(ctx.clone(), config, opts.web_bound.clone()),
        );
    }
    group
}

/// Sends buffered metrics every 100 ms, and once more at shutdown.
async fn flush_statsd(ctx: Arc<LauncherContext>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            _ = tick.tick() => ctx.statsd.flush(),
        }
    }
    ctx.statsd.flush();
}

/// The SIGUSR2 state dump (tasks, providers, counters, cache, session).
pub fn state_dump(ctx: &LauncherContext) -> String {
    super::dump::dump(ctx)
}

async fn dump_on_sigusr2(ctx: Arc<LauncherContext>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut sig) = signal(SignalKind::user_defined2()) else {
        return;
    };
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            got = sig.recv() => match got {
                Some(()) => tracing::info!("{}", state_dump(&ctx)),
                None => return,
            },
        }
    }
}

fn serve_webapp(
    ctx: Arc<LauncherContext>,
    config: &Config,
    bound: Option<Arc<Mutex<Option<SocketAddr>>>>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let addr = format!("{}:{}", config.webapp.listen_address, config.webapp.port);
    let mut state = crate::webapp::WebState::new(ctx.cache.clone(), ctx.ready.clone());
    if let Some(m) = ctx.statsd.prometheus() {
        state = state.with_metrics(m.clone());
    }
    async move {
        let Ok(addr) = addr.parse::<SocketAddr>() else {
            tracing::error!(address = %addr, "invalid web API listen address");
            return;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let serve = crate::webapp::serve(addr, state, ctx.cancel.clone(), Some(tx));
        let report = async move {
            if let (Ok(a), Some(b)) = (rx.await, bound) {
                *b.lock_or_recover() = Some(a);
            }
        };
        let (served, ()) = tokio::join!(serve, report);
        if let Err(e) = served {
            tracing::error!(error = %e, "web API failed");
        }
    }
}

/// Whether two configs of one provider differ only in their pools (a pool change does
/// not restart the provider: its pool workers read their pool afresh on every pass).
fn same_settings(a: &Provider, b: &Provider) -> bool {
    let strip = |p: &Provider| Provider {
        pools: Vec::new(),
        ..p.clone()
    };
    strip(a) == strip(b)
}

impl MainLoop {
    /// Loads the changed config files; a broken config is logged and the old one kept.
    async fn reload(&mut self, client: &ZkClient) {
        match self.source.load() {
            Ok(c) => {
                tracing::info!("configuration changed; reloading");
                crate::zk_settings::apply(client, c.zk_settings()).await;
                self.config_tx.send_replace(Arc::new(c));
            }
            Err(e) => tracing::error!("new configuration is invalid; keeping the old one:\n{e}"),
        }
    }

    fn clouds(&self) -> Option<CloudsFile> {
        let r = match &self.clouds_file {
            Some(p) => CloudsFile::load_from(p),
            None => CloudsFile::load(),
        };
        match r {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "cannot load clouds.yaml");
                None
            }
        }
    }

    /// Starts, restarts and stops providers and pool workers to match the config.
    async fn reconcile(&mut self) {
        let config = self.ctx.config();
        self.reconcile_providers(&config).await;
        self.reconcile_static_providers(&config).await;
        self.reconcile_workers(&config).await;
    }

    /// Stops removed providers, restarts those whose settings (other than pools)
    /// changed, starts new ones. A provider that cannot be started is logged and left
    /// out (retried on the next pass); its pool workers stop.
    async fn reconcile_providers(&mut self, config: &Config) {
        for name in self.handles.names() {
            if config.provider(&name).is_none() {
                tracing::info!(provider = %name, "stopping provider (removed)");
                self.stop_workers(|(p, _)| p == &name).await;
                self.set_handle(&name, None);
            }
        }
        let check_clouds = std::mem::take(&mut self.clouds_changed);
        let mut clouds = None;
        for p in &config.providers {
            let current = self.handles.get(&p.name);
            let unchanged = current
                .as_ref()
                .is_some_and(|h| same_settings(&h.runtime.config, p));
            if unchanged && !check_clouds {
                continue;
            }
            if clouds.is_none() {
                clouds = Some(self.clouds());
            }
            let Some(c) = clouds.as_ref().and_then(Option::as_ref) else {
                continue;
            };
            if unchanged
                && current.as_ref().is_some_and(|h| {
                    h.runtime.cloud.is_none() || h.runtime.cloud.as_ref() == c.cloud(&p.cloud).ok()
                })
            {
                continue;
            }
            match ProviderRuntime::start(p, c, &self.ctx.statsd) {
                Ok(mut rt) => {
                    rt.quota =
                        ProviderQuota::with_ttl(p.name.clone(), self.ctx.intervals.provider_quota);
                    let verb = match (&current, unchanged) {
                        (None, _) => "started",
                        (Some(_), true) => "restarted (clouds.yaml entry changed)",
                        (Some(_), false) => "restarted (changed)",
                    };
                    tracing::info!(provider = %p.name, "provider {verb}");
                    let handle = ProviderHandle::new(Arc::new(rt))
                        .with_image_recheck(self.ctx.intervals.image_recheck);
                    self.set_handle(&p.name, Some(Arc::new(handle)));
                }
                // Only its clouds.yaml entry changed, for the worse (removed, unusable):
                // the provider keeps running as it was, as on a bad config.
                Err(e) if unchanged => {
                    tracing::error!(provider = %p.name, error = %e,
                        "changed clouds.yaml entry is unusable; keeping the provider as it was");
                }
                Err(e) => {
                    tracing::error!(provider = %p.name, error = %e, "cannot start provider; skipping it");
                    if current.is_some() {
                        self.stop_workers(|(q, _)| q == &p.name).await;
                        self.set_handle(&p.name, None);
                    }
                }
            }
        }
    }

    /// Installs (or removes) the started provider `name` for the pool workers and the
    /// housekeeping tasks.
    fn set_handle(&self, name: &str, handle: Option<Arc<ProviderHandle>>) {
        let mut providers = self.ctx.providers.write_or_recover();
        match handle {
            Some(h) => {
                providers.insert(name.to_string(), h.runtime.clone());
                self.handles.insert(name, h);
            }
            None => {
                providers.remove(name);
                self.handles.remove(name);
            }
        }
    }

    /// Starts a sync task for every static provider of the config that has none (also
    /// in place of one that ended by itself) and stops those of providers removed
    /// (their nodes stay; see the operation guide).
    async fn reconcile_static_providers(&mut self, config: &Config) {
        let gone: Vec<String> = self
            .static_syncs
            .iter()
            .filter(|(name, (_, task))| {
                config.static_provider(name).is_none() || task.is_finished()
            })
            .map(|(name, _)| name.clone())
            .collect();
        if !gone.is_empty() {
            for name in &gone {
                tracing::info!(provider = %name, "stopping static provider");
            }
            self.stop_workers(|(p, _)| gone.contains(p)).await;
            self.stop_static_syncs(|p| gone.contains(&p.to_string()))
                .await;
        }
        for p in &config.static_providers {
            if self.static_syncs.contains_key(&p.name) {
                continue;
            }
            tracing::info!(provider = %p.name, "static provider started");
            let provider = Arc::new(StaticProvider::new(&p.name, self.ctx.intervals.cleanup));
            self.ctx
                .static_providers
                .write_or_recover()
                .insert(p.name.clone(), provider.clone());
            let stop = self.ctx.cancel.child_token();
            let task = tokio::spawn(static_driver::sync::run(
                self.ctx.clone(),
                provider,
                stop.clone(),
            ));
            self.static_syncs.insert(p.name.clone(), (stop, task));
        }
    }

    /// Stops the sync tasks of the chosen static providers (cancel, grace, abort) and
    /// forgets those providers.
    async fn stop_static_syncs(&mut self, which: impl Fn(&str) -> bool) {
        let names: Vec<String> = self
            .static_syncs
            .keys()
            .filter(|n| which(n))
            .cloned()
            .collect();
        for name in names {
            let Some((stop, task)) = self.static_syncs.remove(&name) else {
                continue;
            };
            stop.cancel();
            if stop_task(task, self.ctx.intervals.stop_grace).await == Stopped::Aborted {
                tracing::warn!(provider = %name, "static sync did not stop within its grace period; aborted");
            }
            self.ctx.static_providers.write_or_recover().remove(&name);
        }
    }

    /// Every (provider, pool) that should have a worker now, and whether it is static.
    fn wanted_workers(&self, config: &Config) -> Vec<((String, String), bool)> {
        let cloud = config
            .providers
            .iter()
            .filter(|p| self.handles.get(&p.name).is_some())
            .flat_map(|p| {
                p.pools
                    .iter()
                    .map(|pool| ((p.name.clone(), pool.name.clone()), false))
            });
        let fixed = config
            .static_providers
            .iter()
            .filter(|p| self.static_syncs.contains_key(&p.name))
            .flat_map(|p| {
                p.pools
                    .iter()
                    .map(|pool| ((p.name.clone(), pool.name.clone()), true))
            });
        cloud.chain(fixed).collect()
    }

    /// Stops the workers whose pool is gone (or whose provider is not started, or
    /// changed its kind) and starts one for every pool of a started provider that has
    /// none — also in place of one that ended by itself (as Nodepool restarts a dead
    /// pool worker thread).
    async fn reconcile_workers(&mut self, config: &Config) {
        let wanted = self.wanted_workers(config);
        let gone: Vec<(String, String)> = self
            .workers
            .iter()
            .filter(|(k, w)| {
                let still = wanted.contains(&((*k).clone(), w.is_static));
                let ended = w.task.is_finished();
                if ended && still {
                    tracing::warn!(pool = %w.pc.task_name(), "pool worker ended; restarting it");
                }
                ended || !still
            })
            .map(|(k, _)| k.clone())
            .collect();
        if !gone.is_empty() {
            self.stop_workers(|k| gone.contains(k)).await;
        }
        for (key, is_static) in wanted {
            if !self.workers.contains_key(&key) {
                let worker = self.start_worker(&key.0, &key.1, is_static);
                self.workers.insert(key, worker);
            }
        }
    }

    fn start_worker(&self, provider: &str, pool: &str, is_static: bool) -> WorkerHandle {
        let pc = Arc::new(PoolContext::new(
            self.ctx.clone(),
            self.handles.clone(),
            self.handlers.clone(),
            provider,
            pool,
        ));
        let stop = self.ctx.cancel.child_token();
        let registration = RegistrationSlot::default();
        let task = if is_static {
            tokio::spawn(static_driver::pool_worker::run(
                pc.clone(),
                registration.clone(),
                stop.clone(),
            ))
        } else {
            tokio::spawn(pool_worker::run(
                pc.clone(),
                registration.clone(),
                stop.clone(),
            ))
        };
        WorkerHandle {
            is_static,
            pc,
            stop,
            task,
            registration,
        }
    }

    /// Stops the chosen workers together: told to stop, waited for `stop_grace`, then
    /// aborted; the component of an aborted one is removed here, so a replacement never
    /// runs beside it.
    async fn stop_workers(&mut self, which: impl Fn(&(String, String)) -> bool) {
        let keys: Vec<(String, String)> =
            self.workers.keys().filter(|k| which(k)).cloned().collect();
        let stopping: Vec<WorkerHandle> =
            keys.iter().filter_map(|k| self.workers.remove(k)).collect();
        for w in &stopping {
            w.stop.cancel();
        }
        // One deadline for all: they were told to stop at the same time.
        let grace = self.ctx.intervals.stop_grace;
        let deadline = tokio::time::Instant::now() + grace;
        for w in stopping {
            let task = w.pc.task_name();
            if stop_task_by(w.task, deadline).await == Stopped::Aborted {
                tracing::warn!(pool = %task, id = %w.pc.worker_id, ?grace,
                    "pool worker did not stop within its grace period; aborted");
                self.ctx.task_states.lock_or_recover().remove(&task);
            }
            w.registration.unregister().await;
        }
    }
}
