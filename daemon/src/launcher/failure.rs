//! Why a launch attempt failed, and how Nodepool accounts for it: the
//! statsd `<result>` key of each failure, and whether it is a quota failure (the node
//! becomes `aborted`, the provider quota cache is invalidated, and it does not count
//! against `launch-retries`).

use std::time::Duration;

use nodepool_shared::cloud::{is_quota_message, CloudError};
use nodepool_shared::stats::names::{self, result};
use nodepool_shared::stats::Statsd;

/// A failed launch attempt.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The cloud refused for lack of quota (create refused, or the server's fault says so).
    #[error("quota exceeded{}: {message}", server_suffix(.server_id))]
    Quota {
        server_id: Option<String>,
        message: String,
    },
    /// The server went to `ERROR` (fault text if the cloud gave one).
    #[error("server {server_id} in error state: {}", fault.as_deref().unwrap_or("no fault reported"))]
    ServerError {
        server_id: String,
        fault: Option<String>,
    },
    /// The SSH host-key scan found nothing within `boot-timeout` (Nodepool's
    /// `ConnectionTimeoutException` from nodescan).
    #[error("host-key scan of server {server_id} failed: {detail}")]
    Keyscan { server_id: String, detail: String },
    /// The whole launch (waiting for `ACTIVE` included) took longer than `launch-timeout`.
    #[error("timeout waiting for instance creation (launch-timeout {}s){}", timeout.as_secs(), server_suffix(.server_id))]
    LaunchTimeout {
        server_id: Option<String>,
        timeout: Duration,
    },
    /// The server disappeared while we waited for it.
    #[error("server {server_id} disappeared during launch")]
    ServerVanished { server_id: String },
    /// No flavor matches the label.
    #[error("no flavor matches {wanted}")]
    FlavorNotFound { wanted: String },
    /// The image is not in the cloud.
    #[error("unable to find image `{0}`")]
    ImageNotFound(String),
    /// A configured network is not in the cloud.
    #[error("unable to find network `{0}`")]
    NetworkNotFound(String),
    /// A floating IP is needed but cannot be attached (no port, or it never showed up).
    #[error("floating IP for server {server_id}: {detail}")]
    FloatingIp { server_id: String, detail: String },
    /// The launch was told to stop (its node record was deleted under it): no retry,
    /// and the caller deletes the server it created, if any.
    #[error("launch stopped: the node record was deleted{}", server_suffix(.server_id))]
    Stopped { server_id: Option<String> },
    /// A bug or impossible state (never expected).
    #[error("internal error: {0}")]
    Internal(String),
    /// Any other cloud API failure.
    #[error("{during}: {source}")]
    Cloud {
        during: &'static str,
        #[source]
        source: CloudError,
    },
}

fn server_suffix(id: &Option<String>) -> String {
    id.as_ref()
        .map(|i| format!(" (server {i})"))
        .unwrap_or_default()
}

impl LaunchError {
    /// Wraps a cloud error; quota errors become [`LaunchError::Quota`] (Python matches
    /// "quota exceeded" / "number of ports exceeded" in any exception text).
    pub fn cloud(during: &'static str, source: CloudError, server_id: Option<&str>) -> Self {
        if source.is_quota() || is_quota_message(&source.to_string()) {
            return LaunchError::Quota {
                server_id: server_id.map(str::to_string),
                message: source.to_string(),
            };
        }
        LaunchError::Cloud { during, source }
    }

    /// The statsd `<result>` key (`nodepool.launch.<result>` …).
    pub fn stats_key(&self) -> &'static str {
        match self {
            LaunchError::Quota { .. } => result::ERROR_QUOTA,
            LaunchError::ServerError { .. } | LaunchError::ServerVanished { .. } => {
                result::ERROR_STATUS
            }
            LaunchError::LaunchTimeout { .. } => result::ERROR_SERVER_CREATE_TIMEOUT,
            LaunchError::Keyscan { .. } => result::ERROR_KEYSCAN,
            LaunchError::FloatingIp { .. } => result::ERROR_NETWORK,
            LaunchError::FlavorNotFound { .. }
            | LaunchError::ImageNotFound(_)
            | LaunchError::NetworkNotFound(_)
            | LaunchError::Internal(_)
            | LaunchError::Stopped { .. }
            | LaunchError::Cloud { .. } => result::ERROR_UNKNOWN,
        }
    }

    /// True for quota failures: the node becomes `aborted`, not `failed`.
    pub fn is_quota(&self) -> bool {
        matches!(self, LaunchError::Quota { .. })
    }

    /// The cloud server this attempt left behind, if known (to delete before a retry).
    pub fn server_id(&self) -> Option<&str> {
        match self {
            LaunchError::Quota { server_id, .. }
            | LaunchError::LaunchTimeout { server_id, .. }
            | LaunchError::Stopped { server_id } => server_id.as_deref(),
            LaunchError::ServerError { server_id, .. }
            | LaunchError::Keyscan { server_id, .. }
            | LaunchError::ServerVanished { server_id }
            | LaunchError::FloatingIp { server_id, .. } => Some(server_id),
            _ => None,
        }
    }
}

/// Records one launch outcome (`ready` or a [`LaunchError::stats_key`]) as Nodepool
/// does: a timer and a +1 counter for each of `nodepool.launch.provider.<p>.<result>`,
/// `nodepool.launch.<result>`, `….provider.<p>.<az>.<result>` (with an AZ) and
/// `nodepool.launch.requestor.<requestor>.<result>` (with a requestor).
pub fn record_launch(
    statsd: &Statsd,
    provider: &str,
    az: Option<&str>,
    requestor: Option<&str>,
    result_key: &str,
    elapsed: Duration,
) {
    for key in names::launch_keys(provider, az, requestor, result_key) {
        statsd.timer_and_count(&key, elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_quota() {
        let q = LaunchError::cloud(
            "create server",
            CloudError::from_status(
                "compute.POST.servers",
                403,
                br#"{"forbidden": {"message": "Quota exceeded for cores"}}"#,
            ),
            None,
        );
        assert!(q.is_quota());
        assert_eq!(q.stats_key(), "error.quota");
        let e = LaunchError::cloud(
            "create server",
            CloudError::from_status("compute.POST.servers", 500, b"boom"),
            None,
        );
        assert!(!e.is_quota());
        assert_eq!(e.stats_key(), "error.unknown");
        let e = LaunchError::ServerError {
            server_id: "s".into(),
            fault: Some("No valid host".into()),
        };
        assert_eq!(e.stats_key(), "error.status");
        assert!(e.to_string().contains("No valid host"));
        assert_eq!(e.server_id(), Some("s"));
        let e = LaunchError::LaunchTimeout {
            server_id: Some("s".into()),
            timeout: Duration::from_secs(3600),
        };
        assert_eq!(e.stats_key(), "error.servercreatetimeout");
        assert_eq!(e.server_id(), Some("s"));
        let e = LaunchError::Keyscan {
            server_id: "s".into(),
            detail: "timeout".into(),
        };
        assert_eq!(e.stats_key(), "error.keyscan");
        assert_eq!(e.server_id(), Some("s"));
    }
}
