//! The image commands: the listings (`dib-image-list`, `image-list`, `image-status`,
//! `alien-image-list`) and the flags and state changes the builder acts on
//! (`image-build`, `image-pause`/`image-unpause`, `dib-image-delete`, `image-delete`).
//! Deletes only mark records `deleting` ([`nodepool_shared::zk::ops`], shared with
//! `nodepool-tui`); the builder's cleanup does the work.

use std::collections::HashSet;

use color_eyre::eyre::{eyre, Result, WrapErr};
use futures::stream::{self, StreamExt};
use nodepool_shared::listing::{
    alien_image_list, dib_image_list, image_list, image_status, AlienImage, BuildRequest,
    BuildRequestState, ImageStatusEntry, OutputFormat,
};
use nodepool_shared::model::{now_epoch, paths, BuildId, UploadId, UploadState};
use nodepool_shared::zk::{ops, ZkResult, ZkStore};
use tracing::warn;

use super::context::{print_out, Session};
use super::nodes::driver_for;
use super::read::image_tree;

/// `nodepool dib-image-list`.
pub async fn dib_list(s: &Session, format: OutputFormat) -> Result<()> {
    let tree = image_tree(&s.store).await?;
    let table = dib_image_list(tree.builds.iter(), &tree.paused, now_epoch());
    print_out(&table.render(format, None))
}

/// `nodepool image-list`.
pub async fn upload_list(s: &Session, format: OutputFormat) -> Result<()> {
    let tree = image_tree(&s.store).await?;
    let table = image_list(tree.uploads.iter(), now_epoch());
    print_out(&table.render(format, None))
}

/// The state of an image's manual build request, as Nodepool judges it: `building` if the
/// image build lock has children and the newest build znode was created after the lock
/// dir (a builder took the lock and started); else `pending`.
async fn build_request(store: &ZkStore, image: &str) -> ZkResult<Option<BuildRequest>> {
    let Some(times) = store.build_request(image).await? else {
        return Ok(None);
    };
    let client = store.client();
    let mut state = BuildRequestState::Pending;
    if let Some(lock) = client.exists(&paths::image_build_lock(image)).await? {
        if lock.num_children > 0 {
            let mut newest: Option<i64> = None;
            for id in store.build_ids(image).await? {
                if let Some(st) = client.exists(&paths::build(image, &id)).await? {
                    newest = Some(newest.map_or(st.ctime, |n| n.max(st.ctime)));
                }
            }
            if newest.is_some_and(|c| c >= lock.ctime) {
                state = BuildRequestState::Building;
            }
        }
    }
    Ok(Some(BuildRequest {
        state,
        state_time: times.created,
    }))
}

/// `nodepool image-status`.
pub async fn status(s: &Session, format: OutputFormat) -> Result<()> {
    let store = &s.store;
    let images = store.image_names().await?;
    let reads = images.iter().map(|image| async move {
        let (paused, req) = futures::join!(store.image_paused(image), build_request(store, image));
        Ok::<_, nodepool_shared::zk::ZkError>(ImageStatusEntry {
            image: image.clone(),
            paused: paused?,
            build_request: req?,
        })
    });
    let entries: Vec<_> = stream::iter(reads).buffered(64).collect().await;
    let entries = entries.into_iter().collect::<Result<Vec<_>, _>>()?;
    print_out(&image_status(&entries, now_epoch()).render(format, None))
}

/// `nodepool image-build IMAGE`.
pub async fn build(s: &Session, image: &str) -> Result<()> {
    let Some(d) = s.config.diskimage(image) else {
        return Err(eyre!(
            "Trying to build a non disk-image-builder image: {image} (no such diskimage in the config)"
        ));
    };
    if d.pause {
        return Err(eyre!(
            "Skipping build request for image {image}; paused in the config"
        ));
    }
    s.store.request_build(image).await?;
    Ok(())
}

/// `nodepool image-pause IMAGE`.
pub async fn pause(s: &Session, image: &str) -> Result<()> {
    s.store.pause_image(image).await?;
    Ok(())
}

/// `nodepool image-unpause IMAGE`.
pub async fn unpause(s: &Session, image: &str) -> Result<()> {
    s.store.unpause_image(image).await?;
    Ok(())
}

/// `nodepool dib-image-delete <image>-<build-id>`.
pub async fn dib_delete(s: &Session, id: &str) -> Result<()> {
    let Some((image, build_id)) = id.rsplit_once('-') else {
        return Err(eyre!(
            "Build {id} not found (expected <image>-<build-id>, as dib-image-list shows)"
        ));
    };
    match ops::mark_build_deleting(&s.store, image, &BuildId::from(build_id)).await {
        Ok(_) => Ok(()),
        Err(e @ (ops::OpError::BuildNotFound(_) | ops::OpError::BuildInProgress)) => Err(e.into()),
        Err(e) => Err(e).wrap_err_with(|| format!("cannot mark build {id} deleting")),
    }
}

/// `nodepool image-delete --provider --image --build-id --upload-id`.
pub async fn upload_delete(
    s: &Session,
    provider: &str,
    image: &str,
    build_id: &str,
    upload_id: &str,
) -> Result<()> {
    let build_id = BuildId::from(build_id);
    let upload_id = UploadId::from(upload_id);
    match ops::mark_upload_deleting(&s.store, image, &build_id, provider, &upload_id).await {
        Ok(_) => Ok(()),
        Err(e @ (ops::OpError::UploadNotFound | ops::OpError::UploadInProgress)) => Err(e.into()),
        Err(e) => Err(e).wrap_err("cannot mark the upload deleting"),
    }
}

/// `nodepool alien-image-list [PROVIDER]`: for each provider of the config (or the one
/// named), the cloud images with a `nodepool_build_id` property whose id is not the
/// `external_id` of a ready upload of that provider. A provider whose images cannot be
/// listed is skipped with a warning, as in Nodepool.
pub async fn alien_list(s: &Session, provider: Option<&str>, format: OutputFormat) -> Result<()> {
    if let Some(p) = provider {
        if s.config.provider(p).is_none() {
            return Err(eyre!("Provider {p} is not defined in the config"));
        }
    }
    let tree = image_tree(&s.store).await?;
    let mut aliens = Vec::new();
    for p in &s.config.providers {
        if provider.is_some_and(|name| name != p.name) {
            continue;
        }
        let driver = match driver_for(&s.config, &p.name) {
            Ok(d) => d,
            Err(e) => {
                warn!("Exception listing alien images for {}: {e:#}", p.name);
                continue;
            }
        };
        let images = match driver.list_images_with_property("nodepool_build_id").await {
            Ok(i) => i,
            Err(e) => {
                warn!("Exception listing alien images for {}: {e}", p.name);
                continue;
            }
        };
        let diskimages: HashSet<&str> = p.diskimages.iter().map(|d| d.name.as_str()).collect();
        let known: HashSet<&str> = tree
            .uploads
            .iter()
            .filter(|u| {
                u.provider == p.name
                    && u.state == UploadState::Ready
                    && diskimages.contains(u.image.as_str())
            })
            .filter_map(|u| u.external_id.as_deref())
            .collect();
        for i in images {
            if !known.contains(i.id.as_str()) {
                aliens.push(AlienImage {
                    provider: p.name.clone(),
                    name: i.name.clone(),
                    id: i.id.clone(),
                });
            }
        }
    }
    print_out(&alien_image_list(&aliens).render(format, None))
}
