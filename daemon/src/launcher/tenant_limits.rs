//! `tenant-resource-limits`: a request whose tenant would go
//! over its limits is deferred — left `requested` for a later pass, never declined — and
//! every pool worker loop reports the limits as `nodepool.tenant_limits.<tenant>.<limit>`.
//!
//! Usage is the sum of the `resources` of all nodes carrying that `tenant_name` (every
//! provider, any state; nodes without `resources` count as nothing); the need is this
//! pool's quota for the request's labels that the pool serves. Requests this pool accepted
//! count with their need until their handler ends (in place of their nodes), so a burst
//! of requests of one tenant cannot all be accepted before their nodes exist. Unset
//! limits are unlimited; their gauge is sent as `inf`, as Python Nodepool sends its
//! `math.inf`.
//!
//! The tree cache keeps every tenant's node usage and the nodes allocated to each
//! request as nodes change, so a check costs no node scan: while this pool handles
//! requests of that tenant, their nodes are taken out of the total by that index and
//! the requests counted by their need instead (at 100,000 nodes the scan it replaces
//! cost tens of milliseconds per check).

use std::collections::HashMap;
use std::sync::Arc;

use nodepool_shared::config::TenantResourceLimit;
use nodepool_shared::model::quota::{CORES, INSTANCES, RAM, VOLUMES, VOLUME_GB};
use nodepool_shared::model::{NodeRequest, QuotaInformation, RequestId};
use nodepool_shared::stats::names;

use super::label_checks::LabelChecks;
use super::pool_context::{PoolContext, PoolView};
use super::runtime::LauncherContext;

/// The limits of one tenant in gauge order: `cores`, `instances`, `ram`, `volumes`,
/// `volume-gb`, then custom resources; unset = +∞.
pub fn limits(t: &TenantResourceLimit) -> Vec<(String, f64)> {
    let v = |x: Option<i64>| x.map_or(f64::INFINITY, |n| n as f64);
    let mut out = vec![
        (CORES.to_string(), v(t.max_cores)),
        (INSTANCES.to_string(), v(t.max_servers)),
        (RAM.to_string(), v(t.max_ram)),
        (VOLUMES.to_string(), v(t.max_volumes)),
        (VOLUME_GB.to_string(), v(t.max_volume_gb)),
    ];
    out.extend(t.other.iter().map(|(k, n)| (k.clone(), *n as f64)));
    out
}

/// The limits as a quota (keys not limited are +∞).
pub fn limit_quota(t: &TenantResourceLimit) -> QuotaInformation {
    let mut q = QuotaInformation::unlimited();
    for (k, v) in limits(t) {
        q.set(&k, v);
    }
    q
}

/// What `tenant` uses now: the `resources` of its nodes in the tree cache, except nodes
/// allocated to a request in `claims`, plus the needs in `claims` (requests of this pool
/// being handled, whose nodes may not be created or cached yet). Without claims of this
/// tenant that is the cache's running total; with claims, that total less the tenant's
/// nodes allocated to the claimed requests (the cache's index of allocations: no node
/// scan either).
pub fn usage(
    ctx: &LauncherContext,
    tenant: &str,
    claims: &HashMap<RequestId, (String, QuotaInformation)>,
) -> QuotaInformation {
    if !claims.values().any(|(t, _)| t == tenant) {
        return ctx.cache.tenant_usage(tenant).used;
    }
    let mut used = ctx.cache.tenant_usage_without(tenant, claims.keys()).used;
    for (t, need) in claims.values() {
        if t == tenant {
            used.add(need);
        }
    }
    used
}

/// The configured limits of `tenant`, if any.
fn tenant_entry(ctx: &LauncherContext, tenant: &str) -> Option<TenantResourceLimit> {
    ctx.config
        .borrow()
        .tenant_resource_limits
        .iter()
        .find(|t| t.tenant_name == tenant)
        .cloned()
}

/// A tenant's usage as one pool counts it, and what that was computed from: while
/// neither the tenant's nodes nor the pool's claims changed, the usage is the same.
#[derive(Debug, PartialEq)]
pub struct TenantBasis {
    /// The tenant.
    pub tenant: String,
    /// Its usage ([`usage`] with the pool's claims).
    pub used: QuotaInformation,
    /// The cache's change counter of the tenant's nodes at the time.
    changes: u64,
    /// The pool's claims version at the time.
    claims_version: u64,
}

impl TenantBasis {
    /// The usage of `tenant` now, as `pc`'s pool counts it.
    pub fn now(pc: &PoolContext, tenant: &str) -> TenantBasis {
        let changes = pc.ctx.cache.tenant_usage(tenant).changes;
        let claims_version = pc.claims_version();
        let used = usage(&pc.ctx, tenant, &pc.tenant_claims_snapshot());
        TenantBasis {
            tenant: tenant.to_string(),
            used,
            changes,
            claims_version,
        }
    }

    /// What the usage was computed from: the tenant's node change counter and the
    /// pool's claims version. While [`Self::key_now`] is the same, so is the usage (if it
    /// differs, the usage may still be the same).
    pub fn key(&self) -> (u64, u64) {
        (self.changes, self.claims_version)
    }

    /// [`Self::key`] of `tenant` now.
    pub fn key_now(pc: &PoolContext, tenant: &str) -> (u64, u64) {
        (
            pc.ctx.cache.tenant_usage(tenant).changes,
            pc.claims_version(),
        )
    }
}

/// The verdict of [`check`].
#[derive(Clone, Debug, PartialEq)]
pub enum TenantCheck {
    /// Accept; when the tenant has limits, the (tenant, need) to claim while handling.
    Fits(Option<(String, QuotaInformation)>),
    /// The tenant would exceed its limits at this usage: leave the request until it
    /// changes.
    Defer(Arc<TenantBasis>),
}

/// A tenant's room in one assignment pass: its usage and its limits less that usage.
#[derive(Debug)]
pub struct TenantRoom {
    basis: Arc<TenantBasis>,
    room: QuotaInformation,
}

/// The tenants seen during one assignment pass (`None`: no limits), shared by the
/// requests of each: its usage, the verdicts of the requests it deferred and its room
/// are worked out once per pass, not per request. Forget a tenant when the pass claims
/// for it.
pub type UsageMemo = HashMap<String, Option<TenantRoom>>;

/// Whether accepting `req` here keeps its tenant within its limits. Requests without a
/// tenant, or of a tenant without limits, always fit; so does a request whose need
/// cannot be computed now (the handler finds out). The need is that of `labels` (the
/// request's label checks in this pass).
pub async fn check(
    pc: &PoolContext,
    view: &PoolView,
    req: &NodeRequest,
    labels: &LabelChecks,
    memo: &mut UsageMemo,
) -> TenantCheck {
    let Some(tenant) = req.tenant_name.as_deref() else {
        return TenantCheck::Fits(None);
    };
    if !memo.contains_key(tenant) {
        let room = tenant_entry(&pc.ctx, tenant).map(|entry| {
            let basis = Arc::new(TenantBasis::now(pc, tenant));
            let mut room = limit_quota(&entry);
            room.subtract(&basis.used);
            TenantRoom { basis, room }
        });
        memo.insert(tenant.to_string(), room);
    }
    let Some(Some(room)) = memo.get(tenant) else {
        return TenantCheck::Fits(None);
    };
    let need = match labels.need(view).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(request = %req.id, error = %e, "cannot compute tenant need");
            return TenantCheck::Fits(None);
        }
    };
    if room.room.fits(need) {
        TenantCheck::Fits(Some((tenant.to_string(), need.clone())))
    } else {
        tracing::debug!(request = %req.id, pool = %pc.worker_id, tenant,
            "deferring request: tenant limits reached");
        TenantCheck::Defer(room.basis.clone())
    }
}

/// Sends `nodepool.tenant_limits.<tenant>.<limit>` for every configured tenant.
pub fn emit_gauges(ctx: &LauncherContext) {
    let entries = ctx.config.borrow().tenant_resource_limits.clone();
    for t in &entries {
        for (k, v) in limits(t) {
            ctx.statsd
                .gauge_f64(&names::tenant_limit(&t.tenant_name, &k), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn limits_in_gauge_order_with_unset_unlimited() {
        let t = TenantResourceLimit {
            tenant_name: "t".into(),
            max_servers: Some(2),
            max_cores: None,
            max_ram: Some(1024),
            max_volumes: None,
            max_volume_gb: None,
            other: BTreeMap::from([("gpu".to_string(), 1)]),
        };
        let l = limits(&t);
        let keys: Vec<&str> = l.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["cores", "instances", "ram", "volumes", "volume-gb", "gpu"]
        );
        assert!(l[0].1.is_infinite());
        assert_eq!(l[1].1, 2.0);
        let mut room = limit_quota(&t);
        room.subtract(&QuotaInformation::new(
            Some(4.0),
            Some(2.0),
            Some(512.0),
            0.0,
        ));
        assert!(room.non_negative());
        room.subtract(&QuotaInformation::new(Some(1.0), Some(1.0), Some(1.0), 0.0));
        assert!(!room.non_negative());
    }
}
