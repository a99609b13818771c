//! The seccomp filter loaded last, just before the sandboxed command is
//! executed.
//!
//! By then the command already runs in its own namespaces, as R or U, with
//! `PR_SET_NO_NEW_PRIVS` set. The filter takes away the kernel interfaces
//! that could undo that isolation or outlive the build:
//!
//! - leaving privilege behind: setuid/setgid bits (`chmod` family, `open`/
//!   `openat`/`creat` with `O_CREAT`/`O_TMPFILE`, `mknod`), device nodes,
//!   and every extended attribute (file capabilities, ACLs, overlayfs'
//!   `trusted.*`);
//! - rebuilding the sandbox: `mount` and the new mount API, `pivot_root`,
//!   `chroot`, `unshare`, `setns`, `clone` with a namespace flag;
//! - reaching other processes or the terminal: `ptrace`,
//!   `process_vm_readv/writev`, `TIOCSTI`/`TIOCLINUX`;
//! - large kernel attack surface no package build needs: keyrings, `bpf`,
//!   `perf_event_open`, `userfaultfd`, `io_uring`, modules, kexec, the
//!   clock, swap, quotas, `open_by_handle_at`, `syslog`, `iopl`/`ioperm`...
//!
//! Everything else is allowed: the command is an arbitrary package build,
//! so the filter is a deny-list.
//!
//! Answers: EPERM for a refusal; ENOSYS where the interesting argument sits
//! behind a pointer that seccomp cannot read (`openat2`, `clone3`), because
//! libc then falls back to `openat`/`clone`, whose arguments are checked;
//! ENOTSUP for every xattr call (see `XATTR` below).
//!
//! Architectures: the rules are added by name for x86_64, i386 and x32, so
//! a 64-bit process using `int $0x80` or the x32 syscall bit meets the same
//! rules under the numbers of that ABI; any other architecture kills the
//! process. A syscall that libseccomp cannot name for an arch is skipped
//! there (e.g. i386's `umount` does not exist on x86_64). A syscall that
//! the kernel has but the installed libseccomp does not know at all (Debian
//! 12's 2.5.4 knows nothing after `fchmodat2`, while the kernel may have
//! `setxattrat` & co.) is refused by number by a tiny second filter
//! (`LATE_SYSCALLS`); the kernel runs both filters and the refusal wins.

use crate::Identity;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

#[derive(Debug, thiserror::Error)]
#[error("seccomp: {0}")]
pub struct SeccompError(pub String);

/// Load the filter for `identity` into the calling thread (it is inherited
/// by everything exec'd after).
///
/// Call it last, right before `execve`, in a single-threaded process: other
/// threads are not filtered. It sets `PR_SET_NO_NEW_PRIVS` itself if it was
/// not set yet.
pub fn install(identity: Identity) -> Result<(), SeccompError> {
    Filter::build(identity)?.load()
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
    // Other processes' memory.
    "ptrace",
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
    "nfsservctl",
    "fanotify_init",
    "uselib",
    "_sysctl",
];

/// Refused with ENOSYS: their flags are behind a pointer, and libc falls
/// back to `openat`/`clone` on ENOSYS, which the rules below can inspect.
const DENY_ENOSYS: &[&str] = &["openat2", "clone3"];

/// Every xattr call, refused with ENOTSUP. EPERM on `getxattr`/`listxattr`
/// is fatal to `cp -a`, `tar` and friends; ENOTSUP means "this filesystem
/// has no xattrs", which every tool handles silently, for reading and for
/// writing alike. Refusing them all keeps file capabilities
/// (`security.capability`), ACLs and overlayfs' `trusted.*` out of layers.
const XATTR: &[&str] = &[
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "setxattrat",
    "getxattrat",
    "listxattrat",
    "removexattrat",
];

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
    ("mount_setattr", 442),
    ("quotactl_fd", 443),
    ("fchmodat2", 452),
    ("setxattrat", 463),
    ("getxattrat", 464),
    ("listxattrat", 465),
    ("removexattrat", 466),
    ("open_tree_attr", 467),
];

const S_ISUID: u64 = libc::S_ISUID as u64;
const S_ISGID: u64 = libc::S_ISGID as u64;
const SETID_BITS: [u64; 2] = [S_ISUID, S_ISGID];
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
    fn build(identity: Identity) -> Result<Self, SeccompError> {
        // R and U get the same rules for now: both run hostile code, and
        // what R may do beyond U comes from its capabilities inside the user
        // namespace, not from here. The parameter is the place for a
        // per-identity difference without changing the sandbox.
        match identity {
            Identity::Root | Identity::Builder | Identity::OtherBuilder => {}
        }

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

        for name in DENY {
            f.deny(name, libc::EPERM, &[])?;
        }
        for name in DENY_ENOSYS {
            f.deny(name, libc::ENOSYS, &[])?;
        }
        for name in XATTR {
            f.deny(name, libc::ENOTSUP, &[])?;
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
            for bit in SETID_BITS {
                f.deny(name, libc::EPERM, &[bit_set(mode, bit)])?;
            }
        }
        for (name, flags, mode) in [("open", 1, 2), ("openat", 2, 3)] {
            for create in [libc::O_CREAT as u64, O_TMPFILE_BIT] {
                for bit in SETID_BITS {
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
            for bit in SETID_BITS {
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

    fn load(self) -> Result<(), SeccompError> {
        // libseccomp sets PR_SET_NO_NEW_PRIVS first (its default), which the
        // second, raw filter needs too.
        self.ctx.load().map_err(lib_err("load"))?;
        if self.by_number.is_empty() {
            return Ok(());
        }
        let mut prog = by_number_program(&self.by_number);
        let fprog = libc::sock_fprog {
            len: prog.len() as libc::c_ushort,
            filter: prog.as_mut_ptr(),
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
            return Err(SeccompError(format!("load by-number filter: {e}")));
        }
        Ok(())
    }
}

/// A classic BPF program refusing the syscalls `refused` (number, errno)
/// on x86_64, x32 and i386, and allowing everything else.
///
/// ```text
///  0      A = arch
///  1      if A == X86_64 goto 2 else goto 5
///  2      A = nr
///  3      A &= ~X32_SYSCALL_BIT        (x32 numbers are the x86_64 ones | bit)
///  4      goto 7
///  5      if A == I386 goto 6 else goto ALLOW
///  6      A = nr
///  7+i    if A == nr_i goto 8+n+i      (n = refused.len())
///  7+n    ALLOW: return ALLOW
///  8+n+i  return ERRNO(errno_i)
/// ```
fn by_number_program(refused: &[(u32, i32)]) -> Vec<libc::sock_filter> {
    use libc::{
        BPF_ABS, BPF_ALU, BPF_AND, BPF_JA, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W,
    };
    let n = refused.len();
    assert!(n < 200, "too many syscalls refused by number");
    let op = |code: u32, k: u32, jt: usize, jf: usize| libc::sock_filter {
        code: code as u16,
        jt: jt as u8,
        jf: jf as u8,
        k,
    };
    // offsetof(struct seccomp_data, nr) and (…, arch)
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    let mut p = vec![
        op(BPF_LD | BPF_W | BPF_ABS, ARCH, 0, 0),
        op(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 3),
        op(BPF_LD | BPF_W | BPF_ABS, NR, 0, 0),
        op(BPF_ALU | BPF_AND | BPF_K, !X32_SYSCALL_BIT, 0, 0),
        op(BPF_JMP | BPF_JA, 2, 0, 0),
        op(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_I386, 0, n + 1),
        op(BPF_LD | BPF_W | BPF_ABS, NR, 0, 0),
    ];
    for &(nr, _) in refused {
        p.push(op(BPF_JMP | BPF_JEQ | BPF_K, nr, n, 0));
    }
    p.push(op(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0));
    for &(_, errno) in refused {
        let data = errno as u32 & libc::SECCOMP_RET_DATA;
        p.push(op(BPF_RET | BPF_K, libc::SECCOMP_RET_ERRNO | data, 0, 0));
    }
    p
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

    /// Forks, installs the filter for `identity` in the child, runs `f`
    /// there and returns its outcome.
    fn in_child(identity: Identity, f: &dyn Fn() -> Outcome) -> Outcome {
        // Building the filter allocates in the child; glibc keeps malloc
        // usable after fork even in the multi-threaded test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match install(identity) {
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

    /// Runs `f` filtered as R and as U; both must agree.
    fn filtered(f: impl Fn() -> Outcome) -> Outcome {
        let root = in_child(Identity::Root, &f);
        let builder = in_child(Identity::Builder, &f);
        assert_eq!(root, builder, "R and U differ");
        root
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
            assert_eq!(
                filtered(|| check(unsafe { libc::chmod(p.as_ptr(), mode) }.into())),
                EPERM
            );
            let fchmod = || {
                let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY) };
                check(unsafe { libc::fchmod(fd, mode) }.into())
            };
            assert_eq!(filtered(fchmod), EPERM);
            let fchmodat =
                || check(unsafe { libc::fchmodat(libc::AT_FDCWD, p.as_ptr(), mode, 0) }.into());
            assert_eq!(filtered(fchmodat), EPERM);
            let fchmodat2 = || {
                sys(
                    libc::SYS_fchmodat2,
                    &[libc::AT_FDCWD as u64, p.as_ptr() as u64, mode.into(), 0],
                )
            };
            assert_ne!(filtered(fchmodat2), Done);
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
                filtered(|| check(unsafe { libc::open(p.as_ptr(), wr, mode) }.into())),
                EPERM
            );
            let openat =
                || check(unsafe { libc::openat(libc::AT_FDCWD, p.as_ptr(), wr, mode) }.into());
            assert_eq!(filtered(openat), EPERM);
            assert_eq!(
                filtered(|| check(unsafe { libc::creat(p.as_ptr(), mode) }.into())),
                EPERM
            );
            let tmpfile = || {
                check(
                    unsafe { libc::open(dir.as_ptr(), libc::O_TMPFILE | libc::O_RDWR, mode) }
                        .into(),
                )
            };
            assert_eq!(filtered(tmpfile), EPERM);
            // The x86_64 open with raw high bits in the flags word.
            let raw = || {
                sys(
                    libc::SYS_open,
                    &[p.as_ptr() as u64, (1 << 40) | wr as u64, mode.into()],
                )
            };
            assert_eq!(filtered(raw), EPERM);
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
                filtered(|| check(unsafe { libc::mknod(p.as_ptr(), mode, dev) }.into())),
                EPERM
            );
            let at =
                || check(unsafe { libc::mknodat(libc::AT_FDCWD, p.as_ptr(), mode, dev) }.into());
            assert_eq!(filtered(at), EPERM);
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
    fn xattrs_unsupported() {
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
        for (nr, args) in calls {
            assert_eq!(filtered(|| sys(nr, &args)), ENOTSUP, "syscall {nr}");
        }
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
        // unshare (310), getxattrat (464, refused by the by-number filter).
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
        assert_eq!(
            filtered(|| int80(464, libc::AT_FDCWD as u32, 0, 0)),
            ENOTSUP
        );
        // ioctl (54) TIOCSTI on fd -1: refused before the fd is looked at.
        assert_eq!(filtered(|| int80(54, u32::MAX, TIOCSTI as u32, 0)), EPERM);
        assert_eq!(filtered(|| int80(20, 0, 0, 0)), Done); // getpid
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
        assert_eq!(filtered(|| sys(x32(464), &[0])), ENOTSUP);
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
        for name in DENY.iter().chain(DENY_ENOSYS).chain(XATTR) {
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
        for id in [Identity::Root, Identity::Builder] {
            let f = Filter::build(id).unwrap();
            let by_arch = pfc_by_arch(&f);
            let numbered: Vec<&str> = LATE_SYSCALLS
                .iter()
                .filter(|(_, nr)| f.by_number.iter().any(|(n, _)| n == nr))
                .map(|(name, _)| *name)
                .collect();
            let conditional = ["chmod", "fchmod", "fchmodat", "fchmodat2", "creat", "open"];
            let conditional = conditional
                .iter()
                .chain(&["openat", "mknod", "mknodat", "clone", "ioctl"]);
            for (arch, abi) in [
                ("x86_64", ScmpArch::X8664),
                ("x86", ScmpArch::X86),
                ("x32", ScmpArch::X32),
            ] {
                let names = &by_arch[arch];
                for name in DENY
                    .iter()
                    .chain(DENY_ENOSYS)
                    .chain(XATTR)
                    .chain(conditional.clone())
                {
                    let has = matches!(ScmpSyscall::from_name_by_arch(name, abi), Ok(s) if i32::from(s) >= 0);
                    if has && !numbered.contains(name) {
                        assert!(names.iter().any(|n| n == name), "{name} missing on {arch}");
                    }
                }
            }
        }
    }
}
