//! `%(NODEPOOL_NAME)` substitution, applied to the raw text before YAML parsing, like
//! Python Nodepool: only environment variables whose name starts with `NODEPOOL_` are
//! used; any other `%(...)` is left as written. Positions in later errors refer to the
//! substituted text.

/// Replaces `%(NAME)` by `lookup(NAME)` for every `NAME` starting with `NODEPOOL_` that
/// `lookup` knows.
pub(crate) fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("%(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let replaced = after.find(')').and_then(|end| {
            let name = &after[..end];
            if !name.starts_with("NODEPOOL_") {
                return None;
            }
            lookup(name).map(|value| (value, end))
        });
        match replaced {
            Some((value, end)) => {
                out.push_str(&value);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("%(");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// [`substitute`] with the process environment.
pub(crate) fn substitute_env(text: &str) -> String {
    substitute(text, |name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "NODEPOOL_A" => Some("alpha".into()),
            "NODEPOOL_EMPTY" => Some(String::new()),
            "OTHER" => Some("nope".into()),
            _ => None,
        }
    }

    #[test]
    fn replaces_only_known_nodepool_variables() {
        assert_eq!(
            substitute("x: %(NODEPOOL_A)-%(NODEPOOL_A)%(NODEPOOL_EMPTY)!", lookup),
            "x: alpha-alpha!"
        );
        assert_eq!(
            substitute("%(OTHER) %(NODEPOOL_UNSET)", lookup),
            "%(OTHER) %(NODEPOOL_UNSET)"
        );
        assert_eq!(
            substitute("100%( %(NODEPOOL_A", lookup),
            "100%( %(NODEPOOL_A"
        );
        assert_eq!(substitute("é%(NODEPOOL_A)é", lookup), "éalphaé");
    }
}
