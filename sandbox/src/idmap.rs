//! Host ids for the sandbox's user namespace.
//!
//! Each slot owns a block of `SLOT_STRIDE` host ids. Inside the sandbox,
//! ids `0..1001` (R, the system users packages create, and U = 1000),
//! `65534..65536` (nobody/nogroup) and 2000 (U under other ids) are mapped
//! onto the start of that block. Inside an ordinary user's own namespace
//! ([`crate::caller`]) those ids are already mapped at their own numbers,
//! and every sandbox maps them onto themselves.
//! Host uid 0 never appears in a map.

use crate::SandboxError;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Command;

/// Host ids reserved per slot.
pub(crate) const SLOT_STRIDE: u32 = 1024;

/// (inside start, offset in the slot's block, count)
pub(crate) const SEGMENTS: [(u32, u32, u32); 3] = [
    (0, 0, 1001),
    (65534, 1001, 2),
    (crate::OTHER_BUILDER_ID, 1003, 1),
];

/// Default first host id when comb runs as root, well above the ranges
/// `useradd` hands out in /etc/subuid.
pub const DEFAULT_ROOT_ID_BASE: u32 = 0x6000_0000;
/// Slots available when comb runs as root.
const ROOT_SLOTS: u32 = 256;
/// Slots available in an ordinary user's namespace, where they cost no
/// ids: as many concurrent sandboxes as anyone runs.
const NESTED_SLOTS: u32 = 256;

/// Where the sandbox's host ids come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdSource {
    /// comb runs as root and writes the maps itself, from its own range.
    Root { base: u32, slots: u32 },
    /// An ordinary user: ranges from /etc/subuid and /etc/subgid, mapped
    /// through the setuid helpers `newuidmap` and `newgidmap`.
    Subordinate {
        uid_base: u32,
        gid_base: u32,
        slots: u32,
    },
    /// An ordinary user's comb inside its own namespace
    /// ([`crate::caller`]): every slot maps the sandbox's ids onto
    /// themselves, which that namespace maps onto the user's range.
    Nested { slots: u32 },
}

/// Who writes a slot's maps, and how its ids sit in the parent namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MapKind {
    /// Root writes them: the block at the slot's base.
    Root,
    /// `newuidmap`/`newgidmap` write them: the block at the slot's base.
    Subordinate,
    /// The monitor writes them in C's namespace: each id onto itself.
    Nested,
}

/// The first host uid and gid of one slot's block.
/// In C's namespace the "host" ids are that namespace's, which is where
/// comb itself sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SlotIds {
    pub uid_base: u32,
    pub gid_base: u32,
    pub kind: MapKind,
}

impl SlotIds {
    /// The host id that `inside` maps to, if it is mapped.
    pub fn host_uid(&self, inside: u32) -> Option<u32> {
        self.map_inside(self.uid_base, inside)
    }

    /// Where a segment of the sandbox's ids starts in the parent namespace.
    fn segment_start(&self, base: u32, inside: u32, offset: u32) -> u32 {
        match self.kind {
            MapKind::Nested => inside,
            MapKind::Root | MapKind::Subordinate => base + offset,
        }
    }

    fn map_inside(&self, base: u32, inside: u32) -> Option<u32> {
        SEGMENTS
            .iter()
            .find(|(start, _, count)| inside >= *start && inside < start + count)
            .map(|(start, offset, _)| self.segment_start(base, *start, *offset) + (inside - start))
    }

    /// The lines of `/proc/PID/uid_map` (or gid_map) for a block.
    fn map_lines(&self, base: u32) -> String {
        SEGMENTS
            .iter()
            .map(|(inside, offset, count)| {
                format!(
                    "{inside} {} {count}\n",
                    self.segment_start(base, *inside, *offset)
                )
            })
            .collect()
    }

    /// Writes the uid and gid maps of the user namespace of `pid`.
    pub fn write_maps(&self, pid: i32) -> Result<(), SandboxError> {
        if self.kind == MapKind::Subordinate {
            run_map_helper("newgidmap", pid, self.gid_base)?;
            run_map_helper("newuidmap", pid, self.uid_base)?;
            return Ok(());
        }
        let proc_dir = format!("/proc/{pid}");
        // Root (or C in its own namespace, with CAP_SETGID there) may keep
        // setgroups allowed: the map was written by a privileged process,
        // so dropping supplementary groups is safe.
        std::fs::write(format!("{proc_dir}/uid_map"), self.map_lines(self.uid_base))
            .map_err(|e| SandboxError::io("writing uid_map", e))?;
        std::fs::write(format!("{proc_dir}/gid_map"), self.map_lines(self.gid_base))
            .map_err(|e| SandboxError::io("writing gid_map", e))?;
        Ok(())
    }
}

fn run_map_helper(helper: &str, pid: i32, base: u32) -> Result<(), SandboxError> {
    let mut cmd = Command::new(helper);
    cmd.arg(pid.to_string());
    for (inside, offset, count) in SEGMENTS {
        cmd.arg(inside.to_string())
            .arg((base + offset).to_string())
            .arg(count.to_string());
    }
    let out = cmd.output().map_err(|e| {
        SandboxError::Ids(format!(
            "could not run {helper} ({e}); install the uidmap package: apt-get install uidmap"
        ))
    })?;
    if !out.status.success() {
        return Err(SandboxError::Ids(format!(
            "{helper} refused to map the sandbox's ids: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl IdSource {
    /// Root: `COMB_ID_BASE` or the default base. In C's namespace: nested.
    /// Otherwise the caller's subordinate ranges.
    pub fn detect() -> Result<IdSource, SandboxError> {
        if crate::caller::entered().is_some() {
            return Ok(IdSource::Nested {
                slots: NESTED_SLOTS,
            });
        }
        let uid = nix::unistd::geteuid();
        if uid.is_root() {
            let base = match std::env::var("COMB_ID_BASE") {
                Ok(v) => v.parse::<u32>().map_err(|_| {
                    SandboxError::Ids(format!("COMB_ID_BASE={v:?} is not a number of a host uid"))
                })?,
                Err(_) => DEFAULT_ROOT_ID_BASE,
            };
            return IdSource::root(base);
        }
        let name = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string());
        IdSource::subordinate(
            &name,
            uid.as_raw(),
            Path::new("/etc/subuid"),
            Path::new("/etc/subgid"),
        )
    }

    /// The root range starting at `base`.
    pub fn root(base: u32) -> Result<IdSource, SandboxError> {
        let slots = ROOT_SLOTS;
        if base == 0 || base.checked_add(slots * SLOT_STRIDE).is_none() {
            return Err(SandboxError::Ids(format!(
                "host id base {base} leaves no room for {slots} slots of {SLOT_STRIDE} ids"
            )));
        }
        Ok(IdSource::Root { base, slots })
    }

    /// The subordinate ranges of user `name` (uid `uid`) from the given files.
    pub fn subordinate(
        name: &str,
        uid: u32,
        subuid: &Path,
        subgid: &Path,
    ) -> Result<IdSource, SandboxError> {
        let (uid_base, gid_base, slots) = subordinate_ranges(name, uid, subuid, subgid)?;
        Ok(IdSource::Subordinate {
            uid_base,
            gid_base,
            slots,
        })
    }

    /// Whose ids own the files of the layers this comb makes, as a store
    /// records it: `root`, or `subordinate UID GID` (the starts of the
    /// user's ranges). A store's layers work only under the same owners.
    pub fn layer_owners(&self) -> String {
        match self {
            IdSource::Root { .. } => "root".to_string(),
            IdSource::Subordinate {
                uid_base, gid_base, ..
            } => format!("subordinate {uid_base} {gid_base}"),
            IdSource::Nested { .. } => match crate::caller::entered() {
                Some(ns) => format!("subordinate {} {}", ns.subuid_start, ns.subgid_start),
                None => "nested".to_string(),
            },
        }
    }

    pub fn slot_count(&self) -> u32 {
        match self {
            IdSource::Root { slots, .. }
            | IdSource::Subordinate { slots, .. }
            | IdSource::Nested { slots } => *slots,
        }
    }

    /// True when layers are attached through idmapped mounts, which needs
    /// root on the host.
    pub fn idmapped(&self) -> bool {
        matches!(self, IdSource::Root { .. })
    }

    pub(crate) fn slot(&self, index: u32) -> SlotIds {
        match self {
            IdSource::Root { base, .. } => SlotIds {
                uid_base: base + index * SLOT_STRIDE,
                gid_base: base + index * SLOT_STRIDE,
                kind: MapKind::Root,
            },
            IdSource::Nested { .. } => SlotIds {
                uid_base: 0,
                gid_base: 0,
                kind: MapKind::Nested,
            },
            IdSource::Subordinate {
                uid_base, gid_base, ..
            } => SlotIds {
                uid_base: uid_base + index * SLOT_STRIDE,
                gid_base: gid_base + index * SLOT_STRIDE,
                kind: MapKind::Subordinate,
            },
        }
    }
}

/// The starts of user `name`'s subordinate uid and gid ranges and how
/// many slots of [`SLOT_STRIDE`] ids they hold (at least one); else the
/// error that says what to run.
pub(crate) fn subordinate_ranges(
    name: &str,
    uid: u32,
    subuid: &Path,
    subgid: &Path,
) -> Result<(u32, u32, u32), SandboxError> {
    let how_to_fix = || {
        SandboxError::Ids(format!(
            "comb runs as the ordinary user {name} (uid {uid}), which needs a subordinate id range of at least {SLOT_STRIDE} ids \
             in /etc/subuid and /etc/subgid for the sandbox's R and U. Ask an administrator to run: \
             usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}"
        ))
    };
    let uid_range = largest_range(subuid, name, uid).ok_or_else(how_to_fix)?;
    let gid_range = largest_range(subgid, name, uid).ok_or_else(how_to_fix)?;
    let slots = uid_range.1.min(gid_range.1) / SLOT_STRIDE;
    if slots == 0 {
        return Err(how_to_fix());
    }
    Ok((uid_range.0, gid_range.0, slots))
}

/// The largest `start:count` range for `name` or `uid` in a subid file.
fn largest_range(file: &Path, name: &str, uid: u32) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .filter_map(|line| {
            let mut parts = line.trim().split(':');
            let owner = parts.next()?;
            let start = parts.next()?.parse::<u32>().ok()?;
            let count = parts.next()?.parse::<u32>().ok()?;
            (owner == name || owner == uid.to_string()).then_some((start, count))
        })
        .filter(|(start, count)| *start != 0 && start.checked_add(*count).is_some())
        .max_by_key(|(_, count)| *count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_never_include_host_root_and_slots_do_not_overlap() {
        let ids = IdSource::root(DEFAULT_ROOT_ID_BASE).unwrap();
        let a = ids.slot(0);
        let b = ids.slot(1);
        assert_eq!(a.host_uid(0), Some(DEFAULT_ROOT_ID_BASE));
        assert_eq!(a.host_uid(1000), Some(DEFAULT_ROOT_ID_BASE + 1000));
        assert_eq!(a.host_uid(65534), Some(DEFAULT_ROOT_ID_BASE + 1001));
        assert_eq!(a.host_uid(2000), Some(DEFAULT_ROOT_ID_BASE + 1003));
        assert_eq!(a.host_uid(1500), None);
        assert!(b.host_uid(0).unwrap() > a.host_uid(2000).unwrap());
        assert_eq!(
            a.map_lines(7000),
            "0 7000 1001\n65534 8001 2\n2000 8003 1\n".to_string()
        );
        let nested = IdSource::Nested { slots: 2 }.slot(1);
        assert_eq!(
            nested.map_lines(0),
            "0 0 1001\n65534 65534 2\n2000 2000 1\n"
        );
        assert_eq!(nested.host_uid(1000), Some(1000));
        assert_eq!(nested.host_uid(1500), None);
    }

    #[test]
    fn subordinate_ranges_are_read_by_name_or_uid() {
        let dir = tempfile::tempdir().unwrap();
        let subuid = dir.path().join("subuid");
        let subgid = dir.path().join("subgid");
        std::fs::write(&subuid, "alice:100000:65536\nbob:200000:4096\n").unwrap();
        std::fs::write(&subgid, "1001:300000:65536\n").unwrap();
        let ids = IdSource::subordinate("bob", 1001, &subuid, &subgid).unwrap();
        assert_eq!(
            ids,
            IdSource::Subordinate {
                uid_base: 200000,
                gid_base: 300000,
                slots: 4
            }
        );
        let err = IdSource::subordinate("carol", 1002, &subuid, &subgid).unwrap_err();
        assert!(err.to_string().contains("usermod --add-subuids"), "{err}");
    }
}
