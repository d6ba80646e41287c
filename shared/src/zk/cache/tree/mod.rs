//! The cached contents of `/nodepool` as typed maps, and the pure operations on them:
//! decoding a znode read into an [`Update`], applying it (emitting [`CacheEvent`]s), and
//! diffing a freshly loaded tree against the live one after a resync. No I/O here, so it
//! is unit-tested without ZooKeeper.
//!
//! Here: the types, the decoding and the queries. `apply.rs` keeps the maps and their
//! indexes in step with one update at a time; `diff.rs` diffs a load against the live
//! tree after a resync. Both add methods to [`Tree`]; the unit tests are in `tests.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tracing::warn;

use crate::model::paths::{self, ZkPath};
use crate::model::{
    BuildId, CompactNode, Component, ComponentKind, ImageBuild, ImageUpload, Node, NodeId,
    NodeRequest, QuotaInformation, RequestId, UploadId,
};
use crate::zk::store::FlagTimes;
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
}

mod apply;
mod diff;

#[cfg(test)]
mod tests;
