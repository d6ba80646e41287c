//! Benchmark of the console (not a test; run it in release, once):
//!
//! ```text
//! cargo run --release -p nodepool-tui --example bench            # all three
//! cargo run --release -p nodepool-tui --example bench -- render  # 1 and 2 only
//! ```
//!
//! `BENCH_NODES=100000` sets the number of nodes (default 10,000).
//!
//! 1. Rendering: the nodes view at 120×40 into a test backend — the first load, the
//!    per-frame time of a redraw, and of a new snapshot in which one node changed
//!    (state, label, age: its row moves) + redraw, sorted by ID and by label; the RSS.
//! 2. The Overview over 50 providers (a config of 50 providers, 13 labels, 30 minutes
//!    of history): a redraw at 80×24, 120×40 and 200×50, and a snapshot with one node
//!    changed + redraw (history, the inspections of the Problems view and the
//!    Overview's model each time); and the nodes view after a clock tick, when the first
//!    change runs the inspections: inline (as before) and on the console's inspection
//!    thread.
//! 3. Latency: a real ZooKeeper (the shared test server, or one started here), a
//!    TreeCache and the App; time from `ZkStore::store_node` returning to the changed
//!    value being in the rendered frame; the RSS with the cache and the console.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nodepool_shared::model::{Node, NodeId, NodeState};
use nodepool_shared::testing::TestZk;
use nodepool_shared::zk::{CachedNode, Stat, TreeCache, ZkStore};
use nodepool_tui::app::{App, AppEvent, AppOptions};
use nodepool_tui::data::{ConfigInfo, Health, Snapshot};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

/// Nodes in the snapshot and in ZooKeeper (`BENCH_NODES`, default 10,000).
fn nodes_count() -> usize {
    std::env::var("BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}
const PROVIDERS: usize = 50;
const NOW: f64 = 1_700_000_000.0;

fn synthetic(i: usize) -> Node {
    let states = [
        NodeState::Ready,
        NodeState::InUse,
        NodeState::Building,
        NodeState::Used,
        NodeState::Deleting,
    ];
    Node {
        id: NodeId::from_sequence(i as u64),
        state: states[i % states.len()],
        state_time: NOW - (i % 5000) as f64,
        provider: Some(format!("provider-{:02}", i % PROVIDERS)),
        pool: Some("main".into()),
        node_type: vec![format!("label-{}", i % 13)],
        public_ipv4: Some(format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)),
        external_id: Some(format!("{i:08x}-0000-4000-8000-000000000000")),
        ..Node::default()
    }
}

/// The process's resident memory now (Linux; 0 elsewhere), in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn cached(node: Node) -> Arc<CachedNode> {
    Arc::new(CachedNode {
        node: Arc::new(node.into()),
        stat: STAT,
        lock_contenders: vec![],
    })
}

/// The same snapshot with node `(i × 7919) mod n` changed (another state, label and
/// age), as a watch event on one node leaves the cache: a new `Arc` for it, the same
/// `Arc`s for the others.
fn one_changed(snap: &mut Snapshot, i: usize) -> Snapshot {
    let states = [
        NodeState::Ready,
        NodeState::InUse,
        NodeState::Building,
        NodeState::Used,
        NodeState::Deleting,
    ];
    let k = (i * 7919) % snap.nodes.len();
    let mut n = synthetic(k);
    n.state = states[(k + i + 1) % states.len()];
    n.node_type = vec![format!("label-{}", (k + i + 1) % 13)];
    n.state_time = NOW - (i % 300) as f64;
    snap.nodes[k] = cached(n);
    snap.clone()
}

const STAT: Stat = nodepool_shared::zk::IN_MEMORY_STAT;

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    let p = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    format!(
        "n={} mean={:.2?} p50={:.2?} p99={:.2?} max={:.2?}",
        v.len(),
        mean,
        p(0.5),
        p(0.99),
        v[v.len() - 1]
    )
}

fn render_bench() {
    let rss_start = rss_mib();
    let mut snap = Snapshot {
        nodes: (0..nodes_count()).map(|i| cached(synthetic(i))).collect(),
        ..Default::default()
    };
    let rss_snapshot = rss_mib();
    let mut app = App::new(AppOptions {
        hosts: "bench".into(),
        now: NOW,
        ..Default::default()
    });
    let mut term = Terminal::new(TestBackend::new(120, 40)).expect("terminal");
    // The first load, on the nodes view.
    let t = Instant::now();
    app.update(AppEvent::Data(snap.clone()));
    app.update(AppEvent::Key(ratatui::crossterm::event::KeyEvent::from(
        ratatui::crossterm::event::KeyCode::Char('1'),
    )));
    term.draw(|f| app.render(f)).expect("draw");
    let first = t.elapsed();
    let rss_rows = rss_mib();
    let mut redraw = Vec::new();
    for i in 0..300 {
        // Move the selection so each frame differs.
        app.update(AppEvent::Key(ratatui::crossterm::event::KeyEvent::from(
            if i % 50 < 25 {
                ratatui::crossterm::event::KeyCode::PageDown
            } else {
                ratatui::crossterm::event::KeyCode::PageUp
            },
        )));
        let t = Instant::now();
        term.draw(|f| app.render(f)).expect("draw");
        redraw.push(t.elapsed());
    }
    let mut clone = Vec::new();
    let mut with_data = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        let next = one_changed(&mut snap, i);
        clone.push(t.elapsed());
        let t = Instant::now();
        app.update(AppEvent::Data(next));
        term.draw(|f| app.render(f)).expect("draw");
        with_data.push(t.elapsed());
    }
    // Sorted by age, descending (a string-free comparison) and by label (strings).
    app.update(AppEvent::Key(ratatui::crossterm::event::KeyEvent::from(
        ratatui::crossterm::event::KeyCode::Char('s'),
    )));
    app.update(AppEvent::Key(ratatui::crossterm::event::KeyEvent::from(
        ratatui::crossterm::event::KeyCode::Char('s'),
    )));
    let mut sorted_label = Vec::new();
    for i in 200..400 {
        let next = one_changed(&mut snap, i);
        let t = Instant::now();
        app.update(AppEvent::Data(next));
        term.draw(|f| app.render(f)).expect("draw");
        sorted_label.push(t.elapsed());
    }
    let n = nodes_count();
    println!("render, {n} nodes, 120x40, first load + draw: {first:.2?}");
    println!(
        "render, {n} nodes, 120x40, redraw only:           {}",
        stats(redraw)
    );
    println!(
        "render, {n} nodes, snapshot with one node changed (clone, not in the frames): {}",
        stats(clone)
    );
    println!(
        "render, {n} nodes, 120x40, one node changed + redraw (ID): {}",
        stats(with_data)
    );
    println!(
        "render, {n} nodes, 120x40, one node changed + redraw (Label sort): {}",
        stats(sorted_label)
    );
    println!(
        "memory, {n} nodes: RSS {rss_start:.1} MiB at start, {rss_snapshot:.1} MiB with the snapshot, \
         {rss_rows:.1} MiB with the nodes view built, {:.1} MiB at the end",
        rss_mib()
    );
}

/// A config of [`PROVIDERS`] providers with two pools of 120 servers each, 13 labels.
fn big_config() -> ConfigInfo {
    use nodepool_shared::diagnostics::{ImageFacts, PoolFacts, ProviderFacts};
    let labels: Vec<(String, u32)> = (0..13).map(|l| (format!("label-{l}"), 2)).collect();
    ConfigInfo {
        loaded: true,
        labels: labels.clone(),
        diskimages: vec![ImageFacts {
            name: "bench-image".into(),
            rebuild_age: Duration::from_secs(86_400),
            build_timeout: Duration::from_secs(8 * 3600),
            paused: false,
        }],
        providers: (0..PROVIDERS)
            .map(|p| ProviderFacts {
                name: format!("provider-{p:02}"),
                cloud: "bench".into(),
                region_name: None,
                rate: Duration::from_secs(1),
                launch_timeout: Duration::from_secs(3600),
                boot_timeout: Duration::from_secs(60),
                launch_retries: 3,
                image_upload_timeout: Duration::from_secs(3600),
                pools: ["a", "b"]
                    .iter()
                    .map(|n| PoolFacts {
                        name: n.to_string(),
                        max_servers: Some(120),
                        labels: labels.iter().map(|(l, _)| (l.clone(), None)).collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn overview_bench() {
    let nodes = nodes_count();
    let mut snap = Snapshot {
        nodes: (0..nodes).map(|i| cached(synthetic(i))).collect(),
        ..Default::default()
    };
    let start = NOW - 1800.0;
    let mut app = App::new(AppOptions {
        hosts: "bench".into(),
        now: start,
        config: big_config(),
        ..Default::default()
    });
    // Half an hour of history, one change every 10 s.
    for step in 0..=180 {
        app.update(AppEvent::Tick(start + f64::from(step) * 10.0));
        app.update(AppEvent::Data(snap.clone()));
    }
    // The parts of a data change the Overview adds: the inspections of the Problems
    // view and the history (sparklines, failures, min-ready tracking).
    let cfg = big_config();
    let mut inspect = Vec::new();
    let mut observe = Vec::new();
    let mut history = nodepool_tui::history::History::new(NOW);
    for i in 0..50 {
        let t = Instant::now();
        let inputs = nodepool_shared::diagnostics::Inputs::new(&snap, &cfg, NOW);
        std::hint::black_box(nodepool_shared::diagnostics::inspect(&inputs));
        inspect.push(t.elapsed());
        let t = Instant::now();
        history.observe(&snap, &cfg, NOW + f64::from(i));
        observe.push(t.elapsed());
    }
    println!(
        "inspections (Problems view), {nodes} nodes, {PROVIDERS} providers: {}",
        stats(inspect)
    );
    println!(
        "history observe, {nodes} nodes:                     {}",
        stats(observe)
    );
    for (w, h) in [(80u16, 24u16), (120, 40), (200, 50)] {
        let mut term = Terminal::new(TestBackend::new(w, h)).expect("terminal");
        term.draw(|f| app.render(f)).expect("draw");
        let mut redraw = Vec::new();
        for i in 0..300 {
            // A clock tick: ages and trends change, the model is rebuilt.
            app.update(AppEvent::Tick(NOW + f64::from(i) * 0.001));
            let t = Instant::now();
            term.draw(|f| app.render(f)).expect("draw");
            redraw.push(t.elapsed());
        }
        let mut with_data = Vec::new();
        for i in 0..100 {
            let next = one_changed(&mut snap, i);
            let t = Instant::now();
            app.update(AppEvent::Data(next));
            term.draw(|f| app.render(f)).expect("draw");
            with_data.push(t.elapsed());
        }
        println!(
            "overview, {nodes} nodes, {PROVIDERS} providers, {w}x{h}, tick + redraw:      {}",
            stats(redraw)
        );
        println!(
            "overview, {nodes} nodes, {PROVIDERS} providers, {w}x{h}, one node changed + redraw: {}",
            stats(with_data)
        );
    }
}

async fn latency_bench() {
    let zk = TestZk::shared().await;
    let client = zk.client().await;
    let store = ZkStore::new(client.clone());
    // Fill ZooKeeper with 10,000 nodes (pipelined).
    let t = Instant::now();
    let mut first = None;
    for chunk in (0..nodes_count()).collect::<Vec<_>>().chunks(200) {
        let futs = chunk.iter().map(|&i| {
            let store = store.clone();
            async move {
                let mut n = synthetic(i);
                n.id = NodeId::default();
                store.create_node(&mut n).await.map(|id| (id, n))
            }
        });
        for r in futures::future::join_all(futs).await {
            let (id, n) = r.expect("create node");
            if first.as_ref().is_none_or(|(f, _): &(NodeId, Node)| id < *f) {
                first = Some((id, n));
            }
        }
    }
    println!("created {} nodes in {:.1?}", nodes_count(), t.elapsed());
    let (id, mut node) = first.expect("a node");
    let cache = TreeCache::start(client.clone());
    assert!(
        cache.wait_synced(Duration::from_secs(120)).await,
        "cache synced"
    );
    let mut app = App::new(AppOptions {
        hosts: zk.plain_hosts(),
        now: nodepool_shared::model::now_epoch(),
        ..Default::default()
    });
    let health = |c: &TreeCache| Health {
        hosts: String::new(),
        connection: client.status(),
        cache: c.status(),
        changes: c.generation(),
    };
    app.update(AppEvent::Health(health(&cache)));
    app.update(AppEvent::Data(Snapshot::from_cache(&cache)));
    app.update(AppEvent::Key(ratatui::crossterm::event::KeyEvent::from(
        ratatui::crossterm::event::KeyCode::Char('1'),
    )));
    let mut term = Terminal::new(TestBackend::new(120, 40)).expect("terminal");
    term.draw(|f| app.render(f)).expect("draw");
    let mut generation = cache.watch_generation();
    let mut lat = Vec::new();
    let mut write = Vec::new();
    for round in 0..30 {
        let marker = format!("lat-{round}");
        node.provider = Some(marker.clone());
        node.id = id.clone();
        let t0 = Instant::now();
        store.store_node(&node, None).await.expect("store node");
        let t1 = Instant::now();
        loop {
            tokio::time::timeout(Duration::from_secs(10), generation.changed())
                .await
                .expect("a change within 10 s")
                .expect("cache running");
            app.update(AppEvent::Data(Snapshot::from_cache(&cache)));
            term.draw(|f| app.render(f)).expect("draw");
            let buf = term.backend().buffer();
            let text: String = buf.content().iter().map(|c| c.symbol()).collect();
            if text.contains(&marker) {
                break;
            }
        }
        write.push(t1 - t0);
        lat.push(t1.elapsed());
    }
    println!(
        "ZooKeeper set (store_node round trip):            {}",
        stats(write)
    );
    println!(
        "latency write-acknowledged -> in rendered frame:  {}",
        stats(lat)
    );
    println!(
        "memory: RSS with the TreeCache of {} nodes and the console on the nodes view: {:.1} MiB",
        nodes_count(),
        rss_mib()
    );
    cache.stop();
    client.close().await;
}

/// The first change after a clock tick runs the inspections: in the frame when inline,
/// on their own thread with the inspector (the answer is applied outside the timing,
/// as the console's loop does when it arrives).
fn tick_bench() {
    let mut snap = Snapshot {
        nodes: (0..nodes_count()).map(|i| cached(synthetic(i))).collect(),
        ..Default::default()
    };
    let n = nodes_count();
    for background in [false, true] {
        let mut app = App::new(AppOptions {
            hosts: "bench".into(),
            now: NOW,
            ..Default::default()
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        if background {
            app.inspect_in_background(tx);
        }
        let mut term = Terminal::new(TestBackend::new(120, 40)).expect("terminal");
        app.update(AppEvent::Data(snap.clone()));
        app.update(AppEvent::Key(ratatui::crossterm::event::KeyEvent::from(
            ratatui::crossterm::event::KeyCode::Char('1'),
        )));
        let mut frames = Vec::new();
        let mut answers = Vec::new();
        for i in 0..60 {
            if background {
                let t = Instant::now();
                let ev = rx.blocking_recv().expect("inspection answer");
                answers.push(t.elapsed());
                app.update(ev);
            }
            app.update(AppEvent::Tick(NOW + 1.0 + i as f64));
            let next = one_changed(&mut snap, i);
            let t = Instant::now();
            app.update(AppEvent::Data(next));
            term.draw(|f| app.render(f)).expect("draw");
            frames.push(t.elapsed());
        }
        let how = if background {
            "inspection thread"
        } else {
            "inline"
        };
        println!(
            "render, {n} nodes, 120x40, first change after a tick + redraw, inspections {how}: {}",
            stats(frames)
        );
        if background {
            println!(
                "render, {n} nodes, waiting for the inspection thread's answer after the frame: {}",
                stats(answers)
            );
        }
    }
}

fn main() {
    render_bench();
    tick_bench();
    overview_bench();
    if std::env::args().nth(1).as_deref() == Some("render") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(latency_bench());
}
