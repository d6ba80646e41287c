//! Fake sshds for the simulated servers, so the launcher's SSH host-key scan has something
//! to scan without any traffic leaving loopback: one listener per address of each `ACTIVE`
//! server (fixed and floating IPv4, all in 127.0.0.0/8), bound to that exact address on
//! the simulator's SSH port, dropped when the server or address goes away.
//!
//! This is **not** an SSH server. Per connection it sends its identification and KEXINIT
//! (`curve25519-sha256`, host key `ssh-ed25519` only), reads the client's, answers
//! SSH_MSG_KEX_ECDH_INIT with a correct SSH_MSG_KEX_ECDH_REPLY (the server's fixed Ed25519
//! host key, derived from its id, and an honest signature of the exchange hash) followed
//! by SSH_MSG_NEWKEYS as a real sshd does — clients that finish the key exchange before
//! reading the key (paramiko, so Python Nodepool's scan) wait for it —, then waits for
//! the client to hang up and closes without reading anything encrypted. A client asking
//! for another key type gets a DISCONNECT. Knobs: `ssh_delay_ms` (the port opens only
//! that long after the server became reachable) and `ssh_never` (the address and port
//! stay reserved but closed).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use nodepool_shared::ssh::wire::{
    self, read_ident, read_message, write_ident, write_packet, Deadline, KexInit, Reader, Writer,
    MSG_DISCONNECT, MSG_KEXINIT, MSG_KEX_ECDH_INIT, MSG_KEX_ECDH_REPLY, MSG_NEWKEYS,
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const SERVER_IDENT: &str = "SSH-2.0-OpenStackSim_1.0";
const HOST_KEY_ALG: &str = "ssh-ed25519";
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A simulated server's Ed25519 host key, fixed by its id.
pub struct HostKey {
    pair: Ed25519KeyPair,
    /// The public key blob (K_S).
    pub blob: Vec<u8>,
}

impl HostKey {
    /// The key of server `server_id` (seed = SHA-256 of a label and the id).
    pub fn for_server(server_id: &str) -> Option<HostKey> {
        let seed = Sha256::digest(format!("openstack-sim host key {server_id}").as_bytes());
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).ok()?;
        let mut w = Writer::default();
        w.string(HOST_KEY_ALG.as_bytes())
            .string(pair.public_key().as_ref());
        Some(HostKey { pair, blob: w.buf })
    }

    /// As a node's `host_keys` entry: `ssh-ed25519 <base64 blob>`.
    pub fn line(&self) -> String {
        use base64::Engine;
        format!(
            "{HOST_KEY_ALG} {}",
            base64::engine::general_purpose::STANDARD.encode(&self.blob)
        )
    }
}

/// The `host_keys` a scan of `server_id` finds.
pub fn host_keys(server_id: &str) -> Vec<String> {
    HostKey::for_server(server_id)
        .map(|k| vec![k.line()])
        .unwrap_or_default()
}

/// One listener (the task owns the socket; dropping this closes it).
struct Listener {
    server_id: String,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The live fake sshds of one simulator.
pub struct Sshds {
    pub port: u16,
    seen_epoch: Option<u64>,
    by_addr: HashMap<Ipv4Addr, Listener>,
}

impl Sshds {
    pub fn new(port: u16) -> Self {
        Sshds {
            port,
            seen_epoch: None,
            by_addr: HashMap::new(),
        }
    }

    /// Brings the listeners in line with `endpoints` (address → server id) when `epoch`
    /// moved; `delay` and `never` are the knobs, applied to listeners created now.
    pub fn reconcile(
        &mut self,
        epoch: u64,
        endpoints: impl FnOnce() -> Vec<(Ipv4Addr, String)>,
        delay: Duration,
        never: bool,
    ) {
        if self.seen_epoch == Some(epoch) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return; // Not on a runtime (cannot serve); try again on the next call.
        };
        self.seen_epoch = Some(epoch);
        let wanted: HashMap<Ipv4Addr, String> = endpoints().into_iter().collect();
        self.by_addr
            .retain(|ip, l| wanted.get(ip) == Some(&l.server_id));
        for (ip, server_id) in wanted {
            if self.by_addr.contains_key(&ip) {
                continue;
            }
            let addr = SocketAddr::from((ip, self.port));
            let socket = match bind(addr) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%addr, server = %server_id, error = %e, "openstack-sim: cannot bind fake sshd");
                    continue;
                }
            };
            let Some(key) = HostKey::for_server(&server_id) else {
                continue;
            };
            let open_at = Instant::now() + delay;
            let task = rt.spawn(serve(socket, addr, Arc::new(key), open_at, never));
            self.by_addr.insert(ip, Listener { server_id, task });
        }
    }

    /// Addresses with a fake sshd (open or not yet), for tests.
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        let mut v: Vec<_> = self.by_addr.keys().copied().collect();
        v.sort();
        v
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let s = TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    Ok(s)
}

/// Holds the bound socket; starts listening at `open_at` unless `never`.
async fn serve(
    socket: TcpSocket,
    addr: SocketAddr,
    key: Arc<HostKey>,
    open_at: Instant,
    never: bool,
) {
    if never {
        // Bound but not listening: connections are refused, the address stays ours.
        std::future::pending::<()>().await;
    }
    // Simulated boot time of the guest's sshd.
    tokio::time::sleep_until(open_at).await;
    let listener = match socket.listen(64) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "openstack-sim: fake sshd cannot listen");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                let key = key.clone();
                tokio::spawn(async move {
                    if let Err(e) = handshake(conn, &key).await {
                        tracing::debug!(%addr, error = %e, "openstack-sim: fake sshd connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "openstack-sim: fake sshd accept failed");
                return;
            }
        }
    }
}

/// One connection: identification, KEXINIT, ECDH reply, NEWKEYS, then wait for the client
/// to close.
async fn handshake(mut conn: TcpStream, key: &HostKey) -> Result<(), wire::WireError> {
    let dl = Deadline {
        end: Instant::now() + IO_TIMEOUT * 3,
        io: IO_TIMEOUT,
    };
    let (mut rd, mut wr) = conn.split();
    write_ident(&mut wr, SERVER_IDENT, &dl).await?;
    let kex_methods = ["curve25519-sha256", "curve25519-sha256@libssh.org"];
    let i_s = KexInit::build(rand::random(), &kex_methods, &[HOST_KEY_ALG]);
    write_packet(&mut wr, &i_s, &dl).await?;
    let v_c = read_ident(&mut rd, &dl).await?;
    let i_c = read_message(&mut rd, MSG_KEXINIT, &dl).await?;
    let client = KexInit::parse(&i_c)?;
    let kex_ok = client.kex.iter().any(|k| kex_methods.contains(&k.as_str()));
    if !kex_ok || !client.host_key.iter().any(|h| h == HOST_KEY_ALG) {
        let mut w = Writer::new(MSG_DISCONNECT);
        w.u32(3) // SSH_DISCONNECT_KEY_EXCHANGE_FAILED
            .string(b"no matching key exchange method or host key type found")
            .string(b"");
        write_packet(&mut wr, &w.buf, &dl).await?;
        return Ok(());
    }
    let init = read_message(&mut rd, MSG_KEX_ECDH_INIT, &dl).await?;
    let q_c = Reader::new(&init[1..]).string()?.to_vec();
    if q_c.len() != 32 {
        return Err(wire::WireError::Malformed(format!(
            "X25519 public key of {} bytes",
            q_c.len()
        )));
    }
    let eph = EphemeralPrivateKey::generate(&X25519, &SystemRandom::new())
        .map_err(|_| wire::WireError::Malformed("cannot generate X25519 key".into()))?;
    let q_s = eph
        .compute_public_key()
        .map_err(|_| wire::WireError::Malformed("cannot compute X25519 key".into()))?
        .as_ref()
        .to_vec();
    let shared = agree_ephemeral(
        eph,
        UnparsedPublicKey::new(&X25519, &q_c),
        wire::WireError::Malformed("bad X25519 public key".into()),
        |k| Ok(k.to_vec()),
    )?;
    // Exchange hash (RFC 8731 §3, RFC 5656 §4): V_C, V_S, I_C, I_S, K_S, Q_C, Q_S, K.
    let mut h = Writer::default();
    h.string(v_c.as_bytes())
        .string(SERVER_IDENT.as_bytes())
        .string(&i_c)
        .string(&i_s)
        .string(&key.blob)
        .string(&q_c)
        .string(&q_s)
        .mpint(&shared);
    let hash = Sha256::digest(&h.buf);
    let sig = key.pair.sign(&hash);
    let mut sig_blob = Writer::default();
    sig_blob
        .string(HOST_KEY_ALG.as_bytes())
        .string(sig.as_ref());
    let mut reply = Writer::new(MSG_KEX_ECDH_REPLY);
    reply.string(&key.blob).string(&q_s).string(&sig_blob.buf);
    write_packet(&mut wr, &reply.buf, &dl).await?;
    // The key exchange ends with both sides' NEWKEYS (RFC 4253 §7.3); the client's (and
    // whatever it encrypts after it) is drained below.
    write_packet(&mut wr, &[MSG_NEWKEYS], &dl).await?;
    // Let the client close first (so the TIME_WAIT is on its side, not on our address).
    let mut sink = [0u8; 256];
    let _ = tokio::time::timeout(IO_TIMEOUT, async {
        while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys_are_fixed_per_server() {
        let a = host_keys("server-a");
        assert_eq!(a, host_keys("server-a"));
        assert_ne!(a, host_keys("server-b"));
        assert!(
            a[0].starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"),
            "{a:?}"
        );
    }
}
