//! Daemon support code shared by the launcher, builder and CLI binaries.

pub mod builder;
pub mod cli;
pub mod host;
pub mod launcher;
pub mod metrics;
pub mod service;
pub mod webapp;
pub mod zk_settings;
