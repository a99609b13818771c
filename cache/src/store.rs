//! The on-disk store: blobs, published trees, temporary entries, locks.
//!
//! Layout under the root (created mode 0700):
//!
//! ```text
//! format                       store format number ("1\n"), written last at creation
//! CACHEDIR.TAG                 marks the directory as a cache for backup tools
//! blobs/<algo>/<xx>/<62 hex>   content-addressed files, mode 0444
//! trees/<name>                 published trees (layers, output sets), immutable
//! tmp/<writer>.<seq>.<hint>    in-progress writes of one writer
//! locks/writers/<writer>.lock  flocked by a live writer for as long as it lives
//! locks/<key>.lock             per-node build locks (see Store::lock_node)
//! index.sqlite                 the index (see crate::index)
//! ```
//!
//! A *writer* is one `Store` value: `<pid>-<16 hex>`. It creates and flocks
//! its lock file before it creates anything under `tmp/`, and holds the flock
//! until it is dropped (or its process dies). At [`Store::open`], any `tmp/`
//! entry whose writer's lock file is missing or can be flocked belongs to a
//! writer that is gone, and is removed.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::digest::{Algorithm, Digest, Expected, HashingWriter};
use crate::fsutil;
use crate::index::{Index, IndexError, NodeOutput};

/// The store format this comb writes and the newest it can read.
pub const STORE_FORMAT: u32 = 1;

/// Contents of `CACHEDIR.TAG`: the standard signature line, then comments.
pub const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by comb, a package builder.\n\
# Everything here can be rebuilt; backup tools may skip this directory.\n";

/// Name of the index database under the store root.
pub const INDEX_FILE: &str = "index.sqlite";

/// Names the store itself puts in its root; anything else means the
/// directory is not (only) a comb store and is not ours to take over.
const KNOWN_ROOT_ENTRIES: &[&str] = &[
    "format",
    "CACHEDIR.TAG",
    "blobs",
    "trees",
    "tmp",
    "locks",
    "index.sqlite",
    "index.sqlite-wal",
    "index.sqlite-shm",
    "index.sqlite-journal",
];

/// Longest tree name, node-lock key or temporary-name hint accepted.
pub const MAX_NAME_LEN: usize = 200;

/// The file in a published tree naming the trees it is layered on.
pub const LAYERED_ON: &str = "layered-on";
/// Most trees one tree may stand on, itself included: a bound for a
/// damaged store whose `layered-on` files form a loop.
const MAX_LAYERED_TREES: usize = 64;

/// Everything that can go wrong in the store. Each message names the path
/// involved and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the content to store: {0}")]
    Read(#[source] io::Error),
    #[error(
        "the store at {path} has format {found}, newer than format {supported} which this \
         comb understands: upgrade comb, or use another store (--store DIR or $COMB_STORE)"
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "{path} holds {content:?}, not a store format number: the store is damaged; \
         move it away and comb will create a fresh one"
    )]
    BadFormat { path: PathBuf, content: String },
    #[error(
        "{path} is not empty and is not a comb store (it holds {entry:?}): \
         choose a new or empty directory for the store"
    )]
    NotAStore { path: PathBuf, entry: OsString },
    #[error("{0} exists and is not a directory")]
    NotADirectory(PathBuf),
    #[error(
        "the store {path} belongs to another user (owner uid {owner} as comb sees it), not to \
         you: each user's store holds layers owned by that user's own ids. Use a store of your \
         own: leave out --store and $COMB_STORE for $XDG_CACHE_HOME/comb, or name a directory \
         of yours"
    )]
    NotYours { path: PathBuf, owner: u32 },
    #[error(
        "cannot reach the store {path}: permission denied (it is another user's, or in a \
         directory you may not enter). Use a store of your own: leave out --store and \
         $COMB_STORE for $XDG_CACHE_HOME/comb, or name a directory of yours"
    )]
    NoAccess { path: PathBuf },
    #[error(
        "cannot choose a store location: none of $COMB_STORE, $XDG_CACHE_HOME and $HOME \
         is set; pass --store DIR"
    )]
    NoLocation,
    #[error("content hashes to {actual}, expected {expected}: the corrupt copy was discarded")]
    HashMismatch { expected: Expected, actual: Digest },
    #[error("blob {0} is not in the store")]
    BlobMissing(Digest),
    #[error(
        "blob {expected} is corrupt: its content hashes to {actual}; remove {path} and \
         fetch or rebuild it"
    )]
    BlobCorrupt {
        expected: Digest,
        actual: Digest,
        path: PathBuf,
    },
    #[error("tree {0:?} is not in the store")]
    TreeMissing(String),
    #[error(
        "invalid {what} {name:?}: use 1 to 200 characters from A-Z a-z 0-9 . _ + - \
         and do not start with '.'"
    )]
    BadName { what: &'static str, name: String },
    #[error("{0} is not a directory, so it cannot be published as a tree")]
    NotATree(PathBuf),
    #[error(
        "cannot publish {src}: it is on another file system than the store; create it with \
         Store::begin_tree or at a Store::tmp_path"
    )]
    CrossDevice { src: PathBuf },
    #[error(transparent)]
    Index(#[from] IndexError),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `name` may be a tree name, a node-lock key or a path component
/// chosen by a caller: no separators, no dot files, nothing a shell or a
/// terminal would mangle.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

fn check_name(what: &'static str, name: &str) -> Result<(), StoreError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(StoreError::BadName {
            what,
            name: name.to_string(),
        })
    }
}

/// A content-addressed store rooted at one directory. `Send + Sync`: share
/// one per process (or open several; each is its own writer).
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    writer: String,
    // Held (flocked) for the life of this value: it tells other processes
    // that this writer's tmp/ entries are in use.
    _writer_lock: File,
    seq: AtomicU64,
    cleanup_warnings: Vec<String>,
}

impl Store {
    /// Where the store lives unless the user says otherwise: `$COMB_STORE`;
    /// else `/var/cache/comb` for root; else `$XDG_CACHE_HOME/comb` or
    /// `~/.cache/comb`.
    pub fn default_location() -> Result<PathBuf, StoreError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let is_root = unsafe { libc::geteuid() } == 0;
        default_location_from(|k| std::env::var_os(k), is_root)
    }

    /// Opens the store at `path`, creating it (and its parents) if needed,
    /// checking its format, migrating its index, and removing temporary
    /// entries left by writers that are gone.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let root =
            std::path::absolute(path.as_ref()).map_err(io_err("resolving", path.as_ref()))?;
        create_root(&root)?;
        let format_path = root.join("format");
        let has_format = match fs::read_to_string(&format_path) {
            Ok(text) => {
                let found: u32 = text.trim().parse().map_err(|_| StoreError::BadFormat {
                    path: format_path.clone(),
                    content: text.chars().take(40).collect(),
                })?;
                if found > STORE_FORMAT {
                    return Err(StoreError::NewerFormat {
                        path: root,
                        found,
                        supported: STORE_FORMAT,
                    });
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A new store, or one whose creation was interrupted (the
                // format file is written last): only our own names allowed.
                for entry in fs::read_dir(&root).map_err(io_err("listing", &root))? {
                    let name = entry.map_err(io_err("listing", &root))?.file_name();
                    if !KNOWN_ROOT_ENTRIES.iter().any(|k| name == *k) {
                        return Err(StoreError::NotAStore {
                            path: root,
                            entry: name,
                        });
                    }
                }
                false
            }
            Err(e) => return Err(io_err("reading", &format_path)(e)),
        };

        for dir in [
            "blobs",
            "blobs/blake3",
            "blobs/sha256",
            "trees",
            "tmp",
            "locks",
            "locks/writers",
        ] {
            let p = root.join(dir);
            match DirBuilder::new().mode(0o755).create(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let md = fs::symlink_metadata(&p).map_err(io_err("checking", &p))?;
                    if !md.is_dir() {
                        return Err(StoreError::NotADirectory(p));
                    }
                }
                Err(e) => return Err(io_err("creating directory", &p)(e)),
            }
        }

        let (writer, writer_lock) = register_writer(&root)?;
        let mut store = Store {
            root,
            writer,
            _writer_lock: writer_lock,
            seq: AtomicU64::new(0),
            cleanup_warnings: Vec::new(),
        };
        store.cleanup_warnings = store.remove_stale();

        let tag = store.root.join("CACHEDIR.TAG");
        if fs::read_to_string(&tag).ok().as_deref() != Some(CACHEDIR_TAG) {
            store.write_file_atomic(&tag, CACHEDIR_TAG.as_bytes())?;
        }
        // Creates the database and applies migrations once per open, so a
        // later open_index() only connects.
        drop(Index::open(&store.root.join(INDEX_FILE))?);
        if !has_format {
            store.write_file_atomic(&format_path, format!("{STORE_FORMAT}\n").as_bytes())?;
        }
        Ok(store)
    }

    /// The store's root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This writer's id, `<pid>-<16 hex>`; its temporary entries start with it.
    pub fn writer_id(&self) -> &str {
        &self.writer
    }

    /// Problems met while removing stale temporary entries at open. They do
    /// not stop the store from working; a caller may print them.
    pub fn cleanup_warnings(&self) -> &[String] {
        &self.cleanup_warnings
    }

    /// A new connection to the store's index. Each thread that writes to the
    /// index should have its own.
    pub fn open_index(&self) -> Result<Index, StoreError> {
        Ok(Index::open(&self.root.join(INDEX_FILE))?)
    }

    /// A unique path under `tmp/` that does not exist yet, for a caller (or
    /// a sandbox it starts) to create a file or directory at, then publish.
    /// `hint` is kept, sanitised, in the name to help a human reading `tmp/`.
    /// The entry belongs to this `Store` value: once it is dropped (or the
    /// process dies) the next `open` removes whatever is left at this path.
    pub fn tmp_path(&self, hint: &str) -> PathBuf {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut clean: String = hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        if clean.is_empty() {
            clean.push_str("entry");
        }
        self.root
            .join("tmp")
            .join(format!("{}.{seq}.{clean}", self.writer))
    }

    // ---------------------------------------------------------------- blobs

    /// Where the blob with this digest lives (whether or not it does).
    fn blob_location(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root
            .join("blobs")
            .join(d.algorithm.as_str())
            .join(&hex[..2])
            .join(&hex[2..])
    }

    /// Stores everything `reader` yields as a BLAKE3-addressed blob.
    pub fn put_blob_reader(&self, reader: &mut impl Read) -> Result<Digest, StoreError> {
        self.write_blob(reader, Algorithm::Blake3, None)
    }

    /// Stores everything `reader` yields, addressed by `algorithm`.
    pub fn put_blob_reader_as(
        &self,
        reader: &mut impl Read,
        algorithm: Algorithm,
    ) -> Result<Digest, StoreError> {
        self.write_blob(reader, algorithm, None)
    }

    /// Stores a copy of the file at `path` as a BLAKE3-addressed blob.
    pub fn put_blob_file(&self, path: &Path) -> Result<Digest, StoreError> {
        let mut f = File::open(path).map_err(io_err("opening", path))?;
        self.write_blob(&mut f, Algorithm::Blake3, None)
    }

    /// Stores `reader`'s content only if it hashes to `expected` (and has its
    /// size, if given): the hash is computed while writing, and on a
    /// mismatch the temporary copy is deleted and
    /// [`StoreError::HashMismatch`] names both hashes. The blob is addressed
    /// by `expected`'s algorithm, so a `.deb` is found again by the SHA-256
    /// its index gives. Pass a `&Digest`, or `Expected::sha256_hex(..)?`.
    pub fn put_blob_expecting(
        &self,
        reader: &mut impl Read,
        expected: impl Into<Expected>,
    ) -> Result<Digest, StoreError> {
        let expected = expected.into();
        self.write_blob(reader, expected.algorithm, Some(&expected))
    }

    fn write_blob(
        &self,
        reader: &mut impl Read,
        algorithm: Algorithm,
        expected: Option<&Expected>,
    ) -> Result<Digest, StoreError> {
        let tmp = self.tmp_path("blob");
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io_err("creating", &tmp))?;
        // Removes the temporary file on every early return below.
        let mut guard = TmpFile(Some(tmp.clone()));
        let mut w = HashingWriter::new(file, algorithm);
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::Read(e)),
            };
            w.write_all(&buf[..n]).map_err(io_err("writing", &tmp))?;
        }
        let (file, digest) = w.finish();
        if let Some(exp) = expected {
            if !exp.matches(&digest) {
                return Err(StoreError::HashMismatch {
                    expected: *exp,
                    actual: digest,
                });
            }
        }
        file.sync_all().map_err(io_err("syncing", &tmp))?;
        file.set_permissions(Permissions::from_mode(0o444))
            .map_err(io_err("setting mode of", &tmp))?;
        drop(file);

        let target = self.blob_location(&digest);
        let fan = target.parent().unwrap_or(&self.root).to_path_buf();
        match DirBuilder::new().mode(0o755).create(&fan) {
            Ok(()) => {
                let algo_dir = fan.parent().unwrap_or(&self.root);
                fsutil::fsync_dir(algo_dir).map_err(io_err("syncing", algo_dir))?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("creating directory", &fan)(e)),
        }
        if self.blob_path(&digest).is_some() {
            // Same address, same content: keep the existing file; the guard
            // drops the temporary one.
            return Ok(digest);
        }
        // Atomically replaces a damaged file of the wrong size, if any.
        fs::rename(&tmp, &target).map_err(io_err("renaming into place", &target))?;
        guard.0 = None;
        fsutil::fsync_dir(&fan).map_err(io_err("syncing", &fan))?;
        Ok(digest)
    }

    /// The path of a blob with `expected`'s hash (and size, if it gives
    /// one), for content whose size is not known in advance.
    pub fn find_blob(&self, expected: &Expected) -> Option<PathBuf> {
        let probe = Digest {
            algorithm: expected.algorithm,
            hash: expected.hash,
            size: expected.size.unwrap_or(0),
        };
        let p = self.blob_location(&probe);
        match fs::symlink_metadata(&p) {
            Ok(md) if md.is_file() && expected.size.is_none_or(|s| s == md.len()) => Some(p),
            _ => None,
        }
    }

    /// The path of the blob if the store has it (a regular file of the
    /// digest's size; the content is not re-hashed, see [`Store::verify_blob`]).
    pub fn blob_path(&self, d: &Digest) -> Option<PathBuf> {
        let p = self.blob_location(d);
        match fs::symlink_metadata(&p) {
            Ok(md) if md.is_file() && md.len() == d.size => Some(p),
            _ => None,
        }
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_some()
    }

    /// Opens the blob for reading.
    pub fn open_blob(&self, d: &Digest) -> Result<File, StoreError> {
        let p = self.blob_path(d).ok_or(StoreError::BlobMissing(*d))?;
        File::open(&p).map_err(io_err("opening", &p))
    }

    /// Re-hashes the blob: `Ok(())` if its content matches `d`,
    /// [`StoreError::BlobMissing`] or [`StoreError::BlobCorrupt`] if not.
    pub fn verify_blob(&self, d: &Digest) -> Result<(), StoreError> {
        let p = self.blob_location(d);
        let mut f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::BlobMissing(*d))
            }
            Err(e) => return Err(io_err("opening", &p)(e)),
        };
        let actual = Digest::of_reader(d.algorithm, &mut f).map_err(io_err("reading", &p))?;
        if actual == *d {
            Ok(())
        } else {
            Err(StoreError::BlobCorrupt {
                expected: *d,
                actual,
                path: p,
            })
        }
    }

    // ---------------------------------------------------------------- trees

    /// A fresh empty directory under `tmp/` to fill and then publish.
    pub fn begin_tree(&self) -> Result<TreeBuilder<'_>, StoreError> {
        let path = self.tmp_path("tree");
        DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .map_err(io_err("creating directory", &path))?;
        Ok(TreeBuilder {
            store: self,
            path: Some(path),
        })
    }

    /// Moves the directory `src_dir` to `trees/<name>` in one atomic rename
    /// and returns the published path. If `trees/<name>` already exists
    /// (another process published the same tree first) `src_dir` is removed
    /// and the existing tree's path returned. `src_dir` must be on the
    /// store's file system; use [`Store::begin_tree`] or [`Store::tmp_path`].
    ///
    /// The file system is synced first, so a published tree survives a
    /// power loss whole, not just a killed process.
    pub fn publish_tree(&self, src_dir: &Path, name: &str) -> Result<PathBuf, StoreError> {
        check_name("tree name", name)?;
        let md = fs::symlink_metadata(src_dir).map_err(io_err("checking", src_dir))?;
        if !md.is_dir() {
            return Err(StoreError::NotATree(src_dir.to_path_buf()));
        }
        let trees = self.root.join("trees");
        let dest = trees.join(name);
        if fs::symlink_metadata(&dest).is_ok() {
            fsutil::remove_tree(src_dir).map_err(io_err("removing", src_dir))?;
            return Ok(dest);
        }
        let dir = File::open(src_dir).map_err(io_err("opening", src_dir))?;
        nix::unistd::syncfs(&dir).map_err(|e| io_err("syncing", src_dir)(io::Error::from(e)))?;
        drop(dir);
        // NOREPLACE: a plain rename would silently replace an empty
        // directory published by someone else.
        match nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            src_dir,
            nix::fcntl::AT_FDCWD,
            &dest,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => {
                fsutil::fsync_dir(&trees).map_err(io_err("syncing", &trees))?;
                Ok(dest)
            }
            Err(nix::errno::Errno::EEXIST) | Err(nix::errno::Errno::ENOTEMPTY) => {
                fsutil::remove_tree(src_dir).map_err(io_err("removing", src_dir))?;
                Ok(dest)
            }
            Err(nix::errno::Errno::EXDEV) => Err(StoreError::CrossDevice {
                src: src_dir.to_path_buf(),
            }),
            Err(e) => Err(io_err("publishing", &dest)(io::Error::from(e))),
        }
    }

    /// The path of the published tree `name`, if there is one.
    pub fn tree_path(&self, name: &str) -> Option<PathBuf> {
        if !is_valid_name(name) {
            return None;
        }
        let p = self.root.join("trees").join(name);
        match fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => Some(p),
            _ => None,
        }
    }

    /// The trees `name` is layered on, bottom first: the trees whose
    /// directories an overlay of `name` needs below its own. Empty for a
    /// tree that stands alone. A name that is not a valid tree name is an
    /// error: the file is the store's own, so it is never trusted blindly.
    pub fn tree_layered_on(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let Some(dir) = self.tree_path(name) else {
            return Err(StoreError::TreeMissing(name.to_string()));
        };
        let path = dir.join(LAYERED_ON);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        let bases: Vec<String> = text.lines().map(str::to_string).collect();
        for b in &bases {
            check_name("tree name", b)?;
        }
        Ok(bases)
    }

    /// Whether the tree `name` and every tree it is layered on are present.
    fn tree_complete(&self, name: &str) -> bool {
        let mut todo = vec![name.to_string()];
        let mut seen = 0;
        while let Some(n) = todo.pop() {
            seen += 1;
            if seen > MAX_LAYERED_TREES {
                return false;
            }
            match self.tree_layered_on(&n) {
                Ok(bases) => todo.extend(bases),
                Err(_) => return false,
            }
        }
        true
    }

    /// The apparent size in bytes of the published tree `name`: regular
    /// files and symlinks, hard links counted once, symlinks not followed.
    pub fn tree_size(&self, name: &str) -> Result<u64, StoreError> {
        let p = self
            .tree_path(name)
            .ok_or_else(|| StoreError::TreeMissing(name.to_string()))?;
        fsutil::tree_size(&p).map_err(io_err("measuring", &p))
    }

    /// Whether a node's recorded output is present in the store: the engine
    /// checks this before trusting an index row.
    pub fn has_output(&self, output: &NodeOutput) -> bool {
        match output {
            NodeOutput::Blob(d) => self.has_blob(d),
            NodeOutput::Tree(name) => self.tree_complete(name),
        }
    }

    // ---------------------------------------------------------------- locks

    /// Takes the build lock of node `key` (`locks/<key>.lock`), waiting while
    /// another process or thread holds it. Held until the `NodeLock` is
    /// dropped. The lock is per open file: two `lock_node` calls in one
    /// process exclude each other too. After taking it, look in the index
    /// again: the previous holder may have built the node.
    pub fn lock_node(&self, key: &str) -> Result<NodeLock, StoreError> {
        match self.node_lock(key, true)? {
            Some(lock) => Ok(lock),
            // flock without LOCK_NB either takes the lock or fails.
            None => Err(StoreError::Io {
                action: "locking",
                path: self.root.join("locks").join(format!("{key}.lock")),
                source: io::Error::from(io::ErrorKind::WouldBlock),
            }),
        }
    }

    /// Like [`Store::lock_node`], but returns `Ok(None)` at once if the lock
    /// is held elsewhere.
    pub fn try_lock_node(&self, key: &str) -> Result<Option<NodeLock>, StoreError> {
        self.node_lock(key, false)
    }

    fn node_lock(&self, key: &str, wait: bool) -> Result<Option<NodeLock>, StoreError> {
        check_name("node key", key)?;
        // Lock files are never deleted: unlinking one while another process
        // waits on it would let a third process lock a new file at the same
        // path, and two holders would build at once.
        let path = self.root.join("locks").join(format!("{key}.lock"));
        let file = open_lock_file(&path)?;
        if fsutil::flock_exclusive(&file, wait).map_err(io_err("locking", &path))? {
            Ok(Some(NodeLock { _file: file, path }))
        } else {
            Ok(None)
        }
    }

    /// Marks this process as a user of the store's outputs until the
    /// guard is dropped: a shared lock that `comb gc` must take
    /// exclusively, so it never removes what a running comb may read.
    /// Waits while a collection runs.
    pub fn use_lock(&self) -> Result<StoreLock, StoreError> {
        let (file, path) = self.store_lock_file()?;
        fsutil::flock_shared(&file, true).map_err(io_err("locking", &path))?;
        Ok(StoreLock { _file: file })
    }

    /// [`Store::use_lock`] without waiting: `Ok(None)` while a collection
    /// runs.
    pub fn try_use_lock(&self) -> Result<Option<StoreLock>, StoreError> {
        let (file, path) = self.store_lock_file()?;
        if fsutil::flock_shared(&file, false).map_err(io_err("locking", &path))? {
            Ok(Some(StoreLock { _file: file }))
        } else {
            Ok(None)
        }
    }

    /// The exclusive side of [`Store::use_lock`], for garbage collection:
    /// `Ok(None)` at once if `wait` is false and another comb uses the store.
    pub fn collect_lock(&self, wait: bool) -> Result<Option<StoreLock>, StoreError> {
        let (file, path) = self.store_lock_file()?;
        if fsutil::flock_exclusive(&file, wait).map_err(io_err("locking", &path))? {
            Ok(Some(StoreLock { _file: file }))
        } else {
            Ok(None)
        }
    }

    fn store_lock_file(&self) -> Result<(File, PathBuf), StoreError> {
        // Not a node key, so never a node's lock file.
        let path = self.root.join("locks").join("store");
        Ok((open_lock_file(&path)?, path))
    }

    /// Every blob in the store: its algorithm, hash (hex) and size on disk.
    pub fn list_blobs(&self) -> Result<Vec<(Algorithm, String, u64)>, StoreError> {
        let mut out = Vec::new();
        for alg in Algorithm::ALL {
            let dir = self.root.join("blobs").join(alg.as_str());
            for fan in read_dir_or_empty(&dir)? {
                let fan_name = fan.file_name().to_string_lossy().into_owned();
                for entry in read_dir_or_empty(&fan.path())? {
                    let md = entry.metadata().map_err(io_err("reading", &entry.path()))?;
                    if md.is_file() {
                        let rest = entry.file_name().to_string_lossy().into_owned();
                        out.push((alg, format!("{fan_name}{rest}"), md.len()));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every published tree: its name and apparent size.
    pub fn list_trees(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = Vec::new();
        for entry in read_dir_or_empty(&self.root.join("trees"))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_valid_name(&name) {
                let size =
                    fsutil::tree_size(&entry.path()).map_err(io_err("measuring", &entry.path()))?;
                out.push((name, size));
            }
        }
        Ok(out)
    }

    /// Removes a blob (by algorithm and hex hash). Call it only under
    /// [`Store::collect_lock`].
    pub fn remove_blob(&self, algorithm: Algorithm, hex: &str) -> Result<(), StoreError> {
        if hex.len() < 3 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::BadName {
                what: "blob hash",
                name: hex.to_string(),
            });
        }
        let path = self
            .root
            .join("blobs")
            .join(algorithm.as_str())
            .join(&hex[..2])
            .join(&hex[2..]);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing", &path)(e)),
        }
    }

    /// Removes a published tree. Call it only under [`Store::collect_lock`].
    pub fn remove_tree(&self, name: &str) -> Result<(), StoreError> {
        check_name("tree name", name)?;
        let path = self.root.join("trees").join(name);
        fsutil::remove_tree(&path).map_err(io_err("removing", &path))
    }

    // ------------------------------------------------------------- internals

    /// Writes a small file so that readers see the old or the new content,
    /// never a mixture.
    fn write_file_atomic(&self, dest: &Path, content: &[u8]) -> Result<(), StoreError> {
        let tmp = self.tmp_path("file");
        let mut guard = TmpFile(Some(tmp.clone()));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(io_err("creating", &tmp))?;
        f.write_all(content).map_err(io_err("writing", &tmp))?;
        f.sync_all().map_err(io_err("syncing", &tmp))?;
        drop(f);
        fs::rename(&tmp, dest).map_err(io_err("renaming into place", dest))?;
        guard.0 = None;
        let dir = dest.parent().unwrap_or(&self.root);
        fsutil::fsync_dir(dir).map_err(io_err("syncing", dir))
    }

    /// Removes `tmp/` entries of writers that are gone, and their lock
    /// files. Returns what could not be removed, as messages.
    fn remove_stale(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let tmp = self.root.join("tmp");
        let writers_dir = self.root.join("locks").join("writers");
        // writer id -> its lock (held by us while we clean) or None if live.
        let mut verdicts: HashMap<String, Option<Option<File>>> = HashMap::new();
        let entries = match fs::read_dir(&tmp) {
            Ok(e) => e,
            Err(e) => {
                warnings.push(format!("listing {}: {e}", tmp.display()));
                return warnings;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            // What a helper makes beside an entry (a download's
            // `.NAME.PID.N.part`) is a dot and the entry's name: the
            // entry's writer's.
            let writer = name
                .to_str()
                .and_then(|n| n.strip_prefix('.').unwrap_or(n).split('.').next())
                .filter(|w| is_valid_name(w))
                .map(str::to_string);
            let stale = match writer {
                // Not a name any writer makes: nobody owns it.
                None => true,
                Some(w) if w == self.writer => false,
                Some(w) => verdicts
                    .entry(w.clone())
                    .or_insert_with(|| writer_gone(&writers_dir, &w))
                    .is_some(),
            };
            if stale {
                let p = entry.path();
                if let Err(e) = fsutil::remove_tree(&p) {
                    warnings.push(format!("removing stale {}: {e}", p.display()));
                }
            }
        }
        // Lock files of writers that are gone, whether or not they left
        // entries. Unlinked while we hold the flock; a writer registering at
        // this moment notices and picks a new id (see register_writer).
        if let Ok(locks) = fs::read_dir(&writers_dir) {
            for entry in locks.flatten() {
                let name = entry.file_name();
                let Some(w) = name.to_str().and_then(|n| n.strip_suffix(".lock")) else {
                    continue;
                };
                if w == self.writer {
                    continue;
                }
                // The flock (if any) stays held until after the unlink.
                let fresh;
                let gone = match verdicts.get(w) {
                    Some(v) => v.is_some(),
                    None => {
                        fresh = writer_gone(&writers_dir, w);
                        fresh.is_some()
                    }
                };
                if gone {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        warnings
    }
}

/// `Some(lock)` if writer `w` is gone (its lock file is missing, or we could
/// flock it: then we hold the lock while cleaning up), `None` if it is live.
fn writer_gone(writers_dir: &Path, w: &str) -> Option<Option<File>> {
    let path = writers_dir.join(format!("{w}.lock"));
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(f) => match fsutil::flock_exclusive(&f, false) {
            Ok(true) => Some(Some(f)),
            Ok(false) => None,
            // Cannot tell: assume live, the safe side.
            Err(_) => None,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(None),
        Err(_) => None,
    }
}

/// Creates and flocks `locks/writers/<id>.lock` for a new unique id. A
/// cleaner may flock and unlink the file in the instant between our create
/// and our flock; then the path no longer names our file, and we retry.
fn register_writer(root: &Path) -> Result<(String, File), StoreError> {
    let dir = root.join("locks").join("writers");
    for attempt in 0u32..100 {
        let id = format!("{}-{}", std::process::id(), unique_hex(attempt));
        let path = dir.join(format!("{id}.lock"));
        let f = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("creating writer lock", &path)(e)),
        };
        fsutil::flock_exclusive(&f, true).map_err(io_err("locking", &path))?;
        let ours = f.metadata().map_err(io_err("checking", &path))?;
        match fs::symlink_metadata(&path) {
            Ok(md) if md.ino() == ours.ino() && md.dev() == ours.dev() => return Ok((id, f)),
            _ => continue,
        }
    }
    Err(io_err("registering a writer in", &dir)(io::Error::other(
        "could not create a unique writer lock file",
    )))
}

/// 16 hex digits that differ between writers of one process and between
/// processes: a hash of pid, time, a process-wide counter and the attempt.
fn unique_hex(attempt: u32) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = blake3::Hasher::new();
    h.update(&std::process::id().to_le_bytes());
    h.update(&now.to_le_bytes());
    h.update(&n.to_le_bytes());
    h.update(&attempt.to_le_bytes());
    hex::encode(&h.finalize().as_bytes()[..8])
}

fn create_root(root: &Path) -> Result<(), StoreError> {
    // A store in a directory this user may not enter is someone else's.
    let denied = |e: io::Error, action: &'static str, path: &Path| match e.kind() {
        io::ErrorKind::PermissionDenied => StoreError::NoAccess {
            path: root.to_path_buf(),
        },
        _ => io_err(action, path)(e),
    };
    if let Some(parent) = root.parent() {
        fs::create_dir_all(parent).map_err(|e| denied(e, "creating directory", parent))?;
    }
    match DirBuilder::new().mode(0o700).create(root) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(denied(e, "creating store directory", root)),
    }
    let md = fs::metadata(root).map_err(|e| denied(e, "checking", root))?;
    if !md.is_dir() {
        return Err(StoreError::NotADirectory(root.to_path_buf()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if me != 0 && md.uid() != me {
        return Err(StoreError::NotYours {
            path: root.to_path_buf(),
            owner: md.uid(),
        });
    }
    // The store will hold root-owned file systems: nobody else may reach it.
    if md.mode() & 0o077 != 0 {
        fs::set_permissions(root, Permissions::from_mode(0o700))
            .map_err(io_err("restricting the mode of", root))?;
    }
    Ok(())
}

/// [`Store::default_location`] with the environment and the identity given,
/// so the rules can be tested without changing the process environment.
pub fn default_location_from(
    var: impl Fn(&str) -> Option<OsString>,
    is_root: bool,
) -> Result<PathBuf, StoreError> {
    let set = |k: &str| var(k).filter(|v| !v.is_empty());
    if let Some(p) = set("COMB_STORE") {
        return Ok(PathBuf::from(p));
    }
    if is_root {
        return Ok(PathBuf::from("/var/cache/comb"));
    }
    // The XDG spec says relative values are invalid and to be ignored.
    if let Some(x) = set("XDG_CACHE_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Ok(PathBuf::from(x).join("comb"));
    }
    if let Some(h) = set("HOME") {
        return Ok(PathBuf::from(h).join(".cache").join("comb"));
    }
    Err(StoreError::NoLocation)
}

/// Deletes a temporary file on drop unless disarmed (set to `None`).
struct TmpFile(Option<PathBuf>);

impl Drop for TmpFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// A directory under `tmp/` being filled. Publish it with
/// [`TreeBuilder::publish`]; dropped unpublished, it is removed.
#[derive(Debug)]
pub struct TreeBuilder<'s> {
    store: &'s Store,
    path: Option<PathBuf>,
}

impl TreeBuilder<'_> {
    /// The directory to fill.
    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Records that the tree is layered on `bases` (bottom first): it is
    /// complete only while they are present, and `comb gc` keeps them
    /// while it keeps this tree.
    pub fn layer_on(&self, bases: &[String]) -> Result<(), StoreError> {
        for b in bases {
            check_name("tree name", b)?;
        }
        let path = self.path().join(LAYERED_ON);
        let mut text = bases.join("\n");
        text.push('\n');
        fs::write(&path, text).map_err(io_err("writing", &path))
    }

    /// Publishes the directory as `trees/<name>`; see [`Store::publish_tree`].
    pub fn publish(mut self, name: &str) -> Result<PathBuf, StoreError> {
        let path = self.path.take().unwrap_or_default();
        let r = self.store.publish_tree(&path, name);
        if r.is_err() {
            // Failed publishes are cleaned now, not left for the next open.
            let _ = fsutil::remove_tree(&path);
        }
        r
    }

    /// Removes the directory and everything in it.
    pub fn abandon(mut self) -> Result<(), StoreError> {
        match self.path.take() {
            Some(p) => fsutil::remove_tree(&p).map_err(io_err("removing", &p)),
            None => Ok(()),
        }
    }
}

impl Drop for TreeBuilder<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fsutil::remove_tree(&p);
        }
    }
}

/// A held [`Store::use_lock`] or [`Store::collect_lock`].
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// Opens (creating) a lock file, never through a symlink.
fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err("opening lock", path))
}

/// The entries of `dir`, none if it does not exist.
fn read_dir_or_empty(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.map_err(io_err("reading", dir))).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("reading", dir)(e)),
    }
}

/// An exclusive build lock on one node; released when dropped.
#[derive(Debug)]
pub struct NodeLock {
    _file: File,
    path: PathBuf,
}

impl NodeLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
