//! `nodepool-launcher`: fulfils node requests from OpenStack clouds (docs/launcher.md; the
//! path of one request through these modules is in ARCHITECTURE.md).
//!
//! The ZooKeeper side — tasks that read the tree cache and write records:
//! * [`daemon`]: the main loop: config (re)loads, ZooKeeper, the tree cache, providers
//!   and pool workers reconciled with the config, the housekeeping tasks, the web API.
//! * [`runtime`]: what every task shares (store, cache, statsd, intervals, counters).
//! * [`tasks`]: tracked tasks and the one way to stop them (cancel, grace, abort).
//! * [`providers`]: a started provider: cloud lookups, quota usage, the launch gate.
//! * [`pool_context`]: what a pool worker shares with its handlers.
//! * [`pool_worker`]: one per provider-pool: assignment passes, declines, accepts.
//! * [`verdicts`]: what a pool worker remembers of the requests it left alone, so a pass
//!   looks only at those whose outcome may have changed.
//! * [`label_checks`]: the checks that depend on a request's labels alone, once per
//!   label list, and what `pool_recheck` runs again.
//! * [`request_tries`]: one lock try per new request per launcher.
//! * [`decline`]: why a pool cannot serve a request, checked before and after accepting.
//! * [`handler`]: one accepted request: allocation rounds, pause, fulfil.
//! * [`held_request`]: the handler's request writes, conditional on its `pending` version.
//! * [`node_launch`]: the node record of one launch, around the cloud side's launch.
//! * [`orphan_inits`]: the `init` nodes left by a create whose reply was lost.
//! * [`min_ready`]: Nodepool's own requests that keep `min-ready` nodes.
//! * [`tenant_limits`]: `tenant-resource-limits` checks and gauges.
//! * [`deleter`]: the DeletedNodeWorker (deletes unlocked used/failed nodes).
//! * [`owner_first`]: the launcher that created a node deletes it first.
//! * [`cleanup`]: the CleanupWorker (lost requests, leaks, ages, empty znodes).
//! * [`stats_worker`]: the node gauges, from the election winner only.
//! * [`zk_stats`]: this launcher's own ZooKeeper gauges.
//! * [`dump`]: the SIGUSR2 state dump.
//! * [`zk_retry`]: retrying idempotent writes across a connection loss.
//!
//! The cloud side — independent of ZooKeeper: everything here talks to a cloud through
//! [`CloudDriver`](nodepool_shared::cloud::CloudDriver) and takes plain input structs, so
//! the ZooKeeper side maps config and records onto them:
//! * [`metadata`]: server name and instance metadata; `dynamic-instance-properties` are
//!   rendered by the workspace's one Python-formatting module, [`nodepool_shared::pyfmt`].
//! * [`launch`]: the launch state machine and its driver loop.
//! * [`failure`]: launch failures and their statsd keys.
//! * [`retry`]: the `launch-retries` policy (delete the half-built server, try again).
//! * [`lookups`]: a provider's cached flavors, networks, images and zones.
//! * [`backoff`]: bounded exponential polling intervals.
//! * [`delete`]: the delete state machine.
//! * [`quota`]: provider limits, unmanaged usage, label needs, the fit checks.
//! * [`leaks`]: leaked instances, DOWN ports and unattached floating IPs.
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
pub mod held_request;
pub mod label_checks;
pub mod launch;
pub mod leaks;
pub mod lookups;
pub mod metadata;
pub mod min_ready;
pub mod node_launch;
pub mod orphan_inits;
pub mod owner_first;
pub mod pool_context;
pub mod pool_worker;
pub mod providers;
pub mod quota;
pub mod request_tries;
pub mod retry;
pub mod rivals;
pub mod runtime;
pub mod static_driver;
pub mod stats_worker;
pub mod tasks;
pub mod tenant_limits;
pub mod verdicts;
pub mod zk_retry;
pub mod zk_stats;

pub use delete::{delete_server, DeleteError, DeleteMachine, DeleteState, DELETE_TIMEOUT};
pub use failure::{record_launch, LaunchError};
pub use launch::{
    launch_server, ImageRef, InstanceFacts, LaunchMachine, LaunchOutcome, LaunchSpec, LaunchState,
    Step,
};
pub use leaks::{LeakCleaner, LeakPassReport, LeakSettings};
pub use lookups::FlavorSpec;
pub use metadata::{build_metadata, server_name, MetadataInput, RequestAttributes, ServerMetadata};
pub use quota::{fits, would_ever_fit, LabelNeedCache, PoolLimits, ProviderQuota, QuotaError};
pub use retry::{launch_with_retries, launch_with_retries_reporting, AttemptOptions, RetryOutcome};
