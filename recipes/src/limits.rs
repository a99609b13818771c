//! `[limits]` in `comb.toml` and `[build.limits]` in a recipe: what a build
//! (and, for `comb.toml`, every environment step) may use. Every field is
//! optional; what is not written keeps the engine's default.
//!
//! ```toml
//! [limits]
//! memory = "8G"        # with the sandbox's RAM-backed file systems
//! pids = 4096
//! cpu_time = "12h"
//! timeout = "4h"       # wall clock
//! disk = "20G"         # everything writable together
//! file_size = "8G"     # the largest single file
//! ```

use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// Limits as written; `None` keeps the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpu_time: Option<Duration>,
    /// Wall-clock time.
    pub timeout: Option<Duration>,
    pub disk: Option<u64>,
    pub file_size: Option<u64>,
}

impl LimitsConfig {
    /// These limits with every field `over` sets taking its place.
    pub fn overridden_by(&self, over: &LimitsConfig) -> LimitsConfig {
        LimitsConfig {
            memory: over.memory.or(self.memory),
            pids: over.pids.or(self.pids),
            cpu_time: over.cpu_time.or(self.cpu_time),
            timeout: over.timeout.or(self.timeout),
            disk: over.disk.or(self.disk),
            file_size: over.file_size.or(self.file_size),
        }
    }
}

/// A number or a string with a unit.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Quantity {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    memory: Option<Spanned<Quantity>>,
    pids: Option<Spanned<Quantity>>,
    cpu_time: Option<Spanned<Quantity>>,
    timeout: Option<Spanned<Quantity>>,
    disk: Option<Spanned<Quantity>>,
    file_size: Option<Spanned<Quantity>>,
}

/// The smallest memory or disk limit accepted: below it nothing starts.
const MIN_BYTES: u64 = 16 << 20;

impl RawLimits {
    /// Validates the values; an error is the offset of the bad value and
    /// what to write instead.
    pub(crate) fn check(&self) -> std::result::Result<LimitsConfig, (usize, String)> {
        let size = |q: &Option<Spanned<Quantity>>, key: &str, min: u64| {
            q.as_ref()
                .map(|q| {
                    let bytes = parse_size(q.get_ref()).map_err(|m| (q.span().start, format!("{key}: {m}")))?;
                    if bytes < min {
                        return Err((
                            q.span().start,
                            format!("{key}: {bytes} bytes is too small to run anything; give at least 16M"),
                        ));
                    }
                    Ok(bytes)
                })
                .transpose()
        };
        let time = |q: &Option<Spanned<Quantity>>, key: &str| {
            q.as_ref()
                .map(|q| {
                    parse_duration(q.get_ref()).map_err(|m| (q.span().start, format!("{key}: {m}")))
                })
                .transpose()
        };
        let pids = match &self.pids {
            Some(q) => match q.get_ref() {
                Quantity::Number(n) if *n >= 1 => Some(*n as u64),
                _ => {
                    return Err((
                        q.span().start,
                        "pids: give a whole number of processes, at least 1, e.g. pids = 4096"
                            .into(),
                    ))
                }
            },
            None => None,
        };
        Ok(LimitsConfig {
            memory: size(&self.memory, "memory", MIN_BYTES)?,
            pids,
            cpu_time: time(&self.cpu_time, "cpu_time")?,
            timeout: time(&self.timeout, "timeout")?,
            disk: size(&self.disk, "disk", MIN_BYTES)?,
            file_size: size(&self.file_size, "file_size", 1)?,
        })
    }
}

/// `"20G"`, `"512MiB"`, `"1.5T"` or a number of bytes; units are powers of
/// 1024.
fn parse_size(q: &Quantity) -> std::result::Result<u64, String> {
    const HELP: &str =
        "a size is a number of bytes or a string such as \"512M\", \"20G\" or \"1.5T\"";
    let text = match q {
        Quantity::Number(n) if *n > 0 => return Ok(*n as u64),
        Quantity::Number(n) => return Err(format!("{n} is not a size: {HELP}")),
        Quantity::Text(t) => t.trim(),
    };
    let number = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = text[number.len()..].to_ascii_uppercase();
    let shift = match unit
        .strip_suffix("IB")
        .or(unit.strip_suffix('B'))
        .unwrap_or(&unit)
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{text:?}: unknown unit; {HELP}")),
    };
    let value: f64 = number
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .ok_or_else(|| format!("{text:?}: {HELP}"))?;
    let bytes = value * (1u64 << shift) as f64;
    if bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes as u64)
}

/// `"12h"`, `"30min"`, `"90s"`, `"1h30m"` or a number of seconds.
fn parse_duration(q: &Quantity) -> std::result::Result<Duration, String> {
    const HELP: &str =
        "a duration is a number of seconds or a string such as \"90s\", \"30min\" or \"4h\"";
    let text = match q {
        Quantity::Number(n) if *n > 0 => return Ok(Duration::from_secs(*n as u64)),
        Quantity::Number(n) => return Err(format!("{n} is not a duration: {HELP}")),
        Quantity::Text(t) => t.trim(),
    };
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (number, after) = rest.split_at(digits);
        let unit_len = after.len()
            - after
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (unit, after) = after.split_at(unit_len);
        let seconds: u64 = match unit {
            "s" | "sec" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86400,
            _ => return Err(format!("{text:?}: {HELP}")),
        };
        let n: u64 = number.parse().map_err(|_| format!("{text:?}: {HELP}"))?;
        total = n
            .checked_mul(seconds)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("{text:?} is too long"))?;
        rest = after.trim_start();
    }
    if total == 0 {
        return Err(format!("{text:?}: {HELP}"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Quantity {
        Quantity::Text(s.into())
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(&text("20G")), Ok(20 << 30));
        assert_eq!(parse_size(&text("512MiB")), Ok(512 << 20));
        assert_eq!(parse_size(&text("1.5T")), Ok(3 << 39));
        assert_eq!(parse_size(&text("4096")), Ok(4096));
        assert_eq!(parse_size(&Quantity::Number(100)), Ok(100));
        for bad in ["", "G", "-1G", "12X", "1e400G", "nanG"] {
            assert!(parse_size(&text(bad)).is_err(), "{bad:?}");
        }
        assert!(parse_size(&Quantity::Number(0)).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration(&text("90s")), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration(&text("30min")),
            Ok(Duration::from_secs(1800))
        );
        assert_eq!(
            parse_duration(&text("1h30m")),
            Ok(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration(&Quantity::Number(5)),
            Ok(Duration::from_secs(5))
        );
        for bad in ["", "h", "5", "5 parsecs", "0s", "99999999999999999999h"] {
            assert!(parse_duration(&text(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_recipe_overrides_the_repository() {
        let repo = LimitsConfig {
            memory: Some(1 << 30),
            disk: Some(2 << 30),
            ..Default::default()
        };
        let recipe = LimitsConfig {
            disk: Some(40 << 30),
            ..Default::default()
        };
        let both = repo.overridden_by(&recipe);
        assert_eq!(both.memory, Some(1 << 30));
        assert_eq!(both.disk, Some(40 << 30));
    }
}
