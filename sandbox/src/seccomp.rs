//! The seccomp filter loaded last, just before the command is executed.
//! (Being written.)

use crate::Identity;

#[derive(Debug, thiserror::Error)]
#[error("seccomp: {0}")]
pub struct SeccompError(pub String);

/// Load the filter for `identity` into the calling thread.
pub fn install(_identity: Identity) -> Result<(), SeccompError> {
    Ok(())
}
