//! The cached contents of `/nodepool` as typed maps, and the pure operations on them:
//! decoding a znode read into an [`Update`], applying it (emitting [`CacheEvent`]s), and
//! diffing a freshly loaded tree against the live one after a resync. No I/O here, so it
//! is unit-tested without ZooKeeper.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tracing::warn;

use crate::model::paths::{self, ZkPath};
use crate::model::{
    BuildId, CompactNode, Component, ComponentKind, ImageBuild, ImageUpload, Node, NodeId,
    NodeRequest, QuotaInformation, RequestId, RequestState, UploadId,
};
use crate::zk::store::{is_lock_contender, sort_contenders, FlagTimes};
use crate::zk::Stat;

use super::derived::{Allocations, NodeIndex, RequestOrder, TenantUsage, Tenants};

/// A cached node with its lock contenders.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedNode {
    /// The record in compact form (shared; never copied per event); read its fields with
    /// the accessors, or [`CompactNode::to_node`] for the whole [`Node`].
    pub node: Arc<CompactNode>,
    /// The znode stat (`version` for guarded writes, `mzxid` for ordering).
    pub stat: Stat,
    /// Lock contenders below `/nodepool/nodes/<id>/lock`, holder first (kept only here:
    /// the tree holds no second copy for a cached node).
    pub lock_contenders: Vec<String>,
}

impl CachedNode {
    /// A cached node made from a record (for tests and tools that build snapshots).
    pub fn new(node: Node, stat: Stat, lock_contenders: Vec<String>) -> Self {
        CachedNode {
            node: Arc::new(CompactNode::from(node)),
            stat,
            lock_contenders,
        }
    }

    /// The node id.
    pub fn id(&self) -> &NodeId {
        self.node.id()
    }

    /// True when someone holds or waits for the node's lock (Nodepool's "probably locked":
    /// the node has lock contenders, so it is skipped without trying to lock it).
    pub fn probably_locked(&self) -> bool {
        !self.lock_contenders.is_empty()
    }
}

/// A cached request.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedRequest {
    /// The record.
    pub request: NodeRequest,
    /// The znode stat.
    pub stat: Stat,
}

/// A cached image build.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedBuild {
    /// The record (`image` and `id` are set).
    pub build: ImageBuild,
    /// The znode stat.
    pub stat: Stat,
}

/// A cached image upload.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedUpload {
    /// The record (`image`, `build_id`, `provider` and `id` are set).
    pub upload: ImageUpload,
    /// The znode stat.
    pub stat: Stat,
}

/// A cached component.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedComponent {
    /// The znode name (`<hostname><seq10>`).
    pub name: String,
    /// The record.
    pub component: Component,
    /// The znode stat.
    pub stat: Stat,
}

/// What kind of cached object an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheKind {
    /// A node record.
    Node,
    /// A node lock contender.
    NodeLock,
    /// A request record.
    Request,
    /// A request lock contender.
    RequestLock,
    /// An image znode (`/nodepool/images/<image>`).
    Image,
    /// An image pause flag.
    ImagePause,
    /// An image build request flag.
    BuildRequest,
    /// An image build.
    Build,
    /// An image upload.
    Upload,
    /// A component.
    Component,
    /// The whole tree (after a full resync; re-read everything you derive from it).
    Tree,
}

/// How it changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    /// Appeared.
    Added,
    /// Changed content.
    Updated,
    /// Disappeared.
    Removed,
    /// The cache finished a full (re)load (with [`CacheKind::Tree`]).
    Resynced,
}

/// One change of the cache, broadcast to subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEvent {
    /// What kind of object.
    pub kind: CacheKind,
    /// Which one (typed ids; [`ZkPath::Other`] for [`CacheKind::Tree`]).
    pub path: ZkPath,
    /// What happened.
    pub change: Change,
}

impl CacheEvent {
    pub(super) fn new(kind: CacheKind, path: ZkPath, change: Change) -> Self {
        CacheEvent { kind, path, change }
    }
}

/// Key of an upload: image, build id, provider, upload id.
pub type UploadKey = (String, BuildId, String, UploadId);

/// Everything the cache holds.
#[derive(Debug, Default)]
pub struct Tree {
    pub(crate) nodes: BTreeMap<NodeId, Arc<CachedNode>>,
    pub(crate) empty_nodes: BTreeSet<NodeId>,
    /// Lock contenders of node ids without a cached node (a lock seen before its node's
    /// data, or of an empty node znode); a cached node carries its own.
    pub(crate) node_locks: BTreeMap<NodeId, BTreeSet<String>>,
    pub(crate) requests: BTreeMap<RequestId, Arc<CachedRequest>>,
    /// The `requested` requests of `requests`, in Nodepool's order.
    pub(crate) requested: BTreeMap<RequestOrder, Arc<CachedRequest>>,
    /// Every tenant's node usage.
    pub(crate) tenants: Tenants,
    /// The nodes allocated to each request.
    pub(crate) allocations: Allocations,
    /// Per provider and pool: the nodes' resources and the ready nodes free for reuse.
    pub(crate) node_index: NodeIndex,
    pub(crate) request_locks: BTreeMap<RequestId, BTreeSet<String>>,
    pub(crate) images: BTreeSet<String>,
    pub(crate) paused: BTreeSet<String>,
    pub(crate) build_requests: BTreeMap<String, FlagTimes>,
    pub(crate) builds: BTreeMap<(String, BuildId), Arc<CachedBuild>>,
    pub(crate) uploads: BTreeMap<UploadKey, Arc<CachedUpload>>,
    pub(crate) components: BTreeMap<(ComponentKind, String), Arc<CachedComponent>>,
    pub(crate) corrupt: BTreeSet<String>,
}

/// A decoded znode read or presence change, ready to apply (short-lived, so the size
/// difference between variants does not matter).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Update {
    /// Node data (`None` = empty znode, i.e. no node).
    Node(NodeId, Option<Arc<CompactNode>>, Stat),
    /// Request data.
    Request(RequestId, NodeRequest, Stat),
    /// Build data.
    Build(ImageBuild, Stat),
    /// Upload data.
    Upload(ImageUpload, Stat),
    /// Component data.
    Component(ComponentKind, String, Component, Stat),
    /// The request-build flag exists with this stat.
    BuildRequest(String, Stat),
    /// A record znode is missing, or holds empty data where a record is required.
    Gone(ZkPath),
    /// A record znode holds data that cannot be read.
    Corrupt(ZkPath, String),
    /// A znode that matters by existence only (contenders, images, pause flags, lock dirs).
    Present(ZkPath, bool),
}

/// A node record a full load read: decoded, or the live tree's cached node when its
/// record has not changed since (not decoded again).
#[derive(Debug)]
pub(crate) enum LoadedNode {
    /// Decoded from the data read.
    Read(Arc<CompactNode>),
    /// The live tree's node, whose record has the `mzxid` just read.
    Unchanged(Arc<CachedNode>),
}

/// Whether the cache reads the data of znodes at `p`.
pub fn wants_data(p: &ZkPath) -> bool {
    matches!(
        p,
        ZkPath::Node(_)
            | ZkPath::Request(_)
            | ZkPath::RequestBuild(_)
            | ZkPath::Build(..)
            | ZkPath::Upload { .. }
            | ZkPath::Component(..)
    )
}

/// Whether a full load lists the children of `p`.
pub fn wants_children(p: &ZkPath) -> bool {
    match p {
        ZkPath::Node(_) | ZkPath::Image(_) | ZkPath::Build(..) | ZkPath::Other => true,
        ZkPath::NodeLock(_, child) | ZkPath::RequestLock(_, child) => child.is_none(),
        _ => false,
    }
}

/// Whether `p` matters by existence only (no data read).
pub fn presence_only(p: &ZkPath) -> bool {
    matches!(
        p,
        ZkPath::NodeLock(..) | ZkPath::RequestLock(..) | ZkPath::Image(_) | ZkPath::Pause(_)
    )
}

/// Decodes a read of `path` (`None` = missing) into an update; logs corrupt data.
pub fn decode(path: &str, zp: ZkPath, read: Option<(Vec<u8>, Stat)>) -> Update {
    let Some((data, stat)) = read else {
        return Update::Gone(zp);
    };
    let res = match &zp {
        ZkPath::Node(id) => CompactNode::from_json(id, &data)
            .map(|n| Update::Node(id.clone(), n.map(Arc::new), stat)),
        ZkPath::Request(id) => NodeRequest::from_json(id, &data).map(|r| {
            r.map_or(Update::Gone(zp.clone()), |r| {
                Update::Request(id.clone(), r, stat)
            })
        }),
        ZkPath::Build(image, id) => ImageBuild::from_json(image, id, &data)
            .map(|b| b.map_or(Update::Gone(zp.clone()), |b| Update::Build(b, stat))),
        ZkPath::Upload {
            image,
            build_id,
            provider,
            upload_id,
        } => ImageUpload::from_json(image, build_id, provider, upload_id, &data)
            .map(|u| u.map_or(Update::Gone(zp.clone()), |u| Update::Upload(u, stat))),
        ZkPath::Component(kind, name) => Component::from_json(*kind, name, &data).map(|c| {
            c.map_or(Update::Gone(zp.clone()), |c| {
                Update::Component(*kind, name.clone(), c, stat)
            })
        }),
        ZkPath::RequestBuild(image) => Ok(Update::BuildRequest(image.clone(), stat)),
        _ => Ok(Update::Present(zp.clone(), true)),
    };
    match res {
        Ok(u) => u,
        Err(e) => {
            warn!(path = %path, "tree cache: skipping corrupt record: {e}");
            Update::Corrupt(zp, e.to_string())
        }
    }
}

fn path_string(zp: &ZkPath) -> Option<String> {
    Some(match zp {
        ZkPath::Node(id) => paths::node(id),
        ZkPath::Request(id) => paths::request(id),
        ZkPath::Build(i, b) => paths::build(i, b),
        ZkPath::Upload {
            image,
            build_id,
            provider,
            upload_id,
        } => paths::upload(image, build_id, provider, upload_id),
        ZkPath::Component(k, n) => paths::component(*k, n),
        ZkPath::RequestBuild(i) => paths::image_request_build(i),
        _ => return None,
    })
}

/// Inserts `v` at `k` unless the cached entry is newer (by `mzxid`); emits Added/Updated.
fn upsert<K: Ord + Clone, V>(
    map: &mut BTreeMap<K, Arc<V>>,
    k: K,
    v: V,
    mzxid: impl Fn(&V) -> i64,
    kind: CacheKind,
    zp: ZkPath,
    out: &mut Vec<CacheEvent>,
) {
    let change = match map.get(&k) {
        Some(old) if mzxid(old) > mzxid(&v) => return,
        Some(old) if mzxid(old) == mzxid(&v) => None,
        Some(_) => Some(Change::Updated),
        None => Some(Change::Added),
    };
    map.insert(k, Arc::new(v));
    if let Some(c) = change {
        out.push(CacheEvent::new(kind, zp, c));
    }
}

fn remove<K: Ord, V>(
    map: &mut BTreeMap<K, V>,
    k: &K,
    kind: CacheKind,
    zp: ZkPath,
    out: &mut Vec<CacheEvent>,
) {
    if map.remove(k).is_some() {
        out.push(CacheEvent::new(kind, zp, Change::Removed));
    }
}

impl Tree {
    /// The cached nodes in id order.
    pub fn nodes(&self) -> impl Iterator<Item = &Arc<CachedNode>> {
        self.nodes.values()
    }

    /// The usage of `tenant` ([`Tenants`]) less its nodes allocated to one of
    /// `requests` (found by [`Allocations`], not by a scan).
    pub fn tenant_usage_without<'a>(
        &self,
        tenant: &str,
        requests: impl IntoIterator<Item = &'a RequestId>,
    ) -> TenantUsage {
        let mut usage = self.tenants.get(tenant);
        for r in requests {
            for n in self.allocated(r) {
                if n.node.tenant_name() == Some(tenant) {
                    Tenants::account(&mut usage.used, &n.node, -1.0);
                }
            }
        }
        usage
    }

    /// The same number as [`Self::tenant_usage_without`] (its `used`) by a scan of
    /// every cached node, as the launcher summed it before the cache kept
    /// [`Allocations`]: the reference the index is tested and benchmarked against.
    pub fn tenant_usage_by_scan(&self, tenant: &str, claimed: &[RequestId]) -> QuotaInformation {
        let mut used = QuotaInformation::usage();
        for n in self.nodes.values() {
            if n.node.tenant_name() != Some(tenant) {
                continue;
            }
            if n.node
                .allocated_to()
                .is_some_and(|r| claimed.iter().any(|c| c == r))
            {
                continue;
            }
            if let Some(q) = n.node.resources_quota() {
                used.add(&q);
            }
        }
        used
    }

    /// The cached nodes allocated to `request`, in id order.
    pub fn allocated_nodes(&self, request: &RequestId) -> Vec<Arc<CachedNode>> {
        let mut v: Vec<Arc<CachedNode>> = self.allocated(request).cloned().collect();
        v.sort_by(|a, b| a.id().cmp(b.id()));
        v
    }

    /// The cached nodes allocated to `request`, by [`Allocations`].
    fn allocated<'a>(
        &'a self,
        request: &'a RequestId,
    ) -> impl Iterator<Item = &'a Arc<CachedNode>> {
        self.allocations
            .candidates(request.as_str())
            .filter_map(|id| self.nodes.get(&id))
            .filter(|n| n.node.is_allocated_to(request))
    }

    /// Takes the contenders kept for a node id that had no cached node.
    fn take_orphan_contenders(&mut self, id: &NodeId) -> Vec<String> {
        let mut v: Vec<String> = self
            .node_locks
            .remove(id)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        sort_contenders(&mut v);
        v
    }

    /// Stores node data unless the cached data is newer (by `mzxid`); the node keeps
    /// its lock contenders, and its tenant's usage follows.
    fn put_node(
        &mut self,
        id: NodeId,
        node: Arc<CompactNode>,
        stat: Stat,
        out: &mut Vec<CacheEvent>,
    ) {
        let (lock_contenders, change) = match self.nodes.get(&id) {
            Some(old) if old.stat.mzxid > stat.mzxid => return,
            Some(old) => (
                old.lock_contenders.clone(),
                (old.stat.mzxid != stat.mzxid).then_some(Change::Updated),
            ),
            None => (self.take_orphan_contenders(&id), Some(Change::Added)),
        };
        let new = Arc::new(CachedNode {
            node,
            stat,
            lock_contenders,
        });
        self.store_node(id.clone(), &new);
        if let Some(c) = change {
            out.push(CacheEvent::new(CacheKind::Node, ZkPath::Node(id), c));
        }
    }

    /// Drops a cached node (its tenant's usage follows); `keep_locks` keeps its
    /// contenders for the id (its znode is still there, empty).
    fn drop_node(&mut self, id: &NodeId, keep_locks: bool, out: &mut Vec<CacheEvent>) {
        let Some(old) = self.nodes.remove(id) else {
            return;
        };
        self.tenants.replace(Some(&old.node), None);
        self.allocations.replace(Some(&old.node), None);
        self.node_index.replace(Some(&old), None);
        if keep_locks && !old.lock_contenders.is_empty() {
            self.node_locks
                .insert(id.clone(), old.lock_contenders.iter().cloned().collect());
        }
        out.push(CacheEvent::new(
            CacheKind::Node,
            ZkPath::Node(id.clone()),
            Change::Removed,
        ));
    }

    /// Stores a node read by a full load into this fresh tree, its lock contenders with
    /// it (one `CachedNode` per node, not one more per contender). The cache's first
    /// load builds its tree this way; a reload patches the live tree instead
    /// (`super::reload`). `node` is either the freshly decoded record or, when the
    /// record is unchanged since the live tree read it (same `mzxid`), the live tree's
    /// copy: then the two trees share it, and the whole cached node when its stat and
    /// contenders are unchanged too.
    pub(crate) fn put_loaded_node(&mut self, node: LoadedNode, stat: Stat, lock: Vec<String>) {
        let mut contenders: Vec<String> =
            lock.into_iter().filter(|c| is_lock_contender(c)).collect();
        let (record, kept) = match node {
            LoadedNode::Read(record) => (record, None),
            LoadedNode::Unchanged(kept) => (kept.node.clone(), Some(kept)),
        };
        let id = record.id().clone();
        contenders.extend(self.take_orphan_contenders(&id));
        sort_contenders(&mut contenders);
        contenders.dedup();
        contenders.shrink_to_fit();
        let new = match kept {
            Some(k) if k.stat == stat && k.lock_contenders == contenders => k,
            _ => Arc::new(CachedNode {
                node: record,
                stat,
                lock_contenders: contenders,
            }),
        };
        self.empty_nodes.remove(&id);
        self.store_node(id, &new);
    }

    /// Puts `new` in the node map, its indexes following (tenant usage, allocations,
    /// the node index); returns the node it replaced.
    pub(super) fn store_node(
        &mut self,
        id: NodeId,
        new: &Arc<CachedNode>,
    ) -> Option<Arc<CachedNode>> {
        let old = self.nodes.insert(id, new.clone());
        let old_node = old.as_deref().map(|o| &*o.node);
        self.tenants.replace(old_node, Some(&new.node));
        self.allocations.replace(old_node, Some(&new.node));
        self.node_index.replace(old.as_deref(), Some(new));
        old
    }

    /// Stores request data unless the cached data is newer; keeps the priority order of
    /// the `requested` ones.
    fn put_request(
        &mut self,
        id: RequestId,
        request: NodeRequest,
        stat: Stat,
        out: &mut Vec<CacheEvent>,
    ) {
        let change = match self.requests.get(&id) {
            Some(old) if old.stat.mzxid > stat.mzxid => return,
            Some(old) => (old.stat.mzxid != stat.mzxid).then_some(Change::Updated),
            None => Some(Change::Added),
        };
        let new = Arc::new(CachedRequest { request, stat });
        if let Some(old) = self.requests.insert(id.clone(), new.clone()) {
            self.requested.remove(&RequestOrder::of(&old.request));
        }
        if new.request.state == RequestState::Requested {
            self.requested.insert(RequestOrder::of(&new.request), new);
        }
        if let Some(c) = change {
            out.push(CacheEvent::new(CacheKind::Request, ZkPath::Request(id), c));
        }
    }

    /// A node lock contender appeared or vanished: kept in the cached node, or for the
    /// id until its node is cached. Returns whether anything changed.
    fn node_contender(&mut self, id: &NodeId, child: &str, present: bool) -> bool {
        if let Some(entry) = self.nodes.get_mut(id) {
            let mut v = entry.lock_contenders.clone();
            let pos = v.iter().position(|c| c == child);
            match (present, pos) {
                (true, None) => {
                    v.push(child.to_string());
                    // A push on an empty `Vec` reserves four slots; 90 % of a large
                    // fleet has exactly one contender (Zuul's lock).
                    v.shrink_to_fit();
                    sort_contenders(&mut v);
                }
                (false, Some(i)) => {
                    v.remove(i);
                }
                _ => return false,
            }
            let new = Arc::new(CachedNode {
                node: entry.node.clone(),
                stat: entry.stat,
                lock_contenders: v,
            });
            let old = std::mem::replace(entry, new.clone());
            self.node_index.replace(Some(&old), Some(&new));
            return true;
        }
        if present {
            return self
                .node_locks
                .entry(id.clone())
                .or_default()
                .insert(child.to_string());
        }
        let Some(set) = self.node_locks.get_mut(id) else {
            return false;
        };
        let removed = set.remove(child);
        if set.is_empty() {
            self.node_locks.remove(id);
        }
        removed
    }

    /// Every node lock contender, cached node or not.
    fn all_node_contenders(&self) -> BTreeSet<(NodeId, String)> {
        let orphans = self
            .node_locks
            .iter()
            .flat_map(|(id, s)| s.iter().map(move |c| (id.clone(), c.clone())));
        let cached = self.nodes.iter().flat_map(|(id, n)| {
            n.lock_contenders
                .iter()
                .map(move |c| (id.clone(), c.clone()))
        });
        orphans.chain(cached).collect()
    }

    /// Pushes an event for every node lock contender that differs between this tree and
    /// `new`. Without contenders kept apart from their nodes (the usual case) the two
    /// node maps are walked side by side and only differing contender lists are looked
    /// at, instead of collecting both trees' 90,000 contenders of a large fleet into sets.
    fn diff_node_contenders(&self, new: &Tree, out: &mut Capped<'_>) {
        if !self.node_locks.is_empty() || !new.node_locks.is_empty() {
            return diff_set(
                &self.all_node_contenders(),
                &new.all_node_contenders(),
                |(id, c)| ZkPath::NodeLock(id.clone(), Some(c.clone())),
                CacheKind::NodeLock,
                out,
            );
        }
        let none: &[String] = &[];
        let push = |out: &mut Capped<'_>, id: &NodeId, old: &[String], new: &[String]| {
            for (list, other, change) in [(old, new, Change::Removed), (new, old, Change::Added)] {
                for c in list.iter().filter(|c| !other.contains(c)) {
                    out.push(CacheEvent::new(
                        CacheKind::NodeLock,
                        ZkPath::NodeLock(id.clone(), Some(c.clone())),
                        change,
                    ));
                }
            }
        };
        for (id, o) in &self.nodes {
            if out.full() {
                return;
            }
            match new.nodes.get(id) {
                Some(n) if Arc::ptr_eq(o, n) || o.lock_contenders == n.lock_contenders => {}
                Some(n) => push(out, id, &o.lock_contenders, &n.lock_contenders),
                None => push(out, id, &o.lock_contenders, none),
            }
        }
        for (id, n) in &new.nodes {
            if out.full() {
                return;
            }
            if !n.lock_contenders.is_empty() && !self.nodes.contains_key(id) {
                push(out, id, none, &n.lock_contenders);
            }
        }
    }

    /// Applies one update, pushing the resulting events to `out`.
    pub fn apply(&mut self, update: Update, out: &mut Vec<CacheEvent>) {
        match update {
            Update::Node(id, Some(node), stat) => {
                self.empty_nodes.remove(&id);
                self.corrupt.remove(&paths::node(&id));
                self.put_node(id, node, stat, out);
            }
            Update::Node(id, None, _) => {
                self.corrupt.remove(&paths::node(&id));
                self.drop_node(&id, true, out);
                self.empty_nodes.insert(id);
            }
            Update::Request(id, req, stat) => {
                self.corrupt.remove(&paths::request(&id));
                self.put_request(id, req, stat, out);
            }
            Update::Build(build, stat) => {
                self.corrupt.remove(&build.path());
                let zp = ZkPath::Build(build.image.clone(), build.id.clone());
                let k = (build.image.clone(), build.id.clone());
                upsert(
                    &mut self.builds,
                    k,
                    CachedBuild { build, stat },
                    |b| b.stat.mzxid,
                    CacheKind::Build,
                    zp,
                    out,
                );
            }
            Update::Upload(upload, stat) => {
                self.corrupt.remove(&upload.path());
                let zp = ZkPath::Upload {
                    image: upload.image.clone(),
                    build_id: upload.build_id.clone(),
                    provider: upload.provider.clone(),
                    upload_id: upload.id.clone(),
                };
                let k = (
                    upload.image.clone(),
                    upload.build_id.clone(),
                    upload.provider.clone(),
                    upload.id.clone(),
                );
                upsert(
                    &mut self.uploads,
                    k,
                    CachedUpload { upload, stat },
                    |u| u.stat.mzxid,
                    CacheKind::Upload,
                    zp,
                    out,
                );
            }
            Update::Component(kind, name, component, stat) => {
                self.corrupt.remove(&paths::component(kind, &name));
                let zp = ZkPath::Component(kind, name.clone());
                let v = CachedComponent {
                    name: name.clone(),
                    component,
                    stat,
                };
                upsert(
                    &mut self.components,
                    (kind, name),
                    v,
                    |c| c.stat.mzxid,
                    CacheKind::Component,
                    zp,
                    out,
                );
            }
            Update::BuildRequest(image, stat) => {
                let t = FlagTimes::from_stat(&stat);
                let change = match self.build_requests.insert(image.clone(), t) {
                    None => Some(Change::Added),
                    Some(old) if old != t => Some(Change::Updated),
                    Some(_) => None,
                };
                if let Some(c) = change {
                    out.push(CacheEvent::new(
                        CacheKind::BuildRequest,
                        ZkPath::RequestBuild(image),
                        c,
                    ));
                }
            }
            Update::Gone(zp) => self.gone(zp, out),
            Update::Corrupt(zp, _) => {
                let path = path_string(&zp);
                self.gone(zp, out);
                if let Some(p) = path {
                    self.corrupt.insert(p);
                }
            }
            Update::Present(zp, present) => self.presence(zp, present, out),
        }
    }

    pub(super) fn gone(&mut self, zp: ZkPath, out: &mut Vec<CacheEvent>) {
        if let Some(p) = path_string(&zp) {
            self.corrupt.remove(&p);
        }
        match &zp {
            ZkPath::Node(id) => {
                self.empty_nodes.remove(id);
                self.node_locks.remove(id);
                self.drop_node(id, false, out);
            }
            ZkPath::Request(id) => {
                if let Some(old) = self.requests.get(id) {
                    self.requested.remove(&RequestOrder::of(&old.request));
                }
                remove(&mut self.requests, id, CacheKind::Request, zp.clone(), out)
            }
            ZkPath::Build(i, b) => {
                let k = (i.clone(), b.clone());
                remove(&mut self.builds, &k, CacheKind::Build, zp.clone(), out)
            }
            ZkPath::Upload {
                image,
                build_id,
                provider,
                upload_id,
            } => {
                let k = (
                    image.clone(),
                    build_id.clone(),
                    provider.clone(),
                    upload_id.clone(),
                );
                remove(&mut self.uploads, &k, CacheKind::Upload, zp.clone(), out)
            }
            ZkPath::Component(kind, name) => {
                let k = (*kind, name.clone());
                remove(
                    &mut self.components,
                    &k,
                    CacheKind::Component,
                    zp.clone(),
                    out,
                )
            }
            ZkPath::RequestBuild(i) => remove(
                &mut self.build_requests,
                i,
                CacheKind::BuildRequest,
                zp.clone(),
                out,
            ),
            _ => self.presence(zp, false, out),
        }
    }

    fn presence(&mut self, zp: ZkPath, present: bool, out: &mut Vec<CacheEvent>) {
        match zp {
            ZkPath::NodeLock(id, Some(child)) => {
                if !is_lock_contender(&child) {
                    return;
                }
                if self.node_contender(&id, &child, present) {
                    let c = if present {
                        Change::Added
                    } else {
                        Change::Removed
                    };
                    out.push(CacheEvent::new(
                        CacheKind::NodeLock,
                        ZkPath::NodeLock(id, Some(child)),
                        c,
                    ));
                }
            }
            ZkPath::NodeLock(id, None) if !present => {
                let mut gone: Vec<String> = self
                    .node_locks
                    .remove(&id)
                    .map(|s| s.into_iter().collect())
                    .unwrap_or_default();
                if let Some(entry) = self.nodes.get_mut(&id) {
                    if !entry.lock_contenders.is_empty() {
                        gone.extend(entry.lock_contenders.iter().cloned());
                        let new = Arc::new(CachedNode {
                            node: entry.node.clone(),
                            stat: entry.stat,
                            lock_contenders: Vec::new(),
                        });
                        let old = std::mem::replace(entry, new.clone());
                        self.node_index.replace(Some(&old), Some(&new));
                    }
                }
                for child in gone {
                    out.push(CacheEvent::new(
                        CacheKind::NodeLock,
                        ZkPath::NodeLock(id.clone(), Some(child)),
                        Change::Removed,
                    ));
                }
            }
            ZkPath::RequestLock(id, Some(child)) => {
                if !is_lock_contender(&child) {
                    return;
                }
                let changed = if present {
                    self.request_locks
                        .entry(id.clone())
                        .or_default()
                        .insert(child.clone())
                } else {
                    let set = self.request_locks.get_mut(&id);
                    let r = set.as_ref().is_some_and(|s| s.contains(&child));
                    if let Some(s) = set {
                        s.remove(&child);
                        if s.is_empty() {
                            self.request_locks.remove(&id);
                        }
                    }
                    r
                };
                if changed {
                    let c = if present {
                        Change::Added
                    } else {
                        Change::Removed
                    };
                    out.push(CacheEvent::new(
                        CacheKind::RequestLock,
                        ZkPath::RequestLock(id, Some(child)),
                        c,
                    ));
                }
            }
            ZkPath::RequestLock(id, None) if !present => {
                if let Some(set) = self.request_locks.remove(&id) {
                    for child in set {
                        out.push(CacheEvent::new(
                            CacheKind::RequestLock,
                            ZkPath::RequestLock(id.clone(), Some(child)),
                            Change::Removed,
                        ));
                    }
                }
            }
            ZkPath::Image(name) => set_flag(
                &mut self.images,
                name,
                present,
                CacheKind::Image,
                out,
                ZkPath::Image,
            ),
            ZkPath::Pause(name) => set_flag(
                &mut self.paused,
                name,
                present,
                CacheKind::ImagePause,
                out,
                ZkPath::Pause,
            ),
            _ => {}
        }
    }

    /// Replaces this (live) tree with `new` (a full load), pushing events for every
    /// difference so that subscribers see what vanished or changed meanwhile. Returns
    /// the replaced tree (for the caller to free outside its lock).
    ///
    /// Stops diffing once `out` holds more than `limit` events: the caller then tells
    /// subscribers to re-read everything instead, so the rest need not be built (the
    /// first load of 100,000 nodes and their locks made ~190,000 events, 27 MiB of
    /// vector alone, only to drop them).
    pub fn replace_with(&mut self, new: Tree, out: &mut Vec<CacheEvent>, limit: usize) -> Tree {
        {
            let mut capped = Capped {
                out: &mut *out,
                limit,
            };
            diff_map(
                &self.nodes,
                &new.nodes,
                |a, b| a.stat.mzxid == b.stat.mzxid,
                |k| ZkPath::Node(k.clone()),
                CacheKind::Node,
                &mut capped,
            );
            self.diff_node_contenders(&new, &mut capped);
        }
        self.diff_rest(&new, out, limit);
        let mut new = new;
        new.tenants.continue_from(&self.tenants);
        std::mem::replace(self, new)
    }

    /// Pushes an event for every difference between this (live) tree and `new` (a
    /// full load) outside the node part, while `out` holds at most `limit` events.
    pub(super) fn diff_rest(&self, new: &Tree, out: &mut Vec<CacheEvent>, limit: usize) {
        let mut out = Capped { out, limit };
        let out = &mut out;
        diff_map(
            &self.requests,
            &new.requests,
            |a, b| a.stat.mzxid == b.stat.mzxid,
            |k| ZkPath::Request(k.clone()),
            CacheKind::Request,
            out,
        );
        let flat = |m: &BTreeMap<RequestId, BTreeSet<String>>| -> BTreeSet<(RequestId, String)> {
            m.iter()
                .flat_map(|(id, s)| s.iter().map(move |c| (id.clone(), c.clone())))
                .collect()
        };
        diff_set(
            &flat(&self.request_locks),
            &flat(&new.request_locks),
            |(id, c)| ZkPath::RequestLock(id.clone(), Some(c.clone())),
            CacheKind::RequestLock,
            out,
        );
        diff_set(
            &self.images,
            &new.images,
            |k| ZkPath::Image(k.clone()),
            CacheKind::Image,
            out,
        );
        diff_set(
            &self.paused,
            &new.paused,
            |k| ZkPath::Pause(k.clone()),
            CacheKind::ImagePause,
            out,
        );
        diff_map(
            &self.build_requests,
            &new.build_requests,
            |a, b| a == b,
            |k| ZkPath::RequestBuild(k.clone()),
            CacheKind::BuildRequest,
            out,
        );
        diff_map(
            &self.builds,
            &new.builds,
            |a, b| a.stat.mzxid == b.stat.mzxid,
            |(i, b)| ZkPath::Build(i.clone(), b.clone()),
            CacheKind::Build,
            out,
        );
        diff_map(
            &self.uploads,
            &new.uploads,
            |a, b| a.stat.mzxid == b.stat.mzxid,
            |(i, b, p, u)| ZkPath::Upload {
                image: i.clone(),
                build_id: b.clone(),
                provider: p.clone(),
                upload_id: u.clone(),
            },
            CacheKind::Upload,
            out,
        );
        diff_map(
            &self.components,
            &new.components,
            |a, b| a.stat.mzxid == b.stat.mzxid,
            |(k, n)| ZkPath::Component(*k, n.clone()),
            CacheKind::Component,
            out,
        );
    }
}

fn set_flag(
    set: &mut BTreeSet<String>,
    name: String,
    present: bool,
    kind: CacheKind,
    out: &mut Vec<CacheEvent>,
    mk: fn(String) -> ZkPath,
) {
    let changed = if present {
        set.insert(name.clone())
    } else {
        set.remove(&name)
    };
    if changed {
        let c = if present {
            Change::Added
        } else {
            Change::Removed
        };
        out.push(CacheEvent::new(kind, mk(name), c));
    }
}

/// The events of a [`Tree::replace_with`]: at most `limit` + 1 (one more tells the
/// caller that the limit was passed).
struct Capped<'a> {
    out: &'a mut Vec<CacheEvent>,
    limit: usize,
}

impl Capped<'_> {
    fn full(&self) -> bool {
        self.out.len() > self.limit
    }

    fn push(&mut self, event: CacheEvent) {
        if !self.full() {
            self.out.push(event);
        }
    }
}

fn diff_map<K: Ord, V>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
    same: impl Fn(&V, &V) -> bool,
    to_path: impl Fn(&K) -> ZkPath,
    kind: CacheKind,
    out: &mut Capped<'_>,
) {
    for (k, v) in old {
        if out.full() {
            return;
        }
        match new.get(k) {
            None => out.push(CacheEvent::new(kind, to_path(k), Change::Removed)),
            Some(n) if !same(v, n) => out.push(CacheEvent::new(kind, to_path(k), Change::Updated)),
            Some(_) => {}
        }
    }
    for k in new.keys() {
        if out.full() {
            return;
        }
        if !old.contains_key(k) {
            out.push(CacheEvent::new(kind, to_path(k), Change::Added));
        }
    }
}

fn diff_set<K: Ord>(
    old: &BTreeSet<K>,
    new: &BTreeSet<K>,
    to_path: impl Fn(&K) -> ZkPath,
    kind: CacheKind,
    out: &mut Capped<'_>,
) {
    for k in old.difference(new) {
        if out.full() {
            return;
        }
        out.push(CacheEvent::new(kind, to_path(k), Change::Removed));
    }
    for k in new.difference(old) {
        if out.full() {
            return;
        }
        out.push(CacheEvent::new(kind, to_path(k), Change::Added));
    }
}

#[cfg(test)]
mod tests {
    use super::super::reload::Load;
    use super::*;

    fn stat(mzxid: i64) -> Stat {
        Stat {
            mzxid,
            ctime: 1000,
            mtime: 2000,
            ..crate::zk::IN_MEMORY_STAT
        }
    }

    fn node_update(id: &str, mzxid: i64, state: crate::model::NodeState) -> Update {
        let mut n = Node::new();
        n.set_state(state);
        n.id = NodeId::from(id);
        Update::Node(NodeId::from(id), Some(Arc::new(n.into())), stat(mzxid))
    }

    /// A live tree of `in-use` nodes (`mzxid` 5) with these lock contenders.
    fn in_use_with_locks(ids: &[&str], locks: &[(&str, &str)]) -> Tree {
        let mut t = Tree::default();
        let mut out = Vec::new();
        for id in ids {
            t.apply(node_update(id, 5, crate::model::NodeState::InUse), &mut out);
        }
        for (id, contender) in locks {
            let path = ZkPath::NodeLock(NodeId::from(*id), Some(contender.to_string()));
            t.apply(Update::Present(path, true), &mut out);
        }
        t
    }

    #[test]
    fn older_data_never_overwrites_newer() {
        use crate::model::NodeState::*;
        let mut t = Tree::default();
        let mut out = Vec::new();
        t.apply(node_update("0000000001", 5, Ready), &mut out);
        t.apply(node_update("0000000001", 3, Init), &mut out);
        let id = NodeId::from("0000000001");
        assert_eq!(t.nodes[&id].node.state(), Ready);
        assert_eq!(t.nodes[&id].node.id(), &id);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].change, Change::Added);
        t.apply(node_update("0000000001", 7, Used), &mut out);
        assert_eq!(out[1].change, Change::Updated);
        t.apply(Update::Gone(ZkPath::Node(id.clone())), &mut out);
        assert!(t.nodes.is_empty());
        assert_eq!(out[2].change, Change::Removed);
    }

    #[test]
    fn lock_contenders_follow_presence() {
        use crate::model::NodeState::*;
        let mut t = Tree::default();
        let mut out = Vec::new();
        let id = NodeId::from("0000000001");
        let c = |n: &str| ZkPath::NodeLock(id.clone(), Some(n.to_string()));
        // A contender may be seen before the node's data.
        t.apply(Update::Present(c("b__lock__0000000002"), true), &mut out);
        t.apply(node_update("0000000001", 5, Ready), &mut out);
        t.apply(Update::Present(c("a__lock__0000000001"), true), &mut out);
        t.apply(Update::Present(c("junk"), true), &mut out);
        assert_eq!(
            t.nodes[&id].lock_contenders,
            ["a__lock__0000000001", "b__lock__0000000002"]
        );
        t.apply(Update::Present(c("b__lock__0000000002"), false), &mut out);
        assert_eq!(t.nodes[&id].lock_contenders, ["a__lock__0000000001"]);
        t.apply(
            Update::Present(ZkPath::NodeLock(id.clone(), None), false),
            &mut out,
        );
        assert!(!t.nodes[&id].probably_locked());
    }

    #[test]
    fn a_single_contender_takes_one_slot() {
        use crate::model::NodeState::*;
        let mut t = Tree::default();
        let mut out = Vec::new();
        let id = NodeId::from("0000000001");
        t.apply(node_update("0000000001", 5, InUse), &mut out);
        let c = ZkPath::NodeLock(id.clone(), Some("a__lock__0000000001".to_string()));
        t.apply(Update::Present(c, true), &mut out);
        assert_eq!(t.nodes[&id].lock_contenders.len(), 1);
        assert_eq!(
            t.nodes[&id].lock_contenders.capacity(),
            1,
            "no spare slots kept for each of 90,000 locked nodes"
        );
    }

    #[test]
    fn a_cached_nodes_contenders_are_kept_once() {
        use crate::model::NodeState::*;
        let mut t = Tree::default();
        let mut out = Vec::new();
        let id = NodeId::from("0000000001");
        let c = |n: &str| ZkPath::NodeLock(id.clone(), Some(n.to_string()));
        t.apply(Update::Present(c("b__lock__0000000002"), true), &mut out);
        assert_eq!(
            t.node_locks[&id].len(),
            1,
            "kept for the id until the node is cached"
        );
        t.apply(node_update("0000000001", 5, Ready), &mut out);
        t.apply(Update::Present(c("a__lock__0000000001"), true), &mut out);
        t.apply(node_update("0000000001", 6, InUse), &mut out);
        assert!(
            t.node_locks.is_empty(),
            "no second copy: {:?}",
            t.node_locks
        );
        assert_eq!(
            t.nodes[&id].lock_contenders,
            ["a__lock__0000000001", "b__lock__0000000002"]
        );
        // The znode emptied: its contenders stay with the id, and come back with data.
        t.apply(Update::Node(id.clone(), None, stat(7)), &mut out);
        assert_eq!(t.node_locks[&id].len(), 2);
        t.apply(node_update("0000000001", 8, Ready), &mut out);
        assert!(t.node_locks.is_empty());
        assert_eq!(t.nodes[&id].lock_contenders.len(), 2);
        let mut other = Tree::default();
        out.clear();
        other.replace_with(std::mem::take(&mut t), &mut out, usize::MAX);
        let locks = out.iter().filter(|e| e.kind == CacheKind::NodeLock).count();
        assert_eq!(
            locks, 2,
            "a reload reports the contenders of cached nodes: {out:?}"
        );
    }

    #[test]
    fn a_load_reuses_unchanged_nodes_and_reports_contender_changes() {
        let mut live = in_use_with_locks(
            &["0000000001", "0000000002", "0000000003"],
            &[
                ("0000000001", "a__lock__0000000001"),
                ("0000000002", "b__lock__0000000001"),
            ],
        );
        let mut out = Vec::new();
        let c = |id: &str, n: &str| ZkPath::NodeLock(NodeId::from(id), Some(n.to_string()));
        let node = |t: &Tree, id: &str| t.nodes[&NodeId::from(id)].clone();
        let (one, two, three) = (
            node(&live, "0000000001"),
            node(&live, "0000000002"),
            node(&live, "0000000003"),
        );
        // A reload: 1 unchanged; 2's lock now held by someone else; 3 locked meanwhile.
        let mut new = Tree::default();
        let lock = |n: &str| vec![n.to_string(), "not-a-contender".to_string()];
        new.put_loaded_node(
            LoadedNode::Unchanged(one.clone()),
            one.stat,
            lock("a__lock__0000000001"),
        );
        new.put_loaded_node(
            LoadedNode::Unchanged(two.clone()),
            two.stat,
            lock("c__lock__0000000002"),
        );
        new.put_loaded_node(
            LoadedNode::Unchanged(three.clone()),
            three.stat,
            lock("d__lock__0000000003"),
        );
        assert!(
            Arc::ptr_eq(&node(&new, "0000000001"), &one),
            "unchanged: the same cached node"
        );
        assert!(
            Arc::ptr_eq(&node(&new, "0000000002").node, &two.node),
            "the record is shared"
        );
        assert_eq!(
            node(&new, "0000000002").lock_contenders,
            ["c__lock__0000000002"]
        );
        assert_eq!(node(&new, "0000000003").lock_contenders.capacity(), 1);
        out.clear();
        let _old = live.replace_with(new, &mut out, usize::MAX);
        let mut got: Vec<_> = out.iter().map(|e| (e.path.clone(), e.change)).collect();
        got.sort_by_key(|g| format!("{g:?}"));
        assert_eq!(
            got,
            [
                (c("0000000002", "b__lock__0000000001"), Change::Removed),
                (c("0000000002", "c__lock__0000000002"), Change::Added),
                (c("0000000003", "d__lock__0000000003"), Change::Added),
            ]
        );
    }

    fn request_update(id: &str, mzxid: i64, rp: i64, state: RequestState) -> Update {
        let r = NodeRequest {
            id: RequestId::from(id),
            relative_priority: rp,
            state,
            ..NodeRequest::default()
        };
        Update::Request(RequestId::from(id), r, stat(mzxid))
    }

    #[test]
    fn waiting_requests_are_kept_in_priority_order() {
        use RequestState::*;
        let mut t = Tree::default();
        let mut out = Vec::new();
        t.apply(request_update("200-0000000001", 1, 0, Requested), &mut out);
        t.apply(request_update("100-0000000003", 1, 0, Requested), &mut out);
        t.apply(request_update("100-0000000002", 1, 1, Requested), &mut out);
        t.apply(request_update("100-0000000004", 1, 0, Pending), &mut out);
        let ids = |t: &Tree| -> Vec<String> {
            t.requested
                .values()
                .map(|r| r.request.id.to_string())
                .collect()
        };
        assert_eq!(
            ids(&t),
            ["100-0000000003", "100-0000000002", "200-0000000001"]
        );
        // Zuul revises a relative priority; a request leaves when no longer requested.
        t.apply(request_update("100-0000000002", 2, 0, Requested), &mut out);
        t.apply(request_update("100-0000000003", 2, 0, Pending), &mut out);
        assert_eq!(ids(&t), ["100-0000000002", "200-0000000001"]);
        t.apply(
            Update::Gone(ZkPath::Request(RequestId::from("200-0000000001"))),
            &mut out,
        );
        assert_eq!(ids(&t), ["100-0000000002"]);
    }

    #[test]
    fn tenant_usage_follows_applied_nodes() {
        use crate::model::NodeState::*;
        let node = |id: &str, mzxid: i64, tenant: Option<&str>| {
            let mut n = Node::new();
            n.set_state(Ready);
            n.id = NodeId::from(id);
            n.tenant_name = tenant.map(str::to_string);
            let mut m = serde_json::Map::new();
            m.insert("cores".into(), 2.into());
            m.insert("instances".into(), 1.into());
            m.insert("ram".into(), 1024.into());
            n.resources = Some(m);
            Update::Node(NodeId::from(id), Some(Arc::new(n.into())), stat(mzxid))
        };
        let mut t = Tree::default();
        let mut out = Vec::new();
        t.apply(node("0000000001", 1, Some("t")), &mut out);
        t.apply(node("0000000002", 1, Some("t")), &mut out);
        t.apply(node("0000000003", 1, None), &mut out);
        assert_eq!(t.tenants.get("t").used.get("cores"), 4.0);
        t.apply(node("0000000002", 2, None), &mut out);
        assert_eq!(t.tenants.get("t").used.get("instances"), 1.0);
        let before = t.tenants.get("t").changes;
        t.apply(
            Update::Gone(ZkPath::Node(NodeId::from("0000000001"))),
            &mut out,
        );
        assert_eq!(t.tenants.get("t").used.get("instances"), 0.0);
        assert!(t.tenants.get("t").changes > before);
    }

    /// What the launcher's scans found before the cache kept [`NodeIndex`]: the sums
    /// and ready sets worked out from every cached node.
    fn scan_sum(t: &Tree, keep: impl Fn(&CachedNode) -> bool) -> super::super::NodeSum {
        let mut sum = super::super::NodeSum::default();
        for n in t.nodes.values().filter(|n| keep(n)) {
            match n.node.standard_resources() {
                Some(r) => {
                    sum.standard_nodes += 1;
                    for (s, v) in sum.standard.iter_mut().zip(r) {
                        *s += v;
                    }
                }
                None => {
                    sum.other.insert(n.id().clone());
                }
            }
        }
        sum
    }

    fn scan_ready(t: &Tree, provider: &str, pool: &str, label: &str) -> BTreeSet<NodeId> {
        t.nodes
            .values()
            .filter(|n| {
                let node = &n.node;
                node.state() == crate::model::NodeState::Ready
                    && node.allocated_to().is_none()
                    && node.provider() == Some(provider)
                    && node.pool() == Some(pool)
                    && node.has_label(label)
                    && !n.probably_locked()
            })
            .map(|n| n.id().clone())
            .collect()
    }

    const PROVIDERS: [&str; 2] = ["p0", "p1"];
    const POOLS: [&str; 2] = ["main", "second"];
    const LABELS: [&str; 3] = ["l0", "l1", "l2"];
    const REQUESTS: [&str; 3] = ["100-0000000001", "100-0000000002", "200-0000000003"];
    const TENANTS: [&str; 3] = ["t0", "t1", "none"];

    /// Asserts that two usages are the same number for every resource either names.
    fn assert_same_usage(got: &QuotaInformation, want: &QuotaInformation, what: &str) {
        for k in got
            .keys()
            .chain(want.keys())
            .chain(["cores", "instances", "ram"])
        {
            assert_eq!(got.get(k), want.get(k), "{k} of {what}: {got} vs {want}");
        }
    }

    /// Asserts that the index equals a from-scratch scan (`what` says after which edit).
    fn assert_index_matches_scan(t: &Tree, what: &str) {
        let empty = super::super::NodeSum::default();
        let mut ready_entries = 0;
        for p in PROVIDERS {
            let want = scan_sum(t, |n| n.node.provider() == Some(p));
            let got = t.node_index.provider_sum(p).unwrap_or(&empty);
            assert_eq!(got, &want, "provider {p} after {what}");
            for pool in POOLS {
                let want = scan_sum(t, |n| {
                    n.node.provider() == Some(p) && n.node.pool() == Some(pool)
                });
                let got = t.node_index.pool_sum(p, pool).unwrap_or(&empty);
                assert_eq!(got, &want, "provider {p} pool {pool} after {what}");
                for label in LABELS {
                    let want = scan_ready(t, p, pool, label);
                    let got = t
                        .node_index
                        .ready(p, pool, label)
                        .cloned()
                        .unwrap_or_default();
                    assert_eq!(got, want, "ready {p}/{pool}/{label} after {what}");
                    ready_entries += want.len();
                }
                let reusable: BTreeSet<NodeId> = t
                    .nodes
                    .values()
                    .filter(|n| {
                        n.node.provider() == Some(p)
                            && n.node.pool() == Some(pool)
                            && n.node.labels().next().is_some()
                            && NodeIndex::reusable(n)
                    })
                    .map(|n| n.id().clone())
                    .collect();
                assert_eq!(
                    t.node_index.pool_reusable(p, pool),
                    reusable,
                    "reusable in {p}/{pool} after {what}"
                );
                let deleting = t
                    .nodes
                    .values()
                    .filter(|n| {
                        n.node.provider() == Some(p)
                            && n.node.pool() == Some(pool)
                            && n.node.state() == crate::model::NodeState::Deleting
                    })
                    .count() as u64;
                assert_eq!(
                    t.node_index.pool_deleting(p, pool),
                    deleting,
                    "deleting in {p}/{pool} after {what}"
                );
            }
        }
        assert_eq!(
            t.node_index.ready_entries(),
            ready_entries,
            "no entry for anything but a reusable node after {what}"
        );
        let unheld: BTreeSet<NodeId> = t
            .nodes
            .values()
            .filter(|n| NodeIndex::unheld(n))
            .map(|n| n.id().clone())
            .collect();
        assert_eq!(t.node_index.unheld_ids(), &unheld, "unheld after {what}");
        for r in REQUESTS {
            let want: Vec<NodeId> = t
                .nodes
                .values()
                .filter(|n| n.node.allocated_to() == Some(r))
                .map(|n| n.id().clone())
                .collect();
            let got: Vec<NodeId> = t
                .allocated_nodes(&RequestId::from(r))
                .iter()
                .map(|n| n.id().clone())
                .collect();
            assert_eq!(got, want, "nodes allocated to {r} after {what}");
        }
        let allocated = t
            .nodes
            .values()
            .filter(|n| n.node.allocated_to().is_some())
            .count();
        assert_eq!(
            t.allocations.len(),
            allocated,
            "one entry per allocated node after {what}"
        );
        for tenant in TENANTS {
            for claimed in [&REQUESTS[..0], &REQUESTS[..1], &REQUESTS[1..]] {
                let claimed: Vec<RequestId> = claimed.iter().map(|r| RequestId::from(*r)).collect();
                let got = t.tenant_usage_without(tenant, &claimed).used;
                let want = t.tenant_usage_by_scan(tenant, &claimed);
                assert_same_usage(
                    &got,
                    &want,
                    &format!("{tenant} without {claimed:?} after {what}"),
                );
            }
        }
        assert_eq!(
            t.node_index.counts(),
            &scan_counts(t),
            "node counts after {what}"
        );
    }

    /// The node counts as the stats worker and min-ready counted them by a scan.
    fn scan_counts(t: &Tree) -> super::super::NodeCounts {
        use super::super::derived::state_index;
        let mut c = super::super::NodeCounts::default();
        for n in t.nodes.values() {
            let node = &n.node;
            let i = state_index(node.state());
            c.all[i] += 1;
            if let Some(p) = node.provider() {
                c.by_provider.entry(p.to_string()).or_default()[i] += 1;
            }
            let labels: BTreeSet<&str> = node.labels().collect();
            for l in labels {
                c.by_label.entry(l.to_string()).or_default()[i] += 1;
                if node.state() == crate::model::NodeState::Ready && node.allocated_to().is_none() {
                    *c.ready_unallocated.entry(l.to_string()).or_default() += 1;
                }
            }
        }
        c
    }

    /// A random node record: provider and pool (sometimes none), state, labels,
    /// allocation, and `resources` standard, in another form, or none.
    fn random_node(rng: &mut impl rand::Rng, id: &str) -> CompactNode {
        random_record(rng, id).into()
    }

    /// [`random_node`] as a record.
    fn random_record(rng: &mut impl rand::Rng, id: &str) -> Node {
        use crate::model::NodeState::*;
        let mut n = Node::new();
        n.id = NodeId::from(id);
        let pick = |rng: &mut dyn rand::RngCore, k: usize| (rng.next_u32() as usize) % k;
        n.provider = (pick(rng, 6) > 0).then(|| PROVIDERS[pick(rng, 2)].to_string());
        n.pool = (pick(rng, 6) > 0).then(|| POOLS[pick(rng, 2)].to_string());
        n.set_state([Ready, Ready, Ready, InUse, Building, Deleting, Used, Hold][pick(rng, 8)]);
        n.node_type = LABELS
            .iter()
            .filter(|_| pick(rng, 2) == 0)
            .map(|l| l.to_string())
            .collect();
        if pick(rng, 8) == 0 {
            // A label listed twice counts once.
            n.node_type.push(LABELS[pick(rng, 3)].to_string());
        }
        n.allocated_to = (pick(rng, 3) == 0).then(|| RequestId::from(REQUESTS[pick(rng, 3)]));
        n.tenant_name =
            [None, Some("t0"), Some("t0"), Some("t1")][pick(rng, 4)].map(str::to_string);
        let mut m = serde_json::Map::new();
        match pick(rng, 5) {
            0 => {}
            1 => {
                m.insert("cores".into(), 1.5.into());
                m.insert("instances".into(), 1.into());
                m.insert("ram".into(), 512.into());
                n.resources = Some(m);
            }
            2 => {
                m.insert("cores".into(), (pick(rng, 8) as i64).into());
                m.insert("instances".into(), 1.into());
                m.insert("ram".into(), 2048.into());
                m.insert("gpu".into(), (pick(rng, 3) as i64).into());
                n.resources = Some(m);
            }
            _ => {
                m.insert("cores".into(), (pick(rng, 8) as i64).into());
                m.insert("instances".into(), 1.into());
                m.insert("ram".into(), (1024 * pick(rng, 8) as i64).into());
                n.resources = Some(m);
            }
        }
        n
    }

    #[test]
    fn node_index_follows_random_edits() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let mut t = Tree::default();
        let mut out = Vec::new();
        let mut mzxid = 1;
        for step in 0..4000 {
            // Two ids that are not plain 10-digit sequences (kept apart by `Allocations`).
            let id = match rng.random_range(0..40) {
                38 => "000000038".to_string(),
                39 => "node-39".to_string(),
                i => format!("{i:010}"),
            };
            let nid = NodeId::from(id.as_str());
            let contender = format!("{:032x}__lock__{:010}", rng.random_range(0..3), 0);
            mzxid += 1;
            let (what, update) = match rng.random_range(0..10) {
                0..=4 => (
                    "node data",
                    Update::Node(nid, Some(Arc::new(random_node(&mut rng, &id))), stat(mzxid)),
                ),
                5 => ("node gone", Update::Gone(ZkPath::Node(nid))),
                6 => ("node emptied", Update::Node(nid, None, stat(mzxid))),
                7 => (
                    "contender added",
                    Update::Present(ZkPath::NodeLock(nid, Some(contender)), true),
                ),
                8 => (
                    "contender removed",
                    Update::Present(ZkPath::NodeLock(nid, Some(contender)), false),
                ),
                _ => (
                    "lock dir removed",
                    Update::Present(ZkPath::NodeLock(nid, None), false),
                ),
            };
            t.apply(update, &mut out);
            assert_index_matches_scan(&t, &format!("step {step}: {what} {id}"));
        }
        assert!(
            t.node_index.ready_entries() > 0,
            "the edits left some reusable node"
        );
        // A full load builds a fresh tree as the load does (`put_loaded_node`, records
        // decoded anew or kept from the live tree); it replaces the live one with its index.
        let mut loaded = Tree::default();
        for (i, n) in t.nodes.values().enumerate() {
            let record = if i % 2 == 0 {
                LoadedNode::Read(n.node.clone())
            } else {
                LoadedNode::Unchanged(n.clone())
            };
            loaded.put_loaded_node(record, n.stat, n.lock_contenders.clone());
        }
        assert_index_matches_scan(&loaded, "the loaded tree");
        let mut live = Tree::default();
        live.apply(
            node_update("0000000099", 1, crate::model::NodeState::Ready),
            &mut out,
        );
        live.replace_with(loaded, &mut out, usize::MAX);
        assert_index_matches_scan(&live, "a full reload");
        assert_eq!(live.nodes.len(), t.nodes.len());
        // A reload as a patch of a live tree that holds half of the nodes as they are
        // (kept, not decoded again), the other half without their lock contenders, and
        // a node that is gone since.
        let mut live = Tree::default();
        live.apply(
            node_update("0000000099", 1, crate::model::NodeState::Ready),
            &mut out,
        );
        for (i, n) in t.nodes.values().enumerate() {
            if i % 2 == 0 {
                live.apply(
                    Update::Node(n.id().clone(), Some(n.node.clone()), n.stat),
                    &mut out,
                );
            } else {
                live.store_node(n.id().clone(), n);
            }
        }
        assert_index_matches_scan(&live, "the live tree before the patch");
        let mut patch = Load::for_tree(&live);
        let ids: Vec<String> = t.nodes.keys().map(|id| id.to_string()).collect();
        patch.list_nodes(&live, &ids);
        for n in t.nodes.values() {
            let kept = live.nodes[n.id()].clone();
            patch.put_node(
                LoadedNode::Unchanged(kept),
                n.stat,
                n.lock_contenders.clone(),
            );
        }
        live.replace_with_load(patch, &mut out, usize::MAX);
        assert_index_matches_scan(&live, "a reload as a patch");
        assert_eq!(live.nodes, t.nodes);
    }

    /// A tenant's usage less its nodes allocated to claimed requests, from the running
    /// total and the index of allocations, is the number the launcher's scan found: over
    /// random fleets (built by random edits, so that the totals went up and down) and
    /// random sets of claimed requests, some without nodes.
    #[test]
    fn tenant_usage_without_claimed_requests_equals_a_scan() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1717);
        let requests: Vec<RequestId> = (1..=12)
            .map(|i| RequestId::from(format!("100-{i:010}")))
            .collect();
        for fleet in 0..40 {
            let mut t = Tree::default();
            let mut out = Vec::new();
            let ids = rng.random_range(1..120);
            for step in 0..rng.random_range(0..400) {
                let id = format!("{:010}", rng.random_range(0..ids));
                let nid = NodeId::from(id.as_str());
                let update = if rng.random_range(0..6) == 0 {
                    Update::Gone(ZkPath::Node(nid))
                } else {
                    let mut n = random_record(&mut rng, &id);
                    n.allocated_to = (rng.random_range(0..3) > 0)
                        .then(|| requests[rng.random_range(0..requests.len())].clone());
                    Update::Node(nid, Some(Arc::new(n.into())), stat(step + 2))
                };
                t.apply(update, &mut out);
            }
            for _ in 0..20 {
                let claimed: Vec<RequestId> = requests
                    .iter()
                    .filter(|_| rng.random_range(0..3) == 0)
                    .cloned()
                    .collect();
                for tenant in TENANTS {
                    let got = t.tenant_usage_without(tenant, &claimed).used;
                    let want = t.tenant_usage_by_scan(tenant, &claimed);
                    assert_same_usage(
                        &got,
                        &want,
                        &format!("fleet {fleet}: {tenant} without {claimed:?}"),
                    );
                }
            }
        }
    }

    #[test]
    fn empty_and_corrupt_nodes() {
        let id = NodeId::from("0000000001");
        let mut t = Tree::default();
        let mut out = Vec::new();
        let u = decode(
            "/nodepool/nodes/0000000001",
            ZkPath::Node(id.clone()),
            Some((Vec::new(), stat(1))),
        );
        t.apply(u, &mut out);
        assert!(t.nodes.is_empty());
        assert!(t.empty_nodes.contains(&id));
        let u = decode(
            "/nodepool/nodes/0000000001",
            ZkPath::Node(id.clone()),
            Some((b"{x".to_vec(), stat(2))),
        );
        t.apply(u, &mut out);
        assert_eq!(t.corrupt.len(), 1);
        t.apply(
            node_update("0000000001", 3, crate::model::NodeState::Ready),
            &mut out,
        );
        assert!(t.corrupt.is_empty());
        assert!(t.empty_nodes.is_empty());
        assert_eq!(t.nodes.len(), 1);
    }

    #[test]
    fn replace_reports_differences() {
        use crate::model::NodeState::*;
        let mut live = Tree::default();
        let mut out = Vec::new();
        live.apply(node_update("0000000001", 1, Ready), &mut out);
        live.apply(node_update("0000000002", 1, Ready), &mut out);
        live.apply(Update::Present(ZkPath::Pause("img".into()), true), &mut out);
        let mut new = Tree::default();
        new.apply(node_update("0000000002", 4, Used), &mut out);
        new.apply(node_update("0000000003", 4, Init), &mut out);
        out.clear();
        live.replace_with(new, &mut out, usize::MAX);
        let mut got: Vec<_> = out
            .iter()
            .map(|e| (e.kind, e.path.clone(), e.change))
            .collect();
        got.sort_by_key(|g| format!("{g:?}"));
        let n = |s: &str| ZkPath::Node(NodeId::from(s));
        let mut want = vec![
            (CacheKind::Node, n("0000000001"), Change::Removed),
            (CacheKind::Node, n("0000000002"), Change::Updated),
            (CacheKind::Node, n("0000000003"), Change::Added),
            (
                CacheKind::ImagePause,
                ZkPath::Pause("img".into()),
                Change::Removed,
            ),
        ];
        want.sort_by_key(|g| format!("{g:?}"));
        assert_eq!(got, want);
        assert_eq!(live.nodes.len(), 2);
    }

    #[test]
    fn replace_stops_reporting_past_its_limit_but_replaces_everything() {
        use crate::model::NodeState::*;
        let mut live = Tree::default();
        let mut out = Vec::new();
        live.apply(Update::Present(ZkPath::Pause("img".into()), true), &mut out);
        let mut new = Tree::default();
        for i in 1..=50 {
            let id = format!("{i:010}");
            let Update::Node(_, Some(node), _) = node_update(&id, 4, InUse) else {
                unreachable!("a node update")
            };
            new.put_loaded_node(
                LoadedNode::Read(node),
                stat(4),
                vec![format!("a__lock__{i:010}")],
            );
        }
        out.clear();
        live.replace_with(new, &mut out, 7);
        assert_eq!(out.len(), 8, "the limit and one more: {out:?}");
        assert_eq!(live.nodes.len(), 50);
        assert!(live.paused.is_empty(), "replaced past the limit too");
        assert_eq!(
            live.nodes[&NodeId::from("0000000050")].lock_contenders,
            ["a__lock__0000000050"]
        );
    }

    #[test]
    fn a_reload_patch_keeps_unchanged_nodes_and_reports_contender_changes() {
        let mut live = in_use_with_locks(
            &["0000000001", "0000000002", "0000000003", "0000000004"],
            &[
                ("0000000001", "a__lock__0000000001"),
                ("0000000002", "b__lock__0000000001"),
                ("0000000004", "e__lock__0000000001"),
            ],
        );
        let mut out = Vec::new();
        let c = |id: &str, n: &str| ZkPath::NodeLock(NodeId::from(id), Some(n.to_string()));
        let node = |t: &Tree, id: &str| t.nodes[&NodeId::from(id)].clone();
        let (one, two, three) = (
            node(&live, "0000000001"),
            node(&live, "0000000002"),
            node(&live, "0000000003"),
        );
        // A reload: 1 unchanged; 2's lock now held by someone else; 3 locked meanwhile;
        // 4 gone (with its lock).
        let mut load = Load::for_tree(&live);
        let ids = ["0000000001", "0000000002", "0000000003"].map(String::from);
        load.list_nodes(&live, &ids);
        let lock = |n: &str| vec![n.to_string(), "not-a-contender".to_string()];
        load.put_node(
            LoadedNode::Unchanged(one.clone()),
            one.stat,
            lock("a__lock__0000000001"),
        );
        load.put_node(
            LoadedNode::Unchanged(two.clone()),
            two.stat,
            lock("c__lock__0000000002"),
        );
        load.put_node(
            LoadedNode::Unchanged(three.clone()),
            three.stat,
            lock("d__lock__0000000003"),
        );
        assert_eq!(load.node_steps(), 2, "nothing kept for the unchanged node");
        out.clear();
        let _old = live.replace_with_load(load, &mut out, usize::MAX);
        assert!(
            Arc::ptr_eq(&node(&live, "0000000001"), &one),
            "unchanged: the same cached node"
        );
        assert!(
            Arc::ptr_eq(&node(&live, "0000000002").node, &two.node),
            "the record is shared"
        );
        assert_eq!(
            node(&live, "0000000002").lock_contenders,
            ["c__lock__0000000002"]
        );
        assert_eq!(node(&live, "0000000003").lock_contenders.capacity(), 1);
        assert!(!live.nodes.contains_key(&NodeId::from("0000000004")));
        let mut got: Vec<_> = out.iter().map(|e| (e.path.clone(), e.change)).collect();
        got.sort_by_key(|g| format!("{g:?}"));
        let mut want = vec![
            (c("0000000002", "b__lock__0000000001"), Change::Removed),
            (c("0000000002", "c__lock__0000000002"), Change::Added),
            (c("0000000003", "d__lock__0000000003"), Change::Added),
            (c("0000000004", "e__lock__0000000001"), Change::Removed),
            (ZkPath::Node(NodeId::from("0000000004")), Change::Removed),
        ];
        want.sort_by_key(|g| format!("{g:?}"));
        assert_eq!(got, want);
    }

    #[test]
    fn a_reload_patch_reports_differences_and_replaces_the_rest() {
        use crate::model::NodeState::*;
        let mut live = Tree::default();
        let mut out = Vec::new();
        live.apply(node_update("0000000001", 1, Ready), &mut out);
        live.apply(node_update("0000000002", 1, Ready), &mut out);
        live.apply(Update::Present(ZkPath::Pause("img".into()), true), &mut out);
        let mut new = Load::for_tree(&live);
        new.list_nodes(&live, &["0000000002".into(), "0000000003".into()]);
        new.apply(node_update("0000000002", 4, Used));
        new.apply(node_update("0000000003", 4, Init));
        new.apply(Update::Present(ZkPath::Image("img2".into()), true));
        out.clear();
        live.replace_with_load(new, &mut out, usize::MAX);
        let mut got: Vec<_> = out
            .iter()
            .map(|e| (e.kind, e.path.clone(), e.change))
            .collect();
        got.sort_by_key(|g| format!("{g:?}"));
        let n = |s: &str| ZkPath::Node(NodeId::from(s));
        let mut want = vec![
            (CacheKind::Node, n("0000000001"), Change::Removed),
            (CacheKind::Node, n("0000000002"), Change::Updated),
            (CacheKind::Node, n("0000000003"), Change::Added),
            (
                CacheKind::ImagePause,
                ZkPath::Pause("img".into()),
                Change::Removed,
            ),
            (
                CacheKind::Image,
                ZkPath::Image("img2".into()),
                Change::Added,
            ),
        ];
        want.sort_by_key(|g| format!("{g:?}"));
        assert_eq!(got, want);
        assert_eq!(live.nodes.len(), 2);
        assert_eq!(live.nodes[&NodeId::from("0000000002")].node.state(), Used);
        assert!(live.paused.is_empty());
        assert!(live.images.contains("img2"));
    }

    #[test]
    fn a_reload_without_the_nodes_dir_forgets_every_node() {
        use crate::model::NodeState::*;
        let mut live = Tree::default();
        let mut out = Vec::new();
        live.apply(node_update("0000000001", 1, Ready), &mut out);
        live.apply(
            Update::Node(NodeId::from("0000000002"), None, stat(1)),
            &mut out,
        );
        let load = Load::for_tree(&live);
        out.clear();
        live.replace_with_load(load, &mut out, usize::MAX);
        assert!(live.nodes.is_empty());
        assert!(live.empty_nodes.is_empty());
        assert_eq!(
            live.node_index.counts(),
            Tree::default().node_index.counts()
        );
    }
}
