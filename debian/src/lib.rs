//! comb-debian: Debian's syntax, parsed in one place.
//!
//! Package names ([`name`]), versions compared as dpkg compares them
//! ([`version`]), relations with architecture restrictions and build
//! profiles ([`relation`]), deb822 paragraphs ([`control`]) and the text of
//! a clearsigned message ([`clearsigned`]). Every parser here takes hostile
//! input: it never panics, refuses what it cannot read with the line (or
//! byte offset) and what to do, and is fuzzed (`fuzz/`). It reads text only:
//! no file, no network, no signature check (that is `gpgv`'s, in
//! `comb-distro`). `comb-recipes` and `comb-distro` use it; nothing else
//! parses Debian syntax.

pub mod clearsigned;
pub mod control;
mod error;
pub mod name;
pub mod relation;
pub mod version;

pub use error::{Error, Result};
pub use relation::{parse_relations, Relation};
pub use version::Version;
