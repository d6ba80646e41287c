//! `providers[]` of the OpenStack driver with their `diskimages` and `cloud-images`
//! (`driver: static` providers are read by `static_provider`).
//!
//! Any other `driver` than `openstack` (or `fake`, and anything on a provider whose name
//! starts with `fake`, which Python Nodepool's tests use) is rejected by name.

use std::time::Duration;

use super::pool::{parse_pool, Pool};
use super::reader::{Ctx, MapReader};
use super::validate::Kind;
use super::yaml::Node;

/// One OpenStack provider.
#[derive(Clone, Debug, PartialEq)]
pub struct Provider {
    /// `name` (required).
    pub name: String,
    /// `cloud` (required): the clouds.yaml entry.
    pub cloud: String,
    /// `region-name`.
    pub region_name: Option<String>,
    /// `rate` (default 1.0 s): minimum time between API calls.
    pub rate: Duration,
    /// `boot-timeout` (default 60 s).
    pub boot_timeout: Duration,
    /// `launch-timeout` (default 3600 s).
    pub launch_timeout: Duration,
    /// `launch-retries` (default 3).
    pub launch_retries: u32,
    /// `image-upload-timeout` (default 3600 s).
    pub image_upload_timeout: Duration,
    /// `max-concurrency` (default −1 = unlimited; 0 = handle no requests).
    pub max_concurrency: i64,
    /// `priority` as written (pools fall back to it, then to 100).
    pub priority: Option<i64>,
    /// `clean-floating-ips` (unset = false, like Python Nodepool's code).
    pub clean_floating_ips: bool,
    /// `port-cleanup-interval` (default 600 s); `None` when set to 0 (disabled).
    pub port_cleanup_interval: Option<Duration>,
    /// `image-name-format` (default `{image_name}-{timestamp}`).
    pub image_name_format: String,
    /// `post-upload-hook`: program run after each upload.
    pub post_upload_hook: Option<String>,
    /// `diskimages`: built images this provider uploads.
    pub diskimages: Vec<ProviderDiskImage>,
    /// `cloud-images`: images that already exist in the cloud.
    pub cloud_images: Vec<CloudImage>,
    /// `pools`.
    pub pools: Vec<Pool>,
}

impl Provider {
    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// The provider diskimage named `name`.
    pub fn diskimage(&self, name: &str) -> Option<&ProviderDiskImage> {
        self.diskimages.iter().find(|d| d.name == name)
    }

    /// The cloud image named `name`.
    pub fn cloud_image(&self, name: &str) -> Option<&CloudImage> {
        self.cloud_images.iter().find(|c| c.name == name)
    }
}

/// One entry of a provider's `diskimages`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderDiskImage {
    /// `name` (required): a top-level, non-abstract diskimage.
    pub name: String,
    /// `pause` (default false): no uploads to this provider.
    pub pause: bool,
    /// `config-drive`.
    pub config_drive: Option<bool>,
    /// `meta`: extra image properties.
    pub meta: serde_json::Map<String, serde_json::Value>,
    /// `connection-type` (default `ssh`).
    pub connection_type: String,
    /// `connection-port` (default 22, or 5986 for `winrm`).
    pub connection_port: u16,
}

/// How a cloud image is found in the cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloudImageRef {
    /// `image-id`.
    Id(String),
    /// `image-name`, or the entry's `name` when neither key is given.
    Name(String),
}

/// One entry of a provider's `cloud-images`.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudImage {
    /// `name` (required): what pool labels refer to.
    pub name: String,
    /// `config-drive`.
    pub config_drive: Option<bool>,
    /// `image-id` or `image-name` (mutually exclusive).
    pub image: CloudImageRef,
    /// `username` (no default).
    pub username: Option<String>,
    /// `python-path` (default `auto`).
    pub python_path: String,
    /// `shell-type`.
    pub shell_type: Option<String>,
    /// `connection-type` (default `ssh`).
    pub connection_type: String,
    /// `connection-port` (default 22, or 5986 for `winrm`).
    pub connection_port: u16,
}

const PORT: &str = "a port number (0-65535)";

fn connection(cx: &mut Ctx, r: &mut MapReader) -> (String, u16) {
    let ctype = r
        .string(cx, "connection-type")
        .unwrap_or_else(|| "ssh".into());
    let default_port = if ctype == "winrm" { 5986 } else { 22 };
    let port = r.int(cx, "connection-port", PORT).unwrap_or(default_port);
    (ctype, port)
}

pub(crate) fn parse_provider(
    cx: &mut Ctx,
    path: &str,
    node: &Node,
    index: usize,
) -> Option<Provider> {
    let mut r = MapReader::new(cx, node, path)?;
    let name = r.defined_name(cx, Kind::Provider, "");
    let driver = r.string(cx, "driver");
    let fake = name.as_deref().is_some_and(|n| n.starts_with("fake"));
    match driver.as_deref() {
        None | Some("openstack" | "fake") => {}
        Some(_) if fake => {}
        Some(other) => {
            r.error(
                cx,
                "driver",
                format!("driver `{other}` is not supported (only `openstack` and `static` are)"),
            );
            return None;
        }
    }
    let scope = index.to_string();
    let cloud = r.req_string(cx, "cloud");
    let region_name = r.string(cx, "region-name");
    let rate = r.seconds(cx, "rate").unwrap_or(Duration::from_secs(1));
    let boot_timeout = r
        .seconds(cx, "boot-timeout")
        .unwrap_or(Duration::from_secs(60));
    let launch_timeout = r
        .seconds(cx, "launch-timeout")
        .unwrap_or(Duration::from_secs(3600));
    let launch_retries = r
        .int(cx, "launch-retries", "a non-negative integer")
        .unwrap_or(3);
    let image_upload_timeout = r
        .seconds(cx, "image-upload-timeout")
        .unwrap_or(Duration::from_secs(3600));
    let max_concurrency = r.int(cx, "max-concurrency", "an integer").unwrap_or(-1);
    let priority = r.int(cx, "priority", "an integer");
    let clean_floating_ips = r.boolean(cx, "clean-floating-ips").unwrap_or(false);
    let port_cleanup_interval = r
        .seconds(cx, "port-cleanup-interval")
        .unwrap_or(Duration::from_secs(600));
    let image_name_format = r
        .string(cx, "image-name-format")
        .unwrap_or_else(|| "{image_name}-{timestamp}".into());
    let post_upload_hook = r.string(cx, "post-upload-hook");
    r.ignore("nodepool-id");

    let mut diskimages = Vec::new();
    for (p, n) in r.list(cx, "diskimages") {
        diskimages.extend(parse_provider_diskimage(cx, &p, n, &scope));
    }
    let mut cloud_images = Vec::new();
    for (p, n) in r.list(cx, "cloud-images") {
        cloud_images.extend(parse_cloud_image(cx, &p, n, &scope));
    }
    let mut pools = Vec::new();
    for (p, n) in r.list(cx, "pools") {
        pools.extend(parse_pool(cx, &p, n, &scope, priority));
    }
    r.finish(cx);
    Some(Provider {
        name: name?,
        cloud: cloud?,
        region_name,
        rate,
        boot_timeout,
        launch_timeout,
        launch_retries,
        image_upload_timeout,
        max_concurrency,
        priority,
        clean_floating_ips,
        port_cleanup_interval: Some(port_cleanup_interval).filter(|d| !d.is_zero()),
        image_name_format,
        post_upload_hook,
        diskimages,
        cloud_images,
        pools,
    })
}

fn parse_provider_diskimage(
    cx: &mut Ctx,
    path: &str,
    node: &Node,
    scope: &str,
) -> Option<ProviderDiskImage> {
    let mut r = MapReader::new(cx, node, path)?;
    let name = r.req_string(cx, "name");
    if let Some(n) = &name {
        let (pos, p) = (r.value_pos("name"), r.key_path("name"));
        cx.define(Kind::ProviderDiskImage, scope, n, pos, &p);
        cx.refer(Kind::ConcreteDiskImage, "", n, pos, &p);
    }
    let pause = r.boolean(cx, "pause").unwrap_or(false);
    let config_drive = r.boolean(cx, "config-drive");
    let meta = r.json_map(cx, "meta").unwrap_or_default();
    let (connection_type, connection_port) = connection(cx, &mut r);
    r.finish(cx);
    Some(ProviderDiskImage {
        name: name?,
        pause,
        config_drive,
        meta,
        connection_type,
        connection_port,
    })
}

fn parse_cloud_image(cx: &mut Ctx, path: &str, node: &Node, scope: &str) -> Option<CloudImage> {
    let mut r = MapReader::new(cx, node, path)?;
    let name = r.defined_name(cx, Kind::CloudImage, scope);
    let config_drive = r.boolean(cx, "config-drive");
    if r.has("image-id") && r.has("image-name") {
        r.error(
            cx,
            "image-name",
            "`image-id` and `image-name` are mutually exclusive",
        );
    }
    let image_id = r.string(cx, "image-id");
    let image_name = r.string(cx, "image-name");
    let username = r.string(cx, "username");
    let python_path = r.string(cx, "python-path").unwrap_or_else(|| "auto".into());
    let shell_type = r.string(cx, "shell-type");
    let (connection_type, connection_port) = connection(cx, &mut r);
    r.finish(cx);
    let name = name?;
    let image = match (image_id, image_name) {
        (Some(id), _) => CloudImageRef::Id(id),
        (None, Some(n)) => CloudImageRef::Name(n),
        (None, None) => CloudImageRef::Name(name.clone()),
    };
    Some(CloudImage {
        name,
        config_drive,
        image,
        username,
        python_path,
        shell_type,
        connection_type,
        connection_port,
    })
}
