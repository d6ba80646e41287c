//! The CleanupWorker: every [`Intervals::cleanup`] it runs, in order,
//!
//! 1. [`request_locks`]: request-lock dirs whose request is gone and older than
//!    [`Intervals::request_lock_age`] are removed;
//! 2. [`leaked_resources`]: each started provider's [`LeakCleaner`] pass;
//! 3. [`lost_requests`]: `pending` requests whose lock can be taken (their handler died)
//!    go back to `requested`; their allocated nodes are released (`init` ones are
//!    marked `deleting`);
//! 4. [`max_ready_age`]: unallocated `ready` nodes older than their label's
//!    `max-ready-age` are marked `deleting`;
//! 5. [`max_hold_age`]: `hold` nodes past `hold_expiration` / `max-hold-age` are marked
//!    `deleting`;
//! 6. [`empty_nodes`]: node znodes without data are removed.
//!
//! Each step runs even if an earlier one failed; the DeletedNodeWorker does the actual
//! deleting of nodes marked here.
//!
//! [`Intervals::cleanup`]: super::runtime::Intervals::cleanup
//! [`Intervals::request_lock_age`]: super::runtime::Intervals::request_lock_age
//! [`LeakCleaner`]: super::leaks::LeakCleaner

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nodepool_shared::model::{
    now_epoch, paths, NodeId, NodeRequest, NodeState, NodeView, RequestState,
};
use nodepool_shared::zk::{SyncState, ZkError, ZkLock, ZkResult};
use tracing::{debug, info, warn};

use super::deleter::{lock_node, LockedNode};
use super::runtime::LauncherContext;
use nodepool_shared::sync::RwLockExt;

/// Task name in the state dump.
pub const TASK: &str = "CleanupWorker";

/// What one [`pass`] did (counts per step, and the errors met).
#[derive(Debug, Default)]
pub struct CleanupReport {
    /// Request-lock dirs removed.
    pub request_locks: usize,
    /// Leaked instances deleted (all providers).
    pub leaked_instances: usize,
    /// Leaked DOWN ports deleted.
    pub leaked_ports: usize,
    /// Leaked floating IPs deleted.
    pub leaked_floating_ips: usize,
    /// Lost requests reset to `requested`.
    pub lost_requests: usize,
    /// Ready nodes marked `deleting` for their age.
    pub max_ready_age: usize,
    /// Held nodes marked `deleting` for their age.
    pub max_hold_age: usize,
    /// Empty node znodes removed.
    pub empty_nodes: usize,
    /// What failed (the pass went on).
    pub errors: Vec<String>,
    /// The time each step took, in order (what a pass costs at scale).
    pub took: Vec<(&'static str, Duration)>,
}

impl CleanupReport {
    fn error(&mut self, step: &str, e: impl std::fmt::Display) {
        warn!("cleanup {step}: {e}");
        self.errors.push(format!("{step}: {e}"));
    }

    /// One-line summary.
    pub fn summary(&self) -> String {
        format!(
            "request locks {}, leaked instances {}, ports {}, floating ips {}, lost requests {}, \
             max-ready-age {}, max-hold-age {}, empty nodes {}, errors {}",
            self.request_locks,
            self.leaked_instances,
            self.leaked_ports,
            self.leaked_floating_ips,
            self.lost_requests,
            self.max_ready_age,
            self.max_hold_age,
            self.empty_nodes,
            self.errors.len()
        ) + &self.timing()
    }

    /// `; took N ms (step a ms, …)` for the steps timed.
    fn timing(&self) -> String {
        if self.took.is_empty() {
            return String::new();
        }
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        let total: Duration = self.took.iter().map(|(_, d)| *d).sum();
        let steps: Vec<String> = self
            .took
            .iter()
            .map(|(step, d)| format!("{step} {:.1}", ms(d)))
            .collect();
        format!("; took {:.1} ms ({})", ms(&total), steps.join(", "))
    }
}

/// Milliseconds since the epoch (ZooKeeper's `mtime` unit).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One complete pass of all six steps, in order.
pub async fn pass(ctx: &LauncherContext) -> CleanupReport {
    let mut report = CleanupReport::default();
    let mut at = std::time::Instant::now();
    let mut lap = |report: &mut CleanupReport, step: &'static str| {
        let now = std::time::Instant::now();
        report.took.push((step, now - at));
        at = now;
    };
    match request_locks(ctx).await {
        Ok(n) => report.request_locks = n,
        Err(e) => report.error("request locks", e),
    }
    lap(&mut report, "request locks");
    leaked_resources(ctx, &mut report).await;
    lap(&mut report, "leaked resources");
    match lost_requests(ctx).await {
        Ok(n) => report.lost_requests = n,
        Err(e) => report.error("lost requests", e),
    }
    lap(&mut report, "lost requests");
    match max_ready_age(ctx).await {
        Ok(n) => report.max_ready_age = n,
        Err(e) => report.error("max-ready-age", e),
    }
    lap(&mut report, "max-ready-age");
    match max_hold_age(ctx).await {
        Ok(n) => report.max_hold_age = n,
        Err(e) => report.error("max-hold-age", e),
    }
    lap(&mut report, "max-hold-age");
    match empty_nodes(ctx).await {
        Ok(n) => report.empty_nodes = n,
        Err(e) => report.error("empty nodes", e),
    }
    lap(&mut report, "empty nodes");
    report
}

/// Step 1: removes request-lock dirs whose request is gone and whose mtime is older
/// than `intervals.request_lock_age`. Returns how many were removed.
pub async fn request_locks(ctx: &LauncherContext) -> ZkResult<usize> {
    let max_age = ctx.intervals.request_lock_age.as_millis() as i64;
    let now = now_ms();
    let mut removed = 0;
    for (id, stat) in ctx.store.request_lock_dirs().await? {
        if now - stat.mtime <= max_age {
            continue;
        }
        if ctx
            .store
            .client()
            .exists(&paths::request(&id))
            .await?
            .is_some()
        {
            continue;
        }
        debug!(request = %id, "removing old request lock dir");
        ctx.store.delete_request_lock_dir(&id).await?;
        removed += 1;
    }
    Ok(removed)
}

/// Step 2: one leak pass per started provider. Skipped while the tree cache is not
/// synced: the known node ids would be incomplete.
pub async fn leaked_resources(ctx: &LauncherContext, report: &mut CleanupReport) {
    if ctx.cache.status().state != SyncState::Synced {
        report.error("leaked resources", "tree cache not synced; skipped");
        return;
    }
    let mut providers: Vec<_> = ctx.providers.read_or_recover().values().cloned().collect();
    providers.sort_by(|a, b| a.name().cmp(b.name()));
    for rt in providers {
        let known = ctx.known_nodes(rt.name());
        let r = rt.leaks.lock().await.pass(&*rt.driver, &known).await;
        report.leaked_instances += r.instances;
        report.leaked_ports += r.ports;
        report.leaked_floating_ips += r.floating_ips;
        for e in r.errors {
            report.error(&format!("leaked resources of {}", rt.name()), e);
        }
    }
}

/// Step 3: resets `pending` requests nobody holds (their handler died). Nodes allocated
/// to such a request are locked: `init` ones become `deleting`, the others lose their
/// allocation; the request goes back to `requested` with no nodes (`declined_by`
/// kept). Returns how many requests were reset.
pub async fn lost_requests(ctx: &LauncherContext) -> ZkResult<usize> {
    let mut reset = 0;
    for cached in ctx.cache.requests() {
        let id = &cached.request.id;
        // As the cache has it now (the pass awaits between requests), record and lock
        // read together: a handler's unlock is never paired with its older `pending`.
        let (now, locked) = ctx.cache.request_with_lock(id);
        let pending = now.is_some_and(|c| c.request.state == RequestState::Pending);
        if !pending || locked {
            continue;
        }
        let mut lock = ZkLock::new(ctx.store.client(), &paths::request_lock(id), b"");
        if !lock.try_acquire().await? {
            continue;
        }
        let r = reset_request(ctx, id).await;
        if let Err(e) = lock.release().await {
            warn!(request = %id, "cannot release request lock: {e}");
        }
        if r? {
            reset += 1;
        }
    }
    Ok(reset)
}

/// Resets one locked request if it is still `pending`.
///
/// The nodes allocated to it are locked first and changed only after the request's
/// conditional write: a handler that still believes it holds the request (its
/// launcher was stopped past the session timeout and has just resumed) writes
/// `fulfilled` conditional on its own version, so either its write lands first and
/// this reset gives up with the nodes untouched, or the reset lands first and the
/// handler's write fails. Either way no request is fulfilled with nodes taken back.
async fn reset_request(
    ctx: &LauncherContext,
    id: &nodepool_shared::model::RequestId,
) -> ZkResult<bool> {
    let Some((req, stat)) = ctx.store.get_request(id).await? else {
        return Ok(false);
    };
    if req.state != RequestState::Pending {
        return Ok(false);
    }
    reset_pending(ctx, req, stat.version).await
}

/// Resets `req`, read `pending` at `version` under its lock (see [`reset_request`]);
/// false if the request changed since that read. Public for the test of that race.
pub async fn reset_pending(
    ctx: &LauncherContext,
    mut req: NodeRequest,
    version: i32,
) -> ZkResult<bool> {
    let id = &req.id.clone();
    info!(request = %id, "resetting lost request");
    let nodes = lock_allocated_nodes(ctx, id).await?;
    req.set_state(RequestState::Requested);
    req.nodes.clear();
    if let Err(e) = ctx.store.store_request(&req, Some(version)).await {
        for locked in nodes {
            locked.unlock().await;
        }
        return match e {
            ZkError::BadVersion(_) | ZkError::NoNode(_) => {
                info!(request = %id, "lost request changed meanwhile; not reset");
                Ok(false)
            }
            e => Err(e),
        };
    }
    for mut locked in nodes {
        if locked.node.state == NodeState::Init {
            locked.node.set_state(NodeState::Deleting);
        } else {
            locked.node.allocated_to = None;
        }
        if let Err(e) = ctx
            .store
            .store_node(&locked.node, Some(locked.version))
            .await
        {
            warn!(node = %locked.node.id, request = %id, "cannot release node of lost request: {e}");
        }
        locked.unlock().await;
    }
    Ok(true)
}

/// Locks the nodes allocated to request `id` that nobody holds (a locked one is left
/// alone), re-checked on the fresh record. On an error every lock taken is released.
async fn lock_allocated_nodes(
    ctx: &LauncherContext,
    id: &nodepool_shared::model::RequestId,
) -> ZkResult<Vec<LockedNode>> {
    let allocated: Vec<NodeId> = ctx
        .cache
        .allocated_nodes(id)
        .iter()
        .map(|n| n.id().clone())
        .collect();
    let mut held = Vec::new();
    for node_id in allocated {
        match lock_node(ctx, &node_id).await {
            Ok(Some(locked)) if locked.node.allocated_to.as_ref() == Some(id) => held.push(locked),
            Ok(Some(locked)) => locked.unlock().await,
            Ok(None) => {
                debug!(node = %node_id, "allocated node of lost request is locked; left alone")
            }
            Err(e) => {
                for locked in held {
                    locked.unlock().await;
                }
                return Err(e);
            }
        }
    }
    Ok(held)
}

/// Locks a node, re-checks `still` on the fresh record and marks it `deleting`.
async fn mark_deleting(
    ctx: &LauncherContext,
    id: &NodeId,
    still: impl Fn(&nodepool_shared::model::Node) -> bool,
    why: &str,
) -> ZkResult<bool> {
    let Some(mut locked) = lock_node(ctx, id).await? else {
        return Ok(false);
    };
    if !still(&locked.node) {
        locked.unlock().await;
        return Ok(false);
    }
    info!(node = %id, "{why}: marking node deleting");
    locked.node.set_state(NodeState::Deleting);
    let r = ctx
        .store
        .store_node(&locked.node, Some(locked.version))
        .await;
    locked.unlock().await;
    r.map(|_| true)
}

/// Step 4: unallocated `ready` nodes older than a label's `max-ready-age` (any label of
/// the node that has one) are marked `deleting`. Returns how many.
pub async fn max_ready_age(ctx: &LauncherContext) -> ZkResult<usize> {
    let config = ctx.config();
    let ages: Vec<(String, Duration)> = config
        .labels
        .iter()
        .filter_map(|l| l.max_ready_age.map(|a| (l.name.clone(), a)))
        .filter(|(_, a)| !a.is_zero())
        .collect();
    if ages.is_empty() {
        return Ok(0);
    }
    let too_old = |node: &dyn NodeView, now: f64| {
        node.node_state() == NodeState::Ready
            && node.node_allocated_to().is_none()
            && ages.iter().any(|(l, a)| {
                node.node_has_label(l) && now - node.node_state_time() > a.as_secs_f64()
            })
    };
    let mut marked = 0;
    // Only the candidates are copied out of the cache (not 100,000 nodes per pass).
    let now = now_epoch();
    let candidates = ctx
        .cache
        .select_nodes(|n| !n.probably_locked() && too_old(&*n.node, now));
    for n in candidates {
        if mark_deleting(ctx, n.id(), |f| too_old(f, now_epoch()), "max-ready-age").await? {
            marked += 1;
        }
    }
    Ok(marked)
}

/// The hold limit of a node in seconds: min(`hold_expiration` if > 0, `max-hold-age`);
/// `None` = kept forever.
pub fn hold_limit(hold_expiration: Option<i64>, max_hold_age: Option<Duration>) -> Option<f64> {
    let exp = hold_expiration.filter(|e| *e > 0).map(|e| e as f64);
    let max = max_hold_age
        .filter(|a| !a.is_zero())
        .map(|a| a.as_secs_f64());
    match (exp, max) {
        (Some(e), Some(m)) => Some(e.min(m)),
        (e, m) => e.or(m),
    }
}

/// Step 5: `hold` nodes held longer than their limit ([`hold_limit`]) are marked
/// `deleting`. Returns how many.
pub async fn max_hold_age(ctx: &LauncherContext) -> ZkResult<usize> {
    let max = ctx.config().max_hold_age;
    let expired = |node: &dyn NodeView, now: f64| {
        node.node_state() == NodeState::Hold
            && hold_limit(node.node_hold_expiration(), max)
                .is_some_and(|l| now - node.node_state_time() >= l)
    };
    let mut marked = 0;
    let now = now_epoch();
    let candidates = ctx
        .cache
        .select_nodes(|n| !n.probably_locked() && expired(&*n.node, now));
    for n in candidates {
        if mark_deleting(ctx, n.id(), |f| expired(f, now_epoch()), "max-hold-age").await? {
            marked += 1;
        }
    }
    Ok(marked)
}

/// Step 6: removes node znodes without data (left by a lock attempt on a deleted
/// node: kazoo's lock recipe re-creates the lock dir's parents). Re-checked in ZooKeeper
/// before deleting. Returns how many.
pub async fn empty_nodes(ctx: &LauncherContext) -> ZkResult<usize> {
    let mut removed = 0;
    for id in ctx.cache.empty_node_ids() {
        match ctx.store.client().get(&paths::node(&id)).await? {
            Some((data, _)) if data.is_empty() => {}
            _ => continue,
        }
        info!(node = %id, "removing empty node znode");
        ctx.store.delete_node_znode(&id).await?;
        removed += 1;
    }
    Ok(removed)
}

/// Runs a pass every `intervals.cleanup` until `ctx.cancel` fires.
pub async fn run(ctx: Arc<LauncherContext>) {
    let mut tick = tokio::time::interval(ctx.intervals.cleanup);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ctx.set_task_state(TASK, "waiting for the first pass");
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        ctx.set_task_state(TASK, "running a pass");
        let report = tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            r = pass(&ctx) => r,
        };
        debug!("cleanup pass: {}", report.summary());
        ctx.set_task_state(TASK, format!("idle; last pass: {}", report.summary()));
    }
    ctx.set_task_state(TASK, "stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_limits() {
        let d = |s| Some(Duration::from_secs(s));
        assert_eq!(hold_limit(None, None), None);
        assert_eq!(hold_limit(Some(0), None), None);
        assert_eq!(hold_limit(Some(-5), d(0)), None);
        assert_eq!(hold_limit(Some(30), None), Some(30.0));
        assert_eq!(hold_limit(None, d(60)), Some(60.0));
        assert_eq!(hold_limit(Some(30), d(60)), Some(30.0));
        assert_eq!(hold_limit(Some(90), d(60)), Some(60.0));
    }
}
