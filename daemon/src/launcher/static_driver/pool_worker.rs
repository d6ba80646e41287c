//! One static provider-pool worker: registers the pool component like a cloud pool
//! (`supported_labels` = the labels of its hosts, `priority`; never `paused`, as a static
//! pool never waits for quota) and, on every tree-cache change, config reload or
//! fallback tick, runs an assignment pass over the cached requests.
//!
//! A pass follows Nodepool's pool worker for a driver with label quota: requests in
//! the same order as a cloud pool's (serviceable first, then by priority), the same
//! yield rules (another preferred provider, a pool with a smaller priority, a missing
//! label while other pools can serve it), then a request is **deferred** (left
//! `requested`) while one of its labels has no node available in this pool — counted
//! once per pass from the cache and decremented for every label of every node handed
//! out — or while its tenant would exceed its `tenant-resource-limits` (each node
//! counts as one instance). Requests it can never serve (pool disabled by
//! `max-servers`, labels it lacks with no other pool to serve them) are declined. An
//! accepted request is locked and handled to its end in the pass (`handler`).
//!
//! Nodes available = `ready`, unallocated, unlocked nodes of this provider and pool
//! whose host is configured in the pool (Python Nodepool counts every ready unallocated
//! node of the label in ZooKeeper, any provider's).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use nodepool_shared::config::{StaticPool, StaticProvider as ProviderConfig};
use nodepool_shared::model::{
    Component, ComponentKind, ComponentState, NodeRequest, PoolInfo, QuotaInformation,
};
use nodepool_shared::stats::names;
use tokio_util::sync::CancellationToken;

use super::handler::{usable_host, StaticHandler};
use crate::launcher::decline::{decline_request, DeclineReason};
use crate::launcher::pool_context::PoolContext;
use crate::launcher::pool_worker::{
    lock_fresh, pending_in_order, publish, register, wait_visible, Locked, Published,
    RegistrationSlot, COMPONENT_VERSION,
};
use crate::launcher::rivals::{online_pools, Rivals};
use crate::launcher::runtime::LauncherContext;
use crate::launcher::tenant_limits;
use nodepool_shared::sync::MutexExt;

/// The pool component of a static pool worker.
pub fn pool_component(
    hostname: &str,
    worker_id: &str,
    provider: &str,
    pool: &StaticPool,
) -> Component {
    let mut c = Component::new(ComponentKind::Pool, hostname, COMPONENT_VERSION);
    c.state = ComponentState::Running;
    c.pool = Some(PoolInfo {
        id: Some(worker_id.to_string()),
        name: Some(pool.name.clone()),
        provider_name: Some(provider.to_string()),
        supported_labels: pool.labels(),
        priority: pool.priority,
        paused: false,
    });
    c
}

/// The worker's provider and pool in the current config.
fn current(pc: &PoolContext) -> Option<(ProviderConfig, StaticPool)> {
    let config = pc.ctx.config();
    let provider = config.static_provider(&pc.provider_name)?;
    let pool = provider.pool(&pc.pool_name)?.clone();
    Some((provider.clone(), pool))
}

/// Runs a static pool worker until `stop` (or the launcher's cancel) fires; then
/// unregisters.
pub async fn run(pc: Arc<PoolContext>, slot: RegistrationSlot, stop: CancellationToken) {
    let ctx = pc.ctx.clone();
    let task = pc.task_name();
    let Some((_, pool)) = current(&pc) else {
        return;
    };
    let mut published = Published {
        labels: pool.labels(),
        priority: pool.priority,
        paused: false,
    };
    let component = pool_component(&ctx.hostname, &pc.worker_id, &pc.provider_name, &pool);
    let Some(registration) = register(&ctx, &task, component, &stop).await else {
        return;
    };
    let registration = Arc::new(registration);
    slot.set(registration.clone());
    tracing::info!(pool = %task, id = %pc.worker_id, "static pool worker started");
    wait_visible(&ctx, &pc.worker_id, &stop).await;
    let mut generation = ctx.cache.watch_generation();
    let mut config = ctx.config.clone();
    let mut last_gauge: Option<tokio::time::Instant> = None;
    loop {
        generation.borrow_and_update();
        config.borrow_and_update();
        match current(&pc) {
            Some((provider, pool)) => {
                ctx.set_task_state(&task, "assigning");
                assign_pass(&pc, &provider, &pool, &stop).await;
                if last_gauge.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    max_servers_gauge(&ctx, &provider);
                    tenant_limits::emit_gauges(&ctx);
                    last_gauge = Some(tokio::time::Instant::now());
                }
                let want = Published {
                    labels: pool.labels(),
                    priority: pool.priority,
                    paused: false,
                };
                publish(&registration, &mut published, want).await;
            }
            None => tracing::debug!(pool = %task, "static pool not in the current config"),
        }
        ctx.set_task_state(&task, "idle");
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ctx.cancel.cancelled() => break,
            _ = generation.changed() => {}
            Ok(()) = config.changed() => {}
            _ = tokio::time::sleep(ctx.intervals.pool_tick) => {}
        }
    }
    ctx.task_states.lock_or_recover().remove(&task);
    drop(registration);
    slot.unregister().await;
    tracing::info!(pool = %task, "static pool worker stopped");
}

/// `nodepool.provider.<p>.max_servers`: the sum of the pools' `max-servers`, `inf`
/// when a pool has none (as Python sends `math.inf`).
fn max_servers_gauge(ctx: &LauncherContext, provider: &ProviderConfig) {
    let key = names::provider_max_servers(&provider.name);
    let total = provider
        .pools
        .iter()
        .try_fold(0u64, |acc, p| p.max_servers.map(|m| acc + m.max(0) as u64));
    match total {
        Some(t) => ctx.statsd.gauge(&key, t),
        None => ctx.statsd.gauge_f64(&key, f64::INFINITY),
    }
}

/// How many nodes of each of the pool's labels it can hand out now (see the module doc).
pub fn availability(
    ctx: &LauncherContext,
    provider: &str,
    pool: &StaticPool,
) -> HashMap<String, usize> {
    let mut out: HashMap<String, usize> = pool.labels().into_iter().map(|l| (l, 0)).collect();
    ctx.cache.for_each_node(|n| {
        if usable_host(provider, pool, n).is_none() {
            return;
        }
        for l in n.node.labels() {
            if let Some(c) = out.get_mut(l) {
                *c += 1;
            }
        }
    });
    out
}

/// Why this pool must decline `req`: disabled by `max-servers`, or labels it lacks.
fn decline_reason(pool: &StaticPool, req: &NodeRequest) -> Option<DeclineReason> {
    if pool.max_servers.is_some_and(|m| m <= 0) {
        return Some(DeclineReason::PoolDisabled);
    }
    let missing: Vec<String> = req
        .node_types
        .iter()
        .filter(|l| !pool.serves(l))
        .cloned()
        .collect();
    (!missing.is_empty()).then_some(DeclineReason::LabelsNotAvailable(missing))
}

/// Whether the request's tenant stays within its `tenant-resource-limits` with one more
/// instance per label (Nodepool's quota of a static node: one instance, no cores, no
/// RAM).
fn tenant_fits(ctx: &LauncherContext, req: &NodeRequest) -> bool {
    let Some(tenant) = req.tenant_name.as_deref() else {
        return true;
    };
    let config = ctx.config();
    let Some(entry) = config
        .tenant_resource_limits
        .iter()
        .find(|t| t.tenant_name == tenant)
    else {
        return true;
    };
    let need = QuotaInformation::new(Some(0.0), Some(req.node_types.len() as f64), Some(0.0), 0.0);
    let mut room = tenant_limits::limit_quota(entry);
    room.subtract(&tenant_limits::usage(ctx, tenant, &HashMap::new()));
    room.fits(&need)
}

/// One assignment pass (see the module doc).
pub async fn assign_pass(
    pc: &PoolContext,
    provider: &ProviderConfig,
    pool: &StaticPool,
    stop: &CancellationToken,
) {
    if provider.max_concurrency == 0 {
        return;
    }
    let labels = pool.labels();
    let mine: HashSet<&str> = labels.iter().map(String::as_str).collect();
    let requests = pending_in_order(pc, &mine);
    if requests.is_empty() {
        return;
    }
    let online = online_pools(&pc.ctx);
    let mut rivals = Rivals::new(
        online.into(),
        &pc.worker_id,
        &pc.provider_name,
        pool.priority,
    );
    let mut available = availability(&pc.ctx, &provider.name, pool);
    for cached in requests {
        if stop.is_cancelled() || pc.ctx.cancel.is_cancelled() {
            return;
        }
        let req = &cached.request;
        let lacks = req.node_types.iter().any(|l| !mine.contains(l.as_str()));
        if rivals.yields(req, lacks) {
            continue;
        }
        if !req
            .node_types
            .iter()
            .all(|l| available.get(l).is_none_or(|n| *n > 0))
        {
            continue;
        }
        if !tenant_fits(&pc.ctx, req) {
            tracing::debug!(request = %req.id, "deferring request: tenant limits reached");
            continue;
        }
        let decline = decline_reason(pool, req);
        let Locked::Fresh(mut lock, fresh) = lock_fresh(&pc.ctx, &pc.worker_id, req).await else {
            continue;
        };
        let fresh = *fresh;
        if let Some(reason) = decline {
            if let Err(e) = decline_request(pc, &fresh.id, &reason, None).await {
                tracing::warn!(request = %fresh.id, error = %e, "cannot decline request");
            }
            let _ = lock.release().await;
            continue;
        }
        tracing::debug!(request = %fresh.id, pool = %pc.worker_id, "accepting request");
        let handled = StaticHandler::new(pc, pool, fresh, lock).run().await;
        for l in &handled.taken_labels {
            if let Some(n) = available.get_mut(l) {
                *n = n.saturating_sub(1);
            }
        }
    }
}
