//! `comb build` with a shared cache over the Remote Execution API: a real
//! BuildGrid on loopback (see `buildgrid_server`), two machines played by
//! two stores of one repository over the generated mirror. The machine
//! that uploads shares every build; the other builds none of them and
//! gets the same bytes. A cache that takes no client's results, bytes
//! changed on the server and a server that is gone are each reported and
//! never a wrong package.

use crate::buildgrid_server::{start, Server};
use crate::repo::{native, Repo};
use crate::root;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A repository of two recipes, one needing the other.
fn repository() -> Repo {
    let repo = Repo::new();
    repo.recipe("shared-a", &native("shared-a", &[], ""), "a's data");
    repo.recipe(
        "shared-b",
        &native("shared-b", &["shared-a"], ""),
        "b's data",
    );
    repo
}

/// Sets `[remote]` of the repository's comb.toml (none when `remote` is
/// empty).
pub(crate) fn set_remote(repo: &Repo, remote: &str) {
    let path = repo.root.join("comb.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    let base = toml.split("\n[remote]").next().unwrap().to_string();
    std::fs::write(&path, format!("{base}\n{remote}")).unwrap();
}

/// `comb build --all --json --out OUT` in `store`: the build nodes' and
/// the base environments' (`base-install`, `base-build`) statuses and
/// reasons, by name, and the exit code.
pub(crate) fn build_in(
    repo: &Repo,
    store: &Path,
    out: &Path,
    extra: &[&str],
) -> (Option<i32>, BTreeMap<String, (String, String)>, String) {
    let mut args = vec!["build", "--all", "--json", "--out", out.to_str().unwrap()];
    args.extend(extra);
    let output = crate::repo::logged(
        &args,
        std::process::Command::new(crate::repo::COMB)
            .args(&args)
            .arg("--repo")
            .arg(&repo.root)
            .arg("--store")
            .arg(store),
    );
    let builds = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            ["build", "base-install", "base-build"].contains(&e["stage"].as_str().unwrap_or(""))
        })
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                (
                    e["status"].as_str().unwrap().to_string(),
                    e["reason"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect();
    (
        output.status.code(),
        builds,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The `.deb`s of an output directory, by name, with their bytes.
pub(crate) fn debs(out: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

fn remote_toml(server: &Server, upload: bool) -> String {
    format!(
        "[remote]\ncache = \"{}\"\ninstance = \"main\"\nupload = {upload}\n",
        server.url
    )
}

pub(crate) fn scratch(repo: &Repo, name: &str) -> PathBuf {
    let p = repo.root.parent().unwrap().join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn a_second_machine_builds_nothing_the_first_shared() {
    if !root::is_root() {
        return;
    }
    let server = start(true);
    let repo = repository();
    // The trusted machine builds and uploads.
    set_remote(&repo, &remote_toml(&server, true));
    let out_a = scratch(&repo, "out-a");
    let (code, builds, stderr) = build_in(&repo, &repo.store, &out_a, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    for name in ["shared-a", "shared-b", "base-install", "base-build"] {
        assert_eq!(builds[name].0, "built", "{builds:?}");
    }
    // A second machine with an empty store only reads: not even its base
    // environments are made.
    set_remote(&repo, &remote_toml(&server, false));
    let store_b = scratch(&repo, "store-b");
    let out_b = scratch(&repo, "out-b");
    let (code, builds, stderr) = build_in(&repo, &store_b, &out_b, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.is_empty() || !stderr.contains("remote cache:"),
        "{stderr}"
    );
    for name in ["shared-a", "shared-b", "base-install", "base-build"] {
        let (status, reason) = &builds[name];
        assert_eq!(status, "fetched", "{builds:?}");
        assert!(
            reason.contains("fetched from the remote cache") && reason.contains("written by comb@"),
            "{reason}"
        );
    }
    assert_eq!(
        debs(&out_a),
        debs(&out_b),
        "the same bytes on both machines"
    );
    assert_eq!(debs(&out_b).len(), 2);
    // `comb why` and `comb log` work on what was fetched.
    let why = crate::repo::logged(
        &["why", "shared-b"],
        std::process::Command::new(crate::repo::COMB)
            .args(["why", "shared-b", "--repo"])
            .arg(&repo.root)
            .arg("--store")
            .arg(&store_b),
    );
    assert!(why.status.success());

    // Bytes changed on the server are refused: a third machine rebuilds
    // the package whose .deb does not hash to its digest, and says why.
    let deb_a = debs(&out_a)
        .into_iter()
        .find(|(n, _)| n.starts_with("shared-a_"))
        .unwrap()
        .1;
    let sha = comb_cache::Digest::of_bytes(comb_cache::Algorithm::Sha256, &deb_a).hex();
    let stored = server.blob_files(&sha);
    assert!(!stored.is_empty(), "where BuildGrid keeps the .deb");
    for p in &stored {
        let mut bytes = std::fs::read(p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(p, bytes).unwrap();
    }
    let store_c = scratch(&repo, "store-c");
    let out_c = scratch(&repo, "out-c");
    let (code, builds, stderr) = build_in(&repo, &store_c, &out_c, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(builds["shared-a"].0, "built", "{builds:?}");
    assert!(stderr.contains("does not hash to its digest"), "{stderr}");
    assert_eq!(debs(&out_a), debs(&out_c));

    // A blob the cache lost since (evicted): the reader builds it (BuildGrid
    // itself serves no result whose blobs are gone; comb would note a blob
    // lost between lookup and download), and the uploading machine stores
    // it again on its next run.
    for p in server.blob_files(&sha) {
        std::fs::remove_file(p).unwrap();
    }
    let store_d = scratch(&repo, "store-d");
    let out_d = scratch(&repo, "out-d");
    let (code, builds, stderr) = build_in(&repo, &store_d, &out_d, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(builds["shared-a"].0, "built", "{builds:?}");
    set_remote(&repo, &remote_toml(&server, true));
    let (code, _, stderr) = build_in(&repo, &repo.store, &out_a, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    set_remote(&repo, &remote_toml(&server, false));
    let store_e = scratch(&repo, "store-e");
    let out_e = scratch(&repo, "out-e");
    let (code, builds, stderr) = build_in(&repo, &store_e, &out_e, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(builds["shared-a"].0, "fetched", "{builds:?}");
    assert_eq!(debs(&out_a), debs(&out_e));

    // A base layer whose archive changed on the server is refused (its
    // chunk does not hash to its digest): the reader makes the layer.
    let tree = crate::users::tree_of(&repo.store, "base-install");
    let archive = comb_sandbox::ship::pack_layer(&tree.join("0")).unwrap();
    let sha = comb_cache::Digest::of_bytes(comb_cache::Algorithm::Sha256, &archive).hex();
    let stored = server.blob_files(&sha);
    assert!(!stored.is_empty(), "where BuildGrid keeps the layer");
    for p in &stored {
        let mut bytes = std::fs::read(p).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(p, bytes).unwrap();
    }
    let store_f = scratch(&repo, "store-f");
    let out_f = scratch(&repo, "out-f");
    let (code, builds, stderr) = build_in(&repo, &store_f, &out_f, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(builds["base-install"].0, "built", "{builds:?}");
    assert!(
        stderr.contains("base-install: making it here") && stderr.contains("does not hash"),
        "{stderr}"
    );
    assert_eq!(builds["shared-a"].0, "fetched", "{builds:?}");
    assert_eq!(debs(&out_a), debs(&out_f));
}

#[test]
fn a_cache_that_takes_no_clients_results_is_never_poisoned() {
    if !root::is_root() {
        return;
    }
    // BuildGrid's action cache with `allow-updates: false`: only what its
    // own workers execute reaches it.
    let server = start(false);
    let repo = repository();
    set_remote(&repo, &remote_toml(&server, true));
    let out = scratch(&repo, "out");
    let (code, builds, stderr) = build_in(&repo, &repo.store, &out, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(builds["shared-a"].0, "built");
    assert!(stderr.contains("refused to record a result"), "{stderr}");
    // Another machine finds nothing planted and builds for itself.
    set_remote(&repo, &remote_toml(&server, false));
    let store_b = scratch(&repo, "store-b");
    let (code, builds, stderr) = build_in(&repo, &store_b, &out, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    for name in ["shared-a", "shared-b", "base-install", "base-build"] {
        assert_eq!(builds[name].0, "built", "{builds:?}");
    }
}

#[test]
fn an_unreachable_cache_is_an_error_unless_local_fallback_is_asked_for() {
    if !root::is_root() {
        return;
    }
    let repo = repository();
    let out = scratch(&repo, "out");
    // Nothing listens on port 1.
    let (code, _, stderr) = build_in(
        &repo,
        &repo.store,
        &out,
        &["--remote-cache", "grpc://127.0.0.1:1"],
    );
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("the remote cache grpc://127.0.0.1:1 is unreachable")
            && stderr.contains("--remote-fallback local"),
        "{stderr}"
    );
    let (code, builds, stderr) = build_in(
        &repo,
        &repo.store,
        &out,
        &[
            "--remote-cache",
            "grpc://127.0.0.1:1",
            "--remote-fallback",
            "local",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(builds["shared-a"].0, "built");
    assert!(stderr.contains("building locally"), "{stderr}");
}
