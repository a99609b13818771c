//! Reading files out of a finished sandbox without trusting them.
//!
//! Everything below the trees handed to this module was written by a package
//! and may be hostile: an output directory a build wrote ([`extract_output`]),
//! or the upper directory of an overlay that is about to become a cached,
//! read-only layer ([`validate_layer`]). The module guarantees:
//!
//! * No link is ever followed and no path is ever built from names found in
//!   the tree: the walk goes from directory fd to directory fd with
//!   `openat(O_NOFOLLOW)` and `fstatat(AT_SYMLINK_NOFOLLOW)`, and every
//!   opened fd is `fstat`ed again, so an entry swapped between the stat and
//!   the open is noticed and rejected instead of being trusted.
//! * Only regular files, directories and symbolic links are accepted (and,
//!   in layers, overlayfs whiteouts, i.e. character devices 0:0). Devices,
//!   FIFOs, sockets, setuid and setgid bits, names that are `.`/`..` or hold
//!   `/` or control characters, hard links to files outside the tree, and
//!   (in layers) owners a sandbox cannot map are rejected with an error that
//!   names the path relative to the tree root (`./a/b`), with control
//!   characters escaped so that a name cannot forge terminal output.
//! * The walk is iterative, bounded in depth and in entries, and holds at
//!   most two fds per directory level, so a 10,000-deep tree is a clean
//!   [`ExtractError::TooDeep`], not a stack overflow or `EMFILE`.
//! * [`extract_output`] leaves either the complete, normalised copy or
//!   nothing: on any error it removes what it created. [`validate_layer`]
//!   changes nothing at all.
//!
//! Hard links: a file with several links is accepted only if all of its
//! links are inside the tree. [`extract_output`] recreates such regular
//! files as hard links of one copy in the destination (so a hostile tree
//! cannot multiply one large file into many copies); hard-linked symbolic
//! links are recreated as separate symbolic links.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{open, openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode};
use nix::unistd::{linkat, symlinkat, unlinkat, UnlinkatFlags};

/// What [`extract_output`] does with symbolic links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymlinkPolicy {
    /// Any symbolic link is an error.
    Reject,
    /// Keep a link only if its target is relative and, resolved inside the
    /// tree (following the tree's own links), never leaves it.
    KeepContained,
    /// Copy every link verbatim; the consumer must never follow them.
    KeepAny,
}

/// Limits and choices for [`extract_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPolicy {
    pub symlinks: SymlinkPolicy,
    /// Deepest entry accepted, counted in path components below the root.
    pub max_depth: usize,
    /// Most entries (of any kind, below the root) accepted.
    pub max_entries: u64,
}

impl Default for OutputPolicy {
    fn default() -> Self {
        OutputPolicy {
            symlinks: SymlinkPolicy::KeepContained,
            max_depth: 256,
            max_entries: 1_000_000,
        }
    }
}

/// What a walk found below the root (the root itself is not counted).
/// `bytes` is the size of regular-file content, each inode counted once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExtractReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub whiteouts: u64,
    pub bytes: u64,
}

/// Why a tree was refused. Paths are relative to the tree root (`./a/b`)
/// except for errors about the root or destination arguments themselves.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("{}: {reason}", show(.path))]
    Rejected { path: PathBuf, reason: String },
    #[error("{}: {source}", show(.path))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: nested deeper than {max} levels", show(.path))]
    TooDeep { path: PathBuf, max: usize },
    #[error("{}: more than {max} entries in the tree", show(.path))]
    TooMany { path: PathBuf, max: u64 },
}

/// A path for an error message, with control characters escaped: names come
/// from a hostile tree and must not be able to write to the user's terminal.
fn show(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn rejected(path: &Path, reason: impl Into<String>) -> ExtractError {
    ExtractError::Rejected {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn io_err(path: &Path, e: impl Into<std::io::Error>) -> ExtractError {
    ExtractError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Depth and entry limits for [`validate_layer`], which takes no policy: a
/// Debian root file system is far shallower and smaller than this.
pub(crate) const LAYER_MAX_DEPTH: usize = 256;
const LAYER_MAX_ENTRIES: u64 = 4_000_000;
/// Same bound as the kernel's for following symbolic links.
const MAX_SYMLINK_HOPS: u32 = 40;

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Copies the tree `src` into `dst`, validating every entry.
///
/// `dst` must not exist; it is created (mode 0700 while being filled, 0755
/// at the end) and removed again if anything fails. In the copy, files are
/// 0644, or 0755 if any execute bit was set, directories 0755, everything is
/// owned by the caller, and times are not preserved. Symbolic links follow
/// `policy.symlinks`; regular files hard-linked inside `src` are hard-linked
/// in `dst`.
pub fn extract_output(
    src: &Path,
    dst: &Path,
    policy: &OutputPolicy,
) -> Result<ExtractReport, ExtractError> {
    // Open the source first so that a bad source creates nothing.
    let src_fd = open_root(src)?;
    let name = match dst.file_name() {
        Some(name) => name,
        None => {
            return Err(io_err(
                dst,
                std::io::Error::new(ErrorKind::InvalidInput, "not a usable destination"),
            ))
        }
    };
    let parent = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // The destination's own path is the caller's, so following links in it is fine.
    let parent_fd = open(
        parent,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(parent, e))?;
    mkdirat(&parent_fd, name, Mode::from_bits_truncate(0o700)).map_err(|e| io_err(dst, e))?;

    // From here on `dst` is ours: any failure must remove it, and only it.
    let root = match open_created(&parent_fd, name, dst) {
        Ok(root) => root,
        Err(e) => {
            // Still empty: nothing was written into it.
            let _ = unlinkat(&parent_fd, name, UnlinkatFlags::RemoveDir);
            return Err(e);
        }
    };
    let result = fill(src_fd, &root, dst, policy);
    if result.is_err() {
        let id = fstat(&root).map(|st| (st.st_dev, st.st_ino));
        drop(root);
        if let Ok(id) = id {
            // Best effort: the walk's error is the one worth reporting.
            let _ = remove_created(&parent_fd, name, id);
        }
    }
    result
}

fn open_created(parent: &OwnedFd, name: &OsStr, dst: &Path) -> Result<OwnedFd, ExtractError> {
    openat(parent, name, DIR_FLAGS, Mode::empty()).map_err(|e| io_err(dst, e))
}

fn fill(
    src: OwnedFd,
    root: &OwnedFd,
    dst: &Path,
    policy: &OutputPolicy,
) -> Result<ExtractReport, ExtractError> {
    let frame_fd = root.try_clone().map_err(|e| io_err(dst, e))?;
    let report = Walker::new(
        Target::Output { policy, root },
        policy.max_depth,
        policy.max_entries,
    )
    .run(src, Some(frame_fd))?;
    fchmod(root, Mode::from_bits_truncate(0o755)).map_err(|e| io_err(dst, e))?;
    Ok(report)
}

/// Validates, in place, a kept overlay upper directory that is about to
/// become a cached read-only layer. Nothing is copied or changed: owners,
/// modes, times and extended attributes (such as the opaque-directory mark
/// `user.overlay.opaque`) are left alone.
///
/// Besides the checks shared with [`extract_output`], every owner and group
/// must be one a sandbox maps (0..=1000 or 65534..=65535). Character devices
/// 0:0 are overlayfs whiteouts and are accepted; symbolic links are accepted
/// whatever their target, since a layer is only ever used inside a sandbox.
/// Regular files are judged by one `fstatat` each and never opened.
pub fn validate_layer(dir: &Path) -> Result<ExtractReport, ExtractError> {
    let fd = open_root(dir)?;
    Walker::new(Target::Layer, LAYER_MAX_DEPTH, LAYER_MAX_ENTRIES).run(fd, None)
}

/// Opens the root of a tree; the path is the caller's, but its last
/// component must be a real directory, not a link to one.
fn open_root(path: &Path) -> Result<OwnedFd, ExtractError> {
    match open(path, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::ELOOP) => Err(rejected(path, "is a symbolic link, not a directory")),
        Err(e) => Err(io_err(path, e)),
    }
}

/// Where the walk writes, if anywhere.
enum Target<'a> {
    Output {
        policy: &'a OutputPolicy,
        root: &'a OwnedFd,
    },
    Layer,
}

/// A directory on the walk's explicit stack.
struct Frame {
    src: OwnedFd,
    /// Its copy in the destination (only for [`extract_output`]).
    dst: Option<OwnedFd>,
    rel: PathBuf,
    depth: usize,
    /// Entries still to visit, sorted so that `pop` yields them in byte order.
    names: Vec<OsString>,
    /// Its node in the link model (only under [`SymlinkPolicy::KeepContained`]).
    node: usize,
}

/// A non-directory inode with more than one link.
struct Linked {
    nlink: u64,
    seen: u64,
    /// First path it was seen at.
    rel: PathBuf,
}

struct Walker<'a> {
    target: Target<'a>,
    max_depth: usize,
    max_entries: u64,
    entries: u64,
    report: ExtractReport,
    links: HashMap<(u64, u64), Linked>,
    model: Option<Model>,
}

impl<'a> Walker<'a> {
    fn new(target: Target<'a>, max_depth: usize, max_entries: u64) -> Self {
        let model = match &target {
            Target::Output { policy, .. } if policy.symlinks == SymlinkPolicy::KeepContained => {
                Some(Model::new())
            }
            _ => None,
        };
        Walker {
            target,
            max_depth,
            max_entries,
            entries: 0,
            report: ExtractReport::default(),
            links: HashMap::new(),
            model,
        }
    }

    fn is_layer(&self) -> bool {
        matches!(self.target, Target::Layer)
    }

    fn run(mut self, src: OwnedFd, dst: Option<OwnedFd>) -> Result<ExtractReport, ExtractError> {
        let rel = PathBuf::from(".");
        let st = fstat(&src).map_err(|e| io_err(&rel, e))?;
        self.check_mode(&rel, &st)?;
        if self.is_layer() {
            check_owner(&rel, &st)?;
        }
        let names = self.read_names(&src, &rel)?;
        let mut stack = vec![Frame {
            src,
            dst,
            rel,
            depth: 0,
            names,
            node: 0,
        }];
        while let Some(frame) = stack.last_mut() {
            let Some(name) = frame.names.pop() else {
                // Closes both fds of the finished directory.
                stack.pop();
                continue;
            };
            if let Some(child) = self.visit(frame, &name)? {
                stack.push(child);
            }
        }
        self.check_links()?;
        if let Some(model) = &self.model {
            model.check()?;
        }
        Ok(self.report)
    }

    /// Reads all names of a directory up front, so that only the directory's
    /// own fd stays open while its entries are visited. Entries are counted
    /// here, which also bounds the memory a huge directory can cost.
    fn read_names(&mut self, fd: &OwnedFd, rel: &Path) -> Result<Vec<OsString>, ExtractError> {
        // A fresh open file description of the same directory, so readdir's
        // position is not shared with `fd`.
        let mut dir = Dir::openat(
            fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(rel, e))?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| io_err(rel, e))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            self.entries += 1;
            if self.entries > self.max_entries {
                return Err(ExtractError::TooMany {
                    path: rel.join(OsStr::from_bytes(name)),
                    max: self.max_entries,
                });
            }
            names.push(OsString::from_vec(name.to_vec()));
        }
        names.sort_unstable_by(|a, b| b.cmp(a));
        Ok(names)
    }

    /// Handles one entry of `frame`; returns a new frame if it is a directory.
    fn visit(&mut self, frame: &Frame, name: &OsStr) -> Result<Option<Frame>, ExtractError> {
        let rel = frame.rel.join(name);
        check_name(name.as_bytes()).map_err(|why| rejected(&rel, why))?;
        let depth = frame.depth + 1;
        if depth > self.max_depth {
            return Err(ExtractError::TooDeep {
                path: rel,
                max: self.max_depth,
            });
        }
        let st =
            fstatat(&frame.src, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| io_err(&rel, e))?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => self.dir(frame, name, rel, depth, &st).map(Some),
            libc::S_IFREG => self.file(frame, name, &rel, &st).map(|()| None),
            libc::S_IFLNK => self.symlink(frame, name, &rel, &st).map(|()| None),
            libc::S_IFCHR if self.is_layer() && st.st_rdev == 0 => {
                self.check_mode(&rel, &st)?;
                check_owner(&rel, &st)?;
                // Not counted for hard links: overlayfs links whiteouts to a
                // shared inode in its work directory, outside the layer.
                self.report.whiteouts += 1;
                Ok(None)
            }
            libc::S_IFCHR => Err(rejected(
                &rel,
                format!(
                    "character device {}:{}",
                    libc::major(st.st_rdev),
                    libc::minor(st.st_rdev)
                ),
            )),
            libc::S_IFBLK => Err(rejected(
                &rel,
                format!(
                    "block device {}:{}",
                    libc::major(st.st_rdev),
                    libc::minor(st.st_rdev)
                ),
            )),
            libc::S_IFIFO => Err(rejected(&rel, "FIFO (named pipe)")),
            libc::S_IFSOCK => Err(rejected(&rel, "socket")),
            _ => Err(rejected(
                &rel,
                format!("unknown file type {:o}", st.st_mode & libc::S_IFMT),
            )),
        }
    }

    fn dir(
        &mut self,
        frame: &Frame,
        name: &OsStr,
        rel: PathBuf,
        depth: usize,
        st: &FileStat,
    ) -> Result<Frame, ExtractError> {
        let fd = openat(
            &frame.src,
            name,
            DIR_FLAGS | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| io_err(&rel, e))?;
        let st = same_inode(&rel, st, &fd, libc::S_IFDIR)?;
        self.check_mode(&rel, &st)?;
        if self.is_layer() {
            check_owner(&rel, &st)?;
        }
        let names = self.read_names(&fd, &rel)?;
        let dst = match &frame.dst {
            Some(parent) => Some(make_dir(parent, name, &rel)?),
            None => None,
        };
        let node = match &mut self.model {
            Some(model) => model.add(
                frame.node,
                name,
                Node::Dir {
                    parent: frame.node,
                    children: HashMap::new(),
                },
            ),
            None => 0,
        };
        self.report.dirs += 1;
        Ok(Frame {
            src: fd,
            dst,
            rel,
            depth,
            names,
            node,
        })
    }

    fn file(
        &mut self,
        frame: &Frame,
        name: &OsStr,
        rel: &Path,
        st: &FileStat,
    ) -> Result<(), ExtractError> {
        self.check_mode(rel, st)?;
        let (root, dst) = match (&self.target, &frame.dst) {
            (Target::Output { root, .. }, Some(dst)) => (*root, dst),
            _ => {
                check_owner(rel, st)?;
                if self.note_link(rel, st)?.is_none() {
                    self.report.bytes += file_size(rel, st)?;
                }
                self.report.files += 1;
                return Ok(());
            }
        };
        // A further link of a file already copied: link to the copy.
        if let Some(first) = self.note_link(rel, st)? {
            let first = first.strip_prefix(".").unwrap_or(&first);
            linkat(root, first, dst, name, AtFlags::empty()).map_err(|e| io_err(rel, e))?;
            self.report.files += 1;
            return Ok(());
        }
        // O_NONBLOCK: a FIFO swapped in after the stat must not block us.
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let fd = openat(&frame.src, name, flags, Mode::empty()).map_err(|e| io_err(rel, e))?;
        let st = same_inode(rel, st, &fd, libc::S_IFREG)?;
        self.check_mode(rel, &st)?;
        let size = file_size(rel, &st)?;
        let out = openat(
            dst,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| io_err(rel, e))?;
        let (src, out) = (File::from(fd), File::from(out));
        let copied = copy_contents(src, &out, size, rel)?;
        let mode = if st.st_mode & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        fchmod(&out, Mode::from_bits_truncate(mode)).map_err(|e| io_err(rel, e))?;
        self.report.bytes += copied;
        self.report.files += 1;
        Ok(())
    }

    fn symlink(
        &mut self,
        frame: &Frame,
        name: &OsStr,
        rel: &Path,
        st: &FileStat,
    ) -> Result<(), ExtractError> {
        let (policy, dst) = match (&self.target, &frame.dst) {
            (Target::Output { policy, .. }, Some(dst)) => (policy.symlinks, dst),
            _ => {
                check_owner(rel, st)?;
                self.note_link(rel, st)?;
                self.report.symlinks += 1;
                return Ok(());
            }
        };
        if policy == SymlinkPolicy::Reject {
            return Err(rejected(rel, "symbolic link, and this output accepts none"));
        }
        // If the entry was swapped for a non-link, this fails; if for another
        // link, that link's target is the one checked and copied.
        let target = readlinkat(&frame.src, name).map_err(|e| io_err(rel, e))?;
        let bytes = target.as_bytes();
        let why = if bytes.is_empty() {
            Some("is empty")
        } else if bytes.iter().any(|&b| b < 0x20) {
            Some("contains a control character")
        } else if policy == SymlinkPolicy::KeepContained {
            lexical_escape(frame.depth, bytes)
        } else {
            None
        };
        if let Some(why) = why {
            return Err(rejected(
                rel,
                format!(
                    "symbolic link to {}: target {why}",
                    show(Path::new(&target))
                ),
            ));
        }
        if let Some(model) = &mut self.model {
            let id = model.add(
                frame.node,
                name,
                Node::Link {
                    parent: frame.node,
                    target: target.clone(),
                },
            );
            model.links.push((id, rel.to_path_buf()));
        }
        self.note_link(rel, st)?;
        symlinkat(target.as_os_str(), dst, name).map_err(|e| io_err(rel, e))?;
        self.report.symlinks += 1;
        Ok(())
    }

    /// Rejects setuid bits, and setgid bits on anything but a directory.
    /// On a directory setgid only makes new files inherit its group (Debian's
    /// base-files ships /var/mail as 2775); the sticky bit is harmless.
    fn check_mode(&self, rel: &Path, st: &FileStat) -> Result<(), ExtractError> {
        if st.st_mode & libc::S_ISUID != 0 {
            return Err(rejected(rel, "setuid bit set"));
        }
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if st.st_mode & libc::S_ISGID != 0 && !is_dir {
            return Err(rejected(rel, "setgid bit set"));
        }
        Ok(())
    }

    /// Counts a link of a non-directory inode. Returns the first path the
    /// inode was seen at if this is not the first sight.
    fn note_link(&mut self, rel: &Path, st: &FileStat) -> Result<Option<PathBuf>, ExtractError> {
        #[allow(clippy::useless_conversion)] // nlink_t is u32 on some targets
        let nlink = u64::from(st.st_nlink);
        if nlink <= 1 {
            return Ok(None);
        }
        match self.links.get_mut(&(st.st_dev, st.st_ino)) {
            Some(linked) => {
                if linked.nlink != nlink {
                    return Err(rejected(rel, "link count changed while the tree was read"));
                }
                linked.seen += 1;
                Ok(Some(linked.rel.clone()))
            }
            None => {
                self.links.insert(
                    (st.st_dev, st.st_ino),
                    Linked {
                        nlink,
                        seen: 1,
                        rel: rel.to_path_buf(),
                    },
                );
                Ok(None)
            }
        }
    }

    /// Any inode with fewer links seen than it has is linked from outside.
    fn check_links(&self) -> Result<(), ExtractError> {
        let outside = self
            .links
            .values()
            .filter(|l| l.seen != l.nlink)
            .min_by(|a, b| a.rel.cmp(&b.rel));
        match outside {
            Some(l) => Err(rejected(
                &l.rel,
                format!(
                    "hard link to a file outside the tree ({} links, {} inside)",
                    l.nlink, l.seen
                ),
            )),
            None => Ok(()),
        }
    }
}

fn check_name(name: &[u8]) -> Result<(), &'static str> {
    match name {
        b"" => Err("empty name"),
        b"." | b".." => Err("name is . or .."),
        _ if name.contains(&b'/') => Err("name contains '/'"),
        _ if name.iter().any(|&b| b < 0x20) => Err("name contains a control character"),
        _ => Ok(()),
    }
}

/// Only ids a sandbox maps may own files in a layer.
fn mappable(id: u32) -> bool {
    id < 1001 || (65534..65536).contains(&id)
}

fn check_owner(rel: &Path, st: &FileStat) -> Result<(), ExtractError> {
    if !mappable(st.st_uid) {
        return Err(rejected(
            rel,
            format!("owned by uid {}, which no sandbox maps", st.st_uid),
        ));
    }
    if !mappable(st.st_gid) {
        return Err(rejected(
            rel,
            format!("owned by gid {}, which no sandbox maps", st.st_gid),
        ));
    }
    Ok(())
}

/// The stat of an opened fd, which must be the inode `before` described:
/// anything else means the entry was swapped between the stat and the open.
fn same_inode(
    rel: &Path,
    before: &FileStat,
    fd: &OwnedFd,
    kind: libc::mode_t,
) -> Result<FileStat, ExtractError> {
    let st = fstat(fd).map_err(|e| io_err(rel, e))?;
    if st.st_mode & libc::S_IFMT != kind || st.st_dev != before.st_dev || st.st_ino != before.st_ino
    {
        return Err(rejected(rel, "changed while the tree was read"));
    }
    Ok(st)
}

fn file_size(rel: &Path, st: &FileStat) -> Result<u64, ExtractError> {
    u64::try_from(st.st_size).map_err(|_| rejected(rel, "negative file size"))
}

/// Where a relative target would lead, judged by its text alone: `None` if
/// it stays inside the tree from a link `depth - 1` levels below the root.
/// Absolute targets are refused: a consumer on the host would follow them
/// to the host's own files.
fn lexical_escape(link_dir_depth: usize, target: &[u8]) -> Option<&'static str> {
    if target.first() == Some(&b'/') {
        return Some("is absolute");
    }
    let mut depth = link_dir_depth;
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return Some("leads outside the tree"),
            },
            _ => depth += 1,
        }
    }
    None
}

/// Creates a directory in the destination and opens it.
fn make_dir(parent: &OwnedFd, name: &OsStr, rel: &Path) -> Result<OwnedFd, ExtractError> {
    mkdirat(parent, name, Mode::from_bits_truncate(0o700)).map_err(|e| io_err(rel, e))?;
    let fd = openat(parent, name, DIR_FLAGS, Mode::empty()).map_err(|e| io_err(rel, e))?;
    // Explicitly, so the umask plays no part.
    fchmod(&fd, Mode::from_bits_truncate(0o755)).map_err(|e| io_err(rel, e))?;
    Ok(fd)
}

/// Copies exactly `size` bytes; a file that grows or shrinks meanwhile is
/// rejected rather than copied half. Uses `copy_file_range` and falls back
/// to a bounded buffer where the kernel cannot.
fn copy_contents(mut src: File, dst: &File, size: u64, rel: &Path) -> Result<u64, ExtractError> {
    let mut copied: u64 = 0;
    let mut in_kernel = true;
    let mut buf = Vec::new();
    let mut out = dst;
    loop {
        // One byte more than expected, so that growth is noticed.
        let want = usize::try_from(size.saturating_sub(copied).saturating_add(1))
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        let n = if in_kernel {
            match kernel_copy(&src, dst, want) {
                // Some file systems claim end of file early; let read() decide.
                Ok(0) if copied < size => {
                    in_kernel = false;
                    continue;
                }
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EXDEV | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                    in_kernel = false;
                    continue;
                }
                Err(e) => return Err(io_err(rel, e)),
            }
        } else {
            if buf.is_empty() {
                buf = vec![0u8; 64 * 1024];
            }
            let len = want.min(buf.len());
            let n = match src.read(&mut buf[..len]) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(rel, e)),
            };
            out.write_all(&buf[..n]).map_err(|e| io_err(rel, e))?;
            n
        };
        if n == 0 {
            break;
        }
        copied += n as u64;
        if copied > size {
            return Err(rejected(rel, "file grew while being copied"));
        }
    }
    if copied != size {
        return Err(rejected(rel, "file shrank while being copied"));
    }
    Ok(copied)
}

/// `copy_file_range` on the files' own positions (nix offers it only
/// behind a feature this workspace does not enable).
fn kernel_copy(src: &File, dst: &File, len: usize) -> Result<usize, Errno> {
    // SAFETY: both fds stay open for the call; null offsets make the kernel
    // use and advance the files' positions, and no memory is passed.
    let n = unsafe {
        libc::copy_file_range(
            src.as_raw_fd(),
            std::ptr::null_mut(),
            dst.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            0,
        )
    };
    Errno::result(n).map(|n| n as usize)
}

/// Removes the directory `name` of `parent`, which [`extract_output`]
/// created, with everything in it, never following a link. It climbs back
/// up with `..` instead of holding an fd per level, which is safe because
/// only this process writes below the (mode 0700) destination.
fn remove_created(parent: &OwnedFd, name: &OsStr, id: (u64, u64)) -> Result<(), Errno> {
    let mut cur = openat(parent, name, DIR_FLAGS, Mode::empty())?;
    let st = fstat(&cur)?;
    if (st.st_dev, st.st_ino) != id {
        // Not the directory we created; leave it alone.
        return Err(Errno::ESTALE);
    }
    let mut path: Vec<OsString> = Vec::new();
    loop {
        let mut sub = None;
        let mut dir = Dir::openat(
            &cur,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        for entry in dir.iter() {
            let entry = entry?;
            let entry_name = OsStr::from_bytes(entry.file_name().to_bytes());
            if entry_name == "." || entry_name == ".." {
                continue;
            }
            let st = fstatat(&cur, entry_name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                sub = Some(entry_name.to_os_string());
                break;
            }
            match unlinkat(&cur, entry_name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        drop(dir);
        if let Some(sub) = sub {
            let child = openat(&cur, sub.as_os_str(), DIR_FLAGS, Mode::empty())?;
            path.push(sub);
            cur = child;
            continue;
        }
        // `cur` is empty now.
        let Some(done) = path.pop() else { break };
        let up = openat(&cur, "..", DIR_FLAGS, Mode::empty())?;
        unlinkat(&up, done.as_os_str(), UnlinkatFlags::RemoveDir)?;
        cur = up;
    }
    drop(cur);
    unlinkat(parent, name, UnlinkatFlags::RemoveDir)
}

/// The directories and symbolic links of a tree being extracted under
/// [`SymlinkPolicy::KeepContained`], to resolve every kept link as the
/// kernel would. Judging each link's text alone is not enough: with
/// `d/up -> ..` (inside) and `d/x -> up/../..` (inside by its text), `d/x`
/// really resolves to the tree root's parent.
struct Model {
    nodes: Vec<Node>,
    /// Every kept link: its node and its path.
    links: Vec<(usize, PathBuf)>,
}

enum Node {
    Dir {
        parent: usize,
        children: HashMap<OsString, usize>,
    },
    Link {
        parent: usize,
        target: OsString,
    },
}

const ROOT: usize = 0;

impl Model {
    fn new() -> Self {
        Model {
            nodes: vec![Node::Dir {
                parent: ROOT,
                children: HashMap::new(),
            }],
            links: Vec::new(),
        }
    }

    fn add(&mut self, parent: usize, name: &OsStr, node: Node) -> usize {
        let id = self.nodes.len();
        self.nodes.push(node);
        if let Some(Node::Dir { children, .. }) = self.nodes.get_mut(parent) {
            children.insert(name.to_os_string(), id);
        }
        id
    }

    fn parent(&self, id: usize) -> usize {
        match self.nodes.get(id) {
            Some(Node::Dir { parent, .. } | Node::Link { parent, .. }) => *parent,
            None => ROOT,
        }
    }

    fn check(&self) -> Result<(), ExtractError> {
        for (id, rel) in &self.links {
            if let (Err(why), Some(Node::Link { target, .. })) =
                (self.resolve(*id), self.nodes.get(*id))
            {
                return Err(rejected(
                    rel,
                    format!("symbolic link to {}: {why}", show(Path::new(target))),
                ));
            }
        }
        Ok(())
    }

    /// Follows `link` through the tree. Components that do not exist (or
    /// are files) are taken as directories someone might create later, so
    /// `..` after them stays lexical; `..` after a real directory goes to its
    /// real parent, as in the kernel.
    fn resolve(&self, link: usize) -> Result<(), &'static str> {
        let mut cur = self.parent(link);
        // How many components below `cur` lie outside the model.
        let mut unknown = 0usize;
        let mut pending: Vec<&[u8]> = Vec::new();
        let mut hops = 0u32;
        let mut next = Some(link);
        loop {
            if let Some(id) = next.take() {
                let Some(Node::Link { target, .. }) = self.nodes.get(id) else {
                    break;
                };
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err("too many levels of symbolic links");
                }
                let target = target.as_bytes();
                if target.first() == Some(&b'/') {
                    return Err("leads to an absolute path");
                }
                pending.extend(target.split(|&b| b == b'/').rev());
            }
            let Some(c) = pending.pop() else { break };
            match c {
                b"" | b"." => {}
                b".." if unknown > 0 => unknown -= 1,
                b".." if cur == ROOT => return Err("leads outside the tree"),
                b".." => cur = self.parent(cur),
                _ if unknown > 0 => unknown += 1,
                _ => {
                    let child = match self.nodes.get(cur) {
                        Some(Node::Dir { children, .. }) => {
                            children.get(OsStr::from_bytes(c)).copied()
                        }
                        _ => None,
                    };
                    match child.and_then(|id| self.nodes.get(id).map(|n| (id, n))) {
                        Some((id, Node::Dir { .. })) => cur = id,
                        // A link resolves relative to the directory holding it, which is `cur`.
                        Some((id, Node::Link { .. })) => next = Some(id),
                        None => unknown = 1,
                    }
                }
            }
        }
        Ok(())
    }
}
