//! Fault tests against a real 3-server ZooKeeper quorum ([`ZkEnsemble`]): the client keeps
//! its session (same generation, ephemerals kept) and its reads and writes succeed again
//! within a bounded retry when the follower it is connected to dies, and when the leader
//! dies (new election); a TreeCache stays converged across a leader loss.
//!
//! One ensemble per test process ([`ZkEnsemble::shared`]); tests take
//! [`ZkEnsemble::exclusive`] so they never stop each other's servers, and heal the
//! ensemble (all members running, quorum formed) before they start.
//!
//! Figures (start time, time from a leader kill to the first successful write) are
//! printed with `--nocapture`; docs/reliability.md records them.

use std::future::Future;
use std::time::{Duration, Instant};

use nodepool_shared::model::{Node, NodeState};
use nodepool_shared::testing::{step, MemberMode, ZkEnsemble};
use nodepool_shared::zk::TreeCache;
use nodepool_shared::zk::{ZkClient, ZkError, ZkSettings, ZkStore};

/// Every wait in these tests is bounded by this.
const BOUND: Duration = Duration::from_secs(60);

/// The shared ensemble, held exclusively, all members running and a quorum formed.
async fn healed() -> (&'static ZkEnsemble, tokio::sync::MutexGuard<'static, ()>) {
    let e = tokio::task::spawn_blocking(|| ZkEnsemble::shared().unwrap_or_else(|e| panic!("{e}")))
        .await
        .unwrap();
    let guard = e.exclusive().await;
    tokio::task::spawn_blocking(move || {
        e.heal(BOUND)
            .unwrap_or_else(|err| panic!("heal the ensemble: {err}"))
    })
    .await
    .unwrap();
    (e, guard)
}

/// Blocking ensemble call off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Settings of all members under a fresh chroot (made through a root client).
async fn chroot_settings(e: &ZkEnsemble) -> ZkSettings {
    let chroot = format!("/nodepool_test/{}", uuid::Uuid::new_v4().simple());
    let root = ZkClient::connect(e.settings()).await.unwrap();
    root.ensure_path(&chroot).await.unwrap();
    root.close().await;
    e.settings().with_chroot(Some(chroot))
}

/// Retries `op` (a write or read) until it succeeds; connection trouble is expected
/// during an election, anything else is a test failure.
async fn until_ok<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ZkError>>,
{
    step(what, async {
        loop {
            match op().await {
                Ok(v) => return v,
                Err(e) if e.is_connection_problem() => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{what}: {e}"),
            }
        }
    })
    .await
}

fn session_id(c: &ZkClient) -> i64 {
    c.session_info().expect("client has a session").id().0
}

#[tokio::test]
async fn ensemble_forms_a_quorum_with_one_leader() {
    let (e, _x) = healed().await;
    eprintln!(
        "figure: 3-member ensemble start (processes + quorum) took {:?}",
        e.start_duration()
    );
    let modes = blocking(|| ZkEnsemble::shared().unwrap().modes()).await;
    assert_eq!(
        modes.iter().filter(|m| **m == MemberMode::Leader).count(),
        1,
        "{modes:?}"
    );
    assert_eq!(
        modes.iter().filter(|m| **m == MemberMode::Follower).count(),
        2,
        "{modes:?}"
    );
    // Every member serves the same data: write through one, read through each.
    let w = ZkClient::connect(e.member_settings(0)).await.unwrap();
    let path = format!("/ensemble-smoke-{}", uuid::Uuid::new_v4().simple());
    w.create_persistent(&path, b"x").await.unwrap();
    for i in 0..e.len() {
        let r = ZkClient::connect(e.member_settings(i)).await.unwrap();
        // A follower may lag: `sync` is not exposed, so retry the read briefly.
        step("read on every member", async {
            while r.get(&path).await.unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        r.close().await;
    }
    w.delete(&path, None).await.unwrap();
    w.close().await;

    // TLS port of every member, one connect string.
    let t = ZkClient::connect(e.tls_settings()).await.unwrap();
    assert!(t.exists("/").await.unwrap().is_some());
    t.close().await;
}

#[tokio::test]
async fn client_survives_loss_of_its_follower() {
    let (e, _x) = healed().await;
    let settings = chroot_settings(e).await;
    // Connect until the session lives on a follower (the crate shuffles the hosts).
    let (c, member) = step("a session on a follower", async {
        loop {
            let c = ZkClient::connect(settings.clone()).await.unwrap();
            let sid = session_id(&c);
            let m = blocking(move || {
                let e = ZkEnsemble::shared().unwrap();
                e.member_with_session(sid).map(|i| (i, e.mode(i)))
            })
            .await;
            match m {
                Some((i, MemberMode::Follower)) => return (c, i),
                _ => c.close().await,
            }
        }
    })
    .await;
    let generation = c.generation();
    let sid = session_id(&c);
    c.create_ephemeral("/eph", b"mine").await.unwrap();
    c.create_persistent("/data", b"0").await.unwrap();

    blocking(move || ZkEnsemble::shared().unwrap().stop(member)).await;
    let t0 = Instant::now();
    until_ok("write after follower loss", || c.set("/data", b"1", None)).await;
    eprintln!(
        "figure: first write after killing the client's follower: {:?}",
        t0.elapsed()
    );
    let (data, _) = until_ok("read after follower loss", || c.get("/data"))
        .await
        .unwrap();
    assert_eq!(data, b"1");
    assert_eq!(c.generation(), generation, "no new session");
    assert_eq!(session_id(&c), sid, "same session id");
    let eph = c.exists("/eph").await.unwrap().expect("ephemeral survives");
    assert_eq!(eph.ephemeral_owner, sid);
    let now_on = blocking(move || ZkEnsemble::shared().unwrap().member_with_session(sid)).await;
    assert!(
        now_on.is_some_and(|i| i != member),
        "session moved to another member: {now_on:?}"
    );
    c.close().await;
}

#[tokio::test]
async fn client_survives_leader_loss_and_election() {
    let (e, _x) = healed().await;
    let settings = chroot_settings(e).await;
    let c = ZkClient::connect(settings).await.unwrap();
    let generation = c.generation();
    let sid = session_id(&c);
    c.create_ephemeral("/eph", b"mine").await.unwrap();
    c.create_persistent("/data", b"0").await.unwrap();

    let old_leader = blocking(|| ZkEnsemble::shared().unwrap().leader_index())
        .await
        .expect("a leader");
    blocking(move || ZkEnsemble::shared().unwrap().stop(old_leader)).await;
    let t0 = Instant::now();
    until_ok("write after leader loss", || c.set("/data", b"1", None)).await;
    let recovered = t0.elapsed();
    eprintln!("figure: first write after killing the leader: {recovered:?}");
    let new_leader = blocking(|| ZkEnsemble::shared().unwrap().wait_quorum(BOUND))
        .await
        .unwrap();
    eprintln!(
        "figure: quorum of two after killing the leader: {:?}",
        t0.elapsed()
    );
    assert_ne!(new_leader, old_leader, "a new leader was elected");
    assert_eq!(c.get("/data").await.unwrap().unwrap().0, b"1");
    assert_eq!(c.generation(), generation, "no new session");
    assert_eq!(session_id(&c), sid, "same session id");
    let eph = c.exists("/eph").await.unwrap().expect("ephemeral survives");
    assert_eq!(eph.ephemeral_owner, sid);

    // The old leader rejoins as a follower and sees the data written without it.
    blocking(|| ZkEnsemble::shared().unwrap().heal(BOUND).map(|_| ()))
        .await
        .unwrap();
    assert_eq!(
        blocking(move || ZkEnsemble::shared().unwrap().mode(old_leader)).await,
        MemberMode::Follower
    );
    let chroot = c.settings().chroot.clone();
    let r = ZkClient::connect(e.member_settings(old_leader).with_chroot(chroot))
        .await
        .unwrap();
    step("old leader caught up", async {
        while r.get("/data").await.unwrap().map(|d| d.0) != Some(b"1".to_vec()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(r.exists("/eph").await.unwrap().is_some());
    r.close().await;
    c.close().await;
}

#[tokio::test]
async fn tree_cache_stays_converged_across_leader_loss() {
    let (e, _x) = healed().await;
    let settings = chroot_settings(e).await;
    let reader = ZkClient::connect(settings.clone()).await.unwrap();
    let writer = ZkStore::new(ZkClient::connect(settings).await.unwrap());
    let cache = TreeCache::start(reader.clone());
    assert!(cache.wait_synced(BOUND).await, "cache synced");

    let mut before = Node::new();
    before.set_state(NodeState::Ready);
    let id_before = writer.create_node(&mut before).await.unwrap();
    let mut gen = cache.watch_generation();
    step("node before the outage cached", async {
        while cache.node(&id_before).is_none() {
            gen.changed().await.unwrap();
        }
    })
    .await;

    let leader = blocking(|| ZkEnsemble::shared().unwrap().leader_index())
        .await
        .expect("a leader");
    blocking(move || ZkEnsemble::shared().unwrap().stop(leader)).await;

    // Writes made while the ensemble elects a new leader (retried until accepted).
    let mut during = Node::new();
    during.set_state(NodeState::Building);
    let id_during = until_ok("create during the outage", || {
        let w = writer.clone();
        let mut n = during.clone();
        async move { w.create_node(&mut n).await }
    })
    .await;
    let mut updated = before.clone();
    updated.set_state(NodeState::InUse);
    until_ok("update during the outage", || {
        writer.store_node(&updated, None)
    })
    .await;

    step("cache converged after the leader loss", async {
        loop {
            let seen_during = cache.node(&id_during).is_some();
            let seen_update = cache
                .node(&id_before)
                .is_some_and(|n| n.node.state() == NodeState::InUse);
            if seen_during && seen_update {
                return;
            }
            tokio::select! {
                _ = gen.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    })
    .await;
    assert!(cache.wait_synced(BOUND).await, "cache synced again");
    assert_eq!(cache.corrupt_records(), 0);
    assert_eq!(reader.generation(), 1, "reader kept its session");

    // And it keeps following: a write after the election is seen too.
    let mut after = Node::new();
    after.set_state(NodeState::Ready);
    let id_after = writer.create_node(&mut after).await.unwrap();
    step("node after the outage cached", async {
        while cache.node(&id_after).is_none() {
            gen.changed().await.unwrap();
        }
    })
    .await;
    cache.stop();
    writer.client().close().await;
    reader.close().await;
}

/// A cache whose only server stops while the others keep the quorum and take writes
/// reloads once it is back, and the reload brings in what changed meanwhile: a node
/// deleted, one updated, one created, a lock released and another taken, a request
/// added, with an event for each and none for what did not change (that node keeps the
/// record read before, not a second copy).
#[tokio::test]
async fn tree_cache_reload_applies_what_changed_while_it_was_away() {
    use nodepool_shared::model::{paths, NodeRequest};
    use nodepool_shared::zk::{CacheKind, Change, SyncState};
    let (e, _x) = healed().await;
    let settings = chroot_settings(e).await;
    let chroot = settings.chroot.clone();
    let (away, other) = (0, 1);
    let reader = ZkClient::connect(e.member_settings(away).with_chroot(chroot.clone()))
        .await
        .unwrap();
    let writer_client = ZkClient::connect(e.member_settings(other).with_chroot(chroot))
        .await
        .unwrap();
    let writer = ZkStore::new(writer_client.clone());
    let ready = || {
        let mut n = Node::new();
        n.set_state(NodeState::Ready);
        n
    };
    let (mut kept, mut locked, mut updated, mut deleted) = (ready(), ready(), ready(), ready());
    for n in [&mut kept, &mut locked, &mut updated, &mut deleted] {
        writer.create_node(n).await.unwrap();
    }
    let lock = |id: &nodepool_shared::model::NodeId, who: &str| {
        format!("{}/{who}__lock__", paths::node_lock(id))
    };
    let held = writer_client
        .create_sequential(&lock(&locked.id, "aaaa"), b"", false)
        .await
        .unwrap();
    let cache = TreeCache::start(reader.clone());
    assert!(cache.wait_synced(BOUND).await, "cache synced");
    let kept_before = cache.node(&kept.id).expect("cached");
    assert_eq!(cache.node(&locked.id).unwrap().lock_contenders.len(), 1);
    let mut events = cache.subscribe();

    let mut status = cache.watch_status();
    blocking(move || ZkEnsemble::shared().unwrap().stop(away)).await;
    step("cache stale while its server is away", async {
        status
            .wait_for(|s| s.state == SyncState::Stale)
            .await
            .unwrap();
    })
    .await;
    // Meanwhile, through the other members.
    writer_client.delete(&held, None).await.unwrap();
    let taken = writer_client
        .create_sequential(&lock(&kept.id, "bbbb"), b"", false)
        .await
        .unwrap();
    updated.set_state(NodeState::InUse);
    writer.store_node(&updated, None).await.unwrap();
    writer.delete_node(&deleted).await.unwrap();
    let mut created = ready();
    writer.create_node(&mut created).await.unwrap();
    let mut request = NodeRequest::new(vec!["label".into()], "zuul");
    let request_id = writer
        .create_request(&mut request, "100", false)
        .await
        .unwrap();
    blocking(move || ZkEnsemble::shared().unwrap().start_member(away).unwrap()).await;

    step("reloaded once its server is back", async {
        loop {
            let s = cache.status();
            if s.state == SyncState::Synced && s.loads >= 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        cache.node(&deleted.id).is_none(),
        "the deleted node is gone"
    );
    assert_eq!(
        cache.node(&updated.id).unwrap().node.state(),
        NodeState::InUse
    );
    assert!(cache.node(&created.id).is_some(), "the new node is there");
    assert!(cache.node(&locked.id).unwrap().lock_contenders.is_empty());
    let kept_after = cache.node(&kept.id).unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&kept_before.node, &kept_after.node),
        "the unchanged record is the one read before"
    );
    assert_eq!(
        kept_after.lock_contenders,
        [taken.rsplit('/').next().unwrap()]
    );
    assert!(
        cache.request(&request_id).is_some(),
        "the new request is there"
    );

    let mut got = Vec::new();
    step("the reload's events", async {
        loop {
            let ev = events.recv().await.unwrap();
            if ev.change == Change::Resynced {
                return;
            }
            got.push((ev.kind, ev.path, ev.change));
        }
    })
    .await;
    got.sort_by_key(|g| format!("{g:?}"));
    use paths::ZkPath;
    let contender = |id: &nodepool_shared::model::NodeId, path: &str| {
        ZkPath::NodeLock(
            id.clone(),
            Some(path.rsplit('/').next().unwrap().to_string()),
        )
    };
    let mut want = vec![
        (
            CacheKind::Node,
            ZkPath::Node(deleted.id.clone()),
            Change::Removed,
        ),
        (
            CacheKind::Node,
            ZkPath::Node(updated.id.clone()),
            Change::Updated,
        ),
        (
            CacheKind::Node,
            ZkPath::Node(created.id.clone()),
            Change::Added,
        ),
        (
            CacheKind::NodeLock,
            contender(&locked.id, &held),
            Change::Removed,
        ),
        (
            CacheKind::NodeLock,
            contender(&kept.id, &taken),
            Change::Added,
        ),
        (
            CacheKind::Request,
            ZkPath::Request(request_id.clone()),
            Change::Added,
        ),
    ];
    want.sort_by_key(|g| format!("{g:?}"));
    assert_eq!(got, want);
    cache.stop();
    writer_client.close().await;
    reader.close().await;
}
