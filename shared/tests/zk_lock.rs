//! The kazoo-compatible lock and election against a real ZooKeeper: contention, timeouts,
//! cancellation, FIFO order, names, helpers, and interop both ways with Python kazoo.

use std::process::Stdio;
use std::time::Duration;

use nodepool_shared::testing::{step, TestZk};
use nodepool_shared::zk::election::default_identifier;
use nodepool_shared::zk::{
    contender_identifiers, force_unlock, is_locked, lock_contenders, Election, ZkClient, ZkLock,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};

/// Every wait in these tests is bounded by this: the bound of a [`step`], so that a lock
/// wait with a shorter deadline of its own cannot give up first on a loaded machine and
/// fail the test as something else.
const BOUND: Duration = nodepool_shared::testing::WAIT;

/// Waits (bounded) until `dir` has exactly `n` contenders.
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

fn is_kazoo_name(name: &str) -> bool {
    let Some((uuid, seq)) = name.split_once("__lock__") else {
        return false;
    };
    uuid.len() == 32
        && uuid
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && seq.len() == 10
        && seq.bytes().all(|b| b.is_ascii_digit())
}

#[tokio::test]
async fn two_clients_contend() {
    let zk = TestZk::shared().await;
    let (a, b) = (zk.client().await, zk.client().await);
    let dir = "/nodepool/nodes/0000000001/lock";
    let mut la = ZkLock::new(&a, dir, b"");
    assert!(!la.is_held());
    assert!(step("a try", la.try_acquire()).await.unwrap());
    assert!(la.is_held());
    assert!(is_locked(&b, dir).await.unwrap());

    // Non-blocking fails and leaves nothing behind.
    let mut lb = ZkLock::new(&b, dir, b"");
    assert!(!step("b try", lb.try_acquire()).await.unwrap());
    assert!(!lb.is_held());
    let only = lock_contenders(&b, dir).await.unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(la.node_path().unwrap(), format!("{dir}/{}", only[0]));

    // A timed-out blocking attempt returns false and leaves nothing behind.
    assert!(
        !step("b timeout", lb.acquire(Some(Duration::from_millis(300))))
            .await
            .unwrap()
    );
    assert_eq!(lock_contenders(&b, dir).await.unwrap(), only);

    // A blocking attempt gets the lock right after the release.
    let waiter = tokio::spawn(async move {
        let ok = lb.acquire(Some(BOUND)).await.unwrap();
        (ok, lb)
    });
    wait_contenders(&a, dir, 2).await;
    la.release().await.unwrap();
    assert!(!la.is_held());
    let (ok, mut lb) = step("b acquire", waiter).await.unwrap();
    assert!(ok);
    assert!(lb.is_held());
    let names = lock_contenders(&a, dir).await.unwrap();
    assert_eq!(names.len(), 1);
    assert!(is_kazoo_name(&names[0]), "{names:?}");
    lb.release().await.unwrap();
    // The lock dir stays, empty.
    assert_eq!(a.get_children(dir).await.unwrap(), Some(vec![]));
    assert!(!is_locked(&a, dir).await.unwrap());
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn cancelled_acquire_leaves_no_child() {
    let zk = TestZk::shared().await;
    let (a, b) = (zk.client().await, zk.client().await);
    let dir = "/nodepool/requests-lock/100-0000000001";
    let mut la = ZkLock::new(&a, dir, b"");
    assert!(la.try_acquire().await.unwrap());
    let waiter = tokio::spawn(async move {
        let mut lb = ZkLock::new(&b, dir, b"");
        let _ = lb.acquire(None).await;
        b
    });
    wait_contenders(&a, dir, 2).await;
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    let left = wait_contenders(&a, dir, 1).await;
    assert_eq!(format!("{dir}/{}", left[0]), la.node_path().unwrap());

    // Also through tokio::time::timeout around a waiting acquire.
    let c = zk.client().await;
    let mut lc = ZkLock::new(&c, dir, b"");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), lc.acquire(None))
            .await
            .is_err()
    );
    wait_contenders(&a, dir, 1).await;
    la.release().await.unwrap();
    a.close().await;
    c.close().await;
}

#[tokio::test]
async fn drop_of_held_lock_releases_it() {
    let zk = TestZk::shared().await;
    let a = zk.client().await;
    let dir = "/nodepool/images/ubuntu/builds/lock";
    let mut la = ZkLock::new(&a, dir, b"");
    assert!(la.acquire(Some(BOUND)).await.unwrap());
    wait_contenders(&a, dir, 1).await;
    drop(la);
    wait_contenders(&a, dir, 0).await;
    a.close().await;
}

#[tokio::test]
async fn waiters_are_served_in_fifo_order() {
    let zk = TestZk::shared().await;
    let a = zk.client().await;
    let dir = "/fifo/lock";
    let mut la = ZkLock::new(&a, dir, b"");
    assert!(la.try_acquire().await.unwrap());
    let (got_tx, mut got_rx) = mpsc::unbounded_channel();
    let mut releases = Vec::new();
    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..3usize {
        let c = zk.client().await;
        clients.push(c.clone());
        let (rel_tx, rel_rx) = oneshot::channel::<()>();
        releases.push(rel_tx);
        let got_tx = got_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut l = ZkLock::new(&c, dir, format!("w{i}").as_bytes());
            assert!(l.acquire(Some(BOUND)).await.unwrap());
            got_tx.send(i).unwrap();
            let _ = rel_rx.await;
            l.release().await.unwrap();
        }));
        // Queue them one after the other.
        wait_contenders(&a, dir, i + 2).await;
    }
    assert_eq!(
        contender_identifiers(&a, dir).await.unwrap(),
        vec!["", "w0", "w1", "w2"]
    );
    la.release().await.unwrap();
    let mut order = Vec::new();
    for rel in releases {
        order.push(step("next waiter", got_rx.recv()).await.unwrap());
        rel.send(()).unwrap();
    }
    assert_eq!(order, vec![0, 1, 2]);
    for t in tasks {
        step("waiter task", t).await.unwrap();
    }
    wait_contenders(&a, dir, 0).await;
    for c in clients {
        c.close().await;
    }
    a.close().await;
}

#[tokio::test]
async fn helpers_contenders_and_force_unlock() {
    let zk = TestZk::shared().await;
    let (a, b) = (zk.client().await, zk.client().await);
    let dir = "/nodepool/nodes/0000000007/lock";
    // Helpers on a missing dir report nothing and create nothing.
    assert!(lock_contenders(&a, dir).await.unwrap().is_empty());
    assert!(!is_locked(&a, dir).await.unwrap());
    assert_eq!(force_unlock(&a, dir).await.unwrap(), None);
    assert!(a.exists("/nodepool").await.unwrap().is_none());

    let mut la = ZkLock::new(&a, dir, b"alpha");
    assert!(la.try_acquire().await.unwrap());
    let waiter = tokio::spawn(async move {
        let mut lb = ZkLock::new(&b, dir, b"beta");
        let ok = lb.acquire(Some(BOUND)).await.unwrap();
        (ok, lb, b)
    });
    let names = wait_contenders(&a, dir, 2).await;
    assert!(names.iter().all(|n| is_kazoo_name(n)), "{names:?}");
    assert_eq!(
        contender_identifiers(&a, dir).await.unwrap(),
        vec!["alpha", "beta"]
    );
    // Foreign children that are not contenders are ignored.
    a.create_persistent(&format!("{dir}/not-a-lock"), b"")
        .await
        .unwrap();
    assert_eq!(lock_contenders(&a, dir).await.unwrap(), names);

    // Force-unlocking removes the holder; the waiter gets the lock.
    assert_eq!(
        force_unlock(&a, dir).await.unwrap().as_deref(),
        Some(names[0].as_str())
    );
    let (ok, mut lb, b) = step("b acquire after force unlock", waiter).await.unwrap();
    assert!(ok);
    assert_eq!(contender_identifiers(&a, dir).await.unwrap(), vec!["beta"]);
    lb.release().await.unwrap();
    // Releasing a force-unlocked lock is harmless.
    la.release().await.unwrap();
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn election_leader_and_successor() {
    let zk = TestZk::shared().await;
    let (a, b) = (zk.client().await, zk.client().await);
    let dir = "/nodepool/elections/stats";
    let mut ea = Election::new(&a, dir);
    step("a campaign", ea.campaign()).await.unwrap();
    assert!(ea.is_leader());
    let mut eb = Election::with_identifier(&b, dir, "other-host-1");
    let follower = tokio::spawn(async move {
        eb.campaign().await.unwrap();
        eb
    });
    wait_contenders(&a, dir, 2).await;
    assert_eq!(
        ea.contenders().await.unwrap(),
        vec![default_identifier(), "other-host-1".to_string()]
    );
    let ident = default_identifier();
    let (host, pid) = ident.rsplit_once('-').unwrap();
    assert!(!host.is_empty());
    assert_eq!(pid, std::process::id().to_string());
    ea.resign().await.unwrap();
    assert!(!ea.is_leader());
    let mut eb = step("b elected", follower).await.unwrap();
    assert!(eb.is_leader());
    eb.resign().await.unwrap();
    a.close().await;
    b.close().await;
}

// --- kazoo interop ------------------------------------------------------------------------

/// A Python kazoo `Lock` in a child process, driven over stdin/stdout.
struct Kazoo {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Kazoo {
    async fn start(zk: &TestZk, dir: &str, identifier: &str) -> Kazoo {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kazoo/lock_helper.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(zk.kazoo_hosts())
            .arg(dir)
            .arg(identifier)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 (needed for kazoo interop): {e}"));
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut k = Kazoo {
            child,
            stdin,
            lines,
        };
        match k.line().await.as_str() {
            "ready" => k,
            "NO_KAZOO" => panic!(
                "kazoo is not installed for the python3 on PATH; run ./scripts/run-tests \
                 (it installs it) or `python3 -m pip install kazoo`"
            ),
            other => panic!("kazoo helper: unexpected first line {other:?}"),
        }
    }

    async fn line(&mut self) -> String {
        step("kazoo helper answer", self.lines.next_line())
            .await
            .expect("read from kazoo helper")
            .expect("kazoo helper exited early")
    }

    async fn send(&mut self, cmd: &str) {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .expect("write to kazoo helper");
        self.stdin.flush().await.unwrap();
    }

    async fn call(&mut self, cmd: &str) -> String {
        self.send(cmd).await;
        self.line().await
    }

    async fn quit(mut self) {
        self.send("quit").await;
        let status = step("kazoo helper exit", self.child.wait()).await.unwrap();
        assert!(status.success(), "kazoo helper: {status}");
    }
}

#[tokio::test]
async fn kazoo_holds_we_wait() {
    let zk = TestZk::shared().await;
    let a = zk.client().await;
    let dir = "/nodepool/nodes/0000000042/lock";
    let mut k = Kazoo::start(&zk, dir, "kazoo").await;
    assert_eq!(k.call("try").await, "True");
    let names = wait_contenders(&a, dir, 1).await;
    assert!(is_kazoo_name(&names[0]), "kazoo's own name {names:?}");

    let mut l = ZkLock::new(&a, dir, b"rust");
    assert!(!l.try_acquire().await.unwrap());
    assert_eq!(lock_contenders(&a, dir).await.unwrap(), names);

    let waiter = tokio::spawn(async move {
        let ok = l.acquire(Some(BOUND)).await.unwrap();
        (ok, l)
    });
    wait_contenders(&a, dir, 2).await;
    assert_eq!(k.call("contenders").await, r#"["kazoo", "rust"]"#);
    assert_eq!(k.call("release").await, "released");
    let (ok, mut l) = step("rust acquire after kazoo release", waiter)
        .await
        .unwrap();
    assert!(ok && l.is_held());
    assert_eq!(k.call("contenders").await, r#"["rust"]"#);
    l.release().await.unwrap();
    k.quit().await;
    a.close().await;
}

#[tokio::test]
async fn we_hold_kazoo_waits() {
    let zk = TestZk::shared().await;
    let a = zk.client().await;
    let dir = "/nodepool/requests-lock/200-0000000003";
    let mut l = ZkLock::new(&a, dir, b"rust-holder");
    assert!(l.try_acquire().await.unwrap());
    let mut k = Kazoo::start(&zk, dir, "kazoo").await;
    assert_eq!(k.call("try").await, "False");
    assert_eq!(lock_contenders(&a, dir).await.unwrap().len(), 1);
    assert_eq!(k.call("contenders").await, r#"["rust-holder"]"#);

    k.send(&format!("acquire {}", BOUND.as_secs())).await;
    wait_contenders(&a, dir, 2).await;
    assert_eq!(
        contender_identifiers(&a, dir).await.unwrap(),
        vec!["rust-holder", "kazoo"]
    );
    l.release().await.unwrap();
    assert_eq!(k.line().await, "True");
    // Now kazoo holds: we cannot.
    let mut l2 = ZkLock::new(&a, dir, b"");
    assert!(!l2.try_acquire().await.unwrap());
    assert_eq!(k.call("release").await, "released");
    assert!(l2.try_acquire().await.unwrap());
    l2.release().await.unwrap();
    k.quit().await;
    a.close().await;
}

/// `expect_new_dir`: the dir of a lock nobody ever took (a node just created) and our
/// contender are created in one transaction and the lock is held at once; an existing
/// dir, or a missing parent, gets kazoo's recipe with the same znodes.
#[tokio::test]
async fn a_new_lock_dir_and_its_contender_are_one_transaction() {
    let zk = TestZk::shared().await;
    let (a, b) = (zk.client().await, zk.client().await);
    a.create_persistent("/nodepool/nodes/0000000042", b"{}")
        .await
        .unwrap();
    let dir = "/nodepool/nodes/0000000042/lock";
    let mut la = ZkLock::new(&a, dir, b"").expect_new_dir();
    assert!(step("a new dir", la.try_acquire()).await.unwrap());
    assert!(la.is_held() && la.made_dir());
    let only = lock_contenders(&b, dir).await.unwrap();
    assert_eq!(only.len(), 1, "{only:?}");
    assert!(is_kazoo_name(&only[0]), "{}", only[0]);
    assert!(only[0].ends_with("__lock__0000000000"), "{}", only[0]);
    assert_eq!(la.node_path().unwrap(), format!("{dir}/{}", only[0]));
    let dir_stat = b.exists(dir).await.unwrap().expect("lock dir");
    let child_stat = b
        .exists(&format!("{dir}/{}", only[0]))
        .await
        .unwrap()
        .expect("contender");
    assert_eq!(
        dir_stat.czxid, child_stat.czxid,
        "the dir and the contender are one transaction"
    );
    assert_eq!(dir_stat.ephemeral_owner, 0, "the lock dir is persistent");
    assert_ne!(child_stat.ephemeral_owner, 0, "the contender is ephemeral");

    // The dir exists: the recipe runs (busy, nothing left behind), then takes it.
    let mut lb = ZkLock::new(&b, dir, b"").expect_new_dir();
    assert!(!step("b busy", lb.try_acquire()).await.unwrap());
    assert!(!lb.made_dir());
    assert_eq!(lock_contenders(&a, dir).await.unwrap(), only);
    la.release().await.unwrap();
    assert!(step("b after release", lb.try_acquire()).await.unwrap());
    assert!(!lb.made_dir());
    lb.release().await.unwrap();

    // The parent is missing: created by the recipe, as kazoo's `ensure_path` does.
    let orphan = "/nodepool/nodes/0000000043/lock";
    let mut lc = ZkLock::new(&a, orphan, b"").expect_new_dir();
    assert!(step("c parent missing", lc.try_acquire()).await.unwrap());
    assert!(!lc.made_dir());
    assert_eq!(lock_contenders(&b, orphan).await.unwrap().len(), 1);
    lc.release().await.unwrap();
}
