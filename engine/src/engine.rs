//! The engine's context (repository, store, index, sandbox, run) and the
//! one way a node is produced: look its key up, else build it under the
//! node's lock, record it, and report what happened.

use crate::error::{Error, Result, WouldBuild};
use crate::inputs::StageInputs;
use comb_cache::{
    unix_now, Attempt, Event, EventStatus, Index, NodeKind, NodeOutput, NodeRecord, NodeRef, RunId,
    RunStatus, Store,
};
use comb_recipes::RepoConfig;
use comb_sandbox::SandboxConfig;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// What happened to one node, as `comb env build --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeEvent {
    pub stage: NodeKind,
    pub name: String,
    pub key: String,
    pub status: EventStatus,
    pub duration_ms: u64,
    /// Why it was built (or failed); `None` for a hit.
    pub reason: Option<String>,
    /// The remote worker that built it; `None` when this machine did.
    pub worker: Option<String>,
}

/// Receives the engine's progress. Every method has a default that
/// ignores it.
pub trait Observer: Sync {
    /// A node was a hit, was built, or failed.
    fn node(&self, _event: &NodeEvent) {}
    /// A stage starts something that takes a while.
    fn started(&self, _stage: NodeKind, _name: &str) {}
    /// Downloads: files done out of total, bytes so far.
    fn fetch_progress(&self, _done: usize, _total: usize, _bytes: u64) {}
    /// A chunk of the output of the running node `name` (a build or an
    /// installation), as it comes.
    fn output(&self, _name: &str, _chunk: &[u8]) {}
    /// comb waits for `what` before it can go on.
    fn waiting(&self, _what: &str) {}
    /// Something about the run a person should know (one line).
    fn note(&self, _text: &str) {}
    /// What a build run will do: each package with its last recorded
    /// build time (0 if never built), and how many build at once.
    fn plan(&self, _packages: &[(String, u64)], _jobs: usize) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// What building a node made: its output, the output's size, and what
/// else in the store it names (a build's packages and log).
pub(crate) struct Made {
    pub output: NodeOutput,
    pub size: u64,
    pub refs: Vec<NodeRef>,
    /// The remote worker that made it, if one did.
    pub worker: Option<String>,
    /// Not made: fetched from where this says (the remote cache).
    pub fetched: Option<String>,
}

impl From<(NodeOutput, u64)> for Made {
    fn from((output, size): (NodeOutput, u64)) -> Made {
        Made {
            output,
            size,
            refs: Vec::new(),
            worker: None,
            fetched: None,
        }
    }
}

/// Where the store is, in order: `--store`, `COMB_STORE`, the default
/// (`$XDG_CACHE_HOME/comb`, or `/var/cache/comb` for root).
pub fn store_location(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("COMB_STORE").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    Ok(Store::default_location()?)
}

/// The store's record of whose ids own its layers' files
/// (`IdSource::layer_owners`).
const LAYER_OWNERS: &str = "layer-owners";

/// Records in a new store whose ids own its layers, and refuses a store
/// whose layers belong to other ids: root's layers are owned by the
/// packages' own ids, an ordinary user's by that user's subordinate range,
/// and a sandbox shows R the ids of its own comb only.
fn check_layer_owners(store: &Path, ours: &str) -> Result<()> {
    let path = store.join(LAYER_OWNERS);
    match std::fs::read_to_string(&path) {
        Ok(recorded) if recorded.trim() == ours => Ok(()),
        Ok(recorded) => Err(Error::Environment(format!(
            "the store {} holds layers owned by {} ids, but this comb makes them owned by {ours} \
             ids (the store of root and that of an ordinary user, or of a user whose subordinate \
             range changed, cannot be shared): use another store (--store DIR), or remove this one",
            store.display(),
            recorded.trim()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = store.join(format!(".{LAYER_OWNERS}.{}", std::process::id()));
            std::fs::write(&tmp, format!("{ours}\n"))
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|source| Error::Io {
                    context: format!("writing {}", path.display()),
                    source,
                })
        }
        Err(source) => Err(Error::Io {
            context: format!("reading {}", path.display()),
            source,
        }),
    }
}

/// In an ordinary user's namespace only the user's primary group is
/// mapped: a store directory of another group (a shared group's, say)
/// grants the namespace's capabilities nothing, and R's files could not be
/// made in it. Said at once rather than as a failed unpacking later.
fn check_store_groups(store: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if comb_sandbox::caller::entered().is_none() {
        return Ok(());
    }
    for dir in [
        Path::new(""),
        Path::new("blobs"),
        Path::new("tmp"),
        Path::new("trees"),
    ] {
        let path = store.join(dir);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.gid() == comb_sandbox::caller::OVERFLOW_ID {
            return Err(Error::Environment(format!(
                "{} belongs to a group other than your primary group, which comb's user namespace \
                 does not map: give the store your primary group (chgrp -R \"$(id -g)\" {})",
                path.display(),
                store.display()
            )));
        }
    }
    Ok(())
}

/// One invocation of comb on one repository and store.
pub struct Engine {
    pub(crate) repo: RepoConfig,
    pub(crate) store: Store,
    index: Mutex<Index>,
    pub(crate) sandbox: SandboxConfig,
    run: RunId,
    pub(crate) observer: Box<dyn Observer + Send>,
    /// Parallel downloads.
    pub(crate) jobs: usize,
    /// Cancels every sandbox this engine starts, and stops the scheduler.
    pub(crate) cancel: comb_sandbox::CancelToken,
    /// Hits not yet written to the index.
    pending_hits: Mutex<Vec<Event>>,
    /// When the run began.
    started: Instant,
    /// Keeps garbage collection away while this engine runs.
    _store_use: comb_cache::StoreLock,
    /// The file digests remembered for the repository's files, read once.
    known_digests: std::sync::OnceLock<KnownDigests>,
    /// Nodes found with their output missing in this run (removed from
    /// the index), with their descriptions: what their rebuild is
    /// compared with.
    gone: Mutex<std::collections::HashMap<String, String>>,
    /// The nodes whose failure this run has recorded.
    failed: Mutex<std::collections::HashSet<(NodeKind, String)>>,
    /// A plan (`--dry-run`): nothing is recorded and nothing built; a
    /// resolve that misses is computed (in memory), any other node that
    /// misses is [`Error::WouldBuild`] and noted in `would_build`.
    planning: bool,
    would_build: Mutex<Vec<WouldBuild>>,
    /// A plan's small outputs (resolutions), kept in memory.
    planned_blobs: Mutex<std::collections::HashMap<comb_cache::Digest, Vec<u8>>>,
    /// `[remote]`: the shared cache builds are fetched from (and stored
    /// in, when this machine uploads), connected when a build first asks.
    remote: std::sync::OnceLock<Option<crate::remote::RemoteCache>>,
}

/// File digests by path, with the stat each was computed for.
pub(crate) type KnownDigests = std::collections::HashMap<Vec<u8>, (comb_cache::FileStat, String)>;

/// How many hits are written to the index at once.
const HIT_BATCH: usize = 4096;

impl Engine {
    /// Opens the store, begins a run recorded under `command_line`.
    pub fn open(
        repo: RepoConfig,
        store: PathBuf,
        command_line: &str,
        observer: Box<dyn Observer + Send>,
    ) -> Result<Engine> {
        Engine::open_as(repo, store, Some(command_line), observer)
    }

    /// Opens the store to plan (`--dry-run`): no run is recorded, no node
    /// built; what is missing is reported instead (see [`WouldBuild`]).
    pub fn open_planning(
        repo: RepoConfig,
        store: PathBuf,
        observer: Box<dyn Observer + Send>,
    ) -> Result<Engine> {
        Engine::open_as(repo, store, None, observer)
    }

    fn open_as(
        repo: RepoConfig,
        store: PathBuf,
        command_line: Option<&str>,
        observer: Box<dyn Observer + Send>,
    ) -> Result<Engine> {
        let store = Store::open(&store)?;
        // Held for the whole run: `comb gc` waits for it, and it for gc.
        let store_use = match store.try_use_lock()? {
            Some(lock) => lock,
            None => {
                observer.waiting("a running comb gc");
                store.use_lock()?
            }
        };
        let index = store.open_index()?;
        let run = match command_line {
            Some(command_line) => {
                index.begin_run(command_line, &repo.root.display().to_string())?
            }
            None => RunId(0),
        };
        let sandbox = SandboxConfig::detect()?;
        check_layer_owners(store.root(), &sandbox.ids.layer_owners())?;
        check_store_groups(store.root())?;
        Ok(Engine {
            repo,
            store,
            index: Mutex::new(index),
            sandbox,
            run,
            observer,
            jobs: 8,
            cancel: comb_sandbox::CancelToken::default(),
            pending_hits: Mutex::new(Vec::new()),
            started: Instant::now(),
            _store_use: store_use,
            failed: Mutex::new(Default::default()),
            gone: Mutex::new(Default::default()),
            known_digests: Default::default(),
            planning: command_line.is_none(),
            would_build: Mutex::new(Vec::new()),
            planned_blobs: Mutex::new(Default::default()),
            remote: Default::default(),
        })
    }

    /// Stores a small output (a resolution): in memory when planning.
    pub(crate) fn put_small_blob(&self, bytes: &[u8]) -> Result<comb_cache::Digest> {
        if self.planning {
            let digest = comb_cache::Digest::of_bytes(comb_cache::Algorithm::Blake3, bytes);
            self.planned_blobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(digest, bytes.to_vec());
            return Ok(digest);
        }
        Ok(self.store.put_blob_reader(&mut &bytes[..])?)
    }

    /// A small output [`Engine::put_small_blob`] stored (or the store has).
    pub(crate) fn read_small_blob(&self, digest: &comb_cache::Digest) -> Result<Vec<u8>> {
        if let Some(bytes) = self
            .planned_blobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
        {
            return Ok(bytes.clone());
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut self.store.open_blob(digest)?, &mut bytes)
            .map_err(|e| Error::io(format!("reading the stored blob {digest}"), e))?;
        Ok(bytes)
    }

    /// Whether this engine only plans.
    pub fn planning(&self) -> bool {
        self.planning
    }

    /// The nodes a plan found missing, in the order found.
    pub fn would_build(&self) -> Vec<WouldBuild> {
        self.would_build
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The digests the index remembers for files below the repository
    /// (canonical paths), by path, with the stat each was computed for:
    /// read in one query the first time a source tree is hashed.
    pub(crate) fn known_file_digests(&self) -> Result<&KnownDigests> {
        if let Some(known) = self.known_digests.get() {
            return Ok(known);
        }
        let root =
            std::fs::canonicalize(&self.repo.root).unwrap_or_else(|_| self.repo.root.clone());
        let rows = self
            .index()
            .file_digests_under(root.as_os_str().as_encoded_bytes())?;
        let known = rows
            .into_iter()
            .map(|(path, stat, digest)| (path, (stat, digest)))
            .collect();
        Ok(self.known_digests.get_or_init(|| known))
    }

    /// Writes the buffered hits in one transaction.
    fn flush_hits(&self) -> Result<()> {
        if self.planning {
            return Ok(());
        }
        let hits =
            std::mem::take(&mut *self.pending_hits.lock().unwrap_or_else(|e| e.into_inner()));
        if hits.is_empty() {
            return Ok(());
        }
        self.index()
            .batch(|index| index.record_hits(self.run, &hits))?;
        Ok(())
    }

    /// Records the end of the run.
    pub fn finish(&self, ok: bool) -> Result<()> {
        if self.planning {
            return Ok(());
        }
        self.flush_hits()?;
        let status = match (ok, self.cancel.is_cancelled()) {
            (_, true) => RunStatus::Interrupted,
            (true, false) => RunStatus::Success,
            (false, false) => RunStatus::Failed,
        };
        let duration_ms = self.started.elapsed().as_millis() as u64;
        self.index()
            .finish_run_after(self.run, status, Some(duration_ms))?;
        Ok(())
    }

    /// The limits of a sandboxed step: the sandbox's build defaults (and
    /// `timeout` of wall clock), then the repository's `[limits]`, then a
    /// recipe's `[build.limits]`.
    pub(crate) fn limits(
        &self,
        recipe: Option<&comb_recipes::LimitsConfig>,
        timeout: std::time::Duration,
    ) -> comb_sandbox::Limits {
        let set = match recipe {
            Some(r) => self.repo.limits.overridden_by(r),
            None => self.repo.limits,
        };
        let mut limits = comb_sandbox::Limits::build_defaults();
        limits.wall_timeout = Some(set.timeout.unwrap_or(timeout));
        if let Some(m) = set.memory {
            limits.memory_bytes = Some(m);
        }
        if let Some(p) = set.pids {
            limits.pids = Some(p);
        }
        if let Some(c) = set.cpu_time {
            limits.cpu_time = Some(c);
        }
        if let Some(f) = set.file_size {
            limits.file_size_bytes = Some(f);
        }
        if let Some(d) = set.disk {
            limits.disk_bytes = Some(d);
            limits.upper_size_bytes = d;
        }
        limits
    }

    /// Whether the node `key` is recorded with its output present, without
    /// counting a hit.
    pub(crate) fn has_node(&self, key: &str) -> Result<bool> {
        let record = self.index().node(key)?;
        Ok(record.is_some_and(|r| self.store.has_output(&r.output)))
    }

    pub(crate) fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        // A panic elsewhere cannot leave SQLite half-written: keep going.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node of `inputs`: its record if the key is known and its
    /// output present, else built by `build` (which returns the output,
    /// its size and what else it names) under the node's lock and
    /// recorded, with what it names through its inputs and its output.
    pub(crate) fn node<M: Into<Made>>(
        &self,
        kind: NodeKind,
        name: &str,
        inputs: &impl StageInputs,
        build: impl FnOnce(&str) -> Result<M>,
    ) -> Result<NodeRecord> {
        let text = inputs.describe().finish()?;
        let key = comb_cache::key_of(&text);
        if let Some(hit) = self.hit(kind, name, &key)? {
            return Ok(hit);
        }
        if self.planning {
            return self.plan_node(kind, name, text, &key, build);
        }
        let _lock = self.store.lock_node(&key)?;
        // Another process may have built it while this one waited.
        if let Some(hit) = self.hit(kind, name, &key)? {
            return Ok(hit);
        }
        let previous = self.previous(kind, name, &key)?;
        let reason = crate::inputs::miss_reasons(kind, &key, &text, previous.as_ref())?
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        self.observer.started(kind, name);
        let started = Instant::now();
        let result = build(&key).map(Into::into);
        let duration_ms = started.elapsed().as_millis() as u64;
        let mut event = Event::new(&key, kind, name, EventStatus::Built);
        event.duration_ms = duration_ms;
        event.previous_key = previous.map(|p| p.key);
        match result {
            Ok(Made {
                output,
                size,
                refs,
                worker,
                fetched,
            }) => {
                event.worker = worker;
                let record = NodeRecord::new(kind, name, text, output, size, duration_ms);
                let mut refs = refs;
                refs.extend(inputs.references());
                event.reason = Some(reason.clone());
                if let Some(from) = fetched {
                    event.status = EventStatus::Fetched;
                    event.reason = Some(from);
                }
                self.index().batch(|index| {
                    index.record_node_referencing(&record, &refs)?;
                    index.supersede_attempts(kind, name)?;
                    index.remember_use(kind, name, &record.key)?;
                    index.record_event(self.run, &event)
                })?;
                self.report(&event);
                Ok(record)
            }
            Err(e) => {
                event.status = EventStatus::Failed;
                event.reason = Some(e.to_string());
                if let Error::Stage { stored_log, .. } = &e {
                    event.log = stored_log.clone();
                }
                let attempt = Attempt {
                    kind,
                    name: name.to_string(),
                    key: key.clone(),
                    description: text,
                    failed_at: unix_now(),
                };
                self.index().batch(|index| {
                    index.record_attempt(&attempt)?;
                    index.record_event(self.run, &event)
                })?;
                self.failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert((kind, name.to_string()));
                self.report(&event);
                Err(e)
            }
        }
    }

    /// A node missing from the store, in a plan: a resolve is computed
    /// (it is cheap and what follows depends on it), not recorded; any
    /// other node is [`Error::WouldBuild`], for the reason a build would
    /// give.
    fn plan_node<M: Into<Made>>(
        &self,
        kind: NodeKind,
        name: &str,
        text: String,
        key: &str,
        build: impl FnOnce(&str) -> Result<M>,
    ) -> Result<NodeRecord> {
        if kind == NodeKind::Resolve {
            let Made { output, size, .. } = build(key)?.into();
            return Ok(NodeRecord::new(kind, name, text, output, size, 0));
        }
        let previous = self.previous(kind, name, key)?;
        let reason = crate::inputs::miss_reasons(kind, key, &text, previous.as_ref())?
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        let would = WouldBuild {
            stage: kind.as_str(),
            name: name.to_string(),
            reason,
        };
        self.would_build
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(would.clone());
        Err(Error::WouldBuild(would))
    }

    /// The node that the inputs keyed `shortcut` gave before, as a hit,
    /// if it is still recorded with its output: the caller skips deriving
    /// the node's own key (see [`Index::shortcut`]).
    pub(crate) fn shortcut(
        &self,
        kind: NodeKind,
        name: &str,
        shortcut: &str,
    ) -> Result<Option<(String, NodeOutput)>> {
        let Some((key, output)) = self.index().shortcut(shortcut)? else {
            return Ok(None);
        };
        if !self.store.has_output(&output) {
            // The full lookup that follows finds the node, sees the output
            // gone and says so.
            return Ok(None);
        }
        self.record_hit(Event::new(&key, kind, name, EventStatus::Hit))?;
        Ok(Some((key, output)))
    }

    /// The remote cache (`[remote]`), connected on first use; none when a
    /// plan runs (it builds nothing, so it fetches nothing either).
    pub(crate) fn remote(&self) -> Result<Option<&crate::remote::RemoteCache>> {
        if self.planning {
            return Ok(None);
        }
        if let Some(remote) = self.remote.get() {
            return Ok(remote.as_ref());
        }
        let connected = crate::remote::connect(&self.repo.remote, self.observer.as_ref())?;
        Ok(self.remote.get_or_init(|| connected).as_ref())
    }

    /// Records a node whose output came from elsewhere (the remote
    /// cache), checked: its description (which its key is the hash of),
    /// its output, and why it was not built here.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record_fetched(
        &self,
        kind: NodeKind,
        name: &str,
        description: String,
        output: NodeOutput,
        size: u64,
        refs: Vec<NodeRef>,
        reason: &str,
    ) -> Result<NodeRecord> {
        let record = NodeRecord::new(kind, name, description, output, size, 0);
        let mut event = Event::new(&record.key, kind, name, EventStatus::Fetched);
        event.reason = Some(reason.to_string());
        self.index().batch(|index| {
            index.record_node_referencing(&record, &refs)?;
            index.remember_use(kind, name, &record.key)?;
            index.record_event(self.run, &event)
        })?;
        self.report(&event);
        Ok(record)
    }

    /// Remembers that the inputs keyed `shortcut` give the node `key`.
    pub(crate) fn remember_shortcut(&self, shortcut: &str, key: &str) -> Result<()> {
        if self.planning {
            return Ok(());
        }
        self.index().remember_shortcut(shortcut, key)?;
        Ok(())
    }

    /// Records and reports the failure of a node that failed before it
    /// could run (its inputs could not be read, say), unless its own
    /// failure was recorded already.
    pub(crate) fn record_failure(&self, kind: NodeKind, name: &str, error: &Error) -> Result<()> {
        if self.planning {
            return Ok(());
        }
        let fresh = self
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((kind, name.to_string()));
        if fresh {
            let mut event = Event::new("", kind, name, EventStatus::Failed);
            event.reason = Some(error.to_string());
            self.index().record_event(self.run, &event)?;
            self.report(&event);
        }
        Ok(())
    }

    /// Records the run's package graph (for `comb report`).
    pub(crate) fn record_graph(
        &self,
        graph: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<()> {
        if self.planning {
            return Ok(());
        }
        self.index().set_run_graph(self.run, graph)?;
        Ok(())
    }

    /// Records the edges this run cut out of build-dependency cycles.
    pub(crate) fn record_cuts(&self, cuts: &[comb_recipes::CutEdge]) -> Result<()> {
        if self.planning {
            return Ok(());
        }
        let json = serde_json::to_string(cuts)
            .map_err(|e| Error::Environment(format!("recording the cut edges: {e}")))?;
        self.index().set_run_cuts(self.run, &json)?;
        Ok(())
    }

    /// Records a `comb check` result of this run.
    pub(crate) fn record_check(&self, package: &str, state: &str, details: &str) -> Result<()> {
        self.index()
            .record_check(self.run, package, state, details)?;
        Ok(())
    }

    /// This run's id.
    /// The store this engine builds into.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The repository's `comb.toml`.
    pub fn repo(&self) -> &RepoConfig {
        &self.repo
    }

    /// What cancels this engine's sandboxes and stops its scheduler (a
    /// signal handler's, a build service's).
    pub fn cancel(&self) -> &comb_sandbox::CancelToken {
        &self.cancel
    }

    pub fn run_id(&self) -> RunId {
        self.run
    }

    /// Records and reports a node that was not run.
    pub(crate) fn record_skip(&self, event: &Event) -> Result<()> {
        if self.planning {
            return Ok(());
        }
        self.index().record_event(self.run, event)?;
        self.report(event);
        Ok(())
    }

    fn hit(&self, kind: NodeKind, name: &str, key: &str) -> Result<Option<NodeRecord>> {
        let Some(record) = self.index().node(key)? else {
            return Ok(None);
        };
        self.hit_on(kind, name, record)
    }

    /// `record` as a hit if its output is still in the store.
    fn hit_on(&self, kind: NodeKind, name: &str, record: NodeRecord) -> Result<Option<NodeRecord>> {
        if !self.store.has_output(&record.output) {
            if self.planning {
                return Ok(None);
            }
            // The output went missing (removed by hand, or a lost disk):
            // the row must not be trusted.
            self.index().remove_node(&record.key)?;
            self.gone
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(record.key.clone(), record.description);
            return Ok(None);
        }
        self.record_hit(Event::new(&record.key, kind, name, EventStatus::Hit))?;
        Ok(Some(record))
    }

    /// Reports a hit and queues its bookkeeping (last use, the event),
    /// which is written in batches: one transaction per node would
    /// dominate a run that changes nothing.
    fn record_hit(&self, event: Event) -> Result<()> {
        if self.planning {
            return Ok(());
        }
        self.report(&event);
        let full = {
            let mut hits = self.pending_hits.lock().unwrap_or_else(|e| e.into_inner());
            hits.push(event);
            hits.len() >= HIT_BATCH
        };
        if full {
            self.flush_hits()?;
        }
        Ok(())
    }

    /// What a miss of this node is compared with: its last failed attempt
    /// if no success came after it, else the node of the same kind and
    /// name the last run used.
    fn previous(
        &self,
        kind: NodeKind,
        name: &str,
        key: &str,
    ) -> Result<Option<crate::inputs::Previous>> {
        if let Some(description) = self
            .gone
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
        {
            // Its own output went missing in this run.
            return Ok(Some(crate::inputs::Previous {
                key: key.to_string(),
                description,
                failed: false,
            }));
        }
        let index = self.index();
        let node = match index.last_used(kind, name)? {
            Some(n) => Some(n),
            // Recorded before stages kept their last use.
            None => index.last_node_named(kind, name)?,
        };
        let attempt = index.last_attempt(kind, name)?;
        // An open attempt failed after the last success.
        Ok(match (attempt, node) {
            (Some(a), _) => Some(crate::inputs::Previous {
                key: a.key,
                description: a.description,
                failed: true,
            }),
            (None, Some(n)) => Some(crate::inputs::Previous {
                key: n.key,
                description: n.description,
                failed: false,
            }),
            (None, None) => None,
        })
    }

    fn report(&self, event: &Event) {
        self.observer.node(&NodeEvent {
            stage: event.kind,
            name: event.name.clone(),
            key: event.node_key.clone(),
            status: event.status,
            duration_ms: event.duration_ms,
            reason: event.reason.clone(),
            worker: event.worker.clone(),
        });
    }

    /// The published tree of a record.
    pub(crate) fn tree_of(&self, record: &NodeRecord) -> Result<PathBuf> {
        match &record.output {
            NodeOutput::Tree(name) => self.store.tree_path(name).ok_or_else(|| {
                Error::Environment(format!("tree {name} is missing from the store"))
            }),
            NodeOutput::Blob(d) => Err(Error::Environment(format!(
                "node {} {} has a blob ({d}) where a tree was expected",
                record.kind, record.name
            ))),
        }
    }
}

impl Drop for Engine {
    /// Hits buffered by a run that ended without `finish` (an error) are
    /// still written.
    fn drop(&mut self) {
        let _ = self.flush_hits();
    }
}
