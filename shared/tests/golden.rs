//! Golden fixtures captured from a running Python Nodepool 11: every record must read and
//! re-serialise to an equal JSON value (the capture tool sorted the keys, so compare as
//! values), and our output must follow Python's `toDict` key order.

use nodepool_shared::model::{
    paths, CompactNode, Component, ComponentKind, Node, NodeId, NodeRequest, NodeState, RequestId,
    RequestState, ZkPath,
};
use serde_json::Value;

use super::goldens::golden;

fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

const NODE_KEY_ORDER: [&str; 37] = [
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
];

#[test]
fn golden_nodes_round_trip() {
    let cases = [
        ("node-init.json", NodeState::Init),
        ("node-building.json", NodeState::Building),
        ("node-ready.json", NodeState::Ready),
        ("node-in-use.json", NodeState::InUse),
        ("node-used.json", NodeState::Used),
        ("node-deleting.json", NodeState::Deleting),
        ("node-deleted.json", NodeState::Deleted),
    ];
    for (file, state) in cases {
        let g = golden(file);
        let path = g["path"].as_str().unwrap();
        let ZkPath::Node(id) = paths::classify(path) else {
            panic!("{file}: {path} is not a node path");
        };
        assert_eq!(id, NodeId::from("0000004351"));
        let data = serde_json::to_vec(&g["data"]).unwrap();
        let node = Node::from_json(&id, &data).unwrap().expect("node present");
        assert_eq!(node.state, state, "{file}");
        assert_eq!(node.id, id);
        let out = node.to_value();
        assert_eq!(out, g["data"], "{file}: value differs after round trip");
        assert_eq!(keys(&out), NODE_KEY_ORDER, "{file}: key order");
        // The bytes we write parse back to the same value and the same node.
        let bytes = node.to_json();
        let reparsed: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(reparsed, g["data"], "{file}");
        assert_eq!(
            Node::from_json(&id, &bytes).unwrap().unwrap(),
            node,
            "{file}"
        );
        assert_eq!(paths::node(&id), path);
    }
    let ready = golden("node-ready.json");
    let node = Node::from_json(
        &NodeId::from("0000004351"),
        ready["data"].to_string().as_bytes(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(node.allocated_to, Some(RequestId::from("100-0000002905")));
    assert_eq!(node.node_type, ["fake-label"]);
    assert_eq!(node.host_keys, ["ssh-rsa FAKEKEY"]);
    assert_eq!(node.username, None);
    let q = node.resources_quota().unwrap();
    assert_eq!(
        (q.get("cores"), q.get("instances"), q.get("ram")),
        (4.0, 1.0, 8192.0)
    );
}

/// The tree cache reads each golden record straight into its compact form: the same
/// node as through `Node`, written back as the captured record, unknown keys included.
#[test]
fn golden_nodes_decode_compact() {
    for file in super::goldens::NODE_FILES {
        let g = golden(file);
        let id = NodeId::from("0000004351");
        let mut data = g["data"].clone();
        for extra in [false, true] {
            if extra {
                // Keys a later Nodepool or Zuul may add are kept, in order.
                let obj = data.as_object_mut().unwrap();
                obj.insert("zuul_future".into(), serde_json::json!({"a": [1, null]}));
                obj.insert("id".into(), Value::from("0000004351"));
            }
            let bytes = serde_json::to_vec(&data).unwrap();
            let compact = CompactNode::from_json(&id, &bytes).unwrap().expect("node");
            let via_node = CompactNode::from(Node::from_json(&id, &bytes).unwrap().unwrap());
            assert_eq!(compact, via_node, "{file}");
            assert_eq!(compact.to_node().to_value(), data, "{file}: written back");
            assert_eq!(
                compact.to_node().to_json(),
                Node::from_json(&id, &bytes).unwrap().unwrap().to_json(),
                "{file}"
            );
        }
    }
}

#[test]
fn golden_node_bytes_look_like_python() {
    let g = golden("node-init.json");
    let node = Node::from_json(
        &NodeId::from("0000004351"),
        g["data"].to_string().as_bytes(),
    )
    .unwrap()
    .unwrap();
    let text = String::from_utf8(node.to_json()).unwrap();
    assert!(
        text.starts_with(r#"{"state": "init", "state_time": 1795550245.227989, "cloud": null, "provider": "fake-provider", "pool": "main", "type": ["fake-label"], "allocated_to": "100-0000002905""#),
        "{text}"
    );
    assert!(
        text.ends_with(r#""requestor": "zk_dump-trace", "node_properties": {}}"#),
        "{text}"
    );
}

#[test]
fn golden_requests_round_trip() {
    let cases = [
        ("request-requested.json", RequestState::Requested),
        ("request-pending.json", RequestState::Pending),
        ("request-fulfilled.json", RequestState::Fulfilled),
    ];
    for (file, state) in cases {
        let g = golden(file);
        let path = g["path"].as_str().unwrap();
        let ZkPath::Request(id) = paths::classify(path) else {
            panic!("{file}: {path} is not a request path");
        };
        assert_eq!(id.precedence(), "100");
        assert_eq!(id.sequence(), "0000002905");
        let data = serde_json::to_vec(&g["data"]).unwrap();
        let req = NodeRequest::from_json(&id, &data)
            .unwrap()
            .expect("request present");
        assert_eq!(req.state, state);
        let out = req.to_value();
        assert_eq!(out, g["data"], "{file}");
        assert_eq!(
            keys(&out),
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
        let reparsed: Value = serde_json::from_slice(&req.to_json()).unwrap();
        assert_eq!(reparsed, g["data"], "{file}");
    }
    let g = golden("request-fulfilled.json");
    let req = NodeRequest::from_json(
        &RequestId::from("100-0000002905"),
        g["data"].to_string().as_bytes(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(req.nodes, [NodeId::from("0000004351")]);
    assert!(!req.reuse);
}

#[test]
fn golden_components_round_trip() {
    let g = golden("components.json");
    for kind in [ComponentKind::Launcher, ComponentKind::Pool] {
        let entry = &g[kind.as_str()];
        let path = entry["path"].as_str().unwrap();
        let ZkPath::Component(k, name) = paths::classify(path) else {
            panic!("{path} is not a component path");
        };
        assert_eq!(k, kind);
        let data = serde_json::to_vec(&entry["data"]).unwrap();
        let c = Component::from_json(k, &name, &data).unwrap().unwrap();
        assert_eq!(c.kind, kind);
        assert_eq!(c.to_value(), entry["data"], "{kind}");
        // sort_keys=True: our bytes must have the keys sorted, like the capture.
        let bytes = c.to_json();
        let reparsed: Value = serde_json::from_slice(&bytes).unwrap();
        let mut sorted = keys(&reparsed);
        sorted.sort();
        assert_eq!(keys(&reparsed), sorted);
        assert_eq!(reparsed, entry["data"]);
    }
    let pool = &g["pool"]["data"];
    let c = Component::from_json(
        ComponentKind::Pool,
        "vm0000000002",
        pool.to_string().as_bytes(),
    )
    .unwrap()
    .unwrap();
    let info = c.pool.unwrap();
    assert_eq!(info.provider_name.as_deref(), Some("fake-provider"));
    assert_eq!(
        info.supported_labels,
        ["fake-label", "fake-label-2", "fake-label-3"]
    );
    // The lock contenders seen in the capture classify as lock children.
    for p in g["lock_children_seen"].as_array().unwrap() {
        match paths::classify(p.as_str().unwrap()) {
            ZkPath::NodeLock(_, Some(child)) | ZkPath::RequestLock(_, Some(child)) => {
                assert!(child.contains("__lock__"));
            }
            other => panic!("{p}: {other:?}"),
        }
    }
}
