//! Session loss and server restarts against a real ZooKeeper: the client builds a new
//! session, locks of the old one are reported lost and can be re-acquired, waiters re-queue,
//! elections re-campaign; a server restart within the session timeout keeps everything.
//!
//! Expiry is forced the way ZooKeeper tests do it: a second connection resumes the session
//! (same id and password) and closes it ([`TestZk::expire_session`]).
//!
//! A frozen (`SIGSTOP`) or stopped server shows the request timeout: every call returns
//! `Timeout` or `ConnectionLoss` within it, and the same client works again afterwards
//! (and the calls waiting meanwhile are counted as pending).
//!
//! `reconfigure` moves a client to other servers: to another ensemble (a second real
//! ZooKeeper) as a new session that locks and component records follow, to more servers
//! of the same ensemble without losing the session, and to servers that answer only later.

use std::time::Duration;

use nodepool_shared::model::{Component, ComponentKind};
use nodepool_shared::testing::{step, test_settings, TestZk, ZkProxy, OP_EXISTS};
use nodepool_shared::zk::{
    lock_contenders, ConnectionState, Election, Reconfigured, SessionEvent, ZkClient, ZkError,
    ZkLock, ZkStore,
};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Every wait in these tests is bounded by this: the bound of a [`step`], so that a lock
/// wait with a shorter deadline of its own cannot give up first on a loaded machine and
/// fail the test as something else.
const BOUND: Duration = nodepool_shared::testing::WAIT;

/// Waits (bounded) for `Reconnected(generation)` on `events`.
async fn wait_reconnected(events: &mut broadcast::Receiver<SessionEvent>, generation: u64) {
    step("new session", async {
        loop {
            match events.recv().await {
                Ok(SessionEvent::Reconnected(g)) if g == generation => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("session events: {e}"),
            }
        }
    })
    .await
}

async fn wait_gone(c: &ZkClient, path: &str) {
    step(&format!("{path} gone"), async {
        while c.exists(path).await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

async fn wait_contenders(c: &ZkClient, dir: &str, n: usize) -> Vec<String> {
    step(&format!("{n} contenders at {dir}"), async {
        loop {
            let v = lock_contenders(c, dir).await.unwrap();
            if v.len() == n {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test]
async fn expiry_builds_new_session_and_held_lock_is_lost() {
    let zk = TestZk::shared().await;
    let (c, observer) = (zk.client().await, zk.client().await);
    let mut events = c.subscribe();
    let dir = "/nodepool/nodes/0000000001/lock";
    let mut l = ZkLock::new(&c, dir, b"");
    assert!(l.try_acquire().await.unwrap());
    assert_eq!(l.generation(), Some(1));
    assert!(l.is_held());
    let old = l.node_path().unwrap();
    let lost = l.lost();
    let eph = c.create_ephemeral("/ephemeral", b"").await.unwrap();

    zk.expire_session(&c).await;
    step("lock reported lost", lost).await;
    wait_reconnected(&mut events, 2).await;
    assert_eq!(c.generation(), 2);
    assert_eq!(c.status().state, ConnectionState::Connected);
    assert!(!l.is_held());
    // The old session's ephemerals are gone.
    wait_gone(&observer, &old).await;
    wait_gone(&observer, &eph).await;
    // The lock can be taken again, in the new session.
    assert!(l.try_acquire().await.unwrap());
    assert!(l.is_held());
    assert_eq!(l.generation(), Some(2));
    assert_ne!(l.node_path().unwrap(), old);
    assert_eq!(lock_contenders(&observer, dir).await.unwrap().len(), 1);
    l.release().await.unwrap();
    assert!(lock_contenders(&observer, dir).await.unwrap().is_empty());
    c.close().await;
    observer.close().await;
}

/// A holder (client `a`) and a waiter (client `b`) at `dir`; `b`'s session is ended once
/// the waiter queued or, with `proxy` (which `b` connects through), while the waiter's
/// call that sets a watch on its predecessor is held there. The waiter must queue again
/// in the new session and get the lock once the holder lets go.
async fn waiter_requeues_after_expiry(
    zk: &TestZk,
    a: ZkClient,
    b: ZkClient,
    dir: &'static str,
    proxy: Option<&ZkProxy>,
) {
    let mut la = ZkLock::new(&a, dir, b"holder");
    assert!(la.try_acquire().await.unwrap());
    let mut events = b.subscribe();
    let held = proxy.map(|p| p.hold_next(OP_EXISTS, dir));
    let b2 = b.clone();
    // Unbounded: the steps below bound the test, and a waiter that gave up on a deadline
    // of its own would be reported as one that never re-queued.
    let waiter = tokio::spawn(async move {
        let mut lb = ZkLock::new(&b2, dir, b"waiter");
        let ok = lb.acquire(None).await.unwrap();
        (ok, lb)
    });
    if let Some(held) = held {
        step("the waiter's predecessor watch held", held)
            .await
            .expect("hold");
    }
    let before = wait_contenders(&a, dir, 2).await;
    zk.expire_session(&b).await;
    wait_reconnected(&mut events, 2).await;
    step("waiter re-queued", async {
        loop {
            assert!(!waiter.is_finished(), "the waiter ended before re-queuing");
            let now = lock_contenders(&a, dir).await.unwrap();
            if now.len() == 2 && now[1] != before[1] {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    la.release().await.unwrap();
    let (ok, mut lb) = step("waiter acquires", waiter).await.unwrap();
    assert!(ok);
    assert_eq!(lb.generation(), Some(2));
    lb.release().await.unwrap();
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn waiter_requeues_after_its_session_expired() {
    let zk = TestZk::shared().await;
    let (a, b) = (zk.client().await, zk.client().await);
    waiter_requeues_after_expiry(&zk, a, b, "/nodepool/requests-lock/100-0000000009", None).await;
}

/// The window `waiter_requeues_after_its_session_expired` once hit by chance (in CI),
/// forced: the session expires after the waiter listed the lock dir, while its call that
/// sets a watch on its predecessor is on the way. That call is retried in the new
/// session; the waiter must see that its contender went with the old one and queue
/// again, not wait on the holder.
#[tokio::test]
async fn waiter_requeues_when_its_session_expires_during_its_predecessor_watch() {
    let zk = TestZk::shared().await;
    let a = zk.client().await;
    let proxy = ZkProxy::start(&zk.plain_hosts()).await;
    let b = ZkClient::connect(
        test_settings(vec![proxy.endpoint()], None).with_chroot(Some(zk.chroot().to_string())),
    )
    .await
    .expect("connect through the proxy");
    let dir = "/nodepool/requests-lock/100-0000000010";
    waiter_requeues_after_expiry(&zk, a, b, dir, Some(&proxy)).await;
}

#[tokio::test]
async fn election_recampaigns_after_expiry() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    let observer = zk.client().await;
    let dir = "/nodepool/elections/stats";
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = {
        let (c, cancel) = (c.clone(), cancel.clone());
        tokio::spawn(async move {
            let mut e = Election::new(&c, dir);
            e.run(&cancel, |token| {
                let (tx, c) = (tx.clone(), c.clone());
                async move {
                    let _ = tx.send(("elected", c.generation()));
                    token.cancelled().await;
                    let _ = tx.send(("stepped down", c.generation()));
                }
            })
            .await
        })
    };
    assert_eq!(step("elected", rx.recv()).await, Some(("elected", 1)));
    zk.expire_session(&c).await;
    assert_eq!(
        step("stepped down", rx.recv()).await.map(|m| m.0),
        Some("stepped down")
    );
    assert_eq!(step("re-elected", rx.recv()).await, Some(("elected", 2)));
    assert_eq!(lock_contenders(&observer, dir).await.unwrap().len(), 1);
    cancel.cancel();
    step("election task ends", task).await.unwrap().unwrap();
    assert_eq!(
        step("stepped down at cancel", rx.recv()).await,
        Some(("stepped down", 2))
    );
    // Resigned on the way out.
    wait_contenders(&observer, dir, 0).await;
    c.close().await;
    observer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_keeps_session_and_lock() {
    let zk = TestZk::dedicated().await;
    let c = zk.client().await;
    let mut events = c.subscribe();
    let dir = "/nodepool/nodes/0000000002/lock";
    let mut l = ZkLock::new(&c, dir, b"");
    assert!(l.try_acquire().await.unwrap());
    let node = l.node_path().unwrap();
    // A second client waits for the lock across the restart.
    let other = zk.client().await;
    let waiter = {
        let other = other.clone();
        tokio::spawn(async move {
            let mut l2 = ZkLock::new(&other, dir, b"");
            let ok = l2.acquire(Some(BOUND)).await.unwrap();
            (ok, l2)
        })
    };
    let before = wait_contenders(&c, dir, 2).await;
    let server = zk.server().expect("dedicated server");
    tokio::task::block_in_place(|| server.restart()).expect("restart ZooKeeper");
    step("suspended then connected again", async {
        let mut suspended = false;
        loop {
            match events.recv().await {
                Ok(SessionEvent::Suspended) => suspended = true,
                Ok(SessionEvent::Connected) if suspended => return,
                Ok(SessionEvent::Lost) | Ok(SessionEvent::Reconnected(_)) => {
                    panic!("session lost across a short restart")
                }
                Ok(_) => {}
                Err(e) => panic!("session events: {e}"),
            }
        }
    })
    .await;
    assert_eq!(c.generation(), 1);
    assert!(l.is_held());
    assert!(c.exists(&node).await.unwrap().is_some());
    // Same contenders as before: the waiter neither lost nor duplicated its child.
    assert_eq!(lock_contenders(&c, dir).await.unwrap(), before);
    let mut l3 = ZkLock::new(&other, dir, b"");
    assert!(!l3.try_acquire().await.unwrap());
    l.release().await.unwrap();
    let (ok, mut l2) = step("waiter acquires after the restart", waiter)
        .await
        .unwrap();
    assert!(ok && l2.is_held());
    assert_eq!(l2.node_path().unwrap(), format!("{dir}/{}", before[1]));
    l2.release().await.unwrap();
    other.close().await;
    c.close().await;
}

/// Request timeout of the clients in the unreachable-server tests (short, so that the
/// server stays frozen for less than the 10 s session timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs get, set and create against an unreachable server: each must fail with `Timeout`
/// or `ConnectionLoss`, and return within the request timeout (plus a margin for the
/// runtime; the bound is what is asserted, the elapsed time is printed).
async fn calls_fail_within_request_timeout(c: &ZkClient, what: &str) {
    let limit = REQUEST_TIMEOUT + Duration::from_secs(3);
    for op in ["get", "set", "create"] {
        let t = std::time::Instant::now();
        let call = async {
            match op {
                "get" => c.get("/t").await.map(|_| ()),
                "set" => c.set("/t", b"during", None).await.map(|_| ()),
                _ => c.create_persistent("/during", b"").await.map(|_| ()),
            }
        };
        let r = tokio::time::timeout(limit, call)
            .await
            .unwrap_or_else(|_| panic!("{what}: {op} still running after {limit:?}"));
        let elapsed = t.elapsed();
        println!(
            "{what}: {op} returned after {:.2} s (request timeout {:?}): {r:?}",
            elapsed.as_secs_f64(),
            REQUEST_TIMEOUT
        );
        match r {
            Err(ZkError::Timeout { timeout, .. }) => assert_eq!(timeout, REQUEST_TIMEOUT),
            Err(ZkError::ConnectionLoss { .. }) => {}
            other => panic!("{what}: {op} gave {other:?}, expected Timeout or ConnectionLoss"),
        }
    }
}

/// The client answers again: get, set and create succeed (a few attempts, each waiting
/// for the connection first; a write issued while the server was away may still land).
async fn client_works_again(c: &ZkClient, what: &str) {
    let mut last = None;
    for _ in 0..5 {
        assert!(
            c.wait_connected(BOUND).await,
            "{what}: not connected again within {BOUND:?}"
        );
        let r = async {
            c.set("/t", b"after", None).await?;
            let (data, _) = c.get("/t").await?.expect("/t exists");
            c.create_persistent(&format!("/after-{}", c.generation()), b"")
                .await
                .or_else(|e| match e {
                    ZkError::NodeExists(p) => Ok(p),
                    e => Err(e),
                })?;
            Ok::<_, ZkError>(data)
        }
        .await;
        match r {
            Ok(data) => {
                assert_eq!(data, b"after");
                return;
            }
            Err(e) => last = Some(e),
        }
    }
    panic!("{what}: client still failing after the server came back: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_time_out_while_the_server_is_frozen_and_work_after() {
    let zk = TestZk::dedicated().await;
    let mut settings = zk.settings();
    settings.request_timeout = REQUEST_TIMEOUT;
    let c = ZkClient::connect(settings).await.unwrap();
    c.create_persistent("/t", b"before").await.unwrap();
    let server = zk.server().expect("dedicated server");
    assert!(server.freeze(), "SIGSTOP the ZooKeeper process");
    calls_fail_within_request_timeout(&c, "frozen server").await;
    assert!(server.thaw(), "SIGCONT the ZooKeeper process");
    client_works_again(&c, "after thaw").await;
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_while_the_server_is_down_and_work_after_restart() {
    let zk = TestZk::dedicated().await;
    let mut settings = zk.settings();
    settings.request_timeout = REQUEST_TIMEOUT;
    let c = ZkClient::connect(settings).await.unwrap();
    c.create_persistent("/t", b"before").await.unwrap();
    let server = zk.server().expect("dedicated server");
    tokio::task::block_in_place(|| server.stop());
    calls_fail_within_request_timeout(&c, "stopped server").await;
    tokio::task::block_in_place(|| server.restart()).expect("restart ZooKeeper");
    client_works_again(&c, "after restart").await;
    c.close().await;
}

// --- pending requests (the launcher's zk.client.connection_queue gauge) ---------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_requests_count_calls_waiting_for_a_frozen_server() {
    let zk = TestZk::dedicated().await;
    let c = zk.client().await;
    c.create_persistent("/t", b"x").await.unwrap();
    assert_eq!(c.pending_requests(), 0);
    let server = zk.server().expect("dedicated server");
    assert!(server.freeze(), "SIGSTOP the ZooKeeper process");
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.get("/t").await })
        })
        .collect();
    step("3 calls pending", async {
        while c.pending_requests() != 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(server.thaw(), "SIGCONT the ZooKeeper process");
    for call in calls {
        let _ = step("call ends", call).await;
    }
    assert_eq!(c.pending_requests(), 0);
    c.close().await;
}

// --- moving to other servers (a reloaded zookeeper-servers) --------------------------------

/// Components registered through the store under `kind` on the server `c` talks to.
async fn launcher_names(c: &ZkClient) -> Vec<String> {
    ZkStore::new(c.clone())
        .components(ComponentKind::Launcher)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_moves_session_locks_and_components_to_another_ensemble() {
    let old = TestZk::shared().await;
    let new = TestZk::dedicated().await;
    let c = old.client().await;
    let store = ZkStore::new(c.clone());
    let reg = store
        .register_component(Component::new(ComponentKind::Launcher, "mover", "11.0.0"))
        .await
        .unwrap();
    let mut lock = ZkLock::new(&c, "/nodepool/images/img/lock", b"");
    assert!(lock.try_acquire().await.unwrap());
    c.create_ephemeral("/eph", b"").await.unwrap();
    let watch_old = old.client().await;
    let watch_new = new.client().await;
    assert_eq!(launcher_names(&watch_old).await.len(), 1);
    let mut events = c.subscribe();

    let moved = step("move", c.reconfigure(new.settings())).await.unwrap();
    assert_eq!(moved, Reconfigured::Moved { generation: 2 });
    assert_eq!(c.settings(), new.settings());
    assert_eq!(c.generation(), 2);
    assert!(matches!(events.recv().await, Ok(SessionEvent::Lost)));
    wait_reconnected(&mut events, 2).await;
    // The old session was closed: its ephemerals are gone from the old ensemble.
    wait_gone(&watch_old, "/eph").await;
    step("old component gone", async {
        while !launcher_names(&watch_old).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        !lock.is_held(),
        "a lock of the old session is reported lost"
    );
    // The component record follows the new session onto the new ensemble.
    step("component on the new ensemble", async {
        while launcher_names(&watch_new).await.len() != 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Calls go to the new ensemble; the lock can be taken there.
    c.create_persistent("/after-move", b"").await.unwrap();
    assert!(watch_new.exists("/after-move").await.unwrap().is_some());
    assert!(watch_old.exists("/after-move").await.unwrap().is_none());
    let mut again = ZkLock::new(&c, "/nodepool/images/img/lock", b"");
    assert!(again.try_acquire().await.unwrap());
    again.release().await.unwrap();
    // Moving back with only a timeout changed: nothing to do but remember the timeout.
    let mut same = new.settings();
    same.request_timeout += Duration::from_secs(1);
    assert_eq!(
        c.reconfigure(same.clone()).await.unwrap(),
        Reconfigured::Unchanged
    );
    assert_eq!(c.settings(), same);
    assert_eq!(c.generation(), 2);
    reg.unregister().await.unwrap();
    c.close().await;
    watch_old.close().await;
    watch_new.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_to_more_servers_of_the_same_ensemble_keeps_the_session() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    c.ensure_path("/nodepool").await.unwrap();
    let mut lock = ZkLock::new(&c, "/nodepool/images/img/lock", b"");
    assert!(lock.try_acquire().await.unwrap());
    // The same server plus one that does not answer: the same ensemble.
    let mut more = zk.settings();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = closed.local_addr().unwrap().port();
    drop(closed);
    more.hosts.push(("127.0.0.1".into(), dead_port));
    let r = step("reconfigure", c.reconfigure(more.clone()))
        .await
        .unwrap();
    assert_eq!(r, Reconfigured::SameEnsemble);
    assert_eq!(c.generation(), 1);
    assert!(lock.is_held(), "the session and its lock stay");
    assert_eq!(
        c.settings(),
        more,
        "the new list is kept for the next session"
    );
    lock.release().await.unwrap();
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_to_unreachable_servers_stays_and_moves_once_they_answer() {
    let old = TestZk::shared().await;
    let new = TestZk::dedicated().await;
    let server = new.server().expect("dedicated server");
    tokio::task::block_in_place(|| server.stop());
    let c = old.client().await;
    let mut target = new.settings();
    target.session_timeout = Duration::from_secs(2);
    let err = step("reconfigure", c.reconfigure(target.clone()))
        .await
        .unwrap_err();
    assert!(
        err.is_connection_problem() || matches!(err, ZkError::Connect { .. }),
        "{err}"
    );
    // Still on the old servers, working.
    assert_eq!(c.generation(), 1);
    c.create_persistent("/still-old", b"").await.unwrap();
    assert!(old
        .client()
        .await
        .exists("/still-old")
        .await
        .unwrap()
        .is_some());
    // The move is retried in the background once the new servers answer.
    tokio::task::block_in_place(|| server.restart()).expect("restart ZooKeeper");
    let mut status = c.watch_status();
    step("moved after the restart", async {
        while status.borrow_and_update().generation < 2 {
            status.changed().await.unwrap();
        }
    })
    .await;
    c.create_persistent("/now-new", b"").await.unwrap();
    assert!(new
        .client()
        .await
        .exists("/now-new")
        .await
        .unwrap()
        .is_some());
    c.close().await;
}
