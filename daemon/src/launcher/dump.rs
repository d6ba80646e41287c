//! The SIGUSR2 state dump: what an operator needs to see in the log of a stuck
//! launcher — every task and what it is doing, the started providers, the counters,
//! the tree cache and the ZooKeeper session. Python Nodepool dumps thread stacks on
//! SIGUSR2; our tasks have no stacks worth printing, so they report their state instead.
//!
//! [`dump`] builds the text (pure, for tests), one section per function; the binary
//! logs it on the signal.

use std::fmt::Write as _;

use nodepool_shared::model::{ComponentKind, NodeState};

use super::runtime::LauncherContext;
use nodepool_shared::sync::{MutexExt, RwLockExt};

/// The human-readable, multi-line state of the launcher.
pub fn dump(ctx: &LauncherContext) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "=== nodepool-launcher state dump ===");
    let _ = writeln!(s, "hostname: {} (fqdn {})", ctx.hostname, ctx.fqdn);
    let _ = writeln!(
        s,
        "ready: {}  shutting down: {}",
        ctx.ready.load(std::sync::atomic::Ordering::Relaxed),
        ctx.cancel.is_cancelled()
    );
    tasks(&mut s, ctx);
    providers(&mut s, ctx);
    let _ = writeln!(s, "counters:");
    for (name, value) in ctx.counters.snapshot() {
        let _ = writeln!(s, "  {name}={value}");
    }
    tree_cache(&mut s, ctx);
    zookeeper(&mut s, ctx);
    let _ = write!(s, "=== end of state dump ===");
    s
}

/// Every task and its state, sorted by name.
fn tasks(s: &mut String, ctx: &LauncherContext) {
    let _ = writeln!(s, "tasks:");
    let mut tasks: Vec<(String, String)> = ctx
        .task_states
        .lock_or_recover()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    tasks.sort();
    if tasks.is_empty() {
        let _ = writeln!(s, "  (none)");
    }
    for (name, state) in tasks {
        let _ = writeln!(s, "  {name}: {state}");
    }
}

/// The started providers: cloud (or static hosts), pools (as the current config has
/// them), node count.
fn providers(s: &mut String, ctx: &LauncherContext) {
    let _ = writeln!(s, "providers:");
    let mut lines: Vec<(String, String)> = Vec::new();
    let config = ctx.config();
    let nodes = ctx.cache.nodes();
    let count = |name: &str| {
        nodes
            .iter()
            .filter(|n| n.node.provider() == Some(name))
            .count()
    };
    let clouds: Vec<_> = ctx.providers.read_or_recover().values().cloned().collect();
    for p in clouds {
        let pools: Vec<&str> = config
            .provider(p.name())
            .map(|c| c.pools.iter().map(|x| x.name.as_str()).collect())
            .unwrap_or_default();
        let line = format!(
            "cloud {}, pools [{}], {} nodes in ZooKeeper",
            p.config.cloud,
            pools.join(", "),
            count(p.name())
        );
        lines.push((p.name().to_string(), line));
    }
    let fixed: Vec<_> = ctx
        .static_providers
        .read_or_recover()
        .values()
        .cloned()
        .collect();
    for p in fixed {
        let (pools, hosts) = config
            .static_provider(p.name())
            .map(|c| {
                let pools: Vec<&str> = c.pools.iter().map(|x| x.name.as_str()).collect();
                (pools.join(", "), c.hosts().count())
            })
            .unwrap_or_default();
        let failing = p.failing_hosts();
        let line = format!(
            "static, pools [{pools}], {hosts} hosts ({} failing), {} nodes in ZooKeeper",
            failing.len(),
            count(p.name())
        );
        lines.push((p.name().to_string(), line));
    }
    lines.sort();
    if lines.is_empty() {
        let _ = writeln!(s, "  (none)");
    }
    for (name, line) in lines {
        let _ = writeln!(s, "  {name}: {line}");
    }
}

/// The tree cache: state, session, sizes.
fn tree_cache(s: &mut String, ctx: &LauncherContext) {
    let status = ctx.cache.status();
    let nodes = ctx.cache.nodes();
    let _ = writeln!(s, "tree cache:");
    let _ = writeln!(
        s,
        "  state {:?}, session generation {}, loads {}, corrupt records {}{}",
        status.state,
        status.session_generation,
        status.loads,
        ctx.cache.corrupt_records(),
        status
            .last_error
            .as_deref()
            .map(|e| format!(", last error: {e}"))
            .unwrap_or_default()
    );
    let mut by_state = Vec::new();
    for st in NodeState::ALL {
        let n = nodes.iter().filter(|n| n.node.state() == st).count();
        if n > 0 {
            by_state.push(format!("{st}={n}"));
        }
    }
    let _ = writeln!(
        s,
        "  nodes {} ({}), empty node znodes {}",
        nodes.len(),
        by_state.join(" "),
        ctx.cache.empty_node_ids().len()
    );
    let _ = writeln!(
        s,
        "  requests {} (locked {}), images {}, builds {}, uploads {}",
        ctx.cache.requests().len(),
        ctx.cache.locked_requests().len(),
        ctx.cache.images().len(),
        ctx.cache.builds().len(),
        ctx.cache.uploads().len()
    );
    let _ = writeln!(
        s,
        "  components: launchers {}, pools {}, builders {}",
        ctx.cache.components(ComponentKind::Launcher).len(),
        ctx.cache.components(ComponentKind::Pool).len(),
        ctx.cache.components(ComponentKind::Builder).len()
    );
}

/// The ZooKeeper session.
fn zookeeper(s: &mut String, ctx: &LauncherContext) {
    let client = ctx.store.client();
    let session = client.status();
    let _ = writeln!(s, "zookeeper:");
    let _ = writeln!(
        s,
        "  session {:?}, generation {}, session id {}",
        session.state,
        session.generation,
        client
            .session_info()
            .map(|i| i.id().to_string())
            .unwrap_or_else(|| "-".into())
    );
}
