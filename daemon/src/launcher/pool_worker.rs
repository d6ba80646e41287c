//! One provider-pool worker: registers the pool component, and on
//! every tree-cache change (or a short fallback tick for timeouts and paused handlers)
//! runs an assignment pass over the cached requests: serviceable ones first, then by
//! priority; skips, yields and defers as Nodepool does (also for tenant limits); declines what this pool can never
//! serve; locks and hands the rest to a [`Handler`] task each.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodepool_shared::config::{Pool, PoolLabelImage, Provider};
use nodepool_shared::model::{
    paths, pool_worker_id, Component, ComponentKind, ComponentState, NodeId, NodeRequest, PoolInfo,
    QuotaInformation, RequestId, RequestState,
};
use nodepool_shared::stats::names;
use nodepool_shared::zk::{ComponentRegistration, ZkLock};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::handler::{decline_request, Handler, PoolContext};
use super::node_launch::newest_ready_upload;
use super::providers::ProviderHandle;
use super::runtime::LauncherContext;
use super::tenant_limits::{self, TenantCheck};
use nodepool_shared::sync::MutexExt;

/// The version written into component records.
pub const COMPONENT_VERSION: &str = "11.0.0";

/// How long a new worker waits to see its own component in the cache.
const REGISTRATION_VISIBLE: Duration = Duration::from_secs(5);

/// A registered pool as the assignment pass sees it.
#[derive(Clone, Debug)]
struct OnlinePool {
    id: String,
    provider: String,
    labels: HashSet<String>,
    priority: i64,
    paused: bool,
}

fn online_pools(ctx: &LauncherContext) -> Vec<OnlinePool> {
    ctx.cache
        .components(ComponentKind::Pool)
        .iter()
        .filter_map(|c| {
            let p = c.component.pool.as_ref()?;
            Some(OnlinePool {
                id: p.id.clone()?,
                provider: p.provider_name.clone().unwrap_or_default(),
                labels: p.supported_labels.iter().cloned().collect(),
                priority: p.priority,
                paused: p.paused,
            })
        })
        .collect()
}

/// The pool component content of a worker.
pub fn pool_component(hostname: &str, worker_id: &str, provider: &str, pool: &Pool) -> Component {
    let mut c = Component::new(ComponentKind::Pool, hostname, COMPONENT_VERSION);
    c.state = ComponentState::Running;
    c.pool = Some(PoolInfo {
        id: Some(worker_id.to_string()),
        name: Some(pool.name.clone()),
        provider_name: Some(provider.to_string()),
        supported_labels: pool.labels.iter().map(|l| l.name.clone()).collect(),
        priority: pool.priority,
        paused: false,
    });
    c
}

/// Runs a pool worker until `stop` (or the launcher's cancel) fires; then unregisters.
/// Handlers already started finish on their own.
pub async fn run(
    ctx: Arc<LauncherContext>,
    provider: Arc<ProviderHandle>,
    provider_config: Provider,
    pool: Pool,
    stop: CancellationToken,
) {
    let worker_id = pool_worker_id(&ctx.fqdn, &provider_config.name, &pool.name);
    let task = format!("PoolWorker.{}-{}", provider_config.name, pool.name);
    let component = pool_component(&ctx.hostname, &worker_id, &provider_config.name, &pool);
    let registration = loop {
        match ctx.store.register_component(component.clone()).await {
            Ok(r) => break r,
            Err(e) => {
                tracing::warn!(pool = %task, error = %e, "cannot register pool component; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    tracing::info!(pool = %task, id = %worker_id, "pool worker started");
    let (paused_tx, mut paused_rx) = watch::channel(0usize);
    let pc = Arc::new(PoolContext {
        ctx: ctx.clone(),
        provider,
        provider_config,
        pool,
        worker_id: worker_id.clone(),
        paused: paused_tx,
        handling: Mutex::new(HashSet::new()),
        tenant_claims: Mutex::new(HashMap::new()),
    });
    wait_visible(&ctx, &worker_id, &stop).await;
    let mut generation = ctx.cache.watch_generation();
    let mut last_gauge: Option<tokio::time::Instant> = None;
    let mut component_paused = false;
    loop {
        generation.borrow_and_update();
        ctx.set_task_state(&task, "assigning");
        assign_pass(&pc).await;
        if last_gauge.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            max_servers_gauge(&pc);
            tenant_limits::emit_gauges(&ctx);
            last_gauge = Some(tokio::time::Instant::now());
        }
        let paused = pc.is_paused();
        if paused != component_paused {
            component_paused = paused;
            update_paused(&registration, paused).await;
        }
        ctx.set_task_state(&task, if paused { "paused" } else { "idle" });
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ctx.cancel.cancelled() => break,
            _ = generation.changed() => {}
            _ = paused_rx.changed() => {}
            _ = tokio::time::sleep(ctx.intervals.pool_tick) => {}
        }
    }
    ctx.task_states.lock_or_recover().remove(&task);
    if let Err(e) = registration.unregister().await {
        tracing::warn!(pool = %task, error = %e, "cannot unregister pool component");
    }
    tracing::info!(pool = %task, "pool worker stopped");
}

async fn update_paused(registration: &ComponentRegistration, paused: bool) {
    let r = registration
        .update(|c| {
            if let Some(p) = c.pool.as_mut() {
                p.paused = paused;
            }
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "cannot update pool component paused flag");
    }
}

async fn wait_visible(ctx: &LauncherContext, id: &str, stop: &CancellationToken) {
    let deadline = tokio::time::Instant::now() + REGISTRATION_VISIBLE;
    let mut generation = ctx.cache.watch_generation();
    while !online_pools(ctx).iter().any(|p| p.id == id) {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => return,
            _ = generation.changed() => {}
        }
    }
}

/// `nodepool.provider.<p>.max_servers`: the sum of the provider's pools' max-servers.
/// A pool without `max-servers` is unlimited, which makes the sum infinite: then the
/// gauge is sent as `inf` (`…max_servers:inf|g`), the value Python Nodepool sends for
/// its `math.inf` sum.
fn max_servers_gauge(pc: &PoolContext) {
    let key = names::provider_max_servers(&pc.provider_config.name);
    match provider_max_servers(&pc.provider_config) {
        Some(total) => pc.ctx.statsd.gauge(&key, total),
        None => pc.ctx.statsd.gauge_f64(&key, f64::INFINITY),
    }
}

/// The sum of a provider's pools' `max-servers` (negative counts as 0); `None` when
/// some pool is unlimited.
pub fn provider_max_servers(provider: &Provider) -> Option<u64> {
    provider
        .pools
        .iter()
        .try_fold(0u64, |acc, p| p.max_servers.map(|m| acc + m.max(0) as u64))
}

/// Why this pool must decline `req`, if it must: the pool is disabled,
/// lacks a label, has no image for it, or the request could never fit its quota.
pub async fn decline_reason(pc: &PoolContext, req: &NodeRequest) -> Option<String> {
    if pc.pool.max_servers.is_some_and(|m| m <= 0) {
        return Some("pool is disabled by max_servers".into());
    }
    let missing: Vec<&String> = req
        .node_types
        .iter()
        .filter(|l| pc.label(l).is_none())
        .collect();
    if !missing.is_empty() {
        return Some(format!("node type(s) {missing:?} not available"));
    }
    let mut labels = Vec::with_capacity(req.node_types.len());
    for name in &req.node_types {
        let Some(label) = pc.label(name) else {
            continue;
        };
        let available = match &label.image {
            PoolLabelImage::DiskImage(image) => {
                newest_ready_upload(&pc.ctx, image, pc.provider.name()).is_some()
            }
            PoolLabelImage::CloudImage(image) => {
                !matches!(pc.provider.cloud_image_id(image).await, Ok(None))
            }
        };
        if !available {
            return Some("images are not available".into());
        }
        labels.push(label);
    }
    match pc.provider.could_ever_fit(&pc.ctx, &pc.pool, &labels).await {
        Ok(false) => Some("it would exceed quota".into()),
        Ok(true) => None,
        Err(e) => {
            // Cannot tell now (cloud trouble): let the handler find out.
            tracing::warn!(pool = %pc.worker_id, error = %e, "quota check failed");
            None
        }
    }
}

/// One assignment pass over the cached requests.
pub async fn assign_pass(pc: &Arc<PoolContext>) {
    let ctx = &pc.ctx;
    let max_concurrency = pc.provider_config.max_concurrency;
    if max_concurrency == 0 {
        return;
    }
    let my_provider = pc.provider_config.name.as_str();
    let my_labels: HashSet<&str> = pc.pool.labels.iter().map(|l| l.name.as_str()).collect();
    let mut requests: Vec<_> = ctx
        .cache
        .requests()
        .into_iter()
        .filter(|r| {
            r.request.state == RequestState::Requested
                && !r.request.declined_by.contains(&pc.worker_id)
                && !pc.is_handling(&r.request.id)
        })
        .collect();
    if requests.is_empty() {
        return;
    }
    let unserved = |r: &NodeRequest| {
        r.node_types
            .iter()
            .filter(|l| !my_labels.contains(l.as_str()))
            .count()
    };
    requests.sort_by(|a, b| {
        unserved(&a.request)
            .cmp(&unserved(&b.request))
            .then_with(|| a.request.cmp_priority(&b.request))
    });
    let online = online_pools(ctx);
    for cached in requests {
        if ctx.cancel.is_cancelled() {
            return;
        }
        let req = &cached.request;
        let candidates: Vec<&OnlinePool> = online
            .iter()
            .filter(|p| {
                p.id != pc.worker_id
                    && !req.declined_by.contains(&p.id)
                    && req.node_types.iter().all(|l| p.labels.contains(l))
            })
            .collect();
        if let Some(wanted) = req.provider.as_deref() {
            if wanted != my_provider && candidates.iter().any(|p| p.provider == wanted) {
                continue;
            }
        }
        if candidates
            .iter()
            .any(|p| p.priority < pc.pool.priority && !p.paused)
        {
            continue;
        }
        if unserved(req) > 0 && !candidates.is_empty() {
            continue;
        }
        let reason = decline_reason(pc, req).await;
        let mut tenant_claim = None;
        if reason.is_none() {
            match tenant_limits::check(pc, req).await {
                TenantCheck::Defer => continue,
                TenantCheck::Fits(claim) => tenant_claim = claim,
            }
            if pc.is_paused() {
                continue;
            }
            if max_concurrency > 0 && pc.provider.active_launches() as i64 >= max_concurrency {
                continue;
            }
        }
        let mut lock = ZkLock::new(ctx.store.client(), &paths::request_lock(&req.id), b"");
        match lock.try_acquire().await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::debug!(request = %req.id, error = %e, "cannot lock request");
                continue;
            }
        }
        let fresh = match ctx.store.get_request(&req.id).await {
            Ok(Some((r, _)))
                if r.state == RequestState::Requested && !r.declined_by.contains(&pc.worker_id) =>
            {
                r
            }
            _ => {
                let _ = lock.release().await;
                continue;
            }
        };
        if let Some(reason) = reason {
            if let Err(e) = decline_request(pc, &fresh.id, &reason).await {
                tracing::warn!(request = %fresh.id, error = %e, "cannot decline request");
            }
            let _ = lock.release().await;
            continue;
        }
        if !pc.start_handling(&fresh.id) {
            let _ = lock.release().await;
            continue;
        }
        if let Some((tenant, need)) = tenant_claim {
            pc.claim_tenant(&fresh.id, tenant, need);
        }
        tracing::debug!(request = %fresh.id, pool = %pc.worker_id, "accepting request");
        // Like Nodepool's pool worker, a pool takes at most one request it has no quota
        // for: that handler pauses and the pass stops, leaving the rest `requested` for
        // other pools. While there is room, the request's need is reserved until its
        // handler has claimed its nodes, so the pass can go on at once (handlers run in
        // parallel) without taking more than the quota holds.
        // The check and the claim run under the provider's launch gate, like a handler's
        // quota check and node claim, so neither sees the other half-way.
        let reservation = match request_need(pc, &fresh).await {
            Some(need) => {
                let _gate = pc.provider.launch_gate.lock().await;
                if matches!(
                    pc.provider.has_quota_for(ctx, &pc.pool, &need).await,
                    Ok(true)
                ) {
                    let id = reservation_id(&fresh.id);
                    pc.provider.claim(id.clone(), need);
                    Some(id)
                } else {
                    None
                }
            }
            None => None,
        };
        let (first_round, paused) = tokio::sync::oneshot::channel();
        let must_wait = reservation.is_none();
        let handler = Handler::new(pc.clone(), fresh, lock)
            .report_first_round(first_round)
            .with_reservation(reservation);
        tokio::spawn(handler.run());
        if must_wait {
            if let Ok(true) = paused.await {
                return;
            }
        }
    }
}

/// The claim key of a request's reservation (never a node id: those are digits).
pub fn reservation_id(id: &RequestId) -> NodeId {
    NodeId::from(format!("reservation-{id}"))
}

/// The quota the request's labels need in this pool, if every label's flavor is known.
async fn request_need(pc: &PoolContext, req: &NodeRequest) -> Option<QuotaInformation> {
    let mut total = QuotaInformation::usage();
    for name in &req.node_types {
        let label = pc.label(name)?;
        total.add(&pc.provider.label_need(label).await.ok()?);
    }
    Some(total)
}
