//! `comb stats` and `comb gc` end to end over the generated signed mirror:
//! what the store holds, what a collection drops (and what it keeps: the
//! snapshot a lock pins), and that a collection started during a build
//! waits for it, so the build loses nothing it needs. Needs root for the
//! sandbox, like CI.

use crate::repo;

use repo::{is_root, native, Repo};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn json(repo: &Repo, args: &[&str]) -> Value {
    let out = repo.comb(args);
    assert!(out.status.success(), "comb {args:?} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn stats_say_what_the_store_holds_and_gc_drops_the_unused() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    repo.recipe("aa", &native("aa", &[], ""), "a\n");
    repo.recipe("bb", &native("bb", &["aa"], ""), "b\n");
    let (code, _, _) = repo.build(&[]);
    assert_eq!(code, Some(0));

    let stats = json(&repo, &["stats", "--json"]);
    assert_eq!(
        keys(&stats),
        set(&["size", "nodes", "runs", "hit_rate", "largest_layers"])
    );
    for kind in ["blobs", "layers", "snapshots", "index", "logs"] {
        assert!(stats["size"][kind].as_u64().unwrap() > 0, "{kind}: {stats}");
    }
    assert_eq!(stats["nodes"]["build"], 2);
    let layers = stats["largest_layers"].as_array().unwrap();
    let layer = |name: &str| {
        layers
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("no layer {name} in {stats}"))
    };
    assert_eq!(
        keys(layer("base-build")),
        set(&["stage", "name", "key", "size", "packages"])
    );
    // Both packages build on base-build; only bb on its pkg-env.
    assert_eq!(layer("base-build")["packages"], 2);
    assert_eq!(layer("pkg-env:bb")["packages"], 1);

    // Everything is recent: a default collection keeps it all.
    let gc = json(&repo, &["gc", "--json"]);
    assert_eq!(
        keys(&gc),
        set(&[
            "dry_run",
            "nodes",
            "blobs",
            "trees",
            "freed_bytes",
            "runs_pruned",
            "size_before",
            "size_after",
        ])
    );
    assert_eq!(gc["nodes"].as_array().unwrap().len(), 0, "{gc}");
    // A dry run of dropping everything lists it and removes nothing.
    let dry = json(&repo, &["gc", "--max-age", "0", "--dry-run", "--json"]);
    assert!(dry["nodes"].as_array().unwrap().len() >= 6, "{dry}");
    assert!(dry["freed_bytes"].as_u64().unwrap() > 0);
    let (_, builds, _) = repo.build(&[]);
    assert!(builds.values().all(|s| s == "hit"), "{builds:?}");

    // Dropping everything keeps the snapshot comb.lock pins; the next
    // build makes the rest again.
    let gc = json(&repo, &["gc", "--max-age", "0", "--json"]);
    let dropped: Vec<&str> = gc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert!(
        !dropped.contains(&"index"),
        "the pinned snapshot went: {gc}"
    );
    assert!(
        dropped.contains(&"base-install") && dropped.contains(&"build"),
        "{gc}"
    );
    assert!(gc["trees"].as_u64().unwrap() > 0 && gc["blobs"].as_u64().unwrap() > 0);
    let after = json(&repo, &["stats", "--json"]);
    assert_eq!(after["nodes"]["index"], 1);
    assert!(after["nodes"].get("build").is_none(), "{after}");
    let (code, builds, events) = repo.build(&[]);
    assert_eq!(code, Some(0));
    assert!(builds.values().all(|s| s == "built"), "{builds:?}");
    let index = events.iter().find(|e| e["stage"] == "index").unwrap();
    assert_eq!(index["status"], "hit", "the snapshot was fetched again");
}

#[test]
fn gc_waits_for_a_running_build_which_loses_nothing() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    repo.recipe("slow", &native("slow", &[], "sleep 3"), "s\n");
    repo.recipe("base", &native("base", &[], ""), "b\n");
    assert!(repo.comb(&["build", "base"]).status.success());
    // `slow` builds for three seconds on the environments `base` made.
    let build = repo
        .command(&["build", "--all", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it is building (its first events are out).
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    let gc = repo
        .command(&["gc", "--max-age", "0", "--json"])
        .output()
        .unwrap();
    let waited = started.elapsed();
    let built = build.wait_with_output().unwrap();
    assert!(
        built.status.success(),
        "{:?}\n{}\n{}",
        built.status,
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let events: Vec<Value> = String::from_utf8_lossy(&built.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = events.last().unwrap();
    assert_eq!(summary["failed"], 0, "{summary}");
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    assert!(
        String::from_utf8_lossy(&gc.stderr).contains("waiting for the running comb commands"),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    assert!(
        waited >= Duration::from_millis(800),
        "gc did not wait: {waited:?}"
    );
    // The store is consistent after both: building again works.
    let (code, _, _) = repo.build(&[]);
    assert_eq!(code, Some(0));

    // The other way round: a build started while gc holds the store waits
    // for it, and says so.
    let store = repo.store.clone();
    let holder = std::thread::spawn(move || {
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(store.join("locks/store"))
            .unwrap();
        // SAFETY: flock on a valid, owned file descriptor.
        assert_eq!(
            unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
            0
        );
        std::thread::sleep(Duration::from_millis(1500));
        drop(lock);
    });
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let out = repo.comb(&["build", "--all"]);
    assert!(out.status.success());
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("waiting for a running comb gc"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    holder.join().unwrap();
}
