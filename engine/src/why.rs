//! Why a node was built: every input that differs from the node it was
//! compared with (the one the previous run used, or its last failed
//! attempt), as [`MissReason`]s, in the spirit of cargo's `DirtyReason`.
//! The engine records the comparison when it builds; `comb why` reads the
//! typed records back for a package's stages ([`explain`]) and follows a
//! reason that points upstream to that node's own reasons.

use crate::error::{Error, Result};
use crate::inputs::{miss_reasons, read_as, BuildDepsInputs, PackageArch, Previous};
use crate::manifest::Manifest;
pub use crate::miss::{MissReason, UpstreamInput};
use comb_cache::{EventStatus, Index, NodeKind, NodeOutput, RunId, Store};
use serde::{Serialize, Serializer};
use std::collections::HashMap;

/// Each reason as its fields and its words (`text`).
fn reasons_with_text<S: Serializer>(
    reasons: &[MissReason],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    let values: Vec<serde_json::Value> = reasons
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            if let Some(map) = v.as_object_mut() {
                map.insert("text".into(), r.to_string().into());
            }
            v
        })
        .collect();
    values.serialize(s)
}

/// One stage of a package in one run, and why it was not a hit.
#[derive(Debug, Clone, Serialize)]
pub struct StageWhy {
    pub stage: NodeKind,
    pub name: String,
    pub key: String,
    pub status: EventStatus,
    pub duration_ms: u64,
    /// Empty for a hit.
    #[serde(serialize_with = "reasons_with_text")]
    pub reasons: Vec<MissReason>,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// The stored log (a blob digest), if any.
    pub log: Option<String>,
    /// The limits a build ran under and how each was enforced, in words
    /// (from its manifest: see [`limits_of`]).
    pub limits: Option<String>,
    /// For the resolve of a package's environment: which of the packages
    /// it installs came from the repository, and which copy of the base's
    /// each replaced (see [`repository_packages_of`]).
    pub from_repository: Vec<String>,
    /// The remote worker that ran it (`[remote] execute`), if one did.
    pub worker: Option<String>,
}

/// What `comb why PKG` prints: the package's stages in one run.
#[derive(Debug, Clone, Serialize)]
pub struct PackageWhy {
    pub package: String,
    pub run: RunId,
    pub stages: Vec<StageWhy>,
    /// The edges from or to the package that the run cut out of a
    /// build-dependency cycle.
    pub cycles_cut: Vec<comb_recipes::CutEdge>,
}

/// How many runs back `comb why` and `comb log` look for a package.
const RUNS_SEARCHED: usize = 200;

/// The newest run (of the last `RUNS_SEARCHED`) with a build event of
/// `package`, or `run` if given (checked).
pub fn run_of(index: &Index, package: &str, run: Option<RunId>) -> Result<RunId> {
    let has = |r: RunId| -> Result<bool> { Ok(index.run_has_event(r, NodeKind::Build, package)?) };
    if let Some(r) = run {
        if index.run(r)?.is_none() {
            return Err(Error::Input(format!("there is no run {r} in the store")));
        }
        if !has(r)? {
            return Err(Error::Input(format!(
                "run {r} did not build {package}: `comb report` lists runs"
            )));
        }
        return Ok(r);
    }
    for r in index.runs(RUNS_SEARCHED)? {
        if has(r.id)? {
            return Ok(r.id);
        }
    }
    Err(Error::Input(format!(
        "no recorded run built {package}: run `comb build {package}` first"
    )))
}

/// The description behind `key`: a recorded node's, or a failed attempt's.
fn description_of(index: &Index, key: &str) -> Result<Option<Previous>> {
    if let Some(n) = index.node(key)? {
        return Ok(Some(Previous {
            key: key.to_string(),
            description: n.description,
            failed: false,
        }));
    }
    Ok(index.attempt(key)?.map(|a| Previous {
        key: key.to_string(),
        description: a.description,
        failed: true,
    }))
}

/// The stages of `package` in `run`, each with why it was not a hit;
/// `binaries` maps a binary package to the recipe that builds it.
pub fn explain(
    index: &Index,
    package: &str,
    run: RunId,
    binaries: &HashMap<String, String>,
) -> Result<PackageWhy> {
    explain_events(index, package, run, &index.events(run)?, binaries)
}

/// [`explain`] with the run's events already read.
pub fn explain_events(
    index: &Index,
    package: &str,
    run: RunId,
    events: &[comb_cache::Event],
    binaries: &HashMap<String, String>,
) -> Result<PackageWhy> {
    let own = [
        package.to_string(),
        format!("pkg-env:{package}"),
        format!("source:{package}"),
    ];
    let shared = |kind: NodeKind| {
        matches!(
            kind,
            NodeKind::Index | NodeKind::BaseInstall | NodeKind::BaseBuild
        )
    };
    let shared_resolve = |e: &comb_cache::Event| {
        e.kind == NodeKind::Resolve && (e.name == "base-install" || e.name == "base-build")
    };
    let by_key: HashMap<&str, (NodeKind, &str)> = events
        .iter()
        .filter(|e| !e.node_key.is_empty())
        .map(|e| (e.node_key.as_str(), (e.kind, e.name.as_str())))
        .collect();
    let mut stages = Vec::new();
    for e in events {
        let mine = own.contains(&e.name) && (e.kind != NodeKind::Build || e.name == package);
        if !(mine || shared(e.kind) || shared_resolve(e)) {
            continue;
        }
        let mut reasons = Vec::new();
        let mut error = None;
        match e.status {
            // Its event's reason names the cache and the writer.
            EventStatus::Hit | EventStatus::Fetched => {}
            EventStatus::Skipped => error = e.reason.clone(),
            EventStatus::Built | EventStatus::Failed => {
                if e.status == EventStatus::Failed {
                    error = e.reason.clone();
                }
                let current = if e.node_key.is_empty() {
                    None
                } else {
                    description_of(index, &e.node_key)?
                };
                match (&current, &e.previous_key) {
                    (Some(current), Some(previous_key)) => {
                        let previous = description_of(index, previous_key)?;
                        reasons = match previous {
                            Some(p) => {
                                miss_reasons(e.kind, &e.node_key, &current.description, Some(&p))
                                    .map_err(|e| {
                                        Error::Environment(format!("comparing descriptions: {e}"))
                                    })?
                            }
                            None => vec![MissReason::NoLongerRecorded {
                                key: previous_key.clone(),
                            }],
                        };
                    }
                    // The engine names a previous node whenever there was one.
                    (Some(_), None) => reasons = vec![MissReason::FirstBuild],
                    // Recorded without its description: the reason as written.
                    (None, _) => {
                        if e.status == EventStatus::Built {
                            if let Some(text) = &e.reason {
                                reasons = vec![MissReason::Recorded { text: text.clone() }];
                            }
                        }
                    }
                }
                for r in &mut reasons {
                    match r {
                        MissReason::Upstream {
                            new: Some(new),
                            node,
                            ..
                        } => {
                            *node = by_key
                                .get(new.as_str())
                                .map(|(k, n)| (*k, n.to_string()))
                                .or(index.node(new)?.map(|n| (n.kind, n.name)));
                        }
                        MissReason::BuildDependency {
                            package, recipe, ..
                        } => {
                            *recipe = binaries.get(package.as_str()).cloned();
                        }
                        _ => {}
                    }
                }
            }
        }
        stages.push(StageWhy {
            stage: e.kind,
            name: e.name.clone(),
            key: e.node_key.clone(),
            status: e.status,
            duration_ms: e.duration_ms,
            reasons,
            error,
            log: e.log.clone(),
            limits: None,
            from_repository: Vec::new(),
            worker: e.worker.clone(),
        });
    }
    // In pipeline order (hits are recorded in batches, after the builds).
    stages.sort_by_key(|s| pipeline_rank(s.stage, &s.name));
    let cycles_cut = cuts_of(index, run)?
        .into_iter()
        .filter(|c| c.from == package || c.to == package)
        .collect();
    Ok(PackageWhy {
        package: package.to_string(),
        run,
        stages,
        cycles_cut,
    })
}

/// Where a stage comes in a package's pipeline.
fn pipeline_rank(stage: NodeKind, name: &str) -> u8 {
    match (stage, name) {
        (NodeKind::Index, _) => 0,
        (NodeKind::Resolve, n) if n.starts_with("source:") => 1,
        (NodeKind::Resolve, "base-install") => 2,
        (NodeKind::Fetch, _) => 3,
        (NodeKind::BaseInstall, _) => 4,
        (NodeKind::Resolve, "base-build") => 5,
        (NodeKind::BaseBuild, _) => 6,
        (NodeKind::Resolve, _) => 7,
        (NodeKind::PkgEnv, _) => 8,
        (NodeKind::Build, _) => 9,
    }
}

/// Which recipe built each binary package in `run`, from the manifests
/// of the run's build nodes.
pub fn binaries_of_run(
    store: &Store,
    index: &Index,
    run: RunId,
) -> Result<HashMap<String, String>> {
    let mut binaries = HashMap::new();
    for e in index.events(run)? {
        if e.kind != NodeKind::Build || e.node_key.is_empty() {
            continue;
        }
        let Some(manifest) = manifest_of(store, index, &e.node_key)? else {
            continue;
        };
        for deb in manifest.debs {
            binaries.insert(deb.name, e.name.clone());
        }
    }
    Ok(binaries)
}

/// Fills in the limits each built build stage of `w` ran under.
pub fn limits_of(store: &Store, index: &Index, w: &mut PackageWhy) -> Result<()> {
    for s in &mut w.stages {
        if s.stage == NodeKind::Build && s.status == EventStatus::Built {
            s.limits = manifest_of(store, index, &s.key)?
                .and_then(|m| m.confinement)
                .map(|c| c.describe());
        }
    }
    Ok(())
}

/// Fills in, for the resolve stage of the package's environment, the
/// packages it installs from the repository's own builds (name and
/// version), each with the base's copy it replaces where there was one.
pub fn repository_packages_of(store: &Store, index: &Index, w: &mut PackageWhy) -> Result<()> {
    for s in &mut w.stages {
        if s.stage != NodeKind::Resolve || !s.name.starts_with("pkg-env:") || s.key.is_empty() {
            continue;
        }
        let Some(node) = index.node(&s.key)? else {
            continue;
        };
        let NodeOutput::Blob(digest) = &node.output else {
            continue;
        };
        let Ok(file) = store.open_blob(digest) else {
            continue;
        };
        let installed: Vec<comb_distro::aptbox::Resolved> =
            serde_json::from_reader(std::io::BufReader::new(file))
                .map_err(|e| Error::Environment(format!("reading the resolution {digest}: {e}")))?;
        let Some(inputs) = read_as::<BuildDepsInputs>(&node.description) else {
            continue;
        };
        let replaces = inputs.replaces.unwrap_or_default();
        for r in installed {
            let package = PackageArch {
                name: r.name.clone(),
                architecture: r.architecture.clone(),
            };
            let ours = inputs
                .local
                .get(&package)
                .is_some_and(|l| l.version == r.version && l.sha256.hex() == r.sha256);
            if !ours {
                continue;
            }
            s.from_repository.push(match replaces.get(&package) {
                Some(change) => format!(
                    "{} {} (replaces the base's {})",
                    r.name, r.version, change.base
                ),
                None => format!("{} {}", r.name, r.version),
            });
        }
    }
    Ok(())
}

/// The manifest a build node recorded, if the node and its blob are there.
pub fn manifest_of(store: &Store, index: &Index, key: &str) -> Result<Option<Manifest>> {
    let Some(node) = index.node(key)? else {
        return Ok(None);
    };
    let NodeOutput::Blob(digest) = node.output else {
        return Ok(None);
    };
    let Ok(file) = store.open_blob(&digest) else {
        return Ok(None);
    };
    serde_json::from_reader(std::io::BufReader::new(file))
        .map(Some)
        .map_err(|e| Error::Environment(format!("reading the manifest {digest}: {e}")))
}

/// The stored log of `package`'s stage `stage` in `run`: a failed node's,
/// or a built build node's. `None` when none is stored.
pub fn log_of(
    store: &Store,
    index: &Index,
    package: &str,
    run: RunId,
    stage: NodeKind,
) -> Result<Option<String>> {
    let name = match stage {
        NodeKind::Build => package.to_string(),
        NodeKind::PkgEnv | NodeKind::Resolve => format!("pkg-env:{package}"),
        other => other.as_str().to_string(),
    };
    let events = index.events(run)?;
    let Some(event) = events
        .iter()
        .rev()
        .find(|e| e.kind == stage && e.name == name)
    else {
        return Ok(None);
    };
    if let Some(log) = &event.log {
        return crate::logs::read(store, log).map(Some);
    }
    if stage == NodeKind::Build && !event.node_key.is_empty() {
        if let Some(manifest) = manifest_of(store, index, &event.node_key)? {
            return crate::logs::read(store, &manifest.log).map(Some);
        }
    }
    Ok(None)
}

/// The edges `run` cut out of cycles.
pub(crate) fn cuts_of(index: &Index, run: RunId) -> Result<Vec<comb_recipes::CutEdge>> {
    match index.run_cuts(run)? {
        None => Ok(Vec::new()),
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| Error::Environment(format!("reading the cut edges of run {run}: {e}"))),
    }
}
