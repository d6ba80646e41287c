//! The ZooKeeper layer: a session-expiry-proof client, kazoo-compatible locks and election,
//! a watch-driven tree cache of `/nodepool`, and typed store operations on the model records.
//!
//! * [`ZkSettings`] — where to connect ([`settings`]).
//! * [`ZkClient`] — the client with timeouts and automatic new sessions ([`client`]).
//! * [`ZkLock`], [`Election`] — kazoo-compatible lock and leader election ([`lock`],
//!   [`election`]).
//! * [`ZkError`] — every failure, naming operation and path ([`error`]).
//! * [`ops`] — the operator changes shared by the CLI and the TUI.

pub mod cache;
pub mod client;
pub mod election;
pub mod error;
pub mod lock;
pub mod ops;
pub mod settings;
pub mod store;

pub use cache::{
    CacheEvent, CacheKind, CachePart, CacheQueue, CacheStatus, CachedBuild, CachedComponent,
    CachedNode, CachedRequest, CachedUpload, Change, SyncState, TreeCache,
};
pub use client::{
    ConnectionState, CreateKind, Op, OpResult, Reconfigured, SessionEvent, SessionStatus, Stat,
    ZkClient,
};
pub use election::Election;
pub use error::{ZkError, ZkResult};
pub use lock::{contender_identifiers, force_unlock, is_locked, lock_contenders, ZkLock};
pub use settings::{ZkSettings, ZkTls, DEFAULT_PORT};
pub use store::{
    is_lock_contender, sort_contenders, ComponentRegistration, FlagTimes, StoredComponent, ZkStore,
};
