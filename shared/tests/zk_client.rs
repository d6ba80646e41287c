//! The raw client against a real ZooKeeper: CRUD, plain and TLS, multi, recursive delete.

use std::time::Duration;

use nodepool_shared::testing::TestZk;
use nodepool_shared::zk::{CreateKind, Op, OpResult, ZkClient, ZkError};

#[tokio::test]
async fn crud_plain() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    crud(&c).await;
    c.close().await;
}

#[tokio::test]
async fn crud_tls() {
    let zk = TestZk::shared().await;
    let c = zk.tls_client().await;
    crud(&c).await;
    c.close().await;
}

async fn crud(c: &ZkClient) {
    assert!(c.get("/a").await.unwrap().is_none());
    assert!(c.get_children("/a").await.unwrap().is_none());
    assert!(c.exists("/a").await.unwrap().is_none());
    c.create_persistent("/a/b/c", b"hello").await.unwrap();
    let (data, stat) = c.get("/a/b/c").await.unwrap().unwrap();
    assert_eq!(data, b"hello");
    assert_eq!(stat.version, 0);
    assert_eq!(c.get("/a/b").await.unwrap().unwrap().0, b"");
    let err = c.create_persistent("/a/b/c", b"x").await.unwrap_err();
    assert!(err.is_node_exists(), "{err}");
    let stat = c.set("/a/b/c", b"v1", Some(0)).await.unwrap();
    assert_eq!(stat.version, 1);
    let err = c.set("/a/b/c", b"v2", Some(0)).await.unwrap_err();
    assert!(err.is_bad_version(), "{err}");
    c.set("/a/b/c", b"v2", None).await.unwrap();
    assert_eq!(c.get("/a/b/c").await.unwrap().unwrap().0, b"v2");

    let p1 = c.create_sequential("/a/seq/", b"1", false).await.unwrap();
    let p2 = c.create_sequential("/a/seq/", b"2", true).await.unwrap();
    assert_eq!(p1, "/a/seq/0000000000");
    assert_eq!(p2, "/a/seq/0000000001");
    let p3 = c.create_sequential("/a/seq/x-", b"", true).await.unwrap();
    assert_eq!(p3, "/a/seq/x-0000000002");
    let eph = c.create_ephemeral("/a/eph", b"e").await.unwrap();
    assert_eq!(eph, "/a/eph");
    let stat = c.exists("/a/eph").await.unwrap().unwrap();
    assert_ne!(stat.ephemeral_owner, 0);

    let mut kids = c.get_children("/a").await.unwrap().unwrap();
    kids.sort();
    assert_eq!(kids, ["b", "eph", "seq"]);

    c.ensure_path("/a/b/c").await.unwrap();
    c.ensure_path("/x/y/z").await.unwrap();
    assert!(c.exists("/x/y/z").await.unwrap().is_some());

    let err = c.delete("/a/b", None).await.unwrap_err();
    assert!(matches!(err, ZkError::NotEmpty(_)), "{err}");
    let err = c.delete("/nope", None).await.unwrap_err();
    assert!(err.is_no_node());
    let err = c.delete("/a/b/c", Some(0)).await.unwrap_err();
    assert!(err.is_bad_version());
    c.delete("/a/b/c", Some(2)).await.unwrap();

    // Non-makepath create under a missing parent fails.
    let err = c
        .create("/q/r", b"", CreateKind::Persistent, false)
        .await
        .unwrap_err();
    assert!(err.is_no_node(), "{err}");

    c.delete_recursive("/a").await.unwrap();
    assert!(c.exists("/a").await.unwrap().is_none());
    c.delete_recursive("/a").await.unwrap();
}

#[tokio::test]
async fn multi_is_atomic() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    c.create_persistent("/m/a", b"1").await.unwrap();
    let err = c
        .multi(&[
            Op::Create {
                path: "/m/b".into(),
                data: b"x".to_vec(),
                kind: CreateKind::Persistent,
            },
            Op::Check {
                path: "/m/a".into(),
                version: 7,
            },
        ])
        .await
        .unwrap_err();
    assert!(err.is_bad_version(), "{err}");
    assert!(c.exists("/m/b").await.unwrap().is_none());
    let res = c
        .multi(&[
            Op::Check {
                path: "/m/a".into(),
                version: 0,
            },
            Op::Create {
                path: "/m/s-".into(),
                data: b"x".to_vec(),
                kind: CreateKind::PersistentSequential,
            },
            Op::Set {
                path: "/m/a".into(),
                data: b"2".to_vec(),
                version: Some(0),
            },
            Op::Delete {
                path: "/m/a".into(),
                version: Some(1),
            },
        ])
        .await
        .unwrap();
    assert!(matches!(&res[1], OpResult::Create { path, .. } if path == "/m/s-0000000001"));
    assert!(c.exists("/m/a").await.unwrap().is_none());
    c.close().await;
}

#[tokio::test]
async fn chroots_are_isolated_and_ephemerals_vanish_on_close() {
    let zk1 = TestZk::shared().await;
    let zk2 = TestZk::shared().await;
    assert_ne!(zk1.chroot(), zk2.chroot());
    let a = zk1.client().await;
    let b = zk2.client().await;
    a.create_ephemeral("/e", b"").await.unwrap();
    assert!(b.exists("/e").await.unwrap().is_none());
    let a2 = zk1.client().await;
    assert!(a2.exists("/e").await.unwrap().is_some());
    a.close().await;
    assert!(a2.exists("/e").await.unwrap().is_none());
    let err = a.get("/e").await.unwrap_err();
    assert!(matches!(err, ZkError::Closed), "{err}");
    b.close().await;
    a2.close().await;
}

#[tokio::test]
async fn tls_requires_client_certificate() {
    let zk = TestZk::shared().await;
    let mut s = zk.tls_settings().unwrap();
    // The CA cert is not a client identity: use it as cert with the client key → rejected.
    s.tls.as_mut().unwrap().cert = s.tls.as_ref().unwrap().ca.clone();
    s.connect_timeout = Some(Duration::from_secs(2));
    s.session_timeout = Duration::from_secs(2);
    assert!(ZkClient::connect(s).await.is_err());
    let mut s = zk.tls_settings().unwrap();
    s.tls.as_mut().unwrap().key = "/nonexistent/key.pem".into();
    let err = ZkClient::connect(s).await.unwrap_err();
    assert!(matches!(err, ZkError::Tls { .. }), "{err}");
}
