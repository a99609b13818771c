//! Relations (Debian Policy 7.1): one entry of a `Depends:`-style field,
//! alternatives joined by `|`, each `name[:arch] [(op version)] [arch
//! restrictions] [<profiles>]`; a field is relations joined by `,`.
//!
//! One parser, under one of two [`Rules`]: dpkg's, for what the
//! distribution wrote (indices, control files), and Debian Policy's, for
//! what a user writes (recipes), which also refuses the obsolete `<` and
//! `>` and versions that policy does not allow.

use crate::name::{check_package_name, is_dpkg_package_name};
use crate::version::{check_version, Version};
use std::fmt;

/// Which rules a relation is read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// As dpkg reads indices and control files: the obsolete `<` and `>`
    /// mean `<=` and `>=`, versions are dpkg's.
    Dpkg,
    /// As Debian Policy asks of what a user writes: no obsolete operator,
    /// versions as policy gives them.
    Policy,
}

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

/// A version operator. The obsolete `<` and `>` are read as `<=` and `>=`
/// under [`Rules::Dpkg`] and refused under [`Rules::Policy`].
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
    /// Does `have` satisfy `have OP wanted`?
    pub fn satisfied_by(self, have: &Version, wanted: &Version) -> bool {
        let o = have.cmp(wanted);
        match self {
            Op::Earlier => o.is_lt(),
            Op::EarlierOrEqual => o.is_le(),
            Op::Equal => o.is_eq(),
            Op::LaterOrEqual => o.is_ge(),
            Op::Later => o.is_gt(),
        }
    }

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

impl Alternative {
    /// Does this alternative apply when building for `arch` with the
    /// active build `profiles`? (Its architecture list and profile
    /// formulas; none means everywhere.)
    pub fn applies(&self, arch: &str, profiles: &[&str]) -> bool {
        let arch_ok = match &self.architectures {
            None => true,
            Some(r) => r.architectures.iter().any(|a| arch_matches(a, arch)) != r.negated,
        };
        let profile_ok = self.profiles.is_empty()
            || self.profiles.iter().any(|formula| {
                formula
                    .iter()
                    .all(|t| profiles.contains(&t.name.as_str()) != t.negated)
            });
        arch_ok && profile_ok
    }
}

/// Does the architecture `spec` (possibly a wildcard) match the Debian
/// architecture `arch`? Covers `any`, exact names, `linux-any` and
/// `any-<cpu>` for the Linux architectures comb builds for.
pub fn arch_matches(spec: &str, arch: &str) -> bool {
    if spec == "any" || spec == arch {
        return true;
    }
    // Plain Debian architecture names are Linux ones (others are spelled
    // os-cpu, such as hurd-i386).
    let (os, cpu) = arch.split_once('-').unwrap_or(("linux", arch));
    match spec.split_once('-') {
        Some((spec_os, "any")) => spec_os == os,
        Some(("any", spec_cpu)) => spec_cpu == cpu,
        _ => false,
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
    /// Parses exactly one relation under [`Rules::Policy`]; a `,` is an
    /// error.
    pub fn parse(text: &str) -> Result<Relation, SyntaxError> {
        let mut p = Parser::new(text, Rules::Policy);
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
pub fn parse_relations(text: &str, rules: Rules) -> Result<Vec<Relation>, SyntaxError> {
    let mut p = Parser::new(text, rules);
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

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    rules: Rules,
}

/// Bytes that end a name, an architecture or a version.
const DELIMITERS: &[u8] = b"()[]<>|,:!";

impl<'a> Parser<'a> {
    fn new(s: &'a str, rules: Rules) -> Parser<'a> {
        Parser {
            s,
            b: s.as_bytes(),
            i: 0,
            rules,
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
        match self.rules {
            Rules::Policy => check_package_name(name).map_err(|m| self.error_at(start, m))?,
            Rules::Dpkg if is_dpkg_package_name(name) => {}
            Rules::Dpkg => {
                return Err(self.error_at(start, format!("{name:?} is not a package name")))
            }
        }
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
        let (op, len) = if rest.starts_with("<<") {
            (Op::Earlier, 2)
        } else if rest.starts_with("<=") {
            (Op::EarlierOrEqual, 2)
        } else if rest.starts_with(">=") {
            (Op::LaterOrEqual, 2)
        } else if rest.starts_with(">>") {
            (Op::Later, 2)
        } else if rest.starts_with('=') {
            (Op::Equal, 1)
        } else if rest.starts_with('<') || rest.starts_with('>') {
            let c = &rest[..1];
            if self.rules == Rules::Policy {
                return Err(self.error(format!(
                    "the operator `{c}` is obsolete and ambiguous: write `{c}{c}` (strictly) or `{c}=`"
                )));
            }
            // dpkg reads the obsolete forms as the inclusive ones.
            match c {
                "<" => (Op::EarlierOrEqual, 1),
                _ => (Op::LaterOrEqual, 1),
            }
        } else {
            return Err(self.error(format!(
                "expected a version operator (`<<`, `<=`, `=`, `>=` or `>>`), found {}",
                self.found()
            )));
        };
        self.i += len;
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
        match self.rules {
            Rules::Policy => check_version(version).map_err(|m| self.error_at(start, m))?,
            Rules::Dpkg => {
                Version::parse(version).map_err(|e| self.error_at(start, e.to_string()))?;
            }
        }
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
        let list = parse_relations(
            "debhelper-compat (= 13),\n libcdb-dev,\n aa | bb [!i386],\n",
            Rules::Policy,
        )
        .unwrap();
        let texts: Vec<_> = list.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(
            texts,
            ["debhelper-compat (= 13)", "libcdb-dev", "aa | bb [!i386]"]
        );
        assert!(parse_relations("", Rules::Dpkg).unwrap().is_empty());
    }

    #[test]
    fn dpkg_reads_the_obsolete_operators_and_its_own_versions() {
        let list = parse_relations("aa (< 1), bb (> 2), cc (>> a1)", Rules::Dpkg).unwrap();
        let ops: Vec<Op> = list
            .iter()
            .map(|r| r.alternatives[0].version.as_ref().unwrap().op)
            .collect();
        assert_eq!(ops, [Op::EarlierOrEqual, Op::LaterOrEqual, Op::Later]);
        assert_eq!(
            list[0].alternatives[0].version.as_ref().unwrap().version,
            "1"
        );
        assert!(parse_relations("cc (>> a1)", Rules::Policy).is_err());
        assert!(parse_relations("a | b", Rules::Dpkg).is_ok());
        assert!(parse_relations("a | b", Rules::Policy).is_err());
        assert!(parse_relations("cc (>> 1 2)", Rules::Dpkg).is_err());
    }

    #[test]
    fn where_an_alternative_applies() {
        let list = parse_relations(
            "aa [amd64], bb [!amd64], cc [linux-any] <!nocheck>, dd [any-arm64]",
            Rules::Policy,
        )
        .unwrap();
        let on = |arch: &str, profiles: &[&str]| -> Vec<&str> {
            list.iter()
                .map(|r| &r.alternatives[0])
                .filter(|a| a.applies(arch, profiles))
                .map(|a| a.name.as_str())
                .collect()
        };
        assert_eq!(on("amd64", &[]), ["aa", "cc"]);
        assert_eq!(on("arm64", &[]), ["bb", "cc", "dd"]);
        assert_eq!(on("arm64", &["nocheck"]), ["bb", "dd"]);
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
}
