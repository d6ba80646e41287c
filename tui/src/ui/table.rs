//! A table tab: the header (with the sort mark), the rows on screen only (so 10,000
//! records draw as fast as 10), a one-column gutter marking the marked rows (only
//! while there are any), the empty-table message; and the Problems tab, whose footer
//! shows the selected problem's whole summary and suggested action.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Paragraph, Row as TRow, Table, Wrap};
use ratatui::Frame;

use crate::app::App;
use crate::table::{header_text, layout, scroll_into_view, truncate, GAP};
use crate::theme::{self, Tone};
use crate::views::problems::tone;

/// Draws the current (table) tab into `area`.
pub fn render(app: &mut App, f: &mut Frame, area: Rect) {
    let height = usize::from(area.height.saturating_sub(1));
    app.page = height.max(1);
    let now = app.now;
    let loading = app.health.cache.loads == 0;
    let view = app.view;
    let tab = app.tab_mut();
    let (rows, st) = (&tab.rows, &mut tab.state);
    scroll_into_view(st, rows.visible.len(), height);
    let defs = view.columns();
    let gutter = u16::from(!st.marked.is_empty()) * 2;
    let cols = layout(
        defs,
        &rows.content_widths,
        area.width.saturating_sub(gutter),
        Some(st.sort),
    );
    let mut widths: Vec<Constraint> = cols.iter().map(|(_, w)| Constraint::Length(*w)).collect();
    let mut header: Vec<String> = cols
        .iter()
        .map(|(c, w)| {
            truncate(
                &header_text(&defs[*c], *c == st.sort, st.descending),
                usize::from(*w),
            )
        })
        .collect();
    if gutter > 0 {
        widths.insert(0, Constraint::Length(1));
        header.insert(0, String::new());
    }
    let end = (st.offset + height).min(rows.visible.len());
    let body: Vec<TRow> = rows.visible[st.offset.min(end)..end]
        .iter()
        .enumerate()
        .filter_map(|(n, &ri)| rows.row(ri).map(|row| (n, row)))
        .map(|(n, row)| {
            let mut cells: Vec<Text> = cols
                .iter()
                .map(|(c, w)| {
                    let cell = &row.cells[*c];
                    Text::styled(
                        truncate(&cell.display(now), usize::from(*w)),
                        cell.tone.style(),
                    )
                })
                .collect();
            let marked = st.marked.contains(&row.key);
            if gutter > 0 {
                let mark = if marked { "●" } else { "" };
                cells.insert(0, Text::styled(mark, Tone::Attention.style()));
            }
            let r = TRow::new(cells);
            if st.offset + n == st.selected {
                r.style(theme::selected())
            } else if marked {
                r.style(Style::new().add_modifier(Modifier::BOLD))
            } else {
                r
            }
        })
        .collect();
    let table = Table::new(body, widths)
        .header(TRow::new(header).style(theme::header()))
        .column_spacing(GAP);
    f.render_widget(table, area);
    if rows.visible.is_empty() && area.height > 2 {
        let text = if rows.is_empty() && loading {
            "loading from ZooKeeper…".to_string()
        } else if rows.is_empty() {
            format!("no {} in ZooKeeper", view.title().to_lowercase())
        } else {
            format!(
                "no row matches the filter “{}” (Esc clears it)",
                st.filter.text()
            )
        };
        empty_message(f, area, &text);
    }
}

fn empty_message(f: &mut Frame, area: Rect, text: &str) {
    let msg = Rect {
        y: area.y + area.height / 2,
        height: 1,
        ..area
    };
    f.render_widget(
        Paragraph::new(text.to_string())
            .style(Style::new().add_modifier(Modifier::DIM))
            .centered(),
        msg,
    );
}

/// The Problems tab: the table, and below it the selected problem in full (summary,
/// records, action), when the terminal has room for both.
pub fn render_problems(app: &mut App, f: &mut Frame, area: Rect) {
    let footer = if area.height >= 14 { 6 } else { 0 };
    let [table, detail] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(footer)]).areas(area);
    render(app, f, table);
    if app.problems.is_empty() && app.health.cache.loads > 0 && area.height > 2 {
        f.render_widget(ratatui::widgets::Clear, table);
        empty_message(f, table, "no problems found: everything looks healthy");
        return;
    }
    let Some(p) = app.selected_problem() else {
        return;
    };
    if footer == 0 {
        return;
    }
    let records: Vec<String> = p.records.iter().map(|r| r.describe()).collect();
    let lines = vec![
        Line::from(vec![
            Span::styled(
                p.severity.as_str().to_uppercase(),
                tone(p.severity).style().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(" {}", p.summary)),
        ]),
        Line::from(vec![
            Span::styled("records: ", Style::new().add_modifier(Modifier::DIM)),
            Span::raw(records.join(", ")),
        ]),
        Line::from(vec![
            Span::styled("action:  ", Style::new().add_modifier(Modifier::DIM)),
            Span::raw(p.action.clone()),
        ]),
    ];
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::TOP)
                .title(format!(" {} ", p.kind.as_str()))
                .border_style(tone(p.severity).style()),
        ),
        detail,
    );
}
