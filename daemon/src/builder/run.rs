//! Running one diskimage-builder build, in phases: prune old logs and open the new one
//! ([`open_log`]), start the command in a process group of its own with the build
//! environment, its stdout and stderr in one pipe streamed in order into
//! `<build-log-dir>/<image>-<build-id>.log` ([`start`]), wait for its end
//! ([`wait_for_end`]) and end the log with `Exit code: N` ([`finish_log`]). The whole
//! process group is killed on `build-timeout`, on cancellation, or when the future is
//! dropped — so no DIB child (qemu-img, chroot scripts) outlives the build that started
//! it.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::build_log;
use super::dib::DibSpec;
use super::shell_words::SplitError;

/// How long output is still read after the build process ended (a straggler that kept
/// the pipe open must not hang the builder).
pub const OUTPUT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How a build ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildResult {
    /// Exit code 0.
    Succeeded,
    /// Non-zero exit (code, or 128 + signal when killed by a signal we did not send).
    Failed(i32),
    /// `build-timeout` expired; the process group was killed.
    TimedOut,
    /// The cancellation token fired; the process group was killed.
    Cancelled,
}

impl BuildResult {
    /// True only for [`BuildResult::Succeeded`].
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Succeeded)
    }
}

/// The result of a finished build process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildOutcome {
    /// How it ended.
    pub result: BuildResult,
    /// The exit code written to the log (`Exit code: N`): the process's code, or
    /// 128 + signal number when it died of a signal.
    pub rc: i32,
    /// From start of the process to its end.
    pub duration: Duration,
    /// The build log.
    pub log_path: PathBuf,
}

/// Why a build could not be run at all (the build counts as failed).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `dib-cmd` plus arguments could not be split.
    #[error("cannot split DIB command of build {build}: {source}")]
    Split {
        build: String,
        #[source]
        source: SplitError,
    },
    /// The command is empty.
    #[error("DIB command of build {build} is empty")]
    EmptyCommand { build: String },
    /// Pruning old logs failed.
    #[error(transparent)]
    Prune(#[from] build_log::PruneError),
    /// The log file or directory could not be created or written.
    #[error("build log {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The output pipe could not be set up.
    #[error("output pipe for build {build}: {source}")]
    Pipe {
        build: String,
        #[source]
        source: std::io::Error,
    },
    /// The program could not be started.
    #[error("failed to exec `{program}` for build {build}: {source}")]
    Spawn {
        build: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the process failed.
    #[error("waiting for build {build}: {source}")]
    Wait {
        build: String,
        #[source]
        source: std::io::Error,
    },
}

/// Kills a process group when dropped, unless disarmed.
struct GroupGuard {
    pgid: Option<libc::pid_t>,
}

impl GroupGuard {
    fn signal(&self, signal: libc::c_int) {
        if let Some(pgid) = self.pgid {
            // SAFETY: kill(2) with a negative pid signals a process group; no memory
            // is involved. Errors (ESRCH: group already gone) are irrelevant.
            unsafe {
                libc::kill(-pgid, signal);
            }
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

/// Aborts the output-copying task when the build future goes away.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Runs the build described by `spec` to its end. Pruning old logs and writing the log
/// happen here; the caller turns the outcome into the ZooKeeper build state and stats.
///
/// Timeout and cancellation send SIGTERM to the process group, then SIGKILL after
/// `spec.kill_grace`. Dropping the returned future SIGKILLs the group at once.
pub async fn run_build(
    spec: &DibSpec,
    cancel: &CancellationToken,
) -> Result<BuildOutcome, RunError> {
    let build = spec.base_name();
    let argv = spec.argv().map_err(|source| RunError::Split {
        build: build.clone(),
        source,
    })?;
    let Some((program, args)) = argv.split_first() else {
        return Err(RunError::EmptyCommand { build });
    };
    let log = open_log(spec).await?;
    let mut started = start(spec, program, args, log).await?;
    let (result, status) = wait_for_end(spec, &mut started, cancel).await?;
    let duration = started.start.elapsed();
    let rc = exit_code(status);
    finish_log(spec, started.pump, result, rc).await?;
    match result {
        BuildResult::Succeeded => tracing::info!(build = %build, ?duration, "DIB image is built"),
        _ => tracing::info!(build = %build, ?result, rc, "DIB failed"),
    }
    Ok(BuildOutcome {
        result,
        rc,
        duration,
        log_path: spec.log_path(),
    })
}

fn log_error(path: &Path) -> impl FnOnce(std::io::Error) -> RunError {
    let path = path.to_path_buf();
    move |source| RunError::Log { path, source }
}

/// Creates the log directory, prunes old logs of the image (on a blocking thread: a
/// directory of many logs must not stall the runtime) and creates the new log.
async fn open_log(spec: &DibSpec) -> Result<tokio::fs::File, RunError> {
    tokio::fs::create_dir_all(&spec.build_log_dir)
        .await
        .map_err(log_error(&spec.build_log_dir))?;
    let (dir, image, retention) = (
        spec.build_log_dir.clone(),
        spec.image_name.clone(),
        spec.build_log_retention,
    );
    tokio::task::spawn_blocking(move || build_log::prune(&dir, &image, retention))
        .await
        .map_err(|e| log_error(&spec.build_log_dir)(std::io::Error::other(e)))??;
    let log_path = spec.log_path();
    tokio::fs::File::create(&log_path)
        .await
        .map_err(log_error(&log_path))
}

/// A started build process.
struct Started {
    child: tokio::process::Child,
    /// Kills the process group unless disarmed.
    guard: GroupGuard,
    /// Copies the output into the log.
    pump: AbortOnDrop<std::io::Result<tokio::fs::File>>,
    start: Instant,
}

/// Starts the command in a process group of its own, stdout and stderr into one pipe
/// that a task copies into `log`. A command that cannot be started leaves the reason
/// in the log.
async fn start(
    spec: &DibSpec,
    program: &str,
    args: &[String],
    mut log: tokio::fs::File,
) -> Result<Started, RunError> {
    let build = spec.base_name();
    let pipe_err = |source| RunError::Pipe {
        build: build.clone(),
        source,
    };
    let (reader, writer) = std::io::pipe().map_err(pipe_err)?;
    let writer_err = writer.try_clone().map_err(pipe_err)?;
    let reader =
        tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader)).map_err(pipe_err)?;

    tracing::info!(build = %build, command = %spec.command_line(), log = %spec.log_path().display(), "running DIB");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(spec.env_overrides())
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(writer_err)
        .process_group(0)
        .kill_on_drop(true);
    let spawned = cmd.spawn();
    // The command holds our copies of the pipe's write end; drop them so the reader
    // sees EOF once the build's processes are gone.
    drop(cmd);
    let child = match spawned {
        Ok(child) => child,
        Err(source) => {
            // Leave the reason where operators look for it; the error is returned anyway.
            let line = format!("Failed to exec '{}': {source}\n", spec.command_line());
            let _ = log.write_all(line.as_bytes()).await;
            let _ = log.flush().await;
            return Err(RunError::Spawn {
                build,
                program: program.to_string(),
                source,
            });
        }
    };
    let pgid = child.id().and_then(|id| libc::pid_t::try_from(id).ok());
    Ok(Started {
        child,
        guard: GroupGuard { pgid },
        pump: AbortOnDrop(tokio::spawn(pump_output(reader, log))),
        start: Instant::now(),
    })
}

/// Waits for the process to exit, the timeout or the cancellation; on the latter two,
/// SIGTERM then (after `kill_grace`) SIGKILL to the whole group.
async fn wait_for_end(
    spec: &DibSpec,
    started: &mut Started,
    cancel: &CancellationToken,
) -> Result<(BuildResult, std::process::ExitStatus), RunError> {
    enum Ending {
        Exited(std::io::Result<std::process::ExitStatus>),
        TimedOut,
        Cancelled,
    }
    let build = spec.base_name();
    let wait_err = |source| RunError::Wait {
        build: build.clone(),
        source,
    };
    let child = &mut started.child;
    let guard = &mut started.guard;
    let ending = tokio::select! {
        status = child.wait() => Ending::Exited(status),
        _ = tokio::time::sleep(spec.build_timeout) => Ending::TimedOut,
        _ = cancel.cancelled() => Ending::Cancelled,
    };
    let result = match ending {
        Ending::Exited(status) => {
            guard.disarm();
            let status = status.map_err(wait_err)?;
            let rc = exit_code(status);
            let result = if rc == 0 {
                BuildResult::Succeeded
            } else {
                BuildResult::Failed(rc)
            };
            return Ok((result, status));
        }
        Ending::TimedOut => {
            tracing::error!(build = %build, timeout = ?spec.build_timeout, log = %spec.log_path().display(), "build timeout, killing DIB");
            BuildResult::TimedOut
        }
        Ending::Cancelled => {
            tracing::warn!(build = %build, "build cancelled, killing DIB");
            BuildResult::Cancelled
        }
    };
    guard.signal(libc::SIGTERM);
    let status = match tokio::time::timeout(spec.kill_grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            guard.signal(libc::SIGKILL);
            child.wait().await
        }
    };
    // Members of the group that ignored SIGTERM go now too.
    guard.signal(libc::SIGKILL);
    guard.disarm();
    Ok((result, status.map_err(wait_err)?))
}

/// Collects the rest of the output (bounded: a straggler keeping the pipe open is not
/// waited for), then writes the trailer.
async fn finish_log(
    spec: &DibSpec,
    mut pump: AbortOnDrop<std::io::Result<tokio::fs::File>>,
    result: BuildResult,
    rc: i32,
) -> Result<(), RunError> {
    let log_path = spec.log_path();
    let mut log = match tokio::time::timeout(OUTPUT_DRAIN_TIMEOUT, &mut pump.0).await {
        Ok(Ok(Ok(log))) => log,
        Ok(Ok(Err(e))) => return Err(log_error(&log_path)(e)),
        Ok(Err(join)) => return Err(log_error(&log_path)(std::io::Error::other(join))),
        Err(_) => {
            pump.0.abort();
            tracing::warn!(build = %spec.base_name(), "build output still open after the process ended; not waiting for it");
            tokio::fs::OpenOptions::new()
                .append(true)
                .open(&log_path)
                .await
                .map_err(log_error(&log_path))?
        }
    };
    let mut trailer = String::new();
    match result {
        BuildResult::TimedOut => trailer.push_str(&format!(
            "Build timed out after {} seconds; process group killed\n",
            spec.build_timeout.as_secs()
        )),
        BuildResult::Cancelled => trailer.push_str("Build cancelled; process group killed\n"),
        _ => {}
    }
    trailer.push_str(&format!("Exit code: {rc}\n"));
    log.write_all(trailer.as_bytes())
        .await
        .map_err(log_error(&log_path))?;
    log.flush().await.map_err(log_error(&log_path))
}

/// Copies everything from the pipe into the log until EOF, flushing as it goes so the
/// log can be followed live; hands the file back for the trailer.
async fn pump_output(
    mut reader: tokio::net::unix::pipe::Receiver,
    mut log: tokio::fs::File,
) -> std::io::Result<tokio::fs::File> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        log.write_all(&buf[..n]).await?;
        log.flush().await?;
    }
    Ok(log)
}
