//! The tracing layer that routes events like Python's logging module: each event's
//! logger name ([`super::names::python_name`]) has an effective level (its own or the
//! nearest configured ancestor's, the root's last); an event at or above it goes to the
//! handlers of that logger and of each ancestor until one has `propagate: false`, each
//! handler taking it if the event is at or above the handler's own level. With no
//! handler anywhere on the way, a WARNING or worse goes to stderr (Python's "last
//! resort"). The route of each target is computed once and cached.

use crate::sync::RwLockExt;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use super::dictconfig::{HandlerKind, LogConfig, LogConfigError};
use super::format::{json_line, Formatter, Record};
use super::names::{self, level};
use super::sink::{FileSink, Sink};
use super::LogFormat;

/// A handler ready to write.
#[derive(Debug)]
pub(crate) struct Handler {
    level: u8,
    formatter: Formatter,
    pub(crate) sink: Arc<Sink>,
}

/// Where one logger name's events go.
#[derive(Debug)]
struct Route {
    name: String,
    level: u8,
    handlers: Vec<usize>,
}

#[derive(Debug)]
struct LoggerNode {
    name: String,
    level: Option<u8>,
    handlers: Vec<usize>,
    propagate: bool,
}

/// The layer: handlers, the logger tree and the route cache.
#[derive(Debug)]
pub struct PyLogLayer {
    handlers: Vec<Handler>,
    /// Configured loggers, longest name first (the first match is the nearest).
    loggers: Vec<LoggerNode>,
    root: LoggerNode,
    format: LogFormat,
    routes: RwLock<HashMap<String, Arc<Route>>>,
}

impl PyLogLayer {
    /// Opens every handler's sink (files are created here, so errors come before the
    /// daemon detaches) and builds the logger tree.
    pub fn build(cfg: &LogConfig, format: LogFormat) -> Result<PyLogLayer, LogConfigError> {
        let mut index = HashMap::new();
        let mut handlers = Vec::new();
        for (name, h) in &cfg.handlers {
            let formatter = match h.formatter.as_ref().and_then(|f| cfg.formatters.get(f)) {
                Some(f) => Formatter::new(&f.format, f.datefmt.as_deref(), f.multiline),
                None => Formatter::new(super::format::DEFAULT_FORMAT, None, false),
            }
            .map_err(|e| LogConfigError::Syntax {
                path: "(formatter)".into(),
                msg: e.to_string(),
            })?;
            let sink = match &h.kind {
                HandlerKind::Stdout => Sink::Stdout,
                HandlerKind::Stderr => Sink::Stderr,
                HandlerKind::Null => Sink::Null,
                HandlerKind::File {
                    path,
                    rotation,
                    truncate,
                } => Sink::File(FileSink::open(path, rotation.clone(), *truncate).map_err(
                    |source| LogConfigError::Open {
                        path: path.clone(),
                        handler: name.clone(),
                        source,
                    },
                )?),
            };
            index.insert(name.clone(), handlers.len());
            handlers.push(Handler {
                level: h.level,
                formatter,
                sink: Arc::new(sink),
            });
        }
        let node = |name: &str, spec: &super::dictconfig::LoggerSpec| LoggerNode {
            name: name.to_string(),
            level: spec.level,
            handlers: spec
                .handlers
                .iter()
                .filter_map(|h| index.get(h).copied())
                .collect(),
            propagate: spec.propagate,
        };
        let mut loggers: Vec<LoggerNode> = cfg.loggers.iter().map(|(n, s)| node(n, s)).collect();
        loggers.sort_by_key(|l| std::cmp::Reverse(l.name.len()));
        let root = node("root", &cfg.root);
        Ok(PyLogLayer {
            handlers,
            loggers,
            root,
            format,
            routes: RwLock::new(HashMap::new()),
        })
    }

    /// The sinks (for SIGHUP reopening).
    pub(crate) fn sinks(&self) -> Vec<Arc<Sink>> {
        self.handlers.iter().map(|h| h.sink.clone()).collect()
    }

    fn route(&self, target: &str) -> Arc<Route> {
        if let Some(r) = self.routes.read_or_recover().get(target) {
            return r.clone();
        }
        let name = names::python_name(target);
        let chain: Vec<&LoggerNode> = self
            .loggers
            .iter()
            .filter(|l| name == l.name || name.starts_with(&format!("{}.", l.name)))
            .chain(std::iter::once(&self.root))
            .collect();
        let level = chain.iter().find_map(|l| l.level).unwrap_or(level::WARNING);
        let mut handlers = Vec::new();
        for l in &chain {
            handlers.extend(l.handlers.iter().copied());
            if !l.propagate {
                break;
            }
        }
        let r = Arc::new(Route {
            name,
            level,
            handlers,
        });
        self.routes
            .write_or_recover()
            .insert(target.to_string(), r.clone());
        r
    }

    /// Whether an event with this metadata would be written anywhere.
    fn wanted(&self, meta: &Metadata<'_>) -> bool {
        let lvl = names::from_tracing(meta.level());
        let r = self.route(meta.target());
        if lvl < r.level {
            return false;
        }
        if r.handlers.is_empty() {
            return lvl >= level::WARNING;
        }
        r.handlers.iter().any(|&h| {
            lvl >= self.handlers[h].level && !matches!(*self.handlers[h].sink, Sink::Null)
        })
    }

    fn emit(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let lvl = names::from_tracing(meta.level());
        let route = self.route(meta.target());
        if lvl < route.level {
            return;
        }
        let mut v = Collect::default();
        event.record(&mut v);
        let rec = Record {
            level: lvl,
            name: route.name.clone(),
            target: meta.target().to_string(),
            message: v.message,
            fields: v.fields,
            file: meta.file().map(str::to_string),
            line: meta.line(),
            time: SystemTime::now(),
        };
        if route.handlers.is_empty() {
            if lvl >= level::WARNING {
                let _ = writeln!(std::io::stderr(), "{}", rec.full_message());
            }
            return;
        }
        let mut json = None;
        for &h in &route.handlers {
            let handler = &self.handlers[h];
            if lvl < handler.level || matches!(*handler.sink, Sink::Null) {
                continue;
            }
            let mut line = match self.format {
                LogFormat::Json => json.get_or_insert_with(|| json_line(&rec)).clone(),
                LogFormat::Text => handler.formatter.format(&rec),
            };
            line.push('\n');
            handler.sink.write(line.as_bytes());
        }
    }
}

impl<S: Subscriber> Layer<S> for PyLogLayer {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if !meta.is_event() || self.wanted(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        !meta.is_event() || self.wanted(meta)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        self.emit(event);
    }
}

/// Collects an event's message and fields.
#[derive(Default)]
struct Collect {
    message: String,
    fields: Vec<(String, serde_json::Value)>,
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields.push((field.name().to_string(), value.into()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.push((field.name().to_string(), value.into()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.push((field.name().to_string(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.push((field.name().to_string(), value.into()));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.push((field.name().to_string(), value.into()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.push((field.name().to_string(), text.into()));
        }
    }
}
