//! What the tests against the real Debian mirror share: their store, kept
//! outside the checkout so reruns neither download nor build again, and a
//! logged comb runner.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const COMB: &str = env!("CARGO_BIN_EXE_comb");

/// `$COMB_TEST_STORE`, default `/var/cache/comb-test-store`.
pub fn store() -> PathBuf {
    std::env::var_os("COMB_TEST_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/comb-test-store"))
}

/// `comb ARGS --repo REPO --store STORE` (both before a `--` in ARGS),
/// with what it said printed for a failing test's log.
pub fn comb(repo: &Path, args: &[&str]) -> Output {
    let end = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    let out = Command::new(COMB)
        .args(&args[..end])
        .arg("--repo")
        .arg(repo)
        .arg("--store")
        .arg(store())
        .args(&args[end..])
        .output()
        .expect("running comb");
    eprintln!(
        "comb {args:?}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
