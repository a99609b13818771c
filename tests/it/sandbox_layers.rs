//! Kept upper layers behave as layers: what R writes, deletes and replaces
//! in one sandbox is what the next sandbox sees when the kept layer is
//! stacked on the same lower layers. Needs root, like CI.

use crate::common;

use common::{fixture, is_root, sandbox, Who};
use std::fs;
use std::os::unix::fs::MetadataExt;

#[test]
fn a_kept_layer_replays_writes_deletions_and_replaced_directories() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let kept = dir.path().join("kept");
    let script = "set -e
        echo hello > /etc/new && chown 1000:1000 /etc/new
        ln /etc/new /etc/new-link
        ln -s new /etc/new-symlink
        rm /etc/passwd
        rm -rf /home/builder && mkdir -m 0750 /home/builder && echo fresh > /home/builder/only
        mkdir -p /var/lib/x && touch /var/lib/x/empty";
    let run = sandbox()
        .who(Who::R)
        .arg("--keep-upper")
        .arg(&kept)
        .run(&["sh", "-c", script]);
    assert_eq!(run.code, 0, "{run}");

    // On disk, ids are those seen inside (0 is R, 1000 is U).
    let new = fs::symlink_metadata(kept.join("etc/new")).unwrap();
    assert_eq!((new.uid(), new.gid(), new.nlink()), (1000, 1000, 2));
    let link = fs::symlink_metadata(kept.join("etc/new-link")).unwrap();
    assert_eq!(link.ino(), new.ino(), "the hard link stays a hard link");
    assert_eq!(
        fs::read_link(kept.join("etc/new-symlink")).unwrap(),
        std::path::Path::new("new")
    );
    let home = fs::symlink_metadata(kept.join("home/builder")).unwrap();
    assert_eq!(home.mode() & 0o7777, 0o750);

    let check = "cat /etc/new; ls /home/builder; test -e /etc/passwd && echo passwd-still-there; \
        ls -ln /etc/new | cut -c1-30; ls /var/lib/x";
    let run = sandbox().who(Who::R).layer(&kept).run(&["sh", "-c", check]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.starts_with("hello\nonly\n"), "{run}");
    assert!(!run.stdout.contains("passwd-still-there"), "{run}");
    assert!(run.stdout.contains("1000"), "{run}");
    assert!(run.stdout.trim_end().ends_with("empty"), "{run}");
    // The lower layer is untouched.
    assert!(fixture().root.join("etc/passwd").exists());
}

#[test]
fn a_failed_keep_leaves_nothing_behind() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let kept = dir.path().join("kept");
    // A layer deeper than comb accepts is refused, and no partial layer
    // (nor its work directory) is left beside the target.
    let run = sandbox().who(Who::R).arg("--keep-upper").arg(&kept).run(&[
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do mkdir d; cd d; i=$((i+1)); done",
    ]);
    assert_ne!(run.code, 0, "{run}");
    assert!(run.stderr.contains("deeper"), "{run}");
    assert!(!kept.exists());
    let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
