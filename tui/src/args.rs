//! Command line: where ZooKeeper is (from `nodepool.yaml`, or given directly), TLS
//! files, read-only mode and the log file.

use std::path::PathBuf;

use clap::Parser;
use nodepool_shared::config::{Config, ConfigError};
use nodepool_shared::zk::{ZkSettings, ZkTls, DEFAULT_PORT};

use crate::data::ConfigInfo;

/// Default configuration file (as the `nodepool` CLI).
pub const DEFAULT_CONFIG: &str = "/etc/nodepool/nodepool.yaml";

/// nodepool-tui: a live console over Nodepool's ZooKeeper.
///
/// Opens on an Overview (providers against max-servers and the cloud quota, labels
/// against min-ready, the last 30 minutes, images against rebuild-age); shows nodes,
/// requests, image builds and uploads, labels, launchers/pools/builders, images and
/// the problems `nodepool doctor` would find, as they change; shows a node's console
/// log; and lets an operator delete or hold nodes (one or all marked), pause images,
/// request image builds and delete builds or uploads (each after a confirmation).
/// Press `?` inside for every key.
///
/// ZooKeeper is taken from `-c nodepool.yaml` (zookeeper-servers, zookeeper-tls,
/// zookeeper-timeout), or given with `--zk` (then `--chroot` and the `--tls-*` files
/// apply). Without either, /etc/nodepool/nodepool.yaml is read. The config also gives
/// what the Overview and the Problems view compare with (labels, providers and pools,
/// diskimages) and the clouds (via clouds.yaml) for quotas and console logs; with
/// `--zk` only what ZooKeeper tells is shown.
#[derive(Clone, Debug, Parser)]
#[command(name = "nodepool-tui", version = nodepool_shared::version::LONG)]
pub struct Args {
    /// Nodepool configuration file (ZooKeeper settings; labels, providers and diskimages
    /// for the Overview and the Problems view; clouds for quotas and console logs).
    #[arg(short = 'c', long = "config", value_name = "CONFIG")]
    pub config: Option<PathBuf>,
    /// Secure configuration file (may hold zookeeper-servers).
    #[arg(
        short = 's',
        long = "secure",
        value_name = "SECURE",
        requires = "config"
    )]
    pub secure: Option<PathBuf>,
    /// ZooKeeper servers, `host:port[,host:port…]` (port 2281 if omitted; IPv6 as
    /// `[::1]:2281`).
    #[arg(long = "zk", value_name = "HOSTS", conflicts_with = "config")]
    pub zk: Option<String>,
    /// ZooKeeper chroot, e.g. `/nodepool` (overrides the configuration's).
    #[arg(long, value_name = "PATH")]
    pub chroot: Option<String>,
    /// CA certificate (PEM) for TLS; needs --tls-cert and --tls-key.
    #[arg(long = "tls-ca", value_name = "FILE", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for TLS.
    #[arg(long = "tls-cert", value_name = "FILE", requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM) for TLS.
    #[arg(long = "tls-key", value_name = "FILE", requires_all = ["tls_ca", "tls_cert"])]
    pub tls_key: Option<PathBuf>,
    /// Only look: every action key is disabled.
    #[arg(long)]
    pub read_only: bool,
    /// Write a log to this file (the terminal is never written to). Level from RUST_LOG
    /// (default info).
    #[arg(long, value_name = "FILE", env = "NODEPOOL_TUI_LOG")]
    pub log_file: Option<PathBuf>,
}

/// A command line that cannot be turned into ZooKeeper settings.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// The configuration file is unreadable or invalid.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// A `--zk` entry is malformed.
    #[error("--zk {value}: {reason}")]
    BadHost {
        /// The entry.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// No servers at all.
    #[error("no ZooKeeper servers: give --zk HOST:PORT or -c CONFIG with zookeeper-servers")]
    NoServers,
}

/// Parses `host:port[,host:port…]`.
pub fn parse_hosts(s: &str) -> Result<Vec<(String, u16)>, ArgsError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = |reason| ArgsError::BadHost {
            value: part.to_string(),
            reason,
        };
        let (host, port) = if let Some(rest) = part.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(|| bad("missing `]`"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("expected `:port` after `]`")),
            };
            (h.to_string(), port)
        } else if part.matches(':').count() > 1 {
            (part.to_string(), None)
        } else {
            match part.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (part.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("port is not a number 0-65535"))?,
            None => DEFAULT_PORT,
        };
        out.push((host, port));
    }
    if out.is_empty() {
        return Err(ArgsError::NoServers);
    }
    Ok(out)
}

impl Args {
    /// ZooKeeper settings (the first connection is retried until it works) and the
    /// facts of the configuration file, if one is read.
    pub fn resolve(&self) -> Result<(ZkSettings, ConfigInfo), ArgsError> {
        let (mut settings, info) = match &self.zk {
            Some(hosts) => (ZkSettings::new(parse_hosts(hosts)?), ConfigInfo::default()),
            None => {
                let path = self
                    .config
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
                let config = Config::load(&path, self.secure.as_deref())?;
                (config.zk_settings(), ConfigInfo::from_config(&config))
            }
        };
        if settings.hosts.is_empty() {
            return Err(ArgsError::NoServers);
        }
        if let Some(c) = &self.chroot {
            settings.chroot = Some(c.clone());
        }
        if let (Some(ca), Some(cert), Some(key)) = (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            settings.tls = Some(ZkTls {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        // The console waits for ZooKeeper as long as the operator wants.
        settings.connect_timeout = None;
        Ok((settings, info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            parse_hosts("zk1:2181, zk2").unwrap(),
            vec![("zk1".to_string(), 2181), ("zk2".to_string(), DEFAULT_PORT)]
        );
        assert_eq!(
            parse_hosts("[::1]:2182,::1").unwrap(),
            vec![("::1".to_string(), 2182), ("::1".to_string(), DEFAULT_PORT)]
        );
        assert!(parse_hosts("zk1:port").is_err());
        assert!(parse_hosts("").is_err());
        assert!(parse_hosts("[::1").is_err());
    }

    #[test]
    fn zk_flags() {
        let a = Args::parse_from([
            "nodepool-tui",
            "--zk",
            "127.0.0.1:2181",
            "--chroot",
            "/np",
            "--read-only",
        ]);
        let (s, info) = a.resolve().unwrap();
        assert_eq!(s.connect_string(), "127.0.0.1:2181/np");
        assert!(a.read_only);
        assert!(!info.loaded);
        assert!(Args::try_parse_from(["nodepool-tui", "--tls-ca", "x"]).is_err());
        assert!(Args::try_parse_from(["nodepool-tui", "-c", "a", "--zk", "b"]).is_err());
    }

    #[test]
    fn config_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nodepool.yaml");
        std::fs::write(
            &p,
            "zookeeper-servers:\n  - host: zk.example\n    port: 2281\n    chroot: /nodepool\nlabels:\n  - name: small\n    min-ready: 2\n",
        )
        .unwrap();
        let a = Args::parse_from(["nodepool-tui", "-c", p.to_str().unwrap()]);
        let (s, info) = a.resolve().unwrap();
        assert_eq!(s.connect_string(), "zk.example:2281/nodepool");
        assert_eq!(info.min_ready("small"), Some(2));
        assert!(info.loaded);
    }
}
