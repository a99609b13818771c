//! Copies a kept upper layer from the sandbox's size-capped tmpfs to the
//! host directory that will hold it.
//!
//! The upper layer is written on a tmpfs so `--disk` bounds it whether or
//! not it is kept: a layer written straight onto the host's disk could fill
//! it. Pid 1 copies it out after every other process of the sandbox is
//! gone, so nothing can race the walk; it still walks only through
//! directory fds and never follows a link. Ids are copied as seen inside,
//! and the idmapped target maps them back, as overlayfs itself would have.

use nix::dir::Dir;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, mknodat, Mode, SFlag};
use nix::unistd::{fchownat, linkat, symlinkat, Gid, Uid};
use std::collections::HashMap;
use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How deep a kept layer may nest; as deep as layer validation accepts.
const MAX_DEPTH: usize = crate::extract::LAYER_MAX_DEPTH;

type CopyResult<T> = Result<T, String>;

/// Copies the tree under `from` into the empty directory `to`, leaving out
/// the top-level directories named in `skip` (the sandbox's own `/tmp` and
/// `/dev`, which live in the upper layer but belong to no layer).
pub(crate) fn copy_tree(from: &OwnedFd, to: &OwnedFd, skip: &[&str]) -> CopyResult<()> {
    let mut copier = Copier {
        root: to.as_fd(),
        links: HashMap::new(),
        skip,
    };
    copier.copy_dir(from.as_fd(), to.as_fd(), Path::new(""), 0)
}

struct Copier<'a> {
    skip: &'a [&'a str],
    root: BorrowedFd<'a>,
    /// Inodes with several links, by source inode: the first copy's path,
    /// so later names become links to it.
    links: HashMap<u64, PathBuf>,
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> String {
    format!("keeping the upper layer: {what} /{}: {e}", path.display())
}

impl Copier<'_> {
    fn copy_dir(
        &mut self,
        from: BorrowedFd,
        to: BorrowedFd,
        path: &Path,
        depth: usize,
    ) -> CopyResult<()> {
        if depth > MAX_DEPTH {
            return Err(err(path, "nesting deeper than", MAX_DEPTH));
        }
        let names = names_in(from).map_err(|e| err(path, "reading", e))?;
        for name in names {
            if depth == 0 && self.skip.iter().any(|s| s.as_bytes() == name.to_bytes()) {
                continue;
            }
            let entry_path = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
            self.copy_entry(from, to, &name, &entry_path, depth)?;
        }
        copy_xattrs(from, to, path)
    }

    fn copy_entry(
        &mut self,
        from: BorrowedFd,
        to: BorrowedFd,
        name: &CStr,
        path: &Path,
        depth: usize,
    ) -> CopyResult<()> {
        let st = fstatat(from, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| err(path, "reading", e))?;
        let kind = st.st_mode & libc::S_IFMT;
        // A layer keeps setgid on directories (new files inherit the
        // group) and no set-id bit elsewhere; R may have set one (see
        // `seccomp::Rules::SetGid`).
        let kept_bits = if kind == libc::S_IFDIR {
            0o3777
        } else {
            0o1777
        };
        let perms = Mode::from_bits_truncate(st.st_mode & kept_bits);
        if kind != libc::S_IFDIR && st.st_nlink > 1 {
            if let Some(first) = self.links.get(&st.st_ino) {
                return linkat(self.root, first.as_path(), to, name, AtFlags::empty())
                    .map_err(|e| err(path, "linking", e));
            }
        }
        match kind {
            libc::S_IFDIR => {
                mkdirat(to, name, Mode::from_bits_truncate(0o700))
                    .map_err(|e| err(path, "creating", e))?;
                let open = |dir: BorrowedFd| {
                    openat(
                        dir,
                        name,
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| err(path, "opening", e))
                };
                let (src, dst) = (open(from)?, open(to)?);
                self.copy_dir(src.as_fd(), dst.as_fd(), path, depth + 1)?;
                finish(&dst, &st, perms, path)?;
            }
            libc::S_IFREG => {
                let src = openat(
                    from,
                    name,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| err(path, "opening", e))?;
                let dst = openat(
                    to,
                    name,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| err(path, "creating", e))?;
                let (mut reader, mut writer) = (std::fs::File::from(src), std::fs::File::from(dst));
                std::io::copy(&mut reader, &mut writer).map_err(|e| err(path, "copying", e))?;
                copy_xattrs(reader.as_fd(), writer.as_fd(), path)?;
                let dst = OwnedFd::from(writer);
                finish(&dst, &st, perms, path)?;
            }
            libc::S_IFLNK => {
                let target =
                    nix::fcntl::readlinkat(from, name).map_err(|e| err(path, "reading", e))?;
                symlinkat(target.as_os_str(), to, name).map_err(|e| err(path, "creating", e))?;
                own(to, name, &st, path)?;
                set_times(to, name, &st, path)?;
            }
            // overlayfs whiteouts are character devices 0:0, which an
            // unprivileged user may make; any other device is refused.
            libc::S_IFCHR if st.st_rdev == 0 => {
                mknodat(to, name, SFlag::S_IFCHR, Mode::empty(), 0)
                    .map_err(|e| err(path, "creating whiteout", e))?;
                own(to, name, &st, path)?;
            }
            libc::S_IFIFO => {
                nix::unistd::mkfifoat(to, name, perms).map_err(|e| err(path, "creating", e))?;
                own(to, name, &st, path)?;
            }
            // Sockets are meaningless in a layer, and devices cannot be
            // made inside; layer validation names anything left.
            _ => return Ok(()),
        }
        if kind != libc::S_IFDIR && st.st_nlink > 1 {
            self.links.insert(st.st_ino, path.to_path_buf());
        }
        Ok(())
    }
}

/// The names in the directory `dir` (but `.` and `..`), read through a
/// descriptor of its own so `dir`'s offset is left alone.
pub(crate) fn names_in(dir: BorrowedFd) -> nix::Result<Vec<std::ffi::CString>> {
    let reader = openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in Dir::from_fd(reader)?.iter() {
        let name = entry?.file_name().to_owned();
        if name.as_c_str() != c"." && name.as_c_str() != c".." {
            names.push(name);
        }
    }
    Ok(names)
}

fn own(dir: BorrowedFd, name: &CStr, st: &libc::stat, path: &Path) -> CopyResult<()> {
    fchownat(
        dir,
        name,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| err(path, "setting the owner of", e))
}

fn set_times(dir: BorrowedFd, name: &CStr, st: &libc::stat, path: &Path) -> CopyResult<()> {
    let atime = nix::sys::time::TimeSpec::new(st.st_atime, st.st_atime_nsec);
    let mtime = nix::sys::time::TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    nix::sys::stat::utimensat(
        dir,
        name,
        &atime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| err(path, "setting the times of", e))
}

/// Owner, then mode (a change of owner clears set-id bits), then times.
fn finish(fd: &OwnedFd, st: &libc::stat, perms: Mode, path: &Path) -> CopyResult<()> {
    nix::unistd::fchown(
        fd,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )
    .map_err(|e| err(path, "setting the owner of", e))?;
    fchmod(fd, perms).map_err(|e| err(path, "setting the mode of", e))?;
    let atime = nix::sys::time::TimeSpec::new(st.st_atime, st.st_atime_nsec);
    let mtime = nix::sys::time::TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    nix::sys::stat::futimens(fd, &atime, &mtime).map_err(|e| err(path, "setting the times of", e))
}

/// Copies overlayfs's own markers (`user.overlay.*`, such as the opaque
/// flag of a directory that replaced a lower one), and no other attribute:
/// ACLs and `user.*` attributes a command set stay in the sandbox.
fn copy_xattrs(from: BorrowedFd, to: BorrowedFd, path: &Path) -> CopyResult<()> {
    let mut names = vec![0u8; 4096];
    // SAFETY: the buffer is valid for its length.
    let len = unsafe { libc::flistxattr(from.as_raw_fd(), names.as_mut_ptr().cast(), names.len()) };
    if len < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTSUP) => Ok(()),
            _ => Err(err(path, "listing xattrs of", e)),
        };
    }
    names.truncate(len as usize);
    for name in names
        .split(|b| *b == 0)
        .filter(|n| n.starts_with(b"user.overlay."))
    {
        let c_name = std::ffi::CString::new(name).map_err(|e| err(path, "xattr name of", e))?;
        let mut value = vec![0u8; 4096];
        // SAFETY: valid name and buffer.
        let n = unsafe {
            libc::fgetxattr(
                from.as_raw_fd(),
                c_name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if n < 0 {
            return Err(err(
                path,
                "reading xattrs of",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: valid name and buffer of n bytes.
        let set = unsafe {
            libc::fsetxattr(
                to.as_raw_fd(),
                c_name.as_ptr(),
                value.as_ptr().cast(),
                n as usize,
                0,
            )
        };
        if set < 0 {
            return Err(err(
                path,
                "writing xattrs of",
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}
