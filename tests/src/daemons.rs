//! The workspace's daemons as child processes, for tests that crash, signal and restart
//! them: where the built binaries are, and a child handle (`kill -9`, graceful stop, its
//! log) that never outlives the test. Shared so fault tests do not each grow their own
//! copy; they wait with `nodepool_shared::testing::wait_for_within`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Whether the workspace's binaries (and examples) are known to be built for this run:
/// `scripts/run-tests` sets `NODEPOOL_TEST_BINS_BUILT` after its `cargo test --workspace`
/// build, so tests run them as they are instead of running cargo.
pub fn bins_prebuilt() -> bool {
    std::env::var_os("NODEPOOL_TEST_BINS_BUILT").is_some()
}

/// The binary `name` of this workspace (`nodepool-launcher`, `nodepool-builder`,
/// `nodepool`, …): `target/<profile>/<name>`, next to the test executable's `deps/` dir.
///
/// Cargo builds a dev-dependency's library for the tests but not its binaries, so the
/// first call per test process runs `cargo build --workspace --bins`: a test never runs a
/// stale daemon. (`--workspace` resolves the same features as `cargo test --workspace`,
/// so after that it is a no-op; `-p nodepool-daemon` would resolve other features and
/// rebuild the daemon and its dependencies once more.) Not when [`bins_prebuilt`].
pub fn workspace_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if bins_prebuilt() {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "--workspace", "--bins"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --workspace --bins failed");
    });
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let bin = dir.join(name);
    assert!(bin.is_file(), "{} missing after cargo build", bin.display());
    bin
}

/// A daemon child process whose stdout and stderr go to a log file (the daemons log to
/// stdout in the foreground, as Nodepool's); killed (SIGKILL) on drop.
pub struct DaemonProc {
    child: Child,
    log: PathBuf,
}

impl DaemonProc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> DaemonProc {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("daemon log file");
        let out = err.try_clone().expect("daemon log file");
        let child = cmd.stdout(out).stderr(err).spawn().expect("start daemon");
        DaemonProc {
            child,
            log: log.to_path_buf(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `kill -9`, then reap: no chance to clean up anything.
    pub fn kill9(mut self) {
        // SAFETY: plain kill(2) of our own child.
        unsafe {
            libc::kill(self.pid(), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (bounded); SIGKILL if it does not stop within 30 s. Returns
    /// whether it exited by itself.
    pub async fn stop(mut self) -> bool {
        // SAFETY: plain kill(2) of our own child.
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
