//! Diffing a freshly loaded [`Tree`] against the live one after a resync: an event
//! for every difference, capped so that a first load does not build events nobody reads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{CacheEvent, CacheKind, Change, Tree};
use crate::model::paths::ZkPath;
use crate::model::{NodeId, RequestId};

impl Tree {
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
    pub(in crate::zk::cache) fn diff_rest(
        &self,
        new: &Tree,
        out: &mut Vec<CacheEvent>,
        limit: usize,
    ) {
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
