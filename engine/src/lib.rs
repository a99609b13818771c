//! comb-engine: the stages of a package build as content-addressed nodes,
//! their graph and the scheduler.
//!
//! For now it only re-exports the sandbox for the command line.

pub use comb_sandbox as sandbox;
