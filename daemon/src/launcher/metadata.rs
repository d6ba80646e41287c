//! Server name and instance metadata written to the cloud. Leak
//! detection and unmanaged-quota accounting key off the `nodepool_*` keys written here,
//! so every launch must go through [`build_metadata`].
//!
//! Order of precedence (later wins): `groups`, label `instance-properties`, formatted
//! `dynamic-instance-properties`, then `nodepool_node_id`, `nodepool_pool_name`,
//! `nodepool_provider_name`. A dynamic property whose template cannot be formatted is
//! left out and reported in [`ServerMetadata::errors`] (Python logs and skips it too).

use std::collections::BTreeMap;

use nodepool_shared::model::NodeRequest;
use nodepool_shared::pyfmt::{self, FormatError};
use serde_json::{Map, Value};

/// Metadata key: the node id.
pub const NODE_ID: &str = "nodepool_node_id";
/// Metadata key: the pool name.
pub const POOL_NAME: &str = "nodepool_pool_name";
/// Metadata key: the provider name.
pub const PROVIDER_NAME: &str = "nodepool_provider_name";
/// Metadata key: Ansible inventory groups.
pub const GROUPS: &str = "groups";

/// The server name for a node: `np<node id>`.
pub fn server_name(node_id: &str) -> String {
    format!("np{node_id}")
}

/// The request attributes a dynamic instance property may use (Python's
/// `NodeRequest.getSafeAttributes()`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestAttributes {
    pub id: String,
    /// `node_types`.
    pub labels: Vec<String>,
    pub requestor: Option<String>,
    pub requestor_data: Value,
    pub relative_priority: i64,
    pub event_id: Option<String>,
    pub created_time: Option<f64>,
    pub tenant_name: Option<String>,
}

impl RequestAttributes {
    /// The safe attributes of a request record.
    pub fn from_request(r: &NodeRequest) -> Self {
        RequestAttributes {
            id: r.id.to_string(),
            labels: r.node_types.clone(),
            requestor: r.requestor.clone(),
            requestor_data: r.requestor_data.clone(),
            relative_priority: r.relative_priority,
            event_id: r.event_id.clone(),
            created_time: r.created_time,
            tenant_name: r.tenant_name.clone(),
        }
    }

    /// As the JSON object the templates index into.
    pub fn to_value(&self) -> Value {
        let opt = |s: &Option<String>| s.clone().map(Value::String).unwrap_or(Value::Null);
        let mut m = Map::new();
        m.insert("id".into(), Value::String(self.id.clone()));
        m.insert(
            "labels".into(),
            Value::Array(self.labels.iter().cloned().map(Value::String).collect()),
        );
        m.insert("requestor".into(), opt(&self.requestor));
        m.insert("requestor_data".into(), self.requestor_data.clone());
        m.insert(
            "relative_priority".into(),
            Value::from(self.relative_priority),
        );
        m.insert("event_id".into(), opt(&self.event_id));
        m.insert(
            "created_time".into(),
            self.created_time.map(Value::from).unwrap_or(Value::Null),
        );
        m.insert("tenant_name".into(), opt(&self.tenant_name));
        Value::Object(m)
    }
}

/// What the metadata of one server is built from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetadataInput {
    pub node_id: String,
    pub provider: String,
    pub pool: String,
    /// Diskimage name, or the cloud-image config name.
    pub image_name: String,
    pub label: String,
    /// Label `instance-properties`.
    pub instance_properties: BTreeMap<String, String>,
    /// Label `dynamic-instance-properties` (Python format strings).
    pub dynamic_instance_properties: BTreeMap<String, String>,
    pub request: RequestAttributes,
}

/// A dynamic instance property that could not be formatted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dynamic-instance-properties `{key}`: {source}")]
pub struct MetadataError {
    pub key: String,
    #[source]
    pub source: FormatError,
}

/// The built metadata and the dynamic properties that were left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerMetadata {
    pub meta: BTreeMap<String, String>,
    pub errors: Vec<MetadataError>,
}

/// Builds the server metadata: `groups` (`<provider>,<image>,<label>`), then the label's
/// `instance-properties` and formatted `dynamic-instance-properties`, then (overriding
/// them) `nodepool_node_id`, `nodepool_pool_name` and `nodepool_provider_name`.
pub fn build_metadata(input: &MetadataInput) -> ServerMetadata {
    let mut meta = BTreeMap::new();
    meta.insert(
        GROUPS.to_string(),
        format!("{},{},{}", input.provider, input.image_name, input.label),
    );
    for (k, v) in &input.instance_properties {
        meta.insert(k.clone(), v.clone());
    }
    let mut args = Map::new();
    args.insert("request".into(), input.request.to_value());
    let mut errors = Vec::new();
    for (k, template) in &input.dynamic_instance_properties {
        match pyfmt::format(template, &args) {
            Ok(v) => {
                meta.insert(k.clone(), v);
            }
            Err(source) => {
                tracing::warn!(key = %k, error = %source, "error formatting dynamic instance property");
                errors.push(MetadataError {
                    key: k.clone(),
                    source,
                });
            }
        }
    }
    meta.insert(NODE_ID.to_string(), input.node_id.clone());
    meta.insert(POOL_NAME.to_string(), input.pool.clone());
    meta.insert(PROVIDER_NAME.to_string(), input.provider.clone());
    ServerMetadata { meta, errors }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input() -> MetadataInput {
        MetadataInput {
            node_id: "0000000042".into(),
            provider: "prov".into(),
            pool: "main".into(),
            image_name: "ubuntu".into(),
            label: "small".into(),
            instance_properties: BTreeMap::from([
                ("team".to_string(), "infra".to_string()),
                (NODE_ID.to_string(), "spoofed".to_string()),
            ]),
            dynamic_instance_properties: BTreeMap::from([
                ("req".to_string(), "{request.id}".to_string()),
                ("who".to_string(), "{request.requestor}".to_string()),
                ("labels".to_string(), "{request.labels}".to_string()),
                (
                    "project".to_string(),
                    "{request.requestor_data[project]}".to_string(),
                ),
                ("bad".to_string(), "{request.nothing}".to_string()),
                (POOL_NAME.to_string(), "also-spoofed".to_string()),
            ]),
            request: RequestAttributes {
                id: "100-0000000007".into(),
                labels: vec!["small".into()],
                requestor: Some("zuul".into()),
                requestor_data: json!({"project": "org/repo"}),
                ..Default::default()
            },
        }
    }

    #[test]
    fn name() {
        assert_eq!(server_name("0000000042"), "np0000000042");
    }

    #[test]
    fn precedence_and_formatting() {
        let m = build_metadata(&input());
        assert_eq!(m.meta[GROUPS], "prov,ubuntu,small");
        assert_eq!(m.meta["team"], "infra");
        assert_eq!(m.meta["req"], "100-0000000007");
        assert_eq!(m.meta["who"], "zuul");
        assert_eq!(m.meta["labels"], "['small']");
        assert_eq!(m.meta["project"], "org/repo");
        assert_eq!(m.meta[NODE_ID], "0000000042");
        assert_eq!(m.meta[POOL_NAME], "main");
        assert_eq!(m.meta[PROVIDER_NAME], "prov");
        assert!(!m.meta.contains_key("bad"));
        assert_eq!(m.errors.len(), 1);
        assert_eq!(m.errors[0].key, "bad");
        assert!(m.errors[0].to_string().contains("`bad`"), "{}", m.errors[0]);
    }

    #[test]
    fn from_request_record() {
        let r = NodeRequest {
            node_types: vec!["a".into(), "b".into()],
            requestor: None,
            ..Default::default()
        };
        let a = RequestAttributes::from_request(&r);
        let mut i = input();
        i.request = a;
        i.dynamic_instance_properties = BTreeMap::from([(
            "x".to_string(),
            "{request.requestor}/{request.labels}".to_string(),
        )]);
        assert_eq!(build_metadata(&i).meta["x"], "None/['a', 'b']");
    }

    /// `!r` prints floats and control characters as Python's `repr()` does.
    #[test]
    fn repr_of_floats_and_control_characters() {
        let mut i = input();
        i.request.created_time = Some(1e-7);
        i.request.requestor = Some("zu\x01ul\u{7f}".into());
        i.request.requestor_data = json!({"t": 1e16, "p": "tab\there"});
        i.dynamic_instance_properties = BTreeMap::from([
            ("t".to_string(), "{request.created_time!r}".to_string()),
            ("who".to_string(), "{request.requestor!r}".to_string()),
            ("data".to_string(), "{request.requestor_data}".to_string()),
        ]);
        let m = build_metadata(&i);
        assert_eq!(m.meta["t"], "1e-07");
        assert_eq!(m.meta["who"], "'zu\\x01ul\\x7f'");
        assert_eq!(m.meta["data"], "{'t': 1e+16, 'p': 'tab\\there'}");
    }
}
