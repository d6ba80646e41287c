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
//! errors (5xx, connection problems, timeouts) and authentication failures (the
//! provider's authentication backs off by itself, see
//! `nodepool_shared::cloud::auth_backoff`) are retried with backoff until the deadline.
//!
//! A delete talks to a [`DeleteCloud`]: one driver for its whole life (the CLI, a failed
//! launch attempt's cleanup), or the provider as started *now* (the DeletedNodeWorker):
//! the driver is looked up before every step, so a provider restarted with a corrected
//! clouds.yaml or config carries on the running deletes at once, and a provider that is
//! no longer started ends them (the node is unlocked and picked up again later). A
//! delete that ran out of time says why: the server still existed, or the cloud could
//! not be reached (with the last error).

use std::sync::Arc;
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
    /// The timeout passed while the cloud could not be reached (or would not
    /// authenticate us): whether the server exists is unknown.
    #[error("could not reach the cloud to delete server {server_id} within {}s: {source}", timeout.as_secs())]
    Unreachable {
        server_id: String,
        timeout: Duration,
        #[source]
        source: CloudError,
    },
    /// The provider was stopped (removed from the config, or it cannot be started)
    /// while the delete ran.
    #[error("provider {provider} is no longer started; delete of server {server_id} stopped")]
    ProviderStopped { server_id: String, provider: String },
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
            DeleteError::Timeout { .. } | DeleteError::Unreachable { .. } => {
                result::ERROR_SERVER_DELETE_TIMEOUT
            }
            DeleteError::ProviderStopped { .. } | DeleteError::Cloud { .. } => {
                result::ERROR_UNKNOWN
            }
        }
    }
}

/// The driver of a started provider as it is now (a restart replaces it).
pub trait DriverSource: Send + Sync {
    /// The provider's name.
    fn provider(&self) -> &str;
    /// Its driver now; `None` once the provider is no longer started.
    fn current(&self) -> Option<Arc<dyn CloudDriver>>;
}

/// What a delete talks to.
#[derive(Clone, Copy)]
pub enum DeleteCloud<'a> {
    /// This driver for the whole delete.
    Fixed(&'a dyn CloudDriver),
    /// The provider's driver as started at each step.
    Following(&'a dyn DriverSource),
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
    /// The error of the last step that failed and is being retried (cleared by progress
    /// and by a successful poll).
    last_error: Option<CloudError>,
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
            last_error: None,
            floating_ips_deleted: 0,
        }
    }

    pub fn state(&self) -> &DeleteState {
        &self.state
    }

    /// A cloud error: not found = already gone; temporary or authentication = try
    /// again; else failed.
    fn on_error(&mut self, during: &'static str, e: CloudError, retry: DeleteState) -> Step {
        if e.is_not_found() {
            self.state = DeleteState::Complete;
            Step::Progress
        } else if e.is_retryable() || e.is_auth() {
            tracing::debug!(server = %self.server_id, error = %e, "temporary error while deleting");
            self.last_error = Some(e);
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
                    self.last_error = None;
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
    pub async fn run(self, cloud: &dyn CloudDriver, backoff: Backoff) -> Result<(), DeleteError> {
        self.run_in(DeleteCloud::Fixed(cloud), backoff).await
    }

    /// [`run`](Self::run) against a [`DeleteCloud`]: with [`DeleteCloud::Following`]
    /// every step uses the provider's driver as started then (see the module doc).
    pub async fn run_in(
        mut self,
        cloud: DeleteCloud<'_>,
        mut backoff: Backoff,
    ) -> Result<(), DeleteError> {
        let deadline = self.started + self.timeout;
        let mut driver: Option<Arc<dyn CloudDriver>> = None;
        while !self.state.is_terminal() {
            if Instant::now() >= deadline {
                self.state = DeleteState::Failed(self.timed_out());
                break;
            }
            let step = match cloud {
                DeleteCloud::Fixed(d) => self.advance(d).await,
                DeleteCloud::Following(source) => {
                    let Some(now) = source.current() else {
                        self.state = DeleteState::Failed(DeleteError::ProviderStopped {
                            server_id: self.server_id.clone(),
                            provider: source.provider().to_string(),
                        });
                        break;
                    };
                    if driver.as_ref().is_some_and(|d| !same_driver(d, &now)) {
                        tracing::info!(server = %self.server_id, provider = %source.provider(),
                            state = self.state.name(), "provider restarted; the delete carries on with its new settings");
                        backoff.reset();
                    }
                    let step = self.advance(now.as_ref()).await;
                    driver = Some(now);
                    step
                }
            };
            match step {
                Step::Progress => {
                    self.last_error = None;
                    backoff.reset();
                }
                Step::Wait => tokio::time::sleep(backoff.next_before(deadline)).await,
            }
        }
        match self.state {
            DeleteState::Failed(e) => Err(e),
            _ => Ok(()),
        }
    }

    /// The error for a delete out of time: the cloud could not be reached (last step
    /// failed) or the server was still there.
    fn timed_out(&mut self) -> DeleteError {
        let server_id = self.server_id.clone();
        match self.last_error.take() {
            Some(source) => DeleteError::Unreachable {
                server_id,
                timeout: self.timeout,
                source,
            },
            None => DeleteError::Timeout {
                server_id,
                timeout: self.timeout,
            },
        }
    }
}

/// Whether two handles are the same driver object (a restarted provider has a new one).
fn same_driver(a: &Arc<dyn CloudDriver>, b: &Arc<dyn CloudDriver>) -> bool {
    std::ptr::eq(Arc::as_ptr(a) as *const (), Arc::as_ptr(b) as *const ())
}

/// Deletes `server_id` (floating IPs first) and waits until it is gone.
pub async fn delete_server(
    cloud: &dyn CloudDriver,
    server_id: &str,
    timeout: Duration,
) -> Result<(), DeleteError> {
    delete_server_in(DeleteCloud::Fixed(cloud), server_id, timeout).await
}

/// [`delete_server`] against a [`DeleteCloud`].
pub async fn delete_server_in(
    cloud: DeleteCloud<'_>,
    server_id: &str,
    timeout: Duration,
) -> Result<(), DeleteError> {
    DeleteMachine::new(server_id, timeout)
        .run_in(cloud, Backoff::default())
        .await
}
