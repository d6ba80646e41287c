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

use tokio::io::AsyncBufReadExt;

use nodepool_shared::model::{ComponentKind, NodeState};
use nodepool_shared::testing::{wait_for_within, TestZk};
use nodepool_shared::zk::ZkStore;
use nodepool_tests::daemons::{bins_prebuilt, workspace_bin, DaemonProc};
use nodepool_tests::zuul::{FakeZuul, HeldNode, Outcome};

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

/// Clients that open connections to the web API and never finish a request cannot take
/// the launcher's descriptors: with a limit of 300 open files (as 1,024 under systemd,
/// scaled down), 400 such clients leave the launcher at most 256 web connections, it logs
/// that every slot is taken, nothing fails with "Too many open files", and `/ready`
/// answers again once the silent clients are dropped (10 s each). Found by attacking a
/// running launcher: before, every client kept its descriptor forever, and host-key
/// scans failed with `connect: Too many open files`.
#[tokio::test]
async fn silent_web_clients_cannot_take_the_launchers_descriptors() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let env = Env::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = read(&env.path("nodepool.yaml"))
        + &format!("webapp:\n  port: {port}\n  listen_address: 127.0.0.1\n");
    std::fs::write(env.path("web.yaml"), config).expect("config");
    let mut cmd = Command::new(workspace_bin("nodepool-launcher"));
    cmd.arg("-f")
        .arg("-c")
        .arg(env.path("web.yaml"))
        .env_remove("NOTIFY_SOCKET")
        .env("RUST_LOG", "info");
    // SAFETY: only setrlimit(2) between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 300,
                rlim_max: 300,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let d = DaemonProc::spawn(cmd, &env.path("web-launcher.out"));
    let url = format!("http://127.0.0.1:{port}/ready");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let ready = || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http.get(&url).send().await.ok()?;
            (r.status() == 200).then_some(())
        }
    };
    wait_for_within("/ready", Duration::from_secs(60), ready).await;
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", d.pid())).map_or(0, |r| r.count());
    let before = fds();

    let mut silent = Vec::new();
    for _ in 0..400 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect (the kernel queues what the launcher does not accept)");
        s.write_all(b"GET /ready HTTP/1.1\r\nHost: attacker\r\n")
            .await
            .unwrap();
        silent.push(s);
    }
    wait_for_within("the busy warning", Duration::from_secs(30), || {
        let text = d.log_text();
        async move {
            text.contains("every connection slot is taken")
                .then_some(())
        }
    })
    .await;
    let during = fds();
    assert!(
        during <= before + 256 + 8,
        "{during} descriptors open with 400 silent clients ({before} before)"
    );
    // Served again once the silent clients are dropped.
    wait_for_within(
        "/ready after the silent clients",
        Duration::from_secs(90),
        ready,
    )
    .await;
    let mut buf = [0u8; 64];
    let first = silent.first_mut().unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), first.read(&mut buf)).await;
    assert!(
        matches!(ended, Ok(Ok(0)) | Ok(Err(_))),
        "the first silent client is still connected"
    );
    drop(silent);
    let text = d.log_text();
    assert!(!text.contains("Too many open files"), "{text}");
    assert!(text.contains("launcher ready"), "{text}");
    assert!(d.stop().await, "the launcher stops after SIGTERM");
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
/// same code as a release build, quicker in CI); with `--no-build` when the suite's
/// `cargo test --workspace` has built them ([`bins_prebuilt`]): the script's own
/// `cargo build -p ...` resolves other features, so it compiled our crates again (over
/// two minutes of a CI run on 2 cores) and re-linked the binaries other tests were
/// starting. Its contents: the four binaries, man
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
    let mut package = Command::new("bash");
    package.arg(root.join("scripts/package")).arg("--debug");
    if bins_prebuilt() {
        package.arg("--no-build");
    }
    let out = package
        .arg("--out")
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

/// One provider of the side-by-side test: `name` serves `label` from the simulator's
/// `cirros` image (its sshd on `ssh_port`), with Nodepool's defaults otherwise (host-key checking, automatic
/// floating IPs) — a config as an operator writes it.
fn interop_provider(name: &str, label: &str, ssh_port: u16) -> String {
    format!(
        "  - name: {name}\n    cloud: sim\n    rate: 0.01\n    boot-timeout: 60\n    launch-timeout: 120\n\
         \x20   cloud-images:\n      - name: cirros\n        image-name: cirros-0.6.2\n        username: cirros\n        connection-port: {ssh_port}\n\
         \x20   pools:\n      - name: main\n        max-servers: 5\n\
         \x20       labels:\n          - name: {label}\n            cloud-image: cirros\n            min-ram: 512\n"
    )
}

/// Python Nodepool 11 beside ours: one ZooKeeper (TLS, which Python requires), one
/// simulator process, a config file per launcher, and Python's CLI.
struct SideBySide {
    env: Env,
    zk_section: String,
    sim: tokio::process::Child,
    sim_url: String,
    ssh_port: u16,
    clouds: PathBuf,
    py_cli: PathBuf,
    py_yaml: PathBuf,
    rs_yaml: PathBuf,
}

impl SideBySide {
    /// `None` (test skipped) without Python Nodepool or a TLS port on the test ZooKeeper.
    async fn start() -> Option<SideBySide> {
        let Some(py_launcher) = python_nodepool_bin() else {
            eprintln!("SKIPPED: Python Nodepool 11 is not installed (scripts/lib/deps.sh installs it in target/test-venv)");
            return None;
        };
        let env = Env::new().await;
        let Some(tls) = env.zk.tls_settings() else {
            eprintln!("SKIPPED: the test ZooKeeper has no TLS port");
            return None;
        };
        let (host, port) = tls.hosts[0].clone();
        let certs = tls.tls.clone().expect("tls files");
        let zk_section = format!(
            "zookeeper-servers:\n  - host: {host}\n    port: {port}\n    chroot: {chroot}\n\
             zookeeper-tls:\n  ca: {ca}\n  cert: {cert}\n  key: {key}\n\
             labels:\n  - name: py-label\n  - name: rs-label\n",
            chroot = env.zk.chroot(),
            ca = certs.ca.display(),
            cert = certs.cert.display(),
            key = certs.key.display(),
        );
        // The simulator as a process, met over HTTP as a real cloud. A server takes a
        // second to boot, as on Nova, where a server is never ACTIVE on the first read
        // after its create: Python Nodepool 11 relies on that (an instantly ACTIVE server
        // is taken from openstacksdk's create result, which carries no interface IP).
        // Its fake sshds on a free port (not 22: no root needed, no clash with another
        // simulator on this host). Dual-stack (`--ipv6`): which address each launcher
        // picks (openstacksdk prefers IPv6 when this host has a global IPv6 address) is
        // part of the comparison.
        let clouds = env.path("clouds.yaml");
        let mut sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_openstack-sim"))
            .arg("--write-clouds-yaml")
            .arg(&clouds)
            .args(["--boot-delay-ms", "1000", "--ssh-port", "0", "--ipv6"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start openstack-sim");
        let mut lines = tokio::io::BufReader::new(sim.stdout.take().expect("stdout")).lines();
        let (mut sim_url, mut ssh_port) = (None, None);
        while sim_url.is_none() || ssh_port.is_none() {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("openstack-sim start")
                .expect("openstack-sim stdout")
                .expect("openstack-sim exited");
            if let Some(u) = line.strip_prefix("openstack-sim listening on ") {
                sim_url = Some(u.to_string());
            } else if let Some(p) = line.strip_prefix("openstack-sim fake sshd port ") {
                ssh_port = p.parse::<u16>().ok();
            }
        }
        let (sim_url, ssh_port) = (sim_url.unwrap(), ssh_port.unwrap());
        wait_for_within("clouds.yaml", Duration::from_secs(30), || async {
            read(&clouds).contains("region_name").then_some(())
        })
        .await;
        let (py_yaml, rs_yaml) = (env.path("python.yaml"), env.path("rust.yaml"));
        Some(SideBySide {
            py_cli: py_launcher.with_file_name("nodepool"),
            env,
            zk_section,
            sim,
            sim_url,
            ssh_port,
            clouds,
            py_yaml,
            rs_yaml,
        })
    }

    /// Writes a launcher's config with `providers` (as [`interop_provider`] entries).
    fn write_config(&self, path: &Path, providers: &[(&str, &str)]) {
        let list: String = providers
            .iter()
            .map(|(p, l)| interop_provider(p, l, self.ssh_port))
            .collect();
        let providers = if list.is_empty() {
            "providers: []\n".to_string()
        } else {
            format!("providers:\n{list}")
        };
        std::fs::write(path, format!("{}{providers}", self.zk_section)).expect("config");
    }

    fn python_launcher(&self) -> DaemonProc {
        let mut py = Command::new(self.py_cli.with_file_name("nodepool-launcher"));
        py.args(["-f", "--no-webapp", "-c"])
            .arg(&self.py_yaml)
            .env("OS_CLIENT_CONFIG_FILE", &self.clouds);
        DaemonProc::spawn(py, &self.env.path("python-launcher.log"))
    }

    fn our_launcher(&self) -> DaemonProc {
        let mut rs = Command::new(workspace_bin("nodepool-launcher"));
        rs.args(["-f", "--no-webapp", "-c"])
            .arg(&self.rs_yaml)
            .env("OS_CLIENT_CONFIG_FILE", &self.clouds)
            .env_remove("RUST_LOG");
        DaemonProc::spawn(rs, &self.env.path("rust-launcher.log"))
    }

    /// Runs `nodepool ARGS` of Python (`python`) or ours with that side's config.
    fn cli(&self, python: bool, args: &[&str]) -> String {
        let (bin, yaml) = if python {
            (self.py_cli.clone(), &self.py_yaml)
        } else {
            (workspace_bin("nodepool"), &self.rs_yaml)
        };
        let out = Command::new(bin)
            .arg("-c")
            .arg(yaml)
            .args(args)
            .env("OS_CLIENT_CONFIG_FILE", &self.clouds)
            .output()
            .unwrap();
        let who = if python { "Python's" } else { "our" };
        assert!(out.status.success(), "{who} nodepool {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Host keys of every server the simulator has, by server id.
    async fn sim_servers(&self) -> serde_json::Map<String, serde_json::Value> {
        let v: serde_json::Value = reqwest::get(format!("{}/admin/ssh", self.sim_url))
            .await
            .expect("simulator admin API")
            .json()
            .await
            .expect("admin JSON");
        v["host_keys"].as_object().cloned().unwrap_or_default()
    }

    /// Waits until node `id`'s record and its server are both gone.
    async fn wait_deleted(&self, store: &ZkStore, id: &str, server: &str, who: &str) {
        wait_for_within(
            &format!("node {id} (server {server}) deleted by {who}"),
            Duration::from_secs(90),
            || async {
                let node_gone = store.get_node(&id.into()).await.ok()?.is_none();
                let server_gone = !self.sim_servers().await.contains_key(server);
                (node_gone && server_gone).then_some(())
            },
        )
        .await;
    }
}

/// The pools registered now, sorted: (provider name, (pool worker id, component
/// version)). A provider registered by both launchers (during a move) appears twice.
async fn pool_owners(store: &ZkStore) -> Vec<(String, (String, String))> {
    let pools = store
        .components(ComponentKind::Pool)
        .await
        .unwrap_or_default();
    pools
        .into_iter()
        .filter_map(|c| {
            let pool = c.component.pool?;
            Some((
                pool.provider_name?,
                (pool.id?, c.component.version.unwrap_or_default()),
            ))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Waits until `provider`'s pool is registered by the launcher of `version` (and only by
/// it); returns the pool worker id.
async fn wait_pool_owner(
    store: &ZkStore,
    provider: &str,
    version: &str,
    logs: &dyn Fn() -> String,
) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let owners = pool_owners(store).await;
        let mine: Vec<_> = owners.iter().filter(|(p, _)| *p == provider).collect();
        if let [(_, (id, v))] = mine.as_slice() {
            if v == version {
                return id.clone();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{provider} not registered by {version}: {owners:?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A node record without what is unique to the node (ids, times, keys, provider and
/// label, the host part of its addresses): what is left must be the same whichever
/// launcher wrote it — the same fields, and the same choice among the server's
/// addresses (`127.30.*` or its IPv6 twin `::ffff:127.30.*`) for each address field.
fn node_shape(
    rec: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    const UNIQUE: &[&str] = &[
        "external_id",
        "created_time",
        "state_time",
        "launcher",
        "host_keys",
        "provider",
        "type",
        "allocated_to",
        "id",
    ];
    let mask = |v: &serde_json::Value| match v.as_str().and_then(|a| a.find("127.30.")) {
        Some(i) => serde_json::json!(format!("{}127.30.*", &v.as_str().unwrap()[..i])),
        None => v.clone(),
    };
    rec.iter()
        .filter(|(k, _)| !UNIQUE.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), mask(v)))
        .collect()
}

/// Submits a request for `label` as Zuul does and accepts it (its node locked by us).
async fn fulfil(zuul: &FakeZuul, label: &str) -> HeldNode {
    let id = zuul
        .submit(&[label.to_string()], 100, 0, "tenant", None)
        .await
        .unwrap();
    match zuul.wait(&id, Duration::from_secs(120)).await.unwrap() {
        Outcome::Fulfilled(r) => zuul.accept(&r).await.unwrap().remove(0),
        other => panic!("{label} request {id}: {}", other.name()),
    }
}

/// The node's id and its server's id.
fn node_and_server(held: &HeldNode) -> (String, String) {
    let server = held.node().unwrap().external_id.expect("external_id");
    (held.id().to_string(), server)
}

/// Half-way through the migration (each side runs one provider): requests for each
/// side's label are fulfilled by that side, with the host keys the simulator's sshd
/// serves and records of the same shape; each side's CLI lists the other's nodes and
/// deletes one, which the node's own launcher then deletes. Returns a node of Python's
/// still held (in use) by Zuul.
async fn half_way(t: &SideBySide, store: &ZkStore, zuul: &FakeZuul, pools: [&str; 2]) -> HeldNode {
    let [py_pool, rs_pool] = pools;
    let (rs_a, py_a, mut py_b) = tokio::join!(
        fulfil(zuul, "rs-label"),
        fulfil(zuul, "py-label"),
        fulfil(zuul, "py-label")
    );
    let servers = t.sim_servers().await;
    for (held, provider, pool) in [
        (&rs_a, "rs-provider", rs_pool),
        (&py_a, "py-provider", py_pool),
        (&py_b, "py-provider", py_pool),
    ] {
        let n = held.node().unwrap();
        assert_eq!(n.provider.as_deref(), Some(provider), "{n:?}");
        assert_eq!(n.launcher.as_deref(), Some(pool), "{n:?}");
        assert_eq!(n.state, NodeState::Ready);
        let (_, server) = node_and_server(held);
        assert_eq!(
            Some(&serde_json::json!(n.host_keys)),
            servers.get(&server),
            "{n:?}"
        );
        let ip = n.interface_ip.as_deref().unwrap_or_default();
        let ip = ip.strip_prefix("::ffff:").unwrap_or(ip);
        assert!(ip.starts_with("127.30."), "{n:?}");
    }
    // Both implementations describe a server of the same cloud the same way.
    assert_eq!(node_shape(py_a.record()), node_shape(rs_a.record()));

    let (ours_list, theirs_list) = (t.cli(false, &["list"]), t.cli(true, &["list"]));
    for id in [py_a.id(), py_b.id()] {
        assert!(ours_list.contains(id.as_str()), "{ours_list}");
    }
    assert!(theirs_list.contains(rs_a.id().as_str()), "{theirs_list}");
    let (rs_a_id, rs_a_server) = node_and_server(&rs_a);
    let (py_a_id, py_a_server) = node_and_server(&py_a);
    zuul.unlock(vec![rs_a, py_a]).await;
    t.cli(false, &["delete", &py_a_id]);
    t.cli(true, &["delete", &rs_a_id]);
    t.wait_deleted(store, &py_a_id, &py_a_server, "Python's launcher")
        .await;
    t.wait_deleted(store, &rs_a_id, &rs_a_server, "ours").await;
    zuul.use_nodes(std::slice::from_mut(&mut py_b), "project")
        .await
        .unwrap();
    py_b
}

/// The migration of docs/migration.md, with the real thing: Python Nodepool 11.0.0's
/// launcher and ours on one ZooKeeper and one cloud (the simulator). Half-way through
/// (see [`half_way`]) both fulfil requests and each side's CLI works on the other's
/// nodes. Then Python's provider moves to our config: Python's pool goes, ours takes the
/// provider, deletes the node Python launched once Zuul returns it, and fulfils the
/// provider's next request; and back (the rollback), the other way round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_nodepool_11_launcher_beside_ours() {
    let Some(mut t) = SideBySide::start().await else {
        return;
    };
    t.write_config(&t.py_yaml, &[("py-provider", "py-label")]);
    t.write_config(&t.rs_yaml, &[("rs-provider", "rs-label")]);
    let mut py = t.python_launcher();
    let rs = t.our_launcher();
    let logs = || {
        format!(
            "python log:\n{}\nrust log:\n{}",
            py.log_text(),
            rs.log_text()
        )
    };
    let store = t.env.store().await;
    let ours = nodepool_shared::version::COMPONENT_VERSION;
    let py_pool = wait_pool_owner(&store, "py-provider", "11.0.0", &logs).await;
    let rs_pool = wait_pool_owner(&store, "rs-provider", ours, &logs).await;
    let zuul = FakeZuul::new(t.env.zk.client().await, "zuul-test");
    let py_b = half_way(&t, &store, &zuul, [&py_pool, &rs_pool]).await;

    // Move py-provider from Python's config to ours while Zuul uses py_b.
    t.write_config(&t.py_yaml, &[]);
    let both = [("rs-provider", "rs-label"), ("py-provider", "py-label")];
    t.write_config(&t.rs_yaml, &both);
    let moved_pool = wait_pool_owner(&store, "py-provider", ours, &logs).await;
    // Zuul returns py_b: ours deletes the node Python launched.
    let (py_b_id, py_b_server) = node_and_server(&py_b);
    zuul.return_nodes(vec![py_b]).await.unwrap();
    t.wait_deleted(&store, &py_b_id, &py_b_server, "ours after the move")
        .await;
    // py-label's next request is ours.
    let mut py_c = fulfil(&zuul, "py-label").await;
    let n = py_c.node().unwrap();
    assert_eq!(n.provider.as_deref(), Some("py-provider"));
    assert_eq!(n.launcher.as_deref(), Some(moved_pool.as_str()));
    zuul.use_nodes(std::slice::from_mut(&mut py_c), "project")
        .await
        .unwrap();

    // Rollback: py-provider back to Python, which deletes the node ours launched once
    // Zuul returns it, and fulfils the next request.
    t.write_config(&t.py_yaml, &[("py-provider", "py-label")]);
    t.write_config(&t.rs_yaml, &[("rs-provider", "rs-label")]);
    let back_pool = wait_pool_owner(&store, "py-provider", "11.0.0", &logs).await;
    let (py_c_id, py_c_server) = node_and_server(&py_c);
    zuul.return_nodes(vec![py_c]).await.unwrap();
    let who = "Python's launcher after the rollback";
    t.wait_deleted(&store, &py_c_id, &py_c_server, who).await;
    let py_d = fulfil(&zuul, "py-label").await;
    let node = py_d.node().unwrap();
    let pools = pool_owners(&store).await;
    assert_eq!(
        node.launcher.as_deref(),
        Some(back_pool.as_str()),
        "the request after the rollback was not served by Python's pool: node {node:?}, \
         pools {pools:?}\n{}",
        logs()
    );
    zuul.unlock(vec![py_d]).await;

    assert!(py.alive(), "Python's launcher died:\n{}", py.log_text());
    assert!(rs.stop().await);
    drop(py);
    let _ = t.sim.kill().await;
}
