//! Per-slot cgroups: memory, pids and CPU accounting, where the host lets
//! comb create them (root, with cgroup v2 or the v1 controllers). Without
//! them the sandbox falls back to rlimits, and the outcome says so.

use crate::{Enforcement, Limits};
use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// What a cgroup saw during one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Events {
    pub oom_kills: u64,
    pub pids_max_hits: u64,
    pub cpu_ns: u64,
}

pub(crate) enum Cgroup {
    V2 {
        dir: PathBuf,
    },
    V1 {
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
        baseline: Events,
    },
}

impl Cgroup {
    /// Creates (or empties and reuses) the cgroup of the slot whose host
    /// ids start at `uid_base`, and applies the limits. `None` when the
    /// host gives comb no cgroup to manage.
    pub fn create(uid_base: u32, limits: &Limits) -> Option<Cgroup> {
        let wanted =
            limits.memory_bytes.is_some() || limits.pids.is_some() || limits.cpu_time.is_some();
        if !wanted || !nix::unistd::geteuid().is_root() {
            return None;
        }
        let name = format!("comb-ids-{uid_base}");
        if Path::new(ROOT).join("cgroup.controllers").exists() {
            return Self::create_v2(&name, limits);
        }
        Self::create_v1(&name, limits)
    }

    fn create_v2(name: &str, limits: &Limits) -> Option<Cgroup> {
        let parent = Path::new(ROOT).join("comb");
        // Controllers must be enabled in every ancestor's subtree_control.
        fs::write(
            Path::new(ROOT).join("cgroup.subtree_control"),
            "+memory +pids +cpu",
        )
        .ok()?;
        fs::create_dir_all(&parent).ok()?;
        fs::write(parent.join("cgroup.subtree_control"), "+memory +pids +cpu").ok()?;
        let dir = parent.join(name);
        if dir.exists() {
            let _ = fs::write(dir.join("cgroup.kill"), "1");
        }
        fs::create_dir_all(&dir).ok()?;
        let max = |v: Option<u64>| v.map_or("max".to_string(), |v| v.to_string());
        fs::write(dir.join("memory.max"), max(limits.memory_bytes)).ok()?;
        let _ = fs::write(dir.join("memory.swap.max"), "0");
        fs::write(dir.join("pids.max"), max(limits.pids)).ok()?;
        Some(Cgroup::V2 { dir })
    }

    fn create_v1(name: &str, limits: &Limits) -> Option<Cgroup> {
        let memory = v1_dir("memory", name);
        let pids = v1_dir("pids", name);
        let cpuacct = v1_dir("cpuacct", name);
        if let Some(dir) = &memory {
            let limit = limits
                .memory_bytes
                .map_or("-1".to_string(), |v| v.to_string());
            // Unset memsw first: it may never be below the memory limit.
            let _ = fs::write(dir.join("memory.memsw.limit_in_bytes"), "-1");
            fs::write(dir.join("memory.limit_in_bytes"), &limit).ok()?;
            let _ = fs::write(dir.join("memory.memsw.limit_in_bytes"), &limit);
            let _ = fs::write(dir.join("memory.max_usage_in_bytes"), "0");
        }
        if let Some(dir) = &pids {
            let limit = limits.pids.map_or("max".to_string(), |v| v.to_string());
            fs::write(dir.join("pids.max"), limit).ok()?;
        }
        if let Some(dir) = &cpuacct {
            let _ = fs::write(dir.join("cpuacct.usage"), "0");
        }
        let mut group = Cgroup::V1 {
            memory,
            pids,
            cpuacct,
            baseline: Events::default(),
        };
        // The kernel's event counters only grow; remember where they were.
        let baseline = group.events();
        if let Cgroup::V1 { baseline: b, .. } = &mut group {
            *b = baseline;
        }
        Some(group)
    }

    /// Moves `pid` (and so its future children) into the cgroup.
    pub fn attach(&self, pid: i32) -> std::io::Result<()> {
        let pid = pid.to_string();
        match self {
            Cgroup::V2 { dir } => fs::write(dir.join("cgroup.procs"), pid),
            Cgroup::V1 {
                memory,
                pids,
                cpuacct,
                ..
            } => {
                for dir in [memory, pids, cpuacct].into_iter().flatten() {
                    fs::write(dir.join("cgroup.procs"), &pid)?;
                }
                Ok(())
            }
        }
    }

    /// Kills every process in the cgroup at once, where the kernel can.
    /// Returns false when the caller must fall back to the pid namespace.
    pub fn kill_all(&self) -> bool {
        match self {
            Cgroup::V2 { dir } => fs::write(dir.join("cgroup.kill"), "1").is_ok(),
            Cgroup::V1 { .. } => false,
        }
    }

    pub fn events(&self) -> Events {
        match self {
            Cgroup::V2 { dir } => Events {
                oom_kills: keyed(&dir.join("memory.events"), "oom_kill"),
                pids_max_hits: keyed(&dir.join("pids.events"), "max"),
                cpu_ns: keyed(&dir.join("cpu.stat"), "usage_usec") * 1000,
            },
            Cgroup::V1 {
                memory,
                pids,
                cpuacct,
                baseline,
            } => Events {
                oom_kills: memory
                    .as_ref()
                    .map_or(0, |d| keyed(&d.join("memory.oom_control"), "oom_kill"))
                    .saturating_sub(baseline.oom_kills),
                pids_max_hits: pids
                    .as_ref()
                    .map_or(0, |d| keyed(&d.join("pids.events"), "max"))
                    .saturating_sub(baseline.pids_max_hits),
                cpu_ns: cpuacct
                    .as_ref()
                    .map_or(0, |d| number(&d.join("cpuacct.usage"))),
            },
        }
    }

    pub fn peak_memory(&self) -> u64 {
        match self {
            Cgroup::V2 { dir } => number(&dir.join("memory.peak")),
            Cgroup::V1 { memory, .. } => memory
                .as_ref()
                .map_or(0, |d| number(&d.join("memory.max_usage_in_bytes"))),
        }
    }

    pub fn memory_enforcement(&self) -> Enforcement {
        match self {
            Cgroup::V2 { .. } => Enforcement::CgroupV2,
            Cgroup::V1 {
                memory: Some(_), ..
            } => Enforcement::CgroupV1,
            Cgroup::V1 { memory: None, .. } => Enforcement::Rlimit,
        }
    }

    pub fn pids_enforcement(&self) -> Enforcement {
        match self {
            Cgroup::V2 { .. } => Enforcement::CgroupV2,
            Cgroup::V1 { pids: Some(_), .. } => Enforcement::CgroupV1,
            Cgroup::V1 { pids: None, .. } => Enforcement::Rlimit,
        }
    }

    pub fn cpu_enforcement(&self) -> Enforcement {
        match self {
            Cgroup::V2 { .. } => Enforcement::CgroupV2,
            Cgroup::V1 {
                cpuacct: Some(_), ..
            } => Enforcement::CgroupV1,
            Cgroup::V1 { cpuacct: None, .. } => Enforcement::Rlimit,
        }
    }

    /// Removes the cgroup once its processes are gone.
    pub fn remove(self) {
        let dirs = match self {
            Cgroup::V2 { dir } => vec![dir],
            Cgroup::V1 {
                memory,
                pids,
                cpuacct,
                ..
            } => [memory, pids, cpuacct].into_iter().flatten().collect(),
        };
        for dir in dirs {
            for _ in 0..100 {
                if fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}

/// The slot's v1 cgroup below the one comb itself runs in, so limits the
/// host put on comb still apply.
fn v1_dir(controller: &str, name: &str) -> Option<PathBuf> {
    let mount = Path::new(ROOT).join(controller);
    if !mount.join("cgroup.procs").exists() {
        return None;
    }
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    let current = own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.trim_start_matches('/').to_string())
    })?;
    let dir = mount.join(current).join(name);
    if dir.exists() {
        // Left by a comb that was killed: its processes are gone (the slot
        // lock was free and leftovers were killed), so it can go.
        let _ = fs::remove_dir(&dir);
    }
    fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

fn number(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The value of `key` in a flat-keyed cgroup file such as memory.events.
fn keyed(path: &Path, key: &str) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}
