//! comb-service: `comb serve`, a build service on comb's engine and sandbox.
//!
//! One long-running daemon owns the store. Local clients reach it over a
//! Unix socket and are known by `SO_PEERCRED`, never by what they claim.
//! Requests wait in a queue in SQLite (they survive a restart), are checked
//! against the access list of the *pocket* they are for before anything is
//! queued, and are built in order through the engine. A pocket is an APT
//! repository the daemon publishes; packages move between pockets by
//! promotion, without a rebuild, only when their bytes are the recorded
//! output. Every request, decision, build, publication, promotion and hook
//! outcome is appended to a hash-chained audit log, so an edited or deleted
//! entry is detected. Hooks run outside any sandbox, as the daemon's user,
//! with a timeout and a clean environment; a failing hook never stops a
//! build.

pub mod access;
pub mod audit;
pub mod client;
pub mod daemon;
pub mod db;
mod error;
pub mod hooks;
pub mod http;
pub mod protocol;
pub mod publish;

pub use error::{Error, Result};
