//! comb-service's integration tests, one binary.
#[path = "../../../tests/root/mod.rs"]
mod root;

mod http_page;
mod publish;
