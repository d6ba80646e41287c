//! Simulated Neutron v2.0: networks, subnets, ports and floating IPs.
//!
//! Catalog URL is `<base>/network`. List filters are `key=value` query pairs (a key may repeat
//! to match any of several values); pagination is `limit` + `marker` with `<coll>_links`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::app::{
    json_response, paginate, parse_body, ApiError, ApiResult, QueryPairs, Service, Sim,
};
use super::state::{FloatingIp, Network, Port, Subnet, World};
use super::util::iso8601;

const SVC: Service = Service::Network;

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/network", get(versions))
        .route("/network/v2.0", get(resources))
        .route("/network/v2.0/networks", get(list_networks))
        .route("/network/v2.0/networks/{id}", get(show_network))
        .route("/network/v2.0/subnets", get(list_subnets))
        .route("/network/v2.0/subnets/{id}", get(show_subnet))
        .route("/network/v2.0/ports", get(list_ports).post(create_port))
        .route(
            "/network/v2.0/ports/{id}",
            get(show_port).delete(delete_port),
        )
        .route("/network/v2.0/floatingips", get(list_fips).post(create_fip))
        .route(
            "/network/v2.0/floatingips/{id}",
            get(show_fip).put(update_fip).delete(delete_fip),
        )
        .route("/network/v2.0/extensions", get(extensions))
        .route("/network/v2.0/security-groups", get(security_groups))
}

async fn versions(State(sim): State<Arc<Sim>>) -> ApiResult {
    sim.enter_public("network.versions", SVC).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": format!("{}/network/v2.0/", sim.base)}]}]}),
    ))
}

async fn resources(State(sim): State<Arc<Sim>>) -> ApiResult {
    sim.enter_public("network.versions", SVC).await?;
    let r = |name: &str, coll: &str| json!({"name": name, "collection": coll, "links": [{"rel": "self", "href": format!("{}/network/v2.0/{coll}", sim.base)}]});
    Ok(json_response(
        StatusCode::OK,
        json!({"resources": [r("network", "networks"), r("subnet", "subnets"), r("port", "ports"), r("floatingip", "floatingips")]}),
    ))
}

async fn extensions(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> ApiResult {
    sim.enter(&headers, "network.extensions.list", SVC).await?;
    let e = |alias: &str, name: &str| json!({"alias": alias, "name": name, "description": name, "links": [], "updated": "2013-01-20T00:00:00-00:00"});
    Ok(json_response(
        StatusCode::OK,
        json!({"extensions": [e("external-net", "Neutron external network"), e("router", "Neutron L3 Router"), e("standard-attr-timestamp", "Resource timestamps"), e("port-security", "Port Security")]}),
    ))
}

async fn security_groups(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> ApiResult {
    sim.enter(&headers, "network.security_groups.list", SVC)
        .await?;
    let pid = &sim.config.credentials.project_id;
    Ok(json_response(
        StatusCode::OK,
        json!({"security_groups": [{"id": "00000000-0000-4000-8000-00000000d3fa", "name": "default", "description": "Default security group", "project_id": pid, "tenant_id": pid, "security_group_rules": [], "tags": [], "stateful": true}]}),
    ))
}

// ---------------------------------------------------------------- rendering

fn common(sim: &Sim, v: &mut Value, created: u64, updated: u64) {
    let pid = &sim.config.credentials.project_id;
    let o = v.as_object_mut().expect("object literal");
    o.insert("project_id".into(), json!(pid));
    o.insert("tenant_id".into(), json!(pid));
    o.insert("tags".into(), json!([]));
    o.insert("created_at".into(), json!(iso8601(created)));
    o.insert("updated_at".into(), json!(iso8601(updated)));
    o.insert("revision_number".into(), json!(1));
}

fn network_json(sim: &Sim, n: &Network) -> Value {
    // Snapshots from before `physical_network` existed: the external one was flat.
    let physnet = n
        .physical_network
        .clone()
        .or_else(|| n.external.then(|| "public".to_string()));
    let mut v = json!({
        "id": n.id,
        "name": n.name,
        "status": "ACTIVE",
        "admin_state_up": true,
        "subnets": n.subnet_ids,
        "shared": n.shared,
        "router:external": n.external,
        "is_default": n.external,
        "mtu": n.mtu,
        "availability_zones": ["nova"],
        "availability_zone_hints": [],
        "description": "",
        "port_security_enabled": true,
        "ipv4_address_scope": null,
        "ipv6_address_scope": null,
        "provider:network_type": if physnet.is_some() { "flat" } else { "vxlan" },
        "provider:physical_network": physnet,
        "provider:segmentation_id": if physnet.is_some() { Value::Null } else { json!(1001) },
    });
    common(sim, &mut v, n.created, n.created);
    v
}

fn subnet_json(sim: &Sim, s: &Subnet) -> Value {
    let (first, last) = s.pool();
    let mut v = json!({
        "id": s.id,
        "name": s.name,
        "network_id": s.network_id,
        "ip_version": s.ip_version,
        "cidr": s.cidr(),
        "gateway_ip": s.gateway_ip(),
        "allocation_pools": [{"start": first, "end": last}],
        "enable_dhcp": true,
        "dns_nameservers": [],
        "host_routes": [],
        "ipv6_ra_mode": null,
        "ipv6_address_mode": null,
        "subnetpool_id": null,
        "description": "",
        "service_types": [],
    });
    common(sim, &mut v, s.created, s.created);
    v
}

fn port_json(sim: &Sim, p: &Port) -> Value {
    let mut v = json!({
        "id": p.id,
        "name": p.name,
        "network_id": p.network_id,
        "device_id": p.device_id,
        "device_owner": p.device_owner,
        "status": p.status,
        "admin_state_up": true,
        "mac_address": p.mac_address,
        "fixed_ips": p.fixed_ips,
        "allowed_address_pairs": [],
        "extra_dhcp_opts": [],
        "security_groups": ["00000000-0000-4000-8000-00000000d3fa"],
        "description": "",
        "binding:vnic_type": "normal",
        "port_security_enabled": true,
    });
    common(sim, &mut v, p.created, p.updated);
    v
}

fn fip_json(sim: &Sim, w: &World, f: &FloatingIp) -> Value {
    let mut v = json!({
        "id": f.id,
        "floating_ip_address": f.floating_ip_address,
        "floating_network_id": f.floating_network_id,
        "router_id": f.port_id.as_ref().map(|_| "00000000-0000-4000-8000-0000000e0001"),
        "port_id": f.port_id,
        "fixed_ip_address": f.fixed_ip_address,
        "status": w.floating_ip_status(f),
        "description": f.description,
        "dns_domain": "",
        "dns_name": "",
        "port_forwardings": [],
        "qos_policy_id": null,
    });
    if let Some(p) = f.port_id.as_deref().and_then(|p| w.port(p)) {
        v["port_details"] = json!({
            "name": p.name, "network_id": p.network_id, "mac_address": p.mac_address,
            "admin_state_up": true, "status": p.status, "device_id": p.device_id, "device_owner": p.device_owner
        });
    }
    common(sim, &mut v, f.created, f.updated);
    v
}

/// Neutron-style filtering on the rendered JSON: every `key=value` pair (except paging and
/// field selection) must match the top-level field; repeated keys match any value.
fn matches(v: &Value, q: &QueryPairs) -> bool {
    const SKIP: &[&str] = &[
        "limit",
        "marker",
        "page_reverse",
        "fields",
        "sort_key",
        "sort_dir",
    ];
    let mut keys: Vec<&str> = q
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !SKIP.contains(k))
        .collect();
    keys.dedup();
    keys.iter().all(|key| {
        let wanted: Vec<&str> = q
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect();
        if *key == "fixed_ips" {
            // fixed_ips=ip_address=127.10.0.5 or subnet_id=...
            return wanted.iter().any(|w| {
                let (fk, fv) = w.split_once('=').unwrap_or(("ip_address", w));
                v["fixed_ips"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|ip| ip[fk].as_str() == Some(fv))
            });
        }
        let field = &v[*key];
        wanted.iter().any(|w| match field {
            Value::String(s) => s == w,
            Value::Bool(b) => b.to_string() == w.to_ascii_lowercase(),
            Value::Number(n) => n.to_string() == *w,
            Value::Null => w.is_empty(),
            _ => false,
        })
    })
}

fn list_response(sim: &Sim, coll: &str, items: Vec<Value>, q: &QueryPairs) -> ApiResult {
    let items: Vec<Value> = items.into_iter().filter(|v| matches(v, q)).collect();
    let ids: Vec<&str> = items
        .iter()
        .map(|v| v["id"].as_str().unwrap_or_default())
        .collect();
    let (range, full) = paginate(&ids, q, usize::MAX, usize::MAX, SVC)?;
    let last = ids[range.clone()].last().map(|s| s.to_string());
    let mut page: Vec<Value> = items[range].to_vec();
    // `fields=` selects columns.
    let fields: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "fields")
        .map(|(_, v)| v.as_str())
        .collect();
    if !fields.is_empty() {
        for v in &mut page {
            if let Some(o) = v.as_object_mut() {
                o.retain(|k, _| fields.contains(&k.as_str()));
            }
        }
    }
    let mut doc = json!({ coll: page });
    if full {
        if let Some(last) = last {
            let mut next = format!("{}/network/v2.0/{coll}?", sim.base);
            for (k, v) in q.iter().filter(|(k, _)| k != "marker") {
                next.push_str(&format!(
                    "{}={}&",
                    super::nova::urlencode(k),
                    super::nova::urlencode(v)
                ));
            }
            next.push_str(&format!("marker={last}"));
            doc[format!("{coll}_links")] = json!([{"rel": "next", "href": next}]);
        }
    }
    Ok(json_response(StatusCode::OK, doc))
}

// ---------------------------------------------------------------- networks & subnets

async fn list_networks(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<QueryPairs>,
) -> ApiResult {
    sim.enter(&headers, "network.networks.list", SVC).await?;
    let items = {
        let g = sim.lock();
        g.world
            .networks
            .iter()
            .map(|n| network_json(&sim, n))
            .collect()
    };
    list_response(&sim, "networks", items, &q)
}

async fn show_network(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    sim.enter(&headers, "network.networks.get", SVC).await?;
    let g = sim.lock();
    let n = g.world.network(&id).ok_or_else(|| {
        ApiError::not_found(SVC, format!("Network {id} could not be found."))
            .with_kind("NetworkNotFound")
    })?;
    Ok(json_response(
        StatusCode::OK,
        json!({"network": network_json(&sim, n)}),
    ))
}

async fn list_subnets(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<QueryPairs>,
) -> ApiResult {
    sim.enter(&headers, "network.subnets.list", SVC).await?;
    let items = {
        let g = sim.lock();
        g.world
            .subnets
            .iter()
            .map(|s| subnet_json(&sim, s))
            .collect()
    };
    list_response(&sim, "subnets", items, &q)
}

async fn show_subnet(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    sim.enter(&headers, "network.subnets.get", SVC).await?;
    let g = sim.lock();
    let s = g.world.subnets.iter().find(|s| s.id == id).ok_or_else(|| {
        ApiError::not_found(SVC, format!("Subnet {id} could not be found."))
            .with_kind("SubnetNotFound")
    })?;
    Ok(json_response(
        StatusCode::OK,
        json!({"subnet": subnet_json(&sim, s)}),
    ))
}

// ---------------------------------------------------------------- ports

async fn list_ports(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<QueryPairs>,
) -> ApiResult {
    sim.enter(&headers, "network.ports.list", SVC).await?;
    let items = {
        let g = sim.lock();
        g.world.ports.iter().map(|p| port_json(&sim, p)).collect()
    };
    list_response(&sim, "ports", items, &q)
}

async fn show_port(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    sim.enter(&headers, "network.ports.get", SVC).await?;
    let g = sim.lock();
    let p = g.world.port(&id).ok_or_else(|| {
        ApiError::not_found(SVC, format!("Port {id} could not be found.")).with_kind("PortNotFound")
    })?;
    Ok(json_response(
        StatusCode::OK,
        json!({"port": port_json(&sim, p)}),
    ))
}

async fn create_port(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    sim.enter(&headers, "network.ports.create", SVC).await?;
    let body = parse_body(SVC, &body)?;
    let net = body
        .pointer("/port/network_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::bad_request(
                SVC,
                "Failed to parse request. Required attribute 'network_id' not specified",
            )
        })?
        .to_string();
    let fixed = body
        .pointer("/port/fixed_ips/0/ip_address")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut g = sim.lock();
    let id = g
        .world
        .create_port_on(&net, fixed, false)
        .map_err(|e| ApiError::from_domain(SVC, e).with_kind("NetworkNotFound"))?;
    let p = g
        .world
        .ports
        .iter_mut()
        .find(|p| p.id == id)
        .expect("just created");
    if let Some(n) = body.pointer("/port/name").and_then(Value::as_str) {
        p.name = n.to_string();
    }
    if let Some(d) = body.pointer("/port/device_owner").and_then(Value::as_str) {
        p.device_owner = d.to_string();
    }
    if let Some(d) = body.pointer("/port/device_id").and_then(Value::as_str) {
        p.device_id = d.to_string();
    }
    let v = port_json(&sim, p);
    Ok(json_response(StatusCode::CREATED, json!({"port": v})))
}

async fn delete_port(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    sim.enter(&headers, "network.ports.delete", SVC).await?;
    sim.lock()
        .world
        .delete_port(&id)
        .map_err(|e| ApiError::from_domain(SVC, e).with_kind("PortNotFound"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------- floating IPs

async fn list_fips(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<QueryPairs>,
) -> ApiResult {
    sim.enter(&headers, "network.floatingips.list", SVC).await?;
    let items = {
        let g = sim.lock();
        g.world
            .floating_ips
            .iter()
            .map(|f| fip_json(&sim, &g.world, f))
            .collect()
    };
    list_response(&sim, "floatingips", items, &q)
}

fn fip_not_found(id: &str) -> ApiError {
    ApiError::not_found(SVC, format!("Floating IP {id} could not be found"))
        .with_kind("FloatingIPNotFound")
}

async fn show_fip(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    sim.enter(&headers, "network.floatingips.get", SVC).await?;
    let g = sim.lock();
    let f = g
        .world
        .floating_ips
        .iter()
        .find(|f| f.id == id)
        .ok_or_else(|| fip_not_found(&id))?;
    Ok(json_response(
        StatusCode::OK,
        json!({"floatingip": fip_json(&sim, &g.world, f)}),
    ))
}

async fn create_fip(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    sim.enter(&headers, "network.floatingips.create", SVC)
        .await?;
    let body = parse_body(SVC, &body)?;
    let f = body
        .get("floatingip")
        .ok_or_else(|| ApiError::bad_request(SVC, "Resource body required"))?;
    let net = f
        .get("floating_network_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::bad_request(
                SVC,
                "Failed to parse request. Required attribute 'floating_network_id' not specified",
            )
        })?
        .to_string();
    let port = f.get("port_id").and_then(Value::as_str).map(str::to_string);
    let fixed = f
        .get("fixed_ip_address")
        .and_then(Value::as_str)
        .map(str::to_string);
    let desc = f
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut g = sim.lock();
    let id = g
        .world
        .create_floating_ip(&net, port, fixed, desc)
        .map_err(|e| ApiError::from_domain(SVC, e))?;
    let fip = g
        .world
        .floating_ips
        .iter()
        .find(|f| f.id == id)
        .expect("just created");
    Ok(json_response(
        StatusCode::CREATED,
        json!({"floatingip": fip_json(&sim, &g.world, fip)}),
    ))
}

async fn update_fip(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    sim.enter(&headers, "network.floatingips.update", SVC)
        .await?;
    let body = parse_body(SVC, &body)?;
    let f = body
        .get("floatingip")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::bad_request(SVC, "Resource body required"))?;
    let mut g = sim.lock();
    if let Some(p) = f.get("port_id") {
        let port = p.as_str().map(str::to_string);
        let fixed = f
            .get("fixed_ip_address")
            .and_then(Value::as_str)
            .map(str::to_string);
        g.world
            .update_floating_ip(&id, port, fixed)
            .map_err(|e| ApiError::from_domain(SVC, e))?;
    }
    if let Some(d) = f.get("description").and_then(Value::as_str) {
        if let Some(fip) = g.world.floating_ips.iter_mut().find(|x| x.id == id) {
            fip.description = d.to_string();
        }
    }
    let fip = g
        .world
        .floating_ips
        .iter()
        .find(|f| f.id == id)
        .ok_or_else(|| fip_not_found(&id))?;
    Ok(json_response(
        StatusCode::OK,
        json!({"floatingip": fip_json(&sim, &g.world, fip)}),
    ))
}

async fn delete_fip(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    sim.enter(&headers, "network.floatingips.delete", SVC)
        .await?;
    sim.lock()
        .world
        .delete_floating_ip(&id)
        .map_err(|_| fip_not_found(&id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
