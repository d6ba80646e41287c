//! Where and how to connect to ZooKeeper: the servers, the chroot, TLS files and timeouts.
//!
//! The config module turns `zookeeper-servers`, `zookeeper-tls` and `zookeeper-timeout`
//! into a [`ZkSettings`]; the client only ever reads this struct.

use std::path::PathBuf;
use std::time::Duration;

/// Client certificate, key and CA bundle for a TLS connection (`zookeeper-tls`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZkTls {
    /// CA certificate(s) (PEM) that signed the server certificate.
    pub ca: PathBuf,
    /// Client certificate (PEM).
    pub cert: PathBuf,
    /// Client private key (PEM).
    pub key: PathBuf,
}

/// Everything needed to open a ZooKeeper session.
#[derive(Clone, Debug, PartialEq)]
pub struct ZkSettings {
    /// `(host, port)` pairs; IPv6 literals without brackets.
    pub hosts: Vec<(String, u16)>,
    /// Optional chroot (e.g. `/nodepool_test/abc`); every path is relative to it.
    pub chroot: Option<String>,
    /// TLS with client certificates; `None` = plain TCP.
    pub tls: Option<ZkTls>,
    /// Session timeout negotiated with the server (`zookeeper-timeout`, default 10 s).
    pub session_timeout: Duration,
    /// Upper bound of every single client call (a call issued while disconnected waits
    /// for the reconnect at most this long). Default 10 s.
    pub request_timeout: Duration,
    /// How long [`crate::zk::ZkClient::connect`] keeps retrying the first connection;
    /// `None` = forever (like Python Nodepool). Default 30 s.
    pub connect_timeout: Option<Duration>,
}

/// Default ZooKeeper port in Python Nodepool's code (its docs say 2181).
pub const DEFAULT_PORT: u16 = 2281;

impl Default for ZkSettings {
    fn default() -> Self {
        ZkSettings {
            hosts: Vec::new(),
            chroot: None,
            tls: None,
            session_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Some(Duration::from_secs(30)),
        }
    }
}

impl ZkSettings {
    /// Settings for the given hosts with every other field at its default.
    pub fn new(hosts: Vec<(String, u16)>) -> Self {
        ZkSettings {
            hosts,
            ..Default::default()
        }
    }

    /// Python Nodepool's hosts string: `host:port[chroot]` per server, joined by `,`,
    /// IPv6 literals wrapped in `[]` (e.g. `zk1:2281/nodepool,[::1]:2281/nodepool`).
    pub fn connect_string(&self) -> String {
        let chroot = self.normalized_chroot().unwrap_or_default();
        self.hosts
            .iter()
            .map(|(h, p)| format!("{}:{p}{chroot}", bracket(h)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The Java-style string the client library parses: servers joined by `,` and the
    /// chroot once at the end.
    pub(crate) fn client_connect_string(&self) -> String {
        let hosts = self
            .hosts
            .iter()
            .map(|(h, p)| format!("{}:{p}", bracket(h)))
            .collect::<Vec<_>>()
            .join(",");
        format!("{hosts}{}", self.normalized_chroot().unwrap_or_default())
    }

    /// The chroot with a leading `/` and no trailing `/`; `None` for none or `/`.
    pub fn normalized_chroot(&self) -> Option<String> {
        let c = self.chroot.as_deref()?.trim_end_matches('/');
        if c.is_empty() {
            return None;
        }
        Some(if c.starts_with('/') {
            c.to_string()
        } else {
            format!("/{c}")
        })
    }

    /// The same settings with another chroot.
    pub fn with_chroot(mut self, chroot: Option<String>) -> Self {
        self.chroot = chroot;
        self
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_string_python_style() {
        let mut s = ZkSettings::new(vec![("zk1".into(), 2281), ("::1".into(), 2182)]);
        assert_eq!(s.connect_string(), "zk1:2281,[::1]:2182");
        s.chroot = Some("/nodepool/".into());
        assert_eq!(s.connect_string(), "zk1:2281/nodepool,[::1]:2182/nodepool");
        assert_eq!(s.client_connect_string(), "zk1:2281,[::1]:2182/nodepool");
        s.chroot = Some("/".into());
        assert_eq!(s.client_connect_string(), "zk1:2281,[::1]:2182");
        s.chroot = Some("x".into());
        assert_eq!(s.normalized_chroot().as_deref(), Some("/x"));
    }
}
