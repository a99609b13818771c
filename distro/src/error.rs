//! The one error type of the crate. Every variant names the file or URL it is
//! about and, where there is one, says what to do next.

use std::path::PathBuf;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `comb-distro`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A local file or directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "creating", ...).
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The server says the file does not exist (HTTP 404/410, or a missing
    /// `file:` path, status 0). Callers may try another name (Packages.xz →
    /// .gz).
    #[error("{url} does not exist{}; check the mirror URI and suite in the APT sources", status_note(*.status))]
    NotFound { url: String, status: u16 },

    /// Any other download failure, after the retries ran out.
    #[error("downloading {url} failed{}: {reason}; check the network and the mirror URI, then try again", attempts_note(*.attempts))]
    Download {
        url: String,
        reason: String,
        attempts: u32,
    },

    /// The URI has a scheme comb does not speak.
    #[error("unsupported URI {url}: comb fetches http://, https:// and file: URIs")]
    UnsupportedUri { url: String },

    /// The downloaded bytes are not the ones the signed index promised. The
    /// partial file has been deleted.
    #[error("{url}: expected sha256 {expected_sha256} and {expected_size} bytes, got sha256 {actual_sha256} and {actual_size} bytes; the mirror is corrupt, out of sync or tampered with: nothing was kept, try again later or use another mirror")]
    HashMismatch {
        url: String,
        expected_sha256: String,
        expected_size: u64,
        actual_sha256: String,
        actual_size: u64,
    },

    /// The download grew past what it may be (the expected size, or a cap
    /// for files of unknown size); it was cut off and deleted.
    #[error("{url}: more than {limit} bytes received (expected at most that); the mirror is corrupt or hostile: nothing was kept")]
    TooLarge { url: String, limit: u64 },

    /// `gpgv` could not be run at all.
    #[error("cannot run gpgv to check {file}: {source}; install the gpgv package")]
    GpgvMissing {
        file: String,
        #[source]
        source: std::io::Error,
    },

    /// The OpenPGP signature did not verify against the keyring.
    #[error("the signature of {file} does not verify with keyring {keyring}: {reason}; check that the keyring holds the archive's signing key (Signed-By in the APT sources) and that the mirror is genuine.\ngpgv said:\n{gpgv_output}", keyring = .keyring.display())]
    BadSignature {
        file: String,
        keyring: PathBuf,
        reason: String,
        gpgv_output: String,
    },

    /// A clearsigned file is not shaped as one signed message, or holds text
    /// outside the signed part.
    #[error(
        "{file} is not a well-formed clearsigned message: {reason}; refusing to trust any of it"
    )]
    BadClearsign { file: String, reason: String },

    /// The Release file's Valid-Until date has passed: someone may be
    /// replaying an old, signed index.
    #[error("{file} expired at {valid_until} (now {now}); the mirror is stale or an old index is being replayed: use an up-to-date mirror")]
    Expired {
        file: String,
        valid_until: String,
        now: String,
    },

    /// A control-format file (Packages, Sources, Release, .dsc, APT sources)
    /// is malformed.
    #[error("{file}:{line}: {message}")]
    Parse {
        file: String,
        line: usize,
        message: String,
    },

    /// A dependency field does not follow Debian's relationship syntax.
    #[error("{origin}: field {field}: {message} in {value:?}")]
    Relation {
        origin: String,
        field: String,
        value: String,
        message: String,
    },

    /// A Debian version string is malformed.
    #[error("invalid Debian version {version:?}: {message}")]
    Version { version: String, message: String },

    /// The signed Release file does not list an index comb needs.
    #[error("{release} lists none of {wanted}; check the components and architecture (the suite's Release lists what it has)")]
    NotInRelease { release: String, wanted: String },

    /// A compressed index could not be decompressed.
    #[error("decompressing {file}: {source}; the file is corrupt: delete it and fetch again")]
    Decompress {
        file: String,
        #[source]
        source: std::io::Error,
    },

    /// No usable APT source was found.
    #[error("{0}")]
    NoSource(String),

    /// A stored snapshot no longer matches its lock file.
    #[error("{path}: {message}; run `comb update` to fetch a fresh snapshot", path = .path.display())]
    LockMismatch { path: PathBuf, message: String },

    /// The requested packages cannot be installed: an unknown name or
    /// version, unmet dependencies, a conflict, or a plan that would remove
    /// installed packages. `explanation` is the resolver's own text (APT's,
    /// or comb's in APT's words), `resolver` names it.
    #[error("cannot resolve {}: {resolver} says:\n{explanation}\nCheck that these packages exist in the snapshot at the versions asked for and do not conflict with each other or with what is already installed; fix the names or versions in the recipe, or run `comb update` if the snapshot is old", .names.join(", "))]
    Resolve {
        names: Vec<String>,
        resolver: &'static str,
        explanation: String,
    },

    /// Running APT itself failed (not a resolution problem).
    #[error("{command}: {message}")]
    Apt { command: String, message: String },

    /// A `.deb` is malformed: not an `ar` archive, a wrong `debian-binary`,
    /// a missing, misplaced or unknown member, a corrupt or truncated tar or
    /// compressed stream.
    #[error("{deb}{}: {message}; the .deb is corrupt, truncated or not a Debian package: delete it and fetch it again", member_note(.member), deb = .deb.display())]
    BadDeb {
        deb: PathBuf,
        /// The `ar` member concerned (`data.tar.xz`, ...), or empty for the
        /// archive as a whole.
        member: String,
        message: String,
    },

    /// A `.deb` holds an entry that comb refuses to unpack: a path that
    /// would leave the layer, goes through a symlink or holds a NUL byte, a
    /// hard link to something this archive did not unpack, or more entries
    /// or path components than the limits allow. Nothing outside the layer
    /// was touched, but the layer is incomplete.
    #[error("{deb}: refusing to unpack {path:?}: {reason}; the package is broken or hostile: discard the layer and do not install this .deb", deb = .deb.display())]
    UnsafeDebEntry {
        deb: PathBuf,
        /// The entry's name as the archive gives it.
        path: String,
        reason: String,
    },

    /// Writing an entry of a `.deb` into the layer directory failed.
    #[error("{deb}: {action} {path:?} in {root}: {source}; check the free space and permissions of the layer directory (comb unpacks as root), then discard the layer and try again", deb = .deb.display(), root = .root.display())]
    Unpack {
        deb: PathBuf,
        /// The layer directory.
        root: PathBuf,
        /// The path inside the layer.
        path: String,
        /// What was being done ("creating", "writing", ...).
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// A binary package to write has an invalid field (name, version,
    /// architecture, relation, extra field or control file).
    #[error("binary package {package:?}: {field}: {message}; fix the package's description in the recipe")]
    DebSpec {
        package: String,
        field: String,
        message: String,
    },

    /// A file listed for a package cannot go into one: it leaves the root,
    /// is missing, set-id, a device, or has a name dpkg cannot record.
    #[error("{root}: refusing to package {path:?}: {reason}", root = .root.display())]
    DebInput {
        /// The directory the package's files are taken from.
        root: PathBuf,
        /// The path as listed, relative to `root`.
        path: String,
        reason: String,
    },

    /// A local APT repository cannot be written from the entries given.
    #[error("APT repository {dir}: {message}", dir = .dir.display())]
    AptRepo { dir: PathBuf, message: String },
}

fn member_note(member: &str) -> String {
    if member.is_empty() {
        String::new()
    } else {
        format!(" (member {member})")
    }
}

fn status_note(status: u16) -> String {
    if status == 0 {
        String::new()
    } else {
        format!(" (HTTP {status})")
    }
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" after {attempts} attempts")
    } else {
        String::new()
    }
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(file: &str, line: usize, message: impl Into<String>) -> Self {
        Error::Parse {
            file: file.to_string(),
            line,
            message: message.into(),
        }
    }
}

impl From<comb_debian::Error> for Error {
    fn from(e: comb_debian::Error) -> Error {
        match e {
            comb_debian::Error::Parse {
                file,
                line,
                message,
            } => Error::Parse {
                file,
                line,
                message,
            },
            comb_debian::Error::Version { version, message } => Error::Version { version, message },
            comb_debian::Error::Clearsign { file, reason } => Error::BadClearsign { file, reason },
        }
    }
}
