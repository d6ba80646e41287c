//! Reads for the listings, pipelined: many ZooKeeper requests are in flight at once on
//! the one connection (a sequential read costs one round trip per znode). The node
//! listing uses batched multi-reads instead ([`super::bulk`]).
//!
//! "Locked" is computed from the node's lock contenders without creating the lock
//! directory (Python's `contenders()` runs `ensure_path`, so its `list` writes; we
//! deliberately keep listing read-only).

use std::collections::HashSet;

use futures::stream::{self, StreamExt};
use nodepool_shared::model::{ImageBuild, ImageUpload, Node, NodeId};
use nodepool_shared::zk::{ZkResult, ZkStore};

/// Image-tree reads kept in flight.
const IMAGE_WINDOW: usize = 64;

/// One node with its locked flag; `None` if it does not exist.
pub async fn node_with_lock(store: &ZkStore, id: &NodeId) -> ZkResult<Option<(Node, bool)>> {
    let Some((node, _)) = store.get_node(id).await? else {
        return Ok(None);
    };
    let locked = !store.node_lock_contenders(id).await?.is_empty();
    Ok(Some((node, locked)))
}

/// All image records: image names, builds, uploads and paused images.
#[derive(Debug, Default)]
pub struct ImageTree {
    /// Names of images with a znode, sorted.
    pub images: Vec<String>,
    /// Every build.
    pub builds: Vec<ImageBuild>,
    /// Every upload.
    pub uploads: Vec<ImageUpload>,
    /// Images whose `pause` flag exists.
    pub paused: HashSet<String>,
}

/// Reads every image, build and upload record (and the pause flags).
pub async fn image_tree(store: &ZkStore) -> ZkResult<ImageTree> {
    let images = store.image_names().await?;
    let per_image = images.iter().map(|image| async move {
        let (paused, builds) = futures::join!(store.image_paused(image), store.builds(image));
        (image.clone(), paused, builds)
    });
    let results: Vec<_> = stream::iter(per_image)
        .buffered(IMAGE_WINDOW)
        .collect()
        .await;
    let mut tree = ImageTree {
        images: images.clone(),
        ..ImageTree::default()
    };
    for (image, paused, builds) in results {
        if paused? {
            tree.paused.insert(image);
        }
        tree.builds.extend(builds?.into_iter().map(|(b, _)| b));
    }
    // Uploads: (build, provider) pairs, then the uploads of each.
    let provider_reads = tree.builds.iter().map(|b| async move {
        let providers = store.build_providers(&b.image, &b.id).await;
        (b, providers)
    });
    let providers: Vec<_> = stream::iter(provider_reads)
        .buffered(IMAGE_WINDOW)
        .collect()
        .await;
    let mut pairs = Vec::new();
    for (b, ps) in providers {
        for p in ps? {
            pairs.push((b.image.clone(), b.id.clone(), p));
        }
    }
    let upload_reads = pairs
        .iter()
        .map(|(image, build, provider)| async move { store.uploads(image, build, provider).await });
    let uploads: Vec<_> = stream::iter(upload_reads)
        .buffered(IMAGE_WINDOW)
        .collect()
        .await;
    for u in uploads {
        tree.uploads.extend(u?.into_iter().map(|(u, _)| u));
    }
    Ok(tree)
}
