//! One accepted node request, handled by its own task while the request
//! lock is held: `pending` → per label reuse a ready node or launch a new one (pausing
//! while the quota is used up) → wait for the launches → `fulfilled` (nodes unlocked
//! first, then the request stored, then its lock released), or declined on failure, or
//! cleaned up when the requestor deleted the request.
//!
//! ```text
//! Accepting ─► Allocating ◄──► Paused
//!                  │
//!                  ▼
//!              Launching ─► Fulfilling ─► Done
//!                  │   └──► Declining ──► Done
//!                  └──────► Vanished ───► Done
//! ```
//!
//! From any state the handler goes to `Abandoned` when the request lock goes with the
//! ZooKeeper session (expired or replaced, e.g. after the process was frozen): another
//! launcher's lost-request cleanup may own the request and its nodes by then, so the
//! handler writes nothing more about either and only waits for its launches to stop.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use nodepool_shared::config::{Pool, PoolLabel, Provider};
use nodepool_shared::model::{
    paths, ComponentKind, NodeId, NodeRequest, NodeState, QuotaInformation, RequestId, RequestState,
};
use nodepool_shared::zk::{ZkError, ZkLock};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::node_launch::{create_node, run_launch, LaunchResult, NodeOrder, OwnedNode};
use super::providers::ProviderHandle;
use super::runtime::{Counters, LauncherContext};
use nodepool_shared::sync::MutexExt;

/// `requestor` of Nodepool's own min-ready requests.
pub const MIN_READY_REQUESTOR: &str = "NodePool:min-ready";

/// What a pool worker shares with its handlers.
pub struct PoolContext {
    /// The launcher.
    pub ctx: Arc<LauncherContext>,
    /// The provider.
    pub provider: Arc<ProviderHandle>,
    /// The provider config the worker was started with.
    pub provider_config: Provider,
    /// The pool config the worker was started with.
    pub pool: Pool,
    /// The pool worker id (`declined_by`, node `launcher`).
    pub worker_id: String,
    /// Number of paused handlers (the worker mirrors `> 0` into the component).
    pub paused: watch::Sender<usize>,
    /// Requests being handled by this pool.
    pub handling: Mutex<HashSet<RequestId>>,
    /// Tenant needs of the requests being handled (tenant-resource-limits), until their
    /// handler ends: counted instead of their nodes, which may not be cached yet.
    pub tenant_claims: Mutex<HashMap<RequestId, (String, QuotaInformation)>>,
}

impl PoolContext {
    /// The pool label named `name`.
    pub fn label(&self, name: &str) -> Option<&PoolLabel> {
        self.pool.label(name)
    }

    /// Whether some handler of this pool is paused.
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow() > 0
    }

    fn handling(&self) -> std::sync::MutexGuard<'_, HashSet<RequestId>> {
        self.handling.lock_or_recover()
    }

    /// Marks a request as handled here (false if it already is).
    pub fn start_handling(&self, id: &RequestId) -> bool {
        self.handling().insert(id.clone())
    }

    /// Whether a request is handled here.
    pub fn is_handling(&self, id: &RequestId) -> bool {
        self.handling().contains(id)
    }

    fn stop_handling(&self, id: &RequestId) {
        self.handling().remove(id);
        self.tenant_claims().remove(id);
    }

    fn tenant_claims(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<RequestId, (String, QuotaInformation)>> {
        self.tenant_claims.lock_or_recover()
    }

    /// Counts `need` against `tenant` while the request's handler runs.
    pub fn claim_tenant(&self, id: &RequestId, tenant: String, need: QuotaInformation) {
        self.tenant_claims().insert(id.clone(), (tenant, need));
    }

    /// The tenant claims now (request → tenant, need).
    pub fn tenant_claims_snapshot(&self) -> HashMap<RequestId, (String, QuotaInformation)> {
        self.tenant_claims().clone()
    }

    /// Ids of every currently registered pool (from the cache).
    pub fn registered_pool_ids(&self) -> Vec<String> {
        self.ctx
            .cache
            .components(ComponentKind::Pool)
            .iter()
            .filter_map(|c| c.component.pool.as_ref().and_then(|p| p.id.clone()))
            .collect()
    }
}

/// Where a handler is (shown in the task states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerState {
    Accepting,
    Allocating,
    Paused,
    Launching,
    Declining,
    Fulfilling,
    Vanished,
    Abandoned,
    Done,
}

/// One slot of the node set (index = position in `node_types`).
enum Slot {
    /// Nothing yet.
    Empty,
    /// A launch is running for it.
    Launching,
    /// A ready node, locked.
    Ready(Box<OwnedNode>),
}

/// Declines `request` (already locked by the caller): append `worker_id` to
/// `declined_by`; `failed` when every registered pool declined, else back to
/// `requested`; stored unconditionally. Re-reads the request first.
pub async fn decline_request(
    pc: &PoolContext,
    id: &RequestId,
    reason: &str,
) -> Result<(), ZkError> {
    let Some((mut req, _)) = pc.ctx.store.get_request(id).await? else {
        return Ok(());
    };
    tracing::info!(request = %id, pool = %pc.worker_id, reason, "declining request");
    if !req.declined_by.contains(&pc.worker_id) {
        req.declined_by.push(pc.worker_id.clone());
    }
    let registered = pc.registered_pool_ids();
    let all = registered.iter().all(|p| req.declined_by.contains(p));
    if all {
        req.set_state(RequestState::Failed);
        Counters::bump(&pc.ctx.counters.requests_failed);
    } else {
        req.set_state(RequestState::Requested);
    }
    Counters::bump(&pc.ctx.counters.requests_declined);
    pc.ctx.store.store_request(&req, None).await.map(|_| ())
}

/// The handler of one accepted request.
pub struct Handler {
    pc: Arc<PoolContext>,
    request: Arc<NodeRequest>,
    lock: ZkLock,
    slots: Vec<Slot>,
    launches: JoinSet<(usize, OwnedNode, LaunchResult)>,
    az: Option<String>,
    paused: bool,
    failure: Option<String>,
    state: HandlerState,
    /// A node create hit a connection problem: it may have been applied on the server
    /// without us learning the id (an unlocked `init` orphan, swept at the end).
    create_interrupted: bool,
    /// Told once the first allocation round is over: `true` if the handler paused for
    /// quota. The pool worker waits for it before accepting the next request, so a pool
    /// takes at most one request it has no quota for (as Nodepool's pool worker does)
    /// and leaves the rest `requested` for other pools.
    first_round: Option<tokio::sync::oneshot::Sender<bool>>,
    /// The provider claim under which the pool worker reserved the request's need when
    /// it accepted it; replaced by the node claims in the first quota check.
    reservation: Option<NodeId>,
}

enum Fill {
    Done,
    NoQuota,
    Fail(String),
}

impl Handler {
    /// A handler for a request we locked and re-read (state `requested`).
    pub fn new(pc: Arc<PoolContext>, request: NodeRequest, lock: ZkLock) -> Self {
        let n = request.node_types.len();
        Handler {
            pc,
            request: Arc::new(request),
            lock,
            slots: (0..n).map(|_| Slot::Empty).collect(),
            launches: JoinSet::new(),
            az: None,
            paused: false,
            failure: None,
            state: HandlerState::Accepting,
            create_interrupted: false,
            first_round: None,
            reservation: None,
        }
    }

    /// The reservation the pool worker made for this request (see `reservation`).
    pub fn with_reservation(mut self, reservation: Option<NodeId>) -> Self {
        self.reservation = reservation;
        self
    }

    /// Drops the pool worker's reservation (at the first quota check, or at the end).
    fn release_reservation(&mut self) {
        if let Some(id) = self.reservation.take() {
            self.pc.provider.release_claim(&id);
        }
    }

    /// Reports the end of the first allocation round on `tx` (see `first_round`).
    pub fn report_first_round(mut self, tx: tokio::sync::oneshot::Sender<bool>) -> Self {
        self.first_round = Some(tx);
        self
    }

    fn set_state(&mut self, s: HandlerState) {
        self.state = s;
        self.pc.ctx.set_task_state(
            &format!("handler {} {}", self.pc.worker_id, self.request.id),
            format!("{s:?}"),
        );
    }

    fn set_paused(&mut self, paused: bool) {
        if paused != self.paused {
            self.paused = paused;
            self.pc.paused.send_modify(|n| {
                if paused {
                    *n += 1
                } else {
                    *n = n.saturating_sub(1)
                }
            });
            if paused {
                tracing::info!(request = %self.request.id, pool = %self.pc.worker_id,
                    "pausing handler: not enough quota");
                self.set_state(HandlerState::Paused);
            }
        }
    }

    /// Runs the request to its end.
    pub async fn run(mut self) {
        let id = self.request.id.clone();
        self.accept().await;
        let state = self.drive().await;
        self.release_reservation();
        // After an abandon the request may be someone else's: an unlocked `init` node
        // allocated to it can be their create in progress, so nothing is swept.
        if self.create_interrupted && state != HandlerState::Abandoned {
            self.sweep_orphan_inits().await;
        }
        self.set_paused(false);
        self.set_state(state);
        let ctx = self.pc.ctx.clone();
        ctx.task_states
            .lock_or_recover()
            .remove(&format!("handler {} {}", self.pc.worker_id, id));
        self.pc.stop_handling(&id);
        if let Err(e) = self.lock.release().await {
            tracing::warn!(request = %id, error = %e, "cannot release request lock");
        }
    }

    async fn accept(&mut self) {
        let mut req = (*self.request).clone();
        req.set_state(RequestState::Pending);
        self.request = Arc::new(req);
        Counters::bump(&self.pc.ctx.counters.requests_accepted);
        if let Err(e) = self.pc.ctx.store.store_request(&self.request, None).await {
            tracing::warn!(request = %self.request.id, error = %e, "cannot store pending request");
            if matches!(e, ZkError::NoNode(_)) {
                self.failure = Some("request vanished".into());
            }
        }
        self.set_state(HandlerState::Allocating);
    }

    fn is_min_ready(&self) -> bool {
        self.request.requestor.as_deref() == Some(MIN_READY_REQUESTOR)
    }

    async fn request_gone(&self) -> bool {
        if self.pc.ctx.cache.request(&self.request.id).is_some() {
            return false;
        }
        matches!(
            self.pc.ctx.store.get_request(&self.request.id).await,
            Ok(None)
        )
    }

    /// True once the request lock went with its ZooKeeper session.
    fn lock_lost(&self) -> bool {
        !self.lock.is_held()
    }

    async fn drive(&mut self) -> HandlerState {
        let ctx = self.pc.ctx.clone();
        let mut generation = ctx.cache.watch_generation();
        let lost = self.lock.lost();
        tokio::pin!(lost);
        let mut lost_fired = false;
        loop {
            if self.lock_lost() {
                self.abandon().await;
                return HandlerState::Abandoned;
            }
            if self.failure.is_none() {
                let mut blocked = false;
                for i in 0..self.slots.len() {
                    if !matches!(self.slots[i], Slot::Empty) {
                        continue;
                    }
                    match self.fill(i).await {
                        Fill::Done => {}
                        Fill::NoQuota => {
                            blocked = true;
                            break;
                        }
                        Fill::Fail(why) => {
                            self.failure = Some(why);
                            break;
                        }
                    }
                }
                self.set_paused(blocked && self.failure.is_none());
            }
            if let Some(tx) = self.first_round.take() {
                let _ = tx.send(self.paused);
            }
            if self.launches.is_empty() {
                if self.request_gone().await {
                    self.vanished().await;
                    return HandlerState::Vanished;
                }
                if let Some(why) = self.failure.take() {
                    self.set_state(HandlerState::Declining);
                    self.decline(&why).await;
                    return HandlerState::Done;
                }
                if !self.paused {
                    self.set_state(HandlerState::Fulfilling);
                    self.fulfill().await;
                    return HandlerState::Done;
                }
            } else if !self.paused {
                self.set_state(HandlerState::Launching);
            }
            let paused = self.paused;
            tokio::select! {
                Some(res) = self.launches.join_next(), if !self.launches.is_empty() => {
                    self.launch_done(res);
                }
                _ = generation.changed(), if paused => {}
                _ = tokio::time::sleep(ctx.intervals.pool_tick), if paused => {}
                () = &mut lost, if !lost_fired => lost_fired = true,
                _ = ctx.cancel.cancelled() => {
                    // Shutdown: the closing session releases every lock we hold.
                    return HandlerState::Done;
                }
            }
        }
    }

    fn launch_done(
        &mut self,
        res: Result<(usize, OwnedNode, LaunchResult), tokio::task::JoinError>,
    ) {
        let (i, owned, result) = match res {
            Ok(r) => r,
            Err(e) => {
                self.failure = Some(format!("launch task failed: {e}"));
                return;
            }
        };
        match result {
            LaunchResult::Ready => self.slots[i] = Slot::Ready(Box::new(owned)),
            LaunchResult::Aborted => {
                // Dropped from the set and unlocked; the DeletedNodeWorker removes it. A
                // replacement is launched once quota allows (the handler pauses).
                self.pc.provider.release_claim(&owned.node.id);
                self.slots[i] = Slot::Empty;
                tokio::spawn(owned.unlock());
            }
            LaunchResult::Failed(why) => {
                self.pc.provider.release_claim(&owned.node.id);
                tokio::spawn(owned.unlock());
                self.slots[i] = Slot::Empty;
                if self.failure.is_none() {
                    self.failure = Some(why);
                }
            }
        }
    }

    /// Reuses or launches a node for slot `i`.
    async fn fill(&mut self, i: usize) -> Fill {
        if self.lock_lost() {
            // The drive loop abandons the request; take no node for it.
            return Fill::NoQuota;
        }
        let label_name = self.request.node_types[i].clone();
        let Some(label) = self.pc.label(&label_name).cloned() else {
            return Fill::Fail(format!("node type {label_name} not available"));
        };
        if self.request.reuse {
            if let Some(owned) = self.try_reuse(&label_name).await {
                if self.az.is_none() {
                    self.az = owned.node.az.clone();
                }
                self.slots[i] = Slot::Ready(Box::new(owned));
                return Fill::Done;
            }
        }
        let provider = self.pc.provider.clone();
        let need = match provider.label_need(&label).await {
            Ok(n) => n,
            Err(e) => return Fill::Fail(e.to_string()),
        };
        if self.az.is_none() {
            // Random from the pool's `availability-zones`, else from the cloud's list;
            // the first reused node (above) fixes it otherwise, as in Nodepool.
            let zones = if self.pc.pool.availability_zones.is_empty() {
                provider.availability_zones().await
            } else {
                self.pc.pool.availability_zones.clone()
            };
            self.az = zones.get(rand_index(zones.len())).cloned();
        }
        let gate = provider.launch_gate.lock().await;
        // Our own reservation must not count against us; from here on, our node claims
        // (made under the gate) take its place.
        self.release_reservation();
        match provider
            .has_quota_for(&self.pc.ctx, &self.pc.pool, &need)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                drop(gate);
                if self.is_min_ready() {
                    return Fill::Fail("not enough quota for a min-ready request".into());
                }
                self.delete_oldest_unused().await;
                return Fill::NoQuota;
            }
            Err(e) => return Fill::Fail(e.to_string()),
        }
        let order = NodeOrder {
            launcher_id: self.pc.worker_id.clone(),
            provider: self.pc.provider_config.clone(),
            pool: self.pc.pool.clone(),
            label,
            request: self.request.clone(),
            az: self.az.clone(),
            session: self.lock.generation(),
        };
        let created = create_node(&self.pc.ctx, &order, &provider, need).await;
        drop(gate);
        match created {
            Ok(owned) => {
                tracing::debug!(node = %owned.node.id, request = %self.request.id, "launching node");
                self.slots[i] = Slot::Launching;
                let ctx = self.pc.ctx.clone();
                self.launches.spawn(async move {
                    let (owned, result) = run_launch(ctx, provider, order, owned).await;
                    (i, owned, result)
                });
                Fill::Done
            }
            // A connection loss (server restart, leader election) keeps the session:
            // wait and try again like a quota pause instead of declining the request.
            // A half-applied create leaves an unlocked `init` node the cleanup removes.
            Err(
                e @ (ZkError::ConnectionLoss { .. }
                | ZkError::Timeout { .. }
                | ZkError::SessionExpired { .. }),
            ) => {
                tracing::info!(request = %self.request.id, error = %e,
                    "creating node: ZooKeeper connection problem; will retry");
                self.create_interrupted = true;
                Fill::NoQuota
            }
            Err(e) => Fill::Fail(format!("creating node: {e}")),
        }
    }

    /// A ready, unallocated, unlocked node of this provider and pool with `label`, locked
    /// and allocated to the request.
    async fn try_reuse(&self, label: &str) -> Option<OwnedNode> {
        let ctx = &self.pc.ctx;
        let provider = self.pc.provider.name();
        let candidates: Vec<NodeId> = ctx
            .cache
            .nodes()
            .iter()
            .filter(|n| {
                let node = &n.node;
                node.state == NodeState::Ready
                    && node.allocated_to.is_none()
                    && node.provider.as_deref() == Some(provider)
                    && node.pool.as_deref() == Some(self.pc.pool.name.as_str())
                    && node.has_label(label)
                    && !n.probably_locked()
                    && (self.az.is_none() || node.az == self.az)
            })
            .map(|n| n.node.id.clone())
            .collect();
        for id in candidates {
            let mut lock = ZkLock::new(ctx.store.client(), &paths::node_lock(&id), b"");
            match lock.try_acquire().await {
                Ok(true) => {}
                _ => continue,
            }
            let node = match ctx.store.get_node(&id).await {
                Ok(Some((n, _))) if n.state == NodeState::Ready && n.allocated_to.is_none() => n,
                _ => {
                    let _ = lock.release().await;
                    continue;
                }
            };
            let mut owned = OwnedNode { node, lock };
            owned.node.allocated_to = Some(self.request.id.clone());
            owned.node.tenant_name = self.request.tenant_name.clone();
            owned.node.requestor = self.request.requestor.clone();
            if owned.store(ctx).await.is_err() {
                owned.unlock().await;
                continue;
            }
            tracing::info!(node = %id, request = %self.request.id, "reusing ready node");
            return Some(owned);
        }
        None
    }

    /// Frees quota before pausing, as Nodepool does: the oldest `ready`, unallocated, unlocked node
    /// of this provider and pool goes to `deleting` (the DeletedNodeWorker removes it).
    /// At most one such deletion runs per pool at a time: nothing is done while a node
    /// of the pool is already `deleting`, so a paused handler polling every tick does not
    /// delete one ready node per tick before the first deletion freed its quota.
    async fn delete_oldest_unused(&self) {
        let ctx = &self.pc.ctx;
        let provider = self.pc.provider.name();
        let pool = self.pc.pool.name.as_str();
        let nodes = ctx.cache.nodes();
        let ours = |n: &nodepool_shared::model::Node| {
            n.provider.as_deref() == Some(provider) && n.pool.as_deref() == Some(pool)
        };
        if nodes
            .iter()
            .any(|n| ours(&n.node) && n.node.state == NodeState::Deleting)
        {
            return;
        }
        let mut candidates: Vec<_> = nodes
            .iter()
            .filter(|n| {
                ours(&n.node)
                    && n.node.state == NodeState::Ready
                    && n.node.allocated_to.is_none()
                    && !n.probably_locked()
            })
            .collect();
        candidates.sort_by(|a, b| {
            a.node
                .state_time
                .total_cmp(&b.node.state_time)
                .then(a.node.id.cmp(&b.node.id))
        });
        for c in candidates {
            let id = &c.node.id;
            let mut lock = ZkLock::new(ctx.store.client(), &paths::node_lock(id), b"");
            if !matches!(lock.try_acquire().await, Ok(true)) {
                continue;
            }
            let fresh = match ctx.store.get_node(id).await {
                Ok(Some((n, _))) if n.state == NodeState::Ready && n.allocated_to.is_none() => n,
                _ => {
                    let _ = lock.release().await;
                    continue;
                }
            };
            let mut owned = OwnedNode { node: fresh, lock };
            owned.node.set_state(NodeState::Deleting);
            let stored = owned.store(ctx).await;
            owned.unlock().await;
            match stored {
                Ok(()) => {
                    tracing::info!(node = %id, request = %self.request.id,
                        "deleting oldest unused ready node to free quota");
                    return;
                }
                Err(e) => {
                    tracing::warn!(node = %id, error = %e, "cannot mark unused node deleting")
                }
            }
        }
    }

    fn take_nodes(&mut self) -> Vec<OwnedNode> {
        self.slots
            .iter_mut()
            .filter_map(|s| match std::mem::replace(s, Slot::Empty) {
                Slot::Ready(o) => Some(*o),
                _ => None,
            })
            .collect()
    }

    async fn fulfill(&mut self) {
        if self.lock_lost() {
            self.abandon().await;
            return;
        }
        let mut req = (*self.request).clone();
        let nodes = self.take_nodes();
        req.nodes = nodes.iter().map(|o| o.node.id.clone()).collect();
        req.set_state(RequestState::Fulfilled);
        for o in nodes {
            self.pc.provider.release_claim(&o.node.id);
            o.unlock().await;
        }
        let store = &self.pc.ctx.store;
        let stored = super::zk_retry::retry_transient("storing fulfilled request", || {
            store.store_request(&req, None)
        })
        .await;
        match stored {
            Ok(_) => {
                Counters::bump(&self.pc.ctx.counters.requests_fulfilled);
                tracing::info!(request = %req.id, nodes = ?req.nodes.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
                    "request fulfilled");
            }
            // The requestor gave up meanwhile; the DeletedNodeWorker frees the nodes.
            Err(e) => {
                tracing::warn!(request = %req.id, error = %e, "cannot store fulfilled request")
            }
        }
    }

    async fn decline(&mut self, why: &str) {
        if self.lock_lost() {
            self.abandon().await;
            return;
        }
        for o in self.take_nodes() {
            self.pc.provider.release_claim(&o.node.id);
            o.unlock().await;
        }
        if let Err(e) = decline_request(&self.pc, &self.request.id, why).await {
            tracing::warn!(request = %self.request.id, error = %e, "cannot store declined request");
        }
    }

    /// Marks `deleting` every `init` node allocated to this request that nobody holds:
    /// creates whose reply was lost. Runs once no launch of ours is in flight (our own
    /// nodes are then locked or past `init`).
    async fn sweep_orphan_inits(&self) {
        let ctx = &self.pc.ctx;
        let Ok(nodes) = ctx.store.nodes().await else {
            return;
        };
        for (n, _) in nodes {
            if n.state != NodeState::Init || n.allocated_to.as_ref() != Some(&self.request.id) {
                continue;
            }
            let Ok(Some(mut locked)) = super::deleter::lock_node(ctx, &n.id).await else {
                continue;
            };
            if locked.node.state == NodeState::Init {
                tracing::info!(node = %n.id, request = %self.request.id,
                    "deleting init node left by an interrupted create");
                locked.node.set_state(NodeState::Deleting);
                if let Err(e) = ctx
                    .store
                    .store_node(&locked.node, Some(locked.version))
                    .await
                {
                    tracing::warn!(node = %n.id, error = %e, "cannot mark orphan init node deleting");
                }
            }
            locked.unlock().await;
        }
    }

    /// The request lock went with the ZooKeeper session: write nothing about the request
    /// or its nodes (another launcher's lost-request cleanup resets them), wait for our
    /// launches to stop (each notices its own lost node lock) and free their quota claims.
    async fn abandon(&mut self) {
        self.set_state(HandlerState::Abandoned);
        tracing::warn!(request = %self.request.id, pool = %self.pc.worker_id,
            "request lock lost with the ZooKeeper session: abandoning the request");
        Counters::bump(&self.pc.ctx.counters.requests_abandoned);
        while let Some(res) = self.launches.join_next().await {
            self.launch_done(res);
        }
        // A node created on the new session (between the session change and our noticing
        // it) is still ours: de-allocate it so that any request can reuse it.
        self.release_nodes_unallocated().await;
        self.failure = None;
    }

    /// The request znode is gone: de-allocate our ready nodes and unlock everything.
    async fn vanished(&mut self) {
        tracing::info!(request = %self.request.id, "request vanished; releasing its nodes");
        self.release_nodes_unallocated().await;
    }

    /// Unlocks every node we hold, de-allocating the `ready` ones whose lock is still
    /// held (the others are not ours to write any more).
    async fn release_nodes_unallocated(&mut self) {
        for mut o in self.take_nodes() {
            self.pc.provider.release_claim(&o.node.id);
            if o.node.state == NodeState::Ready && !o.lock_lost() {
                o.node.allocated_to = None;
                if let Err(e) = o.store(&self.pc.ctx).await {
                    tracing::warn!(node = %o.node.id, error = %e, "cannot de-allocate node");
                }
            }
            o.unlock().await;
        }
    }
}

/// A pseudo-random index below `n` (AZ choice; no need for a strong generator).
fn rand_index(n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0);
    nanos % n
}
