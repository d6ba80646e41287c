//! Strategies and settings shared by the property-based tests of the parsers of
//! untrusted input (proptest; docs/decisions.md): fixed seeds so a run is repeatable,
//! no regression files written into the source tree, and generators of hostile JSON
//! and text.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde_json::{Map, Number, Value};

/// `cases` cases from the fixed `seed`; failures are shrunk but not persisted.
pub fn config(cases: u32, seed: u64) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..Config::default()
    }
}

/// Texts a peer or a corrupt record may hold: plausible names, any Unicode, control
/// and bidi characters, numbers as text, and (rarely) 10 kB: far past every length at
/// which the parsers fed with it cut or quote a text (a cloud's error message at 500
/// characters, a value quoted in an error at 80). A record holds some twenty texts, so
/// 100 kB here put one in about half the cases and made it most of the tests' CPU in a
/// debug build; `shared/tests/bad_input.rs` puts a 100 kB text in every key of every
/// record kind, deterministically.
pub fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        16 => "[a-z][a-z0-9._-]{0,16}",
        8 => any::<String>(),
        4 => "[\\x00-\\x1f\\x7f\u{202e}\u{200b}\u{fffd}]{0,8}",
        4 => Just(String::new()),
        4 => prop_oneof![Just("NaN"), Just("1e999"), Just("-0"), Just("null"), Just("22")]
            .prop_map(str::to_string),
        1 => Just("x".repeat(10_000)),
    ]
}

/// A JSON leaf: null, booleans, integers at the edges of i64/u64, finite floats, texts.
pub fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![Just(i64::MIN), Just(-1i64), Just(0), Just(65_536)].prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        hostile_string().prop_map(Value::String),
    ]
}

/// Any JSON value, nested up to 4 levels (deeper nesting is tested separately).
pub fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((hostile_string(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// What a record key holds, for generating values of the right type most of the time.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A string or null.
    Text,
    /// A list of strings.
    Names,
    /// An integer.
    Int,
    /// A float (epoch seconds).
    Float,
    /// A boolean.
    Bool,
    /// A JSON object.
    Object,
    /// Anything (opaque values).
    Opaque,
}

/// A value of `kind`; one time in 50, anything instead (to reach the type errors).
pub fn typed(kind: Kind) -> BoxedStrategy<Value> {
    let right = match kind {
        Kind::Text => prop_oneof![
            9 => hostile_string().prop_map(Value::String),
            1 => Just(Value::Null),
        ]
        .boxed(),
        Kind::Names => prop::collection::vec(hostile_string(), 0..4)
            .prop_map(|v| Value::Array(v.into_iter().map(Value::String).collect()))
            .boxed(),
        Kind::Int => prop_oneof![
            8 => (0i64..65_536).prop_map(Value::from),
            1 => any::<i64>().prop_map(Value::from),
        ]
        .boxed(),
        Kind::Float => (0.0f64..2.0e9)
            .prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number))
            .boxed(),
        Kind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Kind::Object => prop::collection::vec((hostile_string(), json_value()), 0..4)
            .prop_map(|kv| Value::Object(kv.into_iter().collect()))
            .boxed(),
        Kind::Opaque => json_value().boxed(),
    };
    prop_oneof![49 => right, 1 => json_value()].boxed()
}

/// A JSON object over `fields` (each present three times in four, with a value of its
/// kind or rarely anything) plus, sometimes, unknown keys; `fixed` entries are always
/// set (e.g. a valid `state`).
pub fn record(
    fields: &'static [(&'static str, Kind)],
    fixed: Vec<(&'static str, BoxedStrategy<Value>)>,
) -> impl Strategy<Value = Map<String, Value>> {
    let known: Vec<BoxedStrategy<Option<(&'static str, Value)>>> = fields
        .iter()
        .map(|&(k, kind)| {
            prop::option::weighted(0.75, typed(kind).prop_map(move |v| (k, v))).boxed()
        })
        .collect();
    let unknown = prop::collection::vec((hostile_string(), json_leaf()), 0..2);
    let fixed_keys: Vec<&'static str> = fixed.iter().map(|(k, _)| *k).collect();
    let fixed_values: Vec<BoxedStrategy<Value>> = fixed.into_iter().map(|(_, s)| s).collect();
    (known, unknown, fixed_values).prop_map(move |(known, unknown, values)| {
        let mut m = Map::new();
        for (k, v) in unknown {
            m.insert(k, v);
        }
        for (k, v) in known.into_iter().flatten() {
            m.insert(k.to_string(), v);
        }
        for (k, v) in fixed_keys.iter().zip(values) {
            m.insert(k.to_string(), v);
        }
        m
    })
}

/// Bytes: arbitrary, or the JSON of `value` cut, spliced or with a byte flipped.
pub fn mangled_json(
    value: impl Strategy<Value = Value> + 'static,
) -> impl Strategy<Value = Vec<u8>> {
    let base = value
        .prop_map(|v| serde_json::to_vec(&v).unwrap_or_default())
        .boxed();
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        5 => base.clone(),
        2 => damaged(base),
    ]
}

/// `bytes` cut short or with a byte flipped, half and half.
pub fn damaged(bytes: BoxedStrategy<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (bytes.clone(), any::<prop::sample::Index>())
            .prop_map(|(b, i)| b[..i.index(b.len() + 1)].to_vec()),
        (bytes, any::<prop::sample::Index>(), any::<u8>()).prop_map(|(mut b, i, x)| {
            if !b.is_empty() {
                let at = i.index(b.len());
                b[at] ^= x | 1;
            }
            b
        }),
    ]
}

/// YAML text for a JSON-like tree, in block style: strings are double-quoted (JSON
/// escapes are valid YAML) except, one time in four, written plain, which lets YAML's
/// own typing (`yes`, `017`, `~`) and syntax characters loose on the reader.
pub fn to_yaml(v: &Value, plain: &mut impl FnMut() -> bool) -> String {
    let mut out = String::new();
    yaml_into(v, 0, plain, &mut out);
    out
}

fn yaml_scalar(v: &Value, plain: &mut impl FnMut() -> bool) -> String {
    match v {
        Value::Null => "~".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if plain() && !s.contains('\n') => s.clone(),
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(m) if m.is_empty() => "{}".into(),
        _ => String::new(),
    }
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Array(a) if !a.is_empty()) || matches!(v, Value::Object(m) if !m.is_empty())
}

fn yaml_into(v: &Value, indent: usize, plain: &mut impl FnMut() -> bool, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, val) in m {
                let key = yaml_scalar(&Value::String(k.clone()), plain);
                if is_block(val) {
                    out.push_str(&format!("{pad}{key}:\n"));
                    yaml_into(val, indent + 2, plain, out);
                } else {
                    out.push_str(&format!("{pad}{key}: {}\n", yaml_scalar(val, plain)));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                if is_block(item) {
                    // The first entry of a mapping goes on the dash line.
                    let mut inner = String::new();
                    yaml_into(item, indent + 2, plain, &mut inner);
                    let inner = inner.trim_start();
                    out.push_str(&format!("{pad}- {inner}"));
                } else {
                    out.push_str(&format!("{pad}- {}\n", yaml_scalar(item, plain)));
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&yaml_scalar(other, plain));
            out.push('\n');
        }
    }
}

/// `text` after one line-level accident: a line dropped, doubled, indented or
/// outdented by one, cut in the middle, or a byte replaced.
pub fn mangled_lines(text: String) -> impl Strategy<Value = String> {
    (0u8..8, any::<prop::sample::Index>(), any::<u8>()).prop_map(move |(op, i, b)| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.is_empty() {
            return text.clone();
        }
        let at = i.index(lines.len());
        match op {
            0 => {
                lines.remove(at);
            }
            1 => lines.insert(at, lines[at].clone()),
            2 => lines[at].insert(0, ' '),
            3 => {
                if lines[at].starts_with(' ') {
                    lines[at].remove(0);
                }
            }
            4 => {
                let cut = lines[at].len() / 2;
                let cut = (0..=cut)
                    .rev()
                    .find(|c| lines[at].is_char_boundary(*c))
                    .unwrap_or(0);
                lines[at].truncate(cut);
            }
            5 => {
                let mut bytes = lines[at].clone().into_bytes();
                if !bytes.is_empty() {
                    let j = usize::from(b) % bytes.len();
                    let syntax = b"{}[]:&*!|>'\"%@`#,-?\t";
                    bytes[j] = syntax[usize::from(b) % syntax.len()];
                }
                lines[at] = String::from_utf8_lossy(&bytes).into_owned();
            }
            _ => return text.clone(),
        }
        lines.join("\n")
    })
}
