//! Keeping a tab's rows in step with the cache record by record, so that one changed
//! node among 100,000 costs one row, not a rebuild and a sort of all of them.
//!
//! The tree cache keeps every record as an `Arc` and replaces the `Arc` when the
//! record (or, for a node, its lock contenders) changes; an unchanged record is the
//! same `Arc` in every snapshot. A [`Tracked`] list remembers the records a tab's rows
//! were built from, in key order, each with the slot of its row. [`Tracked::sync`]
//! walks it and the new snapshot's list side by side: the same `Arc` means the same
//! row (a pointer comparison, no key comparison, no reference count touched); another
//! `Arc` with the same key is a changed record, a key only on one side an added or
//! removed one. Only those rows are built, replaced or removed, and placed in the
//! sorted order by binary search ([`Rows::insert`] and friends). When many records
//! changed at once (the first load, a cache reload after a session loss) the rows are
//! still edited one by one, but sorted once at the end instead.
//!
//! The walk itself is linear in the number of records, but it only compares pointers:
//! well under a millisecond at 100,000 nodes (docs/benchmarks.md).

use std::cmp::Ordering;
use std::sync::Arc;

use crate::rows::Rows;
use crate::table::{Row, ViewState};

/// A change found between what was seen and the new list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Edit {
    /// `seen[i]` is `new[j]` with other content.
    Changed(usize, usize),
    /// `seen[i]` is gone.
    Removed(usize),
    /// `new[j]` is new.
    Added(usize),
}

/// What a [`Tracked::sync`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Synced {
    /// Rows rebuilt for changed records.
    pub changed: usize,
    /// Rows added.
    pub added: usize,
    /// Rows removed.
    pub removed: usize,
    /// Whether the rows were sorted again as a whole (many edits).
    pub resorted: bool,
}

impl Synced {
    /// Whether anything changed.
    pub fn any(&self) -> bool {
        self.changed + self.added + self.removed > 0
    }
}

/// Above this many edits (and [`RESORT_FRACTION`] of the rows) the rows are sorted
/// once instead of each edit being placed by binary search: each placement moves part
/// of the order vector, a sort compares every row about log n times.
pub const RESORT_MIN_EDITS: usize = 64;
/// See [`RESORT_MIN_EDITS`]: sort again when the edits exceed 1/this of the rows.
pub const RESORT_FRACTION: usize = 64;

/// The records a tab's rows were built from, in key order, with each one's row slot.
#[derive(Clone, Debug)]
pub struct Tracked<T> {
    seen: Vec<(Arc<T>, usize)>,
}

impl<T> Default for Tracked<T> {
    fn default() -> Self {
        Tracked { seen: Vec::new() }
    }
}

impl<T> Tracked<T> {
    /// Number of records seen.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no record was seen.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn diff(&self, new: &[Arc<T>], key_cmp: &impl Fn(&T, &T) -> Ordering) -> Vec<Edit> {
        let mut edits = Vec::new();
        let (mut i, mut j) = (0, 0);
        loop {
            match (self.seen.get(i), new.get(j)) {
                (Some((a, _)), Some(b)) if Arc::ptr_eq(a, b) => {
                    i += 1;
                    j += 1;
                }
                (Some((a, _)), Some(b)) => match key_cmp(a, b) {
                    Ordering::Equal => {
                        edits.push(Edit::Changed(i, j));
                        i += 1;
                        j += 1;
                    }
                    Ordering::Less => {
                        edits.push(Edit::Removed(i));
                        i += 1;
                    }
                    Ordering::Greater => {
                        edits.push(Edit::Added(j));
                        j += 1;
                    }
                },
                (Some(_), None) => {
                    edits.push(Edit::Removed(i));
                    i += 1;
                }
                (None, Some(_)) => {
                    edits.push(Edit::Added(j));
                    j += 1;
                }
                (None, None) => return edits,
            }
        }
    }

    /// Brings `rows` in step with `new` (sorted by `key_cmp`, as the cache lists
    /// records), building the rows of changed and added records with `build`, and
    /// keeps the selection and the marks of `state` as [`Rows::refresh`] would.
    /// `rows` must be [`Rows::keyed`] and hold only rows made by earlier syncs.
    pub fn sync(
        &mut self,
        new: &[Arc<T>],
        key_cmp: impl Fn(&T, &T) -> Ordering,
        build: impl Fn(&T) -> Row,
        rows: &mut Rows,
        state: &mut ViewState,
    ) -> Synced {
        let edits = self.diff(new, &key_cmp);
        let mut out = Synced::default();
        if edits.is_empty() {
            // Nothing to edit; the selection may have been set by key (a jump to a
            // record) and is put on it as a rebuild would.
            if rows.is_shown() {
                rows.reselect(state, rows.selected_slot(state));
            } else {
                rows.refresh(state);
            }
            return out;
        }
        let place =
            rows.is_shown() && edits.len() <= RESORT_MIN_EDITS.max(rows.len() / RESORT_FRACTION);
        let mut selected = rows.selected_slot(state);
        let mut old = std::mem::take(&mut self.seen).into_iter();
        let mut next: Vec<(Arc<T>, usize)> = Vec::with_capacity(new.len());
        let mut at = 0; // index in the old list of the next item of `old`
        for edit in edits {
            // Unchanged records up to the edit keep their rows.
            let upto = match edit {
                Edit::Changed(i, _) | Edit::Removed(i) => i,
                Edit::Added(j) => at + (j - next.len()),
            };
            next.extend(old.by_ref().take(upto - at));
            at = upto;
            match edit {
                Edit::Changed(_, j) => {
                    let slot = old.next().map(|(_, s)| s);
                    at += 1;
                    let record = &new[j];
                    let slot = match slot {
                        Some(s) => {
                            rows.replace(s, build(record), place);
                            s
                        }
                        None => rows.insert(build(record), place),
                    };
                    next.push((record.clone(), slot));
                    out.changed += 1;
                }
                Edit::Removed(_) => {
                    if let Some((_, slot)) = old.next() {
                        if let Some(row) = rows.remove(slot, place) {
                            state.marked.remove(&row.key);
                        }
                        if selected == Some(slot) {
                            selected = None;
                            // The selected record is gone: as after a rebuild, the
                            // selection stays at its position.
                            state.selected_key = None;
                        }
                    }
                    at += 1;
                    out.removed += 1;
                }
                Edit::Added(j) => {
                    let slot = rows.insert(build(&new[j]), place);
                    next.push((new[j].clone(), slot));
                    out.added += 1;
                }
            }
        }
        next.extend(old);
        self.seen = next;
        if place {
            rows.reselect(state, selected);
        } else {
            out.resorted = true;
            rows.refresh(state);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::RecordKey;
    use crate::input::TextInput;
    use crate::table::Cell;
    use nodepool_shared::model::NodeId;

    /// A record: key, state, label, age; `comment` varies the width of a column.
    #[derive(Debug)]
    struct Rec {
        key: u64,
        state: &'static str,
        label: String,
        t: Option<f64>,
        comment: String,
    }

    fn build(r: &Rec) -> Row {
        Row::new(
            RecordKey::Node(NodeId::from_sequence(r.key)),
            vec![
                Cell::text(NodeId::from_sequence(r.key).as_str()),
                Cell::state(r.state),
                Cell::text(r.label.clone()),
                Cell::time(r.t),
                Cell::num((r.key % 7) as i64),
                Cell::text(r.comment.clone()),
            ],
        )
    }

    const STATES: [&str; 4] = ["ready", "in-use", "building", "deleting"];

    /// A small deterministic generator (no dependency, same sequence every run).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    fn rec(key: u64, g: &mut Lcg) -> Arc<Rec> {
        Arc::new(Rec {
            key,
            state: STATES[g.next(4) as usize],
            label: format!("label-{}", g.next(5)),
            t: (g.next(6) != 0).then(|| 1000.0 + g.next(50) as f64),
            comment: "x".repeat(g.next(12) as usize),
        })
    }

    fn by_key(a: &Rec, b: &Rec) -> Ordering {
        a.key.cmp(&b.key)
    }

    /// The same records built from scratch, shown with `state`: the reference.
    fn full(records: &[Arc<Rec>], state: &mut ViewState) -> Rows {
        let mut rows = Rows::new(records.iter().map(|r| build(r)).collect(), 6);
        let keys: std::collections::BTreeSet<RecordKey> =
            rows.iter().map(|r| r.key.clone()).collect();
        state.marked.retain(|k| keys.contains(k));
        rows.refresh(state);
        rows
    }

    fn keys(rows: &Rows) -> Vec<RecordKey> {
        rows.visible_rows().map(|r| r.key.clone()).collect()
    }

    fn assert_same(
        step: &str,
        inc: &Rows,
        inc_state: &ViewState,
        reference: &[Arc<Rec>],
        before: &ViewState,
    ) {
        let mut ref_state = before.clone();
        let ref_rows = full(reference, &mut ref_state);
        assert_eq!(keys(inc), keys(&ref_rows), "{step}: shown rows and order");
        assert_eq!(inc_state, &ref_state, "{step}: selection and marks");
        assert_eq!(inc.len(), ref_rows.len(), "{step}: row count");
        assert_eq!(
            inc.content_widths, ref_rows.content_widths,
            "{step}: column widths"
        );
    }

    /// Random changes, additions and deletions, with the filter, the sort column and
    /// order, the selection and the marks changing in between: after every step the
    /// rows kept in step equal the rows built from scratch.
    #[test]
    fn edits_match_a_full_rebuild() {
        let mut g = Lcg(17);
        let mut records: Vec<Arc<Rec>> = (0..300).map(|k| rec(k * 2, &mut g)).collect();
        let mut tracked = Tracked::default();
        let mut rows = Rows::keyed(6);
        let mut state = ViewState::default();
        let s = tracked.sync(&records, by_key, build, &mut rows, &mut state);
        assert!(s.resorted && s.added == 300);
        for step in 0..400 {
            let before_state = state.clone();
            let what = g.next(10);
            let label = match what {
                0..=3 => {
                    // Change one to three records.
                    for _ in 0..=g.next(3) {
                        let i = g.next(records.len() as u64) as usize;
                        let key = records[i].key;
                        records[i] = rec(key, &mut g);
                    }
                    "change"
                }
                4 | 5 => {
                    let key = g.next(1000);
                    match records.binary_search_by_key(&key, |r| r.key) {
                        Ok(i) => records[i] = rec(key, &mut g),
                        Err(i) => records.insert(i, rec(key, &mut g)),
                    }
                    "add"
                }
                6 | 7 if records.len() > 1 => {
                    records.remove(g.next(records.len() as u64) as usize);
                    "delete"
                }
                6 => "nothing",
                7 => {
                    state.filter =
                        TextInput::with(["", "ready", "label-3", "in", "zz"][g.next(5) as usize]);
                    "filter"
                }
                8 => {
                    state.sort = g.next(6) as usize;
                    state.descending = g.next(2) == 1;
                    "sort"
                }
                _ => {
                    rows.move_selection(&mut state, g.next(40) as isize - 20);
                    if let Some(r) = rows.selected_row(&state) {
                        state.marked.insert(r.key.clone());
                    }
                    "select and mark"
                }
            };
            let before = state.clone();
            if matches!(label, "filter" | "sort" | "select and mark" | "nothing") {
                rows.refresh(&mut state);
            } else {
                tracked.sync(&records, by_key, build, &mut rows, &mut state);
            }
            let _ = before_state;
            assert_same(
                &format!("step {step} ({label})"),
                &rows,
                &state,
                &records,
                &before,
            );
        }
    }

    /// A batch larger than the placement threshold is sorted once; the result is the
    /// same.
    #[test]
    fn a_large_batch_is_sorted_once() {
        let mut g = Lcg(5);
        let mut records: Vec<Arc<Rec>> = (0..200).map(|k| rec(k, &mut g)).collect();
        let mut tracked = Tracked::default();
        let mut rows = Rows::keyed(6);
        let mut state = ViewState {
            sort: 2,
            ..Default::default()
        };
        tracked.sync(&records, by_key, build, &mut rows, &mut state);
        for r in records.iter_mut().take(100) {
            *r = rec(r.key, &mut g);
        }
        let before = state.clone();
        let s = tracked.sync(&records, by_key, build, &mut rows, &mut state);
        assert!(s.resorted);
        assert_eq!(s.changed, 100);
        assert_same("batch", &rows, &state, &records, &before);
        // One more change is placed, not sorted.
        records[3] = rec(3, &mut g);
        let before = state.clone();
        let s = tracked.sync(&records, by_key, build, &mut rows, &mut state);
        assert_eq!((s.changed, s.resorted), (1, false));
        assert_same("single", &rows, &state, &records, &before);
        // Nothing changed: nothing done.
        assert!(!tracked
            .sync(&records, by_key, build, &mut rows, &mut state)
            .any());
    }

    /// The selected record deleted: the selection stays at its position, on the next
    /// record, as after a rebuild; a marked record deleted is unmarked.
    #[test]
    fn deleting_the_selected_and_marked_record() {
        let mut g = Lcg(9);
        let mut records: Vec<Arc<Rec>> = (0..10).map(|k| rec(k, &mut g)).collect();
        let mut tracked = Tracked::default();
        let mut rows = Rows::keyed(6);
        let mut state = ViewState::default();
        tracked.sync(&records, by_key, build, &mut rows, &mut state);
        rows.move_selection(&mut state, 4);
        let gone = state.selected_key.clone().expect("a selection");
        state.marked.insert(gone.clone());
        let before = state.clone();
        records.remove(4);
        tracked.sync(&records, by_key, build, &mut rows, &mut state);
        assert_eq!(state.selected, 4);
        assert_ne!(state.selected_key.as_ref(), Some(&gone));
        assert!(state.marked.is_empty());
        assert_same("delete selected", &rows, &state, &records, &before);
    }
}
