//! The local APT repository in the store: a flat repository (APT's
//! `deb [trusted=yes] file:DIR ./`) of the packages comb built, so later
//! builds resolve and install them like any mirror's, and `comb build
//! --out DIR` leaves a directory `apt` can use.
//!
//! [`write_flat_repository`] writes `Packages`, `Packages.xz` and a
//! `Release` listing both with their sizes, MD5Sum and SHA256. The output
//! is deterministic: paragraphs are sorted by package name, version
//! (dpkg's order) and architecture, the `Release` date is given by the
//! caller, and xz runs single-threaded at a fixed preset; the same entries
//! give the same bytes. Each file is written under a temporary name and
//! renamed into place, the indices before the `Release` that lists them,
//! so no file is ever seen half-written (a reader that races a writer may
//! see new indices with the old `Release`; comb holds the store's lock
//! while it publishes).

use crate::deb::DebArchive;
use crate::debwriter::WrittenDeb;
use crate::error::{Error, Result};
use crate::release::format_date;
use comb_debian::control;
use comb_debian::version::compare_versions;
use md5::Md5;
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

/// One `.deb` of the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoEntry {
    /// The package's control paragraph, as in the `.deb`.
    pub control: String,
    /// Where the `.deb` is, relative to the repository directory
    /// (`hello_1.0_amd64.deb`, `pool/h/hello_1.0_amd64.deb`). The
    /// `Filename` field is this with `./` before it.
    pub filename: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// Lowercase hex.
    pub md5: String,
}

impl RepoEntry {
    /// The entry for the `.deb` at `path`, which will be found at
    /// `filename` (relative to the repository directory): its control
    /// paragraph read with the strict [`DebArchive`] reader, its size and
    /// hashes from one pass over the file.
    pub fn from_deb(path: &Path, filename: &str) -> Result<RepoEntry> {
        let control = DebArchive::open(path)?.control()?;
        let (mut sha256, mut md5) = (Sha256::new(), Md5::new());
        let size = crate::fetch::read_chunks(path, |chunk| {
            sha256.update(chunk);
            md5.update(chunk);
        })?;
        Ok(RepoEntry {
            control,
            filename: filename.to_string(),
            size,
            sha256: hex::encode(sha256.finalize()),
            md5: hex::encode(md5.finalize()),
        })
    }

    /// The entry for a `.deb` that [`crate::debwriter::write_deb`] just
    /// wrote, to be found in the repository under its own file name.
    pub fn from_written(deb: &WrittenDeb) -> RepoEntry {
        RepoEntry {
            control: deb.control.clone(),
            filename: deb.filename.clone(),
            size: deb.size,
            sha256: deb.sha256.clone(),
            md5: deb.md5.clone(),
        }
    }
}

/// Fields of the control paragraph that the index writes itself.
const INDEX_FIELDS: &[&str] = &["filename", "size", "md5sum", "sha1", "sha256", "sha512"];

/// One paragraph of the index, with what it is sorted by.
struct Para {
    name: String,
    version: String,
    arch: String,
    text: String,
}

/// The text of a `Packages` index for `debs`: each control paragraph
/// with `Filename`, `Size`, `MD5sum` and `SHA256` added before its
/// `Description`, sorted by name, version and architecture, one blank line
/// between paragraphs. `dir` only names the repository in errors.
pub fn packages_index(dir: &Path, debs: &[RepoEntry]) -> Result<String> {
    let bad = |message: String| Error::AptRepo {
        dir: dir.to_path_buf(),
        message,
    };
    let mut paras = Vec::with_capacity(debs.len());
    for deb in debs {
        let filename = check_filename(&deb.filename).map_err(|why| {
            bad(format!(
                "file name {:?} {why}; give a path relative to the repository",
                deb.filename
            ))
        })?;
        if deb.sha256.len() != 64 || !deb.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!("{filename}: {:?} is not a sha256", deb.sha256)));
        }
        if deb.md5.len() != 32 || !deb.md5.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!("{filename}: {:?} is not an md5", deb.md5)));
        }
        let origin = format!("{}/{filename} (control)", dir.display());
        let parsed = control::parse(&deb.control, &origin)?;
        let [p] = parsed.as_slice() else {
            return Err(bad(format!(
                "{filename}: its control file holds {} paragraphs, not one",
                parsed.len()
            )));
        };
        let name = p.require("Package", &origin)?.to_string();
        let version = p.require("Version", &origin)?.to_string();
        let arch = p.require("Architecture", &origin)?.to_string();

        let index_fields = format!(
            "Filename: ./{filename}\nSize: {}\nMD5sum: {}\nSHA256: {}\n",
            deb.size,
            deb.md5.to_ascii_lowercase(),
            deb.sha256.to_ascii_lowercase()
        );
        let mut text = String::new();
        let mut skipping = false;
        let mut inserted = false;
        for line in deb.control.lines() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            if !line.starts_with([' ', '\t']) {
                let field = line.split(':').next().unwrap_or("").trim();
                let lower = field.to_ascii_lowercase();
                skipping = INDEX_FIELDS.contains(&lower.as_str());
                if lower == "description" && !inserted {
                    text.push_str(&index_fields);
                    inserted = true;
                }
            }
            if !skipping {
                text.push_str(line.trim_end_matches('\r'));
                text.push('\n');
            }
        }
        if !inserted {
            text.push_str(&index_fields);
        }
        paras.push(Para {
            name,
            version,
            arch,
            text,
        });
    }
    paras.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| {
                compare_versions(&a.version, &b.version)
                    .unwrap_or_else(|_| a.version.cmp(&b.version))
            })
            .then_with(|| a.arch.cmp(&b.arch))
            .then_with(|| a.text.cmp(&b.text))
    });
    for pair in paras.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.name == b.name
            && a.arch == b.arch
            && compare_versions(&a.version, &b.version).ok() == Some(Ordering::Equal)
        {
            return Err(bad(format!(
                "{} {} ({}) is given twice; a repository holds one .deb per name, version and architecture",
                a.name, a.version, a.arch
            )));
        }
    }
    let texts: Vec<&str> = paras.iter().map(|p| p.text.as_str()).collect();
    Ok(texts.join("\n"))
}

/// `name` as a relative path without `.`/`..` components, whitespace or
/// control characters, with any leading `./` removed.
fn check_filename(name: &str) -> std::result::Result<&str, &'static str> {
    let name = name.trim_start_matches("./");
    if name.is_empty() {
        return Err("is empty");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("holds whitespace or control characters");
    }
    let path = Path::new(name);
    if !path.components().all(|c| matches!(c, Component::Normal(_))) || name.ends_with('/') {
        return Err("is absolute, ends with a slash or has . or .. components");
    }
    Ok(name)
}

/// Writes a flat APT repository's indices into `dir` (which must exist
/// and is where the `.deb`s are, at their `filename`s): `Packages`,
/// `Packages.xz` and `Release`, whose `Date` is `date` (seconds since
/// the epoch; give a fixed time, such as the newest package's
/// `SOURCE_DATE_EPOCH`, for reproducible bytes).
///
/// The `.deb`s themselves are not read: the entries' sizes and hashes go
/// into the index as given, and APT checks them when it downloads.
pub fn write_flat_repository(dir: &Path, debs: &[RepoEntry], date: i64) -> Result<()> {
    let packages = packages_index(dir, debs)?;
    let packages_xz = {
        let stream = xz2::stream::Stream::new_easy_encoder(6, xz2::stream::Check::Crc64)
            .map_err(|e| Error::io("compressing", dir.join("Packages.xz"), e.into()))?;
        let mut enc = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
        enc.write_all(packages.as_bytes())
            .and_then(|()| enc.finish())
            .map_err(|e| Error::io("compressing", dir.join("Packages.xz"), e))?
    };
    let mut archs = BTreeSet::new();
    for p in control::parse(&packages, "Packages")? {
        if let Some(arch) = p.get("Architecture") {
            archs.insert(arch.to_string());
        }
    }
    archs.insert("all".to_string());
    let archs: Vec<String> = archs.into_iter().collect();

    let files: [(&str, &[u8]); 2] = [
        ("Packages", packages.as_bytes()),
        ("Packages.xz", &packages_xz),
    ];
    let mut release = format!(
        "Origin: comb\nLabel: comb\nSuite: comb\nCodename: comb\nDate: {}\n\
         Architectures: {}\nDescription: packages built by comb\nMD5Sum:\n",
        format_date(date),
        archs.join(" ")
    );
    for (name, bytes) in &files {
        release.push_str(&format!(
            " {} {} {name}\n",
            hex::encode(Md5::digest(bytes)),
            bytes.len()
        ));
    }
    release.push_str("SHA256:\n");
    for (name, bytes) in &files {
        release.push_str(&format!(
            " {} {} {name}\n",
            hex::encode(Sha256::digest(bytes)),
            bytes.len()
        ));
    }
    for (name, bytes) in files {
        write_atomically(&dir.join(name), bytes)?;
    }
    write_atomically(&dir.join("Release"), release.as_bytes())
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `path` through a temporary file beside it, synced, then
/// renamed; on failure nothing is left behind.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = TMP_COUNTER.fetch_add(1, AtomicOrdering::Relaxed);
    let tmp: PathBuf = path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("writing", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io("renaming into place", path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(control: &str, filename: &str) -> RepoEntry {
        RepoEntry {
            control: control.to_string(),
            filename: filename.to_string(),
            size: 10,
            sha256: "a".repeat(64),
            md5: "b".repeat(32),
        }
    }

    #[test]
    fn index_fields_go_before_the_description_and_paragraphs_sort() {
        let dir = Path::new("/repo");
        let b = entry(
            "Package: b\nVersion: 1.0\nArchitecture: all\nSize: 99\nDescription: b\n long\n",
            "b.deb",
        );
        let a2 = entry(
            "Package: a\nVersion: 1.10\nArchitecture: amd64\nDescription: a\n",
            "a2.deb",
        );
        let a1 = entry(
            "Package: a\nVersion: 1.9\nArchitecture: amd64\nDescription: a\n",
            "./pool/a1.deb",
        );
        let text = packages_index(dir, &[b, a2, a1]).unwrap();
        let order: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("Filename: "))
            .collect();
        assert_eq!(order, ["./pool/a1.deb", "./a2.deb", "./b.deb"]);
        assert!(text.contains(&format!(
            "Architecture: all\nFilename: ./b.deb\nSize: 10\nMD5sum: {}\nSHA256: {}\nDescription: b\n long\n",
            "b".repeat(32),
            "a".repeat(64)
        )));
        assert!(!text.contains("Size: 99"));
    }

    #[test]
    fn bad_entries_are_refused() {
        let dir = Path::new("/repo");
        let ok = "Package: a\nVersion: 1\nArchitecture: all\nDescription: a\n";
        for name in ["../a.deb", "/a.deb", "a b.deb", "", "x/../a.deb"] {
            let err = packages_index(dir, &[entry(ok, name)]).unwrap_err();
            assert!(err.to_string().contains("file name"), "{name}: {err}");
        }
        let err = packages_index(dir, &[entry(ok, "a.deb"), entry(ok, "b.deb")]).unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
        let err = packages_index(dir, &[entry("Version: 1\n", "a.deb")]).unwrap_err();
        assert!(err.to_string().contains("Package"), "{err}");
    }
}
