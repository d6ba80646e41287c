//! The launcher's own ZooKeeper gauges, as Python Nodepool's launcher sends them every
//! 10 s from each launcher (not only the elected stats worker):
//!
//! * `nodepool.launcher.<hostname>.zk.client.connection_queue` — ZooKeeper calls issued
//!   and not yet answered ([`ZkClient::pending_requests`]);
//! * `nodepool.launcher.<hostname>.zk.{node,request,image}_cache.{event,playback}_queue`
//!   — watch events of that part of the tree waiting to be read, and being read and
//!   waiting to be applied ([`TreeCache::queues`]).
//!
//! All of them stay near zero while ZooKeeper keeps up; a growing value means the
//! launcher is falling behind ZooKeeper or ZooKeeper is slow to answer.

use std::sync::Arc;
use std::time::Duration;

use nodepool_shared::stats::{names, Statsd};
use nodepool_shared::zk::{CachePart, CacheQueue, TreeCache, ZkClient};

use super::runtime::LauncherContext;

/// How often the gauges are sent (Nodepool: 10 s).
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The gauges now, by key.
pub fn gauges(hostname: &str, client: &ZkClient, cache: &TreeCache) -> Vec<(String, u64)> {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let mut out = vec![(
        names::zk_connection_queue(hostname),
        count(client.pending_requests()),
    )];
    for part in CachePart::ALL {
        for queue in [CacheQueue::Event, CacheQueue::Playback] {
            out.push((
                names::zk_cache_queue(hostname, part.name(), queue.name()),
                count(cache.queues().get(part, queue)),
            ));
        }
    }
    out
}

/// Sends the gauges once.
pub fn report(statsd: &Statsd, hostname: &str, client: &ZkClient, cache: &TreeCache) {
    for (key, value) in gauges(hostname, client, cache) {
        statsd.gauge(&key, value);
    }
}

/// Sends the gauges every [`INTERVAL`] until the launcher stops.
pub async fn run(ctx: Arc<LauncherContext>) {
    loop {
        report(&ctx.statsd, &ctx.hostname, ctx.store.client(), &ctx.cache);
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            _ = tokio::time::sleep(INTERVAL) => {}
        }
    }
}
