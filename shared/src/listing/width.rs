//! The display width PrettyTable gives a cell line, so that padded columns line up exactly
//! as the Python CLI prints them.
//!
//! Nodepool pins PrettyTable `<0.8`; version 0.7.2 measures a string as the **sum** of
//! per-character widths after removing ANSI colour sequences (`ESC [ digits/; m`):
//! printable ASCII 1; CJK ideographs, Hangul syllables, Hiragana/Katakana, full-width
//! forms and CJK punctuation 2; combining marks 0; backspace and DEL −1; NUL and 0x1F 0;
//! everything else (including tab and other controls) 1. The checks run in that
//! order, so e.g. the combining kana voicing marks (U+3099/309A) count 0. Python's
//! `unicodedata.combining` is approximated by the table of combining-mark ranges below
//! (the common scripts); a rare mark outside it counts 1.

/// Width of one line (no `\n` inside) as PrettyTable 0.7.2 measures it; may be negative
/// when the line holds backspaces or DEL.
pub fn line_width(line: &str) -> i64 {
    let bytes = line.as_bytes();
    // Fast path: printable ASCII only (the overwhelmingly common case).
    if bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
        return bytes.len() as i64;
    }
    let mut width = 0i64;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            // A colour sequence `ESC [ [0-9;]* m` is removed before measuring; an ESC
            // that does not start one is measured like any other character.
            let mut probe = chars.clone();
            probe.next();
            let mut ok = false;
            for p in probe.by_ref() {
                if p == 'm' {
                    ok = true;
                    break;
                }
                if !(p.is_ascii_digit() || p == ';') {
                    break;
                }
            }
            if ok {
                chars = probe;
                continue;
            }
        }
        width += char_width(c);
    }
    width
}

/// Width of a (possibly multi-line) cell: the widest line, and the number of lines
/// (PrettyTable splits cells on `\n` only).
pub fn block_size(text: &str) -> (i64, usize) {
    if !text.contains('\n') {
        return (line_width(text), 1);
    }
    let mut w = i64::MIN;
    let mut h = 0;
    for line in text.split('\n') {
        w = w.max(line_width(line));
        h += 1;
    }
    (w, h)
}

/// PrettyTable 0.7.2's width of one character.
pub fn char_width(c: char) -> i64 {
    let u = c as u32;
    if (0x21..=0x7e).contains(&u) {
        return 1;
    }
    if (0x4e00..=0x9fff).contains(&u) || (0xac00..=0xd7af).contains(&u) {
        return 2;
    }
    if is_combining(u) {
        return 0;
    }
    if (0x3040..=0x30ff).contains(&u) || (0xff01..=0xff60).contains(&u) {
        return 2;
    }
    if (0x3000..=0x303e).contains(&u) {
        return 2;
    }
    match u {
        0x08 | 0x7f => -1,
        0x00 | 0x1f => 0,
        _ => 1,
    }
}

/// Ranges of characters with a non-zero canonical combining class (an approximation of
/// Python's `unicodedata.combining`, covering the common scripts).
const COMBINING: &[(u32, u32)] = &[
    (0x0300, 0x034e),
    (0x0350, 0x036f),
    (0x0483, 0x0487),
    (0x0591, 0x05bd),
    (0x05bf, 0x05bf),
    (0x05c1, 0x05c2),
    (0x05c4, 0x05c5),
    (0x05c7, 0x05c7),
    (0x0610, 0x061a),
    (0x064b, 0x065f),
    (0x0670, 0x0670),
    (0x06d6, 0x06dc),
    (0x06df, 0x06e4),
    (0x06e7, 0x06e8),
    (0x06ea, 0x06ed),
    (0x0711, 0x0711),
    (0x0730, 0x074a),
    (0x07eb, 0x07f3),
    (0x093c, 0x093c),
    (0x094d, 0x094d),
    (0x0951, 0x0954),
    (0x09bc, 0x09bc),
    (0x09cd, 0x09cd),
    (0x0a3c, 0x0a3c),
    (0x0a4d, 0x0a4d),
    (0x0abc, 0x0abc),
    (0x0acd, 0x0acd),
    (0x0b3c, 0x0b3c),
    (0x0b4d, 0x0b4d),
    (0x0bcd, 0x0bcd),
    (0x0c4d, 0x0c4d),
    (0x0c55, 0x0c56),
    (0x0cbc, 0x0cbc),
    (0x0ccd, 0x0ccd),
    (0x0d4d, 0x0d4d),
    (0x0dca, 0x0dca),
    (0x0e38, 0x0e3a),
    (0x0e48, 0x0e4b),
    (0x0eb8, 0x0eb9),
    (0x0ec8, 0x0ecb),
    (0x0f18, 0x0f19),
    (0x0f35, 0x0f35),
    (0x0f37, 0x0f37),
    (0x0f39, 0x0f39),
    (0x0f71, 0x0f72),
    (0x0f74, 0x0f74),
    (0x0f7a, 0x0f7d),
    (0x0f80, 0x0f80),
    (0x0f82, 0x0f84),
    (0x0f86, 0x0f87),
    (0x1037, 0x1037),
    (0x1039, 0x103a),
    (0x1ab0, 0x1abd),
    (0x1dc0, 0x1dff),
    (0x20d0, 0x20dc),
    (0x20e1, 0x20e1),
    (0x20e5, 0x20f0),
    (0x302a, 0x302f),
    (0x3099, 0x309a),
    (0xfb1e, 0xfb1e),
    (0xfe20, 0xfe2f),
    (0x1d165, 0x1d169),
    (0x1d16d, 0x1d172),
    (0x1d17b, 0x1d182),
];

fn is_combining(u: u32) -> bool {
    if u < 0x0300 {
        return false;
    }
    COMBINING
        .binary_search_by(|&(lo, hi)| {
            if hi < u {
                std::cmp::Ordering::Less
            } else if lo > u {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_and_wide() {
        assert_eq!(line_width("abc"), 3);
        assert_eq!(line_width(""), 0);
        assert_eq!(line_width("日本"), 4);
        assert_eq!(line_width("한국"), 4);
        // Half-width katakana (U+FF61 and up) are outside FF01–FF60: 1 each.
        assert_eq!(line_width("ｶﾀｶﾅ"), 4);
        assert_eq!(line_width("Ａ"), 2);
        assert_eq!(line_width("é"), 1);
        assert_eq!(line_width("e\u{301}"), 1);
        assert_eq!(line_width("か\u{3099}"), 2);
        assert_eq!(line_width("😀"), 1);
    }

    #[test]
    fn controls_and_colours() {
        assert_eq!(line_width("a\tb"), 3);
        assert_eq!(line_width("a\u{8}b"), 1);
        assert_eq!(line_width("\u{7f}"), -1);
        assert_eq!(line_width("\u{0}\u{1f}"), 0);
        assert_eq!(line_width("\u{1b}[31mred\u{1b}[0m"), 3);
        assert_eq!(line_width("\u{1b}[x"), 3);
        assert_eq!(line_width("\u{1b}"), 1);
    }

    #[test]
    fn blocks() {
        assert_eq!(block_size("a\nbcd\n"), (3, 3));
        assert_eq!(block_size("xy"), (2, 1));
    }

    #[test]
    fn combining_table_is_sorted() {
        assert!(COMBINING.windows(2).all(|w| w[0].1 < w[1].0));
        assert!(COMBINING.iter().all(|(lo, hi)| lo <= hi));
    }
}
