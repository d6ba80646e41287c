//! A full load of the tree cache: the first one builds a whole tree to swap in; a
//! reload (after every new session or reconnect) applies its node part to the live
//! tree as changes instead.
//!
//! Most records a reload reads are the ones the live tree holds (same `mzxid`). When a
//! reload built a whole second [`Tree`] to swap in, a second node map (~7 MiB with
//! 100,000 nodes, and its keys) and a second set of node indexes lived until the swap,
//! at the reload's memory peak, and were then allocated among the load's freed buffers.
//! So a reload gathers the node part, by far the largest, as a [`NodePatch`]: the ids
//! that the listing of `/nodepool/nodes` lacks, and the records or lock contender lists
//! that differ from the live tree's. When the load ends, the live tree's own node maps
//! and indexes take the patch, with an event for each difference. The small rest
//! (requests, images, builds, uploads, components) is still loaded into a fresh tree
//! that replaces the live one's.
//!
//! The first load (the live tree holds no node) builds the whole tree: there is nothing
//! to patch, and a map built as the records arrive sits in fewer pages than one built
//! at the end among the load's freed buffers (applying the first load as a patch left
//! the launcher's RSS at rest ~10 MiB higher; docs/benchmarks.md).
//!
//! Until the load ends the live tree is not touched: readers see the tree of before
//! the load, then the loaded one.

use std::sync::Arc;

use crate::model::paths::{self, ZkPath};
use crate::model::NodeId;
use crate::zk::store::{is_lock_contender, sort_contenders};
use crate::zk::Stat;

use super::tree::{CacheEvent, CacheKind, CachedNode, Change, LoadedNode, Tree, Update};

/// One change of a load's node part, in load order.
#[derive(Debug)]
enum NodeStep {
    /// A node record, with its lock contenders, that differs from the live tree's.
    Put(Arc<CachedNode>),
    /// Any other update of a node path: a record gone, empty or corrupt, the lock
    /// contenders of an empty node znode. (Boxed: a reload after a long absence can
    /// keep many steps, nearly all `Put`.)
    Update(Box<Update>),
}

/// What a load read below `/nodepool/nodes`, as changes to the live tree.
#[derive(Debug, Default)]
pub(crate) struct NodePatch {
    /// Whether `/nodepool/nodes` was listed; if not, it is gone with every node.
    listed: bool,
    /// Ids the live tree knows (a node, an empty node znode, lock contenders) that the
    /// listing lacks.
    missing: Vec<NodeId>,
    steps: Vec<NodeStep>,
}

/// A full load in progress.
#[derive(Debug)]
pub(crate) enum Load {
    /// The first load: the whole tree, swapped in whole.
    Fresh {
        tree: Tree,
        /// The events of applying to the fresh tree (not published: the swap reports
        /// the differences with the live tree).
        ignored: Vec<CacheEvent>,
    },
    /// A reload: the fresh tree of everything but the nodes, and the changes to the
    /// live tree's nodes.
    Patch {
        rest: Tree,
        nodes: NodePatch,
        ignored: Vec<CacheEvent>,
    },
}

/// Whether `update` is about a node znode or its lock.
fn is_node_part(update: &Update) -> bool {
    match update {
        Update::Node(..) => true,
        Update::Gone(zp) | Update::Corrupt(zp, _) | Update::Present(zp, _) => {
            matches!(zp, ZkPath::Node(_) | ZkPath::NodeLock(..))
        }
        _ => false,
    }
}

impl Load {
    /// A load for `live`: a patch of it if it holds any node, else a whole tree.
    pub(crate) fn for_tree(live: &Tree) -> Self {
        if known_node_ids(live).next().is_some() {
            Load::Patch {
                rest: Tree::default(),
                nodes: NodePatch::default(),
                ignored: Vec::new(),
            }
        } else {
            Load::Fresh {
                tree: Tree::default(),
                ignored: Vec::new(),
            }
        }
    }

    /// Applies one decoded read: in a patch, a node part goes to the patch and the rest
    /// into the fresh tree.
    pub(crate) fn apply(&mut self, update: Update) {
        let (rest, nodes, ignored) = match self {
            Load::Fresh { tree, ignored } => {
                tree.apply(update, ignored);
                ignored.clear();
                return;
            }
            Load::Patch {
                rest,
                nodes,
                ignored,
            } => (rest, nodes, ignored),
        };
        if !is_node_part(&update) {
            rest.apply(update, ignored);
            ignored.clear();
            return;
        }
        let empty = match &update {
            Update::Node(id, None, _) => Some(id.clone()),
            _ => None,
        };
        nodes.steps.push(NodeStep::Update(Box::new(update)));
        if let Some(id) = empty {
            // Its contenders are the ones read now (they follow), not the live tree's.
            nodes.steps.push(NodeStep::Update(Box::new(Update::Present(
                ZkPath::NodeLock(id, None),
                false,
            ))));
        }
    }

    /// A node record read with its lock contenders (`lock`: the children of its `lock`
    /// dir, contenders or not). In a patch nothing is kept for a node the live tree
    /// holds with the same stat and contenders.
    pub(crate) fn put_node(&mut self, node: LoadedNode, stat: Stat, lock: Vec<String>) {
        let nodes = match self {
            Load::Fresh { tree, .. } => return tree.put_loaded_node(node, stat, lock),
            Load::Patch { nodes, .. } => nodes,
        };
        let mut contenders: Vec<String> =
            lock.into_iter().filter(|c| is_lock_contender(c)).collect();
        sort_contenders(&mut contenders);
        contenders.dedup();
        let record = match node {
            LoadedNode::Unchanged(kept)
                if kept.stat == stat && kept.lock_contenders == contenders =>
            {
                return;
            }
            LoadedNode::Unchanged(kept) => kept.node.clone(),
            LoadedNode::Read(record) => record,
        };
        contenders.shrink_to_fit();
        nodes.steps.push(NodeStep::Put(Arc::new(CachedNode {
            node: record,
            stat,
            lock_contenders: contenders,
        })));
    }

    /// The children of `/nodepool/nodes`: in a patch, the live tree's ids missing from
    /// them are gone. (The live tree does not change while a load runs.)
    pub(crate) fn list_nodes(&mut self, live: &Tree, children: &[String]) {
        let Load::Patch { nodes, .. } = self else {
            return;
        };
        let mut listed: Vec<&str> = children.iter().map(String::as_str).collect();
        listed.sort_unstable();
        let mut missing: Vec<NodeId> = known_node_ids(live)
            .filter(|id| listed.binary_search(&id.as_str()).is_err())
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        nodes.listed = true;
        nodes.missing = missing;
    }

    /// The node steps kept so far (for tests: what a reload holds besides the live
    /// tree).
    #[cfg(test)]
    pub(crate) fn node_steps(&self) -> usize {
        match self {
            Load::Fresh { .. } => 0,
            Load::Patch { nodes, .. } => nodes.steps.len(),
        }
    }
}

/// Every node id `tree` knows: cached nodes, empty node znodes, ids with contenders only.
fn known_node_ids(tree: &Tree) -> impl Iterator<Item = &NodeId> {
    tree.nodes
        .keys()
        .chain(tree.empty_nodes.iter())
        .chain(tree.node_locks.keys())
}

impl Tree {
    /// Makes `load` the live tree, pushing events for every difference so that
    /// subscribers see what vanished or changed meanwhile (for a whole tree, at most
    /// `limit` + 1 of them: see [`Tree::replace_with`]). A patch swaps the rest of the
    /// tree; the node maps stay and take the node patch. Returns the replaced tree or
    /// rest (for the caller to free outside its lock).
    pub(crate) fn replace_with_load(
        &mut self,
        load: Load,
        out: &mut Vec<CacheEvent>,
        limit: usize,
    ) -> Tree {
        let (mut new, patch) = match load {
            Load::Fresh { tree, .. } => return self.replace_with(tree, out, limit),
            Load::Patch { rest, nodes, .. } => (rest, nodes),
        };
        self.diff_rest(&new, out, limit);
        new.nodes = std::mem::take(&mut self.nodes);
        new.empty_nodes = std::mem::take(&mut self.empty_nodes);
        new.node_locks = std::mem::take(&mut self.node_locks);
        new.tenants = std::mem::take(&mut self.tenants);
        new.allocations = std::mem::take(&mut self.allocations);
        new.node_index = std::mem::take(&mut self.node_index);
        let prefix = format!("{}/", paths::NODES);
        new.corrupt.extend(
            self.corrupt
                .iter()
                .filter(|p| p.starts_with(&prefix))
                .cloned(),
        );
        new.apply_node_patch(patch, out);
        std::mem::replace(self, new)
    }

    fn apply_node_patch(&mut self, patch: NodePatch, out: &mut Vec<CacheEvent>) {
        let missing = if patch.listed {
            patch.missing
        } else {
            let mut all: Vec<NodeId> = known_node_ids(self).cloned().collect();
            all.sort();
            all.dedup();
            all
        };
        for id in missing {
            self.forget_node(&id, out);
        }
        for step in patch.steps {
            match step {
                NodeStep::Put(node) => self.install_node(node, out),
                NodeStep::Update(update) => self.apply(*update, out),
            }
        }
    }

    /// Removes everything known of node `id` (its znode is gone), with an event for
    /// the node and each of its lock contenders.
    fn forget_node(&mut self, id: &NodeId, out: &mut Vec<CacheEvent>) {
        let mut contenders: Vec<String> = self
            .nodes
            .get(id)
            .map(|n| n.lock_contenders.clone())
            .unwrap_or_default();
        contenders.extend(self.node_locks.get(id).into_iter().flatten().cloned());
        self.gone(ZkPath::Node(id.clone()), out);
        for c in contenders {
            out.push(CacheEvent::new(
                CacheKind::NodeLock,
                ZkPath::NodeLock(id.clone(), Some(c)),
                Change::Removed,
            ));
        }
    }

    /// Stores a node as loaded (record and contenders), unless the cached record is
    /// newer; its indexes follow, with events for the node and its contenders.
    fn install_node(&mut self, new: Arc<CachedNode>, out: &mut Vec<CacheEvent>) {
        let id = new.id().clone();
        if self
            .nodes
            .get(&id)
            .is_some_and(|o| o.stat.mzxid > new.stat.mzxid)
        {
            return;
        }
        self.empty_nodes.remove(&id);
        self.corrupt.remove(&paths::node(&id));
        let orphans: Vec<String> = self
            .node_locks
            .remove(&id)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        let old = self.store_node(id.clone(), &new);
        let (before, change) = match &old {
            None => (orphans, Some(Change::Added)),
            Some(o) => (
                o.lock_contenders.clone(),
                (o.stat.mzxid != new.stat.mzxid).then_some(Change::Updated),
            ),
        };
        if let Some(c) = change {
            out.push(CacheEvent::new(
                CacheKind::Node,
                ZkPath::Node(id.clone()),
                c,
            ));
        }
        let after = &new.lock_contenders;
        for (list, other, change) in [
            (&before, after, Change::Removed),
            (after, &before, Change::Added),
        ] {
            for c in list.iter().filter(|c| !other.contains(c)) {
                out.push(CacheEvent::new(
                    CacheKind::NodeLock,
                    ZkPath::NodeLock(id.clone(), Some(c.clone())),
                    change,
                ));
            }
        }
    }
}
