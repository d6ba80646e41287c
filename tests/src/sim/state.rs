//! The simulated cloud's resources and the domain operations on them (no HTTP here).
//!
//! Everything lives in one [`World`] value guarded by one mutex in [`super::app::Sim`]; it is
//! serialisable so a whole cloud can be saved to and loaded from a JSON snapshot.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config::{Knobs, SimConfig};
use super::util::{new_id, new_mac, now_secs};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Flavor {
    pub id: String,
    pub name: String,
    /// MiB.
    pub ram: u64,
    pub vcpus: u64,
    /// GB.
    pub disk: u64,
    #[serde(default)]
    pub ephemeral: u64,
    #[serde(default)]
    pub swap: u64,
    #[serde(default = "yes")]
    pub is_public: bool,
    #[serde(default)]
    pub extra_specs: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerStatus {
    Build,
    Active,
    Error,
}

impl ServerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerStatus::Build => "BUILD",
            ServerStatus::Active => "ACTIVE",
            ServerStatus::Error => "ERROR",
        }
    }
    pub fn vm_state(self) -> &'static str {
        match self {
            ServerStatus::Build => "building",
            ServerStatus::Active => "active",
            ServerStatus::Error => "error",
        }
    }
}

/// What happens to a server when its boot delay is over.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BootPlan {
    Active,
    Error { message: String },
    Hang,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fault {
    pub code: u16,
    pub message: String,
    pub details: String,
    pub created: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub status: ServerStatus,
    pub task_state: Option<String>,
    pub flavor: Flavor,
    /// `None` when booted from a volume.
    pub image_id: Option<String>,
    pub key_name: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub availability_zone: String,
    pub user_data: Option<String>,
    pub config_drive: bool,
    pub block_device_mapping_v2: Vec<Value>,
    /// Ids of the (simulated) volumes created by boot-from-volume.
    pub volumes: Vec<String>,
    /// Ports attached to the server, in network order.
    pub port_ids: Vec<String>,
    pub host_id: String,
    pub fault: Option<Fault>,
    pub created: u64,
    pub updated: u64,
    pub launched_at: Option<u64>,
    pub access_ipv4: String,
    pub access_ipv6: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub security_groups: Vec<String>,
    pub boot: BootPlan,
    /// When the boot delay is over (not persisted; recomputed on load).
    #[serde(skip)]
    pub ready_at: Option<Instant>,
    /// When a delayed delete completes.
    #[serde(skip)]
    pub delete_at: Option<Instant>,
}

/// A Cinder volume (only created by boot-from-volume).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    pub name: String,
    /// GB.
    pub size: u64,
    /// `in-use` while attached, `available` otherwise.
    pub status: String,
    pub server_id: Option<String>,
    pub image_id: Option<String>,
    pub delete_on_termination: bool,
    pub created: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Keypair {
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    /// queued, saving, active, killed, deleted
    pub status: String,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub visibility: String,
    pub protected: bool,
    pub os_hidden: bool,
    pub min_disk: u64,
    pub min_ram: u64,
    pub size: Option<u64>,
    pub checksum: Option<String>,
    pub os_hash_value: Option<String>,
    pub tags: Vec<String>,
    /// Custom properties (top-level keys in Glance's JSON).
    pub properties: Map<String, Value>,
    pub created: u64,
    pub updated: u64,
    /// Where the uploaded data was written, if the simulator stores data.
    pub stored_path: Option<std::path::PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub external: bool,
    pub shared: bool,
    pub subnet_ids: Vec<String>,
    pub mtu: u32,
    pub created: u64,
    /// `provider:physical_network` (a flat provider network when set).
    #[serde(default)]
    pub physical_network: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub name: String,
    pub network_id: String,
    /// Network address and prefix length.
    pub network: Ipv4Addr,
    pub prefix: u8,
    /// Next host offset to hand out.
    pub next_host: u32,
    pub created: u64,
    /// 4, or 6 for an IPv6 subnet of IPv4-mapped addresses (`::ffff:<v4>`): a port gets
    /// the mapped twin of its IPv4 address on the same network, so anything connecting
    /// to it still reaches the loopback address (and its fake sshd).
    #[serde(default = "four")]
    pub ip_version: u8,
}

fn four() -> u8 {
    4
}

impl Subnet {
    pub fn cidr(&self) -> String {
        if self.ip_version == 6 {
            format!("::ffff:{}/{}", self.network, 96 + u32::from(self.prefix))
        } else {
            format!("{}/{}", self.network, self.prefix)
        }
    }
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }
    /// `gateway()` as this subnet writes addresses.
    pub fn gateway_ip(&self) -> String {
        mapped(self.ip_version, self.gateway())
    }
    /// The first and last address handed out, as this subnet writes addresses.
    pub fn pool(&self) -> (String, String) {
        let first = Ipv4Addr::from(u32::from(self.network) + 2);
        let last = Ipv4Addr::from(u32::from(self.network) + self.size() - 2);
        (
            mapped(self.ip_version, first),
            mapped(self.ip_version, last),
        )
    }
    fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix))
    }
    /// Hands out the next address (wrapping, skipping network, gateway and broadcast).
    fn allocate(&mut self) -> Ipv4Addr {
        let size = self.size();
        if self.next_host < 2 || self.next_host >= size - 1 {
            self.next_host = 2;
        }
        let ip = Ipv4Addr::from(u32::from(self.network) + self.next_host);
        self.next_host += 1;
        ip
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FixedIp {
    pub subnet_id: String,
    pub ip_address: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Port {
    pub id: String,
    pub name: String,
    pub network_id: String,
    pub device_id: String,
    pub device_owner: String,
    /// ACTIVE, DOWN or BUILD.
    pub status: String,
    pub mac_address: String,
    pub fixed_ips: Vec<FixedIp>,
    /// Created by Nova for a server (deleted with it).
    pub nova_created: bool,
    pub created: u64,
    pub updated: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FloatingIp {
    pub id: String,
    pub floating_ip_address: String,
    pub floating_network_id: String,
    pub port_id: Option<String>,
    pub fixed_ip_address: Option<String>,
    pub description: String,
    pub created: u64,
    pub updated: u64,
}

/// `ip` as written on a subnet of `ip_version` (IPv4-mapped for 6).
fn mapped(ip_version: u8, ip: Ipv4Addr) -> String {
    if ip_version == 6 {
        format!("::ffff:{ip}")
    } else {
        ip.to_string()
    }
}

/// A failure of a domain operation, mapped to each service's error format by the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainError {
    BadRequest(String),
    NotFound(String),
    Forbidden(String),
    Conflict(String),
}

/// What a server-create request asks for (already parsed from JSON).
#[derive(Debug, Default, Clone)]
pub struct ServerSpec {
    pub name: String,
    pub flavor_ref: String,
    pub image_ref: Option<String>,
    pub key_name: Option<String>,
    /// `None` = Nova's default (`auto`): one port on the first non-external network.
    pub networks: Option<Vec<NetworkRequest>>,
    pub metadata: BTreeMap<String, String>,
    pub availability_zone: Option<String>,
    pub user_data: Option<String>,
    pub config_drive: bool,
    pub block_device_mapping_v2: Vec<Value>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub security_groups: Vec<String>,
    pub access_ipv4: String,
    pub access_ipv6: String,
}

#[derive(Debug, Clone)]
pub enum NetworkRequest {
    Network {
        uuid: String,
        fixed_ip: Option<String>,
    },
    Port(String),
}

/// Resource usage as Nova counts it for quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub instances: i64,
    pub cores: i64,
    pub ram: i64,
}

/// The `public` (external, floating IPs) network: loopback, so anything that connects to a
/// simulated server's address (the launcher's SSH host-key scan) never leaves the host
/// (on Linux all of 127.0.0.0/8 is local).
pub const PUBLIC_NET: Ipv4Addr = Ipv4Addr::new(127, 24, 0, 0);
/// The `private` (fixed IPs) network, loopback as well.
pub const PRIVATE_NET: Ipv4Addr = Ipv4Addr::new(127, 10, 0, 0);
/// The `provider` network: a shared flat provider network whose addresses are reachable
/// directly (openstacksdk counts it as external), where servers without networks go.
pub const PROVIDER_NET: Ipv4Addr = Ipv4Addr::new(127, 30, 0, 0);
/// The name of [`PROVIDER_NET`]'s network.
pub const PROVIDER_NETWORK: &str = "provider";

/// The whole simulated cloud.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct World {
    pub servers: Vec<Server>,
    pub flavors: Vec<Flavor>,
    pub keypairs: Vec<Keypair>,
    pub images: Vec<Image>,
    pub networks: Vec<Network>,
    pub subnets: Vec<Subnet>,
    pub ports: Vec<Port>,
    pub floating_ips: Vec<FloatingIp>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    pub availability_zones: Vec<String>,
    /// Stable `hostId` of the (single) simulated compute host.
    pub host_id: String,
    /// Bumped whenever the set of addresses of `ACTIVE` servers may have changed (a boot
    /// finished, a server, port or floating IP came or went): the fake sshds follow it.
    #[serde(skip)]
    pub net_epoch: u64,
}

impl World {
    /// A fresh cloud: flavors, AZs, cloud images, a `public` external network (floating
    /// IPs), a `private` tenant network and a shared `provider` network (dual-stack with
    /// [`SimConfig::ipv6`]).
    pub fn new(config: &SimConfig) -> World {
        let now = now_secs();
        let mut w = World {
            flavors: config.flavors.clone(),
            availability_zones: if config.availability_zones.is_empty() {
                vec!["nova".into()]
            } else {
                config.availability_zones.clone()
            },
            host_id: host_id(&config.credentials.project_id),
            ..World::default()
        };
        for name in &config.images {
            w.images.push(Image {
                id: new_id(),
                name: Some(name.clone()),
                status: "active".into(),
                disk_format: Some("qcow2".into()),
                container_format: Some("bare".into()),
                visibility: "public".into(),
                protected: false,
                os_hidden: false,
                min_disk: 0,
                min_ram: 0,
                size: Some(21_430_272),
                checksum: None,
                os_hash_value: None,
                tags: vec![],
                properties: Map::new(),
                created: now,
                updated: now,
                stored_path: None,
            });
        }
        for (name, external, net, physnet) in [
            ("public", true, PUBLIC_NET, Some("public")),
            ("private", false, PRIVATE_NET, None),
            (PROVIDER_NETWORK, false, PROVIDER_NET, Some("physnet1")),
        ] {
            let net_id = new_id();
            let mut versions = vec![4];
            if config.ipv6 && name == PROVIDER_NETWORK {
                versions.push(6);
            }
            let mut subnet_ids = Vec::new();
            for ip_version in versions {
                let subnet_id = new_id();
                w.subnets.push(Subnet {
                    id: subnet_id.clone(),
                    name: if ip_version == 6 {
                        format!("{name}-v6-subnet")
                    } else {
                        format!("{name}-subnet")
                    },
                    network_id: net_id.clone(),
                    network: net,
                    prefix: 16,
                    next_host: 2,
                    created: now,
                    ip_version,
                });
                subnet_ids.push(subnet_id);
            }
            w.networks.push(Network {
                id: net_id,
                name: name.into(),
                external,
                shared: physnet.is_some(),
                subnet_ids,
                mtu: 1500,
                created: now,
                physical_network: physnet.map(str::to_string),
            });
        }
        w
    }

    /// Where Nova puts a server created without networks: the shared provider network,
    /// else the first one that is not external.
    pub fn default_network(&self) -> Option<&Network> {
        self.networks
            .iter()
            .find(|n| n.shared && !n.external)
            .or_else(|| self.networks.iter().find(|n| !n.external))
    }

    /// Makes a snapshot loaded from disk runnable again (instants are not persisted).
    pub fn after_load(&mut self, now: Instant) {
        self.net_epoch += 1;
        for s in &mut self.servers {
            if s.status == ServerStatus::Build && s.boot != BootPlan::Hang {
                s.ready_at = Some(now);
            }
            if s.task_state.as_deref() == Some("deleting") {
                s.delete_at = Some(now);
            }
        }
    }

    /// Applies time-driven transitions: finished boots and finished delayed deletes.
    pub fn tick(&mut self, now: Instant) {
        let secs = now_secs();
        let mut booted = Vec::new();
        for s in &mut self.servers {
            if s.status == ServerStatus::Build && s.ready_at.is_some_and(|t| t <= now) {
                s.ready_at = None;
                s.updated = secs;
                s.task_state = None;
                match &s.boot {
                    BootPlan::Active => {
                        s.status = ServerStatus::Active;
                        s.launched_at = Some(secs);
                        booted.push(s.id.clone());
                    }
                    BootPlan::Error { message } => {
                        s.status = ServerStatus::Error;
                        s.fault = Some(Fault {
                            code: 500,
                            message: message.clone(),
                            details: String::new(),
                            created: secs,
                        });
                    }
                    BootPlan::Hang => {}
                }
            }
        }
        if !booted.is_empty() {
            self.net_epoch += 1;
            for p in &mut self.ports {
                if p.nova_created && booted.contains(&p.device_id) {
                    p.status = "ACTIVE".into();
                    p.updated = secs;
                }
            }
        }
        let gone: Vec<String> = self
            .servers
            .iter()
            .filter(|s| s.delete_at.is_some_and(|t| t <= now))
            .map(|s| s.id.clone())
            .collect();
        for id in gone {
            self.remove_server(&id);
        }
    }

    /// Where the fake sshds listen: every address (fixed and floating IPv4) of every
    /// `ACTIVE` server, with the server's id.
    pub fn ssh_endpoints(&self) -> Vec<(Ipv4Addr, String)> {
        let mut out = Vec::new();
        for s in self
            .servers
            .iter()
            .filter(|s| s.status == ServerStatus::Active)
        {
            for port_id in &s.port_ids {
                if let Some(p) = self.port(port_id) {
                    for f in &p.fixed_ips {
                        if let Ok(ip) = f.ip_address.parse() {
                            out.push((ip, s.id.clone()));
                        }
                    }
                }
                for f in self.floating_ips.iter() {
                    if f.port_id.as_deref() == Some(port_id.as_str()) {
                        if let Ok(ip) = f.floating_ip_address.parse() {
                            out.push((ip, s.id.clone()));
                        }
                    }
                }
            }
        }
        out
    }

    pub fn server(&self, id: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.id == id)
    }

    pub fn flavor(&self, id_or_name: &str) -> Option<&Flavor> {
        self.flavors
            .iter()
            .find(|f| f.id == id_or_name)
            .or_else(|| self.flavors.iter().find(|f| f.name == id_or_name))
    }

    pub fn image(&self, id: &str) -> Option<&Image> {
        self.images.iter().find(|i| i.id == id)
    }

    pub fn network(&self, id: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.id == id)
    }

    pub fn port(&self, id: &str) -> Option<&Port> {
        self.ports.iter().find(|p| p.id == id)
    }

    pub fn external_network(&self) -> Option<&Network> {
        self.networks.iter().find(|n| n.external)
    }

    /// Quota usage of all servers present (any status, as Nova counts it).
    pub fn usage(&self) -> Usage {
        let mut u = Usage::default();
        for s in &self.servers {
            u.instances += 1;
            u.cores += s.flavor.vcpus as i64;
            u.ram += s.flavor.ram as i64;
        }
        u
    }

    /// Cinder usage: number of volumes and their total size in GB.
    pub fn volume_usage(&self) -> (i64, i64) {
        let gb: u64 = self.volumes.iter().map(|v| v.size).sum();
        (self.volumes.len() as i64, gb as i64)
    }

    /// Creates a server (status BUILD) with its ports; enforces quota and validates references.
    pub fn create_server(
        &mut self,
        spec: ServerSpec,
        knobs: &mut Knobs,
        now: Instant,
    ) -> Result<String, DomainError> {
        let flavor_id = spec.flavor_ref.rsplit('/').next().unwrap_or_default();
        let flavor = self
            .flavors
            .iter()
            .find(|f| f.id == flavor_id)
            .cloned()
            .ok_or_else(|| {
                DomainError::BadRequest(format!("Flavor {flavor_id} could not be found."))
            })?;
        let boot_from_volume = spec.block_device_mapping_v2.iter().any(|b| {
            b.get("destination_type").and_then(Value::as_str) == Some("volume")
                && b.get("boot_index")
                    .map(|v| v.as_i64() == Some(0) || v.as_str() == Some("0"))
                    .unwrap_or(false)
        });
        let image_id = self.server_image(&spec, boot_from_volume)?;
        if let Some(k) = &spec.key_name {
            if !self.keypairs.iter().any(|kp| &kp.name == k) {
                return Err(DomainError::BadRequest("Invalid key_name provided.".into()));
            }
        }
        let az = self.server_az(&spec)?;
        // Validate networks before allocating anything.
        let requests = self.network_requests(&spec)?;
        check_quota(self.usage(), &flavor, knobs)?;

        let secs = now_secs();
        let id = new_id();
        let boot = next_boot_plan(knobs);
        let mut port_ids = Vec::new();
        for r in requests {
            match r {
                NetworkRequest::Network { uuid, fixed_ip } => {
                    let pid = self.create_port_on(&uuid, fixed_ip, true)?;
                    port_ids.push(pid);
                }
                NetworkRequest::Port(pid) => port_ids.push(pid),
            }
        }
        for p in &mut self.ports {
            if port_ids.contains(&p.id) {
                p.device_id = id.clone();
                p.device_owner = format!("compute:{az}");
                p.status = "DOWN".into();
                p.updated = secs;
            }
        }
        let mut boot = boot;
        let mut volumes = Vec::new();
        if boot_from_volume {
            match self.create_boot_volume(&id, &spec.block_device_mapping_v2, &flavor, knobs) {
                Ok(vid) => volumes.push(vid),
                // Cinder refuses: the build is aborted and the server goes to ERROR.
                Err(message) => boot = BootPlan::Error { message },
            }
        }
        self.servers.push(Server {
            id: id.clone(),
            name: spec.name,
            status: ServerStatus::Build,
            task_state: Some("spawning".into()),
            flavor,
            image_id,
            key_name: spec.key_name,
            metadata: spec.metadata,
            availability_zone: az,
            user_data: spec.user_data,
            config_drive: spec.config_drive,
            block_device_mapping_v2: spec.block_device_mapping_v2,
            volumes,
            port_ids,
            host_id: self.host_id.clone(),
            fault: None,
            created: secs,
            updated: secs,
            launched_at: None,
            access_ipv4: spec.access_ipv4,
            access_ipv6: spec.access_ipv6,
            description: spec.description,
            tags: spec.tags,
            security_groups: if spec.security_groups.is_empty() {
                vec!["default".into()]
            } else {
                spec.security_groups
            },
            ready_at: match boot {
                BootPlan::Hang => None,
                _ => Some(now + Duration::from_millis(knobs.boot_delay_ms)),
            },
            boot,
            delete_at: None,
        });
        Ok(id)
    }

    /// The image a server boots from (`None` when it boots from a volume), checked.
    fn server_image(
        &self,
        spec: &ServerSpec,
        boot_from_volume: bool,
    ) -> Result<Option<String>, DomainError> {
        let mut image_id = None;
        match spec.image_ref.as_deref().filter(|s| !s.is_empty()) {
            Some(r) => {
                let id = r.rsplit('/').next().unwrap_or_default();
                let img = self.image(id).ok_or_else(|| {
                    DomainError::BadRequest(format!("Image {id} could not be found."))
                })?;
                if img.status != "active" {
                    return Err(DomainError::BadRequest(format!(
                        "Image {id} is not active."
                    )));
                }
                if !boot_from_volume {
                    image_id = Some(id.to_string());
                }
            }
            None => {
                // Boot from volume: the image comes from the block device mapping.
                let src = spec.block_device_mapping_v2.iter().find_map(|b| {
                    (b.get("source_type").and_then(Value::as_str) == Some("image"))
                        .then(|| b.get("uuid").and_then(Value::as_str))
                        .flatten()
                });
                match (boot_from_volume, src) {
                    (true, Some(id)) => {
                        if self.image(id).is_none() {
                            return Err(DomainError::BadRequest(format!(
                                "Image {id} could not be found."
                            )));
                        }
                    }
                    (true, None) => {}
                    (false, _) => {
                        return Err(DomainError::BadRequest("Missing imageRef attribute".into()))
                    }
                }
            }
        }
        Ok(image_id)
    }

    /// The zone a server goes to: the one asked for (Nova's 400 when the cloud has no
    /// such zone), else the first.
    fn server_az(&self, spec: &ServerSpec) -> Result<String, DomainError> {
        Ok(match &spec.availability_zone {
            Some(az) if !az.is_empty() => {
                if !self.availability_zones.contains(az) {
                    return Err(DomainError::BadRequest(
                        "The requested availability zone is not available".into(),
                    ));
                }
                az.clone()
            }
            _ => self.availability_zones[0].clone(),
        })
    }

    /// The networks and ports a server asks for (Nova's default network when none),
    /// each checked to exist (and ports to be free).
    fn network_requests(&self, spec: &ServerSpec) -> Result<Vec<NetworkRequest>, DomainError> {
        // Validate networks before allocating anything.
        let requests = match &spec.networks {
            Some(n) => n.clone(),
            None => match self.default_network() {
                Some(n) => vec![NetworkRequest::Network {
                    uuid: n.id.clone(),
                    fixed_ip: None,
                }],
                None => vec![],
            },
        };
        for r in &requests {
            match r {
                NetworkRequest::Network { uuid, .. } => {
                    if self.network(uuid).is_none() {
                        return Err(DomainError::BadRequest(format!(
                            "Network {uuid} could not be found."
                        )));
                    }
                }
                NetworkRequest::Port(id) => match self.port(id) {
                    None => {
                        return Err(DomainError::BadRequest(format!(
                            "Port id {id} could not be found."
                        )))
                    }
                    Some(p) if !p.device_id.is_empty() => {
                        return Err(DomainError::Conflict(format!("Port {id} is still in use.")))
                    }
                    Some(_) => {}
                },
            }
        }
        Ok(requests)
    }

    /// Creates the boot volume of a boot-from-volume server, or returns the fault message
    /// when Cinder's quota refuses it.
    fn create_boot_volume(
        &mut self,
        server_id: &str,
        bdm: &[Value],
        flavor: &Flavor,
        knobs: &Knobs,
    ) -> Result<String, String> {
        let root = bdm
            .iter()
            .find(|b| b.get("destination_type").and_then(Value::as_str) == Some("volume"));
        let size = root
            .and_then(|b| b.get("volume_size"))
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(flavor.disk);
        let delete_on_termination = root
            .and_then(|b| b.get("delete_on_termination"))
            .map(|v| {
                v.as_bool()
                    .unwrap_or_else(|| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true")))
            })
            .unwrap_or(false);
        let image_id = root
            .and_then(|b| b.get("uuid"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let (count, gb) = self.volume_usage();
        let q = knobs.quota;
        if q.volumes >= 0 && count + 1 > q.volumes {
            return Err(format!(
                "Build of instance {server_id} aborted: VolumeLimitExceeded: Maximum number of volumes allowed ({}) exceeded for quota 'volumes'.",
                q.volumes
            ));
        }
        if q.gigabytes >= 0 && gb + size as i64 > q.gigabytes {
            return Err(format!(
                "Build of instance {server_id} aborted: VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes quota. Requested {size}G, quota is {}G and {gb}G has been consumed.",
                q.gigabytes
            ));
        }
        let id = new_id();
        self.volumes.push(Volume {
            id: id.clone(),
            name: String::new(),
            size,
            status: "in-use".into(),
            server_id: Some(server_id.to_string()),
            image_id,
            delete_on_termination,
            created: now_secs(),
        });
        Ok(id)
    }

    /// Creates an unbound port with one fixed IP on a network.
    pub fn create_port_on(
        &mut self,
        network_id: &str,
        fixed_ip: Option<String>,
        nova_created: bool,
    ) -> Result<String, DomainError> {
        self.net_epoch += 1;
        let net = self.network(network_id).ok_or_else(|| {
            DomainError::NotFound(format!("Network {network_id} could not be found."))
        })?;
        let subnet_ids = net.subnet_ids.clone();
        let mut fixed_ips = Vec::new();
        let mut v4: Option<String> = fixed_ip;
        for sid in subnet_ids {
            let subnet = self
                .subnets
                .iter_mut()
                .find(|s| s.id == sid)
                .ok_or_else(|| {
                    DomainError::NotFound(format!("Subnet {sid} could not be found."))
                })?;
            let ip = if subnet.ip_version == 6 {
                // The IPv4-mapped twin of the port's IPv4 address.
                match &v4 {
                    Some(a) => format!("::ffff:{a}"),
                    None => continue,
                }
            } else {
                let a = v4.take().unwrap_or_else(|| subnet.allocate().to_string());
                v4 = Some(a.clone());
                a
            };
            fixed_ips.push(FixedIp {
                subnet_id: sid,
                ip_address: ip,
            });
        }
        let secs = now_secs();
        let id = new_id();
        self.ports.push(Port {
            id: id.clone(),
            name: String::new(),
            network_id: network_id.to_string(),
            device_id: String::new(),
            device_owner: String::new(),
            status: "DOWN".into(),
            mac_address: new_mac(),
            fixed_ips,
            nova_created,
            created: secs,
            updated: secs,
        });
        Ok(id)
    }

    /// Starts deleting a server: immediately, or after `delete_delay_ms`.
    pub fn delete_server(
        &mut self,
        id: &str,
        knobs: &Knobs,
        now: Instant,
    ) -> Result<(), DomainError> {
        let s = self
            .servers
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| DomainError::NotFound(format!("Instance {id} could not be found.")))?;
        if knobs.delete_delay_ms == 0 {
            self.remove_server(id);
        } else if s.delete_at.is_none() {
            s.task_state = Some("deleting".into());
            s.updated = now_secs();
            s.delete_at = Some(now + Duration::from_millis(knobs.delete_delay_ms));
        }
        Ok(())
    }

    /// Removes a server for good: Nova-created ports go, other ports are unbound;
    /// floating IPs on removed ports are disassociated.
    pub fn remove_server(&mut self, id: &str) {
        self.net_epoch += 1;
        let Some(pos) = self.servers.iter().position(|s| s.id == id) else {
            return;
        };
        let server = self.servers.remove(pos);
        let secs = now_secs();
        self.volumes.retain_mut(|v| {
            if v.server_id.as_deref() != Some(id) {
                return true;
            }
            v.server_id = None;
            v.status = "available".into();
            !v.delete_on_termination
        });
        let mut removed = Vec::new();
        self.ports.retain_mut(|p| {
            if !server.port_ids.contains(&p.id) {
                return true;
            }
            if p.nova_created {
                removed.push(p.id.clone());
                false
            } else {
                p.device_id.clear();
                p.device_owner.clear();
                p.status = "DOWN".into();
                p.updated = secs;
                true
            }
        });
        for f in &mut self.floating_ips {
            if f.port_id.as_ref().is_some_and(|p| removed.contains(p)) {
                f.port_id = None;
                f.fixed_ip_address = None;
                f.updated = secs;
            }
        }
    }

    /// Deletes a port (disassociating floating IPs on it and detaching it from its server).
    pub fn delete_port(&mut self, id: &str) -> Result<(), DomainError> {
        self.net_epoch += 1;
        let pos = self
            .ports
            .iter()
            .position(|p| p.id == id)
            .ok_or_else(|| DomainError::NotFound(format!("Port {id} could not be found.")))?;
        self.ports.remove(pos);
        let secs = now_secs();
        for f in &mut self.floating_ips {
            if f.port_id.as_deref() == Some(id) {
                f.port_id = None;
                f.fixed_ip_address = None;
                f.updated = secs;
            }
        }
        for s in &mut self.servers {
            s.port_ids.retain(|p| p != id);
        }
        Ok(())
    }

    /// Allocates a floating IP on an external network, optionally associated with a port.
    pub fn create_floating_ip(
        &mut self,
        network_id: &str,
        port_id: Option<String>,
        fixed_ip: Option<String>,
        description: String,
    ) -> Result<String, DomainError> {
        self.net_epoch += 1;
        let net = self.network(network_id).ok_or_else(|| {
            DomainError::NotFound(format!("Network {network_id} could not be found."))
        })?;
        if !net.external {
            return Err(DomainError::BadRequest(format!(
                "Bad floatingip request: Network {network_id} is not a valid external network."
            )));
        }
        let sid = net.subnet_ids.first().cloned().unwrap_or_default();
        let address = self
            .subnets
            .iter_mut()
            .find(|s| s.id == sid)
            .map(|s| s.allocate().to_string())
            .ok_or_else(|| {
                DomainError::Conflict(format!(
                    "No more IP addresses available on network {network_id}."
                ))
            })?;
        let fixed = match &port_id {
            Some(p) => Some(self.fixed_ip_for(p, fixed_ip)?),
            None => None,
        };
        let secs = now_secs();
        let id = new_id();
        self.floating_ips.push(FloatingIp {
            id: id.clone(),
            floating_ip_address: address,
            floating_network_id: network_id.to_string(),
            port_id,
            fixed_ip_address: fixed,
            description,
            created: secs,
            updated: secs,
        });
        Ok(id)
    }

    /// Associates (`Some(port)`) or disassociates (`None`) a floating IP.
    pub fn update_floating_ip(
        &mut self,
        id: &str,
        port_id: Option<String>,
        fixed_ip: Option<String>,
    ) -> Result<(), DomainError> {
        self.net_epoch += 1;
        if !self.floating_ips.iter().any(|f| f.id == id) {
            return Err(DomainError::NotFound(format!(
                "Floating IP {id} could not be found"
            )));
        }
        let fixed = match &port_id {
            Some(p) => Some(self.fixed_ip_for(p, fixed_ip)?),
            None => None,
        };
        let f = self
            .floating_ips
            .iter_mut()
            .find(|f| f.id == id)
            .expect("checked above");
        f.port_id = port_id;
        f.fixed_ip_address = fixed;
        f.updated = now_secs();
        Ok(())
    }

    fn fixed_ip_for(&self, port_id: &str, wanted: Option<String>) -> Result<String, DomainError> {
        let port = self
            .port(port_id)
            .ok_or_else(|| DomainError::NotFound(format!("Port {port_id} could not be found.")))?;
        if let Some(f) = self
            .floating_ips
            .iter()
            .find(|f| f.port_id.as_deref() == Some(port_id))
        {
            return Err(DomainError::Conflict(format!(
                "Cannot associate floating IP {} with port {port_id}: it already has floating IP {}.",
                f.floating_ip_address, f.id
            )));
        }
        match wanted {
            Some(ip) if port.fixed_ips.iter().any(|f| f.ip_address == ip) => Ok(ip),
            Some(ip) => Err(DomainError::BadRequest(format!(
                "Port {port_id} does not have fixed ip {ip}"
            ))),
            None => port
                .fixed_ips
                .first()
                .map(|f| f.ip_address.clone())
                .ok_or_else(|| {
                    DomainError::BadRequest(format!("Port {port_id} has no fixed IP address"))
                }),
        }
    }

    pub fn delete_floating_ip(&mut self, id: &str) -> Result<(), DomainError> {
        self.net_epoch += 1;
        let before = self.floating_ips.len();
        self.floating_ips.retain(|f| f.id != id);
        if self.floating_ips.len() == before {
            return Err(DomainError::NotFound(format!(
                "Floating IP {id} could not be found"
            )));
        }
        Ok(())
    }

    /// A floating IP is ACTIVE when associated with a port whose server is up.
    pub fn floating_ip_status(&self, f: &FloatingIp) -> &'static str {
        if f.port_id.is_some() {
            "ACTIVE"
        } else {
            "DOWN"
        }
    }
}

/// What happens to the next server when it has booted, per the knobs (which count
/// down).
fn next_boot_plan(knobs: &mut Knobs) -> BootPlan {
    if knobs.fail_next_boots > 0 {
        knobs.fail_next_boots -= 1;
        BootPlan::Error {
            message: knobs.boot_fault_message.clone(),
        }
    } else if knobs.hang_all_boots {
        BootPlan::Hang
    } else if knobs.hang_next_boots > 0 {
        knobs.hang_next_boots -= 1;
        BootPlan::Hang
    } else {
        BootPlan::Active
    }
}

/// One over-quota resource: name, requested, used, limit.
type Over<'a> = (&'a str, i64, i64, i64);

/// Nova's quota check: every resource that would go over is named, with Nova's exact message.
pub fn check_quota(used: Usage, flavor: &Flavor, knobs: &Knobs) -> Result<(), DomainError> {
    let q = knobs.quota;
    let mut overs: Vec<Over> = Vec::new();
    for (name, req, used, limit) in [
        ("cores", flavor.vcpus as i64, used.cores, q.cores),
        ("instances", 1, used.instances, q.instances),
        ("ram", flavor.ram as i64, used.ram, q.ram),
    ] {
        if limit >= 0 && used + req > limit {
            overs.push((name, req, used, limit));
        }
    }
    if overs.is_empty() {
        return Ok(());
    }
    let join = |f: fn(&Over) -> String| overs.iter().map(f).collect::<Vec<_>>().join(", ");
    let names = join(|o| o.0.to_string());
    Err(DomainError::Forbidden(format!(
        "Quota exceeded for {names}: Requested {}, but already used {} of {} {names}",
        join(|o| o.1.to_string()),
        join(|o| o.2.to_string()),
        join(|o| o.3.to_string()),
    )))
}

/// Nova's `hostId`: a hash of the project and the compute host name.
fn host_id(project_id: &str) -> String {
    use sha2::{Digest, Sha224};
    let mut h = Sha224::new();
    h.update(project_id.as_bytes());
    h.update(b"sim-compute-1");
    super::util::hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_message_matches_nova() {
        let knobs = Knobs::default();
        let small = super::super::config::default_flavors()[0].clone();
        let used = Usage {
            instances: 10,
            cores: 10,
            ram: 1000,
        };
        let err = check_quota(used, &small, &knobs).unwrap_err();
        assert_eq!(
            err,
            DomainError::Forbidden(
                "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"
                    .into()
            )
        );
        let used = Usage {
            instances: 10,
            cores: 20,
            ram: 1000,
        };
        let DomainError::Forbidden(m) = check_quota(used, &small, &knobs).unwrap_err() else {
            panic!()
        };
        assert_eq!(
            m,
            "Quota exceeded for cores, instances: Requested 2, 1, but already used 20, 10 of 20, 10 cores, instances"
        );
    }

    #[test]
    fn subnet_allocation_wraps() {
        let mut s = Subnet {
            id: "s".into(),
            name: "s".into(),
            network_id: "n".into(),
            network: Ipv4Addr::new(127, 10, 0, 0),
            prefix: 30,
            next_host: 2,
            created: 0,
            ip_version: 4,
        };
        assert_eq!(s.allocate(), Ipv4Addr::new(127, 10, 0, 2));
        assert_eq!(s.allocate(), Ipv4Addr::new(127, 10, 0, 2));
        assert_eq!(s.gateway(), Ipv4Addr::new(127, 10, 0, 1));
        s.ip_version = 6;
        assert_eq!(s.cidr(), "::ffff:127.10.0.0/126");
        assert_eq!(s.gateway_ip(), "::ffff:127.10.0.1");
    }
}
