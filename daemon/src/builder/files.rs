//! The local image files of builds in `images-dir`: finding which builds this builder
//! has on disk (uploads only happen from a builder holding the files, and cleanup
//! removes files of builds that are gone), and deleting a build's files or some of its
//! formats (`delete-after-upload` with `keep-formats`).
//!
//! A build `<image>-<build-id>` owns `<image>-<build-id>.<ext>` image files, their
//! `.<ext>.md5` / `.<ext>.sha256` checksum sidecars and the `<image>-<build-id>.d`
//! manifest directory. Build ids are 32 hex digits (`uuid4().hex`); 10-digit sequences
//! of old Nodepool versions are recognised too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Checksum sidecar extensions.
pub const CHECKSUM_EXTENSIONS: [&str; 2] = ["md5", "sha256"];
/// Extension of the manifest directory.
pub const MANIFEST_EXTENSION: &str = "d";

/// A filesystem operation on an images-dir path failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct FilesError {
    /// What was being done (`listing`, `deleting`, …).
    pub action: &'static str,
    /// The path involved.
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// True for a Nodepool build id: 32 lowercase hex digits, or a 10-digit sequence.
pub fn is_build_id(s: &str) -> bool {
    (s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        || (s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit()))
}

/// A file name split into its build and what follows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildFileName<'a> {
    /// Diskimage name.
    pub image: &'a str,
    /// Build id.
    pub build_id: &'a str,
    /// Everything after `<image>-<build-id>.` (`qcow2`, `qcow2.md5`, `d`), empty when
    /// the name is the bare base.
    pub suffix: &'a str,
}

/// Splits `<image>-<build-id>[.<suffix>]`; `None` for names of other shapes (including
/// hidden files). The rightmost `-<build-id>` followed by `.` or the end wins.
pub fn parse_build_file_name(name: &str) -> Option<BuildFileName<'_>> {
    if name.starts_with('.') {
        return None;
    }
    let mut search_end = name.len();
    while let Some(dash) = name[..search_end].rfind('-') {
        let rest = &name[dash + 1..];
        let (id, suffix) = match rest.find('.') {
            Some(dot) => (&rest[..dot], &rest[dot + 1..]),
            None => (rest, ""),
        };
        if dash > 0 && is_build_id(id) {
            return Some(BuildFileName {
                image: &name[..dash],
                build_id: id,
                suffix,
            });
        }
        search_end = dash;
    }
    None
}

/// The files of one build found in `images-dir`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalBuild {
    /// Diskimage name.
    pub image: String,
    /// Build id.
    pub build_id: String,
    /// Image files by extension (`qcow2` → `<dir>/<image>-<id>.qcow2`).
    pub images: BTreeMap<String, PathBuf>,
    /// Checksum sidecars and any other plain files of the build.
    pub other_files: BTreeSet<PathBuf>,
    /// The `.d` manifest directory, when present.
    pub manifest_dir: Option<PathBuf>,
}

impl LocalBuild {
    /// The extensions of the image files present.
    pub fn formats(&self) -> BTreeSet<String> {
        self.images.keys().cloned().collect()
    }

    /// True when the build has at least one image file (Nodepool's test for "the
    /// local files exist on this builder").
    pub fn has_images(&self) -> bool {
        !self.images.is_empty()
    }

    fn add(&mut self, suffix: &str, path: PathBuf, is_dir: bool) {
        if is_dir {
            if suffix == MANIFEST_EXTENSION {
                self.manifest_dir = Some(path);
            }
            return;
        }
        let is_image =
            !suffix.is_empty() && !suffix.contains('.') && !CHECKSUM_EXTENSIONS.contains(&suffix);
        if is_image {
            self.images.insert(suffix.to_string(), path);
        } else {
            self.other_files.insert(path);
        }
    }
}

/// Every build with files in `images_dir`, sorted by image then build id. A missing
/// directory holds no builds.
pub fn list_local_builds(images_dir: &Path) -> Result<Vec<LocalBuild>, FilesError> {
    let mut builds: BTreeMap<(String, String), LocalBuild> = BTreeMap::new();
    scan(images_dir, |parsed, path, is_dir| {
        builds
            .entry((parsed.image.to_string(), parsed.build_id.to_string()))
            .or_insert_with(|| LocalBuild {
                image: parsed.image.to_string(),
                build_id: parsed.build_id.to_string(),
                ..LocalBuild::default()
            })
            .add(parsed.suffix, path, is_dir);
    })?;
    Ok(builds.into_values().collect())
}

/// The files of build `<image>-<build_id>`, or `None` when it has none here.
pub fn local_build(
    images_dir: &Path,
    image: &str,
    build_id: &str,
) -> Result<Option<LocalBuild>, FilesError> {
    let mut build = LocalBuild {
        image: image.to_string(),
        build_id: build_id.to_string(),
        ..LocalBuild::default()
    };
    let mut found = false;
    scan(images_dir, |parsed, path, is_dir| {
        if parsed.image == image && parsed.build_id == build_id {
            found = true;
            build.add(parsed.suffix, path, is_dir);
        }
    })?;
    Ok(found.then_some(build))
}

fn scan(
    images_dir: &Path,
    mut f: impl FnMut(&BuildFileName<'_>, PathBuf, bool),
) -> Result<(), FilesError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FilesError {
            action: "listing",
            path,
            source,
        }
    };
    let entries = match std::fs::read_dir(images_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(images_dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(err(images_dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(parsed) = parse_build_file_name(name) else {
            continue;
        };
        let is_dir = match entry.file_type() {
            Ok(t) => t.is_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err(&entry.path())(e)),
        };
        f(&parsed, entry.path(), is_dir);
    }
    Ok(())
}

fn remove_path(path: &Path, dir: bool) -> Result<bool, FilesError> {
    let result = if dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Ok(()) => {
            tracing::info!(path = %path.display(), "removed DIB file");
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(FilesError {
            action: "deleting",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Deletes every file of build `<image>-<build_id>` (images, checksums, manifest
/// directory). Idempotent; returns what was removed.
pub fn delete_build(
    images_dir: &Path,
    image: &str,
    build_id: &str,
) -> Result<Vec<PathBuf>, FilesError> {
    let Some(build) = local_build(images_dir, image, build_id)? else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for path in build.images.values().chain(build.other_files.iter()) {
        if remove_path(path, false)? {
            removed.push(path.clone());
        }
    }
    if let Some(dir) = &build.manifest_dir {
        if remove_path(dir, true)? {
            removed.push(dir.clone());
        }
    }
    Ok(removed)
}

/// Deletes the image files (and their checksum sidecars) of `formats` of build
/// `<image>-<build_id>`, except those in `keep_formats`; the manifest directory and
/// other formats stay. Idempotent; returns what was removed.
pub fn delete_formats(
    images_dir: &Path,
    image: &str,
    build_id: &str,
    formats: &BTreeSet<String>,
    keep_formats: &BTreeSet<String>,
) -> Result<Vec<PathBuf>, FilesError> {
    let base = format!("{image}-{build_id}");
    let mut removed = Vec::new();
    for ext in formats.difference(keep_formats) {
        let image_path = images_dir.join(format!("{base}.{ext}"));
        let mut paths = vec![image_path.clone()];
        paths.extend(
            CHECKSUM_EXTENSIONS
                .iter()
                .map(|sum| images_dir.join(format!("{base}.{ext}.{sum}"))),
        );
        for path in paths {
            if remove_path(&path, false)? {
                removed.push(path);
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn build_ids() {
        assert!(is_build_id(ID));
        assert!(is_build_id("0000000042"));
        assert!(!is_build_id("0123456789ABCDEF0123456789ABCDEF"));
        assert!(!is_build_id("0123456789abcdef0123456789abcde"));
        assert!(!is_build_id("000000004x"));
    }

    #[test]
    fn parse_names() {
        let p = |s: &'static str| parse_build_file_name(s);
        let name = format!("ubuntu-noble-{ID}.qcow2");
        let parsed = parse_build_file_name(&name).expect("parses");
        assert_eq!(
            (parsed.image, parsed.build_id, parsed.suffix),
            ("ubuntu-noble", ID, "qcow2")
        );
        let name = format!("img.v2-{ID}.qcow2.md5");
        let parsed = parse_build_file_name(&name).expect("parses");
        assert_eq!(
            (parsed.image, parsed.build_id, parsed.suffix),
            ("img.v2", ID, "qcow2.md5")
        );
        let name = format!("img-{ID}");
        assert_eq!(parse_build_file_name(&name).map(|p| p.suffix), Some(""));
        let name = format!("img-{ID}.d");
        assert_eq!(parse_build_file_name(&name).map(|p| p.suffix), Some("d"));
        assert_eq!(p("builder_id.txt"), None);
        assert_eq!(p("img-notanid.qcow2"), None);
        let name = format!("-{ID}.qcow2");
        assert_eq!(parse_build_file_name(&name), None);
        let name = format!(".img-{ID}.qcow2.part");
        assert_eq!(parse_build_file_name(&name), None);
    }
}
