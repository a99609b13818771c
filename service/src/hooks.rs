//! Hooks: executables run on the service's events, outside any sandbox.
//!
//! A hook runs only if it is trusted ([`crate::trust`]: nobody but root
//! and the daemon's user can change it or a directory above it), as the
//! daemon's own user with a clean environment (only
//! `PATH`, `LANG`, `HOME` and `COMB_EVENT`), in `/`, and gets the event as
//! one line of JSON on stdin. Its stdout is discarded; the tail of its
//! stderr is kept for the audit log. It runs in a process group of its
//! own, and its processes do not outlive it: when it exits, or when its
//! time is up, the whole group is killed with `SIGKILL` (a hook that wants
//! something to go on must hand it to a service, e.g. a mail queue). A hook
//! that fails, hangs or cannot start is reported in its [`HookOutcome`];
//! it never stops a build, and [`run_hooks`] never waits much longer than
//! the timeout, whether or not the hook reads its stdin.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use comb_engine::HooksConfig;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// The `PATH` hooks get.
pub const HOOK_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How much of a hook's stderr is kept.
const STDERR_TAIL: usize = 2048;

/// How long the group's output is still read once it has been killed:
/// something that left the group (`setsid`) may hold the pipe open.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// What became of one hook.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HookOutcome {
    pub hook: PathBuf,
    pub event: String,
    /// Exited with status 0 in time.
    pub ok: bool,
    /// `"exit 0"`, `"exit 3"`, `"killed by SIGSEGV"`,
    /// `"killed after 5s timeout"`, `"could not start: …"`.
    pub status: String,
    pub duration_ms: u64,
    /// The last ~2 KB of its stderr.
    pub stderr_tail: String,
}

/// Runs the hooks for `event`, one after another in config order, each
/// with `payload` on stdin.
pub fn run_hooks(
    hooks: &HooksConfig,
    event: &str,
    payload: &serde_json::Value,
) -> Vec<HookOutcome> {
    let mut input = serde_json::to_vec(payload).unwrap_or_else(|_| b"null".to_vec());
    input.push(b'\n');
    hooks
        .for_event(event)
        .map(|hook| run_one(hook, event, &input, hooks.timeout))
        .collect()
}

fn run_one(hook: &Path, event: &str, input: &[u8], timeout: Duration) -> HookOutcome {
    let start = Instant::now();
    let outcome = |ok: bool, status: String, stderr: &[u8]| HookOutcome {
        hook: hook.to_path_buf(),
        event: event.to_string(),
        ok,
        status,
        duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        stderr_tail: tail(stderr),
    };
    if !hook.is_absolute() {
        // Relative to which directory would be a guess.
        return outcome(
            false,
            "could not start: the path is not absolute".into(),
            b"",
        );
    }
    // Checked again at every run: it runs as the daemon's user.
    if let Err(e) = crate::trust::check(hook, "hook", crate::trust::me()) {
        return outcome(false, format!("could not start: {e}"), b"");
    }
    let mut child = match spawn(hook, event) {
        Ok(c) => c,
        Err(e) => return outcome(false, format!("could not start: {e}"), b""),
    };
    let (status, stderr) = supervise(&mut child, input, start + timeout);
    let (ok, status) = match status {
        Ended::TimedOut => (false, format!("killed after {} timeout", human(timeout))),
        Ended::Exited(s) => match (s.code(), s.signal()) {
            (Some(0), _) => (true, "exit 0".to_string()),
            (Some(c), _) => (false, format!("exit {c}")),
            (None, Some(sig)) => (false, format!("killed by {}", signal_name(sig))),
            (None, None) => (false, format!("ended oddly: {s}")),
        },
        Ended::Lost(e) => (false, format!("could not be waited for: {e}")),
    };
    outcome(ok, status, &stderr)
}

fn spawn(hook: &Path, event: &str) -> std::io::Result<Child> {
    let mut cmd = Command::new(hook);
    cmd.env_clear()
        .env("PATH", HOOK_PATH)
        .env("LANG", "C.UTF-8")
        .env("COMB_EVENT", event)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home);
    }
    // A hook file still open for writing somewhere (one being installed, or
    // inherited for an instant by another thread's fork) fails with ETXTBSY.
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 5 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20 * tries));
            }
            other => return other,
        }
    }
}

enum Ended {
    Exited(std::process::ExitStatus),
    TimedOut,
    Lost(std::io::Error),
}

/// Feeds `input`, collects stderr, and waits for the hook until `deadline`;
/// then kills its group and reaps it. Single-threaded, with non-blocking
/// pipes, so a hook that never reads or never closes stderr cannot block us.
fn supervise(child: &mut Child, input: &[u8], deadline: Instant) -> (Ended, Vec<u8>) {
    let pid = Pid::from_raw(child.id() as i32);
    let mut stdin = child.stdin.take();
    let mut stderr = child.stderr.take();
    // Blocking pipes would risk hanging on a hook that never reads or
    // never closes stderr; if one cannot be made non-blocking, let it go.
    if stdin
        .as_ref()
        .is_some_and(|s| set_nonblocking(s.as_fd()).is_err())
    {
        stdin = None;
    }
    if stderr
        .as_ref()
        .is_some_and(|s| set_nonblocking(s.as_fd()).is_err())
    {
        stderr = None;
    }
    let mut written = 0;
    let mut err_buf = Vec::new();
    let mut exited = false;
    let mut timed_out = false;
    loop {
        if let Some(s) = stdin.as_mut() {
            match s.write(&input[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // EPIPE: the hook does not want the rest.
                Err(_) => written = input.len(),
            }
            if written >= input.len() {
                stdin = None; // EOF for the hook
            }
        }
        if let Some(s) = stderr.as_mut() {
            if !drain(s, &mut err_buf) {
                stderr = None;
            }
        }
        // WNOWAIT: leave the leader a zombie, so its pid (and our group
        // id) cannot be reused before we kill the group.
        match waitid(
            Id::Pid(pid),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        ) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
            Ok(_) => exited = true,
            // ECHILD cannot happen (we have not reaped it); stop waiting.
            Err(_) => exited = true,
        }
        if exited {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        // Sleep until a pipe is ready, or briefly: the leader's exit is
        // polled, not signalled.
        let wait = (deadline - now).min(Duration::from_millis(20));
        wait_ready(stdin.as_ref(), stderr.as_ref(), wait);
    }
    // Nothing of the hook may outlive it.
    let _ = killpg(pid, Signal::SIGKILL);
    if timed_out {
        // In case it moved itself to another group.
        let _ = child.kill();
    }
    drop(stdin);
    let status = child.wait();
    // The group is dead; its end of the pipe closes at once unless
    // something escaped the group.
    if let Some(mut s) = stderr {
        let until = Instant::now() + DRAIN_GRACE;
        while drain(&mut s, &mut err_buf) {
            let now = Instant::now();
            if now >= until {
                break;
            }
            wait_ready(None, Some(&s), (until - now).min(Duration::from_millis(50)));
        }
    }
    let ended = match status {
        _ if timed_out => Ended::TimedOut,
        Ok(s) => Ended::Exited(s),
        Err(e) => Ended::Lost(e),
    };
    (ended, err_buf)
}

/// Reads what is available into `buf`, keeping only a tail; false at EOF
/// or on an error.
fn drain(s: &mut std::process::ChildStderr, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 4 * STDERR_TAIL {
                    buf.drain(..buf.len() - STDERR_TAIL);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

fn wait_ready(
    stdin: Option<&std::process::ChildStdin>,
    stderr: Option<&std::process::ChildStderr>,
    wait: Duration,
) {
    let mut fds = Vec::with_capacity(2);
    if let Some(s) = stdin {
        fds.push(PollFd::new(s.as_fd(), PollFlags::POLLOUT));
    }
    if let Some(s) = stderr {
        fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
    }
    let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
    if fds.is_empty() {
        std::thread::sleep(wait);
    } else {
        // An error (EINTR) only shortens the wait.
        let _ = nix::poll::poll(&mut fds, timeout);
    }
}

fn set_nonblocking(fd: std::os::fd::BorrowedFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The last [`STDERR_TAIL`] bytes as text, not starting mid-character.
fn tail(buf: &[u8]) -> String {
    let mut t = &buf[buf.len().saturating_sub(STDERR_TAIL)..];
    if t.len() < buf.len() {
        while let Some((&b, rest)) = t.split_first() {
            if b & 0xC0 != 0x80 {
                break;
            }
            t = rest;
        }
    }
    String::from_utf8_lossy(t).into_owned()
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn signal_name(sig: i32) -> String {
    match Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {sig}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn config(run: &[(&str, &Path)], timeout: Duration) -> HooksConfig {
        HooksConfig {
            run: run
                .iter()
                .map(|(e, p)| (e.to_string(), p.to_path_buf()))
                .collect(),
            timeout,
        }
    }

    /// Gone, or a zombie its new parent has not reaped yet.
    fn process_gone(pid: i32) -> bool {
        match nix::sys::signal::kill(Pid::from_raw(pid), None) {
            Err(Errno::ESRCH) => true,
            _ => std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(true),
        }
    }

    fn wait_gone(pid: i32) -> bool {
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if process_gone(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn read_pid(path: &Path) -> i32 {
        std::fs::read_to_string(path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn hook_gets_payload_and_a_clean_environment() {
        // Only this test touches COMB_SECRET_TEST.
        std::env::set_var("COMB_SECRET_TEST", "hunter2");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let hook = script(
            out,
            "record",
            &format!(
                "cat > '{0}/stdin'\nenv > '{0}/env'\npwd > '{0}/cwd'\n",
                out.display()
            ),
        );
        let payload = json!({"event": "queued", "request": 7, "pocket": "stable",
                             "packages": ["hello"], "user": "alice", "at": 1700000000});
        let got = run_hooks(
            &config(&[("queued", &hook)], Duration::from_secs(10)),
            "queued",
            &payload,
        );
        assert_eq!(got.len(), 1);
        assert!(got[0].ok, "{got:?}");
        assert_eq!(got[0].status, "exit 0");
        assert_eq!(got[0].event, "queued");
        assert_eq!(got[0].hook, hook);
        let stdin = std::fs::read_to_string(out.join("stdin")).unwrap();
        assert!(stdin.ends_with('\n'));
        let sent: serde_json::Value = serde_json::from_str(&stdin).unwrap();
        assert_eq!(sent, payload);
        let env = std::fs::read_to_string(out.join("env")).unwrap();
        assert!(env.lines().any(|l| l == "COMB_EVENT=queued"), "{env}");
        assert!(
            env.lines().any(|l| l == format!("PATH={HOOK_PATH}")),
            "{env}"
        );
        assert!(env.lines().any(|l| l == "LANG=C.UTF-8"), "{env}");
        assert!(!env.contains("COMB_SECRET_TEST"), "{env}");
        assert!(!env.contains("hunter2"), "{env}");
        for line in env.lines() {
            let name = line.split('=').next().unwrap();
            assert!(
                [
                    "PATH",
                    "LANG",
                    "HOME",
                    "COMB_EVENT",
                    "PWD",
                    "SHLVL",
                    "_",
                    "OLDPWD"
                ]
                .contains(&name),
                "unexpected variable {line}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(out.join("cwd")).unwrap().trim(),
            "/"
        );
    }

    #[test]
    fn failing_hook_is_reported_with_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script(
            dir.path(),
            "fail",
            "i=0\nwhile [ $i -lt 500 ]; do echo 'noise noise noise' >&2; i=$((i+1)); done\n\
             echo 'could not reach the server' >&2\nexit 3\n",
        );
        let got = run_hooks(
            &config(&[("failed", &hook)], Duration::from_secs(10)),
            "failed",
            &json!({}),
        );
        assert_eq!(got.len(), 1);
        assert!(!got[0].ok);
        assert_eq!(got[0].status, "exit 3");
        assert!(got[0].stderr_tail.len() <= STDERR_TAIL);
        assert!(got[0].stderr_tail.len() > 1000);
        assert!(
            got[0].stderr_tail.ends_with("could not reach the server\n"),
            "{:?}",
            got[0].stderr_tail
        );
    }

    #[test]
    fn hanging_hook_and_its_children_are_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let hook = script(
            dir.path(),
            "hang",
            &format!("sleep 60 &\necho $! > '{}'\nsleep 60\n", pidfile.display()),
        );
        let start = Instant::now();
        let got = run_hooks(
            &config(&[("started", &hook)], Duration::from_secs(1)),
            "started",
            &json!({"event": "started"}),
        );
        let took = start.elapsed();
        assert!(took < Duration::from_secs(3), "took {took:?}");
        assert!(took >= Duration::from_secs(1), "took {took:?}");
        assert!(!got[0].ok);
        assert_eq!(got[0].status, "killed after 1s timeout");
        let pid = read_pid(&pidfile);
        assert!(wait_gone(pid), "the hook's child {pid} survived");
    }

    #[test]
    fn leftover_children_die_with_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        // The child keeps stderr open: we must not wait for it.
        let hook = script(
            dir.path(),
            "fork",
            &format!("sleep 60 &\necho $! > '{}'\nexit 0\n", pidfile.display()),
        );
        let start = Instant::now();
        let got = run_hooks(
            &config(&[("any", &hook)], Duration::from_secs(30)),
            "published",
            &json!({}),
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(got[0].ok, "{got:?}");
        let pid = read_pid(&pidfile);
        assert!(wait_gone(pid), "the hook's child {pid} survived");
    }

    #[test]
    fn a_hook_others_may_write_is_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let ran = dir.path().join("ran");
        for (mode, dir_mode, words) in [
            (0o775, 0o755, "group-writable"),
            (0o757, 0o755, "world-writable"),
            (0o755, 0o777, "world-writable without the sticky bit"),
        ] {
            let hooks = dir.path().join(format!("hooks-{mode:o}-{dir_mode:o}"));
            std::fs::create_dir(&hooks).unwrap();
            let hook = script(&hooks, "hook", &format!("touch '{}'\n", ran.display()));
            std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(mode)).unwrap();
            std::fs::set_permissions(&hooks, std::fs::Permissions::from_mode(dir_mode)).unwrap();
            let got = run_hooks(
                &config(&[("queued", &hook)], Duration::from_secs(5)),
                "queued",
                &json!({}),
            );
            assert!(!got[0].ok);
            let status = &got[0].status;
            assert!(status.contains(&hook.display().to_string()), "{status}");
            assert!(status.contains(words), "{status}");
            let shown = if mode == 0o755 { dir_mode } else { mode };
            assert!(status.contains(&format!("mode {shown:04o}")), "{status}");
            assert!(!ran.exists(), "the hook ran");
        }
    }

    #[test]
    fn hook_that_cannot_start_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("not-executable");
        std::fs::write(&plain, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let missing = dir.path().join("missing");
        let got = run_hooks(
            &config(
                &[
                    ("failed", &plain),
                    ("failed", &missing),
                    ("failed", Path::new("relative/hook")),
                ],
                Duration::from_secs(5),
            ),
            "failed",
            &json!({}),
        );
        assert_eq!(got.len(), 3);
        for o in &got {
            assert!(!o.ok);
            assert!(o.status.starts_with("could not start: "), "{}", o.status);
        }
    }

    #[test]
    fn large_payload_does_not_block_on_a_hook_that_does_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("stdin");
        let ignores = script(dir.path(), "ignores", "sleep 1\nexit 0\n");
        let reads = script(dir.path(), "reads", &format!("cat > '{}'\n", out.display()));
        let payload = json!({"blob": "x".repeat(200_000)});
        let start = Instant::now();
        let got = run_hooks(
            &config(
                &[("succeeded", &ignores), ("succeeded", &reads)],
                Duration::from_secs(10),
            ),
            "succeeded",
            &payload,
        );
        assert!(start.elapsed() < Duration::from_secs(8));
        assert!(got.iter().all(|o| o.ok), "{got:?}");
        let sent: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(sent, payload);
    }

    #[test]
    fn hooks_run_in_config_order_for_their_event() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mk = |name: &str| {
            script(
                dir.path(),
                name,
                &format!("echo {name} >> '{}'\n", log.display()),
            )
        };
        let (a, b, c, d) = (mk("a"), mk("b"), mk("c"), mk("d"));
        let cfg = config(
            &[("failed", &a), ("any", &b), ("queued", &c), ("failed", &d)],
            Duration::from_secs(5),
        );
        let got = run_hooks(&cfg, "failed", &json!({}));
        assert_eq!(got.len(), 3);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "a\nb\nd\n");
        assert!(run_hooks(&cfg, "promoted", &json!({}))
            .iter()
            .all(|o| o.hook == b));
    }

    fn examples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hooks")
    }

    fn installed(tool: &str) -> bool {
        HOOK_PATH
            .split(':')
            .any(|d| Path::new(d).join(tool).is_file())
    }

    /// Runs an example hook as comb would, but with `COMB_HOOK_CONFIG`
    /// pointing at a test configuration directory.
    fn run_example(
        name: &str,
        config_dir: &Path,
        path: &str,
        event: &str,
        payload: &serde_json::Value,
    ) -> std::process::Output {
        let mut child = Command::new(examples().join(name))
            .env_clear()
            .env("PATH", path)
            .env("LANG", "C.UTF-8")
            .env("COMB_EVENT", event)
            .env("COMB_HOOK_CONFIG", config_dir)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // A hook may exit without reading (mail-on-failure on other events).
        if let Err(e) = stdin.write_all(format!("{payload}\n").as_bytes()) {
            assert_eq!(e.kind(), ErrorKind::BrokenPipe, "{e}");
        }
        drop(stdin);
        child.wait_with_output().unwrap()
    }

    #[test]
    fn example_post_json_posts_the_payload() {
        if !installed("curl") && !installed("wget") {
            eprintln!("skipped: neither curl nor wget is installed");
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut req = Vec::new();
            let mut chunk = [0u8; 4096];
            let header_end = loop {
                let n = conn.read(&mut chunk).unwrap();
                assert!(n > 0, "connection closed before the headers ended");
                req.extend_from_slice(&chunk[..n]);
                if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&req[..header_end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("a Content-Length header");
            if head.to_ascii_lowercase().contains("expect: 100-continue") {
                conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
            }
            while req.len() < header_end + length {
                let n = conn.read(&mut chunk).unwrap();
                assert!(n > 0, "connection closed before the body ended");
                req.extend_from_slice(&chunk[..n]);
            }
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .unwrap();
            tx.send((head, req[header_end..].to_vec())).unwrap();
        });
        let conf = tempfile::tempdir().unwrap();
        std::fs::write(
            conf.path().join("post-url"),
            format!("http://127.0.0.1:{port}/comb-events\n"),
        )
        .unwrap();
        let payload = json!({"event": "failed", "request": 42, "pocket": "stable",
                             "packages": ["hello"], "user": "alice", "at": 1700000000});
        let out = run_example("post-json", conf.path(), HOOK_PATH, "failed", &payload);
        assert!(
            out.status.success(),
            "{:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let (head, body) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(head.starts_with("POST /comb-events HTTP/1."), "{head}");
        let got: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(got, payload);
    }

    #[test]
    fn example_post_json_fails_without_a_url() {
        let conf = tempfile::tempdir().unwrap();
        let out = run_example("post-json", conf.path(), HOOK_PATH, "failed", &json!({}));
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("post-url"));
    }

    #[test]
    fn example_mail_on_failure_mails_only_failures() {
        let dir = tempfile::tempdir().unwrap();
        let mail = dir.path().join("mail");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        // A stand-in sendmail that keeps what it was given.
        script(
            &bin,
            "sendmail",
            &format!("echo \"args: $*\" > '{0}'\ncat >> '{0}'\n", mail.display()),
        );
        let conf = dir.path().join("etc");
        std::fs::create_dir(&conf).unwrap();
        std::fs::write(conf.join("mail-to"), "builds@example.org\nignored\n").unwrap();
        let path = format!("{}:{HOOK_PATH}", bin.display());
        let payload = json!({"event": "succeeded", "request": 42, "pocket": "stable",
                             "packages": ["hello"], "user": "alice", "at": 1700000000});
        let out = run_example("mail-on-failure", &conf, &path, "succeeded", &payload);
        assert!(out.status.success());
        assert!(!mail.exists(), "mailed about a success");

        let payload = json!({"event": "failed", "request": 42, "pocket": "stable",
                             "packages": ["hello"], "user": "alice", "at": 1700000000,
                             "error": "dpkg-buildpackage exited 2"});
        let out = run_example("mail-on-failure", &conf, &path, "failed", &payload);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sent = std::fs::read_to_string(&mail).unwrap();
        let mut lines = sent.lines();
        assert_eq!(lines.next(), Some("args: -i builds@example.org"));
        assert!(sent.contains("\nTo: builds@example.org\n"), "{sent}");
        assert!(
            sent.contains("\nSubject: comb: request 42 failed\n"),
            "{sent}"
        );
        let body = sent.split("\n\n").nth(1).unwrap();
        let got: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
        assert_eq!(got, payload);
    }
}
