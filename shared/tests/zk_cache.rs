//! The tree cache against a real ZooKeeper: every record kind followed, golden records,
//! convergence after 1000 concurrent writes, lock contenders, corrupt znodes, resync after
//! session expiry, and 10,000 nodes. Every wait is bounded.

use std::time::Duration;

use futures::stream::{self, StreamExt};
use nodepool_shared::model::{
    paths, BuildId, Component, ComponentKind, ImageBuild, ImageUpload, Node, NodeId, NodeRequest,
    NodeState, RequestId, ZkPath,
};
use nodepool_shared::testing::TestZk;
use nodepool_shared::zk::{CacheKind, Change, CreateKind, Op, SyncState, TreeCache, ZkStore};

use super::goldens::golden;

const WAIT: Duration = Duration::from_secs(90);

/// Waits (bounded by [`WAIT`]) until `cond` holds, re-checking on every cache change.
async fn wait_until(cache: &TreeCache, what: &str, mut cond: impl FnMut() -> bool) {
    let mut gen = cache.watch_generation();
    let ok = tokio::time::timeout(WAIT, async {
        loop {
            gen.borrow_and_update();
            if cond() {
                return;
            }
            // Also re-check now and then (status changes do not bump the counter).
            let _ = tokio::time::timeout(Duration::from_millis(500), gen.changed()).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "timed out waiting for: {what}");
}

type NodeView = Vec<(NodeId, i32, i64, Node, Vec<String>)>;

/// The nodes as read directly from ZooKeeper.
async fn direct_nodes(store: &ZkStore) -> NodeView {
    let mut out = Vec::new();
    for (n, stat) in store.nodes().await.unwrap() {
        let locks = store.node_lock_contenders(&n.id).await.unwrap();
        out.push((n.id.clone(), stat.version, stat.mzxid, n, locks));
    }
    out
}

fn cached_nodes(cache: &TreeCache) -> NodeView {
    cache
        .nodes()
        .iter()
        .map(|c| {
            (
                c.id().clone(),
                c.stat.version,
                c.stat.mzxid,
                c.node.to_node(),
                c.lock_contenders.clone(),
            )
        })
        .collect()
}

/// Waits until the cache's nodes equal a direct read of the tree.
async fn assert_nodes_converge(cache: &TreeCache, store: &ZkStore) {
    let ok = tokio::time::timeout(WAIT, async {
        loop {
            let direct = direct_nodes(store).await;
            if cached_nodes(cache) == direct {
                return direct.len();
            }
            let mut gen = cache.watch_generation();
            let _ = tokio::time::timeout(Duration::from_millis(500), gen.changed()).await;
        }
    })
    .await;
    assert!(
        ok.is_ok(),
        "cache nodes did not converge to the direct read"
    );
}

#[tokio::test]
async fn follows_every_record_kind() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    let store = ZkStore::new(c.clone());
    // Something exists before the cache starts (load path) …
    let mut before = Node::new();
    before.provider = Some("p".into());
    store.create_node(&mut before).await.unwrap();
    let cache = TreeCache::start(zk.client().await);
    assert!(cache.wait_synced(WAIT).await, "first sync");
    assert_eq!(cache.status().loads, 1);
    assert_eq!(cache.nodes().len(), 1);
    assert_eq!(cache.node(&before.id).unwrap().node.provider(), Some("p"));
    let mut events = cache.subscribe();

    // … and everything else appears through watch events.
    let mut req = NodeRequest::new(vec!["label".into()], "zuul");
    let rid = store.create_request(&mut req, "100", false).await.unwrap();
    let mut node = Node::new();
    let nid = store.create_node(&mut node).await.unwrap();
    let mut build = ImageBuild::new("img", BuildId::default());
    let bid = store.create_build(&mut build).await.unwrap();
    let mut up = ImageUpload::new("img", bid.clone(), "prov");
    let uid = store.create_upload(&mut up).await.unwrap();
    store.pause_image("img").await.unwrap();
    store.request_build("img").await.unwrap();
    let reg = store
        .register_component(Component::new(ComponentKind::Launcher, "h", "11.0.0"))
        .await
        .unwrap();
    c.create_sequential(
        &format!("{}/ab__lock__", paths::request_lock(&rid)),
        b"",
        true,
    )
    .await
    .unwrap();

    wait_until(&cache, "all records cached", || {
        cache.request(&rid).is_some()
            && cache.node(&nid).is_some()
            && cache.build("img", &bid).is_some()
            && cache.build_uploads("img", &bid).len() == 1
            && cache.image_paused("img")
            && cache.build_request("img").is_some()
            && cache.components(ComponentKind::Launcher).len() == 1
            && cache.request_locked(&rid)
    })
    .await;
    let r = cache.request(&rid).unwrap();
    let (direct, stat) = store.get_request(&rid).await.unwrap().unwrap();
    assert_eq!(r.request, direct);
    assert_eq!(r.stat, stat);
    assert_eq!(
        cache.build("img", &bid).unwrap().build,
        store.get_build("img", &bid).await.unwrap().unwrap().0
    );
    let u = &cache.build_uploads("img", &bid)[0];
    assert_eq!(u.upload.id, uid);
    assert_eq!(u.upload.provider, "prov");
    assert_eq!(cache.image_builds("img").len(), 1);
    assert_eq!(cache.images(), ["img"]);
    assert_eq!(
        cache.components(ComponentKind::Launcher)[0].name,
        reg.name()
    );
    assert!(cache.components(ComponentKind::Pool).is_empty());
    assert_eq!(
        cache.request_lock_contenders(&rid),
        ["ab__lock__0000000000"]
    );

    // A typed event announced the request.
    let saw_request = tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(e) if e.kind == CacheKind::Request => {
                    break (e.path.clone(), e.change);
                }
                Ok(_) => {}
                Err(e) => panic!("event stream: {e}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(saw_request, (ZkPath::Request(rid.clone()), Change::Added));

    // Updates and deletes.
    let (mut n, stat) = store.get_node(&nid).await.unwrap().unwrap();
    n.set_state(NodeState::Ready);
    store.store_node(&n, Some(stat.version)).await.unwrap();
    wait_until(&cache, "node ready", || {
        cache
            .node(&nid)
            .is_some_and(|c| c.node.state() == NodeState::Ready && c.stat.version == 1)
    })
    .await;
    store.delete_request(&rid).await.unwrap();
    store.delete_request_lock_dir(&rid).await.unwrap();
    store.delete_build("img", &bid).await.unwrap();
    store.unpause_image("img").await.unwrap();
    store.clear_build_request("img").await.unwrap();
    reg.unregister().await.unwrap();
    store.delete_node(&n).await.unwrap();
    wait_until(&cache, "deletions cached", || {
        cache.request(&rid).is_none()
            && !cache.request_locked(&rid)
            && cache.builds().is_empty()
            && cache.uploads().is_empty()
            && !cache.image_paused("img")
            && cache.build_request("img").is_none()
            && cache.components(ComponentKind::Launcher).is_empty()
            && cache.node(&nid).is_none()
    })
    .await;
    assert_eq!(cache.corrupt_records(), 0);
    assert_eq!(cache.status().state, SyncState::Synced);
    cache.stop();
    c.close().await;
}

#[tokio::test]
async fn golden_records_through_the_cache() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    // One golden node before the cache starts, the requests and components after.
    let g = golden("node-ready.json");
    let path = g["path"].as_str().unwrap();
    c.create_persistent(path, &serde_json::to_vec(&g["data"]).unwrap())
        .await
        .unwrap();
    let cache = TreeCache::start(zk.client().await);
    assert!(cache.wait_synced(WAIT).await);
    let id = NodeId::from("0000004351");
    assert_eq!(
        cache.node(&id).unwrap().node.to_node().to_value(),
        g["data"]
    );

    let gr = golden("request-pending.json");
    let rpath = gr["path"].as_str().unwrap();
    c.create_persistent(rpath, &serde_json::to_vec(&gr["data"]).unwrap())
        .await
        .unwrap();
    let gc = golden("components.json");
    let cpath = gc["pool"]["path"].as_str().unwrap();
    c.create_persistent(cpath, &serde_json::to_vec(&gc["pool"]["data"]).unwrap())
        .await
        .unwrap();
    let rid = RequestId::from("100-0000002905");
    wait_until(&cache, "golden request and component", || {
        cache.request(&rid).is_some() && !cache.components(ComponentKind::Pool).is_empty()
    })
    .await;
    assert_eq!(cache.request(&rid).unwrap().request.to_value(), gr["data"]);
    assert_eq!(
        cache.components(ComponentKind::Pool)[0]
            .component
            .to_value(),
        gc["pool"]["data"]
    );
    // Golden node-in-use written over the ready one: the update is seen.
    let gu = golden("node-in-use.json");
    c.set(path, &serde_json::to_vec(&gu["data"]).unwrap(), None)
        .await
        .unwrap();
    wait_until(&cache, "node in-use", || {
        cache
            .node(&id)
            .is_some_and(|n| n.node.state() == NodeState::InUse)
    })
    .await;
    assert_eq!(
        cache.node(&id).unwrap().node.to_node().to_value(),
        gu["data"]
    );
    c.close().await;
}

#[tokio::test]
async fn converges_after_1000_concurrent_writes() {
    let zk = TestZk::shared().await;
    let writer = zk.client().await;
    let store = ZkStore::new(writer.clone());
    // 200 nodes exist before the cache starts.
    let ids: Vec<NodeId> = stream::iter(0..200)
        .map(|_| {
            let store = store.clone();
            async move { store.create_node(&mut Node::new()).await.unwrap() }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let cache_client = zk.client().await;
    let cache = TreeCache::start(cache_client.clone());
    assert!(cache.wait_synced(WAIT).await);
    // 1000 concurrent writes from another client: 400 creates, 400 updates of 100 nodes
    // (racing each other), 200 deletes of the other 100 (two racing per node), plus lock
    // contenders coming and going.
    let ops: Vec<usize> = (0..1000).collect();
    stream::iter(ops)
        .map(|i| {
            let store = store.clone();
            let ids = ids.clone();
            async move {
                match i % 5 {
                    0 | 1 => {
                        let mut n = Node::new();
                        n.pool = Some(format!("p{i}"));
                        store.create_node(&mut n).await.unwrap();
                    }
                    2 | 3 => {
                        let id = &ids[i % 100 + 100];
                        if let Some((mut n, _)) = store.get_node(id).await.unwrap() {
                            n.comment = Some(format!("write {i}"));
                            n.set_state(NodeState::Ready);
                            store.store_node(&n, None).await.unwrap();
                        }
                        if i % 10 == 2 {
                            let lock = paths::node_lock(id);
                            let p = store
                                .client()
                                .create_sequential(&format!("{lock}/x__lock__"), b"", true)
                                .await
                                .unwrap();
                            if i % 20 == 2 {
                                store.client().delete(&p, None).await.unwrap();
                            }
                        }
                    }
                    _ => {
                        let id = &ids[(i / 5) % 100];
                        if let Some((n, _)) = store.get_node(id).await.unwrap() {
                            store.delete_node(&n).await.unwrap();
                        }
                    }
                }
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    assert_nodes_converge(&cache, &store).await;
    assert_eq!(cache.nodes().len(), 200 - 100 + 400);
    assert!(cache.nodes().iter().any(|n| n.probably_locked()));
    assert_eq!(cache.corrupt_records(), 0);
    cache.stop();
    cache_client.close().await;
    writer.close().await;
}

#[tokio::test]
async fn lock_contenders_appear_and_disappear() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    let store = ZkStore::new(c.clone());
    let mut n = Node::new();
    let id = store.create_node(&mut n).await.unwrap();
    let lock = paths::node_lock(&id);
    let first = c
        .create_sequential(&format!("{lock}/aaaa__lock__"), b"", true)
        .await
        .unwrap();
    let cache = TreeCache::start(zk.client().await);
    assert!(cache.wait_synced(WAIT).await);
    assert_eq!(
        cache.node(&id).unwrap().lock_contenders,
        ["aaaa__lock__0000000000"]
    );
    // A second contender (another process) appears behind the holder.
    let locker = zk.client().await;
    let second = locker
        .create_sequential(&format!("{lock}/bbbb__lock__"), b"", true)
        .await
        .unwrap();
    wait_until(&cache, "second contender", || {
        cache.node(&id).unwrap().lock_contenders.len() == 2
    })
    .await;
    assert_eq!(
        cache.node_lock_contenders(&id),
        ["aaaa__lock__0000000000", "bbbb__lock__0000000001"]
    );
    c.delete(&first, None).await.unwrap();
    wait_until(&cache, "holder released", || {
        cache.node(&id).unwrap().lock_contenders == ["bbbb__lock__0000000001"]
    })
    .await;
    // The contender's session ends: its ephemeral lock node goes, the node is unlocked.
    locker.close().await;
    wait_until(&cache, "contender session closed", || {
        !cache.node(&id).unwrap().probably_locked()
    })
    .await;
    let _ = second;
    c.close().await;
}

#[tokio::test]
async fn corrupt_znodes_are_skipped_and_counted() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    let store = ZkStore::new(c.clone());
    let mut good = Node::new();
    store.create_node(&mut good).await.unwrap();
    let bad = NodeId::from("0000000100");
    c.create_persistent(&paths::node(&bad), b"{broken")
        .await
        .unwrap();
    c.create_persistent(&paths::request(&RequestId::from("100-0000000001")), b"[]")
        .await
        .unwrap();
    // An empty node znode (re-created by a lock attempt) is no node, and not corrupt.
    let empty = NodeId::from("0000000200");
    c.ensure_path(&paths::node_lock(&empty)).await.unwrap();
    let cache = TreeCache::start(zk.client().await);
    assert!(cache.wait_synced(WAIT).await);
    assert_eq!(cache.corrupt_records(), 2);
    assert_eq!(cache.nodes().len(), 1);
    assert!(cache.requests().is_empty());
    assert_eq!(cache.empty_node_ids(), vec![empty.clone()]);
    // A record turning corrupt later is dropped and counted; fixing it brings it back.
    let mut n2 = Node::new();
    let id2 = store.create_node(&mut n2).await.unwrap();
    wait_until(&cache, "second node", || cache.node(&id2).is_some()).await;
    c.set(&paths::node(&id2), b"\xff\xfe", None).await.unwrap();
    wait_until(&cache, "corrupt update counted", || {
        cache.corrupt_records() == 3 && cache.node(&id2).is_none()
    })
    .await;
    assert!(cache.corrupt_paths().contains(&paths::node(&id2)));
    c.set(&paths::node(&bad), &Node::new().to_json(), None)
        .await
        .unwrap();
    wait_until(&cache, "repaired node", || {
        cache.node(&bad).is_some() && cache.corrupt_records() == 2
    })
    .await;
    assert!(cache.node(&good.id).is_some());
    assert_eq!(cache.status().state, SyncState::Synced);
    c.close().await;
}

#[tokio::test]
async fn resyncs_after_session_expiry() {
    let zk = TestZk::dedicated().await;
    let writer = zk.client().await;
    let store = ZkStore::new(writer.clone());
    let mut keep = Node::new();
    store.create_node(&mut keep).await.unwrap();
    let mut doomed = Node::new();
    store.create_node(&mut doomed).await.unwrap();
    let mut changed = Node::new();
    store.create_node(&mut changed).await.unwrap();
    let cache_client = zk.client().await;
    let cache = TreeCache::start(cache_client.clone());
    assert!(cache.wait_synced(WAIT).await);
    assert_eq!(cache.nodes().len(), 3);
    let gen_before = cache_client.generation();

    // Returns once the server has ended the session (the cache's client may have won it
    // back a few times meanwhile).
    zk.expire_session(&cache_client).await;
    // Writes while the cache's session is gone.
    store.delete_node(&doomed).await.unwrap();
    changed.set_state(NodeState::Ready);
    store.store_node(&changed, None).await.unwrap();
    let mut fresh = Node::new();
    store.create_node(&mut fresh).await.unwrap();
    let mut req = NodeRequest::new(vec!["l".into()], "zuul");
    let rid = store.create_request(&mut req, "200", false).await.unwrap();

    wait_until(&cache, "resynced in the new session", || {
        let s = cache.status();
        s.state == SyncState::Synced && s.session_generation > gen_before && s.loads >= 2
    })
    .await;
    assert_nodes_converge(&cache, &store).await;
    assert!(cache.node(&doomed.id).is_none());
    assert_eq!(
        cache.node(&changed.id).unwrap().node.state(),
        NodeState::Ready
    );
    assert!(cache.node(&fresh.id).is_some());
    assert!(cache.request(&rid).is_some());
    // And the new watch works.
    let mut later = Node::new();
    store.create_node(&mut later).await.unwrap();
    wait_until(&cache, "event after resync", || {
        cache.node(&later.id).is_some()
    })
    .await;
    cache.stop();
    cache_client.close().await;
    writer.close().await;
}

#[tokio::test]
async fn holds_ten_thousand_nodes() {
    let zk = TestZk::shared().await;
    let writer = zk.client().await;
    let store = ZkStore::new(writer.clone());
    writer.ensure_path(paths::NODES).await.unwrap();
    let mut template = Node::new();
    template.provider = Some("prov".into());
    template.node_type = vec!["label".into()];
    template.set_state(NodeState::Ready);
    let data = template.to_json();
    // 100 transactions of 100 sequential creates each.
    stream::iter(0..100)
        .map(|_| {
            let writer = writer.clone();
            let data = data.clone();
            async move {
                let ops: Vec<Op> = (0..100)
                    .map(|_| Op::Create {
                        path: paths::node_create_prefix(),
                        data: data.clone(),
                        kind: CreateKind::PersistentSequential,
                    })
                    .collect();
                writer.multi(&ops).await.unwrap();
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let cache = TreeCache::start(zk.client().await);
    assert!(cache.wait_synced(Duration::from_secs(300)).await);
    assert_eq!(cache.node_count(), 10_000);
    assert_eq!(store.node_ids().await.unwrap().len(), 10_000);
    // Snapshots share the records.
    let a = cache.nodes();
    let b = cache.nodes();
    assert!(std::sync::Arc::ptr_eq(&a[42].node, &b[42].node));
    cache.stop();
    let ids = store.node_ids().await.unwrap();
    stream::iter(ids.chunks(100).map(|c| c.to_vec()))
        .map(|chunk| {
            let writer = writer.clone();
            async move {
                let ops: Vec<Op> = chunk
                    .iter()
                    .map(|id| Op::Delete {
                        path: paths::node(id),
                        version: None,
                    })
                    .collect();
                writer.multi(&ops).await.unwrap();
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    assert!(store.node_ids().await.unwrap().is_empty());
    writer.close().await;
}

#[tokio::test]
async fn reloads_after_reconnect_within_the_session() {
    let zk = TestZk::dedicated().await;
    // A locked node and an unlocked one, cached before the outage.
    let before_client = zk.client().await;
    let before_store = ZkStore::new(before_client.clone());
    let (mut locked, mut free) = (Node::new(), Node::new());
    before_store.create_node(&mut locked).await.unwrap();
    before_store.create_node(&mut free).await.unwrap();
    before_client
        .create_sequential(
            &format!("{}/aaaa__lock__", paths::node_lock(&locked.id)),
            b"",
            false,
        )
        .await
        .unwrap();
    before_client.close().await;
    let cache_client = zk.client().await;
    let cache = TreeCache::start(cache_client.clone());
    assert!(cache.wait_synced(WAIT).await);
    let cached = |id: &NodeId| cache.node(id).expect("cached");
    let (locked_before, free_before) = (cached(&locked.id), cached(&free.id));
    assert_eq!(locked_before.lock_contenders, ["aaaa__lock__0000000000"]);
    let mut events = cache.subscribe();
    let server = zk.server().expect("dedicated server");
    // A short outage (shorter than the session timeout): the session survives, the cache
    // goes stale and reloads once the connection is back.
    let mut status = cache.watch_status();
    server.stop();
    tokio::time::timeout(WAIT, status.wait_for(|s| s.state == SyncState::Stale))
        .await
        .expect("stale while disconnected")
        .unwrap();
    server.restart().expect("restart");
    wait_until(&cache, "reloaded after reconnect", || {
        let s = cache.status();
        s.state == SyncState::Synced && s.loads >= 2
    })
    .await;
    // The reload reused the unchanged records instead of decoding a second copy of
    // each: old and new tree never hold two copies of the fleet.
    for before in [&locked_before, &free_before] {
        let after = cached(before.id());
        assert!(
            std::sync::Arc::ptr_eq(before, &after),
            "node {} is the cached node from before the reload",
            before.id()
        );
    }
    assert_eq!(
        cached(&locked.id).lock_contenders,
        ["aaaa__lock__0000000000"]
    );
    // Nothing changed: the reload reports only that it happened.
    let event = tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event")
        .expect("the cache runs");
    assert_eq!(
        (event.kind, event.change),
        (CacheKind::Tree, Change::Resynced)
    );
    let writer = zk.client().await;
    let store = ZkStore::new(writer.clone());
    let mut n = Node::new();
    store.create_node(&mut n).await.unwrap();
    wait_until(&cache, "event after reconnect", || {
        cache.node(&n.id).is_some()
    })
    .await;
    // The cache follows the client's current session.
    assert_eq!(cache.status().session_generation, cache_client.generation());
    cache.stop();
    writer.close().await;
    cache_client.close().await;
}
