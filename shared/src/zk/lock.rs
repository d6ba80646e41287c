//! [`ZkLock`]: the kazoo 2.9 `Lock` recipe, byte-compatible with Python Nodepool and Zuul.
//!
//! Nodepool, Zuul and the `nodepool` CLI lock nodes, requests and images with kazoo's recipe,
//! so ours must create the same znodes and honour theirs (kazoo 2.9's `Lock` recipe):
//! * contender = ephemeral sequential child `<uuid4 hex>__lock__<seq10>` of the lock dir,
//!   data = identifier (empty for node/request locks, `<host>-<pid>` for elections);
//! * contenders are the children matching `__lock__(-?\d{10})$`, ordered by that sequence
//!   compared as a string; the first one holds the lock;
//! * a waiter watches its immediate predecessor (FIFO, no herd);
//! * release deletes the own child; the lock dir stays.
//!
//! A lock whose dir does not exist yet (a node just created, a request nobody has
//! locked) can be taken in one round trip instead of three ([`ZkLock::expect_new_dir`]):
//! one multi creates the dir and our contender, the same znodes the recipe's
//! `ensure_path` and `create` make; nothing can stand before a contender created with
//! its dir, so the lock is ours without listing the dir. Where the dir exists (or its
//! parent does not) the recipe runs as above.
//!
//! We build on [`ZkClient`] instead of the crate's `lock()` because we need kazoo's names,
//! timeouts, cancellation cleanup and knowledge of session loss: a lock is only as good as
//! the session its ephemeral child lives in, so a held lock records the session generation
//! and [`ZkLock::is_held`] / [`ZkLock::lost`] report its loss.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::client::{join, ConnectionState, CreateKind, Op, OpResult, ZkClient};
use super::error::{ZkError, ZkResult};

/// The marker kazoo puts between the uuid prefix and the sequence.
pub const LOCK_MARKER: &str = "__lock__";

/// Pause between retries after connection trouble.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The sequence of a kazoo lock contender name (`…__lock__0000000042` → `0000000042`, also
/// `__lock__-0000000001` after counter overflow), like kazoo's `__lock__(-?\d{10})$`.
/// `None` for anything that is not a contender.
pub fn lock_sequence(name: &str) -> Option<&str> {
    let cut = name.len().checked_sub(10)?;
    if !name.is_char_boundary(cut) {
        return None;
    }
    let (head, digits) = name.split_at(cut);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if head.ends_with(LOCK_MARKER) {
        return Some(digits);
    }
    let head = head.strip_suffix('-')?;
    if head.ends_with(LOCK_MARKER) {
        Some(&name[cut - 1..])
    } else {
        None
    }
}

/// Sorts child names into kazoo contender order, dropping non-contenders.
pub fn sort_contenders(children: Vec<String>) -> Vec<String> {
    let mut c: Vec<String> = children
        .into_iter()
        .filter(|n| lock_sequence(n).is_some())
        .collect();
    c.sort_by(|a, b| lock_sequence(a).cmp(&lock_sequence(b)));
    c
}

/// The contender child names of lock dir `dir`, holder first. A missing dir has none (and,
/// unlike kazoo's `contenders()`, is not created).
pub async fn lock_contenders(client: &ZkClient, dir: &str) -> ZkResult<Vec<String>> {
    Ok(sort_contenders(
        client.get_children(dir).await?.unwrap_or_default(),
    ))
}

/// The identifiers (data, decoded lossily as UTF-8) of the contenders of `dir`, holder
/// first, like kazoo's `Lock.contenders()`; contenders that vanish meanwhile are skipped.
pub async fn contender_identifiers(client: &ZkClient, dir: &str) -> ZkResult<Vec<String>> {
    let mut out = Vec::new();
    for name in lock_contenders(client, dir).await? {
        if let Some((data, _)) = client.get(&join(dir, &name)).await? {
            out.push(String::from_utf8_lossy(&data).into_owned());
        }
    }
    Ok(out)
}

/// True if `dir` has any lock contender (someone holds or is about to hold the lock).
/// This is Nodepool's "probably locked" test; it takes no lock itself.
pub async fn is_locked(client: &ZkClient, dir: &str) -> ZkResult<bool> {
    Ok(!lock_contenders(client, dir).await?.is_empty())
}

/// Deletes the lowest-numbered contender of `dir` (Nodepool's `forceUnlockNode`, used by
/// the CLI on stuck locks). Returns the deleted child name, `None` if there was none.
pub async fn force_unlock(client: &ZkClient, dir: &str) -> ZkResult<Option<String>> {
    let Some(first) = lock_contenders(client, dir).await?.into_iter().next() else {
        return Ok(None);
    };
    match client.delete(&join(dir, &first), None).await {
        Ok(()) | Err(ZkError::NoNode(_)) => Ok(Some(first)),
        Err(e) => Err(e),
    }
}

/// Deletes every child of `dir` whose name starts with `prefix` (our own contenders);
/// errors are logged, not returned (best-effort cleanup).
async fn delete_own(client: &ZkClient, dir: &str, prefix: &str) {
    let children = match client.get_children(dir).await {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            warn!("lock {dir}: cannot list contenders for cleanup: {e}");
            return;
        }
    };
    for c in children.iter().filter(|c| c.starts_with(prefix)) {
        match client.delete(&join(dir, c), None).await {
            Ok(()) | Err(ZkError::NoNode(_)) => debug!("lock {dir}: removed own contender {c}"),
            Err(e) => warn!("lock {dir}: cannot remove own contender {c}: {e}"),
        }
    }
}

/// Removes the contenders of an acquire attempt that did not end in a held lock. Armed
/// while an attempt runs; if the attempt's future is dropped (cancelled, or an error
/// escaped) it spawns the cleanup, so no child lingers until the session ends.
struct AttemptGuard {
    client: ZkClient,
    dir: String,
    prefix: String,
    armed: bool,
}

impl AttemptGuard {
    async fn cleanup_now(mut self) {
        self.armed = false;
        delete_own(&self.client, &self.dir, &self.prefix).await;
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (client, dir, prefix) = (
                self.client.clone(),
                std::mem::take(&mut self.dir),
                std::mem::take(&mut self.prefix),
            );
            rt.spawn(async move { delete_own(&client, &dir, &prefix).await });
        }
    }
}

/// Where a [`ZkLock`] stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum LockState {
    /// Not acquired.
    Idle,
    /// Our child `node` (a name in the dir) was first, in session `generation`.
    Held { node: String, generation: u64 },
}

/// One kazoo-compatible lock on one lock dir (e.g. `/nodepool/nodes/0000000042/lock`).
///
/// Acquire with [`Self::try_acquire`] or [`Self::acquire`]; both are cancellation-safe.
/// Dropping a held lock releases it in the background (if a tokio runtime is running).
#[derive(Debug)]
pub struct ZkLock {
    client: ZkClient,
    dir: String,
    identifier: Vec<u8>,
    ensured: bool,
    /// Try the dir and contender in one multi first ([`Self::expect_new_dir`]).
    new_dir: bool,
    /// Kept while the lock is held ([`Self::keep_while_held`]).
    kept: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// The lock was taken by that multi: nobody had ever locked the dir before.
    made_dir: bool,
    state: LockState,
}

/// What one round of the acquire loop found.
enum Round {
    /// We are first: the lock is ours.
    Acquired(String, u64),
    /// Someone is ahead and we must not wait.
    Busy,
    /// Timed out while waiting.
    TimedOut,
}

impl ZkLock {
    /// A lock on `dir` with the given identifier (empty for node and request locks). No
    /// ZooKeeper traffic until acquired.
    pub fn new(client: &ZkClient, dir: &str, identifier: &[u8]) -> ZkLock {
        ZkLock {
            client: client.clone(),
            dir: dir.trim_end_matches('/').to_string(),
            identifier: identifier.to_vec(),
            ensured: false,
            new_dir: false,
            kept: None,
            made_dir: false,
            state: LockState::Idle,
        }
    }

    /// Keeps `guard` until the lock is released or dropped: a marker of the holder's
    /// own (e.g. "this launcher holds that request") that must live exactly as long as
    /// the lock, wherever the lock is handed on.
    pub fn keep_while_held(&mut self, guard: impl std::any::Any + Send + Sync) {
        self.kept = Some(Box::new(guard));
    }

    /// The lock dir most likely does not exist yet (the lock of a node just created, of a
    /// request nobody has locked): the first acquire tries to create the dir and our
    /// contender in one multi, and holds the lock at once if that works (one round trip
    /// instead of `ensure_path`, `create` and `get_children`). If the dir exists, or its
    /// parent does not, the recipe runs as usual (the parent is then created, as kazoo's
    /// `ensure_path` does).
    pub fn expect_new_dir(mut self) -> ZkLock {
        self.new_dir = true;
        self
    }

    /// True if the lock was taken by creating its dir ([`Self::expect_new_dir`]): nobody
    /// held or waited for it before, so nobody wrote what it guards under it.
    pub fn made_dir(&self) -> bool {
        self.made_dir
    }

    /// The client the lock lives in.
    pub fn client(&self) -> &ZkClient {
        &self.client
    }

    /// The lock dir.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The identifier written into our contender.
    pub fn identifier(&self) -> &[u8] {
        &self.identifier
    }

    /// Full path of our contender while held (also after the session was lost).
    pub fn node_path(&self) -> Option<String> {
        match &self.state {
            LockState::Held { node, .. } => Some(join(&self.dir, node)),
            LockState::Idle => None,
        }
    }

    /// The session generation the lock was acquired in.
    pub fn generation(&self) -> Option<u64> {
        match &self.state {
            LockState::Held { generation, .. } => Some(*generation),
            LockState::Idle => None,
        }
    }

    /// True while the lock is held: acquired, and its session neither expired nor replaced.
    /// A suspended connection (session may survive) still counts as held, like kazoo.
    pub fn is_held(&self) -> bool {
        let LockState::Held { generation, .. } = &self.state else {
            return false;
        };
        let s = self.client.status();
        s.generation == *generation
            && !matches!(s.state, ConnectionState::Lost | ConnectionState::Closed)
    }

    /// A future that completes when the lock's session is lost (expired, replaced or
    /// closed); at once if the lock is not held. Owners select on it to stop working on
    /// the locked object. It does not notice a forced unlock by another client.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.client.watch_status();
        let gen = self.generation();
        async move {
            let Some(gen) = gen else { return };
            let _ = rx
                .wait_for(|s| {
                    s.generation != gen
                        || matches!(s.state, ConnectionState::Lost | ConnectionState::Closed)
                })
                .await;
        }
    }

    /// One non-blocking attempt (kazoo `acquire(blocking=False)`): true if we hold the lock
    /// now; false (and no contender left behind) if someone else does. Connection trouble
    /// is retried up to the client's request timeout, then returned as an error.
    pub async fn try_acquire(&mut self) -> ZkResult<bool> {
        self.acquire_inner(false, None).await
    }

    /// Waits for the lock (kazoo `acquire(blocking=True, timeout)`): true once held; false
    /// if `timeout` passed first (our contender is removed). With `None` it waits forever,
    /// retrying connection trouble and re-queueing after session loss. Dropping the future
    /// removes our contender in the background.
    pub async fn acquire(&mut self, timeout: Option<Duration>) -> ZkResult<bool> {
        self.acquire_inner(true, timeout).await
    }

    async fn acquire_inner(&mut self, blocking: bool, timeout: Option<Duration>) -> ZkResult<bool> {
        if self.is_held() {
            return Ok(true);
        }
        // A lock lost with its session: its child may linger until the server expires it,
        // and would then stand before our new one.
        if let LockState::Held { node, .. } = std::mem::replace(&mut self.state, LockState::Idle) {
            let _ = self.client.delete(&join(&self.dir, &node), None).await;
        }
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        // How long connection trouble is retried before giving up.
        let retry_until = if blocking {
            deadline
        } else {
            Some(start + self.client.settings().request_timeout)
        };
        // A fresh uuid per attempt, so that a background cleanup of a cancelled attempt
        // can never touch a later one.
        let prefix = format!("{}{LOCK_MARKER}", uuid::Uuid::new_v4().simple());
        let guard = AttemptGuard {
            client: self.client.clone(),
            dir: self.dir.clone(),
            prefix: prefix.clone(),
            armed: true,
        };
        let mut create_tried = false;
        let round = loop {
            let attempt = self.round(&prefix, &mut create_tried, blocking, deadline);
            let res = match deadline {
                // Bound the ZooKeeper calls too, not only the wait for the predecessor.
                Some(d) if blocking => match tokio::time::timeout_at(d, attempt).await {
                    Ok(r) => r,
                    Err(_) => break Round::TimedOut,
                },
                _ => attempt.await,
            };
            match res {
                Ok(r) => break r,
                Err(e) if e.is_connection_problem() && !matches!(e, ZkError::Closed) => {
                    if retry_until.is_some_and(|d| Instant::now() + RETRY_PAUSE >= d) {
                        if blocking {
                            break Round::TimedOut;
                        }
                        return Err(e);
                    }
                    debug!("lock {}: retrying after {e}", self.dir);
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        };
        match round {
            Round::Acquired(node, generation) => {
                guard.disarm();
                self.state = LockState::Held { node, generation };
                Ok(true)
            }
            Round::Busy | Round::TimedOut => {
                guard.cleanup_now().await;
                Ok(false)
            }
        }
    }

    /// Creates (or, after a connection blip, finds) our contender and checks or waits on
    /// the queue until acquired, busy or timed out. Errors end the round; the caller
    /// retries connection trouble and a new round finds our child by its prefix.
    async fn round(
        &mut self,
        prefix: &str,
        create_tried: &mut bool,
        blocking: bool,
        deadline: Option<Instant>,
    ) -> ZkResult<Round> {
        if !self.ensured && self.new_dir {
            if let Some(round) = self.create_with_dir(prefix, create_tried).await? {
                return Ok(round);
            }
        }
        if !self.ensured {
            self.client.ensure_path(&self.dir).await?;
            self.ensured = true;
        }
        let prefix_path = join(&self.dir, prefix);
        // Our contender and the session generation it was made in.
        let mut own: Option<(String, u64)> = None;
        loop {
            let gen = self.client.generation();
            if own.as_ref().is_some_and(|(_, g)| *g != gen) {
                // Made in a session that has since ended: gone or going.
                own = None;
                *create_tried = false;
            }
            if own.is_none() && !*create_tried {
                *create_tried = true;
                let path = self
                    .client
                    .create(
                        &prefix_path,
                        &self.identifier,
                        CreateKind::EphemeralSequential,
                        true,
                    )
                    .await?;
                if self.client.generation() != gen {
                    // Unknown which session it belongs to; start over.
                    let _ = self.client.delete(&path, None).await;
                    *create_tried = false;
                    continue;
                }
                let name = path.rsplit('/').next().unwrap_or_default().to_string();
                own = Some((name, gen));
            }
            let children = self.client.get_children(&self.dir).await?;
            let mine: Vec<&String> = children
                .iter()
                .flatten()
                .filter(|c| c.starts_with(prefix))
                .collect();
            if own.is_none() {
                // A create whose answer got lost may have been applied: adopt the newest.
                own = mine
                    .iter()
                    .max_by_key(|c| lock_sequence(c))
                    .map(|c| ((*c).clone(), gen));
            }
            let Some((node, node_gen)) = own.clone() else {
                *create_tried = false;
                continue;
            };
            // Duplicates from ambiguous creates stand in our way; remove them.
            for c in mine.iter().filter(|c| ***c != node) {
                let _ = self.client.delete(&join(&self.dir, c), None).await;
            }
            let contenders: Vec<String> = sort_contenders(
                children
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| *c == node || !c.starts_with(prefix))
                    .collect(),
            );
            let Some(idx) = contenders.iter().position(|c| *c == node) else {
                // Ours vanished (session expiry, forced unlock): queue again.
                own = None;
                *create_tried = false;
                continue;
            };
            if node_gen != self.client.generation() {
                // The session changed while we listed: our child may be a leftover.
                own = None;
                *create_tried = false;
                continue;
            }
            if idx == 0 {
                return Ok(Round::Acquired(node, node_gen));
            }
            if !blocking {
                return Ok(Round::Busy);
            }
            let predecessor = join(&self.dir, &contenders[idx - 1]);
            let (stat, watcher, watch_gen) = self.client.exists_and_watch(&predecessor).await?;
            if watch_gen != node_gen {
                // The call met the loss of our session and ran again in a new one: our
                // contender is gone and this watch would not tell us.
                own = None;
                *create_tried = false;
                continue;
            }
            if stat.is_none() {
                continue;
            }
            match deadline {
                None => {
                    watcher.changed().await;
                }
                Some(d) => {
                    if tokio::time::timeout_at(d, watcher.changed()).await.is_err() {
                        return Ok(Round::TimedOut);
                    }
                }
            }
        }
    }

    /// The dir and our contender in one multi (see [`Self::expect_new_dir`]; tried once
    /// per lock). `Some(Acquired)` when it worked; `None` when the recipe must run: the
    /// dir exists or its parent does not, or the session changed meanwhile. A connection
    /// error is returned for the caller's retry, which runs the recipe: a multi that was
    /// applied all the same left a contender with our prefix, which the recipe adopts.
    async fn create_with_dir(
        &mut self,
        prefix: &str,
        create_tried: &mut bool,
    ) -> ZkResult<Option<Round>> {
        self.new_dir = false;
        let gen = self.client.generation();
        let ops = [
            Op::Create {
                path: self.dir.clone(),
                data: Vec::new(),
                kind: CreateKind::Persistent,
            },
            Op::Create {
                path: join(&self.dir, prefix),
                data: self.identifier.clone(),
                kind: CreateKind::EphemeralSequential,
            },
        ];
        let created = match self.client.multi(&ops).await {
            Ok(results) => results,
            Err(ZkError::NodeExists(_) | ZkError::NoNode(_)) => return Ok(None),
            Err(e) => {
                *create_tried = true;
                return Err(e);
            }
        };
        self.ensured = true;
        let Some(OpResult::Create { path, .. }) = created.get(1) else {
            return Err(ZkError::Corrupt(format!(
                "lock {}: the multi creating it answered {created:?}",
                self.dir
            )));
        };
        let name = path.rsplit('/').next().unwrap_or_default().to_string();
        if self.client.generation() != gen {
            // Unknown which session it belongs to; the recipe starts over.
            let _ = self.client.delete(&join(&self.dir, &name), None).await;
            return Ok(None);
        }
        *create_tried = true;
        self.made_dir = true;
        Ok(Some(Round::Acquired(name, gen)))
    }

    /// Releases the lock: deletes our contender (the dir stays). A lock lost with its
    /// session, or never acquired, releases trivially.
    pub async fn release(&mut self) -> ZkResult<()> {
        self.kept = None;
        let LockState::Held { node, generation } = self.state.clone() else {
            return Ok(());
        };
        let path = join(&self.dir, &node);
        if !self.is_held() {
            // Lost with its session: the child is gone or going; one try for a lingering one.
            self.state = LockState::Idle;
            let _ = self.client.delete(&path, None).await;
            return Ok(());
        }
        let deadline = Instant::now() + self.client.settings().request_timeout;
        loop {
            match self.client.delete(&path, None).await {
                Ok(()) | Err(ZkError::NoNode(_)) => break,
                Err(e) if e.is_connection_problem() && !matches!(e, ZkError::Closed) => {
                    if self.client.generation() != generation {
                        break; // went with its session
                    }
                    if Instant::now() + RETRY_PAUSE >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(ZkError::Closed) => break, // the closed session took it along
                Err(e) => return Err(e),
            }
        }
        self.state = LockState::Idle;
        Ok(())
    }
}

impl Drop for ZkLock {
    fn drop(&mut self) {
        let LockState::Held { node, generation } = &self.state else {
            return;
        };
        if self.client.generation() != *generation {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            let path = join(&self.dir, node);
            rt.spawn(async move {
                match client.delete(&path, None).await {
                    Ok(()) | Err(ZkError::NoNode(_)) => debug!("released dropped lock {path}"),
                    Err(e) => warn!("cannot release dropped lock {path}: {e}"),
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_like_kazoo_regex() {
        let u = "8ce8253b8ce8253b8ce8253b8ce8253b";
        assert_eq!(
            lock_sequence(&format!("{u}__lock__0000000042")),
            Some("0000000042")
        );
        assert_eq!(
            lock_sequence(&format!("{u}__lock__-0000000001")),
            Some("-0000000001")
        );
        assert_eq!(lock_sequence("__lock__0000000001"), Some("0000000001"));
        assert_eq!(lock_sequence(&format!("{u}__lock__00000000042")), None);
        assert_eq!(lock_sequence(&format!("{u}__rlock__0000000042")), None);
        assert_eq!(lock_sequence("0000000042"), None);
        assert_eq!(lock_sequence("lock"), None);
        assert_eq!(lock_sequence("é__lock__000000004é"), None);
    }

    #[test]
    fn contenders_sorted_by_sequence_not_prefix() {
        let sorted = sort_contenders(vec![
            "ff__lock__0000000003".into(),
            "aa__lock__0000000010".into(),
            "junk".into(),
            "00__lock__0000000001".into(),
            "zz__lock__-0000000005".into(),
        ]);
        assert_eq!(
            sorted,
            vec![
                "zz__lock__-0000000005",
                "00__lock__0000000001",
                "ff__lock__0000000003",
                "aa__lock__0000000010",
            ]
        );
    }
}
