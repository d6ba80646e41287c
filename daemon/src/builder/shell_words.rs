//! Shell-style word splitting, as Python's `shlex.split` (POSIX mode, no comments) does
//! it. Nodepool builds the diskimage-builder command as one string and splits it with
//! `shlex.split`, so `dib-cmd` values such as `env FOO='a b' disk-image-create` must
//! split the same way here.
//!
//! Rules: unquoted whitespace separates words; `'…'` is literal; inside `"…"` a
//! backslash escapes only `"` and `\` (otherwise it stays); outside quotes a backslash
//! makes the next character literal; `''` and `""` give an empty word; `#` is an
//! ordinary character.

/// Why a string could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A `'` or `"` quote is never closed.
    #[error("no closing {quote} quote in `{input}`")]
    UnclosedQuote { quote: char, input: String },
    /// The string ends with a lone backslash.
    #[error("no escaped character after the trailing backslash in `{input}`")]
    TrailingBackslash { input: String },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between words.
    Blank,
    /// Inside an unquoted part of a word.
    Word,
    /// Inside `'…'`.
    Single,
    /// Inside `"…"`.
    Double,
}

/// `shlex`'s whitespace set.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Splits `input` into words like `shlex.split(input)`.
pub fn split(input: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut state = State::Blank;
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match state {
            State::Blank | State::Word => match c {
                c if is_blank(c) => {
                    if state == State::Word {
                        words.push(std::mem::take(&mut word));
                        state = State::Blank;
                    }
                }
                '\'' => state = State::Single,
                '"' => state = State::Double,
                '\\' => match chars.next() {
                    Some(next) => {
                        word.push(next);
                        state = State::Word;
                    }
                    None => {
                        return Err(SplitError::TrailingBackslash {
                            input: input.to_string(),
                        })
                    }
                },
                c => {
                    word.push(c);
                    state = State::Word;
                }
            },
            State::Single => match c {
                '\'' => state = State::Word,
                c => word.push(c),
            },
            State::Double => match c {
                '"' => state = State::Word,
                '\\' => match chars.peek() {
                    Some(&next) if next == '"' || next == '\\' => {
                        word.push(next);
                        chars.next();
                    }
                    Some(_) => word.push('\\'),
                    None => {
                        return Err(SplitError::UnclosedQuote {
                            quote: '"',
                            input: input.to_string(),
                        })
                    }
                },
                c => word.push(c),
            },
        }
    }
    match state {
        State::Blank => {}
        State::Word => words.push(word),
        State::Single => {
            return Err(SplitError::UnclosedQuote {
                quote: '\'',
                input: input.to_string(),
            })
        }
        State::Double => {
            return Err(SplitError::UnclosedQuote {
                quote: '"',
                input: input.to_string(),
            })
        }
    }
    Ok(words)
}

/// Quotes `word` so that [`split`] (and a POSIX shell) gives it back unchanged, like
/// Python's `shlex.quote`.
pub fn quote(word: &str) -> String {
    if word.is_empty() {
        return "''".to_string();
    }
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c);
    if word.chars().all(safe) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r#"'"'"'"#))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Vec<String> {
        split(s).expect("splits")
    }

    #[test]
    fn plain_words_and_whitespace() {
        assert_eq!(ok("a b  c"), ["a", "b", "c"]);
        assert_eq!(
            ok("  leading and trailing \t\n"),
            ["leading", "and", "trailing"]
        );
        assert!(ok("").is_empty());
        assert!(ok(" \t ").is_empty());
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(
            ok(r"--qemu-img-options 'compat=0.10'"),
            ["--qemu-img-options", "compat=0.10"]
        );
        assert_eq!(ok(r"'a \ b' c"), [r"a \ b", "c"]);
        assert_eq!(ok(r#"'say "hi"'"#), [r#"say "hi""#]);
    }

    #[test]
    fn double_quotes_escape_only_quote_and_backslash() {
        assert_eq!(ok(r#""a \"b\" c""#), [r#"a "b" c"#]);
        assert_eq!(ok(r#""a\\b""#), [r"a\b"]);
        assert_eq!(ok(r#""a\nb $HOME""#), [r"a\nb $HOME"]);
        assert_eq!(ok(r#""it's""#), ["it's"]);
    }

    #[test]
    fn backslash_outside_quotes_escapes_anything() {
        assert_eq!(ok(r"a\ b c"), ["a b", "c"]);
        assert_eq!(ok(r"\'x"), ["'x"]);
        assert_eq!(ok(r"a\\b"), [r"a\b"]);
    }

    #[test]
    fn adjacent_parts_join_into_one_word() {
        assert_eq!(ok(r#"FOO='a b'"c d"e"#), ["FOO=a bc de"]);
        assert_eq!(ok(r#"env X="1 2" cmd"#), ["env", "X=1 2", "cmd"]);
    }

    #[test]
    fn empty_quotes_give_empty_words() {
        assert_eq!(ok("a '' b"), ["a", "", "b"]);
        assert_eq!(ok(r#""""#), [""]);
    }

    #[test]
    fn hash_is_not_a_comment() {
        assert_eq!(ok("a #b c"), ["a", "#b", "c"]);
    }

    #[test]
    fn unicode_passes_through() {
        assert_eq!(ok("ünï 'cödé x'"), ["ünï", "cödé x"]);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            split("a 'b"),
            Err(SplitError::UnclosedQuote { quote: '\'', .. })
        ));
        assert!(matches!(
            split(r#"a "b"#),
            Err(SplitError::UnclosedQuote { quote: '"', .. })
        ));
        assert!(matches!(
            split(r#"a "b\"#),
            Err(SplitError::UnclosedQuote { quote: '"', .. })
        ));
        assert!(matches!(
            split(r"a b\"),
            Err(SplitError::TrailingBackslash { .. })
        ));
    }

    #[test]
    fn quote_round_trips() {
        for w in [
            "",
            "plain",
            "a b",
            "it's",
            r#"x"y"#,
            r"back\slash",
            "$HOME",
            "ü",
        ] {
            let q = quote(w);
            assert_eq!(ok(&q), [w], "quoted as {q}");
        }
        assert_eq!(quote("compat=0.10"), "compat=0.10");
        assert_eq!(quote("a b"), "'a b'");
    }
}
