//! A started static provider and its sync: keeping ZooKeeper's nodes equal to the
//! configured hosts, as Nodepool's static driver does on start, on every config change
//! and in every cleanup pass (here: whenever a node of the provider or the config
//! changes, see `sync`).
//!
//! One pass ([`StaticProvider::sync`]): the slots of every host are worked out from the
//! cached nodes (`slots`); removable nodes past a host's `max-parallel-jobs` or of hosts
//! no longer configured are marked `deleting` (the DeletedNodeWorker removes them);
//! then every host with an empty slot, or whose config changed since it was last synced
//! (and at start), is checked (`check::host_keys`): on success a `ready` node is
//! registered in every empty slot and the host's `ready`, unallocated nodes get the
//! current labels, connection settings, host keys, pool and attributes; on failure the
//! host is not registered and is tried again after the retry delay (the cleanup
//! interval, 60 s by default, as Nodepool retries in its cleanup pass) — and if its
//! config changed (or at start) its `ready` nodes are removed, as Nodepool does for a
//! host it cannot sync. Hosts are checked concurrently.
//!
//! A registered node (Nodepool's `registerNodeFromConfig`): state `ready`, `launcher`
//! `static driver`, `type` = the host's labels, `external_id`, `hostname` and
//! `interface_ip` = the host name, `public_ipv4`/`public_ipv6` = the address the name
//! resolves to, `username`, `connection_type`, `connection_port`, `python_path`,
//! `shell_type`, `host_keys`, `attributes` = the pool's `node-attributes`, `slot`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use nodepool_shared::config::{HostKey, StaticNode, StaticPool, StaticProvider as Config};
use nodepool_shared::model::{Node, NodeId, NodeState};
use nodepool_shared::zk::{ZkError, ZkResult};
use serde_json::Value;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::check::{self, CheckError};
use super::slots::{self, SlotNode};
use crate::launcher::deleter::lock_node;
use crate::launcher::runtime::LauncherContext;
use nodepool_shared::sync::MutexExt;

/// `launcher` of every static node.
pub const STATIC_LAUNCHER: &str = "static driver";

/// How many hosts are checked at the same time.
const CONCURRENT_CHECKS: usize = 8;

/// How soon a host whose sync failed on a ZooKeeper error is tried again.
const ZK_RETRY: Duration = Duration::from_secs(1);

/// How long a new node may take to show in the tree cache before the sync goes on.
const VISIBLE: Duration = Duration::from_secs(10);

/// What the sync remembers per provider.
#[derive(Default)]
struct SyncState {
    /// Hosts whose last check failed, and when they may be tried again.
    retry_at: HashMap<HostKey, Instant>,
    /// The pool and config each host was last synced with.
    synced: HashMap<HostKey, (String, StaticNode)>,
}

/// What one sync pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Nodes registered.
    pub registered: Vec<NodeId>,
    /// Nodes updated to the current config.
    pub updated: Vec<NodeId>,
    /// Nodes marked `deleting`.
    pub removed: Vec<NodeId>,
    /// Hosts whose check failed (retried later), with the reason.
    pub failed: Vec<(HostKey, String)>,
}

impl SyncReport {
    fn merge(&mut self, other: SyncReport) {
        self.registered.extend(other.registered);
        self.updated.extend(other.updated);
        self.removed.extend(other.removed);
        self.failed.extend(other.failed);
    }

    /// Whether the pass wrote anything.
    pub fn wrote(&self) -> bool {
        !(self.registered.is_empty() && self.updated.is_empty() && self.removed.is_empty())
    }
}

/// One host's share of a pass.
struct HostWork<'a> {
    pool: &'a StaticPool,
    host: &'a StaticNode,
    register: Vec<u32>,
    /// The host's nodes to bring up to date (empty unless its config changed).
    existing: Vec<NodeId>,
    changed: bool,
}

/// A started static provider (the launcher keeps one per `driver: static` provider).
pub struct StaticProvider {
    name: String,
    retry_after: Duration,
    state: Mutex<SyncState>,
}

impl StaticProvider {
    /// A provider named `name` whose failing hosts are retried after `retry_after`.
    pub fn new(name: &str, retry_after: Duration) -> Self {
        StaticProvider {
            name: name.to_string(),
            retry_after,
            state: Mutex::new(SyncState::default()),
        }
    }

    /// The provider name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state.lock_or_recover()
    }

    /// When the earliest failed host may be tried again.
    pub fn next_retry(&self) -> Option<Instant> {
        self.state().retry_at.values().min().copied()
    }

    /// Hosts whose last check failed (for the state dump).
    pub fn failing_hosts(&self) -> Vec<HostKey> {
        let mut v: Vec<HostKey> = self.state().retry_at.keys().cloned().collect();
        v.sort();
        v
    }

    /// One sync pass against `config` (this provider's current config); see the module
    /// doc.
    pub async fn sync(&self, ctx: &LauncherContext, config: &Config) -> SyncReport {
        let configured: Vec<(HostKey, u32)> = config
            .hosts()
            .map(|(_, h)| (h.key(), h.max_parallel_jobs))
            .collect();
        let mut nodes: Vec<SlotNode> = Vec::new();
        ctx.cache.for_each_node(|n| {
            if n.node.provider() == Some(self.name.as_str()) {
                nodes.push(SlotNode::of(n));
            }
        });
        let plan = slots::plan(&configured, &slots::assign(&configured, &nodes));
        let mut report = SyncReport::default();
        for id in &plan.remove {
            if remove(
                ctx,
                id,
                "its host is not configured (or past max-parallel-jobs)",
            )
            .await
            {
                report.removed.push(id.clone());
            }
        }
        // The futures are made first: a stream mapping through a closure here trips
        // the compiler's `Send` check of the spawned sync task (higher-ranked lifetimes).
        let checks: Vec<_> = self
            .host_work(config, &plan)
            .into_iter()
            .map(|w| self.sync_host(ctx, w))
            .collect();
        let results: Vec<SyncReport> = stream::iter(checks)
            .buffer_unordered(CONCURRENT_CHECKS)
            .collect()
            .await;
        for r in results {
            report.merge(r);
        }
        report
    }

    /// The hosts to check in this pass (not while their retry delay runs): those with
    /// an empty slot, and those whose config changed since their last sync.
    fn host_work<'a>(&self, config: &'a Config, plan: &slots::Plan) -> Vec<HostWork<'a>> {
        let now = Instant::now();
        let mut state = self.state();
        let keys: Vec<HostKey> = config.hosts().map(|(_, h)| h.key()).collect();
        state.retry_at.retain(|k, _| keys.contains(k));
        state.synced.retain(|k, _| keys.contains(k));
        let mut work = Vec::new();
        for (pool, host) in config.hosts() {
            let key = host.key();
            if state.retry_at.get(&key).is_some_and(|at| *at > now) {
                continue;
            }
            let register = plan.register.get(&key).cloned().unwrap_or_default();
            let changed = state.synced.get(&key) != Some(&(pool.name.clone(), host.clone()));
            let existing = match changed {
                true => plan.existing.get(&key).cloned().unwrap_or_default(),
                false => Vec::new(),
            };
            if register.is_empty() && existing.is_empty() {
                state.synced.insert(key, (pool.name.clone(), host.clone()));
                continue;
            }
            work.push(HostWork {
                pool,
                host,
                register,
                existing,
                changed,
            });
        }
        work
    }

    /// Checks one host, then registers its empty slots and updates its ready nodes (or
    /// records the failure).
    async fn sync_host(&self, ctx: &LauncherContext, w: HostWork<'_>) -> SyncReport {
        let key = w.host.key();
        let mut report = SyncReport::default();
        let checked = match check::host_keys(w.host).await {
            Ok(keys) => check::address(w.host).await.map(|ip| (keys, ip)),
            Err(e) => Err(e),
        };
        let (keys, ip) = match checked {
            Ok(k) => k,
            Err(e) => {
                self.failed(&key, &e, w.changed);
                if w.changed {
                    for id in &w.existing {
                        if remove(ctx, id, "its host cannot be reached").await {
                            report.removed.push(id.clone());
                        }
                    }
                }
                report.failed.push((key, e.to_string()));
                return report;
            }
        };
        let mut zk_error = None;
        for slot in &w.register {
            let mut node = node_record(&self.name, w.pool, w.host, *slot, &keys, ip);
            match ctx.store.create_node(&mut node).await {
                Ok(id) => {
                    info!(provider = %self.name, host = %key, slot, node = %id, "registered static node");
                    wait_cached(ctx, &id).await;
                    report.registered.push(id);
                }
                Err(e) => zk_error = Some(e),
            }
        }
        for id in &w.existing {
            match update(ctx, id, w.pool, w.host, &keys, ip).await {
                Ok(true) => report.updated.push(id.clone()),
                Ok(false) => {}
                Err(e) => zk_error = Some(e),
            }
        }
        let mut state = self.state();
        match zk_error {
            Some(e) => {
                warn!(provider = %self.name, host = %key, error = %e, "cannot sync static host; retrying");
                state.retry_at.insert(key, Instant::now() + ZK_RETRY);
            }
            None => {
                state.retry_at.remove(&key);
                state
                    .synced
                    .insert(key, (w.pool.name.clone(), w.host.clone()));
            }
        }
        report
    }

    fn failed(&self, key: &HostKey, e: &CheckError, changed: bool) {
        warn!(provider = %self.name, host = %key, error = %e, retry_in = ?self.retry_after,
            removes_ready_nodes = changed, "cannot register static host");
        self.state()
            .retry_at
            .insert(key.clone(), Instant::now() + self.retry_after);
    }
}

/// The record of a new node in `slot` of `host` (see the module doc).
pub fn node_record(
    provider: &str,
    pool: &StaticPool,
    host: &StaticNode,
    slot: u32,
    host_keys: &[String],
    ip: Option<IpAddr>,
) -> Node {
    let mut node = Node::new();
    node.set_state(NodeState::Ready);
    node.created_time = Some(node.state_time);
    node.provider = Some(provider.to_string());
    node.launcher = Some(STATIC_LAUNCHER.to_string());
    node.external_id = Some(host.name.clone());
    node.hostname = Some(host.name.clone());
    node.interface_ip = Some(host.name.clone());
    node.slot = Some(i64::from(slot));
    apply_config(&mut node, pool, host, host_keys, ip);
    node
}

/// Sets what a node takes from its pool and host config (Nodepool's update of a static
/// node, plus its pool and `node-attributes`).
fn apply_config(
    node: &mut Node,
    pool: &StaticPool,
    host: &StaticNode,
    host_keys: &[String],
    ip: Option<IpAddr>,
) {
    node.pool = Some(pool.name.clone());
    node.node_type = host.labels.clone();
    node.username = Some(host.username.clone());
    node.connection_port = host.connection_port;
    node.connection_type = Some(host.connection_type.clone());
    node.python_path = Some(host.python_path.clone());
    node.shell_type = host.shell_type.clone();
    node.host_keys = host_keys.to_vec();
    node.attributes = if pool.node_attributes.is_empty() {
        Value::Null
    } else {
        Value::Object(pool.node_attributes.clone())
    };
    match ip {
        Some(IpAddr::V4(a)) => node.public_ipv4 = Some(a.to_string()),
        Some(IpAddr::V6(a)) => node.public_ipv6 = Some(a.to_string()),
        None => {}
    }
}

/// Waits (bounded) until the tree cache shows node `id`, so the next pass sees its slot
/// taken.
async fn wait_cached(ctx: &LauncherContext, id: &NodeId) {
    let mut generation = ctx.cache.watch_generation();
    let deadline = Instant::now() + VISIBLE;
    while ctx.cache.node(id).is_none() {
        tokio::select! {
            _ = generation.changed() => {}
            _ = tokio::time::sleep_until(deadline) => return,
        }
    }
}

/// Brings a `ready`, unallocated node up to date with its host's config (under its lock;
/// skipped when someone holds it). `Ok(true)` when it was written.
async fn update(
    ctx: &LauncherContext,
    id: &NodeId,
    pool: &StaticPool,
    host: &StaticNode,
    host_keys: &[String],
    ip: Option<IpAddr>,
) -> ZkResult<bool> {
    let Some(mut locked) = lock_node(ctx, id).await? else {
        debug!(node = %id, "static node locked; not updated");
        return Ok(false);
    };
    let mut wanted = locked.node.clone();
    apply_config(&mut wanted, pool, host, host_keys, ip);
    let stale = locked.node.state == NodeState::Ready
        && locked.node.allocated_to.is_none()
        && wanted != locked.node;
    let r = if stale {
        locked.node = wanted;
        ctx.store
            .store_node(&locked.node, Some(locked.version))
            .await
            .map(|_| true)
    } else {
        Ok(false)
    };
    if let Ok(true) = r {
        info!(node = %id, host = %host.key(), "updated static node to the current config");
    }
    locked.unlock().await;
    r
}

/// Marks a `ready`, unallocated node `deleting` under its lock (Nodepool's
/// `deregisterNode`); nothing when it is locked or no longer ready. Returns whether it
/// was marked.
pub async fn remove(ctx: &LauncherContext, id: &NodeId, why: &str) -> bool {
    let locked = match lock_node(ctx, id).await {
        Ok(Some(l)) => l,
        Ok(None) => return false,
        Err(e) => {
            warn!(node = %id, error = %e, "cannot lock static node to remove it");
            return false;
        }
    };
    let mut locked = locked;
    let removable = locked.node.state == NodeState::Ready && locked.node.allocated_to.is_none();
    let mut done = false;
    if removable {
        locked.node.set_state(NodeState::Deleting);
        match ctx
            .store
            .store_node(&locked.node, Some(locked.version))
            .await
        {
            Ok(_) => {
                info!(node = %id, "removing static node: {why}");
                done = true;
            }
            Err(ZkError::BadVersion(_)) => debug!(node = %id, "static node changed meanwhile"),
            Err(e) => warn!(node = %id, error = %e, "cannot mark static node deleting"),
        }
    }
    locked.unlock().await;
    done
}
