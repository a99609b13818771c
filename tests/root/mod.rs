//! Tests that need root: they run as root (as CI runs them), or are skipped
//! on purpose, never quietly. Shared by the test binaries of every crate
//! (`#[path = ".../tests/root/mod.rs"] mod root;`).

/// True when this process runs as root. Otherwise the calling test fails,
/// unless `COMB_TEST_SKIP_ROOT=1` says that skipping the tests that need
/// root is intended: then it says so on stderr and returns false, and the
/// test returns at once.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let current = std::thread::current();
    let test = current.name().unwrap_or("this test");
    if std::env::var_os("COMB_TEST_SKIP_ROOT").is_some_and(|v| v == "1") {
        eprintln!("skipped: {test} needs root (COMB_TEST_SKIP_ROOT=1)");
        return false;
    }
    panic!(
        "{test} needs root: run the tests as root, as CI does, or set \
         COMB_TEST_SKIP_ROOT=1 to skip the tests that need it"
    );
}
