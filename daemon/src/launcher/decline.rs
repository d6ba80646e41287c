//! Declining a request: why a pool cannot serve it ([`DeclineReason`], Nodepool's
//! reasons and texts), the checks a pool worker runs before accepting a request and a
//! handler runs again on every retry against the current config ([`decline_reason`]),
//! and the write itself ([`decline_request`]: our id into `declined_by`; `failed` once
//! every registered pool declined, else back to `requested`).

use nodepool_shared::config::PoolLabelImage;
use nodepool_shared::model::{NodeRequest, RequestId, RequestState};
use nodepool_shared::zk::ZkError;

use super::held_request::HeldWrite;
use super::node_launch::newest_ready_upload;
use super::pool_context::{ConfigGone, PoolContext, PoolView};
use super::quota::QuotaError;
use super::runtime::{Counters, LauncherContext};

/// Why a pool declines a request.
#[derive(Debug, thiserror::Error)]
pub enum DeclineReason {
    /// `max-servers` ≤ 0.
    #[error("pool is disabled by max_servers")]
    PoolDisabled,
    /// The pool does not serve these labels.
    #[error("node type(s) [{}] not available", .0.join(","))]
    LabelsNotAvailable(Vec<String>),
    /// A diskimage label without a ready upload to this provider, or a cloud image the
    /// cloud does not have.
    #[error("images are not available")]
    ImagesNotAvailable,
    /// The whole request can never fit the provider quota or the pool limits.
    #[error("it would exceed quota")]
    ExceedsQuota,
    /// The pool or its provider left the config (or the provider is not started).
    #[error(transparent)]
    ConfigGone(#[from] ConfigGone),
    /// A min-ready request while the pool is at quota (waiting makes no sense for it).
    #[error("not enough quota for a min-ready request")]
    MinReadyAtQuota,
    /// A request that does not allow reuse (min-ready's) in a static pool, which can only
    /// hand out registered nodes.
    #[error("a static pool cannot launch new nodes and the request does not allow reuse")]
    StaticNeedsReuse,
    /// A label's quota need or the provider's limits cannot be computed.
    #[error(transparent)]
    Quota(#[from] QuotaError),
    /// Creating a node record failed (not a connection problem: those are retried).
    #[error("creating node: {0}")]
    CreateNode(#[source] ZkError),
    /// A launch failed after its retries.
    #[error("launch failed: {0}")]
    LaunchFailed(String),
    /// A launch task ended without a result (it panicked).
    #[error("launch task ended abnormally: {0}")]
    LaunchTask(#[source] tokio::task::JoinError),
    /// The request znode was gone when the handler wanted to mark it `pending`.
    #[error("request vanished")]
    RequestVanished,
}

/// Why this pool must decline `req`, if it must, by the current `view` (Nodepool's
/// order: disabled pool, missing labels, images, quota).
pub async fn decline_reason(
    ctx: &LauncherContext,
    view: &PoolView,
    req: &NodeRequest,
) -> Option<DeclineReason> {
    decline_reason_for(ctx, view, &req.node_types).await
}

/// [`decline_reason`] of a request for `node_types` (it depends on nothing else).
pub async fn decline_reason_for(
    ctx: &LauncherContext,
    view: &PoolView,
    node_types: &[String],
) -> Option<DeclineReason> {
    if view.pool().max_servers.is_some_and(|m| m <= 0) {
        return Some(DeclineReason::PoolDisabled);
    }
    let missing: Vec<String> = node_types
        .iter()
        .filter(|l| view.label(l).is_none())
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Some(DeclineReason::LabelsNotAvailable(missing));
    }
    let labels: Vec<_> = node_types
        .iter()
        .filter_map(|name| view.label(name))
        .collect();
    for label in &labels {
        if !image_available(ctx, view, &label.image).await {
            return Some(DeclineReason::ImagesNotAvailable);
        }
    }
    match view
        .provider
        .could_ever_fit(ctx, view.pool(), &labels)
        .await
    {
        Ok(false) => Some(DeclineReason::ExceedsQuota),
        Ok(true) => None,
        Err(e) => {
            // Cannot tell now (cloud trouble): let the handler find out.
            tracing::warn!(provider = %view.provider_config().name, pool = %view.pool().name,
                error = %e, "quota check failed");
            None
        }
    }
}

/// Whether the provider can boot `image`: a ready upload of the diskimage to it, or the
/// cloud image found in its cloud (a lookup error counts as available: the launch will
/// tell).
pub async fn image_available(
    ctx: &LauncherContext,
    view: &PoolView,
    image: &PoolLabelImage,
) -> bool {
    match image {
        PoolLabelImage::DiskImage(name) => {
            newest_ready_upload(ctx, name, &view.provider_config().name).is_some()
        }
        PoolLabelImage::CloudImage(name) => {
            !matches!(view.provider.cloud_image_id(name).await, Ok(None))
        }
    }
}

/// Declines `request` (already locked by the caller): append our worker id to
/// `declined_by`; `failed` when every registered pool declined, else back to
/// `requested`. Re-reads the request first and writes it conditional on that read.
/// A handler passes the version it expects the request at (its `pending` write, see
/// [`held_request`]): if the request changed since, the lock was lost and nothing is
/// written ([`HeldWrite::Changed`]).
///
/// [`held_request`]: super::held_request
pub async fn decline_request(
    pc: &PoolContext,
    id: &RequestId,
    reason: &DeclineReason,
    expected: Option<i32>,
) -> Result<HeldWrite, ZkError> {
    let Some((mut req, stat)) = pc.ctx.store.get_request(id).await? else {
        return Ok(HeldWrite::Gone);
    };
    if expected.is_some_and(|v| v != stat.version) {
        return Ok(HeldWrite::Changed);
    }
    tracing::info!(request = %id, pool = %pc.worker_id, %reason, "declining request");
    if !req.declined_by.contains(&pc.worker_id) {
        req.declined_by.push(pc.worker_id.clone());
    }
    let registered = pc.registered_pool_ids();
    let failed = registered.iter().all(|p| req.declined_by.contains(p));
    if failed {
        req.set_state(RequestState::Failed);
    } else {
        req.set_state(RequestState::Requested);
    }
    match pc.ctx.store.store_request(&req, Some(stat.version)).await {
        Ok(_) => {}
        Err(ZkError::NoNode(_)) => return Ok(HeldWrite::Gone),
        Err(ZkError::BadVersion(_)) => return Ok(HeldWrite::Changed),
        Err(e) => return Err(e),
    }
    if failed {
        Counters::bump(&pc.ctx.counters.requests_failed);
    }
    Counters::bump(&pc.ctx.counters.requests_declined);
    Ok(HeldWrite::Stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_nodepools() {
        assert_eq!(
            DeclineReason::PoolDisabled.to_string(),
            "pool is disabled by max_servers"
        );
        assert_eq!(
            DeclineReason::LabelsNotAvailable(vec!["a".into(), "b".into()]).to_string(),
            "node type(s) [a,b] not available"
        );
        assert_eq!(
            DeclineReason::from(ConfigGone::ProviderRemoved("p".into())).to_string(),
            "provider p is not in the configuration"
        );
    }
}
