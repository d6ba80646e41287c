//! Batched reads with ZooKeeper's `multiRead` (3.6+): hundreds of `getData` /
//! `getChildren` operations per request. Reading 10,000 nodes and their lock dirs one
//! request each takes ~250 ms even fully pipelined (the per-request cost on both ends
//! dominates); in batches it takes ~50 ms (docs/benchmarks.md). A node's lock dir is read
//! only if the node znode has children (no `lock` dir, no lock holder); each batch's
//! records are parsed on a pool thread while the next batches are read.
//!
//! [`ZkClient`](nodepool_shared::zk::ZkClient) has no multi-read, so this opens a second,
//! plain library session from the same settings (TLS included) for the bulk reads. A
//! batch that fails as a whole (e.g. a reply too large) is read again op by op through
//! the store, so the result never depends on batching.

use std::time::Duration;

use futures::stream::{self, StreamExt};
use nodepool_shared::model::{paths, Node, NodeId};
use nodepool_shared::zk::{is_lock_contender, ZkError, ZkResult, ZkSettings, ZkStore};
use tracing::{debug, warn};
use zookeeper_client as zkc;

/// Nodes per batch (one multi-read of their records, one of their lock dirs).
const NODES_PER_BATCH: usize = 250;
/// Multi-read requests in flight.
const BATCHES_IN_FLIGHT: usize = 16;

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Opens a library session with `settings` (bounded by its connect/request timeout).
async fn raw_connect(settings: &ZkSettings) -> ZkResult<zkc::Client> {
    let hosts = settings
        .hosts
        .iter()
        .map(|(h, p)| format!("{}:{p}", bracket(h)))
        .collect::<Vec<_>>()
        .join(",");
    let cs = format!(
        "{hosts}{}",
        settings.normalized_chroot().unwrap_or_default()
    );
    let connector = zkc::Client::connector()
        .with_session_timeout(settings.session_timeout)
        .with_fail_eagerly();
    let limit = settings
        .connect_timeout
        .unwrap_or(settings.request_timeout)
        .max(Duration::from_secs(1));
    let err = |e: String| ZkError::Connect {
        hosts: settings.connect_string(),
        reason: e,
    };
    let fut = async {
        match &settings.tls {
            None => connector.connect(&cs).await,
            Some(tls) => {
                let read = |p: &std::path::Path| std::fs::read_to_string(p);
                let (ca, cert, key) = match (read(&tls.ca), read(&tls.cert), read(&tls.key)) {
                    (Ok(a), Ok(c), Ok(k)) => (a, c, k),
                    _ => return Err(zkc::Error::BadArguments(&"cannot read TLS files")),
                };
                let opts = zkc::TlsOptions::new()
                    .with_pem_ca(&ca)?
                    .with_pem_identity(&cert, &key)?;
                connector.with_tls(opts).secure_connect(&cs).await
            }
        }
    };
    match tokio::time::timeout(limit, fut).await {
        Err(_) => Err(err(format!("no session within {limit:?}"))),
        Ok(Err(e)) => Err(err(e.to_string())),
        Ok(Ok(c)) => Ok(c),
    }
}

/// One node's reads: its data (`None` = no such znode) and whether its lock dir holds a
/// kazoo lock contender.
struct NodeRead {
    id: NodeId,
    data: Option<Vec<u8>>,
    locked: bool,
}

fn locked(children: Option<Vec<String>>) -> bool {
    children
        .unwrap_or_default()
        .iter()
        .any(|c| is_lock_contender(c))
}

/// Commits a multi-read (bounded by `timeout`) and checks it answered every operation.
async fn commit(
    mut reader: zkc::MultiReader<'_>,
    ops: usize,
    timeout: Duration,
) -> Result<Vec<zkc::MultiReadResult>, String> {
    let results = match tokio::time::timeout(timeout, reader.commit()).await {
        Err(_) => return Err(format!("timed out after {timeout:?}")),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(r)) => r,
    };
    if results.len() != ops {
        return Err(format!("{} results for {ops} reads", results.len()));
    }
    Ok(results)
}

/// Reads a batch in two multi-reads: the node records, then the lock dirs of the nodes
/// that have one (a node znode without children has no `lock` dir, so nothing can hold
/// its lock). `Err` if a request as a whole failed.
async fn read_batch(
    client: &zkc::Client,
    ids: &[NodeId],
    timeout: Duration,
) -> Result<Vec<NodeRead>, String> {
    let mut r = client.new_multi_reader();
    for id in ids {
        r.add_get_data(&paths::node(id))
            .map_err(|e| e.to_string())?;
    }
    let mut out = Vec::with_capacity(ids.len());
    let mut with_lock_dir = Vec::new();
    for (id, result) in ids.iter().zip(commit(r, ids.len(), timeout).await?) {
        let data = match result {
            zkc::MultiReadResult::Data { data, stat } => {
                if stat.num_children > 0 && !data.is_empty() {
                    with_lock_dir.push(out.len());
                }
                Some(data)
            }
            zkc::MultiReadResult::Error {
                err: zkc::Error::NoNode,
            } => None,
            other => return Err(format!("unexpected reply for {id}: {other:?}")),
        };
        out.push(NodeRead {
            id: id.clone(),
            data,
            locked: false,
        });
    }
    if with_lock_dir.is_empty() {
        return Ok(out);
    }
    let mut r = client.new_multi_reader();
    for &i in &with_lock_dir {
        r.add_get_children(&paths::node_lock(&out[i].id))
            .map_err(|e| e.to_string())?;
    }
    for (&i, result) in with_lock_dir
        .iter()
        .zip(commit(r, with_lock_dir.len(), timeout).await?)
    {
        out[i].locked = match result {
            zkc::MultiReadResult::Children { children } => locked(Some(children)),
            zkc::MultiReadResult::Error {
                err: zkc::Error::NoNode,
            } => false,
            other => {
                return Err(format!(
                    "unexpected reply for {} lock: {other:?}",
                    out[i].id
                ))
            }
        };
    }
    Ok(out)
}

/// The same reads one request each, through the store's client.
async fn read_single(store: &ZkStore, ids: &[NodeId]) -> ZkResult<Vec<NodeRead>> {
    let client = store.client();
    let reads = ids.iter().map(|id| async move {
        let (node, lock) = (paths::node(id), paths::node_lock(id));
        let (d, c) = futures::join!(client.get(&node), client.get_children(&lock));
        Ok::<_, ZkError>(NodeRead {
            id: id.clone(),
            data: d?.map(|(d, _)| d),
            locked: locked(c?),
        })
    });
    stream::iter(reads)
        .buffered(512)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The nodes of a batch of reads; empty and corrupt node znodes are skipped (corrupt
/// ones with a warning).
fn parse(reads: Vec<NodeRead>) -> Vec<(Node, bool)> {
    let mut out = Vec::with_capacity(reads.len());
    for NodeRead { id, data, locked } in reads {
        let Some(data) = data else { continue };
        match Node::from_json(&id, &data) {
            Ok(Some(node)) => out.push((node, locked)),
            Ok(None) => {}
            Err(e) => warn!(path = %paths::node(&id), "skipping corrupt node record: {e}"),
        }
    }
    out
}

/// Every node with its "locked" flag (any lock contender), in id order, handed to
/// `sink` batch by batch as the batches are read (a listing of 100,000 nodes never holds
/// them all); empty and corrupt node znodes are skipped (corrupt ones with a warning).
/// Returns the number of nodes.
pub async fn read_nodes_with_locks(
    store: &ZkStore,
    mut sink: impl FnMut(Vec<(Node, bool)>),
) -> ZkResult<usize> {
    let settings = store.client().settings().clone();
    let timeout = settings.request_timeout;
    let mut ids = store
        .client()
        .get_children(paths::NODES)
        .await?
        .unwrap_or_default();
    ids.sort();
    let ids: Vec<NodeId> = ids.into_iter().map(NodeId::from).collect();
    let raw = if ids.len() > NODES_PER_BATCH {
        match raw_connect(&settings).await {
            Ok(c) => Some(c),
            Err(e) => {
                debug!("no bulk-read session, reading one by one: {e}");
                None
            }
        }
    } else {
        None
    };
    let batches = ids.chunks(NODES_PER_BATCH).map(|chunk| {
        let raw = raw.as_ref();
        async move {
            let mut reads = None;
            if let Some(c) = raw {
                match read_batch(c, chunk, timeout).await {
                    Ok(r) => reads = Some(r),
                    Err(e) => debug!("multi-read failed, reading one by one: {e}"),
                }
            }
            let reads = match reads {
                Some(r) => r,
                None => read_single(store, chunk).await?,
            };
            // Parsed on a pool thread, while the other batches are still being read.
            tokio::task::spawn_blocking(move || parse(reads))
                .await
                .map_err(|e| ZkError::Corrupt(format!("parsing node records: {e}")))
        }
    });
    let mut batches = stream::iter(batches).buffered(BATCHES_IN_FLIGHT);
    let mut count = 0;
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        count += batch.len();
        sink(batch);
    }
    Ok(count)
}
