//! One image upload with its ZooKeeper bookkeeping (docs/builder.md): take the
//! build+provider upload lock without waiting, re-check (build still ready, no ready
//! upload yet), record the upload `uploading`, create the cloud image with its name and
//! properties, stream the local file (memory does not grow with the size), wait until
//! the cloud reports it active, run the `post-upload-hook`, and record `ready` — or
//! `failed` with the cloud image removed. `image-upload-timeout` bounds the whole
//! transfer; shutdown aborts it the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nodepool_shared::cloud::{CloudDriver, ImageCreate};
use nodepool_shared::config::{DiskImage, Provider};
use nodepool_shared::model::{paths, BuildState, ImageBuild, ImageUpload, UploadState};
use nodepool_shared::stats::names;
use nodepool_shared::zk::{ZkError, ZkLock};
use tracing::{info, warn};

use super::context::{ActiveUpload, Ctx, ProviderCloud};
use super::formats;
use super::plan;

/// How often the image status is polled after the data went up.
const ACTIVE_POLL: Duration = Duration::from_millis(500);

/// Everything one upload needs, resolved by the scheduler.
#[derive(Clone)]
pub struct UploadJob {
    /// The diskimage config.
    pub image: DiskImage,
    /// The provider config.
    pub provider: Provider,
    /// Its cloud.
    pub cloud: ProviderCloud,
    /// The build to upload.
    pub build: ImageBuild,
    /// The local image file (in the provider's format).
    pub file: PathBuf,
}

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
enum UploadError {
    #[error("{0}")]
    Cloud(#[from] nodepool_shared::cloud::CloudError),
    #[error("upload did not finish within image-upload-timeout ({0:?})")]
    Timeout(Duration),
    #[error("image {id} ended in status `{status}`")]
    BadStatus { id: String, status: String },
    #[error("image {0} disappeared after the upload")]
    Vanished(String),
    #[error("post-upload-hook `{hook}` failed: {detail}")]
    Hook { hook: String, detail: String },
    #[error("builder is stopping")]
    Stopping,
    #[error("the upload lock went with the ZooKeeper session")]
    SessionLost,
}

/// Runs one upload if the lock is free and it is still needed. Returns whether an
/// upload ended `ready`. Errors are logged here.
pub async fn upload_image(ctx: Arc<Ctx>, job: UploadJob) -> bool {
    let (image, provider) = (job.image.name.clone(), job.provider.name.clone());
    let lock_dir = paths::provider_upload_lock(&image, &job.build.id, &provider);
    let mut lock = ZkLock::new(ctx.store.client(), &lock_dir, b"");
    match lock.try_acquire().await {
        Ok(true) => {}
        Ok(false) => return false,
        Err(e) => {
            warn!(%image, %provider, "cannot take the upload lock: {e}");
            return false;
        }
    }
    let result = locked_upload(&ctx, &job, &lock).await;
    if let Err(e) = lock.release().await {
        warn!(%image, %provider, "releasing the upload lock: {e}");
    }
    let ok = match result {
        Ok(Some(ok)) => ok,
        Ok(None) => return false,
        Err(e) => {
            warn!(%image, %provider, "upload bookkeeping failed: {e}");
            false
        }
    };
    ctx.with_activity(|a| {
        let key = (image.clone(), provider.clone());
        if ok {
            a.counters.uploads_ready += 1;
            a.upload_backoff.remove(&key);
        } else {
            a.counters.uploads_failed += 1;
            a.upload_backoff
                .insert(key, Instant::now() + ctx.tunables.retry_delay);
        }
    });
    ok
}

/// `Ok(None)`: nothing to do after the re-check.
///
/// The upload stops when the upload lock goes with the ZooKeeper session (the builder
/// was frozen past its session timeout): by then a cleanup may have removed its
/// `uploading` record as dead, so the image it was creating is deleted and no record is
/// written (a new upload starts on the new session).
async fn locked_upload(ctx: &Ctx, job: &UploadJob, lock: &ZkLock) -> Result<Option<bool>, ZkError> {
    let Some(mut upload) = start_record(ctx, job).await? else {
        return Ok(None);
    };
    let (image, provider) = (&job.image.name, &job.provider.name);
    let req = image_request(job, &upload);
    info!(%image, %provider, build = %job.build.id, upload = %upload.id, name = %req.name,
        file = %job.file.display(), "uploading image");
    let started = Instant::now();
    let mut created: Option<String> = None;
    let result = transfer_and_hook(ctx, job, lock, &req, &mut created).await;
    // Done, but without the lock: the record may be gone or be someone else's now.
    let result = match result {
        Ok(id) if !lock.is_held() => {
            created = Some(id);
            Err(UploadError::SessionLost)
        }
        other => other,
    };
    match result {
        Ok(id) => {
            upload.external_id = Some(id.clone());
            upload.external_name = Some(req.name);
            upload.set_state(UploadState::Ready);
            ctx.store.store_upload(&upload, None).await?;
            ctx.statsd
                .timer_and_count(&names::image_update(image, provider), started.elapsed());
            info!(%image, %provider, upload = %upload.id, external_id = %id,
                secs = started.elapsed().as_secs_f64(), "image upload ready");
            Ok(Some(true))
        }
        Err(e) => {
            warn!(%image, %provider, upload = %upload.id, "image upload failed: {e}");
            if let Some(id) = created {
                if let Err(e) = job.cloud.driver.delete_image(&id).await {
                    warn!(%provider, image_id = %id, "deleting the failed upload's image: {e}");
                }
            }
            if !lock.is_held() {
                warn!(%image, %provider, upload = %upload.id,
                    "upload lock lost with the ZooKeeper session; leaving the record to the cleanup");
                return Ok(Some(false));
            }
            upload.set_state(UploadState::Failed);
            ctx.store.store_upload(&upload, None).await?;
            Ok(Some(false))
        }
    }
}

/// The re-check under the lock (build still ready, no ready upload yet), then the new
/// `uploading` record; `None` when there is nothing to do.
async fn start_record(ctx: &Ctx, job: &UploadJob) -> Result<Option<ImageUpload>, ZkError> {
    let (image, provider) = (&job.image.name, &job.provider.name);
    let build_id = &job.build.id;
    match ctx.store.get_build(image, build_id).await? {
        Some((b, _)) if b.state == BuildState::Ready => {}
        _ => return Ok(None),
    }
    let existing = ctx.store.uploads(image, build_id, provider).await?;
    if existing.iter().any(|(u, _)| u.state == UploadState::Ready) {
        return Ok(None);
    }
    let mut upload = ImageUpload::new(image, build_id.clone(), provider);
    upload.format = Some(job.cloud.image_format.clone());
    upload.username = job.build.username.clone();
    upload.python_path = job.build.python_path.clone();
    upload.shell_type = job.build.shell_type.clone();
    let upload_id = ctx.store.create_upload(&mut upload).await?;
    ctx.with_activity(|a| {
        if let Some(u) = a.uploads.get_mut(&(image.clone(), provider.clone())) {
            u.upload_id = Some(upload_id.to_string());
        }
    });
    Ok(Some(upload))
}

/// The cloud image to create: its name from `image-name-format`, the upload format and
/// the Glance properties.
fn image_request(job: &UploadJob, upload: &ImageUpload) -> ImageCreate {
    let image = &job.image.name;
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let no_meta = serde_json::Map::new();
    let meta = job
        .provider
        .diskimage(image)
        .map(|d| &d.meta)
        .unwrap_or(&no_meta);
    ImageCreate {
        name: plan::image_name(
            &job.provider.image_name_format,
            image,
            timestamp,
            upload.id.as_str(),
        ),
        disk_format: job.cloud.image_format.clone(),
        container_format: None,
        properties: plan::image_properties(
            &job.image.metadata,
            meta,
            job.build.id.as_str(),
            upload.id.as_str(),
            &job.provider.name,
        ),
    }
}

/// The transfer bounded by `image-upload-timeout`, stopped by shutdown or the loss of
/// the lock, then the `post-upload-hook`; returns the cloud image id.
async fn transfer_and_hook(
    ctx: &Ctx,
    job: &UploadJob,
    lock: &ZkLock,
    req: &ImageCreate,
    created: &mut Option<String>,
) -> Result<String, UploadError> {
    let timeout = job.provider.image_upload_timeout;
    let transfer = transfer(job.cloud.driver.as_ref(), req, &job.file, created);
    let id = tokio::select! {
        _ = ctx.cancel.cancelled() => Err(UploadError::Stopping),
        _ = lock.lost() => Err(UploadError::SessionLost),
        r = tokio::time::timeout(timeout, transfer) => match r {
            Ok(r) => r,
            Err(_) => Err(UploadError::Timeout(timeout)),
        },
    }?;
    if let Some(hook) = &job.provider.post_upload_hook {
        run_hook(hook, &job.provider.name, &id, &job.file).await?;
    }
    Ok(id)
}

/// Creates the image, streams the data and waits for `active`; `created` gets the
/// image id as soon as it exists (so a failure can remove it).
async fn transfer(
    driver: &dyn CloudDriver,
    req: &ImageCreate,
    file: &Path,
    created: &mut Option<String>,
) -> Result<String, UploadError> {
    let image = driver.create_image(req).await?;
    *created = Some(image.id.clone());
    driver.upload_image_data(&image.id, file).await?;
    loop {
        match driver.get_image(&image.id).await? {
            None => return Err(UploadError::Vanished(image.id.clone())),
            Some(i) if i.status == "active" => return Ok(image.id),
            Some(i) if matches!(i.status.as_str(), "killed" | "deleted" | "deactivated") => {
                return Err(UploadError::BadStatus {
                    id: image.id.clone(),
                    status: i.status,
                })
            }
            Some(_) => tokio::time::sleep(ACTIVE_POLL).await,
        }
    }
}

/// `<hook> <provider> <external id> <file>`; non-zero exit is a failure.
async fn run_hook(hook: &str, provider: &str, id: &str, file: &Path) -> Result<(), UploadError> {
    let err = |detail: String| UploadError::Hook {
        hook: hook.to_string(),
        detail,
    };
    let out = tokio::process::Command::new(hook)
        .arg(provider)
        .arg(id)
        .arg(file)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| err(e.to_string()))?;
    if out.status.success() {
        info!(%hook, %provider, image_id = %id, "post-upload-hook succeeded");
        Ok(())
    } else {
        Err(err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The local file of `build` in `format`, if this builder has it.
pub fn local_file(images_dir: &Path, build: &ImageBuild, format: &str) -> Option<PathBuf> {
    let path = formats::image_path(images_dir, &build.image, build.id.as_str(), format);
    path.is_file().then_some(path)
}

/// Marks an upload as running (before its task starts).
pub fn mark_active(ctx: &Ctx, job: &UploadJob) {
    ctx.with_activity(|a| {
        a.uploads.insert(
            (job.image.name.clone(), job.provider.name.clone()),
            ActiveUpload {
                build_id: job.build.id.to_string(),
                upload_id: None,
                started: Instant::now(),
            },
        )
    });
}
