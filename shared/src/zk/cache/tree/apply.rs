//! Applying one update to a [`Tree`]: storing or dropping a record, keeping the
//! indexes and the lock contenders in step, and the events each change makes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{
    path_string, CacheEvent, CacheKind, CachedBuild, CachedComponent, CachedNode, CachedRequest,
    CachedUpload, Change, LoadedNode, Tree, Update,
};
use crate::model::paths::{self, ZkPath};
use crate::model::{CompactNode, NodeId, NodeRequest, RequestId, RequestState};
use crate::zk::cache::derived::RequestOrder;
use crate::zk::store::{is_lock_contender, sort_contenders, FlagTimes};
use crate::zk::Stat;

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
    pub(in crate::zk::cache) fn store_node(
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

    pub(in crate::zk::cache) fn gone(&mut self, zp: ZkPath, out: &mut Vec<CacheEvent>) {
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
