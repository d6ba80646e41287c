//! Reads the top-level mapping of the main config file into a [`Config`].

use std::path::PathBuf;
use std::time::Duration;

use super::diskimage::{parse_raw, resolve};
use super::general::{parse_label, parse_tenant_limit, parse_webapp, WebApp};
use super::provider::parse_provider;
use super::reader::{Ctx, MapReader};
use super::static_provider::{is_static, parse_static_provider};
use super::yaml::{Node, Val};
use super::zookeeper::{parse_servers, parse_tls, DEFAULT_ZK_TIMEOUT};
use super::Config;

/// Default of `build-log-dir`.
pub const DEFAULT_BUILD_LOG_DIR: &str = "/var/log/nodepool/builds";

pub(crate) fn parse_main(cx: &mut Ctx, node: &Node) -> Config {
    let empty = Node {
        val: Val::Map(Vec::new()),
        pos: node.pos,
    };
    let node = if node.val == Val::Null { &empty } else { node };
    let mut config = Config::default();
    let Some(mut r) = MapReader::new(cx, node, "") else {
        return config;
    };
    if let Some(w) = r.map(cx, "webapp") {
        config.webapp = parse_webapp(cx, w);
    }
    config.elements_dir = r.string(cx, "elements-dir").map(PathBuf::from);
    config.images_dir = r.string(cx, "images-dir").map(PathBuf::from);
    if let Some(d) = r.string(cx, "build-log-dir") {
        config.build_log_dir = d.into();
    }
    if let Some(n) = r.int(cx, "build-log-retention", "an integer (-1 keeps all)") {
        config.build_log_retention = n;
    }
    config.zookeeper_servers = parse_servers(cx, &mut r).unwrap_or_default();
    config.zookeeper_tls = parse_tls(cx, &mut r);
    if let Some(t) = r.seconds(cx, "zookeeper-timeout") {
        config.zookeeper_timeout = t;
    }
    config.max_hold_age = r
        .int::<i64>(cx, "max-hold-age", "an integer (seconds)")
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s.unsigned_abs()));
    for (p, n) in r.list(cx, "labels") {
        config.labels.extend(parse_label(cx, &p, n));
    }
    for (p, n) in r.list(cx, "tenant-resource-limits") {
        config
            .tenant_resource_limits
            .extend(parse_tenant_limit(cx, &p, n));
    }
    let raws: Vec<_> = r
        .list(cx, "diskimages")
        .into_iter()
        .filter_map(|(p, n)| parse_raw(cx, &p, n))
        .collect();
    config.diskimages = resolve(cx, &raws);
    for (i, (p, n)) in r.list(cx, "providers").into_iter().enumerate() {
        if is_static(n) {
            config
                .static_providers
                .extend(parse_static_provider(cx, &p, n, i));
        } else {
            config.providers.extend(parse_provider(cx, &p, n, i));
        }
    }
    r.finish(cx);
    config
}

impl Default for Config {
    fn default() -> Self {
        Config {
            webapp: WebApp::default(),
            elements_dir: None,
            images_dir: None,
            build_log_dir: DEFAULT_BUILD_LOG_DIR.into(),
            build_log_retention: 7,
            zookeeper_servers: Vec::new(),
            zookeeper_tls: None,
            zookeeper_timeout: DEFAULT_ZK_TIMEOUT,
            labels: Vec::new(),
            max_hold_age: None,
            tenant_resource_limits: Vec::new(),
            diskimages: Vec::new(),
            providers: Vec::new(),
            static_providers: Vec::new(),
        }
    }
}
