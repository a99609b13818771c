//! What is wrong with a piece of Debian syntax, and where.

/// Why text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A deb822 file: `file` names it (a path or a URL), `line` is 1-based.
    #[error("{file}:{line}: {message}")]
    Parse {
        file: String,
        line: usize,
        message: String,
    },
    /// A version that dpkg would not accept.
    #[error("invalid Debian version {version:?}: {message}")]
    Version { version: String, message: String },
    /// Text that is not exactly one clearsigned message.
    #[error(
        "{file} is not a well-formed clearsigned message: {reason}; refusing to trust any of it"
    )]
    Clearsign { file: String, reason: String },
}

impl Error {
    pub fn parse(file: &str, line: usize, message: impl Into<String>) -> Error {
        Error::Parse {
            file: file.to_string(),
            line,
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
