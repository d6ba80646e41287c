//! Nodes and locks: nodes `building` longer than a launch may take, `deleting` for more
//! than 10 minutes, `ready` but allocated to a request that is gone; lock contenders no
//! session owns.

use crate::diagnostics::locks::contenders;
use crate::diagnostics::{
    format_duration, Inputs, Problem, ProblemKind, RecordKey, Severity, DEFAULT_ATTEMPT_LIMIT,
    DEFAULT_LAUNCH_RETRIES, DELETING_LIMIT, VANISHED_REQUEST_GRACE,
};
use crate::model::{NodeState, RequestId};
use crate::zk::CachedNode;

/// Appends the node and lock problems.
pub fn check(i: &Inputs<'_>, out: &mut Vec<Problem>) {
    for n in &i.snapshot.nodes {
        match n.node.state() {
            NodeState::Init | NodeState::Building => building(i, n, out),
            NodeState::Deleting => deleting(i, n, out),
            NodeState::Ready => vanished_request(i, n, out),
            _ => {}
        }
    }
    locks(i, out);
}

/// (longest one attempt may take, attempts) for the node's provider.
fn launch_limits(i: &Inputs<'_>, n: &CachedNode) -> (f64, u32, String) {
    let provider = n.node.provider().unwrap_or_default();
    match i.config.provider(provider) {
        Some(p) => (
            p.attempt_limit().as_secs_f64(),
            p.launch_retries.max(1),
            format!(
                "launch-timeout {} + boot-timeout {} of {provider}",
                format_duration(p.launch_timeout.as_secs_f64()),
                format_duration(p.boot_timeout.as_secs_f64())
            ),
        ),
        None => (
            DEFAULT_ATTEMPT_LIMIT,
            DEFAULT_LAUNCH_RETRIES,
            "the default launch-timeout 1h + boot-timeout 1m".to_string(),
        ),
    }
}

fn building(i: &Inputs<'_>, n: &CachedNode, out: &mut Vec<Problem>) {
    let age = i.now - n.node.state_time();
    let (attempt, retries, limits) = launch_limits(i, n);
    if age <= attempt {
        return;
    }
    let id = n.node.id();
    let (severity, why) = if age > attempt * f64::from(retries) {
        (
            Severity::Error,
            format!("longer than all {retries} launch attempts may take ({limits} each): its launcher has lost it"),
        )
    } else {
        (
            Severity::Warning,
            format!("longer than one launch attempt may take ({limits}); a retry may be running"),
        )
    };
    out.push(
        Problem::new(
            severity,
            ProblemKind::NodeBuildingTooLong,
            format!(
                "node {id} ({}) is {} for {}, {why}",
                n.node.provider().unwrap_or("no provider"),
                n.node.state(),
                format_duration(age)
            ),
            vec![RecordKey::Node(id.clone())],
            format!(
                "Look for node {id} in the launcher's log; `nodepool delete {id}` has the launcher remove it and its server."
            ),
        )
        .since(n.node.state_time()),
    );
}

fn deleting(i: &Inputs<'_>, n: &CachedNode, out: &mut Vec<Problem>) {
    let age = i.now - n.node.state_time();
    if age <= DELETING_LIMIT {
        return;
    }
    let id = n.node.id();
    let server = n.node.external_id().unwrap_or("none");
    out.push(
        Problem::new(
            Severity::Warning,
            ProblemKind::NodeDeletingTooLong,
            format!(
                "node {id} ({}, server {server}) is deleting for {}",
                n.node.provider().unwrap_or("no provider"),
                format_duration(age)
            ),
            vec![RecordKey::Node(id.clone())],
            format!(
                "The launcher retries the delete: check its log and the server in the cloud; if the server is gone, `nodepool delete --now {id}`."
            ),
        )
        .since(n.node.state_time()),
    );
}

fn vanished_request(i: &Inputs<'_>, n: &CachedNode, out: &mut Vec<Problem>) {
    let Some(req) = n.node.allocated_to() else {
        return;
    };
    if i.snapshot.request(&RequestId::from(req)).is_some() || n.probably_locked() {
        return;
    }
    let age = i.now - n.node.state_time();
    if age <= VANISHED_REQUEST_GRACE {
        return;
    }
    let id = n.node.id();
    out.push(
        Problem::new(
            Severity::Warning,
            ProblemKind::ReadyNodeOfVanishedRequest,
            format!(
                "ready node {id} is allocated to request {req}, which no longer exists; nobody else can use it"
            ),
            vec![RecordKey::Node(id.clone())],
            format!(
                "The launcher's cleanup frees such nodes within a minute: check that it runs (launcher log); `nodepool delete {id}` removes the node."
            ),
        )
        .since(n.node.state_time()),
    );
}

fn locks(i: &Inputs<'_>, out: &mut Vec<Problem>) {
    let Some(owners) = i.lock_owners else {
        return;
    };
    for (record, path) in contenders(i.snapshot) {
        if owners.get(&path) != Some(&0) {
            continue;
        }
        out.push(Problem::new(
            Severity::Error,
            ProblemKind::LockWithoutSession,
            format!(
                "{} is locked by {path}, a persistent znode no ZooKeeper session owns: it is never released",
                record.describe()
            ),
            vec![record, RecordKey::Znode(path)],
            "Make sure nobody works on the record, then delete the contender znode (`zkCli.sh delete PATH`).",
        ));
    }
}
