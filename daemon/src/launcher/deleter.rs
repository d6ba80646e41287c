//! The DeletedNodeWorker: reclaims nodes nobody holds any more.
//!
//! For every cached node of a provider started in this launcher that has no lock
//! contenders:
//! * `ready` and allocated to a request that no longer exists → lock, re-check, clear
//!   `allocated_to` (the node becomes reusable);
//! * `used`, `in-use`, `building`, `failed`, `deleting`, `deleted`, `aborted` (unlocked,
//!   so their owner is done or dead) → lock non-blocking, re-check; a `deleted` node or
//!   one without provider just loses its znode; otherwise [`delete_locked_node`]:
//!   `deleting` is stored, the server is deleted in the cloud ([`delete_server`](super::delete::delete_server):
//!   floating IPs first, temporary errors retried) and the znode removed (which also
//!   removes our lock). On error the lock is released and the next pass retries.
//!   `nodepool delete --now` runs the same [`delete_locked_node`].
//!   A static provider's node has no server: only its znode goes (the provider's sync
//!   then registers its slot again).
//!
//! The launcher that created a node deletes it first: a node another launcher's
//! registered pool worker created waits one [`Intervals::delete`] for that launcher
//! ([`super::owner_first`]), so that all launchers do not race for every node's lock.
//!
//! Passes are driven by node cache events, with [`Intervals::delete`] as a fallback
//! tick. Server deletes run concurrently (at most [`MAX_CONCURRENT_DELETES`]) as tasks
//! of their own, so a slow cloud never delays the next pass; a node being deleted is
//! never started twice, and a node whose delete failed is tried again only after
//! [`Intervals::delete`] (its own unlock event would otherwise start it again at once,
//! in a loop as fast as the cloud fails).
//!
//! A running delete uses the provider's driver as started at each step
//! ([`DeleteCloud::Following`]): a provider restarted after its config or clouds.yaml
//! changed carries on the deletes already running, and one no longer started ends them.
//!
//! [`Intervals::delete`]: super::runtime::Intervals::delete

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use nodepool_shared::cloud::CloudDriver;
use nodepool_shared::model::{paths, ComponentKind, Node, NodeId, NodeState};
use nodepool_shared::sync::MutexExt;
use nodepool_shared::zk::{CacheKind, CachedNode, ZkError, ZkLock, ZkResult, ZkStore};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::delete::{delete_server_in, DeleteCloud, DriverSource, DELETE_TIMEOUT};
use super::owner_first::{Owner, OwnerFirst};
use super::runtime::{Counters, LauncherContext, StartedProvider};

/// Task name in the state dump.
pub const TASK: &str = "DeletedNodeWorker";

/// How many node deletes run at the same time.
pub const MAX_CONCURRENT_DELETES: usize = 16;

/// States an unlocked node is deleted in.
pub const DELETABLE: [NodeState; 7] = [
    NodeState::Used,
    NodeState::InUse,
    NodeState::Building,
    NodeState::Failed,
    NodeState::Deleting,
    NodeState::Deleted,
    NodeState::Aborted,
];

/// A node we locked, re-read after locking (double-check pattern: the record may
/// have changed between the cache's view and the lock).
pub struct LockedNode {
    /// Our lock on `/nodepool/nodes/<id>/lock`.
    pub lock: ZkLock,
    /// The record as read after locking.
    pub node: Node,
    /// Its znode version.
    pub version: i32,
}

impl LockedNode {
    /// Releases the lock; a failure is only logged (the session ending releases it).
    pub async fn unlock(mut self) {
        if let Err(e) = self.lock.release().await {
            warn!(node = %self.node.id, "cannot release node lock: {e}");
        }
    }
}

/// Locks node `id` without waiting and re-reads it. `Ok(None)` if someone else holds
/// the lock or the node is gone; in the latter case the empty znode our lock attempt
/// re-created (kazoo's recipe makes the lock dir's parents) is removed again.
pub async fn lock_node(ctx: &LauncherContext, id: &NodeId) -> ZkResult<Option<LockedNode>> {
    let mut lock = ZkLock::new(ctx.store.client(), &paths::node_lock(id), b"");
    if !lock.try_acquire().await? {
        return Ok(None);
    }
    match ctx.store.get_node(id).await {
        Ok(Some((node, stat))) => Ok(Some(LockedNode {
            lock,
            node,
            version: stat.version,
        })),
        Ok(None) => {
            debug!(node = %id, "node vanished before we locked it");
            ctx.store.delete_node_znode(id).await?;
            let _ = lock.release().await;
            Ok(None)
        }
        Err(e) => {
            let _ = lock.release().await;
            Err(e)
        }
    }
}

/// What the worker would do with a cached node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Clear the allocation to a vanished request.
    Deallocate,
    /// Delete the node (cloud + ZooKeeper).
    Delete,
}

/// What [`handle`] did with one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing (locked by someone else, changed meanwhile, or vanished).
    Skipped,
    /// `allocated_to` cleared.
    Deallocated,
    /// Server (if any) and znode deleted.
    Deleted,
    /// Only the znode was removed (`deleted` state or no provider).
    ZnodeRemoved,
}

/// What one [`pass`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Nodes whose allocation was cleared.
    pub deallocated: Vec<NodeId>,
    /// Nodes deleted in the cloud and ZooKeeper.
    pub deleted: Vec<NodeId>,
    /// Nodes whose znode alone was removed.
    pub znodes_removed: Vec<NodeId>,
    /// Nodes that failed (retried next pass), with the reason.
    pub failed: Vec<(NodeId, String)>,
}

/// Decides from the cache what to do with `n`, if anything. `ours` are the providers
/// started in this launcher.
pub fn action_for(ctx: &LauncherContext, n: &CachedNode, ours: &HashSet<String>) -> Option<Action> {
    match first_look(n, ours)? {
        Look::Delete => Some(Action::Delete),
        Look::Allocated(req) => (!ctx.cache.has_request(&req)).then_some(Action::Deallocate),
    }
}

/// What the node alone says (the request of an allocated ready node is looked up
/// after the scan: the node scan holds the cache's read lock).
enum Look {
    Delete,
    /// Ready and allocated to this request: deallocated if the request is gone.
    Allocated(String),
}

fn first_look(n: &CachedNode, ours: &HashSet<String>) -> Option<Look> {
    if n.probably_locked() {
        return None;
    }
    let node = &n.node;
    // A node without provider cannot belong to any launcher; whoever sees it cleans up.
    if let Some(p) = node.provider() {
        if !ours.contains(p) {
            return None;
        }
    } else if ours.is_empty() {
        return None;
    }
    if node.state() == NodeState::Ready {
        return node.allocated_to().map(|r| Look::Allocated(r.to_string()));
    }
    DELETABLE.contains(&node.state()).then_some(Look::Delete)
}

/// The nodes a pass would act on now, in id order. It runs on every node or request
/// event, so it looks only at the nodes the cache keeps as unheld (no lock contender,
/// not `hold`, not `ready` and unallocated: `first_look` passes over all others) and
/// copies nothing but the few nodes it keeps (with 100,000 cached nodes, copying every
/// node's `Arc` per event was most of an idle launcher's CPU, and scanning them all
/// still a tenth of it).
pub fn candidates(ctx: &LauncherContext) -> Vec<(NodeId, Action)> {
    let ours = ctx.provider_names();
    let mut looks: Vec<(NodeId, Look)> = Vec::new();
    ctx.cache.for_each_unheld_node(|n| {
        if let Some(l) = first_look(n, &ours) {
            looks.push((n.id().clone(), l));
        }
    });
    // `for_each_unheld_node` goes in id order.
    looks
        .into_iter()
        .filter_map(|(id, look)| match look {
            Look::Delete => Some((id, Action::Delete)),
            Look::Allocated(req) => {
                (!ctx.cache.has_request(&req)).then_some((id, Action::Deallocate))
            }
        })
        .collect()
}

/// Clears `allocated_to` of a ready node whose request is gone.
async fn deallocate(ctx: &LauncherContext, id: &NodeId) -> ZkResult<Outcome> {
    let Some(mut locked) = lock_node(ctx, id).await? else {
        return Ok(Outcome::Skipped);
    };
    let gone = match &locked.node.allocated_to {
        Some(req) if locked.node.state == NodeState::Ready => ctx
            .store
            .client()
            .exists(&paths::request(req))
            .await?
            .is_none(),
        _ => false,
    };
    if !gone {
        locked.unlock().await;
        return Ok(Outcome::Skipped);
    }
    info!(node = %id, request = ?locked.node.allocated_to, "clearing allocation to a vanished request");
    locked.node.allocated_to = None;
    let r = ctx
        .store
        .store_node(&locked.node, Some(locked.version))
        .await;
    locked.unlock().await;
    r.map(|_| Outcome::Deallocated)
}

/// Why a node delete failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeDeleteError {
    #[error("ZooKeeper: {0}")]
    Zk(#[from] ZkError),
    #[error("cloud: {0}")]
    Cloud(#[from] super::delete::DeleteError),
    #[error("provider {0} is not started in this launcher")]
    NoProvider(String),
}

/// Nodepool's node deleter for a node we hold the lock of: stores `deleting` (guarded
/// by `version` when given; the stored version is kept up to date), deletes its server
/// (if it has one: a static node has no driver and no server) through the delete state machine ([`delete_server`](super::delete::delete_server): floating IPs first, temporary
/// errors retried, within `timeout`), then writes `deleted` and removes the znode with
/// the lock below it. On an error nothing more is written and the caller still holds
/// the lock (release it; the next attempt starts over).
pub async fn delete_locked_node(
    store: &ZkStore,
    driver: Option<&dyn CloudDriver>,
    node: &mut Node,
    version: &mut Option<i32>,
    timeout: std::time::Duration,
) -> Result<(), NodeDeleteError> {
    let cloud = driver.map(DeleteCloud::Fixed);
    delete_locked_node_in(store, cloud, node, version, timeout).await
}

/// [`delete_locked_node`] against a [`DeleteCloud`] (the worker follows the provider as
/// started, so a restarted provider carries on its running deletes).
pub async fn delete_locked_node_in(
    store: &ZkStore,
    cloud: Option<DeleteCloud<'_>>,
    node: &mut Node,
    version: &mut Option<i32>,
    timeout: std::time::Duration,
) -> Result<(), NodeDeleteError> {
    if node.state != NodeState::Deleting {
        node.set_state(NodeState::Deleting);
        let stat = store.store_node(node, *version).await?;
        *version = Some(stat.version);
    }
    let server = node.external_id.clone().filter(|s| !s.is_empty());
    if let (Some(cloud), Some(server)) = (cloud, server) {
        delete_server_in(cloud, &server, timeout).await?;
    }
    store.delete_node(node).await?;
    Ok(())
}

/// The cloud provider `name` as started in this launcher at each moment.
struct StartedCloud<'a> {
    ctx: &'a LauncherContext,
    name: String,
}

impl DriverSource for StartedCloud<'_> {
    fn provider(&self) -> &str {
        &self.name
    }

    fn current(&self) -> Option<Arc<dyn CloudDriver>> {
        self.ctx.provider(&self.name).map(|rt| rt.driver.clone())
    }
}

/// Deletes an unlocked node: lock, re-check, `deleting`, server, znode.
async fn delete(ctx: &LauncherContext, id: &NodeId) -> Result<Outcome, NodeDeleteError> {
    let Some(mut locked) = lock_node(ctx, id).await? else {
        return Ok(Outcome::Skipped);
    };
    let node = &locked.node;
    if !DELETABLE.contains(&node.state) {
        debug!(node = %id, state = %node.state, "node changed state before we locked it");
        locked.unlock().await;
        return Ok(Outcome::Skipped);
    }
    let Some(provider) = node.provider.clone() else {
        info!(node = %id, "removing node without provider");
        ctx.store.delete_node(node).await?;
        return Ok(Outcome::ZnodeRemoved);
    };
    if node.state == NodeState::Deleted {
        info!(node = %id, "removing deleted node");
        ctx.store.delete_node(node).await?;
        return Ok(Outcome::ZnodeRemoved);
    }
    let Some(started) = ctx.started_provider(&provider) else {
        locked.unlock().await;
        return Err(NodeDeleteError::NoProvider(provider));
    };
    info!(node = %id, provider = %provider, state = %node.state, server = ?node.external_id, "deleting node");
    let source = StartedCloud {
        ctx,
        name: provider.clone(),
    };
    let cloud = match &started {
        StartedProvider::Cloud(_) => Some(DeleteCloud::Following(&source)),
        StartedProvider::Static(_) => None,
    };
    let mut version = Some(locked.version);
    let r = delete_locked_node_in(
        &ctx.store,
        cloud,
        &mut locked.node,
        &mut version,
        DELETE_TIMEOUT,
    )
    .await;
    if let Err(e) = r {
        locked.unlock().await;
        return Err(e);
    }
    Counters::bump(&ctx.counters.nodes_deleted);
    info!(node = %id, provider = %provider, "node deleted");
    Ok(Outcome::Deleted)
}

/// Acts on one node (never fails the caller: errors come back as text).
pub async fn handle(ctx: &LauncherContext, id: &NodeId, action: Action) -> Result<Outcome, String> {
    let r = match action {
        Action::Deallocate => deallocate(ctx, id).await.map_err(|e| e.to_string()),
        Action::Delete => delete(ctx, id).await.map_err(|e| e.to_string()),
    };
    if let Err(e) = &r {
        warn!(node = %id, "{action:?} failed, retrying next pass: {e}");
    }
    r
}

/// Running totals of the long-running worker (for the state dump).
#[derive(Debug, Default)]
struct Tally {
    deleted: u64,
    znodes_removed: u64,
    deallocated: u64,
    failures: u64,
}

impl Tally {
    fn add(&mut self, r: &Result<Outcome, String>) {
        match r {
            Ok(Outcome::Skipped) => {}
            Ok(Outcome::Deallocated) => self.deallocated += 1,
            Ok(Outcome::Deleted) => self.deleted += 1,
            Ok(Outcome::ZnodeRemoved) => self.znodes_removed += 1,
            Err(_) => self.failures += 1,
        }
    }
}

fn record(report: &mut PassReport, id: NodeId, r: Result<Outcome, String>) {
    match r {
        Ok(Outcome::Skipped) => {}
        Ok(Outcome::Deallocated) => report.deallocated.push(id),
        Ok(Outcome::Deleted) => report.deleted.push(id),
        Ok(Outcome::ZnodeRemoved) => report.znodes_removed.push(id),
        Err(e) => report.failed.push((id, e)),
    }
}

/// One complete pass: acts on every candidate (bounded concurrency) and waits for all.
pub async fn pass(ctx: &LauncherContext) -> PassReport {
    let work = candidates(ctx);
    let results: Vec<_> = stream::iter(work)
        .map(|(id, action)| async move {
            let r = handle(ctx, &id, action).await;
            (id, r)
        })
        .buffer_unordered(MAX_CONCURRENT_DELETES)
        .collect()
        .await;
    let mut report = PassReport::default();
    for (id, r) in results {
        record(&mut report, id, r);
    }
    report
}

/// The [`Owner`] of candidate nodes, with the registered pool workers read once per
/// pass and only if a candidate is another launcher's.
#[derive(Default)]
struct OwnerLookup {
    ours: Option<HashSet<String>>,
    registered: Option<HashSet<String>>,
}

impl OwnerLookup {
    fn of(&mut self, ctx: &LauncherContext, id: &NodeId) -> Owner {
        let Some(node) = ctx.cache.node(id) else {
            return Owner::Gone;
        };
        let launcher = node.node.launcher();
        let ours = self
            .ours
            .get_or_insert_with(|| ctx.own_pool_workers.lock_or_recover().clone());
        if launcher.is_some_and(|l| ours.contains(l)) {
            return Owner::Us;
        }
        let registered = self.registered.get_or_insert_with(|| {
            ctx.cache
                .components(ComponentKind::Pool)
                .iter()
                .filter_map(|c| c.component.pool.as_ref()?.id.clone())
                .collect()
        });
        Owner::of(launcher, ours, registered)
    }
}

/// True for cache events that may create work for this worker.
fn relevant(kind: CacheKind) -> bool {
    matches!(
        kind,
        CacheKind::Node | CacheKind::NodeLock | CacheKind::Request | CacheKind::Tree
    )
}

/// Runs the worker until `ctx.cancel` fires. Deletes run as tasks of their own; on
/// shutdown the running ones stop at their next step (their locks go with the session
/// or are released in the background, and the next launcher finishes the job), and any
/// that does not within `stop_grace` is aborted.
pub async fn run(ctx: Arc<LauncherContext>) {
    let mut events = ctx.cache.subscribe();
    let mut tick = tokio::time::interval(ctx.intervals.delete);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running: JoinSet<Option<(NodeId, Result<Outcome, String>)>> = JoinSet::new();
    let mut in_flight: HashSet<NodeId> = HashSet::new();
    // A node whose delete failed waits one `delete` interval before the next attempt
    // (Nodepool's pass period), instead of being retried on its own unlock event.
    let mut retry_at: HashMap<NodeId, Instant> = HashMap::new();
    let mut tally = Tally::default();
    let mut turn = OwnerFirst::new(ctx.intervals.delete);
    ctx.set_task_state(TASK, "starting");
    loop {
        let mut wake = false;
        tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            _ = tick.tick() => wake = true,
            ev = events.recv() => match ev {
                Ok(e) => wake = relevant(e.kind),
                Err(RecvError::Lagged(_)) => wake = true,
                Err(RecvError::Closed) => {
                    // The cache stopped: only the tick is left.
                    events = ctx.cache.subscribe();
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => break,
                        _ = tick.tick() => wake = true,
                    }
                }
            },
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok(Some((id, r))) = done {
                    in_flight.remove(&id);
                    if r.is_err() {
                        retry_at.insert(id.clone(), Instant::now() + ctx.intervals.delete);
                    }
                    tally.add(&r);
                }
            }
        }
        if !wake {
            continue;
        }
        // Coalesce a burst of events into one scan.
        while let Ok(_) | Err(TryRecvError::Lagged(_)) = events.try_recv() {}
        let now = Instant::now();
        retry_at.retain(|_, at| *at > now);
        let work = candidates(&ctx);
        turn.keep_only(&work.iter().map(|(id, _)| id.clone()).collect());
        let mut owners = OwnerLookup::default();
        for (id, action) in work {
            if in_flight.len() >= MAX_CONCURRENT_DELETES {
                break;
            }
            if retry_at.contains_key(&id) || in_flight.contains(&id) {
                continue;
            }
            if action == Action::Delete && !turn.go(&id, owners.of(&ctx, &id), now) {
                continue;
            }
            in_flight.insert(id.clone());
            let ctx = ctx.clone();
            running.spawn(async move {
                tokio::select! {
                    r = handle(&ctx, &id, action) => Some((id, r)),
                    _ = ctx.cancel.cancelled() => None,
                }
            });
        }
        ctx.set_task_state(
            TASK,
            format!(
                "{} in flight, {} left to their launcher; deleted {}, znodes removed {}, deallocated {}, failures {}",
                in_flight.len(),
                turn.waiting(),
                tally.deleted,
                tally.znodes_removed,
                tally.deallocated,
                tally.failures
            ),
        );
    }
    super::tasks::drain_set(&mut running, ctx.intervals.stop_grace, |_| {}).await;
    ctx.set_task_state(TASK, "stopped");
}
