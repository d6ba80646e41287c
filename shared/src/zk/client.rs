//! [`ZkClient`]: one logical ZooKeeper connection that survives session expiry.
//!
//! It wraps `zookeeper_client::Client` and fixes the crate's warts:
//! * every call is bounded by `request_timeout`;
//! * IO errors (`Error::Custom`) count as connection loss; reads are retried on connection
//!   loss (and across a session replacement) until the timeout;
//! * after `Expired` the crate never reconnects, so a supervisor task builds a new session
//!   and announces it ([`SessionEvent::Reconnected`] with a new generation) so that owners
//!   re-register ephemerals and re-acquire locks;
//! * [`ZkClient::close`] closes the session and waits for the server to confirm;
//! * [`ZkClient::reconfigure`] moves it to new servers, chroot or TLS settings (a changed
//!   `zookeeper-servers`) without a restart ([`supervisor`] does the work);
//! * a chroot that does not exist yet is created by the first write that needs it, as
//!   kazoo does (only the chroot node itself: its parent must exist);
//! * [`ZkClient::pending_requests`] counts the calls waiting for an answer (the
//!   `zk.client.connection_queue` gauge).

mod supervisor;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use zookeeper_client as zkc;

use super::error::{ZkError, ZkResult};
use super::settings::ZkSettings;
use crate::sync::RwLockExt;

pub use zookeeper_client::{OneshotWatcher, PersistentWatcher, Stat};

/// A change of the logical connection, broadcast to subscribers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// The connection is (again) up within the same session: ephemerals and locks held.
    Connected,
    /// The connection dropped; the session may still survive (kazoo SUSPENDED).
    Suspended,
    /// The session expired (kazoo LOST): ephemerals and locks of it are gone or going.
    Lost,
    /// A new session with this generation is up; re-create ephemerals and locks.
    Reconnected(u64),
}

/// The state of the logical connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connected.
    Connected,
    /// Disconnected, session may survive.
    Suspended,
    /// Session expired, a new one is being built.
    Lost,
    /// [`ZkClient::close`] was called.
    Closed,
}

/// Current connection state and session generation (1 for the first session, +1 for
/// every replacement after expiry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    /// The state.
    pub state: ConnectionState,
    /// The generation of the current (or last) session.
    pub generation: u64,
}

/// How a znode is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateKind {
    /// Persistent.
    Persistent,
    /// Ephemeral (removed when the session ends).
    Ephemeral,
    /// Persistent; ZooKeeper appends a 10-digit sequence to the name.
    PersistentSequential,
    /// Ephemeral; ZooKeeper appends a 10-digit sequence to the name.
    EphemeralSequential,
}

impl CreateKind {
    fn mode(self) -> zkc::CreateMode {
        match self {
            CreateKind::Persistent => zkc::CreateMode::Persistent,
            CreateKind::Ephemeral => zkc::CreateMode::Ephemeral,
            CreateKind::PersistentSequential => zkc::CreateMode::PersistentSequential,
            CreateKind::EphemeralSequential => zkc::CreateMode::EphemeralSequential,
        }
    }

    fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateKind::PersistentSequential | CreateKind::EphemeralSequential
        )
    }
}

/// One operation of an atomic [`ZkClient::multi`].
#[derive(Clone, Debug)]
pub enum Op {
    /// Fails the transaction unless `path` has `version`.
    Check { path: String, version: i32 },
    /// Creates `path` (no parents are created).
    Create {
        path: String,
        data: Vec<u8>,
        kind: CreateKind,
    },
    /// Sets data, optionally guarded by version.
    Set {
        path: String,
        data: Vec<u8>,
        version: Option<i32>,
    },
    /// Deletes, optionally guarded by version.
    Delete { path: String, version: Option<i32> },
}

impl Op {
    fn path(&self) -> &str {
        match self {
            Op::Check { path, .. }
            | Op::Create { path, .. }
            | Op::Set { path, .. }
            | Op::Delete { path, .. } => path,
        }
    }
}

/// Result of one operation of a successful [`ZkClient::multi`].
#[derive(Clone, Debug)]
pub enum OpResult {
    /// Check passed.
    Check,
    /// Created; the full path (with sequence for sequential creates).
    Create { path: String, stat: Stat },
    /// Set; new stat.
    Set { stat: Stat },
    /// Deleted.
    Delete,
}

/// One read of a [`ZkClient::multi_read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// Data and stat of the path.
    Data(String),
    /// Children of the path.
    Children(String),
}

impl Read {
    /// The path read.
    pub fn path(&self) -> &str {
        match self {
            Read::Data(p) | Read::Children(p) => p,
        }
    }
}

/// The answer to one [`Read`]; `None` when the znode does not exist.
#[derive(Clone, Debug)]
pub enum ReadResult {
    /// For [`Read::Data`].
    Data(Option<(Vec<u8>, Stat)>),
    /// For [`Read::Children`].
    Children(Option<Vec<String>>),
}

/// What [`ZkClient::reconfigure`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconfigured {
    /// Same servers, chroot and TLS files: the session stays; changed timeouts apply to
    /// the next session.
    Unchanged,
    /// The new servers answer for the same ensemble (the same `/nodepool` znode) under
    /// the same chroot: the session stays; the new list is used for the next session.
    SameEnsemble,
    /// A new session on the new settings replaced the old one, which was closed (its
    /// ephemeral nodes and locks went with it). Owners see [`SessionEvent::Lost`] and
    /// [`SessionEvent::Reconnected`] with this generation, as after a session expiry.
    Moved {
        /// The generation of the new session.
        generation: u64,
    },
    /// The session was lost and is being rebuilt: the rebuild uses the new settings.
    NextSession,
}

struct Session {
    client: zkc::Client,
    /// The same session without chroot (creates a missing chroot node).
    root: zkc::Client,
    /// The normalized chroot the session was opened with.
    chroot: Option<String>,
    generation: u64,
}

struct Inner {
    /// The settings every new session is opened with (the latest of
    /// [`ZkClient::reconfigure`]).
    settings: RwLock<ZkSettings>,
    session: RwLock<Option<Arc<Session>>>,
    status: watch::Sender<SessionStatus>,
    events: broadcast::Sender<SessionEvent>,
    cancel: CancellationToken,
    commands: mpsc::UnboundedSender<supervisor::Command>,
    /// Calls issued and not yet answered.
    in_flight: AtomicUsize,
}

impl Inner {
    fn settings(&self) -> ZkSettings {
        self.settings.read_or_recover().clone()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Counts one call in [`Inner::in_flight`] while it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A cloneable handle on one logical ZooKeeper connection (all clones share the session).
#[derive(Clone)]
pub struct ZkClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ZkClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkClient")
            .field("hosts", &self.inner.settings().connect_string())
            .field("status", &*self.inner.status.borrow())
            .finish()
    }
}

const ACLS: zkc::Acls<'static> = zkc::Acls::anyone_all();
const RETRY_PAUSE: Duration = Duration::from_millis(50);
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Connects once (fails eagerly when no server answers).
async fn connect_once(settings: &ZkSettings) -> ZkResult<zkc::Client> {
    let hosts = settings.connect_string();
    let connect_err = |reason: String| ZkError::Connect {
        hosts: hosts.clone(),
        reason,
    };
    if settings.hosts.is_empty() {
        return Err(connect_err("no ZooKeeper servers configured".into()));
    }
    let mut connector = zkc::Client::connector()
        .with_session_timeout(settings.session_timeout)
        .with_fail_eagerly();
    let cs = settings.client_connect_string();
    // Bound the attempt: the crate may block for the session timeout in a TLS handshake.
    let limit = settings.session_timeout + Duration::from_secs(2);
    let res = if let Some(tls) = &settings.tls {
        let read = |what: &'static str, p: &std::path::Path| {
            std::fs::read_to_string(p).map_err(|e| ZkError::Tls {
                what,
                path: p.display().to_string(),
                reason: e.to_string(),
            })
        };
        let ca = read("CA file", &tls.ca)?;
        let cert = read("certificate file", &tls.cert)?;
        let key = read("key file", &tls.key)?;
        let tls_err = |what: &'static str, p: &std::path::Path, e: zkc::Error| ZkError::Tls {
            what,
            path: p.display().to_string(),
            reason: e.to_string(),
        };
        let opts = zkc::TlsOptions::new()
            .with_pem_ca(&ca)
            .map_err(|e| tls_err("CA file", &tls.ca, e))?
            .with_pem_identity(&cert, &key)
            .map_err(|e| tls_err("certificate/key", &tls.cert, e))?;
        connector = connector.with_tls(opts);
        tokio::time::timeout(limit, connector.secure_connect(&cs)).await
    } else {
        tokio::time::timeout(limit, connector.connect(&cs)).await
    };
    match res {
        Err(_) => Err(connect_err(format!("no session within {limit:?}"))),
        Ok(Err(e)) => Err(connect_err(e.to_string())),
        Ok(Ok(c)) => Ok(c),
    }
}

/// Opens a session with `settings` as generation `generation`; warns (like kazoo) when
/// its chroot does not exist yet.
async fn open_session(settings: &ZkSettings, generation: u64) -> ZkResult<Session> {
    let client = connect_once(settings).await?;
    let chroot = settings.normalized_chroot();
    let root = client.clone().chroot("/").unwrap_or_else(|same| same);
    if let Some(c) = &chroot {
        if let Ok(Ok(None)) =
            tokio::time::timeout(settings.request_timeout, root.check_stat(c)).await
        {
            // Its own target, so that the CLI (which hides this module's connection
            // retries) shows it, as Python's prints kazoo's warning.
            warn!(target: "nodepool_shared::zk::chroot",
                "the ZooKeeper chroot {c} does not exist; the first write creates it \
                 (its parent must exist), reads find nothing until then");
        }
    }
    Ok(Session {
        client,
        root,
        chroot,
        generation,
    })
}

impl ZkClient {
    /// Connects (retrying every second up to `settings.connect_timeout`, forever if
    /// `None`) and starts the session supervisor. Must be called inside a tokio runtime.
    pub async fn connect(settings: ZkSettings) -> ZkResult<ZkClient> {
        let deadline = settings.connect_timeout.map(|t| Instant::now() + t);
        let session = loop {
            match open_session(&settings, 1).await {
                Ok(s) => break s,
                Err(e) => {
                    if matches!(e, ZkError::Tls { .. }) {
                        return Err(e);
                    }
                    if deadline.is_some_and(|d| Instant::now() + RECONNECT_PAUSE > d) {
                        return Err(e);
                    }
                    warn!("ZooKeeper connect failed, retrying: {e}");
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
        };
        info!(
            hosts = %settings.connect_string(),
            session = ?session.client.session_id(),
            "connected to ZooKeeper"
        );
        let state_watcher = session.client.state_watcher();
        let (status, _) = watch::channel(SessionStatus {
            state: ConnectionState::Connected,
            generation: 1,
        });
        let (events, _) = broadcast::channel(64);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            settings: RwLock::new(settings.clone()),
            session: RwLock::new(Some(Arc::new(session))),
            status,
            events,
            cancel: CancellationToken::new(),
            commands,
            in_flight: AtomicUsize::new(0),
        });
        tokio::spawn(
            supervisor::Supervisor::new(&inner, commands_rx, state_watcher, settings).run(),
        );
        Ok(ZkClient { inner })
    }

    /// Moves the client to `settings` (a reloaded `zookeeper-servers`, chroot or TLS
    /// configuration) without a restart, and says what it did:
    ///
    /// * servers, chroot and TLS files unchanged → [`Reconfigured::Unchanged`];
    /// * the new servers are the same ensemble under the same chroot → the session
    ///   stays ([`Reconfigured::SameEnsemble`]), so no lock is lost;
    /// * otherwise a session is opened on the new settings and replaces the old one,
    ///   which is closed ([`Reconfigured::Moved`]): as after a session expiry, owners
    ///   re-create their ephemeral records, re-take their locks and reload their caches;
    /// * the session being rebuilt after a loss → [`Reconfigured::NextSession`].
    ///
    /// When the new servers cannot be reached, the error is returned, the client stays
    /// on its current session and keeps trying to move in the background.
    pub async fn reconfigure(&self, settings: ZkSettings) -> ZkResult<Reconfigured> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(supervisor::Command::Reconfigure { settings, reply })
            .map_err(|_| ZkError::Closed)?;
        answer.await.map_err(|_| ZkError::Closed)?
    }

    /// Calls issued and not yet answered (they pile up while ZooKeeper is slow or
    /// unreachable): Nodepool's `zk.client.connection_queue`.
    pub fn pending_requests(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// The settings new sessions are opened with: those of [`Self::connect`], or of the
    /// latest [`Self::reconfigure`].
    pub fn settings(&self) -> ZkSettings {
        self.inner.settings()
    }

    /// Current state and generation.
    pub fn status(&self) -> SessionStatus {
        *self.inner.status.borrow()
    }

    /// Generation of the current session (1 = first session).
    pub fn generation(&self) -> u64 {
        self.status().generation
    }

    /// A watch on the connection status (always holds the latest value).
    pub fn watch_status(&self) -> watch::Receiver<SessionStatus> {
        self.inner.status.subscribe()
    }

    /// A broadcast of session events (lossy if the receiver lags; use
    /// [`Self::watch_status`] for the latest state).
    pub fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.inner.events.subscribe()
    }

    /// Waits until connected or `timeout` elapses; returns whether connected.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.watch_status();
        tokio::time::timeout(
            timeout,
            rx.wait_for(|s| s.state == ConnectionState::Connected),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// The id of the current session (the `ephemeralOwner` of the ephemeral znodes it
    /// creates); `None` once closed.
    pub fn session_id(&self) -> Option<i64> {
        self.current().ok().map(|s| s.client.session_id().0)
    }

    /// The id and password of the current session (for tests that force expiry).
    pub fn session_info(&self) -> Option<zkc::SessionInfo> {
        self.current().ok().map(|s| s.client.session().clone())
    }

    /// Closes the session and waits (bounded) until the server confirmed. Ephemeral nodes
    /// disappear immediately. Later calls fail with [`ZkError::Closed`].
    pub async fn close(&self) {
        self.inner.cancel.cancel();
        let session = self.inner.session.write().unwrap().take();
        let _ = self.inner.status.send_replace(SessionStatus {
            state: ConnectionState::Closed,
            generation: self.generation(),
        });
        if let Some(session) = session {
            let mut watcher = session.client.state_watcher();
            drop(session);
            // Other clones of the library client (in-flight calls) may delay this; bound it.
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    if watcher.peek_state().is_terminated() {
                        break;
                    }
                    if watcher.changed().await.is_terminated() {
                        break;
                    }
                }
            })
            .await;
        }
    }

    fn request_timeout(&self) -> Duration {
        self.inner.settings.read_or_recover().request_timeout
    }

    fn in_flight(&self) -> InFlight<'_> {
        InFlight::new(&self.inner.in_flight)
    }

    fn current(&self) -> ZkResult<Arc<Session>> {
        self.inner
            .session
            .read()
            .unwrap()
            .clone()
            .ok_or(ZkError::Closed)
    }

    fn timeout_err(&self, op: &'static str, path: &str) -> ZkError {
        ZkError::Timeout {
            op,
            path: path.to_string(),
            timeout: self.request_timeout(),
        }
    }

    /// After a retryable failure: pause or wait for a new session; false = give up.
    async fn before_retry(&self, err: &ZkError, session: &Session, deadline: Instant) -> bool {
        match err {
            ZkError::ConnectionLoss { .. } => {
                if Instant::now() + RETRY_PAUSE >= deadline {
                    return false;
                }
                tokio::time::sleep(RETRY_PAUSE).await;
                true
            }
            ZkError::SessionExpired { .. } => {
                let gen = session.generation;
                let mut rx = self.watch_status();
                let ok = tokio::time::timeout_at(
                    deadline,
                    rx.wait_for(|s| s.generation > gen || s.state == ConnectionState::Closed),
                )
                .await
                .is_ok();
                ok && self.status().state != ConnectionState::Closed
            }
            _ => false,
        }
    }
}

/// Runs a read-only call, retrying on connection loss and across a session replacement
/// until the request timeout.
macro_rules! read_call {
    ($self:ident, $op:expr, $path:expr, |$c:ident| $body:expr) => {
        read_call!($self, $op, $path, |$c, _generation| $body)
    };
    // `$g`: the generation of the session the call ran in (a retry may run it in a newer
    // session than the one current when the call began).
    ($self:ident, $op:expr, $path:expr, |$c:ident, $g:ident| $body:expr) => {{
        let _in_flight = $self.in_flight();
        let deadline = Instant::now() + $self.request_timeout();
        loop {
            let session = $self.current()?;
            let $c = &session.client;
            let $g = session.generation;
            match tokio::time::timeout_at(deadline, $body).await {
                Err(_) => break Err($self.timeout_err($op, $path)),
                Ok(Ok(v)) => break Ok(v),
                Ok(Err(e)) => {
                    let err = ZkError::from_client($op, $path, e);
                    if !$self.before_retry(&err, &session, deadline).await {
                        break Err(err);
                    }
                }
            }
        }
    }};
}

/// Runs a call once, bounded by the request timeout.
macro_rules! write_call {
    ($self:ident, $op:expr, $path:expr, |$c:ident| $body:expr) => {{
        let _in_flight = $self.in_flight();
        let session = $self.current()?;
        let $c = &session.client;
        match tokio::time::timeout($self.request_timeout(), $body).await {
            Err(_) => Err($self.timeout_err($op, $path)),
            Ok(r) => r.map_err(|e| ZkError::from_client($op, $path, e)),
        }
    }};
}

impl ZkClient {
    /// Data and stat of `path`; `None` if it does not exist.
    pub async fn get(&self, path: &str) -> ZkResult<Option<(Vec<u8>, Stat)>> {
        let r: ZkResult<(Vec<u8>, Stat)> = read_call!(self, "get", path, |c| c.get_data(path));
        none_if_missing(r)
    }

    /// Children names of `path` (unsorted); `None` if it does not exist.
    pub async fn get_children(&self, path: &str) -> ZkResult<Option<Vec<String>>> {
        let r = read_call!(self, "get_children", path, |c| c.get_children(path));
        Ok(none_if_missing(r)?.map(|(children, _)| children))
    }

    /// Children names and stat of `path`; `None` if it does not exist.
    pub async fn get_children_stat(&self, path: &str) -> ZkResult<Option<(Vec<String>, Stat)>> {
        let r = read_call!(self, "get_children", path, |c| c.get_children(path));
        none_if_missing(r)
    }

    /// Stat of `path`; `None` if it does not exist.
    pub async fn exists(&self, path: &str) -> ZkResult<Option<Stat>> {
        read_call!(self, "exists", path, |c| c.check_stat(path))
    }

    /// Data of `path` plus a one-shot watch on it; `None` (and no watch) if missing.
    pub async fn get_and_watch(
        &self,
        path: &str,
    ) -> ZkResult<Option<(Vec<u8>, Stat, OneshotWatcher)>> {
        none_if_missing(read_call!(self, "get", path, |c| c.get_and_watch_data(path)))
    }

    /// Stat of `path` plus a one-shot watch that fires on create/delete/change, and the
    /// generation of the session the watch belongs to. A call that met a session loss is
    /// retried in the next session, so the watch may belong to a newer session than the
    /// caller's ephemerals: a lock waiter compares the two, or it would wait on a
    /// predecessor while its own contender is gone.
    pub async fn exists_and_watch(
        &self,
        path: &str,
    ) -> ZkResult<(Option<Stat>, OneshotWatcher, u64)> {
        read_call!(self, "exists", path, |c, generation| async move {
            let (stat, watcher) = c.check_and_watch_stat(path).await?;
            Ok((stat, watcher, generation))
        })
    }

    /// Children of `path` plus a one-shot child watch; `None` if missing.
    pub async fn get_children_and_watch(
        &self,
        path: &str,
    ) -> ZkResult<Option<(Vec<String>, OneshotWatcher)>> {
        none_if_missing(read_call!(self, "get_children", path, |c| c
            .list_and_watch_children(path)))
    }

    /// Adds a persistent recursive watch on `path` (ZooKeeper ≥ 3.6); returns the watcher
    /// and the session generation it belongs to. The watcher ends with a session event
    /// (`Expired`/`Closed`) when its session ends; never poll it after that.
    pub async fn watch_recursive(&self, path: &str) -> ZkResult<(PersistentWatcher, u64)> {
        let _in_flight = self.in_flight();
        let deadline = Instant::now() + self.request_timeout();
        loop {
            let session = self.current()?;
            let fut = session
                .client
                .watch(path, zkc::AddWatchMode::PersistentRecursive);
            match tokio::time::timeout_at(deadline, fut).await {
                Err(_) => return Err(self.timeout_err("add_watch", path)),
                Ok(Ok(w)) => return Ok((w, session.generation)),
                Ok(Err(e)) => {
                    let err = ZkError::from_client("add_watch", path, e);
                    if !self.before_retry(&err, &session, deadline).await {
                        return Err(err);
                    }
                }
            }
        }
    }

    /// Creates `path` and returns the actual path (with the 10-digit sequence appended
    /// for sequential kinds). With `makepath`, missing parents are created (persistent,
    /// empty), like kazoo's `create(..., makepath=True)`.
    pub async fn create(
        &self,
        path: &str,
        data: &[u8],
        kind: CreateKind,
        makepath: bool,
    ) -> ZkResult<String> {
        let opts = kind.mode().with_acls(ACLS);
        let mut made_parent = false;
        loop {
            let r = write_call!(self, "create", path, |c| c.create(path, data, &opts));
            match r {
                Ok((_, seq)) => {
                    return Ok(if kind.is_sequential() {
                        format!("{path}{seq}")
                    } else {
                        path.to_string()
                    })
                }
                Err(ZkError::NoNode(_)) if makepath && !made_parent => {
                    made_parent = true;
                    // A top-level path's parent is the chroot, which may be missing too.
                    self.ensure_path(parent_of(path).unwrap_or("/")).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates a persistent znode (parents created as needed).
    pub async fn create_persistent(&self, path: &str, data: &[u8]) -> ZkResult<String> {
        self.create(path, data, CreateKind::Persistent, true).await
    }

    /// Creates an ephemeral znode (parents created as needed).
    pub async fn create_ephemeral(&self, path: &str, data: &[u8]) -> ZkResult<String> {
        self.create(path, data, CreateKind::Ephemeral, true).await
    }

    /// Creates a sequential znode `prefix<seq10>` (parents created as needed); returns the
    /// full path.
    pub async fn create_sequential(
        &self,
        prefix: &str,
        data: &[u8],
        ephemeral: bool,
    ) -> ZkResult<String> {
        let kind = if ephemeral {
            CreateKind::EphemeralSequential
        } else {
            CreateKind::PersistentSequential
        };
        self.create(prefix, data, kind, true).await
    }

    /// Creates `path` and all missing parents (persistent, empty data); no error if it
    /// exists. Like kazoo's `ensure_path`, this also creates a missing chroot node when
    /// the chroot's parent exists ([`ZkError::NoChroot`] otherwise).
    pub async fn ensure_path(&self, path: &str) -> ZkResult<()> {
        if path == "/" || path.is_empty() {
            return self.ensure_chroot().await;
        }
        let opts = zkc::CreateMode::Persistent.with_acls(ACLS);
        let made = read_call!(self, "ensure_path", path, |c| c.mkdir(path, &opts));
        match made {
            // mkdir creates every missing parent below the chroot: NoNode means the
            // chroot itself is missing.
            Err(ZkError::NoNode(_)) if self.current()?.chroot.is_some() => {
                self.ensure_chroot().await?;
                read_call!(self, "ensure_path", path, |c| c.mkdir(path, &opts))
            }
            other => other,
        }
    }

    /// Creates the chroot node if it is missing (kazoo creates it on `ensure_path("/")`):
    /// only the chroot node itself, so its parent must exist.
    async fn ensure_chroot(&self) -> ZkResult<()> {
        let session = self.current()?;
        let Some(chroot) = session.chroot.clone() else {
            return Ok(());
        };
        let opts = zkc::CreateMode::Persistent.with_acls(ACLS);
        let _in_flight = self.in_flight();
        let created = tokio::time::timeout(
            self.request_timeout(),
            session.root.create(&chroot, b"", &opts),
        )
        .await;
        match created {
            Err(_) => Err(self.timeout_err("create", &chroot)),
            Ok(Ok(_)) => {
                info!(%chroot, "created the ZooKeeper chroot");
                Ok(())
            }
            Ok(Err(zkc::Error::NodeExists)) => Ok(()),
            Ok(Err(zkc::Error::NoNode)) => Err(ZkError::NoChroot {
                parent: parent_of(&chroot).unwrap_or("/").to_string(),
                chroot,
            }),
            Ok(Err(e)) => Err(ZkError::from_client("create", &chroot, e)),
        }
    }

    /// Sets data (guarded by `version` if given); returns the new stat.
    pub async fn set(&self, path: &str, data: &[u8], version: Option<i32>) -> ZkResult<Stat> {
        write_call!(self, "set", path, |c| c.set_data(path, data, version))
    }

    /// Deletes `path` (guarded by `version` if given). Missing → [`ZkError::NoNode`].
    pub async fn delete(&self, path: &str, version: Option<i32>) -> ZkResult<()> {
        write_call!(self, "delete", path, |c| c.delete(path, version))
    }

    /// Deletes `path` and everything below it, children first (kazoo
    /// `delete(recursive=True)`); a missing node is not an error. Children that appear
    /// meanwhile (e.g. lock contenders) are deleted too.
    pub async fn delete_recursive(&self, path: &str) -> ZkResult<()> {
        for _ in 0..20 {
            // Depth-first listing, then delete deepest first.
            let mut order = Vec::new();
            let mut stack = vec![path.to_string()];
            while let Some(p) = stack.pop() {
                if let Some(children) = self.get_children(&p).await? {
                    for c in children {
                        stack.push(join(&p, &c));
                    }
                    order.push(p);
                }
            }
            order.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
            let mut retry = false;
            for p in &order {
                match self.delete(p, None).await {
                    Ok(()) | Err(ZkError::NoNode(_)) => {}
                    Err(ZkError::NotEmpty(_)) => retry = true,
                    Err(e) => return Err(e),
                }
            }
            if !retry {
                return Ok(());
            }
        }
        Err(ZkError::NotEmpty(path.to_string()))
    }

    /// Runs `reads` in one `multiRead` request (ZooKeeper 3.6+): hundreds of reads for the
    /// cost of one round trip, each answered as of the same moment. Retried like any
    /// read; a znode that does not exist is `None` in its result.
    pub async fn multi_read(&self, reads: &[Read]) -> ZkResult<Vec<ReadResult>> {
        let Some(first) = reads.first() else {
            return Ok(Vec::new());
        };
        let first = first.path();
        let results = read_call!(self, "multi_read", first, |c| async {
            let mut r = c.new_multi_reader();
            for read in reads {
                match read {
                    Read::Data(p) => r.add_get_data(p)?,
                    Read::Children(p) => r.add_get_children(p)?,
                }
            }
            r.commit().await
        })?;
        if results.len() != reads.len() {
            return Err(ZkError::Corrupt(format!(
                "multi-read from {first}: {} answers to {} reads",
                results.len(),
                reads.len()
            )));
        }
        reads
            .iter()
            .zip(results)
            .map(|(read, result)| match (read, result) {
                (Read::Data(_), zkc::MultiReadResult::Data { data, stat }) => {
                    Ok(ReadResult::Data(Some((data, stat))))
                }
                (Read::Children(_), zkc::MultiReadResult::Children { children }) => {
                    Ok(ReadResult::Children(Some(children)))
                }
                (
                    Read::Data(_),
                    zkc::MultiReadResult::Error {
                        err: zkc::Error::NoNode,
                    },
                ) => Ok(ReadResult::Data(None)),
                (
                    Read::Children(_),
                    zkc::MultiReadResult::Error {
                        err: zkc::Error::NoNode,
                    },
                ) => Ok(ReadResult::Children(None)),
                (read, zkc::MultiReadResult::Error { err }) => {
                    Err(ZkError::from_client("multi_read", read.path(), err))
                }
                (read, other) => Err(ZkError::Corrupt(format!(
                    "multi-read of {}: unexpected answer {other:?}",
                    read.path()
                ))),
            })
            .collect()
    }

    /// Applies all `ops` atomically; on failure nothing is applied and the error names the
    /// failing operation's path.
    pub async fn multi(&self, ops: &[Op]) -> ZkResult<Vec<OpResult>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let _in_flight = self.in_flight();
        let session = self.current()?;
        let mut w = session.client.new_multi_writer();
        let first = ops[0].path().to_string();
        let bad = |op: &Op, e: zkc::Error| ZkError::from_client("multi", op.path(), e);
        for op in ops {
            match op {
                Op::Check { path, version } => w.add_check_version(path, *version),
                Op::Create { path, data, kind } => {
                    w.add_create(path, data, &kind.mode().with_acls(ACLS))
                }
                Op::Set {
                    path,
                    data,
                    version,
                } => w.add_set_data(path, data, *version),
                Op::Delete { path, version } => w.add_delete(path, *version),
            }
            .map_err(|e| bad(op, e))?;
        }
        let fut = w.commit();
        let r = tokio::time::timeout(self.request_timeout(), fut).await;
        let results = match r {
            Err(_) => return Err(self.timeout_err("multi", &first)),
            Ok(Err(zkc::MultiWriteError::OperationFailed { index, source })) => {
                return Err(ZkError::from_client("multi", ops[index].path(), source))
            }
            Ok(Err(zkc::MultiWriteError::RequestFailed { source })) => {
                return Err(ZkError::from_client("multi", &first, source))
            }
            Ok(Ok(r)) => r,
        };
        Ok(results
            .into_iter()
            .map(|r| match r {
                zkc::MultiWriteResult::Check => OpResult::Check,
                zkc::MultiWriteResult::Delete => OpResult::Delete,
                zkc::MultiWriteResult::SetData { stat } => OpResult::Set { stat },
                zkc::MultiWriteResult::Create { path, stat } => OpResult::Create { path, stat },
                _ => OpResult::Check,
            })
            .collect())
    }
}

fn none_if_missing<T>(r: ZkResult<T>) -> ZkResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(ZkError::NoNode(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `parent/child` (handles the root).
pub fn join(parent: &str, child: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// Parent path of `path` (`None` for top-level paths); for a sequential prefix ending in
/// `/` it is the directory the node goes into.
pub fn parent_of(path: &str) -> Option<&str> {
    let i = path.rfind('/')?;
    if i == 0 {
        None
    } else {
        Some(&path[..i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(parent_of("/a/b/c"), Some("/a/b"));
        assert_eq!(parent_of("/a"), None);
        assert_eq!(parent_of("/nodepool/nodes/"), Some("/nodepool/nodes"));
    }
}
