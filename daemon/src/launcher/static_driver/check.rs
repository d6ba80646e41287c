//! Talking to a static host, as Nodepool's static driver does:
//!
//! * [`host_keys`] before a host's nodes are registered (or updated): for `ssh` and
//!   `network_cli` connections the host keys are scanned (Nodepool's nodescan, see
//!   `nodepool_shared::ssh`) and must include every configured `host-key` — unless
//!   `host-key-checking` is false, when the configured keys are taken as they are and
//!   the host is not contacted; for other connection types (`winrm`, …) the port must
//!   answer and no keys are stored.
//! * [`is_alive`] before a ready node is handed out: the port must answer within the
//!   host's `timeout` (skipped with `host-key-checking: false`).
//! * [`address`]: the address the node record carries (`public_ipv4` or `public_ipv6`).
//!
//! A host is reached at the first address its name resolves to. A name that is not a
//! syntactically valid host name is refused without asking the resolver. As in
//! Nodepool (and its tests), a name containing `fake` is never resolved or contacted:
//! its keys are `["ssh-rsa FAKEKEY"]` and it has no address.

use std::net::IpAddr;
use std::time::Duration;

use nodepool_shared::config::{HostKey, StaticNode};
use nodepool_shared::ssh::{scan_host_keys, KeyscanError, ScanOptions};
use tokio::time::Instant;

/// The key Nodepool's tests (and ours) get for a `fake` host.
pub const FAKE_KEY: &str = "ssh-rsa FAKEKEY";

/// Longest time a name lookup may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a static host cannot be registered or handed out.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The name is not an address and not a valid host name.
    #[error("{host}: `{}` is not a valid host name", host.name)]
    InvalidName {
        /// The host.
        host: HostKey,
    },
    /// The name does not resolve.
    #[error("{host}: cannot resolve `{}`: {reason}", host.name)]
    Resolve {
        /// The host.
        host: HostKey,
        /// What the resolver said.
        reason: String,
    },
    /// The host did not answer in time.
    #[error("{host}: {source}")]
    Unreachable {
        /// The host.
        host: HostKey,
        /// The scan's error.
        #[source]
        source: KeyscanError,
    },
    /// The scanned keys do not include every configured `host-key`.
    #[error("{host}: host key mismatch: configured {configured:?}, scanned {scanned:?}")]
    HostKeyMismatch {
        /// The host.
        host: HostKey,
        /// The configured `host-key`s.
        configured: Vec<String>,
        /// What the host presented.
        scanned: Vec<String>,
    },
}

/// Whether `name` is a syntactically valid host name (RFC 1123 labels; `_` accepted).
pub fn valid_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The first address `host` resolves to (`None` for a `fake` host).
pub async fn address(host: &StaticNode) -> Result<Option<IpAddr>, CheckError> {
    if host.name.contains("fake") {
        return Ok(None);
    }
    if let Ok(ip) = host.name.parse::<IpAddr>() {
        return Ok(Some(ip));
    }
    if !valid_host_name(&host.name) {
        return Err(CheckError::InvalidName { host: host.key() });
    }
    let lookup = tokio::net::lookup_host((host.name.as_str(), host.connection_port));
    let reason = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(mut addrs)) => match addrs.next() {
            Some(a) => return Ok(Some(a.ip())),
            None => "no address".to_string(),
        },
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {}s", RESOLVE_TIMEOUT.as_secs()),
    };
    Err(CheckError::Resolve {
        host: host.key(),
        reason,
    })
}

/// Nodepool's nodescan of a static host: waits (up to its `timeout`) until its port
/// answers, then reads its host keys when `gather` is set.
async fn nodescan(host: &StaticNode, gather: bool) -> Result<Vec<String>, CheckError> {
    if host.name.contains("fake") {
        return Ok(if gather {
            vec![FAKE_KEY.to_string()]
        } else {
            Vec::new()
        });
    }
    let Some(ip) = address(host).await? else {
        return Ok(Vec::new());
    };
    let mut opts = ScanOptions::default();
    if !gather {
        opts.key_types.clear();
    }
    scan_host_keys(
        &ip.to_string(),
        host.connection_port,
        Instant::now() + host.timeout,
        &opts,
    )
    .await
    .map_err(|source| CheckError::Unreachable {
        host: host.key(),
        source,
    })
}

/// `"<type> <base64>"` of a key line (a trailing comment does not count).
fn key_material(line: &str) -> Vec<&str> {
    line.split_whitespace().take(2).collect()
}

/// The host keys to store on the host's nodes (Nodepool's `checkHost`); see the module
/// doc.
pub async fn host_keys(host: &StaticNode) -> Result<Vec<String>, CheckError> {
    let gather = host.gathers_host_keys();
    if gather && !host.host_key_checking {
        return Ok(host.host_keys.clone());
    }
    let scanned = nodescan(host, gather).await?;
    if !gather {
        return Ok(Vec::new());
    }
    let have: Vec<Vec<&str>> = scanned.iter().map(|k| key_material(k)).collect();
    if host
        .host_keys
        .iter()
        .all(|k| have.contains(&key_material(k)))
    {
        Ok(scanned)
    } else {
        Err(CheckError::HostKeyMismatch {
            host: host.key(),
            configured: host.host_keys.clone(),
            scanned,
        })
    }
}

/// Whether the host answers now (Nodepool's liveness check before reuse); always with
/// `host-key-checking: false`.
pub async fn is_alive(host: &StaticNode) -> Result<(), CheckError> {
    if !host.host_key_checking {
        return Ok(());
    }
    nodescan(host, false).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> StaticNode {
        StaticNode {
            name: name.into(),
            labels: vec!["l".into()],
            username: "zuul".into(),
            timeout: Duration::from_millis(300),
            host_key_checking: true,
            host_keys: vec![],
            connection_port: 1,
            connection_type: "ssh".into(),
            shell_type: None,
            max_parallel_jobs: 1,
            python_path: "auto".into(),
        }
    }

    #[test]
    fn host_name_syntax() {
        assert!(valid_host_name("node1.example.com"));
        assert!(valid_host_name("node_1.example.com."));
        assert!(!valid_host_name("unresolvable..example"));
        assert!(!valid_host_name("bad name"));
        assert!(!valid_host_name(&"x".repeat(64)));
        assert!(!valid_host_name("-x"));
        assert!(!valid_host_name(""));
    }

    #[tokio::test]
    async fn fake_hosts_are_never_contacted() {
        let mut h = host("fake-host-1");
        h.host_keys = vec![FAKE_KEY.into()];
        assert_eq!(host_keys(&h).await.unwrap(), [FAKE_KEY]);
        assert_eq!(address(&h).await.unwrap(), None);
        h.connection_type = "winrm".into();
        assert!(host_keys(&h).await.unwrap().is_empty());
        assert!(is_alive(&h).await.is_ok());
    }

    #[tokio::test]
    async fn without_checking_the_configured_keys_are_taken() {
        let mut h = host("127.0.0.1");
        h.host_key_checking = false;
        h.host_keys = vec!["ssh-ed25519 AAAA".into()];
        assert_eq!(host_keys(&h).await.unwrap(), ["ssh-ed25519 AAAA"]);
        assert!(is_alive(&h).await.is_ok(), "not contacted");
    }

    #[tokio::test]
    async fn a_closed_port_and_a_bad_name_fail_with_the_host_named() {
        let h = host("127.0.0.1");
        let e = is_alive(&h).await.unwrap_err();
        assert!(matches!(e, CheckError::Unreachable { .. }), "{e}");
        assert!(e.to_string().starts_with("zuul@127.0.0.1:1: "), "{e}");
        let e = host_keys(&host("no..such")).await.unwrap_err();
        assert!(matches!(e, CheckError::InvalidName { .. }), "{e}");
        assert_eq!(
            address(&host("127.0.0.2")).await.unwrap(),
            Some([127, 0, 0, 2].into())
        );
    }

    #[test]
    fn key_comments_do_not_count() {
        assert_eq!(
            key_material("ssh-ed25519 AAAA root@h"),
            key_material("ssh-ed25519  AAAA")
        );
    }
}
