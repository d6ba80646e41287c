//! Snapshot tests of every view, the overlays, the filter and an empty view, at 80×24
//! and 120×40, with a fixed set of records and a fixed clock.

use crate::common::*;
use insta::assert_snapshot;
use nodepool_tui::app::{App, AppOptions};
use ratatui::crossterm::event::KeyCode;

/// The fixture's app started half an hour before [`NOW`], fed a changing snapshot every
/// 30 seconds (more or fewer ready nodes and waiting requests, launch failures in the
/// last hour), with the quotas of both providers read.
fn app_with_history() -> App {
    use nodepool_shared::model::{NodeId, NodeRequest, NodeState, RequestId, RequestState};
    use nodepool_shared::zk::{CachedNode, CachedRequest};
    use nodepool_tui::app::AppEvent;
    use nodepool_tui::data::Quota;
    use std::sync::Arc;
    let start = NOW - 1800.0;
    let mut a = App::new(AppOptions {
        hosts: "zk01.example.org:2281/nodepool".into(),
        config: config(),
        now: start,
        ..Default::default()
    });
    a.update(AppEvent::Health(health()));
    for step in 0..=60u64 {
        let t = start + step as f64 * 30.0;
        a.update(AppEvent::Tick(t));
        let mut snap = fixture();
        let base = snap.nodes[0].clone();
        for k in 0..(step % 9) {
            let mut n = base.node.to_node();
            n.id = NodeId::from_sequence(100 + k);
            snap.nodes.push(Arc::new(CachedNode {
                node: Arc::new(n.into()),
                stat: base.stat,
                lock_contenders: vec![],
            }));
        }
        // A launch failure every five minutes of the last hour, alternating reasons.
        for f in 0..(step / 10) {
            let mut n = base.node.to_node();
            n.id = NodeId::from_sequence(200 + f);
            n.state = if f % 2 == 0 {
                NodeState::Failed
            } else {
                NodeState::Aborted
            };
            n.state_time = start + f as f64 * 300.0;
            n.host_keys = vec![];
            snap.nodes.push(Arc::new(CachedNode {
                node: Arc::new(n.into()),
                stat: base.stat,
                lock_contenders: vec![],
            }));
        }
        for k in 0..((60 - step) / 12) {
            let mut r = NodeRequest::new(vec!["ubuntu-jammy".into()], "zuul");
            r.id = RequestId::new("200", 50 + k);
            r.state = RequestState::Requested;
            r.state_time = t - 20.0;
            r.created_time = Some(t - 20.0);
            snap.requests.push(Arc::new(CachedRequest {
                request: r,
                stat: stat(0, 20.0),
            }));
        }
        snap.nodes.sort_by(|x, y| x.node.id().cmp(y.node.id()));
        snap.requests
            .sort_by(|x, y| x.request.id.cmp(&y.request.id));
        a.update(AppEvent::Data(snap));
    }
    a.update(AppEvent::Quota("rax-dfw".into(), Quota::Instances(40)));
    a.update(AppEvent::Quota(
        "ovh-bhs1".into(),
        Quota::Unknown("no clouds.yaml".into()),
    ));
    a
}

fn both(name: &str, app: &mut App) {
    assert_snapshot!(format!("{name}_80x24"), draw(app, 80, 24).backend());
    assert_snapshot!(format!("{name}_120x40"), draw(app, 120, 40).backend());
}

#[test]
fn views() {
    for (i, name) in [
        "overview",
        "nodes",
        "requests",
        "builds",
        "uploads",
        "labels",
        "components",
        "images",
        "problems",
    ]
    .iter()
    .enumerate()
    {
        let mut a = app();
        keys(&mut a, &i.to_string());
        both(&format!("view_{name}"), &mut a);
    }
}

/// The Overview after half an hour of history: sparklines, trends, launch failures of
/// the last hour, quotas; at 80×24 (lists cut, sparklines narrow), 120×40 and 200×50
/// (two columns).
#[test]
fn overview_with_history() {
    let mut a = app_with_history();
    assert_eq!(a.view(), nodepool_tui::views::ViewKind::Overview);
    both("overview_history", &mut a);
    assert_snapshot!("overview_history_200x50", draw(&mut a, 200, 50).backend());
}

/// Without a config the Overview says what it cannot know.
#[test]
fn overview_without_config() {
    let mut a = App::new(AppOptions {
        hosts: "127.0.0.1:2181".into(),
        now: NOW,
        ..Default::default()
    });
    a.update(nodepool_tui::app::AppEvent::Health(health()));
    a.update(nodepool_tui::app::AppEvent::Data(fixture()));
    assert_snapshot!("overview_no_config_80x24", draw(&mut a, 80, 24).backend());
}

/// On a 160-column terminal every header is whole, the sort mark included.
#[test]
fn full_headers_on_a_wide_terminal() {
    for (view, name) in [("5", "labels"), ("7", "images")] {
        let mut a = app();
        keys(&mut a, view);
        assert_snapshot!(
            format!("wide_headers_{name}_160x30"),
            draw(&mut a, 160, 30).backend()
        );
    }
}

/// Two nodes marked (Space) and the one confirmation for deleting both; a marked
/// `deleting` node is left out, and the dialog says so.
#[test]
fn marked_rows_and_their_confirmation() {
    let mut a = app();
    keys(&mut a, " j ");
    a.update(code(KeyCode::End));
    keys(&mut a, "kk ");
    both("marked_nodes", &mut a);
    keys(&mut a, "d");
    both("confirm_delete_marked", &mut a);
}

/// A node's console log (`Enter`, `c`): as it arrives (escape sequences removed,
/// starting at its end), and without a config.
#[test]
fn console_log_pane() {
    let mut a = app();
    keys(&mut a, "jj");
    a.update(code(KeyCode::Enter));
    let cmd = a.update(key('c'));
    assert!(
        matches!(cmd, Some(nodepool_tui::app::Command::FetchConsole(_))),
        "{cmd:?}"
    );
    let log: String = (1..=40)
        .map(|i| format!("[{i:>5}.000000] \u{1b}[0;32mboot\u{1b}[0m line {i}\r\n"))
        .collect::<String>()
        + "np0000000003 login: \r\n";
    a.update(nodepool_tui::app::AppEvent::Console(
        nodepool_shared::model::NodeId::from_sequence(3),
        Ok(log),
    ));
    both("console_log", &mut a);
    let mut a = App::new(AppOptions {
        hosts: "127.0.0.1:2181".into(),
        now: NOW,
        ..Default::default()
    });
    a.update(nodepool_tui::app::AppEvent::Data(fixture()));
    keys(&mut a, "1");
    a.update(code(KeyCode::Enter));
    assert_eq!(a.update(key('c')), None);
    assert_snapshot!(
        "console_log_no_config_80x24",
        draw(&mut a, 80, 24).backend()
    );
}

#[test]
fn help_overlay() {
    let mut a = app();
    keys(&mut a, "?");
    both("help", &mut a);
}

#[test]
fn confirm_dialog() {
    let mut a = app();
    keys(&mut a, "jd");
    both("confirm_delete_node", &mut a);
}

#[test]
fn hold_comment_dialog() {
    let mut a = app();
    keys(&mut a, "hkeep for debugging");
    both("hold_comment", &mut a);
}

#[test]
fn detail_pane() {
    let mut a = app();
    keys(&mut a, "jj");
    a.update(code(KeyCode::Enter));
    both("detail_node", &mut a);
}

#[test]
fn filter() {
    let mut a = app();
    keys(&mut a, "/jammy");
    both("filter_editing", &mut a);
    a.update(code(KeyCode::Enter));
    keys(&mut a, "so");
    both("filter_sorted", &mut a);
}

#[test]
fn empty_view() {
    let mut a = App::new(AppOptions {
        hosts: "127.0.0.1:2181".into(),
        now: NOW,
        ..Default::default()
    });
    both("empty_connecting", &mut a);
    let mut a = app();
    keys(&mut a, "/no-such-thing");
    a.update(code(KeyCode::Enter));
    both("empty_filtered", &mut a);
}

#[test]
fn read_only_refusal_and_message() {
    let mut a = App::new(AppOptions {
        hosts: "127.0.0.1:2181".into(),
        now: NOW,
        read_only: true,
        config: config(),
    });
    a.update(nodepool_tui::app::AppEvent::Health(health()));
    a.update(nodepool_tui::app::AppEvent::Data(fixture()));
    keys(&mut a, "d");
    both("read_only", &mut a);
}

/// The held node with values longer than any screen line: a long comment and host keys.
fn app_with_long_values() -> App {
    use std::sync::Arc;
    let mut snap = fixture();
    let held = snap
        .nodes
        .iter_mut()
        .find(|c| c.node.state() == nodepool_shared::model::NodeState::Hold)
        .expect("the fixture has a held node");
    let mut node = held.node.to_node();
    node.comment = Some(
        "held for debugging tox-py311: the job fails only on this provider, \
         please keep it until the network team has looked at the MTU settings"
            .into(),
    );
    node.host_keys = vec![
        format!(
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQ{}",
            "C7x9".repeat(40)
        ),
        format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{}", "Kq3Z".repeat(8)),
    ];
    *held = Arc::new(nodepool_shared::zk::CachedNode {
        node: Arc::new(node.into()),
        stat: held.stat,
        lock_contenders: held.lock_contenders.clone(),
    });
    let mut a = App::new(AppOptions {
        hosts: "zk01.example.org:2281/nodepool".into(),
        now: NOW,
        config: config(),
        ..Default::default()
    });
    a.update(nodepool_tui::app::AppEvent::Health(health()));
    a.update(nodepool_tui::app::AppEvent::Data(snap));
    keys(&mut a, "1");
    a
}

/// The detail pane wraps long lines (nothing is cut) and scrolls with a position
/// indicator: the first page, a page down, and the end.
#[test]
fn detail_pane_long_values_wrap_and_scroll() {
    let mut a = app_with_long_values();
    a.update(code(KeyCode::End));
    a.update(code(KeyCode::Enter));
    assert_snapshot!("detail_long_top_80x24", draw(&mut a, 80, 24).backend());
    a.update(code(KeyCode::PageDown));
    assert_snapshot!("detail_long_page2_80x24", draw(&mut a, 80, 24).backend());
    a.update(code(KeyCode::End));
    assert_snapshot!("detail_long_end_80x24", draw(&mut a, 80, 24).backend());
    // Every character of the long values is on some line of the pane.
    let mut all = String::new();
    a.update(code(KeyCode::Home));
    loop {
        let s = screen(&mut a, 80, 24);
        all.push_str(&s);
        let before = a.mode().clone();
        a.update(code(KeyCode::PageDown));
        if *a.mode() == before {
            break;
        }
    }
    let squeezed: String = all
        .lines()
        .map(|l| l.trim_matches(|c| c == '│' || c == ' '))
        .collect::<Vec<_>>()
        .join("");
    assert!(
        squeezed.contains(&"C7x9".repeat(40)),
        "host key cut:\n{all}"
    );
    assert!(squeezed.contains("MTUsettings") || squeezed.contains("MTU settings"));
}

#[test]
fn confirm_dialogs_of_every_action() {
    // Builds (view 3): the second row is a ready build of ubuntu-jammy.
    let mut a = app();
    keys(&mut a, "3jd");
    both("confirm_delete_build", &mut a);
    let mut a = app();
    keys(&mut a, "3jb");
    both("confirm_rebuild", &mut a);
    // Uploads (view 4): the first row is a ready upload.
    let mut a = app();
    keys(&mut a, "4d");
    both("confirm_delete_upload", &mut a);
    // Images (view 7): centos-9 is paused, ubuntu-jammy is not.
    let mut a = app();
    keys(&mut a, "7jp");
    both("confirm_pause", &mut a);
    let mut a = app();
    keys(&mut a, "7p");
    both("confirm_unpause", &mut a);
}

/// A snapshot as docs/tui.md shows it: the screen lines, right-trimmed, runs of blank
/// lines collapsed to one, no trailing blank line.
fn doc_capture(snap: &str) -> Option<String> {
    let body = snap.splitn(3, "---\n").nth(2)?;
    let mut out: Vec<&str> = Vec::new();
    for l in body.lines().filter(|l| l.len() >= 2 && l.starts_with('"')) {
        let l = l[1..l.len() - 1].trim_end();
        if l.is_empty() && out.last().is_some_and(|p| p.is_empty()) {
            continue;
        }
        out.push(l);
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    Some(out.join("\n"))
}

/// Every screen capture in docs/tui.md is one of the accepted snapshots, so the
/// documentation shows what the console draws.
#[test]
fn docs_captures_are_snapshots() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut snaps = Vec::new();
    for e in std::fs::read_dir(dir.join("tests/snapshots")).expect("snapshots dir") {
        let p = e.expect("dir entry").path();
        if p.extension().is_some_and(|x| x == "snap") {
            let text = std::fs::read_to_string(&p).expect("read snapshot");
            snaps.push(doc_capture(&text).expect("snapshot body"));
        }
    }
    let doc = std::fs::read_to_string(dir.join("../docs/tui.md")).expect("docs/tui.md");
    let mut checked = 0;
    for block in doc.split("```text\n").skip(1) {
        let Some((body, _)) = block.split_once("\n```") else {
            continue;
        };
        if !body.starts_with(" 0 Over") {
            continue;
        }
        assert!(
            snaps.iter().any(|s| s == body),
            "docs/tui.md shows a screen that is no snapshot:\n{body}"
        );
        checked += 1;
    }
    assert!(
        checked >= 25,
        "only {checked} captures found in docs/tui.md"
    );
}
