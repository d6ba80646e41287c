//! The launcher's formerly known gaps, end to end (real ZooKeeper, the OpenStack
//! simulator over HTTP, statsd over UDP, `launcher::daemon::run` in-process):
//! diskimage launch metrics, the unlimited `max_servers` gauge, the server id stored
//! while the launch runs, freeing quota by deleting the oldest unused ready node, the
//! AZ picked from the cloud's list (and re-listed after Nova's 400), node addresses as
//! openstacksdk reads them, and a diskimage node's login facts from the config.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::Launcher;
use nodepool_daemon::launcher::daemon::LauncherOptions;
use nodepool_daemon::launcher::runtime::Intervals;
use nodepool_shared::model::paths;
use nodepool_shared::model::{
    BuildState, ImageBuild, ImageUpload, Node, NodeId, NodeRequest, NodeState, QuotaInformation,
    RequestId, RequestState, UploadState,
};
use nodepool_shared::stats::Statsd;
use nodepool_shared::testing::{bounded, init_logs, wait_for, StatsSink, TestZk, WAIT};
use nodepool_shared::zk::{ZkClient, ZkLock, ZkStore};
use nodepool_tests::sim::{Knobs, SimConfig, SimHandle, Simulator};

const PROVIDER: &str = "sim-provider";

/// The generated config's knobs.
#[derive(Clone, Default)]
struct Shape {
    /// Lines under the pool (8-space indent), e.g. `        max-servers: 2\n`.
    pool_extra: String,
    /// Top-level lines (no indent), e.g. `tenant-resource-limits:` and its entries.
    top_extra: String,
    /// Provider `launch-timeout` (default 3600 s; bounds the wait for ACTIVE).
    launch_timeout: Option<u64>,
    /// Lines under the top-level `dimg` diskimage (4-space indent).
    diskimage_extra: String,
    /// Lines under `small-label` (12-space indent), e.g. `networks:`.
    small_label_extra: String,
    /// Pool `auto-floating-ip` (default false here).
    auto_floating_ip: bool,
    /// More provider entries (2-space indent, `  - name: …`), after the first.
    more_providers: String,
}

/// The launcher config; `connection-port` is the simulator's fake sshd port (the launch
/// scans host keys).
fn config_yaml(zk: &TestZk, shape: &Shape, ssh_port: u16) -> String {
    let (host, port) = zk
        .plain_hosts()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .expect("host:port");
    let lt = shape.launch_timeout.unwrap_or(3600);
    let chroot = zk.chroot();
    let lines = [
        "zookeeper-servers:".to_string(),
        format!("  - host: {host}"),
        format!("    port: {port}"),
        format!("    chroot: {chroot}"),
        format!("{}labels:", shape.top_extra),
        "  - name: small-label".into(),
        "  - name: disk-label".into(),
        "diskimages:".into(),
        "  - name: dimg".into(),
        format!("{}providers:", shape.diskimage_extra),
        format!("  - name: {PROVIDER}"),
        "    cloud: sim".into(),
        "    rate: 0".into(),
        "    boot-timeout: 30".into(),
        format!("    launch-timeout: {lt}"),
        "    launch-retries: 1".into(),
        "    cloud-images:".into(),
        "      - name: cirros".into(),
        "        image-name: cirros-0.6.2".into(),
        "        username: cirros".into(),
        format!("        connection-port: {ssh_port}"),
        "    diskimages:".into(),
        "      - name: dimg".into(),
        format!("        connection-port: {ssh_port}"),
        "    pools:".into(),
        "      - name: main".into(),
        format!("        auto-floating-ip: {}", shape.auto_floating_ip),
        format!("{}        labels:", shape.pool_extra),
        "          - name: small-label".into(),
        "            cloud-image: cirros".into(),
        format!("{}            flavor-name: small", shape.small_label_extra),
        "          - name: disk-label".into(),
        "            diskimage: dimg".into(),
        "            flavor-name: small".into(),
        shape.more_providers.trim_end().to_string(),
    ];
    lines.join("\n") + "\n"
}

struct Env {
    _zk: TestZk,
    sim: SimHandle,
    _dir: tempfile::TempDir,
    config: PathBuf,
    clouds: PathBuf,
    store: ZkStore,
    stats: StatsSink,
}

impl Env {
    async fn new(shape: &Shape, sim_config: SimConfig) -> Env {
        init_logs();
        let zk = TestZk::shared().await;
        let sim = Simulator::start(SimConfig {
            ssh_port: 0,
            ..sim_config
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
            _zk: zk,
            sim,
            _dir: dir,
            config,
            clouds,
            store,
            stats: StatsSink::start(),
        }
    }

    fn options(&self) -> LauncherOptions {
        let mut opts = LauncherOptions::new(self.config.clone());
        opts.webapp = false;
        opts.clouds_file = Some(self.clouds.clone());
        opts.hostname = Some("host-a".to_string());
        opts.statsd = Some(Statsd::udp("127.0.0.1", self.stats.port).expect("statsd"));
        opts.intervals = Intervals {
            config_check: Duration::from_millis(200),
            pool_tick: Duration::from_millis(200),
            ..Intervals::default()
        };
        opts
    }

    fn start_with(&self, opts: LauncherOptions) -> Launcher {
        Launcher::start(opts)
    }

    fn start_launcher(&self) -> Launcher {
        self.start_with(self.options())
    }

    async fn submit(&self, labels: &[&str]) -> RequestId {
        let mut r = NodeRequest::new(labels.iter().map(|s| s.to_string()).collect(), "zuul-test");
        r.tenant_name = Some("tenant-one".into());
        self.store
            .create_request(&mut r, "100", false)
            .await
            .expect("submit request")
    }

    async fn request(&self, id: &RequestId) -> Option<NodeRequest> {
        self.store.get_request(id).await.ok()?.map(|(r, _)| r)
    }

    async fn wait_done(&self, id: &RequestId) -> NodeRequest {
        wait_for(&format!("request {id} done"), || async {
            let r = self.request(id).await?;
            matches!(r.state, RequestState::Fulfilled | RequestState::Failed).then_some(r)
        })
        .await
    }

    async fn node(&self, id: &NodeId) -> Option<Node> {
        self.store.get_node(id).await.ok()?.map(|(n, _)| n)
    }

    async fn nodes(&self) -> Vec<Node> {
        self.store
            .nodes()
            .await
            .expect("list nodes")
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    /// A `ready` build and upload of `dimg` whose cloud image is the simulator's cirros.
    async fn ready_upload(&self) {
        let image_id = self
            .sim
            .admin()
            .images()
            .into_iter()
            .find(|i| i.name.as_deref() == Some("cirros-0.6.2"))
            .expect("cirros image")
            .id;
        let mut build = ImageBuild::new("dimg", Default::default());
        build.set_state(BuildState::Ready);
        let build_id = self.store.create_build(&mut build).await.expect("build");
        let mut upload = ImageUpload::new("dimg", build_id, PROVIDER);
        upload.external_id = Some(image_id);
        upload.external_name = Some("dimg-0000000001".into());
        upload.username = Some("zuul".into());
        upload.set_state(UploadState::Ready);
        self.store.create_upload(&mut upload).await.expect("upload");
    }
}

/// Item 1: a diskimage label's launch sends `nodepool.launch.image.<image>.<result>`
/// (c+ms); a pool without `max-servers` makes `…max_servers` `inf`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diskimage_launch_metrics_and_unlimited_max_servers() {
    bounded(async {
        let env = Env::new(&Shape::default(), SimConfig::default()).await;
        env.ready_upload().await;
        let l = env.start_launcher();
        let id = env.submit(&["disk-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Fulfilled);
        let node = env.node(&req.nodes[0]).await.expect("node");
        assert!(node.image_id.as_deref().unwrap_or("").contains("/dimg/"));
        env.stats
            .wait_line("launch.image counter", |l| {
                l == "nodepool.launch.image.dimg.ready:1|c"
            })
            .await;
        env.stats
            .wait_line("launch.image timer", |l| {
                l.starts_with("nodepool.launch.image.dimg.ready:") && l.ends_with("|ms")
            })
            .await;
        let key = format!("nodepool.provider.{PROVIDER}.max_servers:inf|g");
        env.stats.wait_line(&key, |l| l == key).await;
        l.stop().await;
    })
    .await;
}

/// Item 2: the server id is on the node while it is still `building` (the server never
/// becomes ACTIVE here), so a launcher stopping now leaves a node whose server the next
/// launcher's deleter removes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_id_is_stored_while_building() {
    bounded(async {
        let shape = Shape {
            launch_timeout: Some(120),
            ..Shape::default()
        };
        let sim_config = SimConfig {
            knobs: Knobs {
                hang_all_boots: true,
                ..Knobs::default()
            },
            ..SimConfig::default()
        };
        let env = Env::new(&shape, sim_config).await;
        let l = env.start_launcher();
        let _id = env.submit(&["small-label"]).await;
        let (node, server) = wait_for("building node with a server id", || async {
            let n = env
                .nodes()
                .await
                .into_iter()
                .find(|n| n.state == NodeState::Building && n.external_id.is_some())?;
            let ext = n.external_id.clone()?;
            Some((n, ext))
        })
        .await;
        let s = env
            .sim
            .admin()
            .server(&server)
            .expect("server exists in the cloud");
        assert_eq!(s.name, format!("np{}", node.id.as_str()));
        // The launcher goes away mid-launch; the next one's deleter removes the
        // abandoned node and, thanks to the stored id, its server.
        l.stop().await;
        let l = env.start_launcher();
        let admin = env.sim.admin();
        wait_for("abandoned server deleted", || {
            let gone = admin.server(&server).is_none();
            async move { gone.then_some(()) }
        })
        .await;
        wait_for("abandoned node removed", || async {
            env.node(&node.id).await.is_none().then_some(())
        })
        .await;
        l.stop().await;
    })
    .await;
}

/// A request whose lock someone else holds is not tried while the cache shows the
/// contender (a try would fail; with many pool workers their contender creates and
/// deletes, and the events of those, slowed the holder's own writes): its lock dir sees
/// no contender of ours. Once the holder lets go, the request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_lock_is_not_raced() {
    bounded(async {
        let env = Env::new(&Shape::default(), SimConfig::default()).await;
        let held = env.submit(&["small-label"]).await;
        let dir = paths::request_lock(&held);
        let mut lock = ZkLock::new(env.store.client(), &dir, b"");
        assert!(lock.try_acquire().await.expect("lock"), "held by the test");
        let children_changes = || async {
            let client: &ZkClient = env.store.client();
            client
                .exists(&dir)
                .await
                .expect("stat")
                .expect("lock dir")
                .cversion
        };
        let before = children_changes().await;
        // Submitted after `held`, so a pass that serves it has looked at `held` first.
        let other = env.submit(&["small-label"]).await;
        let l = env.start_launcher();
        assert_eq!(env.wait_done(&other).await.state, RequestState::Fulfilled);
        // A later pass (another request's events) does not try it either.
        let third = env.submit(&["small-label"]).await;
        assert_eq!(env.wait_done(&third).await.state, RequestState::Fulfilled);
        assert_eq!(
            children_changes().await,
            before,
            "no pool worker created a contender on a lock the cache shows held"
        );
        assert_eq!(
            env.request(&held).await.expect("held").state,
            RequestState::Requested
        );
        lock.release().await.expect("unlock");
        assert_eq!(env.wait_done(&held).await.state, RequestState::Fulfilled);
        l.stop().await;
    })
    .await;
}

/// A new request's lock is tried by one pool worker of a launcher at a time: with eight
/// pools serving its label, all woken by the request's event before anyone holds its
/// lock, the lock dir sees only the winner's contender (created, then deleted at the
/// unlock), not one contender create and delete per pool worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_request_lock_is_tried_once_per_launcher() {
    bounded(async {
        let more_providers: String = (2..=8)
            .map(|i| {
                format!(
                    "  - name: sim-provider{i}\n    cloud: sim\n    rate: 0\n    \
                     boot-timeout: 30\n    cloud-images:\n      - name: cirros\n        \
                     image-name: cirros-0.6.2\n        username: cirros\n        \
                     connection-port: {{ssh}}\n    pools:\n      - name: main\n        \
                     labels:\n          - name: small-label\n            \
                     cloud-image: cirros\n            flavor-name: small\n"
                )
            })
            .collect();
        let shape = Shape {
            more_providers,
            ..Shape::default()
        };
        let env = Env::new(&shape, SimConfig::default()).await;
        let text = std::fs::read_to_string(&env.config).expect("config");
        let text = text.replace("{ssh}", &env.sim.ssh_port().to_string());
        std::fs::write(&env.config, text).expect("config");
        let l = env.start_launcher();
        // The first request also creates `/nodepool/requests-lock` and lets every pool
        // worker register.
        let first = env.submit(&["small-label"]).await;
        assert_eq!(env.wait_done(&first).await.state, RequestState::Fulfilled);
        let client: &ZkClient = env.store.client();
        for _ in 0..3 {
            let id = env.submit(&["small-label"]).await;
            assert_eq!(env.wait_done(&id).await.state, RequestState::Fulfilled);
            let dir = paths::request_lock(&id);
            // Unlocked after `fulfilled`: wait for the winner's contender to go.
            let stat = wait_for("the request unlocked", || async {
                let children = client.get_children(&dir).await.ok()??;
                if !children.is_empty() {
                    return None;
                }
                client.exists(&dir).await.ok()?
            })
            .await;
            assert_eq!(
                stat.cversion, 2,
                "request {id}: one contender created and deleted, none by the other pool workers"
            );
        }
        l.stop().await;
    })
    .await;
}

/// The lock of a new request and that of its new node are each taken in one transaction:
/// the lock dir and the contender are created together (one round trip instead of
/// `ensure_path`, `create` and a listing), with the znodes of kazoo's recipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_request_and_node_locks_take_one_transaction() {
    bounded(async {
        let sim_config = SimConfig {
            knobs: Knobs {
                boot_delay_ms: 3000,
                ..Knobs::default()
            },
            ..SimConfig::default()
        };
        let env = Env::new(&Shape::default(), sim_config).await;
        let l = env.start_launcher();
        // The first lock ever also creates `/nodepool/requests-lock` (the recipe's way).
        let first = env.submit(&["small-label"]).await;
        assert_eq!(env.wait_done(&first).await.state, RequestState::Fulfilled);
        let id = env.submit(&["small-label"]).await;
        let client: &ZkClient = env.store.client();
        // While the server boots, the handler holds the request's lock and the node's.
        let one_transaction = |dir: String| async move {
            let dir_stat = client.exists(&dir).await.ok()??;
            let children = client.get_children(&dir).await.ok()??;
            let [child] = children.as_slice() else {
                return None;
            };
            let child_stat = client.exists(&format!("{dir}/{child}")).await.ok()??;
            assert!(child.contains("__lock__"), "{child}");
            assert_ne!(child_stat.ephemeral_owner, 0, "{child} is ephemeral");
            Some((dir_stat.czxid, child_stat.czxid))
        };
        let (dir, contender) = wait_for("the request lock held", || {
            one_transaction(paths::request_lock(&id))
        })
        .await;
        assert_eq!(
            dir, contender,
            "request lock dir and contender in one transaction"
        );
        let node = wait_for("the request's node", || async {
            let nodes = env.store.nodes().await.ok()?;
            nodes
                .into_iter()
                .find(|(n, _)| n.allocated_to.as_ref() == Some(&id))
                .map(|(n, _)| n.id)
        })
        .await;
        let (dir, contender) = wait_for("the node lock held", || {
            one_transaction(paths::node_lock(&node))
        })
        .await;
        assert_eq!(
            dir, contender,
            "node lock dir and contender in one transaction"
        );
        assert_eq!(env.wait_done(&id).await.state, RequestState::Fulfilled);
        l.stop().await;
    })
    .await;
}

/// Item 3: with the pool full of an unused ready node, a request for another label makes
/// the handler delete that (oldest unused) node before pausing, then fulfils.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pool_deletes_oldest_unused_ready_node() {
    bounded(async {
        let shape = Shape {
            pool_extra: "        max-servers: 1\n".into(),
            ..Shape::default()
        };
        let env = Env::new(&shape, SimConfig::default()).await;
        // An unused ready node of this pool (no server: the deleter just drops it).
        let mut old = Node::new();
        old.node_type = vec!["old-label".into()];
        old.provider = Some(PROVIDER.into());
        old.pool = Some("main".into());
        old.resources =
            Some(QuotaInformation::new(Some(1.0), Some(1.0), Some(512.0), 0.0).to_resources());
        old.set_state(NodeState::Ready);
        let old_id = env.store.create_node(&mut old).await.expect("old node");
        let l = env.start_launcher();
        let id = env.submit(&["small-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Fulfilled);
        assert!(env.node(&old_id).await.is_none(), "old node deleted");
        assert_ne!(req.nodes[0], old_id);
        l.stop().await;
    })
    .await;
}

/// Item 4: without pool `availability-zones` the AZ comes from the cloud's list: it is
/// on the node from the start and in the provider+AZ launch metric, even for a launch
/// that fails before the server reports its zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn az_is_picked_from_the_cloud_list() {
    bounded(async {
        let zones = ["az-a".to_string(), "az-b".to_string()];
        let sim_config = SimConfig {
            availability_zones: zones.to_vec(),
            knobs: Knobs {
                fail_next_boots: 1,
                ..Knobs::default()
            },
            ..SimConfig::default()
        };
        let env = Env::new(&Shape::default(), sim_config).await;
        let l = env.start_launcher();
        // First request: its only launch attempt fails (launch-retries 1).
        let id = env.submit(&["small-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Failed);
        env.stats
            .wait_line("provider+az error metric", |l| {
                zones.iter().any(|z| {
                    l == format!("nodepool.launch.provider.{PROVIDER}.{z}.error.status:1|c")
                })
            })
            .await;
        // Second request: fulfilled in one of the cloud's zones, metric with that zone.
        let id = env.submit(&["small-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Fulfilled);
        let az = env.node(&req.nodes[0]).await.expect("node").az.expect("az");
        assert!(zones.contains(&az), "{az} in {zones:?}");
        let key = format!("nodepool.launch.provider.{PROVIDER}.{az}.ready:1|c");
        env.stats.wait_line(&key, |l| l == key).await;
        l.stop().await;
    })
    .await;
}

/// The cloud password of the web API test: unique, so that finding it anywhere means
/// it leaked.
const WEB_TEST_PASSWORD: &str = "pw-3c9e1f7a-never-shown";

/// Item 5: the real daemon with its web API on a free loopback port and ZooKeeper over
/// TLS (from `zookeeper-tls` in the config): `/ready` answers 503 until the first pass
/// and then 200; `/node-list` shows the fulfilled request's node. Security: the cloud
/// password appears in no web API answer (text or JSON) and in no znode under the
/// chroot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_api_and_tls_zookeeper_through_the_daemon() {
    bounded(async {
        let env = Env::new(
            &Shape::default(),
            SimConfig {
                credentials: nodepool_tests::sim::Credentials {
                    password: WEB_TEST_PASSWORD.into(),
                    ..Default::default()
                },
                ..SimConfig::default()
            },
        )
        .await;
        let tls = env._zk.tls_settings().expect("test ZooKeeper has a TLS port");
        let files = tls.tls.clone().expect("tls files");
        let (host, port) = tls.hosts[0].clone();
        let chroot = tls.chroot.clone().expect("chroot");
        let plain = config_yaml(&env._zk, &Shape::default(), env.sim.ssh_port());
        let rest = plain
            .split_once("labels:\n")
            .map(|(_, r)| r)
            .expect("labels section");
        let config = format!(
            "webapp:\n  port: 0\n  listen_address: 127.0.0.1\nzookeeper-servers:\n  - host: {host}\n    port: {port}\n    chroot: {chroot}\nzookeeper-tls:\n  ca: {}\n  cert: {}\n  key: {}\nlabels:\n{rest}",
            files.ca.display(),
            files.cert.display(),
            files.key.display(),
        );
        std::fs::write(&env.config, config).expect("config");
        let mut opts = env.options();
        opts.webapp = true;
        let bound = Arc::new(Mutex::new(None));
        opts.web_bound = Some(bound.clone());
        let l = env.start_with(opts);
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
        // Every answer before the first 200 is a 503; then it stays 200. (The first pass
        // is quick: whether a 503 is seen at all depends on timing, about half the runs.)
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while seen.last() != Some(&200) {
            assert!(tokio::time::Instant::now() < deadline, "/ready: {seen:?}");
            if let Ok(r) = http.get(format!("http://{addr}/ready")).send().await {
                seen.push(r.status().as_u16());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (last, before) = seen.split_last().expect("answers");
        assert_eq!(*last, 200);
        assert!(before.iter().all(|s| *s == 503), "{seen:?}");
        let id = env.submit(&["small-label"]).await;
        let req = env.wait_done(&id).await;
        assert_eq!(req.state, RequestState::Fulfilled);
        let node_id = req.nodes[0].as_str().to_string();
        let body = wait_for("node in /node-list", || async {
            let r = http
                .get(format!("http://{addr}/node-list"))
                .header("Accept", "application/json")
                .send()
                .await
                .ok()?;
            let body: serde_json::Value = r.json().await.ok()?;
            let found = body
                .as_array()?
                .iter()
                .any(|n| n["id"].as_str() == Some(node_id.as_str()));
            found.then_some(body)
        })
        .await;
        let node = body
            .as_array()
            .and_then(|a| a.iter().find(|n| n["id"].as_str() == Some(node_id.as_str())))
            .expect("node row");
        assert_eq!(node["state"].as_str(), Some("ready"), "{node}");
        let r = http
            .get(format!("http://{addr}/ready"))
            .send()
            .await
            .expect("ready");
        assert_eq!(r.status().as_u16(), 200);
        // The password is nowhere in what the web API shows…
        for path in [
            "/node-list",
            "/request-list",
            "/image-list",
            "/dib-image-list",
            "/label-list",
        ] {
            for accept in ["application/json", "text/plain"] {
                let body = http
                    .get(format!("http://{addr}{path}"))
                    .header("Accept", accept)
                    .send()
                    .await
                    .expect("web API")
                    .text()
                    .await
                    .expect("body");
                assert!(
                    !body.contains(WEB_TEST_PASSWORD),
                    "{path} ({accept}) shows the cloud password"
                );
            }
        }
        // …nor in any znode the launcher wrote.
        let client = env.store.client().clone();
        let mut stack = vec!["/".to_string()];
        let mut znodes = 0;
        while let Some(path) = stack.pop() {
            if let Ok(Some((data, _))) = client.get(&path).await {
                znodes += 1;
                assert!(
                    !String::from_utf8_lossy(&data).contains(WEB_TEST_PASSWORD),
                    "znode {path} holds the cloud password"
                );
            }
            for child in client.get_children(&path).await.ok().flatten().unwrap_or_default() {
                stack.push(nodepool_shared::zk::client::join(&path, &child));
            }
        }
        assert!(znodes > 5, "walked {znodes} znodes");
        l.stop().await;
    })
    .await;
}

/// Item 6: a tenant at its `tenant-resource-limits` has its next request deferred (left
/// `requested`, never declined) until one of its nodes is gone; the limits are reported
/// as `nodepool.tenant_limits.<tenant>.<limit>` (unset ones as `inf`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_limits_defer_requests() {
    bounded(async {
        let shape = Shape {
            top_extra: "tenant-resource-limits:\n  - tenant-name: tenant-one\n    max-servers: 1\n"
                .into(),
            ..Shape::default()
        };
        let env = Env::new(&shape, SimConfig::default()).await;
        let l = env.start_launcher();
        let first = env.wait_done(&env.submit(&["small-label"]).await).await;
        assert_eq!(first.state, RequestState::Fulfilled);
        let second = env.submit(&["small-label"]).await;
        // Absence of progress can only be observed over some time: several pool passes
        // (pool_tick is 200 ms) must leave the request untouched.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let r = env.request(&second).await.expect("second request");
            assert_eq!(r.state, RequestState::Requested, "deferred");
            assert!(
                r.declined_by.is_empty(),
                "never declined: {:?}",
                r.declined_by
            );
        }
        // Free the tenant's node: the deleter removes it, then the request goes through.
        let (mut node, _) = env
            .store
            .get_node(&first.nodes[0])
            .await
            .expect("read")
            .expect("node");
        node.set_state(NodeState::Deleting);
        env.store.store_node(&node, None).await.expect("store");
        let r = env.wait_done(&second).await;
        assert_eq!(r.state, RequestState::Fulfilled);
        let key = "nodepool.tenant_limits.tenant-one.instances:1|g";
        env.stats.wait_line(key, |l| l == key).await;
        let key = "nodepool.tenant_limits.tenant-one.cores:inf|g";
        env.stats.wait_line(key, |l| l == key).await;
        l.stop().await;
    })
    .await;
}

/// Item 6, burst: of two requests of a tenant limited to one server submitted together,
/// one is fulfilled and the other stays deferred (the accepted one counts with its need
/// before its node exists).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_limits_hold_for_a_burst() {
    bounded(async {
        let shape = Shape {
            top_extra: "tenant-resource-limits:\n  - tenant-name: tenant-one\n    max-servers: 1\n"
                .into(),
            ..Shape::default()
        };
        let env = Env::new(&shape, SimConfig::default()).await;
        let a = env.submit(&["small-label"]).await;
        let b = env.submit(&["small-label"]).await;
        let l = env.start_launcher();
        let done = wait_for("one request fulfilled", || async {
            for id in [&a, &b] {
                let r = env.request(id).await?;
                if r.state == RequestState::Fulfilled {
                    return Some(id.clone());
                }
            }
            None
        })
        .await;
        let other = if done == a { &b } else { &a };
        // Several pool passes (pool_tick is 200 ms) must leave the other one untouched.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let r = env.request(other).await.expect("other request");
            assert_eq!(r.state, RequestState::Requested, "deferred: {r:?}");
        }
        assert_eq!(env.sim.admin().servers().len(), 1);
        l.stop().await;
    })
    .await;
}

/// A launcher whose pool serves tenant `tenant-one` under `max-servers: 1`: its one node
/// is taken by a fulfilled request, and `n` more requests of the tenant wait (deferred).
struct TenantBacklog {
    env: Env,
    launcher: Launcher,
    /// The fulfilled request holding the tenant's node.
    first: NodeRequest,
    /// The waiting requests.
    ids: Vec<RequestId>,
    /// The pool worker's component id (in its log lines).
    worker: String,
}

impl TenantBacklog {
    /// Starts it with the launcher intervals `tune` sets (log capture, when a test reads
    /// the launcher's lines, must start before this).
    async fn start(n: usize, tune: impl FnOnce(&mut Intervals)) -> TenantBacklog {
        let shape = Shape {
            top_extra: "tenant-resource-limits:\n  - tenant-name: tenant-one\n    max-servers: 1\n"
                .into(),
            ..Shape::default()
        };
        let env = Env::new(&shape, SimConfig::default()).await;
        let mut opts = env.options();
        tune(&mut opts.intervals);
        let launcher = env.start_with(opts);
        let first = env.wait_done(&env.submit(&["small-label"]).await).await;
        assert_eq!(first.state, RequestState::Fulfilled);
        let worker = env
            .store
            .components(nodepool_shared::model::ComponentKind::Pool)
            .await
            .expect("pool components")
            .into_iter()
            .find_map(|c| c.component.pool?.id)
            .expect("pool worker id");
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(env.submit(&["small-label"]).await);
        }
        TenantBacklog {
            env,
            launcher,
            first,
            ids,
            worker,
        }
    }

    /// Whether `log` has the pool worker deferring request `id`.
    fn deferred_in(&self, log: &str, id: &RequestId) -> bool {
        log.lines().any(|l| {
            l.contains("deferring request")
                && l.contains(&self.worker)
                && l.contains(&format!("request={id} "))
        })
    }

    /// Waits until `logs` show every waiting request deferred once.
    async fn wait_all_deferred(&self, logs: &nodepool_shared::testing::LogCapture) {
        wait_for("the backlog deferred", || async {
            let text = logs.text();
            self.ids
                .iter()
                .all(|id| self.deferred_in(&text, id))
                .then_some(())
        })
        .await;
    }

    /// The waiting requests the pool worker deferred (again) in `log`.
    fn deferred_again<'a>(&'a self, log: &str) -> Vec<&'a RequestId> {
        self.ids
            .iter()
            .filter(|id| self.deferred_in(log, id))
            .collect()
    }

    /// Asserts that every waiting request is still `requested` and never declined.
    async fn assert_all_waiting(&self) {
        for id in &self.ids {
            let r = self.env.request(id).await.expect("backlog request");
            assert_eq!(r.state, RequestState::Requested, "deferred: {r:?}");
            assert!(r.declined_by.is_empty(), "never declined: {r:?}");
        }
    }
}

/// The `looked_at` of every "assignment pass" of pool worker `worker` in `log`.
fn passes_of(log: &str, worker: &str) -> Vec<usize> {
    log.lines()
        .filter(|l| l.contains("assignment pass") && l.contains(worker))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("looked_at="))
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

/// Issue #17 (the pool pass at scale): with a backlog of requests deferred by their
/// tenant's limits, a new request of another tenant is taken by the pass its cache
/// event wakes (the pool tick is an hour here) and no pass looks at the backlog again:
/// each request waits with its verdict until something it depends on changes. Freeing
/// the tenant's node then releases the backlog (one more request fits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_passes_look_only_at_changed_requests() {
    const BACKLOG: usize = 20;
    bounded(async {
        let logs = nodepool_shared::testing::LogCapture::start();
        let b = TenantBacklog::start(BACKLOG, |i| {
            i.pool_tick = Duration::from_secs(3600);
            i.pool_recheck = Duration::from_secs(3600);
        })
        .await;
        let (env, worker) = (&b.env, &b.worker);
        // Every backlog request deferred once.
        b.wait_all_deferred(&logs).await;
        let mark = logs.text().len();
        let mut other = NodeRequest::new(vec!["small-label".into()], "zuul-test");
        other.tenant_name = Some("tenant-two".into());
        let other = env
            .store
            .create_request(&mut other, "100", false)
            .await
            .expect("submit");
        assert_eq!(env.wait_done(&other).await.state, RequestState::Fulfilled);
        let text = logs.text();
        let after = passes_of(&text[mark..], worker);
        assert!(
            !after.is_empty(),
            "no pass logged for {worker} after the backlog was deferred ({} bytes logged since, {} before; {other}): {:?}",
            text.len() - mark,
            mark,
            text[mark..]
                .lines()
                .filter(|l| l.contains(worker.as_str()) || l.contains(other.as_str()))
                .take(40)
                .collect::<Vec<_>>()
        );
        assert!(
            after.iter().all(|n| *n <= 2),
            "passes after the backlog was deferred looked at {after:?} requests"
        );
        let again = b.deferred_again(&text[mark..]);
        assert!(
            again.is_empty(),
            "deferred again though nothing changed: {again:?}"
        );
        b.assert_all_waiting().await;
        // The tenant's node goes: its usage changes, and one backlog request fits.
        let (mut node, _) = env
            .store
            .get_node(&b.first.nodes[0])
            .await
            .expect("read")
            .expect("node");
        node.set_state(NodeState::Deleting);
        env.store.store_node(&node, None).await.expect("store");
        wait_for("one backlog request fulfilled", || async {
            for id in &b.ids {
                if env.request(id).await?.state == RequestState::Fulfilled {
                    return Some(());
                }
            }
            None
        })
        .await;
        b.launcher.stop().await;
    })
    .await;
}

/// Issue #17 (the pool recheck at scale): every `pool_recheck` a pool worker runs the
/// label checks of its deferred requests again (what can change in the cloud without a
/// cache event: images, limits, flavors), once per label list, instead of looking at
/// every waiting request: with nothing changed in the cloud no request is looked at or
/// deferred again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_recheck_runs_the_label_checks_once_per_label_list() {
    const BACKLOG: usize = 10;
    bounded(async {
        let logs = nodepool_shared::testing::LogCapture::start();
        let b = TenantBacklog::start(BACKLOG, |i| {
            i.pool_tick = Duration::from_millis(200);
            i.pool_recheck = Duration::from_millis(500);
        })
        .await;
        let worker = &b.worker;
        b.wait_all_deferred(&logs).await;
        let mark = logs.text().len();
        let rechecks = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.contains("label checks rechecked") && l.contains(worker.as_str()))
                .map(str::to_string)
                .collect()
        };
        // Three rechecks, or (the old way) a pass over the whole backlog.
        wait_for("three rechecks of the label checks", || async {
            let since = &logs.text()[mark..];
            let full = passes_of(since, worker).iter().any(|n| *n >= BACKLOG);
            (rechecks(since).len() >= 3 || full).then_some(())
        })
        .await;
        let text = logs.text();
        let since = &text[mark..];
        for line in rechecks(since) {
            assert!(
                line.contains("lists=1 ") && line.contains("moved=0 "),
                "one label list checked, nothing changed: {line}"
            );
        }
        let passes = passes_of(since, worker);
        assert!(
            passes.iter().all(|n| *n < BACKLOG),
            "the rechecks looked at the backlog again: {passes:?}"
        );
        let again = b.deferred_again(since);
        assert!(again.is_empty(), "deferred again: {again:?}");
        b.assert_all_waiting().await;
        b.launcher.stop().await;
    })
    .await;
}

/// The pool recheck still finds what changes in the cloud alone: a backlog deferred by
/// its tenant's limits is declined (and fails, this pool being the only one) once the
/// cloud's limits shrink below what its label needs, with no ZooKeeper event about it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_recheck_declines_deferred_requests_the_cloud_can_no_longer_fit() {
    const BACKLOG: usize = 3;
    bounded(async {
        let b = TenantBacklog::start(BACKLOG, |i| {
            i.pool_tick = Duration::from_millis(200);
            i.pool_recheck = Duration::from_millis(500);
            i.provider_quota = Duration::from_millis(300);
        })
        .await;
        let env = &b.env;
        // Deferred: still `requested` a few rechecks later.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        b.assert_all_waiting().await;
        // The small flavor needs 2 cores; the cloud now allows 1.
        env.sim.admin().set_quota(nodepool_tests::sim::Quota {
            cores: 1,
            ..nodepool_tests::sim::Quota::default()
        });
        for id in &b.ids {
            let r = env.wait_done(id).await;
            assert_eq!(r.state, RequestState::Failed, "declined: {r:?}");
            assert_eq!(r.declined_by.len(), 1, "{r:?}");
        }
        b.launcher.stop().await;
    })
    .await;
}

/// Writes `text` to `path` through a rename, so a reload never reads half a file.
fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

/// Launcher component names registered on the ZooKeeper `store` talks to.
async fn launchers(store: &ZkStore) -> Vec<String> {
    store
        .components(nodepool_shared::model::ComponentKind::Launcher)
        .await
        .map(|v| v.into_iter().map(|c| c.component.hostname).collect())
        .unwrap_or_default()
}

/// A reload that points `zookeeper-servers` at another ensemble (a second real
/// ZooKeeper) moves the running launcher there: its component record leaves the old
/// ensemble and appears on the new one, whose requests it then fulfils.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_servers_change_moves_the_launcher() {
    bounded(async {
        let env = Env::new(&Shape::default(), SimConfig::default()).await;
        let l = env.start_launcher();
        wait_for("launcher registered", || async {
            (launchers(&env.store).await == ["host-a"]).then_some(())
        })
        .await;
        let other = TestZk::dedicated().await;
        let there = ZkStore::new(other.client().await);
        replace_file(
            &env.config,
            &config_yaml(&other, &Shape::default(), env.sim.ssh_port()),
        );
        wait_for("launcher on the new ensemble only", || async {
            let moved =
                launchers(&there).await == ["host-a"] && launchers(&env.store).await.is_empty();
            moved.then_some(())
        })
        .await;
        let mut r = NodeRequest::new(vec!["small-label".into()], "zuul-test");
        let id = there
            .create_request(&mut r, "100", false)
            .await
            .expect("submit");
        let req = wait_for("request on the new ensemble done", || async {
            let (r, _) = there.get_request(&id).await.ok()??;
            matches!(r.state, RequestState::Fulfilled | RequestState::Failed).then_some(r)
        })
        .await;
        assert_eq!(req.state, RequestState::Fulfilled);
        l.stop().await;
        assert!(launchers(&there).await.is_empty(), "unregistered at stop");
    })
    .await;
}

/// A `chroot` that does not exist yet is created by the launcher's first write (its
/// component record), as kazoo does for Python Nodepool; the launcher then works there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launcher_creates_a_missing_chroot_like_kazoo() {
    bounded(async {
        let env = Env::new(&Shape::default(), SimConfig::default()).await;
        let missing = format!("{}/not-yet", env._zk.chroot());
        let text = config_yaml(&env._zk, &Shape::default(), env.sim.ssh_port()).replace(
            &format!("chroot: {}\n", env._zk.chroot()),
            &format!("chroot: {missing}\n"),
        );
        replace_file(&env.config, &text);
        let there = ZkStore::new(
            nodepool_shared::zk::ZkClient::connect(
                env._zk.settings().with_chroot(Some(missing.clone())),
            )
            .await
            .expect("connect"),
        );
        let l = env.start_launcher();
        wait_for("launcher registered under the new chroot", || async {
            (launchers(&there).await == ["host-a"]).then_some(())
        })
        .await;
        let mut r = NodeRequest::new(vec!["small-label".into()], "zuul-test");
        let id = there
            .create_request(&mut r, "100", false)
            .await
            .expect("submit");
        let req = wait_for("request done", || async {
            let (r, _) = there.get_request(&id).await.ok()??;
            matches!(r.state, RequestState::Fulfilled | RequestState::Failed).then_some(r)
        })
        .await;
        assert_eq!(req.state, RequestState::Fulfilled);
        l.stop().await;
    })
    .await;
}

/// Every launcher sends Nodepool's local ZooKeeper gauges over statsd:
/// `nodepool.launcher.<hostname>.zk.client.connection_queue` and
/// `…zk.{node,request,image}_cache.{event,playback}_queue`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launcher_sends_zk_queue_gauges() {
    bounded(async {
        let env = Env::new(&Shape::default(), SimConfig::default()).await;
        let l = env.start_launcher();
        let mut names = vec!["nodepool.launcher.host-a.zk.client.connection_queue:".to_string()];
        for cache in ["node", "request", "image"] {
            for queue in ["event", "playback"] {
                names.push(format!(
                    "nodepool.launcher.host-a.zk.{cache}_cache.{queue}_queue:"
                ));
            }
        }
        for name in &names {
            env.stats
                .wait_line(name, |l| {
                    l.strip_prefix(name.as_str())
                        .and_then(|v| v.strip_suffix("|g"))
                        .is_some_and(|v| v.parse::<u64>().is_ok())
                })
                .await;
        }
        l.stop().await;
    })
    .await;
}

/// Nodepool's `test_az_change_recover`: the cloud's zones change under a running
/// launcher. The next request fails (its launch asks for a zone from the cached list,
/// which Nova refuses with 400), and that 400 makes the provider forget its cached zones
/// (and flavors, images, networks), so the request after it lists them again and is
/// fulfilled in one of the new zones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_az_change_recover() {
    bounded(async {
        let sim_config = SimConfig {
            availability_zones: vec!["az1".into(), "az2".into()],
            ..SimConfig::default()
        };
        let env = Env::new(&Shape::default(), sim_config).await;
        let l = env.start_launcher();
        let req = env.wait_done(&env.submit(&["small-label"]).await).await;
        assert_eq!(req.state, RequestState::Fulfilled);
        // Now change the zones in the cloud.
        let new_zones = vec!["new-az1".to_string(), "new-az2".to_string()];
        env.sim
            .admin()
            .set_availability_zones(&new_zones)
            .expect("zones");
        // This one fails: the cached zones are not available any more.
        let req2 = env.wait_done(&env.submit(&["small-label"]).await).await;
        assert_eq!(req2.state, RequestState::Failed);
        // This one recovers from the stale zone cache.
        let req3 = env.wait_done(&env.submit(&["small-label"]).await).await;
        assert_eq!(req3.state, RequestState::Fulfilled);
        let az = env.node(&req3.nodes[0]).await.expect("node").az;
        assert!(
            az.as_ref().is_some_and(|z| new_zones.contains(z)),
            "{az:?} in {new_zones:?}"
        );
        l.stop().await;
    })
    .await;
}

/// `interface_ip` as openstacksdk picks it on this host: the public IPv6 address when
/// the host has IPv6 (other than loopback and link-local), else the public IPv4 one.
fn expected_interface(v4: &str, v6: &str) -> String {
    if nodepool_shared::cloud::addresses::local_host_has_ipv6() && !v6.is_empty() {
        v6.to_string()
    } else {
        v4.to_string()
    }
}

/// A node on the dual-stack provider network: its public IPv4 and IPv6 addresses (the
/// IPv6 one is the IPv4-mapped twin), no private one (so Nodepool stores the public
/// IPv4 there too), and the interface IP openstacksdk prefers.
fn assert_dual_stack(n: &Node) {
    let v4 = n.public_ipv4.clone().unwrap_or_default();
    assert!(v4.starts_with("127.30."), "{n:?}");
    assert_eq!(
        n.public_ipv6.as_deref(),
        Some(format!("::ffff:{v4}").as_str())
    );
    assert_eq!(n.private_ipv4.as_deref(), Some(v4.as_str()));
    assert_eq!(
        n.interface_ip,
        Some(expected_interface(
            &v4,
            n.public_ipv6.as_deref().unwrap_or("")
        ))
    );
    assert!(n.host_id.as_deref().is_some_and(|h| !h.is_empty()));
    assert_eq!(n.host_keys.len(), 1, "scanned on the interface IP");
}

/// A node on the private network behind a floating IP: no IPv6 (`""`, as Nodepool
/// stores it), the floating address public and the interface IP.
fn assert_floating_v4(n: &Node) {
    let v4 = n.public_ipv4.clone().unwrap_or_default();
    assert!(v4.starts_with("127.24."), "{n:?}");
    assert_eq!(n.public_ipv6.as_deref(), Some(""));
    assert!(n
        .private_ipv4
        .as_deref()
        .is_some_and(|a| a.starts_with("127.10.")));
    assert_eq!(n.interface_ip.as_deref(), Some(v4.as_str()));
    assert_eq!(n.host_keys.len(), 1, "scanned on the floating IP");
}

/// Nodepool's `test_node_ipv6`: one provider's servers have an IPv6 address, the other's
/// have none; both kinds of node get their addresses right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_node_ipv6() {
    bounded(async {
        let shape = Shape {
            pool_extra: "        networks:\n          - provider\n".into(),
            more_providers: "  - name: sim-provider2\n    cloud: sim\n    rate: 0\n    boot-timeout: 30\n    \
                 cloud-images:\n      - name: cirros\n        image-name: cirros-0.6.2\n        \
                 connection-port: {ssh}\n    pools:\n      - name: main\n        \
                 networks:\n          - private\n        labels:\n          - name: label2\n            \
                 cloud-image: cirros\n            flavor-name: small\n"
                .into(),
            ..Shape::default()
        };
        let env = Env::new(
            &shape,
            SimConfig {
                ipv6: true,
                ..SimConfig::default()
            },
        )
        .await;
        // The second provider's connection port and label.
        let text = std::fs::read_to_string(&env.config).expect("config");
        let text = text
            .replace("{ssh}", &env.sim.ssh_port().to_string())
            .replace(
                "labels:\n  - name: small-label\n",
                "labels:\n  - name: small-label\n  - name: label2\n",
            );
        std::fs::write(&env.config, text).expect("config");
        let l = env.start_launcher();
        let r1 = env.wait_done(&env.submit(&["small-label"]).await).await;
        let r2 = env.wait_done(&env.submit(&["label2"]).await).await;
        assert_eq!((r1.state, r2.state), (RequestState::Fulfilled, RequestState::Fulfilled));
        let n1 = env.node(&r1.nodes[0]).await.expect("node 1");
        let n2 = env.node(&r2.nodes[0]).await.expect("node 2");
        // IPv6 address available.
        assert_eq!(n1.provider.as_deref(), Some(PROVIDER));
        assert_dual_stack(&n1);
        // IPv6 address unavailable.
        assert_eq!(n2.provider.as_deref(), Some("sim-provider2"));
        assert_floating_v4(&n2);
        l.stop().await;
    })
    .await;
}

/// Nodepool's `test_node_net_name`: a label on the pool's networks (private, behind a
/// floating IP) and a label with networks of its own (the dual-stack provider network).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_node_net_name() {
    bounded(async {
        let shape = Shape {
            pool_extra: "        networks:\n          - private\n".into(),
            auto_floating_ip: true,
            small_label_extra: "            networks:\n              - provider\n".into(),
            ..Shape::default()
        };
        let env = Env::new(
            &shape,
            SimConfig {
                ipv6: true,
                ..SimConfig::default()
            },
        )
        .await;
        env.ready_upload().await;
        let l = env.start_launcher();
        let r1 = env.wait_done(&env.submit(&["disk-label"]).await).await;
        let r2 = env.wait_done(&env.submit(&["small-label"]).await).await;
        assert_eq!(
            (r1.state, r2.state),
            (RequestState::Fulfilled, RequestState::Fulfilled)
        );
        // IPv6 address unavailable.
        assert_floating_v4(&env.node(&r1.nodes[0]).await.expect("node 1"));
        // IPv6 address available.
        assert_dual_stack(&env.node(&r2.nodes[0]).await.expect("node 2"));
        l.stop().await;
    })
    .await;
}

/// A node on the provider network only (no private address): `private_ipv4` falls back
/// to the public IPv4 address, as Nodepool does for OpenStack nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_ipv4_falls_back_to_the_public_address() {
    bounded(async {
        let env = Env::new(&Shape::default(), SimConfig::default()).await;
        let l = env.start_launcher();
        let r = env.wait_done(&env.submit(&["small-label"]).await).await;
        assert_eq!(r.state, RequestState::Fulfilled);
        let n = env.node(&r.nodes[0]).await.expect("node");
        let v4 = n.public_ipv4.clone().unwrap_or_default();
        assert!(v4.starts_with("127.30."), "{n:?}");
        assert_eq!(n.private_ipv4.as_deref(), Some(v4.as_str()));
        assert_eq!(n.public_ipv6.as_deref(), Some(""));
        assert_eq!(n.interface_ip.as_deref(), Some(v4.as_str()));
        l.stop().await;
    })
    .await;
}

/// A diskimage label's node takes `username`, `python-path` and `shell-type` from the
/// current config's diskimage (and the connection from the provider's entry), not the
/// copies in the upload record, which may come from an older config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diskimage_node_login_facts_come_from_the_config() {
    bounded(async {
        let shape = Shape {
            diskimage_extra:
                "    username: ubuntu\n    python-path: /usr/bin/python3\n    shell-type: csh\n"
                    .into(),
            ..Shape::default()
        };
        let env = Env::new(&shape, SimConfig::default()).await;
        // The upload says `zuul`, no python path or shell type.
        env.ready_upload().await;
        let l = env.start_launcher();
        let r = env.wait_done(&env.submit(&["disk-label"]).await).await;
        assert_eq!(r.state, RequestState::Fulfilled);
        let n = env.node(&r.nodes[0]).await.expect("node");
        assert_eq!(n.username.as_deref(), Some("ubuntu"));
        assert_eq!(n.python_path.as_deref(), Some("/usr/bin/python3"));
        assert_eq!(n.shell_type.as_deref(), Some("csh"));
        assert_eq!(n.connection_type.as_deref(), Some("ssh"));
        assert_eq!(n.connection_port, env.sim.ssh_port());
        l.stop().await;
    })
    .await;
}
