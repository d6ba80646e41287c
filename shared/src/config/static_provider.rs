//! `providers[]` with `driver: static`: fixed hosts (bare metal, special hardware, other
//! architectures) that the launcher registers as `ready` nodes instead of booting servers.
//!
//! Keys and defaults are Python Nodepool 11's static driver: a provider has `name`,
//! `driver`, `max-concurrency`, `priority` and `pools`; a pool has `name`, `max-servers`,
//! `node-attributes`, `priority` and `nodes`; a node has `name` and `labels` (a
//! space-separated string or a list) and the optional `username` (`zuul`), `timeout`
//! (5 s), `host-key-checking` (true), `host-key` (a string or a list), `connection-port`
//! (22; the legacy `ssh-port` is read when it is absent), `connection-type` (`ssh`),
//! `shell-type`, `max-parallel-jobs` (1) and `python-path` (`auto`). Anything else (a
//! `cloud`, say) is an unknown key.
//!
//! A host is identified by its name, username and port (Nodepool's "node tuple"), which
//! must be unique within the provider; every label must be a top-level label.

use std::time::Duration;

use super::reader::{Ctx, MapReader};
use super::validate::Kind;
use super::yaml::{Node, Val};

/// One provider with `driver: static`.
#[derive(Clone, Debug, PartialEq)]
pub struct StaticProvider {
    /// `name` (required, unique among all providers).
    pub name: String,
    /// `max-concurrency` (default −1; 0 = handle no requests).
    pub max_concurrency: i64,
    /// `priority` as written (pools fall back to it, then to 100).
    pub priority: Option<i64>,
    /// `pools`.
    pub pools: Vec<StaticPool>,
}

impl StaticProvider {
    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&StaticPool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// Every host of every pool, with its pool.
    pub fn hosts(&self) -> impl Iterator<Item = (&StaticPool, &StaticNode)> {
        self.pools
            .iter()
            .flat_map(|p| p.nodes.iter().map(move |n| (p, n)))
    }
}

/// One pool of a static provider.
#[derive(Clone, Debug, PartialEq)]
pub struct StaticPool {
    /// `name` (required, unique within the provider).
    pub name: String,
    /// `max-servers`; `None` = unlimited, ≤ 0 disables the pool (its requests are
    /// declined; its hosts stay registered).
    pub max_servers: Option<i64>,
    /// `node-attributes`: copied into every node record (`null` when empty).
    pub node_attributes: serde_json::Map<String, serde_json::Value>,
    /// `priority`, else the provider's, else 100 (lower is preferred).
    pub priority: i64,
    /// `nodes`: the hosts.
    pub nodes: Vec<StaticNode>,
}

impl StaticPool {
    /// The labels its hosts carry, each once, in config order.
    pub fn labels(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for l in self.nodes.iter().flat_map(|n| n.labels.iter()) {
            if !out.contains(l) {
                out.push(l.clone());
            }
        }
        out
    }

    /// Whether some host of the pool carries `label`.
    pub fn serves(&self, label: &str) -> bool {
        self.nodes
            .iter()
            .any(|n| n.labels.iter().any(|l| l == label))
    }
}

/// One host of a static pool (an entry of `nodes`).
#[derive(Clone, Debug, PartialEq)]
pub struct StaticNode {
    /// `name` (required): the host name or address; also the node's `hostname`,
    /// `external_id` and `interface_ip`.
    pub name: String,
    /// `labels` (required): every node of this host carries all of them.
    pub labels: Vec<String>,
    /// `username` (default `zuul`).
    pub username: String,
    /// `timeout` (default 5 s): how long the host may take to answer a check.
    pub timeout: Duration,
    /// `host-key-checking` (default true): scan the host keys (`ssh`, `network_cli`) or
    /// wait for the port (other connection types) before registering, and check the host
    /// answers before handing a node out.
    pub host_key_checking: bool,
    /// `host-key`: keys the scanned ones must include; stored as the node's host keys
    /// when `host-key-checking` is false.
    pub host_keys: Vec<String>,
    /// `connection-port` (default 22, or the legacy `ssh-port`).
    pub connection_port: u16,
    /// `connection-type` (default `ssh`).
    pub connection_type: String,
    /// `shell-type`.
    pub shell_type: Option<String>,
    /// `max-parallel-jobs` (default 1): how many nodes (slots) the host gets.
    pub max_parallel_jobs: u32,
    /// `python-path` (default `auto`).
    pub python_path: String,
}

impl StaticNode {
    /// The host's identity (Nodepool's node tuple): name, username and port.
    pub fn key(&self) -> HostKey {
        HostKey {
            name: self.name.clone(),
            username: self.username.clone(),
            port: self.connection_port,
        }
    }

    /// Whether the host keys are gathered (`ssh` and `network_cli` connections).
    pub fn gathers_host_keys(&self) -> bool {
        matches!(self.connection_type.as_str(), "ssh" | "network_cli")
    }
}

/// What identifies a static host and its nodes: name, username and port, as Nodepool's
/// node tuple (a node record gives `hostname`, `username`, `connection_port`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostKey {
    /// Host name.
    pub name: String,
    /// Login user.
    pub username: String,
    /// Connection port.
    pub port: u16,
}

impl std::fmt::Display for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.username, self.name, self.port)
    }
}

/// Whether a `providers[]` entry is a static one (`driver: static`).
pub(crate) fn is_static(node: &Node) -> bool {
    let Val::Map(pairs) = &node.val else {
        return false;
    };
    pairs
        .iter()
        .any(|(k, v)| k.val == Val::Str("driver".into()) && v.val == Val::Str("static".into()))
}

pub(crate) fn parse_static_provider(
    cx: &mut Ctx,
    path: &str,
    node: &Node,
    index: usize,
) -> Option<StaticProvider> {
    let mut r = MapReader::new(cx, node, path)?;
    let name = r.defined_name(cx, Kind::Provider, "");
    r.ignore("driver");
    let max_concurrency = r.int(cx, "max-concurrency", "an integer").unwrap_or(-1);
    let priority = r.int(cx, "priority", "an integer");
    let scope = index.to_string();
    let mut pools = Vec::new();
    for (p, n) in r.list(cx, "pools") {
        pools.extend(parse_pool(cx, &p, n, &scope, priority));
    }
    r.finish(cx);
    Some(StaticProvider {
        name: name?,
        max_concurrency,
        priority,
        pools,
    })
}

fn parse_pool(
    cx: &mut Ctx,
    path: &str,
    node: &Node,
    scope: &str,
    provider_priority: Option<i64>,
) -> Option<StaticPool> {
    let mut r = MapReader::new(cx, node, path)?;
    let name = r.defined_name(cx, Kind::Pool, scope);
    let max_servers = r.int(cx, "max-servers", "an integer");
    let node_attributes = r.json_map(cx, "node-attributes").unwrap_or_default();
    let priority = r
        .int(cx, "priority", "an integer")
        .or(provider_priority)
        .unwrap_or(100);
    let mut nodes = Vec::new();
    for (p, n) in r.list(cx, "nodes") {
        nodes.extend(parse_node(cx, &p, n, scope));
    }
    r.finish(cx);
    Some(StaticPool {
        name: name?,
        max_servers,
        node_attributes,
        priority,
        nodes,
    })
}

/// A string, or a list of strings (`labels`, `host-key`); `split` splits a string on
/// whitespace (as Nodepool does for `labels`).
fn str_or_list(cx: &mut Ctx, r: &mut MapReader, key: &str, split: bool) -> Option<Vec<String>> {
    let node = r.take(key)?;
    match &node.val {
        Val::Str(s) if split => Some(s.split_whitespace().map(str::to_string).collect()),
        Val::Str(s) => Some(vec![s.clone()]),
        Val::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match &item.val {
                    Val::Str(s) => out.push(s.clone()),
                    other => cx.error(
                        item.pos,
                        format!(
                            "{}[{i}]: expected a string, got {}",
                            r.key_path(key),
                            other.describe()
                        ),
                    ),
                }
            }
            Some(out)
        }
        other => {
            cx.error(
                node.pos,
                format!(
                    "{}: expected a string or a list of strings, got {}",
                    r.key_path(key),
                    other.describe()
                ),
            );
            None
        }
    }
}

fn parse_node(cx: &mut Ctx, path: &str, node: &Node, scope: &str) -> Option<StaticNode> {
    let mut r = MapReader::new(cx, node, path)?;
    let name = r.req_string(cx, "name");
    if !r.has("labels") {
        r.missing(cx, "labels");
    }
    let labels_pos = r.value_pos("labels");
    let labels = str_or_list(cx, &mut r, "labels", true).unwrap_or_default();
    for l in &labels {
        cx.refer(Kind::Label, "", l, labels_pos, &r.key_path("labels"));
    }
    let username = r.string(cx, "username").unwrap_or_else(|| "zuul".into());
    let timeout = r
        .int::<u64>(cx, "timeout", "a non-negative integer (seconds)")
        .unwrap_or(5);
    let host_key_checking = r.boolean(cx, "host-key-checking").unwrap_or(true);
    let host_keys = str_or_list(cx, &mut r, "host-key", false).unwrap_or_default();
    const PORT: &str = "a port number (0-65535)";
    let legacy_port = r.int::<u16>(cx, "ssh-port", PORT);
    let connection_port = r
        .int::<u16>(cx, "connection-port", PORT)
        .or(legacy_port)
        .unwrap_or(22);
    let connection_type = r
        .string(cx, "connection-type")
        .unwrap_or_else(|| "ssh".into());
    let shell_type = r.string(cx, "shell-type");
    let max_parallel_jobs = r
        .int::<u32>(cx, "max-parallel-jobs", "a non-negative integer")
        .unwrap_or(1);
    let python_path = r.string(cx, "python-path").unwrap_or_else(|| "auto".into());
    let (pos, key_path) = (r.value_pos("name"), r.key_path("name"));
    r.finish(cx);
    let host = StaticNode {
        name: name?,
        labels,
        username,
        timeout: Duration::from_secs(timeout),
        host_key_checking,
        host_keys,
        connection_port,
        connection_type,
        shell_type,
        max_parallel_jobs,
        python_path,
    };
    cx.define(
        Kind::StaticNode,
        scope,
        &host.key().to_string(),
        pos,
        &key_path,
    );
    Some(host)
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    #[test]
    fn labels_as_a_string_or_a_list_and_nodepools_defaults() {
        let c = Config::from_yaml_str(
            "labels: [{name: a}, {name: b}]\nproviders:\n  - name: s\n    driver: static\n    pools:\n      - name: main\n        nodes:\n          - name: h1\n            labels: a  b\n          - name: h2\n            labels: [b]\n            ssh-port: 2222\n",
            "t",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(c.providers.is_empty());
        let p = c.static_provider("s").unwrap();
        let pool = p.pool("main").unwrap();
        assert_eq!(pool.labels(), ["a", "b"]);
        assert_eq!(pool.priority, 100);
        let h1 = &pool.nodes[0];
        assert_eq!(h1.labels, ["a", "b"]);
        assert_eq!(
            (h1.username.as_str(), h1.connection_port, h1.timeout),
            ("zuul", 22, Duration::from_secs(5))
        );
        assert!(h1.host_key_checking && h1.gathers_host_keys());
        assert_eq!((h1.max_parallel_jobs, h1.python_path.as_str()), (1, "auto"));
        assert_eq!(pool.nodes[1].connection_port, 2222, "legacy ssh-port");
        assert_eq!(h1.key().to_string(), "zuul@h1:22");
    }
}
