//! Small file-system helpers: flock, fsync of directories, and a removal of
//! directory trees that never follows a symlink and copes with directories
//! their writer left read-only or mode 000.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag, AT_FDCWD};
use nix::sys::stat::{fchmod, fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Takes a shared flock on `file`. `wait` blocks while an exclusive one is
/// held; without it, returns `Ok(false)` at once.
pub(crate) fn flock_shared(file: &File, wait: bool) -> io::Result<bool> {
    flock(file, libc::LOCK_SH, wait)
}

/// Takes an exclusive flock on `file`. `wait` blocks until it is free;
/// otherwise returns `Ok(false)` if another open file description holds it.
pub(crate) fn flock_exclusive(file: &File, wait: bool) -> io::Result<bool> {
    flock(file, libc::LOCK_EX, wait)
}

fn flock(file: &File, kind: libc::c_int, wait: bool) -> io::Result<bool> {
    let op = if wait { kind } else { kind | libc::LOCK_NB };
    loop {
        // SAFETY: flock on a valid, owned file descriptor.
        let r = unsafe { libc::flock(file.as_raw_fd(), op) };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !wait => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Makes the entries of a directory (creations, renames) durable.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn cstring(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in file name"))
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Removes `path` and everything below it. Never follows a symlink (a link
/// is unlinked, its target untouched), works relative to directory file
/// descriptors so a concurrent rename cannot redirect it, and gives each
/// directory mode 0700 before descending (its writer may have left it 0555 or
/// 000; root passes DAC checks anyway, an ordinary user does not).
/// A missing `path` is not an error.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            },
            n,
        ),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "refusing to remove a path without a final component",
            ))
        }
    };
    let parent_fd = match openat(AT_FDCWD, parent, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(errno_io(e)),
    };
    remove_entry(&parent_fd, &cstring(name)?)
}

/// Removes the entry `name` of the directory `dir`, recursively.
fn remove_entry(dir: &OwnedFd, name: &CString) -> io::Result<()> {
    let st = match fstatat(
        dir.as_fd(),
        name.as_c_str(),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(errno_io(e)),
    };
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        return match unlinkat(dir.as_fd(), name.as_c_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(errno_io(e)),
        };
    }
    let sub = match openat(dir.as_fd(), name.as_c_str(), DIR_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        // A 000 directory cannot be opened by a non-root owner: open it up.
        Err(Errno::EACCES) => {
            chmod_at(dir, name)?;
            openat(dir.as_fd(), name.as_c_str(), DIR_FLAGS, Mode::empty()).map_err(errno_io)?
        }
        Err(e) => return Err(errno_io(e)),
    };
    // Needed to unlink its entries (w) and look them up (x).
    fchmod(sub.as_fd(), Mode::from_bits_truncate(0o700)).map_err(errno_io)?;
    for child in list_dir(&sub)? {
        remove_entry(&sub, &child)?;
    }
    drop(sub);
    match unlinkat(dir.as_fd(), name.as_c_str(), UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(errno_io(e)),
    }
}

fn chmod_at(dir: &OwnedFd, name: &CString) -> io::Result<()> {
    // Not following: if the directory was swapped for a link meanwhile, the
    // link's target must not change mode.
    nix::sys::stat::fchmodat(
        dir.as_fd(),
        name.as_c_str(),
        Mode::from_bits_truncate(0o700),
        nix::sys::stat::FchmodatFlags::NoFollowSymlink,
    )
    .map_err(errno_io)
}

fn list_dir(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    // Dir takes ownership; give it its own descriptor of the same directory.
    let fd = openat(dir.as_fd(), c".", DIR_FLAGS, Mode::empty()).map_err(errno_io)?;
    let mut d = Dir::from_fd(fd).map_err(errno_io)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(errno_io)?;
        let n = entry.file_name();
        if n.to_bytes() == b"." || n.to_bytes() == b".." {
            continue;
        }
        names.push(n.to_owned());
    }
    Ok(names)
}

/// The apparent size of everything under `path`: regular files' lengths and
/// symlinks' target lengths, each hard-linked inode counted once. Symlinks
/// are not followed.
pub(crate) fn tree_size(path: &Path) -> io::Result<u64> {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p)?;
        let ft = md.file_type();
        if ft.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        } else if ft.is_file() || ft.is_symlink() {
            if md.nlink() > 1 && !seen.insert((md.dev(), md.ino())) {
                continue;
            }
            total = total.saturating_add(md.len());
        }
    }
    Ok(total)
}
