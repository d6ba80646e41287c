//! The typed store against a real ZooKeeper: CRUD of every record (the znode bytes equal
//! the model's `to_json`), golden records written raw and read back, corrupt znodes,
//! lock contenders, image flags and component registration (also across session expiry).

use std::time::Duration;

use nodepool_shared::model::{
    paths, BuildId, BuildState, Component, ComponentKind, ComponentState, ImageBuild, ImageUpload,
    Node, NodeId, NodeRequest, NodeState, RequestId, RequestState, UploadId, UploadState,
};
use nodepool_shared::testing::TestZk;
use nodepool_shared::zk::{ZkClient, ZkError, ZkStore};
use serde_json::Value;

use super::goldens::golden;

const WAIT: Duration = Duration::from_secs(60);

/// What reading `v` back yields: serde_json (without `float_roundtrip`) may parse a float
/// 1 ULP off, so compare records after the same JSON round trip.
fn node_rt(n: &Node) -> Node {
    Node::from_json(&n.id, &n.to_json()).unwrap().unwrap()
}

fn req_rt(r: &NodeRequest) -> NodeRequest {
    NodeRequest::from_json(&r.id, &r.to_json())
        .unwrap()
        .unwrap()
}

fn build_rt(b: &ImageBuild) -> ImageBuild {
    ImageBuild::from_json(&b.image, &b.id, &b.to_json())
        .unwrap()
        .unwrap()
}

fn upload_rt(u: &ImageUpload) -> ImageUpload {
    ImageUpload::from_json(&u.image, &u.build_id, &u.provider, &u.id, &u.to_json())
        .unwrap()
        .unwrap()
}

async fn raw(c: &ZkClient, path: &str) -> Vec<u8> {
    c.get(path).await.unwrap().expect("znode exists").0
}

#[tokio::test]
async fn node_crud() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    let store = ZkStore::new(c.clone());
    assert!(store.node_ids().await.unwrap().is_empty());
    assert!(store.nodes().await.unwrap().is_empty());

    let mut node = Node::new();
    node.provider = Some("p".into());
    node.pool = Some("main".into());
    node.node_type = vec!["label".into()];
    let id = store.create_node(&mut node).await.unwrap();
    assert_eq!(node.id, id);
    assert_eq!(id.as_str().len(), 10);
    assert_eq!(id.sequence(), Some(0));
    assert_eq!(raw(&c, &paths::node(&id)).await, node.to_json());

    let (read, stat) = store.get_node(&id).await.unwrap().unwrap();
    assert_eq!(read, node_rt(&node));
    assert_eq!(stat.version, 0);

    node.set_state(NodeState::Building);
    let stat = store.store_node(&node, Some(stat.version)).await.unwrap();
    assert_eq!(stat.version, 1);
    let err = store.store_node(&node, Some(0)).await.unwrap_err();
    assert!(err.is_bad_version(), "{err}");
    assert_eq!(raw(&c, &paths::node(&id)).await, node.to_json());

    let mut second = Node::new();
    let id2 = store.create_node(&mut second).await.unwrap();
    assert_eq!(store.node_ids().await.unwrap(), [id.clone(), id2.clone()]);
    let all = store.nodes().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].0, node_rt(&node));
    assert_eq!(all[1].0, node_rt(&second));

    // Lock contenders (another client's kazoo-style lock children).
    assert!(store.node_lock_contenders(&id).await.unwrap().is_empty());
    let lock = paths::node_lock(&id);
    c.create_sequential(&format!("{lock}/bbbb__lock__"), b"", true)
        .await
        .unwrap();
    c.create_sequential(&format!("{lock}/aaaa__lock__"), b"", true)
        .await
        .unwrap();
    c.create_persistent(&format!("{lock}/not-a-contender"), b"")
        .await
        .unwrap();
    assert_eq!(
        store.node_lock_contenders(&id).await.unwrap(),
        ["bbbb__lock__0000000000", "aaaa__lock__0000000001"]
    );

    // Delete: state `deleted` is written, then the znode goes with its lock dir.
    store.delete_node(&node).await.unwrap();
    assert!(store.get_node(&id).await.unwrap().is_none());
    assert!(c.exists(&paths::node(&id)).await.unwrap().is_none());
    store.delete_node(&node).await.unwrap();

    // An empty node znode (a lock attempt re-created it) reads as no node.
    c.ensure_path(&paths::node_lock(&id)).await.unwrap();
    assert!(store.get_node(&id).await.unwrap().is_none());
    assert_eq!(store.nodes().await.unwrap().len(), 1);
    assert_eq!(store.empty_node_ids().await.unwrap(), vec![id.clone()]);
    store.delete_node_znode(&id).await.unwrap();
    assert!(store.empty_node_ids().await.unwrap().is_empty());
    c.close().await;
}

#[tokio::test]
async fn corrupt_records_are_skipped_in_lists_and_errors_in_get() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    let store = ZkStore::new(c.clone());
    let mut a = Node::new();
    let mut b = Node::new();
    store.create_node(&mut a).await.unwrap();
    let bad = NodeId::from_sequence(1);
    c.create_persistent(&paths::node(&bad), b"{not json")
        .await
        .unwrap();
    let wrong_type = NodeId::from_sequence(2);
    c.create_persistent(&paths::node(&wrong_type), br#"{"state": 42}"#)
        .await
        .unwrap();
    let id_b = NodeId::from_sequence(3);
    b.id = id_b.clone();
    c.create_persistent(&paths::node(&id_b), &b.to_json())
        .await
        .unwrap();
    let all = store.nodes().await.unwrap();
    assert_eq!(
        all.iter().map(|(n, _)| n.id.clone()).collect::<Vec<_>>(),
        [a.id.clone(), id_b]
    );
    let err = store.get_node(&bad).await.unwrap_err();
    assert!(matches!(err, ZkError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains(&paths::node(&bad)), "{err}");
    let err = store.get_node(&wrong_type).await.unwrap_err();
    assert!(matches!(err, ZkError::Corrupt(_)), "{err}");

    c.create_persistent(&paths::request(&RequestId::from("100-0000000001")), b"[1]")
        .await
        .unwrap();
    assert!(store.requests().await.unwrap().is_empty());
    c.close().await;
}

/// A daemon lists the same records every few seconds: a corrupt one is warned about once
/// per version (the builder logged ~6,000 lines in 2 minutes for a few imported bad
/// records), again once it changes and is still corrupt, and again after it was fixed
/// and broke anew.
#[tokio::test]
async fn a_corrupt_record_is_warned_about_once_per_version() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    let store = ZkStore::new(c.clone());
    let image = format!("img{}", uuid::Uuid::new_v4().simple());
    let bad = BuildId::generate();
    let path = paths::build(&image, &bad);
    c.create_persistent(&path, b"not json at all")
        .await
        .unwrap();
    let warnings = |capture: &nodepool_shared::testing::LogCapture| {
        capture
            .text()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains(&path))
            .count()
    };
    let capture = nodepool_shared::testing::LogCapture::start();
    for _ in 0..5 {
        assert!(store.builds(&image).await.unwrap().is_empty());
    }
    assert_eq!(warnings(&capture), 1, "{}", capture.text());
    // A clone (another task of the same daemon) knows it too.
    assert!(store.clone().builds(&image).await.unwrap().is_empty());
    assert_eq!(warnings(&capture), 1, "{}", capture.text());
    // Changed, still corrupt: reported again, once.
    c.set(&path, b"[1]", None).await.unwrap();
    for _ in 0..3 {
        assert!(store.builds(&image).await.unwrap().is_empty());
    }
    assert_eq!(warnings(&capture), 2, "{}", capture.text());
    // Fixed, then broken with the same bytes as before: a new version, reported.
    let mut good = ImageBuild::new(&image, bad.clone());
    good.state = BuildState::Ready;
    c.set(&path, &good.to_json(), None).await.unwrap();
    assert_eq!(store.builds(&image).await.unwrap().len(), 1);
    c.set(&path, b"[1]", None).await.unwrap();
    assert!(store.builds(&image).await.unwrap().is_empty());
    assert_eq!(warnings(&capture), 3, "{}", capture.text());
    c.close().await;
}

#[tokio::test]
async fn request_crud() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    let store = ZkStore::new(c.clone());
    let mut req = NodeRequest::new(vec!["label".into()], "NodePool:min-ready");
    req.reuse = false;
    let id = store.create_request(&mut req, "900", true).await.unwrap();
    assert_eq!(req.id, id);
    assert_eq!(id.precedence(), "900");
    assert_eq!(id.sequence().len(), 10);
    assert!(req.event_id.as_ref().is_some_and(|e| e.len() == 32));
    let stat = c.exists(&paths::request(&id)).await.unwrap().unwrap();
    assert_ne!(stat.ephemeral_owner, 0, "min-ready requests are ephemeral");
    assert_eq!(raw(&c, &paths::request(&id)).await, req.to_json());

    let mut zuul = NodeRequest::new(vec!["a".into(), "b".into()], "zuul");
    let zid = store.create_request(&mut zuul, "100", false).await.unwrap();
    assert_eq!(
        c.exists(&paths::request(&zid))
            .await
            .unwrap()
            .unwrap()
            .ephemeral_owner,
        0
    );
    assert_eq!(
        store.request_ids().await.unwrap(),
        [zid.clone(), id.clone()]
    );

    let (mut read, stat) = store.get_request(&id).await.unwrap().unwrap();
    assert_eq!(read, req_rt(&req));
    read.set_state(RequestState::Pending);
    read.declined_by.push("someone".into());
    let stat2 = store
        .store_request(&read, Some(stat.version))
        .await
        .unwrap();
    assert_eq!(stat2.version, stat.version + 1);
    assert!(store
        .store_request(&read, Some(stat.version))
        .await
        .unwrap_err()
        .is_bad_version());
    assert_eq!(raw(&c, &paths::request(&id)).await, read.to_json());
    let all = store.requests().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].0, req_rt(&read));

    c.create_sequential(
        &format!("{}/abcd__lock__", paths::request_lock(&zid)),
        b"",
        true,
    )
    .await
    .unwrap();
    assert_eq!(
        store.request_lock_contenders(&zid).await.unwrap(),
        ["abcd__lock__0000000000"]
    );
    let dirs = store.request_lock_dirs().await.unwrap();
    assert_eq!(dirs.len(), 1);
    assert_eq!(dirs[0].0, zid);

    store.delete_request(&id).await.unwrap();
    store.delete_request(&id).await.unwrap();
    assert!(store.get_request(&id).await.unwrap().is_none());
    store.delete_request_lock_dir(&zid).await.unwrap();
    assert!(store.request_lock_dirs().await.unwrap().is_empty());
    c.close().await;
}

#[tokio::test]
async fn builds_uploads_and_flags() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    let store = ZkStore::new(c.clone());
    let mut build = ImageBuild::new("ubuntu", BuildId::default());
    build.builder = Some("host".into());
    build.formats = vec!["raw".into(), "qcow2".into()];
    let bid = store.create_build(&mut build).await.unwrap();
    assert_eq!(build.id, bid);
    assert_eq!(bid.as_str().len(), 32);
    assert_eq!(
        raw(&c, &paths::build("ubuntu", &bid)).await,
        build.to_json()
    );
    // The per-image build lock dir is not a build.
    c.ensure_path(&paths::image_build_lock("ubuntu"))
        .await
        .unwrap();
    assert_eq!(store.image_names().await.unwrap(), ["ubuntu"]);
    assert_eq!(store.build_ids("ubuntu").await.unwrap(), vec![bid.clone()]);
    let (b, stat) = store.get_build("ubuntu", &bid).await.unwrap().unwrap();
    assert_eq!(b, build_rt(&build));
    build.set_state(BuildState::Ready);
    store.store_build(&build, Some(stat.version)).await.unwrap();
    assert_eq!(store.builds("ubuntu").await.unwrap()[0].0, build_rt(&build));

    let mut up = ImageUpload::new("ubuntu", bid.clone(), "prov");
    up.format = Some("qcow2".into());
    let uid = store.create_upload(&mut up).await.unwrap();
    assert_eq!(uid, UploadId::from_sequence(0));
    assert_eq!(up.id, uid);
    assert_eq!(raw(&c, &up.path()).await, up.to_json());
    c.ensure_path(&paths::provider_upload_lock("ubuntu", &bid, "prov"))
        .await
        .unwrap();
    assert_eq!(
        store.build_providers("ubuntu", &bid).await.unwrap(),
        ["prov"]
    );
    assert_eq!(
        store.upload_ids("ubuntu", &bid, "prov").await.unwrap(),
        vec![uid.clone()]
    );
    let (u, stat) = store
        .get_upload("ubuntu", &bid, "prov", &uid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u, upload_rt(&up));
    up.set_state(UploadState::Ready);
    up.external_id = Some("img-1".into());
    store.store_upload(&up, Some(stat.version)).await.unwrap();
    assert_eq!(
        store.uploads("ubuntu", &bid, "prov").await.unwrap()[0].0,
        upload_rt(&up)
    );
    store
        .delete_upload("ubuntu", &bid, "prov", &uid)
        .await
        .unwrap();
    assert!(store
        .uploads("ubuntu", &bid, "prov")
        .await
        .unwrap()
        .is_empty());
    store.delete_build("ubuntu", &bid).await.unwrap();
    assert!(store.get_build("ubuntu", &bid).await.unwrap().is_none());
    assert!(store.builds("ubuntu").await.unwrap().is_empty());

    assert!(!store.image_paused("ubuntu").await.unwrap());
    store.pause_image("ubuntu").await.unwrap();
    store.pause_image("ubuntu").await.unwrap();
    assert!(store.image_paused("ubuntu").await.unwrap());
    store.unpause_image("ubuntu").await.unwrap();
    store.unpause_image("ubuntu").await.unwrap();
    assert!(!store.image_paused("ubuntu").await.unwrap());

    assert!(store.build_request("ubuntu").await.unwrap().is_none());
    store.request_build("ubuntu").await.unwrap();
    let t = store.build_request("ubuntu").await.unwrap().unwrap();
    let now = nodepool_shared::model::now_epoch();
    assert!(t.created > now - 600.0 && t.created <= now + 600.0, "{t:?}");
    store.clear_build_request("ubuntu").await.unwrap();
    store.clear_build_request("ubuntu").await.unwrap();
    assert!(store.build_request("ubuntu").await.unwrap().is_none());
    c.close().await;
}

#[tokio::test]
async fn golden_records_written_raw_read_back() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    let store = ZkStore::new(c.clone());
    for file in super::goldens::NODE_FILES {
        let g = golden(file);
        let path = g["path"].as_str().unwrap();
        let data = serde_json::to_vec(&g["data"]).unwrap();
        c.create_persistent(path, &data).await.unwrap();
        let id = NodeId::from(path.rsplit('/').next().unwrap());
        let (node, _) = store.get_node(&id).await.unwrap().unwrap();
        assert_eq!(node.to_value(), g["data"], "{file}");
        c.delete_recursive(path).await.unwrap();
    }
    for file in [
        "request-requested.json",
        "request-pending.json",
        "request-fulfilled.json",
    ] {
        let g = golden(file);
        let path = g["path"].as_str().unwrap();
        let data = serde_json::to_vec(&g["data"]).unwrap();
        c.create_persistent(path, &data).await.unwrap();
        let all = store.requests().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0.to_value(), g["data"], "{file}");
        c.delete_recursive(path).await.unwrap();
    }
    let g = golden("components.json");
    for kind in [ComponentKind::Launcher, ComponentKind::Pool] {
        let e = &g[kind.as_str()];
        let path = e["path"].as_str().unwrap();
        c.create_persistent(path, &serde_json::to_vec(&e["data"]).unwrap())
            .await
            .unwrap();
        let list = store.components(kind).await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].name, "vm0000000002");
        assert_eq!(list[0].component.to_value(), e["data"]);
        assert_eq!(
            serde_json::from_slice::<Value>(&list[0].component.to_json()).unwrap(),
            e["data"]
        );
    }
    c.close().await;
}

#[tokio::test]
async fn component_registration_update_unregister() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    let store = ZkStore::new(c.clone());
    let mut comp = Component::new(ComponentKind::Pool, "host", "11.0.0");
    comp.pool.as_mut().unwrap().supported_labels = vec!["b".into(), "a".into()];
    let reg = store.register_component(comp.clone()).await.unwrap();
    assert_eq!(reg.name(), "host0000000000");
    assert_eq!(reg.path(), "/nodepool/components/pool/host0000000000");
    let stat = c.exists(&reg.path()).await.unwrap().unwrap();
    assert_ne!(stat.ephemeral_owner, 0);
    assert_eq!(raw(&c, &reg.path()).await, comp.to_json());
    reg.update(|c| c.pool.as_mut().unwrap().paused = true)
        .await
        .unwrap();
    reg.update(|c| c.state = ComponentState::Paused)
        .await
        .unwrap();
    let list = store.components(ComponentKind::Pool).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].stat.version, 2);
    assert!(list[0].component.pool.as_ref().unwrap().paused);
    assert_eq!(list[0].component.state, ComponentState::Paused);
    assert_eq!(list[0].component, reg.component());
    assert!(store
        .get_component(ComponentKind::Launcher, "x")
        .await
        .unwrap()
        .is_none());
    reg.unregister().await.unwrap();
    assert!(store
        .components(ComponentKind::Pool)
        .await
        .unwrap()
        .is_empty());
    c.close().await;
}

/// A re-registration removes what an earlier attempt in the same session left (its
/// create went through but the reply was lost, so the name was never learnt: two
/// records of one daemon, seen in CI after a move to another ensemble), and never a
/// record of the same name owned by another session (after a move, the previous name
/// may be another daemon's on the new ensemble).
#[tokio::test]
async fn component_reregistration_removes_only_what_its_session_left() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    let other = zk.client().await;
    let store = ZkStore::new(c.clone());
    let observer = ZkStore::new(other.clone());
    let comp = Component::new(ComponentKind::Builder, "host", "11.0.0");
    let names = |store: ZkStore| async move {
        let list = store.components(ComponentKind::Builder).await.unwrap();
        list.into_iter().map(|s| s.name).collect::<Vec<_>>()
    };
    let (first, stat) = store.create_component(&comp).await.unwrap();
    // The lost-reply attempt, and another daemon of the same host name.
    let (left, _) = store.create_component(&comp).await.unwrap();
    let (theirs, their_stat) = observer.create_component(&comp).await.unwrap();
    let another_host = Component::new(ComponentKind::Builder, "hostess", "11.0.0");
    let (hostess, _) = store.create_component(&another_host).await.unwrap();
    assert_eq!(names(observer.clone()).await.len(), 4);

    let (again, _) = store
        .reregister_component(&comp, &first, stat.ephemeral_owner)
        .await
        .unwrap();
    let mut want = vec![theirs.clone(), hostess.clone(), again.clone()];
    want.sort();
    assert_eq!(
        names(observer.clone()).await,
        want,
        "{first} and {left} removed"
    );

    // A previous name owned by another session stays.
    let (last, _) = store
        .reregister_component(&comp, &theirs, c.session_id().unwrap())
        .await
        .unwrap();
    let mut want = vec![theirs.clone(), hostess, last];
    want.sort();
    assert_eq!(names(observer.clone()).await, want);
    assert_ne!(their_stat.ephemeral_owner, c.session_id().unwrap());
    c.close().await;
    other.close().await;
}

#[tokio::test]
async fn component_reregisters_after_session_expiry() {
    let zk = TestZk::dedicated().await;
    let c = zk.client().await;
    let other = zk.client().await;
    let store = ZkStore::new(c.clone());
    let observer = ZkStore::new(other.clone());
    let comp = Component::new(ComponentKind::Launcher, "host", "11.0.0");
    let reg = store.register_component(comp).await.unwrap();
    let first = reg.name();
    zk.expire_session(&c).await;
    // Re-registered under a new name (the handle knows it), the old znode gone.
    let new_name = tokio::time::timeout(WAIT, async {
        loop {
            let name = reg.name();
            if name != first {
                break name;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("re-registered within the bound");
    let list = observer.components(ComponentKind::Launcher).await.unwrap();
    assert_eq!(
        list.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        vec![new_name.clone()]
    );
    reg.update(|c| c.state = ComponentState::Stopped)
        .await
        .unwrap();
    let got = observer
        .get_component(ComponentKind::Launcher, &new_name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.component.state, ComponentState::Stopped);
    reg.unregister().await.unwrap();
    c.close().await;
    other.close().await;
}
