//! `comb why` and `comb log` end to end: every miss reason comes from a
//! real change to a repository over the generated signed mirror, and its
//! words are asserted; so is the JSON schema of `comb why --json`. Needs
//! root for the sandbox, like CI.

use crate::mirror;
use crate::repo;

use mirror::PackageSpec;
use repo::{is_root, native, Repo};
use serde_json::Value;
use std::collections::BTreeSet;

/// `comb why PKG --json`.
fn why(repo: &Repo, package: &str) -> Value {
    let out = repo.comb(&["why", package, "--json"]);
    assert!(out.status.success(), "comb why {package} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The reasons' texts of one stage (by stage and name) in a `why`.
fn reasons(why: &Value, stage: &str, name: &str) -> Vec<String> {
    let found = why["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == stage && s["name"] == name)
        .unwrap_or_else(|| panic!("no {stage} {name} in {why:#}"));
    found["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap().to_string())
        .collect()
}

fn status(why: &Value, stage: &str, name: &str) -> String {
    why["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == stage && s["name"] == name)
        .map(|s| s["status"].as_str().unwrap().to_string())
        .unwrap_or_else(|| "absent".into())
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn built(repo: &Repo) {
    let (code, _, _) = repo.build(&[]);
    assert_eq!(code, Some(0));
}

/// A repository of aa, on its own, and bb, which build-depends on aa and
/// copies it; built once.
fn aa_and_bb_built() -> Repo {
    let repo = Repo::new();
    repo.recipe("aa", &native("aa", &[], ""), "a1\n");
    repo.recipe(
        "bb",
        &native("bb", &["aa"], "cat /usr/share/aa/data > from-a"),
        "b1\n",
    );
    built(&repo);
    repo
}

#[test]
fn every_miss_reason_from_a_real_change() {
    if !is_root() {
        return;
    }
    let mut repo = aa_and_bb_built();

    // First build: every built node says so; the JSON schema is fixed.
    let w = why(&repo, "bb");
    assert_eq!(keys(&w), set(&["package", "run", "stages", "cycles_cut"]));
    assert_eq!(w["cycles_cut"], serde_json::json!([]));
    for s in w["stages"].as_array().unwrap() {
        assert_eq!(
            keys(s),
            set(&[
                "stage",
                "name",
                "key",
                "status",
                "duration_ms",
                "reasons",
                "error",
                "log",
                "limits",
                "from_repository",
                "worker"
            ]),
            "{s}"
        );
        for r in s["reasons"].as_array().unwrap() {
            assert!(r["reason"].is_string() && r["text"].is_string(), "{r}");
        }
    }
    assert_eq!(reasons(&w, "build", "bb"), ["first build of this node"]);
    assert_eq!(
        reasons(&w, "pkg-env", "pkg-env:bb"),
        ["first build of this node"]
    );
    let first = &w["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "build")
        .unwrap()["reasons"][0];
    assert_eq!(first["reason"], "first_build");

    // A source file changes: aa names it; bb's resolution names the new
    // output of aa, its pkg-env the package, its build the pkg-env.
    std::fs::write(repo.root.join("aa/src/data"), "a2\n").unwrap();
    built(&repo);
    let w = why(&repo, "aa");
    let r = reasons(&w, "build", "aa");
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(
        r[0].starts_with("source file data changed (blake3 ") && r[0].contains(" → blake3 "),
        "{r:?}"
    );
    let w = why(&repo, "bb");
    let r = reasons(&w, "resolve", "pkg-env:bb");
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(
        r[0].starts_with("build dependency aa now comes from aa 1.0-1 (output sha256 "),
        "{r:?}"
    );
    let r = reasons(&w, "pkg-env", "pkg-env:bb");
    assert!(
        r.iter()
            .any(|t| t.starts_with("pkg-env changed: aa 1.0-1 (output sha256 ")),
        "{r:?}"
    );
    let r = reasons(&w, "build", "bb");
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(
        r[0].starts_with("its build environment changed: pkg-env pkg-env:bb ("),
        "{r:?}"
    );

    // The build script changes: a short diff.
    repo.recipe(
        "bb",
        &native(
            "bb",
            &["aa"],
            "echo an extra line\ncat /usr/share/aa/data > from-a",
        ),
        "b1\n",
    );
    built(&repo);
    let w = why(&repo, "bb");
    // Its environment was looked up (its shortcut missed) and reused.
    assert_eq!(status(&w, "pkg-env", "pkg-env:bb"), "hit");
    assert_eq!(
        reasons(&w, "build", "bb"),
        ["recipe build.script changed:\n    + echo an extra line"]
    );

    // The version and the build requirements change.
    let text = native("bb", &["aa", "hello"], "cat /usr/share/aa/data > from-a")
        .replace("version = \"1.0-1\"", "version = \"1.0-2\"");
    repo.recipe("bb", &text, "b1\n");
    built(&repo);
    let w = why(&repo, "bb");
    assert_eq!(
        reasons(&w, "resolve", "pkg-env:bb"),
        ["recipe build.requires changed: aa → aa, hello"]
    );
    let r = reasons(&w, "build", "bb");
    assert!(
        r.contains(&"recipe version changed: 1.0-1 → 1.0-2".to_string()),
        "{r:?}"
    );
    assert!(r.iter().any(|t| t.contains("build.script")), "{r:?}");

    // A build fails, fails again with the same inputs, then is fixed.
    repo.recipe(
        "aa",
        &native("aa", &[], "echo about to fail; exit 3"),
        "a2\n",
    );
    let (code, _, _) = repo.build(&["--keep-going"]);
    assert_eq!(code, Some(1));
    let w = why(&repo, "aa");
    let failed = w["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "build")
        .unwrap();
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("about to fail"),
        "{failed}"
    );
    assert!(reasons(&w, "build", "aa")[0].starts_with("recipe build.script changed:"));
    let log = repo.comb(&["log", "aa"]);
    assert!(log.status.success());
    assert!(String::from_utf8_lossy(&log.stdout).contains("about to fail"));
    let (code, _, _) = repo.build(&["--keep-going"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        reasons(&why(&repo, "aa"), "build", "aa"),
        ["previous build failed"]
    );
    repo.recipe("aa", &native("aa", &[], "echo fixed"), "a2\n");
    built(&repo);
    let r = reasons(&why(&repo, "aa"), "build", "aa");
    assert_eq!(r[0], "previous build failed", "{r:?}");
    assert!(r[1].starts_with("recipe build.script changed:"), "{r:?}");
    // The log of a build that worked is stored too.
    let log = repo.comb(&["log", "bb"]);
    assert!(log.status.success());

    // The distribution moves: make-tool (in base-build) gets a new version.
    repo.mirror.add_package(
        &PackageSpec::new("make-tool", "4.3-comb2")
            .arch(&mirror::host_architecture())
            .file("/usr/bin/make-tool", "#!/bin/sh\necho made again\n", 0o755),
    );
    assert!(repo.comb(&["update"]).status.success());
    built(&repo);
    let w = why(&repo, "aa");
    let r = reasons(&w, "base-build", "base-build");
    assert!(
        r.contains(&"base-build changed: make-tool 4.3-comb1 → 4.3-comb2".to_string()),
        "{r:?}"
    );
    let r = reasons(&w, "build", "aa");
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(
        r[0].starts_with("its build environment changed: base-build base-build ("),
        "{r:?}"
    );
    let r = reasons(&w, "resolve", "base-build");
    assert!(
        r.iter()
            .any(|t| t.starts_with("the distribution snapshot changed (")),
        "{r:?}"
    );

    // An output vanishes from the store: the rebuild says so.
    let w = why(&repo, "aa");
    let key = w["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "build")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    remove_output_of(&repo, &key);
    built(&repo);
    assert_eq!(
        reasons(&why(&repo, "aa"), "build", "aa"),
        ["its previous output is gone from the store"]
    );

    // The text form carries the same words.
    let out = repo.comb(&["why", "aa"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("its previous output is gone from the store"),
        "{text}"
    );
    assert!(text.starts_with("aa in run "), "{text}");
}

/// Deletes the manifest blob a build node recorded.
fn remove_output_of(repo: &Repo, key: &str) {
    let conn = rusqlite::Connection::open(repo.store.join("index.sqlite")).unwrap();
    let output: String = conn
        .query_row("SELECT output FROM nodes WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .unwrap();
    // `blake3:HEX:SIZE` → blobs/blake3/HE/X…
    let mut parts = output.split(':');
    let (alg, hex) = (parts.next().unwrap(), parts.next().unwrap());
    let blob = repo
        .store
        .join("blobs")
        .join(alg)
        .join(&hex[..2])
        .join(&hex[2..]);
    std::fs::remove_file(&blob).unwrap_or_else(|e| panic!("{}: {e}", blob.display()));
}

/// The human output of `comb build`, `comb why` and `comb report` after a
/// change, as snapshots (`tests/snapshots/`), with what differs between
/// runs and machines redacted: digests, times, paths, and how each limit
/// is enforced. Review a change with `cargo insta review` (or run with
/// `INSTA_UPDATE=always` and read the diff).
#[test]
fn the_human_output_of_build_why_and_report() {
    if !is_root() {
        return;
    }
    let repo = aa_and_bb_built();
    std::fs::write(repo.root.join("aa/src/data"), "a2\n").unwrap();
    let text = |args: &[&str]| {
        let out = repo.comb(args);
        assert!(out.status.success(), "comb {args:?}");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let build = text(&["build", "--all"]);
    let why = text(&["why", "bb"]);
    let report = text(&["report"]);
    let comb = regex_escape(repo::COMB);
    insta::with_settings!({
        filters => vec![
            (comb.as_str(), "[COMB]"),
            (r"/\S*/\.tmp[A-Za-z0-9]+", "[TMP]"),
            (r"\b[0-9a-f]{4}…", "[HEX]…"),
            (r"\b\d+\.\ds\b", "[T]s"),
            (r"\((cgroup v1|cgroup v2|rlimit|measured|timer)\)", "([HOW])"),
            // The slowest nodes tie at a tenth of a second: their order is
            // not the output's.
            (r"(?m)^    \S+ +\S+ +\[T\]s (built|hit|failed)\n", ""),
        ],
    }, {
        insta::assert_snapshot!("build", build);
        insta::assert_snapshot!("why", why);
        insta::assert_snapshot!("report", report);
    });
}

/// `text` with the characters a regex gives a meaning escaped.
fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}
