//! Small system-call helpers shared by the `.deb` reader and writer: they
//! walk a tree through directory fds and never follow a symlink.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub(crate) fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody
    // else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

pub(crate) fn open_root(root: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid C string; the flags ask for a directory.
    let fd = cvt(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    Ok(owned(fd))
}

/// Opens directory `name` in `parent`, failing (ELOOP) on a symlink.
pub(crate) fn open_dir(parent: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: a valid C string and a directory fd we hold.
    let fd = cvt(unsafe {
        libc::openat(
            parent,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    Ok(owned(fd))
}
