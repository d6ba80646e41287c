//! `scripts/run-local`, the README's first command: Ctrl-C stops everything it started
//! and leaves nothing running. The script runs in its own process group (as in a
//! terminal) with a private `TMPDIR`, which every process it starts inherits; after
//! SIGINT to the group no process may carry that `TMPDIR` (or name it on its command
//! line) and the work directory must be gone.
//!
//! The worst case is set up on purpose: the builder is in the middle of a disk image
//! build whose `disk-image-create` (the fake one) ignores SIGTERM and runs in its own
//! process group, so the builder's own SIGTERM does not stop it and Ctrl-C never
//! reaches it; and the build has started a helper in a session of its own, which not
//! even the builder's SIGKILL of the build's process group reaches (only run-local's
//! final sweep of the processes carrying its work-dir marker does).
//!
//! Uses the already-built debug binaries (`NODEPOOL_LOCAL_BIN`); builds nothing.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodepool_tests::daemons::workspace_bin;

/// Processes (pid, command line) started under `tmp`: `TMPDIR=<tmp>` in their
/// environment or `tmp` on their command line. Zombies have neither, so they do not count.
fn processes_under(tmp: &Path) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let tmp = tmp.to_string_lossy().into_owned();
    let marker = format!("TMPDIR={tmp}");
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let in_env = environ.split(|b| *b == 0).any(|v| v == marker.as_bytes());
        let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if in_env || cmd.contains(&tmp) {
            found.push((pid, cmd.trim().to_string()));
        }
    }
    found
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`.
fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The running script; on drop (a failed test) SIGKILLs its group and everything
/// started under its `TMPDIR`, so a failure leaves nothing behind either.
struct RunLocal {
    child: Child,
    tmp: tempfile::TempDir,
    out: PathBuf,
}

impl RunLocal {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for RunLocal {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: plain kill(2) on our own child's process group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
        for (pid, _) in processes_under(self.tmp.path()) {
            // SAFETY: plain kill(2) of a process started by this test.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn ctrl_c_stops_everything_and_removes_the_work_dir() {
    let bin_dir = workspace_bin("nodepool-launcher")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    for name in ["nodepool", "nodepool-builder", "openstack-sim", "zuul-sim"] {
        workspace_bin(name);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let tmp = tempfile::Builder::new()
        .prefix("run-local-test.")
        .tempdir()
        .expect("temp dir");
    let out = tmp.path().join("run-local.out");
    let log = std::fs::File::create(&out).expect("output file");
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("scripts/run-local"))
        .arg("--no-tui")
        .env("TMPDIR", tmp.path())
        .env("NODEPOOL_LOCAL_BIN", &bin_dir)
        .env("FAKE_DIB_SLEEP", "600")
        .env("FAKE_DIB_IGNORE_TERM", "1")
        .env("FAKE_DIB_ESCAPE", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("output file"))
        .stderr(log)
        .process_group(0);
    // Ctrl-C in a terminal reaches a shell whose SIGINT has its default disposition. A test
    // process started as a background job of a script (no job control) inherits SIGINT and
    // SIGQUIT ignored, and bash cannot trap a signal that was ignored when it started:
    // reset both, as a terminal session has them.
    // SAFETY: signal(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
    let child = cmd.spawn().expect("start scripts/run-local");
    let mut run = RunLocal { child, tmp, out };

    // Running: the script says so and the builder's disk-image-create has started.
    let work = poll(Duration::from_secs(120), || {
        let text = run.output();
        if text.contains("Press Ctrl-C to stop.") {
            let start = text.find("(work directory ")? + "(work directory ".len();
            let end = start + text[start..].find(')')?;
            return Some(PathBuf::from(&text[start..end]));
        }
        if let Ok(Some(status)) = run.child.try_wait() {
            panic!("run-local exited early ({status}):\n{}", run.output());
        }
        None
    })
    .unwrap_or_else(|| panic!("run-local did not report running:\n{}", run.output()));
    assert!(
        work.starts_with(run.tmp.path()),
        "work dir {}",
        work.display()
    );
    poll(Duration::from_secs(60), || {
        processes_under(run.tmp.path())
            .iter()
            .any(|(_, cmd)| cmd.contains("fake-image-create"))
            .then_some(())
    })
    .unwrap_or_else(|| {
        let log = std::fs::read_to_string(work.join("logs/builder.log")).unwrap_or_default();
        panic!("no disk image build started; builder log:\n{log}")
    });
    let started = processes_under(run.tmp.path());
    // (The fake Zuul starts only once an image is uploaded, which this build never
    // finishes: its requests could only fail before.)
    for name in [
        "java",
        "openstack-sim",
        "nodepool-launcher",
        "nodepool-builder",
    ] {
        assert!(
            started.iter().any(|(_, cmd)| cmd.contains(name)),
            "{name} is not running: {started:?}"
        );
    }
    // The daemons' logs are files: Nodepool's plain lines, no colour escape codes
    // (issue #12: launcher.log used to be full of them).
    for name in ["launcher", "builder"] {
        let path = work.join(format!("logs/{name}.log"));
        let log = poll(Duration::from_secs(60), || {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            text.contains(" INFO nodepool.").then_some(text)
        })
        .unwrap_or_else(|| panic!("{} has no INFO line", path.display()));
        assert!(
            !log.contains('\x1b'),
            "escape codes in {}:\n{log}",
            path.display()
        );
    }
    for name in ["openstack-sim", "zuul-sim"] {
        let path = work.join(format!("logs/{name}.log"));
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            !log.contains('\x1b'),
            "escape codes in {}:\n{log}",
            path.display()
        );
    }

    // Ctrl-C: SIGINT to the whole foreground process group.
    let pgid = run.child.id() as i32;
    // SAFETY: plain kill(2) on our own child's process group.
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGINT) }, 0);
    let status = poll(Duration::from_secs(60), || {
        run.child.try_wait().ok().flatten()
    })
    .unwrap_or_else(|| {
        panic!(
            "run-local still running 60 s after Ctrl-C:\n{}",
            run.output()
        )
    });
    eprintln!("run-local output:\n{}", run.output());
    assert_eq!(
        status.code(),
        Some(130),
        "exit status after Ctrl-C: {status}"
    );

    // Nothing left: SIGKILLed processes may need a moment to disappear from /proc.
    let left = poll(Duration::from_secs(3), || {
        let left = processes_under(run.tmp.path());
        left.is_empty().then_some(())
    });
    assert!(
        left.is_some(),
        "processes left after Ctrl-C: {:?}",
        processes_under(run.tmp.path())
    );
    assert!(!work.exists(), "work dir {} still exists", work.display());
}
