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

/// What kazoo does with chroot `chroot` (missing) of `zk`, from `tests/kazoo/chroot_helper.py`.
async fn kazoo_on_missing_chroot(zk: &TestZk, chroot: &str) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kazoo/chroot_helper.py");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg(script)
            .arg(zk.plain_hosts())
            .arg(chroot)
            .output(),
    )
    .await
    .expect("kazoo helper within 60 s")
    .unwrap_or_else(|e| panic!("cannot run python3 (needed for kazoo interop): {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.starts_with("NO_KAZOO"),
        "kazoo is not installed for the python3 on PATH; run ./scripts/run-tests \
         (it installs it) or `python3 -m pip install kazoo`"
    );
    assert!(out.status.success(), "kazoo helper: {}: {text}", out.status);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("kazoo helper said {text:?}: {e}"))
}

/// A chroot that does not exist: reads find nothing, and the first write creates the
/// chroot node when its parent exists; with the parent missing too the write fails —
/// exactly what kazoo (Python Nodepool's client) does, checked side by side.
#[tokio::test]
async fn missing_chroot_is_created_by_the_first_write_like_kazoo() {
    let zk = TestZk::shared().await;
    let root = ZkClient::connect(zk.root_settings()).await.unwrap();
    for (ours, theirs, creatable) in [
        ("missing", "kazoo-missing", true),
        ("a/b", "kazoo-a/b", false),
    ] {
        let (ours, theirs) = (
            format!("{}/{ours}", zk.chroot()),
            format!("{}/{theirs}", zk.chroot()),
        );
        let kazoo = kazoo_on_missing_chroot(&zk, &theirs).await;
        assert_eq!(kazoo["warned"], true, "{kazoo}");
        assert_eq!(kazoo["list_nodes"], "NoNodeError", "{kazoo}");
        assert_eq!(kazoo["chroot_exists"], creatable, "{kazoo}");

        let c = ZkClient::connect(zk.settings().with_chroot(Some(ours.clone())))
            .await
            .unwrap();
        // Nodepool's list treats NoNodeError as "no nodes": an empty listing for us.
        assert!(c.get_children("/nodepool/nodes").await.unwrap().is_none());
        let made = c.ensure_path("/nodepool/images/img/pause").await;
        if creatable {
            assert_eq!(kazoo["ensure_path"], "ok", "{kazoo}");
            made.unwrap();
            assert!(c
                .exists("/nodepool/images/img/pause")
                .await
                .unwrap()
                .is_some());
            // A sequential create with parents works the same way.
            let c2 = ZkClient::connect(
                zk.settings()
                    .with_chroot(Some(format!("{}/missing-2", zk.chroot()))),
            )
            .await
            .unwrap();
            let p = c2
                .create_sequential("/nodepool/components/launcher/h", b"{}", true)
                .await
                .unwrap();
            assert_eq!(p, "/nodepool/components/launcher/h0000000000");
            c2.close().await;
        } else {
            assert_eq!(kazoo["ensure_path"], "NoNodeError", "{kazoo}");
            let err = made.unwrap_err();
            assert!(
                matches!(&err, ZkError::NoChroot { chroot, parent }
                    if *chroot == ours && *parent == format!("{}/a", zk.chroot())),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(text.contains(&ours) && text.contains("chroot"), "{text}");
        }
        assert_eq!(root.exists(&ours).await.unwrap().is_some(), creatable);
        c.close().await;
    }
    root.close().await;
}
