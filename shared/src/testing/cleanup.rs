//! Test data removed however a test or benchmark process ends.
//!
//! A [`ZkServer`](super::ZkServer) or [`ZkEnsemble`](super::ZkEnsemble) keeps its
//! dataDir in a temp directory: a few MB after a test, up to a GB after a scale benchmark
//! (100,000 node records). Dropping the fixture removes it: at the end of a test, when a
//! test panics (the panic unwinds), and at exit for the process-wide servers (`atexit`).
//! A process ended by a signal runs none of that, so a benchmark stopped with Ctrl-C or a
//! test binary killed by `timeout` used to leave its data in the temp dir.
//!
//! So such directories are also registered here ([`remove_on_signal`]), and the first
//! registration installs a handler for SIGINT, SIGTERM and SIGHUP. On one of them it
//! kills this process's child processes (ZooKeeper, sshd, daemons: none may write into a
//! directory being removed, nor outlive the run), waits until they have ended, removes
//! the registered directories, and then ends the process by the same signal with its
//! default action, as if no handler had been installed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::sync::MutexExt;

/// How long the handler waits for the killed children to end.
const CHILD_EXIT_WAIT: Duration = Duration::from_secs(5);

/// The signals that stop a run from a terminal, `timeout`, `kill` or a closed session.
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

#[derive(Default)]
struct Registry {
    next: u64,
    dirs: BTreeMap<u64, PathBuf>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

/// A directory that is removed if the process is stopped by a signal, until this is
/// dropped (the owner removes it itself then, or keeps it on purpose).
#[derive(Debug)]
#[must_use = "the directory is only removed on a signal while this lives"]
pub struct RemoveOnSignal(u64);

impl Drop for RemoveOnSignal {
    fn drop(&mut self) {
        registry().lock_or_recover().dirs.remove(&self.0);
    }
}

/// Registers `dir` to be removed (with everything in it) if a signal stops the process
/// (see the module doc). The first call installs the signal handler; if it cannot be
/// installed the directory is only removed the ordinary way, and a warning says so.
pub fn remove_on_signal(dir: &Path) -> RemoveOnSignal {
    install_handler();
    let mut reg = registry().lock_or_recover();
    reg.next += 1;
    let id = reg.next;
    reg.dirs.insert(id, dir.to_path_buf());
    RemoveOnSignal(id)
}

/// Starts (once) the thread that waits for the signals.
fn install_handler() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("test-cleanup-on-signal".into())
            .spawn(move || watch_signals(ready_tx));
        // Wait until the handlers are in place, so no signal slips through after return.
        let ready = spawned
            .map_err(|e| e.to_string())
            .and_then(|_| ready_rx.recv().map_err(|e| e.to_string())?);
        if let Err(e) = ready {
            tracing::warn!("test data is not removed on SIGINT/SIGTERM/SIGHUP: {e}");
        }
    });
}

/// The signal thread: a small runtime whose only job is to wait for one of [`SIGNALS`].
fn watch_signals(ready: std::sync::mpsc::Sender<Result<(), String>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(format!("signal runtime: {e}")));
            return;
        }
    };
    let signo = runtime.block_on(async {
        let [int, term, hup] = SIGNALS.map(|signo| signal(SignalKind::from_raw(signo)));
        let (mut int, mut term, mut hup) = match (int, term, hup) {
            (Ok(i), Ok(t), Ok(h)) => (i, t, h),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                let _ = ready.send(Err(format!("signal handler: {e}")));
                return None;
            }
        };
        let _ = ready.send(Ok(()));
        Some(tokio::select! {
            _ = int.recv() => libc::SIGINT,
            _ = term.recv() => libc::SIGTERM,
            _ = hup.recv() => libc::SIGHUP,
        })
    });
    if let Some(signo) = signo {
        clean_up_and_die(signo);
    }
}

/// Kills the children, removes the registered directories, then dies of `signo`.
fn clean_up_and_die(signo: libc::c_int) -> ! {
    let children = kill_children();
    wait_ended(&children, CHILD_EXIT_WAIT);
    let dirs: Vec<PathBuf> = registry()
        .lock_or_recover()
        .dirs
        .values()
        .cloned()
        .collect();
    for dir in dirs {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => eprintln!("removed {} (signal {signo})", dir.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("cannot remove {}: {e}", dir.display()),
        }
    }
    // SAFETY: signal(2) and raise(3) with a valid signal number; SIG_DFL makes the
    // raise end the process as the signal would have without our handler.
    unsafe {
        libc::signal(signo, libc::SIG_DFL);
        libc::raise(signo);
    }
    // Only reached if the signal is blocked in this thread.
    std::process::exit(128 + signo);
}

/// Sends SIGKILL to every live child process of this process; returns their pids.
fn kill_children() -> Vec<libc::pid_t> {
    let me = std::process::id();
    let children: Vec<libc::pid_t> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| proc_stat(*pid).is_some_and(|(state, ppid)| ppid == me && state != 'Z'))
        .collect();
    for pid in &children {
        // SAFETY: kill(2) of a child of ours that has not been reaped (it is not a
        // zombie yet, and only its owner, which is stopping with us, would reap it).
        unsafe {
            libc::kill(*pid, libc::SIGKILL);
        }
    }
    children
}

/// Waits (at most `limit`) until none of `pids` runs (each is a zombie or gone).
fn wait_ended(pids: &[libc::pid_t], limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let running = pids
            .iter()
            .any(|pid| proc_stat(*pid).is_some_and(|(state, _)| state != 'Z'));
        if !running {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The state letter and parent pid of `pid` from `/proc/<pid>/stat`.
fn proc_stat(pid: libc::pid_t) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_state_and_parent_of_this_process() {
        let (state, ppid) = proc_stat(std::process::id() as libc::pid_t).expect("own stat");
        assert!(matches!(state, 'R' | 'S'), "state {state}");
        // SAFETY: getppid(2) has no preconditions.
        assert_eq!(ppid, unsafe { libc::getppid() } as u32);
    }

    #[test]
    fn a_dropped_registration_is_forgotten() {
        let dir = std::env::temp_dir().join("nodepool-cleanup-unit");
        let reg = remove_on_signal(&dir);
        assert!(registry()
            .lock_or_recover()
            .dirs
            .values()
            .any(|d| d == &dir));
        drop(reg);
        assert!(!registry()
            .lock_or_recover()
            .dirs
            .values()
            .any(|d| d == &dir));
    }
}
