//! [`ZkProxy`]: a loopback TCP proxy in front of a ZooKeeper server that can hold one
//! request of a client, so that a test puts a fault (a session expiry) between two calls
//! of a recipe at a chosen point instead of hoping a race hits the window.
//!
//! It reads the client's side of the wire protocol just enough to recognise a request:
//! every packet is a 4-byte big-endian length and its body; the first one of a
//! connection is the connect request, every later one starts with the request header
//! (`xid`, `type`, both 4 bytes), and for the path calls the path follows as a 4-byte
//! length and its bytes. A held request is never forwarded: the proxy stops reading from
//! that client until the server closes the connection (as it does when the session is
//! ended elsewhere), then closes the client's side too.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// ZooKeeper's opcode of `exists` (the call that sets a watch on a lock's predecessor).
pub const OP_EXISTS: i32 = 3;

/// Largest packet the proxy reads (ZooKeeper's own default `jute.maxbuffer` is ~1 MiB).
const MAX_PACKET: usize = 4 << 20;

/// What to hold, and whom to tell once it is held.
struct Hold {
    op: i32,
    path_contains: String,
    held: oneshot::Sender<()>,
}

/// A proxy on a free loopback port; stops (and closes every connection) when dropped.
pub struct ZkProxy {
    port: u16,
    hold: Arc<Mutex<Option<Hold>>>,
    tasks: JoinSet<()>,
}

impl ZkProxy {
    /// Listens on `127.0.0.1:<free port>` and forwards each connection to `upstream`
    /// (`host:port`).
    pub async fn start(upstream: &str) -> ZkProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the ZooKeeper proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let hold = Arc::new(Mutex::new(None));
        let mut tasks = JoinSet::new();
        let (upstream, hold2) = (upstream.to_string(), hold.clone());
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, hold) = (upstream.clone(), hold2.clone());
                conns.spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        relay(client, server, hold).await;
                    }
                });
            }
        });
        ZkProxy { port, hold, tasks }
    }

    /// The proxy's `(host, port)`, for a client's server list.
    pub fn endpoint(&self) -> (String, u16) {
        ("127.0.0.1".to_string(), self.port)
    }

    /// Holds the next request of opcode `op` whose path contains `path_contains` (on any
    /// connection); the receiver fires once it is held.
    pub fn hold_next(&self, op: i32, path_contains: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        *self.hold.lock().unwrap() = Some(Hold {
            op,
            path_contains: path_contains.to_string(),
            held: tx,
        });
        rx
    }
}

impl Drop for ZkProxy {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Copies both ways until either side closes; holds the client's matching request.
async fn relay(client: TcpStream, server: TcpStream, hold: Arc<Mutex<Option<Hold>>>) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let up = async {
        let mut first = true;
        loop {
            let mut len = [0u8; 4];
            if client_rx.read_exact(&mut len).await.is_err() {
                return;
            }
            let n = u32::from_be_bytes(len) as usize;
            if n > MAX_PACKET {
                return;
            }
            let mut body = vec![0u8; n];
            if client_rx.read_exact(&mut body).await.is_err() {
                return;
            }
            if !first && matches(&body, &hold) {
                // Never forwarded; wait for the server's side to end the connection.
                std::future::pending::<()>().await;
            }
            first = false;
            if server_tx.write_all(&len).await.is_err() || server_tx.write_all(&body).await.is_err()
            {
                return;
            }
        }
    };
    let down = tokio::io::copy(&mut server_rx, &mut client_tx);
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// Whether `body` (a request after the connect) is the one to hold; takes the hold.
fn matches(body: &[u8], hold: &Mutex<Option<Hold>>) -> bool {
    let word = |at: usize| {
        body.get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (Some(op), Some(path_len)) = (word(4), word(8)) else {
        return false;
    };
    let path = usize::try_from(path_len)
        .ok()
        .and_then(|l| body.get(12..12 + l))
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let mut slot = hold.lock().unwrap();
    if !slot
        .as_ref()
        .is_some_and(|h| h.op == op && path.contains(&h.path_contains))
    {
        return false;
    }
    if let Some(h) = slot.take() {
        let _ = h.held.send(());
    }
    true
}
