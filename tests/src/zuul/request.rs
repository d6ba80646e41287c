//! What Zuul writes when it submits a node request, and what a
//! wait for it can end in.
//!
//! The record is built with the model's [`NodeRequest`], but Zuul does not write the
//! model's full key set: its `NodeRequest.toDict()` for a new request has exactly
//! [`ZUUL_REQUEST_KEYS`], in that order, and omits `declined_by`, `nodes` and `reuse`
//! (readers default them). [`zuul_submission`] takes the values from the model's writer
//! and keeps only Zuul's keys.

use nodepool_shared::model::NodeRequest;
use serde_json::{json, Map, Value};

use super::error::{ZuulError, ZuulResult};

/// The keys of a request as Zuul creates it, in Zuul's order.
pub const ZUUL_REQUEST_KEYS: [&str; 10] = [
    "requestor_data",
    "node_types",
    "requestor",
    "created_time",
    "provider",
    "state",
    "state_time",
    "relative_priority",
    "event_id",
    "tenant_name",
];

/// The keys of Zuul's `requestor_data`, in Zuul's order.
pub const ZUUL_REQUESTOR_DATA_KEYS: [&str; 6] = [
    "build_set_uuid",
    "tenant_name",
    "pipeline_name",
    "job_uuid",
    "job_name",
    "span_info",
];

/// The precedences Zuul uses: 100 (high), 200 (normal), 300 (low).
pub const ZUUL_PRIORITIES: [u16; 3] = [100, 200, 300];

/// The id prefix for `priority` (`'{:0>3}'` in Zuul), if it is one Zuul uses.
pub fn precedence(priority: u16) -> ZuulResult<String> {
    if ZUUL_PRIORITIES.contains(&priority) {
        Ok(format!("{priority:0>3}"))
    } else {
        Err(ZuulError::InvalidPriority(priority))
    }
}

/// Zuul's opaque `requestor_data` for one job of one buildset.
pub fn requestor_data(
    build_set_uuid: &str,
    tenant_name: &str,
    pipeline_name: &str,
    job_uuid: &str,
    job_name: &str,
) -> Value {
    json!({
        "build_set_uuid": build_set_uuid,
        "tenant_name": tenant_name,
        "pipeline_name": pipeline_name,
        "job_uuid": job_uuid,
        "job_name": job_name,
        "span_info": null,
    })
}

/// The JSON object Zuul writes for a new request: the model's values for
/// [`ZUUL_REQUEST_KEYS`] only, in Zuul's order.
pub fn zuul_submission(req: &NodeRequest) -> Value {
    let full = req.to_value();
    let mut d = Map::with_capacity(ZUUL_REQUEST_KEYS.len());
    for key in ZUUL_REQUEST_KEYS {
        d.insert(
            key.to_string(),
            full.get(key).cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(d)
}

/// How waiting for a request ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The request is `fulfilled`; its `nodes` are in `node_types` order.
    Fulfilled(NodeRequest),
    /// The request is `failed`.
    Failed(NodeRequest),
    /// The request znode is gone (deleted by someone else).
    Gone,
}

impl Outcome {
    /// `fulfilled`, `failed` or `gone`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Fulfilled(_) => "fulfilled",
            Outcome::Failed(_) => "failed",
            Outcome::Gone => "gone",
        }
    }

    /// The request, unless it is gone.
    pub fn request(&self) -> Option<&NodeRequest> {
        match self {
            Outcome::Fulfilled(r) | Outcome::Failed(r) => Some(r),
            Outcome::Gone => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_formats() {
        assert_eq!(precedence(100).unwrap(), "100");
        assert_eq!(precedence(300).unwrap(), "300");
        assert!(matches!(
            precedence(900),
            Err(ZuulError::InvalidPriority(900))
        ));
        assert!(precedence(99).is_err());
    }

    #[test]
    fn submission_has_zuul_keys_only() {
        let mut req = NodeRequest::new(vec!["a".into(), "b".into()], "sys");
        req.requestor_data = requestor_data("bs", "t", "check", "ju", "job");
        req.tenant_name = Some("t".into());
        req.event_id = Some("ev".into());
        let v = zuul_submission(&req);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ZUUL_REQUEST_KEYS);
        let rd: Vec<&str> = v["requestor_data"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(rd, ZUUL_REQUESTOR_DATA_KEYS);
        assert_eq!(v["node_types"], json!(["a", "b"]));
        assert_eq!(v["state"], json!("requested"));
        assert_eq!(v["provider"], Value::Null);
        assert_eq!(v["relative_priority"], json!(0));
        assert!(v["created_time"].is_f64());
    }
}
