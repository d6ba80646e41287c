//! The periodic cleanup pass (docs/builder.md): rotate builds and uploads
//! (two newest ready builds per image, two newest ready uploads per image and
//! provider), remove uploads of images a provider no longer lists, dead `building` /
//! `uploading` records (their lock is free), `deleting` and `failed` records with their
//! cloud images, records whose cloud image vanished, and local files of builds that are
//! gone or being deleted (plus `delete-after-upload`). Emits the builder gauges.
//!
//! Unlike Nodepool, a record without `external_id` (an upload that died before it
//! could record its image: builder killed, session lost) takes with it the cloud images
//! that carry its `nodepool_build_id`/`nodepool_upload_id`/`nodepool_provider_name`
//! properties, so a half-uploaded (`queued`/`saving`) image is not left behind for
//! `alien-image-list`.
//!
//! Every removal takes the object's lock without waiting and skips it when busy, so
//! several builders can clean up at the same time; every step is idempotent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use nodepool_shared::cloud::Image;
use nodepool_shared::config::Config;
use nodepool_shared::model::{
    paths, BuildId, BuildState, ImageBuild, ImageUpload, UploadId, UploadState,
};
use nodepool_shared::stats::names;
use nodepool_shared::zk::{ZkError, ZkLock, ZkResult};
use tracing::{debug, info, warn};

use super::context::{Clouds, Ctx, ProviderCloud};
use super::{disk, formats, plan};

/// One cleanup pass over every image in ZooKeeper and the local images dir.
pub async fn cleanup_pass(ctx: &Ctx) -> ZkResult<()> {
    let config = ctx.config();
    let clouds = ctx.clouds();
    // Which cloud images exist, per provider (for "vanished" records and the images of
    // uploads that died unrecorded); unknown on error.
    let mut cloud_images: BTreeMap<String, CloudListing> = BTreeMap::new();
    for p in &config.providers {
        if let Some(c) = clouds.get(&p.name) {
            match c.driver.list_images().await {
                Ok(list) => {
                    cloud_images.insert(p.name.clone(), CloudListing::new(&p.name, list));
                }
                Err(e) => debug!(provider = %p.name, "cannot list images for cleanup: {e}"),
            }
        }
    }
    for image in ctx.store.image_names().await? {
        if ctx.cancel.is_cancelled() {
            return Ok(());
        }
        if let Err(e) = cleanup_image(ctx, &config, &clouds, &cloud_images, &image).await {
            warn!(%image, "cleanup of image failed: {e}");
        }
    }
    cleanup_local_files(ctx).await?;
    emit_gauges(ctx, &config).await?;
    ctx.with_activity(|a| a.counters.cleanup_passes += 1);
    Ok(())
}

/// One provider's cloud images, as listed at the start of a cleanup pass.
#[derive(Default)]
struct CloudListing {
    /// Every image id.
    ids: BTreeSet<String>,
    /// Ids of the images carrying Nodepool upload properties of this provider, by
    /// (build id, upload id).
    by_upload: BTreeMap<(String, String), Vec<String>>,
}

impl CloudListing {
    fn new(provider: &str, images: Vec<Image>) -> CloudListing {
        let mut l = CloudListing::default();
        for i in images {
            let keys = (
                i.property("nodepool_provider_name"),
                i.property("nodepool_build_id"),
                i.property("nodepool_upload_id"),
            );
            if let (Some(p), Some(b), Some(u)) = keys {
                if p == provider {
                    l.by_upload.entry((b, u)).or_default().push(i.id.clone());
                }
            }
            l.ids.insert(i.id);
        }
        l
    }

    /// The images of upload `u` other than its recorded `external_id`.
    fn strays(&self, u: &ImageUpload) -> Vec<String> {
        let key = (u.build_id.to_string(), u.id.to_string());
        self.by_upload
            .get(&key)
            .map(|ids| {
                ids.iter()
                    .filter(|id| u.external_id.as_deref() != Some(id.as_str()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn has_contenders(ctx: &Ctx, dir: &str) -> ZkResult<bool> {
    Ok(!ctx.store.lock_contenders(dir).await?.is_empty())
}

/// One image: its uploads first ([`ImagePass::cleanup_uploads`]), then its builds
/// ([`ImagePass::cleanup_builds`]) knowing which uploads are left.
async fn cleanup_image(
    ctx: &Ctx,
    config: &Config,
    clouds: &Clouds,
    cloud_images: &BTreeMap<String, CloudListing>,
    image: &str,
) -> ZkResult<()> {
    let builds: Vec<ImageBuild> = ctx
        .store
        .builds(image)
        .await?
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    let mut by_provider: BTreeMap<String, Vec<(ImageUpload, BuildState)>> = BTreeMap::new();
    for b in &builds {
        for p in ctx.store.build_providers(image, &b.id).await? {
            for (u, _) in ctx.store.uploads(image, &b.id, &p).await? {
                by_provider.entry(p.clone()).or_default().push((u, b.state));
            }
        }
    }
    let pass = ImagePass {
        ctx,
        config,
        clouds,
        image,
    };
    let left = pass.cleanup_uploads(cloud_images, &by_provider).await?;
    pass.cleanup_builds(&builds, &left).await
}

/// The uploads of one build still there after the upload phase of a pass.
#[derive(Clone, Copy, Debug, Default)]
struct Left {
    /// All of them.
    total: usize,
    /// Those not (yet) `deleting`.
    not_deleting: usize,
}

impl Left {
    fn add(&mut self, state: UploadState) {
        self.total += 1;
        if state != UploadState::Deleting {
            self.not_deleting += 1;
        }
    }
}

/// What [`delete_upload`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removal {
    /// Record and cloud image gone.
    Deleted,
    /// Left as it was (lock busy, or no image listing this pass).
    Untouched,
    /// Marked `deleting`, but its cloud image could not be deleted yet.
    Deleting,
}

/// One image's cleanup within a pass.
struct ImagePass<'a> {
    ctx: &'a Ctx,
    config: &'a Config,
    clouds: &'a Clouds,
    image: &'a str,
}

impl ImagePass<'_> {
    /// Deletes the uploads that are neither kept nor in progress; returns what is left
    /// per build id.
    async fn cleanup_uploads(
        &self,
        cloud_images: &BTreeMap<String, CloudListing>,
        by_provider: &BTreeMap<String, Vec<(ImageUpload, BuildState)>>,
    ) -> ZkResult<BTreeMap<String, Left>> {
        let (ctx, image) = (self.ctx, self.image);
        let in_config = self.config.diskimage(image).is_some();
        let mut left: BTreeMap<String, Left> = BTreeMap::new();
        for (provider, uploads) in by_provider {
            let configured = self.config.provider(provider);
            let (Some(pconf), Some(cloud)) = (configured, self.clouds.get(provider)) else {
                // Unknown provider (or no cloud access): never touched, like Nodepool.
                for (u, _) in uploads {
                    left.entry(u.build_id.to_string()).or_default().add(u.state);
                }
                continue;
            };
            let lists = pconf.diskimage(image).is_some() && in_config;
            let recent = plan::recent_uploads(uploads, lists);
            let listing = cloud_images.get(provider);
            for (u, _) in uploads {
                let key = (u.build_id.clone(), u.id.clone());
                let state = if self.keep_upload(cloud, listing, u, &recent, &key).await? {
                    u.state
                } else {
                    match delete_upload(ctx, cloud.driver.as_ref(), listing, u).await? {
                        Removal::Deleted => continue,
                        Removal::Untouched => u.state,
                        Removal::Deleting => UploadState::Deleting,
                    }
                };
                left.entry(u.build_id.to_string()).or_default().add(state);
            }
        }
        Ok(left)
    }

    /// Whether upload `u` stays: in progress (its lock held), or among the recent ready
    /// ones with its cloud image still there.
    async fn keep_upload(
        &self,
        cloud: &ProviderCloud,
        listing: Option<&CloudListing>,
        u: &ImageUpload,
        recent: &BTreeSet<(BuildId, UploadId)>,
        key: &(BuildId, UploadId),
    ) -> ZkResult<bool> {
        let (ctx, image) = (self.ctx, self.image);
        Ok(match u.state {
            UploadState::Uploading => {
                has_contenders(
                    ctx,
                    &paths::provider_upload_lock(image, &u.build_id, &u.provider),
                )
                .await?
            }
            UploadState::Ready if !recent.contains(key) => false,
            UploadState::Ready => match (listing, &u.external_id) {
                // Missing from the listing taken at the start of the pass: confirm
                // (the upload may have become ready after that listing).
                (Some(listing), Some(id)) if !listing.ids.contains(id) => {
                    let vanished = image_gone(cloud.driver.as_ref(), id).await;
                    if vanished {
                        info!(%image, provider = %u.provider, upload = %u.id,
                            "cloud image {id} vanished; removing the record");
                    }
                    !vanished
                }
                _ => true,
            },
            UploadState::Deleting | UploadState::Failed => false,
        })
    }

    /// Deletes the builds that are neither kept nor running once no upload is left;
    /// a build whose remaining uploads are all `deleting` is marked `deleting` itself,
    /// so its local files go at once instead of waiting for slow clouds (as Nodepool).
    /// Kept ready builds get `delete-after-upload`.
    async fn cleanup_builds(
        &self,
        builds: &[ImageBuild],
        left: &BTreeMap<String, Left>,
    ) -> ZkResult<()> {
        let (ctx, image) = (self.ctx, self.image);
        let diskimage = self.config.diskimage(image);
        let kept = plan::kept_builds(builds, diskimage.is_some());
        let build_lock_busy = has_contenders(ctx, &paths::image_build_lock(image)).await?;
        for b in builds {
            let keep = kept.contains(&b.id) || (b.state == BuildState::Building && build_lock_busy);
            if keep {
                if let Some(di) = diskimage.filter(|d| d.delete_after_upload) {
                    if b.state == BuildState::Ready {
                        delete_after_upload(ctx, self.config, self.clouds, b, &di.keep_formats)
                            .await?;
                    }
                }
                continue;
            }
            let left = left.get(b.id.as_str()).copied().unwrap_or_default();
            if left.total == 0 {
                delete_build(ctx, image, b).await?;
            } else if left.not_deleting == 0 && b.state != BuildState::Deleting {
                mark_build_deleting(ctx, image, b).await?;
            }
        }
        Ok(())
    }
}

/// Marks build `b` `deleting` under its lock (skipped when busy or changed meanwhile);
/// the local-files step of the pass then removes its files.
async fn mark_build_deleting(ctx: &Ctx, image: &str, b: &ImageBuild) -> ZkResult<()> {
    let mut lock = ZkLock::new(ctx.store.client(), &paths::build_lock(image, &b.id), b"");
    if !lock.try_acquire().await? {
        return Ok(());
    }
    let marked = async {
        let Some((mut cur, stat)) = ctx.store.get_build(image, &b.id).await? else {
            return Ok(());
        };
        if cur.state != b.state {
            return Ok(());
        }
        cur.set_state(BuildState::Deleting);
        ctx.store.store_build(&cur, Some(stat.version)).await?;
        info!(%image, build = %b.id, "every upload of the build is being deleted; \
            marked the build deleting so its local files go first");
        Ok::<(), ZkError>(())
    }
    .await;
    lock.release().await?;
    marked
}

/// Deletes build `b` (record and local files) under its lock, unless it became ready
/// or is being built meanwhile.
async fn delete_build(ctx: &Ctx, image: &str, b: &ImageBuild) -> ZkResult<()> {
    let mut lock = ZkLock::new(ctx.store.client(), &paths::build_lock(image, &b.id), b"");
    if !lock.try_acquire().await? {
        return Ok(());
    }
    // Re-read under the lock: a build that became ready or is running stays.
    let still_gone = match ctx.store.get_build(image, &b.id).await? {
        None => true,
        Some((cur, _)) => {
            cur.state == b.state
                && !(cur.state == BuildState::Building
                    && has_contenders(ctx, &paths::image_build_lock(image)).await?)
        }
    };
    if !still_gone {
        return lock.release().await;
    }
    if let Err(e) = disk::delete_build(&ctx.images_dir(), image, b.id.as_str()).await {
        warn!(%image, build = %b.id, "removing local files: {e}");
    }
    ctx.store.delete_build(image, &b.id).await?;
    ctx.with_activity(|a| a.counters.builds_deleted += 1);
    info!(%image, build = %b.id, state = %b.state, "deleted image build");
    // The lock dir went with the build.
    let _ = lock.release().await;
    Ok(())
}

/// Whether cloud image `id` is really gone (absent, or in a terminal deleted state);
/// an error answers "no" (checked again next pass).
async fn image_gone(driver: &dyn nodepool_shared::cloud::CloudDriver, id: &str) -> bool {
    match driver.get_image(id).await {
        Ok(None) => true,
        Ok(Some(i)) => matches!(i.status.as_str(), "deleted" | "killed"),
        Err(e) => {
            debug!(image_id = %id, "cannot check whether the image exists: {e}");
            false
        }
    }
}

/// Removes one upload: under its lock, mark `deleting`, delete the cloud image (and any
/// other image carrying this upload's properties), delete the record. A record without
/// `external_id` waits for a pass with a cloud listing, so an image it may have left
/// behind is found.
async fn delete_upload(
    ctx: &Ctx,
    driver: &dyn nodepool_shared::cloud::CloudDriver,
    listing: Option<&CloudListing>,
    u: &ImageUpload,
) -> ZkResult<Removal> {
    if u.external_id.is_none() && listing.is_none() {
        debug!(image = %u.image, provider = %u.provider, upload = %u.id,
            "no cloud image listing this pass; removing the upload record later");
        return Ok(Removal::Untouched);
    }
    let lock_dir = paths::upload_lock(&u.image, &u.build_id, &u.provider, &u.id);
    let mut lock = ZkLock::new(ctx.store.client(), &lock_dir, b"");
    if !lock.try_acquire().await? {
        return Ok(Removal::Untouched);
    }
    let result = locked_delete_upload(ctx, driver, listing, u).await;
    match &result {
        // The lock dir went with the record.
        Ok(Removal::Deleted) => {
            let _ = lock.release().await;
        }
        _ => {
            lock.release().await?;
        }
    }
    result
}

async fn locked_delete_upload(
    ctx: &Ctx,
    driver: &dyn nodepool_shared::cloud::CloudDriver,
    listing: Option<&CloudListing>,
    u: &ImageUpload,
) -> ZkResult<Removal> {
    let Some((mut cur, stat)) = ctx
        .store
        .get_upload(&u.image, &u.build_id, &u.provider, &u.id)
        .await?
    else {
        return Ok(Removal::Deleted);
    };
    if !decision_holds(u.state, cur.state) {
        debug!(image = %u.image, provider = %u.provider, upload = %u.id, was = %u.state,
            now = %cur.state, "upload changed since the pass read it; left for the next pass");
        return Ok(Removal::Untouched);
    }
    if cur.state != UploadState::Deleting {
        cur.set_state(UploadState::Deleting);
        ctx.store.store_upload(&cur, Some(stat.version)).await?;
    }
    let strays = listing.map(|l| l.strays(&cur)).unwrap_or_default();
    for id in cur.external_id.iter().chain(strays.iter()) {
        if let Err(e) = driver.delete_image(id).await {
            warn!(image = %u.image, provider = %u.provider, upload = %u.id,
                "deleting cloud image {id}: {e}; will retry");
            return Ok(Removal::Deleting);
        }
    }
    if !strays.is_empty() {
        info!(image = %u.image, provider = %u.provider, upload = %u.id, state = %u.state,
            "deleted cloud images {strays:?} left by an unfinished upload");
    }
    ctx.store
        .delete_upload(&u.image, &u.build_id, &u.provider, &u.id)
        .await?;
    info!(image = %u.image, build = %u.build_id, provider = %u.provider, upload = %u.id,
        external_id = ?cur.external_id, "deleted image upload");
    ctx.with_activity(|a| a.counters.uploads_deleted += 1);
    Ok(Removal::Deleted)
}

/// Whether the decision to delete an upload, taken on the record as the pass read it
/// (state `decided`), still holds for the record read again under its lock (`fresh`).
///
/// The upload lock the uploader holds is not the per-upload lock the deletion takes,
/// and the pass reads every record before it looks at their locks: an `uploading`
/// record read while its upload ran, whose upload lock was released (upload finished)
/// by the time the pass looked, was taken for dead, and the deletion then removed the
/// just-ready upload and its cloud image (the builder uploaded again: seen once in
/// `builder_faults::kill9_during_upload_then_restart`). A record that changed state
/// meanwhile is left to the next pass, which decides on what it is now.
fn decision_holds(decided: UploadState, fresh: UploadState) -> bool {
    fresh == decided || fresh == UploadState::Deleting
}

/// `delete-after-upload`: once every provider listing the image has a ready upload of
/// this build, remove its local image files except `keep-formats`.
async fn delete_after_upload(
    ctx: &Ctx,
    config: &Config,
    clouds: &Clouds,
    b: &ImageBuild,
    keep_formats: &[String],
) -> ZkResult<()> {
    for p in &config.providers {
        if p.diskimage(&b.image).is_none() || clouds.get(&p.name).is_none() {
            continue;
        }
        let uploads = ctx.store.uploads(&b.image, &b.id, &p.name).await?;
        if !uploads.iter().any(|(u, _)| u.state == UploadState::Ready) {
            return Ok(());
        }
    }
    let images_dir = ctx.images_dir();
    let local = match disk::local_build(&images_dir, &b.image, b.id.as_str()).await {
        Ok(Some(l)) => l,
        _ => return Ok(()),
    };
    let keep: BTreeSet<String> = keep_formats
        .iter()
        .map(|f| formats::extension(f).to_string())
        .collect();
    match disk::delete_formats(&images_dir, &b.image, b.id.as_str(), local.formats(), keep).await {
        Ok(removed) if !removed.is_empty() => {
            info!(image = %b.image, build = %b.id, "delete-after-upload removed {} files", removed.len())
        }
        Ok(_) => {}
        Err(e) => warn!(image = %b.image, build = %b.id, "delete-after-upload: {e}"),
    }
    Ok(())
}

/// Removes local files of builds whose record is gone or `deleting`.
async fn cleanup_local_files(ctx: &Ctx) -> ZkResult<()> {
    let images_dir = ctx.images_dir();
    let local = match disk::list_local_builds(&images_dir).await {
        Ok(l) => l,
        Err(e) => {
            warn!("cannot list {}: {e}", images_dir.display());
            return Ok(());
        }
    };
    for l in local {
        let id = l.build_id.as_str().into();
        let gone = match ctx.store.get_build(&l.image, &id).await? {
            None => true,
            Some((b, _)) => b.state == BuildState::Deleting,
        };
        if gone {
            match disk::delete_build(&images_dir, &l.image, &l.build_id).await {
                Ok(removed) => info!(image = %l.image, build = %l.build_id,
                    "removed {} local files of a deleted build", removed.len()),
                Err(e) => warn!(image = %l.image, build = %l.build_id, "removing local files: {e}"),
            }
        }
    }
    Ok(())
}

/// The builder gauges (docs/metrics.md): build requests, and per image build/upload state.
async fn emit_gauges(ctx: &Ctx, config: &Config) -> ZkResult<()> {
    use names::builder_state::{BUILDING, IDLE, PAUSED, UPLOADING};
    let mut total = 0;
    let (building, uploading): (BTreeSet<String>, BTreeSet<(String, String)>) =
        ctx.with_activity(|a| {
            (
                a.builds.keys().cloned().collect(),
                a.uploads.keys().cloned().collect(),
            )
        });
    for di in &config.diskimages {
        let requested = ctx.store.build_request(&di.name).await?.is_some();
        total += u64::from(requested);
        ctx.statsd
            .gauge(&names::image_build_requests(&di.name), u64::from(requested));
        let paused = di.pause || ctx.store.image_paused(&di.name).await?;
        let state = if paused {
            PAUSED
        } else if building.contains(&di.name) {
            BUILDING
        } else {
            IDLE
        };
        ctx.statsd
            .gauge(&names::builder_build_state(&ctx.fqdn, &di.name), state);
        for p in &config.providers {
            let Some(pdi) = p.diskimage(&di.name) else {
                continue;
            };
            let state = if pdi.pause {
                PAUSED
            } else if uploading.contains(&(di.name.clone(), p.name.clone())) {
                UPLOADING
            } else {
                IDLE
            };
            ctx.statsd.gauge(
                &names::builder_upload_state(&ctx.fqdn, &di.name, &p.name),
                state,
            );
        }
    }
    ctx.statsd.gauge(names::IMAGE_BUILD_REQUESTS, total);
    Ok(())
}

/// Runs cleanup passes every `cleanup-interval` until shutdown.
pub async fn cleanup_loop(ctx: Arc<Ctx>) {
    loop {
        if let Err(e) = cleanup_pass(&ctx).await {
            warn!("cleanup pass failed: {e}");
        }
        ctx.statsd.flush();
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            _ = tokio::time::sleep(ctx.tunables.cleanup_interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `uploading` record read while its upload ran and found `ready` under the lock
    /// is not deleted; the decision holds for the state it was taken on, and for a record
    /// already `deleting`.
    #[test]
    fn a_deletion_decided_on_a_stale_state_is_dropped() {
        use UploadState::*;
        assert!(!decision_holds(Uploading, Ready));
        assert!(!decision_holds(Uploading, Failed));
        assert!(!decision_holds(Failed, Ready));
        for s in [Uploading, Ready, Failed, Deleting] {
            assert!(decision_holds(s, s));
            assert!(decision_holds(s, Deleting));
        }
    }
}
