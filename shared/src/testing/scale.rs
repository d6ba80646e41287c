//! Realistic node records for scale benchmarks and tests: what a launcher writes for an
//! OpenStack server after a launch with host-key scanning (three host keys of real
//! length, `resources`, a 56-character `host_id`, a UUID server id), spread over many
//! providers and labels. The memory of the caches and listings is measured with these,
//! so they must look like production records, not like the short ones of unit tests.

use serde_json::{Map, Value};

use crate::model::{Node, NodeState, RequestId};

/// How a generated fleet is spread.
#[derive(Clone, Copy, Debug)]
pub struct FleetShape {
    /// Providers `provider-0` … (each with one pool `main`).
    pub providers: usize,
    /// Labels `label-0` … (a node has one).
    pub labels: usize,
}

impl Default for FleetShape {
    fn default() -> Self {
        FleetShape {
            providers: 20,
            labels: 40,
        }
    }
}

/// Base64-looking text of `len` characters, different for every `seed`.
fn base64ish(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 64) as usize] as char
        })
        .collect()
}

fn hex(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0xD6E8_FEB8_6659_FD93) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x % 16) as u32, 16).unwrap_or('0')
        })
        .collect()
}

/// The `i`-th node of a fleet: provider `i % providers`, label `i % labels`, a state
/// mix of mostly `in-use` and `ready` with some `used` and `building` (a busy day), an
/// allocation and a tenant for the nodes in use. Its `id` is left empty (the store
/// gives it one).
pub fn realistic_node(i: usize, shape: FleetShape, now: f64) -> Node {
    let seed = i as u64;
    let provider = i % shape.providers.max(1);
    let state = match i % 10 {
        0..=5 => NodeState::InUse,
        6 | 7 => NodeState::Ready,
        8 => NodeState::Used,
        _ => NodeState::Building,
    };
    let mut n = Node::new();
    n.state = state;
    n.state_time = now - (i % 7200) as f64;
    n.created_time = Some(n.state_time - 60.0);
    n.cloud = Some(format!("cloud-{provider}"));
    n.provider = Some(format!("provider-{provider}"));
    n.pool = Some("main".into());
    n.node_type = vec![format!("label-{}", i % shape.labels.max(1))];
    if state == NodeState::InUse {
        n.allocated_to = Some(RequestId::from(format!("300-{:010}", i)));
        n.tenant_name = Some("tenant-one".into());
        n.requestor = Some("zuul-scheduler-1.example.org".into());
    }
    n.az = Some("nova".into());
    n.region = Some("RegionOne".into());
    let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    n.public_ipv4 = Some(ip.clone());
    n.private_ipv4 = Some(ip.clone());
    n.interface_ip = Some(ip);
    n.public_ipv6 = Some(format!("2001:db8:{:x}::{:x}", i >> 16, i & 0xffff));
    n.host_id = Some(hex(seed, 56));
    n.image_id = Some(format!("{}-image", n.node_type[0]));
    n.launcher = Some(format!(
        "nl0{}.example.org-PoolWorker.provider-{provider}-main-{}",
        provider % 3,
        hex(provider as u64, 32)
    ));
    n.external_id = Some(format!(
        "{}-{}-{}-{}-{}",
        hex(seed, 8),
        hex(seed + 1, 4),
        hex(seed + 2, 4),
        hex(seed + 3, 4),
        hex(seed + 4, 12)
    ));
    n.hostname = Some(format!("np{:010}", i));
    n.host_keys = vec![
        format!(
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQ{}",
            base64ish(seed, 516)
        ),
        format!(
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBB{}",
            base64ish(seed + 7, 87)
        ),
        format!(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{}",
            base64ish(seed + 11, 43)
        ),
    ];
    n.username = Some("zuul".into());
    n.connection_type = Some("ssh".into());
    n.python_path = Some("auto".into());
    let mut resources = Map::new();
    resources.insert("cores".into(), Value::from(8));
    resources.insert("instances".into(), Value::from(1));
    resources.insert("ram".into(), Value::from(8192));
    n.resources = Some(resources);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_look_like_production() {
        let n = realistic_node(12_345, FleetShape::default(), 1.7e9);
        let json = n.to_json();
        // A launched OpenStack node with three host keys is 1.9 – 2.1 kB of JSON.
        assert!((1800..2300).contains(&json.len()), "{}", json.len());
        assert_eq!(n.provider.as_deref(), Some("provider-5"));
        assert_eq!(n.host_keys.len(), 3);
        let again = realistic_node(12_345, FleetShape::default(), 1.7e9);
        assert_eq!(again.external_id, n.external_id);
        assert_ne!(
            realistic_node(12_346, FleetShape::default(), 1.7e9).external_id,
            n.external_id
        );
    }
}
