//! The HTTP layer under the OpenStack driver: one reqwest request per API call, with the
//! provider's rate limit (token requests included), a Keystone token (fetched on first
//! use, renewed shortly before expiry or once after a 401; after a failed token request
//! none is sent until the [`AuthBackoff`] window closes), the Nova microversion header, a per-call timeout, a
//! statsd timer `nodepool.task.<provider>.<service>.<METHOD>.<operation>`, replies read
//! up to a size limit (`DriverOptions::max_reply_bytes`), and error classification of
//! every non-2xx reply.
//!
//! Nothing here logs or returns request bodies or headers, so credentials and tokens
//! stay out of logs and errors.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Method;
use serde_json::Value;
use tokio::time::Instant;

use super::auth::{self, Service, Token, AUTH_OPERATION};
use super::auth_backoff::AuthBackoff;
use super::clouds_yaml::{AuthConfig, CloudConfig};
use super::error::CloudError;
use super::rate::RateLimiter;
use super::DriverOptions;
use crate::stats::{names, Statsd};
use crate::sync::{MutexExt, RwLockExt};

/// Renew the token when it expires within this margin (Keystone tokens last hours).
const EXPIRY_MARGIN: Duration = Duration::from_secs(120);

/// A request body.
#[derive(Debug)]
pub(crate) enum Body {
    Empty,
    Json(Value),
    /// Streamed from a file, never read into memory as a whole.
    File(PathBuf),
}

/// One API call.
#[derive(Debug)]
pub(crate) struct Call {
    pub service: Service,
    pub method: Method,
    /// Path below the service endpoint, without a leading `/` (`servers/detail`).
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub body: Body,
    /// Metric operation, ids left out (`servers.detail`, `images.file`).
    pub operation: &'static str,
}

impl Call {
    pub fn new(service: Service, method: Method, operation: &'static str, path: String) -> Self {
        Call {
            service,
            method,
            path,
            query: Vec::new(),
            body: Body::Empty,
            operation,
        }
    }

    pub fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }

    pub fn file(mut self, path: PathBuf) -> Self {
        self.body = Body::File(path);
        self
    }

    /// `compute.POST.servers`: the name used in metrics and errors.
    pub fn name(&self) -> String {
        format!(
            "{}.{}.{}",
            self.service.metric_name(),
            self.method.as_str(),
            self.operation
        )
    }
}

/// A 2xx reply.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Bytes,
}

impl Reply {
    /// Parses the body as `T`, naming `operation` when it cannot.
    pub fn json<T: serde::de::DeserializeOwned>(&self, operation: &str) -> Result<T, CloudError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            CloudError::bad_reply(
                operation,
                format!("unparsable JSON (HTTP {}): {e}", self.status),
            )
        })
    }
}

/// Raw reply before classification.
struct RawReply {
    status: u16,
    body: Bytes,
    subject_token: Option<String>,
}

pub(crate) struct Transport {
    http: reqwest::Client,
    provider: String,
    auth: AuthConfig,
    region: Option<String>,
    interface: String,
    microversion: String,
    limiter: RateLimiter,
    statsd: Statsd,
    api_timeout: Duration,
    upload_timeout: Option<Duration>,
    max_reply_bytes: usize,
    token: RwLock<Option<Arc<Token>>>,
    auth_lock: tokio::sync::Mutex<()>,
    auth_backoff: std::sync::Mutex<AuthBackoff>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("provider", &self.provider)
            .field("auth_url", &self.auth.auth_url())
            .field("region", &self.region)
            .field("interface", &self.interface)
            .field("microversion", &self.microversion)
            .field("rate", &self.limiter.interval())
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub fn new(cloud: &CloudConfig, opts: &DriverOptions) -> Result<Self, CloudError> {
        let http = super::http_clients::client(
            cloud.verify,
            cloud.cacert.as_deref(),
            opts.connect_timeout,
        )?;
        Ok(Transport {
            http,
            provider: opts.provider.clone(),
            auth: cloud.auth.clone(),
            region: cloud
                .region(opts.region_name.as_deref())
                .map(str::to_string),
            interface: cloud.interface.clone(),
            microversion: cloud
                .compute_api_version
                .clone()
                .unwrap_or_else(|| super::NOVA_MICROVERSION.to_string()),
            limiter: RateLimiter::from_rate(opts.rate),
            statsd: opts.statsd.clone(),
            api_timeout: opts.api_timeout,
            upload_timeout: opts.upload_timeout,
            max_reply_bytes: opts.max_reply_bytes,
            token: RwLock::new(None),
            auth_lock: tokio::sync::Mutex::new(()),
            auth_backoff: std::sync::Mutex::new(AuthBackoff::default()),
        })
    }

    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    fn current(&self) -> Option<Arc<Token>> {
        self.token.read_or_recover().clone()
    }

    /// A valid token, authenticating first if there is none or it is about to expire.
    pub async fn token(&self) -> Result<Arc<Token>, CloudError> {
        if let Some(t) = self.current() {
            if !t.expires_within(EXPIRY_MARGIN) {
                return Ok(t);
            }
        }
        self.renew(None).await
    }

    /// Authenticates unless another task already replaced `stale` (or the current
    /// token) with a fresh one. While the window after a failed token request is open
    /// it fails at once without a request ([`CloudError::AuthBackoff`]); the token
    /// request takes a slot of the provider's rate limit like any call.
    async fn renew(&self, stale: Option<&Arc<Token>>) -> Result<Arc<Token>, CloudError> {
        let _guard = self.auth_lock.lock().await;
        if let Some(cur) = self.current() {
            let rejected = stale.is_some_and(|s| Arc::ptr_eq(s, &cur));
            if !rejected && !cur.expires_within(EXPIRY_MARGIN) {
                return Ok(cur);
            }
        }
        self.auth_backoff.lock_or_recover().check(Instant::now())?;
        self.limiter.acquire().await;
        match self.authenticate().await {
            Ok(token) => {
                let failed = self.auth_backoff.lock_or_recover().succeeded();
                if failed > 0 {
                    tracing::info!(provider = %self.provider, failed,
                        "authenticated to the cloud again");
                }
                let token = Arc::new(token);
                *self.token.write_or_recover() = Some(token.clone());
                Ok(token)
            }
            Err(e) => {
                let window = self
                    .auth_backoff
                    .lock_or_recover()
                    .failed(Instant::now(), &e);
                tracing::warn!(provider = %self.provider, error = %e,
                    "cannot authenticate to the cloud; no new token requests for {}s",
                    window.as_secs());
                Err(e)
            }
        }
    }

    /// One `POST /v3/auth/tokens`.
    async fn authenticate(&self) -> Result<Token, CloudError> {
        let url = auth::token_url(self.auth.auth_url());
        let req = self
            .http
            .post(&url)
            .header(ACCEPT, "application/json")
            .timeout(self.api_timeout)
            .json(&auth::token_request_body(&self.auth));
        let raw = self
            .execute(req, AUTH_OPERATION, "identity", "POST", "auth.tokens")
            .await?;
        if raw.status == 401 {
            return Err(CloudError::from_status(AUTH_OPERATION, 401, &raw.body));
        }
        if !(200..300).contains(&raw.status) {
            return Err(CloudError::from_status(
                AUTH_OPERATION,
                raw.status,
                &raw.body,
            ));
        }
        let token = Token::from_reply(raw.subject_token.as_deref(), &raw.body)?;
        tracing::debug!(provider = %self.provider, "authenticated to Keystone");
        Ok(token)
    }

    /// The endpoint URL of `service` (authenticates if needed).
    pub async fn endpoint(&self, service: Service) -> Result<String, CloudError> {
        let token = self.token().await?;
        token.endpoint(service, self.region.as_deref(), &self.interface)
    }

    /// Performs `call`: one HTTP request, or two when the first gets a 401 (the token is
    /// renewed in between). Non-2xx replies become typed errors.
    pub async fn call(&self, call: &Call) -> Result<Reply, CloudError> {
        let name = call.name();
        let token = self.token().await?;
        let mut raw = self.send(&token, call, &name).await?;
        if raw.status == 401 {
            tracing::debug!(provider = %self.provider, call = %name, "401: renewing token");
            let fresh = self.renew(Some(&token)).await?;
            raw = self.send(&fresh, call, &name).await?;
        }
        if (200..300).contains(&raw.status) {
            Ok(Reply {
                status: raw.status,
                body: raw.body,
            })
        } else {
            Err(CloudError::from_status(&name, raw.status, &raw.body))
        }
    }

    async fn send(&self, token: &Token, call: &Call, name: &str) -> Result<RawReply, CloudError> {
        let base = token.endpoint(call.service, self.region.as_deref(), &self.interface)?;
        let url = if call.path.is_empty() {
            base
        } else {
            format!("{base}/{}", call.path)
        };
        let mut token_header = HeaderValue::from_str(token.value.expose())
            .map_err(|_| CloudError::bad_reply(AUTH_OPERATION, "token is not a valid header"))?;
        token_header.set_sensitive(true);
        let mut req = self
            .http
            .request(call.method.clone(), &url)
            .header("X-Auth-Token", token_header)
            .header(ACCEPT, "application/json");
        if call.service == Service::Compute {
            req = req
                .header(
                    "OpenStack-API-Version",
                    format!("compute {}", self.microversion),
                )
                .header("X-OpenStack-Nova-API-Version", self.microversion.as_str());
        }
        if !call.query.is_empty() {
            req = req.query(&call.query);
        }
        req = match &call.body {
            Body::Empty => req.timeout(self.api_timeout),
            Body::Json(v) => req.timeout(self.api_timeout).json(v),
            Body::File(path) => {
                let io_err = |source| CloudError::Io {
                    path: path.clone(),
                    source,
                };
                let file = std::fs::File::open(path).map_err(io_err)?;
                let len = file.metadata().map_err(io_err)?.len();
                let stream = tokio_util::io::ReaderStream::with_capacity(
                    tokio::fs::File::from_std(file),
                    256 * 1024,
                );
                let req = req
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, len)
                    .body(reqwest::Body::wrap_stream(stream));
                match self.upload_timeout {
                    Some(t) => req.timeout(t),
                    None => req,
                }
            }
        };
        self.limiter.acquire().await;
        self.execute(
            req,
            name,
            call.service.metric_name(),
            call.method.as_str(),
            call.operation,
        )
        .await
    }

    /// Sends, reads the whole reply and records the timer.
    async fn execute(
        &self,
        req: reqwest::RequestBuilder,
        name: &str,
        service: &str,
        method: &str,
        operation: &str,
    ) -> Result<RawReply, CloudError> {
        let start = Instant::now();
        let result = async {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let subject_token = resp
                .headers()
                .get("X-Subject-Token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = read_body(resp, self.max_reply_bytes).await?;
            Ok::<_, ReadError>(RawReply {
                status,
                body,
                subject_token,
            })
        }
        .await;
        let elapsed = start.elapsed();
        self.statsd.timer_and_count(
            &names::task(&self.provider, service, method, operation),
            elapsed,
        );
        match result {
            Ok(raw) => {
                tracing::debug!(
                    provider = %self.provider,
                    call = %name,
                    status = raw.status,
                    ms = elapsed.as_millis() as u64,
                    "cloud API call"
                );
                Ok(raw)
            }
            Err(e) => {
                let err = match e {
                    ReadError::Transport(e) => CloudError::from_transport(name, &e),
                    ReadError::TooLarge { limit } => CloudError::bad_reply(
                        name,
                        format!("reply larger than {}; not read further", size_text(limit)),
                    ),
                };
                tracing::debug!(provider = %self.provider, call = %name, error = %err, "cloud API call failed");
                Err(err)
            }
        }
    }
}

/// Why a reply could not be read.
enum ReadError {
    Transport(reqwest::Error),
    /// The body (announced or received) is larger than the limit.
    TooLarge {
        limit: usize,
    },
}

impl From<reqwest::Error> for ReadError {
    fn from(e: reqwest::Error) -> Self {
        ReadError::Transport(e)
    }
}

/// `limit` for a message: whole MiB when it is some, else bytes.
fn size_text(limit: usize) -> String {
    if limit >= 1 << 20 && limit.is_multiple_of(1 << 20) {
        format!("{} MiB", limit >> 20)
    } else {
        format!("{limit} bytes")
    }
}

/// Reads `resp`'s body, at most `limit` bytes: a larger `Content-Length` fails before
/// anything is read, and a body that grows past the limit fails as it does.
async fn read_body(mut resp: reqwest::Response, limit: usize) -> Result<Bytes, ReadError> {
    let announced = resp.content_length().unwrap_or(0);
    if announced > limit as u64 {
        return Err(ReadError::TooLarge { limit });
    }
    // Most replies come in one chunk: it is returned as it is, without a copy. Only a
    // second chunk starts a buffer.
    let mut first: Option<Bytes> = None;
    let mut joined = bytes::BytesMut::new();
    let mut len = 0;
    while let Some(chunk) = resp.chunk().await? {
        len += chunk.len();
        if len > limit {
            return Err(ReadError::TooLarge { limit });
        }
        match first.take() {
            None if joined.is_empty() => first = Some(chunk),
            Some(f) => {
                joined.reserve((announced as usize).max(len));
                joined.extend_from_slice(&f);
                joined.extend_from_slice(&chunk);
            }
            None => joined.extend_from_slice(&chunk),
        }
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

#[cfg(test)]
mod tests {
    use super::{read_body, size_text, ReadError};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP server on loopback answering `head` and then `chunks`, each as an
    /// HTTP chunk (`chunked`) or as they are (when `head` has a `Content-Length`).
    async fn serve_once(head: &'static str, chunks: Vec<Vec<u8>>, chunked: bool) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req).await;
            let _ = s.write_all(head.as_bytes()).await;
            for c in chunks {
                if chunked {
                    let _ = s.write_all(format!("{:x}\r\n", c.len()).as_bytes()).await;
                    let _ = s.write_all(&c).await;
                    let _ = s.write_all(b"\r\n").await;
                } else {
                    let _ = s.write_all(&c).await;
                }
            }
            if chunked {
                let _ = s.write_all(b"0\r\n\r\n").await;
            }
            let _ = s.shutdown().await;
        });
        url
    }

    const CHUNKED: &str =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

    #[tokio::test]
    async fn a_chunked_body_is_read_up_to_the_limit() {
        let url = serve_once(CHUNKED, vec![vec![b'a'; 1024]; 3], true).await;
        let resp = reqwest::get(&url).await.unwrap();
        let body = read_body(resp, 3 * 1024)
            .await
            .ok()
            .expect("3 KiB within 3 KiB");
        assert_eq!(body.len(), 3 * 1024);

        let url = serve_once(CHUNKED, vec![vec![b'a'; 1024]; 3], true).await;
        let resp = reqwest::get(&url).await.unwrap();
        assert!(matches!(
            read_body(resp, 2 * 1024).await,
            Err(ReadError::TooLarge { limit: 2048 })
        ));
    }

    #[tokio::test]
    async fn an_announced_length_past_the_limit_fails_before_reading() {
        // Announces 10 GB and sends nothing: only the announcement can fail it.
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n";
        let url = serve_once(head, vec![], false).await;
        let resp = reqwest::get(&url).await.unwrap();
        assert!(matches!(
            read_body(resp, 64 << 20).await,
            Err(ReadError::TooLarge { .. })
        ));
    }

    #[test]
    fn limits_are_named_in_mib_or_bytes() {
        assert_eq!(size_text(64 << 20), "64 MiB");
        assert_eq!(size_text(2048), "2048 bytes");
    }
}
