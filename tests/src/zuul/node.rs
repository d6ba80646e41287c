//! A node Zuul holds (locked) after accepting a request, and how Zuul writes a node back.
//!
//! Zuul never re-serialises a node from a schema of its own: it writes back **every key it
//! read** (unknown ones too) plus `"id"`, with `id`, `state`, `hold_job`, `comment`,
//! `user_data`, `tenant_name` and `requestor` first (Zuul's `Node.toDict()`), and setting
//! the state also stamps `state_time`. [`zuul_node_record`] reproduces that from the raw
//! JSON object read from ZooKeeper, so a launcher sees exactly what Zuul would leave.

use nodepool_shared::model::{now_epoch, to_python_json, Node, NodeId, NodeState, RequestId};
use nodepool_shared::zk::ZkLock;
use serde_json::{Map, Number, Value};

use super::error::{ZuulError, ZuulResult};

/// The keys Zuul's `Node.toDict()` writes before the keys it read.
const ZUUL_NODE_FIRST_KEYS: [&str; 6] = [
    "state",
    "hold_job",
    "comment",
    "user_data",
    "tenant_name",
    "requestor",
];

/// The object Zuul writes for node `id` whose current (read and edited) keys are `data`:
/// `id`, then [`ZUUL_NODE_FIRST_KEYS`] (`null` if never read), then every other key in
/// read order.
pub fn zuul_node_record(id: &NodeId, data: &Map<String, Value>) -> Map<String, Value> {
    let mut d = Map::with_capacity(data.len() + 2);
    d.insert("id".into(), Value::String(id.to_string()));
    for k in ZUUL_NODE_FIRST_KEYS {
        d.insert(k.into(), data.get(k).cloned().unwrap_or(Value::Null));
    }
    for (k, v) in data {
        if !d.contains_key(k) {
            d.insert(k.clone(), v.clone());
        }
    }
    d
}

/// A node locked by us for an accepted request. Dropping it releases the lock in the
/// background; prefer [`super::FakeZuul::return_nodes`] or [`super::FakeZuul::hold`].
#[derive(Debug)]
pub struct HeldNode {
    pub(crate) id: NodeId,
    pub(crate) request: RequestId,
    pub(crate) label: String,
    pub(crate) data: Map<String, Value>,
    pub(crate) lock: ZkLock,
}

impl HeldNode {
    /// The node id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// The request the node was accepted for.
    pub fn request(&self) -> &RequestId {
        &self.request
    }

    /// The label it was requested as (its position in `node_types`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The record as last read or written by us (every key, as in ZooKeeper).
    pub fn record(&self) -> &Map<String, Value> {
        &self.data
    }

    /// The `state` key.
    pub fn state(&self) -> Option<&str> {
        self.data.get("state").and_then(Value::as_str)
    }

    /// The record parsed with the model (Zuul's extra `id` ends up in `extra`).
    pub fn node(&self) -> ZuulResult<Node> {
        Ok(Node::from_map(&self.id, self.data.clone())?)
    }

    /// Full path of our lock contender while we hold it.
    pub fn lock_node_path(&self) -> Option<String> {
        self.lock.node_path()
    }

    /// True while our lock is held (its session alive).
    pub fn is_locked(&self) -> bool {
        self.lock.is_held()
    }

    /// Sets `state` and stamps `state_time` (Zuul's state setter).
    pub(crate) fn set_state(&mut self, state: NodeState) {
        self.data
            .insert("state".into(), Value::String(state.as_str().into()));
        let now = Number::from_f64(now_epoch()).map_or(Value::Null, Value::Number);
        self.data.insert("state_time".into(), now);
    }

    /// Sets one key.
    pub(crate) fn set(&mut self, key: &str, value: Value) {
        self.data.insert(key.into(), value);
    }

    /// The bytes Zuul would write now; fails if our lock is gone.
    pub(crate) fn to_write(&self) -> ZuulResult<Vec<u8>> {
        if !self.lock.is_held() {
            return Err(ZuulError::LockLost {
                node: self.id.clone(),
            });
        }
        Ok(to_python_json(
            &Value::Object(zuul_node_record(&self.id, &self.data)),
            false,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_keeps_every_key_and_adds_id_first() {
        let read = json!({
            "state": "ready", "state_time": 1.5, "type": ["a"], "allocated_to": "100-0000000001",
            "future_key": {"x": 1}, "requestor": "zuul1"
        });
        let d = zuul_node_record(&NodeId::from("0000000007"), read.as_object().unwrap());
        let keys: Vec<&str> = d.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "id",
                "state",
                "hold_job",
                "comment",
                "user_data",
                "tenant_name",
                "requestor",
                "state_time",
                "type",
                "allocated_to",
                "future_key"
            ]
        );
        assert_eq!(d["id"], json!("0000000007"));
        assert_eq!(d["future_key"], json!({"x": 1}));
        assert_eq!(d["requestor"], json!("zuul1"));
        assert_eq!(d["hold_job"], Value::Null);
    }
}
