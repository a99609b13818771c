//! Errors of reading a repository: each names the file and, where TOML
//! gives one, the line and column.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A syntax or type error, or a value that is not allowed.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("no {file} in {} or any directory above it; create one (see the README) or pass --repo DIR", start.display())]
    NoRepository { start: PathBuf, file: &'static str },
}

impl Error {
    /// An error at byte `offset` of `text`, the contents of `path`.
    pub(crate) fn at(
        path: &std::path::Path,
        text: &str,
        offset: Option<usize>,
        message: String,
    ) -> Error {
        let (line, column) = match offset {
            Some(offset) => line_column(text, offset),
            None => (1, 1),
        };
        Error::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
