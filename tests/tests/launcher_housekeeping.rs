//! The launcher's housekeeping tasks (DeletedNodeWorker, CleanupWorker, StatsWorker,
//! state dump), and a pool worker's lock try, against a real ZooKeeper, the OpenStack simulator over HTTP and statsd
//! on a real UDP socket. The single-pass functions are driven directly so that every
//! test is deterministic; one test runs the long-running tasks end to end.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use nodepool_daemon::launcher::pool_worker::{lock_fresh, Locked};
use nodepool_daemon::launcher::runtime::{Counters, Intervals, LauncherContext, ProviderRuntime};
use nodepool_daemon::launcher::{cleanup, deleter, dump, held_request, orphan_inits, stats_worker};
use nodepool_shared::cloud::{CloudsFile, DriverOptions, OpenStackDriver};
use nodepool_shared::config::Config;
use nodepool_shared::model::{
    now_epoch, paths, Component, ComponentKind, Node, NodeId, NodeRequest, NodeState, PoolInfo,
    RequestId, RequestState,
};
use nodepool_shared::stats::Statsd;
use nodepool_shared::testing::{bounded, wait_for, TestZk};
use nodepool_shared::zk::{TreeCache, ZkLock, ZkStore};
use nodepool_tests::sim::{CloudsAuth, SimConfig, SimHandle, Simulator};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Upper bound of every wait inside a test.
const WAIT: Duration = Duration::from_secs(30);

/// Polls `cond` until true, failing the test after [`WAIT`].
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const PROVIDER: &str = "prov";

fn config_yaml(max_hold_age: Option<u64>) -> String {
    let hold = max_hold_age
        .map(|a| format!("max-hold-age: {a}\n"))
        .unwrap_or_default();
    format!(
        r#"zookeeper-servers:
  - host: 127.0.0.1
{hold}labels:
  - name: small
    max-ready-age: 60
  - name: big
providers:
  - name: {PROVIDER}
    cloud: sim
    rate: 0
    clean-floating-ips: true
    port-cleanup-interval: 600
    cloud-images:
      - name: cirros
    pools:
      - name: main
        max-servers: 10
        # Housekeeping tests: no launch here needs the SSH host-key scan.
        host-key-checking: false
        labels:
          - name: small
            cloud-image: cirros
            flavor-name: small
          - name: big
            cloud-image: cirros
            flavor-name: large
"#
    )
}

/// statsd on a real UDP socket.
struct StatsRx {
    socket: UdpSocket,
    lines: Vec<String>,
}

impl StatsRx {
    async fn bind() -> (StatsRx, Statsd) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let statsd = Statsd::udp("127.0.0.1", port).unwrap();
        (
            StatsRx {
                socket,
                lines: Vec::new(),
            },
            statsd,
        )
    }

    /// Reads whatever has arrived without waiting.
    fn drain(&mut self) {
        let mut buf = [0u8; 65536];
        while let Ok(n) = self.socket.try_recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.lines
                .extend(text.lines().map(str::to_string).filter(|l| !l.is_empty()));
        }
    }

    /// Waits until `line` was received (exact match).
    async fn wait_line(&mut self, line: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.drain();
            if self.lines.iter().any(|l| l == line) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no statsd line {line}; got {:?}",
                self.lines
            );
            let mut buf = [0u8; 1];
            let _ =
                tokio::time::timeout(Duration::from_millis(50), self.socket.peek(&mut buf)).await;
        }
    }

    fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }
}

struct Harness {
    _zk: TestZk,
    sim: SimHandle,
    ctx: Arc<LauncherContext>,
    stats: StatsRx,
    _config: watch::Sender<Arc<Config>>,
}

async fn context(
    zk: &TestZk,
    sim: &SimHandle,
    statsd: Statsd,
    config: Config,
    intervals: Intervals,
    with_provider: bool,
) -> (Arc<LauncherContext>, watch::Sender<Arc<Config>>) {
    let client = zk.client().await;
    let store = ZkStore::new(client.clone());
    let cache = TreeCache::start(client);
    assert!(cache.wait_synced(WAIT).await, "tree cache did not sync");
    let mut providers = HashMap::new();
    if with_provider {
        let yaml = sim.clouds_yaml_with("sim", CloudsAuth::Password);
        let file = CloudsFile::parse(&yaml, Path::new("clouds.yaml")).unwrap();
        let mut opts = DriverOptions::new(PROVIDER);
        opts.rate = 0.0;
        opts.api_timeout = Duration::from_secs(10);
        let driver = OpenStackDriver::new(file.cloud("sim").unwrap(), opts).unwrap();
        let mut pconf = config.provider(PROVIDER).unwrap().clone();
        // Tiny port interval so two cleanup passes a moment apart remove DOWN ports.
        pconf.port_cleanup_interval = Some(Duration::from_millis(50));
        providers.insert(
            PROVIDER.to_string(),
            Arc::new(ProviderRuntime::new(
                pconf,
                Arc::new(driver),
                statsd.clone(),
            )),
        );
    }
    let (tx, rx) = watch::channel(Arc::new(config));
    let ctx = LauncherContext {
        store,
        cache,
        statsd,
        config: rx,
        providers: RwLock::new(providers),
        static_providers: RwLock::new(HashMap::new()),
        hostname: "testhost".into(),
        fqdn: "testhost.example.org".into(),
        intervals,
        ready: Arc::new(AtomicBool::new(false)),
        counters: Counters::default(),
        cancel: CancellationToken::new(),
        task_states: Mutex::new(HashMap::new()),
        request_tries: Default::default(),
        own_pool_workers: Default::default(),
    };
    (Arc::new(ctx), tx)
}

async fn harness_with(max_hold_age: Option<u64>, intervals: Intervals) -> Harness {
    let zk = TestZk::shared().await;
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let config = Config::from_yaml_str(&config_yaml(max_hold_age), "nodepool.yaml").unwrap();
    let (stats, statsd) = StatsRx::bind().await;
    let (ctx, tx) = context(&zk, &sim, statsd, config, intervals, true).await;
    Harness {
        _zk: zk,
        sim,
        ctx,
        stats,
        _config: tx,
    }
}

async fn harness() -> Harness {
    harness_with(None, Intervals::default()).await
}

impl Harness {
    fn store(&self) -> &ZkStore {
        &self.ctx.store
    }

    /// Creates a node of our provider in `state` and waits until the cache has it.
    async fn node(&self, state: NodeState, labels: &[&str], edit: impl FnOnce(&mut Node)) -> Node {
        let mut node = Node::new();
        node.set_state(state);
        node.provider = Some(PROVIDER.into());
        node.pool = Some("main".into());
        node.node_type = labels.iter().map(|l| l.to_string()).collect();
        edit(&mut node);
        self.store().create_node(&mut node).await.unwrap();
        self.wait_version(&node.id, 0).await;
        node
    }

    /// Stores `node` and waits until the cache shows the stored version.
    async fn save(&self, node: &Node) {
        let stat = self.store().store_node(node, None).await.unwrap();
        self.wait_version(&node.id, stat.version).await;
    }

    /// Waits until the cache has `version` of node `id`.
    async fn wait_version(&self, id: &NodeId, version: i32) {
        let cache = self.ctx.cache.clone();
        wait_until("the node in the cache", || {
            cache.node(id).is_some_and(|c| c.stat.version == version)
        })
        .await;
    }

    /// A server in the simulator that carries `node`'s id (as if we had launched it).
    fn server_for(&self, node: &Node) -> String {
        self.sim
            .admin()
            .inject_leaked_server(PROVIDER, node.id.as_str(), "main")
    }

    async fn get(&self, id: &NodeId) -> Option<Node> {
        self.store().get_node(id).await.unwrap().map(|(n, _)| n)
    }

    async fn wait_gone_from_cache(&self, id: &NodeId) {
        let cache = self.ctx.cache.clone();
        wait_until("the node to leave the cache", || cache.node(id).is_none()).await;
    }

    /// Waits until node `id`'s znode is gone from ZooKeeper.
    async fn wait_deleted(&self, id: &NodeId) {
        let store = self.store().clone();
        wait_for("the node's znode to be deleted", || {
            let store = store.clone();
            async move { store.get_node(id).await.unwrap().is_none().then_some(()) }
        })
        .await;
    }

    fn server_exists(&self, id: &str) -> bool {
        self.sim.admin().server(id).is_some()
    }

    async fn request(
        &self,
        state: RequestState,
        edit: impl FnOnce(&mut NodeRequest),
    ) -> NodeRequest {
        let mut req = NodeRequest::new(vec!["small".into()], "zuul");
        req.set_state(state);
        edit(&mut req);
        self.store()
            .create_request(&mut req, "100", false)
            .await
            .unwrap();
        let cache = self.ctx.cache.clone();
        let id = req.id.clone();
        wait_until("the request in the cache", || cache.request(&id).is_some()).await;
        req
    }

    /// A request a handler accepted (`pending`, seen so by the cache) with a `ready` node
    /// allocated to it: the request as the handler would store it `fulfilled`, and the
    /// version of the `pending` write.
    async fn accepted_with_a_ready_node(&self) -> (NodeRequest, i32) {
        let mut req = self.request(RequestState::Requested, |_| {}).await;
        let ready = self
            .node(NodeState::Ready, &["small"], |n| {
                n.allocated_to = Some(req.id.clone())
            })
            .await;
        req.set_state(RequestState::Pending);
        let version = self
            .store()
            .store_request(&req, None)
            .await
            .unwrap()
            .version;
        let cache = self.ctx.cache.clone();
        let id = req.id.clone();
        wait_until("the pending request in the cache", || {
            cache
                .request(&id)
                .is_some_and(|r| r.request.state == RequestState::Pending)
        })
        .await;
        req.nodes = vec![ready.id];
        req.set_state(RequestState::Fulfilled);
        (req, version)
    }
}

#[tokio::test]
async fn used_node_is_deleted_from_cloud_and_zookeeper() {
    bounded(async {
        let h = harness().await;
        let node = h.node(NodeState::Used, &["small"], |_| {}).await;
        let server = h.server_for(&node);
        let mut node = node;
        node.external_id = Some(server.clone());
        h.save(&node).await;
        // A ready, unallocated node is none of the worker's business.
        let ready = h.node(NodeState::Ready, &["small"], |_| {}).await;

        let report = deleter::pass(&h.ctx).await;
        assert_eq!(report.deleted, vec![node.id.clone()], "{report:?}");
        assert!(report.failed.is_empty());
        assert!(!h.server_exists(&server), "server still in the cloud");
        assert!(h.get(&node.id).await.is_none());
        assert!(h
            .store()
            .client()
            .exists(&paths::node(&node.id))
            .await
            .unwrap()
            .is_none());
        assert_eq!(h.ctx.counters.nodes_deleted.load(Ordering::Relaxed), 1);
        assert_eq!(h.get(&ready.id).await.unwrap().state, NodeState::Ready);

        // Unlocked in-use / building / failed / aborted / deleting nodes are reclaimed too.
        let mut ids = Vec::new();
        for state in [
            NodeState::InUse,
            NodeState::Building,
            NodeState::Failed,
            NodeState::Aborted,
            NodeState::Deleting,
        ] {
            ids.push(h.node(state, &["small"], |_| {}).await.id);
        }
        let report = deleter::pass(&h.ctx).await;
        let mut deleted = report.deleted.clone();
        deleted.sort();
        assert_eq!(deleted, ids, "{report:?}");
        assert_eq!(h.ctx.counters.nodes_deleted.load(Ordering::Relaxed), 6);
    })
    .await;
}

#[tokio::test]
async fn locked_node_is_left_alone() {
    bounded(async {
        let h = harness().await;
        let mut node = h.node(NodeState::Used, &["small"], |_| {}).await;
        let server = h.server_for(&node);
        node.external_id = Some(server.clone());
        h.save(&node).await;

        // Someone else (Zuul) holds the lock, in a session of its own.
        let other = h._zk.client().await;
        let mut lock = ZkLock::new(&other, &paths::node_lock(&node.id), b"");
        assert!(lock.try_acquire().await.unwrap());
        let cache = h.ctx.cache.clone();
        let id = node.id.clone();
        wait_until("the lock in the cache", || {
            cache.node(&id).is_some_and(|n| n.probably_locked())
        })
        .await;

        let report = deleter::pass(&h.ctx).await;
        assert_eq!(report, deleter::PassReport::default());
        // Even when acting on it directly (a stale cache), the lock is respected.
        let r = deleter::handle(&h.ctx, &node.id, deleter::Action::Delete).await;
        assert_eq!(r, Ok(deleter::Outcome::Skipped));
        assert!(h.server_exists(&server));
        assert_eq!(h.get(&node.id).await.unwrap().state, NodeState::Used);

        // Released → deleted on the next pass.
        lock.release().await.unwrap();
        wait_until("the unlock in the cache", || {
            cache.node(&id).is_some_and(|n| !n.probably_locked())
        })
        .await;
        let report = deleter::pass(&h.ctx).await;
        assert_eq!(report.deleted, vec![node.id.clone()]);
        assert!(!h.server_exists(&server));
        other.close().await;
    })
    .await;
}

#[tokio::test]
async fn deleted_and_providerless_nodes_only_lose_their_znode() {
    bounded(async {
        let h = harness().await;
        // `deleted`: the cloud side is done; the server id here must NOT be deleted.
        let mut deleted = h.node(NodeState::Deleted, &["small"], |_| {}).await;
        let server = h.server_for(&deleted);
        deleted.external_id = Some(server.clone());
        h.save(&deleted).await;
        let orphan = h
            .node(NodeState::Used, &["small"], |n| {
                n.provider = None;
                n.external_id = Some("no-such-server".into());
            })
            .await;
        // A node of a provider this launcher does not run is not ours.
        let foreign = h
            .node(NodeState::Used, &["small"], |n| {
                n.provider = Some("elsewhere".into())
            })
            .await;

        let report = deleter::pass(&h.ctx).await;
        let mut removed = report.znodes_removed.clone();
        removed.sort();
        assert_eq!(
            removed,
            vec![deleted.id.clone(), orphan.id.clone()],
            "{report:?}"
        );
        assert!(report.deleted.is_empty());
        assert!(h.get(&deleted.id).await.is_none());
        assert!(h.get(&orphan.id).await.is_none());
        assert!(
            h.server_exists(&server),
            "a deleted node's server was touched"
        );
        assert_eq!(h.get(&foreign.id).await.unwrap().state, NodeState::Used);
    })
    .await;
}

#[tokio::test]
async fn stale_allocation_is_cleared_when_the_request_vanished() {
    bounded(async {
        let h = harness().await;
        let gone = h.request(RequestState::Fulfilled, |_| {}).await;
        let kept = h.request(RequestState::Fulfilled, |_| {}).await;
        let stale = h
            .node(NodeState::Ready, &["small"], |n| {
                n.allocated_to = Some(gone.id.clone())
            })
            .await;
        let live = h
            .node(NodeState::Ready, &["small"], |n| {
                n.allocated_to = Some(kept.id.clone())
            })
            .await;
        h.store().delete_request(&gone.id).await.unwrap();
        let cache = h.ctx.cache.clone();
        let gid = gone.id.clone();
        wait_until("the request to leave the cache", || {
            cache.request(&gid).is_none()
        })
        .await;

        let report = deleter::pass(&h.ctx).await;
        assert_eq!(report.deallocated, vec![stale.id.clone()], "{report:?}");
        let n = h.get(&stale.id).await.unwrap();
        assert_eq!(n.state, NodeState::Ready);
        assert_eq!(n.allocated_to, None);
        assert_eq!(
            h.get(&live.id).await.unwrap().allocated_to,
            Some(kept.id.clone())
        );
    })
    .await;
}

#[tokio::test]
async fn leaked_resources_are_removed_and_counted() {
    bounded(async {
        let mut h = harness().await;
        let admin = h.sim.admin();
        let known = h.node(NodeState::Ready, &["small"], |_| {}).await;
        let known_server = h.server_for(&known);
        let leaked = admin.inject_leaked_server(PROVIDER, "0000099999", "main");
        // A node of that id exists, but of another provider: the server is no node's.
        let elsewhere = h
            .node(NodeState::Ready, &["small"], |n| {
                n.provider = Some("elsewhere".into())
            })
            .await;
        let misnamed = admin.inject_leaked_server(PROVIDER, elsewhere.id.as_str(), "main");
        // Another provider's server is never ours to delete.
        let foreign = admin.inject_leaked_server("elsewhere", "0000099998", "main");
        let port = admin.inject_down_port();
        admin.inject_leaked_floating_ip();
        assert_eq!(admin.floating_ips().len(), 1);

        let first = cleanup::pass(&h.ctx).await;
        assert_eq!(first.leaked_instances, 0, "{}", first.summary());
        assert_eq!(first.leaked_ports, 0);
        assert_eq!(first.leaked_floating_ips, 1);
        assert!(h.server_exists(&leaked), "deleted on the first sight");
        assert!(admin.floating_ips().is_empty());

        tokio::time::sleep(Duration::from_millis(100)).await; // > port-cleanup-interval
        let second = cleanup::pass(&h.ctx).await;
        assert_eq!(second.leaked_instances, 2, "{}", second.summary());
        assert_eq!(second.leaked_ports, 1);
        assert!(second.errors.is_empty(), "{:?}", second.errors);
        assert!(!h.server_exists(&leaked));
        assert!(!h.server_exists(&misnamed));
        assert!(h.server_exists(&known_server));
        assert!(h.server_exists(&foreign));
        assert!(!admin.ports().iter().any(|p| p.id == port));

        h.ctx.statsd.flush();
        for line in [
            "nodepool.provider.prov.leaked.floatingips:1|c",
            "nodepool.provider.prov.leaked.instances:1|c",
            "nodepool.provider.prov.leaked.ports:1|c",
        ] {
            h.stats.wait_line(line).await;
        }
    })
    .await;
}

#[tokio::test]
async fn lost_request_goes_back_to_requested() {
    bounded(async {
        let h = harness().await;
        let lost = h
            .request(RequestState::Pending, |r| {
                r.declined_by = vec!["other-launcher".into()];
            })
            .await;
        let init = h
            .node(NodeState::Init, &["small"], |n| {
                n.allocated_to = Some(lost.id.clone())
            })
            .await;
        let ready = h
            .node(NodeState::Ready, &["small"], |n| {
                n.allocated_to = Some(lost.id.clone())
            })
            .await;
        let mut lost = lost;
        lost.nodes = vec![init.id.clone(), ready.id.clone()];
        h.store().store_request(&lost, None).await.unwrap();

        // A pending request whose handler is alive (holds the lock) is left alone.
        let alive = h.request(RequestState::Pending, |_| {}).await;
        let other = h._zk.client().await;
        let mut lock = ZkLock::new(&other, &paths::request_lock(&alive.id), b"");
        assert!(lock.try_acquire().await.unwrap());
        let cache = h.ctx.cache.clone();
        let aid = alive.id.clone();
        wait_until("the request lock in the cache", || {
            cache.request_locked(&aid)
        })
        .await;

        assert_eq!(cleanup::lost_requests(&h.ctx).await.unwrap(), 1);
        let (r, _) = h.store().get_request(&lost.id).await.unwrap().unwrap();
        assert_eq!(r.state, RequestState::Requested);
        assert!(r.nodes.is_empty());
        assert_eq!(r.declined_by, vec!["other-launcher".to_string()]);
        assert_eq!(h.get(&init.id).await.unwrap().state, NodeState::Deleting);
        let n = h.get(&ready.id).await.unwrap();
        assert_eq!((n.state, n.allocated_to), (NodeState::Ready, None));
        let (a, _) = h.store().get_request(&alive.id).await.unwrap().unwrap();
        assert_eq!(a.state, RequestState::Pending);
        // Our lock on the lost request was released.
        assert!(h
            .store()
            .request_lock_contenders(&lost.id)
            .await
            .unwrap()
            .is_empty());
        lock.release().await.unwrap();
        other.close().await;
    })
    .await;
}

/// A create whose reply was lost leaves an unlocked `init` node allocated to the
/// request; the handler's sweep marks those `deleting` and nothing else: not a node
/// someone holds, not another request's, not one past `init`. The nodes the tree cache
/// does not hold yet are read (the cache is stopped before they are created), and a
/// node the cache still shows as `init` is judged by its fresh record.
#[tokio::test]
async fn sweep_marks_the_unlocked_init_nodes_of_the_request() {
    bounded(async {
        let h = harness().await;
        let req = h.request(RequestState::Pending, |_| {}).await;
        let other_req = h.request(RequestState::Pending, |_| {}).await;
        let ours = |n: &mut Node| n.allocated_to = Some(req.id.clone());
        let orphan = h.node(NodeState::Init, &["small"], ours).await;
        let held = h.node(NodeState::Init, &["small"], ours).await;
        let not_ours = h
            .node(NodeState::Init, &["small"], |n| {
                n.allocated_to = Some(other_req.id.clone())
            })
            .await;
        let ready = h.node(NodeState::Ready, &["small"], ours).await;
        let moved_on = h.node(NodeState::Init, &["small"], ours).await;
        let other = h._zk.client().await;
        let mut lock = ZkLock::new(&other, &paths::node_lock(&held.id), b"");
        assert!(lock.try_acquire().await.unwrap());

        // From here on the cache sees nothing: later nodes are not in it, and it still
        // shows `moved_on` as `init`.
        h.ctx.cache.stop();
        let mut uncached = Node::new();
        uncached.set_state(NodeState::Init);
        uncached.provider = Some(PROVIDER.into());
        uncached.allocated_to = Some(req.id.clone());
        h.store().create_node(&mut uncached).await.unwrap();
        let mut uncached_other = uncached.clone();
        uncached_other.allocated_to = Some(other_req.id.clone());
        h.store().create_node(&mut uncached_other).await.unwrap();
        let mut building = h.get(&moved_on.id).await.unwrap();
        building.set_state(NodeState::Building);
        h.store().store_node(&building, None).await.unwrap();
        assert!(h.ctx.cache.node(&uncached.id).is_none());

        let mut found = orphan_inits::candidates(&h.ctx, &req.id).await.unwrap();
        found.sort();
        let mut want = vec![
            orphan.id.clone(),
            held.id.clone(),
            moved_on.id.clone(),
            uncached.id.clone(),
        ];
        want.sort();
        assert_eq!(found, want, "init nodes of the request, cached or not");

        assert_eq!(orphan_inits::sweep(&h.ctx, &req.id).await.unwrap(), 2);
        for (id, state) in [
            (&orphan.id, NodeState::Deleting),
            (&uncached.id, NodeState::Deleting),
            (&held.id, NodeState::Init),
            (&not_ours.id, NodeState::Init),
            (&uncached_other.id, NodeState::Init),
            (&ready.id, NodeState::Ready),
            (&moved_on.id, NodeState::Building),
        ] {
            assert_eq!(h.get(id).await.unwrap().state, state, "node {id}");
        }
        for id in [&orphan.id, &uncached.id, &moved_on.id] {
            assert!(
                h.store().node_lock_contenders(id).await.unwrap().is_empty(),
                "our lock on {id} released"
            );
        }
        lock.release().await.unwrap();
        other.close().await;
    })
    .await;
}

/// A handler whose launcher was stopped past the session timeout resumes and writes
/// `fulfilled` after another launcher's cleanup reset its request (the chaos soak's
/// "fulfilled request …: node … is allocated to None"): the write is conditional on the
/// version of the handler's `pending` write, so it is refused and the reset stands.
#[tokio::test]
async fn fulfilled_write_after_a_lost_request_reset_is_refused() {
    bounded(async {
        let h = harness().await;
        let (fulfilled, ours) = h.accepted_with_a_ready_node().await;
        let (req, ready) = (&fulfilled, &fulfilled.nodes[0]);
        // Its lock is gone (no contender): another launcher's cleanup resets it.
        assert_eq!(cleanup::lost_requests(&h.ctx).await.unwrap(), 1);
        // The resumed handler's write.
        let w = held_request::store_fulfilled(h.store(), &fulfilled, ours)
            .await
            .unwrap();
        assert_eq!(w, held_request::HeldWrite::Changed);
        let (r, _) = h.store().get_request(&req.id).await.unwrap().unwrap();
        assert_eq!((r.state, r.nodes.len()), (RequestState::Requested, 0));
        assert_eq!(h.get(ready).await.unwrap().allocated_to, None);
        // Without our version there is nothing to write against: a request that is not
        // `pending` is not ours.
        assert_eq!(
            held_request::expected_version(h.store(), &fulfilled, None)
                .await
                .unwrap(),
            None
        );
    })
    .await;
}

/// A handler whose `pending` write's outcome is unknown has no version to write
/// against: a `pending` read later may be another launcher's (after our lock went with
/// the session, the request was reset and accepted again). Its `fulfilled` write is then
/// guarded by its own lock contender: refused once that is gone, stored while it exists.
#[tokio::test]
async fn fulfilled_write_of_an_unknown_version_needs_our_lock() {
    bounded(async {
        let h = harness().await;
        let (fulfilled, _) = h.accepted_with_a_ready_node().await;
        let id = fulfilled.id.clone();
        // Our contender (gone with our session) and another launcher's `pending`.
        let gone = format!(
            "{}/{}__lock__0000000000",
            paths::request_lock(&id),
            "0123456789abcdef0123456789abcdef"
        );
        let other = h._zk.client().await;
        let mut theirs = ZkLock::new(&other, &paths::request_lock(&id), b"");
        assert!(theirs.try_acquire().await.unwrap());
        let (mut pending, _) = h.store().get_request(&id).await.unwrap().unwrap();
        pending.declined_by.push("someone".into());
        h.store().store_request(&pending, None).await.unwrap();

        let w = held_request::fulfil(h.store(), &fulfilled, None, Some(&gone))
            .await
            .unwrap();
        assert_eq!(w, held_request::HeldWrite::Changed);
        let (r, _) = h.store().get_request(&id).await.unwrap().unwrap();
        assert_eq!(
            r.state,
            RequestState::Pending,
            "the other launcher's request stands"
        );
        assert!(r.nodes.is_empty());

        // While our contender exists the write goes through.
        theirs.release().await.unwrap();
        let mut ours = ZkLock::new(h.store().client(), &paths::request_lock(&id), b"");
        assert!(ours.try_acquire().await.unwrap());
        let held = ours.node_path().unwrap();
        let w = held_request::fulfil(h.store(), &fulfilled, None, Some(&held))
            .await
            .unwrap();
        assert_eq!(w, held_request::HeldWrite::Stored);
        let (r, _) = h.store().get_request(&id).await.unwrap().unwrap();
        assert_eq!(
            (r.state, r.nodes),
            (RequestState::Fulfilled, fulfilled.nodes.clone())
        );
        ours.release().await.unwrap();
        other.close().await;
    })
    .await;
}

/// The fulfilled write's reply is lost and the retry finds the version moved by our own
/// write: that counts as stored, not as a lost request.
#[tokio::test]
async fn fulfilled_write_repeated_after_a_lost_reply_counts_as_stored() {
    bounded(async {
        let h = harness().await;
        let (fulfilled, ours) = h.accepted_with_a_ready_node().await;
        let req = &fulfilled;
        for _ in 0..2 {
            let w = held_request::store_fulfilled(h.store(), &fulfilled, ours)
                .await
                .unwrap();
            assert_eq!(w, held_request::HeldWrite::Stored);
        }
        h.store().delete_request(&req.id).await.unwrap();
        let w = held_request::store_fulfilled(h.store(), &fulfilled, ours)
            .await
            .unwrap();
        assert_eq!(w, held_request::HeldWrite::Gone);
    })
    .await;
}

/// The cleanup's reset is conditional too: a request fulfilled after the cleanup read
/// it `pending` is not put back, and the nodes it was fulfilled with keep their
/// allocation (the reset changes nodes only after its request write succeeded).
#[tokio::test]
async fn lost_request_reset_does_not_undo_a_fulfilled_write() {
    bounded(async {
        let h = harness().await;
        let req = h.request(RequestState::Pending, |_| {}).await;
        let node = h
            .node(NodeState::Ready, &["small"], |n| {
                n.allocated_to = Some(req.id.clone())
            })
            .await;
        let (read, stale) = h.store().get_request(&req.id).await.unwrap().unwrap();
        let mut fulfilled = req.clone();
        fulfilled.nodes = vec![node.id.clone()];
        fulfilled.set_state(RequestState::Fulfilled);
        h.store().store_request(&fulfilled, None).await.unwrap();
        let reset = cleanup::reset_pending(&h.ctx, read, stale.version)
            .await
            .unwrap();
        assert!(!reset);
        let (r, _) = h.store().get_request(&req.id).await.unwrap().unwrap();
        assert_eq!(r.state, RequestState::Fulfilled);
        let n = h.get(&node.id).await.unwrap();
        assert_eq!(n.allocated_to, Some(req.id.clone()));
        assert!(h
            .store()
            .node_lock_contenders(&node.id)
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

#[tokio::test]
async fn max_ready_age_and_max_hold_age_mark_nodes_deleting() {
    bounded(async {
        let h = harness_with(Some(3600), Intervals::default()).await;
        let old = now_epoch() - 120.0;
        // `small` has max-ready-age 60, `big` none.
        let expired = h
            .node(NodeState::Ready, &["small"], |n| n.state_time = old)
            .await;
        let fresh = h.node(NodeState::Ready, &["small"], |_| {}).await;
        let ageless = h
            .node(NodeState::Ready, &["big"], |n| n.state_time = old)
            .await;
        let allocated = h
            .node(NodeState::Ready, &["small"], |n| {
                n.state_time = old;
                n.allocated_to = Some(RequestId::from("100-0000000001"));
            })
            .await;
        // Holds: the global max-hold-age is 3600 s.
        let held_long = h
            .node(NodeState::Hold, &["small"], |n| {
                n.state_time = now_epoch() - 7200.0
            })
            .await;
        let held_short = h
            .node(NodeState::Hold, &["small"], |n| {
                n.state_time = now_epoch() - 100.0
            })
            .await;
        let expiring = h
            .node(NodeState::Hold, &["small"], |n| {
                n.state_time = now_epoch() - 20.0;
                n.hold_expiration = Some(10);
            })
            .await;
        let not_yet = h
            .node(NodeState::Hold, &["small"], |n| {
                n.state_time = now_epoch() - 20.0;
                n.hold_expiration = Some(600);
            })
            .await;

        assert_eq!(cleanup::max_ready_age(&h.ctx).await.unwrap(), 1);
        assert_eq!(cleanup::max_hold_age(&h.ctx).await.unwrap(), 2);
        let state = |n: Option<Node>| n.unwrap().state;
        assert_eq!(state(h.get(&expired.id).await), NodeState::Deleting);
        assert_eq!(state(h.get(&fresh.id).await), NodeState::Ready);
        assert_eq!(state(h.get(&ageless.id).await), NodeState::Ready);
        assert_eq!(state(h.get(&allocated.id).await), NodeState::Ready);
        assert_eq!(state(h.get(&held_long.id).await), NodeState::Deleting);
        assert_eq!(state(h.get(&held_short.id).await), NodeState::Hold);
        assert_eq!(state(h.get(&expiring.id).await), NodeState::Deleting);
        assert_eq!(state(h.get(&not_yet.id).await), NodeState::Hold);
    })
    .await;
}

#[tokio::test]
async fn hold_without_any_limit_is_kept() {
    bounded(async {
        let h = harness().await; // no max-hold-age
        let held = h
            .node(NodeState::Hold, &["small"], |n| {
                n.state_time = now_epoch() - 1e6
            })
            .await;
        assert_eq!(cleanup::max_hold_age(&h.ctx).await.unwrap(), 0);
        assert_eq!(h.get(&held.id).await.unwrap().state, NodeState::Hold);
    })
    .await;
}

#[tokio::test]
async fn empty_node_znodes_and_old_request_lock_dirs_are_removed() {
    bounded(async {
        let intervals = Intervals {
            request_lock_age: Duration::from_millis(1),
            ..Intervals::default()
        };
        let h = harness_with(None, intervals).await;
        let client = h.store().client().clone();
        // An empty node znode, as left by a lock attempt on a deleted node.
        let empty = NodeId::from("0000099999");
        client.ensure_path(&paths::node_lock(&empty)).await.unwrap();
        let cache = h.ctx.cache.clone();
        let eid = empty.clone();
        wait_until("the empty node in the cache", || {
            cache.empty_node_ids().contains(&eid)
        })
        .await;
        // Request-lock dirs: one of a vanished request, one of a live request.
        let dead = RequestId::from("100-0000099999");
        client
            .ensure_path(&paths::request_lock(&dead))
            .await
            .unwrap();
        let live = h.request(RequestState::Requested, |_| {}).await;
        client
            .ensure_path(&paths::request_lock(&live.id))
            .await
            .unwrap();
        let real = h.node(NodeState::Ready, &["small"], |_| {}).await;
        tokio::time::sleep(Duration::from_millis(20)).await; // older than request_lock_age

        let report = cleanup::pass(&h.ctx).await;
        assert_eq!(report.empty_nodes, 1, "{}", report.summary());
        assert_eq!(report.request_locks, 1, "{}", report.summary());
        assert!(client.exists(&paths::node(&empty)).await.unwrap().is_none());
        assert!(client
            .exists(&paths::request_lock(&dead))
            .await
            .unwrap()
            .is_none());
        assert!(client
            .exists(&paths::request_lock(&live.id))
            .await
            .unwrap()
            .is_some());
        assert!(h.get(&real.id).await.is_some());
    })
    .await;
}

/// Registers a pool component serving `small` and `big` of our provider.
async fn register_pool(store: &ZkStore) {
    let mut c = Component::new(ComponentKind::Pool, "testhost", "11.0.0");
    c.pool = Some(PoolInfo {
        id: Some("testhost-prov-main-abc".into()),
        name: Some("main".into()),
        provider_name: Some(PROVIDER.into()),
        supported_labels: vec!["small".into(), "big".into()],
        ..PoolInfo::default()
    });
    store.create_component(&c).await.unwrap();
}

#[tokio::test]
async fn gauges_include_zeros() {
    bounded(async {
        let mut h = harness().await;
        register_pool(h.store()).await;
        let cache = h.ctx.cache.clone();
        wait_until("the pool component", || {
            !cache.components(ComponentKind::Pool).is_empty()
        })
        .await;
        h.node(NodeState::Ready, &["small"], |_| {}).await;
        h.node(NodeState::InUse, &["small", "small", "big"], |_| {})
            .await;
        h.request(RequestState::Requested, |_| {}).await;
        h.request(RequestState::Requested, |r| {
            r.node_types = vec!["unknown".into()]
        })
        .await;

        let g = stats_worker::gauges(&h.ctx);
        assert_eq!(g["nodepool.nodes.ready"], 1);
        assert_eq!(g["nodepool.nodes.in-use"], 1);
        assert_eq!(g["nodepool.nodes.deleted"], 0);
        assert_eq!(g["nodepool.provider.prov.nodes.in-use"], 1);
        assert_eq!(g["nodepool.provider.prov.nodes.testing"], 0);
        // Counted once per label even if a label repeats in `type`.
        assert_eq!(g["nodepool.label.small.nodes.in-use"], 1);
        assert_eq!(g["nodepool.label.big.nodes.in-use"], 1);
        assert_eq!(g["nodepool.label.big.nodes.ready"], 0);
        assert_eq!(
            g["nodepool.provider.prov.pool.main.addressable_requests"],
            1
        );
        assert_eq!(g.len(), 11 * 4 + 1);

        let sent = stats_worker::emit_gauges(&h.ctx);
        assert_eq!(sent, g.len());
        h.stats.wait_line("nodepool.nodes.ready:1|g").await;
        h.stats.wait_line("nodepool.label.big.nodes.hold:0|g").await;
        h.stats
            .wait_line("nodepool.provider.prov.pool.main.addressable_requests:1|g")
            .await;
    })
    .await;
}

#[tokio::test]
async fn only_the_elected_stats_worker_emits() {
    bounded(async {
        let zk = TestZk::shared().await;
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let config = Config::from_yaml_str(&config_yaml(None), "nodepool.yaml").unwrap();
        let intervals = Intervals {
            stats: Duration::from_millis(50),
            ..Intervals::default()
        };
        let (mut rx_a, statsd_a) = StatsRx::bind().await;
        let (mut rx_b, statsd_b) = StatsRx::bind().await;
        let (a, _ta) = context(
            &zk,
            &sim,
            statsd_a,
            config.clone(),
            intervals.clone(),
            false,
        )
        .await;
        let (b, _tb) = context(&zk, &sim, statsd_b, config, intervals, false).await;
        register_pool(&a.store).await;

        let ja = tokio::spawn(stats_worker::run(a.clone()));
        // Let `a` win before `b` campaigns.
        let client = a.store.client().clone();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let c = nodepool_shared::zk::lock_contenders(&client, paths::STATS_ELECTION)
                .await
                .unwrap();
            if !c.is_empty() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "a never campaigned");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let jb = tokio::spawn(stats_worker::run(b.clone()));

        rx_a.wait_line("nodepool.nodes.ready:0|g").await;
        rx_a.wait_line("nodepool.provider.prov.nodes.used:0|g")
            .await;
        rx_a.wait_line("nodepool.label.big.nodes.deleting:0|g")
            .await;

        // A node change: the leader reports it.
        let mut node = Node::new();
        node.set_state(NodeState::Ready);
        node.provider = Some(PROVIDER.into());
        node.node_type = vec!["small".into()];
        a.store.create_node(&mut node).await.unwrap();
        rx_a.wait_line("nodepool.nodes.ready:1|g").await;
        rx_a.wait_line("nodepool.label.small.nodes.ready:1|g").await;

        // `b` saw the same change but is not the leader.
        let bc = b.cache.clone();
        let id = node.id.clone();
        wait_until("b's cache to see the node", || bc.node(&id).is_some()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        rx_b.drain();
        assert!(rx_b.lines.is_empty(), "non-leader emitted {:?}", rx_b.lines);
        assert!(a.task_states.lock().unwrap()["StatsWorker"].starts_with("leader"));
        assert_eq!(b.task_states.lock().unwrap()["StatsWorker"], "campaigning");

        // The leader stops: `b` takes over and emits.
        a.cancel.cancel();
        tokio::time::timeout(WAIT, ja).await.unwrap().unwrap();
        rx_b.wait_line("nodepool.nodes.ready:1|g").await;
        assert!(rx_b.has("nodepool.provider.prov.pool.main.addressable_requests:0|g"));
        b.cancel.cancel();
        tokio::time::timeout(WAIT, jb).await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn running_tasks_delete_and_clean_until_cancelled() {
    bounded(async {
        let intervals = Intervals {
            cleanup: Duration::from_millis(200),
            delete: Duration::from_millis(200),
            ..Intervals::default()
        };
        let h = harness_with(None, intervals).await;
        let jd = tokio::spawn(deleter::run(h.ctx.clone()));
        let jc = tokio::spawn(cleanup::run(h.ctx.clone()));

        // A node that becomes `used`: deleted on the cache event.
        let mut node = h.node(NodeState::Ready, &["small"], |_| {}).await;
        let server = h.server_for(&node);
        node.external_id = Some(server.clone());
        node.set_state(NodeState::Used);
        h.store().store_node(&node, None).await.unwrap();
        h.wait_gone_from_cache(&node.id).await;
        assert!(!h.server_exists(&server));

        // An old ready node: cleanup marks it deleting, the deleter removes it.
        let old = h
            .node(NodeState::Ready, &["small"], |n| {
                n.state_time = now_epoch() - 600.0
            })
            .await;
        h.wait_gone_from_cache(&old.id).await;
        assert_eq!(h.ctx.counters.nodes_deleted.load(Ordering::Relaxed), 2);

        let text = dump::dump(&h.ctx);
        assert!(text.contains("DeletedNodeWorker:"), "{text}");
        assert!(text.contains("CleanupWorker:"), "{text}");

        h.ctx.cancel.cancel();
        tokio::time::timeout(WAIT, jd).await.unwrap().unwrap();
        tokio::time::timeout(WAIT, jc).await.unwrap().unwrap();
        let states = h.ctx.task_states.lock().unwrap().clone();
        assert_eq!(states["DeletedNodeWorker"], "stopped");
        assert_eq!(states["CleanupWorker"], "stopped");
    })
    .await;
}

/// A `used` node that another launcher's pool worker created is left to that launcher
/// (its DeletedNodeWorker sees the same event) for a `delete` interval, so that three
/// launchers do not all race for its lock; our own node and one whose launcher is no
/// longer registered are deleted at once.
#[tokio::test]
async fn the_launcher_that_created_a_node_deletes_it_first() {
    bounded(async {
        let intervals = Intervals {
            delete: Duration::from_secs(600),
            ..Intervals::default()
        };
        let h = harness_with(None, intervals).await;
        register_pool(h.store()).await; // "testhost-prov-main-abc", alive
        let ours = "testhost-PoolWorker.prov-main-ours";
        h.ctx
            .own_pool_workers
            .lock()
            .unwrap()
            .insert(ours.to_string());
        let jd = tokio::spawn(deleter::run(h.ctx.clone()));
        let used = |launcher: &str| {
            let mut n = Node::new();
            n.set_state(NodeState::Used);
            n.provider = Some(PROVIDER.into());
            n.pool = Some("main".into());
            n.launcher = Some(launcher.to_string());
            n
        };
        let mut mine = used(ours);
        let mut theirs = used("testhost-prov-main-abc");
        let mut orphaned = used("a-launcher-long-gone");
        for n in [&mut theirs, &mut mine, &mut orphaned] {
            h.store().create_node(n).await.unwrap();
        }
        h.wait_deleted(&mine.id).await;
        h.wait_deleted(&orphaned.id).await;
        let ctx = h.ctx.clone();
        wait_until("the other launcher's node to wait for it", || {
            ctx.task_states.lock().unwrap()["DeletedNodeWorker"]
                .contains("1 left to their launcher")
        })
        .await;
        assert_eq!(h.get(&theirs.id).await.unwrap().state, NodeState::Used);
        h.ctx.cancel.cancel();
        tokio::time::timeout(WAIT, jd).await.unwrap().unwrap();
    })
    .await;
}

/// …and taken by whoever comes first once that interval has passed (its launcher may
/// not serve the provider any more, or be stuck).
#[tokio::test]
async fn another_launchers_node_is_deleted_after_the_delete_interval() {
    bounded(async {
        let intervals = Intervals {
            delete: Duration::from_millis(300),
            ..Intervals::default()
        };
        let h = harness_with(None, intervals).await;
        register_pool(h.store()).await;
        let jd = tokio::spawn(deleter::run(h.ctx.clone()));
        let mut theirs = Node::new();
        theirs.set_state(NodeState::Used);
        theirs.provider = Some(PROVIDER.into());
        theirs.launcher = Some("testhost-prov-main-abc".into());
        h.store().create_node(&mut theirs).await.unwrap();
        h.wait_deleted(&theirs.id).await;
        h.ctx.cancel.cancel();
        tokio::time::timeout(WAIT, jd).await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn dump_shows_tasks_providers_counters_cache_and_session() {
    bounded(async {
        let h = harness().await;
        h.node(NodeState::Ready, &["small"], |_| {}).await;
        for _ in 0..3 {
            Counters::bump(&h.ctx.counters.nodes_deleted);
        }
        Counters::bump(&h.ctx.counters.requests_accepted);
        h.ctx.set_task_state("PoolWorker.prov-main", "idle");
        let text = dump::dump(&h.ctx);
        for want in [
            "nodes_deleted=3",
            "requests_accepted=1",
            "launches_failed=0",
            "PoolWorker.prov-main: idle",
            "prov: cloud sim, pools [main], 1 nodes in ZooKeeper",
            "nodes 1 (ready=1)",
            "state Synced",
            "session Connected",
        ] {
            assert!(text.contains(want), "missing `{want}` in:\n{text}");
        }
        assert!(text.lines().count() > 10);
    })
    .await;
}

#[tokio::test]
async fn stats_leader_losing_its_session_stops_and_campaigns_again() {
    bounded(async {
        let zk = TestZk::shared().await;
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let config = Config::from_yaml_str(&config_yaml(None), "nodepool.yaml").unwrap();
        let intervals = Intervals {
            stats: Duration::from_millis(50),
            ..Intervals::default()
        };
        let (mut rx_a, statsd_a) = StatsRx::bind().await;
        let (mut rx_b, statsd_b) = StatsRx::bind().await;
        let (a, _ta) = context(
            &zk,
            &sim,
            statsd_a,
            config.clone(),
            intervals.clone(),
            false,
        )
        .await;
        let (b, _tb) = context(&zk, &sim, statsd_b, config, intervals, false).await;

        let ja = tokio::spawn(stats_worker::run(a.clone()));
        rx_a.wait_line("nodepool.nodes.ready:0|g").await;
        let jb = tokio::spawn(stats_worker::run(b.clone()));
        let client = b.store.client().clone();
        let contenders = || async {
            nodepool_shared::zk::lock_contenders(&client, paths::STATS_ELECTION)
                .await
                .unwrap()
                .len()
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        while contenders().await < 2 {
            assert!(tokio::time::Instant::now() < deadline, "b never campaigned");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        zk.expire_session(a.store.client()).await;
        // `b` takes over…
        rx_b.wait_line("nodepool.nodes.ready:0|g").await;
        // …and `a` queues again in its new session.
        let deadline = tokio::time::Instant::now() + WAIT;
        while contenders().await < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a never campaigned again"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(a.task_states.lock().unwrap()["StatsWorker"], "campaigning");

        // Only the new leader reports a change.
        rx_a.drain();
        rx_a.lines.clear();
        let mut node = Node::new();
        node.set_state(NodeState::Ready);
        node.provider = Some(PROVIDER.into());
        node.node_type = vec!["small".into()];
        b.store.create_node(&mut node).await.unwrap();
        rx_b.wait_line("nodepool.nodes.ready:1|g").await;
        let ac = a.cache.clone();
        let id = node.id.clone();
        wait_until("a's cache to see the node", || ac.node(&id).is_some()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        rx_a.drain();
        assert!(rx_a.lines.is_empty(), "old leader emitted {:?}", rx_a.lines);

        a.cancel.cancel();
        b.cancel.cancel();
        tokio::time::timeout(WAIT, ja).await.unwrap().unwrap();
        tokio::time::timeout(WAIT, jb).await.unwrap().unwrap();
    })
    .await;
}

/// A pass may hold an older record of a request than the cache: another pool worker
/// locked, fulfilled and unlocked it while the pass awaited. The lock try reads the
/// cache first and creates no contender for a request the cache shows taken or locked
/// (each contender is a create and a delete in ZooKeeper, and an event to every
/// launcher); a request still waiting is locked as before.
#[tokio::test]
async fn no_lock_try_for_a_request_the_cache_shows_taken_or_locked() {
    bounded(async {
        let h = harness().await;
        let ctx = &h.ctx;
        let client = h.store().client().clone();
        let submit = || async {
            let mut r = NodeRequest::new(vec!["small".into()], "zuul-test");
            h.store()
                .create_request(&mut r, "100", false)
                .await
                .unwrap();
            let cache = ctx.cache.clone();
            let id = r.id.clone();
            wait_until("the request in the cache", || cache.request(&id).is_some()).await;
            r
        };
        // The cache already shows the request fulfilled; the pass still has it requested.
        let taken = submit().await;
        let mut done = taken.clone();
        done.state = RequestState::Fulfilled;
        h.store().store_request(&done, None).await.unwrap();
        let cache = ctx.cache.clone();
        wait_until("the cache to show it fulfilled", || {
            cache
                .request(&taken.id)
                .is_some_and(|c| c.request.state == RequestState::Fulfilled)
        })
        .await;
        assert!(matches!(lock_fresh(ctx, "w", &taken).await, Locked::Stale));
        let dir = paths::request_lock(&taken.id);
        assert!(
            client.exists(&dir).await.unwrap().is_none(),
            "no lock dir, hence no contender, for a request the cache shows fulfilled"
        );

        // Someone else holds the lock of a waiting request.
        let held = submit().await;
        let dir = paths::request_lock(&held.id);
        let mut theirs = ZkLock::new(&client, &dir, b"");
        assert!(theirs.try_acquire().await.unwrap());
        wait_until("the cache to show the lock", || {
            cache.request_locked(&held.id)
        })
        .await;
        let changes = || async { client.exists(&dir).await.unwrap().unwrap().cversion };
        let before = changes().await;
        assert!(matches!(lock_fresh(ctx, "w", &held).await, Locked::Busy));
        assert_eq!(
            changes().await,
            before,
            "no contender created on a lock the cache shows held"
        );

        // Once let go, the lock is ours, with the record as read under it.
        theirs.release().await.unwrap();
        wait_until("the cache to show it unlocked", || {
            !cache.request_locked(&held.id)
        })
        .await;
        match lock_fresh(ctx, "w", &held).await {
            Locked::Fresh(mut lock, fresh) => {
                assert_eq!(fresh.id, held.id);
                assert_eq!(fresh.state, RequestState::Requested);
                // The launcher's try lasts as long as the lock: no sibling pool worker
                // tries it, whether or not the cache shows the contender yet.
                assert!(ctx.request_tries.begin(&held.id).is_none());
                lock.release().await.unwrap();
                assert!(ctx.request_tries.is_empty(), "the try ended with the lock");
            }
            _ => panic!("a waiting, unlocked request is locked"),
        }
        // Declined by this pool worker: not tried either.
        let mut declined = held.clone();
        declined.declined_by.push("w".into());
        let (_, stat) = h.store().get_request(&held.id).await.unwrap().unwrap();
        h.store()
            .store_request(&declined, Some(stat.version))
            .await
            .unwrap();
        wait_until("the cache to show it declined", || {
            cache
                .request(&held.id)
                .is_some_and(|c| !c.request.declined_by.is_empty())
        })
        .await;
        let before = changes().await;
        assert!(matches!(lock_fresh(ctx, "w", &held).await, Locked::Stale));
        assert_eq!(
            changes().await,
            before,
            "no contender for a declined request"
        );
    })
    .await;
}
