//! One `nodepool-builder` test world with the builder as a real process: a ZooKeeper
//! chroot, the OpenStack simulator over HTTP, a temp dir with `nodepool.yaml` (one
//! diskimage built by `tests/fixtures/fake-image-create`, any number of providers) and
//! `clouds.yaml`, and the queries the builder tests wait on (builds, uploads, cloud
//! images, local files). Used by the builder fault and scheduling suites.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nodepool_shared::model::{BuildState, ImageBuild, ImageUpload, UploadState};
use nodepool_shared::testing::{wait_for_within, TestZk};
use nodepool_shared::zk::ZkStore;

use crate::daemons::{workspace_bin, DaemonProc};
use crate::sim::state::Image;
use crate::sim::{Knobs, SimConfig, SimHandle, Simulator};

/// The diskimage every world builds.
pub const IMAGE: &str = "ubuntu";

/// One provider of the generated config (all on the one simulator cloud).
#[derive(Clone, Debug)]
pub struct ProviderCfg {
    pub name: String,
    /// Lists [`IMAGE`] in its `diskimages` (else `diskimages: []`).
    pub lists_image: bool,
    /// The provider diskimage entry's `pause`.
    pub pause: bool,
}

impl ProviderCfg {
    /// A provider listing the image, not paused.
    pub fn new(name: &str) -> ProviderCfg {
        ProviderCfg {
            name: name.to_string(),
            lists_image: true,
            pause: false,
        }
    }
}

/// What `nodepool.yaml` says.
#[derive(Clone, Debug)]
pub struct BuilderCfg {
    /// The diskimage's `pause`.
    pub image_pause: bool,
    /// The diskimage's `rebuild-age` in seconds (Nodepool's default when `None`).
    pub rebuild_age: Option<u64>,
    /// The diskimage's `env-vars` (the `FAKE_DIB_*` knobs of the fixture).
    pub env: Vec<(String, String)>,
    pub providers: Vec<ProviderCfg>,
    /// `zookeeper-timeout` (the session timeout: how long a killed builder's locks
    /// outlive it).
    pub zk_timeout: u64,
}

impl Default for BuilderCfg {
    fn default() -> Self {
        BuilderCfg {
            image_pause: false,
            rebuild_age: None,
            env: vec![("FAKE_DIB_SIZE".into(), "16M".into())],
            providers: vec![ProviderCfg::new("sim")],
            zk_timeout: 10,
        }
    }
}

impl BuilderCfg {
    /// Sets (or replaces) one diskimage env var.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }
}

/// The fake `disk-image-create`.
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fake-image-create")
}

/// ZooKeeper, simulator, config files; builders started with [`Self::spawn_builder`].
pub struct BuilderWorld {
    pub zk: TestZk,
    pub sim: SimHandle,
    pub dir: tempfile::TempDir,
    pub store: ZkStore,
    started: u32,
}

impl BuilderWorld {
    /// A world on `zk` with simulator `knobs`, config `cfg` written.
    pub async fn new(zk: TestZk, knobs: Knobs, cfg: &BuilderCfg) -> BuilderWorld {
        let sim = Simulator::start(SimConfig {
            knobs,
            ..SimConfig::default()
        })
        .await
        .expect("simulator");
        let dir = tempfile::tempdir().expect("tempdir");
        sim.write_clouds_yaml(&dir.path().join("clouds.yaml"), "simcloud")
            .expect("clouds.yaml");
        let store = ZkStore::new(zk.client().await);
        let w = BuilderWorld {
            zk,
            sim,
            dir,
            store,
            started: 0,
        };
        w.write_config(cfg);
        w
    }

    /// A path in the world's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// (Re)writes `nodepool.yaml` (write-then-rename: a reload never sees half a file).
    pub fn write_config(&self, cfg: &BuilderCfg) {
        let s = self.zk.settings();
        let (host, port) = s.hosts[0].clone();
        let mut image = format!(
            "  - name: {IMAGE}\n    dib-cmd: {dib}\n    elements: [base, vm]\n    release: noble\n    pause: {pause}\n",
            dib = fixture().display(),
            pause = cfg.image_pause,
        );
        if let Some(age) = cfg.rebuild_age {
            image += &format!("    rebuild-age: {age}\n");
        }
        image += "    env-vars:\n";
        for (k, v) in &cfg.env {
            image += &format!("      {k}: \"{v}\"\n");
        }
        let mut providers = String::new();
        for p in &cfg.providers {
            providers += &format!(
                "  - name: {}\n    cloud: simcloud\n    rate: 0\n    image-name-format: '{{image_name}}-{{upload_id}}'\n    diskimages:",
                p.name
            );
            if p.lists_image {
                providers += &format!("\n      - name: {IMAGE}\n        pause: {}\n", p.pause);
            } else {
                providers += " []\n";
            }
        }
        let text = format!(
            "images-dir: {images}\nbuild-log-dir: {logs}\nzookeeper-timeout: {t}\n\
             zookeeper-servers:\n  - host: {host}\n    port: {port}\n    chroot: {chroot}\n\
             diskimages:\n{image}providers:\n{providers}",
            images = self.path("images").display(),
            logs = self.path("logs").display(),
            t = cfg.zk_timeout,
            chroot = s.chroot.clone().unwrap_or_default(),
        );
        let tmp = self.path("nodepool.yaml.tmp");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, self.path("nodepool.yaml")).expect("rename config");
    }

    /// Starts the `nodepool-builder` binary on this world's config with short test
    /// intervals (cleanup 1 s, retry 1 s, config check 0.2 s); its log is
    /// `builder-<n>.log` in the temp dir.
    pub fn spawn_builder(&mut self) -> DaemonProc {
        self.started += 1;
        let mut cmd = Command::new(workspace_bin("nodepool-builder"));
        cmd.arg("-c")
            .arg(self.path("nodepool.yaml"))
            .arg("-f")
            .args([
                "--cleanup-interval",
                "1",
                "--retry-delay",
                "1",
                "--config-check-interval",
                "0.2",
            ])
            .env("OS_CLIENT_CONFIG_FILE", self.path("clouds.yaml"))
            .env(
                "RUST_LOG",
                std::env::var("BUILDER_TEST_LOG").unwrap_or_else(|_| "info".into()),
            );
        DaemonProc::spawn(cmd, &self.path(&format!("builder-{}.log", self.started)))
    }

    /// Every build record of [`IMAGE`].
    pub async fn builds(&self) -> Vec<ImageBuild> {
        self.store
            .builds(IMAGE)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(b, _)| b)
            .collect()
    }

    /// Ready builds, oldest first.
    pub async fn ready_builds(&self) -> Vec<ImageBuild> {
        let mut v: Vec<ImageBuild> = self
            .builds()
            .await
            .into_iter()
            .filter(|b| b.state == BuildState::Ready)
            .collect();
        v.sort_by(|a, b| a.state_time.total_cmp(&b.state_time));
        v
    }

    /// Every upload record of [`IMAGE`] to `provider`, over all builds.
    pub async fn uploads(&self, provider: &str) -> Vec<ImageUpload> {
        let mut out = Vec::new();
        for b in self.builds().await {
            if let Ok(list) = self.store.uploads(IMAGE, &b.id, provider).await {
                out.extend(list.into_iter().map(|(u, _)| u));
            }
        }
        out
    }

    /// Waits (at most `limit`) until the newest ready build has a ready upload to
    /// `provider`; returns both.
    pub async fn wait_uploaded(
        &self,
        provider: &str,
        limit: Duration,
    ) -> (ImageBuild, ImageUpload) {
        wait_for_within(
            &format!("the newest ready build uploaded to {provider}"),
            limit,
            || async {
                let newest = self.ready_builds().await.pop()?;
                let up = self
                    .store
                    .uploads(IMAGE, &newest.id, provider)
                    .await
                    .ok()?
                    .into_iter()
                    .map(|(u, _)| u)
                    .find(|u| u.state == UploadState::Ready)?;
                Some((newest, up))
            },
        )
        .await
    }

    /// Simulator images carrying Nodepool's `nodepool_build_id` property.
    pub fn nodepool_images(&self) -> Vec<Image> {
        self.sim
            .admin()
            .images()
            .into_iter()
            .filter(|i| i.properties.contains_key("nodepool_build_id"))
            .collect()
    }

    /// Names of the files in images-dir (`builder_id.txt` excepted).
    pub fn local_files(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.path("images"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "builder_id.txt")
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The value of string property `key` of a simulator image.
pub fn image_property(i: &Image, key: &str) -> Option<String> {
    i.properties
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}
