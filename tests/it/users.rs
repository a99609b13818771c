//! Ordinary users for the tests that run comb as one: made with
//! `useradd`, their subordinate ranges set in /etc/subuid and /etc/subgid.
//! Tests run in parallel threads, so the files are rewritten under a lock.

use std::process::Command;
use std::sync::Mutex;

static SUBID_FILES: Mutex<()> = Mutex::new(());

/// Makes user `name` if needed, and sets its subordinate ranges in both
/// files to exactly `range` (`START:COUNT`), or to none.
pub fn ensure_user(name: &str, range: Option<&str>) {
    add_user(name, &["--no-create-home"], range);
}

/// `useradd ARGS NAME` unless the user exists; then its ranges.
fn add_user(name: &str, args: &[&str], range: Option<&str>) {
    let _guard = SUBID_FILES.lock().unwrap_or_else(|e| e.into_inner());
    let exists = Command::new("id")
        .arg(name)
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        let status = Command::new("useradd")
            .args(args)
            .arg(name)
            .status()
            .unwrap();
        assert!(status.success(), "useradd {args:?} {name}");
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with(&format!("{name}:")))
            .map(str::to_string)
            .collect();
        if let Some(range) = range {
            lines.push(format!("{name}:{range}"));
        }
        std::fs::write(file, lines.join("\n") + "\n").unwrap();
    }
}

/// The uid of user `name`.
pub fn uid_of(name: &str) -> u32 {
    let out = Command::new("id").args(["-u", name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A system user for a daemon (`useradd --system`, its own group, no
/// home), with subordinate range `range`, like the README's `_comb`.
pub fn ensure_system_user(name: &str, range: &str) {
    let args = [
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
    ];
    add_user(name, &args, Some(range));
}

/// Gives `path` and everything below it to user `name` (and its group).
pub fn give_to(name: &str, path: &std::path::Path) {
    let status = Command::new("chown")
        .args(["-R", &format!("{name}:{name}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown -R {name} {}", path.display());
}

/// The build service's system user in the tests, as the README's `_comb`.
pub const DAEMON: &str = "combtest-daemon";

/// Makes [`DAEMON`] (once per machine, kept) and returns its uid.
pub fn daemon_user() -> u32 {
    ensure_system_user(DAEMON, "700000:65536");
    uid_of(DAEMON)
}

/// The layer tree of stage `stage` (say `base-install`) in `store`.
pub fn tree_of(store: &std::path::Path, stage: &str) -> std::path::PathBuf {
    std::fs::read_dir(store.join("trees"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{stage}-"))
        })
        .unwrap_or_else(|| panic!("no {stage} layer in {}", store.display()))
}
