//! Debian version numbers, `[epoch:]upstream[-revision]`, compared exactly
//! as `dpkg --compare-versions` does: epochs numerically, then upstream and
//! revision by dpkg's `verrevcmp` (non-digit runs compared with letters
//! before other characters and `~` before everything, even the end; digit
//! runs compared as numbers).

use crate::error::{Error, Result};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A parsed Debian version. Equality and ordering follow dpkg, so `1.0` ==
/// `0:1.0` == `1.00`; [`Version::as_str`] keeps the text as written.
#[derive(Debug, Clone)]
pub struct Version {
    pub epoch: u32,
    pub upstream: String,
    /// Empty for a native version without `-revision`.
    pub revision: String,
    text: String,
}

impl Version {
    /// Parse a version with dpkg's rules (surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<Version> {
        let bad = |message: &str| Error::Version {
            version: text.to_string(),
            message: message.to_string(),
        };
        let s = text.trim();
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.chars().any(char::is_whitespace) {
            return Err(bad("it contains whitespace"));
        }
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) => {
                if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("the epoch (before ':') must be a number"));
                }
                let epoch = e.parse::<u32>().map_err(|_| bad("the epoch is too big"))?;
                (epoch, rest)
            }
            None => (0, s),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => {
                if r.is_empty() {
                    return Err(bad("the revision (after the last '-') is empty"));
                }
                (u, r)
            }
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(bad("the upstream version is empty"));
        }
        // dpkg only warns about an upstream part that does not start with a
        // digit; indices in the wild have a few, so they are accepted.
        if let Some(c) = upstream
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || ".+~-:".contains(c)))
        {
            return Err(bad(&format!(
                "invalid character {c:?} in the upstream version"
            )));
        }
        if let Some(c) = revision
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || ".+~".contains(c)))
        {
            return Err(bad(&format!("invalid character {c:?} in the revision")));
        }
        Ok(Version {
            epoch,
            upstream: upstream.to_string(),
            revision: revision.to_string(),
            text: s.to_string(),
        })
    }

    /// The version as it was written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Version {
    type Err = Error;
    fn from_str(s: &str) -> Result<Version> {
        Version::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

/// Compare two version strings as `dpkg --compare-versions` does.
pub fn compare_versions(a: &str, b: &str) -> Result<Ordering> {
    Ok(Version::parse(a)?.cmp(&Version::parse(b)?))
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
            // As dpkg: an epoch is a number it can hold.
            if epoch.parse::<u32>().is_err() {
                return Some("the epoch is too big");
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

/// dpkg's character weight: digits 0 (they end a non-digit run), letters
/// their code, `~` below everything, other characters above letters.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`, on byte strings.
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cmp::Ordering::{Equal, Greater, Less};

    /// Known pairs, most from dpkg's own test suite and Debian policy.
    pub(crate) const PAIRS: &[(&str, &str, Ordering)] = &[
        ("1.0", "1.0", Equal),
        ("1.0", "1.00", Equal),
        ("0:1.0", "1.0", Equal),
        ("1.0-0", "1.0", Equal),
        ("1.0", "1.1", Less),
        ("1.2", "1.10", Less),
        ("1.0~rc1", "1.0", Less),
        ("1.0~rc1", "1.0~rc2", Less),
        ("1.0~~", "1.0~", Less),
        ("1.0~~a", "1.0~~", Greater),
        ("1.0~", "1.0", Less),
        ("1.0", "1.0+b1", Less),
        ("1.0", "1.0.1", Less),
        ("1.0a", "1.0", Greater),
        ("1.0.", "1.0+", Greater),
        ("1.0.", "1.0+", Greater),
        ("1:0.1", "2.0", Greater),
        ("2:1.0", "10:0.1", Less),
        ("1.0-1", "1.0-2", Less),
        ("1.0-1", "1.0-10", Less),
        ("1.0-1ubuntu1", "1.0-1", Greater),
        ("1.0-1~bpo1", "1.0-1", Less),
        ("1.0-1+deb12u1", "1.0-1", Greater),
        ("1.0-1+b1", "1.0-1+deb12u1", Less),
        ("2.36-9+deb12u10", "2.36-9+deb12u9", Greater),
        ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
        ("1.2.3-4", "1.2.3-4", Equal),
        ("7.6p2-4", "7.6-0", Greater),
        ("1.0.3-3", "1.0-1", Greater),
        ("1.3", "1.2.2-2", Greater),
        ("1.3", "1.2.2", Greater),
        ("0-pre", "0-pre", Equal),
        ("0-pre", "0-pree", Less),
        ("1.1.6r2-2", "1.1.6r-1", Greater),
        ("2.6b2-1", "2.6b-2", Greater),
        ("98.1p5-1", "98.1-pre2-b6-2", Less),
        ("0.4a6-2", "0.4-1", Greater),
        ("1:3.0.5-2", "1:3.0.5.1", Less),
        ("1:0.4", "1:5.50-1", Less),
        ("1:0.4", "1:5.50", Less),
        ("1:0.7", "1:0.7-1", Less),
        ("1.10", "1.9.9", Greater),
        ("1.0a~b", "1.0a", Less),
        ("0a", "0b", Less),
        ("1.0-a", "1.0-b", Less),
        ("1.0-a.", "1.0-a+", Greater),
        ("3.0~rc1+dfsg-1", "3.0~beta5-1", Greater),
        ("20240101", "20231231.1", Greater),
        ("1.0.0~alpha", "1.0.0~alpha.1", Less),
        ("1:1.0~rc1-1", "1:1.0-0", Less),
        ("001", "1", Equal),
        ("1.001", "1.1", Equal),
    ];

    #[test]
    fn known_pairs() {
        for &(a, b, want) in PAIRS {
            assert_eq!(compare_versions(a, b).unwrap(), want, "{a} vs {b}");
            assert_eq!(
                compare_versions(b, a).unwrap(),
                want.reverse(),
                "{b} vs {a}"
            );
        }
    }

    #[test]
    fn parse_parts() {
        let v = Version::parse(" 2:1.0-3-4 ").unwrap();
        assert_eq!(
            (v.epoch, v.upstream.as_str(), v.revision.as_str()),
            (2, "1.0-3", "4")
        );
        assert_eq!(v.as_str(), "2:1.0-3-4");
        let v = Version::parse("1.0").unwrap();
        assert_eq!((v.epoch, v.revision.as_str()), (0, ""));
        for bad in [
            "",
            "a:1",
            ":1",
            "1.0-",
            "-1",
            "1 0",
            "1.0_1",
            "1.0-1:2",
            "99999999999:1",
        ] {
            let err = Version::parse(bad).unwrap_err();
            assert!(
                err.to_string().contains("invalid Debian version"),
                "{bad}: {err}"
            );
        }
    }

    /// Cross-check every pair (both ways) against the real dpkg.
    #[test]
    fn agrees_with_dpkg() {
        let mut checked = 0;
        for &(a, b, _) in PAIRS {
            for (x, y) in [(a, b), (b, a)] {
                let ours = compare_versions(x, y).unwrap();
                let dpkg = |op: &str| {
                    std::process::Command::new("dpkg")
                        .args(["--compare-versions", x, op, y])
                        .status()
                        .expect("dpkg is needed for this test (Debian's dpkg package)")
                        .success()
                };
                let theirs = if dpkg("lt") {
                    Less
                } else if dpkg("eq") {
                    Equal
                } else {
                    assert!(dpkg("gt"), "dpkg says neither lt, eq nor gt for {x} {y}");
                    Greater
                };
                assert_eq!(ours, theirs, "{x} vs {y}: we say {ours:?}, dpkg {theirs:?}");
                checked += 1;
            }
        }
        assert!(checked >= 100);
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
            ("17777777777777:1.0", "epoch is too big"),
        ] {
            let m = check_version(bad).unwrap_err();
            assert!(m.contains(why), "{bad}: {m}");
        }
    }
}
