//! Components and the tree itself: corrupt records, provider pools without a registered
//! pool worker, paused pool workers, launchers or builders of different versions.

use std::collections::{BTreeMap, BTreeSet};

use crate::diagnostics::{Inputs, Problem, ProblemKind, RecordKey, Severity};
use crate::model::{ComponentKind, NodeState};

/// Appends the component problems.
pub fn check(i: &Inputs<'_>, out: &mut Vec<Problem>) {
    corrupt(i, out);
    pools_without_worker(i, out);
    paused_pools(i, out);
    versions(i, out);
}

fn corrupt(i: &Inputs<'_>, out: &mut Vec<Problem>) {
    for path in &i.snapshot.corrupt {
        out.push(Problem::new(
            Severity::Error,
            ProblemKind::CorruptRecord,
            format!("{path} holds data no reader understands; every reader skips it"),
            vec![RecordKey::Znode(path.clone())],
            "Look at it (`zkCli.sh get PATH`), then repair or delete the znode.",
        ));
    }
}

/// (provider, pool) of every registered pool worker.
fn registered(i: &Inputs<'_>) -> BTreeSet<(String, String)> {
    i.snapshot
        .components
        .iter()
        .filter_map(|c| c.component.pool.as_ref())
        .map(|p| {
            (
                p.provider_name.clone().unwrap_or_default(),
                p.name.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn pools_without_worker(i: &Inputs<'_>, out: &mut Vec<Problem>) {
    let have = registered(i);
    if i.config.loaded {
        for p in &i.config.providers {
            for pool in &p.pools {
                if have.contains(&(p.name.clone(), pool.name.clone())) {
                    continue;
                }
                out.push(Problem::new(
                    Severity::Error,
                    ProblemKind::ProviderWithoutPoolWorker,
                    format!(
                        "pool {}/{} of the config has no registered pool worker: nobody launches its nodes",
                        p.name, pool.name
                    ),
                    vec![
                        RecordKey::Pool(p.name.clone(), pool.name.clone()),
                        RecordKey::Provider(p.name.clone()),
                    ],
                    "Start (or check) a nodepool-launcher whose config has this provider; it registers one pool worker per pool.",
                ));
            }
        }
        return;
    }
    // Without a config: providers that still have live nodes but no pool worker at all.
    let providers: BTreeSet<&str> = have.iter().map(|(p, _)| p.as_str()).collect();
    let mut orphans: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &i.snapshot.nodes {
        if matches!(n.node.state(), NodeState::Deleted) {
            continue;
        }
        if let Some(p) = n.node.provider() {
            if !providers.contains(p) {
                *orphans.entry(p).or_default() += 1;
            }
        }
    }
    for (p, count) in orphans {
        out.push(Problem::new(
            Severity::Warning,
            ProblemKind::ProviderWithoutPoolWorker,
            format!("provider {p} has {count} node(s) but no registered pool worker"),
            vec![RecordKey::Provider(p.to_string())],
            "Start (or check) the launcher of this provider; if the provider was removed, see `nodepool erase`.",
        ));
    }
}

fn paused_pools(i: &Inputs<'_>, out: &mut Vec<Problem>) {
    for c in &i.snapshot.components {
        let Some(p) = c.component.pool.as_ref().filter(|p| p.paused) else {
            continue;
        };
        let provider = p.provider_name.clone().unwrap_or_default();
        let pool = p.name.clone().unwrap_or_default();
        out.push(
            Problem::new(
                Severity::Warning,
                ProblemKind::PoolPaused,
                format!(
                    "pool worker {provider}/{pool} is paused: it waits for room for a request it accepted, and takes no new ones"
                ),
                vec![
                    RecordKey::Component(c.component.kind, c.name.clone()),
                    RecordKey::Pool(provider, pool),
                ],
                "Check the cloud quota and max-servers of the pool, and nodes stuck in deleting.",
            )
            .since(c.stat.mtime as f64 / 1000.0),
        );
    }
}

fn versions(i: &Inputs<'_>, out: &mut Vec<Problem>) {
    let mut by_version: BTreeMap<String, Vec<&crate::zk::CachedComponent>> = BTreeMap::new();
    for c in &i.snapshot.components {
        if matches!(
            c.component.kind,
            ComponentKind::Launcher | ComponentKind::Builder
        ) {
            let v = c
                .component
                .version
                .clone()
                .unwrap_or_else(|| "unknown".into());
            by_version.entry(v).or_default().push(c);
        }
    }
    if by_version.len() < 2 {
        return;
    }
    let text: Vec<String> = by_version
        .iter()
        .map(|(v, cs)| {
            let hosts: Vec<String> = cs
                .iter()
                .map(|c| format!("{} {}", c.component.kind, c.component.hostname))
                .collect();
            format!("{v} ({})", hosts.join(", "))
        })
        .collect();
    let records = by_version
        .values()
        .flatten()
        .map(|c| RecordKey::Component(c.component.kind, c.name.clone()))
        .collect();
    out.push(Problem::new(
        Severity::Warning,
        ProblemKind::VersionMismatch,
        format!(
            "launchers and builders run different versions: {}",
            text.join("; ")
        ),
        records,
        "Upgrade every launcher and builder to the same version.",
    ));
}
