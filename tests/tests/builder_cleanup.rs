//! `nodepool-builder` cleanup paths end to end (docs/builder.md: cleanup
//! and manual deletes): real ZooKeeper, the OpenStack simulator over HTTP, `fake-image-create`
//! writing real images with qemu-img, the builder in-process through
//! `nodepool_daemon::builder::start`. Covers vanished cloud images, delete-after-upload
//! with keep-formats, dead records (free and held locks), an image leaving the config
//! (its local files going first while the cloud refuses deletes), `image-delete` and
//! pause, upload retries, the build timeout, the exact shape of every build and upload
//! record the builder writes, `%p` in `dib-cmd`, and a reload that moves the builder to
//! another ZooKeeper. Every wait is bounded.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nodepool_daemon::builder::{self, BuilderHandle, BuilderOptions};
use nodepool_shared::cloud::{CloudDriver, CloudsFile, DriverOptions, OpenStackDriver};
use nodepool_shared::config::ConfigSource;
use nodepool_shared::model::{
    paths, BuildId, BuildState, ComponentKind, ImageBuild, ImageUpload, UploadState,
};
use nodepool_shared::testing::{wait_for, TestZk, WAIT};
use nodepool_shared::zk::{ZkLock, ZkSettings, ZkStore};
use nodepool_tests::builder_world::fixture;
use nodepool_tests::sim::{SimConfig, SimHandle, Simulator};
use serde_json::Value;

const IMAGE: &str = "ubuntu";
const PROVIDER: &str = "sim";

/// What the config file says.
#[derive(Clone)]
struct Cfg {
    /// The diskimage is in the top-level `diskimages` (and the provider's).
    image_configured: bool,
    /// Diskimage `formats`.
    formats: Vec<&'static str>,
    delete_after_upload: bool,
    keep_formats: Vec<&'static str>,
    build_timeout: Option<u64>,
    /// The provider lists the diskimage (else `diskimages: []`).
    provider_lists_image: bool,
    /// Provider diskimage `pause`.
    provider_pause: bool,
    env: Vec<(String, String)>,
    /// `dib-cmd` (default: the fake `disk-image-create` fixture).
    dib_cmd: Option<String>,
    /// The ZooKeeper to point `zookeeper-servers` at (default: the world's).
    zk: Option<ZkSettings>,
}

impl Default for Cfg {
    fn default() -> Self {
        Cfg {
            image_configured: true,
            formats: Vec::new(),
            delete_after_upload: false,
            keep_formats: Vec::new(),
            build_timeout: None,
            provider_lists_image: true,
            provider_pause: false,
            env: vec![("FAKE_DIB_SIZE".into(), "16M".into())],
            dib_cmd: None,
            zk: None,
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
    async fn new(cfg: &Cfg) -> World {
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
        w.write_config(cfg);
        w
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn image_file(&self, build: &BuildId, ext: &str) -> PathBuf {
        self.path(&format!("images/{IMAGE}-{build}.{ext}"))
    }

    /// (Re)writes `nodepool.yaml` (write-then-rename, so a reload never sees half a file).
    fn write_config(&self, cfg: &Cfg) {
        let s = cfg.zk.clone().unwrap_or_else(|| self.zk.settings());
        let (host, port) = s.hosts[0].clone();
        let list = |v: &[&str]| format!("[{}]", v.join(", "));
        let diskimages = if cfg.image_configured {
            let dib = cfg
                .dib_cmd
                .clone()
                .unwrap_or_else(|| fixture().display().to_string());
            let mut d = format!(
                "\n  - name: {IMAGE}\n    dib-cmd: '{dib}'\n    elements: [base, vm]\n    release: noble\n"
            );
            if !cfg.formats.is_empty() {
                d += &format!("    formats: {}\n", list(&cfg.formats));
            }
            if cfg.delete_after_upload {
                d += "    delete-after-upload: true\n";
            }
            if !cfg.keep_formats.is_empty() {
                d += &format!("    keep-formats: {}\n", list(&cfg.keep_formats));
            }
            if let Some(t) = cfg.build_timeout {
                d += &format!("    build-timeout: {t}\n");
            }
            d += "    env-vars:\n";
            for (k, v) in &cfg.env {
                d += &format!("      {k}: \"{v}\"\n");
            }
            d
        } else {
            " []\n".to_string()
        };
        let provider_images = if cfg.image_configured && cfg.provider_lists_image {
            format!(
                "\n      - name: {IMAGE}\n        pause: {}\n",
                cfg.provider_pause
            )
        } else {
            " []\n".to_string()
        };
        let text = format!(
            "images-dir: {images}\n\
             build-log-dir: {logs}\n\
             zookeeper-servers:\n  - host: {host}\n    port: {port}\n    chroot: {chroot}\n\
             diskimages:{diskimages}\
             providers:\n  - name: {PROVIDER}\n    cloud: simcloud\n    rate: 0\n    image-name-format: '{{image_name}}-{{upload_id}}'\n    diskimages:{provider_images}",
            images = self.path("images").display(),
            logs = self.path("logs").display(),
            chroot = s.chroot.clone().unwrap_or_default(),
        );
        let tmp = self.path("nodepool.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path("nodepool.yaml")).unwrap();
    }

    fn options(&self) -> BuilderOptions {
        let mut o = BuilderOptions::new(ConfigSource::new(self.path("nodepool.yaml"), None));
        o.clouds_file = Some(self.path("clouds.yaml"));
        o.cleanup_interval = Duration::from_millis(500);
        o.retry_delay = Duration::from_secs(1);
        o.config_check_interval = Duration::from_millis(200);
        o
    }

    async fn start(&self) -> BuilderHandle {
        builder::start(self.options()).await.unwrap()
    }

    /// A cloud driver of our own (to act on the cloud behind the builder's back).
    fn driver(&self) -> OpenStackDriver {
        let file = CloudsFile::load_from(&self.path("clouds.yaml")).unwrap();
        let mut o = DriverOptions::new("test");
        o.rate = 0.0;
        OpenStackDriver::new(file.cloud("simcloud").unwrap(), o).unwrap()
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

    async fn uploads_of(&self, build: &BuildId) -> Vec<ImageUpload> {
        self.store
            .uploads(IMAGE, build, PROVIDER)
            .await
            .unwrap()
            .into_iter()
            .map(|(u, _)| u)
            .collect()
    }

    async fn uploads(&self) -> Vec<ImageUpload> {
        let mut out = Vec::new();
        for b in self.builds().await {
            out.extend(self.uploads_of(&b.id).await);
        }
        out
    }

    async fn ready_upload_of(&self, build: &BuildId) -> Option<ImageUpload> {
        self.uploads_of(build)
            .await
            .into_iter()
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
                let up = self.ready_upload_of(&ready.last()?.id).await?;
                Some((ready, up))
            },
        )
        .await
    }

    fn cloud_image_ids(&self) -> BTreeSet<String> {
        self.sim
            .admin()
            .images()
            .into_iter()
            .filter(|i| i.properties.contains_key("nodepool_build_id"))
            .map(|i| i.id)
            .collect()
    }

    /// Names of the files in images-dir (builder_id.txt excepted).
    fn local_files(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.path("images"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "builder_id.txt")
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The raw JSON of a build znode.
    async fn raw_build(&self, id: &BuildId) -> Option<Value> {
        let (data, _) = self
            .store
            .client()
            .get(&paths::build(IMAGE, id))
            .await
            .unwrap()?;
        Some(serde_json::from_slice(&data).expect("build znode is JSON"))
    }

    /// The raw JSON of an upload znode.
    async fn raw_upload(&self, u: &ImageUpload) -> Option<Value> {
        let (data, _) = self.store.client().get(&u.path()).await.unwrap()?;
        Some(serde_json::from_slice(&data).expect("upload znode is JSON"))
    }
}

/// A counter of the activity report: the number after `name` ("cleanup passes 12").
fn counter(b: &BuilderHandle, name: &str) -> u64 {
    let report = b.state_report();
    let at = report
        .find(name)
        .unwrap_or_else(|| panic!("`{name}` not in {report}"));
    report[at + name.len()..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after `{name}` in {report}"))
}

/// (ready, failed) totals of builds or uploads ("builds ready 1 failed 0").
fn totals(b: &BuilderHandle, what: &str) -> (u64, u64) {
    let report = b.state_report();
    let key = format!("{what} ready ");
    let at = report
        .find(&key)
        .unwrap_or_else(|| panic!("`{key}` not in {report}"));
    let nums: Vec<u64> = report[at + key.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(2)
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(nums.len(), 2, "{report}");
    (nums[0], nums[1])
}

/// Waits until `n` more cleanup passes have completed.
async fn wait_passes(b: &BuilderHandle, n: u64) {
    let target = counter(b, "cleanup passes") + n;
    wait_for(&format!("{n} cleanup passes"), || async {
        (counter(b, "cleanup passes") >= target).then_some(())
    })
    .await;
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .expect("record is a JSON object")
        .keys()
        .cloned()
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A build record as Nodepool 11 writes it: `formats` a comma-joined
/// sorted string, present unless the build failed; `builder`/`builder_id` strings;
/// `state_time` a float; username/python_path/shell_type string or null.
fn check_build_record(v: &Value, state: &str, formats: Option<&str>) {
    let mut want = set(&[
        "state",
        "state_time",
        "builder",
        "builder_id",
        "username",
        "python_path",
        "shell_type",
    ]);
    if formats.is_some() {
        want.insert("formats".into());
    }
    assert_eq!(keys(v), want, "build record {v}");
    assert_eq!(v["state"], state, "{v}");
    assert!(v["state_time"].is_f64(), "state_time is a float: {v}");
    assert!(
        v["builder"].is_string() && v["builder_id"].is_string(),
        "{v}"
    );
    if let Some(f) = formats {
        assert_eq!(v["formats"], f, "{v}");
    }
    for k in ["username", "python_path", "shell_type"] {
        assert!(v[k].is_string() || v[k].is_null(), "{k}: {v}");
    }
    if state == "ready" {
        assert_eq!(v["username"], "zuul", "{v}");
        assert!(v["python_path"].is_string(), "{v}");
    }
}

/// An upload record as Nodepool 11 writes it: always every key.
fn check_upload_record(v: &Value, state: &str) {
    assert_eq!(
        keys(v),
        set(&[
            "state",
            "state_time",
            "external_id",
            "external_name",
            "format",
            "username",
            "python_path",
            "shell_type",
        ]),
        "upload record {v}"
    );
    assert_eq!(v["state"], state, "{v}");
    assert!(v["state_time"].is_f64(), "state_time is a float: {v}");
    for k in [
        "external_id",
        "external_name",
        "format",
        "username",
        "python_path",
        "shell_type",
    ] {
        assert!(v[k].is_string() || v[k].is_null(), "{k}: {v}");
    }
    if state == "ready" {
        assert!(v["external_id"].is_string() && v["external_name"].is_string());
        assert_eq!(v["format"], "qcow2", "{v}");
        assert_eq!(v["username"], "zuul", "{v}");
    }
}

// ------------------------------------------------------------------ 1. vanished

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_cloud_image_is_forgotten_and_uploaded_again() {
    let w = World::new(&Cfg::default()).await;
    let b = w.start().await;
    let (ready, up) = w.wait_ready(1).await;
    let build = &ready[0];
    check_build_record(
        &w.raw_build(&build.id).await.unwrap(),
        "ready",
        Some("qcow2"),
    );
    check_upload_record(&w.raw_upload(&up).await.unwrap(), "ready");

    // Someone deletes the image in the cloud behind Nodepool's back.
    let old = up.external_id.clone().unwrap();
    w.driver().delete_image(&old).await.unwrap();
    assert!(!w.cloud_image_ids().contains(&old));

    // The record goes, and a fresh upload of the same build follows.
    let fresh = wait_for("a fresh upload replacing the vanished one", || async {
        let ups = w.uploads_of(&build.id).await;
        let gone = ups.iter().all(|u| u.id != up.id);
        let fresh = ups
            .into_iter()
            .find(|u| u.state == UploadState::Ready && u.id != up.id);
        if gone {
            fresh
        } else {
            None
        }
    })
    .await;
    let new_id = fresh.external_id.clone().unwrap();
    assert_ne!(new_id, old);
    assert!(w.cloud_image_ids().contains(&new_id));
    // The fresh one is stable (not mistaken for vanished on later passes).
    wait_passes(&b, 3).await;
    let ups = w.uploads_of(&build.id).await;
    assert_eq!(ups.len(), 1, "{ups:?}");
    assert_eq!(ups[0].id, fresh.id);
    assert_eq!(w.cloud_image_ids(), BTreeSet::from([new_id]));
    b.stop();
    b.wait().await;
}

// ------------------------------------------------------- 2. delete-after-upload

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_after_upload_keeps_only_keep_formats() {
    let cfg = Cfg {
        formats: vec!["qcow2", "raw"],
        delete_after_upload: true,
        keep_formats: vec!["qcow2"],
        ..Cfg::default()
    };
    let w = World::new(&cfg).await;
    let b = w.start().await;
    let (ready, _) = w.wait_ready(1).await;
    let id = ready[0].id.clone();
    check_build_record(&w.raw_build(&id).await.unwrap(), "ready", Some("qcow2,raw"));
    wait_for("the raw image to be removed", || async {
        (!w.image_file(&id, "raw").exists()).then_some(())
    })
    .await;
    assert!(!w.image_file(&id, "raw.md5").exists());
    assert!(!w.image_file(&id, "raw.sha256").exists());
    assert!(w.image_file(&id, "qcow2").is_file(), "keep-formats kept");
    assert!(w.image_file(&id, "qcow2.md5").is_file());
    // Nothing else changes: build ready, upload ready, no re-upload.
    wait_passes(&b, 3).await;
    assert!(w.image_file(&id, "qcow2").is_file());
    assert_eq!(w.uploads().await.len(), 1);
    assert_eq!(w.ready_builds().await.len(), 1);

    // Without keep-formats every image file goes; the records stay.
    w.write_config(&Cfg {
        keep_formats: Vec::new(),
        ..cfg
    });
    wait_for("the qcow2 image to be removed", || async {
        (!w.image_file(&id, "qcow2").exists()).then_some(())
    })
    .await;
    wait_passes(&b, 3).await;
    let left: Vec<String> = w
        .local_files()
        .into_iter()
        .filter(|n| n.ends_with(".qcow2") || n.ends_with(".raw") || n.contains(".qcow2."))
        .collect();
    assert!(left.is_empty(), "image files left: {left:?}");
    assert_eq!(w.ready_builds().await.len(), 1);
    let ups = w.uploads().await;
    assert_eq!(ups.len(), 1, "no new upload without local files: {ups:?}");
    assert_eq!(ups[0].state, UploadState::Ready);
    b.stop();
    b.wait().await;
}

// ------------------------------------------------------------ 3. dead records

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_records_are_removed_but_locked_builds_stay() {
    let w = World::new(&Cfg::default()).await;
    let b = w.start().await;
    let (ready, up) = w.wait_ready(1).await;
    let good = ready[0].id.clone();

    // As if a builder died: an `uploading` upload and a `building` build, locks free.
    let mut dead_up = ImageUpload::new(IMAGE, good.clone(), PROVIDER);
    dead_up.format = Some("qcow2".into());
    w.store.create_upload(&mut dead_up).await.unwrap();
    let mut dead = ImageBuild::new(IMAGE, BuildId::from(""));
    dead.builder = Some("dead.example.org".into());
    dead.builder_id = Some("dead-builder".into());
    dead.formats = vec!["qcow2".into()];
    w.store.create_build(&mut dead).await.unwrap();
    // A `building` build whose build lock is held by a live builder (this test).
    let mut held = ImageBuild::new(IMAGE, BuildId::from(""));
    held.builder = Some("alive.example.org".into());
    held.builder_id = Some("alive-builder".into());
    w.store.create_build(&mut held).await.unwrap();
    let client = w.zk.client().await;
    let mut build_lock = ZkLock::new(&client, &paths::build_lock(IMAGE, &held.id), b"");
    assert!(build_lock.try_acquire().await.unwrap());

    wait_for("the dead records to be removed", || async {
        let dead_gone = w.store.get_build(IMAGE, &dead.id).await.unwrap().is_none();
        let up_gone = w
            .store
            .get_upload(IMAGE, &good, PROVIDER, &dead_up.id)
            .await
            .unwrap()
            .is_none();
        (dead_gone && up_gone).then_some(())
    })
    .await;
    wait_passes(&b, 3).await;
    let held_now = w.store.get_build(IMAGE, &held.id).await.unwrap();
    assert_eq!(
        held_now.map(|(b, _)| b.state),
        Some(BuildState::Building),
        "a build under its lock stays"
    );
    // The good build and its upload are untouched.
    assert_eq!(w.ready_builds().await.len(), 1);
    let ups = w.uploads_of(&good).await;
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].id, up.id);

    // The image build lock held instead (a builder is building this image): stays too.
    let mut image_lock = ZkLock::new(&client, &paths::image_build_lock(IMAGE), b"");
    assert!(image_lock.try_acquire().await.unwrap());
    build_lock.release().await.unwrap();
    wait_passes(&b, 3).await;
    assert!(
        w.store.get_build(IMAGE, &held.id).await.unwrap().is_some(),
        "a building build stays while the image build lock is held"
    );

    // Both locks free: it is dead and goes.
    image_lock.release().await.unwrap();
    wait_for("the no longer locked build to be removed", || async {
        w.store
            .get_build(IMAGE, &held.id)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(w.ready_builds().await.len(), 1);
    assert_eq!(w.uploads().await.len(), 1);
    b.stop();
    b.wait().await;
}

// ------------------------------------------------------ 4. image leaves config

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_removed_from_config_is_deleted_everywhere() {
    let w = World::new(&Cfg::default()).await;
    let b = w.start().await;
    w.wait_ready(1).await;
    w.store.request_build(IMAGE).await.unwrap();
    let (ready, _) = w.wait_ready(2).await;
    assert_eq!(w.cloud_image_ids().len(), 2);
    for r in &ready {
        assert!(w.image_file(&r.id, "qcow2").is_file());
    }

    w.write_config(&Cfg {
        image_configured: false,
        ..Cfg::default()
    });
    wait_for("builds, uploads, cloud images and files to go", || async {
        let done = w.builds().await.is_empty()
            && w.cloud_image_ids().is_empty()
            && w.local_files().is_empty();
        done.then_some(())
    })
    .await;
    // Nothing comes back.
    wait_passes(&b, 3).await;
    assert!(w.builds().await.is_empty());
    assert!(w.cloud_image_ids().is_empty());
    assert!(w.local_files().is_empty(), "{:?}", w.local_files());
    b.stop();
    b.wait().await;
}

/// Nodepool's `test_image_removal_dib_deletes_first`: while a removed image's cloud
/// image cannot be deleted, its upload stays `deleting`, the build is marked `deleting`
/// and its local files go at once; once the cloud deletes again, everything goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_image_removal_dib_deletes_first() {
    let w = World::new(&Cfg::default()).await;
    let b = w.start().await;
    let (ready, up) = w.wait_ready(1).await;
    let build = ready[0].id.clone();
    assert!(w.image_file(&build, "qcow2").is_file());
    // Break cloud image deletes.
    w.sim.admin().update_knobs(|k| {
        k.error_rates.insert("image.images.delete".into(), 1.0);
    });
    w.write_config(&Cfg {
        image_configured: false,
        ..Cfg::default()
    });
    wait_for("the build's local files to go first", || async {
        w.local_files().is_empty().then_some(())
    })
    .await;
    // The cloud image and both records are still there, `deleting`.
    let ext = up.external_id.clone().unwrap();
    assert!(w.cloud_image_ids().contains(&ext), "cloud image kept");
    let uploads = w.uploads_of(&build).await;
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(uploads[0].state, UploadState::Deleting);
    let builds = w.builds().await;
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert_eq!(builds[0].state, BuildState::Deleting);
    check_build_record(
        &w.raw_build(&build).await.unwrap(),
        "deleting",
        Some("qcow2"),
    );

    // Unbroken: the cloud image, the upload and the build go.
    w.sim.admin().update_knobs(|k| k.error_rates.clear());
    wait_for("cloud image, upload and build to go", || async {
        (w.builds().await.is_empty() && w.cloud_image_ids().is_empty()).then_some(())
    })
    .await;
    assert!(w.local_files().is_empty());
    b.stop();
    b.wait().await;
}

// ----------------------------------------------------------- 5. image-delete

/// `nodepool image-delete`: the upload is set `deleting` (refused while uploading).
async fn image_delete(w: &World, u: &ImageUpload) {
    let (mut rec, stat) = w
        .store
        .get_upload(IMAGE, &u.build_id, PROVIDER, &u.id)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(rec.state, UploadState::Uploading);
    rec.set_state(UploadState::Deleting);
    w.store
        .store_upload(&rec, Some(stat.version))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_delete_removes_one_upload_and_the_newest_is_uploaded_again_unless_paused() {
    let w = World::new(&Cfg::default()).await;
    let b = w.start().await;
    let (first, up_old) = w.wait_ready(1).await;
    w.store.request_build(IMAGE).await.unwrap();
    let (ready, up_new) = w.wait_ready(2).await;
    assert_eq!(ready[0].id, first[0].id);
    let (old_build, new_build) = (ready[0].id.clone(), ready[1].id.clone());

    // Delete the older upload: gone from cloud and ZooKeeper; the newest stays; the
    // older build stays ready and is not uploaded again (only the newest is).
    image_delete(&w, &up_old).await;
    let old_ext = up_old.external_id.clone().unwrap();
    wait_for("the deleted upload to go", || async {
        let gone =
            w.uploads_of(&old_build).await.is_empty() && !w.cloud_image_ids().contains(&old_ext);
        gone.then_some(())
    })
    .await;
    wait_passes(&b, 3).await;
    assert!(w.uploads_of(&old_build).await.is_empty());
    assert_eq!(w.ready_builds().await.len(), 2);
    let ups = w.uploads_of(&new_build).await;
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].id, up_new.id);
    assert_eq!(ups[0].state, UploadState::Ready);
    assert!(w
        .cloud_image_ids()
        .contains(up_new.external_id.as_ref().unwrap()));

    // Provider image paused: deleting the newest upload leaves no upload at all.
    w.write_config(&Cfg {
        provider_pause: true,
        ..Cfg::default()
    });
    wait_for("the reload", || async {
        (counter(&b, "config reloads") >= 1).then_some(())
    })
    .await;
    image_delete(&w, &up_new).await;
    wait_for("the newest upload to go", || async {
        (w.uploads().await.is_empty() && w.cloud_image_ids().is_empty()).then_some(())
    })
    .await;
    wait_passes(&b, 3).await;
    assert!(w.uploads().await.is_empty(), "no upload while paused");
    assert!(w.cloud_image_ids().is_empty());

    // Unpaused: the upload worker uploads the newest build again (Nodepool behaviour).
    w.write_config(&Cfg::default());
    let again = wait_for("the newest build uploaded again", || {
        w.ready_upload_of(&new_build)
    })
    .await;
    assert_ne!(again.id, up_new.id);
    assert!(w.uploads_of(&old_build).await.is_empty());
    assert_eq!(
        w.cloud_image_ids(),
        BTreeSet::from([again.external_id.clone().unwrap()])
    );
    b.stop();
    b.wait().await;
}

// ------------------------------------------------------------ 6. upload retry

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_uploads_are_retried_and_their_records_cleaned() {
    let w = World::new(&Cfg::default()).await;
    // Every image data upload fails until the knob is cleared.
    w.sim.admin().update_knobs(|k| {
        k.error_rates.insert("image.images.upload".into(), 1.0);
    });
    let mut opts = w.options();
    // Slow cleanup, so that a failed record is certainly seen before it is removed.
    opts.cleanup_interval = Duration::from_secs(3);
    let b = builder::start(opts).await.unwrap();
    let raw = wait_for("a failed upload record", || async {
        for u in w.uploads().await {
            if u.state == UploadState::Failed {
                return w.raw_upload(&u).await;
            }
        }
        None
    })
    .await;
    check_upload_record(&raw, "failed");
    wait_for("a second failed attempt", || async {
        (totals(&b, "uploads").1 >= 2).then_some(())
    })
    .await;

    w.sim.admin().update_knobs(|k| {
        k.error_rates.clear();
    });
    let (_, up) = w.wait_ready(1).await;
    check_upload_record(&w.raw_upload(&up).await.unwrap(), "ready");
    wait_for("the failed records to be cleaned", || async {
        let ups = w.uploads().await;
        (ups.len() == 1 && ups[0].id == up.id).then_some(())
    })
    .await;
    assert_eq!(
        w.cloud_image_ids(),
        BTreeSet::from([up.external_id.clone().unwrap()])
    );
    // Each failed attempt removed the cloud image it had created.
    assert!(totals(&b, "uploads").1 >= 2);
    b.stop();
    b.wait().await;
}

// ---------------------------------------------------------- 7. build timeout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_timeout_fails_the_build_and_keeps_the_last_good_image() {
    let w = World::new(&Cfg::default()).await;
    let mut opts = w.options();
    // Slow cleanup, so that the failed record is certainly seen before it is removed.
    opts.cleanup_interval = Duration::from_secs(3);
    let b = builder::start(opts).await.unwrap();
    let (ready, up) = w.wait_ready(1).await;
    let good = ready[0].id.clone();

    let pids = w.path("dib.pids");
    // Long enough that a loaded machine has started DIB and written its pid file
    // before the timeout kills it; far below the 120 s sleep.
    let mut cfg = Cfg {
        build_timeout: Some(10),
        ..Cfg::default()
    };
    cfg.env.push(("FAKE_DIB_SLEEP".into(), "120".into()));
    cfg.env
        .push(("FAKE_DIB_PID_FILE".into(), pids.display().to_string()));
    w.write_config(&cfg);
    wait_for("the reload", || async {
        (counter(&b, "config reloads") >= 1).then_some(())
    })
    .await;
    w.store.request_build(IMAGE).await.unwrap();
    let text = wait_for("DIB to be running", || async {
        std::fs::read_to_string(&pids).ok()
    })
    .await;
    // The `building` record as Nodepool writes it.
    let building = w
        .builds()
        .await
        .into_iter()
        .find(|b| b.state == BuildState::Building)
        .expect("a building record");
    check_build_record(
        &w.raw_build(&building.id).await.unwrap(),
        "building",
        Some("qcow2"),
    );
    let started = Instant::now();
    // Recorded failed, as Nodepool writes it (no `formats`).
    let raw = wait_for("the build to time out", || async {
        w.raw_build(&building.id)
            .await
            .filter(|raw| raw["state"] == "failed")
    })
    .await;
    check_build_record(&raw, "failed", None);
    assert_eq!(totals(&b, "builds"), (1, 1));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "killed by the timeout, not the 120 s sleep"
    );
    for pid in text.split_whitespace() {
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
    // The last good build and its image stay; the failed record and files go.
    wait_for("the failed build record to be removed", || async {
        w.store
            .get_build(IMAGE, &building.id)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let now_ready = w.ready_builds().await;
    assert_eq!(now_ready.len(), 1);
    assert_eq!(now_ready[0].id, good);
    assert_eq!(w.ready_upload_of(&good).await.unwrap().id, up.id);
    assert!(w
        .cloud_image_ids()
        .contains(up.external_id.as_ref().unwrap()));
    assert!(w.image_file(&good, "qcow2").is_file());
    assert!(!w
        .local_files()
        .iter()
        .any(|f| f.contains(building.id.as_str())));
    b.stop();
    b.wait().await;
}

// ------------------------------------------------------------- record shapes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploading_and_deleting_records_keep_nodepool_shape() {
    let paused = Cfg {
        provider_pause: true,
        ..Cfg::default()
    };
    let w = World::new(&paused).await;
    let b = w.start().await;
    let build = wait_for("a ready build", || async {
        w.ready_builds().await.into_iter().next()
    })
    .await;
    // A slow cloud makes the transient records visible.
    w.sim.admin().update_knobs(|k| k.api_latency_ms = 1000);
    w.write_config(&Cfg::default());
    let raw = wait_for("an uploading record", || async {
        for u in w.uploads_of(&build.id).await {
            if u.state == UploadState::Uploading {
                return w.raw_upload(&u).await;
            }
        }
        None
    })
    .await;
    check_upload_record(&raw, "uploading");
    assert!(raw["external_id"].is_null(), "{raw}");
    let up = wait_for("the ready upload", || w.ready_upload_of(&build.id)).await;
    check_upload_record(&w.raw_upload(&up).await.unwrap(), "ready");

    // The provider stops listing the image: cleanup marks the upload `deleting`, then
    // deletes the cloud image (slowly) and the record.
    w.write_config(&Cfg {
        provider_lists_image: false,
        ..Cfg::default()
    });
    let raw = wait_for("a deleting record", || async {
        w.raw_upload(&up)
            .await
            .filter(|raw| raw["state"] == "deleting")
    })
    .await;
    check_upload_record(&raw, "deleting");
    assert_eq!(raw["external_id"].as_str(), up.external_id.as_deref());
    wait_for("the upload to go", || async {
        (w.uploads().await.is_empty() && w.cloud_image_ids().is_empty()).then_some(())
    })
    .await;
    w.sim.admin().update_knobs(|k| k.api_latency_ms = 0);
    check_build_record(
        &w.raw_build(&build.id).await.unwrap(),
        "ready",
        Some("qcow2"),
    );
    b.stop();
    b.wait().await;
}

// ------------------------------------------------------------ dib-cmd %p

/// `%p` in `dib-cmd` is the directory of the builder's executable (Nodepool: of its
/// Python package); here the embedder points it at the fixtures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dib_cmd_percent_p_is_the_program_directory() {
    let w = World::new(&Cfg {
        dib_cmd: Some("%p/fake-image-create".into()),
        ..Cfg::default()
    })
    .await;
    let mut opts = w.options();
    opts.program_dir = fixture().parent().unwrap().to_path_buf();
    let b = builder::start(opts).await.unwrap();
    let (ready, _) = w.wait_ready(1).await;
    assert!(w.image_file(&ready[0].id, "qcow2").is_file());
    assert_eq!(totals(&b, "builds").1, 0, "no failed build");
    b.stop();
    b.wait().await;
}

// ------------------------------------------------- zookeeper-servers reloaded

/// A reload that points `zookeeper-servers` at another ensemble (a second real
/// ZooKeeper) moves the builder there without a restart: its component record leaves
/// the old ensemble and appears on the new one, where it builds and uploads the image
/// (the new ensemble has no build of it). The old ensemble's records stay untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_servers_change_moves_the_builder() {
    let w = World::new(&Cfg::default()).await;
    let b = w.start().await;
    let (ready, _) = w.wait_ready(1).await;
    // The builder records' names (or the error reading them): a failure shows them.
    let records = |store: &ZkStore| {
        let store = store.clone();
        async move {
            store
                .components(ComponentKind::Builder)
                .await
                .map(|c| c.into_iter().map(|s| s.name).collect::<Vec<_>>())
                .map_err(|e| e.to_string())
        }
    };
    let builders = |store: &ZkStore| {
        let records = records(store);
        async move { records.await.map_or(usize::MAX, |names| names.len()) }
    };
    assert_eq!(builders(&w.store).await, 1);
    let other = TestZk::dedicated().await;
    let other_store = ZkStore::new(other.client().await);
    w.write_config(&Cfg {
        zk: Some(other.settings()),
        ..Cfg::default()
    });
    let deadline = Instant::now() + WAIT;
    loop {
        let (new, old) = (records(&other_store).await, records(&w.store).await);
        if matches!((&new, &old), (Ok(n), Ok(o)) if n.len() == 1 && o.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for the builder on the new ensemble only: \
             builder records on the new ensemble {new:?}, on the old one {old:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let up = wait_for("a ready build uploaded on the new ensemble", || async {
        let builds = other_store.builds(IMAGE).await.ok()?;
        let (b, _) = builds
            .into_iter()
            .find(|(b, _)| b.state == BuildState::Ready)?;
        let ups = other_store.uploads(IMAGE, &b.id, PROVIDER).await.ok()?;
        ups.into_iter()
            .map(|(u, _)| u)
            .find(|u| u.state == UploadState::Ready)
    })
    .await;
    assert!(w
        .cloud_image_ids()
        .contains(up.external_id.as_ref().unwrap()));
    // Nothing was done to the old ensemble's records.
    let old = w.ready_builds().await;
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].id, ready[0].id);
    b.stop();
    b.wait().await;
    assert_eq!(
        records(&other_store).await,
        Ok(Vec::new()),
        "unregistered at stop"
    );
}
