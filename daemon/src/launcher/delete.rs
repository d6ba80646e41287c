//! Deleting one server: the [`DeleteMachine`] removes the floating IPs
//! attached to the server's ports, deletes the server and waits until the cloud no
//! longer knows it, all within [`DELETE_TIMEOUT`] by default.
//!
//! ```text
//! Start ─► DeletingFloatingIps ─► DeletingServer ─► WaitingGone ─► Complete
//!   └───────────────┴──────────────────┴─────────────────┴──────► Failed
//! ```
//!
//! "Not found" at any step means the server is already gone: success. Temporary cloud
//! errors are retried with backoff until the deadline.

use std::time::Duration;

use nodepool_shared::cloud::{CloudDriver, CloudError};
use nodepool_shared::stats::names::result;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::launch::Step;

/// Nodepool's bound on a delete state machine.
pub const DELETE_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a delete did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// Still there after the timeout.
    #[error("server {server_id} still exists after {}s", timeout.as_secs())]
    Timeout {
        server_id: String,
        timeout: Duration,
    },
    /// A cloud call failed for good.
    #[error("deleting server {server_id}: {during}: {source}")]
    Cloud {
        server_id: String,
        during: &'static str,
        #[source]
        source: CloudError,
    },
}

impl DeleteError {
    /// The statsd key for this failure (`error.serverdeletetimeout` for a timeout).
    pub fn stats_key(&self) -> &'static str {
        match self {
            DeleteError::Timeout { .. } => result::ERROR_SERVER_DELETE_TIMEOUT,
            DeleteError::Cloud { .. } => result::ERROR_UNKNOWN,
        }
    }
}

/// Where a delete is.
#[derive(Debug)]
pub enum DeleteState {
    /// Look the server up and find its floating IPs.
    Start,
    /// Delete these floating IPs (ids) first.
    DeletingFloatingIps { fip_ids: Vec<String> },
    /// Submit the server delete.
    DeletingServer,
    /// Poll until the server is gone.
    WaitingGone,
    /// Gone.
    Complete,
    /// Gave up.
    Failed(DeleteError),
}

impl DeleteState {
    pub fn is_terminal(&self) -> bool {
        matches!(self, DeleteState::Complete | DeleteState::Failed(_))
    }

    pub fn name(&self) -> &'static str {
        match self {
            DeleteState::Start => "start",
            DeleteState::DeletingFloatingIps { .. } => "deleting floating ips",
            DeleteState::DeletingServer => "deleting server",
            DeleteState::WaitingGone => "waiting for deletion",
            DeleteState::Complete => "complete",
            DeleteState::Failed(_) => "failed",
        }
    }
}

/// One server delete.
pub struct DeleteMachine {
    server_id: String,
    state: DeleteState,
    started: Instant,
    timeout: Duration,
    /// Floating IPs deleted (for logs/tests).
    pub floating_ips_deleted: usize,
}

impl DeleteMachine {
    /// A delete of `server_id` bounded by `timeout` (use [`DELETE_TIMEOUT`]).
    pub fn new(server_id: impl Into<String>, timeout: Duration) -> Self {
        DeleteMachine {
            server_id: server_id.into(),
            state: DeleteState::Start,
            started: Instant::now(),
            timeout,
            floating_ips_deleted: 0,
        }
    }

    pub fn state(&self) -> &DeleteState {
        &self.state
    }

    /// A cloud error: not found = already gone; temporary = try again; else failed.
    fn on_error(&mut self, during: &'static str, e: CloudError, retry: DeleteState) -> Step {
        if e.is_not_found() {
            self.state = DeleteState::Complete;
            Step::Progress
        } else if e.is_retryable() {
            tracing::debug!(server = %self.server_id, error = %e, "temporary error while deleting");
            self.state = retry;
            Step::Wait
        } else {
            self.state = DeleteState::Failed(DeleteError::Cloud {
                server_id: self.server_id.clone(),
                during,
                source: e,
            });
            Step::Progress
        }
    }

    /// Performs at most one step.
    pub async fn advance(&mut self, cloud: &dyn CloudDriver) -> Step {
        let id = self.server_id.clone();
        match std::mem::replace(&mut self.state, DeleteState::Start) {
            DeleteState::Start => {
                let server = match cloud.get_server(&id).await {
                    Ok(Some(s)) => s,
                    Ok(None) => {
                        self.state = DeleteState::Complete;
                        return Step::Progress;
                    }
                    Err(e) => return self.on_error("get server", e, DeleteState::Start),
                };
                if server.addresses.is_empty() {
                    self.state = DeleteState::DeletingServer;
                    return Step::Progress;
                }
                let ports = match cloud.server_ports(&id).await {
                    Ok(p) => p,
                    Err(e) => return self.on_error("list ports", e, DeleteState::Start),
                };
                if ports.is_empty() {
                    self.state = DeleteState::DeletingServer;
                    return Step::Progress;
                }
                let fips = match cloud.list_floating_ips().await {
                    Ok(f) => f,
                    Err(e) if e.is_not_found() => Vec::new(),
                    Err(e) => return self.on_error("list floating ips", e, DeleteState::Start),
                };
                let fip_ids: Vec<String> = fips
                    .into_iter()
                    .filter(|f| {
                        f.port_id
                            .as_deref()
                            .is_some_and(|p| ports.iter().any(|port| port.id == p))
                    })
                    .map(|f| f.id)
                    .collect();
                self.state = if fip_ids.is_empty() {
                    DeleteState::DeletingServer
                } else {
                    DeleteState::DeletingFloatingIps { fip_ids }
                };
                Step::Progress
            }
            DeleteState::DeletingFloatingIps { mut fip_ids } => {
                while let Some(fip) = fip_ids.last().cloned() {
                    match cloud.delete_floating_ip(&fip).await {
                        Ok(()) => {
                            self.floating_ips_deleted += 1;
                            fip_ids.pop();
                        }
                        Err(e) if e.is_not_found() => {
                            fip_ids.pop();
                        }
                        Err(e) => {
                            return self.on_error(
                                "delete floating ip",
                                e,
                                DeleteState::DeletingFloatingIps { fip_ids },
                            )
                        }
                    }
                }
                self.state = DeleteState::DeletingServer;
                Step::Progress
            }
            DeleteState::DeletingServer => match cloud.delete_server(&id).await {
                Ok(()) => {
                    self.state = DeleteState::WaitingGone;
                    Step::Progress
                }
                Err(e) => self.on_error("delete server", e, DeleteState::DeletingServer),
            },
            DeleteState::WaitingGone => match cloud.get_server(&id).await {
                Ok(None) => {
                    self.state = DeleteState::Complete;
                    Step::Progress
                }
                Ok(Some(s)) if s.status.eq_ignore_ascii_case("DELETED") => {
                    self.state = DeleteState::Complete;
                    Step::Progress
                }
                Ok(Some(_)) => {
                    self.state = DeleteState::WaitingGone;
                    Step::Wait
                }
                Err(e) => self.on_error("refresh server", e, DeleteState::WaitingGone),
            },
            terminal @ (DeleteState::Complete | DeleteState::Failed(_)) => {
                self.state = terminal;
                Step::Wait
            }
        }
    }

    /// Drives the delete to its end with backoff, bounded by the timeout.
    pub async fn run(
        mut self,
        cloud: &dyn CloudDriver,
        mut backoff: Backoff,
    ) -> Result<(), DeleteError> {
        let deadline = self.started + self.timeout;
        while !self.state.is_terminal() {
            if Instant::now() >= deadline {
                self.state = DeleteState::Failed(DeleteError::Timeout {
                    server_id: self.server_id.clone(),
                    timeout: self.timeout,
                });
                break;
            }
            match self.advance(cloud).await {
                Step::Progress => backoff.reset(),
                Step::Wait => tokio::time::sleep(backoff.next_before(deadline)).await,
            }
        }
        match self.state {
            DeleteState::Failed(e) => Err(e),
            _ => Ok(()),
        }
    }
}

/// Deletes `server_id` (floating IPs first) and waits until it is gone.
pub async fn delete_server(
    cloud: &dyn CloudDriver,
    server_id: &str,
    timeout: Duration,
) -> Result<(), DeleteError> {
    DeleteMachine::new(server_id, timeout)
        .run(cloud, Backoff::default())
        .await
}
