//! The records captured from Python Nodepool 11 (`tests/golden/*.json`, each
//! `{"path": …, "data": …}`), read by several modules of this suite.

use std::path::Path;

use serde_json::Value;

/// The node records, one per state Python Nodepool writes.
pub const NODE_FILES: [&str; 7] = [
    "node-init.json",
    "node-building.json",
    "node-ready.json",
    "node-in-use.json",
    "node-used.json",
    "node-deleting.json",
    "node-deleted.json",
];

/// One golden record, parsed; panics with the file's path if it cannot be read.
pub fn golden(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
