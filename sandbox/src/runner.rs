//! Running a spec: the caller's side ([`run`]) and the monitor, which owns
//! one sandbox from `clone` to the last reaped process.
//!
//! The monitor runs as the caller (C). It creates pid 1 in new namespaces,
//! writes its id maps, attaches the layers, enforces timeouts and cgroup
//! limits, and passes the output on. A single-threaded caller (`comb
//! sandbox run`) is its own monitor, which saves a process and a relay of
//! every byte of output; a multi-threaded one (the engine) starts a helper
//! process, the current binary re-executed with [`HELPER_ARG`], which
//! reports an [`Outcome`] on fd 3, since only a single-threaded process may
//! go on running Rust code in a clone of itself. If the monitor dies, pid 1
//! dies (PDEATHSIG), and with it every process of the sandbox; a helper
//! dies with its caller (PDEATHSIG and the closed control pipe).

use crate::cgroup::Cgroup;
use crate::idmap::{MapKind, SlotIds};
use crate::init::{self, Pid1};
use crate::mounts::{BindAuxPlan, BindPlan, RootPlan};
use crate::slot::{self, ensure_private_dir};
use crate::{
    extract, EnforcedBy, Enforcement, ExitStatus, IdSource, Kill, Outcome, SandboxConfig,
    SandboxError, Spec, Usage,
};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::socket::{
    sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};
use nix::sys::wait::waitpid;
use nix::unistd::{pipe2, Pid};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// First argument that turns a binary into the sandbox monitor.
pub const HELPER_ARG: &str = "__comb-sandbox-monitor";

/// The fd on which the monitor writes its report.
const REPORT_FD: RawFd = 3;

#[derive(Serialize, Deserialize)]
struct Request {
    spec: Spec,
    slot: u32,
    ids: SlotIds,
    idmapped: bool,
    /// The seccomp filter, compiled by the caller once for all its
    /// sandboxes.
    seccomp: crate::seccomp::Compiled,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
enum Report {
    Done(Box<Outcome>),
    Failed { kind: String, message: String },
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl SandboxConfig {
    /// The defaults for this process: ids from [`IdSource::detect`], slot
    /// locks in /run/comb/slots (root) or the user's runtime directory.
    pub fn detect() -> Result<SandboxConfig, SandboxError> {
        let ids = IdSource::detect()?;
        let helper_exe = std::env::current_exe()
            .map_err(|e| SandboxError::io("finding the current executable", e))?;
        // The host uid, also inside C's namespace. Never from the
        // environment: every sandbox of these host ids must meet at the
        // same locks.
        let uid = nix::unistd::Uid::from_raw(crate::caller::host_uid());
        let slot_dir = if uid.is_root() {
            PathBuf::from("/run/comb/slots")
        } else {
            PathBuf::from(format!("/tmp/comb-{uid}/slots"))
        };
        let max_slots = ids.slot_count();
        Ok(SandboxConfig {
            helper_exe,
            ids,
            slot_dir,
            max_slots,
        })
    }
}

/// The monitor's process and the caller's ends of its pipes.
struct MonitorProcess {
    child: std::process::Child,
    /// Its stdin: closing it stops the sandbox.
    control: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
    report: OwnedFd,
}

/// True when this process runs one thread, so that a fork of it may go on
/// running Rust code (a multi-threaded one could fork holding a lock).
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.count() == 1)
}

impl MonitorProcess {
    /// Re-executes the helper binary as the monitor and sends it the
    /// request: safe from any process, however many threads it runs.
    fn spawn(config: &SandboxConfig, request: &Request) -> Result<MonitorProcess, SandboxError> {
        let (report_r, report_w) = pipe()?;
        let report_raw = report_w.as_raw_fd();
        let mut command = Command::new(&config.helper_exe);
        // Pid 1 is a fork of the monitor: its command line and environment
        // are what a sandbox could read of it, so they name no host path.
        command
            .arg0("comb")
            .env_clear()
            .envs(std::env::var_os("PATH").map(|p| ("PATH", p)))
            .arg(HELPER_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let nested = request.ids.kind == MapKind::Nested;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if nested {
                    crate::caller::keep_caps_across_exec()?;
                }
                if report_raw == REPORT_FD {
                    libc::fcntl(REPORT_FD, libc::F_SETFD, 0);
                } else if libc::dup2(report_raw, REPORT_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| {
            SandboxError::io(
                format!(
                    "starting the sandbox monitor {}",
                    config.helper_exe.display()
                ),
                e,
            )
        })?;
        drop(report_w);
        let mut control = child.stdin.take().expect("piped stdin");
        let line =
            serde_json::to_string(request).map_err(|e| SandboxError::Invalid(e.to_string()))?;
        control
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| SandboxError::io("sending the request to the sandbox monitor", e))?;
        Ok(MonitorProcess {
            control: Some(OwnedFd::from(control)),
            stdout: OwnedFd::from(child.stdout.take().expect("piped stdout")),
            stderr: OwnedFd::from(child.stderr.take().expect("piped stderr")),
            report: report_r,
            child,
        })
    }
}

/// Overwrites the command line of pid 1, a copy of its creator's: the
/// caller's (`comb sandbox run --layer /host/path ...`) must not be
/// readable in the sandbox's `/proc/1/cmdline`.
fn hide_command_line() {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name, which may hold spaces: arg_start and
    // arg_end are fields 48 and 49 (the first after ')' is field 3).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<usize>().ok());
    let (Some(start), Some(end)) = (field(48), field(49)) else {
        return;
    };
    if start == 0 || end <= start {
        return;
    }
    let text = b"comb\0";
    // SAFETY: [arg_start, arg_end) is this process's own argument block,
    // mapped and writable; nothing in pid 1 reads the arguments again.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, end - start);
        area.fill(0);
        let n = text.len().min(area.len());
        area[..n].copy_from_slice(&text[..n]);
    }
}

/// Writes the report on fd 3 for the caller.
fn write_report(report: &Report) {
    // SAFETY: fd 3 was set up by the caller for this report.
    let mut out = unsafe { std::fs::File::from_raw_fd(REPORT_FD) };
    let _ = out.write_all(serde_json::to_string(report).unwrap_or_default().as_bytes());
}

/// Runs `spec` in a fresh sandbox and collects its output.
pub fn run(config: &SandboxConfig, spec: &Spec) -> Result<Outcome, SandboxError> {
    run_streaming(config, spec, |_, _| {})
}

/// Like [`run`], passing each chunk of output to `on_output` as it comes.
pub fn run_streaming(
    config: &SandboxConfig,
    spec: &Spec,
    mut on_output: impl FnMut(Stream, &[u8]),
) -> Result<Outcome, SandboxError> {
    validate(config, spec)?;
    let slot = slot::acquire(config)?;
    let request = Request {
        spec: spec.clone(),
        slot: slot.index,
        ids: slot.ids,
        idmapped: config.ids.idmapped(),
        seccomp: crate::seccomp::cached(
            crate::seccomp::Rules::for_sandbox(spec.identity, host_writes(spec)),
            &config.slot_dir,
        )
        .map_err(|e| SandboxError::Setup(e.to_string()))?,
    };
    let cap = spec.output_cap_bytes;
    let mut captured = [Vec::new(), Vec::new()];
    if single_threaded() {
        // This process is the monitor: no second process, no relay of the
        // output, one hop less at every step of the start and the end.
        let mut output = |stream: Stream, data: &[u8]| {
            on_output(stream, data);
            capture(&mut captured[stream as usize], data, cap);
        };
        let result = monitor(
            &request,
            MonitorIo {
                output: &mut output,
                control: None,
            },
        );
        // The monitor returns once pid 1 is reaped (or was never made): no
        // process of the sandbox is left in the slot.
        slot.release_clean();
        return result.map(|outcome| with_output(outcome, captured, cap));
    }
    let mut monitor = MonitorProcess::spawn(config, &request)?;
    let mut control = monitor.control.take();
    let (stdout, stderr, report_r) = (monitor.stdout, monitor.stderr, monitor.report);
    let mut report = Vec::new();
    {
        let mut sources: Vec<(OwnedFd, Option<Stream>)> = vec![
            (stdout, Some(Stream::Stdout)),
            (stderr, Some(Stream::Stderr)),
            (report_r, None),
        ];
        let mut buf = vec![0u8; 64 * 1024];
        while !sources.is_empty() {
            let mut fds: Vec<PollFd> = sources
                .iter()
                .map(|(fd, _)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
                .collect();
            // Woken now and then to see whether the caller cancelled.
            let timeout = PollTimeout::from(200u16);
            let polled = poll(&mut fds, timeout);
            if spec.cancel.is_cancelled() {
                // A closed control pipe makes the monitor kill everything.
                drop(control.take());
            }
            if polled.is_err() {
                continue;
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
            drop(fds);
            let mut closed = Vec::new();
            for (i, (fd, stream)) in sources.iter().enumerate() {
                if !ready[i] {
                    continue;
                }
                match nix::unistd::read(fd, &mut buf) {
                    Ok(0) | Err(_) => closed.push(i),
                    Ok(n) => match stream {
                        Some(s) => {
                            on_output(*s, &buf[..n]);
                            capture(&mut captured[*s as usize], &buf[..n], cap);
                        }
                        None => report.extend_from_slice(&buf[..n]),
                    },
                }
            }
            for i in closed.into_iter().rev() {
                sources.remove(i);
            }
        }
    }
    let status = monitor
        .child
        .wait()
        .map_err(|e| SandboxError::io("waiting for the sandbox monitor", e))?;
    drop(control);
    if status.success() {
        // The monitor saw pid 1 die, which took the whole pid namespace
        // with it: the next user of the slot need not look for leftovers.
        slot.release_clean();
    }
    let report: Report = serde_json::from_slice(&report).map_err(|_| {
        SandboxError::Setup(format!(
            "the sandbox monitor ended ({status}) without a report; its output was: {}",
            String::from_utf8_lossy(&captured[1])
        ))
    })?;
    match report {
        Report::Done(outcome) => Ok(with_output(*outcome, captured, cap)),
        Report::Failed { kind, message } => Err(match kind.as_str() {
            "exec" => SandboxError::Exec {
                command: spec.command.join(" "),
                reason: message,
            },
            "ids" => SandboxError::Ids(message),
            "invalid" => SandboxError::Invalid(message),
            _ => SandboxError::Setup(message),
        }),
    }
}

/// Where the sandbox's writes reach the host: through its writable binds,
/// each private when it or an ancestor is a directory owned by the caller
/// or root that neither group nor others may enter (a store is 0700).
fn host_writes(spec: &Spec) -> crate::seccomp::HostWrites {
    use crate::seccomp::HostWrites;
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let private = |source: &Path| {
        let Ok(source) = source.canonicalize() else {
            return false;
        };
        source.ancestors().any(|dir| {
            std::fs::metadata(dir).is_ok_and(|m| {
                m.is_dir() && (m.uid() == me || m.uid() == 0) && m.mode() & 0o011 == 0
            })
        })
    };
    let mut writable = spec.binds.iter().filter(|b| b.writable).peekable();
    if writable.peek().is_none() {
        HostWrites::None
    } else if writable.all(|b| private(&b.source)) {
        HostWrites::Private
    } else {
        HostWrites::Reachable
    }
}

/// Keeps the end of a stream: at most `cap` bytes once trimmed, trimming
/// only when twice that has gathered.
fn capture(keep: &mut Vec<u8>, data: &[u8], cap: usize) {
    keep.extend_from_slice(data);
    if keep.len() > cap.saturating_mul(2).max(1) {
        keep.drain(..keep.len() - cap);
    }
}

/// The outcome with the last `cap` bytes of each stream.
fn with_output(mut outcome: Outcome, captured: [Vec<u8>; 2], cap: usize) -> Outcome {
    let [mut stdout, mut stderr] = captured;
    for keep in [&mut stdout, &mut stderr] {
        if keep.len() > cap {
            keep.drain(..keep.len() - cap);
        }
    }
    outcome.stdout = stdout;
    outcome.stderr = stderr;
    outcome
}

fn validate(config: &SandboxConfig, spec: &Spec) -> Result<(), SandboxError> {
    let invalid = |m: String| Err(SandboxError::Invalid(m));
    if spec.command.is_empty() {
        return invalid("no command to run".into());
    }
    if spec.layers.is_empty() {
        return invalid("a sandbox needs at least one layer (a root file system directory)".into());
    }
    for layer in &spec.layers {
        if !layer.is_dir() {
            return invalid(format!("layer {} is not a directory", layer.display()));
        }
    }
    for bind in &spec.binds {
        if !bind.target.is_absolute() {
            return invalid(format!(
                "bind target {} must be an absolute path",
                bind.target.display()
            ));
        }
        let under_system = ["/", "/proc", "/dev"]
            .iter()
            .any(|p| bind.target == Path::new(p) || (*p != "/" && bind.target.starts_with(p)));
        if under_system
            || bind
                .target
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            return invalid(format!(
                "bind target {} may not be /, under /proc or /dev, or contain ..",
                bind.target.display()
            ));
        }
        if !bind.source.exists() {
            return invalid(format!(
                "bind source {} does not exist",
                bind.source.display()
            ));
        }
    }
    if !spec.cwd.is_absolute() {
        return invalid(format!(
            "working directory {} must be absolute",
            spec.cwd.display()
        ));
    }
    if let Some(keep) = &spec.keep_upper {
        if matches!(config.ids, IdSource::Subordinate { .. }) {
            return invalid(
                "keeping the upper layer needs the caller to be root or in its own user namespace \
                 (see comb_sandbox::caller, which every comb command enters)"
                    .into(),
            );
        }
        if keep.exists() {
            return invalid(format!(
                "{} already exists; the kept layer needs a new path",
                keep.display()
            ));
        }
    }
    Ok(())
}

/// Closes every descriptor from `first` up: those a caller leaked into
/// this process. Call it before any thread or child is started.
pub fn close_inherited_fds(first: RawFd) {
    close_range(first, RawFd::MAX);
}

/// Closes the descriptors `first..=last`.
fn close_range(first: RawFd, last: RawFd) {
    // SAFETY: close_range only closes descriptors; the callers hold none
    // of these any more.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0u32) };
    if rc != 0 {
        // Kernels before 5.9: close them one by one.
        let max = nix::unistd::sysconf(nix::unistd::SysconfVar::OPEN_MAX)
            .ok()
            .flatten()
            .unwrap_or(1024)
            .min(1 << 20) as RawFd;
        for fd in first..max.min(last.saturating_add(1)) {
            // SAFETY: as above.
            unsafe { libc::close(fd) };
        }
    }
}

/// Closes every descriptor above stderr but those in `keep`.
fn close_fds_except(keep: &mut [RawFd]) {
    keep.sort_unstable();
    let mut first = libc::STDERR_FILENO + 1;
    for &fd in keep.iter() {
        if fd > first {
            close_range(first, fd - 1);
        }
        first = first.max(fd + 1);
    }
    close_inherited_fds(first);
}

/// Call first thing in `main`: if this process was started as the sandbox
/// monitor, it runs the sandbox and exits; otherwise it returns at once.
pub fn helper_main_if_requested() {
    if std::env::args_os().nth(1).as_deref() != Some(std::ffi::OsStr::new(HELPER_ARG)) {
        return;
    }
    // The monitor is given stdio and its report pipe, nothing else.
    close_inherited_fds(REPORT_FD + 1);
    let mut line = String::new();
    let report = match std::io::stdin().lock().read_line(&mut line) {
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Ok(request) => match monitor(
                &request,
                MonitorIo {
                    output: &mut forward_to_stdio,
                    // SAFETY: fd 0, the control pipe, stays open for the
                    // life of this process.
                    control: Some(unsafe {
                        std::os::fd::BorrowedFd::borrow_raw(libc::STDIN_FILENO)
                    }),
                },
            ) {
                Ok(outcome) => Report::Done(Box::new(outcome)),
                Err(e) => failed(e),
            },
            Err(e) => failed(SandboxError::Invalid(format!("bad monitor request: {e}"))),
        },
        Err(e) => failed(SandboxError::io("reading the monitor request", e)),
    };
    write_report(&report);
    std::process::exit(0);
}

fn failed(e: SandboxError) -> Report {
    let kind = match &e {
        SandboxError::Exec { .. } => "exec",
        SandboxError::Ids(_) => "ids",
        SandboxError::Invalid(_) => "invalid",
        _ => "setup",
    };
    let message = match e {
        SandboxError::Exec { reason, .. } => reason,
        SandboxError::Setup(m) => m,
        other => other.to_string(),
    };
    Report::Failed {
        kind: kind.to_string(),
        message,
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SandboxError::io("pipe", e.into()))
}

/// Where the monitor sends the sandbox's output, and how it hears that the
/// caller wants it stopped (besides `spec.cancel`).
struct MonitorIo<'a> {
    output: &'a mut dyn FnMut(Stream, &[u8]),
    /// The caller's end of a control pipe when the monitor is a process of
    /// its own: readable means the caller closed it (went away or
    /// cancelled).
    control: Option<std::os::fd::BorrowedFd<'a>>,
}

/// A monitor process's output: to its own stdout and stderr, which are
/// pipes to the caller.
fn forward_to_stdio(stream: Stream, data: &[u8]) {
    let target = match stream {
        Stream::Stdout => libc::STDOUT_FILENO,
        Stream::Stderr => libc::STDERR_FILENO,
    };
    // SAFETY: writing to this process's own stdio fds.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(target) };
    let _ = write_all(fd, data);
}

/// The monitor: one sandbox from clone to outcome.
fn monitor(req: &Request, io: MonitorIo) -> Result<Outcome, SandboxError> {
    let mut spec = req.spec.clone();
    let started = Instant::now();
    let keep_dir = match &spec.keep_upper {
        Some(keep) => Some(prepare_keep(keep, req.ids.kind)?),
        None => None,
    };
    let cgroup = Cgroup::create(req.ids.uid_base, &spec.limits);
    let memory_by_cgroup = cgroup
        .as_ref()
        .is_some_and(|c| c.memory_enforcement() != Enforcement::Rlimit);
    fit_file_systems(&mut spec.limits, memory_by_cgroup);
    let spec = &spec;
    let aux = BindAux::prepare(spec, req.idmapped);
    let (go_r, go_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    let (errors_r, errors_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // A pipe belongs to its creator, mode 0600, so R and U (other host
    // ids) could not reopen their own stdout as /dev/stdout or
    // /dev/fd/1, which builds and test suites do. Only processes that may
    // ptrace one holding it can reach a pipe by /proc path at all.
    for fd in [&out_w, &err_w] {
        nix::sys::stat::fchmod(fd, nix::sys::stat::Mode::from_bits_truncate(0o622))
            .map_err(|e| SandboxError::io("opening the output pipes to the sandbox", e.into()))?;
    }
    let (sock_monitor, sock_pid1) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| SandboxError::io("socketpair", e.into()))?;

    let flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    let mut stack = vec![0u8; 8 << 20];
    let stage = PathBuf::from(crate::mounts::STAGE);
    let pid1_fds = (go_r, status_w, errors_w, out_w, err_w, sock_pid1);
    let cgroup_memory = cgroup
        .as_ref()
        .is_some_and(|c| c.memory_enforcement() != Enforcement::Rlimit);
    let cgroup_pids = cgroup
        .as_ref()
        .is_some_and(|c| c.pids_enforcement() != Enforcement::Rlimit);
    let pid1_fds = std::cell::RefCell::new(Some(pid1_fds));
    // The child's copies of the monitor's ends must go, or pid 1 would
    // never see the go pipe close.
    let monitor_side = [
        go_w.as_raw_fd(),
        status_r.as_raw_fd(),
        errors_r.as_raw_fd(),
        out_r.as_raw_fd(),
        err_r.as_raw_fd(),
        sock_monitor.as_raw_fd(),
    ];
    let callback = Box::new(|| -> isize {
        for fd in monitor_side {
            // SAFETY: closing this process's copies of fds it never uses.
            unsafe { libc::close(fd) };
        }
        let Some((go, status, errors, stdout, stderr, sock)) = pid1_fds.borrow_mut().take() else {
            return 125;
        };
        // Pid 1 keeps stdio and its own six ends, nothing the caller had
        // open; and shows no command line of the caller's.
        close_fds_except(&mut [
            go.as_raw_fd(),
            status.as_raw_fd(),
            errors.as_raw_fd(),
            stdout.as_raw_fd(),
            stderr.as_raw_fd(),
            sock.as_raw_fd(),
        ]);
        hide_command_line();
        // Idmapped trees come from the monitor; plain paths are opened
        // here, still with the caller's credentials (which may traverse the
        // caller's private directories) and in this mount namespace.
        let count = spec.layers.len()
            + spec.binds.len()
            + usize::from(spec.keep_upper.is_some())
            + aux.count();
        let fds = if req.idmapped {
            receive_fds(&sock, count)
        } else {
            open_paths(spec, keep_dir.as_deref(), &aux)
        };
        let fds = match fds {
            Ok(fds) => fds,
            Err(e) => {
                let _ = nix::unistd::write(&errors, e.as_bytes());
                return 125;
            }
        };
        let (layers, rest) = fds.split_at(spec.layers.len());
        let (keep, rest) = rest.split_at(usize::from(spec.keep_upper.is_some()));
        let (binds, mut aux_fds) = rest.split_at(spec.binds.len());
        init::pid1(Pid1 {
            spec,
            plan: RootPlan {
                stage: &stage,
                layers,
                keep: keep.first(),
                binds: binds
                    .iter()
                    .zip(&spec.binds)
                    .zip(&aux.dirs)
                    .map(|((fd, b), aux)| BindPlan {
                        fd,
                        target: b.target.as_path(),
                        writable: b.writable,
                        aux: aux.as_ref().and_then(|aux| {
                            let (first, rest) = aux_fds.split_first()?;
                            aux_fds = rest;
                            Some(BindAuxPlan {
                                parent: first,
                                source_name: &aux.source_name,
                                aux_name: &aux.aux_name,
                            })
                        }),
                    })
                    .collect(),
                idmapped: req.idmapped,
                upper_size: spec.limits.upper_size_bytes,
                tmp_size: spec.limits.tmp_size_bytes,
                shm_size: spec.limits.shm_size_bytes,
                hostname: &spec.hostname,
            },
            monitor: sock,
            go,
            status,
            errors,
            stdout,
            stderr,
            cgroup_memory,
            cgroup_pids,
            seccomp: &req.seccomp,
        })
    });
    // SAFETY: the monitor is single-threaded; the child gets a copy of the
    // address space and its own stack.
    let pid = unsafe { nix::sched::clone(callback, &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(|e| SandboxError::Setup(format!("creating the namespaces: {e}")))?;
    drop(pid1_fds.borrow_mut().take());
    let abort = |e: SandboxError| {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
        let _ = waitpid(pid, None);
        e
    };
    req.ids.write_maps(pid.as_raw()).map_err(abort)?;
    if let Some(cg) = &cgroup {
        cg.attach(pid.as_raw())
            .map_err(|e| abort(SandboxError::io("moving the sandbox into its cgroup", e)))?;
    }
    if req.idmapped {
        let mut fds = Vec::new();
        for layer in &spec.layers {
            fds.push(idmapped_tree(layer, pid, true).map_err(abort)?);
        }
        if let Some(dir) = &keep_dir {
            fds.push(idmapped_tree(dir, pid, false).map_err(abort)?);
        }
        for bind in &spec.binds {
            fds.push(idmapped_tree(&bind.source, pid, !bind.writable).map_err(abort)?);
        }
        for dir in aux.dirs.iter().flatten() {
            fds.push(idmapped_tree(&dir.parent, pid, false).map_err(abort)?);
        }
        send_fds(&sock_monitor, &fds).map_err(abort)?;
    }
    // Closing the go pipe's write end lets pid 1 continue.
    drop(go_w);

    let watch = watch(spec, pid, &out_r, &err_r, cgroup.as_ref(), started, io);
    let rusage = wait_for(pid);
    let mut status_text = String::new();
    let _ = std::fs::File::from(status_r).read_to_string(&mut status_text);
    let mut error_text = String::new();
    let _ = std::fs::File::from(errors_r).read_to_string(&mut error_text);

    let mut usage = usage(started, rusage.as_ref(), cgroup.as_ref());
    let events = cgroup.as_ref().map(Cgroup::events).unwrap_or_default();
    let enforced_by = enforcement(spec, cgroup.as_ref());
    if let Some(cg) = cgroup {
        cg.remove();
    }
    if !error_text.is_empty() && watch.is_none() {
        if let Some(dir) = &keep_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        return Err(match error_text.strip_prefix("exec: ") {
            Some(reason) => SandboxError::Exec {
                command: spec.command.join(" "),
                reason: reason.to_string(),
            },
            None => SandboxError::Setup(error_text),
        });
    }
    let pid1_report = init::parse_report(&status_text);
    let reported = pid1_report.status;
    let status = reported.unwrap_or(ExitStatus::Signaled(libc::SIGKILL));
    // A limit the kernel enforced on its own (the OOM killer, a refused
    // fork, an rlimit signal) counts even if no tick of `watch` saw it.
    let enforced_by_kernel = match status {
        _ if pid1_report.disk_killed => Some(Kill::Disk),
        _ if events.oom_kills > 0 => Some(Kill::Memory),
        _ if events.pids_max_hits > 0 => Some(Kill::Pids),
        ExitStatus::Signaled(libc::SIGXCPU) => Some(Kill::CpuTime),
        ExitStatus::Signaled(libc::SIGXFSZ) => Some(Kill::FileSize),
        _ if pid1_report.file_size_reached => Some(Kill::FileSize),
        _ => None,
    };
    let killed_by = watch.or(enforced_by_kernel);
    usage.peak_disk_bytes = pid1_report.peak_disk;
    // Pid 1 reports only after copying the upper layer out: without its
    // report the copy may be partial, and is dropped.
    let kept_upper = match (keep_dir, &spec.keep_upper) {
        (Some(dir), Some(keep)) if reported.is_some() => Some(publish_upper(&dir, keep)?),
        (Some(dir), _) => {
            let _ = std::fs::remove_dir_all(dir);
            None
        }
        _ => None,
    };
    Ok(Outcome {
        status,
        killed_by,
        usage,
        enforced_by,
        limits: spec.limits.clone(),
        slot: req.slot,
        host_root_uid: crate::caller::host_uid_of(req.ids.host_uid(0).unwrap_or(0)),
        host_builder_uid: crate::caller::host_uid_of(
            req.ids.host_uid(crate::BUILDER_ID).unwrap_or(0),
        ),
        stdout: Vec::new(),
        stderr: Vec::new(),
        kept_upper,
    })
}

/// How often the monitor reads the limits while output keeps it busy.
const LIMIT_CHECK: Duration = Duration::from_millis(100);

/// Forwards output and enforces timeouts and cgroup limits until every
/// process of the sandbox is gone. Returns the limit that killed it.
fn watch(
    spec: &Spec,
    pid1: Pid,
    out: &OwnedFd,
    err: &OwnedFd,
    cgroup: Option<&Cgroup>,
    started: Instant,
    io: MonitorIo,
) -> Option<Kill> {
    let limits = &spec.limits;
    let mut last_output = Instant::now();
    let mut killed = None;
    let mut open = [true, true];
    let mut control = io.control;
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_check = Instant::now();
    while open.iter().any(|o| *o) {
        // Only what is still open is polled: a closed pipe (stderr, when
        // the output is merged) reports POLLHUP whatever is asked of it,
        // and would turn this loop into a busy one.
        let streams: Vec<(usize, &OwnedFd)> = [out, err]
            .into_iter()
            .enumerate()
            .filter(|(i, _)| open[*i])
            .collect();
        let mut fds: Vec<PollFd> = streams
            .iter()
            .map(|(_, fd)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        if let Some(fd) = control {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let _ = poll(&mut fds, PollTimeout::from(100u16));
        let polled: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        let mut ready = [false, false];
        for (k, (i, _)) in streams.iter().enumerate() {
            ready[*i] = polled[k];
        }
        let control_ready =
            control.is_some() && polled.get(streams.len()).copied().unwrap_or(false);
        for (i, fd) in [out, err].into_iter().enumerate() {
            if !open[i] || !ready[i] {
                continue;
            }
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) | Err(_) => open[i] = false,
                Ok(n) => {
                    last_output = Instant::now();
                    let stream = if i == 0 {
                        Stream::Stdout
                    } else {
                        Stream::Stderr
                    };
                    (io.output)(stream, &buf[..n]);
                }
            }
        }
        if control_ready {
            // The caller never writes after the request: readable means it
            // closed the pipe, i.e. it went away or wants us to stop.
            control = None;
            killed.get_or_insert(Kill::Cancelled);
        }
        if spec.cancel.is_cancelled() {
            killed.get_or_insert(Kill::Cancelled);
        }
        // The limits are read (cgroup files) at most every LIMIT_CHECK,
        // however often output arrives.
        if killed.is_none() && last_check.elapsed() >= LIMIT_CHECK {
            last_check = Instant::now();
            killed = limit_hit(limits, cgroup, started, last_output);
        }
        if killed.is_some() {
            kill_all(pid1, cgroup);
        }
    }
    // What ended the output may be a limit (an OOM kill) seen since the
    // last check.
    if killed.is_none() {
        killed = limit_hit(limits, cgroup, started, last_output);
        if killed.is_some() {
            kill_all(pid1, cgroup);
        }
    }
    killed
}

fn write_all(fd: std::os::fd::BorrowedFd, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        let n = nix::unistd::write(fd, data)?;
        data = &data[n..];
    }
    Ok(())
}

fn limit_hit(
    limits: &crate::Limits,
    cgroup: Option<&Cgroup>,
    started: Instant,
    last_output: Instant,
) -> Option<Kill> {
    if limits.wall_timeout.is_some_and(|t| started.elapsed() > t) {
        return Some(Kill::WallTimeout);
    }
    if limits
        .idle_timeout
        .is_some_and(|t| last_output.elapsed() > t)
    {
        return Some(Kill::IdleTimeout);
    }
    let events = cgroup?.events();
    if events.oom_kills > 0 {
        return Some(Kill::Memory);
    }
    if events.pids_max_hits > 0 {
        return Some(Kill::Pids);
    }
    if limits
        .cpu_time
        .is_some_and(|t| events.cpu_ns > 0 && Duration::from_nanos(events.cpu_ns) > t)
    {
        return Some(Kill::CpuTime);
    }
    None
}

/// Kills every process of the sandbox: `cgroup.kill` where the kernel has
/// it, else SIGKILL to pid 1, which tears the pid namespace down.
fn kill_all(pid1: Pid, cgroup: Option<&Cgroup>) {
    if !cgroup.is_some_and(Cgroup::kill_all) {
        let _ = nix::sys::signal::kill(pid1, nix::sys::signal::SIGKILL);
    }
}

/// Reaps pid 1 and returns what it and every process it reaped (all of
/// the sandbox's) used: its own, not the monitor's other children's.
fn wait_for(pid1: Pid) -> Option<libc::rusage> {
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 fills it in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: plain system call with pointers to locals.
        let rc = unsafe { libc::wait4(pid1.as_raw(), &mut status, 0, &mut usage) };
        if rc == pid1.as_raw() {
            return Some(usage);
        }
        if rc < 0 && nix::Error::last() != nix::Error::EINTR {
            return None;
        }
    }
}

fn usage(started: Instant, rusage: Option<&libc::rusage>, cgroup: Option<&Cgroup>) -> Usage {
    let ms = |t: libc::timeval| (t.tv_sec as u64) * 1000 + (t.tv_usec as u64) / 1000;
    let rss = rusage.map_or(0, |u| u.ru_maxrss as u64 * 1024);
    Usage {
        wall_ms: started.elapsed().as_millis() as u64,
        user_cpu_ms: rusage.map_or(0, |u| ms(u.ru_utime)),
        system_cpu_ms: rusage.map_or(0, |u| ms(u.ru_stime)),
        peak_memory_bytes: cgroup.map_or(rss, |c| c.peak_memory().max(rss)),
        peak_disk_bytes: 0,
    }
}

fn enforcement(spec: &Spec, cgroup: Option<&Cgroup>) -> EnforcedBy {
    let l = &spec.limits;
    let pick = |set: bool, how: Enforcement| if set { how } else { Enforcement::NotLimited };
    let rlimit = Enforcement::Rlimit;
    EnforcedBy {
        memory: pick(
            l.memory_bytes.is_some(),
            cgroup.map_or(rlimit, Cgroup::memory_enforcement),
        ),
        pids: pick(
            l.pids.is_some(),
            cgroup.map_or(rlimit, Cgroup::pids_enforcement),
        ),
        file_size: pick(l.file_size_bytes.is_some(), rlimit),
        open_files: pick(l.open_files.is_some(), rlimit),
        cpu_time: pick(
            l.cpu_time.is_some(),
            cgroup.map_or(rlimit, Cgroup::cpu_enforcement),
        ),
        wall_timeout: pick(l.wall_timeout.is_some(), Enforcement::Timer),
        idle_timeout: pick(l.idle_timeout.is_some(), Enforcement::Timer),
        disk: pick(l.disk_bytes.is_some(), Enforcement::Measured),
        ram_filesystems: crate::RamFilesystems {
            upper: l.upper_size_bytes,
            tmp: l.tmp_size_bytes,
            shm: l.shm_size_bytes,
        },
        kill_all: match cgroup {
            Some(Cgroup::V2 { .. }) => "cgroup.kill".to_string(),
            _ => "pid-namespace".to_string(),
        },
    }
}

/// For each writable directory bind, a directory beside its source holding
/// the empty `lower/` and the `work/` of the overlay that shows the bind
/// inside (see `mounts::bind`); removed when the sandbox ends. Without
/// idmapped mounts R must be able to write `work/`, so it is made
/// world-writable, inside a directory of an unguessable name that only
/// its owner can list.
struct BindAux {
    dirs: Vec<Option<AuxDir>>,
}

struct AuxDir {
    parent: PathBuf,
    source_name: String,
    aux_name: String,
}

impl BindAux {
    fn prepare(spec: &Spec, idmapped: bool) -> BindAux {
        let dirs = spec
            .binds
            .iter()
            .enumerate()
            .map(|(i, bind)| {
                if !bind.writable || !bind.source.is_dir() {
                    return None;
                }
                // Names go into overlay options: nothing that needs escaping.
                let source_name = bind.source.file_name()?.to_str()?.to_string();
                if source_name.contains([',', ':', '\\', '=']) {
                    return None;
                }
                let parent = bind.source.parent()?.to_path_buf();
                // A dot and the source's name first: a store cleaning its
                // tmp/ takes it for the source's helper, not for debris.
                let prefix: String = source_name.chars().take(100).collect();
                let aux_name = format!(
                    ".{prefix}.comb-bind-{}-{i}-{:016x}",
                    std::process::id(),
                    random()
                );
                let dir = parent.join(&aux_name);
                let made = std::fs::DirBuilder::new()
                    .mode(0o711)
                    .create(&dir)
                    .and_then(|()| {
                        std::fs::create_dir(dir.join("lower"))?;
                        std::fs::create_dir(dir.join("work"))?;
                        if !idmapped {
                            std::fs::set_permissions(
                                dir.join("work"),
                                std::fs::Permissions::from_mode(0o777),
                            )?;
                        }
                        Ok(())
                    });
                match made {
                    Ok(()) => Some(AuxDir {
                        parent,
                        source_name,
                        aux_name,
                    }),
                    Err(_) => {
                        let _ = std::fs::remove_dir_all(&dir);
                        None
                    }
                }
            })
            .collect();
        BindAux { dirs }
    }

    fn count(&self) -> usize {
        self.dirs.iter().flatten().count()
    }
}

/// 64 random bits from the kernel.
fn random() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom fills the buffer it is given.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // Unguessable is what matters; the clock is a weak fallback.
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    }
    u64::from_ne_bytes(bytes)
}

impl Drop for BindAux {
    fn drop(&mut self) {
        for dir in self.dirs.iter().flatten() {
            let aux = dir.parent.join(&dir.aux_name);
            // overlayfs leaves work/work (mode 0, R's without idmapped
            // mounts): empty, so removable though not listable.
            if let Ok(entries) = std::fs::read_dir(aux.join("work")) {
                for entry in entries.flatten() {
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
            let _ = std::fs::remove_dir_all(aux);
        }
    }
}

/// Caps the RAM-backed file systems (one tmpfs holds the upper layer,
/// `/tmp`, `/dev` and `/dev/shm`, see `mounts`) at the disk limit, and,
/// where no cgroup counts their pages as the sandbox's memory, at the
/// memory limit: RAM-backed file systems are memory too.
fn fit_file_systems(limits: &mut crate::Limits, memory_by_cgroup: bool) {
    let rlimit_memory = limits.memory_bytes.filter(|_| !memory_by_cgroup);
    let cap = [limits.disk_bytes, rlimit_memory]
        .into_iter()
        .flatten()
        .min();
    let Some(cap) = cap else { return };
    let ram = crate::RamFilesystems {
        upper: limits.upper_size_bytes,
        tmp: limits.tmp_size_bytes,
        shm: limits.shm_size_bytes,
    };
    if ram.total() <= cap {
        return;
    }
    limits.shm_size_bytes = ram.shm.min(cap / 8);
    let left = cap - limits.shm_size_bytes;
    // Shared in proportion to what was asked, at least a page each.
    let (tmp, upper) = (ram.tmp as u128, ram.upper as u128);
    let share = (left as u128 * tmp / (tmp + upper).max(1)) as u64;
    limits.tmp_size_bytes = share.max(4096);
    limits.upper_size_bytes = left.saturating_sub(share).max(4096);
}

/// A private directory beside `keep` holding the overlay's upper/ and work/.
/// In C's namespace they are R's, whose ids are mapped at their own
/// numbers there: pid 1 writes the layer into them as R.
fn prepare_keep(keep: &Path, kind: MapKind) -> Result<PathBuf, SandboxError> {
    let name = keep
        .file_name()
        .ok_or_else(|| SandboxError::Invalid(format!("{} has no file name", keep.display())))?;
    let parent = keep.parent().unwrap_or(Path::new("."));
    let dir = parent.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::create_dir_all(parent)
        .map_err(|e| SandboxError::io(format!("creating {}", parent.display()), e))?;
    ensure_private_dir(&dir)?;
    for sub in ["upper", "work"] {
        let path = dir.join(sub);
        std::fs::create_dir(&path)
            .and_then(|()| match kind {
                MapKind::Nested => std::os::unix::fs::lchown(&path, Some(0), Some(0)),
                MapKind::Root | MapKind::Subordinate => Ok(()),
            })
            .map_err(|e| SandboxError::io(format!("creating {}", path.display()), e))?;
    }
    Ok(dir)
}

/// Validates the upper layer the sandbox wrote and renames it into place.
fn publish_upper(dir: &Path, keep: &Path) -> Result<PathBuf, SandboxError> {
    let upper = dir.join("upper");
    let result = extract::validate_layer(&upper)
        .map_err(SandboxError::from)
        .and_then(|_| {
            std::fs::rename(&upper, keep)
                .map_err(|e| SandboxError::io(format!("publishing {}", keep.display()), e))
        });
    let _ = std::fs::remove_dir_all(dir);
    result.map(|()| keep.to_path_buf())
}

/// Layers, the kept layer's directory and bind sources as O_PATH fds, for a
/// sandbox without idmapped mounts: ids on disk are then shown as they are
/// (the caller's files appear as nobody inside).
fn open_paths(spec: &Spec, keep: Option<&Path>, aux: &BindAux) -> Result<Vec<OwnedFd>, String> {
    let paths = spec
        .layers
        .iter()
        .map(PathBuf::as_path)
        .chain(keep)
        .chain(spec.binds.iter().map(|b| b.source.as_path()))
        .chain(aux.dirs.iter().flatten().map(|d| d.parent.as_path()));
    paths
        .map(|path| {
            nix::fcntl::open(
                path,
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| format!("opening {}: {e}", path.display()))
        })
        .collect()
}

/// A detached copy of the mount at `path`, idmapped through pid 1's user
/// namespace: ids on disk are shown inside as they are (0 is R, 1000 is
/// U), while the processes run as the slot's host ids. Only host root can
/// make one.
fn idmapped_tree(path: &Path, pid1: Pid, read_only: bool) -> Result<OwnedFd, SandboxError> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| SandboxError::Invalid(format!("{} contains a NUL byte", path.display())))?;
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let userns = nix::fcntl::open(
        format!("/proc/{pid1}/ns/user").as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| SandboxError::io("opening the sandbox's user namespace", e.into()))?;
    // SAFETY: system calls with valid, NUL-terminated paths and a properly
    // sized mount_attr.
    unsafe {
        let fd = libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint,
        );
        if fd < 0 {
            return Err(SandboxError::io(
                format!("cloning the mount of {}", path.display()),
                std::io::Error::last_os_error(),
            ));
        }
        let fd = OwnedFd::from_raw_fd(fd as RawFd);
        let mut attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        if read_only {
            attr_set |= MOUNT_ATTR_RDONLY;
        }
        let attr = MountAttr {
            attr_set,
            attr_clr: 0,
            propagation: 0,
            userns_fd: userns.as_raw_fd() as u64,
        };
        let rc = libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        );
        if rc < 0 {
            return Err(SandboxError::Setup(format!(
                "idmapping {}: {} (the file system must support idmapped mounts: ext4, xfs, btrfs or tmpfs)",
                path.display(),
                std::io::Error::last_os_error()
            )));
        }
        Ok(fd)
    }
}

fn send_fds(sock: &OwnedFd, fds: &[OwnedFd]) -> Result<(), SandboxError> {
    for chunk in fds.chunks(200) {
        let raw: Vec<RawFd> = chunk.iter().map(AsRawFd::as_raw_fd).collect();
        let cmsg = [ControlMessage::ScmRights(&raw)];
        let iov = [std::io::IoSlice::new(b"f")];
        sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
            .map_err(|e| SandboxError::io("passing layers to the sandbox", e.into()))?;
    }
    Ok(())
}

/// Pid 1's side of [`send_fds`]: waits for `count` fds, or for the go pipe
/// to close without them (the monitor gave up).
fn receive_fds(sock: &OwnedFd, count: usize) -> Result<Vec<OwnedFd>, String> {
    let mut fds = Vec::with_capacity(count);
    while fds.len() < count {
        let mut byte = [0u8; 1];
        let mut iov = [std::io::IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([RawFd; 200]);
        let msg = nix::sys::socket::recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("receiving layers: {e}"))?;
        if msg.bytes == 0 {
            return Err("the monitor gave up before passing the layers".into());
        }
        for cmsg in msg.cmsgs().map_err(|e| format!("receiving layers: {e}"))? {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(raw) = cmsg {
                // SAFETY: the kernel just installed these fds for us.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
    }
    Ok(fds)
}
