//! Slots: each running sandbox holds one, with its own block of host ids,
//! under an exclusive lock. Before a slot is used, every host process still
//! running with one of its ids is killed.
//!
//! A lock is named after the first host uid of its block, and its
//! directory depends only on who the caller is, never on the environment:
//! two sandboxes of the same host ids always meet at the same lock, so one
//! can never take the other's slot and kill its processes as leftovers.

use crate::idmap::{MapKind, SlotIds, SLOT_STRIDE};
use crate::{SandboxConfig, SandboxError};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) struct Slot {
    pub index: u32,
    pub ids: SlotIds,
    clean_marker: PathBuf,
    _lock: Flock<File>,
}

impl Slot {
    /// Releases the slot, recording that none of its processes is left.
    pub fn release_clean(self) {
        let _ = std::fs::write(&self.clean_marker, b"");
    }
}

/// Creates `dir` (and parents) if needed; refuses a directory that belongs
/// to someone else or is a symlink, since /tmp is shared, and a path
/// through a directory that someone else could change (see
/// [`check_ancestors`]).
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), SandboxError> {
    // 0711: sandboxes run as other host ids and must traverse to their
    // mount point, but may not list or change anything here.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
        .map_err(|e| SandboxError::io(format!("creating {}", dir.display()), e))?;
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| SandboxError::io(format!("reading {}", dir.display()), e))?;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o022 != 0 {
        return Err(SandboxError::Invalid(format!(
            "{} must be a directory owned by you and writable only by you; remove it or choose another slot directory",
            dir.display()
        )));
    }
    check_ancestors(dir)
}

/// Every directory above `dir` must belong to root or to us and be
/// writable by nobody else, unless it is root's and sticky (as /tmp is:
/// others may add entries there, but not replace ours). In C's namespace
/// root's files show as the overflow id.
pub(crate) fn check_ancestors(dir: &Path) -> Result<(), SandboxError> {
    let me = nix::unistd::geteuid().as_raw();
    let root = crate::caller::root_as_seen();
    let mut current = Some(dir);
    while let Some(path) = current {
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| SandboxError::io(format!("reading {}", path.display()), e))?;
        let owner_ok = meta.uid() == root || meta.uid() == me;
        let shared = meta.mode() & 0o022 != 0;
        let sticky_root = meta.mode() & 0o1000 != 0 && meta.uid() == root;
        if meta.file_type().is_symlink() || !owner_ok || (shared && !sticky_root) {
            return Err(SandboxError::Invalid(format!(
                "{} (mode {:o}, owner uid {}) is on the path to the sandbox slots in {} but could be \
                 changed by another user; slots must be reached through directories only root \
                 or you can write",
                path.display(),
                meta.mode() & 0o7777,
                meta.uid(),
                dir.display()
            )));
        }
        current = path.parent();
    }
    Ok(())
}

/// Takes the first free slot, waiting for one if all are busy.
pub(crate) fn acquire(config: &SandboxConfig) -> Result<Slot, SandboxError> {
    let max = config.max_slots.min(config.ids.slot_count());
    if max == 0 {
        return Err(SandboxError::NoSlot {
            dir: config.slot_dir.clone(),
            max,
        });
    }
    ensure_private_dir(&config.slot_dir)?;
    let mut delay = Duration::from_millis(5);
    loop {
        for index in 0..max {
            let ids = config.ids.slot(index);
            let path = config.slot_dir.join(lock_name(index, &ids));
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| SandboxError::io(format!("opening {}", path.display()), e))?;
            let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
                continue;
            };
            // Scanning /proc costs milliseconds; it is needed only when the
            // slot's last user did not end cleanly (say, comb was killed).
            // In C's namespace every slot has the same ids: a process of
            // another slot is no leftover. None can outlive its sandbox
            // there anyway (see `crate::caller`).
            let clean = path.with_extension("clean");
            if std::fs::remove_file(&clean).is_err() && ids.kind != MapKind::Nested {
                kill_leftovers(&ids);
            }
            return Ok(Slot {
                index,
                ids,
                clean_marker: clean,
                _lock: lock,
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

/// The lock of the block of host ids starting at `ids.uid_base`; in C's
/// namespace, where slots share their ids, of slot `index`.
pub fn lock_name(index: u32, ids: &SlotIds) -> String {
    match ids.kind {
        MapKind::Nested => format!("nested-{index}.lock"),
        MapKind::Root | MapKind::Subordinate => format!("ids-{}.lock", ids.uid_base),
    }
}

/// SIGKILLs every process whose real, effective, saved or filesystem uid is
/// in the slot's block, until none is left.
pub(crate) fn kill_leftovers(ids: &SlotIds) -> usize {
    let mut killed = 0;
    for _round in 0..50 {
        let pids = processes_in_range(ids.uid_base, ids.uid_base + SLOT_STRIDE);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL)
                .is_ok()
            {
                killed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    killed
}

/// Pids of host processes with any uid in `[start, end)`.
pub fn processes_in_range(start: u32, end: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|uids| {
                    uids.split_whitespace()
                        .filter_map(|u| u.parse::<u32>().ok())
                        .any(|u| u >= start && u < end)
                })
                .unwrap_or(false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_path_others_could_change_is_refused() {
        // /tmp itself is root's and sticky: fine above our own directory.
        let base = tempfile::tempdir_in("/tmp").unwrap();
        let ours = base.path().join("ours");
        ensure_private_dir(&ours).unwrap();
        // A directory anyone may write on the way is not.
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private_dir(&ours.join("slots"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&base.path().display().to_string()), "{err}");
        assert!(err.contains("mode 777"), "{err}");
        // Nor a symlink to our directory.
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&ours, &link).unwrap();
        assert!(ensure_private_dir(&link).is_err());
    }
}
