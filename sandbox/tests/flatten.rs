//! `comb_sandbox::flatten`: an upper layer applied to a lower one gives
//! what the overlay of the two showed, and the lower layer is untouched.

use comb_sandbox::flatten::flatten;
use nix::sys::stat::{mknod, Mode, SFlag};
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

fn write(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir -p");
    fs::write(path, content).expect("write");
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    let n = std::ffi::CString::new(name).expect("name");
    // SAFETY: valid strings and buffer.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {name} on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn has_xattrs(path: &Path) -> bool {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid path; a null buffer asks for the size.
    let n = unsafe { libc::llistxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
    n > 0
}

/// Every path under `root` with its kind and content, sorted.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let md = fs::symlink_metadata(&p).expect("lstat");
            if md.file_type().is_symlink() {
                out.push(format!(
                    "{rel} -> {}",
                    fs::read_link(&p).expect("readlink").display()
                ));
            } else if md.is_dir() {
                out.push(format!("{rel}/ {:o}", md.mode() & 0o7777));
                todo.push(p);
            } else {
                out.push(format!(
                    "{rel} = {}",
                    fs::read_to_string(&p).unwrap_or_default()
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn upper_applied_to_lower_is_what_the_overlay_showed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (lower, upper, out) = (
        tmp.path().join("lower"),
        tmp.path().join("upper"),
        tmp.path().join("out"),
    );
    // The lower layer.
    write(&lower.join("etc/kept"), "lower");
    write(&lower.join("etc/replaced"), "lower");
    write(&lower.join("etc/removed"), "lower");
    write(&lower.join("usr/share/old/a"), "hidden");
    write(&lower.join("usr/share/merged/from-lower"), "lower");
    write(&lower.join("var/file-then-dir"), "a file below");
    symlink("/etc/shadow", lower.join("etc/outside")).expect("symlink");
    // The upper layer: a file replaced, one whited out, an opaque
    // directory, a merged one with a new mode, a file turned into a
    // directory, two names of one file.
    write(&upper.join("etc/replaced"), "upper");
    mknod(&upper.join("etc/removed"), SFlag::S_IFCHR, Mode::empty(), 0).expect("whiteout");
    write(&upper.join("usr/share/old/b"), "new");
    set_xattr(&upper.join("usr/share/old"), "user.overlay.opaque", b"y");
    write(&upper.join("usr/share/merged/from-upper"), "upper");
    fs::set_permissions(
        upper.join("usr/share/merged"),
        fs::Permissions::from_mode(0o2775),
    )
    .expect("chmod");
    write(&upper.join("var/file-then-dir/inside"), "a directory above");
    write(&upper.join("bin/one"), "linked");
    fs::hard_link(upper.join("bin/one"), upper.join("bin/two")).expect("link");

    flatten(&lower, &upper, &out).expect("flatten");

    assert_eq!(
        listing(&out),
        [
            "bin/ 755",
            "bin/one = linked",
            "bin/two = linked",
            "etc/ 755",
            "etc/kept = lower",
            "etc/outside -> /etc/shadow",
            "etc/replaced = upper",
            "usr/ 755",
            "usr/share/ 755",
            "usr/share/merged/ 2775",
            "usr/share/merged/from-lower = lower",
            "usr/share/merged/from-upper = upper",
            "usr/share/old/ 755",
            "usr/share/old/b = new",
            "var/ 755",
            "var/file-then-dir/ 755",
            "var/file-then-dir/inside = a directory above",
        ]
    );
    // Lower files are shared, not copied; upper ones moved; the lower
    // layer is as it was.
    let ino = |p: &Path| fs::symlink_metadata(p).expect("lstat").ino();
    assert_eq!(ino(&out.join("etc/kept")), ino(&lower.join("etc/kept")));
    assert_eq!(
        ino(&out.join("etc/outside")),
        ino(&lower.join("etc/outside"))
    );
    assert_eq!(ino(&out.join("bin/one")), ino(&out.join("bin/two")));
    assert_eq!(
        fs::read_to_string(lower.join("etc/replaced")).expect("read"),
        "lower"
    );
    assert!(lower.join("etc/removed").exists());
    assert!(lower.join("usr/share/old/a").exists());
    // overlayfs's markers do not survive.
    assert!(!has_xattrs(&out.join("usr/share/old")));
}

#[test]
fn a_layer_with_overlay_features_comb_does_not_use_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    write(&lower.join("a/file"), "lower");
    write(&upper.join("a/file2"), "upper");
    set_xattr(&upper.join("a"), "user.overlay.redirect", b"/elsewhere");
    let e = flatten(&lower, &upper, &tmp.path().join("out")).expect_err("refused");
    assert!(
        e.contains("user.overlay.redirect") && e.contains("/a"),
        "{e}"
    );
}
