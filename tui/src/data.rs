//! What the console shows, decoupled from where it comes from: the [`Snapshot`] of the
//! tree cache's records and the [`RecordKey`]s naming them (shared with the
//! diagnostics of the core crate), the [`Health`] of the connection and cache, the
//! facts taken from `nodepool.yaml` ([`ConfigInfo`]) and the cloud quotas fetched in
//! the background ([`Quota`]). Tests build these by hand; the runtime builds them from
//! a `TreeCache` and the clouds.

pub use nodepool_shared::diagnostics::ConfigFacts as ConfigInfo;
pub use nodepool_shared::diagnostics::{RecordKey, Snapshot};
use nodepool_shared::zk::{CacheStatus, SessionStatus};

/// Connection and cache state for the status line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// ZooKeeper hosts (with chroot) as configured.
    pub hosts: String,
    /// The client's connection state and session generation.
    pub connection: SessionStatus,
    /// The cache's sync state.
    pub cache: CacheStatus,
    /// The cache's change counter.
    pub changes: u64,
}

/// A provider's instance quota as its cloud reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Quota {
    /// At most this many instances.
    Instances(u64),
    /// No instance limit.
    Unlimited,
    /// The cloud could not be asked (the reason).
    Unknown(String),
}
