//! The node counts the Overview and the history show — per provider by state, ready
//! unallocated nodes per label, the sparklines' states — kept by deltas: each new
//! snapshot is compared with the previous one by `Arc` identity (as the nodes tab
//! does, [`crate::incremental`]) and only the nodes that changed are subtracted and
//! added again. A clock tick then rebuilds the Overview from these counts, not from
//! 100,000 nodes.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use nodepool_shared::model::NodeState;
use nodepool_shared::zk::CachedNode;

use crate::views::overview::StateCounts;

/// Node counts, kept in step with the snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeTally {
    /// Nodes with a provider, per provider by state (providers without nodes absent).
    pub by_provider: BTreeMap<String, StateCounts>,
    /// Nodes per label (a label named twice by a node counts twice).
    pub by_label: BTreeMap<String, usize>,
    /// Ready, unallocated nodes per label (what `min-ready` counts; absent when 0).
    pub ready_by_label: BTreeMap<String, usize>,
    /// Nodes per state of [`crate::history::SERIES`].
    pub series: [u32; 4],
    /// Nodes in all.
    pub total: usize,
}

fn bump(map: &mut BTreeMap<String, usize>, key: &str, add: bool) {
    if add {
        match map.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                map.insert(key.to_string(), 1);
            }
        }
    } else if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

fn step(v: &mut u32, add: bool) {
    *v = if add { *v + 1 } else { v.saturating_sub(1) };
}

/// Index in [`crate::history::SERIES`] of a state.
pub fn series_index(state: NodeState) -> Option<usize> {
    match state {
        NodeState::Ready => Some(0),
        NodeState::InUse => Some(1),
        NodeState::Init | NodeState::Building => Some(2),
        NodeState::Deleting => Some(3),
        _ => None,
    }
}

impl NodeTally {
    /// The counts of `nodes`, from scratch.
    pub fn of(nodes: &[Arc<CachedNode>]) -> NodeTally {
        let mut t = NodeTally::default();
        for n in nodes {
            t.count(n, true);
        }
        t
    }

    /// Adds (`add`) or subtracts one node.
    fn count(&mut self, c: &CachedNode, add: bool) {
        let n = &c.node;
        let state = n.state();
        if let Some(p) = n.provider() {
            let counts = self.by_provider.entry(p.to_string()).or_default();
            let field = match state {
                NodeState::InUse => &mut counts.in_use,
                NodeState::Ready => &mut counts.ready,
                NodeState::Init | NodeState::Building => &mut counts.building,
                NodeState::Deleting => &mut counts.deleting,
                _ => &mut counts.other,
            };
            step(field, add);
            if counts.total() == 0 {
                self.by_provider.remove(p);
            }
        }
        let ready = state == NodeState::Ready && n.allocated_to().is_none();
        for l in n.labels() {
            bump(&mut self.by_label, l, add);
            if ready {
                bump(&mut self.ready_by_label, l, add);
            }
        }
        if let Some(i) = series_index(state) {
            step(&mut self.series[i], add);
        }
        if add {
            self.total += 1;
        } else {
            self.total = self.total.saturating_sub(1);
        }
    }

    /// Takes the step from `old` to `new` (both sorted by id, as the cache lists them)
    /// into account and returns the nodes that are new or changed in `new`.
    pub fn update<'a>(
        &mut self,
        old: &[Arc<CachedNode>],
        new: &'a [Arc<CachedNode>],
    ) -> Vec<&'a Arc<CachedNode>> {
        let mut fresh = Vec::new();
        let (mut i, mut j) = (0, 0);
        loop {
            match (old.get(i), new.get(j)) {
                (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {
                    i += 1;
                    j += 1;
                }
                (Some(a), Some(b)) => match a.id().cmp(b.id()) {
                    Ordering::Equal => {
                        self.count(a, false);
                        self.count(b, true);
                        fresh.push(b);
                        i += 1;
                        j += 1;
                    }
                    Ordering::Less => {
                        self.count(a, false);
                        i += 1;
                    }
                    Ordering::Greater => {
                        self.count(b, true);
                        fresh.push(b);
                        j += 1;
                    }
                },
                (Some(a), None) => {
                    self.count(a, false);
                    i += 1;
                }
                (None, Some(b)) => {
                    self.count(b, true);
                    fresh.push(b);
                    j += 1;
                }
                (None, None) => return fresh,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodepool_shared::model::{Node, NodeId};

    fn node(
        seq: u64,
        state: NodeState,
        provider: Option<&str>,
        labels: &[&str],
    ) -> Arc<CachedNode> {
        let n = Node {
            id: NodeId::from_sequence(seq),
            state,
            provider: provider.map(str::to_string),
            node_type: labels.iter().map(|l| l.to_string()).collect(),
            ..Node::default()
        };
        let stat = nodepool_shared::zk::IN_MEMORY_STAT;
        Arc::new(CachedNode::new(n, stat, vec![]))
    }

    /// Changes, additions and deletions: the counts by deltas equal the counts from
    /// scratch, and the new or changed nodes are reported.
    #[test]
    fn deltas_match_counting_from_scratch() {
        use NodeState::*;
        let a = vec![
            node(1, Ready, Some("p1"), &["small"]),
            node(2, InUse, Some("p1"), &["small", "small"]),
            node(3, Building, Some("p2"), &["big"]),
            node(4, Ready, None, &["big"]),
        ];
        let mut t = NodeTally::of(&a);
        assert_eq!(t.ready_by_label.get("small"), Some(&1));
        assert_eq!(t.by_label.get("small"), Some(&3));
        let mut b = a.clone();
        b[0] = node(1, Deleting, Some("p1"), &["small"]); // changed
        b.remove(2); // node 3 deleted: p2 has no node left
        b.push(node(9, Ready, Some("p3"), &["big"])); // added
        let fresh = t.update(&a, &b);
        let ids: Vec<&str> = fresh.iter().map(|n| n.id().as_str()).collect();
        assert_eq!(ids, ["0000000001", "0000000009"]);
        assert_eq!(t, NodeTally::of(&b));
        assert!(!t.by_provider.contains_key("p2"));
        assert_eq!(t.ready_by_label.get("small"), None);
        // Nothing changed: same counts, nothing reported.
        assert!(t.update(&b, &b.clone()).is_empty());
        assert_eq!(t, NodeTally::of(&b));
    }
}
