//! How Python prints values, in one place for the whole workspace: the listings (CLI,
//! web API, TUI) show opaque JSON values as Python's `str()` would, write `json.dumps`
//! text, and the launcher renders `dynamic-instance-properties` with Python's
//! `str.format` — all of which must match Python Nodepool byte for byte.
//!
//! * [`repr`]: `repr()`/`str()` of JSON values (`None`, `True`, `['a', 1e-07]`,
//!   `'\x01'`), floats with Python's shortest round-trip digits and exponent rules.
//! * [`format`](mod@format): the subset of `str.format` Nodepool templates use
//!   (`{request.id}`, `{request.requestor_data[key]!r}`, `{{`/`}}`).
//! * [`json`]: `json.dumps` output (`ensure_ascii`, `", "`/`": "` separators).
//!
//! Which characters `repr()` escapes comes from a table generated with CPython
//! (`str.isprintable`); the tests below check `repr`, `str` and `format` against
//! outputs recorded from CPython for random values and templates
//! (`shared/tests/fixtures/pyfmt/`, with the script that made them).

pub mod format;
pub mod json;
pub mod repr;
#[rustfmt::skip]
mod unprintable;

pub use format::{format, FormatError};
pub use json::{json_str_into, json_value_into};
pub use repr::{float_repr, is_printable, py_repr, py_repr_into, py_repr_str_into, py_str};

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;
    use serde_json::{Map, Value};

    fn cases() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/pyfmt/cases.json"
        );
        let text = std::fs::read_to_string(path).expect("pyfmt fixtures");
        serde_json::from_str(&text).expect("fixtures are JSON")
    }

    #[test]
    fn repr_and_str_match_cpython() {
        let cases = cases();
        let values = cases["values"].as_array().expect("values");
        assert!(values.len() > 500);
        for case in values {
            let v = &case["value"];
            assert_eq!(py_repr(v), case["repr"].as_str().unwrap(), "repr of {v}");
            assert_eq!(py_str(v), case["str"].as_str().unwrap(), "str of {v}");
        }
    }

    #[test]
    fn format_matches_cpython() {
        let cases = cases();
        let templates = cases["templates"].as_array().expect("templates");
        assert!(templates.len() > 100);
        for case in templates {
            let mut args = Map::new();
            args.insert("request".into(), case["request"].clone());
            let template = case["template"].as_str().unwrap();
            assert_eq!(
                format(template, &args).unwrap(),
                case["out"].as_str().unwrap(),
                "{template} with {}",
                case["request"]
            );
        }
    }

    /// Any finite float prints in Python's notation and reads back as itself.
    #[test]
    fn float_repr_round_trips() {
        let mut rng = rand::rng();
        for _ in 0..20_000 {
            let v = f64::from_bits(rng.random());
            if !v.is_finite() {
                continue;
            }
            let s = float_repr(v);
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{s}");
            let exp = s.split_once('e').map(|(_, e)| e);
            match exp {
                Some(e) => {
                    assert!(e.starts_with(['+', '-']) && e.len() >= 3, "{s}");
                    let e: i32 = e.parse().unwrap();
                    assert!(!(-4..16).contains(&e), "{s}");
                }
                None => assert!(s.contains('.'), "{s}"),
            }
        }
    }
}
