//! The one text-input component of the console, used by the table filter and the hold
//! comment: the typed text, its editing keys (decoded through [`keys::INPUT_KEYS`], so
//! the help lists them) and how it is drawn (with a block cursor while focused).

use ratatui::crossterm::event::KeyEvent;
use ratatui::style::{Modifier, Style};
use ratatui::text::Span;

use crate::keys::{self, InputIntent};

/// What a key did to the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    /// The text changed.
    Changed,
    /// `Enter`: done, keep the text.
    Submit,
    /// `Esc`: abandon.
    Cancel,
    /// Not an editing key (the owner may use it, e.g. ↑/↓ in the filter).
    Ignored,
}

/// Typed text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextInput {
    text: String,
}

impl TextInput {
    /// Empty.
    pub fn new() -> TextInput {
        TextInput::default()
    }

    /// Holding `text`.
    pub fn with(text: impl Into<String>) -> TextInput {
        TextInput { text: text.into() }
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether nothing is typed.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Forgets the text.
    pub fn clear(&mut self) {
        self.text.clear();
    }

    /// Applies one key: a printable character is typed, the [`keys::INPUT_KEYS`] edit,
    /// submit or cancel; anything else is [`Edit::Ignored`].
    pub fn handle(&mut self, key: &KeyEvent) -> Edit {
        match keys::input_intent(key) {
            Some(InputIntent::Submit) => Edit::Submit,
            Some(InputIntent::Cancel) => Edit::Cancel,
            Some(InputIntent::Erase) => {
                self.text.pop();
                Edit::Changed
            }
            Some(InputIntent::Clear) => {
                self.text.clear();
                Edit::Changed
            }
            None => match keys::typed_char(key) {
                Some(c) => {
                    self.text.push(c);
                    Edit::Changed
                }
                None => Edit::Ignored,
            },
        }
    }

    /// The text as drawn, with a block cursor when `focused`.
    pub fn span(&self, focused: bool, style: Style) -> Span<'static> {
        let cursor = if focused { "█" } else { "" };
        Span::styled(format!("{}{cursor}", self.text), style)
    }

    /// The text with a cursor, underlined: an input field in a dialog.
    pub fn field(&self) -> Span<'static> {
        self.span(true, Style::new().add_modifier(Modifier::UNDERLINED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::{KeyCode, KeyModifiers};

    fn k(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn edits() {
        let mut t = TextInput::new();
        for c in "abc".chars() {
            assert_eq!(t.handle(&k(KeyCode::Char(c))), Edit::Changed);
        }
        assert_eq!(t.handle(&k(KeyCode::Backspace)), Edit::Changed);
        assert_eq!(t.text(), "ab");
        assert_eq!(t.handle(&k(KeyCode::Down)), Edit::Ignored);
        assert_eq!(t.handle(&k(KeyCode::Enter)), Edit::Submit);
        assert_eq!(t.handle(&k(KeyCode::Esc)), Edit::Cancel);
        let ctrl_u = KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL);
        assert_eq!(t.handle(&ctrl_u), Edit::Changed);
        assert!(t.is_empty());
        // Other control chords are not typed.
        let ctrl_x = KeyEvent::new(KeyCode::Char('x'), KeyModifiers::CONTROL);
        assert_eq!(t.handle(&ctrl_x), Edit::Ignored);
        assert!(t.is_empty());
        assert_eq!(t.span(true, Style::new()).content, "█");
    }
}
