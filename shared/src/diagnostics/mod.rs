//! Diagnostics: what is wrong in a running Nodepool, found in the cached state.
//!
//! An operator asking "why do my jobs wait?" has to look at nodes, requests, builds,
//! uploads and components at once and know which combinations are abnormal. The
//! inspections here do that: they look at one [`Snapshot`] of the tree cache, compare it
//! with what the configuration promises ([`ConfigFacts`]) and, when known, with the
//! ZooKeeper sessions behind the lock contenders ([`locks`]), and return the anomalies
//! as [`Problem`]s — each with a [`Severity`], the records involved and a suggested
//! action. `nodepool doctor` prints them; the console's Problems view lists them and
//! jumps to their records.
//!
//! Everything but [`locks::read_owners`] is pure (state in, problems out), so each
//! check is tested with hand-made records, and end to end by planting every anomaly in
//! a real ZooKeeper (`daemon/tests/cli.rs`).
//!
//! * [`snapshot`]: the records at one moment, [`RecordKey`].
//! * [`facts`]: the numbers taken from `nodepool.yaml`.
//! * [`problem`]: [`Problem`], the report and the exit status.
//! * [`locks`]: who owns the lock contenders (the only ZooKeeper reads).
//! * [`trackers`]: what one snapshot cannot tell (how long a label has been short).
//! * `checks`: the inspections, one module per kind of record.

mod checks;
pub mod facts;
pub mod locks;
pub mod problem;
pub mod snapshot;
pub mod trackers;

use std::collections::BTreeMap;

pub use checks::images::failing_streak;
pub use facts::{ConfigFacts, ImageFacts, PoolFacts, ProviderFacts};
pub use locks::LockOwners;
pub use problem::{
    exit_status, render_json, render_text, sort_problems, summary_line, Problem, ProblemKind,
    Severity,
};
pub use snapshot::{RecordKey, Snapshot};
pub use trackers::BelowMinReady;

/// A node `deleting` for longer than this is reported.
pub const DELETING_LIMIT: f64 = 600.0;
/// A request waiting for longer than this is reported.
pub const REQUEST_WAIT_LIMIT: f64 = 600.0;
/// A label below `min-ready` for longer than this is reported.
pub const BELOW_MIN_READY_LIMIT: f64 = 600.0;
/// A ready node may stay allocated to a deleted request this long: Zuul deletes the
/// request after locking the nodes and before using them, and the launcher's cleanup
/// frees a leftover within a minute.
pub const VANISHED_REQUEST_GRACE: f64 = 180.0;
/// The requestor of the launcher's own min-ready requests.
pub const MIN_READY_REQUESTOR: &str = "NodePool:min-ready";

/// Without a configuration: Nodepool's default `launch-timeout` + `boot-timeout`.
pub const DEFAULT_ATTEMPT_LIMIT: f64 = 3600.0 + 60.0;
/// Without a configuration: Nodepool's default `launch-retries`.
pub const DEFAULT_LAUNCH_RETRIES: u32 = 3;
/// Without a configuration: Nodepool's default `image-upload-timeout`.
pub const DEFAULT_UPLOAD_LIMIT: f64 = 3600.0;

/// What an inspection looks at.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The cached records.
    pub snapshot: &'a Snapshot,
    /// The configuration's promises.
    pub config: &'a ConfigFacts,
    /// The clock (float epoch seconds).
    pub now: f64,
    /// Owners of the lock contenders, when read ([`locks::read_owners`]); without them
    /// the lock check is skipped.
    pub lock_owners: Option<&'a LockOwners>,
    /// Since when each label has been seen below `min-ready` ([`BelowMinReady`]); without
    /// it a label counts as short since its oldest open min-ready request.
    pub below_min_ready: Option<&'a BTreeMap<String, f64>>,
}

impl<'a> Inputs<'a> {
    /// Inputs without lock owners and without history.
    pub fn new(snapshot: &'a Snapshot, config: &'a ConfigFacts, now: f64) -> Inputs<'a> {
        Inputs {
            snapshot,
            config,
            now,
            lock_owners: None,
            below_min_ready: None,
        }
    }
}

/// Runs every inspection; the problems come sorted ([`sort_problems`]).
pub fn inspect(inputs: &Inputs<'_>) -> Vec<Problem> {
    let mut out = Vec::new();
    checks::components::check(inputs, &mut out);
    checks::nodes::check(inputs, &mut out);
    checks::requests::check(inputs, &mut out);
    checks::images::check(inputs, &mut out);
    sort_problems(&mut out);
    out
}

/// A duration for messages: `45s`, `12m`, `3h5m`, `2d4h`.
pub fn format_duration(seconds: f64) -> String {
    let s = if seconds.is_finite() && seconds > 0.0 {
        seconds as u64
    } else {
        0
    };
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 if (s % 3600) / 60 == 0 => format!("{}h", s / 3600),
        3600..86_400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ if (s % 86_400) / 3600 == 0 => format!("{}d", s / 86_400),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Node, NodeId, NodeState};
    use crate::zk::CachedNode;
    use std::sync::Arc;

    const NOW: f64 = 1_700_000_000.0;

    fn node(seq: u64, state: NodeState, age: f64, provider: &str) -> Arc<CachedNode> {
        let mut n = Node::new();
        n.id = NodeId::from_sequence(seq);
        n.state = state;
        n.state_time = NOW - age;
        n.provider = Some(provider.into());
        n.node_type = vec!["small".into()];
        Arc::new(CachedNode {
            node: Arc::new(n.into()),
            stat: crate::zk::IN_MEMORY_STAT,
            lock_contenders: vec!["abc__lock__0000000000".into()],
        })
    }

    fn kinds(snap: &Snapshot, owners: Option<&LockOwners>) -> Vec<(ProblemKind, Severity)> {
        let cfg = ConfigFacts::default();
        let mut i = Inputs::new(snap, &cfg, NOW);
        i.lock_owners = owners;
        inspect(&i).iter().map(|p| (p.kind, p.severity)).collect()
    }

    /// The limits are "longer than": at the limit nothing is reported.
    #[test]
    fn limits_are_exclusive_and_severity_grows_with_the_attempts() {
        let at_limit = Snapshot {
            nodes: vec![
                node(1, NodeState::Deleting, DELETING_LIMIT, "p"),
                node(2, NodeState::Building, DEFAULT_ATTEMPT_LIMIT, "p"),
            ],
            ..Snapshot::default()
        };
        // Without a config, a provider with nodes and no pool worker is a warning.
        assert_eq!(
            kinds(&at_limit, None),
            [(ProblemKind::ProviderWithoutPoolWorker, Severity::Warning)]
        );
        let over = Snapshot {
            nodes: vec![
                node(1, NodeState::Deleting, DELETING_LIMIT + 1.0, "p"),
                node(2, NodeState::Building, DEFAULT_ATTEMPT_LIMIT + 1.0, "p"),
                node(
                    3,
                    NodeState::Building,
                    DEFAULT_ATTEMPT_LIMIT * f64::from(DEFAULT_LAUNCH_RETRIES) + 1.0,
                    "p",
                ),
            ],
            ..Snapshot::default()
        };
        let k = kinds(&over, None);
        assert!(k.contains(&(ProblemKind::NodeBuildingTooLong, Severity::Error)));
        assert!(k.contains(&(ProblemKind::NodeBuildingTooLong, Severity::Warning)));
        assert!(k.contains(&(ProblemKind::NodeDeletingTooLong, Severity::Warning)));
        assert_eq!(k[0].1, Severity::Error, "errors first: {k:?}");
    }

    /// Only a contender owned by no session (owner 0) is reported; without the owners
    /// the check is skipped.
    #[test]
    fn lock_check_needs_the_owners() {
        let snap = Snapshot {
            nodes: vec![node(1, NodeState::InUse, 10.0, "p")],
            ..Snapshot::default()
        };
        let path = "/nodepool/nodes/0000000001/lock/abc__lock__0000000000".to_string();
        let live: LockOwners = [(path.clone(), 0x1234)].into_iter().collect();
        let dead: LockOwners = [(path, 0)].into_iter().collect();
        let has = |k: &[(ProblemKind, Severity)]| {
            k.iter().any(|(k, _)| *k == ProblemKind::LockWithoutSession)
        };
        assert!(!has(&kinds(&snap, None)));
        assert!(!has(&kinds(&snap, Some(&live))));
        assert!(has(&kinds(&snap, Some(&dead))));
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(-3.0), "0s");
        assert_eq!(format_duration(45.9), "45s");
        assert_eq!(format_duration(720.0), "12m");
        assert_eq!(format_duration(3600.0), "1h");
        assert_eq!(format_duration(3600.0 + 300.0), "1h5m");
        assert_eq!(format_duration(2.0 * 86_400.0 + 4.0 * 3600.0), "2d4h");
        assert_eq!(format_duration(f64::NAN), "0s");
    }
}
