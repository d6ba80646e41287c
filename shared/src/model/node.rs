//! The Node record (`/nodepool/nodes/<id>`): one cloud instance or static
//! host and its life cycle, shared with Zuul.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::json::{self, f64_value, opt_f64_value, opt_str_value, str_list_value, Reader};
use super::wire_enum::wire_enum;
use super::{ModelError, NodeId, QuotaInformation, RequestId};

wire_enum!(
    /// The state of a node, with Python's wire names; `ALL` is in the order of Python's
    /// `Node.VALID_STATES`.
    NodeState, "node state", {
        /// `init`: znode created, not yet locked by its launcher.
        Init = "init",
        /// `building`: the launcher is creating the instance.
        Building = "building",
        /// `testing`: defined but never set by Nodepool 11.
        Testing = "testing",
        /// `ready`: available (or allocated to a request).
        Ready = "ready",
        /// `in-use`: Zuul is running a job on it.
        InUse = "in-use",
        /// `used`: Zuul is done; the launcher deletes it.
        Used = "used",
        /// `hold`: kept for a human (autohold or CLI).
        Hold = "hold",
        /// `deleting`: the launcher is deleting the instance.
        Deleting = "deleting",
        /// `failed`: the launch failed.
        Failed = "failed",
        /// `aborted`: launch aborted by a transient error such as over-quota.
        Aborted = "aborted",
        /// `deleted`: written just before the znode is removed.
        Deleted = "deleted",
    }
);

/// A node record. Field names follow the wire keys (`node_type` is the key `type`).
/// `None` is written as JSON `null`; every key is always written.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The znode name; not stored in the JSON. Empty until the node is first created.
    pub id: NodeId,
    /// `state`.
    pub state: NodeState,
    /// `state_time`: float epoch seconds of the last state assignment (0.0 if unset).
    pub state_time: f64,
    /// `cloud`.
    pub cloud: Option<String>,
    /// `provider`: provider name.
    pub provider: Option<String>,
    /// `pool`: pool name.
    pub pool: Option<String>,
    /// `type`: label names (a legacy plain string is read as a one-element list).
    pub node_type: Vec<String>,
    /// `allocated_to`: the request this node is reserved for.
    pub allocated_to: Option<RequestId>,
    /// `az`.
    pub az: Option<String>,
    /// `region`.
    pub region: Option<String>,
    /// `public_ipv4`.
    pub public_ipv4: Option<String>,
    /// `private_ipv4`.
    pub private_ipv4: Option<String>,
    /// `public_ipv6`.
    pub public_ipv6: Option<String>,
    /// `host_id`.
    pub host_id: Option<String>,
    /// `interface_ip`.
    pub interface_ip: Option<String>,
    /// `connection_port` (also written as `ssh_port`); read from `connection_port`, else
    /// `ssh_port`, else 22.
    pub connection_port: u16,
    /// `image_id`: upload path (diskimage) or cloud-image name.
    pub image_id: Option<String>,
    /// `launcher`: pool worker id, or `static driver`.
    pub launcher: Option<String>,
    /// `created_time`: float epoch seconds.
    pub created_time: Option<f64>,
    /// `external_id`: cloud server id.
    pub external_id: Option<String>,
    /// `hostname`.
    pub hostname: Option<String>,
    /// `comment` (Zuul / CLI).
    pub comment: Option<String>,
    /// `user_data`: opaque, written by Zuul (`null` when unset).
    pub user_data: Value,
    /// `hold_job`.
    pub hold_job: Option<String>,
    /// `host_keys`: `"<type> <base64>"` strings.
    pub host_keys: Vec<String>,
    /// `username`: `"zuul"` when the key is absent on read; a stored null stays `None`.
    pub username: Option<String>,
    /// `connection_type`: `ssh`, `winrm`, `network_cli`, `kubectl`, …
    pub connection_type: Option<String>,
    /// `shell_type`.
    pub shell_type: Option<String>,
    /// `hold_expiration`: seconds, coerced to an integer on read (unparsable → 0 = none).
    pub hold_expiration: Option<i64>,
    /// `resources`: e.g. `{"cores": 4, "instances": 1, "ram": 8192}`; see
    /// [`Node::resources_quota`].
    pub resources: Option<Map<String, Value>>,
    /// `slot`: static driver slot index.
    pub slot: Option<i64>,
    /// `attributes`: pool `node-attributes`, opaque (`null` when unset).
    pub attributes: Value,
    /// `python_path`.
    pub python_path: Option<String>,
    /// `tenant_name`.
    pub tenant_name: Option<String>,
    /// `driver_data`: opaque driver data (`null` when unset).
    pub driver_data: Value,
    /// `requestor`.
    pub requestor: Option<String>,
    /// `node_properties`: dict, `{}` when absent or null.
    pub node_properties: Map<String, Value>,
    /// Keys this version does not know (e.g. Zuul's `id`), written back unchanged.
    pub extra: Map<String, Value>,
}

impl Default for Node {
    /// A fresh node in state `init` with Python's constructor defaults (`state_time` 0.0;
    /// use [`Node::set_state`] to stamp it).
    fn default() -> Self {
        Node {
            id: NodeId::default(),
            state: NodeState::Init,
            state_time: 0.0,
            cloud: None,
            provider: None,
            pool: None,
            node_type: Vec::new(),
            allocated_to: None,
            az: None,
            region: None,
            public_ipv4: None,
            private_ipv4: None,
            public_ipv6: None,
            host_id: None,
            interface_ip: None,
            connection_port: 22,
            image_id: None,
            launcher: None,
            created_time: None,
            external_id: None,
            hostname: None,
            comment: None,
            user_data: Value::Null,
            hold_job: None,
            host_keys: Vec::new(),
            username: None,
            connection_type: None,
            shell_type: None,
            hold_expiration: None,
            resources: None,
            slot: None,
            attributes: Value::Null,
            python_path: None,
            tenant_name: None,
            driver_data: Value::Null,
            requestor: None,
            node_properties: Map::new(),
            extra: Map::new(),
        }
    }
}

/// Python's `int(x)` as used for `hold_expiration`: numbers truncate, numeric strings
/// parse, bools are 0/1; anything else is 0 (no expiration).
pub(super) fn coerce_hold_expiration(v: Value) -> Option<i64> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(i64::from(b)),
        Value::Number(n) => Some(n.as_i64().unwrap_or_else(|| match n.as_f64() {
            Some(f) if f.is_finite() && f.abs() < 9.2e18 => f.trunc() as i64,
            _ => 0,
        })),
        Value::String(s) => {
            let t = s.trim().replace('_', "");
            Some(t.parse::<i64>().unwrap_or(0))
        }
        _ => Some(0),
    }
}

/// A node being read key by key (from a parsed map or straight from the JSON text).
struct NodeBuilder {
    n: Node,
    state: Option<NodeState>,
    connection_port: Option<Value>,
    ssh_port: Option<Value>,
}

impl NodeBuilder {
    fn new(id: &NodeId) -> Self {
        NodeBuilder {
            n: Node {
                id: id.clone(),
                username: Some("zuul".to_string()),
                node_properties: Map::new(),
                ..Node::default()
            },
            state: None,
            connection_port: None,
            ssh_port: None,
        }
    }

    /// Applies one key of the record.
    fn apply(&mut self, r: &Reader<'_>, k: Cow<'_, str>, v: Value) -> Result<(), ModelError> {
        let n = &mut self.n;
        match k.as_ref() {
            "state" => {
                self.state = Some(r.state("state", v, NodeState::from_wire, "a node state")?)
            }
            "state_time" => n.state_time = r.opt_f64("state_time", v)?.unwrap_or(0.0),
            "cloud" => n.cloud = r.opt_string("cloud", v)?,
            "provider" => n.provider = r.opt_string("provider", v)?,
            "pool" => n.pool = r.opt_string("pool", v)?,
            "type" => {
                n.node_type = match v {
                    Value::String(s) if s.is_empty() => Vec::new(),
                    Value::String(s) => vec![s],
                    Value::Bool(false) => Vec::new(),
                    other => r.string_list("type", other)?,
                }
            }
            "allocated_to" => {
                n.allocated_to = r.opt_string("allocated_to", v)?.map(RequestId::from)
            }
            "az" => n.az = r.opt_string("az", v)?,
            "region" => n.region = r.opt_string("region", v)?,
            "public_ipv4" => n.public_ipv4 = r.opt_string("public_ipv4", v)?,
            "private_ipv4" => n.private_ipv4 = r.opt_string("private_ipv4", v)?,
            "public_ipv6" => n.public_ipv6 = r.opt_string("public_ipv6", v)?,
            "host_id" => n.host_id = r.opt_string("host_id", v)?,
            "interface_ip" => n.interface_ip = r.opt_string("interface_ip", v)?,
            "connection_port" => self.connection_port = Some(v),
            "ssh_port" => self.ssh_port = Some(v),
            "image_id" => n.image_id = r.opt_string("image_id", v)?,
            "launcher" => n.launcher = r.opt_string("launcher", v)?,
            "created_time" => n.created_time = r.opt_f64("created_time", v)?,
            "external_id" => n.external_id = r.opt_string("external_id", v)?,
            "hostname" => n.hostname = r.opt_string("hostname", v)?,
            "comment" => n.comment = r.opt_string("comment", v)?,
            "user_data" => n.user_data = v,
            "hold_job" => n.hold_job = r.opt_string("hold_job", v)?,
            "host_keys" => n.host_keys = r.string_list("host_keys", v)?,
            "username" => n.username = r.opt_string("username", v)?,
            "connection_type" => n.connection_type = r.opt_string("connection_type", v)?,
            "shell_type" => n.shell_type = r.opt_string("shell_type", v)?,
            "hold_expiration" => n.hold_expiration = coerce_hold_expiration(v),
            "resources" => n.resources = r.opt_object("resources", v)?,
            "slot" => n.slot = r.opt_i64("slot", v)?,
            "attributes" => n.attributes = v,
            "python_path" => n.python_path = r.opt_string("python_path", v)?,
            "tenant_name" => n.tenant_name = r.opt_string("tenant_name", v)?,
            "driver_data" => n.driver_data = v,
            "requestor" => n.requestor = r.opt_string("requestor", v)?,
            "node_properties" => {
                n.node_properties = r.opt_object("node_properties", v)?.unwrap_or_default()
            }
            _ => {
                n.extra.insert(k.into_owned(), v);
            }
        }
        Ok(())
    }

    /// The node, once every key was applied.
    fn finish(self, r: &Reader<'_>) -> Result<Node, ModelError> {
        let mut n = self.n;
        n.state = self.state.ok_or_else(|| r.missing("state"))?;
        let port = |key: &str, v: Value| -> Result<u16, ModelError> {
            match &v {
                Value::Null => Ok(22),
                Value::Number(num) => num
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| r.err(key, "a port number", &v)),
                Value::String(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| r.err(key, "a port number", &v)),
                _ => Err(r.err(key, "a port number", &v)),
            }
        };
        n.connection_port = match (self.connection_port, self.ssh_port) {
            (Some(v), _) => port("connection_port", v)?,
            (None, Some(v)) => port("ssh_port", v)?,
            (None, None) => 22,
        };
        Ok(n)
    }
}

/// A map key, borrowed from the JSON text unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads a node record straight from JSON text ([`Node::from_json`]'s fast path).
struct NodeSeed<'a> {
    id: &'a NodeId,
}

impl<'de> serde::de::DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Node;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for NodeSeed<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a node record (a JSON object)")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        use serde::de::Error;
        let id = self.id;
        let record = || format!("node {id}");
        let r = Reader { record: &record };
        let mut b = NodeBuilder::new(id);
        while let Some(Key(k)) = map.next_key()? {
            let v: Value = map.next_value()?;
            b.apply(&r, k, v).map_err(A::Error::custom)?;
        }
        b.finish(&r).map_err(A::Error::custom)
    }
}

impl Node {
    /// A new `init` node stamped with the current time as `state_time` and `created_time`.
    pub fn new() -> Self {
        let now = json::now_epoch();
        Node {
            state_time: now,
            created_time: Some(now),
            ..Node::default()
        }
    }

    /// Sets the state and stamps `state_time` with the current time (Python's setter).
    pub fn set_state(&mut self, state: NodeState) {
        self.state = state;
        self.state_time = json::now_epoch();
    }

    /// Reads a node znode. Empty data means "no node" (`Ok(None)`), e.g. a znode
    /// re-created by a lock attempt on a deleted node.
    pub fn from_json(id: &NodeId, data: &[u8]) -> Result<Option<Node>, ModelError> {
        let record = || format!("node {id}");
        if data.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        // Fast path: the object's entries are applied as they are parsed, without building
        // a map first (listing 10,000 nodes, docs/benchmarks.md). Whatever it refuses (not
        // an object, bad JSON, a bad value) is read again below, so errors, and duplicate
        // keys (the map keeps the last), come out exactly as from the map.
        let mut de = serde_json::Deserializer::from_slice(data);
        if let Ok(node) = serde::de::DeserializeSeed::deserialize(NodeSeed { id }, &mut de) {
            if de.end().is_ok() {
                return Ok(Some(node));
            }
        }
        match json::parse_object(&record, data)? {
            Some(map) => Self::from_map(id, map).map(Some),
            None => Ok(None),
        }
    }

    /// Reads a node from an already-parsed JSON object.
    pub fn from_map(id: &NodeId, map: Map<String, Value>) -> Result<Node, ModelError> {
        let record = || format!("node {id}");
        let r = Reader { record: &record };
        let mut b = NodeBuilder::new(id);
        for (k, v) in map {
            b.apply(&r, Cow::Owned(k), v)?;
        }
        b.finish(&r)
    }

    /// The record as a JSON object, keys in Python's `Node.toDict` order, then `extra`.
    pub fn to_value(&self) -> Value {
        let mut d = Map::with_capacity(40 + self.extra.len());
        let s = |v: &Option<String>| opt_str_value(v);
        d.insert("state".into(), Value::String(self.state.as_str().into()));
        d.insert("state_time".into(), f64_value(self.state_time));
        d.insert("cloud".into(), s(&self.cloud));
        d.insert("provider".into(), s(&self.provider));
        d.insert("pool".into(), s(&self.pool));
        d.insert("type".into(), str_list_value(&self.node_type));
        d.insert(
            "allocated_to".into(),
            self.allocated_to
                .as_ref()
                .map_or(Value::Null, |r| Value::String(r.to_string())),
        );
        d.insert("az".into(), s(&self.az));
        d.insert("region".into(), s(&self.region));
        d.insert("public_ipv4".into(), s(&self.public_ipv4));
        d.insert("private_ipv4".into(), s(&self.private_ipv4));
        d.insert("public_ipv6".into(), s(&self.public_ipv6));
        d.insert("host_id".into(), s(&self.host_id));
        d.insert("interface_ip".into(), s(&self.interface_ip));
        d.insert("connection_port".into(), Value::from(self.connection_port));
        d.insert("ssh_port".into(), Value::from(self.connection_port));
        d.insert("image_id".into(), s(&self.image_id));
        d.insert("launcher".into(), s(&self.launcher));
        d.insert("created_time".into(), opt_f64_value(self.created_time));
        d.insert("external_id".into(), s(&self.external_id));
        d.insert("hostname".into(), s(&self.hostname));
        d.insert("comment".into(), s(&self.comment));
        d.insert("user_data".into(), self.user_data.clone());
        d.insert("hold_job".into(), s(&self.hold_job));
        d.insert("host_keys".into(), str_list_value(&self.host_keys));
        d.insert("username".into(), s(&self.username));
        d.insert("connection_type".into(), s(&self.connection_type));
        d.insert("shell_type".into(), s(&self.shell_type));
        d.insert(
            "hold_expiration".into(),
            self.hold_expiration.map_or(Value::Null, Value::from),
        );
        d.insert(
            "resources".into(),
            self.resources
                .as_ref()
                .map_or(Value::Null, |m| Value::Object(m.clone())),
        );
        d.insert("slot".into(), self.slot.map_or(Value::Null, Value::from));
        d.insert("attributes".into(), self.attributes.clone());
        d.insert("python_path".into(), s(&self.python_path));
        d.insert("tenant_name".into(), s(&self.tenant_name));
        d.insert("driver_data".into(), self.driver_data.clone());
        d.insert("requestor".into(), s(&self.requestor));
        d.insert(
            "node_properties".into(),
            Value::Object(self.node_properties.clone()),
        );
        for (k, v) in &self.extra {
            if !d.contains_key(k) {
                d.insert(k.clone(), v.clone());
            }
        }
        Value::Object(d)
    }

    /// The znode data, byte-for-byte as Python's `json.dumps(node.toDict())`.
    pub fn to_json(&self) -> Vec<u8> {
        json::to_python_json(&self.to_value(), false)
    }

    /// `resources` as quota usage (missing keys count 0); `None` when the node has none.
    pub fn resources_quota(&self) -> Option<QuotaInformation> {
        self.resources
            .as_ref()
            .map(QuotaInformation::from_resources)
    }

    /// True if the node carries `label` in its `type` list.
    pub fn has_label(&self, label: &str) -> bool {
        self.node_type.iter().any(|l| l == label)
    }
}

impl Serialize for Node {
    /// Serialises the wire form (without the id), same as [`Node::to_value`].
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: Value) -> Result<Option<Node>, ModelError> {
        Node::from_json(&NodeId::from("0000000001"), v.to_string().as_bytes())
    }

    /// The map-based reading, which `from_json`'s fast path must equal.
    fn via_map(data: &str) -> Result<Option<Node>, String> {
        let id = NodeId::from("0000000001");
        let record = || format!("node {id}");
        match json::parse_object(&record, data.as_bytes()) {
            Ok(Some(map)) => Node::from_map(&id, map).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        }
        .map_err(|e| e.to_string())
    }

    #[test]
    fn fast_path_equals_map_path() {
        let cases = [
            r#"{"state": "ready", "provider": "p", "type": ["a", "b"], "zuul": {"x": 1}, "id": "7"}"#,
            // Escaped keys, unknown keys in order, ports as strings.
            r#"{"st\u0061te": "in-use", "b": 1, "a": 2, "connection_port": "2022", "ssh_port": 22}"#,
            // Duplicates: the last one counts, even when an earlier one is invalid.
            r#"{"state": "bogus", "state": "ready", "extra": 1, "extra": [2]}"#,
            r#"{"state": "ready", "connection_port": 22, "connection_port": "x"}"#,
            r#"{"state": "ready", "host_keys": 5}"#,
            r#"{"provider": "p"}"#,
            r#"["not", "an", "object"]"#,
            r#"{"state": "ready"} trailing"#,
            r#"{"state": "ready""#,
            "  \n ",
            r#"{"state": "ready", "user_data": {"k": [1.5, null]}, "hold_expiration": "12"}"#,
        ];
        for data in cases {
            let fast = Node::from_json(&NodeId::from("0000000001"), data.as_bytes())
                .map_err(|e| e.to_string());
            assert_eq!(fast, via_map(data), "{data}");
        }
        // And the valid ones are read at all (not only equal failures).
        assert!(via_map(cases[0]).unwrap().is_some());
        assert_eq!(
            via_map(cases[2]).unwrap().unwrap().extra.get("extra"),
            Some(&json!([2]))
        );
    }

    #[test]
    fn state_wire_names() {
        for st in NodeState::ALL {
            assert_eq!(NodeState::from_wire(st.as_str()), Some(st));
            assert_eq!(serde_json::to_value(st).unwrap(), json!(st.as_str()));
        }
        assert_eq!(NodeState::InUse.as_str(), "in-use");
        assert!("bogus".parse::<NodeState>().is_err());
    }

    #[test]
    fn empty_data_is_no_node() {
        assert!(Node::from_json(&NodeId::from("1"), b"").unwrap().is_none());
        assert!(Node::from_json(&NodeId::from("1"), b"  \n")
            .unwrap()
            .is_none());
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let id = NodeId::from("0000000007");
        let e = Node::from_json(&id, b"{not json").unwrap_err();
        assert!(matches!(e, ModelError::Json { .. }), "{e}");
        assert!(e.to_string().contains("node 0000000007"), "{e}");
        let e = Node::from_json(&id, b"[1,2]").unwrap_err();
        assert!(matches!(e, ModelError::NotAnObject { .. }), "{e}");
        let e = read(json!({"state": "bogus"})).unwrap_err();
        assert!(e.to_string().contains("`state`"), "{e}");
        let e = read(json!({"state": "ready", "host_keys": "x"})).unwrap_err();
        assert!(e.to_string().contains("`host_keys`"), "{e}");
        let e = read(json!({"provider": "p"})).unwrap_err();
        assert!(matches!(e, ModelError::Missing { key: "state", .. }), "{e}");
        let e = read(json!({"state": "ready", "connection_port": 70000})).unwrap_err();
        assert!(e.to_string().contains("connection_port"), "{e}");
    }

    #[test]
    fn username_absent_vs_null() {
        let n = read(json!({"state": "ready"})).unwrap().unwrap();
        assert_eq!(n.username.as_deref(), Some("zuul"));
        let n = read(json!({"state": "ready", "username": null}))
            .unwrap()
            .unwrap();
        assert_eq!(n.username, None);
        let n = read(json!({"state": "ready", "username": "ubuntu"}))
            .unwrap()
            .unwrap();
        assert_eq!(n.username.as_deref(), Some("ubuntu"));
    }

    #[test]
    fn legacy_type_string() {
        let n = read(json!({"state": "ready", "type": "label-a"}))
            .unwrap()
            .unwrap();
        assert_eq!(n.node_type, vec!["label-a".to_string()]);
        assert_eq!(n.to_value()["type"], json!(["label-a"]));
        let n = read(json!({"state": "ready", "type": ""}))
            .unwrap()
            .unwrap();
        assert!(n.node_type.is_empty());
        let n = read(json!({"state": "ready", "type": null}))
            .unwrap()
            .unwrap();
        assert!(n.node_type.is_empty());
    }

    #[test]
    fn hold_expiration_coercion() {
        let cases = [
            (json!(null), None),
            (json!(3600), Some(3600)),
            (json!(3600.9), Some(3600)),
            (json!("86400"), Some(86400)),
            (json!(" 42 "), Some(42)),
            (json!("12.5"), Some(0)),
            (json!("never"), Some(0)),
            (json!(true), Some(1)),
            (json!([1]), Some(0)),
        ];
        for (v, want) in cases {
            let n = read(json!({"state": "hold", "hold_expiration": v.clone()}))
                .unwrap()
                .unwrap();
            assert_eq!(n.hold_expiration, want, "{v}");
        }
    }

    #[test]
    fn ports() {
        let n = read(json!({"state": "ready", "ssh_port": 2222}))
            .unwrap()
            .unwrap();
        assert_eq!(n.connection_port, 2222);
        let v = n.to_value();
        assert_eq!(v["connection_port"], json!(2222));
        assert_eq!(v["ssh_port"], json!(2222));
        let n = read(json!({"state": "ready", "connection_port": 5986, "ssh_port": 22}))
            .unwrap()
            .unwrap();
        assert_eq!(n.connection_port, 5986);
        let n = read(json!({"state": "ready"})).unwrap().unwrap();
        assert_eq!(n.connection_port, 22);
    }

    #[test]
    fn unknown_keys_are_kept() {
        let n = read(json!({"state": "in-use", "id": "0000000001", "zuul_future": {"a": 1}}))
            .unwrap()
            .unwrap();
        assert_eq!(n.extra.get("id"), Some(&json!("0000000001")));
        let v = n.to_value();
        assert_eq!(v["id"], json!("0000000001"));
        assert_eq!(v["zuul_future"], json!({"a": 1}));
    }

    #[test]
    fn defaults_and_toggles() {
        let n = read(json!({"state": "ready", "node_properties": null, "host_keys": null}))
            .unwrap()
            .unwrap();
        assert!(n.node_properties.is_empty());
        assert!(n.host_keys.is_empty());
        let v = n.to_value();
        assert_eq!(v["node_properties"], json!({}));
        assert_eq!(v["host_keys"], json!([]));
    }

    #[test]
    fn key_order_follows_to_dict() {
        let v = Node::default().to_value();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "state",
                "state_time",
                "cloud",
                "provider",
                "pool",
                "type",
                "allocated_to",
                "az",
                "region",
                "public_ipv4",
                "private_ipv4",
                "public_ipv6",
                "host_id",
                "interface_ip",
                "connection_port",
                "ssh_port",
                "image_id",
                "launcher",
                "created_time",
                "external_id",
                "hostname",
                "comment",
                "user_data",
                "hold_job",
                "host_keys",
                "username",
                "connection_type",
                "shell_type",
                "hold_expiration",
                "resources",
                "slot",
                "attributes",
                "python_path",
                "tenant_name",
                "driver_data",
                "requestor",
                "node_properties",
            ]
        );
    }

    #[test]
    fn set_state_stamps_time() {
        let mut n = Node::default();
        n.set_state(NodeState::Building);
        assert_eq!(n.state, NodeState::Building);
        assert!(n.state_time > 1.0e9);
        let fresh = Node::new();
        assert_eq!(fresh.created_time, Some(fresh.state_time));
    }

    /// Benchmark (run explicitly, release): reading and writing 10,000 node records (the
    /// golden `node-ready.json`), the per-record cost under every listing and cache load.
    /// `cargo test --release -p nodepool-shared --lib bench_node_read_write -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn bench_node_read_write() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/node-ready.json");
        let golden: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let data = serde_json::to_vec(&golden["data"]).unwrap();
        let id = NodeId::from("0000004351");
        let n = 10_000;
        for round in 0..5 {
            let t = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(Node::from_json(&id, std::hint::black_box(&data)).unwrap());
            }
            let read = t.elapsed();
            let node = Node::from_json(&id, &data).unwrap().unwrap();
            let t = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(std::hint::black_box(&node).to_json());
            }
            println!(
                "round {round}: read {n}: {read:?}, write {n}: {:?}",
                t.elapsed()
            );
        }
    }
}
