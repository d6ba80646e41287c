//! Requests and labels: requests waiting for more than 10 minutes, requests every pool
//! but one declined, labels below `min-ready` for more than 10 minutes.

use std::collections::BTreeSet;

use super::created;
use crate::diagnostics::trackers::ready_unallocated_counts;
use crate::diagnostics::{
    format_duration, Inputs, Problem, ProblemKind, RecordKey, Severity, BELOW_MIN_READY_LIMIT,
    MIN_READY_REQUESTOR, REQUEST_WAIT_LIMIT,
};
use crate::model::{NodeRequest, RequestState};
use crate::zk::CachedRequest;

/// Appends the request and label problems.
pub fn check(i: &Inputs<'_>, out: &mut Vec<Problem>) {
    for r in &i.snapshot.requests {
        if matches!(
            r.request.state,
            RequestState::Requested | RequestState::Pending
        ) {
            waiting(i, r, out);
            one_pool_left(i, r, out);
        }
    }
    below_min_ready(i, out);
}

/// Pool worker ids of the registered pools that serve every label of `r`.
fn eligible_pools(i: &Inputs<'_>, r: &NodeRequest) -> Vec<String> {
    i.snapshot
        .components
        .iter()
        .filter_map(|c| c.component.pool.as_ref())
        .filter(|p| {
            r.node_types
                .iter()
                .all(|l| p.supported_labels.iter().any(|s| s == l))
        })
        .filter_map(|p| p.id.clone())
        .collect()
}

fn waiting(i: &Inputs<'_>, r: &CachedRequest, out: &mut Vec<Problem>) {
    let req = &r.request;
    let since = created(r);
    let age = i.now - since;
    if age <= REQUEST_WAIT_LIMIT {
        return;
    }
    let served = !eligible_pools(i, req).is_empty();
    let note = if served {
        String::new()
    } else {
        "; no registered pool serves all its labels".to_string()
    };
    out.push(
        Problem::new(
            Severity::Warning,
            ProblemKind::RequestWaitingTooLong,
            format!(
                "request {} ({}) from {} waits for {} (state {}, declined by {}){note}",
                req.id,
                req.node_types.join(","),
                req.requestor.as_deref().unwrap_or("unknown"),
                format_duration(age),
                req.state,
                req.declined_by.len(),
            ),
            vec![RecordKey::Request(req.id.clone())],
            "Check that a pool serves its labels and has room (max-servers, quota, paused pools); see the launchers' logs for the request.",
        )
        .since(since),
    );
}

fn one_pool_left(i: &Inputs<'_>, r: &CachedRequest, out: &mut Vec<Problem>) {
    let req = &r.request;
    if req.declined_by.is_empty() {
        return;
    }
    let eligible = eligible_pools(i, req);
    let declined: BTreeSet<&str> = req.declined_by.iter().map(String::as_str).collect();
    let left: Vec<&String> = eligible
        .iter()
        .filter(|p| !declined.contains(p.as_str()))
        .collect();
    if eligible.len() < 2 || left.len() != 1 {
        return;
    }
    out.push(
        Problem::new(
            Severity::Warning,
            ProblemKind::RequestOnePoolLeft,
            format!(
                "request {} ({}) was declined by {} of the {} pools that serve its labels; only {} can still fulfil it",
                req.id,
                req.node_types.join(","),
                eligible.len() - 1,
                eligible.len(),
                left[0]
            ),
            vec![RecordKey::Request(req.id.clone())],
            "If that pool declines too, the request fails: check why the others declined (launcher logs: image missing, label too large, launch failures).",
        )
        .since(req.state_time),
    );
}

/// Since when `label` is short: the tracker's time and the oldest open min-ready
/// request for it, whichever is earlier.
fn short_since(i: &Inputs<'_>, label: &str) -> Option<f64> {
    let tracked = i.below_min_ready.and_then(|m| m.get(label).copied());
    let requested = i
        .snapshot
        .requests
        .iter()
        .filter(|r| {
            r.request.requestor.as_deref() == Some(MIN_READY_REQUESTOR)
                && matches!(
                    r.request.state,
                    RequestState::Requested | RequestState::Pending
                )
                && r.request.node_types.iter().any(|l| l == label)
        })
        .map(|r| created(r))
        .min_by(f64::total_cmp);
    match (tracked, requested) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn below_min_ready(i: &Inputs<'_>, out: &mut Vec<Problem>) {
    let wanted: Vec<&str> = i
        .config
        .labels
        .iter()
        .filter(|(_, m)| *m > 0)
        .map(|(l, _)| l.as_str())
        .collect();
    if wanted.is_empty() {
        return;
    }
    // One pass over the nodes for every label.
    let ready = ready_unallocated_counts(i.snapshot, &wanted);
    for (label, min) in &i.config.labels {
        if *min == 0 {
            continue;
        }
        let ready = ready.get(label.as_str()).copied().unwrap_or(0);
        if ready >= *min as usize {
            continue;
        }
        let Some(since) = short_since(i, label) else {
            continue;
        };
        let age = i.now - since;
        if age <= BELOW_MIN_READY_LIMIT {
            continue;
        }
        out.push(
            Problem::new(
                Severity::Warning,
                ProblemKind::LabelBelowMinReady,
                format!(
                    "label {label} has {ready} of its min-ready {min} nodes ready, for {}",
                    format_duration(age)
                ),
                vec![RecordKey::Label(label.clone())],
                "The launchers should be launching nodes for it: check the pools that serve it (paused, at max-servers, launch failures, image missing).",
            )
            .since(since),
        );
    }
}
