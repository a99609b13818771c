//! The audit log: an append-only, hash-chained table in SQLite.
//!
//! Every entry carries the BLAKE3 hash of its own contents and of the hash
//! of the entry before it (`prev_hash`; 64 zeros for the first), so
//! changing an entry breaks its own hash, and rehashing a changed entry
//! breaks the link from the next one. Ids are contiguous from 1, so a
//! deleted entry in the middle leaves a gap. [`verify`] checks all three.
//!
//! What the chain alone cannot show: a removed *tail*. Deleting the last
//! entries (and, for a careful intruder, resetting the id counter) leaves
//! a shorter chain that is still whole, and so does deleting everything.
//! The anchor for that is off-site: hooks report entries as they happen
//! (see `hooks`), so the latest hash someone else saw can be compared with
//! ours. A casual delete of the last entry is still caught once another
//! entry is appended, because ids come from SQLite's `AUTOINCREMENT`
//! counter and are never reused.
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

/// Appends `e` at the end of the chain and returns it as stored.
///
/// Must not be called inside a transaction already open on `conn`.
pub fn append(conn: &Connection, e: &NewEntry) -> Result<Entry, AuditError> {
    let detail_text = canonical_json(e.detail);
    let at = now();
    // IMMEDIATE takes the write lock before reading the last hash, so two
    // writers cannot both chain onto the same entry.
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
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
    let hash = fields.hash();
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
    tx.commit()?;
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

/// Walks the whole chain in id order; returns how many entries it checked,
/// or the first break.
pub fn verify(conn: &Connection) -> Result<usize, AuditError> {
    let mut stmt = conn.prepare(
        "SELECT id, at, actor, uid, kind, request, detail, prev_hash, hash
         FROM audit ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut prev: Option<(i64, String)> = None;
    let mut checked = 0usize;
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
        let computed = r.fields().hash();
        if computed != r.hash {
            return Err(AuditError::Broken {
                id: r.id,
                problem: format!(
                    "was changed: its hash is {}, its contents hash to {computed}",
                    r.hash
                ),
            });
        }
        checked += 1;
        prev = Some((r.id, r.hash));
    }
    Ok(checked)
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
    /// entries encode to the same bytes.
    fn hash(&self) -> String {
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
        let mut h = blake3::Hasher::new();
        h.update(b"comb audit entry v1\0");
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

    fn add(conn: &Connection, n: i64) -> Entry {
        let detail = json!({"n": n, "pocket": "stable", "packages": ["hello", "zlib"]});
        append(
            conn,
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

    /// What an intruder with write access to the file does first.
    fn drop_triggers(conn: &Connection) {
        conn.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
            .unwrap();
    }

    fn broken_id(r: Result<usize, AuditError>) -> (i64, String) {
        match r {
            Err(AuditError::Broken { id, problem }) => (id, problem),
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[test]
    fn appended_entries_verify() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db"));
        assert_eq!(verify(&conn).unwrap(), 0);
        let first = add(&conn, 1);
        assert_eq!(first.id, 1);
        assert_eq!(first.prev_hash, GENESIS);
        assert_eq!(first.hash.len(), 64);
        let daemon = append(
            &conn,
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
        assert_eq!(verify(&conn).unwrap(), 6);
        let all = show(&conn, None).unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(all[1].uid, None);
        assert_eq!(all[1].detail, daemon.detail);
        assert_eq!(all[1].hash, daemon.hash);
        // The stored detail is canonical: keys sorted, compact.
        let text: String = conn
            .query_row("SELECT detail FROM audit WHERE id = 2", [], |r| r.get(0))
            .unwrap();
        assert_eq!(text, r#"{"a":{"b":"é\n","y":[1,2.5,null]},"z":1}"#);
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
        assert_eq!(verify(&conn).unwrap(), 1);
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
            "UPDATE audit SET detail = '{\"n\":3,\"pocket\":\"unstable\"}' WHERE id = 3",
            [],
        )
        .unwrap();
        let (id, problem) = broken_id(verify(&conn));
        assert_eq!(id, 3);
        assert!(problem.starts_with("was changed"), "{problem}");
        let message = verify(&conn).unwrap_err().to_string();
        assert!(
            message.starts_with("audit entry 3 was changed"),
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
        conn.execute("UPDATE audit SET uid = 'root' WHERE id = 2", [])
            .unwrap();
        assert_eq!(broken_id(verify(&conn)).0, 2);
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
        let (id, problem) = broken_id(verify(&conn));
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
        assert_eq!(broken_id(verify(&conn)).0, 1);
    }

    #[test]
    fn deleted_last_entry_shows_once_another_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db"));
        for n in 1..=3 {
            add(&conn, n);
        }
        drop_triggers(&conn);
        conn.execute("DELETE FROM audit WHERE id = 3", []).unwrap();
        // Undetectable from the chain alone (see the module doc)…
        assert_eq!(verify(&conn).unwrap(), 2);
        // …but the id is not reused, so the next entry leaves a gap.
        assert_eq!(add(&conn, 4).id, 4);
        assert_eq!(broken_id(verify(&conn)).0, 3);
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
        .hash();
        conn.execute(
            "UPDATE audit SET actor = ?1, hash = ?2 WHERE id = 3",
            params![e.actor, new_hash],
        )
        .unwrap();
        let (id, problem) = broken_id(verify(&conn));
        assert_eq!(id, 4);
        assert!(problem.contains("does not follow entry 3"), "{problem}");
        assert!(problem.contains(&new_hash), "{problem}");
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
        assert_eq!(verify(&conn).unwrap(), 100);
        let mut requests: Vec<i64> = show(&conn, None)
            .unwrap()
            .iter()
            .map(|e| e.request.unwrap())
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
        for n in 1..=4 {
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
