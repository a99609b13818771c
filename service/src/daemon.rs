//! `comb serve`: the socket, the checks made before anything is queued,
//! the worker that builds requests in order through the engine, and
//! publication into pockets.
//!
//! What one client can cost is bounded: each connection has one deadline
//! for sending its request and reading the answer; each uid has a number
//! of connections open and a token bucket of requests (root and the
//! daemon's own user, who can stop the daemon anyway, have none), and a
//! request refused for its rate is answered from the accept loop without
//! a thread, a lookup or a write to the database. Refusals and reads are
//! audited one entry per burst per uid, with counts; hook events wait in a
//! bounded queue, and what it drops is counted, audited and told to the
//! next hook.

use crate::access::Peer;
use crate::audit::Key;
use crate::db::{self, state, Db, NewRequest, Published, RequestRow};
use crate::error::{Error, Result};
use crate::protocol::{read_request, Refusal, Request};
use crate::publish::{self, PocketDeb};
use crate::throttle::{Bursts, HookQueue, Limiter, RateLimit};
use comb_engine::BuildRequest;
use comb_engine::{Engine, JobState, NodeEvent, Observer};
use comb_engine::{Hash, NodeKind, Sha256};
use comb_engine::{PocketConfig, RepoConfig, Repository};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Where clients and the daemon meet unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/comb/comb.sock";

/// The socket: `--socket`, else `COMB_SOCKET`, else [`DEFAULT_SOCKET`].
pub fn socket_location(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("COMB_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// How a daemon runs.
pub struct Options {
    /// The repository directory (with `comb.toml`).
    pub repo: PathBuf,
    pub store: PathBuf,
    pub socket: PathBuf,
    /// Members of this group may connect (socket mode 0660); without it
    /// only the daemon's user may (0600).
    pub socket_group: Option<String>,
    /// Where the status page is served.
    pub http: Option<std::net::SocketAddr>,
    /// Builds at once within a request.
    pub jobs: usize,
    /// Queued and running requests one uid may have.
    pub max_in_flight: u32,
    /// Connections one uid may have open.
    pub max_connections: usize,
    /// Requests one uid may make (root and the daemon's own user are not
    /// limited).
    pub rate: RateLimit,
    /// Time a client has from connecting to sending its whole request
    /// and reading its answer ([`REQUEST_DEADLINE`]).
    pub request_deadline: Duration,
    /// Hook events that may wait for the hook thread; more are dropped,
    /// and counted ([`HOOK_QUEUE`]).
    pub hook_queue: usize,
    /// Renders a run's report as a page (the binary's HTML report).
    pub report_page: Option<fn(&comb_engine::Report) -> String>,
}

/// Time a client has from connecting to having sent its request and read
/// the answer, however it trickles its bytes. (Following a request with
/// `wait` lasts as long as the request; each line of that must be taken
/// within [`WRITE_TIMEOUT`].)
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Time the answer to a request still gets when working it out took the
/// daemon itself past the deadline.
const ANSWER_GRACE: Duration = Duration::from_secs(2);
/// Time each line of a followed request has to be taken by the client.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Hook events that may wait.
pub const HOOK_QUEUE: usize = 256;
/// A uid's refusals and reads are one burst until it has been quiet this
/// long…
const BURST_QUIET: Duration = Duration::from_secs(5);
/// …or the burst has lasted this long.
const BURST_LONGEST: Duration = Duration::from_secs(60);
/// Lines of each running build's log the status page shows.
const TAIL_LINES: usize = 30;

/// A build running now, for the status page.
struct Building {
    stage: NodeKind,
    started: Instant,
    tail: VecDeque<String>,
    partial: String,
}

#[derive(Default)]
struct Live {
    /// The running request and what cancels it.
    request: Option<(i64, comb_engine::CancelToken)>,
    building: BTreeMap<String, Building>,
}

pub(crate) struct Shared {
    opts: Options,
    db: Mutex<Db>,
    /// The audit chain's key.
    key: Key,
    config: Mutex<RepoConfig>,
    live: Mutex<Live>,
    work: (Mutex<bool>, Condvar),
    hooks: HookQueue,
    connections: Mutex<HashMap<u32, usize>>,
    limiter: Limiter,
    bursts: Bursts,
    /// The socket as bound: (device, inode), so that only it is removed.
    socket_id: (u64, u64),
    stopping: AtomicBool,
    started_at: i64,
}

/// A refused or failed request: its word and its reason.
struct Refused(Refusal, String);

impl Shared {
    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `comb.toml` as last read.
    fn config(&self) -> RepoConfig {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends to the audit log; a failure to is logged (it is also a
    /// fact worth a line on the daemon's stderr).
    fn audit(
        &self,
        actor: &str,
        uid: Option<u32>,
        kind: &str,
        request: Option<i64>,
        detail: Value,
    ) {
        let db = self.db();
        let entry = crate::audit::NewEntry {
            actor,
            uid,
            kind,
            request,
            detail: &detail,
        };
        if let Err(e) = crate::audit::append(db.conn(), &self.key, &entry) {
            eprintln!("comb serve: could not append to the audit log: {e}");
        }
    }

    /// A refusal or a read by `uid`: true when it is the first of a burst
    /// and is to be recorded in full; otherwise it was counted, and the
    /// burst's count is recorded when it ends (see `run_housekeeping`).
    fn first_of_burst(&self, uid: u32, what: &str) -> bool {
        self.bursts.note(uid, what, Instant::now(), db::now())
    }

    /// Re-reads `comb.toml`: access lists and pockets take effect at once.
    fn reload_config(&self) -> Result<RepoConfig> {
        let config = load_config(&self.opts.repo)?;
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config.clone();
        Ok(config)
    }

    /// Queues a hook run for `event` (hooks run on their own thread, so a
    /// slow hook never holds a build).
    fn event(&self, event: &str, row: &RequestRow, extra: Value) {
        let mut payload = json!({
            "event": event,
            "request": row.id,
            "kind": row.kind,
            "pocket": row.pocket,
            "from": row.from_pocket,
            "packages": row.packages,
            "user": row.user,
            "uid": row.uid,
            "at": db::now(),
        });
        if let (Some(p), Value::Object(extra)) = (payload.as_object_mut(), extra) {
            p.extend(extra);
        }
        self.hook(event, payload);
    }

    /// Queues `payload` for the hooks of `event`; a full queue drops it
    /// (and counts it).
    fn hook(&self, event: &str, payload: Value) {
        if self.config().hooks.for_event(event).next().is_none() {
            return;
        }
        self.hooks.push(event.to_string(), payload);
    }

    fn wake_worker(&self) {
        let (lock, cvar) = &self.work;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
    }
}

/// Reads `comb.toml` of `repo`, refusing it, and any hook it names, when
/// someone other than root and the daemon's user could have changed it
/// ([`crate::trust`]).
fn load_config(repo: &Path) -> Result<RepoConfig> {
    let me = crate::trust::me();
    let path = repo.join(comb_engine::CONFIG_FILE);
    crate::trust::check(&path, "configuration file", me).map_err(|e| Error::Input(e.0))?;
    let config = RepoConfig::load(&path).map_err(|e| Error::Input(e.to_string()))?;
    for (_, hook) in &config.hooks.run {
        match crate::trust::check(hook, "hook", me) {
            Ok(()) => {}
            // One not installed yet is reported when it would run (and is
            // checked then).
            Err(_) if std::fs::symlink_metadata(hook).is_err() => {}
            Err(e) => {
                return Err(Error::Input(format!(
                    "{} (named in {})",
                    e.0,
                    path.display()
                )))
            }
        }
    }
    Ok(config)
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn serve(opts: Options) -> Result<()> {
    // The engine's store first: it refuses a non-empty directory that is
    // not a store yet, and the service's own files below would make a new
    // one non-empty.
    comb_engine::Store::open(&opts.store)
        .map_err(|e| Error::Environment(format!("opening the store: {e}")))?;
    let lock_path = opts.store.join("service.lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
    let _daemon_lock =
        nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
            |_| {
                Error::Environment(format!(
            "another comb serve owns the store {}: stop it first, or give this one another --store",
            opts.store.display()
        ))
            },
        )?;
    let config = load_config(&opts.repo)?;
    let key = Key::load_or_create(&opts.store)?;
    let db = Db::open(&opts.store.join("service.sqlite"))?;
    let requeued = db.requeue_running()?;
    let (listener, socket_id) = bind_socket(&opts.socket, opts.socket_group.as_deref())?;
    let shared = Arc::new(Shared {
        hooks: HookQueue::new(opts.hook_queue),
        limiter: Limiter::new(opts.rate),
        bursts: Bursts::new(BURST_QUIET, BURST_LONGEST),
        opts,
        db: Mutex::new(db),
        key,
        config: Mutex::new(config),
        live: Mutex::new(Live::default()),
        work: (Mutex::new(true), Condvar::new()),
        connections: Mutex::new(HashMap::new()),
        socket_id,
        stopping: AtomicBool::new(false),
        started_at: db::now(),
    });
    for id in &requeued {
        eprintln!("comb serve: request {id} was running when the daemon stopped: queued again");
        shared.audit(
            "comb-serve",
            None,
            "requeued",
            Some(*id),
            json!({"reason": "the daemon stopped while it ran"}),
        );
    }
    shared.audit(
        "comb-serve",
        None,
        "daemon-started",
        None,
        json!({"pid": std::process::id(), "socket": shared.opts.socket, "requeued": requeued,
               "config": shared.config().path}),
    );
    eprintln!(
        "comb serve: listening on {} (store {}, configuration {})",
        shared.opts.socket.display(),
        shared.opts.store.display(),
        shared.config().path.display()
    );
    watch_signals(shared.clone());
    {
        let shared = shared.clone();
        std::thread::spawn(move || run_hook_thread(&shared));
    }
    {
        let shared = shared.clone();
        std::thread::spawn(move || run_housekeeping(&shared));
    }
    let _http = match shared.opts.http {
        Some(addr) => {
            let server = crate::http::serve(addr, shared.clone())
                .map_err(|e| Error::io(format!("serving the status page on {addr}"), e))?;
            eprintln!("comb serve: status page on http://{}/", server.addr());
            Some(server)
        }
        None => None,
    };
    let worker = {
        let shared = shared.clone();
        std::thread::spawn(move || run_worker(&shared))
    };
    // Clients' uids are the host's, and so is this.
    let me = crate::trust::me();
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let accepted = Instant::now();
        let (uid, gid, pid) = match crate::access::peer_ids(&stream) {
            Ok(ids) => ids,
            Err(e) => {
                eprintln!("comb serve: a client whose credentials cannot be read: {e}");
                continue;
            }
        };
        // Before anything that costs: no thread, no lookup, no database.
        if uid != 0 && uid != me {
            if let Err(wait) = shared.limiter.take(uid, accepted) {
                refuse_rate(&shared, stream, uid, wait);
                continue;
            }
        }
        {
            let mut open = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
            let n = open.entry(uid).or_default();
            if *n >= shared.opts.max_connections {
                drop(open);
                refuse_connection(&shared, stream, uid);
                continue;
            }
            *n += 1;
        }
        let shared = shared.clone();
        std::thread::spawn(move || {
            let peer = Peer::from_ids(uid, gid, pid);
            let deadline = accepted + shared.opts.request_deadline;
            handle_client(&shared, stream, peer, deadline);
            let mut open = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = open.get_mut(&uid) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(&uid);
                }
            }
        });
    }
    let _ = worker.join();
    remove_socket(&shared);
    Ok(())
}

/// The user name of `uid`, for the log.
fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| format!("uid:{uid}"), |u| u.name)
}

/// Answers a connection the accept loop turns away, without waiting for
/// the client: what it already sent is read (so that closing does not
/// reset the connection before it reads the answer), the answer is
/// written if it fits, and the connection is closed.
fn turn_away(mut stream: UnixStream, answer: &Value) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut sink = [0u8; 8192];
    let mut left = crate::protocol::MAX_REQUEST_BYTES;
    while left > 0 {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
    let mut line = answer.to_string();
    line.push('\n');
    let _ = stream.write(line.as_bytes());
}

/// Refuses a connection for its uid's rate: the answer says when to try
/// again; the audit log has the first of a burst, then a count.
fn refuse_rate(shared: &Shared, stream: UnixStream, uid: u32, wait: Duration) {
    let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
    let message = format!(
        "uid {uid} sends requests faster than {} a second (bursts of {}): try again in {:.1} s",
        shared.opts.rate.per_second,
        shared.opts.rate.burst,
        ms as f64 / 1000.0
    );
    turn_away(
        stream,
        &json!({"ok": false, "done": true, "refusal": Refusal::RateLimited, "error": message, "retry_after_ms": ms}),
    );
    if shared.first_of_burst(uid, "rate_limited") {
        let user = user_name(uid);
        eprintln!(
            "comb serve: refused a request of {user}: {message} (more are counted, not logged)"
        );
        shared.audit(
            &user,
            Some(uid),
            "refused",
            None,
            json!({"refusal": Refusal::RateLimited, "reason": message}),
        );
    }
}

fn refuse_connection(shared: &Shared, stream: UnixStream, uid: u32) {
    let message = format!(
        "uid {uid} has {} connections open already: close some first",
        shared.opts.max_connections
    );
    turn_away(
        stream,
        &json!({"ok": false, "done": true, "refusal": Refusal::TooManyInFlight, "error": message}),
    );
    if shared.first_of_burst(uid, "too_many_connections") {
        let user = user_name(uid);
        eprintln!("comb serve: refused a connection of {user}: {message}");
        shared.audit(
            &user,
            Some(uid),
            "refused",
            None,
            json!({"refusal": Refusal::TooManyInFlight, "reason": message}),
        );
    }
}

/// The socket, bound with no permission for anyone but the daemon's user
/// (and `group`, when given), without any step that follows a symbolic
/// link: it is bound, given its group and mode in a directory of the
/// daemon's own that nobody else can enter, then renamed into place, which
/// replaces whatever is at the path (a link itself, never what it points
/// to). A socket left by a daemon that died is replaced; one a live daemon
/// answers on is not, nor anything that is not a socket or a link.
/// Returns the listener and the socket's (device, inode).
fn bind_socket(path: &Path, group: Option<&str>) -> Result<(UnixListener, (u64, u64))> {
    use nix::fcntl::{open, openat, renameat, AtFlags, OFlag};
    use nix::sys::stat::{fchmod, fstatat, mkdirat, Mode, SFlag};
    let gid = group
        .map(|group| {
            nix::unistd::Group::from_name(group)
                .ok()
                .flatten()
                .map(|g| g.gid)
                .ok_or_else(|| Error::Input(format!("there is no group {group:?} (--group)")))
        })
        .transpose()?;
    let name = path.file_name().ok_or_else(|| {
        Error::Input(format!(
            "--socket {}: give the path of a socket file",
            path.display()
        ))
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let nix_err = |what: String| move |e: nix::Error| Error::io(what, e.into());
    let dir_flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    if std::fs::symlink_metadata(&parent).is_err() {
        if let Some(grand) = parent.parent().filter(|g| !g.as_os_str().is_empty()) {
            std::fs::create_dir_all(grand).map_err(|e| {
                Error::io(
                    format!(
                        "creating {} (give --socket a path in a directory you may write)",
                        grand.display()
                    ),
                    e,
                )
            })?;
        }
        match std::fs::create_dir(&parent) {
            Ok(()) => {
                // Its mode is set on what was made, never through a link
                // put in its place meanwhile.
                let fd = open(&parent, dir_flags | OFlag::O_NOFOLLOW, Mode::empty())
                    .map_err(nix_err(format!("opening {}", parent.display())))?;
                fchmod(&fd, Mode::from_bits_truncate(0o755))
                    .map_err(nix_err(format!("setting the mode of {}", parent.display())))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Error::io(
                    format!(
                        "creating {} (give --socket a path in a directory you may write)",
                        parent.display()
                    ),
                    e,
                ))
            }
        }
    }
    let dir = open(&parent, dir_flags, Mode::empty())
        .map_err(nix_err(format!("opening {}", parent.display())))?;
    match fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFSOCK {
                if UnixStream::connect(path).is_ok() {
                    return Err(Error::Environment(format!(
                        "a comb serve already listens on {}: stop it, or give this one another --socket",
                        path.display()
                    )));
                }
            } else if kind == SFlag::S_IFLNK {
                eprintln!(
                    "comb serve: {} is a symbolic link: replacing the link (what it points to is left alone)",
                    path.display()
                );
            } else {
                return Err(Error::Input(format!(
                    "{} exists and is not a socket: remove it, or give --socket another path",
                    path.display()
                )));
            }
        }
        Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(Error::io(
                format!("looking at {}", path.display()),
                e.into(),
            ))
        }
    }
    // The private directory: made by us with mode 0700, so nobody else
    // can enter it or put anything in it.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let private = format!(
        ".{}.{}-{nanos:08x}",
        name.to_string_lossy(),
        std::process::id()
    );
    mkdirat(&dir, private.as_str(), Mode::from_bits_truncate(0o700)).map_err(nix_err(format!(
        "creating a directory in {} (give --socket a path in a directory you may write)",
        parent.display()
    )))?;
    let bound = (|| {
        let pdir = openat(
            &dir,
            private.as_str(),
            dir_flags | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(nix_err(format!(
            "opening {}",
            parent.join(&private).display()
        )))?;
        // The mode comes from the umask at bind: there is no moment with
        // more permission than it should have.
        let umask = if gid.is_some() { 0o117 } else { 0o177 };
        let old = nix::sys::stat::umask(Mode::from_bits_truncate(umask));
        let via_fd = format!("/proc/self/fd/{}/s", pdir.as_raw_fd());
        let mut bound = UnixListener::bind(&via_fd);
        if bound.is_err() {
            // No /proc: the path, which leads to the same directory or
            // fails (the socket is then not found in it below).
            bound = UnixListener::bind(parent.join(&private).join("s"));
        }
        nix::sys::stat::umask(old);
        let listener = bound.map_err(|e| Error::io(format!("binding {}", path.display()), e))?;
        if let Some(gid) = gid {
            // From the host's namespace: the daemon's own has no groups.
            let group = group.unwrap_or_default();
            openat(
                &pdir,
                "s",
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(std::io::Error::from)
            .and_then(|socket| {
                comb_engine::host::chgrp(std::os::fd::AsFd::as_fd(&socket), gid.as_raw())
            })
            .map_err(|e| {
                Error::io(
                    format!(
                        "giving {} to group {group} (the daemon's user must be a member: \
                             usermod -aG {group} USER)",
                        path.display()
                    ),
                    e,
                )
            })?;
        }
        renameat(&pdir, "s", &dir, name)
            .map_err(nix_err(format!("moving the socket to {}", path.display())))?;
        let st = fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(nix_err(format!("looking at {}", path.display())))?;
        Ok((listener, (st.st_dev, st.st_ino)))
    })();
    let _ = nix::unistd::unlinkat(
        &dir,
        private.as_str(),
        nix::unistd::UnlinkatFlags::RemoveDir,
    );
    bound
}

/// Removes the socket, if it is still the one this daemon bound.
fn remove_socket(shared: &Shared) {
    let path = &shared.opts.socket;
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if (md.dev(), md.ino()) == shared.socket_id {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// SIGTERM or SIGINT: stop the running build (its request is queued again
/// at the next start), remove the socket and exit.
fn watch_signals(shared: Arc<Shared>) {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    let _ = set.thread_block();
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            eprintln!("comb serve: {sig:?}: stopping");
            shared.stopping.store(true, Ordering::SeqCst);
            if let Some((_, cancel)) = &shared.live().request {
                cancel.cancel();
            }
            shared.wake_worker();
            shared.audit(
                "comb-serve",
                None,
                "daemon-stopped",
                None,
                json!({"signal": format!("{sig:?}")}),
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            while shared.live().request.is_some() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            remove_socket(&shared);
            std::process::exit(0);
        }
    });
}

/// Writes one answer line, all of it by `by`, however slowly the client
/// reads.
fn send(stream: &mut UnixStream, value: &Value, by: Instant) -> bool {
    let mut line = value.to_string();
    line.push('\n');
    let bytes = line.as_bytes();
    let mut written = 0;
    while written < bytes.len() {
        let left = by.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_write_timeout(Some(left)).is_err() {
            return false;
        }
        match stream.write(&bytes[written..]) {
            Ok(0) => return false,
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Reads from a client until one deadline, however it trickles its bytes
/// (a timeout per read would let a byte every few seconds go on forever).
struct DeadlineReader {
    stream: UnixStream,
    deadline: Instant,
    allowed: Duration,
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let late = || {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the request was not sent within {:.1} s of connecting",
                    self.allowed.as_secs_f64()
                ),
            )
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        self.stream.set_read_timeout(Some(left))?;
        match self.stream.read(buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(late())
            }
            other => other,
        }
    }
}

fn handle_client(shared: &Shared, mut stream: UnixStream, peer: Peer, deadline: Instant) {
    let request = {
        let Ok(read_half) = stream.try_clone() else {
            return;
        };
        read_request(&mut BufReader::new(DeadlineReader {
            stream: read_half,
            deadline,
            allowed: shared.opts.request_deadline,
        }))
    };
    // The answer is due by the deadline, unless the daemon itself (not the
    // client) took it past it.
    let by = deadline.max(Instant::now() + ANSWER_GRACE);
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            if shared.first_of_burst(peer.uid, "malformed") {
                eprintln!(
                    "comb serve: {} (uid {}, pid {}) sent a bad request: {e}; disconnected \
                     (more of theirs are counted, not logged)",
                    peer.user, peer.uid, peer.pid
                );
                shared.audit(
                    &peer.user,
                    Some(peer.uid),
                    "disconnected",
                    None,
                    json!({"pid": peer.pid, "reason": e}),
                );
            }
            send(
                &mut stream,
                &json!({"ok": false, "done": true, "refusal": Refusal::Malformed, "error": e}),
                by,
            );
            return;
        }
    };
    let reply = match request {
        Request::Submit {
            pocket,
            packages,
            wait,
        } => {
            let id = queue_request(shared, &peer, "submit", &pocket, None, &packages);
            return answer_queued(shared, &mut stream, id, wait, by);
        }
        Request::Promote { from, to, packages } => {
            let id = queue_request(shared, &peer, "promote", &to, Some(&from), &packages);
            return answer_queued(shared, &mut stream, id, true, by);
        }
        Request::Queue {} => {
            read_noted(shared, &peer, "queue", &request);
            match shared.db().active() {
                Ok(rows) => json!({"ok": true, "done": true, "queue": rows}),
                Err(e) => json!({"ok": false, "done": true, "error": e.to_string()}),
            }
        }
        Request::Status { id } => match shared.db().request(id) {
            Ok(Some(row)) => {
                read_noted(shared, &peer, "status", &request);
                json!({"ok": true, "done": true, "request": row})
            }
            Ok(None) => refused(
                shared,
                &peer,
                Refusal::NotFound,
                format!("there is no request {id}"),
                &request,
            ),
            Err(e) => json!({"ok": false, "done": true, "error": e.to_string()}),
        },
        Request::Cancel { id } => cancel(shared, &peer, id, &request),
    };
    send(&mut stream, &reply, by);
}

/// A read (queue, status): audited as the first of a burst, else counted.
fn read_noted(shared: &Shared, peer: &Peer, what: &str, request: &Request) {
    if shared.first_of_burst(peer.uid, &format!("read:{what}")) {
        shared.audit(
            &peer.user,
            Some(peer.uid),
            "request",
            None,
            json!({"pid": peer.pid, "request": request}),
        );
    }
}

/// A refused request that queues nothing (cancel, status): audited as the
/// first of a burst, else counted. Returns the reply.
fn refused(
    shared: &Shared,
    peer: &Peer,
    refusal: Refusal,
    why: String,
    request: &Request,
) -> Value {
    if shared.first_of_burst(peer.uid, &format!("refused:{}", refusal_word(refusal))) {
        shared.audit(
            &peer.user,
            Some(peer.uid),
            "refused",
            None,
            json!({"pid": peer.pid, "refusal": refusal, "reason": why, "request": request}),
        );
    }
    refusal_reply(refusal, why)
}

fn refusal_word(refusal: Refusal) -> String {
    json!(refusal).as_str().unwrap_or("refused").to_string()
}

fn refusal_reply(refusal: Refusal, message: String) -> Value {
    json!({"ok": false, "done": true, "refusal": refusal, "error": message})
}

/// Checks a submission or promotion and queues it. Returns the request's
/// id, or the reply: a refusal (which queues nothing and records nothing
/// but the audit entry of the first of a burst), or why even recording it
/// failed.
fn queue_request(
    shared: &Shared,
    peer: &Peer,
    kind: &str,
    pocket: &str,
    from: Option<&str>,
    packages: &[String],
) -> std::result::Result<i64, Value> {
    let verdict = shared
        .reload_config()
        .map_err(|e| {
            Refused(
                Refusal::Malformed,
                format!("the repository cannot be read: {e}"),
            )
        })
        .and_then(|config| check_request(shared, &config, peer, pocket, from, packages));
    if let Err(Refused(refusal, why)) = verdict {
        if shared.first_of_burst(peer.uid, &format!("refused:{}", refusal_word(refusal))) {
            eprintln!(
                "comb serve: {kind} for {pocket} by {}: refused: {why} (more refusals of theirs \
                 are counted, not logged)",
                peer.user
            );
            shared.audit(&peer.user, Some(peer.uid), "refused", None, json!({"pid": peer.pid, "refusal": refusal, "reason": why, "kind": kind, "pocket": pocket, "from": from, "packages": packages}));
            shared.hook(
                "refused",
                json!({"event": "refused", "kind": kind, "pocket": pocket, "from": from,
                       "packages": packages, "user": peer.user, "uid": peer.uid,
                       "refusal": refusal, "reason": why, "at": db::now()}),
            );
        }
        return Err(refusal_reply(refusal, why));
    }
    let id = shared
        .db()
        .insert_request(&NewRequest {
            kind,
            pocket,
            from_pocket: from,
            packages,
            uid: peer.uid,
            user: &peer.user,
            state: state::QUEUED,
            reason: None,
        })
        .map_err(|e| json!({"ok": false, "done": true, "error": e.to_string()}))?;
    let row = shared.db().request(id).ok().flatten();
    eprintln!(
        "comb serve: request {id}: {kind} {} for {pocket} by {}: queued",
        packages.join(" "),
        peer.user
    );
    shared.audit(
        &peer.user,
        Some(peer.uid),
        "queued",
        Some(id),
        json!({"pid": peer.pid, "kind": kind, "pocket": pocket, "from": from, "packages": packages}),
    );
    if let Some(row) = &row {
        shared.event("queued", row, json!({}));
    }
    shared.wake_worker();
    Ok(id)
}

/// What must hold before a request is queued.
fn check_request(
    shared: &Shared,
    config: &RepoConfig,
    peer: &Peer,
    pocket: &str,
    from: Option<&str>,
    packages: &[String],
) -> std::result::Result<(), Refused> {
    let target = pocket_of(config, pocket)?;
    if !peer.may_use(target) {
        return Err(Refused(
            Refusal::NotInAccessList,
            format!(
                "{} (uid {}) is not in the access list of pocket {pocket}: users {:?}, groups {:?}",
                peer.user, peer.uid, target.users, target.groups
            ),
        ));
    }
    if target.frozen {
        return Err(Refused(
            Refusal::PocketFrozen,
            format!("pocket {pocket} is frozen: it takes no submission or promotion"),
        ));
    }
    let repo = Repository::from_config(config.clone()).map_err(|e| {
        Refused(
            Refusal::Malformed,
            format!("the repository cannot be read: {e}"),
        )
    })?;
    let db = shared.db();
    for name in packages {
        let Some(recipe) = repo.recipe(name) else {
            return Err(Refused(
                Refusal::UnknownPackage,
                format!("the repository has no package {name:?}"),
            ));
        };
        if let Some(from) = from {
            pocket_of(config, from)?;
            let Some(p) = db.published_one(from, name).map_err(db_refusal)? else {
                return Err(Refused(
                    Refusal::NotPublished,
                    format!("{name} is not published in pocket {from}: submit it there first"),
                ));
            };
            check_version(&db, target, name, &p.version)?;
        } else if let Some(version) = &recipe.version {
            check_version(&db, target, name, version)?;
        }
    }
    let in_flight = db.in_flight(peer.uid).map_err(db_refusal)?;
    if in_flight >= shared.opts.max_in_flight {
        return Err(Refused(
            Refusal::TooManyInFlight,
            format!(
                "{} has {in_flight} requests queued or running (at most {}): wait for some to end",
                peer.user, shared.opts.max_in_flight
            ),
        ));
    }
    Ok(())
}

fn db_refusal(e: Error) -> Refused {
    Refused(Refusal::Malformed, format!("the service database: {e}"))
}

fn pocket_of<'a>(
    config: &'a RepoConfig,
    name: &str,
) -> std::result::Result<&'a PocketConfig, Refused> {
    config.pockets.get(name).ok_or_else(|| {
        Refused(
            Refusal::UnknownPocket,
            format!(
                "there is no pocket {name:?} in {}: the pockets are {}",
                config.path.display(),
                config
                    .pockets
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

/// A version must go up in a pocket, unless the pocket allows it not to.
fn check_version(
    db: &Db,
    pocket: &PocketConfig,
    package: &str,
    version: &str,
) -> std::result::Result<(), Refused> {
    if pocket.allow_backtracking {
        return Ok(());
    }
    let Some(published) = db
        .published_one(&pocket.name, package)
        .map_err(db_refusal)?
    else {
        return Ok(());
    };
    let greater = comb_engine::publish::compare_versions(version, &published.version)
        .map(|o| o == std::cmp::Ordering::Greater)
        .map_err(|e| {
            Refused(
                Refusal::VersionNotGreater,
                format!("{package} {version}: {e}"),
            )
        })?;
    if greater {
        Ok(())
    } else {
        Err(Refused(
            Refusal::VersionNotGreater,
            format!(
                "{package} {version} is not greater than {} already published in pocket {} (allow_backtracking is off)",
                published.version, pocket.name
            ),
        ))
    }
}

/// Answers a queued (or refused) request, by `by`; with `wait`, follows
/// it to its end, a line per change of state.
fn answer_queued(
    shared: &Shared,
    stream: &mut UnixStream,
    queued: std::result::Result<i64, Value>,
    wait: bool,
    by: Instant,
) {
    let id = match queued {
        Ok(id) => id,
        Err(reply) => {
            send(stream, &reply, by);
            return;
        }
    };
    let mut last = shared.db().request(id).ok().flatten();
    // A request may have ended before this first answer (a quick
    // promotion): then it is the last.
    let ended = last.as_ref().is_some_and(|r| state::is_final(&r.state));
    if !send(stream, &answer(last.as_ref(), !wait || ended), by) || !wait || ended {
        return;
    }
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let row = match shared.db().request(id) {
            Ok(Some(r)) => r,
            _ => return,
        };
        if last.as_ref().is_some_and(|l| l.state == row.state) {
            continue;
        }
        let done = state::is_final(&row.state);
        if !send(
            stream,
            &answer(Some(&row), done),
            Instant::now() + WRITE_TIMEOUT,
        ) || done
        {
            return;
        }
        last = Some(row);
    }
}

/// One answer about a request: ok unless it failed or was cancelled.
fn answer(row: Option<&RequestRow>, done: bool) -> Value {
    let ok = row.is_some_and(|r| r.state != state::FAILED && r.state != state::CANCELLED);
    json!({"ok": ok, "done": done, "request": row})
}

fn cancel(shared: &Shared, peer: &Peer, id: i64, request: &Request) -> Value {
    let row = match shared.db().request(id) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return refused(
                shared,
                peer,
                Refusal::NotFound,
                format!("there is no request {id}"),
                request,
            )
        }
        Err(e) => return json!({"ok": false, "done": true, "error": e.to_string()}),
    };
    if row.uid != peer.uid && peer.uid != 0 {
        return refused(
            shared,
            peer,
            Refusal::NotYours,
            format!(
                "request {id} is {}'s: only they or root may cancel it",
                row.user
            ),
            request,
        );
    }
    if state::is_final(&row.state) {
        return refused(
            shared,
            peer,
            Refusal::NotFound,
            format!("request {id} has ended already ({})", row.state),
            request,
        );
    }
    let reason = format!("cancelled by {}", peer.user);
    match shared
        .db()
        .finish(id, state::CANCELLED, Some(&reason), &BTreeMap::new())
    {
        Ok(true) => {}
        Ok(false) => {
            return refused(
                shared,
                peer,
                Refusal::NotFound,
                format!("request {id} has just ended"),
                request,
            )
        }
        Err(e) => return json!({"ok": false, "done": true, "error": e.to_string()}),
    }
    if let Some((running, token)) = &shared.live().request {
        if *running == id {
            token.cancel();
        }
    }
    shared.audit(
        &peer.user,
        Some(peer.uid),
        "cancelled",
        Some(id),
        json!({"pid": peer.pid, "was": row.state}),
    );
    shared.event(
        "failed",
        &row,
        json!({"state": state::CANCELLED, "reason": reason}),
    );
    json!({"ok": true, "done": true, "request": shared.db().request(id).ok().flatten()})
}

/// Builds requests one at a time, oldest first.
fn run_worker(shared: &Arc<Shared>) {
    loop {
        {
            let (lock, cvar) = &shared.work;
            let mut ready = lock.lock().unwrap_or_else(|e| e.into_inner());
            if !*ready {
                ready = cvar
                    .wait_timeout(ready, Duration::from_secs(1))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            *ready = false;
        }
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        loop {
            if shared.stopping.load(Ordering::SeqCst) {
                return;
            }
            let row = match shared.db().start_next() {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("comb serve: reading the queue: {e}");
                    break;
                }
            };
            run_request(shared, row);
        }
    }
}

fn run_request(shared: &Arc<Shared>, row: RequestRow) {
    let id = row.id;
    eprintln!(
        "comb serve: request {id}: started ({} {})",
        row.kind,
        row.packages.join(" ")
    );
    shared.audit(
        "comb-serve",
        None,
        "started",
        Some(id),
        json!({"attempt": row.attempts}),
    );
    shared.event("started", &row, json!({"attempt": row.attempts}));
    let result = match row.kind.as_str() {
        "promote" => promote(shared, &row),
        _ => submit(shared, &row),
    };
    {
        let mut live = shared.live();
        live.request = None;
        live.building.clear();
    }
    if shared.stopping.load(Ordering::SeqCst) {
        // Left running: the next start queues it again.
        return;
    }
    let (st, reason, versions) = match result {
        Ok(versions) => (state::SUCCEEDED, None, versions),
        Err(e) => (state::FAILED, Some(e), BTreeMap::new()),
    };
    let ended = shared
        .db()
        .finish(id, st, reason.as_deref(), &versions)
        .unwrap_or(false);
    if !ended {
        // Cancelled meanwhile: the canceller said so.
        return;
    }
    eprintln!(
        "comb serve: request {id}: {st}{}",
        reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    );
    let row = shared.db().request(id).ok().flatten().unwrap_or(row);
    shared.audit(
        "comb-serve",
        None,
        st,
        Some(id),
        json!({"reason": reason, "versions": versions, "run": row.run}),
    );
    shared.event(
        st,
        &row,
        json!({"reason": reason, "versions": versions, "run": row.run}),
    );
}

/// The engine observer of a request: what the status page shows live.
struct LiveObserver(Arc<Shared>);

impl Observer for LiveObserver {
    fn node(&self, e: &NodeEvent) {
        self.0.live().building.remove(&e.name);
    }

    fn started(&self, stage: NodeKind, name: &str) {
        self.0.live().building.insert(
            name.to_string(),
            Building {
                stage,
                started: Instant::now(),
                tail: VecDeque::new(),
                partial: String::new(),
            },
        );
    }

    fn output(&self, name: &str, chunk: &[u8]) {
        let mut live = self.0.live();
        let Some(b) = live.building.get_mut(name) else {
            return;
        };
        b.partial.push_str(&String::from_utf8_lossy(chunk));
        while let Some(at) = b.partial.find('\n') {
            let line: String = b.partial.drain(..=at).collect();
            b.tail
                .push_back(line.trim_end().chars().take(400).collect());
            if b.tail.len() > TAIL_LINES {
                b.tail.pop_front();
            }
        }
        if b.partial.len() > 4096 {
            b.partial.clear();
        }
    }
}

/// Opens an engine for a request: its run, and what cancels it.
fn open_engine(
    shared: &Arc<Shared>,
    row: &RequestRow,
) -> std::result::Result<(Engine, Repository), String> {
    let mut config = shared.reload_config().map_err(|e| e.to_string())?;
    // A pocket takes from the remote cache only what the writers its
    // access list trusts recorded.
    config.remote.trusted_writers = Some(
        config
            .pockets
            .get(&row.pocket)
            .map(|p| p.remote_writers.clone())
            .unwrap_or_default(),
    );
    let repo = Repository::from_config(config.clone()).map_err(|e| e.to_string())?;
    let engine = Engine::open(
        config,
        shared.opts.store.clone(),
        &format!(
            "comb serve: request {} ({} {} for {})",
            row.id,
            row.kind,
            row.packages.join(" "),
            row.pocket
        ),
        Box::new(LiveObserver(shared.clone())),
    )
    .map_err(|e| format!("opening the store: {e}"))?;
    shared.live().request = Some((row.id, engine.cancel().clone()));
    if shared.stopping.load(Ordering::SeqCst) {
        engine.cancel().cancel();
    }
    let _ = shared.db().set_run(row.id, engine.run_id().0);
    Ok((engine, repo))
}

/// Builds a submission's packages and publishes them in its pocket.
fn submit(
    shared: &Arc<Shared>,
    row: &RequestRow,
) -> std::result::Result<BTreeMap<String, String>, String> {
    let (engine, repo) = open_engine(shared, row)?;
    let request = BuildRequest {
        packages: row.packages.clone(),
        jobs: shared.opts.jobs,
        keep_going: false,
    };
    let built = comb_engine::load_snapshot(&engine)
        .and_then(|p| comb_engine::build(&engine, &p, &repo, &request));
    let results = match built {
        Ok(r) => r,
        Err(e) => {
            let _ = engine.finish(false);
            return Err(e.to_string());
        }
    };
    let mut problems = Vec::new();
    let mut debs_of = BTreeMap::new();
    for r in &results {
        match &r.state {
            JobState::Done(b) if row.packages.contains(&r.name) => match b.manifest(&engine) {
                Ok(m) => {
                    debs_of.insert(r.name.clone(), m.debs.clone());
                }
                Err(e) => problems.push(format!("{}: {e}", r.name)),
            },
            JobState::Done(_) => {}
            JobState::Failed(why) => problems.push(format!("{} failed: {why}", r.name)),
            JobState::Skipped { because } => {
                problems.push(format!("{} skipped: {because}", r.name))
            }
        }
    }
    if !problems.is_empty() || engine.cancel().is_cancelled() {
        let _ = engine.finish(false);
        if engine.cancel().is_cancelled() && problems.is_empty() {
            problems.push("cancelled".into());
        }
        return Err(problems.join("; "));
    }
    let config = shared.config();
    let result = (|| {
        let pocket = pocket_of(&config, &row.pocket).map_err(|Refused(_, why)| why)?;
        let mut new = Vec::new();
        for (name, debs) in &debs_of {
            let version = debs
                .first()
                .map(|d| d.version.clone())
                .ok_or_else(|| format!("{name} made no .deb"))?;
            // A daemon that died after publishing but before ending the
            // request runs it again: what it published then is no older
            // version to refuse.
            let republished = shared
                .db()
                .published_one(&pocket.name, name)
                .map_err(|e| e.to_string())?
                .is_some_and(|p| p.request == row.id && p.version == version);
            if !republished {
                check_version(&shared.db(), pocket, name, &version)
                    .map_err(|Refused(_, why)| why)?;
            }
            new.push(Published {
                pocket: row.pocket.clone(),
                package: name.clone(),
                version,
                debs: debs
                    .iter()
                    .map(|d| PocketDeb {
                        name: d.name.clone(),
                        version: d.version.clone(),
                        architecture: d.architecture.clone(),
                        filename: d.filename.clone(),
                        sha256: d.sha256.clone(),
                        size: d.size,
                    })
                    .collect(),
                request: row.id,
                at: db::now(),
            });
        }
        let store = engine.store();
        publish_into(shared, pocket, &new, &|d: &PocketDeb| {
            Hash::<Sha256>::from_hex(&d.sha256)
                .ok()
                .and_then(|hash| store.blob_path(&hash.digest(d.size)))
        })?;
        Ok(announce(shared, row, "published", &new, json!({})))
    })();
    let _ = engine.finish(result.is_ok());
    result
}

/// Writes `pocket` with `new` in place of what it had of those packages,
/// then records it.
fn publish_into(
    shared: &Shared,
    pocket: &PocketConfig,
    new: &[Published],
    source: &dyn Fn(&PocketDeb) -> Option<PathBuf>,
) -> std::result::Result<(), String> {
    let mut all: BTreeMap<String, Vec<PocketDeb>> = shared
        .db()
        .published(&pocket.name)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|p| (p.package, p.debs))
        .collect();
    for p in new {
        all.insert(p.package.clone(), p.debs.clone());
    }
    let debs: Vec<PocketDeb> = all.into_values().flatten().collect();
    let signer = pocket.sign_with.as_deref().map(|key| publish::Signer {
        key: key.to_string(),
        gnupghome: None,
    });
    publish::write_pocket(&pocket.publish, signer.as_ref(), &debs, source)
        .map_err(|e| e.to_string())?;
    shared
        .db
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .set_published(new)
        .map_err(|e| e.to_string())
}

/// Copies published packages from one pocket into another, unbuilt, when
/// the bytes in the first are the recorded output of the package's build.
fn promote(
    shared: &Arc<Shared>,
    row: &RequestRow,
) -> std::result::Result<BTreeMap<String, String>, String> {
    let from_name = row.from_pocket.clone().unwrap_or_default();
    let (engine, _) = open_engine(shared, row)?;
    let config = shared.config();
    let result = (|| {
        let from = pocket_of(&config, &from_name).map_err(|Refused(_, why)| why)?;
        let to = pocket_of(&config, &row.pocket).map_err(|Refused(_, why)| why)?;
        let mut new = Vec::new();
        for name in &row.packages {
            let published = shared
                .db()
                .published_one(&from.name, name)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{name} is not published in pocket {}", from.name))?;
            check_version(&shared.db(), to, name, &published.version)
                .map_err(|Refused(_, why)| why)?;
            for deb in &published.debs {
                publish::check_deb(&from.publish, deb).map_err(|e| format!("refused: {e}"))?;
            }
            // The bytes must be what a build comb records made: a pocket's
            // files are copied, never trusted.
            let mut promoted: Vec<&str> =
                published.debs.iter().map(|d| d.sha256.as_str()).collect();
            promoted.sort();
            let recorded =
                comb_engine::recorded_builds(&engine, name).map_err(|e| e.to_string())?;
            let matches = recorded.iter().any(|m| {
                let mut made: Vec<&str> = m.debs.iter().map(|d| d.sha256.as_str()).collect();
                made.sort();
                made == promoted
            });
            if !matches {
                return Err(format!(
                    "refused: {name} {} in pocket {} is not the recorded output of any build of {name} \
                     the store still records ({} recorded; the pocket has sha256 {}): submit it to {} instead",
                    published.version,
                    from.name,
                    recorded.len(),
                    short_list(&promoted),
                    to.name
                ));
            }
            new.push(Published {
                pocket: to.name.clone(),
                request: row.id,
                at: db::now(),
                ..published
            });
        }
        let from_dir = from.publish.clone();
        publish_into(shared, to, &new, &move |d: &PocketDeb| {
            Some(from_dir.join(publish::pool_path(d)))
        })?;
        Ok(announce(
            shared,
            row,
            "promoted",
            &new,
            json!({"from": from.name, "to": to.name}),
        ))
    })();
    let _ = engine.finish(result.is_ok());
    result
}

/// Audits and announces (to the hooks) each package `new` put into a
/// pocket; returns package → version for the request's record.
fn announce(
    shared: &Shared,
    row: &RequestRow,
    event: &str,
    new: &[Published],
    extra: Value,
) -> BTreeMap<String, String> {
    for p in new {
        let mut detail =
            json!({"pocket": p.pocket, "package": p.package, "version": p.version, "debs": p.debs});
        if let (Some(d), Value::Object(extra)) = (detail.as_object_mut(), extra.clone()) {
            d.extend(extra);
        }
        shared.audit("comb-serve", None, event, Some(row.id), detail);
        shared.event(
            event,
            row,
            json!({"package": p.package, "version": p.version}),
        );
    }
    new.iter()
        .map(|p| (p.package.clone(), p.version.clone()))
        .collect()
}

fn short_list(digests: &[&str]) -> String {
    digests
        .iter()
        .map(|d| d.chars().take(12).collect::<String>())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs hooks, one event at a time, from the bounded queue. Each event
/// carries how many were dropped before it (`dropped`) and the audit
/// chain's length and head (`audit_length`, `audit_head`: what
/// `comb audit verify --expect N:HASH` checks), as of just before its
/// hooks ran.
fn run_hook_thread(shared: &Shared) {
    loop {
        let (event, mut payload, dropped) = shared.hooks.pop();
        if dropped > 0 {
            eprintln!(
                "comb serve: the hook queue was full ({} events waiting): {dropped} hook events \
                 were dropped",
                shared.hooks.capacity()
            );
            shared.audit(
                "comb-serve",
                None,
                "hooks-dropped",
                None,
                json!({"dropped": dropped, "queue": shared.hooks.capacity()}),
            );
        }
        let head = crate::audit::head(shared.db().conn()).ok().flatten();
        if let Some(p) = payload.as_object_mut() {
            p.insert("dropped".into(), json!(dropped));
            p.insert("audit_length".into(), json!(head.as_ref().map(|h| h.0)));
            p.insert("audit_head".into(), json!(head.as_ref().map(|h| &h.1)));
        }
        let hooks = shared.config().hooks;
        for outcome in crate::hooks::run_hooks(&hooks, &event, &payload) {
            if !outcome.ok {
                eprintln!(
                    "comb serve: hook {} on {event}: {}{}",
                    outcome.hook.display(),
                    outcome.status,
                    if outcome.stderr_tail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", outcome.stderr_tail.trim())
                    }
                );
            }
            shared.audit(
                "comb-serve",
                None,
                "hook",
                payload["request"].as_i64(),
                json!({"hook": outcome.hook, "event": event, "ok": outcome.ok, "status": outcome.status, "duration_ms": outcome.duration_ms}),
            );
        }
    }
}

/// Once a second: records the bursts of refusals and reads that ended
/// (one entry each, with counts, and one `refused` hook event when there
/// were refusals), and forgets idle rate buckets.
fn run_housekeeping(shared: &Shared) {
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = Instant::now();
        shared.limiter.prune(now);
        for (uid, burst) in shared.bursts.ended(now) {
            let user = user_name(uid);
            let refusals: u64 = burst
                .by
                .iter()
                .filter(|(what, _)| !what.starts_with("read:"))
                .map(|(_, n)| n)
                .sum();
            let by: Vec<String> = burst.by.iter().map(|(k, n)| format!("{n} {k}")).collect();
            eprintln!(
                "comb serve: {user} (uid {uid}): {} more requests in a burst: {}",
                burst.count,
                by.join(", ")
            );
            shared.audit(
                &user,
                Some(uid),
                "coalesced",
                None,
                json!({"count": burst.count, "by": burst.by, "from": burst.from, "to": burst.to}),
            );
            if refusals > 0 {
                shared.hook(
                    "refused",
                    json!({"event": "refused", "user": user, "uid": uid, "coalesced": refusals,
                           "by": burst.by, "from": burst.from, "to": burst.to, "at": db::now()}),
                );
            }
        }
    }
}

impl crate::http::StatusSource for Shared {
    fn status(&self) -> Value {
        let config = self.config();
        let db = self.db();
        let active = db.active().unwrap_or_default();
        let live = self.live();
        let running_id = live.request.as_ref().map(|(id, _)| *id);
        let building: Vec<Value> = live
            .building
            .iter()
            .map(|(name, b)| {
                json!({"package": name, "stage": b.stage.as_str(), "elapsed_ms": b.started.elapsed().as_millis() as u64, "log_tail": b.tail})
            })
            .collect();
        drop(live);
        let mut queue = Vec::new();
        let mut running = Vec::new();
        for r in active {
            let mut v = json!(r);
            if r.state == state::RUNNING {
                if Some(r.id) == running_id {
                    v["building"] = json!(building);
                }
                running.push(v);
            } else {
                queue.push(v);
            }
        }
        let mut recent = serde_json::Map::new();
        let mut pockets = serde_json::Map::new();
        for (name, p) in &config.pockets {
            recent.insert(name.clone(), json!(db.recent(name, 20).unwrap_or_default()));
            let packages: BTreeMap<String, String> = db
                .published(name)
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.package, p.version))
                .collect();
            pockets.insert(
                name.clone(),
                json!({"publish": p.publish, "signed": p.sign_with.is_some(), "frozen": p.frozen, "packages": packages}),
            );
        }
        json!({
            "daemon": {"started_at": self.started_at, "socket": self.opts.socket, "repo": self.opts.repo, "version": env!("CARGO_PKG_VERSION")},
            "queue": queue,
            "running": running,
            "recent": recent,
            "pockets": pockets,
        })
    }

    fn request(&self, id: i64) -> Option<Value> {
        self.db().request(id).ok().flatten().map(|r| json!(r))
    }

    fn report(&self, run: Option<i64>) -> std::result::Result<Value, String> {
        let report = self.run_report(run)?;
        serde_json::to_value(&report).map_err(|e| e.to_string())
    }

    fn report_page(&self, run: i64) -> std::result::Result<String, String> {
        let page = self
            .opts
            .report_page
            .ok_or("this daemon renders no report pages")?;
        Ok(page(&self.run_report(Some(run))?))
    }
}

impl Shared {
    fn run_report(&self, run: Option<i64>) -> std::result::Result<comb_engine::Report, String> {
        let store = comb_engine::Store::open(&self.opts.store).map_err(|e| e.to_string())?;
        let index = store.open_index().map_err(|e| e.to_string())?;
        let runs = match run {
            Some(id) => vec![index
                .run(comb_engine::RunId(id))
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("there is no run {id}"))?],
            None => index.runs(1).map_err(|e| e.to_string())?,
        };
        if runs.is_empty() {
            return Err("no run is recorded yet".into());
        }
        comb_engine::report(&store, &index, &runs).map_err(|e| e.to_string())
    }
}
