//! Against the real Debian mirror of the host's APT sources: `comb update`
//! pins the host's suite, `comb env build` builds base-install and
//! base-build, and `hello` from a pkg-env runs as U.
//!
//! Downloads and layers are kept in a store outside the checkout
//! (`$COMB_TEST_STORE`, default `/var/cache/comb-test-store`), so reruns
//! neither download nor build again. Needs root (CI runs as root) and the
//! mirror; it is skipped, saying so, without either.

use crate::real;
use crate::root;

use real::{comb, store, COMB};
use std::process::Command;

#[test]
fn hello_runs_as_the_builder_in_a_pkg_env_from_the_real_mirror() {
    if !root::is_root() {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    // An empty comb.toml: the mirror, suite and keyring come from the host.
    std::fs::write(repo.path().join("comb.toml"), "").unwrap();
    let update = comb(repo.path(), &["update"]);
    assert!(update.status.success(), "comb update failed");
    let lock = std::fs::read_to_string(repo.path().join("comb.lock")).unwrap();
    assert!(lock.contains("inrelease_sha256"), "{lock}");

    let run = Command::new(COMB)
        .args(["env", "run", "--with", "hello", "--repo"])
        .arg(repo.path())
        .arg("--store")
        .arg(store())
        .args(["--", "sh", "-c", "hello; id -u"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success());
    assert!(stdout.contains("Hello, world!"), "{stdout}");
    assert!(
        stdout.trim_end().ends_with("1000"),
        "hello ran as U: {stdout}"
    );

    // A second build is all hits and needs no network: the lock and the
    // store hold everything.
    let again = comb(repo.path(), &["env", "build", "--with", "hello", "--json"]);
    assert!(again.status.success());
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&again.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for stage in ["index", "base-install", "base-build", "pkg-env"] {
        let e = events
            .iter()
            .find(|e| e["stage"] == stage)
            .unwrap_or_else(|| panic!("no {stage} event in {events:?}"));
        assert_eq!(e["status"], "hit", "{e}");
    }
}
