//! The limits on real loopback sockets: a silent client and an idle keep-alive
//! connection are dropped after the header timeout, connections beyond the cap wait for
//! a slot, and shutdown does not wait for a silent client.

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{serve, Limits};

/// Bound on every wait below: only reached when the behaviour under test is missing.
const NEVER: Duration = Duration::from_secs(30);

struct Server {
    addr: std::net::SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(limits: Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let router = Router::new().route("/ready", get(|| async { "OK" }));
    let task = tokio::spawn(serve(listener, router, limits, "test", cancel.clone()));
    Server { addr, cancel, task }
}

fn limits(max_connections: usize, header_timeout: Duration) -> Limits {
    Limits {
        max_connections,
        header_timeout,
        shutdown_grace: Duration::from_millis(200),
    }
}

/// Sends one GET on `s` and reads its whole answer (keep-alive: up to the body "OK").
async fn get_ready(s: &mut TcpStream) -> String {
    s.write_all(b"GET /ready HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"OK") {
        let n = tokio::time::timeout(NEVER, s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            n > 0,
            "closed before the answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads until the server closes `s` (whatever it sends first), bounded by [`NEVER`].
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let read_to_end = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(NEVER, read_to_end).await.is_ok()
}

#[tokio::test]
async fn answers_requests() {
    let srv = start(Limits::default()).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let answer = get_ready(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Keep-alive: a second request on the same connection.
    assert!(get_ready(&mut s).await.starts_with("HTTP/1.1 200"));
    srv.cancel.cancel();
    srv.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_is_dropped() {
    let srv = start(limits(4, Duration::from_millis(300))).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /ready HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut s).await,
        "half a request kept forever"
    );
    // A client that connects and sends nothing at all.
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    assert!(
        closed_by_server(&mut silent).await,
        "a silent client kept forever"
    );
    srv.cancel.cancel();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let srv = start(limits(4, Duration::from_millis(300))).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    assert!(get_ready(&mut s).await.starts_with("HTTP/1.1 200"));
    assert!(
        closed_by_server(&mut s).await,
        "idle connection kept forever"
    );
    srv.cancel.cancel();
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    // A long timeout: here only a client leaving frees a slot.
    let srv = start(limits(2, Duration::from_secs(600))).await;
    let mut first = TcpStream::connect(srv.addr).await.unwrap();
    assert!(get_ready(&mut first).await.starts_with("HTTP/1.1 200"));
    let mut second = TcpStream::connect(srv.addr).await.unwrap();
    assert!(get_ready(&mut second).await.starts_with("HTTP/1.1 200"));
    // Both slots are held by idle keep-alive connections: the third client is queued.
    let mut third = TcpStream::connect(srv.addr).await.unwrap();
    third
        .write_all(b"GET /ready HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(early.is_err(), "a third connection was served beside two");
    drop(first);
    let n = tokio::time::timeout(NEVER, third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // `second` still holds its slot; no connection was dropped to make room.
    assert!(get_ready(&mut second).await.starts_with("HTTP/1.1 200"));
    srv.cancel.cancel();
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_silent_client() {
    let srv = start(limits(4, Duration::from_secs(600))).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /ready HTTP/1.1\r\n").await.unwrap();
    // Let the server accept it before shutting down.
    tokio::time::sleep(Duration::from_millis(100)).await;
    srv.cancel.cancel();
    tokio::time::timeout(NEVER, srv.task)
        .await
        .expect("serve returns despite the silent client")
        .unwrap()
        .unwrap();
    assert!(closed_by_server(&mut s).await);
}
