//! Reads a node record's JSON straight into a [`CompactNode`], in one pass: the texts
//! are borrowed from the record (copied only when they have escapes), the fleet's
//! shared texts are looked up in the interned profiles without being copied, and no
//! `serde_json::Value` is built except for the opaque keys (`user_data`, `attributes`,
//! `driver_data`, `node_properties`, `hold_expiration`, a `resources` of another shape
//! and unknown keys). A launcher decodes every node record of the system at start and
//! after a ZooKeeper restart (100,000 on a large deployment; docs/benchmarks.md), and
//! reading each into a [`Node`] first (a `Value` and a `String` per key) was most of it.
//!
//! [`parse`] accepts exactly the records that [`Node::from_json`] reads on its first
//! (streaming) pass, with the same values: each key gets the same type check and
//! default, the last of duplicate keys counts, unknown keys are kept in order. Whatever
//! it refuses, `None`, is read again by [`Node::from_json`], which then reads it (e.g.
//! an invalid value overridden by a later duplicate) or names the error; so the result
//! is the same either way (property tests `model::props::compact_records` and
//! `compact_record_texts`).
//!
//! [`Node`]: super::Node
//! [`Node::from_json`]: super::Node::from_json

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::compact::{Parts, ReadResources, Shared, Text as Own};
use super::node::coerce_hold_expiration;
use super::{CompactNode, NodeId, NodeState};
use crate::listing::node_json::{Port, StrListVisitor, Text};
use crate::model::quota::{CORES, INSTANCES, RAM};

/// Node `id`'s record `data` in compact form; `None` when it is left to
/// [`Node::from_json`](crate::model::Node::from_json) (invalid, or a value it would refuse). `data` is not empty.
pub(super) fn parse(id: &NodeId, data: &[u8]) -> Option<CompactNode> {
    let mut de = serde_json::Deserializer::from_slice(data);
    let parts = de.deserialize_map(RecordVisitor { id }).ok()?;
    de.end().ok()?;
    Some(CompactNode::from_parts(parts))
}

/// Why a record was not read here (never shown: [`Node::from_json`](crate::model::Node::from_json) reads it again).
struct Refused;

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("left to the full reader")
    }
}

/// Where a text key of the record goes.
enum TextKey {
    Shared(Shared),
    Own(Own),
}

fn text_key(key: &str) -> Option<TextKey> {
    use TextKey::{Own as O, Shared as S};
    Some(match key {
        "cloud" => S(Shared::Cloud),
        "provider" => S(Shared::Provider),
        "pool" => S(Shared::Pool),
        "az" => S(Shared::Az),
        "region" => S(Shared::Region),
        "image_id" => S(Shared::ImageId),
        "launcher" => S(Shared::Launcher),
        "username" => S(Shared::Username),
        "connection_type" => S(Shared::ConnectionType),
        "shell_type" => S(Shared::ShellType),
        "python_path" => S(Shared::PythonPath),
        "tenant_name" => S(Shared::TenantName),
        "requestor" => S(Shared::Requestor),
        "allocated_to" => O(Own::AllocatedTo),
        "public_ipv4" => O(Own::PublicIpv4),
        "private_ipv4" => O(Own::PrivateIpv4),
        "public_ipv6" => O(Own::PublicIpv6),
        "host_id" => O(Own::HostId),
        "interface_ip" => O(Own::InterfaceIp),
        "external_id" => O(Own::ExternalId),
        "hostname" => O(Own::Hostname),
        "comment" => O(Own::Comment),
        "hold_job" => O(Own::HoldJob),
        _ => return None,
    })
}

/// `slot`: an integer or null; an integral float below 9e15 is accepted (as
/// `Node::from_json` reads it).
struct Slot(Option<i64>);

impl<'de> Deserialize<'de> for Slot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Slot;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or null")
            }
            fn visit_unit<E>(self) -> Result<Slot, E> {
                Ok(Slot(None))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Slot, E> {
                Ok(Slot(Some(v)))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Slot, E> {
                match i64::try_from(v) {
                    Ok(v) => Ok(Slot(Some(v))),
                    Err(_) => self.visit_f64(v as f64),
                }
            }
            fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Slot, E> {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Ok(Slot(Some(f as i64)))
                } else {
                    Err(E::custom(Refused))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `resources`: null, or an object; `{"cores": c, "instances": i, "ram": r}` with
/// integers, in this order (what a launcher writes), is read without building a map.
struct Resources(ReadResources);

/// The standard keys, in their order.
const STANDARD: [&str; 3] = [CORES, INSTANCES, RAM];

impl<'de> Deserialize<'de> for Resources {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Resources;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object or null")
            }
            fn visit_unit<E>(self) -> Result<Resources, E> {
                Ok(Resources(ReadResources::None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Resources, A::Error> {
                let mut standard = [0i64; 3];
                let mut seen = 0;
                let mut other: Option<Map<String, Value>> = None;
                while let Some(Text(k)) = map.next_key::<Text<'de>>()? {
                    let v: Value = map.next_value()?;
                    if let Some(m) = other.as_mut() {
                        m.insert(k.into_owned(), v);
                        continue;
                    }
                    let int = match &v {
                        Value::Number(n) if n.is_i64() || n.is_u64() => n.as_i64(),
                        _ => None,
                    };
                    match int {
                        Some(i) if seen < 3 && k == STANDARD[seen] => {
                            standard[seen] = i;
                            seen += 1;
                        }
                        _ => {
                            let mut m = standard_map(&standard[..seen]);
                            m.insert(k.into_owned(), v);
                            other = Some(m);
                        }
                    }
                }
                Ok(Resources(match other {
                    None if seen == 3 => ReadResources::Standard(standard),
                    None => ReadResources::Map(standard_map(&standard[..seen])),
                    Some(m) => ReadResources::Map(m),
                }))
            }
        }
        d.deserialize_any(V)
    }
}

/// The first standard keys with these values, as a map.
fn standard_map(values: &[i64]) -> Map<String, Value> {
    STANDARD
        .iter()
        .zip(values)
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect()
}

struct RecordVisitor<'a> {
    id: &'a NodeId,
}

/// Reads one string-or-null key.
fn text<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Cow<'de, str>>, A::Error> {
    Ok(map.next_value::<Option<Text<'de>>>()?.map(|t| t.0))
}

impl<'de> Visitor<'de> for RecordVisitor<'_> {
    type Value = Parts<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a node record (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parts<'de>, A::Error> {
        let mut p = Parts::new(self.id.clone());
        let mut state = None;
        let (mut connection_port, mut ssh_port) = (None, None);
        while let Some(Text(k)) = map.next_key::<Text<'de>>()? {
            match text_key(&k) {
                Some(TextKey::Shared(s)) => p.shared[s as usize] = text(&mut map)?,
                Some(TextKey::Own(o)) => p.texts[o as usize] = text(&mut map)?,
                None => match k.as_ref() {
                    "state" => {
                        let Text(s) = map.next_value()?;
                        state = Some(
                            NodeState::from_wire(&s).ok_or_else(|| A::Error::custom(Refused))?,
                        );
                    }
                    "state_time" => p.state_time = map.next_value::<Option<f64>>()?.unwrap_or(0.0),
                    "created_time" => p.created_time = map.next_value()?,
                    "type" => {
                        p.labels = map.next_value_seed(StrListVisitor { labels: true })?.items
                    }
                    "host_keys" => {
                        p.host_keys = map.next_value_seed(StrListVisitor { labels: false })?.items
                    }
                    "connection_port" => connection_port = Some(map.next_value::<Port>()?.0),
                    "ssh_port" => ssh_port = Some(map.next_value::<Port>()?.0),
                    "resources" => p.resources = map.next_value::<Resources>()?.0,
                    "slot" => p.rare.slot = map.next_value::<Slot>()?.0,
                    "hold_expiration" => {
                        p.rare.hold_expiration = coerce_hold_expiration(map.next_value()?)
                    }
                    "user_data" => p.rare.user_data = map.next_value()?,
                    "attributes" => p.rare.attributes = map.next_value()?,
                    "driver_data" => p.rare.driver_data = map.next_value()?,
                    "node_properties" => {
                        p.rare.node_properties = match map.next_value()? {
                            Value::Null => Map::new(),
                            Value::Object(m) => m,
                            _ => return Err(A::Error::custom(Refused)),
                        }
                    }
                    _ => {
                        let v = map.next_value()?;
                        p.rare.extra.insert(k.into_owned(), v);
                    }
                },
            }
        }
        p.state = state.ok_or_else(|| A::Error::custom(Refused))?;
        p.connection_port = match (connection_port, ssh_port) {
            (Some(port), _) | (None, Some(port)) => port.map_err(|()| A::Error::custom(Refused))?,
            (None, None) => 22,
        };
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Node;
    use crate::testing::scale::{realistic_node, FleetShape};

    #[test]
    fn realistic_records_are_read_directly() {
        for i in [0, 6, 8, 9, 12_345] {
            let n = realistic_node(i, FleetShape::default(), 1.7e9);
            let data = n.to_json();
            let direct = parse(&n.id, &data).expect("read directly");
            assert_eq!(direct, CompactNode::from(n));
        }
    }

    /// Benchmark (run explicitly, release): 100,000 realistic records read straight into
    /// `CompactNode`, and through `Node` as before, three rounds each.
    /// `cargo test --release -p nodepool-shared --lib bench_compact_read -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn bench_compact_read() {
        let records: Vec<(NodeId, Vec<u8>)> = (0..100_000)
            .map(|i| {
                let n = realistic_node(i, FleetShape::default(), 1.7e9);
                (NodeId::from_sequence(i as u64), n.to_json())
            })
            .collect();
        for round in 0..3 {
            let t = std::time::Instant::now();
            for (id, data) in &records {
                std::hint::black_box(CompactNode::from_json(id, std::hint::black_box(data)).ok());
            }
            let direct = t.elapsed();
            let t = std::time::Instant::now();
            for (id, data) in &records {
                let n = Node::from_json(id, std::hint::black_box(data));
                std::hint::black_box(n.ok().flatten().map(CompactNode::from));
            }
            println!(
                "round {round}: direct {direct:?}, through Node {:?}",
                t.elapsed()
            );
        }
    }
}
