//! comb-distro against mirrors: a signed one that each test builds in a
//! temporary directory (throwaway GnuPG keys, real .debs from dpkg-deb),
//! served as `file://` and over HTTP on 127.0.0.1, and the real mirror of
//! the host's APT sources.
//!
//! Needs: gpg (gnupg), gpgv, dpkg-deb (dpkg), and for the last test the
//! network to reach the host's mirror.

use comb_distro::fetch::{sha256_hex, FetchOptions};
use comb_distro::index::{fetch_snapshot_with, SnapshotOptions};
use comb_distro::{
    fetch_snapshot, fetch_to, parallel_fetch, Error, FetchItem, Fetcher, IndexKind, MirrorConfig,
    SnapshotLock,
};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const SUITE: &str = "combtest";

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (install gnupg and dpkg)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A throwaway GnuPG home with one signing key; its agent is stopped on drop.
struct Key {
    home: PathBuf,
    keyring: PathBuf,
}

impl Key {
    fn new(dir: &Path, name: &str) -> Key {
        let home = dir.join(format!("gnupg-{name}"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let key = Key {
            keyring: dir.join(format!("{name}.gpg")),
            home,
        };
        run(key.gpg().args([
            "--passphrase",
            "",
            "--quick-gen-key",
            &format!("comb test {name} <test@invalid>"),
            "ed25519",
            "sign",
            "never",
        ]));
        let out = run(key.gpg().arg("--export"));
        std::fs::write(&key.keyring, out.stdout).unwrap();
        key
    }

    fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        c.arg("--batch")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--pinentry-mode", "loopback"]);
        c
    }

    fn clearsign(&self, input: &Path, output: &Path) {
        let _ = std::fs::remove_file(output);
        run(self
            .gpg()
            .args(["--passphrase", "", "--clearsign", "-o"])
            .arg(output)
            .arg(input));
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

struct Deb {
    name: String,
    filename: String,
    size: u64,
    sha256: String,
}

/// A real .deb built by dpkg-deb; `postinst` makes it run a script.
fn build_deb(
    work: &Path,
    mirror_root: &Path,
    name: &str,
    version: &str,
    depends: &str,
    postinst: Option<&str>,
) -> Deb {
    let tree = work.join(format!("tree-{name}"));
    std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(tree.join("usr/share/doc").join(name)).unwrap();
    std::fs::write(
        tree.join("usr/share/doc").join(name).join("README"),
        format!("{name}\n"),
    )
    .unwrap();
    let mut control = format!(
        "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: comb <test@invalid>\n\
         Description: comb test package {name}\n"
    );
    if !depends.is_empty() {
        control.push_str(&format!("Depends: {depends}\n"));
    }
    std::fs::write(tree.join("DEBIAN/control"), control).unwrap();
    if let Some(script) = postinst {
        let p = tree.join("DEBIAN/postinst");
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let filename = format!("pool/main/{}/{name}/{name}_{version}_all.deb", &name[..1]);
    let dest = mirror_root.join(&filename);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&dest));
    let bytes = std::fs::read(&dest).unwrap();
    Deb {
        name: name.to_string(),
        filename,
        size: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
    }
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A signed mirror in a temporary directory, at `root`.
struct Fixture {
    _dir: tempfile::TempDir,
    work: PathBuf,
    root: PathBuf,
    key: Key,
    debs: Vec<Deb>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().to_path_buf();
        let root = work.join("mirror");
        let key = Key::new(&work, "archive");
        let mut debs = vec![
            build_deb(&work, &root, "combtest-base", "1.0-1", "", None),
            build_deb(
                &work,
                &root,
                "combtest-tool",
                "2:0.9~rc1-3",
                "combtest-base (>= 1.0), libc6 | combtest-base",
                Some("#!/bin/sh\nset -e\necho configured > /tmp/combtest-postinst\n"),
            ),
        ];
        for i in 0..4 {
            debs.push(build_deb(
                &work,
                &root,
                &format!("combtest-extra{i}"),
                "0.1",
                "",
                None,
            ));
        }
        let mut packages = String::new();
        for d in &debs {
            let tree = work.join(format!("tree-{}", d.name));
            let control = std::fs::read_to_string(tree.join("DEBIAN/control")).unwrap();
            packages.push_str(control.trim_end());
            packages.push_str(&format!(
                "\nPriority: optional\nFilename: {}\nSize: {}\nSHA256: {}\n\n",
                d.filename, d.size, d.sha256
            ));
        }
        let sources = format!(
            "Package: combtest\nBinary: combtest-base, combtest-tool\nVersion: 1.0-1\nArchitecture: all\n\
             Build-Depends: debhelper-compat (= 13), combtest-base <!nocheck>\nDirectory: pool/main/c/combtest\n\
             Checksums-Sha256:\n {} 10 combtest_1.0-1.dsc\n"
            , sha256_hex(b"0123456789")
        );
        let dists = root.join("dists").join(SUITE);
        let files: Vec<(String, Vec<u8>)> = vec![
            (
                "main/binary-amd64/Packages".into(),
                packages.clone().into_bytes(),
            ),
            (
                "main/binary-amd64/Packages.xz".into(),
                xz(packages.as_bytes()),
            ),
            ("main/source/Sources".into(), sources.clone().into_bytes()),
            ("main/source/Sources.xz".into(), xz(sources.as_bytes())),
        ];
        let mut sha_list = String::new();
        for (path, data) in &files {
            let p = dists.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
            sha_list.push_str(&format!(" {} {} {path}\n", sha256_hex(data), data.len()));
        }
        let release = format!(
            "Origin: comb\nLabel: comb\nSuite: {SUITE}\nCodename: {SUITE}\n\
             Date: Sat, 10 May 2025 09:01:47 UTC\nArchitectures: amd64 all\nComponents: main\n\
             Description: comb test mirror\nSHA256:\n{sha_list}"
        );
        std::fs::write(dists.join("Release"), release).unwrap();
        key.clearsign(&dists.join("Release"), &dists.join("InRelease"));
        Fixture {
            _dir: dir,
            work,
            root,
            key,
            debs,
        }
    }

    fn dists(&self) -> PathBuf {
        self.root.join("dists").join(SUITE)
    }

    fn mirror(&self, uri: &str) -> MirrorConfig {
        MirrorConfig {
            uri: uri.to_string(),
            suite: SUITE.to_string(),
            components: vec!["main".to_string()],
            architecture: "amd64".to_string(),
            keyring: self.key.keyring.clone(),
        }
    }

    fn file_uri(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn dest(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }
}

/// A tiny HTTP server for a directory on 127.0.0.1 (port 0). Paths under
/// `/flaky/` fail once with 503 before they are served. Counts requests.
struct Server {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    url: String,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Server {
    fn serve(root: &Path) -> Server {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let root = root.to_path_buf();
        let (s, h) = (server.clone(), hits.clone());
        let thread = std::thread::spawn(move || {
            for request in s.incoming_requests() {
                let url = request.url().to_string();
                let count = {
                    let mut h = h.lock().unwrap();
                    let c = h.entry(url.clone()).or_insert(0);
                    *c += 1;
                    *c
                };
                let (path, flaky) = match url.strip_prefix("/flaky") {
                    Some(rest) => (rest.to_string(), true),
                    None => (url.clone(), false),
                };
                let file = root.join(path.trim_start_matches('/'));
                let response = if flaky && count == 1 {
                    tiny_http::Response::from_string("busy").with_status_code(503)
                } else if path.contains("..") || !file.is_file() {
                    tiny_http::Response::from_string("not found").with_status_code(404)
                } else {
                    tiny_http::Response::from_data(std::fs::read(&file).unwrap())
                };
                let _ = request.respond(response);
            }
        });
        Server {
            server,
            thread: Some(thread),
            url: format!("http://127.0.0.1:{port}"),
            hits,
        }
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn fast_fetcher() -> Fetcher {
    Fetcher::new(FetchOptions {
        retry_pause: std::time::Duration::from_millis(10),
        ..FetchOptions::default()
    })
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

#[test]
fn good_snapshot_verifies_and_parses_over_file_and_http() {
    let fx = Fixture::new();
    let server = Server::serve(&fx.root);
    for (label, uri) in [("file", fx.file_uri()), ("http", server.url.clone())] {
        let dir = fx.dest(&format!("snap-{label}"));
        let mirror = fx.mirror(&uri);
        let snap = fetch_snapshot(&mirror, &dir, true).unwrap();
        assert_eq!(snap.release.suite.as_deref(), Some(SUITE));
        assert_eq!(snap.release.sha256.len(), 4);
        assert_eq!(snap.signers.len(), 1);
        assert_eq!(snap.packages.len(), 1);
        assert_eq!(snap.packages[0].path, "main/binary-amd64/Packages");
        assert_eq!(
            snap.packages[0].fetched.path,
            "main/binary-amd64/Packages.xz"
        );
        assert!(snap.packages[0].local.is_file());

        let pkgs = snap.read_packages().unwrap();
        assert_eq!(pkgs.len(), fx.debs.len());
        let tool = pkgs.iter().find(|p| p.name == "combtest-tool").unwrap();
        assert_eq!(tool.version.epoch, 2);
        assert_eq!(tool.depends.len(), 2);
        assert_eq!(tool.depends[1].alternatives.len(), 2);
        let deb = fx.debs.iter().find(|d| d.name == "combtest-tool").unwrap();
        assert_eq!(
            (tool.sha256.as_str(), tool.size),
            (deb.sha256.as_str(), deb.size)
        );

        let srcs = snap.read_sources().unwrap();
        assert_eq!(srcs[0].binaries, ["combtest-base", "combtest-tool"]);
        assert_eq!(snap.sources[0].kind, IndexKind::Sources);

        // The lock survives serialisation and re-verifies offline...
        let lock = snap.lock().unwrap();
        let json = serde_json::to_string_pretty(&lock).unwrap();
        let back: SnapshotLock = serde_json::from_str(&json).unwrap();
        assert_eq!(back, lock);
        let again = back.verify(&dir).unwrap();
        assert_eq!(again.read_packages().unwrap().len(), pkgs.len());
        // ...and notices a changed stored file.
        let local = &snap.packages[0].local;
        let mut text = std::fs::read(local).unwrap();
        text[0] ^= 0x20;
        std::fs::write(local, &text).unwrap();
        let err = back.verify(&dir).unwrap_err();
        assert!(matches!(err, Error::LockMismatch { .. }), "{err}");
        assert!(
            err.to_string().contains("main/binary-amd64/Packages"),
            "{err}"
        );
        text[0] ^= 0x20;
        std::fs::write(local, &text).unwrap();
    }

    // A second snapshot into the same directory reuses the verified files.
    let before = server.hits(&format!("/dists/{SUITE}/main/binary-amd64/Packages.xz"));
    assert_eq!(before, 1);
    fetch_snapshot(&fx.mirror(&server.url), &fx.dest("snap-http"), true).unwrap();
    assert_eq!(
        server.hits(&format!("/dists/{SUITE}/main/binary-amd64/Packages.xz")),
        1
    );
    assert_eq!(server.hits(&format!("/dists/{SUITE}/InRelease")), 2);
}

#[test]
fn tampered_packages_is_refused_naming_the_file() {
    let fx = Fixture::new();
    let xz_path = fx.dists().join("main/binary-amd64/Packages.xz");
    let mut data = std::fs::read(&xz_path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 1;
    std::fs::write(&xz_path, &data).unwrap();
    let dir = fx.dest("snap");
    let err = fetch_snapshot(&fx.mirror(&fx.file_uri()), &dir, false).unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, Error::HashMismatch { .. }), "{msg}");
    assert!(msg.contains("main/binary-amd64/Packages.xz"), "{msg}");
    // No fallback to another compression after a mismatch, nothing kept.
    assert_eq!(
        files_in(&dir.join("main/binary-amd64")),
        Vec::<String>::new()
    );
}

#[test]
fn wrong_signature_is_refused_naming_the_keyring() {
    let fx = Fixture::new();
    let other = Key::new(&fx.work, "intruder");
    other.clearsign(&fx.dists().join("Release"), &fx.dists().join("InRelease"));
    let dir = fx.dest("snap");
    let err = fetch_snapshot(&fx.mirror(&fx.file_uri()), &dir, false).unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, Error::BadSignature { .. }), "{msg}");
    assert!(msg.contains(&fx.key.keyring.display().to_string()), "{msg}");
    assert!(
        msg.contains("NO_PUBKEY") || msg.contains("ERRSIG"),
        "gpgv's output: {msg}"
    );
    assert_eq!(
        files_in(&dir),
        Vec::<String>::new(),
        "the bad InRelease is not kept"
    );

    // A keyring that does not exist is named too.
    let mut mirror = fx.mirror(&fx.file_uri());
    mirror.keyring = fx.work.join("missing.gpg");
    let err = fetch_snapshot(&mirror, &dir, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing.gpg") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn text_outside_the_signature_is_refused() {
    let fx = Fixture::new();
    let inrelease = fx.dists().join("InRelease");
    let good = std::fs::read_to_string(&inrelease).unwrap();
    let evil_sha = format!(" {} 1 main/binary-amd64/Packages.xz\n", "0".repeat(64));
    for evil in [
        format!("SHA256:\n{evil_sha}\n{good}"),
        format!("{good}SHA256:\n{evil_sha}"),
        format!("{good}{good}"),
    ] {
        std::fs::write(&inrelease, &evil).unwrap();
        let err = fetch_snapshot(&fx.mirror(&fx.file_uri()), &fx.dest("snap"), false).unwrap_err();
        eprintln!("{err}");
        assert!(matches!(err, Error::BadClearsign { .. }), "{err}");
    }
    // A validly signed Release of another suite is not this suite's.
    std::fs::write(&inrelease, &good).unwrap();
    let other = fx.root.join("dists/other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(&inrelease, other.join("InRelease")).unwrap();
    let mut mirror = fx.mirror(&fx.file_uri());
    mirror.suite = "other".into();
    let err = fetch_snapshot(&mirror, &fx.dest("snap"), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not \"other\""), "{err}");
}

#[test]
fn deb_with_wrong_hash_is_refused_and_deleted() {
    let fx = Fixture::new();
    let server = Server::serve(&fx.root);
    let deb = &fx.debs[0];
    let wrong = sha256_hex(b"not this");
    for base in [fx.file_uri(), server.url.clone()] {
        let out = fx.dest(&format!("debs-{}", base.len()));
        std::fs::create_dir_all(&out).unwrap();
        let url = format!("{base}/{}", deb.filename);
        let dest = out.join("x.deb");
        let err = fetch_to(&url, &dest, Some((&wrong, deb.size))).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::HashMismatch { .. }), "{msg}");
        assert!(
            msg.contains(&url) && msg.contains(&wrong) && msg.contains(&deb.sha256),
            "{msg}"
        );
        assert_eq!(
            files_in(&out),
            Vec::<String>::new(),
            "no file and no temp left"
        );
        // Wrong size: cut off, deleted.
        let err = fetch_to(&url, &dest, Some((&deb.sha256, deb.size - 1))).unwrap_err();
        assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
        assert_eq!(files_in(&out), Vec::<String>::new());
        // Right hash: kept.
        let f = fetch_to(&url, &dest, Some((&deb.sha256, deb.size))).unwrap();
        assert_eq!((f.size, f.reused), (deb.size, false));
        assert_eq!(files_in(&out), ["x.deb"]);
    }
    // Missing files are NotFound, not retried; 503 is retried.
    let err = fast_fetcher()
        .fetch_to(
            &format!("{}/nope.deb", server.url),
            &fx.dest("nope.deb"),
            None,
        )
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { status: 404, .. }), "{err}");
    assert_eq!(server.hits("/nope.deb"), 1);
    let url = format!("{}/flaky/{}", server.url, deb.filename);
    let f = fast_fetcher()
        .fetch_to(&url, &fx.dest("flaky.deb"), Some((&deb.sha256, deb.size)))
        .unwrap();
    assert_eq!(f.sha256, deb.sha256);
    assert_eq!(server.hits(&format!("/flaky/{}", deb.filename)), 2);
}

#[test]
fn parallel_fetch_of_several_debs() {
    let fx = Fixture::new();
    let server = Server::serve(&fx.root);
    let out = fx.dest("debs");
    let mut items: Vec<FetchItem> = fx
        .debs
        .iter()
        .map(|d| FetchItem {
            uri: format!("{}/{}", server.url, d.filename),
            dest: out.join(format!("{}.deb", d.name)),
            sha256: d.sha256.clone(),
            size: d.size,
        })
        .collect();
    items.push(FetchItem {
        uri: format!("{}/{}", server.url, fx.debs[0].filename),
        dest: out.join("bad.deb"),
        sha256: sha256_hex(b"wrong"),
        size: fx.debs[0].size,
    });
    let calls = Mutex::new(Vec::new());
    let monotonic = AtomicBool::new(true);
    let results = parallel_fetch(&items, 3, |done, total, bytes| {
        let mut c = calls.lock().unwrap();
        if let Some(&(d, _, b)) = c.last() {
            if done <= d || bytes < b {
                monotonic.store(false, Ordering::Relaxed);
            }
        }
        c.push((done, total, bytes));
    });
    assert_eq!(results.len(), items.len());
    let (ok, bad) = results.split_at(fx.debs.len());
    for (r, d) in ok.iter().zip(&fx.debs) {
        let f = r.as_ref().unwrap();
        assert_eq!(f.sha256, d.sha256);
    }
    assert!(matches!(bad[0], Err(Error::HashMismatch { .. })));
    let calls = calls.into_inner().unwrap();
    assert_eq!(calls.len(), items.len());
    assert!(monotonic.load(Ordering::Relaxed), "{calls:?}");
    let total: u64 = fx.debs.iter().map(|d| d.size).sum();
    assert_eq!(
        calls.last().copied(),
        Some((items.len(), items.len(), total))
    );
    assert!(!out.join("bad.deb").exists());
    assert!(!files_in(&out).iter().any(|f| f.contains(".part")));
    // They are real packages: the one with a maintainer script has it.
    let info = run(Command::new("dpkg-deb")
        .arg("--info")
        .arg(out.join("combtest-tool.deb")));
    assert!(String::from_utf8_lossy(&info.stdout).contains("postinst"));
}

/// The real mirror of the host's APT sources. Downloads are cached outside
/// the checkout ($COMB_TEST_CACHE or /var/tmp/comb-test-cache); files whose
/// digests the current signed Release still gives are not downloaded again.
#[test]
fn real_mirror_from_host_sources() {
    let mirror = MirrorConfig::from_host().expect("the host's APT sources name a Debian mirror");
    let cache = std::env::var_os("COMB_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/comb-test-cache"));
    let key =
        sha256_hex(format!("{}|{}|{}", mirror.uri, mirror.suite, mirror.architecture).as_bytes());
    let dir = cache.join(format!(
        "{}-{}-{}",
        mirror.suite,
        mirror.architecture,
        &key[..12]
    ));
    let mut main_only = mirror.clone();
    main_only.components = vec!["main".to_string()];
    let snap = match fetch_snapshot_with(
        &Fetcher::default(),
        &main_only,
        &dir,
        &SnapshotOptions::default(),
    ) {
        Ok(s) => s,
        Err(e @ (Error::Download { .. } | Error::NotFound { .. })) => panic!(
            "cannot reach the host's Debian mirror {} (from its APT sources): {e}\n\
             This test needs the network to the package mirror (CI has it).",
            mirror.uri
        ),
        Err(e) => panic!("snapshot of {} {} failed: {e}", mirror.uri, mirror.suite),
    };
    assert!(snap.release.is_for(&mirror.suite));
    assert!(!snap.signers.is_empty());
    let pkgs = snap.read_packages().unwrap();
    assert!(pkgs.len() > 10_000, "only {} packages", pkgs.len());
    for name in ["hello", "libc6"] {
        let p = pkgs
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} is not in {}", snap.packages[0].local.display()));
        assert_eq!(p.sha256.len(), 64);
        assert!(p.filename.ends_with(".deb"));
        assert!(p.size > 0);
    }
    assert!(pkgs.iter().any(|p| p.essential && p.name == "bash"));
    // The lock re-verifies offline.
    snap.lock().unwrap().verify(&dir).unwrap();
}
