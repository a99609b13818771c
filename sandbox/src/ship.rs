//! A layer as one archive, to ship it to another machine: a pax tar
//! (GNU tar's, with numeric owners, modes, times, hard links, overlayfs
//! whiteouts and the `user.overlay.*` marks) compressed with zstd.
//!
//! Both ends run tar as R: in an ordinary user's namespace ([`crate::caller`])
//! the child becomes uid 0 there, so it reads R's private files and gives
//! what it unpacks R's and the packages' owners, as root's comb does.
//! An archive is never trusted: GNU tar refuses members that leave the
//! directory and defers links that point out of it, and what it unpacked
//! is then checked by [`crate::extract::validate_layer`] (no device but a
//! whiteout, no set-id bit, no owner outside the sandbox's ids).

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Compression level: fast; a 450 MB base layer packs in a few seconds.
const LEVEL: i32 = 3;

/// Largest decompressed archive accepted (a whole distribution's base is
/// far below).
const MAX_UNPACKED: u64 = 64 << 30;

fn tar_as_r() -> Command {
    let mut tar = Command::new("tar");
    if crate::caller::entered().is_some() {
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            tar.pre_exec(|| {
                if libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    tar.env("LC_ALL", "C");
    tar
}

/// `dir`, a layer directory, as one compressed archive.
pub fn pack_layer(dir: &Path) -> Result<Vec<u8>, String> {
    let mut child = tar_as_r()
        .args([
            "--create",
            "--format=posix",
            "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
            "--numeric-owner",
            "--sort=name",
            "--xattrs",
            "--xattrs-include=user.overlay.*",
            "--file=-",
            "--directory",
        ])
        .arg(dir)
        .arg(".")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting tar to pack {}: {e}", dir.display()))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let packed = (|| -> std::io::Result<Vec<u8>> {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), LEVEL)?;
        std::io::copy(&mut stdout, &mut encoder)?;
        encoder.finish()
    })();
    let status = child.wait().map_err(|e| format!("waiting for tar: {e}"))?;
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "packing {}: tar failed: {}",
            dir.display(),
            errors.trim()
        ));
    }
    packed.map_err(|e| format!("packing {}: {e}", dir.display()))
}

/// Unpacks `archive` (made by [`pack_layer`], from anyone) into `dest`,
/// an empty directory, and checks what it holds.
pub fn unpack_layer(archive: &[u8], dest: &Path) -> Result<(), String> {
    let mut child = tar_as_r()
        .args([
            "--extract",
            "--numeric-owner",
            "--same-owner",
            "--same-permissions",
            "--no-overwrite-dir",
            "--xattrs",
            "--xattrs-include=user.overlay.*",
            "--file=-",
            "--directory",
        ])
        .arg(dest)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting tar to unpack into {}: {e}", dest.display()))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let fed = (|| -> std::io::Result<()> {
        let decoder = zstd::stream::read::Decoder::new(archive)?;
        let mut limited = decoder.take(MAX_UNPACKED + 1);
        let copied = std::io::copy(&mut limited, &mut stdin)?;
        if copied > MAX_UNPACKED {
            return Err(std::io::Error::other(
                "the archive unpacks to more than 64 GiB",
            ));
        }
        stdin.flush()
    })();
    drop(stdin);
    let status = child.wait().map_err(|e| format!("waiting for tar: {e}"))?;
    let errors = errors.join().unwrap_or_default();
    if let Err(e) = fed {
        return Err(format!("a layer archive that does not unpack: {e}"));
    }
    if !status.success() {
        return Err(format!(
            "a layer archive that does not unpack: tar: {}",
            errors.trim()
        ));
    }
    crate::extract::validate_layer(dest)
        .map(|_| ())
        .map_err(|e| format!("a layer archive holding what no layer may: {e}"))
}
