//! What the CLI writes to a terminal shows control characters as `?`, as `ls` does.
//!
//! Records hold text that others wrote: a hold comment, an autohold's job name, a
//! requestor, a znode's name. Written to a terminal as they are, an escape sequence in
//! one of them can retitle the window, rewrite what the operator sees, or (OSC 52) set
//! the clipboard. Python Nodepool prints them as they are. So does this CLI into a pipe
//! or a file, where scripts read its output: the bytes stay Nodepool's. On a terminal,
//! every C0 control character but newline and tab, DEL and every C1 control character
//! (U+0080 – U+009F, two bytes in UTF-8) becomes one `?`.

use std::io::{self, IsTerminal, Write};

/// A writer that replaces control characters on their way to a terminal.
pub struct Sanitized<W: Write> {
    inner: W,
    /// A `0xC2` at the end of the previous write: the first byte of a possible C1.
    pending_c2: bool,
}

impl<W: Write> Sanitized<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Sanitized {
            inner,
            pending_c2: false,
        }
    }
}

/// Whether a byte of UTF-8 text (not the second byte of a two-byte sequence) is a C0
/// control character to hide, or DEL.
fn is_hidden(b: u8) -> bool {
    (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f
}

impl<W: Write> Write for Sanitized<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = Vec::with_capacity(buf.len() + 1);
        let mut bytes = buf.iter().copied().peekable();
        if std::mem::take(&mut self.pending_c2) {
            match bytes.peek() {
                Some(&b) if (0x80..=0x9f).contains(&b) => {
                    out.push(b'?');
                    bytes.next();
                }
                Some(_) => out.push(0xc2),
                None => self.pending_c2 = true,
            }
        }
        while let Some(b) = bytes.next() {
            if b == 0xc2 {
                match bytes.peek() {
                    Some(&n) if (0x80..=0x9f).contains(&n) => {
                        out.push(b'?');
                        bytes.next();
                    }
                    Some(_) => out.push(b),
                    None => self.pending_c2 = true,
                }
            } else if is_hidden(b) {
                out.push(b'?');
            } else {
                out.push(b);
            }
        }
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.pending_c2) {
            self.inner.write_all(&[0xc2])?;
        }
        self.inner.flush()
    }
}

/// `text` as it should reach stdout: unchanged into a pipe or a file, with control
/// characters shown as `?` on a terminal.
pub fn for_stdout(text: &str) -> std::borrow::Cow<'_, str> {
    for_terminal(text, io::stdout().is_terminal())
}

/// `text` as it should reach stderr (see [`for_stdout`]).
pub fn for_stderr(text: &str) -> std::borrow::Cow<'_, str> {
    for_terminal(text, io::stderr().is_terminal())
}

fn for_terminal(text: &str, terminal: bool) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !terminal || !text.contains(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| if hidden(c) { '?' } else { c })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(pieces: &[&[u8]]) -> Vec<u8> {
        let mut s = Sanitized::new(Vec::new());
        for p in pieces {
            s.write_all(p).unwrap();
        }
        s.flush().unwrap();
        s.inner
    }

    #[test]
    fn escapes_become_question_marks_and_text_stays() {
        let text = "held: \u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{7f}\u{9b}31m é ✓\tnext\n";
        let want = "held: ?]0;pwned??[2J???31m é ✓\tnext\n";
        assert_eq!(through(&[text.as_bytes()]), want.as_bytes());
        assert_eq!(for_terminal(text, true), want);
        assert_eq!(
            for_terminal(text, false),
            text,
            "a pipe gets the bytes unchanged"
        );
    }

    #[test]
    fn a_c1_character_split_across_writes_is_still_hidden() {
        let csi = "\u{9b}".as_bytes();
        assert_eq!(csi, [0xc2, 0x9b]);
        assert_eq!(through(&[b"a\xc2", b"\x9b1m"]), b"a?1m");
        // `©` (U+00A9, C2 A9) split the same way is kept.
        assert_eq!(through(&[b"a\xc2", b"\xa9b"]), "a©b".as_bytes());
        // Ending on 0xC2 at the last write: flushed as it was.
        assert_eq!(through(&[b"a\xc2"]), b"a\xc2");
    }

    #[test]
    fn every_character_is_checked() {
        for c in (0u32..0x250)
            .filter_map(char::from_u32)
            .filter(|c| *c != '?')
        {
            let s = c.to_string();
            let hidden = c.is_control() && c != '\n' && c != '\t';
            let out = through(&[s.as_bytes()]);
            assert_eq!(out == b"?", hidden, "{c:?}");
            if !hidden {
                assert_eq!(out, s.as_bytes(), "{c:?}");
            }
        }
    }
}
