//! A fake Zuul: the requestor side of the Nodepool protocol, speaking only ZooKeeper
//! exactly as Zuul does (the request and node records, kazoo locks). Used by end-to-end tests, the
//! local demo and the launcher benchmark (`zuul-sim` binary).
//!
//! * [`FakeZuul`] — submit, wait (watch-driven), accept, use, return, hold, cancel,
//!   revise priority ([`client`]).
//! * [`HeldNode`] — a node we hold the lock of; written back with every key read plus
//!   `id`, like Zuul ([`node`]).
//! * [`Outcome`] and the exact request record Zuul writes ([`request`]).
//! * [`LatencySummary`] — percentiles for the benchmark modes ([`stats`]).
//! * [`ZuulError`] — every failure, naming the request or node ([`error`]).

pub mod client;
pub mod error;
pub mod node;
pub mod request;
pub mod stats;

pub use client::{FakeZuul, NODE_LOCK_TIMEOUT};
pub use error::{ZuulError, ZuulResult};
pub use node::{zuul_node_record, HeldNode};
pub use request::{
    zuul_submission, Outcome, ZUUL_PRIORITIES, ZUUL_REQUESTOR_DATA_KEYS, ZUUL_REQUEST_KEYS,
};
pub use stats::LatencySummary;
