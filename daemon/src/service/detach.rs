//! Detaching from the terminal as Python Nodepool's `DaemonContext` does: fork, `setsid`,
//! fork again (so the daemon can never regain a controlling terminal), `chdir /`, and
//! stdin/stdout/stderr on `/dev/null`. Must run before any thread exists (before the
//! async runtime is built).
//!
//! Unlike `DaemonContext`, the original process does not exit at once: it waits until
//! the daemon has taken its pidfile and reports success (exit 0) or the daemon's error
//! (exit 1), so an init script or a `Type=forking` unit sees a failed start as one and
//! finds the pidfile written when the command returns.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

/// The daemon's end of the pipe to the waiting original process.
#[derive(Debug)]
pub struct Detached {
    pipe: Option<File>,
}

impl Detached {
    /// Tells the original process the start succeeded; it exits 0.
    pub fn report_ok(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(b"ok\n");
        }
    }

    /// Tells the original process the start failed with `msg`; it prints it and exits 1.
    pub fn report_error(&mut self, msg: &str) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(format!("error: {msg}\n").as_bytes());
        }
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        self.report_error("the daemon exited during start-up");
    }
}

fn last_err(what: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Detaches. Returns in the daemon; the original process and the intermediate child
/// never return (they exit). `program` prefixes the original process's messages.
pub fn detach(program: &str) -> std::io::Result<Detached> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last_err("pipe"));
    }
    // SAFETY: both fds are fresh and owned by us from here on.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (documented precondition).
    match unsafe { libc::fork() } {
        -1 => return Err(last_err("fork")),
        0 => {}
        _ => {
            drop(write_end);
            wait_for_daemon(program, File::from(read_end));
        }
    }
    drop(read_end);
    // SAFETY: setsid has no preconditions in a fresh child.
    if unsafe { libc::setsid() } < 0 {
        return Err(last_err("setsid"));
    }
    // SAFETY: still single-threaded.
    match unsafe { libc::fork() } {
        -1 => return Err(last_err("fork")),
        // SAFETY: _exit skips atexit handlers and buffers shared with the daemon.
        pid if pid > 0 => unsafe { libc::_exit(0) },
        _ => {}
    }
    std::env::set_current_dir("/").map_err(|e| last_err(&format!("chdir /: {e}")))?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        unsafe {
            libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd);
        }
    }
    Ok(Detached {
        pipe: Some(File::from(write_end)),
    })
}

/// The original process: relays the daemon's verdict and exits.
fn wait_for_daemon(program: &str, mut pipe: File) -> ! {
    let mut msg = String::new();
    let _ = pipe.read_to_string(&mut msg);
    let first = msg.lines().next().unwrap_or("");
    if first == "ok" {
        std::process::exit(0);
    }
    let err = first
        .strip_prefix("error: ")
        .unwrap_or("the daemon exited during start-up");
    eprintln!("{program}: {err}");
    std::process::exit(1);
}
