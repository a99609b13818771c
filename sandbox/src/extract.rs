//! Reading files out of a finished sandbox without trusting them.
//! (Being written; see the interface in the issue note.)

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("{path}: {reason}")]
    Rejected { path: PathBuf, reason: String },
}
