//! `comb update` and `comb env` against a signed mirror of tiny packages
//! that the tests generate (`tests/mirror/mod.rs`): resolution with
//! dependencies, alternatives and a virtual package, layers shared between
//! two sets, maintainer scripts run as R, a tampered index, a wrong
//! signature, a corrupt `.deb`, and a `comb` killed while it builds a layer.
//! No network. The sandbox needs root, like CI.

use crate::mirror;
use crate::repo;

use mirror::{PackageSpec, TestMirror};
use repo::is_root;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const COMB: &str = env!("CARGO_BIN_EXE_comb");

/// A mirror, a repository using it and a store, all in one scratch dir.
struct World {
    _dir: tempfile::TempDir,
    mirror: TestMirror,
    repo: PathBuf,
    store: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mirror = TestMirror::build(&dir.path().join("mirror"));
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        std::fs::write(repo.join("comb.toml"), mirror.distro_toml()).unwrap();
        let store = dir.path().join("store");
        World {
            _dir: dir,
            mirror,
            repo,
            store,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(COMB);
        c.args(args)
            .arg("--repo")
            .arg(&self.repo)
            .arg("--store")
            .arg(&self.store);
        c
    }

    fn comb(&self, args: &[&str]) -> Output {
        repo::logged(args, &mut self.command(args))
    }

    /// `comb env build --json` with these `--with`s: the events, by stage.
    fn build(&self, with: &[&str]) -> Vec<Value> {
        let mut args = vec!["env", "build", "--json"];
        for w in with {
            args.extend(["--with", w]);
        }
        let out = self.comb(&args);
        assert!(out.status.success(), "env build {with:?} failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// `comb env run` of `sh -c SCRIPT`; its stdout.
    fn run(&self, with: &[&str], root: bool, script: &str) -> String {
        let mut args = vec!["env", "run"];
        for w in with {
            args.extend(["--with", w]);
        }
        if root {
            args.extend(["--as", "root"]);
        }
        let out = self
            .command(&args)
            .args(["--", "sh", "-c", script])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "env run {script:?}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn blobs(&self) -> Vec<PathBuf> {
        files_under(&self.store.join("blobs"))
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn status_of<'a>(events: &'a [Value], stage: &str) -> &'a str {
    events
        .iter()
        .rev()
        .find(|e| e["stage"] == stage)
        .and_then(|e| e["status"].as_str())
        .unwrap_or_else(|| panic!("no {stage} event in {events:?}"))
}

/// The `Package: … Version: …` pairs of a dpkg status text.
fn installed(status: &str) -> Vec<(String, String)> {
    status
        .split("\n\n")
        .filter_map(|p| {
            let field = |name: &str| {
                p.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .map(str::to_string)
            };
            Some((field("Package")?, field("Version")?))
        })
        .collect()
}

#[test]
fn environments_resolve_install_as_root_and_share_layers() {
    if !is_root() {
        return;
    }
    let w = World::new();
    let update = w.comb(&["update"]);
    assert!(update.status.success());
    let lock = std::fs::read_to_string(w.repo.join("comb.lock")).unwrap();
    assert!(
        lock.contains("comb-test") && lock.contains("inrelease_sha256"),
        "{lock}"
    );

    let events = w.build(&["hello"]);
    for stage in ["base-install", "base-build", "pkg-env"] {
        assert_eq!(status_of(&events, stage), "built", "{stage}");
    }
    // Every fetched .deb was stored, verified, once.
    assert!(events.iter().any(|e| e["stage"] == "fetch"));

    // Resolution: hello's dependency at the newest version; the build
    // set's alternative `fake-gcc | fake-clang` takes the first.
    let status = w.run(&["hello"], true, "cat /var/lib/dpkg/status");
    let have = installed(&status);
    let has = |name: &str, version: Option<&str>| {
        have.iter()
            .any(|(n, v)| n == name && version.is_none_or(|want| want == v))
    };
    assert!(
        has("hello", None) && has("libgreeting", Some("2.0-1")),
        "{have:?}"
    );
    assert!(
        has("build-essential", None) && has("fake-gcc", None),
        "{have:?}"
    );
    assert!(!has("fake-clang", None), "{have:?}");

    // Maintainer scripts ran inside, as R.
    let marker = w.run(&[], false, "cat /var/lib/comb-test/base-files.postinst");
    assert!(marker.contains("uid=0 configure"), "{marker}");

    // U runs the installed program, as uid 1000.
    let hello = w.run(&["hello"], false, "hello; id -u");
    assert!(
        hello.contains("Hello, world!") && hello.trim_end().ends_with("1000"),
        "{hello}"
    );

    // A second set shares base-install and base-build; its virtual
    // dependency (mail-transport-agent) comes from tiny-mta, whose preinst
    // ran as R.
    let events = w.build(&["mail-user"]);
    assert_eq!(status_of(&events, "base-install"), "hit");
    assert_eq!(status_of(&events, "base-build"), "hit");
    assert_eq!(status_of(&events, "pkg-env"), "built");
    let preinst = w.run(
        &["mail-user"],
        false,
        "cat /var/lib/comb-test/tiny-mta.preinst",
    );
    assert!(preinst.contains("uid=0 install"), "{preinst}");
    // And the first set is a hit all the way up.
    let events = w.build(&["hello"]);
    for e in &events {
        assert_eq!(e["status"], "hit", "{e}");
    }

    // `comb env list` shows the four layers.
    let list = w.comb(&["env", "list", "--json"]);
    let rows: Vec<Value> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r["present"] == true && r["size"].as_u64() > Some(0)));
}

/// The tree of the last `stage` node event named `name`.
fn tree_of(w: &World, events: &[Value], stage: &str, name: &str) -> PathBuf {
    let key = events
        .iter()
        .rev()
        .find(|e| e["stage"] == stage && e["name"] == name)
        .and_then(|e| e["key"].as_str())
        .unwrap_or_else(|| panic!("no {stage} {name} in {events:?}"));
    w.store.join("trees").join(format!("{stage}-{key}"))
}

/// Environments that share most of their packages install them once: a
/// second environment stands on a layer of what it shares with the first
/// (made for it, and keyed by its packages alone, so an environment of
/// exactly those packages is that layer), and installs only the rest. What
/// it stands on is the store's business: the environment is whole.
#[test]
fn environments_that_share_packages_install_them_once() {
    if !is_root() {
        return;
    }
    let mut w = World::new();
    let tools: Vec<String> = (1..=9).map(|i| format!("tool-{i}")).collect();
    for t in &tools {
        w.mirror.add_package(&PackageSpec::new(t, "1").file(
            &format!("/usr/share/tools/{t}"),
            t.as_str(),
            0o644,
        ));
    }
    w.mirror
        .add_package(&PackageSpec::new("toolchain", "1").depends(&tools.join(", ")));
    for app in ["app-a", "app-b"] {
        let lib = format!("lib-{app}");
        w.mirror.add_package(&PackageSpec::new(&lib, "1").file(
            &format!("/usr/share/{lib}"),
            "lib",
            0o644,
        ));
        w.mirror.add_package(
            &PackageSpec::new(app, "1")
                .depends(&format!("toolchain, {lib}"))
                .postinst("#!/bin/sh\ntest -f /usr/share/tools/tool-9\n"),
        );
    }
    assert!(w.comb(&["update"]).status.success());

    let first = w.build(&["app-a"]);
    assert!(
        !tree_of(&w, &first, "pkg-env", "with:app-a")
            .join(comb_cache::LAYERED_ON)
            .exists(),
        "the first environment has nothing to stand on"
    );
    // app-b shares the toolchain's ten packages with app-a: they become a
    // layer of their own, and app-b stands on it.
    let second = w.build(&["app-b"]);
    assert_eq!(status_of(&second, "pkg-env"), "built");
    let shared = tree_of(&w, &second, "pkg-env", "shared-env");
    let app_b = tree_of(&w, &second, "pkg-env", "with:app-b");
    let below = std::fs::read_to_string(app_b.join(comb_cache::LAYERED_ON)).unwrap();
    assert_eq!(
        below.trim(),
        shared.file_name().unwrap().to_str().unwrap(),
        "app-b does not stand on the shared layer"
    );
    assert!(shared.join("0/usr/share/tools/tool-1").is_file());
    assert!(
        !app_b.join("0/usr/share/tools/tool-1").exists(),
        "app-b installed the shared packages again"
    );
    assert!(app_b.join("0/usr/share/lib-app-b").is_file());
    // Whole: every package installed and configured, the shared ones too.
    let status = w.run(
        &["app-b"],
        true,
        "cat /var/lib/dpkg/status /usr/share/tools/tool-5",
    );
    for name in tools
        .iter()
        .map(String::as_str)
        .chain(["toolchain", "lib-app-b", "app-b"])
    {
        assert!(
            status.contains(&format!("Package: {name}\nStatus: install ok installed")),
            "{name} is not installed: {status}"
        );
    }
    assert!(status.trim_end().ends_with("tool-5"), "{status}");
    // The shared layer is the environment of exactly its packages.
    let toolchain = w.build(&["toolchain"]);
    assert_eq!(status_of(&toolchain, "pkg-env"), "hit", "{toolchain:?}");
    assert_eq!(tree_of(&w, &toolchain, "pkg-env", "with:toolchain"), shared);
    // A third environment stands on the largest that it contains whole.
    w.mirror
        .add_package(&PackageSpec::new("app-c", "1").depends("toolchain, lib-app-a, app-a"));
    assert!(w.comb(&["update"]).status.success());
    let third = w.build(&["app-c"]);
    let app_c = tree_of(&w, &third, "pkg-env", "with:app-c");
    let app_a = tree_of(&w, &first, "pkg-env", "with:app-a");
    let below = std::fs::read_to_string(app_c.join(comb_cache::LAYERED_ON)).unwrap();
    assert_eq!(below.trim(), app_a.file_name().unwrap().to_str().unwrap());
    let out = w.run(
        &["app-c"],
        false,
        "cat /usr/share/lib-app-a /usr/share/tools/tool-9",
    );
    assert_eq!(out, "libtool-9");
}

/// While a sandbox runs quietly, comb waits without using the CPU: its
/// monitor once polled the closed stderr pipe of a merged output (every
/// layer installation and build) in a busy loop, a core's worth of system
/// time for as long as the sandbox ran.
#[test]
fn a_quiet_installation_costs_no_cpu_while_it_waits() {
    if !is_root() {
        return;
    }
    let mut w = World::new();
    w.mirror
        .add_package(&PackageSpec::new("slow-setup", "1").postinst("#!/bin/sh\nsleep 4\n"));
    assert!(w.comb(&["update"]).status.success());
    w.build(&[]);
    // Reaped by wait4 below, which also gives its CPU time.
    #[allow(clippy::zombie_processes)]
    let child = w
        .command(&["env", "build", "--with", "slow-setup"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for this test's own child, with valid pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    let wall = started.elapsed();
    assert!(
        wall >= Duration::from_secs(4),
        "the postinst did not run: {wall:?}"
    );
    let cpu = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let used = cpu(usage.ru_utime) + cpu(usage.ru_stime);
    assert!(
        used < Duration::from_millis(2500),
        "comb used {used:?} of CPU over a {wall:?} installation that mostly sleeps"
    );
}

#[test]
fn unknown_and_conflicting_sets_get_apts_explanation() {
    if !is_root() {
        return;
    }
    let w = World::new();
    assert!(w.comb(&["update"]).status.success());
    let out = w.comb(&["env", "build", "--with", "needs-missing"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs-missing"), "{err}");
    let out = w.comb(&["env", "build", "--with", "no-such-package"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no-such-package"),
        "{err}"
    );
    let out = w.comb(&["env", "build", "--with", "hello", "--with", "conflicting-a"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("conflicting-a"),
        "{err}"
    );
}

#[test]
fn a_tampered_index_or_a_wrong_signature_is_refused_and_the_lock_kept() {
    if !is_root() {
        return;
    }
    let w = World::new();
    assert!(w.comb(&["update"]).status.success());
    let lock = std::fs::read(w.repo.join("comb.lock")).unwrap();

    w.mirror.tamper_packages();
    let out = w.comb(&["update"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Packages"), "{err}");
    assert!(err.contains("sha256") || err.contains("size"), "{err}");
    // The mirror's fault, not the input's: exit 3.
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(std::fs::read(w.repo.join("comb.lock")).unwrap(), lock);

    w.mirror.sign_with_other_key();
    let out = w.comb(&["update"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("InRelease"), "{err}");
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("signature") || err.contains("keyring"),
        "{err}"
    );
    assert_eq!(std::fs::read(w.repo.join("comb.lock")).unwrap(), lock);

    // The pinned snapshot is still in the store: environments still build,
    // without the (now broken) mirror's indices.
    let events = w.build(&[]);
    assert_eq!(status_of(&events, "base-build"), "built");
}

#[test]
fn a_corrupt_deb_is_refused_and_not_kept() {
    if !is_root() {
        return;
    }
    let w = World::new();
    assert!(w.comb(&["update"]).status.success());
    w.build(&[]);
    let before = w.blobs();
    let corrupt = w.mirror.corrupt_deb("hello");
    let out = w.comb(&["env", "build", "--with", "hello"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("hello") && err.contains("sha256"), "{err}");
    let bad = std::fs::read(&corrupt).unwrap();
    for blob in w.blobs() {
        assert_ne!(
            std::fs::read(&blob).unwrap(),
            bad,
            "{} kept",
            blob.display()
        );
    }
    // The good dependency and the resolution may have been stored, but no
    // more; nothing is left in tmp.
    assert!(w.blobs().len() <= before.len() + 2);
    let tmp: Vec<_> = std::fs::read_dir(w.store.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "left in tmp: {tmp:?}");
}

#[test]
fn a_comb_killed_while_building_a_layer_is_recovered_from() {
    if !is_root() {
        return;
    }
    let mut w = World::new();
    w.mirror.add_package(
        &PackageSpec::new("slow-setup", "1.0-1")
            .arch("all")
            .postinst("#!/bin/sh\necho configuring slowly\nsleep 4\n"),
    );
    assert!(w.comb(&["update"]).status.success());
    w.build(&[]);
    let mut child = w
        .command(&["env", "build", "--with", "slow-setup"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let started = Instant::now();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        eprintln!("{line}");
        if line.starts_with("pkg-env") && line.contains("building") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never reached pkg-env"
        );
    }
    std::thread::sleep(Duration::from_millis(1500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();

    // Nothing of the killed layer was published.
    let trees: Vec<String> = std::fs::read_dir(w.store.join("trees"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!trees.iter().any(|t| t.starts_with("pkg-env")), "{trees:?}");

    // The next run builds it whole.
    let events = w.build(&["slow-setup"]);
    assert_eq!(status_of(&events, "pkg-env"), "built");
    let out = w.run(
        &["slow-setup"],
        true,
        "grep -c 'Package: slow-setup' /var/lib/dpkg/status",
    );
    assert_eq!(out.trim(), "1");
    let tmp: Vec<_> = std::fs::read_dir(w.store.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "left in tmp: {tmp:?}");
}

#[test]
fn two_combs_on_one_store_build_each_node_once() {
    if !is_root() {
        return;
    }
    let w = World::new();
    assert!(w.comb(&["update"]).status.success());
    let spawn = || {
        w.command(&["env", "build", "--json", "--with", "hello"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let mut events = Vec::new();
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        events.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    // Each layer was built by one of them; the other waited and found it.
    for stage in ["base-install", "base-build", "pkg-env"] {
        let built = events
            .iter()
            .filter(|e| e["stage"] == stage && e["status"] == "built")
            .count();
        let hits = events
            .iter()
            .filter(|e| e["stage"] == stage && e["status"] == "hit")
            .count();
        assert_eq!((built, hits), (1, 1), "{stage}: {events:?}");
    }
}

#[test]
fn with_the_lock_and_the_store_complete_no_mirror_is_needed() {
    if !is_root() {
        return;
    }
    let w = World::new();
    assert!(w.comb(&["update"]).status.success());
    w.build(&["hello"]);
    // The mirror goes away entirely.
    let gone = w.mirror.dir.with_extension("gone");
    std::fs::rename(&w.mirror.dir, &gone).unwrap();
    let events = w.build(&["hello"]);
    assert!(events.iter().all(|e| e["status"] == "hit"), "{events:?}");
    let hello = w.run(&["hello"], false, "hello");
    assert!(hello.contains("Hello, world!"), "{hello}");
    std::fs::rename(&gone, &w.mirror.dir).unwrap();
}

#[test]
fn a_bad_comb_toml_or_a_missing_lock_says_where_and_what_to_do() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let store = dir.path().join("store");
    let comb = |args: &[&str]| {
        let out = Command::new(COMB)
            .args(args)
            .arg("--repo")
            .arg(&repo)
            .arg("--store")
            .arg(&store)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    std::fs::write(repo.join("comb.toml"), "[distro]\nsuite = \"book worm\"\n").unwrap();
    let (code, err) = comb(&["env", "build"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("comb.toml:2:9: suite \"book worm\" is not a plain name"),
        "{err}"
    );
    std::fs::write(repo.join("comb.toml"), "[base]\nbuidl = []\n").unwrap();
    let (code, err) = comb(&["update"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("comb.toml:2:1") && err.contains("buidl"),
        "{err}"
    );
    if !is_root() {
        return;
    }
    std::fs::write(repo.join("comb.toml"), "").unwrap();
    let (code, err) = comb(&["env", "build"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("comb.lock") && err.contains("comb update"),
        "{err}"
    );
    std::fs::write(repo.join("comb.lock"), "format = 1\n[snapshot]\nuri = 3\n").unwrap();
    let (code, err) = comb(&["env", "build"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("comb.lock") && err.contains("comb update"),
        "{err}"
    );
}
