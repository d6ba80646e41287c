//! The key map, as tables that both decode keys and are checked against the help
//! overlay, so the help always lists exactly the keys that work: [`BINDINGS`] for the
//! table views (also the scrolling keys of the detail pane and the help), and
//! [`CONFIRM_KEYS`], [`CANCEL_KEYS`], [`CLOSE_KEYS`] for the dialogs and panes, which
//! [`crate::app`] decodes with [`answer`] and [`closes`]. The unit tests derive every
//! bound key from these tables and check that [`VIEW_HELP`] / [`DIALOG_HELP`] name it.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What a key asks for in a table view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Quit the console.
    Quit,
    /// Clear the filter (never quits: Esc is pressed to close dialogs, often twice).
    ClearFilter,
    /// Switch to the tab with this index.
    Tab(usize),
    /// Next tab.
    NextTab,
    /// Previous tab.
    PrevTab,
    /// Selection up one row.
    Up,
    /// Selection down one row.
    Down,
    /// Selection up one page.
    PageUp,
    /// Selection down one page.
    PageDown,
    /// First row.
    Home,
    /// Last row.
    End,
    /// Sort by the next column.
    SortNext,
    /// Sort by the previous column.
    SortPrev,
    /// Flip the sort order.
    SortFlip,
    /// Edit the filter.
    Filter,
    /// Open the detail pane.
    Detail,
    /// Show the help overlay.
    Help,
    /// Delete the selected node, build or upload.
    Delete,
    /// Hold the selected node.
    Hold,
    /// Release the hold of the selected node.
    Unhold,
    /// Pause or unpause the selected image.
    TogglePause,
    /// Request a build of the selected image.
    RequestBuild,
}

/// One key of a table view: the key, whether Ctrl is held, what it asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The key.
    pub code: KeyCode,
    /// Ctrl held (Shift is ignored: `G` is `G`, Shift-Tab is `BackTab`).
    pub ctrl: bool,
    /// What it does.
    pub intent: Intent,
}

const fn key(code: KeyCode, intent: Intent) -> Binding {
    Binding {
        code,
        ctrl: false,
        intent,
    }
}

const fn ch(c: char, intent: Intent) -> Binding {
    key(KeyCode::Char(c), intent)
}

const fn ctrl(c: char, intent: Intent) -> Binding {
    Binding {
        code: KeyCode::Char(c),
        ctrl: true,
        intent,
    }
}

/// Every key of the table views. The scrolling keys (up/down/page/home/end) also scroll
/// the detail pane and the help overlay.
pub const BINDINGS: &[Binding] = &[
    ch('q', Intent::Quit),
    ctrl('c', Intent::Quit),
    key(KeyCode::Esc, Intent::ClearFilter),
    ch('1', Intent::Tab(0)),
    ch('2', Intent::Tab(1)),
    ch('3', Intent::Tab(2)),
    ch('4', Intent::Tab(3)),
    ch('5', Intent::Tab(4)),
    ch('6', Intent::Tab(5)),
    ch('7', Intent::Tab(6)),
    key(KeyCode::Tab, Intent::NextTab),
    key(KeyCode::BackTab, Intent::PrevTab),
    ch('j', Intent::Down),
    key(KeyCode::Down, Intent::Down),
    ch('k', Intent::Up),
    key(KeyCode::Up, Intent::Up),
    key(KeyCode::PageDown, Intent::PageDown),
    ctrl('f', Intent::PageDown),
    key(KeyCode::PageUp, Intent::PageUp),
    ctrl('b', Intent::PageUp),
    key(KeyCode::Home, Intent::Home),
    ch('g', Intent::Home),
    key(KeyCode::End, Intent::End),
    ch('G', Intent::End),
    ch('s', Intent::SortNext),
    ch('S', Intent::SortPrev),
    ch('o', Intent::SortFlip),
    ch('/', Intent::Filter),
    key(KeyCode::Enter, Intent::Detail),
    ch('?', Intent::Help),
    ch('d', Intent::Delete),
    key(KeyCode::Delete, Intent::Delete),
    ch('h', Intent::Hold),
    ch('u', Intent::Unhold),
    ch('p', Intent::TogglePause),
    ch('b', Intent::RequestBuild),
];

/// Keys that confirm an action in the confirmation dialog.
pub const CONFIRM_KEYS: &[KeyCode] = &[KeyCode::Char('y'), KeyCode::Char('Y'), KeyCode::Enter];
/// Keys that cancel the confirmation dialog (`Esc` also cancels the hold dialog).
pub const CANCEL_KEYS: &[KeyCode] = &[
    KeyCode::Char('n'),
    KeyCode::Char('N'),
    KeyCode::Esc,
    KeyCode::Char('q'),
];
/// The key that deletes the last typed character (filter, hold comment).
pub const ERASE_KEY: KeyCode = KeyCode::Backspace;
/// Keys that close the detail pane and the help overlay (`?` also closes the help).
pub const CLOSE_KEYS: &[KeyCode] = &[KeyCode::Esc, KeyCode::Char('q'), KeyCode::Enter];

/// One line of the help overlay: keys (space-separated, as [`label`] names them), what
/// they do. Section title lines have empty keys.
pub type HelpLine = (&'static str, &'static str);

/// Keys of the table views.
pub const VIEW_HELP: &[HelpLine] = &[
    ("", "Views"),
    (
        "1 2 3 4 5 6 7",
        "switch to the view numbered in the tab bar",
    ),
    ("Tab Shift-Tab", "next / previous view"),
    ("", "Moving (also scrolls the detail pane and this help)"),
    ("j k ↓ ↑", "down / up one row"),
    ("PgDn PgUp ^f ^b", "down / up one page"),
    ("Home End g G", "first / last row"),
    ("", "Table"),
    ("s S", "sort by the next / previous column"),
    ("o", "flip the sort order"),
    ("/", "filter rows (live; Enter keeps, Esc clears)"),
    ("Esc", "clear the filter (Esc never quits)"),
    ("Enter", "details: the whole record (wrapped, scrollable)"),
    ("", "Actions (confirmed first; off with --read-only)"),
    (
        "d Delete",
        "delete the node / build / upload (views 1, 3, 4)",
    ),
    ("h", "hold the node (with a comment)"),
    ("u", "release the hold of the node (sets it used)"),
    ("p", "pause / unpause the image (views 3, 4, 7)"),
    ("b", "request a build of the image (views 3, 4, 7)"),
    ("", "Other"),
    ("?", "this help"),
    ("q ^c", "quit"),
];

/// Keys inside dialogs and panes.
pub const DIALOG_HELP: &[HelpLine] = &[
    ("", "In dialogs and panes"),
    ("y Y Enter", "confirm the action"),
    ("n N Esc q", "cancel the action (Esc cancels a hold)"),
    ("Backspace", "delete the last typed character"),
    ("Esc q Enter", "close the detail pane or this help (? too)"),
];

/// True for key events that should be handled (presses and repeats, not releases).
pub fn is_press(key: &KeyEvent) -> bool {
    key.kind != KeyEventKind::Release
}

/// Ctrl-C.
pub fn is_interrupt(key: &KeyEvent) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c')
}

/// Decodes a key of a table view through [`BINDINGS`].
pub fn intent(key: &KeyEvent) -> Option<Intent> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    BINDINGS
        .iter()
        .find(|b| b.code == key.code && b.ctrl == ctrl)
        .map(|b| b.intent)
}

/// The answer of a key in the confirmation dialog: `Some(true)` confirm, `Some(false)`
/// cancel, `None` ignored.
pub fn answer(key: &KeyEvent) -> Option<bool> {
    if CONFIRM_KEYS.contains(&key.code) {
        Some(true)
    } else if CANCEL_KEYS.contains(&key.code) {
        Some(false)
    } else {
        None
    }
}

/// True if the key closes the detail pane or the help overlay.
pub fn closes(key: &KeyEvent, help: bool) -> bool {
    CLOSE_KEYS.contains(&key.code) || (help && key.code == KeyCode::Char('?'))
}

/// How the help overlay names a key, e.g. `j`, `↓`, `PgDn`, `^f`, `Shift-Tab`.
pub fn label(code: KeyCode, ctrl: bool) -> String {
    let base = match code {
        KeyCode::Char(c) => c.to_string(),
        KeyCode::Down => "↓".into(),
        KeyCode::Up => "↑".into(),
        KeyCode::Left => "←".into(),
        KeyCode::Right => "→".into(),
        KeyCode::PageDown => "PgDn".into(),
        KeyCode::PageUp => "PgUp".into(),
        KeyCode::BackTab => "Shift-Tab".into(),
        other => format!("{other:?}"),
    };
    if ctrl {
        format!("^{base}")
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn decodes() {
        assert_eq!(intent(&k(KeyCode::Char('3'))), Some(Intent::Tab(2)));
        assert_eq!(intent(&k(KeyCode::Char('8'))), None);
        assert_eq!(intent(&k(KeyCode::Down)), Some(Intent::Down));
        assert_eq!(intent(&k(KeyCode::Delete)), Some(Intent::Delete));
        assert_eq!(intent(&k(KeyCode::Esc)), Some(Intent::ClearFilter));
        assert_eq!(
            intent(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Intent::Quit)
        );
        assert_eq!(
            intent(&KeyEvent::new(KeyCode::Char('f'), KeyModifiers::CONTROL)),
            Some(Intent::PageDown)
        );
        assert_eq!(
            intent(&KeyEvent::new(KeyCode::Char('x'), KeyModifiers::CONTROL)),
            None
        );
        assert_eq!(answer(&k(KeyCode::Char('y'))), Some(true));
        assert_eq!(answer(&k(KeyCode::Esc)), Some(false));
        assert_eq!(answer(&k(KeyCode::Char('x'))), None);
        assert!(closes(&k(KeyCode::Char('?')), true));
        assert!(!closes(&k(KeyCode::Char('?')), false));
    }

    fn tokens(help: &[HelpLine]) -> Vec<&'static str> {
        help.iter()
            .flat_map(|(k, _)| k.split_whitespace())
            .collect()
    }

    /// Every bound key is named in the help, and the help names no unbound key: the
    /// keys are derived from the tables the decoders use.
    #[test]
    fn help_lists_every_bound_key_and_nothing_else() {
        let view = tokens(VIEW_HELP);
        let bound: Vec<String> = BINDINGS.iter().map(|b| label(b.code, b.ctrl)).collect();
        for l in &bound {
            assert!(view.contains(&l.as_str()), "help misses the view key {l}");
        }
        for t in &view {
            assert!(
                bound.iter().any(|l| l == t),
                "help names {t}, which no view binding has"
            );
        }
        let dialog = tokens(DIALOG_HELP);
        let mut dialog_keys: Vec<String> = CONFIRM_KEYS
            .iter()
            .chain(CANCEL_KEYS)
            .chain(CLOSE_KEYS)
            .map(|c| label(*c, false))
            .collect();
        // Typed text in the filter and the hold comment.
        dialog_keys.push(label(ERASE_KEY, false));
        for l in &dialog_keys {
            assert!(
                dialog.contains(&l.as_str()),
                "help misses the dialog key {l}"
            );
        }
        for t in &dialog {
            assert!(
                dialog_keys.iter().any(|l| l == t),
                "dialog help names {t}, which no dialog decodes"
            );
        }
    }

    /// Each key decodes to one intent only (no shadowed row in the table).
    #[test]
    fn no_key_bound_twice() {
        for (i, a) in BINDINGS.iter().enumerate() {
            for b in &BINDINGS[i + 1..] {
                assert!(
                    !(a.code == b.code && a.ctrl == b.ctrl),
                    "{} bound twice",
                    label(a.code, a.ctrl)
                );
            }
        }
    }
}
