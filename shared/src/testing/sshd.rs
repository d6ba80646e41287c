//! A real OpenSSH server (Debian's `/usr/sbin/sshd`) on a loopback address, for tests
//! that need a host to scan or to check: a fresh ed25519 host key, a free port, started
//! in the foreground and killed with the test (or by [`TestSshd::stop`], to play a host
//! that went down; [`TestSshd::start_again`] brings it back on the same port with the
//! same key).
//!
//! [`sshd_available`] tells whether sshd is installed: outside CI a test may skip with a
//! message; with `CI=true` a missing sshd is a failure (`scripts/run-tests` installs
//! `openssh-server`).

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{spawn_tied, HarnessError};

/// Where Debian installs sshd.
pub const SSHD: &str = "/usr/sbin/sshd";

/// Whether sshd can be run here; panics when it is missing under `CI=true`, prints why
/// a test is skipped otherwise.
pub fn sshd_available() -> bool {
    if Path::new(SSHD).exists() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{SSHD} is missing (install Debian's openssh-server; scripts/lib/deps.sh does)");
    }
    eprintln!(
        "SKIPPED: {SSHD} is missing (apt-get install openssh-server) — not CI, so not a failure"
    );
    false
}

/// A running (or stopped) sshd; killed on drop.
pub struct TestSshd {
    dir: tempfile::TempDir,
    ip: IpAddr,
    port: u16,
    host_key: String,
    child: Option<Child>,
}

fn harness(what: &str, e: impl std::fmt::Display) -> HarnessError {
    HarnessError::new(format!("test sshd: {what}: {e}"))
}

impl TestSshd {
    /// Starts sshd on `ip` (a loopback address such as 127.0.0.1 or 127.0.0.2) at a
    /// free port and waits until it accepts connections.
    pub fn start(ip: IpAddr) -> Result<TestSshd, HarnessError> {
        let dir = tempfile::tempdir().map_err(|e| harness("temp dir", e))?;
        let key = dir.path().join("ed25519");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-C", "", "-t", "ed25519", "-f"])
            .arg(&key)
            .status()
            .map_err(|e| harness("run ssh-keygen", e))?;
        if !st.success() {
            return Err(harness("ssh-keygen", st));
        }
        let public = std::fs::read_to_string(dir.path().join("ed25519.pub"))
            .map_err(|e| harness("read the public key", e))?;
        let host_key = public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let port = TcpListener::bind(SocketAddr::new(ip, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| harness("find a free port", e))?
            .port();
        let d = dir.path().display();
        std::fs::write(
            config_path(dir.path()),
            format!(
                "Port {port}\nListenAddress {ip}\nHostKey {d}/ed25519\nPidFile {d}/sshd.pid\n\
                 UsePAM no\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n"
            ),
        )
        .map_err(|e| harness("write sshd_config", e))?;
        // sshd insists on its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut sshd = TestSshd {
            dir,
            ip,
            port,
            host_key,
            child: None,
        };
        sshd.start_again()?;
        Ok(sshd)
    }

    /// Starts the stopped sshd again (same address, port and key) and waits until it
    /// accepts connections.
    pub fn start_again(&mut self) -> Result<(), HarnessError> {
        if self.child.is_some() {
            return Ok(());
        }
        let mut cmd = Command::new(SSHD);
        cmd.args(["-D", "-e", "-f"])
            .arg(config_path(self.dir.path()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(spawn_tied(cmd).map_err(|e| harness("start sshd", e))?);
        let addr = SocketAddr::new(self.ip, self.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(harness("sshd exited", status));
            }
            if Instant::now() >= deadline {
                return Err(harness("sshd does not answer", addr));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills sshd (the host goes down; connections are refused).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The address it listens on.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its host key as a scan reads it: `"ssh-ed25519 <base64>"`.
    pub fn host_key(&self) -> &str {
        &self.host_key
    }

    /// The directory of its key and config.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

fn config_path(dir: &Path) -> PathBuf {
    dir.join("sshd_config")
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        self.stop();
    }
}
