//! Server console logs for operators (`nodepool console-log`, the console's node
//! detail): a driver for a provider of the config, and the log text made safe to draw
//! in a terminal (a real console is full of escape sequences and carriage returns).

use std::time::Duration;

use super::{CloudError, CloudsFile, DriverOptions, OpenStackDriver};

/// A driver for `provider` from the few facts a console keeps of it (its clouds.yaml
/// `cloud`, `region-name` and `rate`), set up as [`super::setup::driver_options`] sets
/// up the daemons' drivers; `cloud` is looked up in clouds.yaml (the standard places,
/// or `OS_CLIENT_CONFIG_FILE`). No network traffic until the first call.
pub fn driver_for(
    provider: &str,
    cloud: &str,
    region_name: Option<String>,
    rate: Duration,
) -> Result<OpenStackDriver, CloudError> {
    let clouds = CloudsFile::load()?;
    let config = clouds
        .cloud(cloud)
        .map_err(|e| CloudError::Config(format!("provider {provider}: {e}")))?;
    let mut opts = DriverOptions::new(provider);
    opts.region_name = region_name;
    opts.rate = rate.as_secs_f64();
    OpenStackDriver::new(config, opts)
}

/// The log as plain lines: escape sequences (colours, cursor moves, titles) removed,
/// `\r\n` and lone `\r` made line breaks, tabs expanded to 8 columns, other control
/// characters dropped.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut col = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => skip_escape(&mut chars),
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                    col = 0;
                }
            }
            '\n' => {
                out.push('\n');
                col = 0;
            }
            '\t' => {
                let n = 8 - col % 8;
                out.extend(std::iter::repeat_n(' ', n));
                col += n;
            }
            c if c.is_control() => {}
            c => {
                out.push(c);
                col += 1;
            }
        }
    }
    out
}

/// Skips the rest of an escape sequence after ESC: CSI (`ESC [ … final`), OSC/DCS
/// (`ESC ] …` up to BEL or `ESC \`), a character-set designation, or one character.
fn skip_escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.next() {
        Some('[') => {
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        }
        Some(']' | 'P' | '_' | '^') => {
            while let Some(c) = chars.next() {
                if c == '\u{7}' {
                    break;
                }
                if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                    chars.next();
                    break;
                }
            }
        }
        // Character-set designations take one more character (`ESC ( B`).
        Some('(' | ')' | '*' | '+' | '#' | '%') => {
            chars.next();
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_removes_escapes_and_controls() {
        let raw =
            "\u{1b}[1;32mOK\u{1b}[0m boot\r\nline\u{7}2\rover\ta\u{1b}]0;title\u{7}end\u{1b}(B!";
        assert_eq!(sanitize(raw), "OK boot\nline2\nover    aend!");
        assert_eq!(sanitize("ünï\u{0}code"), "ünïcode");
        assert_eq!(sanitize("a\u{1b}[12;"), "a");
    }
}
