//! The builder's slow filesystem work, off the async runtime. Deleting a build removes
//! image files of many gigabytes (and a manifest directory of thousands of files), and
//! listing or pruning a large images or log directory takes a while too: run inline,
//! any of them would stall the scheduler, the ZooKeeper watch and every upload for as
//! long. These async versions of the [`files`] operations run them on tokio's blocking
//! threads and wait for the result.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::files::{self, FilesError, LocalBuild};

/// Runs `work` on a blocking thread; a panic there becomes a [`FilesError`] on `path`.
async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T, FilesError> + Send + 'static,
) -> Result<T, FilesError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| {
            Err(FilesError {
                action: "working on",
                path: path.to_path_buf(),
                source: std::io::Error::other(join),
            })
        })
}

/// [`files::delete_build`] on a blocking thread.
pub async fn delete_build(
    images_dir: &Path,
    image: &str,
    build_id: &str,
) -> Result<Vec<PathBuf>, FilesError> {
    let (dir, image, id) = (
        images_dir.to_path_buf(),
        image.to_string(),
        build_id.to_string(),
    );
    blocking(images_dir, move || files::delete_build(&dir, &image, &id)).await
}

/// [`files::delete_formats`] on a blocking thread.
pub async fn delete_formats(
    images_dir: &Path,
    image: &str,
    build_id: &str,
    formats: BTreeSet<String>,
    keep_formats: BTreeSet<String>,
) -> Result<Vec<PathBuf>, FilesError> {
    let (dir, image, id) = (
        images_dir.to_path_buf(),
        image.to_string(),
        build_id.to_string(),
    );
    blocking(images_dir, move || {
        files::delete_formats(&dir, &image, &id, &formats, &keep_formats)
    })
    .await
}

/// [`files::list_local_builds`] on a blocking thread.
pub async fn list_local_builds(images_dir: &Path) -> Result<Vec<LocalBuild>, FilesError> {
    let dir = images_dir.to_path_buf();
    blocking(images_dir, move || files::list_local_builds(&dir)).await
}

/// [`files::local_build`] on a blocking thread.
pub async fn local_build(
    images_dir: &Path,
    image: &str,
    build_id: &str,
) -> Result<Option<LocalBuild>, FilesError> {
    let (dir, image, id) = (
        images_dir.to_path_buf(),
        image.to_string(),
        build_id.to_string(),
    );
    blocking(images_dir, move || files::local_build(&dir, &image, &id)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn make_build(dir: &Path, image: &str) {
        for ext in ["qcow2", "qcow2.md5", "raw"] {
            std::fs::write(dir.join(format!("{image}-{ID}.{ext}")), b"x").unwrap();
        }
        let manifest = dir.join(format!("{image}-{ID}.d"));
        std::fs::create_dir(&manifest).unwrap();
        std::fs::write(manifest.join("packages"), b"x").unwrap();
    }

    /// The work runs on a blocking thread, never on the runtime's own (single) thread,
    /// so other tasks keep running while gigabytes are removed. (An earlier version
    /// counted log events per thread; tracing's global interest cache made that flaky
    /// when other tests ran in parallel. The thread's identity is the direct fact.)
    #[test]
    fn blocking_work_leaves_the_runtime_thread_free() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let runtime_thread = std::thread::current().id();
        let worker = rt
            .block_on(blocking(
                Path::new("/x"),
                || Ok(std::thread::current().id()),
            ))
            .unwrap();
        assert_ne!(worker, runtime_thread, "the work ran on the runtime thread");
    }

    #[test]
    fn a_panic_in_blocking_work_is_an_error_naming_the_path() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = rt
            .block_on(blocking(
                Path::new("/images/x"),
                || -> Result<(), FilesError> { panic!("boom") },
            ))
            .unwrap_err();
        assert_eq!(err.path, Path::new("/images/x"));
    }

    #[test]
    fn deleting_a_build_removes_its_files() {
        let dir = tempfile::tempdir().unwrap();
        make_build(dir.path(), "img");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let removed = rt.block_on(delete_build(dir.path(), "img", ID)).unwrap();
        assert_eq!(removed.len(), 4);
        assert!(rt
            .block_on(list_local_builds(dir.path()))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn delete_formats_and_listing_off_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        make_build(dir.path(), "img");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let local = local_build(dir.path(), "img", ID).await.unwrap().unwrap();
            assert_eq!(local.formats(), ["qcow2", "raw"].map(String::from).into());
            let removed = delete_formats(
                dir.path(),
                "img",
                ID,
                local.formats(),
                ["raw".to_string()].into(),
            )
            .await
            .unwrap();
            assert_eq!(removed.len(), 2);
            let left = list_local_builds(dir.path()).await.unwrap();
            assert_eq!(left[0].formats(), ["raw".to_string()].into());
        });
    }
}
