//! Memory benchmark (not a test): bytes per node of the tree cache and of the node
//! listing (and of a lock contender on 90 % of the nodes), counted by a global allocator
//! that tracks live and peak heap bytes. No
//! ZooKeeper: the records are decoded exactly as the cache decodes a read. Before the
//! tree is built, the steps of a load are timed one by one over the same records (the
//! split of the launcher's load CPU): scanning the JSON alone, reading it into a
//! `Node`, packing `Node`s into `CompactNode`s, reading the JSON straight into
//! `CompactNode`s (what the cache does), and putting decoded records into the tree.
//! At the end it times the node scans a launcher's periodic passes made or make (the
//! median of 21 runs each): a tenant's usage summed by a scan against the running total
//! less the claimed requests' nodes, and one scan with a cheap predicate (the cleanup's
//! max-ready-age and max-hold-age candidates).
//!
//! ```text
//! CARGO_PROFILE_RELEASE_DEBUG=0 cargo run --release -p nodepool-shared --example cache_memory -- 100000
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use nodepool_shared::listing::{
    node_list, render_compact_nodes, NodeColumns, NodeListing, OutputFormat,
};
use nodepool_shared::model::paths::{self, ZkPath};
use nodepool_shared::model::{now_epoch, CompactNode, Node, NodeId};
use nodepool_shared::testing::scale::{realistic_node, FleetShape};
use nodepool_shared::zk::cache::tree::{decode, Tree, Update};
use nodepool_shared::zk::Stat;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// Every allocation made (not net of frees).
static MADE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        MADE.fetch_add(1, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        ALLOCS.fetch_sub(1, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        MADE.fetch_add(1, Ordering::Relaxed);
        if new > l.size() {
            let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
        }
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn reset_peak() {
    PEAK.store(live(), Ordering::Relaxed);
}

fn stat(i: usize, len: usize) -> Stat {
    Stat {
        czxid: i as i64,
        mzxid: i as i64,
        pzxid: i as i64,
        ctime: 0,
        mtime: 0,
        version: 1,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: 0,
        data_length: len as i32,
        num_children: 0,
    }
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Runs `step` over every record; prints its time and the allocations it made per record.
fn timed<T>(what: &str, n: usize, step: impl FnMut(usize) -> T) -> Vec<T> {
    let made = MADE.load(Ordering::Relaxed);
    let t = Instant::now();
    let out: Vec<T> = (0..n).map(step).collect();
    println!(
        "  {what}: {:.3} s, {:.1} allocations/record",
        t.elapsed().as_secs_f64(),
        (MADE.load(Ordering::Relaxed) - made) as f64 / n as f64
    );
    out
}

/// The steps of a load, timed one by one over the same records.
fn split(records: &[Vec<u8>], round: usize) {
    let n = records.len();
    let ids: Vec<NodeId> = (0..n).map(|i| NodeId::from_sequence(i as u64)).collect();
    println!("decode split, round {round} ({n} records; each step alone):");
    timed("JSON scan only (serde IgnoredAny)", n, |i| {
        serde_json::from_slice::<serde::de::IgnoredAny>(&records[i]).is_ok()
    });
    let nodes = timed("JSON -> Node (Node::from_json)", n, |i| {
        Node::from_json(&ids[i], &records[i]).ok().flatten()
    });
    let mut nodes = nodes.into_iter();
    let via_node = timed("Node -> CompactNode (CompactNode::from)", n, |_| {
        nodes.next().flatten().map(CompactNode::from)
    });
    drop(via_node);
    let compact = timed("JSON -> CompactNode (CompactNode::from_json)", n, |i| {
        CompactNode::from_json(&ids[i], &records[i]).ok().flatten()
    });
    let mut updates = compact
        .into_iter()
        .enumerate()
        .map(|(i, c)| Update::Node(ids[i].clone(), c.map(Arc::new), stat(i, records[i].len())));
    let mut tree = Tree::default();
    let mut events = Vec::new();
    timed("tree insertion and indexes (Tree::apply)", n, |_| {
        if let Some(u) = updates.next() {
            tree.apply(u, &mut events);
        }
        events.clear();
    });
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let now = now_epoch();
    let records: Vec<Vec<u8>> = (0..n)
        .map(|i| realistic_node(i, FleetShape::default(), now).to_json())
        .collect();
    let json_bytes: usize = records.iter().map(Vec::len).sum();
    println!(
        "{n} node records, {:.0} bytes of JSON each",
        json_bytes as f64 / n as f64
    );
    // Twice: the first round also pays for the heap's first growth (page faults).
    for round in 1..=2 {
        split(&records, round);
    }

    let base = live();
    let allocs0 = ALLOCS.load(Ordering::Relaxed);
    let t = Instant::now();
    let mut tree = Tree::default();
    let mut events = Vec::new();
    for (i, data) in records.iter().enumerate() {
        let id = NodeId::from_sequence(i as u64);
        let path = paths::node(&id);
        let u = decode(
            &path,
            ZkPath::Node(id),
            Some((data.clone(), stat(i, data.len()))),
        );
        tree.apply(u, &mut events);
        events.clear();
    }
    let cache = live() - base;
    println!(
        "tree cache: {:.1} MiB live = {:.0} bytes/node, {:.1} allocations/node, built in {:.2} s",
        mib(cache),
        cache as f64 / n as f64,
        (ALLOCS.load(Ordering::Relaxed) - allocs0) as f64 / n as f64,
        t.elapsed().as_secs_f64()
    );
    drop(records);

    // Zuul's lock on 90 % of the nodes (those in use), as the launcher benchmark's fleet.
    let before = live();
    let allocs0 = ALLOCS.load(Ordering::Relaxed);
    let mut locked = 0usize;
    for i in (0..n).filter(|i| i % 10 != 9) {
        let id = NodeId::from_sequence(i as u64);
        let name = format!(
            "{:032x}__lock__0000000000",
            i as u128 * 0x9e37_79b9_7f4a_7c15
        );
        tree.apply(
            nodepool_shared::zk::cache::tree::Update::Present(
                ZkPath::NodeLock(id, Some(name)),
                true,
            ),
            &mut events,
        );
        events.clear();
        locked += 1;
    }
    let locks = live() - before;
    println!(
        "lock contenders on {locked} nodes: {:.1} MiB = {:.0} bytes/locked node, {:.1} allocations/locked node",
        mib(locks),
        locks as f64 / locked.max(1) as f64,
        (ALLOCS.load(Ordering::Relaxed) - allocs0) as f64 / locked.max(1) as f64,
    );

    let nodes: Vec<_> = tree.nodes().cloned().collect();
    // The records as the listings took them before the compact cache (whole `Node`s).
    let full: Vec<_> = nodes.iter().map(|c| c.node.to_node()).collect();
    for (columns, name) in [
        (NodeColumns::Brief, "list"),
        (NodeColumns::Detail, "node-list"),
    ] {
        for format in [OutputFormat::Text, OutputFormat::Json] {
            reset_peak();
            let before = live();
            let t = Instant::now();
            let table = node_list(
                full.iter()
                    .zip(&nodes)
                    .map(|(n, c)| (n, c.probably_locked())),
                now,
                columns,
            );
            let body = table.render(format, None);
            let peak = PEAK.load(Ordering::Relaxed) - before;
            let took = t.elapsed();
            drop((table, body));
            reset_peak();
            let before = live();
            let t = Instant::now();
            let out = if columns == NodeColumns::Detail {
                // The web API: two passes over a snapshot of the cache.
                let pairs: Vec<_> = nodes
                    .iter()
                    .map(|c| (&*c.node, c.probably_locked()))
                    .collect();
                render_compact_nodes(&pairs, now, columns, format, None)
            } else {
                // The CLI: rows as they come (packed cell texts for text).
                let mut listing = NodeListing::new(now, columns, format, None);
                for c in &nodes {
                    listing.push_compact(&c.node, c.probably_locked());
                }
                listing.finish()
            };
            let streamed = PEAK.load(Ordering::Relaxed) - before;
            println!(
                "{name} {format:?}: Table + render peak {:.1} MiB ({:.2} s); streamed peak {:.1} MiB ({:.2} s), body {:.1} MiB",
                mib(peak),
                took.as_secs_f64(),
                mib(streamed),
                t.elapsed().as_secs_f64(),
                mib(out.len())
            );
        }
    }
    scans(&tree);
}

/// The median time of 21 runs of `f`, in microseconds.
fn median_us<T>(mut f: impl FnMut() -> T) -> f64 {
    let mut times: Vec<f64> = (0..21)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The node scans of the launcher's periodic passes against the indexes that replace
/// them (see the module doc).
fn scans(tree: &Tree) {
    use nodepool_shared::model::{NodeState, RequestId};
    let tenant = "tenant-one";
    // Eight claimed requests of the tenant, two of them with a cached node.
    let claimed: Vec<RequestId> = (0..8)
        .map(|i| RequestId::from(format!("300-{:010}", i * 5)))
        .collect();
    let scan = median_us(|| tree.tenant_usage_by_scan(tenant, &claimed));
    let index = median_us(|| tree.tenant_usage_without(tenant, &claimed));
    println!(
        "tenant usage with 8 claimed requests: scan {scan:.0} us, running total less the claimed requests' nodes {index:.1} us"
    );
    let hold = median_us(|| {
        tree.nodes()
            .filter(|n| !n.probably_locked() && n.node.state() == NodeState::Hold)
            .count()
    });
    println!("one scan of every node with a cheap predicate (max-hold-age's): {hold:.0} us");
}
