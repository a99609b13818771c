//! Dependency resolution with APT's own solver, in an APT of its own
//! (hasher's "aptbox").
//!
//! Resolving Debian dependencies well (alternatives, virtual packages,
//! versioned provides, multiarch, conflicts, essential handling) is what
//! APT's solver does; comb does not write another one. An [`Aptbox`] is a
//! private APT configuration under a work directory: its own `etc/`,
//! `state/` (lists and a dpkg status file), `cache/` and `log/`, and a flat
//! local repository made of the snapshot's `Packages` indices. APT is run
//! with `APT_CONFIG` pointing at a file written here and a cleared
//! environment, so the host's APT configuration, sources, keyrings,
//! preferences, lists, caches and dpkg state are never read or changed,
//! and the host's foreign architectures are never asked for.
//!
//! [`Aptbox::resolve`] runs `apt-get --simulate install` on top of a given
//! dpkg status file and maps each `Inst` line of the plan back to its
//! `Packages` record, so the result carries the sha256, size and pool path
//! of every `.deb` to fetch.
//!
//! Layout of the work directory:
//!
//! ```text
//! WORK/apt.conf               the APT_CONFIG file
//! WORK/etc/                   sources.list; empty apt.conf.d/, sources.list.d/,
//!                             preferences.d/, trusted.gpg.d/
//! WORK/repo/Packages, Release the flat repository (indices concatenated)
//! WORK/state/lists/           what `apt-get update` made of it
//! WORK/cache/srcpkgcache.bin  APT's binary cache of the lists
//! WORK/state/status-SHA256    each dpkg status resolved on, by its digest
//! WORK/cache/pkgcache-SHA256.bin  APT's cache of the lists and that status
//! WORK/aptbox.stamp           digests of the indices and the config
//! WORK/runs/ID/               one per resolve, removed afterwards
//! ```
//!
//! `apt-get update` runs once per work directory and set of indices: a
//! later [`Aptbox::new`] with the same indices finds the stamp and skips
//! it. Resolves write nothing shared (APT's package cache is kept in
//! memory, each resolve has its own status file), so one `Aptbox` may
//! resolve from several threads at once. Two `Aptbox::new` calls must not
//! share a work directory at the same time.

use crate::error::{Error, Result};
use crate::packages::BinaryPackage;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// One package that APT would install: the exact `.deb` to fetch.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Resolved {
    pub name: String,
    pub version: String,
    /// The package's own architecture (`all` for architecture-independent
    /// packages).
    pub architecture: String,
    /// Lowercase hex sha256 of the `.deb`.
    pub sha256: String,
    pub size: u64,
    /// Path of the `.deb` relative to the mirror URI (the `Filename` field).
    pub filename: String,
}

/// A private APT for one architecture and one set of `Packages` indices.
#[derive(Debug)]
pub struct Aptbox {
    work: PathBuf,
    architecture: String,
    config: PathBuf,
    packages: PathBuf,
    digest: String,
}

/// Bump when the layout or the configuration written changes, so old work
/// directories are set up again.
const FORMAT: &str = "comb-aptbox 1";
const STAMP: &str = "aptbox.stamp";
const PROGRESS_LINES: [&str; 3] = [
    "Reading package lists...",
    "Building dependency tree...",
    "Reading state information...",
];

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Aptbox {
    /// Set up an isolated APT under `work` (created if missing) for
    /// `architecture`, with a flat local repository made of the given
    /// decompressed `Packages` index files, in order.
    ///
    /// If `work` already holds an Aptbox for the same architecture and the
    /// same index contents, it is reused as it is (no `apt-get update`).
    /// Otherwise everything comb put there before is replaced.
    pub fn new(work: &Path, architecture: &str, packages_indices: &[PathBuf]) -> Result<Aptbox> {
        if architecture.is_empty()
            || !architecture
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(Error::Apt {
                command: "setting up APT".into(),
                message: format!(
                    "{architecture:?} is not a Debian architecture name (like amd64 or arm64)"
                ),
            });
        }
        fs::create_dir_all(work).map_err(|e| Error::io("creating", work, e))?;
        let work = fs::canonicalize(work).map_err(|e| Error::io("resolving", work, e))?;
        let w = config_safe(&work)?;
        let config_text = config_text(w, architecture);

        // Decide from the contents whether the existing setup still fits.
        let mut digests = Vec::with_capacity(packages_indices.len());
        for index in packages_indices {
            digests.push(crate::fetch::hash_file(index)?);
        }
        let digest = content_digest(architecture, &digests);
        let stamp_text = format!(
            "{digest} {}\n",
            hex::encode(Sha256::digest(config_text.as_bytes()))
        );
        let aptbox = Aptbox {
            config: work.join("apt.conf"),
            packages: work.join("repo/Packages"),
            architecture: architecture.to_string(),
            digest,
            work,
        };
        let stamp = aptbox.work.join(STAMP);
        let fresh = fs::read_to_string(&stamp).is_ok_and(|s| s == stamp_text)
            && aptbox.packages.is_file()
            && aptbox.work.join("cache/srcpkgcache.bin").is_file();
        if !fresh {
            aptbox.setup(&config_text, packages_indices, &stamp_text)?;
        }
        Ok(aptbox)
    }

    /// The work directory (absolute).
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// The architecture APT resolves for.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The `APT_CONFIG` file of this Aptbox, to inspect it with APT's tools.
    pub fn config_file(&self) -> &Path {
        &self.config
    }

    /// sha256 over the architecture, the contents of the indices and the
    /// format of this module (not the work directory): equal digests mean
    /// equal resolutions for equal requests and status files.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    fn setup(&self, config_text: &str, indices: &[PathBuf], stamp_text: &str) -> Result<()> {
        let work = &self.work;
        let stamp = work.join(STAMP);
        remove_file_if_exists(&stamp)?;
        for dir in ["etc", "repo", "state", "cache", "log", "runs"] {
            let path = work.join(dir);
            match fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing", &path, e)),
            }
        }
        for dir in [
            "etc/apt.conf.d",
            "etc/sources.list.d",
            "etc/preferences.d",
            "etc/trusted.gpg.d",
            "repo",
            "state/lists/partial",
            "cache/archives/partial",
            "log",
            "runs",
        ] {
            let path = work.join(dir);
            fs::create_dir_all(&path).map_err(|e| Error::io("creating", &path, e))?;
        }

        // The flat repository: the indices concatenated, with a blank line
        // between them so no two paragraphs merge.
        let (packages_sha256, packages_size) = concatenate(indices, &self.packages)?;
        let release = format!(
            "Origin: comb\nLabel: comb\nSuite: aptbox\nCodename: aptbox\n\
             Date: Thu, 01 Jan 1970 00:00:00 UTC\nArchitectures: {} all\n\
             SHA256:\n {packages_sha256} {packages_size} Packages\n",
            self.architecture
        );
        write_file(&work.join("repo/Release"), release.as_bytes())?;
        let sources = format!(
            "deb [trusted=yes] file:{} ./\n",
            uri_path(&work.join("repo"))
        );
        write_file(&work.join("etc/sources.list"), sources.as_bytes())?;
        write_file(&work.join("state/status"), b"")?;
        write_file(&self.config, config_text.as_bytes())?;

        let output = self.apt_get(&["update".as_ref()])?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let failed = stdout.lines().any(|l| l.starts_with("Err:"))
            || stderr.lines().any(|l| l.starts_with("E:"));
        if !output.status.success() || failed {
            return Err(Error::Apt {
                command: format!("apt-get update (APT_CONFIG={})", self.config.display()),
                message: format!("{}\n{}", stdout.trim_end(), stderr.trim_end()),
            });
        }
        let cache = work.join("cache/srcpkgcache.bin");
        if !cache.is_file() {
            return Err(Error::Apt {
                command: "apt-get update".into(),
                message: format!(
                    "it succeeded but wrote no {}; this APT does not behave as comb expects",
                    cache.display()
                ),
            });
        }
        write_file(&stamp, stamp_text.as_bytes())
    }

    /// Resolve `names` on top of the packages that the dpkg status file
    /// `status` lists as installed (`None`: an empty system).
    ///
    /// Each name is `NAME`, `NAME:ARCH`, `NAME=VERSION` or
    /// `NAME:ARCH=VERSION`. Returns every package APT would install or
    /// upgrade, sorted by name (then architecture and version); packages
    /// already installed at a fitting version are not returned. Unknown
    /// names or versions, unsatisfiable dependencies, conflicts and plans
    /// that would remove installed packages are [`Error::Resolve`] with
    /// APT's own explanation.
    pub fn resolve(&self, names: &[String], status: Option<&Path>) -> Result<Vec<Resolved>> {
        self.resolve_with(names, status, false)
    }

    /// [`Aptbox::resolve`], where the indexed packages win over the
    /// installed ones whatever their versions: an installed package that a
    /// dependency needs at an indexed version is replaced by it, up or down.
    /// (The index's versions are pinned above 1000, as a preferences file
    /// that allows downgrades pins them.)
    pub fn resolve_preferring_index(
        &self,
        names: &[String],
        status: Option<&Path>,
    ) -> Result<Vec<Resolved>> {
        self.resolve_with(names, status, true)
    }

    /// What `apt-get satisfy` installs for `relations` (the relations of
    /// a `Depends:` field, as text) on top of `status`, as
    /// [`Aptbox::resolve`] returns it: APT's answer to what comb's own
    /// resolver answers (see [`crate::solver`]).
    pub fn satisfy(&self, relations: &[String], status: Option<&Path>) -> Result<Vec<Resolved>> {
        let field = relations.join(", ");
        // One argument, never an option: it starts with a package name.
        crate::relation_field("the relations to satisfy", "Depends", &field)?;
        if field.starts_with('-') {
            return Err(Error::Resolve {
                names: relations.to_vec(),
                resolver: "APT",
                explanation: "relations must start with a package name".into(),
            });
        }
        self.run_plan("satisfy", &[field], status, false)
    }

    fn resolve_with(
        &self,
        names: &[String],
        status: Option<&Path>,
        prefer_index: bool,
    ) -> Result<Vec<Resolved>> {
        for name in names {
            check_request(name)?;
        }
        self.run_plan("install", names, status, prefer_index)
    }

    /// `apt-get --simulate COMMAND ARGS` on top of `status`, its plan
    /// mapped back to the index's records.
    fn run_plan(
        &self,
        command: &str,
        names: &[String],
        status: Option<&Path>,
        prefer_index: bool,
    ) -> Result<Vec<Resolved>> {
        if names.iter().all(|n| n.is_empty()) {
            return Ok(Vec::new());
        }
        let run = RunDir::create(&self.work.join("runs"))?;
        // The status is kept by its digest, with APT's cache of it beside
        // the snapshot's: the next resolve on the same status maps that
        // cache instead of building it again (APT checks it is current).
        let status_text = match status {
            Some(src) => fs::read(src).map_err(|e| Error::io("reading", src, e))?,
            None => Vec::new(),
        };
        let digest = hex::encode(Sha256::digest(&status_text));
        let status_kept = self.work.join(format!("state/status-{digest}"));
        if !status_kept.is_file() {
            let tmp = run.path.join("status");
            write_file(&tmp, &status_text)?;
            fs::rename(&tmp, &status_kept).map_err(|e| Error::io("renaming", &tmp, e))?;
        }
        let mut status_opt = std::ffi::OsString::from("Dir::State::status=");
        status_opt.push(&status_kept);
        let mut cache_opt = std::ffi::OsString::from("Dir::Cache::pkgcache=");
        cache_opt.push(self.work.join(format!("cache/pkgcache-{digest}.bin")));
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "--simulate".as_ref(),
            "--no-remove".as_ref(),
            "-o".as_ref(),
            status_opt.as_os_str(),
            "-o".as_ref(),
            cache_opt.as_os_str(),
        ];
        let mut preferences_opt = std::ffi::OsString::from("Dir::Etc::preferences=");
        if prefer_index {
            let preferences = run.path.join("preferences");
            write_file(
                &preferences,
                b"Package: *\nPin: release o=comb\nPin-Priority: 1001\n",
            )?;
            preferences_opt.push(&preferences);
            args.extend([
                "--allow-downgrades".as_ref(),
                "-o".as_ref(),
                preferences_opt.as_os_str(),
            ]);
        }
        args.push(command.as_ref());
        args.extend(names.iter().map(|n| std::ffi::OsStr::new(n.as_str())));
        let output = self.apt_get(&args)?;
        drop(run);

        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() || stderr.lines().any(|l| l.starts_with("E:")) {
            return Err(resolve_error(names, &stdout, &stderr));
        }
        let mut wanted = BTreeSet::new();
        for line in stdout.lines() {
            if line.starts_with("Inst ") {
                let inst = parse_inst(line).ok_or_else(|| Error::Apt {
                    command: "apt-get --simulate install".into(),
                    message: format!(
                        "cannot read its plan line {line:?}; this APT's output is not what comb expects"
                    ),
                })?;
                wanted.insert(inst);
            }
        }
        self.records(&wanted)
    }

    /// Look up the `Packages` records of the (name, version, architecture)
    /// triples APT chose, in one pass over the concatenated index.
    fn records(&self, wanted: &BTreeSet<(String, String, String)>) -> Result<Vec<Resolved>> {
        let mut found: BTreeMap<(String, String, String), Resolved> = BTreeMap::new();
        if !wanted.is_empty() {
            let file = fs::File::open(&self.packages)
                .map_err(|e| Error::io("opening", &self.packages, e))?;
            let origin = self.packages.display().to_string();
            let mut record = Record::default();
            let mut reader = BufReader::new(file);
            let mut line = String::new();
            let mut line_no = 0;
            loop {
                line.clear();
                let n = reader
                    .read_line(&mut line)
                    .map_err(|e| Error::io("reading", &self.packages, e))?;
                line_no += 1;
                let text = line.trim_end_matches(['\n', '\r']);
                if n == 0 || text.trim().is_empty() {
                    if let Some(resolved) = record.take(wanted, &origin)? {
                        let key = (
                            resolved.name.clone(),
                            resolved.version.clone(),
                            resolved.architecture.clone(),
                        );
                        if let Some(other) = found.get(&key) {
                            if other != &resolved {
                                return Err(ambiguous(other, &resolved));
                            }
                        }
                        found.insert(key, resolved);
                    }
                    if n == 0 {
                        break;
                    }
                    continue;
                }
                record.add(text, line_no);
            }
        }
        let mut result = Vec::with_capacity(wanted.len());
        for key in wanted {
            match found.remove(key) {
                Some(r) => result.push(r),
                None => {
                    return Err(Error::Apt {
                        command: "apt-get --simulate install".into(),
                        message: format!(
                            "it chose {} {} ({}), which is in none of the indices given; \
                             the status file may name a version the indices do not hold",
                            key.0, key.1, key.2
                        ),
                    })
                }
            }
        }
        result.sort_by(|a, b| {
            (&a.name, &a.architecture, &a.version).cmp(&(&b.name, &b.architecture, &b.version))
        });
        Ok(result)
    }

    /// Run `apt-get ARGS` in this Aptbox: cleared environment, C locale,
    /// our `APT_CONFIG`, no input.
    fn apt_get(&self, args: &[&std::ffi::OsStr]) -> Result<Output> {
        let path = std::env::var_os("PATH").unwrap_or_else(|| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
        });
        Command::new("apt-get")
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("LC_ALL", "C.UTF-8")
            .env("APT_CONFIG", &self.config)
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Apt {
                command: "apt-get".into(),
                message: format!("cannot run it: {e}; install the apt package"),
            })
    }
}

/// The default install set of a snapshot: the names of packages marked
/// `Essential: yes` or `Priority: required`, sorted and without duplicates.
/// `packages` are those of one architecture's indices (which include the
/// `all` packages).
pub fn essential_and_required(packages: &[BinaryPackage]) -> Vec<String> {
    packages
        .iter()
        .filter(|p| {
            p.essential
                || p.priority
                    .as_deref()
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("required"))
        })
        .map(|p| p.name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// [`essential_and_required`] straight from the text of `Packages`
/// indices, without parsing whole records: a quick scan of the three
/// fields it needs (the bookworm index is 50 MB).
pub fn essential_and_required_in(indices: &[&str]) -> Vec<String> {
    let mut names = BTreeSet::new();
    for text in indices {
        for paragraph in comb_debian::control::paragraph_texts(text) {
            let (mut name, mut wanted) = (None, false);
            for line in paragraph.lines() {
                let Some((field, value)) = line.split_once(':') else {
                    continue;
                };
                let value = value.trim();
                if field.eq_ignore_ascii_case("Package") {
                    name = Some(value);
                } else if (field.eq_ignore_ascii_case("Essential")
                    && value.eq_ignore_ascii_case("yes"))
                    || (field.eq_ignore_ascii_case("Priority")
                        && value.eq_ignore_ascii_case("required"))
                {
                    wanted = true;
                }
            }
            if let (Some(name), true) = (name, wanted) {
                names.insert(name.to_string());
            }
        }
    }
    names.into_iter().collect()
}

/// The APT configuration: every directory APT reads or writes is inside
/// the work directory (or /dev/null).
fn config_text(w: &str, architecture: &str) -> String {
    format!(
        r#"// Written by comb: a private APT. Nothing of the host's APT is used.
Dir "{w}/";
Dir::Etc "{w}/etc/";
Dir::Etc::main "/dev/null";
Dir::Etc::parts "{w}/etc/apt.conf.d/";
Dir::Etc::sourcelist "{w}/etc/sources.list";
Dir::Etc::sourceparts "{w}/etc/sources.list.d/";
Dir::Etc::preferences "/dev/null";
Dir::Etc::preferencesparts "{w}/etc/preferences.d/";
Dir::Etc::trusted "/dev/null";
Dir::Etc::trustedparts "{w}/etc/trusted.gpg.d/";
Dir::Etc::netrc "/dev/null";
Dir::Etc::netrcparts "{w}/etc/auth.conf.d/";
Dir::State "{w}/state/";
Dir::State::lists "{w}/state/lists/";
Dir::State::status "{w}/state/status";
Dir::State::extended_states "{w}/state/extended_states";
Dir::Cache "{w}/cache/";
Dir::Cache::archives "{w}/cache/archives/";
Dir::Cache::srcpkgcache "{w}/cache/srcpkgcache.bin";
Dir::Cache::pkgcache "";
Dir::Log "{w}/log/";
APT::Architecture "{architecture}";
APT::Architectures {{ "{architecture}"; }};
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT::Get::Show-User-Simulation-Note "false";
APT::Get::Always-Include-Phased-Updates "true";
APT::Sandbox::User "root";
Debug::NoLocking "true";
Acquire::Languages "none";
Acquire::PDiffs "false";
Acquire::Retries "0";
"#
    )
}

/// The work path as APT's configuration can hold it: UTF-8, without
/// quotes or line breaks.
fn config_safe(work: &Path) -> Result<&str> {
    let bad = |why: &str| {
        Error::io(
            "using as APT work directory",
            work,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the path {why}, which APT's configuration cannot hold; choose a plain directory name"),
            ),
        )
    };
    let s = work.to_str().ok_or_else(|| bad("is not UTF-8"))?;
    if s.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return Err(bad("contains a quote, a backslash or a control character"));
    }
    Ok(s)
}

/// A path as it goes into a `file:` URI: percent-encoded except for
/// unreserved characters and `/`.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// sha256 over what decides a resolution: the format, the architecture
/// and the indices' contents (not the work directory's path).
fn content_digest(architecture: &str, digests: &[(String, u64)]) -> String {
    let mut h = Sha256::new();
    h.update(format!("{FORMAT}\n{architecture}\n").as_bytes());
    for (sha, size) in digests {
        h.update(format!("{sha} {size}\n").as_bytes());
    }
    hex::encode(h.finalize())
}

/// Concatenate `indices` into `dest` (through a temporary file), returning
/// the sha256 and size of what was written.
fn concatenate(indices: &[PathBuf], dest: &Path) -> Result<(String, u64)> {
    let tmp = dest.with_extension("tmp");
    let result = (|| {
        let out = fs::File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
        let mut out = std::io::BufWriter::new(out);
        let mut h = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        let mut put = |bytes: &[u8], out: &mut std::io::BufWriter<fs::File>| {
            h.update(bytes);
            size += bytes.len() as u64;
            out.write_all(bytes)
                .map_err(|e| Error::io("writing", &tmp, e))
        };
        for index in indices {
            let mut file = fs::File::open(index).map_err(|e| Error::io("opening", index, e))?;
            let mut last = [b'\n', b'\n'];
            let mut any = false;
            loop {
                let n = file
                    .read(&mut buf)
                    .map_err(|e| Error::io("reading", index, e))?;
                if n == 0 {
                    break;
                }
                any = true;
                put(&buf[..n], &mut out)?;
                if n >= 2 {
                    last = [buf[n - 2], buf[n - 1]];
                } else {
                    last = [last[1], buf[0]];
                }
            }
            if any {
                match last {
                    [b'\n', b'\n'] => {}
                    [_, b'\n'] => put(b"\n", &mut out)?,
                    _ => put(b"\n\n", &mut out)?,
                }
            }
        }
        let file = out
            .into_inner()
            .map_err(|e| Error::io("writing", &tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io("writing", &tmp, e))?;
        Ok((hex::encode(h.finalize()), size))
    })();
    match result {
        Ok(r) => {
            fs::rename(&tmp, dest).map_err(|e| Error::io("renaming into place", dest, e))?;
            Ok(r)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Write a file through a temporary name, so it is never half-written.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, bytes).map_err(|e| Error::io("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("renaming into place", path, e)
    })
}

fn remove_file_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", path, e)),
    }
}

/// The directory of one resolve; removed when dropped.
struct RunDir {
    path: PathBuf,
}

impl RunDir {
    fn create(parent: &Path) -> Result<RunDir> {
        fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        loop {
            let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { path }),
                // Left behind by a killed process that had the same pid.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("creating", &path, e)),
            }
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Accept `NAME[:ARCH][=VERSION]` only: no options, globs, regexes, APT
/// patterns or release selectors (`/suite`), so that APT installs exactly
/// what was named.
fn check_request(request: &str) -> Result<()> {
    let bad = |why: String| Error::Resolve {
        names: vec![request.to_string()],
        resolver: "APT",
        explanation: why,
    };
    let (spec, version) = match request.split_once('=') {
        Some((s, v)) => (s, Some(v)),
        None => (request, None),
    };
    let (name, arch) = match spec.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (spec, None),
    };
    let name_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'+' || b == b'-' || b == b'.'
        })
        && !name.ends_with('-');
    if !name_ok {
        return Err(bad(format!(
            "{name:?} is not a Debian package name (lowercase letters, digits, '+', '-' and '.', \
             starting with a letter or digit); write NAME, NAME:ARCH, NAME=VERSION or NAME:ARCH=VERSION"
        )));
    }
    if let Some(arch) = arch {
        if arch.is_empty()
            || !arch
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad(format!("{arch:?} is not an architecture name")));
        }
    }
    if let Some(version) = version {
        if version.trim() != version {
            return Err(bad(format!(
                "the version {version:?} has surrounding whitespace"
            )));
        }
        comb_debian::Version::parse(version).map_err(|e| bad(e.to_string()))?;
    }
    Ok(())
}

/// Parse `Inst NAME[:ARCH] [OLD] (NEW RELEASES [ARCH]) [BROKEN]` into
/// (name, new version, architecture).
fn parse_inst(line: &str) -> Option<(String, String, String)> {
    let rest = line.strip_prefix("Inst ")?;
    let (name, rest) = rest.split_once(' ')?;
    let mut rest = rest.trim_start();
    if rest.starts_with('[') {
        // The installed version this one upgrades.
        let close = rest.find(']')?;
        rest = rest[close + 1..].trim_start();
    }
    let inner = rest.strip_prefix('(')?;
    let end = inner.find("])")?;
    let inner = &inner[..end];
    let (version, releases) = inner.split_once(' ')?;
    let arch = &releases[releases.rfind('[')? + 1..];
    let name = match name.split_once(':') {
        Some((n, a)) if a == arch || a == "all" => n,
        Some(_) => return None,
        None => name,
    };
    if name.is_empty() || version.is_empty() || arch.is_empty() {
        return None;
    }
    Some((name.to_string(), version.to_string(), arch.to_string()))
}

/// Build the error for a failed `apt-get install`: APT's text (without
/// progress lines) and the packages it complains about.
fn resolve_error(requested: &[String], stdout: &str, stderr: &str) -> Error {
    let mut text: Vec<&str> = stdout
        .lines()
        .filter(|l| !PROGRESS_LINES.contains(&l.trim()))
        .collect();
    while text.last().is_some_and(|l| l.trim().is_empty()) {
        text.pop();
    }
    while text.first().is_some_and(|l| l.trim().is_empty()) {
        text.remove(0);
    }
    let mut explanation = text.join("\n");
    let stderr = stderr.trim();
    if !stderr.is_empty() {
        if !explanation.is_empty() {
            explanation.push('\n');
        }
        explanation.push_str(stderr);
    }
    let mut names: Vec<String> = Vec::new();
    let mut add = |n: &str| {
        let n = n.trim();
        if !n.is_empty() && !names.iter().any(|m| m == n) {
            names.push(n.to_string());
        }
    };
    for line in explanation.lines() {
        if let Some(n) = line.strip_prefix("E: Unable to locate package ") {
            add(n);
        } else if let Some(rest) = line.strip_prefix("E: Version '") {
            // E: Version 'V' for 'NAME' was not found
            if let Some((_, tail)) = rest.split_once("' for '") {
                if let Some((n, _)) = tail.split_once('\'') {
                    add(n);
                }
            }
        } else if let Some(rest) = line
            .strip_prefix("E: Package '")
            .or_else(|| line.strip_prefix("E: Couldn't find any package by glob '"))
            .or_else(|| line.strip_prefix("E: Couldn't find any package by regex '"))
        {
            if let Some((n, _)) = rest.split_once('\'') {
                add(n);
            }
        } else if line.starts_with(' ') && !line.starts_with("  ") {
            // " NAME : Depends: ..." in the unmet dependencies block.
            if let Some((n, _)) = line.split_once(" : ") {
                if !n.trim().contains(' ') {
                    add(n);
                }
            }
        }
    }
    if names.is_empty() {
        names = requested.to_vec();
    }
    if explanation.is_empty() {
        explanation = "apt-get failed without saying why".into();
    }
    Error::Resolve {
        names,
        resolver: "APT",
        explanation,
    }
}

fn ambiguous(a: &Resolved, b: &Resolved) -> Error {
    Error::Resolve {
        names: vec![a.name.clone()],
        resolver: "APT",
        explanation: format!(
            "the indices hold two different packages {} {} ({}): {} (sha256 {}) and {} (sha256 {}); \
             APT cannot tell them apart, so give the local build a version of its own",
            a.name, a.version, a.architecture, a.filename, a.sha256, b.filename, b.sha256
        ),
    }
}

/// The fields of one `Packages` paragraph that a [`Resolved`] needs.
#[derive(Default)]
struct Record {
    line: usize,
    name: Option<String>,
    version: Option<String>,
    architecture: Option<String>,
    filename: Option<(String, usize)>,
    size: Option<(String, usize)>,
    sha256: Option<(String, usize)>,
}

impl Record {
    fn add(&mut self, text: &str, line: usize) {
        if text.starts_with([' ', '\t']) || text.starts_with('#') {
            return;
        }
        if self.line == 0 {
            self.line = line;
        }
        let Some((field, value)) = text.split_once(':') else {
            return;
        };
        let value = value.trim().to_string();
        let field = field.trim();
        let is = |f: &str| field.eq_ignore_ascii_case(f);
        if is("Package") {
            self.name = Some(value);
        } else if is("Version") {
            self.version = Some(value);
        } else if is("Architecture") {
            self.architecture = Some(value);
        } else if is("Filename") {
            self.filename = Some((value, line));
        } else if is("Size") {
            self.size = Some((value, line));
        } else if is("SHA256") {
            self.sha256 = Some((value, line));
        }
    }

    /// Finish the paragraph; return it if it is one of `wanted`.
    fn take(
        &mut self,
        wanted: &BTreeSet<(String, String, String)>,
        origin: &str,
    ) -> Result<Option<Resolved>> {
        let r = std::mem::take(self);
        let (Some(name), Some(version), Some(architecture)) = (r.name, r.version, r.architecture)
        else {
            return Ok(None);
        };
        let key = (name, version, architecture);
        if !wanted.contains(&key) {
            return Ok(None);
        }
        let (name, version, architecture) = key;
        let missing = |field: &str| {
            Error::parse(
                origin,
                r.line,
                format!("package {name} {version} has no {field} field, so it cannot be fetched"),
            )
        };
        let (filename, _) = r.filename.ok_or_else(|| missing("Filename"))?;
        let (size_text, size_line) = r.size.ok_or_else(|| missing("Size"))?;
        let (sha_text, sha_line) = r.sha256.ok_or_else(|| missing("SHA256"))?;
        let size = size_text.parse().map_err(|_| {
            Error::parse(
                origin,
                size_line,
                format!("Size must be a number of bytes, found {size_text:?}"),
            )
        })?;
        let sha256 = crate::packages::sha256_hex(&sha_text, origin, sha_line)?;
        Ok(Some(Resolved {
            name,
            version,
            architecture,
            sha256,
            size,
            filename,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inst_lines() {
        assert_eq!(
            parse_inst("Inst b (2.0 comb:aptbox [all])"),
            Some(("b".into(), "2.0".into(), "all".into()))
        );
        assert_eq!(
            parse_inst("Inst libc6 [2.36-8] (2.36-9+deb12u4 Debian:12/stable, Debian-Security:12/stable-security [amd64]) []"),
            Some(("libc6".into(), "2.36-9+deb12u4".into(), "amd64".into()))
        );
        assert_eq!(
            parse_inst("Inst libfoo:amd64 (1:1.0-1 comb:aptbox [amd64])"),
            Some(("libfoo".into(), "1:1.0-1".into(), "amd64".into()))
        );
        assert_eq!(parse_inst("Inst broken"), None);
        assert_eq!(parse_inst("Inst x (1.0 nowhere)"), None);
    }

    #[test]
    fn requests() {
        for ok in [
            "a",
            "g++",
            "libc6:amd64",
            "b=1.0",
            "d:amd64=1:1.0-1",
            "x.y-z",
        ] {
            assert!(check_request(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-o",
            "Foo",
            "a*",
            "?essential",
            "a/bookworm",
            "a=",
            "a:",
            "a-",
            "a b",
            "~nfoo",
        ] {
            assert!(
                matches!(check_request(bad), Err(Error::Resolve { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn uri_paths() {
        assert_eq!(uri_path(Path::new("/tmp/a b/repo")), "/tmp/a%20b/repo");
        assert_eq!(uri_path(Path::new("/x/y_z.1~2")), "/x/y_z.1~2");
    }

    #[test]
    fn error_names() {
        let e = resolve_error(
            &["a".into(), "zzz".into()],
            "Reading package lists...\nBuilding dependency tree...\n",
            "E: Unable to locate package zzz\n",
        );
        match e {
            Error::Resolve {
                names, explanation, ..
            } => {
                assert_eq!(names, ["zzz"]);
                assert_eq!(explanation, "E: Unable to locate package zzz");
            }
            other => panic!("{other:?}"),
        }
        let e = resolve_error(
            &["x".into()],
            "The following packages have unmet dependencies:\n x : Conflicts: p but 1.0 is to be installed\n",
            "E: Unable to correct problems, you have held broken packages.\n",
        );
        match e {
            Error::Resolve { names, .. } => assert_eq!(names, ["x"]),
            other => panic!("{other:?}"),
        }
    }
}
