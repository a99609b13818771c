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
    /// A plan found a node missing: it would be built (never an error of
    /// a run that builds).
    #[error("{} {} would be built: {}", .0.stage, .0.name, .0.reason)]
    WouldBuild(WouldBuild),
    /// The user's input is wrong (arguments, a recipe, `comb.toml`): the
    /// message says what to change.
    #[error("{0}")]
    Input(String),
    /// The machine, the network, the mirror or the store failed, or holds
    /// something comb did not expect.
    #[error("{0}")]
    Environment(String),
}

/// What a failure asks of the user; it decides comb's exit code (README,
/// "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A stage ran and failed: a package does not build (exit 1).
    Failed,
    /// Usage and input: arguments, recipes, `comb.toml`, `comb.lock`
    /// (exit 2).
    Input,
    /// The environment: network, mirror, store, sandbox set-up, disk
    /// (exit 3).
    Environment,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Stage { .. } => ErrorKind::Failed,
            Error::Repo(_) | Error::Lock { .. } | Error::Input(_) => ErrorKind::Input,
            Error::Sandbox(e) => sandbox_error_kind(e),
            Error::Distro(e) => distro_error_kind(e),
            Error::WouldBuild(_) => ErrorKind::Failed,
            Error::Store(_) | Error::Index(_) | Error::Io { .. } | Error::Environment(_) => {
                ErrorKind::Environment
            }
        }
    }
}

/// The kind of `e` when it is an error of the engine or of a crate below
/// it (for a caller that holds a chain of causes); `None` for any other.
pub fn error_kind_of(e: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    if let Some(e) = e.downcast_ref::<Error>() {
        Some(e.kind())
    } else if let Some(e) = e.downcast_ref::<comb_distro::Error>() {
        Some(distro_error_kind(e))
    } else if let Some(e) = e.downcast_ref::<comb_sandbox::SandboxError>() {
        Some(sandbox_error_kind(e))
    } else if e.is::<comb_recipes::Error>() {
        Some(ErrorKind::Input)
    } else if e.is::<comb_cache::StoreError>()
        || e.is::<comb_cache::IndexError>()
        || e.is::<std::io::Error>()
    {
        Some(ErrorKind::Environment)
    } else {
        None
    }
}

/// A sandbox's error: a request that cannot run, a command that cannot
/// start and a layer the command left that is refused are the caller's
/// input; ids, slots and set-up are the machine's.
fn sandbox_error_kind(e: &comb_sandbox::SandboxError) -> ErrorKind {
    use comb_sandbox::SandboxError as S;
    match e {
        S::Invalid(_) | S::Exec { .. } | S::Extract(_) => ErrorKind::Input,
        S::Ids(_) | S::NoSlot { .. } | S::Setup(_) | S::Io { .. } => ErrorKind::Environment,
    }
}

/// A distribution's error: what the user configured or asked for is input;
/// the network, the mirror and its indices are the environment.
fn distro_error_kind(e: &comb_distro::Error) -> ErrorKind {
    use comb_distro::Error as D;
    match e {
        D::UnsupportedUri { .. }
        | D::Relation { .. }
        | D::Version { .. }
        | D::NotInRelease { .. }
        | D::NoSource(_)
        | D::LockMismatch { .. }
        | D::Resolve { .. } => ErrorKind::Input,
        _ => ErrorKind::Environment,
    }
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
        Error::Environment(format!("describing a node: {e}"))
    }
}

/// A node a plan found missing: it would be built, for `reason`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WouldBuild {
    pub stage: &'static str,
    pub name: String,
    pub reason: String,
}
