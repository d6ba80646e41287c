//! Serving the daemons' HTTP listeners (the launcher's web API, the builder's metrics
//! listener) so that no client can take the daemon's file descriptors.
//!
//! `axum::serve` keeps every connection for as long as the client wants: a client that
//! sends half a request line, or opens a connection and sends nothing, holds a
//! descriptor forever, and a thousand of them use up a daemon's `RLIMIT_NOFILE` (1,024 by
//! default under systemd). The launcher then cannot open a socket to its clouds or
//! reconnect to ZooKeeper. Here, as CherryPy does for Python Nodepool's web API (it
//! drops a socket silent for 10 s):
//!
//! * a connection must send a whole request head within [`Limits::header_timeout`] of
//!   being accepted or of its previous answer (an idle keep-alive connection is closed
//!   after that time too);
//! * at most [`Limits::max_connections`] connections are served at once; further
//!   clients wait in the kernel's accept queue until one ends (within the timeout, for
//!   any client that sends nothing), and a warning says so;
//! * on shutdown every connection is told to close after its current answer, and those
//!   still open after [`Limits::shutdown_grace`] are dropped.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How many connections a listener serves at once, and how long it waits for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time for a connection to send a request head (from its accept, or from the end of
    /// its previous answer).
    pub header_timeout: Duration,
    /// Time open connections get to finish their answers after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// How often the "all connections busy" warning is repeated at most.
const BUSY_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Serves `router` on `listener` until `cancel` fires, within `limits`. `what` names the
/// listener in log lines ("web API", "metrics listener").
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    what: &'static str,
    cancel: CancellationToken,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut conns: JoinSet<()> = JoinSet::new();
    let closing = CancellationToken::new();
    let mut busy_warned: Option<Instant> = None;
    loop {
        // Reap the connections that ended, so the set holds only open ones.
        while conns.try_join_next().is_some() {}
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                if busy_warned.is_none_or(|t| t.elapsed() >= BUSY_WARNING_EVERY) {
                    busy_warned = Some(Instant::now());
                    tracing::warn!(
                        connections = limits.max_connections,
                        "{what}: every connection slot is taken; new clients wait until one \
                         ends (a client silent for {:?} is dropped)",
                        limits.header_timeout
                    );
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    s = slots.clone().acquire_owned() => match s {
                        Ok(s) => s,
                        Err(_) => break,
                    },
                }
            }
        };
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            // The client gave up before its connection was accepted: nothing to do.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors (EMFILE, ENFILE) or memory: wait, do not spin.
                tracing::error!(error = %e, "{what}: cannot accept a connection; retrying in 1 s");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let router = router.clone();
        let closing = closing.clone();
        conns.spawn(async move {
            let _slot = slot;
            let service = TowerToHyperService::new(router);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "{what}: connection ended");
                    }
                }
                _ = closing.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "{what}: connection ended");
                    }
                }
            }
        });
    }
    closing.cancel();
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            open = conns.len(),
            "{what}: dropping the connections still open after {:?}",
            limits.shutdown_grace
        );
        conns.shutdown().await;
    }
    Ok(())
}

/// Errors of one connection that says nothing about the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests;
