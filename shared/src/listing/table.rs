//! The table every listing is built into, and its two renderers:
//!
//! * **text**, byte-for-byte what the Python CLI and web API print: a PrettyTable with
//!   `align = 'l'` (header and cells left aligned), one space of padding, `+---+` rules
//!   above and below the header and at the bottom, `|` between columns, cells split on
//!   `\n` into several lines (top aligned), no trailing newline (the CLI's `print` adds
//!   one). An empty listing prints the header box and a bottom rule.
//! * **JSON**, what the web API answers for `Accept: application/json`: Python's
//!   `json.dumps(objs)`, a list of objects keyed by the column keys in column order, the
//!   values typed as in Nodepool (lists stay lists, image ages are int epochs, node ages
//!   the formatted string, nulls `null`).
//!
//! The CLI's `--format json` (a Rust addition; Python has no JSON CLI output) is the same
//! bytes as the web API's JSON for the same listing, always with every column of the
//! listing (field selection, like on the web, applies to text only).

use std::borrow::Cow;

use serde_json::Value;

use super::writer::TableWriter;
use crate::pyfmt::{json_str_into, json_value_into, py_str};

/// A column: its key (JSON key and `fields=` name) and its title (text header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// The JSON key, e.g. `server_id`.
    pub key: &'static str,
    /// The text header, e.g. `Server ID`.
    pub title: &'static str,
}

impl Column {
    /// A column with `key` and `title`.
    pub const fn new(key: &'static str, title: &'static str) -> Self {
        Column { key, title }
    }
}

/// One value of a table, carrying both its text and its JSON form.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// Python `None`: text `None`, JSON `null`.
    Null,
    /// Nothing to show: text empty, JSON `null`.
    Empty,
    /// A string, shown as is.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean: text `True`/`False`, JSON `true`/`false`.
    Bool(bool),
    /// A list of strings: text joined by `,`, JSON a list.
    List(Vec<String>),
    /// An age given as an epoch: text the preformatted `DD:HH:MM:SS`, JSON the int epoch.
    Age {
        /// Integer epoch seconds (JSON).
        epoch: i64,
        /// The formatted age (text).
        text: String,
    },
    /// An opaque value (`user_data`, `driver_data`): text Python's `str()` (a list of
    /// strings joined by `,` like every list), JSON as is.
    Json(Value),
}

impl Cell {
    /// `Str` for `Some`, `Null` for `None`.
    pub fn opt<S: AsRef<str>>(v: Option<S>) -> Cell {
        match v {
            Some(s) => Cell::Str(s.as_ref().to_string()),
            None => Cell::Null,
        }
    }

    /// An opaque JSON value; `null` becomes [`Cell::Null`] and a string [`Cell::Str`].
    pub fn json(v: &Value) -> Cell {
        match v {
            Value::Null => Cell::Null,
            Value::String(s) => Cell::Str(s.clone()),
            other => Cell::Json(other.clone()),
        }
    }

    /// The text the table shows (before splitting into lines).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Cell::Null => Cow::Borrowed("None"),
            Cell::Empty => Cow::Borrowed(""),
            Cell::Str(s) => Cow::Borrowed(s),
            Cell::Int(i) => Cow::Owned(i.to_string()),
            Cell::Bool(true) => Cow::Borrowed("True"),
            Cell::Bool(false) => Cow::Borrowed("False"),
            Cell::List(items) => join_list(items),
            Cell::Age { text, .. } => Cow::Borrowed(text),
            Cell::Json(Value::Array(items)) if items.iter().all(Value::is_string) => {
                let strs: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                Cow::Owned(strs.join(","))
            }
            Cell::Json(v) => py_str(v),
        }
    }

    /// The JSON value the web API emits.
    pub fn to_json_value(&self) -> Value {
        match self {
            Cell::Null | Cell::Empty => Value::Null,
            Cell::Str(s) => Value::String(s.clone()),
            Cell::Int(i) => Value::from(*i),
            Cell::Bool(b) => Value::Bool(*b),
            Cell::List(items) => Value::Array(items.iter().cloned().map(Value::String).collect()),
            Cell::Age { epoch, .. } => Value::from(*epoch),
            Cell::Json(v) => v.clone(),
        }
    }

    /// Appends the JSON form (Python `json.dumps` style) to `out`.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Cell::Null | Cell::Empty => out.push_str("null"),
            Cell::Str(s) => json_str_into(s, out),
            Cell::Int(i) => push_int(*i, out),
            Cell::Bool(true) => out.push_str("true"),
            Cell::Bool(false) => out.push_str("false"),
            Cell::List(items) => {
                out.push('[');
                for (i, s) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    json_str_into(s, out);
                }
                out.push(']');
            }
            Cell::Age { epoch, .. } => push_int(*epoch, out),
            Cell::Json(v) => json_value_into(v, out),
        }
    }
}

fn join_list(items: &[String]) -> Cow<'_, str> {
    match items {
        [] => Cow::Borrowed(""),
        [one] => Cow::Borrowed(one),
        many => Cow::Owned(many.join(",")),
    }
}

fn push_int(i: i64, out: &mut String) {
    use std::fmt::Write as _;
    let _ = write!(out, "{i}");
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Str(s.to_string())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Str(s)
    }
}

impl From<i64> for Cell {
    fn from(i: i64) -> Self {
        Cell::Int(i)
    }
}

impl From<bool> for Cell {
    fn from(b: bool) -> Self {
        Cell::Bool(b)
    }
}

/// The output format of a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// The PrettyTable text.
    Text,
    /// The JSON list of objects.
    Json,
}

/// A `fields=a,b,c` selection of columns by key (web text output; the CLI's `list`
/// without `--detail` uses it too). Like Nodepool, the selection keeps the listing's
/// column order (not the order given), and names that are not column keys are
/// **ignored**; an empty value (`fields=`) means every column. If no name matches, the
/// table has no columns at all and prints like PrettyTable does then (`++`, `||`, `++`,
/// one empty line per row, `++`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields(Vec<String>);

impl Fields {
    /// Parses a `fields` query value (split on `,`, no trimming, like Nodepool). An empty
    /// value gives `None` (every column).
    pub fn parse(param: &str) -> Option<Fields> {
        if param.is_empty() {
            return None;
        }
        Some(Fields(param.split(',').map(str::to_string).collect()))
    }

    /// A selection of the given keys.
    pub fn from_keys<I, S>(keys: I) -> Fields
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Fields(keys.into_iter().map(Into::into).collect())
    }

    /// True if `key` is selected.
    pub fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|f| f == key)
    }

    /// The names as given.
    pub fn names(&self) -> &[String] {
        &self.0
    }
}

/// A listing: columns and rows of cells. A row shorter than the header is shown with
/// empty cells (text) and `null`s (JSON); extra cells are ignored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// The columns, in display order.
    pub headers: Vec<Column>,
    /// The rows, each one cell per column.
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(headers: Vec<Column>) -> Self {
        Table {
            headers,
            rows: Vec::new(),
        }
    }

    /// An empty table with room for `rows` rows.
    pub fn with_capacity(headers: Vec<Column>, rows: usize) -> Self {
        Table {
            headers,
            rows: Vec::with_capacity(rows),
        }
    }

    /// Appends a row.
    pub fn push_row(&mut self, row: Vec<Cell>) {
        self.rows.push(row);
    }

    /// The column keys, in order.
    pub fn keys(&self) -> Vec<&'static str> {
        self.headers.iter().map(|c| c.key).collect()
    }

    /// The index of the column with `key`.
    pub fn column_index(&self, key: &str) -> Option<usize> {
        self.headers.iter().position(|c| c.key == key)
    }

    /// The cell of `row` in the column with `key`.
    pub fn cell(&self, row: usize, key: &str) -> Option<&Cell> {
        let col = self.column_index(key)?;
        self.rows.get(row)?.get(col)
    }

    /// Indices of the columns selected by `fields` (all when `None`), in table order.
    pub fn selected_columns(&self, fields: Option<&Fields>) -> Vec<usize> {
        match fields {
            None => (0..self.headers.len()).collect(),
            Some(f) => (0..self.headers.len())
                .filter(|&i| f.contains(self.headers[i].key))
                .collect(),
        }
    }

    /// Renders in `format`; `fields` applies to text only (JSON always has every column).
    pub fn render(&self, format: OutputFormat, fields: Option<&Fields>) -> String {
        match format {
            OutputFormat::Text => self.render_text_fields(fields),
            OutputFormat::Json => self.render_json(),
        }
    }

    /// The PrettyTable text of every column (no trailing newline).
    pub fn render_text(&self) -> String {
        self.render_text_fields(None)
    }

    /// The PrettyTable text of the columns selected by `fields` (no trailing newline).
    pub fn render_text_fields(&self, fields: Option<&Fields>) -> String {
        self.render_with(OutputFormat::Text, fields)
    }

    /// The JSON list of objects, as Python's `json.dumps(objs)` writes it.
    pub fn render_json(&self) -> String {
        self.render_with(OutputFormat::Json, None)
    }

    fn render_with(&self, format: OutputFormat, fields: Option<&Fields>) -> String {
        let mut w = TableWriter::new(self.headers.clone(), format, fields);
        for row in &self.rows {
            w.push_row(row);
        }
        w.finish()
    }

    /// The JSON list as a value (for callers that embed it).
    pub fn to_json_value(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|row| {
                    let mut m = serde_json::Map::with_capacity(self.headers.len());
                    for (j, col) in self.headers.iter().enumerate() {
                        m.insert(
                            col.key.to_string(),
                            row.get(j).map_or(Value::Null, Cell::to_json_value),
                        );
                    }
                    Value::Object(m)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn small() -> Table {
        let mut t = Table::new(vec![Column::new("id", "ID"), Column::new("name", "Name")]);
        t.push_row(vec![Cell::from("1"), Cell::from("alpha")]);
        t.push_row(vec![Cell::from("22"), Cell::Null]);
        t
    }

    #[test]
    fn text_like_prettytable() {
        assert_eq!(
            small().render_text(),
            "+----+-------+\n\
             | ID | Name  |\n\
             +----+-------+\n\
             | 1  | alpha |\n\
             | 22 | None  |\n\
             +----+-------+"
        );
    }

    #[test]
    fn empty_table_prints_header_and_two_rules() {
        let t = Table::new(vec![Column::new("id", "ID")]);
        assert_eq!(t.render_text(), "+----+\n| ID |\n+----+\n+----+");
        assert_eq!(t.render_json(), "[]");
    }

    #[test]
    fn multi_line_cells_are_top_aligned() {
        let mut t = Table::new(vec![Column::new("a", "A"), Column::new("b", "B")]);
        t.push_row(vec![Cell::from("x\nyy\n"), Cell::from("z")]);
        assert_eq!(
            t.render_text(),
            "+----+---+\n\
             | A  | B |\n\
             +----+---+\n\
             | x  | z |\n\
             | yy |   |\n\
             |    |   |\n\
             +----+---+"
        );
    }

    #[test]
    fn wide_and_control_characters() {
        let mut t = Table::new(vec![Column::new("a", "A")]);
        t.push_row(vec![Cell::from("日本")]);
        t.push_row(vec![Cell::from("ab\u{8}")]);
        t.push_row(vec![Cell::from("\u{1b}[1mb\u{1b}[0m")]);
        assert_eq!(
            t.render_text(),
            "+------+\n\
             | A    |\n\
             +------+\n\
             | 日本 |\n\
             | ab\u{8}    |\n\
             | \u{1b}[1mb\u{1b}[0m    |\n\
             +------+"
        );
    }

    #[test]
    fn fields_keep_table_order_and_ignore_unknown() {
        let t = small();
        let f = Fields::parse("name,bogus,id").unwrap();
        assert_eq!(t.selected_columns(Some(&f)), vec![0, 1]);
        let f = Fields::parse("name,").unwrap();
        assert_eq!(
            t.render_text_fields(Some(&f)),
            "+-------+\n| Name  |\n+-------+\n| alpha |\n| None  |\n+-------+"
        );
        assert_eq!(Fields::parse(""), None);
        let none = Fields::parse("nope").unwrap();
        assert_eq!(t.render_text_fields(Some(&none)), "++\n||\n++\n\n\n++");
        // JSON ignores the selection.
        assert_eq!(
            t.render(OutputFormat::Json, Some(&none)),
            r#"[{"id": "1", "name": "alpha"}, {"id": "22", "name": null}]"#
        );
    }

    #[test]
    fn json_types() {
        let mut t = Table::new(vec![
            Column::new("s", "S"),
            Column::new("i", "I"),
            Column::new("b", "B"),
            Column::new("l", "L"),
            Column::new("age", "Age"),
            Column::new("j", "J"),
            Column::new("e", "E"),
        ]);
        t.push_row(vec![
            Cell::from("é"),
            Cell::Int(-3),
            Cell::Bool(true),
            Cell::List(vec!["a".into(), "b".into()]),
            Cell::Age {
                epoch: 1_700_000_000,
                text: "00:00:00:01".into(),
            },
            Cell::json(&json!({"k": [1, 2.5]})),
            Cell::Empty,
        ]);
        let s = t.render_json();
        assert_eq!(
            s,
            r#"[{"s": "\u00e9", "i": -3, "b": true, "l": ["a", "b"], "age": 1700000000, "j": {"k": [1, 2.5]}, "e": null}]"#
        );
        let parsed: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(parsed, t.to_json_value());
        assert_eq!(
            t.render_text(),
            "+---+----+------+-----+-------------+-----------------+---+\n\
             | S | I  | B    | L   | Age         | J               | E |\n\
             +---+----+------+-----+-------------+-----------------+---+\n\
             | é | -3 | True | a,b | 00:00:00:01 | {'k': [1, 2.5]} |   |\n\
             +---+----+------+-----+-------------+-----------------+---+"
        );
    }

    #[test]
    fn ragged_rows_do_not_panic() {
        let mut t = Table::new(vec![Column::new("a", "A"), Column::new("b", "B")]);
        t.push_row(vec![Cell::from("x")]);
        t.push_row(vec![Cell::from("y"), Cell::from("z"), Cell::from("extra")]);
        t.push_row(vec![]);
        assert_eq!(
            t.render_text(),
            "+---+---+\n| A | B |\n+---+---+\n| x |   |\n| y | z |\n|   |   |\n+---+---+"
        );
        assert_eq!(
            t.render_json(),
            r#"[{"a": "x", "b": null}, {"a": "y", "b": "z"}, {"a": null, "b": null}]"#
        );
    }

    #[test]
    fn huge_cells() {
        let big = "x".repeat(100_000);
        let mut t = Table::new(vec![Column::new("a", "A")]);
        t.push_row(vec![Cell::from(big.as_str())]);
        let s = t.render_text();
        assert_eq!(s.lines().count(), 5);
        assert!(s.lines().all(|l| l.len() == 100_004));
    }
}
