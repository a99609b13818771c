//! Source trees as inputs: every file's digest, remembered by its stat in
//! the index (as git's index does), so a no-op run reads no file again and
//! a touched but unchanged file changes no key.

use crate::engine::Engine;
use crate::error::{Error, Result};
use comb_cache::FileStat;
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A source tree's entries, by path relative to its root: `blake3:HEX`
/// for a file (prefixed `x ` when executable), `-> TARGET` for a symlink,
/// `dir` for a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceTree {
    pub entries: BTreeMap<String, String>,
}

/// Reads the tree under `root`; symlinks are recorded, never followed.
/// Names that are not UTF-8 are refused (they cannot be described).
pub fn hash_tree(engine: &Engine, root: &Path) -> Result<SourceTree> {
    let mut tree = SourceTree::default();
    let mut pending = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_str()
                .ok_or_else(|| {
                    Error::Input(format!(
                        "{}: a source file name must be UTF-8",
                        path.display()
                    ))
                })?
                .to_string();
            // Relative to the directory read (no symlink followed).
            let md = entry
                .metadata()
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            let kind = md.file_type();
            if kind.is_dir() {
                tree.entries.insert(rel, "dir".into());
                stack.push(path);
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                tree.entries
                    .insert(rel, format!("-> {}", target.to_string_lossy()));
            } else if kind.is_file() {
                pending.push((rel, path, md));
            } else {
                return Err(Error::Input(format!(
                    "{}: sources hold only files, directories and symlinks",
                    path.display()
                )));
            }
        }
    }
    // Reads need no transaction; only files whose stat changed are hashed
    // (without holding the index, which other builds share) and
    // remembered, in one write.
    let repository = engine.known_file_digests()?;
    let mut known = Vec::with_capacity(pending.len());
    for (_, path, md) in &pending {
        let path = path.as_os_str().as_bytes();
        let stat = FileStat::of(md);
        known.push(match repository.get(path) {
            Some((was, digest)) if *was == stat => Some(digest.clone()),
            Some(_) => None,
            // Outside the repository, or new.
            None => engine.index().file_digest(path, &stat)?,
        });
    }
    let mut fresh = Vec::new();
    for ((rel, path, md), known) in pending.iter().zip(known) {
        let digest = match known {
            Some(d) => d,
            None => {
                let d = blake3_of(path)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                fresh.push((path, FileStat::of(md), d.clone()));
                d
            }
        };
        let exec = md.permissions().mode() & 0o111 != 0;
        tree.entries.insert(
            rel.clone(),
            if exec { format!("x {digest}") } else { digest },
        );
    }
    if !fresh.is_empty() {
        engine.index().batch(|index| {
            for (path, stat, digest) in &fresh {
                index.remember_file_digest(path.as_os_str().as_bytes(), stat, digest)?;
            }
            Ok(())
        })?;
    }
    Ok(tree)
}

/// `blake3:HEX` of a file's bytes.
pub(crate) fn blake3_of(path: &Path) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    let mut f = std::fs::File::open(path)?;
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("blake3:{}", h.finalize().to_hex()))
}
