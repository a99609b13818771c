//! comb-distro's integration tests, one binary.
#[path = "../../../tests/root/mod.rs"]
mod root;

mod aptbox;
mod deb;
mod debwriter;
mod mirror;
