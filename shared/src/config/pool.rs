//! A provider's `pools[]` and their `labels[]`.
//!
//! Pool-level `networks` and `host-key-checking` are copied into each label that does not
//! set its own, and the pool `priority` falls back to the provider's, then to 100, so the
//! launcher reads one resolved value.

use std::collections::BTreeMap;

use super::reader::{Ctx, MapReader};
use super::validate::Kind;
use super::yaml::Node;

/// One pool of an OpenStack provider.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    /// `name` (required, unique within the provider).
    pub name: String,
    /// `max-servers`; `None` = unlimited, ≤0 disables the pool.
    pub max_servers: Option<i64>,
    /// `max-cores`; `None` = unlimited.
    pub max_cores: Option<i64>,
    /// `max-ram` (MiB); `None` = unlimited.
    pub max_ram: Option<i64>,
    /// `max-volumes`; `None` = unlimited.
    pub max_volumes: Option<i64>,
    /// `max-volume-gb`; `None` = unlimited.
    pub max_volume_gb: Option<i64>,
    /// `ignore-provider-quota` (default false).
    pub ignore_provider_quota: bool,
    /// `availability-zones` (empty = let the cloud choose).
    pub availability_zones: Vec<String>,
    /// `networks` (default none).
    pub networks: Vec<String>,
    /// `security-groups` (default none).
    pub security_groups: Vec<String>,
    /// `auto-floating-ip` (default true).
    pub auto_floating_ip: bool,
    /// `host-key-checking` (default true).
    pub host_key_checking: bool,
    /// `node-attributes`: copied into every node record.
    pub node_attributes: serde_json::Map<String, serde_json::Value>,
    /// `priority`, else the provider's, else 100 (lower is preferred).
    pub priority: i64,
    /// `labels`.
    pub labels: Vec<PoolLabel>,
}

impl Pool {
    /// The pool label named `name`.
    pub fn label(&self, name: &str) -> Option<&PoolLabel> {
        self.labels.iter().find(|l| l.name == name)
    }
}

/// What a pool label boots from: exactly one of `diskimage` / `cloud-image`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolLabelImage {
    /// `diskimage`: a built image listed in the provider's `diskimages`.
    DiskImage(String),
    /// `cloud-image`: an entry of the provider's `cloud-images`.
    CloudImage(String),
}

/// One label a pool can provide.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolLabel {
    /// `name` (required): a top-level label.
    pub name: String,
    /// `diskimage` or `cloud-image`.
    pub image: PoolLabelImage,
    /// `flavor-name` (at least one of it and `min-ram`).
    pub flavor_name: Option<String>,
    /// `min-ram` (MiB).
    pub min_ram: Option<u64>,
    /// `key-name`.
    pub key_name: Option<String>,
    /// `console-log` (default false): log the console of failed boots.
    pub console_log: bool,
    /// `boot-from-volume` (default false).
    pub boot_from_volume: bool,
    /// `volume-size` in GB (default 50).
    pub volume_size: u64,
    /// `instance-properties`: server metadata.
    pub instance_properties: serde_json::Map<String, serde_json::Value>,
    /// `dynamic-instance-properties`: format strings with `{request.<attr>}`.
    pub dynamic_instance_properties: BTreeMap<String, String>,
    /// `userdata`.
    pub userdata: Option<String>,
    /// `networks`, or the pool's when unset.
    pub networks: Vec<String>,
    /// `host-key-checking`, or the pool's when unset.
    pub host_key_checking: bool,
}

impl PoolLabel {
    /// The diskimage name, if the label boots from a built image.
    pub fn diskimage(&self) -> Option<&str> {
        match &self.image {
            PoolLabelImage::DiskImage(n) => Some(n),
            PoolLabelImage::CloudImage(_) => None,
        }
    }

    /// The cloud image name, if the label boots from one.
    pub fn cloud_image(&self) -> Option<&str> {
        match &self.image {
            PoolLabelImage::CloudImage(n) => Some(n),
            PoolLabelImage::DiskImage(_) => None,
        }
    }
}

const LIMIT: &str = "an integer";

pub(crate) fn parse_pool(
    cx: &mut Ctx,
    path: &str,
    node: &Node,
    scope: &str,
    provider_priority: Option<i64>,
) -> Option<Pool> {
    let mut r = MapReader::new(cx, node, path)?;
    let name = r.defined_name(cx, Kind::Pool, scope);
    let mut pool = Pool {
        name: String::new(),
        max_servers: r.int(cx, "max-servers", LIMIT),
        max_cores: r.int(cx, "max-cores", LIMIT),
        max_ram: r.int(cx, "max-ram", LIMIT),
        max_volumes: r.int(cx, "max-volumes", LIMIT),
        max_volume_gb: r.int(cx, "max-volume-gb", LIMIT),
        ignore_provider_quota: r.boolean(cx, "ignore-provider-quota").unwrap_or(false),
        availability_zones: r.str_list(cx, "availability-zones").unwrap_or_default(),
        networks: r.str_list(cx, "networks").unwrap_or_default(),
        security_groups: r.str_list(cx, "security-groups").unwrap_or_default(),
        auto_floating_ip: r.boolean(cx, "auto-floating-ip").unwrap_or(true),
        host_key_checking: r.boolean(cx, "host-key-checking").unwrap_or(true),
        node_attributes: r.json_map(cx, "node-attributes").unwrap_or_default(),
        priority: 100,
        labels: Vec::new(),
    };
    pool.priority = r
        .int(cx, "priority", "an integer")
        .or(provider_priority)
        .unwrap_or(100);
    for (p, n) in r.list(cx, "labels") {
        pool.labels.extend(parse_label(cx, &p, n, scope, &pool));
    }
    r.finish(cx);
    pool.name = name?;
    Some(pool)
}

fn parse_label(
    cx: &mut Ctx,
    path: &str,
    node: &Node,
    scope: &str,
    pool: &Pool,
) -> Option<PoolLabel> {
    let mut r = MapReader::new(cx, node, path)?;
    let name = r.req_string(cx, "name");
    if let Some(n) = &name {
        cx.refer(Kind::Label, "", n, r.value_pos("name"), &r.key_path("name"));
    }
    let image = match (r.has("diskimage"), r.has("cloud-image")) {
        (true, true) => {
            r.error(
                cx,
                "cloud-image",
                "`diskimage` and `cloud-image` are mutually exclusive",
            );
            r.ignore("diskimage");
            r.ignore("cloud-image");
            None
        }
        (false, false) => {
            cx.error(
                r.pos(),
                format!("{}: needs one of `diskimage` or `cloud-image`", r.path()),
            );
            None
        }
        (true, false) => {
            let pos = r.value_pos("diskimage");
            let d = r.string(cx, "diskimage");
            if let Some(d) = &d {
                cx.refer(
                    Kind::ProviderDiskImage,
                    scope,
                    d,
                    pos,
                    &r.key_path("diskimage"),
                );
            }
            d.map(PoolLabelImage::DiskImage)
        }
        (false, true) => {
            let pos = r.value_pos("cloud-image");
            let c = r.string(cx, "cloud-image");
            if let Some(c) = &c {
                cx.refer(Kind::CloudImage, scope, c, pos, &r.key_path("cloud-image"));
            }
            c.map(PoolLabelImage::CloudImage)
        }
    };
    if !r.has("flavor-name") && !r.has("min-ram") {
        cx.error(
            r.pos(),
            format!("{}: needs `flavor-name` or `min-ram` (or both)", r.path()),
        );
    }
    let label = PoolLabel {
        name: String::new(),
        image: PoolLabelImage::CloudImage(String::new()),
        flavor_name: r.string(cx, "flavor-name"),
        min_ram: r.int(cx, "min-ram", "a non-negative integer (MiB)"),
        key_name: r.string(cx, "key-name"),
        console_log: r.boolean(cx, "console-log").unwrap_or(false),
        boot_from_volume: r.boolean(cx, "boot-from-volume").unwrap_or(false),
        volume_size: r
            .int(cx, "volume-size", "a non-negative integer (GB)")
            .unwrap_or(50),
        instance_properties: r.json_map(cx, "instance-properties").unwrap_or_default(),
        dynamic_instance_properties: r
            .str_map(cx, "dynamic-instance-properties")
            .unwrap_or_default(),
        userdata: r.string(cx, "userdata"),
        networks: r
            .str_list(cx, "networks")
            .unwrap_or_else(|| pool.networks.clone()),
        host_key_checking: r
            .boolean(cx, "host-key-checking")
            .unwrap_or(pool.host_key_checking),
    };
    r.finish(cx);
    Some(PoolLabel {
        name: name?,
        image: image?,
        ..label
    })
}
