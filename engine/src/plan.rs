//! Plans: what `comb build` (or `comb check`) would build and why, in what
//! order, without building (`--dry-run`).
//!
//! A plan runs the engine opened to plan ([`Engine::open_planning`]): every
//! node is looked up as a run would look it up, with the same keys; a
//! resolve that misses is computed in memory (it is cheap, and what
//! follows is keyed by its answer); any other node that misses is not
//! built but reported, with the reason a build would give. Nothing is
//! recorded and no run is begun.
//!
//! Every package's build dependencies are also resolved by comb's
//! resolver against the base environment (its layers' dpkg status if they
//! are built, else what they would hold), all at once and in parallel,
//! so that a plan names the packages that cannot build because their
//! build dependencies cannot be satisfied, whatever they wait for. Their
//! dependencies on the repository's own packages are resolved against
//! the snapshot's binaries of the same names.

use crate::build::{self, BuildRequest};
use crate::engine::Engine;
use crate::error::{Error, Result, WouldBuild};
use crate::scheduler::JobState;
use crate::snapshot::Pinned;
use comb_recipes::{CutEdge, Recipe, Repository};
use rayon::prelude::*;
use std::collections::HashMap;
use std::time::Instant;

/// What a run would do.
#[derive(Debug, serde::Serialize)]
pub struct Plan {
    /// The packages, in build order.
    pub packages: Vec<PlannedPackage>,
    /// The base layers that would be built first (none if they are).
    pub base: Vec<WouldBuild>,
    /// Whether the base layers are built (else the resolution is against
    /// what they would hold).
    pub base_built: bool,
    /// The edges cut out of build-dependency cycles.
    pub cycles_cut: Vec<CutEdge>,
    /// How long resolving every package's build dependencies took.
    pub resolve_ms: u64,
    /// How long the whole plan took.
    pub plan_ms: u64,
}

/// One package of a plan.
#[derive(Debug, serde::Serialize)]
pub struct PlannedPackage {
    pub name: String,
    /// The version it would build (empty if the recipe gives none).
    pub version: String,
    pub action: Action,
    /// For `build`: the first stage that would be built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Why: what changed (for `build`), what it waits for (`after`), the
    /// resolver's explanation (`unsatisfiable`), the error (`failed`).
    pub reason: String,
}

/// What a run would do with a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Built already: the run finds it.
    Cached,
    /// It would be built (from `stage` on).
    Build,
    /// It would be built after what it needs, which would be built first
    /// (so its own keys are not known yet).
    After,
    /// Its build dependencies cannot be satisfied: the run would fail it.
    Unsatisfiable,
    /// Planning it failed (a bad recipe, a missing source file).
    Failed,
    /// Its `debian` source builds nothing for this architecture (its
    /// `Architecture` names others): left out, as a buildd leaves it.
    Elsewhere,
}

impl Plan {
    /// How many packages would take `action`.
    pub fn count(&self, action: Action) -> usize {
        self.packages.iter().filter(|p| p.action == action).count()
    }
}

/// Plan `request` on `engine`, which must be opened to plan.
pub fn plan(
    engine: &Engine,
    pinned: &Pinned,
    repo: &Repository,
    request: &BuildRequest,
) -> Result<Plan> {
    if !engine.planning() {
        return Err(Error::Environment(
            "a plan needs an engine opened to plan (Engine::open_planning)".into(),
        ));
    }
    let started = Instant::now();
    let sources = build::debian_sources(engine, pinned, repo)?;
    let graph = build::package_graph(engine, pinned, repo, &sources)?;
    let (_, wanted) = build::wanted_packages(&graph, request)?;
    let recipes: HashMap<&str, &Recipe> =
        repo.recipes.iter().map(|r| (r.name.as_str(), r)).collect();

    // Every package's build dependencies, against the base.
    let (installed, base_built) = crate::env::planned_base(engine, pinned)?;
    let universe = pinned.universe()?;
    let arch = pinned.lock.architecture.as_str();
    let local = unknown_binaries(
        &graph,
        &wanted,
        &sources,
        &recipes,
        pinned.binary_sources()?,
    )?;
    let system = comb_distro::solver::System::new(universe, installed, local, false);
    let resolving = Instant::now();
    let elsewhere = |name: &str| sources.get(name).is_some_and(|s| !s.builds_on(arch));
    let unmet: Vec<Option<String>> = wanted
        .par_iter()
        .map(|name| {
            if elsewhere(name) {
                return None;
            }
            let recipe = recipes.get(name.as_str())?;
            let request = build::requirements(recipe, sources.get(name.as_str()), arch);
            system
                .resolve(&request)
                .err()
                .map(|e| e.to_string().trim_end().to_string())
        })
        .collect();
    let resolve_ms = resolving.elapsed().as_millis() as u64;

    // What a run would find and build. The base first: if it would be
    // built, everything waits for it.
    let states: HashMap<String, JobState<std::sync::Arc<build::Built>>> = if base_built {
        let run = BuildRequest {
            keep_going: true,
            ..request.clone()
        };
        build::build(engine, pinned, repo, &run)?
            .into_iter()
            .map(|r| (r.name, r.state))
            .collect()
    } else {
        HashMap::new()
    };
    let would_build = engine.would_build();
    let base: Vec<WouldBuild> = would_build
        .iter()
        .filter(|w| w.stage == "base-install" || w.stage == "base-build")
        .cloned()
        .collect();
    let packages = wanted
        .iter()
        .zip(unmet)
        .map(|(name, unmet)| {
            let version = match sources.get(name.as_str()) {
                Some(s) => s.version.to_string(),
                None => recipes
                    .get(name.as_str())
                    .and_then(|r| r.version.clone())
                    .unwrap_or_default(),
            };
            let (action, stage, reason) = match (unmet, states.get(name)) {
                _ if elsewhere(name) => (
                    Action::Elsewhere,
                    None,
                    format!(
                        "it builds only for {}",
                        sources
                            .get(name.as_str())
                            .map(|s| s.architecture.join(" "))
                            .unwrap_or_default()
                    ),
                ),
                (_, Some(JobState::Done(_))) => (Action::Cached, None, String::new()),
                (Some(why), _) => (Action::Unsatisfiable, None, why),
                (None, _) if !base_built => (
                    Action::After,
                    None,
                    format!("the base environment ({})", stages(&base)),
                ),
                (None, Some(JobState::Skipped { because })) => {
                    // What it waits for: what it needs that is not built.
                    let waits: Vec<&str> = graph
                        .dependencies(name)
                        .iter()
                        .filter(|d| !matches!(states.get(d.as_str()), Some(JobState::Done(_))))
                        .map(String::as_str)
                        .collect();
                    let reason = if waits.is_empty() {
                        because.clone()
                    } else {
                        waits.join(", ")
                    };
                    (Action::After, None, reason)
                }
                (None, Some(JobState::Failed(message))) => {
                    // The node it stopped at: its own, or one it waits for
                    // (a layer other packages share).
                    let stopped_at = would_build.iter().find(|w| {
                        owned_by(w, name)
                            || message
                                .starts_with(&format!("{} {} would be built", w.stage, w.name))
                    });
                    match stopped_at {
                        Some(w) => (Action::Build, Some(w.stage.to_string()), w.reason.clone()),
                        None => (Action::Failed, None, message.clone()),
                    }
                }
                (None, None) => (Action::Failed, None, "not planned".to_string()),
            };
            PlannedPackage {
                name: name.clone(),
                version,
                action,
                stage,
                reason,
            }
        })
        .collect();
    Ok(Plan {
        packages,
        base,
        base_built,
        cycles_cut: graph.cut_edges().to_vec(),
        resolve_ms,
        plan_ms: started.elapsed().as_millis() as u64,
    })
}

/// The binaries the repository's recipes build that the snapshot does
/// not have, as packages for the resolver: at the recipe's version, with
/// no relations (their own build is planned with them).
fn unknown_binaries(
    graph: &comb_recipes::PackageGraph,
    wanted: &[String],
    sources: &HashMap<&str, comb_distro::SourcePackage>,
    recipes: &HashMap<&str, &Recipe>,
    snapshot: &HashMap<String, String>,
) -> Result<Vec<comb_distro::BinaryPackage>> {
    let mut index = String::new();
    for name in wanted {
        let Some(node) = graph.node(name) else {
            continue;
        };
        let version = match sources.get(name.as_str()) {
            Some(s) => s.version.to_string(),
            None => recipes
                .get(name.as_str())
                .and_then(|r| r.version.clone())
                .unwrap_or_else(|| "0".into()),
        };
        for binary in &node.binaries {
            if !snapshot.contains_key(binary) {
                index.push_str(&format!(
                    "Package: {binary}\nVersion: {version}\nArchitecture: all\n\
                     Filename: ./{binary}.deb\nSize: 0\nSHA256: {}\n\n",
                    "0".repeat(64)
                ));
            }
        }
    }
    Ok(comb_distro::parse_packages(
        &index,
        "the repository's recipes",
    )?)
}

/// Whether the node `w` is one of package `name`'s own (its build, its
/// environment, its source).
fn owned_by(w: &WouldBuild, name: &str) -> bool {
    w.name == name || w.name.rsplit_once(':').is_some_and(|(_, n)| n == name)
}

fn stages(base: &[WouldBuild]) -> String {
    let names: Vec<&str> = base.iter().map(|w| w.stage).collect();
    format!("{} would be built first", names.join(" and "))
}
