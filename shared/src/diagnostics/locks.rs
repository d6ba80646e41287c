//! Who owns the lock contenders. A lock contender (`<uuid>__lock__<seq>` below a node's
//! `lock` directory or `/nodepool/requests-lock/<id>`) is an ephemeral znode: ZooKeeper
//! removes it when its session ends, and with it the lock. A contender created as a
//! persistent znode (Nodepool's `lockNode(ephemeral=False)`, a restored backup, a
//! hand-made znode) has no session (its `ephemeralOwner` is 0): nothing will ever
//! remove it, so the record stays locked for good. The cache keeps only contender
//! names, so their owners are read here, once per contender (an owner never changes).

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};

use super::snapshot::{RecordKey, Snapshot};
use crate::model::paths;
use crate::zk::{ZkClient, ZkResult};

/// The `ephemeralOwner` (session id; 0 = persistent) of lock contender znodes, by path.
pub type LockOwners = BTreeMap<String, i64>;

/// Reads kept in flight.
const WINDOW: usize = 64;

/// Every lock contender of the snapshot: the record it locks and its znode path.
pub fn contenders(snap: &Snapshot) -> Vec<(RecordKey, String)> {
    let mut out = Vec::new();
    for n in &snap.nodes {
        for c in &n.lock_contenders {
            out.push((
                RecordKey::Node(n.node.id().clone()),
                format!("{}/{c}", paths::node_lock(n.node.id())),
            ));
        }
    }
    for (id, cs) in &snap.request_locks {
        for c in cs {
            out.push((
                RecordKey::Request(id.clone()),
                format!("{}/{c}", paths::request_lock(id)),
            ));
        }
    }
    out
}

/// The owners of the snapshot's contenders: those in `known` are taken from it, the
/// others read from ZooKeeper (pipelined). Contenders gone meanwhile are left out.
pub async fn read_owners(
    client: &ZkClient,
    snap: &Snapshot,
    known: &LockOwners,
) -> ZkResult<LockOwners> {
    let mut out = LockOwners::new();
    let mut unknown = Vec::new();
    for (_, path) in contenders(snap) {
        match known.get(&path) {
            Some(owner) => {
                out.insert(path, *owner);
            }
            None => unknown.push(path),
        }
    }
    let reads = unknown.into_iter().map(|path| async move {
        let stat = client.exists(&path).await;
        (path, stat)
    });
    let results: Vec<_> = stream::iter(reads).buffer_unordered(WINDOW).collect().await;
    for (path, stat) in results {
        if let Some(stat) = stat? {
            out.insert(path, stat.ephemeral_owner);
        }
    }
    Ok(out)
}
