//! The local half of nodepool-builder against the real world: the fake
//! disk-image-create (a shell script writing real images with qemu-img), real
//! process groups and signals, real `qemu-img info`, real statsd over UDP.

use std::collections::{BTreeMap, BTreeSet};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nodepool_daemon::builder::files::{self, LocalBuild};
use nodepool_daemon::builder::formats;
use nodepool_daemon::builder::stats::report_build;
use nodepool_daemon::builder::{run_build, BuildResult, DibSpec, RunError};
use nodepool_shared::stats::Statsd;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

fn fake_dib() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/fake-image-create");
    path.canonicalize()
        .expect("fixture exists")
        .display()
        .to_string()
}

struct Dirs {
    _tmp: tempfile::TempDir,
    images: PathBuf,
    logs: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().expect("tempdir");
    let images = tmp.path().join("images");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&images).expect("images dir");
    Dirs {
        _tmp: tmp,
        images,
        logs,
    }
}

fn fmts(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn spec(d: &Dirs, image: &str, formats: &[&str]) -> DibSpec {
    let build_id = uuid::Uuid::new_v4().simple().to_string();
    let mut s = DibSpec::new(image, build_id, &d.images, &d.logs);
    s.dib_cmd = fake_dib();
    s.elements = vec!["ubuntu-minimal".into(), "vm".into()];
    s.formats = fmts(formats);
    s.kill_grace = Duration::from_secs(5);
    s
}

fn qemu_info(path: &Path) -> serde_json::Value {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .expect("qemu-img runs");
    assert!(
        out.status.success(),
        "qemu-img info {}: {:?}",
        path.display(),
        out
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or("")
}

/// True while `pid` is a live (non-zombie) process.
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            // State is the field after the `(comm)`.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
    }
}

async fn wait_gone(pid: i32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while running(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pid {pid} still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the fake's pid file: (script pid, sleep pid).
async fn wait_pids(pid_file: &Path) -> (i32, i32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(pid_file) {
            let pids: Vec<i32> = text
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            if let [script, sleeper] = pids[..] {
                return (script, sleeper);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no pid file {}",
            pid_file.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn build_writes_log_and_real_images_and_stats() {
    let d = dirs();
    let mut s = spec(&d, "ubuntu-noble", &["qcow2", "raw", "vhd"]);
    s.release = Some("24.04".into());
    s.elements_dir = Some("/etc/nodepool/elements".into());
    s.env_vars.insert("FAKE_DIB_SIZE".into(), "32M".into());
    let outcome = run_build(&s, &CancellationToken::new())
        .await
        .expect("runs");
    let log = read(&outcome.log_path);
    assert_eq!(outcome.result, BuildResult::Succeeded, "log:\n{log}");
    assert_eq!(outcome.rc, 0);
    assert_eq!(
        outcome.log_path,
        d.logs.join(format!("ubuntu-noble-{}.log", s.build_id))
    );
    assert!(
        log.contains("Building image ubuntu-noble release '24.04' formats qcow2,raw,vhd"),
        "{log}"
    );
    assert!(
        log.contains("ELEMENTS_PATH='/etc/nodepool/elements'"),
        "{log}"
    );
    assert!(log.contains("Elements: ubuntu-minimal vm"), "{log}");
    assert!(
        log.contains("warning: this line goes to stderr"),
        "stderr is logged too:\n{log}"
    );
    assert_eq!(last_line(&log), "Exit code: 0");

    let base = s.output_base();
    let qcow2 = qemu_info(&base.with_extension("qcow2"));
    assert_eq!(qcow2["format"], "qcow2");
    assert_eq!(qcow2["virtual-size"], 32 * 1024 * 1024);
    assert_eq!(qcow2["format-specific"]["data"]["compat"], "0.10");
    let raw = qemu_info(&base.with_extension("raw"));
    assert_eq!(raw["format"], "raw");
    assert_eq!(raw["virtual-size"], 32 * 1024 * 1024);
    let vhd = qemu_info(&base.with_extension("vhd"));
    assert_eq!(vhd["format"], "vpc");
    assert!(
        vhd["virtual-size"].as_u64().unwrap_or(0) >= 32 * 1024 * 1024,
        "{vhd}"
    );

    let build: LocalBuild = files::local_build(&d.images, "ubuntu-noble", &s.build_id)
        .expect("scan")
        .expect("build is local");
    assert_eq!(build.formats(), fmts(&["qcow2", "raw", "vhd"]));
    assert_eq!(build.manifest_dir, Some(base.with_extension("d")));
    assert_eq!(
        build.other_files.len(),
        6,
        "md5+sha256 per format: {:?}",
        build.other_files
    );

    let sizes =
        formats::image_sizes(&d.images, "ubuntu-noble", &s.build_id, &s.formats).expect("sizes");
    assert_eq!(sizes.keys().cloned().collect::<BTreeSet<_>>(), s.formats);
    assert!(sizes["qcow2"] > 0, "qcow2 metadata is allocated: {sizes:?}");

    // Stats over real UDP.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(WAIT)).expect("timeout");
    let port = sock.local_addr().expect("addr").port();
    let statsd = Statsd::udp("127.0.0.1", port).expect("statsd");
    report_build(&statsd, "ubuntu-noble", &outcome, &sizes, 1_700_000_000);
    statsd.flush();
    let mut lines = BTreeSet::new();
    let mut buf = [0u8; 2048];
    while !lines.iter().any(|l: &String| l.contains("last_build")) {
        let n = sock.recv(&mut buf).expect("stats datagram");
        lines.extend(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_string),
        );
    }
    let raw_size = format!(
        "nodepool.dib_image_build.ubuntu-noble.raw.size:{}|g",
        sizes["raw"]
    );
    assert!(lines.contains(&raw_size), "{lines:?}");
    assert!(
        lines.contains("nodepool.dib_image_build.ubuntu-noble.status.rc:0|g"),
        "{lines:?}"
    );
    assert!(
        lines.contains("nodepool.dib_image_build.ubuntu-noble.status.last_build:1700000000|g"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("nodepool.dib_image_build.ubuntu-noble.status.duration:")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn large_image_has_large_allocated_size() {
    let d = dirs();
    let mut s = spec(&d, "big", &["raw", "qcow2"]);
    s.env_vars.insert("FAKE_DIB_WRITE_MB".into(), "8".into());
    let outcome = run_build(&s, &CancellationToken::new())
        .await
        .expect("runs");
    assert_eq!(
        outcome.result,
        BuildResult::Succeeded,
        "{}",
        read(&outcome.log_path)
    );
    let sizes = formats::image_sizes(&d.images, "big", &s.build_id, &s.formats).expect("sizes");
    for (ext, size) in &sizes {
        assert!(*size >= 8 * 1024 * 1024, "{ext}: {size}");
    }
    // A fresh sparse image allocates next to nothing.
    let small = spec(&d, "small", &["raw"]);
    run_build(&small, &CancellationToken::new())
        .await
        .expect("runs");
    let small_sizes =
        formats::image_sizes(&d.images, "small", &small.build_id, &small.formats).expect("sizes");
    assert!(small_sizes["raw"] < 1024 * 1024, "{small_sizes:?}");
}

#[tokio::test]
async fn failure_records_exit_code() {
    let d = dirs();
    let mut s = spec(&d, "img", &["qcow2"]);
    s.env_vars.insert("FAKE_DIB_FAIL".into(), "3".into());
    let outcome = run_build(&s, &CancellationToken::new())
        .await
        .expect("runs");
    assert_eq!(outcome.result, BuildResult::Failed(3));
    assert_eq!(outcome.rc, 3);
    let log = read(&outcome.log_path);
    assert!(log.contains("failing with exit code 3"), "{log}");
    assert_eq!(last_line(&log), "Exit code: 3");
    assert!(files::local_build(&d.images, "img", &s.build_id)
        .expect("scan")
        .is_none());
}

#[tokio::test]
async fn missing_command_is_a_spawn_error() {
    let d = dirs();
    let mut s = spec(&d, "img", &["qcow2"]);
    s.dib_cmd = "/nonexistent/disk-image-create".into();
    let err = run_build(&s, &CancellationToken::new())
        .await
        .expect_err("cannot exec");
    assert!(matches!(err, RunError::Spawn { .. }), "{err}");
    let log = read(&s.log_path());
    assert!(
        log.starts_with("Failed to exec '/nonexistent/disk-image-create -x"),
        "{log}"
    );
    s.dib_cmd = "'unclosed".into();
    let err = run_build(&s, &CancellationToken::new())
        .await
        .expect_err("cannot split");
    assert!(matches!(err, RunError::Split { .. }), "{err}");
}

#[tokio::test]
async fn timeout_kills_the_process_group() {
    let d = dirs();
    let pid_file = d.images.join("pids");
    let mut s = spec(&d, "img", &["qcow2"]);
    s.env_vars.insert("FAKE_DIB_SLEEP".into(), "600".into());
    s.env_vars
        .insert("FAKE_DIB_PID_FILE".into(), pid_file.display().to_string());
    // Long enough that a loaded machine has written the pid file before the kill.
    s.build_timeout = Duration::from_secs(10);
    let outcome = run_build(&s, &CancellationToken::new())
        .await
        .expect("runs");
    assert_eq!(outcome.result, BuildResult::TimedOut);
    let (script, sleeper) = wait_pids(&pid_file).await;
    wait_gone(script).await;
    wait_gone(sleeper).await;
    let log = read(&outcome.log_path);
    assert!(log.contains(&format!("sleep pid {sleeper}")), "{log}");
    assert!(log.contains("Build timed out after 10 seconds"), "{log}");
    assert_eq!(last_line(&log), format!("Exit code: {}", outcome.rc));
    assert_eq!(outcome.rc, 128 + libc::SIGTERM, "bash died of SIGTERM");
}

#[tokio::test]
async fn cancellation_kills_the_process_group() {
    let d = dirs();
    let pid_file = d.images.join("pids");
    let mut s = spec(&d, "img", &["qcow2"]);
    s.env_vars.insert("FAKE_DIB_SLEEP".into(), "600".into());
    s.env_vars
        .insert("FAKE_DIB_PID_FILE".into(), pid_file.display().to_string());
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let cancel = cancel.clone();
        async move { run_build(&s, &cancel).await }
    });
    let (script, sleeper) = wait_pids(&pid_file).await;
    assert!(running(script) && running(sleeper));
    cancel.cancel();
    let outcome = tokio::time::timeout(WAIT, task)
        .await
        .expect("ends")
        .expect("no panic")
        .expect("runs");
    assert_eq!(outcome.result, BuildResult::Cancelled);
    wait_gone(script).await;
    wait_gone(sleeper).await;
    let log = read(&outcome.log_path);
    assert!(
        log.contains(&format!("sleep pid {sleeper}")),
        "output streamed before the end: {log}"
    );
    assert!(log.contains("Build cancelled"), "{log}");
    assert!(last_line(&log).starts_with("Exit code: "), "{log}");
}

#[tokio::test]
async fn dropping_the_build_kills_the_process_group() {
    let d = dirs();
    let pid_file = d.images.join("pids");
    let mut s = spec(&d, "img", &["qcow2"]);
    s.env_vars.insert("FAKE_DIB_SLEEP".into(), "600".into());
    s.env_vars
        .insert("FAKE_DIB_PID_FILE".into(), pid_file.display().to_string());
    let task = tokio::spawn(async move { run_build(&s, &CancellationToken::new()).await });
    let (script, sleeper) = wait_pids(&pid_file).await;
    task.abort();
    assert!(task.await.is_err_and(|e| e.is_cancelled()));
    wait_gone(script).await;
    wait_gone(sleeper).await;
}

fn set_mtime(path: &Path, secs_ago: u64) {
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    f.set_modified(SystemTime::now() - Duration::from_secs(secs_ago))
        .expect("set mtime");
}

#[tokio::test]
async fn log_retention_prunes_oldest_logs_of_the_image() {
    let d = dirs();
    std::fs::create_dir_all(&d.logs).expect("logs dir");
    let old_log = |image: &str, age: u64| {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = d.logs.join(format!("{image}-{id}.log"));
        std::fs::write(&path, "old\nExit code: 0\n").expect("write");
        set_mtime(&path, age);
        path
    };
    // Ages: 400 s (oldest) … 100 s.
    let img: Vec<PathBuf> = [400, 300, 200, 100]
        .iter()
        .map(|&a| old_log("img", a))
        .collect();
    let other = old_log("img-other", 1000);
    let unrelated = d.logs.join("img-notes.log");
    std::fs::write(&unrelated, "keep").expect("write");

    let mut s = spec(&d, "img", &["raw"]);
    s.build_log_retention = 2;
    let outcome = run_build(&s, &CancellationToken::new())
        .await
        .expect("runs");
    assert_eq!(outcome.result, BuildResult::Succeeded);
    assert!(!img[0].exists() && !img[1].exists(), "two oldest pruned");
    assert!(img[2].exists() && img[3].exists(), "two newest kept");
    assert!(outcome.log_path.exists());
    assert!(other.exists(), "another image's logs are not touched");
    assert!(unrelated.exists());

    // Negative retention never prunes.
    let mut s = spec(&d, "img", &["raw"]);
    s.build_log_retention = -1;
    run_build(&s, &CancellationToken::new())
        .await
        .expect("runs");
    let count = std::fs::read_dir(&d.logs)
        .expect("readdir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            nodepool_daemon::builder::build_log::is_log_of(&e.file_name().to_string_lossy(), "img")
        })
        .count();
    assert_eq!(count, 4);
}

#[tokio::test]
async fn missing_formats_are_converted_with_qemu_img() {
    let d = dirs();
    let mut s = spec(&d, "img", &["qcow2", "raw", "vhd"]);
    s.env_vars
        .insert("FAKE_DIB_SKIP_FORMATS".into(), "raw vhd".into());
    s.env_vars.insert("FAKE_DIB_WRITE_MB".into(), "1".into());
    let outcome = run_build(&s, &CancellationToken::new())
        .await
        .expect("runs");
    assert_eq!(outcome.result, BuildResult::Succeeded);
    let build = files::local_build(&d.images, "img", &s.build_id)
        .expect("scan")
        .expect("local");
    assert_eq!(
        formats::missing_formats(&build, &s.formats),
        fmts(&["raw", "vhd"])
    );

    let produced = formats::ensure_formats(
        &d.images,
        "img",
        &s.build_id,
        &s.formats,
        Some("compat=0.10"),
    )
    .await
    .expect("converts");
    assert_eq!(produced, fmts(&["raw", "vhd"]));
    let base = s.output_base();
    assert_eq!(qemu_info(&base.with_extension("raw"))["format"], "raw");
    assert_eq!(qemu_info(&base.with_extension("vhd"))["format"], "vpc");
    // Checksum sidecars match md5sum/sha256sum.
    for (sum, tool) in [("md5", "md5sum"), ("sha256", "sha256sum")] {
        let sidecar = read(&PathBuf::from(format!("{}.raw.{sum}", base.display())));
        let out = std::process::Command::new(tool)
            .arg(base.with_extension("raw"))
            .output()
            .expect("tool runs");
        let expected = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            sidecar.split_whitespace().next(),
            expected.split_whitespace().next()
        );
    }
    // Same content after a round trip: raw → qcow2 → compare.
    let cmp = std::process::Command::new("qemu-img")
        .arg("compare")
        .arg(base.with_extension("qcow2"))
        .arg(base.with_extension("raw"))
        .output()
        .expect("qemu-img compare");
    assert!(cmp.status.success(), "{cmp:?}");
    // Nothing left to do the second time; no temporary files left.
    let again = formats::ensure_formats(&d.images, "img", &s.build_id, &s.formats, None)
        .await
        .expect("noop");
    assert!(again.is_empty());
    let hidden = std::fs::read_dir(&d.images)
        .expect("readdir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(hidden, 0);

    // qcow2 from raw gets the compat option.
    std::fs::remove_file(base.with_extension("qcow2")).expect("rm");
    formats::ensure_formats(
        &d.images,
        "img",
        &s.build_id,
        &fmts(&["qcow2"]),
        Some("compat=0.10"),
    )
    .await
    .expect("converts");
    assert_eq!(
        qemu_info(&base.with_extension("qcow2"))["format-specific"]["data"]["compat"],
        "0.10"
    );

    // A format qemu-img does not know cannot be produced.
    let err = formats::ensure_formats(&d.images, "img", &s.build_id, &fmts(&["tar"]), None)
        .await
        .expect_err("tar");
    assert!(
        matches!(err, formats::FormatError::Unconvertible { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn listing_and_deleting_local_builds() {
    let d = dirs();
    let a = spec(&d, "img-a", &["qcow2", "raw"]);
    let b = spec(&d, "img.b", &["raw"]);
    for s in [&a, &b] {
        let outcome = run_build(s, &CancellationToken::new()).await.expect("runs");
        assert_eq!(outcome.result, BuildResult::Succeeded);
    }
    std::fs::write(d.images.join("builder_id.txt"), "x").expect("write");
    let builds = files::list_local_builds(&d.images).expect("list");
    let found: BTreeMap<(String, String), BTreeSet<String>> = builds
        .iter()
        .map(|b| ((b.image.clone(), b.build_id.clone()), b.formats()))
        .collect();
    assert_eq!(
        found,
        BTreeMap::from([
            (
                ("img-a".to_string(), a.build_id.clone()),
                fmts(&["qcow2", "raw"])
            ),
            (("img.b".to_string(), b.build_id.clone()), fmts(&["raw"])),
        ])
    );

    // delete-after-upload: drop the uploaded formats except keep-formats.
    let removed = files::delete_formats(
        &d.images,
        "img-a",
        &a.build_id,
        &fmts(&["qcow2", "raw"]),
        &fmts(&["raw"]),
    )
    .expect("delete formats");
    assert_eq!(removed.len(), 3, "qcow2 + md5 + sha256: {removed:?}");
    let left = files::local_build(&d.images, "img-a", &a.build_id)
        .expect("scan")
        .expect("still local");
    assert_eq!(left.formats(), fmts(&["raw"]));
    assert!(left.manifest_dir.is_some());

    // Whole build: images, checksums, manifest dir; idempotent; other builds untouched.
    let removed = files::delete_build(&d.images, "img-a", &a.build_id).expect("delete");
    assert_eq!(removed.len(), 4, "raw + md5 + sha256 + .d: {removed:?}");
    assert!(files::local_build(&d.images, "img-a", &a.build_id)
        .expect("scan")
        .is_none());
    assert!(files::delete_build(&d.images, "img-a", &a.build_id)
        .expect("again")
        .is_empty());
    let builds = files::list_local_builds(&d.images).expect("list");
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0].image, "img.b");
    assert!(d.images.join("builder_id.txt").exists());
    assert!(files::list_local_builds(&d.images.join("missing"))
        .expect("empty")
        .is_empty());
}
