//! `nodepool-builder`. The local half — everything a build does on this machine
//! without ZooKeeper: the builder id, the diskimage-builder command and its run (logs,
//! timeout, cancellation), the image formats produced, and the local image files of
//! builds. The ZooKeeper half — the scheduler and its build, upload and cleanup
//! workers ([`daemon`], [`scheduler`], [`build_worker`], [`upload`], [`cleanup`]) — calls into these
//! with plain inputs and decides with the pure rules in [`plan`].

pub mod build_log;
pub mod build_worker;
pub mod builder_id;
pub mod cleanup;
pub mod context;
pub mod daemon;
pub mod dib;
pub mod disk;
pub mod files;
pub mod formats;
pub use crate::host;
pub mod plan;
pub mod run;
pub mod scheduler;
pub mod shell_words;
pub mod stats;
pub mod tasks;
pub mod upload;

pub use daemon::{start, BuilderError, BuilderHandle, BuilderOptions};
pub use dib::DibSpec;
pub use run::{run_build, BuildOutcome, BuildResult, RunError};
