//! `list`, `delete` and `hold`: the node commands. Changes are made under the node lock
//! (kazoo recipe, waiting up to 5 s as Python's CLI does) and re-read after locking, so
//! the launcher and Zuul never see a half-made change.

use std::sync::Arc;
use std::time::Duration;

use color_eyre::eyre::{eyre, Result, WrapErr};
use nodepool_shared::cloud::{CloudDriver, DriverOptions, OpenStackDriver};
use nodepool_shared::config::Config;
use nodepool_shared::listing::{node_list, node_list_owned, NodeColumns, OutputFormat};
use nodepool_shared::model::{now_epoch, paths, Node, NodeId, NodeState};
use nodepool_shared::zk::{ZkLock, ZkStore};

use super::bulk::nodes_with_locks;
use super::context::{print_out, Session};
use super::read::node_with_lock;

/// How long the CLI waits for a node lock (Python: 5 s).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `delete --now` waits for the cloud to report the server gone.
pub const SERVER_DELETE_TIMEOUT: Duration = Duration::from_secs(300);

/// `nodepool list [--detail]`.
pub async fn list(s: &Session, detail: bool, format: OutputFormat) -> Result<()> {
    let start = std::time::Instant::now();
    let nodes = nodes_with_locks(&s.store).await?;
    tracing::debug!(nodes = nodes.len(), elapsed = ?start.elapsed(), "read nodes");
    // Nothing more to read: the session closes (a round trip) while the table is built.
    let client = s.store.client().clone();
    let closing = tokio::spawn(async move { client.close().await });
    let columns = if detail {
        NodeColumns::Detail
    } else {
        NodeColumns::Brief
    };
    let table = node_list_owned(nodes, now_epoch(), columns);
    let text = table.render(format, None);
    tracing::debug!(elapsed = ?start.elapsed(), "rendered");
    let printed = print_out(&text);
    let _ = closing.await;
    tracing::debug!(elapsed = ?start.elapsed(), "printed, session closed");
    // The process ends right after this: freeing 10,000 records and their cells one by
    // one would only add time (~10 ms), so they are left to the exit.
    std::mem::forget((table, text));
    printed
}

/// Prints the brief row of one node (what `delete` and `hold` show afterwards).
fn print_row(node: &Node, locked: bool) -> Result<()> {
    let table = node_list([(node, locked)], now_epoch(), NodeColumns::Brief);
    print_out(&table.render_text())
}

async fn print_current(store: &ZkStore, id: &NodeId) -> Result<()> {
    match node_with_lock(store, id).await? {
        Some((node, locked)) => print_row(&node, locked),
        None => print_out(&node_list([], now_epoch(), NodeColumns::Brief).render_text()),
    }
}

fn not_found(id: &str) -> color_eyre::Report {
    eyre!("Node id {id} not found")
}

/// Locks node `id` (up to [`LOCK_TIMEOUT`]) and returns the lock and the node as re-read
/// under the lock, with its version.
async fn lock_node(store: &ZkStore, id: &NodeId) -> Result<(ZkLock, Node, i32)> {
    if store.get_node(id).await?.is_none() {
        return Err(not_found(id.as_str()));
    }
    let mut lock = ZkLock::new(store.client(), &paths::node_lock(id), b"");
    if !lock.acquire(Some(LOCK_TIMEOUT)).await? {
        return Err(eyre!(
            "Node id {id} is locked by another client (waited {}s)",
            LOCK_TIMEOUT.as_secs()
        ));
    }
    match store.get_node(id).await {
        Ok(Some((node, stat))) => Ok((lock, node, stat.version)),
        Ok(None) => {
            // Deleted while we waited: our lock attempt re-created an empty znode; remove it.
            let _ = lock.release().await;
            let _ = store.delete_node_znode(id).await;
            Err(not_found(id.as_str()))
        }
        Err(e) => {
            let _ = lock.release().await;
            Err(e.into())
        }
    }
}

/// `nodepool hold ID [--reason TEXT]`.
pub async fn hold(s: &Session, id: &str, reason: Option<&str>) -> Result<()> {
    let id = NodeId::from(id);
    let (mut lock, mut node, version) = lock_node(&s.store, &id).await?;
    node.set_state(NodeState::Hold);
    if let Some(r) = reason {
        node.comment = Some(r.to_string());
    }
    let stored = s.store.store_node(&node, Some(version)).await;
    lock.release().await?;
    stored.wrap_err_with(|| format!("cannot store node {id}"))?;
    print_current(&s.store, &id).await
}

/// `nodepool delete ID [--now]`.
pub async fn delete(s: &Session, id: &str, now: bool) -> Result<()> {
    let id = NodeId::from(id);
    if now {
        return delete_now(s, &id).await;
    }
    let (mut lock, mut node, version) = lock_node(&s.store, &id).await?;
    node.set_state(NodeState::Deleting);
    let stored = s.store.store_node(&node, Some(version)).await;
    lock.release().await?;
    stored.wrap_err_with(|| format!("cannot store node {id}"))?;
    print_current(&s.store, &id).await
}

/// `delete --now`: delete the server through the provider of the local config, wait until
/// the cloud no longer lists it, then delete the node record (state `deleted`, then the
/// znode with its lock). Prints the node's last row.
async fn delete_now(s: &Session, id: &NodeId) -> Result<()> {
    let Some((node, _)) = s.store.get_node(id).await? else {
        return Err(not_found(id.as_str()));
    };
    let provider = node.provider.clone().unwrap_or_default();
    let driver = driver_for(&s.config, &provider)
        .wrap_err_with(|| format!("cannot delete node {id} now"))?;
    let (_lock, mut node, _) = lock_node(&s.store, id).await?;
    if let Some(server) = node.external_id.clone() {
        delete_server(driver.as_ref(), &server)
            .await
            .wrap_err_with(|| format!("cannot delete server {server} of node {id}"))?;
    }
    s.store.delete_node(&node).await?;
    node.set_state(NodeState::Deleted);
    print_row(&node, false)
}

/// The cloud driver of `provider` from the local config (OpenStack via clouds.yaml).
pub fn driver_for(config: &Config, provider: &str) -> Result<Arc<dyn CloudDriver>> {
    let p = config
        .provider(provider)
        .ok_or_else(|| eyre!("Provider {provider} is not defined in the config"))?;
    let mut opts = DriverOptions::new(&p.name);
    opts.region_name = p.region_name.clone();
    opts.rate = p.rate.as_secs_f64();
    let driver = OpenStackDriver::from_clouds_yaml(&p.cloud, opts)
        .wrap_err_with(|| format!("provider {provider}: cloud {}", p.cloud))?;
    Ok(Arc::new(driver))
}

/// Deletes a server and waits (bounded) until the cloud no longer has it.
async fn delete_server(driver: &dyn CloudDriver, server: &str) -> Result<()> {
    match driver.delete_server(server).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let deadline = tokio::time::Instant::now() + SERVER_DELETE_TIMEOUT;
    loop {
        if driver.get_server(server).await?.is_none() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(eyre!(
                "server still exists after {}s",
                SERVER_DELETE_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
