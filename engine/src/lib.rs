//! comb-engine: the stages of a package build as content-addressed nodes.
//!
//! A node's key is the blake3 of its canonical input description; a node
//! whose key is recorded and whose output is in the store is a hit and is
//! not run again. Today the engine has the first half of hasher's pipeline:
//! the index snapshot pinned by `comb.lock` ([`snapshot`]), resolution with
//! APT's solver, fetching, and the environment layers built by R
//! ([`env`]). Every node, hit or built or failed, is recorded in the
//! store's index with the run it belongs to.

pub mod build;
pub mod check;
mod engine;
pub mod env;
mod error;
pub mod gc;
pub mod logs;
pub mod report;
mod scheduler;
pub mod snapshot;
mod source;
pub mod vary;
pub mod why;

pub use comb_cache as cache;
pub use comb_distro as distro;
pub use comb_recipes as recipes;
pub use comb_sandbox as sandbox;
pub use engine::{store_location, Engine, NodeEvent, Observer, Quiet};
pub use error::{error_kind_of, Error, ErrorKind, Result};
pub use scheduler::JobState;
