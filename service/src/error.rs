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
    /// The user's input is wrong (arguments, the configuration).
    #[error("{0}")]
    Input(String),
    /// The machine, the store or the daemon failed.
    #[error("{0}")]
    Environment(String),
}

impl Error {
    /// What the failure asks of the user, for the exit code.
    pub fn kind(&self) -> comb_engine::ErrorKind {
        use comb_engine::ErrorKind;
        match self {
            Error::Engine(e) => e.kind(),
            Error::Input(_) => ErrorKind::Input,
            Error::Db(_)
            | Error::Audit(_)
            | Error::Publish(_)
            | Error::Io { .. }
            | Error::Environment(_) => ErrorKind::Environment,
        }
    }
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
