//! Applying a reloaded ZooKeeper configuration (`zookeeper-servers` with their chroot,
//! `zookeeper-tls`, `zookeeper-timeout`) to a running daemon's client, shared by the
//! launcher and the builder. Python Nodepool resets its kazoo client's hosts, which only
//! takes effect at the next reconnection and refuses a new chroot; here the client moves
//! to the new ensemble at once ([`ZkClient::reconfigure`]), keeping its session when the
//! new servers are the same ensemble. Everything tied to the session follows a move as
//! it follows a session expiry: component records are registered again, locks are taken
//! again, caches and watches are reloaded on the new ensemble.

use nodepool_shared::zk::{Reconfigured, ZkClient, ZkSettings};

/// Moves `client` to `settings` if they differ from what it uses, and logs what
/// happened. A move whose servers cannot be reached is logged; the client keeps its
/// session and retries in the background.
pub async fn apply(client: &ZkClient, settings: ZkSettings) {
    if client.settings() == settings {
        return;
    }
    let hosts = settings.connect_string();
    match client.reconfigure(settings).await {
        Ok(Reconfigured::Unchanged) => {
            tracing::info!(%hosts, "ZooKeeper timeouts changed; they apply to the next session")
        }
        Ok(Reconfigured::SameEnsemble) => tracing::info!(
            %hosts,
            "ZooKeeper servers changed but name the same ensemble; the session stays"
        ),
        Ok(Reconfigured::Moved { generation }) => tracing::warn!(
            %hosts, generation,
            "moved to the new ZooKeeper servers: locks, component records and caches \
             move to the new session"
        ),
        Ok(Reconfigured::NextSession) => tracing::info!(
            %hosts,
            "ZooKeeper settings changed while reconnecting; the new session uses them"
        ),
        Err(e) => tracing::error!(
            %hosts,
            "cannot move to the new ZooKeeper servers yet (still retrying): {e}"
        ),
    }
}
