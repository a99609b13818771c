//! The host's APT sources: `etc/apt/sources.list`,
//! `etc/apt/sources.list.d/*.list` (one-line format) and
//! `etc/apt/sources.list.d/*.sources` (deb822), read from a root directory
//! so tests can point at their own tree. comb never has a mirror name of its
//! own: it uses the one the host is configured with.

use crate::error::{Error, Result};
use comb_debian::control;
use std::path::{Path, PathBuf};

/// Keyring used when a source names none (as APT does on Debian).
pub const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Where a source's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedBy {
    /// A keyring file.
    Keyring(PathBuf),
    /// Key fingerprints (comb cannot use these yet).
    Fingerprints(Vec<String>),
    /// An ASCII-armored key written into the `.sources` file itself (comb
    /// cannot use these yet).
    Inline(String),
}

/// One repository line (one URI) of the APT sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    /// `deb` and/or `deb-src`.
    pub types: Vec<String>,
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub signed_by: Option<SignedBy>,
    /// `arch=`/`Architectures:`; empty means the host's.
    pub architectures: Vec<String>,
    /// `false` for `Enabled: no` entries, which are listed but not used.
    pub enabled: bool,
    /// The file and line it came from.
    pub file: PathBuf,
    pub line: usize,
}

impl AptSource {
    /// Is this an enabled source of binary packages?
    pub fn is_binary(&self) -> bool {
        self.enabled && self.types.iter().any(|t| t == "deb")
    }

    /// The keyring file to verify this source with.
    pub fn keyring(&self) -> Result<PathBuf> {
        match &self.signed_by {
            None => Ok(PathBuf::from(DEFAULT_KEYRING)),
            Some(SignedBy::Keyring(p)) => Ok(p.clone()),
            Some(_) => Err(Error::NoSource(format!(
                "{}:{}: Signed-By with fingerprints or an inline key is not supported by comb yet; \
                 point Signed-By at a keyring file",
                self.file.display(),
                self.line
            ))),
        }
    }
}

/// Read all APT sources under `root` (`root/etc/apt/...`), in APT's order:
/// `sources.list`, then `sources.list.d/` files sorted by name. Entries of
/// every type are returned, disabled ones too (see [`AptSource::is_binary`]).
pub fn read_apt_sources(root: &Path) -> Result<Vec<AptSource>> {
    let apt = root.join("etc/apt");
    let mut out = Vec::new();
    let main = apt.join("sources.list");
    if main.is_file() {
        out.extend(read_file(&main)?);
    }
    let dir = apt.join("sources.list.d");
    if dir.is_dir() {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io("reading", &dir, e))? {
            let entry = entry.map_err(|e| Error::io("reading", &dir, e))?;
            names.push(entry.path());
        }
        names.sort();
        for path in names {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // APT ignores other names (backups, `.disabled`, `.dpkg-old`).
            let valid = name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
            if valid && (name.ends_with(".list") || name.ends_with(".sources")) && path.is_file() {
                out.extend(read_file(&path)?);
            }
        }
    }
    Ok(out)
}

/// [`read_apt_sources`] of the host (`/`).
pub fn host_apt_sources() -> Result<Vec<AptSource>> {
    read_apt_sources(Path::new("/"))
}

/// Read one sources file, one-line or deb822 by its extension.
pub fn read_file(path: &Path) -> Result<Vec<AptSource>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    if path.extension().is_some_and(|e| e == "sources") {
        parse_deb822(&text, path)
    } else {
        parse_one_line(&text, path)
    }
}

/// Parse the one-line format: `deb [opt=val ...] uri suite [component...]`.
pub fn parse_one_line(text: &str, file: &Path) -> Result<Vec<AptSource>> {
    let origin = file.display().to_string();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (kind, mut rest) = line
            .split_once(char::is_whitespace)
            .map(|(k, r)| (k, r.trim_start()))
            .unwrap_or((line, ""));
        if kind != "deb" && kind != "deb-src" {
            return Err(Error::parse(
                &origin,
                line_no,
                format!("expected `deb` or `deb-src`, found {kind:?}"),
            ));
        }
        let mut signed_by = None;
        let mut architectures = Vec::new();
        if let Some(after) = rest.strip_prefix('[') {
            let (opts, tail) = after.split_once(']').ok_or_else(|| {
                Error::parse(&origin, line_no, "an option list `[` without its `]`")
            })?;
            for opt in opts.split_whitespace() {
                let Some((key, value)) = opt.split_once('=') else {
                    return Err(Error::parse(
                        &origin,
                        line_no,
                        format!("option {opt:?} is not `name=value`"),
                    ));
                };
                match key {
                    "signed-by" => signed_by = Some(signed_by_value(value)),
                    "arch" => architectures = value.split(',').map(str::to_string).collect(),
                    _ => {} // trusted=, lang=, target=...: not comb's business.
                }
            }
            rest = tail.trim_start();
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        let [uri, suite, components @ ..] = words.as_slice() else {
            return Err(Error::parse(
                &origin,
                line_no,
                "expected `URI suite [component...]` after the type",
            ));
        };
        out.push(AptSource {
            types: vec![kind.to_string()],
            uri: uri.to_string(),
            suites: vec![suite.to_string()],
            components: components.iter().map(|c| c.to_string()).collect(),
            signed_by,
            architectures,
            enabled: true,
            file: file.to_path_buf(),
            line: line_no,
        });
    }
    Ok(out)
}

/// Parse the deb822 format (`Types:`, `URIs:`, `Suites:`, ...). A paragraph
/// with several URIs gives one [`AptSource`] per URI.
pub fn parse_deb822(text: &str, file: &Path) -> Result<Vec<AptSource>> {
    let origin = file.display().to_string();
    let mut out = Vec::new();
    for p in control::parse(text, &origin)? {
        let words = |f: &str| -> Vec<String> {
            p.get(f)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let types = words("Types");
        let uris = words("URIs");
        let suites = words("Suites");
        if types.is_empty() || uris.is_empty() || suites.is_empty() {
            return Err(Error::parse(
                &origin,
                p.line,
                "a source needs Types, URIs and Suites",
            ));
        }
        if let Some(t) = types.iter().find(|t| *t != "deb" && *t != "deb-src") {
            return Err(Error::parse(
                &origin,
                p.line_of("Types"),
                format!("unknown type {t:?} (expected deb or deb-src)"),
            ));
        }
        let enabled = match p.get("Enabled").map(str::to_ascii_lowercase).as_deref() {
            None | Some("yes") => true,
            Some("no") => false,
            Some(other) => {
                return Err(Error::parse(
                    &origin,
                    p.line_of("Enabled"),
                    format!("Enabled must be yes or no, found {other:?}"),
                ))
            }
        };
        let signed_by = p.get("Signed-By").map(|v| {
            if v.contains('\n') || v.contains("BEGIN PGP") {
                SignedBy::Inline(v.to_string())
            } else {
                signed_by_value(v)
            }
        });
        for uri in uris {
            out.push(AptSource {
                types: types.clone(),
                uri,
                suites: suites.clone(),
                components: words("Components"),
                signed_by: signed_by.clone(),
                architectures: words("Architectures"),
                enabled,
                file: file.to_path_buf(),
                line: p.line,
            });
        }
    }
    Ok(out)
}

fn signed_by_value(v: &str) -> SignedBy {
    let v = v.trim();
    if v.starts_with('/') {
        SignedBy::Keyring(PathBuf::from(v))
    } else {
        SignedBy::Fingerprints(
            v.split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }
}

/// What comb needs to know to snapshot one suite of one mirror.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MirrorConfig {
    /// Base URI, e.g. the `URIs:` value; no trailing slash.
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
    /// Debian architecture, e.g. `amd64`.
    pub architecture: String,
    /// Keyring file that must have signed the suite's InRelease.
    pub keyring: PathBuf,
}

impl MirrorConfig {
    /// The host's main Debian suite from `/`, for the architecture that
    /// `dpkg --print-architecture` reports.
    pub fn from_host() -> Result<MirrorConfig> {
        MirrorConfig::from_root(Path::new("/"), &host_architecture()?)
    }

    /// The main suite configured under `root`: the first enabled `deb`
    /// source listing the host's suite, which is `VERSION_CODENAME` from
    /// `root/etc/os-release` if a source lists it, else the first listed
    /// suite that is not an `-updates`, `-security`, `-backports` or
    /// `-proposed-updates` one.
    pub fn from_root(root: &Path, architecture: &str) -> Result<MirrorConfig> {
        let sources = read_apt_sources(root)?;
        let binary: Vec<&AptSource> = sources.iter().filter(|s| s.is_binary()).collect();
        let where_ = root.join("etc/apt");
        let no_source = |what: String| {
            Error::NoSource(format!(
                "no enabled `deb` source for {what} in {}; add one (or set the mirror in comb.toml)",
                where_.display()
            ))
        };
        // The host's codename when a source lists it, else the first main
        // suite listed (sources may say `stable` where os-release says the
        // codename).
        let codename = os_release_codename(root);
        let suite = match codename.filter(|c| binary.iter().any(|s| s.suites.contains(c))) {
            Some(c) => c,
            None => binary
                .iter()
                .flat_map(|s| s.suites.iter())
                .find(|s| is_main_suite(s))
                .cloned()
                .ok_or_else(|| no_source("a main suite".to_string()))?,
        };
        let source = binary
            .iter()
            .find(|s| s.suites.contains(&suite))
            .ok_or_else(|| no_source(format!("suite {suite:?}")))?;
        if source.components.is_empty() {
            return Err(Error::NoSource(format!(
                "{}:{}: the source for {suite} lists no components (flat repositories are not supported)",
                source.file.display(),
                source.line
            )));
        }
        Ok(MirrorConfig {
            uri: source.uri.trim_end_matches('/').to_string(),
            suite,
            components: source.components.clone(),
            architecture: architecture.to_string(),
            keyring: source.keyring()?,
        })
    }

    /// URL of a file under `dists/<suite>/`.
    pub fn dists_url(&self, path: &str) -> String {
        format!("{}/dists/{}/{}", self.uri, self.suite, path)
    }

    /// URL of a file relative to the mirror root (a Packages `Filename`).
    pub fn pool_url(&self, filename: &str) -> String {
        format!("{}/{}", self.uri, filename.trim_start_matches('/'))
    }
}

fn is_main_suite(s: &str) -> bool {
    ![
        "-updates",
        "-security",
        "-backports",
        "-proposed-updates",
        "/updates",
    ]
    .iter()
    .any(|suffix| s.ends_with(suffix))
}

fn os_release_codename(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("etc/os-release"))
        .or_else(|_| std::fs::read_to_string(root.join("usr/lib/os-release")))
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// The host's Debian architecture (`dpkg --print-architecture`), or the
/// one matching the CPU comb was built for when dpkg is missing.
pub fn host_architecture() -> Result<String> {
    if let Ok(out) = std::process::Command::new("dpkg")
        .arg("--print-architecture")
        .output()
    {
        let arch = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !arch.is_empty() {
            return Ok(arch);
        }
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => {
            return Err(Error::NoSource(format!(
                "cannot tell the Debian architecture of this {other} host: dpkg --print-architecture failed"
            )))
        }
    };
    Ok(arch.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn reads_both_formats_in_apt_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "etc/apt/sources.list",
            "# comment\ndeb [arch=amd64,i386 signed-by=/k.gpg trusted=yes] http://m.invalid/debian sid main contrib # tail\n\
             deb-src http://m.invalid/debian sid main\n",
        );
        write(
            root,
            "etc/apt/sources.list.d/b.sources",
            "Types: deb deb-src\n# a comment\nURIs: http://a.invalid/d http://b.invalid/d\nSuites: trixie trixie-updates\n\
             Components: main\nSigned-By: /usr/share/keyrings/x.gpg\n\n\
             Enabled: no\nTypes: deb\nURIs: http://c.invalid/\nSuites: off\nComponents: main\n",
        );
        write(
            root,
            "etc/apt/sources.list.d/a.list",
            "deb http://d.invalid/ bookworm main\n",
        );
        write(
            root,
            "etc/apt/sources.list.d/c.list.disabled",
            "deb http://e.invalid/ x main\n",
        );
        let s = read_apt_sources(root).unwrap();
        let uris: Vec<&str> = s.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                "http://m.invalid/debian",
                "http://m.invalid/debian",
                "http://d.invalid/",
                "http://a.invalid/d",
                "http://b.invalid/d",
                "http://c.invalid/"
            ]
        );
        assert_eq!(s[0].architectures, ["amd64", "i386"]);
        assert_eq!(s[0].signed_by, Some(SignedBy::Keyring("/k.gpg".into())));
        assert_eq!(s[0].components, ["main", "contrib"]);
        assert!(s[0].is_binary());
        assert!(!s[1].is_binary(), "deb-src only");
        assert_eq!(s[3].types, ["deb", "deb-src"]);
        assert_eq!(s[3].suites, ["trixie", "trixie-updates"]);
        assert!(!s[5].enabled && !s[5].is_binary());
    }

    #[test]
    fn mirror_config_picks_the_main_suite() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "etc/apt/sources.list.d/debian.sources",
            "Types: deb\nURIs: http://sec.invalid/debian-security/\nSuites: bookworm-security\nComponents: main\n\n\
             Types: deb-src\nURIs: http://src.invalid/debian\nSuites: bookworm\nComponents: main\n\n\
             Types: deb\nURIs: http://m.invalid/debian/\nSuites: bookworm-updates bookworm\nComponents: main non-free\n",
        );
        let c = MirrorConfig::from_root(root, "arm64").unwrap();
        assert_eq!(c.uri, "http://m.invalid/debian");
        assert_eq!(c.suite, "bookworm");
        assert_eq!(c.components, ["main", "non-free"]);
        assert_eq!(c.architecture, "arm64");
        assert_eq!(c.keyring, Path::new(DEFAULT_KEYRING));
        assert_eq!(
            c.dists_url("InRelease"),
            "http://m.invalid/debian/dists/bookworm/InRelease"
        );
        assert_eq!(
            c.pool_url("pool/main/h/hello.deb"),
            "http://m.invalid/debian/pool/main/h/hello.deb"
        );

        // os-release's codename wins when a source lists it...
        write(
            root,
            "etc/apt/sources.list",
            "deb http://t.invalid/debian trixie main\n",
        );
        write(
            root,
            "etc/os-release",
            "NAME=\"Debian\"\nVERSION_CODENAME=trixie\n",
        );
        let c = MirrorConfig::from_root(root, "amd64").unwrap();
        assert_eq!(
            (c.uri.as_str(), c.suite.as_str()),
            ("http://t.invalid/debian", "trixie")
        );
        // ...and is ignored when none does.
        write(root, "etc/os-release", "VERSION_CODENAME=forky\n");
        let c = MirrorConfig::from_root(root, "amd64").unwrap();
        assert_eq!(c.suite, "trixie");

        // No binary source at all.
        std::fs::remove_file(root.join("etc/apt/sources.list")).unwrap();
        std::fs::remove_file(root.join("etc/apt/sources.list.d/debian.sources")).unwrap();
        let err = MirrorConfig::from_root(root, "amd64")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no enabled `deb` source"), "{err}");
    }

    #[test]
    fn bad_lines_are_reported_with_their_place() {
        let err = parse_one_line("deb [arch=amd64 http://x sid main\n", Path::new("s.list"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.list:1:"), "{err}");
        let err = parse_one_line("\ndeb http://x\n", Path::new("s.list"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.list:2:"), "{err}");
        let err = parse_deb822("Types: deb\nSuites: x\n", Path::new("d.sources"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs Types, URIs and Suites"), "{err}");
    }

    #[test]
    fn host_sources_are_readable() {
        // Whatever the host has, it parses.
        host_apt_sources().unwrap();
        assert!(!host_architecture().unwrap().is_empty());
    }
}
