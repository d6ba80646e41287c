//! The daemons run as services, as Python Nodepool's do: Nodepool's daemon flags
//! (`-d`, `-f`, `-p`, `-l`) with its meaning — detaching with a pidfile, a stale pidfile
//! replaced and a live one refused —, systemd's notify protocol (READY=1 only once
//! registered in ZooKeeper, WATCHDOG=1, STOPPING=1, in that order), Python dictConfig
//! logging with files that follow logrotate and SIGHUP, JSON log lines, and one version
//! story across `--version` and the component records. Real ZooKeeper, real binaries.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nodepool_shared::model::{ComponentKind, NodeState};
use nodepool_shared::testing::wait_for_within;
use nodepool_shared::testing::TestZk;
use nodepool_shared::zk::ZkStore;
use nodepool_tests::daemons::{workspace_bin, DaemonProc};

/// A temp dir with a `nodepool.yaml` on the test ZooKeeper (no providers: a launcher
/// with nothing to launch still connects, registers and becomes ready) and an
/// `images-dir` for the builder.
struct Env {
    dir: tempfile::TempDir,
    zk: TestZk,
}

impl Env {
    async fn new() -> Env {
        let zk = TestZk::shared().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let (host, port) = zk
            .plain_hosts()
            .rsplit_once(':')
            .map(|(h, p)| (h.to_string(), p.to_string()))
            .expect("host:port");
        let config = format!(
            "zookeeper-servers:\n  - host: {host}\n    port: {port}\n    chroot: {chroot}\n\
             zookeeper-timeout: 10\nimages-dir: {images}\n\
             labels: []\nproviders: []\ndiskimages: []\n",
            chroot = zk.chroot(),
            images = dir.path().join("images").display(),
        );
        std::fs::write(dir.path().join("nodepool.yaml"), config).expect("config");
        Env { dir, zk }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, bin: &str) -> Command {
        let mut cmd = Command::new(workspace_bin(bin));
        cmd.arg("-c").arg(self.path("nodepool.yaml"));
        if bin == "nodepool-launcher" {
            cmd.arg("--no-webapp");
        }
        cmd.env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID");
        cmd
    }

    async fn store(&self) -> ZkStore {
        ZkStore::new(self.zk.client().await)
    }

    /// Writes a dictConfig with one handler of `class` writing to `file`.
    fn logconfig(&self, class: &str, file: &Path) -> PathBuf {
        let p = self.path(&format!(
            "logging-{}.yaml",
            file.file_name().unwrap().to_string_lossy()
        ));
        std::fs::write(
            &p,
            format!(
                "version: 1\nformatters:\n  simple:\n    class: nodepool.logconfig.MultiLineFormatter\n    \
                 format: '%(asctime)s %(levelname)s %(name)s: %(message)s'\nhandlers:\n  file:\n    \
                 class: {class}\n    filename: {file}\n    formatter: simple\nloggers:\n  nodepool:\n    \
                 level: INFO\n    handlers: [file]\n  kazoo:\n    level: WARNING\n    handlers: [file]\n\
                 root:\n  handlers: []\n",
                file = file.display()
            ),
        )
        .expect("logging config");
        p
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn pid_of(p: &Path) -> Option<i32> {
    read(p).trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) of a daemon this test started.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Kills a detached daemon (not our child) when a test fails half-way.
struct Detached(i32);

impl Drop for Detached {
    fn drop(&mut self) {
        if alive(self.0) {
            signal(self.0, libc::SIGKILL);
        }
    }
}

async fn wait_gone(pid: i32, what: &str) {
    wait_for_within(what, Duration::from_secs(30), || async move {
        (!alive(pid)
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")))
        .then_some(())
    })
    .await;
}

/// Without `-d`/`-f` the launcher detaches as Python Nodepool's does: the command
/// returns once the daemon (in a session of its own, cwd `/`) holds the pidfile; a second
/// start on a live pidfile is refused with a clear message; a stale pidfile is replaced;
/// SIGTERM stops it and the pidfile goes. Relative paths keep working after `chdir /`.
#[tokio::test]
async fn launcher_detaches_with_a_pidfile_like_nodepool() {
    let env = Env::new().await;
    let pidfile = env.path("launcher.pid");
    let log = env.path("launcher.log");
    let logconfig = env.logconfig("logging.handlers.WatchedFileHandler", &log);
    // A stale pidfile (no such process) is replaced.
    std::fs::write(&pidfile, "99999999\n").unwrap();
    let start = || {
        env.command("nodepool-launcher")
            .current_dir(env.dir.path())
            .args(["-p", "launcher.pid", "-l"])
            .arg(logconfig.file_name().unwrap())
            .stdin(Stdio::null())
            .output()
            .expect("run nodepool-launcher")
    };
    let out = start();
    assert!(out.status.success(), "{out:?}");
    let pid = pid_of(&pidfile).expect("pidfile written before the command returned");
    let _guard = Detached(pid);
    assert!(alive(pid));
    // Detached: its own session, not our child, cwd `/`.
    let stat = read(Path::new(&format!("/proc/{pid}/stat")));
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    // SAFETY: getsid(0) has no preconditions.
    let our_session = unsafe { libc::getsid(0) };
    assert_ne!(
        fields[3],
        our_session.to_string(),
        "a session of its own: {stat}"
    );
    assert_eq!(
        fields[2], fields[3],
        "the new session's process group: {stat}"
    );
    assert_ne!(
        fields[3],
        pid.to_string(),
        "not a session leader (double fork): {stat}"
    );
    assert_ne!(fields[1], std::process::id().to_string());
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        Path::new("/")
    );
    // It works: registered in ZooKeeper with the one version story.
    let store = env.store().await;
    let launcher = wait_for_within("launcher component", Duration::from_secs(60), || {
        let store = store.clone();
        async move {
            store
                .components(ComponentKind::Launcher)
                .await
                .ok()?
                .into_iter()
                .next()
        }
    })
    .await;
    let version = launcher.component.version.unwrap_or_default();
    assert_eq!(version, nodepool_shared::version::COMPONENT_VERSION);
    assert!(version.starts_with("11.0.0+rust."), "{version}");
    // A second start refuses: the pidfile names a running process.
    let out = start();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("names process {pid}, which is running")),
        "{err}"
    );
    assert_eq!(pid_of(&pidfile), Some(pid));
    // SIGTERM: a graceful stop, the pidfile removed, the component gone.
    signal(pid, libc::SIGTERM);
    wait_gone(pid, "launcher exit").await;
    wait_for_within("pidfile removed", Duration::from_secs(10), || async {
        (!pidfile.exists()).then_some(())
    })
    .await;
    let text = read(&log);
    assert!(
        text.contains(" INFO nodepool.launcher.daemon: launcher started"),
        "{text}"
    );
    assert!(text.contains("launcher stopped"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "no colour codes in a log file:\n{text}"
    );
}

/// A failing start of a detaching daemon is reported by the command itself (exit 1 and
/// the reason on stderr), before anything detaches.
#[tokio::test]
async fn detaching_start_errors_reach_the_terminal() {
    let env = Env::new().await;
    let bad = env.path("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\nhandlers:\n  h:\n    class: logging.handlers.SysLogHandler\n",
    )
    .unwrap();
    for bin in ["nodepool-launcher", "nodepool-builder"] {
        let out = env
            .command(bin)
            .arg("-p")
            .arg(env.path("x.pid"))
            .arg("-l")
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("line 4: `handlers.h.class`: handler class `logging.handlers.SysLogHandler` is not supported"),
            "{bin}: {err}"
        );
        let good = env.logconfig("logging.FileHandler", &env.path(&format!("{bin}.log")));
        let out = Command::new(workspace_bin(bin))
            .args(["-c", "/nonexistent/nodepool.yaml", "-p"])
            .arg(env.path("x.pid"))
            .arg("-l")
            .arg(good)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("/nonexistent/nodepool.yaml"), "{bin}: {err}");
        assert!(!env.path("x.pid").exists());
    }
}

/// What a `NOTIFY_SOCKET` received, in order.
fn notifications(sock: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        out.extend(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_string),
        );
    }
    out
}

/// `Type=notify`: READY=1 is sent only once the component is registered in ZooKeeper,
/// WATCHDOG=1 keeps coming at half of `WATCHDOG_USEC`, STOPPING=1 comes on SIGTERM —
/// in that order — for both daemons.
#[tokio::test]
async fn systemd_notify_ready_watchdog_stopping() {
    let env = Env::new().await;
    let store = env.store().await;
    for (bin, kind) in [
        ("nodepool-launcher", ComponentKind::Launcher),
        ("nodepool-builder", ComponentKind::Builder),
    ] {
        let sock_path = env.path(&format!("{bin}.notify"));
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut cmd = env.command(bin);
        cmd.arg("-f")
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "400000");
        let mut d = DaemonProc::spawn(cmd, &env.path(&format!("{bin}.out")));
        let mut seen = Vec::new();
        let registered_at_ready = wait_for_within("READY=1", Duration::from_secs(60), || {
            let got = notifications(&sock);
            let ready = got.iter().any(|l| l == "READY=1");
            seen.extend(got);
            let store = store.clone();
            async move {
                if !ready {
                    return None;
                }
                Some(!store.components(kind).await.ok()?.is_empty())
            }
        })
        .await;
        assert!(
            registered_at_ready,
            "{bin}: READY=1 before its component was registered"
        );
        assert!(
            seen.iter().any(|l| l.starts_with("STATUS=ready")),
            "{bin}: {seen:?}"
        );
        // The watchdog keeps pinging (period 400 ms: every 200 ms).
        wait_for_within("WATCHDOG=1", Duration::from_secs(10), || {
            let got = notifications(&sock);
            let n = got.iter().filter(|l| *l == "WATCHDOG=1").count();
            seen.extend(got);
            async move { (n > 0).then_some(()) }
        })
        .await;
        assert!(d.alive());
        signal(d.pid(), libc::SIGTERM);
        wait_for_within("STOPPING=1", Duration::from_secs(30), || {
            let got = notifications(&sock);
            let done = got.iter().any(|l| l == "STOPPING=1");
            seen.extend(got);
            async move { done.then_some(()) }
        })
        .await;
        assert!(d.stop().await, "{bin} stops after SIGTERM");
        let pos = |s: &str| seen.iter().position(|l| l == s).unwrap_or(usize::MAX);
        assert!(pos("READY=1") < pos("WATCHDOG=1"), "{bin}: {seen:?}");
        assert!(pos("WATCHDOG=1") < pos("STOPPING=1"), "{bin}: {seen:?}");
        assert_eq!(
            seen.iter().filter(|l| *l == "READY=1").count(),
            1,
            "{bin}: {seen:?}"
        );
    }
}

/// `-l` with Python's dictConfig: Nodepool's line format and logger names in the file,
/// a `WatchedFileHandler` reopening the path after logrotate moved the file, a plain
/// `FileHandler` reopening on SIGHUP; and `--log-format json` writing one JSON object per
/// line; no colour codes anywhere.
#[tokio::test]
async fn python_logging_config_logrotate_sighup_and_json() {
    let env = Env::new().await;
    let watched = env.path("watched.log");
    let plain = env.path("plain.log");
    let lw = env.logconfig("logging.handlers.WatchedFileHandler", &watched);
    let lp = env.logconfig("logging.FileHandler", &plain);
    // A second handler in one config: both files from one launcher.
    let both = env.path("both.yaml");
    let text = read(&lw).replace(
        "handlers:\n  file:",
        &format!("handlers:\n  plain:\n    class: logging.FileHandler\n    filename: {}\n    formatter: simple\n  file:", plain.display()),
    ).replace("handlers: [file]\n  kazoo", "handlers: [file, plain]\n  kazoo");
    std::fs::write(&both, text).unwrap();
    let _ = lp;
    let mut cmd = env.command("nodepool-launcher");
    cmd.arg("-f").arg("-l").arg(&both);
    let d = DaemonProc::spawn(cmd, &env.path("launcher.out"));
    let line_re = regex::Regex::new(
        r"(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO nodepool\.launcher\.daemon: launcher ready$",
    )
    .unwrap();
    for f in [&watched, &plain] {
        wait_for_within(
            "launcher ready in the log file",
            Duration::from_secs(60),
            || async { line_re.is_match(&read(f)).then_some(()) },
        )
        .await;
    }
    // logrotate moves both files; SIGUSR2 logs a state dump.
    std::fs::rename(&watched, env.path("watched.log.1")).unwrap();
    std::fs::rename(&plain, env.path("plain.log.1")).unwrap();
    signal(d.pid(), libc::SIGUSR2);
    wait_for_within(
        "state dump in the new watched file",
        Duration::from_secs(30),
        || async {
            read(&watched)
                .contains("nodepool-launcher state dump")
                .then_some(())
        },
    )
    .await;
    // The plain FileHandler kept writing to the moved file…
    assert!(!plain.exists());
    assert!(read(&env.path("plain.log.1")).contains("state dump"));
    // …until SIGHUP.
    signal(d.pid(), libc::SIGHUP);
    wait_for_within("plain file reopened", Duration::from_secs(30), || async {
        plain.exists().then_some(())
    })
    .await;
    signal(d.pid(), libc::SIGUSR2);
    wait_for_within(
        "state dump in the new plain file",
        Duration::from_secs(30),
        || async { read(&plain).contains("state dump").then_some(()) },
    )
    .await;
    // Multi-line messages repeat the prefix (Nodepool's MultiLineFormatter).
    let dump = read(&watched);
    let lines: Vec<&str> = dump
        .lines()
        .filter(|l| l.contains("nodepool.launcher.daemon:"))
        .collect();
    assert!(lines.len() > 3, "{dump}");
    assert!(d.stop().await);
    assert_eq!(
        read(&env.path("launcher.out")),
        "",
        "nothing on stdout/stderr with -l"
    );
    for f in [&watched, &plain, &env.path("watched.log.1")] {
        assert!(!read(f).contains('\x1b'), "colour codes in {}", f.display());
    }

    // --log-format json, foreground without -l: Nodepool's stdout logging as JSON lines.
    let mut cmd = env.command("nodepool-launcher");
    cmd.args(["-f", "--log-format", "json"]);
    let out = env.path("json.out");
    let d = DaemonProc::spawn(cmd, &out);
    wait_for_within("ready", Duration::from_secs(60), || async {
        read(&out).contains("launcher ready").then_some(())
    })
    .await;
    assert!(d.stop().await);
    let text = read(&out);
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
        assert!(
            v["logger"]
                .as_str()
                .is_some_and(|l| l.starts_with("nodepool.")),
            "{line}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.contains(r#""message":"launcher ready""#)),
        "{text}"
    );
}

/// Every binary's `--version` tells the same story: our version and the Nodepool
/// release we are compatible with (which is also what the component records carry).
#[test]
fn every_binary_reports_one_version() {
    let want = format!(
        "{} (Nodepool in Rust; compatible with Nodepool {})",
        env!("CARGO_PKG_VERSION"),
        nodepool_shared::version::NODEPOOL_COMPAT
    );
    for bin in [
        "nodepool-launcher",
        "nodepool-builder",
        "nodepool",
        "nodepool-tui",
        "openstack-sim",
        "zuul-sim",
    ] {
        let path = workspace_bin(bin);
        let out = Command::new(&path).arg("--version").output().unwrap();
        assert!(out.status.success(), "{bin}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{bin} {want}\n")
        );
    }
}

/// `scripts/package --debug` builds the Debian package from the debug binaries (the
/// same code as a release build, quicker in CI). Its contents: the four binaries, man
/// pages and completions generated from their clap definitions, the systemd units, the
/// example config, the maintainer scripts; the binaries run from the unpacked tree
/// (`--version`, `config-validate` on the shipped example) and the units pass
/// `systemd-analyze verify` where systemd is installed.
#[test]
fn debian_package_contents_and_binaries() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(root.join("scripts/package"))
        .args(["--debug", "--out"])
        .arg(dir.path())
        .current_dir(root)
        .output()
        .expect("run scripts/package");
    assert!(out.status.success(), "scripts/package: {out:?}");
    let deb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(deb.starts_with(dir.path()) && deb.exists(), "{deb:?}");
    let info = Command::new("dpkg-deb")
        .arg("-f")
        .arg(&deb)
        .output()
        .unwrap();
    let control = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(control.contains("Package: nodepool\n"), "{control}");
    assert!(
        control.contains(&format!("Version: {}\n", env!("CARGO_PKG_VERSION"))),
        "{control}"
    );
    let tree = dir.path().join("root");
    assert!(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&tree)
        .status()
        .unwrap()
        .success());
    let ctl = dir.path().join("control");
    assert!(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(&ctl)
        .status()
        .unwrap()
        .success());
    for f in [
        "usr/bin/nodepool",
        "usr/bin/nodepool-launcher",
        "usr/bin/nodepool-builder",
        "usr/bin/nodepool-tui",
        "usr/share/man/man1/nodepool.1.gz",
        "usr/share/man/man1/nodepool-launcher.1.gz",
        "usr/share/man/man1/nodepool-builder.1.gz",
        "usr/share/man/man1/nodepool-tui.1.gz",
        "usr/share/bash-completion/completions/nodepool",
        "usr/share/zsh/vendor-completions/_nodepool-launcher",
        "usr/share/fish/vendor_completions.d/nodepool-builder.fish",
        "lib/systemd/system/nodepool-launcher.service",
        "lib/systemd/system/nodepool-builder.service",
        "etc/nodepool/nodepool.yaml",
        "etc/nodepool/logging.example.yaml",
        "etc/default/nodepool",
        "usr/share/doc/nodepool/CHANGELOG.md",
        "usr/share/doc/nodepool/docs/installation.md",
    ] {
        assert!(tree.join(f).is_file(), "{f} missing from the package");
    }
    let conffiles = read(&ctl.join("conffiles"));
    assert!(
        conffiles.contains("/etc/nodepool/nodepool.yaml"),
        "{conffiles}"
    );
    assert!(read(&ctl.join("postinst")).contains("adduser --system"));
    // The man page is the binary's own --help, with the daemon flags.
    let man = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc {}",
            tree.join("usr/share/man/man1/nodepool-launcher.1.gz")
                .display()
        ))
        .output()
        .unwrap();
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(
        man.contains("nodaemon") && man.contains("logconfig") && man.contains("pidfile"),
        "{man}"
    );
    // The unpacked binaries run.
    for b in [
        "nodepool",
        "nodepool-launcher",
        "nodepool-builder",
        "nodepool-tui",
    ] {
        let out = Command::new(tree.join("usr/bin").join(b))
            .arg("--version")
            .output()
            .unwrap();
        assert!(out.status.success(), "{b} --version: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("{b} {}", env!("CARGO_PKG_VERSION"))));
    }
    let out = Command::new(tree.join("usr/bin/nodepool"))
        .arg("-c")
        .arg(tree.join("etc/nodepool/nodepool.yaml"))
        .arg("config-validate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "config-validate of the example: {out:?}"
    );
    let logging = tree.join("etc/nodepool/logging.example.yaml");
    let parsed = nodepool_shared::logging::LogConfig::load(&logging);
    assert!(parsed.is_ok(), "{parsed:?}");
    // systemd's own check of the units, against the unpacked tree.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed");
        return;
    }
    // The units name /usr/bin/…: point them at the unpacked binaries.
    let units_dir = dir.path().join("units");
    std::fs::create_dir_all(&units_dir).unwrap();
    let mut units = Vec::new();
    for u in ["nodepool-launcher.service", "nodepool-builder.service"] {
        let text = read(&tree.join("lib/systemd/system").join(u))
            .replace("/usr/bin/", &format!("{}/", tree.join("usr/bin").display()));
        std::fs::write(units_dir.join(u), text).unwrap();
        units.push(units_dir.join(u));
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(&units)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains("nodepool"),
        "systemd-analyze verify: {out:?}"
    );
}

/// Python Nodepool 11's `nodepool-launcher` script, installed by scripts/lib/deps.sh in
/// the test venv (on `PATH` under run-tests): the first `nodepool-launcher` on `PATH` that
/// is a Python script, or `$NODEPOOL_PY_BIN/nodepool-launcher`.
fn python_nodepool_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("NODEPOOL_PY_BIN")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    dirs.push(root.join("target/test-venv/bin"));
    dirs.into_iter()
        .find(|d| read(&d.join("nodepool-launcher")).starts_with("#!"))
        .map(|d| d.join("nodepool-launcher"))
}

/// The migration of docs/migration.md, with the real thing: Python Nodepool 11.0.0's
/// launcher and ours on one ZooKeeper and one cloud (the simulator), each running its own
/// provider (the state half-way through moving providers one at a time). Requests for
/// each provider's label are fulfilled by that side, and each side's CLI lists the
/// other's nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_nodepool_11_launcher_beside_ours() {
    let Some(py_launcher) = python_nodepool_bin() else {
        eprintln!("SKIPPED: Python Nodepool 11 is not installed (scripts/lib/deps.sh installs it in target/test-venv)");
        return;
    };
    let py_cli = py_launcher.with_file_name("nodepool");
    let env = Env::new().await;
    // The simulator as a process, as Python's openstacksdk meets a real cloud.
    let clouds = env.path("clouds.yaml");
    let mut sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_openstack-sim"))
        .arg("--write-clouds-yaml")
        .arg(&clouds)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start openstack-sim");
    let text = wait_for_within("clouds.yaml", Duration::from_secs(30), || async {
        let t = read(&clouds);
        t.contains("region_name").then_some(t)
    })
    .await;
    // `private: true`: openstacksdk takes the server's fixed address (the simulator's
    // are all on loopback) as its interface IP, which Python Nodepool needs.
    std::fs::write(&clouds, text + "    private: true\n").unwrap();
    // Python Nodepool insists on TLS to ZooKeeper.
    let Some(tls) = env.zk.tls_settings() else {
        eprintln!("SKIPPED: the test ZooKeeper has no TLS port");
        return;
    };
    let (host, port) = tls.hosts[0].clone();
    let certs = tls.tls.clone().expect("tls files");
    let config = |provider: &str, label: &str, extra: &str| {
        format!(
            "zookeeper-servers:\n  - host: {host}\n    port: {port}\n    chroot: {chroot}\n\
             zookeeper-tls:\n  ca: {ca}\n  cert: {cert}\n  key: {key}\n\
             labels:\n  - name: py-label\n  - name: rs-label\n\
             providers:\n  - name: {provider}\n    cloud: sim\n    rate: 0.01\n    boot-timeout: 60\n    launch-timeout: 120\n\
             \x20   cloud-images:\n      - name: cirros\n        image-name: cirros-0.6.2\n        username: cirros\n        connection-port: {ssh}\n\
             \x20   pools:\n      - name: main\n        max-servers: 5\n{extra}\
             \x20       labels:\n          - name: {label}\n            cloud-image: cirros\n            min-ram: 512\n",
            chroot = env.zk.chroot(),
            ca = certs.ca.display(),
            cert = certs.cert.display(),
            key = certs.key.display(),
            ssh = 22,
        )
    };
    let py_yaml = env.path("python.yaml");
    std::fs::write(
        &py_yaml,
        config(
            "py-provider",
            "py-label",
            "        host-key-checking: false\n        auto-floating-ip: false\n        use-internal-ip: true\n",
        ),
    )
    .unwrap();
    let rs_yaml = env.path("rust.yaml");
    std::fs::write(
        &rs_yaml,
        config(
            "rs-provider",
            "rs-label",
            "        host-key-checking: false\n        auto-floating-ip: false\n",
        ),
    )
    .unwrap();

    let mut py = Command::new(&py_launcher);
    py.args(["-f", "--no-webapp", "-c"])
        .arg(&py_yaml)
        .env("OS_CLIENT_CONFIG_FILE", &clouds);
    let py = DaemonProc::spawn(py, &env.path("python-launcher.log"));
    let mut rs = Command::new(workspace_bin("nodepool-launcher"));
    rs.args(["-f", "--no-webapp", "-c"])
        .arg(&rs_yaml)
        .env("OS_CLIENT_CONFIG_FILE", &clouds)
        .env_remove("RUST_LOG");
    let rs = DaemonProc::spawn(rs, &env.path("rust-launcher.log"));

    let store = env.store().await;
    // Both launchers register their pools (Python's component records parse as ours).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let pools = loop {
        let pools = store
            .components(ComponentKind::Pool)
            .await
            .unwrap_or_default();
        let names: Vec<String> = pools
            .iter()
            .filter_map(|c| c.component.pool.as_ref()?.provider_name.clone())
            .collect();
        if names.iter().any(|n| n == "py-provider") && names.iter().any(|n| n == "rs-provider") {
            break pools;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pools registered: {names:?}\npython log:\n{}\nrust log:\n{}",
            py.log_text(),
            rs.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let versions: Vec<String> = pools
        .iter()
        .filter_map(|c| c.component.version.clone())
        .collect();
    assert!(versions.contains(&"11.0.0".to_string()), "{versions:?}");
    assert!(
        versions.contains(&nodepool_shared::version::COMPONENT_VERSION.to_string()),
        "{versions:?}"
    );

    let submit = |label: &'static str| {
        let store = store.clone();
        async move {
            let mut r =
                nodepool_shared::model::NodeRequest::new(vec![label.to_string()], "zuul-test");
            store
                .create_request(&mut r, "100", false)
                .await
                .expect("submit")
        }
    };
    let rs_req = submit("rs-label").await;
    let py_req = submit("py-label").await;
    // Ours fulfils the request for its provider's label beside the Python launcher.
    let req = wait_for_within(
        "rs-label request fulfilled",
        Duration::from_secs(120),
        || {
            let store = store.clone();
            let id = rs_req.clone();
            async move {
                let (r, _) = store.get_request(&id).await.ok()??;
                (r.state == nodepool_shared::model::RequestState::Fulfilled).then_some(r)
            }
        },
    )
    .await;
    let (rs_node, _) = store.get_node(&req.nodes[0]).await.unwrap().unwrap();
    assert_eq!(rs_node.provider.as_deref(), Some("rs-provider"));
    assert_eq!(rs_node.state, NodeState::Ready);
    // Python's launcher accepts the request for its label and launches a node for it in
    // the same cloud (it cannot finish it: its openstacksdk finds no interface IP for the
    // simulator's servers, so its host-key scan step fails — see docs/migration.md).
    let py_node = wait_for_within(
        "Python's node for py-label",
        Duration::from_secs(120),
        || {
            let store = store.clone();
            async move {
                let nodes = store.nodes().await.ok()?;
                nodes
                    .into_iter()
                    .map(|(n, _)| n)
                    .find(|n| n.provider.as_deref() == Some("py-provider"))
            }
        },
    )
    .await;
    let (pending, _) = store.get_request(&py_req).await.unwrap().unwrap();
    assert!(
        pending
            .declined_by
            .iter()
            .all(|d| !d.contains("rs-provider"))
            || pending.state != nodepool_shared::model::RequestState::Failed,
        "{pending:?}"
    );
    // Each side's CLI lists the other's node.
    let ours = Command::new(workspace_bin("nodepool"))
        .arg("-c")
        .arg(&rs_yaml)
        .arg("list")
        .output()
        .unwrap();
    let theirs = Command::new(&py_cli)
        .arg("-c")
        .arg(&py_yaml)
        .arg("list")
        .env("OS_CLIENT_CONFIG_FILE", &clouds)
        .output()
        .unwrap();
    for (who, out, other) in [("ours", &ours, &py_node), ("Python's", &theirs, &rs_node)] {
        assert!(out.status.success(), "{who} nodepool list: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(other.id.as_str()) && text.contains(other.provider.as_deref().unwrap()),
            "{who} `nodepool list` lacks node {} of {:?}:\n{text}",
            other.id,
            other.provider
        );
    }
    assert!(rs.stop().await);
    drop(py);
    let _ = sim.kill().await;
}
