//! One provider-pool worker: registers the pool component, and on
//! every tree-cache change, config reload or handler pause (or a short fallback tick for
//! timeouts) runs an assignment pass over the cached requests: serviceable ones first,
//! then by priority; skips, yields and defers as Nodepool does (also for tenant limits);
//! declines what this pool can never serve; locks and hands the rest to a [`Handler`]
//! task each.
//!
//! The worker reads its pool from the current config on every pass (see
//! `pool_context`): a reload that changes the pool updates the component (`supported_labels`,
//! `priority`) without restarting the worker, so its id stays. The main loop stops it
//! when the pool or its provider leaves the config; its handlers run on (a waiting one
//! declines at its next retry) in the launcher's handler group.
//!
//! A pass, phase by phase: [`pending_in_order`] (requests to look at, sorted),
//! [`Rivals::yields`] (another pool should have it), [`admit`] (decline, defer or accept by our
//! pool's state), [`lock_fresh`] (lock and re-read; not tried while the cache shows a
//! contender on the request's lock or the request no longer waiting, nor while another
//! pool worker of this launcher tries or holds it: `request_tries`), then a decline or
//! [`hand_over`]
//! (reserve its quota, start its handler; a pool without quota takes at most one).
//!
//! A pass looks only at the requests whose outcome may have changed since the worker
//! last left them alone ([`Verdicts`]): new or changed ones, and those whose reason to
//! wait (yield, tenant limits, pause, `max-concurrency`, someone else's lock) is gone.
//! The order comes from the cache, which keeps the waiting requests sorted.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodepool_shared::config::{Pool, Provider};
use nodepool_shared::model::{
    paths, Component, ComponentKind, ComponentState, NodeId, NodeRequest, PoolInfo,
    QuotaInformation, RequestId, RequestState,
};
use nodepool_shared::stats::names;
use nodepool_shared::zk::{CachedRequest, ComponentRegistration, ZkLock};
use tokio_util::sync::CancellationToken;

use super::decline::{decline_request, DeclineReason};
use super::handler::Handler;
use super::label_checks::{LabelChecks, LabelMemo};
use super::pool_context::{PoolContext, PoolView};
use super::providers::ProviderHandle;
use super::rivals::{online_pools, Rivals};
use super::runtime::LauncherContext;
use super::tenant_limits::{self, TenantCheck};
use super::verdicts::{Verdict, Verdicts, Work};
use nodepool_shared::sync::MutexExt;

/// The version written into component records.
pub const COMPONENT_VERSION: &str = nodepool_shared::version::COMPONENT_VERSION;

/// How long a new worker waits to see its own component in the cache.
const REGISTRATION_VISIBLE: Duration = Duration::from_secs(5);

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

/// A worker's component registration, shared with the main loop: a worker aborted after
/// its grace period cannot unregister itself, so the main loop does it.
#[derive(Clone, Default)]
pub struct RegistrationSlot(Arc<Mutex<Option<Arc<ComponentRegistration>>>>);

impl RegistrationSlot {
    pub(crate) fn set(&self, r: Arc<ComponentRegistration>) {
        *self.0.lock_or_recover() = Some(r);
    }

    /// Removes the component record, once (later calls do nothing). Call it after the
    /// worker ended (by itself or aborted), so that nobody else holds the registration.
    pub async fn unregister(&self) {
        let taken = self.0.lock_or_recover().take();
        let Some(r) = taken else {
            return;
        };
        match Arc::try_unwrap(r) {
            Ok(r) => {
                if let Err(e) = r.unregister().await {
                    tracing::warn!(error = %e, "cannot unregister pool component");
                }
            }
            Err(r) => {
                tracing::warn!(path = %r.path(), "pool component still in use; not unregistered");
            }
        }
    }
}

/// What the component says now (updated when the config or the pause changes it).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Published {
    pub labels: Vec<String>,
    pub priority: i64,
    pub paused: bool,
}

impl Published {
    /// Whether the component says what `view` and `paused` say it should.
    fn matches(&self, view: &PoolView, paused: bool) -> bool {
        self.priority == view.pool().priority
            && self.paused == paused
            && self.labels.iter().map(String::as_str).eq(view
                .pool()
                .labels
                .iter()
                .map(|l| l.name.as_str()))
    }
}

/// Runs a pool worker until `stop` (or the launcher's cancel) fires; then unregisters.
/// Its handlers go on in the launcher's handler group.
pub async fn run(pc: Arc<PoolContext>, slot: RegistrationSlot, stop: CancellationToken) {
    let ctx = pc.ctx.clone();
    let task = pc.task_name();
    let Ok(view) = pc.view() else {
        return;
    };
    let mut published = Published {
        labels: view.label_names(),
        priority: view.pool().priority,
        paused: false,
    };
    let component = pool_component(&ctx.hostname, &pc.worker_id, &pc.provider_name, view.pool());
    drop(view);
    let Some(registration) = register(&ctx, &task, component, &stop).await else {
        return;
    };
    let registration = Arc::new(registration);
    slot.set(registration.clone());
    tracing::info!(pool = %task, id = %pc.worker_id, "pool worker started");
    let mut paused_rx = pc.paused.subscribe();
    let mut verdicts = Verdicts::new(ctx.cache.subscribe());
    wait_visible(&ctx, &pc.worker_id, &stop).await;
    let mut generation = ctx.cache.watch_generation();
    let mut config = ctx.config.clone();
    let mut last_gauge: Option<tokio::time::Instant> = None;
    loop {
        generation.borrow_and_update();
        config.borrow_and_update();
        match pc.view() {
            Ok(view) => {
                ctx.set_task_state(&task, "assigning");
                assign_pass(&pc, &view, &mut verdicts).await;
                if last_gauge.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    max_servers_gauge(&ctx, view.provider_config());
                    tenant_limits::emit_gauges(&ctx);
                    last_gauge = Some(tokio::time::Instant::now());
                }
                // Compared before the labels are copied: this runs on every wake.
                if !published.matches(&view, pc.is_paused()) {
                    let want = Published {
                        labels: view.label_names(),
                        priority: view.pool().priority,
                        paused: pc.is_paused(),
                    };
                    publish(&registration, &mut published, want).await;
                }
            }
            // The main loop stops this worker soon; its handlers see the same.
            Err(gone) => tracing::debug!(pool = %task, %gone, "pool not in the current config"),
        }
        ctx.set_task_state(&task, if pc.is_paused() { "paused" } else { "idle" });
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ctx.cancel.cancelled() => break,
            _ = generation.changed() => {}
            _ = paused_rx.changed() => {}
            _ = pc.handler_ended.notified() => {}
            Ok(()) = config.changed() => {}
            _ = tokio::time::sleep(ctx.intervals.pool_tick) => {}
        }
    }
    ctx.task_states.lock_or_recover().remove(&task);
    drop(registration);
    slot.unregister().await;
    tracing::info!(pool = %task, "pool worker stopped");
}

/// Registers the component, retrying until it works or the worker is stopped.
pub(crate) async fn register(
    ctx: &LauncherContext,
    task: &str,
    component: Component,
    stop: &CancellationToken,
) -> Option<ComponentRegistration> {
    loop {
        match ctx.store.register_component(component.clone()).await {
            Ok(r) => return Some(r),
            Err(e) => {
                tracing::warn!(pool = %task, error = %e, "cannot register pool component; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = ctx.cancel.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Writes the component when what it should say changed (retried on the next loop if
/// the write fails).
pub(crate) async fn publish(
    registration: &ComponentRegistration,
    published: &mut Published,
    want: Published,
) {
    if *published == want {
        return;
    }
    let w = want.clone();
    let r = registration
        .update(move |c| {
            if let Some(p) = c.pool.as_mut() {
                p.supported_labels = w.labels;
                p.priority = w.priority;
                p.paused = w.paused;
            }
        })
        .await;
    match r {
        Ok(()) => *published = want,
        Err(e) => tracing::warn!(error = %e, "cannot update pool component"),
    }
}

/// Waits (at most [`REGISTRATION_VISIBLE`]) until the cache shows the component `id`.
pub(crate) async fn wait_visible(ctx: &LauncherContext, id: &str, stop: &CancellationToken) {
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
fn max_servers_gauge(ctx: &LauncherContext, provider: &Provider) {
    let key = names::provider_max_servers(&provider.name);
    match provider_max_servers(provider) {
        Some(total) => ctx.statsd.gauge(&key, total),
        None => ctx.statsd.gauge_f64(&key, f64::INFINITY),
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

/// One assignment pass over the requests that need a look (see the module doc for the
/// phases).
pub async fn assign_pass(pc: &Arc<PoolContext>, view: &PoolView, verdicts: &mut Verdicts) {
    let started = std::time::Instant::now();
    let max_concurrency = view.provider_config().max_concurrency;
    let mut label_checks = LabelMemo::default();
    if max_concurrency != 0 && verdicts.recheck_due(pc) {
        let (lists, moved) = verdicts.recheck(pc, view, &mut label_checks).await;
        tracing::debug!(pool = %pc.worker_id, lists, moved,
            micros = started.elapsed().as_micros() as u64, "label checks rechecked");
    }
    let work = verdicts.prepare(pc, view.config_arc(), max_concurrency);
    if max_concurrency == 0 {
        return;
    }
    if matches!(&work, Work::Some(ids) if ids.is_empty()) {
        // Most wakes (a node's event, another pool's request): nothing to look at.
        return;
    }
    let my_labels: HashSet<&str> = view.pool().labels.iter().map(|l| l.name.as_str()).collect();
    let (requests, all) = match work {
        Work::All => (pending_in_order(pc, &my_labels), true),
        Work::Some(ids) => (pending_among(pc, &my_labels, &ids), false),
    };
    let looked_at = requests.len();
    if looked_at > 0 {
        tracing::debug!(pool = %pc.worker_id, looked_at, all, "assignment pass");
    }
    let mut rivals = Rivals::new(
        verdicts.online(),
        &pc.worker_id,
        &pc.provider_name,
        view.pool().priority,
    );
    let mut tenant_usage = tenant_limits::UsageMemo::new();
    let mut rest = requests.into_iter();
    while let Some(cached) = rest.next() {
        if pc.ctx.cancel.is_cancelled() {
            return;
        }
        let req = &cached.request;
        let lacks_label = req.node_types.iter().any(|l| view.label(l).is_none());
        if rivals.yields(req, lacks_label) {
            verdicts.decide(req.id.clone(), Verdict::Yielded);
            continue;
        }
        let checks = label_checks.get(&pc.ctx, view, &req.node_types).await;
        let admission = match admit(pc, view, req, &checks, &mut tenant_usage).await {
            Ok(a) => a,
            Err(wait) => {
                verdicts.decide(req.id.clone(), wait);
                continue;
            }
        };
        let (mut lock, fresh) = match lock_fresh(&pc.ctx, &pc.worker_id, req).await {
            Locked::Fresh(lock, fresh) => (lock, *fresh),
            // A changed record comes back as a cache event; a lock released as well.
            Locked::Stale => continue,
            // Someone holds or waits for its lock (in the cache or in ZooKeeper). Not
            // trying while the cache shows a contender spares ZooKeeper a contender
            // create and delete per pool worker, and every launcher the events of
            // those: with 60 pool workers that storm slowed the winner's writes. The
            // lock's events bring it back.
            Locked::Busy => {
                verdicts.decide(req.id.clone(), Verdict::LockBusy);
                continue;
            }
            // Another pool worker of this launcher is trying or holds it: its outcome
            // (its contender in the cache, a changed record) wakes this worker, at the
            // latest the tick.
            Locked::Sibling => {
                verdicts.retry(req.id.clone());
                continue;
            }
            Locked::Failed => {
                verdicts.retry(req.id.clone());
                continue;
            }
        };
        match admission {
            Admission::Decline(reason) => {
                if let Err(e) = decline_request(pc, &fresh.id, &reason, None).await {
                    tracing::warn!(request = %fresh.id, error = %e, "cannot decline request");
                    verdicts.retry(fresh.id.clone());
                }
                let _ = lock.release().await;
            }
            Admission::Accept(tenant_claim) => {
                if let Some((tenant, _)) = &tenant_claim {
                    tenant_usage.remove(tenant);
                }
                if hand_over(pc, view, fresh, lock, tenant_claim).await == Flow::StopPass {
                    // Paused: the rest waits for the pause to end (the next pass says so).
                    rest.for_each(|r| verdicts.retry(r.request.id.clone()));
                    return;
                }
            }
        }
    }
    if all && looked_at > 0 {
        // What a look at every waiting request costs (`pool_recheck`, see `verdicts`).
        tracing::debug!(pool = %pc.worker_id, looked_at,
            micros = started.elapsed().as_micros() as u64, "full assignment pass done");
    }
}

/// Whether this pool may look at `r` at all: `requested`, not declined by us, not
/// handled here.
fn open_for(pc: &PoolContext, r: &NodeRequest) -> bool {
    r.state == RequestState::Requested
        && !r.declined_by.contains(&pc.worker_id)
        && !pc.is_handling(&r.id)
}

/// Orders requests already in priority order as Nodepool's pool worker does: those with
/// the fewest labels we do not serve first (a stable sort keeps the priority order
/// within each group).
fn serviceable_first(
    requests: Vec<Arc<CachedRequest>>,
    my_labels: &HashSet<&str>,
) -> Vec<Arc<CachedRequest>> {
    let unserved = |r: &NodeRequest| {
        r.node_types
            .iter()
            .filter(|l| !my_labels.contains(l.as_str()))
            .count()
    };
    let mut keyed: Vec<(usize, Arc<CachedRequest>)> = requests
        .into_iter()
        .map(|r| (unserved(&r.request), r))
        .collect();
    keyed.sort_by_key(|(u, _)| *u);
    keyed.into_iter().map(|(_, r)| r).collect()
}

/// `requested` requests this pool has not declined and does not handle, in Nodepool's
/// order: those with the fewest labels we do not serve first, then by priority (the
/// cache keeps them in priority order).
pub(crate) fn pending_in_order(
    pc: &PoolContext,
    my_labels: &HashSet<&str>,
) -> Vec<Arc<CachedRequest>> {
    let open: Vec<Arc<CachedRequest>> = pc
        .ctx
        .cache
        .requested_in_order()
        .into_iter()
        .filter(|r| open_for(pc, &r.request))
        .collect();
    serviceable_first(open, my_labels)
}

/// [`pending_in_order`] restricted to `ids`.
fn pending_among(
    pc: &PoolContext,
    my_labels: &HashSet<&str>,
    ids: &HashSet<RequestId>,
) -> Vec<Arc<CachedRequest>> {
    let mut open: Vec<Arc<CachedRequest>> = ids
        .iter()
        .filter_map(|id| pc.ctx.cache.request(id))
        .filter(|r| open_for(pc, &r.request))
        .collect();
    open.sort_by(|a, b| {
        a.request
            .cmp_priority(&b.request)
            .then(a.request.id.cmp(&b.request.id))
    });
    serviceable_first(open, my_labels)
}

/// What this pool does with a request it may take.
enum Admission {
    /// Decline it (under its lock).
    Decline(Arc<DeclineReason>),
    /// Accept it; when its tenant has limits, the (tenant, need) to count meanwhile.
    Accept(Option<(String, QuotaInformation)>),
}

/// Decline or accept `req` — or defer it, with the reason (tenant limits, our pool
/// paused, `max-concurrency` reached).
async fn admit(
    pc: &PoolContext,
    view: &PoolView,
    req: &NodeRequest,
    checks: &Arc<LabelChecks>,
    tenant_usage: &mut tenant_limits::UsageMemo,
) -> Result<Admission, Verdict> {
    if let Some(reason) = checks.decline() {
        return Ok(Admission::Decline(reason.clone()));
    }
    let claim = match tenant_limits::check(pc, view, req, checks, tenant_usage).await {
        TenantCheck::Defer(basis) => return Err(Verdict::TenantFull(basis, checks.clone())),
        TenantCheck::Fits(claim) => claim,
    };
    if pc.is_paused() {
        return Err(Verdict::Paused(checks.clone()));
    }
    let max_concurrency = view.provider_config().max_concurrency;
    if max_concurrency > 0 && view.provider.active_launches() as i64 >= max_concurrency {
        return Err(Verdict::AtConcurrency(checks.clone()));
    }
    Ok(Admission::Accept(claim))
}

/// The outcome of [`lock_fresh`].
pub enum Locked {
    /// Locked, and still ours to take (the record as read under the lock).
    Fresh(ZkLock, Box<NodeRequest>),
    /// Someone else holds the lock.
    Busy,
    /// Another pool worker of this launcher is trying or holds the lock (not tried).
    Sibling,
    /// Locked, but no longer `requested` or already declined by us (released).
    Stale,
    /// ZooKeeper trouble (try again later).
    Failed,
}

/// Locks `req` for the pool worker `worker_id` without waiting and re-reads it: still
/// `requested` and not declined by us (see [`Locked`]; the lock is released unless
/// `Fresh`). A lock taken carries this launcher's try (`request_tries`) until it is
/// released: no sibling pool worker tries it meanwhile, even before this launcher's
/// cache shows the new contender.
///
/// `req` is the record as the pass found it, which may be older than the cache by now:
/// a pass awaits (label checks may call the cloud) while another pool worker locks,
/// fulfils and unlocks the request. So the lock is not tried when the cache shows the
/// request locked (`Busy`: a try would fail) or no longer waiting for us (`Stale`: the
/// lock would be taken only to find that out). Both spare ZooKeeper a contender create
/// and delete, and every launcher its events. (The cache is read with the lock state in
/// one go: it applies events in order, so it never pairs an unlock with an older record.)
pub async fn lock_fresh(ctx: &LauncherContext, worker_id: &str, req: &NodeRequest) -> Locked {
    match ctx.cache.request_with_lock(&req.id) {
        (_, true) => return Locked::Busy,
        (Some(now), false) if waits_for(&now.request, worker_id) => {}
        _ => return Locked::Stale,
    }
    let Some(trying) = ctx.request_tries.begin(&req.id) else {
        return Locked::Sibling;
    };
    // A new request's lock dir does not exist yet: the lock takes one multi (dir and
    // contender), sent first, and the re-read is sent right behind it. ZooKeeper
    // answers a session's requests in order, so that read sees the request as it is
    // once locked: the re-read of Nodepool's double check, in the same round trip.
    // When the lock took the recipe's way (the dir was there) the early read may
    // predate the lock: the request is read again.
    let mut lock =
        ZkLock::new(ctx.store.client(), &paths::request_lock(&req.id), b"").expect_new_dir();
    let (locked, early) = tokio::join!(lock.try_acquire(), ctx.store.get_request(&req.id));
    match locked {
        Ok(true) => {}
        Ok(false) => return Locked::Busy,
        Err(e) => {
            tracing::debug!(request = %req.id, error = %e, "cannot lock request");
            return Locked::Failed;
        }
    }
    let read = if lock.made_dir() {
        early
    } else {
        ctx.store.get_request(&req.id).await
    };
    let outcome = match read {
        Ok(Some((r, _))) if waits_for(&r, worker_id) => {
            lock.keep_while_held(trying);
            return Locked::Fresh(lock, Box::new(r));
        }
        Ok(_) => Locked::Stale,
        Err(_) => Locked::Failed,
    };
    let _ = lock.release().await;
    outcome
}

/// Whether `req` still waits for the pool worker `worker_id`: `requested`, and not
/// declined by it.
fn waits_for(req: &NodeRequest, worker_id: &str) -> bool {
    req.state == RequestState::Requested && !req.declined_by.iter().any(|d| d == worker_id)
}

/// Whether the pass goes on after a hand-over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    StopPass,
}

/// Starts the handler of an accepted, locked request.
///
/// Like Nodepool's pool worker, a pool takes at most one request it has no quota for:
/// that handler pauses and the pass stops, leaving the rest `requested` for other pools.
/// While there is room, the request's need is reserved until its handler has claimed
/// its nodes, so the pass can go on at once (handlers run in parallel) without taking
/// more than the quota holds. The check and the claim run under the provider's launch
/// gate, like a handler's quota check and node claim, so neither sees the other
/// half-way.
async fn hand_over(
    pc: &Arc<PoolContext>,
    view: &PoolView,
    fresh: NodeRequest,
    mut lock: ZkLock,
    tenant_claim: Option<(String, QuotaInformation)>,
) -> Flow {
    if !pc.start_handling(&fresh.id) {
        let _ = lock.release().await;
        return Flow::Continue;
    }
    if let Some((tenant, need)) = tenant_claim {
        pc.claim_tenant(&fresh.id, tenant, need);
    }
    tracing::debug!(request = %fresh.id, pool = %pc.worker_id, "accepting request");
    let reservation = reserve(pc, view, &fresh).await;
    tracing::debug!(request = %fresh.id, reserved = reservation.is_some(), "handler starting");
    let (first_round, paused) = tokio::sync::oneshot::channel();
    let must_wait = reservation.is_none();
    let name = Handler::task_name(&pc.worker_id, &fresh);
    let handler = Handler::new(pc.clone(), fresh, lock)
        .report_first_round(first_round)
        .with_reservation(reservation);
    pc.handlers.spawn(name, handler.run());
    if must_wait {
        if let Ok(true) = paused.await {
            return Flow::StopPass;
        }
    }
    Flow::Continue
}

/// Claims the request's need on the provider if it fits now (see [`hand_over`]).
async fn reserve(
    pc: &PoolContext,
    view: &PoolView,
    req: &NodeRequest,
) -> Option<(Arc<ProviderHandle>, NodeId)> {
    let need = request_need(view, req).await?;
    let provider = &view.provider;
    let _gate = provider.launch_gate.lock().await;
    if !matches!(
        provider.has_quota_for(&pc.ctx, view.pool(), &need).await,
        Ok(true)
    ) {
        return None;
    }
    let id = reservation_id(&req.id);
    provider.claim(id.clone(), need);
    Some((provider.clone(), id))
}

/// The claim key of a request's reservation (never a node id: those are digits).
pub fn reservation_id(id: &RequestId) -> NodeId {
    NodeId::from(format!("reservation-{id}"))
}

/// The quota the request's labels need in this pool, if every label's flavor is known.
async fn request_need(view: &PoolView, req: &NodeRequest) -> Option<QuotaInformation> {
    let mut total = QuotaInformation::usage();
    for name in &req.node_types {
        let label = view.label(name)?;
        total.add(&view.provider.label_need(label).await.ok()?);
    }
    Some(total)
}
