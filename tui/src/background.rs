//! The console's background work besides the cache, each answering with an
//! [`AppEvent`] over a channel: who owns the lock contenders (every 30 s; only new
//! contenders are read), the providers' cloud quotas (every 5 minutes, when a config
//! with providers was given), a node's console log (on demand), and the operator's
//! actions. The UI never waits for any of them.

use std::collections::BTreeMap;
use std::time::Duration;

use nodepool_shared::cloud::console::driver_for;
use nodepool_shared::cloud::{CloudDriver, Limit, OpenStackDriver};
use nodepool_shared::diagnostics::{locks, LockOwners, ProviderFacts, Snapshot};
use nodepool_shared::zk::{SyncState, TreeCache, ZkClient, ZkStore};
use tokio::sync::mpsc::UnboundedSender;

use crate::actions::{execute, Action, ActionOutcome};
use crate::app::{AppEvent, ConsoleRequest};
use crate::data::Quota;

/// How often the lock contenders' owners are read.
pub const LOCK_OWNERS_EVERY: Duration = Duration::from_secs(30);
/// How often the cloud quotas are read.
pub const QUOTA_EVERY: Duration = Duration::from_secs(300);

/// Reads the owners of the lock contenders now and every [`LOCK_OWNERS_EVERY`].
pub async fn lock_owners(client: ZkClient, cache: TreeCache, tx: UnboundedSender<AppEvent>) {
    let mut known = LockOwners::new();
    let mut status = cache.watch_status();
    loop {
        if status
            .wait_for(|s| s.state == SyncState::Synced)
            .await
            .is_err()
        {
            return;
        }
        let snap = Snapshot::from_cache(&cache);
        match locks::read_owners(&client, &snap, &known).await {
            Ok(owners) => {
                known = owners.clone();
                if tx.send(AppEvent::LockOwners(owners)).is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the lock owners"),
        }
        tokio::time::sleep(LOCK_OWNERS_EVERY).await;
    }
}

fn quota_of(limits: Result<nodepool_shared::cloud::ComputeLimits, String>) -> Quota {
    match limits {
        Ok(l) => match l.instances {
            Limit::Max(n) => Quota::Instances(n),
            Limit::Unlimited => Quota::Unlimited,
        },
        Err(e) => Quota::Unknown(e),
    }
}

/// Reads every provider's instance quota now and every [`QUOTA_EVERY`].
pub async fn quotas(providers: Vec<ProviderFacts>, tx: UnboundedSender<AppEvent>) {
    let mut drivers: BTreeMap<String, OpenStackDriver> = BTreeMap::new();
    loop {
        for p in &providers {
            if !drivers.contains_key(&p.name) {
                match driver_for(&p.name, &p.cloud, p.region_name.clone(), p.rate) {
                    Ok(d) => {
                        drivers.insert(p.name.clone(), d);
                    }
                    Err(e) => {
                        let q = Quota::Unknown(e.to_string());
                        if tx.send(AppEvent::Quota(p.name.clone(), q)).is_err() {
                            return;
                        }
                        continue;
                    }
                }
            }
            let Some(d) = drivers.get(&p.name) else {
                continue;
            };
            let limits = d.compute_limits().await.map_err(|e| e.to_string());
            if let Err(e) = &limits {
                tracing::info!(provider = %p.name, error = %e, "cannot read the cloud quota");
            }
            if tx
                .send(AppEvent::Quota(p.name.clone(), quota_of(limits)))
                .is_err()
            {
                return;
            }
        }
        tokio::time::sleep(QUOTA_EVERY).await;
    }
}

/// Fetches a node's console log through its provider's cloud.
pub async fn console_log(req: ConsoleRequest) -> Result<String, String> {
    let p = &req.provider;
    let driver = driver_for(&p.name, &p.cloud, p.region_name.clone(), p.rate).map_err(|e| {
        format!(
            "Unavailable: no credentials for provider {} (cloud {} in clouds.yaml): {e}",
            p.name, p.cloud
        )
    })?;
    driver
        .console_output(&req.server, Some(req.lines))
        .await
        .map_err(|e| format!("cannot fetch the console log of server {}: {e}", req.server))
}

/// Runs one action and sends its outcome.
pub async fn run_action(store: ZkStore, action: Action, tx: UnboundedSender<AppEvent>) {
    let result = execute(&store, &action).await.map_err(|e| e.to_string());
    let _ = tx.send(AppEvent::Outcome(ActionOutcome { action, result }));
}
