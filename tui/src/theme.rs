//! Colours by state, in one place so every view agrees: ready is green, work in
//! progress yellow, in-use blue, failures red, deleting/hold magenta.

use ratatui::style::{Color, Modifier, Style};

/// The meaning a state has for an operator; each tone has one colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Tone {
    /// Nothing special.
    #[default]
    Plain,
    /// Ready / running / fulfilled.
    Good,
    /// Work in progress: building, uploading, init, requested, pending.
    Busy,
    /// In use by Zuul.
    InUse,
    /// Failed or aborted.
    Bad,
    /// Held, deleting, paused: kept or going away by a human's decision.
    Attention,
    /// Used / stopped / deleted: done, about to disappear.
    Dim,
}

impl Tone {
    /// The foreground colour of the tone.
    pub fn color(self) -> Option<Color> {
        match self {
            Tone::Plain => None,
            Tone::Good => Some(Color::Green),
            Tone::Busy => Some(Color::Yellow),
            Tone::InUse => Some(Color::Blue),
            Tone::Bad => Some(Color::Red),
            Tone::Attention => Some(Color::Magenta),
            Tone::Dim => Some(Color::DarkGray),
        }
    }

    /// A style with the tone's colour.
    pub fn style(self) -> Style {
        match self.color() {
            Some(c) => Style::new().fg(c),
            None => Style::new(),
        }
    }

    /// The tone of a state name (node, request, build, upload or component state).
    pub fn of_state(state: &str) -> Tone {
        match state {
            "ready" | "running" | "fulfilled" => Tone::Good,
            "building" | "uploading" | "init" | "testing" | "requested" | "pending"
            | "initializing" => Tone::Busy,
            "in-use" => Tone::InUse,
            "failed" | "aborted" => Tone::Bad,
            "hold" | "deleting" | "paused" => Tone::Attention,
            "used" | "deleted" | "stopped" => Tone::Dim,
            _ => Tone::Plain,
        }
    }
}

/// Style of the header row of tables.
pub fn header() -> Style {
    Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
}

/// Style of the selected row.
pub fn selected() -> Style {
    Style::new().add_modifier(Modifier::REVERSED)
}

/// Style of the status line.
pub fn status_line() -> Style {
    Style::new().bg(Color::DarkGray).fg(Color::White)
}

/// Style of the active tab.
pub fn active_tab() -> Style {
    Style::new()
        .fg(Color::Black)
        .bg(Color::Cyan)
        .add_modifier(Modifier::BOLD)
}

/// Style of key names in hints and help.
pub fn key() -> Style {
    Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_tones() {
        assert_eq!(Tone::of_state("ready"), Tone::Good);
        assert_eq!(Tone::of_state("building"), Tone::Busy);
        assert_eq!(Tone::of_state("uploading"), Tone::Busy);
        assert_eq!(Tone::of_state("in-use"), Tone::InUse);
        assert_eq!(Tone::of_state("failed"), Tone::Bad);
        assert_eq!(Tone::of_state("aborted"), Tone::Bad);
        assert_eq!(Tone::of_state("deleting"), Tone::Attention);
        assert_eq!(Tone::of_state("hold"), Tone::Attention);
        assert_eq!(Tone::of_state("whatever"), Tone::Plain);
    }
}
