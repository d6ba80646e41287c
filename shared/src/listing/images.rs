//! The image listings: `image-list` (uploads), `dib-image-list` (builds), `image-status`
//! (pause flags and build requests), `alien-image-list` (cloud images Nodepool does not
//! know), and the JSON document of `export-image-data`.
//!
//! Ages: in JSON an image age is the int epoch of `state_time` (Python's
//! `int(state_time)`); in text it is `DD:HH:MM:SS` since that int. Rows are sorted
//! (image, build id, provider, upload id); Python lists them in ZooKeeper child order,
//! which is unspecified.

use std::collections::HashSet;

use super::age::format_age;
use super::table::{Cell, Column, Table};
use crate::model::{paths, ImageBuild, ImageUpload};
use crate::pyfmt::json_str_into;

/// Columns of `image-list`.
pub const IMAGE_COLUMNS: [Column; 8] = [
    Column::new("id", "Build ID"),
    Column::new("upload_id", "Upload ID"),
    Column::new("provider", "Provider"),
    Column::new("image", "Image"),
    Column::new("external_name", "Provider Image Name"),
    Column::new("external_id", "Provider Image ID"),
    Column::new("state", "State"),
    Column::new("age", "Age"),
];

/// Columns of `dib-image-list`.
pub const DIB_IMAGE_COLUMNS: [Column; 6] = [
    Column::new("id", "ID"),
    Column::new("image", "Image"),
    Column::new("builder", "Builder"),
    Column::new("formats", "Formats"),
    Column::new("state", "State"),
    Column::new("age", "Age"),
];

/// Columns of `image-status`.
pub const IMAGE_STATUS_COLUMNS: [Column; 4] = [
    Column::new("image", "Image"),
    Column::new("paused", "Paused"),
    Column::new("build_request", "Build Request"),
    Column::new("build_request_age", "Build Request Age"),
];

/// Columns of `alien-image-list`.
pub const ALIEN_IMAGE_COLUMNS: [Column; 3] = [
    Column::new("provider", "Provider"),
    Column::new("name", "Name"),
    Column::new("image_id", "Image ID"),
];

/// An age cell for a record's `state_time`: JSON `int(state_time)`, text the age of that
/// int at `now`.
fn epoch_age(state_time: f64, now: f64) -> Cell {
    // `as` saturates (NaN → 0) where Python's `int()` would raise.
    let epoch = state_time as i64;
    Cell::Age {
        epoch,
        text: format_age(now - epoch as f64),
    }
}

/// Builds `image-list` from every upload record.
pub fn image_list<'a, I>(uploads: I, now: f64) -> Table
where
    I: IntoIterator<Item = &'a ImageUpload>,
{
    let mut ups: Vec<&ImageUpload> = uploads.into_iter().collect();
    ups.sort_by(|a, b| {
        (&a.image, &a.build_id, &a.provider, &a.id).cmp(&(
            &b.image,
            &b.build_id,
            &b.provider,
            &b.id,
        ))
    });
    let mut table = Table::with_capacity(IMAGE_COLUMNS.to_vec(), ups.len());
    for u in ups {
        table.push_row(vec![
            Cell::Str(u.build_id.to_string()),
            Cell::Str(u.id.to_string()),
            Cell::Str(u.provider.clone()),
            Cell::Str(u.image.clone()),
            Cell::opt(u.external_name.as_deref()),
            Cell::opt(u.external_id.as_deref()),
            Cell::from(u.state.as_str()),
            epoch_age(u.state_time, now),
        ]);
    }
    table
}

/// Builds `dib-image-list` from every build record; `paused` holds the names of images
/// whose `/nodepool/images/<image>/pause` flag exists (their builds show state `paused`).
pub fn dib_image_list<'a, I>(builds: I, paused: &HashSet<String>, now: f64) -> Table
where
    I: IntoIterator<Item = &'a ImageBuild>,
{
    let mut bs: Vec<&ImageBuild> = builds.into_iter().collect();
    bs.sort_by(|a, b| (&a.image, &a.id).cmp(&(&b.image, &b.id)));
    let mut table = Table::with_capacity(DIB_IMAGE_COLUMNS.to_vec(), bs.len());
    for b in bs {
        let state = if paused.contains(&b.image) {
            "paused"
        } else {
            b.state.as_str()
        };
        table.push_row(vec![
            Cell::Str(format!("{}-{}", b.image, b.id)),
            Cell::Str(b.image.clone()),
            Cell::opt(b.builder.as_deref()),
            Cell::List(b.sorted_formats()),
            Cell::from(state),
            epoch_age(b.state_time, now),
        ]);
    }
    table
}

/// What an outstanding `request-build` is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildRequestState {
    /// Waiting for a builder.
    Pending,
    /// A builder holds the image build lock and has started: the lock is held and the
    /// first-listed build znode is newer than the lock directory (Nodepool's heuristic).
    Building,
}

impl BuildRequestState {
    /// `pending` or `building`.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildRequestState::Pending => "pending",
            BuildRequestState::Building => "building",
        }
    }
}

/// An outstanding manual build request of an image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BuildRequest {
    /// Pending or building.
    pub state: BuildRequestState,
    /// Epoch seconds the request was made (its znode's creation time).
    pub state_time: f64,
}

/// One image of `image-status`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageStatusEntry {
    /// Image name.
    pub image: String,
    /// Whether `/nodepool/images/<image>/pause` exists.
    pub paused: bool,
    /// The outstanding `request-build`, if any.
    pub build_request: Option<BuildRequest>,
}

/// Builds `image-status` (sorted by image). JSON: `paused` a bool, `build_request`
/// `pending`/`building` or null, `build_request_age` the int epoch or null. Text: the
/// request and its `DD:HH:MM:SS` age, both empty when there is no request.
pub fn image_status(entries: &[ImageStatusEntry], now: f64) -> Table {
    let mut es: Vec<&ImageStatusEntry> = entries.iter().collect();
    es.sort_by(|a, b| a.image.cmp(&b.image));
    let mut table = Table::with_capacity(IMAGE_STATUS_COLUMNS.to_vec(), es.len());
    for e in es {
        let (req, age) = match &e.build_request {
            Some(r) => (Cell::from(r.state.as_str()), epoch_age(r.state_time, now)),
            None => (Cell::Empty, Cell::Empty),
        };
        table.push_row(vec![
            Cell::Str(e.image.clone()),
            Cell::Bool(e.paused),
            req,
            age,
        ]);
    }
    table
}

/// A cloud image carrying a `nodepool_build_id` property that matches no ready upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlienImage {
    /// Provider name.
    pub provider: String,
    /// Cloud image name.
    pub name: String,
    /// Cloud image id.
    pub id: String,
}

/// Builds `alien-image-list` (Provider, Name, Image ID) in the given order (the order
/// the clouds listed them, like Python).
pub fn alien_image_list(images: &[AlienImage]) -> Table {
    let mut table = Table::with_capacity(ALIEN_IMAGE_COLUMNS.to_vec(), images.len());
    for i in images {
        table.push_row(vec![
            Cell::Str(i.provider.clone()),
            Cell::Str(i.name.clone()),
            Cell::Str(i.id.clone()),
        ]);
    }
    table
}

/// The document `export-image-data` writes: a JSON object mapping each znode path to its
/// data as a string — builds and uploads their record JSON, each paused image's
/// `/nodepool/images/<image>/pause` flag `""`. Keys are sorted by path (a build before
/// its uploads); Python's order follows ZooKeeper and does not matter to the importer.
pub fn export_image_data<'a, B, U>(builds: B, uploads: U, paused: &HashSet<String>) -> String
where
    B: IntoIterator<Item = &'a ImageBuild>,
    U: IntoIterator<Item = &'a ImageUpload>,
{
    let mut entries: Vec<(String, String)> = Vec::new();
    for b in builds {
        entries.push((b.path(), String::from_utf8_lossy(&b.to_json()).into_owned()));
    }
    for u in uploads {
        entries.push((u.path(), String::from_utf8_lossy(&u.to_json()).into_owned()));
    }
    for image in paused {
        entries.push((paths::image_pause(image), String::new()));
    }
    entries.sort();
    let cap: usize = entries.iter().map(|(k, v)| k.len() + v.len() * 2 + 8).sum();
    let mut out = String::with_capacity(cap + 2);
    out.push('{');
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        json_str_into(k, &mut out);
        out.push_str(": ");
        json_str_into(v, &mut out);
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BuildId, BuildState, UploadId, UploadState};
    use serde_json::{json, Value};

    const NOW: f64 = 1_700_100_000.0;
    const BID: &str = "5c8a9ad4b8e44b5c9cbb6fb3f6a9f1a0";

    fn upload(image: &str, provider: &str, id: u64) -> ImageUpload {
        let mut u = ImageUpload::new(image, BuildId::from(BID), provider);
        u.id = UploadId::from_sequence(id);
        u.state = UploadState::Ready;
        u.state_time = NOW - 90_061.9;
        u.external_id = Some("ext-id".into());
        u.external_name = Some(format!("{image}-1700000000"));
        u
    }

    fn build(image: &str, id: &str) -> ImageBuild {
        let mut b = ImageBuild::new(image, BuildId::from(id));
        b.state = BuildState::Ready;
        b.state_time = NOW - 61.0;
        b.builder = Some("builder.example.org".into());
        b.formats = vec!["raw".into(), "qcow2".into()];
        b
    }

    #[test]
    fn image_list_text_and_json() {
        let mut failed = upload("ubuntu", "cloud-a", 2);
        failed.state = UploadState::Uploading;
        failed.external_id = None;
        let ups = vec![failed, upload("debian", "cloud-b", 1)];
        let t = image_list(&ups, NOW);
        assert_eq!(
            t.render_text(),
            "+----------------------------------+------------+----------+--------+---------------------+-------------------+-----------+-------------+\n\
             | Build ID                         | Upload ID  | Provider | Image  | Provider Image Name | Provider Image ID | State     | Age         |\n\
             +----------------------------------+------------+----------+--------+---------------------+-------------------+-----------+-------------+\n\
             | 5c8a9ad4b8e44b5c9cbb6fb3f6a9f1a0 | 0000000001 | cloud-b  | debian | debian-1700000000   | ext-id            | ready     | 01:01:01:02 |\n\
             | 5c8a9ad4b8e44b5c9cbb6fb3f6a9f1a0 | 0000000002 | cloud-a  | ubuntu | ubuntu-1700000000   | None              | uploading | 01:01:01:02 |\n\
             +----------------------------------+------------+----------+--------+---------------------+-------------------+-----------+-------------+"
        );
        let v: Value = serde_json::from_str(&t.render_json()).unwrap();
        let keys: Vec<&str> = v[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "id",
                "upload_id",
                "provider",
                "image",
                "external_name",
                "external_id",
                "state",
                "age"
            ]
        );
        assert_eq!(v[0]["age"], json!(1_700_009_938i64));
        assert_eq!(v[1]["external_id"], Value::Null);
    }

    #[test]
    fn dib_image_list_text_and_json() {
        let mut b2 = build("ubuntu", "0000000001");
        b2.builder = None;
        b2.formats = vec![];
        b2.state = BuildState::Building;
        let bs = vec![b2, build("debian", BID)];
        let paused: HashSet<String> = ["ubuntu".to_string()].into();
        let t = dib_image_list(&bs, &paused, NOW);
        assert_eq!(
            t.render_text(),
            "+-----------------------------------------+--------+---------------------+-----------+--------+-------------+\n\
             | ID                                      | Image  | Builder             | Formats   | State  | Age         |\n\
             +-----------------------------------------+--------+---------------------+-----------+--------+-------------+\n\
             | debian-5c8a9ad4b8e44b5c9cbb6fb3f6a9f1a0 | debian | builder.example.org | qcow2,raw | ready  | 00:00:01:01 |\n\
             | ubuntu-0000000001                       | ubuntu | None                |           | paused | 00:00:01:01 |\n\
             +-----------------------------------------+--------+---------------------+-----------+--------+-------------+"
        );
        let v: Value = serde_json::from_str(&t.render_json()).unwrap();
        let keys: Vec<&str> = v[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["id", "image", "builder", "formats", "state", "age"]);
        assert_eq!(v[0]["formats"], json!(["qcow2", "raw"]));
        assert_eq!(v[0]["age"], json!(1_700_099_939i64));
        assert_eq!(v[1]["builder"], Value::Null);
        assert_eq!(v[1]["state"], json!("paused"));
    }

    #[test]
    fn image_status_text_and_json() {
        let entries = vec![
            ImageStatusEntry {
                image: "ubuntu".into(),
                paused: true,
                build_request: None,
            },
            ImageStatusEntry {
                image: "debian".into(),
                paused: false,
                build_request: Some(BuildRequest {
                    state: BuildRequestState::Pending,
                    state_time: NOW - 120.5,
                }),
            },
        ];
        let t = image_status(&entries, NOW);
        assert_eq!(
            t.render_text(),
            "+--------+--------+---------------+-------------------+\n\
             | Image  | Paused | Build Request | Build Request Age |\n\
             +--------+--------+---------------+-------------------+\n\
             | debian | False  | pending       | 00:00:02:01       |\n\
             | ubuntu | True   |               |                   |\n\
             +--------+--------+---------------+-------------------+"
        );
        assert_eq!(
            t.render_json(),
            r#"[{"image": "debian", "paused": false, "build_request": "pending", "build_request_age": 1700099879}, {"image": "ubuntu", "paused": true, "build_request": null, "build_request_age": null}]"#
        );
    }

    #[test]
    fn alien_images() {
        let t = alien_image_list(&[AlienImage {
            provider: "cloud-a".into(),
            name: "old-image".into(),
            id: "6f1e".into(),
        }]);
        assert_eq!(
            t.render_text(),
            "+----------+-----------+----------+\n\
             | Provider | Name      | Image ID |\n\
             +----------+-----------+----------+\n\
             | cloud-a  | old-image | 6f1e     |\n\
             +----------+-----------+----------+"
        );
        assert_eq!(t.keys(), ["provider", "name", "image_id"]);
    }

    #[test]
    fn export_document() {
        let mut b = build("debian", BID);
        b.state_time = 1.5;
        b.formats = vec!["qcow2".into()];
        b.builder_id = None;
        let mut u = upload("debian", "cloud-a", 3);
        u.state_time = 2.0;
        let paused: HashSet<String> = ["debian".to_string()].into();
        let doc = export_image_data([&b], [&u], &paused);
        let v: Value = serde_json::from_str(&doc).unwrap();
        let m = v.as_object().unwrap();
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "/nodepool/images/debian/builds/5c8a9ad4b8e44b5c9cbb6fb3f6a9f1a0",
                "/nodepool/images/debian/builds/5c8a9ad4b8e44b5c9cbb6fb3f6a9f1a0/providers/cloud-a/images/0000000003",
                "/nodepool/images/debian/pause",
            ]
        );
        assert_eq!(m["/nodepool/images/debian/pause"], json!(""));
        let build_data = m[keys[0]].as_str().unwrap();
        assert_eq!(build_data.as_bytes(), b.to_json().as_slice());
        assert!(doc.starts_with("{\"/nodepool/images/debian/builds/"));
        assert!(doc.contains(": \"{\\\"state\\\": \\\"ready\\\", "));
        assert_eq!(export_image_data([], [], &HashSet::new()), "{}");
    }
}
