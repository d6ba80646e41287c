//! Writes to a request whose lock a handler holds, made conditional on the version the
//! handler last wrote or read.
//!
//! A handler's request lock lives in its ZooKeeper session. A launcher stopped (SIGSTOP,
//! a long GC-like stall, a frozen VM) past the session timeout loses that session and so
//! the lock, but does not know it until it runs again and the client notices the expiry.
//! Meanwhile another launcher's cleanup resets the `pending` request to `requested` and
//! takes back its nodes (`cleanup::lost_requests`). When the stopped launcher resumes, its
//! next write may go out on the client's new session before the handler sees that its
//! lock is gone: an unconditional `fulfilled` write then overwrote the reset and handed
//! out nodes that were no longer allocated to the request (found by the chaos soak:
//! "fulfilled request …: node … is allocated to None").
//!
//! While a handler holds the lock nobody else writes the request (Zuul only deletes it,
//! and revises it only under the lock), so the version the handler wrote with `pending`
//! is still the request's version when it fulfils or declines it, unless the lock was
//! lost. Writing with that version turns the race into a `BadVersion`, which here means
//! "not ours any more": the handler writes nothing else about the request.

use nodepool_shared::model::{NodeRequest, RequestId, RequestState};
use nodepool_shared::zk::{ZkError, ZkResult, ZkStore};

use super::decline::{decline_request, DeclineReason};
use super::pool_context::PoolContext;
use super::runtime::Counters;
use super::zk_retry::retry_transient;

/// What a conditional write of a held request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldWrite {
    /// Written (or found already written by our own earlier try whose reply was lost).
    Stored,
    /// Someone else changed the request since our version: the lock was lost.
    Changed,
    /// The request znode is gone (the requestor withdrew it).
    Gone,
}

/// Stores `req` as `fulfilled` if the request is still at `expected` (the version of the
/// handler's `pending` write). Connection losses are retried; a retry that finds our
/// own write already applied (same state and nodes) counts as stored.
pub async fn store_fulfilled(
    store: &ZkStore,
    req: &NodeRequest,
    expected: i32,
) -> ZkResult<HeldWrite> {
    let stored = retry_transient("storing fulfilled request", || {
        store.store_request(req, Some(expected))
    })
    .await;
    match stored {
        Ok(_) => Ok(HeldWrite::Stored),
        Err(ZkError::NoNode(_)) => Ok(HeldWrite::Gone),
        Err(ZkError::BadVersion(_)) => match store.get_request(&req.id).await? {
            None => Ok(HeldWrite::Gone),
            Some((now, _)) if now.state == req.state && now.nodes == req.nodes => {
                Ok(HeldWrite::Stored)
            }
            Some(_) => Ok(HeldWrite::Changed),
        },
        Err(e) => Err(e),
    }
}

/// The version a handler expects its request at: the one its `pending` write returned,
/// or, if that write's reply was lost, the current one provided the request is
/// `pending` (`None` = not ours any more, or gone).
pub async fn expected_version(
    store: &ZkStore,
    req: &NodeRequest,
    written: Option<i32>,
) -> ZkResult<Option<i32>> {
    if written.is_some() {
        return Ok(written);
    }
    Ok(match store.get_request(&req.id).await? {
        Some((now, stat)) if now.state == RequestState::Pending => Some(stat.version),
        _ => None,
    })
}

/// Stores `req` (`fulfilled`, with its nodes) if the request is still at the version of
/// the handler's `pending` write (`written`).
///
/// If that write's outcome is unknown (`written` is `None`), a `pending` version read now
/// proves nothing: after a lost lock it may be another launcher's `pending`. The write
/// then goes in one transaction with a check of our request lock's contender
/// (`lock_node`), which exists only while our session holds the lock.
pub async fn fulfil(
    store: &ZkStore,
    req: &NodeRequest,
    written: Option<i32>,
    lock_node: Option<&str>,
) -> ZkResult<HeldWrite> {
    if let Some(v) = written {
        return store_fulfilled(store, req, v).await;
    }
    let Some(lock_node) = lock_node else {
        return Ok(HeldWrite::Changed);
    };
    let stored = retry_transient("storing fulfilled request", || {
        store.store_request_while_locked(req, lock_node)
    })
    .await;
    match stored {
        Ok(()) => Ok(HeldWrite::Stored),
        Err(ZkError::NoNode(_)) => match store.get_request(&req.id).await? {
            None => Ok(HeldWrite::Gone),
            Some(_) => Ok(HeldWrite::Changed),
        },
        Err(e) => Err(e),
    }
}

/// Declines `req` ([`decline_request`]) if it is still at the version of the handler's
/// `pending` write, and logs the outcome.
pub async fn decline(
    pc: &PoolContext,
    req: &NodeRequest,
    written: Option<i32>,
    why: &DeclineReason,
) {
    let written = match expected_version(&pc.ctx.store, req, written).await {
        Ok(Some(v)) => decline_request(pc, &req.id, why, Some(v)).await,
        Ok(None) => Ok(HeldWrite::Changed),
        Err(e) => Err(e),
    };
    match written {
        Ok(HeldWrite::Stored | HeldWrite::Gone) => {}
        Ok(HeldWrite::Changed) => lost_to_another(pc, &req.id),
        Err(e) => {
            tracing::warn!(request = %req.id, error = %e, "cannot store declined request")
        }
    }
}

/// A conditional write found the request changed by someone else: the handler's lock
/// went with an expired session and another launcher's cleanup reset the request (and
/// takes back its nodes). Nothing more is written about it.
pub fn lost_to_another(pc: &PoolContext, id: &RequestId) {
    Counters::bump(&pc.ctx.counters.requests_abandoned);
    tracing::warn!(request = %id, pool = %pc.worker_id,
        "request changed since we accepted it (our lock went with an expired ZooKeeper \
         session): leaving it to its new owner");
}
