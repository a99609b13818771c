//! A BuildGrid started on loopback as a cache (CAS, action cache and
//! ByteStream on disk; no scheduler, so no PostgreSQL), for the tests of
//! comb-remote and of `comb build --remote-cache`. BuildGrid comes from
//! `.ci/install-deps`, in a venv outside the checkout (`$COMB_BUILDGRID`,
//! default `/var/tmp/comb-buildgrid/bin/bgd`); without it the tests fail
//! and say so.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bgd() -> PathBuf {
    let path = std::env::var_os("COMB_BUILDGRID")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/comb-buildgrid/bin/bgd"));
    assert!(
        path.is_file(),
        "BuildGrid's bgd is not at {}: run .ci/install-deps (or set COMB_BUILDGRID)",
        path.display()
    );
    path
}

/// A BuildGrid serving instance `main` from `dir`, killed when dropped.
pub struct Server {
    pub child: Child,
    /// `grpc://127.0.0.1:PORT`; the instance is `main`.
    pub url: String,
    /// Where it keeps its blobs.
    pub cas: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start(allow_updates: bool) -> Server {
    let bgd = bgd();
    let dir = tempfile::tempdir().unwrap();
    let cas = dir.path().join("cas");
    std::fs::create_dir(&cas).unwrap();
    let port = free_port();
    let config = dir.path().join("cache.yml");
    std::fs::write(
        &config,
        format!(
            "server:\n  - !channel\n    address: \"127.0.0.1:{port}\"\n    insecure-mode: true\n\
             authorization:\n  method: none\n\
             storages:\n  - !disk-storage &cas\n    path: {}\n\
             caches:\n  - !lru-action-cache &ac\n    storage: *cas\n    max-cached-refs: 10000\n    \
             allow-updates: {allow_updates}\n    cache-failed-actions: false\n\
             instances:\n  - name: main\n    services:\n      - !action-cache\n        cache: *ac\n      \
             - !cas\n        storage: *cas\n      - !bytestream\n        storage: *cas\n",
            cas.display()
        ),
    )
    .unwrap();
    launch(&bgd, config, port, cas, dir)
}

impl Server {
    /// The files of its storage that hold the blob `sha256` (its disk
    /// storage names them by hash, split into directories).
    pub fn blob_files(&self, sha256: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut todo = vec![self.cas.clone()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    todo.push(p);
                } else if p.to_string_lossy().replace('/', "").contains(sha256) {
                    out.push(p);
                }
            }
        }
        out
    }
}

/// A PostgreSQL on a loopback port, for BuildGrid's scheduler: its data
/// in a temporary directory, stopped when dropped. As root it runs as the
/// `postgres` user (PostgreSQL refuses root).
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_postgres: bool,
}

fn postgres_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .filter(|b| b.join("initdb").is_file())
        .expect("PostgreSQL is not installed: run .ci/install-deps")
}

impl Postgres {
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("comb-pg")
            .tempdir_in("/tmp")
            .unwrap();
        // SAFETY: getuid cannot fail.
        let as_postgres = unsafe { libc::getuid() } == 0;
        let pg = Postgres {
            port: free_port(),
            bin: postgres_bin(),
            dir,
            as_postgres,
        };
        let data = pg.dir.path().join("data");
        if as_postgres {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let run = |mut c: Command, what: &str| {
            let out = c.output().unwrap();
            assert!(
                out.status.success(),
                "{what}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let mut initdb = pg.command("initdb");
        initdb.args(["-A", "trust", "-U", "bgd", "-D"]).arg(&data);
        run(initdb, "initdb");
        let mut start = pg.command("pg_ctl");
        start
            .args(["-w", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(pg.dir.path().join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
                pg.port,
                pg.dir.path().display()
            ))
            .arg("start");
        run(start, "pg_ctl start");
        let mut create = pg.command("createdb");
        create.args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "bgd",
            "bgd",
        ]);
        run(create, "createdb");
        pg
    }

    pub fn url(&self) -> String {
        format!("postgresql+psycopg2://bgd@127.0.0.1:{}/bgd", self.port)
    }

    /// What `sql` selects from BuildGrid's database, as psql prints it
    /// unaligned.
    pub fn query(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "bgd"])
            .args(["-d", "bgd", "-A", "-t", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = self.command("pg_ctl");
        stop.args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
    }
}

/// A BuildGrid that also schedules: its Execute service hands actions to
/// bots (`comb worker`) through its Remote Workers API. A bot silent for
/// `keepalive` seconds is taken for dead and its job given to another.
pub struct ExecutionServer {
    pub server: Server,
    pub postgres: Postgres,
}

pub fn start_execution(allow_updates: bool, keepalive: u32) -> ExecutionServer {
    let bgd = bgd();
    let postgres = Postgres::start();
    let migrate = Command::new(&bgd)
        .args(["migrate", "apply"])
        .arg(postgres.url())
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "bgd migrate: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let cas = dir.path().join("cas");
    std::fs::create_dir(&cas).unwrap();
    let port = free_port();
    let config = dir.path().join("execution.yml");
    std::fs::write(
        &config,
        format!(
            "server:\n  - !channel\n    address: \"127.0.0.1:{port}\"\n    insecure-mode: true\n\
             authorization:\n  method: none\n\
             thread-pool-size: 100\n\
             limiter:\n  !limiter\n  concurrent-request-limit: 90\n\
             connections:\n  - !sql-connection &sql\n    connection-string: {url}\n    pool-size: 20\n    max-overflow: 40\n\
             storages:\n  - !disk-storage &cas\n    path: {cas}\n\
             caches:\n  - !lru-action-cache &ac\n    storage: *cas\n    max-cached-refs: 10000\n    \
             allow-updates: {allow_updates}\n    cache-failed-actions: false\n\
             schedulers:\n  - !sql-scheduler &scheduler\n    storage: *cas\n    sql: *sql\n    \
             action-cache: *ac\n    bot-session-keepalive-timeout: {keepalive}\n    \
             assigners:\n      - !priority-age-assigner\n        interval: 0.01\n        \
             jitter-factor: 0.005\n        failure-backoff: 0.1\n        \
             bot-assignment-strategy: !assign-by-locality {{}}\n    \
             session-expiry-timer-interval: 1\n    poll-interval: 0.05\n    bot-poll-interval: 0.05\n\
             instances:\n  - name: main\n    services:\n      - !action-cache\n        cache: *ac\n      \
             - !execution\n        scheduler: *scheduler\n        endpoints: [execution, operations, bots]\n      \
             - !cas\n        storage: *cas\n      - !bytestream\n        storage: *cas\n",
            url = postgres.url(),
            cas = cas.display()
        ),
    )
    .unwrap();
    let server = launch(&bgd, config, port, cas, dir);
    ExecutionServer { server, postgres }
}

fn launch(
    bgd: &std::path::Path,
    config: PathBuf,
    port: u16,
    cas: PathBuf,
    dir: tempfile::TempDir,
) -> Server {
    let log = std::fs::File::create(dir.path().join("bgd.log")).unwrap();
    let child = Command::new(bgd)
        .args(["server", "start"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        url: format!("grpc://127.0.0.1:{port}"),
        cas,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || server.child.try_wait().unwrap().is_some() {
            let log = std::fs::read_to_string(server._dir.path().join("bgd.log")).unwrap();
            panic!("BuildGrid did not start:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

impl Server {
    /// What BuildGrid printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("bgd.log")).unwrap_or_default()
    }
}
