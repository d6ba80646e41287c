//! The Problems tab (view 8): one row per problem the diagnostics found, errors first.
//! Row `i` is problem `i`, so the selected row finds its problem (for the footer with
//! the whole text and for jumping to its record).

use nodepool_shared::diagnostics::{Problem, RecordKey, Severity};

use crate::table::{Cell, ColumnDef, Row};
use crate::theme::Tone;

/// Columns of the Problems tab (the suggested action is in the box below the table:
/// as a column it would take the summary's room).
pub const PROBLEM_COLUMNS: [ColumnDef; 5] = [
    ColumnDef::new("Severity", 7, 8, 0),
    ColumnDef::new("Problem", 8, 26, 0),
    ColumnDef::new("Record", 6, 40, 2),
    ColumnDef::new("Since", 7, 8, 1),
    ColumnDef::new("Summary", 20, 400, 0),
];

/// The tone of a severity.
pub fn tone(s: Severity) -> Tone {
    match s {
        Severity::Error => Tone::Bad,
        Severity::Warning => Tone::Busy,
        Severity::Info => Tone::Plain,
    }
}

/// The key a problem's row carries: its first record (what Enter jumps to).
pub fn row_key(p: &Problem) -> RecordKey {
    p.records
        .first()
        .cloned()
        .unwrap_or_else(|| RecordKey::Znode(p.kind.as_str().to_string()))
}

/// One row per problem, in the order given.
pub fn problem_rows(problems: &[Problem]) -> Vec<Row> {
    problems
        .iter()
        .map(|p| {
            let rank = match p.severity {
                Severity::Error => 0,
                Severity::Warning => 1,
                Severity::Info => 2,
            };
            Row::new(
                row_key(p),
                vec![
                    Cell::ranked(rank, p.severity.as_str()).toned(tone(p.severity)),
                    Cell::text(p.kind.title()),
                    Cell::text(p.records.first().map(|r| r.describe()).unwrap_or_default()),
                    Cell::time(p.since),
                    Cell::text(&p.summary),
                ],
            )
        })
        .collect()
}
