//! What `comb check --vary` changes between the recorded build and the
//! rebuild, in the spirit of reprotest, all through the sandbox: a build
//! that is reproducible does not care. A variation the host or the
//! environment cannot apply is reported as not applied, with the reason,
//! never silently skipped.

use comb_cache::Store;
use comb_sandbox::{Bind, Identity, Spec};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Variation {
    BuildPath,
    Hostname,
    Domainname,
    Uid,
    Umask,
    Timezone,
    Locale,
    Home,
    Path,
    Environment,
    Cpus,
    Aslr,
    Kernel,
    Time,
    DirectoryOrder,
}

impl Variation {
    pub const ALL: [Variation; 15] = [
        Variation::BuildPath,
        Variation::Hostname,
        Variation::Domainname,
        Variation::Uid,
        Variation::Umask,
        Variation::Timezone,
        Variation::Locale,
        Variation::Home,
        Variation::Path,
        Variation::Environment,
        Variation::Cpus,
        Variation::Aslr,
        Variation::Kernel,
        Variation::Time,
        Variation::DirectoryOrder,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Variation::BuildPath => "build_path",
            Variation::Hostname => "hostname",
            Variation::Domainname => "domainname",
            Variation::Uid => "uid",
            Variation::Umask => "umask",
            Variation::Timezone => "timezone",
            Variation::Locale => "locale",
            Variation::Home => "home",
            Variation::Path => "path",
            Variation::Environment => "environment",
            Variation::Cpus => "cpus",
            Variation::Aslr => "aslr",
            Variation::Kernel => "kernel",
            Variation::Time => "time",
            Variation::DirectoryOrder => "directory_order",
        }
    }
}

/// A set of variations, and what some of them need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variations {
    pub set: BTreeSet<Variation>,
    /// The readdir-reversing library ([`Variations::prepare`]), or why
    /// there is none.
    disorder: Option<std::result::Result<PathBuf, String>>,
}

/// The source of the library that reverses directory order.
const DISORDER_C: &str = include_str!("vary/disorder.c");
const DISORDER_LIB: &str = "libcomb-disorder.so";

/// The readdir-reversing library, compiled once from [`DISORDER_C`] with
/// the host's C compiler into a store tree named by the source's digest.
fn disorder_library(store: &Store) -> std::result::Result<PathBuf, String> {
    let name = format!(
        "disorder-{}",
        &blake3::hash(DISORDER_C.as_bytes()).to_hex()[..16]
    );
    if let Some(dir) = store.tree_path(&name) {
        return Ok(dir);
    }
    let tree = store.begin_tree().map_err(|e| e.to_string())?;
    let source = tree.path().join("disorder.c");
    std::fs::write(&source, DISORDER_C)
        .map_err(|e| format!("writing {}: {e}", source.display()))?;
    let out = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(tree.path().join(DISORDER_LIB))
        .arg(&source)
        .args(["-ldl", "-lpthread"])
        .output()
        .map_err(|e| format!("no C compiler on this host (cc: {e})"))?;
    if !out.status.success() {
        return Err(format!(
            "compiling the directory-order library failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    match tree.publish(&name) {
        Ok(dir) => Ok(dir),
        // Another comb published it first.
        Err(_) => store
            .tree_path(&name)
            .ok_or_else(|| "publishing the directory-order library failed".to_string()),
    }
}

impl Variations {
    /// Makes what the variations need (the directory-order library).
    pub fn prepare(&mut self, store: &Store) {
        if self.set.contains(&Variation::DirectoryOrder) && self.disorder.is_none() {
            self.disorder = Some(disorder_library(store));
        }
    }

    /// `all`, or names separated by commas (`build_path,hostname`).
    pub fn parse(text: &str) -> Result<Variations, String> {
        if text.trim() == "all" {
            return Ok(Variations {
                set: Variation::ALL.into_iter().collect(),
                disorder: None,
            });
        }
        let mut set = BTreeSet::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let v = Variation::ALL
                .into_iter()
                .find(|v| v.as_str() == name.replace('-', "_"))
                .ok_or_else(|| {
                    let names: Vec<&str> = Variation::ALL.iter().map(|v| v.as_str()).collect();
                    format!(
                        "unknown variation {name:?}: use all, or some of {}",
                        names.join(", ")
                    )
                })?;
            set.insert(v);
        }
        Ok(Variations {
            set,
            disorder: None,
        })
    }
}

/// What a varied build applied, and what it could not (with why).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct VariationReport {
    pub applied: Vec<Variation>,
    pub not_applied: BTreeMap<String, String>,
}

/// Where a build works: `/build`, or a deeper, other path when varied.
pub(crate) fn build_root(vary: Option<&Variations>) -> &'static str {
    match vary {
        Some(v) if v.set.contains(&Variation::BuildPath) => "/usr/src/comb-varied/build-path",
        _ => "/build",
    }
}

/// Who builds: U, or U under other ids (`builder2`, uid and gid 2000) when
/// varied.
pub(crate) fn builder(vary: Option<&Variations>) -> Identity {
    match vary {
        Some(v) if v.set.contains(&Variation::Uid) => Identity::OtherBuilder,
        _ => Identity::Builder,
    }
}

/// The host's libfaketime, if installed.
fn faketime_dir() -> Option<PathBuf> {
    let arch_dir = format!("/usr/lib/{}-linux-gnu/faketime", std::env::consts::ARCH);
    [arch_dir.as_str(), "/usr/lib/faketime"]
        .iter()
        .map(PathBuf::from)
        .find(|d| d.join("libfaketime.so.1").is_file())
}

/// Whether a program is in the environment's layers (`usr/bin/NAME`).
fn has_tool(layers: &[PathBuf], name: &str) -> bool {
    layers
        .iter()
        .any(|l| l.join("usr/bin").join(name).exists() || l.join("bin").join(name).exists())
}

/// What applying `vary` in an environment of `layers` does.
pub fn plan(vary: &Variations, layers: &[PathBuf]) -> VariationReport {
    let mut report = VariationReport::default();
    for v in &vary.set {
        let missing = |what: &str| Some(format!("{what} is not in the build environment"));
        let why_not = match v {
            Variation::DirectoryOrder => match &vary.disorder {
                Some(Ok(_)) => None,
                Some(Err(e)) => Some(e.clone()),
                None => Some("not prepared (Variations::prepare)".to_string()),
            },
            Variation::Time if faketime_dir().is_none() => {
                Some("libfaketime is not installed on this host (Debian: faketime)".to_string())
            }
            Variation::Cpus if !has_tool(layers, "taskset") => missing("taskset (util-linux)"),
            Variation::Aslr | Variation::Kernel if !has_tool(layers, "setarch") => {
                missing("setarch (util-linux)")
            }
            _ => None,
        };
        match why_not {
            Some(reason) => {
                report.not_applied.insert(v.as_str().to_string(), reason);
            }
            None => report.applied.push(*v),
        }
    }
    report
}

/// Applies the variations `report` says apply to a build's `spec` (whose
/// command is `/bin/sh -c SCRIPT`) that would get `share` CPUs.
pub(crate) fn apply(vary: &Variations, report: &VariationReport, spec: &mut Spec, share: usize) {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut wrappers: Vec<String> = Vec::new();
    let mut preload: Vec<String> = Vec::new();
    for v in &report.applied {
        match v {
            // The build root and U's ids are chosen by the caller
            // (`build_root`, `builder`): the work directory is made for them.
            Variation::BuildPath | Variation::Uid => {}
            Variation::DirectoryOrder => {
                if let Some(Ok(dir)) = &vary.disorder {
                    let inside = Path::new("/usr/lib/comb-disorder");
                    spec.binds.push(Bind {
                        source: dir.clone(),
                        target: inside.to_path_buf(),
                        writable: false,
                    });
                    preload.push(inside.join(DISORDER_LIB).display().to_string());
                }
            }
            Variation::Hostname => spec.hostname = "comb-varied-host".into(),
            Variation::Domainname => spec.domainname = "varied.example".into(),
            Variation::Umask => spec.umask = 0o002,
            Variation::Timezone => env.push(("TZ".into(), "NZST-12NZDT".into())),
            Variation::Locale => {
                env.push(("LC_ALL".into(), "fr_CH.UTF-8".into()));
                env.push(("LANG".into(), "fr_CH.UTF-8".into()));
                env.push(("LANGUAGE".into(), "fr_CH:fr".into()));
            }
            Variation::Home => env.push(("HOME".into(), "/nonexistent/comb-varied-home".into())),
            Variation::Path => env.push((
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/comb-varied/bin"
                    .into(),
            )),
            Variation::Environment => {
                env.push(("COMB_VARIED".into(), "1".into()));
                env.push(("CAPTURE_ENVIRONMENT".into(), "varied".into()));
            }
            Variation::Cpus => {
                let other = if share > 1 { 1 } else { 2 };
                env.push(("DEB_BUILD_OPTIONS".into(), format!("parallel={other}")));
                wrappers.extend(["taskset".into(), "-c".into(), "0".into()]);
            }
            Variation::Aslr => {
                wrappers.extend(["setarch".into(), std::env::consts::ARCH.into(), "-R".into()])
            }
            Variation::Kernel => wrappers.extend([
                "setarch".into(),
                std::env::consts::ARCH.into(),
                "--uname-2.6".into(),
            ]),
            Variation::Time => {
                if let Some(dir) = faketime_dir() {
                    let inside = Path::new("/usr/lib/comb-faketime");
                    spec.binds.push(Bind {
                        source: dir,
                        target: inside.to_path_buf(),
                        writable: false,
                    });
                    preload.push(inside.join("libfaketime.so.1").display().to_string());
                    // A year and a week ahead, the clock still running.
                    env.push(("FAKETIME".into(), "+372d".into()));
                    // Timestamps set to "now" get the shifted now too:
                    // without it libfaketime 0.9.10 hands utime(NULL) an
                    // invalid time (EINVAL), and dpkg-source -x fails.
                    env.push(("FAKE_UTIME".into(), "1".into()));
                }
            }
        }
    }
    if !preload.is_empty() {
        env.push(("LD_PRELOAD".into(), preload.join(" ")));
    }
    for (k, v) in env {
        spec.env.retain(|(key, _)| *key != k);
        spec.env.push((k, v));
    }
    if !wrappers.is_empty() {
        wrappers.append(&mut spec.command);
        spec.command = wrappers;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_ones_say_what_exists() {
        let v = Variations::parse("hostname, build-path").unwrap();
        assert_eq!(
            v.set,
            BTreeSet::from([Variation::Hostname, Variation::BuildPath])
        );
        assert_eq!(Variations::parse("all").unwrap().set.len(), 15);
        let e = Variations::parse("moon").unwrap_err();
        assert!(
            e.contains("unknown variation \"moon\"") && e.contains("hostname"),
            "{e}"
        );
    }

    #[test]
    fn what_cannot_be_applied_is_said() {
        let all = Variations::parse("all").unwrap();
        let report = plan(&all, &[]);
        assert!(report.applied.contains(&Variation::Uid));
        // Not prepared: no directory-order library.
        assert!(report.not_applied.contains_key("directory_order"));
        // No layers: no taskset or setarch.
        assert!(report.not_applied["cpus"].contains("taskset"));
        assert!(report.not_applied["aslr"].contains("setarch"));
        assert!(report.applied.contains(&Variation::Hostname));
        assert_eq!(report.applied.len() + report.not_applied.len(), 15);
    }
}
