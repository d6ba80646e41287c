//! The scheduler's running builds and uploads: which image, and which (image, provider)
//! pair, has a task right now. Tasks live in a [`JoinSet`] and are remembered by their
//! tokio task id, so a task that panics (or is aborted) frees its key exactly like one
//! that returns — otherwise the scheduler would believe the image or provider busy
//! forever and never schedule it again.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use tokio::task::{Id, JoinSet};

/// What a task works on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskKey {
    /// A build of this image.
    Build(String),
    /// An upload of this image to this provider.
    Upload(String, String),
}

impl std::fmt::Display for TaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskKey::Build(image) => write!(f, "build of {image}"),
            TaskKey::Upload(image, provider) => write!(f, "upload of {image} to {provider}"),
        }
    }
}

/// A task that ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Finished {
    /// What it worked on (no longer running).
    pub key: TaskKey,
    /// `Some(message)` when it panicked or was aborted instead of returning.
    pub failure: Option<String>,
}

/// The running tasks and their keys.
#[derive(Default)]
pub struct Running {
    set: JoinSet<()>,
    keys: HashMap<Id, TaskKey>,
    builds: BTreeSet<String>,
    uploads: BTreeSet<(String, String)>,
}

impl Running {
    /// No tasks.
    pub fn new() -> Running {
        Running::default()
    }

    /// Number of running builds.
    pub fn builds(&self) -> usize {
        self.builds.len()
    }

    /// Number of running uploads.
    pub fn uploads(&self) -> usize {
        self.uploads.len()
    }

    /// True when no task runs.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Whether a build of `image` runs.
    pub fn is_building(&self, image: &str) -> bool {
        self.builds.contains(image)
    }

    /// Whether an upload of `image` to `provider` runs.
    pub fn is_uploading(&self, image: &str, provider: &str) -> bool {
        self.uploads
            .contains(&(image.to_string(), provider.to_string()))
    }

    /// Starts `task` for `key` (which must not be running already).
    pub fn spawn(&mut self, key: TaskKey, task: impl Future<Output = ()> + Send + 'static) {
        match &key {
            TaskKey::Build(image) => {
                self.builds.insert(image.clone());
            }
            TaskKey::Upload(image, provider) => {
                self.uploads.insert((image.clone(), provider.clone()));
            }
        }
        let id = self.set.spawn(task).id();
        self.keys.insert(id, key);
    }

    /// Waits for the next task to end and frees its key; `None` when none runs.
    pub async fn join_next(&mut self) -> Option<Finished> {
        let (id, failure) = match self.set.join_next_with_id().await? {
            Ok((id, ())) => (id, None),
            Err(e) => (e.id(), Some(failure_text(e))),
        };
        let key = self.keys.remove(&id)?;
        match &key {
            TaskKey::Build(image) => {
                self.builds.remove(image);
            }
            TaskKey::Upload(image, provider) => {
                self.uploads.remove(&(image.clone(), provider.clone()));
            }
        }
        Some(Finished { key, failure })
    }

    /// Shutdown: waits up to `grace` for every task to end (they see the cancellation
    /// themselves), then aborts the rest. Returns false if some had to be aborted.
    pub async fn drain(&mut self, grace: Duration) -> bool {
        let drained =
            tokio::time::timeout(grace, async { while self.join_next().await.is_some() {} })
                .await
                .is_ok();
        if !drained {
            self.set.abort_all();
            while self.join_next().await.is_some() {}
        }
        drained
    }
}

/// The panic message of a failed task (or "aborted").
fn failure_text(e: tokio::task::JoinError) -> String {
    if e.is_cancelled() {
        return "aborted".to_string();
    }
    let panic = e.into_panic();
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicked_task_frees_its_key() {
        let mut running = Running::new();
        running.spawn(TaskKey::Build("img".into()), async {
            panic!("boom");
        });
        running.spawn(TaskKey::Upload("img".into(), "p".into()), async {});
        assert!(running.is_building("img"));
        assert!(running.is_uploading("img", "p"));
        let mut ended = Vec::new();
        while let Some(f) = running.join_next().await {
            ended.push(f);
        }
        ended.sort_by_key(|f| f.failure.is_none());
        assert_eq!(
            ended,
            [
                Finished {
                    key: TaskKey::Build("img".into()),
                    failure: Some("panicked: boom".into()),
                },
                Finished {
                    key: TaskKey::Upload("img".into(), "p".into()),
                    failure: None,
                },
            ]
        );
        assert!(!running.is_building("img"));
        assert!(!running.is_uploading("img", "p"));
        assert_eq!((running.builds(), running.uploads()), (0, 0));
        assert!(running.is_empty());
        // The image can be scheduled again.
        running.spawn(TaskKey::Build("img".into()), async {});
        assert!(running.is_building("img"));
    }

    #[tokio::test]
    async fn drain_aborts_what_does_not_stop() {
        let mut running = Running::new();
        running.spawn(TaskKey::Build("stuck".into()), std::future::pending());
        running.spawn(TaskKey::Build("quick".into()), async {});
        assert!(!running.drain(Duration::from_millis(50)).await);
        assert!(running.is_empty());
        assert_eq!(running.builds(), 0);
    }
}
