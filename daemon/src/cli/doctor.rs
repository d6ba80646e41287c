//! `nodepool doctor`: loads the whole tree into a cache (as the launcher and the
//! console do), reads who owns the lock contenders, runs the inspections of
//! [`nodepool_shared::diagnostics`] against the config, and prints the problems. Its
//! exit status is made for cron and monitoring checks: 0 none (or only info), 1
//! warnings, 2 errors — or the inspection itself failed (config, ZooKeeper): a
//! Nodepool that cannot be inspected is as bad as one with errors.

use std::time::Duration;

use color_eyre::eyre::{eyre, Result};
use nodepool_shared::diagnostics::{
    exit_status, inspect, locks, render_json, render_text, ConfigFacts, Inputs, LockOwners,
    Snapshot,
};
use nodepool_shared::listing::OutputFormat;
use nodepool_shared::model::now_epoch;
use nodepool_shared::zk::TreeCache;

use super::context::{print_out, Globals};

/// Exit status when the inspection could not run (as for errors).
pub const CANNOT_INSPECT: u8 = 2;

/// Ends the program with this exit status (after its output was printed).
#[derive(Debug, thiserror::Error)]
#[error("exit status {0}")]
pub struct ExitWith(pub u8);

/// `nodepool doctor [--format json]`.
pub async fn doctor(g: &Globals, format: OutputFormat) -> Result<()> {
    let status = match inspect_system(g, format).await {
        Ok(status) => status,
        Err(e) => {
            eprintln!("nodepool doctor: cannot inspect: {e:#}");
            CANNOT_INSPECT
        }
    };
    if status == 0 {
        Ok(())
    } else {
        Err(ExitWith(status).into())
    }
}

async fn inspect_system(g: &Globals, format: OutputFormat) -> Result<u8> {
    let session = g.connect().await?;
    let result = run(&session.config, &session.store, g.zk_timeout, format).await;
    session.close().await;
    result
}

async fn run(
    config: &nodepool_shared::config::Config,
    store: &nodepool_shared::zk::ZkStore,
    timeout: Duration,
    format: OutputFormat,
) -> Result<u8> {
    let client = store.client().clone();
    let cache = TreeCache::start(client.clone());
    if !cache.wait_synced(timeout).await {
        cache.stop();
        return Err(eyre!(
            "the ZooKeeper tree did not load within {}s",
            timeout.as_secs_f64()
        ));
    }
    let snapshot = Snapshot::from_cache(&cache);
    cache.stop();
    let owners = locks::read_owners(&client, &snapshot, &LockOwners::new()).await?;
    let facts = ConfigFacts::from_config(config);
    let mut inputs = Inputs::new(&snapshot, &facts, now_epoch());
    inputs.lock_owners = Some(&owners);
    let problems = inspect(&inputs);
    match format {
        OutputFormat::Text => print_out(&render_text(&problems))?,
        OutputFormat::Json => print_out(&render_json(&problems))?,
    }
    Ok(exit_status(&problems))
}
