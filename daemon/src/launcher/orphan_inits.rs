//! The `init` nodes a request handler leaves behind when a create's reply is lost (a
//! connection loss during the create): the znode exists, allocated to the request, but
//! nobody locked it. Once the handler has no launch in flight, they are marked
//! `deleting` for the DeletedNodeWorker.
//!
//! Finding them must not read every node record from ZooKeeper (100,000 `getData` at a
//! large site, on a fault path that runs when the server is already struggling): the
//! node ids are listed, the ones the tree cache holds are judged from the cache, and only
//! the few it does not hold yet (created since its last event) are read.

use nodepool_shared::model::{Node, NodeId, NodeState, RequestId};
use nodepool_shared::zk::ZkResult;

use super::deleter::lock_node;
use super::runtime::LauncherContext;

/// Whether `node` is an `init` node allocated to `request`.
fn orphan_of(node: &Node, request: &RequestId) -> bool {
    node.state == NodeState::Init && node.allocated_to.as_ref() == Some(request)
}

/// The ids of the `init` nodes allocated to `request`, by the cache where it holds the
/// node and by a read where it does not.
pub async fn candidates(ctx: &LauncherContext, request: &RequestId) -> ZkResult<Vec<NodeId>> {
    let mut found = Vec::new();
    for id in ctx.store.node_ids().await? {
        match ctx.cache.node(&id) {
            Some(cached) => {
                if cached.node.state() == NodeState::Init && cached.node.is_allocated_to(request) {
                    found.push(id);
                }
            }
            None => {
                if let Some((node, _)) = ctx.store.get_node(&id).await? {
                    if orphan_of(&node, request) {
                        found.push(id);
                    }
                }
            }
        }
    }
    Ok(found)
}

/// Locks each candidate nobody holds and, if the fresh record is still an `init` node
/// of `request`, marks it `deleting`. Returns how many were marked.
pub async fn sweep(ctx: &LauncherContext, request: &RequestId) -> ZkResult<usize> {
    let mut marked = 0;
    for id in candidates(ctx, request).await? {
        let Some(mut locked) = lock_node(ctx, &id).await? else {
            continue;
        };
        if orphan_of(&locked.node, request) {
            tracing::info!(node = %id, request = %request,
                "deleting init node left by an interrupted create");
            locked.node.set_state(NodeState::Deleting);
            match ctx
                .store
                .store_node(&locked.node, Some(locked.version))
                .await
            {
                Ok(_) => marked += 1,
                Err(e) => {
                    tracing::warn!(node = %id, error = %e, "cannot mark orphan init node deleting")
                }
            }
        }
        locked.unlock().await;
    }
    Ok(marked)
}
