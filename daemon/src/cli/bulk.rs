//! Batched reads with ZooKeeper's `multiRead` (3.6+): hundreds of `getData` /
//! `getChildren` operations per request. Reading 10,000 nodes and their lock dirs one
//! request each takes ~250 ms even fully pipelined (the per-request cost on both ends
//! dominates); in batches it takes ~50 ms (docs/benchmarks.md). A node's lock dir is read
//! only if the node znode has children (no `lock` dir, no lock holder); each batch's
//! records are parsed on a pool thread while the next batches are read.
//!
//! The reads go over the CLI's one session ([`ZkClient::multi_read`]): a second session
//! would cost a second TLS handshake (tens of milliseconds). A batch that fails as a
//! whole (e.g. a reply too large) is read again op by op through the store, so the
//! result never depends on batching.
//!
//! [`ZkClient::multi_read`]: nodepool_shared::zk::ZkClient::multi_read

use futures::stream::{self, StreamExt};
use nodepool_shared::model::{paths, Node, NodeId};
use nodepool_shared::zk::{
    is_lock_contender, Read, ReadResult, ZkClient, ZkError, ZkResult, ZkStore,
};
use tracing::{debug, warn};

/// Nodes per batch (one multi-read of their records, one of their lock dirs).
const NODES_PER_BATCH: usize = 250;
/// Multi-read requests in flight.
const BATCHES_IN_FLIGHT: usize = 16;

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

/// Reads a batch in two multi-reads: the node records, then the lock dirs of the nodes
/// that have one (a node znode without children has no `lock` dir, so nothing can hold
/// its lock). `Err` if a request as a whole failed.
async fn read_batch(client: &ZkClient, ids: &[NodeId]) -> ZkResult<Vec<NodeRead>> {
    let reads: Vec<Read> = ids.iter().map(|id| Read::Data(paths::node(id))).collect();
    let mut out = Vec::with_capacity(ids.len());
    let mut with_lock_dir = Vec::new();
    for (id, result) in ids.iter().zip(client.multi_read(&reads).await?) {
        let data = match result {
            ReadResult::Data(Some((data, stat))) => {
                if stat.num_children > 0 && !data.is_empty() {
                    with_lock_dir.push(out.len());
                }
                Some(data)
            }
            ReadResult::Data(None) => None,
            other => {
                return Err(ZkError::Corrupt(format!(
                    "unexpected reply for {id}: {other:?}"
                )))
            }
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
    let reads: Vec<Read> = with_lock_dir
        .iter()
        .map(|&i| Read::Children(paths::node_lock(&out[i].id)))
        .collect();
    let results = client.multi_read(&reads).await?;
    for (&i, result) in with_lock_dir.iter().zip(results) {
        out[i].locked = match result {
            ReadResult::Children(children) => locked(children),
            other => {
                return Err(ZkError::Corrupt(format!(
                    "unexpected reply for {} lock: {other:?}",
                    out[i].id
                )))
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
    let client = store.client();
    let mut ids = client.get_children(paths::NODES).await?.unwrap_or_default();
    ids.sort();
    let ids: Vec<NodeId> = ids.into_iter().map(NodeId::from).collect();
    let batches = ids.chunks(NODES_PER_BATCH).map(|chunk| {
        async move {
            let reads = match read_batch(client, chunk).await {
                Ok(r) => r,
                Err(e) => {
                    debug!("multi-read failed, reading one by one: {e}");
                    read_single(store, chunk).await?
                }
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
