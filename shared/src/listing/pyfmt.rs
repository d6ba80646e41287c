//! How Python prints the values the listings show: `str()` of opaque JSON values (the text
//! table shows a dict `user_data` as `{'a': 1}`, a null as `None`), and `json.dumps`
//! output written straight into a `String` (separators `", "`/`": "`, `ensure_ascii`).

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Value;

use crate::model::json::{python_float_repr, to_python_json};

/// Python's `str(value)` for a JSON value: strings as they are, `None`, `True`/`False`,
/// numbers in Python's notation, lists and dicts as their `repr`.
pub fn py_str(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s.as_str()),
        Value::Null => Cow::Borrowed("None"),
        Value::Bool(true) => Cow::Borrowed("True"),
        Value::Bool(false) => Cow::Borrowed("False"),
        other => {
            let mut out = String::new();
            py_repr_into(other, &mut out);
            Cow::Owned(out)
        }
    }
}

/// Appends Python's `repr(value)` of a JSON value to `out`.
pub fn py_repr_into(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => push_number(n, out),
        Value::String(s) => py_repr_str_into(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr_into(v, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr_str_into(k, out);
                out.push_str(": ");
                py_repr_into(v, out);
            }
            out.push('}');
        }
    }
}

fn push_number(n: &serde_json::Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        out.push_str(&python_float_repr(f));
    }
}

/// Appends Python's `repr(s)`: single quotes unless the text holds `'` and no `"`;
/// backslash, the quote, `\t`, `\n`, `\r` escaped; other non-printable characters as
/// `\xNN`/`\uNNNN` (C0/C1 controls, DEL, non-ASCII spaces, line/paragraph separators
/// and the common format characters); everything else verbatim.
pub fn py_repr_str_into(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.reserve(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_printable(c) => {
                let u = c as u32;
                let _ = if u <= 0xff {
                    write!(out, "\\x{u:02x}")
                } else if u <= 0xffff {
                    write!(out, "\\u{u:04x}")
                } else {
                    write!(out, "\\U{u:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// An approximation of Python's `str.isprintable` for one character.
fn is_printable(c: char) -> bool {
    let u = c as u32;
    if u < 0x20 || (0x7f..=0xa0).contains(&u) {
        return false;
    }
    !matches!(
        u,
        0xad | 0x1680
            | 0x2000..=0x200f
            | 0x2028..=0x202f
            | 0x205f..=0x2064
            | 0x3000
            | 0xfeff
            | 0xd800..=0xdfff
            | 0xe000..=0xf8ff
    )
}

/// Appends `s` as a JSON string exactly as Python's `json.dumps` writes it
/// (`ensure_ascii=True`: everything outside space…`~` escaped).
pub fn json_str_into(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: &str = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            ' '..='~' => continue,
            _ => "",
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push_str(esc);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends an arbitrary JSON value in Python's `json.dumps` form.
pub fn json_value_into(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::String(s) => json_str_into(s, out),
        Value::Number(n) if n.is_i64() || n.is_u64() => push_number(n, out),
        other => {
            let bytes = to_python_json(other, false);
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn repr(v: Value) -> String {
        py_str(&v).into_owned()
    }

    #[test]
    fn str_of_values() {
        assert_eq!(repr(json!(null)), "None");
        assert_eq!(repr(json!(true)), "True");
        assert_eq!(repr(json!("plain")), "plain");
        assert_eq!(repr(json!(7)), "7");
        assert_eq!(repr(json!(1.5)), "1.5");
        assert_eq!(repr(json!(1e16)), "1e+16");
        assert_eq!(
            repr(json!({"a": 1, "b": [true, null, "x"], "c": {"d": 2.0}})),
            "{'a': 1, 'b': [True, None, 'x'], 'c': {'d': 2.0}}"
        );
        assert_eq!(repr(json!(["it's"])), "[\"it's\"]");
        assert_eq!(repr(json!(["a'\""])), "['a\\'\"']");
        assert_eq!(
            repr(json!(["\t\u{1}\u{a0}é\u{2028}😀"])),
            "['\\t\\x01\\xa0é\\u2028😀']"
        );
        assert_eq!(repr(json!(["back\\slash"])), "['back\\\\slash']");
    }

    #[test]
    fn json_strings_like_python() {
        let mut s = String::new();
        json_str_into("a\"b\\c\n\u{1}\u{7f}é😀", &mut s);
        assert_eq!(s, r#""a\"b\\c\n\u0001\u007f\u00e9\ud83d\ude00""#);
        let mut s = String::new();
        json_value_into(&json!({"k": [1, 2.5, "x"]}), &mut s);
        assert_eq!(s, r#"{"k": [1, 2.5, "x"]}"#);
    }
}
