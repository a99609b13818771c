//! comb-cache: the content-addressed store (blobs, trees/layers) and the
//! SQLite index of nodes, runs and events.
//!
//! Not implemented yet; the store issue fills it in.
