//! The service's SQLite database, beside the store's index: the queue of
//! requests (which survives a restart of the daemon), what each pocket has
//! published, and the audit log ([`crate::audit`]).

use crate::error::Result;
use crate::publish::PocketDeb;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    pocket TEXT NOT NULL,
    from_pocket TEXT,
    packages TEXT NOT NULL,
    uid INTEGER NOT NULL,
    user TEXT NOT NULL,
    state TEXT NOT NULL,
    queued_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    run INTEGER,
    reason TEXT,
    versions TEXT
);
CREATE INDEX IF NOT EXISTS requests_by_state ON requests (state, id);
CREATE TABLE IF NOT EXISTS published (
    pocket TEXT NOT NULL,
    package TEXT NOT NULL,
    version TEXT NOT NULL,
    debs TEXT NOT NULL,
    request INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (pocket, package)
);
";

/// A request's state.
pub mod state {
    pub const QUEUED: &str = "queued";
    pub const RUNNING: &str = "running";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
    pub const CANCELLED: &str = "cancelled";
    pub const REFUSED: &str = "refused";

    /// States a request does not leave.
    pub fn is_final(s: &str) -> bool {
        [SUCCEEDED, FAILED, CANCELLED, REFUSED].contains(&s)
    }
}

/// One request, as the queue holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRow {
    pub id: i64,
    /// `submit` or `promote`.
    pub kind: String,
    /// The pocket it builds for (promote: the one it copies into).
    pub pocket: String,
    /// promote: the pocket it copies from.
    pub from_pocket: Option<String>,
    pub packages: Vec<String>,
    pub uid: u32,
    pub user: String,
    pub state: String,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub attempts: u32,
    /// The engine run that built it.
    pub run: Option<i64>,
    /// Why it failed, was refused or cancelled.
    pub reason: Option<String>,
    /// What it published: package → version.
    pub versions: BTreeMap<String, String>,
}

/// A request about to be recorded.
pub struct NewRequest<'a> {
    pub kind: &'a str,
    pub pocket: &'a str,
    pub from_pocket: Option<&'a str>,
    pub packages: &'a [String],
    pub uid: u32,
    pub user: &'a str,
    pub state: &'a str,
    pub reason: Option<&'a str>,
}

/// A package a pocket has published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    pub pocket: String,
    pub package: String,
    pub version: String,
    pub debs: Vec<PocketDeb>,
    /// The request that put it there.
    pub request: i64,
    pub at: i64,
}

pub struct Db {
    conn: Connection,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

const REQUEST_COLUMNS: &str =
    "id, kind, pocket, from_pocket, packages, uid, user, state, queued_at, \
     started_at, finished_at, attempts, run, reason, versions";

fn request_row(r: &rusqlite::Row) -> rusqlite::Result<RequestRow> {
    let packages: String = r.get(4)?;
    let versions: Option<String> = r.get(14)?;
    Ok(RequestRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        pocket: r.get(2)?,
        from_pocket: r.get(3)?,
        packages: serde_json::from_str(&packages).unwrap_or_default(),
        uid: r.get(5)?,
        user: r.get(6)?,
        state: r.get(7)?,
        queued_at: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
        attempts: r.get(11)?,
        run: r.get(12)?,
        reason: r.get(13)?,
        versions: versions
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default(),
    })
}

impl Db {
    /// Opens (and creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Db> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        crate::audit::init(&conn)?;
        Ok(Db { conn })
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn insert_request(&self, r: &NewRequest) -> Result<i64> {
        let packages = serde_json::to_string(r.packages).unwrap_or_default();
        let finished = state::is_final(r.state).then(now);
        self.conn.execute(
            "INSERT INTO requests (kind, pocket, from_pocket, packages, uid, user, state, queued_at, finished_at, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![r.kind, r.pocket, r.from_pocket, packages, r.uid, r.user, r.state, now(), finished, r.reason],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn request(&self, id: i64) -> Result<Option<RequestRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?1"),
                params![id],
                request_row,
            )
            .optional()?)
    }

    /// The oldest queued request, now marked running.
    pub fn start_next(&self) -> Result<Option<RequestRow>> {
        let Some(id) = self
            .conn
            .query_row(
                "SELECT id FROM requests WHERE state = 'queued' ORDER BY id LIMIT 1",
                [],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
        else {
            return Ok(None);
        };
        self.conn.execute(
            "UPDATE requests SET state = 'running', started_at = ?2, attempts = attempts + 1
             WHERE id = ?1 AND state = 'queued'",
            params![id, now()],
        )?;
        self.request(id)
    }

    /// Ends a request. A request already ended (cancelled meanwhile) keeps
    /// its state; returns whether this call ended it.
    pub fn finish(
        &self,
        id: i64,
        state: &str,
        reason: Option<&str>,
        versions: &BTreeMap<String, String>,
    ) -> Result<bool> {
        let versions = serde_json::to_string(versions).unwrap_or_default();
        let changed = self.conn.execute(
            "UPDATE requests SET state = ?2, finished_at = ?3, reason = ?4, versions = ?5
             WHERE id = ?1 AND state IN ('queued', 'running')",
            params![id, state, now(), reason, versions],
        )?;
        Ok(changed > 0)
    }

    pub fn set_run(&self, id: i64, run: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE requests SET run = ?2 WHERE id = ?1",
            params![id, run],
        )?;
        Ok(())
    }

    /// Requests a daemon was running when it stopped go back to the queue
    /// (they keep their place: the queue is in id order).
    pub fn requeue_running(&self) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM requests WHERE state = 'running' ORDER BY id")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, i64>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        self.conn.execute(
            "UPDATE requests SET state = 'queued', started_at = NULL WHERE state = 'running'",
            [],
        )?;
        Ok(ids)
    }

    /// Queued and running requests of `uid`.
    pub fn in_flight(&self, uid: u32) -> Result<u32> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM requests WHERE uid = ?1 AND state IN ('queued', 'running')",
            params![uid],
            |r| r.get(0),
        )?)
    }

    /// Queued and running requests, oldest first.
    pub fn active(&self) -> Result<Vec<RequestRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE state IN ('queued', 'running') ORDER BY id"
        ))?;
        let rows = stmt
            .query_map([], request_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The last `limit` ended requests of a pocket, newest first.
    pub fn recent(&self, pocket: &str, limit: u32) -> Result<Vec<RequestRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests
             WHERE pocket = ?1 AND state NOT IN ('queued', 'running') ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![pocket, limit], request_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub fn published(&self, pocket: &str) -> Result<Vec<Published>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT pocket, package, version, debs, request, at FROM published
             WHERE pocket = ?1 ORDER BY package",
        )?;
        let rows = stmt
            .query_map(params![pocket], published_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub fn published_one(&self, pocket: &str, package: &str) -> Result<Option<Published>> {
        Ok(self
            .conn
            .query_row(
                "SELECT pocket, package, version, debs, request, at FROM published
                 WHERE pocket = ?1 AND package = ?2",
                params![pocket, package],
                published_row,
            )
            .optional()?)
    }

    /// Records what a pocket now publishes, all packages at once.
    pub fn set_published(&mut self, rows: &[Published]) -> Result<()> {
        let tx = self.conn.transaction()?;
        for p in rows {
            tx.execute(
                "INSERT OR REPLACE INTO published (pocket, package, version, debs, request, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    p.pocket,
                    p.package,
                    p.version,
                    serde_json::to_string(&p.debs).unwrap_or_default(),
                    p.request,
                    p.at
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn published_row(r: &rusqlite::Row) -> rusqlite::Result<Published> {
    let debs: String = r.get(3)?;
    Ok(Published {
        pocket: r.get(0)?,
        package: r.get(1)?,
        version: r.get(2)?,
        debs: serde_json::from_str(&debs).unwrap_or_default(),
        request: r.get(4)?,
        at: r.get(5)?,
    })
}
