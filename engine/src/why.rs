//! Why a node was built: every input that differs from the node it was
//! compared with (the one the previous run used, or its last failed
//! attempt), as [`MissReason`]s, in the spirit of cargo's `DirtyReason`.
//! The engine records the comparison when it builds ([`miss_reasons`]);
//! `comb why` reads it back for a package's stages ([`explain`]) and
//! follows a reason that points upstream to that node's own reasons.

use crate::build::Manifest;
use crate::error::{Error, Result};
use comb_cache::{
    diff_descriptions, parse_description, Change, EventStatus, Index, NodeKind, NodeOutput, RunId,
    Store,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// The node a miss is compared with.
#[derive(Debug, Clone)]
pub struct Previous {
    pub key: String,
    pub description: String,
    /// It is a failed attempt, not a recorded node.
    pub failed: bool,
}

/// One reason a node was not a hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum MissReason {
    /// Nothing of this stage and name was recorded before.
    FirstBuild,
    /// The previous attempt failed (with the same inputs, if nothing else
    /// is listed).
    PreviousFailed,
    /// The same inputs were built before, but the output is gone.
    OutputGone,
    /// A source file was added, removed or changed.
    SourceFile {
        path: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// The recipe's build script changed.
    Script { diff: String },
    /// Another input from the recipe changed: its version, outputs, build
    /// requirements.
    Recipe {
        field: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// A build dependency built by this repository changed (or came or
    /// went). Values are `VERSION sha256:HEX`.
    BuildDependency {
        package: String,
        /// The recipe that builds it, where known.
        recipe: Option<String>,
        old: Option<String>,
        new: Option<String>,
    },
    /// A package of an environment layer changed version, came or went.
    /// Values are `VERSION sha256:HEX`.
    Package {
        /// The layer's stage: `base-install`, `base-build`, `pkg-env`.
        layer: String,
        package: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// A node this one is built on changed: see its own reasons.
    Upstream {
        /// The input naming it: `env` (a build's environment), `below` (a
        /// layer's), `status` (the packages installed below a resolution).
        input: String,
        old: Option<String>,
        new: Option<String>,
        /// The node, where `comb why` found it: stage and name.
        node: Option<(NodeKind, String)>,
    },
    /// The pinned distribution snapshot changed.
    Snapshot {
        old: Option<String>,
        new: Option<String>,
    },
    /// comb's way of making this stage changed.
    Builder {
        old: Option<String>,
        new: Option<String>,
    },
    /// Any other input.
    Other {
        input: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// Recorded before comb kept what a miss was compared with: the reason
    /// as it was written then.
    Recorded { text: String },
}

/// `blake3:3f2a…`: an algorithm and the first hex digits of a digest; any
/// other value as it is.
fn short(value: &str) -> String {
    let (prefix, rest) = match value.strip_prefix("x ") {
        Some(rest) => ("x ", rest),
        None => ("", value),
    };
    match rest.split_once(':') {
        Some((alg, hex)) if hex.len() >= 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            format!("{prefix}{alg} {}…", &hex[..4])
        }
        _ if rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()) => {
            format!("{}…", &rest[..4])
        }
        _ => value.to_string(),
    }
}

/// `VERSION sha256:HEX` split into the version and a short digest.
fn version_and_output(value: &str) -> (&str, String) {
    match value.split_once(' ') {
        Some((version, digest)) => (version, short(digest)),
        None => (value, String::new()),
    }
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("(none)")
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissReason::FirstBuild => write!(f, "first build of this node"),
            MissReason::PreviousFailed => write!(f, "previous build failed"),
            MissReason::OutputGone => write!(f, "its previous output is gone from the store"),
            MissReason::SourceFile { path, old, new } => match (old, new) {
                (Some(o), Some(n)) => {
                    write!(
                        f,
                        "source file {path} changed ({} → {})",
                        short(o),
                        short(n)
                    )
                }
                (None, _) => write!(f, "source file {path} added"),
                (_, None) => write!(f, "source file {path} removed"),
            },
            MissReason::Script { diff } => {
                write!(f, "recipe build.script changed:")?;
                for line in diff.lines() {
                    write!(f, "\n    {line}")?;
                }
                Ok(())
            }
            MissReason::Recipe { field, old, new } => {
                write!(f, "recipe {field} changed: {} → {}", opt(old), opt(new))
            }
            MissReason::BuildDependency {
                package,
                recipe,
                old,
                new,
            } => {
                let from = recipe
                    .as_deref()
                    .map(|r| format!("{r} "))
                    .unwrap_or_default();
                match (old, new) {
                    (Some(o), Some(n)) => {
                        let (ov, od) = version_and_output(o);
                        let (nv, nd) = version_and_output(n);
                        if recipe.is_some() {
                            write!(f, "build dependency {package} now comes from {from}{nv} (output {od} → {nd})")?;
                        } else {
                            write!(f, "build dependency {package} changed: {ov} → {nv} (output {od} → {nd})")?;
                        }
                        if ov != nv && recipe.is_some() {
                            write!(f, ", was {ov}")?;
                        }
                        Ok(())
                    }
                    (None, Some(n)) => write!(
                        f,
                        "build dependency {package} added: {from}{}",
                        version_and_output(n).0
                    ),
                    (Some(o), None) => write!(
                        f,
                        "build dependency {package} removed (was {from}{})",
                        version_and_output(o).0
                    ),
                    (None, None) => write!(f, "build dependency {package} changed"),
                }
            }
            MissReason::Package {
                layer,
                package,
                old,
                new,
            } => match (old, new) {
                (Some(o), Some(n)) => {
                    let (ov, od) = version_and_output(o);
                    let (nv, nd) = version_and_output(n);
                    if ov == nv {
                        write!(f, "{layer} changed: {package} {nv} (output {od} → {nd})")
                    } else {
                        write!(f, "{layer} changed: {package} {ov} → {nv}")
                    }
                }
                (None, Some(n)) => write!(
                    f,
                    "{layer} changed: {package} {} added",
                    version_and_output(n).0
                ),
                (Some(o), None) => write!(
                    f,
                    "{layer} changed: {package} {} removed",
                    version_and_output(o).0
                ),
                (None, None) => write!(f, "{layer} changed: {package}"),
            },
            MissReason::Upstream {
                input,
                old,
                new,
                node,
            } => {
                let what = match input.as_str() {
                    "env" => "its build environment",
                    "below" => "the layer below",
                    "status" => "the packages installed below",
                    other => other,
                };
                write!(f, "{what} changed")?;
                if let Some((stage, name)) = node {
                    write!(f, ": {stage} {name}")?;
                }
                write!(f, " ({} → {})", short(opt(old)), short(opt(new)))
            }
            MissReason::Snapshot { old, new } => write!(
                f,
                "the distribution snapshot changed ({} → {})",
                short(opt(old)),
                short(opt(new))
            ),
            MissReason::Builder { old, new } => {
                write!(f, "comb's builder changed ({} → {})", opt(old), opt(new))
            }
            MissReason::Other { input, old, new } => {
                write!(f, "input {input} changed: {} → {}", opt(old), opt(new))
            }
            MissReason::Recorded { text } => f.write_str(text),
        }
    }
}

/// The reasons a node whose description is `new` (key `key`) of stage
/// `stage` was not a hit, against `previous`.
pub fn miss_reasons(
    stage: NodeKind,
    key: &str,
    new: &str,
    previous: Option<&Previous>,
) -> Result<Vec<MissReason>> {
    let Some(previous) = previous else {
        return Ok(vec![MissReason::FirstBuild]);
    };
    let mut reasons = Vec::new();
    if previous.failed {
        reasons.push(MissReason::PreviousFailed);
    }
    if previous.key == key {
        if !previous.failed {
            reasons.push(MissReason::OutputGone);
        }
        return Ok(reasons);
    }
    let bad = |e: comb_cache::DescriptionError| {
        Error::Environment(format!("comparing descriptions: {e}"))
    };
    let changes = diff_descriptions(&previous.description, new).map_err(bad)?;
    let old_inputs = parse_description(&previous.description).map_err(bad)?;
    let new_inputs = parse_description(new).map_err(bad)?;
    reasons.extend(reasons_of(stage, &changes, &old_inputs, &new_inputs));
    Ok(reasons)
}

/// The inputs that are lists (`key.0`, `key.1`, …), as the stages write
/// them (`Description::list`): one change each.
const LISTS: [&str; 4] = ["requires", "names", "outputs", "components"];

/// `changes` in words; lists are read whole from the two descriptions'
/// inputs.
fn reasons_of(
    stage: NodeKind,
    changes: &[Change],
    old_inputs: &[(String, String)],
    new_inputs: &[(String, String)],
) -> Vec<MissReason> {
    let mut reasons = Vec::new();
    let mut lists: BTreeMap<&str, ()> = BTreeMap::new();
    for c in changes {
        let (head, sub) = match c.key.split_once('.') {
            Some((h, s)) => (h, Some(s)),
            None => (c.key.as_str(), None),
        };
        let head = head.trim_end_matches('#');
        if c.key.ends_with('#') || LISTS.contains(&head) {
            // Counts say nothing the entries do not; lists are one change.
            if LISTS.contains(&head) {
                lists.insert(head, ());
            }
            continue;
        }
        let (old, new) = (c.old.clone(), c.new.clone());
        reasons.push(match (head, sub) {
            ("builder" | "recipe", None) => MissReason::Builder { old, new },
            ("index", None) => MissReason::Snapshot { old, new },
            ("source", Some(path)) => MissReason::SourceFile {
                path: path.to_string(),
                old,
                new,
            },
            ("script", None) => MissReason::Script {
                diff: line_diff(old.as_deref().unwrap_or(""), new.as_deref().unwrap_or("")),
            },
            ("env" | "below" | "status", None) => MissReason::Upstream {
                input: head.to_string(),
                old,
                new,
                node: None,
            },
            ("local", Some(package)) => MissReason::BuildDependency {
                package: without_arch(package),
                recipe: None,
                old,
                new,
            },
            ("packages", Some(package)) => MissReason::Package {
                layer: stage.as_str().to_string(),
                package: without_arch(package),
                old,
                new,
            },
            // The index node's fields are the lock's, not a recipe's.
            _ if stage == NodeKind::Index => MissReason::Other {
                input: c.key.clone(),
                old,
                new,
            },
            ("version" | "name" | "kind" | "architecture", None) => MissReason::Recipe {
                field: head.to_string(),
                old,
                new,
            },
            _ => MissReason::Other {
                input: c.key.clone(),
                old,
                new,
            },
        });
    }
    for list in lists.keys() {
        // Entries come in order (`key.0`, `key.1`, …).
        let entries = |inputs: &[(String, String)]| -> Option<String> {
            let items: Vec<&str> = inputs
                .iter()
                .filter(|(k, _)| k.split_once('.').is_some_and(|(h, _)| h == *list))
                .map(|(_, v)| v.as_str())
                .collect();
            let present = inputs.iter().any(|(k, _)| k == &format!("{list}#"));
            present.then(|| items.join(", "))
        };
        let (old, new) = (entries(old_inputs), entries(new_inputs));
        let field = match *list {
            "requires" => "build.requires",
            other => other,
        }
        .to_string();
        // As above: the index node's lists are the lock's.
        reasons.push(if stage == NodeKind::Index {
            MissReason::Other {
                input: field,
                old,
                new,
            }
        } else {
            MissReason::Recipe { field, old, new }
        });
    }
    reasons
}

/// `libgreet-dev:amd64` → `libgreet-dev`.
fn without_arch(package: &str) -> String {
    package.split(':').next().unwrap_or(package).to_string()
}

/// A short line diff: removed lines as `- …`, added ones as `+ …`, in
/// order (a longest common subsequence keeps the rest out).
pub fn line_diff(old: &str, new: &str) -> String {
    const MAX_LINES: usize = 400;
    let a: Vec<&str> = old.lines().take(MAX_LINES).collect();
    let b: Vec<&str> = new.lines().take(MAX_LINES).collect();
    // lcs[i][j]: common subsequence length of a[i..] and b[j..].
    let mut lcs = vec![vec![0u16; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    out.join("\n")
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
}

/// What `comb why PKG` prints: the package's stages in one run.
#[derive(Debug, Clone, Serialize)]
pub struct PackageWhy {
    pub package: String,
    pub run: RunId,
    pub stages: Vec<StageWhy>,
}

/// How many runs back `comb why` and `comb log` look for a package.
const RUNS_SEARCHED: usize = 200;

/// The newest run (of the last [`RUNS_SEARCHED`]) with a build event of
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
            EventStatus::Hit => {}
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
                                miss_reasons(e.kind, &e.node_key, &current.description, Some(&p))?
                            }
                            None => vec![MissReason::Recorded {
                                text: format!(
                                    "compared with {}, which is no longer recorded",
                                    short(previous_key)
                                ),
                            }],
                        };
                    }
                    (Some(_), None)
                        if e.reason.is_none()
                            || e.reason.as_deref() == Some("first build of this node") =>
                    {
                        reasons = vec![MissReason::FirstBuild];
                    }
                    _ => {
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
        });
    }
    // In pipeline order (hits are recorded in batches, after the builds).
    stages.sort_by_key(|s| pipeline_rank(s.stage, &s.name));
    Ok(PackageWhy {
        package: package.to_string(),
        run,
        stages,
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
        let mut local = HashMap::new();
        let mut replaced = HashMap::new();
        for (key, value) in comb_cache::parse_description(&node.description)? {
            if let Some(package) = key.strip_prefix("local.") {
                local.insert(package.to_string(), value);
            } else if let Some(package) = key.strip_prefix("replaces.") {
                let base = value.split(" -> ").next().unwrap_or_default().to_string();
                replaced.insert(package.to_string(), base);
            }
        }
        for r in installed {
            let package = format!("{}:{}", r.name, r.architecture);
            let ours = format!("{} sha256:{}", r.version, r.sha256);
            if local.get(&package) != Some(&ours) {
                continue;
            }
            s.from_repository.push(match replaced.get(&package) {
                Some(base) => format!("{} {} (replaces the base's {base})", r.name, r.version),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_diff_shows_what_came_and_went() {
        assert_eq!(line_diff("a\nb\nc\n", "a\nx\nc\n"), "- b\n+ x");
        assert_eq!(line_diff("", "echo hi"), "+ echo hi");
        assert_eq!(line_diff("same", "same"), "");
    }

    #[test]
    fn digests_are_shortened_in_words() {
        let a = format!("blake3:{}", "3f2a".repeat(16));
        let b = format!("x blake3:{}", "9c1d".repeat(16));
        let r = MissReason::SourceFile {
            path: "src/greet.c".into(),
            old: Some(a),
            new: Some(b),
        };
        assert_eq!(
            r.to_string(),
            "source file src/greet.c changed (blake3 3f2a… → x blake3 9c1d…)"
        );
        let dep = MissReason::BuildDependency {
            package: "libgreet-dev".into(),
            recipe: Some("libgreet".into()),
            old: Some(format!("1.0-1 sha256:{}", "51e0".repeat(16))),
            new: Some(format!("1.1-1 sha256:{}", "a7b3".repeat(16))),
        };
        assert_eq!(
            dep.to_string(),
            "build dependency libgreet-dev now comes from libgreet 1.1-1 (output sha256 51e0… → sha256 a7b3…), was 1.0-1"
        );
    }

    #[test]
    fn list_changes_are_one_reason_and_counts_none() {
        let changes = vec![
            Change {
                key: "requires#".into(),
                old: Some("1".into()),
                new: Some("2".into()),
            },
            Change {
                key: "requires.1".into(),
                old: None,
                new: Some("libfoo-dev".into()),
            },
        ];
        let old = [
            ("requires#".into(), "1".into()),
            ("requires.0".into(), "make".into()),
        ];
        let new = [
            ("requires#".into(), "2".into()),
            ("requires.0".into(), "make".into()),
            ("requires.1".into(), "libfoo-dev".into()),
        ];
        assert_eq!(
            reasons_of(NodeKind::Resolve, &changes, &old, &new),
            vec![MissReason::Recipe {
                field: "build.requires".into(),
                old: Some("make".into()),
                new: Some("make, libfoo-dev".into()),
            }]
        );
    }

    #[test]
    fn the_index_nodes_fields_are_the_locks_not_a_recipes() {
        let changes = vec![
            Change {
                key: "components#".into(),
                old: Some("1".into()),
                new: Some("2".into()),
            },
            Change {
                key: "components.1".into(),
                old: None,
                new: Some("contrib".into()),
            },
            Change {
                key: "architecture".into(),
                old: Some("amd64".into()),
                new: Some("arm64".into()),
            },
        ];
        let old = [
            ("components#".into(), "1".into()),
            ("components.0".into(), "main".into()),
        ];
        let new = [
            ("components#".into(), "2".into()),
            ("components.0".into(), "main".into()),
            ("components.1".into(), "contrib".into()),
        ];
        let reasons = reasons_of(NodeKind::Index, &changes, &old, &new);
        let text: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            text,
            [
                "input architecture changed: amd64 → arm64",
                "input components changed: main → main, contrib",
            ]
        );
    }
}
