//! Simulated Nova (compute v2.1): servers, metadata, flavors, keypairs, limits, AZs.
//!
//! Catalog URL is `<base>/compute/v2.1`. Responses follow the requested microversion
//! (`OpenStack-API-Version: compute X.Y`) where the shape differs (flavor dict from 2.47).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use super::app::{
    json_response, paginate, parse_body, query_get, ApiError, ApiResult, QueryPairs, Service, Sim,
};
use super::state::{Flavor, Keypair, NetworkRequest, Server, ServerSpec, ServerStatus, World};
use super::util::{iso8601, new_hex_id, now_secs};

const SVC: Service = Service::Compute;
/// Newest microversion we claim to support.
pub const MAX_MICROVERSION: (u32, u32) = (2, 96);
const MIN_MICROVERSION: (u32, u32) = (2, 1);

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/compute", get(versions))
        .route("/compute/v2.1", get(version))
        .route(
            "/compute/v2.1/servers",
            get(list_servers).post(create_server),
        )
        .route("/compute/v2.1/servers/detail", get(list_servers_detail))
        .route(
            "/compute/v2.1/servers/{id}",
            get(show_server).put(update_server).delete(delete_server),
        )
        .route(
            "/compute/v2.1/servers/{id}/metadata",
            get(get_metadata).post(merge_metadata).put(replace_metadata),
        )
        .route(
            "/compute/v2.1/servers/{id}/metadata/{key}",
            get(get_metadata_item)
                .put(put_metadata_item)
                .delete(delete_metadata_item),
        )
        .route("/compute/v2.1/servers/{id}/action", post(server_action))
        .route("/compute/v2.1/flavors", get(list_flavors))
        .route("/compute/v2.1/flavors/detail", get(list_flavors_detail))
        .route("/compute/v2.1/flavors/{id}", get(show_flavor))
        .route(
            "/compute/v2.1/flavors/{id}/os-extra_specs",
            get(flavor_extra_specs),
        )
        .route(
            "/compute/v2.1/os-keypairs",
            get(list_keypairs).post(create_keypair),
        )
        .route(
            "/compute/v2.1/os-keypairs/{name}",
            get(show_keypair).delete(delete_keypair),
        )
        .route("/compute/v2.1/limits", get(limits))
        .route(
            "/compute/v2.1/os-availability-zone",
            get(availability_zones),
        )
        .route(
            "/compute/v2.1/os-availability-zone/detail",
            get(availability_zones),
        )
        .route("/compute/v2.1/os-quota-sets/{project}", get(quota_set))
        .route(
            "/compute/v2.1/os-quota-sets/{project}/detail",
            get(quota_set),
        )
}

// ---------------------------------------------------------------- microversions

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Mv(u32, u32);

fn microversion(headers: &HeaderMap) -> Result<Mv, ApiError> {
    let raw = headers
        .get("openstack-api-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',').find_map(|part| {
                let mut it = part.split_whitespace();
                (it.next()? == "compute").then(|| it.next().unwrap_or("").to_string())
            })
        })
        .or_else(|| {
            headers
                .get("x-openstack-nova-api-version")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_string())
        });
    let Some(raw) = raw else {
        return Ok(Mv(MIN_MICROVERSION.0, MIN_MICROVERSION.1));
    };
    if raw == "latest" {
        return Ok(Mv(MAX_MICROVERSION.0, MAX_MICROVERSION.1));
    }
    let parsed = raw
        .split_once('.')
        .and_then(|(a, b)| Some(Mv(a.parse().ok()?, b.parse().ok()?)));
    match parsed {
        Some(mv)
            if mv >= Mv(MIN_MICROVERSION.0, MIN_MICROVERSION.1)
                && mv <= Mv(MAX_MICROVERSION.0, MAX_MICROVERSION.1) =>
        {
            Ok(mv)
        }
        Some(_) => Err(ApiError::new(
            SVC,
            StatusCode::NOT_ACCEPTABLE,
            format!("Version {raw} is not supported by the API. Minimum is 2.1 and maximum is 2.96."),
        )),
        None => Err(ApiError::bad_request(
            SVC,
            format!("API Version String {raw} is of invalid format. Must be of format MajorNum.MinorNum."),
        )),
    }
}

/// Adds the microversion response headers.
fn with_mv(mut r: Response, mv: Mv) -> Response {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("compute {}.{}", mv.0, mv.1)) {
        h.insert("OpenStack-API-Version", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{}.{}", mv.0, mv.1)) {
        h.insert("X-OpenStack-Nova-API-Version", v);
    }
    h.insert(
        "Vary",
        HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    );
    r
}

/// Common prologue: bookkeeping + microversion.
async fn enter(sim: &Sim, headers: &HeaderMap, op: &str) -> Result<Mv, ApiError> {
    sim.enter(headers, op, SVC).await?;
    microversion(headers)
}

// ---------------------------------------------------------------- versions

fn v21_doc(sim: &Sim) -> Value {
    json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": format!("{}.{}", MAX_MICROVERSION.0, MAX_MICROVERSION.1),
        "min_version": format!("{}.{}", MIN_MICROVERSION.0, MIN_MICROVERSION.1),
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{}/compute/v2.1/", sim.base)}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}]
    })
}

async fn versions(State(sim): State<Arc<Sim>>) -> ApiResult {
    sim.enter_public("compute.versions", SVC).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({"versions": [v21_doc(&sim)]}),
    ))
}

async fn version(State(sim): State<Arc<Sim>>) -> ApiResult {
    sim.enter_public("compute.versions", SVC).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({"version": v21_doc(&sim)}),
    ))
}

// ---------------------------------------------------------------- rendering

fn link(sim: &Sim, kind: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{}/compute/v2.1/{kind}/{id}", sim.base)},
        {"rel": "bookmark", "href": format!("{}/compute/{kind}/{id}", sim.base)}
    ])
}

/// Port id → (network name, addresses) lookups built once per response.
struct AddrIndex<'a> {
    ports: HashMap<&'a str, &'a super::state::Port>,
    net_names: HashMap<&'a str, &'a str>,
    fips: HashMap<&'a str, Vec<&'a super::state::FloatingIp>>,
}

impl<'a> AddrIndex<'a> {
    fn new(w: &'a World) -> Self {
        let mut fips: HashMap<&str, Vec<_>> = HashMap::new();
        for f in &w.floating_ips {
            if let Some(p) = &f.port_id {
                fips.entry(p.as_str()).or_default().push(f);
            }
        }
        AddrIndex {
            ports: w.ports.iter().map(|p| (p.id.as_str(), p)).collect(),
            net_names: w
                .networks
                .iter()
                .map(|n| (n.id.as_str(), n.name.as_str()))
                .collect(),
            fips,
        }
    }

    fn addresses(&self, s: &Server) -> Value {
        let mut out = Map::new();
        for pid in &s.port_ids {
            let Some(p) = self.ports.get(pid.as_str()) else {
                continue;
            };
            let net = self
                .net_names
                .get(p.network_id.as_str())
                .copied()
                .unwrap_or("unknown");
            let entry = out
                .entry(net.to_string())
                .or_insert_with(|| Value::Array(vec![]));
            let list = entry.as_array_mut().expect("inserted as array");
            for ip in &p.fixed_ips {
                list.push(json!({
                    "version": if ip.ip_address.contains(':') { 6 } else { 4 },
                    "addr": ip.ip_address,
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": p.mac_address,
                }));
            }
            for f in self.fips.get(pid.as_str()).into_iter().flatten() {
                list.push(json!({
                    "version": 4,
                    "addr": f.floating_ip_address,
                    "OS-EXT-IPS:type": "floating",
                    "OS-EXT-IPS-MAC:mac_addr": p.mac_address,
                }));
            }
        }
        Value::Object(out)
    }
}

fn flavor_in_server(sim: &Sim, f: &Flavor, mv: Mv) -> Value {
    if mv >= Mv(2, 47) {
        json!({
            "vcpus": f.vcpus,
            "ram": f.ram,
            "disk": f.disk,
            "ephemeral": f.ephemeral,
            "swap": f.swap,
            "original_name": f.name,
            "extra_specs": f.extra_specs,
        })
    } else {
        json!({"id": f.id, "links": [{"rel": "bookmark", "href": format!("{}/compute/flavors/{}", sim.base, f.id)}]})
    }
}

fn server_json(sim: &Sim, w: &World, idx: &AddrIndex, s: &Server, mv: Mv) -> Value {
    let c = &sim.config.credentials;
    let image = match &s.image_id {
        Some(id) => {
            json!({"id": id, "links": [{"rel": "bookmark", "href": format!("{}/compute/images/{id}", sim.base)}]})
        }
        None => json!(""),
    };
    let mut v = json!({
        "id": s.id,
        "name": s.name,
        "status": if s.task_state.as_deref() == Some("deleting") && s.status == ServerStatus::Active { "ACTIVE" } else { s.status.as_str() },
        "tenant_id": c.project_id,
        "user_id": c.user_id,
        "metadata": s.metadata,
        "hostId": s.host_id,
        "image": image,
        "flavor": flavor_in_server(sim, &s.flavor, mv),
        "created": iso8601(s.created),
        "updated": iso8601(s.updated),
        "addresses": idx.addresses(s),
        "accessIPv4": s.access_ipv4,
        "accessIPv6": s.access_ipv6,
        "links": link(sim, "servers", &s.id),
        "OS-DCF:diskConfig": "MANUAL",
        "progress": if s.status == ServerStatus::Active { 100 } else { 0 },
        "OS-EXT-AZ:availability_zone": s.availability_zone,
        "config_drive": if s.config_drive { "True" } else { "" },
        "key_name": s.key_name,
        "OS-SRV-USG:launched_at": s.launched_at.map(|t| iso8601(t).trim_end_matches('Z').to_string() + ".000000"),
        "OS-SRV-USG:terminated_at": null,
        "security_groups": s.security_groups.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
        "OS-EXT-STS:task_state": s.task_state,
        "OS-EXT-STS:vm_state": s.status.vm_state(),
        "OS-EXT-STS:power_state": if s.status == ServerStatus::Active { 1 } else { 0 },
        "os-extended-volumes:volumes_attached": s.volumes.iter().map(|v| json!({"id": v, "delete_on_termination": w.volumes.iter().find(|x| &x.id == v).is_some_and(|x| x.delete_on_termination)})).collect::<Vec<_>>(),
        "locked": false,
    });
    let o = v.as_object_mut().expect("object literal");
    if mv >= Mv(2, 9) {
        o.insert("locked_reason".into(), Value::Null);
    }
    if mv >= Mv(2, 19) {
        o.insert("description".into(), json!(s.description));
    }
    if mv >= Mv(2, 26) {
        o.insert("tags".into(), json!(s.tags));
    }
    if mv >= Mv(2, 63) {
        o.insert("trusted_image_certificates".into(), Value::Null);
    }
    if mv >= Mv(2, 71) {
        o.insert("server_groups".into(), json!([]));
    }
    if mv >= Mv(2, 96) {
        o.insert("pinned_availability_zone".into(), Value::Null);
    }
    if let Some(f) = &s.fault {
        o.insert(
            "fault".into(),
            json!({"code": f.code, "created": iso8601(f.created), "message": f.message, "details": f.details}),
        );
    }
    v
}

fn find_server<'a>(w: &'a World, id: &str) -> Result<&'a Server, ApiError> {
    w.server(id)
        .ok_or_else(|| ApiError::not_found(SVC, format!("Instance {id} could not be found.")))
}

// ---------------------------------------------------------------- servers

/// `metadata`: string keys and values of at most 255 characters.
fn parse_metadata(s: &Map<String, Value>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut metadata = BTreeMap::new();
    if let Some(m) = s.get("metadata") {
        let m = m.as_object().ok_or_else(|| {
            ApiError::bad_request(
                SVC,
                "Invalid input for field/attribute metadata. Value must be an object",
            )
        })?;
        for (k, v) in m {
            let v = v.as_str().ok_or_else(|| {
                ApiError::bad_request(
                    SVC,
                    format!("Invalid input for field/attribute metadata. Value of {k} is not of type 'string'"),
                )
            })?;
            if k.len() > 255 || v.len() > 255 {
                return Err(ApiError::bad_request(
                    SVC,
                    format!("Invalid input for field/attribute metadata. Key or value of {k} longer than 255 characters"),
                ));
            }
            metadata.insert(k.clone(), v.to_string());
        }
    }
    Ok(metadata)
}

/// `networks`: `auto` (or none given) → `None`, `none` → no network, else the list.
fn parse_networks(s: &Map<String, Value>) -> Result<Option<Vec<NetworkRequest>>, ApiError> {
    Ok(match s.get("networks") {
        None | Some(Value::Null) => None,
        Some(Value::String(a)) if a == "auto" => None,
        Some(Value::String(a)) if a == "none" => Some(vec![]),
        Some(Value::Array(list)) => {
            let mut out = Vec::new();
            for n in list {
                if let Some(p) = n.get("port").and_then(Value::as_str) {
                    out.push(NetworkRequest::Port(p.to_string()));
                } else if let Some(u) = n.get("uuid").and_then(Value::as_str) {
                    out.push(NetworkRequest::Network {
                        uuid: u.to_string(),
                        fixed_ip: n
                            .get("fixed_ip")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    });
                } else {
                    return Err(ApiError::bad_request(
                        SVC,
                        format!("Invalid input for field/attribute networks. Value: {n}. Each network needs 'uuid' or 'port'"),
                    ));
                }
            }
            Some(out)
        }
        Some(other) => {
            return Err(ApiError::bad_request(
                SVC,
                format!("Invalid input for field/attribute networks. Value: {other}."),
            ))
        }
    })
}

fn parse_spec(body: &Value) -> Result<ServerSpec, ApiError> {
    let s = body
        .get("server")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::bad_request(SVC, "Invalid input for field/attribute server. Value: None. 'server' is a required property"))?;
    let str_field = |k: &str| -> Result<Option<String>, ApiError> {
        match s.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(v)) => Ok(Some(v.clone())),
            Some(other) => Err(ApiError::bad_request(
                SVC,
                format!("Invalid input for field/attribute {k}. Value: {other}. {other} is not of type 'string'"),
            )),
        }
    };
    let name = str_field("name")?
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                SVC,
                "Invalid input for field/attribute name. 'name' is a required property",
            )
        })?;
    let flavor_ref =
        match s.get("flavorRef") {
            Some(Value::String(v)) => v.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(ApiError::bad_request(
                SVC,
                "Invalid input for field/attribute flavorRef. 'flavorRef' is a required property",
            )),
        };
    let metadata = parse_metadata(s)?;
    let networks = parse_networks(s)?;
    let config_drive = match s.get("config_drive") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(v)) => matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        _ => false,
    };
    let bdm = match s.get("block_device_mapping_v2") {
        Some(Value::Array(a)) => a.clone(),
        None | Some(Value::Null) => vec![],
        Some(other) => {
            return Err(ApiError::bad_request(
                SVC,
                format!(
                    "Invalid input for field/attribute block_device_mapping_v2. Value: {other}."
                ),
            ))
        }
    };
    let security_groups = s
        .get("security_groups")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|g| g.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let tags = s
        .get("tags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let user_data = str_field("user_data")?;
    if let Some(u) = &user_data {
        if !is_base64(u) {
            return Err(ApiError::bad_request(
                SVC,
                "Invalid input for field/attribute user_data. Value is not a 'base64' string",
            ));
        }
    }
    Ok(ServerSpec {
        name,
        flavor_ref,
        image_ref: str_field("imageRef")?,
        key_name: str_field("key_name")?,
        networks,
        metadata,
        availability_zone: str_field("availability_zone")?,
        user_data,
        config_drive,
        block_device_mapping_v2: bdm,
        description: str_field("description")?,
        tags,
        security_groups,
        access_ipv4: str_field("accessIPv4")?.unwrap_or_default(),
        access_ipv6: str_field("accessIPv6")?.unwrap_or_default(),
    })
}

/// Standard base64 with padding (what Nova accepts for `user_data`).
fn is_base64(s: &str) -> bool {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !s.len().is_multiple_of(4) {
        return false;
    }
    let body = s.iter().rev().skip_while(|b| **b == b'=').count();
    s.len() - body <= 2
        && s[..body]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

async fn create_server(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let mv = enter(&sim, &headers, "compute.servers.create").await?;
    let body = parse_body(SVC, &body)?;
    let spec = parse_spec(&body)?;
    let id = {
        let mut g = sim.lock();
        let inner = &mut *g;
        inner
            .world
            .create_server(spec, &mut inner.knobs, Instant::now())
            .map_err(|e| ApiError::from_domain(SVC, e))?
    };
    let mut r = json_response(
        StatusCode::ACCEPTED,
        json!({"server": {
            "id": id,
            "links": link(&sim, "servers", &id),
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": [{"name": "default"}],
            "adminPass": &new_hex_id()[..12],
        }}),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{}/compute/v2.1/servers/{id}", sim.base)) {
        r.headers_mut().insert("Location", v);
    }
    Ok(with_mv(r, mv))
}

/// Applies Nova's list filters; returns matching servers newest first.
fn filter_servers<'a>(w: &'a World, q: &QueryPairs) -> Result<Vec<&'a Server>, ApiError> {
    let name_re = match query_get(q, "name") {
        Some(n) => Some(regex::Regex::new(n).map_err(|e| {
            ApiError::bad_request(
                SVC,
                format!("Invalid regular expression in name filter {n:?}: {e}"),
            )
        })?),
        None => None,
    };
    let status = query_get(q, "status").map(|s| s.to_ascii_uppercase());
    let image = query_get(q, "image");
    let flavor = query_get(q, "flavor");
    let az = query_get(q, "availability_zone");
    let key_name = query_get(q, "key_name");
    let ip = query_get(q, "ip")
        .map(|p| regex::Regex::new(p).ok())
        .unwrap_or(None);
    let idx = ip.as_ref().map(|_| AddrIndex::new(w));
    let mut out: Vec<&Server> = w
        .servers
        .iter()
        .rev()
        .filter(|s| name_re.as_ref().is_none_or(|re| re.is_match(&s.name)))
        .filter(|s| status.as_deref().is_none_or(|st| s.status.as_str() == st))
        .filter(|s| image.is_none_or(|i| s.image_id.as_deref() == Some(i)))
        .filter(|s| flavor.is_none_or(|f| s.flavor.id == f))
        .filter(|s| az.is_none_or(|a| s.availability_zone == a))
        .filter(|s| key_name.is_none_or(|k| s.key_name.as_deref() == Some(k)))
        .collect();
    if let (Some(re), Some(idx)) = (&ip, &idx) {
        out.retain(|s| {
            idx.addresses(s)
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
                .flat_map(|l| l.as_array().into_iter().flatten())
                .any(|a| {
                    a.get("addr")
                        .and_then(Value::as_str)
                        .is_some_and(|x| re.is_match(x))
                })
        });
    }
    Ok(out)
}

async fn list_servers_impl(
    sim: &Sim,
    headers: &HeaderMap,
    q: &QueryPairs,
    detail: bool,
) -> ApiResult {
    let op = if detail {
        "compute.servers.detail"
    } else {
        "compute.servers.list"
    };
    let mv = enter(sim, headers, op).await?;
    let g = sim.lock();
    let w = &g.world;
    let all = filter_servers(w, q)?;
    let ids: Vec<&str> = all.iter().map(|s| s.id.as_str()).collect();
    let (range, full) = paginate(&ids, q, 1000, 1000, SVC)?;
    let idx = AddrIndex::new(w);
    let page: Vec<Value> = all[range]
        .iter()
        .map(|s| {
            if detail {
                server_json(sim, w, &idx, s, mv)
            } else {
                json!({"id": s.id, "name": s.name, "links": link(sim, "servers", &s.id)})
            }
        })
        .collect();
    let mut doc = json!({"servers": page});
    if full {
        if let Some(last) = page
            .last()
            .and_then(|s| s.get("id"))
            .and_then(Value::as_str)
        {
            let path = if detail { "servers/detail" } else { "servers" };
            let mut next = format!("{}/compute/v2.1/{path}?", sim.base);
            for (k, v) in q.iter().filter(|(k, _)| k != "marker") {
                next.push_str(&format!("{}={}&", urlencode(k), urlencode(v)));
            }
            next.push_str(&format!("marker={last}"));
            doc["servers_links"] = json!([{"rel": "next", "href": next}]);
        }
    }
    Ok(with_mv(json_response(StatusCode::OK, doc), mv))
}

/// Percent-encodes a query component.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn list_servers(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<QueryPairs>,
) -> ApiResult {
    list_servers_impl(&sim, &headers, &q, false).await
}

async fn list_servers_detail(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<QueryPairs>,
) -> ApiResult {
    list_servers_impl(&sim, &headers, &q, true).await
}

async fn show_server(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let mv = enter(&sim, &headers, "compute.servers.get").await?;
    let g = sim.lock();
    let s = find_server(&g.world, &id)?;
    let idx = AddrIndex::new(&g.world);
    let v = json!({"server": server_json(&sim, &g.world, &idx, s, mv)});
    Ok(with_mv(json_response(StatusCode::OK, v), mv))
}

async fn update_server(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mv = enter(&sim, &headers, "compute.servers.update").await?;
    let body = parse_body(SVC, &body)?;
    let mut g = sim.lock();
    let s = g
        .world
        .servers
        .iter_mut()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::not_found(SVC, format!("Instance {id} could not be found.")))?;
    if let Some(n) = body.pointer("/server/name").and_then(Value::as_str) {
        s.name = n.to_string();
    }
    if let Some(d) = body.pointer("/server/description") {
        s.description = d.as_str().map(str::to_string);
    }
    s.updated = now_secs();
    let idx = AddrIndex::new(&g.world);
    let s = find_server(&g.world, &id)?;
    let v = json!({"server": server_json(&sim, &g.world, &idx, s, mv)});
    Ok(with_mv(json_response(StatusCode::OK, v), mv))
}

async fn delete_server(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let mv = enter(&sim, &headers, "compute.servers.delete").await?;
    let mut g = sim.lock();
    let inner = &mut *g;
    inner
        .world
        .delete_server(&id, &inner.knobs, Instant::now())
        .map_err(|e| ApiError::from_domain(SVC, e))?;
    Ok(with_mv(StatusCode::NO_CONTENT.into_response(), mv))
}

async fn server_action(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mv = enter(&sim, &headers, "compute.servers.action").await?;
    let body = parse_body(SVC, &body)?;
    let g = sim.lock();
    let s = find_server(&g.world, &id)?;
    let action = body
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .unwrap_or_default();
    let r = match action.as_str() {
        "os-getConsoleOutput" => {
            let length = body
                .get("os-getConsoleOutput")
                .and_then(|a| a.get("length"))
                .and_then(|l| match l {
                    Value::Number(n) => n.as_i64(),
                    Value::String(t) => t.parse().ok(),
                    _ => None,
                });
            let output = super::console::console_output(&g.world, s, s.status, length);
            json_response(StatusCode::OK, json!({"output": output}))
        }
        "reboot" | "os-start" | "os-stop" => StatusCode::ACCEPTED.into_response(),
        other => {
            return Err(ApiError::bad_request(
                SVC,
                format!("There is no such action: {other}"),
            ))
        }
    };
    Ok(with_mv(r, mv))
}

// ---------------------------------------------------------------- metadata

fn metadata_of(g: &World, id: &str) -> Result<BTreeMap<String, String>, ApiError> {
    Ok(find_server(g, id)?.metadata.clone())
}

fn metadata_arg(body: &Value, key: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let m = body.get(key).and_then(Value::as_object).ok_or_else(|| {
        ApiError::bad_request(
            SVC,
            format!("Malformed request body: '{key}' object is required"),
        )
    })?;
    m.iter()
        .map(|(k, v)| {
            v.as_str()
                .map(|s| (k.clone(), s.to_string()))
                .ok_or_else(|| {
                    ApiError::bad_request(SVC, format!("Metadata value of {k} must be a string"))
                })
        })
        .collect()
}

async fn get_metadata(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    enter(&sim, &headers, "compute.servers.metadata.get").await?;
    let m = metadata_of(&sim.lock().world, &id)?;
    Ok(json_response(StatusCode::OK, json!({"metadata": m})))
}

async fn set_metadata(
    sim: &Sim,
    id: &str,
    new: BTreeMap<String, String>,
    replace: bool,
) -> ApiResult {
    let mut g = sim.lock();
    let s = g
        .world
        .servers
        .iter_mut()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::not_found(SVC, format!("Instance {id} could not be found.")))?;
    if replace {
        s.metadata = new;
    } else {
        s.metadata.extend(new);
    }
    s.updated = now_secs();
    Ok(json_response(
        StatusCode::OK,
        json!({"metadata": s.metadata}),
    ))
}

async fn merge_metadata(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    enter(&sim, &headers, "compute.servers.metadata.set").await?;
    let m = metadata_arg(&parse_body(SVC, &body)?, "metadata")?;
    set_metadata(&sim, &id, m, false).await
}

async fn replace_metadata(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    enter(&sim, &headers, "compute.servers.metadata.set").await?;
    let m = metadata_arg(&parse_body(SVC, &body)?, "metadata")?;
    set_metadata(&sim, &id, m, true).await
}

async fn get_metadata_item(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult {
    enter(&sim, &headers, "compute.servers.metadata.get").await?;
    let m = metadata_of(&sim.lock().world, &id)?;
    let v = m
        .get(&key)
        .ok_or_else(|| ApiError::not_found(SVC, "Metadata item was not found"))?;
    Ok(json_response(StatusCode::OK, json!({"meta": {key: v}})))
}

async fn put_metadata_item(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path((id, key)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    enter(&sim, &headers, "compute.servers.metadata.set").await?;
    let m = metadata_arg(&parse_body(SVC, &body)?, "meta")?;
    if m.len() != 1 || !m.contains_key(&key) {
        return Err(ApiError::bad_request(SVC, "Request body and URI mismatch"));
    }
    set_metadata(&sim, &id, m.clone(), false).await?;
    Ok(json_response(StatusCode::OK, json!({"meta": m})))
}

async fn delete_metadata_item(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult {
    enter(&sim, &headers, "compute.servers.metadata.delete").await?;
    let mut g = sim.lock();
    let s = g
        .world
        .servers
        .iter_mut()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::not_found(SVC, format!("Instance {id} could not be found.")))?;
    if s.metadata.remove(&key).is_none() {
        return Err(ApiError::not_found(SVC, "Metadata item was not found"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------- flavors

fn flavor_json(sim: &Sim, f: &Flavor, mv: Mv, detail: bool) -> Value {
    let mut v = json!({"id": f.id, "name": f.name, "links": link(sim, "flavors", &f.id)});
    let o = v.as_object_mut().expect("object literal");
    if detail {
        o.insert("ram".into(), json!(f.ram));
        o.insert("vcpus".into(), json!(f.vcpus));
        o.insert("disk".into(), json!(f.disk));
        o.insert("OS-FLV-EXT-DATA:ephemeral".into(), json!(f.ephemeral));
        o.insert(
            "swap".into(),
            if f.swap == 0 && mv < Mv(2, 75) {
                json!("")
            } else {
                json!(f.swap)
            },
        );
        o.insert("rxtx_factor".into(), json!(1.0));
        o.insert("os-flavor-access:is_public".into(), json!(f.is_public));
        o.insert("OS-FLV-DISABLED:disabled".into(), json!(false));
        if mv >= Mv(2, 61) {
            o.insert("extra_specs".into(), json!(f.extra_specs));
        }
    }
    if mv >= Mv(2, 55) {
        o.insert("description".into(), Value::Null);
    }
    v
}

async fn flavors_impl(sim: &Sim, headers: &HeaderMap, q: &QueryPairs, detail: bool) -> ApiResult {
    let mv = enter(sim, headers, "compute.flavors.list").await?;
    let g = sim.lock();
    let min_ram: u64 = query_get(q, "minRam")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let min_disk: u64 = query_get(q, "minDisk")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let flavors: Vec<&Flavor> = g
        .world
        .flavors
        .iter()
        .filter(|f| f.ram >= min_ram && f.disk >= min_disk)
        .collect();
    let ids: Vec<&str> = flavors.iter().map(|f| f.id.as_str()).collect();
    let (range, full) = paginate(&ids, q, 1000, 1000, SVC)?;
    let page: Vec<Value> = flavors[range.clone()]
        .iter()
        .map(|f| flavor_json(sim, f, mv, detail))
        .collect();
    let mut doc = json!({"flavors": page});
    if full {
        if let Some(last) = ids[range].last() {
            let path = if detail { "flavors/detail" } else { "flavors" };
            doc["flavors_links"] = json!([{"rel": "next", "href": format!("{}/compute/v2.1/{path}?limit={}&marker={last}", sim.base, ids.len())}]);
        }
    }
    Ok(with_mv(json_response(StatusCode::OK, doc), mv))
}

async fn list_flavors(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<QueryPairs>,
) -> ApiResult {
    flavors_impl(&sim, &headers, &q, false).await
}

async fn list_flavors_detail(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<QueryPairs>,
) -> ApiResult {
    flavors_impl(&sim, &headers, &q, true).await
}

async fn show_flavor(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let mv = enter(&sim, &headers, "compute.flavors.get").await?;
    let g = sim.lock();
    let f = g
        .world
        .flavors
        .iter()
        .find(|f| f.id == id)
        .ok_or_else(|| ApiError::not_found(SVC, format!("Flavor {id} could not be found.")))?;
    Ok(with_mv(
        json_response(
            StatusCode::OK,
            json!({"flavor": flavor_json(&sim, f, mv, true)}),
        ),
        mv,
    ))
}

async fn flavor_extra_specs(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    enter(&sim, &headers, "compute.flavors.get").await?;
    let g = sim.lock();
    let f = g
        .world
        .flavors
        .iter()
        .find(|f| f.id == id)
        .ok_or_else(|| ApiError::not_found(SVC, format!("Flavor {id} could not be found.")))?;
    Ok(json_response(
        StatusCode::OK,
        json!({"extra_specs": f.extra_specs}),
    ))
}

// ---------------------------------------------------------------- keypairs

fn keypair_json(k: &Keypair, detail: bool) -> Value {
    let mut v = json!({"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint, "type": k.kind});
    if detail {
        let o = v.as_object_mut().expect("object literal");
        o.insert("created_at".into(), json!(iso8601(k.created)));
        o.insert("deleted".into(), json!(false));
        o.insert("deleted_at".into(), Value::Null);
        o.insert("updated_at".into(), Value::Null);
        o.insert("id".into(), json!(1));
    }
    v
}

async fn list_keypairs(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> ApiResult {
    let mv = enter(&sim, &headers, "compute.keypairs.list").await?;
    let g = sim.lock();
    let list: Vec<Value> = g
        .world
        .keypairs
        .iter()
        .map(|k| json!({"keypair": keypair_json(k, false)}))
        .collect();
    Ok(with_mv(
        json_response(StatusCode::OK, json!({"keypairs": list})),
        mv,
    ))
}

async fn show_keypair(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let mv = enter(&sim, &headers, "compute.keypairs.get").await?;
    let g = sim.lock();
    let k = g
        .world
        .keypairs
        .iter()
        .find(|k| k.name == name)
        .ok_or_else(|| ApiError::not_found(SVC, format!("Keypair {name} not found for user")))?;
    Ok(with_mv(
        json_response(StatusCode::OK, json!({"keypair": keypair_json(k, true)})),
        mv,
    ))
}

async fn create_keypair(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let mv = enter(&sim, &headers, "compute.keypairs.create").await?;
    let body = parse_body(SVC, &body)?;
    let name = body
        .pointer("/keypair/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                SVC,
                "Invalid input for field/attribute keypair. 'name' is a required property",
            )
        })?
        .to_string();
    let (public_key, private_key) = match body
        .pointer("/keypair/public_key")
        .and_then(Value::as_str)
    {
        Some(p) => (p.to_string(), None),
        None => {
            let fake = format!(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{} sim-generated",
                &new_hex_id()[..20]
            );
            (fake, Some("-----BEGIN OPENSSH PRIVATE KEY-----\nsimulated\n-----END OPENSSH PRIVATE KEY-----\n".to_string()))
        }
    };
    let kind = body
        .pointer("/keypair/type")
        .and_then(Value::as_str)
        .unwrap_or("ssh")
        .to_string();
    let mut g = sim.lock();
    if g.world.keypairs.iter().any(|k| k.name == name) {
        return Err(ApiError::new(
            SVC,
            StatusCode::CONFLICT,
            format!("Key pair '{name}' already exists."),
        ));
    }
    let fingerprint = {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(public_key.as_bytes());
        d.iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let k = Keypair {
        name,
        public_key,
        fingerprint,
        kind,
        created: now_secs(),
    };
    let mut v = keypair_json(&k, false);
    v["user_id"] = json!(sim.config.credentials.user_id);
    if let Some(p) = private_key {
        v["private_key"] = json!(p);
    }
    g.world.keypairs.push(k);
    let status = if mv >= Mv(2, 2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_mv(json_response(status, json!({"keypair": v})), mv))
}

async fn delete_keypair(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let mv = enter(&sim, &headers, "compute.keypairs.delete").await?;
    let mut g = sim.lock();
    let before = g.world.keypairs.len();
    g.world.keypairs.retain(|k| k.name != name);
    if g.world.keypairs.len() == before {
        return Err(ApiError::not_found(
            SVC,
            format!("Keypair {name} not found for user"),
        ));
    }
    Ok(with_mv(StatusCode::NO_CONTENT.into_response(), mv))
}

// ---------------------------------------------------------------- limits, AZs, quotas

async fn limits(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> ApiResult {
    let mv = enter(&sim, &headers, "compute.limits").await?;
    let g = sim.lock();
    let u = g.world.usage();
    let q = g.knobs.quota;
    let mut abs = json!({
        "maxServerMeta": 128,
        "maxTotalInstances": q.instances,
        "maxTotalCores": q.cores,
        "maxTotalRAMSize": q.ram,
        "maxTotalKeypairs": 100,
        "maxServerGroups": 10,
        "maxServerGroupMembers": 10,
        "totalInstancesUsed": u.instances,
        "totalCoresUsed": u.cores,
        "totalRAMUsed": u.ram,
        "totalServerGroupsUsed": 0,
    });
    if mv < Mv(2, 36) {
        let o = abs.as_object_mut().expect("object literal");
        for (k, v) in [
            ("maxPersonality", 5),
            ("maxPersonalitySize", 10240),
            ("maxImageMeta", 128),
            ("maxSecurityGroups", 10),
            ("maxSecurityGroupRules", 20),
            ("maxTotalFloatingIps", 10),
            ("totalSecurityGroupsUsed", 0),
            ("totalFloatingIpsUsed", 0),
        ] {
            o.insert(k.into(), json!(v));
        }
    }
    Ok(with_mv(
        json_response(
            StatusCode::OK,
            json!({"limits": {"rate": [], "absolute": abs}}),
        ),
        mv,
    ))
}

async fn availability_zones(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> ApiResult {
    let mv = enter(&sim, &headers, "compute.availability_zones").await?;
    let g = sim.lock();
    let list: Vec<Value> = g
        .world
        .availability_zones
        .iter()
        .map(|z| json!({"zoneName": z, "zoneState": {"available": true}, "hosts": null}))
        .collect();
    Ok(with_mv(
        json_response(StatusCode::OK, json!({"availabilityZoneInfo": list})),
        mv,
    ))
}

async fn quota_set(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> ApiResult {
    let mv = enter(&sim, &headers, "compute.quota_sets").await?;
    let g = sim.lock();
    let q = g.knobs.quota;
    Ok(with_mv(
        json_response(
            StatusCode::OK,
            json!({"quota_set": {
                "id": project,
                "instances": q.instances,
                "cores": q.cores,
                "ram": q.ram,
                "key_pairs": 100,
                "metadata_items": 128,
                "server_groups": 10,
                "server_group_members": 10,
            }}),
        ),
        mv,
    ))
}
