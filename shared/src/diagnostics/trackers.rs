//! What one snapshot cannot tell, kept across snapshots by a long-running observer (the
//! console): since when each label has been below its `min-ready`.

use std::collections::BTreeMap;

use super::facts::ConfigFacts;
use super::snapshot::Snapshot;
use crate::model::NodeState;

/// `ready`, unallocated nodes of `label` (what `min-ready` counts).
pub fn ready_unallocated(snap: &Snapshot, label: &str) -> usize {
    snap.nodes
        .iter()
        .filter(|n| {
            n.node.state() == NodeState::Ready
                && n.node.allocated_to().is_none()
                && n.node.has_label(label)
        })
        .count()
}

/// [`ready_unallocated`] of each of `labels`, in one pass over the nodes.
pub fn ready_unallocated_counts<'a>(
    snap: &Snapshot,
    labels: &[&'a str],
) -> BTreeMap<&'a str, usize> {
    let mut counts: BTreeMap<&'a str, usize> = labels.iter().map(|l| (*l, 0)).collect();
    for n in &snap.nodes {
        if n.node.state() != NodeState::Ready || n.node.allocated_to().is_some() {
            continue;
        }
        for l in n.node.labels() {
            if let Some(c) = counts.get_mut(l) {
                *c += 1;
            }
        }
    }
    counts
}

/// Since when each label with a `min-ready` has had fewer ready nodes than that.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BelowMinReady {
    since: BTreeMap<String, f64>,
}

impl BelowMinReady {
    /// Nothing observed yet.
    pub fn new() -> BelowMinReady {
        BelowMinReady::default()
    }

    /// Takes one snapshot into account: a label short now keeps (or starts) its time; a
    /// label with enough ready nodes is forgotten.
    pub fn observe(&mut self, snap: &Snapshot, config: &ConfigFacts, now: f64) {
        let wanted = Self::wanted(config);
        let counts = ready_unallocated_counts(snap, &wanted);
        self.observe_counts(|l| counts.get(l).copied().unwrap_or(0), config, now);
    }

    /// The labels with a `min-ready`.
    fn wanted(config: &ConfigFacts) -> Vec<&str> {
        config
            .labels
            .iter()
            .filter(|(_, m)| *m > 0)
            .map(|(l, _)| l.as_str())
            .collect()
    }

    /// As [`BelowMinReady::observe`], with the ready unallocated nodes per label
    /// counted by the caller (a console that keeps the counts by deltas).
    pub fn observe_counts(
        &mut self,
        ready: impl Fn(&str) -> usize,
        config: &ConfigFacts,
        now: f64,
    ) {
        let mut since = BTreeMap::new();
        for label in Self::wanted(config) {
            let min = config.min_ready(label).unwrap_or(0) as usize;
            if ready(label) < min {
                let t = self.since.get(label).copied().unwrap_or(now);
                since.insert(label.to_string(), t);
            }
        }
        self.since = since;
    }

    /// Label → since when it is short.
    pub fn since(&self) -> &BTreeMap<String, f64> {
        &self.since
    }
}
