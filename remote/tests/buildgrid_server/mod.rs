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
    let log = std::fs::File::create(dir.path().join("bgd.log")).unwrap();
    let child = Command::new(&bgd)
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
