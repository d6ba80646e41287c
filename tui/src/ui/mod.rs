//! Drawing (pure: state in, frame out): the tab bar, the tab's title line (counts,
//! filter, marks, sort), the tab itself, the status line (connection, session, cache,
//! counts, last event), the bottom line (result message or key hints), and the
//! overlays.
//!
//! * this module: the frame's layout and its one-line bars.
//! * [`table`]: a table tab (only the rows on screen are built), the Problems footer.
//! * [`overview`]: the Overview tab.
//! * [`overlays`]: help, confirmation, hold comment, detail pane, console log.

mod overlays;
mod overview;
mod table;

use nodepool_shared::listing::format_relative;
use nodepool_shared::zk::{ConnectionState, SyncState};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::app::{App, Mode, MESSAGE_SECONDS};
use crate::table::text_width;
use crate::theme::{self, Tone};
use crate::views::ViewKind;

pub use overlays::wrap_line;

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
    match app.view {
        ViewKind::Overview => overview::render(app, f, body),
        ViewKind::Problems => table::render_problems(app, f, body),
        _ => table::render(app, f, body),
    }
    render_status(app, f, status);
    render_bottom(app, f, bottom);
    overlays::render(app, f, body);
}

/// `key desc  key desc …` with the keys highlighted.
pub(crate) fn hint_line(hints: &[(&str, &str)]) -> Line<'static> {
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

/// The label of a tab in the bar: full, short, or the number only.
fn tab_label(i: usize, v: ViewKind, level: usize, problems: usize) -> String {
    let title = match level {
        0 => v.title(),
        1 => v.short_title(),
        _ => "",
    };
    let badge = if v == ViewKind::Problems && problems > 0 {
        format!("({problems})")
    } else {
        String::new()
    };
    if title.is_empty() {
        format!(" {i}{badge} ")
    } else if badge.is_empty() {
        format!(" {i} {title} ")
    } else {
        format!(" {i} {title} {badge} ")
    }
}

fn render_tabs(app: &App, f: &mut Frame, area: Rect) {
    let tag = if app.read_only {
        " READ-ONLY "
    } else {
        " nodepool-tui "
    };
    let width = usize::from(area.width);
    let problems = app.problems.len();
    // The widest labels that fit: all titles full; the current one full and the others
    // short; all short; numbers only.
    let labels = [(0, 0), (0, 1), (1, 1), (2, 2)]
        .into_iter()
        .map(|(current, others)| {
            ViewKind::ALL
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let level = if *v == app.view { current } else { others };
                    tab_label(i, *v, level, problems)
                })
                .collect::<Vec<_>>()
        })
        .find(|labels| labels.iter().map(|l| text_width(l)).sum::<usize>() <= width)
        .unwrap_or_else(|| {
            ViewKind::ALL
                .iter()
                .enumerate()
                .map(|(i, v)| tab_label(i, *v, 2, problems))
                .collect()
        });
    let mut spans = Vec::new();
    let mut used = 0usize;
    for (label, v) in labels.into_iter().zip(ViewKind::ALL) {
        used += text_width(&label);
        let style = if v == app.view {
            theme::active_tab()
        } else if v == ViewKind::Problems
            && app
                .problems
                .iter()
                .any(|p| p.severity == nodepool_shared::diagnostics::Severity::Error)
        {
            Tone::Bad.style().add_modifier(Modifier::BOLD)
        } else {
            Style::new()
        };
        spans.push(Span::styled(label, style));
    }
    let room = width.saturating_sub(used);
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
    let mut left = vec![Span::styled(
        format!("{} ", app.view.title()),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    if app.view == ViewKind::Overview {
        left.push(Span::styled(
            overview::title_note(app),
            Style::new().add_modifier(Modifier::DIM),
        ));
        f.render_widget(Line::from(left), area);
        return;
    }
    let tab = app.tab();
    let (rows, st) = (&tab.rows, &tab.state);
    left.push(Span::raw(if st.filter.is_empty() {
        format!("{}", rows.len())
    } else {
        format!("{} of {}", rows.visible.len(), rows.len())
    }));
    if !st.marked.is_empty() {
        left.push(Span::styled(
            format!("  {} marked", st.marked.len()),
            Tone::Attention.style().add_modifier(Modifier::BOLD),
        ));
    }
    if app.mode == Mode::Filter || !st.filter.is_empty() {
        left.push(Span::raw("  filter: "));
        left.push(st.filter.span(
            app.mode == Mode::Filter,
            Tone::Busy.style().add_modifier(Modifier::BOLD),
        ));
    }
    let sort = format!(
        "sort: {} {}",
        app.view.columns().get(st.sort).map_or("", |c| c.title),
        if st.descending { "▼" } else { "▲" }
    );
    let left_w: usize = left.iter().map(|s| text_width(&s.content)).sum();
    let room = usize::from(area.width).saturating_sub(left_w);
    if room > text_width(&sort) + 1 {
        left.push(Span::raw(" ".repeat(room - text_width(&sort))));
        left.push(Span::styled(sort, Style::new().add_modifier(Modifier::DIM)));
    }
    f.render_widget(Line::from(left), area);
}

/// One status segment: its spans and how important it is (lower = kept longer).
struct Segment {
    spans: Vec<Span<'static>>,
    priority: u8,
}

fn segment(priority: u8, spans: Vec<Span<'static>>) -> Segment {
    Segment { spans, priority }
}

fn status_segments(app: &App) -> Vec<Segment> {
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
    if !s.corrupt.is_empty() {
        segs.push(segment(
            0,
            vec![Span::styled(
                format!("{} corrupt", s.corrupt.len()),
                bold(Tone::Bad),
            )],
        ));
    }
    if let Some(err) = &h.cache.last_error {
        if h.cache.state != SyncState::Synced {
            segs.push(segment(4, vec![Span::raw(format!("error: {err}"))]));
        }
    }
    segs
}

fn render_status(app: &App, f: &mut Frame, area: Rect) {
    let mut segs = status_segments(app);
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

/// The key hints of the current tab.
fn hints(app: &App) -> Vec<(&'static str, &'static str)> {
    let mut hints = vec![("?", "help")];
    match app.view {
        ViewKind::Overview => hints.push(("0-8", "views")),
        ViewKind::Problems => hints.extend([("/", "filter"), ("Enter", "jump to the record")]),
        _ => hints.extend([("/", "filter"), ("s/o", "sort"), ("Enter", "details")]),
    }
    if !app.read_only {
        match app.view {
            ViewKind::Nodes => hints.extend([("d", "delete"), ("h", "hold"), ("u", "unhold")]),
            ViewKind::Builds | ViewKind::Uploads => {
                hints.extend([("d", "delete"), ("p", "pause"), ("b", "build")])
            }
            ViewKind::Images => hints.extend([("p", "pause"), ("b", "build")]),
            _ => {}
        }
    }
    hints.push(("q", "quit"));
    hints
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
            let mut l = hint_line(&hints(app));
            l.spans.insert(0, Span::raw(" "));
            l
        }
    };
    f.render_widget(line, area);
}
