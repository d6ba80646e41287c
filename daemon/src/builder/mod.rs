//! The local half of `nodepool-builder`: everything a build does on this machine
//! without ZooKeeper — the builder id, the diskimage-builder command and its run
//! (logs, timeout, cancellation), the image formats produced, and the local image
//! files of builds. The ZooKeeper workers call into these with plain inputs.

pub mod build_log;
pub mod builder_id;
pub mod dib;
pub mod files;
pub mod formats;
pub mod run;
pub mod shell_words;
pub mod stats;

pub use dib::DibSpec;
pub use run::{run_build, BuildOutcome, BuildResult, RunError};
