//! The audit log: an append-only, hash-chained, keyed table in SQLite.
//!
//! Every entry carries a hash of its own contents and of the hash of the
//! entry before it (`prev_hash`; 64 zeros for the first), so changing an
//! entry breaks its own hash, and rehashing a changed entry breaks the link
//! from the next one. Ids are contiguous from 1, so a deleted entry in the
//! middle leaves a gap. [`verify`] checks all three.
//!
//! The hash is keyed: BLAKE3 in keyed mode, with a 32-byte random [`Key`]
//! kept beside the database in a file only the daemon's user may read
//! (`service.key`, mode 0600). Someone who can write the database but not
//! read the key cannot rewrite the chain so that it verifies, not even
//! all of it. The first keyed entry is a marker (`audit-keyed`) that says
//! how many entries came before it: a chain written by an older comb keeps
//! its unkeyed entries as a *legacy prefix*, whose last hash the keyed
//! marker seals, so they cannot be changed either once the marker exists.
//! A chain that has entries but no keyed marker fails verification.
//!
//! What the chain alone cannot show: a removed *tail*. Deleting the last
//! entries (and, for a careful intruder, resetting the id counter) leaves
//! a shorter chain that is still whole, and so does deleting everything;
//! so does a chain rewritten by someone who has the key. The anchor for
//! that is off-site: every hook event carries the chain's length and head
//! hash (`audit_length`, `audit_head`, from [`head`]), and
//! `comb audit verify --expect N:HASH` ([`expect`]) checks that the chain
//! still has entry N with that hash. A casual delete of the last entry is
//! also caught once another entry is appended, because ids come from
//! SQLite's `AUTOINCREMENT` counter and are never reused.
//!
//! comb itself only ever appends: this module has no update or delete,
//! and triggers refuse `UPDATE` and `DELETE` on the table. Anyone who can
//! write the database file can drop those triggers; they guard against
//! mistakes, the chain guards against tampering.
//!
//! The caller opens the database (WAL mode and a `busy_timeout`, as
//! everywhere in comb); [`append`] is safe from several connections and
//! threads at once, as it reads the last hash and inserts in one
//! `BEGIN IMMEDIATE` transaction.

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The key's file, beside the service database in the store.
pub const KEY_FILE: &str = "service.key";

/// The kind of the first keyed entry.
pub const MARKER_KIND: &str = "audit-keyed";

/// The key of the chain's hashes: 32 random bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id())
    }
}

impl Key {
    pub fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    /// A name for the key that does not reveal it: what the marker entry
    /// records, so that verifying with another key says so.
    pub fn id(&self) -> String {
        blake3::keyed_hash(&self.0, b"comb audit key id").to_hex()[..16].to_string()
    }

    /// The key in `dir` (the store), made if there is none: created with
    /// `O_EXCL|O_NOFOLLOW`, mode 0600, so nothing planted at its path is
    /// followed or taken over.
    pub fn load_or_create(dir: &Path) -> Result<Key, AuditError> {
        let path = dir.join(KEY_FILE);
        if let Some(key) = Key::load(dir)? {
            return Ok(key);
        }
        let mut bytes = [0u8; 32];
        fill_random(&mut bytes).map_err(|e| key_error(&path, "making", e))?;
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path);
        let mut file = match created {
            Ok(f) => f,
            // Another process made it meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Key::load(dir)?.ok_or_else(|| key_error(&path, "reading", e));
            }
            Err(e) => return Err(key_error(&path, "creating", e)),
        };
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| key_error(&path, "writing", e))?;
        Ok(Key(bytes))
    }

    /// The key in `dir`, or None when there is none. Refused unless it is
    /// a regular file (not a link) of 32 bytes that only its owner may
    /// read, owned by us (or read by root).
    pub fn load(dir: &Path) -> Result<Option<Key>, AuditError> {
        let path = dir.join(KEY_FILE);
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(AuditError::Key(format!(
                    "the audit key {} is a symbolic link: remove it (the key is never \
                     read through a link)",
                    path.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(AuditError::Key(format!(
                    "cannot read the audit key {}: {e}: run this as the daemon's user (or root)",
                    path.display()
                )))
            }
            Err(e) => return Err(key_error(&path, "opening", e)),
        };
        let md = file
            .metadata()
            .map_err(|e| key_error(&path, "reading", e))?;
        let me = nix::unistd::geteuid().as_raw();
        if !md.is_file() || md.mode() & 0o077 != 0 || (md.uid() != me && me != 0) {
            return Err(AuditError::Key(format!(
                "the audit key {} is not a private file of this user (mode {:04o}, owner uid {}): \
                 it must be a regular file of mode 0600 owned by the daemon's user; if it was \
                 tampered with, the chain will not verify",
                path.display(),
                md.mode() & 0o7777,
                md.uid()
            )));
        }
        let mut bytes = Vec::with_capacity(33);
        (&mut file)
            .take(33)
            .read_to_end(&mut bytes)
            .map_err(|e| key_error(&path, "reading", e))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            AuditError::Key(format!(
                "the audit key {} has {} bytes, not 32: it is damaged",
                path.display(),
                b.len()
            ))
        })?;
        Ok(Some(Key(bytes)))
    }
}

fn key_error(path: &Path, doing: &str, e: std::io::Error) -> AuditError {
    AuditError::Key(format!("{doing} the audit key {}: {e}", path.display()))
}

fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled part of buf.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        } else {
            filled += n as usize;
        }
    }
    Ok(())
}

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What to append; the id, time and hashes are filled in by [`append`].
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    /// User name of the client, or `"comb-serve"` for the daemon itself.
    pub actor: &'a str,
    /// The client's uid from `SO_PEERCRED`; `None` for the daemon.
    pub uid: Option<u32>,
    /// `"request"`, `"refused"`, `"queued"`, `"started"`, …
    pub kind: &'a str,
    /// The request this is about, if any.
    pub request: Option<i64>,
    pub detail: &'a serde_json::Value,
}

/// One entry as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    pub actor: String,
    pub uid: Option<u32>,
    pub kind: String,
    pub request: Option<i64>,
    pub detail: serde_json::Value,
    /// Lowercase hex.
    pub prev_hash: String,
    /// Lowercase hex.
    pub hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log database: {0} (is the store's database readable and writable?)")]
    Sqlite(#[from] rusqlite::Error),
    /// The chain is broken at `id`: the entry was changed, deleted, or does
    /// not follow the one before it.
    #[error(
        "audit entry {id} {problem}; the log cannot be trusted from there on: \
         compare it with the copies your hooks sent off-site"
    )]
    Broken { id: i64, problem: String },
    #[error("{0}")]
    Key(String),
    /// The chain has entries but none is keyed.
    #[error(
        "the audit log's {entries} entries are not keyed: it was rewritten without the key, \
         or no comb serve of this version has run on it yet (start one once, and it seals \
         the entries so far under its key)"
    )]
    Unkeyed { entries: usize },
    /// The chain is keyed but no key was given.
    #[error(
        "the audit log is keyed from entry {from} on, but there is no key to check it with \
         ({KEY_FILE} in the store is missing): it cannot be verified"
    )]
    NoKey { from: i64 },
    /// The marker names another key than the one given.
    #[error(
        "audit entry {id} was keyed with another key (key id {chain}) than the store's \
         {KEY_FILE} (key id {ours}): the key was replaced or the chain rewritten with another key"
    )]
    WrongKey {
        id: i64,
        chain: String,
        ours: String,
    },
    /// `--expect N:HASH` does not hold.
    #[error("{0}")]
    Expectation(String),
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Entries checked.
    pub entries: usize,
    /// Of which unkeyed, written before the key (the legacy prefix).
    pub legacy: usize,
    /// The last entry: its id and hash.
    pub head: Option<(i64, String)>,
}

/// Creates the table (and its append-only triggers) if missing.
pub fn init(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS audit (
             id        INTEGER PRIMARY KEY AUTOINCREMENT,
             at        INTEGER NOT NULL,
             actor     TEXT NOT NULL,
             uid       INTEGER,
             kind      TEXT NOT NULL,
             request   INTEGER,
             detail    TEXT NOT NULL,
             prev_hash TEXT NOT NULL,
             hash      TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
         CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
         BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
         CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
         BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    )
}

/// Appends `e` at the end of the chain, hashed with `key`, and returns it
/// as stored. A chain with no keyed entry yet first gets the marker that
/// seals what came before.
///
/// Must not be called inside a transaction already open on `conn`.
pub fn append(conn: &Connection, key: &Key, e: &NewEntry) -> Result<Entry, AuditError> {
    // IMMEDIATE takes the write lock before reading the last hash, so two
    // writers cannot both chain onto the same entry.
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    if marker(&tx)?.is_none() {
        let (legacy, head) = match last_entry(&tx)? {
            Some((id, hash)) => (id, hash),
            None => (0, GENESIS.to_string()),
        };
        let detail = serde_json::json!({
            "legacy_entries": legacy,
            "legacy_head": head,
            "key_id": key.id(),
        });
        insert(
            &tx,
            key,
            &NewEntry {
                actor: "comb-serve",
                uid: None,
                kind: MARKER_KIND,
                request: None,
                detail: &detail,
            },
        )?;
    }
    let entry = insert(&tx, key, e)?;
    tx.commit()?;
    Ok(entry)
}

/// The id of the first keyed entry, if any.
fn marker(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT id FROM audit WHERE kind = ?1 AND actor = 'comb-serve' AND uid IS NULL \
         ORDER BY id LIMIT 1",
        [MARKER_KIND],
        |r| r.get(0),
    )
    .optional()
}

fn last_entry(conn: &Connection) -> rusqlite::Result<Option<(i64, String)>> {
    conn.query_row(
        "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// The chain's length and head: the last entry's id and hash (what hook
/// events carry, for `comb audit verify --expect N:HASH`). Not verified.
pub fn head(conn: &Connection) -> Result<Option<(i64, String)>, AuditError> {
    Ok(last_entry(conn)?)
}

fn insert(tx: &Connection, key: &Key, e: &NewEntry) -> Result<Entry, AuditError> {
    let detail_text = canonical_json(e.detail);
    let at = now();
    let last = last_entry(tx)?;
    // The AUTOINCREMENT counter, so a deleted last entry's id is not reused.
    let seq: Option<i64> = tx
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'audit'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let last_id = last.as_ref().map_or(0, |(id, _)| *id);
    let id = last_id.max(seq.unwrap_or(0)) + 1;
    let prev_hash = last.map_or_else(|| GENESIS.to_string(), |(_, h)| h);
    let fields = Fields {
        id,
        at,
        actor: e.actor,
        uid: e.uid.map(i64::from),
        kind: e.kind,
        request: e.request,
        detail: &detail_text,
        prev_hash: &prev_hash,
    };
    let hash = fields.hash(Some(key));
    tx.execute(
        "INSERT INTO audit (id, at, actor, uid, kind, request, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            id,
            at,
            e.actor,
            e.uid,
            e.kind,
            e.request,
            detail_text,
            prev_hash,
            hash
        ],
    )?;
    Ok(Entry {
        id,
        at,
        actor: e.actor.to_string(),
        uid: e.uid,
        kind: e.kind.to_string(),
        request: e.request,
        detail: e.detail.clone(),
        prev_hash,
        hash,
    })
}

/// Walks the whole chain in id order: returns what it checked, or the
/// first break. Entries before the keyed marker are checked as the
/// unkeyed legacy prefix; the marker and all after it with `key`. A chain
/// with entries and no marker fails ([`AuditError::Unkeyed`]); so does a
/// keyed chain without a key ([`AuditError::NoKey`]).
pub fn verify(conn: &Connection, key: Option<&Key>) -> Result<Verified, AuditError> {
    let mut stmt = conn.prepare(
        "SELECT id, at, actor, uid, kind, request, detail, prev_hash, hash
         FROM audit ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut prev: Option<(i64, String)> = None;
    let mut checked = 0usize;
    let mut legacy = 0usize;
    let mut keyed = false;
    while let Some(row) = rows.next()? {
        let r = RawRow::read(row)?;
        let expected_id = prev.as_ref().map_or(1, |(id, _)| id + 1);
        if r.id != expected_id {
            let problem = match &prev {
                Some((p, _)) => format!(
                    "was deleted: ids jump from {p} to {}{}",
                    r.id,
                    if r.id - p > 2 {
                        format!(" (entries {expected_id} to {} are missing)", r.id - 1)
                    } else {
                        String::new()
                    }
                ),
                None => format!("was deleted: the first entry is {}, not 1", r.id),
            };
            return Err(AuditError::Broken {
                id: expected_id,
                problem,
            });
        }
        let expected_prev = prev.as_ref().map_or(GENESIS, |(_, h)| h.as_str());
        if r.prev_hash != expected_prev {
            let problem = match &prev {
                Some((p, _)) => format!(
                    "does not follow entry {p}: entry {p} was changed and rehashed, or this \
                     entry's link was changed (its prev_hash is {}, entry {p}'s hash is {})",
                    r.prev_hash, expected_prev
                ),
                None => format!(
                    "is the first entry but its prev_hash is {}, not zeros: \
                     earlier entries were removed or the link was changed",
                    r.prev_hash
                ),
            };
            return Err(AuditError::Broken { id: r.id, problem });
        }
        if !keyed && r.kind == MARKER_KIND && r.actor == "comb-serve" && r.uid.is_none() {
            keyed = true;
            let Some(key) = key else {
                return Err(AuditError::NoKey { from: r.id });
            };
            let detail: serde_json::Value =
                serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null);
            if let Some(chain) = detail["key_id"].as_str() {
                if chain != key.id() {
                    return Err(AuditError::WrongKey {
                        id: r.id,
                        chain: chain.to_string(),
                        ours: key.id(),
                    });
                }
            }
            if detail["legacy_entries"].as_u64() != Some(checked as u64) {
                return Err(AuditError::Broken {
                    id: r.id,
                    problem: format!(
                        "was changed: it seals {} unkeyed entries, but {checked} come before it",
                        detail["legacy_entries"]
                    ),
                });
            }
        }
        let computed = r.fields().hash(if keyed { key } else { None });
        if computed != r.hash {
            return Err(AuditError::Broken {
                id: r.id,
                problem: format!(
                    "was changed: its hash is {}, its contents hash to {computed}{}",
                    r.hash,
                    if keyed {
                        " with the store's key (a chain rehashed without the key does not verify)"
                    } else {
                        " (an unkeyed entry of the legacy prefix)"
                    }
                ),
            });
        }
        checked += 1;
        if !keyed {
            legacy += 1;
        }
        prev = Some((r.id, r.hash));
    }
    if checked > 0 && !keyed {
        return Err(AuditError::Unkeyed { entries: checked });
    }
    Ok(Verified {
        entries: checked,
        legacy,
        head: prev,
    })
}

/// Checks what someone saw off-site (a hook event's `audit_length` and
/// `audit_head`): the chain still has entry `n`, and its hash is `hash`.
/// Call it on a chain [`verify`] passed.
pub fn expect(conn: &Connection, n: i64, hash: &str) -> Result<(), AuditError> {
    let last = last_entry(conn)?.map_or(0, |(id, _)| id);
    if last < n {
        return Err(AuditError::Expectation(format!(
            "the audit log has {last} entries, but entry {n} was seen (hash {hash}): \
             entries {} to {n} were removed from its end",
            last + 1
        )));
    }
    let found: String =
        conn.query_row("SELECT hash FROM audit WHERE id = ?1", [n], |r| r.get(0))?;
    if !found.eq_ignore_ascii_case(hash) {
        return Err(AuditError::Expectation(format!(
            "audit entry {n} has hash {found}, but {hash} was seen: the chain was rewritten \
             (with the key) from entry {n} or before"
        )));
    }
    Ok(())
}

/// Parses `N:HASH` (what hook events carry as `audit_length` and
/// `audit_head`).
pub fn parse_expectation(text: &str) -> Result<(i64, String), String> {
    let bad = || {
        format!("--expect {text:?}: give N:HASH, an entry number and its 64-hex hash (a hook event's audit_length and audit_head)")
    };
    let (n, hash) = text.split_once(':').ok_or_else(bad)?;
    let n: i64 = n.trim().parse().map_err(|_| bad())?;
    let hash = hash.trim();
    if n < 1 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok((n, hash.to_ascii_lowercase()))
}

/// The entries at or after `since` (unix seconds), or all, in id order.
/// Does not verify the chain: call [`verify`] for that.
pub fn show(conn: &Connection, since: Option<i64>) -> Result<Vec<Entry>, AuditError> {
    let mut stmt = conn.prepare(
        "SELECT id, at, actor, uid, kind, request, detail, prev_hash, hash
         FROM audit WHERE ?1 IS NULL OR at >= ?1 ORDER BY id",
    )?;
    let mut rows = stmt.query([since])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(RawRow::read(row)?.into_entry()?);
    }
    Ok(out)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Compact JSON with object keys sorted, whatever serde_json's features:
/// the stored text is what is hashed, so it must not depend on them.
fn canonical_json(v: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        use serde_json::Value;
        match v {
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                out.push_str(&v.to_string())
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&map[k], out);
                }
                out.push('}');
            }
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// The hashed contents of an entry. `detail` is the stored JSON text, so a
/// stored entry is hashed byte for byte as written, never re-serialised.
struct Fields<'a> {
    id: i64,
    at: i64,
    actor: &'a str,
    uid: Option<i64>,
    kind: &'a str,
    request: Option<i64>,
    detail: &'a str,
    prev_hash: &'a str,
}

impl Fields<'_> {
    /// BLAKE3 over a tagged, length-prefixed encoding: no two different
    /// entries encode to the same bytes. Keyed (v2) with a key; without,
    /// the unkeyed v1 of the legacy prefix.
    fn hash(&self, key: Option<&Key>) -> String {
        fn bytes(h: &mut blake3::Hasher, b: &[u8]) {
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        }
        fn int(h: &mut blake3::Hasher, v: Option<i64>) {
            match v {
                None => h.update(&[0]),
                Some(v) => h.update(&[1]).update(&v.to_le_bytes()),
            };
        }
        let mut h = match key {
            Some(k) => {
                let mut h = blake3::Hasher::new_keyed(&k.0);
                h.update(b"comb audit entry v2\0");
                h
            }
            None => {
                let mut h = blake3::Hasher::new();
                h.update(b"comb audit entry v1\0");
                h
            }
        };
        int(&mut h, Some(self.id));
        int(&mut h, Some(self.at));
        bytes(&mut h, self.actor.as_bytes());
        int(&mut h, self.uid);
        bytes(&mut h, self.kind.as_bytes());
        int(&mut h, self.request);
        bytes(&mut h, self.detail.as_bytes());
        bytes(&mut h, self.prev_hash.as_bytes());
        h.finalize().to_hex().to_string()
    }
}

/// A row as stored; a column of the wrong type is reported as a change to
/// that entry, not as a database error.
struct RawRow {
    id: i64,
    at: i64,
    actor: String,
    uid: Option<i64>,
    kind: String,
    request: Option<i64>,
    detail: String,
    prev_hash: String,
    hash: String,
}

impl RawRow {
    fn read(row: &rusqlite::Row) -> Result<RawRow, AuditError> {
        let id: i64 = row.get(0)?;
        let bad = |column: &str| AuditError::Broken {
            id,
            problem: format!("was changed: its {column} is not of the type comb writes"),
        };
        let int = |i: usize, column: &str| match row.get::<_, SqlValue>(i)? {
            SqlValue::Integer(v) => Ok(v),
            _ => Err(bad(column)),
        };
        let opt_int = |i: usize, column: &str| match row.get::<_, SqlValue>(i)? {
            SqlValue::Integer(v) => Ok(Some(v)),
            SqlValue::Null => Ok(None),
            _ => Err(bad(column)),
        };
        let text = |i: usize, column: &str| match row.get::<_, SqlValue>(i)? {
            SqlValue::Text(v) => Ok(v),
            _ => Err(bad(column)),
        };
        Ok(RawRow {
            id,
            at: int(1, "time")?,
            actor: text(2, "actor")?,
            uid: opt_int(3, "uid")?,
            kind: text(4, "kind")?,
            request: opt_int(5, "request")?,
            detail: text(6, "detail")?,
            prev_hash: text(7, "prev_hash")?,
            hash: text(8, "hash")?,
        })
    }

    fn fields(&self) -> Fields<'_> {
        Fields {
            id: self.id,
            at: self.at,
            actor: &self.actor,
            uid: self.uid,
            kind: &self.kind,
            request: self.request,
            detail: &self.detail,
            prev_hash: &self.prev_hash,
        }
    }

    fn into_entry(self) -> Result<Entry, AuditError> {
        let id = self.id;
        let uid = match self.uid {
            None => None,
            Some(u) => Some(u32::try_from(u).map_err(|_| AuditError::Broken {
                id,
                problem: format!("was changed: its uid {u} is not a uid"),
            })?),
        };
        let detail = serde_json::from_str(&self.detail).map_err(|e| AuditError::Broken {
            id,
            problem: format!("was changed: its detail is not JSON ({e})"),
        })?;
        Ok(Entry {
            id,
            at: self.at,
            actor: self.actor,
            uid,
            kind: self.kind,
            request: self.request,
            detail,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn open(path: &std::path::Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .unwrap();
        init(&conn).unwrap();
        conn
    }

    fn key() -> Key {
        Key::from_bytes([7; 32])
    }

    fn add(conn: &Connection, n: i64) -> Entry {
        let detail = json!({"n": n, "pocket": "stable", "packages": ["hello", "zlib"]});
        append(
            conn,
            &key(),
            &NewEntry {
                actor: "alice",
                uid: Some(1000),
                kind: "request",
                request: Some(n),
                detail: &detail,
            },
        )
        .unwrap()
    }

    fn verified(conn: &Connection) -> usize {
        verify(conn, Some(&key())).unwrap().entries
    }

    /// What an intruder with write access to the file does first.
    fn drop_triggers(conn: &Connection) {
        conn.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
            .unwrap();
    }

    fn broken_id(r: Result<Verified, AuditError>) -> (i64, String) {
        match r {
            Err(AuditError::Broken { id, problem }) => (id, problem),
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    /// Rewrites every entry from `from` on with `hash_key` (None: the
    /// unkeyed hash), relinking the chain: what an intruder does.
    fn rehash_from(conn: &Connection, from: i64, hash_key: Option<&Key>) {
        rehash(conn, from, i64::MAX, hash_key)
    }

    fn rehash(conn: &Connection, from: i64, to: i64, hash_key: Option<&Key>) {
        let entries = show(conn, None).unwrap();
        let mut prev = entries
            .iter()
            .find(|e| e.id == from - 1)
            .map_or(GENESIS.to_string(), |e| e.hash.clone());
        for e in entries.iter().filter(|e| e.id >= from && e.id <= to) {
            let detail = canonical_json(&e.detail);
            let hash = Fields {
                id: e.id,
                at: e.at,
                actor: &e.actor,
                uid: e.uid.map(i64::from),
                kind: &e.kind,
                request: e.request,
                detail: &detail,
                prev_hash: &prev,
            }
            .hash(hash_key);
            conn.execute(
                "UPDATE audit SET prev_hash = ?2, hash = ?3 WHERE id = ?1",
                params![e.id, prev, hash],
            )
            .unwrap();
            prev = hash;
        }
    }

    #[test]
    fn appended_entries_verify() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db"));
        assert_eq!(verified(&conn), 0);
        let first = add(&conn, 1);
        // The marker comes first.
        assert_eq!(first.id, 2);
        let all = show(&conn, None).unwrap();
        assert_eq!(all[0].kind, MARKER_KIND);
        assert_eq!(all[0].prev_hash, GENESIS);
        assert_eq!(all[0].detail["legacy_entries"], 0);
        assert_eq!(all[0].detail["key_id"], key().id());
        assert_eq!(first.prev_hash, all[0].hash);
        assert_eq!(first.hash.len(), 64);
        let daemon = append(
            &conn,
            &key(),
            &NewEntry {
                actor: "comb-serve",
                uid: None,
                kind: "started",
                request: None,
                detail: &json!({"z": 1, "a": {"y": [1, 2.5, null], "b": "\u{e9}\n"}}),
            },
        )
        .unwrap();
        assert_eq!(daemon.prev_hash, first.hash);
        for n in 3..=6 {
            add(&conn, n);
        }
        let v = verify(&conn, Some(&key())).unwrap();
        assert_eq!(v.entries, 7);
        assert_eq!(v.legacy, 0);
        assert_eq!(v.head, head(&conn).unwrap());
        assert_eq!(v.head.as_ref().unwrap().0, 7);
        let all = show(&conn, None).unwrap();
        assert_eq!(all.len(), 7);
        assert_eq!(all[2].uid, None);
        assert_eq!(all[2].detail, daemon.detail);
        assert_eq!(all[2].hash, daemon.hash);
        // The stored detail is canonical: keys sorted, compact.
        let text: String = conn
            .query_row("SELECT detail FROM audit WHERE id = 3", [], |r| r.get(0))
            .unwrap();
        assert_eq!(text, r#"{"a":{"b":"é\n","y":[1,2.5,null]},"z":1}"#);
        // Without the key, a keyed chain cannot be verified.
        assert!(matches!(
            verify(&conn, None),
            Err(AuditError::NoKey { from: 1 })
        ));
    }

    #[test]
    fn triggers_refuse_update_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db"));
        add(&conn, 1);
        assert!(conn
            .execute("UPDATE audit SET actor = 'mallory'", [])
            .is_err());
        assert!(conn.execute("DELETE FROM audit", []).is_err());
        assert_eq!(verified(&conn), 2);
    }

    #[test]
    fn edited_detail_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db"));
        for n in 1..=5 {
            add(&conn, n);
        }
        drop_triggers(&conn);
        conn.execute(
            "UPDATE audit SET detail = '{\"n\":3,\"pocket\":\"unstable\"}' WHERE id = 4",
            [],
        )
        .unwrap();
        let (id, problem) = broken_id(verify(&conn, Some(&key())));
        assert_eq!(id, 4);
        assert!(problem.starts_with("was changed"), "{problem}");
        let message = verify(&conn, Some(&key())).unwrap_err().to_string();
        assert!(
            message.starts_with("audit entry 4 was changed"),
            "{message}"
        );
    }

    #[test]
    fn edited_uid_type_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db"));
        for n in 1..=3 {
            add(&conn, n);
        }
        drop_triggers(&conn);
        conn.execute("UPDATE audit SET uid = 'root' WHERE id = 3", [])
            .unwrap();
        assert_eq!(broken_id(verify(&conn, Some(&key()))).0, 3);
        assert!(show(&conn, None).is_err());
    }

    #[test]
    fn deleted_middle_entry_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db"));
        for n in 1..=5 {
            add(&conn, n);
        }
        drop_triggers(&conn);
        conn.execute("DELETE FROM audit WHERE id = 3", []).unwrap();
        let (id, problem) = broken_id(verify(&conn, Some(&key())));
        assert_eq!(id, 3);
        assert!(problem.contains("ids jump from 2 to 4"), "{problem}");
    }

    #[test]
    fn deleted_first_entry_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db"));
        for n in 1..=3 {
            add(&conn, n);
        }
        drop_triggers(&conn);
        conn.execute("DELETE FROM audit WHERE id = 1", []).unwrap();
        assert_eq!(broken_id(verify(&conn, Some(&key()))).0, 1);
    }

    #[test]
    fn deleted_last_entry_shows_once_another_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db"));
        for n in 1..=3 {
            add(&conn, n);
        }
        drop_triggers(&conn);
        conn.execute("DELETE FROM audit WHERE id = 4", []).unwrap();
        // Undetectable from the chain alone (see the module doc)…
        assert_eq!(verified(&conn), 3);
        // …but the id is not reused, so the next entry leaves a gap.
        assert_eq!(add(&conn, 4).id, 5);
        assert_eq!(broken_id(verify(&conn, Some(&key()))).0, 4);
    }

    #[test]
    fn a_truncated_chain_fails_the_expected_head() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db"));
        for n in 1..=20 {
            add(&conn, n);
        }
        // What a hook sent off-site.
        let (n, hash) = head(&conn).unwrap().unwrap();
        assert_eq!(n, 21);
        expect(&conn, n, &hash).unwrap();
        // An earlier head still holds too.
        let (m, early) = show(&conn, None)
            .unwrap()
            .into_iter()
            .map(|e| (e.id, e.hash))
            .nth(9)
            .unwrap();
        expect(&conn, m, &early).unwrap();
        // The intruder deletes the tail and resets the id counter.
        drop_triggers(&conn);
        conn.execute("DELETE FROM audit WHERE id > 14", []).unwrap();
        conn.execute(
            "UPDATE sqlite_sequence SET seq = 14 WHERE name = 'audit'",
            [],
        )
        .unwrap();
        assert_eq!(verified(&conn), 14);
        let e = expect(&conn, n, &hash).unwrap_err().to_string();
        assert!(e.contains("has 14 entries, but entry 21 was seen"), "{e}");
        assert!(e.contains("removed from its end"), "{e}");
        // And a rewrite with the key shows against an older head.
        let other = "ab".repeat(32);
        let e = expect(&conn, m, &other).unwrap_err().to_string();
        assert!(e.contains(&format!("entry {m} has hash {early}")), "{e}");
    }

    #[test]
    fn a_chain_rehashed_without_the_key_fails() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db"));
        for n in 1..=5 {
            add(&conn, n);
        }
        drop_triggers(&conn);
        conn.execute(
            "UPDATE audit SET actor = 'mallory' WHERE actor = 'alice'",
            [],
        )
        .unwrap();
        // With the unkeyed hash of old, from the first entry on.
        rehash_from(&conn, 1, None);
        let (id, problem) = broken_id(verify(&conn, Some(&key())));
        assert_eq!(id, 1);
        assert!(problem.contains("rehashed without the key"), "{problem}");
        // Without the marker, as an old unkeyed chain.
        conn.execute("DELETE FROM audit WHERE id = 1", []).unwrap();
        conn.execute("UPDATE audit SET id = id - 1", []).unwrap();
        rehash_from(&conn, 1, None);
        assert!(matches!(
            verify(&conn, Some(&key())),
            Err(AuditError::Unkeyed { entries: 5 })
        ));
        // With a key of the intruder's own.
        let theirs = Key::from_bytes([9; 32]);
        conn.execute("DELETE FROM audit", []).unwrap();
        conn.execute("DELETE FROM sqlite_sequence", []).unwrap();
        for n in 1..=3 {
            append(
                &conn,
                &theirs,
                &NewEntry {
                    actor: "mallory",
                    uid: Some(1),
                    kind: "request",
                    request: Some(n),
                    detail: &json!({}),
                },
            )
            .unwrap();
        }
        assert!(matches!(
            verify(&conn, Some(&key())),
            Err(AuditError::WrongKey { id: 1, .. })
        ));
    }

    #[test]
    fn a_wrong_key_fails() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db"));
        for n in 1..=3 {
            add(&conn, n);
        }
        let wrong = Key::from_bytes([8; 32]);
        let e = verify(&conn, Some(&wrong)).unwrap_err();
        assert!(matches!(e, AuditError::WrongKey { id: 1, .. }), "{e}");
        assert!(e.to_string().contains("another key"), "{e}");
        // Even when the marker is edited to name the wrong key's id, the
        // hashes do not verify under it.
        drop_triggers(&conn);
        conn.execute(
            "UPDATE audit SET detail = replace(detail, ?1, ?2) WHERE id = 1",
            params![key().id(), wrong.id()],
        )
        .unwrap();
        assert_eq!(broken_id(verify(&conn, Some(&wrong))).0, 1);
    }

    #[test]
    fn an_unkeyed_legacy_chain_is_sealed_by_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db"));
        for n in 1..=4 {
            add(&conn, n);
        }
        // Make it what an older comb wrote: no marker, unkeyed hashes.
        drop_triggers(&conn);
        conn.execute("DELETE FROM audit WHERE id = 1", []).unwrap();
        conn.execute("UPDATE audit SET id = id - 1", []).unwrap();
        conn.execute(
            "UPDATE sqlite_sequence SET seq = 4 WHERE name = 'audit'",
            [],
        )
        .unwrap();
        rehash_from(&conn, 1, None);
        assert!(matches!(
            verify(&conn, Some(&key())),
            Err(AuditError::Unkeyed { entries: 4 })
        ));
        // The next append seals them.
        add(&conn, 5);
        let v = verify(&conn, Some(&key())).unwrap();
        assert_eq!((v.entries, v.legacy), (6, 4));
        let marker = &show(&conn, None).unwrap()[4];
        assert_eq!(marker.kind, MARKER_KIND);
        assert_eq!(marker.detail["legacy_entries"], 4);
        // A legacy entry changed and the legacy prefix rehashed (which
        // needs no key) no longer leads to the keyed marker.
        conn.execute("UPDATE audit SET actor = 'mallory' WHERE id = 2", [])
            .unwrap();
        rehash(&conn, 2, 4, None);
        let (id, problem) = broken_id(verify(&conn, Some(&key())));
        assert_eq!(id, 5);
        assert!(problem.contains("does not follow entry 4"), "{problem}");
        // Relinking the marker changes what its keyed hash covers.
        conn.execute(
            "UPDATE audit SET prev_hash = (SELECT hash FROM audit WHERE id = 4) WHERE id = 5",
            [],
        )
        .unwrap();
        let (id, problem) = broken_id(verify(&conn, Some(&key())));
        assert_eq!(id, 5);
        assert!(problem.contains("was changed"), "{problem}");
    }

    #[test]
    fn rehashed_edit_breaks_the_next_link() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db"));
        for n in 1..=5 {
            add(&conn, n);
        }
        drop_triggers(&conn);
        // Rewrite entry 3 and give it the hash its new contents have.
        let mut e = show(&conn, None).unwrap().remove(2);
        assert_eq!(e.id, 3);
        e.actor = "mallory".into();
        let new_hash = Fields {
            id: e.id,
            at: e.at,
            actor: &e.actor,
            uid: e.uid.map(i64::from),
            kind: &e.kind,
            request: e.request,
            detail: &canonical_json(&e.detail),
            prev_hash: &e.prev_hash,
        }
        .hash(Some(&key()));
        conn.execute(
            "UPDATE audit SET actor = ?1, hash = ?2 WHERE id = 3",
            params![e.actor, new_hash],
        )
        .unwrap();
        let (id, problem) = broken_id(verify(&conn, Some(&key())));
        assert_eq!(id, 4);
        assert!(problem.contains("does not follow entry 3"), "{problem}");
        assert!(problem.contains(&new_hash), "{problem}");
    }

    #[test]
    fn the_key_file_is_private_and_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Key::load(dir.path()).unwrap(), None);
        let k = Key::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        let md = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o600);
        assert_eq!(md.len(), 32);
        assert_eq!(Key::load_or_create(dir.path()).unwrap(), k);
        assert_eq!(Key::load(dir.path()).unwrap(), Some(k.clone()));
        assert_ne!(
            Key::load_or_create(tempfile::tempdir().unwrap().path()).unwrap(),
            k
        );
        // Readable by others: refused, with its mode named.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let e = Key::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("mode 0644"), "{e}");
        // A link planted at its path is neither followed nor written
        // through.
        let other = tempfile::tempdir().unwrap();
        let victim = other.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, other.path().join(KEY_FILE)).unwrap();
        let e = Key::load_or_create(other.path()).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let dangling = tempfile::tempdir().unwrap();
        let target = dangling.path().join("made-through-the-link");
        std::os::unix::fs::symlink(&target, dangling.path().join(KEY_FILE)).unwrap();
        assert!(Key::load_or_create(dangling.path()).is_err());
        assert!(!target.exists());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn expectations_parse() {
        let h = "A".repeat(64);
        assert_eq!(
            parse_expectation(&format!("12:{h}")),
            Ok((12, "a".repeat(64)))
        );
        for bad in [
            "12".to_string(),
            "x:aa".into(),
            format!("0:{h}"),
            format!("3:{}", "g".repeat(64)),
            "3:abc".into(),
        ] {
            assert!(parse_expectation(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn concurrent_appends_all_land_in_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        drop(open(&path));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let conn = open(&path);
                    for i in 0..25 {
                        let detail = json!({"thread": t, "i": i});
                        append(
                            &conn,
                            &key(),
                            &NewEntry {
                                actor: "comb-serve",
                                uid: None,
                                kind: "queued",
                                request: Some(t * 100 + i),
                                detail: &detail,
                            },
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let conn = open(&path);
        assert_eq!(verified(&conn), 101);
        let mut requests: Vec<i64> = show(&conn, None)
            .unwrap()
            .iter()
            .filter_map(|e| e.request)
            .collect();
        requests.sort();
        let expected: Vec<i64> = (0..4)
            .flat_map(|t| (0..25).map(move |i| t * 100 + i))
            .collect();
        assert_eq!(requests, expected);
    }

    #[test]
    fn show_filters_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db"));
        for n in 1..=3 {
            add(&conn, n);
        }
        // Spread the entries over time; the chain no longer verifies, which
        // show does not care about.
        drop_triggers(&conn);
        conn.execute("UPDATE audit SET at = 1000 + id * 10", [])
            .unwrap();
        let ids = |since| -> Vec<i64> {
            show(&conn, since)
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect()
        };
        assert_eq!(ids(None), vec![1, 2, 3, 4]);
        assert_eq!(ids(Some(1030)), vec![3, 4]);
        assert_eq!(ids(Some(1031)), vec![4]);
        assert_eq!(ids(Some(2000)), Vec::<i64>::new());
        assert!(show(&conn, Some(0)).unwrap()[0].at >= 1010);
    }
}
