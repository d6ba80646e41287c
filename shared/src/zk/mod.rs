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
    ConnectionState, CreateKind, Op, OpResult, Read, ReadResult, Reconfigured, SessionEvent,
    SessionStatus, Stat, ZkClient,
};
pub use election::Election;

/// The stat of a record built in memory rather than read from ZooKeeper (tests,
/// benchmarks, the console's examples): first version, created and written at zxid 1,
/// no data length or children recorded.
pub const IN_MEMORY_STAT: Stat = Stat {
    czxid: 1,
    mzxid: 1,
    pzxid: 1,
    ctime: 0,
    mtime: 0,
    version: 0,
    cversion: 0,
    aversion: 0,
    ephemeral_owner: 0,
    data_length: 0,
    num_children: 0,
};
pub use error::{ZkError, ZkResult};
pub use lock::{contender_identifiers, force_unlock, is_locked, lock_contenders, ZkLock};
pub use settings::{ZkSettings, ZkTls, DEFAULT_PORT};
pub use store::{
    is_lock_contender, sort_contenders, ComponentRegistration, FlagTimes, StoredComponent, ZkStore,
};
