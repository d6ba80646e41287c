//! The task that keeps a [`super::TreeCache`] in step with ZooKeeper: one persistent
//! recursive watch on `/nodepool`, a full load in multi-read batches, then the watch events applied
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
use crate::zk::client::{join, ConnectionState, PersistentWatcher, Read, ReadResult, ZkClient};
use crate::zk::error::{ZkError, ZkResult};

/// Znodes per multi-read during a full load.
const LOAD_BATCH: usize = 250;
/// Multi-reads kept in flight during a full load.
const LOAD_BATCHES: usize = 16;
/// Single reads kept in flight when a batch is read one znode at a time.
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
            let started = std::time::Instant::now();
            let loaded = tokio::select! {
                _ = cancel.cancelled() => break 'session Outcome::Cancelled,
                r = load(&client) => r,
            };
            if client.generation() != generation {
                // The load finished on a newer session than the watch: start over.
                break 'session Outcome::SessionEnded;
            }
            match loaded {
                Ok(tree) => {
                    let (nodes, requests) = (tree.nodes.len(), tree.requests.len());
                    shared.replace(tree, generation);
                    info!(
                        nodes,
                        requests,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "tree cache loaded"
                    );
                }
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

/// One znode of a full load: its path and what was read of it.
struct Loaded {
    path: String,
    /// The decoded data, if the cache reads its data (`Gone` when missing).
    update: Option<Update>,
    /// Its children, if the cache lists them and it exists.
    children: Option<Vec<String>>,
    /// For a node: the children of its `lock` dir, read at once (then the dir is not
    /// listed again; `None` = not read this way).
    lock: Option<Vec<String>>,
}

/// Reads one batch of the load: one multi-read for the data of the record znodes and
/// the children of the directories, then one for the children of the records that
/// have any — for a node, directly the contenders in its `lock` dir (its only child in
/// Nodepool's tree; a node without children has none): two reads for a locked node,
/// not three. The records are decoded
/// on a pool thread. A batch the server refuses as a whole (a reply over its size
/// limit) is read again one znode at a time.
async fn read_batch(client: &ZkClient, paths: Vec<String>) -> ZkResult<Vec<Loaded>> {
    let zps: Vec<ZkPath> = paths.iter().map(|p| classify(p)).collect();
    let reads: Vec<Read> = paths
        .iter()
        .zip(&zps)
        .filter_map(|(p, zp)| {
            if wants_data(zp) {
                Some(Read::Data(p.clone()))
            } else if wants_children(zp) {
                Some(Read::Children(p.clone()))
            } else {
                None
            }
        })
        .collect();
    let first = match client.multi_read(&reads).await {
        Ok(r) => r,
        Err(e) if e.is_connection_problem() => return Err(e),
        Err(e) => {
            debug!("tree cache: multi-read failed ({e}), reading one by one");
            return read_one_by_one(client, paths, zps).await;
        }
    };
    let mut data = Vec::with_capacity(paths.len());
    let mut children: Vec<Option<Vec<String>>> = vec![None; paths.len()];
    let mut locks: Vec<Option<Vec<String>>> = vec![None; paths.len()];
    let mut second = Vec::new();
    let mut results = first.into_iter();
    for (i, zp) in zps.iter().enumerate() {
        if wants_data(zp) {
            let Some(ReadResult::Data(read)) = results.next() else {
                return Err(ZkError::Corrupt("multi-read answers out of order".into()));
            };
            let has_children = read.as_ref().is_some_and(|(_, st)| st.num_children > 0);
            if wants_children(zp) && has_children {
                let dir = match zp {
                    ZkPath::Node(_) => join(&paths[i], "lock"),
                    _ => paths[i].clone(),
                };
                second.push((i, Read::Children(dir)));
            }
            data.push((i, read));
        } else if wants_children(zp) {
            let Some(ReadResult::Children(c)) = results.next() else {
                return Err(ZkError::Corrupt("multi-read answers out of order".into()));
            };
            children[i] = c;
        }
    }
    if !second.is_empty() {
        let reads: Vec<Read> = second.iter().map(|(_, r)| r.clone()).collect();
        for ((i, _), r) in second.iter().zip(client.multi_read(&reads).await?) {
            let ReadResult::Children(c) = r else {
                continue;
            };
            if matches!(zps[*i], ZkPath::Node(_)) {
                // Without a lock dir the node has no child the cache wants.
                let dir = if c.is_some() {
                    vec!["lock".to_string()]
                } else {
                    Vec::new()
                };
                children[*i] = Some(dir);
                locks[*i] = c;
            } else {
                children[*i] = c;
            }
        }
    }
    let mut loaded = decode_batch(paths, zps, data, children).await?;
    for (l, lock) in loaded.iter_mut().zip(locks) {
        l.lock = lock;
    }
    Ok(loaded)
}

/// What a data read of one znode gave: its bytes and stat, or `None` if it is gone.
type DataRead = Option<(Vec<u8>, zkc::Stat)>;

/// Decodes the data read for a batch (on a pool thread: 100,000 records take seconds of
/// CPU) and assembles the batch's entries.
async fn decode_batch(
    paths: Vec<String>,
    zps: Vec<ZkPath>,
    data: Vec<(usize, DataRead)>,
    mut children: Vec<Option<Vec<String>>>,
) -> ZkResult<Vec<Loaded>> {
    let decoded = tokio::task::spawn_blocking(move || {
        let mut updates: Vec<Option<Update>> = Vec::new();
        updates.resize_with(paths.len(), || None);
        for (i, read) in data {
            updates[i] = Some(decode(&paths[i], zps[i].clone(), read));
        }
        (paths, zps, updates)
    })
    .await;
    let (paths, zps, updates) =
        decoded.map_err(|e| ZkError::Corrupt(format!("decoding records: {e}")))?;
    Ok(paths
        .into_iter()
        .zip(zps)
        .zip(updates)
        .enumerate()
        .map(|(i, ((path, _), update))| Loaded {
            path,
            update,
            children: children[i].take(),
            lock: None,
        })
        .collect())
}

/// [`read_batch`] one request per znode.
async fn read_one_by_one(
    client: &ZkClient,
    paths: Vec<String>,
    zps: Vec<ZkPath>,
) -> ZkResult<Vec<Loaded>> {
    let mut read = Vec::with_capacity(paths.len());
    let mut pending = FuturesOrdered::new();
    for (path, zp) in paths.iter().cloned().zip(zps.iter().cloned()) {
        let client = client.clone();
        pending.push_back(async move {
            let data = if wants_data(&zp) {
                Some(client.get(&path).await?)
            } else {
                None
            };
            let listed = match &data {
                Some(Some((_, st))) => st.num_children > 0,
                Some(None) => false,
                None => true,
            };
            let children = if wants_children(&zp) && listed {
                client.get_children(&path).await?
            } else {
                None
            };
            Ok::<_, ZkError>((data, children))
        });
        if pending.len() >= LOAD_PIPELINE {
            if let Some(r) = pending.next().await {
                read.push(r?);
            }
        }
    }
    while let Some(r) = pending.next().await {
        read.push(r?);
    }
    let mut data = Vec::new();
    let mut children = Vec::with_capacity(read.len());
    for (i, (d, c)) in read.into_iter().enumerate() {
        if let Some(d) = d {
            data.push((i, d));
        }
        children.push(c);
    }
    decode_batch(paths, zps, data, children).await
}

/// Reads the whole tree below `/nodepool` into a fresh [`Tree`]: breadth first, in
/// multi-read batches of [`LOAD_BATCH`] znodes, [`LOAD_BATCHES`] in flight.
async fn load(client: &ZkClient) -> ZkResult<Tree> {
    let mut tree = Tree::default();
    let mut ignored = Vec::new();
    let mut queue: VecDeque<String> = VecDeque::from([paths::ROOT.to_string()]);
    let mut pending = FuturesUnordered::new();
    loop {
        while pending.len() < LOAD_BATCHES && !queue.is_empty() {
            let n = queue.len().min(LOAD_BATCH);
            let batch: Vec<String> = queue.drain(..n).collect();
            let client = client.clone();
            pending.push(Box::pin(async move { read_batch(&client, batch).await }));
        }
        let Some(batch) = pending.next().await else {
            break;
        };
        for Loaded {
            path,
            update,
            children,
            lock,
        } in batch?
        {
            if let Some(update) = update {
                let missing = matches!(update, Update::Gone(_));
                tree.apply(update, &mut ignored);
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
                if let (ZkPath::NodeLock(..), Some(contenders)) = (&czp, &lock) {
                    for c in contenders {
                        let zp = classify(&join(&cpath, c));
                        tree.apply(Update::Present(zp, true), &mut ignored);
                    }
                    continue;
                }
                if wants_data(&czp) || wants_children(&czp) {
                    queue.push_back(cpath);
                }
            }
            ignored.clear();
        }
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
