//! `nodepool-builder` end to end: real ZooKeeper, the OpenStack simulator over HTTP,
//! `fake-image-create` writing real qcow2 images with qemu-img, and the builder either
//! as the built binary (a separate process, signals, statsd over UDP) or in-process
//! through `nodepool_daemon::builder::start` (several builders at once, config reloads).
//! Every wait is bounded.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodepool_daemon::builder::{self, BuilderHandle, BuilderOptions};
use nodepool_shared::config::ConfigSource;
use nodepool_shared::model::{
    paths, BuildState, ComponentKind, ImageBuild, ImageUpload, UploadState,
};
use nodepool_shared::testing::{wait_for, TestZk, WAIT};
use nodepool_shared::zk::ZkStore;
use nodepool_tests::builder_world::fixture;
use nodepool_tests::daemons::workspace_bin;
use nodepool_tests::sim::{SimConfig, SimHandle, Simulator};

const IMAGE: &str = "ubuntu";
const PROVIDER: &str = "sim";

/// What the config file says (rewritten for reload tests).
#[derive(Clone)]
struct Cfg {
    provider_lists_image: bool,
    env: Vec<(String, String)>,
    broken: bool,
    hook: Option<PathBuf>,
}

impl Default for Cfg {
    fn default() -> Self {
        Cfg {
            provider_lists_image: true,
            env: vec![("FAKE_DIB_SIZE".into(), "16M".into())],
            broken: false,
            hook: None,
        }
    }
}

/// One test's world: ZooKeeper chroot, simulator, temp dir with config and clouds.yaml.
struct World {
    zk: TestZk,
    sim: SimHandle,
    dir: tempfile::TempDir,
    store: ZkStore,
}

impl World {
    async fn new() -> World {
        let zk = TestZk::shared().await;
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        sim.write_clouds_yaml(&dir.path().join("clouds.yaml"), "simcloud")
            .unwrap();
        let store = ZkStore::new(zk.client().await);
        let w = World {
            zk,
            sim,
            dir,
            store,
        };
        w.write_config("nodepool.yaml", "images", &Cfg::default());
        w
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a config `name` whose images dir is `images`.
    fn write_config(&self, name: &str, images: &str, cfg: &Cfg) {
        let s = self.zk.settings();
        let (host, port) = s.hosts[0].clone();
        let env: String = cfg
            .env
            .iter()
            .map(|(k, v)| format!("      {k}: \"{v}\"\n"))
            .collect();
        let provider_images = if cfg.provider_lists_image {
            format!("\n      - name: {IMAGE}\n        meta:\n          provider-key: pv\n")
        } else {
            " []\n".to_string()
        };
        let text = format!(
            "images-dir: {images_dir}\n\
             build-log-dir: {logs}\n\
             zookeeper-servers:\n  - host: {host}\n    port: {port}\n    chroot: {chroot}\n\
             diskimages:\n  - name: {IMAGE}\n    dib-cmd: {dib}\n    elements: [base, vm]\n    release: noble\n\
             \x20   metadata:\n      team: infra\n    env-vars:\n{env}\
             providers:\n  - name: {PROVIDER}\n    cloud: simcloud\n    rate: 0\n    image-name-format: '{{image_name}}-{{upload_id}}'\n    diskimages:{provider_images}",
            images_dir = self.path(images).display(),
            logs = self.path("logs").display(),
            chroot = s.chroot.clone().unwrap_or_default(),
            dib = fixture().display(),
        );
        let text = match &cfg.hook {
            Some(h) => text.replace(
                "    rate: 0\n",
                &format!("    rate: 0\n    post-upload-hook: {}\n", h.display()),
            ),
            None => text,
        };
        let text = if cfg.broken {
            format!("{text}\nthis is: [not valid\n")
        } else {
            text
        };
        // Write-then-rename so a reload never sees a half-written file.
        let tmp = self.path(&format!("{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path(name)).unwrap();
    }

    fn options(&self, config: &str) -> BuilderOptions {
        let mut o = BuilderOptions::new(ConfigSource::new(self.path(config), None));
        o.clouds_file = Some(self.path("clouds.yaml"));
        o.cleanup_interval = Duration::from_millis(500);
        o.retry_delay = Duration::from_secs(1);
        o.config_check_interval = Duration::from_millis(200);
        o
    }

    async fn start(&self, config: &str) -> BuilderHandle {
        builder::start(self.options(config)).await.unwrap()
    }

    async fn builds(&self) -> Vec<ImageBuild> {
        self.store
            .builds(IMAGE)
            .await
            .unwrap()
            .into_iter()
            .map(|(b, _)| b)
            .collect()
    }

    async fn ready_builds(&self) -> Vec<ImageBuild> {
        let mut v: Vec<ImageBuild> = self
            .builds()
            .await
            .into_iter()
            .filter(|b| b.state == BuildState::Ready)
            .collect();
        v.sort_by(|a, b| a.state_time.total_cmp(&b.state_time));
        v
    }

    async fn uploads(&self) -> Vec<ImageUpload> {
        let mut out = Vec::new();
        for b in self.builds().await {
            for (u, _) in self.store.uploads(IMAGE, &b.id, PROVIDER).await.unwrap() {
                out.push(u);
            }
        }
        out
    }

    async fn ready_upload_of(&self, build: &ImageBuild) -> Option<ImageUpload> {
        self.store
            .uploads(IMAGE, &build.id, PROVIDER)
            .await
            .unwrap()
            .into_iter()
            .map(|(u, _)| u)
            .find(|u| u.state == UploadState::Ready)
    }

    /// Waits until `n` ready builds exist and the newest has a ready upload; returns
    /// the ready builds (oldest first) and the newest's upload.
    async fn wait_ready(&self, n: usize) -> (Vec<ImageBuild>, ImageUpload) {
        wait_for(
            &format!("{n} ready builds with the newest uploaded"),
            || async {
                let ready = self.ready_builds().await;
                if ready.len() != n {
                    return None;
                }
                let up = self.ready_upload_of(ready.last()?).await?;
                Some((ready, up))
            },
        )
        .await
    }

    fn cloud_image_ids(&self) -> Vec<String> {
        self.sim
            .admin()
            .images()
            .into_iter()
            .filter(|i| i.properties.contains_key("nodepool_build_id"))
            .map(|i| i.id)
            .collect()
    }
}

/// Checks the cloud image of `up`: active, named and with the expected properties.
fn check_cloud_image(w: &World, build: &ImageBuild, up: &ImageUpload) {
    let id = up.external_id.clone().expect("external_id");
    let img = w
        .sim
        .admin()
        .images()
        .into_iter()
        .find(|i| i.id == id)
        .expect("cloud image exists");
    assert_eq!(img.status, "active");
    assert_eq!(
        img.name.as_deref(),
        Some(format!("{IMAGE}-{}", up.id).as_str())
    );
    assert_eq!(up.external_name.as_deref(), img.name.as_deref());
    assert_eq!(img.disk_format.as_deref(), Some("qcow2"));
    let prop = |k: &str| {
        img.properties
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    assert_eq!(
        prop("nodepool_build_id").as_deref(),
        Some(build.id.as_str())
    );
    assert_eq!(prop("nodepool_upload_id").as_deref(), Some(up.id.as_str()));
    assert_eq!(prop("nodepool_provider_name").as_deref(), Some(PROVIDER));
    assert_eq!(prop("team").as_deref(), Some("infra"));
    assert_eq!(prop("provider-key").as_deref(), Some("pv"));
    assert!(img.size.unwrap_or(0) > 0, "image data uploaded");
    assert_eq!(up.format.as_deref(), Some("qcow2"));
    assert_eq!(up.username.as_deref(), Some("zuul"));
}

// ------------------------------------------------------------------ the binary

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(p: &Proc, sig: i32) {
    // SAFETY: kill(2) on the pid of our own child.
    unsafe { libc::kill(p.0.id() as i32, sig) };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_builds_uploads_and_emits_metrics() {
    let w = World::new().await;
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let statsd_port = udp.local_addr().unwrap().port();
    let bin = tokio::task::spawn_blocking(|| workspace_bin("nodepool-builder"))
        .await
        .unwrap();
    let pidfile = w.path("builder.pid");
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .arg("-c")
        .arg(w.path("nodepool.yaml"))
        .arg("-f")
        .arg("-p")
        .arg(&pidfile)
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{metrics_port}"))
        .args(["--cleanup-interval", "1", "--config-check-interval", "0.2"])
        .env("OS_CLIENT_CONFIG_FILE", w.path("clouds.yaml"))
        .env("STATSD_HOST", "127.0.0.1")
        .env("STATSD_PORT", statsd_port.to_string())
        .env("RUST_LOG", "info")
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nodepool-builder");
    let p = Proc(child);

    let (ready, up) = w.wait_ready(1).await;
    let build = &ready[0];
    assert_eq!(build.formats, vec!["qcow2".to_string()]);
    assert!(build.builder.is_some() && build.builder_id.is_some());
    check_cloud_image(&w, build, &up);
    // The local file is there; the build log ends with the exit code.
    assert!(w
        .path(&format!("images/{IMAGE}-{}.qcow2", build.id))
        .is_file());
    let log = std::fs::read_to_string(w.path(&format!("logs/{IMAGE}-{}.log", build.id))).unwrap();
    assert!(log.trim_end().ends_with("Exit code: 0"), "{log}");
    // Registered as a builder component; the pidfile holds its pid.
    let comps = w.store.components(ComponentKind::Builder).await.unwrap();
    assert_eq!(comps.len(), 1);
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, p.0.id());

    // statsd: build and upload metrics (bounded collection).
    let want = [
        format!("nodepool.dib_image_build.{IMAGE}.status.rc:0|g"),
        format!("nodepool.dib_image_build.{IMAGE}.status.duration:"),
        format!("nodepool.dib_image_build.{IMAGE}.status.last_build:"),
        format!("nodepool.dib_image_build.{IMAGE}.qcow2.size:"),
        format!("nodepool.image_update.{IMAGE}.{PROVIDER}:1|c"),
        format!("nodepool.image_update.{IMAGE}.{PROVIDER}:"),
        "nodepool.image_build_requests:0|g".to_string(),
        format!("nodepool.image.{IMAGE}.image_build_requests:0|g"),
        format!(".image.{IMAGE}.build.state:"),
        format!(".image.{IMAGE}.provider.{PROVIDER}.upload.state:"),
    ];
    tokio::task::spawn_blocking(move || {
        let mut lines: Vec<String> = Vec::new();
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline
            && !want
                .iter()
                .all(|k| lines.iter().any(|l| l.contains(k.as_str())))
        {
            if let Ok(n) = udp.recv(&mut buf) {
                lines.extend(
                    String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .map(str::to_string),
                );
            }
        }
        for k in &want {
            assert!(
                lines.iter().any(|l| l.contains(k.as_str())),
                "metric {k} not seen in {lines:?}"
            );
        }
    })
    .await
    .unwrap();

    // Prometheus (--metrics-listen): the same build and upload, as ZooKeeper has them.
    let base = format!("http://127.0.0.1:{metrics_port}");
    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let page = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sample = |key: &str| -> f64 {
        page.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} not in:\n{page}"))
    };
    let builds_in_zk = w.store.builds(IMAGE).await.unwrap().len() as f64;
    assert_eq!(
        sample(&format!(
            r#"nodepool_image_build_duration_seconds_count{{image="{IMAGE}"}}"#
        )),
        builds_in_zk
    );
    assert_eq!(
        sample(&format!(
            r#"nodepool_image_build_exit_code{{image="{IMAGE}"}}"#
        )),
        0.0
    );
    assert_eq!(
        sample(&format!(
            r#"nodepool_image_upload_duration_seconds_count{{image="{IMAGE}",provider="{PROVIDER}"}}"#
        )),
        1.0, // the one ready upload of `wait_ready`
    );
    assert!(
        sample(&format!(
            r#"nodepool_image_build_size_bytes{{image="{IMAGE}",format="qcow2"}}"#
        )) > 0.0
    );
    assert_eq!(
        sample(&format!(
            r#"nodepool_image_build_requests{{image="{IMAGE}"}}"#
        )),
        0.0
    );

    // SIGUSR2 only logs; the builder keeps running.
    signal(&p, libc::SIGUSR2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut p = p;
    assert!(
        p.0.try_wait().unwrap().is_none(),
        "SIGUSR2 must not stop it"
    );

    // SIGTERM: graceful stop, component record removed, pidfile removed.
    signal(&p, libc::SIGTERM);
    let status = wait_for("the builder to exit after SIGTERM", || {
        let r = p.0.try_wait().unwrap();
        async move { r }
    })
    .await;
    assert!(status.success(), "exit status {status}");
    assert!(w
        .store
        .components(ComponentKind::Builder)
        .await
        .unwrap()
        .is_empty());
    assert!(!pidfile.exists());
}

// ------------------------------------------------------------------ in-process

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilds_rotate_and_dib_image_delete() {
    let w = World::new().await;
    let b = w.start("nodepool.yaml").await;
    let (ready1, up1) = w.wait_ready(1).await;
    check_cloud_image(&w, &ready1[0], &up1);

    // A requested build: the previous one stays; both ready and uploaded.
    w.store.request_build(IMAGE).await.unwrap();
    let (ready2, up2) = w.wait_ready(2).await;
    assert_eq!(ready2[0].id, ready1[0].id);
    check_cloud_image(&w, &ready2[1], &up2);
    wait_for("the request flag to be cleared", || async {
        w.store
            .build_request(IMAGE)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(w.ready_upload_of(&ready2[0]).await.is_some());

    // A third: the oldest build goes, with its upload and its cloud image.
    w.store.request_build(IMAGE).await.unwrap();
    let (ready3, _) = wait_for("rotation to two builds", || async {
        let ready = w.ready_builds().await;
        let all = w.builds().await;
        (ready.len() == 2 && all.len() == 2 && ready[0].id == ready2[1].id).then_some((ready, ()))
    })
    .await;
    let old_image = up1.external_id.clone().unwrap();
    wait_for("the oldest cloud image to be deleted", || async {
        (!w.cloud_image_ids().contains(&old_image)).then_some(())
    })
    .await;
    wait_for("the oldest build's files to be removed", || async {
        (!w.path(&format!("images/{IMAGE}-{}.qcow2", ready1[0].id))
            .exists())
        .then_some(())
    })
    .await;
    let newest = ready3[1].clone();
    let newest_up = wait_for("the newest upload", || w.ready_upload_of(&newest)).await;

    // dib-image-delete of the newest: it goes (cloud image too); the previous remains.
    let (mut rec, stat) = w.store.get_build(IMAGE, &newest.id).await.unwrap().unwrap();
    rec.set_state(BuildState::Deleting);
    w.store.store_build(&rec, Some(stat.version)).await.unwrap();
    wait_for("the deleted build to disappear", || async {
        w.store
            .get_build(IMAGE, &newest.id)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let gone = newest_up.external_id.clone().unwrap();
    assert!(!w.cloud_image_ids().contains(&gone));
    assert!(!w
        .path(&format!("images/{IMAGE}-{}.qcow2", newest.id))
        .exists());
    let prev = &ready3[0];
    let prev_up = w
        .ready_upload_of(prev)
        .await
        .expect("previous upload still ready");
    assert!(w
        .cloud_image_ids()
        .contains(prev_up.external_id.as_ref().unwrap()));
    assert_eq!(
        w.store
            .get_build(IMAGE, &prev.id)
            .await
            .unwrap()
            .unwrap()
            .0
            .state,
        BuildState::Ready
    );
    b.stop();
    b.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_flag_blocks_a_requested_build() {
    let w = World::new().await;
    let b = w.start("nodepool.yaml").await;
    w.wait_ready(1).await;
    w.store.pause_image(IMAGE).await.unwrap();
    w.store.request_build(IMAGE).await.unwrap();
    // The scheduler is woken by the watch at once; give it ample time to (wrongly) act.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(w.builds().await.len(), 1, "no build while paused");
    assert!(w.store.build_request(IMAGE).await.unwrap().is_some());
    assert!(b.state_report().contains("0/1 build workers busy"));
    // Unpausing lets the requested build run.
    w.store.unpause_image(IMAGE).await.unwrap();
    w.wait_ready(2).await;
    b.stop();
    b.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_build_keeps_the_last_good_image_and_bad_config_is_ignored() {
    let w = World::new().await;
    let b = w.start("nodepool.yaml").await;
    let (ready, up) = w.wait_ready(1).await;

    // An invalid config is ignored: the builder keeps working with the last good one.
    w.write_config(
        "nodepool.yaml",
        "images",
        &Cfg {
            broken: true,
            ..Cfg::default()
        },
    );
    tokio::time::sleep(Duration::from_millis(600)).await;

    // A config where DIB fails (reload), then a request: the build fails.
    let mut cfg = Cfg::default();
    cfg.env.push(("FAKE_DIB_FAIL".into(), "3".into()));
    w.write_config("nodepool.yaml", "images", &cfg);
    wait_for("the reload", || async {
        b.state_report().contains("config reloads 1").then_some(())
    })
    .await;
    w.store.request_build(IMAGE).await.unwrap();
    wait_for("a failed build", || async {
        b.state_report().contains("failed 1,").then_some(())
    })
    .await;
    // The last good build and its image are untouched; the request stays.
    let now_ready = w.ready_builds().await;
    assert_eq!(now_ready.len(), 1);
    assert_eq!(now_ready[0].id, ready[0].id);
    assert_eq!(w.ready_upload_of(&now_ready[0]).await.unwrap().id, up.id);
    assert!(w
        .cloud_image_ids()
        .contains(up.external_id.as_ref().unwrap()));
    assert!(w.store.build_request(IMAGE).await.unwrap().is_some());
    // Failed records are cleaned up; fixing the config lets the request succeed.
    w.write_config("nodepool.yaml", "images", &Cfg::default());
    w.wait_ready(2).await;
    wait_for("failed records removed", || async {
        w.builds()
            .await
            .iter()
            .all(|b| b.state != BuildState::Failed)
            .then_some(())
    })
    .await;
    b.stop();
    b.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_without_diskimages_loses_its_uploads() {
    let w = World::new().await;
    let b = w.start("nodepool.yaml").await;
    let (_, up) = w.wait_ready(1).await;
    let id = up.external_id.clone().unwrap();
    assert!(w.cloud_image_ids().contains(&id));
    w.write_config(
        "nodepool.yaml",
        "images",
        &Cfg {
            provider_lists_image: false,
            ..Cfg::default()
        },
    );
    wait_for("uploads and cloud images removed", || async {
        (w.uploads().await.is_empty() && w.cloud_image_ids().is_empty()).then_some(())
    })
    .await;
    // The build itself stays (the image is still configured).
    assert_eq!(w.ready_builds().await.len(), 1);
    b.stop();
    b.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_builders_build_and_upload_once() {
    let w = World::new().await;
    let mut cfg = Cfg::default();
    // Slow builds so that both builders are certainly running when one starts it.
    cfg.env.push(("FAKE_DIB_SLEEP".into(), "2".into()));
    w.write_config("a.yaml", "images-a", &cfg);
    w.write_config("b.yaml", "images-b", &cfg);
    let (a, b) = tokio::join!(w.start("a.yaml"), w.start("b.yaml"));
    assert_ne!(a.builder_id(), b.builder_id());
    let (ready, _) = w.wait_ready(1).await;
    // Give the other builder every chance to duplicate work (watch-driven, so it
    // would have acted at once).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(w.builds().await.len(), 1, "exactly one build");
    assert_eq!(w.uploads().await.len(), 1, "exactly one upload");
    assert_eq!(w.cloud_image_ids().len(), 1, "exactly one cloud image");
    let owner = ready[0].builder_id.clone().unwrap();
    let (with_files, without) = if owner == a.builder_id() {
        ("images-a", "images-b")
    } else {
        ("images-b", "images-a")
    };
    let file = format!("{IMAGE}-{}.qcow2", ready[0].id);
    assert!(w.path(with_files).join(&file).is_file());
    assert!(!w.path(without).join(&file).exists());
    assert_eq!(
        w.store
            .components(ComponentKind::Builder)
            .await
            .unwrap()
            .len(),
        2
    );
    a.stop();
    b.stop();
    a.wait().await;
    b.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_a_build_kills_it_and_records_failed() {
    let w = World::new().await;
    let mut cfg = Cfg::default();
    let pids = w.path("dib.pids");
    cfg.env.push(("FAKE_DIB_SLEEP".into(), "120".into()));
    cfg.env
        .push(("FAKE_DIB_PID_FILE".into(), pids.display().to_string()));
    w.write_config("nodepool.yaml", "images", &cfg);
    let b = w.start("nodepool.yaml").await;
    let text = wait_for("DIB to be running", || async {
        std::fs::read_to_string(&pids).ok()
    })
    .await;
    let builds = w.builds().await;
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0].state, BuildState::Building);
    assert!(b.state_report().contains("building ubuntu-"));
    b.stop();
    tokio::time::timeout(Duration::from_secs(60), b.wait())
        .await
        .expect("builder stops within 60 s");
    // The build is recorded failed, the lock is free, DIB and its child are gone.
    let builds = w.builds().await;
    assert_eq!(builds[0].state, BuildState::Failed);
    assert!(w
        .store
        .lock_contenders(&paths::image_build_lock(IMAGE))
        .await
        .unwrap()
        .is_empty());
    for pid in text.split_whitespace() {
        // Gone, or a zombie waiting for its (re)parent to reap it.
        let stat = format!("/proc/{pid}/stat");
        wait_for(&format!("DIB process {pid} to end"), || {
            let dead = std::fs::read_to_string(&stat)
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(true);
            async move { dead.then_some(()) }
        })
        .await;
    }
    assert!(w
        .store
        .components(ComponentKind::Builder)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_post_upload_hook_deletes_the_image_and_fails_the_upload() {
    let w = World::new().await;
    let hook = w.path("hook.sh");
    let args = w.path("hook.args");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\necho \"$@\" >> {}\nexit 1\n", args.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = Cfg {
        hook: Some(hook),
        ..Cfg::default()
    };
    w.write_config("nodepool.yaml", "images", &cfg);
    let b = w.start("nodepool.yaml").await;
    let line = wait_for("the hook to run", || async {
        std::fs::read_to_string(&args)
            .ok()
            .filter(|s| s.contains('\n'))
    })
    .await;
    let words: Vec<&str> = line.lines().next().unwrap().split(' ').collect();
    assert_eq!(words[0], PROVIDER);
    assert!(words[2].ends_with(".qcow2"), "{line}");
    wait_for(
        "the failed upload recorded and its image deleted",
        || async {
            let failed = b.state_report().contains("uploads ready 0 failed 1");
            (failed && !w.cloud_image_ids().contains(&words[1].to_string())).then_some(())
        },
    )
    .await;
    assert!(w
        .uploads()
        .await
        .iter()
        .all(|u| u.state != UploadState::Ready));
    b.stop();
    b.wait().await;
}

/// Benchmark, not a test (run explicitly, see docs/benchmarks.md): the builder binary
/// builds a 1 GiB qcow2 of random data and uploads it to the simulator (no hashing);
/// prints the upload time and the builder's peak RSS (VmHWM).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --ignored bench_upload_1gib"]
async fn bench_upload_1gib() {
    let zk = TestZk::shared().await;
    let sim = Simulator::start(SimConfig {
        hash_uploads: false,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    sim.write_clouds_yaml(&dir.path().join("clouds.yaml"), "simcloud")
        .unwrap();
    let w = World {
        store: ZkStore::new(zk.client().await),
        zk,
        sim,
        dir,
    };
    let cfg = Cfg {
        env: vec![
            ("FAKE_DIB_SIZE".into(), "1G".into()),
            ("FAKE_DIB_WRITE_MB".into(), "1024".into()),
        ],
        ..Cfg::default()
    };
    w.write_config("nodepool.yaml", "images", &cfg);
    let bin = tokio::task::spawn_blocking(|| workspace_bin("nodepool-builder"))
        .await
        .unwrap();
    let child = Command::new(bin)
        .arg("-f")
        .arg("-c")
        .arg(w.path("nodepool.yaml"))
        .env("OS_CLIENT_CONFIG_FILE", w.path("clouds.yaml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let p = Proc(child);
    let status = format!("/proc/{}/status", p.0.id());
    let hwm = || {
        std::fs::read_to_string(&status)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
            })
            .unwrap_or_default()
    };
    let built = wait_for("the build", || async {
        w.ready_builds().await.into_iter().next()
    })
    .await;
    let file = w.path(&format!("images/{IMAGE}-{}.qcow2", built.id));
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let hwm_after_build = hwm();
    let t0 = Instant::now();
    let up = wait_for("the upload", || w.ready_upload_of(&built)).await;
    let secs = t0.elapsed().as_secs_f64();
    let hwm_after_upload = hwm();
    let img = w
        .sim
        .admin()
        .images()
        .into_iter()
        .find(|i| Some(&i.id) == up.external_id.as_ref())
        .unwrap();
    println!(
        "BENCH upload: file {size} bytes, cloud size {:?}, upload ≤ {secs:.2} s ({:.0} MiB/s), builder VmHWM after build {hwm_after_build}, after upload {hwm_after_upload}",
        img.size,
        size as f64 / 1048576.0 / secs
    );
    signal(&p, libc::SIGTERM);
}
