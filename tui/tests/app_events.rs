//! The App as a pure state machine: events in, state and commands out.

use std::sync::Arc;

use crate::common::*;
use nodepool_shared::model::{BuildId, Node, NodeId, NodeState, RequestId, ZkPath};
use nodepool_shared::zk::{CacheEvent, CacheKind, CachedNode, Change, ConnectionState};
use nodepool_tui::actions::{Action, ActionOutcome};
use nodepool_tui::app::{App, AppEvent, AppOptions, Command, Mode};
use nodepool_tui::data::{ConfigInfo, RecordKey, Snapshot};
use nodepool_tui::table::{Rows, ViewState};
use nodepool_tui::views::{ViewData, ViewKind};
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
    assert_eq!(a.state().filter.text(), "nobl");
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
    assert_eq!(a.mode(), &Mode::Confirm(vec![want.clone()]));
    assert_eq!(a.update(key('y')), Some(Command::Run(vec![want.clone()])));
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
        Some(Command::Run(vec![Action::HoldNode {
            id: NodeId::from_sequence(1),
            comment: "on cal".into()
        }]))
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
        &Mode::Confirm(vec![Action::UnholdNode(NodeId::from_sequence(7))])
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
        &Mode::Confirm(vec![Action::UnpauseImage("centos-9".into())])
    );
    a.update(code(KeyCode::Esc));
    keys(&mut a, "jjd");
    assert_eq!(a.mode(), &Mode::Normal, "a building build is not deleted");
    assert!(a.message().unwrap().text.contains("still building"));
    keys(&mut a, "kd");
    assert_eq!(
        a.mode(),
        &Mode::Confirm(vec![Action::DeleteBuild(
            "ubuntu-jammy".into(),
            BuildId::from("3b2a1c0d9e8f7a6b5c4d3e2f1a0b9c8d")
        )])
    );
    a.update(code(KeyCode::Esc));
    keys(&mut a, "b");
    assert_eq!(
        a.mode(),
        &Mode::Confirm(vec![Action::RequestBuild("ubuntu-jammy".into())])
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
    keys(&mut a, "1");
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
        for k in ["0", "1", "2", "3", "4", "5", "6", "7", "8", "?"] {
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
        &Mode::Confirm(vec![Action::DeleteNode(NodeId::from_sequence(1))])
    );
    a.update(code(KeyCode::Esc));
    for (view, image) in [("3", "centos-9"), ("4", "ubuntu-jammy"), ("7", "centos-9")] {
        keys(&mut a, view);
        keys(&mut a, "b");
        assert_eq!(
            a.mode(),
            &Mode::Confirm(vec![Action::RequestBuild(image.into())]),
            "b in view {view}"
        );
        a.update(code(KeyCode::Esc));
        keys(&mut a, "p");
        assert!(
            matches!(a.mode(), Mode::Confirm(v) if matches!(v.as_slice(), [Action::PauseImage(i) | Action::UnpauseImage(i)] if i == image)),
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

/// The console starts on the Overview (view 0); `0` and `8` switch to it and to the
/// Problems view, and Tab goes round all nine views.
#[test]
fn starts_on_the_overview_and_has_nine_views() {
    let mut a = app_at_start();
    assert_eq!(a.view(), ViewKind::Overview);
    keys(&mut a, "8");
    assert_eq!(a.view(), ViewKind::Problems);
    a.update(code(KeyCode::Tab));
    assert_eq!(a.view(), ViewKind::Overview);
    a.update(code(KeyCode::BackTab));
    assert_eq!(a.view(), ViewKind::Problems);
    keys(&mut a, "0");
    assert_eq!(a.view(), ViewKind::Overview);
    // Table keys do nothing on the Overview (and never panic).
    for c in "jkdhu/ sob".chars() {
        assert_eq!(a.update(key(c)), None);
    }
    assert_eq!(a.mode(), &Mode::Normal);
}

/// Space marks rows (and moves down); `d` then asks once for all marked nodes, leaving
/// out (and naming) the one that cannot be deleted; the outcomes are summed up; Esc
/// unmarks before it clears the filter.
#[test]
fn marked_rows_are_acted_on_with_one_confirmation() {
    let mut a = app();
    keys(&mut a, " ");
    assert_eq!(a.selected(), Some(&node(2)));
    keys(&mut a, "j j ");
    assert_eq!(a.state().marked.len(), 3, "{:?}", a.state().marked);
    keys(&mut a, "d");
    let want = vec![
        Action::DeleteNode(NodeId::from_sequence(1)),
        Action::DeleteNode(NodeId::from_sequence(3)),
    ];
    assert_eq!(a.mode(), &Mode::Confirm(want.clone()));
    let s = screen(&mut a, 80, 24);
    assert!(s.contains("Delete 2 nodes?"), "{s}");
    assert!(s.contains("node 0000000005 is already deleting"), "{s}");
    assert_eq!(a.update(key('y')), Some(Command::Run(want.clone())));
    assert!(a.state().marked.is_empty(), "marks are used up");
    a.update(AppEvent::Outcome(ActionOutcome {
        action: want[0].clone(),
        result: Ok("node 0000000001 set to deleting".into()),
    }));
    assert!(
        a.message().unwrap().text.contains("1 of 2 finished"),
        "{:?}",
        a.message()
    );
    a.update(AppEvent::Outcome(ActionOutcome {
        action: want[1].clone(),
        result: Err("node 0000000003 is locked by someone else (waited 5s)".into()),
    }));
    let m = a.message().unwrap().text.clone();
    assert!(
        m.contains("delete 2 nodes: 1 done, 1 failed: node 0000000003 is locked"),
        "{m}"
    );
    assert!(a.running().is_empty());
    // Esc: first the marks, then the filter.
    keys(&mut a, "/jammy");
    a.update(code(KeyCode::Enter));
    a.update(code(KeyCode::Home));
    keys(&mut a, " ");
    a.update(code(KeyCode::Esc));
    assert!(a.state().marked.is_empty());
    assert_eq!(a.state().filter.text(), "jammy");
    a.update(code(KeyCode::Esc));
    assert_eq!(a.state().filter.text(), "");
    // Marking works only where actions take several records.
    keys(&mut a, "5 ");
    assert!(a.message().unwrap().text.contains("views (1, 3, 4)"));
}

/// `h` on marked nodes asks for one comment and holds them all with it; a held node
/// among them is left out.
#[test]
fn hold_of_marked_nodes_takes_one_comment() {
    let mut a = app();
    keys(&mut a, " ");
    a.update(code(KeyCode::End));
    keys(&mut a, " ");
    keys(&mut a, "h");
    assert_eq!(
        a.mode(),
        &Mode::HoldComment(
            vec![NodeId::from_sequence(1)],
            nodepool_tui::input::TextInput::new()
        ),
        "node 7 is already held"
    );
    keys(&mut a, "mtu");
    let cmd = a.update(code(KeyCode::Enter));
    assert_eq!(
        cmd,
        Some(Command::Run(vec![Action::HoldNode {
            id: NodeId::from_sequence(1),
            comment: "mtu".into()
        }]))
    );
    // Two holdable nodes: one dialog, two actions with the same comment.
    keys(&mut a, "g j ");
    keys(&mut a, "h");
    let Mode::HoldComment(ids, _) = a.mode().clone() else {
        panic!("{:?}", a.mode());
    };
    assert_eq!(ids, [NodeId::from_sequence(1), NodeId::from_sequence(3)]);
    let s = screen(&mut a, 80, 24);
    assert!(s.contains("Hold 2 nodes?"), "{s}");
    keys(&mut a, "x");
    let Some(Command::Run(actions)) = a.update(code(KeyCode::Enter)) else {
        panic!("no run");
    };
    assert_eq!(actions.len(), 2);
    assert!(actions
        .iter()
        .all(|a| matches!(a, Action::HoldNode { comment, .. } if comment == "x")));
}

/// The Problems view lists what the diagnostics find in the data; Enter jumps to the
/// record in its view; new lock owners and the passing of time change the list.
#[test]
fn problems_view_lists_and_jumps() {
    use nodepool_shared::diagnostics::ProblemKind;
    let mut a = app();
    let kinds: Vec<ProblemKind> = a.problems().iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            ProblemKind::CorruptRecord,
            ProblemKind::ImageBuildsFailing,
            ProblemKind::PoolPaused,
            ProblemKind::ImagePaused
        ]
    );
    keys(&mut a, "8");
    assert_eq!(a.visible_keys().len(), 4);
    // The corrupt znode is in no view.
    a.update(code(KeyCode::Enter));
    assert_eq!(a.view(), ViewKind::Problems);
    assert!(a.message().unwrap().text.contains("is in no view"));
    // The failing build: the builds view, on that build.
    keys(&mut a, "j");
    a.update(code(KeyCode::Enter));
    assert_eq!(a.view(), ViewKind::Builds);
    assert_eq!(
        a.selected(),
        Some(&RecordKey::Build(
            "centos-9".into(),
            BuildId::from("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
        ))
    );
    // The paused pool (the next row): the components view, on the pool worker.
    keys(&mut a, "8j");
    a.update(code(KeyCode::Enter));
    assert_eq!(a.view(), ViewKind::Components);
    assert_eq!(
        a.selected(),
        Some(&RecordKey::Component(
            nodepool_shared::model::ComponentKind::Pool,
            "nl010000000002".into()
        ))
    );
    // A persistent lock contender on node 2 (read by the background task).
    let path = "/nodepool/nodes/0000000002/lock/8d6b0c__lock__0000000000".to_string();
    a.update(AppEvent::LockOwners([(path, 0)].into_iter().collect()));
    assert!(a
        .problems()
        .iter()
        .any(|p| p.kind == ProblemKind::LockWithoutSession && p.records.first() == Some(&node(2))));
    // Eleven minutes later node 5 is still deleting.
    a.update(AppEvent::Tick(NOW + 660.0));
    assert!(
        a.problems()
            .iter()
            .any(|p| p.kind == ProblemKind::NodeDeletingTooLong
                && p.records.first() == Some(&node(5)))
    );
    // … the two requests wait for over ten minutes, and debian-bookworm and
    // ubuntu-jammy have been below min-ready since the console started (no min-ready
    // request tells; the console remembers).
    for (kind, record) in [
        (
            ProblemKind::RequestWaitingTooLong,
            RecordKey::Request(RequestId::from("100-0000000001")),
        ),
        (
            ProblemKind::RequestWaitingTooLong,
            RecordKey::Request(RequestId::from("100-0000000003")),
        ),
        (
            ProblemKind::LabelBelowMinReady,
            RecordKey::Label("debian-bookworm".into()),
        ),
        (
            ProblemKind::LabelBelowMinReady,
            RecordKey::Label("ubuntu-jammy".into()),
        ),
    ] {
        assert!(
            a.problems()
                .iter()
                .any(|p| p.kind == kind && p.records.first() == Some(&record)),
            "{kind:?} {record:?}: {:#?}",
            a.problems()
        );
    }
    assert_eq!(a.problems().len(), 10);
    let s = screen(&mut a, 120, 40);
    assert!(s.contains("8 Problems (10)"), "{s}");
}

/// `c` in a node's detail asks the runtime for the console log through the node's
/// provider; the answer is cleaned (escape sequences, carriage returns) and shown from
/// its end; Esc goes back to the node. Without a config, or for a node without a
/// server, the pane says why there is no log.
#[test]
fn console_log_from_the_node_detail() {
    use nodepool_tui::app::{ConsoleLog, ConsoleText};
    let mut a = app();
    keys(&mut a, "jj");
    a.update(code(KeyCode::Enter));
    let Some(Command::FetchConsole(req)) = a.update(key('c')) else {
        panic!("no fetch: {:?}", a.mode());
    };
    assert_eq!(req.node, NodeId::from_sequence(3));
    assert_eq!(req.server, "7e1c0f5a-5b7e-4d57-9a0f-000000000003");
    assert_eq!(req.provider.name, "ovh-bhs1");
    assert_eq!(req.provider.cloud, "ovh-bhs1-cloud");
    assert!(matches!(
        a.mode(),
        Mode::Console(ConsoleLog {
            text: ConsoleText::Loading,
            ..
        })
    ));
    a.update(AppEvent::Console(
        NodeId::from_sequence(3),
        Ok("\u{1b}[0;32mOK\u{1b}[0m one\r\ntwo\r\n".into()),
    ));
    let Mode::Console(c) = a.mode().clone() else {
        panic!("{:?}", a.mode());
    };
    assert_eq!(
        c.text,
        ConsoleText::Lines(vec!["OK one".into(), "two".into()])
    );
    let s = screen(&mut a, 80, 24);
    assert!(s.contains("OK one") && !s.contains("[0;32m"), "{s}");
    a.update(code(KeyCode::Esc));
    assert_eq!(a.mode(), &Mode::Detail(node(3), 0));
    // A credentials failure arrives as the answer.
    a.update(key('c'));
    a.update(AppEvent::Console(
        NodeId::from_sequence(3),
        Err("Unavailable: no credentials for provider ovh-bhs1".into()),
    ));
    let s = screen(&mut a, 80, 24);
    assert!(s.contains("no credentials for provider ovh-bhs1"), "{s}");
    // Without a config: no request, an explanation.
    let mut b = nodepool_tui::app::App::new(nodepool_tui::app::AppOptions {
        now: NOW,
        ..Default::default()
    });
    b.update(AppEvent::Data(fixture()));
    keys(&mut b, "1");
    b.update(code(KeyCode::Enter));
    assert_eq!(b.update(key('c')), None);
    let Mode::Console(c) = b.mode().clone() else {
        panic!("{:?}", b.mode());
    };
    assert!(
        matches!(&c.text, ConsoleText::Unavailable(t) if t.contains("-c nodepool.yaml")),
        "{c:?}"
    );
    // `c` elsewhere than a node's detail explains itself.
    keys(&mut a, "q");
    a.update(code(KeyCode::Esc));
    keys(&mut a, "3");
    a.update(code(KeyCode::Enter));
    assert_eq!(a.update(key('c')), None);
    assert!(a
        .message()
        .unwrap()
        .text
        .contains("console log is a node's"));
}

/// Times a few milliseconds ahead of the console's clock read "just now", not "in the
/// future"; the pause dialog says that only builds stop.
#[test]
fn small_clock_skew_reads_just_now_and_pause_says_what_stops() {
    let mut snap = fixture();
    let first = snap.nodes[0].clone();
    let mut n = first.node.to_node();
    n.state_time = NOW + 0.004;
    snap.nodes[0] = std::sync::Arc::new(nodepool_shared::zk::CachedNode {
        node: std::sync::Arc::new(n.into()),
        stat: first.stat,
        lock_contenders: vec![],
    });
    let mut a = app();
    a.update(AppEvent::Data(snap));
    let s = screen(&mut a, 120, 40);
    let row = s
        .lines()
        .find(|l| l.starts_with("0000000001"))
        .expect("node 1 row");
    assert!(row.contains("just now"), "{row}");
    assert!(!s.contains("in the future"), "{s}");
    keys(&mut a, "7jp");
    let s = screen(&mut a, 80, 24);
    assert!(s.contains("stops building this image"), "{s}");
    assert!(s.contains("uploads of its existing builds go on"), "{s}");
    assert!(!s.contains("stops building and uploading"), "{s}");
}

/// A node record as the cache would hold it after a change.
fn cached_node(
    seq: u64,
    state: NodeState,
    label: &str,
    provider: &str,
    age: f64,
) -> Arc<CachedNode> {
    let n = Node {
        id: NodeId::from_sequence(seq),
        state,
        state_time: NOW - age,
        provider: Some(provider.into()),
        pool: Some("main".into()),
        node_type: vec![label.into()],
        public_ipv4: Some(format!("203.0.113.{seq}")),
        ..Node::default()
    };
    Arc::new(CachedNode::new(n, stat(7, age), vec![]))
}

/// The nodes tab of `a` built from scratch from `snap` with the same filter, sort and
/// selection: its shown rows and the resulting view state.
fn rebuilt(a: &App, snap: &Snapshot) -> (Vec<RecordKey>, ViewState) {
    let data = ViewData {
        snapshot: snap,
        config: &ConfigInfo::default(),
        problems: &[],
    };
    let mut rows = Rows::new(ViewKind::Nodes.rows(&data), ViewKind::Nodes.columns().len());
    let mut state = a.state().clone();
    rows.refresh(&mut state);
    (rows.visible_rows().map(|r| r.key.clone()).collect(), state)
}

/// A console started on `snap` (the nodes tab built in one go), with `typed` keys.
fn fresh(snap: &Snapshot, typed: &str) -> App {
    let mut b = App::new(AppOptions {
        hosts: "zk01.example.org:2281/nodepool".into(),
        read_only: false,
        config: config(),
        now: NOW,
    });
    b.update(AppEvent::Health(health()));
    b.update(AppEvent::Data(snap.clone()));
    keys(&mut b, typed);
    b
}

/// The nodes tab follows single changes (a change, an add, a delete, a node turned
/// corrupt) without a rebuild, and a filter and a sort change on top: after every step
/// its rows, order and selection equal those built from scratch, and the screens of
/// the nodes tab and the Overview equal those of a console started on the same data.
#[test]
fn incremental_nodes_tab_matches_a_full_rebuild() {
    let mut a = app();
    let mut snap = fixture();
    keys(&mut a, "jj");
    let check = |a: &mut App, snap: &Snapshot, step: &str| {
        let (keys, state) = rebuilt(a, snap);
        assert_eq!(a.visible_keys(), keys, "{step}: rows");
        assert_eq!(a.state(), &state, "{step}: selection");
    };
    // A change: node 3 is ready now, on another provider (its row moves when sorted).
    snap.nodes[2] = cached_node(3, NodeState::Ready, "ubuntu-noble", "aaa-first", 5.0);
    a.update(AppEvent::Data(snap.clone()));
    check(&mut a, &snap, "change");
    assert!(screen(&mut a, 120, 40).contains("aaa-first"));
    // An add (after the last id) and one in the middle of the ids.
    snap.nodes.push(cached_node(
        50,
        NodeState::Building,
        "debian-bookworm",
        "rax-dfw",
        1.0,
    ));
    let at = snap
        .nodes
        .iter()
        .position(|n| n.id() > &NodeId::from_sequence(45))
        .unwrap_or(snap.nodes.len());
    snap.nodes.insert(
        at,
        cached_node(45, NodeState::Ready, "centos-9", "ovh-bhs1", 9.0),
    );
    a.update(AppEvent::Data(snap.clone()));
    check(&mut a, &snap, "add");
    // Sort by provider, descending, then a delete of the selected node.
    keys(&mut a, "ssso");
    check(&mut a, &snap, "sort");
    let selected = a.selected().cloned().unwrap();
    snap.nodes
        .retain(|n| RecordKey::Node(n.id().clone()) != selected);
    a.update(AppEvent::Data(snap.clone()));
    check(&mut a, &snap, "delete");
    assert_ne!(a.selected(), Some(&selected));
    // A filter, then a change that makes a node match it and one that makes another
    // stop matching.
    keys(&mut a, "/ready");
    a.update(code(KeyCode::Enter));
    check(&mut a, &snap, "filter");
    let shown = a.visible_keys().len();
    snap.nodes[0] = cached_node(1, NodeState::Deleting, "ubuntu-jammy", "rax-dfw", 3.0);
    let last = snap.nodes.len() - 1;
    snap.nodes[last] = cached_node(50, NodeState::Ready, "debian-bookworm", "rax-dfw", 1.0);
    a.update(AppEvent::Data(snap.clone()));
    check(&mut a, &snap, "filter, change");
    assert_eq!(a.visible_keys().len(), shown);
    // Node 2 turns corrupt: the cache skips it (gone from the nodes) and lists its path.
    a.update(code(KeyCode::Esc));
    snap.nodes.retain(|n| n.id() != &NodeId::from_sequence(2));
    snap.corrupt.push("/nodepool/nodes/0000000002".into());
    a.update(AppEvent::Data(snap.clone()));
    check(&mut a, &snap, "corrupt");
    assert!(!a.visible_keys().contains(&node(2)));
    // The same screens as a console started on this data (problems are computed again
    // at the clock tick after a burst of changes).
    a.update(AppEvent::Tick(NOW));
    let mut b = fresh(&snap, "1ssso");
    for app in [&mut a, &mut b] {
        app.update(code(KeyCode::Home));
    }
    assert_eq!(screen(&mut a, 120, 40), screen(&mut b, 120, 40));
    keys(&mut a, "0");
    keys(&mut b, "0");
    assert_eq!(screen(&mut a, 120, 40), screen(&mut b, 120, 40));
    keys(&mut a, "8");
    keys(&mut b, "8");
    assert_eq!(screen(&mut a, 120, 40), screen(&mut b, 120, 40));
}

/// A burst of changes within one second runs the inspections once at the first change
/// and once more at the next clock tick, not at every change.
#[test]
fn problems_of_a_burst_are_computed_at_the_next_tick() {
    use nodepool_shared::diagnostics::ProblemKind;
    let mut a = app();
    a.update(AppEvent::Tick(NOW + 1.0));
    let mut snap = fixture();
    snap.corrupt.push("/nodepool/nodes/0000000077".into());
    a.update(AppEvent::Data(snap.clone()));
    let corrupt = |a: &App| {
        a.problems()
            .iter()
            .filter(|p| p.kind == ProblemKind::CorruptRecord)
            .count()
    };
    assert_eq!(corrupt(&a), 2, "the first change after a tick is inspected");
    snap.corrupt.push("/nodepool/nodes/0000000078".into());
    a.update(AppEvent::Data(snap.clone()));
    assert_eq!(
        corrupt(&a),
        2,
        "the second in the same second waits for the tick"
    );
    a.update(AppEvent::Tick(NOW + 2.0));
    assert_eq!(corrupt(&a), 3);
}

/// A jump to a node (from the Problems view) when new data arrived but no node changed:
/// the nodes tab is brought in step without edits and the selection lands on the node.
#[test]
fn jump_to_a_node_after_data_without_node_changes() {
    use nodepool_shared::diagnostics::ProblemKind;
    let snap = fixture();
    let mut a = fresh(&snap, "1G");
    assert_ne!(a.selected(), Some(&node(2)));
    // On the Problems view: the data marks the nodes tab for an update.
    keys(&mut a, "8");
    a.update(AppEvent::Data(snap.clone()));
    let path = "/nodepool/nodes/0000000002/lock/8d6b0c__lock__0000000000".to_string();
    a.update(AppEvent::LockOwners([(path, 0)].into_iter().collect()));
    assert!(a
        .problems()
        .iter()
        .any(|p| p.kind == ProblemKind::LockWithoutSession));
    let at = a
        .visible_keys()
        .iter()
        .position(|k| k == &node(2))
        .expect("the lock problem's row");
    a.update(code(KeyCode::Home));
    keys(&mut a, &"j".repeat(at));
    a.update(code(KeyCode::Enter));
    assert_eq!(a.view(), ViewKind::Nodes);
    assert_eq!(a.selected(), Some(&node(2)));
}

/// With the inspector (the running console), the inspections run on their own thread
/// and come back as `AppEvent::Problems`; data arriving while one runs marks the
/// problems stale, and the next clock tick inspects again. The answers are the inline
/// ones.
#[test]
fn problems_from_the_inspection_thread() {
    use nodepool_shared::diagnostics::ProblemKind;
    let corrupt = |a: &App| {
        a.problems()
            .iter()
            .filter(|p| p.kind == ProblemKind::CorruptRecord)
            .count()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut a = app();
    let inline: Vec<_> = a.problems().to_vec();
    a.inspect_in_background(tx);
    let answer = |rx: &mut tokio::sync::mpsc::UnboundedReceiver<AppEvent>| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match rx.try_recv() {
                Ok(ev @ AppEvent::Problems(..)) => return ev,
                Ok(other) => panic!("unexpected event {other:?}"),
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(2))
                }
                Err(e) => panic!("no answer from the inspection thread: {e}"),
            }
        }
    };
    a.update(AppEvent::Tick(NOW + 1.0));
    let mut snap = fixture();
    snap.corrupt.push("/nodepool/nodes/0000000077".into());
    a.update(AppEvent::Data(snap.clone()));
    assert_eq!(corrupt(&a), 1, "not applied before the answer comes");
    // More data while the thread works: nothing more is sent to it.
    snap.corrupt.push("/nodepool/nodes/0000000078".into());
    a.update(AppEvent::Data(snap.clone()));
    let ev = answer(&mut rx);
    a.update(ev);
    assert_eq!(corrupt(&a), 2);
    assert!(rx.try_recv().is_err(), "one inspection at a time");
    // The tick inspects the stale data.
    a.update(AppEvent::Tick(NOW + 2.0));
    let ev = answer(&mut rx);
    a.update(ev);
    assert_eq!(corrupt(&a), 3);
    // Same inputs, same answer as inline.
    let mut b = app();
    b.update(AppEvent::Tick(NOW + 2.0));
    b.update(AppEvent::Data(snap));
    assert_eq!(a.problems(), b.problems());
    assert_ne!(a.problems(), &inline[..]);
}
