//! Python's `logging.config.dictConfig` schema (version 1), read from the YAML (or JSON)
//! file of `-l LOGCONFIG`, and the configs Nodepool uses when `-l` is not given.
//!
//! Supported: `formatters` (`format`, `datefmt`, `style: '%'`, `class` `logging.Formatter`
//! or `nodepool.logconfig.MultiLineFormatter`), `handlers` of class
//! `logging.StreamHandler` (`stream: ext://sys.stdout|ext://sys.stderr`),
//! `logging.FileHandler`, `logging.handlers.WatchedFileHandler`,
//! `logging.handlers.RotatingFileHandler` (`maxBytes`, `backupCount`),
//! `logging.handlers.TimedRotatingFileHandler` (`when`, `interval`, `backupCount`,
//! `utc`) and `logging.NullHandler`, each with `level` and `formatter`; `loggers` by
//! name with `level`, `handlers`, `propagate`; `root`; `disable_existing_loggers`.
//! Every other key or class is an error naming it and its line: a logging config that
//! silently did less than it says would lose logs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::names::{self, level};
use super::sink::{Rotation, Timed};
use crate::config::yaml::{self, Node, Val};

/// Why a logging config was refused.
#[derive(Debug, thiserror::Error)]
pub enum LogConfigError {
    /// The file could not be read.
    #[error("cannot read logging config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a YAML/JSON dictConfig.
    #[error("logging config {path}: {msg}")]
    Syntax { path: PathBuf, msg: String },
    /// A key is wrong or not supported.
    #[error("logging config {path} line {line}: `{key}`: {msg}")]
    Invalid {
        path: PathBuf,
        line: u64,
        key: String,
        msg: String,
    },
    /// A log file could not be opened.
    #[error("cannot open log file {path} (handler `{handler}`): {source}")]
    Open {
        path: PathBuf,
        handler: String,
        #[source]
        source: std::io::Error,
    },
}

/// A `formatters` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatterSpec {
    /// `format` (default `%(message)s`).
    pub format: String,
    /// `datefmt`.
    pub datefmt: Option<String>,
    /// `nodepool.logconfig.MultiLineFormatter`.
    pub multiline: bool,
}

/// Where a handler writes.
#[derive(Debug, Clone, PartialEq)]
pub enum HandlerKind {
    /// `logging.StreamHandler` on stdout.
    Stdout,
    /// `logging.StreamHandler` on stderr (its default).
    Stderr,
    /// `logging.NullHandler`.
    Null,
    /// One of the file handlers.
    File {
        path: PathBuf,
        rotation: Rotation,
        truncate: bool,
    },
}

/// A `handlers` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerSpec {
    /// Destination.
    pub kind: HandlerKind,
    /// `level` (default NOTSET: everything).
    pub level: u8,
    /// `formatter` (default: `%(message)s`).
    pub formatter: Option<String>,
}

/// A `loggers` entry or `root`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoggerSpec {
    /// `level`; `None` = NOTSET (inherit).
    pub level: Option<u8>,
    /// `handlers`.
    pub handlers: Vec<String>,
    /// `propagate` (default true).
    pub propagate: bool,
}

/// A whole logging config.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `formatters` by name.
    pub formatters: BTreeMap<String, FormatterSpec>,
    /// `handlers` by name.
    pub handlers: BTreeMap<String, HandlerSpec>,
    /// `loggers` by (our) name.
    pub loggers: BTreeMap<String, LoggerSpec>,
    /// `root` (level WARNING unless set).
    pub root: LoggerSpec,
    /// Things worth telling the operator that are not errors (logged at start).
    pub warnings: Vec<String>,
}

/// Nodepool's log line format (its `simple` formatter).
pub const NODEPOOL_FORMAT: &str = "%(asctime)s %(levelname)s %(name)s: %(message)s";

impl LogConfig {
    /// What Python Nodepool does without `-l`: in the foreground (`-f`/`-d`) the
    /// `nodepool` loggers at INFO (DEBUG with `-d`) and `requests`, `openstack`, `kazoo`
    /// at WARNING go to stdout; as a daemon they go to
    /// `/var/log/nodepool/<app>.log` (a `WatchedFileHandler`) instead. Everything else
    /// reaches only the root logger, which discards it.
    pub fn nodepool_default(app: &str, foreground: bool, debug: bool) -> LogConfig {
        let info = if debug { level::DEBUG } else { level::INFO };
        let mut formatters = BTreeMap::new();
        formatters.insert(
            "simple".to_string(),
            FormatterSpec {
                format: NODEPOOL_FORMAT.into(),
                datefmt: None,
                multiline: true,
            },
        );
        let (handler, kind) = if foreground {
            ("console", HandlerKind::Stdout)
        } else {
            (
                "normal",
                HandlerKind::File {
                    path: PathBuf::from(format!("/var/log/nodepool/{app}.log")),
                    rotation: Rotation::Watched,
                    truncate: false,
                },
            )
        };
        let mut handlers = BTreeMap::new();
        handlers.insert(
            handler.to_string(),
            HandlerSpec {
                kind,
                level: info,
                formatter: Some("simple".into()),
            },
        );
        handlers.insert(
            "null".to_string(),
            HandlerSpec {
                kind: HandlerKind::Null,
                level: level::NOTSET,
                formatter: None,
            },
        );
        let mut loggers = BTreeMap::new();
        for (name, l) in [
            ("nodepool", info),
            ("requests", level::WARNING),
            ("openstack", level::WARNING),
            ("kazoo", level::WARNING),
        ] {
            loggers.insert(
                name.to_string(),
                LoggerSpec {
                    level: Some(l),
                    handlers: vec![handler.to_string()],
                    propagate: true,
                },
            );
        }
        LogConfig {
            formatters,
            handlers,
            loggers,
            root: LoggerSpec {
                level: Some(level::WARNING),
                handlers: vec!["null".into()],
                propagate: true,
            },
            warnings: Vec::new(),
        }
    }

    /// Reads `-l LOGCONFIG`: a `.yaml`, `.yml` or `.json` dictConfig, as Nodepool.
    pub fn load(path: &Path) -> Result<LogConfig, LogConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| LogConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "yaml" | "yml" | "json") {
            return Err(LogConfigError::Syntax {
                path: path.to_path_buf(),
                msg: "only a YAML or JSON dictConfig (a .yaml, .yml or .json file) is supported; \
                      Python's INI-style fileConfig is not: convert it to a dictConfig \
                      (see docs/operation.md, Logging)"
                    .into(),
            });
        }
        Self::parse(path, &text)
    }

    /// Parses dictConfig text; `path` only names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<LogConfig, LogConfigError> {
        let root = yaml::parse(text).map_err(|e| LogConfigError::Syntax {
            path: path.to_path_buf(),
            msg: format!("line {}: {}", e.pos.line, e.message),
        })?;
        Reader { path }.config(&root)
    }
}

/// Walks the YAML tree, naming the key of every problem.
struct Reader<'a> {
    path: &'a Path,
}

type Res<T> = Result<T, LogConfigError>;

impl Reader<'_> {
    fn err(&self, node: &Node, key: &str, msg: impl Into<String>) -> LogConfigError {
        LogConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: node.pos.line,
            key: key.to_string(),
            msg: msg.into(),
        }
    }

    fn map<'n>(&self, node: &'n Node, key: &str) -> Res<Vec<(String, &'n Node)>> {
        match &node.val {
            Val::Map(entries) => entries
                .iter()
                .map(|(k, v)| match &k.val {
                    Val::Str(s) => Ok((s.clone(), v)),
                    other => Err(self.err(
                        k,
                        key,
                        format!("keys must be strings, got {}", other.describe()),
                    )),
                })
                .collect(),
            Val::Null => Ok(Vec::new()),
            other => Err(self.err(
                node,
                key,
                format!("expected a mapping, got {}", other.describe()),
            )),
        }
    }

    fn string(&self, node: &Node, key: &str) -> Res<String> {
        match &node.val {
            Val::Str(s) => Ok(s.clone()),
            Val::Int(i) => Ok(i.to_string()),
            other => Err(self.err(
                node,
                key,
                format!("expected a string, got {}", other.describe()),
            )),
        }
    }

    fn int(&self, node: &Node, key: &str) -> Res<u64> {
        match &node.val {
            Val::Int(i) if *i >= 0 => {
                u64::try_from(*i).map_err(|_| self.err(node, key, "too large"))
            }
            other => Err(self.err(
                node,
                key,
                format!("expected a non-negative integer, got {}", other.describe()),
            )),
        }
    }

    fn boolean(&self, node: &Node, key: &str) -> Res<bool> {
        match &node.val {
            Val::Bool(b) => Ok(*b),
            Val::Int(i) => Ok(*i != 0),
            other => Err(self.err(
                node,
                key,
                format!("expected true or false, got {}", other.describe()),
            )),
        }
    }

    fn level(&self, node: &Node, key: &str) -> Res<u8> {
        let text = match &node.val {
            Val::Str(s) => s.clone(),
            Val::Int(i) => i.to_string(),
            other => {
                return Err(self.err(
                    node,
                    key,
                    format!("expected a level, got {}", other.describe()),
                ))
            }
        };
        names::parse_level(&text).ok_or_else(|| {
            self.err(node, key, format!("unknown level `{text}` (DEBUG, INFO, WARNING, ERROR, CRITICAL, NOTSET or a number)"))
        })
    }

    fn unsupported(&self, node: &Node, key: &str) -> LogConfigError {
        self.err(node, key, "not supported by Nodepool in Rust")
    }

    fn config(&self, root: &Node) -> Res<LogConfig> {
        let mut cfg = LogConfig {
            formatters: BTreeMap::new(),
            handlers: BTreeMap::new(),
            loggers: BTreeMap::new(),
            root: LoggerSpec {
                level: Some(level::WARNING),
                handlers: Vec::new(),
                propagate: true,
            },
            warnings: Vec::new(),
        };
        if !matches!(root.val, Val::Map(_)) {
            return Err(self.err(
                root,
                "(top level)",
                "a dictConfig is a mapping with `version: 1`",
            ));
        }
        let mut version = None;
        for (k, v) in self.map(root, "(top level)")? {
            match k.as_str() {
                "version" => version = Some(self.int(v, "version")?),
                "formatters" => {
                    for (name, f) in self.map(v, "formatters")? {
                        let spec = self.formatter(&format!("formatters.{name}"), f)?;
                        cfg.formatters.insert(name, spec);
                    }
                }
                "handlers" => {
                    for (name, h) in self.map(v, "handlers")? {
                        let spec = self.handler(&format!("handlers.{name}"), h)?;
                        cfg.handlers.insert(name, spec);
                    }
                }
                "loggers" => {
                    for (name, l) in self.map(v, "loggers")? {
                        let key = format!("loggers.{name}");
                        let spec = self.logger(&key, l)?;
                        if !names::matches_something(&name) {
                            cfg.warnings.push(format!(
                                "logger `{name}` names a Python library Nodepool in Rust does not use; it applies to nothing"
                            ));
                        }
                        cfg.loggers.insert(names::config_name(&name), spec);
                    }
                }
                "root" => {
                    let spec = self.logger("root", v)?;
                    cfg.root = LoggerSpec {
                        level: spec.level.or(Some(level::WARNING)),
                        ..spec
                    };
                }
                "disable_existing_loggers" => {
                    self.boolean(v, &k)?;
                }
                "incremental" => {
                    if self.boolean(v, &k)? {
                        return Err(self.err(v, &k, "incremental configs are not supported"));
                    }
                }
                "filters" => {
                    if !self.map(v, &k)?.is_empty() {
                        return Err(self.err(v, &k, "filters are not supported"));
                    }
                }
                _ => return Err(self.unsupported(v, &k)),
            }
        }
        match version {
            Some(1) => {}
            Some(n) => {
                return Err(self.err(root, "version", format!("unsupported version {n} (only 1)")))
            }
            None => {
                return Err(self.err(root, "version", "missing (a dictConfig needs `version: 1`)"))
            }
        }
        self.check_references(&cfg, root)?;
        Ok(cfg)
    }

    fn check_references(&self, cfg: &LogConfig, root: &Node) -> Res<()> {
        for (name, h) in &cfg.handlers {
            if let Some(f) = &h.formatter {
                if !cfg.formatters.contains_key(f) {
                    return Err(self.err(
                        root,
                        &format!("handlers.{name}.formatter"),
                        format!("no formatter named `{f}`"),
                    ));
                }
            }
        }
        let loggers = cfg.loggers.iter().map(|(n, l)| (format!("loggers.{n}"), l));
        for (key, l) in loggers.chain(std::iter::once(("root".to_string(), &cfg.root))) {
            for h in &l.handlers {
                if !cfg.handlers.contains_key(h) {
                    return Err(self.err(
                        root,
                        &format!("{key}.handlers"),
                        format!("no handler named `{h}`"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn formatter(&self, key: &str, node: &Node) -> Res<FormatterSpec> {
        let mut spec = FormatterSpec {
            format: super::format::DEFAULT_FORMAT.into(),
            datefmt: None,
            multiline: false,
        };
        for (k, v) in self.map(node, key)? {
            let kk = format!("{key}.{k}");
            match k.as_str() {
                "format" => spec.format = self.string(v, &kk)?,
                "datefmt" => spec.datefmt = Some(self.string(v, &kk)?),
                "style" => {
                    let s = self.string(v, &kk)?;
                    if s != "%" {
                        return Err(self.err(v, &kk, format!("style `{s}` is not supported (only `%`)")));
                    }
                }
                "validate" => {
                    self.boolean(v, &kk)?;
                }
                "class" => {
                    spec.multiline = match self.string(v, &kk)?.as_str() {
                        "logging.Formatter" => false,
                        "nodepool.logconfig.MultiLineFormatter" => true,
                        other => {
                            return Err(self.err(v, &kk, format!("formatter class `{other}` is not supported (logging.Formatter, nodepool.logconfig.MultiLineFormatter)")))
                        }
                    }
                }
                _ => return Err(self.unsupported(v, &kk)),
            }
        }
        super::format::Formatter::new(&spec.format, spec.datefmt.as_deref(), spec.multiline)
            .map_err(|e| self.err(node, &format!("{key}.format"), e.to_string()))?;
        Ok(spec)
    }

    fn handler(&self, key: &str, node: &Node) -> Res<HandlerSpec> {
        let entries = self.map(node, key)?;
        let get = |name: &str| entries.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        let class_node =
            get("class").ok_or_else(|| self.err(node, &format!("{key}.class"), "missing"))?;
        let class = self.string(class_node, &format!("{key}.class"))?;
        let allowed: &[&str] = match class.as_str() {
            "logging.StreamHandler" => &["stream"],
            "logging.NullHandler" => &[],
            "logging.FileHandler" | "logging.handlers.WatchedFileHandler" => {
                &["filename", "mode", "encoding", "delay"]
            }
            "logging.handlers.RotatingFileHandler" => {
                &["filename", "mode", "encoding", "delay", "maxBytes", "backupCount"]
            }
            "logging.handlers.TimedRotatingFileHandler" => {
                &["filename", "encoding", "delay", "when", "interval", "backupCount", "utc"]
            }
            other => {
                return Err(self.err(
                    class_node,
                    &format!("{key}.class"),
                    format!(
                        "handler class `{other}` is not supported (logging.StreamHandler, logging.FileHandler, \
                         logging.handlers.WatchedFileHandler, logging.handlers.RotatingFileHandler, \
                         logging.handlers.TimedRotatingFileHandler, logging.NullHandler)"
                    ),
                ))
            }
        };
        let mut spec = HandlerSpec {
            kind: HandlerKind::Stderr,
            level: level::NOTSET,
            formatter: None,
        };
        for (k, v) in &entries {
            let kk = format!("{key}.{k}");
            match k.as_str() {
                "class" => {}
                "level" => spec.level = self.level(v, &kk)?,
                "formatter" => spec.formatter = Some(self.string(v, &kk)?),
                "filters" => {
                    if !matches!(&v.val, Val::Seq(s) if s.is_empty()) {
                        return Err(self.err(v, &kk, "filters are not supported"));
                    }
                }
                "encoding" => {
                    let e = self.string(v, &kk)?.to_ascii_lowercase();
                    if !matches!(e.as_str(), "utf-8" | "utf8") {
                        return Err(self.err(
                            v,
                            &kk,
                            format!("encoding `{e}` is not supported (only utf-8)"),
                        ));
                    }
                }
                "delay" => {
                    self.boolean(v, &kk)?;
                }
                k if allowed.contains(&k) => {}
                _ => return Err(self.unsupported(v, &kk)),
            }
        }
        spec.kind = self.handler_kind(key, &class, node, &get)?;
        Ok(spec)
    }

    fn handler_kind<'n>(
        &self,
        key: &str,
        class: &str,
        node: &Node,
        get: &dyn Fn(&str) -> Option<&'n Node>,
    ) -> Res<HandlerKind> {
        if class == "logging.NullHandler" {
            return Ok(HandlerKind::Null);
        }
        if class == "logging.StreamHandler" {
            let Some(s) = get("stream") else {
                return Ok(HandlerKind::Stderr);
            };
            return match self.string(s, &format!("{key}.stream"))?.as_str() {
                "ext://sys.stdout" => Ok(HandlerKind::Stdout),
                "ext://sys.stderr" => Ok(HandlerKind::Stderr),
                other => Err(self.err(
                    s,
                    &format!("{key}.stream"),
                    format!(
                        "stream `{other}` is not supported (ext://sys.stdout, ext://sys.stderr)"
                    ),
                )),
            };
        }
        let f =
            get("filename").ok_or_else(|| self.err(node, &format!("{key}.filename"), "missing"))?;
        let path = PathBuf::from(self.string(f, &format!("{key}.filename"))?);
        let truncate = match get("mode") {
            None => false,
            Some(m) => match self.string(m, &format!("{key}.mode"))?.as_str() {
                "a" => false,
                "w" => true,
                other => {
                    return Err(self.err(
                        m,
                        &format!("{key}.mode"),
                        format!("mode `{other}` is not supported (a, w)"),
                    ))
                }
            },
        };
        let backups = match get("backupCount") {
            Some(b) => {
                u32::try_from(self.int(b, &format!("{key}.backupCount"))?).unwrap_or(u32::MAX)
            }
            None => 0,
        };
        let rotation = match class {
            "logging.FileHandler" => Rotation::None,
            "logging.handlers.WatchedFileHandler" => Rotation::Watched,
            "logging.handlers.RotatingFileHandler" => Rotation::Size {
                max_bytes: match get("maxBytes") {
                    Some(m) => self.int(m, &format!("{key}.maxBytes"))?,
                    None => 0,
                },
                backups,
            },
            _ => Rotation::Timed(self.timed(key, backups, get)?),
        };
        Ok(HandlerKind::File {
            path,
            rotation,
            truncate,
        })
    }

    fn timed<'n>(
        &self,
        key: &str,
        backups: u32,
        get: &dyn Fn(&str) -> Option<&'n Node>,
    ) -> Res<Timed> {
        let when = match get("when") {
            Some(w) => {
                let s = self.string(w, &format!("{key}.when"))?.to_ascii_uppercase();
                let ok = matches!(s.as_str(), "S" | "M" | "H" | "D" | "MIDNIGHT")
                    || (s.len() == 2
                        && s.starts_with('W')
                        && matches!(s.as_bytes()[1], b'0'..=b'6'));
                if !ok {
                    return Err(self.err(
                        w,
                        &format!("{key}.when"),
                        format!("`{s}` is not one of S, M, H, D, midnight, W0-W6"),
                    ));
                }
                s
            }
            None => "H".into(),
        };
        let interval = match get("interval") {
            Some(i) => self.int(i, &format!("{key}.interval"))?.max(1),
            None => 1,
        };
        let utc = match get("utc") {
            Some(u) => self.boolean(u, &format!("{key}.utc"))?,
            None => false,
        };
        Ok(Timed {
            when,
            interval,
            backups,
            utc,
        })
    }

    fn logger(&self, key: &str, node: &Node) -> Res<LoggerSpec> {
        let mut spec = LoggerSpec {
            level: None,
            handlers: Vec::new(),
            propagate: true,
        };
        for (k, v) in self.map(node, key)? {
            let kk = format!("{key}.{k}");
            match k.as_str() {
                "level" => {
                    let l = self.level(v, &kk)?;
                    spec.level = (l != level::NOTSET).then_some(l);
                }
                "handlers" => {
                    let Val::Seq(items) = &v.val else {
                        return Err(self.err(
                            v,
                            &kk,
                            format!("expected a list of handler names, got {}", v.val.describe()),
                        ));
                    };
                    for i in items {
                        spec.handlers.push(self.string(i, &kk)?);
                    }
                }
                "propagate" => spec.propagate = self.boolean(v, &kk)?,
                "filters" => {
                    if !matches!(&v.val, Val::Seq(s) if s.is_empty()) {
                        return Err(self.err(v, &kk, "filters are not supported"));
                    }
                }
                _ => return Err(self.unsupported(v, &kk)),
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LogConfig, String> {
        LogConfig::parse(Path::new("logging.yaml"), text).map_err(|e| e.to_string())
    }

    /// The logging config of Nodepool's own docs and deployments, as operators have it.
    const TYPICAL: &str = r#"
version: 1
formatters:
  simple:
    class: nodepool.logconfig.MultiLineFormatter
    format: '%(asctime)s %(levelname)s %(name)s: %(message)s'
handlers:
  console:
    class: logging.StreamHandler
    stream: ext://sys.stdout
    level: INFO
    formatter: simple
  debug:
    class: logging.handlers.WatchedFileHandler
    filename: /var/log/nodepool/launcher-debug.log
    level: DEBUG
    formatter: simple
  normal:
    class: logging.handlers.TimedRotatingFileHandler
    filename: /var/log/nodepool/launcher.log
    when: midnight
    backupCount: 30
    level: INFO
    formatter: simple
loggers:
  nodepool:
    handlers: [console, debug, normal]
    level: DEBUG
  kazoo:
    handlers: [debug]
    level: INFO
    propagate: false
  nodepool.PoolWorker.cloud1-main:
    level: WARNING
  paramiko:
    level: WARNING
root:
  handlers: [debug]
  level: WARN
"#;

    #[test]
    fn typical_config() {
        let c = parse(TYPICAL).unwrap();
        assert!(c.formatters["simple"].multiline);
        assert_eq!(c.handlers["console"].kind, HandlerKind::Stdout);
        assert_eq!(c.handlers["console"].level, level::INFO);
        assert!(matches!(
            &c.handlers["normal"].kind,
            HandlerKind::File { rotation: Rotation::Timed(t), .. } if t.when == "MIDNIGHT" && t.backups == 30
        ));
        assert_eq!(c.loggers["nodepool"].level, Some(level::DEBUG));
        assert!(!c.loggers["kazoo"].propagate);
        assert!(c.loggers.contains_key("nodepool.launcher.pool_worker"));
        assert_eq!(c.root.level, Some(level::WARNING));
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("paramiko"));
    }

    #[test]
    fn unsupported_keys_are_errors_naming_them() {
        let cases = [
            ("version: 2\n", "`version`: unsupported version 2"),
            ("handlers: {}\n", "`version`: missing"),
            (
                "version: 1\nhandlers:\n  s:\n    class: logging.handlers.SysLogHandler\n",
                "line 4: `handlers.s.class`: handler class `logging.handlers.SysLogHandler` is not supported",
            ),
            (
                "version: 1\nhandlers:\n  s:\n    class: logging.StreamHandler\n    stream: ext://sys.stdin\n",
                "`handlers.s.stream`: stream `ext://sys.stdin` is not supported",
            ),
            (
                "version: 1\nformatters:\n  f:\n    format: '%(funcName)s'\n",
                "`formatters.f.format`: `%(funcName)` is not supported",
            ),
            (
                "version: 1\nformatters:\n  f:\n    style: '{'\n",
                "`formatters.f.style`: style `{` is not supported",
            ),
            (
                "version: 1\nloggers:\n  nodepool:\n    level: LOUD\n",
                "`loggers.nodepool.level`: unknown level `LOUD`",
            ),
            (
                "version: 1\nloggers:\n  nodepool:\n    handlers: [nope]\n",
                "`loggers.nodepool.handlers`: no handler named `nope`",
            ),
            (
                "version: 1\nhandlers:\n  h:\n    class: logging.StreamHandler\n    formatter: nope\n",
                "`handlers.h.formatter`: no formatter named `nope`",
            ),
            (
                "version: 1\nfilters:\n  f: {name: x}\n",
                "`filters`: filters are not supported",
            ),
            (
                "version: 1\nhandlers:\n  h:\n    class: logging.FileHandler\n",
                "`handlers.h.filename`: missing",
            ),
            (
                "version: 1\nhandlers:\n  h:\n    class: logging.FileHandler\n    filename: x\n    maxBytes: 3\n",
                "`handlers.h.maxBytes`: not supported",
            ),
            ("version: 1\nroot:\n  level: INFO\n  qualname: x\n", "`root.qualname`: not supported"),
            ("version: 1\nextra: 1\n", "`extra`: not supported"),
            ("[1, 2]\n", "a dictConfig is a mapping"),
            ("version: [1\n", "line 1"),
        ];
        for (text, want) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.starts_with("logging config logging.yaml"), "{e}");
        }
    }

    #[test]
    fn ini_files_are_refused_with_advice() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("logging.conf");
        std::fs::write(&p, "[loggers]\nkeys=root\n").unwrap();
        let e = LogConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("fileConfig is not"), "{e}");
        let e = LogConfig::load(&d.path().join("missing.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cannot read logging config"), "{e}");
    }

    #[test]
    fn nodepool_defaults() {
        let fg = LogConfig::nodepool_default("nodepool", true, false);
        assert_eq!(fg.handlers["console"].kind, HandlerKind::Stdout);
        assert_eq!(fg.loggers["nodepool"].level, Some(level::INFO));
        assert_eq!(fg.loggers["kazoo"].level, Some(level::WARNING));
        let dbg = LogConfig::nodepool_default("nodepool", true, true);
        assert_eq!(dbg.handlers["console"].level, level::DEBUG);
        assert_eq!(dbg.loggers["nodepool"].level, Some(level::DEBUG));
        assert_eq!(dbg.loggers["openstack"].level, Some(level::WARNING));
        let d = LogConfig::nodepool_default("nodepool-builder", false, false);
        assert!(matches!(
            &d.handlers["normal"].kind,
            HandlerKind::File { path, rotation: Rotation::Watched, .. }
                if path == Path::new("/var/log/nodepool/nodepool-builder.log")
        ));
    }
}
