//! The launcher's read-only web API (docs/operation.md): the same listings as the CLI, served
//! from the launcher's ZooKeeper tree cache so a request never waits on ZooKeeper.
//!
//! Endpoints: `/node-list` (`node_id=`), `/request-list`, `/label-list`, `/image-list`,
//! `/dib-image-list`, `/image-status`, `/ready` (503 until the launcher finished its first
//! pass), `/metrics` (Prometheus text format, see `crate::metrics`). Content negotiation on `Accept` (JSON only when `application/json` wins; a header
//! matching no offer gets 406 where Python answered 500), `fields=` for text output,
//! responses cached for one second per (path, query, format), 16 at most, with `Cache-Control`,
//! `Last-Modified`, `Expires` and `If-Modified-Since` handling. Only GET and HEAD exist:
//! the API never changes anything.
//!
//! `/node-list` is not kept rendered: a listing of 100,000 nodes is 35 MB of text or
//! 57 MB of JSON. What is cached for the second is the snapshot of the cache's nodes it
//! is written from (ids and shared records, under 1 MB), and every answer is written from
//! it on a blocking thread while it is sent, in pieces of [`PIECE_BYTES`], a few pieces
//! ahead of the client ([`PIECES_AHEAD`]), at most four at a time ([`NodeListLimits`]:
//! a client that stops reading loses its turn after a minute). So
//! the answers within the second are the same bytes, and a listing costs the launcher a
//! few hundred KB whatever its size and however many clients ask at once.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use nodepool_shared::listing::{
    self, BuildRequest, BuildRequestState, Fields, ImageStatusEntry, NodeColumns, OutputFormat,
    ResponseFormat, Table,
};
use nodepool_shared::model::{now_epoch, BuildState, ComponentKind, NodeId};
use nodepool_shared::sync::MutexExt;
use nodepool_shared::zk::{CachedNode, TreeCache};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long a rendered response is reused.
const RESPONSE_TTL: Duration = Duration::from_secs(1);

/// Answers kept for their second at most. A `/node-list` one holds a snapshot of every
/// cached node (8 bytes each: 800 KB at 100,000 nodes), and every distinct query string
/// makes one; past this many, answers are made for their request alone.
const MAX_CACHED_RESPONSES: usize = 16;

/// Longest query string we look at; longer ones are refused (400) rather than parsed.
const MAX_QUERY_LEN: usize = 4096;

/// Size of the pieces a `/node-list` answer is written and sent in.
const PIECE_BYTES: usize = 256 * 1024;

/// Pieces written ahead of what the client has taken, per answer.
const PIECES_AHEAD: usize = 4;

/// How `/node-list` answers share the launcher ([`NodeListLimits::default`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeListLimits {
    /// Answers written at once (each takes a core while it is written: about half a
    /// second for 100,000 nodes); more clients wait for their turn.
    pub writers: usize,
    /// An answer whose client takes nothing for this long is ended (the connection
    /// closes), so that a client that stops reading cannot keep its turn forever.
    pub stall: Duration,
    /// A client that waits this long for its turn gets 503.
    pub queue_wait: Duration,
}

impl Default for NodeListLimits {
    fn default() -> Self {
        NodeListLimits {
            writers: 4,
            stall: Duration::from_secs(60),
            queue_wait: Duration::from_secs(60),
        }
    }
}

/// What the handlers read.
#[derive(Clone)]
pub struct WebState {
    cache: TreeCache,
    ready: Arc<AtomicBool>,
    responses: Arc<Mutex<HashMap<String, CachedResponse>>>,
    node_list_writers: Arc<Semaphore>,
    node_list_limits: NodeListLimits,
    metrics: Option<crate::metrics::MetricsPage>,
}

#[derive(Clone)]
struct CachedResponse {
    made: Instant,
    modified: SystemTime,
    status: StatusCode,
    content_type: &'static str,
    body: CachedBody,
}

/// What every answer within the TTL is made of.
#[derive(Clone)]
enum CachedBody {
    /// A rendered listing (the small ones), shared, never copied per answer.
    Rendered(Bytes),
    /// `/node-list`: what it is written from for each answer.
    Nodes(Arc<NodeSnapshot>),
}

/// The nodes of one `/node-list` answer and how to write them.
struct NodeSnapshot {
    /// In id order, as the cache gives them.
    nodes: Vec<Arc<CachedNode>>,
    now: f64,
    format: OutputFormat,
    fields: Option<Fields>,
}

impl WebState {
    /// State over `cache`; `/ready` answers 200 once `ready` is true.
    pub fn new(cache: TreeCache, ready: Arc<AtomicBool>) -> Self {
        WebState {
            cache,
            ready,
            responses: Arc::new(Mutex::new(HashMap::new())),
            node_list_writers: Arc::new(Semaphore::new(NodeListLimits::default().writers)),
            node_list_limits: NodeListLimits::default(),
            metrics: None,
        }
    }

    /// How many answers are kept for their second now (at most 16).
    pub fn cached_answers(&self) -> usize {
        self.responses.lock_or_recover().len()
    }

    /// Other [`NodeListLimits`] than the defaults (tests use short times).
    pub fn with_node_list_limits(mut self, limits: NodeListLimits) -> Self {
        self.node_list_writers = Arc::new(Semaphore::new(limits.writers.max(1)));
        self.node_list_limits = limits;
        self
    }

    /// Serves `metrics` on `/metrics` (404 without).
    pub fn with_metrics(mut self, metrics: Arc<nodepool_shared::stats::Metrics>) -> Self {
        self.metrics = Some(crate::metrics::MetricsPage::new(metrics));
        self
    }
}

/// The listings served, by path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    Nodes,
    Requests,
    Labels,
    Images,
    DibImages,
    ImageStatus,
}

/// The router with every endpoint (also used by tests with `axum::serve`).
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/node-list",
            get(|s, q, h, u, m| listing(s, q, h, u, m, Listing::Nodes)),
        )
        .route(
            "/request-list",
            get(|s, q, h, u, m| listing(s, q, h, u, m, Listing::Requests)),
        )
        .route(
            "/label-list",
            get(|s, q, h, u, m| listing(s, q, h, u, m, Listing::Labels)),
        )
        .route(
            "/image-list",
            get(|s, q, h, u, m| listing(s, q, h, u, m, Listing::Images)),
        )
        .route(
            "/dib-image-list",
            get(|s, q, h, u, m| listing(s, q, h, u, m, Listing::DibImages)),
        )
        .route(
            "/image-status",
            get(|s, q, h, u, m| listing(s, q, h, u, m, Listing::ImageStatus)),
        )
        .fallback(not_found)
        .with_state(state)
}

/// `/metrics`: rendered at most once a second ([`crate::metrics::MetricsPage`]).
async fn metrics(State(state): State<WebState>) -> Response {
    match &state.metrics {
        Some(m) => m.response().await,
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Binds `addr` and serves until `cancel` fires, with [`crate::http_serve`]'s limits (a
/// client silent for 10 s is dropped; 256 connections at most). Returns the bound address
/// through `bound` (useful with port 0) before serving.
pub async fn serve(
    addr: SocketAddr,
    state: WebState,
    cancel: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "web API listening");
    if let Some(tx) = bound {
        let _ = tx.send(local);
    }
    crate::http_serve::serve(
        listener,
        router(state),
        crate::http_serve::Limits::default(),
        "web API",
        cancel,
    )
    .await
}

async fn not_found() -> Response {
    text_response(StatusCode::NOT_FOUND, "Not Found\n".to_string())
}

async fn ready(State(state): State<WebState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        text_response(StatusCode::OK, "OK".to_string())
    } else {
        text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: the launcher has not finished starting\n".to_string(),
        )
    }
}

fn text_response(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(listing::CONTENT_TYPE_TEXT),
    );
    resp
}

async fn listing(
    State(state): State<WebState>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    uri: Uri,
    method: Method,
    which: Listing,
) -> Response {
    let raw_query = uri.query().unwrap_or("");
    if raw_query.len() > MAX_QUERY_LEN {
        return text_response(StatusCode::BAD_REQUEST, "query string too long\n".into());
    }
    let accept = headers
        .get(header::ACCEPT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let format = match listing::negotiate(accept.as_deref()) {
        Ok(f) => f,
        Err(e) => return text_response(StatusCode::NOT_ACCEPTABLE, format!("{e}\n")),
    };
    let key = format!("{}?{}#{:?}", uri.path(), raw_query, format);
    let now = Instant::now();
    let (cached, room) = {
        let mut map = state.responses.lock_or_recover();
        // Expired answers go at once (a `/node-list` snapshot keeps replaced records).
        map.retain(|_, c| now.duration_since(c.made) < RESPONSE_TTL);
        (map.get(&key).cloned(), map.len() < MAX_CACHED_RESPONSES)
    };
    let mut turn = None;
    let entry = match cached {
        Some(c) => c,
        None => {
            // A `/node-list` answer that will not be kept takes its snapshot only once it
            // has its turn to be written: clients past the cache hold nothing while they
            // wait, however many distinct queries they send.
            if which == Listing::Nodes && !room && method != Method::HEAD {
                match node_list_turn(&state).await {
                    Ok(permit) => turn = Some(permit),
                    Err(busy) => return busy,
                }
            }
            let param = |name: &str| {
                query
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            let fields = param("fields").and_then(Fields::parse);
            let body = match which {
                Listing::Nodes => CachedBody::Nodes(Arc::new(node_snapshot(
                    &state.cache,
                    param("node_id"),
                    format,
                    fields,
                ))),
                _ => CachedBody::Rendered(Bytes::from(render(
                    &state.cache,
                    which,
                    format,
                    fields.as_ref(),
                ))),
            };
            let entry = CachedResponse {
                made: now,
                modified: SystemTime::now(),
                status: StatusCode::OK,
                content_type: format.content_type(),
                body,
            };
            let mut map = state.responses.lock_or_recover();
            if map.len() < MAX_CACHED_RESPONSES {
                map.insert(key, entry.clone());
            }
            entry
        }
    };
    respond(&state, &entry, &headers, &method, turn).await
}

/// A turn to write a `/node-list` answer, waited for at most
/// [`NodeListLimits::queue_wait`]; the 503 answer when none came.
async fn node_list_turn(state: &WebState) -> Result<OwnedSemaphorePermit, Response> {
    let turn = state.node_list_writers.clone().acquire_owned();
    match tokio::time::timeout(state.node_list_limits.queue_wait, turn).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: every node listing slot is busy; try again\n".to_string(),
        )),
    }
}

/// The answer of `entry` (a `/node-list` one written with `turn`, or with a turn waited
/// for here).
async fn respond(
    state: &WebState,
    entry: &CachedResponse,
    headers: &HeaderMap,
    method: &Method,
    turn: Option<OwnedSemaphorePermit>,
) -> Response {
    let last_modified = httpdate::fmt_http_date(entry.modified);
    let expires = httpdate::fmt_http_date(entry.modified + RESPONSE_TTL);
    let not_modified = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .is_some_and(|since| {
            // HTTP dates have whole seconds.
            let modified = httpdate::parse_http_date(&last_modified).unwrap_or(entry.modified);
            modified <= since
        });
    let mut resp = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match &entry.body {
            CachedBody::Rendered(bytes) => (entry.status, bytes.clone()).into_response(),
            // HEAD: the headers only, nothing written.
            CachedBody::Nodes(_) if method == Method::HEAD => entry.status.into_response(),
            CachedBody::Nodes(snapshot) => {
                let permit = match turn {
                    Some(p) => p,
                    None => match node_list_turn(state).await {
                        Ok(p) => p,
                        Err(busy) => return busy,
                    },
                };
                (
                    entry.status,
                    stream_nodes(snapshot.clone(), permit, state.node_list_limits.stall),
                )
                    .into_response()
            }
        }
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(entry.content_type),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=1"),
    );
    for (name, value) in [
        (header::LAST_MODIFIED, last_modified),
        (header::EXPIRES, expires),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    resp
}

fn output_format(format: ResponseFormat) -> OutputFormat {
    match format {
        ResponseFormat::Json => OutputFormat::Json,
        ResponseFormat::Text => OutputFormat::Text,
    }
}

/// The nodes `/node-list` lists (all, or the one of `node_id`), taken from the cache now.
fn node_snapshot(
    cache: &TreeCache,
    node_id: Option<&str>,
    format: ResponseFormat,
    fields: Option<Fields>,
) -> NodeSnapshot {
    let nodes = match node_id {
        Some(id) => cache.node(&NodeId::from(id)).into_iter().collect(),
        None => cache.nodes(),
    };
    NodeSnapshot {
        nodes,
        now: now_epoch(),
        format: output_format(format),
        fields,
    }
}

/// The body of a `/node-list` answer: written from `snapshot` on a blocking thread,
/// [`PIECES_AHEAD`] pieces ahead of the client (it stops when the client goes away, or
/// takes nothing for `stall`), text with a final newline as Nodepool's web API. `permit`
/// is held until it is written. A writer that stops before the end fails the body, so
/// that the client sees a broken answer rather than a short listing.
fn stream_nodes(
    snapshot: Arc<NodeSnapshot>,
    permit: OwnedSemaphorePermit,
    stall: Duration,
) -> Body {
    // `None` marks the end of the listing.
    let (tx, rx) = mpsc::channel::<Option<Bytes>>(PIECES_AHEAD);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let s = &*snapshot;
        let mut open = true;
        // Hands a piece to the answer; false once the client is gone or stalled.
        let send = |piece: Option<Bytes>| match runtime
            .block_on(tokio::time::timeout(stall, tx.send(piece)))
        {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                tracing::info!(
                    "web API: a /node-list client took nothing for {stall:?}; ending its answer"
                );
                false
            }
        };
        listing::write_compact_nodes(
            &s.nodes,
            |n| (&*n.node, n.probably_locked()),
            s.now,
            NodeColumns::Detail,
            s.format,
            s.fields.as_ref(),
            PIECE_BYTES,
            |piece| {
                open = open && send(Some(Bytes::from(piece)));
                open
            },
        );
        if open && s.format == OutputFormat::Text {
            open = send(Some(Bytes::from_static(b"\n")));
        }
        if open {
            send(None);
        }
    });
    let pieces = futures::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(Some(piece)) => Some((Ok(piece), Some(rx))),
            Some(None) => None,
            None => Some((Err(std::io::Error::other("node listing ended early")), None)),
        }
    });
    Body::from_stream(pieces)
}

/// The body of one of the smaller listings (text with a final newline, as Nodepool's
/// web API).
fn render(
    cache: &TreeCache,
    which: Listing,
    format: ResponseFormat,
    fields: Option<&Fields>,
) -> String {
    let format = output_format(format);
    let mut body = build_table(cache, which).render(format, fields);
    if format == OutputFormat::Text {
        body.push('\n');
    }
    body
}

/// Builds one of the smaller listings from the cache (pure apart from reading the cache).
fn build_table(cache: &TreeCache, which: Listing) -> Table {
    let now = now_epoch();
    match which {
        Listing::Nodes => {
            let nodes = cache.nodes();
            let rows: Vec<_> = nodes.iter().map(|n| n.node.to_node()).collect();
            let locked = nodes.iter().map(|n| n.probably_locked());
            listing::node_list(rows.iter().zip(locked), now, NodeColumns::Detail)
        }
        Listing::Requests => {
            let requests = cache.requests();
            listing::request_list(requests.iter().map(|r| &r.request))
        }
        Listing::Labels => {
            let pools = cache.components(ComponentKind::Pool);
            listing::label_list(pools.iter().map(|c| &c.component))
        }
        Listing::Images => {
            let uploads = cache.uploads();
            listing::image_list(uploads.iter().map(|u| &u.upload), now)
        }
        Listing::DibImages => {
            let builds = cache.builds();
            let paused: HashSet<String> = cache.paused_images().into_iter().collect();
            listing::dib_image_list(builds.iter().map(|b| &b.build), &paused, now)
        }
        Listing::ImageStatus => listing::image_status(&image_status_entries(cache), now),
    }
}

/// One entry per image known to ZooKeeper. A build request counts as `building` while a
/// build of that image is in state `building` (Python uses a lock-timing heuristic).
fn image_status_entries(cache: &TreeCache) -> Vec<ImageStatusEntry> {
    let paused: HashSet<String> = cache.paused_images().into_iter().collect();
    let requests: HashMap<String, _> = cache.build_requests().into_iter().collect();
    let mut names: Vec<String> = cache.images();
    names.extend(requests.keys().cloned());
    names.extend(paused.iter().cloned());
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|image| {
            let build_request = requests.get(&image).map(|times| {
                let building = cache
                    .image_builds(&image)
                    .iter()
                    .any(|b| b.build.state == BuildState::Building);
                BuildRequest {
                    state: if building {
                        BuildRequestState::Building
                    } else {
                        BuildRequestState::Pending
                    },
                    state_time: times.created,
                }
            });
            ImageStatusEntry {
                paused: paused.contains(&image),
                image,
                build_request,
            }
        })
        .collect()
}
