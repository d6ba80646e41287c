//! Shared request plumbing: the simulator's state, per-call bookkeeping (counter, latency,
//! token check, injected failures), error bodies in each service's format, and pagination.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::admin::RequestRecord;
use super::config::{Knobs, SimConfig};
use super::sshd::Sshds;
use super::state::{DomainError, World};
use nodepool_shared::sync::MutexExt;

/// Which API a request belongs to (decides the error body format).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Identity,
    Compute,
    Image,
    Network,
    Volume,
    Admin,
}

/// An error response in the format of the service that produced it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub service: Service,
    pub status: StatusCode,
    pub message: String,
    /// Neutron error type (e.g. `PortNotFound`); ignored by the other services.
    pub kind: String,
    /// Reply `200 OK` with a body that is not JSON (knob `garbage_next`).
    pub garbage: bool,
}

impl ApiError {
    pub fn new(service: Service, status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            service,
            status,
            message: message.into(),
            kind: String::new(),
            garbage: false,
        }
    }
    pub fn bad_request(service: Service, message: impl Into<String>) -> Self {
        Self::new(service, StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(service: Service, message: impl Into<String>) -> Self {
        Self::new(service, StatusCode::NOT_FOUND, message)
    }
    pub fn with_kind(mut self, kind: &str) -> Self {
        self.kind = kind.to_string();
        self
    }
    pub fn from_domain(service: Service, e: DomainError) -> Self {
        let (status, message, kind) = match e {
            DomainError::BadRequest(m) => (StatusCode::BAD_REQUEST, m, "BadRequest"),
            DomainError::NotFound(m) => (StatusCode::NOT_FOUND, m, "NotFound"),
            DomainError::Forbidden(m) => (StatusCode::FORBIDDEN, m, "Forbidden"),
            DomainError::Conflict(m) => (StatusCode::CONFLICT, m, "Conflict"),
        };
        Self::new(service, status, message).with_kind(kind)
    }
    fn unauthorized(service: Service) -> Self {
        Self::new(
            service,
            StatusCode::UNAUTHORIZED,
            "The request you have made requires authentication.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.garbage {
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                format!("<html>{}</html>", self.message),
            )
                .into_response();
        }
        let code = self.status.as_u16();
        let title = self.status.canonical_reason().unwrap_or("Error");
        if self.status == StatusCode::UNAUTHORIZED || self.service == Service::Identity {
            let mut r = (
                self.status,
                axum::Json(
                    json!({"error": {"code": code, "title": title, "message": self.message}}),
                ),
            )
                .into_response();
            if self.status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    "WWW-Authenticate",
                    HeaderValue::from_static("Keystone uri=\"/identity\""),
                );
            }
            return r;
        }
        match self.service {
            Service::Compute | Service::Volume => {
                let key = match code {
                    400 => "badRequest",
                    403 => "forbidden",
                    404 => "itemNotFound",
                    409 => "conflictingRequest",
                    413 => "overLimit",
                    503 => "serviceUnavailable",
                    _ => "computeFault",
                };
                (
                    self.status,
                    axum::Json(json!({key: {"code": code, "message": self.message}})),
                )
                    .into_response()
            }
            Service::Network => {
                let kind = if self.kind.is_empty() {
                    title.replace(' ', "")
                } else {
                    self.kind
                };
                (
                    self.status,
                    axum::Json(
                        json!({"NeutronError": {"type": kind, "message": self.message, "detail": ""}}),
                    ),
                )
                    .into_response()
            }
            Service::Image => (
                self.status,
                [("content-type", "text/plain; charset=UTF-8")],
                format!("{code} {title}\n\n{}\n\n   ", self.message),
            )
                .into_response(),
            Service::Admin | Service::Identity => (
                self.status,
                axum::Json(
                    json!({"error": {"code": code, "title": title, "message": self.message}}),
                ),
            )
                .into_response(),
        }
    }
}

pub type ApiResult = Result<Response, ApiError>;

/// A Keystone token the simulator issued.
#[derive(Debug, Clone)]
pub struct Token {
    pub expires: Instant,
    pub expires_secs: u64,
    pub issued_secs: u64,
    pub methods: Vec<String>,
    pub audit_id: String,
}

/// Mutable simulator state behind one lock.
pub struct Inner {
    pub world: World,
    pub knobs: Knobs,
    pub counters: BTreeMap<String, u64>,
    pub tokens: HashMap<String, Token>,
    /// The fake sshds, kept in line with the world's `ACTIVE` servers on every lock.
    pub sshds: Sshds,
    /// Arrival of the most recent API calls, oldest first (at most [`REQUEST_LOG_LEN`]).
    pub requests: VecDeque<RequestRecord>,
}

/// How many API call arrivals the request log keeps.
pub const REQUEST_LOG_LEN: usize = 10_000;

/// The simulator shared by all handlers.
pub struct Sim {
    pub config: SimConfig,
    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub base: String,
    /// When the simulator started; request arrival times count from here.
    pub started: Instant,
    inner: Mutex<Inner>,
    /// Holds `config.ssh_port` when the simulator picked it (bound, never listening).
    _ssh_reservation: Option<tokio::net::TcpSocket>,
}

impl Sim {
    pub fn new(
        config: SimConfig,
        base: String,
        world: World,
        ssh_reservation: Option<tokio::net::TcpSocket>,
    ) -> Sim {
        let knobs = config.knobs.clone();
        let sshds = Sshds::new(config.ssh_port);
        Sim {
            config,
            base,
            started: Instant::now(),
            inner: Mutex::new(Inner {
                world,
                knobs,
                counters: BTreeMap::new(),
                tokens: HashMap::new(),
                sshds,
                requests: VecDeque::new(),
            }),
            _ssh_reservation: ssh_reservation,
        }
    }

    /// Locks the state and applies due time-driven transitions first (and brings the fake
    /// sshds in line with them).
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut g = self.inner.lock_or_recover();
        g.world.tick(Instant::now());
        let Inner {
            world,
            knobs,
            sshds,
            ..
        } = &mut *g;
        sshds.reconcile(
            world.net_epoch,
            || world.ssh_endpoints(),
            Duration::from_millis(knobs.ssh_delay_ms),
            knobs.ssh_never,
        );
        g
    }

    /// Bookkeeping for an authenticated API call: counts and logs it, applies latency, checks the
    /// `X-Auth-Token` and injected failures.
    pub async fn enter(&self, headers: &HeaderMap, op: &str, svc: Service) -> Result<(), ApiError> {
        self.enter_inner(Some(headers), op, svc).await
    }

    /// Like [`Sim::enter`] for calls that need no token (version documents, token creation).
    pub async fn enter_public(&self, op: &str, svc: Service) -> Result<(), ApiError> {
        self.enter_inner(None, op, svc).await
    }

    async fn enter_inner(
        &self,
        headers: Option<&HeaderMap>,
        op: &str,
        svc: Service,
    ) -> Result<(), ApiError> {
        let latency = {
            let at = self.started.elapsed();
            let mut g = self.lock();
            *g.counters.entry(op.to_string()).or_insert(0) += 1;
            if g.requests.len() >= REQUEST_LOG_LEN {
                g.requests.pop_front();
            }
            g.requests.push_back(RequestRecord {
                operation: op.to_string(),
                at_ms: at.as_secs_f64() * 1000.0,
            });
            g.knobs.api_latency_ms + g.knobs.api_latency_ms_for.get(op).copied().unwrap_or(0)
        };
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let mut g = self.lock();
        if let Some(h) = headers {
            let token = h
                .get("x-auth-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let ok = g
                .tokens
                .get(token)
                .is_some_and(|t| t.expires > Instant::now());
            if !ok {
                return Err(ApiError::unauthorized(svc));
            }
        }
        if let Some(f) = g.knobs.fail_next.get_mut(op) {
            if f.count > 0 {
                f.count -= 1;
                let status =
                    StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                if f.count == 0 {
                    g.knobs.fail_next.remove(op);
                }
                return Err(injected(svc, status, op));
            }
        }
        if let Some(n) = g.knobs.garbage_next.get_mut(op) {
            if *n > 0 {
                *n -= 1;
                if *n == 0 {
                    g.knobs.garbage_next.remove(op);
                }
                let mut e = injected(svc, StatusCode::OK, op);
                e.garbage = true;
                return Err(e);
            }
        }
        let rate = g
            .knobs
            .error_rates
            .get(op)
            .or_else(|| g.knobs.error_rates.get("*"))
            .copied()
            .unwrap_or(0.0);
        if rate > 0.0 && rand::random::<f64>() < rate {
            let status = StatusCode::from_u16(g.knobs.error_status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Err(injected(svc, status, op));
        }
        Ok(())
    }

    pub fn region(&self) -> &str {
        &self.config.region
    }
}

fn injected(svc: Service, status: StatusCode, op: &str) -> ApiError {
    ApiError::new(
        svc,
        status,
        format!("Simulated failure of {op} (injected by openstack-sim)"),
    )
    .with_kind("SimulatedFailure")
}

/// Query parameters as ordered pairs (keys may repeat, as Neutron filters allow).
pub type QueryPairs = Vec<(String, String)>;

pub fn query_get<'a>(q: &'a QueryPairs, key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `limit` + `marker` pagination over an already filtered list of ids.
/// Returns the page range and whether the page is full (more may follow).
pub fn paginate(
    ids: &[&str],
    q: &QueryPairs,
    default_limit: usize,
    max_limit: usize,
    svc: Service,
) -> Result<(std::ops::Range<usize>, bool), ApiError> {
    let limit = match query_get(q, "limit") {
        Some(l) => l.parse::<i64>().ok().filter(|l| *l >= 0).ok_or_else(|| {
            ApiError::bad_request(
                svc,
                format!("limit must be a non-negative integer, got {l:?}"),
            )
        })? as usize,
        None => default_limit,
    }
    .min(max_limit);
    let start = match query_get(q, "marker") {
        Some(m) => match ids.iter().position(|id| *id == m) {
            Some(p) => p + 1,
            None => {
                return Err(ApiError::bad_request(
                    svc,
                    format!("marker [{m}] not found"),
                ))
            }
        },
        None => 0,
    };
    let end = (start + limit).min(ids.len());
    Ok((start..end, end - start == limit && limit > 0))
}

/// Parses a JSON request body, naming the problem in a 400 on failure.
pub fn parse_body(svc: Service, body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            svc,
            "The request body is empty; a JSON object is required",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(svc, format!("Malformed JSON in request body: {e}")))
}

/// JSON response with a status.
pub fn json_response(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}
