//! The disk limit: pid 1 adds up what the sandbox has written (its upper
//! layer, `/tmp` and `/dev/shm`, on one tmpfs, and its writable binds,
//! which live on the host's disk) a few times a second, and the sandbox is killed once the
//! sum exceeds [`crate::Limits::disk_bytes`].
//!
//! Pid 1 measures from inside, as R of the user namespace: it can read
//! every directory the command made, whoever inside owns it, where the
//! caller on the host may not. The binds are walked from the descriptors
//! pid 1 mounted them from, never by path, without following a link or
//! crossing into another mount, so the command cannot steer the walk.
//!
//! The same walk finds the evidence of the file size limit: the kernel
//! stops a write at the limit (and signals the writer, whichever process
//! of the build that is), so a failed command that left a file of exactly
//! that size behind ran into it.

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};
use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// Deeper trees count as over the limit: no build makes them, and walking
/// them would need more descriptors than pid 1 may hold.
const MAX_DEPTH: usize = 4096;

/// The shortest pause between two measurements.
const MIN_INTERVAL: Duration = Duration::from_millis(250);

pub(crate) struct DiskWatch<'a> {
    limit: u64,
    /// The roots of the writable binds (their mount sources).
    binds: Vec<&'a OwnedFd>,
    next: Instant,
    pub peak: u64,
}

impl<'a> DiskWatch<'a> {
    pub fn new(limit: u64, binds: Vec<&'a OwnedFd>) -> DiskWatch<'a> {
        DiskWatch {
            limit,
            binds,
            next: Instant::now(),
            peak: 0,
        }
    }

    /// How long pid 1 may sleep before it should measure again.
    pub fn until_due(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    /// Measures if due; true when the limit is exceeded.
    pub fn exceeded(&mut self) -> bool {
        if Instant::now() < self.next {
            return false;
        }
        let started = Instant::now();
        let used = self.measure();
        self.peak = self.peak.max(used.unwrap_or(u64::MAX));
        // A walk of a large tree is not repeated back to back: pid 1 would
        // spend its time measuring.
        let spent = started.elapsed();
        self.next = Instant::now() + MIN_INTERVAL.max(spent * 4);
        used.is_none_or(|u| u > self.limit)
    }

    /// Bytes in use, or `None` for a tree too deep to measure.
    fn measure(&self) -> Option<u64> {
        let mut total = 0u64;
        // The overlay reports its upper file system: the staging tmpfs,
        // which also holds /tmp, /dev and /dev/shm.
        total = total.saturating_add(filesystem_used("/"));
        let mut seen = HashSet::new();
        for root in &self.binds {
            total = total.saturating_add(walk_tree(root.as_fd(), &mut seen)?.total);
        }
        Some(total)
    }
}

/// Whether a regular file below one of `roots` has reached `limit` bytes.
pub(crate) fn any_file_reached(roots: &[BorrowedFd], limit: u64) -> bool {
    let mut seen = HashSet::new();
    roots
        .iter()
        .any(|root| walk_tree(*root, &mut seen).is_some_and(|w| w.largest >= limit))
}

/// What a walk of a tree found.
struct TreeSize {
    /// Allocated bytes, directories included, hard links once.
    total: u64,
    /// The size of the largest regular file.
    largest: u64,
}

fn filesystem_used(path: &str) -> u64 {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => s
            .blocks()
            .saturating_sub(s.blocks_free())
            .saturating_mul(s.fragment_size()),
        Err(_) => 0,
    }
}

/// Measures the tree below `root`, depth first, holding one descriptor
/// per level; `None` for a tree deeper than [`MAX_DEPTH`].
fn walk_tree(root: BorrowedFd, seen: &mut HashSet<(u64, u64)>) -> Option<TreeSize> {
    let Ok(top) = fstatat(root, "", AtFlags::AT_EMPTY_PATH) else {
        return Some(TreeSize {
            total: 0,
            largest: 0,
        });
    };
    let mut walk = Walk {
        device: top.st_dev,
        total: top.st_blocks as u64 * 512,
        largest: 0,
        seen,
    };
    let Ok(first) = Dir::openat(root, ".", DIR_FLAGS, Mode::empty()) else {
        return Some(walk.size());
    };
    let mut stack = vec![walk.level(first)];
    while let Some(level) = stack.last_mut() {
        let Some(name) = level.subdirs.pop() else {
            stack.pop();
            continue;
        };
        // SAFETY: the fd belongs to `level.dir`, which outlives this borrow.
        let parent = unsafe { BorrowedFd::borrow_raw(level.dir.as_raw_fd()) };
        let Ok(dir) = Dir::openat(parent, name.as_c_str(), DIR_FLAGS, Mode::empty()) else {
            continue;
        };
        if stack.len() >= MAX_DEPTH {
            return None;
        }
        let next = walk.level(dir);
        stack.push(next);
    }
    Some(walk.size())
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

struct Walk<'s> {
    device: u64,
    total: u64,
    largest: u64,
    seen: &'s mut HashSet<(u64, u64)>,
}

/// One open directory and the subdirectories of it still to visit.
struct Level {
    dir: Dir,
    subdirs: Vec<std::ffi::CString>,
}

impl Walk<'_> {
    fn size(&self) -> TreeSize {
        TreeSize {
            total: self.total,
            largest: self.largest,
        }
    }

    /// Counts the entries of `dir` and lists its subdirectories.
    fn level(&mut self, mut dir: Dir) -> Level {
        let mut subdirs = Vec::new();
        // SAFETY: the fd belongs to `dir`, alive for the whole loop.
        let dirfd = unsafe { BorrowedFd::borrow_raw(dir.as_raw_fd()) };
        for entry in dir.iter().flatten() {
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let Ok(st) = fstatat(dirfd, name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
                continue;
            };
            // Another mount (none is expected below a bind) is not ours.
            if st.st_dev != self.device {
                continue;
            }
            if st.st_nlink > 1
                && (st.st_mode & libc::S_IFMT) != libc::S_IFDIR
                && !self.seen.insert((st.st_dev, st.st_ino))
            {
                continue;
            }
            self.total = self.total.saturating_add(st.st_blocks as u64 * 512);
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => subdirs.push(name.to_owned()),
                libc::S_IFREG => self.largest = self.largest.max(st.st_size as u64),
                _ => {}
            }
        }
        Level { dir, subdirs }
    }
}
