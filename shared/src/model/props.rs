//! Property tests of the record readers: whatever a ZooKeeper znode holds (a record
//! with hostile values, unknown keys, cut or flipped bytes, any bytes), `from_json`
//! returns a record or a [`super::ModelError`] naming it, never a panic; an accepted
//! record written back reads back the same; a node survives the cache's compact form,
//! and is read into it straight from its JSON exactly as through a [`Node`].

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

/// A node record as text, with what a `serde_json::Value` cannot show: keys in any
/// order, duplicate keys (the last counts), escaped keys, `resources` near the
/// standard shape (duplicate keys in it too), invalid states.
fn node_record_text() -> impl Strategy<Value = Vec<u8>> {
    let states: &'static [&'static str] = &["init", "ready", "in-use", "hold", "bogus"];
    let text = |v: Value| v.to_string();
    let field = prop_oneof![
        8 => prop::sample::select(NODE_FIELDS)
            .prop_flat_map(move |(k, kind)| fuzz::typed(kind).prop_map(move |v| (k.to_string(), text(v)))),
        2 => one_of(states).prop_map(move |v| ("state".to_string(), text(v))),
        3 => resources_text().prop_map(|v| ("resources".to_string(), v)),
        1 => (fuzz::hostile_string(), fuzz::json_leaf()).prop_map(move |(k, v)| (k, text(v))),
    ];
    let record = (
        one_of(states),
        prop::collection::vec((field, any::<bool>()), 0..24),
    )
        .prop_map(|(state, entries)| {
            let mut out = format!("{{\"state\": {state}");
            for ((k, v), escaped) in entries {
                out.push_str(&format!(", {}: {v}", key_text(&k, escaped)));
            }
            out.push('}');
            out.into_bytes()
        });
    mangled_text(record)
}

/// A key as JSON text; `escaped`: its first character written as `\uXXXX`.
fn key_text(k: &str, escaped: bool) -> String {
    match k.chars().next() {
        Some(c) if escaped && u32::from(c) < 0x10000 => {
            let rest = serde_json::to_string(&k[c.len_utf8()..]).unwrap_or_default();
            format!("\"\\u{:04x}{}", u32::from(c), &rest[1..])
        }
        _ => serde_json::to_string(k).unwrap_or_default(),
    }
}

/// `resources` as text: the standard shape and near it (another order, floats, numbers
/// at the edges of i64, a fourth key, duplicate keys), or anything.
fn resources_text() -> BoxedStrategy<String> {
    let int = prop_oneof![
        4 => (0i64..100_000).prop_map(|i| i.to_string()),
        1 => prop::sample::select(&[i64::MIN, -1, i64::MAX][..]).prop_map(|i| i.to_string()),
        1 => Just(u64::MAX.to_string()),
        1 => Just("4.0".to_string()),
        1 => Just("null".to_string()),
    ];
    let keys = prop::sample::select(&["cores", "instances", "ram", "volumes"][..]);
    prop_oneof![
        4 => (int.clone(), int.clone(), int.clone())
            .prop_map(|(c, i, r)| format!(r#"{{"cores": {c}, "instances": {i}, "ram": {r}}}"#)),
        3 => prop::collection::vec((keys, int), 0..5).prop_map(|kv| {
            let kv: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            format!("{{{}}}", kv.join(", "))
        }),
        1 => fuzz::json_value().prop_map(|v| v.to_string()),
    ]
    .boxed()
}

/// `text`, or cut, or with a byte flipped.
fn mangled_text(text: impl Strategy<Value = Vec<u8>> + 'static) -> impl Strategy<Value = Vec<u8>> {
    let text = text.boxed();
    prop_oneof![6 => text.clone(), 2 => fuzz::damaged(text)]
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

/// [`CompactNode::from_json`] reads a record as [`Node::from_json`] and
/// [`CompactNode::from`] do: the same node, written back as the same bytes, or the same
/// error. Returns whether the record was read straight from its JSON (not left to
/// `Node::from_json`).
fn check_compact(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let id = NodeId::from("0000000042");
    let text = String::from_utf8_lossy(bytes);
    let expected = Node::from_json(&id, bytes)
        .map(|n| n.map(CompactNode::from))
        .map_err(|e| e.to_string());
    let direct = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        super::compact_json::parse(&id, bytes)
    };
    if let Some(d) = &direct {
        let Ok(Some(e)) = &expected else {
            return Err(TestCaseError::fail(format!(
                "read straight from JSON, refused by Node::from_json: {text}"
            )));
        };
        prop_assert_eq!(d, e, "{}", text);
        prop_assert_eq!(d.to_node().to_json(), e.to_node().to_json(), "{}", text);
        prop_assert_eq!(d.to_node(), e.to_node(), "{}", text);
    }
    let got = CompactNode::from_json(&id, bytes).map_err(|e| e.to_string());
    prop_assert_eq!(got, expected, "{}", text);
    Ok(direct.is_some())
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
    fn compact_records(bytes in node_record()) {
        check_compact(&bytes)?;
    }

    #[test]
    fn compact_record_texts(bytes in node_record_text()) {
        check_compact(&bytes)?;
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

/// Both generators reach the direct reader's success path often, and its refusals too
/// (else the equality checks above would test little).
#[test]
fn compact_generators_reach_both_paths() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let id = NodeId::from("1");
    let mut runner = TestRunner::new(fuzz::config(1, 0x4d4f_0003));
    for (what, strategy) in [
        ("records", node_record().boxed()),
        ("texts", node_record_text().boxed()),
    ] {
        let (mut direct, mut refused) = (0, 0);
        for _ in 0..400 {
            let bytes = strategy.new_tree(&mut runner).expect("a value").current();
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match super::compact_json::parse(&id, &bytes) {
                Some(_) => direct += 1,
                None => refused += 1,
            }
        }
        assert!(direct >= 100, "{what}: only {direct} of 400 read directly");
        assert!(refused >= 40, "{what}: only {refused} of 400 refused");
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
