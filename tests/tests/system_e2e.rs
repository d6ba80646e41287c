//! The whole system end to end: `nodepool-builder` and `nodepool-launcher` in-process on
//! one config, a fake Zuul submitting requests, the `nodepool` CLI binary as an operator
//! would run it, the OpenStack simulator over HTTP, a real ZooKeeper, `fake-image-create`
//! writing real qcow2 images and statsd over UDP. Every wait is bounded.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::Launcher;
use nodepool_daemon::builder::{self, BuilderHandle, BuilderOptions};
use nodepool_daemon::launcher::daemon::LauncherOptions;
use nodepool_daemon::launcher::runtime::Intervals;
use nodepool_shared::config::ConfigSource;
use nodepool_shared::model::{
    BuildState, ComponentKind, ImageBuild, ImageUpload, Node, NodeId, RequestState, UploadState,
};
use nodepool_shared::stats::Statsd;
use nodepool_shared::testing::{bounded, init_logs, wait_for, StatsSink, TestZk, WAIT};
use nodepool_shared::zk::ZkStore;
use nodepool_tests::builder_world::fixture;
use nodepool_tests::daemons::{workspace_bin, DaemonProc};
use nodepool_tests::sim::{SimConfig, SimHandle, Simulator};
use nodepool_tests::zuul::{FakeZuul, Outcome};

const IMAGE: &str = "ubuntu";
const PROVIDER: &str = "sim";
const LABEL: &str = "ubuntu-small";

/// One test's world: ZooKeeper chroot, simulator, a temp dir with one nodepool.yaml for
/// both daemons and the CLI, and clouds.yaml.
struct World {
    zk: TestZk,
    sim: SimHandle,
    dir: tempfile::TempDir,
    store: ZkStore,
}

impl World {
    async fn new() -> World {
        init_logs();
        let zk = TestZk::shared().await;
        let sim = Simulator::start(SimConfig {
            ssh_port: 0,
            ..SimConfig::default()
        })
        .await
        .expect("simulator");
        let dir = tempfile::tempdir().expect("tempdir");
        sim.write_clouds_yaml(&dir.path().join("clouds.yaml"), "simcloud")
            .expect("clouds.yaml");
        let store = ZkStore::new(zk.client().await);
        let w = World {
            zk,
            sim,
            dir,
            store,
        };
        w.write_config();
        w
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_config(&self) {
        let s = self.zk.settings();
        let (host, port) = s.hosts[0].clone();
        let text = format!(
            "images-dir: {images}\n\
             build-log-dir: {logs}\n\
             zookeeper-servers:\n  - host: {host}\n    port: {port}\n    chroot: {chroot}\n\
             labels:\n  - name: {LABEL}\n    min-ready: 0\n\
             diskimages:\n  - name: {IMAGE}\n    dib-cmd: {dib}\n    elements: [base, vm]\n    release: noble\n\
             \x20   env-vars:\n      FAKE_DIB_SIZE: \"16M\"\n\
             providers:\n  - name: {PROVIDER}\n    cloud: simcloud\n    rate: 0\n    boot-timeout: 30\n\
             \x20   image-name-format: '{{image_name}}-{{upload_id}}'\n\
             \x20   diskimages:\n      - name: {IMAGE}\n        connection-port: {ssh_port}\n\
             \x20   pools:\n      - name: main\n        max-servers: 10\n        auto-floating-ip: false\n\
             \x20       labels:\n          - name: {LABEL}\n            diskimage: {IMAGE}\n            flavor-name: small\n",
            images = self.path("images").display(),
            logs = self.path("logs").display(),
            chroot = s.chroot.clone().unwrap_or_default(),
            dib = fixture().display(),
            ssh_port = self.sim.ssh_port(),
        );
        std::fs::write(self.path("nodepool.yaml"), text).expect("write config");
    }

    async fn start_builder(&self, statsd: Statsd) -> BuilderHandle {
        let mut o = BuilderOptions::new(ConfigSource::new(self.path("nodepool.yaml"), None));
        o.clouds_file = Some(self.path("clouds.yaml"));
        o.cleanup_interval = Duration::from_millis(500);
        o.retry_delay = Duration::from_secs(1);
        o.config_check_interval = Duration::from_millis(200);
        o.statsd = statsd;
        builder::start(o).await.expect("start builder")
    }

    fn start_launcher(&self, statsd: Statsd) -> Launcher {
        let mut opts = LauncherOptions::new(self.path("nodepool.yaml"));
        opts.webapp = false;
        opts.clouds_file = Some(self.path("clouds.yaml"));
        opts.hostname = Some("launcher-host".into());
        opts.statsd = Some(statsd);
        opts.intervals = Intervals {
            config_check: Duration::from_millis(200),
            pool_tick: Duration::from_millis(200),
            delete: Duration::from_millis(500),
            ..Intervals::default()
        };
        Launcher::start(opts)
    }

    fn zuul(&self, client: nodepool_shared::zk::ZkClient) -> FakeZuul {
        FakeZuul::new(client, "zuul-system-e2e")
    }

    /// Runs the `nodepool` CLI with this world's config and clouds.yaml.
    async fn cli(&self, args: &[&str]) -> Output {
        let bin = tokio::task::spawn_blocking(|| workspace_bin("nodepool"))
            .await
            .expect("build cli");
        let mut cmd = Command::new(bin);
        cmd.arg("-c")
            .arg(self.path("nodepool.yaml"))
            .args(args)
            .env("OS_CLIENT_CONFIG_FILE", self.path("clouds.yaml"))
            .env("NO_COLOR", "1");
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("join")
            .expect("run nodepool");
        out
    }

    /// Runs the CLI and requires success; returns stdout.
    async fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args).await;
        assert!(
            out.status.success(),
            "nodepool {args:?} failed: {}\nstdout: {}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    async fn ready_builds(&self) -> Vec<ImageBuild> {
        let mut v: Vec<ImageBuild> = self
            .store
            .builds(IMAGE)
            .await
            .expect("builds")
            .into_iter()
            .map(|(b, _)| b)
            .filter(|b| b.state == BuildState::Ready)
            .collect();
        v.sort_by(|a, b| a.state_time.total_cmp(&b.state_time));
        v
    }

    async fn ready_upload_of(&self, build: &ImageBuild) -> Option<ImageUpload> {
        self.store
            .uploads(IMAGE, &build.id, PROVIDER)
            .await
            .expect("uploads")
            .into_iter()
            .map(|(u, _)| u)
            .find(|u| u.state == UploadState::Ready)
    }

    /// Waits until `n` ready builds exist and each has a ready upload; returns them
    /// (oldest first) with their uploads.
    async fn wait_ready(&self, n: usize) -> Vec<(ImageBuild, ImageUpload)> {
        wait_for(&format!("{n} ready builds, all uploaded"), || async {
            let ready = self.ready_builds().await;
            if ready.len() != n {
                return None;
            }
            let mut out = Vec::new();
            for b in ready {
                let up = self.ready_upload_of(&b).await?;
                out.push((b, up));
            }
            Some(out)
        })
        .await
    }

    async fn node(&self, id: &NodeId) -> Option<Node> {
        self.store
            .get_node(id)
            .await
            .expect("read node")
            .map(|n| n.0)
    }

    /// A Zuul request for [`LABEL`], fulfilled; returns the node.
    async fn request_node(&self, zuul: &FakeZuul) -> (Node, Vec<nodepool_tests::zuul::HeldNode>) {
        let id = zuul
            .submit(&[LABEL.to_string()], 200, 0, "tenant-one", None)
            .await
            .expect("submit");
        let req = match zuul.wait(&id, WAIT).await.expect("wait") {
            Outcome::Fulfilled(r) => r,
            other => panic!("request {id} not fulfilled: {other:?}"),
        };
        assert_eq!(req.nodes.len(), 1);
        let held = zuul.accept(&req).await.expect("accept");
        let node = self.node(&req.nodes[0]).await.expect("node exists");
        (node, held)
    }

    /// Waits until the node record and its server are both gone.
    async fn wait_node_deleted(&self, node: &Node) {
        let ext = node.external_id.clone().expect("external id");
        wait_for(&format!("node {} deleted", node.id), || async {
            let gone =
                self.node(&node.id).await.is_none() && self.sim.admin().server(&ext).is_none();
            gone.then_some(())
        })
        .await;
    }
}

/// Checks that `node` booted the upload `up` of `build`.
fn check_booted_from(w: &World, node: &Node, build: &ImageBuild, up: &ImageUpload) {
    assert_eq!(node.image_id.as_deref(), Some(up.path().as_str()));
    assert!(
        up.path().ends_with(&format!(
            "/{IMAGE}/builds/{}/providers/{PROVIDER}/images/{}",
            build.id, up.id
        )),
        "{}",
        up.path()
    );
    let ext = node.external_id.clone().expect("external id");
    let server = w.sim.admin().server(&ext).expect("server in the simulator");
    assert_eq!(server.image_id.as_deref(), up.external_id.as_deref());
    assert_eq!(node.username.as_deref(), Some("zuul"));
    // The launcher scanned the server's fake sshd on its loopback address.
    assert_eq!(node.host_keys, w.sim.admin().host_keys(&ext));
    assert!(!node.host_keys.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_upload_launch_use_return_delete_with_metrics() {
    bounded(async {
        let w = World::new().await;
        let sink = StatsSink::start();
        let b = w.start_builder(sink.statsd()).await;
        let l = w.start_launcher(sink.statsd());
        let built = w.wait_ready(1).await;
        let (build, up) = &built[0];

        let zuul = w.zuul(w.zk.client().await);
        let (node, mut held) = w.request_node(&zuul).await;
        assert_eq!(node.node_type, [LABEL]);
        assert_eq!(node.provider.as_deref(), Some(PROVIDER));
        check_booted_from(&w, &node, build, up);

        // Zuul uses the node and returns it; the launcher deletes it.
        zuul.use_nodes(&mut held, "org/project").await.expect("use");
        let n = w.node(&node.id).await.expect("node");
        assert_eq!(n.state.as_str(), "in-use");
        zuul.return_nodes(held).await.expect("return");
        w.wait_node_deleted(&node).await;

        // statsd: builder and launcher metrics both arrived.
        let want = [
            format!("nodepool.dib_image_build.{IMAGE}.status.rc:0|g"),
            format!("nodepool.image_update.{IMAGE}.{PROVIDER}:"),
            "nodepool.launch.ready:1|c".to_string(),
        ];
        let lines = wait_for("builder and launcher metrics", || async {
            let lines = sink.lines();
            want.iter()
                .all(|k| lines.iter().any(|l| l.starts_with(k.as_str())))
                .then_some(lines)
        })
        .await;
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("nodepool.launch.ready:") && l.ends_with("|ms")),
            "{lines:?}"
        );

        l.stop().await;
        b.stop();
        b.wait().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_keeps_the_previous_and_dib_image_delete_falls_back() {
    bounded(async {
        let w = World::new().await;
        let b = w.start_builder(Statsd::noop()).await;
        let l = w.start_launcher(Statsd::noop());
        let first = w.wait_ready(1).await;

        // The operator asks for a rebuild; both builds end up ready and uploaded.
        w.cli_ok(&["image-build", IMAGE]).await;
        let both = w.wait_ready(2).await;
        assert_eq!(both[0].0.id, first[0].0.id, "the previous build is kept");
        let (old_build, old_up) = both[0].clone();
        let (new_build, new_up) = both[1].clone();
        let listing = w.cli_ok(&["dib-image-list"]).await;
        for b in [&old_build, &new_build] {
            assert!(listing.contains(&format!("{IMAGE}-{}", b.id)), "{listing}");
        }

        // A node now boots from the newest image.
        let zuul = w.zuul(w.zk.client().await);
        let (node, mut held) = w.request_node(&zuul).await;
        check_booted_from(&w, &node, &new_build, &new_up);
        zuul.use_nodes(&mut held, "org/project").await.expect("use");
        zuul.return_nodes(held).await.expect("return");
        w.wait_node_deleted(&node).await;

        // The newest is deleted: its record and cloud image go, the previous stays.
        w.cli_ok(&["dib-image-delete", &format!("{IMAGE}-{}", new_build.id)])
            .await;
        let gone = new_up.external_id.clone().expect("external id");
        wait_for("the newest build and its cloud image removed", || async {
            let record = w
                .store
                .get_build(IMAGE, &new_build.id)
                .await
                .expect("get build");
            let image = w.sim.admin().images().into_iter().any(|i| i.id == gone);
            (record.is_none() && !image).then_some(())
        })
        .await;
        assert_eq!(w.wait_ready(1).await[0].0.id, old_build.id);

        // The next node boots from the previous image.
        let (node, held) = w.request_node(&zuul).await;
        check_booted_from(&w, &node, &old_build, &old_up);
        zuul.return_nodes(held).await.expect("return");

        l.stop().await;
        b.stop();
        b.wait().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_delete_now_and_alien_image_list() {
    bounded(async {
        let w = World::new().await;
        let b = w.start_builder(Statsd::noop()).await;
        let l = w.start_launcher(Statsd::noop());
        let built = w.wait_ready(1).await;
        let known = built[0].1.external_id.clone().expect("external id");

        // A ready node, unlocked (Zuul accepted it, then let go of it).
        let zuul = w.zuul(w.zk.client().await);
        let (node, held) = w.request_node(&zuul).await;
        zuul.unlock(held).await;
        let ext = node.external_id.clone().expect("external id");
        assert!(w.sim.admin().server(&ext).is_some());

        // `delete --now`: the server goes from the cloud, then the znode.
        let out = w.cli_ok(&["delete", "--now", node.id.as_str()]).await;
        assert!(out.contains(node.id.as_str()), "{out}");
        assert!(w.sim.admin().server(&ext).is_none(), "server deleted");
        assert!(w.node(&node.id).await.is_none(), "znode deleted");
        l.stop().await;

        // The builder would remove a leaked image; stop it first.
        b.stop();
        b.wait().await;
        let alien = w
            .sim
            .admin()
            .inject_leaked_image(PROVIDER, "0000009999", "0000000042");
        let out = w.cli_ok(&["alien-image-list"]).await;
        assert!(out.contains(&alien), "alien image listed: {out}");
        assert!(out.contains(PROVIDER), "{out}");
        assert!(!out.contains(&known), "a known upload is no alien: {out}");
        let out = w.cli_ok(&["alien-image-list", PROVIDER]).await;
        assert!(out.contains(&alien), "{out}");
    })
    .await;
}

/// Provider `cloud-a`'s stage in [`removing_a_provider_step_by_step`], as the
/// operation guide's "Removing a provider" walks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StageA {
    /// Serving, `max-servers: 1`, preferred (pool priority 100; `cloud-b`'s is 200).
    Serving,
    /// Step 1: `max-servers: 0`.
    Disabled,
    /// Step 2: `diskimages: []`, no pools.
    NoImages,
    /// Step 3: removed from the config.
    Removed,
}

const CLOUD_A: &str = "cloud-a";
const CLOUD_B: &str = "cloud-b";

impl World {
    /// One config for the builder, the launcher and the CLI: providers `cloud-a` (at
    /// `stage`) and `cloud-b` (`max-servers: 5`) on the one simulated cloud, both
    /// uploading [`IMAGE`] and serving [`LABEL`] from it.
    fn write_two_providers(&self, stage: StageA) {
        let s = self.zk.settings();
        let (host, port) = s.hosts[0].clone();
        let provider = |name: &str, max_servers: Option<u32>, priority: u32| {
            let head = format!(
                "  - name: {name}\n    cloud: simcloud\n    rate: 0\n    boot-timeout: 30\n"
            );
            match max_servers {
                None => format!("{head}    diskimages: []\n    pools: []\n"),
                Some(m) => format!(
                    "{head}    diskimages:\n      - name: {IMAGE}\n        connection-port: {ssh}\n\
                     \x20   pools:\n      - name: main\n        max-servers: {m}\n        priority: {priority}\n\
                     \x20       auto-floating-ip: false\n        labels:\n          - name: {LABEL}\n\
                     \x20           diskimage: {IMAGE}\n            flavor-name: small\n",
                    ssh = self.sim.ssh_port(),
                ),
            }
        };
        let a = match stage {
            StageA::Serving => provider(CLOUD_A, Some(1), 100),
            StageA::Disabled => provider(CLOUD_A, Some(0), 100),
            StageA::NoImages => provider(CLOUD_A, None, 100),
            StageA::Removed => String::new(),
        };
        let text = format!(
            "images-dir: {images}\nbuild-log-dir: {logs}\n\
             zookeeper-servers:\n  - host: {host}\n    port: {port}\n    chroot: {chroot}\n\
             labels:\n  - name: {LABEL}\n    min-ready: 0\n\
             diskimages:\n  - name: {IMAGE}\n    dib-cmd: {dib}\n    elements: [base, vm]\n    release: noble\n\
             \x20   env-vars:\n      FAKE_DIB_SIZE: \"16M\"\n\
             providers:\n{a}{b}",
            images = self.path("images").display(),
            logs = self.path("logs").display(),
            chroot = s.chroot.clone().unwrap_or_default(),
            dib = fixture().display(),
            b = provider(CLOUD_B, Some(5), 200),
        );
        // Write, then rename: a daemon never reads half a file.
        let tmp = self.path("nodepool.yaml.tmp");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, self.path("nodepool.yaml")).expect("rename config");
    }

    /// Every upload record of [`IMAGE`] to `provider`.
    async fn uploads_to(&self, provider: &str) -> Vec<ImageUpload> {
        let mut out = Vec::new();
        for (b, _) in self.store.builds(IMAGE).await.unwrap_or_default() {
            for (u, _) in self
                .store
                .uploads(IMAGE, &b.id, provider)
                .await
                .unwrap_or_default()
            {
                out.push(u);
            }
        }
        out
    }

    /// Simulator images uploaded for `provider` (Nodepool's image properties).
    fn cloud_images_of(&self, provider: &str) -> usize {
        self.sim
            .admin()
            .images()
            .into_iter()
            .filter(|i| {
                i.properties
                    .get("nodepool_provider_name")
                    .and_then(|v| v.as_str())
                    == Some(provider)
            })
            .count()
    }

    /// Simulator servers booted for `provider`.
    fn servers_of(&self, provider: &str) -> usize {
        self.sim
            .admin()
            .servers()
            .into_iter()
            .filter(|s| {
                s.metadata.get("nodepool_provider_name").map(String::as_str) == Some(provider)
            })
            .count()
    }
}

/// The operation guide's "Removing a provider", step by step, with the builder as a
/// real `nodepool-builder` process: `cloud-a` is full (its one node held by Zuul) and
/// holds a paused request. Step 1 (`max-servers: 0`): no server is created on it, the
/// paused request is declined there and fulfilled by `cloud-b`, and `cloud-a`'s node is
/// deleted once Zuul returns it (`used`) — `nodepool list` shows none left. Step 2
/// (`diskimages: []`, no pools): the builder deletes its uploads, in the cloud and in
/// ZooKeeper — `nodepool image-list` shows none left. Step 3: the provider is removed
/// from the config; `cloud-b` goes on serving and `nodepool info cloud-a` finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_provider_step_by_step() {
    bounded(async {
        let w = World::new().await;
        w.sim
            .admin()
            .set_quota(nodepool_tests::sim::Quota::UNLIMITED);
        w.write_two_providers(StageA::Serving);
        let mut cmd = Command::new(workspace_bin("nodepool-builder"));
        cmd.arg("-c")
            .arg(w.path("nodepool.yaml"))
            .args([
                "-f",
                "--cleanup-interval",
                "1",
                "--config-check-interval",
                "0.2",
            ])
            .env("OS_CLIENT_CONFIG_FILE", w.path("clouds.yaml"))
            .env("RUST_LOG", "info");
        let builder = DaemonProc::spawn(cmd, &w.path("builder.log"));
        let l = w.start_launcher(Statsd::noop());
        for p in [CLOUD_A, CLOUD_B] {
            wait_for(&format!("an upload to {p}"), || async {
                let ups = w.uploads_to(p).await;
                ups.iter()
                    .any(|u| u.state == UploadState::Ready)
                    .then_some(())
            })
            .await;
        }
        let zuul = w.zuul(w.zk.client().await);
        let (node_a, mut held_a) = w.request_node(&zuul).await;
        assert_eq!(node_a.provider.as_deref(), Some(CLOUD_A));
        zuul.use_nodes(&mut held_a, "org/project")
            .await
            .expect("use");
        // `cloud-a` is full: the next request waits there, paused.
        let label = [LABEL.to_string()];
        let paused_req = zuul
            .submit(&label, 200, 0, "tenant-one", None)
            .await
            .expect("submit");
        let pool_a = wait_for("cloud-a paused with the request", || async {
            let (r, _) = w.store.get_request(&paused_req).await.ok()??;
            let pools = w.store.components(ComponentKind::Pool).await.ok()?;
            let a = pools
                .into_iter()
                .filter_map(|c| c.component.pool)
                .find(|p| p.provider_name.as_deref() == Some(CLOUD_A) && p.paused)?;
            (r.state == RequestState::Pending).then_some(a.id?)
        })
        .await;
        assert_eq!(w.servers_of(CLOUD_A), 1);

        // Step 1: stop launching on cloud-a.
        w.write_two_providers(StageA::Disabled);
        let req = match zuul.wait(&paused_req, WAIT).await.expect("wait") {
            Outcome::Fulfilled(r) => r,
            other => panic!("paused request not fulfilled: {other:?}"),
        };
        assert_eq!(req.declined_by, [pool_a]);
        let node_b = w.node(&req.nodes[0]).await.expect("node");
        assert_eq!(node_b.provider.as_deref(), Some(CLOUD_B));
        let held_b = zuul.accept(&req).await.expect("accept");
        assert_eq!(w.servers_of(CLOUD_A), 1, "no new server on cloud-a");
        // Zuul returns cloud-a's node: it is deleted, and nothing replaces it.
        zuul.return_nodes(held_a).await.expect("return");
        w.wait_node_deleted(&node_a).await;
        let listing = w.cli_ok(&["list"]).await;
        assert!(!listing.contains(CLOUD_A), "{listing}");
        assert!(listing.contains(CLOUD_B), "{listing}");
        assert_eq!(w.servers_of(CLOUD_A), 0);

        // Step 2: remove its images.
        assert!(w.cloud_images_of(CLOUD_A) > 0);
        w.write_two_providers(StageA::NoImages);
        wait_for("cloud-a's uploads removed", || async {
            (w.uploads_to(CLOUD_A).await.is_empty() && w.cloud_images_of(CLOUD_A) == 0)
                .then_some(())
        })
        .await;
        let images = w.cli_ok(&["image-list"]).await;
        assert!(!images.contains(CLOUD_A), "{images}");
        assert!(images.contains(CLOUD_B), "{images}");
        assert_eq!(w.cloud_images_of(CLOUD_B), 1, "cloud-b keeps its image");

        // Step 3: remove the provider; cloud-b goes on serving.
        w.write_two_providers(StageA::Removed);
        wait_for("cloud-a's pool gone", || async {
            let pools = w.store.components(ComponentKind::Pool).await.ok()?;
            (pools.len() == 1).then_some(())
        })
        .await;
        let (node, held) = w.request_node(&zuul).await;
        assert_eq!(node.provider.as_deref(), Some(CLOUD_B));
        // Nothing is left to `nodepool erase`.
        let info = w.cli_ok(&["info", CLOUD_A, "--format", "json"]).await;
        let info: serde_json::Value = serde_json::from_str(&info).expect("info JSON");
        assert_eq!(info["image_data"], serde_json::json!([]), "{info}");
        assert_eq!(info["nodes"], serde_json::json!([]), "{info}");
        zuul.return_nodes(held).await.expect("return");
        zuul.return_nodes(held_b).await.expect("return");
        l.stop().await;
        assert!(builder.stop().await, "the builder stops on SIGTERM");
    })
    .await;
}
