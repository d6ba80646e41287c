//! The launcher's web API against a real ZooKeeper: every endpoint in text and JSON,
//! `node_id`, `fields`, `/ready`, caching headers, and hostile requests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nodepool_daemon::webapp::{serve, WebState};
use nodepool_shared::model::{Component, ComponentKind, Node, NodeRequest, NodeState, PoolInfo};
use nodepool_shared::testing::TestZk;
use nodepool_shared::zk::{TreeCache, ZkStore};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

struct Web {
    base: String,
    http: reqwest::Client,
    cancel: CancellationToken,
    ready: Arc<AtomicBool>,
}

impl Drop for Web {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start(cache: TreeCache) -> Web {
    let ready = Arc::new(AtomicBool::new(false));
    let cancel = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let state = WebState::new(cache, ready.clone());
    tokio::spawn(serve(
        "127.0.0.1:0".parse().unwrap(),
        state,
        cancel.clone(),
        Some(tx),
    ));
    let addr = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("web API bound in time")
        .expect("bound address");
    Web {
        base: format!("http://{addr}"),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        cancel,
        ready,
    }
}

impl Web {
    async fn get(&self, path: &str, accept: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{}", self.base, path));
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        req.send().await.expect("request sent")
    }
}

async fn fixture() -> (TestZk, ZkStore, TreeCache) {
    let zk = TestZk::shared().await;
    let store = ZkStore::new(zk.client().await);
    for (label, state) in [("small", NodeState::Ready), ("big", NodeState::InUse)] {
        let mut node = Node::new();
        node.set_state(state);
        node.provider = Some("sim".into());
        node.pool = Some("main".into());
        node.node_type = vec![label.into()];
        node.external_id = Some(format!("server-{label}"));
        store.create_node(&mut node).await.unwrap();
    }
    let mut req = NodeRequest::new(vec!["small".into()], "zuul");
    store.create_request(&mut req, "100", false).await.unwrap();
    let mut pool = Component::new(ComponentKind::Pool, "host", "11.0.0");
    pool.pool = Some(PoolInfo {
        id: Some("host-PoolWorker.sim-main-abc".into()),
        name: Some("main".into()),
        provider_name: Some("sim".into()),
        supported_labels: vec!["small".into(), "big".into()],
        ..PoolInfo::default()
    });
    store.create_component(&pool).await.unwrap();
    store.pause_image("ubuntu").await.unwrap();
    store.request_build("debian").await.unwrap();
    let cache = TreeCache::start(store.client().clone());
    assert!(
        cache.wait_synced(Duration::from_secs(20)).await,
        "cache synced"
    );
    (zk, store, cache)
}

#[tokio::test]
async fn endpoints_text_and_json() {
    let (_zk, _store, cache) = fixture().await;
    let web = start(cache).await;

    // /ready: 503 until the launcher says so.
    let r = web.get("/ready", None).await;
    assert_eq!(r.status(), 503);
    web.ready.store(true, Ordering::Release);
    let r = web.get("/ready", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "OK");

    // Text table by default, with Nodepool's headers.
    let r = web.get("/node-list", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/plain; charset=UTF-8"
    );
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.headers()["cache-control"], "public, max-age=1");
    assert!(r.headers().contains_key("last-modified"));
    assert!(r.headers().contains_key("expires"));
    let text = r.text().await.unwrap();
    assert!(text.starts_with("+-"), "{text}");
    assert!(text.contains("| server-small"), "{text}");
    assert!(text.contains("| Allocated To"), "detail columns: {text}");

    // JSON when application/json wins.
    let r = web.get("/node-list", Some("application/json")).await;
    assert_eq!(r.headers()["content-type"], "application/json");
    let nodes: Value = r.json().await.unwrap();
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["label"], serde_json::json!(["small"]));
    assert_eq!(nodes[0]["state"], "ready");
    assert_eq!(nodes[1]["state"], "in-use");
    let first_id = nodes[0]["id"].as_str().unwrap().to_string();

    // node_id restricts; unknown gives an empty list.
    let r = web
        .get(
            &format!("/node-list?node_id={first_id}"),
            Some("application/json"),
        )
        .await;
    let one: Value = r.json().await.unwrap();
    assert_eq!(one.as_array().unwrap().len(), 1);
    let r = web
        .get("/node-list?node_id=9999999999", Some("application/json"))
        .await;
    assert_eq!(r.json::<Value>().await.unwrap(), serde_json::json!([]));

    // fields= picks text columns by key.
    let text = web
        .get("/node-list?fields=id,state", None)
        .await
        .text()
        .await
        .unwrap();
    let header = text.lines().nth(1).unwrap();
    assert_eq!(
        header.split('|').filter(|s| !s.trim().is_empty()).count(),
        2,
        "{text}"
    );
    assert!(header.contains("ID") && header.contains("State"), "{text}");

    let reqs: Value = web
        .get("/request-list", Some("application/json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reqs.as_array().unwrap().len(), 1);
    assert_eq!(reqs[0]["state"], "requested");
    assert_eq!(reqs[0]["node_types"], serde_json::json!(["small"]));

    let labels: Value = web
        .get("/label-list", Some("application/json"))
        .await
        .json()
        .await
        .unwrap();
    let mut got: Vec<&str> = labels
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["label"].as_str().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, ["big", "small"]);

    let status: Value = web
        .get("/image-status", Some("application/json"))
        .await
        .json()
        .await
        .unwrap();
    let by_image = |name: &str| {
        status
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["image"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    assert_eq!(by_image("ubuntu")["paused"], true);
    assert_eq!(by_image("debian")["build_request"], "pending");

    for path in ["/image-list", "/dib-image-list"] {
        let r = web.get(path, Some("application/json")).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap(), serde_json::json!([]));
    }
}

#[tokio::test]
async fn hostile_requests_get_clear_answers() {
    let (_zk, _store, cache) = fixture().await;
    let web = start(cache).await;

    assert_eq!(web.get("/nope", None).await.status(), 404);
    assert_eq!(
        web.get("/node-list/../etc/passwd", None).await.status(),
        404
    );
    // An Accept that matches none of the offers: 406, not a crash.
    let r = web.get("/node-list", Some("image/png")).await;
    assert_eq!(r.status(), 406);
    // Garbage Accept headers fall back to text.
    for accept in [";;;", "application/json;q=abc", "*/*;q=0.5,,,"] {
        let r = web.get("/node-list", Some(accept)).await;
        assert!(
            r.status() == 200 || r.status() == 406,
            "{accept}: {}",
            r.status()
        );
    }
    // Odd query strings.
    for q in [
        "fields=",
        "fields=,,,",
        "fields=%00%ff",
        "node_id=%2e%2e%2f",
        "node_id=",
        "fields=id&fields=state",
    ] {
        let r = web.get(&format!("/node-list?{q}"), None).await;
        assert_eq!(r.status(), 200, "{q}");
    }
    let long = "x".repeat(10_000);
    let r = web.get(&format!("/node-list?fields={long}"), None).await;
    assert_eq!(r.status(), 400);
    // Read-only: no other method.
    let r = web
        .http
        .post(format!("{}/node-list", web.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = web
        .http
        .delete(format!("{}/node-list", web.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    // Still serving.
    assert_eq!(web.get("/request-list", None).await.status(), 200);
}

#[tokio::test]
async fn responses_are_cached_and_conditional_requests_work() {
    let (_zk, store, cache) = fixture().await;
    let web = start(cache.clone()).await;
    let r = web.get("/node-list", Some("application/json")).await;
    let last_modified = r.headers()["last-modified"].to_str().unwrap().to_string();
    let before: Value = r.json().await.unwrap();

    // A new node appears in the cache, but the cached response is reused for up to 1 s.
    let mut node = Node::new();
    node.set_state(NodeState::Building);
    node.provider = Some("sim".into());
    node.node_type = vec!["small".into()];
    store.create_node(&mut node).await.unwrap();

    let r = web
        .http
        .get(format!("{}/node-list", web.base))
        .header("Accept", "application/json")
        .header("If-Modified-Since", &last_modified)
        .send()
        .await
        .unwrap();
    // Either still cached (304) or already refreshed (200 with the new node).
    assert!(r.status() == 304 || r.status() == 200, "{}", r.status());

    // Eventually (after the TTL) the new node is listed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now: Value = web
            .get("/node-list", Some("application/json"))
            .await
            .json()
            .await
            .unwrap();
        if now.as_array().unwrap().len() == before.as_array().unwrap().len() + 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "new node never listed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
