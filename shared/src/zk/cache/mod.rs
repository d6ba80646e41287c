//! [`TreeCache`]: an in-memory copy of the whole `/nodepool` tree, kept current by ONE
//! persistent recursive watch (Zuul-TreeCache style), so that the launcher's loops, the
//! web API and the TUI read typed records without ever waiting on ZooKeeper.
//!
//! * Readers take cheap snapshots (`Vec<Arc<_>>`) under a short read lock.
//! * Change notification: [`TreeCache::watch_generation`] (a counter bumped after every
//!   applied change) and [`TreeCache::subscribe`] (typed [`CacheEvent`]s; lossy when a
//!   subscriber lags — then re-read everything).
//! * Corrupt records are skipped with a log line and counted ([`TreeCache::corrupt_records`]).
//! * After a reconnect the tree is reloaded, after a new session the watch is re-added
//!   first; what vanished meanwhile is dropped (and reported as `Removed`).
//!
//! * [`TreeCache::queues`] — how many watch events wait to be read and applied
//!   ([`queues`]; the launcher's `zk.*_cache.*_queue` gauges).
//!
//! The work is done by one task ([`sync`]); the state and its pure operations live in
//! [`tree`].

pub mod derived;
mod load_queue;
pub mod queues;
mod reload;
mod sync;
pub mod tree;

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::model::paths::ZkPath;
use crate::model::{BuildId, ComponentKind, NodeId, RequestId};
use crate::zk::client::{SessionStatus, ZkClient};
use crate::zk::store::FlagTimes;

pub use derived::{state_index, NodeCounts, NodeSum, ProviderUsage, StateCounts, TenantUsage};
pub use queues::{CachePart, CacheQueue, QueueSizes};

use crate::sync::RwLockExt;
pub use tree::{
    CacheEvent, CacheKind, CachedBuild, CachedComponent, CachedNode, CachedRequest, CachedUpload,
    Change, UploadKey,
};
use tree::{Tree, Update};

/// Whether the cache reflects ZooKeeper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// Adding the watch or loading the tree (contents may be old or empty).
    Loading,
    /// Loaded and following events.
    Synced,
    /// Disconnected or failing; contents are the last known state.
    Stale,
    /// Stopped (by [`TreeCache::stop`] or because the client was closed).
    Stopped,
}

/// Status of the cache for status lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheStatus {
    /// Sync state.
    pub state: SyncState,
    /// ZooKeeper session generation the cache follows.
    pub session_generation: u64,
    /// Number of completed full loads (1 after the first sync).
    pub loads: u64,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
}

/// Events the broadcast channel keeps for a subscriber that has not read them yet.
const EVENT_CAPACITY: usize = 4096;

pub(crate) struct Shared {
    tree: RwLock<Tree>,
    generation: watch::Sender<u64>,
    events: broadcast::Sender<CacheEvent>,
    status: watch::Sender<CacheStatus>,
    queues: QueueSizes,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Tree> {
        self.tree.read_or_recover()
    }

    fn publish(&self, events: Vec<CacheEvent>) {
        if events.is_empty() {
            return;
        }
        for e in events {
            let _ = self.events.send(e);
        }
        self.generation.send_modify(|g| *g += 1);
    }

    pub(crate) fn apply(&self, update: Update) {
        let mut out = Vec::new();
        self.tree.write_or_recover().apply(update, &mut out);
        self.publish(out);
    }

    pub(crate) fn replace(&self, load: reload::Load, session_generation: u64) {
        let mut out = Vec::new();
        let old = {
            let mut tree = self.tree.write_or_recover();
            tree.replace_with_load(load, &mut out, EVENT_CAPACITY)
        };
        // The old tree is freed outside the lock (100,000 nodes take a while).
        drop(old);
        if out.len() > EVENT_CAPACITY {
            // More changes than the channel holds: every subscriber would lag and re-read
            // everything anyway; `Resynced` alone tells them to.
            out.clear();
        }
        out.push(CacheEvent {
            kind: CacheKind::Tree,
            path: ZkPath::Other,
            change: Change::Resynced,
        });
        self.status.send_modify(|s| {
            s.state = SyncState::Synced;
            s.session_generation = session_generation;
            s.loads += 1;
            s.last_error = None;
        });
        self.publish(out);
    }

    pub(crate) fn set_state(&self, state: SyncState, generation: u64, error: Option<String>) {
        self.status.send_if_modified(|s| {
            let before = s.clone();
            s.state = state;
            s.session_generation = generation;
            if error.is_some() {
                s.last_error = error;
            }
            *s != before
        });
    }
}

struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A cloneable handle on the cache; the background task stops when the last handle is
/// dropped, on [`TreeCache::stop`], or when the client is closed.
#[derive(Clone)]
pub struct TreeCache {
    shared: Arc<Shared>,
    client: ZkClient,
    stop: Arc<StopOnDrop>,
}

impl std::fmt::Debug for TreeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeCache")
            .field("status", &self.status())
            .finish()
    }
}

impl TreeCache {
    /// Starts caching `/nodepool` (must be called inside a tokio runtime). Returns at once;
    /// use [`Self::wait_synced`] to wait for the first load.
    pub fn start(client: ZkClient) -> TreeCache {
        let (generation, _) = watch::channel(0);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (status, _) = watch::channel(CacheStatus {
            state: SyncState::Loading,
            session_generation: client.generation(),
            loads: 0,
            last_error: None,
        });
        let shared = Arc::new(Shared {
            tree: RwLock::new(Tree::default()),
            generation,
            events,
            status,
            queues: QueueSizes::default(),
        });
        let cancel = CancellationToken::new();
        tokio::spawn(sync::run(client.clone(), shared.clone(), cancel.clone()));
        TreeCache {
            shared,
            client,
            stop: Arc::new(StopOnDrop(cancel)),
        }
    }

    /// Stops following ZooKeeper (contents stay readable).
    pub fn stop(&self) {
        self.stop.0.cancel();
    }

    // ------------------------------------------------------------ status and notification

    /// Current status.
    pub fn status(&self) -> CacheStatus {
        self.shared.status.borrow().clone()
    }

    /// A watch on the status.
    pub fn watch_status(&self) -> watch::Receiver<CacheStatus> {
        self.shared.status.subscribe()
    }

    /// The client's connection status (for status lines).
    pub fn connection(&self) -> SessionStatus {
        self.client.status()
    }

    /// Waits until the cache is synced or `timeout` elapses; returns whether synced.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let mut rx = self.watch_status();
        tokio::time::timeout(timeout, rx.wait_for(|s| s.state == SyncState::Synced))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Counter bumped after every applied change.
    pub fn generation(&self) -> u64 {
        *self.shared.generation.borrow()
    }

    /// A watch on the change counter (wake up on any change).
    pub fn watch_generation(&self) -> watch::Receiver<u64> {
        self.shared.generation.subscribe()
    }

    /// Typed change events from now on (lossy on lag: `RecvError::Lagged` means "re-read").
    pub fn subscribe(&self) -> broadcast::Receiver<CacheEvent> {
        self.shared.events.subscribe()
    }

    /// The sizes of the event and playback queues, by part of the tree.
    pub fn queues(&self) -> &QueueSizes {
        &self.shared.queues
    }

    /// Number of record znodes currently skipped because their data is corrupt.
    pub fn corrupt_records(&self) -> usize {
        self.shared.read().corrupt.len()
    }

    /// Paths of the corrupt record znodes.
    pub fn corrupt_paths(&self) -> Vec<String> {
        self.shared.read().corrupt.iter().cloned().collect()
    }

    // ------------------------------------------------------------ nodes

    /// All nodes, sorted by id (empty node znodes are not nodes).
    pub fn nodes(&self) -> Vec<Arc<CachedNode>> {
        self.shared.read().nodes.values().cloned().collect()
    }

    /// The nodes for which `keep` is true, sorted by id; the others are not copied (a
    /// scan of 100,000 nodes that keeps a few). `keep` runs under the cache's read lock:
    /// it must not call the cache.
    pub fn select_nodes(&self, mut keep: impl FnMut(&CachedNode) -> bool) -> Vec<Arc<CachedNode>> {
        self.shared
            .read()
            .nodes
            .values()
            .filter(|n| keep(n))
            .cloned()
            .collect()
    }

    /// Calls `f` for every node, in id order, under the cache's read lock (`f` must not
    /// call the cache).
    pub fn for_each_node(&self, f: impl FnMut(&CachedNode)) {
        self.shared.read().nodes.values().map(|n| &**n).for_each(f)
    }

    /// Calls `f`, in id order and under the cache's read lock, for the nodes the
    /// launcher's cleanup may act on: no lock contender, not `hold`, not `ready` and
    /// unallocated (`NodeIndex::unheld`). Kept as nodes change, so this does not look at
    /// the locked and held nodes that make up most of a busy fleet.
    pub fn for_each_unheld_node(&self, mut f: impl FnMut(&CachedNode)) {
        let t = self.shared.read();
        for id in t.node_index.unheld_ids() {
            if let Some(n) = t.nodes.get(id) {
                f(n);
            }
        }
    }

    /// The node counts by state, provider and label, and the `ready` unallocated nodes
    /// per label (see [`NodeCounts`]), kept as nodes change (no node scan here).
    pub fn node_counts(&self) -> NodeCounts {
        self.shared.read().node_index.counts().clone()
    }

    /// How many `ready` nodes with no `allocated_to` carry `label`, kept as nodes change
    /// (no node scan here).
    pub fn ready_unallocated(&self, label: &str) -> u64 {
        self.shared
            .read()
            .node_index
            .counts()
            .ready_unallocated
            .get(label)
            .copied()
            .unwrap_or_default()
    }

    /// One node.
    pub fn node(&self, id: &NodeId) -> Option<Arc<CachedNode>> {
        self.shared.read().nodes.get(id).cloned()
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.shared.read().nodes.len()
    }

    /// Ids of node znodes without data (the CleanupWorker deletes them).
    pub fn empty_node_ids(&self) -> Vec<NodeId> {
        self.shared.read().empty_nodes.iter().cloned().collect()
    }

    /// Lock contenders of a node (holder first); also for nodes not (yet) cached.
    pub fn node_lock_contenders(&self, id: &NodeId) -> Vec<String> {
        let t = self.shared.read();
        match t.nodes.get(id) {
            Some(n) => n.lock_contenders.clone(),
            None => {
                let mut v: Vec<String> = t
                    .node_locks
                    .get(id)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                crate::zk::store::sort_contenders(&mut v);
                v
            }
        }
    }

    // ------------------------------------------------------------ requests

    /// All requests, sorted by id.
    pub fn requests(&self) -> Vec<Arc<CachedRequest>> {
        self.shared.read().requests.values().cloned().collect()
    }

    /// The `requested` requests in Nodepool's order (precedence, relative priority,
    /// sequence), kept sorted as they change (no sort here).
    pub fn requested_in_order(&self) -> Vec<Arc<CachedRequest>> {
        self.shared.read().requested.values().cloned().collect()
    }

    /// The usage of a tenant's nodes (see [`TenantUsage`]), kept as nodes change (no
    /// node scan here).
    pub fn tenant_usage(&self, tenant: &str) -> TenantUsage {
        self.shared.read().tenants.get(tenant)
    }

    /// [`Self::tenant_usage`] without the nodes of `tenant` allocated to one of
    /// `requests`, from one read: the running total less those nodes, found by the
    /// index of allocations (no node scan; the cost grows with the requests' nodes).
    pub fn tenant_usage_without<'a>(
        &self,
        tenant: &str,
        requests: impl IntoIterator<Item = &'a RequestId>,
    ) -> TenantUsage {
        self.shared.read().tenant_usage_without(tenant, requests)
    }

    /// The cached nodes allocated to `request` (any state), in id order, found by the
    /// index of allocations (no node scan).
    pub fn allocated_nodes(&self, request: &RequestId) -> Vec<Arc<CachedNode>> {
        self.shared.read().allocated_nodes(request)
    }

    /// The node usage of `provider` and of its `pool` (see [`ProviderUsage`]), kept as
    /// nodes change (no node scan here), and which of `ids` are cached nodes of the
    /// provider, all from one read.
    pub fn provider_usage<'a>(
        &self,
        provider: &str,
        pool: &str,
        ids: impl IntoIterator<Item = &'a NodeId>,
    ) -> ProviderUsage {
        let t = self.shared.read();
        let of = |s: Option<&NodeSum>| s.map_or((0, [0; 3]), |s| (s.standard_nodes, s.standard));
        let all = t.node_index.provider_sum(provider);
        ProviderUsage {
            provider_standard: of(all),
            pool_standard: of(t.node_index.pool_sum(provider, pool)),
            other: all
                .iter()
                .flat_map(|s| s.other.iter())
                .filter_map(|id| t.nodes.get(id).cloned())
                .collect(),
            cached: ids
                .into_iter()
                .filter(|id| {
                    t.nodes
                        .get(*id)
                        .is_some_and(|n| n.node.provider() == Some(provider))
                })
                .cloned()
                .collect(),
        }
    }

    /// The ids of the `ready`, unallocated, unlocked nodes of `provider` in `pool` with
    /// `label` for which `keep` is true, in id order, from an index kept as nodes and
    /// their locks change (no node scan). `keep` runs under the cache's read lock: it
    /// must not call the cache.
    pub fn reusable_nodes(
        &self,
        provider: &str,
        pool: &str,
        label: &str,
        mut keep: impl FnMut(&CachedNode) -> bool,
    ) -> Vec<NodeId> {
        let t = self.shared.read();
        t.node_index
            .ready(provider, pool, label)
            .into_iter()
            .flatten()
            .filter(|id| t.nodes.get(*id).is_some_and(|n| keep(n)))
            .cloned()
            .collect()
    }

    /// For freeing quota in one pool: how many of its nodes are `deleting`, and its
    /// `ready`, unallocated, unlocked nodes (any label, in id order), from the index kept
    /// as nodes and their locks change (no node scan).
    pub fn pool_reusable(&self, provider: &str, pool: &str) -> (u64, Vec<Arc<CachedNode>>) {
        let t = self.shared.read();
        let deleting = t.node_index.pool_deleting(provider, pool);
        let nodes = t
            .node_index
            .pool_reusable(provider, pool)
            .iter()
            .filter_map(|id| t.nodes.get(id).cloned())
            .collect();
        (deleting, nodes)
    }

    /// One request.
    pub fn request(&self, id: &RequestId) -> Option<Arc<CachedRequest>> {
        self.shared.read().requests.get(id).cloned()
    }

    /// Whether the request with this id is cached.
    pub fn has_request(&self, id: &str) -> bool {
        self.shared.read().requests.contains_key(id)
    }

    /// Lock contenders of a request (holder first).
    pub fn request_lock_contenders(&self, id: &RequestId) -> Vec<String> {
        let mut v: Vec<String> = self
            .shared
            .read()
            .request_locks
            .get(id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        crate::zk::store::sort_contenders(&mut v);
        v
    }

    /// Whether someone holds or waits for the request's lock.
    pub fn request_locked(&self, id: &RequestId) -> bool {
        self.shared.read().request_locks.contains_key(id)
    }

    /// One request and whether someone holds or waits for its lock, read together: the
    /// cache applies events in order, so a request shown unlocked after its handler let
    /// go is shown with the record that handler wrote before (e.g. `fulfilled`), never
    /// with an older one. Two separate reads could pair an old record with the unlock.
    pub fn request_with_lock(&self, id: &RequestId) -> (Option<Arc<CachedRequest>>, bool) {
        let t = self.shared.read();
        (
            t.requests.get(id).cloned(),
            t.request_locks.contains_key(id),
        )
    }

    /// Ids of requests whose lock has contenders.
    pub fn locked_requests(&self) -> Vec<RequestId> {
        self.shared.read().request_locks.keys().cloned().collect()
    }

    // ------------------------------------------------------------ images

    /// Names of the images with a znode.
    pub fn images(&self) -> Vec<String> {
        self.shared.read().images.iter().cloned().collect()
    }

    /// Whether the image is paused.
    pub fn image_paused(&self, image: &str) -> bool {
        self.shared.read().paused.contains(image)
    }

    /// Paused images.
    pub fn paused_images(&self) -> Vec<String> {
        self.shared.read().paused.iter().cloned().collect()
    }

    /// The image's manual build request, if any.
    pub fn build_request(&self, image: &str) -> Option<FlagTimes> {
        self.shared.read().build_requests.get(image).copied()
    }

    /// All manual build requests.
    pub fn build_requests(&self) -> Vec<(String, FlagTimes)> {
        self.shared
            .read()
            .build_requests
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// All builds, sorted by image and build id.
    pub fn builds(&self) -> Vec<Arc<CachedBuild>> {
        self.shared.read().builds.values().cloned().collect()
    }

    /// Builds of one image, sorted by build id.
    pub fn image_builds(&self, image: &str) -> Vec<Arc<CachedBuild>> {
        let t = self.shared.read();
        t.builds
            .range((image.to_string(), BuildId::default())..)
            .take_while(|((i, _), _)| i == image)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// One build.
    pub fn build(&self, image: &str, id: &BuildId) -> Option<Arc<CachedBuild>> {
        self.shared
            .read()
            .builds
            .get(&(image.to_string(), id.clone()))
            .cloned()
    }

    /// All uploads, sorted by image, build, provider, upload id.
    pub fn uploads(&self) -> Vec<Arc<CachedUpload>> {
        self.shared.read().uploads.values().cloned().collect()
    }

    /// Uploads of one build (all providers).
    pub fn build_uploads(&self, image: &str, build_id: &BuildId) -> Vec<Arc<CachedUpload>> {
        let t = self.shared.read();
        let start = (
            image.to_string(),
            build_id.clone(),
            String::new(),
            Default::default(),
        );
        t.uploads
            .range(start..)
            .take_while(|((i, b, _, _), _)| i == image && b == build_id)
            .map(|(_, v)| v.clone())
            .collect()
    }

    // ------------------------------------------------------------ components

    /// Components of a kind, sorted by znode name.
    pub fn components(&self, kind: ComponentKind) -> Vec<Arc<CachedComponent>> {
        let t = self.shared.read();
        t.components
            .range((kind, String::new())..)
            .take_while(|((k, _), _)| *k == kind)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CompactNode, Node, NodeState};

    fn shared() -> Shared {
        Shared {
            tree: RwLock::new(Tree::default()),
            generation: watch::channel(0).0,
            events: broadcast::channel(EVENT_CAPACITY).0,
            status: watch::channel(CacheStatus {
                state: SyncState::Loading,
                session_generation: 0,
                loads: 0,
                last_error: None,
            })
            .0,
            queues: QueueSizes::default(),
        }
    }

    /// A first load of `nodes` ready nodes.
    fn tree(nodes: u64) -> reload::Load {
        let mut t = reload::Load::for_tree(&Tree::default());
        for i in 0..nodes {
            let mut n = Node::new();
            n.set_state(NodeState::Ready);
            n.id = NodeId::from_sequence(i);
            let stat = crate::zk::IN_MEMORY_STAT;
            let node = Arc::new(CompactNode::from(n));
            t.apply(Update::Node(node.id().clone(), Some(node), stat));
        }
        t
    }

    fn received(rx: &mut broadcast::Receiver<CacheEvent>) -> Vec<CacheEvent> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn a_reload_reports_each_change_while_they_fit_the_channel() {
        let s = shared();
        let mut rx = s.events.subscribe();
        s.replace(tree(10), 1);
        let got = received(&mut rx);
        assert_eq!(got.len(), 11, "{got:?}");
        assert!(got[..10].iter().all(|e| e.change == Change::Added));
        assert_eq!(got[10].change, Change::Resynced);
    }

    #[test]
    fn a_reload_with_more_changes_than_the_channel_holds_reports_only_the_reload() {
        let s = shared();
        let mut rx = s.events.subscribe();
        s.replace(tree(EVENT_CAPACITY as u64 + 1), 1);
        let got = received(&mut rx);
        assert_eq!(got.len(), 1, "not lagging: {}", got.len());
        assert_eq!(
            (got[0].kind, got[0].change),
            (CacheKind::Tree, Change::Resynced)
        );
        assert_eq!(s.read().nodes.len(), EVENT_CAPACITY + 1);
    }
}
