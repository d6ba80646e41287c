//! Property tests of the record readers: whatever a ZooKeeper znode holds (a record
//! with hostile values, unknown keys, cut or flipped bytes, any bytes), `from_json`
//! returns a record or a [`super::ModelError`] naming it, never a panic; an accepted
//! record written back reads back the same; a node survives the cache's compact form.

use proptest::prelude::*;
use serde_json::Value;

use super::{
    BuildId, CompactNode, Component, ComponentKind, ImageBuild, ImageUpload, Node, NodeId,
    NodeRequest, RequestId, UploadId,
};
use crate::testing::fuzz::{self, mangled_json, record};

use crate::testing::fuzz::Kind::{self, *};

const NODE_FIELDS: &[(&str, Kind)] = &[
    ("state_time", Float),
    ("cloud", Text),
    ("provider", Text),
    ("pool", Text),
    ("type", Names),
    ("allocated_to", Text),
    ("az", Text),
    ("region", Text),
    ("public_ipv4", Text),
    ("private_ipv4", Text),
    ("public_ipv6", Text),
    ("host_id", Text),
    ("interface_ip", Text),
    ("connection_port", Int),
    ("ssh_port", Int),
    ("image_id", Text),
    ("launcher", Text),
    ("created_time", Float),
    ("external_id", Text),
    ("hostname", Text),
    ("comment", Text),
    ("user_data", Opaque),
    ("hold_job", Text),
    ("host_keys", Names),
    ("username", Text),
    ("connection_type", Text),
    ("shell_type", Text),
    ("hold_expiration", Opaque),
    ("slot", Int),
    ("attributes", Opaque),
    ("python_path", Text),
    ("tenant_name", Text),
    ("driver_data", Opaque),
    ("requestor", Text),
    ("node_properties", Object),
];

const REQUEST_FIELDS: &[(&str, Kind)] = &[
    ("state_time", Float),
    ("declined_by", Names),
    ("node_types", Names),
    ("nodes", Names),
    ("reuse", Bool),
    ("requestor", Text),
    ("requestor_data", Opaque),
    ("provider", Text),
    ("relative_priority", Int),
    ("event_id", Text),
    ("created_time", Float),
    ("tenant_name", Text),
];

const IMAGE_FIELDS: &[(&str, Kind)] = &[
    ("state_time", Float),
    ("builder", Text),
    ("builder_id", Text),
    ("formats", Text),
    ("username", Text),
    ("python_path", Text),
    ("shell_type", Text),
    ("external_id", Text),
    ("external_name", Text),
    ("format", Text),
];

const COMPONENT_FIELDS: &[(&str, Kind)] = &[
    ("hostname", Text),
    ("model_api", Int),
    ("version", Text),
    ("id", Text),
    ("name", Text),
    ("paused", Bool),
    ("priority", Int),
    ("provider_name", Text),
    ("supported_labels", Names),
];

fn one_of(values: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        9 => prop::sample::select(values).prop_map(|s| Value::String(s.to_string())),
        1 => fuzz::json_leaf(),
    ]
    .boxed()
}

fn node_record() -> impl Strategy<Value = Vec<u8>> {
    let states: &'static [&'static str] = &[
        "init", "building", "ready", "in-use", "used", "hold", "deleting", "failed",
    ];
    let resources = prop_oneof![
        3 => (0i64..64, 0i64..2, 0i64..65_536).prop_map(|(c, i, r)| serde_json::json!({
            "cores": c, "instances": i, "ram": r
        })),
        1 => fuzz::typed(Object),
        1 => Just(Value::Null),
    ]
    .boxed();
    mangled_json(
        record(
            NODE_FIELDS,
            vec![("state", one_of(states)), ("resources", resources)],
        )
        .prop_map(Value::Object),
    )
}

fn request_record() -> impl Strategy<Value = Vec<u8>> {
    let states = &["requested", "pending", "fulfilled", "failed"];
    mangled_json(record(REQUEST_FIELDS, vec![("state", one_of(states))]).prop_map(Value::Object))
}

fn image_record() -> impl Strategy<Value = Vec<u8>> {
    let states = &["building", "uploading", "ready", "deleting", "failed"];
    mangled_json(record(IMAGE_FIELDS, vec![("state", one_of(states))]).prop_map(Value::Object))
}

fn component_record() -> impl Strategy<Value = Vec<u8>> {
    let states = &["init", "running", "paused", "stopped"];
    let kinds = &["launcher", "builder", "pool"];
    let fixed = vec![("state", one_of(states)), ("kind", one_of(kinds))];
    mangled_json(record(COMPONENT_FIELDS, fixed).prop_map(Value::Object))
}

fn check_node(bytes: &[u8]) -> Result<(), TestCaseError> {
    let id = NodeId::from("0000000042");
    match Node::from_json(&id, bytes) {
        Ok(Some(n)) => {
            let again = Node::from_json(&id, &n.to_json())
                .map_err(|e| TestCaseError::fail(format!("re-read failed: {e}")))?;
            prop_assert_eq!(again.as_ref(), Some(&n));
            let compact = CompactNode::from(n.clone());
            prop_assert_eq!(compact.to_node().to_json(), n.to_json());
            prop_assert_eq!(compact.resources_quota(), n.resources_quota());
            prop_assert_eq!(compact.to_node(), n);
        }
        Ok(None) => {}
        Err(e) => prop_assert!(e.to_string().contains("node 0000000042"), "{e}"),
    }
    Ok(())
}

/// The node listing's cells of a record read straight from its JSON
/// ([`ListedNode`], with [`Node::from_json`] for what it leaves alone, as `nodepool list`
/// reads them) equal those of the record read as a [`Node`]; `None` = not listed.
/// Returns whether the JSON reader took the record itself.
fn check_listed(bytes: &[u8]) -> Result<bool, TestCaseError> {
    use crate::listing::{listed_node_row, owned_node_row, ListedNode, NodeColumns};
    let id = NodeId::from("0000000042");
    let now = 1.7e9;
    for columns in [NodeColumns::Brief, NodeColumns::Detail] {
        let mut expected = Vec::new();
        let expected = match Node::from_json(&id, bytes) {
            Ok(Some(n)) => {
                owned_node_row(n, true, now, columns, &mut expected);
                Some(expected)
            }
            _ => None,
        };
        let mut row = Vec::new();
        let (got, direct) = match ListedNode::parse(&id, bytes) {
            Some(Some(n)) => {
                listed_node_row(&n, true, now, columns, &mut row);
                (Some(row), true)
            }
            Some(None) => (None, true),
            None => match Node::from_json(&id, bytes) {
                Ok(Some(n)) => {
                    owned_node_row(n, true, now, columns, &mut row);
                    (Some(row), false)
                }
                _ => (None, false),
            },
        };
        prop_assert_eq!(&got, &expected, "{}", String::from_utf8_lossy(bytes));
        if direct && got.is_some() {
            prop_assert!(
                matches!(Node::from_json(&id, bytes), Ok(Some(_))),
                "taken by ListedNode, refused by Node::from_json"
            );
        }
        if columns == NodeColumns::Detail {
            return Ok(direct);
        }
    }
    Ok(false)
}

proptest! {
    #![proptest_config(fuzz::config(1000, 0x4d4f_0001))]

    #[test]
    fn node_listing_rows(bytes in node_record()) {
        check_listed(&bytes)?;
    }

    #[test]
    fn node_records(bytes in node_record()) {
        check_node(&bytes)?;
    }

    #[test]
    fn request_records(bytes in request_record()) {
        let id = RequestId::from("100-0000000007");
        match NodeRequest::from_json(&id, &bytes) {
            Ok(Some(r)) => {
                let again = NodeRequest::from_json(&id, &r.to_json())
                    .map_err(|e| TestCaseError::fail(format!("re-read failed: {e}")))?;
                prop_assert_eq!(again, Some(r));
            }
            Ok(None) => {}
            Err(e) => prop_assert!(e.to_string().contains("100-0000000007"), "{e}"),
        }
    }

    #[test]
    fn image_records(bytes in image_record()) {
        let build = BuildId::from("0123456789abcdef0123456789abcdef");
        match ImageBuild::from_json("img", &build, &bytes) {
            Ok(Some(b)) => {
                let again = ImageBuild::from_json("img", &build, &b.to_json())
                    .map_err(|e| TestCaseError::fail(format!("re-read failed: {e}")))?;
                prop_assert_eq!(again, Some(b));
            }
            Ok(None) => {}
            Err(e) => prop_assert!(e.to_string().contains("img/"), "{e}"),
        }
        let upload = UploadId::from("0000000003");
        match ImageUpload::from_json("img", &build, "prov", &upload, &bytes) {
            Ok(Some(u)) => {
                let again = ImageUpload::from_json("img", &build, "prov", &upload, &u.to_json())
                    .map_err(|e| TestCaseError::fail(format!("re-read failed: {e}")))?;
                prop_assert_eq!(again, Some(u));
            }
            Ok(None) => {}
            Err(e) => prop_assert!(e.to_string().contains("img/"), "{e}"),
        }
    }

    #[test]
    fn component_records(bytes in component_record()) {
        for kind in [ComponentKind::Launcher, ComponentKind::Builder, ComponentKind::Pool] {
            match Component::from_json(kind, "host0000000001", &bytes) {
                Ok(Some(c)) => {
                    let again = Component::from_json(kind, "host0000000001", &c.to_json())
                        .map_err(|e| TestCaseError::fail(format!("re-read failed: {e}")))?;
                    prop_assert_eq!(again, Some(c));
                }
                Ok(None) => {}
                Err(e) => prop_assert!(e.to_string().contains("host0000000001"), "{e}"),
            }
        }
    }
}

/// The generators must reach the success paths too: a good share of the generated
/// records is accepted (else the round-trip checks above would test nothing).
#[test]
fn generated_records_are_often_valid() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    fn share(strategy: impl Strategy<Value = Vec<u8>>, ok: impl Fn(&[u8]) -> bool) -> usize {
        let mut runner = TestRunner::new(fuzz::config(1, 0x4d4f_0002));
        (0..200)
            .filter(|_| ok(&strategy.new_tree(&mut runner).expect("a value").current()))
            .count()
    }
    let build = BuildId::from("0123456789abcdef0123456789abcdef");
    let counts = [
        share(node_record(), |b| {
            matches!(Node::from_json(&NodeId::from("1"), b), Ok(Some(_)))
        }),
        share(request_record(), |b| {
            matches!(
                NodeRequest::from_json(&RequestId::from("100-1"), b),
                Ok(Some(_))
            )
        }),
        share(image_record(), |b| {
            matches!(ImageBuild::from_json("i", &build, b), Ok(Some(_)))
        }),
        share(component_record(), |b| {
            matches!(
                Component::from_json(ComponentKind::Pool, "c", b),
                Ok(Some(_))
            )
        }),
    ];
    for (what, n) in ["node", "request", "build", "component"].iter().zip(counts) {
        assert!(n >= 30, "only {n} of 200 generated {what} records accepted");
    }
}
