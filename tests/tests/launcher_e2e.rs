//! `nodepool-launcher` end to end: a real ZooKeeper (TestZk), the OpenStack simulator over
//! HTTP and the launcher in-process (`launcher::daemon::run`). The test plays Zuul's part
//! of the protocol with ZkStore + ZkLock: submit a request, wait for it
//! to be fulfilled, check the nodes are allocated and unlocked, lock them, delete the
//! request. The static driver's tests (Nodepool's `test_driver_static.py`, ported) use
//! real sshd hosts on loopback addresses.

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
use nodepool_shared::testing::{
    bounded, init_logs, sshd_available, wait_for, wait_for_within, TestSshd, TestZk, WAIT,
};
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
        self.start_launcher_tuned(hostname, |_| {})
    }

    /// [`Env::start_launcher_as`] with the test intervals changed by `tune`.
    fn start_launcher_tuned(
        &self,
        hostname: Option<&str>,
        tune: impl FnOnce(&mut Intervals),
    ) -> Launcher {
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
        tune(&mut opts.intervals);
        Launcher::start(opts)
    }

    /// Replaces clouds.yaml (new file renamed into place: a new modification time).
    fn rewrite_clouds(&self, text: &str) {
        let tmp = self.dir.path().join("clouds.yaml.new");
        std::fs::write(&tmp, text).expect("clouds.yaml");
        std::fs::rename(&tmp, &self.clouds).expect("rename clouds.yaml");
    }

    /// `n` nodes in state `used` of our provider, each with a server in the simulator
    /// (as Zuul leaves them after a job): work for the DeletedNodeWorker.
    async fn used_nodes_with_servers(&self, n: usize) -> Vec<(NodeId, String)> {
        let mut out = Vec::new();
        for _ in 0..n {
            let mut node = Node::new();
            node.set_state(NodeState::Used);
            node.provider = Some(PROVIDER.into());
            node.pool = Some("main".into());
            node.node_type = vec!["small-label".into()];
            let id = self
                .store
                .create_node(&mut node)
                .await
                .expect("create node");
            let server = self
                .sim
                .admin()
                .inject_leaked_server(PROVIDER, id.as_str(), "main");
            node.external_id = Some(server.clone());
            self.store
                .store_node(&node, None)
                .await
                .expect("store node");
            out.push((id, server));
        }
        out
    }

    /// Waits until none of `nodes` has a record or a server any more.
    async fn wait_deleted(&self, nodes: &[(NodeId, String)], limit: Duration) {
        let admin = self.sim.admin();
        wait_for_within("the nodes and their servers deleted", limit, || async {
            for (id, server) in nodes {
                if admin.server(server).is_some() || self.store.get_node(id).await.ok()?.is_some() {
                    return None;
                }
            }
            Some(())
        })
        .await;
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

// ---------------------------------------------------------------------------------------
// The static driver: Python Nodepool's tests/unit/test_driver_static.py ported, each test
// named after Nodepool's. Hosts are real sshd servers on loopback addresses (127.0.0.x,
// used as the host names; nothing is resolved through DNS); the launcher runs
// in-process and the test plays Zuul.
// ---------------------------------------------------------------------------------------

const STATIC_PROVIDER: &str = "static-provider";

/// One `nodes[]` entry for a host. `extra` is more YAML keys, each line indented by 12.
fn static_host(name: &str, port: u16, labels: &str, host_key: &str, extra: &str) -> String {
    let key = if host_key.is_empty() {
        String::new()
    } else {
        format!("            host-key: {host_key}\n")
    };
    format!(
        "          - name: {name}\n            labels: {labels}\n{key}            timeout: 2\n            connection-port: {port}\n            username: zuul\n{extra}"
    )
}

/// A host entry for a running sshd.
fn sshd_host(sshd: &TestSshd, labels: &str, extra: &str) -> String {
    static_host(
        &sshd.ip().to_string(),
        sshd.port(),
        labels,
        sshd.host_key(),
        extra,
    )
}

/// Static tests: ZooKeeper, sshd hosts, a config file, Zuul's side.
struct StaticEnv {
    zk: TestZk,
    dir: tempfile::TempDir,
    config: PathBuf,
    store: ZkStore,
    hosts: Vec<TestSshd>,
}

impl StaticEnv {
    /// `hosts` sshd servers on 127.0.0.10, 127.0.0.11, …; `None` (the test is skipped)
    /// when sshd is not installed outside CI.
    async fn new(hosts: usize) -> Option<StaticEnv> {
        init_logs();
        if !sshd_available() {
            return None;
        }
        let zk = TestZk::shared().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("nodepool.yaml");
        let hosts = (0..hosts)
            .map(|i| {
                let ip = std::net::IpAddr::from([127, 0, 0, 10 + i as u8]);
                TestSshd::start(ip).expect("start sshd")
            })
            .collect();
        let store = ZkStore::new(zk.client().await);
        Some(StaticEnv {
            zk,
            dir,
            config,
            store,
            hosts,
        })
    }

    /// The config: `labels`, then one static provider whose pools are `pools` (YAML of
    /// `pools[]` entries, indented by 6); `top` is more top-level YAML.
    fn config_text(&self, labels: &[&str], pools: &str, top: &str) -> String {
        let (host, port) = self
            .zk
            .plain_hosts()
            .rsplit_once(':')
            .map(|(h, p)| (h.to_string(), p.to_string()))
            .expect("host:port");
        let labels: String = labels.iter().map(|l| format!("  - name: {l}\n")).collect();
        format!(
            "zookeeper-servers:\n  - host: {host}\n    port: {port}\n    chroot: {chroot}\n{top}labels:\n{labels}providers:\n  - name: {STATIC_PROVIDER}\n    driver: static\n    pools:\n{pools}",
            chroot = self.zk.chroot(),
        )
    }

    /// Writes the config (a new mtime makes a running launcher reload it).
    fn write(&self, labels: &[&str], pools: &str) {
        self.write_text(&self.config_text(labels, pools, ""));
    }

    fn write_text(&self, text: &str) {
        let tmp = self.dir.path().join("nodepool.yaml.new");
        std::fs::write(&tmp, text).expect("config");
        std::fs::rename(&tmp, &self.config).expect("rename config");
    }

    fn start_launcher(&self) -> Launcher {
        self.start_launcher_with(|_| {})
    }

    fn start_launcher_with(&self, tweak: impl FnOnce(&mut LauncherOptions)) -> Launcher {
        let mut opts = LauncherOptions::new(self.config.clone());
        opts.webapp = false;
        opts.hostname = Some("static-host".into());
        opts.statsd = Some(Statsd::noop());
        opts.intervals = Intervals {
            config_check: Duration::from_millis(200),
            pool_tick: Duration::from_millis(200),
            stop_grace: Duration::from_millis(500),
            delete: Duration::from_millis(500),
            // Also the retry delay of a host whose check failed.
            cleanup: Duration::from_secs(1),
            ..Intervals::default()
        };
        tweak(&mut opts);
        Launcher::start(opts)
    }

    async fn nodes(&self) -> Vec<Node> {
        let mut v: Vec<Node> = self
            .store
            .nodes()
            .await
            .expect("nodes")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Nodepool's `waitForNodes`: until exactly `count` nodes with `label` are `ready`
    /// and unallocated; sorted by id.
    async fn wait_nodes(&self, label: &str, count: usize) -> Vec<Node> {
        wait_for(&format!("{count} ready {label} nodes"), || async {
            let ready: Vec<Node> = self
                .nodes()
                .await
                .into_iter()
                .filter(|n| {
                    n.state == NodeState::Ready
                        && n.allocated_to.is_none()
                        && n.node_type.iter().any(|t| t == label)
                })
                .collect();
            (ready.len() == count).then_some(ready)
        })
        .await
    }

    /// Zuul's submit with a precedence (`100`, `200`, `300`).
    async fn submit_with(&self, labels: &[&str], precedence: &str) -> RequestId {
        let mut r = NodeRequest::new(labels.iter().map(|s| s.to_string()).collect(), "zuul-test");
        r.tenant_name = Some("tenant-1".into());
        self.store
            .create_request(&mut r, precedence, false)
            .await
            .expect("submit request")
    }

    async fn submit(&self, labels: &[&str]) -> RequestId {
        self.submit_with(labels, "100").await
    }

    async fn request(&self, id: &RequestId) -> NodeRequest {
        self.store
            .get_request(id)
            .await
            .expect("read request")
            .expect("request exists")
            .0
    }

    async fn wait_state(&self, id: &RequestId, state: RequestState) -> NodeRequest {
        wait_for(&format!("request {id} {state:?}"), || async {
            let (r, _) = self.store.get_request(id).await.ok()??;
            (r.state == state).then_some(r)
        })
        .await
    }

    /// The request was never written since Zuul created it: deferred, not accepted and
    /// put back (nor declined).
    async fn assert_untouched(&self, id: &RequestId) {
        let (r, stat) = self
            .store
            .get_request(id)
            .await
            .expect("read request")
            .expect("request exists");
        assert_eq!(r.state, RequestState::Requested);
        assert!(r.declined_by.is_empty(), "{r:?}");
        assert_eq!(stat.version, 0, "request {id} was written: {r:?}");
    }

    async fn node(&self, id: &NodeId) -> Node {
        self.store
            .get_node(id)
            .await
            .expect("read node")
            .expect("node exists")
            .0
    }

    /// Sets a node `used` without locking it (as Nodepool's tests do).
    async fn mark_used(&self, id: &NodeId) {
        let mut n = self.node(id).await;
        n.set_state(NodeState::Used);
        self.store.store_node(&n, None).await.expect("store used");
    }

    /// Zuul's use of a node: lock it, set it `in-use`; the lock is returned.
    async fn lock_in_use(&self, id: &NodeId) -> ZkLock {
        let mut lock = ZkLock::new(self.store.client(), &paths::node_lock(id), b"");
        assert!(lock
            .acquire(Some(Duration::from_secs(30)))
            .await
            .expect("lock node"));
        let mut n = self.node(id).await;
        n.set_state(NodeState::InUse);
        self.store.store_node(&n, None).await.expect("store in-use");
        lock
    }

    /// Zuul's return of a node it holds: `used`, then unlock.
    async fn give_back(&self, id: &NodeId, mut lock: ZkLock) {
        let mut n = self.node(id).await;
        n.set_state(NodeState::Used);
        self.store.store_node(&n, None).await.expect("store used");
        lock.release().await.expect("unlock");
    }

    /// Nodepool's `waitForNodeDeletion`.
    async fn wait_deleted(&self, id: &NodeId) {
        wait_for(&format!("node {id} deleted"), || async {
            self.store
                .get_node(id)
                .await
                .ok()
                .and_then(|n| n.is_none().then_some(()))
        })
        .await
    }
}

/// `static-basic.yaml`: one host with `fake-label`, pool `main` with node-attributes.
fn basic_pools(env: &StaticEnv, extra: &str) -> String {
    format!(
        "      - name: main\n        node-attributes:\n          key1: value1\n          key2: value2\n        nodes:\n{}",
        sshd_host(&env.hosts[0], "fake-label", extra)
    )
}

/// `static-2-nodes.yaml`: two hosts with `fake-label`.
fn two_node_pools(env: &StaticEnv) -> String {
    format!(
        "      - name: main\n        nodes:\n{}{}",
        sshd_host(&env.hosts[0], "fake-label", ""),
        sshd_host(&env.hosts[1], "fake-label", "")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_basic() {
    bounded(async {
        let Some(env) = StaticEnv::new(1).await else {
            return;
        };
        env.write(&["fake-label"], &basic_pools(&env, ""));
        let l = env.start_launcher();
        let nodes = env.wait_nodes("fake-label", 1).await;
        let n = &nodes[0];
        let host = &env.hosts[0];
        let name = host.ip().to_string();
        assert_eq!(n.state, NodeState::Ready);
        assert_eq!(n.provider.as_deref(), Some(STATIC_PROVIDER));
        assert_eq!(n.pool.as_deref(), Some("main"));
        assert_eq!(n.launcher.as_deref(), Some("static driver"));
        assert_eq!(n.node_type, ["fake-label"]);
        assert_eq!(n.hostname.as_deref(), Some(name.as_str()));
        assert_eq!(n.interface_ip.as_deref(), Some(name.as_str()));
        assert_eq!(n.external_id.as_deref(), Some(name.as_str()));
        assert_eq!(n.public_ipv4.as_deref(), Some(name.as_str()));
        assert_eq!(n.username.as_deref(), Some("zuul"));
        assert_eq!(n.connection_port, host.port());
        assert_eq!(n.connection_type.as_deref(), Some("ssh"));
        assert_eq!(n.host_keys, [host.host_key()], "scanned from the real sshd");
        assert_eq!(
            n.attributes,
            serde_json::json!({"key1": "value1", "key2": "value2"})
        );
        assert_eq!(n.python_path.as_deref(), Some("auto"));
        assert_eq!(n.shell_type, None);
        assert_eq!(n.slot, Some(0));
        assert_eq!(n.resources, None);
        assert_eq!(n.created_time, Some(n.state_time));
        // The pool component serves the host's labels, as a cloud pool does.
        let pools: Vec<_> = env
            .store
            .components(ComponentKind::Pool)
            .await
            .expect("pools")
            .into_iter()
            .filter_map(|c| c.component.pool)
            .collect();
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0].provider_name.as_deref(), Some(STATIC_PROVIDER));
        assert_eq!(pools[0].supported_labels, ["fake-label"]);
        assert!(pools[0]
            .id
            .as_deref()
            .is_some_and(|id| id.starts_with("static-host-PoolWorker.static-provider-main-")));
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_reuse() {
    bounded(async {
        let Some(env) = StaticEnv::new(1).await else {
            return;
        };
        env.write(&["fake-label"], &basic_pools(&env, ""));
        // Nodepool's test keeps its cleanup worker from running: the slot is registered
        // again because the node was deleted, not by a periodic pass.
        let l = env.start_launcher_with(|o| o.intervals.cleanup = Duration::from_secs(600));
        let nodes = env.wait_nodes("fake-label", 1).await;
        assert_eq!(nodes[0].slot, Some(0));
        env.mark_used(&nodes[0].id).await;
        env.wait_deleted(&nodes[0].id).await;
        let again = env.wait_nodes("fake-label", 1).await;
        assert_eq!(again[0].slot, Some(0));
        assert_ne!(again[0].id, nodes[0].id, "a new node for the same slot");
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_python_path() {
    bounded(async {
        let Some(env) = StaticEnv::new(1).await else {
            return;
        };
        let extra = "            python-path: /usr/bin/python3\n";
        env.write(&["fake-label"], &basic_pools(&env, extra));
        let l = env.start_launcher();
        let nodes = env.wait_nodes("fake-label", 1).await;
        assert_eq!(nodes[0].python_path.as_deref(), Some("/usr/bin/python3"));
        assert_eq!(nodes[0].slot, Some(0));
        env.mark_used(&nodes[0].id).await;
        env.wait_deleted(&nodes[0].id).await;
        let again = env.wait_nodes("fake-label", 1).await;
        assert_eq!(again[0].python_path.as_deref(), Some("/usr/bin/python3"));
        assert_eq!(again[0].slot, Some(0));
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_shell_type() {
    bounded(async {
        let Some(env) = StaticEnv::new(1).await else {
            return;
        };
        let extra = "            shell-type: cmd\n";
        env.write(&["fake-label"], &basic_pools(&env, extra));
        let l = env.start_launcher();
        let nodes = env.wait_nodes("fake-label", 1).await;
        assert_eq!(nodes[0].shell_type.as_deref(), Some("cmd"));
        env.mark_used(&nodes[0].id).await;
        env.wait_deleted(&nodes[0].id).await;
        let again = env.wait_nodes("fake-label", 1).await;
        assert_eq!(again[0].shell_type.as_deref(), Some("cmd"));
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_multiname() {
    bounded(async {
        let Some(env) = StaticEnv::new(1).await else {
            return;
        };
        // One host name twice, with two usernames: two hosts as far as Nodepool goes.
        let h = &env.hosts[0];
        let pools = format!(
            "      - name: main\n        nodes:\n{}{}",
            sshd_host(h, "fake-label", ""),
            sshd_host(h, "other-label", "").replace("username: zuul", "username: zuul-2")
        );
        let top = "tenant-resource-limits:\n  - tenant-name: tenant-1\n    max-cores: 1024\n";
        env.write_text(&env.config_text(&["fake-label", "other-label"], &pools, top));
        let l = env.start_launcher();
        let a = env.wait_nodes("fake-label", 1).await;
        assert_eq!(a[0].username.as_deref(), Some("zuul"));
        assert_eq!(a[0].slot, Some(0));
        let b = env.wait_nodes("other-label", 1).await;
        assert_eq!(b[0].username.as_deref(), Some("zuul-2"));
        assert_eq!(b[0].slot, Some(0));
        let id = env.submit(&["fake-label"]).await;
        let req = env.wait_state(&id, RequestState::Fulfilled).await;
        let lock = env.lock_in_use(&req.nodes[0]).await;
        env.give_back(&req.nodes[0], lock).await;
        env.wait_deleted(&req.nodes[0]).await;
        env.wait_nodes("fake-label", 1).await;
        let labels: HashSet<String> = env
            .nodes()
            .await
            .into_iter()
            .map(|n| n.node_type[0].clone())
            .collect();
        assert_eq!(
            labels,
            HashSet::from(["fake-label".to_string(), "other-label".to_string()])
        );
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_unresolvable() {
    bounded(async {
        let Some(env) = StaticEnv::new(1).await else {
            return;
        };
        // A name that cannot resolve — one that is not even a valid host name, so that
        // no DNS query leaves the machine — does not keep the other host out.
        let pools = format!(
            "      - name: main\n        nodes:\n{}{}",
            static_host("unresolvable..unresolvable", 22, "fake-label", "", ""),
            sshd_host(&env.hosts[0], "fake-label", "")
        );
        env.write(&["fake-label"], &pools);
        let l = env.start_launcher();
        let nodes = env.wait_nodes("fake-label", 1).await;
        assert_eq!(
            nodes[0].hostname.as_deref(),
            Some(env.hosts[0].ip().to_string().as_str())
        );
        assert_eq!(nodes[0].launcher.as_deref(), Some("static driver"));
        assert_eq!(nodes[0].slot, Some(0));
        assert_eq!(env.nodes().await.len(), 1);
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_node_increase() {
    bounded(async {
        let Some(env) = StaticEnv::new(2).await else {
            return;
        };
        env.write(&["fake-label"], &basic_pools(&env, ""));
        let l = env.start_launcher();
        let nodes = env.wait_nodes("fake-label", 1).await;
        assert_eq!(nodes[0].slot, Some(0));
        env.write(&["fake-label"], &two_node_pools(&env));
        let nodes = env.wait_nodes("fake-label", 2).await;
        assert_eq!(nodes[0].slot, Some(0));
        assert_eq!(nodes[1].slot, Some(0));
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_node_decrease() {
    bounded(async {
        let Some(env) = StaticEnv::new(2).await else {
            return;
        };
        env.write(&["fake-label"], &two_node_pools(&env));
        let l = env.start_launcher();
        let nodes = env.wait_nodes("fake-label", 2).await;
        assert_eq!((nodes[0].slot, nodes[1].slot), (Some(0), Some(0)));
        env.write(&["fake-label"], &basic_pools(&env, ""));
        let nodes = env.wait_nodes("fake-label", 1).await;
        assert_eq!(
            nodes[0].hostname.as_deref(),
            Some(env.hosts[0].ip().to_string().as_str())
        );
        assert_eq!(nodes[0].slot, Some(0));
        wait_for("the removed host's node deleted", || async {
            (env.nodes().await.len() == 1).then_some(())
        })
        .await;
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_parallel_increase() {
    bounded(async {
        let Some(env) = StaticEnv::new(1).await else {
            return;
        };
        env.write(&["fake-label"], &basic_pools(&env, ""));
        let l = env.start_launcher();
        env.wait_nodes("fake-label", 1).await;
        let extra = "            max-parallel-jobs: 2\n";
        env.write(&["fake-label"], &basic_pools(&env, extra));
        let nodes = env.wait_nodes("fake-label", 2).await;
        assert_eq!((nodes[0].slot, nodes[1].slot), (Some(0), Some(1)));
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_parallel_decrease() {
    bounded(async {
        let Some(env) = StaticEnv::new(1).await else {
            return;
        };
        let extra = "            max-parallel-jobs: 2\n";
        env.write(&["fake-label"], &basic_pools(&env, extra));
        let l = env.start_launcher();
        let nodes = env.wait_nodes("fake-label", 2).await;
        assert_eq!((nodes[0].slot, nodes[1].slot), (Some(0), Some(1)));
        env.write(&["fake-label"], &basic_pools(&env, ""));
        let nodes = env.wait_nodes("fake-label", 1).await;
        assert_eq!(nodes[0].slot, Some(0));
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_node_update() {
    bounded(async {
        let Some(env) = StaticEnv::new(1).await else {
            return;
        };
        env.write(&["fake-label", "fake-label2"], &basic_pools(&env, ""));
        let l = env.start_launcher();
        env.wait_nodes("fake-label", 1).await;
        // `static-update.yaml`: two labels, user `admin`, a winrm connection (its port
        // must answer; no host keys are kept).
        let h = &env.hosts[0];
        let pools = format!(
            "      - name: main\n        nodes:\n          - name: {}\n            labels:\n              - fake-label\n              - fake-label2\n            timeout: 2\n            connection-type: winrm\n            connection-port: {}\n            username: admin\n",
            h.ip(),
            h.port()
        );
        env.write(&["fake-label", "fake-label2"], &pools);
        let nodes = env.wait_nodes("fake-label2", 1).await;
        let n = &nodes[0];
        assert!(n.node_type.contains(&"fake-label".to_string()));
        assert!(n.node_type.contains(&"fake-label2".to_string()));
        assert_eq!(n.username.as_deref(), Some("admin"));
        assert_eq!(n.connection_port, h.port());
        assert_eq!(n.connection_type.as_deref(), Some("winrm"));
        assert!(n.host_keys.is_empty());
        assert_eq!(n.slot, Some(0));
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_node_update_startup() {
    bounded(async {
        let Some(env) = StaticEnv::new(1).await else {
            return;
        };
        env.write(&["fake-label", "fake-label2"], &basic_pools(&env, ""));
        let l = env.start_launcher();
        let first = env.wait_nodes("fake-label", 1).await;
        l.stop().await;
        // `static-multilabel.yaml`, read by a launcher started afresh.
        let h = &env.hosts[0];
        let pools = format!(
            "      - name: main\n        nodes:\n{}",
            sshd_host(h, "[fake-label, fake-label2]", "")
        );
        env.write(&["fake-label", "fake-label2"], &pools);
        let l = env.start_launcher();
        let nodes = env.wait_nodes("fake-label2", 1).await;
        assert_eq!(nodes[0].id, first[0].id, "updated, not created again");
        assert_eq!(nodes[0].node_type, ["fake-label", "fake-label2"]);
        assert_eq!(nodes[0].slot, Some(0));
        assert_eq!(
            nodes[0].attributes,
            serde_json::Value::Null,
            "the pool's now"
        );
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_multilabel() {
    bounded(async {
        let Some(env) = StaticEnv::new(1).await else {
            return;
        };
        let pools = format!(
            "      - name: main\n        nodes:\n{}",
            sshd_host(&env.hosts[0], "[fake-label, fake-label2]", "")
        );
        env.write(&["fake-label", "fake-label2"], &pools);
        let l = env.start_launcher();
        let nodes = env.wait_nodes("fake-label", 1).await;
        assert!(nodes[0].node_type.contains(&"fake-label".to_string()));
        assert!(nodes[0].node_type.contains(&"fake-label2".to_string()));
        assert_eq!(nodes[0].slot, Some(0));
        l.stop().await;
    })
    .await;
}

/// `static.yaml`: `fake-label` (one slot), `fake-concurrent-label` (two slots) and a
/// winrm host with `fake-windows-label`.
fn handler_pools(env: &StaticEnv) -> String {
    format!(
        "      - name: main\n        nodes:\n{}{}{}",
        sshd_host(
            &env.hosts[0],
            "fake-label",
            "            max-parallel-jobs: 1\n"
        ),
        sshd_host(
            &env.hosts[1],
            "fake-concurrent-label",
            "            max-parallel-jobs: 2\n"
        ),
        static_host(
            &env.hosts[2].ip().to_string(),
            env.hosts[2].port(),
            "fake-windows-label",
            "",
            "            max-parallel-jobs: 1\n            connection-type: winrm\n"
        )
    )
}

const HANDLER_LABELS: [&str; 4] = [
    "fake-label",
    "fake-label2",
    "fake-concurrent-label",
    "fake-windows-label",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_handler() {
    bounded(async {
        let Some(env) = StaticEnv::new(3).await else {
            return;
        };
        env.write(&HANDLER_LABELS, &handler_pools(&env));
        let l = env.start_launcher();
        let nodes = env.wait_nodes("fake-label", 1).await;
        assert_eq!(nodes[0].slot, Some(0));
        let concurrent = env.wait_nodes("fake-concurrent-label", 2).await;
        assert_eq!((concurrent[0].slot, concurrent[1].slot), (Some(0), Some(1)));
        let windows = env.wait_nodes("fake-windows-label", 1).await;
        assert!(windows[0].host_keys.is_empty());
        env.mark_used(&nodes[0].id).await;
        env.wait_deleted(&nodes[0].id).await;
        let again = env.wait_nodes("fake-label", 1).await;
        assert_eq!(again[0].slot, Some(0));
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_multinode_handler() {
    bounded(async {
        let Some(env) = StaticEnv::new(3).await else {
            return;
        };
        env.write(&HANDLER_LABELS, &handler_pools(&env));
        let l = env.start_launcher();
        env.wait_nodes("fake-concurrent-label", 2).await;
        let id = env.submit(&["fake-label", "fake-concurrent-label"]).await;
        let req = env.wait_state(&id, RequestState::Fulfilled).await;
        assert_eq!(req.nodes.len(), 2);
        assert_eq!(env.node(&req.nodes[0]).await.node_type, ["fake-label"]);
        assert_eq!(
            env.node(&req.nodes[1]).await.node_type,
            ["fake-concurrent-label"]
        );
        l.stop().await;
    })
    .await;
}

/// `static-2-nodes-multilabel.yaml`.
fn multilabel_pools(env: &StaticEnv) -> String {
    format!(
        "      - name: main\n        nodes:\n{}{}",
        sshd_host(&env.hosts[0], "[fake-label, fake-label2, label-host-1]", ""),
        sshd_host(&env.hosts[1], "[fake-label2, label-host-2]", "")
    )
}

const MULTILABEL_LABELS: [&str; 4] = ["fake-label", "fake-label2", "label-host-1", "label-host-2"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_waiting_handler() {
    bounded(async {
        let Some(env) = StaticEnv::new(2).await else {
            return;
        };
        env.write(&MULTILABEL_LABELS, &multilabel_pools(&env));
        let l = env.start_launcher();
        env.wait_nodes("fake-label2", 2).await;
        let id = env.submit(&["fake-label"]).await;
        let req = env.wait_state(&id, RequestState::Fulfilled).await;
        let used = req.nodes[0].clone();
        let lock = env.lock_in_use(&used).await;
        let waiting = env.submit(&["fake-label"]).await;
        let other = env.submit(&["fake-label2"]).await;
        let other = env.wait_state(&other, RequestState::Fulfilled).await;
        assert_ne!(other.nodes[0], used);
        // fake-label has no node available: the request waits untouched (the pass
        // that served the later request passed it over without writing it).
        env.assert_untouched(&waiting).await;
        env.give_back(&used, lock).await;
        env.wait_deleted(&used).await;
        env.wait_state(&waiting, RequestState::Fulfilled).await;
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_quota() {
    bounded(async {
        let Some(env) = StaticEnv::new(2).await else {
            return;
        };
        env.write(&MULTILABEL_LABELS, &multilabel_pools(&env));
        // Submitted before the launcher starts, so that one pass sees all three (as
        // Nodepool's once-a-second pass does): host-1 and host-2 go to the first two,
        // fake-label2 (which both hosts have) is then not available, and the third
        // waits untouched.
        let r1 = env.submit(&["label-host-1"]).await;
        let r2 = env.submit(&["label-host-2"]).await;
        let waiting = env.submit(&["fake-label2"]).await;
        let l = env.start_launcher();
        let req1 = env.wait_state(&r1, RequestState::Fulfilled).await;
        let used = req1.nodes[0].clone();
        let lock = env.lock_in_use(&used).await;
        env.wait_state(&r2, RequestState::Fulfilled).await;
        env.assert_untouched(&waiting).await;
        env.give_back(&used, lock).await;
        env.wait_deleted(&used).await;
        env.wait_state(&waiting, RequestState::Fulfilled).await;
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_ignore_assigned_ready_nodes() {
    bounded(async {
        let Some(env) = StaticEnv::new(1).await else {
            return;
        };
        env.write(&["fake-label"], &basic_pools(&env, ""));
        let l = env.start_launcher();
        env.wait_nodes("fake-label", 1).await;
        let id = env.submit(&["fake-label"]).await;
        let req = env.wait_state(&id, RequestState::Fulfilled).await;
        // Zuul has not taken the node yet (the request still exists): another request
        // must not get it, and no sync or cleanup pass may touch it.
        let waiting = env.submit(&["fake-label"]).await;
        // Several cleanup passes (1 s each) and pool passes go by.
        tokio::time::sleep(Duration::from_secs(3)).await;
        env.assert_untouched(&waiting).await;
        let n = env.node(&req.nodes[0]).await;
        assert_eq!(n.state, NodeState::Ready);
        assert_eq!(n.allocated_to.as_ref(), Some(&id));
        assert_eq!(n.slot, Some(0));
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_waiting_handler_order() {
    bounded(async {
        let Some(env) = StaticEnv::new(1).await else {
            return;
        };
        env.write(&["fake-label"], &basic_pools(&env, ""));
        let l = env.start_launcher();
        env.wait_nodes("fake-label", 1).await;
        let id = env.submit(&["fake-label"]).await;
        let req = env.wait_state(&id, RequestState::Fulfilled).await;
        let node = req.nodes[0].clone();
        assert_eq!(env.node(&node).await.slot, Some(0));
        let lock = env.lock_in_use(&node).await;
        let w1 = env.submit_with(&["fake-label"], "300").await;
        let w2 = env.submit_with(&["fake-label"], "200").await;
        let w3 = env.submit_with(&["fake-label"], "200").await;
        env.give_back(&node, lock).await;
        env.wait_deleted(&node).await;
        // The one node goes to the highest precedence, then the oldest.
        let r2 = env.wait_state(&w2, RequestState::Fulfilled).await;
        env.assert_untouched(&w1).await;
        env.assert_untouched(&w3).await;
        let n2 = r2.nodes[0].clone();
        assert_eq!(env.node(&n2).await.slot, Some(0));
        let lock = env.lock_in_use(&n2).await;
        env.give_back(&n2, lock).await;
        let r3 = env.wait_state(&w3, RequestState::Fulfilled).await;
        env.assert_untouched(&w1).await;
        let n3 = r3.nodes[0].clone();
        assert_eq!(env.node(&n3).await.slot, Some(0));
        let lock = env.lock_in_use(&n3).await;
        env.give_back(&n3, lock).await;
        env.wait_state(&w1, RequestState::Fulfilled).await;
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_request_handled() {
    bounded(async {
        let Some(env) = StaticEnv::new(1).await else {
            return;
        };
        env.write(&["fake-label"], &basic_pools(&env, ""));
        let l = env.start_launcher();
        let nodes = env.wait_nodes("fake-label", 1).await;
        assert_eq!(nodes[0].slot, Some(0));
        let id = env.submit(&["fake-label"]).await;
        let req = env.wait_state(&id, RequestState::Fulfilled).await;
        assert_eq!(req.nodes, [nodes[0].id.clone()]);
        // As Zuul expects: allocated, unlocked, tenant and requestor copied.
        let n = env.node(&nodes[0].id).await;
        assert_eq!(n.allocated_to.as_ref(), Some(&id));
        assert_eq!(n.tenant_name.as_deref(), Some("tenant-1"));
        assert_eq!(n.requestor.as_deref(), Some("zuul-test"));
        assert!(env
            .store
            .node_lock_contenders(&n.id)
            .await
            .expect("lock")
            .is_empty());
        assert!(env
            .store
            .request_lock_contenders(&id)
            .await
            .expect("request lock")
            .is_empty());
        env.store.delete_request(&id).await.expect("delete request");
        env.mark_used(&nodes[0].id).await;
        // Used, deleted, then registered again.
        env.wait_deleted(&nodes[0].id).await;
        let again = env.wait_nodes("fake-label", 1).await;
        assert_eq!(again[0].hostname, nodes[0].hostname);
        assert_eq!(again[0].slot, Some(0));
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_check() {
    bounded(async {
        let Some(mut env) = StaticEnv::new(1).await else {
            return;
        };
        env.write(&["fake-label"], &basic_pools(&env, ""));
        let l = env.start_launcher();
        let nodes = env.wait_nodes("fake-label", 1).await;
        // The host goes down: the request finds it dead and removes its node.
        env.hosts[0].stop();
        let id = env.submit(&["fake-label"]).await;
        env.wait_deleted(&nodes[0].id).await;
        env.wait_state(&id, RequestState::Requested).await;
        // Back up: registered again (after the retry delay) and handed out.
        env.hosts[0].start_again().expect("sshd back");
        let req = env.wait_state(&id, RequestState::Fulfilled).await;
        assert_eq!(req.nodes.len(), 1);
        assert_ne!(req.nodes[0], nodes[0].id);
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_two_node() {
    bounded(async {
        let Some(mut env) = StaticEnv::new(2).await else {
            return;
        };
        // `static-two-node.yaml`: the second host is never checked.
        let pools = format!(
            "      - name: main\n        nodes:\n{}{}",
            sshd_host(&env.hosts[0], "fake-label", ""),
            sshd_host(
                &env.hosts[1],
                "fake-label2",
                "            host-key-checking: false\n"
            )
        );
        env.write(&["fake-label", "fake-label2"], &pools);
        let l = env.start_launcher();
        let nodes1 = env.wait_nodes("fake-label", 1).await;
        let nodes2 = env.wait_nodes("fake-label2", 1).await;
        env.hosts[0].stop();
        env.hosts[1].stop();
        let r1 = env.submit(&["fake-label"]).await;
        env.wait_deleted(&nodes1[0].id).await;
        env.wait_state(&r1, RequestState::Requested).await;
        let r2 = env.submit(&["fake-label2"]).await;
        let req2 = env.wait_state(&r2, RequestState::Fulfilled).await;
        assert_eq!(env.request(&r1).await.state, RequestState::Requested);
        // Not checked, so handed out although its sshd is down. (Python Nodepool also
        // recycles this node while the first request waits; we leave it alone.)
        assert_eq!(req2.nodes, [nodes2[0].id.clone()]);
        env.hosts[0].start_again().expect("sshd back");
        let req1 = env.wait_state(&r1, RequestState::Fulfilled).await;
        assert_ne!(req1.nodes[0], nodes1[0].id);
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_checking_toggle() {
    bounded(async {
        let Some(env) = StaticEnv::new(0).await else {
            return;
        };
        // Nothing listens there: a host that were contacted could not be registered.
        let port = std::net::TcpListener::bind("127.0.0.20:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pools = format!(
            "      - name: main\n        nodes:\n{}",
            static_host(
                "127.0.0.20",
                port,
                "fake-label",
                "ssh-rsa FAKEKEY",
                "            host-key-checking: false\n"
            )
        );
        env.write(&["fake-label"], &pools);
        let l = env.start_launcher();
        let nodes = env.wait_nodes("fake-label", 1).await;
        assert_eq!(
            nodes[0].host_keys,
            ["ssh-rsa FAKEKEY"],
            "the configured keys"
        );
        // Handed out without a liveness check too.
        let id = env.submit(&["fake-label"]).await;
        env.wait_state(&id, RequestState::Fulfilled).await;
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_static_node() {
    bounded(async {
        let Some(env) = StaticEnv::new(2).await else {
            return;
        };
        env.write(&["fake-label"], &two_node_pools(&env));
        let l = env.start_launcher();
        let nodes = env.wait_nodes("fake-label", 2).await;
        env.store.delete_node(&nodes[0]).await.expect("delete node");
        let again = env.wait_nodes("fake-label", 2).await;
        assert_eq!((again[0].slot, again[1].slot), (Some(0), Some(0)));
        assert!(!again.iter().any(|n| n.id == nodes[0].id));
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_host_keeps_its_busy_node_until_it_comes_back() {
    bounded(async {
        let Some(env) = StaticEnv::new(2).await else {
            return;
        };
        env.write(&["fake-label"], &two_node_pools(&env));
        let l = env.start_launcher();
        let nodes = env.wait_nodes("fake-label", 2).await;
        let id = env.submit(&["fake-label"]).await;
        let req = env.wait_state(&id, RequestState::Fulfilled).await;
        let busy = req.nodes[0].clone();
        let lock = env.lock_in_use(&busy).await;
        env.store.delete_request(&id).await.expect("delete request");
        let free = nodes
            .iter()
            .find(|n| n.id != busy)
            .expect("free node")
            .id
            .clone();
        // Both hosts leave the config: the free node goes at once, the busy one stays.
        env.write(&["fake-label"], "      - name: main\n        nodes: []\n");
        env.wait_deleted(&free).await;
        assert_eq!(env.node(&busy).await.state, NodeState::InUse);
        // Returned: deleted, and not registered again.
        env.give_back(&busy, lock).await;
        env.wait_deleted(&busy).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(env.nodes().await.is_empty(), "{:?}", env.nodes().await);
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_or_mismatched_host_is_retried_and_not_registered() {
    bounded(async {
        let Some(mut env) = StaticEnv::new(2).await else {
            return;
        };
        // Host 0 is down at start; host 1 presents another key than configured.
        env.hosts[0].stop();
        let wrong = env.hosts[0].host_key().to_string();
        let pools = format!(
            "      - name: main\n        nodes:\n{}{}",
            sshd_host(&env.hosts[0], "fake-label", ""),
            static_host(
                &env.hosts[1].ip().to_string(),
                env.hosts[1].port(),
                "fake-label2",
                &wrong,
                ""
            )
        );
        env.write(&["fake-label", "fake-label2"], &pools);
        let l = env.start_launcher();
        // Retried (every second here): registered once the host is up.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(env.nodes().await.is_empty());
        env.hosts[0].start_again().expect("sshd back");
        let nodes = env.wait_nodes("fake-label", 1).await;
        assert_eq!(nodes[0].host_keys, [env.hosts[0].host_key()]);
        // The mismatched host never is (its sshd answers, with the wrong key).
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!env
            .nodes()
            .await
            .iter()
            .any(|n| n.node_type.contains(&"fake-label2".to_string())));
        l.stop().await;
    })
    .await;
}

/// The cloud test config with a static provider added: `static_labels` are more
/// top-level labels, `host` the static provider's one host entry.
fn cloud_and_static_config(env: &Env, static_labels: &[&str], host: &str) -> String {
    let labels: String = static_labels
        .iter()
        .map(|l| format!("  - name: {l}\n"))
        .collect();
    let cloud = config_yaml(&env.zk, &Shape::default(), env.sim.ssh_port()).replacen(
        "labels:\n",
        &format!("labels:\n{labels}"),
        1,
    );
    format!(
        "{cloud}  - name: {STATIC_PROVIDER}\n    driver: static\n    pools:\n      - name: main\n        nodes:\n{host}"
    )
}

/// Submits a request for `label` preferring `provider` (as Zuul does for the nodes of
/// one build).
async fn submit_preferring(env: &Env, label: &str, provider: Option<&str>) -> RequestId {
    let mut r = NodeRequest::new(vec![label.to_string()], "zuul-test");
    r.provider = provider.map(str::to_string);
    env.store
        .create_request(&mut r, "100", false)
        .await
        .expect("submit request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_multiprovider_handler() {
    bounded(async {
        init_logs();
        if !sshd_available() {
            return;
        }
        let sshd = TestSshd::start([127, 0, 0, 30].into()).expect("sshd");
        let env = Env::new(&Shape::default(), Knobs::default()).await;
        let host = sshd_host(&sshd, "fake-static-label", "");
        env.rewrite_config_text(&cloud_and_static_config(
            &env,
            &["fake-static-label"],
            &host,
        ));
        let l = env.start_launcher("host-a");
        // Both pools take part in the request: submitted while only the cloud pool is
        // registered, it would be declined by every pool there is, and fail.
        wait_for("the cloud and the static pool registered", || async {
            let pools = env.pools().await;
            let has = |p: &str| pools.iter().any(|x| x.provider_name.as_deref() == Some(p));
            (has(PROVIDER) && has(STATIC_PROVIDER)).then_some(())
        })
        .await;
        let id = env.submit(&["fake-static-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Fulfilled);
        let n = env.node(&req.nodes[0]).await;
        assert_eq!(n.provider.as_deref(), Some(STATIC_PROVIDER));
        assert_eq!(n.launcher.as_deref(), Some("static driver"));
        let id = env.submit(&["small-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Fulfilled);
        assert_eq!(
            env.node(&req.nodes[0]).await.provider.as_deref(),
            Some(PROVIDER)
        );
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_of_static_and_cloud_providers_is_served_by_both() {
    bounded(async {
        init_logs();
        if !sshd_available() {
            return;
        }
        let sshd = TestSshd::start([127, 0, 0, 31].into()).expect("sshd");
        let env = Env::new(&Shape::default(), Knobs::default()).await;
        // `small-label` is also the static host's label.
        let host = sshd_host(&sshd, "small-label", "");
        env.rewrite_config_text(&cloud_and_static_config(&env, &[], &host));
        let l = env.start_launcher("host-a");
        let store = env.store.clone();
        wait_for("static node registered", || {
            let store = store.clone();
            async move {
                let nodes = store.nodes().await.ok()?;
                nodes
                    .iter()
                    .any(|(n, _)| n.provider.as_deref() == Some(STATIC_PROVIDER))
                    .then_some(())
            }
        })
        .await;
        // Each provider serves the request preferring it.
        let on_static = submit_preferring(&env, "small-label", Some(STATIC_PROVIDER)).await;
        let on_static = env.wait_done(&on_static).await;
        assert_eq!(on_static.state, RequestState::Fulfilled);
        let static_node = on_static.nodes[0].clone();
        assert_eq!(
            env.node(&static_node).await.provider.as_deref(),
            Some(STATIC_PROVIDER)
        );
        let _static_lock = env.accept(&on_static).await;
        let on_cloud = submit_preferring(&env, "small-label", Some(PROVIDER)).await;
        let on_cloud = env.wait_done(&on_cloud).await;
        assert_eq!(on_cloud.state, RequestState::Fulfilled);
        assert_eq!(
            env.node(&on_cloud.nodes[0]).await.provider.as_deref(),
            Some(PROVIDER)
        );
        // The static host is busy: a request without preference goes to the cloud.
        let any = submit_preferring(&env, "small-label", None).await;
        let any = env.wait_done(&any).await;
        assert_eq!(any.state, RequestState::Fulfilled);
        assert_eq!(
            env.node(&any.nodes[0]).await.provider.as_deref(),
            Some(PROVIDER)
        );
        l.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_nodes_in_stats_and_the_web_api() {
    bounded(async {
        let Some(env) = StaticEnv::new(1).await else {
            return;
        };
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let top = "webapp:\n  port: 0\n  listen_address: 127.0.0.1\n";
        env.write_text(&env.config_text(&["fake-label"], &basic_pools(&env, ""), top));
        let bound = Arc::new(std::sync::Mutex::new(None));
        let b = bound.clone();
        let l = env.start_launcher_with(move |o| {
            o.webapp = true;
            o.web_bound = Some(b);
            o.statsd = Some(Statsd::udp("127.0.0.1", port).unwrap());
        });
        let nodes = env.wait_nodes("fake-label", 1).await;
        let want = [
            format!("nodepool.provider.{STATIC_PROVIDER}.nodes.ready:1|g"),
            "nodepool.label.fake-label.nodes.ready:1|g".to_string(),
            format!("nodepool.provider.{STATIC_PROVIDER}.max_servers:inf|g"),
        ];
        let w = want.clone();
        let lines = tokio::task::spawn_blocking(move || {
            let mut lines: Vec<String> = Vec::new();
            let deadline = std::time::Instant::now() + WAIT;
            let mut buf = [0u8; 8192];
            while std::time::Instant::now() < deadline && !w.iter().all(|k| lines.contains(k)) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    lines.extend(text.lines().map(str::to_string));
                }
            }
            lines
        })
        .await
        .unwrap();
        for k in &want {
            assert!(lines.contains(k), "{k} missing from {lines:?}");
        }
        let addr = wait_for("web API bound", || {
            let a = *bound.lock().unwrap();
            async move { a }
        })
        .await;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        let id = nodes[0].id.as_str().to_string();
        let row = wait_for("static node in /node-list", || async {
            let r = http
                .get(format!("http://{addr}/node-list"))
                .header("Accept", "application/json")
                .send()
                .await
                .ok()?;
            let body: serde_json::Value = r.json().await.ok()?;
            body.as_array()?
                .iter()
                .find(|n| n["id"].as_str() == Some(id.as_str()))
                .cloned()
        })
        .await;
        let ip = env.hosts[0].ip().to_string();
        assert_eq!(row["provider"].as_str(), Some(STATIC_PROVIDER), "{row}");
        assert_eq!(row["server_id"].as_str(), Some(ip.as_str()), "{row}");
        assert_eq!(row["hostname"].as_str(), Some(ip.as_str()), "{row}");
        assert_eq!(row["launcher"].as_str(), Some("static driver"), "{row}");
        assert_eq!(row["state"].as_str(), Some("ready"), "{row}");
        assert_eq!(row["label"], serde_json::json!(["fake-label"]), "{row}");
        l.stop().await;
    })
    .await;
}

/// Parses a Prometheus text page into `name{labels}` → value.
fn prometheus_samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// `GET /metrics` on the web API after a run: node counts by state, requests by state,
/// the pool's usage and max-servers agree with ZooKeeper; every launch and cloud API call
/// was observed (the same calls that send statsd).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_match_zookeeper() {
    bounded(async {
        let env = Env::new(&Shape::default(), Knobs::default()).await;
        let mut text = std::fs::read_to_string(&env.config).unwrap();
        text.push_str("webapp:\n  listen_address: 127.0.0.1\n  port: 0\n");
        std::fs::write(&env.config, text).unwrap();
        let mut opts = LauncherOptions::new(env.config.clone());
        opts.clouds_file = Some(env.clouds.clone());
        opts.hostname = Some("host-a".into());
        opts.statsd = Some(Statsd::noop());
        let bound = Arc::new(std::sync::Mutex::new(None));
        opts.web_bound = Some(bound.clone());
        opts.intervals = Intervals {
            config_check: Duration::from_millis(200),
            pool_tick: Duration::from_millis(200),
            ..Intervals::default()
        };
        let l = Launcher::start(opts);
        let a = env.submit(&["small-label"]).await;
        let b = env.submit(&["small-label", "small-label"]).await;
        let ra = env.wait_done(&a).await;
        let rb = env.wait_done(&b).await;
        assert_eq!(
            (ra.state, rb.state),
            (RequestState::Fulfilled, RequestState::Fulfilled)
        );
        let _locks = env.accept(&ra).await;
        let addr = wait_for("web API address", || {
            let b = bound.clone();
            async move { *b.lock().unwrap() }
        })
        .await;
        let url = format!("http://{addr}/metrics");
        let store = env.store.clone();
        let (page, zk_nodes) = wait_for("metrics agree with ZooKeeper", || {
            let (url, store) = (url.clone(), store.clone());
            async move {
                let resp = reqwest::get(&url).await.ok()?;
                let ct = resp
                    .headers()
                    .get("content-type")?
                    .to_str()
                    .ok()?
                    .to_string();
                assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
                let page = prometheus_samples(&resp.text().await.ok()?);
                let nodes: Vec<Node> = store
                    .nodes()
                    .await
                    .ok()?
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect();
                let requests = store.requests().await.ok()?;
                for s in NodeState::ALL {
                    let want = nodes.iter().filter(|n| n.state == s).count() as f64;
                    let got = page.get(&format!(r#"nodepool_nodes{{state="{s}"}}"#))?;
                    (*got == want).then_some(())?;
                    let got = page.get(&format!(
                        r#"nodepool_provider_nodes{{provider="{PROVIDER}",state="{s}"}}"#
                    ))?;
                    (*got == want).then_some(())?;
                }
                for s in RequestState::ALL {
                    let want = requests.iter().filter(|(r, _)| r.state == s).count() as f64;
                    (page.get(&format!(r#"nodepool_requests{{state="{s}"}}"#))? == &want)
                        .then_some(())?;
                }
                let usage = page.get(&format!(
                    r#"nodepool_pool_nodes{{provider="{PROVIDER}",pool="main"}}"#
                ))?;
                (*usage == nodes.len() as f64).then_some((page, nodes))
            }
        })
        .await;
        assert_eq!(zk_nodes.len(), 3);
        assert_eq!(
            page.get(&format!(
                r#"nodepool_provider_max_servers{{provider="{PROVIDER}"}}"#
            )),
            Some(&20.0)
        );
        let launches: f64 = page
            .iter()
            .filter(|(k, _)| {
                k.starts_with("nodepool_launch_duration_seconds_count{")
                    && k.contains(&format!(r#"provider="{PROVIDER}""#))
                    && k.contains(r#"requestor="zuul-test""#)
                    && k.contains(r#"result="ready""#)
            })
            .map(|(_, v)| v)
            .sum();
        assert_eq!(launches, 3.0, "one observation per launched node");
        let creates: f64 = page
            .iter()
            .filter(|(k, _)| {
                k.starts_with("nodepool_cloud_api_duration_seconds_count{")
                    && k.contains(r#"service="compute""#)
                    && k.contains(r#"method="POST""#)
                    && k.contains(r#"operation="servers""#)
            })
            .map(|(_, v)| v)
            .sum();
        assert_eq!(creates, 3.0, "one server create per node: {page:?}");
        let cores: f64 = zk_nodes
            .iter()
            .filter_map(|n| n.resources.as_ref()?.get("cores")?.as_f64())
            .sum();
        assert_eq!(
            page.get(&format!(
                r#"nodepool_pool_resources{{provider="{PROVIDER}",pool="main",resource="cores"}}"#
            ))
            .copied()
            .unwrap_or(0.0),
            cores
        );
        l.stop().await;
    })
    .await;
}

/// A port nothing listens on (bound once by the kernel, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Attack on a running launcher: a wrong password in clouds.yaml while nodes wait for
/// deletion made 5,243 token requests in 20 s. The provider's authentication backs off
/// (1 s doubling), so the count over 20 s stays small; fixing clouds.yaml restarts the
/// provider and the deletes finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_backs_off_then_deletes_finish_once_fixed() {
    bounded(async {
        let env = Env::new(&Shape::default(), Knobs::default()).await;
        let good = env.sim.clouds_yaml("sim");
        let wrong = good.replace("password: secret", "password: not-the-password");
        assert_ne!(good, wrong);
        env.rewrite_clouds(&wrong);
        let nodes = env.used_nodes_with_servers(6).await;
        let admin = env.sim.admin();
        admin.reset_counters();
        let l = env.start_launcher("host-a");
        // A count of requests over a window, not a timing assertion: without the backoff
        // every delete step of the six nodes asks Keystone again (thousands).
        tokio::time::sleep(Duration::from_secs(20)).await;
        let tokens = admin.counter("identity.tokens.create");
        assert!(
            (1..=10).contains(&tokens),
            "{tokens} token requests in 20 s with a wrong password"
        );
        assert_eq!(admin.counter("compute.servers.delete"), 0);
        for (id, server) in &nodes {
            assert!(admin.server(server).is_some(), "server of {id} deleted");
        }
        // The password is fixed: the provider restarts and the deletes complete.
        env.rewrite_clouds(&good);
        env.wait_deleted(&nodes, WAIT).await;
        l.stop().await;
    })
    .await;
}

/// Attack on a running launcher: with `auth_url` on a closed port, deletes kept the
/// driver they started with; after clouds.yaml and nodepool.yaml were restored six nodes
/// stayed `deleting` for 600 s. Running deletes follow the restarted provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_deletes_follow_a_restored_cloud_config() {
    bounded(async {
        let shape = Shape::default();
        let env = Env::new(&shape, Knobs::default()).await;
        let good = env.sim.clouds_yaml("sim");
        let closed = format!("http://127.0.0.1:{}/identity", closed_port());
        env.rewrite_clouds(&good.replace(&env.sim.auth_url(), &closed));
        let nodes = env.used_nodes_with_servers(6).await;
        let l = env.start_launcher("host-a");
        // The deletes are running: every node is `deleting` and locked.
        wait_for("six nodes deleting and locked", || async {
            for (id, _) in &nodes {
                let (n, _) = env.store.get_node(id).await.ok()??;
                let locked = !env.store.node_lock_contenders(id).await.ok()?.is_empty();
                if n.state != NodeState::Deleting || !locked {
                    return None;
                }
            }
            Some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        env.rewrite_clouds(&good);
        env.rewrite_config(&shape);
        // Far below the 600 s a delete may take: they must switch to the new driver.
        env.wait_deleted(&nodes, Duration::from_secs(60)).await;
        l.stop().await;
    })
    .await;
}

/// Attack on a running launcher: removing the lock child of a `building` node let the
/// DeletedNodeWorker delete node and server; the launch then retried, booted a new server
/// for the vanished node and left it to the leak cleanup (70 s later). The launch stops
/// when its node record is deleted and deletes its server itself; the request is
/// declined (failed: this is the only pool), as Nodepool declines after a failed launch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_whose_node_is_deleted_stops_and_deletes_its_server() {
    bounded(async {
        let knobs = Knobs {
            boot_delay_ms: 4000,
            ..Knobs::default()
        };
        let env = Env::new(&Shape::default(), knobs).await;
        let admin = env.sim.admin();
        // Leak cleanup cannot be what removes a server in this test.
        let l = env.start_launcher_tuned(Some("host-a"), |i| {
            i.cleanup = Duration::from_secs(3600);
        });
        let req = env.submit(&["small-label"]).await;
        let (node, server) = wait_for("a building node with its server", || async {
            let nodes = env.store.nodes().await.ok()?;
            nodes.into_iter().find_map(|(n, _)| {
                let server = n.external_id.clone()?;
                (n.state == NodeState::Building).then_some((n.id, server))
            })
        })
        .await;
        assert!(admin.server(&server).is_some());
        // Take the lock away: remove the lock's children, as an operator could.
        let client = env.store.client();
        let dir = paths::node_lock(&node);
        for child in client
            .get_children(&dir)
            .await
            .expect("lock")
            .unwrap_or_default()
        {
            client
                .delete(&format!("{dir}/{child}"), None)
                .await
                .expect("delete lock child");
        }
        let done = env.wait_state(&req, RequestState::Failed).await;
        assert!(done.nodes.is_empty(), "{done:?}");
        // No server outlives its node record: none are left, soon after the request
        // ended (the leak cleanup runs once an hour here).
        wait_for_within("no servers left", Duration::from_secs(30), || async {
            let servers = admin.servers();
            let records = env.store.nodes().await.ok()?;
            let with_server = records
                .iter()
                .filter(|(n, _)| n.external_id.is_some())
                .count();
            (servers.len() == with_server && servers.is_empty()).then_some(())
        })
        .await;
        // …and stays so: no later attempt boots another one.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(admin.servers().is_empty(), "{:?}", admin.servers());
        l.stop().await;
    })
    .await;
}

/// Attack on a running launcher: while a pool could not serve (at quota), min-ready
/// submitted a `900-` request every pass, each declined at once. After a failed one the
/// next waits (5 s, doubling); once the pool has room again min-ready is filled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_ready_backs_off_while_no_pool_can_serve() {
    bounded(async {
        let mut shape = Shape {
            max_servers: Some(1),
            ..Shape::default()
        };
        shape.min_ready.insert("small-label", 1);
        let env = Env::new(&shape, Knobs::default()).await;
        // The pool's one slot is taken by a node in use (locked, as Zuul holds it).
        let mut busy = Node::new();
        busy.set_state(NodeState::InUse);
        busy.provider = Some(PROVIDER.into());
        busy.pool = Some("main".into());
        busy.node_type = vec!["medium-label".into()];
        busy.resources = Some(
            nodepool_shared::model::QuotaInformation::new(Some(1.0), Some(1.0), Some(512.0), 0.0)
                .to_resources(),
        );
        let busy_id = env.store.create_node(&mut busy).await.expect("node");
        let mut busy_lock = ZkLock::new(env.store.client(), &paths::node_lock(&busy_id), b"");
        assert!(busy_lock.acquire(Some(WAIT)).await.expect("lock"));
        // Count every min-ready request created, with a watch on the requests.
        let client = env.store.client();
        let (mut watcher, _) = client
            .watch_recursive(paths::REQUESTS)
            .await
            .expect("watch requests");
        let created = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = created.clone();
        let watching = tokio::spawn(async move {
            loop {
                let e = watcher.changed().await;
                if e.event_type == zookeeper_client::EventType::Session {
                    break;
                }
                if e.event_type == zookeeper_client::EventType::NodeCreated
                    && e.path
                        .rsplit('/')
                        .next()
                        .is_some_and(|n| n.starts_with("900-"))
                {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        let l = env.start_launcher("host-a");
        tokio::time::sleep(Duration::from_secs(15)).await;
        let n = created.load(std::sync::atomic::Ordering::SeqCst);
        // A count over a window: 5 s, then 10 s between failed requests; without the
        // backoff one every main-loop pass (200 ms here).
        assert!((1..=4).contains(&n), "{n} min-ready requests in 15 s");
        // The pool gets room: min-ready is filled.
        busy.set_state(NodeState::Used);
        env.store.store_node(&busy, None).await.expect("store");
        busy_lock.release().await.expect("unlock");
        wait_for("a ready min-ready node", || async {
            let nodes = env.store.nodes().await.ok()?;
            nodes
                .iter()
                .any(|(n, _)| {
                    n.state == NodeState::Ready
                        && n.allocated_to.is_none()
                        && n.node_type == ["small-label"]
                })
                .then_some(())
        })
        .await;
        watching.abort();
        l.stop().await;
    })
    .await;
}
