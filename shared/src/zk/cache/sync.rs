//! The task that keeps a [`super::TreeCache`] in step with ZooKeeper: one persistent
//! recursive watch on `/nodepool`, a pipelined full load, then the watch events applied
//! in order; a resync after every reconnect (events may be lost then, ZOOKEEPER-4698)
//! and a new watch plus resync after every new session.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zookeeper_client as zkc;

use super::queues::{CachePart, CacheQueue};
use super::tree::{decode, presence_only, wants_children, wants_data, Tree, Update};
use super::{Shared, SyncState};
use crate::model::paths::{self, classify, ZkPath};
use crate::zk::client::{join, ConnectionState, PersistentWatcher, ZkClient};
use crate::zk::error::{ZkError, ZkResult};

/// Reads kept in flight during a full load.
const LOAD_PIPELINE: usize = 64;
/// Reads kept in flight while following events.
const FOLLOW_PIPELINE: usize = 256;
/// Pause before retrying after an error.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

type StepFuture = Pin<Box<dyn Future<Output = ZkResult<Update>> + Send>>;

enum Outcome {
    Cancelled,
    /// Reload within the same session and watch (a read failed).
    Resync,
    /// The connection came back within the same session: re-add the watch, then reload.
    Reconnected,
    SessionEnded,
}

/// Runs until cancelled or the client is closed.
pub(super) async fn run(client: ZkClient, shared: Arc<Shared>, cancel: CancellationToken) {
    // The watch being replaced after a reconnect; dropped once the new one is added so
    // that the path is never without a watch.
    let mut previous: Option<PersistentWatcher> = None;
    loop {
        shared.set_state(SyncState::Loading, client.generation(), None);
        let added = tokio::select! {
            _ = cancel.cancelled() => break,
            r = client.watch_recursive(paths::ROOT) => r,
        };
        drop(previous.take());
        let (mut watcher, generation) = match added {
            Ok(w) => w,
            Err(ZkError::Closed) => break,
            Err(e) => {
                warn!("tree cache: cannot add the watch on {}: {e}", paths::ROOT);
                shared.set_state(SyncState::Stale, client.generation(), Some(e.to_string()));
                if pause(&cancel).await {
                    break;
                }
                continue;
            }
        };
        let outcome = 'session: loop {
            shared.set_state(SyncState::Loading, generation, None);
            let loaded = tokio::select! {
                _ = cancel.cancelled() => break 'session Outcome::Cancelled,
                r = load(&client) => r,
            };
            if client.generation() != generation {
                // The load finished on a newer session than the watch: start over.
                break 'session Outcome::SessionEnded;
            }
            match loaded {
                Ok(tree) => shared.replace(tree, generation),
                Err(ZkError::Closed) => break 'session Outcome::Cancelled,
                Err(e) => {
                    warn!("tree cache: loading {} failed: {e}", paths::ROOT);
                    shared.set_state(SyncState::Stale, generation, Some(e.to_string()));
                    if pause(&cancel).await {
                        break 'session Outcome::Cancelled;
                    }
                    continue 'session;
                }
            }
            match follow(&client, &shared, &mut watcher, generation, &cancel).await {
                Outcome::Resync if client.generation() == generation => {
                    debug!(generation, "tree cache: resync");
                    continue 'session;
                }
                other => break 'session other,
            }
        };
        match outcome {
            Outcome::Cancelled => break,
            Outcome::Resync => continue,
            Outcome::Reconnected => {
                // zookeeper-client 0.11.2 does not re-send persistent watches after a
                // reconnect (`resend_watches` never reaches the SetWatches2 slots), so
                // the server-side watch is gone: add it again.
                debug!(generation, "tree cache: reconnected, re-adding the watch");
                previous = Some(watcher);
                continue;
            }
            Outcome::SessionEnded => {
                shared.set_state(SyncState::Stale, generation, None);
                let mut status = client.watch_status();
                let next = tokio::select! {
                    _ = cancel.cancelled() => break,
                    r = status.wait_for(|s| s.generation > generation || s.state == ConnectionState::Closed) => r.map(|s| *s),
                };
                match next {
                    Ok(s) if s.state != ConnectionState::Closed => {
                        info!(
                            generation = s.generation,
                            "tree cache: new session, re-adding the watch"
                        );
                    }
                    _ => break,
                }
            }
        }
    }
    shared.set_state(SyncState::Stopped, client.generation(), None);
}

/// Sleeps before a retry; true if cancelled meanwhile.
async fn pause(cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(RETRY_PAUSE) => false,
    }
}

type LoadResult = ZkResult<(
    String,
    ZkPath,
    Option<Option<(Vec<u8>, zkc::Stat)>>,
    Option<Vec<String>>,
)>;

/// Reads the whole tree below `/nodepool` (pipelined) into a fresh [`Tree`].
async fn load(client: &ZkClient) -> ZkResult<Tree> {
    let mut tree = Tree::default();
    let mut ignored = Vec::new();
    let mut queue: VecDeque<String> = VecDeque::from([paths::ROOT.to_string()]);
    let mut pending = FuturesUnordered::new();
    let read = |path: String| {
        let client = client.clone();
        async move {
            let zp = classify(&path);
            let data = async {
                if wants_data(&zp) {
                    client.get(&path).await.map(Some)
                } else {
                    Ok(None)
                }
            };
            let children = async {
                if wants_children(&zp) {
                    client.get_children(&path).await
                } else {
                    Ok(None)
                }
            };
            let (data, children) = futures::join!(data, children);
            let r: LoadResult = Ok((path, zp, data?, children?));
            r
        }
    };
    loop {
        while pending.len() < LOAD_PIPELINE {
            let Some(p) = queue.pop_front() else { break };
            pending.push(read(p));
        }
        let Some(r) = pending.next().await else { break };
        let (path, zp, data, children) = r?;
        if let Some(read) = data {
            let missing = read.is_none();
            tree.apply(decode(&path, zp.clone(), read), &mut ignored);
            if missing {
                continue;
            }
        }
        for child in children.unwrap_or_default() {
            let cpath = join(&path, &child);
            let czp = classify(&cpath);
            if presence_only(&czp) {
                tree.apply(Update::Present(czp.clone(), true), &mut ignored);
            }
            if wants_data(&czp) || wants_children(&czp) {
                queue.push_back(cpath);
            }
        }
        ignored.clear();
    }
    Ok(tree)
}

/// What to do for one node event: the read (or the known outcome) to play back, or
/// nothing for events the cache ignores.
fn step_for(client: &ZkClient, ev: zkc::WatchedEvent) -> Option<StepFuture> {
    use zkc::EventType as E;
    let zp = classify(&ev.path);
    if ev.event_type == E::NodeDeleted {
        return Some(Box::pin(futures::future::ready(Ok(Update::Gone(zp)))));
    }
    if wants_data(&zp) {
        let client = client.clone();
        let path = ev.path;
        return Some(Box::pin(async move {
            let read = client.get(&path).await?;
            Ok(decode(&path, zp, read))
        }));
    }
    if presence_only(&zp) && ev.event_type == E::NodeCreated {
        return Some(Box::pin(futures::future::ready(Ok(Update::Present(
            zp, true,
        )))));
    }
    None
}

/// Applies watch events in order (reads pipelined) until a resync is needed, the session
/// ended or the cache is stopped. Events are taken from the watcher as they come into
/// the event queue; at most [`FOLLOW_PIPELINE`] of them are being read (the playback
/// queue); both are counted in [`Shared::queues`].
async fn follow(
    client: &ZkClient,
    shared: &Shared,
    watcher: &mut PersistentWatcher,
    generation: u64,
    cancel: &CancellationToken,
) -> Outcome {
    let queues = &shared.queues;
    let mut events: VecDeque<(zkc::WatchedEvent, Option<CachePart>)> = VecDeque::new();
    let mut playback: FuturesOrdered<StepFuture> = FuturesOrdered::new();
    let mut playback_parts: VecDeque<Option<CachePart>> = VecDeque::new();
    let mut status = client.watch_status();
    let outcome = loop {
        while playback.len() < FOLLOW_PIPELINE {
            let Some((ev, part)) = events.pop_front() else {
                break;
            };
            queues.remove(part, CacheQueue::Event);
            if let Some(step) = step_for(client, ev) {
                playback.push_back(step);
                playback_parts.push_back(part);
                queues.add(part, CacheQueue::Playback);
            }
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break Outcome::Cancelled,
            Some(step) = playback.next(), if !playback.is_empty() => {
                queues.remove(playback_parts.pop_front().flatten(), CacheQueue::Playback);
                match step {
                    Ok(update) => shared.apply(update),
                    Err(ZkError::Closed) => break Outcome::Cancelled,
                    Err(e) => {
                        warn!("tree cache: read failed, resyncing: {e}");
                        break Outcome::Resync;
                    }
                }
            },
            // A new session (e.g. the client moved to other servers): start over on it.
            Ok(()) = status.changed() => {
                if status.borrow_and_update().generation != generation {
                    break Outcome::SessionEnded;
                }
            },
            ev = watcher.changed() => {
                use zkc::EventType as E;
                match ev.event_type {
                    E::Session => match ev.session_state {
                        zkc::SessionState::Disconnected => {
                            shared.set_state(SyncState::Stale, generation, None);
                        }
                        zkc::SessionState::SyncConnected | zkc::SessionState::ConnectedReadOnly => {
                            // Events during the disconnection may be lost (ZOOKEEPER-4698)
                            // and the watch itself is not restored: re-add and reload.
                            break Outcome::Reconnected;
                        }
                        s if s.is_terminated() => break Outcome::SessionEnded,
                        _ => {}
                    },
                    E::NodeCreated | E::NodeDataChanged | E::NodeDeleted => {
                        let part = CachePart::of(&ev.path);
                        queues.add(part, CacheQueue::Event);
                        events.push_back((ev, part));
                    }
                    E::NodeChildrenChanged => {}
                }
            }
        }
    };
    // What was queued is dropped: the next load reads everything again.
    queues.clear();
    outcome
}
