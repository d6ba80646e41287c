//! SSH transport framing before encryption (RFC 4253 §4.2, §6, §7.1): identification
//! lines, unencrypted binary packets, and the payload types (`string`, `name-list`,
//! `mpint`). Everything read from the peer is bounded in size and time; malformed input
//! is a [`WireError`], never a panic.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// SSH_MSG_DISCONNECT.
pub const MSG_DISCONNECT: u8 = 1;
/// SSH_MSG_IGNORE.
pub const MSG_IGNORE: u8 = 2;
/// SSH_MSG_UNIMPLEMENTED.
pub const MSG_UNIMPLEMENTED: u8 = 3;
/// SSH_MSG_DEBUG.
pub const MSG_DEBUG: u8 = 4;
/// SSH_MSG_KEXINIT.
pub const MSG_KEXINIT: u8 = 20;
/// SSH_MSG_NEWKEYS (RFC 4253 §7.3): the key exchange is over, new keys take effect.
pub const MSG_NEWKEYS: u8 = 21;
/// SSH_MSG_KEX_ECDH_INIT.
pub const MSG_KEX_ECDH_INIT: u8 = 30;
/// SSH_MSG_KEX_ECDH_REPLY.
pub const MSG_KEX_ECDH_REPLY: u8 = 31;

/// Largest packet accepted (RFC 4253 §6.1 requires 35000 to be supported).
pub const MAX_PACKET: usize = 35_000;
/// Longest identification or pre-identification line (RFC 4253 §4.2: 255 with CR LF).
const MAX_LINE: usize = 255;
/// Lines a server may send before its identification string.
const MAX_PRE_LINES: usize = 32;

/// Why talking to the peer failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out after {0:?} {1}")]
    Timeout(Duration, &'static str),
    #[error("peer closed the connection {0}")]
    Closed(&'static str),
    #[error("bad identification: {0}")]
    BadIdent(String),
    #[error("malformed packet: {0}")]
    Malformed(String),
    #[error("unexpected message type {got} (wanted {wanted})")]
    Unexpected { got: u8, wanted: u8 },
    #[error("peer disconnected (reason {code}): {text}")]
    Disconnected { code: u32, text: String },
}

/// A read/write deadline: each operation gets at most `io` and never past `end`.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub end: Instant,
    pub io: Duration,
}

impl Deadline {
    /// Time allowed for the next operation.
    pub fn next(&self) -> Duration {
        self.end
            .saturating_duration_since(Instant::now())
            .min(self.io)
    }

    /// Runs `fut` within [`Deadline::next`].
    pub async fn run<T, F>(&self, what: &'static str, fut: F) -> Result<T, WireError>
    where
        F: std::future::Future<Output = Result<T, WireError>>,
    {
        let d = self.next();
        match tokio::time::timeout(d, fut).await {
            Ok(r) => r,
            Err(_) => Err(WireError::Timeout(d, what)),
        }
    }
}

/// Writes our identification line (`SSH-2.0-<software>` + CR LF).
pub async fn write_ident<W: AsyncWrite + Unpin>(
    w: &mut W,
    ident: &str,
    dl: &Deadline,
) -> Result<(), WireError> {
    dl.run("sending identification", async {
        w.write_all(format!("{ident}\r\n").as_bytes()).await?;
        w.flush().await?;
        Ok(())
    })
    .await
}

/// Reads lines until the peer's `SSH-2.0-…` (or `SSH-1.99-…`) line, skipping up to a few
/// banner lines before it; returns it without the line end.
pub async fn read_ident<R: AsyncRead + Unpin>(
    r: &mut R,
    dl: &Deadline,
) -> Result<String, WireError> {
    for _ in 0..=MAX_PRE_LINES {
        let line = dl.run("reading identification", read_line(r)).await?;
        if line.starts_with("SSH-") {
            if !(line.starts_with("SSH-2.0-") || line.starts_with("SSH-1.99-")) {
                return Err(WireError::BadIdent(format!(
                    "unsupported protocol version: {}",
                    printable(line.as_bytes())
                )));
            }
            return Ok(line);
        }
    }
    Err(WireError::BadIdent(format!(
        "no SSH identification within {MAX_PRE_LINES} lines"
    )))
}

/// One line (LF or CR LF ended), at most [`MAX_LINE`] bytes, read a byte at a time so
/// nothing after it is consumed.
async fn read_line<R: AsyncRead + Unpin>(r: &mut R) -> Result<String, WireError> {
    let mut line = Vec::with_capacity(64);
    loop {
        let mut b = [0u8; 1];
        if r.read(&mut b).await? == 0 {
            return Err(WireError::Closed("before identification"));
        }
        if b[0] == b'\n' {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return String::from_utf8(line).map_err(|e| {
                WireError::BadIdent(format!("not UTF-8: {}", printable(e.as_bytes())))
            });
        }
        if line.len() >= MAX_LINE {
            return Err(WireError::BadIdent(format!(
                "line longer than {MAX_LINE} bytes: {}…",
                printable(&line[..40])
            )));
        }
        line.push(b[0]);
    }
}

/// Writes one unencrypted packet (block size 8, at least 4 bytes of padding).
pub async fn write_packet<W: AsyncWrite + Unpin>(
    w: &mut W,
    payload: &[u8],
    dl: &Deadline,
) -> Result<(), WireError> {
    let frame = frame(payload);
    dl.run("sending packet", async {
        w.write_all(&frame).await?;
        w.flush().await?;
        Ok(())
    })
    .await
}

/// The bytes of one unencrypted packet carrying `payload`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut pad = 8 - (payload.len() + 5) % 8;
    if pad < 4 {
        pad += 8;
    }
    let len = payload.len() + pad + 1;
    let mut out = Vec::with_capacity(len + 4);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.push(pad as u8);
    out.extend_from_slice(payload);
    out.resize(out.len() + pad, 0);
    out
}

/// Reads one unencrypted packet and returns its payload (never empty).
pub async fn read_packet<R: AsyncRead + Unpin>(
    r: &mut R,
    dl: &Deadline,
) -> Result<Vec<u8>, WireError> {
    dl.run("reading packet", async {
        let mut head = [0u8; 5];
        read_exact(r, &mut head).await?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let pad = head[4] as usize;
        if !(5..=MAX_PACKET).contains(&len) {
            return Err(WireError::Malformed(format!("packet length {len}")));
        }
        if pad < 4 || pad + 1 >= len {
            return Err(WireError::Malformed(format!(
                "padding {pad} in a packet of {len} bytes"
            )));
        }
        let mut rest = vec![0u8; len - 1];
        read_exact(r, &mut rest).await?;
        rest.truncate(len - 1 - pad);
        Ok(rest)
    })
    .await
}

async fn read_exact<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<(), WireError> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(WireError::Closed("in the middle of a packet"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Reads packets until one of type `wanted`, skipping IGNORE/DEBUG/UNIMPLEMENTED (a few);
/// a DISCONNECT becomes [`WireError::Disconnected`].
pub async fn read_message<R: AsyncRead + Unpin>(
    r: &mut R,
    wanted: u8,
    dl: &Deadline,
) -> Result<Vec<u8>, WireError> {
    for _ in 0..16 {
        let p = read_packet(r, dl).await?;
        match p[0] {
            t if t == wanted => return Ok(p),
            MSG_IGNORE | MSG_DEBUG | MSG_UNIMPLEMENTED => continue,
            MSG_DISCONNECT => {
                let mut rd = Reader::new(&p[1..]);
                let code = rd.u32()?;
                let text = rd.string().map(printable).unwrap_or_default();
                return Err(WireError::Disconnected { code, text });
            }
            got => return Err(WireError::Unexpected { got, wanted }),
        }
    }
    Err(WireError::Malformed(format!(
        "no message {wanted} among 16 packets"
    )))
}

/// Bytes for logs and errors: printable ASCII as is, the rest escaped, at most 200 bytes.
pub fn printable(b: &[u8]) -> String {
    b.iter()
        .take(200)
        .flat_map(|c| std::ascii::escape_default(*c))
        .map(char::from)
        .collect()
}

/// A cursor over a payload; every read checks the length.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Malformed(format!(
                "{what}: need {n} bytes, {} left",
                self.buf.len()
            )));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1, "byte")?[0])
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4, "uint32")?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        self.take(n, "bytes")
    }

    pub fn string(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()? as usize;
        self.take(n, "string")
    }

    /// A comma-separated ASCII name-list.
    pub fn name_list(&mut self) -> Result<Vec<String>, WireError> {
        let s = self.string()?;
        if !s.iter().all(|c| c.is_ascii_graphic()) {
            return Err(WireError::Malformed(format!(
                "name-list is not printable ASCII: {}",
                printable(s)
            )));
        }
        let s = std::str::from_utf8(s).map_err(|e| WireError::Malformed(e.to_string()))?;
        Ok(if s.is_empty() {
            Vec::new()
        } else {
            s.split(',').map(str::to_string).collect()
        })
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
}

/// Builds a payload.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new(msg: u8) -> Self {
        Writer { buf: vec![msg] }
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
    pub fn string(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.raw(b)
    }
    pub fn name_list(&mut self, names: &[&str]) -> &mut Self {
        self.string(names.join(",").as_bytes())
    }
    /// An unsigned big-endian integer as an `mpint` (leading zeros dropped, a zero byte
    /// added when the top bit is set).
    pub fn mpint(&mut self, be: &[u8]) -> &mut Self {
        let start = be.iter().position(|b| *b != 0).unwrap_or(be.len());
        let v = &be[start..];
        if v.first().is_some_and(|b| b & 0x80 != 0) {
            self.u32(v.len() as u32 + 1);
            self.u8(0);
            self.raw(v)
        } else {
            self.string(v)
        }
    }
}

/// A parsed SSH_MSG_KEXINIT (only what key exchange negotiation needs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KexInit {
    pub kex: Vec<String>,
    pub host_key: Vec<String>,
    pub first_kex_follows: bool,
}

impl KexInit {
    /// Parses a KEXINIT payload (type byte included).
    pub fn parse(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let t = r.u8()?;
        if t != MSG_KEXINIT {
            return Err(WireError::Unexpected {
                got: t,
                wanted: MSG_KEXINIT,
            });
        }
        r.bytes(16)?;
        let kex = r.name_list()?;
        let host_key = r.name_list()?;
        for _ in 0..8 {
            r.name_list()?;
        }
        let first_kex_follows = r.u8()? != 0;
        r.u32()?;
        Ok(KexInit {
            kex,
            host_key,
            first_kex_follows,
        })
    }

    /// A KEXINIT payload offering `kex` and `host_key` plus the usual ciphers and MACs.
    pub fn build(cookie: [u8; 16], kex: &[&str], host_key: &[&str]) -> Vec<u8> {
        let ciphers = [
            "chacha20-poly1305@openssh.com",
            "aes128-ctr",
            "aes256-ctr",
            "aes128-gcm@openssh.com",
            "aes256-gcm@openssh.com",
        ];
        let macs = [
            "hmac-sha2-256-etm@openssh.com",
            "hmac-sha2-256",
            "hmac-sha2-512",
        ];
        let mut w = Writer::new(MSG_KEXINIT);
        w.raw(&cookie)
            .name_list(kex)
            .name_list(host_key)
            .name_list(&ciphers)
            .name_list(&ciphers)
            .name_list(&macs)
            .name_list(&macs)
            .name_list(&["none"])
            .name_list(&["none"])
            .name_list(&[])
            .name_list(&[])
            .u8(0)
            .u32(0);
        w.buf
    }
}

/// The first algorithm of `client`'s list that `server` also offers (RFC 4253 §7.1).
pub fn negotiate<'a>(client: &'a [String], server: &[String]) -> Option<&'a str> {
    client
        .iter()
        .find(|c| server.iter().any(|s| s == *c))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dl() -> Deadline {
        Deadline {
            end: Instant::now() + Duration::from_secs(5),
            io: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn packets_round_trip() {
        for n in [1usize, 3, 4, 11, 12, 100] {
            let payload: Vec<u8> = (0..n as u8).collect();
            let f = frame(&payload);
            assert_eq!(f.len() % 8, 0);
            let got = read_packet(&mut f.as_slice(), &dl()).await.unwrap();
            assert_eq!(got, payload);
        }
    }

    #[tokio::test]
    async fn hostile_packets_are_errors() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0, 0, 0],
            vec![0xff, 0xff, 0xff, 0xff, 4],
            vec![0, 0, 0, 0, 0],
            vec![0, 0, 0, 8, 200, 1, 2, 3, 4, 5, 6, 7],
            vec![0, 0, 0, 8, 2, 1, 2, 3, 4, 5, 6, 7],
            vec![0, 0, 0, 100, 4, 1, 2],
        ];
        for c in cases {
            assert!(
                read_packet(&mut c.as_slice(), &dl()).await.is_err(),
                "{c:?}"
            );
        }
    }

    #[tokio::test]
    async fn idents() {
        let mut ok: &[u8] = b"hello banner\r\nSSH-2.0-OpenSSH_9.2p1 Debian\r\nrest";
        assert_eq!(
            read_ident(&mut ok, &dl()).await.unwrap(),
            "SSH-2.0-OpenSSH_9.2p1 Debian"
        );
        assert_eq!(ok, b"rest");
        for bad in [
            &b"SSH-1.5-old\r\n"[..],
            &b"no newline at all"[..],
            &[b'x'; 400][..],
            &b"\xff\xfe\n"[..],
            &b"line\n".repeat(40)[..],
        ] {
            let mut r = bad;
            assert!(read_ident(&mut r, &dl()).await.is_err());
        }
    }

    #[test]
    fn reader_checks_lengths() {
        let mut r = Reader::new(&[0, 0, 0, 9, 1, 2]);
        assert!(r.string().is_err());
        assert!(KexInit::parse(&[20, 1, 2]).is_err());
        assert!(KexInit::parse(&[21]).is_err());
        let k = KexInit::build([7; 16], &["curve25519-sha256"], &["ssh-ed25519"]);
        let p = KexInit::parse(&k).unwrap();
        assert_eq!(p.kex, vec!["curve25519-sha256"]);
        assert_eq!(p.host_key, vec!["ssh-ed25519"]);
        assert!(!p.first_kex_follows);
        for cut in 0..k.len() {
            assert!(KexInit::parse(&k[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn mpint_encoding() {
        let mut w = Writer::default();
        w.mpint(&[0, 0, 0x80, 1]);
        assert_eq!(w.buf, vec![0, 0, 0, 3, 0, 0x80, 1]);
        let mut w = Writer::default();
        w.mpint(&[0, 0x7f]);
        assert_eq!(w.buf, vec![0, 0, 0, 1, 0x7f]);
        let mut w = Writer::default();
        w.mpint(&[0, 0]);
        assert_eq!(w.buf, vec![0, 0, 0, 0]);
    }
}

/// Property tests: whatever bytes a server on the network sends, the readers return a
/// bounded value or a [`WireError`], never a panic, and never allocate more than one
/// packet's bound.
#[cfg(test)]
mod props {
    use super::*;
    use crate::testing::fuzz;
    use proptest::prelude::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    }

    fn dl() -> Deadline {
        Deadline {
            end: Instant::now() + Duration::from_secs(5),
            io: Duration::from_secs(5),
        }
    }

    /// A stream that starts like a real server's and goes wrong anywhere.
    fn server_bytes() -> impl Strategy<Value = Vec<u8>> {
        let good = (
            prop::collection::vec("[ -~]{0,40}", 0..3),
            any::<[u8; 16]>(),
            prop::collection::vec("[a-z0-9@.-]{1,24}", 0..4),
        )
            .prop_map(|(banner, cookie, algs)| {
                let mut b = Vec::new();
                for l in banner {
                    b.extend_from_slice(l.as_bytes());
                    b.extend_from_slice(b"\r\n");
                }
                b.extend_from_slice(b"SSH-2.0-OpenSSH_9.6\r\n");
                let algs: Vec<&str> = algs.iter().map(String::as_str).collect();
                b.extend(frame(&KexInit::build(cookie, &algs, &algs)));
                b
            });
        prop_oneof![
            1 => prop::collection::vec(any::<u8>(), 0..1024),
            2 => (good.clone(), prop::collection::vec(any::<u8>(), 0..512)).prop_map(|(mut g, tail)| {
                g.extend(tail);
                g
            }),
            2 => (good, any::<prop::sample::Index>(), any::<u8>()).prop_map(|(mut g, i, x)| {
                let at = i.index(g.len());
                g[at] ^= x | 1;
                g
            }),
        ]
    }

    proptest! {
        #![proptest_config(fuzz::config(3000, 0x5348_0001))]

        #[test]
        fn reading_a_server_never_panics(bytes in server_bytes()) {
            rt().block_on(async {
                let mut r: &[u8] = &bytes;
                if let Ok(ident) = read_ident(&mut r, &dl()).await {
                    prop_assert!(ident.len() <= MAX_LINE);
                    prop_assert!(ident.starts_with("SSH-2.0-") || ident.starts_with("SSH-1.99-"));
                    if let Ok(p) = read_message(&mut r, MSG_KEXINIT, &dl()).await {
                        prop_assert!(!p.is_empty() && p.len() <= MAX_PACKET);
                        let _ = KexInit::parse(&p);
                    }
                }
                let mut r: &[u8] = &bytes;
                if let Ok(p) = read_packet(&mut r, &dl()).await {
                    prop_assert!(!p.is_empty() && p.len() <= MAX_PACKET);
                }
                Ok(())
            })?;
        }

        #[test]
        fn payload_readers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), ops in prop::collection::vec(0u8..6, 0..24)) {
            let _ = KexInit::parse(&bytes);
            let mut r = Reader::new(&bytes);
            for op in ops {
                let before = r.remaining();
                let ok = match op {
                    0 => r.u8().is_ok(),
                    1 => r.u32().is_ok(),
                    2 => r.string().map(|s| s.len() <= before).unwrap_or(true),
                    3 => r.name_list().is_ok(),
                    4 => r.bytes(16).is_ok(),
                    _ => r.bytes(usize::MAX).is_ok(),
                };
                let _ = ok;
                prop_assert!(r.remaining() <= before);
            }
        }

        #[test]
        fn packets_and_kexinit_round_trip(
            payload in prop::collection::vec(any::<u8>(), 1..4096),
            cookie in any::<[u8; 16]>(),
            kex in prop::collection::vec("[a-z0-9@.-]{1,24}", 0..5),
            hk in prop::collection::vec("[a-z0-9@.-]{1,24}", 0..5),
        ) {
            let f = frame(&payload);
            prop_assert_eq!(f.len() % 8, 0);
            let got = rt().block_on(async { read_packet(&mut f.as_slice(), &dl()).await });
            prop_assert_eq!(got.ok(), Some(payload));
            let kex: Vec<&str> = kex.iter().map(String::as_str).collect();
            let hk: Vec<&str> = hk.iter().map(String::as_str).collect();
            let parsed = KexInit::parse(&KexInit::build(cookie, &kex, &hk));
            let parsed = parsed.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(parsed.kex, kex.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            prop_assert_eq!(parsed.host_key, hk.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
    }
}
