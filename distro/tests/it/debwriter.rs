//! Writing `.deb`s and flat APT repositories, checked against the real
//! tools: `dpkg-deb` reads what comb writes and, given the same tree,
//! builds the same `.deb`, byte for byte; `dpkg` installs it;
//! `dpkg-gencontrol` computes the same Installed-Size; APT resolves and
//! downloads from the repository comb indexes. Every tree is built by the
//! test itself.
//!
//! Needs: dpkg, apt, xz-utils, tar; dpkg-dev for one comparison with
//! dpkg-gencontrol (skipped with a note without it). Runs as root here
//! and in CI; the tests that install or chown skip themselves otherwise.

use comb_distro::aptrepo::{packages_index, write_flat_repository, RepoEntry};
use comb_distro::deb::{DebArchive, EntryKind};
use comb_distro::debwriter::{
    deb_filename, list_tree, write_deb, write_deb_with, BinarySpec, ControlFile, DebOptions,
    Generated, GeneratedFile,
};
use comb_distro::{Aptbox, Error};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SDE: i64 = 1_600_000_000;

use crate::root;

fn run(cmd: &str, args: &[&std::ffi::OsStr]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &str, args: &[&std::ffi::OsStr]) -> String {
    String::from_utf8(run(cmd, args).stdout).unwrap()
}

macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new(&$a)),*] };
}

fn write(root: &Path, rel: &str, data: &[u8], mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

fn symlink(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, p).unwrap();
}

fn set_mtime(path: &Path, mtime: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let times = [
        libc::timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
    ];
    // SAFETY: a valid C string and two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", path.display());
}

fn long_dir() -> String {
    format!("usr/share/{}", "d".repeat(120))
}

/// A small installed tree with every kind of entry comb packages: files
/// and executables, a hard link, relative and absolute symlinks, an empty
/// directory, names and a link target over 100 bytes, sizes around the
/// KiB boundaries. Files are created in the order given by `reverse`.
fn make_tree(root: &Path, reverse: bool) {
    fs::create_dir_all(root).unwrap();
    let long_file = format!("{}/{}", long_dir(), "f".repeat(150));
    let mut files: Vec<(String, Vec<u8>, u32)> = vec![
        (
            "usr/bin/tool".into(),
            b"#!/bin/sh\necho tool\n".to_vec(),
            0o755,
        ),
        ("usr/lib/libt.so.1".into(), vec![7u8; 5000], 0o644),
        ("usr/share/doc/t/README".into(), vec![b'x'; 100_000], 0o644),
        ("usr/share/doc/t/empty".into(), Vec::new(), 0o644),
        ("usr/share/doc/t/k1024".into(), vec![b'k'; 1024], 0o644),
        ("usr/share/doc/t/k1025".into(), vec![b'k'; 1025], 0o644),
        ("etc/t.conf".into(), b"key = value\n".to_vec(), 0o644),
        (long_file, b"long\n".to_vec(), 0o644),
        // A name that sorts between "bin" and "bin/..." by bytes.
        ("usr/bin-extra/x".into(), b"x\n".to_vec(), 0o644),
    ];
    if reverse {
        files.reverse();
    }
    for (rel, data, mode) in &files {
        write(root, rel, data, *mode);
    }
    let links: Vec<(&str, String)> = vec![
        ("usr/bin/tool-link", "tool".into()),
        ("usr/bin/tool-abs", "/usr/bin/tool".into()),
        ("usr/lib/libt.so", "libt.so.1".into()),
        ("usr/share/doc/t/far", format!("../{}", "t".repeat(120))),
    ];
    for (rel, target) in &links {
        symlink(root, rel, target);
    }
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-hard")).unwrap();
    fs::create_dir_all(root.join("var/lib/t")).unwrap();
}

fn spec(name: &str) -> BinarySpec {
    BinarySpec {
        package: name.into(),
        version: "1:1.2-3".into(),
        architecture: "all".into(),
        maintainer: "Test Maintainer <test@example.invalid>".into(),
        summary: "a test package".into(),
        description: Some("First paragraph.\n\nSecond, after a blank line.\n  verbatim\n".into()),
        section: Some("misc".into()),
        priority: Some("optional".into()),
        homepage: Some("https://example.invalid/t".into()),
        source: Some("tsrc (1.2-3)".into()),
        depends: vec!["libc6 (>= 2.17)".into(), "a | b".into()],
        recommends: vec!["r".into()],
        conflicts: vec!["old-t".into()],
        provides: vec!["t-virtual (= 1.0)".into()],
        extra_fields: vec![
            ("X-Comb-Note".into(), "hello".into()),
            ("Multi-Arch".into(), "foreign".into()),
            ("Built-Using".into(), "gcc-12 (= 12.2.0-14)".into()),
        ],
        ..Default::default()
    }
}

fn all_files(root: &Path) -> Vec<PathBuf> {
    list_tree(root).unwrap()
}

fn sha256_of(path: &Path) -> String {
    comb_distro::fetch::hash_file(path).unwrap().0
}

fn field(deb: &Path, name: &str) -> String {
    stdout("dpkg-deb", args!["--field", deb, name])
        .trim_end()
        .to_string()
}

#[test]
fn dpkg_deb_reads_what_was_written() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    make_tree(&root, false);
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let mut s = spec("t-pkg");
    s.control_files = vec![
        ControlFile {
            name: "conffiles".into(),
            contents: b"/etc/t.conf\n".to_vec(),
        },
        ControlFile {
            name: "postinst".into(),
            contents: b"#!/bin/sh\nset -e\n".to_vec(),
        },
    ];
    let deb = write_deb(&s, &root, &all_files(&root), SDE, &out).unwrap();
    assert_eq!(deb.filename, "t-pkg_1.2-3_all.deb");
    assert_eq!(deb.filename, deb_filename(&s));
    assert_eq!(deb.path, out.join(&deb.filename));
    assert_eq!(deb.size, fs::metadata(&deb.path).unwrap().len());
    assert_eq!(deb.sha256, sha256_of(&deb.path));
    // Nothing but the .deb is left in the output directory.
    let names: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from(&deb.filename)]);

    let info = stdout("dpkg-deb", args!["--info", deb.path]);
    assert!(info.contains("new Debian package, version 2.0."), "{info}");
    assert!(info.contains(" control"), "{info}");
    assert!(info.contains(" md5sums"), "{info}");
    assert!(info.contains(" postinst"), "{info}");

    // The control file: dpkg's field order, extras in theirs, unknown
    // ones last before the description.
    let expected = format!(
        "Package: t-pkg\nSource: tsrc (1.2-3)\nVersion: 1:1.2-3\nArchitecture: all\n\
         Maintainer: Test Maintainer <test@example.invalid>\nInstalled-Size: {}\n\
         Depends: libc6 (>= 2.17), a | b\nRecommends: r\nConflicts: old-t\n\
         Provides: t-virtual (= 1.0)\nBuilt-Using: gcc-12 (= 12.2.0-14)\nSection: misc\n\
         Priority: optional\nMulti-Arch: foreign\nHomepage: https://example.invalid/t\n\
         X-Comb-Note: hello\nDescription: a test package\n First paragraph.\n .\n \
         Second, after a blank line.\n   verbatim\n",
        deb.installed_size_kib
    );
    assert_eq!(deb.control, expected);
    assert_eq!(stdout("dpkg-deb", args!["--field", deb.path]), expected);
    assert_eq!(field(&deb.path, "Depends"), "libc6 (>= 2.17), a | b");
    assert_eq!(field(&deb.path, "Version"), "1:1.2-3");
    let archive = DebArchive::open(&deb.path).unwrap();
    assert_eq!(archive.control().unwrap(), expected);
    assert_eq!(archive.control_member(), "control.tar.xz");
    assert_eq!(archive.data_member(), "data.tar.xz");

    // md5sums: every regular file but the conffile, sorted, hard links too.
    let members: BTreeMap<String, Vec<u8>> =
        archive.control_members().unwrap().into_iter().collect();
    let md5sums = String::from_utf8(members["md5sums"].clone()).unwrap();
    let paths: Vec<&str> = md5sums.lines().map(|l| &l[34..]).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    assert!(paths.contains(&"usr/bin/tool-hard"));
    assert!(!paths.contains(&"etc/t.conf"));
    assert_eq!(paths.len(), 9);
    let md5_tool = &md5sums
        .lines()
        .find(|l| l.ends_with("  usr/bin/tool"))
        .unwrap()[..32];
    let real = stdout("md5sum", args![root.join("usr/bin/tool")]);
    assert_eq!(md5_tool, &real[..32]);
    assert_eq!(members["conffiles"], b"/etc/t.conf\n");

    // --contents lists every entry with root/root and the clamped time.
    let contents = stdout("dpkg-deb", args!["--contents", deb.path]);
    for line in contents.lines() {
        assert!(line.contains(" root/root "), "{line}");
        assert!(line.contains(" 2020-09-13 12:26 "), "{line}");
    }
    assert!(
        contents.contains("./usr/bin/tool-abs -> /usr/bin/tool"),
        "{contents}"
    );
    assert!(
        contents.contains("./usr/bin/tool-hard link to ./usr/bin/tool"),
        "{contents}"
    );
    assert!(contents.contains("./var/lib/t/\n"), "{contents}");

    // dpkg-deb -x gives back the tree.
    let x = tmp.path().join("x");
    run("dpkg-deb", args!["-x", deb.path, x]);
    assert_eq!(describe(&x), describe(&root));
}

/// Path → (kind, permission bits, content or link target) of a tree.
fn describe(root: &Path) -> BTreeMap<PathBuf, (char, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for rel in list_tree(root).unwrap() {
        let p = root.join(&rel);
        let m = fs::symlink_metadata(&p).unwrap();
        let value = if m.file_type().is_symlink() {
            (
                'l',
                0,
                fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else if m.is_dir() {
            ('d', m.mode() & 0o7777, Vec::new())
        } else {
            ('f', m.mode() & 0o7777, fs::read(&p).unwrap())
        };
        out.insert(rel, value);
    }
    out
}

#[test]
fn dpkg_installs_it() {
    // dpkg --instdir sets owners.
    if !root::is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    make_tree(&root, false);
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let mut s = spec("t-install");
    s.depends.clear();
    s.recommends.clear();
    let deb = write_deb(&s, &root, &all_files(&root), SDE, &out).unwrap();

    let inst = tmp.path().join("inst");
    let admin = inst.join("var/lib/dpkg");
    for d in ["updates", "info", "triggers"] {
        fs::create_dir_all(admin.join(d)).unwrap();
    }
    fs::write(admin.join("status"), "").unwrap();
    let admindir = format!("--admindir={}", admin.display());
    let instdir = format!("--instdir={}", inst.display());
    let o = Command::new("dpkg")
        .args([
            &admindir,
            &instdir,
            "--force-script-chrootless",
            "--no-triggers",
            "-i",
        ])
        .arg(&deb.path)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "dpkg -i failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let status = stdout(
        "dpkg-query",
        args![admindir, "-W", "-f", "${Status} ${Version}", "t-install"],
    );
    assert_eq!(status, "install ok installed 1:1.2-3");
    let listed = stdout("dpkg-query", args![admindir, "-L", "t-install"]);
    assert!(
        listed.lines().any(|l| l == "/usr/bin/tool-hard"),
        "{listed}"
    );
    assert_eq!(
        fs::read(inst.join("usr/bin/tool")).unwrap(),
        fs::read(root.join("usr/bin/tool")).unwrap()
    );
    assert_eq!(
        fs::read_link(inst.join("usr/bin/tool-abs")).unwrap(),
        Path::new("/usr/bin/tool")
    );
    let m = fs::metadata(inst.join("usr/bin/tool")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 0, 0o755));
    assert_eq!(
        m.ino(),
        fs::metadata(inst.join("usr/bin/tool-hard")).unwrap().ino()
    );
    assert!(inst.join("var/lib/t").is_dir());
    // dpkg --verify agrees with the md5sums.
    let verify = Command::new("dpkg")
        .args([&admindir, &instdir, "--verify", "t-install"])
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stdout.is_empty(),
        "{verify:?}"
    );
}

#[test]
fn same_input_gives_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    make_tree(&a, false);
    let out1 = tmp.path().join("out1");
    let out2 = tmp.path().join("out2");
    let out3 = tmp.path().join("out3");
    for d in [&out1, &out2, &out3] {
        fs::create_dir(d).unwrap();
    }
    let s = spec("t-same");
    // A file older than the epoch keeps its time; the others are clamped.
    set_mtime(&a.join("usr/lib/libt.so.1"), SDE - 1000);
    let files = all_files(&a);
    let first = write_deb(&s, &a, &files, SDE, &out1).unwrap();
    let again = write_deb(&s, &a, &files, SDE, &out1).unwrap();
    assert_eq!(first, again);

    // The same tree made in the other order, later, with other owners,
    // group-writable (umask 002), its files listed backwards with
    // duplicates and "./" prefixes.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = tmp.path().join("b");
    make_tree(&b, true);
    set_mtime(&b.join("usr/lib/libt.so.1"), SDE - 1000);
    for rel in list_tree(&b).unwrap() {
        let p = b.join(&rel);
        let m = fs::symlink_metadata(&p).unwrap();
        if !m.file_type().is_symlink() {
            fs::set_permissions(&p, fs::Permissions::from_mode(m.mode() & 0o7777 | 0o020)).unwrap();
        }
        // Only root may give files away; owners are ignored either way.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::lchown(&p, Some(1000), Some(1000)).unwrap();
        }
    }
    let mut files_b: Vec<PathBuf> = list_tree(&b).unwrap().into_iter().rev().collect();
    files_b.push(PathBuf::from("./usr/bin/tool"));
    files_b.push(PathBuf::from("usr/share/doc/t/README"));
    let second = write_deb(&s, &b, &files_b, SDE, &out2).unwrap();
    assert_eq!(first.sha256, second.sha256);
    assert_eq!(
        fs::read(&first.path).unwrap(),
        fs::read(&second.path).unwrap()
    );

    // Only the leaves listed: the parents come by themselves.
    let leaves: Vec<PathBuf> = files
        .iter()
        .filter(|p| !a.join(p).symlink_metadata().unwrap().is_dir() || p.ends_with("var/lib/t"))
        .cloned()
        .collect();
    let third = write_deb(&s, &a, &leaves, SDE, &out3).unwrap();
    assert_eq!(first.sha256, third.sha256);

    let listing = stdout("dpkg-deb", args!["--contents", first.path]);
    let line = listing
        .lines()
        .find(|l| l.ends_with("./usr/lib/libt.so.1"))
        .unwrap();
    assert!(line.contains(" 2020-09-13 12:10 "), "{line}");

    // Another epoch or another compression level changes the bytes.
    let other = write_deb(&s, &a, &files, SDE + 1, &out3).unwrap();
    assert_ne!(other.sha256, first.sha256);
    let fast = write_deb_with(
        &s,
        &a,
        &files,
        SDE,
        &out3,
        &DebOptions {
            xz_level: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(fast.sha256, first.sha256);
    // The number of compression threads changes nothing.
    for xz_threads in [1, 3] {
        let options = DebOptions {
            xz_threads,
            ..Default::default()
        };
        let threaded = write_deb_with(&s, &a, &files, SDE, &out3, &options).unwrap();
        assert_eq!(threaded.sha256, first.sha256, "{xz_threads} threads");
    }
    assert_eq!(
        stdout("dpkg-deb", args!["--fsys-tarfile", fast.path]).len(),
        stdout("dpkg-deb", args!["--fsys-tarfile", first.path]).len()
    );
}

#[test]
fn modes_are_normalised() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    write(&root, "usr/bin/rw", b"x", 0o777);
    write(&root, "usr/share/private", b"x", 0o600);
    write(&root, "usr/share/sticky", b"x", 0o1644);
    fs::create_dir_all(root.join("var/spool/x")).unwrap();
    fs::set_permissions(root.join("var/spool/x"), fs::Permissions::from_mode(0o3777)).unwrap();
    fs::set_permissions(root.join("usr/share"), fs::Permissions::from_mode(0o700)).unwrap();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let deb = write_deb(&spec("t-modes"), &root, &all_files(&root), SDE, &out).unwrap();
    let mut modes = BTreeMap::new();
    DebArchive::open(&deb.path)
        .unwrap()
        .data_entries(|e, _| {
            assert_eq!((e.uid, e.gid), (0, 0));
            modes.insert(e.path.to_string_lossy().into_owned(), (e.kind, e.mode));
            Ok(())
        })
        .unwrap();
    assert_eq!(modes["./usr/bin/rw"], (EntryKind::File, 0o755));
    assert_eq!(modes["./usr/share/private"], (EntryKind::File, 0o600));
    assert_eq!(modes["./usr/share/sticky"], (EntryKind::File, 0o644));
    assert_eq!(modes["./usr/share/"], (EntryKind::Directory, 0o755));
    assert_eq!(modes["./var/spool/x/"], (EntryKind::Directory, 0o755));
    assert_eq!(modes["./"], (EntryKind::Directory, 0o755));
}

fn refused(root: &Path, files: &[&str], out: &Path) -> Error {
    let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    write_deb(&spec("t-bad"), root, &files, SDE, out).unwrap_err()
}

#[test]
fn set_id_files_and_escaping_paths_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    write(&outside, "secret", b"secret", 0o644);
    write(&root, "usr/bin/su", b"su", 0o4755);
    write(&root, "usr/bin/wall", b"wall", 0o2755);
    write(&root, "usr/bin/ok", b"ok", 0o755);
    symlink(&root, "usr/escape", outside.to_str().unwrap());
    symlink(&root, "usr/up", "../..");
    let fifo = std::ffi::CString::new(root.join("usr/fifo").into_os_string().into_encoded_bytes())
        .unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    write(&root, "usr/new\nline", b"x", 0o644);
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();

    let cases: &[(&[&str], &str, &str)] = &[
        (&["usr/bin/ok", "usr/bin/su"], "usr/bin/su", "set-uid"),
        (&["usr/bin/wall"], "usr/bin/wall", "set-gid"),
        (
            &["usr/../../outside/secret"],
            "usr/../../outside/secret",
            "`..`",
        ),
        (&["usr/escape/secret"], "usr/escape/secret", "symlink"),
        (
            &["usr/up/outside/secret"],
            "usr/up/outside/secret",
            "symlink",
        ),
        (&["/etc/passwd"], "/etc/passwd", "absolute"),
        (&["usr/fifo"], "usr/fifo", "FIFO"),
        (&["usr/missing"], "usr/missing", "does not exist"),
        (&["usr/new\nline"], "usr/new\nline", "newline"),
        (&["DEBIAN/control"], "DEBIAN/control", "DEBIAN"),
        (&["usr/bin/ok/x"], "usr/bin/ok/x", "not a directory"),
    ];
    for (files, path, why) in cases {
        let err = refused(&root, files, &out);
        let text = err.to_string();
        match &err {
            Error::DebInput { path: p, .. } => {
                // The error names the path as listed (or the part of it
                // that failed).
                assert!(path.starts_with(p.as_str()), "{p:?} vs {path:?}: {text}");
            }
            other => panic!("{files:?}: expected DebInput, got {other:?}"),
        }
        assert!(text.contains(why), "{files:?}: {text}");
    }
    // The escape through a symlinked parent was refused without reading
    // the target; nothing was left in the output directory.
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
    // The symlinks themselves are fine to package, as symlinks.
    let deb = write_deb(
        &spec("t-links"),
        &root,
        &[PathBuf::from("usr/escape"), PathBuf::from("usr/up")],
        SDE,
        &out,
    )
    .unwrap();
    let contents = stdout("dpkg-deb", args!["--contents", deb.path]);
    assert!(
        contents.contains(&format!("./usr/escape -> {}", outside.display())),
        "{contents}"
    );
}

#[test]
fn bad_specs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    write(&root, "usr/bin/ok", b"ok", 0o755);
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let files = [PathBuf::from("usr/bin/ok")];
    let cases: Vec<(BinarySpec, &str)> = vec![
        (
            BinarySpec {
                package: "Bad_Name".into(),
                ..spec("x")
            },
            "Package",
        ),
        (
            BinarySpec {
                package: "a".into(),
                ..spec("x")
            },
            "Package",
        ),
        (
            BinarySpec {
                version: "1.0 beta".into(),
                ..spec("xx")
            },
            "Version",
        ),
        (
            BinarySpec {
                version: "".into(),
                ..spec("xx")
            },
            "Version",
        ),
        (
            BinarySpec {
                architecture: "any".into(),
                ..spec("xx")
            },
            "Architecture",
        ),
        (
            BinarySpec {
                architecture: "AMD64".into(),
                ..spec("xx")
            },
            "Architecture",
        ),
        (
            BinarySpec {
                maintainer: " ".into(),
                ..spec("xx")
            },
            "Maintainer",
        ),
        (
            BinarySpec {
                summary: "two\nlines".into(),
                ..spec("xx")
            },
            "Description",
        ),
        (
            BinarySpec {
                depends: vec!["libc6 (>> )".into()],
                ..spec("xx")
            },
            "Depends",
        ),
        (
            BinarySpec {
                depends: vec!["${shlibs:Depends}".into()],
                ..spec("xx")
            },
            "Depends",
        ),
        (
            BinarySpec {
                provides: vec!["a | b".into()],
                ..spec("xx")
            },
            "Provides",
        ),
        (
            BinarySpec {
                source: Some("src (1.0".into()),
                ..spec("xx")
            },
            "Source",
        ),
        (
            BinarySpec {
                extra_fields: vec![("Package".into(), "y".into())],
                ..spec("xx")
            },
            "Package",
        ),
        (
            BinarySpec {
                extra_fields: vec![("Bad Name".into(), "y".into())],
                ..spec("xx")
            },
            "Bad Name",
        ),
        (
            BinarySpec {
                control_files: vec![ControlFile {
                    name: "postinst".into(),
                    contents: b"echo".to_vec(),
                }],
                ..spec("xx")
            },
            "#!",
        ),
        (
            BinarySpec {
                control_files: vec![ControlFile {
                    name: "md5sums".into(),
                    contents: Vec::new(),
                }],
                ..spec("xx")
            },
            "md5sums",
        ),
        (
            BinarySpec {
                control_files: vec![ControlFile {
                    name: "conffiles".into(),
                    contents: b"/etc/missing.conf\n".to_vec(),
                }],
                ..spec("xx")
            },
            "/etc/missing.conf",
        ),
    ];
    for (s, what) in cases {
        let err = write_deb(&s, &root, &files, SDE, &out).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, Error::DebSpec { .. } | Error::Relation { .. }),
            "{what}: {err:?}"
        );
        assert!(text.contains(what), "{what}: {text}");
    }
    let err = write_deb(&spec("xx"), &root, &files, -1, &out).unwrap_err();
    assert!(err.to_string().contains("SOURCE_DATE_EPOCH"), "{err}");
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
}

#[test]
fn a_package_without_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("usr/share/doc/t-meta")).unwrap();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let mut s = spec("t-meta");
    s.description = None;
    let deb = write_deb(
        &s,
        &root,
        &[PathBuf::from("usr/share/doc/t-meta")],
        SDE,
        &out,
    )
    .unwrap();
    let contents = stdout("dpkg-deb", args!["--contents", deb.path]);
    let names: Vec<&str> = contents
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "./",
            "./usr/",
            "./usr/share/",
            "./usr/share/doc/",
            "./usr/share/doc/t-meta/"
        ]
    );
    assert_eq!(deb.installed_size_kib, 5);
    assert!(deb.control.ends_with("Description: a test package\n"));
    let info = stdout("dpkg-deb", args!["--info", deb.path]);
    assert!(!info.contains("md5sums"), "{info}");

    // Nothing at all: just "./".
    let empty = write_deb(&spec("t-empty"), &root, &[], SDE, &out).unwrap();
    let contents = stdout("dpkg-deb", args!["--contents", empty.path]);
    assert_eq!(contents.lines().count(), 1, "{contents}");
    assert_eq!(empty.installed_size_kib, 1);
}

#[test]
fn generated_files_join_the_listed_ones_where_dpkg_deb_puts_them() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    write(&root, "usr/bin/tool", b"#!/bin/sh\n", 0o755);
    write(&root, "usr/share/doc/t-gen/README", b"read me\n", 0o644);
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let mut s = spec("t-gen");
    s.generated = vec![
        GeneratedFile {
            // Its parent is on disk and listed.
            path: PathBuf::from("usr/share/doc/t-gen/copyright"),
            contents: Generated::File(b"Format: x\n".to_vec()),
        },
        GeneratedFile {
            // Its parents are not on disk at all.
            path: PathBuf::from("usr/share/man/man1/tool.1.gz"),
            contents: Generated::File(vec![0x1f, 0x8b]),
        },
        GeneratedFile {
            path: PathBuf::from("usr/share/doc/t-gen-dbgsym"),
            contents: Generated::Symlink("t-gen".into()),
        },
    ];
    let files = [
        PathBuf::from("usr/bin/tool"),
        PathBuf::from("usr/share/doc/t-gen/README"),
    ];
    let deb = write_deb(&s, &root, &files, SDE, &out).unwrap();
    let contents = stdout("dpkg-deb", args!["--contents", deb.path]);
    let names: Vec<String> = contents
        .lines()
        .map(|l| l.split_whitespace().skip(5).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        names,
        [
            "./",
            "./usr/",
            "./usr/bin/",
            "./usr/bin/tool",
            "./usr/share/",
            "./usr/share/doc/",
            "./usr/share/doc/t-gen/",
            "./usr/share/doc/t-gen/README",
            "./usr/share/doc/t-gen/copyright",
            "./usr/share/man/",
            "./usr/share/man/man1/",
            "./usr/share/man/man1/tool.1.gz",
            "./usr/share/doc/t-gen-dbgsym -> t-gen",
        ],
        "{contents}"
    );
    assert!(
        contents.contains(
            "-rw-r--r-- root/root        10 2020-09-13 12:26 ./usr/share/doc/t-gen/copyright"
        ),
        "{contents}"
    );
    let md5sums = stdout(
        "sh",
        args![
            "-c",
            format!(
                "dpkg-deb --ctrl-tarfile {} | tar -xO ./md5sums",
                deb.path.display()
            )
        ],
    );
    assert!(
        md5sums.contains("usr/share/doc/t-gen/copyright"),
        "{md5sums}"
    );
    // The same input, the same bytes.
    let again = tmp.path().join("again");
    fs::create_dir(&again).unwrap();
    let second = write_deb(&s, &root, &files, SDE, &again).unwrap();
    assert_eq!(deb.sha256, second.sha256);
    // A generated path that is also listed is a mistake.
    s.generated[0].path = PathBuf::from("usr/share/doc/t-gen/README");
    let err = write_deb(&s, &root, &files, SDE, &out)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("comb makes this file, and it is also listed"),
        "{err}"
    );
}

#[test]
fn installed_size_is_what_dpkg_gencontrol_computes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    make_tree(&root, false);
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let deb = write_deb(&spec("t-size"), &root, &all_files(&root), SDE, &out).unwrap();

    // By hand: each directory (with the root) 1 KiB; each file and symlink
    // its size rounded up to KiB, hard links counted once.
    // ./ etc/ usr/ usr/bin/ usr/bin-extra/ usr/lib/ usr/share/ usr/share/doc/
    // usr/share/doc/t/ usr/share/ddd…/ var/ var/lib/ var/lib/t/
    let dirs = 13;
    // tool (and its hard link, once), libt 5000 B, README 100000 B, empty
    // (0), k1024, k1025, t.conf, the long name, x.
    let files: u64 = [1, 5, 98, 0, 1, 2, 1, 1, 1].iter().sum();
    let symlinks = 4;
    assert_eq!(deb.installed_size_kib, dirs + files + symlinks);

    // And as dpkg-gencontrol computes it from the same tree.
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("debian")).unwrap();
    fs::write(
        src.join("debian/control"),
        "Source: tsrc\nMaintainer: T <t@example.invalid>\n\nPackage: t-size\nArchitecture: all\nDescription: x\n y\n",
    )
    .unwrap();
    fs::write(
        src.join("debian/changelog"),
        "tsrc (1.0) unstable; urgency=low\n\n  * x\n\n -- T <t@example.invalid>  Thu, 01 Jan 2020 00:00:00 +0000\n",
    )
    .unwrap();
    let o = Command::new("dpkg-gencontrol")
        .arg("-pt-size")
        .arg(format!("-P{}", root.display()))
        .arg("-O")
        .current_dir(&src)
        .output();
    let o = match o {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("dpkg-gencontrol not installed (package dpkg-dev): compared by hand only");
            return;
        }
        Err(e) => panic!("cannot run dpkg-gencontrol: {e}"),
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let theirs = text
        .lines()
        .find_map(|l| l.strip_prefix("Installed-Size: "))
        .unwrap();
    assert_eq!(theirs, deb.installed_size_kib.to_string());
}

#[test]
fn the_deb_is_what_dpkg_deb_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    make_tree(&root, false);
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let deb = write_deb(&spec("t-cmp"), &root, &all_files(&root), SDE, &out).unwrap();

    // dpkg-deb builds the same tree, with our control files, under the
    // same epoch.
    let archive = DebArchive::open(&deb.path).unwrap();
    let stage = tmp.path().join("stage");
    run("cp", args!["-a", root, stage]);
    fs::create_dir(stage.join("DEBIAN")).unwrap();
    fs::write(stage.join("DEBIAN/control"), archive.control().unwrap()).unwrap();
    for (name, bytes) in archive.control_members().unwrap() {
        fs::write(stage.join("DEBIAN").join(name), bytes).unwrap();
    }
    let theirs = tmp.path().join("theirs.deb");
    let o = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&stage)
        .arg(&theirs)
        .env("SOURCE_DATE_EPOCH", SDE.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let listing = |deb: &Path, what: &str| {
        let tar = run("dpkg-deb", args![what, deb]).stdout;
        let path = tmp.path().join("listing.tar");
        fs::write(&path, &tar).unwrap();
        (tar, stdout("tar", args!["-tvvf", path]))
    };
    let (ours_data, ours_list) = listing(&deb.path, "--fsys-tarfile");
    let (their_data, their_list) = listing(&theirs, "--fsys-tarfile");
    assert_eq!(ours_list, their_list);
    // Not only the listing: the uncompressed bytes are the same.
    assert!(ours_data == their_data, "data.tar differs from dpkg-deb's");
    let (ours_ctrl, ours_list) = listing(&deb.path, "--ctrl-tarfile");
    let (their_ctrl, their_list) = listing(&theirs, "--ctrl-tarfile");
    assert_eq!(ours_list, their_list);
    assert!(
        ours_ctrl == their_ctrl,
        "control.tar differs from dpkg-deb's"
    );
    // And so is the whole file, compressed members and ar headers included.
    assert!(
        fs::read(&deb.path).unwrap() == fs::read(&theirs).unwrap(),
        "the .deb differs from dpkg-deb's"
    );
}

// ---------------------------------------------------------------------------
// The flat APT repository

/// Two packages, an app depending on a library, written into `repo`.
fn publish(tmp: &Path, repo: &Path) -> Vec<RepoEntry> {
    let root = tmp.join("pub-root");
    write(&root, "usr/lib/libgreet.so.1", b"lib\n", 0o644);
    write(&root, "usr/bin/greet", b"#!/bin/sh\necho hi\n", 0o755);
    fs::create_dir_all(repo).unwrap();
    let lib = BinarySpec {
        package: "libgreet1".into(),
        version: "1.0-1".into(),
        architecture: "amd64".into(),
        maintainer: "T <t@example.invalid>".into(),
        summary: "greeting library".into(),
        ..Default::default()
    };
    let app = BinarySpec {
        package: "greet".into(),
        version: "2:1.0-1".into(),
        architecture: "amd64".into(),
        depends: vec!["libgreet1 (= 1.0-1)".into()],
        summary: "greets".into(),
        description: Some("Says hello.\n\nTwice.".into()),
        ..lib.clone()
    };
    let lib = write_deb(
        &lib,
        &root,
        &[PathBuf::from("usr/lib/libgreet.so.1")],
        SDE,
        repo,
    )
    .unwrap();
    let app = write_deb(&app, &root, &[PathBuf::from("usr/bin/greet")], SDE, repo).unwrap();
    vec![RepoEntry::from_written(&app), RepoEntry::from_written(&lib)]
}

/// An APT configuration of its own under `work`, like the aptbox's,
/// reading `sources`.
fn apt_config(work: &Path, sources: &str) -> PathBuf {
    for d in [
        "etc/apt.conf.d",
        "etc/preferences.d",
        "etc/sources.list.d",
        "etc/trusted.gpg.d",
        "state/lists/partial",
        "cache/archives/partial",
        "log",
    ] {
        fs::create_dir_all(work.join(d)).unwrap();
    }
    fs::write(work.join("etc/sources.list"), sources).unwrap();
    fs::write(work.join("state/status"), "").unwrap();
    let w = work.display();
    let conf = format!(
        r#"Dir "{w}/";
Dir::Etc "{w}/etc/";
Dir::Etc::main "/dev/null";
Dir::Etc::parts "{w}/etc/apt.conf.d/";
Dir::Etc::sourcelist "{w}/etc/sources.list";
Dir::Etc::sourceparts "{w}/etc/sources.list.d/";
Dir::Etc::preferences "/dev/null";
Dir::Etc::preferencesparts "{w}/etc/preferences.d/";
Dir::Etc::trusted "/dev/null";
Dir::Etc::trustedparts "{w}/etc/trusted.gpg.d/";
Dir::State "{w}/state/";
Dir::State::lists "{w}/state/lists/";
Dir::State::status "{w}/state/status";
Dir::Cache "{w}/cache/";
Dir::Cache::archives "{w}/cache/archives/";
Dir::Log "{w}/log/";
APT::Architecture "amd64";
APT::Architectures {{ "amd64"; }};
APT::Install-Recommends "false";
APT::Sandbox::User "root";
Debug::NoLocking "true";
Acquire::Languages "none";
Acquire::PDiffs "false";
"#
    );
    let path = work.join("apt.conf");
    fs::write(&path, conf).unwrap();
    path
}

fn apt(config: &Path, cwd: &Path, args: &[&str]) -> Output {
    let o = Command::new(args[0])
        .args(&args[1..])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LC_ALL", "C.UTF-8")
        .env("APT_CONFIG", config)
        .current_dir(cwd)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success()
            && !err
                .lines()
                .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "{args:?}:\n{out}\n{err}"
    );
    o
}

#[test]
fn apt_uses_the_flat_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo dir");
    let entries = publish(tmp.path(), &repo);
    write_flat_repository(&repo, &entries, SDE).unwrap();
    let packages = fs::read(repo.join("Packages")).unwrap();
    let release = fs::read_to_string(repo.join("Release")).unwrap();
    assert!(
        release.contains("Date: Sun, 13 Sep 2020 12:26:40 UTC\n"),
        "{release}"
    );
    assert!(release.contains("Architectures: all amd64\n"), "{release}");

    // Deterministic: the same entries in another order give the same bytes.
    let mut reversed = entries.clone();
    reversed.reverse();
    write_flat_repository(&repo, &reversed, SDE).unwrap();
    assert_eq!(fs::read(repo.join("Packages")).unwrap(), packages);
    assert_eq!(fs::read_to_string(repo.join("Release")).unwrap(), release);
    let names: Vec<String> = {
        let mut v: Vec<String> = fs::read_dir(&repo)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names,
        [
            "Packages",
            "Packages.xz",
            "Release",
            "greet_1.0-1_amd64.deb",
            "libgreet1_1.0-1_amd64.deb"
        ]
    );
    // The xz index holds the same text.
    let xz = run("xz", args!["-dc", repo.join("Packages.xz")]).stdout;
    assert_eq!(xz, packages);

    // from_deb reads the same entry back from the file.
    let again =
        RepoEntry::from_deb(&repo.join("greet_1.0-1_amd64.deb"), "greet_1.0-1_amd64.deb").unwrap();
    assert_eq!(again, entries[0]);
    let text = String::from_utf8(packages.clone()).unwrap();
    assert!(text.starts_with(&packages_index(&repo, &[again]).unwrap()));

    // The aptbox resolves from it.
    let aptbox = Aptbox::new(
        &tmp.path().join("aptbox"),
        "amd64",
        &[repo.join("Packages")],
    )
    .unwrap();
    let plan = aptbox.resolve(&["greet".to_string()], None).unwrap();
    let got: Vec<(&str, &str, &str)> = plan
        .iter()
        .map(|r| (r.name.as_str(), r.version.as_str(), r.filename.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("greet", "2:1.0-1", "./greet_1.0-1_amd64.deb"),
            ("libgreet1", "1.0-1", "./libgreet1_1.0-1_amd64.deb")
        ]
    );
    assert_eq!(plan[0].sha256, entries[0].sha256);

    // apt-get update accepts the repository (Release hashes, Packages.xz),
    // and apt-get download fetches and verifies the .debs.
    let work = tmp.path().join("apt");
    let uri: String = repo.to_str().unwrap().replace(' ', "%20");
    let config = apt_config(&work, &format!("deb [trusted=yes] file:{uri} ./\n"));
    apt(&config, &work, &["apt-get", "update"]);
    let lists: Vec<String> = fs::read_dir(work.join("state/lists"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(lists.iter().any(|l| l.ends_with("_Packages")), "{lists:?}");
    let show =
        String::from_utf8(apt(&config, &work, &["apt-cache", "show", "greet"]).stdout).unwrap();
    assert!(show.contains("Version: 2:1.0-1\n"), "{show}");
    let sim = String::from_utf8(
        apt(
            &config,
            &work,
            &["apt-get", "--simulate", "install", "greet"],
        )
        .stdout,
    )
    .unwrap();
    assert!(sim.contains("Inst libgreet1 (1.0-1"), "{sim}");
    let dl = tmp.path().join("dl");
    fs::create_dir(&dl).unwrap();
    apt(&config, &dl, &["apt-get", "download", "greet", "libgreet1"]);
    let mut fetched: Vec<String> = fs::read_dir(&dl)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    fetched.sort();
    assert_eq!(
        fetched,
        ["greet_2%3a1.0-1_amd64.deb", "libgreet1_1.0-1_amd64.deb"]
    );
}

#[test]
fn a_wrong_hash_in_the_index_is_caught_by_apt() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let mut entries = publish(tmp.path(), &repo);
    entries[1].sha256 = "0".repeat(64);
    write_flat_repository(&repo, &entries, SDE).unwrap();
    let work = tmp.path().join("apt");
    let config = apt_config(
        &work,
        &format!("deb [trusted=yes] file:{} ./\n", repo.display()),
    );
    apt(&config, &work, &["apt-get", "update"]);
    let o = Command::new("apt-get")
        .args(["download", "libgreet1"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("APT_CONFIG", &config)
        .current_dir(&work)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("Hash Sum mismatch"),
        "{err}"
    );
}
