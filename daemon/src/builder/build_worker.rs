//! One image build with its ZooKeeper bookkeeping (docs/builder.md): take the
//! image build lock without waiting, re-check that the build is still needed, record
//! the build `building`, run diskimage-builder, make sure every format exists, and
//! record `ready` (clearing a manual request) or `failed` (local files removed).
//! Shutdown or a lost ZooKeeper session kills the build and records it `failed`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nodepool_shared::config::DiskImage;
use nodepool_shared::model::{paths, BuildId, BuildState, ImageBuild};
use nodepool_shared::zk::{ZkError, ZkLock};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::context::{ActiveBuild, Ctx};
use super::plan::{self, BuildReason};
use super::{disk, formats, run_build, stats, BuildResult, DibSpec};

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Builds `image` if it still needs a build once the image build lock is ours. Returns
/// whether a build ran and ended `ready`. Errors are logged here.
pub async fn build_image(ctx: Arc<Ctx>, image: DiskImage, required: BTreeSet<String>) -> bool {
    let mut lock = ZkLock::new(
        ctx.store.client(),
        &paths::image_build_lock(&image.name),
        b"",
    );
    match lock.try_acquire().await {
        Ok(true) => {}
        Ok(false) => return false,
        Err(e) => {
            warn!(image = %image.name, "cannot take the image build lock: {e}");
            return false;
        }
    }
    let result = locked_build(&ctx, &image, &required, &lock).await;
    if let Err(e) = lock.release().await {
        warn!(image = %image.name, "releasing the image build lock: {e}");
    }
    match result {
        Ok(ready) => ready,
        Err(e) => {
            error!(image = %image.name, "build bookkeeping failed: {e}");
            false
        }
    }
}

/// The re-check under the lock: paused or no longer needed → `None`.
async fn recheck(
    ctx: &Ctx,
    image: &DiskImage,
    required: &BTreeSet<String>,
) -> Result<Option<(BuildReason, Option<f64>)>, ZkError> {
    if ctx.store.image_paused(&image.name).await? {
        return Ok(None);
    }
    let builds: Vec<ImageBuild> = ctx
        .store
        .builds(&image.name)
        .await?
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    let request = ctx.store.build_request(&image.name).await?;
    Ok(plan::build_reason(
        &builds,
        required,
        image.rebuild_age,
        request.is_some(),
        now_epoch(),
    )
    .map(|r| (r, request.map(|f| f.created))))
}

async fn locked_build(
    ctx: &Ctx,
    image: &DiskImage,
    required: &BTreeSet<String>,
    lock: &ZkLock,
) -> Result<bool, ZkError> {
    let Some((reason, requested_at)) = recheck(ctx, image, required).await? else {
        return Ok(false);
    };
    let mut build = ImageBuild::new(&image.name, BuildId::from(""));
    build.builder = Some(ctx.fqdn.clone());
    build.builder_id = Some(ctx.builder_id.clone());
    build.formats = required.iter().cloned().collect();
    let build_id = ctx.store.create_build(&mut build).await?;
    let started_epoch = build.state_time;
    info!(image = %image.name, build = %build_id, %reason, "starting image build");
    ctx.with_activity(|a| {
        a.builds.insert(
            image.name.clone(),
            ActiveBuild {
                build_id: build_id.to_string(),
                reason: reason.to_string(),
                started: Instant::now(),
            },
        )
    });
    let ok = run_and_finish(ctx, image, required, lock, &mut build).await;
    ctx.with_activity(|a| {
        a.builds.remove(&image.name);
        if ok {
            a.counters.builds_ready += 1;
            a.build_backoff.remove(&image.name);
        } else {
            a.counters.builds_failed += 1;
            a.build_backoff.insert(
                image.name.clone(),
                Instant::now() + ctx.tunables.retry_delay,
            );
        }
    });
    // Record the outcome; a lost session makes this fail and cleanup finds the
    // `building` record dead later.
    ctx.store.store_build(&build, None).await?;
    if ok {
        if let Some(at) = requested_at {
            if at <= started_epoch + 1.0 {
                ctx.store.clear_build_request(&image.name).await?;
            }
        }
        info!(image = %image.name, build = %build_id, "image build ready");
    } else {
        warn!(image = %image.name, build = %build_id, "image build failed");
    }
    Ok(ok)
}

/// Runs DIB and completes the formats; sets the build's final state and fields.
async fn run_and_finish(
    ctx: &Ctx,
    image: &DiskImage,
    required: &BTreeSet<String>,
    lock: &ZkLock,
    build: &mut ImageBuild,
) -> bool {
    let images_dir = ctx.images_dir();
    let spec = dib_spec(ctx, image, required, build);
    // Stop the build on shutdown or when the lock's session goes.
    let cancel = CancellationToken::new();
    let stopper = {
        let cancel = cancel.clone();
        let shutdown = ctx.cancel.clone();
        let lost = lock.lost();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = lost => warn!("ZooKeeper session lost during the build; stopping it"),
            }
            cancel.cancel();
        })
    };
    let outcome = run_build(&spec, &cancel).await;
    stopper.abort();
    let ok = match outcome {
        Ok(outcome) => check_output(ctx, image, required, lock, build, &spec, outcome).await,
        Err(e) => {
            warn!(image = %image.name, build = %build.id, "cannot run DIB: {e}");
            false
        }
    };
    // The final record as Nodepool writes it: builder, builder_id and the diskimage's
    // username/python_path/shell_type in both outcomes, `formats` only when ready.
    build.username = Some(image.username.clone());
    build.python_path = Some(image.python_path.clone());
    build.shell_type = image.shell_type.clone();
    if ok {
        build.set_state(BuildState::Ready);
    } else {
        build.set_state(BuildState::Failed);
        build.formats.clear();
        if let Err(e) = disk::delete_build(&images_dir, &image.name, build.id.as_str()).await {
            warn!(image = %image.name, build = %build.id, "removing files of failed build: {e}");
        }
    }
    ok
}

/// The DIB run of `build` as the current configuration describes it.
fn dib_spec(
    ctx: &Ctx,
    image: &DiskImage,
    required: &BTreeSet<String>,
    build: &ImageBuild,
) -> DibSpec {
    let config = ctx.config();
    let mut spec = DibSpec::new(
        &image.name,
        build.id.as_str(),
        ctx.images_dir(),
        &config.build_log_dir,
    );
    spec.dib_cmd = image.dib_cmd.clone();
    spec.elements = image.elements.clone();
    spec.release = image.release.clone();
    spec.env_vars = image.env_vars.clone();
    spec.formats = required.clone();
    spec.elements_dir = config.elements_dir.clone();
    spec.build_log_retention = config.build_log_retention;
    spec.build_timeout = image.build_timeout;
    spec.program_dir = ctx.tunables.program_dir.clone();
    spec
}

/// After DIB ended: a successful run still holding the lock gets its missing formats
/// converted and must have every one of them. Reports the build metrics (incomplete
/// output counts as rc 1); returns whether the build is ready.
async fn check_output(
    ctx: &Ctx,
    image: &DiskImage,
    required: &BTreeSet<String>,
    lock: &ZkLock,
    build: &ImageBuild,
    spec: &DibSpec,
    outcome: super::BuildOutcome,
) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let images_dir = &spec.images_dir;
    let mut ok = false;
    let mut sizes = Default::default();
    if outcome.result == BuildResult::Succeeded && lock.is_held() {
        let id = build.id.as_str();
        let complete = formats::ensure_formats(
            images_dir,
            &image.name,
            id,
            required,
            Some(&spec.qemu_img_options),
        )
        .await
        .and_then(|_| formats::image_sizes(images_dir, &image.name, id, required));
        match complete {
            Ok(s) => {
                sizes = s;
                ok = true;
            }
            Err(e) => {
                warn!(image = %image.name, build = %build.id, "build output incomplete: {e}")
            }
        }
    } else {
        warn!(image = %image.name, build = %build.id, rc = outcome.rc,
            log = %outcome.log_path.display(), "DIB ended {:?}", outcome.result);
    }
    let mut reported = outcome;
    if !ok && reported.rc == 0 {
        reported.rc = 1;
        reported.result = BuildResult::Failed(1);
    }
    stats::report_build(&ctx.statsd, &image.name, &reported, &sizes, now);
    ok
}
