//! Makes one layer of two: a lower layer with an overlay upper layer
//! applied to it, as the overlay showed them together.
//!
//! An environment stacks layers (base-install, base-build, a pkg-env), and
//! every lookup in its overlay walks them top down: each layer more costs a
//! real build a few percent. A layer that every environment stands on is
//! worth flattening once. The result is a new directory: what only the
//! lower layer has is hard-linked (the lower layer stays as it was), what
//! the upper layer has is moved there (the upper layer is used up), its
//! whiteouts drop the lower entry and its opaque directories hide the
//! lower one's contents. overlayfs's own markers do not survive: the
//! result is a plain tree.
//!
//! Both layers are comb's (kept uppers are written by `copyout`, which
//! keeps no attribute but overlayfs's), yet their names and links come
//! from packages, so the walk goes through directory file descriptors and
//! never follows a link.

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, FileStat, Mode};
use nix::unistd::{fchown, linkat, Gid, Uid};
use std::collections::BTreeSet;
use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const MAX_DEPTH: usize = crate::extract::LAYER_MAX_DEPTH;
/// The marker of a directory that replaced the lower one (with
/// `userxattr`, which comb's overlays use).
const OPAQUE: &CStr = c"user.overlay.opaque";
/// Markers of overlay features comb never turns on; a layer carrying one
/// was not made by comb's overlay and is not flattened wrongly.
const UNSUPPORTED: [&CStr; 2] = [c"user.overlay.redirect", c"user.overlay.metacopy"];

/// Writes into the new directory `out` (which must not exist; same file
/// system as both layers) the tree `upper` applied to `lower`, consuming
/// `upper`'s entries. The caller removes what is left of `upper`.
pub fn flatten(lower: &Path, upper: &Path, out: &Path) -> Result<(), String> {
    let open = |p: &Path| {
        nix::fcntl::open(
            p,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("flattening layers: opening {}: {e}", p.display()))
    };
    let (lower_fd, upper_fd) = (open(lower)?, open(upper)?);
    let st = nix::sys::stat::fstat(&upper_fd)
        .map_err(|e| format!("flattening layers: reading {}: {e}", upper.display()))?;
    nix::unistd::mkdir(out, Mode::from_bits_truncate(0o700))
        .map_err(|e| format!("flattening layers: creating {}: {e}", out.display()))?;
    let out_fd = open(out)?;
    merge(
        Some(lower_fd.as_fd()),
        Some(upper_fd.as_fd()),
        out_fd.as_fd(),
        Path::new(""),
        0,
    )?;
    finish(&out_fd, &st, Path::new(""))
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> String {
    format!("flattening layers: {what} /{}: {e}", path.display())
}

fn stat_of(dir: BorrowedFd, name: &CStr, path: &Path) -> Result<Option<FileStat>, String> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(err(path, "reading", e)),
    }
}

fn open_dir(dir: BorrowedFd, name: &CStr, path: &Path) -> Result<OwnedFd, String> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(path, "opening", e))
}

fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// overlayfs's whiteout: a character device 0:0.
fn is_whiteout(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// Whether a directory carries the xattr `name`, and its value.
fn xattr(fd: BorrowedFd, name: &CStr, path: &Path) -> Result<Option<Vec<u8>>, String> {
    let mut value = [0u8; 64];
    // SAFETY: a valid name and a buffer valid for its length.
    let n = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    if n >= 0 {
        return Ok(Some(value[..n as usize].to_vec()));
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
        _ => Err(err(path, "reading the attributes of", e)),
    }
}

/// Whether an upper directory replaced the lower one; refuses overlay
/// features comb does not use.
fn is_opaque(fd: BorrowedFd, path: &Path) -> Result<bool, String> {
    for name in UNSUPPORTED {
        if xattr(fd, name, path)?.is_some() {
            return Err(err(
                path,
                &format!("{} (not made by comb's overlay) on", name.to_string_lossy()),
                "refusing to flatten",
            ));
        }
    }
    Ok(xattr(fd, OPAQUE, path)?.as_deref() == Some(b"y"))
}

/// Fills `out` with `lower`'s entries and `upper`'s over them.
fn merge(
    lower: Option<BorrowedFd>,
    upper: Option<BorrowedFd>,
    out: BorrowedFd,
    path: &Path,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(err(path, "nesting deeper than", MAX_DEPTH));
    }
    let mut all = BTreeSet::new();
    for dir in [lower, upper].into_iter().flatten() {
        all.extend(crate::copyout::names_in(dir).map_err(|e| err(path, "reading", e))?);
    }
    for name in all {
        let entry = path.join(OsStr::from_bytes(name.to_bytes()));
        let below = match lower {
            Some(l) => stat_of(l, &name, &entry)?,
            None => None,
        };
        let above = match upper {
            Some(u) => stat_of(u, &name, &entry)?,
            None => None,
        };
        match (above, below) {
            (Some(st), _) if is_whiteout(&st) => {}
            (Some(st), below) if is_dir(&st) => {
                let upper = upper.expect("an upper entry has an upper directory");
                let from = open_dir(upper, &name, &entry)?;
                let lower_dir = match (below, lower) {
                    (Some(b), Some(l)) if is_dir(&b) && !is_opaque(from.as_fd(), &entry)? => {
                        Some(open_dir(l, &name, &entry)?)
                    }
                    _ => None,
                };
                let made = new_dir(out, &name, &entry)?;
                merge(
                    lower_dir.as_ref().map(AsFd::as_fd),
                    Some(from.as_fd()),
                    made.as_fd(),
                    &entry,
                    depth + 1,
                )?;
                finish(&made, &st, &entry)?;
            }
            (Some(_), _) => {
                let upper = upper.expect("an upper entry has an upper directory");
                renameat(upper, name.as_c_str(), out, name.as_c_str())
                    .map_err(|e| err(&entry, "moving", e))?;
            }
            (None, Some(st)) if is_dir(&st) => {
                let lower = lower.expect("a lower entry has a lower directory");
                let from = open_dir(lower, &name, &entry)?;
                let made = new_dir(out, &name, &entry)?;
                merge(Some(from.as_fd()), None, made.as_fd(), &entry, depth + 1)?;
                finish(&made, &st, &entry)?;
            }
            (None, Some(_)) => {
                let lower = lower.expect("a lower entry has a lower directory");
                // The link itself, never what a symlink names.
                linkat(
                    lower,
                    name.as_c_str(),
                    out,
                    name.as_c_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| err(&entry, "linking", e))?;
            }
            // Listed, then gone: nothing of ours removes entries meanwhile.
            (None, None) => return Err(err(&entry, "reading", "it vanished")),
        }
    }
    Ok(())
}

fn new_dir(out: BorrowedFd, name: &CStr, path: &Path) -> Result<OwnedFd, String> {
    mkdirat(out, name, Mode::from_bits_truncate(0o700)).map_err(|e| err(path, "creating", e))?;
    open_dir(out, name, path)
}

/// A directory's owner, then mode (a change of owner may clear set-id
/// bits), then times, once its entries are in.
fn finish(fd: &OwnedFd, st: &FileStat, path: &Path) -> Result<(), String> {
    fchown(
        fd,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )
    .map_err(|e| err(path, "setting the owner of", e))?;
    fchmod(fd, Mode::from_bits_truncate(st.st_mode & 0o7777))
        .map_err(|e| err(path, "setting the mode of", e))?;
    let atime = nix::sys::time::TimeSpec::new(st.st_atime, st.st_atime_nsec);
    let mtime = nix::sys::time::TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    nix::sys::stat::futimens(fd, &atime, &mtime).map_err(|e| err(path, "setting the times of", e))
}
