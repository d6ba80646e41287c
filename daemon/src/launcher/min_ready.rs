//! min-ready: keep `min-ready` ready, unallocated nodes of each label by
//! submitting Nodepool's own single-label requests (`900-…`, ephemeral, requestor
//! `NodePool:min-ready`, `reuse` false), and clean up those requests once they are done
//! (fulfilled: free the nodes for anybody; failed: just delete).
//!
//! A request is only submitted when some started provider can boot the label now
//! (Nodepool's `labelImageIsAvailable`): a static provider's pool serving the label
//! counts as able (it manages no images); a diskimage label needs a `ready` upload to
//! that provider, a cloud-image label needs the image in that provider's cloud (an
//! `image-id` is taken on trust; a name is looked up, and a missing image is looked up
//! again only after `image_recheck`, 5 minutes as in Nodepool). Without that check a
//! label whose image is missing would get a request every second, declined and failed.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use nodepool_shared::config::{Config, PoolLabelImage};
use nodepool_shared::model::{paths, NodeRequest, NodeState, RequestId, RequestState};
use nodepool_shared::zk::ZkLock;

use super::handler::MIN_READY_REQUESTOR;
use super::node_launch::newest_ready_upload;
use super::providers::ProviderHandles;
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
    pub async fn pass(&mut self, ctx: &LauncherContext, handles: &ProviderHandles) {
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
            let mut ready = 0;
            ctx.cache.for_each_node(|n| {
                if n.node.state() == NodeState::Ready
                    && n.node.allocated_to().is_none()
                    && n.node.has_label(&label.name)
                {
                    ready += 1;
                }
            });
            let want = label.min_ready as usize;
            if ready >= want || !image_available(ctx, handles, &config, &label.name).await {
                continue;
            }
            self.submit(ctx, &label.name, want - ready).await;
        }
    }

    /// Submits `n` single-node requests for `label`.
    async fn submit(&mut self, ctx: &LauncherContext, label: &str, n: usize) {
        for _ in 0..n {
            let mut req = NodeRequest::new(vec![label.to_string()], MIN_READY_REQUESTOR);
            req.reuse = false;
            match ctx
                .store
                .create_request(&mut req, MIN_READY_PRECEDENCE, true)
                .await
            {
                Ok(id) => {
                    tracing::info!(label, request = %id, "submitted min-ready request");
                    self.outstanding
                        .entry(label.to_string())
                        .or_default()
                        .push(id);
                }
                Err(e) => {
                    tracing::warn!(label, error = %e, "cannot submit min-ready request");
                    break;
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

/// Labels some enabled pool of a started provider (of either kind) serves.
fn served_labels(ctx: &LauncherContext, config: &Config) -> HashSet<String> {
    let started = ctx.provider_names();
    let mut labels: HashSet<String> = config
        .providers
        .iter()
        .filter(|p| started.contains(&p.name))
        .flat_map(|p| p.pools.iter())
        .filter(|pool| pool.max_servers.is_none_or(|m| m > 0))
        .flat_map(|pool| pool.labels.iter().map(|l| l.name.clone()))
        .collect();
    labels.extend(static_labels(ctx, config));
    labels
}

/// Labels some enabled pool of a started static provider serves.
fn static_labels(ctx: &LauncherContext, config: &Config) -> HashSet<String> {
    let started = ctx.provider_names();
    config
        .static_providers
        .iter()
        .filter(|p| started.contains(&p.name))
        .flat_map(|p| p.pools.iter())
        .filter(|pool| pool.max_servers.is_none_or(|m| m > 0))
        .flat_map(|pool| pool.labels())
        .collect()
}

/// Whether some started provider with an enabled pool serving `label` can boot it now:
/// a diskimage label with a ready upload to that provider, or a cloud-image label whose
/// image its cloud has.
async fn image_available(
    ctx: &LauncherContext,
    handles: &ProviderHandles,
    config: &Config,
    label: &str,
) -> bool {
    if static_labels(ctx, config).contains(label) {
        return true;
    }
    let mut pools = Vec::new();
    for p in &config.providers {
        for pool in &p.pools {
            if pool.max_servers.is_none_or(|m| m > 0) {
                pools.push((p, pool));
            }
        }
    }
    for (p, pool) in pools {
        let (Some(l), Some(handle)) = (pool.label(label), handles.get(&p.name)) else {
            continue;
        };
        let found = match &l.image {
            PoolLabelImage::DiskImage(image) => newest_ready_upload(ctx, image, &p.name).is_some(),
            PoolLabelImage::CloudImage(image) => match handle.cloud_image_id(image).await {
                Ok(id) => id.is_some(),
                Err(e) => {
                    tracing::warn!(provider = %p.name, label, error = %e,
                        "cannot look up the cloud image for min-ready");
                    false
                }
            },
        };
        if found {
            return true;
        }
    }
    false
}
