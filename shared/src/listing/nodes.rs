//! The node listing (`nodepool list [--detail]`, web `/node-list`): 9 columns, or 21 with
//! `--detail` (the web always has 21).
//!
//! Values as Nodepool shows them: `label` is the node's label list (text joined by `,`,
//! JSON a list), `server_id` the cloud server id, `ipv6` the public IPv6, `age` the
//! formatted `DD:HH:MM:SS` since `state_time` (a string in JSON too), `locked`
//! `locked`/`unlocked` (whether some client holds the node lock, a fact the caller
//! supplies), `AZ` (upper case key) the availability zone, `connection_port` the port
//! (an int; a non-integer port is shown as `redacted`, see [`redacted_port`]), and
//! `user_data` / `driver_data` the opaque values. Rows are sorted by node id.

use serde_json::Value;

use super::age::format_age;
use super::node_json::ListedNode;
use super::table::{Cell, Column, Fields, OutputFormat, Table};
use super::writer::{write_json_row, TableWriter, TextLayout};
use crate::model::{CompactNode, Node};

/// Which node columns to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeColumns {
    /// The 9 columns of `nodepool list`.
    Brief,
    /// All 21 columns (`nodepool list --detail`, web `/node-list`).
    Detail,
}

/// All 21 columns, in order.
pub const NODE_COLUMNS: [Column; 21] = [
    Column::new("id", "ID"),
    Column::new("provider", "Provider"),
    Column::new("label", "Label"),
    Column::new("server_id", "Server ID"),
    Column::new("public_ipv4", "Public IPv4"),
    Column::new("ipv6", "IPv6"),
    Column::new("state", "State"),
    Column::new("age", "Age"),
    Column::new("locked", "Locked"),
    Column::new("pool", "Pool"),
    Column::new("hostname", "Hostname"),
    Column::new("private_ipv4", "Private IPv4"),
    Column::new("AZ", "AZ"),
    Column::new("username", "Username"),
    Column::new("connection_port", "Port"),
    Column::new("launcher", "Launcher"),
    Column::new("allocated_to", "Allocated To"),
    Column::new("hold_job", "Hold Job"),
    Column::new("comment", "Comment"),
    Column::new("user_data", "User Data"),
    Column::new("driver_data", "Driver Data"),
];

/// The keys of the 9 brief columns (the `fields` the CLI uses without `--detail`).
pub const NODE_BRIEF_KEYS: [&str; 9] = [
    "id",
    "provider",
    "label",
    "server_id",
    "public_ipv4",
    "ipv6",
    "state",
    "age",
    "locked",
];

/// The port cell for a raw `connection_port` value: a JSON integer is shown as the
/// number, anything else (e.g. the credentials dict some drivers keep
/// there) as `redacted`.
pub fn redacted_port(v: &Value) -> Cell {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cell::Int(i),
            None => Cell::from("redacted"),
        },
        _ => Cell::from("redacted"),
    }
}

fn opt(v: &Option<String>) -> Cell {
    Cell::opt(v.as_deref())
}

/// A string cell from an owned value (`None` → `None`), without copying the text.
fn owned(v: Option<String>) -> Cell {
    v.map_or(Cell::Null, Cell::Str)
}

/// The cells of one node, in [`NODE_COLUMNS`] order, pushed to `$row`. `$text!(node,
/// field)` turns a text field into a cell, `$get!(node, field)` reads any other field
/// and `$labels` gives the label list, so that the listings of borrowed, consumed and
/// cached nodes share one column order.
macro_rules! node_row {
    ($row:expr, $node:ident, $locked:expr, $now:expr, $columns:expr, $text:ident, $get:ident, $labels:expr) => {{
        let row: &mut Vec<Cell> = $row;
        row.push(Cell::Str($get!($node, id).to_string()));
        row.push($text!($node, provider));
        row.push(Cell::List($labels));
        row.push($text!($node, external_id));
        row.push($text!($node, public_ipv4));
        row.push($text!($node, public_ipv6));
        row.push(Cell::from($get!($node, state).as_str()));
        row.push(Cell::Str(format_age($now - $get!($node, state_time))));
        row.push(Cell::from(if $locked { "locked" } else { "unlocked" }));
        if $columns == NodeColumns::Detail {
            row.push($text!($node, pool));
            row.push($text!($node, hostname));
            row.push($text!($node, private_ipv4));
            row.push($text!($node, az));
            row.push($text!($node, username));
            row.push(Cell::Int(i64::from($get!($node, connection_port))));
            row.push($text!($node, launcher));
            row.push(Cell::opt($get!($node, allocated_to)));
            row.push($text!($node, hold_job));
            row.push($text!($node, comment));
            row.push(Cell::json(&$get!($node, user_data)));
            row.push(Cell::json(&$get!($node, driver_data)));
        }
    }};
}

/// A field of a [`Node`].
macro_rules! field {
    ($n:ident, allocated_to) => {
        $n.allocated_to.as_ref().map(|r| r.as_str())
    };
    ($n:ident, $f:ident) => {
        $n.$f
    };
}

/// A field of a [`CompactNode`] (its accessor).
macro_rules! accessor {
    ($n:ident, $f:ident) => {
        $n.$f()
    };
}

macro_rules! copied {
    ($n:ident, $f:ident) => {
        opt(&$n.$f)
    };
}

macro_rules! moved {
    ($n:ident, $f:ident) => {
        owned($n.$f.take())
    };
}

/// A field of a [`ListedNode`].
macro_rules! listed {
    ($n:ident, allocated_to) => {
        $n.allocated_to.as_deref()
    };
    ($n:ident, $f:ident) => {
        $n.$f
    };
}

macro_rules! listed_text {
    ($n:ident, $f:ident) => {
        Cell::opt($n.$f.as_deref())
    };
}

macro_rules! cached {
    ($n:ident, $f:ident) => {
        Cell::opt($n.$f())
    };
}

fn ncols(columns: NodeColumns) -> usize {
    match columns {
        NodeColumns::Brief => 9,
        NodeColumns::Detail => 21,
    }
}

fn table_for(columns: NodeColumns, rows: usize) -> Table {
    Table::with_capacity(NODE_COLUMNS[..ncols(columns)].to_vec(), rows)
}

/// Builds the node listing from `(node, locked)` pairs, with ages relative to `now`
/// (epoch seconds). Rows are sorted by node id.
pub fn node_list<'a, I>(nodes: I, now: f64, columns: NodeColumns) -> Table
where
    I: IntoIterator<Item = (&'a Node, bool)>,
{
    let mut items: Vec<(&Node, bool)> = nodes.into_iter().collect();
    items.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let mut table = table_for(columns, items.len());
    for (node, locked) in items {
        let mut row = Vec::with_capacity(ncols(columns));
        node_row!(
            &mut row,
            node,
            locked,
            now,
            columns,
            copied,
            field,
            node.node_type.clone()
        );
        table.push_row(row);
    }
    table
}

/// [`node_list`] for nodes the caller no longer needs: their texts move into the cells
/// instead of being copied (the CLI lists 10,000 nodes; docs/benchmarks.md).
pub fn node_list_owned(mut nodes: Vec<(Node, bool)>, now: f64, columns: NodeColumns) -> Table {
    nodes.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let mut table = table_for(columns, nodes.len());
    for (mut node, locked) in nodes {
        let labels = std::mem::take(&mut node.node_type);
        let mut row = Vec::with_capacity(ncols(columns));
        node_row!(&mut row, node, locked, now, columns, moved, field, labels);
        table.push_row(row);
    }
    table
}

/// The cells of a node read by [`ListedNode::parse`], in [`NODE_COLUMNS`] order (the
/// first 9 for [`NodeColumns::Brief`]), into `row` (cleared first): what
/// [`NodeListing::push`] shows for the same record read as a [`Node`].
pub fn listed_node_row(
    node: &ListedNode<'_>,
    locked: bool,
    now: f64,
    columns: NodeColumns,
    row: &mut Vec<Cell>,
) {
    row.clear();
    let labels = node.labels.iter().map(|l| l.to_string()).collect();
    node_row!(row, node, locked, now, columns, listed_text, listed, labels);
}

/// [`listed_node_row`] for a [`Node`] the caller no longer needs (its texts are moved).
pub fn owned_node_row(
    mut node: Node,
    locked: bool,
    now: f64,
    columns: NodeColumns,
    row: &mut Vec<Cell>,
) {
    row.clear();
    let labels = std::mem::take(&mut node.node_type);
    node_row!(row, node, locked, now, columns, moved, field, labels);
}

/// The node listing written node by node: what [`node_list`] renders, without a
/// [`Table`] of every row (a listing of 100,000 nodes keeps only its output and, for
/// text, the cell texts; see [`TableWriter`]). Nodes must be pushed in id order.
pub struct NodeListing {
    writer: TableWriter,
    now: f64,
    columns: NodeColumns,
    row: Vec<Cell>,
}

impl NodeListing {
    /// An empty listing with ages relative to `now`; `fields` selects text columns.
    pub fn new(
        now: f64,
        columns: NodeColumns,
        format: OutputFormat,
        fields: Option<&Fields>,
    ) -> Self {
        let headers = NODE_COLUMNS[..ncols(columns)].to_vec();
        NodeListing {
            writer: TableWriter::new(headers, format, fields),
            now,
            columns,
            row: Vec::with_capacity(ncols(columns)),
        }
    }

    /// Appends a node (its texts are copied).
    pub fn push(&mut self, node: &Node, locked: bool) {
        let (now, columns) = (self.now, self.columns);
        self.row.clear();
        node_row!(
            &mut self.row,
            node,
            locked,
            now,
            columns,
            copied,
            field,
            node.node_type.clone()
        );
        self.writer.push_row(&self.row);
    }

    /// Appends a node the caller no longer needs (its texts are moved).
    pub fn push_owned(&mut self, mut node: Node, locked: bool) {
        let (now, columns) = (self.now, self.columns);
        let labels = std::mem::take(&mut node.node_type);
        self.row.clear();
        node_row!(
            &mut self.row,
            node,
            locked,
            now,
            columns,
            moved,
            field,
            labels
        );
        self.writer.push_row(&self.row);
    }

    /// Appends the cells of one node ([`listed_node_row`], [`owned_node_row`]), made
    /// with this listing's `now` and columns.
    pub fn push_cells(&mut self, row: &[Cell]) {
        self.writer.push_row(row);
    }

    /// Appends a cached node (its texts are copied; the record is not rebuilt).
    pub fn push_compact(&mut self, node: &CompactNode, locked: bool) {
        let (now, columns) = (self.now, self.columns);
        let labels = node.labels().map(str::to_string).collect();
        self.row.clear();
        node_row!(
            &mut self.row,
            node,
            locked,
            now,
            columns,
            cached,
            accessor,
            labels
        );
        self.writer.push_row(&self.row);
    }

    /// Number of nodes pushed.
    pub fn len(&self) -> usize {
        self.writer.rows()
    }

    /// True when no node was pushed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole output (no trailing newline).
    pub fn finish(self) -> String {
        self.writer.finish()
    }

    /// Writes the output (no trailing newline) to `out`.
    pub fn write_to<W: std::io::Write>(self, out: W) -> std::io::Result<()> {
        self.writer.write_to(out)
    }
}

/// The node listing of cached nodes (in id order), written in two passes over them for
/// text (the column widths first), so that nothing but the output is kept.
pub fn render_compact_nodes(
    nodes: &[(&CompactNode, bool)],
    now: f64,
    columns: NodeColumns,
    format: OutputFormat,
    fields: Option<&Fields>,
) -> String {
    let mut whole = String::new();
    write_compact_nodes(
        nodes,
        |&(node, locked)| (node, locked),
        now,
        columns,
        format,
        fields,
        usize::MAX,
        |out| {
            whole = out;
            true
        },
    );
    whole
}

/// [`render_compact_nodes`] handed out in pieces of about `chunk` bytes (the last one
/// shorter): the web API's `/node-list` of 100,000 nodes (57 MB of JSON) is sent while
/// it is written, so that only a few pieces are in memory at a time. `node` gives each
/// item's cached node and lock flag; `emit` takes each piece in order and returns false
/// to stop early (the client went away). The pieces joined are exactly
/// [`render_compact_nodes`]'s output.
#[allow(clippy::too_many_arguments)]
pub fn write_compact_nodes<T>(
    nodes: &[T],
    node: impl Fn(&T) -> (&CompactNode, bool),
    now: f64,
    columns: NodeColumns,
    format: OutputFormat,
    fields: Option<&Fields>,
    chunk: usize,
    mut emit: impl FnMut(String) -> bool,
) {
    let headers = NODE_COLUMNS[..ncols(columns)].to_vec();
    let mut row = Vec::with_capacity(headers.len());
    let fill = |row: &mut Vec<Cell>, item: &T| {
        let (node, locked) = node(item);
        row.clear();
        let labels = node.labels().map(str::to_string).collect();
        node_row!(row, node, locked, now, columns, cached, accessor, labels);
    };
    let mut pieces = Pieces::new(chunk);
    match format {
        OutputFormat::Json => {
            pieces.out.push('[');
            for (i, item) in nodes.iter().enumerate() {
                fill(&mut row, item);
                write_json_row(&headers, &row, i == 0, &mut pieces.out);
                if i == 0 {
                    // Sized from the first row (+25 %), instead of doubling as it grows.
                    pieces.size_for(pieces.out.len() * nodes.len() / 4 * 5);
                }
                if !pieces.emit_full(&mut emit) {
                    return;
                }
            }
            pieces.out.push(']');
        }
        OutputFormat::Text => {
            let mut layout = TextLayout::new(headers, fields);
            for item in nodes {
                fill(&mut row, item);
                layout.measure(&row);
            }
            pieces.size_for(layout.len_hint());
            layout.write_header(&mut pieces.out);
            for item in nodes {
                fill(&mut row, item);
                layout.write_row(&row, &mut pieces.out);
                if !pieces.emit_full(&mut emit) {
                    return;
                }
            }
            layout.write_footer(&mut pieces.out);
        }
    }
    emit(pieces.out);
}

/// The piece of a listing being written by [`write_compact_nodes`].
struct Pieces {
    out: String,
    chunk: usize,
    /// The capacity of each new piece.
    capacity: usize,
}

impl Pieces {
    fn new(chunk: usize) -> Self {
        Pieces {
            out: String::new(),
            chunk,
            capacity: 0,
        }
    }

    /// Sizes the pieces for a listing of about `total` bytes: one piece of that size
    /// when it is not cut, else `chunk` and room for one more row.
    fn size_for(&mut self, total: usize) {
        self.capacity = if self.chunk == usize::MAX {
            total
        } else {
            self.chunk + self.chunk / 8
        };
        self.out
            .reserve(self.capacity.saturating_sub(self.out.len()));
    }

    /// Hands the piece out once it has `chunk` bytes; false when `emit` says stop.
    fn emit_full(&mut self, emit: &mut impl FnMut(String) -> bool) -> bool {
        if self.out.len() < self.chunk {
            return true;
        }
        let next = String::with_capacity(self.capacity);
        emit(std::mem::replace(&mut self.out, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listing::table::{Fields, OutputFormat};
    use crate::model::{NodeId, NodeState, RequestId};
    use serde_json::json;

    const NOW: f64 = 1_700_100_000.0;

    fn node(id: &str) -> Node {
        Node {
            id: NodeId::from(id),
            state: NodeState::Ready,
            state_time: NOW - 3_723.7,
            provider: Some("fake-provider".into()),
            pool: Some("main".into()),
            node_type: vec!["fake-label".into()],
            external_id: Some("fake-0001".into()),
            public_ipv4: Some("198.51.100.1".into()),
            private_ipv4: Some("10.0.0.1".into()),
            public_ipv6: Some("2001:db8::1".into()),
            az: Some("az1".into()),
            username: Some("zuul".into()),
            launcher: Some("fake-launcher".into()),
            ..Node::default()
        }
    }

    fn sample() -> Vec<Node> {
        let mut b = node("0000000002");
        b.node_type = vec!["a".into(), "b".into()];
        b.state = NodeState::InUse;
        b.allocated_to = Some(RequestId::from("100-0000000001"));
        b.comment = Some("held for débug".into());
        b.user_data = json!({"k": "v"});
        b.driver_data = json!("opaque");
        b.hostname = None;
        b.public_ipv6 = None;
        vec![b, node("0000000001")]
    }

    #[test]
    fn brief_text() {
        let nodes = sample();
        let t = node_list(
            nodes.iter().map(|n| (n, n.id == "0000000002")),
            NOW,
            NodeColumns::Brief,
        );
        assert_eq!(t.headers.len(), 9);
        assert_eq!(
            t.render_text(),
            "+------------+---------------+------------+-----------+--------------+-------------+--------+-------------+----------+\n\
             | ID         | Provider      | Label      | Server ID | Public IPv4  | IPv6        | State  | Age         | Locked   |\n\
             +------------+---------------+------------+-----------+--------------+-------------+--------+-------------+----------+\n\
             | 0000000001 | fake-provider | fake-label | fake-0001 | 198.51.100.1 | 2001:db8::1 | ready  | 00:01:02:03 | unlocked |\n\
             | 0000000002 | fake-provider | a,b        | fake-0001 | 198.51.100.1 | None        | in-use | 00:01:02:03 | locked   |\n\
             +------------+---------------+------------+-----------+--------------+-------------+--------+-------------+----------+"
        );
    }

    #[test]
    fn detail_text_has_21_columns() {
        let nodes = sample();
        let t = node_list(nodes.iter().map(|n| (n, false)), NOW, NodeColumns::Detail);
        assert_eq!(t.headers.len(), 21);
        let text = t.render_text();
        let header = text.lines().nth(1).unwrap();
        assert_eq!(
            header,
            "| ID         | Provider      | Label      | Server ID | Public IPv4  | IPv6        | State  | Age         | Locked   | Pool | Hostname | Private IPv4 | AZ  | Username | Port | Launcher      | Allocated To   | Hold Job | Comment        | User Data  | Driver Data |"
        );
        assert_eq!(
            text.lines().nth(4).unwrap(),
            "| 0000000002 | fake-provider | a,b        | fake-0001 | 198.51.100.1 | None        | in-use | 00:01:02:03 | unlocked | main | None     | 10.0.0.1     | az1 | zuul     | 22   | fake-launcher | 100-0000000001 | None     | held for débug | {'k': 'v'} | opaque      |"
        );
        // The brief listing equals the detailed one with the CLI's fields.
        let brief = node_list(nodes.iter().map(|n| (n, false)), NOW, NodeColumns::Brief);
        let f = Fields::from_keys(NODE_BRIEF_KEYS);
        assert_eq!(t.render_text_fields(Some(&f)), brief.render_text());
    }

    #[test]
    fn owned_listing_equals_borrowed() {
        let mut nodes = sample();
        nodes[1].user_data = json!(["x", "y"]);
        nodes[1].connection_port = 2022;
        nodes[1].hold_job = Some("job".into());
        for columns in [NodeColumns::Brief, NodeColumns::Detail] {
            let borrowed = node_list(
                nodes.iter().map(|n| (n, n.id == "0000000002")),
                NOW,
                columns,
            );
            let owned = node_list_owned(
                nodes
                    .iter()
                    .map(|n| (n.clone(), n.id == "0000000002"))
                    .collect(),
                NOW,
                columns,
            );
            assert_eq!(owned.rows, borrowed.rows);
            assert_eq!(owned.render_text(), borrowed.render_text());
            assert_eq!(owned.render_json(), borrowed.render_json());
        }
    }

    #[test]
    fn streamed_listing_equals_the_table() {
        let mut nodes = sample();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        nodes[0].comment = Some("two\nlines".into());
        let locked = |n: &Node| n.id == "0000000002";
        for columns in [NodeColumns::Brief, NodeColumns::Detail] {
            let table = node_list(nodes.iter().map(|n| (n, locked(n))), NOW, columns);
            for format in [OutputFormat::Text, OutputFormat::Json] {
                for fields in [None, Some(Fields::from_keys(NODE_BRIEF_KEYS))] {
                    let want = table.render(format, fields.as_ref());
                    let mut borrowed = NodeListing::new(NOW, columns, format, fields.as_ref());
                    let mut owned = NodeListing::new(NOW, columns, format, fields.as_ref());
                    let mut compact = NodeListing::new(NOW, columns, format, fields.as_ref());
                    for n in &nodes {
                        borrowed.push(n, locked(n));
                        owned.push_owned(n.clone(), locked(n));
                        compact.push_compact(&CompactNode::from(n.clone()), locked(n));
                    }
                    assert_eq!(borrowed.len(), 2);
                    assert_eq!(borrowed.finish(), want);
                    assert_eq!(compact.finish(), want);
                    let cached: Vec<CompactNode> =
                        nodes.iter().map(|n| CompactNode::from(n.clone())).collect();
                    let pairs: Vec<(&CompactNode, bool)> =
                        cached.iter().map(|c| (c, c.id() == "0000000002")).collect();
                    assert_eq!(
                        render_compact_nodes(&pairs, NOW, columns, format, fields.as_ref()),
                        want
                    );
                    for chunk in [1, 7, 100, 100_000] {
                        let mut pieces = Vec::new();
                        write_compact_nodes(
                            &cached,
                            |c| (c, c.id() == "0000000002"),
                            NOW,
                            columns,
                            format,
                            fields.as_ref(),
                            chunk,
                            |piece| {
                                pieces.push(piece);
                                true
                            },
                        );
                        assert_eq!(pieces.concat(), want, "chunk {chunk}");
                        if chunk == 1 {
                            // Header, a piece per row, then the end.
                            assert!(pieces.len() >= 3, "{pieces:?}");
                        }
                    }
                    // A consumer that stops gets nothing more.
                    let mut calls = 0;
                    write_compact_nodes(
                        &cached,
                        |c| (c, false),
                        NOW,
                        columns,
                        format,
                        fields.as_ref(),
                        1,
                        |_| {
                            calls += 1;
                            false
                        },
                    );
                    assert_eq!(calls, 1);
                    let mut out = Vec::new();
                    owned.write_to(&mut out).unwrap();
                    assert_eq!(String::from_utf8(out).unwrap(), want);
                }
            }
        }
    }

    #[test]
    fn json_keys_and_types() {
        let nodes = sample();
        let t = node_list(nodes.iter().map(|n| (n, true)), NOW, NodeColumns::Detail);
        let body = t.render(OutputFormat::Json, None);
        let v: Value = serde_json::from_str(&body).unwrap();
        let rows = v.as_array().unwrap();
        assert_eq!(rows.len(), 2);
        let keys: Vec<&str> = rows[1]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "id",
                "provider",
                "label",
                "server_id",
                "public_ipv4",
                "ipv6",
                "state",
                "age",
                "locked",
                "pool",
                "hostname",
                "private_ipv4",
                "AZ",
                "username",
                "connection_port",
                "launcher",
                "allocated_to",
                "hold_job",
                "comment",
                "user_data",
                "driver_data"
            ]
        );
        let r = &rows[1];
        assert_eq!(r["id"], json!("0000000002"));
        assert_eq!(r["label"], json!(["a", "b"]));
        assert_eq!(r["age"], json!("00:01:02:03"));
        assert_eq!(r["locked"], json!("locked"));
        assert_eq!(r["connection_port"], json!(22));
        assert_eq!(r["ipv6"], Value::Null);
        assert_eq!(r["user_data"], json!({"k": "v"}));
        assert_eq!(r["driver_data"], json!("opaque"));
        assert!(body.contains(r#""comment": "held for d\u00e9bug""#));
        assert!(body.starts_with(
            r#"[{"id": "0000000001", "provider": "fake-provider", "label": ["fake-label"]"#
        ));
    }

    #[test]
    fn odd_values_do_not_panic() {
        let mut n = Node {
            id: NodeId::from("x"),
            state_time: f64::NAN,
            ..Node::default()
        };
        n.comment = Some("multi\nline\tcomment \u{7f}".into());
        n.user_data = json!([1, "two", null]);
        n.driver_data = json!(["a", "b"]);
        n.hostname = Some("ホスト".repeat(1000));
        let t = node_list([(&n, false)], NOW, NodeColumns::Detail);
        let text = t.render_text();
        assert_eq!(text.lines().count(), 4 + 2);
        assert!(text.contains("| [1, 'two', None] |"));
        assert!(text.contains("| a,b         |"));
        let v: Value = serde_json::from_str(&t.render_json()).unwrap();
        assert_eq!(v[0]["provider"], Value::Null);
        assert_eq!(v[0]["label"], json!([]));
        assert_eq!(v[0]["age"], json!("00:00:00:00"));
    }

    #[test]
    fn port_redaction() {
        assert_eq!(redacted_port(&json!(2222)), Cell::Int(2222));
        assert_eq!(
            redacted_port(&json!({"token": "s3cret"})),
            Cell::from("redacted")
        );
        assert_eq!(redacted_port(&json!("22")), Cell::from("redacted"));
        assert_eq!(redacted_port(&json!(1.5)), Cell::from("redacted"));
        assert_eq!(redacted_port(&Value::Null), Cell::from("redacted"));
    }

    #[test]
    fn ten_thousand_nodes() {
        let base = node("0");
        let nodes: Vec<Node> = (0..10_000u64)
            .rev()
            .map(|i| Node {
                id: NodeId::from_sequence(i),
                ..base.clone()
            })
            .collect();
        let t = node_list(nodes.iter().map(|n| (n, false)), NOW, NodeColumns::Brief);
        let text = t.render_text();
        assert_eq!(text.lines().count(), 10_004);
        assert!(text.lines().nth(3).unwrap().starts_with("| 0000000000 |"));
        let width = text.lines().next().unwrap().len();
        assert!(text.lines().all(|l| l.len() == width));
        let detail = node_list(nodes.iter().map(|n| (n, true)), NOW, NodeColumns::Detail);
        assert_eq!(detail.render_text().lines().count(), 10_004);
        let json = detail.render_json();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 10_000);
    }
}
