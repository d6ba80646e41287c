//! Test logging: one global `tracing` subscriber per test process, installed by the first
//! [`init_logs`] call. It has two layers:
//!
//! * the test output: `RUST_LOG` (default `warn`) to libtest's captured output, so a
//!   failing test shows what the code under test logged;
//! * a capture of every event at TRACE level with the fields of its spans, recorded only
//!   while a [`LogCapture`] exists (tests that check what must never be logged, such as
//!   secrets). Its filter is asked on every event, so it costs nothing to record when no
//!   capture is active and needs no global subscriber of its own: all tests of a binary
//!   share one process, and a process has one global subscriber.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use tracing_subscriber::filter::{dynamic_filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::sync::MutexExt;

/// How many [`LogCapture`]s are alive.
static CAPTURES: AtomicUsize = AtomicUsize::new(0);
/// What the capture layer recorded (all captures of the process share it).
static CAPTURED: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Whether this module's subscriber is the global one.
static INSTALLED: Mutex<Option<bool>> = Mutex::new(None);

/// Installs the test subscriber once per process; later calls do nothing. Every test
/// that runs code which logs calls it first.
pub fn init_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let output = tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_filter(
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
            );
        let capture = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| CaptureWriter)
            // A dynamic filter: a plain `filter_fn` is asked once per callsite and its
            // answer cached, so an event first seen while no capture was alive would
            // never be recorded by a later one.
            .with_filter(dynamic_filter_fn(|_, _| {
                CAPTURES.load(Ordering::SeqCst) > 0
            }));
        let ok = tracing_subscriber::registry()
            .with(output)
            .with(capture)
            .try_init()
            .is_ok();
        *INSTALLED.lock_or_recover() = Some(ok);
    });
}

/// Records every log event at TRACE level (events of all threads of the process, not
/// only this test's) from [`LogCapture::start`] until it is dropped.
#[must_use = "the capture stops when dropped"]
pub struct LogCapture {
    from: usize,
}

impl LogCapture {
    /// Starts recording. Panics if another global subscriber was installed before
    /// [`init_logs`] (the capture would then record nothing and prove nothing).
    pub fn start() -> LogCapture {
        init_logs();
        let installed = INSTALLED.lock_or_recover().unwrap_or(false);
        assert!(
            installed,
            "another global tracing subscriber was installed before testing::init_logs; \
             a LogCapture would record nothing"
        );
        let from = captured().len();
        CAPTURES.fetch_add(1, Ordering::SeqCst);
        LogCapture { from }
    }

    /// Everything recorded since this capture started (lossy UTF-8).
    pub fn text(&self) -> String {
        let all = captured();
        String::from_utf8_lossy(&all[self.from.min(all.len())..]).into_owned()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        CAPTURES.fetch_sub(1, Ordering::SeqCst);
    }
}

fn captured() -> std::sync::MutexGuard<'static, Vec<u8>> {
    CAPTURED.lock_or_recover()
}

/// The capture layer's writer: appends to [`CAPTURED`].
struct CaptureWriter;

impl Write for CaptureWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        captured().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
