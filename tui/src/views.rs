//! The seven tabs: which columns each has and how its rows are built from a
//! [`Snapshot`], plus the detail pane's content (the whole record as pretty JSON, with
//! its path, version and lock contenders). Pure functions of the snapshot.

use std::collections::{BTreeMap, BTreeSet};

use nodepool_shared::model::{
    paths, BuildState, ComponentKind, NodeState, RequestState, UploadState,
};
use serde_json::{json, Map, Value as Json};

use crate::data::{ConfigInfo, RecordKey, Snapshot};
use crate::table::{Cell, ColumnDef, Row};
use crate::theme::Tone;

/// A tab of the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViewKind {
    /// Nodes (`nodepool list`).
    Nodes,
    /// Node requests.
    Requests,
    /// Diskimage builds.
    Builds,
    /// Image uploads.
    Uploads,
    /// Per-label counts.
    Labels,
    /// Launchers, pool workers and builders.
    Components,
    /// Per-image status (paused, build requests).
    Images,
}

impl ViewKind {
    /// All tabs in key order (key `1` is the first).
    pub const ALL: [ViewKind; 7] = [
        ViewKind::Nodes,
        ViewKind::Requests,
        ViewKind::Builds,
        ViewKind::Uploads,
        ViewKind::Labels,
        ViewKind::Components,
        ViewKind::Images,
    ];

    /// Position in [`ViewKind::ALL`].
    pub fn index(self) -> usize {
        ViewKind::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    /// The tab title.
    pub fn title(self) -> &'static str {
        match self {
            ViewKind::Nodes => "Nodes",
            ViewKind::Requests => "Requests",
            ViewKind::Builds => "Builds",
            ViewKind::Uploads => "Uploads",
            ViewKind::Labels => "Labels",
            ViewKind::Components => "Components",
            ViewKind::Images => "Images",
        }
    }

    /// Columns of the tab.
    pub fn columns(self) -> &'static [ColumnDef] {
        match self {
            ViewKind::Nodes => &NODE_COLUMNS,
            ViewKind::Requests => &REQUEST_COLUMNS,
            ViewKind::Builds => &BUILD_COLUMNS,
            ViewKind::Uploads => &UPLOAD_COLUMNS,
            ViewKind::Labels => &LABEL_COLUMNS,
            ViewKind::Components => &COMPONENT_COLUMNS,
            ViewKind::Images => &IMAGE_COLUMNS,
        }
    }

    /// Builds the rows of the tab (unsorted, unfiltered).
    pub fn rows(self, snap: &Snapshot, cfg: &ConfigInfo) -> Vec<Row> {
        match self {
            ViewKind::Nodes => node_rows(snap),
            ViewKind::Requests => request_rows(snap),
            ViewKind::Builds => build_rows(snap),
            ViewKind::Uploads => upload_rows(snap),
            ViewKind::Labels => label_rows(snap, cfg),
            ViewKind::Components => component_rows(snap),
            ViewKind::Images => image_rows(snap, cfg),
        }
    }
}

const NODE_COLUMNS: [ColumnDef; 11] = [
    ColumnDef::new("ID", 10, 10, 0),
    ColumnDef::new("State", 5, 9, 0),
    ColumnDef::new("Label", 5, 30, 0),
    ColumnDef::new("Provider", 6, 24, 1),
    ColumnDef::new("Age", 7, 8, 1),
    ColumnDef::new("IP", 7, 39, 2),
    ColumnDef::new("Locked", 6, 6, 2),
    ColumnDef::new("Pool", 4, 20, 3),
    ColumnDef::new("Server ID", 9, 36, 4),
    ColumnDef::new("Alloc To", 8, 14, 4),
    ColumnDef::new("Comment", 7, 40, 5),
];

fn node_rows(snap: &Snapshot) -> Vec<Row> {
    snap.nodes
        .iter()
        .map(|c| {
            let n = &c.node;
            let ip = n
                .interface_ip()
                .or_else(|| n.public_ipv4())
                .or_else(|| n.public_ipv6())
                .or_else(|| n.private_ipv4());
            let opt = |v: Option<&str>| Cell::opt(&v.map(str::to_string));
            Row::new(
                RecordKey::Node(n.id().clone()),
                vec![
                    Cell::text(n.id().as_str()),
                    Cell::state(n.state().as_str()),
                    Cell::text(n.labels().collect::<Vec<_>>().join(",")),
                    opt(n.provider()),
                    Cell::time(Some(n.state_time())),
                    opt(ip),
                    Cell::text(if c.probably_locked() { "locked" } else { "" }),
                    opt(n.pool()),
                    opt(n.external_id()),
                    Cell::text(n.allocated_to().unwrap_or_default()),
                    opt(n.comment()),
                ],
            )
        })
        .collect()
}

const REQUEST_COLUMNS: [ColumnDef; 11] = [
    ColumnDef::new("ID", 14, 14, 0),
    ColumnDef::new("State", 6, 9, 0),
    ColumnDef::new("Labels", 6, 30, 0),
    ColumnDef::new("Requestor", 6, 30, 1),
    ColumnDef::new("Age", 7, 8, 1),
    ColumnDef::new("Nodes", 5, 40, 2),
    ColumnDef::new("Prio", 4, 5, 3),
    ColumnDef::new("Locked", 6, 6, 3),
    ColumnDef::new("Declined", 8, 8, 4),
    ColumnDef::new("Provider", 6, 20, 4),
    ColumnDef::new("Tenant", 6, 20, 5),
];

fn request_rows(snap: &Snapshot) -> Vec<Row> {
    snap.requests
        .iter()
        .map(|c| {
            let r = &c.request;
            let nodes: Vec<&str> = r.nodes.iter().map(|n| n.as_str()).collect();
            Row::new(
                RecordKey::Request(r.id.clone()),
                vec![
                    Cell::text(r.id.as_str()),
                    Cell::state(r.state.as_str()),
                    Cell::text(r.node_types.join(",")),
                    Cell::opt(&r.requestor),
                    Cell::time(Some(r.state_time)),
                    Cell::text(nodes.join(",")),
                    Cell::num(r.relative_priority),
                    Cell::text(if snap.locked_requests.contains(&r.id) {
                        "locked"
                    } else {
                        ""
                    }),
                    Cell::num(r.declined_by.len() as i64),
                    Cell::opt(&r.provider),
                    Cell::opt(&r.tenant_name),
                ],
            )
        })
        .collect()
}

const BUILD_COLUMNS: [ColumnDef; 8] = [
    ColumnDef::new("Image", 5, 30, 0),
    ColumnDef::new("Build ID", 8, 32, 0),
    ColumnDef::new("State", 5, 9, 0),
    ColumnDef::new("Age", 7, 8, 1),
    ColumnDef::new("Builder", 7, 30, 2),
    ColumnDef::new("Formats", 7, 20, 2),
    ColumnDef::new("Uploads", 7, 9, 3),
    ColumnDef::new("Paused", 6, 6, 1),
];

fn build_rows(snap: &Snapshot) -> Vec<Row> {
    // (ready, total) uploads per build.
    let mut uploads: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
    for u in &snap.uploads {
        let e = uploads
            .entry((u.upload.image.as_str(), u.upload.build_id.as_str()))
            .or_default();
        e.1 += 1;
        if u.upload.state == UploadState::Ready {
            e.0 += 1;
        }
    }
    snap.builds
        .iter()
        .map(|c| {
            let b = &c.build;
            let (ready, total) = uploads
                .get(&(b.image.as_str(), b.id.as_str()))
                .copied()
                .unwrap_or_default();
            let paused = snap.paused.contains(&b.image);
            Row::new(
                RecordKey::Build(b.image.clone(), b.id.clone()),
                vec![
                    Cell::text(&b.image),
                    Cell::text(b.id.as_str()),
                    Cell::state(b.state.as_str()),
                    Cell::time(Some(b.state_time)),
                    Cell::opt(&b.builder),
                    Cell::text(b.sorted_formats().join(",")),
                    Cell::text(format!("{ready}/{total}")),
                    if paused {
                        Cell::state("paused")
                    } else {
                        Cell::text("")
                    },
                ],
            )
        })
        .collect()
}

const UPLOAD_COLUMNS: [ColumnDef; 9] = [
    ColumnDef::new("Image", 5, 30, 0),
    ColumnDef::new("Build ID", 8, 32, 2),
    ColumnDef::new("Provider", 6, 24, 0),
    ColumnDef::new("Upload ID", 10, 10, 1),
    ColumnDef::new("State", 5, 9, 0),
    ColumnDef::new("Age", 7, 8, 1),
    ColumnDef::new("Ext. ID", 7, 36, 3),
    ColumnDef::new("Ext. Name", 9, 40, 4),
    ColumnDef::new("Format", 6, 6, 5),
];

fn upload_rows(snap: &Snapshot) -> Vec<Row> {
    snap.uploads
        .iter()
        .map(|c| {
            let u = &c.upload;
            Row::new(
                RecordKey::Upload((
                    u.image.clone(),
                    u.build_id.clone(),
                    u.provider.clone(),
                    u.id.clone(),
                )),
                vec![
                    Cell::text(&u.image),
                    Cell::text(u.build_id.as_str()),
                    Cell::text(&u.provider),
                    Cell::text(u.id.as_str()),
                    Cell::state(u.state.as_str()),
                    Cell::time(Some(u.state_time)),
                    Cell::opt(&u.external_id),
                    Cell::opt(&u.external_name),
                    Cell::opt(&u.format),
                ],
            )
        })
        .collect()
}

const LABEL_COLUMNS: [ColumnDef; 10] = [
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
            let e = match out.get_mut(l) {
                Some(e) => e,
                None => out.entry(l.to_string()).or_default(),
            };
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

fn label_rows(snap: &Snapshot, cfg: &ConfigInfo) -> Vec<Row> {
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

const COMPONENT_COLUMNS: [ColumnDef; 9] = [
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

fn component_rows(snap: &Snapshot) -> Vec<Row> {
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

const IMAGE_COLUMNS: [ColumnDef; 8] = [
    ColumnDef::new("Image", 5, 30, 0),
    ColumnDef::new("Paused", 6, 6, 0),
    ColumnDef::new("Build Req", 9, 9, 0),
    ColumnDef::new("Req Age", 7, 8, 2),
    ColumnDef::new("Ready", 5, 5, 1),
    ColumnDef::new("Building", 8, 8, 1),
    ColumnDef::new("Newest", 7, 8, 1),
    ColumnDef::new("Uploads", 7, 7, 2),
];

/// `pending` or `building` for an image with a manual build request (like
/// `nodepool image-status`), else empty.
pub fn build_request_state(snap: &Snapshot, image: &str) -> &'static str {
    if !snap.build_requests.contains_key(image) {
        return "";
    }
    let building = snap
        .builds
        .iter()
        .any(|b| b.build.image == image && b.build.state == BuildState::Building);
    if building {
        "building"
    } else {
        "pending"
    }
}

fn image_rows(snap: &Snapshot, cfg: &ConfigInfo) -> Vec<Row> {
    snap.image_names(&cfg.diskimages)
        .into_iter()
        .map(|image| {
            let builds: Vec<_> = snap
                .builds
                .iter()
                .filter(|b| b.build.image == image)
                .collect();
            let ready = builds
                .iter()
                .filter(|b| b.build.state == BuildState::Ready)
                .count();
            let building = builds
                .iter()
                .filter(|b| b.build.state == BuildState::Building)
                .count();
            let newest = builds
                .iter()
                .filter(|b| b.build.state == BuildState::Ready)
                .map(|b| b.build.state_time)
                .fold(None, |a: Option<f64>, t| Some(a.map_or(t, |a| a.max(t))));
            let uploads = snap
                .uploads
                .iter()
                .filter(|u| u.upload.image == image && u.upload.state == UploadState::Ready)
                .count();
            let req = build_request_state(snap, &image);
            let paused = snap.paused.contains(&image);
            Row::new(
                RecordKey::Image(image.clone()),
                vec![
                    Cell::text(&image),
                    if paused {
                        Cell::state("paused")
                    } else {
                        Cell::text("")
                    },
                    Cell::text(req).toned(if req.is_empty() {
                        Tone::Plain
                    } else {
                        Tone::Busy
                    }),
                    Cell::time(snap.build_requests.get(&image).map(|f| f.created)),
                    Cell::num(ready as i64).toned(if ready > 0 { Tone::Good } else { Tone::Bad }),
                    Cell::num(building as i64).toned(if building > 0 {
                        Tone::Busy
                    } else {
                        Tone::Plain
                    }),
                    Cell::time(newest),
                    Cell::num(uploads as i64),
                ],
            )
        })
        .collect()
}

// ------------------------------------------------------------------ detail pane

/// Title and text lines of the detail pane for `key`; `None` if the record is gone.
pub fn detail(
    key: &RecordKey,
    snap: &Snapshot,
    cfg: &ConfigInfo,
    now: f64,
) -> Option<(String, Vec<String>)> {
    let stat_lines = |path: String, stat: &nodepool_shared::zk::Stat| {
        vec![
            format!("path:     {path}"),
            format!(
                "version:  {}   modified {}   created {}",
                stat.version,
                nodepool_shared::listing::format_relative(now - stat.mtime as f64 / 1000.0),
                nodepool_shared::listing::format_relative(now - stat.ctime as f64 / 1000.0),
            ),
        ]
    };
    let (title, mut head, body): (String, Vec<String>, Json) = match key {
        RecordKey::Node(id) => {
            let c = snap.node(id)?;
            let mut head = stat_lines(paths::node(id), &c.stat);
            head.push(format!(
                "lock:     {}",
                if c.lock_contenders.is_empty() {
                    "unlocked".to_string()
                } else {
                    format!("held ({})", c.lock_contenders.join(", "))
                }
            ));
            (format!("Node {id}"), head, c.node.to_node().to_value())
        }
        RecordKey::Request(id) => {
            let c = snap.request(id)?;
            let mut head = stat_lines(paths::request(id), &c.stat);
            head.push(format!(
                "lock:     {}",
                if snap.locked_requests.contains(id) {
                    "locked"
                } else {
                    "unlocked"
                }
            ));
            (format!("Request {id}"), head, c.request.to_value())
        }
        RecordKey::Build(image, id) => {
            let c = snap.build(image, id)?;
            (
                format!("Build {image}-{id}"),
                stat_lines(paths::build(image, id), &c.stat),
                c.build.to_value(),
            )
        }
        RecordKey::Upload(k) => {
            let c = snap.upload(k)?;
            (
                format!("Upload {} {} {} {}", k.0, k.2, k.1, k.3),
                stat_lines(paths::upload(&k.0, &k.1, &k.2, &k.3), &c.stat),
                c.upload.to_value(),
            )
        }
        RecordKey::Component(kind, name) => {
            let c = snap.component(*kind, name)?;
            (
                format!("Component {kind} {name}"),
                stat_lines(paths::component(*kind, name), &c.stat),
                c.component.to_value(),
            )
        }
        RecordKey::Label(label) => {
            let counts = label_counts(snap, cfg).remove(label)?;
            let mut by_state: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for n in &snap.nodes {
                if n.node.has_label(label) {
                    by_state
                        .entry(n.node.state().as_str())
                        .or_default()
                        .push(n.node.id().as_str());
                }
            }
            let pools: Vec<String> = snap
                .components
                .iter()
                .filter(|c| {
                    c.component
                        .pool
                        .as_ref()
                        .is_some_and(|p| p.supported_labels.iter().any(|l| l == label))
                })
                .map(|c| {
                    let p = c.component.pool.as_ref();
                    format!(
                        "{}/{}",
                        p.and_then(|p| p.provider_name.clone()).unwrap_or_default(),
                        p.and_then(|p| p.name.clone()).unwrap_or_default()
                    )
                })
                .collect();
            (
                format!("Label {label}"),
                vec![format!(
                    "{} nodes; min-ready {}",
                    counts.total(),
                    cfg.min_ready(label)
                        .map_or("not configured".to_string(), |m| m.to_string())
                )],
                json!({
                    "ready": counts.ready, "in-use": counts.in_use, "building": counts.building,
                    "hold": counts.hold, "other": counts.other, "requested": counts.requested,
                    "min-ready": cfg.min_ready(label),
                    "nodes": by_state, "pools": pools,
                }),
            )
        }
        RecordKey::Image(image) => {
            let builds: Vec<Json> = snap
                .builds
                .iter()
                .filter(|b| &b.build.image == image)
                .map(|b| {
                    let mut m = Map::new();
                    m.insert("id".into(), Json::String(b.build.id.to_string()));
                    m.insert("state".into(), Json::String(b.build.state.to_string()));
                    Json::Object(m)
                })
                .collect();
            (
                format!("Image {image}"),
                vec![format!("path:     {}", paths::image(image))],
                json!({
                    "paused": snap.paused.contains(image),
                    "build_request": build_request_state(snap, image),
                    "in_config": cfg.diskimages.iter().any(|d| d == image),
                    "builds": builds,
                }),
            )
        }
    };
    head.push(String::new());
    let text = serde_json::to_string_pretty(&body).unwrap_or_else(|e| e.to_string());
    head.extend(text.lines().map(str::to_string));
    Some((title, head))
}

/// The component kinds in display order.
pub const COMPONENT_KINDS: [ComponentKind; 3] = [
    ComponentKind::Launcher,
    ComponentKind::Pool,
    ComponentKind::Builder,
];
