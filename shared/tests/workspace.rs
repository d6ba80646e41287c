//! The workspace's own rules, checked where a mistake would otherwise go unnoticed: the
//! test harness stays out of production builds, the one-binary test layout cannot
//! silently skip tests, and a test or benchmark leaves no ZooKeeper data or process
//! behind, however it ends.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nodepool_shared::testing::{is_child_test, ZkServer, CHILD_TEST_VAR, WAIT};

/// `nodepool_shared::testing` and what only it needs (`tempfile`) are behind the
/// `testing` feature, which only tests enable: the daemons' and the TUI's own dependency
/// tree has neither.
#[test]
fn production_builds_carry_no_test_harness() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "nodepool-daemon",
            "-p",
            "nodepool-tui",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-f",
            "{p} {f}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shared: Vec<&str> = tree
        .lines()
        .filter(|l| l.starts_with("nodepool-shared "))
        .collect();
    assert!(
        !shared.is_empty(),
        "nodepool-shared not in the tree:\n{tree}"
    );
    for line in shared {
        assert!(
            !line.contains("testing"),
            "a production build enables the harness: {line}"
        );
    }
    assert!(
        !tree.lines().any(|l| l.starts_with("tempfile ")),
        "tempfile is in a production dependency tree:\n{tree}"
    );
}

/// A child test that does not exist (or is filtered out) must fail the parent, not pass
/// with "0 passed".
#[test]
fn a_child_test_that_does_not_run_fails_its_parent() {
    let r = std::panic::catch_unwind(|| {
        nodepool_shared::testing::run_test_in_child("workspace::no_such_test", &[])
    });
    assert!(
        r.is_err(),
        "run_test_in_child passed without running a test"
    );
}

/// The child of the tests below: starts a ZooKeeper, says where its data is and which
/// process it is, then waits to be stopped (`panic`: panics once told to on stdin).
fn zookeeper_in_child(name: &str, panic: bool) {
    if !is_child_test(name) {
        return;
    }
    let server = ZkServer::start().unwrap_or_else(|e| {
        println!("zookeeper failed: {e}");
        panic!("start ZooKeeper: {e}")
    });
    let pid = server.pid().expect("ZooKeeper runs");
    println!("zookeeper dir={} pid={pid}", server.dir().display());
    if panic {
        let _ = std::io::stdin().read_line(&mut String::new());
        panic!("the test fails while its ZooKeeper runs");
    }
    std::thread::sleep(WAIT);
    panic!("not stopped within {WAIT:?}");
}

#[test]
#[ignore = "the child process of zookeeper_data_is_removed_when_a_signal_stops_the_test"]
fn zookeeper_until_stopped_in_child() {
    zookeeper_in_child("workspace::zookeeper_until_stopped_in_child", false);
}

#[test]
#[ignore = "the child process of zookeeper_data_is_removed_when_the_test_panics"]
fn zookeeper_then_panic_in_child() {
    zookeeper_in_child("workspace::zookeeper_then_panic_in_child", true);
}

/// A child test of this binary that started a ZooKeeper.
struct Child {
    process: std::process::Child,
    zk_dir: PathBuf,
    zk_pid: i32,
}

impl Child {
    /// Runs `name` in a child process and waits (bounded) until its ZooKeeper answers.
    fn start(name: &str) -> Child {
        let mut process = Command::new(std::env::current_exe().expect("test executable"))
            .args([
                name,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_TEST_VAR, name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its panic and the signal handler's word would read like failures here.
            .stderr(Stdio::null())
            .spawn()
            .expect("run the test executable");
        let stdout = process.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // libtest prints `test <name> ... ` before the test's own output.
        let mut seen = Vec::new();
        let deadline = Instant::now() + WAIT;
        let line = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => match line.split_once("zookeeper dir=") {
                    Some((_, rest)) => break rest.to_string(),
                    None => seen.push(line),
                },
                Err(e) => panic!("{name} started no ZooKeeper ({e}); its output:\n{seen:#?}"),
            }
        };
        let (dir, pid) = line.rsplit_once(" pid=").expect("dir and pid");
        let child = Child {
            process,
            zk_dir: PathBuf::from(dir),
            zk_pid: pid.parse().expect("pid"),
        };
        assert!(child.zk_dir.is_dir(), "{} missing", child.zk_dir.display());
        assert!(child.zk_running(), "ZooKeeper {} not running", child.zk_pid);
        child
    }

    /// Waits (bounded) for the child to end.
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.process.try_wait().expect("wait for the child") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.process.kill();
                panic!("the child test did not end within {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the ZooKeeper process exists and is not a zombie.
    fn zk_running(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.zk_pid))
            .ok()
            .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
            .unwrap_or(false)
    }

    /// Asserts that neither the ZooKeeper process nor its directory is left.
    fn assert_nothing_left(&self, how: &str) {
        // The process ends with its parent; give the kernel a moment to reap it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.zk_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !self.zk_running(),
            "{how}: ZooKeeper {} still runs",
            self.zk_pid
        );
        assert!(
            !self.zk_dir.exists(),
            "{how}: ZooKeeper's directory {} was left behind",
            self.zk_dir.display()
        );
    }
}

/// Ctrl-C (SIGINT), `timeout` or `kill` (SIGTERM) skip every destructor: the harness's
/// signal handler kills the ZooKeeper and removes its directory, and the process still
/// ends by that signal.
#[test]
fn zookeeper_data_is_removed_when_a_signal_stops_the_test() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let mut child = Child::start("workspace::zookeeper_until_stopped_in_child");
        let pid = child.process.id() as libc::pid_t;
        // SAFETY: kill(2) of our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let status = child.wait();
        assert_eq!(
            status.signal(),
            Some(signal),
            "the child ended with {status}"
        );
        child.assert_nothing_left(&format!("after signal {signal}"));
    }
}

/// A failing test (its panic unwinds) removes its ZooKeeper's directory too.
#[test]
fn zookeeper_data_is_removed_when_the_test_panics() {
    let mut child = Child::start("workspace::zookeeper_then_panic_in_child");
    // Closing its stdin tells it to fail.
    drop(child.process.stdin.take());
    let status = child.wait();
    assert!(!status.success(), "the child test passed: {status}");
    child.assert_nothing_left("after a panic");
}
