//! [`StatsSink`]: a statsd server for tests — a UDP socket on 127.0.0.1 whose every
//! received line is kept, read by a background thread until the sink is dropped. Metrics
//! are checked on the real wire format, as an operator's statsd would receive them.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::stats::Statsd;
use crate::sync::MutexExt;

/// Every statsd line sent to [`StatsSink::port`] on 127.0.0.1.
pub struct StatsSink {
    /// The UDP port it listens on.
    pub port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl StatsSink {
    /// Binds a free loopback port and starts receiving.
    pub fn start() -> StatsSink {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind a statsd socket on loopback");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("statsd socket read timeout");
        let port = sock.local_addr().expect("statsd socket address").port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (lines.clone(), stop.clone());
        std::thread::Builder::new()
            .name("test-statsd-sink".into())
            .spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !s.load(Ordering::Relaxed) {
                    if let Ok(n) = sock.recv(&mut buf) {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        l.lock_or_recover().extend(text.lines().map(str::to_string));
                    }
                }
            })
            .expect("start the statsd sink thread");
        StatsSink { port, lines, stop }
    }

    /// A client sending to this sink.
    pub fn statsd(&self) -> Statsd {
        Statsd::udp("127.0.0.1", self.port).expect("statsd client")
    }

    /// `STATSD_HOST` and `STATSD_PORT` for a daemon started as a process.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("STATSD_HOST".into(), "127.0.0.1".into()),
            ("STATSD_PORT".into(), self.port.to_string()),
        ]
    }

    /// Every line received so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock_or_recover().clone()
    }

    /// Whether some received line satisfies `pred`.
    pub fn has(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.lines.lock_or_recover().iter().any(|l| pred(l))
    }

    /// Waits (at most [`super::WAIT`]) until some line satisfies `pred`; panics naming
    /// `what` and listing the lines otherwise.
    pub async fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) {
        let deadline = tokio::time::Instant::now() + super::WAIT;
        while !self.has(&pred) {
            if tokio::time::Instant::now() >= deadline {
                panic!("no statsd line {what} in {:?}", self.lines());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sum of the counter `key` (`key:N|c` lines).
    pub fn count(&self, key: &str) -> u64 {
        self.lines
            .lock_or_recover()
            .iter()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .filter_map(|v| v.strip_suffix("|c")?.parse::<u64>().ok())
            .sum()
    }

    /// The distinct keys starting with `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut k: Vec<String> = self
            .lines
            .lock_or_recover()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.split(':').next().map(str::to_string))
            .collect();
        k.sort();
        k.dedup();
        k
    }
}

impl Drop for StatsSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
