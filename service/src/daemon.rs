//! `comb serve`: the socket, the checks made before anything is queued,
//! the worker that builds requests in order through the engine, and
//! publication into pockets.

use crate::access::Peer;
use crate::db::{self, state, Db, NewRequest, Published, RequestRow};
use crate::error::{Error, Result};
use crate::protocol::{read_request, Refusal, Request};
use crate::publish::{self, PocketDeb};
use comb_engine::build::{self, BuildRequest};
use comb_engine::cache::NodeKind;
use comb_engine::recipes::{PocketConfig, RepoConfig, Repository};
use comb_engine::{snapshot, Engine, JobState, NodeEvent, Observer};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
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
    /// Renders a run's report as a page (the binary's HTML report).
    pub report_page: Option<fn(&comb_engine::report::Report) -> String>,
}

/// Seconds a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
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
    request: Option<(i64, comb_engine::sandbox::CancelToken)>,
    building: BTreeMap<String, Building>,
}

pub(crate) struct Shared {
    opts: Options,
    db: Mutex<Db>,
    config: Mutex<RepoConfig>,
    live: Mutex<Live>,
    work: (Mutex<bool>, Condvar),
    hooks: Mutex<mpsc::Sender<(String, Value)>>,
    connections: Mutex<HashMap<u32, usize>>,
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
        if let Err(e) = crate::audit::append(db.conn(), &entry) {
            eprintln!("comb serve: could not append to the audit log: {e}");
        }
    }

    /// Re-reads `comb.toml`: access lists and pockets take effect at once.
    fn reload_config(&self) -> Result<RepoConfig> {
        let config = RepoConfig::load(&self.opts.repo.join(comb_engine::recipes::CONFIG_FILE))
            .map_err(|e| Error::Other(e.to_string()))?;
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
        let _ = self
            .hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send((event.to_string(), payload));
    }

    fn wake_worker(&self) {
        let (lock, cvar) = &self.work;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn serve(opts: Options) -> Result<()> {
    std::fs::create_dir_all(&opts.store)
        .map_err(|e| Error::io(format!("creating {}", opts.store.display()), e))?;
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
                Error::Other(format!(
            "another comb serve owns the store {}: stop it first, or give this one another --store",
            opts.store.display()
        ))
            },
        )?;
    let config = RepoConfig::load(&opts.repo.join(comb_engine::recipes::CONFIG_FILE))
        .map_err(|e| Error::Other(e.to_string()))?;
    let db = Db::open(&opts.store.join("service.sqlite"))?;
    let requeued = db.requeue_running()?;
    let listener = bind_socket(&opts.socket, opts.socket_group.as_deref())?;
    let (hook_tx, hook_rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        opts,
        db: Mutex::new(db),
        config: Mutex::new(config),
        live: Mutex::new(Live::default()),
        work: (Mutex::new(true), Condvar::new()),
        hooks: Mutex::new(hook_tx),
        connections: Mutex::new(HashMap::new()),
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
        json!({"pid": std::process::id(), "socket": shared.opts.socket, "requeued": requeued}),
    );
    eprintln!(
        "comb serve: listening on {} (store {}, repository {})",
        shared.opts.socket.display(),
        shared.opts.store.display(),
        shared.opts.repo.display()
    );
    watch_signals(shared.clone());
    {
        let shared = shared.clone();
        std::thread::spawn(move || run_hook_thread(&shared, hook_rx));
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
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let peer = match Peer::of(&stream) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("comb serve: a client whose credentials cannot be read: {e}");
                continue;
            }
        };
        {
            let mut open = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
            let n = open.entry(peer.uid).or_default();
            if *n >= shared.opts.max_connections {
                drop(open);
                refuse_connection(&shared, stream, &peer);
                continue;
            }
            *n += 1;
        }
        let shared = shared.clone();
        std::thread::spawn(move || {
            let uid = peer.uid;
            handle_client(&shared, stream, peer);
            let mut open = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = open.get_mut(&uid) {
                *n = n.saturating_sub(1);
            }
        });
    }
    let _ = worker.join();
    let _ = std::fs::remove_file(&shared.opts.socket);
    Ok(())
}

fn refuse_connection(shared: &Shared, mut stream: UnixStream, peer: &Peer) {
    let message = format!(
        "{} has {} connections open already: close some first",
        peer.user, shared.opts.max_connections
    );
    eprintln!(
        "comb serve: refused a connection of {} (pid {}): {message}",
        peer.user, peer.pid
    );
    let _ = writeln!(
        stream,
        "{}",
        json!({"ok": false, "done": true, "refusal": Refusal::TooManyInFlight, "error": message})
    );
}

/// The socket, bound with no permission for anyone but the daemon's user
/// (and `group`, when given). A socket left by a daemon that died is
/// replaced; one a live daemon answers on is not.
fn bind_socket(path: &Path, group: Option<&str>) -> Result<UnixListener> {
    if let Some(parent) = path.parent() {
        if !parent.exists() {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::io(
                    format!(
                        "creating {} (give --socket a path in a directory you may write)",
                        parent.display()
                    ),
                    e,
                )
            })?;
            let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755));
        }
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(Error::Other(format!(
                "a comb serve already listens on {}: stop it, or give this one another --socket",
                path.display()
            )));
        }
        std::fs::remove_file(path)
            .map_err(|e| Error::io(format!("removing the stale socket {}", path.display()), e))?;
    }
    // The socket is made with the umask's mode: none for others from the
    // start, so there is no moment a stranger could connect.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(|e| Error::io(format!("binding {}", path.display()), e))?;
    if let Some(group) = group {
        let gid = nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .ok_or_else(|| Error::Other(format!("there is no group {group:?} (--group)")))?
            .gid;
        nix::unistd::chown(path, None, Some(gid)).map_err(|e| {
            Error::io(
                format!("giving {} to group {group}", path.display()),
                e.into(),
            )
        })?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| Error::io(format!("setting the mode of {}", path.display()), e))?;
    }
    Ok(listener)
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
            let _ = std::fs::remove_file(&shared.opts.socket);
            std::process::exit(0);
        }
    });
}

fn send(stream: &mut UnixStream, value: &Value) -> bool {
    let mut line = value.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes()).is_ok()
}

fn handle_client(shared: &Shared, mut stream: UnixStream, peer: Peer) {
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let request = {
        let Ok(read_half) = stream.try_clone() else {
            return;
        };
        read_request(&mut BufReader::new(read_half))
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "comb serve: {} (uid {}, pid {}) sent a bad request: {e}; disconnected",
                peer.user, peer.uid, peer.pid
            );
            shared.audit(
                &peer.user,
                Some(peer.uid),
                "disconnected",
                None,
                json!({"pid": peer.pid, "reason": e}),
            );
            send(
                &mut stream,
                &json!({"ok": false, "done": true, "refusal": Refusal::Malformed, "error": e}),
            );
            return;
        }
    };
    shared.audit(
        &peer.user,
        Some(peer.uid),
        "request",
        None,
        json!({"pid": peer.pid, "request": request}),
    );
    let reply = match request {
        Request::Submit {
            pocket,
            packages,
            wait,
        } => {
            let id = queue_request(shared, &peer, "submit", &pocket, None, &packages);
            return answer_queued(shared, &mut stream, id, wait);
        }
        Request::Promote { from, to, packages } => {
            let id = queue_request(shared, &peer, "promote", &to, Some(&from), &packages);
            return answer_queued(shared, &mut stream, id, true);
        }
        Request::Queue {} => match shared.db().active() {
            Ok(rows) => json!({"ok": true, "done": true, "queue": rows}),
            Err(e) => json!({"ok": false, "done": true, "error": e.to_string()}),
        },
        Request::Status { id } => match shared.db().request(id) {
            Ok(Some(row)) => json!({"ok": true, "done": true, "request": row}),
            Ok(None) => refusal_reply(Refusal::NotFound, format!("there is no request {id}")),
            Err(e) => json!({"ok": false, "done": true, "error": e.to_string()}),
        },
        Request::Cancel { id } => cancel(shared, &peer, id),
    };
    send(&mut stream, &reply);
}

fn refusal_reply(refusal: Refusal, message: String) -> Value {
    json!({"ok": false, "done": true, "refusal": refusal, "error": message})
}

/// Checks a submission or promotion and records it: queued, or refused
/// with why. Returns the request's id, or the reply when even recording
/// it failed.
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
    let (st, reason) = match &verdict {
        Ok(()) => (state::QUEUED, None),
        Err(Refused(_, why)) => (state::REFUSED, Some(why.as_str())),
    };
    let id = shared
        .db()
        .insert_request(&NewRequest {
            kind,
            pocket,
            from_pocket: from,
            packages,
            uid: peer.uid,
            user: &peer.user,
            state: st,
            reason,
        })
        .map_err(|e| json!({"ok": false, "done": true, "error": e.to_string()}))?;
    let row = shared.db().request(id).ok().flatten();
    match verdict {
        Ok(()) => {
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
                json!({"kind": kind, "pocket": pocket, "from": from, "packages": packages}),
            );
            if let Some(row) = &row {
                shared.event("queued", row, json!({}));
            }
            shared.wake_worker();
            Ok(id)
        }
        Err(Refused(refusal, why)) => {
            eprintln!(
                "comb serve: request {id}: {kind} for {pocket} by {}: refused: {why}",
                peer.user
            );
            shared.audit(&peer.user, Some(peer.uid), "refused", Some(id), json!({"refusal": refusal, "reason": why, "kind": kind, "pocket": pocket, "from": from, "packages": packages}));
            if let Some(row) = &row {
                shared.event("refused", row, json!({"refusal": refusal, "reason": why}));
            }
            let mut reply = refusal_reply(refusal, why);
            reply["request"] = json!(row);
            Err(reply)
        }
    }
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
    let greater = comb_engine::distro::version::compare_versions(version, &published.version)
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

/// Answers a queued (or refused) request; with `wait`, follows it to its
/// end, a line per change of state.
fn answer_queued(
    shared: &Shared,
    stream: &mut UnixStream,
    queued: std::result::Result<i64, Value>,
    wait: bool,
) {
    let id = match queued {
        Ok(id) => id,
        Err(reply) => {
            send(stream, &reply);
            return;
        }
    };
    let mut last = shared.db().request(id).ok().flatten();
    // A request may have ended before this first answer (a quick
    // promotion): then it is the last.
    let ended = last.as_ref().is_some_and(|r| state::is_final(&r.state));
    if !send(stream, &answer(last.as_ref(), !wait || ended)) || !wait || ended {
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
        if !send(stream, &answer(Some(&row), done)) || done {
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

fn cancel(shared: &Shared, peer: &Peer, id: i64) -> Value {
    let row = match shared.db().request(id) {
        Ok(Some(r)) => r,
        Ok(None) => return refusal_reply(Refusal::NotFound, format!("there is no request {id}")),
        Err(e) => return json!({"ok": false, "done": true, "error": e.to_string()}),
    };
    if row.uid != peer.uid && peer.uid != 0 {
        return refusal_reply(
            Refusal::NotYours,
            format!(
                "request {id} is {}'s: only they or root may cancel it",
                row.user
            ),
        );
    }
    if state::is_final(&row.state) {
        return refusal_reply(
            Refusal::NotFound,
            format!("request {id} has ended already ({})", row.state),
        );
    }
    let reason = format!("cancelled by {}", peer.user);
    match shared
        .db()
        .finish(id, state::CANCELLED, Some(&reason), &BTreeMap::new())
    {
        Ok(true) => {}
        Ok(false) => {
            return refusal_reply(Refusal::NotFound, format!("request {id} has just ended"))
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
        json!({"was": row.state}),
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
    let config = shared.reload_config().map_err(|e| e.to_string())?;
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
    shared.live().request = Some((row.id, engine.cancel.clone()));
    if shared.stopping.load(Ordering::SeqCst) {
        engine.cancel.cancel();
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
    let built = snapshot::load(&engine).and_then(|p| build::build(&engine, &p, &repo, &request));
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
    if !problems.is_empty() || engine.cancel.is_cancelled() {
        let _ = engine.finish(false);
        if engine.cancel.is_cancelled() && problems.is_empty() {
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
        let store = &engine.store;
        publish_into(shared, pocket, &new, &|d: &PocketDeb| {
            format!("sha256:{}:{}", d.sha256, d.size)
                .parse()
                .ok()
                .and_then(|digest| store.blob_path(&digest))
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
            let recorded = build::recorded_builds(&engine, name).map_err(|e| e.to_string())?;
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

fn run_hook_thread(shared: &Shared, events: mpsc::Receiver<(String, Value)>) {
    for (event, payload) in events {
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
    fn run_report(
        &self,
        run: Option<i64>,
    ) -> std::result::Result<comb_engine::report::Report, String> {
        let store = comb_engine::cache::Store::open(&self.opts.store).map_err(|e| e.to_string())?;
        let index = store.open_index().map_err(|e| e.to_string())?;
        let runs = match run {
            Some(id) => vec![index
                .run(comb_engine::cache::RunId(id))
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("there is no run {id}"))?],
            None => index.runs(1).map_err(|e| e.to_string())?,
        };
        if runs.is_empty() {
            return Err("no run is recorded yet".into());
        }
        comb_engine::report::report(&store, &index, &runs).map_err(|e| e.to_string())
    }
}
