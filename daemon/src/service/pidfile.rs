//! The pidfile of a daemon, as Python Nodepool's (`python-daemon`'s `PIDLockFile`): the
//! process id and a newline, created exclusively so two daemons cannot both own it. A
//! pidfile naming a process that no longer exists is stale and replaced; one naming a
//! live process refuses the start. The file is removed when the daemon exits.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the pidfile could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// Another process holds it.
    #[error("pidfile {path} names process {pid}, which is running: is the daemon already running? (stop it, or remove the file if that process is not a nodepool daemon)")]
    Running { path: PathBuf, pid: i32 },
    /// It could not be read, removed or written.
    #[error("pidfile {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An owned pidfile; removed on drop if it still holds our pid.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

/// The pid a pidfile names, if it holds one.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
}

/// Whether `pid` is a running process (signal 0; EPERM means it exists).
pub fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Refuses when `path` names a live process other than us; removes a stale file.
pub fn check(path: &Path) -> Result<(), PidFileError> {
    let io = |source| PidFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        return Ok(());
    }
    match read_pid(path) {
        Some(pid) if pid as u32 != std::process::id() && alive(pid) => Err(PidFileError::Running {
            path: path.to_path_buf(),
            pid,
        }),
        _ => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        },
    }
}

impl PidFile {
    /// Takes `path` for this process: [`check`], then an exclusive create with our pid.
    pub fn acquire(path: &Path) -> Result<PidFile, PidFileError> {
        check(path)?;
        let io = |source| PidFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let pid = std::process::id();
        let mut f = match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Another daemon won the race between check and create.
                return Err(PidFileError::Running {
                    path: path.to_path_buf(),
                    pid: read_pid(path).unwrap_or(0),
                });
            }
            Err(e) => return Err(io(e)),
        };
        f.write_all(format!("{pid}\n").as_bytes()).map_err(io)?;
        Ok(PidFile {
            path: path.to_path_buf(),
            pid,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if read_pid(&self.path) == Some(self.pid as i32) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_replaced_live_refused_removed_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("nodepool.pid");
        // A pid that cannot exist (above pid_max's ceiling).
        std::fs::write(&p, "99999999\n").unwrap();
        let f = PidFile::acquire(&p).unwrap();
        assert_eq!(read_pid(&p), Some(std::process::id() as i32));
        drop(f);
        assert!(!p.exists());
        // Garbage is stale too.
        std::fs::write(&p, "not a pid").unwrap();
        drop(PidFile::acquire(&p).unwrap());
        // A live process (pid 1) refuses.
        std::fs::write(&p, "1\n").unwrap();
        let e = PidFile::acquire(&p).unwrap_err().to_string();
        assert!(e.contains("names process 1, which is running"), "{e}");
        assert_eq!(read_pid(&p), Some(1));
        // Unwritable place: the error names the file.
        let e = PidFile::acquire(Path::new("/proc/nodepool-test.pid"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("pidfile /proc/nodepool-test.pid"), "{e}");
    }
}
