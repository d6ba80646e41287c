//! The launcher's web API against a real ZooKeeper: every endpoint in text and JSON,
//! `node_id`, `fields`, `/ready`, caching headers, and hostile requests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nodepool_daemon::webapp::{serve, NodeListLimits, WebState};
use nodepool_shared::listing::{render_compact_nodes, Fields, NodeColumns, OutputFormat};
use nodepool_shared::model::{
    now_epoch, Component, ComponentKind, Node, NodeId, NodeRequest, NodeState, PoolInfo,
};
use nodepool_shared::testing::TestZk;
use nodepool_shared::zk::{TreeCache, ZkStore};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

struct Web {
    base: String,
    http: reqwest::Client,
    cancel: CancellationToken,
    ready: Arc<AtomicBool>,
    state: WebState,
}

impl Drop for Web {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start(cache: TreeCache) -> Web {
    start_with(cache, NodeListLimits::default()).await
}

async fn start_with(cache: TreeCache, limits: NodeListLimits) -> Web {
    let ready = Arc::new(AtomicBool::new(false));
    let cancel = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let state = WebState::new(cache, ready.clone()).with_node_list_limits(limits);
    tokio::spawn(serve(
        "127.0.0.1:0".parse().unwrap(),
        state.clone(),
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
        state,
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

/// Replaces every age (`DD:HH:MM:SS`) by `AGE`: two listings written a second apart
/// differ only there.
fn mask_ages(text: &str) -> String {
    let bytes = text.as_bytes();
    let is_age = |w: &[u8]| {
        w.len() == 11
            && w.iter().enumerate().all(|(i, b)| match i {
                2 | 5 | 8 => *b == b':',
                _ => b.is_ascii_digit(),
            })
    };
    let (mut out, mut i) = (Vec::with_capacity(bytes.len()), 0);
    while i < bytes.len() {
        if bytes.len() - i >= 11 && is_age(&bytes[i..i + 11]) {
            out.extend_from_slice(b"AGE");
            i += 11;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// `/node-list` is written while it is sent (chunked, no `Content-Length`), in text,
/// JSON, with `fields=` and `node_id=`, and the bytes are the listing rendered in one
/// piece from the same cache. Clients that go away in the middle do not keep the
/// writers: the API serves full listings afterwards. HEAD answers without writing.
#[tokio::test]
async fn node_list_is_streamed_and_byte_identical() {
    nodepool_shared::testing::bounded(async {
        let (_zk, store, cache) = fixture().await;
        // About 1 MB of text: several pieces of 256 KiB.
        for i in 0..150 {
            let mut node = Node::new();
            node.set_state(if i % 3 == 0 {
                NodeState::Hold
            } else {
                NodeState::Ready
            });
            node.provider = Some("sim".into());
            node.pool = Some("main".into());
            node.node_type = vec!["small".into(), format!("l{}", i % 7)];
            node.comment = Some(format!("{i} ünïcode\n{}", "x".repeat(4000 + i)));
            node.user_data = serde_json::json!({"job": i, "s": "a\"b"});
            store.create_node(&mut node).await.unwrap();
        }
        nodepool_shared::testing::wait_for("152 nodes cached", || async {
            (cache.node_count() == 152).then_some(())
        })
        .await;
        let web = start(cache.clone()).await;
        let one = cache.nodes()[5].id().to_string();
        let cases = [
            ("", None),
            ("", Some("application/json")),
            ("?fields=id,label,state,locked,comment,user_data", None),
            ("?fields=id,age,comment", Some("text/plain")),
            (&*format!("?node_id={one}"), None),
            (&*format!("?node_id={one}"), Some("application/json")),
        ];
        for (query, accept) in cases {
            let r = web.get(&format!("/node-list{query}"), accept).await;
            assert_eq!(r.status(), 200, "{query}");
            assert!(r.headers().get("content-length").is_none(), "{query}");
            assert_eq!(r.headers()["transfer-encoding"], "chunked", "{query}");
            let got = r.text().await.unwrap();
            let format = match accept {
                Some("application/json") => OutputFormat::Json,
                _ => OutputFormat::Text,
            };
            let fields = query.strip_prefix("?fields=").and_then(Fields::parse);
            let nodes = match query.strip_prefix("?node_id=") {
                Some(id) => vec![cache.node(&NodeId::from(id)).unwrap()],
                None => cache.nodes(),
            };
            let pairs: Vec<_> = nodes
                .iter()
                .map(|n| (&*n.node, n.probably_locked()))
                .collect();
            let mut want = render_compact_nodes(
                &pairs,
                now_epoch(),
                NodeColumns::Detail,
                format,
                fields.as_ref(),
            );
            if format == OutputFormat::Text {
                want.push('\n');
            }
            if query.is_empty() {
                assert!(want.len() > 2 * 256 * 1024, "{}", want.len());
            }
            assert_eq!(mask_ages(&got), mask_ages(&want), "{query} {accept:?}");
        }

        // Clients that read a little and go away, more of them than writers.
        for _ in 0..12 {
            let r = web.get("/node-list", Some("application/json")).await;
            let mut body = r.bytes_stream();
            use futures::StreamExt;
            assert!(body.next().await.is_some());
        }
        let r = web.get("/node-list", Some("application/json")).await;
        let all: Value = r.json().await.unwrap();
        assert_eq!(all.as_array().unwrap().len(), 152);

        let r = web
            .http
            .head(format!("{}/node-list", web.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/plain; charset=UTF-8");
        assert!(r.bytes().await.unwrap().is_empty());
    })
    .await;
}

/// A client that asks for `/node-list` and then stops reading loses its turn after the
/// stall time: its answer is ended, and the next client (here waiting for the only
/// writer) gets the whole listing. Before, such a client kept its writer forever, and
/// four of them stopped `/node-list` for everyone.
#[tokio::test]
async fn a_node_list_client_that_stops_reading_loses_its_turn() {
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    nodepool_shared::testing::bounded(async {
        let (_zk, store, cache) = fixture().await;
        // About 12 MB of JSON: more than the socket buffers and the pieces written ahead
        // hold, so the writer of a client that reads nothing has to wait.
        futures::stream::iter(0..1500)
            .map(|i| {
                let store = store.clone();
                async move {
                    let mut node = Node::new();
                    node.set_state(NodeState::Hold);
                    node.provider = Some("sim".into());
                    node.pool = Some("main".into());
                    node.node_type = vec!["small".into()];
                    node.comment = Some(format!("{i} {}", "x".repeat(8000)));
                    store.create_node(&mut node).await.unwrap();
                }
            })
            .buffer_unordered(100)
            .collect::<Vec<_>>()
            .await;
        nodepool_shared::testing::wait_for("1502 nodes cached", || async {
            (cache.node_count() == 1502).then_some(())
        })
        .await;
        let web = start_with(
            cache.clone(),
            NodeListLimits {
                writers: 1,
                stall: Duration::from_secs(1),
                queue_wait: Duration::from_secs(60),
            },
        )
        .await;
        let addr: std::net::SocketAddr = web.base.trim_start_matches("http://").parse().unwrap();

        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stalled = socket.connect(addr).await.unwrap();
        stalled
            .write_all(b"GET /node-list HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 1024];
        let n = stalled.read(&mut head).await.unwrap();
        assert!(
            head[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&head[..n])
        );

        // Forty more clients, each with a query of its own, wait for the writer: they
        // are not all kept for the second (each would hold a snapshot of every node).
        let waiting: Vec<_> = (0..40)
            .map(|i| {
                let req = web
                    .http
                    .get(format!("{}/node-list?fields=id&n={i}", web.base));
                tokio::spawn(async move { req.send().await.unwrap().text().await.unwrap() })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            web.state.cached_answers() <= 16,
            "{}",
            web.state.cached_answers()
        );

        // The only writer is the stalled client's until the stall time ends its answer.
        let r = web.get("/node-list", Some("application/json")).await;
        assert_eq!(r.status(), 200);
        let whole = r.bytes().await.expect("the whole listing");
        let all: Value = serde_json::from_slice(&whole).unwrap();
        assert_eq!(all.as_array().unwrap().len(), 1502);

        // The stalled client's answer was cut: reading on, it ends short.
        let mut got = n;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(k) => got += k,
            }
        }
        assert!(got < whole.len(), "{got} bytes of {}", whole.len());
        for w in waiting {
            let text = w.await.unwrap();
            assert_eq!(text.matches("| 0").count(), 1502, "{text}");
        }
    })
    .await;
}

/// A small deterministic generator (xorshift64*) so the fuzz cases are the same on every
/// run without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Percent-encodes every byte that is not unreserved, so any byte string is a valid URL
/// component (the server sees the decoded bytes, invalid UTF-8 included).
fn pct(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (*b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Fuzz of the query strings and Accept headers (fixed seed, 1,500 requests): every
/// answer is 200, 400, 404 or 406 (never a 5xx or a dropped connection), a 200 in JSON
/// parses, and the API still serves afterwards.
#[tokio::test]
async fn fuzzed_queries_and_accept_headers_never_fail_the_server() {
    let (_zk, _store, cache) = fixture().await;
    let web = start(cache).await;
    let paths = [
        "/node-list",
        "/request-list",
        "/image-list",
        "/dib-image-list",
        "/label-list",
        "/ready",
        "/node-list/",
        "/",
    ];
    let keys = [
        "fields",
        "node_id",
        "FIELDS",
        "",
        "x",
        "fields[]",
        "node_id[0]",
    ];
    let values = [
        "id",
        "state",
        "id,state,label",
        "",
        ",",
        "%",
        "%zz",
        "\u{0}",
        "\u{202e}",
        "😀",
        "0000000000",
        "0000000001",
        "-1",
        "../../etc/passwd",
        "' OR 1=1",
        "<script>",
        "a".repeat(300).leak(),
        "id,id,id,id",
        "state;label",
        "\r\nX-Evil: 1",
    ];
    let accepts = [
        "application/json",
        "text/plain",
        "text/*",
        "*/*",
        "application/*;q=0.1",
        "image/png",
        ";;;",
        "application/json;q=abc",
        "text/plain;q=1.5, application/json;q=-1",
        "*/*;q=0",
        "",
        "\u{7f}",
        "application/json, text/plain;q=0.9, */*;q=0.1",
    ];
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..1500 {
        let path = rng.pick(&paths);
        let mut query = Vec::new();
        for _ in 0..rng.below(4) {
            let key = rng.pick(&keys);
            let value: Vec<u8> = if rng.below(4) == 0 {
                (0..rng.below(40)).map(|_| rng.next() as u8).collect()
            } else {
                rng.pick(&values).as_bytes().to_vec()
            };
            query.push(format!("{}={}", pct(key.as_bytes()), pct(&value)));
        }
        let url = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", query.join("&"))
        };
        let accept = rng.pick(&accepts);
        let mut req = web.http.get(format!("{}{}", web.base, url));
        // Header values must be visible ASCII: skip the ones reqwest would refuse.
        if !accept.is_empty() && accept.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            req = req.header("Accept", accept);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url} (Accept {accept:?}): no answer: {e}"));
        let status = r.status().as_u16();
        *statuses.entry(status).or_insert(0u32) += 1;
        assert!(
            matches!(status, 200 | 400 | 404 | 406 | 503),
            "{url} (Accept {accept:?}): status {status}"
        );
        let json = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let body = r.bytes().await.expect("body");
        if status == 200 && json {
            serde_json::from_slice::<Value>(&body)
                .unwrap_or_else(|e| panic!("{url}: JSON does not parse: {e}"));
        }
    }
    println!("fuzzed web API answers: {statuses:?}");
    assert_eq!(web.get("/node-list", None).await.status(), 200);
}
