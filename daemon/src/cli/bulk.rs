//! Batched reads with ZooKeeper's `multiRead` (3.6+): hundreds of `getData` /
//! `getChildren` operations per request. Reading 10,000 nodes and their lock dirs one
//! request each takes ~250 ms even fully pipelined (the per-request cost on both ends
//! dominates); in batches it takes ~50 ms (docs/benchmarks.md). A batch's records and
//! the children of their `lock` dirs are read in one multi-read (a node without a lock
//! dir answers "no node", which costs the server next to nothing), so a batch is one
//! round trip; each batch's records are decoded on a pool thread while the next batches
//! are read.
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

/// Nodes per batch (one multi-read of their records and lock dirs).
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

/// Reads a batch in one multi-read: each node's record and the children of its `lock`
/// dir (a node without one answers "no node": not locked). `Err` if the request as a
/// whole failed.
async fn read_batch(client: &ZkClient, ids: &[NodeId]) -> ZkResult<Vec<NodeRead>> {
    let reads: Vec<Read> = ids
        .iter()
        .flat_map(|id| {
            [
                Read::Data(paths::node(id)),
                Read::Children(paths::node_lock(id)),
            ]
        })
        .collect();
    let mut results = client.multi_read(&reads).await?.into_iter();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let data = match results.next() {
            Some(ReadResult::Data(data)) => data.map(|(data, _)| data),
            other => {
                return Err(ZkError::Corrupt(format!(
                    "unexpected reply for {id}: {other:?}"
                )))
            }
        };
        let locked = match results.next() {
            Some(ReadResult::Children(children)) => locked(children),
            other => {
                return Err(ZkError::Corrupt(format!(
                    "unexpected reply for {id} lock: {other:?}"
                )))
            }
        };
        out.push(NodeRead {
            id: id.clone(),
            data,
            locked,
        });
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

/// Decodes a batch of reads on a pool thread: `decode` gets each existing znode's id,
/// data and lock flag and returns the item to keep (or `None` to skip it).
fn decode_batch<T>(
    reads: Vec<NodeRead>,
    decode: &impl Fn(&NodeId, &[u8], bool) -> Option<T>,
) -> Vec<T> {
    reads
        .iter()
        .filter_map(|r| decode(&r.id, r.data.as_deref()?, r.locked))
        .collect()
}

/// One node record as a [`Node`] with its lock flag; `None` for an empty record (no
/// node) and for a corrupt one (with a warning), which the listing skips.
pub fn parse_node(id: &NodeId, data: &[u8], locked: bool) -> Option<(Node, bool)> {
    match Node::from_json(id, data) {
        Ok(Some(node)) => Some((node, locked)),
        Ok(None) => None,
        Err(e) => {
            warn!(path = %paths::node(id), "skipping corrupt node record: {e}");
            None
        }
    }
}

/// Every node, in id order, decoded by `decode` (from its id, data and "locked" flag:
/// any lock contender) on pool threads while the next batches are read, and handed to
/// `sink` batch by batch as the batches come in (a listing of 100,000 nodes never holds
/// them all). Znodes that no longer exist are skipped; `decode` returns `None` for one it
/// skips (e.g. [`parse_node`]: empty or corrupt). Returns the number of items.
pub async fn read_nodes_with_locks<T: Send + 'static>(
    store: &ZkStore,
    decode: impl Fn(&NodeId, &[u8], bool) -> Option<T> + Send + Sync + 'static,
    mut sink: impl FnMut(Vec<T>),
) -> ZkResult<usize> {
    let client = store.client();
    let mut ids = client.get_children(paths::NODES).await?.unwrap_or_default();
    ids.sort();
    let ids: Vec<NodeId> = ids.into_iter().map(NodeId::from).collect();
    let decode = std::sync::Arc::new(decode);
    let batches = ids.chunks(NODES_PER_BATCH).map(|chunk| {
        let decode = decode.clone();
        async move {
            let reads = match read_batch(client, chunk).await {
                Ok(r) => r,
                Err(e) => {
                    debug!("multi-read failed, reading one by one: {e}");
                    read_single(store, chunk).await?
                }
            };
            // Decoded on a pool thread, while the other batches are still being read.
            tokio::task::spawn_blocking(move || decode_batch(reads, &*decode))
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
