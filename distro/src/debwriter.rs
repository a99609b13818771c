//! Writing binary `.deb` packages, byte for byte deterministic.
//!
//! For native recipes comb runs the build script into `$DESTDIR`, then
//! packs the files of each output itself with [`write_deb`]. The same
//! spec, the same file contents, modes, types and names and the same
//! `SOURCE_DATE_EPOCH` give the same bytes, whatever the files' owners,
//! their times after the epoch, the order they were created or listed in,
//! or the machine (its number of CPUs included). It is the `.deb` that
//! `dpkg-deb --root-owner-group --build` writes from the same tree under
//! `SOURCE_DATE_EPOCH`, byte for byte, when the tree's modes are already
//! normal (see below):
//!
//! - `ar` members `debian-binary` ("2.0\n"), `control.tar.xz`,
//!   `data.tar.xz`, each with mtime = the epoch, uid/gid 0, mode 100644.
//! - Tar in GNU format (GNU tar's `--format=gnu`, what `dpkg-deb` runs),
//!   `././@LongLink` records for names and link targets over 100 bytes,
//!   padded to 10 KiB records. Entries start at `./`, in depth-first order
//!   with the names of a directory sorted by bytes, so every directory
//!   comes before what it holds; symlinks all come last (in the same
//!   order), as `dpkg-deb` puts them, so a symlink never precedes its
//!   target. Owners root:root (0/0, names "root"); times the file's mtime
//!   clamped to the epoch.
//! - Modes: directories are always 0755 (a build's umask or a set-gid
//!   parent must not leak into the package); files keep their permission
//!   bits without group/other write and without the sticky bit (so the
//!   umasks 002 and 022 give the same package); set-uid and set-gid
//!   files are refused, since comb never ships them from a build (a
//!   postinst or `dpkg-statoverride` can set them at install time).
//! - Hard links between listed files stay hard links (the first in
//!   archive order holds the content), as GNU tar writes them.
//! - xz at a fixed preset (6, dpkg's default), CRC64 check, with
//!   liblzma's multi-threaded encoder and its default block size (3 times
//!   the dictionary, 24 MiB at preset 6), as `dpkg-deb` compresses. That
//!   encoder's output depends on the block size, never on the number of
//!   threads (1 thread writes what 8 write), so comb uses the CPUs it has
//!   and the bytes still depend only on the input, the preset and
//!   liblzma's version.
//!
//! Files are read through directory descriptors opened one component at
//! a time with `O_NOFOLLOW`: a listed path that leaves the root (`..`, or
//! a symlink among its parents) is an error, a symlink is packaged as a
//! symlink (its target verbatim, absolute or not, as Debian ships them),
//! and devices, FIFOs and sockets are refused. Every error names the path.

use crate::error::{Error, Result};
use crate::fsat::{cvt, open_dir, open_root, owned};
use crate::packages::{relation_field, relation_list_field};
use comb_debian::name::is_package_name;
use comb_debian::Version;
use md5::Md5;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bump when the bytes written for the same input change (layout, field
/// order, compression settings), so cache keys that include it change too.
pub const WRITER_VERSION: &str = "comb-debwriter 1";

/// The xz preset used unless [`DebOptions`] says otherwise (dpkg's).
pub const DEFAULT_XZ_LEVEL: u32 = 6;

const BLOCK: usize = 512;
/// GNU tar's default record: 20 blocks.
const RECORD: u64 = 10240;
const COPY_BUFFER: usize = 256 << 10;
/// Largest number in an 11-digit octal tar field.
const OCTAL11_MAX: u64 = 0o77777777777;

/// One binary package to write: its control fields. Relationship lists
/// hold one relation (with alternatives) per element and are joined with
/// ", ".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinarySpec {
    pub package: String,
    pub version: String,
    /// A Debian architecture name (`amd64`) or `all`.
    pub architecture: String,
    pub maintainer: String,
    /// The first line of `Description`.
    pub summary: String,
    /// The long description: free text; empty lines become " .".
    pub description: Option<String>,
    pub section: Option<String>,
    pub priority: Option<String>,
    pub homepage: Option<String>,
    /// The `Source` field, when the source package's name (or version)
    /// differs from the binary's: `NAME` or `NAME (VERSION)`.
    pub source: Option<String>,
    pub essential: bool,
    pub depends: Vec<String>,
    pub pre_depends: Vec<String>,
    pub recommends: Vec<String>,
    pub suggests: Vec<String>,
    pub enhances: Vec<String>,
    pub conflicts: Vec<String>,
    pub breaks: Vec<String>,
    pub replaces: Vec<String>,
    pub provides: Vec<String>,
    /// Further fields, such as `("Multi-Arch", "same")` or
    /// `("Built-Using", ...)`. Fields dpkg knows go where dpkg puts them;
    /// others go, in the order given, just before `Description`.
    pub extra_fields: Vec<(String, String)>,
    /// Files of control.tar besides `control` and `md5sums`:
    /// maintainer scripts, `conffiles`, `triggers`, `shlibs`, ...
    pub control_files: Vec<ControlFile>,
    /// Files of data.tar that are not under the root but made by comb
    /// (a copyright file, a changelog): written with mode 0644 and the
    /// epoch as their time, their missing parents as directories. A path
    /// also listed among the files is an error.
    pub generated: Vec<GeneratedFile>,
}

/// One file of data.tar given by its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Relative to the package's root, like the listed files.
    pub path: PathBuf,
    pub contents: Generated,
}

/// What a generated path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generated {
    /// A regular file (mode 0644) of these bytes.
    File(Vec<u8>),
    /// A symlink to this target.
    Symlink(String),
}

/// One extra member of control.tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFile {
    /// One of `preinst postinst prerm postrm config` (written mode 0755,
    /// must start with `#!`) or `conffiles triggers shlibs symbols
    /// templates` (mode 0644).
    pub name: String,
    pub contents: Vec<u8>,
}

/// How the members are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebOptions {
    /// xz preset, 0 to 9. Part of what decides the bytes.
    pub xz_level: u32,
    /// Compression threads; 0 means one per CPU, at most
    /// [`DEFAULT_MAX_THREADS`]. Only the speed and memory (about 165 MiB a
    /// thread at preset 6) depend on it, never the bytes.
    pub xz_threads: u32,
}

/// The most compression threads [`DebOptions::default`] uses: a 24 MiB
/// block per thread, so more only help packages over 100 MB.
pub const DEFAULT_MAX_THREADS: u32 = 4;

impl Default for DebOptions {
    fn default() -> Self {
        DebOptions {
            xz_level: DEFAULT_XZ_LEVEL,
            xz_threads: 0,
        }
    }
}

impl DebOptions {
    fn threads(&self) -> u32 {
        if self.xz_threads > 0 {
            return self.xz_threads;
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cpus as u32).clamp(1, DEFAULT_MAX_THREADS)
    }
}

/// A `.deb` that [`write_deb`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenDeb {
    /// `out_dir/filename`.
    pub path: PathBuf,
    /// `NAME_VERSION_ARCH.deb`, the version without its epoch (as
    /// dpkg-gencontrol and the archive name files).
    pub filename: String,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
    /// Lowercase hex md5 of the file (Packages indices still carry it).
    pub md5: String,
    pub size: u64,
    /// The `Installed-Size` field.
    pub installed_size_kib: u64,
    /// The control file as written (ends with a newline).
    pub control: String,
}

/// Writes the package described by `spec`, holding `files`, into
/// `out_dir` (which must exist), with [`DebOptions::default`].
///
/// `files` are paths relative to `root` (as glob matching gives them);
/// order and duplicates do not matter. A listed directory adds only
/// itself, not what it holds (see [`list_tree`]); the parents of every
/// listed path are added automatically. Times are clamped to
/// `source_date_epoch`, which must be 0 or more.
///
/// The file appears in `out_dir` complete or not at all (written under a
/// temporary name, then renamed); an existing file of the same name is
/// replaced.
pub fn write_deb(
    spec: &BinarySpec,
    root: &Path,
    files: &[PathBuf],
    source_date_epoch: i64,
    out_dir: &Path,
) -> Result<WrittenDeb> {
    write_deb_with(
        spec,
        root,
        files,
        source_date_epoch,
        out_dir,
        &DebOptions::default(),
    )
}

/// [`write_deb`] with explicit compression options.
pub fn write_deb_with(
    spec: &BinarySpec,
    root: &Path,
    files: &[PathBuf],
    source_date_epoch: i64,
    out_dir: &Path,
    options: &DebOptions,
) -> Result<WrittenDeb> {
    spec.validate()?;
    if !(0..=OCTAL11_MAX as i64).contains(&source_date_epoch) {
        return Err(spec_error(
            spec,
            "SOURCE_DATE_EPOCH",
            format!("{source_date_epoch} is out of range (0 to {OCTAL11_MAX} seconds since 1970)"),
        ));
    }
    if options.xz_level > 9 {
        return Err(spec_error(
            spec,
            "xz level",
            format!("{} is not an xz preset (0 to 9)", options.xz_level),
        ));
    }
    let filename = deb_filename(spec);
    let tree = build_tree(root, files, &spec.generated)?;

    let out = Output::new(out_dir, &filename);
    let result = (|| {
        // data.tar.xz goes to a temporary file first: the md5sums and
        // Installed-Size it yields go into control.tar, which precedes it.
        let data_file =
            File::create(&out.data_tmp).map_err(|e| Error::io("creating", &out.data_tmp, e))?;
        let mut data = Packer {
            root,
            sde: source_date_epoch,
            tar: TarWriter::new(xz_writer(
                BufWriter::with_capacity(COPY_BUFFER, data_file),
                options.xz_level,
                options.threads(),
                &out.data_tmp,
            )?),
            tmp_path: &out.data_tmp,
            symlinks: Vec::new(),
            links: HashMap::new(),
            md5sums: Vec::new(),
            regular: HashSet::new(),
            installed_kib: 0,
            buf: vec![0; COPY_BUFFER],
        };
        let root_fd = open_root(root).map_err(|e| Error::io("opening", root, e))?;
        let root_st = fstat(root_fd.as_raw_fd()).map_err(|e| Error::io("reading", root, e))?;
        data.directory(b"./", root_st.st_mtime)?;
        data.walk(Some(&root_fd), &mut Vec::new(), &tree)?;
        let (md5sums, regular, installed_kib) = data.finish()?;

        let control = spec.control_text(installed_kib);
        let control_tar = control_tar(spec, &control, &md5sums, &regular, source_date_epoch)?;
        let control_xz = xz_bytes(&control_tar, options.xz_level, &out.data_tmp)?;

        let (sha256, md5, size) = assemble(&out, &control_xz, source_date_epoch)?;
        Ok((control, installed_kib, sha256, md5, size))
    })();
    let (control, installed_size_kib, sha256, md5, size) = match result {
        Ok(r) => r,
        Err(e) => {
            out.discard();
            return Err(e);
        }
    };
    let path = out_dir.join(&filename);
    if let Err(e) = fs::rename(&out.deb_tmp, &path) {
        out.discard();
        return Err(Error::io("renaming into place", &path, e));
    }
    let _ = fs::remove_file(&out.data_tmp);
    Ok(WrittenDeb {
        path,
        filename,
        sha256,
        md5,
        size,
        installed_size_kib,
        control,
    })
}

/// Every path below `root` (directories, files, symlinks, anything),
/// relative to it and sorted, without following symlinks: what to pass
/// as `files` to package a whole tree.
pub fn list_tree(root: &Path) -> Result<Vec<PathBuf>> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let dir = root.join(rel);
        let entries = fs::read_dir(&dir).map_err(|e| Error::io("listing", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", &dir, e))?;
            let rel = rel.join(entry.file_name());
            let kind = entry
                .file_type()
                .map_err(|e| Error::io("reading", root.join(&rel), e))?;
            out.push(rel.clone());
            if kind.is_dir() {
                walk(root, &rel, out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out)?;
    out.sort();
    Ok(out)
}

/// The pool file name of a package: `NAME_VERSION_ARCH.deb` with the
/// version's epoch dropped (`1:2.0-1` gives `NAME_2.0-1_ARCH.deb`).
pub fn deb_filename(spec: &BinarySpec) -> String {
    let version = match spec.version.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => spec.version.as_str(),
    };
    format!("{}_{}_{}.deb", spec.package, version, spec.architecture)
}

// ---------------------------------------------------------------------------
// The control file

/// Control fields dpkg orders (Dpkg::Control::FieldsCore for a .deb), by
/// lowercase name; the long description always goes last.
const FIELD_ORDER: &[&str] = &[
    "package",
    "package-type",
    "source",
    "version",
    "kernel-version",
    "built-for-profiles",
    "auto-built-package",
    "architecture",
    "subarchitecture",
    "installer-menu-item",
    "build-essential",
    "essential",
    "protected",
    "origin",
    "bugs",
    "maintainer",
    "installed-size",
    "pre-depends",
    "depends",
    "recommends",
    "suggests",
    "enhances",
    "conflicts",
    "breaks",
    "replaces",
    "provides",
    "built-using",
    "static-built-using",
    "section",
    "priority",
    "multi-arch",
    "homepage",
];

/// Fields comb fills from [`BinarySpec`]'s own members (or computes), so
/// `extra_fields` may not give them.
const OWN_FIELDS: &[&str] = &[
    "package",
    "source",
    "version",
    "architecture",
    "essential",
    "maintainer",
    "installed-size",
    "pre-depends",
    "depends",
    "recommends",
    "suggests",
    "enhances",
    "conflicts",
    "breaks",
    "replaces",
    "provides",
    "section",
    "priority",
    "homepage",
    "description",
    // Index fields: they describe the .deb file, not the package.
    "filename",
    "size",
    "md5sum",
    "sha1",
    "sha256",
    "status",
];

const SCRIPTS: &[&str] = &["preinst", "postinst", "prerm", "postrm", "config"];
const DATA_CONTROL_FILES: &[&str] = &["conffiles", "triggers", "shlibs", "symbols", "templates"];

fn spec_error(spec: &BinarySpec, field: &str, message: impl Into<String>) -> Error {
    Error::DebSpec {
        package: spec.package.clone(),
        field: field.to_string(),
        message: message.into(),
    }
}

fn is_arch_name(arch: &str) -> bool {
    !arch.is_empty()
        && arch != "any"
        && arch != "source"
        && arch
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !arch.starts_with('-')
}

fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['#', '-'])
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

impl BinarySpec {
    /// Checks the fields, with errors that name the package and field: the
    /// name, version and architecture syntax, one-line values where one
    /// line is required, the relationship syntax (no alternatives in
    /// Conflicts, Breaks, Replaces and Provides), extra field names, and
    /// the names and shape of control files.
    pub fn validate(&self) -> Result<()> {
        let err = |field: &str, message: String| Err(spec_error(self, field, message));
        if !is_package_name(&self.package) {
            return err(
                "Package",
                format!(
                    "{:?} is not a Debian package name (two or more of a-z 0-9 + . -, starting with a letter or digit)",
                    self.package
                ),
            );
        }
        if let Err(e) = Version::parse(&self.version) {
            return err("Version", e.to_string());
        }
        if !is_arch_name(&self.architecture) {
            return err(
                "Architecture",
                format!(
                    "{:?} is not the architecture of a binary package (amd64, arm64, ... or all)",
                    self.architecture
                ),
            );
        }
        for (field, value) in [
            ("Maintainer", &self.maintainer),
            ("Description", &self.summary),
        ] {
            if value.trim().is_empty() {
                return err(field, "must not be empty".into());
            }
        }
        let one_line = [
            ("Maintainer", Some(&self.maintainer)),
            ("Description", Some(&self.summary)),
            ("Section", self.section.as_ref()),
            ("Priority", self.priority.as_ref()),
            ("Homepage", self.homepage.as_ref()),
            ("Source", self.source.as_ref()),
        ];
        for (field, value) in one_line {
            if let Some(value) = value {
                if value.trim().is_empty() || value.chars().any(|c| c.is_control()) {
                    return err(
                        field,
                        format!("{value:?} must be one non-empty line without control characters"),
                    );
                }
            }
        }
        for (field, value) in [
            ("Section", &self.section),
            ("Priority", &self.priority),
            ("Homepage", &self.homepage),
        ] {
            if value
                .as_ref()
                .is_some_and(|v| v.contains(char::is_whitespace))
            {
                return err(field, format!("{value:?} must be one word"));
            }
        }
        if let Some(source) = &self.source {
            let (name, version) = match source.split_once('(') {
                Some((name, rest)) => match rest.strip_suffix(')') {
                    Some(v) => (name.trim_end(), Some(v.trim())),
                    None => return err("Source", format!("{source:?}: expected NAME (VERSION)")),
                },
                None => (source.as_str(), None),
            };
            if !is_package_name(name) {
                return err("Source", format!("{name:?} is not a source package name"));
            }
            if let Some(Err(e)) = version.map(Version::parse) {
                return err("Source", e.to_string());
            }
        }
        if let Some(text) = &self.description {
            if let Some(c) = text
                .chars()
                .find(|&c| c.is_control() && c != '\n' && c != '\t')
            {
                return err(
                    "Description",
                    format!("the long description holds the control character {c:?}"),
                );
            }
        }
        let origin = format!("binary package {}", self.package);
        for (field, list) in self.relation_fields() {
            if list.is_empty() {
                continue;
            }
            if let Some(bad) = list
                .iter()
                .find(|r| r.trim().is_empty() || r.contains(['\n', '\r']))
            {
                return err(
                    field,
                    format!("{bad:?}: each entry must be one non-empty relation"),
                );
            }
            let value = list.join(", ");
            if matches!(field, "Conflicts" | "Breaks" | "Replaces" | "Provides") {
                relation_list_field(&origin, field, &value)?;
            } else {
                relation_field(&origin, field, &value)?;
            }
        }
        let mut seen = Vec::new();
        for (name, value) in &self.extra_fields {
            let lower = name.to_ascii_lowercase();
            if !is_field_name(name) {
                return err(name, "not a control field name".into());
            }
            if OWN_FIELDS.contains(&lower.as_str()) {
                return err(
                    name,
                    "comb writes this field itself; set it through the package description, not as an extra field".into(),
                );
            }
            if seen.contains(&lower) {
                return err(name, "given twice".into());
            }
            if value.trim().is_empty() || value.chars().any(|c| c.is_control()) {
                return err(
                    name,
                    format!("{value:?} must be one non-empty line without control characters"),
                );
            }
            seen.push(lower);
        }
        let mut names = Vec::new();
        for file in &self.control_files {
            let name = file.name.as_str();
            if name == "control" || name == "md5sums" {
                return err(name, "comb writes this control file itself".into());
            }
            if !SCRIPTS.contains(&name) && !DATA_CONTROL_FILES.contains(&name) {
                return err(
                    name,
                    format!(
                        "not a control file comb writes (one of {} {})",
                        SCRIPTS.join(" "),
                        DATA_CONTROL_FILES.join(" ")
                    ),
                );
            }
            if names.contains(&name) {
                return err(name, "given twice".into());
            }
            names.push(name);
            if SCRIPTS.contains(&name) && !file.contents.starts_with(b"#!") {
                return err(
                    name,
                    "a maintainer script must start with #! (an interpreter line)".into(),
                );
            }
        }
        Ok(())
    }

    fn relation_fields(&self) -> [(&'static str, &Vec<String>); 9] {
        [
            ("Pre-Depends", &self.pre_depends),
            ("Depends", &self.depends),
            ("Recommends", &self.recommends),
            ("Suggests", &self.suggests),
            ("Enhances", &self.enhances),
            ("Conflicts", &self.conflicts),
            ("Breaks", &self.breaks),
            ("Replaces", &self.replaces),
            ("Provides", &self.provides),
        ]
    }

    /// The control file for this (validated) spec: dpkg's field order,
    /// unknown extra fields in the order given, the description last.
    fn control_text(&self, installed_size_kib: u64) -> String {
        let mut fields: Vec<(String, String)> = vec![
            ("Package".into(), self.package.clone()),
            ("Version".into(), self.version.clone()),
            ("Architecture".into(), self.architecture.clone()),
            ("Maintainer".into(), self.maintainer.trim().to_string()),
            ("Installed-Size".into(), installed_size_kib.to_string()),
        ];
        if let Some(source) = &self.source {
            fields.push(("Source".into(), source.trim().to_string()));
        }
        if self.essential {
            fields.push(("Essential".into(), "yes".into()));
        }
        for (name, list) in self.relation_fields() {
            if !list.is_empty() {
                let items: Vec<&str> = list.iter().map(|r| r.trim()).collect();
                fields.push((name.into(), items.join(", ")));
            }
        }
        for (name, value) in [
            ("Section", &self.section),
            ("Priority", &self.priority),
            ("Homepage", &self.homepage),
        ] {
            if let Some(value) = value {
                fields.push((name.into(), value.trim().to_string()));
            }
        }
        for (name, value) in &self.extra_fields {
            fields.push((name.clone(), value.trim().to_string()));
        }
        // A stable sort: known fields by dpkg's rank, the others after them
        // in the order given.
        fields.sort_by_key(|(name, _)| {
            let lower = name.to_ascii_lowercase();
            FIELD_ORDER
                .iter()
                .position(|f| *f == lower)
                .unwrap_or(FIELD_ORDER.len())
        });
        let mut out = String::new();
        for (name, value) in &fields {
            let _ = writeln!(out, "{name}: {value}");
        }
        let _ = writeln!(out, "Description: {}", self.summary.trim());
        if let Some(text) = &self.description {
            out.push_str(&long_description(text));
        }
        out
    }
}

/// The continuation lines of a long description: each line indented by a
/// space, an empty line written as " .", leading and trailing empty lines
/// and trailing blanks dropped.
fn long_description(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let start = lines.iter().position(|l| !l.is_empty());
    let end = lines.iter().rposition(|l| !l.is_empty());
    let mut out = String::new();
    if let (Some(start), Some(end)) = (start, end) {
        for line in &lines[start..=end] {
            if line.is_empty() {
                out.push_str(" .\n");
            } else {
                let _ = writeln!(out, " {line}");
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The input tree

/// The listed paths as a tree of names: children sorted by bytes, which
/// is dpkg-deb's order.
#[derive(Default)]
struct Tree {
    children: BTreeMap<Vec<u8>, Tree>,
    /// Under the root on disk: listed, or the parent of a listed path.
    /// Otherwise a generated file or a generated file's parent.
    on_disk: bool,
    generated: Option<Generated>,
}

fn input_error(root: &Path, path: &[u8], reason: impl Into<String>) -> Error {
    Error::DebInput {
        root: root.to_path_buf(),
        path: String::from_utf8_lossy(path).into_owned(),
        reason: reason.into(),
    }
}

fn build_tree(root: &Path, files: &[PathBuf], generated: &[GeneratedFile]) -> Result<Tree> {
    let mut tree = Tree::default();
    let listed = files.iter().map(|f| (f, None));
    let made = generated.iter().map(|g| (&g.path, Some(&g.contents)));
    for (file, contents) in listed.chain(made) {
        let raw = file.as_os_str().as_bytes();
        let mut node = &mut tree;
        let mut depth = 0;
        for comp in file.components() {
            match comp {
                Component::CurDir => continue,
                Component::Normal(name) => {
                    let name = name.as_bytes();
                    if name.contains(&0) {
                        return Err(input_error(root, raw, "the path holds a NUL byte"));
                    }
                    if name.contains(&b'\n') {
                        return Err(input_error(
                            root,
                            raw,
                            "the path holds a newline, which dpkg cannot record; rename it in the build script",
                        ));
                    }
                    if depth == 0 && name == b"DEBIAN" {
                        return Err(input_error(
                            root,
                            raw,
                            "a top-level DEBIAN directory is where dpkg-deb takes control files from, not package contents; comb writes the control files itself",
                        ));
                    }
                    depth += 1;
                    node = node.children.entry(name.to_vec()).or_default();
                    node.on_disk |= contents.is_none();
                }
                Component::ParentDir => {
                    return Err(input_error(
                        root,
                        raw,
                        "the path goes up with `..`; list paths inside the root only",
                    ))
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(input_error(
                        root,
                        raw,
                        "the path is absolute; list paths relative to the root",
                    ))
                }
            }
        }
        if let Some(contents) = contents {
            if node.on_disk || node.generated.is_some() || !node.children.is_empty() {
                return Err(input_error(
                    root,
                    raw,
                    "comb makes this file, and it is also listed",
                ));
            }
            node.generated = Some(contents.clone());
        }
    }
    Ok(tree)
}

// ---------------------------------------------------------------------------
// data.tar

struct SymlinkEntry {
    name: Vec<u8>,
    target: Vec<u8>,
    mtime: i64,
}

/// Walks the tree and writes data.tar.
/// The data.tar stream: xz into a buffered temporary file.
type DataOut = xz2::write::XzEncoder<BufWriter<File>>;

struct Packer<'a> {
    root: &'a Path,
    sde: i64,
    tar: TarWriter<DataOut>,
    tmp_path: &'a Path,
    /// Deferred to the end of the archive, as dpkg-deb does.
    symlinks: Vec<SymlinkEntry>,
    /// (dev, ino) of multiply linked files → (archive name, md5).
    links: HashMap<(u64, u64), (Vec<u8>, String)>,
    /// (md5, path without "./") of every regular file and hard link.
    md5sums: Vec<(String, Vec<u8>)>,
    /// Absolute paths ("/usr/bin/x") of regular files and hard links, for
    /// checking conffiles.
    regular: HashSet<Vec<u8>>,
    installed_kib: u64,
    buf: Vec<u8>,
}

impl Packer<'_> {
    fn clamp(&self, mtime: i64) -> u64 {
        mtime.clamp(0, self.sde) as u64
    }

    fn tar_err(&self, e: io::Error) -> Error {
        Error::io("writing", self.tmp_path, e)
    }

    fn directory(&mut self, name: &[u8], mtime: i64) -> Result<()> {
        self.installed_kib += 1;
        let header = TarHeader {
            name,
            mode: 0o755,
            size: 0,
            mtime: self.clamp(mtime),
            kind: b'5',
            link: b"",
        };
        self.tar.header(&header).map_err(|e| self.tar_err(e))
    }

    /// Writes the children of `node`, which are in the directory `dir`
    /// (none for a directory only generated files are in), whose archive
    /// name is `./` + `path` joined with '/'.
    fn walk(&mut self, dir: Option<&OwnedFd>, path: &mut Vec<u8>, node: &Tree) -> Result<()> {
        for (name, child) in &node.children {
            let len = path.len();
            path.extend_from_slice(name);
            match (dir, child.on_disk) {
                (Some(dir), true) => self.entry(dir, name, path, child)?,
                _ => self.generated(path, child)?,
            }
            path.truncate(len);
        }
        Ok(())
    }

    /// A generated file, or a directory that holds only generated files.
    fn generated(&mut self, path: &mut Vec<u8>, node: &Tree) -> Result<()> {
        let mut archive_name = b"./".to_vec();
        archive_name.extend_from_slice(path);
        let contents = match &node.generated {
            Some(Generated::File(contents)) => contents,
            Some(Generated::Symlink(target)) => {
                if target.is_empty() || target.contains('\n') || target.contains('\0') {
                    return Err(Error::DebSpec {
                        package: String::new(),
                        field: "generated symlink".into(),
                        message: format!("{target:?} is not a symlink target"),
                    });
                }
                self.installed_kib += (target.len() as u64).div_ceil(1024);
                self.symlinks.push(SymlinkEntry {
                    name: archive_name,
                    target: target.as_bytes().to_vec(),
                    mtime: self.sde,
                });
                return Ok(());
            }
            None => {
                archive_name.push(b'/');
                self.directory(&archive_name, self.sde)?;
                path.push(b'/');
                self.walk(None, path, node)?;
                path.pop();
                return Ok(());
            }
        };
        let size = contents.len() as u64;
        self.installed_kib += size.div_ceil(1024);
        let header = TarHeader {
            name: &archive_name,
            mode: 0o644,
            size,
            mtime: self.sde as u64,
            kind: b'0',
            link: b"",
        };
        self.tar.header(&header).map_err(|e| self.tar_err(e))?;
        self.tar.content(contents).map_err(|e| self.tar_err(e))?;
        self.tar.pad().map_err(|e| self.tar_err(e))?;
        let mut abs = path.to_vec();
        abs.insert(0, b'/');
        self.regular.insert(abs);
        self.md5sums
            .push((hex::encode(Md5::digest(contents)), path.to_vec()));
        Ok(())
    }

    fn entry(&mut self, dir: &OwnedFd, name: &[u8], path: &mut Vec<u8>, node: &Tree) -> Result<()> {
        let root = self.root;
        let cname = cstring(name);
        let st = lstat_at(dir.as_raw_fd(), &cname).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                input_error(
                    root,
                    path,
                    "it does not exist (was it installed into $DESTDIR?)",
                )
            } else {
                Error::io("reading", root.join(OsStr::from_bytes(path)), e)
            }
        })?;
        let fmt = st.st_mode & libc::S_IFMT;
        if !node.children.is_empty() && fmt != libc::S_IFDIR {
            let what = if fmt == libc::S_IFLNK {
                "a symlink; paths are never followed through symlinks, so nothing may be listed below it"
            } else {
                "not a directory, yet paths below it are listed"
            };
            return Err(input_error(root, path, format!("it is {what}")));
        }
        let mut archive_name = b"./".to_vec();
        archive_name.extend_from_slice(path);
        match fmt {
            libc::S_IFDIR => {
                let fd = open_dir(dir.as_raw_fd(), &cname)
                    .map_err(|e| Error::io("opening", root.join(OsStr::from_bytes(path)), e))?;
                let again = fstat(fd.as_raw_fd())
                    .map_err(|e| Error::io("reading", root.join(OsStr::from_bytes(path)), e))?;
                if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
                    return Err(input_error(root, path, "it changed while comb read it"));
                }
                archive_name.push(b'/');
                self.directory(&archive_name, st.st_mtime)?;
                path.push(b'/');
                self.walk(Some(&fd), path, node)?;
                path.pop();
                Ok(())
            }
            libc::S_IFREG => self.regular(dir, &cname, path, archive_name, &st),
            libc::S_IFLNK => {
                let target = readlink_at(dir.as_raw_fd(), &cname).map_err(|e| {
                    Error::io("reading the link", root.join(OsStr::from_bytes(path)), e)
                })?;
                if target.is_empty() {
                    return Err(input_error(
                        root,
                        path,
                        "it is a symlink with an empty target",
                    ));
                }
                if target.contains(&b'\n') {
                    return Err(input_error(
                        root,
                        path,
                        "its symlink target holds a newline, which dpkg cannot record",
                    ));
                }
                // dpkg-gencontrol counts a symlink by its size (the target's
                // length), rounded up to KiB.
                self.installed_kib += (target.len() as u64).div_ceil(1024);
                self.symlinks.push(SymlinkEntry {
                    name: archive_name,
                    target,
                    mtime: st.st_mtime,
                });
                Ok(())
            }
            _ => {
                let what = match fmt {
                    libc::S_IFCHR => "a character device",
                    libc::S_IFBLK => "a block device",
                    libc::S_IFIFO => "a FIFO",
                    libc::S_IFSOCK => "a socket",
                    _ => "of an unknown file type",
                };
                Err(input_error(
                    root,
                    path,
                    format!("it is {what}; a package may hold only files, directories and symlinks (create device nodes in a postinst)"),
                ))
            }
        }
    }

    fn regular(
        &mut self,
        dir: &OwnedFd,
        cname: &CStr,
        path: &[u8],
        archive_name: Vec<u8>,
        st: &libc::stat,
    ) -> Result<()> {
        let root = self.root;
        let full = || root.join(OsStr::from_bytes(path));
        if st.st_mode & (libc::S_ISUID | libc::S_ISGID) != 0 {
            return Err(input_error(
                root,
                path,
                format!(
                    "it is set-{} (mode {:04o}); comb never ships set-id files from a build: drop the bit in the build script and set it at install time (postinst, dpkg-statoverride)",
                    if st.st_mode & libc::S_ISUID != 0 { "uid" } else { "gid" },
                    st.st_mode & 0o7777
                ),
            ));
        }
        let mode = st.st_mode & 0o755;
        let mtime = self.clamp(st.st_mtime);
        let mut abs = path.to_vec();
        abs.insert(0, b'/');
        self.regular.insert(abs);

        let key = (st.st_dev, st.st_ino);
        if st.st_nlink > 1 {
            if let Some((first, md5)) = self.links.get(&key) {
                let (first, md5) = (first.clone(), md5.clone());
                let header = TarHeader {
                    name: &archive_name,
                    mode,
                    size: 0,
                    mtime,
                    kind: b'1',
                    link: &first,
                };
                self.tar.header(&header).map_err(|e| self.tar_err(e))?;
                self.md5sums.push((md5, path.to_vec()));
                return Ok(());
            }
        }

        let file =
            open_file(dir.as_raw_fd(), cname).map_err(|e| Error::io("opening", full(), e))?;
        let fst = fstat(file.as_raw_fd()).map_err(|e| Error::io("reading", full(), e))?;
        if (fst.st_dev, fst.st_ino) != key || fst.st_size != st.st_size {
            return Err(input_error(root, path, "it changed while comb read it"));
        }
        let size = st.st_size as u64;
        self.installed_kib += size.div_ceil(1024);
        let header = TarHeader {
            name: &archive_name,
            mode,
            size,
            mtime,
            kind: b'0',
            link: b"",
        };
        self.tar.header(&header).map_err(|e| self.tar_err(e))?;

        let mut file = File::from(file);
        let mut md5 = Md5::new();
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(input_error(root, path, "it shrank while comb read it"));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("reading", full(), e)),
            };
            md5.update(&self.buf[..n]);
            self.tar
                .content(&self.buf[..n])
                .map_err(|e| Error::io("writing", self.tmp_path, e))?;
            left -= n as u64;
        }
        let mut probe = [0u8; 1];
        if file
            .read(&mut probe)
            .map_err(|e| Error::io("reading", full(), e))?
            != 0
        {
            return Err(input_error(root, path, "it grew while comb read it"));
        }
        self.tar.pad().map_err(|e| self.tar_err(e))?;
        let md5 = hex::encode(md5.finalize());
        if st.st_nlink > 1 {
            self.links.insert(key, (archive_name, md5.clone()));
        }
        self.md5sums.push((md5, path.to_vec()));
        Ok(())
    }

    /// Writes the deferred symlinks and the end of the archive; returns
    /// the md5sums lines, the set of regular files and Installed-Size.
    #[allow(clippy::type_complexity)]
    fn finish(mut self) -> Result<(Vec<(String, Vec<u8>)>, HashSet<Vec<u8>>, u64)> {
        let symlinks = std::mem::take(&mut self.symlinks);
        for link in &symlinks {
            let header = TarHeader {
                name: &link.name,
                mode: 0o777,
                size: 0,
                mtime: self.clamp(link.mtime),
                kind: b'2',
                link: &link.target,
            };
            self.tar.header(&header).map_err(|e| self.tar_err(e))?;
        }
        let tmp_path = self.tmp_path;
        let xz = self
            .tar
            .finish()
            .map_err(|e| Error::io("writing", tmp_path, e))?;
        let file = xz
            .finish()
            .map_err(|e| Error::io("compressing", self.tmp_path, e))?
            .into_inner()
            .map_err(|e| Error::io("writing", self.tmp_path, e.into_error()))?;
        drop(file);
        let mut md5sums = self.md5sums;
        md5sums.sort_by(|a, b| a.1.cmp(&b.1));
        Ok((md5sums, self.regular, self.installed_kib))
    }
}

// ---------------------------------------------------------------------------
// control.tar

fn control_tar(
    spec: &BinarySpec,
    control: &str,
    md5sums: &[(String, Vec<u8>)],
    regular: &HashSet<Vec<u8>>,
    sde: i64,
) -> Result<Vec<u8>> {
    let mut members: BTreeMap<&str, (u32, Vec<u8>)> = BTreeMap::new();
    members.insert("control", (0o644, control.as_bytes().to_vec()));
    let mut conffiles: Vec<&[u8]> = Vec::new();
    for file in &spec.control_files {
        let mode = if SCRIPTS.contains(&file.name.as_str()) {
            0o755
        } else {
            0o644
        };
        if file.name == "conffiles" {
            for line in file.contents.split(|&b| b == b'\n') {
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                // "remove-on-upgrade /path" is dpkg's flagged form.
                let path = line
                    .strip_prefix(b"remove-on-upgrade ")
                    .map(|p| p.trim_ascii())
                    .unwrap_or(line);
                if !regular.contains(path) {
                    return Err(spec_error(
                        spec,
                        "conffiles",
                        format!(
                            "{:?} is not a regular file of this package (conffiles lists absolute paths, one a line)",
                            String::from_utf8_lossy(path)
                        ),
                    ));
                }
                conffiles.push(path);
            }
        }
        members.insert(file.name.as_str(), (mode, file.contents.clone()));
    }
    // As dh_md5sums: every regular file but the conffiles, sorted by path;
    // no md5sums member for a package without files.
    let mut text = Vec::new();
    for (md5, path) in md5sums {
        let mut abs = path.clone();
        abs.insert(0, b'/');
        if conffiles.contains(&abs.as_slice()) {
            continue;
        }
        text.extend_from_slice(md5.as_bytes());
        text.extend_from_slice(b"  ");
        text.extend_from_slice(path);
        text.push(b'\n');
    }
    if !text.is_empty() {
        members.insert("md5sums", (0o644, text));
    }

    let mtime = sde as u64;
    let mut tar = TarWriter::new(Vec::new());
    let io_err = |e| Error::io("writing control.tar of", spec.package.as_str(), e);
    tar.header(&TarHeader {
        name: b"./",
        mode: 0o755,
        size: 0,
        mtime,
        kind: b'5',
        link: b"",
    })
    .map_err(io_err)?;
    for (name, (mode, contents)) in &members {
        let archive_name = format!("./{name}");
        tar.header(&TarHeader {
            name: archive_name.as_bytes(),
            mode: *mode,
            size: contents.len() as u64,
            mtime,
            kind: b'0',
            link: b"",
        })
        .map_err(io_err)?;
        tar.content(contents).map_err(io_err)?;
        tar.pad().map_err(io_err)?;
    }
    tar.finish().map_err(io_err)
}

// ---------------------------------------------------------------------------
// GNU tar

struct TarHeader<'a> {
    name: &'a [u8],
    mode: u32,
    size: u64,
    mtime: u64,
    kind: u8,
    link: &'a [u8],
}

/// Writes tar as GNU tar 1.34 does with `--format=gnu --owner=root:0
/// --group=root:0`, counting bytes to pad the end to a whole record.
struct TarWriter<W: Write> {
    inner: W,
    written: u64,
}

impl<W: Write> TarWriter<W> {
    fn new(inner: W) -> Self {
        TarWriter { inner, written: 0 }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn header(&mut self, h: &TarHeader) -> io::Result<()> {
        // GNU tar writes the long link target first, then the long name.
        if h.link.len() > 100 {
            self.long(b'K', h.link)?;
        }
        if h.name.len() > 100 {
            self.long(b'L', h.name)?;
        }
        let block = raw_header(h.name, h.mode, h.size, h.mtime, h.kind, h.link);
        self.put(&block)
    }

    /// A `././@LongLink` record holding `value` and a NUL.
    fn long(&mut self, kind: u8, value: &[u8]) -> io::Result<()> {
        let size = value.len() as u64 + 1;
        let block = raw_header(b"././@LongLink", 0o644, size, 0, kind, b"");
        self.put(&block)?;
        self.put(value)?;
        self.put(&[0])?;
        self.pad()
    }

    fn content(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.put(bytes)
    }

    /// Zeros up to the next block boundary.
    fn pad(&mut self) -> io::Result<()> {
        let rem = (self.written % BLOCK as u64) as usize;
        if rem != 0 {
            self.put(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// Two zero blocks, then zeros to a whole record.
    fn finish(mut self) -> io::Result<W> {
        self.pad()?;
        self.put(&[0u8; 2 * BLOCK])?;
        let rem = self.written % RECORD;
        if rem != 0 {
            let zeros = vec![0u8; (RECORD - rem) as usize];
            self.put(&zeros)?;
        }
        Ok(self.inner)
    }
}

fn raw_header(name: &[u8], mode: u32, size: u64, mtime: u64, kind: u8, link: &[u8]) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    // Truncated names are what GNU tar leaves there after a long record.
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    numeric(&mut h[124..136], size);
    numeric(&mut h[136..148], mtime);
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..265].copy_from_slice(b"ustar  \0");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
}

/// Zero-padded octal and a NUL, filling the field.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// Octal when it fits, else GNU's base-256 (high bit set, big-endian).
fn numeric(field: &mut [u8], value: u64) {
    if value <= OCTAL11_MAX {
        octal(field, value);
    } else {
        field.fill(0);
        field[0] = 0x80;
        let bytes = value.to_be_bytes();
        let len = field.len();
        field[len - 8..].copy_from_slice(&bytes);
    }
}

// ---------------------------------------------------------------------------
// xz and ar

/// liblzma's multi-threaded encoder with its default block size: what
/// `dpkg-deb` uses, and whose output does not depend on `threads`.
fn xz_writer<W: Write>(
    inner: W,
    level: u32,
    threads: u32,
    path: &Path,
) -> Result<xz2::write::XzEncoder<W>> {
    let stream = xz2::stream::MtStreamBuilder::new()
        .preset(level)
        .threads(threads)
        .block_size(0)
        .timeout_ms(0)
        .check(xz2::stream::Check::Crc64)
        .encoder()
        .map_err(|e| Error::io("starting to compress", path, e.into()))?;
    Ok(xz2::write::XzEncoder::new_stream(inner, stream))
}

fn xz_bytes(data: &[u8], level: u32, path: &Path) -> Result<Vec<u8>> {
    let mut enc = xz_writer(Vec::new(), level, 1, path)?;
    enc.write_all(data)
        .and_then(|()| enc.finish())
        .map_err(|e| Error::io("compressing", path, e))
}

/// One `ar` member header as dpkg-deb writes it: name padded with spaces
/// (no trailing slash), the epoch as mtime, root, mode 100644.
fn ar_header(name: &str, mtime: i64, size: u64) -> Vec<u8> {
    format!(
        "{name:<16}{mtime:<12}{:<6}{:<6}{:<8}{size:<10}`\n",
        0, 0, "100644"
    )
    .into_bytes()
}

/// The temporary files of one write, beside the destination.
struct Output {
    deb_tmp: PathBuf,
    data_tmp: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Output {
    fn new(dir: &Path, filename: &str) -> Output {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let stem = format!(".{filename}.{}.{n}", std::process::id());
        Output {
            deb_tmp: dir.join(format!("{stem}.tmp")),
            data_tmp: dir.join(format!("{stem}.data.tmp")),
        }
    }

    fn discard(&self) {
        let _ = fs::remove_file(&self.deb_tmp);
        let _ = fs::remove_file(&self.data_tmp);
    }
}

/// Writes the ar archive to `out.deb_tmp` from the control member and the
/// data member's temporary file; returns its sha256, md5 and size.
fn assemble(out: &Output, control_xz: &[u8], sde: i64) -> Result<(String, String, u64)> {
    let tmp = &out.deb_tmp;
    let mut data = File::open(&out.data_tmp).map_err(|e| Error::io("opening", &out.data_tmp, e))?;
    let data_size = data
        .seek(SeekFrom::End(0))
        .and_then(|size| data.seek(SeekFrom::Start(0)).map(|_| size))
        .map_err(|e| Error::io("reading", &out.data_tmp, e))?;

    let file = File::create(tmp).map_err(|e| Error::io("creating", tmp, e))?;
    let mut w = HashingWriter {
        inner: BufWriter::with_capacity(COPY_BUFFER, file),
        sha256: Sha256::new(),
        md5: Md5::new(),
        size: 0,
    };
    let io_err = |e| Error::io("writing", tmp, e);
    let mut head = b"!<arch>\n".to_vec();
    head.extend(ar_header("debian-binary", sde, 4));
    head.extend_from_slice(b"2.0\n");
    head.extend(ar_header("control.tar.xz", sde, control_xz.len() as u64));
    head.extend_from_slice(control_xz);
    if control_xz.len() % 2 == 1 {
        head.push(b'\n');
    }
    head.extend(ar_header("data.tar.xz", sde, data_size));
    w.write_all(&head).map_err(io_err)?;
    let copied = io::copy(&mut data, &mut w).map_err(io_err)?;
    if copied != data_size {
        return Err(Error::io(
            "reading",
            &out.data_tmp,
            io::Error::new(io::ErrorKind::UnexpectedEof, "the file changed size"),
        ));
    }
    if data_size % 2 == 1 {
        w.write_all(b"\n").map_err(io_err)?;
    }
    let HashingWriter {
        inner,
        sha256,
        md5,
        size,
    } = w;
    let file = inner.into_inner().map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)?;
    Ok((
        hex::encode(sha256.finalize()),
        hex::encode(md5.finalize()),
        size,
    ))
}

struct HashingWriter<W: Write> {
    inner: W,
    sha256: Sha256,
    md5: Md5,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha256.update(&buf[..n]);
        self.md5.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

// ---------------------------------------------------------------------------
// system calls

/// A C string of a path component, which [`build_tree`] checked holds no
/// NUL byte.
fn cstring(name: &[u8]) -> CString {
    CString::new(name).unwrap_or_default()
}

/// Opens file `name` in `parent` for reading, never following a symlink
/// and never blocking on a FIFO swapped in.
fn open_file(parent: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: as above.
    let fd = cvt(unsafe {
        libc::openat(
            parent,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })?;
    Ok(owned(fd))
}

fn lstat_at(parent: RawFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: `st` is written by the kernel on success only.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    cvt(unsafe { libc::fstatat(parent, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: as above.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor we hold.
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

fn readlink_at(parent: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: the buffer is valid for its length.
        let n =
            unsafe { libc::readlinkat(parent, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        if buf.len() >= 1 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "symlink target longer than 1 MiB",
            ));
        }
        buf.resize(buf.len() * 2, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_drop_the_epoch() {
        let spec = BinarySpec {
            package: "foo".into(),
            version: "1:2.0-1".into(),
            architecture: "amd64".into(),
            ..Default::default()
        };
        assert_eq!(deb_filename(&spec), "foo_2.0-1_amd64.deb");
    }

    #[test]
    fn long_descriptions() {
        assert_eq!(
            long_description("\nFirst line.\n\n  verbatim  \nlast\n\n"),
            " First line.\n .\n   verbatim\n last\n"
        );
        assert_eq!(long_description("\n \n"), "");
    }

    #[test]
    fn tar_numbers() {
        let mut f = [0u8; 12];
        numeric(&mut f, 8);
        assert_eq!(&f, b"00000000010\0");
        numeric(&mut f, 1 << 40);
        assert_eq!(f[0], 0x80);
        assert_eq!(&f[4..], &(1u64 << 40).to_be_bytes());
        let mut m = [0u8; 8];
        octal(&mut m, 0o755);
        assert_eq!(&m, b"0000755\0");
    }

    #[test]
    fn ar_headers_are_sixty_bytes() {
        let h = ar_header("debian-binary", 1_600_000_000, 4);
        assert_eq!(h.len(), 60);
        assert_eq!(
            &h[..],
            &b"debian-binary   1600000000  0     0     100644  4         `\n"[..]
        );
    }
}
