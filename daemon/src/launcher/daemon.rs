//! The `nodepool-launcher` main loop (docs/launcher.md): read the config, connect
//! ZooKeeper, start the tree cache, register the launcher component, start providers
//! and one pool worker per provider-pool, spawn the housekeeping tasks and the web API,
//! then every `config_check` interval: re-read the config if its files changed, reconcile
//! providers and pool workers with it, and run min-ready. `ready` is set after the first
//! full pass. On cancel: stop the pool workers (they unregister), unregister the
//! launcher, close the ZooKeeper session so every lock and ephemeral goes at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use nodepool_shared::cloud::CloudsFile;
use nodepool_shared::config::{Config, ConfigError, ConfigSource, Pool, Provider};
use nodepool_shared::model::{Component, ComponentKind};
use nodepool_shared::stats::Statsd;
use nodepool_shared::zk::{ComponentRegistration, TreeCache, ZkClient, ZkError, ZkStore};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::min_ready::MinReady;
use super::pool_worker::{self, COMPONENT_VERSION};
use super::providers::ProviderHandle;
use super::runtime::{Intervals, LauncherContext, ProviderRuntime};
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
    /// Overrides `gethostname()` (tests running two launchers in one process).
    pub hostname: Option<String>,
    /// Called with the web API's bound address.
    pub web_bound: Option<Arc<Mutex<Option<SocketAddr>>>>,
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
    Stats(String),
}

/// A running pool worker.
struct WorkerHandle {
    provider: Provider,
    pool: Pool,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The main loop's own state.
struct MainLoop {
    ctx: Arc<LauncherContext>,
    config_tx: watch::Sender<Arc<Config>>,
    source: ConfigSource,
    clouds_file: Option<PathBuf>,
    handles: HashMap<String, Arc<ProviderHandle>>,
    workers: HashMap<(String, String), WorkerHandle>,
    min_ready: MinReady,
}

/// The fully qualified host name (`hostname -f` semantics are not needed: Nodepool only
/// uses it inside pool worker ids).
fn fqdn_of(hostname: &str) -> String {
    hostname.to_string()
}

/// Runs the launcher until `cancel` fires.
pub async fn run(opts: LauncherOptions, cancel: CancellationToken) -> Result<(), DaemonError> {
    let source = ConfigSource::new(opts.config.clone(), opts.secure.clone());
    let mut stamp = source.stamp();
    let config = Arc::new(source.load()?);
    let statsd = match opts.statsd.clone() {
        Some(s) => s,
        None => Statsd::from_env().map_err(|e| DaemonError::Stats(e.to_string()))?,
    };
    let _flush = statsd.spawn_flush_task(Duration::from_millis(100));
    let client = ZkClient::connect(config.zk_settings()).await?;
    let cache = TreeCache::start(client.clone());
    if !cache.wait_synced(Duration::from_secs(30)).await {
        tracing::warn!("tree cache not synced after 30 s; continuing");
    }
    let store = ZkStore::new(client.clone());
    let hostname = opts
        .hostname
        .clone()
        .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
    let (config_tx, config_rx) = watch::channel(config.clone());
    let ready = Arc::new(AtomicBool::new(false));
    let ctx_cancel = cancel.child_token();
    let ctx = Arc::new(LauncherContext {
        store: store.clone(),
        cache: cache.clone(),
        statsd: statsd.clone(),
        config: config_rx,
        providers: RwLock::new(HashMap::new()),
        fqdn: fqdn_of(&hostname),
        hostname: hostname.clone(),
        intervals: opts.intervals.clone(),
        ready: ready.clone(),
        counters: Default::default(),
        cancel: ctx_cancel.clone(),
        task_states: Mutex::new(HashMap::new()),
    });
    let launcher_component = register_launcher(&ctx, &cancel).await;
    let mut background: Vec<JoinHandle<()>> = Vec::new();
    background.extend(spawn_housekeeping(&ctx));
    if opts.webapp {
        background.push(spawn_webapp(&ctx, &config, opts.web_bound.clone()));
    }
    background.push(tokio::spawn(dump_on_sigusr2(ctx.clone())));
    let mut main = MainLoop {
        ctx: ctx.clone(),
        config_tx,
        source,
        clouds_file: opts.clouds_file.clone(),
        handles: HashMap::new(),
        workers: HashMap::new(),
        min_ready: MinReady::new(),
    };
    tracing::info!(hostname = %hostname, "launcher started");
    loop {
        main.reconcile().await;
        main.min_ready.pass(&ctx).await;
        if !ready.swap(true, Ordering::AcqRel) {
            tracing::info!("launcher ready");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(ctx.intervals.config_check) => {}
        }
        let now = main.source.stamp();
        if now != stamp {
            stamp = now;
            match main.source.load() {
                Ok(c) => {
                    tracing::info!("configuration changed; reloading");
                    main.config_tx.send_replace(Arc::new(c));
                }
                Err(e) => {
                    tracing::error!("new configuration is invalid; keeping the old one:\n{e}")
                }
            }
        }
    }
    tracing::info!("launcher stopping");
    ready.store(false, Ordering::Release);
    ctx_cancel.cancel();
    main.stop_all_workers().await;
    if let Some(reg) = launcher_component {
        let _ = reg.unregister().await;
    }
    for t in background {
        t.abort();
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

/// The housekeeping tasks (DeletedNodeWorker, CleanupWorker, StatsWorker).
fn spawn_housekeeping(ctx: &Arc<LauncherContext>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(super::deleter::run(ctx.clone())),
        tokio::spawn(super::cleanup::run(ctx.clone())),
        tokio::spawn(super::stats_worker::run(ctx.clone())),
    ]
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
    while sig.recv().await.is_some() {
        tracing::info!("{}", state_dump(&ctx));
    }
}

fn spawn_webapp(
    ctx: &Arc<LauncherContext>,
    config: &Config,
    bound: Option<Arc<Mutex<Option<SocketAddr>>>>,
) -> JoinHandle<()> {
    let addr = format!("{}:{}", config.webapp.listen_address, config.webapp.port);
    let state = crate::webapp::WebState::new(ctx.cache.clone(), ctx.ready.clone());
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        let Ok(addr) = addr.parse::<SocketAddr>() else {
            tracing::error!(address = %addr, "invalid web API listen address");
            return;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Some(b) = bound {
            tokio::spawn(async move {
                if let Ok(a) = rx.await {
                    *b.lock_or_recover() = Some(a);
                }
            });
        }
        if let Err(e) = crate::webapp::serve(addr, state, cancel, Some(tx)).await {
            tracing::error!(error = %e, "web API failed");
        }
    })
}

impl MainLoop {
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
        // Providers gone or changed: stop their workers and drop them.
        let stale: Vec<String> = self
            .handles
            .iter()
            .filter(|(name, h)| config.provider(name) != Some(&h.runtime.config))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            tracing::info!(provider = %name, "stopping provider (removed or changed)");
            self.stop_workers(|(p, _)| p == &name).await;
            self.handles.remove(&name);
            self.ctx.providers.write_or_recover().remove(&name);
        }
        // New providers.
        let missing: Vec<&Provider> = config
            .providers
            .iter()
            .filter(|p| !self.handles.contains_key(&p.name))
            .collect();
        if !missing.is_empty() {
            if let Some(clouds) = self.clouds() {
                for p in missing {
                    match ProviderRuntime::start(p, &clouds, &self.ctx.statsd) {
                        Ok(rt) => {
                            let rt = Arc::new(rt);
                            tracing::info!(provider = %p.name, "provider started");
                            self.ctx
                                .providers
                                .write_or_recover()
                                .insert(p.name.clone(), rt.clone());
                            self.handles
                                .insert(p.name.clone(), Arc::new(ProviderHandle::new(rt)));
                        }
                        Err(e) => {
                            tracing::error!(provider = %p.name, error = %e, "cannot start provider; skipping it")
                        }
                    }
                }
            }
        }
        // Pool workers: stop those whose pool is gone, start missing ones.
        let wanted: HashMap<(String, String), (Provider, Pool)> = config
            .providers
            .iter()
            .filter(|p| self.handles.contains_key(&p.name))
            .flat_map(|p| {
                p.pools.iter().map(move |pool| {
                    (
                        (p.name.clone(), pool.name.clone()),
                        (p.clone(), pool.clone()),
                    )
                })
            })
            .collect();
        let workers = &self.workers;
        let gone: Vec<(String, String)> = workers
            .iter()
            .filter(|(k, w)| {
                wanted
                    .get(*k)
                    .is_none_or(|(p, pool)| p != &w.provider || pool != &w.pool)
            })
            .map(|(k, _)| k.clone())
            .collect();
        if !gone.is_empty() {
            self.stop_workers(|k| gone.contains(k)).await;
        }
        for (key, (provider, pool)) in wanted {
            if self.workers.contains_key(&key) {
                continue;
            }
            let Some(handle) = self.handles.get(&provider.name).cloned() else {
                continue;
            };
            let stop = self.ctx.cancel.child_token();
            let task = tokio::spawn(pool_worker::run(
                self.ctx.clone(),
                handle,
                provider.clone(),
                pool.clone(),
                stop.clone(),
            ));
            self.workers.insert(
                key,
                WorkerHandle {
                    provider,
                    pool,
                    stop,
                    task,
                },
            );
        }
    }

    async fn stop_workers(&mut self, which: impl Fn(&(String, String)) -> bool) {
        let keys: Vec<(String, String)> =
            self.workers.keys().filter(|k| which(k)).cloned().collect();
        let mut tasks = Vec::new();
        for k in keys {
            if let Some(w) = self.workers.remove(&k) {
                w.stop.cancel();
                tasks.push(w.task);
            }
        }
        for t in tasks {
            if tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .is_err()
            {
                tracing::warn!("pool worker did not stop within 10 s");
            }
        }
    }

    async fn stop_all_workers(&mut self) {
        self.stop_workers(|_| true).await;
    }
}
