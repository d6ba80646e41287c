//! The test harness shared by every crate's tests (cargo feature `testing`, enabled only
//! by dev-dependencies and the test-support crate `nodepool-tests`):
//!
//! * ZooKeeper: [`TestZk::shared`] — the usual fixture: a ZooKeeper shared by all tests
//!   (the one `scripts/run-tests` started, found via `NODEPOOL_TEST_ZK*` env vars, else
//!   one started lazily per test process), with a fresh random chroot
//!   `/nodepool_test/<hex>` per fixture, so tests never see each other's data;
//!   [`TestZk::expire_session`] ends a client's session on the server;
//!   [`ZkProxy`] holds one request of a client, to put a fault between two calls;
//!   [`TestZk::dedicated`] — a ZooKeeper of its own, for tests that stop or restart it
//!   ([`TestZk::server`]); [`ZkEnsemble`] — a 3-server quorum; [`ZkServer`] — the
//!   process itself; [`TestCerts`] — the throw-away CA.
//! * Test data removed even when a signal stops the process ([`remove_on_signal`]; the
//!   ZooKeeper fixtures register their directories).
//! * [`TestSshd`] — a real OpenSSH server on a loopback address (static hosts, scans).
//! * Bounded waits ([`wait_for`], [`step`], [`bounded`], [`bounded_serial`]): nothing a
//!   test waits for can hang the suite.
//! * Logging ([`init_logs`], [`LogCapture`]): one subscriber per test process.
//! * statsd ([`StatsSink`]): metrics checked on a real UDP socket.
//! * The suite's layout ([`assert_all_test_files_declared`]): one test binary per crate;
//!   [`run_test_in_child`] for the few tests that need a process of their own.
//!
//! The simulator, the fake Zuul, daemon processes and the builder's world are in the
//! `nodepool-tests` crate (`tests/src`); how the tests are organised is in ARCHITECTURE.md.
//!
//! * [`scale`] — realistic node records for scale benchmarks.
//!
//! Environment (set by `scripts/run-tests`): `NODEPOOL_TEST_ZK` (plain `host:port`),
//! `NODEPOOL_TEST_ZK_TLS` (`host:port`), `NODEPOOL_TEST_ZK_CA`, `NODEPOOL_TEST_ZK_CERT`,
//! `NODEPOOL_TEST_ZK_KEY` (PEM files).

mod certs;
mod cleanup;
mod ensemble;
mod expire;
#[cfg(test)]
pub(crate) mod fuzz;
mod logs;
pub mod scale;
mod server;
mod spawn;
mod sshd;
mod statsd;
mod suite;
mod wait;
mod zk_proxy;

use std::path::PathBuf;
use std::sync::OnceLock;

pub use certs::TestCerts;
pub use cleanup::{remove_on_signal, RemoveOnSignal};
pub use ensemble::{MemberMode, ZkEnsemble};
pub use logs::{init_logs, LogCapture};
pub use server::{four_letter_word, test_settings, ZkServer};
pub use spawn::spawn_tied;
pub use sshd::{sshd_available, TestSshd, SSHD};
pub use statsd::StatsSink;
pub use suite::{assert_all_test_files_declared, is_child_test, run_test_in_child, CHILD_TEST_VAR};
pub use wait::{
    bounded, bounded_serial, heavy_lock, step, wait_for, wait_for_within, TEST_LIMIT, WAIT,
};
pub use zk_proxy::{ZkProxy, OP_EXISTS};

use crate::zk::{ZkClient, ZkSettings, ZkTls};

/// The harness could not provide a ZooKeeper.
#[derive(Debug, Clone, thiserror::Error)]
#[error("test ZooKeeper: {0}")]
pub struct HarnessError(pub String);

impl HarnessError {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        HarnessError(msg.into())
    }
}

/// Where a ZooKeeper answers.
#[derive(Clone, Debug)]
struct Endpoints {
    plain: (String, u16),
    tls: Option<((String, u16), ZkTls)>,
}

fn parse_host_port(var: &str, v: &str) -> Result<(String, u16), HarnessError> {
    let (h, p) = v
        .rsplit_once(':')
        .ok_or_else(|| HarnessError::new(format!("{var}={v}: expected host:port")))?;
    let port = p
        .parse()
        .map_err(|_| HarnessError::new(format!("{var}={v}: bad port")))?;
    Ok((h.trim_matches(['[', ']']).to_string(), port))
}

fn env_endpoints() -> Result<Option<Endpoints>, HarnessError> {
    let Ok(plain) = std::env::var("NODEPOOL_TEST_ZK") else {
        return Ok(None);
    };
    if plain.is_empty() {
        return Ok(None);
    }
    let plain = parse_host_port("NODEPOOL_TEST_ZK", &plain)?;
    let tls = match std::env::var("NODEPOOL_TEST_ZK_TLS") {
        Ok(v) if !v.is_empty() => {
            let file = |var: &str| {
                std::env::var(var).map(PathBuf::from).map_err(|_| {
                    HarnessError::new(format!("NODEPOOL_TEST_ZK_TLS set but {var} not"))
                })
            };
            Some((
                parse_host_port("NODEPOOL_TEST_ZK_TLS", &v)?,
                ZkTls {
                    ca: file("NODEPOOL_TEST_ZK_CA")?,
                    cert: file("NODEPOOL_TEST_ZK_CERT")?,
                    key: file("NODEPOOL_TEST_ZK_KEY")?,
                },
            ))
        }
        _ => None,
    };
    Ok(Some(Endpoints { plain, tls }))
}

fn server_endpoints(s: &ZkServer) -> Endpoints {
    Endpoints {
        plain: ("127.0.0.1".into(), s.plain_port()),
        tls: Some((
            ("127.0.0.1".into(), s.tls_port()),
            ZkTls {
                ca: s.certs().ca.clone(),
                cert: s.certs().client_cert.clone(),
                key: s.certs().client_key.clone(),
            },
        )),
    }
}

static PROCESS_SERVER: OnceLock<Result<ZkServer, HarnessError>> = OnceLock::new();

extern "C" fn stop_process_server() {
    if let Some(Ok(s)) = PROCESS_SERVER.get() {
        s.stop();
        let _ = std::fs::remove_dir_all(s.dir());
    }
}

/// The shared endpoints: from the environment, else a server started once per process
/// (stopped and removed at process exit).
fn shared_endpoints() -> Result<Endpoints, HarnessError> {
    if let Some(e) = env_endpoints()? {
        return Ok(e);
    }
    let server = PROCESS_SERVER.get_or_init(|| {
        let s = ZkServer::start();
        if s.is_ok() {
            // SAFETY: registering a plain extern "C" function without captured state.
            unsafe {
                libc::atexit(stop_process_server);
            }
        }
        s
    });
    match server {
        Ok(s) => Ok(server_endpoints(s)),
        Err(e) => Err(e.clone()),
    }
}

/// A ZooKeeper for one test, with its own random chroot.
pub struct TestZk {
    endpoints: Endpoints,
    chroot: String,
    own: Option<ZkServer>,
}

impl std::fmt::Debug for TestZk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestZk")
            .field("plain", &self.endpoints.plain)
            .field("chroot", &self.chroot)
            .finish()
    }
}

impl TestZk {
    /// The shared ZooKeeper with a fresh chroot. Panics with a clear message if no
    /// ZooKeeper can be started (test fixture).
    pub async fn shared() -> TestZk {
        match Self::try_shared().await {
            Ok(z) => z,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Self::shared`] but returns the error.
    pub async fn try_shared() -> Result<TestZk, HarnessError> {
        let endpoints = tokio::task::spawn_blocking(shared_endpoints)
            .await
            .map_err(|e| HarnessError::new(e.to_string()))??;
        Self::with_endpoints(endpoints, None).await
    }

    /// A ZooKeeper of its own (for stop/restart tests). Panics if it cannot start.
    pub async fn dedicated() -> TestZk {
        match Self::try_dedicated().await {
            Ok(z) => z,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Self::dedicated`] but returns the error.
    pub async fn try_dedicated() -> Result<TestZk, HarnessError> {
        let server = tokio::task::spawn_blocking(ZkServer::start)
            .await
            .map_err(|e| HarnessError::new(e.to_string()))??;
        Self::with_endpoints(server_endpoints(&server), Some(server)).await
    }

    async fn with_endpoints(
        endpoints: Endpoints,
        own: Option<ZkServer>,
    ) -> Result<TestZk, HarnessError> {
        let chroot = format!("/nodepool_test/{}", uuid::Uuid::new_v4().simple());
        let root = test_settings(vec![endpoints.plain.clone()], None);
        let client = ZkClient::connect(root)
            .await
            .map_err(|e| HarnessError::new(e.to_string()))?;
        let made = client.ensure_path(&chroot).await;
        client.close().await;
        made.map_err(|e| HarnessError::new(format!("create chroot {chroot}: {e}")))?;
        Ok(TestZk {
            endpoints,
            chroot,
            own,
        })
    }

    /// The own server of a [`Self::dedicated`] fixture (stop/restart it).
    pub fn server(&self) -> Option<&ZkServer> {
        self.own.as_ref()
    }

    /// The chroot of this fixture, e.g. `/nodepool_test/3f2a…`.
    pub fn chroot(&self) -> &str {
        &self.chroot
    }

    /// Plain settings under the chroot (test timeouts).
    pub fn settings(&self) -> ZkSettings {
        test_settings(vec![self.endpoints.plain.clone()], None)
            .with_chroot(Some(self.chroot.clone()))
    }

    /// TLS settings (client certificate) under the chroot; `None` if the shared server
    /// from the environment has no TLS port.
    pub fn tls_settings(&self) -> Option<ZkSettings> {
        let (hp, tls) = self.endpoints.tls.clone()?;
        Some(test_settings(vec![hp], Some(tls)).with_chroot(Some(self.chroot.clone())))
    }

    /// Settings without chroot (sees other tests' data; use with care).
    pub fn root_settings(&self) -> ZkSettings {
        test_settings(vec![self.endpoints.plain.clone()], None)
    }

    /// `host:port` of the plain port.
    pub fn plain_hosts(&self) -> String {
        format!("{}:{}", self.endpoints.plain.0, self.endpoints.plain.1)
    }

    /// kazoo-style hosts string including the chroot (`127.0.0.1:2181/nodepool_test/…`).
    pub fn kazoo_hosts(&self) -> String {
        format!("{}{}", self.plain_hosts(), self.chroot)
    }

    /// A connected plain client under the chroot. Panics on failure (test fixture).
    pub async fn client(&self) -> ZkClient {
        ZkClient::connect(self.settings())
            .await
            .unwrap_or_else(|e| panic!("connect to test ZooKeeper: {e}"))
    }

    /// A connected TLS client under the chroot. Panics on failure (test fixture).
    pub async fn tls_client(&self) -> ZkClient {
        let s = self
            .tls_settings()
            .expect("test ZooKeeper has no TLS port (NODEPOOL_TEST_ZK_TLS unset)");
        ZkClient::connect(s)
            .await
            .unwrap_or_else(|e| panic!("connect to test ZooKeeper over TLS: {e}"))
    }
}
