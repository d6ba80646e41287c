//! Scale benchmark (not a test): a large Zuul's busiest day on one machine.
//!
//! A ZooKeeper of its own (over TLS), filled with 100,000 realistic node records
//! (`nodepool_shared::testing::scale`: 90 % `in-use` with Zuul's lock on them, 10 % `hold`,
//! three host keys each)
//! over 20 providers and 40 labels, plus 5,000 requests waiting on a tenant whose
//! `tenant-resource-limits` are used up (deferred, never declined: the backlog of a busy
//! day); the OpenStack simulator in-process (zero boot delay, unlimited quota); three
//! release `nodepool-launcher` processes sharing the 20 providers.
//!
//! Measures, per launcher: time to ready after start (and to the first full cache load),
//! after a restart alone and after a restart of all at once against the warmed server,
//! RSS, CPU at rest; idle request→fulfilled latency; a burst of multi-node requests
//! over many labels (throughput, latency, CPU); RSS after the burst; the web API's
//! `/node-list` (time, size, RSS after); `nodepool list` over TLS (time, peak RSS); the
//! time the launchers take to reload their caches after their connections are aborted
//! (`ss -K`, as root: the server keeps running) and after ZooKeeper restarts.
//!
//! ```text
//! CARGO_PROFILE_RELEASE_DEBUG=0 cargo build --release -p nodepool-daemon --bins \
//!     -p nodepool-tests --example launcher_scale
//! ./target/release/examples/launcher_scale [--nodes 100000] [--waiting 5000] ...
//! ```
//! `NODEPOOL_LAUNCHER_BIN` / `NODEPOOL_CLI_BIN` override the binaries (default
//! `target/release/…`); `NODEPOOL_ZK_HEAP` the ZooKeeper heap (default here 3g),
//! `NODEPOOL_ZK_JVM_OPTS` its JVM options. For every phase it also prints what the
//! ZooKeeper server did (CPU per thread, `mntr` counters; `--jfr DIR`: a Java Flight
//! Recorder recording per phase, see `support/zk_probe.rs`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::stream::{self, StreamExt};
use nodepool_shared::model::{now_epoch, paths, NodeRequest, NodeState, RequestId, RequestState};
use nodepool_shared::testing::scale::{realistic_node, FleetShape};
use nodepool_shared::testing::{remove_on_signal, spawn_tied, TestZk};
use nodepool_shared::zk::{ZkClient, ZkStore};
use nodepool_tests::sim::{Knobs, Quota, SimConfig, Simulator};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "support/zk_probe.rs"]
mod zk_probe;
use zk_probe::ZkProbe;

#[derive(Parser, Clone)]
struct Args {
    /// Node records in ZooKeeper.
    #[arg(long, default_value_t = 100_000)]
    nodes: usize,
    /// Requests waiting (deferred by their tenant's limits).
    #[arg(long, default_value_t = 5_000)]
    waiting: usize,
    /// Providers (all served by every launcher).
    #[arg(long, default_value_t = 20)]
    providers: usize,
    /// Labels.
    #[arg(long, default_value_t = 40)]
    labels: usize,
    /// Launcher processes.
    #[arg(long, default_value_t = 3)]
    launchers: usize,
    /// Sequential requests for the idle latency.
    #[arg(long, default_value_t = 50)]
    idle: usize,
    /// Requests of the burst (each for `--per-request` nodes of random labels).
    #[arg(long, default_value_t = 300)]
    burst: usize,
    /// Nodes per burst request.
    #[arg(long, default_value_t = 3)]
    per_request: usize,
    /// Seconds the CPU at rest is measured over.
    #[arg(long, default_value_t = 30)]
    rest: u64,
    /// `nodepool list` runs.
    #[arg(long, default_value_t = 5)]
    list_runs: usize,
    /// Only the start, rest, restart and reload phases (no requests, web API or CLI):
    /// for measuring the cache load.
    #[arg(long)]
    load_only: bool,
    /// Record the ZooKeeper server with Java Flight Recorder per phase (start, rest,
    /// rolling restart, restart of all, idle requests, reload) into this directory
    /// (`<phase>.jfr`).
    #[arg(long, value_name = "DIR")]
    jfr: Option<PathBuf>,
    /// The JFR settings for `--jfr`: `profile`, `default` or a `.jfc` file.
    #[arg(long, default_value = "profile")]
    jfc: String,
}

const BACKLOG_TENANT: &str = "backlog-tenant";
/// Nodes of the backlog tenant (its `max-servers`, used up).
const BACKLOG_NODES: usize = 100;

fn bin(var: &str, name: &str) -> PathBuf {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("target/release/{name}")));
    assert!(p.is_file(), "build it first: {}", p.display());
    p
}

/// The config of every launcher (web API only on the first).
fn config_yaml(zk: &TestZk, a: &Args, web_port: Option<u16>) -> String {
    let tls = zk.tls_settings().expect("TLS");
    let (tls_host, tls_port) = tls.hosts[0].clone();
    let t = tls.tls.expect("tls files");
    let mut y = format!(
        "zookeeper-servers:\n  - host: {tls_host}\n    port: {tls_port}\n    chroot: {chroot}\nzookeeper-tls:\n  ca: {ca}\n  cert: {cert}\n  key: {key}\n",
        chroot = zk.chroot(),
        ca = t.ca.display(),
        cert = t.cert.display(),
        key = t.key.display()
    );
    if let Some(p) = web_port {
        y.push_str(&format!(
            "webapp:\n  port: {p}\n  listen_address: 127.0.0.1\n"
        ));
    }
    y.push_str(&format!(
        "tenant-resource-limits:\n  - tenant-name: {BACKLOG_TENANT}\n    max-servers: {BACKLOG_NODES}\nlabels:\n"
    ));
    for l in 0..a.labels {
        y.push_str(&format!("  - name: label-{l}\n"));
    }
    y.push_str("providers:\n");
    for p in 0..a.providers {
        y.push_str(&format!(
            "  - name: provider-{p}\n    cloud: sim\n    rate: 0\n    cloud-images:\n      - name: cirros\n        image-name: cirros-0.6.2\n    pools:\n      - name: main\n        max-servers: 1000000\n        auto-floating-ip: false\n        host-key-checking: false\n        labels:\n"
        ));
        for l in 0..a.labels {
            y.push_str(&format!(
                "          - name: label-{l}\n            cloud-image: cirros\n            flavor-name: small\n"
            ));
        }
    }
    y
}

/// Writes the node records (`in-use` ones with a lock contender, as Zuul holds their
/// locks; `hold` ones unlocked) and the backlog.
async fn fill(store: &ZkStore, a: &Args) {
    let shape = FleetShape {
        providers: a.providers,
        labels: a.labels,
    };
    let now = now_epoch();
    let t = Instant::now();
    stream::iter(0..a.nodes)
        .map(|i| {
            let store = store.clone();
            async move {
                let mut n = realistic_node(i, shape, now);
                n.state = if i % 10 == 9 {
                    NodeState::Hold
                } else {
                    NodeState::InUse
                };
                if i < BACKLOG_NODES {
                    n.tenant_name = Some(BACKLOG_TENANT.into());
                }
                let id = store.create_node(&mut n).await.expect("create node");
                if n.state == NodeState::InUse {
                    // Zuul holds the lock of every node in use; an unlocked `in-use`
                    // node is one Zuul is done with, which the launchers delete.
                    let path = format!(
                        "{}/{}__lock__0000000000",
                        paths::node_lock(&id),
                        uuid::Uuid::new_v4().simple()
                    );
                    store
                        .client()
                        .create_persistent(&path, b"")
                        .await
                        .expect("lock contender");
                }
            }
        })
        .buffer_unordered(500)
        .collect::<Vec<_>>()
        .await;
    println!(
        "filled {} nodes in {:.1} s",
        a.nodes,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    stream::iter(0..a.waiting)
        .map(move |i| {
            let store = store.clone();
            async move {
                let label = format!("label-{}", i % a.labels);
                let mut r = NodeRequest::new(vec![label], "zuul-scheduler");
                r.tenant_name = Some(BACKLOG_TENANT.into());
                store
                    .create_request(&mut r, "200", false)
                    .await
                    .expect("create request");
            }
        })
        .buffer_unordered(200)
        .collect::<Vec<_>>()
        .await;
    println!(
        "{} waiting requests in {:.1} s",
        a.waiting,
        t.elapsed().as_secs_f64()
    );
}

/// A launcher process and its log.
struct Launcher {
    child: Child,
    log: PathBuf,
}

impl Launcher {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        strip_ansi(&raw)
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn spawn_launcher(dir: &Path, i: usize, config: &Path, clouds: &Path, web: bool) -> Launcher {
    let log = dir.join(format!("launcher-{i}.log"));
    let err = std::fs::File::create(&log).expect("log");
    // In the foreground (`-f`) the launcher logs to stdout, as Nodepool does.
    let out = err.try_clone().expect("log");
    let mut cmd = Command::new(bin("NODEPOOL_LAUNCHER_BIN", "nodepool-launcher"));
    cmd.arg("-f")
        .arg("-c")
        .arg(config)
        .arg("--clouds")
        .arg(clouds);
    if !web {
        cmd.arg("--no-webapp");
    }
    cmd.env(
        "RUST_LOG",
        // `LAUNCHER_SCALE_LOG` replaces the filter (e.g. to trace one request's phases).
        std::env::var("LAUNCHER_SCALE_LOG").unwrap_or_else(|_| {
            "warn,nodepool_daemon::launcher::daemon=info,nodepool_shared::zk::cache=info"
                .to_string()
        }),
    )
    .stdout(out)
    .stderr(err);
    // Dies with the benchmark, however that ends.
    let child = spawn_tied(cmd).expect("start launcher");
    Launcher { child, log }
}

/// utime+stime of `pid` in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (get(14) + get(15)) as f64 / hz
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resets the peak resident size (`VmHWM`) of `pid` to its current one, so that the
/// peak printed after a phase is that phase's (not the start's cache load).
fn reset_peak(pid: u32) {
    // "5" in clear_refs resets the peak RSS (Linux 4.0 and later).
    if let Err(e) = std::fs::write(format!("/proc/{pid}/clear_refs"), "5") {
        println!("cannot reset the peak RSS of {pid}: {e}");
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// Waits until `pred` holds for the launcher's log (bounded); returns the time waited.
async fn wait_log(
    l: &Launcher,
    what: &str,
    limit: Duration,
    pred: impl Fn(&str) -> bool,
) -> Duration {
    let t = Instant::now();
    loop {
        if pred(&l.log_text()) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < limit,
            "launcher {}: no {what} after {limit:?}:\n{}",
            l.pid(),
            l.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `elapsed_ms` of every "tree cache loaded" line so far.
fn cache_loads(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("tree cache loaded"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("elapsed_ms="))
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

/// Submits a request for `labels`, waits until fulfilled, returns its nodes as Zuul does
/// after a job (`used`) and deletes the request. Returns the latency.
async fn one_request(store: &ZkStore, client: &ZkClient, labels: Vec<String>) -> Option<Duration> {
    let mut r = NodeRequest::new(labels, "scale-bench");
    let start = Instant::now();
    let id = store
        .create_request(&mut r, "100", false)
        .await
        .expect("submit");
    let done = wait_fulfilled(client, &id, Duration::from_secs(120)).await;
    let latency = start.elapsed();
    for node_id in done.iter().flat_map(|d| &d.nodes) {
        if let Ok(Some((mut n, _))) = store.get_node(node_id).await {
            n.set_state(NodeState::Used);
            let _ = store.store_node(&n, None).await;
        }
    }
    let _ = store.delete_request(&id).await;
    done.map(|_| latency)
}

/// The request once fulfilled; `None` if it is not within `limit`.
async fn wait_fulfilled(client: &ZkClient, id: &RequestId, limit: Duration) -> Option<NodeRequest> {
    let path = paths::request(id);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let (data, _, watcher) = client
            .get_and_watch(&path)
            .await
            .expect("read request")
            .expect("request exists");
        if let Ok(Some(r)) = NodeRequest::from_json(id, &data) {
            match r.state {
                RequestState::Fulfilled => return Some(r),
                RequestState::Failed => panic!("request {id} failed: {r:?}"),
                _ => {}
            }
        }
        tokio::time::timeout_at(deadline, watcher.changed())
            .await
            .ok()?;
    }
}

/// Sorted latencies of the fulfilled requests, and how many were not fulfilled.
fn summarize(results: Vec<Option<Duration>>) -> (Vec<Duration>, usize) {
    let missed = results.iter().filter(|r| r.is_none()).count();
    let mut v: Vec<Duration> = results.into_iter().flatten().collect();
    v.sort();
    (v, missed)
}

/// Runs the CLI and returns (wall time, max RSS in KiB).
// The child is reaped by `wait4`, which also gives its resource usage.
#[allow(clippy::zombie_processes)]
fn run_cli(config: &Path, args: &[&str]) -> (Duration, u64) {
    let t = Instant::now();
    let child = Command::new(bin("NODEPOOL_CLI_BIN", "nodepool"))
        .arg("-c")
        .arg(config)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nodepool");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid out-pointers.
    unsafe {
        libc::wait4(child.id() as i32, &mut status, 0, &mut usage);
    }
    assert_eq!(status, 0, "nodepool {args:?} failed");
    (t.elapsed(), usage.ru_maxrss as u64)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = Args::parse();
    if std::env::var_os("NODEPOOL_ZK_HEAP").is_none() {
        std::env::set_var("NODEPOOL_ZK_HEAP", "3g");
    }
    println!("load average at start: {}", load_average());
    let zk = TestZk::dedicated().await;
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
    // Ctrl-C or `timeout` (SIGINT/SIGTERM) skips the drops: the harness's signal handler
    // kills the launchers and ZooKeeper and removes this directory and ZooKeeper's.
    let _remove_on_signal = remove_on_signal(dir.path());
    let clouds = dir.path().join("clouds.yaml");
    sim.write_clouds_yaml(&clouds, "sim").expect("clouds");
    let web_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    };
    let configs: Vec<PathBuf> = (0..a.launchers)
        .map(|i| {
            let p = dir.path().join(format!("nodepool-{i}.yaml"));
            std::fs::write(&p, config_yaml(&zk, &a, (i == 0).then_some(web_port))).expect("config");
            p
        })
        .collect();
    let client = zk.client().await;
    let store = ZkStore::new(client.clone());
    fill(&store, &a).await;

    // Start: all launchers at once.
    let server = zk.server().expect("dedicated");
    let zk_pid = || server.pid().map_or(0, |p| p as u32);
    let probe = ZkProbe::new(server.plain_port(), a.jfr.clone(), a.jfc.clone());
    println!("load average before the start: {}", load_average());
    let phase = probe.begin("start", zk_pid(), cpu_secs(zk_pid()));
    let zk_cpu0 = cpu_secs(zk_pid());
    let mut launchers: Vec<Launcher> = (0..a.launchers)
        .map(|i| spawn_launcher(dir.path(), i, &configs[i], &clouds, i == 0))
        .collect();
    let starts = wait_ready(&launchers).await;
    for (i, s) in starts.iter().enumerate() {
        print_start(&format!("launcher {i}"), &launchers[i], s);
    }
    println!(
        "ZooKeeper CPU from the start to the last launcher ready: {:.2} s",
        cpu_secs(zk_pid()) - zk_cpu0
    );
    probe.end(phase, zk_pid(), cpu_secs(zk_pid()), None);

    // At rest: 5,000 deferred requests, nothing to do.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu0: Vec<f64> = launchers.iter().map(|l| cpu_secs(l.pid())).collect();
    let phase = probe.begin("rest", zk_pid(), cpu_secs(zk_pid()));
    let zk_rest0 = cpu_secs(zk_pid());
    tokio::time::sleep(Duration::from_secs(a.rest)).await;
    probe.end(phase, zk_pid(), cpu_secs(zk_pid()), None);
    for (i, l) in launchers.iter().enumerate() {
        println!(
            "launcher {i} at rest: CPU {:.1} % of a core over {} s, RSS {}",
            (cpu_secs(l.pid()) - cpu0[i]) * 100.0 / a.rest as f64,
            a.rest,
            mib(status_kib(l.pid(), "VmRSS:"))
        );
    }
    println!(
        "ZooKeeper at rest: CPU {:.1} % of a core over {} s",
        (cpu_secs(zk_pid()) - zk_rest0) * 100.0 / a.rest as f64,
        a.rest
    );

    // A rolling restart: the last launcher stops and starts again alone while the
    // others run.
    let last = launchers.len() - 1;
    // SAFETY: plain kill(2) of our own child.
    unsafe {
        libc::kill(launchers[last].pid() as i32, libc::SIGINT);
    }
    let _ = launchers[last].child.wait();
    println!(
        "load average before the rolling restart: {}",
        load_average()
    );
    let phase = probe.begin("rolling-restart", zk_pid(), cpu_secs(zk_pid()));
    let zk_cpu0 = cpu_secs(zk_pid());
    launchers[last] = spawn_launcher(dir.path(), last + 10, &configs[last], &clouds, last == 0);
    let start = wait_ready(&launchers[last..]).await;
    print_start(
        &format!("launcher {last} restarted alone"),
        &launchers[last],
        &start[0],
    );
    println!(
        "ZooKeeper CPU for that start: {:.2} s",
        cpu_secs(zk_pid()) - zk_cpu0
    );
    probe.end(phase, zk_pid(), cpu_secs(zk_pid()), None);
    tokio::time::sleep(Duration::from_secs(10)).await;
    println!(
        "launcher {last} restarted alone, 10 s after ready: RSS {}",
        mib(status_kib(launchers[last].pid(), "VmRSS:"))
    );

    // All launchers restarted at once (a deploy) against the server that has been
    // serving them: unlike the first start, its read path is compiled already.
    for l in &launchers {
        // SAFETY: plain kill(2) of our own child.
        unsafe {
            libc::kill(l.pid() as i32, libc::SIGINT);
        }
    }
    for l in &mut launchers {
        let _ = l.child.wait();
    }
    println!(
        "load average before restarting all at once: {}",
        load_average()
    );
    let phase = probe.begin("restart-all", zk_pid(), cpu_secs(zk_pid()));
    let zk_cpu0 = cpu_secs(zk_pid());
    launchers = (0..a.launchers)
        .map(|i| spawn_launcher(dir.path(), i + 20, &configs[i], &clouds, i == 0))
        .collect();
    let starts = wait_ready(&launchers).await;
    for (i, s) in starts.iter().enumerate() {
        print_start(
            &format!("launcher {i} restarted with the others"),
            &launchers[i],
            s,
        );
    }
    println!(
        "ZooKeeper CPU from the restart of all to the last launcher ready: {:.2} s",
        cpu_secs(zk_pid()) - zk_cpu0
    );
    probe.end(phase, zk_pid(), cpu_secs(zk_pid()), None);
    tokio::time::sleep(Duration::from_secs(10)).await;
    if !a.load_only {
        traffic(
            &a,
            &store,
            &client,
            &launchers,
            web_port,
            &configs,
            (zk_pid(), &probe),
        )
        .await;
    }
    reconnect(&launchers, server.tls_port(), zk_pid, &probe).await;
    reload(&launchers, server, zk_pid, &probe).await;
    for l in &mut launchers {
        // SAFETY: plain kill(2) of our own child.
        unsafe {
            libc::kill(l.pid() as i32, libc::SIGINT);
        }
    }
    for l in &mut launchers {
        let _ = l.child.wait();
        let text = l.log_text();
        assert!(!text.contains("panicked"), "a launcher panicked:\n{text}");
    }
    println!("load average at the end: {}", load_average());
}

/// When a launcher (re)started: its first cache load and its `launcher ready`, and its
/// CPU time and RSS at that point.
struct Start {
    loaded: Duration,
    ready: Duration,
    cpu: f64,
    rss_kib: u64,
}

/// Waits until every launcher logs `launcher ready` (bounded), sampling each one's CPU
/// and RSS as it does.
async fn wait_ready(launchers: &[Launcher]) -> Vec<Start> {
    let spawned = Instant::now();
    let mut loaded: Vec<Option<Duration>> = vec![None; launchers.len()];
    let mut starts: Vec<Option<Start>> = launchers.iter().map(|_| None).collect();
    while starts.iter().any(Option::is_none) {
        for (i, l) in launchers.iter().enumerate() {
            if starts[i].is_some() {
                continue;
            }
            let text = l.log_text();
            if loaded[i].is_none() && text.contains("tree cache loaded") {
                loaded[i] = Some(spawned.elapsed());
            }
            if text.contains("launcher ready") {
                starts[i] = Some(Start {
                    loaded: loaded[i].unwrap_or_default(),
                    ready: spawned.elapsed(),
                    cpu: cpu_secs(l.pid()),
                    rss_kib: status_kib(l.pid(), "VmRSS:"),
                });
            }
        }
        assert!(
            spawned.elapsed() < Duration::from_secs(600),
            "launchers not ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    starts.into_iter().flatten().collect()
}

fn print_start(name: &str, l: &Launcher, s: &Start) {
    println!(
        "{name}: ready {:.2} s after start (cache loaded at {:.2} s, the load itself {:?} ms), CPU at ready {:.2} s, RSS at ready {} (peak of the start {})",
        s.ready.as_secs_f64(),
        s.loaded.as_secs_f64(),
        cache_loads(&l.log_text()).first(),
        s.cpu,
        mib(s.rss_kib),
        mib(status_kib(l.pid(), "VmHWM:"))
    );
}

/// CPU seconds (utime + stime) of each launcher, then ZooKeeper, then this process (the
/// simulator and the requests' client).
fn idle_cpu(launchers: &[Launcher], zk_pid: u32) -> Vec<f64> {
    let mut v: Vec<f64> = launchers.iter().map(|l| cpu_secs(l.pid())).collect();
    v.push(cpu_secs(zk_pid));
    v.push(cpu_secs(std::process::id()));
    v
}

/// The CPU each process spent per idle request (robust to the machine's load, unlike
/// the latencies).
fn print_idle_cpu(before: &[f64], after: &[f64], requests: usize, took: Duration) {
    println!(
        "idle phase: {:.1} s; CPU over it: {:?} s (launchers, ZooKeeper, bench)",
        took.as_secs_f64(),
        before
            .iter()
            .zip(after)
            .map(|(b, a)| ((a - b) * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
    let per = |i: usize| (after[i] - before[i]) * 1000.0 / requests.max(1) as f64;
    let n = before.len() - 2;
    let launchers: Vec<String> = (0..n).map(|i| format!("{:.1}", per(i))).collect();
    let total: f64 = (0..n).map(per).sum();
    println!(
        "idle CPU per request: launchers [{}] ms (sum {total:.1} ms), ZooKeeper {:.1} ms, bench and simulator {:.1} ms",
        launchers.join(", "),
        per(n),
        per(n + 1)
    );
}

/// The idle requests, the burst, the web API and the CLI.
async fn traffic(
    a: &Args,
    store: &ZkStore,
    client: &ZkClient,
    launchers: &[Launcher],
    web_port: u16,
    configs: &[PathBuf],
    (zk_pid, probe): (u32, &ZkProbe),
) {
    // Idle latency: one request at a time.
    let phase = probe.begin("idle", zk_pid, cpu_secs(zk_pid));
    let idle_cpu0 = idle_cpu(launchers, zk_pid);
    let idle_started = Instant::now();
    let mut idle = Vec::new();
    for i in 0..a.idle {
        let r = one_request(store, client, vec![format!("label-{}", i % a.labels)]).await;
        let missed = r.is_none();
        idle.push(r);
        if missed {
            println!("idle request {i} not fulfilled within 120 s; no more idle requests");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle_cpu1 = idle_cpu(launchers, zk_pid);
    let idle_took = idle_started.elapsed();
    let idle_count = idle.len();
    probe.end(
        phase,
        zk_pid,
        cpu_secs(zk_pid),
        Some((idle_count, "idle request")),
    );
    let (idle, missed) = summarize(idle);
    println!(
        "idle ({} sequential requests, {missed} not fulfilled within 120 s): p50 {} p90 {} max {}",
        idle.len() + missed,
        ms(pct(&idle, 0.5)),
        ms(pct(&idle, 0.9)),
        ms(pct(&idle, 1.0))
    );
    print_idle_cpu(&idle_cpu0, &idle_cpu1, idle_count, idle_took);

    // Burst: multi-node requests over random labels, all at once.
    let mut rng = StdRng::seed_from_u64(17);
    let requests: Vec<Vec<String>> = (0..a.burst)
        .map(|_| {
            (0..a.per_request)
                .map(|_| format!("label-{}", rng.random_range(0..a.labels)))
                .collect()
        })
        .collect();
    let cpu0: Vec<f64> = launchers.iter().map(|l| cpu_secs(l.pid())).collect();
    for l in launchers.iter() {
        reset_peak(l.pid());
    }
    let t = Instant::now();
    let lat: Vec<Option<Duration>> = stream::iter(requests)
        .map(|labels| {
            let (store, client) = (store.clone(), client.clone());
            async move { one_request(&store, &client, labels).await }
        })
        .buffer_unordered(a.burst)
        .collect()
        .await;
    let took = t.elapsed();
    let (lat, missed) = summarize(lat);
    let cpu: Vec<f64> = launchers
        .iter()
        .enumerate()
        .map(|(i, l)| cpu_secs(l.pid()) - cpu0[i])
        .collect();
    println!(
        "burst of {} requests × {} nodes ({missed} not fulfilled within 120 s): {:.0} req/s ({:.0} nodes/s, {:.2} s), latency p50 {} p99 {}; launcher CPU {:?} s",
        a.burst,
        a.per_request,
        a.burst as f64 / took.as_secs_f64(),
        (a.burst * a.per_request) as f64 / took.as_secs_f64(),
        took.as_secs_f64(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        cpu.iter().map(|c| (c * 100.0).round() / 100.0).collect::<Vec<_>>()
    );
    for (i, l) in launchers.iter().enumerate() {
        println!(
            "launcher {i} after the burst: RSS {} (peak during the burst {})",
            mib(status_kib(l.pid(), "VmRSS:")),
            mib(status_kib(l.pid(), "VmHWM:"))
        );
    }

    // Web API.
    let http = reqwest::Client::new();
    for accept in ["application/json", "text/plain"] {
        reset_peak(launchers[0].pid());
        let t = Instant::now();
        let body = http
            .get(format!("http://127.0.0.1:{web_port}/node-list"))
            .header("Accept", accept)
            .send()
            .await
            .expect("GET /node-list")
            .bytes()
            .await
            .expect("body");
        println!(
            "/node-list ({accept}): {} in {}, launcher 0 RSS after {} (peak during the request {})",
            format_args!("{:.1} MB", body.len() as f64 / 1e6),
            ms(t.elapsed()),
            mib(status_kib(launchers[0].pid(), "VmRSS:")),
            mib(status_kib(launchers[0].pid(), "VmHWM:"))
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    // The CLI over TLS (the launchers' config is a TLS one).
    for args in [&["list"][..], &["list", "--detail"][..]] {
        let mut runs: Vec<(Duration, u64)> = (0..a.list_runs)
            .map(|_| run_cli(&configs[1.min(configs.len() - 1)], args))
            .collect();
        runs.sort();
        println!(
            "nodepool {} over TLS ({} runs): median {}, min {}, peak RSS {}",
            args.join(" "),
            a.list_runs,
            ms(runs[runs.len() / 2].0),
            ms(runs[0].0),
            mib(runs.iter().map(|r| r.1).max().unwrap_or(0))
        );
    }
    println!(
        "hyperfine -N --warmup 1 --runs 10 '{} -c {} list'",
        bin("NODEPOOL_CLI_BIN", "nodepool").display(),
        configs[1.min(configs.len() - 1)].display()
    );
}

/// What a reload phase compares against: each launcher's cache loads and CPU before it
/// (its peak RSS reset, so that the peak printed is the phase's).
struct ReloadWatch {
    before: Vec<usize>,
    cpu0: Vec<f64>,
}

impl ReloadWatch {
    fn start(launchers: &[Launcher]) -> Self {
        for l in launchers {
            reset_peak(l.pid());
        }
        ReloadWatch {
            before: launchers
                .iter()
                .map(|l| cache_loads(&l.log_text()).len())
                .collect(),
            cpu0: launchers.iter().map(|l| cpu_secs(l.pid())).collect(),
        }
    }

    /// Waits for each launcher's next cache load and prints it: `after` says when (from
    /// the time waited for that launcher), `since` what the peak is counted from.
    async fn report(
        &self,
        launchers: &[Launcher],
        what: &str,
        after: impl Fn(Duration) -> String,
        since: &str,
    ) {
        for (i, l) in launchers.iter().enumerate() {
            if self.before[i] == 0 {
                println!("launcher {i}: this binary does not log its cache loads");
                continue;
            }
            let waited = wait_log(l, what, Duration::from_secs(120), |text| {
                cache_loads(text).len() > self.before[i]
            })
            .await;
            let loads = cache_loads(&l.log_text());
            println!(
                "launcher {i}: cache reloaded {}; the load itself {:?} ms, CPU {:.2} s, RSS {} (anonymous {}, peak since {since} {})",
                after(waited),
                loads.last(),
                cpu_secs(l.pid()) - self.cpu0[i],
                mib(status_kib(l.pid(), "VmRSS:")),
                mib(status_kib(l.pid(), "RssAnon:")),
                mib(status_kib(l.pid(), "VmHWM:"))
            );
        }
    }

    /// Prints each launcher's RSS 10 s after the reload (once its memory has been
    /// trimmed), and its CPU from the start of the reload until then: the load and the
    /// assignment passes over every waiting request that follow it.
    async fn print_10_s_after(&self, launchers: &[Launcher]) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        for (i, l) in launchers.iter().enumerate() {
            println!(
                "launcher {i} 10 s after the reload: RSS {}, CPU since the reload began {:.2} s",
                mib(status_kib(l.pid(), "VmRSS:")),
                cpu_secs(l.pid()) - self.cpu0[i]
            );
        }
    }
}

/// Cache reload after a reconnect to a running server: every launcher's connection to
/// ZooKeeper's TLS port is aborted (`ss -K`, a reset as after a network fault; needs
/// root or CAP_NET_ADMIN) and each reconnects within its session. A new connection
/// may have lost watch events, so the cache loads the whole tree again.
async fn reconnect(
    launchers: &[Launcher],
    tls_port: u16,
    zk_pid: impl Fn() -> u32,
    probe: &ZkProbe,
) {
    let watch = ReloadWatch::start(launchers);
    println!("load average before the reconnect: {}", load_average());
    let zk_cpu0 = cpu_secs(zk_pid());
    let phase = probe.begin("reconnect", zk_pid(), zk_cpu0);
    let t = Instant::now();
    let killed = Command::new("ss")
        .args([
            "-K",
            "dst",
            "127.0.0.1",
            "dport",
            "=",
            &format!(":{tls_port}"),
        ])
        .stderr(Stdio::null())
        .output();
    match killed {
        Ok(o) => {
            let aborted = String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("tcp"))
                .count();
            println!("reconnect: {aborted} connections to ZooKeeper's TLS port aborted");
            if aborted == 0 {
                println!("reconnect: nothing aborted (not root?), phase skipped");
                probe.end(phase, zk_pid(), cpu_secs(zk_pid()), None);
                return;
            }
        }
        Err(e) => {
            println!("reconnect: cannot run ss ({e}), phase skipped");
            probe.end(phase, zk_pid(), cpu_secs(zk_pid()), None);
            return;
        }
    }
    watch
        .report(
            launchers,
            "reload after the reconnect",
            |_| {
                format!(
                    "{:.2} s after its connection was aborted",
                    t.elapsed().as_secs_f64()
                )
            },
            "the abort",
        )
        .await;
    println!(
        "ZooKeeper CPU from the abort to the last reload: {:.2} s",
        cpu_secs(zk_pid()) - zk_cpu0
    );
    probe.end(phase, zk_pid(), cpu_secs(zk_pid()), None);
    watch.print_10_s_after(launchers).await;
}

/// Cache reload after a reconnect: ZooKeeper restarts, the sessions survive.
async fn reload(
    launchers: &[Launcher],
    server: &nodepool_shared::testing::ZkServer,
    zk_pid: impl Fn() -> u32,
    probe: &ZkProbe,
) {
    let watch = ReloadWatch::start(launchers);
    println!(
        "load average before the ZooKeeper restart: {}",
        load_average()
    );
    // The restarted server records from its start (nothing can attach before).
    let opts = std::env::var("NODEPOOL_ZK_JVM_OPTS").ok();
    if let Some(jfr) = probe.start_options("reload") {
        let base = opts
            .clone()
            .unwrap_or_else(|| "-XX:+UseSerialGC -XX:TieredStopAtLevel=1".into());
        std::env::set_var("NODEPOOL_ZK_JVM_OPTS", format!("{base} {jfr}"));
    }
    let t = Instant::now();
    server.restart().expect("restart ZooKeeper");
    let restarted = t.elapsed();
    match &opts {
        Some(o) => std::env::set_var("NODEPOOL_ZK_JVM_OPTS", o),
        None => std::env::remove_var("NODEPOOL_ZK_JVM_OPTS"),
    }
    let zk_cpu0 = cpu_secs(zk_pid());
    let phase = probe.begin_started("reload", zk_cpu0);
    watch
        .report(
            launchers,
            "reload",
            |waited| {
                format!(
                    "{:.2} s after ZooKeeper was back (restart took {:.1} s)",
                    waited.as_secs_f64(),
                    restarted.as_secs_f64()
                )
            },
            "the restart",
        )
        .await;
    println!(
        "ZooKeeper CPU from its restart to the last reload: {:.2} s",
        cpu_secs(zk_pid()) - zk_cpu0
    );
    probe.end(phase, zk_pid(), cpu_secs(zk_pid()), None);
    watch.print_10_s_after(launchers).await;
}
