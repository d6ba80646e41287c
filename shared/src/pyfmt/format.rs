//! The subset of Python's `str.format` that Nodepool's `dynamic-instance-properties`
//! rely on: `{request.id}`, `{request.labels}`, `{request.requestor_data[key]}`,
//! `{request.labels[0]}`, `{{`/`}}` escapes and the `!s`/`!r` conversions, with values
//! rendered the way Python's `str()`/`repr()` renders them (`None`, `True`,
//! `['a', 'b']`, `{'k': 'v'}`).
//!
//! Values are JSON ([`serde_json::Value`]) because that is what the request record
//! holds; they are printed by [`super::repr`]. Anything outside the subset (format
//! specs, positional fields, unknown names) is a [`FormatError`], never a panic.

use serde_json::{Map, Value};

use super::repr::{py_repr, py_str};

/// Why a template could not be formatted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A `{` without its `}` or a lone `}`.
    #[error("unbalanced braces at byte {0}")]
    Unbalanced(usize),
    /// `{}` or `{0}`: Nodepool passes only named arguments.
    #[error("positional field `{{{0}}}` is not supported")]
    Positional(String),
    /// A name other than the ones passed in (e.g. `{req.id}`).
    #[error("unknown name `{0}`")]
    UnknownName(String),
    /// `.attr` or `[key]` that does not exist.
    #[error("`{field}` has no `{part}`")]
    Missing { field: String, part: String },
    /// Malformed field (`{request.}`, `{request[x}`).
    #[error("malformed field `{0}`")]
    BadField(String),
    /// `!a` or another unknown conversion.
    #[error("unsupported conversion `!{0}`")]
    Conversion(String),
    /// A `:spec` (width, precision, …): not supported.
    #[error("format spec `:{0}` is not supported")]
    Spec(String),
}

/// Formats `template` with the named arguments in `args` (name → value).
pub fn format(template: &str, args: &Map<String, Value>) -> Result<String, FormatError> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' => {
                if chars.peek().map(|(_, c)| *c) == Some('{') {
                    chars.next();
                    out.push('{');
                    continue;
                }
                let mut depth_end = None;
                let mut field = String::new();
                for (j, c) in chars.by_ref() {
                    if c == '}' {
                        depth_end = Some(j);
                        break;
                    }
                    if c == '{' {
                        return Err(FormatError::Unbalanced(j));
                    }
                    field.push(c);
                }
                if depth_end.is_none() {
                    return Err(FormatError::Unbalanced(i));
                }
                out.push_str(&replace_field(&field, args)?);
            }
            '}' => {
                if chars.peek().map(|(_, c)| *c) == Some('}') {
                    chars.next();
                    out.push('}');
                } else {
                    return Err(FormatError::Unbalanced(i));
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// One `{…}` replacement field: `name(.attr|[key])*(!conv)?(:spec)?`.
fn replace_field(field: &str, args: &Map<String, Value>) -> Result<String, FormatError> {
    let (field, spec) = match field.split_once(':') {
        Some((f, s)) => (f, Some(s)),
        None => (field, None),
    };
    if let Some(spec) = spec.filter(|s| !s.is_empty()) {
        return Err(FormatError::Spec(spec.to_string()));
    }
    let (field, conv) = match field.split_once('!') {
        Some((f, c)) => (f, Some(c)),
        None => (field, None),
    };
    let value = lookup(field, args)?;
    match conv {
        None | Some("s") => Ok(py_str(value).into_owned()),
        Some("r") => Ok(py_repr(value)),
        Some(other) => Err(FormatError::Conversion(other.to_string())),
    }
}

fn lookup<'a>(field: &str, args: &'a Map<String, Value>) -> Result<&'a Value, FormatError> {
    let name_end = field.find(['.', '[']).unwrap_or(field.len());
    let name = &field[..name_end];
    if name.is_empty() || name.chars().all(|c| c.is_ascii_digit()) {
        return Err(FormatError::Positional(field.to_string()));
    }
    let mut cur = args
        .get(name)
        .ok_or_else(|| FormatError::UnknownName(name.to_string()))?;
    let mut rest = &field[name_end..];
    let bad = || FormatError::BadField(field.to_string());
    while !rest.is_empty() {
        let (part, is_index, next) = if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            (&r[..end], false, &r[end..])
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(bad)?;
            (&r[..end], true, &r[end + 1..])
        } else {
            return Err(bad());
        };
        if part.is_empty() {
            return Err(bad());
        }
        let missing = || FormatError::Missing {
            field: field.to_string(),
            part: part.to_string(),
        };
        cur = match cur {
            // Attribute access only works on the argument objects (Python attributes).
            Value::Object(m) if !is_index => m.get(part).ok_or_else(missing)?,
            // `[key]`: dict keys; all-digit keys are integers in Python, which a
            // JSON object never has, so they only index lists.
            Value::Object(m) if is_index && !part.chars().all(|c| c.is_ascii_digit()) => {
                m.get(part).ok_or_else(missing)?
            }
            Value::Array(a) if is_index => part
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get(i))
                .ok_or_else(missing)?,
            _ => return Err(missing()),
        };
        rest = next;
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args() -> Map<String, Value> {
        json!({"request": {
            "id": "100-0000000001",
            "labels": ["small", "large"],
            "requestor": "zuul",
            "requestor_data": {"project": "org/repo", "n": 3},
            "relative_priority": 0,
            "event_id": null,
            "created_time": 1700000000.5,
            "tenant_name": "it's"
        }})
        .as_object()
        .cloned()
        .unwrap()
    }

    fn f(t: &str) -> Result<String, FormatError> {
        format(t, &args())
    }

    #[test]
    fn python_rendering() {
        assert_eq!(f("id={request.id}").unwrap(), "id=100-0000000001");
        assert_eq!(f("{request.labels}").unwrap(), "['small', 'large']");
        assert_eq!(f("{request.labels[1]}").unwrap(), "large");
        assert_eq!(f("{request.requestor_data[project]}").unwrap(), "org/repo");
        assert_eq!(f("{request.requestor_data[n]}").unwrap(), "3");
        assert_eq!(f("{request.event_id}").unwrap(), "None");
        assert_eq!(f("{request.created_time}").unwrap(), "1700000000.5");
        assert_eq!(f("{request.requestor!r}").unwrap(), "'zuul'");
        assert_eq!(f("{request.tenant_name!r}").unwrap(), "\"it's\"");
        assert_eq!(
            f("{{literal}} {request.relative_priority}").unwrap(),
            "{literal} 0"
        );
        assert_eq!(f("{request.id:}").unwrap(), "100-0000000001");
        assert_eq!(
            f("{request.requestor_data}").unwrap(),
            "{'project': 'org/repo', 'n': 3}"
        );
    }

    #[test]
    fn errors_not_panics() {
        assert!(matches!(
            f("{request.nope}"),
            Err(FormatError::Missing { .. })
        ));
        assert!(matches!(f("{req.id}"), Err(FormatError::UnknownName(_))));
        assert!(matches!(f("{}"), Err(FormatError::Positional(_))));
        assert!(matches!(f("{0}"), Err(FormatError::Positional(_))));
        assert!(matches!(f("{request.id"), Err(FormatError::Unbalanced(_))));
        assert!(matches!(f("x}"), Err(FormatError::Unbalanced(_))));
        assert!(matches!(f("{request.}"), Err(FormatError::BadField(_))));
        assert!(matches!(f("{request[x}"), Err(FormatError::BadField(_))));
        assert!(matches!(
            f("{request.id!a}"),
            Err(FormatError::Conversion(_))
        ));
        assert!(matches!(f("{request.id:>10}"), Err(FormatError::Spec(_))));
        assert!(matches!(
            f("{request.labels[9]}"),
            Err(FormatError::Missing { .. })
        ));
        assert!(matches!(
            f("{request.id.x}"),
            Err(FormatError::Missing { .. })
        ));
        assert!(matches!(
            f("{request.requestor_data[0]}"),
            Err(FormatError::Missing { .. })
        ));
    }
}
