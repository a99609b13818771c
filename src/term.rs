//! Text from builds on the user's terminal. A build's log is hostile: an
//! escape sequence in it could move the cursor, rewrite what the terminal
//! shows, set its title or answer a query on the user's behalf. What comb
//! prints of it goes through [`safe`]; logs stay byte-exact in the store.

use std::borrow::Cow;

/// `text` with every control character but newline and tab written as a
/// visible escape (`\x1b`, `\r`, `\u{9b}`): C0, DEL and C1 controls, and
/// the bidirectional overrides that reorder what a line seems to say.
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        c => c.is_control(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_shown_not_run() {
        assert_eq!(safe("plain\tline\n"), "plain\tline\n");
        assert!(matches!(safe("plain"), Cow::Borrowed(_)));
        assert_eq!(safe("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
        assert_eq!(safe("100%\rdone"), "100%\\rdone");
        assert_eq!(safe("\u{9b}2J"), "\\x9b2J");
        assert_eq!(safe("a\u{202e}b\x7f"), "a\\u{202e}b\\x7f");
    }
}
