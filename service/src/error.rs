//! The service's errors.

/// Anything the daemon or a client can fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the service database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),
    #[error(transparent)]
    Engine(#[from] comb_engine::Error),
    /// (The io error is part of the message, not a source, so that a
    /// chain of errors does not print it twice.)
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(what: impl Into<String>, error: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            error,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
