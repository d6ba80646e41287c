//! The `nodepool` binary against a real ZooKeeper: each test writes a nodepool.yaml that
//! points at its own chroot, puts records there through `ZkStore`, runs the built binary
//! and checks its output, exit status and what it changed in ZooKeeper.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use nodepool_shared::model::{
    now_epoch, paths, BuildId, BuildState, ImageBuild, ImageUpload, Node, NodeId, NodeRequest,
    NodeState, RequestState, UploadState,
};
use nodepool_shared::testing::TestZk;
use nodepool_shared::zk::{ZkLock, ZkSettings, ZkStore};

const BIN: &str = env!("CARGO_BIN_EXE_nodepool");

/// A test's ZooKeeper chroot, config file and store.
struct Env {
    _zk: TestZk,
    dir: tempfile::TempDir,
    config: PathBuf,
    store: ZkStore,
}

fn yaml_for(settings: &ZkSettings) -> String {
    let (host, port) = &settings.hosts[0];
    let mut y = format!(
        "zookeeper-servers:\n  - host: {host}\n    port: {port}\n    chroot: {}\n",
        settings.chroot.as_deref().unwrap_or("/")
    );
    if let Some(tls) = &settings.tls {
        y.push_str(&format!(
            "zookeeper-tls:\n  cert: {}\n  key: {}\n  ca: {}\n",
            tls.cert.display(),
            tls.key.display(),
            tls.ca.display()
        ));
    }
    y.push_str(
        "labels:\n  - name: small\n\
         diskimages:\n  - name: debian\n    elements: [vm]\n  - name: paused-image\n    pause: true\n\
         providers:\n  - name: fake-provider\n    cloud: fake\n    diskimages:\n      - name: debian\n\
         \x20   pools:\n      - name: main\n        max-servers: 10\n        labels:\n\
         \x20         - name: small\n            diskimage: debian\n            min-ram: 1024\n",
    );
    y
}

impl Env {
    async fn new() -> Env {
        Self::with(false).await
    }

    async fn with(tls: bool) -> Env {
        let zk = TestZk::shared().await;
        let settings = if tls {
            zk.tls_settings().expect("test ZooKeeper has a TLS port")
        } else {
            zk.settings()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("nodepool.yaml");
        std::fs::write(&config, yaml_for(&settings)).expect("write config");
        let store = ZkStore::new(zk.client().await);
        Env {
            _zk: zk,
            dir,
            config,
            store,
        }
    }

    async fn run(&self, args: &[&str]) -> Output {
        run_with(&self.config, args).await
    }

    async fn add_node(&self, provider: &str, state: NodeState, age: f64) -> NodeId {
        let mut n = Node::new();
        n.state = state;
        n.state_time = now_epoch() - age;
        n.provider = Some(provider.into());
        n.pool = Some("main".into());
        n.node_type = vec!["small".into()];
        n.external_id = Some(format!("srv-{}", uuid::Uuid::new_v4().simple()));
        n.public_ipv4 = Some("192.0.2.10".into());
        n.username = Some("zuul".into());
        self.store.create_node(&mut n).await.expect("create node")
    }

    async fn add_build(&self, image: &str, state: BuildState) -> ImageBuild {
        let mut b = ImageBuild::new(image, BuildId::generate());
        b.state = state;
        b.builder = Some("builder.example.org".into());
        b.formats = vec!["qcow2".into()];
        self.store.create_build(&mut b).await.expect("create build");
        b
    }

    async fn add_upload(&self, b: &ImageBuild, provider: &str, state: UploadState) -> ImageUpload {
        let mut u = ImageUpload::new(&b.image, b.id.clone(), provider);
        u.state = state;
        u.external_id = Some(format!("img-{}", uuid::Uuid::new_v4().simple()));
        u.external_name = Some(format!("{}-1700000000", b.image));
        u.format = Some("qcow2".into());
        self.store
            .create_upload(&mut u)
            .await
            .expect("create upload");
        u
    }
}

async fn run_with(config: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(BIN)
        .arg("-c")
        .arg(config)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("NODEPOOL_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run nodepool")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

#[track_caller]
fn assert_fails(o: &Output, code: i32, message: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout {}\nstderr {}",
        stdout(o),
        stderr(o)
    );
    assert!(
        stderr(o).contains(message),
        "stderr lacks {message:?}:\n{}",
        stderr(o)
    );
}

/// Replaces every `DD:HH:MM:SS` age with `AGE________` (same width), so tables can be
/// compared exactly although a second may pass.
fn mask_ages(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let is_age = |w: &[u8]| {
        w.len() == 11
            && w.iter().enumerate().all(|(k, c)| {
                if k % 3 == 2 {
                    *c == b':'
                } else {
                    c.is_ascii_digit()
                }
            })
    };
    while i < b.len() {
        if i + 11 <= b.len() && is_age(&b[i..i + 11]) {
            out.push_str("AGE________");
            i += 11;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_brief_and_detail_text_and_json() {
    let env = Env::new().await;
    let a = env
        .add_node("fake-provider", NodeState::Ready, 3723.0)
        .await;
    let b = env.add_node("other", NodeState::InUse, 10.0).await;
    // b is locked by someone else.
    let mut lock = ZkLock::new(env.store.client(), &paths::node_lock(&b), b"");
    assert!(lock.try_acquire().await.unwrap());
    let (na, _) = env.store.get_node(&a).await.unwrap().unwrap();
    let (nb, _) = env.store.get_node(&b).await.unwrap().unwrap();
    let sa = na.external_id.clone().unwrap();
    let sb = nb.external_id.clone().unwrap();

    let o = env.run(&["list"]).await;
    assert_ok(&o);
    let w = sa.len();
    let dash = "-".repeat(w + 2);
    let expected = format!(
        "+------------+---------------+-------+{dash}+-------------+------+--------+-------------+----------+\n\
         | ID         | Provider      | Label | {sid:<w$} | Public IPv4 | IPv6 | State  | Age         | Locked   |\n\
         +------------+---------------+-------+{dash}+-------------+------+--------+-------------+----------+\n\
         | {a} | fake-provider | small | {sa} | 192.0.2.10  | None | ready  | AGE________ | unlocked |\n\
         | {b} | other         | small | {sb} | 192.0.2.10  | None | in-use | AGE________ | locked   |\n\
         +------------+---------------+-------+{dash}+-------------+------+--------+-------------+----------+\n",
        sid = "Server ID",
    );
    assert_eq!(mask_ages(&stdout(&o)), expected);
    assert!(
        stdout(&o).contains("| 00:01:02:0"),
        "age of a: {}",
        stdout(&o)
    );

    let o = env.run(&["list", "--detail"]).await;
    assert_ok(&o);
    let text = stdout(&o);
    let header = text.lines().nth(1).unwrap();
    assert_eq!(header.matches(" | ").count() + 1, 21, "{header}");
    for col in [
        "Pool",
        "Hostname",
        "Username",
        "Port",
        "Launcher",
        "User Data",
        "Driver Data",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(text.contains("| main "), "{text}");

    // JSON: the web API's node-list objects (21 keys) with --detail, 9 without.
    let o = env.run(&["list", "--detail", "--format", "json"]).await;
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].as_object().unwrap().len(), 21);
    assert_eq!(rows[0]["id"], a.as_str());
    assert_eq!(rows[0]["label"], serde_json::json!(["small"]));
    assert_eq!(rows[0]["locked"], "unlocked");
    assert_eq!(rows[1]["locked"], "locked");
    assert_eq!(rows[0]["connection_port"], 22);
    // Same bytes as the listing library renders (what the web API serves).
    let now = now_epoch();
    let table = nodepool_shared::listing::node_list(
        [(&na, false), (&nb, true)],
        now,
        nodepool_shared::listing::NodeColumns::Detail,
    );
    assert_eq!(
        mask_ages(&stdout(&o)),
        mask_ages(&format!("{}\n", table.render_json()))
    );

    let o = env.run(&["list", "--format", "json"]).await;
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0].as_object().unwrap().len(), 9);

    // Listing does not create lock dirs (Python's does; we stay read-only).
    assert!(env
        .store
        .client()
        .exists(&paths::node_lock(&a))
        .await
        .unwrap()
        .is_none());
    lock.release().await.unwrap();
}

/// More nodes than one multi-read batch, over TLS: the batched reader (its own TLS
/// session) must give the same rows and lock flags as one-by-one reads, for nodes without
/// a lock dir (not read), with a held lock, and with an empty lock dir (read, unlocked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_many_nodes_over_tls() {
    let env = Env::with(true).await;
    let mut ids = Vec::new();
    for _ in 0..600 {
        ids.push(env.add_node("fake-provider", NodeState::Ready, 5.0).await);
    }
    let mut locks = Vec::new();
    for id in ids.iter().step_by(50) {
        let mut lock = ZkLock::new(env.store.client(), &paths::node_lock(id), b"");
        assert!(lock.try_acquire().await.unwrap());
        locks.push(lock);
    }
    // Locked once and released: an empty lock dir, i.e. unlocked.
    for id in ids.iter().skip(25).step_by(50) {
        let mut lock = ZkLock::new(env.store.client(), &paths::node_lock(id), b"");
        assert!(lock.try_acquire().await.unwrap());
        lock.release().await.unwrap();
    }
    let o = env.run(&["--debug", "list", "--format", "json"]).await;
    assert_ok(&o);
    // The batched path was taken (no fallback to one-by-one reads).
    assert!(!stderr(&o).contains("one by one"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 600);
    for (row, id) in rows.iter().zip(&ids) {
        assert_eq!(row["id"], id.as_str());
    }
    let locked: Vec<&str> = rows
        .iter()
        .filter(|r| r["locked"] == "locked")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = ids.iter().step_by(50).map(|i| i.as_str()).collect();
    assert_eq!(locked, expected);
    for mut l in locks {
        l.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_marks_deleting_and_unknown_id_fails() {
    let env = Env::new().await;
    let a = env.add_node("fake-provider", NodeState::Ready, 5.0).await;
    let o = env.run(&["delete", a.as_str()]).await;
    assert_ok(&o);
    let (n, _) = env.store.get_node(&a).await.unwrap().unwrap();
    assert_eq!(n.state, NodeState::Deleting);
    assert!(stdout(&o).contains("deleting"), "{}", stdout(&o));
    assert!(stdout(&o).contains("unlocked"), "{}", stdout(&o));
    // The lock was released.
    assert!(env.store.node_lock_contenders(&a).await.unwrap().is_empty());

    let o = env.run(&["delete", "0000999999"]).await;
    assert_fails(&o, 1, "Node id 0000999999 not found");
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    // No empty znode left behind by a lock attempt.
    assert!(env
        .store
        .client()
        .exists(&paths::node(&NodeId::from("0000999999")))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_now_of_a_static_node_needs_no_cloud() {
    let env = Env::new().await;
    let mut text = std::fs::read_to_string(&env.config).expect("config");
    text.push_str(
        "  - name: rack\n    driver: static\n    pools:\n      - name: main\n        nodes:\n\
         \x20         - name: host1.example.com\n            labels: small\n",
    );
    std::fs::write(&env.config, text).expect("config");
    let id = env.add_node("rack", NodeState::Ready, 5.0).await;
    // The host is the node's server id; there is no cloud to ask.
    let o = env.run(&["delete", "--now", id.as_str()]).await;
    assert_ok(&o);
    assert!(stdout(&o).contains("deleted"), "{}", stdout(&o));
    assert!(env.store.get_node(&id).await.unwrap().is_none());
}

/// A node record that does not parse (`{not json` written over a ready node) cannot be
/// changed: `delete` and `hold` refuse and say that `delete --now` removes it, which it
/// does under the node lock (znode and lock directory), leaving any server to leak
/// cleanup. A node whose lock is held is not removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_now_removes_a_corrupt_node_record() {
    let env = Env::new().await;
    let id = env.add_node("fake-provider", NodeState::Ready, 5.0).await;
    let client = env.store.client();
    // A lock directory exists (the node was locked and released before).
    let mut lock = ZkLock::new(client, &paths::node_lock(&id), b"");
    assert!(lock.try_acquire().await.unwrap());
    lock.release().await.unwrap();
    client
        .set(&paths::node(&id), b"{not json", None)
        .await
        .unwrap();

    for args in [
        vec!["delete", id.as_str()],
        vec!["hold", id.as_str()],
        vec!["delete", id.as_str(), "0000999999", "--yes"],
    ] {
        let o = env.run(&args).await;
        assert_fails(&o, 1, &format!("corrupt record at {}", paths::node(&id)));
        assert_fails(&o, 1, &format!("`nodepool delete --now {id}` removes"));
        assert!(client.exists(&paths::node(&id)).await.unwrap().is_some());
    }

    // Locked by someone else: refused, nothing removed.
    let mut other = ZkLock::new(client, &paths::node_lock(&id), b"");
    assert!(other.try_acquire().await.unwrap());
    let o = env.run(&["delete", "--now", id.as_str()]).await;
    assert_fails(&o, 1, "is locked by another client");
    assert!(client.exists(&paths::node(&id)).await.unwrap().is_some());
    other.release().await.unwrap();

    let o = env.run(&["delete", "--now", id.as_str()]).await;
    assert_ok(&o);
    let out = stdout(&o);
    assert!(
        out.contains(&format!("Removed the corrupt record of node {id}")),
        "{out}"
    );
    assert!(out.contains("leak cleanup"), "{out}");
    assert!(client.exists(&paths::node(&id)).await.unwrap().is_none());
    let o = env.run(&["delete", "--now", id.as_str()]).await;
    assert_fails(&o, 1, &format!("Node id {id} not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_several_ids_needs_yes_without_a_terminal() {
    let env = Env::new().await;
    let a = env.add_node("fake-provider", NodeState::Ready, 5.0).await;
    let b = env.add_node("fake-provider", NodeState::InUse, 5.0).await;
    let state = |id: NodeId| {
        let store = env.store.clone();
        async move { store.get_node(&id).await.unwrap().unwrap().0.state }
    };

    // No terminal on stdin and no --yes: refused, nothing changed.
    let o = env.run(&["delete", a.as_str(), b.as_str()]).await;
    assert_fails(
        &o,
        1,
        "refusing to delete 2 nodes without confirmation: stdin is not a terminal (use --yes)",
    );
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert_eq!(state(a.clone()).await, NodeState::Ready);
    assert_eq!(state(b.clone()).await, NodeState::InUse);

    // --yes: both deleting, both rows in one table, locks released.
    let o = env.run(&["delete", "--yes", a.as_str(), b.as_str()]).await;
    assert_ok(&o);
    assert_eq!(state(a.clone()).await, NodeState::Deleting);
    assert_eq!(state(b.clone()).await, NodeState::Deleting);
    let out = stdout(&o);
    for id in [&a, &b] {
        assert!(
            out.lines()
                .any(|l| l.contains(id.as_str()) && l.contains("deleting")),
            "{out}"
        );
        assert!(env.store.node_lock_contenders(id).await.unwrap().is_empty());
    }
    assert_eq!(out.matches("| ID ").count(), 1, "one table:\n{out}");

    // One unknown id among several: the others are deleted, the failure is named, exit 1.
    let c = env.add_node("fake-provider", NodeState::Ready, 5.0).await;
    let o = env.run(&["delete", "-y", "0000999999", c.as_str()]).await;
    assert_fails(&o, 1, "Node id 0000999999 not found");
    assert!(
        stderr(&o).contains("1 of 2 nodes not deleted"),
        "{}",
        stderr(&o)
    );
    assert_eq!(state(c.clone()).await, NodeState::Deleting);
    assert!(stdout(&o).contains(c.as_str()), "{}", stdout(&o));

    // One id needs no --yes, as in Python Nodepool.
    let d = env.add_node("fake-provider", NodeState::Ready, 5.0).await;
    assert_ok(&env.run(&["delete", d.as_str()]).await);
    assert_eq!(state(d).await, NodeState::Deleting);
    // No id at all: usage error.
    assert_eq!(env.run(&["delete"]).await.status.code(), Some(2));
}

/// Runs `nodepool ARGS` on a pseudo-terminal (util-linux `script`), typing `input`.
async fn run_on_terminal(env: &Env, args: &[&str], input: &str) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut words = vec![
        BIN.to_string(),
        "-c".into(),
        env.config.display().to_string(),
    ];
    words.extend(args.iter().map(|a| a.to_string()));
    let command = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = tokio::process::Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run script(1)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).await.expect("type");
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("nodepool on a terminal finishes")
        .expect("script output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_several_ids_asks_on_a_terminal() {
    let env = Env::new().await;
    let a = env.add_node("fake-provider", NodeState::Ready, 5.0).await;
    let b = env.add_node("fake-provider", NodeState::Ready, 5.0).await;
    let o = run_on_terminal(&env, &["delete", a.as_str(), b.as_str()], "n\n").await;
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains(&format!("Delete 2 nodes ({a}, {b})? [N/y]")),
        "{out}"
    );
    assert!(out.contains("Aborting. No node deleted."), "{out}");
    for id in [&a, &b] {
        let (n, _) = env.store.get_node(id).await.unwrap().unwrap();
        assert_eq!(n.state, NodeState::Ready);
    }
    let o = run_on_terminal(&env, &["delete", a.as_str(), b.as_str()], "y\n").await;
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    for id in [&a, &b] {
        let (n, _) = env.store.get_node(id).await.unwrap().unwrap();
        assert_eq!(n.state, NodeState::Deleting);
    }
}

/// A record's text with escape sequences (here a hold comment that would set the
/// terminal's clipboard through OSC 52, then clear the screen) reaches a terminal with
/// its control characters as `?`, and a pipe unchanged, as Python Nodepool prints it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_reach_a_terminal_as_question_marks() {
    let env = Env::new().await;
    let evil = "\u{1b}]52;c;cHduZWQ=\u{7}\u{1b}[2J\u{9b}31mheld";
    let mut n = Node::new();
    n.state = NodeState::Hold;
    n.state_time = now_epoch() - 5.0;
    n.provider = Some("fake-provider".into());
    n.pool = Some("main".into());
    n.node_type = vec!["small".into()];
    n.comment = Some(evil.into());
    env.store.create_node(&mut n).await.expect("create node");

    let piped = env.run(&["list", "--detail"]).await;
    assert_ok(&piped);
    assert!(stdout(&piped).contains(evil), "{}", stdout(&piped));

    let o = run_on_terminal(&env, &["list", "--detail"], "").await;
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("?]52;c;cHduZWQ=??[2J?31mheld"), "{out:?}");
    assert!(
        !out.contains('\u{1b}') && !out.contains('\u{9b}'),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_of_locked_node_times_out() {
    let env = Env::new().await;
    let a = env.add_node("fake-provider", NodeState::InUse, 5.0).await;
    let mut lock = ZkLock::new(env.store.client(), &paths::node_lock(&a), b"");
    assert!(lock.try_acquire().await.unwrap());
    let o = env.run(&["delete", a.as_str()]).await;
    assert_fails(&o, 1, "is locked by another client");
    let (n, _) = env.store.get_node(&a).await.unwrap().unwrap();
    assert_eq!(n.state, NodeState::InUse);
    lock.release().await.unwrap();
    // Our contender is gone too; only none remain.
    assert!(env.store.node_lock_contenders(&a).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_sets_state_and_reason() {
    let env = Env::new().await;
    let a = env.add_node("fake-provider", NodeState::Ready, 5.0).await;
    let o = env
        .run(&["hold", a.as_str(), "--reason", "debugging"])
        .await;
    assert_ok(&o);
    let (n, _) = env.store.get_node(&a).await.unwrap().unwrap();
    assert_eq!(n.state, NodeState::Hold);
    assert_eq!(n.comment.as_deref(), Some("debugging"));
    assert!(stdout(&o).contains("| hold "), "{}", stdout(&o));
    let o = env.run(&["hold", "0000000077"]).await;
    assert_fails(&o, 1, "Node id 0000000077 not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pause_unpause_build_and_status() {
    let env = Env::new().await;
    let o = env.run(&["image-pause", "debian"]).await;
    assert_ok(&o);
    assert!(env.store.image_paused("debian").await.unwrap());
    let o = env.run(&["image-status", "--format", "json"]).await;
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        "[{\"image\": \"debian\", \"paused\": true, \"build_request\": null, \"build_request_age\": null}]\n"
    );
    let o = env.run(&["image-unpause", "debian"]).await;
    assert_ok(&o);
    assert!(!env.store.image_paused("debian").await.unwrap());

    let o = env.run(&["image-build", "debian"]).await;
    assert_ok(&o);
    assert!(env.store.build_request("debian").await.unwrap().is_some());
    let o = env.run(&["image-status"]).await;
    assert_ok(&o);
    assert!(
        mask_ages(&stdout(&o)).contains("| debian | False  | pending       | AGE________       |"),
        "{}",
        stdout(&o)
    );

    let o = env.run(&["image-build", "nope"]).await;
    assert_fails(
        &o,
        1,
        "Trying to build a non disk-image-builder image: nope",
    );
    let o = env.run(&["image-build", "paused-image"]).await;
    assert_fails(&o, 1, "paused");
    assert!(env
        .store
        .build_request("paused-image")
        .await
        .unwrap()
        .is_none());
}

/// A `chroot` that does not exist yet behaves as with Python Nodepool (kazoo): a warning,
/// reads find nothing (`list` prints an empty table, exit 0), and the first write
/// (`image-pause`) creates the chroot node — which needs its parent; without it the
/// write fails with an error naming the chroot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_chroot_warns_lists_nothing_and_is_created_by_a_write() {
    let env = Env::new().await;
    let missing = format!("{}/missing", env._zk.chroot());
    let config = env.dir.path().join("missing.yaml");
    let settings = env._zk.settings().with_chroot(Some(missing.clone()));
    std::fs::write(&config, yaml_for(&settings)).unwrap();
    let o = run_with(&config, &["list"]).await;
    assert_ok(&o);
    assert!(
        stderr(&o).contains(&format!("chroot {missing} does not exist")),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("small"), "{}", stdout(&o));
    let o = run_with(&config, &["image-pause", "debian"]).await;
    assert_ok(&o);
    let there = ZkStore::new(
        nodepool_shared::zk::ZkClient::connect(settings)
            .await
            .unwrap(),
    );
    assert!(there.image_paused("debian").await.unwrap());

    let deep = format!("{}/a/b", env._zk.chroot());
    let settings = env._zk.settings().with_chroot(Some(deep.clone()));
    std::fs::write(&config, yaml_for(&settings)).unwrap();
    let o = run_with(&config, &["image-pause", "debian"]).await;
    assert_fails(
        &o,
        1,
        &format!("ZooKeeper chroot {deep} does not exist and cannot be created"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dib_image_delete_rules() {
    let env = Env::new().await;
    let ready = env.add_build("debian", BuildState::Ready).await;
    let building = env.add_build("debian", BuildState::Building).await;

    let o = env.run(&["dib-image-list"]).await;
    assert_ok(&o);
    assert!(
        stdout(&o).contains(&format!("debian-{}", ready.id)),
        "{}",
        stdout(&o)
    );

    let o = env
        .run(&["dib-image-delete", &format!("debian-{}", building.id)])
        .await;
    assert_fails(&o, 1, "Cannot delete a build in progress");
    let (b, _) = env
        .store
        .get_build("debian", &building.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.state, BuildState::Building);

    let o = env
        .run(&["dib-image-delete", &format!("debian-{}", ready.id)])
        .await;
    assert_ok(&o);
    let (b, _) = env
        .store
        .get_build("debian", &ready.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.state, BuildState::Deleting);

    let o = env.run(&["dib-image-delete", "debian-0123"]).await;
    assert_fails(&o, 1, "Build debian-0123 not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_delete_rules_and_image_list() {
    let env = Env::new().await;
    let b = env.add_build("debian", BuildState::Ready).await;
    let up = env
        .add_upload(&b, "fake-provider", UploadState::Uploading)
        .await;
    let ready = env
        .add_upload(&b, "fake-provider", UploadState::Ready)
        .await;

    let o = env.run(&["image-list", "--format", "json"]).await;
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["upload_id"], ready.id.as_str());
    assert_eq!(v[1]["state"], "ready");

    let args = |u: &ImageUpload| {
        vec![
            "image-delete".to_string(),
            "--provider".into(),
            "fake-provider".into(),
            "--image".into(),
            "debian".into(),
            "--build-id".into(),
            b.id.to_string(),
            "--upload-id".into(),
            u.id.to_string(),
        ]
    };
    let env_ref = &env;
    let run = |a: Vec<String>| async move {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        env_ref.run(&refs).await
    };
    let o = run(args(&up)).await;
    assert_fails(&o, 1, "Cannot delete because image upload in progress");
    let o = run(args(&ready)).await;
    assert_ok(&o);
    let (u, _) = env
        .store
        .get_upload("debian", &b.id, "fake-provider", &ready.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.state, UploadState::Deleting);
    let mut missing = args(&ready);
    *missing.last_mut().unwrap() = "0000000999".into();
    let o = run(missing).await;
    assert_fails(&o, 1, "Image upload not found");

    // Missing required option: usage error.
    let o = env
        .run(&["image-delete", "--provider", "fake-provider"])
        .await;
    assert_eq!(o.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_list_text_and_json() {
    let env = Env::new().await;
    let mut r = NodeRequest {
        node_types: vec!["small".into(), "small".into()],
        requestor: Some("zuul-scheduler".into()),
        state: RequestState::Requested,
        relative_priority: 3,
        ..NodeRequest::default()
    };
    let id = env
        .store
        .create_request(&mut r, "100", false)
        .await
        .unwrap();
    let o = env.run(&["request-list"]).await;
    assert_ok(&o);
    let t = stdout(&o);
    assert!(t.contains("Request ID"), "{t}");
    assert!(
        t.contains(&format!(
            "| {id} | 3        | requested | zuul-scheduler | small,small"
        )),
        "{t}"
    );
    let o = env.run(&["request-list", "--format", "json"]).await;
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["id"], id.as_str());
    assert_eq!(v[0]["node_types"], serde_json::json!(["small", "small"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_erase() {
    let env = Env::new().await;
    let b = env.add_build("debian", BuildState::Ready).await;
    let u1 = env
        .add_upload(&b, "fake-provider", UploadState::Ready)
        .await;
    let u2 = env.add_upload(&b, "other", UploadState::Ready).await;
    let n1 = env.add_node("fake-provider", NodeState::Ready, 5.0).await;
    let n2 = env.add_node("other", NodeState::Ready, 5.0).await;

    let o = env.run(&["info", "fake-provider"]).await;
    assert_ok(&o);
    let t = stdout(&o);
    assert!(
        t.starts_with("ZooKeeper data for provider fake-provider\n\nImage data:\n"),
        "{t}"
    );
    assert!(
        t.contains(&format!("| debian     | {} | {} |", b.id, u1.id)),
        "{t}"
    );
    assert!(t.contains(n1.as_str()) && !t.contains(n2.as_str()), "{t}");

    // Without --force/--yes and without a terminal: refused, nothing erased.
    let o = env.run(&["erase", "fake-provider"]).await;
    assert_fails(&o, 1, "stdin is not a terminal");
    assert!(env.store.get_node(&n1).await.unwrap().is_some());

    let o = env.run(&["erase", "fake-provider", "--yes"]).await;
    assert_ok(&o);
    assert!(stdout(&o).contains("Erasing build data for fake-provider..."));
    assert!(env.store.get_node(&n1).await.unwrap().is_none());
    assert!(env.store.get_node(&n2).await.unwrap().is_some());
    let providers = env.store.build_providers("debian", &b.id).await.unwrap();
    assert_eq!(providers, vec!["other".to_string()]);
    assert!(env
        .store
        .get_upload("debian", &b.id, "other", &u2.id)
        .await
        .unwrap()
        .is_some());

    let o = env.run(&["erase", "other", "--force"]).await;
    assert_ok(&o);
    assert!(env.store.get_node(&n2).await.unwrap().is_none());
    assert!(env
        .store
        .build_providers("debian", &b.id)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_round_trip_bumps_sequences() {
    let src = Env::new().await;
    let b = src.add_build("debian", BuildState::Ready).await;
    let mut last = None;
    for _ in 0..7 {
        last = Some(
            src.add_upload(&b, "fake-provider", UploadState::Ready)
                .await,
        );
    }
    let last = last.unwrap();
    assert_eq!(last.id.as_str(), "0000000006");
    src.store.pause_image("debian").await.unwrap();

    let file = src.dir.path().join("export.json");
    // A longer old file must not leave trailing bytes.
    std::fs::write(&file, "x".repeat(100_000)).unwrap();
    let o = src
        .run(&["export-image-data", file.to_str().unwrap()])
        .await;
    assert_ok(&o);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let doc: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(doc.len(), 1 + 7 + 1);
    assert_eq!(doc[&paths::image_pause("debian")], "");

    let dst = Env::new().await;
    let o = dst
        .run(&["import-image-data", file.to_str().unwrap()])
        .await;
    assert_ok(&o);
    let (b2, _) = dst.store.get_build("debian", &b.id).await.unwrap().unwrap();
    assert_eq!(b2.state, BuildState::Ready);
    assert_eq!(
        dst.store
            .uploads("debian", &b.id, "fake-provider")
            .await
            .unwrap()
            .len(),
        7
    );
    assert!(dst.store.image_paused("debian").await.unwrap());
    // The next upload gets a number above every imported one.
    let next = dst
        .add_upload(&b, "fake-provider", UploadState::Uploading)
        .await;
    assert!(next.id.sequence().unwrap() > 6, "{}", next.id);

    // Importing again is refused (records exist); nothing half-written.
    let o = dst
        .run(&["import-image-data", file.to_str().unwrap()])
        .await;
    assert_fails(&o, 1, "already exist");
}

/// Runs `import-image-data` on `doc` in `env`, bounded (it once ran past a minute).
async fn import(env: &Env, doc: &BTreeMap<String, String>) -> Output {
    let file = env
        .dir
        .path()
        .join(format!("import-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, serde_json::to_string(doc).unwrap()).unwrap();
    tokio::time::timeout(
        Duration::from_secs(120),
        env.run(&["import-image-data", file.to_str().unwrap()]),
    )
    .await
    .expect("import-image-data ended within 2 minutes")
}

/// Every znode below `/nodepool/images` (paths), to show nothing was written.
async fn image_znodes(store: &ZkStore) -> Vec<String> {
    let c = store.client();
    let mut out = Vec::new();
    let mut todo = vec![paths::IMAGES.to_string()];
    while let Some(p) = todo.pop() {
        for child in c.get_children(&p).await.unwrap().unwrap_or_default() {
            let path = format!("{p}/{child}");
            out.push(path.clone());
            todo.push(path);
        }
    }
    out.sort();
    out
}

/// A bad import file (an upload id beyond ZooKeeper's 32-bit sequence or far beyond any
/// real counter, a value that is not the record the path names, a path the export never
/// writes) is refused with one line naming the path and the reason, before anything is
/// written: no build record, no upload directory, no throw-away znodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_image_data_refuses_a_bad_file_and_writes_nothing() {
    let env = Env::new().await;
    let build = BuildId::generate();
    let build_path = paths::build("debian", &build);
    let upload = |n: &str| {
        format!(
            "{}/{n}",
            paths::provider_uploads("debian", &build, "fake-provider")
        )
    };
    let good_build =
        r#"{"state": "ready", "state_time": 1700000000.0, "builder": "b1", "formats": "qcow2"}"#;
    let good_upload = r#"{"state": "ready", "state_time": 1700000000.0, "external_id": "img-1"}"#;
    // (the file's entries, the bad path, the reason named)
    type Case<'a> = (Vec<(String, &'a str)>, String, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                (build_path.clone(), good_build),
                (upload("9999999999"), good_upload),
            ],
            upload("9999999999"),
            "beyond ZooKeeper's sequence counter",
        ),
        (
            vec![
                (build_path.clone(), good_build),
                (upload("0000100001"), good_upload),
            ],
            upload("0000100001"),
            "above 100000",
        ),
        (
            vec![(build_path.clone(), "not json at all")],
            build_path.clone(),
            "invalid JSON",
        ),
        (
            vec![
                (build_path.clone(), good_build),
                (upload("0000000001"), "not json at all"),
            ],
            upload("0000000001"),
            "invalid JSON",
        ),
        (
            vec![(build_path.clone(), r#"{"state": "exploded"}"#)],
            build_path.clone(),
            "`state`",
        ),
        (
            vec![
                (build_path.clone(), good_build),
                (paths::image_request_build("debian"), ""),
            ],
            paths::image_request_build("debian"),
            "not an image build, upload or pause flag",
        ),
        (
            vec![(format!("{}/../nodes/0000000001", paths::IMAGES), "{}")],
            format!("{}/../nodes/0000000001", paths::IMAGES),
            "`..`",
        ),
    ];
    for (entries, bad_path, reason) in cases {
        let doc: BTreeMap<String, String> = entries
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        let o = import(&env, &doc).await;
        assert_fails(&o, 1, &bad_path);
        assert_fails(&o, 1, reason);
        assert_fails(&o, 1, "nothing imported");
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
        assert!(
            image_znodes(&env.store).await.is_empty(),
            "{bad_path}: written: {:?}",
            image_znodes(&env.store).await
        );
    }
}

/// The highest upload id accepted is imported: the counter is raised by transactions of
/// create/delete pairs, which leave no throw-away znode behind, and the next upload gets
/// a number above the imported one (the old way compared the directory's `cversion`,
/// which counts deletes too, and left the counter at about half the id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_image_data_raises_a_high_upload_counter() {
    let env = Env::new().await;
    let b = ImageBuild {
        state: BuildState::Ready,
        ..ImageBuild::new("debian", BuildId::generate())
    };
    let dir = paths::provider_uploads("debian", &b.id, "fake-provider");
    let mut doc = BTreeMap::new();
    doc.insert(b.path(), String::from_utf8(b.to_json()).unwrap());
    doc.insert(
        format!("{dir}/0000100000"),
        r#"{"state": "ready", "external_id": "img-1"}"#.to_string(),
    );
    let o = import(&env, &doc).await;
    assert_ok(&o);
    assert_eq!(
        env.store
            .client()
            .get_children(&dir)
            .await
            .unwrap()
            .unwrap(),
        ["0000100000"]
    );
    let next = env
        .add_upload(&b, "fake-provider", UploadState::Uploading)
        .await;
    assert!(next.id.sequence().unwrap() > 100_000, "{}", next.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_validate_good_and_bad() {
    let env = Env::new().await;
    let o = env.run(&["config-validate"]).await;
    assert_ok(&o);
    let bad = env.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "zookeeper-servers:\n  - host: 127.0.0.1\n    port: nope\nlabels:\n  - name: small\n    bogus: 1\n",
    )
    .unwrap();
    let o = run_with(&bad, &["config-validate"]).await;
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    let b = bad.display();
    assert!(
        e.contains(&format!("{b}:3:11: zookeeper-servers[0].port")),
        "{e}"
    );
    assert!(
        e.contains(&format!("{b}:6:5: labels[0]: unknown key `bogus`")),
        "{e}"
    );
    // Other commands refuse an invalid config the same way, before touching ZooKeeper.
    let o = run_with(&bad, &["list"]).await;
    assert_fails(&o, 1, &format!("{b}:6:5"));
    let o = run_with(&env.dir.path().join("missing.yaml"), &["list"]).await;
    assert_fails(&o, 1, "cannot read config file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_zookeeper_fails_within_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let config = dir.path().join("nodepool.yaml");
    let mut settings = ZkSettings::new(vec![("127.0.0.1".into(), port)]);
    settings.chroot = Some("/nodepool".into());
    std::fs::write(&config, yaml_for(&settings)).unwrap();
    let start = Instant::now();
    let o = run_with(&config, &["--zk-timeout", "2", "list"]).await;
    let took = start.elapsed();
    assert_fails(
        &o,
        1,
        &format!("ZooKeeper unreachable: no connection to 127.0.0.1:{port}/nodepool within 2s"),
    );
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_version_help_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("none.yaml");
    let o = run_with(&config, &[]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("Usage: nodepool"), "{}", stdout(&o));
    let o = run_with(&config, &["--version"]).await;
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        format!(
            "nodepool {} (Nodepool in Rust; compatible with Nodepool 11.0.0)\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    let o = run_with(&config, &["no-such-command"]).await;
    assert_eq!(o.status.code(), Some(2));
    let o = run_with(&config, &["delete", "--help"]).await;
    assert_ok(&o);
    assert!(stdout(&o).contains("--now"), "{}", stdout(&o));
    for shell in ["bash", "zsh", "fish"] {
        let o = run_with(&config, &["completions", shell]).await;
        assert_ok(&o);
        assert!(
            stdout(&o).contains("image-delete"),
            "{shell}: {}",
            stdout(&o)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dib_image_list_json() {
    let env = Env::new().await;
    let ready = env.add_build("debian", BuildState::Ready).await;
    let building = env.add_build("paused-image", BuildState::Building).await;
    env.store.pause_image("paused-image").await.unwrap();
    let o = env.run(&["dib-image-list", "--format", "json"]).await;
    assert_ok(&o);
    assert!(stdout(&o).ends_with("]\n"), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    let row = |id: &str| {
        rows.iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no row {id} in {v}"))
            .clone()
    };
    let r = row(&format!("debian-{}", ready.id));
    let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["id", "image", "builder", "formats", "state", "age"],
        "the web API's keys, in its order: {r}"
    );
    assert_eq!(r["image"], "debian");
    assert_eq!(r["builder"], "builder.example.org");
    assert_eq!(r["formats"], serde_json::json!(["qcow2"]));
    assert_eq!(r["state"], "ready");
    // `age` is the int epoch of state_time.
    assert_eq!(r["age"], serde_json::json!(ready.state_time as i64));
    let p = row(&format!("paused-image-{}", building.id));
    assert_eq!(
        p["state"], "paused",
        "a paused image's builds show `paused`"
    );
    assert_eq!(p["formats"], serde_json::json!(["qcow2"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_json() {
    let env = Env::new().await;
    let b = env.add_build("debian", BuildState::Ready).await;
    let u1 = env
        .add_upload(&b, "fake-provider", UploadState::Ready)
        .await;
    let u2 = env
        .add_upload(&b, "fake-provider", UploadState::Ready)
        .await;
    env.add_upload(&b, "other", UploadState::Ready).await;
    let n1 = env.add_node("fake-provider", NodeState::Ready, 5.0).await;
    env.add_node("other", NodeState::Ready, 5.0).await;
    let o = env
        .run(&["info", "fake-provider", "--format", "json"])
        .await;
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["image_data", "nodes"], "{v}");
    assert_eq!(
        v["image_data"],
        serde_json::json!([{
            "image": "debian",
            "build_id": b.id.as_str(),
            "upload_ids": [u1.id.as_str(), u2.id.as_str()],
        }]),
        "{v}"
    );
    let (n, _) = env.store.get_node(&n1).await.unwrap().unwrap();
    assert_eq!(
        v["nodes"],
        serde_json::json!([{"id": n1.as_str(), "server_id": n.external_id}]),
        "{v}"
    );
    // An unknown provider: two empty lists.
    let o = env.run(&["info", "nowhere", "--format", "json"]).await;
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v, serde_json::json!({"image_data": [], "nodes": []}));
}

/// `alien-image-list --format json` against the OpenStack simulator: the cloud images
/// with a `nodepool_build_id` property that no ready upload of the provider knows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alien_image_list_json_against_the_simulator() {
    use nodepool_tests::sim::{SimConfig, Simulator};
    let env = Env::new().await;
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    let clouds = env.dir.path().join("clouds.yaml");
    sim.write_clouds_yaml(&clouds, "simcloud")
        .expect("clouds.yaml");
    // A provider on the simulator (names starting with `fake` would get the fake driver).
    let base = std::fs::read_to_string(&env.config).unwrap();
    let zk_part = base.split("labels:").next().unwrap().to_string();
    let config = env.dir.path().join("sim.yaml");
    std::fs::write(
        &config,
        format!(
            "{zk_part}diskimages:\n  - name: debian\n\
             providers:\n  - name: sim-provider\n    cloud: simcloud\n    diskimages:\n      - name: debian\n"
        ),
    )
    .unwrap();
    let admin = sim.admin();
    let alien = admin.inject_leaked_image("sim-provider", "0000009999", "0000000042");
    let known = admin.inject_leaked_image("sim-provider", "0000001111", "0000000001");
    let b = env.add_build("debian", BuildState::Ready).await;
    let mut u = ImageUpload::new("debian", b.id.clone(), "sim-provider");
    u.state = UploadState::Ready;
    u.external_id = Some(known.clone());
    env.store.create_upload(&mut u).await.unwrap();

    let run = |args: &'static [&'static str]| {
        let config = config.clone();
        let clouds = clouds.clone();
        async move {
            tokio::process::Command::new(BIN)
                .arg("-c")
                .arg(&config)
                .args(args)
                .env("NO_COLOR", "1")
                .env("OS_CLIENT_CONFIG_FILE", &clouds)
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .expect("run nodepool")
        }
    };
    let o = run(&["alien-image-list", "--format", "json"]).await;
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{
            "provider": "sim-provider",
            "name": "leaked-0000009999-0000000042",
            "image_id": alien,
        }]),
        "{v}"
    );
    let o = run(&["alien-image-list", "sim-provider", "--format", "json"]).await;
    assert_ok(&o);
    let v2: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v2, v);
    // The text form lists the same image.
    let o = run(&["alien-image-list"]).await;
    assert_ok(&o);
    assert!(
        stdout(&o).contains(&alien) && !stdout(&o).contains(&known),
        "{}",
        stdout(&o)
    );
    sim.shutdown().await.expect("simulator shutdown");
}

/// Nodepool's `test_delete_now`: `delete --now` runs the launcher's own node-delete
/// sequence against the cloud: the server's floating IP goes first, a temporary error
/// of the server delete (503) is retried, and once the cloud no longer has the server
/// the node record is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_delete_now() {
    use nodepool_shared::cloud::{CloudDriver, CloudsFile, CreateServer, DriverOptions};
    use nodepool_tests::sim::{SimConfig, Simulator};
    let env = Env::new().await;
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    let clouds = env.dir.path().join("clouds.yaml");
    sim.write_clouds_yaml(&clouds, "simcloud")
        .expect("clouds.yaml");
    let base = std::fs::read_to_string(&env.config).unwrap();
    let zk_part = base.split("labels:").next().unwrap().to_string();
    let config = env.dir.path().join("sim.yaml");
    std::fs::write(
        &config,
        format!("{zk_part}providers:\n  - name: sim-provider\n    cloud: simcloud\n    rate: 0\n"),
    )
    .unwrap();
    // A server on the private network with a floating IP, and its ready node.
    let file = CloudsFile::load_from(&clouds).unwrap();
    let d = nodepool_shared::cloud::OpenStackDriver::new(
        file.cloud("simcloud").unwrap(),
        DriverOptions::new("sim-provider"),
    )
    .unwrap();
    let nets = d.list_networks().await.unwrap();
    let private = nets.iter().find(|n| n.name == "private").unwrap();
    let public = nets.iter().find(|n| n.external).unwrap();
    let image = d.find_image("cirros-0.6.2").await.unwrap().unwrap();
    let server = d
        .create_server(&CreateServer {
            name: "np-delete-now".into(),
            flavor_id: "1".into(),
            image_id: image.id,
            networks: vec![private.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    let port = d.server_ports(&server).await.unwrap().remove(0);
    d.create_floating_ip(&public.id, Some(&port.id))
        .await
        .unwrap();
    let mut n = Node::new();
    n.state = NodeState::Ready;
    n.provider = Some("sim-provider".into());
    n.pool = Some("main".into());
    n.node_type = vec!["small".into()];
    n.external_id = Some(server.clone());
    let id = env.store.create_node(&mut n).await.unwrap();
    let admin = sim.admin();
    admin.fail_next("compute.servers.delete", 1, 503);
    admin.reset_counters();

    let o = tokio::process::Command::new(BIN)
        .arg("-c")
        .arg(&config)
        .args(["delete", "--now", id.as_str()])
        .env("NO_COLOR", "1")
        .env("OS_CLIENT_CONFIG_FILE", &clouds)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run nodepool");
    assert_ok(&o);
    assert!(stdout(&o).contains(id.as_str()), "{}", stdout(&o));
    assert!(admin.server(&server).is_none(), "server deleted");
    assert!(admin.floating_ips().is_empty(), "floating IP deleted");
    assert_eq!(admin.counter("network.floatingips.delete"), 1);
    assert_eq!(
        admin.counter("compute.servers.delete"),
        2,
        "503, then retried"
    );
    assert!(
        env.store.get_node(&id).await.unwrap().is_none(),
        "node removed"
    );
    sim.shutdown().await.expect("simulator shutdown");
}

/// A loopback port nobody listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `DIR/nodepool.yaml` with no labels and no providers, its ZooKeeper server on a closed
/// loopback port: a command that gets as far as ZooKeeper fails (exit 1).
fn config_with_closed_zookeeper(dir: &Path) -> PathBuf {
    let config = dir.join("nodepool.yaml");
    std::fs::write(
        &config,
        format!(
            "zookeeper-servers:\n  - host: 127.0.0.1\n    port: {}\nlabels: []\nproviders: []\n",
            closed_port()
        ),
    )
    .unwrap();
    config
}

/// CLI garbage (fixed seed, 300 argument vectors made of real subcommands and options
/// mixed with hostile words): every run ends within the bound with exit code 0, 1 or 2
/// and never panics. The config points at a closed loopback port, so commands that get
/// as far as ZooKeeper fail after `--zk-timeout`.
#[test]
fn garbage_arguments_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_closed_zookeeper(dir.path());
    let config = config.to_str().unwrap().to_string();
    let words = [
        "list",
        "delete",
        "hold",
        "info",
        "erase",
        "image-list",
        "dib-image-list",
        "image-build",
        "image-delete",
        "dib-image-delete",
        "image-pause",
        "image-unpause",
        "request-list",
        "config-validate",
        "export-image-data",
        "import-image-data",
        "alien-image-list",
        "completions",
        "--detail",
        "--now",
        "--yes",
        "--format",
        "json",
        "text",
        "xml",
        "--reason",
        "--provider",
        "--image",
        "--build-id",
        "--upload-id",
        "-c",
        "/nonexistent.yaml",
        "-s",
        "--debug",
        "--zk-timeout",
        "0.3",
        "-1",
        "0000000000",
        "abc-0000000001",
        "",
        "\u{1}x",
        "\u{202e}evil",
        "😀",
        "--",
        "-",
        "--zk-timeout=nan",
        "--format=",
        "ubuntu",
        "ubuntu-0000000001",
        "/dev/null",
        "%s%n",
        "a b c",
    ];
    let mut state: u64 = 0x0bad_c0de_dead_beef;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for case in 0..300 {
        let n = (next() % 5) as usize;
        let mut args: Vec<String> = vec![
            "-c".into(),
            config.clone(),
            "--zk-timeout".into(),
            "0.3".into(),
        ];
        for _ in 0..=n {
            args.push(words[(next() % words.len() as u64) as usize].to_string());
        }
        let mut child = std::process::Command::new(BIN)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start nodepool");
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > std::time::Duration::from_secs(20) {
                let _ = child.kill();
                panic!("case {case}: {args:?} still running after 20 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let mut err = String::new();
        use std::io::Read;
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        assert!(!err.contains("panicked"), "case {case}: {args:?}: {err}");
        let code = status.code();
        assert!(
            matches!(code, Some(0..=2)),
            "case {case}: {args:?}: exit {status:?}: {err}"
        );
        if code != Some(0) {
            assert!(
                !err.trim().is_empty(),
                "case {case}: {args:?}: exit {code:?} without a message"
            );
        }
    }
}

/// Every argument that becomes part of a ZooKeeper path is checked before any ZooKeeper
/// call: `nodepool delete ../../requests` once walked out of `/nodepool/nodes` and
/// printed its error twice; `erase '' --yes` and `erase ../x --yes` printed "Erasing build
/// data for ..." and exited 0. Each bad argument gets one message naming the argument and
/// exit 2 (usage). The config points at a closed port, so reaching ZooKeeper would fail
/// with exit 1 instead.
#[test]
fn arguments_naming_znodes_are_checked_before_zookeeper() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_closed_zookeeper(dir.path());
    let upload = |flag: &str, value: &'static str| {
        let mut v = vec![
            "image-delete",
            "--provider",
            "p",
            "--image",
            "i",
            "--build-id",
            "b",
            "--upload-id",
            "0000000001",
        ];
        let i = v.iter().position(|a| *a == flag).unwrap();
        v[i + 1] = value;
        v
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["delete", "../../requests"], "<ID>"),
        (vec!["delete", "0000000001", "a/b", "--yes"], "<ID>"),
        (vec!["delete", "--now", ""], "<ID>"),
        (vec!["delete", ".."], "<ID>"),
        (vec!["delete", "\u{1}x"], "<ID>"),
        (vec!["hold", "../x"], "<ID>"),
        (vec!["console-log", "a/b"], "<ID>"),
        (vec!["erase", "", "--yes"], "<PROVIDER>"),
        (vec!["erase", "../x", "--yes"], "<PROVIDER>"),
        (vec!["erase", "..", "--force"], "<PROVIDER>"),
        (vec!["info", "a/b"], "<PROVIDER>"),
        (vec!["alien-image-list", "."], "[PROVIDER]"),
        (vec!["image-build", ""], "<IMAGE>"),
        (vec!["image-pause", "../x"], "<IMAGE>"),
        (vec!["image-unpause", "😀"], "<IMAGE>"),
        (vec!["dib-image-delete", "../x-abc"], "<ID>"),
        (vec!["dib-image-delete", "img-"], "<ID>"),
        (vec!["dib-image-delete", "nohyphen"], "<ID>"),
        (upload("--provider", ""), "--provider"),
        (upload("--image", "a/b"), "--image"),
        (upload("--build-id", ".."), "--build-id"),
        (upload("--upload-id", "../../x"), "--upload-id"),
    ];
    for (args, argument) in cases {
        let o = std::process::Command::new(BIN)
            .arg("-c")
            .arg(&config)
            .args(["--zk-timeout", "5"])
            .args(&args)
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run nodepool");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}{}", stdout(&o));
        assert!(stdout(&o).is_empty(), "{args:?}: {}", stdout(&o));
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: invalid value") && first.contains(argument),
            "{args:?}: {err}"
        );
        assert!(
            first.contains("not a valid") || first.contains("expected <image>-<build-id>"),
            "{args:?}: {err}"
        );
        assert_eq!(err.matches("error:").count(), 1, "{args:?}: {err}");
    }
}

/// `-s SECURE`: the secure file's `zookeeper-servers` replace the main file's (as in
/// Nodepool). The main file points at a closed port; only with `-s` does `list` reach
/// the test ZooKeeper and show its node.
#[tokio::test]
async fn secure_file_replaces_the_zookeeper_servers() {
    let env = Env::new().await;
    let id = env.add_node("fake-provider", NodeState::Ready, 10.0).await;
    let port = closed_port();
    let main = std::fs::read_to_string(&env.config).unwrap();
    // Split the working file: its `zookeeper-servers` go to the secure file, the main
    // file gets a dead server instead.
    let (servers, rest) = main.split_once("labels:\n").expect("labels section");
    let dead =
        format!("zookeeper-servers:\n  - host: 127.0.0.1\n    port: {port}\nlabels:\n{rest}");
    let config = env.dir.path().join("main.yaml");
    let secure = env.dir.path().join("secure.yaml");
    std::fs::write(&config, dead).unwrap();
    std::fs::write(&secure, servers).unwrap();
    let config_s = config.to_str().unwrap();
    let secure_s = secure.to_str().unwrap();
    let without = run_with(&config, &["--zk-timeout", "1", "list"]).await;
    assert!(
        !without.status.success(),
        "the main file alone points at a closed port"
    );
    let with = run_with(&config, &["-s", secure_s, "--zk-timeout", "10", "list"]).await;
    let out = String::from_utf8_lossy(&with.stdout);
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert!(out.contains(id.as_str()), "{out}");
    let valid = run_with(&config, &["-s", secure_s, "config-validate"]).await;
    assert!(
        valid.status.success(),
        "{config_s}: {}",
        String::from_utf8_lossy(&valid.stderr)
    );
    // A secure file with a key it may not carry is an error naming the file.
    std::fs::write(&secure, "labels: []\n").unwrap();
    let bad = run_with(&config, &["-s", secure_s, "config-validate"]).await;
    assert!(!bad.status.success());
    let err =
        String::from_utf8_lossy(&bad.stdout).to_string() + &String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("secure.yaml"), "{err}");
}

/// The config of the doctor test: two providers (three with `extra_provider`), labels
/// `small` (min-ready 1) and `big`, diskimages `debian` and `old`, short timeouts.
fn doctor_yaml(settings: &ZkSettings, extra_provider: bool) -> String {
    let zk = yaml_for(settings);
    let zk = zk.split("labels:").next().unwrap();
    let pool = |p: &str| {
        format!(
            "  - name: {p}\n    cloud: {p}-cloud\n    launch-timeout: 600\n    boot-timeout: 60\n\
             \x20   launch-retries: 2\n    image-upload-timeout: 600\n    diskimages:\n      - name: debian\n\
             \x20   pools:\n      - name: main\n        max-servers: 10\n        labels:\n\
             \x20         - name: small\n            diskimage: debian\n            min-ram: 1024\n\
             \x20         - name: big\n            diskimage: debian\n            min-ram: 8192\n"
        )
    };
    let mut y = format!(
        "{zk}labels:\n  - name: small\n    min-ready: 1\n  - name: big\n\
         diskimages:\n  - name: debian\n    rebuild-age: 3600\n    build-timeout: 3600\n\
         \x20 - name: old\n    rebuild-age: 3600\n    build-timeout: 3600\nproviders:\n"
    );
    y.push_str(&pool("p1"));
    y.push_str(&pool("p2"));
    if extra_provider {
        y.push_str(&pool("p3"));
    }
    y
}

/// Runs `nodepool doctor --format json`; returns the exit code and the problems as
/// (kind, severity, record ids).
async fn doctor(config: &Path) -> (Option<i32>, Vec<(String, String, Vec<String>)>, Output) {
    let o = run_with(config, &["doctor", "--format", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("doctor JSON: {e}\n{}\n{}", stdout(&o), stderr(&o)));
    let problems = v["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            let ids = p["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect();
            (
                p["kind"].as_str().unwrap().to_string(),
                p["severity"].as_str().unwrap().to_string(),
                ids,
            )
        })
        .collect();
    (o.status.code(), problems, o)
}

/// `nodepool doctor` against a real ZooKeeper: a healthy system has no problem (exit 0);
/// a paused image is only info (exit 0); a node deleting for 11 minutes is a warning
/// (exit 1); then every other anomaly is planted and each is found with its records,
/// and the errors make the exit status 2. The text form names every kind too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_finds_each_planted_anomaly_and_nothing_in_a_healthy_system() {
    use nodepool_shared::model::{Component, ComponentKind};
    let env = Env::new().await;
    let settings = env.store.client().settings().clone();
    let config = env.dir.path().join("doctor.yaml");
    std::fs::write(&config, doctor_yaml(&settings, false)).unwrap();
    let store = &env.store;
    let now = now_epoch();

    // A healthy system: launcher, builder and both pool workers registered (one version),
    // the min-ready node of `small`, a fresh ready build uploaded to both providers.
    let mut pools = BTreeMap::new();
    for (kind, host) in [
        (ComponentKind::Launcher, "nl01"),
        (ComponentKind::Builder, "nb01"),
    ] {
        store
            .create_component(&Component::new(kind, host, "11.0.0"))
            .await
            .unwrap();
    }
    for p in ["p1", "p2"] {
        let mut c = Component::new(ComponentKind::Pool, "nl01", "11.0.0");
        let info = c.pool.as_mut().unwrap();
        info.id = Some(format!("nl01-PoolWorker.{p}-main-0123"));
        info.name = Some("main".into());
        info.provider_name = Some(p.into());
        info.supported_labels = vec!["small".into(), "big".into()];
        let (name, _) = store.create_component(&c).await.unwrap();
        pools.insert(p, (name, c));
    }
    let min_ready_node = env.add_node("p1", NodeState::Ready, 30.0).await;
    for image in ["debian", "old"] {
        let b = env.add_build(image, BuildState::Ready).await;
        for p in ["p1", "p2"] {
            env.add_upload(&b, p, UploadState::Ready).await;
        }
    }
    let (code, problems, o) = doctor(&config).await;
    assert_eq!(code, Some(0), "{problems:?}\n{}", stderr(&o));
    assert!(problems.is_empty(), "{problems:?}");
    let text = run_with(&config, &["doctor"]).await;
    assert_ok(&text);
    assert_eq!(stdout(&text), "No problems found.\n");

    // A paused image is worth knowing, not a failure.
    store.pause_image("old").await.unwrap();
    let (code, problems, _) = doctor(&config).await;
    assert_eq!(code, Some(0));
    assert_eq!(
        problems,
        [("image-paused".into(), "info".into(), vec!["old".into()])]
    );

    // A node deleting for 11 minutes: a warning, exit 1.
    let deleting = env.add_node("p1", NodeState::Deleting, 660.0).await;
    let (code, problems, _) = doctor(&config).await;
    assert_eq!(code, Some(1), "{problems:?}");
    assert!(problems.contains(&(
        "node-deleting-too-long".into(),
        "warning".into(),
        vec![deleting.to_string()]
    )));

    // Everything else.
    let building = env.add_node("p2", NodeState::Building, 700.0).await;
    let lost = env.add_node("p2", NodeState::Building, 2000.0).await;
    let orphan = {
        let mut n = Node::new();
        n.state = NodeState::Ready;
        n.state_time = now - 300.0;
        n.provider = Some("p1".into());
        n.pool = Some("main".into());
        n.node_type = vec!["small".into()];
        n.allocated_to = Some(nodepool_shared::model::RequestId::from("200-0000099999"));
        store.create_node(&mut n).await.unwrap()
    };
    // The min-ready node is taken by Zuul; the launcher's min-ready request waits 12 min.
    let (mut n, _) = store.get_node(&min_ready_node).await.unwrap().unwrap();
    n.state = NodeState::InUse;
    store.store_node(&n, None).await.unwrap();
    let mut mr = NodeRequest::new(vec!["small".into()], "NodePool:min-ready");
    mr.created_time = Some(now - 720.0);
    let min_ready_req = store.create_request(&mut mr, "900", false).await.unwrap();
    // A persistent lock contender on the in-use node: no session will ever remove it.
    let contender = format!(
        "{}/{}__lock__0000000000",
        paths::node_lock(&min_ready_node),
        uuid::Uuid::new_v4().simple()
    );
    store
        .client()
        .ensure_path(&paths::node_lock(&min_ready_node))
        .await
        .unwrap();
    store
        .client()
        .create_persistent(&contender, b"")
        .await
        .unwrap();
    // A fresh request that p1 declined: only p2 can still serve it.
    let mut r = NodeRequest::new(vec!["big".into()], "zuul");
    r.declined_by = vec!["nl01-PoolWorker.p1-main-0123".into()];
    let one_left = store.create_request(&mut r, "200", false).await.unwrap();
    // A failed build of debian after its ready one; an upload uploading for 12 min.
    let mut failed = ImageBuild::new("debian", BuildId::generate());
    failed.state = BuildState::Failed;
    failed.state_time = now + 1.0;
    store.create_build(&mut failed).await.unwrap();
    let debian_build = env.add_build("debian", BuildState::Ready).await;
    let mut fb = failed.clone();
    fb.state_time = debian_build.state_time + 1.0;
    store.store_build(&fb, None).await.unwrap();
    let mut stuck = ImageUpload::new("debian", debian_build.id.clone(), "p1");
    stuck.state = UploadState::Uploading;
    stuck.state_time = now - 720.0;
    let stuck_id = store.create_upload(&mut stuck).await.unwrap();
    // `old` is unpaused and its only build is 3 hours old (rebuild-age + build-timeout 2h).
    store.unpause_image("old").await.unwrap();
    let (old_build, _) = store.builds("old").await.unwrap().pop().unwrap();
    let mut ob = old_build.clone();
    ob.state_time = now - 3.0 * 3600.0;
    store.store_build(&ob, None).await.unwrap();
    store.pause_image("debian").await.unwrap();
    // p1's pool worker paused; a builder of another version; a corrupt node record.
    let (name, mut c) = pools.remove("p1").unwrap();
    c.pool.as_mut().unwrap().paused = true;
    store.update_component(&name, &c, None).await.unwrap();
    store
        .create_component(&Component::new(ComponentKind::Builder, "nb02", "10.1.0"))
        .await
        .unwrap();
    store
        .client()
        .create_persistent(&paths::node(&NodeId::from("0000099998")), b"{not json")
        .await
        .unwrap();
    // The config gains a provider p3 that no launcher serves.
    std::fs::write(&config, doctor_yaml(&settings, true)).unwrap();

    let (code, problems, o) = doctor(&config).await;
    let find = |kind: &str, id: &str| {
        problems
            .iter()
            .find(|(k, _, ids)| {
                k == kind
                    && ids
                        .iter()
                        .any(|i| i == id || (id.ends_with('/') && i.starts_with(id)))
            })
            .map(|(_, s, _)| s.clone())
            .unwrap_or_else(|| panic!("no {kind} for {id} in {problems:#?}\n{}", stderr(&o)))
    };
    assert_eq!(find("node-deleting-too-long", deleting.as_str()), "warning");
    assert_eq!(find("node-building-too-long", building.as_str()), "warning");
    assert_eq!(find("node-building-too-long", lost.as_str()), "error");
    assert_eq!(
        find("ready-node-of-vanished-request", orphan.as_str()),
        "warning"
    );
    assert_eq!(
        find("lock-without-session", min_ready_node.as_str()),
        "error"
    );
    assert_eq!(find("lock-without-session", &contender), "error");
    assert_eq!(
        find("request-waiting-too-long", min_ready_req.as_str()),
        "warning"
    );
    assert_eq!(find("request-one-pool-left", one_left.as_str()), "warning");
    assert_eq!(find("label-below-min-ready", "small"), "warning");
    assert_eq!(
        find("image-builds-failing", &format!("debian-{}", failed.id)),
        "warning"
    );
    assert_eq!(find("image-stale", "old"), "warning");
    assert_eq!(
        find(
            "upload-stuck",
            &format!("debian-{}/p1/{stuck_id}", debian_build.id)
        ),
        "warning"
    );
    assert_eq!(find("provider-without-pool-worker", "p3/main"), "error");
    assert_eq!(find("image-paused", "debian"), "info");
    assert_eq!(find("pool-paused", "p1/main"), "warning");
    assert_eq!(find("version-mismatch", "builder/"), "warning");
    assert_eq!(
        find("corrupt-record", "/nodepool/nodes/0000099998"),
        "error"
    );
    assert_eq!(code, Some(2));
    // Nothing else is reported.
    assert_eq!(problems.len(), 16, "{problems:#?}");

    // The text form: one block per problem, errors first, and the count.
    let text = run_with(&config, &["doctor"]).await;
    assert_eq!(text.status.code(), Some(2));
    let out = stdout(&text);
    assert!(out.starts_with("ERROR"), "{out}");
    for (kind, _, _) in &problems {
        assert!(
            out.contains(&format!(": {kind}: ")) || out.contains(&format!(" {kind}: ")),
            "{kind} missing:\n{out}"
        );
    }
    assert!(
        out.trim_end()
            .ends_with("16 problems: 4 errors, 11 warnings, 1 info"),
        "{out}"
    );
    assert!(out.contains("action: "), "{out}");
}

/// `nodepool console-log ID` fetches the console of the node's server from its cloud
/// (the simulator, through the config's provider and clouds.yaml); `--lines N` keeps the
/// last lines; a node without a server, a provider missing from the config, an unknown
/// node and a missing clouds.yaml each fail with a line naming the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_log_of_a_node_from_its_cloud() {
    use nodepool_tests::sim::{SimConfig, Simulator};
    let env = Env::new().await;
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    let clouds = env.dir.path().join("clouds.yaml");
    sim.write_clouds_yaml(&clouds, "simcloud")
        .expect("clouds.yaml");
    let base = std::fs::read_to_string(&env.config).unwrap();
    let zk_part = base.split("labels:").next().unwrap().to_string();
    let config = env.dir.path().join("sim.yaml");
    std::fs::write(
        &config,
        format!("{zk_part}providers:\n  - name: sim-provider\n    cloud: simcloud\n"),
    )
    .unwrap();
    let server = sim
        .admin()
        .inject_leaked_server("sim-provider", "0000000001", "main");
    let node = |provider: &str, server: Option<&str>| {
        let mut n = Node::new();
        n.state = NodeState::Ready;
        n.provider = Some(provider.into());
        n.node_type = vec!["small".into()];
        n.external_id = server.map(str::to_string);
        n
    };
    let with_server = env
        .store
        .create_node(&mut node("sim-provider", Some(&server)))
        .await
        .unwrap();
    let without_server = env
        .store
        .create_node(&mut node("sim-provider", None))
        .await
        .unwrap();
    let elsewhere = env
        .store
        .create_node(&mut node("other-provider", Some("x")))
        .await
        .unwrap();
    let run = |args: Vec<String>, clouds: PathBuf| {
        let config = config.clone();
        async move {
            tokio::process::Command::new(BIN)
                .arg("-c")
                .arg(&config)
                .args(&args)
                .env("NO_COLOR", "1")
                .env("OS_CLIENT_CONFIG_FILE", &clouds)
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .expect("run nodepool")
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let o = run(args(&["console-log", with_server.as_str()]), clouds.clone()).await;
    assert_ok(&o);
    let log = stdout(&o);
    assert!(log.contains("Linux version"), "{log}");
    assert!(log.trim_end().ends_with("login:"), "{log}");
    assert!(log.contains(&server), "{log}");
    let o = run(
        args(&["console-log", with_server.as_str(), "--lines", "2"]),
        clouds.clone(),
    )
    .await;
    assert_ok(&o);
    assert_eq!(stdout(&o).lines().count(), 2, "{}", stdout(&o));
    let o = run(
        args(&["console-log", without_server.as_str()]),
        clouds.clone(),
    )
    .await;
    assert_fails(&o, 1, &format!("node {without_server} has no server yet"));
    let o = run(args(&["console-log", elsewhere.as_str()]), clouds.clone()).await;
    assert_fails(
        &o,
        1,
        &format!("Provider other-provider of node {elsewhere} is not defined in the config"),
    );
    let o = run(args(&["console-log", "0000009999"]), clouds.clone()).await;
    assert_fails(&o, 1, "Node id 0000009999 not found");
    let o = run(
        args(&["console-log", with_server.as_str()]),
        env.dir.path().join("missing-clouds.yaml"),
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("provider sim-provider: cloud simcloud"),
        "{}",
        stderr(&o)
    );
    sim.shutdown().await.expect("simulator shutdown");
}
