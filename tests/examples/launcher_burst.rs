//! Launcher benchmark (not a test): the release `nodepool-launcher` binary against the
//! in-process OpenStack simulator (zero boot delay, unlimited quota) and a ZooKeeper-only
//! request generator that plays Zuul (submit `100-…` requests, watch each until
//! `fulfilled`, then delete it).
//!
//! Measures: request-to-fulfilled latency idle (sequential requests) and under a burst,
//! burst throughput, launcher CPU per request (`utime+stime` from `/proc/<pid>/stat`),
//! launcher RSS idle and with 10,000 extra node records in ZooKeeper.
//!
//! ```text
//! cargo build --release -p nodepool-daemon --bin nodepool-launcher
//! cargo run --release -p nodepool-tests --example launcher_burst [-- BURST IDLE]
//! ```
//! `NODEPOOL_LAUNCHER_BIN` overrides the binary path (default `target/release/nodepool-launcher`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use nodepool_shared::model::{
    paths, ComponentKind, Node, NodeRequest, NodeState, RequestId, RequestState,
};
use nodepool_shared::testing::TestZk;
use nodepool_shared::zk::{ZkClient, ZkStore};
use nodepool_tests::sim::{Knobs, Quota, SimConfig, Simulator};

const PROVIDER: &str = "bench";

/// The launcher config (no host-key scan: this measures the launcher's request path).
fn config_yaml(zk: &TestZk) -> String {
    let (host, port) = zk
        .plain_hosts()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .expect("host:port");
    format!(
        "zookeeper-servers:\n  - host: {host}\n    port: {port}\n    chroot: {chroot}\nlabels:\n  - name: small\nproviders:\n  - name: {PROVIDER}\n    cloud: sim\n    rate: 0\n    cloud-images:\n      - name: cirros\n        image-name: cirros-0.6.2\n    pools:\n      - name: main\n        max-servers: 100000\n        auto-floating-ip: false\n        host-key-checking: false\n        labels:\n          - name: small\n            cloud-image: cirros\n            flavor-name: small\n",
        chroot = zk.chroot()
    )
}

/// utime+stime of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15.
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Submits one request and waits (data watch) until it is fulfilled; returns the latency.
/// Then it returns the nodes as Zuul does after a job (state `used`, which the launcher
/// deletes with their servers) and deletes the request. Returning them matters: a node
/// left `ready` would be de-allocated once its request is gone and reused by the next
/// request, which would then measure reuse instead of launches.
async fn one_request(store: &ZkStore, client: &ZkClient) -> Duration {
    let mut r = NodeRequest::new(vec!["small".into()], "bench");
    let start = Instant::now();
    let id = store
        .create_request(&mut r, "100", false)
        .await
        .expect("submit");
    let done = wait_fulfilled(client, &id).await.expect("fulfilled");
    let latency = start.elapsed();
    for node_id in &done.nodes {
        if let Ok(Some((mut n, _))) = store.get_node(node_id).await {
            n.set_state(NodeState::Used);
            let _ = store.store_node(&n, None).await;
        }
    }
    store.delete_request(&id).await.expect("delete request");
    latency
}

async fn wait_fulfilled(client: &ZkClient, id: &RequestId) -> Option<NodeRequest> {
    let path = paths::request(id);
    loop {
        let (data, _, watcher) = client.get_and_watch(&path).await.ok()??;
        if let Ok(Some(r)) = NodeRequest::from_json(id, &data) {
            match r.state {
                RequestState::Fulfilled => return Some(r),
                RequestState::Failed => panic!("request {id} failed"),
                _ => {}
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(60), watcher.changed())
            .await
            .ok()?;
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn idle_latency(store: &ZkStore, client: &ZkClient, n: usize) -> Vec<Duration> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(one_request(store, client).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    v.sort();
    v
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let burst: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(500);
    let idle_n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let bin = std::env::var_os("NODEPOOL_LAUNCHER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/nodepool-launcher"));
    assert!(bin.is_file(), "build the launcher first: {}", bin.display());

    let zk = TestZk::shared().await;
    let sim = Simulator::start(SimConfig {
        knobs: Knobs {
            quota: Quota::UNLIMITED,
            ..Knobs::default()
        },
        ..Default::default()
    })
    .await
    .expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("nodepool.yaml");
    let clouds = dir.path().join("clouds.yaml");
    sim.write_clouds_yaml(&clouds, "sim").expect("clouds");
    std::fs::write(&config, config_yaml(&zk)).expect("config");

    let mut child = Command::new(&bin)
        .arg("-f")
        .arg("-c")
        .arg(&config)
        .arg("--clouds")
        .arg(&clouds)
        .arg("--no-webapp")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start launcher");
    let pid = child.id();
    let client = zk.client().await;
    let store = ZkStore::new(client.clone());
    let t0 = Instant::now();
    while store
        .components(ComponentKind::Pool)
        .await
        .map(|c| c.is_empty())
        .unwrap_or(true)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "launcher did not register"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Warm up (flavor/image lookups, provider quota).
    for _ in 0..5 {
        one_request(&store, &client).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = rss_kib(pid);

    let idle = idle_latency(&store, &client, idle_n).await;
    println!(
        "idle ({idle_n} sequential requests): p50 {} p99 {} max {}",
        ms(pct(&idle, 0.5)),
        ms(pct(&idle, 0.99)),
        ms(pct(&idle, 1.0))
    );

    // Burst: all requests submitted at once (64 creates in flight), each watched.
    let cpu0 = cpu_ticks(pid);
    let start = Instant::now();
    let store2 = store.clone();
    let client2 = client.clone();
    let mut lat: Vec<Duration> = stream::iter(0..burst)
        .map(|_| {
            let store = store2.clone();
            let client = client2.clone();
            async move { one_request(&store, &client).await }
        })
        .buffer_unordered(burst)
        .collect()
        .await;
    let elapsed = start.elapsed();
    let cpu = (cpu_ticks(pid) - cpu0) as f64 / ticks_per_sec();
    lat.sort();
    println!(
        "burst of {burst}: {:.0} req/s ({:.2} s), latency p50 {} p99 {} max {}; launcher CPU {:.2} s = {:.2} ms/request",
        burst as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(pct(&lat, 1.0)),
        cpu,
        cpu * 1000.0 / burst as f64
    );
    let rss_after_burst = rss_kib(pid);

    // 10,000 more node records (in-use, this provider) → RSS with a big cache.
    let nodes_before = store.node_ids().await.map(|v| v.len()).unwrap_or(0);
    let store3 = store.clone();
    stream::iter(0..10_000)
        .map(|i| {
            let store = store3.clone();
            async move {
                let mut n = Node::new();
                n.node_type = vec!["small".into()];
                n.provider = Some("elsewhere".into());
                n.pool = Some("main".into());
                n.state = NodeState::InUse;
                n.external_id = Some(format!("ext-{i}"));
                n.interface_ip = Some(format!("10.1.{}.{}", i / 256, i % 256));
                let _ = store.create_node(&mut n).await;
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_10k = rss_kib(pid);
    let idle_10k = idle_latency(&store, &client, 20.min(idle_n)).await;
    println!(
        "RSS: idle {:.1} MiB, after burst ({} nodes) {:.1} MiB, with {} nodes {:.1} MiB",
        rss_idle as f64 / 1024.0,
        nodes_before,
        rss_after_burst as f64 / 1024.0,
        nodes_before + 10_000,
        rss_10k as f64 / 1024.0
    );
    println!(
        "idle with 10k nodes: p50 {} p99 {}",
        ms(pct(&idle_10k, 0.5)),
        ms(pct(&idle_10k, 0.99))
    );

    // SIGINT: graceful stop.
    // SAFETY: plain kill(2) of our own child.
    unsafe {
        libc::kill(pid as i32, libc::SIGINT);
    }
    let t = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if t.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("launcher stopped in {}", ms(t.elapsed()));
    drop(sim);
}
