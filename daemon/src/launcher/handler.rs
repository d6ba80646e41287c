//! One accepted node request, handled by its own task while the request
//! lock is held: `pending` → allocation rounds (per empty slot: reuse a ready node or
//! launch a new one) → wait for the launches → `fulfilled` (nodes unlocked first, then
//! the request stored, then its lock released), or declined, or cleaned up when the
//! requestor deleted the request.
//!
//! ```text
//! Accepting ─► Allocating ◄──► Waiting (quota: the pool pauses; ZooKeeper trouble)
//!                  │      └──► Declining ─► Draining ─► Done   (current config says no)
//!                  ▼
//!              Launching ─► Fulfilling ─► Done
//!                  │   └──► Declining ──► Done                  (a launch failed)
//!                  └──────► Vanished ───► Done
//! ```
//!
//! An allocation round that cannot fill every slot ends with a typed [`WaitReason`]:
//! only [`WaitReason::Quota`] pauses the pool (its component says `paused` and it takes
//! no other request); a lost request lock or a ZooKeeper connection problem is just
//! retried. Every round after the first re-checks the request against the *current*
//! config (see `pool_context`), as Nodepool re-runs a paused handler: a reload that
//! disables the pool, removes the label, pool or provider, or lowers the limits below
//! what the request needs declines it at once (the nodes it already has are freed for
//! any request, the launches still running are drained the same way) and unpauses the
//! pool.
//!
//! From any state the handler goes to `Abandoned` when the request lock goes with the
//! ZooKeeper session (expired or replaced, e.g. after the process was frozen): another
//! launcher's lost-request cleanup may own the request and its nodes by then, so the
//! handler writes nothing more about either and only waits for its launches to stop.
//! On shutdown the handler stops its launches (cancel, grace period, abort) and ends.

use std::sync::Arc;

use nodepool_shared::model::{paths, NodeId, NodeRequest, NodeState, RequestState};
use nodepool_shared::zk::{ZkError, ZkLock};
use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinSet};

use super::decline::{decline_reason, DeclineReason};
use super::held_request::{self, HeldWrite};
use super::node_launch::{create_node, run_launch, LaunchResult, NodeOrder, OwnedNode};
use super::pool_context::{PoolContext, PoolView};
use super::providers::ProviderHandle;
use super::runtime::Counters;
use super::tasks::drain_set;
use nodepool_shared::sync::MutexExt;

/// `requestor` of Nodepool's own min-ready requests.
pub const MIN_READY_REQUESTOR: &str = "NodePool:min-ready";

/// Where a handler is (shown in the task states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerState {
    Accepting,
    Allocating,
    Waiting,
    Launching,
    Declining,
    Draining,
    Fulfilling,
    Vanished,
    Abandoned,
    Done,
}

/// Why an allocation round could not fill every slot now and will be retried.
#[derive(Debug, thiserror::Error)]
pub enum WaitReason {
    /// The provider or pool has no room for another node: the pool pauses.
    #[error("not enough quota")]
    Quota,
    /// The request lock went with the ZooKeeper session (the handler abandons).
    #[error("request lock lost with the ZooKeeper session")]
    LockLost,
    /// Creating a node hit a ZooKeeper connection problem (the session may survive).
    #[error("ZooKeeper connection problem: {0}")]
    ZooKeeper(#[source] ZkError),
}

impl WaitReason {
    /// Whether this wait pauses the pool (only a quota wait does, as in Nodepool).
    pub fn pauses_pool(&self) -> bool {
        matches!(self, WaitReason::Quota)
    }
}

/// How an allocation round ended.
enum Round {
    /// Every empty slot got a node or a launch.
    Filled,
    /// Some slot has to wait; retried on the next wake-up.
    Wait(WaitReason),
    /// This request cannot be served here: decline once the launches ended (their
    /// nodes stay allocated to it, as Nodepool leaves them after a failure).
    Fail(DeclineReason),
    /// The current config says no: decline now and free the nodes for anybody.
    DeclineNow(DeclineReason),
}

/// A node the handler holds, with the provider whose quota claim it carries.
struct Held {
    node: OwnedNode,
    claimed_on: Arc<ProviderHandle>,
}

/// One slot of the node set (index = position in `node_types`).
enum Slot {
    /// Nothing yet.
    Empty,
    /// A launch is running for it.
    Launching,
    /// A ready node, locked.
    Ready(Box<Held>),
}

/// What a launch task gives back (`None` when it was stopped for shutdown).
struct LaunchDone {
    slot: usize,
    held: Held,
    result: LaunchResult,
}

type LaunchJoin = Result<Option<LaunchDone>, JoinError>;

/// The handler of one accepted request.
pub struct Handler {
    pc: Arc<PoolContext>,
    request: Arc<NodeRequest>,
    lock: ZkLock,
    slots: Vec<Slot>,
    launches: JoinSet<Option<LaunchDone>>,
    az: Option<String>,
    /// Why the last round could not fill every slot.
    waiting: Option<WaitReason>,
    /// Whether this handler counts in the pool's paused handlers.
    paused: bool,
    failure: Option<DeclineReason>,
    rounds: u32,
    state: HandlerState,
    /// A node create hit a connection problem: it may have been applied on the server
    /// without us learning the id (an unlocked `init` orphan, swept at the end).
    create_interrupted: bool,
    /// Told once the first allocation round is over: `true` if the handler waits for
    /// quota. The pool worker waits for it before accepting the next request, so a pool
    /// takes at most one request it has no quota for (as Nodepool's pool worker does)
    /// and leaves the rest `requested` for other pools.
    first_round: Option<oneshot::Sender<bool>>,
    /// The provider claim under which the pool worker reserved the request's need when
    /// it accepted it; replaced by the node claims in the first quota check.
    reservation: Option<(Arc<ProviderHandle>, NodeId)>,
    /// The request's version after our `pending` write: the fulfilled or declined write
    /// is conditional on it (see [`held_request`]). `None` if that write's reply was lost.
    ///
    /// [`held_request`]: super::held_request
    version: Option<i32>,
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
            waiting: None,
            paused: false,
            failure: None,
            rounds: 0,
            state: HandlerState::Accepting,
            create_interrupted: false,
            first_round: None,
            reservation: None,
            version: None,
        }
    }

    /// The reservation the pool worker made for this request (see `reservation`).
    pub fn with_reservation(mut self, reservation: Option<(Arc<ProviderHandle>, NodeId)>) -> Self {
        self.reservation = reservation;
        self
    }

    /// Reports the end of the first allocation round on `tx` (see `first_round`).
    pub fn report_first_round(mut self, tx: oneshot::Sender<bool>) -> Self {
        self.first_round = Some(tx);
        self
    }

    /// The task name of a handler (also its key in the task states).
    pub fn task_name(worker_id: &str, request: &NodeRequest) -> String {
        format!("handler {worker_id} {}", request.id)
    }

    /// Drops the pool worker's reservation (at the first quota check, or at the end).
    fn release_reservation(&mut self) {
        if let Some((provider, id)) = self.reservation.take() {
            provider.release_claim(&id);
        }
    }

    fn set_state(&mut self, s: HandlerState) {
        self.state = s;
        self.pc.ctx.set_task_state(
            &Self::task_name(&self.pc.worker_id, &self.request),
            format!("{s:?}"),
        );
    }

    /// Records why the last round waits (`None`: it filled every slot) and mirrors a
    /// quota wait into the pool's paused count.
    fn set_waiting(&mut self, waiting: Option<WaitReason>) {
        let paused = waiting.as_ref().is_some_and(WaitReason::pauses_pool);
        if let Some(w) = &waiting {
            let same = self
                .waiting
                .as_ref()
                .is_some_and(|old| std::mem::discriminant(old) == std::mem::discriminant(w));
            if !same {
                tracing::info!(request = %self.request.id, pool = %self.pc.worker_id,
                    reason = %w, pauses_pool = paused, "handler waits and retries");
            }
            self.set_state(HandlerState::Waiting);
        }
        self.waiting = waiting;
        self.set_paused(paused);
    }

    fn set_paused(&mut self, paused: bool) {
        if paused == self.paused {
            return;
        }
        self.paused = paused;
        self.pc.paused.send_modify(|n| {
            if paused {
                *n += 1
            } else {
                *n = n.saturating_sub(1)
            }
        });
    }

    /// Runs the request to its end.
    pub async fn run(mut self) {
        let id = self.request.id.clone();
        self.accept().await;
        let state = self.drive().await;
        self.release_reservation();
        // After an abandon the request may be someone else's: an unlocked `init` node
        // allocated to it can be their create in progress, so nothing is swept; at
        // shutdown the closing session ends everything anyway.
        if self.create_interrupted
            && state != HandlerState::Abandoned
            && !self.pc.ctx.cancel.is_cancelled()
        {
            self.sweep_orphan_inits().await;
        }
        self.set_paused(false);
        self.set_state(state);
        let ctx = self.pc.ctx.clone();
        ctx.task_states
            .lock_or_recover()
            .remove(&Self::task_name(&self.pc.worker_id, &self.request));
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
        let store = &self.pc.ctx.store;
        let stored = super::zk_retry::retry_transient("storing pending request", || {
            store.store_request(&self.request, None)
        })
        .await;
        match stored {
            Ok(stat) => self.version = Some(stat.version),
            Err(e) => {
                tracing::warn!(request = %self.request.id, error = %e, "cannot store pending request");
                if matches!(e, ZkError::NoNode(_)) {
                    self.failure = Some(DeclineReason::RequestVanished);
                }
            }
        }
        tracing::debug!(request = %self.request.id, "request stored pending");
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

    fn has_empty_slot(&self) -> bool {
        self.slots.iter().any(|s| matches!(s, Slot::Empty))
    }

    async fn drive(&mut self) -> HandlerState {
        let ctx = self.pc.ctx.clone();
        let mut generation = ctx.cache.watch_generation();
        let mut config = ctx.config.clone();
        let lost = self.lock.lost();
        tokio::pin!(lost);
        let mut lost_fired = false;
        loop {
            if self.lock_lost() {
                self.abandon().await;
                return HandlerState::Abandoned;
            }
            if self.failure.is_none() && self.has_empty_slot() {
                match self.round().await {
                    Round::Filled => self.set_waiting(None),
                    Round::Wait(w) => self.set_waiting(Some(w)),
                    Round::Fail(why) => {
                        self.set_waiting(None);
                        self.failure = Some(why);
                    }
                    Round::DeclineNow(why) => {
                        self.send_first_round();
                        return self.decline_now(why).await;
                    }
                }
            }
            self.send_first_round();
            if self.launches.is_empty() {
                if self.failure.is_none()
                    && self.waiting.is_none()
                    && self.drop_unusable_nodes().await
                {
                    // Refill the emptied slots before fulfilling.
                    continue;
                }
                if let Some(end) = self.finish_if_done().await {
                    return end;
                }
            } else if self.waiting.is_none() {
                self.set_state(HandlerState::Launching);
            }
            let waiting = self.waiting.is_some();
            tokio::select! {
                Some(res) = self.launches.join_next(), if !self.launches.is_empty() => {
                    self.launch_done(res).await;
                }
                _ = generation.changed(), if waiting => {}
                Ok(()) = config.changed(), if waiting => {}
                _ = tokio::time::sleep(ctx.intervals.pool_tick), if waiting => {}
                () = &mut lost, if !lost_fired => lost_fired = true,
                _ = ctx.cancel.cancelled() => {
                    // Shutdown: the closing session releases every lock we hold.
                    self.stop_launches().await;
                    return HandlerState::Done;
                }
            }
        }
    }

    fn send_first_round(&mut self) {
        if let Some(tx) = self.first_round.take() {
            let _ = tx.send(self.paused);
        }
    }

    /// With no launch running: the end of the request, if it has come (vanished,
    /// declined after a failure, or fulfilled once no slot waits).
    async fn finish_if_done(&mut self) -> Option<HandlerState> {
        if self.request_gone().await {
            self.vanished().await;
            return Some(HandlerState::Vanished);
        }
        if let Some(why) = self.failure.take() {
            self.set_state(HandlerState::Declining);
            self.decline(&why).await;
            return Some(HandlerState::Done);
        }
        if self.waiting.is_none() {
            self.set_state(HandlerState::Fulfilling);
            self.fulfill().await;
            return Some(HandlerState::Done);
        }
        None
    }

    /// One allocation round over the empty slots; from the second round on, the
    /// request is first re-checked against the current config.
    async fn round(&mut self) -> Round {
        self.rounds += 1;
        let view = match self.pc.view() {
            Ok(v) => v,
            Err(gone) => return Round::DeclineNow(gone.into()),
        };
        if self.rounds > 1 {
            if let Some(why) = decline_reason(&self.pc.ctx, &view, &self.request).await {
                return Round::DeclineNow(why);
            }
        }
        for i in 0..self.slots.len() {
            if !matches!(self.slots[i], Slot::Empty) {
                continue;
            }
            if let Some(end) = self.fill(&view, i).await {
                return end;
            }
        }
        Round::Filled
    }

    async fn launch_done(&mut self, res: LaunchJoin) {
        let done = match res {
            Ok(Some(done)) => done,
            // Stopped for shutdown: nothing to record.
            Ok(None) => return,
            Err(e) => {
                if self.failure.is_none() {
                    self.failure = Some(DeclineReason::LaunchTask(e));
                }
                return;
            }
        };
        let LaunchDone { slot, held, result } = done;
        match result {
            LaunchResult::Ready => self.slots[slot] = Slot::Ready(Box::new(held)),
            LaunchResult::Aborted => {
                // Dropped from the set and unlocked; the DeletedNodeWorker removes it. A
                // replacement is launched once quota allows (the handler waits).
                self.slots[slot] = Slot::Empty;
                release(held).await;
            }
            LaunchResult::Failed(why) => {
                self.slots[slot] = Slot::Empty;
                release(held).await;
                if self.failure.is_none() {
                    self.failure = Some(DeclineReason::LaunchFailed(why));
                }
            }
        }
    }

    /// Reuses or launches a node for slot `i`; `None` when the slot is taken care of.
    async fn fill(&mut self, view: &PoolView, i: usize) -> Option<Round> {
        if self.lock_lost() {
            // The drive loop abandons the request; take no node for it.
            return Some(Round::Wait(WaitReason::LockLost));
        }
        let label_name = self.request.node_types[i].clone();
        let Some(label) = view.label(&label_name).cloned() else {
            return Some(Round::Fail(DeclineReason::LabelsNotAvailable(vec![
                label_name,
            ])));
        };
        if self.request.reuse {
            if let Some(held) = self.try_reuse(view, &label_name).await {
                if self.az.is_none() {
                    self.az = held.node.node.az.clone();
                }
                self.slots[i] = Slot::Ready(Box::new(held));
                return None;
            }
        }
        let provider = view.provider.clone();
        let need = match provider.label_need(&label).await {
            Ok(n) => n,
            Err(e) => return Some(Round::Fail(e.into())),
        };
        self.choose_az(view).await;
        let gate = provider.launch_gate.lock().await;
        // Our own reservation must not count against us; from here on, our node claims
        // (made under the gate) take its place.
        self.release_reservation();
        match provider
            .has_quota_for(&self.pc.ctx, view.pool(), &need)
            .await
        {
            Ok(true) => {
                tracing::debug!(request = %self.request.id, label = %label_name, "quota checked");
            }
            Ok(false) => {
                drop(gate);
                if self.is_min_ready() {
                    return Some(Round::Fail(DeclineReason::MinReadyAtQuota));
                }
                self.delete_oldest_unused(view).await;
                return Some(Round::Wait(WaitReason::Quota));
            }
            Err(e) => return Some(Round::Fail(e.into())),
        }
        let order = NodeOrder {
            launcher_id: self.pc.worker_id.clone(),
            provider: view.provider_config().clone(),
            pool: view.pool().clone(),
            label,
            request: self.request.clone(),
            az: self.az.clone(),
            session: self.lock.generation(),
        };
        let created = create_node(&self.pc.ctx, &order, &provider, need).await;
        drop(gate);
        match created {
            Ok(owned) => {
                self.start_launch(i, provider, order, owned);
                None
            }
            // A connection loss (server restart, leader election) keeps the session:
            // wait and try again instead of declining the request. A half-applied
            // create leaves an unlocked `init` node, swept at the end.
            Err(e) if self.lock_lost() => {
                tracing::debug!(request = %self.request.id, error = %e, "create failed after the lock was lost");
                Some(Round::Wait(WaitReason::LockLost))
            }
            Err(
                e @ (ZkError::ConnectionLoss { .. }
                | ZkError::Timeout { .. }
                | ZkError::SessionExpired { .. }),
            ) => {
                self.create_interrupted = true;
                Some(Round::Wait(WaitReason::ZooKeeper(e)))
            }
            Err(e) => Some(Round::Fail(DeclineReason::CreateNode(e))),
        }
    }

    /// Picks the request's AZ if none is fixed yet: at random from the pool's
    /// `availability-zones`, else from the cloud's list (a reused node fixes it
    /// otherwise).
    async fn choose_az(&mut self, view: &PoolView) {
        if self.az.is_some() {
            return;
        }
        let zones = if view.pool().availability_zones.is_empty() {
            view.provider.availability_zones().await
        } else {
            view.pool().availability_zones.clone()
        };
        self.az = zones.get(rand_index(zones.len())).cloned();
    }

    fn start_launch(
        &mut self,
        slot: usize,
        provider: Arc<ProviderHandle>,
        order: NodeOrder,
        owned: OwnedNode,
    ) {
        tracing::debug!(node = %owned.node.id, request = %self.request.id, "launching node");
        self.slots[slot] = Slot::Launching;
        let ctx = self.pc.ctx.clone();
        let cancel = ctx.cancel.clone();
        self.launches.spawn(async move {
            tokio::select! {
                (node, result) = run_launch(ctx, provider.clone(), order, owned) => Some(LaunchDone {
                    slot,
                    held: Held { node, claimed_on: provider },
                    result,
                }),
                // Shutdown: the node stays `building`; once the session is closed its
                // lock is gone and any launcher's DeletedNodeWorker removes it.
                _ = cancel.cancelled() => None,
            }
        });
    }

    /// Cancelled launches end at once; any that does not within the grace period is
    /// aborted.
    async fn stop_launches(&mut self) {
        let grace = self.pc.ctx.intervals.stop_grace;
        let aborted = drain_set(&mut self.launches, grace, |_| {}).await;
        if aborted > 0 {
            tracing::warn!(request = %self.request.id, aborted, "launches aborted after the grace period");
        }
    }

    /// A ready, unallocated, unlocked node of this provider and pool with `label` (in
    /// the chosen AZ, if any), locked and allocated to the request; tried in id order.
    /// The cache indexes such nodes by provider, pool and label (no node scan).
    async fn try_reuse(&self, view: &PoolView, label: &str) -> Option<Held> {
        let ctx = &self.pc.ctx;
        let provider = view.provider_config().name.as_str();
        let candidates = ctx
            .cache
            .reusable_nodes(provider, &view.pool().name, label, |n| {
                self.az.is_none() || n.node.az() == self.az.as_deref()
            });
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
            return Some(Held {
                node: owned,
                claimed_on: view.provider.clone(),
            });
        }
        None
    }

    /// Frees quota before pausing, as Nodepool does: the oldest `ready`, unallocated, unlocked node
    /// of this provider and pool goes to `deleting` (the DeletedNodeWorker removes it).
    /// At most one such deletion runs per pool at a time: nothing is done while a node
    /// of the pool is already `deleting`, so a paused handler polling every tick does not
    /// delete one ready node per tick before the first deletion freed its quota. Both come
    /// from the cache's index (a paused handler looks on every tick: no node scan).
    async fn delete_oldest_unused(&self, view: &PoolView) {
        let ctx = &self.pc.ctx;
        let provider = view.provider_config().name.as_str();
        let pool = view.pool().name.as_str();
        let (deleting, mut candidates) = ctx.cache.pool_reusable(provider, pool);
        if deleting > 0 {
            return;
        }
        candidates.sort_by(|a, b| {
            a.node
                .state_time()
                .total_cmp(&b.node.state_time())
                .then(a.id().cmp(b.id()))
        });
        for c in candidates {
            let id = c.id();
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

    /// Before fulfilling: re-reads every node held for the request (we hold their locks)
    /// and drops, unlocked, any whose record no longer reads as `ready` and allocated to
    /// this request: a record made corrupt (or changed by hand) while other nodes of the
    /// request were launching must not be handed to Zuul. A node whose record cannot be
    /// read is left to the operator (`nodepool delete --now`) and its server to leak
    /// cleanup. Returns whether a slot was emptied. A read that fails for connection
    /// trouble keeps the node (the fulfilment write would fail as well).
    async fn drop_unusable_nodes(&mut self) -> bool {
        let ctx = self.pc.ctx.clone();
        let mut dropped = false;
        for slot in self.slots.iter_mut() {
            let Slot::Ready(held) = slot else { continue };
            let id = held.node.node.id.clone();
            let why = match ctx.store.get_node(&id).await {
                Ok(Some((n, _)))
                    if n.state == NodeState::Ready
                        && n.allocated_to.as_ref() == Some(&self.request.id) =>
                {
                    continue
                }
                Ok(Some((n, _))) => format!(
                    "its record changed (state {}, allocated to {:?})",
                    n.state,
                    n.allocated_to.as_ref().map(|r| r.as_str())
                ),
                Ok(None) => "its record is gone".to_string(),
                Err(ZkError::Corrupt(e)) => e,
                Err(_) => continue,
            };
            tracing::warn!(node = %id, request = %self.request.id, "not handing over node: {why}");
            if let Slot::Ready(held) = std::mem::replace(slot, Slot::Empty) {
                release(*held).await;
            }
            dropped = true;
        }
        dropped
    }

    fn take_nodes(&mut self) -> Vec<Held> {
        self.slots
            .iter_mut()
            .filter_map(|s| match std::mem::replace(s, Slot::Empty) {
                Slot::Ready(h) => Some(*h),
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
        req.nodes = nodes.iter().map(|h| h.node.node.id.clone()).collect();
        req.set_state(RequestState::Fulfilled);
        for h in nodes {
            release(h).await;
        }
        let store = &self.pc.ctx.store;
        let lock_node = self.lock.node_path();
        match held_request::fulfil(store, &req, self.version, lock_node.as_deref()).await {
            Ok(HeldWrite::Stored) => {
                Counters::bump(&self.pc.ctx.counters.requests_fulfilled);
                tracing::info!(request = %req.id, nodes = ?req.nodes.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
                    "request fulfilled");
            }
            Ok(HeldWrite::Changed) => held_request::lost_to_another(&self.pc, &req.id),
            // The requestor gave up meanwhile; the DeletedNodeWorker frees the nodes.
            Ok(HeldWrite::Gone) => {
                tracing::info!(request = %req.id, "request withdrawn before it could be fulfilled")
            }
            Err(e) => {
                tracing::warn!(request = %req.id, error = %e, "cannot store fulfilled request")
            }
        }
    }

    /// Declines after a failure, once no launch runs: nodes unlocked, still allocated.
    async fn decline(&mut self, why: &DeclineReason) {
        if self.lock_lost() {
            self.abandon().await;
            return;
        }
        for h in self.take_nodes() {
            release(h).await;
        }
        self.store_declined(why).await;
    }

    /// The declined write, conditional on our version of the request.
    async fn store_declined(&mut self, why: &DeclineReason) {
        held_request::decline(&self.pc, &self.request, self.version, why).await;
    }

    /// Declines because the current config says no: the request goes back (or fails) at
    /// once and its lock is released, so another pool can take it while our running
    /// launches end; every node of ours is freed for any request (Nodepool clears the
    /// allocation when it declines while allocating).
    async fn decline_now(&mut self, why: DeclineReason) -> HandlerState {
        self.set_waiting(None);
        self.set_state(HandlerState::Declining);
        if self.lock_lost() {
            self.abandon().await;
            return HandlerState::Abandoned;
        }
        self.release_nodes_unallocated().await;
        self.store_declined(&why).await;
        if let Err(e) = self.lock.release().await {
            tracing::warn!(request = %self.request.id, error = %e, "cannot release request lock");
        }
        // Not ours any more: its tenant need no longer counts here.
        self.pc.stop_handling(&self.request.id);
        if !self.launches.is_empty() {
            self.set_state(HandlerState::Draining);
            self.drain_launches().await;
        }
        HandlerState::Done
    }

    /// Waits for the running launches and frees their nodes (ready ones de-allocated).
    async fn drain_launches(&mut self) {
        let cancel = self.pc.ctx.cancel.clone();
        while !self.launches.is_empty() {
            tokio::select! {
                Some(res) = self.launches.join_next() => {
                    self.launch_done(res).await;
                    self.release_nodes_unallocated().await;
                }
                _ = cancel.cancelled() => {
                    self.stop_launches().await;
                    return;
                }
            }
        }
        self.failure = None;
    }

    /// Marks `deleting` every `init` node allocated to this request that nobody holds:
    /// creates whose reply was lost. Runs once no launch of ours is in flight (our own
    /// nodes are then locked or past `init`).
    async fn sweep_orphan_inits(&self) {
        if let Err(e) = super::orphan_inits::sweep(&self.pc.ctx, &self.request.id).await {
            tracing::warn!(request = %self.request.id, error = %e,
                "cannot sweep init nodes left by an interrupted create");
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
        let cancel = self.pc.ctx.cancel.clone();
        while !self.launches.is_empty() {
            tokio::select! {
                Some(res) = self.launches.join_next() => self.launch_done(res).await,
                _ = cancel.cancelled() => self.stop_launches().await,
            }
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
        for mut h in self.take_nodes() {
            let o = &mut h.node;
            if o.node.state == NodeState::Ready && !o.lock_lost() {
                o.node.allocated_to = None;
                if let Err(e) = o.store(&self.pc.ctx).await {
                    tracing::warn!(node = %o.node.id, error = %e, "cannot de-allocate node");
                }
            }
            release(h).await;
        }
    }
}

/// Drops a held node's quota claim and unlocks it.
async fn release(h: Held) {
    h.claimed_on.release_claim(&h.node.node.id);
    h.node.unlock().await;
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
