//! `list`, `delete` and `hold`: the node commands. Changes are made under the node lock
//! (kazoo recipe, waiting up to 5 s as Python's CLI does) and re-read after locking, so
//! the launcher and Zuul never see a half-made change; the writes are
//! [`nodepool_shared::zk::ops`], which `nodepool-tui` runs too. `delete` takes several
//! ids (ours), confirmed on a terminal or with `--yes`.

use std::sync::Arc;
use std::time::Duration;

use color_eyre::eyre::{eyre, Result, WrapErr};
use nodepool_shared::cloud::{provider_driver, CloudDriver, CloudsFile};
use nodepool_shared::config::Config;
use nodepool_shared::listing::{
    listed_node_row, node_list, owned_node_row, Cell, ListedNode, NodeColumns, NodeListing,
    OutputFormat,
};
use nodepool_shared::model::paths;
use nodepool_shared::model::{now_epoch, Node, NodeId, NodeState};
use nodepool_shared::stats::Statsd;
use nodepool_shared::zk::{ops, ZkError, ZkLock, ZkStore};

use super::bulk::{parse_node, read_nodes_with_locks};
use super::context::{ask_yes, print_out, Session};
use super::provider::Confirm;
use super::read::node_with_lock;
use crate::launcher::deleter::delete_locked_node;
use crate::launcher::DELETE_TIMEOUT;

/// How long the CLI waits for a node lock (Python: 5 s).
pub const LOCK_TIMEOUT: Duration = ops::NODE_LOCK_TIMEOUT;

/// `nodepool list [--detail]`: the nodes are read in batches and each batch goes into
/// the listing at once (text keeps only the cell texts until the widths are known,
/// JSON only its output), so 100,000 nodes are never all in memory as records.
pub async fn list(s: &Session, detail: bool, format: OutputFormat) -> Result<()> {
    let start = std::time::Instant::now();
    let columns = if detail {
        NodeColumns::Detail
    } else {
        NodeColumns::Brief
    };
    let now = now_epoch();
    let mut listing = NodeListing::new(now, columns, format, None);
    let count = read_nodes_with_locks(
        &s.store,
        move |id, data, locked| listing_row(id, data, locked, now, columns),
        |batch| {
            for row in batch {
                listing.push_cells(&row);
            }
        },
    )
    .await?;
    tracing::debug!(nodes = count, elapsed = ?start.elapsed(), "read nodes");
    // Nothing more to read: the session closes (a round trip) while the table is written.
    let client = s.store.client().clone();
    let closing = tokio::spawn(async move { client.close().await });
    let printed = print_listing(listing);
    tracing::debug!(elapsed = ?start.elapsed(), "printed");
    let _ = closing.await;
    tracing::debug!(elapsed = ?start.elapsed(), "session closed");
    printed
}

/// The listing's cells of one node record (on a pool thread): read straight from the
/// JSON ([`ListedNode`]), or, for what that leaves alone, through [`Node::from_json`]
/// (same cells; a corrupt record is skipped with a warning). `None`: nothing to list.
fn listing_row(
    id: &NodeId,
    data: &[u8],
    locked: bool,
    now: f64,
    columns: NodeColumns,
) -> Option<Vec<Cell>> {
    let mut row = Vec::with_capacity(21);
    match ListedNode::parse(id, data) {
        Some(Some(node)) => listed_node_row(&node, locked, now, columns, &mut row),
        Some(None) => return None,
        None => {
            let (node, locked) = parse_node(id, data, locked)?;
            owned_node_row(node, locked, now, columns, &mut row);
        }
    }
    Some(row)
}

/// Writes a listing and a newline to stdout (control characters as `?` on a terminal; a
/// closed pipe is not an error, as in [`print_out`]).
fn print_listing(listing: NodeListing) -> Result<()> {
    use std::io::{IsTerminal, Write};
    fn write(listing: NodeListing, mut out: impl Write) -> std::io::Result<()> {
        listing.write_to(&mut out)?;
        out.write_all(b"\n")?;
        out.flush()
    }
    let stdout = std::io::stdout();
    let r = if stdout.is_terminal() {
        write(listing, super::terminal::Sanitized::new(stdout.lock()))
    } else {
        write(listing, stdout.lock())
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(eyre!("cannot write to stdout: {e}")),
    }
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

/// A node change that failed; a corrupt record gets the hint how to remove it.
fn change_failed(id: &NodeId, e: ops::OpError) -> color_eyre::eyre::Report {
    match e {
        ops::OpError::Zk(ZkError::Corrupt(why)) => eyre!(
            "{why}; the record cannot be changed: `nodepool delete --now {id}` removes a corrupt node record"
        ),
        e => e.into(),
    }
}

/// `nodepool hold ID [--reason TEXT]`.
pub async fn hold(s: &Session, id: &str, reason: Option<&str>) -> Result<()> {
    let id = NodeId::from(id);
    ops::update_node(&s.store, &id, LOCK_TIMEOUT, |node| {
        node.set_state(NodeState::Hold);
        if let Some(r) = reason {
            node.comment = Some(r.to_string());
        }
        Ok(())
    })
    .await
    .map_err(|e| change_failed(&id, e))?;
    print_current(&s.store, &id).await
}

/// `nodepool delete ID [--now]`: one node, exactly as Python Nodepool does it.
pub async fn delete(s: &Session, id: &str, now: bool) -> Result<()> {
    let id = NodeId::from(id);
    if now {
        return match delete_now(s, &id).await? {
            Some(node) => print_row(&node, false),
            None => Ok(()),
        };
    }
    mark_deleting(s, &id).await?;
    print_current(&s.store, &id).await
}

/// `nodepool delete ID ID… [--now] [--yes]`: several nodes, after confirmation (asked
/// on a terminal unless `--yes`; refused without one). Each node is handled as by
/// [`delete`]; a failure is reported and the others are still deleted; the rows of the
/// deleted nodes are printed as one table. One id is [`delete`], unasked.
pub async fn delete_many(s: &Session, ids: &[String], now: bool, confirm: Confirm) -> Result<()> {
    if let [id] = ids {
        return delete(s, id, now).await;
    }
    if confirm == Confirm::Ask {
        let question = format!(
            "Delete {} nodes{} ({})?",
            ids.len(),
            if now { " and their servers now" } else { "" },
            ids.join(", ")
        );
        let refusal = format!(
            "refusing to delete {} nodes without confirmation: stdin is not a terminal (use --yes)",
            ids.len()
        );
        if !ask_yes(&question, &refusal)? {
            return print_out("Aborting. No node deleted.");
        }
    }
    let mut rows: Vec<(Node, bool)> = Vec::new();
    let mut failed = 0usize;
    for id in ids {
        let id = NodeId::from(id.as_str());
        let done = if now {
            delete_now(s, &id).await.map(|n| n.map(|n| (n, false)))
        } else {
            match mark_deleting(s, &id).await {
                Ok(()) => node_with_lock(&s.store, &id).await.map_err(Into::into),
                Err(e) => Err(e),
            }
        };
        match done {
            Ok(row) => rows.extend(row),
            Err(e) => {
                eprintln!("{e:#}");
                failed += 1;
            }
        }
    }
    let table = node_list(
        rows.iter().map(|(n, l)| (n, *l)),
        now_epoch(),
        NodeColumns::Brief,
    );
    print_out(&table.render_text())?;
    if failed > 0 {
        return Err(eyre!("{failed} of {} nodes not deleted", ids.len()));
    }
    Ok(())
}

/// Sets node `id` `deleting` under its lock (the launcher then deletes it).
async fn mark_deleting(s: &Session, id: &NodeId) -> Result<()> {
    ops::update_node(&s.store, id, LOCK_TIMEOUT, |node| {
        node.set_state(NodeState::Deleting);
        Ok(())
    })
    .await
    .map_err(|e| change_failed(id, e))?;
    Ok(())
}

/// `delete --now`: the launcher's own node-delete sequence ([`delete_locked_node`], as
/// Python's CLI runs the provider's node deleter) through the provider of the local
/// config: `deleting`, the server's floating IPs, the server (temporary errors retried
/// for up to 10 minutes, until the cloud no longer has it), then the node record (state
/// `deleted`, then the znode with its lock). On failure the node stays `deleting` and is
/// unlocked, so a launcher finishes the job. Returns the node as it was last (`deleted`).
/// A node of a static provider has no server: only its record goes (the launcher
/// registers its host's slot again). A corrupt record is removed by
/// [`remove_corrupt`] (returns `None`: there is no row to print).
async fn delete_now(s: &Session, id: &NodeId) -> Result<Option<Node>> {
    let node = match s.store.get_node(id).await {
        Ok(Some((node, _))) => node,
        Ok(None) => return Err(ops::OpError::NodeNotFound(id.clone()).into()),
        Err(ZkError::Corrupt(why)) => return remove_corrupt(s, id, &why).await.map(|()| None),
        Err(e) => return Err(e.into()),
    };
    let provider = node.provider.clone().unwrap_or_default();
    let driver = match s.config.static_provider(&provider) {
        Some(_) => None,
        None => Some(
            driver_for(&s.config, &provider)
                .wrap_err_with(|| format!("cannot delete node {id} now"))?,
        ),
    };
    let ops::LockedNode {
        mut lock,
        mut node,
        version,
    } = ops::lock_node(&s.store, id, LOCK_TIMEOUT).await?;
    let mut version = Some(version);
    let r = delete_locked_node(
        &s.store,
        driver.as_deref(),
        &mut node,
        &mut version,
        DELETE_TIMEOUT,
    )
    .await;
    if let Err(e) = r {
        let _ = lock.release().await;
        return Err(eyre!(e)).wrap_err_with(|| format!("cannot delete node {id} now"));
    }
    node.set_state(NodeState::Deleted);
    Ok(Some(node))
}

/// `delete --now` of a node whose record cannot be read: under the node lock (so no
/// launcher or Zuul is using it), if the record is still unreadable, the znode and its
/// lock directory are deleted. Nothing is known of its server, which the launcher's leak
/// cleanup deletes (a server whose node record is gone is a leak).
async fn remove_corrupt(s: &Session, id: &NodeId, why: &str) -> Result<()> {
    let mut lock = ZkLock::new(s.store.client(), &paths::node_lock(id), b"");
    if !lock.acquire(Some(LOCK_TIMEOUT)).await? {
        return Err(ops::OpError::NodeLocked {
            id: id.clone(),
            secs: LOCK_TIMEOUT.as_secs(),
        }
        .into());
    }
    match s.store.get_node(id).await {
        Err(ZkError::Corrupt(_)) => {}
        Ok(Some(_)) => {
            let _ = lock.release().await;
            return Err(eyre!(
                "the record of node {id} became readable while we waited for its lock; nothing removed (run the command again)"
            ));
        }
        Ok(None) => {
            // Deleted meanwhile: our lock attempt re-created an empty znode.
            let _ = s.store.delete_node_znode(id).await;
            return Err(ops::OpError::NodeNotFound(id.clone()).into());
        }
        Err(e) => {
            let _ = lock.release().await;
            return Err(e.into());
        }
    }
    if let Err(e) = s.store.delete_node_znode(id).await {
        let _ = lock.release().await;
        return Err(eyre!(e))
            .wrap_err_with(|| format!("cannot remove the corrupt record of node {id}"));
    }
    // The lock went with the znode.
    print_out(&format!(
        "Removed the corrupt record of node {id} ({why}) with its lock. Any server it had \
         is deleted by a launcher's leak cleanup."
    ))
}

/// The cloud driver of `provider` from the local config and clouds.yaml (the standard
/// search path), built as the launcher and builder build theirs.
pub fn driver_for(config: &Config, provider: &str) -> Result<Arc<dyn CloudDriver>> {
    let p = config
        .provider(provider)
        .ok_or_else(|| eyre!("Provider {provider} is not defined in the config"))?;
    let clouds = CloudsFile::load()?;
    let driver = provider_driver(p, &clouds, &Statsd::noop())?;
    Ok(Arc::new(driver))
}
