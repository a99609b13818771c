//! Signed index snapshots: a suite's `InRelease` (signature checked with
//! the mirror's keyring) and the `Packages` (and optionally `Sources`)
//! indices it lists, each verified against the signed SHA256 list and
//! decompressed.
//!
//! A snapshot directory mirrors the layout under `dists/<suite>/`:
//!
//! ```text
//! DIR/InRelease
//! DIR/main/binary-amd64/Packages.xz   (as fetched, verified)
//! DIR/main/binary-amd64/Packages      (decompressed, verified)
//! DIR/main/source/Sources.xz, DIR/main/source/Sources
//! ```
//!
//! [`SnapshotLock`] records the digests of all of it so that a later run can
//! re-verify the stored files without the network ([`SnapshotLock::verify`]).

use crate::error::{Error, Result};
use crate::fetch::{hash_file, Fetcher};
use crate::packages::{parse_packages, parse_sources, BinaryPackage, SourcePackage};
use crate::release::{self, verify_clearsigned, IndexEntry, Release};
use crate::sources::MirrorConfig;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Which kind of index a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum IndexKind {
    Packages,
    Sources,
}

/// One verified, decompressed index file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    pub component: String,
    pub kind: IndexKind,
    /// Path of the decompressed index relative to `dists/<suite>/` and to
    /// the snapshot directory, e.g. `main/binary-amd64/Packages`.
    pub path: String,
    /// The file that was downloaded, as the signed Release lists it (it may
    /// be the same as `path` when the mirror serves it uncompressed).
    pub fetched: IndexEntry,
    /// The decompressed file on disk.
    pub local: PathBuf,
    /// sha256 and size of the decompressed file.
    pub sha256: String,
    pub size: u64,
}

/// A verified snapshot of one suite.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub mirror: MirrorConfig,
    /// Parsed from the signed part of `InRelease` only.
    pub release: Release,
    /// The stored `InRelease`.
    pub inrelease: PathBuf,
    pub inrelease_sha256: String,
    /// Fingerprints of the keys whose signatures verified.
    pub signers: Vec<String>,
    pub packages: Vec<IndexFile>,
    pub sources: Vec<IndexFile>,
}

/// What to fetch besides `InRelease` and the `Packages` indices.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// Also fetch `<component>/source/Sources`.
    pub sources: bool,
    /// Refuse a Release whose Valid-Until has passed (on by default; off
    /// only for deliberately old snapshots).
    pub check_valid_until: bool,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            sources: false,
            check_valid_until: true,
        }
    }
}

/// Fetch and verify a snapshot of `mirror` into `dir` with the default
/// downloader. Files already in `dir` with the digests the new Release
/// gives are reused, not downloaded again.
pub fn fetch_snapshot(mirror: &MirrorConfig, dir: &Path, with_sources: bool) -> Result<Snapshot> {
    let options = SnapshotOptions {
        sources: with_sources,
        ..SnapshotOptions::default()
    };
    fetch_snapshot_with(&Fetcher::default(), mirror, dir, &options)
}

/// [`fetch_snapshot`] with a chosen [`Fetcher`] and options.
pub fn fetch_snapshot_with(
    fetcher: &Fetcher,
    mirror: &MirrorConfig,
    dir: &Path,
    options: &SnapshotOptions,
) -> Result<Snapshot> {
    for (what, value) in [
        ("suite", &mirror.suite),
        ("architecture", &mirror.architecture),
    ]
    .into_iter()
    .chain(mirror.components.iter().map(|c| ("component", c)))
    {
        if !is_safe_relative(value) {
            return Err(Error::NoSource(format!(
                "the {what} {value:?} of mirror {} is not a plain name",
                mirror.uri
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;

    // InRelease goes to a side name until its signature has been checked, so
    // a bad one never replaces a good one.
    let url = mirror.dists_url("InRelease");
    let fresh = dir.join("InRelease.new");
    fetcher.fetch_to(&url, &fresh, None)?;
    let verified = verify_clearsigned(&fresh, &mirror.keyring, &url)
        .and_then(|v| Ok((Release::parse(&v.text, &url)?, v)))
        .and_then(|(release, v)| {
            check_release(&release, mirror, &url)?;
            if options.check_valid_until {
                release.check_valid_until(release::now(), &url)?;
            }
            Ok((release, v))
        });
    let (release, verified) = match verified {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&fresh);
            return Err(e);
        }
    };
    let inrelease = dir.join("InRelease");
    std::fs::rename(&fresh, &inrelease).map_err(|e| Error::io("renaming into", &inrelease, e))?;
    let (inrelease_sha256, _) = hash_file(&inrelease)?;

    let mut packages = Vec::new();
    let mut sources = Vec::new();
    for component in &mirror.components {
        let base = format!("{component}/binary-{}/Packages", mirror.architecture);
        packages.push(fetch_index(
            fetcher,
            mirror,
            &release,
            dir,
            component,
            IndexKind::Packages,
            &base,
        )?);
        let base = format!("{component}/source/Sources");
        // A binary-only repository lists no Sources: it is skipped, and a
        // recipe that needs a source package is told so later.
        let has_sources = ["", ".xz", ".gz"]
            .iter()
            .any(|ext| release.entry(&format!("{base}{ext}")).is_some());
        if options.sources && has_sources {
            sources.push(fetch_index(
                fetcher,
                mirror,
                &release,
                dir,
                component,
                IndexKind::Sources,
                &base,
            )?);
        }
    }
    Ok(Snapshot {
        mirror: mirror.clone(),
        release,
        inrelease,
        inrelease_sha256,
        signers: verified.signers,
        packages,
        sources,
    })
}

/// The signed Release must be the suite asked for (not another suite's
/// validly signed file) and hold the components asked for.
fn check_release(release: &Release, mirror: &MirrorConfig, url: &str) -> Result<()> {
    if !release.is_for(&mirror.suite) {
        return Err(Error::BadClearsign {
            file: url.to_string(),
            reason: format!(
                "it is signed for suite {:?} / codename {:?}, not {:?}",
                release.suite.as_deref().unwrap_or("-"),
                release.codename.as_deref().unwrap_or("-"),
                mirror.suite
            ),
        });
    }
    if !release.components.is_empty() {
        if let Some(c) = mirror
            .components
            .iter()
            .find(|c| !release.components.contains(c))
        {
            return Err(Error::NotInRelease {
                release: url.to_string(),
                wanted: format!("component {c:?} (it has {})", release.components.join(" ")),
            });
        }
    }
    Ok(())
}

fn is_safe_relative(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('/')
        && s.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

const COMPRESSIONS: [&str; 3] = [".xz", ".gz", ""];

fn fetch_index(
    fetcher: &Fetcher,
    mirror: &MirrorConfig,
    release: &Release,
    dir: &Path,
    component: &str,
    kind: IndexKind,
    base: &str,
) -> Result<IndexFile> {
    let local = dir.join(base);
    let plain = release.entry(base);
    let candidates: Vec<&IndexEntry> = COMPRESSIONS
        .iter()
        .filter_map(|ext| release.entry(&format!("{base}{ext}")))
        .collect();
    if candidates.is_empty() {
        return Err(Error::NotInRelease {
            release: mirror.dists_url("InRelease"),
            wanted: format!("{base}.xz, {base}.gz or {base}"),
        });
    }
    // Already here from an earlier run, and the signed list vouches for it.
    if let Some(p) = plain {
        if std::fs::metadata(&local).is_ok_and(|m| m.len() == p.size)
            && hash_file(&local)?.0 == p.sha256
        {
            return Ok(IndexFile {
                component: component.to_string(),
                kind,
                path: base.to_string(),
                fetched: candidates[0].clone(),
                local,
                sha256: p.sha256.clone(),
                size: p.size,
            });
        }
    }
    let mut last_missing = None;
    for entry in candidates {
        let fetched_local = dir.join(&entry.path);
        match fetch_entry(fetcher, mirror, release, entry, &fetched_local) {
            Ok(()) => {}
            Err(e @ Error::NotFound { .. }) => {
                last_missing = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        }
        let url = mirror.dists_url(&entry.path);
        let (sha256, size) = if entry.path == base {
            (entry.sha256.clone(), entry.size)
        } else {
            decompress(&fetched_local, &local, &url, plain)?
        };
        return Ok(IndexFile {
            component: component.to_string(),
            kind,
            path: base.to_string(),
            fetched: entry.clone(),
            local,
            sha256,
            size,
        });
    }
    Err(last_missing.unwrap_or_else(|| Error::NotInRelease {
        release: mirror.dists_url("InRelease"),
        wanted: base.to_string(),
    }))
}

/// Download one listed file, by hash first when the Release offers it (the
/// by-hash name cannot change under us while the mirror updates).
fn fetch_entry(
    fetcher: &Fetcher,
    mirror: &MirrorConfig,
    release: &Release,
    entry: &IndexEntry,
    dest: &Path,
) -> Result<()> {
    let expected = Some((entry.sha256.as_str(), entry.size));
    if release.acquire_by_hash {
        let dir = entry.path.rsplit_once('/').map_or("", |(d, _)| d);
        let by_hash = if dir.is_empty() {
            format!("by-hash/SHA256/{}", entry.sha256)
        } else {
            format!("{dir}/by-hash/SHA256/{}", entry.sha256)
        };
        match fetcher.fetch_to(&mirror.dists_url(&by_hash), dest, expected) {
            Ok(_) => return Ok(()),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    fetcher
        .fetch_to(&mirror.dists_url(&entry.path), dest, expected)
        .map(|_| ())
}

/// Decompress `src` (already verified) to `dest` through a temporary file,
/// checking the result against the Release's entry for the uncompressed
/// file when it has one.
fn decompress(
    src: &Path,
    dest: &Path,
    url: &str,
    plain: Option<&IndexEntry>,
) -> Result<(String, u64)> {
    let file = std::fs::File::open(src).map_err(|e| Error::io("reading", src, e))?;
    let name = src.display().to_string();
    let mut reader: Box<dyn Read> = if name.ends_with(".xz") {
        Box::new(xz2::read::XzDecoder::new(std::io::BufReader::new(file)))
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(file)
    };
    // Signed and verified, but still bounded: 4 GiB unless the Release says.
    let limit = plain.map_or(4 << 30, |p| p.size);
    let tmp = crate::fetch::temp_path(dest);
    let result = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io("creating", &tmp, e))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf).map_err(|source| Error::Decompress {
                file: name.clone(),
                source,
            })?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > limit {
                return Err(Error::TooLarge {
                    url: format!("{url} (decompressed)"),
                    limit,
                });
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| Error::io("writing", &tmp, e))?;
        }
        let sha256 = hex::encode(hasher.finalize());
        if let Some(p) = plain {
            if p.sha256 != sha256 || p.size != size {
                return Err(Error::HashMismatch {
                    url: format!("{url} (decompressed)"),
                    expected_sha256: p.sha256.clone(),
                    expected_size: p.size,
                    actual_sha256: sha256,
                    actual_size: size,
                });
            }
        }
        out.sync_all().map_err(|e| Error::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, dest).map_err(|e| Error::io("renaming into", dest, e))?;
        Ok((sha256, size))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn read_text(path: &Path) -> Result<String> {
    let data = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    String::from_utf8(data).map_err(|e| {
        Error::parse(
            &path.display().to_string(),
            0,
            format!("not UTF-8 text (at byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

impl Snapshot {
    /// Parse every `Packages` index of the snapshot, component by component.
    pub fn read_packages(&self) -> Result<Vec<BinaryPackage>> {
        let mut all = Vec::new();
        for f in &self.packages {
            all.extend(parse_packages(
                &read_text(&f.local)?,
                &f.local.display().to_string(),
            )?);
        }
        Ok(all)
    }

    /// Parse every `Sources` index of the snapshot.
    pub fn read_sources(&self) -> Result<Vec<SourcePackage>> {
        let mut all = Vec::new();
        for f in &self.sources {
            all.extend(parse_sources(
                &read_text(&f.local)?,
                &f.local.display().to_string(),
            )?);
        }
        Ok(all)
    }

    /// The lock that pins this snapshot.
    pub fn lock(&self) -> Result<SnapshotLock> {
        let (keyring_sha256, _) = hash_file(&self.mirror.keyring)?;
        Ok(SnapshotLock {
            uri: self.mirror.uri.clone(),
            suite: self.mirror.suite.clone(),
            components: self.mirror.components.clone(),
            architecture: self.mirror.architecture.clone(),
            keyring: self.mirror.keyring.clone(),
            keyring_sha256,
            date: self.release.date.clone(),
            inrelease_sha256: self.inrelease_sha256.clone(),
            files: self
                .packages
                .iter()
                .chain(&self.sources)
                .map(|f| LockedFile {
                    component: f.component.clone(),
                    kind: f.kind,
                    path: f.path.clone(),
                    sha256: f.sha256.clone(),
                    size: f.size,
                    fetched: f.fetched.clone(),
                })
                .collect(),
        })
    }
}

/// Pins a snapshot: what was asked for and the digest of every file, so a
/// later run can re-verify the stored files without the network. Serialise
/// it with any serde format (TOML, JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotLock {
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
    pub architecture: String,
    pub keyring: PathBuf,
    /// The keyring's sha256 when the snapshot was taken.
    pub keyring_sha256: String,
    /// The Release's Date.
    pub date: String,
    pub inrelease_sha256: String,
    pub files: Vec<LockedFile>,
}

/// One index file of a [`SnapshotLock`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockedFile {
    pub component: String,
    pub kind: IndexKind,
    /// Decompressed file, relative to the snapshot directory.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// The file that was downloaded, as the signed Release lists it.
    pub fetched: IndexEntry,
}

impl SnapshotLock {
    /// The mirror this lock was taken from.
    pub fn mirror(&self) -> MirrorConfig {
        MirrorConfig {
            uri: self.uri.clone(),
            suite: self.suite.clone(),
            components: self.components.clone(),
            architecture: self.architecture.clone(),
            keyring: self.keyring.clone(),
        }
    }

    /// Re-verify the snapshot stored in `dir` against this lock, offline:
    /// the InRelease digest and signature, and that every decompressed
    /// index has the locked digest and came from a file the signed Release
    /// lists. Valid-Until is not checked: a lock pins a moment on purpose.
    pub fn verify(&self, dir: &Path) -> Result<Snapshot> {
        let mismatch = |path: &Path, message: String| Error::LockMismatch {
            path: path.to_path_buf(),
            message,
        };
        let (keyring_sha256, _) = hash_file(&self.keyring)?;
        if keyring_sha256 != self.keyring_sha256 {
            return Err(mismatch(
                &self.keyring,
                format!("the keyring changed since the lock was made (sha256 {keyring_sha256}, locked {})", self.keyring_sha256),
            ));
        }
        let inrelease = dir.join("InRelease");
        let (sha, _) = hash_file(&inrelease)?;
        if sha != self.inrelease_sha256 {
            return Err(mismatch(
                &inrelease,
                format!("sha256 is {sha}, the lock says {}", self.inrelease_sha256),
            ));
        }
        let mirror = self.mirror();
        let origin = inrelease.display().to_string();
        let verified = verify_clearsigned(&inrelease, &self.keyring, &origin)?;
        let release = Release::parse(&verified.text, &origin)?;
        check_release(&release, &mirror, &origin)?;
        let mut packages = Vec::new();
        let mut sources = Vec::new();
        for f in &self.files {
            if !is_safe_relative(&f.path) {
                return Err(mismatch(
                    dir,
                    format!("the lock names an unsafe path {:?}", f.path),
                ));
            }
            if release.entry(&f.fetched.path) != Some(&f.fetched) {
                return Err(mismatch(
                    &inrelease,
                    format!(
                        "the signed Release does not list {} as locked",
                        f.fetched.path
                    ),
                ));
            }
            let local = dir.join(&f.path);
            let (sha256, size) = hash_file(&local)?;
            if sha256 != f.sha256 || size != f.size {
                return Err(mismatch(
                    &local,
                    format!(
                        "sha256 {sha256} and {size} bytes, the lock says {} and {} bytes",
                        f.sha256, f.size
                    ),
                ));
            }
            if let Some(plain) = release.entry(&f.path) {
                if plain.sha256 != sha256 || plain.size != size {
                    return Err(mismatch(
                        &local,
                        format!(
                            "sha256 {sha256} differs from the signed Release's {}",
                            plain.sha256
                        ),
                    ));
                }
            }
            let file = IndexFile {
                component: f.component.clone(),
                kind: f.kind,
                path: f.path.clone(),
                fetched: f.fetched.clone(),
                local,
                sha256,
                size,
            };
            match f.kind {
                IndexKind::Packages => packages.push(file),
                IndexKind::Sources => sources.push(file),
            }
        }
        Ok(Snapshot {
            mirror,
            release,
            inrelease,
            inrelease_sha256: sha,
            signers: verified.signers,
            packages,
            sources,
        })
    }
}
