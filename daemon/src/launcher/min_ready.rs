//! min-ready: keep `min-ready` ready, unallocated nodes of each label by
//! submitting Nodepool's own single-label requests (`900-…`, ephemeral, requestor
//! `NodePool:min-ready`, `reuse` false), and clean up those requests once they are done
//! (fulfilled: free the nodes for anybody; failed: just delete).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use nodepool_shared::config::{Config, PoolLabelImage};
use nodepool_shared::model::{paths, NodeRequest, NodeState, RequestId, RequestState};
use nodepool_shared::zk::ZkLock;

use super::handler::MIN_READY_REQUESTOR;
use super::node_launch::newest_ready_upload;
use super::runtime::LauncherContext;

/// Precedence of min-ready requests.
pub const MIN_READY_PRECEDENCE: &str = "900";

/// The outstanding min-ready requests of this launcher, per label.
#[derive(Debug, Default)]
pub struct MinReady {
    outstanding: BTreeMap<String, Vec<RequestId>>,
}

impl MinReady {
    /// No outstanding requests.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of outstanding requests (for the state dump).
    pub fn outstanding(&self) -> usize {
        self.outstanding.values().map(Vec::len).sum()
    }

    /// One pass: clean finished requests, then submit what is missing.
    pub async fn pass(&mut self, ctx: &LauncherContext) {
        self.clean(ctx).await;
        let config = ctx.config();
        let served = served_labels(ctx, &config);
        for label in &config.labels {
            if label.min_ready == 0 || !served.contains(&label.name) {
                continue;
            }
            if self
                .outstanding
                .get(&label.name)
                .is_some_and(|v| !v.is_empty())
            {
                continue;
            }
            let ready = ctx
                .cache
                .nodes()
                .iter()
                .filter(|n| {
                    n.node.state == NodeState::Ready
                        && n.node.allocated_to.is_none()
                        && n.node.has_label(&label.name)
                })
                .count();
            let want = label.min_ready as usize;
            if ready >= want || !image_available(ctx, &config, &label.name) {
                continue;
            }
            for _ in ready..want {
                let mut req = NodeRequest::new(vec![label.name.clone()], MIN_READY_REQUESTOR);
                req.reuse = false;
                match ctx
                    .store
                    .create_request(&mut req, MIN_READY_PRECEDENCE, true)
                    .await
                {
                    Ok(id) => {
                        tracing::info!(label = %label.name, request = %id, "submitted min-ready request");
                        self.outstanding
                            .entry(label.name.clone())
                            .or_default()
                            .push(id);
                    }
                    Err(e) => {
                        tracing::warn!(label = %label.name, error = %e, "cannot submit min-ready request");
                        break;
                    }
                }
            }
        }
    }

    async fn clean(&mut self, ctx: &LauncherContext) {
        for ids in self.outstanding.values_mut() {
            let mut keep = Vec::new();
            for id in ids.drain(..) {
                let req = match ctx.store.get_request(&id).await {
                    Ok(Some((r, _))) => r,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::debug!(request = %id, error = %e, "cannot read min-ready request");
                        keep.push(id);
                        continue;
                    }
                };
                match req.state {
                    RequestState::Fulfilled => {
                        for node_id in &req.nodes {
                            free_node(ctx, &id, node_id).await;
                        }
                        let _ = ctx.store.delete_request(&id).await;
                    }
                    RequestState::Failed => {
                        let _ = ctx.store.delete_request(&id).await;
                    }
                    _ => keep.push(id),
                }
            }
            *ids = keep;
        }
        self.outstanding.retain(|_, v| !v.is_empty());
    }
}

/// Clears `allocated_to` of a node allocated to a finished min-ready request.
async fn free_node(
    ctx: &LauncherContext,
    request: &RequestId,
    id: &nodepool_shared::model::NodeId,
) {
    let mut lock = ZkLock::new(ctx.store.client(), &paths::node_lock(id), b"");
    if !matches!(lock.acquire(Some(Duration::from_secs(5))).await, Ok(true)) {
        return;
    }
    if let Ok(Some((mut node, _))) = ctx.store.get_node(id).await {
        if node.allocated_to.as_ref() == Some(request) {
            node.allocated_to = None;
            if let Err(e) = ctx.store.store_node(&node, None).await {
                tracing::warn!(node = %id, error = %e, "cannot free min-ready node");
            }
        }
    }
    let _ = lock.release().await;
}

/// Labels some pool of a started provider serves.
fn served_labels(ctx: &LauncherContext, config: &Config) -> HashSet<String> {
    let started = ctx.provider_names();
    config
        .providers
        .iter()
        .filter(|p| started.contains(&p.name))
        .flat_map(|p| p.pools.iter())
        .filter(|pool| pool.max_servers.is_none_or(|m| m > 0))
        .flat_map(|pool| pool.labels.iter().map(|l| l.name.clone()))
        .collect()
}

/// Whether some started provider can boot `label`: a cloud-image label, or a diskimage
/// label with a ready upload for that provider.
fn image_available(ctx: &LauncherContext, config: &Config, label: &str) -> bool {
    let started = ctx.provider_names();
    config
        .providers
        .iter()
        .filter(|p| started.contains(&p.name))
        .flat_map(|p| p.pools.iter().map(move |pool| (p, pool)))
        .filter_map(|(p, pool)| pool.label(label).map(|l| (p, l)))
        .any(|(p, l)| match &l.image {
            PoolLabelImage::CloudImage(_) => true,
            PoolLabelImage::DiskImage(image) => newest_ready_upload(ctx, image, &p.name).is_some(),
        })
}
