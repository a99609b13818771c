//! `comb_sandbox::ship`: a layer packed and unpacked elsewhere is the same
//! layer (owners, modes, links, hard links, whiteouts, opaque marks), and
//! an archive made to escape or to plant what no layer may hold is
//! refused without touching anything outside its directory. Needs root
//! (owners, devices), as CI runs it.

#[path = "../../tests/root/mod.rs"]
mod root;

use comb_sandbox::ship::{pack_layer, unpack_layer};
use nix::sys::stat::{mknod, Mode, SFlag};
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn opaque(path: &Path) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = [0u8; 16];
    // SAFETY: valid path, name and buffer.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            c"user.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

#[test]
fn a_layer_comes_out_as_it_went_in() {
    if !root::is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layer = tmp.path().join("layer");
    fs::create_dir_all(layer.join("usr/bin")).unwrap();
    fs::create_dir_all(layer.join("etc/hidden")).unwrap();
    fs::write(layer.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(
        layer.join("usr/bin/tool"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    fs::write(layer.join("etc/secret"), "r's only").unwrap();
    fs::set_permissions(layer.join("etc/secret"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::lchown(layer.join("etc/secret"), Some(0), Some(42)).unwrap();
    std::os::unix::fs::lchown(layer.join("usr/bin"), Some(100), Some(101)).unwrap();
    fs::hard_link(layer.join("usr/bin/tool"), layer.join("usr/bin/tool2")).unwrap();
    symlink("../usr/bin/tool", layer.join("etc/tool-link")).unwrap();
    mknod(&layer.join("etc/removed"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
    let hidden = layer.join("etc/hidden");
    let p = std::ffi::CString::new(hidden.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid strings and buffer.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            c"user.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());

    let archive = pack_layer(&layer).unwrap();
    assert_eq!(
        archive,
        pack_layer(&layer).unwrap(),
        "packing is repeatable"
    );
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    unpack_layer(&archive, &out).unwrap();

    let md = |p: &str| fs::symlink_metadata(out.join(p)).unwrap();
    assert_eq!(
        fs::read_to_string(out.join("etc/secret")).unwrap(),
        "r's only"
    );
    assert_eq!(md("etc/secret").mode() & 0o7777, 0o640);
    assert_eq!((md("etc/secret").uid(), md("etc/secret").gid()), (0, 42));
    assert_eq!((md("usr/bin").uid(), md("usr/bin").gid()), (100, 101));
    assert_eq!(md("usr/bin/tool").mode() & 0o7777, 0o755);
    assert_eq!(md("usr/bin/tool").ino(), md("usr/bin/tool2").ino());
    assert_eq!(
        fs::read_link(out.join("etc/tool-link")).unwrap(),
        Path::new("../usr/bin/tool")
    );
    let whiteout = md("etc/removed");
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &whiteout.file_type()
    ));
    assert_eq!(whiteout.rdev(), 0);
    assert_eq!(opaque(&out.join("etc/hidden")).as_deref(), Some(&b"y"[..]));
}

/// A zstd-compressed tar of `dir` as GNU tar writes it with `extra`
/// arguments (names rewritten, absolute names kept).
fn hostile(dir: &Path, extra: &[&str], members: &[&str]) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["--create", "--file=-", "--format=posix", "--numeric-owner"])
        .args(extra)
        .arg("--directory")
        .arg(dir)
        .args(members)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    zstd::encode_all(out.stdout.as_slice(), 3).unwrap()
}

#[test]
fn an_archive_made_to_escape_or_to_plant_is_refused() {
    if !root::is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(src.join("payload"), "owned").unwrap();
    symlink(&outside, src.join("door")).unwrap();
    fs::write(src.join("suid"), "x").unwrap();
    fs::set_permissions(src.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    mknod(
        &src.join("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let door_then_file = {
        // The link, then a file through it.
        let mut a = Command::new("tar")
            .args(["--create", "--file=-", "--format=posix", "--directory"])
            .arg(&src)
            .args(["door", "--transform=s,^payload$,door/payload,", "payload"])
            .output()
            .unwrap();
        assert!(a.status.success());
        zstd::encode_all(std::mem::take(&mut a.stdout).as_slice(), 3).unwrap()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a name with ..",
            hostile(&src, &["--transform=s,^,../../outside/,"], &["payload"]),
        ),
        (
            "an absolute name",
            hostile(
                &src,
                &[
                    "--absolute-names",
                    &format!("--transform=s,^,{}/,", outside.display()),
                ],
                &["payload"],
            ),
        ),
        ("a file through a link out of the layer", door_then_file),
        ("a set-id file", hostile(&src, &[], &["suid"])),
        ("a device", hostile(&src, &[], &["null"])),
        (
            "not an archive",
            zstd::encode_all(&b"garbage"[..], 3).unwrap(),
        ),
        ("not compressed", b"garbage".to_vec()),
    ];
    for (what, archive) in cases {
        let dest = tmp.path().join(format!("dest-{}", what.replace(' ', "-")));
        fs::create_dir(&dest).unwrap();
        let result = unpack_layer(&archive, &dest);
        assert!(
            fs::read_dir(&outside).unwrap().next().is_none(),
            "{what}: something was written outside the layer"
        );
        let planted = ["suid", "null"].iter().any(|n| dest.join(n).exists());
        assert!(
            result.is_err() || !planted,
            "{what}: unpacked what no layer may hold"
        );
        if matches!(
            what,
            "a set-id file" | "a device" | "not an archive" | "not compressed"
        ) {
            assert!(result.is_err(), "{what}: accepted");
        }
    }
}
