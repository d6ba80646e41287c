//! The operator changes that both the `nodepool` CLI and `nodepool-tui` make, in one
//! place so both write exactly the same records as Python's `nodepool` does: node state
//! changes under the node lock (kazoo recipe, waited for at most
//! [`NODE_LOCK_TIMEOUT`]), re-read after locking and written guarded by the znode
//! version; builds and uploads set `deleting` (refused while building / uploading),
//! guarded by version. Pausing and build requests are plain flags on
//! [`ZkStore`] (`pause_image`, `unpause_image`, `request_build`).

use std::time::Duration;

use crate::model::{
    paths, BuildId, BuildState, ImageBuild, ImageUpload, Node, NodeId, UploadId, UploadState,
};

use super::{ZkError, ZkLock, ZkStore};

/// How long a node change waits for the node lock (Python's CLI: 5 s).
pub const NODE_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an operator change was not made.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// No such node.
    #[error("Node id {0} not found")]
    NodeNotFound(NodeId),
    /// Someone else held the node lock for the whole wait.
    #[error("Node id {id} is locked by another client (waited {secs}s)")]
    NodeLocked {
        /// The node.
        id: NodeId,
        /// How long we waited, in seconds.
        secs: u64,
    },
    /// No such build (`<image>-<build-id>`).
    #[error("Build {0} not found")]
    BuildNotFound(String),
    /// The build is still `building`.
    #[error("Cannot delete a build in progress")]
    BuildInProgress,
    /// No such upload.
    #[error("Image upload not found")]
    UploadNotFound,
    /// The upload is still `uploading`.
    #[error("Cannot delete because image upload in progress")]
    UploadInProgress,
    /// The caller's check refused the change (its text).
    #[error("{0}")]
    Refused(String),
    /// ZooKeeper failed.
    #[error(transparent)]
    Zk(#[from] ZkError),
}

/// A node locked by us, as re-read under the lock, with its znode version.
pub struct LockedNode {
    /// The lock; release it with [`ZkLock::release`].
    pub lock: ZkLock,
    /// The node as read under the lock.
    pub node: Node,
    /// Its version (for the guarded write).
    pub version: i32,
}

/// Locks node `id` (waiting at most `timeout`) and re-reads it under the lock.
pub async fn lock_node(
    store: &ZkStore,
    id: &NodeId,
    timeout: Duration,
) -> Result<LockedNode, OpError> {
    // Check first: a lock attempt on a missing node would create its znode.
    if store.get_node(id).await?.is_none() {
        return Err(OpError::NodeNotFound(id.clone()));
    }
    let mut lock = ZkLock::new(store.client(), &paths::node_lock(id), b"");
    if !lock.acquire(Some(timeout)).await? {
        return Err(OpError::NodeLocked {
            id: id.clone(),
            secs: timeout.as_secs(),
        });
    }
    match store.get_node(id).await {
        Ok(Some((node, stat))) => Ok(LockedNode {
            lock,
            node,
            version: stat.version,
        }),
        Ok(None) => {
            // Deleted while we waited: our lock attempt re-created an empty znode.
            let _ = lock.release().await;
            let _ = store.delete_node_znode(id).await;
            Err(OpError::NodeNotFound(id.clone()))
        }
        Err(e) => {
            let _ = lock.release().await;
            Err(e.into())
        }
    }
}

/// Locks node `id`, applies `change` to it as re-read under the lock (`change` may
/// refuse), writes it guarded by version, unlocks; returns the node as written.
pub async fn update_node(
    store: &ZkStore,
    id: &NodeId,
    timeout: Duration,
    change: impl FnOnce(&mut Node) -> Result<(), OpError>,
) -> Result<Node, OpError> {
    let LockedNode {
        mut lock,
        mut node,
        version,
    } = lock_node(store, id, timeout).await?;
    let result = match change(&mut node) {
        Ok(()) => store
            .store_node(&node, Some(version))
            .await
            .map(|_| ())
            .map_err(OpError::from),
        Err(e) => Err(e),
    };
    let released = lock.release().await;
    result?;
    released?;
    Ok(node)
}

/// Sets build `<image>-<id>` `deleting` (the builder then removes its uploads and
/// files); refused while it is `building`. Returns the build as written.
pub async fn mark_build_deleting(
    store: &ZkStore,
    image: &str,
    id: &BuildId,
) -> Result<ImageBuild, OpError> {
    let Some((mut build, stat)) = store.get_build(image, id).await? else {
        return Err(OpError::BuildNotFound(format!("{image}-{id}")));
    };
    if build.state == BuildState::Building {
        return Err(OpError::BuildInProgress);
    }
    build.set_state(BuildState::Deleting);
    store.store_build(&build, Some(stat.version)).await?;
    Ok(build)
}

/// Sets an upload `deleting` (the builder then removes the cloud image); refused while
/// it is `uploading`. Returns the upload as written.
pub async fn mark_upload_deleting(
    store: &ZkStore,
    image: &str,
    build_id: &BuildId,
    provider: &str,
    upload_id: &UploadId,
) -> Result<ImageUpload, OpError> {
    let Some((mut upload, stat)) = store
        .get_upload(image, build_id, provider, upload_id)
        .await?
    else {
        return Err(OpError::UploadNotFound);
    };
    if upload.state == UploadState::Uploading {
        return Err(OpError::UploadInProgress);
    }
    upload.set_state(UploadState::Deleting);
    store.store_upload(&upload, Some(stat.version)).await?;
    Ok(upload)
}
