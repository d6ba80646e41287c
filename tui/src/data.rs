//! What the console shows, decoupled from where it comes from: a [`Snapshot`] of the
//! tree cache's records (cheap: shared `Arc`s), the [`Health`] of the connection and
//! cache, and the few facts taken from `nodepool.yaml` ([`ConfigInfo`]). Tests build
//! these by hand; the runtime builds them from a [`TreeCache`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use nodepool_shared::config::Config;
use nodepool_shared::model::{BuildId, ComponentKind, NodeId, RequestId};
use nodepool_shared::zk::cache::UploadKey;
use nodepool_shared::zk::{
    CacheStatus, CachedBuild, CachedComponent, CachedNode, CachedRequest, CachedUpload, FlagTimes,
    SessionStatus, TreeCache,
};

/// Identifies the record a row shows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RecordKey {
    /// A node.
    Node(NodeId),
    /// A node request.
    Request(RequestId),
    /// An image build (image, build id).
    Build(String, BuildId),
    /// An image upload.
    Upload(UploadKey),
    /// A label (aggregate row).
    Label(String),
    /// A component (kind, znode name).
    Component(ComponentKind, String),
    /// An image (aggregate row).
    Image(String),
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
    /// Request ids whose lock has contenders.
    pub locked_requests: BTreeSet<RequestId>,
    /// Number of corrupt record znodes the cache skipped.
    pub corrupt: usize,
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
        Snapshot {
            nodes: cache.nodes(),
            requests: cache.requests(),
            builds: cache.builds(),
            uploads: cache.uploads(),
            components,
            images: cache.images().into_iter().collect(),
            paused: cache.paused_images().into_iter().collect(),
            build_requests: cache.build_requests().into_iter().collect(),
            locked_requests: cache.locked_requests().into_iter().collect(),
            corrupt: cache.corrupt_records(),
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
        self.requests.iter().find(|r| &r.request.id == id)
    }

    /// The component.
    pub fn component(&self, kind: ComponentKind, name: &str) -> Option<&Arc<CachedComponent>> {
        self.components
            .iter()
            .find(|c| c.component.kind == kind && c.name == name)
    }

    /// Every image name known from znodes, builds, flags and `extra` (e.g. the config).
    pub fn image_names<'a>(&'a self, extra: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        let mut all: BTreeSet<&str> = self.images.iter().map(String::as_str).collect();
        all.extend(self.builds.iter().map(|b| b.build.image.as_str()));
        all.extend(self.paused.iter().map(String::as_str));
        all.extend(self.build_requests.keys().map(String::as_str));
        all.extend(extra.into_iter().map(String::as_str));
        all.into_iter().map(str::to_string).collect()
    }
}

/// Connection and cache state for the status line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// ZooKeeper hosts (with chroot) as configured.
    pub hosts: String,
    /// The client's connection state and session generation.
    pub connection: SessionStatus,
    /// The cache's sync state.
    pub cache: CacheStatus,
    /// The cache's change counter.
    pub changes: u64,
}

/// Facts from `nodepool.yaml` the console uses (empty without `-c`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigInfo {
    /// Top-level labels and their `min-ready`.
    pub labels: Vec<(String, u32)>,
    /// Names of the (concrete) diskimages.
    pub diskimages: Vec<String>,
    /// Whether a config file was given at all.
    pub loaded: bool,
}

impl ConfigInfo {
    /// Takes what the console needs from a loaded config.
    pub fn from_config(c: &Config) -> ConfigInfo {
        ConfigInfo {
            labels: c
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.min_ready))
                .collect(),
            diskimages: c.diskimages.iter().map(|d| d.name.clone()).collect(),
            loaded: true,
        }
    }

    /// `min-ready` of a label, if the config names it.
    pub fn min_ready(&self, label: &str) -> Option<u32> {
        self.labels
            .iter()
            .find(|(n, _)| n == label)
            .map(|(_, m)| *m)
    }
}
