//! `export-image-data` / `import-image-data`: moving the image records (builds, uploads,
//! pause flags) to a new ZooKeeper. The file is a JSON object `{znode path: data}`.
//!
//! Differences from Nodepool, on purpose: the export truncates an existing file (Python
//! leaves trailing bytes of a longer old file) and sets mode 0600 even on an existing
//! file; the import checks the whole file before it writes anything (every path one the
//! export writes, made of valid names; every record readable by the daemons' reader;
//! upload ids at most [`MAX_IMPORT_UPLOAD_ID`]; none already existing) instead of
//! failing half-way, and raises the upload counters with transactions of many
//! create/delete pairs instead of one round trip per number.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use color_eyre::eyre::{eyre, Result, WrapErr};
use futures::stream::{self, StreamExt};
use nodepool_shared::listing::export_image_data;
use nodepool_shared::model::ids::SEQUENCE_WIDTH;
use nodepool_shared::model::paths::{classify, ZkPath};
use nodepool_shared::model::{
    paths, split_sequence, ImageBuild, ImageUpload, ModelError, UploadId,
};
use nodepool_shared::zk::{CreateKind, Op, ZkClient, ZkError, ZkResult, ZkStore};

use super::args::znode_name_problem;
use super::context::{print_out, Session};
use super::read::image_tree;

/// `nodepool export-image-data PATH`.
pub async fn export(s: &Session, path: &Path) -> Result<()> {
    let tree = image_tree(&s.store).await?;
    let doc = export_image_data(tree.builds.iter(), tree.uploads.iter(), &tree.paused);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .wrap_err_with(|| format!("cannot open {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .wrap_err_with(|| format!("cannot set mode 0600 on {}", path.display()))?;
    f.write_all(doc.as_bytes())
        .and_then(|_| f.sync_all())
        .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The largest upload id `import-image-data` accepts. ZooKeeper's sequence counter is a
/// signed 32-bit number (2147483647 at most), and raising a directory's counter to N
/// means creating and deleting N children (ZooKeeper offers no other way), some seconds
/// per 100,000; an upload directory belongs to one build and one provider and never comes
/// near that many uploads, so an id above this is a damaged file, refused before
/// anything is written.
pub const MAX_IMPORT_UPLOAD_ID: i64 = 100_000;

/// Create/delete pairs of a throw-away child in one transaction while raising a counter
/// (each create raises it by one). ZooKeeper spends about the same time per operation
/// whatever the batching (tens of microseconds); a few mid-sized transactions in flight
/// were the fastest of the sizes measured, far below its 1 MB request limit.
const BUMP_PAIRS: usize = 200;

/// Transactions in flight while raising a counter.
const BUMP_IN_FLIGHT: usize = 4;

/// Name of the throw-away child (never a sequence, so never an upload id).
const BUMP_CHILD: &str = "import-counter";

/// What one entry of the file is, once checked.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    /// `…/<image>/pause` (any data).
    Pause,
    /// `…/<image>/builds/<build-id>`: a build record.
    Build,
    /// `…/providers/<provider>/images/<upload-id>`: an upload record, in `dir`.
    Upload { dir: String, number: i64 },
}

/// Checks one entry of an import file: a path the export writes (a pause flag, a build,
/// an upload) made of valid znode names, an upload id in range, and data that the
/// daemons' reader accepts as that record. The error names the path.
fn check_entry(path: &str, data: &str) -> Result<Entry, String> {
    let Some(rest) = path.strip_prefix(&format!("{}/", paths::IMAGES)) else {
        return Err(format!("{path}: not a path below {}", paths::IMAGES));
    };
    for part in rest.split('/') {
        if let Some(why) = znode_name_problem(part) {
            return Err(format!("{path}: path component `{part}` {why}"));
        }
    }
    let record = |r: Result<Option<()>, ModelError>| match r {
        Ok(Some(())) => Ok(()),
        Ok(None) => Err(format!("{path}: empty data (expected a JSON object)")),
        Err(e) => Err(format!("{path}: {e}")),
    };
    match classify(path) {
        ZkPath::Pause(_) => Ok(Entry::Pause),
        ZkPath::Build(image, id) => {
            record(ImageBuild::from_json(&image, &id, data.as_bytes()).map(|b| b.map(|_| ())))?;
            Ok(Entry::Build)
        }
        ZkPath::Upload {
            image,
            build_id,
            provider,
            upload_id,
        } => {
            let number = upload_number(&upload_id).map_err(|why| format!("{path}: {why}"))?;
            record(
                ImageUpload::from_json(&image, &build_id, &provider, &upload_id, data.as_bytes())
                    .map(|u| u.map(|_| ())),
            )?;
            Ok(Entry::Upload {
                dir: paths::provider_uploads(&image, &build_id, &provider),
                number,
            })
        }
        _ => Err(format!(
            "{path}: not an image build, upload or pause flag (export-image-data writes only those)"
        )),
    }
}

/// The number of an upload id: 10 digits, at most [`MAX_IMPORT_UPLOAD_ID`].
fn upload_number(id: &UploadId) -> Result<i64, String> {
    let s = id.as_str();
    if s.len() != SEQUENCE_WIDTH || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "upload id `{s}` is not a ZooKeeper sequence number (10 digits)"
        ));
    }
    let n: i64 = s
        .parse()
        .map_err(|_| format!("upload id `{s}` is not a number"))?;
    if n > i64::from(i32::MAX) {
        return Err(format!(
            "upload id {s} is beyond ZooKeeper's sequence counter (2147483647 at most)"
        ));
    }
    if n > MAX_IMPORT_UPLOAD_ID {
        return Err(format!(
            "upload id {s} is above {MAX_IMPORT_UPLOAD_ID}: no upload directory gets that many \
             uploads, and its sequence counter would have to be raised that far; check the file"
        ));
    }
    Ok(n)
}

/// Checks every entry (see [`check_entry`]); the error names the first bad one and how
/// many more there are. Returns the highest upload number of each upload directory.
fn check_doc(doc: &BTreeMap<String, String>) -> Result<BTreeMap<String, i64>> {
    let mut highest: BTreeMap<String, i64> = BTreeMap::new();
    let mut problems = Vec::new();
    for (path, data) in doc {
        match check_entry(path, data) {
            Ok(Entry::Upload { dir, number }) => {
                let h = highest.entry(dir).or_insert(number);
                *h = (*h).max(number);
            }
            Ok(_) => {}
            Err(e) => problems.push(e),
        }
    }
    for (path, data) in doc {
        if let ZkPath::Upload {
            image, build_id, ..
        } = classify(path)
        {
            let build = paths::build(&image, &build_id);
            if !doc.contains_key(&build) && check_entry(path, data).is_ok() {
                problems.push(format!(
                    "{path}: its build {build} is not in the file (export-image-data writes both)"
                ));
            }
        }
    }
    match problems.as_slice() {
        [] => Ok(highest),
        [one] => Err(eyre!("refusing to import: {one}")),
        [first, rest @ ..] => Err(eyre!(
            "refusing to import: {first} (and {} more bad entries)",
            rest.len()
        )),
    }
}

/// Raises the sequence counter of `dir` so that the next sequential child gets a number
/// above `highest`. ZooKeeper numbers a sequential child by how many children the
/// directory ever had created (deletes do not count; the `cversion` of its stat counts
/// both, so it cannot be compared with an id). So, as Nodepool does, we create children:
/// a sequential probe (created and deleted) tells the current number, then a throw-away
/// child is created and deleted [`BUMP_PAIRS`] times per transaction (all or nothing: no
/// leftovers) until a probe returns at least `highest`. Refuses a `highest` above
/// [`MAX_IMPORT_UPLOAD_ID`].
pub async fn bump_sequence(client: &ZkClient, dir: &str, highest: i64) -> ZkResult<()> {
    if highest > MAX_IMPORT_UPLOAD_ID {
        return Err(ZkError::Corrupt(format!(
            "refusing to raise the sequence counter of {dir} to {highest} (at most {MAX_IMPORT_UPLOAD_ID})"
        )));
    }
    client.ensure_path(dir).await?;
    let child = format!("{dir}/{BUMP_CHILD}");
    loop {
        let number = probe_sequence(client, dir).await?;
        if number >= highest {
            return Ok(());
        }
        let mut batches = Vec::new();
        let mut missing = highest - number;
        while missing > 0 {
            let pairs = usize::try_from(missing).map_or(BUMP_PAIRS, |m| m.min(BUMP_PAIRS));
            batches.push(pairs);
            missing -= pairs as i64;
        }
        let child = child.as_str();
        let runs = batches.into_iter().map(|pairs| async move {
            let mut ops = Vec::with_capacity(2 * pairs);
            for _ in 0..pairs {
                ops.push(Op::Create {
                    path: child.to_string(),
                    data: Vec::new(),
                    kind: CreateKind::Persistent,
                });
                ops.push(Op::Delete {
                    path: child.to_string(),
                    version: None,
                });
            }
            client.multi(&ops).await
        });
        let done: Vec<_> = stream::iter(runs)
            .buffer_unordered(BUMP_IN_FLIGHT)
            .collect()
            .await;
        done.into_iter().collect::<ZkResult<Vec<_>>>()?;
    }
}

/// Creates and deletes a sequential child of `dir`; returns its number.
async fn probe_sequence(client: &ZkClient, dir: &str) -> ZkResult<i64> {
    let made = client
        .create_sequential(&format!("{dir}/"), b"", false)
        .await?;
    client.delete(&made, None).await?;
    let name = made.rsplit('/').next().unwrap_or_default();
    split_sequence(name)
        .and_then(|(_, seq)| seq.parse().ok())
        .ok_or_else(|| ZkError::Corrupt(format!("ZooKeeper created {made}: no sequence number")))
}

/// `nodepool import-image-data PATH`.
pub async fn import(s: &Session, path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .wrap_err_with(|| format!("cannot read {}", path.display()))?;
    let doc: BTreeMap<String, String> = serde_json::from_str(&text).wrap_err_with(|| {
        format!(
            "{}: not an export-image-data file (expected a JSON object of strings)",
            path.display()
        )
    })?;
    import_doc(&s.store, &doc)
        .await
        .wrap_err_with(|| format!("{}: nothing imported", path.display()))?;
    print_out(&format!("Imported {} records", doc.len()))
}

/// Checks and writes an import document (see the module doc).
pub async fn import_doc(store: &ZkStore, doc: &BTreeMap<String, String>) -> Result<()> {
    let highest = check_doc(doc)?;
    let client = store.client();
    let checks = doc
        .keys()
        .map(|k| async move { (k, client.exists(k).await) });
    let found: Vec<_> = stream::iter(checks).buffered(64).collect().await;
    let mut existing = Vec::new();
    for (k, r) in found {
        if r?.is_some() {
            existing.push(k.as_str());
        }
    }
    if let Some(first) = existing.first() {
        return Err(eyre!(
            "refusing to import: {} of the records already exist in ZooKeeper (e.g. {first})",
            existing.len()
        ));
    }
    let images: BTreeSet<String> = doc
        .keys()
        .filter_map(|k| match classify(k) {
            ZkPath::Pause(image) | ZkPath::Build(image, _) => Some(paths::image(&image)),
            _ => None,
        })
        .collect();
    let mut new_images = Vec::new();
    for image in images {
        if client.exists(&image).await?.is_none() {
            new_images.push(image);
        }
    }
    let mut written = Vec::new();
    match write_doc(client, doc, &highest, &mut written).await {
        Ok(()) => Ok(()),
        Err(e) => {
            // Take back what was written: each build with everything below it, the
            // flags, and the image znodes that did not exist before.
            for path in written.iter().rev().chain(new_images.iter()) {
                if let Err(undo) = client.delete_recursive(path).await {
                    tracing::warn!("cannot remove {path} again: {undo}");
                }
            }
            Err(e)
        }
    }
}

/// Writes a checked document: builds and flags first (sorted by path), then the counters
/// (which create the upload directories below the builds), then the uploads. The builds
/// and flags created are pushed to `written`.
async fn write_doc(
    client: &ZkClient,
    doc: &BTreeMap<String, String>,
    highest: &BTreeMap<String, i64>,
    written: &mut Vec<String>,
) -> Result<()> {
    let is_upload = |k: &str| matches!(classify(k), ZkPath::Upload { .. });
    for (k, v) in doc.iter().filter(|(k, _)| !is_upload(k)) {
        create(client, k, v).await?;
        written.push(k.clone());
    }
    for (dir, n) in highest {
        bump_sequence(client, dir, *n)
            .await
            .wrap_err_with(|| format!("cannot raise the sequence counter of {dir}"))?;
    }
    for (k, v) in doc.iter().filter(|(k, _)| is_upload(k)) {
        create(client, k, v).await?;
    }
    Ok(())
}

async fn create(client: &ZkClient, path: &str, data: &str) -> Result<()> {
    client
        .create_persistent(path, data.as_bytes())
        .await
        .wrap_err_with(|| format!("cannot create {path}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILD: &str = "/nodepool/images/img/builds/abc";
    const UPLOADS: &str = "/nodepool/images/img/builds/abc/providers/p1/images";

    fn upload(id: &str) -> String {
        format!("{UPLOADS}/{id}")
    }

    #[test]
    fn entries_of_each_kind() {
        assert_eq!(
            check_entry("/nodepool/images/img/pause", ""),
            Ok(Entry::Pause)
        );
        assert_eq!(
            check_entry(BUILD, r#"{"state": "ready", "state_time": 1}"#),
            Ok(Entry::Build)
        );
        assert_eq!(
            check_entry(&upload("0000000007"), r#"{"state": "ready"}"#),
            Ok(Entry::Upload {
                dir: UPLOADS.into(),
                number: 7
            })
        );
    }

    #[test]
    fn bad_entries_name_the_path() {
        let bad = [
            (upload("9999999999"), r#"{"state": "ready"}"#, "2147483647"),
            (
                upload("0002000000"),
                r#"{"state": "ready"}"#,
                "above 100000",
            ),
            (upload("12"), r#"{"state": "ready"}"#, "10 digits"),
            (upload("0000000001"), "not json at all", "invalid JSON"),
            (upload("0000000001"), "[1]", "expected a JSON object"),
            (upload("0000000001"), r#"{"state": 3}"#, "`state`"),
            (upload("0000000001"), "", "empty data"),
            (BUILD.to_string(), "not json at all", "invalid JSON"),
            (BUILD.to_string(), r#"{"state": "exploded"}"#, "`state`"),
            (
                "/nodepool/images/img/request-build".into(),
                "",
                "not an image build",
            ),
            ("/nodepool/images/img".into(), "", "not an image build"),
            (
                "/nodepool/nodes/0000000001".into(),
                "{}",
                "not a path below",
            ),
            ("/nodepool/images/../nodes/x".into(), "", "`..`"),
            (
                "/nodepool/images/img//builds/x".into(),
                "",
                "must not be empty",
            ),
            (
                "/nodepool/images/img/builds/x\u{1}".into(),
                "{}",
                "character",
            ),
        ];
        for (path, data, expected) in bad {
            let e = check_entry(&path, data).unwrap_err();
            assert!(e.starts_with(&path), "{e}");
            assert!(e.contains(expected), "{path}: {e} lacks {expected}");
        }
    }

    #[test]
    fn the_whole_file_is_checked() {
        let mut doc = BTreeMap::new();
        doc.insert(BUILD.to_string(), r#"{"state": "ready"}"#.to_string());
        doc.insert(upload("0000000003"), r#"{"state": "ready"}"#.to_string());
        doc.insert(upload("0000000009"), r#"{"state": "ready"}"#.to_string());
        let highest = check_doc(&doc).unwrap();
        assert_eq!(highest.get(UPLOADS), Some(&9));
        doc.insert(upload("0000000010"), "x".into());
        doc.insert(upload("0000000011"), "y".into());
        let e = check_doc(&doc).unwrap_err().to_string();
        assert!(e.contains("0000000010") && e.contains("1 more"), "{e}");
        let mut orphan = BTreeMap::new();
        orphan.insert(upload("0000000003"), r#"{"state": "ready"}"#.to_string());
        let e = check_doc(&orphan).unwrap_err().to_string();
        assert!(e.contains("is not in the file"), "{e}");
    }
}
