//! JSON plumbing shared by the records: typed readers for single keys (with errors that
//! name the record and key), and a writer that produces the same bytes as Python's
//! `json.dumps` (separators `", "` / `": "`, `ensure_ascii`, Python float `repr`).

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

use super::ModelError;

/// Seconds since the epoch as a float, like Python's `time.time()`.
pub fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Serialises `value` exactly like Python's `json.dumps(value)` (default arguments).
/// With `sort_keys` every object's keys are sorted, like `json.dumps(..., sort_keys=True)`.
pub fn to_python_json(value: &Value, sort_keys: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    let res = if sort_keys {
        sorted(value).serialize(&mut ser)
    } else {
        value.serialize(&mut ser)
    };
    // Writing a Value into a Vec cannot fail.
    debug_assert!(res.is_ok());
    out
}

/// A copy of `value` with the keys of every object sorted (Python `sort_keys=True`).
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::with_capacity(m.len());
            for k in keys {
                out.insert(k.clone(), sorted(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// serde_json formatter mimicking CPython's `json` encoder output.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json already escaped `"`, `\` and C0 controls; `ensure_ascii` also escapes
        // DEL and everything outside ASCII as \uXXXX (UTF-16 surrogate pairs above the BMP).
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if (' '..='~').contains(&c) {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(python_float_repr(value).as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(w, f64::from(value))
    }
}

/// A float as Python's `json.dumps` writes it: `repr()` of finite values
/// ([`crate::pyfmt::float_repr`]), `NaN`, `Infinity`, `-Infinity` otherwise.
pub(crate) fn python_float_repr(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    crate::pyfmt::float_repr(v)
}

/// Parses znode bytes into a JSON object. Empty (or all-whitespace) data → `Ok(None)`.
pub(crate) fn parse_object(
    record: &dyn Fn() -> String,
    data: &[u8],
) -> Result<Option<Map<String, Value>>, ModelError> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(other) => Err(ModelError::NotAnObject {
            record: record(),
            found: describe(&other),
        }),
        Err(source) => Err(ModelError::Json {
            record: record(),
            source,
        }),
    }
}

/// A short description of a JSON value for error messages.
pub(crate) fn describe(v: &Value) -> String {
    let s = match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    };
    if s.len() > 80 {
        let mut end = 77;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

/// Reads the keys of one record, producing errors that name the record.
pub(crate) struct Reader<'a> {
    pub record: &'a dyn Fn() -> String,
}

impl Reader<'_> {
    pub fn err(&self, key: &str, expected: &'static str, v: &Value) -> ModelError {
        ModelError::Field {
            record: (self.record)(),
            key: key.to_string(),
            expected,
            found: describe(v),
        }
    }

    pub fn missing(&self, key: &'static str) -> ModelError {
        ModelError::Missing {
            record: (self.record)(),
            key,
        }
    }

    /// string or null.
    pub fn opt_string(&self, key: &str, v: Value) -> Result<Option<String>, ModelError> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(self.err(key, "a string or null", &other)),
        }
    }

    /// number or null (a float epoch time).
    pub fn opt_f64(&self, key: &str, v: Value) -> Result<Option<f64>, ModelError> {
        match v {
            Value::Null => Ok(None),
            Value::Number(n) => n
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(key, "a number", &Value::Number(n))),
            other => Err(self.err(key, "a number or null", &other)),
        }
    }

    /// integer or null; integral floats are accepted.
    pub fn opt_i64(&self, key: &str, v: Value) -> Result<Option<i64>, ModelError> {
        match v {
            Value::Null => Ok(None),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(Some(i))
                } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                {
                    Ok(Some(f as i64))
                } else {
                    Err(self.err(key, "an integer", &Value::Number(n)))
                }
            }
            other => Err(self.err(key, "an integer or null", &other)),
        }
    }

    /// bool (null → `default`).
    pub fn bool_or(&self, key: &str, v: Value, default: bool) -> Result<bool, ModelError> {
        match v {
            Value::Null => Ok(default),
            Value::Bool(b) => Ok(b),
            other => Err(self.err(key, "true or false", &other)),
        }
    }

    /// list of strings (null → empty).
    pub fn string_list(&self, key: &str, v: Value) -> Result<Vec<String>, ModelError> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s),
                    other => Err(self.err(key, "a list of strings", &other)),
                })
                .collect(),
            other => Err(self.err(key, "a list of strings", &other)),
        }
    }

    /// object or null (null → `None`).
    pub fn opt_object(
        &self,
        key: &str,
        v: Value,
    ) -> Result<Option<Map<String, Value>>, ModelError> {
        match v {
            Value::Null => Ok(None),
            Value::Object(m) => Ok(Some(m)),
            other => Err(self.err(key, "an object or null", &other)),
        }
    }

    /// A state string parsed by `parse`.
    pub fn state<T>(
        &self,
        key: &str,
        v: Value,
        parse: fn(&str) -> Option<T>,
        expected: &'static str,
    ) -> Result<T, ModelError> {
        match &v {
            Value::String(s) => parse(s).ok_or_else(|| self.err(key, expected, &v)),
            _ => Err(self.err(key, expected, &v)),
        }
    }
}

/// `Value` for an optional string.
pub(crate) fn opt_str_value(v: &Option<String>) -> Value {
    match v {
        Some(s) => Value::String(s.clone()),
        None => Value::Null,
    }
}

/// `Value` for an optional float.
pub(crate) fn opt_f64_value(v: Option<f64>) -> Value {
    v.and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// `Value` for a float (non-finite → null, as a JSON number cannot hold it).
pub(crate) fn f64_value(v: f64) -> Value {
    opt_f64_value(Some(v))
}

/// `Value` for a list of strings.
pub(crate) fn str_list_value<S: AsRef<str>>(v: &[S]) -> Value {
    Value::Array(
        v.iter()
            .map(|s| Value::String(s.as_ref().to_string()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_separators_and_ascii() {
        let v = json!({"a": [1, 2.5, null, true], "b": "é\u{1F600}\u{7f}\n\"x\"", "c": {}});
        let s = String::from_utf8(to_python_json(&v, false)).unwrap();
        // json.dumps({"a": [1, 2.5, None, True], "b": "é😀\x7f\n\"x\"", "c": {}})
        assert_eq!(
            s,
            r#"{"a": [1, 2.5, null, true], "b": "\u00e9\ud83d\ude00\u007f\n\"x\"", "c": {}}"#
        );
    }

    #[test]
    fn sort_keys_is_recursive() {
        let v = json!({"b": {"z": 1, "a": 2}, "a": [{"y": 1, "x": 2}]});
        let s = String::from_utf8(to_python_json(&v, true)).unwrap();
        assert_eq!(s, r#"{"a": [{"x": 2, "y": 1}], "b": {"a": 2, "z": 1}}"#);
    }

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1795550245.227989, "1795550245.227989"),
            (1795550245.2333267, "1795550245.2333267"),
            (5.0, "5.0"),
            (0.5, "0.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.0, "123456789012345.0"),
            (1234567890123456.0, "1234567890123456.0"),
            (-2.5, "-2.5"),
            (0.0, "0.0"),
            (1e300, "1e+300"),
            (1.2345e-7, "1.2345e-07"),
        ];
        for (v, want) in cases {
            assert_eq!(python_float_repr(v), want, "{v}");
        }
    }
}
