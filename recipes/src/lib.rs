//! comb-recipes: parses and validates the repository file `comb.toml`
//! (and, with the build-graph issue, recipe TOML and the package graph).
//!
//! Pure: it reads files and runs nothing. Every error names the file, the
//! line and column where it can, and what is expected there.

mod config;
mod error;

pub use config::{BaseConfig, DistroConfig, RepoConfig, CONFIG_FILE, DEFAULT_BUILD_SET};
pub use error::{Error, Result};
