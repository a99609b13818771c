//! What a build node records: the packages it made and its log, as a
//! manifest blob in the store.

use crate::engine::Engine;
use crate::error::{Error, Result};
use comb_cache::{Algorithm, Digest, NodeRef};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One `.deb` a build produced, stored as a sha256 blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltDeb {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub sha256: String,
    pub size: u64,
    pub filename: String,
    pub control: String,
}

/// What a build node records: its packages and its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub debs: Vec<BuiltDeb>,
    /// The build log: a blob digest (zstd-compressed; see `logs::read`).
    pub log: String,
    /// The limits the build ran under, and how this host enforced each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confinement: Option<Confinement>,
    /// The remote worker that ran the build (`[remote] execute`); `None`
    /// when it ran on the machine that recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

impl Manifest {
    /// The blobs it names: its packages and its log.
    pub fn references(&self) -> Vec<NodeRef> {
        let mut refs: Vec<NodeRef> = self
            .debs
            .iter()
            .map(|d| NodeRef::Blob {
                algorithm: Algorithm::Sha256,
                hex: d.sha256.clone(),
            })
            .collect();
        if let Ok(log) = self.log.parse::<Digest>() {
            refs.push(NodeRef::Log {
                algorithm: log.algorithm,
                hex: log.hex(),
            });
        }
        refs
    }
}

/// The limits a sandboxed step ran under (as applied) and how each was
/// enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    pub limits: comb_sandbox::Limits,
    pub enforced_by: comb_sandbox::EnforcedBy,
}

impl Confinement {
    /// One line: `memory limit 8 GiB (rlimit), process limit 4096 (rlimit), …`.
    pub fn describe(&self) -> String {
        self.enforced_by.describe(&self.limits).join(", ")
    }
}

/// Stores a `.deb` as a sha256 blob and describes it.
pub(crate) fn store_deb(engine: &Engine, path: &Path, control: &str) -> Result<BuiltDeb> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let digest = engine
        .store
        .put_blob_reader_as(&mut file, Algorithm::Sha256)?;
    let field = |name: &str| {
        control
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    Ok(BuiltDeb {
        name: field("Package"),
        version: field("Version"),
        architecture: field("Architecture"),
        sha256: digest.hex(),
        size: digest.size,
        filename: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        control: control.trim_end().to_string(),
    })
}
