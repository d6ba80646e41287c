//! Test control surface: [`SimAdmin`] (in-process) and the same operations over HTTP under
//! `/admin/...` (no token needed, not counted, no latency or injected failures).
//!
//! | method + path | body | effect |
//! |---|---|---|
//! | `GET /admin/state` | – | full dump: world, knobs, counters |
//! | `POST /admin/snapshot` | `{"path"?: str}` | write the JSON snapshot |
//! | `GET /admin/counters` / `DELETE /admin/counters` | – | calls per operation / reset |
//! | `GET /admin/knobs` / `PATCH /admin/knobs` | partial [`Knobs`] | read / merge knobs |
//! | `POST /admin/fail` | `{"operation", "count", "status"?}` | fail the next N calls |
//! | `POST /admin/leaks/servers` | `{"provider", "node_id"?, "pool"?, "flavor"?}` | leaked server |
//! | `POST /admin/leaks/floating-ips` | `{"count"?}` | unattached floating IPs |
//! | `POST /admin/leaks/ports` | `{"count"?}` | DOWN ports owned by `compute:nova` |
//! | `POST /admin/leaks/images` | `{"provider", "build_id", "upload_id"}` | image with Nodepool properties |
//! | `GET /admin/ssh` | – | `{"port", "listening": [addr], "host_keys": {server id: [key]}}` (fake sshds) |

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::app::{json_response, ApiError, ApiResult, Service, Sim};
use super::config::{FailNext, Knobs, Quota};
use super::state::{FloatingIp, Image, Port, Server, ServerSpec, ServerStatus, World};
use super::util::{new_id, now_secs};

const SVC: Service = Service::Admin;

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

    pub fn reset_counters(&self) {
        self.0.lock().counters.clear();
    }

    pub fn knobs(&self) -> Knobs {
        self.0.lock().knobs.clone()
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
        let mut g = self.0.lock();
        let flavor = g
            .world
            .flavors
            .first()
            .map(|f| f.id.clone())
            .unwrap_or_default();
        self.inject_server(&mut g.world, provider, node_id, pool, &flavor)
            .unwrap_or_default()
    }

    fn inject_server(
        &self,
        world: &mut World,
        provider: &str,
        node_id: &str,
        pool: &str,
        flavor: &str,
    ) -> Result<String, ApiError> {
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
            .map_err(|e| ApiError::from_domain(SVC, e))?;
        world.tick(Instant::now());
        debug_assert!(world
            .server(&id)
            .is_some_and(|s| s.status == ServerStatus::Active));
        Ok(id)
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
    let provider = b
        .get("provider")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(SVC, "'provider' is required"))?;
    let node_id = b
        .get("node_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:010}", rand::random::<u32>()));
    let pool = b.get("pool").and_then(Value::as_str).unwrap_or("main");
    let admin = SimAdmin(sim);
    let mut g = admin.0.lock();
    let flavor = match b.get("flavor").and_then(Value::as_str) {
        Some(f) => g
            .world
            .flavor(f)
            .map(|f| f.id.clone())
            .ok_or_else(|| ApiError::bad_request(SVC, format!("Unknown flavor {f}")))?,
        None => g
            .world
            .flavors
            .first()
            .map(|f| f.id.clone())
            .unwrap_or_default(),
    };
    let id = admin.inject_server(&mut g.world, provider, &node_id, pool, &flavor)?;
    Ok(json_response(
        StatusCode::CREATED,
        json!({"id": id, "node_id": node_id}),
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
