//! The `nodepool-builder` daemon: start-up (config, images dir, builder id, ZooKeeper,
//! component registration), the scheduler that starts builds and uploads, the
//! ZooKeeper watch that wakes it, the cleanup loop, config reloads, and an orderly stop.
//!
//! The scheduler is one reconcile loop: each pass reads the image records and starts
//! whatever build or upload is due and not yet running here (at most `build-workers`
//! builds and `upload-workers` uploads at once). A persistent recursive watch on
//! `/nodepool/images` wakes it on any change (request-build, pause, build and upload
//! records), as does the end of one of its tasks and a config reload; the only timers
//! are the next rebuild-age expiry, failure back-offs, and a long safety-net interval.
//! Several builders coordinate only through the ZooKeeper locks the tasks take.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nodepool_shared::config::{Config, ConfigError, ConfigSource};
use nodepool_shared::model::{
    paths, BuildState, Component, ComponentKind, ImageBuild, UploadState,
};
use nodepool_shared::stats::Statsd;
use nodepool_shared::zk::{ZkClient, ZkError, ZkResult, ZkStore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use zookeeper_client::EventType;

use super::build_worker::build_image;
use super::builder_id;
use super::cleanup::cleanup_loop;
use super::context::{Clouds, Ctx, Tunables};
use super::host;
use super::plan;
use super::upload::{local_file, mark_active, upload_image, UploadJob};

/// The version written into the component record (the Nodepool release we mirror).
pub const COMPONENT_VERSION: &str = nodepool_shared::version::COMPONENT_VERSION;

/// How long a stop waits for running builds and uploads to wind down.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

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

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
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

/// What a finished scheduler task was.
enum Done {
    Build(String),
    Upload(String, String),
}

/// The reconcile loop; returns after shutdown once its tasks ended (bounded).
async fn scheduler(ctx: Arc<Ctx>) {
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let mut builds: BTreeSet<String> = BTreeSet::new();
    let mut uploads: BTreeSet<(String, String)> = BTreeSet::new();
    let mut next = Instant::now();
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            _ = ctx.wake.notified() => {}
            _ = tokio::time::sleep_until(next.into()) => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                match done {
                    Ok(Done::Build(i)) => { builds.remove(&i); }
                    Ok(Done::Upload(i, p)) => {
                        ctx.with_activity(|a| a.uploads.remove(&(i.clone(), p.clone())));
                        uploads.remove(&(i, p));
                    }
                    Err(e) => error!("builder task panicked: {e}"),
                }
            }
        }
        if ctx.cancel.is_cancelled() {
            break;
        }
        next = match schedule_pass(&ctx, &mut tasks, &mut builds, &mut uploads).await {
            Ok(due) => due,
            Err(e) => {
                warn!("scheduler pass failed: {e}");
                Instant::now() + Duration::from_secs(2)
            }
        };
    }
    // Shutdown: tasks see the cancellation; give them time to record their outcome.
    let drained = tokio::time::timeout(STOP_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("builds/uploads did not stop within {STOP_GRACE:?}; aborting them");
        tasks.abort_all();
    }
}

/// One pass; returns when the next timed pass is due.
async fn schedule_pass(
    ctx: &Arc<Ctx>,
    tasks: &mut JoinSet<Done>,
    running_builds: &mut BTreeSet<String>,
    running_uploads: &mut BTreeSet<(String, String)>,
) -> ZkResult<Instant> {
    let config: Arc<Config> = ctx.config();
    let clouds = ctx.clouds();
    let now = Instant::now();
    let epoch = now_epoch();
    let mut next = now + ctx.tunables.scan_interval;
    let mut consider = |at: Instant| {
        if at < next {
            next = at.max(now + Duration::from_millis(50));
        }
    };
    let (build_backoff, upload_backoff) =
        ctx.with_activity(|a| (a.build_backoff.clone(), a.upload_backoff.clone()));
    for di in &config.diskimages {
        let required = plan::required_formats(&config, di, |p| clouds.image_format(p));
        if required.is_empty() {
            continue;
        }
        // Like Nodepool's BuildWorker, a paused image (config `pause` or the ZooKeeper
        // flag) only stops builds; uploads stop only for a paused provider diskimage
        // entry (UploadWorker), so a new provider still gets the newest ready build.
        let build_paused = di.pause || ctx.store.image_paused(&di.name).await?;
        let builds: Vec<ImageBuild> = ctx
            .store
            .builds(&di.name)
            .await?
            .into_iter()
            .map(|(b, _)| b)
            .collect();
        // Builds.
        if !build_paused {
            if let Some(due) = plan::rebuild_due(&builds, di.rebuild_age) {
                let secs = (due - epoch).max(0.0);
                consider(now + Duration::from_secs_f64(secs.min(1e9)));
            }
        }
        let blocked = build_backoff.get(&di.name).filter(|t| **t > now);
        if let Some(t) = blocked.filter(|_| !build_paused) {
            consider(*t);
        }
        if !build_paused
            && !running_builds.contains(&di.name)
            && blocked.is_none()
            && running_builds.len() < ctx.tunables.build_workers
        {
            let requested = ctx.store.build_request(&di.name).await?.is_some();
            if plan::build_reason(&builds, &required, di.rebuild_age, requested, epoch).is_some() {
                running_builds.insert(di.name.clone());
                let (ctx2, di2, req2) = (ctx.clone(), di.clone(), required.clone());
                tasks.spawn(async move {
                    let name = di2.name.clone();
                    build_image(ctx2.clone(), di2, req2).await;
                    ctx2.wake.notify_one();
                    Done::Build(name)
                });
            }
        }
        // Uploads of the newest ready build, if its files are here.
        let Some(newest) = plan::newest(&builds, BuildState::Ready) else {
            continue;
        };
        let images_dir = ctx.images_dir();
        for p in &config.providers {
            let Some(pdi) = p.diskimage(&di.name) else {
                continue;
            };
            let Some(cloud) = clouds.get(&p.name) else {
                continue;
            };
            let key = (di.name.clone(), p.name.clone());
            if pdi.pause
                || running_uploads.contains(&key)
                || running_uploads.len() >= ctx.tunables.upload_workers
            {
                continue;
            }
            if let Some(t) = upload_backoff.get(&key).filter(|t| **t > now) {
                consider(*t);
                continue;
            }
            if !newest.formats.contains(&cloud.image_format) {
                continue;
            }
            let Some(file) = local_file(&images_dir, newest, &cloud.image_format) else {
                continue;
            };
            let existing = ctx.store.uploads(&di.name, &newest.id, &p.name).await?;
            if existing.iter().any(|(u, _)| u.state == UploadState::Ready) {
                continue;
            }
            // Someone else uploading it right now: their lock, not our business.
            if existing
                .iter()
                .any(|(u, _)| u.state == UploadState::Uploading)
                && !ctx
                    .store
                    .lock_contenders(&paths::provider_upload_lock(&di.name, &newest.id, &p.name))
                    .await?
                    .is_empty()
            {
                continue;
            }
            let job = UploadJob {
                image: di.clone(),
                provider: p.clone(),
                cloud: cloud.clone(),
                build: newest.clone(),
                file,
            };
            running_uploads.insert(key.clone());
            mark_active(ctx, &job);
            let ctx2 = ctx.clone();
            tasks.spawn(async move {
                upload_image(ctx2.clone(), job).await;
                ctx2.wake.notify_one();
                Done::Upload(key.0, key.1)
            });
        }
    }
    Ok(next)
}

/// Wakes the scheduler on every change below `/nodepool/images` (persistent recursive
/// watch, re-added after a session loss).
async fn watch_images(ctx: Arc<Ctx>) {
    loop {
        if ctx.cancel.is_cancelled() {
            return;
        }
        match ctx.store.client().watch_recursive(paths::IMAGES).await {
            Ok((mut watcher, _generation)) => {
                ctx.wake.notify_one();
                loop {
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => return,
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
                if old.zk_settings() != config.zk_settings() {
                    warn!("ZooKeeper settings changed; restart nodepool-builder to apply them");
                }
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
