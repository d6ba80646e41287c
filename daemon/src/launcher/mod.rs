//! The cloud-facing half of `nodepool-launcher` (reference §3.5–3.6, §3.8, §3.11, §9),
//! independent of ZooKeeper: everything here talks to a cloud through
//! [`CloudDriver`](nodepool_shared::cloud::CloudDriver) and takes plain input structs, so
//! the request handlers (which own ZooKeeper) map config and records onto them.
//!
//! * [`metadata`]: server name and instance metadata (§9).
//!   `dynamic-instance-properties` are rendered by the workspace's one Python-formatting
//!   module, [`nodepool_shared::pyfmt`].
//! * [`launch`]: the launch state machine and its driver loop (§3.5).
//! * [`failure`]: launch failures and their statsd keys.
//! * [`retry`]: the `launch-retries` policy (delete the half-built server, try again).
//! * [`lookups`]: a provider's cached flavors, networks, images and zones.
//! * [`backoff`]: bounded exponential polling intervals.
//! * [`delete`]: the delete state machine (§3.8).
//! * [`quota`]: provider limits, unmanaged usage, label needs, the fit checks (§3.6).
//! * [`leaks`]: leaked instances, DOWN ports and unattached floating IPs (§3.11).
//! * [`static_driver`]: fixed hosts registered as nodes (Nodepool's `static` driver).

pub mod backoff;
pub mod cleanup;
pub mod daemon;
pub mod decline;
pub mod delete;
pub mod deleter;
pub mod dump;
pub mod failure;
pub mod handler;
pub mod launch;
pub mod leaks;
pub mod lookups;
pub mod metadata;
pub mod min_ready;
pub mod node_launch;
pub mod pool_context;
pub mod pool_worker;
pub mod providers;
pub mod quota;
pub mod retry;
pub mod runtime;
pub mod static_driver;
pub mod stats_worker;
pub mod tasks;
pub mod tenant_limits;
pub mod zk_retry;
pub mod zk_stats;

pub use delete::{delete_server, DeleteError, DeleteMachine, DeleteState, DELETE_TIMEOUT};
pub use failure::{record_launch, LaunchError};
pub use launch::{
    launch_server, FlavorSpec, ImageRef, InstanceFacts, LaunchMachine, LaunchOutcome, LaunchSpec,
    LaunchState, Step,
};
pub use leaks::{LeakCleaner, LeakPassReport, LeakSettings};
pub use metadata::{build_metadata, server_name, MetadataInput, RequestAttributes, ServerMetadata};
pub use quota::{fits, would_ever_fit, LabelNeedCache, PoolLimits, ProviderQuota, QuotaError};
pub use retry::{launch_with_retries, launch_with_retries_reporting, AttemptOptions, RetryOutcome};
