//! The sync task of one static provider: runs [`StaticProvider::sync`] at start, then
//! whenever a node (or a node lock) changes in the tree cache — a node returned and
//! deleted, removed by hand, or allocated — or the config is reloaded, and when the
//! retry delay of a failed host ends; [`Intervals::cleanup`] is only a fallback tick.
//! So a used node's slot is registered again as soon as the DeletedNodeWorker deleted
//! it (Nodepool re-registers it from its delete notification), and a node deleted by
//! hand is replaced at once (Nodepool: at its next cleanup pass).
//!
//! [`Intervals::cleanup`]: crate::launcher::runtime::Intervals::cleanup

use std::sync::Arc;

use nodepool_shared::zk::CacheKind;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;

use super::provider::StaticProvider;
use crate::launcher::runtime::LauncherContext;
use nodepool_shared::sync::MutexExt;

/// The task name of a provider's sync (in the state dump).
pub fn task_name(provider: &str) -> String {
    format!("StaticSync.{provider}")
}

/// True for cache events that may change a static provider's slots.
fn relevant(kind: CacheKind) -> bool {
    matches!(
        kind,
        CacheKind::Node | CacheKind::NodeLock | CacheKind::Tree
    )
}

/// Runs the sync of `provider` until `stop` (or the launcher's cancel) fires.
pub async fn run(
    ctx: Arc<LauncherContext>,
    provider: Arc<StaticProvider>,
    stop: CancellationToken,
) {
    let task = task_name(provider.name());
    let mut events = ctx.cache.subscribe();
    let mut config = ctx.config.clone();
    let mut passes: u64 = 0;
    // Once the cache stopped (shutdown), only the timers and the config are left.
    let mut events_open = true;
    loop {
        config.borrow_and_update();
        let current = ctx.config();
        if let Some(p) = current.static_provider(provider.name()) {
            let report = provider.sync(&ctx, p).await;
            passes += 1;
            let failing = provider.failing_hosts();
            ctx.set_task_state(
                &task,
                format!(
                    "{passes} passes; last: registered {}, updated {}, removed {}; failing hosts: {}",
                    report.registered.len(),
                    report.updated.len(),
                    report.removed.len(),
                    if failing.is_empty() {
                        "none".to_string()
                    } else {
                        failing
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            );
        }
        let wake_at = provider
            .next_retry()
            .unwrap_or_else(|| tokio::time::Instant::now() + ctx.intervals.cleanup)
            .min(tokio::time::Instant::now() + ctx.intervals.cleanup);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return finish(&ctx, &task),
                _ = ctx.cancel.cancelled() => return finish(&ctx, &task),
                Ok(()) = config.changed() => break,
                _ = tokio::time::sleep_until(wake_at) => break,
                ev = events.recv(), if events_open => match ev {
                    Ok(e) if relevant(e.kind) => break,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => events_open = false,
                },
            }
        }
        // Coalesce a burst of events into one pass.
        while let Ok(_) | Err(TryRecvError::Lagged(_)) = events.try_recv() {}
    }
}

fn finish(ctx: &LauncherContext, task: &str) {
    ctx.task_states.lock_or_recover().remove(task);
}
