//! systemd's notify protocol (`Type=notify`), through the `sd-notify` crate: `READY=1`
//! once the daemon is connected to ZooKeeper, has loaded its config and registered its
//! components; `STOPPING=1` when a stop begins; `WATCHDOG=1` every half of
//! `WATCHDOG_USEC` while the async runtime is responsive (a wedged runtime stops the
//! pings and systemd restarts the service). Without `NOTIFY_SOCKET` every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;

/// Sends one state change; failures are logged, never fatal.
fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// Whether a service manager listens (`NOTIFY_SOCKET` is set).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    if enabled() {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }
}

/// `STOPPING=1` with a status line.
pub fn stopping(status: &str) {
    if enabled() {
        send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }
}

/// When `WATCHDOG_USEC` is set for this process: a task sending `WATCHDOG=1` every half
/// period. Must be called inside the runtime.
pub fn spawn_watchdog() -> Option<JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()?;
    let every = (period / 2).max(Duration::from_millis(10));
    tracing::info!(
        period_ms = period.as_millis() as u64,
        "systemd watchdog enabled"
    );
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}
