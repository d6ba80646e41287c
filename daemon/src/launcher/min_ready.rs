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
//!
//! As in Nodepool, no request is submitted for a label while one of ours for it is still
//! open. Beyond Nodepool: after a min-ready request of a label failed (no pool could
//! serve it: cloud quota used up, provider broken), the next one for that label waits
//! [`Intervals::min_ready_backoff`] (5 s), doubling with every failure in a row up to
//! [`Intervals::min_ready_backoff_max`] (2 min), instead of a new request declined every
//! second. A fulfilled request ends the backoff; so does a config reload or a provider
//! (re)start, which may have fixed the cause.
//!
//! [`Intervals::min_ready_backoff`]: super::runtime::Intervals::min_ready_backoff
//! [`Intervals::min_ready_backoff_max`]: super::runtime::Intervals::min_ready_backoff_max

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use nodepool_shared::config::{Config, PoolLabelImage};
use nodepool_shared::model::{paths, NodeRequest, RequestId, RequestState};
use nodepool_shared::zk::ZkLock;
use tokio::time::Instant;

use super::handler::MIN_READY_REQUESTOR;
use super::node_launch::newest_ready_upload;
use super::providers::ProviderHandles;
use super::runtime::LauncherContext;

/// Precedence of min-ready requests.
pub const MIN_READY_PRECEDENCE: &str = "900";

/// A label whose min-ready requests failed in a row.
#[derive(Debug)]
struct Failing {
    failures: u32,
    /// No new request for the label before this.
    not_before: Instant,
}

/// The outstanding min-ready requests of this launcher, per label, and the labels
/// backing off after failed ones.
#[derive(Debug, Default)]
pub struct MinReady {
    outstanding: BTreeMap<String, Vec<RequestId>>,
    failing: BTreeMap<String, Failing>,
    /// The config and started providers the backoffs began under (identities).
    world: Vec<usize>,
}

/// The wait after `failures` failed requests in a row: `initial` doubled per failure
/// after the first, at most `max`.
pub fn backoff_after(failures: u32, initial: Duration, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    initial
        .saturating_mul(2u32.pow(doublings))
        .min(max.max(initial))
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
        self.forget_failures_if_changed(&config, handles);
        let served = served_labels(ctx, &config);
        let now = Instant::now();
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
            if self
                .failing
                .get(&label.name)
                .is_some_and(|f| f.not_before > now)
            {
                continue;
            }
            // Kept by the cache as nodes change (no node scan per label and pass).
            let ready = ctx.cache.ready_unallocated(&label.name) as usize;
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

    /// Ends every backoff when the config was reloaded or a provider (re)started.
    fn forget_failures_if_changed(&mut self, config: &Arc<Config>, handles: &ProviderHandles) {
        let mut names = handles.names();
        names.sort();
        let mut world = vec![Arc::as_ptr(config) as usize];
        world.extend(
            names
                .iter()
                .filter_map(|n| handles.get(n))
                .map(|h| Arc::as_ptr(&h) as usize),
        );
        if world != self.world {
            self.world = world;
            self.failing.clear();
        }
    }

    /// A min-ready request of `label` failed: the next waits longer.
    fn failed(&mut self, ctx: &LauncherContext, label: &str, id: &RequestId) {
        let f = self.failing.entry(label.to_string()).or_insert(Failing {
            failures: 0,
            not_before: Instant::now(),
        });
        f.failures = f.failures.saturating_add(1);
        let wait = backoff_after(
            f.failures,
            ctx.intervals.min_ready_backoff,
            ctx.intervals.min_ready_backoff_max,
        );
        f.not_before = Instant::now() + wait;
        tracing::info!(label, request = %id, failures = f.failures,
            "min-ready request failed; next one for this label in {}s", wait.as_secs_f64());
    }

    async fn clean(&mut self, ctx: &LauncherContext) {
        let mut failed = Vec::new();
        for (label, ids) in self.outstanding.iter_mut() {
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
                        self.failing.remove(label);
                    }
                    RequestState::Failed => {
                        let _ = ctx.store.delete_request(&id).await;
                        failed.push((label.clone(), id));
                    }
                    _ => keep.push(id),
                }
            }
            *ids = keep;
        }
        self.outstanding.retain(|_, v| !v.is_empty());
        for (label, id) in failed {
            self.failed(ctx, &label, &id);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling() {
        let s = Duration::from_secs;
        let got: Vec<u64> = (1..=7)
            .map(|n| backoff_after(n, s(5), s(120)).as_secs())
            .collect();
        assert_eq!(got, [5, 10, 20, 40, 80, 120, 120]);
        assert_eq!(backoff_after(u32::MAX, s(5), s(120)), s(120));
        // A ceiling below the first wait is raised to it.
        assert_eq!(backoff_after(3, s(5), s(1)), s(5));
    }
}
