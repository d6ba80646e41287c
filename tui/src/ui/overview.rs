//! The Overview tab: four sections — providers (a gauge of their nodes by state against
//! `max-servers`, the cloud quota, pool workers, launch failures of the last hour),
//! labels (ready against `min-ready`, waiting requests, the oldest, the trend), the last
//! 30 minutes as sparklines, and images (newest ready build against `rebuild-age`,
//! failed builds in a row, paused). One column up to 149 columns, two from 150. When
//! the height is short, lists are cut (with "… N more") and the sparklines reduced
//! before a section goes; every glyph differs per state, so it reads without colour.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use nodepool_shared::diagnostics::format_duration;
use nodepool_shared::listing::format_relative;

use crate::app::App;
use crate::data::Quota;
use crate::history::{Sample, BUCKETS, BUCKET_SECONDS, SERIES};
use crate::table::{text_width, truncate};
use crate::theme::Tone;
use crate::views::overview::{ImageLine, LabelLine, OverviewModel, ProviderLine, Trend};

/// From this width on, two columns.
pub const TWO_COLUMNS: u16 = 150;

/// Gauge glyphs: in-use, ready, building, deleting, other, free.
const GLYPHS: [(char, Tone); 6] = [
    ('█', Tone::InUse),
    ('▓', Tone::Good),
    ('▒', Tone::Busy),
    ('░', Tone::Attention),
    ('▪', Tone::Dim),
    ('·', Tone::Dim),
];

/// The note after the tab's title.
pub fn title_note(app: &App) -> String {
    let m = &app.overview;
    let (e, w, i) = m.problems;
    let problems = match (e, w, i) {
        (0, 0, 0) => "no problems".to_string(),
        _ => {
            let mut parts = Vec::new();
            if e > 0 {
                parts.push(format!("{e} error{}", if e == 1 { "" } else { "s" }));
            }
            if w > 0 {
                parts.push(format!("{w} warning{}", if w == 1 { "" } else { "s" }));
            }
            if i > 0 {
                parts.push(format!("{i} info"));
            }
            format!("{} (view 8)", parts.join(", "))
        }
    };
    let config = if m.config_loaded {
        ""
    } else {
        " · no config (-c): ZooKeeper only, no max-servers/min-ready/rebuild-age"
    };
    format!(
        "{} nodes · {} waiting · {problems}{config}",
        m.nodes, m.waiting
    )
}

/// A section: its title line, its lines, how many it may be cut to, and whether a cut
/// says how many lines are left out.
struct Section {
    title: Line<'static>,
    lines: Vec<Line<'static>>,
    min: usize,
    more_note: bool,
}

impl Section {
    fn height(&self) -> usize {
        1 + self.lines.len()
    }
}

/// Draws the Overview into `area`.
pub fn render(app: &mut App, f: &mut Frame, area: Rect) {
    let m = &app.overview;
    if area.height == 0 {
        return;
    }
    if area.width >= TWO_COLUMNS {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                .spacing(2)
                .areas(area);
        let l = vec![providers(m, left.width), labels(m, app.now, left.width)];
        let r = vec![trends(app, right.width), images(m, app.now, right.width)];
        draw_sections(f, left, l);
        draw_sections(f, right, r);
    } else {
        let sections = vec![
            providers(m, area.width),
            labels(m, app.now, area.width),
            trends(app, area.width),
            images(m, app.now, area.width),
        ];
        draw_sections(f, area, sections);
    }
}

/// Fits the sections into `area` (cutting the longest list first, then dropping the
/// last sections) and draws them.
fn draw_sections(f: &mut Frame, area: Rect, mut sections: Vec<Section>) {
    let height = usize::from(area.height);
    while sections.iter().map(Section::height).sum::<usize>() > height {
        let cut = sections
            .iter_mut()
            .filter(|s| s.lines.len() > s.min)
            .max_by_key(|s| s.lines.len());
        match cut {
            Some(s) => cut_one(s),
            None => {
                sections.pop();
            }
        }
    }
    let mut lines = Vec::new();
    for s in sections {
        lines.push(s.title);
        lines.extend(s.lines);
    }
    let width = usize::from(area.width);
    let lines: Vec<Line> = lines.into_iter().map(|l| fit(l, width)).collect();
    f.render_widget(Paragraph::new(lines), area);
}

/// Removes one line of a section; a list replaces its last lines by how many it
/// left out.
fn cut_one(s: &mut Section) {
    if !s.more_note {
        s.lines.pop();
        return;
    }
    let noted = s
        .lines
        .last()
        .and_then(|l| l.spans.first())
        .map(|sp| sp.content.to_string())
        .filter(|c| c.starts_with("  … "))
        .map(|c| sp_count(&c));
    s.lines.pop();
    s.lines.pop();
    let n = noted.map_or(2, |n| n + 1);
    s.lines.push(Line::styled(
        format!("  … {n} more"),
        Style::new().add_modifier(Modifier::DIM),
    ));
}

fn sp_count(text: &str) -> usize {
    text.trim_start_matches("  … ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Cuts a line to `width` columns.
fn fit(line: Line<'static>, width: usize) -> Line<'static> {
    let mut used = 0;
    let mut spans = Vec::new();
    for s in line.spans {
        let w = text_width(&s.content);
        if used + w <= width {
            used += w;
            spans.push(s);
        } else {
            let room = width.saturating_sub(used);
            if room > 0 {
                spans.push(Span::styled(truncate(&s.content, room), s.style));
            }
            break;
        }
    }
    Line::from(spans)
}

fn title(text: &str, note: String) -> Line<'static> {
    Line::from(vec![
        Span::styled(text.to_string(), Style::new().add_modifier(Modifier::BOLD)),
        Span::styled(note, Style::new().add_modifier(Modifier::DIM)),
    ])
}

fn dim(text: impl Into<String>) -> Span<'static> {
    Span::styled(text.into(), Style::new().add_modifier(Modifier::DIM))
}

fn name_width<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.map(text_width).max().unwrap_or(0).clamp(6, 16)
}

// ------------------------------------------------------------------ providers

/// The capacity a provider's gauge spans: `max-servers`, else the quota, else the most
/// nodes any provider has.
fn capacity(p: &ProviderLine, fallback: u32) -> u32 {
    let quota = match p.quota {
        Some(Quota::Instances(n)) => Some(n.min(u64::from(u32::MAX)) as u32),
        _ => None,
    };
    p.max_servers
        .map(|m| m.clamp(0, i64::from(u32::MAX)) as u32)
        .or(quota)
        .unwrap_or(fallback)
        .max(p.nodes.total())
        .max(1)
}

/// `width` cells: in-use, ready, building, deleting, other, then free.
fn gauge(p: &ProviderLine, cap: u32, width: usize) -> Vec<Span<'static>> {
    let n = &p.nodes;
    let counts = [n.in_use, n.ready, n.building, n.deleting, n.other];
    let mut cells = [0usize; 5];
    let mut used = 0;
    for (i, c) in counts.iter().enumerate() {
        if *c == 0 {
            continue;
        }
        let w = ((f64::from(*c) * width as f64 / f64::from(cap)).round() as usize).max(1);
        cells[i] = w.min(width - used.min(width));
        used += cells[i];
    }
    let mut spans = Vec::new();
    for (i, w) in cells.iter().enumerate() {
        if *w > 0 {
            let (g, tone) = GLYPHS[i];
            spans.push(Span::styled(g.to_string().repeat(*w), tone.style()));
        }
    }
    let (g, tone) = GLYPHS[5];
    spans.push(Span::styled(
        g.to_string().repeat(width.saturating_sub(used)),
        tone.style(),
    ));
    spans
}

fn provider_line(p: &ProviderLine, nw: usize, gw: usize, fallback: u32) -> Line<'static> {
    let cap = capacity(p, fallback);
    let mut spans = vec![Span::raw(format!("  {:nw$} ", truncate(&p.name, nw)))];
    spans.extend(gauge(p, cap, gw));
    let total = p.nodes.total();
    let max = match p.max_servers {
        Some(m) => format!("/{m}"),
        None => String::new(),
    };
    let full = p.max_servers.is_some_and(|m| i64::from(total) >= m);
    spans.push(Span::styled(
        format!(" {total:>3}{max:<4}"),
        if full {
            Tone::Busy.style()
        } else {
            Style::new()
        },
    ));
    match &p.quota {
        Some(Quota::Instances(q)) => spans.push(Span::raw(format!(" quota {q}"))),
        Some(Quota::Unlimited) => spans.push(Span::raw(" quota ∞")),
        Some(Quota::Unknown(_)) => spans.push(dim(" quota ?")),
        None => {}
    }
    let pools = match p.pools_configured {
        Some(c) => format!(" pools {}/{c}", p.pools_registered),
        None => format!(" pools {}", p.pools_registered),
    };
    let missing =
        p.pools_registered == 0 || p.pools_configured.is_some_and(|c| p.pools_registered < c);
    spans.push(Span::styled(
        pools,
        if missing {
            Tone::Bad.style()
        } else {
            Style::new()
        },
    ));
    if p.pools_paused > 0 {
        spans.push(Span::styled(
            format!(" ({} paused)", p.pools_paused),
            Tone::Attention.style().add_modifier(Modifier::BOLD),
        ));
    }
    let failed: usize = p.failures.values().sum();
    if failed > 0 {
        let why: Vec<String> = p.failures.iter().map(|(r, n)| format!("{n} {r}")).collect();
        spans.push(Span::styled(
            format!(" {failed} failed/1h ({})", why.join(", ")),
            Tone::Bad.style(),
        ));
    }
    Line::from(spans)
}

fn providers(m: &OverviewModel, width: u16) -> Section {
    let nw = name_width(m.providers.iter().map(|p| p.name.as_str()));
    let gw = (usize::from(width) / 5).clamp(10, 40);
    let fallback = m
        .providers
        .iter()
        .map(|p| p.nodes.total())
        .max()
        .unwrap_or(1);
    let mut lines: Vec<Line> = m
        .providers
        .iter()
        .map(|p| provider_line(p, nw, gw, fallback))
        .collect();
    if lines.is_empty() {
        lines.push(Line::from(dim(
            "  no providers: no config, no nodes, no pool workers",
        )));
    }
    let legend =
        "  █ in-use ▓ ready ▒ building ░ deleting ▪ other · free  n/max-servers".to_string();
    Section {
        title: title("Providers", legend),
        lines,
        min: 1,
        more_note: true,
    }
}

// ------------------------------------------------------------------ labels

fn label_line(l: &LabelLine, nw: usize, now: f64) -> Line<'static> {
    let mut spans = vec![Span::raw(format!("  {:nw$} ", truncate(&l.name, nw)))];
    let (ready, tone) = match l.min_ready {
        Some(min) if (l.ready as u64) < u64::from(min) => {
            (format!("ready {}/{min} min", l.ready), Tone::Bad)
        }
        Some(min) => (format!("ready {}/{min} min", l.ready), Tone::Good),
        None => (format!("ready {}", l.ready), Tone::Plain),
    };
    spans.push(Span::styled(format!("{ready:<16}"), tone.style()));
    if l.waiting == 0 {
        spans.push(dim("no request waiting"));
    } else {
        let oldest = l
            .oldest
            .map(|t| format!(", oldest {}", format_duration(now - t)))
            .unwrap_or_default();
        spans.push(Span::styled(
            format!("{} waiting{oldest}", l.waiting),
            Tone::Busy.style(),
        ));
    }
    let (arrow, tone) = match l.trend {
        Some(Trend::Up) => (" ↑", Tone::Bad),
        Some(Trend::Down) => (" ↓", Tone::Good),
        Some(Trend::Flat) => (" →", Tone::Dim),
        None => ("", Tone::Plain),
    };
    spans.push(Span::styled(arrow, tone.style()));
    Line::from(spans)
}

fn labels(m: &OverviewModel, now: f64, _width: u16) -> Section {
    let nw = name_width(m.labels.iter().map(|l| l.name.as_str()));
    let mut lines: Vec<Line> = m.labels.iter().map(|l| label_line(l, nw, now)).collect();
    if lines.is_empty() {
        lines.push(Line::from(dim("  no labels")));
    }
    Section {
        title: title(
            "Labels",
            "  ready/min-ready, waiting requests, 5-minute trend".into(),
        ),
        lines,
        min: 1,
        more_note: true,
    }
}

// ------------------------------------------------------------------ trends

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One value per column: the samples grouped to fit `width` (the maximum of each
/// group), right-aligned; `None` for columns before the first sample.
fn columns(values: &[u32], width: usize) -> Vec<Option<u32>> {
    if width == 0 {
        return Vec::new();
    }
    let per = values.len().div_ceil(width).max(1);
    let grouped: Vec<u32> = values
        .chunks(per)
        .map(|c| c.iter().copied().max().unwrap_or(0))
        .collect();
    let mut out = vec![None; width.saturating_sub(grouped.len())];
    out.extend(grouped.into_iter().map(Some));
    out
}

fn sparkline(values: &[u32], width: usize, tone: Tone) -> Span<'static> {
    let cols = columns(values, width);
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let text: String = cols
        .into_iter()
        .map(|v| match v {
            None => ' ',
            Some(0) => '▁',
            Some(v) => {
                let i = (v as usize * (BARS.len() - 1)).div_ceil(max as usize);
                BARS[i.min(BARS.len() - 1)]
            }
        })
        .collect();
    Span::styled(text, tone.style())
}

fn trends(app: &App, width: u16) -> Section {
    let samples: Vec<&Sample> = app.history.samples().iter().collect();
    let sw = usize::from(width).saturating_sub(24).clamp(10, BUCKETS);
    let since = format_relative(app.now - app.history.started);
    let mut series: Vec<(String, Vec<u32>, Tone)> = vec![(
        "waiting".into(),
        samples.iter().map(|s| s.waiting).collect(),
        Tone::Busy,
    )];
    let tones = [Tone::Good, Tone::InUse, Tone::Busy, Tone::Attention];
    let order = [1, 0, 2, 3];
    for i in order {
        series.push((
            SERIES[i].to_string(),
            samples.iter().map(|s| s.nodes[i]).collect(),
            tones[i],
        ));
    }
    let lines = series
        .into_iter()
        .map(|(name, values, tone)| {
            let now = values.last().copied().unwrap_or(0);
            let max = values.iter().copied().max().unwrap_or(0);
            Line::from(vec![
                Span::raw(format!("  {name:<9}")),
                sparkline(&values, sw, tone),
                Span::raw(format!(" {now:>4}")),
                dim(format!(" max {max}")),
            ])
        })
        .collect();
    let minutes = (BUCKETS as f64 * BUCKET_SECONDS / 60.0) as u32;
    Section {
        title: title(
            &format!("Last {minutes} min"),
            format!("  nodes by state, waiting requests (console started {since})"),
        ),
        lines,
        min: 1,
        more_note: false,
    }
}

// ------------------------------------------------------------------ images

fn image_line(i: &ImageLine, nw: usize, now: f64) -> Line<'static> {
    let mut spans = vec![Span::raw(format!("  {:nw$} ", truncate(&i.name, nw)))];
    match i.newest_ready {
        None => spans.push(Span::styled(
            format!("{} no ready build", "·".repeat(10)),
            Tone::Bad.style(),
        )),
        Some(t) => {
            let age = now - t;
            let (bar, tone) = match i.rebuild_age {
                Some(r) if r > 0.0 => {
                    let full = ((age / r).clamp(0.0, 1.0) * 10.0).ceil() as usize;
                    let tone = if age > r { Tone::Bad } else { Tone::Good };
                    (
                        format!("{}{}", "█".repeat(full), "·".repeat(10 - full)),
                        tone,
                    )
                }
                _ => (" ".repeat(10), Tone::Plain),
            };
            spans.push(Span::styled(bar, tone.style()));
            let against = i
                .rebuild_age
                .map(|r| format!(" of rebuild-age {}", format_duration(r)))
                .unwrap_or_default();
            spans.push(Span::raw(format!(
                " newest {}{against}",
                format_duration(age)
            )));
        }
    }
    if i.failing > 0 {
        spans.push(Span::styled(
            format!(" {} failed in a row", i.failing),
            Tone::Bad.style().add_modifier(Modifier::BOLD),
        ));
    }
    if i.building {
        spans.push(Span::styled(" building", Tone::Busy.style()));
    }
    if i.paused {
        spans.push(Span::styled(
            " paused",
            Tone::Attention.style().add_modifier(Modifier::BOLD),
        ));
    }
    Line::from(spans)
}

fn images(m: &OverviewModel, now: f64, _width: u16) -> Section {
    let nw = name_width(m.images.iter().map(|i| i.name.as_str()));
    let mut lines: Vec<Line> = m.images.iter().map(|i| image_line(i, nw, now)).collect();
    if lines.is_empty() {
        lines.push(Line::from(dim("  no images")));
    }
    Section {
        title: title(
            "Images",
            "  age of the newest ready build against rebuild-age".into(),
        ),
        lines,
        min: 1,
        more_note: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_columns_group_and_align_right() {
        assert_eq!(columns(&[1, 2], 4), [None, None, Some(1), Some(2)]);
        assert_eq!(columns(&[1, 5, 2, 3, 9], 2), [Some(5), Some(9)]);
        let s = sparkline(&[0, 4, 8], 3, Tone::Plain);
        assert_eq!(s.content, "▁▅█");
    }
}
