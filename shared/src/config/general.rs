//! The small top-level sections: `webapp`, `labels` and `tenant-resource-limits`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::reader::{Ctx, MapReader};
use super::validate::Kind;
use super::yaml::Node;

/// `webapp`: where the launcher's HTTP API listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebApp {
    /// `port` (default 8005).
    pub port: u16,
    /// `listen_address` (default `0.0.0.0`).
    pub listen_address: String,
}

impl Default for WebApp {
    fn default() -> Self {
        WebApp {
            port: 8005,
            listen_address: "0.0.0.0".into(),
        }
    }
}

/// One entry of the top-level `labels`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// `name` (required).
    pub name: String,
    /// `min-ready` (default 0): ready nodes to keep available.
    pub min_ready: u32,
    /// `max-ready-age` in seconds; 0 or unset = `None` (ready nodes never expire).
    pub max_ready_age: Option<Duration>,
}

/// One entry of `tenant-resource-limits`; unset limits are unlimited.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TenantResourceLimit {
    /// `tenant-name` (required).
    pub tenant_name: String,
    /// `max-servers`.
    pub max_servers: Option<i64>,
    /// `max-cores`.
    pub max_cores: Option<i64>,
    /// `max-ram` (MiB).
    pub max_ram: Option<i64>,
    /// `max-volumes`.
    pub max_volumes: Option<i64>,
    /// `max-volume-gb`.
    pub max_volume_gb: Option<i64>,
    /// Any other key: a limit on that resource name (integer).
    pub other: BTreeMap<String, i64>,
}

const INT: &str = "an integer";

pub(crate) fn parse_webapp(cx: &mut Ctx, mut r: MapReader) -> WebApp {
    let d = WebApp::default();
    let w = WebApp {
        port: r
            .int(cx, "port", "a port number (0-65535)")
            .unwrap_or(d.port),
        listen_address: r.string(cx, "listen_address").unwrap_or(d.listen_address),
    };
    r.finish(cx);
    w
}

pub(crate) fn parse_label(cx: &mut Ctx, path: &str, node: &Node) -> Option<Label> {
    let mut r = MapReader::new(cx, node, path)?;
    let name = r.defined_name(cx, Kind::Label, "");
    let min_ready = r
        .int(cx, "min-ready", "a non-negative integer")
        .unwrap_or(0);
    let max_ready_age = r.int::<u64>(cx, "max-ready-age", "a non-negative integer (seconds)");
    r.finish(cx);
    Some(Label {
        name: name?,
        min_ready,
        max_ready_age: max_ready_age.filter(|s| *s > 0).map(Duration::from_secs),
    })
}

pub(crate) fn parse_tenant_limit(
    cx: &mut Ctx,
    path: &str,
    node: &Node,
) -> Option<TenantResourceLimit> {
    let mut r = MapReader::new(cx, node, path)?;
    let tenant_name = r.req_string(cx, "tenant-name");
    let mut t = TenantResourceLimit {
        tenant_name: String::new(),
        max_servers: r.int(cx, "max-servers", INT),
        max_cores: r.int(cx, "max-cores", INT),
        max_ram: r.int(cx, "max-ram", INT),
        max_volumes: r.int(cx, "max-volumes", INT),
        max_volume_gb: r.int(cx, "max-volume-gb", INT),
        other: BTreeMap::new(),
    };
    for key in r.unused_keys() {
        if let Some(v) = r.int(cx, &key, INT) {
            t.other.insert(key, v);
        }
    }
    r.finish(cx);
    t.tenant_name = tenant_name?;
    Some(t)
}
