//! [`TestZk::expire_session`]: makes the server end a client's session, the way
//! ZooKeeper's and kazoo's test harnesses do: a second connection resumes the session
//! (same id and password) and closes it.
//!
//! The two connections of one session fight. When the second attaches, the server drops
//! the first; its client reconnects at once, and the server then drops the second. The
//! second's handshake may so never complete (the client library gives up with a bare
//! `Timeout` after 1.4 session timeouts), or its close may never reach the server, and
//! the session may live on. On a busy 2-core machine the close went unanswered in about a
//! third of the runs, and the handshake timed out in a few percent. So an attempt
//! whose outcome is unknown is retried, and [`TestZk::expire_session`] returns only once
//! the server has closed the session (the second connection's close was answered, or a
//! later resume is refused as expired) or the client has already moved on to a new
//! session.

use std::time::Duration;

use zookeeper_client as zkc;

use super::wait::{wait_for_within, WAIT};
use super::TestZk;
use crate::zk::ZkClient;

/// The session timeout asked for by the second connection.
const RESUME_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// What one attempt to end the session achieved.
#[derive(Debug)]
enum Attempt {
    /// The server answered the close, or says the session has expired: it is gone.
    Closed,
    /// The client runs another session already (or none, while it builds one).
    Replaced,
    /// The session may still live (the fight was lost); try again.
    Again(String),
}

impl TestZk {
    /// Ends the current session of `client` on the server, retrying while its own
    /// reconnects win the session back; panics if that does not
    /// succeed within twice [`WAIT`]. Returns once the session is gone; the client then
    /// finds it expired and opens a new one (wait for [`ZkClient::generation`] to grow
    /// if a test needs the new session).
    pub async fn expire_session(&self, client: &ZkClient) {
        let Some(target) = client.session_info() else {
            panic!("expire_session: the client has no session");
        };
        wait_for_within(
            "the server to end the client's session",
            WAIT * 2,
            || async {
                match self.end_session_once(client, &target).await {
                    Attempt::Closed | Attempt::Replaced => Some(()),
                    Attempt::Again(why) => {
                        eprintln!("expire_session: {why}; trying again");
                        None
                    }
                }
            },
        )
        .await;
    }

    /// One try: resume the session `target` on a second connection and close it.
    async fn end_session_once(&self, client: &ZkClient, target: &zkc::SessionInfo) -> Attempt {
        // By id, not generation: the client installs a new session before it publishes
        // the new generation.
        let replaced = || client.session_info().is_none_or(|s| s.id() != target.id());
        if replaced() {
            return Attempt::Replaced;
        }
        let info = target.clone();
        // Bounded by the library itself (1.4 × the session timeout), and by us.
        let hosts = self.plain_hosts();
        let connect = zkc::Client::connector()
            .with_session(info)
            .with_session_timeout(RESUME_SESSION_TIMEOUT)
            .connect(&hosts);
        let raw = match tokio::time::timeout(RESUME_SESSION_TIMEOUT * 2, connect).await {
            Err(_) => return Attempt::Again("resuming the session did not end".into()),
            // The server no longer knows the session: an earlier close landed after all.
            Ok(Err(zkc::Error::SessionExpired)) => {
                eprintln!("expire_session: the server says the session has expired");
                return Attempt::Closed;
            }
            Ok(Err(e)) => {
                return if replaced() {
                    Attempt::Replaced
                } else {
                    Attempt::Again(format!("resuming the session failed: {e}"))
                };
            }
            Ok(Ok(raw)) => raw,
        };
        let mut watcher = raw.state_watcher();
        // Dropping the last handle closes the session (the close is resent after a
        // reconnect, until answered or the library gives up).
        drop(raw);
        let ended = tokio::time::timeout(RESUME_SESSION_TIMEOUT * 2, async {
            let mut state = watcher.peek_state();
            while !state.is_terminated() {
                state = watcher.changed().await;
            }
            state
        })
        .await;
        match ended {
            Ok(zkc::SessionState::Closed) => Attempt::Closed,
            _ if replaced() => Attempt::Replaced,
            Ok(state) => Attempt::Again(format!("the second connection ended {state:?}")),
            Err(_) => Attempt::Again("closing the resumed session did not end".into()),
        }
    }
}
