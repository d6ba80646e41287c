//! The error type of the ZooKeeper layer: the library's errors mapped to what callers act
//! on (missing node, lost race, connection trouble), always naming the operation and path.

use std::time::Duration;

/// A failed ZooKeeper operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ZkError {
    /// The znode does not exist.
    #[error("ZooKeeper node {0} does not exist")]
    NoNode(String),
    /// The chroot does not exist and cannot be created because its parent is missing
    /// too (kazoo creates only the chroot node itself).
    #[error(
        "ZooKeeper chroot {chroot} does not exist and cannot be created: its parent \
         {parent} does not exist either (create it, or fix `chroot` in zookeeper-servers)"
    )]
    NoChroot { chroot: String, parent: String },
    /// The znode already exists.
    #[error("ZooKeeper node {0} already exists")]
    NodeExists(String),
    /// The znode's version differs from the expected one (someone else wrote it).
    #[error("ZooKeeper node {0} was changed concurrently (version mismatch)")]
    BadVersion(String),
    /// The znode still has children.
    #[error("ZooKeeper node {0} has children")]
    NotEmpty(String),
    /// The connection dropped while the call was in flight (the session may survive).
    #[error("lost the connection to ZooKeeper during {op} {path}")]
    ConnectionLoss { op: &'static str, path: String },
    /// The session expired; ephemeral nodes and locks of the old session are gone.
    #[error("ZooKeeper session expired during {op} {path}")]
    SessionExpired { op: &'static str, path: String },
    /// The call did not complete within the request timeout.
    #[error("ZooKeeper {op} {path} timed out after {timeout:?}")]
    Timeout {
        op: &'static str,
        path: String,
        timeout: Duration,
    },
    /// The client was closed.
    #[error("ZooKeeper client is closed")]
    Closed,
    /// The first connection could not be established.
    #[error("cannot connect to ZooKeeper {hosts}: {reason}")]
    Connect { hosts: String, reason: String },
    /// A TLS file could not be read or parsed.
    #[error("ZooKeeper TLS {what} {path}: {reason}")]
    Tls {
        what: &'static str,
        path: String,
        reason: String,
    },
    /// A lock was not acquired within the given time.
    #[error("lock {path} not acquired within {timeout:?}")]
    LockTimeout { path: String, timeout: Duration },
    /// A znode holds data this layer cannot interpret (e.g. a corrupt record).
    #[error("{0}")]
    Corrupt(String),
    /// Any other error reported by ZooKeeper or the client library. Its message holds
    /// the library's, so the library error is not also reported as the source (a
    /// printed cause chain would repeat it).
    #[error("ZooKeeper {op} {path}: {reason}")]
    Other {
        op: &'static str,
        path: String,
        reason: zookeeper_client::Error,
    },
}

impl ZkError {
    /// Maps a client library error of operation `op` on `path`.
    ///
    /// The library reports TCP resets as `Error::Custom(io)` rather than `ConnectionLoss`
    /// (crate wart); both mean "connection lost, session may survive".
    pub fn from_client(op: &'static str, path: &str, err: zookeeper_client::Error) -> Self {
        use zookeeper_client::Error as E;
        let path = path.to_string();
        match err {
            E::NoNode => ZkError::NoNode(path),
            E::NodeExists => ZkError::NodeExists(path),
            E::BadVersion => ZkError::BadVersion(path),
            E::NotEmpty => ZkError::NotEmpty(path),
            E::ConnectionLoss | E::Custom(_) | E::Timeout => ZkError::ConnectionLoss { op, path },
            E::SessionExpired => ZkError::SessionExpired { op, path },
            E::ClientClosed => ZkError::Closed,
            other => ZkError::Other {
                op,
                path,
                reason: other,
            },
        }
    }

    /// True for connection trouble (loss, expiry, timeout, closed): the operation may
    /// or may not have been applied; retry later.
    pub fn is_connection_problem(&self) -> bool {
        matches!(
            self,
            ZkError::ConnectionLoss { .. }
                | ZkError::SessionExpired { .. }
                | ZkError::Timeout { .. }
                | ZkError::Closed
        )
    }

    /// True when the znode was missing.
    pub fn is_no_node(&self) -> bool {
        matches!(self, ZkError::NoNode(_))
    }

    /// True when the znode already existed.
    pub fn is_node_exists(&self) -> bool {
        matches!(self, ZkError::NodeExists(_))
    }

    /// True on a version mismatch.
    pub fn is_bad_version(&self) -> bool {
        matches!(self, ZkError::BadVersion(_))
    }
}

/// Result of a ZooKeeper operation.
pub type ZkResult<T> = Result<T, ZkError>;
