//! The key map, as tables that both decode keys and are checked against the help
//! overlay, so the help always lists exactly the keys that work: [`BINDINGS`] for the
//! table views (also the scrolling keys of the panes), [`INPUT_KEYS`] for typed text
//! (filter, hold comment), [`DETAIL_KEYS`] for the detail pane, and [`CONFIRM_KEYS`],
//! [`CANCEL_KEYS`], [`CLOSE_KEYS`] for the dialogs and panes. [`crate::app`] decodes
//! keys only through the functions here; the unit tests derive every bound key from
//! the tables and check that [`VIEW_HELP`] / [`DIALOG_HELP`] name it and nothing else.

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
    /// Mark or unmark the selected row (actions then apply to all marked rows).
    Mark,
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
    ch('0', Intent::Tab(0)),
    ch('1', Intent::Tab(1)),
    ch('2', Intent::Tab(2)),
    ch('3', Intent::Tab(3)),
    ch('4', Intent::Tab(4)),
    ch('5', Intent::Tab(5)),
    ch('6', Intent::Tab(6)),
    ch('7', Intent::Tab(7)),
    ch('8', Intent::Tab(8)),
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
    ch(' ', Intent::Mark),
];

/// What a key does to typed text (the filter, the hold comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputIntent {
    /// Done: keep the text (the filter stays, the hold runs).
    Submit,
    /// Abandon (the filter is cleared, the hold cancelled).
    Cancel,
    /// Delete the last character.
    Erase,
    /// Delete everything typed.
    Clear,
}

/// Editing keys of typed text; any other printable character is typed.
pub const INPUT_KEYS: &[(KeyCode, bool, InputIntent)] = &[
    (KeyCode::Enter, false, InputIntent::Submit),
    (KeyCode::Esc, false, InputIntent::Cancel),
    (KeyCode::Backspace, false, InputIntent::Erase),
    (KeyCode::Char('u'), true, InputIntent::Clear),
];

/// Keys that leave the filter and move the selection at once.
pub const FILTER_LEAVE_KEYS: &[KeyCode] = &[KeyCode::Down, KeyCode::Up];

/// What a key asks for in the detail pane (besides scrolling and closing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetailIntent {
    /// Fetch the console log of the node's server from its cloud.
    ConsoleLog,
}

/// Keys of the detail pane.
pub const DETAIL_KEYS: &[(KeyCode, DetailIntent)] =
    &[(KeyCode::Char('c'), DetailIntent::ConsoleLog)];

/// Keys that confirm an action in the confirmation dialog.
pub const CONFIRM_KEYS: &[KeyCode] = &[KeyCode::Char('y'), KeyCode::Char('Y'), KeyCode::Enter];
/// Keys that cancel the confirmation dialog (`Esc` also cancels the hold dialog).
pub const CANCEL_KEYS: &[KeyCode] = &[
    KeyCode::Char('n'),
    KeyCode::Char('N'),
    KeyCode::Esc,
    KeyCode::Char('q'),
];
/// Keys that close the detail pane and the help overlay (`?` also closes the help).
pub const CLOSE_KEYS: &[KeyCode] = &[KeyCode::Esc, KeyCode::Char('q'), KeyCode::Enter];

/// One line of the help overlay: keys (space-separated, as [`label`] names them), what
/// they do. Section title lines have empty keys.
pub type HelpLine = (&'static str, &'static str);

/// Keys of the table views.
pub const VIEW_HELP: &[HelpLine] = &[
    ("", "Views"),
    ("0 1 2 3 4 5 6 7 8", "switch view (0 overview … 8 problems)"),
    ("Tab Shift-Tab", "next / previous view"),
    ("?", "this help"),
    ("q ^c", "quit"),
    ("", "Moving (also scrolls the detail pane and this help)"),
    ("j k ↓ ↑", "down / up one row"),
    ("PgDn PgUp ^f ^b", "down / up one page"),
    ("Home End g G", "first / last row"),
    ("", "Table"),
    ("s S", "sort by the next / previous column"),
    ("o", "flip the sort order"),
    ("/", "filter rows (live; Enter keeps, Esc clears)"),
    ("Esc", "unmark all, else clear the filter (never quits)"),
    ("Enter", "details; in view 8: jump to the record"),
    ("Space", "mark / unmark the row (views 1, 3, 4)"),
    ("", "Actions (confirmed first; off with --read-only)"),
    ("d Delete", "delete the node/build/upload (or all marked)"),
    ("h", "hold the node(s), with a comment"),
    ("u", "release the hold (sets the node(s) used)"),
    ("p", "pause / unpause the image (views 3, 4, 7)"),
    ("b", "request a build of the image (views 3, 4, 7)"),
];

/// Keys inside dialogs and panes.
pub const DIALOG_HELP: &[HelpLine] = &[
    ("", "Dialogs, typed text, panes"),
    ("y Y Enter", "confirm the action"),
    ("n N Esc q", "cancel the action"),
    ("Enter", "keep the filter / hold with the comment"),
    ("Esc", "clear the filter / cancel the hold"),
    ("Backspace", "delete the last typed character"),
    ("^u", "delete everything typed"),
    ("↓ ↑", "leave the filter and move"),
    ("c", "console log of the node's server (node detail)"),
    ("Esc q Enter", "close the pane (? closes the help too)"),
];

/// True for key events that should be handled (presses and repeats, not releases).
pub fn is_press(key: &KeyEvent) -> bool {
    key.kind != KeyEventKind::Release
}

/// Ctrl-C.
pub fn is_interrupt(key: &KeyEvent) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c')
}

/// Decodes an editing key of typed text through [`INPUT_KEYS`].
pub fn input_intent(key: &KeyEvent) -> Option<InputIntent> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    INPUT_KEYS
        .iter()
        .find(|(code, c, _)| *code == key.code && *c == ctrl)
        .map(|(_, _, i)| *i)
}

/// The character a key types, if it types one (no Ctrl or Alt chords).
pub fn typed_char(key: &KeyEvent) -> Option<char> {
    match key.code {
        KeyCode::Char(c)
            if !key
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
                && !c.is_control() =>
        {
            Some(c)
        }
        _ => None,
    }
}

/// Whether the key leaves the filter and moves ([`FILTER_LEAVE_KEYS`]).
pub fn leaves_filter(key: &KeyEvent) -> bool {
    FILTER_LEAVE_KEYS.contains(&key.code)
}

/// Decodes a key of the detail pane through [`DETAIL_KEYS`].
pub fn detail_intent(key: &KeyEvent) -> Option<DetailIntent> {
    DETAIL_KEYS
        .iter()
        .find(|(code, _)| *code == key.code && key.modifiers.is_empty())
        .map(|(_, i)| *i)
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
        KeyCode::Char(' ') => "Space".into(),
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
        assert_eq!(intent(&k(KeyCode::Char('3'))), Some(Intent::Tab(3)));
        assert_eq!(intent(&k(KeyCode::Char('9'))), None);
        assert_eq!(intent(&k(KeyCode::Char(' '))), Some(Intent::Mark));
        assert_eq!(input_intent(&k(KeyCode::Enter)), Some(InputIntent::Submit));
        assert_eq!(
            detail_intent(&k(KeyCode::Char('c'))),
            Some(DetailIntent::ConsoleLog)
        );
        assert_eq!(typed_char(&k(KeyCode::Char('x'))), Some('x'));
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
            .chain(FILTER_LEAVE_KEYS)
            .map(|c| label(*c, false))
            .collect();
        dialog_keys.extend(INPUT_KEYS.iter().map(|(c, ctrl, _)| label(*c, *ctrl)));
        dialog_keys.extend(DETAIL_KEYS.iter().map(|(c, _)| label(*c, false)));
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
