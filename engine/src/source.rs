//! Source trees as inputs: every file's digest, remembered by its stat in
//! the index (as git's index does), so a no-op run reads no file again and
//! a touched but unchanged file changes no key.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::inputs::{FileHash, SourceEntry};
use comb_cache::{Blake3, FileStat, Hash};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A source tree's entries, by path relative to its root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SourceTree {
    pub entries: BTreeMap<String, SourceEntry>,
}

/// Reads the tree under `root`; symlinks are recorded, never followed.
/// Names that are not UTF-8 are refused (they cannot be described).
pub(crate) fn hash_tree(engine: &Engine, root: &Path) -> Result<SourceTree> {
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
                tree.entries.insert(rel, SourceEntry::Dir);
                stack.push(path);
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                tree.entries.insert(
                    rel,
                    SourceEntry::Symlink(target.to_string_lossy().into_owned()),
                );
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
        let remembered = match repository.get(path) {
            Some((was, digest)) if *was == stat => Some(digest.clone()),
            Some(_) => None,
            // Outside the repository, or new.
            None => engine.index().file_digest(path, &stat)?,
        };
        // A remembered digest that does not read is hashed again.
        known.push(remembered.and_then(|d| d.parse::<Hash<Blake3>>().ok()));
    }
    let mut fresh = Vec::new();
    for ((rel, path, md), known) in pending.iter().zip(known) {
        let digest = match known {
            Some(d) => d,
            None => {
                let d = blake3_of(path)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                fresh.push((path, FileStat::of(md), d));
                d
            }
        };
        tree.entries.insert(
            rel.clone(),
            SourceEntry::File {
                hash: FileHash::Blake3(digest),
                executable: md.permissions().mode() & 0o111 != 0,
            },
        );
    }
    if !fresh.is_empty() {
        engine.index().batch(|index| {
            for (path, stat, digest) in &fresh {
                index.remember_file_digest(
                    path.as_os_str().as_bytes(),
                    stat,
                    &digest.to_string(),
                )?;
            }
            Ok(())
        })?;
    }
    Ok(tree)
}

/// The BLAKE3 of a file's bytes.
pub(crate) fn blake3_of(path: &Path) -> std::io::Result<Hash<Blake3>> {
    Hash::of_reader(&mut std::fs::File::open(path)?)
}
