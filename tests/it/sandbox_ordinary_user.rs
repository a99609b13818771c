//! `comb sandbox run` as an ordinary user: ids come from the user's
//! /etc/subuid and /etc/subgid ranges through newuidmap/newgidmap (into
//! comb's own user namespace, where the sandbox nests), and a user without
//! ranges is told how to get them.
//!
//! Needs root to create the users (CI runs as root); skipped otherwise.

use crate::root;
use crate::users::ensure_user;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const WITH_RANGES: &str = "comb-test-sub";
const WITHOUT_RANGES: &str = "comb-test-nosub";

fn busybox_root(dir: &Path, owner: &str) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in ["sh", "id", "cat", "echo", "ls"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let status = Command::new("chown")
        .args(["-R", owner])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

fn comb_as(user: &str, args: &[&str]) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", user, "--", env!("CARGO_BIN_EXE_comb")])
        .args(args)
        .current_dir("/")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap()
}

#[test]
fn ordinary_user_runs_with_subordinate_ranges_or_is_told_how_to_add_them() {
    if !root::is_root() {
        return;
    }
    ensure_user(WITH_RANGES, Some("400000:65536"));
    ensure_user(WITHOUT_RANGES, None);

    let scratch = tempfile::tempdir().unwrap();
    // The user must reach the root through the temp dir.
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = scratch.path().join("root");
    busybox_root(&root, WITH_RANGES);
    let layer = root.to_str().unwrap();

    let out = comb_as(
        WITH_RANGES,
        &[
            "sandbox",
            "run",
            "--layer",
            layer,
            "--json",
            "--",
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("1000"), "U is uid 1000 inside");
    let map: Vec<Vec<u64>> = lines
        .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
        .collect();
    // The sandbox is nested in the user's own namespace, whose ids it
    // maps onto themselves; that namespace maps them onto the range.
    assert!(!map.is_empty());
    for extent in &map {
        assert_eq!(extent[0], extent[1], "{map:?}");
    }
    let outcome: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    let host_root = outcome["host_root_uid"].as_u64().unwrap();
    assert!((400000..465536).contains(&host_root), "{outcome}");
    assert_ne!(host_root, 0);

    let out = comb_as(
        WITHOUT_RANGES,
        &["sandbox", "run", "--layer", layer, "--", "true"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The machine's set-up, not the input: exit 3.
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("/etc/subuid"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {WITHOUT_RANGES}"
        )),
        "{stderr}"
    );
}
