//! The overlays on top of a tab: the help (every key, from the key tables), the
//! confirmation of actions (one record or all marked ones, with the refusals), the hold
//! comment (the shared text input), the detail pane of a record, and the console log of
//! a node's server. The panes wrap long lines (nothing is cut) and scroll.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::hint_line;
use crate::actions::Action;
use crate::app::{describe_many, App, ConsoleText, Mode};
use crate::keys::{HelpLine, DIALOG_HELP, VIEW_HELP};
use crate::table::text_width;
use crate::theme::{self, Tone};
use crate::views;

/// Draws the overlay of the current mode (if any) over `body`.
pub fn render(app: &mut App, f: &mut Frame, body: Rect) {
    match app.mode.clone() {
        Mode::Normal | Mode::Filter => {}
        Mode::Help(scroll) => render_help(app, f, body, scroll),
        Mode::Detail(key, scroll) => render_detail(app, f, body, &key, scroll),
        Mode::Console(_) => render_console(app, f, body),
        Mode::Confirm(actions) => render_confirm(app, f, body, &actions),
        Mode::HoldComment(ids, text) => {
            let what = if ids.len() == 1 {
                format!("Hold node {}?", ids[0])
            } else {
                format!("Hold {} nodes?", ids.len())
            };
            let mut lines = vec![Line::styled(
                what,
                Style::new().add_modifier(Modifier::BOLD),
            )];
            lines.extend(list_lines(ids.iter().map(|i| i.to_string()).collect()));
            lines.extend(note_lines(&app.confirm_notes));
            lines.extend([
                Line::raw(""),
                Line::raw("Comment (why it is held; optional):"),
                Line::from(vec![text.field()]),
                Line::raw(""),
                hint_line(&[("Enter", "hold"), ("Esc", "cancel")]),
            ]);
            render_dialog(f, body, " Hold node ", lines);
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// The ids of several records (at most 6, then how many more); nothing for one.
fn list_lines(ids: Vec<String>) -> Vec<Line<'static>> {
    if ids.len() < 2 {
        return Vec::new();
    }
    let mut shown: Vec<String> = ids.iter().take(6).cloned().collect();
    if ids.len() > 6 {
        shown.push(format!("… and {} more", ids.len() - 6));
    }
    vec![Line::raw(shown.join(", "))]
}

/// The refusals of marked records that are left out.
fn note_lines(notes: &[String]) -> Vec<Line<'static>> {
    if notes.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![Line::styled(
        format!("Left out ({}):", notes.len()),
        Tone::Bad.style(),
    )];
    for n in notes.iter().take(4) {
        lines.push(Line::styled(format!("  {n}"), Tone::Bad.style()));
    }
    if notes.len() > 4 {
        lines.push(Line::styled(
            format!("  … and {} more", notes.len() - 4),
            Tone::Bad.style(),
        ));
    }
    lines
}

fn render_confirm(app: &App, f: &mut Frame, body: Rect, actions: &[Action]) {
    let Some(first) = actions.first() else {
        return;
    };
    let mut lines = vec![Line::styled(
        format!("{}?", capitalize(&describe_many(actions))),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    lines.extend(list_lines(actions.iter().map(Action::target).collect()));
    lines.extend(note_lines(&app.confirm_notes));
    lines.extend([
        Line::raw(""),
        Line::raw(first.consequence()),
        Line::raw(""),
        hint_line(&[("y/Enter", "confirm"), ("n/Esc", "cancel")]),
    ]);
    render_dialog(f, body, " Confirm ", lines);
}

/// A centred rectangle of at most `w`×`h` inside `area`.
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let [r] = Layout::horizontal([Constraint::Length(w.min(area.width))])
        .flex(Flex::Center)
        .areas(area);
    let [r] = Layout::vertical([Constraint::Length(h.min(area.height))])
        .flex(Flex::Center)
        .areas(r);
    r
}

fn render_dialog(f: &mut Frame, area: Rect, title: &str, lines: Vec<Line<'static>>) {
    let width = 64u16.min(area.width.saturating_sub(2)).max(20);
    let inner = usize::from(width.saturating_sub(4)).max(1);
    let height: usize = lines
        .iter()
        .map(|l| {
            let w: usize = l.spans.iter().map(|s| text_width(&s.content)).sum();
            w.div_ceil(inner).max(1)
        })
        .sum();
    let r = centered(area, width, height as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(title.to_string())
                .border_style(Tone::Busy.style())
                .padding(ratatui::widgets::Padding::horizontal(1)),
        ),
        r,
    );
}

fn help_lines() -> Vec<Line<'static>> {
    let all: Vec<&HelpLine> = VIEW_HELP.iter().chain(DIALOG_HELP.iter()).collect();
    let kw = all.iter().map(|(k, _)| text_width(k)).max().unwrap_or(0);
    all.into_iter()
        .map(|(k, d)| {
            if k.is_empty() {
                Line::styled(d.to_string(), Style::new().add_modifier(Modifier::BOLD))
            } else {
                Line::from(vec![
                    Span::styled(format!("  {k:kw$}  "), theme::key()),
                    Span::raw(d.to_string()),
                ])
            }
        })
        .collect()
}

fn render_help(app: &mut App, f: &mut Frame, area: Rect, scroll: usize) {
    let lines = help_lines();
    let width = 74u16.min(area.width);
    let r = centered(area, width, lines.len() as u16 + 2);
    app.pane_lines = lines.len();
    app.pane_height = usize::from(r.height.saturating_sub(2));
    let title = if app.pane_lines > app.pane_height {
        " Keys (j/k scroll · ? / Esc close) "
    } else {
        " Keys (? / Esc close) "
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).scroll((scroll as u16, 0)).block(
            Block::default()
                .borders(Borders::ALL)
                .title(title)
                .border_style(theme::key()),
        ),
        r,
    );
}

fn render_detail(
    app: &mut App,
    f: &mut Frame,
    area: Rect,
    key: &crate::data::RecordKey,
    scroll: usize,
) {
    let (title, lines) =
        views::detail(key, &app.snapshot, &app.config, app.now).unwrap_or_else(|| {
            (
                "Gone".to_string(),
                vec!["The record no longer exists in ZooKeeper.".to_string()],
            )
        });
    // Inside the borders; long values (host keys, comments) are wrapped, never cut.
    let width = usize::from(area.width.saturating_sub(2)).max(1);
    let mut text: Vec<Line> = Vec::new();
    for l in lines {
        let plain = l.starts_with(' ') || l.starts_with('{') || l.starts_with('}');
        for part in wrap_line(&l, width) {
            text.push(if plain {
                Line::raw(part)
            } else {
                Line::styled(part, Style::new().add_modifier(Modifier::DIM))
            });
        }
    }
    let hint = if matches!(key, crate::data::RecordKey::Node(_)) {
        " j/k PgUp/PgDn scroll · c console log · Esc close "
    } else {
        " j/k PgUp/PgDn Home/End scroll · Esc close "
    };
    let scroll = pane(app, f, area, &title, text, scroll, hint);
    if let Mode::Detail(_, s) = &mut app.mode {
        *s = scroll;
    }
}

/// Draws a scrolling pane over `area`; returns the scroll position, clamped to the text.
fn pane(
    app: &mut App,
    f: &mut Frame,
    area: Rect,
    title: &str,
    text: Vec<Line<'static>>,
    scroll: usize,
    hint: &str,
) -> usize {
    app.pane_lines = text.len();
    app.pane_height = usize::from(area.height.saturating_sub(2));
    let scroll = scroll.min(text.len().saturating_sub(app.pane_height));
    let shown_end = (scroll + app.pane_height).min(text.len());
    let position = if text.len() > app.pane_height {
        format!(" lines {}–{shown_end} of {} ", scroll + 1, text.len())
    } else {
        format!(" all {} lines ", text.len())
    };
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(text)
            .scroll((scroll.min(usize::from(u16::MAX)) as u16, 0))
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" {title} "))
                    .title_bottom(hint.to_string())
                    .title_bottom(Line::from(position).right_aligned())
                    .border_style(theme::key()),
            ),
        area,
    );
    scroll
}

/// The console log of a node's server: fetching, the log (starting at its end), or why
/// there is none.
fn render_console(app: &mut App, f: &mut Frame, area: Rect) {
    let Mode::Console(c) = app.mode.clone() else {
        return;
    };
    let width = usize::from(area.width.saturating_sub(2)).max(1);
    let server = app
        .snapshot
        .node(&c.node)
        .and_then(|n| n.node.external_id().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let mut text: Vec<Line<'static>> = Vec::new();
    match &c.text {
        ConsoleText::Loading => text.push(Line::styled(
            format!("fetching the console log of server {server} from its cloud…"),
            Tone::Busy.style(),
        )),
        ConsoleText::Unavailable(why) => {
            for part in wrap_words(why, width) {
                text.push(Line::styled(part, Tone::Attention.style()));
            }
        }
        ConsoleText::Lines(lines) if lines.is_empty() => text.push(Line::styled(
            "(the console log is empty)",
            Style::new().add_modifier(Modifier::DIM),
        )),
        ConsoleText::Lines(lines) => {
            for l in lines {
                text.extend(wrap_line(l, width).into_iter().map(Line::raw));
            }
        }
    }
    let title = format!("Console log of node {} (server {server})", c.node);
    let scroll = pane(
        app,
        f,
        area,
        &title,
        text,
        c.scroll,
        " j/k PgUp/PgDn Home/End scroll · Esc back to the node ",
    );
    if let Mode::Console(c) = &mut app.mode {
        c.scroll = scroll;
    }
}

/// Splits prose into lines of at most `width` columns at spaces (a word longer than the
/// width is cut).
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let needed = text_width(&line) + usize::from(!line.is_empty()) + text_width(word);
        if !line.is_empty() && needed > width {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push(line);
    out.into_iter().flat_map(|l| wrap_line(&l, width)).collect()
}

/// Splits `line` into pieces of at most `width` columns, keeping every character:
/// breaks after a space when one is in the second half of the piece, else mid-word;
/// continuation pieces are indented two more than the line (JSON nesting stays
/// readable) or, for the `key:     value` head lines, to the value column.
pub fn wrap_line(line: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= width || width == 0 {
        return vec![line.to_string()];
    }
    let lead = chars.iter().take_while(|c| **c == ' ').count();
    let indent = if lead == 0 {
        // "path:     /nodepool/…": the value column.
        match chars.windows(3).position(|w| w == [':', ' ', ' ']) {
            Some(i) => i + 1 + chars[i + 1..].iter().take_while(|c| **c == ' ').count(),
            None => 2,
        }
    } else {
        lead + 2
    };
    let indent = indent.min(width / 2);
    let mut out = Vec::new();
    let mut at = 0;
    let mut first = true;
    while at < chars.len() {
        let room = if first { width } else { width - indent };
        let mut end = (at + room).min(chars.len());
        if end < chars.len() {
            if let Some(sp) = chars[at..end].iter().rposition(|c| *c == ' ') {
                if sp + 1 > room / 2 {
                    end = at + sp + 1;
                }
            }
        }
        let piece: String = chars[at..end].iter().collect();
        out.push(if first {
            piece
        } else {
            format!("{}{piece}", " ".repeat(indent))
        });
        first = false;
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::wrap_line;

    #[test]
    fn wrap_keeps_every_character_within_the_width() {
        let line = format!("  \"host_keys\": \"ssh-ed25519 {}\",", "A".repeat(150));
        let parts = wrap_line(&line, 40);
        assert!(parts.len() > 3, "{parts:?}");
        assert!(parts.iter().all(|p| p.chars().count() <= 40), "{parts:?}");
        let joined: String = parts
            .iter()
            .enumerate()
            .map(|(i, p)| if i == 0 { p.as_str() } else { &p[4..] })
            .collect();
        assert_eq!(joined, line);
        assert_eq!(wrap_line("short", 40), vec!["short".to_string()]);
    }

    #[test]
    fn head_lines_continue_at_the_value_column() {
        let parts = wrap_line(&format!("lock:     held ({})", "x".repeat(30)), 20);
        assert!(parts[1].starts_with("          "), "{parts:?}");
        assert!(parts.iter().all(|p| p.chars().count() <= 20), "{parts:?}");
    }
}
