//! The engine's errors: those of the crates below, plus what only the
//! engine can say (a missing lock, a failed stage).

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Repo(#[from] comb_recipes::Error),
    #[error(transparent)]
    Store(#[from] comb_cache::StoreError),
    #[error("the store's index: {0}")]
    Index(#[from] comb_cache::IndexError),
    #[error(transparent)]
    Distro(#[from] comb_distro::Error),
    #[error("sandbox: {0}")]
    Sandbox(#[from] comb_sandbox::SandboxError),
    #[error("{}: {message}", path.display())]
    Lock { path: PathBuf, message: String },
    /// A stage ran and failed; `log` is the tail of its output, and
    /// `stored_log` the digest of the whole of it in the store.
    #[error("{stage} {name} failed: {message}\n--- last lines of its log ---\n{log}")]
    Stage {
        stage: &'static str,
        name: String,
        message: String,
        log: String,
        stored_log: Option<String>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<comb_cache::DescriptionError> for Error {
    fn from(e: comb_cache::DescriptionError) -> Error {
        Error::Other(format!("describing a node: {e}"))
    }
}
