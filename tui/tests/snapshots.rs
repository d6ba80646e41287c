//! Snapshot tests of every view, the overlays, the filter and an empty view, at 80×24
//! and 120×40, with a fixed set of records and a fixed clock.

use crate::common::*;
use insta::assert_snapshot;
use nodepool_tui::app::{App, AppOptions};
use ratatui::crossterm::event::KeyCode;

fn both(name: &str, app: &mut App) {
    assert_snapshot!(format!("{name}_80x24"), draw(app, 80, 24).backend());
    assert_snapshot!(format!("{name}_120x40"), draw(app, 120, 40).backend());
}

#[test]
fn views() {
    for (i, name) in [
        "nodes",
        "requests",
        "builds",
        "uploads",
        "labels",
        "components",
        "images",
    ]
    .iter()
    .enumerate()
    {
        let mut a = app();
        keys(&mut a, &(i + 1).to_string());
        both(&format!("view_{name}"), &mut a);
    }
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
        .find(|c| c.node.state == nodepool_shared::model::NodeState::Hold)
        .expect("the fixture has a held node");
    let mut node = (*held.node).clone();
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
        node: Arc::new(node),
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
        if !body.starts_with(" 1 Nodes") {
            continue;
        }
        assert!(
            snaps.iter().any(|s| s == body),
            "docs/tui.md shows a screen that is no snapshot:\n{body}"
        );
        checked += 1;
    }
    assert!(
        checked >= 15,
        "only {checked} captures found in docs/tui.md"
    );
}
