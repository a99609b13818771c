//! The caller's user namespace: how an ordinary user's comb does to R's
//! and U's files what root's comb does, without any chown on the host.
//!
//! An ordinary user (C) runs comb's work in a user namespace of its own,
//! entered first thing in `main`: the sandbox's ids (R = 0, the system
//! users packages make, U = 1000, nobody, U's other ids) are mapped at
//! their own numbers onto C's subordinate range, through the setuid
//! helpers `newuidmap` and `newgidmap` (the only privileged programs
//! involved), and C itself onto [`CALLER_ID`]. comb keeps running as C, so
//! what it creates (the index, blobs, outputs) is C's, but it holds the
//! capabilities of that namespace: it can unpack a `.deb` as R's files,
//! read R's mode-0600 files to hash a layer, and remove them in `gc`. Host
//! files of other users show as the overflow id and grant nothing more
//! than they grant C.
//!
//! Layers on disk are then owned by C's subordinate ids, never by C: C
//! cannot change them by accident, and what R writes is not C's. Each
//! sandbox is a user namespace nested in this one whose maps are the
//! identity over these ids, so every slot shares R's and U's host ids;
//! what separates concurrent sandboxes instead is their own pid, mount,
//! IPC and network namespaces (none can see, signal or reach another's
//! processes or files) and the seccomp filter (no ptrace).
//!
//! The first comb of a user maps the namespace and leaves a sleeping
//! process in it (`comb-userns`, as podman's pause process); later ones
//! join that namespace with `setns` if it is still mapped exactly so,
//! which spares them the two setuid helpers' start.
//!
//! Two things keep working across the boundary. What comb itself creates
//! in a layer (a directory no archive listed) is made with the thread's
//! file-system ids set to R's ([`as_layer_owner`]), so it is R's as it is
//! when root makes it. And a server, which decides whom to trust by
//! uid, forks a small process before it enters ([`enter_as_server`]) that
//! stays in the host's namespace: it reads clients' `SO_PEERCRED`, files'
//! owners and gives a socket its group, since inside, every other user
//! shows as the overflow id and the host's groups are not mapped.

use crate::idmap::{subordinate_ranges, SEGMENTS, SLOT_STRIDE};
use crate::SandboxError;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;

/// C's uid (and gid) inside its namespace: above every id a sandbox maps.
pub const CALLER_ID: u32 = 65536;

/// What the kernel shows for a host id this namespace does not map (root's
/// files, say): `/proc/sys/kernel/overflowuid`.
pub const OVERFLOW_ID: u32 = 65534;

/// C's namespace, once entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerNamespace {
    /// C's ids on the host.
    pub host_uid: u32,
    pub host_gid: u32,
    /// The first ids of C's subordinate ranges: R's host ids.
    pub subuid_start: u32,
    pub subgid_start: u32,
}

static ENTERED: OnceLock<CallerNamespace> = OnceLock::new();
static BROKER: OnceLock<std::sync::Mutex<std::os::unix::net::UnixStream>> = OnceLock::new();

/// The namespace this process entered, if it did.
pub fn entered() -> Option<CallerNamespace> {
    ENTERED.get().copied()
}

/// C's host uid: the same inside C's namespace as outside.
pub fn host_uid() -> u32 {
    entered().map_or_else(|| nix::unistd::geteuid().as_raw(), |ns| ns.host_uid)
}

/// The owner that host root's files show as to this process: 0 on the
/// host, the overflow id inside C's namespace (and in the sandbox's
/// monitor, which runs there too), from the process's own uid map.
pub fn root_as_seen() -> u32 {
    static SEEN: OnceLock<u32> = OnceLock::new();
    *SEEN.get_or_init(|| {
        uid_map()
            .iter()
            .find(|(_, outside, count)| *outside == 0 && *count > 0)
            .map_or(OVERFLOW_ID, |(inside, _, _)| *inside)
    })
}

/// The host uid of `uid` as this process sees it (itself in C's namespace
/// or not): what a sandbox's outcome reports.
pub fn host_uid_of(uid: u32) -> u32 {
    uid_map()
        .iter()
        .find(|(inside, _, count)| uid >= *inside && u64::from(uid) < u64::from(*inside) + count)
        .map_or(uid, |(inside, outside, _)| outside + (uid - inside))
}

/// This process's `/proc/self/uid_map`: (inside, outside, count) lines.
fn uid_map() -> Vec<(u32, u32, u64)> {
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    map.lines()
        .filter_map(|line| {
            let mut n = line.split_whitespace().map(str::parse::<u64>);
            let (inside, outside, count) = (n.next()?.ok()?, n.next()?.ok()?, n.next()?.ok()?);
            Some((
                u32::try_from(inside).ok()?,
                u32::try_from(outside).ok()?,
                count,
            ))
        })
        .collect()
}

/// Enters C's namespace when comb runs as an ordinary user; nothing for
/// root. Must be called while the process runs one thread (first thing in
/// `main`): the kernel refuses `unshare(CLONE_NEWUSER)` to any other.
pub fn enter() -> Result<Option<CallerNamespace>, SandboxError> {
    enter_with(false)
}

/// [`enter`], for a server that learns who its clients are from
/// `SO_PEERCRED`: a process forked before is left in the host's namespace
/// to read them ([`peer_credentials`]), since inside C's namespace the
/// kernel shows every other user as the overflow id.
pub fn enter_as_server() -> Result<Option<CallerNamespace>, SandboxError> {
    enter_with(true)
}

/// A connected Unix socket's peer as the host knows it: uid, gid, pid.
pub fn peer_credentials(socket: std::os::fd::BorrowedFd) -> std::io::Result<(u32, u32, i32)> {
    if BROKER.get().is_none() {
        let cred =
            nix::sys::socket::getsockopt(&socket, nix::sys::socket::sockopt::PeerCredentials)?;
        return Ok((cred.uid(), cred.gid(), cred.pid()));
    }
    let [uid, gid, pid] = ask_broker(b'p', socket, 0)?;
    Ok((uid, gid, pid as i32))
}

/// The owner of `path` as the host knows it (of a symbolic link itself
/// unless `follow`): inside C's namespace every other user's file shows
/// as the overflow id, root's included, so a server that decides whom to
/// trust by owner asks the host's namespace.
pub fn host_owner(path: &std::path::Path, follow: bool) -> std::io::Result<u32> {
    if BROKER.get().is_none() {
        use std::os::unix::fs::MetadataExt;
        let meta = match follow {
            true => std::fs::metadata(path)?,
            false => std::fs::symlink_metadata(path)?,
        };
        return Ok(meta.uid());
    }
    let mut flags = nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC;
    if !follow {
        flags |= nix::fcntl::OFlag::O_NOFOLLOW;
    }
    let fd = nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty())?;
    let [uid, _, _] = ask_broker(b's', fd.as_fd(), 0)?;
    Ok(uid)
}

/// Gives the file `fd` (opened with `O_PATH`) to host group `gid`, which
/// this user must be a member of: inside C's namespace the host's groups
/// are not mapped, so the host's namespace does it.
pub fn host_chgrp(fd: std::os::fd::BorrowedFd, gid: u32) -> std::io::Result<()> {
    if BROKER.get().is_none() {
        return chgrp(fd, gid);
    }
    ask_broker(b'g', fd, gid).map(drop)
}

fn chgrp(fd: std::os::fd::BorrowedFd, gid: u32) -> std::io::Result<()> {
    nix::unistd::fchownat(
        fd,
        "",
        None,
        Some(nix::unistd::Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )?;
    Ok(())
}

/// Sends `fd` to the broker with request `op` and its argument; the
/// answer's three numbers.
fn ask_broker(op: u8, fd: std::os::fd::BorrowedFd, arg: u32) -> std::io::Result<[u32; 3]> {
    let broker = BROKER
        .get()
        .ok_or_else(|| std::io::Error::other("no credential broker"))?
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let raw = [fd.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&raw)];
    let mut request = [op, 0, 0, 0, 0];
    request[1..].copy_from_slice(&arg.to_ne_bytes());
    let iov = [std::io::IoSlice::new(&request)];
    nix::sys::socket::sendmsg::<()>(
        broker.as_raw_fd(),
        &iov,
        &cmsg,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )?;
    let mut answer = [0u8; 13];
    (&*broker).read_exact(&mut answer)?;
    if answer[0] != 0 {
        return Err(std::io::Error::from_raw_os_error(i32::from(answer[0])));
    }
    let word =
        |i: usize| u32::from_ne_bytes([answer[i], answer[i + 1], answer[i + 2], answer[i + 3]]);
    Ok([word(1), word(5), word(9)])
}

/// Forks the process that answers [`peer_credentials`] and [`host_owner`]
/// from the host's namespace: it receives a request byte and a descriptor
/// (a client's socket: its `SO_PEERCRED`; a path: its owner), and writes
/// back a status byte and three numbers. It ends with its parent.
fn start_broker() -> Result<std::os::unix::net::UnixStream, SandboxError> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| SandboxError::io("creating the credential broker's socket", e))?;
    // SAFETY: called while this process runs one thread (see `enter`).
    match unsafe { fork() }.map_err(|e| SandboxError::io("forking", e.into()))? {
        ForkResult::Child => {
            drop(ours);
            // SAFETY: plain prctl.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            serve_credentials(&theirs);
            // SAFETY: leaving the forked child without the parent's
            // destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { .. } => Ok(ours),
    }
}

fn serve_credentials(sock: &std::os::unix::net::UnixStream) {
    loop {
        let mut request = [0u8; 5];
        let mut iov = [std::io::IoSliceMut::new(&mut request)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let Ok(msg) = nix::sys::socket::recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC | nix::sys::socket::MsgFlags::MSG_WAITALL,
        ) else {
            return;
        };
        if msg.bytes == 0 {
            return;
        }
        let mut fd = None;
        for cmsg in msg.cmsgs().into_iter().flatten() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = cmsg {
                // SAFETY: the kernel just installed these fds for us.
                fd = fds.first().map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
        let arg = u32::from_ne_bytes([request[1], request[2], request[3], request[4]]);
        let answered: std::io::Result<[u32; 3]> = match (fd, request[0]) {
            (None, _) => Err(std::io::Error::from_raw_os_error(libc::EBADF)),
            (Some(fd), b'p') => {
                nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::PeerCredentials)
                    .map(|c| [c.uid(), c.gid(), c.pid() as u32])
                    .map_err(Into::into)
            }
            (Some(fd), b's') => nix::sys::stat::fstat(&fd)
                .map(|st| [st.st_uid, st.st_gid, st.st_mode])
                .map_err(Into::into),
            (Some(fd), b'g') => chgrp(fd.as_fd(), arg).map(|()| [0; 3]),
            (Some(_), _) => Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
        };
        let mut answer = [0u8; 13];
        match answered {
            Ok(numbers) => {
                for (i, n) in numbers.iter().enumerate() {
                    answer[1 + 4 * i..5 + 4 * i].copy_from_slice(&n.to_ne_bytes());
                }
            }
            // An errno fits a byte; anything else says EIO.
            Err(e) => {
                answer[0] = e
                    .raw_os_error()
                    .and_then(|n| u8::try_from(n).ok())
                    .unwrap_or(libc::EIO as u8)
            }
        }
        if (&*sock).write_all(&answer).is_err() {
            return;
        }
    }
}

fn enter_with(server: bool) -> Result<Option<CallerNamespace>, SandboxError> {
    if let Some(ns) = entered() {
        return Ok(Some(ns));
    }
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return Ok(None);
    }
    let gid = nix::unistd::getegid().as_raw();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    let (uid_base, gid_base, _) = subordinate_ranges(
        &name,
        uid.as_raw(),
        Path::new("/etc/subuid"),
        Path::new("/etc/subgid"),
    )?;
    let ns = CallerNamespace {
        host_uid: uid.as_raw(),
        host_gid: gid,
        subuid_start: uid_base,
        subgid_start: gid_base,
    };
    if server {
        let broker = start_broker()?;
        let _ = BROKER.set(std::sync::Mutex::new(broker));
    }
    let kept = keeper_file(ns.host_uid);
    if !join_kept(&kept, &ns) {
        unshare_and_map(&ns)?;
        keep(&kept);
    }
    let _ = ENTERED.set(ns);
    Ok(Some(ns))
}

/// Where the pid of the process that keeps C's namespace is written: beside
/// the sandbox's slots, in a directory only C may write (see
/// `slot::ensure_private_dir`).
fn keeper_file(host_uid: u32) -> std::path::PathBuf {
    Path::new(&format!("/tmp/comb-{host_uid}")).join("userns.pid")
}

/// Joins the namespace a keeper process holds, as podman joins its pause
/// process's: no `newuidmap` then, so starting comb costs what it costs
/// root. Only a namespace this user owns can be joined (`setns` needs
/// CAP_SYS_ADMIN in it), and only one mapped exactly as [`map_args`] says
/// is: anything else (a stale pid, a changed range) makes a new one.
fn join_kept(file: &Path, ns: &CallerNamespace) -> bool {
    let Some(pid) = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    else {
        return false;
    };
    let proc_dir = format!("/proc/{pid}");
    let Ok(userns) = std::fs::File::open(format!("{proc_dir}/ns/user")) else {
        return false;
    };
    let maps_match = |name: &str, start: u32, caller: u32| {
        let Ok(text) = std::fs::read_to_string(format!("{proc_dir}/{name}")) else {
            return false;
        };
        let found: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        found == map_args(start, caller)
    };
    // The maps are read after the namespace is opened, and the pid must
    // still lead to the same namespace: a pid reused meanwhile fails.
    use std::os::unix::fs::MetadataExt;
    let same = std::fs::metadata(format!("{proc_dir}/ns/user"))
        .ok()
        .zip(userns.metadata().ok())
        .is_some_and(|(now, opened)| (now.dev(), now.ino()) == (opened.dev(), opened.ino()));
    if !(maps_match("uid_map", ns.subuid_start, ns.host_uid)
        && maps_match("gid_map", ns.subgid_start, ns.host_gid)
        && same)
    {
        return false;
    }
    nix::sched::setns(&userns, nix::sched::CloneFlags::CLONE_NEWUSER).is_ok()
}

/// Forks a process that keeps this namespace alive for the next comb of
/// this user, and records its pid. It holds nothing but the namespace: no
/// descriptor, `/` as its directory, its own session, asleep. At worst (no private directory,
/// say) the next comb maps a namespace of its own again.
fn keep(file: &Path) {
    let Some(dir) = file.parent() else { return };
    if crate::slot::ensure_private_dir(dir).is_err() {
        return;
    }
    // SAFETY: called while this process runs one thread (see `enter`).
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // SAFETY: a forked child giving up every descriptor and
            // sleeping; nothing of the parent's state is used.
            unsafe {
                libc::setsid();
                libc::chdir(c"/".as_ptr());
                libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
                libc::prctl(libc::PR_SET_NAME, c"comb-userns".as_ptr());
                loop {
                    libc::pause();
                }
            }
        }
        Ok(ForkResult::Parent { child }) => {
            let tmp = file.with_extension(format!("{}.tmp", std::process::id()));
            let written = std::fs::write(&tmp, format!("{child}\n"))
                .and_then(|()| std::fs::rename(&tmp, file));
            if written.is_err() {
                let _ = std::fs::remove_file(&tmp);
                let _ = nix::sys::signal::kill(child, nix::sys::signal::SIGKILL);
                let _ = waitpid(child, None);
            }
        }
        Err(_) => {}
    }
}

/// The arguments of `newuidmap PID ...` (or newgidmap) after the pid: the
/// sandbox's ids at their own numbers onto the subordinate range, and C
/// onto [`CALLER_ID`].
fn map_args(sub_start: u32, caller: u32) -> Vec<String> {
    let mut args = Vec::new();
    for (inside, offset, count) in SEGMENTS {
        args.extend([inside, sub_start + offset, count].map(|n| n.to_string()));
    }
    args.extend([CALLER_ID, caller, 1].map(|n| n.to_string()));
    args
}

/// Unshares the user namespace and has a child, forked before it and so
/// still in the host's namespace (where the helpers' setuid bit counts),
/// write its maps.
fn unshare_and_map(ns: &CallerNamespace) -> Result<(), SandboxError> {
    let pipe =
        |what: &str| nix::unistd::pipe().map_err(|e| SandboxError::io(what.to_string(), e.into()));
    let (go_r, go_w) = pipe("creating a pipe")?;
    let (err_r, err_w) = pipe("creating a pipe")?;
    let parent = nix::unistd::getpid().as_raw();
    // SAFETY: called while this process runs one thread (see `enter`).
    match unsafe { fork() }.map_err(|e| SandboxError::io("forking", e.into()))? {
        ForkResult::Child => {
            drop(go_w);
            drop(err_r);
            let mut go = std::fs::File::from(go_r);
            let mut byte = [0u8; 1];
            let code = match go.read(&mut byte) {
                Ok(1) => match write_maps(parent, ns) {
                    Ok(()) => 0,
                    Err(e) => {
                        let _ = std::fs::File::from(err_w).write_all(e.as_bytes());
                        1
                    }
                },
                // The parent could not unshare and said so itself.
                _ => 1,
            };
            // SAFETY: leaving the forked child without running the
            // parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(go_r);
            drop(err_w);
            let unshared = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER);
            if unshared.is_ok() {
                let _ = std::fs::File::from(go_w).write_all(b"g");
            } else {
                drop(go_w);
            }
            let mut message = String::new();
            let _ = std::fs::File::from(err_r).read_to_string(&mut message);
            let status = waitpid(child, None);
            if let Err(e) = unshared {
                return Err(SandboxError::Ids(format!(
                    "creating comb's user namespace: {e}; unprivileged user namespaces must be allowed \
                     (sysctl kernel.unprivileged_userns_clone=1, and on Ubuntu \
                     kernel.apparmor_restrict_unprivileged_userns=0)"
                )));
            }
            match status {
                Ok(WaitStatus::Exited(_, 0)) => Ok(()),
                _ => Err(SandboxError::Ids(if message.is_empty() {
                    "mapping comb's user namespace failed".to_string()
                } else {
                    message
                })),
            }
        }
    }
}

/// Runs `f` with this thread's file-system ids set to R's, so that what it
/// creates in a layer (a directory an archive did not list, a symlink) is
/// R's, as it is when root's comb creates it; threads `f` starts inherit
/// them. Outside C's namespace it only runs `f`.
pub fn as_layer_owner<T>(f: impl FnOnce() -> T) -> T {
    if entered().is_none() {
        return f();
    }
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: plain system calls on this thread's credentials.
            unsafe {
                libc::setfsuid(CALLER_ID);
                libc::setfsgid(CALLER_ID);
            }
            // A file-system uid leaving 0 drops the file-system
            // capabilities from the effective set: raise them again.
            if let Ok(permitted) = caps::read(None, caps::CapSet::Permitted) {
                let _ = caps::set(None, caps::CapSet::Effective, &permitted);
            }
        }
    }
    // SAFETY: as above.
    unsafe {
        libc::setfsgid(0);
        libc::setfsuid(0);
    }
    let _restore = Restore;
    f()
}

/// Runs `newgidmap` and `newuidmap` for `pid`; the error says why.
fn write_maps(pid: i32, ns: &CallerNamespace) -> Result<(), String> {
    // Both at once: each is a setuid program's start.
    let mut running = Vec::new();
    for (helper, start, caller) in [
        ("newgidmap", ns.subgid_start, ns.host_gid),
        ("newuidmap", ns.subuid_start, ns.host_uid),
    ] {
        let child = std::process::Command::new(helper)
            .arg(pid.to_string())
            .args(map_args(start, caller))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!("could not run {helper} ({e}); install the uidmap package: apt-get install uidmap")
            })?;
        running.push((helper, child));
    }
    for (helper, child) in running {
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for {helper}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{helper} refused comb's user namespace: {}; /etc/subuid and /etc/subgid must give \
                 this user a range of at least {SLOT_STRIDE} ids (usermod --add-subuids and --add-subgids)",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// Capabilities the sandbox's monitor keeps across its `exec` in C's
/// namespace: writing the sandbox's maps (a map of uid 0 also needs
/// CAP_SETFCAP over the parent namespace, since Linux 5.12), and handing
/// R's kept layer over (validating, renaming and removing R's files).
pub(crate) const MONITOR_CAPS: [caps::Capability; 7] = [
    caps::Capability::CAP_SETUID,
    caps::Capability::CAP_SETGID,
    caps::Capability::CAP_SETFCAP,
    caps::Capability::CAP_CHOWN,
    caps::Capability::CAP_DAC_OVERRIDE,
    caps::Capability::CAP_DAC_READ_SEARCH,
    caps::Capability::CAP_FOWNER,
];

/// Between fork and exec of the monitor: makes [`MONITOR_CAPS`]
/// inheritable and ambient, so they survive an `exec` by a process whose
/// uid is not 0. Async-signal-safe: raw system calls only.
pub(crate) fn keep_caps_across_exec() -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget/capset with a version-3 header and two data words.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        for cap in MONITOR_CAPS.map(|c| u32::from(c.index())) {
            data[(cap / 32) as usize].inheritable |= 1 << (cap % 32);
        }
        if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        for cap in MONITOR_CAPS.map(|c| u32::from(c.index())) {
            let raise = libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong;
            if libc::prctl(libc::PR_CAP_AMBIENT, raise, cap as libc::c_ulong, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maps_put_the_sandbox_ids_on_the_range_and_the_caller_above_them() {
        let args = map_args(100_000, 1000);
        assert_eq!(
            args.join(" "),
            "0 100000 1001 65534 101001 2 2000 101003 1 65536 1000 1"
        );
    }
}
