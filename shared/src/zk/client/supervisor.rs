//! The session supervisor of a [`ZkClient`](super::ZkClient): one task that owns every
//! session change. It follows the current session's state (publishing it as
//! [`SessionStatus`] and [`SessionEvent`]s), builds a new session after an expiry, and
//! moves the client to new settings on [`ZkClient::reconfigure`](super::ZkClient::reconfigure).
//!
//! A move opens the new session first, so a typo in the new configuration never costs
//! the working session. If the new servers turn out to be the same ensemble (they serve
//! the very same `/nodepool` znode — same creation zxid and time — under the same
//! chroot), the old session stays: nothing a daemon holds is lost, as with kazoo's
//! `set_hosts`. Otherwise the new session replaces the old one, which is closed so its
//! ephemeral nodes and locks vanish from the old ensemble at once; everything tied to a
//! session (component records, locks, caches, watches) follows the generation bump as it
//! does after an expiry. A move that cannot reach the new servers is retried in the
//! background while the old session keeps working.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zookeeper_client as zkc;

use super::{
    open_session, ConnectionState, Inner, Reconfigured, Session, SessionEvent, SessionStatus,
    RECONNECT_PAUSE,
};
use crate::model::paths;
use crate::sync::RwLockExt;
use crate::zk::error::{ZkError, ZkResult};
use crate::zk::settings::ZkSettings;

/// Pause between attempts to reach new servers that did not answer.
const MOVE_RETRY: Duration = Duration::from_secs(5);
/// Bound of each read that compares the old and the new ensemble.
const IDENTITY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a replaced session may take to confirm its close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A request to the supervisor.
pub(super) enum Command {
    /// Move to these settings.
    Reconfigure {
        settings: ZkSettings,
        reply: oneshot::Sender<ZkResult<Reconfigured>>,
    },
}

/// Why following a session stopped.
enum Ended {
    /// The client was closed or dropped.
    Stop,
    /// The session expired.
    Lost,
}

/// True when `a` and `b` reach the same servers the same way (timeouts aside).
fn same_target(a: &ZkSettings, b: &ZkSettings) -> bool {
    let mut ha = a.hosts.clone();
    let mut hb = b.hosts.clone();
    ha.sort();
    hb.sort();
    ha == hb && a.normalized_chroot() == b.normalized_chroot() && a.tls == b.tls
}

pub(super) struct Supervisor {
    inner: Weak<Inner>,
    cancel: CancellationToken,
    commands: mpsc::UnboundedReceiver<Command>,
    watcher: zkc::StateWatcher,
    generation: u64,
    /// The settings the current session satisfies.
    accepted: ZkSettings,
    /// When to try again to move to the wanted settings.
    retry_at: Option<Instant>,
}

impl Supervisor {
    pub(super) fn new(
        inner: &Arc<Inner>,
        commands: mpsc::UnboundedReceiver<Command>,
        watcher: zkc::StateWatcher,
        accepted: ZkSettings,
    ) -> Supervisor {
        Supervisor {
            inner: Arc::downgrade(inner),
            cancel: inner.cancel.clone(),
            commands,
            watcher,
            generation: 1,
            accepted,
            retry_at: None,
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            match self.follow().await {
                Ended::Stop => return,
                Ended::Lost => {
                    if !self.rebuild().await {
                        return;
                    }
                }
            }
        }
    }

    /// Follows the current session until it ends; serves move requests meanwhile.
    async fn follow(&mut self) -> Ended {
        loop {
            let retry_at = self.retry_at;
            tokio::select! {
                _ = self.cancel.cancelled() => return Ended::Stop,
                state = self.watcher.changed() => {
                    if let Some(ended) = self.on_state(state) {
                        return ended;
                    }
                }
                cmd = self.commands.recv() => match cmd {
                    None => return Ended::Stop,
                    Some(Command::Reconfigure { settings, reply }) => {
                        let result = self.reconfigure(settings).await;
                        let _ = reply.send(result);
                    }
                },
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    let _ = self.try_move().await;
                }
            }
        }
    }

    /// Publishes a state change of the current session.
    fn on_state(&mut self, state: zkc::SessionState) -> Option<Ended> {
        let inner = self.inner.upgrade()?;
        let generation = self.generation;
        debug!(?state, generation, "ZooKeeper session state");
        let (cs, ev) = match state {
            zkc::SessionState::Disconnected => {
                warn!(generation, "ZooKeeper connection suspended");
                (ConnectionState::Suspended, SessionEvent::Suspended)
            }
            zkc::SessionState::SyncConnected | zkc::SessionState::ConnectedReadOnly => {
                info!(generation, "ZooKeeper connection re-established");
                (ConnectionState::Connected, SessionEvent::Connected)
            }
            zkc::SessionState::Expired | zkc::SessionState::AuthFailed => {
                warn!(generation, ?state, "ZooKeeper session lost");
                (ConnectionState::Lost, SessionEvent::Lost)
            }
            zkc::SessionState::Closed => return Some(Ended::Stop),
        };
        let _ = inner.status.send_replace(SessionStatus {
            state: cs,
            generation,
        });
        let _ = inner.events.send(ev);
        (cs == ConnectionState::Lost).then_some(Ended::Lost)
    }

    /// Records the wanted settings and moves to them if needed.
    async fn reconfigure(&mut self, settings: ZkSettings) -> ZkResult<Reconfigured> {
        let Some(inner) = self.inner.upgrade() else {
            return Err(ZkError::Closed);
        };
        *inner.settings.write_or_recover() = settings.clone();
        drop(inner);
        if same_target(&self.accepted, &settings) {
            self.accepted = settings;
            self.retry_at = None;
            return Ok(Reconfigured::Unchanged);
        }
        self.try_move().await
    }

    /// One attempt to move to the wanted settings.
    async fn try_move(&mut self) -> ZkResult<Reconfigured> {
        let Some(inner) = self.inner.upgrade() else {
            return Err(ZkError::Closed);
        };
        let wanted = inner.settings();
        let old = inner.session.read_or_recover().clone();
        let Some(old) = old else {
            return Err(ZkError::Closed);
        };
        let next = self.generation + 1;
        let opened = tokio::select! {
            _ = self.cancel.cancelled() => return Err(ZkError::Closed),
            r = open_session(&wanted, next) => r,
        };
        let new = match opened {
            Ok(s) => s,
            Err(e) => {
                warn!(hosts = %wanted.connect_string(), "cannot reach the new ZooKeeper \
                    servers: {e}; staying on {} and trying again in {MOVE_RETRY:?}",
                    self.accepted.connect_string());
                self.retry_at = Some(Instant::now() + MOVE_RETRY);
                return Err(e);
            }
        };
        self.retry_at = None;
        let connected = inner.status.borrow().state == ConnectionState::Connected;
        if connected && new.chroot == old.chroot && same_ensemble(&old, &new).await {
            info!(hosts = %wanted.connect_string(), generation = self.generation,
                "the new ZooKeeper servers are the same ensemble; keeping the session \
                 (the new list is used for the next session)");
            self.accepted = wanted;
            return Ok(Reconfigured::SameEnsemble);
        }
        if self.cancel.is_cancelled() {
            return Err(ZkError::Closed);
        }
        self.install(&inner, new, true);
        info!(from = %self.accepted.connect_string(), to = %wanted.connect_string(),
            generation = next, "moved to the new ZooKeeper servers; the old session is closed");
        self.accepted = wanted;
        close_in_background(old);
        Ok(Reconfigured::Moved { generation: next })
    }

    /// Makes `session` the current one and announces it; `replaced`: the old session is
    /// still alive and about to be closed (a move), so its loss is announced first.
    fn install(&mut self, inner: &Inner, session: Session, replaced: bool) {
        let old_generation = self.generation;
        self.generation = session.generation;
        self.watcher = session.client.state_watcher();
        debug!(generation = self.generation, session = ?session.client.session_id(), replaced,
            "new ZooKeeper session");
        *inner.session.write_or_recover() = Some(Arc::new(session));
        if replaced {
            // Owners of the old session's ephemerals learn it is gone, as after a loss.
            let _ = inner.status.send_replace(SessionStatus {
                state: ConnectionState::Lost,
                generation: old_generation,
            });
            let _ = inner.events.send(SessionEvent::Lost);
        }
        let _ = inner.status.send_replace(SessionStatus {
            state: ConnectionState::Connected,
            generation: self.generation,
        });
        let _ = inner
            .events
            .send(SessionEvent::Reconnected(self.generation));
    }

    /// Builds a new session after an expiry, forever (until closed); move requests
    /// meanwhile only change the settings the next attempt uses. False when stopped.
    async fn rebuild(&mut self) -> bool {
        loop {
            let Some(inner) = self.inner.upgrade() else {
                return false;
            };
            let settings = inner.settings();
            drop(inner);
            let opened = tokio::select! {
                _ = self.cancel.cancelled() => return false,
                r = open_session(&settings, self.generation + 1) => r,
            };
            match opened {
                Ok(session) => {
                    let Some(inner) = self.inner.upgrade() else {
                        return false;
                    };
                    if self.cancel.is_cancelled() {
                        return false;
                    }
                    info!(generation = session.generation, session = ?session.client.session_id(),
                        "new ZooKeeper session");
                    self.install(&inner, session, false);
                    self.accepted = settings;
                    self.retry_at = None;
                    return true;
                }
                Err(e) => warn!("ZooKeeper reconnect failed, retrying: {e}"),
            }
            let pause = tokio::time::sleep(RECONNECT_PAUSE);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = self.cancel.cancelled() => return false,
                    _ = &mut pause => break,
                    cmd = self.commands.recv() => match cmd {
                        None => return false,
                        Some(Command::Reconfigure { settings, reply }) => {
                            if let Some(inner) = self.inner.upgrade() {
                                *inner.settings.write_or_recover() = settings;
                            }
                            let _ = reply.send(Ok(Reconfigured::NextSession));
                        }
                    },
                }
            }
        }
    }
}

/// Whether two sessions talk to the same ensemble: both see the same `/nodepool` znode
/// (creation zxid and time). Unknown (missing, unreadable) counts as different.
async fn same_ensemble(a: &Session, b: &Session) -> bool {
    let stat = |s: &Session| {
        let fut = s.client.check_stat(paths::ROOT);
        async move {
            match tokio::time::timeout(IDENTITY_TIMEOUT, fut).await {
                Ok(Ok(Some(st))) => Some((st.czxid, st.ctime)),
                _ => None,
            }
        }
    };
    let (sa, sb) = futures::join!(stat(a), stat(b));
    matches!((sa, sb), (Some(x), Some(y)) if x == y)
}

/// Drops the last handle on a replaced session (closing it) and logs the confirmation.
fn close_in_background(session: Arc<Session>) {
    tokio::spawn(async move {
        let mut watcher = session.client.state_watcher();
        drop(session);
        let closed = tokio::time::timeout(CLOSE_WAIT, async {
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
        if closed.is_err() {
            debug!(
                "the replaced ZooKeeper session is still in use; it closes when its last call ends"
            );
        }
    });
}
