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
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::Layer;

    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    /// Counts the "removed DIB file" events logged on the thread it is installed on.
    #[derive(Clone, Default)]
    struct Removals(Arc<Mutex<usize>>);

    impl<S: tracing::Subscriber> Layer<S> for Removals {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            struct Message(bool);
            impl tracing::field::Visit for Message {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    if f.name() == "message" && format!("{v:?}").contains("removed DIB file") {
                        self.0 = true;
                    }
                }
            }
            let mut m = Message(false);
            event.record(&mut m);
            if m.0 {
                *self.0.lock().unwrap() += 1;
            }
        }
    }

    fn make_build(dir: &Path, image: &str) {
        for ext in ["qcow2", "qcow2.md5", "raw"] {
            std::fs::write(dir.join(format!("{image}-{ID}.{ext}")), b"x").unwrap();
        }
        let manifest = dir.join(format!("{image}-{ID}.d"));
        std::fs::create_dir(&manifest).unwrap();
        std::fs::write(manifest.join("packages"), b"x").unwrap();
    }

    /// The deletes run on a blocking thread, never on the runtime's own (single) thread,
    /// so other tasks keep running while gigabytes are removed. The control case shows
    /// the probe sees a delete that does run on the runtime thread.
    #[test]
    fn deleting_a_build_leaves_the_runtime_thread_free() {
        let dir = tempfile::tempdir().unwrap();
        make_build(dir.path(), "inline");
        make_build(dir.path(), "offloaded");
        let removals = Removals::default();
        let subscriber = tracing_subscriber::registry().with(removals.clone());
        let _guard = tracing::subscriber::set_default(subscriber);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            // Control: the plain function deletes on this thread (4 paths).
            let removed = files::delete_build(dir.path(), "inline", ID).unwrap();
            assert_eq!(removed.len(), 4);
            assert_eq!(*removals.0.lock().unwrap(), 4);
            let removed = delete_build(dir.path(), "offloaded", ID).await.unwrap();
            assert_eq!(removed.len(), 4);
        });
        assert_eq!(
            *removals.0.lock().unwrap(),
            4,
            "the offloaded delete ran on the runtime thread"
        );
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
