//! End to end: the real `nodepool-tui` binary in a tmux pane (120×40) against a real
//! ZooKeeper, with records written through `ZkStore`. Checks that the nodes view shows
//! them, that a record written later appears, that holding a node with keys sets the
//! znode to `hold`, and that `q` quits. Every wait is bounded.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nodepool_shared::model::{Node, NodeId, NodeState};
use nodepool_shared::testing::TestZk;
use nodepool_shared::zk::ZkStore;

const WAIT: Duration = Duration::from_secs(15);

/// A private tmux server (own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        let socket = format!("nptui-{}", std::process::id());
        let t = Tmux { socket };
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

    /// Polls the pane until `pred` holds (at most [`WAIT`]); panics with the screen.
    async fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.capture();
            if pred(&s) {
                return s;
            }
            if start.elapsed() > WAIT {
                panic!("timed out waiting for {what}; screen:\n{s}");
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
        "{} --zk {} --chroot {} --log-file {}; echo TUI-EXITED $?; sleep 30",
        shell_quote(bin),
        shell_quote(&zk.plain_hosts()),
        shell_quote(zk.chroot()),
        shell_quote(&log.display().to_string()),
    );
    let tmux = Tmux::start(&command);

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
