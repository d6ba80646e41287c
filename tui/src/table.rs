//! The generic table behind every tab: cells that know how to sort and render, the
//! per-tab view state (sort column and order, live filter, selection, marked rows), a
//! tab's state with its rows ([`Tab`]; the rows and their shown order are in
//! [`crate::rows`]), and the column layout that drops the least important columns and truncates the rest when
//! the terminal is narrow. All pure.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use nodepool_shared::listing::format_relative;

use crate::data::RecordKey;
use crate::input::TextInput;
use crate::theme::Tone;

pub use crate::rows::Rows;

/// A cell value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Text, sorted lexicographically.
    Text(String),
    /// A number, sorted numerically.
    Num(i64),
    /// A point in time (float epoch seconds), shown as "3m ago", sorted by age
    /// (youngest first); `None` shows empty and sorts last.
    Time(Option<f64>),
    /// Text sorted by a rank (e.g. a severity: errors first).
    Ranked(i64, String),
}

/// One cell: a value and its colour.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// The value.
    pub value: Value,
    /// The colour (usually only the state cell has one).
    pub tone: Tone,
}

impl Cell {
    /// A plain text cell.
    pub fn text(s: impl Into<String>) -> Cell {
        Cell {
            value: Value::Text(s.into()),
            tone: Tone::Plain,
        }
    }

    /// A text cell from an optional string (empty when `None`).
    pub fn opt(s: &Option<String>) -> Cell {
        Cell::text(s.clone().unwrap_or_default())
    }

    /// A state cell, coloured by [`Tone::of_state`].
    pub fn state(s: &str) -> Cell {
        Cell {
            value: Value::Text(s.to_string()),
            tone: Tone::of_state(s),
        }
    }

    /// A number cell.
    pub fn num(n: i64) -> Cell {
        Cell {
            value: Value::Num(n),
            tone: Tone::Plain,
        }
    }

    /// A text cell that sorts by `rank`.
    pub fn ranked(rank: i64, s: impl Into<String>) -> Cell {
        Cell {
            value: Value::Ranked(rank, s.into()),
            tone: Tone::Plain,
        }
    }

    /// A time cell ("3m ago"); times ≤ 0 count as unknown.
    pub fn time(t: Option<f64>) -> Cell {
        Cell {
            value: Value::Time(t.filter(|t| t.is_finite() && *t > 0.0)),
            tone: Tone::Plain,
        }
    }

    /// The same cell with another tone.
    pub fn toned(mut self, tone: Tone) -> Cell {
        self.tone = tone;
        self
    }

    /// The text shown at `now`.
    pub fn display(&self, now: f64) -> String {
        match &self.value {
            Value::Text(s) | Value::Ranked(_, s) => s.clone(),
            Value::Num(n) => n.to_string(),
            Value::Time(Some(t)) => format_relative(now - t),
            Value::Time(None) => String::new(),
        }
    }

    /// Widest text the cell can show (times: a typical "59m ago").
    pub fn width_hint(&self) -> usize {
        match &self.value {
            Value::Text(s) | Value::Ranked(_, s) => text_width(s),
            Value::Num(n) => n.to_string().len(),
            Value::Time(_) => 8,
        }
    }

    pub(crate) fn compare(&self, other: &Cell) -> Ordering {
        match (&self.value, &other.value) {
            (Value::Text(a), Value::Text(b)) => a.cmp(b),
            (Value::Num(a), Value::Num(b)) => a.cmp(b),
            (Value::Ranked(a, x), Value::Ranked(b, y)) => a.cmp(b).then_with(|| x.cmp(y)),
            // Youngest first: the larger timestamp first; unknown last.
            (Value::Time(a), Value::Time(b)) => match (a, b) {
                (Some(a), Some(b)) => b.total_cmp(a),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
            (a, b) => rank(a).cmp(&rank(b)),
        }
    }
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Text(_) => 0,
        Value::Num(_) => 1,
        Value::Time(_) => 2,
        Value::Ranked(..) => 3,
    }
}

/// Display width of a string (one column per character; Nodepool data is ASCII).
pub fn text_width(s: &str) -> usize {
    s.chars().count()
}

/// `s` cut to `width` columns, ending in `…` when cut.
pub fn truncate(s: &str, width: usize) -> String {
    if text_width(s) <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// One row: which record it shows, and its cells (one per column of the view).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The record the row shows (for the detail pane and actions).
    pub key: RecordKey,
    /// The cells.
    pub cells: Vec<Cell>,
    /// Lower-cased text of the row, for the filter.
    pub haystack: String,
}

impl Row {
    /// A row of `cells` for `key`.
    pub fn new(key: RecordKey, cells: Vec<Cell>) -> Row {
        use std::fmt::Write as _;
        let len: usize = cells
            .iter()
            .map(|c| match &c.value {
                Value::Text(s) => s.len() + 1,
                _ => 21,
            })
            .sum();
        let mut haystack = String::with_capacity(len);
        for c in &cells {
            match &c.value {
                Value::Text(s) | Value::Ranked(_, s) if s.is_ascii() => {
                    haystack.extend(s.chars().map(|ch| ch.to_ascii_lowercase()))
                }
                Value::Text(s) | Value::Ranked(_, s) => {
                    haystack.extend(s.chars().flat_map(char::to_lowercase))
                }
                Value::Num(n) => {
                    let _ = write!(haystack, "{n}");
                }
                Value::Time(_) => {}
            }
            haystack.push('\u{1f}');
        }
        Row {
            key,
            cells,
            haystack,
        }
    }
}

/// A column of a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnDef {
    /// Header text.
    pub title: &'static str,
    /// Narrowest useful width (content is truncated down to this).
    pub min: u16,
    /// Widest the column ever gets.
    pub max: u16,
    /// Importance: 0 is never dropped; higher numbers are dropped first when narrow.
    pub priority: u8,
}

impl ColumnDef {
    /// A column definition.
    pub const fn new(title: &'static str, min: u16, max: u16, priority: u8) -> ColumnDef {
        ColumnDef {
            title,
            min,
            max,
            priority,
        }
    }
}

/// Space between columns.
pub const GAP: u16 = 1;

/// The header of column `def`, with the sort mark when it is the sort column.
pub fn header_text(def: &ColumnDef, sorted: bool, descending: bool) -> String {
    match (sorted, descending) {
        (false, _) => def.title.to_string(),
        (true, false) => format!("{}▲", def.title),
        (true, true) => format!("{}▼", def.title),
    }
}

/// Chooses the columns that fit in `total` columns and their widths, in display order
/// as `(column, width)`. A column wants the width of its widest content or of its
/// header (with the sort mark on the `sort` column), capped by its `max` but never
/// below its header, so every header is whole whenever the terminal is wide enough:
/// 1. in order of importance, each column is taken at the width it wants if that still
///    fits; columns of priority 0 are always taken, shrunk towards their `min` if
///    needed;
/// 2. columns skipped so far are taken, truncated, if at least their `min` fits in
///    what is left.
pub fn layout(
    defs: &[ColumnDef],
    content: &[usize],
    total: u16,
    sort: Option<usize>,
) -> Vec<(usize, u16)> {
    let total = u32::from(total);
    let want: Vec<u32> = defs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let header = text_width(d.title) + usize::from(sort == Some(i));
            let max = u32::from(d.max).max(header as u32);
            let c = content.get(i).copied().unwrap_or(0).max(header);
            (c.min(usize::from(u16::MAX)) as u32).clamp(u32::from(d.min.min(d.max)), max)
        })
        .collect();
    let min = |i: usize| u32::from(defs[i].min).min(want[i]);
    let mut order: Vec<usize> = (0..defs.len()).collect();
    order.sort_by_key(|&i| (defs[i].priority, i));
    let mut width: Vec<Option<u32>> = vec![None; defs.len()];
    let used = |width: &[Option<u32>]| -> u32 {
        let n = width.iter().flatten().count() as u32;
        width.iter().flatten().sum::<u32>() + u32::from(GAP) * n.saturating_sub(1)
    };
    let gap_for = |width: &[Option<u32>]| {
        if width.iter().any(Option::is_some) {
            u32::from(GAP)
        } else {
            0
        }
    };
    for &i in &order {
        let room = total.saturating_sub(used(&width) + gap_for(&width));
        if want[i] <= room {
            width[i] = Some(want[i]);
        } else if defs[i].priority == 0 {
            width[i] = Some(want[i]);
            // Shrink the widest shrinkable taken columns until it fits (or cannot).
            while used(&width) > total {
                let Some(j) = (0..defs.len())
                    .filter(|&j| width[j].is_some_and(|w| w > min(j)))
                    .max_by_key(|&j| width[j])
                else {
                    break;
                };
                let over = used(&width) - total;
                let w = width[j].unwrap_or(0);
                width[j] = Some(w.saturating_sub(over).max(min(j)));
            }
        }
    }
    for &i in &order {
        if width[i].is_some() {
            continue;
        }
        let room = total.saturating_sub(used(&width) + gap_for(&width));
        if min(i) <= room {
            width[i] = Some(want[i].min(room));
        }
    }
    width
        .into_iter()
        .enumerate()
        .filter_map(|(i, w)| w.map(|w| (i, w.min(u32::from(u16::MAX)) as u16)))
        .collect()
}

/// Per-tab interaction state: sort, filter, selection, marks and scroll position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ViewState {
    /// Index of the sort column.
    pub sort: usize,
    /// Descending order.
    pub descending: bool,
    /// The filter (case-insensitive substring of the row).
    pub filter: TextInput,
    /// Selected position within the visible rows.
    pub selected: usize,
    /// First visible row on screen.
    pub offset: usize,
    /// The record selected last, to keep the selection on it while rows move.
    pub selected_key: Option<RecordKey>,
    /// Marked records (actions apply to all of them); records that vanish are unmarked.
    pub marked: BTreeSet<RecordKey>,
}

/// One tab: its interaction state, its rows, and whether the rows must be rebuilt
/// from new data before they are shown.
#[derive(Clone, Debug)]
pub struct Tab {
    /// Sort, filter, selection, marks.
    pub state: ViewState,
    /// The rows and which are visible.
    pub rows: Rows,
    /// The data changed since the rows were built.
    pub dirty: bool,
}

impl Default for Tab {
    fn default() -> Tab {
        Tab {
            state: ViewState::default(),
            rows: Rows::default(),
            dirty: true,
        }
    }
}

impl Tab {
    /// Takes freshly built rows and shows them (filter, sort, selection, marks).
    pub fn set_rows(&mut self, rows: Vec<Row>, columns: usize) {
        self.rows = Rows::new(rows, columns);
        self.dirty = false;
        if !self.state.marked.is_empty() {
            let keys: BTreeSet<&RecordKey> = self.rows.iter().map(|r| &r.key).collect();
            self.state.marked.retain(|k| keys.contains(k));
        }
        self.refresh();
    }

    /// Re-filters and re-sorts the rows.
    pub fn refresh(&mut self) {
        self.rows.refresh(&mut self.state);
    }

    /// The selected row.
    pub fn selected(&self) -> Option<&Row> {
        self.rows.selected_row(&self.state)
    }

    /// Slot (see [`Rows::row`]) of the selected row.
    pub fn selected_index(&self) -> Option<usize> {
        self.rows.visible.get(self.state.selected).copied()
    }

    /// Marks or unmarks the selected row; returns whether it is marked now.
    pub fn toggle_mark(&mut self) -> Option<bool> {
        let key = self.selected()?.key.clone();
        if self.state.marked.remove(&key) {
            Some(false)
        } else {
            self.state.marked.insert(key);
            Some(true)
        }
    }
}

/// Adjusts `state.offset` so that the selection is on screen with `height` rows.
pub fn scroll_into_view(state: &mut ViewState, visible: usize, height: usize) {
    let height = height.max(1);
    if state.selected < state.offset {
        state.offset = state.selected;
    } else if state.selected >= state.offset + height {
        state.offset = state.selected + 1 - height;
    }
    let max_offset = visible.saturating_sub(height);
    state.offset = state.offset.min(max_offset);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> RecordKey {
        RecordKey::Label(s.to_string())
    }

    fn rows() -> Rows {
        let r = |n: &str, s: &str, t: f64| {
            Row::new(
                key(n),
                vec![Cell::text(n), Cell::state(s), Cell::time(Some(t))],
            )
        };
        Rows::new(
            vec![
                r("b", "ready", 100.0),
                r("a", "building", 300.0),
                r("c", "ready", 200.0),
            ],
            3,
        )
    }

    fn names(r: &Rows) -> Vec<String> {
        r.visible
            .iter()
            .filter_map(|&i| r.row(i))
            .map(|row| row.cells[0].display(0.0))
            .collect()
    }

    #[test]
    fn sort_and_reverse() {
        let mut r = rows();
        let mut st = ViewState::default();
        r.refresh(&mut st);
        assert_eq!(names(&r), ["a", "b", "c"]);
        st.descending = true;
        r.refresh(&mut st);
        assert_eq!(names(&r), ["c", "b", "a"]);
        st.sort = 2;
        st.descending = false;
        r.refresh(&mut st);
        // Youngest (largest timestamp) first.
        assert_eq!(names(&r), ["a", "c", "b"]);
    }

    #[test]
    fn filter_is_case_insensitive_substring() {
        let mut r = rows();
        let mut st = ViewState {
            filter: TextInput::with("READY"),
            ..Default::default()
        };
        r.refresh(&mut st);
        assert_eq!(names(&r), ["b", "c"]);
        st.filter = TextInput::with("zzz");
        r.refresh(&mut st);
        assert!(r.visible.is_empty());
        assert_eq!(st.selected, 0);
        assert!(r.selected_row(&st).is_none());
    }

    #[test]
    fn selection_follows_the_record() {
        let mut r = rows();
        let mut st = ViewState::default();
        r.refresh(&mut st);
        r.move_selection(&mut st, 2);
        assert_eq!(st.selected_key, Some(key("c")));
        st.descending = true;
        r.refresh(&mut st);
        assert_eq!(st.selected, 0);
        r.move_selection(&mut st, -5);
        assert_eq!(st.selected, 0);
        r.select_edge(&mut st, true);
        assert_eq!(st.selected, 2);
        assert_eq!(st.selected_key, Some(key("a")));
    }

    #[test]
    fn layout_drops_least_important_columns() {
        let defs = [
            ColumnDef::new("ID", 10, 10, 0),
            ColumnDef::new("State", 8, 8, 0),
            ColumnDef::new("Comment", 7, 40, 3),
            ColumnDef::new("Label", 5, 20, 1),
        ];
        let content = [10, 8, 40, 12];
        let wide = layout(&defs, &content, 200, None);
        assert_eq!(wide, [(0, 10), (1, 8), (2, 40), (3, 12)]);
        let narrow = layout(&defs, &content, 30, None);
        assert_eq!(narrow, [(0, 10), (1, 8), (3, 10)]);
        // The comment is taken, truncated, when its minimum fits in what is left.
        let mid = layout(&defs, &content, 40, None);
        assert_eq!(mid, [(0, 10), (1, 8), (2, 7), (3, 12)]);
        let tiny = layout(&defs, &content, 5, None);
        assert_eq!(tiny.iter().map(|c| c.0).collect::<Vec<_>>(), [0, 1]);
    }

    /// A header with its sort mark is never cut when there is room, even when the
    /// content and the column's `max` are narrower (`Label▲` over 5-letter labels,
    /// `Ready▲` in a column of at most 5).
    #[test]
    fn headers_get_their_full_width_when_there_is_room() {
        let defs = [
            ColumnDef::new("Label", 5, 30, 0),
            ColumnDef::new("Ready", 5, 5, 0),
        ];
        let content = [5, 1];
        assert_eq!(layout(&defs, &content, 160, Some(0)), [(0, 6), (1, 5)]);
        assert_eq!(layout(&defs, &content, 160, Some(1)), [(0, 5), (1, 6)]);
        assert_eq!(header_text(&defs[1], true, false), "Ready▲");
        // Narrow: shrunk towards the minimum as before.
        assert_eq!(layout(&defs, &content, 11, Some(1)), [(0, 5), (1, 5)]);
    }

    #[test]
    fn truncation_and_scrolling() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        assert_eq!(truncate("abc", 0), "");
        let mut st = ViewState {
            selected: 30,
            ..Default::default()
        };
        scroll_into_view(&mut st, 100, 10);
        assert_eq!(st.offset, 21);
        st.selected = 5;
        scroll_into_view(&mut st, 100, 10);
        assert_eq!(st.offset, 5);
        scroll_into_view(&mut st, 8, 10);
        assert_eq!(st.offset, 0);
    }
}
