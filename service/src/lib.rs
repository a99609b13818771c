//! comb-service: `comb serve`, a build service on comb's engine and sandbox.
//!
//! One long-running daemon owns the store. Local clients reach it over a
//! Unix socket and are known by `SO_PEERCRED`, never by what they claim.
//! Requests wait in a queue in SQLite (they survive a restart), are checked
//! against the access list of the *pocket* they are for before anything is
//! queued, and are built in order through the engine. A pocket is an APT
//! repository the daemon publishes; packages move between pockets by
//! promotion, without a rebuild, only when their bytes are the recorded
//! output. Every queued request, build, publication, promotion,
//! cancellation and hook outcome is appended to a keyed hash-chained audit
//! log, so an edited or deleted entry is detected, and refusals and reads
//! too, one entry per burst per user with counts. Hooks run outside any
//! sandbox, as the daemon's user, with a timeout and a clean environment,
//! only when nobody but root and that user can change them or the
//! configuration that names them; a failing hook never stops a build.
//! What one client can cost is bounded: a deadline per connection, a rate
//! per uid, a bounded hook queue.

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
pub mod throttle;
pub mod trust;

pub use error::{Error, Result};
