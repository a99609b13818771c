//! The seccomp filter loaded last, just before the sandboxed command is
//! executed.
//!
//! By then the command already runs in its own namespaces, as R or U, with
//! `PR_SET_NO_NEW_PRIVS` set. The filter takes away the kernel interfaces
//! that could undo that isolation or outlive the build:
//!
//! - leaving privilege behind: setuid/setgid bits (`chmod` family, `open`/
//!   `openat`/`creat` with `O_CREAT`/`O_TMPFILE`, `mknod`) and device
//!   nodes. Where no other host user can reach what a sandbox writes,
//!   R may set the setgid bit and U both ([`Rules`]): maintainer scripts
//!   make setgid directories, test suites set-id files of their own; copy-out
//!   keeps setgid on directories only;
//! - rebuilding the sandbox: `mount` and the new mount API, `pivot_root`,
//!   `chroot`, `unshare`, `setns`, `clone` with a namespace flag;
//! - reaching other processes or the terminal: `ptrace`,
//!   `process_vm_readv/writev`, `TIOCSTI`/`TIOCLINUX`;
//! - large kernel attack surface no package build needs: keyrings, `bpf`,
//!   `perf_event_open`, `userfaultfd`, `io_uring`, modules, kexec, the
//!   clock, swap, quotas, `open_by_handle_at`, `syslog`, `iopl`/`ioperm`...
//!
//! - reaching past the network namespace: socket families other than
//!   unix, inet, inet6 and netlink (routing only) — vsock reaches the
//!   hypervisor's host — and i386's `socketcall`, which hides the family;
//! - another process's descriptors (`pidfd_getfd`), local descriptor tables
//!   (`modify_ldt`), and `personality` flags other than those `setarch`
//!   needs (32-bit, `UNAME26`, `ADDR_NO_RANDOMIZE`).
//!
//! Everything else is allowed: the command is an arbitrary package build,
//! so the filter is a deny-list, with allow-lists for the arguments of
//! `socket`, `socketpair` and `personality`.
//!
//! The filter is compiled once per process ([`compiled`]) into classic BPF
//! ([`Compiled`]) and loaded by the sandboxed command with two `prctl`
//! calls: no libseccomp, no rule building at every start.
//!
//! Answers: EPERM for a refusal; ENOSYS where the interesting argument sits
//! behind a pointer that seccomp cannot read (`openat2`, `clone3`), because
//! libc then falls back to `openat`/`clone`, whose arguments are checked.
//!
//! Extended attributes are allowed, as on Debian's buildds (the test suites
//! of acl, attr and coreutils set ACLs and `user.*` attributes). The
//! kernel, not this filter, keeps file capabilities and `security.*` /
//! `trusted.*` out of reach: U has no capability at all and R neither
//! `CAP_SETFCAP` nor `CAP_SYS_ADMIN` (see `init::ROOT_CAPS`); copy-out keeps
//! no attribute but overlayfs's own markers.
//!
//! Architectures: the rules are added by name for x86_64, i386 and x32, so
//! a 64-bit process using `int $0x80` or the x32 syscall bit meets the same
//! rules under the numbers of that ABI; any other architecture kills the
//! process. A syscall that libseccomp cannot name for an arch is skipped
//! there (e.g. i386's `umount` does not exist on x86_64). A syscall that
//! the kernel has but the installed libseccomp does not know at all (Debian
//! 12's 2.5.4 knows nothing after `fchmodat2`, while the kernel may have
//! `setxattrat` & co.) is refused by number by the second, hand-written
//! filter (`LATE_SYSCALLS`, `argument_program`), which also holds the
//! argument allow-lists; the kernel runs both filters and the refusal wins.

use crate::Identity;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

#[derive(Debug, thiserror::Error)]
#[error("seccomp: {0}")]
pub struct SeccompError(pub String);

/// Load the filter of `rules` into the calling thread (it is inherited
/// by everything exec'd after).
///
/// Call it last, right before `execve`, in a single-threaded process: other
/// threads are not filtered. It sets `PR_SET_NO_NEW_PRIVS` itself if it was
/// not set yet.
pub fn install(rules: Rules) -> Result<(), SeccompError> {
    compile(rules)?.load()
}

/// The three filters: they differ only in the set-id bits they allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// No setuid or setgid mode: R with a writable bind, where what it
    /// writes reaches the host as it is (and, idmapped, its ids 0 are the
    /// host's); U with a writable bind that other host users could reach.
    NoSetId,
    /// The setgid bit allowed, setuid refused: R when everything it writes
    /// stays in the upper layer, which copy-out keeps setgid only on
    /// directories (fontconfig's postinst makes `/usr/local/share/fonts`
    /// 2775, base-files ships `/var/mail` 2775).
    SetGid,
    /// Both allowed: U when no other host user can reach what it writes
    /// (no writable bind, or each below a directory only the caller or
    /// root may enter). U's set-id files run as U, and copy-out keeps none:
    /// a builder may `chmod u+s` its own files, as on the buildds (acl's
    /// test suite does).
    SetId,
}

/// Where a sandbox's writes reach the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostWrites {
    /// Nowhere: no writable bind.
    None,
    /// Only below directories that no other host user may enter.
    Private,
    /// Somewhere another host user could reach.
    Reachable,
}

impl Rules {
    /// The rules for a sandbox run as `identity` whose writes reach the
    /// host as `writes` says.
    pub fn for_sandbox(identity: Identity, writes: HostWrites) -> Rules {
        match (identity, writes) {
            (Identity::Root, HostWrites::None) => Rules::SetGid,
            (Identity::Root, _) => Rules::NoSetId,
            (Identity::Builder | Identity::OtherBuilder, HostWrites::Reachable) => Rules::NoSetId,
            (Identity::Builder | Identity::OtherBuilder, _) => Rules::SetId,
        }
    }
}

/// The filter of `rules` as classic BPF programs, ready to load in a
/// forked child without libseccomp or any allocation. Compiling takes
/// libseccomp about a millisecond, so callers compile once and keep it.
pub fn compile(rules: Rules) -> Result<Compiled, SeccompError> {
    let filter = Filter::build(rules)?;
    let main = export(&filter.ctx)?;
    let checks = argument_program(&filter.by_number);
    Ok(Compiled {
        programs: vec![pack(&main), pack(&checks)],
    })
}

/// Compiled filters, each a list of BPF instructions packed into `u64`s
/// (code, jt, jf, k), loaded in order; the kernel runs them all and the
/// most restrictive answer wins.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Compiled {
    programs: Vec<Vec<u64>>,
}

impl Compiled {
    /// Loads the filters into the calling thread, setting
    /// `PR_SET_NO_NEW_PRIVS` first.
    pub fn load(&self) -> Result<(), SeccompError> {
        // SAFETY: prctl with constant arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(SeccompError(format!(
                "PR_SET_NO_NEW_PRIVS: {}",
                std::io::Error::last_os_error()
            )));
        }
        for program in &self.programs {
            let mut instructions: Vec<libc::sock_filter> =
                program.iter().map(|&i| unpack(i)).collect();
            if instructions.is_empty() || instructions.len() > u16::MAX as usize {
                return Err(SeccompError("an empty or oversized filter".into()));
            }
            let fprog = libc::sock_fprog {
                len: instructions.len() as libc::c_ushort,
                filter: instructions.as_mut_ptr(),
            };
            // SAFETY: fprog points to a valid program that outlives the call.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &fprog as *const libc::sock_fprog,
                )
            };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                return Err(SeccompError(format!("loading the filter: {e}")));
            }
        }
        Ok(())
    }
}

fn pack(program: &[libc::sock_filter]) -> Vec<u64> {
    program
        .iter()
        .map(|i| {
            (u64::from(i.code) << 48)
                | (u64::from(i.jt) << 40)
                | (u64::from(i.jf) << 32)
                | u64::from(i.k)
        })
        .collect()
}

fn unpack(packed: u64) -> libc::sock_filter {
    libc::sock_filter {
        code: (packed >> 48) as u16,
        jt: (packed >> 40) as u8,
        jf: (packed >> 32) as u8,
        k: packed as u32,
    }
}

/// libseccomp's program for `ctx`, read back through a memfd.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    use std::io::{Read, Seek};
    // SAFETY: a plain system call with a NUL-terminated name.
    let raw = unsafe { libc::memfd_create(c"comb-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        let e = std::io::Error::last_os_error();
        return Err(SeccompError(format!("memfd_create: {e}")));
    }
    // SAFETY: the kernel just gave us this fd.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    ctx.export_bpf(&fd).map_err(lib_err("export"))?;
    let mut file = std::fs::File::from(fd);
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| SeccompError(format!("reading the exported filter: {e}")))?;
    let size = std::mem::size_of::<libc::sock_filter>();
    if bytes.is_empty() || bytes.len() % size != 0 {
        return Err(SeccompError(format!(
            "libseccomp exported {} bytes, not a whole number of instructions",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(size)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// Compiled once per process: the filters do not change while it runs.
pub fn compiled(rules: Rules) -> Result<&'static Compiled, SeccompError> {
    type Once = std::sync::OnceLock<Result<Compiled, String>>;
    static COMPILED: [Once; 3] = [Once::new(), Once::new(), Once::new()];
    COMPILED[rules as usize]
        .get_or_init(|| compile(rules).map_err(|e| e.0))
        .as_ref()
        .map_err(|e| SeccompError(e.clone()))
}

/// Like [`compiled`], but kept between processes in `dir` (the caller's
/// private slot directory), so that a short-lived `comb` does not compile
/// it at every start. The file is named after this binary and the
/// libseccomp it links, so a new build or library compiles anew; a file
/// that is not ours alone, or not a valid program, is compiled over.
pub fn cached(rules: Rules, dir: &std::path::Path) -> Result<Compiled, SeccompError> {
    let Some(key) = cache_key() else {
        return compiled(rules).cloned();
    };
    let path = dir.join(format!("seccomp-{key:016x}-{}.bpf", rules as usize));
    if let Some(found) = read_cache(&path) {
        return Ok(found);
    }
    let fresh = compiled(rules)?.clone();
    write_cache(dir, &path, &fresh);
    Ok(fresh)
}

/// Identifies this binary and the installed libseccomp.
fn cache_key() -> Option<u64> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let exe = std::fs::metadata("/proc/self/exe").ok()?;
    let version = libseccomp::ScmpVersion::current().ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        exe.dev(),
        exe.ino(),
        exe.size(),
        exe.mtime(),
        exe.mtime_nsec(),
    )
        .hash(&mut h);
    (version.major, version.minor, version.micro).hash(&mut h);
    Some(h.finish())
}

fn read_cache(path: &std::path::Path) -> Option<Compiled> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    let ours = meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o022 == 0;
    if !ours || !meta.is_file() || meta.len() > 1 << 20 {
        return None;
    }
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    let compiled: Compiled = serde_json::from_str(&text).ok()?;
    let valid = compiled.programs.len() == 2
        && compiled
            .programs
            .iter()
            .all(|p| !p.is_empty() && p.len() <= u16::MAX as usize);
    valid.then_some(compiled)
}

fn write_cache(dir: &std::path::Path, path: &std::path::Path, compiled: &Compiled) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Programs of other builds of comb are of no more use.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("seccomp-") && name.ends_with(".bpf") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let tmp = dir.join(format!(".seccomp-{}.tmp", std::process::id()));
    let Ok(text) = serde_json::to_string(compiled) else {
        return;
    };
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Refused with EPERM whatever the arguments. Names missing on an arch
/// (`umount`, `stime`, `clock_settime64`, `clock_adjtime64` are i386 only)
/// are skipped there.
const DENY: &[&str] = &[
    // Keyrings: shared kernel state, and a long history of bugs.
    "add_key",
    "request_key",
    "keyctl",
    // Mounts: the sandbox's tree is fixed before the command runs.
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "open_tree_attr",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    // A new user namespace would give back every capability inside it.
    "unshare",
    "setns",
    // Other processes' memory and descriptors.
    "ptrace",
    "pidfd_getfd",
    "process_vm_readv",
    "process_vm_writev",
    // Attack surface.
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_settime64",
    "clock_adjtime",
    "clock_adjtime64",
    "adjtimex",
    "acct",
    "swapon",
    "swapoff",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "open_by_handle_at",
    "syslog",
    "vhangup",
    "iopl",
    "ioperm",
    // Local descriptor tables: 16-bit segments, a source of kernel bugs.
    "modify_ldt",
    "nfsservctl",
    "fanotify_init",
    "uselib",
    "_sysctl",
];

/// Refused with ENOSYS: their flags are behind a pointer, and libc falls
/// back to `openat`/`clone` on ENOSYS, which the rules below can inspect.
const DENY_ENOSYS: &[&str] = &["openat2", "clone3"];

/// Syscalls numbered 424 and up, which have one number on x86_64 and i386
/// (and that number | `X32_SYSCALL_BIT` on x32). One of them that the
/// installed libseccomp cannot name is refused by number by the second
/// filter, whatever its arguments (ENOSYS when the rule had conditions, so
/// libc falls back to an older call that is checked).
const LATE_SYSCALLS: &[(&str, u32)] = &[
    ("io_uring_setup", 425),
    ("io_uring_enter", 426),
    ("io_uring_register", 427),
    ("open_tree", 428),
    ("move_mount", 429),
    ("fsopen", 430),
    ("fsconfig", 431),
    ("fsmount", 432),
    ("fspick", 433),
    ("clone3", 435),
    ("openat2", 437),
    ("pidfd_getfd", 438),
    ("mount_setattr", 442),
    ("quotactl_fd", 443),
    ("fchmodat2", 452),
    ("open_tree_attr", 467),
];

const S_ISUID: u64 = libc::S_ISUID as u64;
const S_ISGID: u64 = libc::S_ISGID as u64;
/// `O_TMPFILE` without its `O_DIRECTORY` part: the kernel treats any open
/// with this bit as a creation that uses the mode.
const O_TMPFILE_BIT: u64 = 0o2000_0000;
/// Namespace flags of `clone`. `CLONE_NEWTIME` (0x80) falls in the exit
/// signal byte of the legacy `clone`, so refusing it there only refuses a
/// nonsensical exit signal.
const NAMESPACE_FLAGS: [u64; 8] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    0x80, // CLONE_NEWTIME
];
const TIOCSTI: u64 = 0x5412;
const TIOCLINUX: u64 = 0x541C;

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A filter being built: the libseccomp context plus the numbers (and
/// errnos) of the syscalls libseccomp could not name.
struct Filter {
    ctx: ScmpFilterContext,
    by_number: Vec<(u32, i32)>,
}

fn lib_err(what: &'static str) -> impl Fn(libseccomp::error::SeccompError) -> SeccompError {
    move |e| SeccompError(format!("{what}: {e}"))
}

/// `(arg & bit) == bit`
fn bit_set(arg: u32, bit: u64) -> ScmpArgCompare {
    ScmpArgCompare::new(arg, ScmpCompareOp::MaskedEqual(bit), bit)
}

/// `(arg & mask) == value`
fn masked_eq(arg: u32, mask: u64, value: u64) -> ScmpArgCompare {
    ScmpArgCompare::new(arg, ScmpCompareOp::MaskedEqual(mask), value)
}

impl Filter {
    fn build(rules: Rules) -> Result<Self, SeccompError> {
        let setid_bits: &[u64] = match rules {
            Rules::NoSetId => &[S_ISUID, S_ISGID],
            Rules::SetGid => &[S_ISUID],
            Rules::SetId => &[],
        };

        let ctx = ScmpFilterContext::new(ScmpAction::Allow).map_err(lib_err("new filter"))?;
        let mut f = Filter {
            ctx,
            by_number: Vec::new(),
        };
        for arch in [ScmpArch::X86, ScmpArch::X32] {
            if !f.ctx.is_arch_present(arch).map_err(lib_err("arch"))? {
                f.ctx.add_arch(arch).map_err(lib_err("add arch"))?;
            }
        }
        // Any other ABI is not expected on x86: kill, not just the thread.
        f.ctx
            .set_act_badarch(ScmpAction::KillProcess)
            .map_err(lib_err("bad arch action"))?;
        // A binary tree of syscall numbers rather than a list: fewer
        // instructions per syscall, and far fewer for the kernel, which
        // runs the filter for every syscall number of every arch when it
        // is loaded, to cache which ones it allows outright.
        f.ctx
            .set_ctl_optimize(2)
            .map_err(lib_err("binary tree optimization"))?;

        for name in DENY {
            f.deny(name, libc::EPERM, &[])?;
        }
        for name in DENY_ENOSYS {
            f.deny(name, libc::ENOSYS, &[])?;
        }

        // setuid/setgid bits, one rule per bit: (mode & bit) == bit.
        // `creat` always creates, so only its mode matters.
        for (name, mode) in [
            ("chmod", 1),
            ("fchmod", 1),
            ("fchmodat", 2),
            ("fchmodat2", 2),
            ("creat", 1),
        ] {
            for &bit in setid_bits {
                f.deny(name, libc::EPERM, &[bit_set(mode, bit)])?;
            }
        }
        for (name, flags, mode) in [("open", 1, 2), ("openat", 2, 3)] {
            for create in [libc::O_CREAT as u64, O_TMPFILE_BIT] {
                for &bit in setid_bits {
                    f.deny(
                        name,
                        libc::EPERM,
                        &[bit_set(flags, create), bit_set(mode, bit)],
                    )?;
                }
            }
        }
        // mknod: no setid bits, no character or block devices (FIFOs,
        // sockets and regular files are fine).
        for (name, mode) in [("mknod", 1), ("mknodat", 2)] {
            for &bit in setid_bits {
                f.deny(name, libc::EPERM, &[bit_set(mode, bit)])?;
            }
            for kind in [libc::S_IFCHR, libc::S_IFBLK] {
                let cmp = masked_eq(mode, libc::S_IFMT.into(), kind.into());
                f.deny(name, libc::EPERM, &[cmp])?;
            }
        }
        // clone's flags are its first argument on x86_64, i386 and x32.
        for flag in NAMESPACE_FLAGS {
            f.deny("clone", libc::EPERM, &[bit_set(0, flag)])?;
        }
        // The kernel truncates the ioctl request to 32 bits: compare only
        // those, so setting high bits does not slip past the rule.
        for request in [TIOCSTI, TIOCLINUX] {
            f.deny("ioctl", libc::EPERM, &[masked_eq(1, 0xffff_ffff, request)])?;
        }
        Ok(f)
    }

    /// Refuse `name` with `errno` when all `conds` hold, on every arch that
    /// has it.
    fn deny(
        &mut self,
        name: &str,
        errno: i32,
        conds: &[ScmpArgCompare],
    ) -> Result<(), SeccompError> {
        match ScmpSyscall::from_name(name) {
            Ok(syscall) => {
                self.ctx
                    .add_rule_conditional(ScmpAction::Errno(errno), syscall, conds)
                    .map_err(|e| SeccompError(format!("rule for {name}: {e}")))?;
            }
            Err(_) => {
                // Unknown to this libseccomp: refuse it by number if it is a
                // syscall we know the number of, else there is nothing to do.
                if let Some(&(_, nr)) = LATE_SYSCALLS.iter().find(|(n, _)| *n == name) {
                    let errno = if conds.is_empty() {
                        errno
                    } else {
                        libc::ENOSYS
                    };
                    if !self.by_number.iter().any(|&(n, _)| n == nr) {
                        self.by_number.push((nr, errno));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Socket families a build may use: local sockets, IPv4 and IPv6 (the
/// network namespace has only loopback) and netlink, for reading the
/// interfaces. Everything else (vsock, packet, key, alg, xdp, bluetooth,
/// tipc, rds, …) reaches the kernel or the hypervisor past the network
/// namespace, and gets EAFNOSUPPORT.
const SOCKET_FAMILIES: [u32; 4] = [
    libc::AF_UNIX as u32,
    libc::AF_INET as u32,
    libc::AF_INET6 as u32,
    libc::AF_NETLINK as u32,
];
/// The only netlink protocol allowed: routing (interfaces and addresses).
const NETLINK_ROUTE: u32 = 0;
/// Flags `personality` may set: 32-bit (`PER_LINUX32`), `UNAME26` and
/// `ADDR_NO_RANDOMIZE` (`setarch`, `--vary kernel`/`aslr`); 0xffffffff
/// only queries. Other flags (`READ_IMPLIES_EXEC`, `MMAP_PAGE_ZERO`, the
/// other personas) weaken the process or expose old kernel code.
const PERSONALITY_ALLOWED: u32 = 0x0008 | 0x0002_0000 | 0x0004_0000;
const PERSONALITY_QUERY: u32 = 0xffff_ffff;

/// Syscall numbers the argument checks need, per ABI: (x86_64 and x32,
/// i386).
const NR_SOCKET: (u32, u32) = (41, 359);
const NR_SOCKETPAIR: (u32, u32) = (53, 360);
const NR_PERSONALITY: (u32, u32) = (135, 136);
/// i386's multiplexer hides the socket family behind a pointer: refused
/// with ENOSYS, so libc uses `socket()`, whose family is checked.
const NR_SOCKETCALL_I386: u32 = 102;

/// The second filter, written by hand because libseccomp cannot say "only
/// these values": the socket family allow-list, the `personality`
/// allow-list, i386's `socketcall`, and the syscalls refused by number
/// (`refused`: number, errno) that libseccomp could not name.
///
/// ```text
///        A = arch
///        x86_64/x32: A = nr & ~X32_SYSCALL_BIT, then the 64-bit numbers
///        i386:       A = nr, then the i386 numbers (and socketcall)
///        anything else: ALLOW (the first filter kills it)
/// SOCKET: A = low word of args[0]; a listed family → ALLOW (netlink →
///         NETLINK), else EAFNOSUPPORT
/// NETLINK: A = low word of args[2]; routing → ALLOW, else EPROTONOSUPPORT
/// PERSONALITY: A = low word of args[0]; query → ALLOW;
///         A &= ~allowed; A == 0 → ALLOW, else EPERM
/// ```
///
/// The kernel takes the family, protocol and persona as 32-bit ints, so
/// only the low word is compared: high bits cannot smuggle a value past.
fn argument_program(refused: &[(u32, i32)]) -> Vec<libc::sock_filter> {
    use Label::*;
    let mut p = Bpf::default();
    p.load(ARCH);
    p.jeq(AUDIT_ARCH_X86_64, Here, Skip(3));
    p.load(NR);
    p.and(!X32_SYSCALL_BIT);
    p.jump(To("abi64"));
    p.jeq(AUDIT_ARCH_I386, Here, To("allow"));
    p.load(NR);
    p.jeq(NR_SOCKETCALL_I386, To("enosys"), Here);
    for (nr, target) in [
        (NR_SOCKET.1, "socket"),
        (NR_SOCKETPAIR.1, "socket"),
        (NR_PERSONALITY.1, "personality"),
    ] {
        p.jeq(nr, To(target), Here);
    }
    p.jump(To("numbers"));
    p.label("abi64");
    for (nr, target) in [
        (NR_SOCKET.0, "socket"),
        (NR_SOCKETPAIR.0, "socket"),
        (NR_PERSONALITY.0, "personality"),
    ] {
        p.jeq(nr, To(target), Here);
    }
    p.label("numbers");
    for (i, &(nr, _)) in refused.iter().enumerate() {
        p.jeq(nr, Refused(i), Here);
    }
    p.jump(To("allow"));

    p.label("socket");
    p.load(ARG0_LOW);
    for family in SOCKET_FAMILIES {
        let target = if family == libc::AF_NETLINK as u32 {
            "netlink"
        } else {
            "allow"
        };
        p.jeq(family, To(target), Here);
    }
    p.ret(errno(libc::EAFNOSUPPORT));
    p.label("netlink");
    p.load(ARG2_LOW);
    p.jeq(NETLINK_ROUTE, To("allow"), Here);
    p.ret(errno(libc::EPROTONOSUPPORT));

    p.label("personality");
    p.load(ARG0_LOW);
    p.jeq(PERSONALITY_QUERY, To("allow"), Here);
    p.and(!PERSONALITY_ALLOWED);
    p.jeq(0, To("allow"), Here);
    p.ret(errno(libc::EPERM));

    p.label("enosys");
    p.ret(errno(libc::ENOSYS));
    for (i, &(_, e)) in refused.iter().enumerate() {
        p.refused_label(i);
        p.ret(errno(e));
    }
    p.label("allow");
    p.ret(libc::SECCOMP_RET_ALLOW);
    p.finish()
}

/// Offsets in `struct seccomp_data`: nr, arch, and the low words of
/// args[0] and args[2] (little-endian).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;
const ARG2_LOW: u32 = 32;

fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

/// Where a jump goes: the next instruction, some further on, a named
/// label, or the refusal of the i-th syscall refused by number.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    Here,
    Skip(usize),
    To(&'static str),
    Refused(usize),
}

/// A tiny assembler for classic BPF with forward jumps to labels.
#[derive(Default)]
struct Bpf {
    code: Vec<(libc::sock_filter, Option<Label>, Option<Label>)>,
    labels: Vec<(Label, usize)>,
}

impl Bpf {
    fn op(&mut self, code: u32, k: u32, jt: Option<Label>, jf: Option<Label>) {
        let insn = libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        self.code.push((insn, jt, jf));
    }
    fn load(&mut self, offset: u32) {
        self.op(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            offset,
            None,
            None,
        );
    }
    fn and(&mut self, mask: u32) {
        self.op(
            libc::BPF_ALU | libc::BPF_AND | libc::BPF_K,
            mask,
            None,
            None,
        );
    }
    fn jeq(&mut self, value: u32, yes: Label, no: Label) {
        self.op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            value,
            Some(yes),
            Some(no),
        );
    }
    fn jump(&mut self, to: Label) {
        self.op(libc::BPF_JMP | libc::BPF_JA, 0, Some(to), None);
    }
    fn ret(&mut self, value: u32) {
        self.op(libc::BPF_RET | libc::BPF_K, value, None, None);
    }
    fn label(&mut self, name: &'static str) {
        self.labels.push((Label::To(name), self.code.len()));
    }
    fn refused_label(&mut self, i: usize) {
        self.labels.push((Label::Refused(i), self.code.len()));
    }

    /// Resolves the labels. Panics on a backward or too long jump: the
    /// program is fixed, so that is a bug caught by the tests.
    fn finish(self) -> Vec<libc::sock_filter> {
        let target = |from: usize, label: Label| -> usize {
            let to = match label {
                Label::Here => from + 1,
                Label::Skip(n) => from + 1 + n,
                named => {
                    self.labels
                        .iter()
                        .find(|(n, _)| *n == named)
                        .expect("every label used is placed")
                        .1
                }
            };
            assert!(to > from, "backward jump to {to} from {from}");
            to - from - 1
        };
        let mut out = Vec::with_capacity(self.code.len());
        for (i, (mut insn, jt, jf)) in self.code.iter().copied().enumerate() {
            let is_ja = insn.code == (libc::BPF_JMP | libc::BPF_JA) as u16;
            if is_ja {
                insn.k = target(i, jt.expect("a jump has a target")) as u32;
            } else {
                if let Some(l) = jt {
                    insn.jt = u8::try_from(target(i, l)).expect("jump too long");
                }
                if let Some(l) = jf {
                    insn.jf = u8::try_from(target(i, l)).expect("jump too long");
                }
            }
            out.push(insn);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    //! Each test forks a child that installs the filter and makes the
    //! syscall; the child's exit code carries the errno back.

    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, PartialEq, Eq, Clone, Copy)]
    enum Outcome {
        Done,
        Errno(i32),
    }
    use std::os::unix::fs::PermissionsExt;
    use Outcome::{Done, Errno};

    const EPERM: Outcome = Errno(libc::EPERM);
    const ENOSYS: Outcome = Errno(libc::ENOSYS);
    const ENOTSUP: Outcome = Errno(libc::ENOTSUP);

    /// The outcome of a libc call returning -1 and errno on failure.
    fn check(ret: libc::c_long) -> Outcome {
        if ret == -1 {
            Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Done
        }
    }

    /// Forks, installs the filter of `rules` in the child (none if
    /// `None`), runs `f` there and returns its outcome.
    fn in_child(rules: Option<Rules>, f: &dyn Fn() -> Outcome) -> Outcome {
        // Building the filter allocates in the child; glibc keeps malloc
        // usable after fork even in the multi-threaded test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match rules.map_or(Ok(()), install) {
                    Err(_) => 255,
                    Ok(()) => match f() {
                        Done => 0,
                        Errno(e) => e.clamp(1, 250),
                    },
                }
            }))
            .unwrap_or(254);
            unsafe { libc::_exit(code) };
        }
        let status = wait(pid);
        assert!(
            libc::WIFEXITED(status),
            "child died of signal {}",
            libc::WTERMSIG(status)
        );
        match libc::WEXITSTATUS(status) {
            0 => Done,
            255 => panic!("install failed in the child"),
            254 => panic!("the child panicked"),
            e => Errno(e),
        }
    }

    /// Runs `f` under the three filters; they must agree.
    fn filtered(f: impl Fn() -> Outcome) -> Outcome {
        let strict = in_child(Some(Rules::NoSetId), &f);
        for rules in [Rules::SetGid, Rules::SetId] {
            assert_eq!(in_child(Some(rules), &f), strict, "{rules:?} differs");
        }
        strict
    }

    /// Runs `f` under the filter that refuses every set-id bit (U's).
    fn no_setid(f: impl Fn() -> Outcome) -> Outcome {
        in_child(Some(Rules::NoSetId), &f)
    }

    /// Runs `f` under the filter that allows setgid (contained R's).
    fn set_gid(f: impl Fn() -> Outcome) -> Outcome {
        in_child(Some(Rules::SetGid), &f)
    }

    fn wait(pid: libc::pid_t) -> libc::c_int {
        let mut status = 0;
        loop {
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                return status;
            }
            assert!(
                std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted,
                "waitpid failed"
            );
        }
    }

    /// A scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static COUNT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "comb-seccomp-test-{}-{}",
                std::process::id(),
                COUNT.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir(&dir).unwrap();
            Scratch(dir)
        }
        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
        fn c(&self, name: &str) -> CString {
            CString::new(self.path(name).as_os_str().as_bytes()).unwrap()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mode_of(path: &std::path::Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
    }

    /// `syscall(nr, args...)` with up to six arguments.
    fn sys(nr: libc::c_long, a: &[u64]) -> Outcome {
        let g = |i: usize| a.get(i).copied().unwrap_or(0);
        check(unsafe { libc::syscall(nr, g(0), g(1), g(2), g(3), g(4), g(5)) })
    }

    /// An i386 syscall from this 64-bit process, through `int $0x80`.
    fn int80(nr: u32, a1: u32, a2: u32, a3: u32) -> Outcome {
        let ret: i32;
        // SAFETY: the kernel preserves every register but eax (and r8-r11,
        // declared clobbered); rbx is reserved by LLVM, so it is swapped in
        // and out around the call.
        unsafe {
            std::arch::asm!(
                "xchg {b}, rbx",
                "int 0x80",
                "xchg {b}, rbx",
                b = inout(reg) u64::from(a1) => _,
                inlateout("eax") nr => ret,
                in("ecx") a2,
                in("edx") a3,
                in("esi") 0u32,
                in("edi") 0u32,
                out("r8") _,
                out("r9") _,
                out("r10") _,
                out("r11") _,
            );
        }
        if (-4095..0).contains(&ret) {
            Errno(-ret)
        } else {
            Done
        }
    }

    #[test]
    fn setid_chmod_refused_plain_chmod_allowed() {
        let s = Scratch::new();
        std::fs::write(s.path("f"), b"x").unwrap();
        let p = s.c("f");
        for mode in [0o4755, 0o2755, 0o6755, 0o4000] {
            // Contained R may set the setgid bit alone, never setuid.
            let set_gid_answer = if mode & 0o4000 == 0 { Done } else { EPERM };
            let chmod = || check(unsafe { libc::chmod(p.as_ptr(), mode) }.into());
            let fchmod = || {
                let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY) };
                check(unsafe { libc::fchmod(fd, mode) }.into())
            };
            let fchmodat =
                || check(unsafe { libc::fchmodat(libc::AT_FDCWD, p.as_ptr(), mode, 0) }.into());
            let calls: [&dyn Fn() -> Outcome; 3] = [&chmod, &fchmod, &fchmodat];
            for call in calls {
                assert_eq!(no_setid(call), EPERM, "mode {mode:o}");
                assert_eq!(mode_of(&s.path("f")) & 0o7000, 0, "mode {mode:o}");
                assert_eq!(set_gid(call), set_gid_answer, "mode {mode:o}");
                assert_eq!(mode_of(&s.path("f")) & 0o4000, 0, "mode {mode:o}");
                assert_eq!(in_child(Some(Rules::SetId), call), Done, "mode {mode:o}");
                std::fs::set_permissions(s.path("f"), std::fs::Permissions::from_mode(0o644))
                    .unwrap();
            }
            let fchmodat2 = || {
                sys(
                    libc::SYS_fchmodat2,
                    &[libc::AT_FDCWD as u64, p.as_ptr() as u64, mode.into(), 0],
                )
            };
            assert_ne!(no_setid(fchmodat2), Done);
        }
        assert_eq!(mode_of(&s.path("f")) & 0o7777, 0o644);
        assert_eq!(
            filtered(|| check(unsafe { libc::chmod(p.as_ptr(), 0o755) }.into())),
            Done
        );
        assert_eq!(mode_of(&s.path("f")) & 0o7777, 0o755);
        assert_eq!(
            filtered(|| check(unsafe { libc::chmod(p.as_ptr(), 0o1777) }.into())),
            Done
        );
    }

    #[test]
    fn setid_create_refused() {
        let s = Scratch::new();
        let p = s.c("new");
        let dir = s.c("");
        let wr = libc::O_WRONLY | libc::O_CREAT;
        for mode in [0o4755 as libc::c_uint, 0o2644, 0o6700] {
            assert_eq!(
                no_setid(|| check(unsafe { libc::open(p.as_ptr(), wr, mode) }.into())),
                EPERM
            );
            let openat =
                || check(unsafe { libc::openat(libc::AT_FDCWD, p.as_ptr(), wr, mode) }.into());
            assert_eq!(no_setid(openat), EPERM);
            assert_eq!(
                no_setid(|| check(unsafe { libc::creat(p.as_ptr(), mode) }.into())),
                EPERM
            );
            let tmpfile = || {
                check(
                    unsafe { libc::open(dir.as_ptr(), libc::O_TMPFILE | libc::O_RDWR, mode) }
                        .into(),
                )
            };
            assert_eq!(no_setid(tmpfile), EPERM);
            // The x86_64 open with raw high bits in the flags word.
            let raw = || {
                sys(
                    libc::SYS_open,
                    &[p.as_ptr() as u64, (1 << 40) | wr as u64, mode.into()],
                )
            };
            assert_eq!(no_setid(raw), EPERM);
            if mode & 0o4000 != 0 {
                assert_eq!(set_gid(raw), EPERM);
                assert_eq!(set_gid(tmpfile), EPERM);
            }
        }
        assert!(!s.path("new").exists());
        assert_eq!(
            filtered(|| check(unsafe { libc::open(p.as_ptr(), wr, 0o644) }.into())),
            Done
        );
        assert_eq!(mode_of(&s.path("new")) & 0o7000, 0);
        // Opening an existing file without O_CREAT ignores the mode.
        assert_eq!(
            filtered(|| check(unsafe { libc::open(p.as_ptr(), libc::O_RDONLY, 0o4755) }.into())),
            Done
        );
    }

    #[test]
    fn device_and_setid_mknod_refused() {
        let s = Scratch::new();
        let p = s.c("node");
        let refused = [
            (libc::S_IFCHR | 0o600, libc::makedev(1, 3)),
            (libc::S_IFBLK | 0o600, libc::makedev(8, 0)),
            (libc::S_IFREG | libc::S_ISUID | 0o755, 0),
            (libc::S_IFREG | libc::S_ISGID | 0o755, 0),
            (libc::S_IFIFO | libc::S_ISUID | 0o755, 0),
        ];
        for (mode, dev) in refused {
            assert_eq!(
                no_setid(|| check(unsafe { libc::mknod(p.as_ptr(), mode, dev) }.into())),
                EPERM
            );
            let at =
                || check(unsafe { libc::mknodat(libc::AT_FDCWD, p.as_ptr(), mode, dev) }.into());
            assert_eq!(no_setid(at), EPERM);
            if mode & libc::S_ISGID == 0 {
                assert_eq!(set_gid(at), EPERM);
            }
        }
        assert!(!s.path("node").exists());
        let fifo = || {
            unsafe { libc::unlink(p.as_ptr()) };
            check(unsafe { libc::mknod(p.as_ptr(), libc::S_IFIFO | 0o644, 0) }.into())
        };
        assert_eq!(filtered(fifo), Done);
    }

    #[test]
    fn keyrings_refused() {
        // KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING
        assert_eq!(
            filtered(|| sys(libc::SYS_keyctl, &[0, -3i64 as u64, 0])),
            EPERM
        );
        assert_eq!(filtered(|| sys(libc::SYS_add_key, &[0, 0, 0, 0, 0])), EPERM);
        assert_eq!(
            filtered(|| sys(libc::SYS_request_key, &[0, 0, 0, 0])),
            EPERM
        );
    }

    /// clone(flags) without a new stack: returns like fork.
    fn raw_clone(flags: u64) -> Outcome {
        let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
        if pid == 0 {
            unsafe { libc::_exit(0) };
        }
        if pid > 0 {
            wait(pid as libc::pid_t);
        }
        check(pid)
    }

    #[test]
    fn namespaces_refused_fork_allowed() {
        let newuser = libc::CLONE_NEWUSER as u64;
        let sigchld = libc::SIGCHLD as u64;
        assert_eq!(
            filtered(|| check(unsafe { libc::unshare(libc::CLONE_NEWUSER) }.into())),
            EPERM
        );
        assert_eq!(
            filtered(|| check(unsafe { libc::unshare(0) }.into())),
            EPERM
        );
        assert_eq!(
            filtered(|| check(unsafe { libc::setns(-1, 0) }.into())),
            EPERM
        );
        for flag in NAMESPACE_FLAGS {
            assert_eq!(
                filtered(|| raw_clone(flag | sigchld)),
                EPERM,
                "flag {flag:#x}"
            );
        }
        assert_eq!(filtered(|| raw_clone((1 << 40) | newuser | sigchld)), EPERM);
        assert_eq!(filtered(|| raw_clone(sigchld)), Done);
        assert_eq!(filtered(|| sys(libc::SYS_clone3, &[0, 0])), ENOSYS);
        let fork = || {
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                unsafe { libc::_exit(7) };
            }
            match wait(pid) {
                s if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 7 => Done,
                _ => Errno(libc::ECHILD),
            }
        };
        assert_eq!(filtered(fork), Done);
    }

    #[test]
    fn tiocsti_refused() {
        // /dev/null: unfiltered, the call would fail with ENOTTY and never
        // push a character into the terminal running the tests.
        let null = CString::new("/dev/null").unwrap();
        let ioctl = |request: u64| {
            let fd = unsafe { libc::open(null.as_ptr(), libc::O_RDWR) };
            let c = b'x';
            sys(
                libc::SYS_ioctl,
                &[fd as u64, request, &c as *const u8 as u64],
            )
        };
        assert_eq!(filtered(|| ioctl(TIOCSTI)), EPERM);
        assert_eq!(filtered(|| ioctl(TIOCLINUX)), EPERM);
        assert_eq!(filtered(|| ioctl((1 << 32) | TIOCSTI)), EPERM);
        assert_eq!(filtered(|| ioctl(libc::TCGETS)), Errno(libc::ENOTTY));
    }

    #[test]
    fn mounts_refused() {
        let s = Scratch::new();
        let dir = s.c("");
        let tmpfs = CString::new("tmpfs").unwrap();
        let mount = || {
            check(
                unsafe {
                    libc::mount(
                        tmpfs.as_ptr(),
                        dir.as_ptr(),
                        tmpfs.as_ptr(),
                        0,
                        std::ptr::null(),
                    )
                }
                .into(),
            )
        };
        assert_eq!(filtered(mount), EPERM);
        assert_eq!(
            filtered(|| check(unsafe { libc::umount2(dir.as_ptr(), libc::MNT_DETACH) }.into())),
            EPERM
        );
        assert_eq!(
            filtered(|| check(unsafe { libc::chroot(dir.as_ptr()) }.into())),
            EPERM
        );
        let root = c"/";
        assert_eq!(
            filtered(|| sys(
                libc::SYS_pivot_root,
                &[dir.as_ptr() as u64, dir.as_ptr() as u64]
            )),
            EPERM
        );
        // open_tree(AT_FDCWD, "/", OPEN_TREE_CLONE)
        let open_tree = || {
            sys(
                libc::SYS_open_tree,
                &[libc::AT_FDCWD as u64, root.as_ptr() as u64, 1],
            )
        };
        assert_eq!(filtered(open_tree), EPERM);
        assert_eq!(
            filtered(|| sys(libc::SYS_fsopen, &[tmpfs.as_ptr() as u64, 0])),
            EPERM
        );
        for nr in [
            libc::SYS_fsconfig,
            libc::SYS_fsmount,
            libc::SYS_fspick,
            libc::SYS_move_mount,
            libc::SYS_mount_setattr,
            467, // open_tree_attr
        ] {
            assert_eq!(
                filtered(|| sys(nr, &[u64::MAX, 0, 0, 0, 0])),
                EPERM,
                "syscall {nr}"
            );
        }
    }

    #[test]
    fn xattrs_are_left_to_the_kernel() {
        let s = Scratch::new();
        std::fs::write(s.path("f"), b"x").unwrap();
        let p = s.c("f");
        let name = c"user.comb";
        let mut buf = [0u8; 64];
        let b = buf.as_mut_ptr() as u64;
        let (pp, n) = (p.as_ptr() as u64, name.as_ptr() as u64);
        let at = libc::AT_FDCWD as u64;
        let calls: [(libc::c_long, [u64; 5]); 16] = [
            (libc::SYS_setxattr, [pp, n, b, 1, 0]),
            (libc::SYS_lsetxattr, [pp, n, b, 1, 0]),
            (libc::SYS_fsetxattr, [0, n, b, 1, 0]),
            (libc::SYS_getxattr, [pp, n, b, 64, 0]),
            (libc::SYS_lgetxattr, [pp, n, b, 64, 0]),
            (libc::SYS_fgetxattr, [0, n, b, 64, 0]),
            (libc::SYS_listxattr, [pp, b, 64, 0, 0]),
            (libc::SYS_llistxattr, [pp, b, 64, 0, 0]),
            (libc::SYS_flistxattr, [0, b, 64, 0, 0]),
            (libc::SYS_removexattr, [pp, n, 0, 0, 0]),
            (libc::SYS_lremovexattr, [pp, n, 0, 0, 0]),
            (libc::SYS_fremovexattr, [0, n, 0, 0, 0]),
            (463, [at, pp, 0, n, 0]),  // setxattrat
            (464, [at, pp, 0, n, 0]),  // getxattrat
            (465, [at, pp, 0, b, 64]), // listxattrat
            (466, [at, pp, 0, n, 0]),  // removexattrat
        ];
        // Whatever the file system answers unfiltered (the late *xattrat
        // calls may not exist), the filters answer the same.
        // Each call starts from a file that has the attribute.
        let prepare =
            || unsafe { libc::setxattr(p.as_ptr(), name.as_ptr(), b"x".as_ptr().cast(), 1, 0) };
        for (nr, args) in calls {
            for rules in [Rules::NoSetId, Rules::SetGid, Rules::SetId] {
                prepare();
                let unfiltered = in_child(None, &|| sys(nr, &args));
                prepare();
                let answer = in_child(Some(rules), &|| sys(nr, &args));
                assert_eq!(answer, unfiltered, "syscall {nr} under {rules:?}");
            }
        }
        assert_ne!(
            in_child(None, &|| sys(libc::SYS_setxattr, &[pp, n, b, 1, 0])),
            ENOTSUP,
            "the scratch file system takes no user.* xattr: nothing was tested"
        );
    }

    #[test]
    fn attack_surface_refused() {
        let params = [0u8; 120]; // struct io_uring_params
        let pp = params.as_ptr() as u64;
        let calls: &[(libc::c_long, &[u64])] = &[
            (libc::SYS_io_uring_setup, &[1, pp]),
            (libc::SYS_io_uring_enter, &[u64::MAX, 0, 0, 0, 0, 0]),
            (libc::SYS_io_uring_register, &[u64::MAX, 0, 0, 0]),
            (libc::SYS_ptrace, &[libc::PTRACE_TRACEME as u64]),
            (libc::SYS_process_vm_readv, &[1, 0, 0, 0, 0, 0]),
            (libc::SYS_process_vm_writev, &[1, 0, 0, 0, 0, 0]),
            (libc::SYS_bpf, &[u64::MAX, 0, 0]),
            (libc::SYS_perf_event_open, &[0, 0, u64::MAX, u64::MAX, 0]),
            (libc::SYS_userfaultfd, &[0]),
            (libc::SYS_init_module, &[0, 0, 0]),
            (libc::SYS_finit_module, &[u64::MAX, 0, 0]),
            (libc::SYS_delete_module, &[0, 0]),
            (libc::SYS_kexec_load, &[0, 0, 0, u64::MAX]),
            (libc::SYS_settimeofday, &[0, 0]),
            (libc::SYS_clock_settime, &[u64::MAX, 0]),
            (libc::SYS_clock_adjtime, &[u64::MAX, 0]),
            (libc::SYS_adjtimex, &[0]),
            (libc::SYS_swapoff, &[0]),
            (libc::SYS_quotactl, &[0, 0, 0, 0]),
            (libc::SYS_open_by_handle_at, &[u64::MAX, 0, 0]),
            (libc::SYS_syslog, &[10, 0, 0]), // SYSLOG_ACTION_SIZE_BUFFER
            (libc::SYS_iopl, &[0]),
            (libc::SYS_ioperm, &[0, 0, 0]),
            (libc::SYS_fanotify_init, &[0, 0]),
            (libc::SYS_acct, &[0]),
        ];
        for &(nr, args) in calls {
            assert_eq!(filtered(|| sys(nr, args)), EPERM, "syscall {nr}");
        }
        assert_eq!(filtered(|| sys(libc::SYS_openat2, &[0, 0, 0, 0])), ENOSYS);
        // Ordinary calls still work.
        assert_eq!(filtered(|| sys(libc::SYS_getpid, &[])), Done);
        assert_eq!(
            filtered(|| sys(libc::SYS_personality, &[0xffff_ffff])),
            Done
        );
    }

    #[test]
    fn i386_abi_covered() {
        // Without the filter these succeed or fail differently, so the
        // 32-bit entry really goes through the i386 rules: keyctl (288),
        // unshare (310), open_tree_attr (467, refused by the by-number
        // filter where libseccomp cannot name it, by name elsewhere).
        assert_eq!(
            in_child_plain(|| int80(20, 0, 0, 0)),
            Done,
            "no int 0x80 here"
        );
        assert_eq!(filtered(|| int80(288, 0, -3i32 as u32, 0)), EPERM);
        assert_eq!(
            filtered(|| int80(310, libc::CLONE_NEWUSER as u32, 0, 0)),
            EPERM
        );
        assert_eq!(filtered(|| int80(467, libc::AT_FDCWD as u32, 0, 0)), EPERM);
        // ioctl (54) TIOCSTI on fd -1: refused before the fd is looked at.
        assert_eq!(filtered(|| int80(54, u32::MAX, TIOCSTI as u32, 0)), EPERM);
        assert_eq!(filtered(|| int80(20, 0, 0, 0)), Done); // getpid
    }

    /// Closes a descriptor a successful socket call returned.
    fn sock(ret: libc::c_long) -> Outcome {
        let out = check(ret);
        if out == Done {
            unsafe { libc::close(ret as i32) };
        }
        out
    }

    #[test]
    fn socket_families_are_an_allow_list() {
        const EAFNOSUPPORT: Outcome = Errno(libc::EAFNOSUPPORT);
        let socket = |family: u64, kind: i32, proto: i32| {
            sock(unsafe { libc::syscall(libc::SYS_socket, family, kind, proto) })
        };
        for family in [
            libc::AF_VSOCK,
            libc::AF_PACKET,
            libc::AF_KEY,
            libc::AF_ALG,
            libc::AF_XDP,
            libc::AF_BLUETOOTH,
            libc::AF_TIPC,
            libc::AF_RDS,
            libc::AF_UNSPEC,
            255,
        ] {
            let out = filtered(|| socket(family as u64, libc::SOCK_DGRAM, 0));
            assert_eq!(out, EAFNOSUPPORT, "family {family}");
        }
        // The kernel reads an int: high bits must not hide the family.
        let high = (1u64 << 32) | libc::AF_VSOCK as u64;
        assert_eq!(
            filtered(|| socket(high, libc::SOCK_STREAM, 0)),
            EAFNOSUPPORT
        );
        let x32 = libc::SYS_socket | X32_SYSCALL_BIT as libc::c_long;
        assert_eq!(
            filtered(|| check(unsafe { libc::syscall(x32, libc::AF_VSOCK, 1, 0) })),
            EAFNOSUPPORT
        );
        assert_eq!(
            filtered(|| socket(libc::AF_NETLINK as u64, libc::SOCK_RAW, libc::NETLINK_AUDIT)),
            Errno(libc::EPROTONOSUPPORT)
        );
        for (family, kind) in [
            (libc::AF_UNIX, libc::SOCK_STREAM),
            (libc::AF_INET, libc::SOCK_DGRAM),
            (libc::AF_INET6, libc::SOCK_DGRAM),
        ] {
            assert_eq!(filtered(|| socket(family as u64, kind, 0)), Done);
        }
        assert_eq!(
            filtered(|| socket(libc::AF_NETLINK as u64, libc::SOCK_RAW, libc::NETLINK_ROUTE)),
            Done
        );
        let mut pair = [0i32; 2];
        let pair_ptr = pair.as_mut_ptr() as u64;
        assert_eq!(
            filtered(|| sys(
                libc::SYS_socketpair,
                &[libc::AF_VSOCK as u64, 1, 0, pair_ptr]
            )),
            EAFNOSUPPORT
        );
        // i386: socketcall hides the family (ENOSYS, so libc falls back to
        // socket(), 359), whose family is checked.
        assert_eq!(filtered(|| int80(102, 1, 0, 0)), ENOSYS);
        assert_eq!(
            filtered(|| int80(359, libc::AF_VSOCK as u32, 1, 0)),
            EAFNOSUPPORT
        );
        assert_eq!(filtered(|| int80(359, libc::AF_UNIX as u32, 1, 0)), Done);
    }

    #[test]
    fn personality_only_takes_what_setarch_needs() {
        let personality = |p: u64| {
            let out = check(unsafe { libc::syscall(libc::SYS_personality, p) });
            unsafe { libc::syscall(libc::SYS_personality, 0u64) };
            out
        };
        for refused in [
            0x0040_0000u64,
            0x0010_0000,
            0x0001,
            0x0006,
            (1 << 32) | 0x0040_0000,
        ] {
            assert_eq!(filtered(|| personality(refused)), EPERM, "{refused:#x}");
        }
        for allowed in [
            0xffff_ffffu64,
            0,
            0x0004_0000,
            0x0002_0000,
            0x0008,
            0x0006_0008,
        ] {
            assert_eq!(filtered(|| personality(allowed)), Done, "{allowed:#x}");
        }
        // i386 personality (136) goes through the same check.
        assert_eq!(filtered(|| int80(136, 0x0040_0000, 0, 0)), EPERM);
    }

    #[test]
    fn pidfd_getfd_and_modify_ldt_refused() {
        let own = || {
            let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
            assert!(pidfd >= 0, "pidfd_open");
            check(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, 1, 0) })
        };
        assert_eq!(in_child_plain(own), Done, "pidfd_getfd works unfiltered");
        assert_eq!(filtered(own), EPERM);
        let mut buf = [0u8; 16];
        let ptr = buf.as_mut_ptr() as u64;
        assert_eq!(filtered(|| sys(libc::SYS_modify_ldt, &[0, ptr, 16])), EPERM);
    }

    #[test]
    fn x32_abi_covered() {
        // Whether or not the kernel has x32, the filter answers first.
        let x32 = |nr: libc::c_long| nr | X32_SYSCALL_BIT as libc::c_long;
        assert_eq!(
            filtered(|| sys(x32(libc::SYS_keyctl), &[0, -3i64 as u64])),
            EPERM
        );
        assert_eq!(filtered(|| sys(x32(libc::SYS_unshare), &[0])), EPERM);
        assert_eq!(filtered(|| sys(x32(467), &[0])), EPERM);
    }

    /// Like `in_child`, without the filter.
    fn in_child_plain(f: impl Fn() -> Outcome) -> Outcome {
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = match f() {
                Done => 0,
                Errno(e) => e.clamp(1, 250),
            };
            unsafe { libc::_exit(code) };
        }
        let status = wait(pid);
        assert!(
            libc::WIFEXITED(status),
            "died of signal {}",
            libc::WTERMSIG(status)
        );
        match libc::WEXITSTATUS(status) {
            0 => Done,
            e => Errno(e),
        }
    }

    #[test]
    fn every_name_is_known_or_numbered() {
        // A name neither libseccomp nor LATE_SYSCALLS knows would be
        // silently unfiltered. i386-only names resolve on x86_64 too (to a
        // pseudo number).
        for name in DENY.iter().chain(DENY_ENOSYS) {
            let known = ScmpSyscall::from_name(name).is_ok()
                || LATE_SYSCALLS.iter().any(|(n, _)| n == name);
            assert!(known, "{name} is neither known to libseccomp nor numbered");
        }
        for (name, nr) in LATE_SYSCALLS {
            if let Ok(s) = ScmpSyscall::from_name_by_arch(name, ScmpArch::X8664) {
                assert_eq!(i32::from(s), *nr as i32, "{name}");
            }
            if let Ok(s) = ScmpSyscall::from_name_by_arch(name, ScmpArch::X86) {
                assert_eq!(i32::from(s), *nr as i32, "{name}");
            }
        }
    }

    /// libseccomp's pseudo filter code, split by arch: name -> syscalls.
    fn pfc_by_arch(f: &Filter) -> std::collections::BTreeMap<String, Vec<String>> {
        let s = Scratch::new();
        let file = std::fs::File::create(s.path("pfc")).unwrap();
        f.ctx.export_pfc(&file).unwrap();
        let text = std::fs::read_to_string(s.path("pfc")).unwrap();
        let mut map = std::collections::BTreeMap::new();
        let mut arch = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# filter for arch ") {
                arch = rest.split(' ').next().unwrap().to_string();
            } else if let Some(rest) = line.trim().strip_prefix("# filter for syscall \"") {
                let name = rest.split('"').next().unwrap().to_string();
                map.entry(arch.clone()).or_insert_with(Vec::new).push(name);
            }
        }
        map
    }

    #[test]
    fn every_arch_has_the_rules() {
        for rules in [Rules::NoSetId, Rules::SetGid, Rules::SetId] {
            let f = Filter::build(rules).unwrap();
            let by_arch = pfc_by_arch(&f);
            let numbered: Vec<&str> = LATE_SYSCALLS
                .iter()
                .filter(|(_, nr)| f.by_number.iter().any(|(n, _)| n == nr))
                .map(|(name, _)| *name)
                .collect();
            // Under SetId the modes are free: no rule for the chmod family.
            let modes: &[&str] = match rules {
                Rules::SetId => &[],
                _ => &[
                    "chmod",
                    "fchmod",
                    "fchmodat",
                    "fchmodat2",
                    "creat",
                    "open",
                    "openat",
                ],
            };
            let conditional = modes.iter().chain(&["mknod", "mknodat", "clone", "ioctl"]);
            for (arch, abi) in [
                ("x86_64", ScmpArch::X8664),
                ("x86", ScmpArch::X86),
                ("x32", ScmpArch::X32),
            ] {
                let names = &by_arch[arch];
                for name in DENY.iter().chain(DENY_ENOSYS).chain(conditional.clone()) {
                    let has = matches!(ScmpSyscall::from_name_by_arch(name, abi), Ok(s) if i32::from(s) >= 0);
                    if has && !numbered.contains(name) {
                        assert!(names.iter().any(|n| n == name), "{name} missing on {arch}");
                    }
                }
            }
        }
    }
}
