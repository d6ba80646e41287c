//! The StatsWorker: one launcher of the whole system — the winner of the
//! election at `/nodepool/elections/stats`, shared with Python launchers — emits the
//! node gauges, so that they are not reported twice.
//!
//! The leader emits, on node/request/component cache changes but at most once per
//! [`Intervals::stats`]:
//! * `nodepool.nodes.<state>` for all 11 states (zeros included);
//! * `nodepool.provider.<p>.nodes.<state>` for the providers of all registered pools and
//!   of all nodes;
//! * `nodepool.label.<l>.nodes.<state>` for the labels of all registered pools and of
//!   all nodes (a node counts once per label in its `type`);
//! * `nodepool.provider.<p>.pool.<pool>.addressable_requests`: requests whose labels are
//!   all served by that pool.
//!
//! Leadership lost with the ZooKeeper session stops the emitting; the worker then
//! campaigns again.
//!
//! [`Intervals::stats`]: super::runtime::Intervals::stats

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use nodepool_shared::model::{paths, ComponentKind, NodeState};
use nodepool_shared::stats::names;
use nodepool_shared::zk::cache::NodeCounts;
use nodepool_shared::zk::{CacheKind, Election, ZkError};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::runtime::LauncherContext;

/// Task name in the state dump.
pub const TASK: &str = "StatsWorker";

/// The gauges of one pass, by key (sorted, for tests and logs).
pub fn gauges(ctx: &LauncherContext) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut providers = BTreeSet::new();
    let mut labels = BTreeSet::new();
    let pools = ctx.cache.components(ComponentKind::Pool);
    for c in &pools {
        let Some(pool) = &c.component.pool else {
            continue;
        };
        if let Some(p) = &pool.provider_name {
            providers.insert(p.clone());
        }
        labels.extend(pool.supported_labels.iter().cloned());
    }
    for state in NodeState::ALL {
        out.insert(names::nodes(state), 0);
    }
    let zero = |out: &mut BTreeMap<String, u64>, key: &dyn Fn(NodeState) -> String| {
        for state in NodeState::ALL {
            out.entry(key(state)).or_insert(0);
        }
    };
    for p in &providers {
        zero(&mut out, &|s| names::provider_nodes(p, s));
    }
    for l in &labels {
        zero(&mut out, &|s| names::label_nodes(l, s));
    }
    // Counted by the cache as nodes change (no node scan per pass).
    let NodeCounts {
        all,
        by_provider,
        by_label,
        ..
    } = ctx.cache.node_counts();
    let mut add = |key: String, v: u64| *out.entry(key).or_insert(0) += v;
    for (i, st) in NodeState::ALL.into_iter().enumerate() {
        add(names::nodes(st), all[i]);
        for (p, c) in &by_provider {
            if c[i] > 0 {
                add(names::provider_nodes(p, st), c[i]);
            }
        }
        for (l, c) in &by_label {
            if c[i] > 0 {
                add(names::label_nodes(l, st), c[i]);
            }
        }
    }
    // The requests grouped by their labels first: each pool then looks at a few label
    // lists instead of every request (60 pools × 5,000 requests per pass at scale).
    let mut label_lists: HashMap<&[String], u64> = HashMap::new();
    let requests = ctx.cache.requests();
    for r in &requests {
        *label_lists.entry(&r.request.node_types).or_default() += 1;
    }
    for c in &pools {
        let Some(pool) = &c.component.pool else {
            continue;
        };
        let (Some(provider), Some(name)) = (&pool.provider_name, &pool.name) else {
            continue;
        };
        let served: BTreeSet<&String> = pool.supported_labels.iter().collect();
        let count = label_lists
            .iter()
            .filter(|(labels, _)| labels.iter().all(|t| served.contains(t)))
            .map(|(_, n)| n)
            .sum();
        // Two workers of the same pool (two launchers) report the same number.
        out.insert(names::addressable_requests(provider, name), count);
    }
    out
}

/// Emits one pass of gauges and flushes. Returns how many were sent.
pub fn emit_gauges(ctx: &LauncherContext) -> usize {
    let g = gauges(ctx);
    for (k, v) in &g {
        ctx.statsd.gauge(k, *v);
    }
    ctx.statsd.flush();
    g.len()
}

/// True for cache events that change the gauges.
fn relevant(kind: CacheKind) -> bool {
    matches!(
        kind,
        CacheKind::Node | CacheKind::Request | CacheKind::Component | CacheKind::Tree
    )
}

/// What the leader does until `token` fires: emit at once, then on relevant cache
/// changes, at most once per `intervals.stats`.
async fn lead(ctx: &LauncherContext, token: CancellationToken) {
    let mut events = ctx.cache.subscribe();
    let mut passes: u64 = 0;
    let mut dirty = true;
    let mut last: Option<Instant> = None;
    loop {
        if dirty {
            if let Some(at) = last {
                let next = at + ctx.intervals.stats;
                if Instant::now() < next {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tokio::time::sleep_until(next) => {}
                    }
                }
            }
            // Coalesce whatever arrived meanwhile.
            while let Ok(_) | Err(TryRecvError::Lagged(_)) = events.try_recv() {}
            let n = emit_gauges(ctx);
            passes += 1;
            last = Some(Instant::now());
            ctx.set_task_state(TASK, format!("leader; {passes} passes, last {n} gauges"));
        }
        tokio::select! {
            _ = token.cancelled() => return,
            ev = events.recv() => match ev {
                Ok(e) => dirty = relevant(e.kind),
                Err(RecvError::Lagged(_)) => dirty = true,
                Err(RecvError::Closed) => {
                    token.cancelled().await;
                    return;
                }
            },
        }
    }
}

/// Campaigns in the stats election and emits gauges while leading, until `ctx.cancel`
/// fires. Leadership lost with the session → stop emitting, campaign again.
pub async fn run(ctx: Arc<LauncherContext>) {
    let mut election = Election::new(ctx.store.client(), paths::STATS_ELECTION);
    loop {
        ctx.set_task_state(TASK, "campaigning");
        let c = ctx.clone();
        let r = election
            .run(&ctx.cancel, |token| {
                let c = c.clone();
                async move {
                    debug!("stats leader");
                    lead(&c, token).await;
                    // Election::run resigns and campaigns again (or returns on shutdown).
                    c.set_task_state(TASK, "campaigning");
                }
            })
            .await;
        match r {
            Ok(()) | Err(ZkError::Closed) => break,
            Err(e) => {
                warn!("stats election: {e}; campaigning again");
                tokio::select! {
                    _ = ctx.cancel.cancelled() => break,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        }
    }
    if election.is_leader() {
        let _ = election.resign().await;
    }
    ctx.set_task_state(TASK, "stopped");
}
