//! comb-recipes: parses and validates recipe TOML and the repository file
//! `comb.toml`, and builds the package graph by name.
//!
//! Pure: it reads files and runs nothing. Not implemented yet; the build-graph
//! issue fills it in.
