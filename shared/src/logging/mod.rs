//! Logging for the daemons, configured as Python Nodepool's: without `-l` the daemon
//! logs Nodepool's `%(asctime)s %(levelname)s %(name)s: %(message)s` lines to stdout in
//! the foreground (`-f`, `-d` for DEBUG) or to `/var/log/nodepool/<app>.log` as a daemon;
//! `-l LOGCONFIG` reads the Python dictConfig YAML operators already have
//! ([`dictconfig`]). Events get Python-style logger names ([`names`]), are routed like
//! Python's logging module ([`layer`]), formatted by `%`-style formatters or as JSON
//! lines ([`mod@format`]) and written to streams or files that follow logrotate ([`sink`]).
//! No colour codes are ever written: the output is meant for files and journals.
//!
//! `RUST_LOG`, when set and no `-l` is given, replaces the levels (tracing's `EnvFilter`
//! syntax) while the output stays where Nodepool puts it.

pub mod dictconfig;
pub mod format;
pub mod layer;
pub mod names;
pub mod sink;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use dictconfig::{LogConfig, LogConfigError};
pub use layer::PyLogLayer;

/// When the process started (`%(relativeCreated)d`).
pub(crate) static START: LazyLock<SystemTime> = LazyLock::new(SystemTime::now);

/// Line format of every handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// The handlers' formatters (Python `%`-style).
    #[default]
    Text,
    /// One JSON object per line (`--log-format json`).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("`{other}` is not a log format (text, json)")),
        }
    }
}

/// How a daemon was asked to log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Nodepool's app name: `nodepool` for the launcher (its log file is
    /// `/var/log/nodepool/nodepool.log`, as in Python), `nodepool-builder`.
    pub app: String,
    /// `-l LOGCONFIG`.
    pub logconfig: Option<PathBuf>,
    /// `-f` or `-d`: not detaching.
    pub foreground: bool,
    /// `-d`.
    pub debug: bool,
    /// `--log-format`.
    pub format: LogFormat,
    /// `RUST_LOG` (ignored with `-l`).
    pub rust_log: Option<String>,
}

/// The installed logging: reopen its files on SIGHUP.
#[derive(Debug, Default, Clone)]
pub struct Logging {
    sinks: Vec<Arc<sink::Sink>>,
    /// Notes about the config (e.g. a logger naming a Python-only library), to log once
    /// logging is up.
    pub warnings: Vec<String>,
}

impl Logging {
    /// Reopens every log file (after logrotate moved them, on SIGHUP); errors name the file.
    pub fn reopen(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for s in &self.sinks {
            if let Err(e) = s.reopen() {
                if let sink::Sink::File(f) = s.as_ref() {
                    errors.push(format!(
                        "cannot reopen log file {}: {e}",
                        f.path().display()
                    ));
                }
            }
        }
        errors
    }

    /// The log files (for the package test and the docs' examples).
    pub fn files(&self) -> Vec<PathBuf> {
        self.sinks
            .iter()
            .filter_map(|s| match s.as_ref() {
                sink::Sink::File(f) => Some(f.path().to_path_buf()),
                _ => None,
            })
            .collect()
    }
}

/// The config `opts` stands for: `-l`'s file, or Nodepool's default (with `RUST_LOG`
/// levels, when set, in place of the default loggers).
pub fn config_for(opts: &LogOptions) -> Result<LogConfig, LogConfigError> {
    if let Some(p) = &opts.logconfig {
        return LogConfig::load(p);
    }
    let mut cfg = LogConfig::nodepool_default(&opts.app, opts.foreground, opts.debug);
    if opts.rust_log.is_some() {
        let main = if opts.foreground { "console" } else { "normal" };
        cfg.loggers.clear();
        if let Some(h) = cfg.handlers.get_mut(main) {
            h.level = names::level::NOTSET;
        }
        cfg.root = dictconfig::LoggerSpec {
            level: Some(1),
            handlers: vec![main.to_string()],
            propagate: true,
        };
    }
    Ok(cfg)
}

/// Builds the layer for `opts`, opening its files, without installing it.
pub fn build(opts: &LogOptions) -> Result<(PyLogLayer, Logging), LogConfigError> {
    LazyLock::force(&START);
    let cfg = config_for(opts)?;
    let layer = PyLogLayer::build(&cfg, opts.format)?;
    let mut warnings = cfg.warnings.clone();
    if opts.logconfig.is_some() && opts.rust_log.is_some() {
        warnings.push("RUST_LOG is ignored: the levels come from the -l logging config".into());
    }
    let logging = Logging {
        sinks: layer.sinks(),
        warnings,
    };
    Ok((layer, logging))
}

/// Builds and installs the process-wide subscriber. Call before any thread is started
/// (it opens the log files, so that errors are reported before the daemon detaches).
pub fn install(opts: &LogOptions) -> Result<Logging, LogConfigError> {
    let (layer, logging) = build(opts)?;
    let filter = match (&opts.logconfig, &opts.rust_log) {
        (None, Some(spec)) => Some(tracing_subscriber::EnvFilter::new(spec)),
        _ => None,
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
    Ok(logging)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::subscriber::with_default;
    use tracing_subscriber::Registry;

    fn opts(logconfig: Option<PathBuf>) -> LogOptions {
        LogOptions {
            app: "nodepool".into(),
            logconfig,
            foreground: true,
            debug: false,
            format: LogFormat::Text,
            rust_log: None,
        }
    }

    /// Python's routing: levels inherited from the nearest configured ancestor, handler
    /// levels, propagation stopped by `propagate: false`, root catching the rest.
    #[test]
    fn routes_like_python_logging() {
        let d = tempfile::tempdir().unwrap();
        let f = |n: &str| d.path().join(n);
        let cfg = format!(
            r#"
version: 1
formatters:
  plain: {{format: '%(levelname)s %(name)s: %(message)s'}}
handlers:
  all: {{class: logging.FileHandler, filename: '{all}', formatter: plain}}
  warn: {{class: logging.FileHandler, filename: '{warn}', formatter: plain, level: WARNING}}
  zk: {{class: logging.FileHandler, filename: '{zk}', formatter: plain}}
  root: {{class: logging.FileHandler, filename: '{root}', formatter: plain}}
loggers:
  nodepool: {{level: INFO, handlers: [all, warn]}}
  nodepool.builder: {{level: DEBUG}}
  kazoo: {{level: DEBUG, handlers: [zk], propagate: false}}
root: {{level: ERROR, handlers: [root]}}
"#,
            all = f("all.log").display(),
            warn = f("warn.log").display(),
            zk = f("zk.log").display(),
            root = f("root.log").display()
        );
        std::fs::write(f("logging.yaml"), cfg).unwrap();
        let (layer, logging) = build(&opts(Some(f("logging.yaml")))).unwrap();
        assert_eq!(logging.files().len(), 4);
        with_default(Registry::default().with(layer), || {
            tracing::debug!(target: "nodepool_daemon::launcher::pool_worker", "hidden");
            tracing::info!(target: "nodepool_daemon::launcher::pool_worker", n = 3, "shown");
            tracing::debug!(target: "nodepool_daemon::builder::upload", "builder debug");
            tracing::warn!(target: "nodepool_shared::zk::client", "zk warn");
            tracing::debug!(target: "zookeeper_client::session", "kazoo debug");
            tracing::warn!(target: "tokio::task", "other warn");
            tracing::error!(target: "tokio::task", "other error");
        });
        let read = |n: &str| std::fs::read_to_string(f(n)).unwrap();
        let nodepool = "INFO nodepool.launcher.pool_worker: shown n=3\n\
                        DEBUG nodepool.builder.upload: builder debug\n\
                        WARNING nodepool.zk.client: zk warn\n";
        assert_eq!(read("all.log"), nodepool);
        // Propagated to root whatever root's level; root's own level drops the warning.
        assert_eq!(
            read("root.log"),
            format!("{nodepool}ERROR tokio.task: other error\n")
        );
        assert_eq!(read("warn.log"), "WARNING nodepool.zk.client: zk warn\n");
        assert_eq!(read("zk.log"), "DEBUG kazoo.client.session: kazoo debug\n");
    }

    #[test]
    fn json_lines_and_rust_log() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("j.log");
        std::fs::write(
            d.path().join("l.yaml"),
            format!(
                "version: 1\nhandlers:\n  f: {{class: logging.handlers.WatchedFileHandler, filename: '{}'}}\nroot: {{level: INFO, handlers: [f]}}\n",
                p.display()
            ),
        )
        .unwrap();
        let mut o = opts(Some(d.path().join("l.yaml")));
        o.format = LogFormat::Json;
        let (layer, _l) = build(&o).unwrap();
        with_default(Registry::default().with(layer), || {
            tracing::info!(target: "nodepool_daemon::launcher", node = "0000000001", "deleted");
        });
        let line = std::fs::read_to_string(&p).unwrap();
        let j: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(j["logger"], "nodepool.launcher");
        assert_eq!(j["message"], "deleted");
        assert_eq!(j["fields"]["node"], "0000000001");
        assert_eq!(line.matches('\n').count(), 1);
        // RUST_LOG: everything reaches the main handler; the EnvFilter decides.
        let mut r = opts(None);
        r.rust_log = Some("debug".into());
        let cfg = config_for(&r).unwrap();
        assert!(cfg.loggers.is_empty());
        assert_eq!(cfg.root.handlers, ["console"]);
    }

    #[test]
    fn log_format_parses() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("xml"
            .parse::<LogFormat>()
            .unwrap_err()
            .contains("text, json"));
    }
}
