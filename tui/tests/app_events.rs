//! The App as a pure state machine: events in, state and commands out.

use crate::common::*;
use nodepool_shared::model::{BuildId, NodeId, ZkPath};
use nodepool_shared::zk::{CacheEvent, CacheKind, Change, ConnectionState};
use nodepool_tui::actions::{Action, ActionOutcome};
use nodepool_tui::app::{AppEvent, Command, Mode};
use nodepool_tui::data::RecordKey;
use nodepool_tui::views::ViewKind;
use ratatui::crossterm::event::KeyCode;

fn node(seq: u64) -> RecordKey {
    RecordKey::Node(NodeId::from_sequence(seq))
}

#[test]
fn tabs_by_number_and_tab_key() {
    let mut a = app();
    assert_eq!(a.view(), ViewKind::Nodes);
    keys(&mut a, "3");
    assert_eq!(a.view(), ViewKind::Builds);
    a.update(code(KeyCode::Tab));
    assert_eq!(a.view(), ViewKind::Uploads);
    a.update(code(KeyCode::BackTab));
    a.update(code(KeyCode::BackTab));
    assert_eq!(a.view(), ViewKind::Requests);
    keys(&mut a, "7");
    assert_eq!(a.view(), ViewKind::Images);
    assert_eq!(a.visible_keys().len(), 3);
}

#[test]
fn movement_is_clamped() {
    let mut a = app();
    assert_eq!(a.selected(), Some(&node(1)));
    keys(&mut a, "jj");
    assert_eq!(a.selected(), Some(&node(3)));
    a.update(code(KeyCode::End));
    assert_eq!(a.selected(), Some(&node(7)));
    keys(&mut a, "j");
    assert_eq!(a.selected(), Some(&node(7)));
    a.update(code(KeyCode::PageUp));
    assert_eq!(a.selected(), Some(&node(1)));
    keys(&mut a, "k");
    assert_eq!(a.selected(), Some(&node(1)));
    a.update(code(KeyCode::PageDown));
    assert_eq!(a.selected(), Some(&node(7)));
    keys(&mut a, "g");
    assert_eq!(a.selected(), Some(&node(1)));
}

#[test]
fn sort_cycles_and_flips() {
    let mut a = app();
    keys(&mut a, "o");
    assert_eq!(a.visible_keys()[0], node(7));
    assert!(a.state().descending);
    keys(&mut a, "os"); // ascending by state
    assert_eq!(a.state().sort, 1);
    let order = a.visible_keys();
    // building < deleting < failed < hold < in-use < ready < ready
    assert_eq!(order[0], node(3));
    assert_eq!(order[6], node(6));
    keys(&mut a, "S");
    assert_eq!(a.state().sort, 0);
    keys(&mut a, "S");
    assert_eq!(a.state().sort, ViewKind::Nodes.columns().len() - 1);
}

#[test]
fn filter_is_live_and_esc_clears_it() {
    let mut a = app();
    keys(&mut a, "/noble");
    assert_eq!(a.mode(), &Mode::Filter);
    assert_eq!(a.visible_keys(), vec![node(3), node(6)]);
    a.update(code(KeyCode::Backspace));
    a.update(code(KeyCode::Enter));
    assert_eq!(a.mode(), &Mode::Normal);
    assert_eq!(a.state().filter, "nobl");
    // The filter is per view.
    keys(&mut a, "2");
    assert_eq!(a.visible_keys().len(), 3);
    keys(&mut a, "1");
    assert_eq!(a.visible_keys().len(), 2);
    // Esc clears the filter, and never quits, however often it is pressed.
    assert_eq!(a.update(code(KeyCode::Esc)), None);
    assert_eq!(a.visible_keys().len(), 7);
    assert_eq!(a.update(code(KeyCode::Esc)), None);
    assert_eq!(a.update(code(KeyCode::Esc)), None);
    assert_eq!(a.mode(), &Mode::Normal);
}

#[test]
fn esc_closes_dialogs_and_never_quits() {
    let mut a = app();
    // Twice Esc to leave the confirmation dialog: the console stays.
    keys(&mut a, "d");
    assert!(matches!(a.mode(), Mode::Confirm(_)));
    assert_eq!(a.update(code(KeyCode::Esc)), None);
    assert_eq!(a.mode(), &Mode::Normal);
    assert_eq!(a.update(code(KeyCode::Esc)), None);
    // Same for the help, the detail pane and the hold dialog.
    keys(&mut a, "?");
    assert_eq!(a.update(code(KeyCode::Esc)), None);
    assert_eq!(a.update(code(KeyCode::Esc)), None);
    a.update(code(KeyCode::Enter));
    assert!(matches!(a.mode(), Mode::Detail(..)));
    assert_eq!(a.update(code(KeyCode::Esc)), None);
    assert_eq!(a.update(code(KeyCode::Esc)), None);
    keys(&mut a, "h");
    assert!(matches!(a.mode(), Mode::HoldComment(..)));
    assert_eq!(a.update(code(KeyCode::Esc)), None);
    assert_eq!(a.update(code(KeyCode::Esc)), None);
    assert_eq!(a.mode(), &Mode::Normal);
    // q and Ctrl-C quit.
    assert_eq!(a.update(key('q')), Some(Command::Quit));
    assert_eq!(
        a.update(AppEvent::Key(ratatui::crossterm::event::KeyEvent::new(
            KeyCode::Char('c'),
            ratatui::crossterm::event::KeyModifiers::CONTROL
        ))),
        Some(Command::Quit)
    );
}

#[test]
fn detail_and_help_open_and_close() {
    let mut a = app();
    keys(&mut a, "j");
    a.update(code(KeyCode::Enter));
    assert_eq!(a.mode(), &Mode::Detail(node(2), 0));
    // Rendering sizes the pane; scrolling stays within the text.
    draw(&mut a, 80, 24);
    keys(&mut a, "jj");
    assert_eq!(a.mode(), &Mode::Detail(node(2), 2));
    a.update(code(KeyCode::End));
    let Mode::Detail(_, end) = a.mode().clone() else {
        panic!("detail closed")
    };
    assert!(end > 2);
    assert_eq!(a.update(key('q')), None);
    assert_eq!(a.mode(), &Mode::Normal);
    keys(&mut a, "?");
    assert_eq!(a.mode(), &Mode::Help(0));
    a.update(code(KeyCode::Esc));
    assert_eq!(a.mode(), &Mode::Normal);
    assert_eq!(a.update(key('q')), Some(Command::Quit));
}

#[test]
fn delete_node_confirm_run_and_outcome() {
    let mut a = app();
    keys(&mut a, "d");
    let want = Action::DeleteNode(NodeId::from_sequence(1));
    assert_eq!(a.mode(), &Mode::Confirm(want.clone()));
    assert_eq!(a.update(key('y')), Some(Command::Run(want.clone())));
    assert_eq!(a.running(), std::slice::from_ref(&want));
    assert!(a.message().unwrap().text.contains("delete node 0000000001"));
    a.update(AppEvent::Outcome(ActionOutcome {
        action: want.clone(),
        result: Err("node 0000000001 is locked by someone else (waited 5s)".into()),
    }));
    assert!(a.running().is_empty());
    let m = a.message().unwrap();
    assert!(
        m.text.contains("failed: node 0000000001 is locked"),
        "{}",
        m.text
    );
    // Cancel leaves nothing running.
    keys(&mut a, "d");
    assert_eq!(a.update(key('n')), None);
    assert_eq!(a.mode(), &Mode::Normal);
    assert!(a.message().unwrap().text.starts_with("cancelled"));
}

#[test]
fn hold_with_comment_and_unhold_rules() {
    let mut a = app();
    keys(&mut a, "hon call");
    a.update(code(KeyCode::Backspace));
    let cmd = a.update(code(KeyCode::Enter));
    assert_eq!(
        cmd,
        Some(Command::Run(Action::HoldNode {
            id: NodeId::from_sequence(1),
            comment: "on cal".into()
        }))
    );
    // Unhold of a ready node is refused without a dialog.
    assert_eq!(a.update(key('u')), None);
    assert_eq!(a.mode(), &Mode::Normal);
    assert!(a.message().unwrap().text.contains("not hold"));
    // Node 7 is held: unhold asks, and runs.
    a.update(code(KeyCode::End));
    keys(&mut a, "u");
    assert_eq!(
        a.mode(),
        &Mode::Confirm(Action::UnholdNode(NodeId::from_sequence(7)))
    );
    // Holding it again is refused.
    a.update(code(KeyCode::Esc));
    keys(&mut a, "h");
    assert_eq!(a.mode(), &Mode::Normal);
    assert!(a.message().unwrap().text.contains("already held"));
}

#[test]
fn image_actions_and_refusals() {
    let mut a = app();
    keys(&mut a, "3"); // builds: centos-9 failed (paused), jammy ready, jammy building, noble
    keys(&mut a, "p");
    assert_eq!(
        a.mode(),
        &Mode::Confirm(Action::UnpauseImage("centos-9".into()))
    );
    a.update(code(KeyCode::Esc));
    keys(&mut a, "jjd");
    assert_eq!(a.mode(), &Mode::Normal, "a building build is not deleted");
    assert!(a.message().unwrap().text.contains("still building"));
    keys(&mut a, "kd");
    assert_eq!(
        a.mode(),
        &Mode::Confirm(Action::DeleteBuild(
            "ubuntu-jammy".into(),
            BuildId::from("3b2a1c0d9e8f7a6b5c4d3e2f1a0b9c8d")
        ))
    );
    a.update(code(KeyCode::Esc));
    keys(&mut a, "b");
    assert_eq!(
        a.mode(),
        &Mode::Confirm(Action::RequestBuild("ubuntu-jammy".into()))
    );
    a.update(code(KeyCode::Esc));
    keys(&mut a, "4jjd"); // uploads: third is uploading
    assert_eq!(a.mode(), &Mode::Normal);
    assert!(a.message().unwrap().text.contains("still uploading"));
    keys(&mut a, "5d"); // labels: nothing to delete
    assert_eq!(a.mode(), &Mode::Normal);
}

#[test]
fn read_only_disables_actions() {
    let mut a = nodepool_tui::app::App::new(nodepool_tui::app::AppOptions {
        read_only: true,
        now: NOW,
        config: config(),
        ..Default::default()
    });
    a.update(AppEvent::Data(fixture()));
    for c in "dhupb".chars() {
        assert_eq!(a.update(key(c)), None);
        assert_eq!(a.mode(), &Mode::Normal);
    }
    assert!(a.message().unwrap().text.contains("read-only"));
}

#[test]
fn session_changes_are_announced() {
    let mut a = app();
    let mut h = health();
    h.connection.state = ConnectionState::Suspended;
    a.update(AppEvent::Health(h.clone()));
    assert!(a.message().unwrap().text.contains("suspended"));
    h.connection.state = ConnectionState::Lost;
    a.update(AppEvent::Health(h.clone()));
    assert!(a.message().unwrap().text.contains("session lost"));
    h.connection = nodepool_shared::zk::SessionStatus {
        state: ConnectionState::Connected,
        generation: 2,
    };
    a.update(AppEvent::Health(h.clone()));
    assert!(a
        .message()
        .unwrap()
        .text
        .contains("new ZooKeeper session #2"));
    let s = screen(&mut a, 120, 40);
    assert!(s.contains("reconnected s#2"), "{s}");
}

#[test]
fn same_session_recovery_is_shown_on_the_status_line() {
    let mut a = app();
    let s = screen(&mut a, 120, 40);
    assert!(s.contains("● connected s#1"), "{s}");
    let mut h = health();
    h.connection.state = ConnectionState::Suspended;
    a.update(AppEvent::Health(h.clone()));
    let s = screen(&mut a, 120, 40);
    assert!(s.contains("● suspended s#1"), "{s}");
    h.connection.state = ConnectionState::Connected;
    a.update(AppEvent::Health(h));
    assert!(a.message().unwrap().text.contains("same session"));
    let s = screen(&mut a, 120, 40);
    assert!(s.contains("● reconnected s#1"), "{s}");
}

#[test]
fn selection_follows_its_record_and_last_event_is_shown() {
    let mut a = app();
    keys(&mut a, "jj");
    assert_eq!(a.selected(), Some(&node(3)));
    let mut snap = fixture();
    snap.nodes.remove(0);
    a.update(AppEvent::Data(snap));
    assert_eq!(a.selected(), Some(&node(3)));
    a.update(AppEvent::Cache(CacheEvent {
        kind: CacheKind::Node,
        path: ZkPath::Node(NodeId::from_sequence(1)),
        change: Change::Removed,
    }));
    a.update(AppEvent::Tick(NOW + 4.0));
    let s = screen(&mut a, 120, 40);
    assert!(s.contains("last: node 0000000001 removed 4s ago"), "{s}");
    assert!(s.contains("1 corrupt"));
}

#[test]
fn narrow_and_tiny_terminals_do_not_panic() {
    let mut a = app();
    for (w, h) in [(80, 24), (40, 10), (20, 5), (1, 1), (200, 3)] {
        for k in ["1", "2", "3", "4", "5", "6", "7", "?"] {
            keys(&mut a, k);
            draw(&mut a, w, h);
            a.update(code(KeyCode::Esc));
        }
        keys(&mut a, "1");
        a.update(code(KeyCode::Enter));
        draw(&mut a, w, h);
        a.update(code(KeyCode::Esc));
        keys(&mut a, "d");
        draw(&mut a, w, h);
        a.update(code(KeyCode::Esc));
    }
}

/// The keys the help names for actions work where it says: `Delete` deletes like `d`,
/// `b` and `p` work in views 3, 4 and 7.
#[test]
fn delete_key_and_image_keys_in_views_3_4_7() {
    let mut a = app();
    a.update(code(KeyCode::Delete));
    assert_eq!(
        a.mode(),
        &Mode::Confirm(Action::DeleteNode(NodeId::from_sequence(1)))
    );
    a.update(code(KeyCode::Esc));
    for (view, image) in [("3", "centos-9"), ("4", "ubuntu-jammy"), ("7", "centos-9")] {
        keys(&mut a, view);
        keys(&mut a, "b");
        assert_eq!(
            a.mode(),
            &Mode::Confirm(Action::RequestBuild(image.into())),
            "b in view {view}"
        );
        a.update(code(KeyCode::Esc));
        keys(&mut a, "p");
        assert!(
            matches!(a.mode(), Mode::Confirm(Action::PauseImage(i) | Action::UnpauseImage(i)) if i == image),
            "p in view {view}: {:?}",
            a.mode()
        );
        a.update(code(KeyCode::Esc));
    }
    // Elsewhere they explain where they work.
    keys(&mut a, "2b");
    assert_eq!(a.mode(), &Mode::Normal);
    assert!(a.message().unwrap().text.contains("views 3, 4, 7"));
}
