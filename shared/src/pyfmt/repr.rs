//! Python's `repr()` and `str()` of JSON values: `None`/`True`/`False`, ints, floats as
//! `float.__repr__` prints them, strings quoted and escaped as `unicode_repr` does, lists
//! and dicts (in their key order) as their element reprs.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::{Number, Value};

use super::unprintable::UNPRINTABLE;

/// Python's `str(value)` for a JSON value: strings as they are, everything else as its
/// [`py_repr`] (Python's `str()` of a list or dict is its `repr()`).
pub fn py_str(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s.as_str()),
        Value::Null => Cow::Borrowed("None"),
        Value::Bool(true) => Cow::Borrowed("True"),
        Value::Bool(false) => Cow::Borrowed("False"),
        other => Cow::Owned(py_repr(other)),
    }
}

/// Python's `repr(value)` for a JSON value.
pub fn py_repr(value: &Value) -> String {
    let mut out = String::new();
    py_repr_into(value, &mut out);
    out
}

/// Appends Python's `repr(value)` of a JSON value to `out`.
pub fn py_repr_into(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => number_into(n, out),
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

/// An integer as Python prints it; a float as [`float_repr`].
pub(super) fn number_into(n: &Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        out.push_str(&float_repr(f));
    }
}

/// Appends Python's `repr(s)`: single quotes unless the text holds `'` and no `"`;
/// backslash and the quote escaped; `\t`, `\n`, `\r` as such; other characters that
/// Python does not consider printable as `\xNN`, `\uNNNN` or `\UNNNNNNNN`; everything
/// else verbatim.
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

/// Python's `str.isprintable()` of one character: false for control, format,
/// surrogate, private-use and unassigned characters and every separator but the space.
pub fn is_printable(c: char) -> bool {
    let u = c as u32;
    if (0x20..0x7f).contains(&u) {
        return true;
    }
    // The last range starting at or below `u` decides.
    let i = UNPRINTABLE.partition_point(|&(start, _)| start <= u);
    !(i > 0 && u <= UNPRINTABLE[i - 1].1)
}

/// Python's `repr(float)` (also `str()` and what `json.dumps` writes for finite
/// values): the shortest digits that read back as the same float, in fixed notation
/// for decimal exponents -4 to 15 (`0.0001`, `1e+16`'s neighbour `1000000000000000.0`),
/// otherwise `d.ddde±XX` (`1e-05`, `1e-07`); `nan`, `inf`, `-inf`.
pub fn float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. `1.795550245227989e9`.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(24);
    if neg {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        fixed_into(&digits, exp, &mut out);
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    out
}

/// `digits` (no point) × 10^(`exp` − len + 1) in fixed notation, with at least `.0`.
fn fixed_into(digits: &str, exp: i32, out: &mut String) {
    if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits);
        return;
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        out.push_str(digits);
        for _ in digits.len()..int_len {
            out.push('0');
        }
        out.push_str(".0");
    } else {
        out.push_str(&digits[..int_len]);
        out.push('.');
        out.push_str(&digits[int_len..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(v: Value) -> String {
        py_str(&v).into_owned()
    }

    #[test]
    fn str_of_values() {
        assert_eq!(s(json!(null)), "None");
        assert_eq!(s(json!(true)), "True");
        assert_eq!(s(json!("plain")), "plain");
        assert_eq!(s(json!(7)), "7");
        assert_eq!(s(json!(1.5)), "1.5");
        assert_eq!(s(json!(1e16)), "1e+16");
        assert_eq!(s(json!(1e-7)), "1e-07");
        assert_eq!(
            s(json!({"a": 1, "b": [true, null, "x"], "c": {"d": 2.0}})),
            "{'a': 1, 'b': [True, None, 'x'], 'c': {'d': 2.0}}"
        );
        assert_eq!(s(json!(["it's"])), "[\"it's\"]");
        assert_eq!(s(json!(["a'\""])), "['a\\'\"']");
        assert_eq!(
            s(json!(["\t\u{1}\u{a0}é\u{2028}😀"])),
            "['\\t\\x01\\xa0é\\u2028😀']"
        );
        assert_eq!(s(json!(["back\\slash"])), "['back\\\\slash']");
    }

    #[test]
    fn printable_edges() {
        for c in [
            ' ', '~', 'é', '😀', '\u{3000}', /* ideographic space: no */
        ] {
            assert_eq!(is_printable(c), c != '\u{3000}', "{c:?}");
        }
        for c in [
            '\0',
            '\u{7f}',
            '\u{a0}',
            '\u{ad}',
            '\u{378}',
            '\u{e000}',
            '\u{10ffff}',
        ] {
            assert!(!is_printable(c), "{c:?}");
        }
    }

    #[test]
    fn float_notation() {
        let cases = [
            (1e-7, "1e-07"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (-0.0, "-0.0"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
            (5e-324, "5e-324"),
        ];
        for (v, want) in cases {
            assert_eq!(float_repr(v), want, "{v}");
        }
    }
}
