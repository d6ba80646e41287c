//! Simulated Keystone v3: version documents and token issue/validation with a service catalog.
//!
//! Mounted both at `/identity` (the `auth_url` we hand out) and at the root, so
//! `http://127.0.0.1:<port>` and `.../identity` both work as `auth_url`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::app::{json_response, parse_body, ApiError, ApiResult, Service, Sim, Token};
use super::util::{iso8601_micros, new_hex_id, now_secs};

const SVC: Service = Service::Identity;

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/", get(versions))
        .route("/v3", get(version_v3))
        .route("/v3/auth/tokens", post(issue).get(validate))
        .route("/identity", get(versions))
        .route("/identity/v3", get(version_v3))
        .route("/identity/v3/auth/tokens", post(issue).get(validate))
}

fn v3_doc(sim: &Sim) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/identity/v3/", sim.base)}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]
    })
}

async fn versions(State(sim): State<Arc<Sim>>) -> ApiResult {
    sim.enter_public("identity.versions", SVC).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({"versions": {"values": [v3_doc(&sim)]}}),
    ))
}

async fn version_v3(State(sim): State<Arc<Sim>>) -> ApiResult {
    sim.enter_public("identity.versions", SVC).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({"version": v3_doc(&sim)}),
    ))
}

fn unauthorized(msg: &str) -> ApiError {
    ApiError::new(SVC, StatusCode::UNAUTHORIZED, msg)
}

/// Checks the identity part of an auth request; returns the methods used.
fn authenticate(sim: &Sim, body: &Value) -> Result<Vec<String>, ApiError> {
    let c = &sim.config.credentials;
    let identity = body
        .pointer("/auth/identity")
        .ok_or_else(|| ApiError::bad_request(SVC, "Expecting to find identity in auth."))?;
    let methods: Vec<String> = identity
        .get("methods")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if methods.is_empty() {
        return Err(ApiError::bad_request(
            SVC,
            "Expecting to find methods in identity.",
        ));
    }
    for m in &methods {
        match m.as_str() {
            "password" => {
                let user = identity.pointer("/password/user").ok_or_else(|| {
                    ApiError::bad_request(SVC, "Expecting to find user in password.")
                })?;
                let name_ok = user.get("name").and_then(Value::as_str) == Some(&c.username)
                    || user.get("id").and_then(Value::as_str) == Some(&c.user_id);
                let pw_ok = user.get("password").and_then(Value::as_str) == Some(&c.password);
                if !(name_ok && pw_ok) {
                    return Err(unauthorized(
                        "The request you have made requires authentication.",
                    ));
                }
            }
            "application_credential" => {
                let ac = identity.get("application_credential").ok_or_else(|| {
                    ApiError::bad_request(
                        SVC,
                        "Expecting to find application_credential in identity.",
                    )
                })?;
                let id_ok = ac.get("id").and_then(Value::as_str) == Some(&c.app_credential_id)
                    || ac.get("name").and_then(Value::as_str) == Some(&c.app_credential_name);
                let secret_ok =
                    ac.get("secret").and_then(Value::as_str) == Some(&c.app_credential_secret);
                if !(id_ok && secret_ok) {
                    return Err(unauthorized(
                        "The request you have made requires authentication.",
                    ));
                }
            }
            "token" => {
                let t = identity
                    .pointer("/token/id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let g = sim.lock();
                if g.tokens.get(t).is_none_or(|t| t.expires <= Instant::now()) {
                    return Err(unauthorized(
                        "The request you have made requires authentication.",
                    ));
                }
            }
            other => {
                return Err(unauthorized(&format!(
                    "Attempted to authenticate with an unsupported method: {other}"
                )))
            }
        }
    }
    // A project scope, when given, must name our project.
    if let Some(p) = body.pointer("/auth/scope/project") {
        let ok = p.get("name").and_then(Value::as_str) == Some(&c.project_name)
            || p.get("id").and_then(Value::as_str) == Some(&c.project_id);
        if !ok {
            return Err(unauthorized(
                "The request you have made requires authentication.",
            ));
        }
    }
    Ok(methods)
}

async fn issue(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    sim.enter_public("identity.tokens.create", SVC).await?;
    let body = parse_body(SVC, &body)?;
    let methods = authenticate(&sim, &body)?;
    let token_id = new_hex_id();
    let ttl = sim.config.token_ttl_secs;
    let now = now_secs();
    let token = Token {
        expires: Instant::now() + Duration::from_secs(ttl),
        expires_secs: now + ttl,
        issued_secs: now,
        methods,
        audit_id: new_hex_id()[..22].to_string(),
    };
    let doc = token_doc(&sim, &token);
    sim.lock().tokens.insert(token_id.clone(), token);
    let mut r = json_response(StatusCode::CREATED, doc);
    r.headers_mut().insert(
        "X-Subject-Token",
        HeaderValue::from_str(&token_id).expect("hex token is a valid header"),
    );
    Ok(r)
}

async fn validate(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> ApiResult {
    sim.enter(&headers, "identity.tokens.validate", SVC).await?;
    let subject = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let token = sim
        .lock()
        .tokens
        .get(&subject)
        .filter(|t| t.expires > Instant::now())
        .cloned()
        .ok_or_else(|| ApiError::not_found(SVC, format!("Could not find token: {subject}.")))?;
    let mut r = json_response(StatusCode::OK, token_doc(&sim, &token));
    if let Ok(v) = HeaderValue::from_str(&subject) {
        r.headers_mut().insert("X-Subject-Token", v);
    }
    Ok(r.into_response())
}

/// The service catalog: every service points back at this simulator.
pub fn catalog(sim: &Sim) -> Value {
    let region = sim.region();
    let entry = |ty: &str, name: &str, path: &str| {
        json!({
            "type": ty,
            "name": name,
            "id": format!("{ty}-service"),
            "endpoints": [{
                "id": format!("{ty}-public"),
                "interface": "public",
                "region": region,
                "region_id": region,
                "url": format!("{}{path}", sim.base),
            }]
        })
    };
    json!([
        entry("identity", "keystone", "/identity"),
        entry("compute", "nova", "/compute/v2.1"),
        entry("image", "glance", "/image"),
        entry("network", "neutron", "/network"),
        entry(
            "block-storage",
            "cinder",
            &format!("/volume/v3/{}", sim.config.credentials.project_id),
        ),
    ])
}

fn token_doc(sim: &Sim, t: &Token) -> Value {
    let c = &sim.config.credentials;
    let domain = json!({"id": "default", "name": c.domain_name});
    json!({"token": {
        "methods": t.methods,
        "user": {"domain": domain, "id": c.user_id, "name": c.username, "password_expires_at": null},
        "audit_ids": [t.audit_id],
        "expires_at": iso8601_micros(t.expires_secs),
        "issued_at": iso8601_micros(t.issued_secs),
        "project": {"domain": domain, "id": c.project_id, "name": c.project_name},
        "is_domain": false,
        "roles": [
            {"id": "9fe2ff9ee4384b1894a90878d3e92bab", "name": "member"},
            {"id": "f1d2c3b4a5968778695a4b3c2d1e0f00", "name": "reader"}
        ],
        "catalog": catalog(sim),
    }})
}
