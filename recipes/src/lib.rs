//! comb-recipes: reads a repository — the repository file `comb.toml`,
//! every package's `recipe.toml` — and builds the package graph by name.
//!
//! Pure: it reads files and runs nothing. What it returns is valid: names
//! and versions follow Debian policy, relations parse, file patterns are
//! well-formed, sources exist inside their recipe's directory, and the
//! graph is acyclic. Every error names the file, the line and column where
//! it can, and what is expected there; a repository reports all its
//! errors at once, one per line.
//!
//! What needs the distribution (whether a requirement can be satisfied, a
//! `debian` source's version, binaries and `Build-Depends`) is the
//! engine's: it passes what it learns to [`Repository::graph_with`].

mod config;
mod dsc;
mod error;
mod glob;
mod graph;
mod limits;
mod recipe;
mod repo;

pub use comb_debian::name::check_package_name;
pub use comb_debian::relation::{
    parse_relations, Alternative, ArchRestriction, Op, ProfileTerm, Relation, Rules, SyntaxError,
    VersionConstraint,
};
pub use comb_debian::version::check_version;
pub use config::{
    BaseConfig, DistroConfig, HooksConfig, PocketConfig, RemoteConfig, RepoConfig, CONFIG_FILE,
    DEFAULT_BUILD_SET,
};
pub use dsc::{Dsc, DscFile};
pub use error::{CycleStep, Error, Location, Result};
pub use glob::Glob;
pub use graph::{CutEdge, Node, PackageGraph, SourceFacts};
pub use limits::LimitsConfig;
pub use recipe::{
    check_maintainer, Architecture, Build, Dependency, Output, Package, Recipe, Requirement,
    Source, SourceKind, RECIPE_FILE,
};
pub use repo::{find_recipes, Repository};
