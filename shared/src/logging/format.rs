//! Python `logging.Formatter` with `%`-style format strings, rendered for one record:
//! `%(asctime)s %(levelname)s %(name)s: %(message)s`, `datefmt` through the C library's
//! `strftime` in local time (exactly what Python's `time.strftime` does), Nodepool's
//! `MultiLineFormatter` (each further line of a message repeats the prefix, indented by
//! two spaces), and the one-JSON-object-per-line format of `--log-format json`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::names::level_name;

/// One log event, rendered once and formatted by every handler that takes it.
#[derive(Debug, Clone)]
pub struct Record {
    /// Python level number.
    pub level: u8,
    /// Python logger name.
    pub name: String,
    /// The tracing target (module path).
    pub target: String,
    /// The message, without the fields.
    pub message: String,
    /// The event's other fields, in order, as display text and as JSON.
    pub fields: Vec<(String, serde_json::Value)>,
    /// Source file, if known.
    pub file: Option<String>,
    /// Source line, if known.
    pub line: Option<u32>,
    /// When it happened.
    pub time: SystemTime,
}

impl Record {
    /// The message followed by its fields (`message key=value …`), as `%(message)s`.
    pub fn full_message(&self) -> String {
        let mut s = self.message.clone();
        for (k, v) in &self.fields {
            if !s.is_empty() {
                s.push(' ');
            }
            match v {
                serde_json::Value::String(t) => {
                    let _ = write!(s, "{k}={t}");
                }
                other => {
                    let _ = write!(s, "{k}={other}");
                }
            }
        }
        s
    }
}

/// A `%(key)…` field a format string may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Asctime,
    Created,
    Filename,
    Levelname,
    Levelno,
    Lineno,
    Message,
    Module,
    Msecs,
    Name,
    Pathname,
    Process,
    ProcessName,
    RelativeCreated,
    Thread,
    ThreadName,
}

impl Field {
    fn parse(key: &str) -> Option<Field> {
        Some(match key {
            "asctime" => Field::Asctime,
            "created" => Field::Created,
            "filename" => Field::Filename,
            "levelname" => Field::Levelname,
            "levelno" => Field::Levelno,
            "lineno" => Field::Lineno,
            "message" => Field::Message,
            "module" => Field::Module,
            "msecs" => Field::Msecs,
            "name" => Field::Name,
            "pathname" => Field::Pathname,
            "process" => Field::Process,
            "processName" => Field::ProcessName,
            "relativeCreated" => Field::RelativeCreated,
            "thread" => Field::Thread,
            "threadName" => Field::ThreadName,
            _ => return None,
        })
    }
}

/// `%(key)[flags][width][.precision]conversion`.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    field: Field,
    left: bool,
    zero: bool,
    width: usize,
    precision: Option<usize>,
    conv: char,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Field(Spec),
}

/// Why a format string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A `%(key)` that is not a LogRecord attribute we provide.
    #[error("`%({0})` is not supported (supported: asctime, created, filename, levelname, levelno, lineno, message, module, msecs, name, pathname, process, processName, relativeCreated, thread, threadName)")]
    UnknownField(String),
    /// Anything else malformed.
    #[error("{0}")]
    Malformed(String),
}

/// A compiled formatter.
#[derive(Debug, Clone)]
pub struct Formatter {
    parts: Vec<Part>,
    datefmt: Option<String>,
    multiline: bool,
    uses_asctime: bool,
}

/// Python's default format when a formatter gives none.
pub const DEFAULT_FORMAT: &str = "%(message)s";

impl Formatter {
    /// Compiles `fmt` (`%`-style). `multiline` selects Nodepool's `MultiLineFormatter`.
    pub fn new(fmt: &str, datefmt: Option<&str>, multiline: bool) -> Result<Self, FormatError> {
        let parts = parse(fmt)?;
        let uses_asctime = parts
            .iter()
            .any(|p| matches!(p, Part::Field(s) if s.field == Field::Asctime));
        Ok(Formatter {
            parts,
            datefmt: datefmt.map(str::to_string),
            multiline,
            uses_asctime,
        })
    }

    /// The formatted record, without the trailing newline.
    pub fn format(&self, r: &Record) -> String {
        let asctime = if self.uses_asctime {
            asctime(r.time, self.datefmt.as_deref())
        } else {
            String::new()
        };
        let message = r.full_message();
        let first = self.render(r, &asctime, &message);
        if !self.multiline || !first.contains('\n') {
            return first;
        }
        let mut out = String::with_capacity(first.len() * 2);
        for (i, line) in first.split('\n').enumerate() {
            if i == 0 {
                out.push_str(line);
            } else {
                out.push('\n');
                out.push_str(&self.render(r, &asctime, &format!("  {line}")));
            }
        }
        out
    }

    fn render(&self, r: &Record, asctime: &str, message: &str) -> String {
        let mut out = String::with_capacity(64 + message.len());
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(spec) => render_field(&mut out, spec, r, asctime, message),
            }
        }
        out
    }
}

fn parse(fmt: &str) -> Result<Vec<Part>, FormatError> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = fmt;
    while let Some(pos) = rest.find('%') {
        text.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        if let Some(r) = rest.strip_prefix('%') {
            text.push('%');
            rest = r;
            continue;
        }
        let Some(r) = rest.strip_prefix('(') else {
            return Err(FormatError::Malformed(format!(
                "a `%` must be followed by `(key)` or `%` (at `%{}`)",
                rest.chars().take(8).collect::<String>()
            )));
        };
        let close = r
            .find(')')
            .ok_or_else(|| FormatError::Malformed("unclosed `%(`".into()))?;
        let key = &r[..close];
        let field = Field::parse(key).ok_or_else(|| FormatError::UnknownField(key.into()))?;
        let (spec, after) = parse_spec(field, &r[close + 1..])?;
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        parts.push(Part::Field(spec));
        rest = after;
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

fn parse_spec(field: Field, s: &str) -> Result<(Spec, &str), FormatError> {
    let mut spec = Spec {
        field,
        left: false,
        zero: false,
        width: 0,
        precision: None,
        conv: 's',
    };
    let mut chars = s.char_indices().peekable();
    while let Some(&(_, c)) = chars.peek() {
        match c {
            '-' => spec.left = true,
            '0' => spec.zero = true,
            ' ' | '+' | '#' => {}
            _ => break,
        }
        chars.next();
    }
    let mut width = String::new();
    while let Some(&(_, c)) = chars.peek() {
        if !c.is_ascii_digit() {
            break;
        }
        width.push(c);
        chars.next();
    }
    spec.width = width.parse().unwrap_or(0);
    if let Some(&(_, '.')) = chars.peek() {
        chars.next();
        let mut p = String::new();
        while let Some(&(_, c)) = chars.peek() {
            if !c.is_ascii_digit() {
                break;
            }
            p.push(c);
            chars.next();
        }
        spec.precision = Some(p.parse().unwrap_or(0));
    }
    let Some((i, conv)) = chars.next() else {
        return Err(FormatError::Malformed(
            "a `%(key)` needs a conversion such as `s` or `d`".into(),
        ));
    };
    if !"sdifFrxXeEgG".contains(conv) {
        return Err(FormatError::Malformed(format!(
            "unsupported conversion `{conv}` after a `%(key)`"
        )));
    }
    spec.conv = conv;
    Ok((spec, &s[i + conv.len_utf8()..]))
}

/// A field's value: text, integer or float.
enum Val {
    S(String),
    I(i64),
    F(f64),
}

fn field_value(spec: &Spec, r: &Record, asctime: &str, message: &str) -> Val {
    let epoch = r
        .time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    match spec.field {
        Field::Asctime => Val::S(asctime.to_string()),
        Field::Created => Val::F(epoch),
        Field::Filename => Val::S(
            r.file
                .as_deref()
                .map(|f| f.rsplit('/').next().unwrap_or(f).to_string())
                .unwrap_or_else(|| "-".into()),
        ),
        Field::Levelname => Val::S(level_name(r.level).into()),
        Field::Levelno => Val::I(i64::from(r.level)),
        Field::Lineno => Val::I(r.line.map_or(0, i64::from)),
        Field::Message => Val::S(message.to_string()),
        Field::Module => Val::S(r.target.rsplit("::").next().unwrap_or(&r.target).into()),
        Field::Msecs => Val::F((epoch.fract() * 1000.0).floor()),
        Field::Name => Val::S(r.name.clone()),
        Field::Pathname => Val::S(r.file.clone().unwrap_or_else(|| "-".into())),
        Field::Process => Val::I(i64::from(std::process::id())),
        Field::ProcessName => Val::S("MainProcess".into()),
        Field::RelativeCreated => Val::F(
            r.time
                .duration_since(*super::START)
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0,
        ),
        Field::Thread => Val::I(thread_number()),
        Field::ThreadName => Val::S(
            std::thread::current()
                .name()
                .map(str::to_string)
                .unwrap_or_else(|| format!("Thread-{}", thread_number())),
        ),
    }
}

fn thread_number() -> i64 {
    // SAFETY: gettid has no preconditions.
    i64::from(unsafe { libc::gettid() })
}

fn render_field(out: &mut String, spec: &Spec, r: &Record, asctime: &str, message: &str) {
    let text = match (field_value(spec, r, asctime, message), spec.conv) {
        (Val::S(s), 'r') => format!("'{s}'"),
        (Val::S(s), _) => match spec.precision {
            Some(p) => s.chars().take(p).collect(),
            None => s,
        },
        (Val::I(i), 'x') => format!("{i:x}"),
        (Val::I(i), 'X') => format!("{i:X}"),
        (Val::I(i), 'f' | 'F' | 'e' | 'E' | 'g' | 'G') => {
            format!("{:.*}", spec.precision.unwrap_or(6), i as f64)
        }
        (Val::I(i), _) => i.to_string(),
        (Val::F(f), 'd' | 'i' | 'x' | 'X') => (f.trunc() as i64).to_string(),
        (Val::F(f), 'f' | 'F' | 'e' | 'E' | 'g' | 'G') => {
            format!("{:.*}", spec.precision.unwrap_or(6), f)
        }
        (Val::F(f), _) => f.to_string(),
    };
    let len = text.chars().count();
    if len >= spec.width {
        out.push_str(&text);
    } else if spec.left {
        out.push_str(&text);
        out.extend(std::iter::repeat_n(' ', spec.width - len));
    } else {
        let pad = if spec.zero && spec.conv != 's' {
            '0'
        } else {
            ' '
        };
        out.extend(std::iter::repeat_n(pad, spec.width - len));
        out.push_str(&text);
    }
}

/// `%(asctime)s`: `datefmt` through `strftime` in local time, or Python's default
/// `2026-01-31 12:00:00,123`.
pub fn asctime(t: SystemTime, datefmt: Option<&str>) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    match datefmt {
        Some(f) => strftime(d.as_secs() as i64, f, false),
        None => format!(
            "{},{:03}",
            strftime(d.as_secs() as i64, "%Y-%m-%d %H:%M:%S", false),
            d.subsec_millis()
        ),
    }
}

/// C `strftime` of `secs` since the epoch, in local time (or UTC).
pub fn strftime(secs: i64, fmt: &str, utc: bool) -> String {
    let Ok(cfmt) = std::ffi::CString::new(fmt) else {
        return String::new();
    };
    let t = secs as libc::time_t;
    // SAFETY: tm is plain data filled by localtime_r/gmtime_r; strftime writes at most
    // buf.len() bytes and returns how many it wrote.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if utc {
            libc::gmtime_r(&t, &mut tm);
        } else {
            libc::localtime_r(&t, &mut tm);
        }
        let mut buf = vec![0u8; 256 + fmt.len() * 4];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), cfmt.as_ptr(), &tm);
        buf.truncate(n);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// `--log-format json`: one object per line with `timestamp` (UTC, RFC 3339, ms),
/// `level`, `logger`, `target`, `message` and, when the event has any, `fields`.
pub fn json_line(r: &Record) -> String {
    let d = r.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ts = format!(
        "{}.{:03}Z",
        strftime(d.as_secs() as i64, "%Y-%m-%dT%H:%M:%S", true),
        d.subsec_millis()
    );
    let mut obj = serde_json::Map::new();
    obj.insert("timestamp".into(), ts.into());
    obj.insert("level".into(), level_name(r.level).into());
    obj.insert("logger".into(), r.name.clone().into());
    obj.insert("target".into(), r.target.clone().into());
    obj.insert("message".into(), r.message.clone().into());
    if !r.fields.is_empty() {
        let fields: serde_json::Map<String, serde_json::Value> = r.fields.iter().cloned().collect();
        obj.insert("fields".into(), fields.into());
    }
    serde_json::Value::Object(obj).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rec(msg: &str) -> Record {
        Record {
            level: 30,
            name: "nodepool.launcher.pool_worker".into(),
            target: "nodepool_daemon::launcher::pool_worker".into(),
            message: msg.into(),
            fields: vec![("request".into(), "200-0000000001".into())],
            file: Some("daemon/src/launcher/pool_worker.rs".into()),
            line: Some(42),
            time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        }
    }

    #[test]
    fn nodepool_default_format() {
        let f = Formatter::new(
            "%(asctime)s %(levelname)s %(name)s: %(message)s",
            None,
            true,
        )
        .unwrap();
        let local = strftime(1_700_000_000, "%Y-%m-%d %H:%M:%S", false);
        assert_eq!(
            f.format(&rec("declined")),
            format!("{local},123 WARNING nodepool.launcher.pool_worker: declined request=200-0000000001")
        );
        assert_eq!(
            strftime(1_700_000_000, "%Y-%m-%d %H:%M:%S", true),
            "2023-11-14 22:13:20"
        );
    }

    #[test]
    fn multiline_repeats_the_prefix() {
        let f = Formatter::new("%(levelname)s %(name)s: %(message)s", None, true).unwrap();
        let mut r = rec("state:\na\nb");
        r.fields.clear();
        assert_eq!(
            f.format(&r),
            "WARNING nodepool.launcher.pool_worker: state:\n\
             WARNING nodepool.launcher.pool_worker:   a\n\
             WARNING nodepool.launcher.pool_worker:   b"
        );
        let plain = Formatter::new("%(levelname)s: %(message)s", None, false).unwrap();
        assert_eq!(plain.format(&r), "WARNING: state:\na\nb");
    }

    #[test]
    fn widths_datefmt_and_other_fields() {
        let f = Formatter::new(
            "[%(asctime)s] %(levelname)-8s|%(levelno)03d|%(lineno)d|%(module)s|%(filename)s|%(name).8s|100%%",
            Some("%M:%S"),
            false,
        )
        .unwrap();
        assert_eq!(
            f.format(&rec("x")),
            "[13:20] WARNING |030|42|pool_worker|pool_worker.rs|nodepool|100%"
        );
    }

    #[test]
    fn bad_formats_are_named() {
        assert_eq!(
            Formatter::new("%(funcName)s %(message)s", None, false).unwrap_err(),
            FormatError::UnknownField("funcName".into())
        );
        assert!(Formatter::new("%s", None, false).is_err());
        assert!(Formatter::new("%(message)", None, false).is_err());
        assert!(Formatter::new("%(message)q", None, false).is_err());
    }

    #[test]
    fn json_lines() {
        let j: serde_json::Value = serde_json::from_str(&json_line(&rec("declined"))).unwrap();
        assert_eq!(j["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(j["level"], "WARNING");
        assert_eq!(j["logger"], "nodepool.launcher.pool_worker");
        assert_eq!(j["message"], "declined");
        assert_eq!(j["fields"]["request"], "200-0000000001");
    }
}
