//! Nodepool's nodescan: wait until a new server's SSH port answers, then read its host
//! keys, one connection per host-key algorithm (as paramiko does), each stored as
//! `"<type> <base64 blob>"` in the node's `host_keys`.
//!
//! Per connection: identification strings, KEXINIT offering `curve25519-sha256` and the
//! one host-key algorithm, SSH_MSG_KEX_ECDH_INIT with an ephemeral X25519 key, then the
//! server's SSH_MSG_KEX_ECDH_REPLY, whose first field is the host key blob (K_S). The
//! exchange-hash signature in that reply is **not** verified: like `ssh-keyscan` and
//! Nodepool, this is trust on first use — the keys are recorded, not checked. Every read
//! and write is bounded by the I/O timeout and the overall deadline.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use aws_lc_rs::agreement::{EphemeralPrivateKey, X25519};
use aws_lc_rs::rand::SystemRandom;
use base64::Engine;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::wire::{
    self, read_ident, read_message, write_ident, write_packet, Deadline, KexInit, Reader,
    WireError, Writer, MSG_KEXINIT, MSG_KEX_ECDH_INIT, MSG_KEX_ECDH_REPLY,
};

/// Host-key types gathered, in order.
pub const HOST_KEY_TYPES: &[&str] = &["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"];

/// Key-exchange methods offered (both names of RFC 8731's method).
pub const KEX_METHODS: &[&str] = &["curve25519-sha256", "curve25519-sha256@libssh.org"];

/// Our identification string.
pub const CLIENT_IDENT: &str = "SSH-2.0-nodepool_keyscan_1.0";

/// How to scan.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// Bound on each connect, read and write (paramiko's socket timeout is 10 s).
    pub io_timeout: Duration,
    /// First pause between attempts while the port does not answer (doubles up to
    /// [`ScanOptions::max_retry_interval`]).
    pub retry_interval: Duration,
    pub max_retry_interval: Duration,
    /// Host-key types to gather ([`HOST_KEY_TYPES`]); empty = only wait for the port.
    pub key_types: Vec<String>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            io_timeout: Duration::from_secs(10),
            retry_interval: Duration::from_millis(250),
            max_retry_interval: Duration::from_secs(2),
            key_types: HOST_KEY_TYPES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Why no host key could be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyscanError {
    #[error("not an IP address: `{0}`")]
    BadAddress(String),
    #[error("timeout scanning {addr} for host keys after {}s: {last}", timeout.as_secs_f64())]
    Timeout {
        addr: String,
        timeout: Duration,
        last: String,
    },
}

/// Why one connection gave no key.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("server offers no common {what} (it offers {offered})")]
    NoCommonAlgorithm { what: &'static str, offered: String },
    #[error("bad host key: {0}")]
    BadKey(String),
}

impl FetchError {
    /// True when the port did not accept a connection at all (not up yet).
    pub fn is_connect(&self) -> bool {
        matches!(self, FetchError::Connect(_) | FetchError::ConnectTimeout(_))
    }
}

/// Host-key algorithms to offer for a key type (RSA keys sign with SHA-2 on modern servers).
fn algorithms(key_type: &str) -> Vec<&str> {
    if key_type == "ssh-rsa" {
        vec!["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
    } else {
        vec![key_type]
    }
}

/// Waits until `host:port` answers SSH (or `deadline`), then gathers the host keys of
/// `opts.key_types`; types the server does not have are skipped. As in Nodepool, an
/// address containing `fake` yields `["ssh-rsa FAKEKEY"]` at once.
pub async fn scan_host_keys(
    host: &str,
    port: u16,
    deadline: Instant,
    opts: &ScanOptions,
) -> Result<Vec<String>, KeyscanError> {
    if host.contains("fake") {
        return Ok(vec!["ssh-rsa FAKEKEY".into()]);
    }
    let ip: IpAddr = host
        .parse()
        .map_err(|_| KeyscanError::BadAddress(host.to_string()))?;
    let addr = SocketAddr::new(ip, port);
    let started = Instant::now();
    let dl = Deadline {
        end: deadline,
        io: opts.io_timeout,
    };
    let mut pause = opts.retry_interval;
    let mut last = String::from("no attempt made");
    loop {
        if Instant::now() >= deadline {
            return Err(KeyscanError::Timeout {
                addr: addr.to_string(),
                timeout: deadline.saturating_duration_since(started),
                last,
            });
        }
        match scan_once(addr, &dl, &opts.key_types).await {
            Ok(keys) => return Ok(keys),
            Err(e) => {
                tracing::debug!(%addr, error = %e, "host-key scan attempt failed");
                last = e.to_string();
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // Polling a port that is not up yet: nothing to watch, so back off and retry.
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(opts.max_retry_interval);
    }
}

/// One attempt: all key types; an error if the port is closed or no key was read.
async fn scan_once(
    addr: SocketAddr,
    dl: &Deadline,
    key_types: &[String],
) -> Result<Vec<String>, FetchError> {
    if key_types.is_empty() {
        connect(addr, dl).await?;
        return Ok(Vec::new());
    }
    let mut keys = Vec::new();
    let mut first_err = None;
    for t in key_types {
        match fetch_host_key(addr, t, dl).await {
            Ok(k) => keys.push(k),
            Err(e) if e.is_connect() && keys.is_empty() => return Err(e),
            Err(e) => {
                tracing::debug!(%addr, key_type = %t, error = %e, "no host key of this type");
                first_err.get_or_insert(e);
            }
        }
    }
    match (keys.is_empty(), first_err) {
        (true, Some(e)) => Err(e),
        _ => Ok(keys),
    }
}

async fn connect(addr: SocketAddr, dl: &Deadline) -> Result<TcpStream, FetchError> {
    let d = dl.next();
    match tokio::time::timeout(d, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(FetchError::Connect(e)),
        Err(_) => Err(FetchError::ConnectTimeout(d)),
    }
}

/// One connection: the server's host key of `key_type` as `"<type> <base64 blob>"`.
pub async fn fetch_host_key(
    addr: SocketAddr,
    key_type: &str,
    dl: &Deadline,
) -> Result<String, FetchError> {
    let mut s = connect(addr, dl).await?;
    let (mut rd, mut wr) = s.split();
    write_ident(&mut wr, CLIENT_IDENT, dl).await?;
    let algs = algorithms(key_type);
    let cookie: [u8; 16] = rand::random();
    write_packet(&mut wr, &KexInit::build(cookie, KEX_METHODS, &algs), dl).await?;
    read_ident(&mut rd, dl).await?;
    let server = KexInit::parse(&read_message(&mut rd, MSG_KEXINIT, dl).await?)?;
    let ours: Vec<String> = KEX_METHODS.iter().map(|s| s.to_string()).collect();
    let kex = wire::negotiate(&ours, &server.kex).ok_or_else(|| FetchError::NoCommonAlgorithm {
        what: "key exchange",
        offered: server.kex.join(","),
    })?;
    let our_hk: Vec<String> = algs.iter().map(|s| s.to_string()).collect();
    let hk = wire::negotiate(&our_hk, &server.host_key).ok_or_else(|| {
        FetchError::NoCommonAlgorithm {
            what: "host key algorithm",
            offered: server.host_key.join(","),
        }
    })?;
    let ephemeral = EphemeralPrivateKey::generate(&X25519, &SystemRandom::new())
        .map_err(|_| FetchError::BadKey("cannot generate an X25519 key".into()))?;
    let q_c = ephemeral
        .compute_public_key()
        .map_err(|_| FetchError::BadKey("cannot compute the X25519 public key".into()))?;
    let mut init = Writer::new(MSG_KEX_ECDH_INIT);
    init.string(q_c.as_ref());
    write_packet(&mut wr, &init.buf, dl).await?;
    // A server that guessed wrong sends a kex packet we must ignore (RFC 4253 §7).
    let guessed_wrong = server.first_kex_follows
        && (server.kex.first().map(String::as_str) != Some(kex)
            || server.host_key.first().map(String::as_str) != Some(hk));
    if guessed_wrong {
        wire::read_packet(&mut rd, dl).await?;
    }
    let reply = read_message(&mut rd, MSG_KEX_ECDH_REPLY, dl).await?;
    let mut r = Reader::new(&reply[1..]);
    let blob = r.string()?;
    // Q_S and the signature follow; not verified (trust on first use, see the module doc).
    let key = host_key_line(blob)?;
    let want = if key_type == "ssh-rsa" {
        "ssh-rsa"
    } else {
        key_type
    };
    if !key.starts_with(&format!("{want} ")) {
        return Err(FetchError::BadKey(format!(
            "asked for {want}, got {}",
            wire::printable(key.split(' ').next().unwrap_or_default().as_bytes())
        )));
    }
    Ok(key)
}

/// `"<type> <base64 blob>"` for a host key blob (its first field names the type).
pub fn host_key_line(blob: &[u8]) -> Result<String, FetchError> {
    let mut r = Reader::new(blob);
    let t = r.string()?;
    if t.is_empty() || t.len() > 64 || !t.iter().all(|c| c.is_ascii_graphic()) {
        return Err(FetchError::BadKey(format!(
            "key type is not a name: {}",
            wire::printable(t)
        )));
    }
    if r.remaining() == 0 {
        return Err(FetchError::BadKey("key blob has no key material".into()));
    }
    let t = String::from_utf8_lossy(t);
    Ok(format!(
        "{t} {}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn opts() -> ScanOptions {
        ScanOptions {
            io_timeout: Duration::from_millis(500),
            retry_interval: Duration::from_millis(20),
            max_retry_interval: Duration::from_millis(50),
            ..Default::default()
        }
    }

    #[test]
    fn key_lines() {
        let mut w = Writer::default();
        w.string(b"ssh-ed25519").string(&[1; 32]);
        let l = host_key_line(&w.buf).unwrap();
        assert!(l.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"), "{l}");
        assert!(host_key_line(&[0, 0, 0, 3, b'a']).is_err());
        assert!(host_key_line(&[0, 0, 0, 1, b'\n', 1]).is_err());
        assert!(host_key_line(&[0, 0, 0, 1, b'a']).is_err());
        assert!(host_key_line(&[]).is_err());
    }

    #[tokio::test]
    async fn fake_addresses_and_bad_addresses() {
        let dl = Instant::now() + Duration::from_secs(1);
        assert_eq!(
            scan_host_keys("fake", 22, dl, &opts()).await.unwrap(),
            vec!["ssh-rsa FAKEKEY"]
        );
        assert!(matches!(
            scan_host_keys("not-an-ip", 22, dl, &opts()).await,
            Err(KeyscanError::BadAddress(_))
        ));
    }

    /// A peer that answers with `reply` to every connection and closes.
    async fn hostile(reply: Vec<u8>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(&reply).await;
                let _ = s.shutdown().await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn garbage_from_the_peer_is_an_error() {
        let mut bad_kexinit = b"SSH-2.0-x\r\n".to_vec();
        bad_kexinit.extend(wire::frame(&[MSG_KEXINIT, 1, 2, 3]));
        let mut huge = b"SSH-2.0-x\r\n".to_vec();
        huge.extend([0xff, 0xff, 0xff, 0xff, 4]);
        let mut reply_garbage = b"SSH-2.0-x\r\n".to_vec();
        reply_garbage.extend(wire::frame(&KexInit::build(
            [0; 16],
            &["curve25519-sha256"],
            &["ssh-ed25519"],
        )));
        reply_garbage.extend(wire::frame(&[MSG_KEX_ECDH_REPLY, 0, 0, 0, 200, 1]));
        let mut no_common = b"SSH-2.0-x\r\n".to_vec();
        no_common.extend(wire::frame(&KexInit::build(
            [0; 16],
            &["diffie-hellman-group1-sha1"],
            &["ssh-ed25519"],
        )));
        let cases = vec![
            b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
            vec![0xff; 3000],
            b"SSH-1.5-old\r\n".to_vec(),
            bad_kexinit,
            huge,
            reply_garbage,
            no_common,
            Vec::new(),
        ];
        for reply in cases {
            let addr = hostile(reply.clone()).await;
            let dl = Deadline {
                end: Instant::now() + Duration::from_secs(2),
                io: Duration::from_millis(500),
            };
            let r = fetch_host_key(addr, "ssh-ed25519", &dl).await;
            assert!(r.is_err(), "{:?} gave {r:?}", wire::printable(&reply));
        }
    }

    #[tokio::test]
    async fn closed_port_times_out_with_keyscan_error() {
        // Bind then drop: a loopback port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let t0 = Instant::now();
        let r = scan_host_keys("127.0.0.1", port, t0 + Duration::from_millis(300), &opts()).await;
        match r {
            Err(KeyscanError::Timeout { last, .. }) => assert!(last.contains("connect"), "{last}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn silent_peer_is_bounded_by_the_deadline() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        // Accepts and never says anything.
        let _keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let r = scan_host_keys(
            "127.0.0.1",
            addr.port(),
            Instant::now() + Duration::from_millis(400),
            &opts(),
        )
        .await;
        assert!(matches!(r, Err(KeyscanError::Timeout { .. })), "{r:?}");
    }
}

/// Property tests of the host-key blob a server returns: any bytes give a key line or a
/// [`FetchError`], and a well-formed blob gives `"<type> <base64 of the blob>"`.
#[cfg(test)]
mod props {
    use super::*;
    use crate::testing::fuzz;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(fuzz::config(5000, 0x5348_0002))]

        #[test]
        fn any_blob_gives_a_line_or_an_error(blob in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(line) = host_key_line(&blob) {
                let (t, b64) = line.split_once(' ').expect("type and key");
                prop_assert!(!t.is_empty() && t.len() <= 64);
                let decoded = base64::engine::general_purpose::STANDARD.decode(b64);
                prop_assert_eq!(decoded.ok(), Some(blob));
            }
        }

        #[test]
        fn well_formed_blobs_are_read(t in "[a-z0-9@.-]{1,40}", material in prop::collection::vec(any::<u8>(), 1..600)) {
            let mut w = Writer::default();
            w.string(t.as_bytes()).raw(&material);
            let line = host_key_line(&w.buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let prefix = format!("{t} ");
            prop_assert!(line.starts_with(&prefix), "{line}");
        }
    }
}
