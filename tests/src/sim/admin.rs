//! Test control surface: [`SimAdmin`] (in-process) and the same operations over HTTP under
//! `/admin/...` (no token needed, not counted, no latency or injected failures).
//!
//! | method + path | body | effect |
//! |---|---|---|
//! | `GET /admin/state` | – | full dump: world, knobs, counters |
//! | `POST /admin/snapshot` | `{"path"?: str}` | write the JSON snapshot |
//! | `GET /admin/counters` / `DELETE /admin/counters` | – | calls per operation / reset (also clears the request log) |
//! | `GET /admin/requests` / `DELETE /admin/requests` | – | arrival log `[{"operation", "at_ms"}]` / clear |
//! | `GET /admin/knobs` / `PATCH /admin/knobs` | partial [`Knobs`] | read / merge knobs |
//! | `POST /admin/fail` | `{"operation", "count", "status"?}` | fail the next N calls |
//! | `POST /admin/leaks/servers` | `{"provider", "node_id"?, "pool"?, "flavor"?}` | leaked server |
//! | `POST /admin/leaks/floating-ips` | `{"count"?}` | unattached floating IPs |
//! | `POST /admin/leaks/ports` | `{"count"?}` | DOWN ports owned by `compute:nova` |
//! | `POST /admin/leaks/images` | `{"provider", "build_id", "upload_id"}` | image with Nodepool properties |
//! | `GET /admin/ssh` | – | `{"port", "listening": [addr], "host_keys": {server id: [key]}}` (fake sshds) |
//! | `POST /admin/servers/{id}/error` | `{"message"?}` | ACTIVE or BUILD server goes to ERROR with a fault |
//! | `POST /admin/servers/{id}/hang` | – | BUILD server never finishes booting |
//! | `GET` / `PUT /admin/availability-zones` | `{"zones": [str]}` | read / replace Nova's availability zones |

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::app::{json_response, ApiError, ApiResult, Service, Sim};
use super::config::{FailNext, Knobs, Quota};
use super::state::{
    BootPlan, DomainError, Fault, FloatingIp, Image, Port, Server, ServerSpec, ServerStatus, World,
};
use super::util::{new_id, now_secs};

const SVC: Service = Service::Admin;

/// Fault message of [`SimAdmin::fail_server`] when none is given.
pub const DEFAULT_SERVER_FAULT: &str = "Simulated failure (injected by openstack-sim)";

/// One API call as the simulator saw it arrive (before latency and injected failures).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RequestRecord {
    /// Operation name, e.g. `compute.servers.detail`.
    pub operation: String,
    /// Milliseconds since the simulator started.
    pub at_ms: f64,
}

/// A leaked server to inject: what `POST /admin/leaks/servers` and `--leak-server` take.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LeakedServer {
    /// `nodepool_provider_name` metadata.
    pub provider: String,
    /// `nodepool_node_id` metadata; random 10-digit id when absent.
    #[serde(default)]
    pub node_id: Option<String>,
    /// `nodepool_pool_name` metadata; `main` when absent.
    #[serde(default)]
    pub pool: Option<String>,
    /// Flavor id or name; the first flavor when absent.
    #[serde(default)]
    pub flavor: Option<String>,
}

/// Why an admin operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("Unknown flavor {0}")]
    UnknownFlavor(String),
    #[error("Instance {0} could not be found.")]
    NoServer(String),
    #[error("Instance {id} is in {status}, expected {expected}")]
    WrongStatus {
        id: String,
        status: &'static str,
        expected: &'static str,
    },
    #[error("Cannot create the server: {0}")]
    Refused(String),
    #[error("Invalid availability zones: {0}")]
    BadZones(String),
}

impl AdminError {
    fn into_api(self) -> ApiError {
        let status = match &self {
            AdminError::UnknownFlavor(_) | AdminError::Refused(_) | AdminError::BadZones(_) => {
                StatusCode::BAD_REQUEST
            }
            AdminError::NoServer(_) => StatusCode::NOT_FOUND,
            AdminError::WrongStatus { .. } => StatusCode::CONFLICT,
        };
        ApiError::new(SVC, status, self.to_string())
    }
}

/// What a snapshot file holds.
#[derive(Serialize, Deserialize)]
pub struct Snapshot {
    pub world: World,
    pub knobs: Knobs,
}

/// In-process control of a running simulator (cheap to clone).
#[derive(Clone)]
pub struct SimAdmin(pub(crate) Arc<Sim>);

impl SimAdmin {
    /// Number of calls per operation name (e.g. `compute.servers.create`) since start/reset.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.0.lock().counters.clone()
    }

    /// Number of calls of one operation.
    pub fn counter(&self, op: &str) -> u64 {
        self.0.lock().counters.get(op).copied().unwrap_or(0)
    }

    /// The `host_keys` a scan of server `server_id` finds (its fake sshd's fixed key).
    pub fn host_keys(&self, server_id: &str) -> Vec<String> {
        super::sshd::host_keys(server_id)
    }

    /// The fake sshds' port.
    pub fn ssh_port(&self) -> u16 {
        self.0.config.ssh_port
    }

    /// Addresses that have a fake sshd (bound; open once `ssh_delay_ms` passed, never with
    /// `ssh_never`).
    pub fn sshd_addresses(&self) -> Vec<std::net::Ipv4Addr> {
        self.0.lock().sshds.addresses()
    }

    /// Clears the counters and the request log.
    pub fn reset_counters(&self) {
        let mut g = self.0.lock();
        g.counters.clear();
        g.requests.clear();
    }

    /// Arrival of the most recent API calls (up to 10 000), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.0.lock().requests.iter().cloned().collect()
    }

    /// Clears the request log only.
    pub fn clear_requests(&self) {
        self.0.lock().requests.clear();
    }

    /// Turns an ACTIVE or BUILD server into ERROR with a fault carrying `message`
    /// ([`DEFAULT_SERVER_FAULT`] when `None`), as Nova does when a host fails.
    pub fn fail_server(&self, id: &str, message: Option<&str>) -> Result<(), AdminError> {
        let mut g = self.0.lock();
        let s = g
            .world
            .servers
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| AdminError::NoServer(id.to_string()))?;
        if s.status == ServerStatus::Error {
            return Err(AdminError::WrongStatus {
                id: id.to_string(),
                status: s.status.as_str(),
                expected: "ACTIVE or BUILD",
            });
        }
        let message = message.unwrap_or(DEFAULT_SERVER_FAULT).to_string();
        let secs = now_secs();
        s.status = ServerStatus::Error;
        s.task_state = None;
        s.ready_at = None;
        s.updated = secs;
        s.boot = BootPlan::Error {
            message: message.clone(),
        };
        s.fault = Some(Fault {
            code: 500,
            message,
            details: String::new(),
            created: secs,
        });
        Ok(())
    }

    /// Makes a server in BUILD stay there forever.
    pub fn hang_server(&self, id: &str) -> Result<(), AdminError> {
        let mut g = self.0.lock();
        let s = g
            .world
            .servers
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| AdminError::NoServer(id.to_string()))?;
        if s.status != ServerStatus::Build {
            return Err(AdminError::WrongStatus {
                id: id.to_string(),
                status: s.status.as_str(),
                expected: "BUILD",
            });
        }
        s.boot = BootPlan::Hang;
        s.ready_at = None;
        Ok(())
    }

    pub fn knobs(&self) -> Knobs {
        self.0.lock().knobs.clone()
    }

    /// Nova's availability zones now.
    pub fn availability_zones(&self) -> Vec<String> {
        self.0.lock().world.availability_zones.clone()
    }

    /// Replaces Nova's availability zones (as when a cloud's zones are reorganised):
    /// later creates naming another zone get Nova's 400. At least one zone, no empty or
    /// repeated names.
    pub fn set_availability_zones(&self, zones: &[String]) -> Result<(), AdminError> {
        if zones.is_empty() {
            return Err(AdminError::BadZones("at least one zone is needed".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for z in zones {
            if z.is_empty() || !seen.insert(z) {
                return Err(AdminError::BadZones(format!(
                    "empty or repeated zone name `{z}`"
                )));
            }
        }
        self.0.lock().world.availability_zones = zones.to_vec();
        Ok(())
    }

    /// Changes knobs in place.
    pub fn update_knobs(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut self.0.lock().knobs);
    }

    pub fn set_quota(&self, quota: Quota) {
        self.update_knobs(|k| k.quota = quota);
    }

    /// Fails the next `count` calls of `op` with HTTP `status`.
    pub fn fail_next(&self, op: &str, count: u32, status: u16) {
        self.update_knobs(|k| {
            k.fail_next
                .insert(op.to_string(), FailNext { count, status });
        });
    }

    /// Replies `200 OK` with a non-JSON body to the next `count` calls of `op`.
    pub fn garbage_next(&self, op: &str, count: u32) {
        self.update_knobs(|k| {
            k.garbage_next.insert(op.to_string(), count);
        });
    }

    /// A copy of the whole simulated cloud.
    pub fn world(&self) -> World {
        self.0.lock().world.clone()
    }

    pub fn servers(&self) -> Vec<Server> {
        self.0.lock().world.servers.clone()
    }

    pub fn server(&self, id: &str) -> Option<Server> {
        self.0.lock().world.server(id).cloned()
    }

    pub fn images(&self) -> Vec<Image> {
        self.0.lock().world.images.clone()
    }

    pub fn ports(&self) -> Vec<Port> {
        self.0.lock().world.ports.clone()
    }

    pub fn floating_ips(&self) -> Vec<FloatingIp> {
        self.0.lock().world.floating_ips.clone()
    }

    /// JSON dump of world, knobs and counters (what `GET /admin/state` returns).
    pub fn dump(&self) -> Value {
        let g = self.0.lock();
        json!({"world": g.world, "knobs": g.knobs, "counters": g.counters})
    }

    /// Writes a snapshot (world + knobs) as JSON.
    pub fn save_snapshot(&self, path: &Path) -> std::io::Result<()> {
        let text = {
            let g = self.0.lock();
            serde_json::to_vec_pretty(&json!({"world": g.world, "knobs": g.knobs}))?
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }

    /// Adds an ACTIVE server carrying Nodepool metadata for `provider` and `node_id` (a leak when
    /// ZooKeeper does not know the node). Counts towards quota; bypasses quota checks.
    pub fn inject_leaked_server(&self, provider: &str, node_id: &str, pool: &str) -> String {
        self.leak_server(&LeakedServer {
            provider: provider.to_string(),
            node_id: Some(node_id.to_string()),
            pool: Some(pool.to_string()),
            flavor: None,
        })
        .map(|(id, _)| id)
        .unwrap_or_default()
    }

    /// Adds an ACTIVE leaked server; returns its id and node id.
    pub fn leak_server(&self, leak: &LeakedServer) -> Result<(String, String), AdminError> {
        let node_id = leak
            .node_id
            .clone()
            .unwrap_or_else(|| format!("{:010}", rand::random::<u32>()));
        let pool = leak.pool.as_deref().unwrap_or("main");
        let mut g = self.0.lock();
        let flavor = match &leak.flavor {
            Some(f) => g
                .world
                .flavor(f)
                .map(|f| f.id.clone())
                .ok_or_else(|| AdminError::UnknownFlavor(f.clone()))?,
            None => g
                .world
                .flavors
                .first()
                .map(|f| f.id.clone())
                .unwrap_or_default(),
        };
        let id = inject_server(&mut g.world, &leak.provider, &node_id, pool, &flavor)?;
        Ok((id, node_id))
    }

    /// Adds an unattached floating IP on the external network.
    pub fn inject_leaked_floating_ip(&self) -> String {
        let mut g = self.0.lock();
        let net = g
            .world
            .external_network()
            .map(|n| n.id.clone())
            .unwrap_or_default();
        g.world
            .create_floating_ip(&net, None, None, String::new())
            .unwrap_or_default()
    }

    /// Adds an active private Glance image carrying Nodepool upload properties (a leaked
    /// upload when ZooKeeper does not know the build/upload ids).
    pub fn inject_leaked_image(&self, provider: &str, build_id: &str, upload_id: &str) -> String {
        let mut properties = serde_json::Map::new();
        properties.insert("nodepool_provider_name".into(), json!(provider));
        properties.insert("nodepool_build_id".into(), json!(build_id));
        properties.insert("nodepool_upload_id".into(), json!(upload_id));
        let now = now_secs();
        let id = new_id();
        self.0.lock().world.images.push(Image {
            id: id.clone(),
            name: Some(format!("leaked-{build_id}-{upload_id}")),
            status: "active".into(),
            disk_format: Some("qcow2".into()),
            container_format: Some("bare".into()),
            visibility: "private".into(),
            protected: false,
            os_hidden: false,
            min_disk: 0,
            min_ram: 0,
            size: Some(0),
            checksum: None,
            os_hash_value: None,
            tags: vec![],
            properties,
            created: now,
            updated: now,
            stored_path: None,
        });
        id
    }

    /// Adds a DOWN port owned by `compute:nova` whose device no longer exists.
    pub fn inject_down_port(&self) -> String {
        let mut g = self.0.lock();
        let net = g
            .world
            .networks
            .iter()
            .find(|n| !n.external)
            .map(|n| n.id.clone())
            .unwrap_or_default();
        let Ok(id) = g.world.create_port_on(&net, None, false) else {
            return String::new();
        };
        if let Some(p) = g.world.ports.iter_mut().find(|p| p.id == id) {
            p.device_owner = "compute:nova".into();
            p.device_id = new_id();
            p.status = "DOWN".into();
            p.updated = now_secs();
        }
        id
    }
}

/// Creates an ACTIVE server with Nodepool metadata, ignoring quota and injected failures.
fn inject_server(
    world: &mut World,
    provider: &str,
    node_id: &str,
    pool: &str,
    flavor: &str,
) -> Result<String, AdminError> {
    let mut knobs = Knobs {
        quota: Quota::UNLIMITED,
        ..Knobs::default()
    };
    let image = world
        .images
        .iter()
        .find(|i| i.status == "active")
        .map(|i| i.id.clone());
    let mut metadata = BTreeMap::new();
    metadata.insert("nodepool_provider_name".into(), provider.to_string());
    metadata.insert("nodepool_node_id".into(), node_id.to_string());
    metadata.insert("nodepool_pool_name".into(), pool.to_string());
    let spec = ServerSpec {
        name: format!("np{node_id}"),
        flavor_ref: flavor.to_string(),
        image_ref: image,
        metadata,
        ..ServerSpec::default()
    };
    let id = world
        .create_server(spec, &mut knobs, Instant::now())
        .map_err(|e| {
            AdminError::Refused(match e {
                DomainError::BadRequest(m)
                | DomainError::NotFound(m)
                | DomainError::Forbidden(m)
                | DomainError::Conflict(m) => m,
            })
        })?;
    world.tick(Instant::now());
    debug_assert!(world
        .server(&id)
        .is_some_and(|s| s.status == ServerStatus::Active));
    Ok(id)
}

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/admin/state", get(state))
        .route("/admin/snapshot", post(snapshot))
        .route("/admin/counters", get(counters).delete(reset_counters))
        .route(
            "/admin/knobs",
            get(knobs).patch(patch_knobs).put(patch_knobs),
        )
        .route("/admin/fail", post(fail))
        .route("/admin/leaks/servers", post(leak_server))
        .route("/admin/leaks/floating-ips", post(leak_fips))
        .route("/admin/leaks/ports", post(leak_ports))
        .route("/admin/leaks/images", post(leak_image))
        .route("/admin/ssh", get(ssh))
        .route("/admin/requests", get(requests).delete(clear_requests))
        .route("/admin/servers/{id}/error", post(server_error))
        .route("/admin/servers/{id}/hang", post(server_hang))
        .route(
            "/admin/availability-zones",
            get(availability_zones).put(set_availability_zones),
        )
}

async fn availability_zones(State(sim): State<Arc<Sim>>) -> ApiResult {
    let zones = SimAdmin(sim).availability_zones();
    Ok(json_response(StatusCode::OK, json!({"zones": zones})))
}

async fn set_availability_zones(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let b = body_json(&body)?;
    let zones: Vec<String> = b
        .get("zones")
        .cloned()
        .and_then(|z| serde_json::from_value(z).ok())
        .ok_or_else(|| ApiError::bad_request(SVC, "'zones' must be a list of names"))?;
    SimAdmin(sim)
        .set_availability_zones(&zones)
        .map_err(AdminError::into_api)?;
    Ok(json_response(StatusCode::OK, json!({"zones": zones})))
}

async fn ssh(State(sim): State<Arc<Sim>>) -> ApiResult {
    let admin = SimAdmin(sim);
    let keys: BTreeMap<String, Vec<String>> = admin
        .servers()
        .iter()
        .map(|s| (s.id.clone(), admin.host_keys(&s.id)))
        .collect();
    let listening: Vec<String> = admin
        .sshd_addresses()
        .iter()
        .map(|a| a.to_string())
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json!({"port": admin.ssh_port(), "listening": listening, "host_keys": keys}),
    ))
}

fn body_json(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(SVC, format!("Malformed JSON in request body: {e}")))
}

async fn state(State(sim): State<Arc<Sim>>) -> ApiResult {
    Ok(json_response(StatusCode::OK, SimAdmin(sim).dump()))
}

async fn snapshot(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let b = body_json(&body)?;
    let path = b
        .get("path")
        .and_then(Value::as_str)
        .map(std::path::PathBuf::from)
        .or_else(|| sim.config.state_file.clone())
        .ok_or_else(|| {
            ApiError::bad_request(
                SVC,
                "No snapshot path: give {\"path\": ...} or start with a state file",
            )
        })?;
    SimAdmin(sim).save_snapshot(&path).map_err(|e| {
        ApiError::new(
            SVC,
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Cannot write snapshot {}: {e}", path.display()),
        )
    })?;
    Ok(json_response(StatusCode::OK, json!({"path": path})))
}

async fn counters(State(sim): State<Arc<Sim>>) -> ApiResult {
    Ok(json_response(
        StatusCode::OK,
        json!(SimAdmin(sim).counters()),
    ))
}

async fn reset_counters(State(sim): State<Arc<Sim>>) -> ApiResult {
    SimAdmin(sim).reset_counters();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn knobs(State(sim): State<Arc<Sim>>) -> ApiResult {
    Ok(json_response(StatusCode::OK, json!(SimAdmin(sim).knobs())))
}

/// Merges a partial JSON object into the knobs (objects merge recursively).
async fn patch_knobs(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let patch = body_json(&body)?;
    let admin = SimAdmin(sim);
    let mut current = serde_json::to_value(admin.knobs()).expect("knobs serialise");
    merge(&mut current, patch);
    let new: Knobs = serde_json::from_value(current)
        .map_err(|e| ApiError::bad_request(SVC, format!("Invalid knobs: {e}")))?;
    admin.update_knobs(|k| *k = new.clone());
    Ok(json_response(StatusCode::OK, json!(new)))
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, p) => *b = p,
    }
}

async fn fail(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let b = body_json(&body)?;
    let op = b
        .get("operation")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(SVC, "'operation' is required"))?;
    let count = b.get("count").and_then(Value::as_u64).unwrap_or(1) as u32;
    let status = b.get("status").and_then(Value::as_u64).unwrap_or(500) as u16;
    if StatusCode::from_u16(status).is_err() {
        return Err(ApiError::bad_request(
            SVC,
            format!("Invalid HTTP status {status}"),
        ));
    }
    SimAdmin(sim).fail_next(op, count, status);
    Ok(json_response(
        StatusCode::OK,
        json!({"operation": op, "count": count, "status": status}),
    ))
}

async fn leak_server(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let b = body_json(&body)?;
    let leak: LeakedServer = serde_json::from_value(b).map_err(|e| {
        ApiError::bad_request(
            SVC,
            format!("Invalid leaked server (needs 'provider'): {e}"),
        )
    })?;
    let (id, node_id) = SimAdmin(sim)
        .leak_server(&leak)
        .map_err(AdminError::into_api)?;
    Ok(json_response(
        StatusCode::CREATED,
        json!({"id": id, "node_id": node_id}),
    ))
}

async fn requests(State(sim): State<Arc<Sim>>) -> ApiResult {
    Ok(json_response(
        StatusCode::OK,
        json!(SimAdmin(sim).requests()),
    ))
}

async fn clear_requests(State(sim): State<Arc<Sim>>) -> ApiResult {
    SimAdmin(sim).clear_requests();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn server_error(
    State(sim): State<Arc<Sim>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> ApiResult {
    let b = body_json(&body)?;
    let message = match b.get("message") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.as_str()),
        Some(_) => return Err(ApiError::bad_request(SVC, "'message' must be a string")),
    };
    let admin = SimAdmin(sim);
    admin
        .fail_server(&id, message)
        .map_err(AdminError::into_api)?;
    let fault = admin.server(&id).and_then(|s| s.fault);
    Ok(json_response(
        StatusCode::OK,
        json!({"id": id, "status": "ERROR", "fault": fault}),
    ))
}

async fn server_hang(State(sim): State<Arc<Sim>>, UrlPath(id): UrlPath<String>) -> ApiResult {
    SimAdmin(sim)
        .hang_server(&id)
        .map_err(AdminError::into_api)?;
    Ok(json_response(
        StatusCode::OK,
        json!({"id": id, "status": "BUILD"}),
    ))
}

async fn leak_image(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let b = body_json(&body)?;
    let field = |k: &str| {
        b.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request(SVC, format!("'{k}' is required")))
    };
    let id = SimAdmin(sim).inject_leaked_image(
        field("provider")?,
        field("build_id")?,
        field("upload_id")?,
    );
    Ok(json_response(StatusCode::CREATED, json!({"id": id})))
}

fn count_of(b: &Value) -> usize {
    b.get("count").and_then(Value::as_u64).unwrap_or(1) as usize
}

async fn leak_fips(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let b = body_json(&body)?;
    let admin = SimAdmin(sim);
    let ids: Vec<String> = (0..count_of(&b))
        .map(|_| admin.inject_leaked_floating_ip())
        .collect();
    Ok(json_response(StatusCode::CREATED, json!({"ids": ids})))
}

async fn leak_ports(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let b = body_json(&body)?;
    let admin = SimAdmin(sim);
    let ids: Vec<String> = (0..count_of(&b))
        .map(|_| admin.inject_down_port())
        .collect();
    Ok(json_response(StatusCode::CREATED, json!({"ids": ids})))
}
