//! `export-image-data` / `import-image-data`: moving the image records (builds, uploads,
//! pause flags) to a new ZooKeeper. The file is a JSON object `{znode path: data}`.
//!
//! Differences from Nodepool, on purpose: the export truncates an existing file (Python
//! leaves trailing bytes of a longer old file) and sets mode 0600 even on an existing
//! file; the import checks everything first (paths under `/nodepool/images/`, none
//! already existing) instead of failing half-way.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use color_eyre::eyre::{eyre, Result, WrapErr};
use futures::stream::{self, StreamExt};
use nodepool_shared::listing::export_image_data;
use nodepool_shared::model::{paths, split_sequence};
use nodepool_shared::zk::{ZkClient, ZkResult, ZkStore};

use super::context::{print_out, Session};
use super::read::image_tree;

/// Throw-away sequential znodes created at once while raising a counter.
const BUMP_BATCH: i64 = 256;

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

/// The upload directory and upload number of an upload path
/// (`…/builds/<b>/providers/<p>/images/<seq10>`).
fn upload_dir_and_number(path: &str) -> Option<(&str, i64)> {
    let (dir, name) = path.rsplit_once('/')?;
    if !dir.ends_with("/images") || !dir.contains("/builds/") || !dir.contains("/providers/") {
        return None;
    }
    let (prefix, seq) = split_sequence(name)?;
    if !prefix.is_empty() {
        return None;
    }
    Some((dir, seq.parse().ok()?))
}

/// Raises the sequence counter of `dir` so that the next sequential child gets a number
/// above `highest`: ZooKeeper numbers a sequential child with the parent's `cversion`,
/// which every child create and delete increments, so we create and delete throw-away
/// sequential children (in pipelined batches) until `cversion > highest`.
pub async fn bump_sequence(client: &ZkClient, dir: &str, highest: i64) -> ZkResult<()> {
    client.ensure_path(dir).await?;
    let prefix = format!("{dir}/");
    loop {
        let cversion = client
            .exists(dir)
            .await?
            .map_or(0, |st| i64::from(st.cversion));
        if cversion > highest {
            return Ok(());
        }
        let n = ((highest - cversion) / 2 + 1).clamp(1, BUMP_BATCH);
        let creates = (0..n).map(|_| client.create_sequential(&prefix, b"", false));
        let made: Vec<_> = stream::iter(creates).buffered(64).collect().await;
        let made = made.into_iter().collect::<ZkResult<Vec<_>>>()?;
        let deletes = made.iter().map(|p| client.delete(p, None));
        let gone: Vec<_> = stream::iter(deletes).buffered(64).collect().await;
        gone.into_iter().collect::<ZkResult<Vec<_>>>()?;
    }
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
    import_doc(&s.store, &doc).await?;
    print_out(&format!("Imported {} records", doc.len()))
}

/// Checks and writes an import document (see the module doc).
pub async fn import_doc(store: &ZkStore, doc: &BTreeMap<String, String>) -> Result<()> {
    let root = format!("{}/", paths::IMAGES);
    if let Some(bad) = doc
        .keys()
        .find(|k| !k.starts_with(&root) || k.contains("//") || k.ends_with('/'))
    {
        return Err(eyre!(
            "refusing to import {bad}: not a path below {}",
            paths::IMAGES
        ));
    }
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
    let mut highest: BTreeMap<&str, i64> = BTreeMap::new();
    for k in doc.keys() {
        if let Some((dir, n)) = upload_dir_and_number(k) {
            let h = highest.entry(dir).or_insert(n);
            *h = (*h).max(n);
        }
    }
    // Builds and flags first (sorted by path), then the counters (which create the upload
    // directories below the builds), then the uploads.
    for (k, v) in doc
        .iter()
        .filter(|(k, _)| upload_dir_and_number(k).is_none())
    {
        create(client, k, v).await?;
    }
    for (dir, n) in &highest {
        bump_sequence(client, dir, *n)
            .await
            .wrap_err_with(|| format!("cannot raise the sequence counter of {dir}"))?;
    }
    for (k, v) in doc
        .iter()
        .filter(|(k, _)| upload_dir_and_number(k).is_some())
    {
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

    #[test]
    fn upload_paths() {
        let p = "/nodepool/images/img/builds/abc/providers/p1/images/0000000007";
        assert_eq!(
            upload_dir_and_number(p),
            Some(("/nodepool/images/img/builds/abc/providers/p1/images", 7))
        );
        assert_eq!(
            upload_dir_and_number("/nodepool/images/img/builds/abc"),
            None
        );
        assert_eq!(upload_dir_and_number("/nodepool/images/img/pause"), None);
        assert_eq!(
            upload_dir_and_number("/nodepool/images/img/builds/abc/providers/p1/images/lock"),
            None
        );
    }
}
