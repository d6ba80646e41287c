//! The cloud objects the launcher and builder work with (servers, flavors, images,
//! floating IPs, ports, networks, limits) and the requests that create them.
//!
//! They are deserialized straight from OpenStack replies. Only `id` is mandatory; every
//! other field is optional or defaulted so that an unusual cloud never makes a reply
//! unparsable. Unknown fields are ignored (images keep them as properties).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::error::is_quota_message;
use crate::model::quota::{QuotaInformation, CORES, INSTANCES, RAM, VOLUMES, VOLUME_GB};

/// Metadata/property maps: values that are not strings are kept as their JSON text.
fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: Option<Map<String, Value>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, s)
        })
        .collect())
}

/// `null` → default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A number that some clouds send as a string.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v: Option<Value> = Option::deserialize(d)?;
    Ok(match v {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// `config_drive` is `""`, `"True"` or a bool depending on the cloud.
fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v: Option<Value> = Option::deserialize(d)?;
    Ok(match v {
        Some(Value::Bool(b)) => b,
        Some(Value::String(s)) => matches!(s.to_lowercase().as_str(), "true" | "1" | "yes"),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
        _ => false,
    })
}

/// A Nova server (from `GET /servers/{id}` or `/servers/detail`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Server {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `BUILD`, `ACTIVE`, `ERROR`, `DELETED`, …
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    #[serde(default, deserialize_with = "string_map")]
    pub metadata: BTreeMap<String, String>,
    /// Network name → addresses, in the order Nova lists the networks (openstacksdk
    /// picks the first match, so the order matters).
    #[serde(
        default,
        deserialize_with = "ordered_addresses",
        serialize_with = "addresses_as_map"
    )]
    pub addresses: Vec<(String, Vec<ServerAddress>)>,
    #[serde(rename = "hostId", default)]
    pub host_id: Option<String>,
    #[serde(rename = "OS-EXT-AZ:availability_zone", default)]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub fault: Option<ServerFault>,
    #[serde(default)]
    pub flavor: Option<ServerFlavor>,
    /// `{"id": …}`, or `""` for a server booted from a volume.
    #[serde(default)]
    pub image: Option<Value>,
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(rename = "OS-EXT-STS:task_state", default)]
    pub task_state: Option<String>,
    #[serde(rename = "OS-EXT-STS:vm_state", default)]
    pub vm_state: Option<String>,
    #[serde(rename = "accessIPv4", default)]
    pub access_ipv4: Option<String>,
    #[serde(rename = "accessIPv6", default)]
    pub access_ipv6: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub config_drive: bool,
    /// Cinder volumes attached to the server (`os-extended-volumes:volumes_attached`).
    #[serde(
        rename = "os-extended-volumes:volumes_attached",
        default,
        deserialize_with = "null_default"
    )]
    pub volumes_attached: Vec<AttachedVolume>,
}

/// One entry of `os-extended-volumes:volumes_attached`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct AttachedVolume {
    pub id: String,
    #[serde(default)]
    pub delete_on_termination: Option<bool>,
}

/// `addresses` as an ordered list (a JSON object keeps its order in `serde_json::Map`).
fn ordered_addresses<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, Vec<ServerAddress>)>, D::Error> {
    let raw: Option<Map<String, Value>> = Option::deserialize(d)?;
    raw.unwrap_or_default()
        .into_iter()
        .map(|(net, list)| {
            let list: Option<Vec<ServerAddress>> =
                serde_json::from_value(list).map_err(serde::de::Error::custom)?;
            Ok((net, list.unwrap_or_default()))
        })
        .collect()
}

fn addresses_as_map<S: serde::Serializer>(
    addresses: &[(String, Vec<ServerAddress>)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(addresses.len()))?;
    for (net, list) in addresses {
        m.serialize_entry(net, list)?;
    }
    m.end()
}

/// One entry of `addresses.<network>`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct ServerAddress {
    pub addr: String,
    #[serde(default)]
    pub version: Option<u8>,
    /// `fixed` or `floating`.
    #[serde(rename = "OS-EXT-IPS:type", default)]
    pub kind: Option<String>,
    #[serde(rename = "OS-EXT-IPS-MAC:mac_addr", default)]
    pub mac_addr: Option<String>,
}

/// `fault` of a server in `ERROR`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct ServerFault {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default, deserialize_with = "null_default")]
    pub message: String,
    #[serde(default)]
    pub details: Option<String>,
}

/// The server's flavor: `{id, links}` before microversion 2.47, the embedded flavor
/// (`original_name`, `vcpus`, `ram`, `disk`, …) from 2.47 on.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct ServerFlavor {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub original_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub vcpus: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub ram: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub disk: Option<u64>,
}

impl Server {
    /// The fault message, if any.
    pub fn fault_message(&self) -> Option<&str> {
        self.fault
            .as_ref()
            .map(|f| f.message.as_str())
            .filter(|m| !m.is_empty())
    }

    /// True when the server's fault says it ran out of quota (an `ERROR` server whose
    /// fault text contains "exceeds" and "quota", or another quota phrase).
    pub fn has_quota_fault(&self) -> bool {
        self.fault_message().is_some_and(is_quota_message)
    }

    /// Image id the server booted from (`None` when booted from a volume).
    pub fn image_id(&self) -> Option<&str> {
        self.image.as_ref()?.get("id")?.as_str()
    }

    /// A floating IPv4 address attached to the server.
    pub fn floating_ipv4(&self) -> Option<String> {
        self.addresses
            .iter()
            .flat_map(|(_, l)| l)
            .find(|a| a.kind.as_deref() == Some("floating") && a.addr.parse::<Ipv4Addr>().is_ok())
            .map(|a| a.addr.clone())
    }
}

/// The reply to a server create: Nova only returns the id (and admin password, dropped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedServer {
    pub id: String,
}

/// Everything needed to boot a server (one `POST /servers`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateServer {
    /// `np<node id>`.
    pub name: String,
    pub flavor_id: String,
    /// Image id. With `boot_from_volume` it becomes the volume's source.
    pub image_id: String,
    pub key_name: Option<String>,
    /// Network ids; empty = `"auto"` (Nova picks the project's network).
    pub networks: Vec<String>,
    /// Instance metadata (`groups`, instance properties, `nodepool_node_id`,
    /// `nodepool_pool_name`, `nodepool_provider_name`).
    pub metadata: BTreeMap<String, String>,
    pub availability_zone: Option<String>,
    /// Raw user data; the driver base64-encodes it.
    pub user_data: Option<String>,
    pub config_drive: Option<bool>,
    pub boot_from_volume: bool,
    /// Boot volume size in GB (used with `boot_from_volume`; 50 when unset).
    pub volume_size: Option<u64>,
    /// Security group names.
    pub security_groups: Vec<String>,
}

/// A Nova flavor.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Flavor {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// MiB.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub ram: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub vcpus: Option<u64>,
    /// GB.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub disk: Option<u64>,
    #[serde(rename = "os-flavor-access:is_public", default)]
    pub is_public: Option<bool>,
}

impl Flavor {
    /// RAM in MiB (0 when the cloud did not say).
    pub fn ram_mb(&self) -> u64 {
        self.ram.unwrap_or(0)
    }

    /// Python's `quota_from_flavor`: one instance plus the flavor's cores and RAM, plus
    /// one volume of `volume_size` GB when booting from a volume.
    pub fn quota(&self, boot_from_volume_gb: Option<u64>) -> QuotaInformation {
        let mut q = QuotaInformation::usage();
        q.set(INSTANCES, 1.0);
        q.set(CORES, self.vcpus.unwrap_or(0) as f64);
        q.set(RAM, self.ram_mb() as f64);
        if let Some(gb) = boot_from_volume_gb {
            q.set(VOLUMES, 1.0);
            q.set(VOLUME_GB, gb as f64);
        }
        q
    }
}

/// A Glance image. Custom properties (`nodepool_build_id`, …) land in `properties`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Image {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `queued`, `saving`, `active`, `killed`, `deleted`, …
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    #[serde(default)]
    pub disk_format: Option<String>,
    #[serde(default)]
    pub container_format: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub size: Option<u64>,
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    /// Every other top-level key of the image.
    #[serde(flatten)]
    pub properties: Map<String, Value>,
}

impl Image {
    /// A custom property as a string (non-strings as JSON text).
    pub fn property(&self, key: &str) -> Option<String> {
        self.properties.get(key).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// A Glance image create (`POST /v2/images`); the data is uploaded separately.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageCreate {
    pub name: String,
    /// `qcow2`, `raw`, `vhd`, …
    pub disk_format: String,
    /// `bare` when unset.
    pub container_format: Option<String>,
    /// Custom properties (`nodepool_build_id`, `nodepool_upload_id`,
    /// `nodepool_provider_name`, the diskimage's `metadata` and `meta`). Keys that name core
    /// image fields are ignored.
    pub properties: BTreeMap<String, String>,
}

/// A Neutron floating IP.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct FloatingIp {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub floating_ip_address: String,
    #[serde(default)]
    pub floating_network_id: Option<String>,
    #[serde(default)]
    pub fixed_ip_address: Option<String>,
    /// The port it is attached to; `None` = unattached.
    #[serde(default)]
    pub port_id: Option<String>,
    /// `ACTIVE`, `DOWN`, `ERROR`.
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    #[serde(default)]
    pub router_id: Option<String>,
}

impl FloatingIp {
    /// True when attached to a port.
    pub fn is_attached(&self) -> bool {
        self.port_id.as_deref().is_some_and(|p| !p.is_empty())
    }
}

/// A Neutron port.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Port {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `ACTIVE`, `DOWN`, `BUILD`.
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    #[serde(default)]
    pub device_owner: Option<String>,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub network_id: Option<String>,
    #[serde(default)]
    pub mac_address: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub fixed_ips: Vec<FixedIp>,
}

impl Port {
    /// Owned by compute (`device_owner` empty/unset or `compute:*`): the ports the
    /// leaked-port cleanup may remove.
    pub fn is_compute_owned(&self) -> bool {
        match self.device_owner.as_deref() {
            None | Some("") => true,
            Some(o) => o.starts_with("compute:"),
        }
    }
}

/// One `fixed_ips` entry of a port.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct FixedIp {
    #[serde(default, deserialize_with = "null_default")]
    pub ip_address: String,
    #[serde(default)]
    pub subnet_id: Option<String>,
}

/// Query filters for `GET /v2.0/ports`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortFilter {
    /// e.g. `DOWN`.
    pub status: Option<String>,
    /// Server id.
    pub device_id: Option<String>,
    pub network_id: Option<String>,
}

/// A Neutron network.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Network {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    /// `router:external`: floating IPs are allocated from external networks.
    #[serde(rename = "router:external", default)]
    pub external: bool,
    #[serde(default)]
    pub shared: bool,
    /// `provider:physical_network`: openstacksdk treats such networks as external.
    #[serde(rename = "provider:physical_network", default)]
    pub provider_physical_network: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub subnets: Vec<String>,
}

/// A Cinder volume.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Volume {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `available`, `in-use`, `creating`, `error`, …
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    /// GB.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub size: Option<u64>,
}

/// A limit where `-1` (or absence) means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Limit {
    #[default]
    Unlimited,
    Max(u64),
}

impl Limit {
    /// From an OpenStack absolute limit value (`-1` = unlimited).
    pub fn from_raw(v: Option<i64>) -> Self {
        match v {
            Some(n) if n >= 0 => Limit::Max(n as u64),
            _ => Limit::Unlimited,
        }
    }

    /// As the `-1`-for-unlimited integer the cloud uses.
    pub fn raw(self) -> i64 {
        match self {
            Limit::Unlimited => -1,
            Limit::Max(n) => n as i64,
        }
    }
}

/// Nova absolute limits (`GET /limits`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ComputeLimits {
    pub instances: Limit,
    pub cores: Limit,
    /// MiB.
    pub ram: Limit,
    /// Current usage as reported by Nova (informational).
    pub instances_used: Option<u64>,
    pub cores_used: Option<u64>,
    pub ram_used: Option<u64>,
}

/// Cinder absolute limits (`GET /limits` on the volume service).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VolumeLimits {
    pub volumes: Limit,
    pub gigabytes: Limit,
}

impl ComputeLimits {
    /// Python's `quota_from_limits`: `instances`, `cores`, `ram`, plus `volumes` and
    /// `volume-gb` when the volume limits are known; `-1` → ∞.
    pub fn to_quota(&self, volume: Option<&VolumeLimits>) -> QuotaInformation {
        let mut items = vec![
            (INSTANCES, self.instances.raw()),
            (CORES, self.cores.raw()),
            (RAM, self.ram.raw()),
        ];
        if let Some(v) = volume {
            items.push((VOLUMES, v.volumes.raw()));
            items.push((VOLUME_GB, v.gigabytes.raw()));
        }
        QuotaInformation::from_cloud_limits(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = r#"{
        "id": "9e2b1d3e-0000-4000-8000-000000000001",
        "name": "np0000000001",
        "status": "ACTIVE",
        "metadata": {"nodepool_node_id": "0000000001", "nodepool_provider_name": "p", "n": 3},
        "addresses": {"private": [
            {"addr": "10.0.0.5", "version": 4, "OS-EXT-IPS:type": "fixed"},
            {"addr": "2001:db8::5", "version": 6, "OS-EXT-IPS:type": "fixed"},
            {"addr": "203.0.113.9", "version": 4, "OS-EXT-IPS:type": "floating"}
        ]},
        "hostId": "abc",
        "OS-EXT-AZ:availability_zone": "az1",
        "flavor": {"original_name": "m1.small", "vcpus": 2, "ram": 2048, "disk": 20, "extra_specs": {}},
        "image": {"id": "img-1", "links": []},
        "config_drive": "",
        "fault": null,
        "links": [],
        "tags": [],
        "os-extended-volumes:volumes_attached": [{"id": "vol-1", "delete_on_termination": false}]
    }"#;

    #[test]
    fn server_parses_and_addresses() {
        let s: Server = serde_json::from_str(SERVER).unwrap();
        assert_eq!(s.metadata["nodepool_node_id"], "0000000001");
        assert_eq!(s.metadata["n"], "3");
        assert_eq!(s.host_id.as_deref(), Some("abc"));
        assert_eq!(s.availability_zone.as_deref(), Some("az1"));
        assert_eq!(s.flavor.as_ref().unwrap().vcpus, Some(2));
        assert_eq!(s.image_id(), Some("img-1"));
        assert!(!s.config_drive);
        assert_eq!(s.floating_ipv4().as_deref(), Some("203.0.113.9"));
        assert_eq!(s.addresses[0].0, "private");
        assert_eq!(s.addresses[0].1.len(), 3);
        assert_eq!(s.volumes_attached[0].id, "vol-1");
        assert!(!s.has_quota_fault());
    }

    #[test]
    fn server_minimal_and_faults() {
        let s: Server = serde_json::from_str(
            r#"{"id": "x", "name": null, "addresses": null, "metadata": null, "image": "",
                "status": "ERROR", "config_drive": "True",
                "fault": {"code": 500, "message": "Build of instance x aborted: VCPU count exceeds quota"}}"#,
        )
        .unwrap();
        assert_eq!(s.name, "");
        assert!(s.config_drive);
        assert_eq!(s.image_id(), None);
        assert!(s.has_quota_fault());
        assert!(s.addresses.is_empty() && s.volumes_attached.is_empty());
        // id is the one required field
        assert!(serde_json::from_str::<Server>(r#"{"name": "x"}"#).is_err());
    }

    #[test]
    fn image_keeps_properties() {
        let i: Image = serde_json::from_str(
            r#"{"id": "i", "name": "ubuntu-1700000000", "status": "active", "size": null,
                "disk_format": "qcow2", "nodepool_build_id": "0000000001", "min_ram": 0,
                "tags": []}"#,
        )
        .unwrap();
        assert_eq!(
            i.property("nodepool_build_id").as_deref(),
            Some("0000000001")
        );
        assert_eq!(i.property("min_ram").as_deref(), Some("0"));
        assert_eq!(i.size, None);
    }

    #[test]
    fn limits_to_quota() {
        let l = ComputeLimits {
            instances: Limit::Max(10),
            cores: Limit::Unlimited,
            ram: Limit::from_raw(Some(51200)),
            ..Default::default()
        };
        let q = l.to_quota(None);
        assert_eq!(q.get(INSTANCES), 10.0);
        assert!(q.get(CORES).is_infinite());
        assert_eq!(q.get(RAM), 51200.0);
        let v = VolumeLimits {
            volumes: Limit::from_raw(Some(-1)),
            gigabytes: Limit::Max(1000),
        };
        let q = l.to_quota(Some(&v));
        assert!(q.get(VOLUMES).is_infinite());
        assert_eq!(q.get(VOLUME_GB), 1000.0);
    }

    #[test]
    fn flavor_quota() {
        let f = Flavor {
            id: "1".into(),
            name: "m1".into(),
            ram: Some(8192),
            vcpus: Some(4),
            ..Default::default()
        };
        let q = f.quota(Some(50));
        assert_eq!(q.get(INSTANCES), 1.0);
        assert_eq!(q.get(CORES), 4.0);
        assert_eq!(q.get(RAM), 8192.0);
        assert_eq!(q.get(VOLUME_GB), 50.0);
    }

    #[test]
    fn port_ownership() {
        let p: Port = serde_json::from_str(
            r#"{"id": "p", "status": "DOWN", "device_owner": "compute:nova", "fixed_ips": null}"#,
        )
        .unwrap();
        assert!(p.is_compute_owned());
        let p = Port {
            device_owner: Some("network:dhcp".into()),
            ..p
        };
        assert!(!p.is_compute_owned());
    }
}
