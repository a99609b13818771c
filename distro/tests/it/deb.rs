//! Reading and unpacking `.deb`s: real ones built with `dpkg-deb`, hostile
//! ones assembled by hand (ar and tar written here byte by byte), and the
//! host's own cached ones when there are any.
//!
//! Unpacking sets owners, so most tests need root (comb unpacks as root);
//! they are skipped with a note otherwise.

use comb_distro::deb::{
    statoverride_for, unpack_data, Compression, DebArchive, EntryKind, SetIdFile, UnpackOptions,
    MAX_DEPTH, MAX_ENTRIES,
};
use comb_distro::Error;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::root;

/// Unpacking sets owners: the test needs root.
macro_rules! need_root {
    () => {
        if !root::is_root() {
            return;
        }
    };
}

// ---------------------------------------------------------------------------
// Real .debs, built with dpkg-deb

const MTIME: i64 = 1_600_000_000;

/// Builds a small package in `dir` with dpkg-deb: files, a setuid program,
/// a setgid directory, symlinks, a hard link, a long path, maintainer
/// scripts.
fn build_deb(dir: &Path, name: &str, compression: &str, merged_layout: bool) -> PathBuf {
    let stage = dir.join(format!("stage-{name}"));
    let w = |rel: &str, data: &[u8], mode: u32| {
        let p = stage.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    };
    fs::create_dir_all(stage.join("DEBIAN")).unwrap();
    fs::write(
        stage.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: T <t@example.invalid>\nDescription: test package\n test\n"
        ),
    )
    .unwrap();
    w("DEBIAN/postinst", b"#!/bin/sh\nexit 0\n", 0o755);
    w("DEBIAN/conffiles", b"/etc/test.conf\n", 0o644);
    w("etc/test.conf", b"key = value\n", 0o644);
    w("usr/share/doc/t/README", &vec![b'x'; 100_000], 0o644);
    w("usr/bin/passwd", b"#!/bin/sh\necho passwd\n", 0o4755);
    w("usr/bin/wall", b"#!/bin/sh\necho wall\n", 0o2755);
    w("usr/bin/tool", b"tool\n", 0o755);
    std::os::unix::fs::symlink("tool", stage.join("usr/bin/tool-link")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/tool", stage.join("usr/bin/tool-abs")).unwrap();
    fs::hard_link(stage.join("usr/bin/tool"), stage.join("usr/bin/tool-hard")).unwrap();
    fs::create_dir_all(stage.join("var/mail")).unwrap();
    fs::set_permissions(stage.join("var/mail"), fs::Permissions::from_mode(0o2775)).unwrap();
    fs::create_dir_all(stage.join("tmp")).unwrap();
    fs::set_permissions(stage.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    let long = format!("usr/share/{}/{}", "d".repeat(120), "f".repeat(150));
    w(&long, b"long\n", 0o644);
    if merged_layout {
        w("bin/sh", b"#!/bin/sh\n", 0o755);
        w("bin/su", b"su\n", 0o4755);
        w("sbin/init", b"init\n", 0o755);
        w("lib/x86_64-linux-gnu/libt.so.1", b"lib\n", 0o644);
        std::os::unix::fs::symlink("libt.so.1", stage.join("lib/x86_64-linux-gnu/libt.so"))
            .unwrap();
    }
    // Fixed times, so that the unpacked times can be checked.
    let status = Command::new("find")
        .arg(&stage)
        .args(["-exec", "touch", "-h", "-d", "@1600000000", "{}", "+"])
        .status()
        .unwrap();
    assert!(status.success());
    let out = dir.join(format!("{name}.deb"));
    let o = Command::new("dpkg-deb")
        .args(["--root-owner-group", &format!("-Z{compression}"), "--build"])
        .arg(&stage)
        .arg(&out)
        .output()
        .expect("dpkg-deb must be installed");
    assert!(
        o.status.success(),
        "dpkg-deb failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// One line of `dpkg-deb -c`: type letter, mode string, name, link.
fn dpkg_deb_list(deb: &Path) -> Vec<(char, String, String)> {
    let o = Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|line| {
            // perms owner size date time name[ -> target | link to target]
            let mut rest = line;
            let mut fields = Vec::new();
            for _ in 0..5 {
                let t = rest.trim_start();
                let end = t.find(' ').unwrap();
                fields.push(&t[..end]);
                rest = &t[end..];
            }
            let name = rest.trim_start();
            let name = name
                .split_once(" -> ")
                .map(|(n, _)| n)
                .or_else(|| name.split_once(" link to ").map(|(n, _)| n))
                .unwrap_or(name);
            let perms = fields[0];
            let kind = if line.contains(" link to ") {
                'h'
            } else {
                perms.chars().next().unwrap()
            };
            (kind, perms.to_string(), name.to_string())
        })
        .collect()
}

/// Every path below `root` (relative, without a leading `./`), with its
/// lstat metadata.
fn tree(root: &Path) -> BTreeMap<String, fs::Metadata> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, fs::Metadata>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if md.is_dir() {
                walk(root, &p, out);
            }
            out.insert(rel, md);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The mode a `dpkg-deb -c` permission string stands for.
fn mode_of(perms: &str) -> u32 {
    let c: Vec<char> = perms.chars().collect();
    let bits = [0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 0o4, 0o2, 0o1];
    let mut mode = 0;
    for (i, bit) in bits.iter().enumerate() {
        if !matches!(c[i + 1], '-' | 'S' | 'T') {
            mode |= bit;
        }
    }
    if matches!(c[3], 's' | 'S') {
        mode |= 0o4000;
    }
    if matches!(c[6], 's' | 'S') {
        mode |= 0o2000;
    }
    if matches!(c[9], 't' | 'T') {
        mode |= 0o1000;
    }
    mode
}

#[test]
fn reads_and_unpacks_every_compression() {
    need_root!();
    for (z, expect) in [
        ("xz", Compression::Xz),
        ("gzip", Compression::Gzip),
        ("zstd", Compression::Zstd),
        ("none", Compression::None),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let deb = build_deb(dir.path(), &format!("t-{z}"), z, false);
        let archive = DebArchive::open(&deb).unwrap();
        assert_eq!(archive.format_version(), "2.0");
        assert_eq!(archive.data_compression(), expect, "{z}");
        assert!(archive.data_member().starts_with("data.tar"));
        assert!(archive.control_member().starts_with("control.tar"));

        let control = archive.control().unwrap();
        assert!(control.contains(&format!("Package: t-{z}\n")), "{control}");
        let members = archive.control_members().unwrap();
        let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"postinst"), "{names:?}");
        assert!(names.contains(&"conffiles"), "{names:?}");
        assert!(!names.contains(&"control"));
        let postinst = &members.iter().find(|(n, _)| n == "postinst").unwrap().1;
        assert_eq!(postinst, b"#!/bin/sh\nexit 0\n");

        // The streamed entries are exactly dpkg-deb's list, in order.
        let listed = dpkg_deb_list(&deb);
        let mut streamed = Vec::new();
        archive
            .data_entries(|e, content| {
                let mut data = Vec::new();
                content.read_to_end(&mut data).unwrap();
                assert_eq!(data.len() as u64, e.size);
                streamed.push(e.path.to_string_lossy().into_owned());
                Ok(())
            })
            .unwrap();
        let listed_names: Vec<&str> = listed.iter().map(|(_, _, n)| n.as_str()).collect();
        assert_eq!(streamed, listed_names, "{z}");

        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let report = unpack_data(&deb, &root, &UnpackOptions::default()).unwrap();
        check_against_listing(&root, &listed);
        assert_eq!(report.hard_links, 1);
        assert_eq!(report.symlinks, 2);
        assert!(report.skipped.is_empty());
        assert!(report.bytes > 100_000);

        // Contents, owners, times, modes.
        assert_eq!(
            fs::read(root.join("usr/share/doc/t/README")).unwrap(),
            vec![b'x'; 100_000]
        );
        let tool = fs::metadata(root.join("usr/bin/tool")).unwrap();
        let hard = fs::metadata(root.join("usr/bin/tool-hard")).unwrap();
        assert_eq!(tool.ino(), hard.ino(), "hard link kept");
        assert_eq!(tool.nlink(), 2);
        assert_eq!(
            fs::read_link(root.join("usr/bin/tool-abs")).unwrap(),
            Path::new("/usr/bin/tool")
        );
        assert_eq!(
            fs::read_link(root.join("usr/bin/tool-link")).unwrap(),
            Path::new("tool")
        );
        for (path, md) in tree(&root) {
            assert_eq!((md.uid(), md.gid()), (0, 0), "{path}");
            assert_eq!(md.mtime(), MTIME, "{path} keeps the archive's mtime");
        }
        let mode = |p: &str| fs::symlink_metadata(root.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("usr/bin/passwd"), 0o755, "setuid stripped");
        assert_eq!(mode("usr/bin/wall"), 0o755, "setgid stripped");
        assert_eq!(mode("var/mail"), 0o2775, "setgid directory kept");
        assert_eq!(mode("tmp"), 0o1777, "sticky kept");
        assert_eq!(
            report.set_id,
            vec![
                SetIdFile {
                    path: "/usr/bin/passwd".into(),
                    uid: 0,
                    gid: 0,
                    mode: 0o4755
                },
                SetIdFile {
                    path: "/usr/bin/wall".into(),
                    uid: 0,
                    gid: 0,
                    mode: 0o2755
                },
            ]
        );
        assert_eq!(
            statoverride_for(&report.set_id),
            "#0 #0 0755 /usr/bin/passwd\n#0 #0 0755 /usr/bin/wall\n"
        );

        // Unpacking again over itself (a later package shipping the same
        // paths) replaces files and keeps directories.
        fs::write(root.join("usr/bin/tool"), b"changed\n").unwrap();
        let again = unpack_data(&deb, &root, &UnpackOptions::default()).unwrap();
        assert_eq!(again.files, report.files);
        assert_eq!(fs::read(root.join("usr/bin/tool")).unwrap(), b"tool\n");
        assert_eq!(
            fs::metadata(root.join("usr/bin/tool")).unwrap().ino(),
            fs::metadata(root.join("usr/bin/tool-hard")).unwrap().ino()
        );
        check_against_listing(&root, &listed);
    }
}

/// The unpacked tree holds exactly what `dpkg-deb -c` lists, each with its
/// type and mode (set-id bits of files stripped), and nothing else.
fn check_against_listing(root: &Path, listed: &[(char, String, String)]) {
    let got = tree(root);
    let mut want = BTreeMap::new();
    for (kind, perms, name) in listed {
        let rel = name.trim_start_matches("./").trim_end_matches('/');
        if rel.is_empty() {
            continue;
        }
        want.insert(rel.to_string(), (*kind, perms.clone()));
    }
    let got_names: Vec<&String> = got.keys().collect();
    let want_names: Vec<&String> = want.keys().collect();
    assert_eq!(got_names, want_names, "unpacked tree vs dpkg-deb -c");
    for (rel, (kind, perms)) in want {
        let md = &got[&rel];
        let ft = md.file_type();
        match kind {
            'd' => assert!(ft.is_dir(), "{rel}"),
            'l' => assert!(ft.is_symlink(), "{rel}"),
            '-' | 'h' => assert!(ft.is_file(), "{rel}"),
            other => panic!("{rel}: unexpected type {other} in the listing"),
        }
        if kind == 'l' {
            continue;
        }
        let mut expected = mode_of(&perms);
        if kind != 'd' {
            expected &= !0o6000;
        } else {
            expected &= !0o4000;
        }
        assert_eq!(md.mode() & 0o7777, expected, "{rel} ({perms})");
    }
}

#[test]
fn merged_usr_rewrites_aliased_directories() {
    need_root!();
    let dir = tempfile::tempdir().unwrap();
    let deb = build_deb(dir.path(), "merged", "xz", true);
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("usr")).unwrap();
    for alias in ["bin", "sbin", "lib", "lib64"] {
        fs::create_dir_all(root.join("usr").join(alias)).unwrap();
        std::os::unix::fs::symlink(format!("usr/{alias}"), root.join(alias)).unwrap();
    }

    // Without the rewrite, ./bin/sh goes through the bin symlink: refused.
    let err = unpack_data(&deb, &root, &UnpackOptions::default()).unwrap_err();
    match &err {
        Error::UnsafeDebEntry {
            deb: d,
            path,
            reason,
        } => {
            assert_eq!(d, &deb);
            assert!(
                path.starts_with("./bin/") || path.starts_with("./lib/"),
                "{path}"
            );
            assert!(reason.contains("symlink"), "{reason}");
        }
        other => panic!("unexpected {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("merged.deb") && text.contains("./"), "{text}");

    let options = UnpackOptions {
        merged_usr: true,
        ..UnpackOptions::default()
    };
    let report = unpack_data(&deb, &root, &options).unwrap();
    assert_eq!(fs::read(root.join("usr/bin/sh")).unwrap(), b"#!/bin/sh\n");
    assert_eq!(fs::read(root.join("usr/sbin/init")).unwrap(), b"init\n");
    assert_eq!(
        fs::read(root.join("usr/lib/x86_64-linux-gnu/libt.so.1")).unwrap(),
        b"lib\n"
    );
    assert_eq!(
        fs::read_link(root.join("usr/lib/x86_64-linux-gnu/libt.so")).unwrap(),
        Path::new("libt.so.1")
    );
    for alias in ["bin", "sbin", "lib", "lib64"] {
        let md = fs::symlink_metadata(root.join(alias)).unwrap();
        assert!(md.file_type().is_symlink(), "{alias} stays a symlink");
    }
    // Set-id files are named as dpkg names them: the archive's path.
    let paths: Vec<&str> = report.set_id.iter().map(|s| s.path.as_str()).collect();
    assert!(paths.contains(&"/bin/su"), "{paths:?}");
    assert!(paths.contains(&"/usr/bin/passwd"), "{paths:?}");
    assert_eq!(
        fs::metadata(root.join("usr/bin/su")).unwrap().mode() & 0o7777,
        0o755
    );
}

#[test]
fn statoverride_format_is_what_dpkg_reads() {
    let files = vec![
        SetIdFile {
            path: "/usr/bin/passwd".into(),
            uid: 0,
            gid: 0,
            mode: 0o4755,
        },
        SetIdFile {
            path: "/usr/bin/chage".into(),
            uid: 0,
            gid: 42,
            mode: 0o2755,
        },
        // A duplicate: dpkg refuses two overrides of one path.
        SetIdFile {
            path: "/usr/bin/passwd".into(),
            uid: 0,
            gid: 0,
            mode: 0o4755,
        },
    ];
    let text = statoverride_for(&files);
    assert_eq!(
        text,
        "#0 #42 0755 /usr/bin/chage\n#0 #0 0755 /usr/bin/passwd\n"
    );
    assert_eq!(statoverride_for(&[]), "");

    // dpkg-statoverride itself parses it.
    let admin = tempfile::tempdir().unwrap();
    fs::write(admin.path().join("statoverride"), &text).unwrap();
    let o = Command::new("dpkg-statoverride")
        .arg("--admindir")
        .arg(admin.path())
        .arg("--list")
        .output();
    let Ok(o) = o else {
        eprintln!("dpkg-statoverride not found: format check skipped");
        return;
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(listed.contains("/usr/bin/passwd"), "{listed}");
    assert!(listed.contains("/usr/bin/chage"), "{listed}");
    assert!(listed.contains("755"), "{listed}");
    assert!(!listed.contains("4755"), "{listed}");
}

// ---------------------------------------------------------------------------
// Hand-made archives

/// One tar entry, written by hand so that anything can be said.
#[derive(Clone)]
struct T {
    name: Vec<u8>,
    kind: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    data: Vec<u8>,
    link: Vec<u8>,
}

fn t(name: &str, kind: u8) -> T {
    T {
        name: name.as_bytes().to_vec(),
        kind,
        mode: if kind == b'5' { 0o755 } else { 0o644 },
        uid: 0,
        gid: 0,
        data: Vec::new(),
        link: Vec::new(),
    }
}

fn file(name: &str, data: &[u8]) -> T {
    T {
        data: data.to_vec(),
        ..t(name, b'0')
    }
}

fn dir_e(name: &str) -> T {
    t(name, b'5')
}

fn symlink_e(name: &str, target: &str) -> T {
    T {
        link: target.as_bytes().to_vec(),
        ..t(name, b'2')
    }
}

fn hardlink_e(name: &str, target: &str) -> T {
    T {
        link: target.as_bytes().to_vec(),
        ..t(name, b'1')
    }
}

fn octal(field: &mut [u8], value: u64) {
    let s = format!("{:0w$o}\0", value, w = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

fn raw_header(
    name: &[u8],
    kind: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    link: &[u8],
) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], uid as u64);
    octal(&mut h[116..124], gid as u64);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], MTIME as u64);
    h[156] = kind;
    h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    h[257..265].copy_from_slice(b"ustar  \0");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

fn push_padded(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn tar(entries: &[T]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        for (long, flag) in [(&e.name, b'L'), (&e.link, b'K')] {
            if long.len() > 100 {
                let mut data = long.clone();
                data.push(0);
                out.extend_from_slice(&raw_header(
                    b"././@LongLink",
                    flag,
                    0o644,
                    0,
                    0,
                    data.len() as u64,
                    b"",
                ));
                push_padded(&mut out, &data);
            }
        }
        out.extend_from_slice(&raw_header(
            &e.name,
            e.kind,
            e.mode,
            e.uid,
            e.gid,
            e.data.len() as u64,
            &e.link,
        ));
        push_padded(&mut out, &e.data);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        let h = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            0,
            0,
            0,
            100644,
            data.len()
        );
        assert_eq!(h.len(), 60);
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

fn control_tar() -> Vec<u8> {
    tar(&[
        dir_e("./"),
        file(
            "./control",
            b"Package: evil\nVersion: 1\nArchitecture: all\nDescription: x\n x\n",
        ),
    ])
}

fn hand_deb(path: &Path, entries: &[T]) -> PathBuf {
    let data = tar(entries);
    let control = control_tar();
    fs::write(
        path,
        ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar", &data),
        ]),
    )
    .unwrap();
    path.to_path_buf()
}

/// A scratch area: `root` is the layer, `outside` a sibling directory that
/// no unpack may touch (its listing and contents are compared after).
struct Arena {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
}

impl Arena {
    fn new() -> Arena {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let root = base.join("root");
        let outside = base.join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("victim"), b"original").unwrap();
        fs::set_permissions(outside.join("victim"), fs::Permissions::from_mode(0o600)).unwrap();
        Arena {
            _dir: dir,
            base,
            root,
            outside,
        }
    }

    /// Everything outside `root`: names, types, modes, owners, link counts,
    /// contents.
    fn outside_state(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (rel, md) in tree(&self.base) {
            if rel == "root" || rel.starts_with("root/") || rel.ends_with(".deb") {
                continue;
            }
            let p = self.base.join(&rel);
            let content = if md.is_file() {
                fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            out.push(format!(
                "{rel} {:o} {} {} {} {:?}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.nlink(),
                content
            ));
        }
        out
    }

    fn deb(&self, name: &str, entries: &[T]) -> PathBuf {
        hand_deb(&self.base.join(format!("{name}.deb")), entries)
    }

    /// Unpacks, and checks that nothing outside the root changed.
    fn unpack(
        &self,
        deb: &Path,
        options: &UnpackOptions,
    ) -> comb_distro::Result<comb_distro::deb::UnpackReport> {
        let before = self.outside_state();
        let result = unpack_data(deb, &self.root, options);
        assert_eq!(
            self.outside_state(),
            before,
            "something outside the root changed"
        );
        // Nothing was created in /tmp either by absolute names.
        assert!(!Path::new("/tmp/comb-deb-test-escape").exists());
        result
    }
}

/// The error is an UnsafeDebEntry naming the deb and this path.
fn assert_refused(
    result: comb_distro::Result<impl std::fmt::Debug>,
    deb: &Path,
    path: &str,
    why: &str,
) {
    let err = result.expect_err("must be refused");
    match &err {
        Error::UnsafeDebEntry {
            deb: d,
            path: p,
            reason,
        } => {
            assert_eq!(d, deb);
            assert_eq!(p, path);
            assert!(reason.contains(why), "reason {reason:?} lacks {why:?}");
        }
        other => panic!("expected UnsafeDebEntry for {path}, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&deb.display().to_string()), "{text}");
    assert!(text.contains("do not install"), "{text}");
}

#[test]
fn dotdot_and_absolute_paths_are_refused() {
    need_root!();
    let a = Arena::new();
    let deb = a.deb("dotdot", &[dir_e("./"), file("./../escape", b"x")]);
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        "./../escape",
        "..",
    );
    assert!(!a.base.join("escape").exists());

    let deb = a.deb(
        "deep-dotdot",
        &[file("./usr/../../outside/victim", b"pwned")],
    );
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        "./usr/../../outside/victim",
        "..",
    );

    let abs = a.outside.join("abs");
    let deb = a.deb("absolute", &[file(abs.to_str().unwrap(), b"x")]);
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        abs.to_str().unwrap(),
        "absolute",
    );
    assert!(!abs.exists());
    let deb = a.deb("absolute-tmp", &[file("/tmp/comb-deb-test-escape", b"x")]);
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        "/tmp/comb-deb-test-escape",
        "absolute",
    );
}

#[test]
fn nothing_goes_through_a_symlink() {
    need_root!();
    let a = Arena::new();
    let out = a.outside.to_str().unwrap().to_string();
    // A symlink to a host directory, then a file through it.
    let deb = a.deb(
        "evil-symlink",
        &[
            dir_e("./"),
            symlink_e("./evil", &out),
            file("./evil/file", b"pwned"),
        ],
    );
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        "./evil/file",
        "symlink",
    );
    assert!(!a.outside.join("file").exists());
    // The symlink itself is created, verbatim, inside the root.
    assert_eq!(fs::read_link(a.root.join("evil")).unwrap(), a.outside);

    // Through a relative symlink that climbs out, and a directory entry
    // through it.
    let a = Arena::new();
    let deb = a.deb(
        "evil-relative",
        &[
            symlink_e("./up", "../outside"),
            dir_e("./up/newdir/"),
            file("./up/victim", b"pwned"),
        ],
    );
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        "./up/newdir/",
        "symlink",
    );
    assert!(!a.outside.join("newdir").exists());

    // A symlink over the name of a file the archive ships next: the file
    // replaces the symlink, nothing is written through it.
    let a = Arena::new();
    let victim = a.outside.join("victim");
    let deb = a.deb(
        "replace-symlink",
        &[
            symlink_e("./f", victim.to_str().unwrap()),
            file("./f", b"pwned"),
        ],
    );
    a.unpack(&deb, &Default::default()).unwrap();
    assert_eq!(fs::read(a.root.join("f")).unwrap(), b"pwned");
    assert!(fs::symlink_metadata(a.root.join("f")).unwrap().is_file());
    assert_eq!(fs::read(&victim).unwrap(), b"original");

    // A file of the layer that is a hard link to a host file (as a careless
    // caller might leave): the archive's file replaces it by rename, the
    // host file keeps its bytes.
    let a = Arena::new();
    let shared = a.base.join("shared");
    fs::write(&shared, b"host bytes").unwrap();
    fs::hard_link(&shared, a.root.join("shared")).unwrap();
    let deb = a.deb("replace-hardlinked", &[file("./shared", b"package bytes")]);
    unpack_data(&deb, &a.root, &Default::default()).unwrap();
    assert_eq!(fs::read(&shared).unwrap(), b"host bytes");
    assert_eq!(fs::metadata(&shared).unwrap().nlink(), 1);
    assert_eq!(fs::read(a.root.join("shared")).unwrap(), b"package bytes");

    // A file through a non-directory.
    let a = Arena::new();
    let deb = a.deb(
        "through-file",
        &[file("./plain", b"x"), file("./plain/sub", b"y")],
    );
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        "./plain/sub",
        "not a directory",
    );

    // A symlink that the caller left in the root is not followed either.
    let a = Arena::new();
    std::os::unix::fs::symlink(&a.outside, a.root.join("etc")).unwrap();
    let deb = a.deb("caller-symlink", &[file("./etc/passwd", b"pwned")]);
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        "./etc/passwd",
        "symlink",
    );
    assert!(!a.outside.join("passwd").exists());
}

#[test]
fn hard_links_stay_within_the_archive() {
    need_root!();
    let a = Arena::new();
    // A symlink to a directory, then a hard link through it.
    let deb = a.deb(
        "hardlink-through-symlink",
        &[
            symlink_e("./d", a.outside.to_str().unwrap()),
            hardlink_e("./h", "./d/victim"),
        ],
    );
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        "./h",
        "not a file unpacked earlier",
    );
    assert!(!a.root.join("h").exists());

    // Through a symlink to a directory of the archive itself.
    let a = Arena::new();
    let deb = a.deb(
        "hardlink-through-inner-symlink",
        &[
            dir_e("./usr/"),
            file("./usr/file", b"data"),
            symlink_e("./link", "usr"),
            hardlink_e("./h", "./link/file"),
        ],
    );
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        "./h",
        "not a file unpacked earlier",
    );

    // To a host file, absolute or climbing.
    for (name, target) in [("abs", "/etc/passwd"), ("climb", "../outside/victim")] {
        let a = Arena::new();
        let deb = a.deb(name, &[dir_e("./"), hardlink_e("./passwd", target)]);
        assert_refused(
            a.unpack(&deb, &Default::default()),
            &deb,
            "./passwd",
            "hard link",
        );
        assert!(!a.root.join("passwd").exists());
    }
    // To a file that the root has but this archive did not unpack.
    let a = Arena::new();
    fs::write(a.root.join("preexisting"), b"x").unwrap();
    let deb = a.deb("not-ours", &[hardlink_e("./h", "./preexisting")]);
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        "./h",
        "not a file unpacked",
    );

    // A file replaced by a symlink, then linked to: refused.
    let a = Arena::new();
    let deb = a.deb(
        "file-then-symlink",
        &[
            file("./f", b"x"),
            symlink_e("./f", "/etc/shadow"),
            hardlink_e("./h", "./f"),
        ],
    );
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        "./h",
        "not a file unpacked",
    );

    // A good hard link, and one onto an existing file of the same archive.
    let a = Arena::new();
    let deb = a.deb(
        "good-links",
        &[
            file("./a", b"data"),
            file("./b", b"other"),
            hardlink_e("./c", "./a"),
            hardlink_e("./b", "./a"),
            hardlink_e("./b", "./a"),
        ],
    );
    let report = a.unpack(&deb, &Default::default()).unwrap();
    assert_eq!(report.hard_links, 3);
    let ino = |p: &str| fs::metadata(a.root.join(p)).unwrap().ino();
    assert_eq!(ino("a"), ino("b"));
    assert_eq!(ino("a"), ino("c"));
    assert_eq!(fs::metadata(a.root.join("a")).unwrap().nlink(), 3);
    // No temporary names are left behind.
    let names: Vec<String> = tree(&a.root).into_keys().collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn devices_and_fifos_are_skipped_and_set_id_is_reported() {
    need_root!();
    let a = Arena::new();
    let mut suid = file("./usr/bin/passwd", b"#!/bin/sh\n");
    suid.mode = 0o4755;
    let mut sgid_file = file("./usr/bin/chage", b"#!/bin/sh\n");
    sgid_file.mode = 0o2755;
    sgid_file.gid = 42;
    let mut sgid_dir = dir_e("./var/mail/");
    sgid_dir.mode = 0o2775;
    sgid_dir.gid = 8;
    let mut owned = file("./home/user/file", b"mine");
    owned.uid = 1000;
    owned.gid = 1000;
    let deb = a.deb(
        "special",
        &[
            dir_e("./"),
            dir_e("./dev/"),
            t("./dev/null", b'3'),
            t("./dev/sda", b'4'),
            t("./dev/fifo", b'6'),
            dir_e("./usr/"),
            dir_e("./usr/bin/"),
            suid,
            sgid_file,
            hardlink_e("./usr/bin/passwd-again", "./usr/bin/passwd"),
            dir_e("./var/"),
            sgid_dir,
            owned,
        ],
    );
    let report = a.unpack(&deb, &Default::default()).unwrap();
    assert_eq!(report.skipped, ["/dev/null", "/dev/sda", "/dev/fifo"]);
    for dev in ["null", "sda", "fifo"] {
        assert!(!a.root.join("dev").join(dev).exists());
    }
    let md = |p: &str| fs::symlink_metadata(a.root.join(p)).unwrap();
    assert!(!md("dev").file_type().is_char_device());
    assert_eq!(md("usr/bin/passwd").mode() & 0o7777, 0o755);
    assert_eq!(md("usr/bin/chage").mode() & 0o7777, 0o755);
    assert_eq!(md("usr/bin/chage").gid(), 42);
    assert_eq!(md("var/mail").mode() & 0o7777, 0o2775);
    assert_eq!(md("var/mail").gid(), 8);
    assert_eq!(
        (md("home/user/file").uid(), md("home/user/file").gid()),
        (1000, 1000)
    );
    // Parents that the archive did not list are made 0755 root.
    assert_eq!(md("home").mode() & 0o7777, 0o755);
    assert_eq!(report.set_id.len(), 3);
    assert_eq!(
        statoverride_for(&report.set_id),
        "#0 #42 0755 /usr/bin/chage\n#0 #0 0755 /usr/bin/passwd\n#0 #0 0755 /usr/bin/passwd-again\n"
    );
}

#[test]
fn limits_on_depth_and_entries() {
    need_root!();
    let a = Arena::new();
    let deep = format!("./{}f", "a/".repeat(300));
    let deb = a.deb("deep", &[file(&deep, b"x")]);
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        &deep,
        &format!("more than {MAX_DEPTH} path components"),
    );
    // 255 directories and a file: fine.
    let ok = format!("./{}f", "b/".repeat(255));
    let deb = a.deb("deep-ok", &[file(&ok, b"deep")]);
    a.unpack(&deb, &Default::default()).unwrap();
    let mut p = a.root.clone();
    for _ in 0..255 {
        p.push("b");
    }
    assert_eq!(fs::read(p.join("f")).unwrap(), b"deep");

    assert_eq!(UnpackOptions::default().max_entries, MAX_ENTRIES);
    assert_eq!(MAX_ENTRIES, 1_000_000);
    let entries: Vec<T> = (0..20).map(|i| file(&format!("./f{i}"), b"")).collect();
    let deb = a.deb("many", &entries);
    let options = UnpackOptions {
        max_entries: 10,
        ..Default::default()
    };
    assert_refused(
        a.unpack(&deb, &options),
        &deb,
        "./f10",
        "more than 10 entries",
    );
}

#[test]
fn odd_names_and_types() {
    need_root!();
    let a = Arena::new();
    // A NUL inside a GNU long name.
    let mut name = format!("./{}", "n".repeat(120)).into_bytes();
    name[50] = 0;
    let e = T {
        name: name.clone(),
        ..file("", b"x")
    };
    let deb = a.deb("nul", &[e]);
    let err = a.unpack(&deb, &Default::default()).unwrap_err();
    assert!(
        matches!(&err, Error::UnsafeDebEntry { reason, .. } if reason.contains("NUL")),
        "{err}"
    );

    // A file where the layer has a directory, and a directory where it
    // has a file.
    let deb = a.deb(
        "file-over-dir",
        &[dir_e("./x/"), file("./x/in", b""), file("./x", b"y")],
    );
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        "./x",
        "directory",
    );
    let deb = a.deb("dir-over-file", &[file("./y", b""), dir_e("./y/")]);
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        "./y/",
        "non-directory",
    );

    // Unknown tar types and non-files with content are corrupt.
    let deb = a.deb("weird-type", &[t("./v", b'V')]);
    let err = a.unpack(&deb, &Default::default()).unwrap_err();
    assert!(matches!(err, Error::BadDeb { .. }), "{err}");

    // A set-id file whose name cannot be written in a statoverride file.
    let mut suid = file("./bad\nname", b"x");
    suid.mode = 0o4755;
    let deb = a.deb("suid-newline", &[suid]);
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        "./bad\nname",
        "newline",
    );

    // Odd but harmless names work: spaces, newlines, high bytes.
    let a = Arena::new();
    let deb = a.deb(
        "odd",
        &[
            file("./with space", b"1"),
            file("./new\nline", b"2"),
            T {
                name: b"./caf\xe9".to_vec(),
                ..file("", b"3")
            },
        ],
    );
    a.unpack(&deb, &Default::default()).unwrap();
    assert_eq!(fs::read(a.root.join("with space")).unwrap(), b"1");
    assert_eq!(fs::read(a.root.join("new\nline")).unwrap(), b"2");
}

#[test]
fn malformed_archives_are_errors_not_panics() {
    need_root!();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        fs::write(&p, bytes).unwrap();
        p
    };
    let bad_deb = |path: &Path, needle: &str| {
        let err = DebArchive::open(path).unwrap_err();
        assert!(matches!(err, Error::BadDeb { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains(needle), "{text} lacks {needle}");
        assert!(text.contains("fetch it again"), "{text}");
    };
    let control = control_tar();
    let data = tar(&[file("./f", b"x")]);

    let p = write(
        "v3.deb",
        &ar(&[
            ("debian-binary", b"3.0\n"),
            ("control.tar", &control),
            ("data.tar", &data),
        ]),
    );
    bad_deb(&p, "debian-binary");
    let p = write(
        "v1.deb",
        &ar(&[
            ("debian-binary", b"1.0\n"),
            ("control.tar", &control),
            ("data.tar", &data),
        ]),
    );
    bad_deb(&p, "2.x");
    // Format 2.1 is still format 2.
    let p = write(
        "v21.deb",
        &ar(&[
            ("debian-binary", b"2.1\n"),
            ("control.tar", &control),
            ("data.tar", &data),
        ]),
    );
    DebArchive::open(&p).unwrap();
    let p = write(
        "order.deb",
        &ar(&[
            ("control.tar", &control),
            ("debian-binary", b"2.0\n"),
            ("data.tar", &data),
        ]),
    );
    bad_deb(&p, "debian-binary");
    let p = write(
        "nodata.deb",
        &ar(&[("debian-binary", b"2.0\n"), ("control.tar", &control)]),
    );
    bad_deb(&p, "data.tar");
    let p = write(
        "extra.deb",
        &ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar", &data),
            ("evil", b"x"),
        ]),
    );
    bad_deb(&p, "evil");
    let p = write(
        "comp.deb",
        &ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.rar", &control),
            ("data.tar", &data),
        ]),
    );
    bad_deb(&p, "control.tar.rar");
    // Members starting with '_' are ignored, as by dpkg.
    let p = write(
        "underscore.deb",
        &ar(&[
            ("debian-binary", b"2.0\n"),
            ("_gpgorigin", b"sig"),
            ("control.tar", &control),
            ("data.tar", &data),
        ]),
    );
    DebArchive::open(&p).unwrap();
    let p = write("notar.deb", b"hello world, not an archive");
    bad_deb(&p, "not an ar archive");
    let p = write("empty.deb", b"");
    bad_deb(&p, "too short");

    // A data member whose compression does not match its name.
    let p = write(
        "liar.deb",
        &ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar.xz", &data),
        ]),
    );
    let err = unpack_data(&p, &root, &Default::default()).unwrap_err();
    assert!(
        matches!(&err, Error::BadDeb { member, .. } if member == "data.tar.xz"),
        "{err}"
    );
    // A tar with a broken checksum.
    let mut broken = data.clone();
    broken[10] ^= 0x55;
    let p = write(
        "cksum.deb",
        &ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar", &broken),
        ]),
    );
    let err = unpack_data(&p, &root, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    // A tar without its end blocks (cut at a block boundary).
    let cut = &data[..1024];
    let p = write(
        "noend.deb",
        &ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar", cut),
        ]),
    );
    let err = unpack_data(&p, &root, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    // A huge GNU long name is refused before it is read.
    let mut huge = raw_header(b"././@LongLink", b'L', 0o644, 0, 0, (1 << 33) - 1, b"").to_vec();
    huge.extend_from_slice(&[b'a'; 512]);
    let p = write(
        "longname.deb",
        &ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar", &huge),
        ]),
    );
    let err = unpack_data(&p, &root, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("long name"), "{err}");
    // A control.tar without a control file.
    let p = write(
        "nocontrol.deb",
        &ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &data),
            ("data.tar", &data),
        ]),
    );
    let err = DebArchive::open(&p).unwrap().control().unwrap_err();
    assert!(err.to_string().contains("no control file"), "{err}");
}

#[test]
fn truncated_and_corrupt_debs_are_errors() {
    need_root!();
    let dir = tempfile::tempdir().unwrap();
    for z in ["xz", "gzip", "zstd", "none"] {
        let deb = build_deb(dir.path(), &format!("cut-{z}"), z, false);
        let bytes = fs::read(&deb).unwrap();
        let archive = DebArchive::open(&deb).unwrap();
        let data_name = archive.data_member().to_string();
        drop(archive);

        // Cut anywhere: the ar sizes no longer add up.
        let step = (bytes.len() / 40).max(1);
        for len in (0..bytes.len() - 1).step_by(step) {
            let p = dir.path().join("cut.deb");
            fs::write(&p, &bytes[..len]).unwrap();
            let root = tempfile::tempdir().unwrap();
            let err = unpack_data(&p, root.path(), &Default::default())
                .expect_err(&format!("{z}: cut at {len} of {}", bytes.len()));
            assert!(matches!(err, Error::BadDeb { .. }), "{z} at {len}: {err:?}");
        }

        // Cut inside the data member, with the ar header fixed up so that
        // only the compressed stream (or the tar) is short.
        let data_at = find(&bytes, data_name.as_bytes()).unwrap();
        let size: usize = std::str::from_utf8(&bytes[data_at + 48..data_at + 58])
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let start = data_at + 60;
        let member = &bytes[start..start + size];
        let mut cuts: Vec<usize> = (1..20).map(|i| size * i / 20).collect();
        if z == "none" {
            // At block boundaries too, up to the end-of-archive blocks (tar
            // pads with zeros after them: a cut there loses nothing).
            let last = member.iter().rposition(|&b| b != 0).unwrap();
            let end = (last / 512 + 1) * 512;
            cuts.retain(|&c| c <= end);
            cuts.extend((1..=end / 512).map(|b| b * 512).step_by(3));
            cuts.push(end);
        }
        for cut in cuts {
            let mut out = bytes[..data_at].to_vec();
            out.extend_from_slice(
                format!(
                    "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    data_name, 0, 0, 0, 100644, cut
                )
                .as_bytes(),
            );
            out.extend_from_slice(&member[..cut]);
            let p = dir.path().join("short.deb");
            fs::write(&p, &out).unwrap();
            let root = tempfile::tempdir().unwrap();
            let result = unpack_data(&p, root.path(), &Default::default());
            let err = result.expect_err(&format!("{z}: data cut at {cut} of {size}"));
            assert!(matches!(err, Error::BadDeb { .. }), "{z} at {cut}: {err:?}");
            let text = err.to_string();
            assert!(text.contains(&data_name), "{text}");
        }

        // Flipped bytes: anything but a panic (or a write outside).
        let mut seed = 0x2545F4914F6CDD1Du64;
        for _ in 0..40 {
            let mut out = bytes.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % out.len();
                out[at] ^= (seed >> 32) as u8 | 1;
            }
            let p = dir.path().join("flipped.deb");
            fs::write(&p, &out).unwrap();
            let root = tempfile::tempdir().unwrap();
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } == 0 {
                let _ = unpack_data(&p, root.path(), &Default::default());
            }
            if let Ok(a) = DebArchive::open(&p) {
                let _ = a.control();
                let _ = a.control_members();
                let _ = a.data_entries(|_, _| Ok(()));
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn data_entries_report_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut x = file("./usr/bin/x", b"hello");
    x.mode = 0o4711;
    x.uid = 12;
    x.gid = 34;
    let long = format!("./{}", "l".repeat(200));
    let deb = hand_deb(
        &dir.path().join("h.deb"),
        &[
            dir_e("./"),
            x,
            symlink_e("./s", &long),
            hardlink_e("./h", "./usr/bin/x"),
            t("./c", b'3'),
        ],
    );
    let archive = DebArchive::open(&deb).unwrap();
    let mut seen = Vec::new();
    archive
        .data_entries(|e, content| {
            let mut data = String::new();
            content.read_to_string(&mut data).unwrap();
            seen.push((e.clone(), data));
            Ok(())
        })
        .unwrap();
    assert_eq!(seen.len(), 5);
    let (x, data) = &seen[1];
    assert_eq!(x.path, Path::new("./usr/bin/x"));
    assert_eq!(
        (x.kind, x.mode, x.uid, x.gid, x.size),
        (EntryKind::File, 0o4711, 12, 34, 5)
    );
    assert_eq!(x.mtime, MTIME);
    assert_eq!(data, "hello");
    assert_eq!(seen[2].0.kind, EntryKind::Symlink);
    assert_eq!(seen[2].0.link, Path::new(&long), "GNU long link name");
    assert_eq!(seen[3].0.kind, EntryKind::HardLink);
    assert_eq!(seen[3].0.link, Path::new("./usr/bin/x"));
    assert_eq!(seen[4].0.kind, EntryKind::CharDevice);

    // An error from the callback stops the walk and comes back.
    let mut n = 0;
    let err = archive
        .data_entries(|_, _| {
            n += 1;
            Err(Error::NoSource("stop".into()))
        })
        .unwrap_err();
    assert_eq!(n, 1);
    assert!(matches!(err, Error::NoSource(_)));
}

// ---------------------------------------------------------------------------
// The host's own .debs

#[test]
fn cached_system_debs_unpack_like_dpkg_deb_lists_them() {
    need_root!();
    // COMB_TEST_DEB_DIR points at another folder of .debs.
    let folder = std::env::var_os("COMB_TEST_DEB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/apt/archives"));
    let Ok(dir) = fs::read_dir(&folder) else {
        eprintln!("skipped: no {}", folder.display());
        return;
    };
    let mut debs: Vec<(u64, PathBuf)> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .map(|p| (fs::metadata(&p).map(|m| m.len()).unwrap_or(0), p))
        .collect();
    // The smallest first, up to 32 MB in all, to stay quick.
    debs.sort();
    let mut total = 0;
    let debs: Vec<PathBuf> = debs
        .into_iter()
        .take_while(|(len, _)| {
            total += len;
            total <= 32 << 20
        })
        .map(|(_, p)| p)
        .collect();
    if debs.is_empty() {
        eprintln!("skipped: no .deb in {}", folder.display());
        return;
    }
    for deb in debs {
        let root = tempfile::tempdir().unwrap();
        let archive = DebArchive::open(&deb).unwrap();
        let control = archive.control().unwrap();
        assert!(
            control.starts_with("Package: "),
            "{}: {control}",
            deb.display()
        );
        let listed = dpkg_deb_list(&deb);
        if listed.iter().any(|(k, _, _)| matches!(k, 'c' | 'b' | 'p')) {
            eprintln!("{}: has devices, skipped", deb.display());
            continue;
        }
        let report = unpack_data(&deb, root.path(), &Default::default()).unwrap();
        check_against_listing(root.path(), &listed);
        let set_id = listed
            .iter()
            .filter(|(k, p, _)| *k != 'd' && mode_of(p) & 0o6000 != 0)
            .count();
        assert_eq!(report.set_id.len(), set_id, "{}", deb.display());
        eprintln!(
            "{}: {} files, {} bytes, {} set-id",
            deb.display(),
            report.files,
            report.bytes,
            report.set_id.len()
        );
    }
}

/// A pax extended header ('x') before an entry.
fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (key, value) in records {
        // "LEN KEY=VALUE\n", LEN counting itself.
        let rest = key.len() + value.len() + 3;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        body.extend_from_slice(format!("{len} {key}=").as_bytes());
        body.extend_from_slice(value);
        body.push(b'\n');
    }
    let mut out = raw_header(b"./PaxHeaders/x", b'x', 0o644, 0, 0, body.len() as u64, b"").to_vec();
    push_padded(&mut out, &body);
    out
}

#[test]
fn pax_headers_are_honoured_and_checked() {
    need_root!();
    let a = Arena::new();
    let mut data = pax(&[
        ("path", b"./pax-name"),
        ("uid", b"4321"),
        ("mtime", b"1234.5"),
    ]);
    data.extend_from_slice(&tar(&[file("./short", b"content")]));
    let control = control_tar();
    let deb = a.base.join("pax.deb");
    fs::write(
        &deb,
        ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar", &data),
        ]),
    )
    .unwrap();
    a.unpack(&deb, &Default::default()).unwrap();
    let md = fs::metadata(a.root.join("pax-name")).unwrap();
    assert_eq!(md.uid(), 4321);
    assert_eq!(md.mtime(), 1234);
    assert!(!a.root.join("short").exists());

    // The pax name is what is checked.
    let mut data = pax(&[("path", b"./../pax-escape")]);
    data.extend_from_slice(&tar(&[file("./harmless", b"x")]));
    let deb = a.base.join("pax-evil.deb");
    fs::write(
        &deb,
        ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar", &data),
        ]),
    )
    .unwrap();
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        "./../pax-escape",
        "..",
    );
    let mut data = pax(&[("path", b"./nul\0name")]);
    data.extend_from_slice(&tar(&[file("./harmless", b"x")]));
    let deb = a.base.join("pax-nul.deb");
    fs::write(
        &deb,
        ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar", &control),
            ("data.tar", &data),
        ]),
    )
    .unwrap();
    assert_refused(
        a.unpack(&deb, &Default::default()),
        &deb,
        "./nul\0name",
        "NUL",
    );
}

#[test]
fn bzip2_and_lzma_data_members() {
    need_root!();
    for (tool, args, member) in [
        ("bzip2", &["-c"][..], "data.tar.bz2"),
        ("xz", &["--format=lzma", "-c"][..], "data.tar.lzma"),
    ] {
        let a = Arena::new();
        let plain = a.base.join("data.tar");
        fs::write(
            &plain,
            tar(&[dir_e("./"), dir_e("./usr/"), file("./usr/f", b"compressed")]),
        )
        .unwrap();
        let Ok(o) = Command::new(tool).args(args).arg(&plain).output() else {
            eprintln!("{tool} not installed: {member} skipped");
            continue;
        };
        assert!(o.status.success());
        let control = control_tar();
        let deb = a.base.join(format!("{tool}.deb"));
        fs::write(
            &deb,
            ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar", &control),
                (member, &o.stdout),
            ]),
        )
        .unwrap();
        fs::remove_file(&plain).unwrap();
        a.unpack(&deb, &Default::default()).unwrap();
        assert_eq!(
            fs::read(a.root.join("usr/f")).unwrap(),
            b"compressed",
            "{member}"
        );
    }
}
