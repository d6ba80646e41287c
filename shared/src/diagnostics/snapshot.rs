//! The tree cache's records at one moment ([`Snapshot`], cheap: shared `Arc`s) and the
//! key that names one record or aggregate ([`RecordKey`]). The inspections, the console
//! and `nodepool doctor` all work on a snapshot, so a check sees one consistent state
//! and tests build one by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::model::{paths, BuildId, ComponentKind, NodeId, RequestId};
use crate::zk::cache::UploadKey;
use crate::zk::{
    CachedBuild, CachedComponent, CachedNode, CachedRequest, CachedUpload, FlagTimes, TreeCache,
};

/// Names the record (or the aggregate) a row, a problem or a jump refers to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKey {
    /// A node.
    Node(NodeId),
    /// A node request.
    Request(RequestId),
    /// An image build (image, build id).
    Build(String, BuildId),
    /// An image upload.
    Upload(UploadKey),
    /// A label (aggregate over nodes, requests and pools).
    Label(String),
    /// A component (kind, znode name).
    Component(ComponentKind, String),
    /// An image (aggregate over builds, uploads and flags).
    Image(String),
    /// A provider of the config (aggregate over its nodes and pool workers).
    Provider(String),
    /// A provider's pool (provider, pool).
    Pool(String, String),
    /// Any other znode, by path (a lock contender, a corrupt record).
    Znode(String),
}

impl RecordKey {
    /// The record type as `doctor --format json` names it.
    pub fn kind(&self) -> &'static str {
        match self {
            RecordKey::Node(_) => "node",
            RecordKey::Request(_) => "request",
            RecordKey::Build(..) => "build",
            RecordKey::Upload(_) => "upload",
            RecordKey::Label(_) => "label",
            RecordKey::Component(..) => "component",
            RecordKey::Image(_) => "image",
            RecordKey::Provider(_) => "provider",
            RecordKey::Pool(..) => "pool",
            RecordKey::Znode(_) => "znode",
        }
    }

    /// The record's id as an operator types it (`nodepool delete ID`, …).
    pub fn id(&self) -> String {
        match self {
            RecordKey::Node(id) => id.to_string(),
            RecordKey::Request(id) => id.to_string(),
            RecordKey::Build(image, id) => format!("{image}-{id}"),
            RecordKey::Upload((image, build, provider, id)) => {
                format!("{image}-{build}/{provider}/{id}")
            }
            RecordKey::Label(l) | RecordKey::Image(l) | RecordKey::Provider(l) => l.clone(),
            RecordKey::Component(kind, name) => format!("{kind}/{name}"),
            RecordKey::Pool(provider, pool) => format!("{provider}/{pool}"),
            RecordKey::Znode(path) => path.clone(),
        }
    }

    /// The znode that holds the record; `None` for aggregates.
    pub fn path(&self) -> Option<String> {
        Some(match self {
            RecordKey::Node(id) => paths::node(id),
            RecordKey::Request(id) => paths::request(id),
            RecordKey::Build(image, id) => paths::build(image, id),
            RecordKey::Upload((image, build, provider, id)) => {
                paths::upload(image, build, provider, id)
            }
            RecordKey::Component(kind, name) => paths::component(*kind, name),
            RecordKey::Image(image) => paths::image(image),
            RecordKey::Znode(path) => path.clone(),
            RecordKey::Label(_) | RecordKey::Provider(_) | RecordKey::Pool(..) => return None,
        })
    }

    /// `node 0000000042`, `build demo-…`: for one-line messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.kind(), self.id())
    }
}

/// The records of the cache at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Nodes, by id.
    pub nodes: Vec<Arc<CachedNode>>,
    /// Requests, by id.
    pub requests: Vec<Arc<CachedRequest>>,
    /// Image builds, by image and build id.
    pub builds: Vec<Arc<CachedBuild>>,
    /// Image uploads, by image, build, provider, upload id.
    pub uploads: Vec<Arc<CachedUpload>>,
    /// Components of every kind.
    pub components: Vec<Arc<CachedComponent>>,
    /// Images with a znode.
    pub images: BTreeSet<String>,
    /// Paused images.
    pub paused: BTreeSet<String>,
    /// Manual build requests.
    pub build_requests: BTreeMap<String, FlagTimes>,
    /// Lock contenders of the requests that have any (holder first).
    pub request_locks: BTreeMap<RequestId, Vec<String>>,
    /// Paths of the record znodes the cache skipped because their data is corrupt.
    pub corrupt: Vec<String>,
}

impl Snapshot {
    /// Reads everything from the cache (never touches ZooKeeper).
    pub fn from_cache(cache: &TreeCache) -> Snapshot {
        let mut components = Vec::new();
        for kind in [
            ComponentKind::Launcher,
            ComponentKind::Pool,
            ComponentKind::Builder,
        ] {
            components.extend(cache.components(kind));
        }
        let request_locks = cache
            .locked_requests()
            .into_iter()
            .map(|id| {
                let contenders = cache.request_lock_contenders(&id);
                (id, contenders)
            })
            .collect();
        Snapshot {
            nodes: cache.nodes(),
            requests: cache.requests(),
            builds: cache.builds(),
            uploads: cache.uploads(),
            components,
            images: cache.images().into_iter().collect(),
            paused: cache.paused_images().into_iter().collect(),
            build_requests: cache.build_requests().into_iter().collect(),
            request_locks,
            corrupt: cache.corrupt_paths(),
        }
    }

    /// The node with `id`.
    pub fn node(&self, id: &NodeId) -> Option<&Arc<CachedNode>> {
        self.nodes
            .binary_search_by(|n| n.node.id().cmp(id))
            .ok()
            .map(|i| &self.nodes[i])
            .or_else(|| self.nodes.iter().find(|n| n.node.id() == id))
    }

    /// The build of `image` with `id`.
    pub fn build(&self, image: &str, id: &BuildId) -> Option<&Arc<CachedBuild>> {
        self.builds
            .iter()
            .find(|b| b.build.image == image && &b.build.id == id)
    }

    /// The upload with `key`.
    pub fn upload(&self, key: &UploadKey) -> Option<&Arc<CachedUpload>> {
        self.uploads.iter().find(|u| {
            let x = &u.upload;
            x.image == key.0 && x.build_id == key.1 && x.provider == key.2 && x.id == key.3
        })
    }

    /// The request with `id`.
    pub fn request(&self, id: &RequestId) -> Option<&Arc<CachedRequest>> {
        self.requests
            .binary_search_by(|r| r.request.id.cmp(id))
            .ok()
            .map(|i| &self.requests[i])
            .or_else(|| self.requests.iter().find(|r| &r.request.id == id))
    }

    /// Whether someone holds or waits for the request's lock.
    pub fn request_locked(&self, id: &RequestId) -> bool {
        self.request_locks.get(id).is_some_and(|c| !c.is_empty())
    }

    /// The component.
    pub fn component(&self, kind: ComponentKind, name: &str) -> Option<&Arc<CachedComponent>> {
        self.components
            .iter()
            .find(|c| c.component.kind == kind && c.name == name)
    }

    /// Every image name known from znodes, builds, flags and `extra` (e.g. the config).
    pub fn image_names<'a>(&'a self, extra: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut all: BTreeSet<&str> = self.images.iter().map(String::as_str).collect();
        all.extend(self.builds.iter().map(|b| b.build.image.as_str()));
        all.extend(self.paused.iter().map(String::as_str));
        all.extend(self.build_requests.keys().map(String::as_str));
        all.extend(extra);
        all.into_iter().map(str::to_string).collect()
    }
}

/// Seconds since the epoch of a znode time in milliseconds (`ctime`, `mtime`); `None`
/// when unset.
pub fn znode_time(ms: i64) -> Option<f64> {
    (ms > 0).then(|| ms as f64 / 1000.0)
}
