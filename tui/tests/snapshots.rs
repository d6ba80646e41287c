//! Snapshot tests of every view, the overlays, the filter and an empty view, at 80×24
//! and 120×40, with a fixed set of records and a fixed clock.

mod common;

use common::*;
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
