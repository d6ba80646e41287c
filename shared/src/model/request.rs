//! The NodeRequest record (`/nodepool/requests/<prio>-<seq>`): Zuul (or
//! min-ready) asks for a set of labels; a launcher fulfils or fails it.

use std::cmp::Ordering;

use serde::Serialize;
use serde_json::{Map, Value};

use super::json::{self, f64_value, opt_f64_value, opt_str_value, str_list_value, Reader};
use super::wire_enum::wire_enum;
use super::{ModelError, NodeId, RequestId};

wire_enum!(
    /// The state of a node request, with Python's wire names.
    RequestState, "request state", {
        /// `requested`: submitted, not yet accepted by a launcher.
        Requested = "requested",
        /// `pending`: a launcher accepted it and is working on it.
        Pending = "pending",
        /// `fulfilled`: `nodes` holds the allocated nodes.
        Fulfilled = "fulfilled",
        /// `failed`: declined by every launcher or launch failed.
        Failed = "failed",
    }
);

/// A node request record. `None` is written as JSON `null`; every key is always written.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRequest {
    /// The znode name; not stored in the JSON. Empty until the request is first created.
    pub id: RequestId,
    /// `state`.
    pub state: RequestState,
    /// `state_time`: float epoch seconds (0.0 if unset).
    pub state_time: f64,
    /// `declined_by`: pool worker ids that declined (default `[]`).
    pub declined_by: Vec<String>,
    /// `node_types`: requested labels, order matters.
    pub node_types: Vec<String>,
    /// `nodes`: allocated node ids, in `node_types` order.
    pub nodes: Vec<NodeId>,
    /// `reuse`: may ready nodes be reused (default true).
    pub reuse: bool,
    /// `requestor`: e.g. Zuul's system id or `NodePool:min-ready`.
    pub requestor: Option<String>,
    /// `requestor_data`: opaque, passed through untouched.
    pub requestor_data: Value,
    /// `provider`: preferred provider.
    pub provider: Option<String>,
    /// `relative_priority` (default 0).
    pub relative_priority: i64,
    /// `event_id`.
    pub event_id: Option<String>,
    /// `created_time`: float epoch seconds.
    pub created_time: Option<f64>,
    /// `tenant_name`.
    pub tenant_name: Option<String>,
    /// Keys this version does not know, written back unchanged.
    pub extra: Map<String, Value>,
}

impl Default for NodeRequest {
    /// Python's constructor defaults with state `requested` and `state_time` 0.0.
    fn default() -> Self {
        NodeRequest {
            id: RequestId::default(),
            state: RequestState::Requested,
            state_time: 0.0,
            declined_by: Vec::new(),
            node_types: Vec::new(),
            nodes: Vec::new(),
            reuse: true,
            requestor: None,
            requestor_data: Value::Null,
            provider: None,
            relative_priority: 0,
            event_id: None,
            created_time: None,
            tenant_name: None,
            extra: Map::new(),
        }
    }
}

/// The sort key of a request: `(precedence, relative_priority, sequence)`, strings compared
/// lexicographically, exactly like Python's `NodeRequest.priority`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestPriority<'a> {
    /// Text before the `-` of the id.
    pub precedence: &'a str,
    /// `relative_priority`.
    pub relative_priority: i64,
    /// Text after the `-` of the id.
    pub sequence: &'a str,
}

impl NodeRequest {
    /// A new `requested` request stamped with the current time.
    pub fn new(node_types: Vec<String>, requestor: impl Into<String>) -> Self {
        let now = json::now_epoch();
        NodeRequest {
            state_time: now,
            created_time: Some(now),
            node_types,
            requestor: Some(requestor.into()),
            ..NodeRequest::default()
        }
    }

    /// Sets the state and stamps `state_time` with the current time.
    pub fn set_state(&mut self, state: RequestState) {
        self.state = state;
        self.state_time = json::now_epoch();
    }

    /// The sort key used to order requests (see [`RequestPriority`]).
    pub fn priority(&self) -> RequestPriority<'_> {
        RequestPriority {
            precedence: self.id.precedence(),
            relative_priority: self.relative_priority,
            sequence: self.id.sequence(),
        }
    }

    /// Compares two requests by [`NodeRequest::priority`] (lower = handled first).
    pub fn cmp_priority(&self, other: &NodeRequest) -> Ordering {
        self.priority().cmp(&other.priority())
    }

    /// Reads a request znode. Empty data → `Ok(None)`.
    pub fn from_json(id: &RequestId, data: &[u8]) -> Result<Option<NodeRequest>, ModelError> {
        let record = || format!("request {id}");
        match json::parse_object(&record, data)? {
            Some(map) => Self::from_map(id, map).map(Some),
            None => Ok(None),
        }
    }

    /// Reads a request from an already-parsed JSON object.
    pub fn from_map(id: &RequestId, map: Map<String, Value>) -> Result<NodeRequest, ModelError> {
        let record = || format!("request {id}");
        let r = Reader { record: &record };
        let mut q = NodeRequest {
            id: id.clone(),
            ..NodeRequest::default()
        };
        let mut state = None;
        for (k, v) in map {
            match k.as_str() {
                "state" => {
                    state = Some(r.state("state", v, RequestState::from_wire, "a request state")?)
                }
                "state_time" => q.state_time = r.opt_f64("state_time", v)?.unwrap_or(0.0),
                "declined_by" => q.declined_by = r.string_list("declined_by", v)?,
                "node_types" => q.node_types = r.string_list("node_types", v)?,
                "nodes" => {
                    q.nodes = r
                        .string_list("nodes", v)?
                        .into_iter()
                        .map(NodeId::from)
                        .collect()
                }
                // A stored null is falsy in Python.
                "reuse" => q.reuse = r.bool_or("reuse", v, false)?,
                "requestor" => q.requestor = r.opt_string("requestor", v)?,
                "requestor_data" => q.requestor_data = v,
                "provider" => q.provider = r.opt_string("provider", v)?,
                "relative_priority" => {
                    q.relative_priority = r.opt_i64("relative_priority", v)?.unwrap_or(0)
                }
                "event_id" => q.event_id = r.opt_string("event_id", v)?,
                "created_time" => q.created_time = r.opt_f64("created_time", v)?,
                "tenant_name" => q.tenant_name = r.opt_string("tenant_name", v)?,
                _ => {
                    q.extra.insert(k, v);
                }
            }
        }
        q.state = state.ok_or_else(|| r.missing("state"))?;
        Ok(q)
    }

    /// The record as a JSON object, keys in Python's `NodeRequest.toDict` order, then `extra`.
    pub fn to_value(&self) -> Value {
        let mut d = Map::with_capacity(13 + self.extra.len());
        d.insert("state".into(), Value::String(self.state.as_str().into()));
        d.insert("state_time".into(), f64_value(self.state_time));
        d.insert("declined_by".into(), str_list_value(&self.declined_by));
        d.insert("node_types".into(), str_list_value(&self.node_types));
        d.insert("nodes".into(), str_list_value(&self.nodes));
        d.insert("reuse".into(), Value::Bool(self.reuse));
        d.insert("requestor".into(), opt_str_value(&self.requestor));
        d.insert("requestor_data".into(), self.requestor_data.clone());
        d.insert("provider".into(), opt_str_value(&self.provider));
        d.insert(
            "relative_priority".into(),
            Value::from(self.relative_priority),
        );
        d.insert("event_id".into(), opt_str_value(&self.event_id));
        d.insert("created_time".into(), opt_f64_value(self.created_time));
        d.insert("tenant_name".into(), opt_str_value(&self.tenant_name));
        for (k, v) in &self.extra {
            if !d.contains_key(k) {
                d.insert(k.clone(), v.clone());
            }
        }
        Value::Object(d)
    }

    /// The znode data, byte-for-byte as Python's `json.dumps(request.toDict())`.
    pub fn to_json(&self) -> Vec<u8> {
        json::to_python_json(&self.to_value(), false)
    }
}

impl Serialize for NodeRequest {
    /// Serialises the wire form (without the id), same as [`NodeRequest::to_value`].
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(id: &str, rp: i64) -> NodeRequest {
        NodeRequest {
            id: RequestId::from(id),
            relative_priority: rp,
            ..NodeRequest::default()
        }
    }

    #[test]
    fn defaults_on_read() {
        // What Zuul writes: no `reuse`, no `declined_by`, no `nodes`.
        let data = json!({
            "requestor_data": {"build_set_uuid": "x"}, "node_types": ["a", "b"], "requestor": "zuul1",
            "created_time": 1.5, "provider": null, "state": "requested", "state_time": 1.5,
            "relative_priority": 2, "event_id": "e", "tenant_name": "t"
        });
        let q = NodeRequest::from_json(
            &RequestId::from("200-0000000001"),
            data.to_string().as_bytes(),
        )
        .unwrap()
        .unwrap();
        assert!(q.reuse);
        assert!(q.declined_by.is_empty());
        assert!(q.nodes.is_empty());
        assert_eq!(q.relative_priority, 2);
        assert_eq!(q.requestor_data, json!({"build_set_uuid": "x"}));
        let v = q.to_value();
        assert_eq!(v["reuse"], json!(true));
        assert_eq!(v["declined_by"], json!([]));
        let q = NodeRequest::from_json(
            &RequestId::from("200-0000000001"),
            br#"{"state":"pending"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(q.relative_priority, 0);
        assert_eq!(q.requestor_data, Value::Null);
    }

    #[test]
    fn key_order_follows_to_dict() {
        let v = NodeRequest::default().to_value();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "state",
                "state_time",
                "declined_by",
                "node_types",
                "nodes",
                "reuse",
                "requestor",
                "requestor_data",
                "provider",
                "relative_priority",
                "event_id",
                "created_time",
                "tenant_name",
            ]
        );
    }

    #[test]
    fn priority_sort_order() {
        let mut reqs = [
            req("300-0000000001", 0),
            req("100-0000000009", 0),
            req("200-0000000003", 1),
            req("200-0000000004", 0),
            req("100-0000000010", -1),
            req("900-0000000000", 0),
            req("200-0000000002", 1),
        ];
        reqs.sort_by(NodeRequest::cmp_priority);
        let ids: Vec<&str> = reqs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "100-0000000010",
                "100-0000000009",
                "200-0000000004",
                "200-0000000002",
                "200-0000000003",
                "300-0000000001",
                "900-0000000000",
            ]
        );
    }

    #[test]
    fn errors() {
        let id = RequestId::from("100-0000000001");
        assert!(NodeRequest::from_json(&id, b"").unwrap().is_none());
        let e = NodeRequest::from_json(&id, b"{\"state\": \"bogus\"}").unwrap_err();
        assert!(e.to_string().contains("request 100-0000000001"), "{e}");
        let e = NodeRequest::from_json(&id, b"{\"state\": \"pending\", \"reuse\": \"yes\"}")
            .unwrap_err();
        assert!(e.to_string().contains("`reuse`"), "{e}");
    }
}
