//! comb-cache: the content-addressed store and its SQLite index.
//!
//! The store keeps everything comb produces under one root directory:
//! *blobs* (files addressed by their BLAKE3 or SHA-256 digest: fetched
//! `.deb`s, index snapshots, build logs) and *trees* (published directories:
//! environment layers, sets of built packages). The index (`index.sqlite`)
//! maps each node key to its output and the canonical description the key
//! was hashed from, and records every run and what happened to each node in
//! it. The engine calls this crate; it runs nothing itself.
//!
//! Guarantees:
//!
//! - **Nothing half-written is ever trusted.** Blobs and trees are written
//!   under `tmp/` and renamed into place only when complete (blobs fsynced,
//!   trees after a `syncfs`). A blob's path is its digest; a download is
//!   verified while it is written and never kept if it does not match. A
//!   node row is recorded only after its output is published, and a failed
//!   node is never recorded, so it is never a cache hit.
//! - **A killed comb leaves no debris that matters.** Every temporary entry
//!   belongs to a writer that holds a flock for as long as it lives; the next
//!   [`Store::open`] removes entries of writers that are gone, without
//!   following symlinks and through read-only or mode-000 directories.
//! - **Several comb processes may share a store.** Publishing is an atomic
//!   no-replace rename (a second publisher of the same tree loses cleanly),
//!   [`Store::lock_node`] serialises builds of one node, and the index is
//!   SQLite in WAL mode with a busy timeout.
//! - **Private.** The root is mode 0700: it holds file systems owned by
//!   the sandbox's ids that nobody else may reach.
//! - **Versioned.** A store whose `format` or an index whose schema is newer
//!   than this comb understands is refused with an error saying so.

mod digest;
mod fsutil;
pub mod gc;
mod index;
mod key;
mod store;

pub use digest::{
    Algorithm, Blake3, Digest, DigestError, Expected, Hash, HashAlgorithm, Hasher, HashingReader,
    HashingWriter, Sha256,
};
pub use index::{
    unix_now, Attempt, Event, EventStatus, FileStat, Index, IndexError, NodeKind, NodeOutput,
    NodeRecord, NodeRef, NodeSummary, RunId, RunRecord, RunStatus, BUSY_TIMEOUT, MIGRATIONS,
};
pub use key::{
    diff_descriptions, key_of, parse_description, Change, Description, DescriptionError, Input,
    ReadDescription, DESCRIPTION_FORMAT,
};
pub use store::{
    default_location_from, is_valid_name, NodeLock, Store, StoreError, StoreLock, TreeBuilder,
    CACHEDIR_TAG, INDEX_FILE, LAYERED_ON, MAX_NAME_LEN, STORE_FORMAT,
};
