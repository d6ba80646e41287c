//! [`ZkEnsemble`]: a real ZooKeeper 3.8 quorum (n servers) on loopback, for fault tests
//! that stop the leader or a follower and check that clients and caches carry on.
//!
//! Each member has its own directory (`zoo.cfg`, `data/myid`, log), four free loopback
//! ports (client, TLS client, peer, election) and the same throw-away CA. Processes are
//! started with [`spawn_tied`], so nothing outlives the test process; [`Drop`] kills them
//! and removes the directories (so does a signal that stops the process: see
//! [`super::cleanup`]). All calls here block (use `spawn_blocking` from async
//! code).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::certs::TestCerts;
use super::cleanup::{remove_on_signal, RemoveOnSignal};
use super::server::{four_letter_word, test_settings, JARS};
use super::spawn::spawn_tied;
use super::HarnessError;
use crate::sync::MutexExt;
use crate::zk::{ZkSettings, ZkTls};

/// Bound of every wait in this module (start-up, quorum).
pub const ENSEMBLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What one member says it is (`srvr` four-letter word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberMode {
    /// Serving, and the quorum leader.
    Leader,
    /// Serving, following the leader.
    Follower,
    /// Serving without a quorum (only with `n == 1`... never in this harness).
    Standalone,
    /// Running but not serving (no quorum, election in progress).
    NotServing,
    /// Process stopped or not answering.
    Down,
}

impl MemberMode {
    /// True for a member that serves client requests as part of a quorum.
    pub fn is_serving(self) -> bool {
        matches!(self, MemberMode::Leader | MemberMode::Follower)
    }
}

/// One server of the ensemble.
struct Member {
    myid: usize,
    dir: PathBuf,
    client_port: u16,
    tls_port: u16,
    peer_port: u16,
    election_port: u16,
    child: Mutex<Option<Child>>,
}

impl Member {
    fn log_path(&self) -> PathBuf {
        self.dir.join("zookeeper.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn is_running(&self) -> bool {
        let mut guard = self.child.lock_or_recover();
        match guard.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn kill(&self) {
        let mut guard = self.child.lock_or_recover();
        if let Some(mut child) = guard.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn mode(&self) -> MemberMode {
        if !self.is_running() {
            return MemberMode::Down;
        }
        match four_letter_word(self.client_port, "srvr") {
            Err(_) => MemberMode::Down,
            Ok(out) => parse_mode(&out),
        }
    }

    fn write_config(
        &self,
        servers: &str,
        certs: &TestCerts,
        single: bool,
    ) -> Result<PathBuf, HarnessError> {
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data)
            .map_err(|e| HarnessError::new(format!("create {}: {e}", data.display())))?;
        let write = |p: PathBuf, content: &str| {
            std::fs::write(&p, content)
                .map_err(|e| HarnessError::new(format!("write {}: {e}", p.display())))
        };
        write(data.join("myid"), &format!("{}\n", self.myid))?;
        let cfg = format!(
            "tickTime=500\n\
             initLimit=20\n\
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
             reconfigEnabled=false\n\
             standaloneEnabled={standalone}\n\
             serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
             ssl.keyStore.location={ks}\n\
             ssl.keyStore.type=PEM\n\
             ssl.trustStore.location={ca}\n\
             ssl.trustStore.type=PEM\n\
             ssl.clientAuth=need\n\
             {servers}",
            data = data.display(),
            plain = self.client_port,
            tls = self.tls_port,
            standalone = single,
            ks = certs.server_keystore.display(),
            ca = certs.ca.display(),
        );
        let log4j = "log4j.rootLogger=WARN, CONSOLE\n\
                     log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n\
                     log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n\
                     log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %m%n\n";
        write(self.dir.join("zoo.cfg"), &cfg)?;
        write(self.dir.join("log4j.properties"), log4j)?;
        Ok(self.dir.join("zoo.cfg"))
    }

    /// Spawns the process (config already written) and waits until it answers `ruok`
    /// (it may not serve yet: that needs a quorum).
    fn launch(&self) -> Result<(), HarnessError> {
        let jar_dir = std::env::var("NODEPOOL_ZK_JAR_DIR").unwrap_or("/usr/share/java".into());
        if !Path::new(&jar_dir).join("zookeeper.jar").exists() {
            return Err(HarnessError::new(format!(
                "{jar_dir}/zookeeper.jar not found: install the Debian package `zookeeper`"
            )));
        }
        let mut cp = vec![self.dir.display().to_string()];
        cp.extend(JARS.iter().map(|j| format!("{jar_dir}/{j}")));
        let open_log = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())
                .map_err(|e| HarnessError::new(format!("open ZooKeeper log: {e}")))
        };
        let mut cmd = Command::new("java");
        cmd.arg("-Xmx128m")
            .arg("-XX:+UseSerialGC")
            .arg("-XX:TieredStopAtLevel=1")
            .arg("-Dzookeeper.jmx.log4j.disable=true")
            .arg("-Dzookeeper.cnxTimeout=1000")
            .arg("-cp")
            .arg(cp.join(":"))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(self.dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(open_log()?)
            .stderr(open_log()?);
        let child =
            spawn_tied(cmd).map_err(|e| HarnessError::new(format!("cannot run java: {e}")))?;
        *self.child.lock_or_recover() = Some(child);
        let deadline = Instant::now() + ENSEMBLE_TIMEOUT;
        loop {
            if !self.is_running() {
                return Err(HarnessError::new(format!(
                    "ZooKeeper member {} exited during start-up; log:\n{}",
                    self.myid,
                    self.log_tail()
                )));
            }
            let up = four_letter_word(self.client_port, "ruok").is_ok_and(|r| r == "imok")
                && TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], self.tls_port)),
                    Duration::from_secs(1),
                )
                .is_ok();
            if up {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(HarnessError::new(format!(
                    "ZooKeeper member {} did not answer within {ENSEMBLE_TIMEOUT:?}; log:\n{}",
                    self.myid,
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `Mode:` of a `srvr` reply.
fn parse_mode(srvr: &str) -> MemberMode {
    let mode = srvr
        .lines()
        .find_map(|l| l.strip_prefix("Mode:"))
        .map(str::trim);
    match mode {
        Some("leader") => MemberMode::Leader,
        Some("follower") => MemberMode::Follower,
        Some("standalone") => MemberMode::Standalone,
        _ => MemberMode::NotServing,
    }
}

/// `k` distinct free loopback ports (all held open while picking, so no duplicates).
fn free_ports(k: usize) -> Result<Vec<u16>, HarnessError> {
    let listeners = (0..k)
        .map(|_| {
            TcpListener::bind("127.0.0.1:0")
                .map_err(|e| HarnessError::new(format!("bind a loopback port: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| HarnessError::new(e.to_string()))
        })
        .collect()
}

/// A ZooKeeper quorum of n servers on loopback. Members are indexed `0..n` (their
/// `myid` is `index + 1`). Killed and removed on drop.
pub struct ZkEnsemble {
    dir: PathBuf,
    remove_dir: bool,
    /// Removes `dir` if a signal stops the process (none once [`Self::keep_dir`]).
    _remove_on_signal: Option<RemoveOnSignal>,
    certs: TestCerts,
    members: Vec<Member>,
    start_duration: Duration,
    exclusive: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ZkEnsemble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkEnsemble")
            .field("dir", &self.dir)
            .field(
                "client_ports",
                &self
                    .members
                    .iter()
                    .map(|m| m.client_port)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

static SHARED: OnceLock<Result<ZkEnsemble, HarnessError>> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(Ok(e)) = SHARED.get() {
        e.cleanup();
    }
}

impl ZkEnsemble {
    /// Starts `n` servers (n ≥ 1; use an odd number) and waits until they form a quorum
    /// (bounded by [`ENSEMBLE_TIMEOUT`]). Retries twice on other ports if a member fails.
    pub fn start(n: usize) -> Result<ZkEnsemble, HarnessError> {
        if n == 0 {
            return Err(HarnessError::new("an ensemble needs at least one member"));
        }
        let began = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("nodepool-test-ensemble-")
            .tempdir()
            .map_err(|e| HarnessError::new(format!("create temp dir: {e}")))?
            .keep();
        let certs = match TestCerts::generate(&dir.join("certs")) {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let mut ensemble = ZkEnsemble {
            _remove_on_signal: Some(remove_on_signal(&dir)),
            dir,
            remove_dir: true,
            certs,
            members: Vec::new(),
            start_duration: Duration::ZERO,
            exclusive: tokio::sync::Mutex::new(()),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match ensemble.try_launch_all(n) {
                Ok(()) => break,
                Err(e) if attempt >= 3 => return Err(e),
                Err(e) => {
                    tracing::warn!("ZooKeeper ensemble start failed, retrying on other ports: {e}");
                }
            }
        }
        ensemble.start_duration = began.elapsed();
        Ok(ensemble)
    }

    /// A 3-member ensemble shared by all tests of this process (started on first use,
    /// killed and removed at process exit). Tests that stop members must hold
    /// [`Self::exclusive`] and call [`Self::heal`] first.
    pub fn shared() -> Result<&'static ZkEnsemble, HarnessError> {
        let r = SHARED.get_or_init(|| {
            let e = ZkEnsemble::start(3);
            if e.is_ok() {
                // SAFETY: registering a plain extern "C" function without captured state.
                unsafe {
                    libc::atexit(stop_shared);
                }
            }
            e
        });
        r.as_ref().map_err(Clone::clone)
    }

    fn try_launch_all(&mut self, n: usize) -> Result<(), HarnessError> {
        for m in &self.members {
            m.kill();
        }
        let ports = free_ports(4 * n)?;
        self.members = (0..n)
            .map(|i| Member {
                myid: i + 1,
                dir: self.dir.join(format!("zk{}", i + 1)),
                client_port: ports[4 * i],
                tls_port: ports[4 * i + 1],
                peer_port: ports[4 * i + 2],
                election_port: ports[4 * i + 3],
                child: Mutex::new(None),
            })
            .collect();
        let servers: String = self
            .members
            .iter()
            .map(|m| {
                format!(
                    "server.{}=127.0.0.1:{}:{}\n",
                    m.myid, m.peer_port, m.election_port
                )
            })
            .collect();
        for m in &self.members {
            let _ = std::fs::remove_dir_all(m.dir.join("data"));
            m.write_config(&servers, &self.certs, n == 1)?;
        }
        for m in &self.members {
            m.launch()?;
        }
        self.wait_quorum(ENSEMBLE_TIMEOUT).map(|_| ())
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false (an ensemble has at least one member).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// How long [`Self::start`] took (processes up and quorum formed).
    pub fn start_duration(&self) -> Duration {
        self.start_duration
    }

    /// Directory holding every member's config, data and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The throw-away CA and client certificate.
    pub fn certs(&self) -> &TestCerts {
        &self.certs
    }

    fn member(&self, i: usize) -> Result<&Member, HarnessError> {
        self.members.get(i).ok_or_else(|| {
            HarnessError::new(format!(
                "no ensemble member {i} (ensemble has {})",
                self.members.len()
            ))
        })
    }

    /// Plain client port of member `i`. Panics if `i` is out of range (test fixture).
    pub fn client_port(&self, i: usize) -> u16 {
        self.members[i].client_port
    }

    /// TLS client port of member `i`. Panics if `i` is out of range (test fixture).
    pub fn tls_port(&self, i: usize) -> u16 {
        self.members[i].tls_port
    }

    /// Plain settings listing every member (no chroot, test timeouts).
    pub fn settings(&self) -> ZkSettings {
        test_settings(
            self.members
                .iter()
                .map(|m| ("127.0.0.1".to_string(), m.client_port))
                .collect(),
            None,
        )
    }

    /// TLS settings (client certificate) listing every member (no chroot).
    pub fn tls_settings(&self) -> ZkSettings {
        test_settings(
            self.members
                .iter()
                .map(|m| ("127.0.0.1".to_string(), m.tls_port))
                .collect(),
            Some(ZkTls {
                ca: self.certs.ca.clone(),
                cert: self.certs.client_cert.clone(),
                key: self.certs.client_key.clone(),
            }),
        )
    }

    /// Plain settings for member `i` alone. Panics if `i` is out of range.
    pub fn member_settings(&self, i: usize) -> ZkSettings {
        test_settings(
            vec![("127.0.0.1".to_string(), self.members[i].client_port)],
            None,
        )
    }

    /// Kills member `i` (like a crash; its dataDir keeps the state). No-op if stopped.
    pub fn stop(&self, i: usize) {
        if let Some(m) = self.members.get(i) {
            m.kill();
        }
    }

    /// Starts member `i` again (same ports and dataDir) and waits until the process
    /// answers; it serves once it has joined a quorum ([`Self::wait_quorum`]).
    pub fn start_member(&self, i: usize) -> Result<(), HarnessError> {
        let m = self.member(i)?;
        if m.is_running() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match m.launch() {
                Ok(()) => return Ok(()),
                // The old sockets may linger for a moment.
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!("ZooKeeper member {} restart failed, retrying: {e}", m.myid);
                    m.kill();
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// True while member `i`'s process runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.members.get(i).is_some_and(Member::is_running)
    }

    /// What member `i` reports now.
    pub fn mode(&self, i: usize) -> MemberMode {
        self.members.get(i).map_or(MemberMode::Down, Member::mode)
    }

    /// Modes of all members, in index order.
    pub fn modes(&self) -> Vec<MemberMode> {
        self.members.iter().map(Member::mode).collect()
    }

    /// Index of the member that is leader now, if any.
    pub fn leader_index(&self) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.mode() == MemberMode::Leader)
    }

    /// Indexes of the members that are followers now.
    pub fn follower_indexes(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.mode(i) == MemberMode::Follower)
            .collect()
    }

    /// Index of the member holding the client session `session_id` (`cons`), if any.
    pub fn member_with_session(&self, session_id: i64) -> Option<usize> {
        let needle = format!("sid={session_id:#x}");
        self.members.iter().position(|m| {
            m.is_running()
                && four_letter_word(m.client_port, "cons").is_ok_and(|out| out.contains(&needle))
        })
    }

    /// Waits until every running member serves (leader or follower) and exactly one of
    /// them leads; returns the leader's index. Fails if a member's process dies, if no
    /// majority runs, or after `timeout`.
    pub fn wait_quorum(&self, timeout: Duration) -> Result<usize, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let running: Vec<usize> = (0..self.members.len())
                .filter(|&i| self.members[i].child_started() && self.is_running(i))
                .collect();
            if let Some(m) = self
                .members
                .iter()
                .find(|m| m.child_started() && !m.is_running())
            {
                return Err(HarnessError::new(format!(
                    "ZooKeeper member {} died; log:\n{}",
                    m.myid,
                    m.log_tail()
                )));
            }
            if running.len() * 2 <= self.members.len() {
                return Err(HarnessError::new(format!(
                    "only {} of {} members run: no quorum possible",
                    running.len(),
                    self.members.len()
                )));
            }
            let modes: Vec<(usize, MemberMode)> =
                running.iter().map(|&i| (i, self.mode(i))).collect();
            let leaders: Vec<usize> = modes
                .iter()
                .filter(|(_, m)| matches!(m, MemberMode::Leader | MemberMode::Standalone))
                .map(|(i, _)| *i)
                .collect();
            if leaders.len() == 1
                && modes
                    .iter()
                    .all(|(_, m)| m.is_serving() || *m == MemberMode::Standalone)
            {
                return Ok(leaders[0]);
            }
            if Instant::now() > deadline {
                return Err(HarnessError::new(format!(
                    "no quorum within {timeout:?}: modes {modes:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts every stopped member and waits for the full quorum; returns the leader.
    pub fn heal(&self, timeout: Duration) -> Result<usize, HarnessError> {
        for i in 0..self.members.len() {
            if !self.is_running(i) {
                self.start_member(i)?;
            }
        }
        self.wait_quorum(timeout)
    }

    /// A guard for tests that stop members: hold it for the whole test so that tests
    /// sharing [`Self::shared`] do not stop each other's servers.
    pub async fn exclusive(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.exclusive.lock().await
    }

    fn cleanup(&self) {
        for m in &self.members {
            m.kill();
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Keeps the directory (logs, data) after drop, for debugging a failed test.
    pub fn keep_dir(&mut self) {
        self.remove_dir = false;
        self._remove_on_signal = None;
    }
}

impl Member {
    /// True once a process was spawned and not deliberately stopped.
    fn child_started(&self) -> bool {
        self.child.lock_or_recover().is_some()
    }
}

impl Drop for ZkEnsemble {
    fn drop(&mut self) {
        self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srvr_modes() {
        assert_eq!(
            parse_mode("Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.0/0\nMode: follower\n"),
            MemberMode::Follower
        );
        assert_eq!(
            parse_mode("Mode: leader\nNode count: 5\n"),
            MemberMode::Leader
        );
        assert_eq!(
            parse_mode("This ZooKeeper instance is not currently serving requests\n"),
            MemberMode::NotServing
        );
    }

    #[test]
    fn ports_are_distinct() {
        let mut p = free_ports(12).unwrap();
        p.sort();
        p.dedup();
        assert_eq!(p.len(), 12);
    }
}
