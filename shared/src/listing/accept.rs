//! Content negotiation of the launcher's web API (docs/operation.md), as a pure function.
//!
//! Nodepool asks webob's `acceptable_offers` to rank the offers `text/html`,
//! `text/plain`, `application/json` and answers JSON only when `application/json` comes
//! first; every other winner gives the plain-text table. webob's rules, reproduced here:
//!
//! * No `Accept` header, or a header that does not parse (bad syntax, a `q` outside
//!   `0`…`1` with at most 3 decimals): every offer is acceptable with q = 1, so
//!   `text/html` wins → text. An empty or blank header is treated as missing too (webob
//!   would find no acceptable offer; answering 406 to it helps nobody).
//! * Otherwise each offer takes the q of the most specific media range matching it
//!   (`type/subtype` over `type/*` over `*/*`; among equally specific ranges the first
//!   one); a range with media-type parameters (`text/plain;format=flowed`) matches no
//!   offer, since the offers have none. Parameters after `q` are extensions and ignored.
//!   Type and subtype compare case-insensitively.
//! * Offers with q = 0 or no matching range are dropped; the rest are ordered by q,
//!   ties in offer order.
//! * If nothing is left, Python fails inside the app (HTTP 500); here
//!   [`NegotiationError::NotAcceptable`] lets the web layer answer 406 instead.

use thiserror::Error;

/// `Content-Type` of a JSON answer (exactly as Nodepool sends it).
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// `Content-Type` of a text answer (exactly as Nodepool sends it).
pub const CONTENT_TYPE_TEXT: &str = "text/plain; charset=UTF-8";

/// The offers, in Nodepool's order.
pub const OFFERS: [&str; 3] = ["text/html", "text/plain", "application/json"];

/// Which body the web API answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFormat {
    /// The PrettyTable text (`text/plain; charset=UTF-8`).
    Text,
    /// The JSON list (`application/json`).
    Json,
}

impl ResponseFormat {
    /// The `Content-Type` header value for this format.
    pub fn content_type(self) -> &'static str {
        match self {
            ResponseFormat::Text => CONTENT_TYPE_TEXT,
            ResponseFormat::Json => CONTENT_TYPE_JSON,
        }
    }
}

/// Negotiation failures.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NegotiationError {
    /// A well-formed `Accept` header that none of the offers satisfies (HTTP 406).
    #[error("Accept header {header:?} matches none of text/html, text/plain, application/json")]
    NotAcceptable {
        /// The header as received.
        header: String,
    },
}

/// Chooses the response format for an `Accept` header value (`None` when absent).
pub fn negotiate(accept: Option<&str>) -> Result<ResponseFormat, NegotiationError> {
    match acceptable_offers(accept).first() {
        Some((offer, _)) if *offer == "application/json" => Ok(ResponseFormat::Json),
        Some(_) => Ok(ResponseFormat::Text),
        None => Err(NegotiationError::NotAcceptable {
            header: accept.unwrap_or_default().to_string(),
        }),
    }
}

/// The acceptable offers with their q (in thousandths), best first, like webob's
/// `acceptable_offers(["text/html", "text/plain", "application/json"])`.
pub fn acceptable_offers(accept: Option<&str>) -> Vec<(&'static str, u16)> {
    let all = || OFFERS.iter().map(|o| (*o, 1000)).collect();
    let header = match accept {
        Some(h) if !h.trim().is_empty() => h,
        _ => return all(),
    };
    let ranges = match parse_accept(header) {
        Some(r) => r,
        None => return all(),
    };
    let mut out: Vec<(&'static str, u16)> = Vec::with_capacity(3);
    for offer in OFFERS {
        let (otype, osub) = offer.split_once('/').unwrap_or((offer, ""));
        let mut best: Option<(u8, u16)> = None;
        for r in &ranges {
            if r.has_params {
                continue;
            }
            let specificity = if r.mtype == "*" && r.subtype == "*" {
                1
            } else if r.subtype == "*" && r.mtype.eq_ignore_ascii_case(otype) {
                2
            } else if r.mtype.eq_ignore_ascii_case(otype) && r.subtype.eq_ignore_ascii_case(osub) {
                3
            } else {
                continue;
            };
            if best.is_none_or(|(s, _)| specificity > s) {
                best = Some((specificity, r.q));
            }
        }
        if let Some((_, q)) = best {
            if q > 0 {
                out.push((offer, q));
            }
        }
    }
    // Stable: ties keep offer order.
    out.sort_by_key(|o| std::cmp::Reverse(o.1));
    out
}

/// One media range of an `Accept` header.
#[derive(Debug)]
struct MediaRange<'a> {
    mtype: &'a str,
    subtype: &'a str,
    /// Media-type parameters before `q` (such a range matches none of our offers).
    has_params: bool,
    /// q in thousandths.
    q: u16,
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_tchar)
}

/// Splits on `sep` outside double-quoted strings.
fn split_outside_quotes(s: &str, sep: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    if in_quotes {
        return None;
    }
    parts.push(&s[start..]);
    Some(parts)
}

/// Parses a qvalue: `0(.ddd)?` or `1(.000)?` → thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    if frac.len() > 3 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (k, c) in frac.chars().enumerate() {
        let d = c.to_digit(10)? as u16;
        thousandths += d * [100, 10, 1][k];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn is_param_value(v: &str) -> bool {
    if let Some(inner) = v.strip_prefix('"') {
        inner.ends_with('"') && !inner.is_empty()
    } else {
        is_token(v)
    }
}

/// Parses a whole header; `None` when it is not valid (webob then ignores it).
fn parse_accept(header: &str) -> Option<Vec<MediaRange<'_>>> {
    let mut ranges = Vec::new();
    for element in split_outside_quotes(header, ',')? {
        let element = element.trim_matches([' ', '\t']);
        if element.is_empty() {
            continue; // the list rule allows empty elements
        }
        let mut parts = split_outside_quotes(element, ';')?.into_iter();
        let media = parts.next()?.trim_matches([' ', '\t']);
        let (mtype, subtype) = media.split_once('/')?;
        if !is_token(mtype) || !is_token(subtype) {
            return None;
        }
        let mut has_params = false;
        let mut q = 1000;
        let mut seen_q = false;
        for p in parts {
            let p = p.trim_matches([' ', '\t']);
            let (name, value) = p.split_once('=')?;
            if !is_token(name) || !is_param_value(value) {
                return None;
            }
            if seen_q {
                continue; // accept-ext
            }
            if name.eq_ignore_ascii_case("q") {
                q = parse_q(value)?;
                seen_q = true;
            } else {
                has_params = true;
            }
        }
        ranges.push(MediaRange {
            mtype,
            subtype,
            has_params,
            q,
        });
    }
    Some(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(h: Option<&str>) -> Result<ResponseFormat, NegotiationError> {
        negotiate(h)
    }

    #[test]
    fn defaults_to_text() {
        assert_eq!(neg(None), Ok(ResponseFormat::Text));
        assert_eq!(neg(Some("*/*")), Ok(ResponseFormat::Text));
        assert_eq!(neg(Some("")), Ok(ResponseFormat::Text));
        assert_eq!(neg(Some("text/plain")), Ok(ResponseFormat::Text));
        assert_eq!(
            neg(Some(
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
            )),
            Ok(ResponseFormat::Text)
        );
        assert_eq!(neg(Some("text/*")), Ok(ResponseFormat::Text));
    }

    #[test]
    fn json_when_it_wins() {
        assert_eq!(neg(Some("application/json")), Ok(ResponseFormat::Json));
        assert_eq!(neg(Some("APPLICATION/JSON")), Ok(ResponseFormat::Json));
        assert_eq!(
            neg(Some("text/plain;q=0.5, application/json")),
            Ok(ResponseFormat::Json)
        );
        assert_eq!(
            neg(Some("*/*;q=0.1, application/json;q=0.2")),
            Ok(ResponseFormat::Json)
        );
        assert_eq!(
            neg(Some("application/*, text/*;q=0.999")),
            Ok(ResponseFormat::Json)
        );
        // A tie goes to the earlier offer.
        assert_eq!(
            neg(Some("application/json, text/plain")),
            Ok(ResponseFormat::Text)
        );
        // The more specific range decides an offer's q.
        assert_eq!(neg(Some("*/*, text/*;q=0")), Ok(ResponseFormat::Json));
        assert_eq!(
            acceptable_offers(Some("*/*, text/*;q=0, text/plain;q=0.3")),
            vec![("application/json", 1000), ("text/plain", 300)]
        );
    }

    #[test]
    fn not_acceptable() {
        assert!(matches!(
            neg(Some("image/png")),
            Err(NegotiationError::NotAcceptable { .. })
        ));
        assert!(neg(Some("application/json;q=0")).is_err());
        // Media-type parameters match none of the offers.
        assert!(neg(Some("text/plain;format=flowed")).is_err());
        assert!(neg(Some(",,")).is_err());
    }

    #[test]
    fn garbage_is_ignored() {
        for h in [
            "garbage",
            "text/plain;q=2",
            "application/json;q=0.0001",
            "application/json;q=abc",
            "application/json;q",
            "text/plain;x=\"unterminated",
            "/json",
            "application/",
            "ä/ö",
            "\u{0}\u{7f}",
            &"x".repeat(100_000),
        ] {
            assert_eq!(neg(Some(h)), Ok(ResponseFormat::Text), "{h:?}");
        }
    }

    #[test]
    fn extensions_after_q_are_ignored() {
        assert_eq!(
            neg(Some("application/json;q=0.9;ext=1, text/plain;q=0.8")),
            Ok(ResponseFormat::Json)
        );
        assert_eq!(
            neg(Some("application/json ; q=1.000 , text/html;q=0.5")),
            Ok(ResponseFormat::Json)
        );
        assert_eq!(
            neg(Some(
                "text/plain;charset=\"utf-8, x\";q=0.1, application/json;q=0.05"
            )),
            Ok(ResponseFormat::Json)
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(ResponseFormat::Json.content_type(), "application/json");
        assert_eq!(
            ResponseFormat::Text.content_type(),
            "text/plain; charset=UTF-8"
        );
    }
}
