//! Glob patterns of `[[output]] files`: which files under `$DESTDIR` go
//! into a binary package.
//!
//! Paths are relative to `$DESTDIR` and use `/`. In a pattern:
//! `*` matches any run of characters within one path component (dot files
//! included), `?` one character, `[a-z]`/`[!a-z]` one character of (not
//! of) a class, `{a,b}` either alternative, `\x` the character `x`, and
//! `**` as a whole component any number of components: zero in the
//! middle or at the start (`usr/**/man1/*`, `**/README`), and at least
//! one at the end, so `usr/include/**` is everything *below*
//! `usr/include`.

use comb_debian::relation::SyntaxError;
use std::fmt;

/// A validated pattern.
#[derive(Clone)]
pub struct Glob {
    pattern: String,
    /// One segment list per `{,}` alternative.
    alternatives: Vec<Vec<Segment>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`
    AnyPath,
    Name(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    Star,
    One,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// More `{,}` alternatives than this is a mistake, not a file list.
const MAX_ALTERNATIVES: usize = 256;

impl Glob {
    /// Validates `pattern`. An error's offset is a byte offset into it.
    pub fn new(pattern: &str) -> Result<Glob, SyntaxError> {
        let err = |offset: usize, message: &str| SyntaxError {
            offset,
            message: format!("bad file pattern {pattern:?}: {message}"),
        };
        if pattern.is_empty() {
            return Err(err(
                0,
                "it is empty; expected a path below $DESTDIR such as \"usr/bin/*\"",
            ));
        }
        check_brackets(pattern).map_err(|(o, m)| err(o, m))?;
        let expanded = expand_braces(pattern).map_err(|(o, m)| err(o, m))?;
        // Offsets into an expansion mean nothing in the pattern as written.
        let exact = expanded.len() == 1;
        let mut alternatives = Vec::new();
        for alt in &expanded {
            let segments = segments(alt).map_err(|(o, m)| err(if exact { o } else { 0 }, m))?;
            alternatives.push(segments);
        }
        Ok(Glob {
            pattern: pattern.to_string(),
            alternatives,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `path` (relative to `$DESTDIR`, `/`-separated; a leading
    /// `/` or `./` is ignored) matches.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.trim_start_matches("./").trim_start_matches('/');
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        self.alternatives
            .iter()
            .any(|segments| match_segments(segments, &components))
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Glob").field(&self.pattern).finish()
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl PartialEq for Glob {
    fn eq(&self, other: &Glob) -> bool {
        self.pattern == other.pattern
    }
}

impl Eq for Glob {}

/// Byte offset of the `]` that closes the class opened at `open`, if any.
/// `]` right after `[` or `[!` is a literal member.
fn class_end(chars: &[(usize, char)], open: usize) -> Option<usize> {
    let mut j = open + 1;
    if matches!(chars.get(j), Some((_, '!' | '^'))) {
        j += 1;
    }
    if matches!(chars.get(j), Some((_, ']'))) {
        j += 1;
    }
    while j < chars.len() {
        if chars[j].1 == ']' {
            return Some(j);
        }
        j += 1;
    }
    None
}

/// Escapes, classes and braces are all closed.
fn check_brackets(pattern: &str) -> Result<(), (usize, &'static str)> {
    let chars: Vec<(usize, char)> = pattern.char_indices().collect();
    let mut open_braces = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        match c {
            '\\' => {
                if i + 1 == chars.len() {
                    return Err((at, "a `\\` at the end escapes nothing"));
                }
                // Components are split at every `/`, so `\/` would leave
                // a `\` at the end of one that escapes nothing.
                if chars[i + 1].1 == '/' {
                    return Err((at, "a `\\` cannot escape `/`: a file name holds no `/`"));
                }
                i += 1;
            }
            '[' => {
                let end = class_end(&chars, i).ok_or((at, "unclosed `[`: expected `]`"))?;
                if chars[i..end].iter().any(|&(_, c)| c == '/') {
                    return Err((at, "a `[...]` class cannot hold `/`"));
                }
                i = end;
            }
            '{' => open_braces.push(at),
            '}' if open_braces.pop().is_none() => return Err((at, "unmatched `}`")),
            _ => {}
        }
        i += 1;
    }
    match open_braces.pop() {
        Some(at) => Err((at, "unclosed `{`: expected `}`")),
        None => Ok(()),
    }
}

/// `a{b,c}d` → `abd`, `acd`, nested braces included. Needs balanced input.
fn expand_braces(pattern: &str) -> Result<Vec<String>, (usize, &'static str)> {
    let chars: Vec<(usize, char)> = pattern.char_indices().collect();
    // The first top-level brace and the commas and close that belong to it.
    let mut i = 0;
    let mut depth = 0;
    let mut open = None;
    let mut commas = Vec::new();
    while i < chars.len() {
        match chars[i].1 {
            '\\' => i += 1,
            '[' => i = class_end(&chars, i).unwrap_or(i),
            '{' => {
                if depth == 0 {
                    open = Some(i);
                }
                depth += 1;
            }
            ',' if depth == 1 => commas.push(i),
            '}' => {
                depth -= 1;
                if depth == 0 {
                    let open = open.unwrap_or(0);
                    let byte = |k: usize| chars.get(k).map_or(pattern.len(), |c| c.0);
                    let prefix = &pattern[..byte(open)];
                    let suffix = &pattern[byte(i + 1)..];
                    let mut bounds = vec![open];
                    bounds.extend(&commas);
                    bounds.push(i);
                    let mut out = Vec::new();
                    for w in bounds.windows(2) {
                        let part = &pattern[byte(w[0] + 1)..byte(w[1])];
                        for rest in expand_braces(&format!("{prefix}{part}{suffix}"))? {
                            out.push(rest);
                            if out.len() > MAX_ALTERNATIVES {
                                return Err((byte(open), "too many `{,}` alternatives"));
                            }
                        }
                    }
                    return Ok(out);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(vec![pattern.to_string()])
}

fn segments(pattern: &str) -> Result<Vec<Segment>, (usize, &'static str)> {
    if pattern.starts_with('/') {
        return Err((
            0,
            "it is absolute; expected a path relative to $DESTDIR such as \"usr/bin/*\"",
        ));
    }
    let mut out = Vec::new();
    let mut start = 0;
    for component in pattern.split('/') {
        let at = start;
        start += component.len() + 1;
        match component {
            "" => return Err((at, "empty path component (`//` or a trailing `/`)")),
            "." | ".." => {
                return Err((at, "`.` and `..` components are not allowed"));
            }
            "**" => out.push(Segment::AnyPath),
            c if contains_double_star(c) => {
                return Err((
                    at,
                    "`**` must be a whole path component, as in \"usr/include/**\"",
                ))
            }
            c => out.push(Segment::Name(tokens(c))),
        }
    }
    Ok(out)
}

fn contains_double_star(component: &str) -> bool {
    let mut escaped = false;
    let mut previous_star = false;
    for c in component.chars() {
        if escaped {
            escaped = false;
            previous_star = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '*' if previous_star => return true,
            _ => {}
        }
        previous_star = c == '*';
    }
    false
}

/// Tokens of one component; brackets are known to be closed, and every
/// `\` to escape a character of the component.
fn tokens(component: &str) -> Vec<Token> {
    let chars: Vec<(usize, char)> = component.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i].1 {
            '\\' => {
                i += 1;
                if let Some(&(_, c)) = chars.get(i) {
                    out.push(Token::Char(c));
                }
            }
            '*' => out.push(Token::Star),
            '?' => out.push(Token::One),
            '[' => {
                let end = class_end(&chars, i).unwrap_or(chars.len());
                let mut j = i + 1;
                let negated = matches!(chars.get(j), Some((_, '!' | '^')));
                if negated {
                    j += 1;
                }
                let members: Vec<char> = chars[j..end].iter().map(|c| c.1).collect();
                let mut ranges = Vec::new();
                let mut k = 0;
                while k < members.len() {
                    if k + 2 < members.len() && members[k + 1] == '-' {
                        ranges.push((members[k], members[k + 2]));
                        k += 3;
                    } else {
                        ranges.push((members[k], members[k]));
                        k += 1;
                    }
                }
                out.push(Token::Class { negated, ranges });
                i = end;
            }
            c => out.push(Token::Char(c)),
        }
        i += 1;
    }
    out
}

/// Whether `segments` match exactly `components`: one pass per segment
/// over the set of prefixes matched so far, so that several `**` cost
/// segments x components, not components to the power of the `**`s
/// (a path from a build can have a thousand components).
fn match_segments(segments: &[Segment], components: &[&str]) -> bool {
    let n = components.len();
    // matched[j]: the segments so far match the first j components.
    let mut matched = vec![false; n + 1];
    matched[0] = true;
    for (i, segment) in segments.iter().enumerate() {
        let mut next = vec![false; n + 1];
        match segment {
            Segment::AnyPath => {
                // Any number of components; at least one at the end.
                let least = usize::from(i + 1 == segments.len());
                let mut any = false;
                for j in least..=n {
                    any |= matched[j - least];
                    next[j] = any;
                }
            }
            Segment::Name(tokens) => {
                for j in 0..n {
                    next[j + 1] = matched[j] && match_name(tokens, components[j]);
                }
            }
        }
        if !next.contains(&true) {
            return false;
        }
        matched = next;
    }
    matched[n]
}

/// Wildcard matching with backtracking to the last `*`.
fn match_name(tokens: &[Token], name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    let (mut t, mut c) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while c < chars.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t, c));
                t += 1;
                continue;
            }
            Some(tok) if single_matches(tok, chars[c]) => {
                t += 1;
                c += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((st, sc)) => {
                t = st + 1;
                c = sc + 1;
                star = Some((st, sc + 1));
            }
            None => return false,
        }
    }
    tokens[t..].iter().all(|tok| *tok == Token::Star)
}

fn single_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Char(x) => *x == c,
        Token::One => true,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
        Token::Star => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        Glob::new(pattern).unwrap().matches(path)
    }

    #[test]
    fn matching() {
        assert!(m(
            "usr/lib/*/libgreet.so.*",
            "usr/lib/x86_64-linux-gnu/libgreet.so.1"
        ));
        assert!(m(
            "usr/lib/*/libgreet.so.*",
            "usr/lib/x86_64-linux-gnu/libgreet.so.1.0.0"
        ));
        assert!(!m(
            "usr/lib/*/libgreet.so.*",
            "usr/lib/x86_64-linux-gnu/libgreet.so"
        ));
        assert!(!m("usr/lib/*/libgreet.so.*", "usr/lib/a/b/libgreet.so.1"));
        assert!(m("usr/include/**", "usr/include/greet.h"));
        assert!(m("usr/include/**", "/usr/include/greet/x.h"));
        assert!(!m("usr/include/**", "usr/include"));
        assert!(!m("usr/include/**", "usr/includes/x.h"));
        assert!(m("usr/**/man1/*", "usr/man1/greet.1"));
        assert!(m("usr/**/man1/*", "usr/share/man/man1/greet.1"));
        assert!(m("**/README", "README"));
        assert!(m("**/README", "usr/share/doc/x/README"));
        assert!(m("usr/bin/gr?et", "usr/bin/greet"));
        assert!(m("usr/bin/[a-g]*", "usr/bin/greet"));
        assert!(!m("usr/bin/[!a-g]*", "usr/bin/greet"));
        assert!(m("usr/bin/*", "usr/bin/.hidden"));
        assert!(m(
            "usr/lib/*/libgreet.{a,so}",
            "usr/lib/x86_64-linux-gnu/libgreet.a"
        ));
        assert!(m("{usr/bin,bin}/sh", "bin/sh"));
        assert!(m("usr/share/{a,b{c,d}}/x", "usr/share/bd/x"));
        assert!(m("usr/bin/a\\*b", "usr/bin/a*b"));
        assert!(!m("usr/bin/a\\*b", "usr/bin/axb"));
        assert!(m("usr/share/*a*b*c", "usr/share/xxaxxbxxbc"));
        assert!(!m("usr/share/*a*b*c", "usr/share/xxaxxbxxb"));
    }

    #[test]
    fn bad_patterns() {
        let e = |p: &str| Glob::new(p).unwrap_err();
        assert!(e("").message.contains("empty"));
        assert!(e("/usr/bin/*").message.contains("absolute"));
        let x = e("usr/[a-z");
        assert_eq!(x.offset, 4);
        assert!(x.message.contains("unclosed `[`"));
        let x = e("usr/{a,b");
        assert_eq!(x.offset, 4);
        assert!(x.message.contains("unclosed `{`"));
        assert!(e("usr/a}").message.contains("unmatched `}`"));
        let x = e("usr/lib**");
        assert_eq!(x.offset, 4);
        assert!(x.message.contains("whole path component"));
        let x = e("usr//bin");
        assert_eq!(x.offset, 4);
        assert!(e("usr/bin/").message.contains("empty path component"));
        assert!(e("usr/../etc").message.contains("`..`"));
        assert!(e("usr/bin\\").message.contains("escapes nothing"));
        assert!(e("usr[/]bin").message.contains("cannot hold `/`"));
    }

    /// Found while looking into the `glob` fuzz target's speed: six `**`
    /// against a path of 300 components took minutes (backtracking), and
    /// paths come from builds.
    #[test]
    fn many_double_stars_match_deep_paths_quickly() {
        let deep = vec!["a"; 2000].join("/");
        let pattern = ["**", "a"].repeat(6).join("/");
        let start = std::time::Instant::now();
        assert!(!m(&format!("{pattern}/b"), &deep));
        assert!(m(&pattern, &deep));
        assert!(m(&format!("{pattern}/**"), &deep));
        assert!(!m(&format!("{pattern}/**"), &["a"; 6].join("/")));
        assert!(m(&format!("**/{pattern}"), &["a"; 6].join("/")));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert!(m("**/**", "a"));
        assert!(!m("**/**", ""));
        assert!(m("usr/**/**/x", "usr/x"));
        assert!(m("usr/**/b/**/x", "usr/a/b/c/b/x"));
        assert!(!m("usr/**/b/**/x", "usr/a/c/x"));
    }

    /// Found by the `glob` fuzz target: `\/` left a `\` at the end of a
    /// component, and compiling it read past the component's end.
    #[test]
    fn an_escaped_slash_is_refused() {
        let x = Glob::new("usr/share\\/doc").unwrap_err();
        assert_eq!(x.offset, 9);
        assert!(x.message.contains("cannot escape `/`"), "{}", x.message);
        let fuzzed = "usshuare\u{fffd}r/sharg\\/er\0e\0t-phrasebgree\u{fffd}-phrases";
        assert!(Glob::new(fuzzed).is_err());
        assert!(Glob::new("{usr\\/a,b}").is_err());
    }
}
