//! Helpers for the integration tests that run `comb sandbox run`: a busybox
//! root with the attack program, a runner with a deadline that parses the
//! JSON outcome, and checks of host state (processes left in a slot, a kept
//! layer's modes).
//!
//! Every run made through [`Sandbox::run`] checks afterwards that no host
//! process with one of its slot's ids is left. That check is only sound
//! while no other sandbox uses the slot, so it is made holding the slot's
//! lock file (the one comb itself takes); runs marked
//! [`Sandbox::exclusive`] also keep every other sandbox of this test
//! process from starting meanwhile, so no new sandbox's clean-up can hide
//! a leftover.

// Each test binary that includes this module uses a different subset.
#![allow(dead_code)]

use serde_json::Value;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

pub const COMB: &str = env!("CARGO_BIN_EXE_comb");
/// Host ids each slot owns (`sandbox/src/idmap.rs`).
pub const SLOT_STRIDE: u32 = 1024;
/// Where comb keeps its slot locks when it runs as root.
pub const SLOT_DIR: &str = "/run/comb/slots";
/// How long any single `comb` invocation may take before the test gives up.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The sandbox needs root here: idmapped layers, `--keep-upper` and the
/// private id range. Tests return early (and say so) otherwise.
pub use crate::root::is_root;

/// R or U.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    R,
    U,
    /// U under other ids (`comb check --vary uid`).
    U2,
}

impl Who {
    pub const ALL: [Who; 2] = [Who::R, Who::U];

    pub fn arg(self) -> &'static str {
        match self {
            Who::R => "root",
            Who::U => "builder",
            Who::U2 => "builder2",
        }
    }
}

/// The shared read-only layer: busybox, `/bin/attack`, a passwd, U's home.
pub struct Fixture {
    pub root: PathBuf,
    /// `/bin/busybox` as built, to prove later that nothing changed it.
    pub busybox: FileState,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();
static FIXTURE_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_fixture() {
    if let Some(dir) = FIXTURE_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

pub fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(build_fixture)
}

fn build_fixture() -> Fixture {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandbox-attacks");
    std::fs::create_dir_all(&base).unwrap();
    // Fixtures of test processes that are gone (killed before their
    // exit handler ran).
    for entry in std::fs::read_dir(&base).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("fixture-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(format!("fixture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    FIXTURE_DIR.set(dir.clone()).unwrap();
    // SAFETY: registering a plain extern "C" function.
    unsafe { libc::atexit(remove_fixture) };

    let root = dir.join("root");
    busybox_root(&root);
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/attack.c");
    let out = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(root.join("bin/attack"))
        .arg(&source)
        .output()
        .expect("gcc is needed to build tests/fixtures/attack.c (apt-get install gcc)");
    assert!(
        out.status.success(),
        "compiling {}: {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let busybox = FileState::of(&root.join("bin/busybox"));
    Fixture { root, busybox }
}

/// A root file system of busybox, owned by uid 0 on disk (so by R inside).
pub fn busybox_root(root: &Path) {
    for dir in [
        "bin",
        "etc",
        "root",
        "home/builder",
        "usr/bin",
        "mnt",
        "var",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("/bin/busybox is needed (apt-get install busybox-static)");
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nbuilder:x:1000:1000:builder:/home/builder:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nbuilder:x:1000:\n").unwrap();
    std::os::unix::fs::chown(root.join("home/builder"), Some(1000), Some(1000)).unwrap();
}

/// Content and identity of a host file, compared before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub content: Vec<u8>,
    pub ino: u64,
    pub nlink: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i128,
}

impl FileState {
    pub fn of(path: &Path) -> FileState {
        let meta =
            std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        FileState {
            content: std::fs::read(path).unwrap(),
            ino: meta.ino(),
            nlink: meta.nlink(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        }
    }

    pub fn assert_unchanged(&self, path: &Path) {
        let now = FileState::of(path);
        if now != *self {
            let short = |s: &FileState| FileState {
                content: s.content.iter().take(200).copied().collect(),
                ..s.clone()
            };
            panic!(
                "host file {} changed:\nbefore {:?}\nafter  {:?}",
                path.display(),
                short(self),
                short(&now)
            );
        }
    }
}

/// Serialises leftover checks against the other sandboxes of this process.
static SANDBOXES: RwLock<()> = RwLock::new(());

enum Guard {
    Shared(RwLockReadGuard<'static, ()>),
    Exclusive(RwLockWriteGuard<'static, ()>),
}

impl Guard {
    fn take(exclusive: bool) -> Guard {
        if exclusive {
            Guard::Exclusive(SANDBOXES.write().unwrap_or_else(|e| e.into_inner()))
        } else {
            Guard::Shared(SANDBOXES.read().unwrap_or_else(|e| e.into_inner()))
        }
    }

    fn exclusive(&self) -> bool {
        matches!(self, Guard::Exclusive(_))
    }
}

/// Who runs `comb` on the host: root (a build server), or an ordinary user
/// with a subordinate id range (hasher's usual C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Root,
    User,
}

impl Caller {
    pub const ALL: [Caller; 2] = [Caller::Root, Caller::User];

    /// Where this caller's sandboxes keep their slot locks.
    pub fn slot_dir(self) -> PathBuf {
        match self {
            Caller::Root => PathBuf::from(SLOT_DIR),
            Caller::User => PathBuf::from(format!("/tmp/comb-{}/slots", ordinary_user().0)),
        }
    }
}

/// The ordinary user the tests run comb as, with its subordinate ranges:
/// (uid, gid). Made once per machine (`useradd`), kept.
pub fn ordinary_user() -> (u32, u32) {
    static USER: OnceLock<(u32, u32)> = OnceLock::new();
    *USER.get_or_init(|| {
        const NAME: &str = "comb-test-caller";
        crate::users::ensure_user(NAME, Some("600000:65536"));
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, NAME]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        (id("-u"), id("-g"))
    })
}

/// One `comb sandbox run --json` invocation being put together.
pub struct Sandbox {
    args: Vec<OsString>,
    exclusive: bool,
    inherit: Vec<(RawFd, RawFd)>,
    caller: Caller,
    env: Vec<(OsString, OsString)>,
}

thread_local! {
    /// Who [`sandbox`] runs comb as, unless told: see [`for_each_caller`].
    static CALLER: std::cell::Cell<Caller> = const { std::cell::Cell::new(Caller::Root) };
}

/// Runs `attack` once with comb run by root and once by an ordinary user
/// with a subordinate range: every [`sandbox`] it makes (on this thread)
/// runs as that caller. For the attacks that apply to both.
pub fn for_each_caller(attack: impl Fn()) {
    for caller in Caller::ALL {
        CALLER.with(|c| c.set(caller));
        attack();
    }
    CALLER.with(|c| c.set(Caller::Root));
}

/// A sandbox on the fixture layer, as U unless told otherwise.
pub fn sandbox() -> Sandbox {
    Sandbox {
        args: vec![
            "sandbox".into(),
            "run".into(),
            "--json".into(),
            "--layer".into(),
            fixture().root.clone().into(),
        ],
        exclusive: false,
        inherit: Vec::new(),
        caller: CALLER.with(|c| c.get()),
        env: Vec::new(),
    }
}

impl Sandbox {
    pub fn who(self, who: Who) -> Sandbox {
        self.args(["--as", who.arg()])
    }

    /// Sets an environment variable of `comb` itself.
    pub fn host_env(mut self, name: &str, value: impl AsRef<OsStr>) -> Sandbox {
        self.env.push((name.into(), value.as_ref().to_owned()));
        self
    }

    /// Run `comb` as this caller.
    pub fn caller(mut self, caller: Caller) -> Sandbox {
        self.caller = caller;
        self
    }

    /// Another layer on top of those already given.
    pub fn layer(self, dir: &Path) -> Sandbox {
        self.arg("--layer").arg(dir)
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Sandbox {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Sandbox {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// No other sandbox of this test process runs meanwhile, so the
    /// leftover check afterwards cannot be masked by another sandbox
    /// killing them first.
    pub fn exclusive(mut self) -> Sandbox {
        self.exclusive = true;
        self
    }

    /// `comb` starts with `source` open (without close-on-exec) as fd
    /// `target`: a caller that leaks descriptors.
    pub fn inherit_fd(mut self, target: RawFd, source: &File) -> Sandbox {
        self.inherit.push((target, source.as_raw_fd()));
        self
    }

    pub fn spawn(self, command: &[&str]) -> Running {
        let guard = Guard::take(self.exclusive);
        let mut cmd = match self.caller {
            Caller::Root => Command::new(COMB),
            Caller::User => {
                let (uid, gid) = ordinary_user();
                // setpriv keeps the descriptors it was given, as a shell
                // would (runuser's PAM session may not).
                let mut cmd = Command::new("setpriv");
                cmd.args([
                    format!("--reuid={uid}"),
                    format!("--regid={gid}"),
                    "--clear-groups".to_string(),
                    "--".to_string(),
                    COMB.to_string(),
                ])
                .current_dir("/")
                .env("HOME", "/");
                cmd
            }
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.args(&self.args)
            .arg("--")
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let inherit = self.inherit.clone();
        if !inherit.is_empty() {
            // SAFETY: only dup2, which is async-signal-safe, between fork
            // and exec; dup2 leaves the new fd without close-on-exec.
            unsafe {
                cmd.pre_exec(move || {
                    for (target, source) in &inherit {
                        if libc::dup2(*source, *target) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let description = format!(
            "{}comb {} -- {}",
            if self.caller == Caller::User {
                "(as an ordinary user) "
            } else {
                ""
            },
            self.args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            command.join(" ")
        );
        let started = Instant::now();
        let mut child = cmd.spawn().expect("starting comb");
        let (tx, rx) = channel();
        for (index, pipe) in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ]
        .into_iter()
        .enumerate()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut buf = [0u8; 8192];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = tx.send((index, None));
                            return;
                        }
                        Ok(n) => {
                            let _ = tx.send((index, Some(buf[..n].to_vec())));
                        }
                    }
                }
            });
        }
        Running {
            child,
            rx,
            out: [Vec::new(), Vec::new()],
            open: [true, true],
            started,
            description,
            guard,
            caller: self.caller,
        }
    }

    /// Runs `command` to its end (within [`DEADLINE`]), then checks that
    /// none of the slot's processes is left.
    pub fn run(self, command: &[&str]) -> Run {
        self.spawn(command).wait()
    }
}

/// A `comb` process that is still running.
pub struct Running {
    pub child: Child,
    rx: Receiver<(usize, Option<Vec<u8>>)>,
    out: [Vec<u8>; 2],
    open: [bool; 2],
    started: Instant,
    description: String,
    guard: Guard,
    caller: Caller,
}

impl Running {
    fn pump(&mut self, until: Instant) -> bool {
        let left = until.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok((i, Some(data))) => {
                self.out[i].extend_from_slice(&data);
                true
            }
            Ok((i, None)) => {
                self.open[i] = false;
                true
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&self.out[0]).into_owned()
    }

    /// Waits until the command has printed `needle` on stdout.
    pub fn wait_for_stdout(&mut self, needle: &str, timeout: Duration) {
        let until = Instant::now() + timeout;
        while !self.stdout_so_far().contains(needle) {
            if !self.pump(until) {
                panic!(
                    "{}: no {needle:?} on stdout within {timeout:?}; stdout {:?}, stderr {:?}",
                    self.description,
                    self.stdout_so_far(),
                    String::from_utf8_lossy(&self.out[1])
                );
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for `comb` to exit and for its output to close, then checks
    /// the slot for leftovers.
    pub fn wait(mut self) -> Run {
        let until = self.started + DEADLINE;
        while self.open.iter().any(|o| *o) {
            if !self.pump(until) {
                let _ = self.child.kill();
                panic!(
                    "{}: still running (or its output still open) after {DEADLINE:?}",
                    self.description
                );
            }
        }
        let status = self.child.wait().unwrap();
        let elapsed = self.started.elapsed();
        let stdout = String::from_utf8_lossy(&self.out[0]).into_owned();
        let stderr = String::from_utf8_lossy(&self.out[1]).into_owned();
        let outcome = stderr
            .lines()
            .last()
            .filter(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok());
        let run = Run {
            description: self.description,
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
            outcome,
            elapsed,
        };
        if run.outcome.is_some() {
            assert_slot_empty(&run, self.caller, self.guard.exclusive());
        }
        drop(self.guard);
        run
    }
}

/// What one `comb sandbox run --json` did.
pub struct Run {
    pub description: String,
    /// comb's exit code: the command's, 128 + signal, or 2 for comb's own
    /// errors.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The JSON outcome (the last line of stderr), if comb printed one.
    pub outcome: Option<Value>,
    pub elapsed: Duration,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n  exit code {} after {:?}\n  stdout: {}\n  stderr: {}",
            self.description,
            self.code,
            self.elapsed,
            self.stdout.trim_end().replace('\n', "\n          "),
            self.stderr.trim_end().replace('\n', "\n          ")
        )
    }
}

impl Run {
    pub fn outcome(&self) -> &Value {
        self.outcome
            .as_ref()
            .unwrap_or_else(|| panic!("no JSON outcome from\n{self}"))
    }

    pub fn killed_by(&self) -> Option<&str> {
        self.outcome()["killed_by"].as_str()
    }

    pub fn enforced_by(&self, limit: &str) -> &str {
        self.outcome()["enforced_by"][limit]
            .as_str()
            .unwrap_or_else(|| panic!("no enforced_by.{limit} in\n{self}"))
    }

    pub fn slot(&self) -> u64 {
        self.outcome()["slot"].as_u64().unwrap()
    }

    pub fn host_root_uid(&self) -> u32 {
        self.outcome()["host_root_uid"].as_u64().unwrap() as u32
    }

    pub fn host_builder_uid(&self) -> u32 {
        self.outcome()["host_builder_uid"].as_u64().unwrap() as u32
    }

    /// The status as the JSON has it: ("exited", code) or ("signaled", n).
    pub fn status(&self) -> (String, i64) {
        let s = &self.outcome()["status"];
        (
            s["kind"].as_str().unwrap_or("?").to_string(),
            s["value"].as_i64().unwrap_or(-1),
        )
    }

    /// The attack program's result line for `name`.
    pub fn result_line(&self, name: &str) -> &str {
        self.stdout
            .lines()
            .rev()
            .find(|l| {
                ["BLOCKED", "ESCAPED", "ERROR"]
                    .iter()
                    .any(|v| l.starts_with(&format!("{v} {name}:")))
            })
            .unwrap_or_else(|| panic!("no result line of attack {name}:\n{self}"))
    }

    /// `name` printed BLOCKED (its details are returned); does not look at
    /// the exit code, for scripts that run several attacks.
    pub fn blocked_in(&self, name: &str) -> &str {
        let line = self.result_line(name);
        let prefix = format!("BLOCKED {name}: ");
        let details = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("attack {name} was not blocked: {line}\n{self}"));
        assert!(
            !details.contains("SUCCEEDED"),
            "attack {name}: an attempt succeeded: {line}\n{self}"
        );
        details
    }

    /// The run was `attack name ...` alone and it was blocked: BLOCKED,
    /// exit code 0, no limit fired.
    pub fn assert_blocked(&self, name: &str) -> &str {
        let details = self.blocked_in(name);
        assert_eq!(self.code, 0, "attack {name}: exit code\n{self}");
        assert_eq!(self.status(), ("exited".to_string(), 0), "{self}");
        assert_eq!(self.killed_by(), None, "{self}");
        details
    }
}

/// Host processes with a real, effective, saved or filesystem uid in
/// `[start, end)`, as "pid (name) Uid: ..." lines.
pub fn processes_in_range(start: u32, end: u32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let Some(uids) = status.lines().find_map(|l| l.strip_prefix("Uid:")) else {
            continue;
        };
        if uids
            .split_whitespace()
            .filter_map(|u| u.parse::<u32>().ok())
            .any(|u| (start..end).contains(&u))
        {
            let comm = status
                .lines()
                .find_map(|l| l.strip_prefix("Name:"))
                .unwrap_or("?")
                .trim();
            let state = status
                .lines()
                .find_map(|l| l.strip_prefix("State:"))
                .unwrap_or("?")
                .trim();
            found.push(format!("{pid} ({comm}, {state}) Uid:{uids}"));
        }
    }
    found
}

/// Children of `pid`, from /proc/*/status PPid lines.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let ppid = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|p| p.trim().parse::<i32>().ok());
        if ppid == Some(pid) {
            found.push(child);
        }
    }
    found
}

/// The real uid of a host process.
pub fn uid_of(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Asserts that no host process holds an id of the run's slot, while
/// holding the slot's lock so no new sandbox is using it. A slot another
/// process is using is only waited for when the run was exclusive.
///
/// An ordinary user's slots all have the same ids (its comb nests every
/// sandbox in its own user namespace, see `comb_sandbox::caller`): only
/// an exclusive run, with no other sandbox of this test process alive,
/// can be checked by ids.
fn assert_slot_empty(run: &Run, caller: Caller, must: bool) {
    let base = run.host_root_uid();
    assert_eq!(
        run.host_builder_uid(),
        base + 1000,
        "U's host uid is R's + 1000\n{run}"
    );
    let lock = match caller {
        Caller::Root => caller.slot_dir().join(format!("ids-{base}.lock")),
        Caller::User if must => caller
            .slot_dir()
            .join(format!("nested-{}.lock", run.slot())),
        Caller::User => return,
    };
    let file = File::options()
        .read(true)
        .write(true)
        .open(&lock)
        .unwrap_or_else(|e| panic!("{}: {e}", lock.display()));
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            break;
        }
        if !must {
            // Another sandbox already reuses the slot: it killed any
            // leftovers on the way in, so there is nothing to see.
            return;
        }
        assert!(
            Instant::now() < until,
            "slot {} stayed busy (another comb process outside this test?)",
            run.slot()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = processes_in_range(base, base + SLOT_STRIDE);
    assert!(
        left.is_empty(),
        "processes of slot {} (host uids {base}..{}) survived the run:\n{}\n{run}",
        run.slot(),
        base + SLOT_STRIDE,
        left.join("\n")
    );
    drop(file);
}

/// Every entry below `dir` (not following symlinks), with its metadata.
pub fn walk(dir: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            found.push((entry.path(), meta));
        }
    }
    found
}

/// Parses "after N bytes" from a fill-disk result line.
pub fn bytes_written(line: &str) -> u64 {
    line.split("after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {line:?}"))
}
