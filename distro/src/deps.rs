//! Debian's relationship syntax, as in Depends, Pre-Depends, Provides and
//! Build-Depends: `libc6 (>= 2.34), foo | bar, baz:any [amd64] <!nocheck>`.
//!
//! A field is a list (AND) of groups of alternatives (OR); each alternative
//! is a [`Relation`].

use crate::error::{Error, Result};
use crate::version::Version;
use std::fmt;

/// A version relation operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Op {
    /// `<<`
    Lt,
    /// `<=` (also the obsolete `<`)
    Le,
    /// `=`
    Eq,
    /// `>=` (also the obsolete `>`)
    Ge,
    /// `>>`
    Gt,
}

impl Op {
    /// Does `have` satisfy `have OP wanted`?
    pub fn satisfied_by(self, have: &Version, wanted: &Version) -> bool {
        let o = have.cmp(wanted);
        match self {
            Op::Lt => o.is_lt(),
            Op::Le => o.is_le(),
            Op::Eq => o.is_eq(),
            Op::Ge => o.is_ge(),
            Op::Gt => o.is_gt(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of an architecture restriction list such as `[amd64 !i386]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ArchSpec {
    pub negated: bool,
    /// An architecture or wildcard (`linux-any`, `any-amd64`, `any`).
    pub arch: String,
}

/// One term of a build-profile formula such as `<!nocheck cross>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ProfileTerm {
    pub negated: bool,
    pub name: String,
}

/// One alternative of a dependency: a package name with optional
/// qualifiers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Relation {
    pub name: String,
    /// `any`, `native` or an architecture, from `name:qualifier`.
    pub arch_qualifier: Option<String>,
    /// `(op version)`; the version is kept as written.
    pub version: Option<(Op, String)>,
    /// `[arch ...]`: empty means every architecture.
    pub archs: Vec<ArchSpec>,
    /// `<...> <...>`: the relation applies if any formula holds; each formula
    /// holds if all its terms do. Empty means every profile.
    pub profiles: Vec<Vec<ProfileTerm>>,
}

/// A parsed field: AND over the outer list, OR over each inner list.
pub type Relations = Vec<Vec<Relation>>;

impl Relation {
    /// Does this relation apply when building for `arch` with the active
    /// build `profiles`? (Architecture lists and profile formulas.)
    pub fn applies(&self, arch: &str, profiles: &[&str]) -> bool {
        let arch_ok = if self.archs.is_empty() {
            true
        } else if self.archs.iter().all(|a| a.negated) {
            !self.archs.iter().any(|a| arch_matches(&a.arch, arch))
        } else {
            self.archs
                .iter()
                .any(|a| !a.negated && arch_matches(&a.arch, arch))
        };
        let profile_ok = self.profiles.is_empty()
            || self.profiles.iter().any(|formula| {
                formula
                    .iter()
                    .all(|t| profiles.contains(&t.name.as_str()) != t.negated)
            });
        arch_ok && profile_ok
    }

    /// The version constraint parsed, if any.
    pub fn version_constraint(&self) -> Result<Option<(Op, Version)>> {
        match &self.version {
            None => Ok(None),
            Some((op, v)) => Ok(Some((*op, Version::parse(v)?))),
        }
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
    // os-cpu, such as hurd-i386 or kfreebsd-amd64).
    let (os, cpu) = match arch.split_once('-') {
        Some((os, cpu)) => (os, cpu),
        None => ("linux", arch),
    };
    match spec.split_once('-') {
        Some((sos, "any")) => sos == os,
        Some(("any", scpu)) => scpu == cpu,
        _ => false,
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(q) = &self.arch_qualifier {
            write!(f, ":{q}")?;
        }
        if let Some((op, v)) = &self.version {
            write!(f, " ({op} {v})")?;
        }
        if !self.archs.is_empty() {
            let list: Vec<String> = self
                .archs
                .iter()
                .map(|a| format!("{}{}", if a.negated { "!" } else { "" }, a.arch))
                .collect();
            write!(f, " [{}]", list.join(" "))?;
        }
        for formula in &self.profiles {
            let list: Vec<String> = formula
                .iter()
                .map(|t| format!("{}{}", if t.negated { "!" } else { "" }, t.name))
                .collect();
            write!(f, " <{}>", list.join(" "))?;
        }
        Ok(())
    }
}

/// Parse a relationship field. `origin` (file and package) and `field`
/// name the field in errors. Empty entries (a trailing comma) are skipped.
pub fn parse_relations(origin: &str, field: &str, value: &str) -> Result<Relations> {
    let mut out = Vec::new();
    for group in value.split(',') {
        if group.trim().is_empty() {
            continue;
        }
        let mut alternatives = Vec::new();
        for alt in group.split('|') {
            let rel = parse_one(alt).map_err(|message| Error::Relation {
                origin: origin.to_string(),
                field: field.to_string(),
                value: value.to_string(),
                message,
            })?;
            alternatives.push(rel);
        }
        out.push(alternatives);
    }
    Ok(out)
}

/// Parse a field that may not have alternatives (Provides, Conflicts,
/// Breaks, Replaces) into a flat list.
pub fn parse_relation_list(origin: &str, field: &str, value: &str) -> Result<Vec<Relation>> {
    let groups = parse_relations(origin, field, value)?;
    let mut out = Vec::with_capacity(groups.len());
    for mut group in groups {
        if group.len() != 1 {
            return Err(Error::Relation {
                origin: origin.to_string(),
                field: field.to_string(),
                value: value.to_string(),
                message: "alternatives (`|`) are not allowed in this field".to_string(),
            });
        }
        out.extend(group.pop());
    }
    Ok(out)
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        let rest = &self.s[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }
    /// Take characters while `f` holds.
    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let rest = &self.s[self.pos..];
        let end = rest.find(|c: char| !f(c)).unwrap_or(rest.len());
        self.pos += end;
        &rest[..end]
    }
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c)
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !"()[]<>,|!".contains(c)
}

fn parse_one(text: &str) -> std::result::Result<Relation, String> {
    let mut c = Cursor { s: text, pos: 0 };
    c.skip_ws();
    let name = c.take_while(is_name_char);
    if name.is_empty() {
        return Err(match c.peek() {
            None => "an empty alternative (a stray `|`)".to_string(),
            Some(ch) => format!("expected a package name, found {ch:?}"),
        });
    }
    if !name.starts_with(|ch: char| ch.is_ascii_alphanumeric()) {
        return Err(format!(
            "package name {name:?} must start with a letter or digit"
        ));
    }
    let arch_qualifier = if c.eat(':') {
        let q = c.take_while(|ch| ch.is_ascii_alphanumeric() || ch == '-');
        if q.is_empty() {
            return Err(format!("`{name}:` is missing its architecture qualifier"));
        }
        Some(q.to_string())
    } else {
        None
    };
    c.skip_ws();
    let version = if c.eat('(') {
        c.skip_ws();
        let op_text = c.take_while(|ch| "<>=".contains(ch));
        let op = match op_text {
            "<<" => Op::Lt,
            "<=" | "<" => Op::Le,
            "=" => Op::Eq,
            ">=" | ">" => Op::Ge,
            ">>" => Op::Gt,
            "" => return Err(format!("`{name} (` needs an operator (<<, <=, =, >=, >>)")),
            other => return Err(format!("unknown version operator {other:?}")),
        };
        c.skip_ws();
        let v = c.take_while(|ch| !ch.is_whitespace() && ch != ')');
        if v.is_empty() {
            return Err(format!("`{name} ({op}` is missing its version"));
        }
        Version::parse(v).map_err(|e| e.to_string())?;
        c.skip_ws();
        if !c.eat(')') {
            return Err(format!("missing `)` after the version of {name}"));
        }
        Some((op, v.to_string()))
    } else {
        None
    };
    c.skip_ws();
    let mut archs = Vec::new();
    if c.eat('[') {
        loop {
            c.skip_ws();
            if c.eat(']') {
                break;
            }
            let negated = c.eat('!');
            let arch = c.take_while(is_word_char);
            if arch.is_empty() {
                return Err(format!(
                    "bad architecture list for {name}: expected an architecture or `]`"
                ));
            }
            archs.push(ArchSpec {
                negated,
                arch: arch.to_string(),
            });
        }
        if archs.is_empty() {
            return Err(format!("empty architecture list `[]` for {name}"));
        }
        if archs.iter().any(|a| a.negated) && archs.iter().any(|a| !a.negated) {
            return Err(format!(
                "architecture list for {name} mixes negated and plain entries"
            ));
        }
    }
    c.skip_ws();
    let mut profiles = Vec::new();
    while c.eat('<') {
        let mut formula = Vec::new();
        loop {
            c.skip_ws();
            if c.eat('>') {
                break;
            }
            let negated = c.eat('!');
            let term = c.take_while(is_word_char);
            if term.is_empty() {
                return Err(format!(
                    "bad build-profile list for {name}: expected a profile or `>`"
                ));
            }
            formula.push(ProfileTerm {
                negated,
                name: term.to_string(),
            });
        }
        if formula.is_empty() {
            return Err(format!("empty build-profile list `<>` for {name}"));
        }
        profiles.push(formula);
        c.skip_ws();
    }
    if !c.rest().is_empty() {
        return Err(format!("unexpected {:?} after {name}", c.rest().trim()));
    }
    Ok(Relation {
        name: name.to_string(),
        arch_qualifier,
        version,
        archs,
        profiles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(name: &str) -> Relation {
        Relation {
            name: name.into(),
            arch_qualifier: None,
            version: None,
            archs: vec![],
            profiles: vec![],
        }
    }

    #[test]
    fn the_example_from_the_brief() {
        let r = parse_relations(
            "t",
            "Build-Depends",
            "libc6 (>= 2.34), foo | bar, baz:any [amd64] <!nocheck>",
        )
        .unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0],
            vec![Relation {
                version: Some((Op::Ge, "2.34".into())),
                ..rel("libc6")
            }]
        );
        assert_eq!(r[1], vec![rel("foo"), rel("bar")]);
        assert_eq!(
            r[2],
            vec![Relation {
                arch_qualifier: Some("any".into()),
                archs: vec![ArchSpec {
                    negated: false,
                    arch: "amd64".into()
                }],
                profiles: vec![vec![ProfileTerm {
                    negated: true,
                    name: "nocheck".into()
                }]],
                ..rel("baz")
            }]
        );
        assert_eq!(r[2][0].to_string(), "baz:any [amd64] <!nocheck>");
    }

    #[test]
    fn whitespace_newlines_operators_and_trailing_comma() {
        let r = parse_relations(
            "t",
            "Depends",
            "a(<<1),\n  b ( = 1:2.0-1 ) ,c (<= 3)|d (>> 4) [!i386 !armel] <stage1 !cross> <nocheck>,",
        )
        .unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0][0].version, Some((Op::Lt, "1".into())));
        assert_eq!(r[1][0].version, Some((Op::Eq, "1:2.0-1".into())));
        assert_eq!(r[2][1].archs.len(), 2);
        assert_eq!(r[2][1].profiles.len(), 2);
        assert_eq!(r[2][1].profiles[0].len(), 2);
        assert!(parse_relations("t", "Depends", "").unwrap().is_empty());
        // Obsolete operators mean <= and >=.
        let r = parse_relations("t", "Depends", "a (< 1), b (> 2)").unwrap();
        assert_eq!(r[0][0].version, Some((Op::Le, "1".into())));
        assert_eq!(r[1][0].version, Some((Op::Ge, "2".into())));
    }

    #[test]
    fn errors_name_the_field() {
        for bad in [
            "a (>= )",
            "a (~ 1)",
            "a (>= 1",
            "a | | b",
            "A",
            "a [ ]",
            "a [amd64 !i386]",
            "a <>",
            "a b",
            "a (= 1 2)",
            "a:",
            "a (>= 1_0)",
        ] {
            let err = parse_relations("Packages:12 (pkg foo)", "Depends", bad).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with("Packages:12 (pkg foo): field Depends: "),
                "{bad}: {msg}"
            );
        }
        assert!(parse_relation_list("t", "Provides", "a | b").is_err());
        assert_eq!(
            parse_relation_list("t", "Provides", "a (= 1), b")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn applicability() {
        let r = &parse_relations("t", "B", "a [linux-any] <!nocheck>").unwrap()[0][0];
        assert!(r.applies("amd64", &[]));
        assert!(!r.applies("amd64", &["nocheck"]));
        assert!(!r.applies("hurd-i386", &[]));
        let r = &parse_relations("t", "B", "a [!amd64 !any-arm64]").unwrap()[0][0];
        assert!(!r.applies("amd64", &[]));
        assert!(!r.applies("arm64", &[]));
        assert!(r.applies("i386", &[]));
        let r = &parse_relations("t", "B", "a <stage1 cross> <nocheck>").unwrap()[0][0];
        assert!(!r.applies("amd64", &["stage1"]));
        assert!(r.applies("amd64", &["stage1", "cross"]));
        assert!(r.applies("amd64", &["nocheck"]));
        let have = Version::parse("2.36-9").unwrap();
        let (op, want) = parse_relations("t", "D", "libc6 (>= 2.34)").unwrap()[0][0]
            .version_constraint()
            .unwrap()
            .unwrap();
        assert!(op.satisfied_by(&have, &want));
    }
}
