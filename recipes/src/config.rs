//! `comb.toml`, the repository file: where the distribution comes from
//! (`[distro]`), what every environment starts with (`[base]`), and, for
//! `comb serve`, the pockets a build service publishes (`[pockets.NAME]`)
//! and the hooks it runs on events (`[hooks]`), and the limits of every
//! build and environment step (`[limits]`).

use crate::error::{Error, Result};
use crate::limits::{LimitsConfig, RawLimits};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The repository file's name.
pub const CONFIG_FILE: &str = "comb.toml";

/// The build set when `[base] build` is not given: what sbuild installs.
pub const DEFAULT_BUILD_SET: [&str; 3] = ["build-essential", "fakeroot", "dpkg-dev"];

/// A parsed, validated `comb.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoConfig {
    /// The `comb.toml` file itself.
    pub path: PathBuf,
    /// The repository directory (the file's directory).
    pub root: PathBuf,
    pub distro: DistroConfig,
    pub base: BaseConfig,
    /// `[pockets.NAME]`, by name.
    pub pockets: std::collections::BTreeMap<String, PocketConfig>,
    pub hooks: HooksConfig,
    /// `[limits]`: of every build and environment step (a recipe's
    /// `[build.limits]` overrides them for its build).
    pub limits: LimitsConfig,
    /// `[build] archive-rebuild`: every package builds against the
    /// snapshot's binaries only, with no edges between recipes, as an
    /// archive-wide rebuild of a distribution does.
    pub archive_rebuild: bool,
    /// `[package] maintainer`: the `Maintainer` of native packages whose
    /// recipe names none.
    pub maintainer: Option<String>,
    /// `[remote]`: a shared cache over the Remote Execution API.
    pub remote: RemoteConfig,
}

/// `[remote]`: where build results are shared between machines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteConfig {
    /// `grpc://HOST:PORT` of a REAPI server's action cache and CAS.
    pub cache: Option<String>,
    /// `grpc://HOST:PORT` of a REAPI server whose workers run the builds
    /// (`comb worker`); its action cache and CAS serve as the cache too
    /// unless `cache` names another.
    pub execute: Option<String>,
    /// The server's instance name (BuildGrid's are often `main`).
    pub instance: String,
    /// Whether this machine writes its results there (a trusted CI
    /// runner); others only read.
    pub upload: bool,
    /// Build locally when the cache is unreachable, instead of failing.
    pub fallback_local: bool,
    /// `trust`: when set, only results these writers recorded are taken
    /// (the build service sets its pocket's `remote_writers`); `None`
    /// takes any (the cache's own access control decides who writes).
    pub trusted_writers: Option<Vec<String>>,
}

/// `[pockets.NAME]`: one archive a build service publishes, and who may
/// put packages into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PocketConfig {
    pub name: String,
    /// User names that may submit to (and promote into) it.
    pub users: Vec<String>,
    /// Group names whose members may.
    pub groups: Vec<String>,
    /// May a package's version go down (or stay)? Default no.
    pub allow_backtracking: bool,
    /// Where its APT repository is written (absolute; a relative path in
    /// the file is taken from the repository).
    pub publish: PathBuf,
    /// The GnuPG key that signs its `Release`, if any.
    pub sign_with: Option<String>,
    /// A frozen pocket takes no submission or promotion.
    pub frozen: bool,
    /// The writers (`comb@HOST (uid N)`, as results record them) whose
    /// builds in the remote cache it takes; none by default: it builds
    /// what it publishes itself.
    pub remote_writers: Vec<String>,
}

/// `[hooks]`: executables run on the service's events (queued, started,
/// succeeded, failed, refused, published, promoted), each given the event
/// as JSON on stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HooksConfig {
    /// (event, executable): `"any"` stands for every event. Executables are
    /// absolute (a relative path is taken from the repository).
    pub run: Vec<(String, PathBuf)>,
    /// How long a hook may run before it is killed.
    pub timeout: std::time::Duration,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            run: Vec::new(),
            timeout: std::time::Duration::from_secs(30),
        }
    }
}

impl HooksConfig {
    /// The executables to run for `event`: those of `any`, then its own.
    pub fn for_event<'a>(&'a self, event: &'a str) -> impl Iterator<Item = &'a Path> + 'a {
        self.run
            .iter()
            .filter(move |(e, _)| e == event || e == "any")
            .map(|(_, p)| p.as_path())
    }
}

/// `[distro]`: every field is optional; what is missing comes from the
/// host's APT sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DistroConfig {
    /// Mirror base URI (`http://`, `https://` or `file:`).
    pub mirror: Option<String>,
    pub suite: Option<String>,
    pub components: Option<Vec<String>>,
    pub architecture: Option<String>,
    /// Absolute (a relative path in the file is taken from the repository).
    pub keyring: Option<PathBuf>,
}

/// `[base]`: the package sets of the base install and base build layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseConfig {
    /// `None`: the snapshot's `Essential: yes` and `Priority: required` packages.
    pub install: Option<Vec<String>>,
    pub build: Vec<String>,
    /// Make the base layers from the repository's own builds of the
    /// packages they hold (bootstrapping a distribution from itself)
    /// instead of the snapshot's.
    pub bootstrap: bool,
}

impl Default for BaseConfig {
    fn default() -> Self {
        BaseConfig {
            install: None,
            build: DEFAULT_BUILD_SET.iter().map(|s| s.to_string()).collect(),
            bootstrap: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    distro: Option<RawDistro>,
    #[serde(default)]
    base: Option<RawBase>,
    #[serde(default)]
    pockets: std::collections::BTreeMap<String, Spanned<RawPocket>>,
    #[serde(default)]
    hooks: Option<RawHooks>,
    #[serde(default)]
    limits: Option<RawLimits>,
    #[serde(default)]
    build: Option<RawBuild>,
    #[serde(default)]
    package: Option<RawPackageDefaults>,
    #[serde(default)]
    remote: Option<RawRemote>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    cache: Option<Spanned<String>>,
    execute: Option<Spanned<String>>,
    #[serde(default)]
    instance: String,
    #[serde(default)]
    upload: bool,
    fallback: Option<Spanned<String>>,
    trust: Option<Vec<String>>,
}

/// `[package]`: what every native recipe's `[package]` takes unless it
/// says otherwise.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackageDefaults {
    maintainer: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    #[serde(default, rename = "archive-rebuild")]
    archive_rebuild: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPocket {
    #[serde(default)]
    users: Vec<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    #[serde(default)]
    allow_backtracking: bool,
    publish: Spanned<String>,
    sign_with: Option<Spanned<String>>,
    #[serde(default)]
    frozen: bool,
    #[serde(default)]
    remote_writers: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    timeout: Option<Spanned<u64>>,
    any: Option<Vec<Spanned<String>>>,
    queued: Option<Vec<Spanned<String>>>,
    started: Option<Vec<Spanned<String>>>,
    succeeded: Option<Vec<Spanned<String>>>,
    failed: Option<Vec<Spanned<String>>>,
    refused: Option<Vec<Spanned<String>>>,
    published: Option<Vec<Spanned<String>>>,
    promoted: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDistro {
    mirror: Option<Spanned<String>>,
    suite: Option<Spanned<String>>,
    components: Option<Spanned<Vec<Spanned<String>>>>,
    architecture: Option<Spanned<String>>,
    keyring: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBase {
    install: Option<Spanned<Vec<Spanned<String>>>>,
    build: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    bootstrap: bool,
}

impl RepoConfig {
    /// Reads and validates the `comb.toml` at `path`.
    pub fn load(path: &Path) -> Result<RepoConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        RepoConfig::parse(&path, &text)
    }

    /// The `comb.toml` in `start` or the nearest directory above it.
    pub fn find(start: &Path) -> Result<RepoConfig> {
        let start = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
        let mut dir = Some(start.as_path());
        while let Some(d) = dir {
            let candidate = d.join(CONFIG_FILE);
            if candidate.is_file() {
                return RepoConfig::load(&candidate);
            }
            dir = d.parent();
        }
        Err(Error::NoRepository {
            start,
            file: CONFIG_FILE,
        })
    }

    /// Parses `text` as the contents of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<RepoConfig> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            Error::at(path, text, e.span().map(|s| s.start), message)
        })?;
        let root = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let bad = |offset: usize, message: String| Error::at(path, text, Some(offset), message);
        let mut distro = DistroConfig::default();
        if let Some(d) = raw.distro {
            if let Some(m) = d.mirror {
                let uri = m.get_ref().trim_end_matches('/');
                if !["http://", "https://", "file:"]
                    .iter()
                    .any(|scheme| uri.starts_with(scheme))
                {
                    return Err(bad(
                        m.span().start,
                        format!("mirror {uri:?} must start with http://, https:// or file:"),
                    ));
                }
                distro.mirror = Some(uri.to_string());
            }
            if let Some(s) = d.suite {
                distro.suite = Some(plain_name(&s, "suite").map_err(|m| bad(s.span().start, m))?);
            }
            if let Some(a) = d.architecture {
                distro.architecture =
                    Some(plain_name(&a, "architecture").map_err(|m| bad(a.span().start, m))?);
            }
            if let Some(list) = d.components {
                if list.get_ref().is_empty() {
                    return Err(bad(
                        list.span().start,
                        "components is empty: name at least one, e.g. [\"main\"]".into(),
                    ));
                }
                let mut components = Vec::new();
                for c in list.get_ref() {
                    components
                        .push(plain_name(c, "component").map_err(|m| bad(c.span().start, m))?);
                }
                distro.components = Some(components);
            }
            if let Some(k) = d.keyring {
                if k.get_ref().is_empty() {
                    return Err(bad(
                        k.span().start,
                        "keyring is empty: give a file path".into(),
                    ));
                }
                distro.keyring = Some(root.join(k.get_ref()));
            }
        }
        let mut base = BaseConfig::default();
        if let Some(b) = raw.base {
            if let Some(list) = b.install {
                base.install = Some(package_list(&list, "install").map_err(|(o, m)| bad(o, m))?);
            }
            if let Some(list) = b.build {
                base.build = package_list(&list, "build").map_err(|(o, m)| bad(o, m))?;
            }
            base.bootstrap = b.bootstrap;
        }
        let mut pockets = std::collections::BTreeMap::new();
        for (name, raw) in raw.pockets {
            let at = raw.span().start;
            let raw = raw.into_inner();
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                || name.is_empty()
            {
                return Err(bad(
                    at,
                    format!("pocket name {name:?} is not a plain name (letters, digits, `-`, `_`)"),
                ));
            }
            for (list, what) in [(&raw.users, "user"), (&raw.groups, "group")] {
                if let Some(v) = list.iter().find(|v| !is_account_name(v.get_ref())) {
                    return Err(bad(
                        v.span().start,
                        format!("{what} name {:?} is not a valid account name", v.get_ref()),
                    ));
                }
            }
            if raw.publish.get_ref().is_empty() {
                return Err(bad(
                    raw.publish.span().start,
                    "publish is empty: give the directory its APT repository is written to".into(),
                ));
            }
            if let Some(k) = &raw.sign_with {
                if k.get_ref().is_empty() || k.get_ref().starts_with('-') {
                    return Err(bad(
                        k.span().start,
                        format!("sign_with {:?} is not a key id", k.get_ref()),
                    ));
                }
            }
            pockets.insert(
                name.clone(),
                PocketConfig {
                    name,
                    users: raw.users.into_iter().map(Spanned::into_inner).collect(),
                    groups: raw.groups.into_iter().map(Spanned::into_inner).collect(),
                    allow_backtracking: raw.allow_backtracking,
                    publish: root.join(raw.publish.get_ref()),
                    sign_with: raw.sign_with.map(Spanned::into_inner),
                    frozen: raw.frozen,
                    remote_writers: raw
                        .remote_writers
                        .into_iter()
                        .map(Spanned::into_inner)
                        .collect(),
                },
            );
        }
        let mut hooks = HooksConfig::default();
        if let Some(h) = raw.hooks {
            if let Some(t) = h.timeout {
                if *t.get_ref() == 0 {
                    return Err(bad(
                        t.span().start,
                        "timeout must be at least 1 second".into(),
                    ));
                }
                hooks.timeout = std::time::Duration::from_secs(*t.get_ref());
            }
            let events = [
                ("any", h.any),
                ("queued", h.queued),
                ("started", h.started),
                ("succeeded", h.succeeded),
                ("failed", h.failed),
                ("refused", h.refused),
                ("published", h.published),
                ("promoted", h.promoted),
            ];
            for (event, list) in events {
                for exe in list.unwrap_or_default() {
                    if exe.get_ref().is_empty() {
                        return Err(bad(exe.span().start, "a hook path is empty".into()));
                    }
                    hooks
                        .run
                        .push((event.to_string(), root.join(exe.get_ref())));
                }
            }
        }
        let limits = match raw.limits {
            Some(l) => l
                .check()
                .map_err(|(o, m)| bad(o, format!("[limits] {m}")))?,
            None => LimitsConfig::default(),
        };
        let mut maintainer = None;
        if let Some(m) = raw.package.and_then(|p| p.maintainer) {
            let v = m.get_ref().trim();
            crate::check_maintainer(v)
                .map_err(|e| bad(m.span().start, format!("[package] {e}")))?;
            maintainer = Some(v.to_string());
        }
        let mut remote = RemoteConfig::default();
        if let Some(r) = raw.remote {
            if let Some(c) = r.cache {
                if !c.get_ref().starts_with("grpc://") {
                    return Err(bad(
                        c.span().start,
                        format!("[remote] cache {:?} is not grpc://HOST:PORT", c.get_ref()),
                    ));
                }
                remote.cache = Some(c.into_inner());
            }
            if let Some(c) = r.execute {
                if !c.get_ref().starts_with("grpc://") {
                    return Err(bad(
                        c.span().start,
                        format!("[remote] execute {:?} is not grpc://HOST:PORT", c.get_ref()),
                    ));
                }
                remote.execute = Some(c.into_inner());
            }
            if remote.cache.is_none() {
                remote.cache = remote.execute.clone();
            }
            remote.instance = r.instance;
            remote.upload = r.upload;
            remote.trusted_writers = r.trust;
            if let Some(f) = r.fallback {
                match f.get_ref().as_str() {
                    "local" => remote.fallback_local = true,
                    "none" => {}
                    other => {
                        return Err(bad(
                            f.span().start,
                            format!("[remote] fallback {other:?} is not \"local\" or \"none\""),
                        ))
                    }
                }
            }
        }
        Ok(RepoConfig {
            path: path.to_path_buf(),
            root,
            distro,
            base,
            pockets,
            hooks,
            limits,
            archive_rebuild: raw.build.is_some_and(|b| b.archive_rebuild),
            maintainer,
            remote,
        })
    }
}

/// A suite, component or architecture: it becomes part of a URL and a path.
fn plain_name(value: &Spanned<String>, what: &str) -> std::result::Result<String, String> {
    let v = value.get_ref();
    let ok = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
        && !v.starts_with('.');
    if ok {
        Ok(v.clone())
    } else {
        Err(format!(
            "{what} {v:?} is not a plain name (letters, digits, `-`, `_`, `.`, `+`)"
        ))
    }
}

/// A list of `NAME` or `NAME=VERSION`, each a valid Debian package name.
fn package_list(
    list: &Spanned<Vec<Spanned<String>>>,
    what: &str,
) -> std::result::Result<Vec<String>, (usize, String)> {
    let mut out = Vec::new();
    for item in list.get_ref() {
        let (name, version) = match item.get_ref().split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (item.get_ref().as_str(), None),
        };
        if !comb_debian::name::is_package_name(name)
            || version.is_some_and(|v| v.is_empty() || v.contains(char::is_whitespace))
        {
            return Err((
                item.span().start,
                format!(
                    "{what}: {:?} is not a package name (lowercase letters, digits, `+`, `-`, `.`; at least two characters) optionally followed by =VERSION",
                    item.get_ref()
                ),
            ));
        }
        if out.contains(item.get_ref()) {
            return Err((
                item.span().start,
                format!("{what}: {:?} is listed twice", item.get_ref()),
            ));
        }
        out.push(item.get_ref().clone());
    }
    Ok(out)
}

/// A user or group name as `useradd` takes it.
fn is_account_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.$".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RepoConfig> {
        RepoConfig::parse(Path::new("/repo/comb.toml"), text)
    }

    #[test]
    fn an_archive_rebuild_is_asked_for_in_build() {
        assert!(!parse("").unwrap().archive_rebuild);
        assert!(!parse("[build]\n").unwrap().archive_rebuild);
        assert!(
            parse("[build]\narchive-rebuild = true\n")
                .unwrap()
                .archive_rebuild
        );
        let e = parse("[build]\narchive = true\n").unwrap_err().to_string();
        assert!(e.contains("/repo/comb.toml:2"), "{e}");
    }

    #[test]
    fn bootstrap_is_off_unless_asked() {
        assert!(!parse("[base]\n").unwrap().base.bootstrap);
        assert!(parse("[base]\nbootstrap = true\n").unwrap().base.bootstrap);
        let e = parse("[base]\nbootstrap = \"yes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("comb.toml:2:"), "{e}");
    }

    #[test]
    fn limits_are_read_and_bad_ones_named() {
        let c = parse(
            "[limits]\nmemory = \"2G\"\npids = 512\ntimeout = \"90min\"\ndisk = 1073741824\n",
        )
        .unwrap();
        assert_eq!(c.limits.memory, Some(2 << 30));
        assert_eq!(c.limits.pids, Some(512));
        assert_eq!(c.limits.timeout, Some(std::time::Duration::from_secs(5400)));
        assert_eq!(c.limits.disk, Some(1 << 30));
        assert_eq!(c.limits.cpu_time, None);
        let e = parse("[limits]\n\nmemory = \"lots\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("comb.toml:3:") && e.contains("[limits] memory"),
            "{e}"
        );
        let e = parse("[limits]\npids = 0\n").unwrap_err().to_string();
        assert!(e.contains("pids"), "{e}");
        let e = parse("[limits]\nswap = \"1G\"\n").unwrap_err().to_string();
        assert!(e.contains("swap"), "{e}");
    }

    #[test]
    fn empty_file_takes_every_default() {
        let c = parse("").unwrap();
        assert_eq!(c.distro, DistroConfig::default());
        assert_eq!(c.base.install, None);
        assert_eq!(c.base.build, ["build-essential", "fakeroot", "dpkg-dev"]);
        assert_eq!(c.root, Path::new("/repo"));
    }

    #[test]
    fn full_file_is_read() {
        let c = parse(
            "[distro]\nmirror = \"file:/srv/mirror/\"\nsuite = \"bookworm\"\ncomponents = [\"main\", \"contrib\"]\n\
             architecture = \"amd64\"\nkeyring = \"keys/archive.gpg\"\n\n[base]\ninstall = [\"busybox\", \"dpkg=1.21.22\"]\nbuild = []\n",
        )
        .unwrap();
        assert_eq!(c.distro.mirror.as_deref(), Some("file:/srv/mirror"));
        assert_eq!(c.distro.components.unwrap(), ["main", "contrib"]);
        assert_eq!(
            c.distro.keyring.unwrap(),
            Path::new("/repo/keys/archive.gpg")
        );
        assert_eq!(c.base.install.unwrap(), ["busybox", "dpkg=1.21.22"]);
        assert!(c.base.build.is_empty());
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = parse("[distro]\nsuite = \"book worm\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/repo/comb.toml:2:9: suite \"book worm\""),
            "{e}"
        );
        let e = parse("[distro]\nmirorr = \"x\"\n").unwrap_err().to_string();
        assert!(
            e.starts_with("/repo/comb.toml:2:1:") && e.contains("mirorr") && e.contains("mirror"),
            "{e}"
        );
        let e = parse("[base]\nbuild = [\"gcc\", \"Bad_Name\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/repo/comb.toml:2:17:") && e.contains("Bad_Name"),
            "{e}"
        );
        let e = parse("[base]\nbuild = [\"gcc\", \"gcc\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listed twice"), "{e}");
        let e = parse("[distro]\nmirror = \"ftp://x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/repo/comb.toml:2:10:") && e.contains("http://"),
            "{e}"
        );
        let e = parse("[distro\n").unwrap_err().to_string();
        assert!(e.starts_with("/repo/comb.toml:1:"), "{e}");
        let e = parse("[distro]\ncomponents = []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("components is empty"), "{e}");
    }

    #[test]
    fn pockets_and_hooks_are_read_and_checked() {
        let c = parse(
            "[pockets.dev]\nusers = [\"alice\", \"bob\"]\ngroups = [\"developers\"]\n\
             allow_backtracking = true\npublish = \"apt/dev\"\nsign_with = \"ABCD1234\"\n\n\
             [pockets.prod]\npublish = \"/srv/apt/prod\"\nfrozen = true\n\n\
             [hooks]\ntimeout = 5\nfailed = [\"hooks/mail\"]\nany = [\"/usr/local/bin/post\"]\n",
        )
        .unwrap();
        let dev = &c.pockets["dev"];
        assert_eq!(dev.users, ["alice", "bob"]);
        assert_eq!(dev.groups, ["developers"]);
        assert!(dev.allow_backtracking && !dev.frozen);
        assert_eq!(dev.publish, Path::new("/repo/apt/dev"));
        assert_eq!(dev.sign_with.as_deref(), Some("ABCD1234"));
        let prod = &c.pockets["prod"];
        assert!(prod.frozen && !prod.allow_backtracking && prod.users.is_empty());
        assert_eq!(c.hooks.timeout, std::time::Duration::from_secs(5));
        let failed: Vec<_> = c.hooks.for_event("failed").collect();
        assert_eq!(
            failed,
            [
                Path::new("/usr/local/bin/post"),
                Path::new("/repo/hooks/mail")
            ]
        );
        assert_eq!(c.hooks.for_event("queued").count(), 1);

        let e = parse("[pockets.dev]\nusers = [\"alice\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("publish"), "{e}");
        let e = parse("[pockets.dev]\npublish = \"x\"\nusers = [\"-rf\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/repo/comb.toml:3:10:") && e.contains("-rf"),
            "{e}"
        );
        let e = parse("[hooks]\nfinished = [\"x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/repo/comb.toml:2:1:")
                && e.contains("finished")
                && e.contains("succeeded"),
            "{e}"
        );
        let e = parse("[pockets.dev]\npublish = \"x\"\nalow_backtracking = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/repo/comb.toml:3:"), "{e}");
    }

    #[test]
    fn find_walks_up_and_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        let e = RepoConfig::find(&sub).unwrap_err().to_string();
        assert!(e.contains("no comb.toml") && e.contains("--repo"), "{e}");
        std::fs::write(dir.path().join("comb.toml"), "[base]\nbuild = [\"make\"]\n").unwrap();
        let c = RepoConfig::find(&sub).unwrap();
        assert_eq!(c.base.build, ["make"]);
        assert_eq!(c.root, dir.path());
    }
}
