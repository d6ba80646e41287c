//! Core library shared by every Nodepool-in-Rust binary: the config schema, the ZooKeeper
//! data model, client, locks and caches, the cloud drivers and the statsd metric names.
//!
//! Everything that two binaries must agree on lives here, so that the launcher, builder,
//! CLI and TUI read and write exactly the same records as Python Nodepool 11.

// Module docs link to the private items that do the work; `cargo doc` documents them
// (`--document-private-items`, set in .cargo/config.toml), so the links resolve.
#![allow(rustdoc::private_intra_doc_links)]

pub mod cloud;
pub mod config;
pub mod diagnostics;
pub mod listing;
pub mod logging;
pub mod model;
pub mod pyfmt;
pub mod ssh;
pub mod stats;
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod version;
pub mod zk;
