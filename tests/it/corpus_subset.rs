//! A small subset of the corpus (`tests/corpus`): `libmd` and `libbsd`,
//! two fast real bookworm source packages with an internal edge (libbsd
//! build-depends on `libmd-dev`, which libmd builds). Copied into a
//! temporary repository and built against the real mirror of the host's
//! APT sources; every package must build, and libbsd's environment must
//! hold the repository's libmd packages, as `comb why libbsd --json`
//! says: its `resolve` stage named `pkg-env:libbsd` lists them in
//! `from_repository` (libmd0 also replacing the base's copy). The store is
//! the real-mirror tests' (`tests/real`), so a rerun builds nothing. Needs
//! root, like CI.

use crate::real;
use crate::root;

use serde_json::Value;
use std::path::Path;

/// The packages of the subset: the dependency first.
const SUBSET: [&str; 2] = ["libmd", "libbsd"];

fn copy_file(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `comb why PACKAGE --json` of `run` (default: the last run that built it).
fn why(repo: &Path, package: &str, run: Option<u64>) -> Value {
    let run = run.map(|r| r.to_string());
    let mut args = vec!["why", package, "--json"];
    if let Some(run) = &run {
        args.extend(["--run", run.as_str()]);
    }
    let out = real::comb(repo, &args);
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The resolve stage of `package`'s environment in a `comb why --json`.
fn env_resolve<'a>(why: &'a Value, package: &str) -> Option<&'a Value> {
    why["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "resolve" && s["name"] == format!("pkg-env:{package}"))
}

#[test]
fn a_subset_of_the_corpus_builds_with_its_internal_edge() {
    if !root::is_root() {
        return;
    }
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("corpus");
    copy_file(&corpus.join("comb.toml"), &repo.join("comb.toml"));
    for package in SUBSET {
        copy_file(
            &corpus.join(package).join("recipe.toml"),
            &repo.join(package).join("recipe.toml"),
        );
    }
    assert!(real::comb(&repo, &["update"]).status.success());
    let built = real::comb(&repo, &["build", "--all", "-j", "2", "--json"]);
    assert!(built.status.success());
    let events = json_lines(&built.stdout);
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary", "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    for package in SUBSET {
        let build = events
            .iter()
            .find(|e| e["stage"] == "build" && e["name"] == package)
            .unwrap_or_else(|| panic!("no build node of {package}"));
        assert!(
            build["status"] == "built" || build["status"] == "hit",
            "{package}: {build}"
        );
    }

    // libbsd's environment. A run that finds libbsd by its shortcut (the
    // store already had it) evaluates no environment node: the newest run
    // of the store that built libbsd, however old, is the one to look at
    // (its environment nodes were evaluated, as hits or not).
    let mut why_bsd = why(&repo, "libbsd", None);
    if env_resolve(&why_bsd, "libbsd").is_none() {
        let report = real::comb(&repo, &["report", "--last", "100000", "--json"]);
        assert!(report.status.success());
        let report: Value = serde_json::from_slice(&report.stdout).unwrap();
        let run = report["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["packages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == "libbsd" && p["status"] == "built")
            })
            .and_then(|r| r["id"].as_u64())
            .expect("no run of the store built libbsd");
        why_bsd = why(&repo, "libbsd", Some(run));
    }
    let resolve = env_resolve(&why_bsd, "libbsd").expect("no resolve of pkg-env:libbsd");
    let listed: Vec<&str> = resolve["from_repository"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        listed.iter().any(|p| p.starts_with("libmd-dev ")),
        "libmd-dev is not the repository's in libbsd's environment: {listed:?}"
    );
    assert!(
        listed.iter().any(|p| p.starts_with("libmd0 ")),
        "libmd0 is not the repository's in libbsd's environment: {listed:?}"
    );
    // And libmd itself builds on the snapshot's base.
    let why_md = why(&repo, "libmd", None);
    for stage in why_md["stages"].as_array().unwrap() {
        assert!(
            stage["from_repository"].as_array().unwrap().is_empty(),
            "{stage}"
        );
    }
}

/// A Debian source that builds nothing for this architecture (digitools
/// builds only for i386) is left out of a real build, as a buildd leaves
/// it: said, recorded as skipped with the reason, nothing fetched, and
/// the run succeeds, as its plan says.
#[test]
fn a_source_for_other_architectures_is_left_out_and_said() {
    if !root::is_root() {
        return;
    }
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    copy_file(&corpus.join("comb.toml"), &repo.join("comb.toml"));
    std::fs::create_dir_all(repo.join("digitools")).unwrap();
    std::fs::write(
        repo.join("digitools/recipe.toml"),
        "[source]\ndebian = \"digitools\"\n",
    )
    .unwrap();
    assert!(real::comb(&repo, &["update"]).status.success());
    let plan = real::comb(&repo, &["build", "--dry-run", "--all", "--json"]);
    assert!(plan.status.success());
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["packages"][0]["action"], "elsewhere", "{plan}");

    let built = real::comb(&repo, &["build", "--all", "--json"]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let events = json_lines(&built.stdout);
    let skipped = events
        .iter()
        .find(|e| e["stage"] == "build" && e["name"] == "digitools")
        .unwrap_or_else(|| panic!("no build event of digitools: {events:?}"));
    assert_eq!(skipped["status"], "skipped", "{skipped}");
    assert!(
        skipped["reason"]
            .as_str()
            .is_some_and(|r| r.contains("builds only for i386")),
        "{skipped}"
    );
    // Its source record is looked up (a `resolve` node); nothing of it is
    // fetched, installed or built.
    assert!(
        !events.iter().any(|e| e["stage"] != "resolve"
            && e["name"].as_str().is_some_and(|n| n.contains("digitools"))
            && e["status"] == "built"),
        "{events:?}"
    );
    let summary = events.last().unwrap();
    assert_eq!(summary["failed"], 0, "{summary}");
}
