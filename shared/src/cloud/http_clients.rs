//! The HTTP clients of the OpenStack providers, one per TLS set-up and shared by the
//! providers that have it. Building a client loads and parses the system's CA
//! certificates: with a client per provider, a launcher with 20 providers did that 20
//! times at every start (a few percent of its start's CPU), and again for each provider
//! a config reload restarts. A shared client also shares its idle connections between
//! providers of the same cloud.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use super::error::CloudError;
use crate::sync::MutexExt;

/// What makes two clients differ.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Setup {
    verify: bool,
    /// The extra CA bundle's bytes (a changed file makes a new client).
    cacert: Option<Vec<u8>>,
    connect_timeout: Duration,
}

/// Clients by set-up.
#[derive(Default)]
struct Clients(Mutex<HashMap<Setup, reqwest::Client>>);

static CLIENTS: LazyLock<Clients> = LazyLock::new(Clients::default);

/// The client for this set-up: `verify` false accepts any server certificate;
/// `cacert` names a PEM bundle trusted besides the system's CAs.
pub(crate) fn client(
    verify: bool,
    cacert: Option<&Path>,
    connect_timeout: Duration,
) -> Result<reqwest::Client, CloudError> {
    CLIENTS.get(verify, cacert, connect_timeout)
}

impl Clients {
    fn get(
        &self,
        verify: bool,
        cacert: Option<&Path>,
        connect_timeout: Duration,
    ) -> Result<reqwest::Client, CloudError> {
        let pem = match cacert {
            Some(ca) => Some(std::fs::read(ca).map_err(|source| CloudError::Io {
                path: ca.to_path_buf(),
                source,
            })?),
            None => None,
        };
        let setup = Setup {
            verify,
            cacert: pem,
            connect_timeout,
        };
        if let Some(c) = self.0.lock_or_recover().get(&setup) {
            return Ok(c.clone());
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            // Never forward the X-Auth-Token to wherever a redirect points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("nodepool-rs/", env!("CARGO_PKG_VERSION")));
        if !verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if let (Some(ca), Some(pem)) = (cacert, &setup.cacert) {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| CloudError::Config(format!("cacert {}: {e}", ca.display())))?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .build()
            .map_err(|e| CloudError::Config(format!("HTTP client: {e}")))?;
        self.0
            .lock_or_recover()
            .entry(setup)
            .or_insert(http.clone());
        Ok(http)
    }
}

#[cfg(test)]
impl Clients {
    fn len(&self) -> usize {
        self.0.lock_or_recover().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_with_the_same_tls_set_up_share_a_client() {
        let dir = tempfile::tempdir().unwrap();
        let clients = Clients::default();
        let t = Duration::from_secs(7);
        clients.get(true, None, t).unwrap();
        clients.get(true, None, t).unwrap();
        assert_eq!(clients.len(), 1);
        clients.get(false, None, t).unwrap();
        clients.get(true, None, Duration::from_secs(8)).unwrap();
        assert_eq!(clients.len(), 3);
        // A CA bundle is told apart by its content.
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "").unwrap();
        clients.get(true, Some(&ca), t).unwrap();
        clients.get(true, Some(&ca), t).unwrap();
        assert_eq!(clients.len(), 4);
        std::fs::write(&ca, "\n").unwrap();
        clients.get(true, Some(&ca), t).unwrap();
        assert_eq!(clients.len(), 5);
        // A missing CA bundle is an error naming the file.
        let missing = dir.path().join("missing.pem");
        let e = clients
            .get(true, Some(&missing), t)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
        assert_eq!(clients.len(), 5);
    }
}
