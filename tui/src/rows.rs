//! A tab's rows and the order they are shown in: the rows, which of them pass the
//! filter, sorted by the sort column, and the widest content of each column.
//!
//! A tab rebuilt from scratch takes all its rows at once ([`Rows::new`]) and sorts
//! them; rows that sort equal keep the order they were built in. A tab kept in step
//! with the cache record by record ([`Rows::keyed`], see [`crate::incremental`]) takes
//! single edits instead: a row is inserted, replaced or removed in place, found in the
//! sorted order by binary search, so one changed record costs a few comparisons and a
//! move of the order vector, not a rebuild and a sort of every row. Rows that sort equal
//! are then ordered by their record key, which is the order the cache lists records
//! in, so both ways show the same order. The column widths are kept as counts per
//! width, so removing the widest row does not need a scan of the others.

use std::cmp::Ordering;

use crate::table::{Row, ViewState};

/// Content widths are counted up to this; wider content counts as this wide. Every
/// column's `max` is below it (a test checks), so the layout is the same as with the
/// exact width.
pub const WIDTH_CAP: usize = 1024;

/// How rows that sort equal are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ties {
    /// In the order they were built in (a tab rebuilt from scratch).
    #[default]
    Built,
    /// By record key (a tab kept in step record by record; keys are unique).
    Key,
}

/// The filter and sort the visible rows were computed with.
#[derive(Clone, Debug, Default, PartialEq)]
struct Shown {
    needle: String,
    sort: usize,
    descending: bool,
}

/// Per column, how many rows have content of each width (capped at [`WIDTH_CAP`]).
#[derive(Clone, Debug, Default)]
struct WidthTally {
    counts: Vec<Vec<u32>>,
}

impl WidthTally {
    fn new(columns: usize) -> WidthTally {
        WidthTally {
            counts: vec![Vec::new(); columns],
        }
    }

    fn add(&mut self, row: &Row, widths: &mut [usize]) {
        for ((counts, c), w) in self.counts.iter_mut().zip(&row.cells).zip(widths) {
            let hint = c.width_hint().min(WIDTH_CAP);
            if counts.len() <= hint {
                counts.resize(hint + 1, 0);
            }
            counts[hint] += 1;
            *w = (*w).max(hint);
        }
    }

    fn remove(&mut self, row: &Row, widths: &mut [usize]) {
        for ((counts, c), w) in self.counts.iter_mut().zip(&row.cells).zip(widths) {
            let hint = c.width_hint().min(WIDTH_CAP);
            if let Some(n) = counts.get_mut(hint) {
                *n = n.saturating_sub(1);
            }
            if hint == *w && counts.get(hint).is_some_and(|n| *n == 0) {
                *w = counts.iter().rposition(|n| *n > 0).unwrap_or(0);
            }
        }
    }
}

/// A view's rows and which of them are shown, in which order.
#[derive(Clone, Debug, Default)]
pub struct Rows {
    /// The rows by slot; a removed row leaves its slot empty until an insert reuses it.
    slots: Vec<Option<Row>>,
    /// Empty slots.
    vacant: Vec<usize>,
    /// Slots of the rows that pass the filter, in sort order.
    pub visible: Vec<usize>,
    /// Widest content per column (over all rows; at most [`WIDTH_CAP`]).
    pub content_widths: Vec<usize>,
    tally: WidthTally,
    ties: Ties,
    /// What `visible` was computed with (`None`: not computed yet).
    shown: Option<Shown>,
}

impl Rows {
    /// Rows built from scratch, with their content widths counted; call
    /// [`Rows::refresh`] to show them.
    pub fn new(rows: Vec<Row>, columns: usize) -> Rows {
        let mut out = Rows {
            tally: WidthTally::new(columns),
            content_widths: vec![0; columns],
            ..Rows::default()
        };
        for r in &rows {
            out.tally.add(r, &mut out.content_widths);
        }
        out.slots = rows.into_iter().map(Some).collect();
        out
    }

    /// No rows yet, to be kept in step record by record ([`Rows::insert`],
    /// [`Rows::replace`], [`Rows::remove`]); rows that sort equal are ordered by key.
    pub fn keyed(columns: usize) -> Rows {
        Rows {
            ties: Ties::Key,
            ..Rows::new(Vec::new(), columns)
        }
    }

    /// How rows that sort equal are ordered.
    pub fn ties(&self) -> Ties {
        self.ties
    }

    /// Whether the visible rows were computed ([`Rows::refresh`]) and are kept in order
    /// since: single edits are then placed where they sort.
    pub fn is_shown(&self) -> bool {
        self.shown.is_some()
    }

    /// Number of rows (shown or not).
    pub fn len(&self) -> usize {
        self.slots.len() - self.vacant.len()
    }

    /// Whether there is no row at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row in `slot`.
    pub fn row(&self, slot: usize) -> Option<&Row> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    /// Every row, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &Row> {
        self.slots.iter().flatten()
    }

    /// The visible rows in order.
    pub fn visible_rows(&self) -> impl Iterator<Item = &Row> {
        self.visible.iter().filter_map(|&i| self.row(i))
    }

    fn cmp_slots(&self, a: usize, b: usize, sort: usize, descending: bool) -> Ordering {
        let (Some(ra), Some(rb)) = (self.row(a), self.row(b)) else {
            return a.cmp(&b);
        };
        let o = match (ra.cells.get(sort), rb.cells.get(sort)) {
            (Some(x), Some(y)) => x.compare(y),
            _ => Ordering::Equal,
        };
        let o = if descending { o.reverse() } else { o };
        match self.ties {
            Ties::Built => o.then(a.cmp(&b)),
            Ties::Key => o.then_with(|| ra.key.cmp(&rb.key)),
        }
    }

    fn passes(row: &Row, needle: &str) -> bool {
        needle.is_empty() || row.haystack.contains(needle)
    }

    /// Recomputes the visible rows from the filter and sort of `state`, and keeps the
    /// selection on the same record when it is still visible. A filter that only got
    /// longer (typing) narrows the shown rows without sorting them again.
    pub fn refresh(&mut self, state: &mut ViewState) {
        let wanted = Shown {
            needle: state.filter.text().to_lowercase(),
            sort: state.sort,
            descending: state.descending,
        };
        let narrowing = self.shown.as_ref().is_some_and(|s| {
            s.sort == wanted.sort
                && s.descending == wanted.descending
                && wanted.needle.contains(s.needle.as_str())
        });
        if narrowing {
            let slots = &self.slots;
            self.visible.retain(|&i| {
                slots[i]
                    .as_ref()
                    .is_some_and(|r| Self::passes(r, &wanted.needle))
            });
        } else {
            let mut visible: Vec<usize> = (0..self.slots.len())
                .filter(|&i| {
                    self.slots[i]
                        .as_ref()
                        .is_some_and(|r| Self::passes(r, &wanted.needle))
                })
                .collect();
            visible.sort_by(|&a, &b| self.cmp_slots(a, b, wanted.sort, wanted.descending));
            self.visible = visible;
        }
        self.shown = Some(wanted);
        let found = state.selected_key.as_ref().and_then(|k| {
            self.visible
                .iter()
                .position(|&i| self.row(i).is_some_and(|r| &r.key == k))
        });
        self.select(state, found);
    }

    /// Puts the selection at `found` (the position of the selected record), or, when
    /// the record is not shown, keeps the position (clamped) and selects what is there.
    fn select(&self, state: &mut ViewState, found: Option<usize>) {
        match found {
            Some(p) => state.selected = p,
            None => {
                state.selected = state.selected.min(self.visible.len().saturating_sub(1));
                state.selected_key = self.selected_row(state).map(|r| r.key.clone());
            }
        }
    }

    /// Where the row in `slot` is among the visible rows (binary search; the row must
    /// still hold what it was placed with).
    fn position(&self, slot: usize) -> Option<usize> {
        let shown = self.shown.as_ref()?;
        if !self
            .row(slot)
            .is_some_and(|r| Self::passes(r, &shown.needle))
        {
            return None;
        }
        self.visible
            .binary_search_by(|&j| self.cmp_slots(j, slot, shown.sort, shown.descending))
            .ok()
    }

    fn place(&mut self, slot: usize) {
        let Some(shown) = self.shown.as_ref() else {
            return;
        };
        if !self
            .row(slot)
            .is_some_and(|r| Self::passes(r, &shown.needle))
        {
            return;
        }
        let (sort, descending) = (shown.sort, shown.descending);
        if let Err(p) = self
            .visible
            .binary_search_by(|&j| self.cmp_slots(j, slot, sort, descending))
        {
            self.visible.insert(p, slot);
        }
    }

    fn unplace(&mut self, slot: usize) {
        if let Some(p) = self.position(slot) {
            self.visible.remove(p);
        }
    }

    /// Adds a row (keyed rows only). With `place` it is put among the visible rows
    /// where it sorts; without, the caller calls [`Rows::refresh`] after its edits.
    /// Returns its slot.
    pub fn insert(&mut self, row: Row, place: bool) -> usize {
        debug_assert_eq!(self.ties, Ties::Key, "single edits need unique keys");
        self.tally.add(&row, &mut self.content_widths);
        let slot = match self.vacant.pop() {
            Some(s) => {
                self.slots[s] = Some(row);
                s
            }
            None => {
                self.slots.push(Some(row));
                self.slots.len() - 1
            }
        };
        if place {
            self.place(slot);
        } else {
            self.shown = None;
        }
        slot
    }

    /// Replaces the row in `slot` (same record, new content); see [`Rows::insert`].
    pub fn replace(&mut self, slot: usize, row: Row, place: bool) {
        if place {
            self.unplace(slot);
        } else {
            self.shown = None;
        }
        self.tally.add(&row, &mut self.content_widths);
        if let Some(old) = self.slots.get_mut(slot).and_then(|s| s.replace(row)) {
            self.tally.remove(&old, &mut self.content_widths);
        }
        if place {
            self.place(slot);
        }
    }

    /// Removes the row in `slot` and returns it; see [`Rows::insert`].
    pub fn remove(&mut self, slot: usize, place: bool) -> Option<Row> {
        if place {
            self.unplace(slot);
        } else {
            self.shown = None;
        }
        let old = self.slots.get_mut(slot).and_then(Option::take)?;
        self.tally.remove(&old, &mut self.content_widths);
        self.vacant.push(slot);
        Some(old)
    }

    /// The slot of the selected row when the selection is consistent (the selected
    /// position shows the selected record).
    pub fn selected_slot(&self, state: &ViewState) -> Option<usize> {
        let slot = *self.visible.get(state.selected)?;
        let key = state.selected_key.as_ref()?;
        (self.row(slot)?.key == *key).then_some(slot)
    }

    /// After single edits placed in order: puts the selection back on its record,
    /// which was in `slot` before the edits (`None`: find it by key). Same outcome as
    /// [`Rows::refresh`].
    pub fn reselect(&self, state: &mut ViewState, slot: Option<usize>) {
        let found = match slot {
            Some(s) if self.row(s).map(|r| &r.key) == state.selected_key.as_ref() => {
                self.position(s)
            }
            Some(_) => None,
            None => state.selected_key.as_ref().and_then(|k| {
                self.visible
                    .iter()
                    .position(|&i| self.row(i).is_some_and(|r| &r.key == k))
            }),
        };
        self.select(state, found);
    }

    /// The selected row, if any.
    pub fn selected_row(&self, state: &ViewState) -> Option<&Row> {
        self.visible.get(state.selected).and_then(|&i| self.row(i))
    }

    /// Moves the selection by `delta` rows (clamped) and remembers the record.
    pub fn move_selection(&self, state: &mut ViewState, delta: isize) {
        if self.visible.is_empty() {
            state.selected = 0;
            state.selected_key = None;
            return;
        }
        let last = self.visible.len() - 1;
        let to = (state.selected as isize).saturating_add(delta);
        state.selected = to.clamp(0, last as isize) as usize;
        state.selected_key = self.selected_row(state).map(|r| r.key.clone());
    }

    /// Selects the first or the last row.
    pub fn select_edge(&self, state: &mut ViewState, last: bool) {
        let target = if last {
            isize::MAX / 2
        } else {
            -(isize::MAX / 2)
        };
        state.selected = 0;
        self.move_selection(state, target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::ViewKind;

    /// Content widths are counted up to [`WIDTH_CAP`]: every column is narrower, so the
    /// layout never sees the difference.
    #[test]
    fn every_column_is_narrower_than_the_width_cap() {
        for v in ViewKind::ALL {
            for c in v.columns() {
                assert!(usize::from(c.max) < WIDTH_CAP, "{v:?} {}", c.title);
                assert!(c.title.chars().count() + 1 < WIDTH_CAP);
            }
        }
    }
}
