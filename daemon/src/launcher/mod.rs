//! The cloud-facing half of `nodepool-launcher` (launch, quota, delete, leak cleanup),
//! independent of ZooKeeper: everything here talks to a cloud through
//! [`CloudDriver`](nodepool_shared::cloud::CloudDriver) and takes plain input structs, so
//! the request handlers (which own ZooKeeper) map config and records onto them.
//!
//! * [`metadata`]: server name and instance metadata.
//! * [`pyformat`]: the subset of Python `str.format` used by
//!   `dynamic-instance-properties`.
//! * [`launch`]: the launch state machine and its driver loop.
//! * [`failure`]: launch failures and their statsd keys.
//! * [`retry`]: the `launch-retries` policy (delete the half-built server, try again).
//! * [`backoff`]: bounded exponential polling intervals.
//! * [`delete`]: the delete state machine.
//! * [`quota`]: provider limits, unmanaged usage, label needs, the fit checks.
//! * [`leaks`]: leaked instances, DOWN ports and unattached floating IPs.

pub mod backoff;
pub mod cleanup;
pub mod daemon;
pub mod delete;
pub mod deleter;
pub mod dump;
pub mod failure;
pub mod handler;
pub mod launch;
pub mod leaks;
pub mod metadata;
pub mod min_ready;
pub mod node_launch;
pub mod pool_worker;
pub mod providers;
pub mod pyformat;
pub mod quota;
pub mod retry;
pub mod runtime;
pub mod stats_worker;
pub mod tenant_limits;
pub mod zk_retry;

pub use delete::{delete_server, DeleteError, DeleteMachine, DeleteState, DELETE_TIMEOUT};
pub use failure::{record_launch, LaunchError};
pub use launch::{
    launch_server, FlavorSpec, ImageRef, InstanceFacts, LaunchMachine, LaunchOutcome, LaunchSpec,
    LaunchState, Step,
};
pub use leaks::{LeakCleaner, LeakPassReport, LeakSettings};
pub use metadata::{build_metadata, server_name, MetadataInput, RequestAttributes, ServerMetadata};
pub use quota::{fits, would_ever_fit, LabelNeedCache, PoolLimits, ProviderQuota, QuotaError};
pub use retry::{launch_with_retries, launch_with_retries_reporting, RetryOutcome};
