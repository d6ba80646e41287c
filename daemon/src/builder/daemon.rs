//! The `nodepool-builder` daemon: start-up (config, images dir, builder id, ZooKeeper,
//! component registration), the scheduler that starts builds and uploads, the
//! ZooKeeper watch that wakes it, the cleanup loop, config reloads, and an orderly stop.
//!
//! The scheduler ([`super::scheduler`]) is one reconcile loop. A persistent recursive
//! watch on `/nodepool/images` wakes it on any change (request-build, pause, build and
//! upload records), as do the end of one of its tasks and a config reload. Several
//! builders coordinate only through the ZooKeeper locks the tasks take.
//!
//! A reload that changes the ZooKeeper settings moves the client to the new servers
//! ([`crate::zk_settings`]); the component record, the watch and the locks follow the
//! new session.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nodepool_shared::config::{ConfigError, ConfigSource};
use nodepool_shared::model::{paths, Component, ComponentKind};
use nodepool_shared::stats::Statsd;
use nodepool_shared::zk::{ZkClient, ZkError, ZkStore};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use zookeeper_client::EventType;

use super::builder_id;
use super::cleanup::cleanup_loop;
use super::context::{Clouds, Ctx, Tunables};
use super::host;
use super::scheduler::{scheduler, STOP_GRACE};

/// The version written into the component record (the Nodepool release we mirror).
pub const COMPONENT_VERSION: &str = nodepool_shared::version::COMPONENT_VERSION;

/// Everything the daemon is started with (the command line, resolved).
#[derive(Clone, Debug)]
pub struct BuilderOptions {
    /// `-c` / `-s`.
    pub config: ConfigSource,
    /// clouds.yaml to use; `None` = the usual search (`OS_CLIENT_CONFIG_FILE`, …).
    pub clouds_file: Option<PathBuf>,
    /// `--build-workers` (default 1).
    pub build_workers: usize,
    /// `--upload-workers` (default 4).
    pub upload_workers: usize,
    /// `--cleanup-interval` (default 60 s).
    pub cleanup_interval: Duration,
    /// `--retry-delay`: pause after a failed build/upload of the same image (10 s).
    pub retry_delay: Duration,
    /// `--scan-interval`: safety-net scheduler pass (default 60 s).
    pub scan_interval: Duration,
    /// `--config-check-interval`: how often the config files' mtimes are compared (5 s).
    pub config_check_interval: Duration,
    /// Metrics sink.
    pub statsd: Statsd,
    /// What `%p` in `dib-cmd` stands for (default: the directory of the executable).
    pub program_dir: PathBuf,
}

impl BuilderOptions {
    /// Nodepool's defaults for `config`.
    pub fn new(config: ConfigSource) -> Self {
        BuilderOptions {
            config,
            clouds_file: None,
            build_workers: 1,
            upload_workers: 4,
            cleanup_interval: Duration::from_secs(60),
            retry_delay: Duration::from_secs(10),
            scan_interval: Duration::from_secs(60),
            config_check_interval: Duration::from_secs(5),
            statsd: Statsd::noop(),
            program_dir: super::dib::program_dir(),
        }
    }
}

/// Why the builder could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuilderError {
    /// The configuration is invalid or unreadable.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// `images-dir` is not set.
    #[error("configuration {0}: `images-dir` is required by nodepool-builder")]
    NoImagesDir(PathBuf),
    /// `images-dir` cannot be created.
    #[error("images-dir {path}: {source}")]
    ImagesDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The builder id file cannot be read or written.
    #[error(transparent)]
    BuilderId(#[from] builder_id::BuilderIdError),
    /// ZooKeeper is unreachable or refused.
    #[error("ZooKeeper: {0}")]
    Zk(#[from] ZkError),
}

/// A running builder.
pub struct BuilderHandle {
    ctx: Arc<Ctx>,
    task: tokio::task::JoinHandle<()>,
}

impl BuilderHandle {
    /// The activity report SIGUSR2 logs.
    pub fn state_report(&self) -> String {
        self.ctx.state_report()
    }

    /// Asks the builder to stop (running builds are killed and recorded `failed`,
    /// uploads aborted and recorded `failed`, locks released, component removed).
    pub fn stop(&self) {
        self.ctx.cancel.cancel();
    }

    /// The health check (`/health` of the metrics listener): not stopping, and connected
    /// to ZooKeeper.
    pub fn health(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let ctx = self.ctx.clone();
        move || {
            !ctx.cancel.is_cancelled()
                && ctx.store.client().status().state
                    == nodepool_shared::zk::ConnectionState::Connected
        }
    }

    /// Waits until the builder has stopped.
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// The builder's fqdn (as written into build records).
    pub fn fqdn(&self) -> &str {
        &self.ctx.fqdn
    }

    /// The builder id.
    pub fn builder_id(&self) -> &str {
        &self.ctx.builder_id
    }
}

/// Starts the builder: loads the config, prepares the images dir and builder id,
/// connects to ZooKeeper, registers the component and starts the workers.
pub async fn start(opts: BuilderOptions) -> Result<BuilderHandle, BuilderError> {
    let config = Arc::new(opts.config.load()?);
    let images_dir = config
        .images_dir
        .clone()
        .ok_or_else(|| BuilderError::NoImagesDir(opts.config.path.clone()))?;
    std::fs::create_dir_all(&images_dir).map_err(|source| BuilderError::ImagesDir {
        path: images_dir.clone(),
        source,
    })?;
    let builder_id = builder_id::read_or_create(&images_dir)?;
    let hostname = host::hostname();
    let fqdn = host::fqdn_of(&hostname);
    let client = ZkClient::connect(config.zk_settings()).await?;
    let store = ZkStore::new(client.clone());
    let registration = store
        .register_component(Component::new(
            ComponentKind::Builder,
            &hostname,
            COMPONENT_VERSION,
        ))
        .await?;
    let clouds = Arc::new(Clouds::from_config(
        &config,
        opts.clouds_file.as_ref(),
        &opts.statsd,
    ));
    let cancel = CancellationToken::new();
    let tunables = Tunables {
        build_workers: opts.build_workers.max(1),
        upload_workers: opts.upload_workers.max(1),
        cleanup_interval: opts.cleanup_interval,
        retry_delay: opts.retry_delay,
        scan_interval: opts.scan_interval,
        program_dir: opts.program_dir.clone(),
    };
    let ctx = Arc::new(Ctx::new(
        store,
        config,
        clouds,
        hostname,
        fqdn,
        builder_id.clone(),
        opts.statsd.clone(),
        tunables,
        cancel.clone(),
    ));
    info!(fqdn = %ctx.fqdn, %builder_id, images_dir = %images_dir.display(),
        build_workers = ctx.tunables.build_workers, upload_workers = ctx.tunables.upload_workers,
        "nodepool-builder started");
    let task = tokio::spawn({
        let ctx = ctx.clone();
        let opts = opts.clone();
        async move {
            let flusher = ctx.statsd.spawn_flush_task(Duration::from_secs(1));
            let watcher = tokio::spawn(watch_images(ctx.clone()));
            let cleanup = tokio::spawn(cleanup_loop(ctx.clone()));
            let reload = tokio::spawn(watch_config(ctx.clone(), opts));
            scheduler(ctx.clone()).await;
            for t in [watcher, cleanup, reload] {
                let _ = tokio::time::timeout(STOP_GRACE, t).await;
            }
            if let Some(f) = flusher {
                f.abort();
            }
            ctx.statsd.flush();
            if let Err(e) = registration.unregister().await {
                warn!("removing the component record: {e}");
            }
            client.close().await;
            info!("nodepool-builder stopped");
        }
    });
    Ok(BuilderHandle { ctx, task })
}

/// Wakes the scheduler on every change below `/nodepool/images` (persistent recursive
/// watch, re-added on every new session: after a session loss or a move to other
/// servers).
async fn watch_images(ctx: Arc<Ctx>) {
    loop {
        if ctx.cancel.is_cancelled() {
            return;
        }
        let mut status = ctx.store.client().watch_status();
        match ctx.store.client().watch_recursive(paths::IMAGES).await {
            Ok((mut watcher, generation)) => {
                ctx.wake.notify_one();
                loop {
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => return,
                        Ok(()) = status.changed() => {
                            if status.borrow_and_update().generation != generation {
                                break;
                            }
                        }
                        ev = watcher.changed() => {
                            if ev.event_type == EventType::Session {
                                if ev.session_state.is_terminated() {
                                    break;
                                }
                                continue;
                            }
                            ctx.wake.notify_one();
                        }
                    }
                }
            }
            Err(e) => warn!("cannot watch {}: {e}; retrying", paths::IMAGES),
        }
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Reloads the configuration when either file's mtime changes; an invalid new config
/// is logged and ignored (the last good one stays).
async fn watch_config(ctx: Arc<Ctx>, opts: BuilderOptions) {
    let mut stamp = opts.config.stamp();
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            _ = tokio::time::sleep(opts.config_check_interval) => {}
        }
        let now = opts.config.stamp();
        if now == stamp {
            continue;
        }
        stamp = now;
        match opts.config.load() {
            Ok(config) => {
                let old = ctx.config();
                crate::zk_settings::apply(ctx.store.client(), config.zk_settings()).await;
                if old.images_dir != config.images_dir {
                    warn!("images-dir changed; restart nodepool-builder to apply it");
                }
                let mut config = config;
                config.images_dir = old.images_dir.clone();
                let clouds = Clouds::from_config(&config, opts.clouds_file.as_ref(), &ctx.statsd);
                ctx.replace_config(Arc::new(config), Arc::new(clouds));
                info!(path = %opts.config.path.display(), "configuration reloaded");
            }
            Err(e) => error!(
                path = %opts.config.path.display(),
                "ignoring invalid configuration, keeping the previous one: {e}"
            ),
        }
    }
}
