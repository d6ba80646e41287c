//! The `launch-retries` policy: up to `launch-retries` attempts in all
//! (default 3); before each new attempt the previous attempt's half-built server is
//! deleted. A quota failure ends the launch at once (the node is `aborted`, which does
//! not count as a failure). Every failed attempt is reported to the caller (who records
//! `nodepool.launch.*.<error key>` for it).

use std::sync::Arc;
use std::time::Duration;

use nodepool_shared::cloud::CloudDriver;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::delete::delete_server;
use super::failure::LaunchError;
use super::launch::{InstanceFacts, LaunchMachine, LaunchOutcome, LaunchProgress, LaunchSpec};
use super::lookups::CloudLookups;

/// Nodepool's default `launch-retries`.
pub const DEFAULT_LAUNCH_RETRIES: u32 = 3;

/// The end of a launch with retries.
#[derive(Debug)]
pub struct RetryOutcome {
    /// The last attempt's result.
    pub result: Result<InstanceFacts, LaunchError>,
    /// Attempts made (≥ 1).
    pub attempts: u32,
    /// The server the last attempt created (also on failure; the node keeps it as
    /// `external_id` so the delete worker removes it).
    pub external_id: Option<String>,
    /// Console log of the last failed attempt (label `console-log`).
    pub console_log: Option<String>,
}

impl RetryOutcome {
    /// True when the launch ended on a quota failure (node → `aborted`).
    pub fn is_quota(&self) -> bool {
        self.result
            .as_ref()
            .err()
            .is_some_and(LaunchError::is_quota)
    }
}

/// What every attempt of a launch is given besides its spec.
#[derive(Clone, Default)]
pub struct AttemptOptions {
    /// Where each attempt sends its [`LaunchProgress`].
    pub progress: Option<mpsc::UnboundedSender<LaunchProgress>>,
    /// The provider's cached cloud lookups ([`LaunchMachine::with_lookups`]).
    pub lookups: Option<Arc<CloudLookups>>,
    /// Cancelled when the launch must stop (its node record is gone): the running
    /// attempt ends at its next step ([`LaunchMachine::stop_on`]) and none follows.
    pub stop: Option<CancellationToken>,
}

impl AttemptOptions {
    fn machine(&self, spec: &LaunchSpec) -> LaunchMachine {
        let mut machine = LaunchMachine::new(spec.clone());
        if let Some(tx) = &self.progress {
            machine = machine.report_progress(tx.clone());
        }
        if let Some(l) = &self.lookups {
            machine = machine.with_lookups(l.clone());
        }
        if let Some(stop) = &self.stop {
            machine = machine.stop_on(stop.clone());
        }
        machine
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Delete the half-built server and try again.
    Retry,
    /// Stop: quota (→ `aborted`).
    Abort,
    /// Stop: out of attempts, or told to stop (→ `failed`).
    GiveUp,
}

/// The policy: `attempt` is 1-based, `retries` is the total number of attempts allowed
/// (0 is treated as 1).
pub fn decide(error: &LaunchError, attempt: u32, retries: u32) -> RetryDecision {
    if error.is_quota() {
        RetryDecision::Abort
    } else if matches!(error, LaunchError::Stopped { .. }) {
        RetryDecision::GiveUp
    } else if attempt < retries.max(1) {
        RetryDecision::Retry
    } else {
        RetryDecision::GiveUp
    }
}

/// Runs attempts of `spec` until one succeeds, a quota failure, or `retries` attempts.
/// `on_failure(error, elapsed)` is called for every failed attempt (for launch stats).
/// `delete_timeout` bounds the cleanup of a failed attempt's server.
pub async fn launch_with_retries<F>(
    cloud: &dyn CloudDriver,
    spec: &LaunchSpec,
    retries: u32,
    delete_timeout: Duration,
    on_failure: F,
) -> RetryOutcome
where
    F: FnMut(&LaunchError, Duration) + Send,
{
    let opts = AttemptOptions::default();
    launch_with_retries_reporting(cloud, spec, retries, delete_timeout, &opts, on_failure).await
}

/// [`launch_with_retries`] with [`AttemptOptions`]: every attempt sends its
/// [`LaunchProgress`] on `opts.progress` — the server id as soon as the cloud accepted the
/// create (the caller stores it on the node at once, so a launcher dying mid-launch
/// leaves a node the deleter can clean up), and the instance facts before the host-key
/// scan — and looks things up through `opts.lookups`.
pub async fn launch_with_retries_reporting<F>(
    cloud: &dyn CloudDriver,
    spec: &LaunchSpec,
    retries: u32,
    delete_timeout: Duration,
    opts: &AttemptOptions,
    mut on_failure: F,
) -> RetryOutcome
where
    F: FnMut(&LaunchError, Duration) + Send,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let LaunchOutcome {
            result,
            external_id,
            console_log,
            elapsed,
        } = opts.machine(spec).run(cloud).await;
        let error = match result {
            Ok(facts) => {
                return RetryOutcome {
                    result: Ok(facts),
                    attempts: attempt,
                    external_id,
                    console_log,
                }
            }
            Err(e) => e,
        };
        on_failure(&error, elapsed);
        match decide(&error, attempt, retries) {
            RetryDecision::Retry => {
                tracing::warn!(server = %spec.name, attempt, error = %error, "launch attempt failed, retrying");
                if let Some(id) = external_id.as_deref().or(error.server_id()) {
                    if let Err(e) = delete_server(cloud, id, delete_timeout).await {
                        tracing::warn!(server = %id, error = %e, "cannot delete failed launch attempt's server");
                    }
                }
            }
            RetryDecision::Abort | RetryDecision::GiveUp => {
                return RetryOutcome {
                    result: Err(error),
                    attempts: attempt,
                    external_id,
                    console_log,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        let quota = LaunchError::Quota {
            server_id: None,
            message: "x".into(),
        };
        let other = LaunchError::ServerError {
            server_id: "s".into(),
            fault: None,
        };
        assert_eq!(decide(&quota, 1, 3), RetryDecision::Abort);
        assert_eq!(decide(&other, 1, 3), RetryDecision::Retry);
        assert_eq!(decide(&other, 2, 3), RetryDecision::Retry);
        assert_eq!(decide(&other, 3, 3), RetryDecision::GiveUp);
        assert_eq!(decide(&other, 1, 0), RetryDecision::GiveUp);
        let stopped = LaunchError::Stopped { server_id: None };
        assert_eq!(decide(&stopped, 1, 3), RetryDecision::GiveUp);
    }
}
