//! comb-sandbox: run one command as R (root inside a user namespace) or U
//! (the unprivileged builder) inside a root made of read-only layers plus a
//! fresh writable upper layer.
//!
//! What it guarantees, whoever the command is:
//!
//! - R and U map to unprivileged host ids; no host uid 0 is ever in the
//!   map. As root, each *slot* has ids of its own: concurrent sandboxes
//!   hold different slots, and a slot's leftover processes are killed
//!   before the slot is used again. An ordinary user's comb runs in its own
//!   user namespace ([`caller`]), where R and U are ids of the user's
//!   subordinate range shared by every slot, and the sandboxes' own
//!   namespaces keep them apart.
//! - New user, mount, pid, network (loopback only), IPC, UTS and cgroup
//!   namespaces; `pivot_root` into an overlay; fresh `/proc`; a minimal `/dev`;
//!   no `/sys`; `PR_SET_NO_NEW_PRIVS`; a seccomp filter loaded last.
//! - Limits and timeouts kill every process of the sandbox, and the outcome
//!   says which one fired and how it was enforced.
//! - Outputs are read back only through directory file descriptors that
//!   never follow links ([`extract`]).
//!
//! The namespaces are created by a helper process: [`run`] re-executes the
//! current binary (or [`SandboxConfig::helper_exe`]) with [`HELPER_ARG`] as
//! its first argument, so every binary that calls [`run`] must call
//! [`helper_main_if_requested`] first thing in `main`. A fresh,
//! single-threaded process is the only safe place to `unshare` and `fork`.

pub mod caller;
mod cgroup;
mod copyout;
mod disk;
pub mod extract;
pub mod flatten;
mod idmap;
mod init;
mod mounts;
mod runner;
pub mod seccomp;
pub mod ship;
mod slot;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

pub use idmap::IdSource;

pub use runner::{
    close_inherited_fds, helper_main_if_requested, run, run_streaming, Stream, HELPER_ARG,
};
pub use slot::processes_in_range;

/// Who runs the command inside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Identity {
    /// R: uid/gid 0 in the user namespace, with only the capabilities that
    /// installing packages needs.
    Root,
    /// U: uid/gid 1000, no capabilities.
    Builder,
    /// U under other ids, [`OTHER_BUILDER_ID`], as user `builder2` with its
    /// own home: a rebuild that shows whether U's ids leak into the output.
    OtherBuilder,
}

impl Identity {
    /// The uid (and gid) this identity has inside the sandbox.
    pub fn inside_id(self) -> u32 {
        match self {
            Identity::Root => 0,
            Identity::Builder => BUILDER_ID,
            Identity::OtherBuilder => OTHER_BUILDER_ID,
        }
    }

    /// The home directory and user name this identity has inside.
    pub fn home_and_user(self) -> (&'static str, &'static str) {
        match self {
            Identity::Root => ("/root", "root"),
            Identity::Builder => ("/home/builder", "builder"),
            Identity::OtherBuilder => ("/home/builder2", "builder2"),
        }
    }
}

/// The process limit per uid when no pids limit is given.
pub const DEFAULT_NPROC: u64 = 16384;

/// U's uid and gid inside the sandbox.
pub const BUILDER_ID: u32 = 1000;

/// The uid and gid of [`Identity::OtherBuilder`] inside the sandbox.
pub const OTHER_BUILDER_ID: u32 = 2000;

/// An extra host directory or file made visible inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub target: PathBuf,
    pub writable: bool,
}

/// Resource limits and timeouts. `None` means "not limited".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory, pids and CPU time are enforced through the slot's cgroup
    /// when one of them is set (and the host gives comb cgroups). Joining a
    /// cgroup costs ~10 ms of kernel time on cgroup v1, so a sandbox with
    /// none of them set skips it.
    pub memory_bytes: Option<u64>,
    /// Without a value, a generous RLIMIT_NPROC still stops fork bombs
    /// ([`DEFAULT_NPROC`]); each slot's ids live in their own user
    /// namespace, so it counts only this sandbox's processes.
    pub pids: Option<u64>,
    /// The largest file a process may write (RLIMIT_FSIZE).
    pub file_size_bytes: Option<u64>,
    pub open_files: Option<u64>,
    pub cpu_time: Option<Duration>,
    pub wall_timeout: Option<Duration>,
    /// Kill the sandbox when it has printed nothing for this long.
    pub idle_timeout: Option<Duration>,
    /// Everything the sandbox may write, together: its upper layer, `/tmp`
    /// and the writable binds (which live on the host's disk). Pid 1
    /// measures it a few times a second and kills the sandbox when it is
    /// exceeded ([`Kill::Disk`]); the tmpfs mounts are capped at it too.
    pub disk_bytes: Option<u64>,
    /// Size of the tmpfs that holds the upper layer (kept or not).
    pub upper_size_bytes: u64,
    pub tmp_size_bytes: u64,
    pub shm_size_bytes: u64,
}

impl Limits {
    /// The limits every build and environment step gets unless its
    /// repository or recipe says otherwise.
    pub fn build_defaults() -> Limits {
        Limits {
            memory_bytes: Some(DEFAULT_BUILD_MEMORY),
            pids: Some(DEFAULT_BUILD_PIDS),
            file_size_bytes: Some(DEFAULT_BUILD_FILE_SIZE),
            cpu_time: Some(DEFAULT_BUILD_CPU_TIME),
            disk_bytes: Some(DEFAULT_BUILD_DISK),
            upper_size_bytes: DEFAULT_BUILD_DISK,
            ..Limits::default()
        }
    }

    /// What a limit is set to, in words: `disk limit 20 GiB`.
    pub fn describe(&self, kill: Kill) -> String {
        let value = match kill {
            Kill::WallTimeout => self.wall_timeout.map(duration_words),
            Kill::IdleTimeout => self.idle_timeout.map(duration_words),
            Kill::Memory => self.memory_bytes.map(size_words),
            Kill::Pids => Some(self.pids.unwrap_or(DEFAULT_NPROC).to_string()),
            Kill::CpuTime => self.cpu_time.map(duration_words),
            Kill::FileSize => self.file_size_bytes.map(size_words),
            Kill::Disk => self.disk_bytes.map(size_words),
            Kill::Cancelled => None,
        };
        match (kill, value) {
            (Kill::Cancelled, _) => "cancelled".to_string(),
            (_, Some(v)) => format!("{} {v}", kill.name()),
            (_, None) => kill.name().to_string(),
        }
    }

    /// The message for a sandbox that `kill` stopped: `disk limit 20 GiB
    /// reached`.
    pub fn reached(&self, kill: Kill) -> String {
        match kill {
            Kill::Cancelled => "cancelled".to_string(),
            Kill::WallTimeout | Kill::IdleTimeout => format!("{} expired", self.describe(kill)),
            _ => format!("{} reached", self.describe(kill)),
        }
    }
}

/// `20 GiB`, `1.5 GiB`, `512 MiB`, `100 bytes`.
pub fn size_words(bytes: u64) -> String {
    for (unit, shift) in [("TiB", 40u32), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        let one = 1u64 << shift;
        if bytes >= one {
            return if bytes.is_multiple_of(one) {
                format!("{} {unit}", bytes / one)
            } else {
                format!("{:.1} {unit}", bytes as f64 / one as f64)
            };
        }
    }
    format!("{bytes} bytes")
}

fn duration_words(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{:.3} s", d.as_secs_f64()).replace(".000 s", " s")
    }
}

/// Default memory of a build or environment step (with its RAM-backed
/// file systems).
pub const DEFAULT_BUILD_MEMORY: u64 = 8 << 30;
/// Default process limit of a build.
pub const DEFAULT_BUILD_PIDS: u64 = 4096;
/// Default largest single file a build may write.
pub const DEFAULT_BUILD_FILE_SIZE: u64 = 8 << 30;
/// Default CPU time of a build, all its processes together where a cgroup
/// counts them (each process otherwise).
pub const DEFAULT_BUILD_CPU_TIME: Duration = Duration::from_secs(12 * 3600);
/// Default disk a build may fill: its work directory, upper layer and /tmp.
pub const DEFAULT_BUILD_DISK: u64 = 20 << 30;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: None,
            pids: None,
            file_size_bytes: None,
            open_files: Some(65536),
            cpu_time: None,
            wall_timeout: None,
            idle_timeout: None,
            disk_bytes: None,
            upper_size_bytes: 8 << 30,
            tmp_size_bytes: 4 << 30,
            shm_size_bytes: 64 << 20,
        }
    }
}

/// One command to run in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// Read-only layers, bottom first: the last one is the top.
    pub layers: Vec<PathBuf>,
    pub identity: Identity,
    pub binds: Vec<Bind>,
    /// Added to the clean environment (and overriding it).
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox.
    pub cwd: PathBuf,
    /// The command and its arguments; the first is looked up in `PATH`.
    pub command: Vec<String>,
    pub limits: Limits,
    /// Keep the writable upper layer here, as a new layer (a directory that
    /// must not exist yet).
    pub keep_upper: Option<PathBuf>,
    pub hostname: String,
    /// The NIS domain name of the sandbox's UTS namespace.
    pub domainname: String,
    /// The file mode creation mask the command starts with.
    pub umask: u32,
    /// Largest amount of each output stream kept in the [`Outcome`]; the
    /// beginning is dropped first.
    pub output_cap_bytes: usize,
    /// The command's stdout and stderr are one pipe (as sbuild gives a
    /// build): its output comes in [`Outcome::stdout`] in the order it was
    /// written, and `stderr` is empty.
    #[serde(default)]
    pub merge_output: bool,
    /// Set from any thread to kill the sandbox (the outcome then says
    /// `cancelled`).
    #[serde(skip)]
    pub cancel: CancelToken,
}

/// A flag shared between a caller's threads that cancels the sandboxes
/// given it.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The flag itself, for code that polls an `AtomicBool`.
    pub fn flag(&self) -> &std::sync::atomic::AtomicBool {
        &self.0
    }
}

impl PartialEq for CancelToken {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CancelToken {}

impl Spec {
    /// A spec with the defaults: U, no binds, cwd `/`, default limits.
    pub fn new(layers: Vec<PathBuf>, command: Vec<String>) -> Spec {
        Spec {
            layers,
            identity: Identity::Builder,
            binds: Vec::new(),
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            command,
            limits: Limits::default(),
            keep_upper: None,
            hostname: "comb".to_string(),
            // The kernel's own "no domain", as Debian's buildds have it.
            domainname: "(none)".to_string(),
            umask: 0o022,
            output_cap_bytes: 16 << 20,
            merge_output: false,
            cancel: CancelToken::default(),
        }
    }
}

/// Where the sandbox gets its host ids and keeps its slot locks.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The binary re-executed as the helper; defaults to the current one.
    pub helper_exe: PathBuf,
    pub ids: IdSource,
    /// Directory of slot locks and mount points.
    pub slot_dir: PathBuf,
    pub max_slots: u32,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "value")]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// The shell convention: the exit code, or 128 + signal.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }

    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }
}

/// The limit or timeout that killed the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kill {
    WallTimeout,
    IdleTimeout,
    Memory,
    Pids,
    CpuTime,
    FileSize,
    /// Everything writable together exceeded [`Limits::disk_bytes`].
    Disk,
    /// The caller went away or asked for the sandbox to stop.
    Cancelled,
}

impl Kill {
    /// The limit's name in words.
    pub fn name(self) -> &'static str {
        match self {
            Kill::WallTimeout => "wall-clock timeout",
            Kill::IdleTimeout => "idle timeout",
            Kill::Memory => "memory limit",
            Kill::Pids => "process limit",
            Kill::CpuTime => "CPU time limit",
            Kill::FileSize => "file size limit",
            Kill::Disk => "disk limit",
            Kill::Cancelled => "cancellation",
        }
    }
}

/// How a limit was enforced on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    CgroupV2,
    CgroupV1,
    /// A per-process resource limit (`setrlimit`): for memory, each
    /// process's address space, with the RAM-backed file systems capped so
    /// that together they fit in the limit too.
    Rlimit,
    Timer,
    /// Pid 1 measures it a few times a second, the tmpfs mounts are capped
    /// at it, and the sandbox is killed when it is exceeded.
    Measured,
    NotLimited,
}

impl Enforcement {
    pub fn name(self) -> &'static str {
        match self {
            Enforcement::CgroupV2 => "cgroup v2",
            Enforcement::CgroupV1 => "cgroup v1",
            Enforcement::Rlimit => "rlimit",
            Enforcement::Timer => "timer",
            Enforcement::Measured => "measured",
            Enforcement::NotLimited => "not limited",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnforcedBy {
    pub memory: Enforcement,
    pub pids: Enforcement,
    pub file_size: Enforcement,
    pub open_files: Enforcement,
    pub cpu_time: Enforcement,
    pub wall_timeout: Enforcement,
    pub idle_timeout: Enforcement,
    pub disk: Enforcement,
    /// The sizes of the sandbox's RAM-backed file systems (the upper
    /// layer, `/tmp`, `/dev/shm`), which count as memory.
    pub ram_filesystems: RamFilesystems,
    /// How the whole sandbox is killed: `cgroup.kill`, or the pid
    /// namespace's teardown.
    pub kill_all: String,
}

impl EnforcedBy {
    /// Every limit in `limits` (as applied), with how it was enforced:
    /// `memory limit 8 GiB (rlimit)`, `disk limit 20 GiB (measured)`.
    pub fn describe(&self, limits: &Limits) -> Vec<String> {
        let kills = [
            (Kill::Memory, self.memory, limits.memory_bytes.is_some()),
            (Kill::Pids, self.pids, true),
            (Kill::CpuTime, self.cpu_time, limits.cpu_time.is_some()),
            (
                Kill::FileSize,
                self.file_size,
                limits.file_size_bytes.is_some(),
            ),
            (Kill::Disk, self.disk, limits.disk_bytes.is_some()),
            (
                Kill::WallTimeout,
                self.wall_timeout,
                limits.wall_timeout.is_some(),
            ),
            (
                Kill::IdleTimeout,
                self.idle_timeout,
                limits.idle_timeout.is_some(),
            ),
        ];
        kills
            .into_iter()
            .filter(|(_, _, set)| *set)
            .map(|(kill, how, _)| format!("{} ({})", limits.describe(kill), how.name()))
            .collect()
    }
}

/// The size caps of the tmpfs mounts a sandbox gets, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RamFilesystems {
    pub upper: u64,
    pub tmp: u64,
    pub shm: u64,
}

impl RamFilesystems {
    pub fn total(&self) -> u64 {
        self.upper.saturating_add(self.tmp).saturating_add(self.shm)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub wall_ms: u64,
    pub user_cpu_ms: u64,
    pub system_cpu_ms: u64,
    pub peak_memory_bytes: u64,
    /// The most the sandbox had written at once (upper layer, `/tmp` and
    /// writable binds), as pid 1 last measured it; 0 without a disk limit.
    pub peak_disk_bytes: u64,
}

/// What happened to one sandboxed command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: ExitStatus,
    pub killed_by: Option<Kill>,
    pub usage: Usage,
    pub enforced_by: EnforcedBy,
    /// The limits as applied: after the RAM-backed file systems were fitted
    /// into the memory limit, where they had to be.
    pub limits: Limits,
    pub slot: u32,
    /// Host uid that R and U ran as.
    pub host_root_uid: u32,
    pub host_builder_uid: u32,
    #[serde(skip)]
    pub stdout: Vec<u8>,
    #[serde(skip)]
    pub stderr: Vec<u8>,
    /// Where the upper layer was kept, if asked.
    pub kept_upper: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid sandbox request: {0}")]
    Invalid(String),
    #[error("{0}")]
    Ids(String),
    #[error("no free sandbox slot in {dir} (all {max} are in use); wait for other builds or raise the slot count")]
    NoSlot { dir: PathBuf, max: u32 },
    #[error("could not set up the sandbox: {0}")]
    Setup(String),
    #[error("could not start the command {command:?} in the sandbox: {reason}")]
    Exec { command: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("layer rejected: {0}")]
    Extract(#[from] extract::ExtractError),
}

impl SandboxError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SandboxError::Io {
            context: context.into(),
            source,
        }
    }
}
