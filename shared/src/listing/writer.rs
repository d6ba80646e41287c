//! Listings written row by row, without a [`super::Table`] of every row's cells: a
//! listing of 100,000 nodes then costs its output and little more.
//!
//! * [`TextLayout`]: the PrettyTable geometry (column widths, row heights) measured in a
//!   first pass over the rows and used to write them in a second pass. A caller that
//!   can produce its rows twice (the web API, from a snapshot of the tree cache) keeps
//!   nothing but the output.
//! * [`TableWriter`]: for rows that come once (the CLI, from ZooKeeper): JSON rows are
//!   written as they come; text cells are packed into chunked buffers (one allocation
//!   per 256 KiB, 8 bytes of bookkeeping per cell) until the widths are known.
//!
//! [`super::Table`] renders through [`TableWriter`], so all produce the same bytes.

use std::fmt::Write as _;

use super::table::{Cell, Column, Fields, OutputFormat};
use super::width::{block_size, line_width};
use crate::pyfmt::json_str_into;

/// The selected columns, their widths and the number of rows of a text table.
#[derive(Clone, Debug)]
pub struct TextLayout {
    headers: Vec<Column>,
    cols: Vec<usize>,
    widths: Vec<i64>,
    rows: usize,
    extra_lines: usize,
    text_bytes: usize,
}

impl TextLayout {
    /// A layout of `headers`; `fields` selects the columns shown (all when `None`).
    pub fn new(headers: Vec<Column>, fields: Option<&Fields>) -> Self {
        let cols: Vec<usize> = match fields {
            None => (0..headers.len()).collect(),
            Some(f) => (0..headers.len())
                .filter(|&i| f.contains(headers[i].key))
                .collect(),
        };
        let widths = cols
            .iter()
            .map(|&c| block_size(headers[c].title).0)
            .collect();
        TextLayout {
            headers,
            cols,
            widths,
            rows: 0,
            extra_lines: 0,
            text_bytes: 0,
        }
    }

    /// Number of rows measured.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// First pass: takes a row's cells into account.
    pub fn measure(&mut self, row: &[Cell]) {
        let mut height = 1;
        for j in 0..self.cols.len() {
            let text = self.cell_text(row, j);
            height = height.max(self.measure_text(j, &text).1);
        }
        self.end_row(height);
    }

    fn cell_text<'a>(&self, row: &'a [Cell], j: usize) -> std::borrow::Cow<'a, str> {
        row.get(self.cols[j]).map(Cell::text).unwrap_or_default()
    }

    /// Widens column `j` for `text`; returns its width and number of lines.
    fn measure_text(&mut self, j: usize, text: &str) -> (i64, usize) {
        let (width, lines) = block_size(text);
        self.widths[j] = self.widths[j].max(width);
        self.text_bytes += text.len();
        (width, lines)
    }

    fn end_row(&mut self, height: usize) {
        self.rows += 1;
        self.extra_lines += height - 1;
    }

    /// The length of the whole text (a close upper bound), to size its buffer.
    pub fn len_hint(&self) -> usize {
        let line = self.line_len();
        (4 + self.header_lines() + self.rows + self.extra_lines) * (line + 1) + self.text_bytes
    }

    fn line_len(&self) -> usize {
        1 + self.widths.iter().map(|w| w.max(&0) + 3).sum::<i64>() as usize
    }

    fn header_lines(&self) -> usize {
        self.cols
            .iter()
            .map(|&c| block_size(self.headers[c].title).1)
            .max()
            .unwrap_or(1)
    }

    fn rule(&self) -> String {
        let mut rule = String::with_capacity(self.line_len());
        rule.push('+');
        for w in &self.widths {
            push_repeat(&mut rule, '-', (*w + 2).max(0) as usize);
            rule.push('+');
        }
        rule
    }

    /// Second pass, first: the top rule, the header and the rule below it (for a table
    /// without columns, PrettyTable's `++`, `||`, `++`).
    pub fn write_header(&self, out: &mut impl std::fmt::Write) {
        if self.cols.is_empty() {
            let _ = out.write_str("++\n||\n++");
            return;
        }
        let rule = self.rule();
        let _ = out.write_str(&rule);
        let _ = out.write_char('\n');
        let mut line = String::with_capacity(rule.len() + 1);
        for y in 0..self.header_lines() {
            line.clear();
            line.push('|');
            for (j, &c) in self.cols.iter().enumerate() {
                let text = self.headers[c].title.split('\n').nth(y).unwrap_or("");
                push_padded(&mut line, text, line_width(text), self.widths[j]);
            }
            line.push('\n');
            let _ = out.write_str(&line);
        }
        let _ = out.write_str(&rule);
    }

    /// Second pass: one row (the same cells as measured, in the same order).
    pub fn write_row(&self, row: &[Cell], out: &mut impl std::fmt::Write) {
        let texts: Vec<_> = (0..self.cols.len())
            .map(|j| self.cell_text(row, j))
            .collect();
        self.write_texts(texts.iter().map(|t| (&**t, None)), out);
    }

    /// Writes one row from its cell texts, with their widths if known.
    fn write_texts<'a>(
        &self,
        texts: impl ExactSizeIterator<Item = (&'a str, Option<i64>)> + Clone,
        out: &mut impl std::fmt::Write,
    ) {
        let _ = out.write_char('\n');
        if self.cols.is_empty() {
            return;
        }
        let height = texts
            .clone()
            .map(|(t, _)| t.bytes().filter(|b| *b == b'\n').count() + 1)
            .max()
            .unwrap_or(1);
        let mut line = String::with_capacity(self.line_len() * height + 1);
        line.push('|');
        if height == 1 {
            for (j, (text, width)) in texts.enumerate() {
                let w = width.unwrap_or_else(|| line_width(text));
                push_padded(&mut line, text, w, self.widths[j]);
            }
        } else {
            let mut iters: Vec<std::str::Split<'_, char>> =
                texts.map(|(t, _)| t.split('\n')).collect();
            for y in 0..height {
                if y > 0 {
                    line.push_str("\n|");
                }
                for (j, it) in iters.iter_mut().enumerate() {
                    let text = it.next().unwrap_or("");
                    push_padded(&mut line, text, line_width(text), self.widths[j]);
                }
            }
        }
        let _ = out.write_str(&line);
    }

    /// Second pass, last: the bottom rule.
    pub fn write_footer(&self, out: &mut impl std::fmt::Write) {
        let _ = out.write_char('\n');
        if self.cols.is_empty() {
            let _ = out.write_str("++");
        } else {
            let _ = out.write_str(&self.rule());
        }
    }
}

/// Appends one row of a JSON listing (`{"key": value, …}`, preceded by `, ` unless it is
/// the first) to `out`, as Python's `json.dumps` writes it.
pub fn write_json_row(headers: &[Column], row: &[Cell], first: bool, out: &mut String) {
    if !first {
        out.push_str(", ");
    }
    out.push('{');
    for (j, col) in headers.iter().enumerate() {
        if j > 0 {
            out.push_str(", ");
        }
        json_str_into(col.key, out);
        out.push_str(": ");
        row.get(j).unwrap_or(&Cell::Null).write_json(out);
    }
    out.push('}');
}

/// Where a cell's text ends in its chunk, and its measured width.
#[derive(Clone, Copy)]
struct CellPos {
    end: u32,
    width: i32,
}

/// Cell texts of consecutive rows.
struct Chunk {
    buf: String,
    cells: Vec<CellPos>,
}

/// A chunk holds about this many bytes of text (one more cell may overflow it).
const CHUNK_BYTES: usize = 256 * 1024;

/// A listing being written: rows are pushed in display order, the output is produced
/// by [`TableWriter::finish`] or [`TableWriter::write_to`].
pub struct TableWriter {
    headers: Vec<Column>,
    format: OutputFormat,
    /// JSON: the output so far.
    json: String,
    /// Text: the geometry, and the cell texts of the rows pushed.
    layout: TextLayout,
    chunks: Vec<Chunk>,
    /// Text: a width or offset that does not fit the packed form (never seen in
    /// practice: a cell of 2 GB) makes the writer keep its own copy of such a cell.
    oversized: Vec<(usize, String)>,
    cells: usize,
}

impl TableWriter {
    /// A writer for `headers` in `format`; `fields` selects the columns of text output
    /// (JSON always has every column), as [`super::Table::render`] does.
    pub fn new(headers: Vec<Column>, format: OutputFormat, fields: Option<&Fields>) -> Self {
        let layout = match format {
            OutputFormat::Text => TextLayout::new(headers.clone(), fields),
            OutputFormat::Json => TextLayout::new(Vec::new(), None),
        };
        TableWriter {
            json: match format {
                OutputFormat::Json => String::from("["),
                OutputFormat::Text => String::new(),
            },
            headers,
            format,
            layout,
            chunks: Vec::new(),
            oversized: Vec::new(),
            cells: 0,
        }
    }

    /// Number of rows pushed.
    pub fn rows(&self) -> usize {
        self.layout.rows
    }

    /// Appends a row (a row shorter than the header gets empty cells in text and
    /// `null`s in JSON; extra cells are ignored).
    pub fn push_row(&mut self, row: &[Cell]) {
        match self.format {
            OutputFormat::Json => {
                write_json_row(&self.headers, row, self.layout.rows == 0, &mut self.json);
                self.layout.rows += 1;
            }
            OutputFormat::Text => self.push_text(row),
        }
    }

    fn push_text(&mut self, row: &[Cell]) {
        let mut height = 1;
        for j in 0..self.layout.cols.len() {
            let text = self.layout.cell_text(row, j);
            let (width, lines) = self.layout.measure_text(j, &text);
            height = height.max(lines);
            self.store(&text, width);
        }
        self.layout.end_row(height);
    }

    fn store(&mut self, text: &str, width: i64) {
        let need_new = match self.chunks.last() {
            None => true,
            Some(c) => c.buf.len() >= CHUNK_BYTES,
        };
        if need_new {
            self.chunks.push(Chunk {
                buf: String::with_capacity(CHUNK_BYTES.max(text.len())),
                cells: Vec::with_capacity(CHUNK_BYTES / 16),
            });
        }
        let index = self.cells;
        self.cells += 1;
        let Some(chunk) = self.chunks.last_mut() else {
            return;
        };
        let end = u32::try_from(chunk.buf.len() + text.len());
        match (end, i32::try_from(width)) {
            (Ok(end), Ok(width)) => {
                chunk.buf.push_str(text);
                chunk.cells.push(CellPos { end, width });
            }
            _ => {
                let start = u32::try_from(chunk.buf.len()).unwrap_or(u32::MAX);
                chunk.cells.push(CellPos {
                    end: start,
                    width: 0,
                });
                self.oversized.push((index, text.to_string()));
            }
        }
    }

    /// Calls `f` with the texts and widths of every row, in order.
    fn for_each_row(&self, mut f: impl FnMut(&[(&str, Option<i64>)])) {
        let ncols = self.layout.cols.len();
        let mut row: Vec<(&str, Option<i64>)> = Vec::with_capacity(ncols);
        let mut oversized = self.oversized.iter().peekable();
        let mut index = 0usize;
        for chunk in &self.chunks {
            let mut start = 0usize;
            for p in &chunk.cells {
                let end = p.end as usize;
                match oversized.peek() {
                    Some((i, text)) if *i == index => {
                        row.push((text.as_str(), None));
                        oversized.next();
                    }
                    _ => row.push((
                        chunk.buf.get(start..end).unwrap_or(""),
                        Some(i64::from(p.width)),
                    )),
                }
                start = end;
                index += 1;
                if row.len() == ncols {
                    f(&row);
                    row.clear();
                }
            }
        }
        // Rows without shown columns have no cells.
        if ncols == 0 {
            for _ in 0..self.layout.rows {
                f(&[]);
            }
        }
    }

    fn write_text(&self, out: &mut impl std::fmt::Write) {
        self.layout.write_header(out);
        self.for_each_row(|row| self.layout.write_texts(row.iter().copied(), out));
        self.layout.write_footer(out);
    }

    /// The whole output (no trailing newline), as [`super::Table::render`] gives it.
    pub fn finish(mut self) -> String {
        match self.format {
            OutputFormat::Json => {
                self.json.push(']');
                self.json
            }
            OutputFormat::Text => {
                let mut out = String::with_capacity(self.layout.len_hint());
                self.write_text(&mut out);
                out
            }
        }
    }

    /// Writes the output (no trailing newline) to `out` without building it in memory
    /// first.
    pub fn write_to<W: std::io::Write>(mut self, out: W) -> std::io::Result<()> {
        let mut sink = IoSink {
            inner: std::io::BufWriter::with_capacity(256 * 1024, out),
            err: None,
        };
        match self.format {
            OutputFormat::Json => {
                self.json.push(']');
                let _ = sink.write_str(&self.json);
            }
            OutputFormat::Text => self.write_text(&mut sink),
        }
        if let Some(e) = sink.err {
            return Err(e);
        }
        sink.inner.into_inner().map_err(|e| e.into_error())?.flush()
    }
}

/// `fmt::Write` over an `io::Write`, keeping the first error.
struct IoSink<W: std::io::Write> {
    inner: W,
    err: Option<std::io::Error>,
}

impl<W: std::io::Write> std::fmt::Write for IoSink<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.err.is_some() {
            return Err(std::fmt::Error);
        }
        self.inner.write_all(s.as_bytes()).map_err(|e| {
            self.err = Some(e);
            std::fmt::Error
        })
    }
}

const SPACES: &str = "                                                                ";
const DASHES: &str = "----------------------------------------------------------------";

fn push_repeat(out: &mut String, c: char, mut n: usize) {
    let chunk = if c == ' ' { SPACES } else { DASHES };
    while n > 0 {
        let k = n.min(chunk.len());
        out.push_str(&chunk[..k]);
        n -= k;
    }
}

/// Appends ` text<pad> |` where the pad fills `text` (measured `width`) to `col_width`.
fn push_padded(out: &mut String, text: &str, width: i64, col_width: i64) {
    out.push(' ');
    out.push_str(text);
    push_repeat(out, ' ', (col_width - width).max(0) as usize);
    out.push_str(" |");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listing::table::Table;

    fn table() -> Table {
        let mut t = Table::new(vec![
            Column::new("id", "ID"),
            Column::new("name", "Name"),
            Column::new("list", "List"),
        ]);
        t.push_row(vec![
            Cell::from("1"),
            Cell::from("alpha"),
            Cell::List(vec![]),
        ]);
        t.push_row(vec![Cell::from("22"), Cell::from("b\nc\n"), Cell::Int(3)]);
        t.push_row(vec![Cell::from("日本"), Cell::Null]);
        t.push_row(vec![Cell::from("ab\u{8}"), Cell::from("x".repeat(300_000))]);
        t
    }

    #[test]
    fn streamed_output_equals_the_table() {
        let t = table();
        for format in [OutputFormat::Text, OutputFormat::Json] {
            for fields in [None, Fields::parse("name"), Fields::parse("x")] {
                let want = t.render(format, fields.as_ref());
                let mut w = TableWriter::new(t.headers.clone(), format, fields.as_ref());
                for row in &t.rows {
                    w.push_row(row);
                }
                let mut out = Vec::new();
                w.write_to(&mut out).unwrap();
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    want,
                    "{format:?} {fields:?}"
                );
            }
        }
    }

    #[test]
    fn two_passes_equal_the_table() {
        let t = table();
        for fields in [None, Fields::parse("name,list"), Fields::parse("x")] {
            let mut layout = TextLayout::new(t.headers.clone(), fields.as_ref());
            for row in &t.rows {
                layout.measure(row);
            }
            let mut out = String::with_capacity(layout.len_hint());
            layout.write_header(&mut out);
            for row in &t.rows {
                layout.write_row(row, &mut out);
            }
            layout.write_footer(&mut out);
            assert_eq!(out, t.render_text_fields(fields.as_ref()), "{fields:?}");
            assert!(out.len() <= layout.len_hint());
        }
    }

    #[test]
    fn write_errors_are_returned() {
        struct Broken;
        impl std::io::Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "closed",
                ))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut w = TableWriter::new(vec![Column::new("a", "A")], OutputFormat::Text, None);
        for _ in 0..100_000 {
            w.push_row(&[Cell::from("some text")]);
        }
        let e = w.write_to(Broken).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    }
}
