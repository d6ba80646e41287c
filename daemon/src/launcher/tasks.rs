//! Tracked tasks and the one way the launcher stops them: whoever owns a task cancels its
//! token, waits for it to end by itself for a grace period, and only then aborts it.
//! Nothing the launcher starts is detached, so a stop (shutdown, or a pool worker whose
//! pool left the config) can never leave a task running beside its replacement.
//!
//! * [`TaskGroup`]: a named set of tasks that any holder can add to (the request handlers
//!   of every pool, the housekeeping workers); finished tasks are reaped as new ones
//!   come, a panic is logged with the task's name.
//! * [`stop_task`]: the same for one task whose handle the caller keeps (a pool worker).
//! * [`drain_set`]: the same for a `JoinSet` a task owns (a handler's launches).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use nodepool_shared::sync::MutexExt;
use tokio::task::{Id, JoinError, JoinHandle, JoinSet};

/// How a stopped task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It ended by itself within the grace period.
    InTime,
    /// It was still running after the grace period and was aborted.
    Aborted,
}

/// Waits up to `grace` for `task` to end (its owner has already asked it to), then aborts
/// it and waits for the abort. Never leaves the task running.
pub async fn stop_task<T>(task: JoinHandle<T>, grace: Duration) -> Stopped {
    stop_task_by(task, tokio::time::Instant::now() + grace).await
}

/// [`stop_task`] with the end of the grace period given as a deadline (several tasks
/// told to stop together share one).
pub async fn stop_task_by<T>(mut task: JoinHandle<T>, deadline: tokio::time::Instant) -> Stopped {
    match tokio::time::timeout_at(deadline, &mut task).await {
        Ok(result) => {
            log_join_error(result.err(), "task");
            Stopped::InTime
        }
        Err(_) => {
            task.abort();
            let _ = task.await;
            Stopped::Aborted
        }
    }
}

/// Waits up to `grace` for every task of `set` (already told to stop) and hands their
/// outputs to `done`; then aborts what is left and waits for it. Returns how many were
/// aborted.
pub async fn drain_set<T: 'static>(
    set: &mut JoinSet<T>,
    grace: Duration,
    mut done: impl FnMut(T),
) -> usize {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok(v))) => done(v),
            Ok(Some(Err(e))) => log_join_error(Some(e), "task"),
            Ok(None) => return 0,
            Err(_) => {
                let left = set.len();
                set.shutdown().await;
                return left;
            }
        }
    }
}

fn log_join_error(e: Option<JoinError>, name: &str) {
    match e {
        Some(e) if e.is_panic() => tracing::error!(task = name, error = %e, "task panicked"),
        _ => {}
    }
}

/// A named set of tracked tasks (see the module doc).
pub struct TaskGroup {
    name: &'static str,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    set: JoinSet<()>,
    names: HashMap<Id, String>,
}

impl Inner {
    /// Collects the tasks that ended (their names go; a panic is logged).
    fn reap(&mut self) {
        while let Some(r) = self.set.try_join_next_with_id() {
            let id = match &r {
                Ok((id, ())) => *id,
                Err(e) => e.id(),
            };
            let name = self.names.remove(&id).unwrap_or_default();
            log_join_error(r.err(), &name);
        }
    }
}

impl TaskGroup {
    /// An empty group; `name` appears in its log lines.
    pub fn new(name: &'static str) -> Self {
        TaskGroup {
            name,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock_or_recover()
    }

    /// Runs `fut` as a task of this group, known as `name`.
    pub fn spawn<F>(&self, name: impl Into<String>, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut inner = self.inner();
        inner.reap();
        let handle = inner.set.spawn(fut);
        inner.names.insert(handle.id(), name.into());
    }

    /// Names of the tasks still running, sorted.
    pub fn running(&self) -> Vec<String> {
        let mut inner = self.inner();
        inner.reap();
        let mut names: Vec<String> = inner.names.values().cloned().collect();
        names.sort();
        names
    }

    /// Waits up to `grace` for every task (their owner has cancelled them), then aborts
    /// the rest and logs their names. Returns the names of the aborted tasks. Tasks
    /// spawned while stopping are waited for too.
    pub async fn stop(&self, grace: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + grace;
        let mut aborted = Vec::new();
        loop {
            let Inner { mut set, mut names } = std::mem::take(&mut *self.inner());
            if set.is_empty() {
                return aborted;
            }
            loop {
                match tokio::time::timeout_at(deadline, set.join_next_with_id()).await {
                    Ok(Some(r)) => {
                        let id = match &r {
                            Ok((id, ())) => *id,
                            Err(e) => e.id(),
                        };
                        let name = names.remove(&id).unwrap_or_default();
                        log_join_error(r.err(), &name);
                    }
                    Ok(None) => break,
                    Err(_) => {
                        let mut left: Vec<String> = names.drain().map(|(_, n)| n).collect();
                        left.sort();
                        tracing::warn!(group = self.name, tasks = ?left, ?grace,
                            "tasks did not stop within the grace period; aborting them");
                        set.shutdown().await;
                        aborted.extend(left);
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn group_waits_for_cooperative_tasks_and_aborts_the_stubborn_one() {
        let group = TaskGroup::new("test");
        let cancel = CancellationToken::new();
        let polite_done = Arc::new(AtomicBool::new(false));
        let (c, d) = (cancel.clone(), polite_done.clone());
        group.spawn("polite", async move {
            c.cancelled().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            d.store(true, Ordering::SeqCst);
        });
        // Ignores the token: only an abort ends it.
        let stubborn_ran_to_end = Arc::new(AtomicBool::new(false));
        let s = stubborn_ran_to_end.clone();
        group.spawn("stubborn", async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            s.store(true, Ordering::SeqCst);
        });
        assert_eq!(group.running(), ["polite", "stubborn"]);
        cancel.cancel();
        let t = std::time::Instant::now();
        let aborted = group.stop(Duration::from_millis(300)).await;
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(aborted, ["stubborn"]);
        assert!(
            polite_done.load(Ordering::SeqCst),
            "polite task finished its cleanup"
        );
        assert!(!stubborn_ran_to_end.load(Ordering::SeqCst));
        assert!(group.running().is_empty());
    }

    #[tokio::test]
    async fn finished_tasks_are_reaped() {
        let group = TaskGroup::new("test");
        group.spawn("quick", async {});
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(group.running().is_empty());
        assert!(group.stop(Duration::from_millis(10)).await.is_empty());
    }

    #[tokio::test]
    async fn stop_task_aborts_after_grace() {
        let stubborn = tokio::spawn(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        assert_eq!(
            stop_task(stubborn, Duration::from_millis(50)).await,
            Stopped::Aborted
        );
        let quick = tokio::spawn(async {});
        assert_eq!(
            stop_task(quick, Duration::from_secs(5)).await,
            Stopped::InTime
        );
    }

    #[tokio::test]
    async fn drain_set_collects_outputs_then_aborts() {
        let mut set = JoinSet::new();
        set.spawn(async { 1 });
        set.spawn(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            2
        });
        let mut got = Vec::new();
        let aborted = drain_set(&mut set, Duration::from_millis(100), |v| got.push(v)).await;
        assert_eq!(got, [1]);
        assert_eq!(aborted, 1);
        assert!(set.is_empty());
    }
}
