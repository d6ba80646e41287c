//! Every console action against a real ZooKeeper: what `actions::execute` writes must
//! be what Python's `nodepool` CLI writes for the same operation:
//! the record as before with only `state` (and `state_time`) changed — plus `comment`
//! for a hold — the node lock released, refusals leaving the record untouched, and the
//! pause / request-build flags as empty znodes at their Nodepool paths.

use nodepool_shared::model::{
    now_epoch, paths, BuildId, BuildState, ImageBuild, ImageUpload, Node, NodeId, NodeState,
    UploadState,
};
use nodepool_shared::testing::TestZk;
use nodepool_shared::zk::{ZkLock, ZkStore};
use nodepool_tui::actions::{execute, Action, ActionError};
use serde_json::Value;

struct Env {
    _zk: TestZk,
    store: ZkStore,
}

impl Env {
    async fn new() -> Env {
        let zk = TestZk::shared().await;
        let store = ZkStore::new(zk.client().await);
        Env { _zk: zk, store }
    }

    async fn raw(&self, path: &str) -> Value {
        let (data, _) = self
            .store
            .client()
            .get(path)
            .await
            .expect("read znode")
            .expect("znode exists");
        serde_json::from_slice(&data).expect("JSON record")
    }

    async fn add_node(&self, state: NodeState) -> NodeId {
        let mut n = Node::new();
        n.state = state;
        n.state_time = now_epoch() - 100.0;
        n.provider = Some("fake-provider".into());
        n.pool = Some("main".into());
        n.node_type = vec!["small".into()];
        n.external_id = Some("srv-1".into());
        n.public_ipv4 = Some("192.0.2.10".into());
        n.username = Some("zuul".into());
        n.host_keys = vec!["ssh-ed25519 AAAAC3Nza".into()];
        self.store.create_node(&mut n).await.expect("create node")
    }

    async fn add_build(&self, image: &str, state: BuildState) -> ImageBuild {
        let mut b = ImageBuild::new(image, BuildId::generate());
        b.state = state;
        b.state_time = now_epoch() - 100.0;
        b.builder = Some("builder.example.org".into());
        b.formats = vec!["qcow2".into()];
        self.store.create_build(&mut b).await.expect("create build");
        b
    }

    async fn add_upload(&self, b: &ImageBuild, state: UploadState) -> ImageUpload {
        let mut u = ImageUpload::new(&b.image, b.id.clone(), "fake-provider");
        u.state = state;
        u.state_time = now_epoch() - 100.0;
        u.external_id = Some("img-1".into());
        u.external_name = Some(format!("{}-1700000000", b.image));
        u.format = Some("qcow2".into());
        self.store
            .create_upload(&mut u)
            .await
            .expect("create upload");
        u
    }
}

/// `after` equals `before` except for the listed keys; `state_time` moved forward.
#[track_caller]
fn only_changed(before: &Value, after: &Value, changed: &[&str]) {
    let (b, a) = (before.as_object().unwrap(), after.as_object().unwrap());
    let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    for k in keys {
        if changed.contains(&k.as_str()) || k == "state_time" {
            continue;
        }
        assert_eq!(b.get(k), a.get(k), "{k} changed: {before} -> {after}");
    }
    assert!(
        a["state_time"].as_f64().unwrap() > b["state_time"].as_f64().unwrap(),
        "state_time not updated: {before} -> {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_node_sets_deleting_under_the_lock() {
    let env = Env::new().await;
    let id = env.add_node(NodeState::InUse).await;
    let before = env.raw(&paths::node(&id)).await;
    let text = execute(&env.store, &Action::DeleteNode(id.clone()))
        .await
        .expect("delete");
    assert!(text.contains("deleting"), "{text}");
    let after = env.raw(&paths::node(&id)).await;
    assert_eq!(after["state"], "deleting");
    only_changed(&before, &after, &["state"]);
    assert!(env
        .store
        .node_lock_contenders(&id)
        .await
        .unwrap()
        .is_empty());
    // Again: refused, unchanged.
    let e = execute(&env.store, &Action::DeleteNode(id.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, ActionError::Refused(_)), "{e}");
    assert_eq!(env.raw(&paths::node(&id)).await, after);
    // An unknown node: not found, and no znode left behind by a lock attempt.
    let ghost = NodeId::from("0000999999");
    let e = execute(&env.store, &Action::DeleteNode(ghost.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, ActionError::NotFound(_)), "{e}");
    assert!(env
        .store
        .client()
        .exists(&paths::node(&ghost))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_unhold() {
    let env = Env::new().await;
    let id = env.add_node(NodeState::Ready).await;
    let before = env.raw(&paths::node(&id)).await;
    execute(
        &env.store,
        &Action::HoldNode {
            id: id.clone(),
            comment: "  keep for debugging  ".into(),
        },
    )
    .await
    .expect("hold");
    let held = env.raw(&paths::node(&id)).await;
    assert_eq!(held["state"], "hold");
    assert_eq!(held["comment"], "keep for debugging");
    only_changed(&before, &held, &["state", "comment"]);
    assert!(env
        .store
        .node_lock_contenders(&id)
        .await
        .unwrap()
        .is_empty());

    // Holding again is refused.
    let e = execute(
        &env.store,
        &Action::HoldNode {
            id: id.clone(),
            comment: String::new(),
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("already held"), "{e}");

    execute(&env.store, &Action::UnholdNode(id.clone()))
        .await
        .expect("unhold");
    let used = env.raw(&paths::node(&id)).await;
    assert_eq!(used["state"], "used");
    only_changed(&held, &used, &["state"]);
    // Unhold of a node that is not held is refused.
    let e = execute(&env.store, &Action::UnholdNode(id.clone()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not hold"), "{e}");
    assert_eq!(env.raw(&paths::node(&id)).await, used);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_node_is_not_changed() {
    let env = Env::new().await;
    let id = env.add_node(NodeState::InUse).await;
    let before = env.raw(&paths::node(&id)).await;
    let mut lock = ZkLock::new(env.store.client(), &paths::node_lock(&id), b"");
    assert!(lock.try_acquire().await.unwrap());
    let e = execute(&env.store, &Action::DeleteNode(id.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, ActionError::Locked(..)), "{e}");
    assert_eq!(env.raw(&paths::node(&id)).await, before);
    lock.release().await.unwrap();
    assert!(env
        .store
        .node_lock_contenders(&id)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_unpause_and_request_build_flags() {
    let env = Env::new().await;
    let b = env.add_build("debian", BuildState::Ready).await;
    let client = env.store.client();
    let pause = "/nodepool/images/debian/pause";
    assert_eq!(pause, paths::image_pause("debian"));
    execute(&env.store, &Action::PauseImage("debian".into()))
        .await
        .expect("pause");
    let (data, _) = client.get(pause).await.unwrap().expect("pause znode");
    assert!(data.is_empty(), "Nodepool's pause flag is an empty znode");
    assert!(env.store.image_paused("debian").await.unwrap());
    // Pausing twice is fine (Python ignores an existing flag).
    execute(&env.store, &Action::PauseImage("debian".into()))
        .await
        .expect("pause again");
    execute(&env.store, &Action::UnpauseImage("debian".into()))
        .await
        .expect("unpause");
    assert!(client.exists(pause).await.unwrap().is_none());
    execute(&env.store, &Action::UnpauseImage("debian".into()))
        .await
        .expect("unpause again");

    let req = "/nodepool/images/debian/request-build";
    assert_eq!(req, paths::image_request_build("debian"));
    execute(&env.store, &Action::RequestBuild("debian".into()))
        .await
        .expect("request build");
    let (data, _) = client.get(req).await.unwrap().expect("request-build znode");
    assert!(data.is_empty());
    // The build itself is untouched.
    let (after, _) = env.store.get_build("debian", &b.id).await.unwrap().unwrap();
    assert_eq!(after.state, BuildState::Ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_build_and_upload() {
    let env = Env::new().await;
    let ready = env.add_build("debian", BuildState::Ready).await;
    let building = env.add_build("debian", BuildState::Building).await;

    let e = execute(
        &env.store,
        &Action::DeleteBuild("debian".into(), building.id.clone()),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("in progress"), "{e}");
    let (b, _) = env
        .store
        .get_build("debian", &building.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.state, BuildState::Building);

    let up = env.add_upload(&ready, UploadState::Uploading).await;
    let done = env.add_upload(&ready, UploadState::Ready).await;
    let key = |u: &ImageUpload| {
        (
            u.image.clone(),
            u.build_id.clone(),
            u.provider.clone(),
            u.id.clone(),
        )
    };
    let e = execute(&env.store, &Action::DeleteUpload(key(&up)))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("in progress"), "{e}");
    let (u, _) = env
        .store
        .get_upload("debian", &ready.id, "fake-provider", &up.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.state, UploadState::Uploading);

    let before = env.raw(&done.path()).await;
    execute(&env.store, &Action::DeleteUpload(key(&done)))
        .await
        .expect("delete upload");
    let after = env.raw(&done.path()).await;
    assert_eq!(after["state"], "deleting");
    only_changed(&before, &after, &["state"]);

    let before = env.raw(&ready.path()).await;
    execute(
        &env.store,
        &Action::DeleteBuild("debian".into(), ready.id.clone()),
    )
    .await
    .expect("delete build");
    let after = env.raw(&ready.path()).await;
    assert_eq!(after["state"], "deleting");
    only_changed(&before, &after, &["state"]);

    let e = execute(
        &env.store,
        &Action::DeleteBuild("debian".into(), BuildId::from("0123")),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ActionError::NotFound(_)), "{e}");
}
