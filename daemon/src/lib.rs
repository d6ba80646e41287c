//! Daemon support code shared by the launcher, builder and CLI binaries.

// Module docs link to the private items that do the work; `cargo doc` documents them
// (`--document-private-items`, set in .cargo/config.toml), so the links resolve.
#![allow(rustdoc::private_intra_doc_links)]

pub mod builder;
pub mod cli;
pub mod host;
pub mod http_serve;
pub mod launcher;
pub mod metrics;
pub mod service;
pub mod webapp;
pub mod zk_settings;
