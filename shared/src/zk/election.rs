//! [`Election`]: kazoo's `Election` recipe, i.e. a [`ZkLock`] whose contenders carry the
//! identifier `<hostname>-<pid>`.
//!
//! Python launchers elect the one that emits the global statsd gauges at
//! `/nodepool/elections/stats`; ours must take part in the same election, so they queue in
//! the same lock dir with the same names and data. Unlike kazoo we tell the leader when its
//! session (and so its leadership) is lost, and campaign again in the next session.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::client::ZkClient;
use super::error::{ZkError, ZkResult};
use super::lock::{contender_identifiers, ZkLock};

/// Pause before campaigning again after an error.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// The identifier kazoo-based Nodepool writes into election contenders: `<hostname>-<pid>`.
pub fn default_identifier() -> String {
    format!(
        "{}-{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    )
}

/// One participant of the election at a dir (e.g. `/nodepool/elections/stats`).
#[derive(Debug)]
pub struct Election {
    lock: ZkLock,
}

impl Election {
    /// A participant with the default identifier `<hostname>-<pid>`.
    pub fn new(client: &ZkClient, dir: &str) -> Election {
        Self::with_identifier(client, dir, &default_identifier())
    }

    /// A participant with the given identifier.
    pub fn with_identifier(client: &ZkClient, dir: &str, identifier: &str) -> Election {
        Election {
            lock: ZkLock::new(client, dir, identifier.as_bytes()),
        }
    }

    /// Waits until we are the leader (cancellation-safe: dropping the future leaves the
    /// queue). Connection trouble and session loss are ridden out; other errors returned.
    pub async fn campaign(&mut self) -> ZkResult<()> {
        loop {
            match self.lock.acquire(None).await {
                Ok(true) => {
                    info!(dir = self.lock.dir(), "elected leader");
                    return Ok(());
                }
                Ok(false) => {}
                Err(ZkError::Closed) => return Err(ZkError::Closed),
                Err(e) if e.is_connection_problem() => {
                    warn!(dir = self.lock.dir(), "election: {e}; campaigning again");
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// True while we lead (our lock is held in the current session).
    pub fn is_leader(&self) -> bool {
        self.lock.is_held()
    }

    /// Completes when the leadership is lost with its session (at once if not leading).
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        self.lock.lost()
    }

    /// Steps down (deletes our contender).
    pub async fn resign(&mut self) -> ZkResult<()> {
        self.lock.release().await
    }

    /// The identifiers of all participants, leader first (kazoo `Election.contenders()`).
    pub async fn contenders(&self) -> ZkResult<Vec<String>> {
        contender_identifiers(self.lock.client(), self.lock.dir()).await
    }

    /// Campaigns and runs `leader` while leading, until `cancel` fires. `leader` gets a
    /// token that is cancelled when the leadership is lost (or `cancel` fires) and must
    /// return soon after. When it returns, we resign and campaign again (Nodepool runs its
    /// stats election in such a loop), so a new session leads to a new campaign.
    pub async fn run<F, Fut>(&mut self, cancel: &CancellationToken, mut leader: F) -> ZkResult<()>
    where
        F: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                r = self.campaign() => r?,
            }
            let token = cancel.child_token();
            let lost = self.lost();
            let work = leader(token.clone());
            tokio::pin!(work);
            tokio::select! {
                _ = &mut work => {}
                _ = lost => {
                    warn!(dir = self.lock.dir(), "leadership lost with the ZooKeeper session");
                    token.cancel();
                    work.await;
                }
            }
            token.cancel();
            if let Err(e) = self.resign().await {
                warn!(dir = self.lock.dir(), "election: cannot resign: {e}");
            }
            if cancel.is_cancelled() {
                return Ok(());
            }
        }
    }
}
