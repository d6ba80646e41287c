//! The builder's reconcile loop: each pass reads the image records and starts whatever
//! build or upload is due and not yet running here (at most `build-workers` builds and
//! `upload-workers` uploads at once). It is woken by the `/nodepool/images` watch, by
//! the end of one of its tasks and by config reloads; the only timers are the next
//! rebuild-age expiry, failure back-offs and the long safety-net interval.
//!
//! A pass goes image by image: the build phase ([`Pass::consider_build`]) and the upload
//! phase ([`Pass::consider_uploads`]), each deciding with the pure rules of [`plan`].
//! A task that panics is logged, counted as a failure (with the retry back-off) and its
//! image or provider scheduled again later, like a task that failed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodepool_shared::config::{Config, DiskImage, Provider};
use nodepool_shared::model::{paths, BuildState, ImageBuild, UploadState};
use nodepool_shared::zk::ZkResult;
use tracing::{error, warn};

use super::build_worker::build_image;
use super::context::{Clouds, Ctx};
use super::plan;
use super::tasks::{Finished, Running, TaskKey};
use super::upload::{local_file, mark_active, upload_image, UploadJob};

/// How long a stop waits for running builds and uploads to wind down.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// Pause before the next pass after a pass failed (ZooKeeper trouble).
const FAILED_PASS_RETRY: Duration = Duration::from_secs(2);

fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The reconcile loop; returns after shutdown once its tasks ended (bounded).
pub async fn scheduler(ctx: Arc<Ctx>) {
    let mut running = Running::new();
    let mut next = Instant::now();
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            _ = ctx.wake.notified() => {}
            _ = tokio::time::sleep_until(next.into()) => {}
            Some(done) = running.join_next(), if !running.is_empty() => settle(&ctx, done),
        }
        if ctx.cancel.is_cancelled() {
            break;
        }
        next = match schedule_pass(&ctx, &mut running).await {
            Ok(due) => due,
            Err(e) => {
                warn!("scheduler pass failed: {e}");
                Instant::now() + FAILED_PASS_RETRY
            }
        };
    }
    // Shutdown: tasks see the cancellation; give them time to record their outcome.
    if !running.drain(STOP_GRACE).await {
        warn!("builds/uploads did not stop within {STOP_GRACE:?}; aborted them");
    }
}

/// The bookkeeping of a finished task. One that returned did its own; one that
/// panicked is recorded here as a failure so that it is retried after the back-off.
fn settle(ctx: &Ctx, done: Finished) {
    let retry_at = Instant::now() + ctx.tunables.retry_delay;
    ctx.with_activity(|a| match &done.key {
        TaskKey::Build(image) => {
            if done.failure.is_some() {
                a.builds.remove(image);
                a.counters.builds_failed += 1;
                a.build_backoff.insert(image.clone(), retry_at);
            }
        }
        TaskKey::Upload(image, provider) => {
            let key = (image.clone(), provider.clone());
            a.uploads.remove(&key);
            if done.failure.is_some() {
                a.counters.uploads_failed += 1;
                a.upload_backoff.insert(key, retry_at);
            }
        }
    });
    if let Some(failure) = &done.failure {
        error!(
            "{} {failure}; retrying after {:?}",
            done.key, ctx.tunables.retry_delay
        );
    }
}

/// One pass; returns when the next timed pass is due.
async fn schedule_pass(ctx: &Arc<Ctx>, running: &mut Running) -> ZkResult<Instant> {
    let mut pass = Pass::new(ctx);
    let config = pass.config.clone();
    for di in &config.diskimages {
        pass.consider_image(di, running).await?;
    }
    Ok(pass.next)
}

/// The state of one pass: what it read once, and the earliest time a timer is due.
struct Pass<'a> {
    ctx: &'a Arc<Ctx>,
    config: Arc<Config>,
    clouds: Arc<Clouds>,
    now: Instant,
    epoch: f64,
    next: Instant,
    build_backoff: BTreeMap<String, Instant>,
    upload_backoff: BTreeMap<(String, String), Instant>,
}

impl<'a> Pass<'a> {
    fn new(ctx: &'a Arc<Ctx>) -> Pass<'a> {
        let now = Instant::now();
        let (build_backoff, upload_backoff) =
            ctx.with_activity(|a| (a.build_backoff.clone(), a.upload_backoff.clone()));
        Pass {
            ctx,
            config: ctx.config(),
            clouds: ctx.clouds(),
            now,
            epoch: now_epoch(),
            next: now + ctx.tunables.scan_interval,
            build_backoff,
            upload_backoff,
        }
    }

    /// Wants a pass at `at` (not sooner than 50 ms from now).
    fn wake_at(&mut self, at: Instant) {
        if at < self.next {
            self.next = at.max(self.now + Duration::from_millis(50));
        }
    }

    async fn consider_image(&mut self, di: &DiskImage, running: &mut Running) -> ZkResult<()> {
        let required = plan::required_formats(&self.config, di, |p| self.clouds.image_format(p));
        if required.is_empty() {
            return Ok(());
        }
        let builds: Vec<ImageBuild> = self
            .ctx
            .store
            .builds(&di.name)
            .await?
            .into_iter()
            .map(|(b, _)| b)
            .collect();
        self.consider_build(di, &builds, &required, running).await?;
        // Uploads of the newest ready build, if its files are here.
        if let Some(newest) = plan::newest(&builds, BuildState::Ready) {
            self.consider_uploads(di, newest, running).await?;
        }
        Ok(())
    }

    /// The build phase. Like Nodepool's BuildWorker, a paused image (config `pause` or
    /// the ZooKeeper flag) only stops builds; uploads stop only for a paused provider
    /// diskimage entry (UploadWorker), so a new provider still gets the newest build.
    async fn consider_build(
        &mut self,
        di: &DiskImage,
        builds: &[ImageBuild],
        required: &std::collections::BTreeSet<String>,
        running: &mut Running,
    ) -> ZkResult<()> {
        let ctx = self.ctx;
        if di.pause || ctx.store.image_paused(&di.name).await? {
            return Ok(());
        }
        if let Some(due) = plan::rebuild_due(builds, di.rebuild_age) {
            let secs = (due - self.epoch).max(0.0);
            self.wake_at(self.now + Duration::from_secs_f64(secs.min(1e9)));
        }
        if let Some(t) = self.build_backoff.get(&di.name).copied() {
            if t > self.now {
                self.wake_at(t);
                return Ok(());
            }
        }
        if running.is_building(&di.name) || running.builds() >= ctx.tunables.build_workers {
            return Ok(());
        }
        let requested = ctx.store.build_request(&di.name).await?.is_some();
        if plan::build_reason(builds, required, di.rebuild_age, requested, self.epoch).is_none() {
            return Ok(());
        }
        let (ctx2, di2, req2) = (ctx.clone(), di.clone(), required.clone());
        running.spawn(TaskKey::Build(di.name.clone()), async move {
            build_image(ctx2.clone(), di2, req2).await;
            ctx2.wake.notify_one();
        });
        Ok(())
    }

    /// The upload phase: every provider listing the image gets the newest ready build.
    async fn consider_uploads(
        &mut self,
        di: &DiskImage,
        newest: &ImageBuild,
        running: &mut Running,
    ) -> ZkResult<()> {
        let config = self.config.clone();
        for p in &config.providers {
            if let Some(job) = self.upload_job(di, p, newest, running).await? {
                let ctx2 = self.ctx.clone();
                mark_active(self.ctx, &job);
                let key = TaskKey::Upload(di.name.clone(), p.name.clone());
                running.spawn(key, async move {
                    upload_image(ctx2.clone(), job).await;
                    ctx2.wake.notify_one();
                });
            }
        }
        Ok(())
    }

    /// The upload of `newest` to `p` if it is due now.
    async fn upload_job(
        &mut self,
        di: &DiskImage,
        p: &Provider,
        newest: &ImageBuild,
        running: &Running,
    ) -> ZkResult<Option<UploadJob>> {
        let ctx = self.ctx;
        let (Some(pdi), Some(cloud)) = (p.diskimage(&di.name), self.clouds.get(&p.name)) else {
            return Ok(None);
        };
        if pdi.pause
            || running.is_uploading(&di.name, &p.name)
            || running.uploads() >= ctx.tunables.upload_workers
        {
            return Ok(None);
        }
        let key = (di.name.clone(), p.name.clone());
        if let Some(t) = self.upload_backoff.get(&key).copied() {
            if t > self.now {
                self.wake_at(t);
                return Ok(None);
            }
        }
        if !newest.formats.contains(&cloud.image_format) {
            return Ok(None);
        }
        let Some(file) = local_file(&ctx.images_dir(), newest, &cloud.image_format) else {
            return Ok(None);
        };
        let existing = ctx.store.uploads(&di.name, &newest.id, &p.name).await?;
        if existing.iter().any(|(u, _)| u.state == UploadState::Ready) {
            return Ok(None);
        }
        // Someone else uploading it right now: their lock, not our business.
        let lock = paths::provider_upload_lock(&di.name, &newest.id, &p.name);
        if existing
            .iter()
            .any(|(u, _)| u.state == UploadState::Uploading)
            && !ctx.store.lock_contenders(&lock).await?.is_empty()
        {
            return Ok(None);
        }
        Ok(Some(UploadJob {
            image: di.clone(),
            provider: p.clone(),
            cloud: cloud.clone(),
            build: newest.clone(),
            file,
        }))
    }
}
