//! The SQLite index: which node keys have a published output (`nodes`), and
//! what each run of comb did (`runs`, `events`).
//!
//! The database is in WAL mode with a busy timeout, so several comb
//! processes (and several connections in one process, one per thread) can
//! read and write it at once: a writer waits for another instead of failing.
//!
//! Schema changes are [`MIGRATIONS`]: SQL steps applied in order, each in
//! its own transaction, with `PRAGMA user_version` counting the steps
//! applied. A later change appends a step; a step is never edited.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{Algorithm, Digest};
use crate::key::key_of;
use crate::store::is_valid_name;
use std::collections::BTreeMap;

/// How long a connection waits for another's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, as steps. `user_version` = number of steps applied.
pub const MIGRATIONS: &[&str] = &[
    // 1: nodes, runs, events.
    "CREATE TABLE nodes (
        id           INTEGER PRIMARY KEY,
        kind         TEXT    NOT NULL,
        name         TEXT    NOT NULL,
        key          TEXT    NOT NULL UNIQUE,  -- also the index for lookups by key
        description  TEXT    NOT NULL,
        output       TEXT    NOT NULL,
        size         INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        duration_ms  INTEGER NOT NULL,
        last_used_at INTEGER NOT NULL
    );
    CREATE INDEX nodes_by_name ON nodes (kind, name, created_at);
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        started_at  INTEGER NOT NULL,
        finished_at INTEGER,
        command     TEXT    NOT NULL,
        status      TEXT    NOT NULL
    );
    CREATE TABLE events (
        id          INTEGER PRIMARY KEY,
        run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        node_key    TEXT    NOT NULL,
        kind        TEXT    NOT NULL,
        name        TEXT    NOT NULL,
        status      TEXT    NOT NULL CHECK (status IN ('hit', 'built', 'failed', 'skipped')),
        duration_ms INTEGER NOT NULL,
        reason      TEXT,
        at          INTEGER NOT NULL
    );
    CREATE INDEX events_by_run ON events (run_id, id);",
    // 2: file digests remembered by what stat says, as git's index does,
    // so a no-op run does not read every source file again.
    "CREATE TABLE file_digests (
        path     BLOB    PRIMARY KEY,
        size     INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        ctime_ns INTEGER NOT NULL,
        inode    INTEGER NOT NULL,
        digest   TEXT    NOT NULL
    );",
    // 3: shortcuts: the key of what a node's key is derived from, to the
    // node's key, so a run that changes nothing skips the derivation
    // (resolutions and environments a hit does not need).
    "CREATE TABLE shortcuts (
        key      TEXT PRIMARY KEY,
        node_key TEXT NOT NULL
    ) WITHOUT ROWID;
    -- The scheduler's estimates (Index::durations) read only this index.
    CREATE INDEX nodes_by_age ON nodes (kind, created_at, name, duration_ms);
    -- When each node was last used, in rows of a few bytes: a run that
    -- changes nothing marks every node it reaches, and rewriting the wide
    -- rows of `nodes` for that was most of what the run wrote.
    CREATE TABLE node_use (
        node_id      INTEGER PRIMARY KEY REFERENCES nodes (id) ON DELETE CASCADE,
        last_used_at INTEGER NOT NULL
    );
    INSERT INTO node_use SELECT id, last_used_at FROM nodes;
    ALTER TABLE nodes DROP COLUMN last_used_at;",
    // 4: what `comb why` and `comb log` read: the node a miss was compared
    // with, the log of a built or failed node, and the description of
    // every failed attempt (a failure is never a node).
    "ALTER TABLE events ADD COLUMN previous_key TEXT;
    ALTER TABLE events ADD COLUMN log TEXT;
    -- An attempt is superseded once a later run built or reused a node
    -- of the same kind and name: it is no longer what a miss is compared
    -- with.
    CREATE TABLE attempts (
        key         TEXT    PRIMARY KEY,
        kind        TEXT    NOT NULL,
        name        TEXT    NOT NULL,
        description TEXT    NOT NULL,
        failed_at   INTEGER NOT NULL,
        superseded  INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX attempts_by_name ON attempts (kind, name, failed_at);",
    // 5: what `comb report` shows of a run: its package graph (JSON, each
    // package to the packages it needs) and its wall time.
    "ALTER TABLE runs ADD COLUMN graph TEXT;
    ALTER TABLE runs ADD COLUMN duration_ms INTEGER;
    -- The lock files (comb.lock) that used this store, and the index node
    -- each pins: garbage collection keeps a snapshot a lock still pins.
    CREATE TABLE pins (
        lock_path BLOB    PRIMARY KEY,
        node_key  TEXT    NOT NULL,
        seen_at   INTEGER NOT NULL
    );
    -- The node each stage and name last used: a node shared by several
    -- packages' stages (one pkg-env for two packages) is recorded under the
    -- first one's name, so a miss finds what it is compared with here.
    CREATE TABLE last_use (
        kind     TEXT NOT NULL,
        name     TEXT NOT NULL,
        node_key TEXT NOT NULL,
        PRIMARY KEY (kind, name)
    ) WITHOUT ROWID;",
    // 6: `comb check` results, one row per package and check run: the
    // history behind "failing since".
    "CREATE TABLE checks (
        run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        package TEXT    NOT NULL,
        state   TEXT    NOT NULL,
        details TEXT    NOT NULL,
        PRIMARY KEY (run_id, package)
    );
    CREATE INDEX checks_by_package ON checks (package, run_id);",
    // 7: run graphs stored once each: `runs.graph` names one by digest
    // (a repository's graph is the same run after run).
    "CREATE TABLE graphs (
        digest TEXT PRIMARY KEY,
        graph  TEXT NOT NULL
    ) WITHOUT ROWID;",
    // 8: the repository a run was for (its directory), so that the check
    // history of one repository is not mixed with another's in a shared
    // store. Runs recorded before have none.
    "ALTER TABLE runs ADD COLUMN repository TEXT;",
    // 9: what each node names besides its output (a build's packages, log
    // and source files; the node it is built on), recorded with the node,
    // so that garbage collection reads no manifest and no description.
    // Nodes recorded before have `refs_known` 0 until the engine fills
    // theirs in.
    "CREATE TABLE node_refs (
        node_id INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
        kind    TEXT    NOT NULL CHECK (kind IN ('blob', 'log', 'node')),
        target  TEXT    NOT NULL
    );
    CREATE INDEX node_refs_by_node ON node_refs (node_id);
    ALTER TABLE nodes ADD COLUMN refs_known INTEGER NOT NULL DEFAULT 0;",
    // 10: the build-dependency edges a run cut out of cycles (JSON), for
    // `comb why` and `comb report`.
    "ALTER TABLE runs ADD COLUMN cuts TEXT;",
    // 11: an event may be `fetched` (found in the remote cache): SQLite
    // changes a CHECK only by copying the table.
    "CREATE TABLE events_new (
        id           INTEGER PRIMARY KEY,
        run_id       INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        node_key     TEXT    NOT NULL,
        kind         TEXT    NOT NULL,
        name         TEXT    NOT NULL,
        status       TEXT    NOT NULL
                     CHECK (status IN ('hit', 'fetched', 'built', 'failed', 'skipped')),
        duration_ms  INTEGER NOT NULL,
        reason       TEXT,
        at           INTEGER NOT NULL,
        previous_key TEXT,
        log          TEXT
    );
    INSERT INTO events_new (id, run_id, node_key, kind, name, status, duration_ms, reason, at,
                            previous_key, log)
        SELECT id, run_id, node_key, kind, name, status, duration_ms, reason, at,
               previous_key, log FROM events;
    DROP TABLE events;
    ALTER TABLE events_new RENAME TO events;
    CREATE INDEX events_by_run ON events (run_id, id);",
    // 12: the remote worker that ran a build (`[remote] execute`).
    "ALTER TABLE events ADD COLUMN worker TEXT;",
];

/// Something a node names in the store besides its output.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeRef {
    /// A blob: a package, a source file.
    Blob { algorithm: Algorithm, hex: String },
    /// A blob that is a log.
    Log { algorithm: Algorithm, hex: String },
    /// Another node, by key: the one it is built on.
    Node(String),
}

impl NodeRef {
    fn kind(&self) -> &'static str {
        match self {
            NodeRef::Blob { .. } => "blob",
            NodeRef::Log { .. } => "log",
            NodeRef::Node(_) => "node",
        }
    }

    fn target(&self) -> String {
        match self {
            NodeRef::Blob { algorithm, hex } | NodeRef::Log { algorithm, hex } => {
                format!("{algorithm}:{hex}")
            }
            NodeRef::Node(key) => key.clone(),
        }
    }

    fn from_row(kind: &str, target: String) -> Result<NodeRef, IndexError> {
        let blob = |target: &str| -> Result<(Algorithm, String), IndexError> {
            let (alg, hex) = target
                .split_once(':')
                .ok_or_else(|| IndexError::Corrupt(format!("node reference {target:?}")))?;
            let algorithm = alg
                .parse()
                .map_err(|e| IndexError::Corrupt(format!("node reference {target:?}: {e}")))?;
            Ok((algorithm, hex.to_string()))
        };
        Ok(match kind {
            "blob" => {
                let (algorithm, hex) = blob(&target)?;
                NodeRef::Blob { algorithm, hex }
            }
            "log" => {
                let (algorithm, hex) = blob(&target)?;
                NodeRef::Log { algorithm, hex }
            }
            _ => NodeRef::Node(target),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("opening the index {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the index: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(
        "the index {path} has schema version {found}, newer than {supported} which this comb \
         knows: upgrade comb"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "the index {path} could not be put in WAL mode (journal_mode is {mode:?}); \
         put the store on a local file system"
    )]
    NoWal { path: PathBuf, mode: String },
    #[error("the index holds a damaged row: {0}")]
    Corrupt(String),
    #[error(
        "node key {key} is not the hash of its description (which hashes to {actual}); \
         build the key with key_of(description)"
    )]
    KeyMismatch { key: String, actual: String },
    #[error("{0} is too large to store in the index")]
    TooLarge(&'static str),
}

/// Generates the string form and parsing of a fieldless enum stored as text.
macro_rules! text_enum {
    ($(#[$m:meta])* $ty:ident { $($(#[$vm:meta])* $var:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $ty { $($(#[$vm])* $var),* }

        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$var),*];
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$var => $s),* }
            }
        }
        impl fmt::Display for $ty {
            // `pad`, not `write_str`: `{:<13}` must align columns.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = IndexError;
            fn from_str(s: &str) -> Result<Self, IndexError> {
                match s {
                    $($s => Ok($ty::$var),)*
                    other => Err(IndexError::Corrupt(format!(
                        concat!("unknown ", stringify!($ty), " {:?}"), other
                    ))),
                }
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

text_enum! {
    /// A pipeline stage: the kind of a node.
    NodeKind {
        Index = "index",
        Resolve = "resolve",
        Fetch = "fetch",
        BaseInstall = "base-install",
        BaseBuild = "base-build",
        PkgEnv = "pkg-env",
        Build = "build",
    }
}

text_enum! {
    /// What happened to a node in a run.
    EventStatus {
        /// Its key was in the index and its output in the store.
        Hit = "hit",
        /// It was found in the remote cache, checked and stored here
        /// (the event's reason names the cache and its writer).
        Fetched = "fetched",
        /// It was run and its output recorded.
        Built = "built",
        /// It was run and failed (see the event's reason). Never recorded as a node.
        Failed = "failed",
        /// It was not run because something it needs failed.
        Skipped = "skipped",
    }
}

text_enum! {
    /// The state of a run. A run whose comb was killed stays `running`.
    RunStatus {
        Running = "running",
        Success = "success",
        Failed = "failed",
        Interrupted = "interrupted",
    }
}

/// Where a node's output is: a blob (its digest) or a published tree (its
/// name). Text form: the digest string, or the tree name (which has no ':').
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeOutput {
    Blob(Digest),
    Tree(String),
}

impl fmt::Display for NodeOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeOutput::Blob(d) => d.fmt(f),
            NodeOutput::Tree(n) => f.write_str(n),
        }
    }
}

impl FromStr for NodeOutput {
    type Err = IndexError;
    fn from_str(s: &str) -> Result<Self, IndexError> {
        if s.contains(':') {
            s.parse()
                .map(NodeOutput::Blob)
                .map_err(|e| IndexError::Corrupt(format!("node output {s:?}: {e}")))
        } else if is_valid_name(s) {
            Ok(NodeOutput::Tree(s.to_string()))
        } else {
            Err(IndexError::Corrupt(format!(
                "node output {s:?} is neither a digest nor a tree name"
            )))
        }
    }
}

impl Serialize for NodeOutput {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NodeOutput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What `stat` says of a file, for [`Index::file_digest`]. The change time
/// is included because a tool can restore an mtime; nothing restores ctime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub size: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: i64,
}

impl FileStat {
    /// From file metadata.
    pub fn of(md: &std::fs::Metadata) -> FileStat {
        use std::os::unix::fs::MetadataExt;
        FileStat {
            size: md.size() as i64,
            mtime_ns: md
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(md.mtime_nsec()),
            ctime_ns: md
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(md.ctime_nsec()),
            inode: md.ino() as i64,
        }
    }
}

/// One built node: its key, the description the key was hashed from, and
/// its output in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub kind: NodeKind,
    /// The node's name within its kind (a package name, a set name, …).
    pub name: String,
    /// `key_of(&description)`.
    pub key: String,
    /// The canonical description (see [`crate::Description`]).
    pub description: String,
    pub output: NodeOutput,
    /// Bytes of the output.
    pub size: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// How long producing the output took.
    pub duration_ms: u64,
    /// Unix seconds; updated on every hit ([`Index::record_hits`],
    /// [`Index::touch_node`]).
    pub last_used_at: i64,
}

impl NodeRecord {
    /// A record made now, with `key` computed from `description`.
    pub fn new(
        kind: NodeKind,
        name: impl Into<String>,
        description: impl Into<String>,
        output: NodeOutput,
        size: u64,
        duration_ms: u64,
    ) -> NodeRecord {
        let description = description.into();
        let now = unix_now();
        NodeRecord {
            kind,
            name: name.into(),
            key: key_of(&description),
            description,
            output,
            size,
            created_at: now,
            duration_ms,
            last_used_at: now,
        }
    }
}

/// A run's id in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One invocation of comb.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: RunId,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// The argv, joined with spaces.
    pub command: String,
    /// The repository's directory (none for runs recorded before it was).
    pub repository: Option<String>,
    pub status: RunStatus,
    /// Its wall time, once finished.
    pub duration_ms: Option<u64>,
}

/// What happened to one node in one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub node_key: String,
    pub kind: NodeKind,
    pub name: String,
    pub status: EventStatus,
    pub duration_ms: u64,
    /// Why it failed, was skipped or was rebuilt; `None` for a plain hit.
    pub reason: Option<String>,
    /// Unix seconds.
    pub at: i64,
    /// For a node that was built or failed: the key of the node (or failed
    /// attempt) of the same kind and name it was compared with, if any.
    pub previous_key: Option<String>,
    /// For a node that was built or failed: the stored log, a blob digest.
    pub log: Option<String>,
    /// For a node built on a remote worker: the worker's name.
    pub worker: Option<String>,
}

impl Event {
    /// An event happening now, with no duration and no reason yet.
    pub fn new(
        node_key: impl Into<String>,
        kind: NodeKind,
        name: impl Into<String>,
        status: EventStatus,
    ) -> Event {
        Event {
            node_key: node_key.into(),
            kind,
            name: name.into(),
            status,
            duration_ms: 0,
            reason: None,
            at: unix_now(),
            previous_key: None,
            worker: None,
            log: None,
        }
    }
}

/// A node without its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSummary {
    pub kind: NodeKind,
    pub name: String,
    pub key: String,
    pub output: NodeOutput,
    pub size: u64,
    pub last_used_at: i64,
}

/// A node that failed: what it was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub kind: NodeKind,
    pub name: String,
    pub key: String,
    pub description: String,
    /// Unix seconds.
    pub failed_at: i64,
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `key` must be the key of `description`.
fn check_key(key: &str, description: &str) -> Result<(), IndexError> {
    let actual = key_of(description);
    if actual != key {
        return Err(IndexError::KeyMismatch {
            key: key.to_string(),
            actual,
        });
    }
    Ok(())
}

fn to_i64(v: u64, what: &'static str) -> Result<i64, IndexError> {
    i64::try_from(v).map_err(|_| IndexError::TooLarge(what))
}

fn to_u64(v: i64, what: &str) -> Result<u64, IndexError> {
    u64::try_from(v).map_err(|_| IndexError::Corrupt(format!("negative {what} {v}")))
}

/// A connection to the index. Not `Sync`: give each thread its own (they
/// coordinate through SQLite's locks).
#[derive(Debug)]
pub struct Index {
    conn: Connection,
    path: PathBuf,
}

/// The columns of a [`NodeRecord`], from `nodes n JOIN node_use u`
/// ([`NODES`]).
const NODE_COLUMNS: &str = "n.kind, n.name, n.key, n.description, n.output, n.size, \
     n.created_at, n.duration_ms, u.last_used_at";
const NODES: &str = "nodes n JOIN node_use u ON u.node_id = n.id";

impl Index {
    /// Opens (creating if needed) the database at `path`, sets WAL mode, the
    /// busy timeout and foreign keys, and applies pending migrations.
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        let open_err = |source| IndexError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        // First, so that every later statement waits for other writers.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(IndexError::NoWal {
                path: path.to_path_buf(),
                mode,
            });
        }
        // In WAL mode NORMAL cannot corrupt the database; a power loss may
        // drop the last transactions, which only forgets recent rows.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // Sorts and IN lists of large statements stay off the disk.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(open_err)?;
        // The last connection to close would checkpoint the whole WAL:
        // a cost every short comb command would pay. Checkpoints happen as
        // the WAL grows (every 1000 pages) instead.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .map_err(open_err)?;
        migrate(&mut conn, path)?;
        Ok(Index {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of migration steps applied.
    pub fn schema_version(&self) -> Result<i64, IndexError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// `PRAGMA journal_mode` ("wal").
    pub fn journal_mode(&self) -> Result<String, IndexError> {
        Ok(self
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))?)
    }

    // ---------------------------------------------------------------- nodes

    /// Inserts the node, or replaces the row with the same key. Call it only
    /// after the output is published, so a row always names a real output.
    /// The key must be `key_of(&description)`.
    pub fn record_node(&self, n: &NodeRecord) -> Result<(), IndexError> {
        self.record_node_referencing(n, &[])
    }

    /// [`Index::record_node`], with what the node names besides its
    /// output: nothing it names is collected while it is recorded.
    pub fn record_node_referencing(
        &self,
        n: &NodeRecord,
        refs: &[NodeRef],
    ) -> Result<(), IndexError> {
        check_key(&n.key, &n.description)?;
        self.conn
            .prepare_cached(
                "INSERT INTO nodes (kind, name, key, description, output, size, created_at, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (key) DO UPDATE SET
                    kind = excluded.kind, name = excluded.name,
                    description = excluded.description, output = excluded.output,
                    size = excluded.size, created_at = excluded.created_at,
                    duration_ms = excluded.duration_ms",
            )?
            .execute(params![
                n.kind.as_str(),
                n.name,
                n.key,
                n.description,
                n.output.to_string(),
                to_i64(n.size, "node size")?,
                n.created_at,
                to_i64(n.duration_ms, "node duration")?,
            ])?;
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO node_use (node_id, last_used_at)
                 SELECT id, ?2 FROM nodes WHERE key = ?1",
            )?
            .execute(params![n.key, n.last_used_at])?;
        self.set_node_refs(&n.key, refs)
    }

    /// Records what the node `key` names (replacing what was recorded).
    pub fn set_node_refs(&self, key: &str, refs: &[NodeRef]) -> Result<(), IndexError> {
        self.conn
            .prepare_cached(
                "DELETE FROM node_refs WHERE node_id = (SELECT id FROM nodes WHERE key = ?1)",
            )?
            .execute(params![key])?;
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO node_refs (node_id, kind, target)
             SELECT id, ?2, ?3 FROM nodes WHERE key = ?1",
        )?;
        for r in refs {
            insert.execute(params![key, r.kind(), r.target()])?;
        }
        self.conn
            .prepare_cached("UPDATE nodes SET refs_known = 1 WHERE key = ?1")?
            .execute(params![key])?;
        Ok(())
    }

    /// The nodes recorded before references were (their `refs_known` is 0).
    pub fn nodes_without_refs(&self) -> Result<Vec<NodeRecord>, IndexError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {NODE_COLUMNS} FROM {NODES} WHERE n.refs_known = 0"
        ))?;
        let rows = st.query_map([], raw_node)?;
        rows.map(|r| r?.into_record()).collect()
    }

    /// What every node names, by node key.
    pub fn node_refs(&self) -> Result<Vec<(String, NodeRef)>, IndexError> {
        let mut st = self.conn.prepare_cached(
            "SELECT n.key, r.kind, r.target FROM node_refs r JOIN nodes n ON n.id = r.node_id",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        rows.map(|r| {
            let (key, kind, target) = r?;
            Ok((key, NodeRef::from_row(&kind, target)?))
        })
        .collect()
    }

    /// The node with this key, if it was recorded.
    pub fn node(&self, key: &str) -> Result<Option<NodeRecord>, IndexError> {
        let row = self
            .conn
            .prepare_cached(&format!(
                "SELECT {NODE_COLUMNS} FROM {NODES} WHERE n.key = ?1"
            ))?
            .query_row(params![key], raw_node)
            .optional()?;
        row.map(RawNode::into_record).transpose()
    }

    /// The most recently used node of this kind and name: the one whose
    /// description a new key of the same node is compared with to explain a
    /// rebuild. Call it before recording the new node. Recency is
    /// `last_used_at` (a node that was a hit again after a newer one was
    /// built is the one the previous run used), then `created_at`, then
    /// insertion order.
    pub fn last_node_named(
        &self,
        kind: NodeKind,
        name: &str,
    ) -> Result<Option<NodeRecord>, IndexError> {
        Ok(self.nodes_named(kind, name, 1)?.into_iter().next())
    }

    /// Up to `limit` nodes of this kind and name, most recently used first.
    pub fn nodes_named(
        &self,
        kind: NodeKind,
        name: &str,
        limit: usize,
    ) -> Result<Vec<NodeRecord>, IndexError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {NODE_COLUMNS} FROM {NODES} WHERE n.kind = ?1 AND n.name = ?2
             ORDER BY u.last_used_at DESC, n.created_at DESC, n.id DESC LIMIT ?3"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = st.query_map(params![kind.as_str(), name, limit], raw_node)?;
        rows.map(|r| r?.into_record()).collect()
    }

    /// Every node of one kind, most recently used first.
    pub fn nodes_of_kind(&self, kind: NodeKind) -> Result<Vec<NodeRecord>, IndexError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {NODE_COLUMNS} FROM {NODES} WHERE n.kind = ?1
             ORDER BY u.last_used_at DESC, n.created_at DESC, n.id DESC"
        ))?;
        let rows = st.query_map(params![kind.as_str()], raw_node)?;
        rows.map(|r| r?.into_record()).collect()
    }

    /// Every node, without its description (what garbage collection and
    /// `comb stats` weigh), least recently used first.
    pub fn node_summaries(&self) -> Result<Vec<NodeSummary>, IndexError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT n.kind, n.name, n.key, n.output, n.size, u.last_used_at FROM {NODES}
             ORDER BY u.last_used_at, n.id"
        ))?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        rows.map(|r| {
            let (kind, name, key, output, size, last_used_at) = r?;
            Ok(NodeSummary {
                kind: kind.parse()?,
                name,
                key,
                output: output.parse()?,
                size: to_u64(size, "node size")?,
                last_used_at,
            })
        })
        .collect()
    }

    /// Forgets what no longer leads anywhere, and the history older than
    /// `before` (Unix seconds) beyond the newest `keep_runs` runs: runs
    /// (with their events), superseded failed attempts, shortcuts to
    /// forgotten nodes, graphs no run names. Returns the number of runs
    /// dropped.
    pub fn prune(&self, before: i64, keep_runs: usize) -> Result<usize, IndexError> {
        let keep = i64::try_from(keep_runs).unwrap_or(i64::MAX);
        let runs = self.conn.execute(
            "DELETE FROM runs WHERE started_at < ?1 AND status != 'running'
             AND id NOT IN (SELECT id FROM runs ORDER BY id DESC LIMIT ?2)",
            params![before, keep],
        )?;
        self.conn.execute(
            "DELETE FROM attempts WHERE superseded = 1 AND failed_at < ?1",
            params![before],
        )?;
        self.conn.execute(
            "DELETE FROM shortcuts WHERE node_key NOT IN (SELECT key FROM nodes)",
            [],
        )?;
        self.conn.execute(
            "DELETE FROM node_use WHERE node_id NOT IN (SELECT id FROM nodes)",
            [],
        )?;
        self.conn.execute(
            "DELETE FROM graphs WHERE digest NOT IN
             (SELECT graph FROM runs WHERE graph IS NOT NULL)",
            [],
        )?;
        Ok(runs)
    }

    /// Remembers that the lock file at `lock_path` pins the node `key`.
    pub fn remember_pin(&self, lock_path: &[u8], key: &str) -> Result<(), IndexError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO pins (lock_path, node_key, seen_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![lock_path, key, unix_now()])?;
        Ok(())
    }

    /// Records that stage `kind` of `name` used the node `key`.
    pub fn remember_use(&self, kind: NodeKind, name: &str, key: &str) -> Result<(), IndexError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO last_use (kind, name, node_key) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![kind.as_str(), name, key])?;
        Ok(())
    }

    /// The node stage `kind` of `name` last used, if it is still recorded.
    pub fn last_used(&self, kind: NodeKind, name: &str) -> Result<Option<NodeRecord>, IndexError> {
        let row = self
            .conn
            .prepare_cached(&format!(
                "SELECT {NODE_COLUMNS} FROM last_use l
                 JOIN nodes n ON n.key = l.node_key JOIN node_use u ON u.node_id = n.id
                 WHERE l.kind = ?1 AND l.name = ?2"
            ))?
            .query_row(params![kind.as_str(), name], raw_node)
            .optional()?;
        row.map(RawNode::into_record).transpose()
    }

    /// Every remembered pin: lock file path and node key.
    pub fn pins(&self) -> Result<Vec<(Vec<u8>, String)>, IndexError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT lock_path, node_key FROM pins ORDER BY lock_path")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets a pin (its lock file is gone or pins something else now).
    pub fn forget_pin(&self, lock_path: &[u8]) -> Result<(), IndexError> {
        self.conn
            .execute("DELETE FROM pins WHERE lock_path = ?1", params![lock_path])?;
        Ok(())
    }

    /// Records a `comb check` result of `package` in `run`: its state
    /// (`GOOD`, `BAD`, `FAIL`, `SKIPPED`) and the result as JSON.
    pub fn record_check(
        &self,
        run: RunId,
        package: &str,
        state: &str,
        details: &str,
    ) -> Result<(), IndexError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO checks (run_id, package, state, details)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![run.0, package, state, details])?;
        Ok(())
    }

    /// The recorded checks of the runs for `repository` (and of runs
    /// recorded before runs had one), oldest run first: (run, package,
    /// state, details).
    pub fn checks(
        &self,
        repository: Option<&str>,
    ) -> Result<Vec<(RunId, String, String, String)>, IndexError> {
        let mut st = self.conn.prepare_cached(
            "SELECT c.run_id, c.package, c.state, c.details FROM checks c JOIN runs r ON r.id = c.run_id
             WHERE r.repository IS NULL OR r.repository IS ?1 ORDER BY c.run_id, c.package",
        )?;
        let rows = st.query_map(params![repository], |r| {
            Ok((RunId(r.get(0)?), r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The checks of one run: (package, state, details), by package.
    pub fn run_checks(&self, run: RunId) -> Result<Vec<(String, String, String)>, IndexError> {
        let mut st = self.conn.prepare_cached(
            "SELECT package, state, details FROM checks WHERE run_id = ?1 ORDER BY package",
        )?;
        let rows = st.query_map(params![run.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every log blob the recorded events name.
    pub fn event_logs(&self) -> Result<Vec<String>, IndexError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT DISTINCT log FROM events WHERE log IS NOT NULL")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The duration of the most recently built node of each name, of one
    /// kind (the scheduler's estimates).
    pub fn durations(
        &self,
        kind: NodeKind,
    ) -> Result<std::collections::HashMap<String, u64>, IndexError> {
        let mut st = self.conn.prepare_cached(
            "SELECT name, duration_ms FROM nodes WHERE kind = ?1 ORDER BY created_at, id",
        )?;
        let rows = st.query_map(params![kind.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut by_name = std::collections::HashMap::new();
        for row in rows {
            let (name, ms) = row?;
            // Later rows are more recent: they win.
            by_name.insert(name, to_u64(ms, "node duration")?);
        }
        Ok(by_name)
    }

    /// The key and output of the node a shortcut led to, if one was
    /// remembered and the node is still recorded (no more is read: this is
    /// the whole of a hit on a run that changes nothing).
    pub fn shortcut(&self, key: &str) -> Result<Option<(String, NodeOutput)>, IndexError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT n.key, n.output FROM shortcuts s JOIN nodes n ON n.key = s.node_key
                 WHERE s.key = ?1",
            )?
            .query_row(params![key], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .optional()?;
        row.map(|(key, output)| Ok((key, output.parse()?)))
            .transpose()
    }

    /// Remembers that the inputs whose key is `key` gave the node
    /// `node_key`. The caller must derive `node_key` from exactly those
    /// inputs, deterministically.
    pub fn remember_shortcut(&self, key: &str, node_key: &str) -> Result<(), IndexError> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO shortcuts (key, node_key) VALUES (?1, ?2)")?
            .execute(params![key, node_key])?;
        Ok(())
    }

    /// The digest remembered for the file at `path` if its stat (`size`,
    /// times, inode) is still the one it was computed for.
    pub fn file_digest(&self, path: &[u8], stat: &FileStat) -> Result<Option<String>, IndexError> {
        let mut st = self.conn.prepare_cached(
            "SELECT digest FROM file_digests
             WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3 AND ctime_ns = ?4 AND inode = ?5",
        )?;
        Ok(st
            .query_row(
                params![path, stat.size, stat.mtime_ns, stat.ctime_ns, stat.inode],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Every digest remembered for a file below the directory `dir`
    /// (an absolute path without a trailing `/`), with the stat it was
    /// computed for: one query instead of one per file.
    pub fn file_digests_under(
        &self,
        dir: &[u8],
    ) -> Result<Vec<(Vec<u8>, FileStat, String)>, IndexError> {
        // Paths below `dir` sort between `dir/` and `dir0` ('0' follows '/').
        let mut low = dir.to_vec();
        low.push(b'/');
        let mut high = dir.to_vec();
        high.push(b'0');
        let mut st = self.conn.prepare_cached(
            "SELECT path, size, mtime_ns, ctime_ns, inode, digest FROM file_digests
             WHERE path >= ?1 AND path < ?2",
        )?;
        let rows = st.query_map(params![low, high], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                FileStat {
                    size: r.get(1)?,
                    mtime_ns: r.get(2)?,
                    ctime_ns: r.get(3)?,
                    inode: r.get(4)?,
                },
                r.get::<_, String>(5)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Remembers `digest` for the file at `path` with this stat. Many
    /// calls are best made inside [`Index::batch`].
    pub fn remember_file_digest(
        &self,
        path: &[u8],
        stat: &FileStat,
        digest: &str,
    ) -> Result<(), IndexError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO file_digests (path, size, mtime_ns, ctime_ns, inode, digest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![path, stat.size, stat.mtime_ns, stat.ctime_ns, stat.inode, digest])?;
        Ok(())
    }

    /// Runs `f` in one transaction (one commit for many small writes).
    pub fn batch<T>(
        &self,
        f: impl FnOnce(&Index) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match f(self) {
            Ok(v) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Marks the node as used now (a cache hit). Returns whether it exists.
    pub fn touch_node(&self, key: &str) -> Result<bool, IndexError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE node_use SET last_used_at = ?1
                 WHERE node_id = (SELECT id FROM nodes WHERE key = ?2)",
            )?
            .execute(params![unix_now(), key])?;
        Ok(n > 0)
    }

    /// Forgets a node (its output turned out missing or corrupt, or garbage
    /// collection removed it). Returns whether it existed.
    pub fn remove_node(&self, key: &str) -> Result<bool, IndexError> {
        let n = self
            .conn
            .execute("DELETE FROM nodes WHERE key = ?1", params![key])?;
        Ok(n > 0)
    }

    // ----------------------------------------------------------- runs, events

    /// Records the start of a run; its status is `running` until finished.
    pub fn begin_run(&self, command: &str, repository: &str) -> Result<RunId, IndexError> {
        self.conn.execute(
            "INSERT INTO runs (started_at, command, status, repository) VALUES (?1, ?2, ?3, ?4)",
            params![unix_now(), command, RunStatus::Running.as_str(), repository],
        )?;
        Ok(RunId(self.conn.last_insert_rowid()))
    }

    /// Records the end of a run.
    pub fn finish_run(&self, id: RunId, status: RunStatus) -> Result<(), IndexError> {
        self.finish_run_after(id, status, None)
    }

    /// Records the end of a run that took `duration_ms`.
    pub fn finish_run_after(
        &self,
        id: RunId,
        status: RunStatus,
        duration_ms: Option<u64>,
    ) -> Result<(), IndexError> {
        let duration = duration_ms.map(|d| to_i64(d, "run duration")).transpose()?;
        let n = self.conn.execute(
            "UPDATE runs SET finished_at = ?1, status = ?2, duration_ms = ?3 WHERE id = ?4",
            params![unix_now(), status.as_str(), duration, id.0],
        )?;
        if n == 0 {
            return Err(IndexError::Corrupt(format!("no run {id}")));
        }
        Ok(())
    }

    /// Records the package graph of `run`: each package to those it needs.
    pub fn set_run_graph(
        &self,
        id: RunId,
        graph: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), IndexError> {
        let json = serde_json::to_string(graph)
            .map_err(|e| IndexError::Corrupt(format!("a run's graph: {e}")))?;
        let digest = key_of(&json);
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO graphs (digest, graph) VALUES (?1, ?2)")?
            .execute(params![digest, json])?;
        self.conn
            .prepare_cached("UPDATE runs SET graph = ?1 WHERE id = ?2")?
            .execute(params![digest, id.0])?;
        Ok(())
    }

    /// Records the edges `run` cut out of cycles, as the engine writes them
    /// (JSON).
    pub fn set_run_cuts(&self, id: RunId, json: &str) -> Result<(), IndexError> {
        self.conn
            .prepare_cached("UPDATE runs SET cuts = ?1 WHERE id = ?2")?
            .execute(params![json, id.0])?;
        Ok(())
    }

    /// The edges `run` cut out of cycles (JSON), if it recorded any.
    pub fn run_cuts(&self, id: RunId) -> Result<Option<String>, IndexError> {
        Ok(self
            .conn
            .query_row("SELECT cuts FROM runs WHERE id = ?1", params![id.0], |r| {
                r.get(0)
            })
            .optional()?
            .flatten())
    }

    /// The package graph recorded for `run` (empty if none was).
    pub fn run_graph(&self, id: RunId) -> Result<BTreeMap<String, Vec<String>>, IndexError> {
        // A digest into `graphs`, or (recorded before schema 7) the JSON.
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT coalesce(g.graph, r.graph) FROM runs r
                 LEFT JOIN graphs g ON g.digest = r.graph WHERE r.id = ?1",
                params![id.0],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        match json {
            None => Ok(BTreeMap::new()),
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| IndexError::Corrupt(format!("the graph of run {id}: {e}"))),
        }
    }

    /// Records what happened to one node in `run`.
    pub fn record_event(&self, run: RunId, e: &Event) -> Result<(), IndexError> {
        self.conn
            .prepare_cached(
                "INSERT INTO events (run_id, node_key, kind, name, status, duration_ms, reason, at,
                                     previous_key, log, worker)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                run.0,
                e.node_key,
                e.kind.as_str(),
                e.name,
                e.status.as_str(),
                to_i64(e.duration_ms, "event duration")?,
                e.reason,
                e.at,
                e.previous_key,
                e.log,
                e.worker,
            ])?;
        Ok(())
    }

    /// Records many hits of `run` at once, and marks their nodes used:
    /// a run that changes nothing has a hit for every node, and one
    /// statement per row would be most of its time. Call it inside
    /// [`Index::batch`].
    pub fn record_hits(&self, run: RunId, hits: &[Event]) -> Result<(), IndexError> {
        const ROWS: usize = 100;
        let first: i64 = self
            .conn
            .prepare_cached("SELECT coalesce(max(id), 0) FROM events")?
            .query_row([], |r| r.get(0))?;
        for chunk in hits.chunks(ROWS) {
            let rows = vec!["(?, ?, ?, ?, 'hit', ?, ?, ?)"; chunk.len()].join(", ");
            let mut st = self.conn.prepare_cached(&format!(
                "INSERT INTO events (run_id, node_key, kind, name, status, duration_ms, reason, at)
                 VALUES {rows}"
            ))?;
            let mut values: Vec<rusqlite::types::Value> = Vec::with_capacity(chunk.len() * 7);
            for e in chunk {
                if e.status != EventStatus::Hit {
                    return Err(IndexError::Corrupt(format!(
                        "{} {}: a {} event recorded as a hit",
                        e.kind, e.name, e.status
                    )));
                }
                values.extend([
                    run.0.into(),
                    e.node_key.clone().into(),
                    e.kind.as_str().to_string().into(),
                    e.name.clone().into(),
                    to_i64(e.duration_ms, "event duration")?.into(),
                    e.reason.clone().into(),
                    e.at.into(),
                ]);
            }
            st.execute(rusqlite::params_from_iter(values))?;
        }
        self.conn
            .prepare_cached(
                "UPDATE node_use SET last_used_at = ?1 WHERE node_id IN
                 (SELECT n.id FROM events e JOIN nodes n ON n.key = e.node_key
                  WHERE e.id > ?2 AND e.run_id = ?3)",
            )?
            .execute(params![unix_now(), first, run.0])?;
        self.conn
            .prepare_cached(
                // Most rows are unchanged: those are not rewritten.
                "INSERT INTO last_use (kind, name, node_key)
                 SELECT kind, name, node_key FROM events WHERE id > ?1 AND run_id = ?2 AND true
                 ON CONFLICT (kind, name) DO UPDATE SET node_key = excluded.node_key
                 WHERE node_key != excluded.node_key",
            )?
            .execute(params![first, run.0])?;
        // Few attempts are ever open: each checks this batch of events.
        self.conn
            .prepare_cached(
                "UPDATE attempts SET superseded = 1 WHERE superseded = 0 AND EXISTS
                 (SELECT 1 FROM events e WHERE e.id > ?1 AND e.run_id = ?2
                  AND e.kind = attempts.kind AND e.name = attempts.name)",
            )?
            .execute(params![first, run.0])?;
        Ok(())
    }

    /// Whether `run` recorded an event of this kind and name.
    pub fn run_has_event(
        &self,
        run: RunId,
        kind: NodeKind,
        name: &str,
    ) -> Result<bool, IndexError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT 1 FROM events WHERE run_id = ?1 AND kind = ?2 AND name = ?3 LIMIT 1",
            )?
            .query_row(params![run.0, kind.as_str(), name], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// The events of `run`, in the order they were recorded.
    pub fn events(&self, run: RunId) -> Result<Vec<Event>, IndexError> {
        let mut st = self.conn.prepare_cached(
            "SELECT node_key, kind, name, status, duration_ms, reason, at, previous_key, log,
                    worker
             FROM events WHERE run_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map(params![run.0], |r| {
            Ok((
                (
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ),
                (
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, Option<String>>(9)?,
                ),
            ))
        })?;
        rows.map(|r| {
            let (
                (node_key, kind, name, status),
                (duration_ms, reason, at, previous_key, log, worker),
            ) = r?;
            Ok(Event {
                node_key,
                kind: kind.parse()?,
                name,
                status: status.parse()?,
                duration_ms: to_u64(duration_ms, "event duration")?,
                reason,
                at,
                previous_key,
                log,
                worker,
            })
        })
        .collect()
    }

    /// Records a failed attempt at a node (replacing an older failure of
    /// the same key).
    pub fn record_attempt(&self, a: &Attempt) -> Result<(), IndexError> {
        check_key(&a.key, &a.description)?;
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO attempts (key, kind, name, description, failed_at, superseded)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0)",
            )?
            .execute(params![a.key, a.kind.as_str(), a.name, a.description, a.failed_at])?;
        Ok(())
    }

    /// The failed attempt with this key.
    pub fn attempt(&self, key: &str) -> Result<Option<Attempt>, IndexError> {
        self.attempts_where("key = ?1", params![key])
    }

    /// The newest failed attempt of this kind and name that no later
    /// success (a build or a hit) superseded.
    pub fn last_attempt(&self, kind: NodeKind, name: &str) -> Result<Option<Attempt>, IndexError> {
        self.attempts_where(
            "kind = ?1 AND name = ?2 AND superseded = 0 ORDER BY failed_at DESC LIMIT 1",
            params![kind.as_str(), name],
        )
    }

    /// A node of this kind and name was built or reused: its failed
    /// attempts are history.
    pub fn supersede_attempts(&self, kind: NodeKind, name: &str) -> Result<(), IndexError> {
        self.conn
            .prepare_cached(
                "UPDATE attempts SET superseded = 1
                 WHERE kind = ?1 AND name = ?2 AND superseded = 0",
            )?
            .execute(params![kind.as_str(), name])?;
        Ok(())
    }

    fn attempts_where(
        &self,
        condition: &str,
        values: impl rusqlite::Params,
    ) -> Result<Option<Attempt>, IndexError> {
        let row = self
            .conn
            .prepare_cached(&format!(
                "SELECT kind, name, key, description, failed_at FROM attempts WHERE {condition}"
            ))?
            .query_row(values, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .optional()?;
        row.map(|(kind, name, key, description, failed_at)| {
            Ok(Attempt {
                kind: kind.parse()?,
                name,
                key,
                description,
                failed_at,
            })
        })
        .transpose()
    }

    /// The run with this id.
    pub fn run(&self, id: RunId) -> Result<Option<RunRecord>, IndexError> {
        Ok(self
            .runs_where("id = ?1", params![id.0])?
            .into_iter()
            .next())
    }

    /// Up to `limit` runs, newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, IndexError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.runs_where("1 ORDER BY id DESC LIMIT ?1", params![limit])
    }

    fn runs_where(
        &self,
        condition: &str,
        values: impl rusqlite::Params,
    ) -> Result<Vec<RunRecord>, IndexError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT id, started_at, finished_at, command, status, duration_ms, repository FROM runs
             WHERE {condition}"
        ))?;
        let rows = st.query_map(values, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })?;
        rows.map(|r| {
            let (id, started_at, finished_at, command, status, duration_ms, repository) = r?;
            Ok(RunRecord {
                id: RunId(id),
                started_at,
                finished_at,
                command,
                repository,
                status: status.parse()?,
                duration_ms: duration_ms.map(|d| to_u64(d, "run duration")).transpose()?,
            })
        })
        .collect()
    }
}

/// Applies the migrations not yet applied, each in an IMMEDIATE transaction
/// that re-reads the version under the write lock, so two processes opening
/// a fresh index at once apply each step exactly once.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), IndexError> {
    let supported = MIGRATIONS.len() as i64;
    // The common case, without taking the write lock.
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version == supported {
        return Ok(());
    }
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > supported {
            return Err(IndexError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
                supported,
            });
        }
        let Some(step) = usize::try_from(version)
            .ok()
            .and_then(|v| MIGRATIONS.get(v))
        else {
            return Ok(()); // up to date; the empty transaction rolls back
        };
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

struct RawNode {
    kind: String,
    name: String,
    key: String,
    description: String,
    output: String,
    size: i64,
    created_at: i64,
    duration_ms: i64,
    last_used_at: i64,
}

fn raw_node(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawNode> {
    Ok(RawNode {
        kind: r.get(0)?,
        name: r.get(1)?,
        key: r.get(2)?,
        description: r.get(3)?,
        output: r.get(4)?,
        size: r.get(5)?,
        created_at: r.get(6)?,
        duration_ms: r.get(7)?,
        last_used_at: r.get(8)?,
    })
}

impl RawNode {
    fn into_record(self) -> Result<NodeRecord, IndexError> {
        Ok(NodeRecord {
            kind: self.kind.parse()?,
            name: self.name,
            key: self.key,
            description: self.description,
            output: self.output.parse()?,
            size: to_u64(self.size, "node size")?,
            created_at: self.created_at,
            duration_ms: to_u64(self.duration_ms, "node duration")?,
            last_used_at: self.last_used_at,
        })
    }
}
