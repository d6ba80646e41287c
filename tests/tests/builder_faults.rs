//! Builder fault suite (issue "Reliability: faults survived, nothing lost, nothing
//! leaked"): the `nodepool-builder` binary as a child process, a real ZooKeeper, the
//! OpenStack simulator over HTTP, `fake-image-create` building real qcow2 images.
//! `kill -9` during a build and during an upload, a ZooKeeper restart during a build,
//! HTTP 5xx on Glance. Every wait is bounded, nothing asserts on timing; figures are
//! printed (`--nocapture`) and copied into docs/reliability.md.
//!
//! The builder binary is built on first use (`nodepool_tests::daemons::workspace_bin`).

use std::time::{Duration, Instant};

use nodepool_shared::model::{paths, BuildState, ImageUpload, UploadState};
use nodepool_shared::testing::{bounded_serial, wait_for_within, TestZk};
use nodepool_tests::builder_world::{image_property, BuilderCfg, BuilderWorld, IMAGE};
use nodepool_tests::daemons::DaemonProc;
use nodepool_tests::sim::state::Image;
use nodepool_tests::sim::Knobs;

const PROVIDER: &str = "sim";
/// Upper bound of each wait for the builder to reach a state.
const WAIT: Duration = Duration::from_secs(90);

/// Whether process `pid` still exists (a zombie of another parent counts as gone).
fn process_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// No lock of the image (build lock, every build's upload locks) has a contender.
async fn no_stuck_locks(w: &BuilderWorld) -> bool {
    let store = &w.store;
    if !store
        .lock_contenders(&paths::image_build_lock(IMAGE))
        .await
        .unwrap_or_default()
        .is_empty()
    {
        return false;
    }
    for b in w.builds().await {
        let dir = paths::provider_upload_lock(IMAGE, &b.id, PROVIDER);
        if !store
            .lock_contenders(&dir)
            .await
            .unwrap_or_default()
            .is_empty()
        {
            return false;
        }
    }
    true
}

/// A world whose Glance holds every upload in `saving` (60 s), with the given session
/// timeout, and an upload of it in progress: the `uploading` record and its cloud image
/// (in `saving`).
async fn world_with_upload_in_progress(
    zk_timeout: u64,
) -> (BuilderWorld, DaemonProc, ImageUpload, Image) {
    let zk = TestZk::shared().await;
    let knobs = Knobs {
        image_upload_delay_ms: 60_000,
        ..Knobs::default()
    };
    let cfg = BuilderCfg {
        zk_timeout,
        ..BuilderCfg::default()
    };
    let mut w = BuilderWorld::new(zk, knobs, &cfg).await;
    let b = w.spawn_builder();
    let (upload, cloud) = wait_for_within("an upload in progress", WAIT, || async {
        let u = w
            .uploads(PROVIDER)
            .await
            .into_iter()
            .find(|u| u.state == UploadState::Uploading)?;
        let img = w.nodepool_images().into_iter().find(|i| {
            image_property(i, "nodepool_upload_id").as_deref() == Some(u.id.as_str())
                && i.status == "saving"
        })?;
        Some((u, img))
    })
    .await;
    (w, b, upload, cloud)
}

/// Waits until the upload record `gone` and cloud image `image` are removed and no lock
/// is left taken; returns the time since `since`.
async fn wait_upload_cleaned(
    w: &BuilderWorld,
    gone: &ImageUpload,
    image: &Image,
    since: Instant,
) -> Duration {
    let cleaned = wait_for_within(
        "the upload record and its cloud image removed",
        WAIT,
        || async {
            let record_left = w.uploads(PROVIDER).await.iter().any(|u| u.id == gone.id);
            let image_left = w.nodepool_images().iter().any(|i| i.id == image.id);
            (!record_left && !image_left).then(|| since.elapsed())
        },
    )
    .await;
    wait_for_within("no lock left taken", WAIT, || async {
        no_stuck_locks(w).await.then_some(())
    })
    .await;
    cleaned
}

/// Only ready upload records remain, and the cloud holds exactly the image of `ready`.
fn assert_only_the_ready_upload(records: &[ImageUpload], images: &[Image], ready: &ImageUpload) {
    assert!(
        records.iter().all(|u| u.state == UploadState::Ready),
        "only ready upload records remain: {records:?}"
    );
    let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![ready.external_id.as_deref().unwrap_or_default()],
        "the ready upload's image is the only Nodepool image left"
    );
}

/// Freezes the builder (SIGSTOP) for `long` (past its session timeout); it stays
/// stopped until [`thaw`]. Returns when the freeze began.
async fn freeze(b: &DaemonProc, long: Duration) -> Instant {
    // SAFETY: plain kill(2) of our own child.
    unsafe {
        libc::kill(b.pid(), libc::SIGSTOP);
    }
    let frozen = Instant::now();
    tokio::time::sleep(long).await;
    frozen
}

/// Resumes a builder stopped by [`freeze`] (SIGCONT).
fn thaw(b: &DaemonProc) {
    // SAFETY: plain kill(2) of our own child.
    unsafe {
        libc::kill(b.pid(), libc::SIGCONT);
    }
}

/// The resumed builder still runs, logged `noticed` (it saw its lock go with the
/// session), stops on SIGTERM and never panicked.
async fn resumed_builder_is_fine(mut b: DaemonProc, noticed: &str) {
    assert!(b.alive(), "the builder keeps running");
    let log = b.log_text();
    assert!(
        log.contains(noticed),
        "the builder stopped the work it no longer held (`{noticed}`):\n{log}"
    );
    assert!(b.stop().await, "the builder stops on SIGTERM");
    assert!(!log.contains("panicked"), "builder panicked:\n{log}");
}

/// a. `kill -9` of the builder while DIB runs (and has left a partial image), restart:
/// the dead `building` record is recognised once its lock is free and removed with its
/// files, a new build becomes ready and is uploaded, no lock stays taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_build_then_restart() {
    bounded_serial(async {
        let zk = TestZk::shared().await;
        let mut w = BuilderWorld::new(zk, Knobs::default(), &BuilderCfg::default()).await;
        let pidfile = w.path("dib.pid");
        let cfg = BuilderCfg {
            zk_timeout: 5,
            ..BuilderCfg::default()
        }
        .with_env("FAKE_DIB_SLEEP", "4")
        .with_env("FAKE_DIB_PARTIAL", "1")
        .with_env("FAKE_DIB_PID_FILE", &pidfile.display().to_string());
        w.write_config(&cfg);
        let b1 = w.spawn_builder();
        // DIB is sleeping with a partial image on disk.
        let dead = wait_for_within("a build running with a partial image", WAIT, || async {
            let b = w
                .builds()
                .await
                .into_iter()
                .find(|b| b.state == BuildState::Building)?;
            let partial = format!("{IMAGE}-{}.qcow2", b.id);
            (pidfile.is_file() && w.local_files().contains(&partial)).then_some(b)
        })
        .await;
        let dib_pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid file")
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("DIB pid");
        let _ = std::fs::remove_file(&pidfile);
        let files_at_kill: Vec<String> = w
            .local_files()
            .into_iter()
            .filter(|f| f.contains(dead.id.as_str()))
            .collect();
        b1.kill9();
        let killed = Instant::now();

        let b2 = w.spawn_builder();
        let (ready, up) = w.wait_uploaded(PROVIDER, WAIT).await;
        let ready_after = killed.elapsed();
        assert_ne!(ready.id, dead.id, "a new build, not the dead one");
        // The dead record goes (its lock is free once the killed session expired), and
        // with it every file of the dead build — also what the orphaned DIB process
        // writes when it finishes after the kill.
        let dead_gone = wait_for_within("the dead build record removed", WAIT, || async {
            let gone = w.store.get_build(IMAGE, &dead.id).await.ok()?.is_none();
            gone.then(|| killed.elapsed())
        })
        .await;
        wait_for_within("the orphaned DIB of the killed builder to end", WAIT, || async {
            (!process_running(dib_pid)).then_some(())
        })
        .await;
        let files_gone = wait_for_within("no file of the dead build", WAIT, || async {
            let left = w
                .local_files()
                .into_iter()
                .any(|f| f.contains(dead.id.as_str()));
            (!left).then(|| killed.elapsed())
        })
        .await;
        wait_for_within("no lock left taken", WAIT, || async {
            no_stuck_locks(&w).await.then_some(())
        })
        .await;
        let builds = w.builds().await;
        println!(
            "kill -9 during a build: files of the dead build at kill {files_at_kill:?}; after the restart the new build was uploaded in {:.1} s, \
             the dead record removed at {:.1} s, its files at {:.1} s; builds now {:?}",
            ready_after.as_secs_f64(),
            dead_gone.as_secs_f64(),
            files_gone.as_secs_f64(),
            builds.iter().map(|b| b.state.to_string()).collect::<Vec<_>>()
        );
        assert!(
            files_at_kill.iter().any(|f| f.ends_with(".qcow2")),
            "the killed build had left a partial image: {files_at_kill:?}"
        );
        assert_eq!(up.state, UploadState::Ready);
        assert!(
            builds.iter().all(|b| b.state == BuildState::Ready),
            "only ready builds remain: {builds:?}"
        );
        let log = b2.log_text();
        assert!(
            log.contains("deleted image build") && log.contains(dead.id.as_str()),
            "the restarted builder removed the dead build:\n{log}"
        );
        assert!(b2.stop().await, "the builder stops on SIGTERM");
        assert!(!log.contains("panicked"), "builder panicked:\n{log}");
    })
    .await;
}

/// a2. The builder freezes (SIGSTOP) past its ZooKeeper session timeout while DIB runs,
/// then resumes: its build lock went with the session, so it kills the DIB and the build
/// ends `failed` or is removed (never `ready`); a new build becomes ready and is
/// uploaded, no file of the stopped build is left, no lock stays taken, and the builder
/// keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_during_build() {
    bounded_serial(async {
        let zk = TestZk::shared().await;
        let mut w = BuilderWorld::new(zk, Knobs::default(), &BuilderCfg::default()).await;
        let cfg = BuilderCfg {
            zk_timeout: 3,
            ..BuilderCfg::default()
        }
        .with_env("FAKE_DIB_SLEEP", "10")
        .with_env("FAKE_DIB_PARTIAL", "1");
        w.write_config(&cfg);
        let b = w.spawn_builder();
        let stopped = wait_for_within("a build running", WAIT, || async {
            w.builds()
                .await
                .into_iter()
                .find(|b| b.state == BuildState::Building)
        })
        .await;
        let frozen = freeze(&b, Duration::from_secs(7)).await;
        thaw(&b);
        let (ready, up) = w.wait_uploaded(PROVIDER, WAIT).await;
        let ready_after = frozen.elapsed();
        assert_ne!(ready.id, stopped.id, "a new build, not the stopped one");
        let gone = wait_for_within("the stopped build and its files gone", WAIT, || async {
            let record = w.store.get_build(IMAGE, &stopped.id).await.ok()?;
            let files = w
                .local_files()
                .into_iter()
                .any(|f| f.contains(stopped.id.as_str()));
            (record.is_none() && !files).then(|| frozen.elapsed())
        })
        .await;
        wait_for_within("no lock left taken", WAIT, || async {
            no_stuck_locks(&w).await.then_some(())
        })
        .await;
        let builds = w.builds().await;
        println!(
            "builder frozen 7 s past a 3 s session during a build: new build uploaded {:.1} s after the freeze, \
             the stopped build's record and files gone at {:.1} s; builds now {:?}",
            ready_after.as_secs_f64(),
            gone.as_secs_f64(),
            builds.iter().map(|b| b.state.to_string()).collect::<Vec<_>>()
        );
        assert_eq!(up.state, UploadState::Ready);
        assert!(
            builds.iter().all(|b| b.state == BuildState::Ready),
            "only ready builds remain: {builds:?}"
        );
        resumed_builder_is_fine(b, "ZooKeeper session lost during the build").await;
    })
    .await;
}

/// b. `kill -9` of the builder while Glance receives the image (the simulator holds
/// the upload in `saving`), restart: the dead `uploading` record is removed once its
/// lock is free, together with the half-uploaded cloud image it never recorded; a new
/// upload ends ready and is the only Nodepool image in the cloud.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_upload_then_restart() {
    bounded_serial(async {
        let (mut w, b1, dead, cloud) = world_with_upload_in_progress(5).await;
        b1.kill9();
        let killed = Instant::now();
        w.sim.admin().update_knobs(|k| k.image_upload_delay_ms = 0);

        let b2 = w.spawn_builder();
        let (_, up) = w.wait_uploaded(PROVIDER, WAIT).await;
        let ready_after = killed.elapsed();
        assert_ne!(up.id, dead.id, "a new upload");
        let cleaned = wait_upload_cleaned(&w, &dead, &cloud, killed).await;
        let records = w.uploads(PROVIDER).await;
        let images = w.nodepool_images();
        println!(
            "kill -9 during an upload (cloud image {} `{}` at kill): new upload ready {:.1} s after the restart, \
             dead record and half-uploaded image gone at {:.1} s; now {} upload records, {} Nodepool images in the cloud",
            cloud.id,
            cloud.status,
            ready_after.as_secs_f64(),
            cleaned.as_secs_f64(),
            records.len(),
            images.len()
        );
        assert_only_the_ready_upload(&records, &images, &up);
        let log = b2.log_text();
        assert!(b2.stop().await, "the builder stops on SIGTERM");
        assert!(!log.contains("panicked"), "builder panicked:\n{log}");
    })
    .await;
}

/// b2. The builder freezes (SIGSTOP) past its ZooKeeper session timeout while Glance
/// holds its upload, then resumes (SIGCONT): its upload lock went with the session, so it
/// stops that upload, deletes the image it was creating and writes no record for it; the
/// stale `uploading` record is cleaned, a new upload ends ready and its image is the only
/// Nodepool image in the cloud (nothing leaked), and the builder keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_during_upload() {
    bounded_serial(async {
        let (w, b, stale, cloud) = world_with_upload_in_progress(3).await;
        let frozen = freeze(&b, Duration::from_secs(7)).await;
        w.sim.admin().update_knobs(|k| k.image_upload_delay_ms = 0);
        thaw(&b);
        let (_, up) = w.wait_uploaded(PROVIDER, WAIT).await;
        let ready_after = frozen.elapsed();
        assert_ne!(up.id, stale.id, "a new upload");
        let cleaned = wait_upload_cleaned(&w, &stale, &cloud, frozen).await;
        let records = w.uploads(PROVIDER).await;
        let images = w.nodepool_images();
        println!(
            "builder frozen 7 s past a 3 s session during an upload: new upload ready {:.1} s after the freeze, \
             stale record and image gone at {:.1} s; {} upload records, {} Nodepool images in the cloud",
            ready_after.as_secs_f64(),
            cleaned.as_secs_f64(),
            records.len(),
            images.len()
        );
        assert_only_the_ready_upload(&records, &images, &up);
        resumed_builder_is_fine(b, "upload lock lost with the ZooKeeper session").await;
    })
    .await;
}

/// c. ZooKeeper restart (kill + start on the same data dir) while DIB runs: the builder
/// reconnects within its session, the same build ends ready and is uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_restart_during_build() {
    bounded_serial(async {
        let zk = TestZk::dedicated().await;
        let pidfile_name = "dib.pid";
        let mut w = BuilderWorld::new(zk, Knobs::default(), &BuilderCfg::default()).await;
        let pidfile = w.path(pidfile_name);
        let cfg = BuilderCfg::default()
            .with_env("FAKE_DIB_SLEEP", "5")
            .with_env("FAKE_DIB_PID_FILE", &pidfile.display().to_string());
        w.write_config(&cfg);
        let b = w.spawn_builder();
        let building = wait_for_within("DIB running", WAIT, || async {
            let b = w
                .builds()
                .await
                .into_iter()
                .find(|b| b.state == BuildState::Building)?;
            pidfile.is_file().then_some(b)
        })
        .await;
        let t = Instant::now();
        w.zk.server()
            .expect("dedicated server")
            .restart()
            .expect("restart ZooKeeper");
        let restart = t.elapsed();
        let (ready, up) = w.wait_uploaded(PROVIDER, WAIT).await;
        let ready_after = t.elapsed();
        let builds = w.builds().await;
        let log = b.log_text();
        println!(
            "ZooKeeper restart during a build: restart took {:.1} s; the build was uploaded {:.1} s after it; {} build record(s)",
            restart.as_secs_f64(),
            ready_after.as_secs_f64(),
            builds.len()
        );
        assert_eq!(ready.id, building.id, "the build that was running ended ready");
        assert_eq!(builds.len(), 1, "no second build: {builds:?}");
        assert_eq!(up.state, UploadState::Ready);
        assert!(
            log.contains("ZooKeeper connection suspended")
                && log.contains("ZooKeeper connection re-established"),
            "the builder saw the connection drop and come back:\n{log}"
        );
        assert!(
            !log.contains("ZooKeeper session lost") && !log.contains("new ZooKeeper session"),
            "the session survived:\n{log}"
        );
        assert!(b.stop().await, "the builder stops on SIGTERM");
        assert!(!log.contains("panicked"), "builder panicked:\n{log}");
    })
    .await;
}

/// d. Glance answers HTTP 500 on the first two image creates and 503 on the first two
/// data uploads (and 500 on the first image delete): each attempt is recorded `failed`
/// (its cloud image deleted by the uploader, or by cleanup when that delete failed),
/// retried after `--retry-delay`, the fifth ends ready; the failed records are cleaned
/// up and the ready upload's image is the only Nodepool image left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_5xx_is_retried_and_cleaned() {
    bounded_serial(async {
        let zk = TestZk::shared().await;
        let mut w = BuilderWorld::new(zk, Knobs::default(), &BuilderCfg::default()).await;
        let admin = w.sim.admin();
        admin.fail_next("image.images.create", 2, 500);
        admin.fail_next("image.images.upload", 2, 503);
        // The uploader's own delete of the first half-made image fails too: that image
        // is left to the cleanup of the `failed` record (found by its properties).
        admin.fail_next("image.images.delete", 1, 500);
        let t = Instant::now();
        let b = w.spawn_builder();
        let (_, up) = w.wait_uploaded(PROVIDER, WAIT).await;
        let ready_after = t.elapsed();
        let cleaned = wait_for_within(
            "failed upload records and their images removed",
            WAIT,
            || async {
                let records = w.uploads(PROVIDER).await;
                let ready = records.iter().all(|u| u.state == UploadState::Ready);
                (ready && w.nodepool_images().len() == 1).then(|| t.elapsed())
            },
        )
        .await;
        let creates = admin.counter("image.images.create");
        let uploads = admin.counter("image.images.upload");
        let deletes = admin.counter("image.images.delete");
        let log = b.log_text();
        let failed = log.matches("image upload failed").count();
        let images = w.nodepool_images();
        println!(
            "Glance 5xx (2 creates, 2 uploads, 1 delete): upload ready after {:.1} s from start, failed records and images gone at {:.1} s; \
             {failed} failed attempts, {creates} create / {uploads} upload / {deletes} delete calls; {} Nodepool image(s) left",
            ready_after.as_secs_f64(),
            cleaned.as_secs_f64(),
            images.len()
        );
        assert_eq!(failed, 4, "four attempts failed:\n{log}");
        assert!(
            creates >= 5 && uploads >= 3,
            "each retry created a new image"
        );
        let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            ids,
            vec![up.external_id.as_deref().unwrap_or_default()],
            "no image of a failed attempt left"
        );
        assert!(b.stop().await, "the builder stops on SIGTERM");
        assert!(!log.contains("panicked"), "builder panicked:\n{log}");
    })
    .await;
}
