//! The `nodepool.yaml` configuration (Nodepool 11 key names and defaults), as typed,
//! validated structs.
//!
//! Loading: `%(NODEPOOL_*)` substitution ([`mod@env`]) → YAML 1.1 parse into a positioned tree
//! ([`yaml`]) → typed reading that collects every problem ([`reader`] and one module per
//! section) → `diskimages` inheritance ([`diskimage`]) → the secure file ([`secure`]) →
//! cross checks ([`validate`]). Every problem is reported as `origin:line:column: key
//! path: message`; see `docs/configuration.md` for the operator reference.
//!
//! Durations are exposed as [`std::time::Duration`] fields; "disabled" / "unlimited"
//! values are `None`.

mod diskimage;
mod document;
mod env;
mod error;
mod general;
mod pool;
#[cfg(test)]
mod props;
mod provider;
mod reader;
mod secure;
mod source;
mod static_provider;
mod validate;
pub(crate) mod yaml;
mod zookeeper;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use diskimage::DiskImage;
pub use document::DEFAULT_BUILD_LOG_DIR;
pub use error::{ConfigError, Problem};
pub use general::{Label, TenantResourceLimit, WebApp};
pub use pool::{Pool, PoolLabel, PoolLabelImage};
pub use provider::{CloudImage, CloudImageRef, Provider, ProviderDiskImage};
pub use source::{ConfigSource, ConfigStamp};
pub use static_provider::{HostKey, StaticNode, StaticPool, StaticProvider};
pub use zookeeper::{ZkServerConfig, ZkTlsConfig, DEFAULT_ZK_TIMEOUT};

use reader::Ctx;

/// A whole, validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `webapp`.
    pub webapp: WebApp,
    /// `elements-dir` (→ `ELEMENTS_PATH` for builds).
    pub elements_dir: Option<PathBuf>,
    /// `images-dir` (the builder requires it).
    pub images_dir: Option<PathBuf>,
    /// `build-log-dir` (default [`DEFAULT_BUILD_LOG_DIR`]).
    pub build_log_dir: PathBuf,
    /// `build-log-retention` (default 7; −1 keeps all).
    pub build_log_retention: i64,
    /// `zookeeper-servers` (the secure file's replace these).
    pub zookeeper_servers: Vec<ZkServerConfig>,
    /// `zookeeper-tls`; `None` = plain TCP.
    pub zookeeper_tls: Option<ZkTlsConfig>,
    /// `zookeeper-timeout` (default 10 s): the session timeout.
    pub zookeeper_timeout: Duration,
    /// `labels`.
    pub labels: Vec<Label>,
    /// `max-hold-age`; unset or ≤0 = `None` (unlimited).
    pub max_hold_age: Option<Duration>,
    /// `tenant-resource-limits`.
    pub tenant_resource_limits: Vec<TenantResourceLimit>,
    /// `diskimages`, inheritance resolved, abstract images left out.
    pub diskimages: Vec<DiskImage>,
    /// `providers` with the OpenStack driver (the default).
    pub providers: Vec<Provider>,
    /// `providers` with `driver: static` (fixed hosts; never built for or uploaded to).
    pub static_providers: Vec<StaticProvider>,
}

impl Config {
    /// Reads `path` (and the secure file, if given), substitutes `%(NODEPOOL_*)`, validates.
    pub fn load(path: &Path, secure: Option<&Path>) -> Result<Config, ConfigError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| ConfigError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let text = read(path)?;
        let secure_text = secure.map(|p| read(p).map(|t| (t, p))).transpose()?;
        build(
            &text,
            &path.display().to_string(),
            secure_text
                .as_ref()
                .map(|(t, p)| (t.as_str(), p.display().to_string())),
        )
    }

    /// Parses and validates YAML text; `origin` names it in error messages.
    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        build(text, origin, None)
    }

    /// Like [`Config::from_yaml_str`], with the text of a secure file.
    pub fn from_yaml_strs(
        text: &str,
        origin: &str,
        secure: &str,
        secure_origin: &str,
    ) -> Result<Config, ConfigError> {
        build(text, origin, Some((secure, secure_origin.to_string())))
    }

    /// The top-level label named `name`.
    pub fn label(&self, name: &str) -> Option<&Label> {
        self.labels.iter().find(|l| l.name == name)
    }

    /// The (concrete) diskimage named `name`.
    pub fn diskimage(&self, name: &str) -> Option<&DiskImage> {
        self.diskimages.iter().find(|d| d.name == name)
    }

    /// The OpenStack provider named `name`.
    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The static provider named `name`.
    pub fn static_provider(&self, name: &str) -> Option<&StaticProvider> {
        self.static_providers.iter().find(|p| p.name == name)
    }

    /// ZooKeeper client settings: servers, chroot, TLS, session timeout =
    /// `zookeeper-timeout`; the other fields keep [`crate::zk::ZkSettings`] defaults.
    pub fn zk_settings(&self) -> crate::zk::ZkSettings {
        zookeeper::settings(
            &self.zookeeper_servers,
            self.zookeeper_tls.as_ref(),
            self.zookeeper_timeout,
        )
    }
}

fn build(text: &str, origin: &str, secure: Option<(&str, String)>) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut cx = Ctx::new(origin);
    let mut config = match parse_file(&mut cx, text) {
        Some(node) => document::parse_main(&mut cx, &node),
        None => Config::default(),
    };
    validate::check(&mut cx);
    sort(&mut cx.problems);
    problems.append(&mut cx.problems);
    if let Some((secure_text, secure_origin)) = secure {
        let mut scx = Ctx::new(&secure_origin);
        if let Some(node) = parse_file(&mut scx, secure_text) {
            secure::apply(&mut scx, &node, &mut config);
        }
        sort(&mut scx.problems);
        problems.append(&mut scx.problems);
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// Substitutes the environment and parses; a syntax error is recorded in `cx`.
fn parse_file(cx: &mut Ctx, text: &str) -> Option<yaml::Node> {
    match yaml::parse(&env::substitute_env(text)) {
        Ok(node) => Some(node),
        Err(e) => {
            cx.error(e.pos, e.message);
            None
        }
    }
}

fn sort(problems: &mut [Problem]) {
    problems.sort_by_key(|p| (p.line, p.column));
}
