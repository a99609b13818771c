//! Hostile trees for `comb_sandbox::extract`. The tests create device nodes
//! and foreign owners, so they expect to run as root (as the project's CI does).

use std::ffi::{CString, OsStr};
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use comb_sandbox::extract::*;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::{mkdirat, mknod, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// A scratch directory holding an empty source tree `src`; `out` is where
/// outputs go and does not exist yet.
struct Fixture {
    tmp: tempfile::TempDir,
    src: PathBuf,
    out: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir src");
    let out = tmp.path().join("out");
    Fixture { tmp, src, out }
}

fn write(path: &Path, content: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir -p");
    }
    fs::write(path, content).expect("write");
    // set_permissions is chmod, so the umask does not interfere.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).expect("lstat").mode() & 0o7777
}

fn mknod_at(path: &Path, kind: SFlag, major: u64, minor: u64) {
    mknod(
        path,
        kind,
        Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(major, minor),
    )
    .expect("mknod");
}

/// Extraction must fail with `Rejected` naming `expect` (relative to the
/// tree root, "./" included), and leave no `out` behind.
fn assert_output_rejected(f: &Fixture, policy: &OutputPolicy, expect: &str) -> String {
    let err = extract_output(&f.src, &f.out, policy).expect_err("hostile tree accepted");
    assert!(
        !f.out.exists() && fs::symlink_metadata(&f.out).is_err(),
        "output left behind after: {err}"
    );
    match &err {
        ExtractError::Rejected { path, reason } => {
            assert_eq!(path, Path::new(expect), "wrong path in: {err}");
            reason.clone()
        }
        other => panic!("expected Rejected for {expect}, got {other:?}"),
    }
}

fn assert_layer_rejected(dir: &Path, expect: &str) -> String {
    match validate_layer(dir) {
        Err(ExtractError::Rejected { path, reason }) => {
            assert_eq!(path, Path::new(expect), "wrong path: {reason}");
            reason
        }
        other => panic!("expected Rejected for {expect}, got {other:?}"),
    }
}

#[test]
fn normal_tree_round_trips_normalised() {
    let f = fixture();
    write(&f.src.join("bin/tool"), b"#!/bin/sh\necho hi\n", 0o700);
    write(&f.src.join("doc/readme"), b"read me", 0o600);
    write(&f.src.join("data"), b"", 0o444);
    write(&f.src.join("group-exec"), b"x", 0o610);
    fs::hard_link(f.src.join("doc/readme"), f.src.join("doc/readme.link")).expect("link");
    symlink("readme", f.src.join("doc/latest")).expect("symlink");
    symlink("../doc/readme", f.src.join("bin/up")).expect("symlink");
    fs::create_dir(f.src.join("empty")).expect("mkdir");
    fs::set_permissions(f.src.join("empty"), fs::Permissions::from_mode(0o1777)).expect("chmod");
    fs::set_permissions(f.src.join("doc"), fs::Permissions::from_mode(0o700)).expect("chmod");
    // Names need not be UTF-8.
    write(&f.src.join(OsStr::from_bytes(b"caf\xe9")), b"bytes", 0o644);

    let report = extract_output(&f.src, &f.out, &OutputPolicy::default()).expect("extract");
    assert_eq!(
        report,
        ExtractReport {
            files: 6,
            dirs: 3,
            symlinks: 2,
            whiteouts: 0,
            bytes: 18 + 7 + 1 + 5
        }
    );

    let o = &f.out;
    assert_eq!(
        fs::read(o.join("bin/tool")).expect("read"),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(fs::read(o.join("doc/readme")).expect("read"), b"read me");
    assert_eq!(
        fs::read(o.join(OsStr::from_bytes(b"caf\xe9"))).expect("read"),
        b"bytes"
    );
    assert_eq!(mode_of(&o.join("bin/tool")), 0o755);
    assert_eq!(mode_of(&o.join("group-exec")), 0o755);
    assert_eq!(mode_of(&o.join("doc/readme")), 0o644);
    assert_eq!(mode_of(&o.join("data")), 0o644);
    assert_eq!(mode_of(&o.join("doc")), 0o755);
    assert_eq!(mode_of(&o.join("empty")), 0o755);
    assert_eq!(mode_of(o), 0o755);
    let me = fs::metadata(f.tmp.path()).expect("stat").uid(); // we created it
    assert_eq!(fs::metadata(o.join("doc/readme")).expect("stat").uid(), me);

    // The in-tree hard link is a hard link of the copy, not of the source.
    let a = fs::metadata(o.join("doc/readme")).expect("stat");
    let b = fs::metadata(o.join("doc/readme.link")).expect("stat");
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
    assert_eq!(a.nlink(), 2);
    assert_ne!(
        a.ino(),
        fs::metadata(f.src.join("doc/readme")).expect("stat").ino()
    );

    // Contained relative links are kept verbatim, still as links.
    assert_eq!(
        fs::read_link(o.join("doc/latest")).expect("readlink"),
        Path::new("readme")
    );
    assert_eq!(
        fs::read_link(o.join("bin/up")).expect("readlink"),
        Path::new("../doc/readme")
    );
}

#[test]
fn destination_must_not_exist_and_is_left_alone() {
    let f = fixture();
    write(&f.src.join("a"), b"a", 0o644);
    fs::create_dir(&f.out).expect("mkdir");
    write(&f.out.join("mine"), b"keep", 0o644);
    let err = extract_output(&f.src, &f.out, &OutputPolicy::default())
        .expect_err("existing dst accepted");
    assert!(matches!(err, ExtractError::Io { .. }), "{err:?}");
    assert_eq!(fs::read(f.out.join("mine")).expect("read"), b"keep");
}

#[test]
fn source_root_that_is_a_symlink_is_refused() {
    let f = fixture();
    let link = f.tmp.path().join("link");
    symlink(&f.src, &link).expect("symlink");
    assert!(extract_output(&link, &f.out, &OutputPolicy::default()).is_err());
    assert!(!f.out.exists());
    assert!(validate_layer(&link).is_err());
}

#[test]
fn absolute_symlink_is_rejected_and_never_followed() {
    let f = fixture();
    write(&f.src.join("a/file"), b"ok", 0o644);
    symlink("/etc/shadow", f.src.join("a/shadow")).expect("symlink");
    let reason = assert_output_rejected(&f, &OutputPolicy::default(), "./a/shadow");
    assert!(reason.contains("/etc/shadow"), "{reason}");

    let reject = OutputPolicy {
        symlinks: SymlinkPolicy::Reject,
        ..OutputPolicy::default()
    };
    assert_output_rejected(&f, &reject, "./a/shadow");

    // KeepAny copies the link itself; the target's content is never read.
    let any = OutputPolicy {
        symlinks: SymlinkPolicy::KeepAny,
        ..OutputPolicy::default()
    };
    let report = extract_output(&f.src, &f.out, &any).expect("KeepAny");
    assert_eq!(report.symlinks, 1);
    let copied = f.out.join("a/shadow");
    assert!(fs::symlink_metadata(&copied)
        .expect("lstat")
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::read_link(&copied).expect("readlink"),
        Path::new("/etc/shadow")
    );
}

#[test]
fn climbing_relative_symlinks_are_rejected() {
    let f = fixture();
    write(&f.src.join("x"), b"x", 0o644);
    fs::create_dir_all(f.src.join("a/b")).expect("mkdir");
    symlink("../../x", f.src.join("a/b/ok")).expect("symlink");
    extract_output(&f.src, &f.out, &OutputPolicy::default()).expect("contained link");
    fs::remove_dir_all(&f.out).expect("rm");

    symlink("../../../x", f.src.join("a/b/up")).expect("symlink");
    let reason = assert_output_rejected(&f, &OutputPolicy::default(), "./a/b/up");
    assert!(reason.contains("../../../x"), "{reason}");
}

#[test]
fn links_that_escape_through_other_links_are_rejected() {
    let f = fixture();
    fs::create_dir(f.src.join("d")).expect("mkdir");
    // Inside on its own: d/.. is the root.
    symlink("..", f.src.join("d/up")).expect("symlink");
    extract_output(&f.src, &f.out, &OutputPolicy::default()).expect("d/up alone is contained");
    fs::remove_dir_all(&f.out).expect("rm");

    // By its text d/x stays inside, but d/up/.. is the root's parent.
    symlink("up/../..", f.src.join("d/x")).expect("symlink");
    assert_output_rejected(&f, &OutputPolicy::default(), "./d/x");
}

#[test]
fn symlink_loops_are_rejected() {
    let f = fixture();
    symlink("b", f.src.join("a")).expect("symlink");
    symlink("a", f.src.join("b")).expect("symlink");
    let reason = assert_output_rejected(&f, &OutputPolicy::default(), "./a");
    assert!(reason.contains("levels"), "{reason}");
}

#[test]
fn hard_link_to_a_file_outside_is_rejected() {
    let f = fixture();
    let outside = f.tmp.path().join("secret");
    write(&outside, b"secret", 0o600);
    write(&f.src.join("a/normal"), b"n", 0o644);
    fs::hard_link(&outside, f.src.join("a/inside")).expect("link");
    let reason = assert_output_rejected(&f, &OutputPolicy::default(), "./a/inside");
    assert!(reason.contains("outside"), "{reason}");
    assert_layer_rejected(&f.src, "./a/inside");
}

/// Creates a special file at the given path.
type MakeNode = fn(&Path);

#[test]
fn special_files_are_rejected() {
    let cases: [(&str, MakeNode); 4] = [
        ("fifo", |p| {
            nix::unistd::mkfifo(p, Mode::from_bits_truncate(0o644)).expect("mkfifo")
        }),
        ("sock", |p| {
            drop(std::os::unix::net::UnixListener::bind(p).expect("bind"))
        }),
        ("null", |p| mknod_at(p, SFlag::S_IFCHR, 1, 3)),
        ("blk", |p| mknod_at(p, SFlag::S_IFBLK, 7, 0)),
    ];
    for (name, make) in cases {
        let f = fixture();
        write(&f.src.join("sub/ok"), b"ok", 0o644);
        make(&f.src.join("sub").join(name));
        assert_output_rejected(&f, &OutputPolicy::default(), &format!("./sub/{name}"));
        assert_layer_rejected(&f.src, &format!("./sub/{name}"));
    }
}

#[test]
fn whiteouts_are_accepted_only_in_layers() {
    let f = fixture();
    write(&f.src.join("etc/kept"), b"k", 0o644);
    mknod_at(&f.src.join("etc/gone"), SFlag::S_IFCHR, 0, 0);
    let report = validate_layer(&f.src).expect("whiteout in layer");
    assert_eq!(report.whiteouts, 1);
    assert_eq!(report.files, 1);
    assert_output_rejected(&f, &OutputPolicy::default(), "./etc/gone");

    mknod_at(&f.src.join("etc/null"), SFlag::S_IFCHR, 1, 3);
    let reason = assert_layer_rejected(&f.src, "./etc/null");
    assert!(reason.contains("1:3"), "{reason}");
}

#[test]
fn setuid_and_setgid_files_are_rejected() {
    for (name, mode) in [("suid", 0o4755), ("sgid", 0o2755)] {
        let f = fixture();
        write(&f.src.join("ok"), b"ok", 0o755);
        write(&f.src.join(name), b"elf", mode);
        assert_eq!(mode_of(&f.src.join(name)), mode, "fixture");
        assert_output_rejected(&f, &OutputPolicy::default(), &format!("./{name}"));
        assert_layer_rejected(&f.src, &format!("./{name}"));
    }
    // A setgid directory (base-files' /var/mail) grants nothing: a layer
    // keeps it, an output normalises it away.
    let f = fixture();
    fs::create_dir(f.src.join("shared")).expect("mkdir");
    fs::set_permissions(f.src.join("shared"), fs::Permissions::from_mode(0o2775)).expect("chmod");
    validate_layer(&f.src).expect("setgid directory in a layer");
    assert_eq!(
        mode_of(&f.src.join("shared")),
        0o2775,
        "validate_layer changes nothing"
    );
    extract_output(&f.src, &f.out, &OutputPolicy::default())
        .expect("setgid directory in an output");
    assert_eq!(mode_of(&f.out.join("shared")), 0o755);
}

#[test]
fn names_with_control_characters_are_rejected() {
    for name in [&b"evil\nname"[..], b"esc\x1b[2J", b"tab\t"] {
        let f = fixture();
        write(&f.src.join("fine"), b"ok", 0o644);
        let rel = Path::new(".").join(OsStr::from_bytes(name));
        write(&f.src.join(OsStr::from_bytes(name)), b"x", 0o644);
        let err = extract_output(&f.src, &f.out, &OutputPolicy::default())
            .expect_err("odd name accepted");
        assert!(!f.out.exists());
        match &err {
            ExtractError::Rejected { path, .. } => assert_eq!(path, &rel),
            other => panic!("{other:?}"),
        }
        // The message must not carry the raw control character.
        let shown = err.to_string();
        assert!(!shown.bytes().any(|b| b < 0x20), "{shown:?}");
        assert_layer_rejected(&f.src, rel.to_str().expect("ascii"));
    }
}

#[test]
fn too_many_entries_are_rejected() {
    let f = fixture();
    for i in 0..5 {
        write(&f.src.join(format!("f{i}")), b"x", 0o644);
    }
    let small = OutputPolicy {
        max_entries: 4,
        ..OutputPolicy::default()
    };
    let err = extract_output(&f.src, &f.out, &small).expect_err("limit ignored");
    assert!(
        matches!(err, ExtractError::TooMany { max: 4, .. }),
        "{err:?}"
    );
    assert!(!f.out.exists());
    let exact = OutputPolicy {
        max_entries: 5,
        ..OutputPolicy::default()
    };
    assert_eq!(
        extract_output(&f.src, &f.out, &exact)
            .expect("at the limit")
            .files,
        5
    );
}

fn open_dir(path: &Path) -> OwnedFd {
    open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .expect("open")
}

/// Builds `levels` nested directories "d" below `top` through dirfds, since
/// the path would exceed PATH_MAX. Holds one fd at a time.
fn make_deep(top: &Path, levels: usize) {
    let mut fd = open_dir(top);
    for _ in 0..levels {
        mkdirat(&fd, "d", Mode::from_bits_truncate(0o755)).expect("mkdirat");
        fd = openat(
            &fd,
            "d",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .expect("openat");
    }
}

/// Removes what `make_deep` built, from the bottom, climbing with "..".
fn remove_deep(top: &Path, levels: usize) {
    let mut fd = open_dir(top);
    for _ in 0..levels {
        fd = openat(
            &fd,
            "d",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .expect("openat");
    }
    for _ in 0..levels {
        fd = openat(
            &fd,
            "..",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .expect("openat ..");
        unlinkat(&fd, "d", UnlinkatFlags::RemoveDir).expect("rmdir");
    }
}

#[test]
fn very_deep_tree_is_rejected_cleanly() {
    const LEVELS: usize = 10_000;
    let f = fixture();
    make_deep(&f.src, LEVELS);
    let err =
        extract_output(&f.src, &f.out, &OutputPolicy::default()).expect_err("deep tree accepted");
    match &err {
        ExtractError::TooDeep { path, max: 256 } => assert_eq!(path.components().count(), 1 + 257),
        other => panic!("expected TooDeep, got {other:?}"),
    }
    assert!(!f.out.exists());
    assert!(matches!(
        validate_layer(&f.src),
        Err(ExtractError::TooDeep { .. })
    ));

    // Just within a small limit is fine; one level more is not.
    let g = fixture();
    make_deep(&g.src, 3);
    let three = OutputPolicy {
        max_depth: 3,
        ..OutputPolicy::default()
    };
    assert_eq!(
        extract_output(&g.src, &g.out, &three)
            .expect("3 levels")
            .dirs,
        3
    );
    let two = OutputPolicy {
        max_depth: 2,
        ..OutputPolicy::default()
    };
    assert!(extract_output(&g.src, &g.tmp.path().join("out2"), &two).is_err());
    assert!(!g.tmp.path().join("out2").exists());

    remove_deep(&f.src, LEVELS);
    assert_eq!(fs::read_dir(&f.src).expect("read_dir").count(), 0);
}

#[test]
fn failure_deep_in_the_copy_removes_everything() {
    let f = fixture();
    for i in 0..20 {
        write(
            &f.src.join(format!("a/b/c/file{i}")),
            &vec![b'x'; 100_000],
            0o644,
        );
    }
    fs::hard_link(f.src.join("a/b/c/file0"), f.src.join("a/b/c/file0.link")).expect("link");
    symlink("../file0", f.src.join("a/b/c/rel")).expect("symlink");
    // Sorts after everything else, so most of the copy exists when it fails.
    nix::unistd::mkfifo(&f.src.join("z-fifo"), Mode::from_bits_truncate(0o644)).expect("mkfifo");
    assert_output_rejected(&f, &OutputPolicy::default(), "./z-fifo");
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_bytes()).expect("path");
    let n = CString::new(name).expect("name");
    // SAFETY: valid C strings and a valid buffer for the call's duration.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
}

fn get_xattr(path: &Path, name: &str) -> Vec<u8> {
    let p = CString::new(path.as_os_str().as_bytes()).expect("path");
    let n = CString::new(name).expect("name");
    let mut buf = [0u8; 64];
    // SAFETY: as above; the kernel writes at most buf.len() bytes.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(r >= 0, "getxattr: {}", std::io::Error::last_os_error());
    buf[..r as usize].to_vec()
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).expect("lchown");
}

#[test]
fn layer_keeps_owners_modes_xattrs_and_links() {
    let f = fixture();
    let l = &f.src;
    write(&l.join("etc/passwd"), b"root:x:0:0", 0o644);
    write(&l.join("home/user/.profile"), b"# profile", 0o600);
    chown(&l.join("home/user"), 1000, 1000);
    chown(&l.join("home/user/.profile"), 1000, 1000);
    write(&l.join("var/nobody"), b"n", 0o640);
    chown(&l.join("var/nobody"), 65534, 65534);
    fs::create_dir(l.join("usr")).expect("mkdir");
    set_xattr(&l.join("usr"), "user.overlay.opaque", b"y");
    symlink("/etc/passwd", l.join("usr/abs")).expect("symlink");
    symlink("../../../../..", l.join("usr/climb")).expect("symlink");
    fs::hard_link(l.join("etc/passwd"), l.join("etc/passwd-")).expect("link");
    mknod_at(&l.join("etc/removed"), SFlag::S_IFCHR, 0, 0);
    fs::create_dir(l.join("tmp")).expect("mkdir");
    fs::set_permissions(l.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod");
    let before = fs::symlink_metadata(l.join("home/user/.profile")).expect("stat");

    let report = validate_layer(l).expect("valid layer");
    assert_eq!(
        report,
        ExtractReport {
            files: 4,
            dirs: 6,
            symlinks: 2,
            whiteouts: 1,
            bytes: 10 + 9 + 1
        }
    );
    let after = fs::symlink_metadata(l.join("home/user/.profile")).expect("stat");
    assert_eq!(
        (after.uid(), after.gid(), after.mode()),
        (1000, 1000, before.mode())
    );
    assert_eq!(after.mtime_nsec(), before.mtime_nsec());
    assert_eq!(mode_of(&l.join("tmp")), 0o1777);
    assert_eq!(get_xattr(&l.join("usr"), "user.overlay.opaque"), b"y");
}

#[test]
fn layer_rejects_unmappable_owners() {
    let f = fixture();
    write(&f.src.join("ok"), b"ok", 0o644);
    write(&f.src.join("sub/alien"), b"x", 0o644);
    chown(&f.src.join("sub/alien"), 5000, 0);
    let reason = assert_layer_rejected(&f.src, "./sub/alien");
    assert!(reason.contains("uid 5000"), "{reason}");

    chown(&f.src.join("sub/alien"), 0, 5000);
    let reason = assert_layer_rejected(&f.src, "./sub/alien");
    assert!(reason.contains("gid 5000"), "{reason}");

    chown(&f.src.join("sub/alien"), 1001, 0);
    assert_layer_rejected(&f.src, "./sub/alien");

    // Owners do not matter for outputs: they are normalised to the caller.
    chown(&f.src.join("sub/alien"), 5000, 5000);
    extract_output(&f.src, &f.out, &OutputPolicy::default()).expect("foreign owner in output");
    let me = fs::metadata(f.tmp.path()).expect("stat").uid(); // we created it
    assert_eq!(
        fs::metadata(f.out.join("sub/alien")).expect("stat").uid(),
        me
    );
}

#[test]
fn error_messages_name_the_path() {
    let f = fixture();
    nix::unistd::mkfifo(&f.src.join("pipe"), Mode::from_bits_truncate(0o644)).expect("mkfifo");
    let err = extract_output(&f.src, &f.out, &OutputPolicy::default()).expect_err("fifo");
    assert!(err.to_string().starts_with("./pipe: "), "{err}");
}

#[test]
fn symlink_targets_with_control_characters_are_rejected() {
    let f = fixture();
    symlink("a\nb", f.src.join("odd")).expect("symlink");
    let any = OutputPolicy {
        symlinks: SymlinkPolicy::KeepAny,
        ..OutputPolicy::default()
    };
    let reason = assert_output_rejected(&f, &any, "./odd");
    assert!(!reason.contains('\n'), "{reason:?}");
}
