//! Bulk reads for the listings, pipelined: many ZooKeeper requests are in flight at once
//! on the one connection, which is what makes `nodepool list` fast with thousands of
//! nodes (a sequential read costs one round trip per znode).
//!
//! "Locked" is computed from the node's lock contenders without creating the lock
//! directory (Python's `contenders()` runs `ensure_path`, so its `list` writes; we
//! deliberately keep listing read-only).

use std::collections::HashSet;

use futures::stream::{self, StreamExt};
use nodepool_shared::model::{paths, ImageBuild, ImageUpload, Node, NodeId};
use nodepool_shared::zk::{is_lock_contender, ZkResult, ZkStore};
use tracing::warn;

/// Requests kept in flight by the node reader (two per node).
const NODE_WINDOW: usize = 2048;
/// Image-tree reads kept in flight.
const IMAGE_WINDOW: usize = 64;

/// Every node with its "locked" flag (some lock contender exists), sorted by id. Empty
/// and corrupt node znodes are skipped (corrupt ones with a warning).
pub async fn nodes_with_locks(store: &ZkStore) -> ZkResult<Vec<(Node, bool)>> {
    let client = store.client();
    let mut ids = client.get_children(paths::NODES).await?.unwrap_or_default();
    ids.sort();
    let reads = ids.into_iter().map(|id| async move {
        let id = NodeId::from(id);
        let path = paths::node(&id);
        let lock = paths::node_lock(&id);
        let (data, children) = futures::join!(client.get(&path), client.get_children(&lock));
        (id, path, data, children)
    });
    let results: Vec<_> = stream::iter(reads).buffered(NODE_WINDOW).collect().await;
    let mut out = Vec::with_capacity(results.len());
    for (id, path, data, children) in results {
        let Some((data, _)) = data? else { continue };
        let locked = children?
            .unwrap_or_default()
            .iter()
            .any(|c| is_lock_contender(c));
        match Node::from_json(&id, &data) {
            Ok(Some(node)) => out.push((node, locked)),
            Ok(None) => {}
            Err(e) => warn!(path = %path, "skipping corrupt node record: {e}"),
        }
    }
    Ok(out)
}

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
