//! `zookeeper-servers`, `zookeeper-tls` and `zookeeper-timeout`, and their mapping to
//! the client's [`ZkSettings`].

use std::path::PathBuf;
use std::time::Duration;

use super::reader::{Ctx, MapReader};
use super::yaml::Node;
use crate::zk::{ZkSettings, ZkTls, DEFAULT_PORT};

/// One entry of `zookeeper-servers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZkServerConfig {
    /// `host` (required); an IPv6 literal without brackets.
    pub host: String,
    /// `port` (default 2281, as in Python Nodepool's code).
    pub port: u16,
    /// `chroot`, appended to the connection (all servers must agree).
    pub chroot: Option<String>,
}

/// `zookeeper-tls`: all three files are required when the section is present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZkTlsConfig {
    /// `cert`: client certificate (PEM).
    pub cert: PathBuf,
    /// `key`: client private key (PEM).
    pub key: PathBuf,
    /// `ca`: CA certificate(s) (PEM).
    pub ca: PathBuf,
}

/// Default of `zookeeper-timeout`.
pub const DEFAULT_ZK_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn parse_servers(cx: &mut Ctx, r: &mut MapReader) -> Option<Vec<ZkServerConfig>> {
    if !r.has("zookeeper-servers") {
        r.ignore("zookeeper-servers");
        return None;
    }
    let items = r.list(cx, "zookeeper-servers");
    let mut servers = Vec::new();
    for (path, node) in &items {
        if let Some(s) = parse_server(cx, path, node) {
            servers.push(s);
        }
    }
    let chroots: Vec<_> = servers.iter().map(|s| &s.chroot).collect();
    if chroots.windows(2).any(|w| w[0] != w[1]) {
        r.error(
            cx,
            "zookeeper-servers",
            "all servers must have the same `chroot`",
        );
    }
    Some(servers)
}

fn parse_server(cx: &mut Ctx, path: &str, node: &Node) -> Option<ZkServerConfig> {
    let mut r = MapReader::new(cx, node, path)?;
    let host = r.req_string(cx, "host");
    let port = r.int(cx, "port", "a port number (0-65535)");
    let chroot = r.string(cx, "chroot");
    r.finish(cx);
    Some(ZkServerConfig {
        host: host?,
        port: port.unwrap_or(DEFAULT_PORT),
        chroot,
    })
}

pub(crate) fn parse_tls(cx: &mut Ctx, r: &mut MapReader) -> Option<ZkTlsConfig> {
    let mut t = r.map(cx, "zookeeper-tls")?;
    let cert = t.req_string(cx, "cert");
    let key = t.req_string(cx, "key");
    let ca = t.req_string(cx, "ca");
    t.finish(cx);
    Some(ZkTlsConfig {
        cert: cert?.into(),
        key: key?.into(),
        ca: ca?.into(),
    })
}

/// Builds the client settings; other [`ZkSettings`] fields keep their defaults.
pub(crate) fn settings(
    servers: &[ZkServerConfig],
    tls: Option<&ZkTlsConfig>,
    timeout: Duration,
) -> ZkSettings {
    ZkSettings {
        hosts: servers.iter().map(|s| (s.host.clone(), s.port)).collect(),
        chroot: servers.first().and_then(|s| s.chroot.clone()),
        tls: tls.map(|t| ZkTls {
            ca: t.ca.clone(),
            cert: t.cert.clone(),
            key: t.key.clone(),
        }),
        session_timeout: timeout,
        ..ZkSettings::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::yaml::parse;
    use super::*;

    #[test]
    fn servers_default_port_and_settings() {
        let doc = parse(
            "zookeeper-servers:\n  - host: zk1\n    chroot: /np\n  - host: '::1'\n    port: 2182\n    chroot: /np\nzookeeper-tls: {cert: c, key: k, ca: a}\n",
        )
        .unwrap();
        let mut cx = Ctx::new("f");
        let mut r = MapReader::new(&mut cx, &doc, "").unwrap();
        let servers = parse_servers(&mut cx, &mut r).unwrap();
        let tls = parse_tls(&mut cx, &mut r);
        r.finish(&mut cx);
        assert!(cx.problems.is_empty(), "{:?}", cx.problems);
        assert_eq!(servers[0].port, 2281);
        let s = settings(&servers, tls.as_ref(), Duration::from_secs(3));
        assert_eq!(s.connect_string(), "zk1:2281/np,[::1]:2182/np");
        assert_eq!(s.tls.unwrap().key, PathBuf::from("k"));
        assert_eq!(s.session_timeout, Duration::from_secs(3));
    }

    #[test]
    fn tls_needs_all_three_and_chroots_must_agree() {
        let doc = parse(
            "zookeeper-servers:\n  - {host: a, chroot: /x}\n  - {host: b}\nzookeeper-tls:\n  cert: c\n",
        )
        .unwrap();
        let mut cx = Ctx::new("f");
        let mut r = MapReader::new(&mut cx, &doc, "").unwrap();
        parse_servers(&mut cx, &mut r);
        assert!(parse_tls(&mut cx, &mut r).is_none());
        let got: Vec<String> = cx.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            vec![
                "f:2:3: zookeeper-servers: all servers must have the same `chroot`",
                "f:5:3: zookeeper-tls: missing required key `key`",
                "f:5:3: zookeeper-tls: missing required key `ca`",
            ]
        );
    }
}
