//! Debian names, versions and relations (Debian Policy 5.6.1, 5.6.12, 7.1),
//! checked syntactically. Whether a relation can be satisfied is the
//! distribution backend's business, not this module's.
//!
//! A relation is one entry of a `Depends:`-style field: alternatives joined
//! by `|`, each `name[:arch] [(op version)] [arch restrictions] [<profiles>]`.
//! A field is relations joined by `,`.

use std::fmt;

/// One relation (one comma-separated entry), as written and as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The text it was parsed from, trimmed.
    pub text: String,
    /// One or more; any one of them satisfies the relation.
    pub alternatives: Vec<Alternative>,
}

/// One alternative of a relation: `name[:arch] [(op version)] [archs] <profiles>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    pub name: String,
    /// `:any`, `:native` or an architecture name.
    pub arch_qualifier: Option<String>,
    pub version: Option<VersionConstraint>,
    /// `[amd64 arm64]` or `[!i386]`: where the alternative applies.
    pub architectures: Option<ArchRestriction>,
    /// `<!nocheck> <stage1 cross>`: the alternative applies if any one
    /// group holds, a group holds if all its terms do.
    pub profiles: Vec<Vec<ProfileTerm>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionConstraint {
    pub op: Op,
    pub version: String,
}

/// A version operator. The obsolete `<` and `>` are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `<<`
    Earlier,
    /// `<=`
    EarlierOrEqual,
    /// `=`
    Equal,
    /// `>=`
    LaterOrEqual,
    /// `>>`
    Later,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Earlier => "<<",
            Op::EarlierOrEqual => "<=",
            Op::Equal => "=",
            Op::LaterOrEqual => ">=",
            Op::Later => ">>",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[a b]` (only on these) or `[!a !b]` (on all but these); never mixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchRestriction {
    pub negated: bool,
    /// Architecture names or wildcards such as `linux-any`.
    pub architectures: Vec<String>,
}

/// One term of a build-profile group: `nocheck` or `!nocheck`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileTerm {
    pub negated: bool,
    pub name: String,
}

/// What is wrong, and where: `offset` is a byte offset into the parsed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SyntaxError {}

impl Relation {
    /// Parses exactly one relation; a `,` is an error.
    pub fn parse(text: &str) -> Result<Relation, SyntaxError> {
        let mut p = Parser::new(text);
        let relation = p.relation()?;
        if p.peek() == Some(b',') {
            return Err(p.error("one relation per string: split at the `,` into two strings"));
        }
        Ok(relation)
    }

    /// The package names of all alternatives.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.alternatives.iter().map(|a| a.name.as_str())
    }

    /// Whether any alternative has an architecture restriction or profiles,
    /// which only build requirements may have.
    pub fn has_build_only_syntax(&self) -> bool {
        self.alternatives
            .iter()
            .any(|a| a.architectures.is_some() || !a.profiles.is_empty())
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a whole field: relations separated by `,`. Empty entries (a
/// trailing comma, as multi-line `Build-Depends` often have) are skipped.
pub fn parse_relations(text: &str) -> Result<Vec<Relation>, SyntaxError> {
    let mut p = Parser::new(text);
    let mut out = Vec::new();
    loop {
        p.skip_ws();
        match p.peek() {
            None => return Ok(out),
            Some(b',') => {
                p.i += 1;
                continue;
            }
            Some(_) => {}
        }
        out.push(p.relation()?);
        if p.peek() == Some(b',') {
            p.i += 1;
        }
    }
}

/// Debian Policy 5.6.1: lowercase letters, digits, `+ - .`, at least two
/// characters, starting with a letter or digit.
pub fn check_package_name(name: &str) -> Result<(), String> {
    if crate::config::is_package_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a Debian package name: expected lowercase letters, digits, `+`, `-` and `.`, at least two characters, starting with a letter or digit"
        ))
    }
}

/// Debian Policy 5.6.12: `[epoch:]upstream_version[-debian_revision]`.
pub fn check_version(version: &str) -> Result<(), String> {
    let why = version_problem(version);
    match why {
        None => Ok(()),
        Some(why) => Err(format!(
            "{version:?} is not a Debian version: {why}; expected [epoch:]upstream[-revision], e.g. \"1.0-1\" or \"1:2.3~rc1\""
        )),
    }
}

fn version_problem(version: &str) -> Option<&'static str> {
    if version.is_empty() {
        return Some("it is empty");
    }
    let rest = match version.split_once(':') {
        Some((epoch, rest)) => {
            if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
                return Some("the epoch before `:` must be a number");
            }
            rest
        }
        None => version,
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => (u, Some(r)),
        None => (rest, None),
    };
    if let Some(r) = revision {
        if r.is_empty() {
            return Some("the revision after the last `-` is empty");
        }
        if !r
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+.~".contains(&b))
        {
            return Some("the revision may only hold letters, digits, `+`, `.` and `~`");
        }
    }
    if upstream.is_empty() {
        return Some("the upstream version is empty");
    }
    if !upstream.as_bytes()[0].is_ascii_digit() {
        return Some("the upstream version must start with a digit");
    }
    if upstream.contains(':') {
        return Some("only one `:` (after the epoch) is allowed");
    }
    if !upstream
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+.~-".contains(&b))
    {
        return Some("the upstream version may only hold letters, digits, `.`, `+`, `~` and `-`");
    }
    None
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

/// Bytes that end a name, an architecture or a version.
const DELIMITERS: &[u8] = b"()[]<>|,:!";

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Parser<'a> {
        Parser {
            s,
            b: s.as_bytes(),
            i: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            offset: self.i,
            message: message.into(),
        }
    }

    fn error_at(&self, offset: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            offset,
            message: message.into(),
        }
    }

    /// What is at the cursor, for messages.
    fn found(&self) -> String {
        match self.s[self.i..].chars().next() {
            Some(c) => format!("`{c}`"),
            None => "the end".to_string(),
        }
    }

    /// A run of bytes up to whitespace or a delimiter.
    fn word(&mut self) -> (usize, &'a str) {
        let start = self.i;
        while let Some(b) = self.peek() {
            if b.is_ascii_whitespace() || DELIMITERS.contains(&b) {
                break;
            }
            // Whole characters: a non-ASCII byte starts a multi-byte one.
            self.i += self.s[self.i..].chars().next().map_or(1, char::len_utf8);
        }
        (start, &self.s[start..self.i])
    }

    fn relation(&mut self) -> Result<Relation, SyntaxError> {
        self.skip_ws();
        let start = self.i;
        let mut alternatives = vec![self.alternative()?];
        loop {
            match self.peek() {
                Some(b'|') => {
                    self.i += 1;
                    alternatives.push(self.alternative()?);
                }
                None | Some(b',') => break,
                Some(_) => {
                    return Err(self.error(format!(
                        "unexpected {}: expected `|`, `,` or the end of the relation",
                        self.found()
                    )))
                }
            }
        }
        let text = self.s[start..self.i].trim().to_string();
        Ok(Relation { text, alternatives })
    }

    fn alternative(&mut self) -> Result<Alternative, SyntaxError> {
        self.skip_ws();
        let (start, name) = self.word();
        if name.is_empty() {
            return Err(self.error(format!("expected a package name, found {}", self.found())));
        }
        check_package_name(name).map_err(|m| self.error_at(start, m))?;
        let mut alt = Alternative {
            name: name.to_string(),
            arch_qualifier: None,
            version: None,
            architectures: None,
            profiles: Vec::new(),
        };
        if self.peek() == Some(b':') {
            self.i += 1;
            let (at, arch) = self.word();
            if !is_arch_word(arch) {
                return Err(self.error_at(
                    at,
                    "expected an architecture after `:`, e.g. `:any` or `:native`",
                ));
            }
            alt.arch_qualifier = Some(arch.to_string());
        }
        self.skip_ws();
        if self.peek() == Some(b'(') {
            self.i += 1;
            alt.version = Some(self.version_constraint()?);
        }
        self.skip_ws();
        if self.peek() == Some(b'[') {
            self.i += 1;
            alt.architectures = Some(self.arch_restriction()?);
        }
        self.skip_ws();
        while self.peek() == Some(b'<') {
            self.i += 1;
            alt.profiles.push(self.profile_group()?);
            self.skip_ws();
        }
        Ok(alt)
    }

    fn version_constraint(&mut self) -> Result<VersionConstraint, SyntaxError> {
        self.skip_ws();
        let rest = &self.s[self.i..];
        let op = if rest.starts_with("<<") {
            Op::Earlier
        } else if rest.starts_with("<=") {
            Op::EarlierOrEqual
        } else if rest.starts_with(">=") {
            Op::LaterOrEqual
        } else if rest.starts_with(">>") {
            Op::Later
        } else if rest.starts_with('=') {
            Op::Equal
        } else if rest.starts_with('<') || rest.starts_with('>') {
            let c = &rest[..1];
            return Err(self.error(format!(
                "the operator `{c}` is obsolete and ambiguous: write `{c}{c}` (strictly) or `{c}=`"
            )));
        } else {
            return Err(self.error(format!(
                "expected a version operator (`<<`, `<=`, `=`, `>=` or `>>`), found {}",
                self.found()
            )));
        };
        self.i += op.as_str().len();
        self.skip_ws();
        let start = self.i;
        while self
            .peek()
            .is_some_and(|b| !b.is_ascii_whitespace() && b != b')')
        {
            self.i += self.s[self.i..].chars().next().map_or(1, char::len_utf8);
        }
        let version = &self.s[start..self.i];
        if version.is_empty() {
            return Err(self.error(format!(
                "expected a version after `{op}`, found {}",
                self.found()
            )));
        }
        check_version(version).map_err(|m| self.error_at(start, m))?;
        self.skip_ws();
        if self.peek() != Some(b')') {
            return Err(self.error(format!(
                "expected `)` after the version, found {}",
                self.found()
            )));
        }
        self.i += 1;
        Ok(VersionConstraint {
            op,
            version: version.to_string(),
        })
    }

    fn arch_restriction(&mut self) -> Result<ArchRestriction, SyntaxError> {
        let open = self.i - 1;
        let mut terms: Vec<(usize, bool, String)> = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b']') => {
                    self.i += 1;
                    break;
                }
                None => return Err(self.error_at(open, "unclosed `[`: expected `]`")),
                Some(_) => {}
            }
            let at = self.i;
            let negated = self.peek() == Some(b'!');
            if negated {
                self.i += 1;
            }
            let (_, arch) = self.word();
            if !is_arch_word(arch) {
                return Err(self.error(format!(
                    "expected an architecture name or wildcard (e.g. `amd64`, `!i386`, `linux-any`), found {}",
                    self.found()
                )));
            }
            terms.push((at, negated, arch.to_string()));
        }
        let Some(first) = terms.first() else {
            return Err(self.error_at(open, "empty architecture list `[]`"));
        };
        let negated = first.1;
        if let Some(odd) = terms.iter().find(|t| t.1 != negated) {
            return Err(self.error_at(
                odd.0,
                "an architecture list is either all `!name` or all plain names, never mixed",
            ));
        }
        Ok(ArchRestriction {
            negated,
            architectures: terms.into_iter().map(|t| t.2).collect(),
        })
    }

    fn profile_group(&mut self) -> Result<Vec<ProfileTerm>, SyntaxError> {
        let open = self.i - 1;
        let mut terms = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'>') => {
                    self.i += 1;
                    break;
                }
                None => return Err(self.error_at(open, "unclosed `<`: expected `>`")),
                Some(_) => {}
            }
            let negated = self.peek() == Some(b'!');
            if negated {
                self.i += 1;
            }
            let (_, name) = self.word();
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
            if !ok {
                return Err(self.error(format!(
                    "expected a build profile name (e.g. `nocheck`, `!stage1`), found {}",
                    self.found()
                )));
            }
            terms.push(ProfileTerm {
                negated,
                name: name.to_string(),
            });
        }
        if terms.is_empty() {
            return Err(self.error_at(open, "empty build profile group `<>`"));
        }
        Ok(terms)
    }
}

fn is_arch_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_syntax_is_parsed() {
        let r = Relation::parse(
            " libfoo-dev:any (>= 1.2~rc1-3) [amd64 arm64] <!nocheck> <stage1 cross> | bar ",
        )
        .unwrap();
        assert_eq!(
            r.text,
            "libfoo-dev:any (>= 1.2~rc1-3) [amd64 arm64] <!nocheck> <stage1 cross> | bar"
        );
        assert_eq!(r.names().collect::<Vec<_>>(), ["libfoo-dev", "bar"]);
        let a = &r.alternatives[0];
        assert_eq!(a.arch_qualifier.as_deref(), Some("any"));
        assert_eq!(
            a.version,
            Some(VersionConstraint {
                op: Op::LaterOrEqual,
                version: "1.2~rc1-3".into()
            })
        );
        assert_eq!(
            a.architectures,
            Some(ArchRestriction {
                negated: false,
                architectures: vec!["amd64".into(), "arm64".into()]
            })
        );
        assert_eq!(a.profiles.len(), 2);
        assert!(a.profiles[0][0].negated);
        assert_eq!(a.profiles[1][1].name, "cross");
        assert!(r.has_build_only_syntax());
        let b = &r.alternatives[1];
        assert!(b.version.is_none() && b.architectures.is_none() && b.profiles.is_empty());
    }

    #[test]
    fn fields_split_at_commas_and_tolerate_a_trailing_one() {
        let list =
            parse_relations("debhelper-compat (= 13),\n libcdb-dev,\n aa | bb [!i386],\n").unwrap();
        let texts: Vec<_> = list.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(
            texts,
            ["debhelper-compat (= 13)", "libcdb-dev", "aa | bb [!i386]"]
        );
        assert!(parse_relations("").unwrap().is_empty());
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = |t: &str| Relation::parse(t).unwrap_err();
        let x = e("foo (> 1)");
        assert_eq!(x.offset, 5);
        assert!(x.message.contains("obsolete"), "{}", x.message);
        let x = e("Foo");
        assert_eq!(x.offset, 0);
        assert!(x.message.contains("not a Debian package name"));
        let x = e("foo (>= 1.0");
        assert_eq!(x.offset, 11);
        assert!(x.message.contains("expected `)`"), "{}", x.message);
        let x = e("foo (>= abc)");
        assert_eq!(x.offset, 8);
        assert!(x.message.contains("start with a digit"), "{}", x.message);
        let x = e("foo [amd64 !i386]");
        assert_eq!(x.offset, 11);
        let x = e("foo [amd64");
        assert_eq!(x.offset, 4);
        assert!(x.message.contains("unclosed `[`"));
        let x = e("foo <>");
        assert!(x.message.contains("empty build profile"));
        let x = e("foo, bar");
        assert_eq!(x.offset, 3);
        assert!(x.message.contains("one relation per string"));
        let x = e("foo | ");
        assert!(
            x.message.contains("expected a package name"),
            "{}",
            x.message
        );
        let x = e("foo bar");
        assert_eq!(x.offset, 4);
        assert!(x.message.contains("unexpected `b`"), "{}", x.message);
        let x = e("foo:");
        assert!(x.message.contains("architecture after `:`"));
        let x = e("");
        assert!(x.message.contains("expected a package name"));
    }

    #[test]
    fn versions() {
        for ok in [
            "1",
            "1.0-1",
            "2:1.0~rc1+dfsg-3.1",
            "0.78",
            "1:3.00-5",
            "1.0-beta-2",
        ] {
            assert_eq!(check_version(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("a1.0", "start with a digit"),
            ("x:1.0", "epoch"),
            ("1.0-", "revision after"),
            ("1.0-a_b", "revision may only"),
            ("1:2:3", "only one `:`"),
            ("1.0_1", "upstream version may only"),
        ] {
            let m = check_version(bad).unwrap_err();
            assert!(m.contains(why), "{bad}: {m}");
        }
    }

    #[test]
    fn names() {
        assert!(check_package_name("libgreet-dev").is_ok());
        assert!(check_package_name("g++").is_ok());
        assert!(check_package_name("a").is_err());
        assert!(check_package_name("-a").is_err());
        assert!(check_package_name("lib_greet").is_err());
    }
}
