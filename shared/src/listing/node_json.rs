//! The node listing's columns read straight from a node record's JSON, without building
//! a [`Node`]: `nodepool list` reads 100,000 records of ~1.9 kB, and building each as a
//! `Node` (some 30 allocations: host keys, `resources`, every text field) was most of
//! its CPU (docs/benchmarks.md). The texts the listing shows are borrowed from the
//! record; every other key is checked without being kept.
//!
//! [`ListedNode::parse`] accepts exactly the records that [`Node::from_json`] reads on
//! its first (streaming) pass, with the same values for the listed fields: each key gets
//! the same type check, anything else is walked as a `serde_json::Value` would be parsed
//! (so a number out of range or a lone surrogate is refused as there). Whatever it
//! refuses, `None`, is left to [`Node::from_json`], which then reads it or names the
//! error, so the listing is the same either way.
//!
//! [`Node`]: crate::model::Node
//! [`Node::from_json`]: crate::model::Node::from_json

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::model::{NodeId, NodeState};

/// The listed fields of one node record; texts borrowed from the JSON unless escaped.
#[derive(Debug)]
pub struct ListedNode<'a> {
    /// The znode name.
    pub id: &'a NodeId,
    /// `state`.
    pub state: NodeState,
    /// `state_time` (0.0 when null or absent).
    pub state_time: f64,
    /// `provider`.
    pub provider: Option<Cow<'a, str>>,
    /// `type`: the labels.
    pub labels: Vec<Cow<'a, str>>,
    /// `external_id`.
    pub external_id: Option<Cow<'a, str>>,
    /// `public_ipv4`.
    pub public_ipv4: Option<Cow<'a, str>>,
    /// `public_ipv6`.
    pub public_ipv6: Option<Cow<'a, str>>,
    /// `pool`.
    pub pool: Option<Cow<'a, str>>,
    /// `hostname`.
    pub hostname: Option<Cow<'a, str>>,
    /// `private_ipv4`.
    pub private_ipv4: Option<Cow<'a, str>>,
    /// `az`.
    pub az: Option<Cow<'a, str>>,
    /// `username` (`zuul` when absent, `None` when null).
    pub username: Option<Cow<'a, str>>,
    /// `connection_port`, else `ssh_port`, else 22.
    pub connection_port: u16,
    /// `launcher`.
    pub launcher: Option<Cow<'a, str>>,
    /// `allocated_to`.
    pub allocated_to: Option<Cow<'a, str>>,
    /// `hold_job`.
    pub hold_job: Option<Cow<'a, str>>,
    /// `comment`.
    pub comment: Option<Cow<'a, str>>,
    /// `user_data`.
    pub user_data: Value,
    /// `driver_data`.
    pub driver_data: Value,
}

/// Why a record was not read here (never shown: [`Node::from_json`] reads it again).
///
/// [`Node::from_json`]: crate::model::Node::from_json
#[derive(Debug)]
struct Refused;

impl ListedNode<'_> {
    /// The listed fields of node `id`'s record `data`; `Some(None)` for empty data (no
    /// node, as [`Node::from_json`] says), `None` when the record is left to
    /// [`Node::from_json`].
    ///
    /// [`Node::from_json`]: crate::model::Node::from_json
    pub fn parse<'a>(id: &'a NodeId, data: &'a [u8]) -> Option<Option<ListedNode<'a>>> {
        if data.iter().all(u8::is_ascii_whitespace) {
            return Some(None);
        }
        let mut de = serde_json::Deserializer::from_slice(data);
        let node = de.deserialize_map(RecordVisitor { id }).ok()?;
        de.end().ok()?;
        Some(Some(node))
    }
}

/// A string, borrowed from the JSON text unless it has escapes.
pub(crate) struct Text<'de>(pub(crate) Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Any JSON value, parsed as `serde_json::Value` parses it (same checks) and dropped.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyVisitor)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Checked;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_none<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Checked, D::Error> {
        Checked::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Text>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

/// An object or null whose values are [`Checked`] (`resources`, `node_properties`).
struct CheckedObject;

impl<'de> Deserialize<'de> for CheckedObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CheckedObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object or null")
            }
            fn visit_unit<E>(self) -> Result<CheckedObject, E> {
                Ok(CheckedObject)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CheckedObject, A::Error> {
                AnyVisitor.visit_map(map).map(|_| CheckedObject)
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of strings, or null (empty); with `type`'s extra forms when `labels`: a string
/// (one label, none when empty) or `false` (none).
pub(crate) struct StrList<'de> {
    pub(crate) items: Vec<Cow<'de, str>>,
}

pub(crate) struct StrListVisitor {
    pub(crate) labels: bool,
}

impl<'de> Visitor<'de> for StrListVisitor {
    type Value = StrList<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of strings")
    }
    fn visit_unit<E>(self) -> Result<StrList<'de>, E> {
        Ok(StrList { items: Vec::new() })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrList<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(Text(t)) = seq.next_element()? {
            items.push(t);
        }
        Ok(StrList { items })
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<StrList<'de>, E> {
        if self.labels && !v {
            return Ok(StrList { items: Vec::new() });
        }
        Err(E::custom("not a list of strings"))
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<StrList<'de>, E> {
        self.text(Cow::Borrowed(v))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StrList<'de>, E> {
        self.text(Cow::Owned(v.to_string()))
    }
}

impl StrListVisitor {
    fn text<'de, E: serde::de::Error>(self, v: Cow<'de, str>) -> Result<StrList<'de>, E> {
        match (self.labels, v.is_empty()) {
            (false, _) => Err(E::custom("not a list of strings")),
            (true, true) => Ok(StrList { items: Vec::new() }),
            (true, false) => Ok(StrList { items: vec![v] }),
        }
    }
}

impl<'de> DeserializeSeed<'de> for StrListVisitor {
    type Value = StrList<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<StrList<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

/// A port as `connection_port` / `ssh_port` hold it: null is 22, an integer 0…65535 or
/// a string of one (spaces around allowed); anything else is an error, but only if this
/// key is the one used (a record's other port key is not checked).
pub(crate) struct Port(pub(crate) Result<u16, ()>);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Port, E> {
                Ok(Port(Ok(22)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Port, E> {
                Ok(Port(u16::try_from(v).map_err(|_| ())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Port, E> {
                Ok(Port(u16::try_from(v).map_err(|_| ())))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Port, E> {
                Ok(Port(Err(())))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Port, E> {
                Ok(Port(Err(())))
            }
            fn visit_str<E>(self, v: &str) -> Result<Port, E> {
                Ok(Port(v.trim().parse().map_err(|_| ())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Port, A::Error> {
                AnyVisitor.visit_seq(seq).map(|_| Port(Err(())))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Port, A::Error> {
                AnyVisitor.visit_map(map).map(|_| Port(Err(())))
            }
        }
        d.deserialize_any(V)
    }
}

/// `slot`: an integer or null; an integral float below 9e15 is accepted.
struct Slot;

impl<'de> Deserialize<'de> for Slot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Slot;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or null")
            }
            fn visit_unit<E>(self) -> Result<Slot, E> {
                Ok(Slot)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Slot, E> {
                Ok(Slot)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Slot, E> {
                if i64::try_from(v).is_ok() {
                    Ok(Slot)
                } else {
                    self.visit_f64(v as f64)
                }
            }
            fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Slot, E> {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Ok(Slot)
                } else {
                    Err(E::custom("not an integer"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

struct RecordVisitor<'a> {
    id: &'a NodeId,
}

/// Reads one string-or-null key.
fn text<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Cow<'de, str>>, A::Error> {
    Ok(map.next_value::<Option<Text<'de>>>()?.map(|t| t.0))
}

impl<'de, 'a> Visitor<'de> for RecordVisitor<'a>
where
    'de: 'a,
{
    type Value = ListedNode<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a node record (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListedNode<'a>, A::Error> {
        let mut n = ListedNode {
            id: self.id,
            state: NodeState::Init,
            state_time: 0.0,
            provider: None,
            labels: Vec::new(),
            external_id: None,
            public_ipv4: None,
            public_ipv6: None,
            pool: None,
            hostname: None,
            private_ipv4: None,
            az: None,
            username: Some(Cow::Borrowed("zuul")),
            connection_port: 22,
            launcher: None,
            allocated_to: None,
            hold_job: None,
            comment: None,
            user_data: Value::Null,
            driver_data: Value::Null,
        };
        let mut state = None;
        let (mut connection_port, mut ssh_port) = (None, None);
        while let Some(Text(k)) = map.next_key::<Text<'de>>()? {
            match k.as_ref() {
                "state" => {
                    let Text(s) = map.next_value()?;
                    state =
                        Some(NodeState::from_wire(&s).ok_or_else(|| A::Error::custom(Refused))?);
                }
                "state_time" => n.state_time = map.next_value::<Option<f64>>()?.unwrap_or(0.0),
                "created_time" => {
                    map.next_value::<Option<f64>>()?;
                }
                "provider" => n.provider = text(&mut map)?,
                "pool" => n.pool = text(&mut map)?,
                "type" => n.labels = map.next_value_seed(StrListVisitor { labels: true })?.items,
                "allocated_to" => n.allocated_to = text(&mut map)?,
                "az" => n.az = text(&mut map)?,
                "public_ipv4" => n.public_ipv4 = text(&mut map)?,
                "private_ipv4" => n.private_ipv4 = text(&mut map)?,
                "public_ipv6" => n.public_ipv6 = text(&mut map)?,
                "launcher" => n.launcher = text(&mut map)?,
                "external_id" => n.external_id = text(&mut map)?,
                "hostname" => n.hostname = text(&mut map)?,
                "comment" => n.comment = text(&mut map)?,
                "hold_job" => n.hold_job = text(&mut map)?,
                "username" => n.username = text(&mut map)?,
                "cloud" | "region" | "host_id" | "interface_ip" | "image_id"
                | "connection_type" | "shell_type" | "python_path" | "tenant_name"
                | "requestor" => {
                    text(&mut map)?;
                }
                "connection_port" => connection_port = Some(map.next_value::<Port>()?.0),
                "ssh_port" => ssh_port = Some(map.next_value::<Port>()?.0),
                "host_keys" => {
                    map.next_value_seed(StrListVisitor { labels: false })?;
                }
                "resources" | "node_properties" => {
                    map.next_value::<CheckedObject>()?;
                }
                "slot" => {
                    map.next_value::<Slot>()?;
                }
                "user_data" => n.user_data = map.next_value()?,
                "driver_data" => n.driver_data = map.next_value()?,
                // `hold_expiration` (any value is coerced), `attributes` and keys this
                // version does not know: any JSON.
                _ => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        n.state = state.ok_or_else(|| A::Error::custom(Refused))?;
        n.connection_port = match (connection_port, ssh_port) {
            (Some(p), _) | (None, Some(p)) => p.map_err(|()| A::Error::custom(Refused))?,
            (None, None) => 22,
        };
        Ok(n)
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("left to the full reader")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listing::nodes::{listed_node_row, owned_node_row, NodeColumns};
    use crate::listing::Cell;
    use crate::model::Node;

    const NOW: f64 = 1_700_100_000.0;

    /// The detail cells as `nodepool list` makes them (JSON reader, then `Node` for
    /// what it leaves), and whether the JSON reader took the record.
    fn via_listed(data: &[u8]) -> (Option<Vec<Cell>>, bool) {
        let id = NodeId::from("0000000007");
        let mut row = Vec::new();
        match ListedNode::parse(&id, data) {
            Some(Some(n)) => {
                listed_node_row(&n, false, NOW, NodeColumns::Detail, &mut row);
                (Some(row), true)
            }
            Some(None) => (None, true),
            None => (via_node(data), false),
        }
    }

    fn via_node(data: &[u8]) -> Option<Vec<Cell>> {
        let id = NodeId::from("0000000007");
        let mut row = Vec::new();
        let node = Node::from_json(&id, data).ok()??;
        owned_node_row(node, false, NOW, NodeColumns::Detail, &mut row);
        Some(row)
    }

    /// Same cells as through `Node`; `direct`: whether the JSON reader must take it.
    fn check(json: &str, direct: bool) {
        let (got, took) = via_listed(json.as_bytes());
        assert_eq!(got, via_node(json.as_bytes()), "{json}");
        assert_eq!(took, direct, "taken by the JSON reader: {json}");
    }

    #[test]
    fn realistic_records_are_read_directly() {
        use crate::testing::scale::{realistic_node, FleetShape};
        for i in [0, 6, 8, 9, 12_345] {
            let n = realistic_node(i, FleetShape::default(), NOW);
            let json = String::from_utf8(n.to_json()).expect("utf-8");
            check(&json, true);
        }
    }

    #[test]
    fn same_cells_as_through_node() {
        for (json, direct) in [
            (r#"{"state": "ready"}"#, true),
            ("  \n", true),
            (r#"{"state": "ready", "username": null}"#, true),
            (
                r#"{"state": "ready", "provider": "pr\u00f6v\"ider", "comment": "a\nb"}"#,
                true,
            ),
            (r#"{"state": "ready", "type": ""}"#, true),
            (r#"{"state": "ready", "type": "a"}"#, true),
            (r#"{"state": "ready", "type": false}"#, true),
            (r#"{"state": "ready", "type": null}"#, true),
            (r#"{"state": "ready", "type": ["a", "b"]}"#, true),
            (r#"{"state": "ready", "type": true}"#, false),
            (r#"{"state": "ready", "type": [1]}"#, false),
            (r#"{"state": "ready", "connection_port": 2022}"#, true),
            (r#"{"state": "ready", "connection_port": " 2022 "}"#, true),
            (
                r#"{"state": "ready", "connection_port": null, "ssh_port": 1}"#,
                true,
            ),
            (r#"{"state": "ready", "ssh_port": "2200"}"#, true),
            (
                r#"{"state": "ready", "connection_port": 22, "ssh_port": "x"}"#,
                true,
            ),
            (r#"{"state": "ready", "connection_port": -1}"#, false),
            (r#"{"state": "ready", "connection_port": 70000}"#, false),
            (r#"{"state": "ready", "connection_port": 22.0}"#, false),
            (
                r#"{"state": "ready", "connection_port": {"user": "x"}}"#,
                false,
            ),
            (
                r#"{"state": "ready", "slot": 1.0, "hold_expiration": "abc"}"#,
                true,
            ),
            (r#"{"state": "ready", "slot": 1.5}"#, false),
            (r#"{"state": "ready", "slot": "1"}"#, false),
            (r#"{"state": "ready", "slot": 18446744073709551615}"#, false),
            (
                r#"{"state": "ready", "resources": {"cores": 2}, "node_properties": null}"#,
                true,
            ),
            (r#"{"state": "ready", "resources": []}"#, false),
            (r#"{"state": "ready", "node_properties": 5}"#, false),
            (r#"{"state": "ready", "x": 1e999}"#, false),
            (r#"{"state": "ready", "x": "\ud800"}"#, false),
            (
                r#"{"state": "ready", "host_keys": null, "attributes": [1, {"a": null}]}"#,
                true,
            ),
            (r#"{"state": "ready", "host_keys": "k"}"#, false),
            (
                r#"{"state": "ready", "user_data": {"k": [1, "a"]}, "driver_data": "o"}"#,
                true,
            ),
            (
                r#"{"state": "ready", "state_time": 5, "created_time": null}"#,
                true,
            ),
            (r#"{"state": "ready", "state_time": "5"}"#, false),
            (r#"{"state": "ready", "allocated_to": 5}"#, false),
            (r#"{"state": "bogus", "state": "ready"}"#, false),
            (r#"{"state": "ready", "state": "bogus"}"#, false),
            (r#"{"state": "nope"}"#, false),
            (r#"{"provider": "p"}"#, false),
            (r#"{"state": "ready"} x"#, false),
            (r#"["state"]"#, false),
            ("null", false),
        ] {
            check(json, direct);
        }
        let mut bad_utf8 = br#"{"state": "ready", "x": "?"}"#.to_vec();
        let at = bad_utf8.iter().position(|b| *b == b'?').expect("?");
        bad_utf8[at] = 0xff;
        assert_eq!(via_listed(&bad_utf8), (None, false));
    }
}
