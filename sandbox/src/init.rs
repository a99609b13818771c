//! The two processes inside the namespaces: pid 1, which builds the root,
//! reaps and forwards signals, and the command, which drops to R or U,
//! applies the limits, loads seccomp and executes.
//!
//! Both run in a fork of the single-threaded monitor, so allocating is safe.

use crate::copyout;
use crate::disk::DiskWatch;
use crate::mounts::{self, RootPlan};
use crate::{seccomp, Identity, Limits, Spec};
use caps::{CapSet, Capability};
use nix::fcntl::OFlag;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Gid, Pid, Uid};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// Capabilities R keeps: what dpkg and maintainer scripts need to own,
/// move and permission files and to switch to system users. No
/// CAP_SYS_ADMIN, CAP_NET_*, CAP_SYS_PTRACE, CAP_MKNOD or CAP_SYS_CHROOT;
/// and never CAP_SETFCAP: seccomp lets xattrs through, and a file
/// capability R wrote in an idmapped writable bind would be stored as the
/// host root's.
const ROOT_CAPS: [Capability; 9] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_KILL,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_AUDIT_WRITE,
];

/// The signals pid 1 passes on to the command.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Everything pid 1 is handed by the monitor.
pub(crate) struct Pid1<'a> {
    pub spec: &'a Spec,
    pub plan: RootPlan<'a>,
    /// The socket the layers came on; its other end closes when the
    /// monitor dies.
    pub monitor: OwnedFd,
    /// Closed by the monitor when the maps are written.
    pub go: OwnedFd,
    /// Receives the command's wait status.
    pub status: OwnedFd,
    /// Receives a setup or exec error; close-on-exec.
    pub errors: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// Limits cgroups already enforce, so rlimits need not.
    pub cgroup_memory: bool,
    pub cgroup_pids: bool,
    pub seccomp: &'a seccomp::Compiled,
}

fn fail(errors: &OwnedFd, message: &str) -> ! {
    let _ = nix::unistd::write(errors, message.as_bytes());
    // SAFETY: leaving a forked child without running destructors.
    unsafe { libc::_exit(125) }
}

/// Pid 1 of the sandbox. Never returns.
pub(crate) fn pid1(p: Pid1) -> ! {
    // Wait until the monitor has written our id maps.
    let mut byte = [0u8; 1];
    let _ = nix::unistd::read(&p.go, &mut byte);
    if let Err(e) = become_root() {
        fail(&p.errors, &e);
    }
    // PDEATHSIG is reset by a change of credentials, so it is set after
    // becoming root: if the monitor dies, the whole namespace dies.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let mut peek = [0u8; 1];
    let alive = nix::sys::socket::recv(
        p.monitor.as_raw_fd(),
        &mut peek,
        nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    );
    if alive != Err(nix::Error::EAGAIN) {
        fail(&p.errors, "the monitor exited during set-up");
    }
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP) {
        fail(&p.errors, &format!("new cgroup namespace: {e}"));
    }
    let keep = match mounts::build_root(&p.plan) {
        Ok(keep) => keep,
        Err(e) => fail(&p.errors, &e),
    };
    if p.spec.identity == Identity::OtherBuilder {
        if let Err(e) = add_other_builder() {
            fail(&p.errors, &e);
        }
    }

    if let Err(e) = nix::unistd::sethostname(&p.spec.hostname) {
        fail(&p.errors, &format!("sethostname: {e}"));
    }
    let domain = p.spec.domainname.as_bytes();
    // SAFETY: plain system call with a valid buffer and its length.
    if unsafe { libc::setdomainname(domain.as_ptr().cast(), domain.len()) } != 0 {
        fail(
            &p.errors,
            &format!("setdomainname: {}", std::io::Error::last_os_error()),
        );
    }
    if let Err(e) = mounts::loopback_up() {
        fail(&p.errors, &e);
    }
    // Nobody inside may ptrace or read the memory of pid 1.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) };

    let mut forwarded = SigSet::empty();
    for s in FORWARDED {
        forwarded.add(s);
    }
    forwarded.add(Signal::SIGCHLD);
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), None);

    // SAFETY: single-threaded process.
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => command(&p),
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => fail(&p.errors, &format!("fork: {e}")),
    };
    drop(p.stdout);
    drop(p.stderr);
    let mut disk = p.spec.limits.disk_bytes.map(|limit| {
        let writable = p
            .plan
            .binds
            .iter()
            .filter(|b| b.writable)
            .map(|b| b.fd)
            .collect();
        DiskWatch::new(limit, writable)
    });
    let mut status = reap_until(child, &forwarded, disk.as_mut());
    // The command is done: nothing else in the sandbox may outlive it.
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    while waitpid(None, None).is_ok() {}
    if let Some(watch) = &disk {
        status.push_str(&format!("\npeak_disk {}", watch.peak));
    }
    if let Some(limit) = p.spec.limits.file_size_bytes {
        if !status.starts_with("exited 0") && file_size_reached(&p.plan, limit) {
            status.push_str("\nkilled file-size");
        }
    }
    if let Some(keep) = keep {
        if let Err(e) = copyout::copy_tree(&keep.from, &keep.to, keep.skip) {
            fail(&p.errors, &e);
        }
    }
    drop(p.errors);
    let _ = nix::unistd::write(&p.status, status.as_bytes());
    // SAFETY: leaving without destructors, as a forked child must.
    unsafe { libc::_exit(0) }
}

/// Whether the failed command left a file at the file size limit where
/// it writes: its writable binds, `/tmp` and `/dev/shm`.
fn file_size_reached(plan: &RootPlan, limit: u64) -> bool {
    let own: Vec<OwnedFd> = ["/tmp", "/dev/shm"]
        .into_iter()
        .filter_map(|path| {
            nix::fcntl::open(
                path,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .ok()
        })
        .collect();
    let roots: Vec<BorrowedFd> = plan
        .binds
        .iter()
        .filter(|b| b.writable)
        .map(|b| b.fd.as_fd())
        .chain(own.iter().map(|fd| fd.as_fd()))
        .collect();
    crate::disk::any_file_reached(&roots, limit)
}

fn become_root() -> Result<(), String> {
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(|e| format!("setresgid 0: {e}"))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(|e| format!("setresuid 0: {e}"))?;
    // Drop the caller's supplementary groups: they mean nothing inside.
    nix::unistd::setgroups(&[Gid::from_raw(0)]).map_err(|e| format!("setgroups: {e}"))?;
    Ok(())
}

/// Reaps children, forwarding signals to the command, until it exits,
/// or kills everything when the disk limit is exceeded. Returns the
/// command's status as "exited N" or "signaled N", followed by "\nkilled
/// disk" when pid 1 killed it.
fn reap_until(command: Pid, signals: &SigSet, mut disk: Option<&mut DiskWatch>) -> String {
    loop {
        if let Some(watch) = disk.as_deref_mut() {
            if watch.exceeded() {
                let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
                while waitpid(None, None).is_ok() {}
                return format!("signaled {}\nkilled disk", libc::SIGKILL);
            }
        }
        let sig = match disk.as_deref() {
            Some(watch) => match wait_signal(signals, watch.until_due()) {
                Some(sig) => sig,
                None => continue,
            },
            None => match signals.wait() {
                Ok(sig) => sig,
                Err(_) => continue,
            },
        };
        if sig != Signal::SIGCHLD {
            let _ = kill(command, sig);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == command => {
                    return format!("exited {code}")
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                    return format!("signaled {}", sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// Waits at most `timeout` for one of `signals` (blocked in this process).
fn wait_signal(signals: &SigSet, timeout: std::time::Duration) -> Option<Signal> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos().into(),
    };
    let set: &libc::sigset_t = signals.as_ref();
    // SAFETY: valid sigset and timespec; no siginfo wanted.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    Signal::try_from(sig).ok()
}

/// The command process. Never returns.
fn command(p: &Pid1) -> ! {
    let spec = p.spec;
    let errors = &p.errors;
    let _ = nix::unistd::setsid();
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // Every signal back to its default: a Rust program ignores SIGPIPE, and
    // an ignored signal stays ignored across exec, so a build would inherit
    // it (a pipe's writer would get EPIPE instead of dying, and tests that
    // raise SIGPIPE fail).
    for signal in 1..=libc::SIGRTMAX() {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            // SAFETY: resetting a disposition to the default has no
            // preconditions; an invalid number only returns an error.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        }
    }
    if let Err(e) = stdio(p) {
        fail(errors, &e);
    }
    if let Err(e) = limits(&spec.limits, p.cgroup_memory, p.cgroup_pids) {
        fail(errors, &e);
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(spec.umask & 0o777));
    if let Err(e) = nix::unistd::chdir(&spec.cwd) {
        fail(
            errors,
            &format!("working directory {}: {e}", spec.cwd.display()),
        );
    }
    if let Err(e) = drop_identity(spec.identity) {
        fail(errors, &e);
    }
    // Everything but stdio closes at exec; the error pipe stays usable
    // until then.
    // SAFETY: close_range only changes fd flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    let env = environment(spec);
    let program = match resolve(&spec.command[0], &env) {
        Some(p) => p,
        None => {
            fail(
                errors,
                &format!("exec: {}: command not found in PATH", spec.command[0]),
            );
        }
    };
    // Last: the filter also applies to this process's remaining steps.
    // Loading sets PR_SET_NO_NEW_PRIVS first.
    if let Err(e) = p.seccomp.load() {
        fail(errors, &e.to_string());
    }
    let to_c = |s: &str| std::ffi::CString::new(s).unwrap_or_default();
    let args: Vec<_> = spec.command.iter().map(|a| to_c(a)).collect();
    let envp: Vec<_> = env.iter().map(|(k, v)| to_c(&format!("{k}={v}"))).collect();
    let err = nix::unistd::execve(&to_c(&program.to_string_lossy()), &args, &envp).unwrap_err();
    fail(errors, &format!("exec: {}: {err}", program.display()))
}

fn stdio(p: &Pid1) -> Result<(), String> {
    // Read and write, as sbuild and a login give it.
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("opening /dev/null: {e}"))?;
    let stderr = if p.spec.merge_output {
        p.stdout.as_raw_fd()
    } else {
        p.stderr.as_raw_fd()
    };
    for (fd, target) in [
        (null.as_raw_fd(), 0),
        (p.stdout.as_raw_fd(), 1),
        (stderr, 2),
    ] {
        dup_to(fd, target)?;
    }
    Ok(())
}

fn dup_to(fd: RawFd, target: RawFd) -> Result<(), String> {
    // SAFETY: dup2 on fds this process owns.
    if unsafe { libc::dup2(fd, target) } < 0 {
        return Err(format!("dup2: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn limits(limits: &Limits, cgroup_memory: bool, cgroup_pids: bool) -> Result<(), String> {
    let set_with_grace = |resource, value: Option<u64>, grace: u64| -> Result<(), String> {
        if let Some(v) = value {
            // Limits can only be lowered here: never above the current hard one.
            let (_, hard) =
                nix::sys::resource::getrlimit(resource).map_err(|e| format!("getrlimit: {e}"))?;
            let soft = v.min(hard);
            let new_hard = v.saturating_add(grace).min(hard);
            setrlimit(resource, soft, new_hard)
                .map_err(|e| format!("setrlimit {resource:?}: {e}"))?;
        }
        Ok(())
    };
    let set = |resource, value| set_with_grace(resource, value, 0);
    set(Resource::RLIMIT_FSIZE, limits.file_size_bytes)?;
    // The hard limit is the limit; the soft one is the usual 1024 (what
    // select() can handle and what programs that size tables by it expect),
    // which a program may raise up to the hard one.
    if let Some(open) = limits.open_files {
        let (_, hard) = nix::sys::resource::getrlimit(Resource::RLIMIT_NOFILE)
            .map_err(|e| format!("getrlimit: {e}"))?;
        let hard = open.min(hard);
        setrlimit(Resource::RLIMIT_NOFILE, hard.min(1024), hard)
            .map_err(|e| format!("setrlimit RLIMIT_NOFILE: {e}"))?;
    }
    // A hard limit one second above the soft one: the kernel then sends
    // SIGXCPU (which names the limit) before its SIGKILL.
    set_with_grace(
        Resource::RLIMIT_CPU,
        limits.cpu_time.map(|d| d.as_secs().max(1)),
        1,
    )?;
    set(Resource::RLIMIT_CORE, Some(0))?;
    if !cgroup_memory {
        set(Resource::RLIMIT_AS, limits.memory_bytes)?;
    }
    if !cgroup_pids {
        set(
            Resource::RLIMIT_NPROC,
            Some(limits.pids.unwrap_or(crate::DEFAULT_NPROC)),
        )?;
    }
    Ok(())
}

/// Gives [`Identity::OtherBuilder`] a user, a group and a home in the
/// sandbox's writable root, as U has in every environment, so that a build
/// under it sees nothing unusual but its ids.
fn add_other_builder() -> Result<(), String> {
    use std::io::Write;
    let id = Identity::OtherBuilder.inside_id();
    let (home, user) = Identity::OtherBuilder.home_and_user();
    for (file, line) in [
        (
            "/etc/passwd",
            format!("{user}:x:{id}:{id}:comb builder (other ids):{home}:/bin/sh\n"),
        ),
        ("/etc/group", format!("{user}:x:{id}:\n")),
    ] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        if text
            .lines()
            .any(|l| l.split(':').nth(2) == Some(id.to_string().as_str()))
        {
            continue;
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(file)
            .map_err(|e| format!("opening {file} to add {user}: {e}"))?;
        let sep = if text.is_empty() || text.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        f.write_all(format!("{sep}{line}").as_bytes())
            .map_err(|e| format!("adding {user} to {file}: {e}"))?;
    }
    std::fs::create_dir_all(home).map_err(|e| format!("creating {home}: {e}"))?;
    std::os::unix::fs::chown(home, Some(id), Some(id))
        .map_err(|e| format!("handing {home} to {user}: {e}"))?;
    Ok(())
}

fn drop_identity(identity: Identity) -> Result<(), String> {
    let keep: &[Capability] = match identity {
        Identity::Root => &ROOT_CAPS,
        Identity::Builder | Identity::OtherBuilder => &[],
    };
    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| format!("dropping {cap}: {e}"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("clearing ambient caps: {e}"))?;
    if identity != Identity::Root {
        let id = Gid::from_raw(identity.inside_id());
        nix::unistd::setgroups(&[id]).map_err(|e| format!("setgroups: {e}"))?;
        nix::unistd::setresgid(id, id, id).map_err(|e| format!("setresgid: {e}"))?;
        let id = Uid::from_raw(identity.inside_id());
        nix::unistd::setresuid(id, id, id).map_err(|e| format!("setresuid: {e}"))?;
    }
    let keep: caps::CapsHashSet = keep.iter().copied().collect();
    for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        caps::set(None, set, &keep).map_err(|e| format!("setting {set:?} caps: {e}"))?;
    }
    Ok(())
}

/// The clean environment: fixed PATH, HOME and TZ, then the spec's own.
pub(crate) fn environment(spec: &Spec) -> Vec<(String, String)> {
    let (home, user) = spec.identity.home_and_user();
    let mut env: Vec<(String, String)> = [
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games",
        ),
        ("HOME", home),
        ("USER", user),
        ("LOGNAME", user),
        ("TZ", "UTC"),
        ("LC_ALL", "C.UTF-8"),
        ("SHELL", "/bin/sh"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in &spec.env {
        env.retain(|(key, _)| key != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// Looks `program` up in the sandbox's PATH, as execvp would.
fn resolve(program: &str, env: &[(String, String)]) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    path.split(':')
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|candidate| nix::unistd::access(candidate, nix::unistd::AccessFlags::X_OK).is_ok())
}

/// What pid 1 reports to the monitor at the end.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Pid1Report {
    pub status: Option<crate::ExitStatus>,
    /// Pid 1 killed the sandbox for exceeding the disk limit.
    pub disk_killed: bool,
    /// The command failed and left a file at the file size limit.
    pub file_size_reached: bool,
    pub peak_disk: u64,
}

/// Parses the lines pid 1 writes for the monitor: the status first, then
/// `killed disk`, `peak_disk N` and `killed file-size` where they apply.
pub(crate) fn parse_report(text: &str) -> Pid1Report {
    let mut lines = text.lines();
    let mut report = Pid1Report {
        status: lines.next().and_then(parse_status),
        ..Pid1Report::default()
    };
    for line in lines {
        if line == "killed disk" {
            report.disk_killed = true;
        } else if line == "killed file-size" {
            report.file_size_reached = true;
        } else if let Some(n) = line.strip_prefix("peak_disk ") {
            report.peak_disk = n.parse().unwrap_or(0);
        }
    }
    report
}

/// Parses the status line pid 1 writes for the monitor.
fn parse_status(text: &str) -> Option<crate::ExitStatus> {
    let (kind, value) = text.trim().split_once(' ')?;
    let value = value.parse().ok()?;
    match kind {
        "exited" => Some(crate::ExitStatus::Exited(value)),
        "signaled" => Some(crate::ExitStatus::Signaled(value)),
        _ => None,
    }
}
