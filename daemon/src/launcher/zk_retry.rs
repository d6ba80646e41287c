//! Retrying idempotent ZooKeeper writes across a connection loss.
//!
//! A ZooKeeper server restart or a leader election drops the connection for a moment
//! while the session (and so every lock we hold) survives. An unconditional `set` of a
//! node or request we hold the lock of is idempotent, so it is safe to repeat it once
//! the client has reconnected instead of giving up: before this, a launch that finished
//! during the outage failed its request ("storing ready node: lost the connection").
//! Session expiry is not retried: the locks are gone and the caller must stop.

use std::future::Future;
use std::time::Duration;

use nodepool_shared::zk::ZkError;

/// How long to keep retrying (a little more than the default 10 s session timeout:
/// past that the session is gone anyway).
pub const RETRY_FOR: Duration = Duration::from_secs(12);
const PAUSE: Duration = Duration::from_millis(200);

/// True for errors after which the same write may succeed with the same session.
fn transient(e: &ZkError) -> bool {
    matches!(e, ZkError::ConnectionLoss { .. } | ZkError::Timeout { .. })
}

/// Runs `op` until it succeeds, fails for another reason than a connection loss or
/// timeout, or [`RETRY_FOR`] has passed. `op` must be idempotent.
pub async fn retry_transient<T, F, Fut>(what: &str, mut op: F) -> Result<T, ZkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ZkError>>,
{
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    loop {
        match op().await {
            Err(e) if transient(&e) && tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "{what}: retrying after a ZooKeeper connection problem");
                tokio::time::sleep(PAUSE).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn retries_connection_loss_then_succeeds() {
        let calls = AtomicU32::new(0);
        let r = retry_transient("test", || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(ZkError::ConnectionLoss {
                        op: "set",
                        path: "/x".into(),
                    })
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.ok(), Some(2));
    }

    #[tokio::test]
    async fn does_not_retry_session_expiry_or_bad_version() {
        for err in [
            ZkError::SessionExpired {
                op: "set",
                path: "/x".into(),
            },
            ZkError::BadVersion("/x".into()),
        ] {
            let calls = AtomicU32::new(0);
            let e = err.to_string();
            let r: Result<(), ZkError> = retry_transient("test", || {
                calls.fetch_add(1, Ordering::SeqCst);
                let e = e.clone();
                async move {
                    Err(if e.contains("expired") {
                        ZkError::SessionExpired {
                            op: "set",
                            path: "/x".into(),
                        }
                    } else {
                        ZkError::BadVersion("/x".into())
                    })
                }
            })
            .await;
            assert!(r.is_err());
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }
}
