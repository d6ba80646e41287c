//! Which launcher's DeletedNodeWorker deletes an unlocked node first.
//!
//! Every launcher serving a node's provider sees the node become deletable (`used`, say)
//! on the same cache event. Had they all tried its lock at once, one would win and the
//! others' tries would be wasted ZooKeeper writes (a contender and its removal, often a
//! lock dir), and a try arriving just after the winner removed the node re-creates the
//! node's znode (the lock recipe creates missing parents, as kazoo's `ensure_path` does)
//! for the empty-znode cleanup to remove again. With three launchers that was most of the
//! writes of an idle request after the request-lock fix.
//!
//! So the launcher that created the node (its `launcher` is one of our pool workers)
//! acts at once. A node whose launcher is a pool worker still registered elsewhere is
//! left to that launcher for a grace period (the `delete` interval), then taken by whoever
//! comes first: its launcher may no longer serve the provider, or be stuck. A node whose
//! launcher is gone (no registered pool component has its id) or unknown is anyone's at
//! once, as before. Nothing written changes: only who tries first.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use nodepool_shared::model::NodeId;
use tokio::time::Instant;

/// Nodes left to their own launcher, and since when.
#[derive(Debug)]
pub struct OwnerFirst {
    grace: Duration,
    waiting: HashMap<NodeId, Instant>,
}

/// Who created a node, as this launcher sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// One of this launcher's pool workers.
    Us,
    /// A pool worker registered by another launcher.
    Alive,
    /// No registered pool worker (the launcher is gone), or no `launcher` recorded.
    Gone,
}

impl Owner {
    /// The owner of a node whose `launcher` is `launcher`: `ours` are this launcher's
    /// pool worker ids, `registered` every registered pool worker's.
    pub fn of(
        launcher: Option<&str>,
        ours: &HashSet<String>,
        registered: &HashSet<String>,
    ) -> Owner {
        match launcher {
            Some(l) if ours.contains(l) => Owner::Us,
            Some(l) if registered.contains(l) => Owner::Alive,
            _ => Owner::Gone,
        }
    }
}

impl OwnerFirst {
    /// Another launcher's node waits `grace` for it.
    pub fn new(grace: Duration) -> Self {
        OwnerFirst {
            grace,
            waiting: HashMap::new(),
        }
    }

    /// Whether this launcher tries node `id` now.
    pub fn go(&mut self, id: &NodeId, owner: Owner, now: Instant) -> bool {
        match owner {
            Owner::Us | Owner::Gone => {
                self.waiting.remove(id);
                true
            }
            Owner::Alive => {
                let since = *self.waiting.entry(id.clone()).or_insert(now);
                now.duration_since(since) >= self.grace
            }
        }
    }

    /// Forgets the nodes that are no longer candidates (deleted, or locked by someone).
    pub fn keep_only(&mut self, candidates: &HashSet<NodeId>) {
        self.waiting.retain(|id, _| candidates.contains(id));
    }

    /// How many nodes wait for their launcher.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn owner_by_launcher_field() {
        let ours = set(&["h-PoolWorker.p-main-1"]);
        let registered = set(&["h-PoolWorker.p-main-1", "h-PoolWorker.p-main-2"]);
        let of = |l| Owner::of(l, &ours, &registered);
        assert_eq!(of(Some("h-PoolWorker.p-main-1")), Owner::Us);
        assert_eq!(of(Some("h-PoolWorker.p-main-2")), Owner::Alive);
        assert_eq!(of(Some("h-PoolWorker.p-main-3")), Owner::Gone);
        assert_eq!(of(None), Owner::Gone);
    }

    #[test]
    fn another_launchers_node_waits_for_the_grace_period() {
        let grace = Duration::from_secs(5);
        let mut turn = OwnerFirst::new(grace);
        let t0 = Instant::now();
        let (a, b, c) = (
            NodeId::from("0000000001"),
            NodeId::from("0000000002"),
            NodeId::from("0000000003"),
        );
        assert!(turn.go(&a, Owner::Us, t0));
        assert!(turn.go(&b, Owner::Gone, t0));
        assert!(!turn.go(&c, Owner::Alive, t0));
        assert!(
            !turn.go(&c, Owner::Alive, t0 + grace / 2),
            "still its owner's"
        );
        assert!(
            turn.go(&c, Owner::Alive, t0 + grace),
            "anyone's after the grace"
        );
        // Its launcher went away meanwhile: anyone's at once.
        let d = NodeId::from("0000000004");
        assert!(!turn.go(&d, Owner::Alive, t0));
        assert!(turn.go(&d, Owner::Gone, t0 + Duration::from_millis(1)));
        assert_eq!(turn.waiting(), 1, "only c waits");
        // A node that stops being a candidate starts over when it is one again.
        turn.keep_only(&HashSet::new());
        assert_eq!(turn.waiting(), 0);
        assert!(!turn.go(&c, Owner::Alive, t0 + grace * 3));
    }
}
