//! comb's resolver beside APT's on the real snapshot of the host's APT
//! sources: the build dependencies of a sample of its source packages
//! (`COMB_TEST_RESOLVER_SAMPLE`, 2000 by default, spread evenly over the
//! snapshot by name) resolved by comb in process and by APT (libapt-pkg
//! through python3-apt, checked against `apt-get --simulate satisfy` on
//! the first 30), on the default base. Every install set must be
//! APT's, or else both must be valid and the choices that differ named;
//! and all but a few in a hundred must be identical. See
//! `tests/resolver/mod.rs`. Needs the mirror, and root for the
//! real-mirror tests' store.

use crate::real;
use crate::resolver;
use crate::root;

#[test]
fn comb_resolves_build_dependencies_as_apt_does() {
    // Not for the sandbox: the real-mirror tests' store is root's.
    if !root::is_root() {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("comb.toml"), "[distro]\n").unwrap();
    let update = real::comb(repo.path(), &["update"]);
    assert!(update.status.success(), "comb update failed");
    // `comb import` writes recipes for the snapshot's source packages.
    let import = real::comb(repo.path(), &["import", "hello"]);
    assert!(import.status.success());
    assert_eq!(
        std::fs::read_to_string(repo.path().join("hello/recipe.toml")).unwrap(),
        "[source]\ndebian = \"hello\"\n"
    );
    assert!(!real::comb(repo.path(), &["import", "no-such-source"])
        .status
        .success());
    let snapshot = resolver::snapshot(&real::store(), &repo.path().join("comb.lock"));
    let count: usize = std::env::var("COMB_TEST_RESOLVER_SAMPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let work = tempfile::tempdir().unwrap();
    let agreement = resolver::compare_sample(&snapshot, count, work.path());
    let report = agreement.report();
    eprintln!("{report}");
    assert_eq!(agreement.compared, count);
    assert!(
        agreement.apt_get_disagrees.is_empty(),
        "apt-get --simulate disagrees with the oracle on {:?}",
        agreement.apt_get_disagrees
    );
    let unexplained: Vec<&str> = agreement
        .differences
        .iter()
        .filter(|d| d.explained.is_err())
        .map(|d| d.source.as_str())
        .collect();
    assert!(
        unexplained.is_empty(),
        "unexplained differences: {unexplained:?}\n{report}"
    );
    assert!(
        agreement.identical + agreement.both_unsatisfiable >= count * 97 / 100,
        "fewer than 97% of the install sets are APT's:\n{report}"
    );
}
