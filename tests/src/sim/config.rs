//! Simulator configuration (fixed at start) and knobs (changeable at run time via `/admin/knobs`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::state::Flavor;

/// Everything fixed when the simulator starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// TCP port on 127.0.0.1; 0 picks a free port.
    pub port: u16,
    /// Region name used in the service catalog.
    pub region: String,
    /// Accepted credentials.
    pub credentials: Credentials,
    /// Initial knob values.
    pub knobs: Knobs,
    /// Availability zones offered by Nova (the first one is the default); changeable at
    /// run time with `PUT /admin/availability-zones`.
    pub availability_zones: Vec<String>,
    /// Give the shared `provider` network an IPv6 subnet too (IPv4-mapped addresses,
    /// `::ffff:127.30.x.y`, so they stay on the loopback interface): its servers get a
    /// public IPv6 address as well.
    pub ipv6: bool,
    /// Flavors offered by Nova.
    pub flavors: Vec<Flavor>,
    /// Names of public, active Glance images present at start (cloud images).
    pub images: Vec<String>,
    /// Keystone token lifetime.
    pub token_ttl_secs: u64,
    /// JSON snapshot loaded at start (if it exists) and written at shutdown.
    pub state_file: Option<PathBuf>,
    /// Directory where uploaded image data is written; `None` only counts and hashes it.
    pub image_store_dir: Option<PathBuf>,
    /// Compute Glance's `checksum` (MD5) and `os_hash_value` (SHA-512) of uploads; turn off
    /// to make large uploads cheap in benchmarks (the fields then stay null).
    pub hash_uploads: bool,
    /// Port of the fake sshds on the servers' (loopback) addresses; default 22 (needs
    /// root). 0 = a free port the simulator reserves at start ([`super::SimHandle::ssh_port`]):
    /// what tests use, with `connection-port` set to it.
    pub ssh_port: u16,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            port: 0,
            region: "RegionOne".into(),
            credentials: Credentials::default(),
            knobs: Knobs::default(),
            availability_zones: vec!["nova".into()],
            ipv6: false,
            flavors: default_flavors(),
            images: vec!["cirros-0.6.2".into()],
            token_ttl_secs: 3600,
            state_file: None,
            image_store_dir: None,
            hash_uploads: true,
            ssh_port: 22,
        }
    }
}

/// Default Nova flavors: small 2048 MB/2 vCPUs, medium 8192/4, large 16384/8.
pub fn default_flavors() -> Vec<Flavor> {
    [
        ("1", "small", 2048, 2, 20),
        ("2", "medium", 8192, 4, 40),
        ("3", "large", 16384, 8, 80),
    ]
    .into_iter()
    .map(|(id, name, ram, vcpus, disk)| Flavor {
        id: id.into(),
        name: name.into(),
        ram,
        vcpus,
        disk,
        ephemeral: 0,
        swap: 0,
        is_public: true,
        extra_specs: BTreeMap::new(),
    })
    .collect()
}

/// Credentials the simulated Keystone accepts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub user_id: String,
    pub project_name: String,
    pub project_id: String,
    /// Name of the user and project domain (`Default`); its id is `default`.
    pub domain_name: String,
    pub app_credential_id: String,
    pub app_credential_name: String,
    pub app_credential_secret: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            username: "nodepool".into(),
            password: "secret".into(),
            user_id: "5b6f4e6d1c2a4f7e9d3b8a0c1e2f3a4b".into(),
            project_name: "nodepool".into(),
            project_id: "0d2b8e1f6a9c4b3d8e7f1a2b3c4d5e6f".into(),
            domain_name: "Default".into(),
            app_credential_id: "nodepool-appcred".into(),
            app_credential_name: "nodepool".into(),
            app_credential_secret: "appcred-secret".into(),
        }
    }
}

/// Nova and Cinder quota (`-1` = unlimited).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Quota {
    pub instances: i64,
    pub cores: i64,
    /// MiB.
    pub ram: i64,
    /// Number of Cinder volumes (boot-from-volume).
    pub volumes: i64,
    /// Total Cinder volume size in GB.
    pub gigabytes: i64,
}

impl Quota {
    /// No limits at all.
    pub const UNLIMITED: Quota = Quota {
        instances: -1,
        cores: -1,
        ram: -1,
        volumes: -1,
        gigabytes: -1,
    };
}

impl Default for Quota {
    /// Nova's and Cinder's default quota.
    fn default() -> Self {
        Quota {
            instances: 10,
            cores: 20,
            ram: 51200,
            volumes: 10,
            gigabytes: 1000,
        }
    }
}

/// Deterministic failure of the next `count` calls of one operation.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailNext {
    pub count: u32,
    /// HTTP status to return (500 or 503 are typical).
    pub status: u16,
}

/// Run-time behaviour switches. `PATCH /admin/knobs` merges a partial JSON object into these.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Knobs {
    /// Time a new server spends in BUILD before it becomes ACTIVE (or ERROR).
    pub boot_delay_ms: u64,
    /// Time a deleted server keeps showing (task_state `deleting`) before it is gone.
    pub delete_delay_ms: u64,
    /// Added to every API call (admin API excepted).
    pub api_latency_ms: u64,
    /// Added to the calls of one operation, on top of `api_latency_ms` (one slow call, e.g.
    /// `compute.availability_zones`, without slowing the others).
    pub api_latency_ms_for: BTreeMap<String, u64>,
    /// Time an image upload (`PUT /v2/images/{id}/file`) spends with the image in
    /// `saving` before the data is read: a slow transfer to kill a builder in.
    pub image_upload_delay_ms: u64,
    /// Probability (0.0–1.0) that a call of an operation fails; key `*` applies to all operations.
    pub error_rates: BTreeMap<String, f64>,
    /// HTTP status used for random failures from `error_rates`.
    pub error_status: u16,
    /// Fail the next N calls of an operation (deterministic).
    pub fail_next: BTreeMap<String, FailNext>,
    /// Nova quota enforced on server create and reported by `/limits`.
    pub quota: Quota,
    /// The next N servers created go to ERROR (with a `fault`) after the boot delay.
    pub fail_next_boots: u32,
    /// Fault message for servers that go to ERROR.
    pub boot_fault_message: String,
    /// The next N servers created stay in BUILD forever.
    pub hang_next_boots: u32,
    /// Every server created stays in BUILD forever.
    pub hang_all_boots: bool,
    /// Reply `200 OK` with a body that is not JSON to the next N calls of an operation.
    pub garbage_next: BTreeMap<String, u32>,
    /// A server's fake sshd opens its port only this long after the server became
    /// reachable (applies to servers that become `ACTIVE` afterwards).
    pub ssh_delay_ms: u64,
    /// Fake sshds never answer: their ports stay closed (for keyscan timeouts).
    pub ssh_never: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            boot_delay_ms: 0,
            delete_delay_ms: 0,
            api_latency_ms: 0,
            api_latency_ms_for: BTreeMap::new(),
            image_upload_delay_ms: 0,
            error_rates: BTreeMap::new(),
            error_status: 500,
            fail_next: BTreeMap::new(),
            quota: Quota::default(),
            fail_next_boots: 0,
            boot_fault_message: "No valid host was found. There are not enough hosts available."
                .into(),
            hang_next_boots: 0,
            hang_all_boots: false,
            garbage_next: BTreeMap::new(),
            ssh_delay_ms: 0,
            ssh_never: false,
        }
    }
}
