//! Running a daemon as a service: Nodepool's daemon command line (`-d`, `-f`, `-p`, `-l`,
//! see [`DaemonArgs`]), detaching ([`detach`]), the pidfile ([`pidfile`]), logging set-up
//! (`nodepool_shared::logging`), systemd notification ([`notify`]) and the SIGHUP that
//! reopens log files. The launcher's and builder's `main` call [`start`] before building
//! their async runtime and get back a [`Service`] to report readiness and stop with.
//! [`memory`] keeps the launcher's resident memory close to its live heap; [`nofile`]
//! raises the limit of open files.

pub mod args;
pub mod detach;
pub mod memory;
pub mod nofile;
pub mod notify;
pub mod pidfile;

use std::path::PathBuf;

use clap::Args;
use nodepool_shared::logging::{self, LogFormat, LogOptions, Logging};

pub use pidfile::PidFile;

/// The daemon flags of Python Nodepool's `NodepoolDaemonApp`, with its meaning:
/// without `-d`/`-f` the daemon detaches and writes the pidfile (`-p`, default
/// `/var/run/nodepool/<app>.pid`).
#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// Do not detach; log at DEBUG to stdout (unless -l is given).
    #[arg(short = 'd', long = "nodaemon")]
    pub debug: bool,
    /// Do not detach (foreground); log to stdout (unless -l is given).
    #[arg(short = 'f', long = "foreground")]
    pub foreground: bool,
    /// Pidfile. Always written when detaching (default /var/run/nodepool/APP.pid, APP
    /// the program's name); in the foreground only when given. A stale pidfile is replaced; a live one refuses.
    #[arg(short = 'p', long = "pidfile", value_name = "PIDFILE")]
    pub pidfile: Option<PathBuf>,
    /// Python logging config (YAML/JSON dictConfig, as Nodepool's). Without it: stdout
    /// in the foreground, /var/log/nodepool/APP.log when detached.
    #[arg(short = 'l', long = "logconfig", value_name = "LOGCONFIG")]
    pub logconfig: Option<PathBuf>,
    /// Line format of every log handler: `text` (the handlers' formatters) or `json`
    /// (one JSON object per line, for log shippers).
    #[arg(long = "log-format", value_name = "FORMAT", default_value = "text",
          value_parser = |s: &str| s.parse::<LogFormat>())]
    pub log_format: LogFormat,
}

impl DaemonArgs {
    /// Python's `nodaemon`: `-d` or `-f`.
    pub fn foreground(&self) -> bool {
        self.debug || self.foreground
    }

    /// The pidfile to write, if any: `-p`, or the default when detaching.
    pub fn pidfile_path(&self, app: &str) -> Option<PathBuf> {
        match (&self.pidfile, self.foreground()) {
            (Some(p), _) => Some(absolute(p)),
            (None, false) => Some(PathBuf::from(format!("/var/run/nodepool/{app}.pid"))),
            (None, true) => None,
        }
    }
}

/// Relative paths given on the command line stay valid after the `chdir /` of detaching.
pub fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// A started service: keeps the pidfile and the log files; reports to systemd.
#[derive(Debug)]
pub struct Service {
    /// The installed logging (reopen on SIGHUP).
    pub logging: Logging,
    pidfile: Option<PidFile>,
    detached: Option<detach::Detached>,
}

/// Why a service could not start (printed on stderr before exiting 1).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad `-l` or a log file that cannot be opened.
    #[error(transparent)]
    Logging(#[from] logging::LogConfigError),
    /// The pidfile is taken or unwritable.
    #[error(transparent)]
    PidFile(#[from] pidfile::PidFileError),
    /// Forking failed.
    #[error("cannot detach: {0}")]
    Detach(#[source] std::io::Error),
}

/// Sets up logging, takes the pidfile and detaches unless `-d`/`-f`. `app` is Nodepool's
/// app name (`nodepool` for the launcher, `nodepool-builder`). Call before any thread
/// is started. `validate` runs before detaching (e.g. loading the config) so that its
/// error reaches the terminal.
pub fn start(
    app: &str,
    args: &DaemonArgs,
    validate: impl FnOnce() -> Result<(), String>,
) -> Result<Service, String> {
    let log_opts = LogOptions {
        app: app.to_string(),
        logconfig: args.logconfig.as_deref().map(absolute),
        foreground: args.foreground(),
        debug: args.debug,
        format: args.log_format,
        rust_log: std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty()),
    };
    let logging = logging::install(&log_opts).map_err(|e| e.to_string())?;
    let pid_path = args.pidfile_path(app);
    if let Some(p) = &pid_path {
        pidfile::check(p).map_err(|e| e.to_string())?;
    }
    validate()?;
    let mut detached = None;
    if !args.foreground() {
        detached = Some(detach::detach(app).map_err(|e| StartError::Detach(e).to_string())?);
    }
    let pidfile = match pid_path.as_deref().map(PidFile::acquire).transpose() {
        Ok(p) => p,
        Err(e) => {
            if let Some(d) = detached.as_mut() {
                d.report_error(&e.to_string());
            }
            return Err(e.to_string());
        }
    };
    for w in &logging.warnings {
        tracing::warn!("logging config: {w}");
    }
    nofile::raise_open_files_limit();
    Ok(Service {
        logging,
        pidfile,
        detached,
    })
}

impl Service {
    /// The start-up is over (runtime built, pidfile written): let the original process
    /// of a detaching start exit 0.
    pub fn started(&mut self) {
        if let Some(d) = self.detached.as_mut() {
            d.report_ok();
        }
    }

    /// The start failed after detaching: the original process prints `msg`, exits 1.
    pub fn failed(&mut self, msg: &str) {
        if let Some(d) = self.detached.as_mut() {
            d.report_error(msg);
        }
    }

    /// The pidfile held, if any.
    pub fn pidfile(&self) -> Option<&std::path::Path> {
        self.pidfile.as_ref().map(PidFile::path)
    }

    /// Spawns the SIGHUP handler that reopens every log file. Inside the runtime.
    pub fn spawn_sighup(&self) -> Option<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).ok()?;
        let logging = self.logging.clone();
        Some(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let errors = logging.reopen();
                tracing::info!("SIGHUP: log files reopened");
                for e in errors {
                    tracing::error!("{e}");
                }
            }
        }))
    }
}
