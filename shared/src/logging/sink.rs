//! Where formatted log lines go: stdout, stderr, nowhere, or a file with Python's file
//! handler semantics — plain (`FileHandler`), reopened when logrotate moved or removed it
//! (`WatchedFileHandler`: the path's device and inode are compared before every write),
//! rotated by size (`RotatingFileHandler`) or by time (`TimedRotatingFileHandler`). Every
//! file is also reopened on demand ([`Sink::reopen`], the daemons call it on SIGHUP).

use crate::sync::MutexExt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::format::strftime;

/// How a file handler decides to start a new file.
#[derive(Debug, Clone, PartialEq)]
pub enum Rotation {
    /// `FileHandler`: never.
    None,
    /// `WatchedFileHandler`: when the path no longer names the open file.
    Watched,
    /// `RotatingFileHandler(maxBytes, backupCount)`.
    Size { max_bytes: u64, backups: u32 },
    /// `TimedRotatingFileHandler(when, interval, backupCount, utc)`.
    Timed(Timed),
}

/// The schedule of a `TimedRotatingFileHandler`.
#[derive(Debug, Clone, PartialEq)]
pub struct Timed {
    /// `S`, `M`, `H`, `D`, `MIDNIGHT` or `W0`…`W6` (upper case).
    pub when: String,
    /// `interval` (units of `when`; weeks for `W*`).
    pub interval: u64,
    /// `backupCount` (0 = keep all).
    pub backups: u32,
    /// `utc`: suffixes and midnight in UTC instead of local time.
    pub utc: bool,
}

impl Timed {
    fn period(&self) -> i64 {
        let unit = match self.when.as_str() {
            "S" => 1,
            "M" => 60,
            "H" => 3600,
            "D" | "MIDNIGHT" => 86_400,
            _ => 7 * 86_400,
        };
        unit * self.interval.max(1) as i64
    }

    fn suffix(&self) -> &'static str {
        match self.when.as_str() {
            "S" => "%Y-%m-%d_%H-%M-%S",
            "M" => "%Y-%m-%d_%H-%M",
            "H" => "%Y-%m-%d_%H",
            _ => "%Y-%m-%d",
        }
    }

    /// The next rollover after `from` (epoch seconds), as Python computes it: `from` +
    /// the period, or for `MIDNIGHT` and `W*` the next (local or UTC) midnight, at the end
    /// of the given weekday for `W*` (`interval` is then not used, as in Python 3.11).
    fn next_after(&self, from: i64) -> i64 {
        let at_midnight = self.when == "MIDNIGHT" || self.when.starts_with('W');
        if !at_midnight {
            return from + self.period();
        }
        let offset = if self.utc { 0 } else { local_offset(from) };
        let local = from + offset;
        let midnight = local - local.rem_euclid(86_400) + 86_400;
        let mut next = midnight;
        if let Some(day) = self
            .when
            .strip_prefix('W')
            .and_then(|d| d.parse::<i64>().ok())
        {
            // 1970-01-01 was a Thursday (Python weekday 3; Monday = 0).
            let weekday = |t: i64| (t.div_euclid(86_400) + 3).rem_euclid(7);
            while weekday(next - 86_400) != day {
                next += 86_400;
            }
        }
        next - offset
    }
}

fn local_offset(t: i64) -> i64 {
    let t = t as libc::time_t;
    // SAFETY: tm is plain data filled by localtime_r.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm.tm_gmtoff
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An open log file and what is needed to rotate it.
#[derive(Debug)]
struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
    size: u64,
    rollover_at: i64,
}

/// A log file handler.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    rotation: Rotation,
    state: Mutex<Option<OpenFile>>,
}

impl FileSink {
    /// Opens `path` (`truncate` for Python's `mode: w`), creating it; errors name the file.
    pub fn open(path: &Path, rotation: Rotation, truncate: bool) -> std::io::Result<FileSink> {
        let sink = FileSink {
            path: path.to_path_buf(),
            rotation,
            state: Mutex::new(None),
        };
        let f = sink.open_file(truncate)?;
        *sink.state.lock_or_recover() = Some(f);
        Ok(sink)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_file(&self, truncate: bool) -> std::io::Result<OpenFile> {
        let mut o = OpenOptions::new();
        o.create(true);
        if truncate {
            o.write(true).truncate(true);
        } else {
            o.append(true);
        }
        let file = o.open(&self.path)?;
        let md = file.metadata()?;
        let rollover_at = match &self.rotation {
            // Python starts from the file's modification time when it exists.
            Rotation::Timed(t) => t.next_after(md.mtime().min(now_secs())),
            _ => i64::MAX,
        };
        Ok(OpenFile {
            file,
            dev: md.dev(),
            ino: md.ino(),
            size: md.len(),
            rollover_at,
        })
    }

    /// Writes one formatted record (`line` ends with a newline). Errors are reported on
    /// stderr once per failure, as Python's `handleError` does, and never stop the daemon.
    pub fn write(&self, line: &[u8]) {
        let mut st = self.state.lock_or_recover();
        if let Err(e) = self.prepare(&mut st, line.len() as u64) {
            let _ = writeln!(
                std::io::stderr(),
                "--- Logging error: {}: {e}",
                self.path.display()
            );
        }
        if let Some(f) = st.as_mut() {
            match f.file.write_all(line) {
                Ok(()) => f.size += line.len() as u64,
                Err(e) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "--- Logging error: {}: {e}",
                        self.path.display()
                    );
                }
            }
        }
    }

    /// Reopens the file if its rotation says so before `len` more bytes are written.
    fn prepare(&self, st: &mut Option<OpenFile>, len: u64) -> std::io::Result<()> {
        let Some(f) = st.as_ref() else {
            *st = Some(self.open_file(false)?);
            return Ok(());
        };
        match &self.rotation {
            Rotation::None => {}
            Rotation::Watched => {
                let moved = match std::fs::metadata(&self.path) {
                    Ok(md) => md.dev() != f.dev || md.ino() != f.ino,
                    Err(_) => true,
                };
                if moved {
                    *st = None;
                    *st = Some(self.open_file(false)?);
                }
            }
            Rotation::Size { max_bytes, backups } => {
                if *max_bytes > 0 && *backups > 0 && f.size + len >= *max_bytes {
                    *st = None;
                    self.shift_backups(*backups)?;
                    *st = Some(self.open_file(false)?);
                }
            }
            Rotation::Timed(t) => {
                let now = now_secs();
                if now >= f.rollover_at {
                    let from = f.rollover_at - t.period();
                    *st = None;
                    self.rotate_timed(t, from)?;
                    let mut nf = self.open_file(false)?;
                    nf.rollover_at = t.next_after(now);
                    *st = Some(nf);
                }
            }
        }
        Ok(())
    }

    fn backup(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    /// `base.(n-1)` → `base.n` … `base` → `base.1`, as `RotatingFileHandler.doRollover`.
    fn shift_backups(&self, backups: u32) -> std::io::Result<()> {
        for i in (1..backups).rev() {
            let src = self.backup(i);
            if src.exists() {
                let dst = self.backup(i + 1);
                let _ = std::fs::remove_file(&dst);
                std::fs::rename(&src, &dst)?;
            }
        }
        let first = self.backup(1);
        let _ = std::fs::remove_file(&first);
        if self.path.exists() {
            std::fs::rename(&self.path, &first)?;
        }
        Ok(())
    }

    /// `base` → `base.<time suffix>` and the oldest beyond `backupCount` removed.
    fn rotate_timed(&self, t: &Timed, from: i64) -> std::io::Result<()> {
        let mut dst = self.path.clone().into_os_string();
        dst.push(".");
        dst.push(strftime(from, t.suffix(), t.utc));
        let dst = PathBuf::from(dst);
        let _ = std::fs::remove_file(&dst);
        if self.path.exists() {
            std::fs::rename(&self.path, &dst)?;
        }
        if t.backups == 0 {
            return Ok(());
        }
        let (Some(dir), Some(base)) = (self.path.parent(), self.path.file_name()) else {
            return Ok(());
        };
        let prefix = format!("{}.", base.to_string_lossy());
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let mut old: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_prefix(&prefix).is_some_and(|s| {
                    !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_digit() || c == '-' || c == '_')
                })
            })
            .map(|e| e.path())
            .collect();
        old.sort();
        let excess = old.len().saturating_sub(t.backups as usize);
        for p in &old[..excess] {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }

    /// Closes and reopens the file (SIGHUP), appending.
    pub fn reopen(&self) -> std::io::Result<()> {
        let mut st = self.state.lock_or_recover();
        *st = None;
        *st = Some(self.open_file(false)?);
        Ok(())
    }
}

/// A handler's destination.
#[derive(Debug)]
pub enum Sink {
    /// `ext://sys.stdout`.
    Stdout,
    /// `ext://sys.stderr` (a `StreamHandler`'s default).
    Stderr,
    /// `logging.NullHandler`.
    Null,
    /// A file handler.
    File(FileSink),
}

impl Sink {
    /// Writes one line (already ending in a newline), in one call so lines of
    /// concurrent events never interleave.
    pub fn write(&self, line: &[u8]) {
        match self {
            Sink::Stdout => {
                let _ = std::io::stdout().lock().write_all(line);
            }
            Sink::Stderr => {
                let _ = std::io::stderr().lock().write_all(line);
            }
            Sink::Null => {}
            Sink::File(f) => f.write(line),
        }
    }

    /// Reopens a file sink; nothing for the others.
    pub fn reopen(&self) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.reopen(),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn watched_file_follows_logrotate() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("launcher.log");
        let s = FileSink::open(&p, Rotation::Watched, false).unwrap();
        s.write(b"one\n");
        std::fs::rename(&p, d.path().join("launcher.log.1")).unwrap();
        s.write(b"two\n");
        assert_eq!(read(&d.path().join("launcher.log.1")), "one\n");
        assert_eq!(read(&p), "two\n");
        std::fs::remove_file(&p).unwrap();
        s.write(b"three\n");
        assert_eq!(read(&p), "three\n");
    }

    #[test]
    fn plain_file_reopens_on_demand_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("b.log");
        let s = FileSink::open(&p, Rotation::None, false).unwrap();
        s.write(b"one\n");
        std::fs::rename(&p, d.path().join("b.log.old")).unwrap();
        s.write(b"two\n");
        assert_eq!(read(&d.path().join("b.log.old")), "one\ntwo\n");
        s.reopen().unwrap();
        s.write(b"three\n");
        assert_eq!(read(&p), "three\n");
    }

    #[test]
    fn size_rotation_keeps_backup_count() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.log");
        let rot = Rotation::Size {
            max_bytes: 10,
            backups: 2,
        };
        let s = FileSink::open(&p, rot, false).unwrap();
        for l in ["aaaa\n", "bbbb\n", "cccc\n", "dddd\n", "eeee\n"] {
            s.write(l.as_bytes());
        }
        // As Python: a record that would reach maxBytes starts a new file.
        assert_eq!(read(&p), "eeee\n");
        assert_eq!(read(&s.backup(1)), "dddd\n");
        assert_eq!(read(&s.backup(2)), "cccc\n");
        assert!(!s.backup(3).exists());
    }

    #[test]
    fn timed_rollover_schedule() {
        let t = Timed {
            when: "H".into(),
            interval: 2,
            backups: 1,
            utc: true,
        };
        assert_eq!(t.next_after(1000), 1000 + 7200);
        let m = Timed {
            when: "MIDNIGHT".into(),
            interval: 1,
            backups: 0,
            utc: true,
        };
        assert_eq!(m.next_after(86_400 * 3 + 5), 86_400 * 4);
        // 1970-01-05 was a Monday (W0): from Thursday 1970-01-01 the next is at
        // midnight ending Monday, i.e. 1970-01-06 00:00.
        let w = Timed {
            when: "W0".into(),
            interval: 1,
            backups: 0,
            utc: true,
        };
        assert_eq!(w.next_after(10), 86_400 * 5);
    }

    #[test]
    fn timed_rotation_renames_with_suffix_and_prunes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.log");
        let t = Timed {
            when: "S".into(),
            interval: 1,
            backups: 1,
            utc: true,
        };
        let s = FileSink::open(&p, Rotation::Timed(t.clone()), false).unwrap();
        s.write(b"one\n");
        s.rotate_timed(&t, 0).unwrap();
        std::fs::write(&p, "x\n").unwrap();
        s.rotate_timed(&t, 1).unwrap();
        let names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["t.log.1970-01-01_00-00-01"], "{names:?}");
    }
}
