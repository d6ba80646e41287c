//! One accepted request in a static pool (Nodepool's `StaticNodeRequestHandler`): a
//! static pool never launches, it only hands out registered nodes. Handled to its end
//! right in the pool worker's pass (every step is a few ZooKeeper writes, plus the
//! liveness checks of the hosts it picks), while the request lock is held:
//!
//! ```text
//! Accepting ─► Allocating ─► Fulfilling ─► Done
//!     │            ├───────► Releasing ──► Done   (a label has no usable node now)
//!     │            └───────► Declining ──► Done   (the request does not allow reuse)
//!     └──────────────────► Vanished ───► Done     (the requestor deleted it)
//! ```
//!
//! Per label (in `node_types` order) the handler takes a `ready`, unallocated, unlocked
//! node of this provider and pool that has the label and whose host is configured in
//! the pool ([`candidates`], the same nodes the pool worker counts as available), checks
//! that its host answers (`check::is_alive`; a host that does not has that node removed,
//! as Nodepool deregisters it), locks it, re-reads it, and allocates it to the request.
//! When some label gets no node, every node taken is freed again and the request goes
//! back to `requested` for a later pass or another pool (Nodepool leaves it `pending`
//! and unlocked until its lost-request cleanup resets it). A request with `reuse:
//! false` (min-ready's) can never be served by registered nodes and is declined.
//!
//! A lost request lock (the ZooKeeper session expired) abandons the request: nothing
//! more is written about it or its nodes.

use std::sync::Arc;

use nodepool_shared::config::{StaticNode, StaticPool};
use nodepool_shared::model::{NodeId, NodeRequest, NodeState, RequestState};
use nodepool_shared::zk::{CachedNode, ZkError, ZkLock};
use tracing::{debug, info, warn};

use super::check;
use super::provider::remove;
use super::slots::host_of;
use crate::launcher::decline::DeclineReason;
use crate::launcher::deleter::{lock_node, LockedNode};
use crate::launcher::held_request::{self, HeldWrite};
use crate::launcher::pool_context::PoolContext;
use crate::launcher::runtime::Counters;

/// Where the handler is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaticHandlerState {
    Accepting,
    Allocating,
    Fulfilling,
    Releasing,
    Declining,
    Vanished,
    Abandoned,
    Done,
}

/// How a handled request ended.
#[derive(Debug, Default)]
pub struct Handled {
    /// The labels of every node handed out (the pool worker counts them as taken).
    pub taken_labels: Vec<String>,
}

/// The host of the pool a cached node belongs to, if the node is one the pool may hand
/// out now: `ready`, unallocated, unlocked, of this provider and pool, its host
/// configured in the pool.
pub fn usable_host<'a>(
    provider: &str,
    pool: &'a StaticPool,
    n: &CachedNode,
) -> Option<&'a StaticNode> {
    let node = &n.node;
    if node.state() != NodeState::Ready
        || node.allocated_to().is_some()
        || n.probably_locked()
        || node.provider() != Some(provider)
        || node.pool() != Some(pool.name.as_str())
    {
        return None;
    }
    let key = host_of(node);
    pool.nodes.iter().find(|h| h.key() == key)
}

/// The nodes the pool may hand out for `label` now, oldest id first, with their host.
pub fn candidates(
    cached: &[Arc<CachedNode>],
    provider: &str,
    pool: &StaticPool,
    label: &str,
) -> Vec<(NodeId, StaticNode)> {
    let mut out: Vec<(NodeId, StaticNode)> = cached
        .iter()
        .filter(|n| n.node.has_label(label))
        .filter_map(|n| Some((n.node.id().clone(), usable_host(provider, pool, n)?.clone())))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The handler of one request this static pool accepted and locked.
pub struct StaticHandler<'a> {
    pc: &'a PoolContext,
    pool: &'a StaticPool,
    request: NodeRequest,
    lock: ZkLock,
    nodes: Vec<LockedNode>,
    state: StaticHandlerState,
    /// The request's version after our `pending` write; later writes are conditional on
    /// it (see [`held_request`]).
    ///
    /// [`held_request`]: crate::launcher::held_request
    version: Option<i32>,
}

impl<'a> StaticHandler<'a> {
    /// A handler for `request` (locked and re-read, `requested`).
    pub fn new(
        pc: &'a PoolContext,
        pool: &'a StaticPool,
        request: NodeRequest,
        lock: ZkLock,
    ) -> Self {
        StaticHandler {
            pc,
            pool,
            request,
            lock,
            nodes: Vec::new(),
            state: StaticHandlerState::Accepting,
            version: None,
        }
    }

    fn set_state(&mut self, s: StaticHandlerState) {
        debug!(request = %self.request.id, pool = %self.pc.worker_id, from = ?self.state, to = ?s,
            "static handler");
        self.state = s;
    }

    /// Handles the request to its end and releases its lock.
    pub async fn run(mut self) -> Handled {
        let handled = self.drive().await;
        self.set_state(StaticHandlerState::Done);
        if let Err(e) = self.lock.release().await {
            warn!(request = %self.request.id, error = %e, "cannot release request lock");
        }
        handled
    }

    async fn drive(&mut self) -> Handled {
        if !self.accept().await {
            return Handled::default();
        }
        if !self.request.reuse {
            self.set_state(StaticHandlerState::Declining);
            self.decline(&DeclineReason::StaticNeedsReuse).await;
            return Handled::default();
        }
        self.set_state(StaticHandlerState::Allocating);
        let labels = self.request.node_types.clone();
        for label in &labels {
            if self.lock_lost() {
                return self.abandon();
            }
            match self.take_node(label).await {
                Some(n) => self.nodes.push(n),
                None => {
                    debug!(request = %self.request.id, label, "no usable static node; releasing the request");
                    self.release().await;
                    return Handled::default();
                }
            }
        }
        self.fulfill().await
    }

    fn lock_lost(&self) -> bool {
        !self.lock.is_held()
    }

    fn abandon(&mut self) -> Handled {
        self.set_state(StaticHandlerState::Abandoned);
        warn!(request = %self.request.id, pool = %self.pc.worker_id,
            "request lock lost with the ZooKeeper session: abandoning the request");
        Counters::bump(&self.pc.ctx.counters.requests_abandoned);
        // The node locks went with the same session; nothing is ours to write.
        self.nodes.clear();
        Handled::default()
    }

    /// `pending`, stored; false when the request vanished (or the lock is gone).
    async fn accept(&mut self) -> bool {
        self.request.set_state(RequestState::Pending);
        Counters::bump(&self.pc.ctx.counters.requests_accepted);
        match self.pc.ctx.store.store_request(&self.request, None).await {
            Ok(stat) => {
                self.version = Some(stat.version);
                true
            }
            Err(ZkError::NoNode(_)) => {
                self.set_state(StaticHandlerState::Vanished);
                false
            }
            Err(e) => {
                warn!(request = %self.request.id, error = %e, "cannot store pending request");
                !self.lock_lost()
            }
        }
    }

    /// A usable node with `label`, alive, locked, re-read and allocated to the request.
    async fn take_node(&mut self, label: &str) -> Option<LockedNode> {
        let ctx = &self.pc.ctx;
        let provider = self.pc.provider_name.as_str();
        let cached = ctx.cache.select_nodes(|n| n.node.has_label(label));
        for (id, host) in candidates(&cached, provider, self.pool, label) {
            if self.nodes.iter().any(|n| n.node.id == id) {
                continue;
            }
            if let Err(e) = check::is_alive(&host).await {
                warn!(node = %id, error = %e, "static host does not answer; removing its node");
                remove(ctx, &id, "its host does not answer").await;
                continue;
            }
            let Ok(Some(mut locked)) = lock_node(ctx, &id).await else {
                continue;
            };
            let n = &locked.node;
            if n.state != NodeState::Ready || n.allocated_to.is_some() || !n.has_label(label) {
                locked.unlock().await;
                continue;
            }
            locked.node.allocated_to = Some(self.request.id.clone());
            locked.node.tenant_name = self.request.tenant_name.clone();
            locked.node.requestor = self.request.requestor.clone();
            match ctx
                .store
                .store_node(&locked.node, Some(locked.version))
                .await
            {
                Ok(stat) => {
                    locked.version = stat.version;
                    debug!(node = %id, request = %self.request.id, "allocated static node");
                    return Some(locked);
                }
                Err(e) => {
                    debug!(node = %id, error = %e, "cannot allocate static node");
                    locked.unlock().await;
                }
            }
        }
        None
    }

    /// Unlocks the nodes (still allocated), then stores the request `fulfilled`.
    async fn fulfill(&mut self) -> Handled {
        self.set_state(StaticHandlerState::Fulfilling);
        if self.lock_lost() {
            return self.abandon();
        }
        let nodes = std::mem::take(&mut self.nodes);
        self.request.nodes = nodes.iter().map(|n| n.node.id.clone()).collect();
        self.request.set_state(RequestState::Fulfilled);
        let handled = Handled {
            taken_labels: nodes
                .iter()
                .flat_map(|n| n.node.node_type.iter().cloned())
                .collect(),
        };
        for n in nodes {
            n.unlock().await;
        }
        let store = &self.pc.ctx.store;
        let req = &self.request;
        let lock_node = self.lock.node_path();
        match held_request::fulfil(store, req, self.version, lock_node.as_deref()).await {
            Ok(HeldWrite::Stored) => {
                Counters::bump(&self.pc.ctx.counters.requests_fulfilled);
                info!(request = %req.id, nodes = ?req.nodes.iter().map(NodeId::as_str).collect::<Vec<_>>(),
                    "request fulfilled from static nodes");
            }
            Ok(HeldWrite::Changed) => held_request::lost_to_another(self.pc, &req.id),
            // The requestor gave up meanwhile; the DeletedNodeWorker frees the nodes.
            Ok(HeldWrite::Gone) => {
                info!(request = %req.id, "request withdrawn before it could be fulfilled")
            }
            Err(e) => warn!(request = %req.id, error = %e, "cannot store fulfilled request"),
        }
        handled
    }

    /// Frees the nodes taken (de-allocated, unlocked) and puts the request back to
    /// `requested`.
    async fn release(&mut self) {
        self.set_state(StaticHandlerState::Releasing);
        if self.lock_lost() {
            self.abandon();
            return;
        }
        self.free_nodes().await;
        self.request.set_state(RequestState::Requested);
        self.request.nodes.clear();
        let store = &self.pc.ctx.store;
        let stored = match held_request::expected_version(store, &self.request, self.version).await
        {
            Ok(Some(v)) => store
                .store_request(&self.request, Some(v))
                .await
                .map(|_| ()),
            Ok(None) => Err(ZkError::BadVersion(self.request.id.to_string())),
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) | Err(ZkError::NoNode(_)) => {}
            Err(ZkError::BadVersion(_)) => held_request::lost_to_another(self.pc, &self.request.id),
            Err(e) => warn!(request = %self.request.id, error = %e, "cannot put request back"),
        }
    }

    async fn decline(&mut self, why: &DeclineReason) {
        if self.lock_lost() {
            self.abandon();
            return;
        }
        self.free_nodes().await;
        held_request::decline(self.pc, &self.request, self.version, why).await;
    }

    async fn free_nodes(&mut self) {
        for mut n in std::mem::take(&mut self.nodes) {
            n.node.allocated_to = None;
            if let Err(e) = self.pc.ctx.store.store_node(&n.node, Some(n.version)).await {
                warn!(node = %n.node.id, error = %e, "cannot free static node");
            }
            n.unlock().await;
        }
    }
}
