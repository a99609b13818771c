//! Publishing pockets: each pocket is a flat APT repository
//! (`deb [signed-by=KEY] file:DIR ./`, or over HTTP) that holds exactly
//! the `.deb`s the service put into it.
//!
//! [`write_pocket`] lays a pocket out like Debian's pool
//! (`pool/h/hello_1.0_all.deb`, `pool/libf/libfoo1_2.0_amd64.deb`),
//! copies in what is missing from the store, checks every copy against its
//! recorded sha256 before it is renamed into place, writes `Packages`,
//! `Packages.xz` and `Release` (and, when the pocket is signed, `InRelease`
//! and `Release.gpg`), then removes what the pocket no longer holds.
//!
//! What a reader can see: every file appears whole or not at all (written
//! under a temporary name, then renamed). Nothing in the pocket changes
//! until every new `.deb` is copied and checked and the indices are written
//! and signed in a staging directory; a refused copy or a failed signature
//! leaves the previous pocket as it was. The pool is complete before the
//! indices that list it are renamed in, and a `.deb` leaves the pool only
//! after the indices that listed it are gone. (As with any repository
//! without by-hash indices, a reader racing a publication may see new
//! `Packages` with the old `Release` and retry.) Publications of one
//! pocket are serialised by a lock file, `.comb-publish.lock`.
//!
//! [`check_deb`] is what promotion relies on: that the published file is
//! byte for byte the recorded output.

use comb_engine::publish::control;
use comb_engine::publish::is_package_name;
use comb_engine::publish::{compare_versions, Version};
use comb_engine::publish::{write_flat_repository, RepoEntry};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::{SystemTime, UNIX_EPOCH};

/// One .deb a pocket holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PocketDeb {
    /// The binary package's name (its control file's `Package`).
    pub name: String,
    /// Its full version, epoch included (its control file's `Version`).
    pub version: String,
    /// `amd64`, `all`, ... (its control file's `Architecture`).
    pub architecture: String,
    /// The bare file name, such as `hello_2.10-3_amd64.deb`.
    pub filename: String,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
    /// The file's size in bytes.
    pub size: u64,
}

/// The GnuPG key that signs a pocket's `Release`.
///
/// `gpg` runs as a child of the caller with `--batch`, so the key must be
/// usable without a passphrase prompt (no passphrase, or one preset in
/// `gpg-agent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// Anything `gpg --local-user` takes: a fingerprint (best), a key id
    /// or a user id. This is `sign_with` in `comb.toml`.
    pub key: String,
    /// The GnuPG home holding the secret key (`gpg --homedir`); `None`
    /// means gpg's own choice: `$GNUPGHOME`, else `~/.gnupg`.
    pub gnupghome: Option<PathBuf>,
}

impl Signer {
    /// The key `key` in gpg's default home.
    pub fn new(key: impl Into<String>) -> Signer {
        Signer {
            key: key.into(),
            gnupghome: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The record of a `.deb` cannot be published as it is: a hostile or
    /// malformed file name, name, version or hash, or a `.deb` whose
    /// control file says otherwise.
    #[error("{filename:?} cannot be published: {reason}")]
    BadRecord { filename: String, reason: String },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The caller has no file to copy a `.deb` from.
    #[error(
        "{path}: nothing to copy it from (the store holds no file with sha256:{sha256}); \
         rebuild the package or take it out of the pocket"
    )]
    NoSource { path: PathBuf, sha256: String },

    /// The file given to copy a `.deb` from does not hold its recorded
    /// bytes; nothing was published.
    #[error(
        "refusing to publish {path}: its source {from} is {found}, not the recorded {expected}; \
         the store's copy is damaged: submit the package again to rebuild it"
    )]
    WrongBytes {
        path: PathBuf,
        from: PathBuf,
        found: String,
        expected: String,
    },

    /// A published `.deb` is missing or is not its recorded bytes.
    #[error("{path} {found}; publish the pocket again to put back the recorded bytes")]
    NotAsRecorded { path: PathBuf, found: String },

    /// Writing the indices failed (or a `.deb` could not be read).
    #[error(transparent)]
    Index(#[from] comb_engine::publish::Error),

    /// A control file or index that does not read.
    #[error(transparent)]
    Control(#[from] comb_engine::publish::DebianError),

    #[error(
        "signing {path}: gpg is not installed; install gnupg \
         (or remove sign_with from the pocket in comb.toml)"
    )]
    GpgMissing { path: PathBuf },

    #[error(
        "gpg has no secret key {key:?} in GNUPGHOME {home}: \
         import it or fix sign_with in comb.toml"
    )]
    NoSecretKey { key: String, home: String },

    #[error(
        "gpg could not sign {path} with key {key:?} ({status}): {stderr}\n\
         check that the key can sign, has not expired and needs no passphrase \
         (comb runs gpg --batch)"
    )]
    Gpg {
        path: PathBuf,
        key: String,
        status: String,
        stderr: String,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PublishError + 'a {
    move |source| PublishError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The index files a pocket holds besides its pool.
const INDICES: [&str; 3] = ["Packages", "Packages.xz", "Release"];
const SIGNATURES: [&str; 2] = ["Release.gpg", "InRelease"];
const LOCK_FILE: &str = ".comb-publish.lock";
const STAGING_PREFIX: &str = ".comb-staging.";
const COPY_BUFFER: usize = 256 << 10;

/// The pool directory a package goes in: `lib` and the next letter for
/// `lib*` names, else the first letter, as Debian's archive does.
fn pool_prefix(name: &str) -> String {
    let n = if name.len() > 3 && name.starts_with("lib") {
        4
    } else {
        1
    };
    name.chars().take(n).collect()
}

fn pool_rel(deb: &PocketDeb) -> String {
    format!("pool/{}/{}", pool_prefix(&deb.name), deb.filename)
}

/// Path of a deb inside the pocket, relative to it:
/// `pool/h/hello_1.0_all.deb`, `pool/libf/libfoo1_2.0_amd64.deb`.
///
/// Only meaningful for a record that [`validate`] accepts (the name and
/// file name are joined as they are); [`write_pocket`] and [`check_deb`]
/// validate before they use it.
pub fn pool_path(deb: &PocketDeb) -> PathBuf {
    PathBuf::from(pool_rel(deb))
}

/// Checks a record before any of it is used as a path: a Debian package
/// name, a version, an architecture, a sha256, and a bare file name ending
/// in `.deb` (letters, digits and `+-._~%`, not starting with a dot, no
/// `..`).
pub fn validate(deb: &PocketDeb) -> Result<(), PublishError> {
    let bad = |reason: String| {
        Err(PublishError::BadRecord {
            filename: deb.filename.clone(),
            reason,
        })
    };
    let f = deb.filename.as_str();
    if f.len() > 255 {
        return bad("the file name is longer than 255 bytes".into());
    }
    if !f.ends_with(".deb") || f.len() == ".deb".len() {
        return bad("the file name does not end in .deb".into());
    }
    if f.starts_with('.') || f.contains("..") {
        return bad("the file name starts with a dot or holds \"..\"".into());
    }
    if let Some(c) = f
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "+-._~%".contains(c)))
    {
        return bad(format!(
            "the file name holds {c:?}; a pool file name is letters, digits and + - . _ ~ %"
        ));
    }
    if !is_package_name(&deb.name) {
        return bad(format!(
            "{:?} is not a Debian package name (two or more of a-z 0-9 + . -, \
             starting with a letter or digit)",
            deb.name
        ));
    }
    if let Err(e) = Version::parse(&deb.version) {
        return bad(format!("version {:?}: {e}", deb.version));
    }
    let arch = deb.architecture.as_str();
    if arch.is_empty()
        || arch.starts_with('-')
        || !arch
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad(format!("{arch:?} is not an architecture"));
    }
    if deb.sha256.len() != 64 || !deb.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad(format!("{:?} is not a sha256 in hex", deb.sha256));
    }
    Ok(())
}

/// Describes a file's bytes for messages: `sha256:HEX (N bytes)`.
fn describe(sha256: &str, size: u64) -> String {
    format!("sha256:{} ({size} bytes)", sha256.to_ascii_lowercase())
}

/// Checks that the pocket at `dir` holds `deb` with exactly its recorded
/// bytes: the pool file is a regular file of the recorded size and
/// sha256. The error names the file and what it holds instead.
pub fn check_deb(dir: &Path, deb: &PocketDeb) -> Result<(), PublishError> {
    validate(deb)?;
    let path = dir.join(pool_rel(deb));
    let not_as_recorded = |found: String| {
        Err(PublishError::NotAsRecorded {
            path: path.clone(),
            found,
        })
    };
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return not_as_recorded("is missing".into())
        }
        Err(e) => return Err(io_err("reading", &path)(e)),
        Ok(meta) if !meta.is_file() => {
            return not_as_recorded("is not a regular file".into());
        }
        Ok(_) => {}
    }
    let (sha256, size) = sha256_file(&path)?;
    if size != deb.size || !sha256.eq_ignore_ascii_case(&deb.sha256) {
        return not_as_recorded(format!(
            "is {}, not the recorded {}",
            describe(&sha256, size),
            describe(&deb.sha256, deb.size)
        ));
    }
    Ok(())
}

/// Writes the pocket directory `dir` (created if missing) so that it
/// holds exactly `debs`, signed by `sign_with` when given.
///
/// Each `.deb` goes to [`pool_path`]; one that is not already there with
/// its recorded bytes is copied from `source(deb)` (a file with those
/// bytes, such as the store's blob) and refused, naming the file, unless
/// the copy has the recorded size and sha256 and its control file the
/// recorded name, version and architecture. Then `Packages`,
/// `Packages.xz` and `Release` are written (dated now) and, when signed,
/// `InRelease` (`gpg --clearsign`) and `Release.gpg` (`gpg --detach-sign
/// --armor`); an unsigned pocket loses any old signatures. Last, files
/// in `pool/` that are not listed are removed. See the module
/// documentation for what a reader can see meanwhile.
pub fn write_pocket(
    dir: &Path,
    sign_with: Option<&Signer>,
    debs: &[PocketDeb],
    source: &dyn Fn(&PocketDeb) -> Option<PathBuf>,
) -> Result<(), PublishError> {
    let mut wanted: BTreeMap<String, &PocketDeb> = BTreeMap::new();
    for deb in debs {
        validate(deb)?;
        let rel = pool_rel(deb);
        if let Some(other) = wanted.get(&rel) {
            if *other != deb {
                return Err(PublishError::BadRecord {
                    filename: deb.filename.clone(),
                    reason: format!(
                        "it is listed twice, as {} {} ({}) and {} {} ({}); \
                         a pool holds one file of each name",
                        other.name,
                        other.version,
                        describe(&other.sha256, other.size),
                        deb.name,
                        deb.version,
                        describe(&deb.sha256, deb.size)
                    ),
                });
            }
            continue;
        }
        wanted.insert(rel, deb);
    }
    if let Some(signer) = sign_with {
        if signer.key.trim().is_empty() {
            return Err(PublishError::NoSecretKey {
                key: signer.key.clone(),
                home: gnupg_home(signer),
            });
        }
    }

    fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let _lock = lock(dir)?;
    remove_leftover_staging(dir)?;
    let mut scratch = Scratch::default();
    ensure_dir(&dir.join("pool"), &mut scratch)?;

    // Everything new is copied and checked under temporary names first.
    let mut entries = Vec::with_capacity(wanted.len());
    let mut renames = Vec::new();
    for (rel, deb) in &wanted {
        let dest = dir.join(rel);
        if let Some(entry) = existing_entry(&dest, rel, deb) {
            check_control(&entry, deb, &dest)?;
            entries.push(entry);
            continue;
        }
        let parent = dest.parent().unwrap_or(dir);
        ensure_dir(parent, &mut scratch)?;
        let from = source(deb).ok_or_else(|| PublishError::NoSource {
            path: dest.clone(),
            sha256: deb.sha256.to_ascii_lowercase(),
        })?;
        let tmp = parent.join(format!(".{}.comb-tmp.{}", deb.filename, unique()));
        scratch.files.push(tmp.clone());
        let (sha256, size) = copy_hashing(&from, &tmp)?;
        let wrong = |sha256: &str, size: u64| PublishError::WrongBytes {
            path: dest.clone(),
            from: from.clone(),
            found: describe(sha256, size),
            expected: describe(&deb.sha256, deb.size),
        };
        if size != deb.size || !sha256.eq_ignore_ascii_case(&deb.sha256) {
            return Err(wrong(&sha256, size));
        }
        // Read back what landed on disk: the index is made from it.
        let entry = RepoEntry::from_deb(&tmp, rel)?;
        if entry.size != deb.size || !entry.sha256.eq_ignore_ascii_case(&deb.sha256) {
            return Err(wrong(&entry.sha256, entry.size));
        }
        check_control(&entry, deb, &dest)?;
        entries.push(entry);
        renames.push((tmp, dest));
    }

    // The indices, written and signed beside the pocket.
    let staging = dir.join(format!("{STAGING_PREFIX}{}", unique()));
    scratch.dirs.push(staging.clone());
    fs::create_dir(&staging).map_err(io_err("creating", &staging))?;
    write_flat_repository(&staging, &entries, now())?;
    if let Some(signer) = sign_with {
        sign(signer, &staging)?;
    }

    // From here on the pocket changes: the pool first, then the indices
    // that list it, then the removal of what they no longer list.
    let mut touched = BTreeSet::new();
    for (tmp, dest) in &renames {
        fs::rename(tmp, dest).map_err(io_err("renaming into place", dest))?;
        touched.insert(dest.parent().unwrap_or(dir).to_path_buf());
    }
    for d in &touched {
        sync_dir(d)?;
    }
    // The pool directories made are part of the pocket now.
    scratch.new_dirs.clear();
    if sign_with.is_none() {
        // Gone before the new Release, so APT never prefers an old
        // InRelease over it.
        for name in SIGNATURES.iter().rev() {
            remove_if_present(&dir.join(name))?;
        }
    }
    let signatures: &[&str] = if sign_with.is_some() {
        &SIGNATURES
    } else {
        &[]
    };
    for name in INDICES.iter().chain(signatures) {
        let dest = dir.join(name);
        fs::rename(staging.join(name), &dest).map_err(io_err("renaming into place", &dest))?;
    }
    sync_dir(dir)?;
    remove_stale(dir, &wanted)
}

/// The entry of the pool file `dest` when it already holds `deb`'s bytes.
fn existing_entry(dest: &Path, rel: &str, deb: &PocketDeb) -> Option<RepoEntry> {
    let meta = fs::symlink_metadata(dest).ok()?;
    if !meta.is_file() || meta.len() != deb.size {
        return None;
    }
    // An unreadable or corrupt file is simply replaced.
    let entry = RepoEntry::from_deb(dest, rel).ok()?;
    (entry.size == deb.size && entry.sha256.eq_ignore_ascii_case(&deb.sha256)).then_some(entry)
}

/// Refuses a `.deb` whose control file disagrees with its record: the
/// index would list it under names the service does not know.
fn check_control(entry: &RepoEntry, deb: &PocketDeb, path: &Path) -> Result<(), PublishError> {
    let origin = format!("{} (control)", path.display());
    let paragraphs = control::parse(&entry.control, &origin)?;
    let bad = |reason: String| {
        Err(PublishError::BadRecord {
            filename: deb.filename.clone(),
            reason,
        })
    };
    let [p] = paragraphs.as_slice() else {
        return bad(format!(
            "its control file holds {} paragraphs, not one",
            paragraphs.len()
        ));
    };
    let name = p.get("Package").unwrap_or("");
    let version = p.get("Version").unwrap_or("");
    let arch = p.get("Architecture").unwrap_or("");
    let same_version = compare_versions(version, &deb.version).ok() == Some(Ordering::Equal);
    if name != deb.name || !same_version || arch != deb.architecture {
        return bad(format!(
            "its control file says {name} {version} ({arch}), its record {} {} ({}); \
             the record does not describe this file",
            deb.name, deb.version, deb.architecture
        ));
    }
    Ok(())
}

/// Removes from `pool/` everything `wanted` does not list: old versions,
/// leftovers of a killed publication, anything else put there.
fn remove_stale(dir: &Path, wanted: &BTreeMap<String, &PocketDeb>) -> Result<(), PublishError> {
    let pool = dir.join("pool");
    let prefixes: BTreeSet<String> = wanted.values().map(|d| pool_prefix(&d.name)).collect();
    for entry in read_dir(&pool)? {
        let path = entry.path();
        let prefix = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry
            .file_type()
            .map_err(io_err("reading", &path))?
            .is_dir();
        if !is_dir {
            remove_any(&path, false)?;
            continue;
        }
        let mut removed = false;
        for inner in read_dir(&path)? {
            let inner_path = inner.path();
            let kind = inner.file_type().map_err(io_err("reading", &inner_path))?;
            let rel = format!("pool/{prefix}/{}", inner.file_name().to_string_lossy());
            if !kind.is_file() || !wanted.contains_key(&rel) {
                remove_any(&inner_path, kind.is_dir())?;
                removed = true;
            }
        }
        if !prefixes.contains(&prefix) {
            fs::remove_dir(&path).map_err(io_err("removing", &path))?;
        } else if removed {
            sync_dir(&path)?;
        }
    }
    sync_dir(&pool)
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, PublishError> {
    fs::read_dir(dir)
        .and_then(|it| it.collect::<io::Result<Vec<_>>>())
        .map_err(io_err("listing", dir))
}

fn remove_any(path: &Path, is_dir: bool) -> Result<(), PublishError> {
    let result = if is_dir {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    result.map_err(io_err("removing", path))
}

fn remove_if_present(path: &Path) -> Result<(), PublishError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", path)(e)),
        _ => Ok(()),
    }
}

/// Staging directories a killed publication left behind (the lock is
/// held, so no live one is among them).
fn remove_leftover_staging(dir: &Path) -> Result<(), PublishError> {
    for entry in read_dir(dir)? {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            remove_any(&path, is_dir)?;
        }
    }
    Ok(())
}

/// `path` as a real directory (mode 0755), created if missing (and then
/// listed in `scratch`, to go if the publication fails); a symlink or file
/// there is refused rather than followed.
fn ensure_dir(path: &Path, scratch: &mut Scratch) -> Result<(), PublishError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(PublishError::Io {
            action: "using as a pool directory",
            path: path.to_path_buf(),
            source: io::Error::other("it is not a directory; remove it and publish again"),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut builder = fs::DirBuilder::new();
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o755);
            builder.create(path).map_err(io_err("creating", path))?;
            scratch.new_dirs.push(path.to_path_buf());
            Ok(())
        }
        Err(e) => Err(io_err("reading", path)(e)),
    }
}

/// Temporary files and directories of one publication, removed when it
/// ends (those renamed into place are no longer there to remove), and the
/// pool directories it created, removed if they are still empty.
#[derive(Default)]
struct Scratch {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    new_dirs: Vec<PathBuf>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = fs::remove_file(f);
        }
        for d in &self.dirs {
            let _ = fs::remove_dir_all(d);
        }
        for d in self.new_dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A suffix no other temporary name of this process or another has.
fn unique() -> String {
    let n = COUNTER.fetch_add(1, AtomicOrdering::Relaxed);
    format!("{}.{n}", std::process::id())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Holds the pocket's lock file until dropped.
fn lock(dir: &Path) -> Result<Flock<File>, PublishError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .open(&path)
        .map_err(io_err("creating", &path))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => return Ok(lock),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, errno)) => return Err(io_err("locking", &path)(errno.into())),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), PublishError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err("syncing", dir))
}

/// Lowercase hex sha256 and size of the file at `path`.
fn sha256_file(path: &Path) -> Result<(String, u64), PublishError> {
    let mut file = File::open(path).map_err(io_err("opening", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; COPY_BUFFER];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("reading", path)(e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Copies `from` to the new file `to` (mode 0644, synced), returning the
/// sha256 and size of what was copied.
fn copy_hashing(from: &Path, to: &Path) -> Result<(String, u64), PublishError> {
    let mut input = File::open(from).map_err(io_err("opening", from))?;
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(to)
        .map_err(io_err("creating", to))?;
    // Published files are for everyone to read, whatever the umask.
    output
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(io_err("setting the mode of", to))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; COPY_BUFFER];
    let mut size = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("reading", from)(e)),
        };
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n]).map_err(io_err("writing", to))?;
        size += n as u64;
    }
    output.sync_all().map_err(io_err("writing", to))?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// Where gpg looks for `signer`'s key, for messages.
fn gnupg_home(signer: &Signer) -> String {
    match &signer.gnupghome {
        Some(home) => home.display().to_string(),
        None => match std::env::var_os("GNUPGHOME") {
            Some(home) => PathBuf::from(home).display().to_string(),
            None => "~/.gnupg (the default)".to_string(),
        },
    }
}

fn gpg(signer: &Signer) -> Command {
    let mut cmd = Command::new("gpg");
    if let Some(home) = &signer.gnupghome {
        cmd.arg("--homedir").arg(home);
    }
    cmd.args(["--batch", "--no-tty"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `cmd`, mapping a missing gpg to [`PublishError::GpgMissing`].
fn run_gpg(mut cmd: Command, path: &Path) -> Result<std::process::Output, PublishError> {
    cmd.output().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            PublishError::GpgMissing {
                path: path.to_path_buf(),
            }
        } else {
            io_err("running gpg to sign", path)(e)
        }
    })
}

/// Writes `InRelease` and `Release.gpg` for `staging/Release`.
fn sign(signer: &Signer, staging: &Path) -> Result<(), PublishError> {
    let release = staging.join("Release");
    // First ask for the key, so that a wrong sign_with gets a clear error
    // rather than gpg's "skipped: No secret key".
    let mut list = gpg(signer);
    list.args(["--list-secret-keys", "--with-colons", "--"])
        .arg(&signer.key);
    let out = run_gpg(list, &release)?;
    let listed = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !listed.lines().any(|l| l.starts_with("sec:")) {
        return Err(PublishError::NoSecretKey {
            key: signer.key.clone(),
            home: gnupg_home(signer),
        });
    }
    for (name, mode) in [
        ("InRelease", &["--clearsign"][..]),
        ("Release.gpg", &["--armor", "--detach-sign"][..]),
    ] {
        let output = staging.join(name);
        let mut cmd = gpg(signer);
        // APT refuses SHA-1 signatures; do not leave the digest to the
        // key's preferences.
        cmd.args(["--yes", "--digest-algo", "SHA512", "--local-user"])
            .arg(&signer.key)
            .args(mode)
            .arg("--output")
            .arg(&output)
            .arg(&release);
        let out = run_gpg(cmd, &release)?;
        let written = fs::metadata(&output).is_ok_and(|m| m.len() > 0);
        if !out.status.success() || !written {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(PublishError::Gpg {
                path: output,
                key: signer.key.clone(),
                status: out.status.to_string(),
                stderr: tail.join("\n"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use comb_engine::publish::{write_deb, BinarySpec};

    /// Writes a real `.deb` of `name` `version` into `out` and returns
    /// its record and path.
    fn make_deb(out: &Path, name: &str, version: &str) -> (PocketDeb, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("usr/share/doc")).unwrap();
        fs::write(
            root.path().join("usr/share/doc").join(name),
            format!("{name} {version}\n"),
        )
        .unwrap();
        let spec = BinarySpec {
            package: name.into(),
            version: version.into(),
            architecture: "all".into(),
            maintainer: "comb tests <comb@test.invalid>".into(),
            summary: format!("{name} for tests"),
            ..Default::default()
        };
        let files = comb_engine::publish::list_tree(root.path()).unwrap();
        let written = write_deb(&spec, root.path(), &files, 1_700_000_000, out).unwrap();
        let deb = PocketDeb {
            name: name.into(),
            version: version.into(),
            architecture: "all".into(),
            filename: written.filename.clone(),
            sha256: written.sha256.clone(),
            size: written.size,
        };
        (deb, written.path)
    }

    struct Fixture {
        _tmp: tempfile::TempDir,
        pocket: PathBuf,
        debs: Vec<PocketDeb>,
        sources: BTreeMap<String, PathBuf>,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store");
        fs::create_dir(&store).unwrap();
        let mut debs = Vec::new();
        let mut sources = BTreeMap::new();
        for (name, version) in [("hello", "1.0-1"), ("libfoo1", "2:3.0"), ("zed", "0.1")] {
            let (deb, path) = make_deb(&store, name, version);
            sources.insert(deb.sha256.clone(), path);
            debs.push(deb);
        }
        Fixture {
            pocket: tmp.path().join("dev"),
            _tmp: tmp,
            debs,
            sources,
        }
    }

    impl Fixture {
        fn publish(&self, debs: &[PocketDeb]) -> Result<(), PublishError> {
            write_pocket(&self.pocket, None, debs, &|d: &PocketDeb| {
                self.sources.get(&d.sha256).cloned()
            })
        }

        fn packages(&self) -> String {
            fs::read_to_string(self.pocket.join("Packages")).unwrap()
        }

        /// Every path under the pocket, relative to it.
        fn tree(&self) -> Vec<String> {
            let mut out = Vec::new();
            let mut stack = vec![self.pocket.clone()];
            while let Some(d) = stack.pop() {
                for e in fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    out.push(
                        p.strip_prefix(&self.pocket)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                    if p.is_dir() {
                        stack.push(p);
                    }
                }
            }
            out.sort();
            out
        }
    }

    /// The (Filename, SHA256, Size) of each paragraph of a Packages index.
    fn listed(packages: &str) -> Vec<(String, String, u64)> {
        control::parse(packages, "Packages")
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p.get("Filename").unwrap().to_string(),
                    p.get("SHA256").unwrap().to_string(),
                    p.get("Size").unwrap().parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn pool_paths_follow_debian() {
        let f = fixture();
        let paths: Vec<PathBuf> = f.debs.iter().map(pool_path).collect();
        assert_eq!(
            paths,
            [
                PathBuf::from("pool/h/hello_1.0-1_all.deb"),
                PathBuf::from("pool/libf/libfoo1_3.0_all.deb"),
                PathBuf::from("pool/z/zed_0.1_all.deb"),
            ]
        );
    }

    #[test]
    fn publishes_lists_and_removes() {
        let f = fixture();
        f.publish(&f.debs).unwrap();
        let mut want: Vec<(String, String, u64)> = f
            .debs
            .iter()
            .map(|d| {
                (
                    format!("./{}", pool_path(d).display()),
                    d.sha256.clone(),
                    d.size,
                )
            })
            .collect();
        want.sort();
        assert_eq!(listed(&f.packages()), want);
        for d in &f.debs {
            check_deb(&f.pocket, d).unwrap();
            assert_eq!(
                fs::read(f.pocket.join(pool_path(d))).unwrap(),
                fs::read(&f.sources[&d.sha256]).unwrap()
            );
        }
        let release = fs::read_to_string(f.pocket.join("Release")).unwrap();
        assert!(release.contains(" Packages.xz\n"), "{release}");
        assert!(!f.pocket.join("InRelease").exists());

        // Publishing again without libfoo1 drops its file, its directory
        // and its paragraph, and touches nothing else.
        let hello = f.pocket.join(pool_path(&f.debs[0]));
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let hello_inode = inode(&hello);
        let kept = [f.debs[0].clone(), f.debs[2].clone()];
        f.publish(&kept).unwrap();
        assert!(!f.pocket.join(pool_path(&f.debs[1])).exists());
        assert!(!f.pocket.join("pool/libf").exists());
        assert_eq!(
            inode(&hello),
            hello_inode,
            "an unchanged .deb is not copied again"
        );
        let listed_now = listed(&f.packages());
        assert_eq!(listed_now.len(), 2);
        assert!(!f.packages().contains("libfoo1"));
        assert_eq!(
            f.tree(),
            [
                ".comb-publish.lock",
                "Packages",
                "Packages.xz",
                "Release",
                "pool",
                "pool/h",
                "pool/h/hello_1.0-1_all.deb",
                "pool/z",
                "pool/z/zed_0.1_all.deb",
            ]
        );

        // An empty pocket is a valid, empty repository.
        f.publish(&[]).unwrap();
        assert_eq!(f.packages(), "");
        assert!(!f.pocket.join("pool/h").exists());
    }

    #[test]
    fn wrong_source_bytes_are_refused_and_the_pocket_is_kept() {
        let f = fixture();
        f.publish(&f.debs[..2]).unwrap();
        let before_packages = f.packages();
        let before_release = fs::read(f.pocket.join("Release")).unwrap();
        let before_tree = f.tree();

        // zed's store copy is damaged.
        let zed = &f.debs[2];
        let mut bytes = fs::read(&f.sources[&zed.sha256]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&f.sources[&zed.sha256], &bytes).unwrap();
        let err = f.publish(&f.debs).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PublishError::WrongBytes { .. }), "{msg}");
        assert!(msg.contains("zed_0.1_all.deb"), "{msg}");
        assert!(msg.contains(&zed.sha256), "{msg}");
        assert_eq!(f.packages(), before_packages);
        assert_eq!(fs::read(f.pocket.join("Release")).unwrap(), before_release);
        assert_eq!(f.tree(), before_tree, "no temporary file is left behind");

        // A missing source is refused the same way.
        let err = write_pocket(&f.pocket, None, &f.debs, &|_| None).unwrap_err();
        assert!(matches!(err, PublishError::NoSource { .. }), "{err}");
        assert_eq!(f.tree(), before_tree);
    }

    #[test]
    fn a_record_that_does_not_match_the_deb_is_refused() {
        let f = fixture();
        let mut liar = f.debs[0].clone();
        liar.version = "9.9".into();
        let err = write_pocket(&f.pocket, None, &[liar], &|_| {
            Some(f.sources[&f.debs[0].sha256].clone())
        })
        .unwrap_err();
        assert!(err.to_string().contains("control file says"), "{err}");
        assert!(!f.pocket.join("Packages").exists());
        assert!(!f.pocket.join(pool_path(&f.debs[0])).exists());

        let mut twice = f.debs[0].clone();
        twice.sha256 = f.debs[1].sha256.clone();
        let err = f.publish(&[f.debs[0].clone(), twice]).unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
    }

    #[test]
    fn check_deb_catches_tampering_and_publishing_repairs_it() {
        let f = fixture();
        f.publish(&f.debs).unwrap();
        let hello = &f.debs[0];
        let path = f.pocket.join(pool_path(hello));
        let mut bytes = fs::read(&path).unwrap();
        bytes[100] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let err = check_deb(&f.pocket, hello).unwrap_err().to_string();
        assert!(
            err.contains("pool/h/hello_1.0-1_all.deb is sha256:"),
            "{err}"
        );
        assert!(
            err.contains(&format!("not the recorded sha256:{}", hello.sha256)),
            "{err}"
        );

        // Republishing puts the recorded bytes back.
        f.publish(&f.debs).unwrap();
        check_deb(&f.pocket, hello).unwrap();

        fs::write(&path, b"short").unwrap();
        let err = check_deb(&f.pocket, hello).unwrap_err().to_string();
        assert!(err.contains("(5 bytes)"), "{err}");
        fs::remove_file(&path).unwrap();
        let err = check_deb(&f.pocket, hello).unwrap_err().to_string();
        assert!(err.contains("hello_1.0-1_all.deb is missing"), "{err}");
        std::os::unix::fs::symlink(&f.sources[&hello.sha256], &path).unwrap();
        let err = check_deb(&f.pocket, hello).unwrap_err().to_string();
        assert!(err.contains("is not a regular file"), "{err}");
    }

    #[test]
    fn hostile_records_are_refused() {
        let f = fixture();
        let good = &f.debs[0];
        let hostile_names = [
            "../hello_1.0-1_all.deb",
            "a/hello.deb",
            "/etc/hello.deb",
            "hello_1.0-1_all.txt",
            ".deb",
            ".hidden.deb",
            "..deb",
            "a..b.deb",
            "hello 1.deb",
            "hello\n.deb",
            "",
        ];
        for name in hostile_names {
            let deb = PocketDeb {
                filename: name.into(),
                ..good.clone()
            };
            let err = f.publish(std::slice::from_ref(&deb)).unwrap_err();
            assert!(
                matches!(err, PublishError::BadRecord { .. }),
                "{name:?}: {err}"
            );
            assert!(check_deb(&f.pocket, &deb).is_err());
        }
        for (field, value) in [
            ("name", "../x"),
            ("name", "Hello"),
            ("version", "a b"),
            ("architecture", "../amd64"),
            ("sha256", "abc"),
        ] {
            let mut deb = good.clone();
            match field {
                "name" => deb.name = value.into(),
                "version" => deb.version = value.into(),
                "architecture" => deb.architecture = value.into(),
                _ => deb.sha256 = value.into(),
            }
            let err = f.publish(&[deb]).unwrap_err();
            assert!(
                matches!(err, PublishError::BadRecord { .. }),
                "{field}: {err}"
            );
        }
        assert!(
            !f.pocket.exists(),
            "nothing is written for a hostile record"
        );
    }

    #[test]
    fn unsigned_publication_drops_old_signatures_and_leftovers() {
        let f = fixture();
        fs::create_dir_all(f.pocket.join("pool/q")).unwrap();
        fs::write(f.pocket.join("pool/q/.x.comb-tmp.1.2"), b"left").unwrap();
        fs::write(f.pocket.join("pool/stray"), b"stray").unwrap();
        fs::create_dir(f.pocket.join(".comb-staging.1.2")).unwrap();
        fs::write(f.pocket.join("InRelease"), b"old").unwrap();
        fs::write(f.pocket.join("Release.gpg"), b"old").unwrap();
        fs::write(f.pocket.join("README"), b"kept").unwrap();
        f.publish(&f.debs[..1]).unwrap();
        assert_eq!(
            f.tree(),
            [
                ".comb-publish.lock",
                "Packages",
                "Packages.xz",
                "README",
                "Release",
                "pool",
                "pool/h",
                "pool/h/hello_1.0-1_all.deb",
            ]
        );
    }

    #[test]
    fn a_missing_key_is_named_and_changes_nothing() {
        let f = fixture();
        f.publish(&f.debs).unwrap();
        let before = f.packages();
        let signer = Signer {
            key: "   ".into(),
            gnupghome: Some(f.pocket.join("nowhere")),
        };
        let err = write_pocket(&f.pocket, Some(&signer), &f.debs[..1], &|_| None).unwrap_err();
        assert!(
            err.to_string().contains("import it or fix sign_with"),
            "{err}"
        );
        assert_eq!(f.packages(), before);
    }
}
