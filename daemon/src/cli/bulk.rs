//! Batched reads with ZooKeeper's `multiRead` (3.6+): hundreds of `getData` /
//! `getChildren` operations per request. Reading 10,000 nodes and their lock dirs one
//! request each takes ~250 ms even fully pipelined (the per-request cost on both ends
//! dominates); in batches it takes ~50 ms (docs/benchmarks.md).
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

/// Nodes per multi-read request (two operations each).
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

/// One node's reads: its data and its lock dir's children (`None` = no such znode).
type NodeRead = (NodeId, Option<Vec<u8>>, Option<Vec<String>>);

/// Reads a batch in one multi-read; `Err` if the request as a whole failed.
async fn read_batch(
    client: &zkc::Client,
    ids: &[NodeId],
    timeout: Duration,
) -> Result<Vec<NodeRead>, String> {
    let mut r = client.new_multi_reader();
    for id in ids {
        r.add_get_data(&paths::node(id))
            .map_err(|e| e.to_string())?;
        r.add_get_children(&paths::node_lock(id))
            .map_err(|e| e.to_string())?;
    }
    let results = match tokio::time::timeout(timeout, r.commit()).await {
        Err(_) => return Err(format!("timed out after {timeout:?}")),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(r)) => r,
    };
    if results.len() != ids.len() * 2 {
        return Err(format!(
            "{} results for {} reads",
            results.len(),
            ids.len() * 2
        ));
    }
    let mut out = Vec::with_capacity(ids.len());
    let mut it = results.into_iter();
    for id in ids {
        let data = match it.next() {
            Some(zkc::MultiReadResult::Data { data, .. }) => Some(data),
            Some(zkc::MultiReadResult::Error {
                err: zkc::Error::NoNode,
            }) => None,
            other => return Err(format!("unexpected reply for {}: {other:?}", id)),
        };
        let children = match it.next() {
            Some(zkc::MultiReadResult::Children { children }) => Some(children),
            Some(zkc::MultiReadResult::Error {
                err: zkc::Error::NoNode,
            }) => None,
            other => return Err(format!("unexpected reply for {} lock: {other:?}", id)),
        };
        out.push((id.clone(), data, children));
    }
    Ok(out)
}

/// The same reads one request each, through the store's client.
async fn read_single(store: &ZkStore, ids: &[NodeId]) -> ZkResult<Vec<NodeRead>> {
    let client = store.client();
    let reads = ids.iter().map(|id| async move {
        let (node, lock) = (paths::node(id), paths::node_lock(id));
        let (d, c) = futures::join!(client.get(&node), client.get_children(&lock));
        Ok::<_, ZkError>((id.clone(), d?.map(|(d, _)| d), c?))
    });
    stream::iter(reads)
        .buffered(512)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Every node with its "locked" flag (any lock contender), sorted by id; empty and
/// corrupt node znodes are skipped (corrupt ones with a warning).
pub async fn nodes_with_locks(store: &ZkStore) -> ZkResult<Vec<(Node, bool)>> {
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
            if let Some(c) = raw {
                match read_batch(c, chunk, timeout).await {
                    Ok(r) => return Ok(r),
                    Err(e) => debug!("multi-read failed, reading one by one: {e}"),
                }
            }
            read_single(store, chunk).await
        }
    });
    let results: Vec<ZkResult<Vec<NodeRead>>> = stream::iter(batches)
        .buffered(BATCHES_IN_FLIGHT)
        .collect()
        .await;
    let mut out = Vec::with_capacity(ids.len());
    for batch in results {
        for (id, data, children) in batch? {
            let Some(data) = data else { continue };
            let locked = children
                .unwrap_or_default()
                .iter()
                .any(|c| is_lock_contender(c));
            match Node::from_json(&id, &data) {
                Ok(Some(node)) => out.push((node, locked)),
                Ok(None) => {}
                Err(e) => warn!(path = %paths::node(&id), "skipping corrupt node record: {e}"),
            }
        }
    }
    Ok(out)
}
