//! Build log retention: before each build, old logs of that image in `build-log-dir`
//! are pruned so that `build-log-retention` of them remain (the new build's log then
//! makes one more, as in Nodepool). A negative retention keeps everything; zero keeps
//! one, like Nodepool's `max(retention, 1)`.
//!
//! Deliberate fixes of Nodepool quirks: only `<image>-<build-id>.log` files of exactly
//! this image count (Nodepool matched the name prefix, so pruning `img` also pruned
//! `img-large` logs), and "old" means oldest modification time (Nodepool sorted by file
//! name, which for uuid build ids is random).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::files::is_build_id;

/// Why pruning failed.
#[derive(Debug, thiserror::Error)]
#[error("pruning build logs in {path}: {source}")]
pub struct PruneError {
    /// The directory or file that failed.
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// True when `file_name` is `<image>-<build-id>.log` for exactly `image`.
pub fn is_log_of(file_name: &str, image: &str) -> bool {
    file_name
        .strip_prefix(image)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.strip_suffix(".log"))
        .is_some_and(is_build_id)
}

/// Deletes the oldest logs of `image` in `log_dir` so that at most `retention` (at
/// least one) remain; `retention < 0` deletes nothing. Returns the deleted paths.
/// A missing directory has nothing to prune.
pub fn prune(log_dir: &Path, image: &str, retention: i64) -> Result<Vec<PathBuf>, PruneError> {
    if retention < 0 {
        return Ok(Vec::new());
    }
    let keep = usize::try_from(retention.max(1)).unwrap_or(usize::MAX);
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PruneError { path, source }
    };
    let entries = match std::fs::read_dir(log_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(log_dir)(e)),
    };
    let mut logs: Vec<(SystemTime, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(err(log_dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_log_of(name, image) {
            continue;
        }
        let path = entry.path();
        let meta = match entry.metadata() {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err(&path)(e)),
        };
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        logs.push((mtime, path));
    }
    if logs.len() <= keep {
        return Ok(Vec::new());
    }
    // Newest first; ties broken by name so the order is stable.
    logs.sort_by(|a, b| b.cmp(a));
    let mut deleted = Vec::new();
    for (_, path) in logs.into_iter().skip(keep) {
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(log = %path.display(), "deleted old build log");
                deleted.push(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(&path)(e)),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn log_name_matching() {
        assert!(is_log_of(&format!("img-{ID}.log"), "img"));
        assert!(is_log_of(&format!("img-a-{ID}.log"), "img-a"));
        assert!(!is_log_of(&format!("img-a-{ID}.log"), "img"));
        assert!(!is_log_of(&format!("img-{ID}.log.1"), "img"));
        assert!(!is_log_of("img-notanid.log", "img"));
        assert!(is_log_of("img-0000000001.log", "img"));
    }

    #[test]
    fn missing_dir_and_negative_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(prune(&dir.path().join("nope"), "img", 1)
            .expect("prune")
            .is_empty());
        std::fs::write(dir.path().join(format!("img-{ID}.log")), "x").expect("write");
        assert!(prune(dir.path(), "img", -1).expect("prune").is_empty());
        assert!(prune(dir.path(), "img", 0).expect("prune").is_empty());
    }
}
