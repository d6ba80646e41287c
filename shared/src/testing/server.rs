//! [`ZkServer`]: a real standalone ZooKeeper 3.8 (Debian package `zookeeper`) on free
//! loopback ports, plain and TLS (client certificates required), in a temp dataDir.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::certs::TestCerts;
use super::cleanup::{remove_on_signal, RemoveOnSignal};
use super::spawn::spawn_tied;
use super::HarnessError;
use crate::sync::MutexExt;
use crate::zk::{ZkSettings, ZkTls};

/// Jars (in `/usr/share/java`, override with `NODEPOOL_ZK_JAR_DIR`) needed besides the
/// ones `zookeeper.jar`'s manifest pulls in: Netty's codec/resolver for the TLS port and a
/// log4j binding for slf4j.
pub(super) const JARS: &[&str] = &[
    "zookeeper.jar",
    "zookeeper-jute.jar",
    "netty-codec.jar",
    "netty-resolver.jar",
    "netty-transport-native-unix-common.jar",
    "slf4j-api.jar",
    "slf4j-log4j12.jar",
    "log4j-1.2.jar",
];

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running (or stopped) ZooKeeper process. Killed on drop, and its directory removed
/// then, or by the signal handler of [`super::cleanup`] if a signal stops the process.
pub struct ZkServer {
    dir: tempfile::TempDir,
    _remove_on_signal: RemoveOnSignal,
    plain_port: u16,
    tls_port: u16,
    certs: TestCerts,
    child: Mutex<Option<Child>>,
}

impl std::fmt::Debug for ZkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkServer")
            .field("dir", &self.dir.path())
            .field("plain_port", &self.plain_port)
            .field("tls_port", &self.tls_port)
            .finish()
    }
}

fn free_port() -> Result<u16, HarnessError> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| HarnessError::new(format!("bind a loopback port: {e}")))?;
    Ok(l.local_addr()
        .map_err(|e| HarnessError::new(e.to_string()))?
        .port())
}

/// Sends a four-letter-word command to 127.0.0.1:`port` and returns the reply.
pub fn four_letter_word(port: u16, cmd: &str) -> std::io::Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(cmd.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

impl ZkServer {
    /// Starts a new server (certificates, config, process) and waits until it answers.
    pub fn start() -> Result<ZkServer, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("nodepool-test-zk-")
            .tempdir()
            .map_err(|e| HarnessError::new(format!("create temp dir: {e}")))?;
        let remove_on_signal = remove_on_signal(dir.path());
        let certs = TestCerts::generate(&dir.path().join("certs"))?;
        let mut server = ZkServer {
            _remove_on_signal: remove_on_signal,
            plain_port: free_port()?,
            tls_port: free_port()?,
            certs,
            dir,
            child: Mutex::new(None),
        };
        // Ports are picked free but may be taken before ZooKeeper binds them: retry.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) if attempt >= 3 => return Err(e),
                Err(e) => {
                    tracing::warn!("ZooKeeper start failed, retrying on other ports: {e}");
                    server.stop();
                    server.plain_port = free_port()?;
                    server.tls_port = free_port()?;
                }
            }
        }
    }

    /// Plain client port on 127.0.0.1.
    pub fn plain_port(&self) -> u16 {
        self.plain_port
    }

    /// TLS client port on 127.0.0.1.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// The throw-away CA and client certificate.
    pub fn certs(&self) -> &TestCerts {
        &self.certs
    }

    /// Directory with zoo.cfg, data, log and certificates.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Plain settings (no chroot) with short test timeouts.
    pub fn plain_settings(&self) -> ZkSettings {
        test_settings(vec![("127.0.0.1".into(), self.plain_port)], None)
    }

    /// TLS settings (no chroot) with the throw-away client certificate.
    pub fn tls_settings(&self) -> ZkSettings {
        test_settings(
            vec![("127.0.0.1".into(), self.tls_port)],
            Some(ZkTls {
                ca: self.certs.ca.clone(),
                cert: self.certs.client_cert.clone(),
                key: self.certs.client_key.clone(),
            }),
        )
    }

    /// Kills the process (like a crash; the dataDir keeps the state).
    pub fn stop(&self) {
        let mut guard = self.child.lock_or_recover();
        if let Some(mut child) = guard.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process with `SIGSTOP`: connections stay open but nothing is answered
    /// (a hung server, unlike [`Self::stop`] which refuses connections). Returns whether
    /// a running process was signalled.
    pub fn freeze(&self) -> bool {
        if !self.signal(libc::SIGSTOP) {
            return false;
        }
        // SIGSTOP takes effect asynchronously: a JVM thread running on another core can
        // still answer a request or two. Wait (bounded) until every thread is stopped.
        let Some(pid) = self.pid() else {
            return false;
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if all_threads_stopped(pid) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        false
    }

    /// The process id, while the process runs (benchmarks read its CPU time).
    pub fn pid(&self) -> Option<libc::pid_t> {
        let guard = self.child.lock_or_recover();
        guard
            .as_ref()
            .and_then(|c| libc::pid_t::try_from(c.id()).ok())
    }

    /// Resumes a process frozen by [`Self::freeze`] (`SIGCONT`).
    pub fn thaw(&self) -> bool {
        self.signal(libc::SIGCONT)
    }

    fn signal(&self, sig: libc::c_int) -> bool {
        let guard = self.child.lock_or_recover();
        let Some(child) = guard.as_ref() else {
            return false;
        };
        let Ok(pid) = libc::pid_t::try_from(child.id()) else {
            return false;
        };
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped (the
        // handle is still held), so the pid cannot have been reused.
        unsafe { libc::kill(pid, sig) == 0 }
    }

    /// Starts the process again on the same ports with the same dataDir (stops it first
    /// if it runs).
    pub fn restart(&self) -> Result<(), HarnessError> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                // The old sockets may linger for a moment.
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!("ZooKeeper restart failed, retrying: {e}");
                    self.stop();
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// True while the process runs.
    pub fn is_running(&self) -> bool {
        let mut guard = self.child.lock_or_recover();
        match guard.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn write_config(&self) -> Result<PathBuf, HarnessError> {
        let d = self.dir.path();
        let cfg = format!(
            "tickTime=500\n\
             initLimit=10\n\
             syncLimit=5\n\
             dataDir={data}\n\
             clientPort={plain}\n\
             clientPortAddress=127.0.0.1\n\
             secureClientPort={tls}\n\
             secureClientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n\
             4lw.commands.whitelist=*\n\
             forceSync=no\n\
             maxClientCnxns=0\n\
             minSessionTimeout=1000\n\
             maxSessionTimeout=60000\n\
             serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
             ssl.keyStore.location={ks}\n\
             ssl.keyStore.type=PEM\n\
             ssl.trustStore.location={ca}\n\
             ssl.trustStore.type=PEM\n\
             ssl.clientAuth=need\n",
            data = d.join("data").display(),
            plain = self.plain_port,
            tls = self.tls_port,
            ks = self.certs.server_keystore.display(),
            ca = self.certs.ca.display(),
        );
        let log4j = "log4j.rootLogger=WARN, CONSOLE\n\
                     log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n\
                     log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n\
                     log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %m%n\n";
        let write = |name: &str, content: &str| {
            std::fs::write(d.join(name), content)
                .map_err(|e| HarnessError::new(format!("write {name}: {e}")))
        };
        write("zoo.cfg", &cfg)?;
        write("log4j.properties", log4j)?;
        Ok(d.join("zoo.cfg"))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("zookeeper.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn launch(&self) -> Result<(), HarnessError> {
        let cfg = self.write_config()?;
        let jar_dir = std::env::var("NODEPOOL_ZK_JAR_DIR").unwrap_or("/usr/share/java".into());
        if !Path::new(&jar_dir).join("zookeeper.jar").exists() {
            return Err(HarnessError::new(format!(
                "{jar_dir}/zookeeper.jar not found: install the Debian package `zookeeper` \
                 (scripts/run-tests does that)"
            )));
        }
        let mut cp = vec![self.dir.path().display().to_string()];
        cp.extend(JARS.iter().map(|j| format!("{jar_dir}/{j}")));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| HarnessError::new(format!("open ZooKeeper log: {e}")))?;
        let log2 = log
            .try_clone()
            .map_err(|e| HarnessError::new(e.to_string()))?;
        // Scale benchmarks hold 100,000 node records: NODEPOOL_ZK_HEAP raises the heap.
        let heap = std::env::var("NODEPOOL_ZK_HEAP").unwrap_or_else(|_| "256m".into());
        // Tests want a fast start (C1 only, serial GC); a benchmark that measures the
        // server's share wants a production JVM: NODEPOOL_ZK_JVM_OPTS replaces these.
        let jvm_opts = std::env::var("NODEPOOL_ZK_JVM_OPTS")
            .unwrap_or_else(|_| "-XX:+UseSerialGC -XX:TieredStopAtLevel=1".into());
        let mut cmd = Command::new("java");
        cmd.arg(format!("-Xmx{heap}"))
            .args(jvm_opts.split_whitespace())
            .arg("-Dzookeeper.jmx.log4j.disable=true")
            .arg("-cp")
            .arg(cp.join(":"))
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child =
            spawn_tied(cmd).map_err(|e| HarnessError::new(format!("cannot run java: {e}")))?;
        *self.child.lock_or_recover() = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !self.is_running() {
                return Err(HarnessError::new(format!(
                    "ZooKeeper exited during start-up; log:\n{}",
                    self.log_tail()
                )));
            }
            let plain_ok = four_letter_word(self.plain_port, "ruok").is_ok_and(|r| r == "imok");
            let tls_ok = plain_ok
                && TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], self.tls_port)),
                    Duration::from_secs(1),
                )
                .is_ok();
            if tls_ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(HarnessError::new(format!(
                    "ZooKeeper did not answer within {START_TIMEOUT:?}; log:\n{}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Settings with test-friendly timeouts (session 10 s, requests 15 s, connect 30 s).
pub fn test_settings(hosts: Vec<(String, u16)>, tls: Option<ZkTls>) -> ZkSettings {
    ZkSettings {
        hosts,
        chroot: None,
        tls,
        session_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(15),
        connect_timeout: Some(Duration::from_secs(30)),
    }
}

/// True when every thread of `pid` is in the stopped state (`T` in `/proc/.../stat`).
fn all_threads_stopped(pid: libc::pid_t) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // The state follows the command, which is in parentheses and may hold spaces.
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if !matches!(state, Some("T") | Some("t")) {
            return false;
        }
        any = true;
    }
    any
}
