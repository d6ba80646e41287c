//! Typed cloud errors and the rules that turn an HTTP reply into one.
//!
//! The launcher reacts differently to each kind: a quota error aborts the node without
//! counting against `launch-retries`, a retryable error is tried again on the next
//! pass, a 404 on delete is success. Classification reads only the reply (never the
//! request), so secrets sent in a request can never leak into an error message.

use std::path::PathBuf;

/// Longest reply excerpt kept in an error message.
const MAX_MESSAGE: usize = 500;

/// Why a cloud API call failed.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The cloud refused for lack of quota ("quota exceeded", "number of ports exceeded",
    /// or a fault with "exceeds" and "quota"; Neutron `OverQuota`).
    #[error("{operation}: quota exceeded: {message}")]
    Quota { operation: String, message: String },
    /// The object does not exist (HTTP 404).
    #[error("{operation}: not found: {message}")]
    NotFound { operation: String, message: String },
    /// Keystone rejected the credentials, or the cloud still answered 401 after a fresh
    /// token.
    #[error("{operation}: authentication failed: {message}")]
    Auth { operation: String, message: String },
    /// No token was requested: an earlier token request of this provider failed and the
    /// backoff window after it is still open (see `auth_backoff`).
    #[error(
        "not authenticating to the cloud for another {}s after {failures} failed attempt(s); last error: {last_error}",
        retry_in.as_secs_f64().ceil()
    )]
    AuthBackoff {
        failures: u32,
        retry_in: std::time::Duration,
        last_error: String,
    },
    /// A server-side (5xx), throttling (429) or connection problem: try again later.
    #[error("{operation}: temporary failure{}: {message}", status_suffix(*status))]
    Retryable {
        operation: String,
        status: Option<u16>,
        message: String,
    },
    /// No reply within the call's timeout.
    #[error("{operation}: timed out")]
    Timeout { operation: String },
    /// Any other refusal (4xx).
    #[error("{operation}: HTTP {status}: {message}")]
    Http {
        operation: String,
        status: u16,
        message: String,
    },
    /// The reply could not be understood (bad JSON, missing field, missing header).
    #[error("{operation}: bad reply from cloud: {detail}")]
    BadReply { operation: String, detail: String },
    /// The service catalog has no endpoint for a service we need.
    #[error(
        "no `{service}` endpoint in the service catalog (region {region}, interface {interface})"
    )]
    EndpointNotFound {
        service: String,
        region: String,
        interface: String,
    },
    /// A lookup by name matched more than one object.
    #[error("{what} `{name}` is ambiguous: {count} matches")]
    Ambiguous {
        what: &'static str,
        name: String,
        count: usize,
    },
    /// The cloud configuration (clouds.yaml entry, CA file, …) is unusable.
    #[error("cloud configuration: {0}")]
    Config(String),
    /// A local file (image to upload) could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn status_suffix(status: Option<u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

impl CloudError {
    /// True for errors worth retrying unchanged later (5xx, 429, connection, timeout,
    /// an authentication backoff window).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CloudError::Retryable { .. }
                | CloudError::Timeout { .. }
                | CloudError::AuthBackoff { .. }
        )
    }

    /// True when the credentials were refused, or no token is requested now because an
    /// earlier token request failed ([`CloudError::AuthBackoff`]).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            CloudError::Auth { .. } | CloudError::AuthBackoff { .. }
        )
    }

    /// True when the cloud could not be reached or did not answer (connection refused or
    /// reset, DNS, timeout): nothing is known about the object the call was about.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            CloudError::Retryable { status: None, .. } | CloudError::Timeout { .. }
        )
    }

    /// True for quota errors (node `aborted`, stats `error.quota`).
    pub fn is_quota(&self) -> bool {
        matches!(self, CloudError::Quota { .. })
    }

    /// True for 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CloudError::NotFound { .. })
    }

    /// A bad-reply error for `operation`.
    pub(crate) fn bad_reply(operation: &str, detail: impl Into<String>) -> Self {
        CloudError::BadReply {
            operation: operation.to_string(),
            detail: detail.into(),
        }
    }

    /// Maps a transport error from reqwest (no HTTP status received).
    pub(crate) fn from_transport(operation: &str, err: &reqwest::Error) -> Self {
        if err.is_timeout() {
            return CloudError::Timeout {
                operation: operation.to_string(),
            };
        }
        if err.is_decode() {
            return CloudError::bad_reply(operation, error_chain(err));
        }
        // Connection refused/reset, body read errors, DNS: all worth retrying.
        CloudError::Retryable {
            operation: operation.to_string(),
            status: None,
            message: error_chain(err),
        }
    }

    /// Classifies a non-2xx reply.
    pub fn from_status(operation: &str, status: u16, body: &[u8]) -> Self {
        let (kind, message) = reply_message(body);
        let operation = operation.to_string();
        if is_quota_message(&message) || kind.as_deref() == Some("OverQuota") {
            return CloudError::Quota { operation, message };
        }
        match status {
            404 => CloudError::NotFound { operation, message },
            401 => CloudError::Auth { operation, message },
            429 | 500..=599 => CloudError::Retryable {
                operation,
                status: Some(status),
                message,
            },
            _ => CloudError::Http {
                operation,
                status,
                message,
            },
        }
    }
}

/// Nodepool's quota rules applied to an error or fault message:
/// "quota exceeded", "number of ports exceeded", or both "exceeds" and "quota".
pub fn is_quota_message(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("quota exceeded")
        || m.contains("number of ports exceeded")
        || (m.contains("exceeds") && m.contains("quota"))
}

/// The human message of an OpenStack error body and, for Neutron, its error `type`.
///
/// Nova: `{"forbidden": {"message": "...", "code": 403}}`; Neutron:
/// `{"NeutronError": {"type": "OverQuota", "message": "...", "detail": ""}}`; Keystone:
/// `{"error": {"message": "...", "code": 401, "title": "..."}}`; Glance often replies
/// with plain text or HTML. Anything unrecognised is returned verbatim (shortened).
fn reply_message(body: &[u8]) -> (Option<String>, String) {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(m) = map.get("message").and_then(|m| m.as_str()) {
            return (None, shorten(m));
        }
        for v in map.values() {
            if let Some(inner) = v.as_object() {
                if let Some(m) = inner.get("message").and_then(|m| m.as_str()) {
                    let kind = inner
                        .get("type")
                        .and_then(|t| t.as_str())
                        .map(str::to_string);
                    return (kind, shorten(m));
                }
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    (None, shorten(text.trim()))
}

fn shorten(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// An error and its sources on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nova_quota_is_quota() {
        let body = br#"{"forbidden": {"code": 403, "message": "Quota exceeded for cores: Requested 4, but already used 100 of 100 cores"}}"#;
        let e = CloudError::from_status("compute.POST.servers", 403, body);
        assert!(e.is_quota(), "{e:?}");
        assert!(e.to_string().contains("Requested 4"), "{e}");
    }

    #[test]
    fn ports_and_neutron_overquota_are_quota() {
        let body =
            br#"{"badRequest": {"code": 400, "message": "Maximum number of ports exceeded"}}"#;
        assert!(CloudError::from_status("op", 400, body).is_quota());
        let body = br#"{"NeutronError": {"type": "OverQuota", "message": "Too many floating IPs", "detail": ""}}"#;
        assert!(CloudError::from_status("op", 409, body).is_quota());
        assert!(is_quota_message(
            "Build of instance x aborted: VCPU count exceeds the project quota"
        ));
        assert!(!is_quota_message("No valid host was found."));
    }

    #[test]
    fn status_classes() {
        let e = CloudError::from_status("op", 503, b"<html>Service Unavailable</html>");
        assert!(e.is_retryable());
        assert!(e.to_string().contains("HTTP 503"), "{e}");
        assert!(CloudError::from_status("op", 429, b"").is_retryable());
        assert!(CloudError::from_status("op", 404, b"{}").is_not_found());
        assert!(matches!(
            CloudError::from_status("op", 401, br#"{"error":{"message":"bad creds","code":401}}"#),
            CloudError::Auth { message, .. } if message == "bad creds"
        ));
        assert!(matches!(
            CloudError::from_status("op", 409, b"conflict"),
            CloudError::Http { status: 409, .. }
        ));
    }

    #[test]
    fn long_bodies_are_shortened() {
        let body = "é".repeat(1000);
        let e = CloudError::from_status("op", 400, body.as_bytes());
        assert!(e.to_string().len() < 600);
    }
}
