//! The labels and components tabs (views 5 and 6): per-label counts and the
//! registered launchers, pool workers and builders.

use std::collections::{BTreeMap, BTreeSet};

use nodepool_shared::model::{ComponentKind, NodeState, RequestState};

use crate::data::{ConfigInfo, RecordKey, Snapshot};
use crate::table::{Cell, ColumnDef, Row};
use crate::theme::Tone;

pub const LABEL_COLUMNS: [ColumnDef; 10] = [
    ColumnDef::new("Label", 5, 30, 0),
    ColumnDef::new("Ready", 5, 5, 0),
    ColumnDef::new("In-use", 6, 6, 0),
    ColumnDef::new("Building", 8, 8, 0),
    ColumnDef::new("Hold", 4, 4, 1),
    ColumnDef::new("Other", 5, 5, 2),
    ColumnDef::new("Total", 5, 5, 0),
    ColumnDef::new("Min-ready", 9, 9, 0),
    ColumnDef::new("Requested", 9, 9, 1),
    ColumnDef::new("Pools", 5, 5, 2),
];

/// Per-label counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LabelCounts {
    /// `ready` nodes.
    pub ready: usize,
    /// `in-use` nodes.
    pub in_use: usize,
    /// `init`, `building` or `testing` nodes.
    pub building: usize,
    /// `hold` nodes.
    pub hold: usize,
    /// Nodes in any other state (used, deleting, failed, …).
    pub other: usize,
    /// Open requests (`requested`/`pending`) asking for the label.
    pub requested: usize,
    /// Pool workers announcing the label.
    pub pools: usize,
}

impl LabelCounts {
    /// All nodes with the label.
    pub fn total(&self) -> usize {
        self.ready + self.in_use + self.building + self.hold + self.other
    }
}

/// Counts per label over nodes, open requests and pool components; every label of the
/// config appears even without nodes.
pub fn label_counts(snap: &Snapshot, cfg: &ConfigInfo) -> BTreeMap<String, LabelCounts> {
    let mut out: BTreeMap<String, LabelCounts> = BTreeMap::new();
    for (name, _) in &cfg.labels {
        out.entry(name.clone()).or_default();
    }
    for c in &snap.nodes {
        let labels: BTreeSet<&str> = c.node.labels().collect();
        for l in labels {
            let e = out.entry(l.to_string()).or_default();
            match c.node.state() {
                NodeState::Ready => e.ready += 1,
                NodeState::InUse => e.in_use += 1,
                NodeState::Init | NodeState::Building | NodeState::Testing => e.building += 1,
                NodeState::Hold => e.hold += 1,
                _ => e.other += 1,
            }
        }
    }
    for r in &snap.requests {
        if matches!(
            r.request.state,
            RequestState::Requested | RequestState::Pending
        ) {
            let labels: BTreeSet<&String> = r.request.node_types.iter().collect();
            for l in labels {
                out.entry(l.clone()).or_default().requested += 1;
            }
        }
    }
    for c in &snap.components {
        if let Some(p) = &c.component.pool {
            let labels: BTreeSet<&String> = p.supported_labels.iter().collect();
            for l in labels {
                out.entry(l.clone()).or_default().pools += 1;
            }
        }
    }
    out
}

pub fn label_rows(snap: &Snapshot, cfg: &ConfigInfo) -> Vec<Row> {
    label_counts(snap, cfg)
        .into_iter()
        .map(|(name, c)| {
            let min = cfg.min_ready(&name);
            let ready_tone = match min {
                Some(m) if c.ready < m as usize => Tone::Bad,
                _ if c.ready > 0 => Tone::Good,
                _ => Tone::Plain,
            };
            let n = |v: usize| Cell::num(v as i64);
            Row::new(
                RecordKey::Label(name.clone()),
                vec![
                    Cell::text(&name),
                    n(c.ready).toned(ready_tone),
                    n(c.in_use).toned(if c.in_use > 0 {
                        Tone::InUse
                    } else {
                        Tone::Plain
                    }),
                    n(c.building).toned(if c.building > 0 {
                        Tone::Busy
                    } else {
                        Tone::Plain
                    }),
                    n(c.hold).toned(if c.hold > 0 {
                        Tone::Attention
                    } else {
                        Tone::Plain
                    }),
                    n(c.other),
                    n(c.total()),
                    match min {
                        Some(m) => Cell::num(i64::from(m)),
                        None => Cell::text(""),
                    },
                    n(c.requested).toned(if c.requested > 0 {
                        Tone::Busy
                    } else {
                        Tone::Plain
                    }),
                    n(c.pools).toned(if c.pools == 0 { Tone::Bad } else { Tone::Plain }),
                ],
            )
        })
        .collect()
}

pub const COMPONENT_COLUMNS: [ColumnDef; 9] = [
    ColumnDef::new("Kind", 4, 8, 0),
    ColumnDef::new("Hostname", 8, 30, 0),
    ColumnDef::new("State", 5, 12, 0),
    ColumnDef::new("Provider", 6, 24, 1),
    ColumnDef::new("Pool", 4, 20, 1),
    ColumnDef::new("Paused", 6, 6, 1),
    ColumnDef::new("Labels", 6, 60, 2),
    ColumnDef::new("Up", 7, 8, 3),
    ColumnDef::new("Version", 7, 10, 4),
];

pub fn component_rows(snap: &Snapshot) -> Vec<Row> {
    snap.components
        .iter()
        .map(|c| {
            let k = &c.component;
            let pool = k.pool.as_ref();
            Row::new(
                RecordKey::Component(k.kind, c.name.clone()),
                vec![
                    Cell::text(k.kind.as_str()),
                    Cell::text(&k.hostname),
                    Cell::state(k.state.as_str()),
                    Cell::text(
                        pool.and_then(|p| p.provider_name.clone())
                            .unwrap_or_default(),
                    ),
                    Cell::text(pool.and_then(|p| p.name.clone()).unwrap_or_default()),
                    if pool.is_some_and(|p| p.paused) {
                        Cell::state("paused")
                    } else {
                        Cell::text("")
                    },
                    Cell::text(
                        pool.map(|p| p.supported_labels.join(","))
                            .unwrap_or_default(),
                    ),
                    Cell::time(Some(c.stat.ctime as f64 / 1000.0)),
                    Cell::opt(&k.version),
                ],
            )
        })
        .collect()
}

/// The component kinds in display order.
pub const COMPONENT_KINDS: [ComponentKind; 3] = [
    ComponentKind::Launcher,
    ComponentKind::Pool,
    ComponentKind::Builder,
];
