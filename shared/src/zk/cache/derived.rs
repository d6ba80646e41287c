//! What the tree keeps beside its maps so that the launcher's pool workers and request
//! handlers need no scan of the whole cache: the `requested` requests in Nodepool's
//! priority order ([`RequestOrder`]), every tenant's node usage ([`TenantUsage`]), the
//! nodes allocated to each request ([`Allocations`]), and per provider and pool the
//! nodes' resources and the ready nodes free for reuse ([`NodeIndex`]), and the node
//! counts of the stats gauges and min-ready ([`NodeCounts`]), all updated as each
//! change is applied.
//!
//! At 100,000 nodes and 5,000 waiting requests, sorting the requests and summing a
//! tenant's nodes on every pass of every pool worker was most of an idle launcher's CPU;
//! summing a provider's nodes for each quota check and scanning every node for a ready
//! one to reuse was most of the time between accepting a request and launching its
//! node. Kept here they cost a few map updates per change.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use crate::model::{CompactNode, NodeId, NodeRequest, NodeState, QuotaInformation, RequestId};

use super::tree::CachedNode;

/// The position of a request in Nodepool's order: `(precedence, relative_priority,
/// sequence)` as [`NodeRequest::priority`], then the whole id (a total order for a map
/// key; ids that tie on all three are malformed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestOrder {
    relative_priority: i64,
    id: RequestId,
}

impl RequestOrder {
    /// The key of `r`.
    pub fn of(r: &NodeRequest) -> Self {
        RequestOrder {
            relative_priority: r.relative_priority,
            id: r.id.clone(),
        }
    }
}

impl Ord for RequestOrder {
    fn cmp(&self, other: &Self) -> Ordering {
        self.id
            .precedence()
            .cmp(other.id.precedence())
            .then(self.relative_priority.cmp(&other.relative_priority))
            .then_with(|| self.id.sequence().cmp(other.id.sequence()))
            .then_with(|| self.id.cmp(&other.id))
    }
}

impl PartialOrd for RequestOrder {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The nodes of one tenant as `tenant-resource-limits` count them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantUsage {
    /// The sum of the `resources` of every cached node with this `tenant_name` (any
    /// provider, any state; nodes without `resources` count as nothing).
    pub used: QuotaInformation,
    /// Bumped on every change of a node of this tenant (any field: also one that moves
    /// a node between requests). Never goes back, also not across a full reload, so
    /// "unchanged counter" means "the same nodes as then".
    pub changes: u64,
}

/// Every tenant's usage (tenants are few; an entry stays once seen, so that its
/// counter never restarts).
#[derive(Debug, Default)]
pub struct Tenants(HashMap<String, TenantUsage>);

impl Tenants {
    /// The usage of `tenant` (none seen: nothing used, counter 0).
    pub fn get(&self, tenant: &str) -> TenantUsage {
        self.0.get(tenant).cloned().unwrap_or_default()
    }

    /// Accounts for a node replaced by another (`None` = absent).
    pub fn replace(&mut self, old: Option<&CompactNode>, new: Option<&CompactNode>) {
        if let Some(o) = old {
            self.count(o, -1.0);
        }
        if let Some(n) = new {
            self.count(n, 1.0);
        }
    }

    fn count(&mut self, n: &CompactNode, sign: f64) {
        let Some(tenant) = n.tenant_name() else {
            return;
        };
        let entry = match self.0.get_mut(tenant) {
            Some(e) => e,
            None => self.0.entry(tenant.to_string()).or_default(),
        };
        entry.changes += 1;
        Self::account(&mut entry.used, n, sign);
    }

    /// Adds (`sign` 1) or subtracts (-1) the `resources` of `n` to `used`, as a tenant's
    /// usage counts them (a node without `resources` counts as nothing).
    pub fn account(used: &mut QuotaInformation, n: &CompactNode, sign: f64) {
        if let Some(v) = n.standard_resources() {
            used.combine_standard(v, sign);
        } else if let Some(q) = n.resources_quota() {
            if sign > 0.0 {
                used.add(&q);
            } else {
                used.subtract(&q);
            }
        }
    }

    /// Takes over the counters of `old` (the tree this one replaces after a full load),
    /// each one past its old value, so that no counter repeats.
    pub fn continue_from(&mut self, old: &Tenants) {
        for (t, u) in &old.0 {
            let e = self.0.entry(t.clone()).or_default();
            e.changes += u.changes + 1;
        }
    }
}

/// The nodes allocated to each request (their `allocated_to`; any state), so that the
/// nodes of a few requests are found without a scan: a tenant's usage while a pool
/// handles requests of that tenant counts their need instead of their nodes, and the
/// reset of a lost request releases its nodes.
///
/// Nearly every node of a busy fleet is allocated, each to a request of its own (Zuul
/// deletes a request once it holds its nodes; the nodes keep `allocated_to`). A map
/// from request id to a set of node ids cost ~270 bytes per node (24 MiB of the
/// launcher's RSS at 100,000 nodes); this keeps one ordered pair of integers per
/// allocated node instead: a 64-bit hash of the request id and the node's sequence
/// number (~26 bytes per node). The hash only narrows the search: a lookup
/// returns candidates, and the caller keeps those whose `allocated_to` is the request
/// ([`super::tree::Tree::allocated_nodes`]). Node ids that are not plain 10-digit
/// sequences (never written by Nodepool) are kept as they are, in a set of their own.
#[derive(Debug, Default)]
pub struct Allocations {
    plain: BTreeSet<(u64, u64)>,
    odd: BTreeSet<(u64, NodeId)>,
}

impl Allocations {
    /// Accounts for a node replaced by another (`None` = absent).
    pub fn replace(&mut self, old: Option<&CompactNode>, new: Option<&CompactNode>) {
        let before = old.and_then(|o| o.allocated_to());
        let after = new.and_then(|n| n.allocated_to());
        if before == after {
            return;
        }
        if let (Some(o), Some(r)) = (old, before) {
            self.set(r, o.id(), false);
        }
        if let (Some(n), Some(r)) = (new, after) {
            self.set(r, n.id(), true);
        }
    }

    fn set(&mut self, request: &str, node: &NodeId, present: bool) {
        let key = request_key(request);
        match plain_sequence(node) {
            Some(seq) if present => {
                self.plain.insert((key, seq));
            }
            Some(seq) => {
                self.plain.remove(&(key, seq));
            }
            None if present => {
                self.odd.insert((key, node.clone()));
            }
            None => {
                self.odd.remove(&(key, node.clone()));
            }
        }
    }

    /// The ids of the nodes that may be allocated to `request`: every node that is,
    /// and rarely one allocated to another request whose id has the same hash (check
    /// `allocated_to`). In id order for plain ids, then the others.
    pub fn candidates(&self, request: &str) -> impl Iterator<Item = NodeId> + '_ {
        let key = request_key(request);
        let plain = self
            .plain
            .range((key, 0)..=(key, u64::MAX))
            .map(|(_, seq)| NodeId::from_sequence(*seq));
        let odd = self
            .odd
            .iter()
            .filter(move |(k, _)| *k == key)
            .map(|(_, id)| id.clone());
        plain.chain(odd)
    }

    /// How many allocated nodes are indexed.
    pub fn len(&self) -> usize {
        self.plain.len() + self.odd.len()
    }

    /// Whether no node is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The index key of a request id: a 64-bit hash, the same in every process.
fn request_key(request: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    request.hash(&mut h);
    h.finish()
}

/// The sequence number of a node id written as Nodepool writes it (10 digits).
fn plain_sequence(id: &NodeId) -> Option<u64> {
    let seq = id.sequence()?;
    (id.as_str().len() == 10).then_some(seq)
}

/// The resources of a set of nodes, as the launcher's quota check counts them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeSum {
    /// How many nodes have `resources` of exactly `cores`, `instances` and `ram` as
    /// integers (what a launcher writes).
    pub standard_nodes: u64,
    /// Their summed `cores`, `instances` and `ram`.
    pub standard: [i64; 3],
    /// The other nodes (`resources` in another form, or none yet), in id order: the
    /// launcher works out what each takes (a claim or the label's need may stand in).
    pub other: BTreeSet<NodeId>,
}

impl NodeSum {
    fn count(&mut self, n: &CompactNode, add: bool) {
        match n.standard_resources() {
            Some(r) => {
                let sign = if add { 1 } else { -1 };
                self.standard_nodes = if add {
                    self.standard_nodes + 1
                } else {
                    self.standard_nodes.saturating_sub(1)
                };
                for (s, v) in self.standard.iter_mut().zip(r) {
                    *s += sign * v;
                }
            }
            None if add => {
                self.other.insert(n.id().clone());
            }
            None => {
                self.other.remove(n.id());
            }
        }
    }
}

/// The nodes of one pool of a provider.
#[derive(Debug, Default)]
struct PoolNodes {
    sum: NodeSum,
    /// Ready nodes free for reuse (see [`NodeIndex::reusable`]) by label.
    ready: HashMap<String, BTreeSet<NodeId>>,
    /// How many of the pool's nodes are `deleting` (a paused handler frees quota only
    /// while none is).
    deleting: u64,
}

/// The nodes of one provider.
#[derive(Debug, Default)]
struct ProviderNodes {
    /// Every node of the provider (any pool, also none).
    sum: NodeSum,
    pools: HashMap<String, PoolNodes>,
}

/// Node counts by state, in the order of [`NodeState::ALL`].
pub type StateCounts = [u64; NodeState::ALL.len()];

/// How many nodes there are by state, by provider and state and by label and state
/// (the stats gauges; a node counts once per distinct label of its `type`), and per
/// label how many are `ready` and unallocated (min-ready; locked or not). Kept as nodes
/// change, so that the stats worker and min-ready do not scan every node: at 100,000
/// nodes each such scan cost a few milliseconds of the launcher's CPU per pass.
///
/// A provider or label without nodes has no entry (as a scan would find none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeCounts {
    /// Every node by state.
    pub all: StateCounts,
    /// By the node's `provider` (nodes without one count only in `all`).
    pub by_provider: HashMap<String, StateCounts>,
    /// By label.
    pub by_label: HashMap<String, StateCounts>,
    /// By label: the `ready` nodes with no `allocated_to`.
    pub ready_unallocated: HashMap<String, u64>,
}

/// The index of `state` in [`NodeState::ALL`].
pub fn state_index(state: NodeState) -> usize {
    NodeState::ALL
        .iter()
        .position(|s| *s == state)
        .unwrap_or_default()
}

impl NodeCounts {
    /// Counts `n` in (`add`) or out.
    fn count(&mut self, n: &CompactNode, add: bool) {
        let i = state_index(n.state());
        bump(&mut self.all[i], add);
        if let Some(p) = n.provider() {
            bump_in(&mut self.by_provider, p, i, add);
        }
        let free = n.state() == NodeState::Ready && n.allocated_to().is_none();
        for (j, l) in n.labels().enumerate() {
            // A label listed twice counts once.
            if n.labels().take(j).any(|e| e == l) {
                continue;
            }
            bump_in(&mut self.by_label, l, i, add);
            if free {
                let c = match self.ready_unallocated.get_mut(l) {
                    Some(c) => c,
                    None => self.ready_unallocated.entry(l.to_string()).or_default(),
                };
                bump(c, add);
                if *c == 0 {
                    self.ready_unallocated.remove(l);
                }
            }
        }
    }
}

fn bump(c: &mut u64, add: bool) {
    *c = if add { *c + 1 } else { c.saturating_sub(1) };
}

/// Bumps `map[key][i]`, dropping the entry once it counts nothing.
fn bump_in(map: &mut HashMap<String, StateCounts>, key: &str, i: usize, add: bool) {
    let counts = match map.get_mut(key) {
        Some(c) => c,
        None if add => map.entry(key.to_string()).or_default(),
        None => return,
    };
    bump(&mut counts[i], add);
    if !add && counts.iter().all(|c| *c == 0) {
        map.remove(key);
    }
}

/// Per provider (the node's `provider`) and per pool of it (`pool`): the nodes'
/// resources ([`NodeSum`], every state) and, by label, the ids of the `ready`,
/// unallocated nodes nobody holds or waits to lock (an entry per such node only).
/// Also the ids of the nodes the launcher's cleanup may act on ([`Self::unheld`]), so
/// that its scan on every cache event looks at those few instead of every node, and
/// the node counts of the stats gauges and min-ready ([`NodeCounts`]).
#[derive(Debug, Default)]
pub struct NodeIndex(HashMap<String, ProviderNodes>, BTreeSet<NodeId>, NodeCounts);

impl NodeIndex {
    /// Whether a node is one a request of its provider and pool may reuse: `ready`, not
    /// allocated, no lock contender (Nodepool skips a node that is probably locked).
    pub fn reusable(n: &CachedNode) -> bool {
        n.node.state() == NodeState::Ready
            && n.node.allocated_to().is_none()
            && !n.probably_locked()
    }

    /// Whether a node is one the launcher's cleanup (the DeletedNodeWorker's job) may
    /// act on: no lock contender, and neither `hold` nor `ready` and unallocated (a
    /// `ready` node allocated to a request is deallocated once the request is gone).
    /// At rest nearly every node is in use and locked, or held: this set stays small.
    pub fn unheld(n: &CachedNode) -> bool {
        let state = n.node.state();
        !n.probably_locked()
            && state != NodeState::Hold
            && !(state == NodeState::Ready && n.node.allocated_to().is_none())
    }

    /// Accounts for a cached node replaced by another (`None` = absent; the same node
    /// with other lock contenders counts as a replacement too).
    pub fn replace(&mut self, old: Option<&CachedNode>, new: Option<&CachedNode>) {
        if let (Some(o), Some(n)) = (old, new) {
            if std::ptr::eq(o, n) {
                return;
            }
        }
        self.recount(old, new);
        match new {
            Some(n) if Self::unheld(n) => {
                self.1.insert(n.id().clone());
            }
            Some(n) => {
                self.1.remove(n.id());
            }
            None => {
                if let Some(o) = old {
                    self.1.remove(o.id());
                }
            }
        }
        if let (Some(o), Some(n)) = (old, new) {
            let same_usage = o.node.provider() == n.node.provider()
                && o.node.pool() == n.node.pool()
                && o.node.standard_resources() == n.node.standard_resources();
            let same_ready = !Self::reusable(o) && !Self::reusable(n);
            let same_deleting =
                (o.node.state() == NodeState::Deleting) == (n.node.state() == NodeState::Deleting);
            if same_usage && same_ready && same_deleting {
                return;
            }
        }
        if let Some(o) = old {
            self.count(o, false);
        }
        if let Some(n) = new {
            self.count(n, true);
        }
    }

    /// Updates [`NodeCounts`] unless the change leaves them as they are (a lock change,
    /// or a write of fields they do not depend on).
    fn recount(&mut self, old: Option<&CachedNode>, new: Option<&CachedNode>) {
        if let (Some(o), Some(n)) = (old, new) {
            let (o, n) = (&o.node, &n.node);
            if o.state() == n.state()
                && o.provider() == n.provider()
                && o.allocated_to().is_none() == n.allocated_to().is_none()
                && o.labels().eq(n.labels())
            {
                return;
            }
        }
        if let Some(o) = old {
            self.2.count(&o.node, false);
        }
        if let Some(n) = new {
            self.2.count(&n.node, true);
        }
    }

    fn count(&mut self, n: &CachedNode, add: bool) {
        let node = &n.node;
        let Some(provider) = node.provider() else {
            return;
        };
        let entry = match self.0.get_mut(provider) {
            Some(e) => e,
            None if add => self.0.entry(provider.to_string()).or_default(),
            None => return,
        };
        entry.sum.count(node, add);
        let Some(pool) = node.pool() else {
            return;
        };
        let pool_entry = match entry.pools.get_mut(pool) {
            Some(p) => p,
            None if add => entry.pools.entry(pool.to_string()).or_default(),
            None => return,
        };
        pool_entry.sum.count(node, add);
        if node.state() == NodeState::Deleting {
            bump(&mut pool_entry.deleting, add);
        }
        if !Self::reusable(n) {
            return;
        }
        for label in node.labels() {
            if add {
                let set = match pool_entry.ready.get_mut(label) {
                    Some(s) => s,
                    None => pool_entry.ready.entry(label.to_string()).or_default(),
                };
                set.insert(node.id().clone());
            } else if let Some(set) = pool_entry.ready.get_mut(label) {
                set.remove(node.id());
                if set.is_empty() {
                    pool_entry.ready.remove(label);
                }
            }
        }
    }

    /// The resources of every node of `provider` (`None`: it has none).
    pub fn provider_sum(&self, provider: &str) -> Option<&NodeSum> {
        self.0.get(provider).map(|p| &p.sum)
    }

    /// The resources of the nodes of `provider` in `pool`.
    pub fn pool_sum(&self, provider: &str, pool: &str) -> Option<&NodeSum> {
        self.0.get(provider)?.pools.get(pool).map(|p| &p.sum)
    }

    /// The ids of the nodes of `provider` in `pool` with `label` that are free for
    /// reuse ([`Self::reusable`]), in id order.
    pub fn ready(&self, provider: &str, pool: &str, label: &str) -> Option<&BTreeSet<NodeId>> {
        self.0.get(provider)?.pools.get(pool)?.ready.get(label)
    }

    /// The ids of the nodes of `provider` in `pool` free for reuse, whatever their
    /// label, in id order.
    pub fn pool_reusable(&self, provider: &str, pool: &str) -> BTreeSet<NodeId> {
        let Some(p) = self.0.get(provider).and_then(|p| p.pools.get(pool)) else {
            return BTreeSet::new();
        };
        p.ready.values().flatten().cloned().collect()
    }

    /// How many nodes of `provider` in `pool` are `deleting`.
    pub fn pool_deleting(&self, provider: &str, pool: &str) -> u64 {
        self.0
            .get(provider)
            .and_then(|p| p.pools.get(pool))
            .map_or(0, |p| p.deleting)
    }

    /// The ids of the nodes [`Self::unheld`] says the cleanup may act on, in id order.
    pub fn unheld_ids(&self) -> &BTreeSet<NodeId> {
        &self.1
    }

    /// The node counts by state, provider and label ([`NodeCounts`]).
    pub fn counts(&self) -> &NodeCounts {
        &self.2
    }

    /// How many entries the ready sets hold (an entry per label of each reusable node).
    pub fn ready_entries(&self) -> usize {
        self.0
            .values()
            .flat_map(|p| p.pools.values())
            .flat_map(|p| p.ready.values())
            .map(BTreeSet::len)
            .sum()
    }
}

/// A provider's node usage as one read of the cache saw it ([`TreeCache::provider_usage`]).
///
/// [`TreeCache::provider_usage`]: super::TreeCache::provider_usage
#[derive(Clone, Debug, Default)]
pub struct ProviderUsage {
    /// Nodes of the provider with standard `resources`: how many, and their sum.
    pub provider_standard: (u64, [i64; 3]),
    /// The same for the nodes of the pool asked about.
    pub pool_standard: (u64, [i64; 3]),
    /// The provider's other nodes (any pool), in id order.
    pub other: Vec<std::sync::Arc<CachedNode>>,
    /// Which of the ids asked about are cached nodes of the provider.
    pub cached: std::collections::HashSet<NodeId>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Node;

    fn req(id: &str, rp: i64) -> NodeRequest {
        NodeRequest {
            id: RequestId::from(id),
            relative_priority: rp,
            ..NodeRequest::default()
        }
    }

    #[test]
    fn order_is_precedence_then_relative_priority_then_sequence() {
        let mut v = [
            RequestOrder::of(&req("200-0000000001", 0)),
            RequestOrder::of(&req("100-0000000009", 1)),
            RequestOrder::of(&req("100-0000000008", 1)),
            RequestOrder::of(&req("100-0000000010", 0)),
        ];
        v.sort();
        let ids: Vec<&str> = v.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "100-0000000010",
                "100-0000000008",
                "100-0000000009",
                "200-0000000001"
            ]
        );
        let a = req("100-0000000008", 1);
        let b = req("100-0000000009", 1);
        assert_eq!(
            RequestOrder::of(&a).cmp(&RequestOrder::of(&b)),
            a.cmp_priority(&b)
        );
    }

    #[test]
    fn tenant_usage_follows_node_changes() {
        let node = |tenant: Option<&str>, cores: u64| {
            let mut n = Node::new();
            n.id = NodeId::from("0000000001");
            n.tenant_name = tenant.map(str::to_string);
            let mut r = QuotaInformation::usage();
            r.set("cores", cores as f64);
            r.set("instances", 1.0);
            r.set("ram", 512.0);
            n.resources = Some(r.to_resources());
            CompactNode::from(n)
        };
        let mut t = Tenants::default();
        let a = node(Some("t"), 2);
        t.replace(None, Some(&a));
        assert_eq!(t.get("t").used.get("cores"), 2.0);
        let before = t.get("t").changes;
        let b = node(Some("t"), 4);
        t.replace(Some(&a), Some(&b));
        assert_eq!(t.get("t").used.get("cores"), 4.0);
        assert!(t.get("t").changes > before);
        let c = node(None, 4);
        t.replace(Some(&b), Some(&c));
        assert_eq!(t.get("t").used.get("cores"), 0.0);
        assert_eq!(t.get("other").changes, 0);
        let mut reloaded = Tenants::default();
        reloaded.continue_from(&t);
        assert!(reloaded.get("t").changes > t.get("t").changes);
    }
}
