//! The nodes and requests tabs (views 1 and 2): their columns and rows.

use nodepool_shared::zk::CachedNode;

use crate::data::{RecordKey, Snapshot};
use crate::table::{Cell, ColumnDef, Row};

pub const NODE_COLUMNS: [ColumnDef; 11] = [
    ColumnDef::new("ID", 10, 10, 0),
    ColumnDef::new("State", 5, 9, 0),
    ColumnDef::new("Label", 5, 30, 0),
    ColumnDef::new("Provider", 6, 24, 1),
    ColumnDef::new("Age", 7, 8, 1),
    ColumnDef::new("IP", 7, 39, 2),
    ColumnDef::new("Locked", 6, 6, 2),
    ColumnDef::new("Pool", 4, 20, 3),
    ColumnDef::new("Server ID", 9, 36, 4),
    ColumnDef::new("Alloc To", 8, 14, 4),
    ColumnDef::new("Comment", 7, 40, 5),
];

/// The rows of the nodes tab, in the snapshot's order (by id).
pub fn node_rows(snap: &Snapshot) -> Vec<Row> {
    snap.nodes.iter().map(|c| node_row(c)).collect()
}

/// The row of one node.
pub fn node_row(c: &CachedNode) -> Row {
    let n = &c.node;
    let ip = n
        .interface_ip()
        .or_else(|| n.public_ipv4())
        .or_else(|| n.public_ipv6())
        .or_else(|| n.private_ipv4());
    let opt = |v: Option<&str>| Cell::opt(&v.map(str::to_string));
    Row::new(
        RecordKey::Node(n.id().clone()),
        vec![
            Cell::text(n.id().as_str()),
            Cell::state(n.state().as_str()),
            Cell::text(n.labels().collect::<Vec<_>>().join(",")),
            opt(n.provider()),
            Cell::time(Some(n.state_time())),
            opt(ip),
            Cell::text(if c.probably_locked() { "locked" } else { "" }),
            opt(n.pool()),
            opt(n.external_id()),
            Cell::text(n.allocated_to().unwrap_or_default()),
            opt(n.comment()),
        ],
    )
}

pub const REQUEST_COLUMNS: [ColumnDef; 11] = [
    ColumnDef::new("ID", 14, 14, 0),
    ColumnDef::new("State", 6, 9, 0),
    ColumnDef::new("Labels", 6, 30, 0),
    ColumnDef::new("Requestor", 6, 30, 1),
    ColumnDef::new("Age", 7, 8, 1),
    ColumnDef::new("Nodes", 5, 40, 2),
    ColumnDef::new("Prio", 4, 5, 3),
    ColumnDef::new("Locked", 6, 6, 3),
    ColumnDef::new("Declined", 8, 8, 4),
    ColumnDef::new("Provider", 6, 20, 4),
    ColumnDef::new("Tenant", 6, 20, 5),
];

pub fn request_rows(snap: &Snapshot) -> Vec<Row> {
    snap.requests
        .iter()
        .map(|c| {
            let r = &c.request;
            let nodes: Vec<&str> = r.nodes.iter().map(|n| n.as_str()).collect();
            Row::new(
                RecordKey::Request(r.id.clone()),
                vec![
                    Cell::text(r.id.as_str()),
                    Cell::state(r.state.as_str()),
                    Cell::text(r.node_types.join(",")),
                    Cell::opt(&r.requestor),
                    Cell::time(Some(r.state_time)),
                    Cell::text(nodes.join(",")),
                    Cell::num(r.relative_priority),
                    Cell::text(if snap.request_locked(&r.id) {
                        "locked"
                    } else {
                        ""
                    }),
                    Cell::num(r.declined_by.len() as i64),
                    Cell::opt(&r.provider),
                    Cell::opt(&r.tenant_name),
                ],
            )
        })
        .collect()
}
