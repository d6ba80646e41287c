//! The OpenStack driver: Nova, Glance and Neutron calls on top of [`Transport`], each
//! one HTTP request (list calls one per page), replies parsed into [`super::types`].
//!
//! References (flavor, image, network) must already be ids: the launcher resolves names
//! from its cached lists, so a server create is a single `POST /servers` instead of the
//! six requests the `openstack` crate makes.

use std::collections::HashSet;
use std::path::Path;

use base64::Engine;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use super::addresses::{local_host_has_ipv6, AddressPolicy};
use super::auth::Service;
use super::clouds_yaml::{CloudConfig, CloudsFile};
use super::error::CloudError;
use super::transport::{Call, Transport};
use super::types::*;
use super::{CloudDriver, CloudFuture, DriverOptions};

/// Default boot volume size (GB), as the pool-label `volume-size` default.
const DEFAULT_VOLUME_SIZE: u64 = 50;
/// Guard against clouds whose paging never ends.
const MAX_PAGES: usize = 100_000;
/// Image fields Glance owns; custom properties with these names are not sent.
const GLANCE_CORE: &[&str] = &[
    "id",
    "name",
    "status",
    "disk_format",
    "container_format",
    "visibility",
    "size",
    "virtual_size",
    "checksum",
    "created_at",
    "updated_at",
    "owner",
    "protected",
    "tags",
    "file",
    "self",
    "schema",
    "locations",
    "direct_url",
    "os_hash_algo",
    "os_hash_value",
];

/// The OpenStack implementation of [`CloudDriver`] for one provider.
#[derive(Debug)]
pub struct OpenStackDriver {
    t: Transport,
    provider: String,
    page_size: usize,
    addresses: AddressPolicy,
    image_format: String,
}

/// Object keys of each list call: (items key, links key).
struct ListShape {
    items: &'static str,
    links: &'static str,
}

impl OpenStackDriver {
    /// A driver for `cloud` (no network traffic until the first call).
    pub fn new(cloud: &CloudConfig, opts: DriverOptions) -> Result<Self, CloudError> {
        let mut addresses = cloud.addresses.clone();
        addresses.local_ipv6 = opts.local_ipv6.unwrap_or_else(local_host_has_ipv6);
        Ok(OpenStackDriver {
            t: Transport::new(cloud, &opts)?,
            provider: opts.provider.clone(),
            page_size: opts.page_size.max(1),
            addresses,
            image_format: cloud.image_format().to_string(),
        })
    }

    /// The cloud's `image_format` (the builder's upload format, default `qcow2`).
    pub fn image_format(&self) -> &str {
        &self.image_format
    }

    /// Loads clouds.yaml from the standard places and builds a driver for `cloud_name`.
    pub fn from_clouds_yaml(cloud_name: &str, opts: DriverOptions) -> Result<Self, CloudError> {
        let file = CloudsFile::load()?;
        Self::new(file.cloud(cloud_name)?, opts)
    }

    /// The region in use (provider `region-name` or the cloud's).
    pub fn region(&self) -> Option<&str> {
        self.t.region()
    }

    /// The endpoint URL used for `service` (authenticates if needed).
    pub async fn endpoint(&self, service: Service) -> Result<String, CloudError> {
        self.t.endpoint(service).await
    }

    async fn call_json<T: DeserializeOwned>(&self, call: Call) -> Result<T, CloudError> {
        let reply = self.t.call(&call).await?;
        reply.json(&call.name())
    }

    /// A call whose reply body is ignored; a 404 is success when `missing_ok`.
    async fn call_empty(&self, call: Call, missing_ok: bool) -> Result<(), CloudError> {
        match self.t.call(&call).await {
            Ok(_) => Ok(()),
            Err(e) if missing_ok && e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A GET of one object wrapped in `key` (`{"server": {...}}`); 404 → `None`.
    async fn get_one<T: DeserializeOwned>(
        &self,
        call: Call,
        key: Option<&str>,
    ) -> Result<Option<T>, CloudError> {
        let name = call.name();
        match self.t.call(&call).await {
            Ok(reply) => {
                let v: Value = reply.json(&name)?;
                Ok(Some(unwrap_key(v, key, &name)?))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A paged list: `limit` + `marker` (the last id of the previous page) until a page
    /// has no `next` link. Clouds that do not page (no links in the reply) stop after a
    /// short page; a page with no new ids always stops.
    async fn list<T: DeserializeOwned>(
        &self,
        service: Service,
        path: &str,
        operation: &'static str,
        shape: ListShape,
        query: &[(&'static str, String)],
    ) -> Result<Vec<T>, CloudError> {
        let mut out = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut call = Call::new(service, Method::GET, operation, path.to_string());
            for (k, v) in query {
                call = call.query(k, v.clone());
            }
            call = call.query("limit", self.page_size.to_string());
            if let Some(m) = &marker {
                call = call.query("marker", m.clone());
            }
            let name = call.name();
            let mut page: Map<String, Value> = self.call_json(call).await?;
            let items = match page.remove(shape.items) {
                Some(Value::Array(a)) => a,
                Some(other) => {
                    return Err(CloudError::bad_reply(
                        &name,
                        format!("`{}` is not a list: {}", shape.items, short(&other)),
                    ))
                }
                None => {
                    return Err(CloudError::bad_reply(
                        &name,
                        format!("no `{}` in reply", shape.items),
                    ))
                }
            };
            let count = items.len();
            let mut new_ids = 0;
            let mut last_id = None;
            for (i, item) in items.into_iter().enumerate() {
                let id = item.get("id").and_then(|v| v.as_str()).map(str::to_string);
                let parsed: T = serde_json::from_value(item).map_err(|e| {
                    CloudError::bad_reply(&name, format!("{}[{i}]: {e}", shape.items))
                })?;
                if let Some(id) = id {
                    if seen.insert(id.clone()) {
                        new_ids += 1;
                        out.push(parsed);
                    }
                    last_id = Some(id);
                } else {
                    out.push(parsed);
                }
            }
            let links_known = page.contains_key(shape.links) || page.contains_key("first");
            let next_link = has_next(&page, shape.links);
            let more = if links_known {
                next_link
            } else {
                count >= self.page_size
            };
            if !more || count == 0 || new_ids == 0 || last_id.is_none() {
                break;
            }
            marker = last_id;
        }
        Ok(out)
    }

    fn create_server_body(req: &CreateServer) -> Value {
        let mut server = Map::new();
        server.insert("name".into(), json!(req.name));
        server.insert("flavorRef".into(), json!(req.flavor_id));
        if req.boot_from_volume {
            server.insert(
                "block_device_mapping_v2".into(),
                json!([{
                    "boot_index": 0,
                    "uuid": req.image_id,
                    "source_type": "image",
                    "destination_type": "volume",
                    "volume_size": req.volume_size.unwrap_or(DEFAULT_VOLUME_SIZE),
                    "delete_on_termination": true,
                }]),
            );
        } else {
            server.insert("imageRef".into(), json!(req.image_id));
        }
        if let Some(k) = &req.key_name {
            server.insert("key_name".into(), json!(k));
        }
        let networks = if req.networks.is_empty() {
            json!("auto")
        } else {
            Value::Array(req.networks.iter().map(|n| json!({ "uuid": n })).collect())
        };
        server.insert("networks".into(), networks);
        if !req.metadata.is_empty() {
            server.insert("metadata".into(), json!(req.metadata));
        }
        if let Some(az) = &req.availability_zone {
            server.insert("availability_zone".into(), json!(az));
        }
        if let Some(ud) = &req.user_data {
            server.insert(
                "user_data".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(ud)),
            );
        }
        if let Some(cd) = req.config_drive {
            server.insert("config_drive".into(), json!(cd));
        }
        if !req.security_groups.is_empty() {
            server.insert(
                "security_groups".into(),
                Value::Array(
                    req.security_groups
                        .iter()
                        .map(|g| json!({ "name": g }))
                        .collect(),
                ),
            );
        }
        json!({ "server": server })
    }

    fn create_image_body(req: &ImageCreate) -> Value {
        let mut image = Map::new();
        for (k, v) in &req.properties {
            if !GLANCE_CORE.contains(&k.as_str()) {
                image.insert(k.clone(), json!(v));
            }
        }
        image.insert("name".into(), json!(req.name));
        image.insert("disk_format".into(), json!(req.disk_format));
        image.insert(
            "container_format".into(),
            json!(req.container_format.as_deref().unwrap_or("bare")),
        );
        Value::Object(image)
    }

    async fn floating_ip_update(
        &self,
        id: &str,
        port_id: Option<&str>,
    ) -> Result<FloatingIp, CloudError> {
        let call = Call::new(
            Service::Network,
            Method::PUT,
            "floatingips",
            format!("floatingips/{}", seg(id)),
        )
        .json(json!({ "floatingip": { "port_id": port_id } }));
        let name = call.name();
        let v: Value = self.call_json(call).await?;
        unwrap_key(v, Some("floatingip"), &name)
    }
}

/// One path segment, percent-encoded.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        let mut end = 80;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

/// `{"key": {...}}` → the inner object as `T`.
fn unwrap_key<T: DeserializeOwned>(
    v: Value,
    key: Option<&str>,
    operation: &str,
) -> Result<T, CloudError> {
    let inner = match key {
        None => v,
        Some(k) => match v {
            Value::Object(mut m) => m
                .remove(k)
                .ok_or_else(|| CloudError::bad_reply(operation, format!("no `{k}` in reply")))?,
            other => {
                return Err(CloudError::bad_reply(
                    operation,
                    format!("expected an object, got {}", short(&other)),
                ))
            }
        },
    };
    serde_json::from_value(inner).map_err(|e| CloudError::bad_reply(operation, e.to_string()))
}

/// A `rel: next` entry in `<links_key>` (Nova/Neutron) or a `next` URL (Glance).
fn has_next(page: &Map<String, Value>, links_key: &str) -> bool {
    if let Some(Value::Array(links)) = page.get(links_key) {
        if links
            .iter()
            .any(|l| l.get("rel").and_then(|r| r.as_str()) == Some("next"))
        {
            return true;
        }
    }
    matches!(page.get("next"), Some(Value::String(s)) if !s.is_empty())
}

#[derive(serde::Deserialize)]
struct LimitsReply {
    limits: LimitsBody,
}

#[derive(serde::Deserialize)]
struct LimitsBody {
    #[serde(default)]
    absolute: Map<String, Value>,
}

fn abs_limit(m: &Map<String, Value>, key: &str) -> Option<i64> {
    m.get(key).and_then(|v| v.as_i64())
}

fn used(m: &Map<String, Value>, key: &str) -> Option<u64> {
    m.get(key).and_then(|v| v.as_u64())
}

impl CloudDriver for OpenStackDriver {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn authenticate(&self) -> CloudFuture<'_, ()> {
        Box::pin(async move { self.t.token().await.map(|_| ()) })
    }

    fn create_server<'a>(&'a self, req: &'a CreateServer) -> CloudFuture<'a, CreatedServer> {
        Box::pin(async move {
            let call = Call::new(Service::Compute, Method::POST, "servers", "servers".into())
                .json(Self::create_server_body(req));
            let name = call.name();
            let v: Value = self.call_json(call).await?;
            let id = v
                .get("server")
                .and_then(|s| s.get("id"))
                .and_then(|i| i.as_str())
                .filter(|i| !i.is_empty())
                .ok_or_else(|| CloudError::bad_reply(&name, "no server id in reply"))?;
            Ok(CreatedServer { id: id.to_string() })
        })
    }

    fn get_server<'a>(&'a self, id: &'a str) -> CloudFuture<'a, Option<Server>> {
        Box::pin(async move {
            let call = Call::new(
                Service::Compute,
                Method::GET,
                "servers",
                format!("servers/{}", seg(id)),
            );
            self.get_one(call, Some("server")).await
        })
    }

    fn list_servers(&self) -> CloudFuture<'_, Vec<Server>> {
        Box::pin(async move {
            self.list(
                Service::Compute,
                "servers/detail",
                "servers.detail",
                ListShape {
                    items: "servers",
                    links: "servers_links",
                },
                &[],
            )
            .await
        })
    }

    fn delete_server<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            let call = Call::new(
                Service::Compute,
                Method::DELETE,
                "servers",
                format!("servers/{}", seg(id)),
            );
            self.call_empty(call, true).await
        })
    }

    fn console_output<'a>(&'a self, id: &'a str, length: Option<u32>) -> CloudFuture<'a, String> {
        Box::pin(async move {
            let call = Call::new(
                Service::Compute,
                Method::POST,
                "servers.action",
                format!("servers/{}/action", seg(id)),
            )
            .json(json!({ "os-getConsoleOutput": { "length": length } }));
            let name = call.name();
            let v: Value = self.call_json(call).await?;
            match v.get("output") {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Null) => Ok(String::new()),
                _ => Err(CloudError::bad_reply(&name, "no `output` in reply")),
            }
        })
    }

    fn list_flavors(&self) -> CloudFuture<'_, Vec<Flavor>> {
        Box::pin(async move {
            self.list(
                Service::Compute,
                "flavors/detail",
                "flavors.detail",
                ListShape {
                    items: "flavors",
                    links: "flavors_links",
                },
                &[],
            )
            .await
        })
    }

    fn compute_limits(&self) -> CloudFuture<'_, ComputeLimits> {
        Box::pin(async move {
            let call = Call::new(Service::Compute, Method::GET, "limits", "limits".into());
            let r: LimitsReply = self.call_json(call).await?;
            let a = &r.limits.absolute;
            Ok(ComputeLimits {
                instances: Limit::from_raw(abs_limit(a, "maxTotalInstances")),
                cores: Limit::from_raw(abs_limit(a, "maxTotalCores")),
                ram: Limit::from_raw(abs_limit(a, "maxTotalRAMSize")),
                instances_used: used(a, "totalInstancesUsed"),
                cores_used: used(a, "totalCoresUsed"),
                ram_used: used(a, "totalRAMUsed"),
            })
        })
    }

    fn volume_limits(&self) -> CloudFuture<'_, Option<VolumeLimits>> {
        Box::pin(async move {
            match self.t.endpoint(Service::Volume).await {
                Err(CloudError::EndpointNotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            let call = Call::new(Service::Volume, Method::GET, "limits", "limits".into());
            let r: LimitsReply = self.call_json(call).await?;
            let a = &r.limits.absolute;
            Ok(Some(VolumeLimits {
                volumes: Limit::from_raw(abs_limit(a, "maxTotalVolumes")),
                gigabytes: Limit::from_raw(abs_limit(a, "maxTotalVolumeGigabytes")),
            }))
        })
    }

    fn list_availability_zones(&self) -> CloudFuture<'_, Vec<String>> {
        Box::pin(async move {
            let call = Call::new(
                Service::Compute,
                Method::GET,
                "os-availability-zone",
                "os-availability-zone".into(),
            );
            let name = call.name();
            let v: Value = self.call_json(call).await?;
            let zones = v
                .get("availabilityZoneInfo")
                .and_then(|z| z.as_array())
                .ok_or_else(|| CloudError::bad_reply(&name, "no `availabilityZoneInfo` list"))?;
            Ok(zones
                .iter()
                .filter(|z| {
                    z.get("zoneState")
                        .and_then(|s| s.get("available"))
                        .and_then(|a| a.as_bool())
                        .unwrap_or(true)
                })
                .filter_map(|z| z.get("zoneName").and_then(|n| n.as_str()))
                .map(str::to_string)
                .collect())
        })
    }

    fn address_policy(&self) -> AddressPolicy {
        self.addresses.clone()
    }

    fn list_volumes(&self) -> CloudFuture<'_, Vec<Volume>> {
        Box::pin(async move {
            match self.t.endpoint(Service::Volume).await {
                Err(CloudError::EndpointNotFound { .. }) => return Ok(Vec::new()),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            self.list(
                Service::Volume,
                "volumes/detail",
                "volumes.detail",
                ListShape {
                    items: "volumes",
                    links: "volumes_links",
                },
                &[],
            )
            .await
        })
    }

    fn list_images(&self) -> CloudFuture<'_, Vec<Image>> {
        Box::pin(async move {
            self.list(
                Service::Image,
                "images",
                "images",
                ListShape {
                    items: "images",
                    links: "images_links",
                },
                &[],
            )
            .await
        })
    }

    fn get_image<'a>(&'a self, id: &'a str) -> CloudFuture<'a, Option<Image>> {
        Box::pin(async move {
            let call = Call::new(
                Service::Image,
                Method::GET,
                "images",
                format!("images/{}", seg(id)),
            );
            self.get_one(call, None).await
        })
    }

    fn create_image<'a>(&'a self, req: &'a ImageCreate) -> CloudFuture<'a, Image> {
        Box::pin(async move {
            let call = Call::new(Service::Image, Method::POST, "images", "images".into())
                .json(Self::create_image_body(req));
            let name = call.name();
            let v: Value = self.call_json(call).await?;
            unwrap_key(v, None, &name)
        })
    }

    fn upload_image_data<'a>(&'a self, id: &'a str, path: &'a Path) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            let call = Call::new(
                Service::Image,
                Method::PUT,
                "images.file",
                format!("images/{}/file", seg(id)),
            )
            .file(path.to_path_buf());
            self.call_empty(call, false).await
        })
    }

    fn delete_image<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            let call = Call::new(
                Service::Image,
                Method::DELETE,
                "images",
                format!("images/{}", seg(id)),
            );
            self.call_empty(call, true).await
        })
    }

    fn list_networks(&self) -> CloudFuture<'_, Vec<Network>> {
        Box::pin(async move {
            self.list(
                Service::Network,
                "networks",
                "networks",
                ListShape {
                    items: "networks",
                    links: "networks_links",
                },
                &[],
            )
            .await
        })
    }

    fn list_floating_ips(&self) -> CloudFuture<'_, Vec<FloatingIp>> {
        Box::pin(async move {
            self.list(
                Service::Network,
                "floatingips",
                "floatingips",
                ListShape {
                    items: "floatingips",
                    links: "floatingips_links",
                },
                &[],
            )
            .await
        })
    }

    fn create_floating_ip<'a>(
        &'a self,
        network_id: &'a str,
        port_id: Option<&'a str>,
    ) -> CloudFuture<'a, FloatingIp> {
        Box::pin(async move {
            let mut fip = Map::new();
            fip.insert("floating_network_id".into(), json!(network_id));
            if let Some(p) = port_id {
                fip.insert("port_id".into(), json!(p));
            }
            let call = Call::new(
                Service::Network,
                Method::POST,
                "floatingips",
                "floatingips".into(),
            )
            .json(json!({ "floatingip": fip }));
            let name = call.name();
            let v: Value = self.call_json(call).await?;
            unwrap_key(v, Some("floatingip"), &name)
        })
    }

    fn attach_floating_ip<'a>(
        &'a self,
        id: &'a str,
        port_id: &'a str,
    ) -> CloudFuture<'a, FloatingIp> {
        Box::pin(self.floating_ip_update(id, Some(port_id)))
    }

    fn detach_floating_ip<'a>(&'a self, id: &'a str) -> CloudFuture<'a, FloatingIp> {
        Box::pin(self.floating_ip_update(id, None))
    }

    fn delete_floating_ip<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            let call = Call::new(
                Service::Network,
                Method::DELETE,
                "floatingips",
                format!("floatingips/{}", seg(id)),
            );
            self.call_empty(call, true).await
        })
    }

    fn list_ports<'a>(&'a self, filter: &'a PortFilter) -> CloudFuture<'a, Vec<Port>> {
        Box::pin(async move {
            let mut query = Vec::new();
            if let Some(s) = &filter.status {
                query.push(("status", s.clone()));
            }
            if let Some(d) = &filter.device_id {
                query.push(("device_id", d.clone()));
            }
            if let Some(n) = &filter.network_id {
                query.push(("network_id", n.clone()));
            }
            self.list(
                Service::Network,
                "ports",
                "ports",
                ListShape {
                    items: "ports",
                    links: "ports_links",
                },
                &query,
            )
            .await
        })
    }

    fn delete_port<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            let call = Call::new(
                Service::Network,
                Method::DELETE,
                "ports",
                format!("ports/{}", seg(id)),
            );
            self.call_empty(call, true).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn server_body_plain() {
        let req = CreateServer {
            name: "np0000000001".into(),
            flavor_id: "f1".into(),
            image_id: "i1".into(),
            key_name: Some("k".into()),
            networks: vec!["n1".into(), "n2".into()],
            metadata: BTreeMap::from([("nodepool_node_id".into(), "0000000001".into())]),
            availability_zone: Some("az1".into()),
            user_data: Some("#cloud-config\n".into()),
            config_drive: Some(true),
            security_groups: vec!["default".into()],
            ..Default::default()
        };
        let b = OpenStackDriver::create_server_body(&req);
        let s = &b["server"];
        assert_eq!(s["name"], "np0000000001");
        assert_eq!(s["flavorRef"], "f1");
        assert_eq!(s["imageRef"], "i1");
        assert_eq!(s["key_name"], "k");
        assert_eq!(s["networks"], json!([{"uuid": "n1"}, {"uuid": "n2"}]));
        assert_eq!(s["metadata"]["nodepool_node_id"], "0000000001");
        assert_eq!(s["availability_zone"], "az1");
        assert_eq!(s["user_data"], "I2Nsb3VkLWNvbmZpZwo=");
        assert_eq!(s["config_drive"], true);
        assert_eq!(s["security_groups"], json!([{"name": "default"}]));
        assert!(s.get("block_device_mapping_v2").is_none());
    }

    #[test]
    fn server_body_boot_from_volume() {
        let req = CreateServer {
            name: "n".into(),
            flavor_id: "f".into(),
            image_id: "i".into(),
            boot_from_volume: true,
            volume_size: Some(80),
            ..Default::default()
        };
        let b = OpenStackDriver::create_server_body(&req);
        let s = &b["server"];
        assert!(s.get("imageRef").is_none());
        assert_eq!(s["networks"], "auto");
        let bdm = &s["block_device_mapping_v2"][0];
        assert_eq!(bdm["uuid"], "i");
        assert_eq!(bdm["volume_size"], 80);
        assert_eq!(bdm["source_type"], "image");
        assert_eq!(bdm["destination_type"], "volume");
        assert_eq!(bdm["delete_on_termination"], true);
        assert!(s.get("metadata").is_none() && s.get("user_data").is_none());
    }

    #[test]
    fn image_body_keeps_core_fields() {
        let req = ImageCreate {
            name: "ubuntu-1".into(),
            disk_format: "qcow2".into(),
            container_format: None,
            properties: BTreeMap::from([
                ("nodepool_build_id".into(), "0000000001".into()),
                ("disk_format".into(), "raw".into()),
                ("name".into(), "evil".into()),
            ]),
        };
        let b = OpenStackDriver::create_image_body(&req);
        assert_eq!(b["name"], "ubuntu-1");
        assert_eq!(b["disk_format"], "qcow2");
        assert_eq!(b["container_format"], "bare");
        assert_eq!(b["nodepool_build_id"], "0000000001");
    }

    #[test]
    fn next_links() {
        let m = |v: Value| v.as_object().unwrap().clone();
        assert!(has_next(
            &m(json!({"servers_links": [{"rel": "next", "href": "x"}]})),
            "servers_links"
        ));
        assert!(!has_next(&m(json!({"servers_links": []})), "servers_links"));
        assert!(has_next(
            &m(json!({"next": "/v2/images?marker=a"})),
            "images_links"
        ));
        assert!(!has_next(
            &m(json!({"first": "/v2/images"})),
            "images_links"
        ));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("abc-123_x.y"), "abc-123_x.y");
        assert_eq!(seg("../a b"), "..%2Fa%20b");
    }

    #[test]
    fn unwrap_key_errors_name_operation() {
        let e = unwrap_key::<Server>(json!({"x": 1}), Some("server"), "compute.GET.servers")
            .unwrap_err();
        assert!(e.to_string().contains("compute.GET.servers"), "{e}");
        let e =
            unwrap_key::<Server>(json!({"server": {"name": 1}}), Some("server"), "op").unwrap_err();
        assert!(matches!(e, CloudError::BadReply { .. }), "{e}");
    }
}
