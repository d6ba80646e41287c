//! Bounded waits: every wait of an integration test ends, with a message that names what
//! it waited for, instead of hanging the suite. Limits are generous failure bounds, never
//! timing assertions (a loaded 2-core CI machine must pass).
//!
//! * [`wait_for`] / [`wait_for_within`] poll a condition until it yields a value;
//! * [`step`] bounds one awaited step of a test;
//! * [`bounded`] bounds a whole test; [`bounded_serial`] also runs it alone among the
//!   tests that start daemons, DIB and simulators as processes (see [`heavy_lock`]).

use std::future::Future;
use std::time::Duration;

/// The bound of one wait ([`wait_for`], [`step`]).
pub const WAIT: Duration = Duration::from_secs(90);

/// The bound of one whole test ([`bounded`], [`bounded_serial`]).
pub const TEST_LIMIT: Duration = Duration::from_secs(300);

/// How often [`wait_for`] polls.
const POLL: Duration = Duration::from_millis(50);

/// Polls `f` every 50 ms until it returns `Some`; panics naming `what` after [`WAIT`].
pub async fn wait_for<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_within(what, WAIT, f).await
}

/// [`wait_for`] with its own bound.
pub async fn wait_for_within<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Awaits one step of a test; panics naming `what` if it takes longer than [`WAIT`].
pub async fn step<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {WAIT:?}"))
}

/// Runs a whole test body; panics if it takes longer than [`TEST_LIMIT`].
pub async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .unwrap_or_else(|_| panic!("test timed out after {TEST_LIMIT:?}"))
}

/// [`bounded`] for a test that runs daemons, DIB or simulators as processes: it first
/// takes [`heavy_lock`], so such tests run one at a time on a small machine (the time
/// limit starts once the lock is held).
pub async fn bounded_serial<T>(test: impl Future<Output = T>) -> T {
    let _alone = heavy_lock().await;
    bounded(test).await
}

/// The lock that process-heavy tests of one test binary hold while they run: the
/// daemons, DIB and simulators each of them starts compete for the same 2 cores, and
/// their bounded waits are sized for one such test at a time. Other tests keep running
/// beside them.
pub async fn heavy_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}
