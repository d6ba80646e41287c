//! The key map of the table views, in one table that both decodes keys and feeds the
//! help overlay, so the help always lists exactly the keys that work. Dialogs (filter
//! input, confirmation, hold comment, detail pane, help) decode their few keys in
//! [`crate::app`] and are described in [`DIALOG_HELP`].

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What a key asks for in a table view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Quit the console.
    Quit,
    /// Clear the filter, or quit when there is none.
    Escape,
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

/// One line of the help overlay: keys, what they do.
pub type HelpLine = (&'static str, &'static str);

/// Keys of the table views (section title lines have empty keys).
pub const VIEW_HELP: &[HelpLine] = &[
    ("", "Views"),
    ("1 … 7", "switch to the view numbered in the tab bar"),
    ("Tab / Shift-Tab", "next / previous view"),
    ("", "Moving"),
    ("j k ↓ ↑", "down / up one row"),
    ("PgDn PgUp ^f ^b", "down / up one page"),
    ("Home End g G", "first / last row"),
    ("", "Table"),
    ("s / S", "sort by the next / previous column"),
    ("o", "flip the sort order"),
    ("/", "filter rows (live; Enter keeps, Esc clears)"),
    ("Enter", "details: the whole record as JSON"),
    ("", "Actions (confirmed first; off with --read-only)"),
    ("d", "delete the node / build / upload"),
    ("h", "hold the node (with a comment)"),
    ("u", "release the hold of the node (sets it used)"),
    ("p", "pause / unpause the image (views 3, 4, 7)"),
    ("b", "request a build of the image (views 3, 7)"),
    ("", "Other"),
    ("?", "this help"),
    ("q  Ctrl-c", "quit"),
    ("Esc", "clear the filter, else quit"),
];

/// Keys inside dialogs and panes.
pub const DIALOG_HELP: &[HelpLine] = &[
    ("", "In dialogs and panes"),
    ("y / Enter", "confirm the action"),
    ("n / Esc", "cancel"),
    ("j k PgDn PgUp", "scroll the detail pane and this help"),
    ("q / Esc / Enter", "close the detail pane or this help"),
];

/// True for key events that should be handled (presses and repeats, not releases).
pub fn is_press(key: &KeyEvent) -> bool {
    key.kind != KeyEventKind::Release
}

/// Ctrl-C.
pub fn is_interrupt(key: &KeyEvent) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c')
}

/// Decodes a key of a table view.
pub fn intent(key: &KeyEvent) -> Option<Intent> {
    if is_interrupt(key) {
        return Some(Intent::Quit);
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    Some(match key.code {
        KeyCode::Char('f') if ctrl => Intent::PageDown,
        KeyCode::Char('b') if ctrl => Intent::PageUp,
        _ if ctrl => return None,
        KeyCode::Char('q') => Intent::Quit,
        KeyCode::Esc => Intent::Escape,
        KeyCode::Char(c @ '1'..='7') => Intent::Tab(c as usize - '1' as usize),
        KeyCode::Tab => Intent::NextTab,
        KeyCode::BackTab => Intent::PrevTab,
        KeyCode::Char('j') | KeyCode::Down => Intent::Down,
        KeyCode::Char('k') | KeyCode::Up => Intent::Up,
        KeyCode::PageDown => Intent::PageDown,
        KeyCode::PageUp => Intent::PageUp,
        KeyCode::Home | KeyCode::Char('g') => Intent::Home,
        KeyCode::End | KeyCode::Char('G') => Intent::End,
        KeyCode::Char('s') => Intent::SortNext,
        KeyCode::Char('S') => Intent::SortPrev,
        KeyCode::Char('o') => Intent::SortFlip,
        KeyCode::Char('/') => Intent::Filter,
        KeyCode::Enter => Intent::Detail,
        KeyCode::Char('?') => Intent::Help,
        KeyCode::Char('d') | KeyCode::Delete => Intent::Delete,
        KeyCode::Char('h') => Intent::Hold,
        KeyCode::Char('u') => Intent::Unhold,
        KeyCode::Char('p') => Intent::TogglePause,
        KeyCode::Char('b') => Intent::RequestBuild,
        _ => return None,
    })
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
        assert_eq!(
            intent(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Intent::Quit)
        );
        assert_eq!(
            intent(&KeyEvent::new(KeyCode::Char('f'), KeyModifiers::CONTROL)),
            Some(Intent::PageDown)
        );
    }
}
