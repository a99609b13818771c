//! comb-distro: the Debian backend: signed index snapshots, dependency
//! resolution, fetching and verifying `.deb`s, and writing `.deb`s.
//!
//! Not implemented yet; the environments issue fills it in.
