//! End to end: the real `nodepool-tui` binary in a tmux pane (120×40) against a real
//! ZooKeeper, with records written through `ZkStore`. Checks that the nodes view shows
//! them, that a record written later appears, that holding a node with keys sets the
//! znode to `hold`, and that `q` quits; then, on a ZooKeeper of its own, the requests,
//! builds and uploads views, a window resize, and a real session loss (the server
//! stopped for longer than the session timeout) shown and recovered on screen. Every
//! wait is bounded.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nodepool_shared::model::{
    BuildId, BuildState, ImageBuild, ImageUpload, Node, NodeId, NodeRequest, NodeState, UploadState,
};
use nodepool_shared::testing::TestZk;
use nodepool_shared::zk::ZkStore;

const WAIT: Duration = Duration::from_secs(15);

/// A private tmux server (own socket), killed on drop.
struct Tmux {
    socket: String,
    /// The console's log file, shown when a wait times out.
    log: Option<std::path::PathBuf>,
}

impl Tmux {
    /// `name` makes the socket unique among the tests of this process.
    fn start(name: &str, command: &str) -> Tmux {
        let socket = format!("nptui-{}-{name}", std::process::id());
        let t = Tmux { socket, log: None };
        let ok = t
            .cmd(&[
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "40",
                "-s",
                "tui",
                command,
            ])
            .status()
            .expect("run tmux")
            .success();
        assert!(ok, "tmux new-session failed");
        t
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-L").arg(&self.socket).args(args);
        c
    }

    fn capture(&self) -> String {
        let out = self
            .cmd(&["capture-pane", "-p", "-t", "tui"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "tui"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status().expect("tmux send-keys").success());
    }

    fn resize(&self, w: u16, h: u16) {
        let (w, h) = (w.to_string(), h.to_string());
        let ok = self
            .cmd(&["resize-window", "-t", "tui", "-x", &w, "-y", &h])
            .status()
            .expect("tmux resize-window")
            .success();
        assert!(ok, "tmux resize-window failed");
    }

    /// Polls the pane until `pred` holds (at most [`WAIT`]); panics with the screen.
    async fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.capture();
            if pred(&s) {
                return s;
            }
            if start.elapsed() > WAIT {
                let log = self
                    .log
                    .as_ref()
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .unwrap_or_default();
                panic!("timed out waiting for {what}; screen:\n{s}\nlog:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).status();
    }
}

fn ready_node(label: &str) -> Node {
    let mut n = Node::new();
    n.set_state(NodeState::Ready);
    n.provider = Some("e2e-provider".into());
    n.pool = Some("main".into());
    n.node_type = vec![label.into()];
    n.public_ipv4 = Some("203.0.113.7".into());
    n
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_follows_zookeeper_and_holds_a_node() {
    let zk = TestZk::shared().await;
    let client = zk.client().await;
    let store = ZkStore::new(client.clone());
    let mut a = ready_node("e2e-alpha");
    let mut b = ready_node("e2e-beta");
    let id_a: NodeId = store.create_node(&mut a).await.expect("create node a");
    let id_b: NodeId = store.create_node(&mut b).await.expect("create node b");

    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("tui.log");
    let bin = env!("CARGO_BIN_EXE_nodepool-tui");
    let command = format!(
        "RUST_LOG=info,nodepool_shared=debug {} --zk {} --chroot {} --log-file {}; echo TUI-EXITED $?; sleep 30",
        shell_quote(bin),
        shell_quote(&zk.plain_hosts()),
        shell_quote(zk.chroot()),
        shell_quote(&log.display().to_string()),
    );
    let mut tmux = Tmux::start("hold", &command);
    tmux.log = Some(log.clone());

    // The console starts on the Overview; 1 shows the nodes.
    tmux.wait_for("the overview", |s| {
        s.contains("Providers") && s.contains("cache synced")
    })
    .await;
    tmux.send(&["1"]);
    // Both nodes are listed, the cache is synced.
    tmux.wait_for("both nodes", |s| {
        s.contains(id_a.as_str()) && s.contains(id_b.as_str()) && s.contains("cache synced")
    })
    .await;

    // A node written afterwards appears.
    let mut c = ready_node("e2e-gamma");
    let id_c = store.create_node(&mut c).await.expect("create node c");
    tmux.wait_for("the new node", |s| {
        s.contains(id_c.as_str()) && s.contains("e2e-gamma")
    })
    .await;

    // Hold the first node (sorted by id, selected at start) with a comment.
    tmux.send(&["h"]);
    tmux.wait_for("the hold dialog", |s| s.contains("Hold node"))
        .await;
    tmux.send(&["-l", "e2e hold"]);
    tmux.wait_for("the typed comment", |s| s.contains("e2e hold"))
        .await;
    tmux.send(&["Enter"]);
    let start = Instant::now();
    loop {
        let (n, _) = store
            .get_node(&id_a)
            .await
            .expect("read node")
            .expect("node exists");
        if n.state == NodeState::Hold {
            assert_eq!(n.comment.as_deref(), Some("e2e hold"));
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "node {id_a} not held; screen:\n{}\nlog:\n{}",
            tmux.capture(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tmux.wait_for("the result message and the new state", |s| {
        s.contains(&format!("node {id_a} held"))
            && s.lines()
                .any(|l| l.starts_with(id_a.as_str()) && l.contains("hold"))
    })
    .await;

    // q quits with status 0 and restores the terminal.
    tmux.send(&["q"]);
    let s = tmux
        .wait_for("the exit", |s| s.contains("TUI-EXITED"))
        .await;
    assert!(s.contains("TUI-EXITED 0"), "{s}");
    assert!(!s.contains("Nodes "), "screen not restored:\n{s}");
    client.close().await;
    assert!(Path::new(&log).exists());
}

/// The status line (second last line of the screen).
fn status_line(screen: &str) -> &str {
    let lines: Vec<&str> = screen.lines().collect();
    lines.len().checked_sub(2).map_or("", |i| lines[i])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_resize_and_session_loss() {
    let zk = TestZk::dedicated().await;
    let client = zk.client().await;
    let store = ZkStore::new(client.clone());
    let mut n = ready_node("e2e-delta");
    let node_id = store.create_node(&mut n).await.expect("create node");
    let mut r = NodeRequest::new(vec!["e2e-label".into()], "e2e-requestor");
    let req_id = store
        .create_request(&mut r, "100", false)
        .await
        .expect("create request");
    let mut b = ImageBuild::new("e2e-image", BuildId::generate());
    b.state = BuildState::Ready;
    b.builder = Some("e2e-builder".into());
    b.formats = vec!["qcow2".into()];
    store.create_build(&mut b).await.expect("create build");
    let mut u = ImageUpload::new("e2e-image", b.id.clone(), "e2e-cloud");
    u.state = UploadState::Ready;
    u.external_name = Some("e2e-image-ext".into());
    u.format = Some("qcow2".into());
    store.create_upload(&mut u).await.expect("create upload");

    // A config file with a short ZooKeeper timeout: a 2 s session, which the client
    // gives up after 2.8 s without the server.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("nodepool.yaml");
    let settings = zk.settings();
    let (host, port) = &settings.hosts[0];
    std::fs::write(
        &config,
        format!(
            "zookeeper-servers:\n  - host: {host}\n    port: {port}\n    chroot: {}\nzookeeper-timeout: 2\n",
            zk.chroot()
        ),
    )
    .expect("write config");
    let log = dir.path().join("tui.log");
    let command = format!(
        "{} -c {} --log-file {}; echo TUI-EXITED $?; sleep 30",
        shell_quote(env!("CARGO_BIN_EXE_nodepool-tui")),
        shell_quote(&config.display().to_string()),
        shell_quote(&log.display().to_string()),
    );
    let mut tmux = Tmux::start("views", &command);
    tmux.log = Some(log.clone());
    tmux.wait_for("the overview and a synced cache", |s| {
        s.contains("Overview 1 nodes") && s.contains("cache synced")
    })
    .await;
    tmux.send(&["1"]);
    tmux.wait_for("the node", |s| s.contains(node_id.as_str()))
        .await;

    // The requests, builds and uploads views show their records.
    tmux.send(&["2"]);
    tmux.wait_for("the requests view", |s| {
        s.contains("Requests 1") && s.contains(req_id.as_str()) && s.contains("e2e-label")
    })
    .await;
    tmux.send(&["3"]);
    tmux.wait_for("the builds view", |s| {
        s.contains("Builds 1") && s.contains(b.id.as_str()) && s.contains("e2e-builder")
    })
    .await;
    tmux.send(&["4"]);
    let wide = tmux
        .wait_for("the uploads view", |s| {
            s.contains("Uploads 1") && s.contains("e2e-cloud") && s.contains("e2e-image-ext")
        })
        .await;
    assert_eq!(wide.lines().count(), 40, "{wide}");

    // Resize to 80×24: the console redraws to the new size, status and hints included.
    tmux.resize(80, 24);
    let small = tmux
        .wait_for("the redraw at 80x24", |s| {
            let lines: Vec<&str> = s.lines().collect();
            lines.len() == 24
                && lines[0].contains("0 Over")
                && lines[1].starts_with("Uploads 1")
                && s.contains("e2e-cloud")
                && lines[23].contains("q quit")
                && status_line(s).contains("cache synced")
        })
        .await;
    assert!(
        small.lines().all(|l| l.chars().count() <= 80),
        "wider than the window:\n{small}"
    );
    tmux.resize(120, 40);
    tmux.wait_for("the redraw at 120x40", |s| {
        s.lines().count() == 40 && s.contains("e2e-image-ext")
    })
    .await;

    // A real session loss: the server is gone longer than the session timeout.
    let server = zk.server().expect("dedicated server");
    let stopped = Instant::now();
    tokio::task::block_in_place(|| server.stop());
    let lost = tmux
        .wait_for("the session loss on screen", |s| {
            status_line(s).contains("session lost")
        })
        .await;
    assert!(lost.contains("ZooKeeper session lost"), "{lost}");
    let lost_after = stopped.elapsed();
    let restarting = Instant::now();
    tokio::task::block_in_place(|| server.restart()).expect("restart ZooKeeper");
    let restart_took = restarting.elapsed();
    let back = tmux
        .wait_for("the new session on screen", |s| {
            status_line(s).contains("reconnected s#2") && status_line(s).contains("cache synced")
        })
        .await;
    assert!(
        back.contains("Reconnected: new ZooKeeper session #2"),
        "{back}"
    );
    // Figures, not assertions: how long the screen took to tell.
    println!(
        "session loss shown {:.1}s after the server stopped (2 s session); server restart \
         took {:.1}s; `reconnected s#2` and a synced cache shown {:.1}s after the restart",
        lost_after.as_secs_f64(),
        restart_took.as_secs_f64(),
        (restarting.elapsed() - restart_took).as_secs_f64()
    );
    // The cache follows the new session: a node written now appears.
    tmux.send(&["1"]);
    let mut n2 = ready_node("e2e-after-loss");
    let start = Instant::now();
    let id2 = loop {
        match store.create_node(&mut n2).await {
            Ok(id) => break id,
            Err(e) => {
                assert!(
                    start.elapsed() < WAIT,
                    "cannot write after the restart: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    tmux.wait_for("the node written after the loss", |s| {
        s.contains(id2.as_str()) && s.contains("e2e-after-loss")
    })
    .await;

    tmux.send(&["q"]);
    let s = tmux
        .wait_for("the exit", |s| s.contains("TUI-EXITED"))
        .await;
    assert!(s.contains("TUI-EXITED 0"), "{s}");
    client.close().await;
}

/// The Overview, the Problems view, a node's console log and marked rows, in the real
/// binary against a real ZooKeeper and the OpenStack simulator (HTTP): the Overview
/// shows the provider against its `max-servers` with the cloud's quota and no pool
/// worker; view 8 lists that problem; `Enter` `c` on the node whose server is in the
/// simulator shows the server's console log, and on a node of a provider whose cloud is
/// not in clouds.yaml says there are no credentials; two nodes marked with Space are
/// deleted with one confirmation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_problems_console_log_and_marked_delete() {
    use nodepool_tests::sim::{Quota, SimConfig, Simulator};
    let zk = TestZk::shared().await;
    let client = zk.client().await;
    let store = ZkStore::new(client.clone());
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    sim.admin().set_quota(Quota {
        instances: 25,
        ..sim.admin().knobs().quota
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let clouds = dir.path().join("clouds.yaml");
    sim.write_clouds_yaml(&clouds, "simcloud")
        .expect("clouds.yaml");
    let server = sim
        .admin()
        .inject_leaked_server("e2e-sim", "0000000001", "main");
    let mut with_server = ready_node("e2e-small");
    with_server.provider = Some("e2e-sim".into());
    with_server.external_id = Some(server.clone());
    let id_server = store.create_node(&mut with_server).await.expect("node");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut n = ready_node("e2e-small");
        n.provider = Some("e2e-sim".into());
        ids.push(store.create_node(&mut n).await.expect("node"));
    }
    // A node of a provider whose cloud is not in clouds.yaml (no credentials).
    let mut no_creds = ready_node("e2e-small");
    no_creds.provider = Some("e2e-nocreds".into());
    no_creds.external_id = Some("no-such-server".into());
    let id_no_creds = store.create_node(&mut no_creds).await.expect("node");
    let settings = zk.settings();
    let (host, port) = &settings.hosts[0];
    let config = dir.path().join("nodepool.yaml");
    let provider = |name: &str, cloud: &str| {
        format!(
            "  - name: {name}\n    cloud: {cloud}\n    cloud-images:\n\
             \x20     - name: cirros\n        image-name: cirros-0.6.2\n    pools:\n\
             \x20     - name: main\n        max-servers: 4\n        labels:\n\
             \x20         - name: e2e-small\n            cloud-image: cirros\n            min-ram: 512\n"
        )
    };
    std::fs::write(
        &config,
        format!(
            "zookeeper-servers:\n  - host: {host}\n    port: {port}\n    chroot: {}\n\
             labels:\n  - name: e2e-small\nproviders:\n{}{}",
            zk.chroot(),
            provider("e2e-sim", "simcloud"),
            provider("e2e-nocreds", "no-such-cloud"),
        ),
    )
    .expect("write config");
    let log = dir.path().join("tui.log");
    let command = format!(
        "OS_CLIENT_CONFIG_FILE={} {} -c {} --log-file {}; echo TUI-EXITED $?; sleep 30",
        shell_quote(&clouds.display().to_string()),
        shell_quote(env!("CARGO_BIN_EXE_nodepool-tui")),
        shell_quote(&config.display().to_string()),
        shell_quote(&log.display().to_string()),
    );
    let mut tmux = Tmux::start("insight", &command);
    tmux.log = Some(log.clone());

    // The Overview: 3 of 4 nodes, the quota from the cloud, no pool worker (of 1).
    let s = tmux
        .wait_for("the provider on the overview", |s| {
            s.lines()
                .any(|l| l.contains("e2e-sim") && l.contains("3/4") && l.contains("quota 25"))
        })
        .await;
    assert!(s.contains("pools 0/1"), "{s}");
    assert!(s.contains("8 Problems (2)"), "{s}");
    // The Problems view names it.
    tmux.send(&["8"]);
    tmux.wait_for("the problem", |s| {
        s.contains("no pool worker") && s.contains("pool e2e-sim/main")
    })
    .await;

    // The console log of the node whose server is in the simulator.
    tmux.send(&["1"]);
    tmux.wait_for("the nodes", |s| s.contains(id_server.as_str()))
        .await;
    tmux.send(&["Enter"]);
    tmux.wait_for("the node detail", |s| s.contains("c console log"))
        .await;
    tmux.send(&["c"]);
    let s = tmux
        .wait_for("the console log", |s| s.contains("login:"))
        .await;
    assert!(
        s.contains(&format!("Console log of node {id_server}")),
        "{s}"
    );
    assert!(!s.contains("[0;32m"), "escape sequences shown:\n{s}");
    tmux.send(&["Escape"]);
    tmux.wait_for("the detail again", |s| s.contains("c console log"))
        .await;
    tmux.send(&["Escape"]);
    // (Wait before the next key: ESC followed at once by `j` reads as Alt-j.)
    tmux.wait_for("the table again", |s| !s.contains("c console log"))
        .await;

    // Mark the two other nodes and delete both with one confirmation.
    tmux.send(&["j", "Space", "Space"]);
    tmux.wait_for("two marked", |s| s.contains("2 marked"))
        .await;
    tmux.send(&["d"]);
    tmux.wait_for("one confirmation", |s| s.contains("Delete 2 nodes?"))
        .await;
    tmux.send(&["y"]);
    let start = Instant::now();
    loop {
        let mut states = Vec::new();
        for id in &ids {
            let (n, _) = store.get_node(id).await.expect("read").expect("node");
            states.push(n.state);
        }
        if states.iter().all(|s| *s == NodeState::Deleting) {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "not deleting: {states:?}; screen:\n{}",
            tmux.capture()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tmux.wait_for("the batch result", |s| {
        s.contains("delete 2 nodes: all 2 done")
    })
    .await;

    // The node whose provider's cloud has no credentials: the pane says so.
    tmux.send(&["G"]);
    tmux.send(&["Enter"]);
    tmux.wait_for("its detail", |s| {
        s.contains(&format!("Node {id_no_creds}")) && s.contains("c console log")
    })
    .await;
    tmux.send(&["c"]);
    let s = tmux
        .wait_for("the explanation", |s| s.contains("no credentials"))
        .await;
    assert!(
        s.contains("provider e2e-nocreds") && s.contains("no-such-cloud"),
        "{s}"
    );
    tmux.send(&["Escape"]);
    tmux.wait_for("the detail again", |s| !s.contains("no credentials"))
        .await;
    tmux.send(&["Escape"]);
    // The detail's title is gone (its key hints may be hidden behind a status message):
    // only then `q`, or the terminal may deliver Esc and q together, as Alt-q, which
    // closes the detail instead of quitting.
    tmux.wait_for("the table again", |s| {
        !s.contains(&format!("Node {id_no_creds}"))
    })
    .await;
    tmux.send(&["q"]);
    let s = tmux
        .wait_for("the exit", |s| s.contains("TUI-EXITED"))
        .await;
    assert!(s.contains("TUI-EXITED 0"), "{s}");
    client.close().await;
    sim.shutdown().await.expect("simulator shutdown");
}
