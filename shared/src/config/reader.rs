//! Typed reading of one YAML mapping at a time, collecting problems instead of stopping.
//!
//! A [`MapReader`] wraps a mapping node and a key path (`providers[0].pools[1]`). Each
//! typed getter marks its key as used and, on a wrong type, records
//! `path.key: expected X, got Y` at the value's position; [`MapReader::finish`] reports
//! every key nobody asked for. Explicit `null` (`key:` with nothing after it) reads as unset.

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::Problem;
use super::validate::{Kind, Mark, Marks};
use super::yaml::{Node, Pos, Val};

/// Collects problems (and, for the cross checks, named definitions and references).
pub(crate) struct Ctx {
    origin: String,
    pub problems: Vec<Problem>,
    /// Names defined and referenced, checked by `validate` once everything is read.
    pub marks: Marks,
}

impl Ctx {
    pub fn new(origin: &str) -> Self {
        Ctx {
            origin: origin.to_string(),
            problems: Vec::new(),
            marks: Marks::default(),
        }
    }

    /// Records that `name` of `kind` is defined (within `scope`) at `pos`.
    pub fn define(&mut self, kind: Kind, scope: &str, name: &str, pos: Pos, path: &str) {
        self.marks
            .defs
            .push(Mark::new(kind, scope, name, pos, path));
    }

    /// Records that `name` of `kind` (within `scope`) is referenced at `pos`.
    pub fn refer(&mut self, kind: Kind, scope: &str, name: &str, pos: Pos, path: &str) {
        self.marks
            .refs
            .push(Mark::new(kind, scope, name, pos, path));
    }

    /// Records a problem at `pos`; `message` should start with the key path.
    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.problems.push(Problem {
            origin: self.origin.clone(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        });
    }
}

/// Joins a parent path and a key: `("providers[0]", "rate")` → `providers[0].rate`.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

struct Entry<'n> {
    key: &'n str,
    key_pos: Pos,
    value: &'n Node,
    used: bool,
}

/// One mapping being read; see the module docs.
pub(crate) struct MapReader<'n> {
    path: String,
    pos: Pos,
    entries: Vec<Entry<'n>>,
}

impl<'n> MapReader<'n> {
    /// Starts reading `node` as a mapping at `path`; records a problem and returns `None`
    /// if it is something else.
    pub fn new(cx: &mut Ctx, node: &'n Node, path: &str) -> Option<Self> {
        let Val::Map(pairs) = &node.val else {
            let what = if path.is_empty() {
                "the document"
            } else {
                path
            };
            cx.error(
                node.pos,
                format!("{what}: expected a mapping, got {}", node.val.describe()),
            );
            return None;
        };
        let mut entries = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            match &k.val {
                Val::Str(key) => entries.push(Entry {
                    key,
                    key_pos: k.pos,
                    value: v,
                    used: false,
                }),
                other => cx.error(
                    k.pos,
                    format!(
                        "{}: keys must be strings, got {}",
                        if path.is_empty() { "<top level>" } else { path },
                        other.describe()
                    ),
                ),
            }
        }
        Some(MapReader {
            path: path.to_string(),
            pos: node.pos,
            entries,
        })
    }

    /// Position of the mapping itself.
    pub fn pos(&self) -> Pos {
        self.pos
    }

    /// The path of this mapping (`providers[0]`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of one of its keys (`providers[0].rate`).
    pub fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Whether the key is present with a non-null value (does not mark it used).
    pub fn has(&self, key: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.key == key && e.value.val != Val::Null)
    }

    /// Position of a key's value, or of the mapping if the key is absent.
    pub fn value_pos(&self, key: &str) -> Pos {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map_or(self.pos, |e| e.value.pos)
    }

    /// Marks the key used and returns its value unless absent or null.
    pub fn take(&mut self, key: &str) -> Option<&'n Node> {
        let mut found = None;
        for e in self.entries.iter_mut().filter(|e| e.key == key) {
            e.used = true;
            found = Some(e.value);
        }
        found.filter(|n| n.val != Val::Null)
    }

    /// Marks a key as accepted and ignored (e.g. deprecated `nodepool-id`).
    pub fn ignore(&mut self, key: &str) {
        self.take(key);
    }

    /// Records a problem about `key` (at its value, or at the mapping if absent).
    pub fn error(&self, cx: &mut Ctx, key: &str, message: impl AsRef<str>) {
        cx.error(
            self.value_pos(key),
            format!("{}: {}", self.key_path(key), message.as_ref()),
        );
    }

    fn type_error(&self, cx: &mut Ctx, key: &str, node: &Node, expected: &str) {
        cx.error(
            node.pos,
            format!(
                "{}: expected {expected}, got {}",
                self.key_path(key),
                node.val.describe()
            ),
        );
    }

    /// Records "missing required key" for `key` at the mapping's position.
    pub fn missing(&self, cx: &mut Ctx, key: &str) {
        let at = if self.path.is_empty() {
            "<top level>"
        } else {
            &self.path
        };
        cx.error(self.pos, format!("{at}: missing required key `{key}`"));
    }

    /// A string value.
    pub fn string(&mut self, cx: &mut Ctx, key: &str) -> Option<String> {
        let node = self.take(key)?;
        match &node.val {
            Val::Str(s) => Some(s.clone()),
            _ => {
                self.type_error(cx, key, node, "a string");
                None
            }
        }
    }

    /// A required string value.
    pub fn req_string(&mut self, cx: &mut Ctx, key: &str) -> Option<String> {
        if !self.has(key) {
            self.take(key);
            self.missing(cx, key);
            return None;
        }
        self.string(cx, key)
    }

    /// The required `name` of a named section (provider, pool, label, image…), recorded
    /// as a definition of `kind` within `scope` for the cross-reference checks.
    pub fn defined_name(&mut self, cx: &mut Ctx, kind: Kind, scope: &str) -> Option<String> {
        let name = self.req_string(cx, "name")?;
        cx.define(
            kind,
            scope,
            &name,
            self.value_pos("name"),
            &self.key_path("name"),
        );
        Some(name)
    }

    /// A string, or an integer kept as its decimal text (e.g. `release: 9`).
    pub fn str_or_int(&mut self, cx: &mut Ctx, key: &str) -> Option<String> {
        let node = self.take(key)?;
        match &node.val {
            Val::Str(s) => Some(s.clone()),
            Val::Int(i) => Some(i.to_string()),
            _ => {
                self.type_error(cx, key, node, "a string or an integer");
                None
            }
        }
    }

    /// A boolean (YAML 1.1 spellings such as `yes`/`off` included).
    pub fn boolean(&mut self, cx: &mut Ctx, key: &str) -> Option<bool> {
        let node = self.take(key)?;
        match node.val {
            Val::Bool(b) => Some(b),
            _ => {
                self.type_error(cx, key, node, "a boolean");
                None
            }
        }
    }

    /// An integer that fits `T` (e.g. `u16` for ports, `i64` for limits).
    pub fn int<T: TryFrom<i128>>(&mut self, cx: &mut Ctx, key: &str, expected: &str) -> Option<T> {
        let node = self.take(key)?;
        if let Val::Int(i) = node.val {
            if let Ok(v) = T::try_from(i) {
                return Some(v);
            }
        }
        self.type_error(cx, key, node, expected);
        None
    }

    /// A non-negative number of seconds.
    pub fn seconds(&mut self, cx: &mut Ctx, key: &str) -> Option<Duration> {
        let node = self.take(key)?;
        let secs = match node.val {
            Val::Int(i) => i as f64,
            Val::Float(f) => f,
            _ => f64::NAN,
        };
        match Duration::try_from_secs_f64(secs) {
            Ok(d) if secs.is_finite() => Some(d),
            _ => {
                self.type_error(cx, key, node, "a non-negative number of seconds");
                None
            }
        }
    }

    /// A list of strings.
    pub fn str_list(&mut self, cx: &mut Ctx, key: &str) -> Option<Vec<String>> {
        let node = self.take(key)?;
        let Val::Seq(items) = &node.val else {
            self.type_error(cx, key, node, "a list of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match &item.val {
                Val::Str(s) => out.push(s.clone()),
                other => cx.error(
                    item.pos,
                    format!(
                        "{}[{i}]: expected a string, got {}",
                        self.key_path(key),
                        other.describe()
                    ),
                ),
            }
        }
        Some(out)
    }

    /// A mapping of strings to strings (e.g. `env-vars`).
    pub fn str_map(&mut self, cx: &mut Ctx, key: &str) -> Option<BTreeMap<String, String>> {
        let node = self.take(key)?;
        let path = self.key_path(key);
        let mut inner = MapReader::new(cx, node, &path)?;
        let mut out = BTreeMap::new();
        for e in &mut inner.entries {
            e.used = true;
            match &e.value.val {
                Val::Str(s) => {
                    out.insert(e.key.to_string(), s.clone());
                }
                other => cx.error(
                    e.value.pos,
                    format!(
                        "{}: expected a string, got {}",
                        join(&path, e.key),
                        other.describe()
                    ),
                ),
            }
        }
        Some(out)
    }

    /// A free-form mapping (e.g. `metadata`, `node-attributes`), kept as JSON values.
    pub fn json_map(
        &mut self,
        cx: &mut Ctx,
        key: &str,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let node = self.take(key)?;
        match to_json(node) {
            serde_json::Value::Object(map) => Some(map),
            _ => {
                self.type_error(cx, key, node, "a mapping");
                None
            }
        }
    }

    /// A nested mapping.
    pub fn map(&mut self, cx: &mut Ctx, key: &str) -> Option<MapReader<'n>> {
        let node = self.take(key)?;
        MapReader::new(cx, node, &self.key_path(key))
    }

    /// A list; each item comes with its path (`key[i]`). Not a list → problem, empty.
    pub fn list(&mut self, cx: &mut Ctx, key: &str) -> Vec<(String, &'n Node)> {
        let Some(node) = self.take(key) else {
            return Vec::new();
        };
        let Val::Seq(items) = &node.val else {
            self.type_error(cx, key, node, "a list");
            return Vec::new();
        };
        let path = self.key_path(key);
        items
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("{path}[{i}]"), item))
            .collect()
    }

    /// Keys not yet asked for, in document order.
    pub fn unused_keys(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| !e.used)
            .map(|e| e.key.to_string())
            .collect()
    }

    /// Reports every key that no getter asked for.
    pub fn finish(self, cx: &mut Ctx) {
        for e in self.entries.iter().filter(|e| !e.used) {
            let at = if self.path.is_empty() {
                "<top level>"
            } else {
                &self.path
            };
            cx.error(e.key_pos, format!("{at}: unknown key `{}`", e.key));
        }
    }
}

/// Converts a node to JSON (non-string keys become their text).
pub(crate) fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match &node.val {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Int(i) => i64::try_from(*i)
            .map(Value::from)
            .or_else(|_| u64::try_from(*i).map(Value::from))
            .unwrap_or_else(|_| Value::from(*i as f64)),
        Val::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Val::Str(s) => Value::String(s.clone()),
        Val::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Val::Map(pairs) => Value::Object(
            pairs
                .iter()
                .map(|(k, v)| {
                    let key = match &k.val {
                        Val::Str(s) => s.clone(),
                        other => match to_json(&Node {
                            val: other.clone(),
                            pos: k.pos,
                        }) {
                            Value::String(s) => s,
                            v => v.to_string(),
                        },
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::yaml::parse;
    use super::*;

    fn messages(cx: &Ctx) -> Vec<String> {
        cx.problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn typed_getters_and_unknown_keys() {
        let doc = parse("a: x\nb: 5\nc: yes\nd: [x, 1]\ne: 1.5\nzzz: 1\nf:\n").unwrap();
        let mut cx = Ctx::new("t.yaml");
        let mut r = MapReader::new(&mut cx, &doc, "top").unwrap();
        assert_eq!(r.string(&mut cx, "a").as_deref(), Some("x"));
        assert_eq!(r.int::<u16>(&mut cx, "b", "a port"), Some(5));
        assert_eq!(r.boolean(&mut cx, "c"), Some(true));
        assert_eq!(r.str_list(&mut cx, "d"), Some(vec!["x".to_string()]));
        assert_eq!(r.seconds(&mut cx, "e"), Some(Duration::from_millis(1500)));
        assert_eq!(r.string(&mut cx, "f"), None);
        assert_eq!(r.string(&mut cx, "absent"), None);
        r.finish(&mut cx);
        assert_eq!(
            messages(&cx),
            vec![
                "t.yaml:4:8: top.d[1]: expected a string, got integer 1",
                "t.yaml:6:1: top: unknown key `zzz`",
            ]
        );
    }

    #[test]
    fn wrong_types_and_missing_keys_name_the_key() {
        let doc = parse("port: 70000\nname: 3\nt: -1\n").unwrap();
        let mut cx = Ctx::new("o");
        let mut r = MapReader::new(&mut cx, &doc, "webapp").unwrap();
        assert_eq!(r.int::<u16>(&mut cx, "port", "a port number"), None);
        assert_eq!(r.string(&mut cx, "name"), None);
        assert_eq!(r.seconds(&mut cx, "t"), None);
        assert_eq!(r.req_string(&mut cx, "cloud"), None);
        r.finish(&mut cx);
        assert_eq!(
            messages(&cx),
            vec![
                "o:1:7: webapp.port: expected a port number, got integer 70000",
                "o:2:7: webapp.name: expected a string, got integer 3",
                "o:3:4: webapp.t: expected a non-negative number of seconds, got integer -1",
                "o:1:1: webapp: missing required key `cloud`",
            ]
        );
    }

    #[test]
    fn non_mappings_are_reported() {
        let doc = parse("- 1\n").unwrap();
        let mut cx = Ctx::new("o");
        assert!(MapReader::new(&mut cx, &doc, "").is_none());
        assert_eq!(
            messages(&cx),
            vec!["o:1:1: the document: expected a mapping, got a list"]
        );
    }
}
