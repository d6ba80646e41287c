//! The ZooKeeper data model: the records Python Nodepool 11 keeps under `/nodepool`, with
//! readers and writers that are wire-compatible with it (UTF-8 JSON as Python's `json.dumps`
//! writes it; readers ignore unknown keys and default missing ones).
//!
//! * [`Node`], [`NodeRequest`], [`ImageBuild`], [`ImageUpload`] and [`Component`] are the
//!   records; each has `from_json` (bytes of a znode → record; empty data → `Ok(None)`),
//!   `to_value` (a JSON object with the keys in Python's `toDict` order) and `to_json`
//!   (bytes exactly as Python's `json.dumps` would write them).
//! * Unknown keys are ignored by the logic but kept in `extra` and written back.
//! * Corrupt data gives a [`ModelError`] naming the record and key, never a panic.
//! * [`CompactNode`] is a node as the tree cache keeps it (a third of the memory).
//! * [`paths`] builds and classifies every ZooKeeper path; [`quota`] does resource
//!   arithmetic; [`ids`] holds the id types.

pub mod compact;
mod compact_json;
pub mod component;
pub mod error;
pub mod ids;
pub mod image;
pub mod json;
pub mod node;
pub mod paths;
#[cfg(test)]
mod props;
pub mod quota;
pub mod request;
mod wire_enum;

pub use compact::{CompactNode, NodeView};
pub use component::{pool_worker_id, Component, ComponentKind, ComponentState, PoolInfo};
pub use error::ModelError;
pub use ids::{split_sequence, BuildId, NodeId, RequestId, UploadId};
pub use image::{BuildState, ImageBuild, ImageUpload, UploadState};
pub use json::{now_epoch, to_python_json};
pub use node::{Node, NodeState};
pub use paths::ZkPath;
pub use quota::QuotaInformation;
pub use request::{NodeRequest, RequestPriority, RequestState};
