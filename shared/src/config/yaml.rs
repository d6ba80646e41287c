//! Reads YAML text into a small generic tree where every node knows its line and column.
//!
//! The typed config is built by hand from this tree (see `reader`) rather than by serde
//! derive, because serde-saphyr's errors carry a position but not the key path, stop at the
//! first problem, and turn bad indentation into a misleading "missing field". Parsing to a
//! generic value first gives the real syntax error, and walking the tree ourselves lets us
//! name every key and collect every problem.
//!
//! Scalars follow PyYAML (YAML 1.1): `yes`/`on`/`off` are booleans, `<<` merge keys are
//! applied, `017` is octal. serde-saphyr also reads `y`/`n` as booleans where PyYAML keeps
//! strings; we undo that by looking at the source text of each boolean.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// A 1-based line and column in the YAML text (0:0 when unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: u64,
    pub column: u64,
}

/// A YAML value with the position of its first character.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub val: Val,
    pub pos: Pos,
}

/// The value part of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Val {
    /// How the value is called in "expected X, got Y" messages.
    pub fn describe(&self) -> String {
        match self {
            Val::Null => "null".into(),
            Val::Bool(b) => format!("boolean {b}"),
            Val::Int(i) => format!("integer {i}"),
            Val::Float(f) => format!("float {f}"),
            Val::Str(s) => {
                let short: String = s.chars().take(40).collect();
                if short.len() < s.len() {
                    format!("string {short:?}...")
                } else {
                    format!("string {s:?}")
                }
            }
            Val::Seq(_) => "a list".into(),
            Val::Map(_) => "a mapping".into(),
        }
    }
}

/// A YAML syntax (or resource budget) error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Deepest nesting of sequences and mappings accepted (a syntax error beyond).
const MAX_DEPTH: usize = 24;

/// Parses one YAML document. An empty document (or one holding only comments) is `Null`.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut options = serde_saphyr::Options::default();
    options.legacy_octal_numbers = true;
    options.with_snippet = false;
    // Deserialising the generic tree recurses per nesting level with large frames (about
    // 30 KiB each in debug builds): the default depth budget of 64 overflows a 2 MiB
    // thread stack (tokio workers, test threads) and aborts the process. No Nodepool
    // config nests deeper than about 10.
    let mut budget = options.budget.take().unwrap_or_default();
    budget.max_depth = MAX_DEPTH;
    options.budget = Some(budget);
    match serde_saphyr::from_str_with_options::<Spanned<Raw>>(text, options) {
        Ok(raw) => Ok(convert(raw, text)),
        Err(err) => {
            let pos = err.location().map(pos_of).unwrap_or_default();
            let mut message = match err.without_snippet() {
                serde_saphyr::Error::MultipleDocuments { .. } => {
                    "the file holds more than one YAML document".to_string()
                }
                other => other.to_string(),
            };
            for suffix in [
                format!(" at line {}, column {}", pos.line, pos.column),
                format!("line {} column {}: ", pos.line, pos.column),
            ] {
                if let Some(m) = message.strip_suffix(&suffix) {
                    message = m.to_string();
                }
                if let Some(m) = message.strip_prefix(&suffix) {
                    message = m.to_string();
                }
            }
            Err(SyntaxError {
                pos,
                message: format!("invalid YAML: {message}"),
            })
        }
    }
}

fn pos_of(loc: Location) -> Pos {
    Pos {
        line: loc.line(),
        column: loc.column(),
    }
}

/// Where a spanned value was written: the definition for aliases and merged values.
fn best_location<T>(s: &Spanned<T>) -> Location {
    if s.defined.line() > 0 {
        s.defined
    } else {
        s.referenced
    }
}

fn convert(raw: Spanned<Raw>, text: &str) -> Node {
    let loc = best_location(&raw);
    let pos = pos_of(loc);
    let val = match raw.value {
        Raw::Null => Val::Null,
        Raw::Bool(b) => match source_text(text, loc) {
            // PyYAML keeps y/Y/n/N as strings.
            Some(t @ ("y" | "Y" | "n" | "N")) => Val::Str(t.to_string()),
            _ => Val::Bool(b),
        },
        Raw::Int(i) => Val::Int(i),
        Raw::Float(f) => Val::Float(f),
        Raw::Str(s) => Val::Str(s),
        Raw::Seq(items) => Val::Seq(items.into_iter().map(|i| convert(i, text)).collect()),
        Raw::Map(entries) => Val::Map(
            entries
                .into_iter()
                .map(|(k, v)| (convert(k, text), convert(v, text)))
                .collect(),
        ),
    };
    Node { val, pos }
}

/// The source text a location's span covers, when the span carries byte offsets.
fn source_text(text: &str, loc: Location) -> Option<&str> {
    let span = loc.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    text.get(start..start.checked_add(len)?)
}

/// What serde-saphyr hands us; converted into [`Node`] right away.
enum Raw {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
        Ok(i128::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Raw, E> {
        Ok(Raw::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Raw::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(n: &'a Node, key: &str) -> &'a Node {
        match &n.val {
            Val::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.val == Val::Str(key.into()))
                .map(|(_, v)| v)
                .expect("key present"),
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn yaml11_scalars_like_pyyaml() {
        let n =
            parse("a: yes\nb: off\nc: y\nd: N\ne: 017\nf: 0x1f\ng: 1.5\nh: \"on\"\ni:\n").unwrap();
        assert_eq!(get(&n, "a").val, Val::Bool(true));
        assert_eq!(get(&n, "b").val, Val::Bool(false));
        assert_eq!(get(&n, "c").val, Val::Str("y".into()));
        assert_eq!(get(&n, "d").val, Val::Str("N".into()));
        assert_eq!(get(&n, "e").val, Val::Int(15));
        assert_eq!(get(&n, "f").val, Val::Int(31));
        assert_eq!(get(&n, "g").val, Val::Float(1.5));
        assert_eq!(get(&n, "h").val, Val::Str("on".into()));
        assert_eq!(get(&n, "i").val, Val::Null);
    }

    #[test]
    fn positions_are_one_based_and_merged_values_point_at_their_definition() {
        let n = parse("base: &b\n  x: 1\nkid:\n  <<: *b\n  y: 2\n").unwrap();
        let kid = get(&n, "kid");
        assert_eq!(kid.pos, Pos { line: 4, column: 3 });
        assert_eq!(get(kid, "y").pos, Pos { line: 5, column: 6 });
        assert_eq!(get(kid, "x").pos, Pos { line: 2, column: 6 });
    }

    #[test]
    fn empty_document_is_null_and_syntax_errors_have_a_position() {
        assert_eq!(parse("").unwrap().val, Val::Null);
        assert_eq!(parse("# only a comment\n").unwrap().val, Val::Null);
        let err = parse("a: [1, 2\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        assert!(err.message.starts_with("invalid YAML"), "{err:?}");
    }
}
