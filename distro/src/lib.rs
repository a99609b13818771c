//! comb-distro: the Debian backend of comb.
//!
//! This part of it turns a mirror into verified, parsed data:
//!
//! - [`sources`]: the host's APT sources (one-line and deb822), and the
//!   [`MirrorConfig`] comb uses by default (comb has no mirror name of its
//!   own; it uses the host's).
//! - [`fetch`]: downloads over `http://`, `https://` and `file:` that are
//!   verified by size and sha256 while they stream, with retries for
//!   transient failures, and a parallel fetcher for many `.deb`s.
//! - [`release`]: `InRelease` signature checking with `gpgv`, and the
//!   Release fields.
//! - [`index`]: signed index snapshots (`InRelease` + `Packages`/`Sources`)
//!   and the [`SnapshotLock`] that pins one.
//! - [`packages`]: binary and source package records, and dpkg status
//!   files (the deb822, relation and version syntax are comb-debian's).
//! - [`solver`]: dependency resolution in process, as APT's `MarkInstall`
//!   resolves (the install sets of a snapshot's build dependencies, with
//!   versions and sha256, or APT's kind of explanation); [`aptbox`]: APT
//!   itself, in a private configuration (the base layers' sets, and the
//!   resolver's tests).
//! - [`deb`]: reading `.deb` archives, and unpacking their data into a
//!   layer directory without ever leaving it, whatever the archive holds.
//!
//! Guarantees:
//!
//! - Nothing from the network is trusted before it is verified: `InRelease`
//!   must carry a good signature from the configured keyring (checked by
//!   `gpgv`), only its signed text is parsed, and every other file must
//!   match the size and sha256 that the signed text gives for it.
//! - A download is written to a temporary file beside its destination and
//!   renamed into place only once verified; on any failure it is deleted.
//!   A destination is never left half-written.
//! - Errors name the file or URL concerned and say what to do next; input
//!   from the network or from files never causes a panic.

pub mod aptbox;
pub mod aptrepo;
pub mod deb;
pub mod debwriter;
mod error;
pub mod fetch;
mod fsat;
pub mod index;
pub mod packages;
pub mod policy;
pub mod release;
pub mod solver;
pub mod sources;

pub use aptbox::{essential_and_required, Aptbox, Resolved};
pub use aptrepo::{write_flat_repository, RepoEntry};
pub use debwriter::{
    write_deb, BinarySpec, ControlFile, DebOptions, Generated, GeneratedFile, WrittenDeb,
};
pub use error::{Error, Result};
pub use fetch::{fetch_to, parallel_fetch, FetchItem, FetchOptions, Fetched, Fetcher};
pub use index::{fetch_snapshot, IndexFile, IndexKind, Snapshot, SnapshotLock};
pub use packages::{
    binary_sources, installed_packages, package_names, packages_without, parse_packages,
    parse_sources, parse_sources_with_text, parse_status, relation_field, relation_list_field,
    BinaryPackage, Relations, SourcePackage,
};
pub use release::{verify_clearsigned, Release};
pub use sources::{AptSource, MirrorConfig};
