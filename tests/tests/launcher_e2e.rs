//! `nodepool-launcher` end to end: a real ZooKeeper (TestZk), the OpenStack simulator over
//! HTTP and the launcher in-process (`launcher::daemon::run`). The test plays Zuul's part
//! of the protocol with ZkStore + ZkLock: submit a request, wait for it
//! to be fulfilled, check the nodes are allocated and unlocked, lock them, delete the
//! request.

use std::collections::{BTreeMap, HashSet};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::support::Launcher;
use nodepool_daemon::launcher::daemon::LauncherOptions;
use nodepool_daemon::launcher::runtime::Intervals;
use nodepool_shared::model::{
    paths, ComponentKind, Node, NodeId, NodeRequest, NodeState, RequestId, RequestState,
};
use nodepool_shared::stats::Statsd;
use nodepool_shared::testing::{bounded, init_logs, wait_for, TestZk, WAIT};
use nodepool_shared::zk::{ZkLock, ZkStore};
use nodepool_tests::sim::{Knobs, Quota, SimConfig, SimHandle, Simulator};

const PROVIDER: &str = "sim-provider";

/// Pool and provider knobs for the generated config.
#[derive(Clone)]
struct Shape {
    labels: Vec<(&'static str, &'static str)>,
    max_servers: Option<i64>,
    boot_timeout: u64,
    launch_timeout: u64,
    launch_retries: u32,
    min_ready: BTreeMap<&'static str, u32>,
    extra_pool: Option<(&'static str, Vec<(&'static str, &'static str)>)>,
    /// The name of the first pool.
    pool_name: &'static str,
    /// The cloud image's `image-name` (the simulator has `cirros-0.6.2`).
    image_name: &'static str,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            labels: vec![("small-label", "small"), ("medium-label", "medium")],
            max_servers: Some(20),
            boot_timeout: 30,
            launch_timeout: 3600,
            launch_retries: 3,
            min_ready: BTreeMap::new(),
            extra_pool: None,
            pool_name: "main",
            image_name: "cirros-0.6.2",
        }
    }
}

fn labels_yaml(labels: &[(&str, &str)]) -> String {
    labels
        .iter()
        .map(|(name, flavor)| {
            format!(
                "          - name: {name}\n            cloud-image: cirros\n            flavor-name: {flavor}\n            instance-properties:\n              team: infra\n            dynamic-instance-properties:\n              zuul_tenant: \"{{request.tenant_name}}\"\n"
            )
        })
        .collect()
}

/// The launcher config; the cloud image's `connection-port` is the simulator's fake sshd
/// port, so every launch scans host keys (label `host-key-checking` defaults to true).
fn config_yaml(zk: &TestZk, shape: &Shape, ssh_port: u16) -> String {
    let (host, port) = zk
        .plain_hosts()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .expect("host:port");
    let mut all_labels: Vec<&str> = shape.labels.iter().map(|l| l.0).collect();
    if let Some((_, extra)) = &shape.extra_pool {
        all_labels.extend(extra.iter().map(|l| l.0));
    }
    // A label served by both pools is defined once.
    let mut seen = HashSet::new();
    all_labels.retain(|l| seen.insert(*l));
    let mut top = String::new();
    for l in &all_labels {
        let mr = shape.min_ready.get(l).copied().unwrap_or(0);
        top.push_str(&format!("  - name: {l}\n    min-ready: {mr}\n"));
    }
    let max = shape
        .max_servers
        .map(|m| format!("        max-servers: {m}\n"))
        .unwrap_or_default();
    let mut pools = format!(
        "      - name: {}\n{max}        auto-floating-ip: false\n        node-attributes:\n          color: blue\n        labels:\n{}",
        shape.pool_name,
        labels_yaml(&shape.labels)
    );
    if let Some((name, labels)) = &shape.extra_pool {
        pools.push_str(&format!(
            "      - name: {name}\n        max-servers: 10\n        priority: 200\n        auto-floating-ip: false\n        labels:\n{}",
            labels_yaml(labels)
        ));
    }
    format!(
        "zookeeper-servers:\n  - host: {host}\n    port: {port}\n    chroot: {chroot}\nlabels:\n{top}providers:\n  - name: {PROVIDER}\n    cloud: sim\n    rate: 0\n    boot-timeout: {bt}\n    launch-timeout: {lt}\n    launch-retries: {lr}\n    cloud-images:\n      - name: cirros\n        image-name: {image}\n        username: cirros\n        connection-port: {ssh_port}\n    pools:\n{pools}",
        chroot = zk.chroot(),
        bt = shape.boot_timeout,
        lt = shape.launch_timeout,
        lr = shape.launch_retries,
        image = shape.image_name,
    )
}

struct Env {
    zk: TestZk,
    sim: SimHandle,
    dir: tempfile::TempDir,
    config: PathBuf,
    clouds: PathBuf,
    store: ZkStore,
    statsd: Option<Statsd>,
}

impl Env {
    async fn new(shape: &Shape, knobs: Knobs) -> Env {
        init_logs();
        let zk = TestZk::shared().await;
        let sim = Simulator::start(SimConfig {
            knobs,
            ssh_port: 0,
            ..Default::default()
        })
        .await
        .expect("simulator");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("nodepool.yaml");
        let clouds = dir.path().join("clouds.yaml");
        sim.write_clouds_yaml(&clouds, "sim").expect("clouds.yaml");
        std::fs::write(&config, config_yaml(&zk, shape, sim.ssh_port())).expect("config");
        let store = ZkStore::new(zk.client().await);
        Env {
            zk,
            sim,
            dir,
            config,
            clouds,
            store,
            statsd: None,
        }
    }

    fn rewrite_config(&self, shape: &Shape) {
        self.rewrite_config_text(&config_yaml(&self.zk, shape, self.sim.ssh_port()));
    }

    fn rewrite_config_text(&self, text: &str) {
        // A new mtime is what triggers the reload; write to a temp file and rename.
        let tmp = self.dir.path().join("nodepool.yaml.new");
        std::fs::write(&tmp, text).expect("config");
        std::fs::rename(&tmp, &self.config).expect("rename config");
    }

    fn start_launcher(&self, hostname: &str) -> Launcher {
        self.start_launcher_as(Some(hostname))
    }

    /// A launcher named `hostname`, or by this machine's names when `None`.
    fn start_launcher_as(&self, hostname: Option<&str>) -> Launcher {
        let mut opts = LauncherOptions::new(self.config.clone());
        opts.webapp = false;
        opts.clouds_file = Some(self.clouds.clone());
        opts.hostname = hostname.map(str::to_string);
        opts.statsd = Some(self.statsd.clone().unwrap_or_else(Statsd::noop));
        opts.intervals = Intervals {
            config_check: Duration::from_millis(200),
            pool_tick: Duration::from_millis(200),
            stop_grace: Duration::from_millis(500),
            image_recheck: Duration::from_millis(500),
            ..Intervals::default()
        };
        Launcher::start(opts)
    }

    /// Zuul's submit: persistent sequential `100-…`, state `requested`.
    async fn submit(&self, labels: &[&str]) -> RequestId {
        let mut r = NodeRequest::new(labels.iter().map(|s| s.to_string()).collect(), "zuul-test");
        r.tenant_name = Some("tenant-one".into());
        r.requestor_data = serde_json::json!({"build_set_uuid": "abc", "job_name": "j"});
        self.store
            .create_request(&mut r, "100", false)
            .await
            .expect("submit request")
    }

    async fn wait_done(&self, id: &RequestId) -> NodeRequest {
        let store = self.store.clone();
        wait_for(&format!("request {id} done"), || {
            let store = store.clone();
            let id = id.clone();
            async move {
                let (r, _) = store.get_request(&id).await.ok()??;
                matches!(r.state, RequestState::Fulfilled | RequestState::Failed).then_some(r)
            }
        })
        .await
    }

    async fn node(&self, id: &NodeId) -> Node {
        self.store
            .get_node(id)
            .await
            .expect("read node")
            .expect("node exists")
            .0
    }

    /// The registered pool components' `PoolInfo`s.
    async fn pools(&self) -> Vec<nodepool_shared::model::PoolInfo> {
        self.store
            .components(ComponentKind::Pool)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.component.pool)
            .collect()
    }

    /// Waits until the pool with worker id `id` is registered with `paused` == `want`.
    async fn wait_pool_paused(&self, id: &str, want: bool) {
        wait_for(&format!("pool {id} paused={want}"), || async {
            self.pools()
                .await
                .iter()
                .any(|p| p.id.as_deref() == Some(id) && p.paused == want)
                .then_some(())
        })
        .await;
    }

    /// The id of the registered pool named `name` (waits for it).
    async fn pool_id(&self, name: &str) -> String {
        wait_for(&format!("pool {name} registered"), || async {
            self.pools()
                .await
                .into_iter()
                .find(|p| p.name.as_deref() == Some(name))
                .and_then(|p| p.id)
        })
        .await
    }

    /// Waits until request `id` is in `state`.
    async fn wait_state(&self, id: &RequestId, state: RequestState) -> NodeRequest {
        wait_for(&format!("request {id} {state:?}"), || async {
            let (r, _) = self.store.get_request(id).await.ok()??;
            (r.state == state).then_some(r)
        })
        .await
    }

    /// Zuul's accept: check allocation, lock every node (30 s), then delete the request.
    async fn accept(&self, req: &NodeRequest) -> Vec<ZkLock> {
        let mut locks = Vec::new();
        for id in &req.nodes {
            let n = self.node(id).await;
            assert_eq!(n.allocated_to.as_ref(), Some(&req.id));
            let mut lock = ZkLock::new(self.store.client(), &paths::node_lock(id), b"");
            assert!(lock
                .acquire(Some(Duration::from_secs(30)))
                .await
                .expect("lock node"));
            locks.push(lock);
        }
        self.store.delete_request(&req.id).await.expect("delete");
        locks
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fulfils_a_request_as_zuul_expects() {
    bounded(async {
        let env = Env::new(&Shape::default(), Knobs::default()).await;
        let l = env.start_launcher("host-a");
        // Components: one launcher, one pool with its labels.
        let store = env.store.clone();
        let pool = wait_for("pool component", || {
            let store = store.clone();
            async move {
                let c = store.components(ComponentKind::Pool).await.ok()?;
                c.into_iter().next()
            }
        })
        .await;
        let info = pool.component.pool.clone().expect("pool info");
        assert_eq!(info.provider_name.as_deref(), Some(PROVIDER));
        assert_eq!(info.name.as_deref(), Some("main"));
        assert_eq!(info.supported_labels, ["small-label", "medium-label"]);
        assert!(!info.paused);
        let pool_id = info.id.clone().expect("pool id");
        assert!(pool_id.starts_with("host-a-PoolWorker.sim-provider-main-"));
        assert_eq!(
            env.store
                .components(ComponentKind::Launcher)
                .await
                .expect("launchers")
                .len(),
            1
        );

        let id = env.submit(&["medium-label", "small-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Fulfilled, "{req:?}");
        assert_eq!(req.nodes.len(), 2);
        assert_eq!(req.requestor_data["build_set_uuid"], "abc");
        assert_eq!(req.tenant_name.as_deref(), Some("tenant-one"));
        for (id, label) in req.nodes.iter().zip(["medium-label", "small-label"]) {
            let n = env.node(id).await;
            assert_eq!(n.state, NodeState::Ready);
            assert_eq!(n.node_type, [label]);
            assert_eq!(n.provider.as_deref(), Some(PROVIDER));
            assert_eq!(n.pool.as_deref(), Some("main"));
            assert_eq!(n.launcher.as_deref(), Some(pool_id.as_str()));
            assert_eq!(n.tenant_name.as_deref(), Some("tenant-one"));
            assert_eq!(n.requestor.as_deref(), Some("zuul-test"));
            assert_eq!(n.image_id.as_deref(), Some("cirros"));
            assert_eq!(n.username.as_deref(), Some("cirros"));
            assert_eq!(n.attributes["color"], "blue");
            assert!(n.interface_ip.is_some());
            assert!(n.resources.is_some());
            // Scanned: the fake sshd's key of this very server.
            let server_id = n.external_id.clone().expect("external id");
            assert_eq!(n.host_keys, env.sim.admin().host_keys(&server_id));
            assert!(!n.host_keys.is_empty());
            assert!(
                env.store
                    .node_lock_contenders(id)
                    .await
                    .expect("lock")
                    .is_empty(),
                "node {id} must be unlocked at fulfilment"
            );
            let ext = n.external_id.clone().expect("external id");
            let server = env.sim.admin().server(&ext).expect("server in sim");
            assert_eq!(server.name, format!("np{id}"));
            let meta = &server.metadata;
            assert_eq!(
                meta.get("nodepool_node_id").map(String::as_str),
                Some(id.as_str())
            );
            assert_eq!(
                meta.get("nodepool_pool_name").map(String::as_str),
                Some("main")
            );
            assert_eq!(
                meta.get("nodepool_provider_name").map(String::as_str),
                Some(PROVIDER)
            );
            assert_eq!(
                meta.get("groups").map(String::as_str),
                Some(format!("{PROVIDER},cirros,{label}").as_str())
            );
            assert_eq!(meta.get("team").map(String::as_str), Some("infra"));
            assert_eq!(
                meta.get("zuul_tenant").map(String::as_str),
                Some("tenant-one")
            );
        }
        // The request lock is released.
        assert!(env
            .store
            .request_lock_contenders(&id)
            .await
            .expect("request lock")
            .is_empty());
        let locks = env.accept(&req).await;
        drop(locks);
        l.stop().await;
        // Graceful stop: components gone at once.
        assert!(env
            .store
            .components(ComponentKind::Pool)
            .await
            .expect("pools")
            .is_empty());
        assert!(env
            .store
            .components(ComponentKind::Launcher)
            .await
            .expect("launchers")
            .is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_ready_node_is_reused_by_a_request() {
    bounded(async {
        let shape = Shape {
            min_ready: BTreeMap::from([("small-label", 1)]),
            ..Shape::default()
        };
        let env = Env::new(&shape, Knobs::default()).await;
        let l = env.start_launcher("host-a");
        let store = env.store.clone();
        let ready = wait_for("min-ready node", || {
            let store = store.clone();
            async move {
                let nodes = store.nodes().await.ok()?;
                nodes.into_iter().map(|(n, _)| n).find(|n| {
                    n.state == NodeState::Ready
                        && n.allocated_to.is_none()
                        && n.requestor.as_deref() == Some("NodePool:min-ready")
                })
            }
        })
        .await;
        assert_eq!(ready.node_type, ["small-label"]);
        // The min-ready request is cleaned up.
        wait_for("min-ready request deleted", || {
            let store = store.clone();
            async move {
                let reqs = store.requests().await.ok()?;
                (!reqs.iter().any(|(r, _)| {
                    r.requestor.as_deref() == Some("NodePool:min-ready")
                        && r.state == RequestState::Fulfilled
                }))
                .then_some(())
            }
        })
        .await;
        let id = env.submit(&["small-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Fulfilled);
        assert_eq!(
            req.nodes,
            std::slice::from_ref(&ready.id),
            "the ready node is reused"
        );
        let n = env.node(&ready.id).await;
        assert_eq!(n.allocated_to.as_ref(), Some(&id));
        assert_eq!(n.requestor.as_deref(), Some("zuul-test"));
        let _locks = env.accept(&req).await;
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_quota_then_fulfils() {
    bounded(async {
        let knobs = Knobs {
            quota: Quota {
                instances: 1,
                ..Quota::default()
            },
            ..Knobs::default()
        };
        let env = Env::new(&Shape::default(), knobs).await;
        let l = env.start_launcher("host-a");
        let first = env.submit(&["small-label"]).await;
        let req1 = env.wait_done(&first).await;
        assert_eq!(req1.state, RequestState::Fulfilled);
        let locks = env.accept(&req1).await;
        let second = env.submit(&["small-label"]).await;
        // The second request is accepted and its handler pauses: the pool says so.
        let store = env.store.clone();
        wait_for("paused pool", || {
            let store = store.clone();
            async move {
                let pools = store.components(ComponentKind::Pool).await.ok()?;
                pools
                    .iter()
                    .any(|p| p.component.pool.as_ref().is_some_and(|i| i.paused))
                    .then_some(())
            }
        })
        .await;
        let (r, _) = env.store.get_request(&second).await.unwrap().unwrap();
        assert_eq!(r.state, RequestState::Pending);
        assert_eq!(env.sim.admin().servers().len(), 1);
        // Zuul is done with the first node: it marks it `used` and unlocks it; the
        // launcher's DeletedNodeWorker deletes it, which frees the quota.
        let mut used = env.node(&req1.nodes[0]).await;
        used.set_state(NodeState::Used);
        env.store.store_node(&used, None).await.unwrap();
        drop(locks);
        let req2 = env.wait_done(&second).await;
        assert_eq!(req2.state, RequestState::Fulfilled, "{req2:?}");
        assert_ne!(req2.nodes, req1.nodes);
        let _l2 = env.accept(&req2).await;
        assert_eq!(env.sim.admin().servers().len(), 1);
        l.stop().await;
    })
    .await;
}

/// A pool without quota takes at most one request it cannot serve (its handler pauses),
/// as Nodepool's pool worker does: the rest of a burst stays `requested` and goes to
/// another pool with room, instead of waiting behind the full pool. `main` (priority
/// 100) is preferred; `second` (priority 200) only takes requests while `main` is
/// paused, so a `main` that accepted the whole burst would keep six of them waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pool_leaves_the_burst_to_a_pool_with_room() {
    bounded(async {
        let shape = Shape {
            labels: vec![("small-label", "small")],
            max_servers: Some(2),
            extra_pool: Some(("second", vec![("small-label", "small")])),
            ..Shape::default()
        };
        let knobs = Knobs {
            boot_delay_ms: 300,
            quota: Quota::UNLIMITED,
            ..Knobs::default()
        };
        let env = Env::new(&shape, knobs).await;
        let l = env.start_launcher("host-a");
        let store = env.store.clone();
        wait_for("two pools", || {
            let store = store.clone();
            async move {
                let n = store.components(ComponentKind::Pool).await.ok()?.len();
                (n == 2).then_some(())
            }
        })
        .await;
        let mut ids = Vec::new();
        for _ in 0..8 {
            ids.push(env.submit(&["small-label"]).await);
        }
        // Seven can be served at once (2 by `main`, the rest by `second`, max-servers 10);
        // at most one may wait paused in `main`.
        let store = env.store.clone();
        let ids2 = ids.clone();
        let done = wait_for("seven fulfilled", || {
            let store = store.clone();
            let ids = ids2.clone();
            async move {
                let mut done = Vec::new();
                for id in &ids {
                    let (r, _) = store.get_request(id).await.ok()??;
                    if r.state == RequestState::Fulfilled {
                        done.push(r);
                    }
                }
                (done.len() >= 7).then_some(done)
            }
        })
        .await;
        let mut per_pool: BTreeMap<String, usize> = BTreeMap::new();
        let mut in_main = Vec::new();
        for r in &done {
            let pool = env.node(&r.nodes[0]).await.pool.unwrap_or_default();
            if pool == "main" {
                in_main.push(r.clone());
            }
            *per_pool.entry(pool).or_insert(0) += 1;
        }
        assert!(in_main.len() <= 2, "{per_pool:?}");
        // Return a node of `main` (used → deleted): a request paused there goes on.
        if done.len() < 8 {
            let main_req = in_main
                .first()
                .cloned()
                .expect("main is full, so it has nodes");
            let locks = env.accept(&main_req).await;
            for id in &main_req.nodes {
                let mut n = env.node(id).await;
                n.set_state(NodeState::Used);
                env.store.store_node(&n, None).await.unwrap();
            }
            drop(locks);
        }
        for id in &ids {
            if let Ok(Some((r, _))) = env.store.get_request(id).await {
                if r.state != RequestState::Fulfilled {
                    let r = env.wait_done(id).await;
                    assert_eq!(r.state, RequestState::Fulfilled, "{r:?}");
                }
            }
        }
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_failure_is_retried() {
    bounded(async {
        let knobs = Knobs {
            fail_next_boots: 1,
            ..Knobs::default()
        };
        let env = Env::new(&Shape::default(), knobs).await;
        let l = env.start_launcher("host-a");
        let id = env.submit(&["small-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Fulfilled, "{req:?}");
        let n = env.node(&req.nodes[0]).await;
        assert_eq!(n.state, NodeState::Ready);
        // The failed attempt's server was deleted; only the good one is left.
        let admin = env.sim.admin();
        wait_for("one server", || {
            let n = admin.servers().len();
            async move { (n == 1).then_some(()) }
        })
        .await;
        assert_eq!(admin.servers()[0].id, n.external_id.clone().unwrap());
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_timeout_fails_the_request_after_retries() {
    bounded(async {
        // Servers never leave BUILD: launch-timeout (not boot-timeout) gives up on them.
        let shape = Shape {
            launch_timeout: 1,
            boot_timeout: 600,
            launch_retries: 2,
            ..Shape::default()
        };
        let knobs = Knobs {
            hang_all_boots: true,
            ..Knobs::default()
        };
        let env = Env::new(&shape, knobs).await;
        let l = env.start_launcher("host-a");
        let id = env.submit(&["small-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Failed);
        assert_eq!(req.declined_by.len(), 1);
        assert!(env.sim.admin().counter("compute.servers.create") >= 2);
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyscan_timeout_fails_the_request_with_error_keyscan() {
    bounded(async {
        // Servers go ACTIVE but their sshd never answers: each attempt fails after
        // boot-timeout with error.keyscan, and is retried on a new server.
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let shape = Shape {
            boot_timeout: 1,
            launch_retries: 2,
            ..Shape::default()
        };
        let knobs = Knobs {
            ssh_never: true,
            ..Knobs::default()
        };
        let mut env = Env::new(&shape, knobs).await;
        env.statsd = Some(Statsd::udp("127.0.0.1", port).unwrap());
        let l = env.start_launcher("host-a");
        let id = env.submit(&["small-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Failed);
        assert_eq!(env.sim.admin().counter("compute.servers.create"), 2);
        let lines = tokio::task::spawn_blocking(move || {
            let mut lines: Vec<String> = Vec::new();
            let deadline = std::time::Instant::now() + WAIT;
            let mut buf = [0u8; 2048];
            let want = format!("nodepool.launch.provider.{PROVIDER}.error.keyscan:1|c");
            while std::time::Instant::now() < deadline
                && lines.iter().filter(|l| **l == want).count() < 2
            {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    lines.extend(text.lines().map(str::to_string));
                }
            }
            lines
        })
        .await
        .unwrap();
        let keyscan = format!("nodepool.launch.provider.{PROVIDER}.error.keyscan:1|c");
        assert_eq!(
            lines.iter().filter(|l| **l == keyscan).count(),
            2,
            "one error.keyscan per attempt: {lines:?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains("servercreatetimeout")),
            "{lines:?}"
        );
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_are_stored_before_the_host_key_scan() {
    bounded(async {
        // The sshd answers 1.5 s after ACTIVE: meanwhile the node is `building` with its
        // addresses and no host keys (as Nodepool stores the instance facts first).
        let knobs = Knobs {
            ssh_delay_ms: 1500,
            ..Knobs::default()
        };
        let env = Env::new(&Shape::default(), knobs).await;
        let l = env.start_launcher("host-a");
        let id = env.submit(&["small-label"]).await;
        let store = env.store.clone();
        let building = wait_for("a building node with addresses", || {
            let store = store.clone();
            async move {
                for nid in store.node_ids().await.ok()? {
                    let (n, _) = store.get_node(&nid).await.ok()??;
                    if n.state == NodeState::Building && n.interface_ip.is_some() {
                        return Some(n);
                    }
                }
                None
            }
        })
        .await;
        assert!(building.host_keys.is_empty());
        assert!(building
            .interface_ip
            .as_deref()
            .is_some_and(|a| a.starts_with("127.30.")));
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Fulfilled);
        let n = env.node(&req.nodes[0]).await;
        assert_eq!(n.id, building.id);
        assert_eq!(n.interface_ip, building.interface_ip);
        let server = n.external_id.clone().expect("external id");
        assert_eq!(n.host_keys, env.sim.admin().host_keys(&server));
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_label_is_declined_by_all_pools() {
    bounded(async {
        let shape = Shape {
            extra_pool: Some(("second", vec![("large-label", "large")])),
            ..Shape::default()
        };
        let env = Env::new(&shape, Knobs::default()).await;
        let l = env.start_launcher("host-a");
        let store = env.store.clone();
        wait_for("two pools", || {
            let store = store.clone();
            async move {
                let n = store.components(ComponentKind::Pool).await.ok()?.len();
                (n == 2).then_some(())
            }
        })
        .await;
        let id = env.submit(&["no-such-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Failed);
        assert_eq!(req.declined_by.len(), 2, "{:?}", req.declined_by);
        assert!(req.nodes.is_empty());
        assert!(env.sim.admin().servers().is_empty());
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_launchers_share_the_work() {
    bounded(async {
        let shape = Shape {
            max_servers: Some(40),
            ..Shape::default()
        };
        let knobs = Knobs {
            quota: Quota::UNLIMITED,
            ..Knobs::default()
        };
        let env = Env::new(&shape, knobs).await;
        let a = env.start_launcher("host-a");
        let b = env.start_launcher("host-b");
        let store = env.store.clone();
        wait_for("two pools", || {
            let store = store.clone();
            async move {
                let n = store.components(ComponentKind::Pool).await.ok()?.len();
                (n == 2).then_some(())
            }
        })
        .await;
        let mut ids = Vec::new();
        for i in 0..20 {
            let label = if i % 2 == 0 {
                "small-label"
            } else {
                "medium-label"
            };
            ids.push(env.submit(&[label]).await);
        }
        let mut nodes = HashSet::new();
        let mut launchers = HashSet::new();
        for id in &ids {
            let req = env.wait_done(id).await;
            assert_eq!(req.state, RequestState::Fulfilled, "{req:?}");
            for n in &req.nodes {
                assert!(nodes.insert(n.clone()), "node {n} given twice");
                launchers.insert(env.node(n).await.launcher.unwrap());
            }
        }
        assert_eq!(nodes.len(), 20);
        assert_eq!(env.sim.admin().servers().len(), 20, "no double launches");
        assert_eq!(env.store.nodes().await.unwrap().len(), 20);
        tracing::info!("launchers used: {launchers:?}");
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_adds_a_pool() {
    bounded(async {
        let shape = Shape::default();
        let env = Env::new(&shape, Knobs::default()).await;
        let l = env.start_launcher("host-a");
        let store = env.store.clone();
        wait_for("one pool", || {
            let store = store.clone();
            async move {
                let n = store.components(ComponentKind::Pool).await.ok()?.len();
                (n == 1).then_some(())
            }
        })
        .await;
        // Give the mtime a chance to differ on coarse file systems.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let bigger = Shape {
            extra_pool: Some(("second", vec![("large-label", "large")])),
            ..shape.clone()
        };
        env.rewrite_config(&bigger);
        wait_for("pool serving large-label", || {
            let store = store.clone();
            async move {
                let pools = store.components(ComponentKind::Pool).await.ok()?;
                pools
                    .iter()
                    .any(|p| {
                        p.component
                            .pool
                            .as_ref()
                            .is_some_and(|i| i.supported_labels.iter().any(|l| l == "large-label"))
                    })
                    .then_some(())
            }
        })
        .await;
        let id = env.submit(&["large-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Fulfilled, "{req:?}");
        let n = env.node(&req.nodes[0]).await;
        assert_eq!(n.pool.as_deref(), Some("second"));
        // A bad config is ignored: the launcher keeps serving.
        std::fs::write(&env.config, "providers: [ {").unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let id = env.submit(&["small-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Fulfilled);
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_metrics_go_to_statsd() {
    bounded(async {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let mut env = Env::new(&Shape::default(), Knobs::default()).await;
        env.statsd = Some(Statsd::udp("127.0.0.1", port).unwrap());
        let l = env.start_launcher("host-a");
        let id = env.submit(&["small-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Fulfilled);
        let az = env.node(&req.nodes[0]).await.az.unwrap_or_default();
        let want = [
            "nodepool.launch.ready:1|c".to_string(),
            "nodepool.launch.ready:".to_string() + "|ms",
            format!("nodepool.launch.provider.{PROVIDER}.ready:1|c"),
            format!("nodepool.launch.provider.{PROVIDER}.{az}.ready:1|c"),
            "nodepool.launch.requestor.zuul-test.ready:1|c".to_string(),
            format!("nodepool.provider.{PROVIDER}.max_servers:20|g"),
        ];
        let sock = Arc::new(sock);
        let lines = tokio::task::spawn_blocking(move || {
            let mut lines: Vec<String> = Vec::new();
            let deadline = std::time::Instant::now() + WAIT;
            let mut buf = [0u8; 2048];
            while std::time::Instant::now() < deadline {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    lines.extend(text.lines().map(str::to_string));
                }
                let have = |w: &str| {
                    if let Some((pre, suf)) = w.split_once(":|") {
                        lines.iter().any(|l| {
                            l.starts_with(&format!("{pre}:")) && l.ends_with(&format!("|{suf}"))
                        })
                    } else {
                        lines.iter().any(|l| l == w)
                    }
                };
                let done = [
                    "nodepool.launch.ready:1|c".to_string(),
                    format!("nodepool.provider.{PROVIDER}.max_servers:20|g"),
                ]
                .iter()
                .all(|w| have(w));
                if done && have("nodepool.launch.requestor.zuul-test.ready:1|c") {
                    break;
                }
            }
            lines
        })
        .await
        .unwrap();
        for w in &want {
            let ok = if let Some(pre) = w.strip_suffix("|ms") {
                lines
                    .iter()
                    .any(|l| l.starts_with(pre) && l.ends_with("|ms"))
            } else {
                lines.iter().any(|l| l == w)
            };
            assert!(ok, "missing {w} in {lines:?}");
        }
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_servers_zero_disables_the_pool() {
    bounded(async {
        let shape = Shape {
            max_servers: Some(0),
            ..Shape::default()
        };
        let env = Env::new(&shape, Knobs::default()).await;
        let l = env.start_launcher("host-a");
        let id = env.submit(&["small-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Failed);
        assert_eq!(req.declined_by.len(), 1);
        assert!(env.sim.admin().servers().is_empty());
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_request_unpauses_the_pool() {
    bounded(async {
        let shape = Shape {
            max_servers: Some(1),
            ..Shape::default()
        };
        let env = Env::new(&shape, Knobs::default()).await;
        let l = env.start_launcher("host-a");
        let first = env.submit(&["small-label"]).await;
        let req1 = env.wait_done(&first).await;
        assert_eq!(req1.state, RequestState::Fulfilled);
        let _locks = env.accept(&req1).await;
        let second = env.submit(&["small-label"]).await;
        let store = env.store.clone();
        let paused = |want: bool| {
            let store = store.clone();
            async move {
                let pools = store.components(ComponentKind::Pool).await.ok()?;
                pools
                    .iter()
                    .any(|p| p.component.pool.as_ref().is_some_and(|i| i.paused == want))
                    .then_some(())
            }
        };
        wait_for("paused pool", || paused(true)).await;
        // Zuul cancels: deletes the pending request.
        env.store.delete_request(&second).await.unwrap();
        wait_for("unpaused pool", || paused(false)).await;
        wait_for("request lock released", || {
            let store = store.clone();
            let id = second.clone();
            async move {
                store
                    .request_lock_contenders(&id)
                    .await
                    .ok()?
                    .is_empty()
                    .then_some(())
            }
        })
        .await;
        assert_eq!(env.store.nodes().await.unwrap().len(), 1);
        l.stop().await;
    })
    .await;
}

/// Fills the one pool (`max-servers` 2) with a two-node request that Zuul keeps, then
/// submits a second two-node request, which its handler accepts and pauses on (quota):
/// returns (pool id, the second request's id).
async fn full_pool_with_a_paused_request(env: &Env) -> (String, RequestId, Vec<ZkLock>) {
    let pool_id = env.pool_id("main").await;
    let first = env.submit(&["small-label", "small-label"]).await;
    let req1 = env.wait_done(&first).await;
    assert_eq!(req1.state, RequestState::Fulfilled, "{req1:?}");
    let locks = env.accept(&req1).await;
    let second = env.submit(&["small-label", "small-label"]).await;
    env.wait_state(&second, RequestState::Pending).await;
    env.wait_pool_paused(&pool_id, true).await;
    (pool_id, second, locks)
}

/// Nodepool's `test_paused_gets_declined`: a request paused at quota is declined once a
/// reload lowers `max-servers` below what it needs: the paused handler re-checks the
/// request against the current config, declines it (only pool → `failed`) and unpauses
/// the pool. The pool worker is not restarted by the reload (same id, as in Nodepool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_gets_declined() {
    bounded(async {
        let shape = Shape {
            labels: vec![("small-label", "small")],
            max_servers: Some(2),
            ..Shape::default()
        };
        let env = Env::new(&shape, Knobs::default()).await;
        let l = env.start_launcher("host-a");
        let (pool_id, second, _locks) = full_pool_with_a_paused_request(&env).await;
        env.rewrite_config(&Shape {
            max_servers: Some(1),
            ..shape
        });
        let req2 = env.wait_done(&second).await;
        assert_eq!(req2.state, RequestState::Failed, "{req2:?}");
        assert_eq!(req2.declined_by, std::slice::from_ref(&pool_id));
        env.wait_pool_paused(&pool_id, false).await;
        assert_eq!(
            env.pool_id("main").await,
            pool_id,
            "same worker after the reload"
        );
        assert_eq!(
            env.sim.admin().servers().len(),
            2,
            "nothing launched for it"
        );
        assert!(env
            .store
            .request_lock_contenders(&second)
            .await
            .expect("lock")
            .is_empty());
        l.stop().await;
    })
    .await;
}

/// A paused request whose label a reload removes from its pool is declined by that
/// pool and fulfilled by another pool that serves the label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_request_goes_to_another_pool_when_its_label_is_removed() {
    bounded(async {
        let shape = Shape {
            labels: vec![("small-label", "small"), ("medium-label", "medium")],
            max_servers: Some(2),
            extra_pool: Some(("second", vec![("small-label", "small")])),
            ..Shape::default()
        };
        let env = Env::new(&shape, Knobs::default()).await;
        let l = env.start_launcher("host-a");
        env.pool_id("second").await;
        let (main_id, second_req, _locks) = full_pool_with_a_paused_request(&env).await;
        env.rewrite_config(&Shape {
            labels: vec![("medium-label", "medium")],
            ..shape
        });
        let req2 = env.wait_done(&second_req).await;
        assert_eq!(req2.state, RequestState::Fulfilled, "{req2:?}");
        assert_eq!(req2.declined_by, std::slice::from_ref(&main_id));
        for id in &req2.nodes {
            assert_eq!(env.node(id).await.pool.as_deref(), Some("second"));
        }
        env.wait_pool_paused(&main_id, false).await;
        let main = env.pools().await;
        let main = main
            .iter()
            .find(|p| p.id.as_deref() == Some(main_id.as_str()));
        assert_eq!(
            main.map(|p| p.supported_labels.clone()),
            Some(vec!["medium-label".to_string()]),
            "the component follows the reload"
        );
        l.stop().await;
    })
    .await;
}

/// A paused request whose pool a reload removes is declined by that pool's (stopping)
/// worker and fulfilled by the provider's other pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_request_goes_to_another_pool_when_its_pool_is_removed() {
    bounded(async {
        let shape = Shape {
            labels: vec![("small-label", "small")],
            max_servers: Some(2),
            extra_pool: Some(("second", vec![("small-label", "small")])),
            ..Shape::default()
        };
        let env = Env::new(&shape, Knobs::default()).await;
        let l = env.start_launcher("host-a");
        let second_id = env.pool_id("second").await;
        let (main_id, second_req, _locks) = full_pool_with_a_paused_request(&env).await;
        // Only the pool `second` is left (with room for two more nodes).
        env.rewrite_config(&Shape {
            pool_name: "second",
            max_servers: Some(10),
            extra_pool: None,
            ..shape
        });
        let req2 = env.wait_done(&second_req).await;
        assert_eq!(req2.state, RequestState::Fulfilled, "{req2:?}");
        assert_eq!(req2.declined_by, std::slice::from_ref(&main_id));
        for id in &req2.nodes {
            let n = env.node(id).await;
            assert_eq!(n.pool.as_deref(), Some("second"));
            assert_eq!(n.launcher.as_deref(), Some(second_id.as_str()));
        }
        wait_for("main's component gone", || async {
            let pools = env.pools().await;
            (pools.len() == 1 && pools[0].id.as_deref() == Some(second_id.as_str())).then_some(())
        })
        .await;
        l.stop().await;
    })
    .await;
}

/// A paused request whose provider a reload removes is declined by the stopping pool
/// (`failed`: no pool is left) instead of staying `pending` forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_request_fails_when_its_provider_is_removed() {
    bounded(async {
        let shape = Shape {
            labels: vec![("small-label", "small")],
            max_servers: Some(2),
            ..Shape::default()
        };
        let env = Env::new(&shape, Knobs::default()).await;
        let l = env.start_launcher("host-a");
        let (pool_id, second, _locks) = full_pool_with_a_paused_request(&env).await;
        let text = config_yaml(&env.zk, &shape, env.sim.ssh_port());
        let cut = text.find("providers:").expect("providers");
        env.rewrite_config_text(&format!("{}providers: []\n", &text[..cut]));
        let req2 = env.wait_done(&second).await;
        assert_eq!(req2.state, RequestState::Failed, "{req2:?}");
        assert_eq!(req2.declined_by, [pool_id]);
        wait_for("pool unregistered", || async {
            env.pools().await.is_empty().then_some(())
        })
        .await;
        l.stop().await;
    })
    .await;
}

/// Nodepool's `labelImageIsAvailable`: min-ready submits nothing for a cloud-image
/// label whose image the cloud does not have (no request every pass, declined and
/// failed), and starts as soon as the image exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_ready_waits_for_the_cloud_image() {
    bounded(async {
        let shape = Shape {
            labels: vec![("small-label", "small")],
            min_ready: BTreeMap::from([("small-label", 1)]),
            image_name: "later-image",
            ..Shape::default()
        };
        let env = Env::new(&shape, Knobs::default()).await;
        let l = env.start_launcher("host-a");
        env.pool_id("main").await;
        // Many min-ready passes (every 200 ms) and image re-checks (every 500 ms).
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Request ids are sequential: a first request numbered 0 proves that min-ready
        // created none meanwhile.
        let probe = env.submit(&["small-label"]).await;
        assert!(
            probe.as_str().ends_with("-0000000000"),
            "min-ready submitted requests for a label without image: probe is {probe}"
        );
        let probe = env.wait_done(&probe).await;
        assert_eq!(
            probe.state,
            RequestState::Failed,
            "images are not available"
        );
        env.store.delete_request(&probe.id).await.expect("delete");
        // The image appears in the cloud (as an operator's `openstack image create`).
        let clouds = nodepool_shared::cloud::CloudsFile::load_from(&env.clouds).expect("clouds");
        let driver = nodepool_shared::cloud::OpenStackDriver::new(
            clouds.cloud("sim").expect("sim cloud"),
            nodepool_shared::cloud::DriverOptions::new("test"),
        )
        .expect("driver");
        let image = nodepool_shared::cloud::CloudDriver::create_image(
            &driver,
            &nodepool_shared::cloud::ImageCreate {
                name: "later-image".into(),
                disk_format: "qcow2".into(),
                container_format: None,
                properties: BTreeMap::new(),
            },
        )
        .await
        .expect("create image");
        let data = env.dir.path().join("image.qcow2");
        std::fs::write(&data, b"not really qcow2").expect("image data");
        nodepool_shared::cloud::CloudDriver::upload_image_data(&driver, &image.id, &data)
            .await
            .expect("upload image");
        let store = env.store.clone();
        let ready = wait_for("min-ready node", || {
            let store = store.clone();
            async move {
                let nodes = store.nodes().await.ok()?;
                nodes.into_iter().map(|(n, _)| n).find(|n| {
                    n.state == NodeState::Ready
                        && n.allocated_to.is_none()
                        && n.requestor.as_deref() == Some("NodePool:min-ready")
                })
            }
        })
        .await;
        assert_eq!(ready.node_type, ["small-label"]);
        l.stop().await;
    })
    .await;
}

/// What Python's `socket.getfqdn()` says on this machine (`None` without python3,
/// which only CI insists on).
fn python_getfqdn() -> Option<String> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import socket; print(socket.getfqdn())"])
        .output();
    match out {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        other => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "python3 is needed under CI: {other:?}"
            );
            None
        }
    }
}

/// Pool worker ids carry the fully qualified name Python's `socket.getfqdn()` gives,
/// component records the short `gethostname()`, as in Nodepool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_worker_id_uses_the_fqdn() {
    bounded(async {
        let env = Env::new(&Shape::default(), Knobs::default()).await;
        let l = env.start_launcher_as(None);
        let id = env.pool_id("main").await;
        let fqdn = python_getfqdn().unwrap_or_else(|| {
            eprintln!("python3 missing: comparing with our own getfqdn");
            nodepool_daemon::host::fqdn()
        });
        assert!(
            id.starts_with(&format!("{fqdn}-PoolWorker.{PROVIDER}-main-")),
            "{id} (fqdn {fqdn})"
        );
        let pools = env
            .store
            .components(ComponentKind::Pool)
            .await
            .expect("pools");
        assert_eq!(
            pools[0].component.hostname,
            nodepool_daemon::host::hostname()
        );
        l.stop().await;
    })
    .await;
}

/// A pool worker that does not stop within its grace period (here: its pass waits on a
/// slow cloud) is aborted when a reload removes its pool: its component is gone at
/// once, it never takes the request, and the replacement pool serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_pool_worker_is_aborted_after_its_grace_period() {
    bounded(async {
        let shape = Shape {
            labels: vec![("small-label", "small")],
            ..Shape::default()
        };
        let env = Env::new(&shape, Knobs::default()).await;
        let l = env.start_launcher("host-a");
        let old_id = env.pool_id("main").await;
        // Every cloud call now takes 15 s: the pass that looks at the next request
        // (image, flavor and quota lookups) is stuck for far longer than the 0.5 s grace
        // period.
        env.sim.admin().update_knobs(|k| k.api_latency_ms = 15_000);
        let id = env.submit(&["small-label"]).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        env.rewrite_config(&Shape {
            pool_name: "renamed",
            ..shape
        });
        let t = std::time::Instant::now();
        wait_for("old pool component gone", || async {
            let pools = env.pools().await;
            (!pools
                .iter()
                .any(|p| p.id.as_deref() == Some(old_id.as_str())))
            .then_some(())
        })
        .await;
        // Not a speed check: left running, the worker would stay for the whole 15 s call.
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(8),
            "the stuck worker was left running for {took:?}"
        );
        env.sim.admin().update_knobs(|k| k.api_latency_ms = 0);
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Fulfilled, "{req:?}");
        assert!(!req.declined_by.contains(&old_id), "{req:?}");
        let node = env.node(&req.nodes[0]).await;
        assert_eq!(node.pool.as_deref(), Some("renamed"));
        assert_ne!(node.launcher.as_deref(), Some(old_id.as_str()));
        l.stop().await;
    })
    .await;
}
