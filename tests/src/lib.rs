//! End-to-end test harness: starts ZooKeeper, the OpenStack simulator and daemons on loopback.

// Module docs link to the private items that do the work; `cargo doc` documents them
// (`--document-private-items`, set in .cargo/config.toml), so the links resolve.
#![allow(rustdoc::private_intra_doc_links)]

pub mod builder_world;
pub mod daemons;
pub mod sim;
pub mod zuul;
