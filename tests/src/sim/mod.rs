//! In-memory OpenStack API simulator (Keystone v3, Nova v2.1, Glance v2, Neutron v2.0) on
//! 127.0.0.1, used by end-to-end tests (in-process via [`Simulator::start`]) and as the
//! standalone `openstack-sim` binary (for the OpenStack CLI and benchmarks).
//!
//! URL layout on one port (`<base>` = `http://127.0.0.1:<port>`):
//! * Keystone: `<base>/identity` (`auth_url`; `/v3/...` also answered at the root)
//! * Nova: `<base>/compute/v2.1`, Glance: `<base>/image`, Neutron: `<base>/network`
//! * Cinder (limits and boot-from-volume volumes only): `<base>/volume/v3/<project_id>`
//! * test control: `<base>/admin/...` (see [`admin`])
//! * a fake sshd on every address of every `ACTIVE` server (all in 127.0.0.0/8), port
//!   [`SimConfig::ssh_port`] (see [`sshd`]), for the launcher's host-key scan
//!
//! Every API call counts under an operation name (`compute.servers.create`,
//! `image.images.upload`, `network.floatingips.list`, ...); see [`SimAdmin::counters`].

pub mod admin;
mod app;
mod cinder;
pub mod config;
mod console;
mod glance;
mod keystone;
mod neutron;
mod nova;
pub mod sshd;
pub mod state;
mod util;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use admin::{AdminError, LeakedServer, RequestRecord, SimAdmin, Snapshot};
pub use config::{Credentials, FailNext, Knobs, Quota, SimConfig};
pub use state::World;

/// How long [`SimHandle::shutdown`] waits for in-flight requests.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the simulator could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot bind 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("cannot read simulator snapshot {path}: {source}")]
    ReadSnapshot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt simulator snapshot {path}: {source}")]
    ParseSnapshot {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write simulator snapshot {path}: {source}")]
    WriteSnapshot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("simulator server failed: {0}")]
    Serve(String),
}

/// Entry point: `Simulator::start(SimConfig::default()).await?`.
pub struct Simulator;

impl Simulator {
    /// Binds 127.0.0.1:`config.port`, loads the snapshot if configured and present, and serves
    /// in a background task until [`SimHandle::shutdown`] (or drop).
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(|source| SimError::Bind {
                port: config.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            port: config.port,
            source,
        })?;
        let (world, knobs) = initial_state(&config)?;
        let base = format!("http://{addr}");
        let mut config = config;
        config.knobs = knobs;
        // Port 0: reserve a free port on 127.0.0.1 for the simulator's lifetime (bound, not
        // listening), so concurrent simulators never share an SSH port.
        let ssh_reservation = if config.ssh_port == 0 {
            let s = tokio::net::TcpSocket::new_v4()
                .and_then(|s| s.bind(([127, 0, 0, 1], 0).into()).map(|_| s))
                .map_err(|source| SimError::Bind { port: 0, source })?;
            config.ssh_port = s
                .local_addr()
                .map_err(|source| SimError::Bind { port: 0, source })?
                .port();
            Some(s)
        } else {
            None
        };
        let sim = Arc::new(app::Sim::new(config, base, world, ssh_reservation));
        let router = router(sim.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let res = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = res {
                tracing::error!("openstack-sim server error: {e}");
            }
        });
        tracing::info!("openstack-sim listening on http://{addr}");
        Ok(SimHandle {
            sim,
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

fn initial_state(config: &SimConfig) -> Result<(World, Knobs), SimError> {
    if let Some(path) = &config.state_file {
        if path.exists() {
            let text = std::fs::read(path).map_err(|source| SimError::ReadSnapshot {
                path: path.clone(),
                source,
            })?;
            let snap: Snapshot =
                serde_json::from_slice(&text).map_err(|source| SimError::ParseSnapshot {
                    path: path.clone(),
                    source,
                })?;
            let mut world = snap.world;
            world.after_load(Instant::now());
            return Ok((world, snap.knobs));
        }
    }
    Ok((World::new(config), config.knobs.clone()))
}

/// All services on one router; trailing slashes are stripped before routing
/// (clients ask for both `/compute/v2.1` and `/compute/v2.1/`).
fn router(sim: Arc<app::Sim>) -> Router {
    let inner = Router::new()
        .merge(keystone::routes())
        .merge(nova::routes())
        .merge(glance::routes())
        .merge(neutron::routes())
        .merge(cinder::routes())
        .merge(admin::routes())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(sim);
    Router::new()
        .fallback_service(inner)
        .layer(axum::middleware::map_request(strip_trailing_slash))
        .layer(axum::middleware::map_response(add_request_id))
}

/// Every OpenStack service answers with a request id.
async fn add_request_id(mut res: axum::response::Response) -> axum::response::Response {
    if let Ok(v) = format!("req-{}", util::new_id()).parse() {
        res.headers_mut().insert("x-openstack-request-id", v);
    }
    res
}

async fn strip_trailing_slash(mut req: Request) -> Request {
    let path = req.uri().path();
    tracing::debug!(method = %req.method(), uri = %req.uri(), "openstack-sim request");
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let pq = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(p) = pq.parse() {
            parts.path_and_query = Some(p);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

async fn not_found(req: Request) -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            serde_json::json!({"error": {"code": 404, "title": "Not Found",
            "message": format!("openstack-sim does not implement {} {}", req.method(), req.uri().path())}}),
        ),
    )
}

/// A running simulator. Dropping it stops the server (without saving the snapshot).
pub struct SimHandle {
    sim: Arc<app::Sim>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Which credentials a generated clouds.yaml uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloudsAuth {
    Password,
    ApplicationCredential,
}

impl SimHandle {
    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        self.sim.base.clone()
    }

    /// Keystone `auth_url` (`<url>/identity`).
    pub fn auth_url(&self) -> String {
        format!("{}/identity", self.sim.base)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn config(&self) -> &SimConfig {
        &self.sim.config
    }

    /// The port the fake sshds listen on (`connection-port` for the launcher's config).
    pub fn ssh_port(&self) -> u16 {
        self.sim.config.ssh_port
    }

    /// Test control (counters, knobs, leaks, state).
    pub fn admin(&self) -> SimAdmin {
        SimAdmin(self.sim.clone())
    }

    /// clouds.yaml text with one cloud `cloud_name` using password auth.
    pub fn clouds_yaml(&self, cloud_name: &str) -> String {
        self.clouds_yaml_with(cloud_name, CloudsAuth::Password)
    }

    /// clouds.yaml text with one cloud `cloud_name` using the given credentials.
    pub fn clouds_yaml_with(&self, cloud_name: &str, auth: CloudsAuth) -> String {
        clouds_yaml_text(&self.sim.config, &self.auth_url(), cloud_name, auth)
    }

    /// Writes [`SimHandle::clouds_yaml`] to `path`.
    pub fn write_clouds_yaml(&self, path: &Path, cloud_name: &str) -> std::io::Result<()> {
        std::fs::write(path, self.clouds_yaml(cloud_name))
    }

    /// Stops serving (in-flight requests finish) and writes the snapshot if configured.
    pub async fn shutdown(mut self) -> Result<(), SimError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take() {
            // In-flight requests get a few seconds; a stuck client must not hang the caller.
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                Ok(res) => res.map_err(|e| SimError::Serve(e.to_string()))?,
                Err(_) => {
                    tracing::warn!("openstack-sim: requests still running after {SHUTDOWN_GRACE:?}; aborting them");
                    task.abort();
                }
            }
        }
        if let Some(path) = self.sim.config.state_file.clone() {
            self.admin()
                .save_snapshot(&path)
                .map_err(|source| SimError::WriteSnapshot { path, source })?;
        }
        Ok(())
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// clouds.yaml for a simulator at `auth_url`.
pub fn clouds_yaml_text(
    config: &SimConfig,
    auth_url: &str,
    cloud_name: &str,
    auth: CloudsAuth,
) -> String {
    let c = &config.credentials;
    let auth_block = match auth {
        CloudsAuth::Password => format!(
            "    auth:\n      auth_url: {auth_url}\n      username: {}\n      password: {}\n      project_name: {}\n      user_domain_name: {}\n      project_domain_name: {}\n",
            c.username, c.password, c.project_name, c.domain_name, c.domain_name
        ),
        CloudsAuth::ApplicationCredential => format!(
            "    auth_type: v3applicationcredential\n    auth:\n      auth_url: {auth_url}\n      application_credential_id: {}\n      application_credential_secret: {}\n",
            c.app_credential_id, c.app_credential_secret
        ),
    };
    format!(
        "clouds:\n  {cloud_name}:\n{auth_block}    region_name: {}\n    identity_api_version: 3\n    interface: public\n",
        config.region
    )
}
