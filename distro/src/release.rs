//! Signed `InRelease` files: checking the OpenPGP signature with `gpgv`,
//! taking out exactly the text that was signed, and parsing the `Release`
//! fields.
//!
//! Trust rule: nothing outside the signed part is ever parsed. The clearsigned
//! file must be exactly one signed message (blank lines aside), and the text
//! comb parses is compared with the text `gpgv` itself reports as verified
//! (`--output`); any difference is refused.

use crate::error::{Error, Result};
use crate::packages::sha256_hex;
use comb_debian::clearsigned::split_clearsigned;
use comb_debian::control;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A clearsigned file whose signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedText {
    /// The signed text (see [`split_clearsigned`]), the only part to trust.
    pub text: String,
    /// Fingerprints of the keys whose signatures verified (VALIDSIG).
    pub signers: Vec<String>,
}

/// Verify the clearsigned file at `path` with `gpgv --keyring <keyring>`
/// and return the signed text. `origin` (usually its URL) names it in
/// errors.
///
/// Requires gpgv to exit 0 with a GOODSIG and a VALIDSIG made with a hash
/// stronger than SHA-1, no BADSIG, and the text gpgv verified to equal the
/// text comb extracts.
pub fn verify_clearsigned(path: &Path, keyring: &Path, origin: &str) -> Result<VerifiedText> {
    let data = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    let text = String::from_utf8(data).map_err(|_| Error::BadClearsign {
        file: origin.to_string(),
        reason: "it is not UTF-8 text".to_string(),
    })?;
    let ours = split_clearsigned(&text, origin)?.text;

    // gpgv looks a keyring name without a slash up in its home directory;
    // an explicit path keeps it to the file named.
    let keyring_arg: PathBuf = if keyring.is_absolute() {
        keyring.to_path_buf()
    } else {
        Path::new(".").join(keyring)
    };
    let bad = |reason: String, gpgv_output: String| Error::BadSignature {
        file: origin.to_string(),
        keyring: keyring.to_path_buf(),
        reason,
        gpgv_output,
    };
    if !keyring.is_file() {
        return Err(bad(
            "the keyring file does not exist".to_string(),
            String::new(),
        ));
    }
    // Status lines go to stderr (with gpgv's human messages) so that stdout
    // carries only the verified text.
    let out = Command::new("gpgv")
        .arg("--keyring")
        .arg(&keyring_arg)
        .args(["--status-fd", "2", "--output", "-"])
        .arg(path)
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| Error::GpgvMissing {
            file: origin.to_string(),
            source,
        })?;
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut good = false;
    let mut signers = Vec::new();
    let mut weak = false;
    for line in log.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("[GNUPG:]") {
            continue;
        }
        match words.next() {
            Some("GOODSIG") => good = true,
            Some("BADSIG") => return Err(bad("a signature is BAD".to_string(), log)),
            Some("VALIDSIG") => {
                let fields: Vec<&str> = words.collect();
                // Field 8 is the digest algorithm: 1 MD5, 2 SHA-1, 3 RIPEMD-160.
                match fields.get(7).and_then(|h| h.parse::<u32>().ok()) {
                    Some(h) if h > 3 => signers.extend(fields.first().map(|f| f.to_string())),
                    _ => weak = true,
                }
            }
            _ => {}
        }
    }
    if !out.status.success() {
        return Err(bad(format!("gpgv failed ({})", out.status), log));
    }
    if !good || signers.is_empty() {
        let reason = if weak {
            "it is signed only with a weak digest (SHA-1 or older)"
        } else {
            "gpgv reported no good, valid signature"
        };
        return Err(bad(reason.to_string(), log));
    }
    let theirs = String::from_utf8_lossy(&out.stdout);
    if normalise(&theirs) != normalise(&ours) {
        return Err(Error::BadClearsign {
            file: origin.to_string(),
            reason: "the text gpgv verified differs from the text between the armor lines"
                .to_string(),
        });
    }
    Ok(VerifiedText {
        text: ours,
        signers,
    })
}

fn normalise(text: &str) -> String {
    let mut lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.trim_end_matches(['\r', ' ', '\t']))
        .collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

/// One line of the Release file's SHA256 list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexEntry {
    /// Path relative to `dists/<suite>/`, e.g. `main/binary-amd64/Packages.xz`.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// The fields of a Release file that comb uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub origin: Option<String>,
    pub label: Option<String>,
    pub suite: Option<String>,
    pub codename: Option<String>,
    /// As written, e.g. `Sat, 10 May 2025 09:01:47 UTC`.
    pub date: String,
    pub valid_until: Option<String>,
    pub architectures: Vec<String>,
    pub components: Vec<String>,
    /// Indices may be fetched by their hash (`by-hash/SHA256/<hash>`).
    pub acquire_by_hash: bool,
    pub sha256: Vec<IndexEntry>,
}

impl Release {
    /// Parse the (already verified) text of a Release file.
    pub fn parse(text: &str, origin: &str) -> Result<Release> {
        let paragraphs = control::parse(text, origin)?;
        let p = match paragraphs.as_slice() {
            [p] => p,
            _ => {
                return Err(Error::parse(
                    origin,
                    1,
                    format!(
                        "a Release file holds one paragraph, found {}",
                        paragraphs.len()
                    ),
                ))
            }
        };
        let words = |f: &str| -> Vec<String> {
            p.get(f)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let list = p.get("SHA256").ok_or_else(|| {
            Error::parse(
                origin,
                p.line,
                "no SHA256 list (comb does not trust MD5 or SHA-1 lists)",
            )
        })?;
        let first = p.line_of("SHA256");
        let mut sha256 = Vec::new();
        for (i, line) in list.lines().enumerate() {
            let line_no = first + 1 + i;
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [hash, size, path] = parts.as_slice() else {
                return Err(Error::parse(
                    origin,
                    line_no,
                    format!("expected `sha256 size path` in the SHA256 list, found {line:?}"),
                ));
            };
            if path.starts_with('/')
                || path
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == "..")
            {
                return Err(Error::parse(
                    origin,
                    line_no,
                    format!("unsafe path {path:?}"),
                ));
            }
            sha256.push(IndexEntry {
                path: path.to_string(),
                size: size
                    .parse()
                    .map_err(|_| Error::parse(origin, line_no, format!("bad size {size:?}")))?,
                sha256: sha256_hex(hash, origin, line_no)?,
            });
        }
        let release = Release {
            origin: p.get("Origin").map(str::to_string),
            label: p.get("Label").map(str::to_string),
            suite: p.get("Suite").map(str::to_string),
            codename: p.get("Codename").map(str::to_string),
            date: p.require("Date", origin)?.to_string(),
            valid_until: p.get("Valid-Until").map(str::to_string),
            architectures: words("Architectures"),
            components: words("Components"),
            acquire_by_hash: p
                .get("Acquire-By-Hash")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            sha256,
        };
        if release.suite.is_none() && release.codename.is_none() {
            return Err(Error::parse(
                origin,
                p.line,
                "neither Suite nor Codename is given",
            ));
        }
        if parse_date(&release.date).is_none() {
            return Err(Error::parse(
                origin,
                p.line_of("Date"),
                format!("unreadable Date {:?}", release.date),
            ));
        }
        Ok(release)
    }

    /// The SHA256 entry for `path` (relative to `dists/<suite>/`).
    pub fn entry(&self, path: &str) -> Option<&IndexEntry> {
        self.sha256.iter().find(|e| e.path == path)
    }

    /// Does this Release belong to `suite` (its Suite or Codename)?
    pub fn is_for(&self, suite: &str) -> bool {
        self.suite.as_deref() == Some(suite) || self.codename.as_deref() == Some(suite)
    }

    /// Refuse a Release whose Valid-Until lies before `now` (seconds since
    /// the Unix epoch).
    pub fn check_valid_until(&self, now: i64, origin: &str) -> Result<()> {
        let Some(until) = &self.valid_until else {
            return Ok(());
        };
        let expired = match parse_date(until) {
            Some(t) => t < now,
            None => true,
        };
        if expired {
            return Err(Error::Expired {
                file: origin.to_string(),
                valid_until: until.clone(),
                now: format_date(now),
            });
        }
        Ok(())
    }
}

/// Parse an RFC 2822 date as Release files write it
/// (`Sat, 10 May 2025 09:01:47 UTC`, zone `UTC`, `GMT`, `Z` or `+hhmm`)
/// into seconds since the Unix epoch.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = match s.split_once(',') {
        Some((_, rest)) => rest,
        None => s,
    };
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [day, month, year, time, zone] = parts.as_slice() else {
        return None;
    };
    // Digits only and few of them: `parse` alone takes a sign, and a
    // year of 15 digits overflows the seconds.
    let day = digits(day, 2)?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as i64 + 1;
    let year = digits(year, 4)?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|x| digits(x, 2))
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    let offset = match *zone {
        "UTC" | "GMT" | "Z" | "UT" => 0,
        z if z.len() == 5 && z.is_ascii() && (z.starts_with('+') || z.starts_with('-')) => {
            let hh = digits(&z[1..3], 2)?;
            let mm = digits(&z[3..5], 2)?;
            let o = hh * 3600 + mm * 60;
            if z.starts_with('-') {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    if !(1..=31).contains(&day) || *h > 23 || *m > 59 || *sec > 60 {
        return None;
    }
    let t = days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + sec - offset;
    // What format_date can write back: from 1970 to the end of 9999 UTC.
    (0..=LAST_DATE).contains(&t).then_some(t)
}

/// The last second of the year 9999, UTC.
const LAST_DATE: i64 = 253_402_300_799;

/// A number of one to `max_len` ASCII digits.
fn digits(s: &str, max_len: usize) -> Option<i64> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Format seconds since the Unix epoch as a Release-style UTC date.
pub fn format_date(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} UTC",
        WEEKDAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

// Howard Hinnant's civil-calendar algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Seconds since the Unix epoch, now.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn release_fields() {
        let text = format!(
            "Origin: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 10 May 2025 09:01:47 UTC\n\
             Valid-Until: Sat, 17 May 2025 09:01:47 UTC\nAcquire-By-Hash: yes\n\
             Architectures: all amd64\nComponents: main contrib\nMD5Sum:\n abc 1 x\nSHA256:\n \
             {H} 100 main/binary-amd64/Packages.xz\n {H} 300 main/binary-amd64/Packages\n"
        );
        let r = Release::parse(&text, "Release").unwrap();
        assert!(r.is_for("bookworm") && r.is_for("stable") && !r.is_for("trixie"));
        assert_eq!(r.components, ["main", "contrib"]);
        assert_eq!(r.architectures, ["all", "amd64"]);
        assert!(r.acquire_by_hash);
        assert_eq!(r.sha256.len(), 2);
        assert_eq!(r.entry("main/binary-amd64/Packages").unwrap().size, 300);
        let date = parse_date(&r.date).unwrap();
        assert_eq!(date, 1746867707);
        assert_eq!(format_date(date), r.date);
        assert!(r.check_valid_until(date, "R").is_ok());
        let err = r
            .check_valid_until(date + 8 * 86400, "R")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("R expired at Sat, 17 May 2025 09:01:47 UTC"),
            "{err}"
        );

        let err = Release::parse(&text.replace("main/binary-amd64/Packages\n", "../x\n"), "R")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsafe path"), "{err}");
        let no_sha = text.split("SHA256:").next().unwrap();
        assert!(Release::parse(no_sha, "R")
            .unwrap_err()
            .to_string()
            .contains("no SHA256"));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(parse_date("Thu, 01 Jan 1970 01:00:00 +0100"), Some(0));
        assert_eq!(parse_date("29 Feb 2024 12:00:00 GMT"), Some(1709208000));
        assert_eq!(format_date(1709208000), "Thu, 29 Feb 2024 12:00:00 UTC");
        assert_eq!(parse_date("yesterday"), None);
    }

    /// Found by the `release` fuzz target: a 15-digit year overflowed the
    /// seconds (a panic in a debug build, a wrapped Valid-Until in a
    /// release build); signs and non-ASCII zones were taken too.
    #[test]
    fn odd_dates_are_unreadable_not_overflowed() {
        for odd in [
            "Sat, 06 Dec 222222222222222 02:11:04 UTC",
            "Sat, 06 Dec 99999 02:11:04 UTC",
            "Sat, 06 Dec 2026 -1:11:04 UTC",
            "Sat, +6 Dec 2026 02:11:04 UTC",
            "Sat, 06 Dec 2026 02:11:04 +0\u{e9}0",
            "Sat, 06 Dec 2026 02:11:04 -+100",
            "Sat, 06 Dec 2026 002:11:04 UTC",
        ] {
            assert_eq!(parse_date(odd), None, "{odd}");
        }
        assert_eq!(parse_date("1 Jan 1970 0:0:0 UTC"), Some(0));
        // Within four-digit years, and within them in UTC too.
        assert_eq!(parse_date("Fri, 31 Dec 9999 23:59:59 UTC"), Some(LAST_DATE));
        assert_eq!(format_date(LAST_DATE), "Fri, 31 Dec 9999 23:59:59 UTC");
        assert_eq!(parse_date("Fri, 31 Dec 9999 23:59:59 -0001"), None);
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 +0100"), None);
        let r = Release {
            valid_until: Some("Sat, 06 Dec 222222222222222 02:11:04 UTC".into()),
            ..Release::parse(
                &format!(
                    "Suite: x\nDate: Sat, 06 Dec 2026 02:11:04 UTC\nSHA256:\n {H} 1 main/Release\n"
                ),
                "InRelease",
            )
            .unwrap()
        };
        assert!(r.check_valid_until(0, "InRelease").is_err());
    }
}
