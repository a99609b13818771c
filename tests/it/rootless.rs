//! comb as an ordinary user with a subordinate id range, as hasher's C:
//! the README's main job (`examples/starter` against the real mirror), an
//! all-hit second run, `comb check --all --vary all` and `comb gc`, with
//! the layers owned by the user's subordinate ids, never by the user;
//! the same rebuilds on a `comb worker` of the user's (remote execution
//! through a BuildGrid), its shipped layers owned by the range too.
//! A user without a range, or pointing comb at a store it cannot use, is
//! told what to do.
//!
//! Needs root to create the users (CI runs as root). The user's home and
//! store are in `/var/cache/comb-test-rootless`; only the downloads
//! survive to a rerun, so every run builds everything again as the user.

use crate::root;
use crate::users::{ensure_user, tree_of, uid_of};

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const USER: &str = "comb-test-rootless";
const NO_RANGE: &str = "comb-test-norange";
/// The user's range: R is its first id, U the 1001st.
const RANGE_START: u32 = 500_000;

fn chown_to(user: &str, path: &Path) {
    let status = Command::new("chown")
        .args(["-R", &format!("{user}:{user}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

const BASE: &str = "/var/cache/comb-test-rootless";

/// The user's home, `BASE/NAME`, new, with its `.cache/comb` store holding
/// only the downloads the last run kept (hard links, see [`keep_downloads`]).
fn fresh_home(user: &str) -> PathBuf {
    let base = Path::new(BASE);
    std::fs::create_dir_all(base).unwrap();
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = base.join(user);
    if home.exists() {
        std::fs::remove_dir_all(&home).unwrap();
    }
    std::fs::create_dir_all(&home).unwrap();
    let kept = base.join(format!("{user}.downloads"));
    if kept.is_dir() {
        let blobs = home.join(".cache/comb/blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        let status = Command::new("cp")
            .arg("-al")
            .arg(&kept)
            .arg(blobs.join("sha256"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    chown_to(user, &home);
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    home
}

/// Keeps hard links to the store's downloads for the next run.
fn keep_downloads(user: &str, home: &Path) {
    let kept = Path::new(BASE).join(format!("{user}.downloads"));
    let _ = std::fs::remove_dir_all(&kept);
    let status = Command::new("cp")
        .arg("-al")
        .arg(home.join(".cache/comb/blobs/sha256"))
        .arg(&kept)
        .status()
        .unwrap();
    assert!(status.success());
}

/// `comb ARGS` as `user` with `HOME` (and so the default store) in `home`.
fn comb_as(user: &str, home: &Path, args: &[&str]) -> Output {
    // runuser sets HOME from the user database: `env` sets it after.
    let out = Command::new("runuser")
        .args(["-u", user, "--", "env"])
        .arg(format!("HOME={}", home.display()))
        .arg(env!("CARGO_BIN_EXE_comb"))
        .args(args)
        .current_dir(home)
        .env_remove("XDG_CACHE_HOME")
        .env_remove("COMB_STORE")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    eprintln!(
        "comb {args:?} as {user}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The owners of every entry under `dir`, as (uid, gid) pairs seen.
fn owners(dir: &Path, seen: &mut std::collections::BTreeSet<(u32, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.path().symlink_metadata().unwrap();
        seen.insert((meta.uid(), meta.gid()));
        if meta.is_dir() {
            owners(&entry.path(), seen);
        }
    }
}

#[test]
fn an_ordinary_user_builds_checks_and_collects_the_starter() {
    if !root::is_root() {
        return;
    }
    let range = format!("{RANGE_START}:65536");
    ensure_user(USER, Some(&range));
    let home = fresh_home(USER);
    let repo = home.join("starter");
    crate::build_starter::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/starter"),
        &repo,
    );
    chown_to(USER, &repo);
    let repo_arg = repo.to_str().unwrap();
    let out_dir = home.join("out");

    assert!(comb_as(USER, &home, &["update", "--repo", repo_arg])
        .status
        .success());
    let built = comb_as(
        USER,
        &home,
        &[
            "build",
            "--all",
            "--repo",
            repo_arg,
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "{stderr}");
    assert!(stderr.contains("0 failed"), "{stderr}");
    keep_downloads(USER, &home);
    let packages = std::fs::read_to_string(out_dir.join("Packages")).unwrap();
    for name in ["greet", "libgreet1", "hello", "jshon", "libjansson4"] {
        assert!(
            packages.contains(&format!("Package: {name}\n")),
            "{name}: {packages}"
        );
    }
    // The outputs are the user's; the layers are the subordinate ids',
    // never the user's: R's files are not C's.
    let me = uid_of(USER);
    let deb = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap();
    assert_eq!(deb.metadata().unwrap().uid(), me);
    let trees = home.join(".cache/comb/trees");
    let base = tree_of(&home.join(".cache/comb"), "base-install");
    // The layer directory; the tree's own marks beside it are the store's.
    let mut seen = std::collections::BTreeSet::new();
    owners(&base.join("0"), &mut seen);
    assert!(seen.contains(&(RANGE_START, RANGE_START)), "{seen:?}");
    for (uid, gid) in &seen {
        assert!(
            (RANGE_START..RANGE_START + 65536).contains(uid)
                && (RANGE_START..RANGE_START + 65536).contains(gid),
            "a layer file owned by {uid}:{gid}, outside the user's range: {seen:?}"
        );
    }
    // The user cannot change its layers by accident.
    let dpkg = base.join("0/usr/bin/dpkg");
    let out = Command::new("runuser")
        .args(["-u", USER, "--", "sh", "-c"])
        .arg(format!("echo x >> {}", dpkg.display()))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the user could write R's file {}",
        dpkg.display()
    );

    // The namespace is kept by a sleeping process of the user's, which the
    // next comb joins; a pid file that names anything else (here init) is
    // not joined, and comb maps a namespace of its own again.
    let kept = PathBuf::from(format!("/tmp/comb-{me}/userns.pid"));
    let keeper = std::fs::read_to_string(&kept).unwrap().trim().to_string();
    let status = std::fs::read_to_string(format!("/proc/{keeper}/status")).unwrap();
    assert!(status.contains("Name:\tcomb-userns"), "{status}");
    assert!(status.contains(&format!("Uid:\t{me}\t")), "{status}");
    std::fs::write(&kept, "1\n").unwrap();

    // All hits the second time.
    let again = comb_as(
        USER,
        &home,
        &["build", "--all", "--json", "--repo", repo_arg],
    );
    assert!(again.status.success());
    let summary: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&again.stdout)
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(summary["built"], 0, "{summary}");

    // Rebuilt under every variation (`uid` among them: U as another id of
    // the range): the native packages are GOOD; Debian's own may differ
    // (hello's debug information holds the build path), never FAIL.
    let check = comb_as(
        USER,
        &home,
        &[
            "check", "--all", "--vary", "all", "--json", "--repo", repo_arg,
        ],
    );
    assert!(matches!(check.status.code(), Some(0 | 1)));
    let states: Vec<(String, String)> = String::from_utf8_lossy(&check.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "package")
        .map(|e| {
            let p = &e["package"];
            (
                p["name"].as_str().unwrap().to_string(),
                p["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(states.len(), 8, "{states:?}");
    for (name, state) in &states {
        let native = [
            "greet",
            "greet-data",
            "greet-phrasebook",
            "greet-tour",
            "libgreet",
        ];
        let want: &[&str] = if native.contains(&name.as_str()) {
            &["GOOD"]
        } else {
            &["GOOD", "BAD"]
        };
        assert!(
            want.contains(&state.as_str()),
            "{name} is {state}: {states:?}"
        );
    }

    // The same rebuilds on a worker of the user's own, with an empty
    // store: the environments packed by the user's R here, shipped through
    // a BuildGrid and unpacked by the worker's R, owned by the range.
    let server = crate::buildgrid_server::start_execution(false, 10);
    let worker_store = home.join("worker-store");
    let worker_log = home.join("worker.log");
    let log = std::fs::File::create(&worker_log).unwrap();
    let mut worker = Command::new("runuser")
        .args(["-u", USER, "--", "env"])
        .arg(format!("HOME={}", home.display()))
        .arg(env!("CARGO_BIN_EXE_comb"))
        .args([
            "worker",
            "--remote",
            &server.server.url,
            "--instance",
            "main",
        ])
        .args(["--name", "rootless-worker", "--store"])
        .arg(&worker_store)
        .env_remove("COMB_STORE")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let remote = comb_as(
        USER,
        &home,
        &[
            "check",
            "--all",
            "--json",
            "--no-diffoscope",
            "--repo",
            repo_arg,
            "--remote-execute",
            &server.server.url,
            "--remote-instance",
            "main",
        ],
    );
    let _ = Command::new("pkill")
        .args(["-TERM", "-u", USER, "-f", "comb worker"])
        .status();
    let _ = worker.wait();
    let worker_said = std::fs::read_to_string(&worker_log).unwrap_or_default();
    assert!(remote.status.success(), "worker: {worker_said}");
    let states: Vec<String> = String::from_utf8_lossy(&remote.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "package")
        .map(|e| format!("{} {}", e["package"]["name"], e["package"]["state"]))
        .collect();
    assert_eq!(states.len(), 8, "{states:?}");
    assert!(states.iter().all(|s| s.ends_with("\"GOOD\"")), "{states:?}");
    assert!(worker_said.contains("running lease"), "{worker_said}");
    let shipped = tree_of(&worker_store, "shipped");
    let mut seen = std::collections::BTreeSet::new();
    owners(&shipped.join("0"), &mut seen);
    assert!(seen.contains(&(RANGE_START, RANGE_START)), "{seen:?}");
    for (uid, gid) in &seen {
        assert!(
            (RANGE_START..RANGE_START + 65536).contains(uid)
                && (RANGE_START..RANGE_START + 65536).contains(gid),
            "a shipped layer file owned by {uid}:{gid}, outside the range: {seen:?}"
        );
    }

    // gc removes R's files, which the user could not remove by itself;
    // the index the lock pins stays.
    let gc = comb_as(USER, &home, &["gc", "--max-age", "0", "--json"]);
    assert!(gc.status.success());
    let left: Vec<String> = std::fs::read_dir(&trees)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("index-"))
        .collect();
    assert!(left.is_empty(), "gc left {left:?}");
}

#[test]
fn a_user_without_a_range_or_with_a_store_it_cannot_use_is_told_what_to_do() {
    if !root::is_root() {
        return;
    }
    ensure_user(NO_RANGE, None);
    let home = fresh_home(NO_RANGE);
    let out = comb_as(
        NO_RANGE,
        &home,
        &["build", "--all", "--repo", "/nonexistent"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {NO_RANGE}"
        )),
        "{stderr}"
    );

    // Root's store is root's.
    ensure_user(USER, Some(&format!("{RANGE_START}:65536")));
    let root_store = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root_store.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = root_store.path().join("store");
    let made = Command::new(env!("CARGO_BIN_EXE_comb"))
        .args(["env", "list", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(made.status.success());
    let out = comb_as(
        USER,
        Path::new("/"),
        &["env", "list", "--store", store.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&store.display().to_string()), "{stderr}");
    assert!(stderr.contains("belongs to"), "{stderr}");
    // One in a directory the user may not enter.
    let private = tempfile::tempdir().unwrap();
    let hidden = private.path().join("store");
    let out = comb_as(
        USER,
        Path::new("/"),
        &["env", "list", "--store", hidden.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&hidden.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("permission denied") && stderr.contains("store of your own"),
        "{stderr}"
    );
    // Its own store, but of a group its namespace does not map.
    let grouped = Path::new(BASE).join(format!("{USER}.grouped"));
    let _ = std::fs::remove_dir_all(&grouped);
    std::fs::create_dir_all(&grouped).unwrap();
    chown_to(USER, &grouped);
    let store_arg = grouped.to_str().unwrap();
    let made = comb_as(USER, Path::new("/"), &["env", "list", "--store", store_arg]);
    assert!(made.status.success());
    let status = Command::new("chgrp")
        .args(["-R", "nogroup"])
        .arg(&grouped)
        .status()
        .unwrap();
    assert!(status.success());
    // An empty repository: the engine opens the store, then has nothing
    // to build.
    let repo = Path::new(BASE).join(format!("{USER}.empty-repo"));
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("comb.toml"), "").unwrap();
    let repo_arg = repo.to_str().unwrap();
    let args = ["build", "--all", "--repo", repo_arg, "--store", store_arg];
    let out = comb_as(USER, Path::new("/"), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("primary group") && stderr.contains("chgrp -R"),
        "{stderr}"
    );
}

/// The Invirtibuilder's attack on an ordinary user's comb: a build
/// dependency's maintainer script, run as R, tries to write into C's home,
/// into C's store and into the host's `/tmp`, and to leave a setuid copy
/// of a shell for later. Each fails: the sandbox shows R none of the
/// host's paths, and a layer keeps no set-id bit.
#[test]
fn a_maintainer_script_reaches_nothing_of_an_ordinary_users() {
    if !root::is_root() {
        return;
    }
    const EVIL: &str = "comb-test-rootless-evil";
    ensure_user(EVIL, Some("570000:65536"));
    let home = fresh_home(EVIL);
    let store = home.join(".cache/comb");
    let canary = home.join("canary");
    std::fs::write(&canary, "C's own\n").unwrap();
    chown_to(EVIL, &canary);
    let host_tmp = PathBuf::from(format!("/tmp/comb-invirtibuilder-{}", std::process::id()));
    let _ = std::fs::remove_file(&host_tmp);

    // The mirror, readable by the user.
    let mirror_dir = Path::new(BASE).join(format!("{EVIL}.mirror"));
    let _ = std::fs::remove_dir_all(&mirror_dir);
    let mut mirror = crate::mirror::TestMirror::build(&mirror_dir);
    let targets = [
        canary.display().to_string(),
        format!("{}/index.sqlite", store.display()),
        format!("{}/planted", store.display()),
        format!("{}/planted", home.display()),
        host_tmp.display().to_string(),
    ];
    let mut script =
        String::from("#!/bin/sh\nmkdir -p /var/log /usr/local/bin\nlog=/var/log/invirtibuilder\n");
    for target in &targets {
        for path in [
            target.clone(),
            format!("/proc/1/root{target}"),
            format!("/proc/self/cwd/../../..{target}"),
        ] {
            script.push_str(&format!(
                "if echo planted >> '{path}' 2>/dev/null; then echo \"wrote {path}\" >> $log; else echo \"refused {path}\" >> $log; fi\n"
            ));
        }
    }
    script.push_str(
        "cp /bin/sh /usr/local/bin/later-sh; \
         if chmod 4755 /usr/local/bin/later-sh 2>/dev/null; then echo 'setuid set' >> $log; \
         else echo 'setuid refused' >> $log; fi\nexit 0\n",
    );
    mirror.add_package(&crate::mirror::PackageSpec::new("invirtibuilder", "1").postinst(&script));
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&mirror_dir)
        .status()
        .unwrap();
    assert!(status.success());

    let repo = home.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("comb.toml"), mirror.distro_toml()).unwrap();
    chown_to(EVIL, &repo);
    let repo_arg = repo.to_str().unwrap();
    assert!(comb_as(EVIL, &home, &["update", "--repo", repo_arg])
        .status
        .success());
    let built = comb_as(
        EVIL,
        &home,
        &[
            "env",
            "build",
            "--with",
            "invirtibuilder",
            "--json",
            "--repo",
            repo_arg,
        ],
    );
    assert!(built.status.success());

    // The script ran, as R, and wrote its log into its own layer.
    let trees = store.join("trees");
    let layer = std::fs::read_dir(&trees)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("0/var/log/invirtibuilder").exists())
        .expect("the maintainer script's log in a kept layer");
    let log = std::fs::read_to_string(layer.join("0/var/log/invirtibuilder")).unwrap();
    assert!(log.contains("setuid"), "{log}");
    // Nothing of the host changed, whatever the script thought it wrote
    // (its own /tmp, say).
    assert_eq!(
        std::fs::read_to_string(&canary).unwrap(),
        "C's own\n",
        "{log}"
    );
    for planted in [
        store.join("planted"),
        home.join("planted"),
        host_tmp.clone(),
    ] {
        assert!(
            !planted.exists(),
            "{} was planted: {log}",
            planted.display()
        );
    }
    let index = std::fs::read(store.join("index.sqlite")).unwrap();
    assert!(
        !index.ends_with(b"planted\n"),
        "the store's index was written: {log}"
    );
    // No set-id file anywhere in the layers, the copy of sh included (a
    // directory may keep setgid: new files inherit its group).
    let later = layer.join("0/usr/local/bin/later-sh");
    assert!(later.exists(), "{log}");
    let mut stack = vec![trees.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = path.symlink_metadata().unwrap();
            let set_id = if meta.is_dir() { 0o4000 } else { 0o6000 };
            assert_eq!(
                meta.mode() & set_id,
                0,
                "{} is set-id: {log}",
                path.display()
            );
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
}
