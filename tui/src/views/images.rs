//! The builds, uploads and images tabs (views 3, 4 and 7): their columns and rows.

use std::collections::BTreeMap;

use nodepool_shared::model::{BuildState, UploadState};

use crate::data::{ConfigInfo, RecordKey, Snapshot};
use crate::table::{Cell, ColumnDef, Row};
use crate::theme::Tone;

pub const BUILD_COLUMNS: [ColumnDef; 8] = [
    ColumnDef::new("Image", 5, 30, 0),
    ColumnDef::new("Build ID", 8, 32, 0),
    ColumnDef::new("State", 5, 9, 0),
    ColumnDef::new("Age", 7, 8, 1),
    ColumnDef::new("Builder", 7, 30, 2),
    ColumnDef::new("Formats", 7, 20, 2),
    ColumnDef::new("Uploads", 7, 9, 3),
    ColumnDef::new("Paused", 6, 6, 1),
];

pub fn build_rows(snap: &Snapshot) -> Vec<Row> {
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

pub const UPLOAD_COLUMNS: [ColumnDef; 9] = [
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

pub fn upload_rows(snap: &Snapshot) -> Vec<Row> {
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

pub const IMAGE_COLUMNS: [ColumnDef; 8] = [
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

pub fn image_rows(snap: &Snapshot, cfg: &ConfigInfo) -> Vec<Row> {
    snap.image_names(cfg.diskimages.iter().map(|d| d.name.as_str()))
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
