//! Node keys and the canonical descriptions they are hashed from.
//!
//! A node's key is `key_of(description)`: the BLAKE3 of its canonical
//! description, as 64 lowercase hex digits. The description is kept in the
//! index next to the key so that a rebuild can be explained by diffing it
//! against the previous description of the same node
//! ([`diff_descriptions`]).
//!
//! # Canonical format (version 1)
//!
//! UTF-8 text, one `key=value` line per input, each line ending in `\n`:
//!
//! ```text
//! comb-description=1          always first: the format version
//! stage=build                 always second: the stage given to Description::new
//! <key>=<value>               a field, in the order the caller added it
//! <key>#=<n>                  a map or list: its number of entries, then
//! <key>.<sub>=<value>         each entry: a map's sorted by <sub> (byte order),
//!                             a list's in order with <sub> = 0, 1, 2, …
//! ```
//!
//! - `<key>` is 1 to 64 characters from `a-z 0-9 _ -`, unique in the text.
//! - `<value>` and `<sub>` are escaped: `\` → `\\`, newline → `\n`,
//!   carriage return → `\r`, tab → `\t`, any other control character →
//!   `\xHH`; in `<sub>` also `=` → `\x3d`. So every line is one line, and its
//!   first `=` ends its key.
//! - An empty map or list is still written (`deps#=0`), so "no entries"
//!   differs from "not an input".
//!
//! The description must hold everything that can change the output and
//! nothing that cannot: no timestamps, no host paths, no temporary names.
//! The builder cannot check that; the caller (the engine) is responsible.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Display, Write as _};

/// The version line every description starts with.
pub const DESCRIPTION_FORMAT: u32 = 1;

/// Longest description key.
const MAX_KEY_LEN: usize = 64;

/// The key of a node: BLAKE3 of its canonical description, lowercase hex.
pub fn key_of(description: &str) -> String {
    blake3::hash(description.as_bytes()).to_hex().to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptionError {
    #[error("description key {0:?} is invalid: use 1 to 64 characters from a-z 0-9 _ -")]
    BadKey(String),
    #[error("description key {0:?} is given twice")]
    DuplicateKey(String),
    #[error("map {key:?} of the description has the entry {sub:?} twice")]
    DuplicateEntry { key: String, sub: String },
    #[error("description line {line}: {problem}: {text:?}")]
    Parse {
        line: usize,
        problem: &'static str,
        text: String,
    },
}

/// Builds a canonical description; see the module documentation for the
/// format. Methods chain; the first error is kept and returned by
/// [`Description::finish`].
///
/// ```
/// # use comb_cache::Description;
/// let text = Description::new("pkg-env")
///     .field("base", "blake3:…:123")
///     .map("deps", [("libc6", "2.36-9"), ("debhelper", "13.11.4")])
///     .finish()
///     .unwrap();
/// assert!(text.contains("deps.debhelper=13.11.4\ndeps.libc6=2.36-9\n"));
/// ```
#[derive(Debug, Clone)]
pub struct Description {
    text: String,
    keys: HashSet<String>,
    error: Option<DescriptionError>,
}

impl Description {
    /// A description of a node of `stage` (e.g. "build").
    pub fn new(stage: &str) -> Description {
        let mut d = Description {
            text: String::new(),
            keys: HashSet::new(),
            error: None,
        };
        d.field("comb-description", DESCRIPTION_FORMAT);
        d.field("stage", stage);
        d
    }

    fn claim(&mut self, key: &str) -> bool {
        if self.error.is_some() {
            return false;
        }
        let valid = !key.is_empty()
            && key.len() <= MAX_KEY_LEN
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            self.error = Some(DescriptionError::BadKey(key.to_string()));
            return false;
        }
        if !self.keys.insert(key.to_string()) {
            self.error = Some(DescriptionError::DuplicateKey(key.to_string()));
            return false;
        }
        true
    }

    /// Adds `key=value`.
    pub fn field(&mut self, key: &str, value: impl Display) -> &mut Self {
        if self.claim(key) {
            let v = value.to_string();
            let _ = writeln!(self.text, "{key}={}", Escaped(&v, false));
        }
        self
    }

    /// Adds a map, its entries sorted by their key.
    pub fn map<K: Display, V: Display>(
        &mut self,
        key: &str,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> &mut Self {
        if !self.claim(key) {
            return self;
        }
        let mut sorted = BTreeMap::new();
        for (k, v) in entries {
            let k = k.to_string();
            if sorted.contains_key(&k) {
                self.error = Some(DescriptionError::DuplicateEntry {
                    key: key.to_string(),
                    sub: k,
                });
                return self;
            }
            sorted.insert(k, v.to_string());
        }
        let _ = writeln!(self.text, "{key}#={}", sorted.len());
        for (k, v) in &sorted {
            let _ = writeln!(
                self.text,
                "{key}.{}={}",
                Escaped(k, true),
                Escaped(v, false)
            );
        }
        self
    }

    /// Adds a list, in the order given.
    pub fn list<V: Display>(&mut self, key: &str, items: impl IntoIterator<Item = V>) -> &mut Self {
        if !self.claim(key) {
            return self;
        }
        let items: Vec<String> = items.into_iter().map(|v| v.to_string()).collect();
        let _ = writeln!(self.text, "{key}#={}", items.len());
        for (i, v) in items.iter().enumerate() {
            let _ = writeln!(self.text, "{key}.{i}={}", Escaped(v, false));
        }
        self
    }

    /// The canonical text, or the first error made while building it.
    pub fn finish(&self) -> Result<String, DescriptionError> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(self.text.clone()),
        }
    }

    /// `key_of(finish()?)`.
    pub fn key(&self) -> Result<String, DescriptionError> {
        self.finish().map(|t| key_of(&t))
    }
}

/// Writes `s` escaped as the format says; `sub` also escapes `=`.
struct Escaped<'a>(&'a str, bool);

impl Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '=' if self.1 => f.write_str("\\x3d")?,
                // C0 and C1 controls, all below U+0100.
                c if c.is_control() => write!(f, "\\x{:02x}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

fn unescape(s: &str, line: usize) -> Result<String, DescriptionError> {
    let bad = |problem| DescriptionError::Parse {
        line,
        problem,
        text: s.to_string(),
    };
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                if hex.len() != 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("bad \\x escape"));
                }
                let b = u8::from_str_radix(&hex, 16).map_err(|_| bad("bad \\x escape"))?;
                out.push(char::from(b));
            }
            _ => return Err(bad("bad escape")),
        }
    }
    Ok(out)
}

/// Splits a canonical description into `(key, value)` pairs in order. Keys
/// are returned as written (map entries as `deps.libc6`, sub-keys still
/// escaped); values are unescaped.
pub fn parse_description(text: &str) -> Result<Vec<(String, String)>, DescriptionError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some((k, v)) = line.split_once('=') else {
            return Err(DescriptionError::Parse {
                line: i + 1,
                problem: "no '='",
                text: line.to_string(),
            });
        };
        out.push((k.to_string(), unescape(v, i + 1)?));
    }
    Ok(out)
}

/// A canonical description read back, for a typed reader: its stage and
/// each input by key, a map's or list's entries in the order written with
/// their sub-keys unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadDescription {
    stage: String,
    inputs: BTreeMap<String, Input>,
}

/// One input of a [`ReadDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// `key=value`.
    One(String),
    /// `key#=n` and its `n` entries, `(sub, value)`.
    Entries(Vec<(String, String)>),
}

impl ReadDescription {
    /// Reads a description in the canonical format of this version.
    pub fn parse(text: &str) -> Result<ReadDescription, DescriptionError> {
        let bad = |line: usize, problem, text: &str| DescriptionError::Parse {
            line,
            problem,
            text: text.to_string(),
        };
        let mut stage = None;
        let mut inputs = BTreeMap::new();
        let mut open: Option<(String, usize)> = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let (k, v) = line.split_once('=').ok_or_else(|| bad(n, "no '='", line))?;
            let v = unescape(v, n)?;
            if let Some((key, left)) = &mut open {
                if *left > 0 {
                    let sub = k
                        .strip_prefix(key.as_str())
                        .and_then(|rest| rest.strip_prefix('.'))
                        .ok_or_else(|| bad(n, "an entry is missing before this line", line))?;
                    let sub = unescape(sub, n)?;
                    if let Some(Input::Entries(e)) = inputs.get_mut(key.as_str()) {
                        e.push((sub, v));
                    }
                    *left -= 1;
                    continue;
                }
                open = None;
            }
            match (n, k) {
                (1, "comb-description") if v == DESCRIPTION_FORMAT.to_string() => continue,
                (1, _) => return Err(bad(n, "not a description of this format", line)),
                (2, "stage") => {
                    stage = Some(v);
                    continue;
                }
                (2, _) => return Err(bad(n, "the stage is missing", line)),
                _ => {}
            }
            let (key, input) = match k.strip_suffix('#') {
                Some(key) => {
                    let count: usize = v.parse().map_err(|_| bad(n, "bad entry count", line))?;
                    open = Some((key.to_string(), count));
                    (key, Input::Entries(Vec::with_capacity(count.min(1024))))
                }
                None => (k, Input::One(v)),
            };
            if inputs.insert(key.to_string(), input).is_some() {
                return Err(DescriptionError::DuplicateKey(key.to_string()));
            }
        }
        if let Some((_, left @ 1..)) = open {
            return Err(bad(
                text.lines().count(),
                "the description ends before all entries",
                &format!("{left} missing"),
            ));
        }
        let stage = stage.ok_or_else(|| bad(1, "the stage is missing", ""))?;
        Ok(ReadDescription { stage, inputs })
    }

    pub fn stage(&self) -> &str {
        &self.stage
    }

    pub fn input(&self, key: &str) -> Option<&Input> {
        self.inputs.get(key)
    }

    /// Every input's key, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.inputs.keys().map(String::as_str)
    }
}

/// One input that differs between two descriptions. `old` is `None` for an
/// added input, `new` for a removed one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub key: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// The inputs that differ from `old` to `new`: changed and added ones in
/// `new`'s order, then removed ones in `old`'s order.
pub fn diff_descriptions(old: &str, new: &str) -> Result<Vec<Change>, DescriptionError> {
    let old = parse_description(old)?;
    let new = parse_description(new)?;
    let old_map: HashMap<&str, &str> = old.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let new_keys: HashSet<&str> = new.iter().map(|(k, _)| k.as_str()).collect();
    let mut changes = Vec::new();
    for (k, v) in &new {
        match old_map.get(k.as_str()) {
            Some(o) if *o == v => {}
            o => changes.push(Change {
                key: k.clone(),
                old: o.map(|s| s.to_string()),
                new: Some(v.clone()),
            }),
        }
    }
    for (k, v) in &old {
        if !new_keys.contains(k.as_str()) {
            changes.push(Change {
                key: k.clone(),
                old: Some(v.clone()),
                new: None,
            });
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_reads_back_as_written() {
        let text = Description::new("build")
            .field("name", "a=b\nc")
            .map("source", [("x=y", "1"), ("a", "2")])
            .list("outputs", ["o1", "o2"])
            .list("empty", Vec::<String>::new())
            .finish()
            .unwrap();
        let read = ReadDescription::parse(&text).unwrap();
        assert_eq!(read.stage(), "build");
        assert_eq!(read.input("name"), Some(&Input::One("a=b\nc".into())));
        assert_eq!(
            read.input("source"),
            Some(&Input::Entries(vec![
                ("a".into(), "2".into()),
                ("x=y".into(), "1".into())
            ]))
        );
        assert_eq!(
            read.input("outputs"),
            Some(&Input::Entries(vec![
                ("0".into(), "o1".into()),
                ("1".into(), "o2".into())
            ]))
        );
        assert_eq!(read.input("empty"), Some(&Input::Entries(vec![])));
        assert_eq!(
            read.keys().collect::<Vec<_>>(),
            ["empty", "name", "outputs", "source"]
        );
    }

    #[test]
    fn a_damaged_description_is_refused_with_its_line() {
        for (text, line) in [
            ("stage=build\n", 1),
            ("comb-description=1\nname=x\n", 2),
            ("comb-description=1\nstage=b\nlist#=2\nlist.0=a\n", 4),
            ("comb-description=1\nstage=b\nlist#=1\nother.0=a\n", 4),
            ("comb-description=1\nstage=b\nx=1\nx=2\n", 0),
            ("comb-description=1\nstage=b\nnothing\n", 3),
        ] {
            match ReadDescription::parse(text) {
                Err(DescriptionError::Parse { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                Err(DescriptionError::DuplicateKey(_)) => assert_eq!(line, 0, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
