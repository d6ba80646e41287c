//! The detail pane's content, in two phases: first the record's [`Parts`] — a title,
//! head lines (path, version, ages, lock) and the record as JSON — found by one small
//! function per kind of record; then [`detail`] lays them out as text lines (head,
//! blank line, pretty JSON). The pane itself wraps and scrolls them (`ui`).

use std::collections::BTreeMap;

use nodepool_shared::listing::format_relative;
use nodepool_shared::model::{paths, BuildId, ComponentKind, NodeId, RequestId};
use nodepool_shared::zk::cache::UploadKey;
use nodepool_shared::zk::Stat;
use serde_json::{json, Map, Value as Json};

use super::images::build_request_state;
use super::labels::label_counts;
use crate::data::{ConfigInfo, RecordKey, Snapshot};

/// A record split into what the pane shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Parts {
    /// Pane title, e.g. `Node 0000000042`.
    pub title: String,
    /// Lines above the JSON.
    pub head: Vec<String>,
    /// The record.
    pub body: Json,
}

/// Title and text lines of the detail pane for `key`; `None` if the record is gone.
pub fn detail(
    key: &RecordKey,
    snap: &Snapshot,
    cfg: &ConfigInfo,
    now: f64,
) -> Option<(String, Vec<String>)> {
    let parts = parts(key, snap, cfg, now)?;
    let mut lines = parts.head;
    lines.push(String::new());
    let text = serde_json::to_string_pretty(&parts.body).unwrap_or_else(|e| e.to_string());
    lines.extend(text.lines().map(str::to_string));
    Some((parts.title, lines))
}

/// Phase one: the parts of the record `key` names.
pub fn parts(key: &RecordKey, snap: &Snapshot, cfg: &ConfigInfo, now: f64) -> Option<Parts> {
    match key {
        RecordKey::Node(id) => node_parts(id, snap, now),
        RecordKey::Request(id) => request_parts(id, snap, now),
        RecordKey::Build(image, id) => build_parts(image, id, snap, now),
        RecordKey::Upload(k) => upload_parts(k, snap, now),
        RecordKey::Component(kind, name) => component_parts(*kind, name, snap, now),
        RecordKey::Label(label) => label_parts(label, snap, cfg),
        RecordKey::Image(image) => image_parts(image, snap, cfg),
        RecordKey::Provider(_) | RecordKey::Pool(..) | RecordKey::Znode(_) => None,
    }
}

/// `path:` and `version: … modified … created …`.
fn stat_lines(path: String, stat: &Stat, now: f64) -> Vec<String> {
    vec![
        format!("path:     {path}"),
        format!(
            "version:  {}   modified {}   created {}",
            stat.version,
            format_relative(now - stat.mtime as f64 / 1000.0),
            format_relative(now - stat.ctime as f64 / 1000.0),
        ),
    ]
}

fn node_parts(id: &NodeId, snap: &Snapshot, now: f64) -> Option<Parts> {
    let c = snap.node(id)?;
    let mut head = stat_lines(paths::node(id), &c.stat, now);
    head.push(format!(
        "lock:     {}",
        if c.lock_contenders.is_empty() {
            "unlocked".to_string()
        } else {
            format!("held ({})", c.lock_contenders.join(", "))
        }
    ));
    Some(Parts {
        title: format!("Node {id}"),
        head,
        body: c.node.to_node().to_value(),
    })
}

fn request_parts(id: &RequestId, snap: &Snapshot, now: f64) -> Option<Parts> {
    let c = snap.request(id)?;
    let mut head = stat_lines(paths::request(id), &c.stat, now);
    head.push(format!(
        "lock:     {}",
        if snap.request_locked(id) {
            "locked"
        } else {
            "unlocked"
        }
    ));
    Some(Parts {
        title: format!("Request {id}"),
        head,
        body: c.request.to_value(),
    })
}

fn build_parts(image: &str, id: &BuildId, snap: &Snapshot, now: f64) -> Option<Parts> {
    let c = snap.build(image, id)?;
    Some(Parts {
        title: format!("Build {image}-{id}"),
        head: stat_lines(paths::build(image, id), &c.stat, now),
        body: c.build.to_value(),
    })
}

fn upload_parts(k: &UploadKey, snap: &Snapshot, now: f64) -> Option<Parts> {
    let c = snap.upload(k)?;
    Some(Parts {
        title: format!("Upload {} {} {} {}", k.0, k.2, k.1, k.3),
        head: stat_lines(paths::upload(&k.0, &k.1, &k.2, &k.3), &c.stat, now),
        body: c.upload.to_value(),
    })
}

fn component_parts(kind: ComponentKind, name: &str, snap: &Snapshot, now: f64) -> Option<Parts> {
    let c = snap.component(kind, name)?;
    Some(Parts {
        title: format!("Component {kind} {name}"),
        head: stat_lines(paths::component(kind, name), &c.stat, now),
        body: c.component.to_value(),
    })
}

fn label_parts(label: &str, snap: &Snapshot, cfg: &ConfigInfo) -> Option<Parts> {
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
        .filter_map(|c| c.component.pool.as_ref())
        .filter(|p| p.supported_labels.iter().any(|l| l == label))
        .map(|p| {
            format!(
                "{}/{}",
                p.provider_name.clone().unwrap_or_default(),
                p.name.clone().unwrap_or_default()
            )
        })
        .collect();
    Some(Parts {
        title: format!("Label {label}"),
        head: vec![format!(
            "{} nodes; min-ready {}",
            counts.total(),
            cfg.min_ready(label)
                .map_or("not configured".to_string(), |m| m.to_string())
        )],
        body: json!({
            "ready": counts.ready, "in-use": counts.in_use, "building": counts.building,
            "hold": counts.hold, "other": counts.other, "requested": counts.requested,
            "min-ready": cfg.min_ready(label),
            "nodes": by_state, "pools": pools,
        }),
    })
}

fn image_parts(image: &str, snap: &Snapshot, cfg: &ConfigInfo) -> Option<Parts> {
    let builds: Vec<Json> = snap
        .builds
        .iter()
        .filter(|b| b.build.image == image)
        .map(|b| {
            let mut m = Map::new();
            m.insert("id".into(), Json::String(b.build.id.to_string()));
            m.insert("state".into(), Json::String(b.build.state.to_string()));
            Json::Object(m)
        })
        .collect();
    Some(Parts {
        title: format!("Image {image}"),
        head: vec![format!("path:     {}", paths::image(image))],
        body: json!({
            "paused": snap.paused.contains(image),
            "build_request": build_request_state(snap, image),
            "in_config": cfg.diskimage(image).is_some(),
            "builds": builds,
        }),
    })
}
