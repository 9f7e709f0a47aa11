//! Text that came from a plugin, made safe to show.
//!
//! A fetcher is untrusted, and so is every string it hands back: log lines,
//! error messages, its stderr, its `describe()` answer, install metadata.
//! Printed raw, such a string could set the terminal's title, clear the
//! screen, move the cursor and print a fake "installed" line. Every output
//! path (terminal, JSON, the audit trail) goes through [`escape`], which
//! shows control characters and escape sequences as `\x1b`-style text
//! instead of letting a terminal interpret them; [`cap`] bounds a string's
//! size when it arrives.

use std::borrow::Cow;
use std::fmt::Write;

/// Characters a terminal may act on: C0 and C1 controls, DEL, and the
/// Unicode format characters that reorder or hide text (bidi overrides and
/// isolates, zero-width joiners, the BOM, line and paragraph separators).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// `s` with every unsafe character shown escaped (`\x1b`, `\n`, `\u{202e}`);
/// borrowed when there is nothing to escape. A backslash stays as it is.
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_with(s, false)
}

/// Like [`escape`], but a newline stays a newline: for multi-line text the
/// host frames itself (a stderr tail). Each line is still one line.
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    escape_with(s, true)
}

fn escape_with(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !(keep_newlines && c == '\n');
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !unsafe_char(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// `s` cut to at most `max` bytes (on a character boundary) in a new
/// allocation of that size, so a huge argument is not kept alive by its
/// capacity; says how much was cut.
pub fn cap(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let keep = s.floor_char_boundary(max);
    format!("{}… ({} more bytes cut)", &s[..keep], s.len() - keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_shown_not_sent() {
        let hostile = "\x1b]0;pwned\x07\x1b[2J\x1b[1A\rinstalled ok\u{9b}31m\u{202e}gpj.exe";
        let shown = escape(hostile);
        assert!(!shown.chars().any(is_unsafe), "{shown}");
        assert_eq!(shown, "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[1A\\rinstalled ok\\x9b31m\\u{202e}gpj.exe");
    }

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(escape("fetched 3 files: ünïcode ok \\ backslash"), Cow::Borrowed(_)));
    }

    #[test]
    fn newlines_only_where_the_host_frames_lines() {
        assert_eq!(escape("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(escape_lines("a\nb\x1b"), "a\nb\\x1b");
    }

    #[test]
    fn cap_cuts_on_a_char_boundary_and_says_so() {
        assert_eq!(cap("short", 10), "short");
        let c = cap("ééééé", 3);
        assert_eq!(c, "é… (8 more bytes cut)");
        assert!(cap(&"x".repeat(1 << 20), 100).capacity() < 1024);
    }
}
