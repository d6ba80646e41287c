//! The fake Zuul (`nodepool_tests::zuul`) and the `zuul-sim` binary against a real
//! ZooKeeper. No launcher exists yet, so a tiny in-test stub launcher answers requests: it
//! watches `/nodepool/requests`, creates one ready node per label allocated to the request
//! and marks the request fulfilled (or failed, for the label `fail-me`).

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use nodepool_shared::model::{
    paths, Node, NodeId, NodeRequest, NodeState, RequestId, RequestState,
};
use nodepool_shared::testing::{four_letter_word, wait_for, TestZk};
use nodepool_shared::zk::{ZkClient, ZkLock};
use nodepool_tests::zuul::{FakeZuul, Outcome, ZuulError};
use regex::Regex;
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(30);
const FAIL_LABEL: &str = "fail-me";
const STUB_KEY: &str = "stub_future_key";

// ------------------------------------------------------------------------------------
// Stub launcher

struct StubLauncher {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    client: ZkClient,
}

impl StubLauncher {
    async fn start(zk: &TestZk) -> StubLauncher {
        let client = zk.client().await;
        client.ensure_path(paths::REQUESTS).await.unwrap();
        client.ensure_path(paths::NODES).await.unwrap();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(stub_loop(client.clone(), rx));
        StubLauncher { stop, task, client }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(WAIT, self.task).await;
        self.client.close().await;
    }
}

/// Watches the request children; answers every new `requested` request once.
async fn stub_loop(client: ZkClient, mut stop: watch::Receiver<bool>) {
    let mut seen = HashSet::new();
    loop {
        let Ok(Some((mut children, watcher))) =
            client.get_children_and_watch(paths::REQUESTS).await
        else {
            return;
        };
        children.sort();
        for child in children {
            if seen.insert(child.clone()) {
                if let Err(e) = stub_handle(&client, &RequestId::from(child.as_str())).await {
                    eprintln!("stub launcher: request {child}: {e}");
                }
            }
        }
        tokio::select! {
            _ = watcher.changed() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn stub_handle(client: &ZkClient, id: &RequestId) -> Result<(), String> {
    let mut lock = ZkLock::new(client, &paths::request_lock(id), b"");
    if !lock.try_acquire().await.map_err(|e| e.to_string())? {
        return Ok(());
    }
    let res = stub_fulfil(client, id).await;
    let _ = lock.release().await;
    res
}

async fn stub_fulfil(client: &ZkClient, id: &RequestId) -> Result<(), String> {
    let path = paths::request(id);
    let Some((data, stat)) = client.get(&path).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let Some(mut req) = NodeRequest::from_json(id, &data).map_err(|e| e.to_string())? else {
        return Ok(());
    };
    if req.state != RequestState::Requested {
        return Ok(());
    }
    if req.node_types.iter().any(|l| l == FAIL_LABEL) {
        req.set_state(RequestState::Failed);
    } else {
        for label in &req.node_types {
            let mut node = Node::new();
            node.set_state(NodeState::Ready);
            node.node_type = vec![label.clone()];
            node.allocated_to = Some(id.clone());
            node.provider = Some("stub-provider".into());
            node.pool = Some("main".into());
            node.launcher = Some("stub-launcher".into());
            node.connection_type = Some("ssh".into());
            node.interface_ip = Some("127.0.0.1".into());
            node.tenant_name = req.tenant_name.clone();
            node.requestor = req.requestor.clone();
            node.extra.insert(STUB_KEY.into(), json!({"kept": true}));
            let created = client
                .create_sequential(&paths::node_create_prefix(), &node.to_json(), false)
                .await
                .map_err(|e| e.to_string())?;
            let nid = created.rsplit('/').next().unwrap_or_default().to_string();
            req.nodes.push(NodeId::from(nid));
        }
        req.set_state(RequestState::Fulfilled);
    }
    client
        .set(&path, &req.to_json(), Some(stat.version))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

// ------------------------------------------------------------------------------------
// Helpers

fn labels(l: &[&str]) -> Vec<String> {
    l.iter().map(|s| s.to_string()).collect()
}

async fn raw(client: &ZkClient, path: &str) -> Option<Map<String, Value>> {
    let (data, _) = client.get(path).await.unwrap()?;
    Some(serde_json::from_slice(&data).unwrap())
}

async fn lock_children(client: &ZkClient, node: &NodeId) -> Vec<String> {
    client
        .get_children(&paths::node_lock(node))
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn fulfilled(zuul: &FakeZuul, id: &RequestId) -> NodeRequest {
    match zuul.wait(id, WAIT).await.unwrap() {
        Outcome::Fulfilled(r) => r,
        other => panic!("request {id}: expected fulfilled, got {other:?}"),
    }
}

fn kazoo_lock_name() -> Regex {
    Regex::new(r"^[0-9a-f]{32}__lock__\d{10}$").unwrap()
}

// ------------------------------------------------------------------------------------
// Library

#[tokio::test]
async fn submit_writes_exactly_what_zuul_writes() {
    let zk = TestZk::shared().await;
    let client = zk.client().await;
    let zuul = FakeZuul::new(client.clone(), "sys-1234");
    let id = zuul
        .submit(&labels(&["a", "b"]), 100, 3, "tenant-x", Some("prov-1"))
        .await
        .unwrap();
    assert!(
        Regex::new(r"^100-\d{10}$").unwrap().is_match(id.as_str()),
        "{id}"
    );
    let path = paths::request(&id);
    let (data, stat) = client.get(&path).await.unwrap().unwrap();
    assert_eq!(stat.ephemeral_owner, 0, "Zuul's requests are persistent");
    let text = String::from_utf8(data.clone()).unwrap();
    assert!(text.starts_with("{\"requestor_data\": {"), "{text}");
    let v: Map<String, Value> = serde_json::from_slice(&data).unwrap();
    let keys: Vec<&str> = v.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "requestor_data",
            "node_types",
            "requestor",
            "created_time",
            "provider",
            "state",
            "state_time",
            "relative_priority",
            "event_id",
            "tenant_name"
        ]
    );
    let rd = v["requestor_data"].as_object().unwrap();
    let rd_keys: Vec<&str> = rd.keys().map(String::as_str).collect();
    assert_eq!(
        rd_keys,
        [
            "build_set_uuid",
            "tenant_name",
            "pipeline_name",
            "job_uuid",
            "job_name",
            "span_info"
        ]
    );
    assert_eq!(rd["tenant_name"], json!("tenant-x"));
    assert_eq!(rd["pipeline_name"], json!("check"));
    assert_eq!(v["node_types"], json!(["a", "b"]));
    assert_eq!(v["requestor"], json!("sys-1234"));
    assert_eq!(v["provider"], json!("prov-1"));
    assert_eq!(v["state"], json!("requested"));
    assert_eq!(v["relative_priority"], json!(3));
    assert_eq!(v["tenant_name"], json!("tenant-x"));
    assert!(v["created_time"].is_f64() && v["state_time"].is_f64());
    let hex32 = Regex::new(r"^[0-9a-f]{32}$").unwrap();
    for s in [&v["event_id"], &rd["build_set_uuid"], &rd["job_uuid"]] {
        assert!(hex32.is_match(s.as_str().unwrap()), "{s}");
    }
    // The model reads it with Nodepool's defaults for the keys Zuul omits.
    let req = NodeRequest::from_json(&id, &data).unwrap().unwrap();
    assert!(req.reuse && req.declined_by.is_empty() && req.nodes.is_empty());

    // Default provider is null; bad input is refused before anything is written.
    let id2 = zuul
        .submit(&labels(&["a"]), 300, 0, "t", None)
        .await
        .unwrap();
    assert!(id2.as_str().starts_with("300-"));
    assert_eq!(
        raw(&client, &paths::request(&id2)).await.unwrap()["provider"],
        Value::Null
    );
    assert!(matches!(
        zuul.submit(&labels(&["a"]), 150, 0, "t", None).await,
        Err(ZuulError::InvalidPriority(150))
    ));
    assert!(matches!(
        zuul.submit(&[], 200, 0, "t", None).await,
        Err(ZuulError::NoLabels)
    ));
    client.close().await;
}

#[tokio::test]
async fn submit_wait_accept_use_return() {
    let zk = TestZk::shared().await;
    let stub = StubLauncher::start(&zk).await;
    let client = zk.client().await;
    let zuul = FakeZuul::new(client.clone(), "sys-a");
    let id = zuul
        .submit(&labels(&["small", "large"]), 200, 0, "tenant-one", None)
        .await
        .unwrap();
    let req = fulfilled(&zuul, &id).await;
    assert_eq!(req.nodes.len(), 2);
    let before: Vec<Map<String, Value>> = {
        let mut v = Vec::new();
        for n in &req.nodes {
            v.push(raw(&client, &paths::node(n)).await.unwrap());
        }
        v
    };

    let mut held = zuul.accept(&req).await.unwrap();
    assert!(
        client.exists(&paths::request(&id)).await.unwrap().is_none(),
        "accept deletes the request"
    );
    assert_eq!(held.len(), 2);
    let name_re = kazoo_lock_name();
    for (h, (label, nid)) in held.iter().zip(req.node_types.iter().zip(&req.nodes)) {
        assert_eq!(h.id(), nid);
        assert_eq!(h.label(), label);
        assert_eq!(h.request(), &id);
        assert!(h.is_locked());
        let children = lock_children(&client, nid).await;
        assert_eq!(children.len(), 1, "{children:?}");
        assert!(name_re.is_match(&children[0]), "{children:?}");
        assert_eq!(
            h.lock_node_path().unwrap(),
            format!("{}/{}", paths::node_lock(nid), children[0])
        );
        assert_eq!(h.node().unwrap().node_type, vec![label.clone()]);
    }

    zuul.use_nodes(&mut held, "org/project").await.unwrap();
    for (h, orig) in held.iter().zip(&before) {
        let now = raw(&client, &paths::node(h.id())).await.unwrap();
        assert_eq!(now["state"], json!("in-use"));
        assert_eq!(
            now["user_data"],
            json!({"zuul_system": "sys-a", "project_name": "org/project"})
        );
        assert_eq!(now["id"], json!(h.id().as_str()));
        assert!(now["state_time"].as_f64() > orig["state_time"].as_f64());
        // Every key read is written back, unknown ones included, plus `id`.
        for (k, v) in orig {
            assert!(now.contains_key(k), "key {k} dropped");
            if !["state", "state_time", "user_data"].contains(&k.as_str()) {
                assert_eq!(&now[k], v, "key {k} changed");
            }
        }
        assert_eq!(now[STUB_KEY], json!({"kept": true}));
        assert_eq!(now.len(), orig.len() + 1);
        let keys: Vec<&str> = now.keys().take(2).map(String::as_str).collect();
        assert_eq!(keys, ["id", "state"]);
    }

    let ids: Vec<NodeId> = held.iter().map(|h| h.id().clone()).collect();
    zuul.return_nodes(held).await.unwrap();
    for nid in &ids {
        let now = raw(&client, &paths::node(nid)).await.unwrap();
        assert_eq!(now["state"], json!("used"));
        assert!(lock_children(&client, nid).await.is_empty(), "unlocked");
        let n = Node::from_json(nid, &serde_json::to_vec(&now).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(n.state, NodeState::Used);
    }
    stub.stop().await;
    client.close().await;
}

#[tokio::test]
async fn failed_request_is_reported_and_deleted_on_accept() {
    let zk = TestZk::shared().await;
    let stub = StubLauncher::start(&zk).await;
    let client = zk.client().await;
    let zuul = FakeZuul::new(client.clone(), "sys-f");
    let id = zuul
        .submit(&labels(&[FAIL_LABEL]), 200, 0, "t", None)
        .await
        .unwrap();
    let req = match zuul.wait(&id, WAIT).await.unwrap() {
        Outcome::Failed(r) => r,
        other => panic!("expected failed, got {other:?}"),
    };
    assert_eq!(req.state, RequestState::Failed);
    let err = zuul.accept(&req).await.unwrap_err();
    assert!(matches!(err, ZuulError::NotFulfilled { .. }), "{err}");
    assert!(err.to_string().contains(id.as_str()), "{err}");
    assert!(client.exists(&paths::request(&id)).await.unwrap().is_none());
    stub.stop().await;
    client.close().await;
}

#[tokio::test]
async fn cancel_and_wait_timeout() {
    let zk = TestZk::shared().await;
    let client = zk.client().await;
    let zuul = FakeZuul::new(client.clone(), "sys-c");
    let id = zuul
        .submit(&labels(&["x"]), 200, 0, "t", None)
        .await
        .unwrap();
    // Nobody answers: the wait ends at its timeout and leaves the request in place.
    let err = zuul
        .wait(&id, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, ZuulError::WaitTimeout { .. }), "{err}");
    assert!(client.exists(&paths::request(&id)).await.unwrap().is_some());

    // A waiter blocked on the watch wakes up when the request is deleted.
    let waiter = {
        let zuul = zuul.clone();
        let id = id.clone();
        tokio::spawn(async move { zuul.wait(&id, WAIT).await })
    };
    assert!(zuul.cancel(&id).await.unwrap());
    let out = tokio::time::timeout(WAIT, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(out, Outcome::Gone);
    assert!(client.exists(&paths::request(&id)).await.unwrap().is_none());
    assert!(
        !zuul.cancel(&id).await.unwrap(),
        "second cancel: already gone"
    );
    client.close().await;
}

#[tokio::test]
async fn revise_priority_only_under_the_request_lock() {
    let zk = TestZk::shared().await;
    let client = zk.client().await;
    let launcher = zk.client().await;
    let zuul = FakeZuul::new(client.clone(), "sys-r");
    let id = zuul
        .submit(&labels(&["x"]), 200, 0, "t", None)
        .await
        .unwrap();
    let before = raw(&client, &paths::request(&id)).await.unwrap();

    let mut held = ZkLock::new(&launcher, &paths::request_lock(&id), b"");
    assert!(held.try_acquire().await.unwrap());
    assert!(!zuul.revise_priority(&id, 5).await.unwrap(), "locked");
    assert_eq!(
        raw(&client, &paths::request(&id)).await.unwrap(),
        before,
        "nothing written while a launcher holds the lock"
    );
    let contenders = client
        .get_children(&paths::request_lock(&id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        contenders.len(),
        1,
        "our failed attempt left nothing behind"
    );
    held.release().await.unwrap();

    assert!(zuul.revise_priority(&id, 5).await.unwrap());
    let after = raw(&client, &paths::request(&id)).await.unwrap();
    assert_eq!(after["relative_priority"], json!(5));
    let mut expect = before.clone();
    expect.insert("relative_priority".into(), json!(5));
    assert_eq!(after, expect, "every other key unchanged");
    assert!(client
        .get_children(&paths::request_lock(&id))
        .await
        .unwrap()
        .unwrap()
        .is_empty());

    zuul.cancel(&id).await.unwrap();
    assert!(!zuul.revise_priority(&id, 1).await.unwrap(), "gone");
    client.close().await;
    launcher.close().await;
}

#[tokio::test]
async fn hold_and_not_allocated() {
    let zk = TestZk::shared().await;
    let stub = StubLauncher::start(&zk).await;
    let client = zk.client().await;
    let zuul = FakeZuul::new(client.clone(), "sys-h");

    // Autohold one node.
    let id = zuul
        .submit(&labels(&["small"]), 200, 0, "t", None)
        .await
        .unwrap();
    let req = fulfilled(&zuul, &id).await;
    let mut held = zuul.accept(&req).await.unwrap();
    zuul.use_nodes(&mut held, "org/p").await.unwrap();
    let node = held.pop().unwrap();
    let nid = node.id().clone();
    zuul.hold(node, "t org/p job1", "autohold for debugging", Some(3600))
        .await
        .unwrap();
    let now = raw(&client, &paths::node(&nid)).await.unwrap();
    assert_eq!(now["state"], json!("hold"));
    assert_eq!(now["hold_job"], json!("t org/p job1"));
    assert_eq!(now["comment"], json!("autohold for debugging"));
    assert_eq!(now["hold_expiration"], json!(3600));
    assert!(lock_children(&client, &nid).await.is_empty());

    // A node re-allocated behind our back: nothing stays locked, the request is deleted.
    let id = zuul
        .submit(&labels(&["small", "small"]), 200, 0, "t", None)
        .await
        .unwrap();
    let req = fulfilled(&zuul, &id).await;
    let second = &req.nodes[1];
    let mut rec = raw(&client, &paths::node(second)).await.unwrap();
    rec.insert("allocated_to".into(), json!("200-9999999999"));
    client
        .set(
            &paths::node(second),
            &serde_json::to_vec(&rec).unwrap(),
            None,
        )
        .await
        .unwrap();
    let err = zuul.accept(&req).await.unwrap_err();
    assert!(matches!(err, ZuulError::NotAllocated { .. }), "{err}");
    assert!(client.exists(&paths::request(&id)).await.unwrap().is_none());
    for n in &req.nodes {
        assert!(
            lock_children(&client, n).await.is_empty(),
            "node {n} left locked"
        );
    }
    stub.stop().await;
    client.close().await;
}

// ------------------------------------------------------------------------------------
// The binary

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `zuul-sim ARGS` to its end (120 s bound).
async fn zuul_sim(args: &[&str]) -> Output {
    let child = spawn_zuul_sim(args, &[]);
    finished(child, Duration::from_secs(120)).await
}

/// Starts `zuul-sim ARGS` with `envs`, its output piped; killed when dropped.
fn spawn_zuul_sim(args: &[&str], envs: &[(&str, &str)]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_zuul-sim"))
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start zuul-sim")
}

/// Waits (at most `limit`) until `child` ends; its exit code and output.
async fn finished(child: tokio::process::Child, limit: Duration) -> Output {
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("zuul-sim did not finish within {limit:?}"))
        .expect("zuul-sim output");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every node is unlocked and in one of `states` (zuul-sim handed everything back).
async fn assert_nodes_returned(client: &ZkClient, states: &[&str]) {
    for n in all_nodes(client).await {
        assert!(states.iter().any(|s| n["state"] == json!(s)), "{n:?}");
        let id = NodeId::from(n["id"].as_str().unwrap());
        assert!(lock_children(client, &id).await.is_empty());
    }
}

fn parse_json(out: &Output) -> Value {
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        )
    })
}

async fn all_nodes(client: &ZkClient) -> Vec<Map<String, Value>> {
    let mut v = Vec::new();
    for n in client
        .get_children(paths::NODES)
        .await
        .unwrap()
        .unwrap_or_default()
    {
        if let Some(r) = raw(client, &paths::node(&NodeId::from(n.as_str()))).await {
            v.push(r);
        }
    }
    v
}

async fn no_requests_left(client: &ZkClient) -> bool {
    client
        .get_children(paths::REQUESTS)
        .await
        .unwrap()
        .unwrap_or_default()
        .is_empty()
}

#[tokio::test]
async fn binary_once() {
    let zk = TestZk::shared().await;
    let stub = StubLauncher::start(&zk).await;
    let client = zk.client().await;
    let hosts = zk.plain_hosts();
    let out = zuul_sim(&[
        "--zk",
        &hosts,
        "--chroot",
        zk.chroot(),
        "--label",
        "small",
        "--system-id",
        "sim-once",
        "--json",
        "once",
    ])
    .await;
    assert_eq!(
        out.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let v = parse_json(&out);
    assert_eq!(v["mode"], json!("once"));
    assert_eq!(v["outcome"], json!("fulfilled"));
    let request = v["request"].as_str().unwrap();
    assert!(request.starts_with("200-"), "{request}");
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["label"], json!("small"));
    assert_eq!(nodes[0]["record"]["allocated_to"], json!(request));
    assert!(v["latency_ms"].as_f64().unwrap() >= 0.0);
    let nid = NodeId::from(nodes[0]["id"].as_str().unwrap());
    let now = raw(&client, &paths::node(&nid)).await.unwrap();
    assert_eq!(now["state"], json!("used"));
    assert_eq!(now["user_data"]["zuul_system"], json!("sim-once"));
    assert!(no_requests_left(&client).await);

    // Human-readable output names the request and the node.
    let out = zuul_sim(&[
        "--zk",
        &hosts,
        "--chroot",
        zk.chroot(),
        "-l",
        "small",
        "once",
    ])
    .await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(": fulfilled after"), "{}", out.stdout);
    assert!(out.stdout.contains("(small): {"), "{}", out.stdout);

    // A failed request: exit 2, outcome failed, request deleted.
    let out = zuul_sim(&[
        "--zk",
        &hosts,
        "--chroot",
        zk.chroot(),
        "-l",
        FAIL_LABEL,
        "--json",
        "once",
    ])
    .await;
    assert_eq!(out.code, Some(2), "{}{}", out.stdout, out.stderr);
    assert_eq!(parse_json(&out)["outcome"], json!("failed"));
    assert!(no_requests_left(&client).await);
    stub.stop().await;
    client.close().await;
}

#[tokio::test]
async fn binary_once_over_tls() {
    let zk = TestZk::shared().await;
    let Some(tls) = zk.tls_settings() else {
        eprintln!("no TLS port on the test ZooKeeper; skipped");
        return;
    };
    let stub = StubLauncher::start(&zk).await;
    let (host, port) = tls.hosts[0].clone();
    let t = tls.tls.clone().unwrap();
    let hosts = format!("{host}:{port}");
    let (ca, cert, key) = (
        t.ca.display().to_string(),
        t.cert.display().to_string(),
        t.key.display().to_string(),
    );
    let out = zuul_sim(&[
        "--zk",
        &hosts,
        "--chroot",
        zk.chroot(),
        "--tls-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "-l",
        "small",
        "--json",
        "once",
    ])
    .await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(parse_json(&out)["outcome"], json!("fulfilled"));
    stub.stop().await;
}

#[tokio::test]
async fn binary_burst_20() {
    let zk = TestZk::shared().await;
    let stub = StubLauncher::start(&zk).await;
    let client = zk.client().await;
    let out = zuul_sim(&[
        "--zk",
        &zk.plain_hosts(),
        "--chroot",
        zk.chroot(),
        "-l",
        "small",
        "--json",
        "burst",
        "20",
    ])
    .await;
    assert_eq!(
        out.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let v = parse_json(&out);
    assert_eq!(v["mode"], json!("burst"));
    assert_eq!(v["requested"], json!(20));
    assert_eq!(v["fulfilled"], json!(20));
    for k in ["failed", "gone", "timed_out", "cancelled", "errors"] {
        assert_eq!(v[k], json!(0), "{k}");
    }
    let lat = &v["latency"];
    assert_eq!(lat["count"], json!(20));
    let p = |k: &str| lat[k].as_f64().unwrap();
    assert!(p("min_ms") <= p("p50_ms") && p("p50_ms") <= p("p90_ms"));
    assert!(p("p90_ms") <= p("p99_ms") && p("p99_ms") <= p("max_ms"));
    assert!(v["throughput_per_s"].as_f64().unwrap() > 0.0);
    let nodes = all_nodes(&client).await;
    assert_eq!(nodes.len(), 20);
    assert!(nodes.iter().all(|n| n["state"] == json!("used")));
    assert!(no_requests_left(&client).await);

    // The human summary carries the percentiles.
    let out = zuul_sim(&[
        "--zk",
        &zk.plain_hosts(),
        "--chroot",
        zk.chroot(),
        "-l",
        "small",
        "burst",
        "3",
    ])
    .await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("3 fulfilled"), "{}", out.stdout);
    assert!(
        out.stdout.contains("p50") && out.stdout.contains("p99"),
        "{}",
        out.stdout
    );
    stub.stop().await;
    client.close().await;
}

#[tokio::test]
async fn binary_stream_count() {
    let zk = TestZk::shared().await;
    let stub = StubLauncher::start(&zk).await;
    let out = zuul_sim(&[
        "--zk",
        &zk.plain_hosts(),
        "--chroot",
        zk.chroot(),
        "-l",
        "small",
        "--json",
        "stream",
        "--rate",
        "20",
        "--hold",
        "0.1",
        "--count",
        "5",
    ])
    .await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let v = parse_json(&out);
    assert_eq!(v["mode"], json!("stream"));
    assert_eq!(v["requested"], json!(5));
    assert_eq!(v["fulfilled"], json!(5));
    stub.stop().await;
}

/// Waits (bounded, via a recursive watch) until some node is `in-use`.
async fn wait_for_in_use(client: &ZkClient) {
    let (mut watcher, _) = client.watch_recursive(paths::NODES).await.unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            if all_nodes(client)
                .await
                .iter()
                .any(|n| n["state"] == json!("in-use"))
            {
                return;
            }
            watcher.changed().await;
        }
    })
    .await
    .expect("no node in-use within 30 s");
}

#[tokio::test]
async fn binary_stream_interrupted_returns_everything() {
    let zk = TestZk::shared().await;
    let stub = StubLauncher::start(&zk).await;
    let client = zk.client().await;
    let child = spawn_zuul_sim(
        &[
            "--zk",
            &zk.plain_hosts(),
            "--chroot",
            zk.chroot(),
            "-l",
            "small",
            "--json",
            "stream",
            "--rate",
            "10",
            "--hold",
            "600",
            "--report-every",
            "0.2",
        ],
        &[],
    );
    wait_for_in_use(&client).await;
    let pid = child.id().expect("zuul-sim pid") as i32;
    // SAFETY: kill(2) on the pid of our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    // (It stops within 60 s of SIGINT.)
    let out = finished(child, Duration::from_secs(60)).await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    let v = parse_json(&out);
    assert!(v["fulfilled"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(
        v["requested"].as_u64(),
        Some(v["fulfilled"].as_u64().unwrap() + v["cancelled"].as_u64().unwrap()),
        "{v}"
    );
    // Everything handed back: no request left behind, nodes unlocked and either used or
    // still `ready` for a request cancelled while the launcher fulfilled it (Zuul only
    // deletes such a request; the launcher's cleanup takes the allocation back, which
    // the stub does not do). Never `in-use`: every node zuul-sim held was returned.
    assert!(no_requests_left(&client).await);
    assert_nodes_returned(&client, &["used", "ready"]).await;
    stub.stop().await;
    client.close().await;
}

/// The ids of the sessions a ZooKeeper server has (its `dump` lists every session).
fn session_ids(port: u16) -> HashSet<String> {
    four_letter_word(port, "dump")
        .expect("dump")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("0x").map(str::to_string))
        .collect()
}

/// Like Zuul after a ZooKeeper session loss: zuul-sim reads every request it waits on
/// again, takes up the ones fulfilled while it was cut off (locks, uses and returns their
/// nodes) and submits again the one that vanished meanwhile; no node stays allocated.
/// zuul-sim is frozen (SIGSTOP) until the server has expired its 2 s session, the stub
/// launcher fulfils meanwhile and one request is deleted; then ZooKeeper goes down for
/// longer than zuul-sim's request timeout (10 s) while zuul-sim runs again, and comes
/// back. zuul-sim used to give up its waits then, leaving the fulfilled requests and
/// their allocated nodes behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_burst_takes_up_requests_fulfilled_during_a_session_loss() {
    let zk = TestZk::dedicated().await;
    let server = zk.server().expect("dedicated server");
    let port = server.plain_port();
    let client = zk.client().await;
    client.ensure_path(paths::REQUESTS).await.unwrap();
    client.ensure_path(paths::NODES).await.unwrap();
    let before = session_ids(port);
    let child = spawn_zuul_sim(
        &[
            "--zk",
            &zk.plain_hosts(),
            "--chroot",
            zk.chroot(),
            "--connect-timeout",
            "2",
            "--timeout",
            "100",
            "-l",
            "small",
            "--json",
            "burst",
            "4",
        ],
        &[("RUST_LOG", "warn")],
    );
    let pid = child.id().expect("zuul-sim pid") as i32;
    let requests = wait_for("zuul-sim submitted 4 requests", || {
        let client = client.clone();
        async move {
            let c = client.get_children(paths::REQUESTS).await.ok()??;
            (c.len() == 4).then_some(c)
        }
    })
    .await;
    let sim_sessions: HashSet<String> = session_ids(port).difference(&before).cloned().collect();
    assert_eq!(sim_sessions.len(), 1, "{sim_sessions:?}");
    // SAFETY: kill(2) on the pid of our own child (not yet reaped).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    wait_for("the server expired zuul-sim's session", || {
        let gone = session_ids(port).is_disjoint(&sim_sessions);
        async move { gone.then_some(()) }
    })
    .await;
    // Meanwhile: one request vanishes, the others are fulfilled.
    let vanished = RequestId::from(requests[0].as_str());
    client
        .delete(&paths::request(&vanished), None)
        .await
        .unwrap();
    let stub = StubLauncher::start(&zk).await;
    wait_for("3 requests fulfilled", || {
        let client = client.clone();
        let requests = requests.clone();
        async move {
            let mut n = 0;
            for r in &requests[1..] {
                let id = RequestId::from(r.as_str());
                let (data, _) = client.get(&paths::request(&id)).await.ok()??;
                let req = NodeRequest::from_json(&id, &data).ok()??;
                n += usize::from(req.state == RequestState::Fulfilled);
            }
            (n == 3).then_some(())
        }
    })
    .await;
    stub.stop().await;
    // ZooKeeper goes away for longer than zuul-sim's request timeout while it runs again.
    server.stop();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    tokio::time::sleep(Duration::from_secs(12)).await;
    server.restart().expect("restart ZooKeeper");
    let stub = StubLauncher::start(&zk).await;
    let out = finished(child, Duration::from_secs(120)).await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("session lost"), "{}", out.stderr);
    let v = parse_json(&out);
    assert_eq!(v["fulfilled"], json!(4), "{v}");
    assert_eq!(v["resubmitted"], json!(1), "{v}");
    let client = zk.client().await;
    assert!(no_requests_left(&client).await);
    let nodes = all_nodes(&client).await;
    assert_eq!(nodes.len(), 4, "{nodes:?}");
    assert_nodes_returned(&client, &["used"]).await;
    stub.stop().await;
    client.close().await;
}

#[tokio::test]
async fn binary_zookeeper_unreachable() {
    // A loopback port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let hosts = format!("127.0.0.1:{port}");
    let out = zuul_sim(&[
        "--zk",
        &hosts,
        "--connect-timeout",
        "2",
        "-l",
        "small",
        "once",
    ])
    .await;
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("zuul-sim: error: ZooKeeper")
            && out.stderr.contains(&hosts)
            && out.stderr.contains("not reachable within 2s"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);

    // Bad arguments are usage errors, not panics.
    let out = zuul_sim(&["--zk", "h:notaport", "-l", "x", "once"]).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("bad port"), "{}", out.stderr);
    let out = zuul_sim(&["--zk", &hosts, "-l", "x", "--priority", "150", "once"]).await;
    assert_eq!(out.code, Some(2), "clap usage error: {}", out.stderr);
    assert!(out.stderr.contains("not 100, 200 or 300"), "{}", out.stderr);
}
