//! The error type of the fake Zuul: every failure names the request or node it concerns,
//! so a failing end-to-end test or benchmark says what went wrong where.

use std::time::Duration;

use nodepool_shared::model::{ModelError, NodeId, RequestId};
use nodepool_shared::zk::ZkError;

/// A failed fake-Zuul operation.
#[derive(Debug, thiserror::Error)]
pub enum ZuulError {
    /// A ZooKeeper call failed (the error names the operation and path).
    #[error(transparent)]
    Zk(#[from] ZkError),
    /// A record in ZooKeeper could not be parsed (the error names the record and key).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Zuul only uses the precedences 100 (high), 200 (normal) and 300 (low).
    #[error("invalid request priority {0}: Zuul uses 100, 200 or 300")]
    InvalidPriority(u16),
    /// A request needs at least one label.
    #[error("a node request needs at least one label")]
    NoLabels,
    /// ZooKeeper returned a created path that is not a request id.
    #[error("ZooKeeper created {0}, which is not a node request path")]
    BadCreatedPath(String),
    /// The request was neither fulfilled nor failed within the wait.
    #[error("request {request} not fulfilled or failed within {timeout:?}")]
    WaitTimeout {
        /// The request.
        request: RequestId,
        /// How long we waited.
        timeout: Duration,
    },
    /// `accept` was called on a request that is not fulfilled.
    #[error("request {request} is {state}, not fulfilled")]
    NotFulfilled {
        /// The request.
        request: RequestId,
        /// Its state.
        state: String,
    },
    /// A fulfilled request lists a different number of nodes than it asked labels for.
    #[error("request {request} asked for {labels} labels but lists {nodes} nodes")]
    NodeCountMismatch {
        /// The request.
        request: RequestId,
        /// `len(node_types)`.
        labels: usize,
        /// `len(nodes)`.
        nodes: usize,
    },
    /// A node of a fulfilled request does not exist (or has no data).
    #[error("node {node} of request {request} does not exist")]
    NodeMissing {
        /// The request.
        request: RequestId,
        /// The node.
        node: NodeId,
    },
    /// A node of a fulfilled request is not allocated to it.
    #[error("node {node} is allocated to {allocated_to:?}, not to request {request}")]
    NotAllocated {
        /// The request.
        request: RequestId,
        /// The node.
        node: NodeId,
        /// The node's `allocated_to`.
        allocated_to: Option<String>,
    },
    /// The node lock was not acquired in time (Zuul waits 30 s).
    #[error("lock of node {node} (request {request}) not acquired within {timeout:?}")]
    LockTimeout {
        /// The request.
        request: RequestId,
        /// The node.
        node: NodeId,
        /// How long we waited.
        timeout: Duration,
    },
    /// A node record read from ZooKeeper is not a JSON object.
    #[error("node {node}: data is not a JSON object")]
    NodeNotAnObject {
        /// The node.
        node: NodeId,
    },
    /// The node is no longer locked by us (session lost); it must not be written.
    #[error("node {node}: our lock is gone (ZooKeeper session lost)")]
    LockLost {
        /// The node.
        node: NodeId,
    },
}

/// Result of a fake-Zuul operation.
pub type ZuulResult<T> = Result<T, ZuulError>;
