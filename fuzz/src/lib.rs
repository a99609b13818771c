//! Helpers shared by comb's fuzz targets: a scratch directory on a RAM
//! file system for the parsers that take a path, and a `.deb` container
//! around a tar stream, so that a target can mutate the tar directly.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_scratch() {
    if let Some(dir) = SCRATCH.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// This process's scratch directory: under `/dev/shm` when there is one
/// (so that writing an input per run costs no disk I/O), removed when the
/// process exits normally.
pub fn scratch() -> &'static Path {
    SCRATCH.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("comb-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the fuzz scratch directory");
        // SAFETY: registers a plain extern "C" function with no captured state.
        unsafe { libc::atexit(remove_scratch) };
        dir
    })
}

/// Writes `bytes` to `name` in the scratch directory and returns its path.
pub fn write_input(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, bytes).expect("writing the fuzz input");
    path
}

fn ar_member(out: &mut Vec<u8>, name: &str, body: &[u8]) {
    let header = format!(
        "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
        name,
        0,
        0,
        0,
        100644,
        body.len()
    );
    assert_eq!(header.len(), 60);
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    if body.len() % 2 == 1 {
        out.push(b'\n');
    }
}

/// A `.deb` (ar archive, format 2.0) of uncompressed `control.tar` and
/// `data.tar` members, laid out as `dpkg-deb -Znone` writes it.
pub fn deb_of_tars(control_tar: &[u8], data_tar: &[u8]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    ar_member(&mut out, "debian-binary", b"2.0\n");
    ar_member(&mut out, "control.tar", control_tar);
    ar_member(&mut out, "data.tar", data_tar);
    out
}

/// Most file content a target reads from one archive: beyond it a small
/// compressed input could keep a run busy for minutes (a decompression
/// bomb costs time, not safety, and is not what these targets look for).
pub const CONTENT_BUDGET: u64 = 16 << 20;
