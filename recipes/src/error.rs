//! Errors of reading a repository: each names the file and, where TOML
//! gives one, the line and column.

use std::fmt;
use std::path::{Path, PathBuf};

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
    /// Recipes that build-depend on each other in a circle. `steps[i]`
    /// requires a binary built by `steps[i + 1]` (the last by the first).
    #[error("{}", cycle_text(.steps))]
    Cycle { steps: Vec<CycleStep> },
    /// Everything wrong with a repository at once, one error per line,
    /// like a compiler's output.
    #[error("{}", many_text(.0))]
    Many(Vec<Error>),
}

/// One recipe of a dependency cycle and the requirement that leads on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleStep {
    /// The recipe (source package) name.
    pub recipe: String,
    /// Where it asks for the next recipe's binary.
    pub at: Location,
    /// The requirement as written.
    pub requirement: String,
    /// The binary package of the next recipe that it names.
    pub binary: String,
}

fn cycle_text(steps: &[CycleStep]) -> String {
    let mut names: Vec<&str> = steps.iter().map(|s| s.recipe.as_str()).collect();
    if let Some(first) = names.first().copied() {
        names.push(first);
    }
    let mut out = format!(
        "dependency cycle: {}; break it by removing one of these requirements",
        names.join(" -> ")
    );
    for (i, step) in steps.iter().enumerate() {
        let next = &steps[(i + 1) % steps.len()].recipe;
        out.push_str(&format!(
            "\n  {}: {} requires {:?}; {} builds {}",
            step.at, step.recipe, step.requirement, next, step.binary
        ));
    }
    out
}

fn many_text(errors: &[Error]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    /// An error at byte `offset` of `text`, the contents of `path`.
    pub(crate) fn at(path: &Path, text: &str, offset: Option<usize>, message: String) -> Error {
        let (line, column) = match offset {
            Some(offset) => line_column(text, offset),
            None => (1, 1),
        };
        Error::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            // One line per error: TOML's messages can have several.
            message: message.trim().replace('\n', "; "),
        }
    }

    /// One error for a list: the error itself if there is only one.
    /// `None` for an empty list.
    pub fn from_list(mut errors: Vec<Error>) -> Option<Error> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(Error::Many(errors)),
        }
    }

    /// The single errors, with every `Many` flattened.
    pub fn into_list(self) -> Vec<Error> {
        match self {
            Error::Many(errors) => errors.into_iter().flat_map(Error::into_list).collect(),
            e => vec![e],
        }
    }
}

/// A place in a file: what an error names, and what the engine needs to
/// report a problem it finds later (say, a build requirement that the
/// distribution does not have) at the line that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` of `text`, the contents of `file`.
    pub fn of_offset(file: &Path, text: &str, offset: usize) -> Location {
        let (line, column) = line_column(text, offset);
        Location {
            file: file.to_path_buf(),
            line,
            column,
        }
    }

    /// An [`Error::Invalid`] at this place.
    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::Invalid {
            path: self.file.clone(),
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// 1-based line and column (in characters) of byte `offset`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
