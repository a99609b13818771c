//! comb's integration tests, one binary (the shape of uv's `tests/it`), so
//! the suite links once. Each module is one area; the helpers beside this
//! folder build their fixtures: `common` (the sandbox's attack helper),
//! `mirror` (a generated, signed mirror), `real` (the host's Debian
//! mirror, cached outside the checkout), `repo` (repositories of recipes)
//! and `root` (what a test that needs root does without it).
#[path = "../../remote/tests/buildgrid_server/mod.rs"]
mod buildgrid_server;
#[path = "../common/mod.rs"]
mod common;
#[path = "../mirror/mod.rs"]
mod mirror;
#[path = "../real/mod.rs"]
mod real;
#[path = "../repo/mod.rs"]
mod repo;
#[path = "../resolver/mod.rs"]
mod resolver;
#[path = "../root/mod.rs"]
mod root;

mod base_replaced;
mod build_offline;
mod build_starter;
mod check;
mod corpus_subset;
mod env_offline;
mod env_real_mirror;
mod mirror_fixture;
mod native_packages;
mod remote_cache;
mod remote_exec;
mod report;
mod resolver_vs_apt;
mod rootless;
mod sandbox_attacks;
mod sandbox_layers;
mod sandbox_ordinary_user;
mod serve;
mod serve_real;
mod store_health;
mod users;
mod why;
