//! The Overview's model (view 0): per provider the nodes by state against `max-servers`
//! and the cloud quota, its pool workers and its launch failures of the last hour; per
//! label the ready nodes against `min-ready` and the waiting requests with a trend; per
//! image the age of its newest ready build against `rebuild-age`, failed builds in a row
//! and whether it is paused; and how many problems there are. Built once per change of
//! the data or tick of the clock (not per frame), from the node counts kept by deltas
//! ([`crate::tally`]), so neither a frame nor a rebuild looks at every node.

use std::collections::{BTreeMap, BTreeSet};

use nodepool_shared::diagnostics::{Problem, Severity};
use nodepool_shared::model::{BuildState, RequestState};

use crate::data::{ConfigInfo, Quota, Snapshot};
use crate::history::History;
use crate::tally::NodeTally;

/// Nodes of a provider by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// `in-use`.
    pub in_use: u32,
    /// `ready`.
    pub ready: u32,
    /// `init` or `building`.
    pub building: u32,
    /// `deleting`.
    pub deleting: u32,
    /// Any other state (hold, used, failed, …).
    pub other: u32,
}

impl StateCounts {
    /// Every node.
    pub fn total(&self) -> u32 {
        self.in_use + self.ready + self.building + self.deleting + self.other
    }
}

/// One provider line.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderLine {
    /// Name.
    pub name: String,
    /// Its nodes by state.
    pub nodes: StateCounts,
    /// Sum of its pools' `max-servers` (`None`: unknown or unlimited).
    pub max_servers: Option<i64>,
    /// The cloud's instance quota, when fetched.
    pub quota: Option<Quota>,
    /// Registered pool workers.
    pub pools_registered: usize,
    /// Pools in the config (`None` without a config).
    pub pools_configured: Option<usize>,
    /// Paused pool workers.
    pub pools_paused: usize,
    /// Launch failures of the last hour, per reason.
    pub failures: BTreeMap<&'static str, usize>,
}

/// Which way the waiting requests of a label go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trend {
    /// More than five minutes ago.
    Up,
    /// Fewer.
    Down,
    /// As many.
    Flat,
}

/// One label line.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelLine {
    /// Name.
    pub name: String,
    /// Ready, unallocated nodes (what `min-ready` counts).
    pub ready: usize,
    /// `min-ready` (`None` without a config or not a config label).
    pub min_ready: Option<u32>,
    /// Open requests for it.
    pub waiting: usize,
    /// Since when the oldest of them waits.
    pub oldest: Option<f64>,
    /// Compared with five minutes ago.
    pub trend: Option<Trend>,
}

/// One image line.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageLine {
    /// Name.
    pub name: String,
    /// When its newest ready build was made.
    pub newest_ready: Option<f64>,
    /// `rebuild-age` in seconds (`None` without a config).
    pub rebuild_age: Option<f64>,
    /// Failed builds since the last ready one.
    pub failing: usize,
    /// Paused (pause flag, or `pause: true` in the config).
    pub paused: bool,
    /// A build is running.
    pub building: bool,
}

/// The whole Overview.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OverviewModel {
    /// Whether a config was given.
    pub config_loaded: bool,
    /// Providers by name.
    pub providers: Vec<ProviderLine>,
    /// Labels by name.
    pub labels: Vec<LabelLine>,
    /// Images by name.
    pub images: Vec<ImageLine>,
    /// Problems: (errors, warnings, info).
    pub problems: (usize, usize, usize),
    /// Nodes in all.
    pub nodes: usize,
    /// Open requests in all.
    pub waiting: usize,
}

/// What the Overview is built from.
#[derive(Clone, Copy, Debug)]
pub struct Sources<'a> {
    /// The records.
    pub snapshot: &'a Snapshot,
    /// Their nodes counted (kept by deltas).
    pub tally: &'a NodeTally,
    /// Facts from the config.
    pub config: &'a ConfigInfo,
    /// What the console remembers.
    pub history: &'a History,
    /// Cloud quotas by provider.
    pub quotas: &'a BTreeMap<String, Quota>,
    /// The problems.
    pub problems: &'a [Problem],
    /// The clock.
    pub now: f64,
}

/// Builds the Overview.
pub fn build(s: &Sources<'_>) -> OverviewModel {
    let count = |sev: Severity| s.problems.iter().filter(|p| p.severity == sev).count();
    OverviewModel {
        config_loaded: s.config.loaded,
        providers: providers(s),
        labels: labels(s),
        images: images(s),
        problems: (
            count(Severity::Error),
            count(Severity::Warning),
            count(Severity::Info),
        ),
        nodes: s.snapshot.nodes.len(),
        waiting: s
            .snapshot
            .requests
            .iter()
            .filter(|r| is_open(r.request.state))
            .count(),
    }
}

fn is_open(state: RequestState) -> bool {
    matches!(state, RequestState::Requested | RequestState::Pending)
}

fn providers(s: &Sources<'_>) -> Vec<ProviderLine> {
    let mut names: BTreeSet<&str> = s.config.providers.iter().map(|p| p.name.as_str()).collect();
    names.extend(s.tally.by_provider.keys().map(String::as_str));
    let mut pools: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for c in &s.snapshot.components {
        if let Some(p) = c.component.pool.as_ref() {
            let name = p.provider_name.as_deref().unwrap_or_default();
            names.insert(name);
            let e = pools.entry(name).or_default();
            e.0 += 1;
            if p.paused {
                e.1 += 1;
            }
        }
    }
    names
        .into_iter()
        .filter(|n| !n.is_empty())
        .map(|name| {
            let facts = s.config.provider(name);
            let (registered, paused) = pools.get(name).copied().unwrap_or_default();
            ProviderLine {
                name: name.to_string(),
                nodes: s.tally.by_provider.get(name).copied().unwrap_or_default(),
                max_servers: facts.and_then(|p| p.max_servers()),
                quota: s.quotas.get(name).cloned(),
                pools_registered: registered,
                pools_configured: facts.map(|p| p.pools.len()),
                pools_paused: paused,
                failures: s.history.failures(name),
            }
        })
        .collect()
}

fn labels(s: &Sources<'_>) -> Vec<LabelLine> {
    let mut names: BTreeSet<&str> = s.config.labels.iter().map(|(l, _)| l.as_str()).collect();
    names.extend(s.tally.by_label.keys().map(String::as_str));
    let mut waiting: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for r in &s.snapshot.requests {
        if !is_open(r.request.state) {
            continue;
        }
        let since = r.request.created_time.unwrap_or(r.request.state_time);
        let labels: BTreeSet<&str> = r.request.node_types.iter().map(String::as_str).collect();
        for l in labels {
            names.insert(l);
            let e = waiting.entry(l).or_insert((0, f64::MAX));
            e.0 += 1;
            e.1 = e.1.min(since);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let (count, oldest) = waiting.get(name).copied().unwrap_or((0, f64::MAX));
            let trend = s.history.waiting_before(name, s.now).map(|before| {
                match (count as u32).cmp(&before) {
                    std::cmp::Ordering::Greater => Trend::Up,
                    std::cmp::Ordering::Less => Trend::Down,
                    std::cmp::Ordering::Equal => Trend::Flat,
                }
            });
            LabelLine {
                name: name.to_string(),
                ready: s.tally.ready_by_label.get(name).copied().unwrap_or(0),
                min_ready: s.config.min_ready(name),
                waiting: count,
                oldest: (count > 0).then_some(oldest),
                trend,
            }
        })
        .collect()
}

fn images(s: &Sources<'_>) -> Vec<ImageLine> {
    let names = s
        .snapshot
        .image_names(s.config.diskimages.iter().map(|d| d.name.as_str()));
    names
        .into_iter()
        .map(|name| {
            let builds: Vec<_> = s
                .snapshot
                .builds
                .iter()
                .filter(|b| b.build.image == name)
                .collect();
            let newest_ready = builds
                .iter()
                .filter(|b| b.build.state == BuildState::Ready)
                .map(|b| b.build.state_time)
                .reduce(f64::max);
            let mut newest_first = builds.clone();
            newest_first.sort_by(|a, b| b.build.state_time.total_cmp(&a.build.state_time));
            let refs: Vec<&nodepool_shared::zk::CachedBuild> =
                newest_first.iter().map(|b| b.as_ref()).collect();
            let streak = nodepool_shared::diagnostics::failing_streak(&refs).len();
            let facts = s.config.diskimage(&name);
            ImageLine {
                failing: streak.max(s.history.failed_builds(&name)),
                rebuild_age: facts.map(|d| d.rebuild_age.as_secs_f64()),
                paused: s.snapshot.paused.contains(&name) || facts.is_some_and(|d| d.paused),
                building: builds.iter().any(|b| b.build.state == BuildState::Building),
                newest_ready,
                name,
            }
        })
        .collect()
}
