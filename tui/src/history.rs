//! What the console remembers since it started, from the cache's change stream: node
//! counts by state and waiting requests in 10-second buckets over the last 30 minutes
//! (the Overview's sparklines and trends), launch failures of the last hour by provider
//! and reason, failed builds since each image's last good one, and since when each
//! label is below `min-ready` (for the Problems view). Fed by every new snapshot and by
//! the clock; pure.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use nodepool_shared::diagnostics::BelowMinReady;
use nodepool_shared::model::{BuildId, BuildState, CompactNode, NodeId, NodeState, RequestState};

use nodepool_shared::zk::CachedNode;

use crate::data::{ConfigInfo, Snapshot};
use crate::tally::NodeTally;

/// Seconds per sample.
pub const BUCKET_SECONDS: f64 = 10.0;
/// Samples kept: 30 minutes.
pub const BUCKETS: usize = 180;
/// Launch failures older than this are forgotten.
pub const FAILURE_WINDOW: f64 = 3600.0;
/// A label's trend compares its waiting requests with this long ago.
pub const TREND_SECONDS: f64 = 300.0;

/// Node states the sparklines follow, in display order.
pub const SERIES: [&str; 4] = ["ready", "in-use", "building", "deleting"];

/// Counts at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Start of the bucket (epoch seconds).
    pub t: f64,
    /// Nodes per state of [`SERIES`].
    pub nodes: [u32; 4],
    /// Open (requested or pending) requests.
    pub waiting: u32,
    /// Open requests per label.
    pub waiting_by_label: BTreeMap<String, u32>,
}

/// Why a launch failed, as far as the failed node record tells.
pub fn failure_reason(n: &CompactNode) -> &'static str {
    if n.state() == NodeState::Aborted {
        "quota"
    } else if n.external_id().is_none() {
        "create"
    } else if n.interface_ip().is_none() && n.public_ipv4().is_none() && n.private_ipv4().is_none()
    {
        "boot"
    } else if n.host_keys().len() == 0 {
        "ssh"
    } else {
        "other"
    }
}

/// One failed launch.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// Provider of the node.
    pub provider: String,
    /// [`failure_reason`].
    pub reason: &'static str,
    /// When it failed.
    pub at: f64,
}

/// Everything remembered.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Since when (console start).
    pub started: f64,
    samples: VecDeque<Sample>,
    failures: BTreeMap<NodeId, Failure>,
    failed_builds: BTreeMap<String, BTreeSet<BuildId>>,
    below_min_ready: BelowMinReady,
}

fn counts(snap: &Snapshot, tally: &NodeTally, t: f64) -> Sample {
    let mut s = Sample {
        t,
        nodes: tally.series,
        ..Sample::default()
    };
    for r in &snap.requests {
        if matches!(
            r.request.state,
            RequestState::Requested | RequestState::Pending
        ) {
            s.waiting += 1;
            let labels: BTreeSet<&String> = r.request.node_types.iter().collect();
            for l in labels {
                *s.waiting_by_label.entry(l.clone()).or_default() += 1;
            }
        }
    }
    s
}

fn bucket(t: f64) -> f64 {
    (t / BUCKET_SECONDS).floor() * BUCKET_SECONDS
}

impl History {
    /// Nothing seen yet; the console started at `now`.
    pub fn new(now: f64) -> History {
        History {
            started: now,
            ..History::default()
        }
    }

    /// Takes a new snapshot into account (counting its nodes from scratch).
    pub fn observe(&mut self, snap: &Snapshot, cfg: &ConfigInfo, now: f64) {
        let tally = NodeTally::of(&snap.nodes);
        self.observe_changes(snap, cfg, now, &tally, &snap.nodes);
    }

    /// Takes a new snapshot into account, with its nodes counted in `tally` and
    /// `changed` the nodes that are new or changed since the previous snapshot (only
    /// they can be new launch failures): no pass over every node.
    pub fn observe_changes<'a>(
        &mut self,
        snap: &Snapshot,
        cfg: &ConfigInfo,
        now: f64,
        tally: &NodeTally,
        changed: impl IntoIterator<Item = &'a Arc<CachedNode>>,
    ) {
        let sample = counts(snap, tally, bucket(now));
        match self.samples.back_mut() {
            Some(last) if last.t == sample.t => *last = sample,
            _ => self.samples.push_back(sample),
        }
        self.advance(now);
        self.observe_failures(changed, now);
        self.observe_builds(snap);
        self.below_min_ready.observe_counts(
            |l| tally.ready_by_label.get(l).copied().unwrap_or(0),
            cfg,
            now,
        );
    }

    /// The clock moved: empty buckets repeat the last counts; old ones are dropped.
    pub fn advance(&mut self, now: f64) {
        let current = bucket(now);
        // After a long pause (a suspended laptop) only the last 30 minutes matter.
        if let Some(last) = self.samples.back_mut() {
            let oldest = current - BUCKETS as f64 * BUCKET_SECONDS;
            if last.t < oldest {
                last.t = oldest;
            }
        }
        while let Some(last) = self.samples.back() {
            if last.t + BUCKET_SECONDS > current {
                break;
            }
            let mut next = last.clone();
            next.t = last.t + BUCKET_SECONDS;
            self.samples.push_back(next);
        }
        while self.samples.len() > BUCKETS {
            self.samples.pop_front();
        }
        self.failures.retain(|_, f| now - f.at <= FAILURE_WINDOW);
    }

    fn observe_failures<'a>(
        &mut self,
        nodes: impl IntoIterator<Item = &'a Arc<CachedNode>>,
        now: f64,
    ) {
        for n in nodes {
            let node = &n.node;
            if !matches!(node.state(), NodeState::Failed | NodeState::Aborted)
                || self.failures.contains_key(node.id())
                || now - node.state_time() > FAILURE_WINDOW
            {
                continue;
            }
            self.failures.insert(
                node.id().clone(),
                Failure {
                    provider: node.provider().unwrap_or_default().to_string(),
                    reason: failure_reason(node),
                    at: node.state_time(),
                },
            );
        }
    }

    fn observe_builds(&mut self, snap: &Snapshot) {
        let mut newest_ready: BTreeMap<&str, f64> = BTreeMap::new();
        for b in &snap.builds {
            if b.build.state == BuildState::Ready {
                let t = newest_ready.entry(b.build.image.as_str()).or_insert(0.0);
                *t = t.max(b.build.state_time);
            }
        }
        for b in &snap.builds {
            let image = b.build.image.as_str();
            if b.build.state == BuildState::Failed
                && newest_ready
                    .get(image)
                    .is_none_or(|t| b.build.state_time > *t)
            {
                self.failed_builds
                    .entry(image.to_string())
                    .or_default()
                    .insert(b.build.id.clone());
            }
        }
        // A ready build newer than the failures ends the streak.
        for (image, t) in newest_ready {
            let newer_failure = snap.builds.iter().any(|b| {
                b.build.image == image
                    && b.build.state == BuildState::Failed
                    && b.build.state_time > t
            });
            if !newer_failure {
                self.failed_builds.remove(image);
            }
        }
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> &VecDeque<Sample> {
        &self.samples
    }

    /// Launch failures of the last hour of `provider`, per reason.
    pub fn failures(&self, provider: &str) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for f in self.failures.values().filter(|f| f.provider == provider) {
            *out.entry(f.reason).or_default() += 1;
        }
        out
    }

    /// Failed builds of `image` seen since its last ready build.
    pub fn failed_builds(&self, image: &str) -> usize {
        self.failed_builds.get(image).map_or(0, BTreeSet::len)
    }

    /// Since when each label is below `min-ready`.
    pub fn below_min_ready(&self) -> &BTreeMap<String, f64> {
        self.below_min_ready.since()
    }

    /// Open requests of `label` about [`TREND_SECONDS`] ago; `None` while the console
    /// remembers less than that.
    pub fn waiting_before(&self, label: &str, now: f64) -> Option<u32> {
        let target = now - TREND_SECONDS;
        let s = self.samples.iter().rev().find(|s| s.t <= target)?;
        Some(s.waiting_by_label.get(label).copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodepool_shared::model::Node;

    fn failure_reason(n: &Node) -> &'static str {
        super::failure_reason(&CompactNode::from(n.clone()))
    }

    #[test]
    fn reasons_from_the_record() {
        let mut n = Node::new();
        n.state = NodeState::Aborted;
        assert_eq!(failure_reason(&n), "quota");
        n.state = NodeState::Failed;
        assert_eq!(failure_reason(&n), "create");
        n.external_id = Some("srv".into());
        assert_eq!(failure_reason(&n), "boot");
        n.interface_ip = Some("192.0.2.1".into());
        assert_eq!(failure_reason(&n), "ssh");
        n.host_keys = vec!["ssh-ed25519 AAAA".into()];
        assert_eq!(failure_reason(&n), "other");
    }

    #[test]
    fn buckets_fill_gaps_and_keep_thirty_minutes() {
        let mut h = History::new(1000.0);
        let snap = Snapshot::default();
        h.observe(&snap, &ConfigInfo::default(), 1000.0);
        h.advance(1055.0);
        assert_eq!(h.samples().len(), 6);
        h.advance(1000.0 + 3600.0);
        assert_eq!(h.samples().len(), BUCKETS);
        assert_eq!(h.samples().back().unwrap().t, 4600.0);
    }
}
