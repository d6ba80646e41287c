//! `json.dumps` output written straight into a `String`, as the listings need it for
//! single values: strings escaped as with `ensure_ascii=True`, everything else through
//! the model's Python-compatible serializer (separators `", "`/`": "`).

use std::fmt::Write as _;

use serde_json::Value;

use super::repr::number_into;
use crate::model::json::to_python_json;

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
        Value::Number(n) if n.is_i64() || n.is_u64() => number_into(n, out),
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

    #[test]
    fn json_strings_like_python() {
        let mut s = String::new();
        json_str_into("a\"b\\c\n\u{1}\u{7f}é😀", &mut s);
        assert_eq!(s, r#""a\"b\\c\n\u0001\u007f\u00e9\ud83d\ude00""#);
        let mut s = String::new();
        json_value_into(&json!({"k": [1, 2.5, "x", 1e-7]}), &mut s);
        assert_eq!(s, r#"{"k": [1, 2.5, "x", 1e-07]}"#);
    }
}
