//! What starts and stops the `nodepool-builder` scheduler (docs/builder.md,
//! scheduled builds and uploads), with the binary as a child process, a real ZooKeeper and the
//! simulator over HTTP: `rebuild-age` triggers a rebuild; the ZooKeeper pause flag and
//! the diskimage's config `pause` stop builds but — as in Nodepool, whose UploadWorker
//! only looks at the provider diskimage entry — not uploads; a provider diskimage
//! `pause` stops uploads. Every wait is bounded; nothing asserts on timing.
//!
//! The builder binary is built on first use (`nodepool_tests::daemons::workspace_bin`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nodepool_shared::model::BuildState;
use nodepool_shared::testing::{bounded_serial, wait_for_within, TestZk};
use nodepool_tests::builder_world::{BuilderCfg, BuilderWorld, ProviderCfg, IMAGE};
use nodepool_tests::sim::Knobs;

/// Upper bound of each wait for the builder to reach a state.
const WAIT: Duration = Duration::from_secs(90);

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Waits until `line` appears `n` times in the log of the builder (bounded).
async fn wait_log(p: &nodepool_tests::daemons::DaemonProc, line: &str, n: usize) {
    wait_for_within(&format!("{n}× `{line}` in the builder log"), WAIT, || {
        let hit = p.log_text().matches(line).count() >= n;
        async move { hit.then_some(()) }
    })
    .await;
}

/// Image paused with the ZooKeeper flag: a provider added to the config still gets
/// the newest ready build uploaded, and nothing is built. A provider whose diskimage
/// entry is paused (added in the same reload, before the unpaused one) gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pause_stops_builds_not_uploads_provider_pause_stops_uploads() {
    bounded_serial(async {
        let zk = TestZk::shared().await;
        let mut cfg = BuilderCfg::default();
        let mut w = BuilderWorld::new(zk, Knobs::default(), &cfg).await;
        let b = w.spawn_builder();
        let (build, _) = w.wait_uploaded("sim", WAIT).await;
        w.store.pause_image(IMAGE).await.expect("pause");
        // `paused` is checked in the pass that starts the uploads below; the new
        // providers need no new format, so only the pause could make a new build.
        cfg.providers.push(ProviderCfg {
            pause: true,
            ..ProviderCfg::new("sim-paused")
        });
        cfg.providers.push(ProviderCfg::new("sim-new"));
        w.write_config(&cfg);
        let t = Instant::now();
        let (uploaded, up) = w.wait_uploaded("sim-new", WAIT).await;
        println!(
            "image paused: the new provider got the existing build {:.1} s after the reload",
            t.elapsed().as_secs_f64()
        );
        assert_eq!(uploaded.id, build.id, "the existing build was uploaded");
        assert!(up.external_id.is_some());
        // A few more passes (each cleanup pass emits the gauges; the reload woke the
        // scheduler): still no build and nothing for the paused provider entry.
        wait_log(&b, "configuration reloaded", 1).await;
        let builds = w.builds().await;
        assert_eq!(builds.len(), 1, "no build while paused: {builds:?}");
        assert!(
            w.uploads("sim-paused").await.is_empty(),
            "no upload to a paused provider diskimage"
        );
        // Unpausing the provider entry uploads there too (the test can see uploads).
        cfg.providers[1].pause = false;
        w.write_config(&cfg);
        let (again, _) = w.wait_uploaded("sim-paused", WAIT).await;
        assert_eq!(again.id, build.id);
        assert_eq!(w.builds().await.len(), 1, "still no build while paused");
        assert!(b.stop().await);
    })
    .await;
}

/// `rebuild-age: 3`: a second build follows the first by itself. With the ZooKeeper
/// pause flag set the next due rebuild does not happen (checked well after it was due);
/// unpaused, it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_age_rebuilds_and_the_pause_flag_stops_it() {
    bounded_serial(async {
        let zk = TestZk::shared().await;
        let cfg = BuilderCfg {
            rebuild_age: Some(3),
            ..BuilderCfg::default()
        };
        let mut w = BuilderWorld::new(zk, Knobs::default(), &cfg).await;
        let b = w.spawn_builder();
        let (first, _) = w.wait_uploaded("sim", WAIT).await;
        let second = wait_for_within("a rebuild after rebuild-age", WAIT, || async {
            let ready = w.ready_builds().await;
            (ready.len() >= 2).then(|| ready.last().cloned()).flatten()
        })
        .await;
        println!(
            "rebuild-age 3 s: second build ready {:.1} s after the first",
            second.state_time - first.state_time
        );
        assert_ne!(second.id, first.id);
        assert!(second.state_time - first.state_time >= 3.0);

        // Pause while the newest build is fresh, then wait until its rebuild is well
        // overdue (and several scheduler and cleanup passes happened).
        w.store.pause_image(IMAGE).await.expect("pause");
        let newest = wait_for_within("no build running", WAIT, || async {
            let builds = w.builds().await;
            if builds.iter().any(|b| b.state == BuildState::Building) {
                return None;
            }
            w.ready_builds().await.pop()
        })
        .await;
        let count = w.builds().await.len();
        let overdue = newest.state_time + 3.0 + 4.0;
        while now_epoch() < overdue {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let after: Vec<_> = w.builds().await.into_iter().map(|b| b.id).collect();
        assert_eq!(after.len(), count, "no rebuild while paused: {after:?}");
        assert!(
            !w.builds()
                .await
                .iter()
                .any(|b| b.state_time > newest.state_time),
            "no build started while paused"
        );
        // Unpaused: the overdue rebuild happens.
        w.store.unpause_image(IMAGE).await.expect("unpause");
        let t = Instant::now();
        wait_for_within("the rebuild after unpausing", WAIT, || async {
            w.ready_builds()
                .await
                .iter()
                .any(|b| b.state_time > newest.state_time)
                .then_some(())
        })
        .await;
        println!(
            "pause flag: no rebuild {:.0} s past due; after unpausing a rebuild was ready in {:.1} s",
            4.0,
            t.elapsed().as_secs_f64()
        );
        assert!(b.stop().await);
    })
    .await;
}

/// `pause: true` on the diskimage: the builder starts, runs cleanup passes and builds
/// nothing; set to false (config reload), the image is built and uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_pause_stops_builds() {
    bounded_serial(async {
        let zk = TestZk::shared().await;
        let mut cfg = BuilderCfg {
            image_pause: true,
            ..BuilderCfg::default()
        };
        let mut w = BuilderWorld::new(zk, Knobs::default(), &cfg).await;
        // A manual request is refused too while paused in the config.
        w.store.request_build(IMAGE).await.expect("request-build");
        let b = w.spawn_builder();
        wait_log(&b, "nodepool-builder started", 1).await;
        // Registered, watch set, several scheduler passes (cleanup every second).
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(4) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            w.builds().await.is_empty(),
            "no build while paused in the config"
        );
        cfg.image_pause = false;
        w.write_config(&cfg);
        let (build, _) = w.wait_uploaded("sim", WAIT).await;
        assert_eq!(build.state, BuildState::Ready);
        assert!(b.stop().await);
    })
    .await;
}
