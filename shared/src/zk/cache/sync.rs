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
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zookeeper_client as zkc;

use super::load_queue::LoadQueue;
use super::queues::{CachePart, CacheQueue};
use super::reload::Load;
use super::tree::{
    decode, presence_only, wants_children, wants_data, CachedNode, LoadedNode, Update,
};
use super::{Shared, SyncState};
use crate::model::paths::{self, classify, ZkPath};
use crate::zk::client::{join, ConnectionState, PersistentWatcher, Read, ReadResult, ZkClient};
use crate::zk::error::{ZkError, ZkResult};

/// Znodes per multi-read during a full load.
const LOAD_BATCH: usize = 250;
/// Multi-reads kept in flight during a full load. The load is bound by the server:
/// 16 in flight held more replies and decoded batches at once (the launcher's resident
/// memory peaked ~13 MiB higher during a reload of 100,000 nodes) and took more CPU
/// (1.9 s instead of 1.2 s at start), without loading sooner (docs/benchmarks.md).
const LOAD_BATCHES: usize = 4;
/// Batches decoded at once during a full load (each on a pool thread): decoding is
/// CPU-bound, and more at once only spread its short-lived memory over more of the
/// allocator's per-thread arenas.
const LOAD_DECODERS: usize = 1;
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
                r = load(&client, &shared) => r,
            };
            if client.generation() != generation {
                // The load finished on a newer session than the watch: start over.
                break 'session Outcome::SessionEnded;
            }
            match loaded {
                Ok(load) => {
                    shared.replace(load, generation);
                    let (nodes, requests) = {
                        let tree = shared.read();
                        (tree.nodes.len(), tree.requests.len())
                    };
                    // A load allocates and frees several times the tree's size (reads,
                    // decoding, the replaced tree); hand the freed pages back.
                    tokio::task::spawn_blocking(release_freed_memory);
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

/// Returns the heap's free pages to the system (glibc keeps them, in every thread's
/// arena, after a load: the launcher's RSS at ready was ~80 MiB above its live heap).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only walks glibc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
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
    /// For a node whose record the live tree holds with the same `mzxid`: the live
    /// tree's node and the stat just read (its data is not decoded again).
    unchanged: Option<(Arc<CachedNode>, zkc::Stat)>,
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
async fn read_batch(
    client: &ZkClient,
    live: &Arc<Shared>,
    decoders: &Semaphore,
    paths: Vec<String>,
) -> ZkResult<Vec<Loaded>> {
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
            return read_one_by_one(client, live, decoders, paths, zps).await;
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
    let mut loaded = decode_batch(live, decoders, paths, zps, data, children).await?;
    for (l, lock) in loaded.iter_mut().zip(locks) {
        l.lock = lock;
    }
    Ok(loaded)
}

/// What a data read of one znode gave: its bytes and stat, or `None` if it is gone.
type DataRead = Option<(Vec<u8>, zkc::Stat)>;

/// Decodes the data read for a batch (on a pool thread: 100,000 records take seconds of
/// CPU) and assembles the batch's entries. A node record the live tree holds with the
/// same `mzxid` is not decoded again: a reload then shares the live tree's records
/// instead of holding a second copy of every record until it replaces the live tree.
async fn decode_batch(
    live: &Arc<Shared>,
    decoders: &Semaphore,
    paths: Vec<String>,
    zps: Vec<ZkPath>,
    data: Vec<(usize, DataRead)>,
    mut children: Vec<Option<Vec<String>>>,
) -> ZkResult<Vec<Loaded>> {
    let live = live.clone();
    let _turn = decoders.acquire().await.map_err(|_| ZkError::Closed)?;
    let decoded = tokio::task::spawn_blocking(move || {
        let mut updates: Vec<Option<Update>> = Vec::new();
        updates.resize_with(paths.len(), || None);
        let mut unchanged: Vec<Option<(Arc<CachedNode>, zkc::Stat)>> = vec![None; paths.len()];
        let mut to_decode = Vec::with_capacity(data.len());
        {
            let tree = live.read();
            for (i, read) in data {
                let kept = match (&zps[i], &read) {
                    (ZkPath::Node(id), Some((_, stat))) => tree
                        .nodes
                        .get(id)
                        .filter(|n| n.stat.mzxid == stat.mzxid)
                        .map(|n| (n.clone(), *stat)),
                    _ => None,
                };
                match kept {
                    Some(k) => unchanged[i] = Some(k),
                    None => to_decode.push((i, read)),
                }
            }
        }
        for (i, read) in to_decode {
            updates[i] = Some(decode(&paths[i], zps[i].clone(), read));
        }
        (paths, updates, unchanged)
    })
    .await;
    let (paths, updates, unchanged) =
        decoded.map_err(|e| ZkError::Corrupt(format!("decoding records: {e}")))?;
    Ok(paths
        .into_iter()
        .zip(updates)
        .zip(unchanged)
        .enumerate()
        .map(|(i, ((path, update), unchanged))| Loaded {
            path,
            update,
            unchanged,
            children: children[i].take(),
            lock: None,
        })
        .collect())
}

/// [`read_batch`] one request per znode.
async fn read_one_by_one(
    client: &ZkClient,
    live: &Arc<Shared>,
    decoders: &Semaphore,
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
    decode_batch(live, decoders, paths, zps, data, children).await
}

/// Reads the whole tree below `/nodepool` as a [`Load`] for the live tree: breadth
/// first, in multi-read batches of [`LOAD_BATCH`] znodes, [`LOAD_BATCHES`] in flight.
/// `live` is the tree the load is for (empty at the first load): its unchanged node
/// records are neither decoded nor copied again.
async fn load(client: &ZkClient, live: &Arc<Shared>) -> ZkResult<Load> {
    let mut load = Load::for_tree(&live.read());
    let mut queue = LoadQueue::with_path(paths::ROOT);
    let mut pending = FuturesUnordered::new();
    let decoders = Arc::new(Semaphore::new(LOAD_DECODERS));
    loop {
        while pending.len() < LOAD_BATCHES && !queue.is_empty() {
            let batch = queue.take(LOAD_BATCH);
            let (client, live, decoders) = (client.clone(), live.clone(), decoders.clone());
            pending.push(Box::pin(async move {
                read_batch(&client, &live, &decoders, batch).await
            }));
        }
        let Some(batch) = pending.next().await else {
            break;
        };
        for loaded in batch? {
            if loaded.path == paths::NODES {
                if let Some(children) = &loaded.children {
                    load.list_nodes(&live.read(), children);
                }
            }
            put_loaded(&mut load, loaded, &mut queue);
        }
    }
    Ok(load)
}

/// Puts one znode of a full load into the load and queues the children the cache
/// reads. A node's lock contenders, read with it, go in with its record.
fn put_loaded(load: &mut Load, loaded: Loaded, queue: &mut LoadQueue) {
    let Loaded {
        path,
        update,
        unchanged,
        children,
        mut lock,
    } = loaded;
    let node = match (unchanged, update) {
        (Some((kept, stat)), _) => Some((LoadedNode::Unchanged(kept), stat)),
        (None, Some(Update::Node(_, Some(node), stat))) => Some((LoadedNode::Read(node), stat)),
        (None, Some(update)) => {
            let missing = matches!(update, Update::Gone(_));
            load.apply(update);
            if missing {
                return;
            }
            None
        }
        (None, None) => None,
    };
    if let Some((node, stat)) = node {
        match lock.take() {
            Some(contenders) => return load.put_node(node, stat, contenders),
            // Read one znode at a time (the fallback): its lock dir is read below.
            None => load.put_node(node, stat, Vec::new()),
        }
    }
    for child in children.unwrap_or_default() {
        let cpath = join(&path, &child);
        let czp = classify(&cpath);
        if presence_only(&czp) {
            load.apply(Update::Present(czp.clone(), true));
        }
        if let (ZkPath::NodeLock(..), Some(contenders)) = (&czp, &lock) {
            // The lock of an empty node znode (no record to keep them in).
            for c in contenders {
                let zp = classify(&join(&cpath, c));
                load.apply(Update::Present(zp, true));
            }
            continue;
        }
        if wants_data(&czp) || wants_children(&czp) {
            queue.push(&path, &child);
        }
    }
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
