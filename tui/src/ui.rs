//! Drawing: tab bar, table title (counts, filter, sort), the table itself (only the rows
//! on screen are built, so 10,000 records draw as fast as 10), the status line
//! (connection, session, cache, counts, last event), the bottom line (result message or
//! key hints), and the overlays (help, confirmation, hold comment, detail pane).

use nodepool_shared::listing::format_relative;
use nodepool_shared::zk::{ConnectionState, SyncState};
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row as TRow, Table, Wrap};
use ratatui::Frame;

use crate::app::{App, Mode, MESSAGE_SECONDS};
use crate::keys::{HelpLine, DIALOG_HELP, VIEW_HELP};
use crate::table::{layout, scroll_into_view, text_width, truncate, GAP};
use crate::theme::{self, Tone};
use crate::views::{self, ViewKind};

/// Draws the app into the frame.
pub fn render(app: &mut App, f: &mut Frame) {
    let area = f.area();
    let [tabs, title, body, status, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_tabs(app, f, tabs);
    render_title(app, f, title);
    render_table(app, f, body);
    render_status(app, f, status);
    render_bottom(app, f, bottom);
    match app.mode.clone() {
        Mode::Normal | Mode::Filter => {}
        Mode::Help(scroll) => render_help(app, f, body, scroll),
        Mode::Detail(key, scroll) => render_detail(app, f, body, &key, scroll),
        Mode::Confirm(action) => {
            let lines = vec![
                Line::styled(
                    format!("{}?", capitalize(&action.describe())),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Line::raw(""),
                Line::raw(action.consequence()),
                Line::raw(""),
                hint_line(&[("y/Enter", "confirm"), ("n/Esc", "cancel")]),
            ];
            render_dialog(f, body, " Confirm ", lines);
        }
        Mode::HoldComment(id, text) => {
            let lines = vec![
                Line::styled(
                    format!("Hold node {id}?"),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Line::raw(""),
                Line::raw("Comment (why it is held; optional):"),
                Line::from(vec![Span::styled(
                    format!("{text}█"),
                    Style::new().add_modifier(Modifier::UNDERLINED),
                )]),
                Line::raw(""),
                hint_line(&[("Enter", "hold"), ("Esc", "cancel")]),
            ];
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

fn hint_line(hints: &[(&str, &str)]) -> Line<'static> {
    let mut spans = Vec::new();
    for (i, (k, d)) in hints.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw("  "));
        }
        spans.push(Span::styled(k.to_string(), theme::key()));
        spans.push(Span::raw(format!(" {d}")));
    }
    Line::from(spans)
}

fn render_tabs(app: &App, f: &mut Frame, area: Rect) {
    let mut spans = Vec::new();
    let mut used = 0usize;
    for (i, v) in ViewKind::ALL.iter().enumerate() {
        let label = format!(" {} {} ", i + 1, v.title());
        used += label.len();
        let style = if *v == app.view {
            theme::active_tab()
        } else {
            Style::new()
        };
        spans.push(Span::styled(label, style));
    }
    let tag = if app.read_only {
        " READ-ONLY "
    } else {
        " nodepool-tui "
    };
    let room = usize::from(area.width).saturating_sub(used);
    if room >= tag.len() {
        spans.push(Span::raw(" ".repeat(room - tag.len())));
        let style = if app.read_only {
            Tone::Attention.style().add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        };
        spans.push(Span::styled(tag, style));
    }
    f.render_widget(Line::from(spans), area);
}

fn render_title(app: &App, f: &mut Frame, area: Rect) {
    let i = app.view.index();
    let rows = &app.rows[i];
    let st = &app.states[i];
    let cols = app.view.columns();
    let mut left = vec![Span::styled(
        format!("{} ", app.view.title()),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    left.push(Span::raw(if st.filter.is_empty() {
        format!("{}", rows.rows.len())
    } else {
        format!("{} of {}", rows.visible.len(), rows.rows.len())
    }));
    if app.mode == Mode::Filter || !st.filter.is_empty() {
        left.push(Span::raw("  filter: "));
        let cursor = if app.mode == Mode::Filter { "█" } else { "" };
        left.push(Span::styled(
            format!("{}{cursor}", st.filter),
            Tone::Busy.style().add_modifier(Modifier::BOLD),
        ));
    }
    let sort = format!(
        "sort: {} {}",
        cols.get(st.sort).map_or("", |c| c.title),
        if st.descending { "▼" } else { "▲" }
    );
    let left_w: usize = left.iter().map(|s| text_width(&s.content)).sum();
    let room = usize::from(area.width).saturating_sub(left_w);
    if room > sort.chars().count() + 1 {
        left.push(Span::raw(" ".repeat(room - sort.chars().count())));
        left.push(Span::styled(sort, Style::new().add_modifier(Modifier::DIM)));
    }
    f.render_widget(Line::from(left), area);
}

fn render_table(app: &mut App, f: &mut Frame, area: Rect) {
    let i = app.view.index();
    let height = usize::from(area.height.saturating_sub(1));
    app.page = height.max(1);
    let rows = &app.rows[i];
    let st = &mut app.states[i];
    scroll_into_view(st, rows.visible.len(), height);
    let defs = app.view.columns();
    let cols = layout(defs, &rows.content_widths, area.width);
    let widths: Vec<Constraint> = cols.iter().map(|(_, w)| Constraint::Length(*w)).collect();
    let header = TRow::new(cols.iter().map(|(c, w)| {
        let mut t = truncate(defs[*c].title, usize::from(*w));
        if *c == st.sort {
            t = truncate(
                &format!(
                    "{}{}",
                    defs[*c].title,
                    if st.descending { "▼" } else { "▲" }
                ),
                usize::from(*w),
            );
        }
        t
    }))
    .style(theme::header());
    let now = app.now;
    let end = (st.offset + height).min(rows.visible.len());
    let body: Vec<TRow> = rows.visible[st.offset.min(end)..end]
        .iter()
        .enumerate()
        .map(|(n, &ri)| {
            let row = &rows.rows[ri];
            let cells = cols.iter().map(|(c, w)| {
                let cell = &row.cells[*c];
                ratatui::text::Text::styled(
                    truncate(&cell.display(now), usize::from(*w)),
                    cell.tone.style(),
                )
            });
            let r = TRow::new(cells);
            if st.offset + n == st.selected {
                r.style(theme::selected())
            } else {
                r
            }
        })
        .collect();
    let table = Table::new(body, widths).header(header).column_spacing(GAP);
    f.render_widget(table, area);
    if rows.visible.is_empty() && area.height > 2 {
        let loading = app.health.cache.loads == 0;
        let text = if rows.rows.is_empty() && loading {
            "loading from ZooKeeper…".to_string()
        } else if rows.rows.is_empty() {
            format!("no {} in ZooKeeper", app.view.title().to_lowercase())
        } else {
            format!("no row matches the filter “{}” (Esc clears it)", st.filter)
        };
        let msg = Rect {
            y: area.y + area.height / 2,
            height: 1,
            ..area
        };
        f.render_widget(
            Paragraph::new(text)
                .style(Style::new().add_modifier(Modifier::DIM))
                .centered(),
            msg,
        );
    }
}

/// One status segment: its spans and how important it is (lower = kept longer).
struct Segment {
    spans: Vec<Span<'static>>,
    priority: u8,
}

fn segment(priority: u8, spans: Vec<Span<'static>>) -> Segment {
    Segment { spans, priority }
}

fn render_status(app: &App, f: &mut Frame, area: Rect) {
    let h = &app.health;
    let (conn, conn_tone) = match h.connection.state {
        ConnectionState::Connected if h.connection.generation > 1 || app.recovered => {
            ("reconnected".to_string(), Tone::Good)
        }
        ConnectionState::Connected => ("connected".to_string(), Tone::Good),
        ConnectionState::Suspended if h.connection.generation == 0 => {
            ("connecting".to_string(), Tone::Busy)
        }
        ConnectionState::Suspended => ("suspended".to_string(), Tone::Busy),
        ConnectionState::Lost => ("session lost".to_string(), Tone::Bad),
        ConnectionState::Closed => ("closed".to_string(), Tone::Bad),
    };
    let (cache, cache_tone) = match h.cache.state {
        SyncState::Synced => ("synced", Tone::Good),
        SyncState::Loading => ("loading", Tone::Busy),
        SyncState::Stale => ("stale", Tone::Bad),
        SyncState::Stopped => ("stopped", Tone::Bad),
    };
    let s = &app.snapshot;
    let bold = |t: Tone| t.style().add_modifier(Modifier::BOLD);
    let mut segs = Vec::new();
    if app.read_only {
        segs.push(segment(
            0,
            vec![Span::styled("READ-ONLY", bold(Tone::Attention))],
        ));
    }
    segs.extend([
        segment(
            0,
            vec![
                Span::styled(format!("● {conn}"), bold(conn_tone)),
                Span::raw(format!(" s#{}", h.connection.generation)),
            ],
        ),
        segment(
            0,
            vec![
                Span::raw("cache "),
                Span::styled(cache, bold(cache_tone)),
                Span::raw(format!(" #{}", h.changes)),
            ],
        ),
        segment(3, vec![Span::raw(format!("zk {}", h.hosts))]),
        segment(
            1,
            vec![Span::raw(format!(
                "{}N {}R {}B {}U",
                s.nodes.len(),
                s.requests.len(),
                s.builds.len(),
                s.uploads.len()
            ))],
        ),
    ]);
    if let Some((text, at)) = &app.last_event {
        segs.push(segment(
            2,
            vec![Span::raw(format!(
                "last: {text} {}",
                format_relative(app.now - at)
            ))],
        ));
    }
    if s.corrupt > 0 {
        segs.push(segment(
            0,
            vec![Span::styled(
                format!("{} corrupt", s.corrupt),
                bold(Tone::Bad),
            )],
        ));
    }
    if let Some(err) = &h.cache.last_error {
        if h.cache.state != SyncState::Synced {
            segs.push(segment(4, vec![Span::raw(format!("error: {err}"))]));
        }
    }
    let width = usize::from(area.width);
    let seg_width = |s: &Segment| {
        s.spans
            .iter()
            .map(|x| text_width(&x.content))
            .sum::<usize>()
    };
    let total = |segs: &[Segment]| -> usize {
        segs.iter().map(seg_width).sum::<usize>() + 3 * segs.len().saturating_sub(1) + 1
    };
    while segs.len() > 1 && total(&segs) > width {
        let Some(p) = segs
            .iter()
            .enumerate()
            .max_by_key(|(i, s)| (s.priority, *i))
            .map(|(i, _)| i)
        else {
            break;
        };
        segs.remove(p);
    }
    let mut spans = vec![Span::raw(" ")];
    for (i, s) in segs.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" │ "));
        }
        spans.extend(s.spans);
    }
    f.render_widget(
        Paragraph::new(Line::from(spans)).style(theme::status_line()),
        area,
    );
}

fn render_bottom(app: &App, f: &mut Frame, area: Rect) {
    let line = match (&app.mode, &app.message) {
        (Mode::Filter, _) => {
            let mut l = hint_line(&[
                ("type", "to filter"),
                ("Enter", "keep"),
                ("Esc", "clear"),
                ("↑↓", "move"),
            ]);
            l.spans.insert(0, Span::raw(" "));
            l
        }
        (_, Some(m)) if app.now - m.at <= MESSAGE_SECONDS || !app.running.is_empty() => {
            Line::styled(
                format!(" {}", m.text),
                m.tone.style().add_modifier(Modifier::BOLD),
            )
        }
        _ => {
            let mut hints = vec![
                ("?", "help"),
                ("/", "filter"),
                ("s/o", "sort"),
                ("Enter", "details"),
            ];
            if !app.read_only {
                match app.view {
                    ViewKind::Nodes => {
                        hints.extend([("d", "delete"), ("h", "hold"), ("u", "unhold")])
                    }
                    ViewKind::Builds => {
                        hints.extend([("d", "delete"), ("p", "pause"), ("b", "build")])
                    }
                    ViewKind::Uploads => {
                        hints.extend([("d", "delete"), ("p", "pause"), ("b", "build")])
                    }
                    ViewKind::Images => hints.extend([("p", "pause"), ("b", "build")]),
                    _ => {}
                }
            }
            hints.push(("q", "quit"));
            let mut l = hint_line(&hints);
            l.spans.insert(0, Span::raw(" "));
            l
        }
    };
    f.render_widget(line, area);
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
    let width = 70u16.min(area.width);
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
        Paragraph::new(text).scroll((scroll as u16, 0)).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" {title} "))
                .title_bottom(" j/k PgUp/PgDn Home/End scroll · Esc close ")
                .title_bottom(Line::from(position).right_aligned())
                .border_style(theme::key()),
        ),
        area,
    );
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
