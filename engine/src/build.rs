//! The `build` stage and the whole-repository run: every recipe is a job of
//! the scheduler; its environment is a pkg-env over base-build holding its
//! build dependencies (from the snapshot, or the outputs of other recipes),
//! and its key holds those dependencies' *output* digests, so a dependency
//! rebuilt to the same bytes leaves it a hit (early cutoff).

use crate::engine::{Engine, Made};
use crate::env::{self, Layer};
use crate::error::{Error, Result};
use crate::executor::{Action, ActionInput, Executor, LocalSandbox};
use crate::inputs::{
    shortcut_key, BuildInputs, EnvOriginInputs, FileHash, Hex, NodeKey, SourceChoiceInputs,
    SourceEntry, SourceKind, Wanted,
};
pub use crate::manifest::{BuiltDeb, Manifest};
use crate::native;
use crate::remote_exec::RemoteExecutor;
use crate::scheduler::{self, JobState};
use crate::snapshot::Pinned;
use crate::source;
use crate::vary::{self, Variations};
use comb_cache::{Digest, Event, EventStatus, Hash, NodeKind, NodeOutput, Sha256};
use comb_distro::SourcePackage;
use comb_recipes::{Recipe, Repository, Source, SourceFacts};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Changes when the way packages are built changes.
const BUILDER: &str = "comb-build-4";

pub use crate::native::NATIVE_SOURCE_DATE_EPOCH;

/// [`BUILDER`] and the packaging script native packages go through, so a
/// change to either rebuilds them; made once (every recipe's key holds it).
fn builder() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let script = blake3::hash(comb_distro::policy::PACKAGING_SCRIPT.as_bytes());
        format!("{BUILDER} packaging {}", &script.to_hex()[..16])
    })
}

/// How a package ended in a run.
#[derive(Debug, Clone)]
pub struct PackageResult {
    pub name: String,
    pub state: JobState<Arc<Built>>,
}

/// A package built or found: its manifest is read when first asked for
/// (a run that changes nothing needs none of them).
#[derive(Debug)]
pub struct Built {
    /// The manifest blob.
    pub digest: Digest,
    manifest: std::sync::OnceLock<Manifest>,
    /// A digest of its outputs and of everything it needed, directly or
    /// not: its dependents' shortcuts hold it.
    outputs: blake3::Hash,
}

impl Built {
    /// The packages and log of the build.
    pub fn manifest(&self, engine: &Engine) -> Result<&Manifest> {
        if let Some(m) = self.manifest.get() {
            return Ok(m);
        }
        let read: Manifest = serde_json::from_reader(std::io::BufReader::new(
            engine.store.open_blob(&self.digest)?,
        ))
        .map_err(|e| Error::Environment(format!("reading the manifest {}: {e}", self.digest)))?;
        Ok(self.manifest.get_or_init(|| read))
    }
}

/// The packages of every build of `name` the index still records (most
/// recently used first) whose manifest is in the store. Nothing is built.
pub fn recorded_builds(engine: &Engine, name: &str) -> Result<Vec<Manifest>> {
    let nodes = engine
        .index()
        .nodes_named(NodeKind::Build, name, usize::MAX)?;
    let mut manifests = Vec::new();
    for node in nodes {
        let comb_cache::NodeOutput::Blob(digest) = node.output else {
            continue;
        };
        if engine.store.blob_path(&digest).is_none() {
            continue;
        }
        let manifest =
            serde_json::from_reader(std::io::BufReader::new(engine.store.open_blob(&digest)?))
                .map_err(|e| Error::Environment(format!("reading the manifest {digest}: {e}")))?;
        manifests.push(manifest);
    }
    Ok(manifests)
}

/// What `comb build` was asked for.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// Recipes to build (with what they need); empty means all.
    pub packages: Vec<String>,
    pub jobs: usize,
    pub keep_going: bool,
}

/// Builds the repository's recipes. Each package's events go to the
/// engine's observer as they happen.
pub fn build(
    engine: &Engine,
    pinned: &Pinned,
    repo: &Repository,
    request: &BuildRequest,
) -> Result<Vec<PackageResult>> {
    // A remote cache that is configured but unreachable stops the run
    // before anything is built (or, asked to, becomes a note).
    engine.remote()?;
    run_packages(engine, pinned, repo, request, build_one)
}

/// A package's job in a run: what it makes of its recipe, given what the
/// packages it needs made.
pub(crate) trait PackageJob:
    Fn(&Ctx, &Recipe, Option<&SourcePackage>, &Needs) -> Result<Built> + Sync
{
}

impl<F> PackageJob for F where
    F: Fn(&Ctx, &Recipe, Option<&SourcePackage>, &Needs) -> Result<Built> + Sync
{
}

/// Runs `job` for the requested packages (and what they need) in graph
/// order on the scheduler, recording the run's graph and its skips.
pub(crate) fn run_packages(
    engine: &Engine,
    pinned: &Pinned,
    repo: &Repository,
    request: &BuildRequest,
    job: impl PackageJob,
) -> Result<Vec<PackageResult>> {
    let stop = engine.cancel.flag();
    let sources = debian_sources(engine, pinned, repo)?;
    let graph = package_graph(engine, pinned, repo, &sources)?;
    let (order, wanted) = wanted_packages(&graph, request)?;
    // A Debian source that builds nothing for this architecture is left
    // out, as a buildd leaves it, and said (a plan says `skip`).
    let arch = pinned.lock.architecture.as_str();
    let (elsewhere, wanted): (Vec<String>, Vec<String>) = wanted
        .into_iter()
        .partition(|n| sources.get(n.as_str()).is_some_and(|s| !s.builds_on(arch)));
    for name in &elsewhere {
        let only = sources
            .get(name.as_str())
            .map(|s| s.architecture.join(" "))
            .unwrap_or_default();
        let mut e = Event::new("", NodeKind::Build, name, EventStatus::Skipped);
        e.reason = Some(format!("not built for {arch}: it builds only for {only}"));
        engine.record_skip(&e)?;
    }
    if !elsewhere.is_empty() {
        engine.observer.note(&format!(
            "not built for {arch}: {} (their sources build only for other architectures)",
            elsewhere.join(", ")
        ));
    }
    let environment = env::environment(engine, pinned, &[])?;
    // [base] bootstrap: what builds packages of the base (and what that
    // needs) comes first, on the snapshot's base; everything else waits for
    // it and builds on base layers made of its packages.
    let first: Vec<String> = if engine.repo.base.bootstrap {
        let providers: Vec<String> = environment
            .base_install
            .added
            .iter()
            .chain(&environment.base_build.added)
            .filter_map(|r| graph.provider(&r.name))
            .map(str::to_string)
            .collect();
        needed_by(&graph, &providers)
    } else {
        Vec::new()
    };
    let first_set: std::collections::HashSet<&str> = first.iter().map(String::as_str).collect();
    let wanted: Vec<String> = if first.is_empty() {
        wanted
    } else {
        let asked: std::collections::HashSet<&str> = wanted.iter().map(String::as_str).collect();
        order
            .iter()
            .filter(|n| asked.contains(n.as_str()) || first_set.contains(n.as_str()))
            .cloned()
            .collect()
    };
    if !first.is_empty() {
        engine.observer.note(&format!(
            "bootstrap: the base is made of the repository's builds of {} (built first, on the snapshot's base)",
            first.join(", ")
        ));
    }
    let index: HashMap<&str, usize> = wanted
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let is_first: Vec<bool> = wanted
        .iter()
        .map(|n| first_set.contains(n.as_str()))
        .collect();
    let first_indices: Vec<usize> = (0..wanted.len()).filter(|&i| is_first[i]).collect();
    let deps: Vec<Vec<usize>> = wanted
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut d: Vec<usize> = graph
                .dependencies(n)
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect();
            if !is_first[i] {
                d.extend(&first_indices);
                d.sort_unstable();
                d.dedup();
            }
            d
        })
        .collect();
    engine.record_graph(
        &wanted
            .iter()
            .zip(&deps)
            .map(|(name, d)| (name.clone(), d.iter().map(|&i| wanted[i].clone()).collect()))
            .collect(),
    )?;
    let durations = engine.index().durations(NodeKind::Build)?;
    let cost: Vec<u64> = wanted
        .iter()
        .map(|n| durations.get(n).copied().unwrap_or(1))
        .collect();
    engine.observer.plan(
        &wanted
            .iter()
            .map(|n| (n.clone(), durations.get(n).copied().unwrap_or(0)))
            .collect::<Vec<_>>(),
        request.jobs,
    );
    let base = environment.base_build;
    // The bootstrapped base, made once the first packages are built.
    let bootstrapped: std::sync::OnceLock<Layer> = std::sync::OnceLock::new();
    let recipes: HashMap<&str, &Recipe> =
        repo.recipes.iter().map(|r| (r.name.as_str(), r)).collect();
    let shape = scheduler::Graph {
        deps: &deps,
        cost: &cost,
        names: &wanted,
    };
    let local = LocalSandbox::new(engine);
    let remote = match &engine.repo.remote.execute {
        Some(url) if !engine.planning() => match RemoteExecutor::connect(engine, url) {
            Ok(remote) => Some(remote),
            Err(e) if engine.repo.remote.fallback_local => {
                engine
                    .observer
                    .note(&format!("{e}; building here (--remote-fallback local)"));
                None
            }
            Err(e) => return Err(e),
        },
        _ => None,
    };
    let executor: &dyn Executor = match &remote {
        Some(remote) => remote,
        None => &local,
    };
    let ctx = Ctx {
        engine,
        pinned,
        base: &base,
        executor,
        variations: None,
    };
    let states = scheduler::run(
        &shape,
        request.jobs,
        request.keep_going,
        stop,
        |i, done: &[std::sync::OnceLock<Arc<Built>>]| {
            let name = &wanted[i];
            let recipe = recipes
                .get(name.as_str())
                .ok_or_else(|| format!("no recipe {name}"))?;
            let needs = Needs {
                outputs: deps[i]
                    .iter()
                    .filter_map(|&d| done[d].get().map(|f| f.outputs))
                    .collect(),
                // The outputs of every recipe this one needs, directly or
                // not: a package it installs may depend on another
                // recipe's package.
                local: &|| {
                    let mut local = Vec::new();
                    let mut stack = deps[i].clone();
                    let mut seen = std::collections::BTreeSet::new();
                    while let Some(d) = stack.pop() {
                        if seen.insert(d) {
                            if let Some(built) = done[d].get() {
                                local.extend(built.manifest(engine)?.debs.iter().cloned());
                            }
                            stack.extend(deps[d].iter().copied());
                        }
                    }
                    local.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
                    Ok(local)
                },
            };
            let base_of_this = || -> Result<&Layer> {
                if first.is_empty() || is_first[i] {
                    return Ok(&base);
                }
                if let Some(layer) = bootstrapped.get() {
                    return Ok(layer);
                }
                let mut local = Vec::new();
                for &f in &first_indices {
                    if let Some(built) = done[f].get() {
                        local.extend(built.manifest(engine)?.debs.iter().cloned());
                    }
                }
                let (_, layer) = env::base_layers(engine, pinned, &local)?;
                Ok(bootstrapped.get_or_init(|| layer))
            };
            base_of_this()
                .and_then(|base| {
                    let ctx = Ctx { base, ..ctx };
                    job(&ctx, recipe, sources.get(name.as_str()), &needs)
                })
                .map(Arc::new)
                .map_err(|e| {
                    // Its own node recorded a failure of the build itself;
                    // anything else is recorded here, so no package fails
                    // without saying why.
                    let _ = engine.record_failure(NodeKind::Build, name, &e);
                    e.to_string()
                })
        },
    );
    let mut results = Vec::new();
    for (name, state) in wanted.iter().zip(states) {
        if let JobState::Skipped { because } = &state {
            let mut e = Event::new("", NodeKind::Build, name, EventStatus::Skipped);
            e.reason = Some(because.clone());
            engine.record_skip(&e)?;
        }
        results.push(PackageResult {
            name: name.clone(),
            state,
        });
    }
    Ok(results)
}

/// The repository's build-dependency graph, its cycles cut where the
/// snapshot has the binaries an edge names (or, for an archive rebuild,
/// without edges); the cuts are recorded and said.
pub(crate) fn package_graph(
    engine: &Engine,
    pinned: &Pinned,
    repo: &Repository,
    sources: &HashMap<&str, SourcePackage>,
) -> Result<comb_recipes::PackageGraph> {
    let arch = pinned.lock.architecture.as_str();
    // A cycle is cut where the snapshot has the binary an edge names; the
    // snapshot's packages are read only if there is a cycle.
    let snapshot_has = |binary: &str| {
        pinned
            .binary_sources()
            .is_ok_and(|b| b.contains_key(binary))
    };
    let owners = contested_owners(pinned, sources)?;
    let facts = |recipe: &Recipe| facts(recipe, sources, &owners, arch);
    let graph = if engine.repo.archive_rebuild {
        repo.graph_unlinked(facts)?
    } else {
        repo.graph_cutting(facts, snapshot_has)?
    };
    if !graph.cut_edges().is_empty() {
        engine.record_cuts(graph.cut_edges())?;
    }
    for cut in graph.cut_edges() {
        engine.observer.note(&format!(
            "build dependency cycle cut: {} builds against the snapshot's {} instead of {}'s, \
             then {} builds on it",
            cut.from,
            cut.binaries.join(", "),
            cut.to,
            cut.to
        ));
    }
    Ok(graph)
}

/// The graph's order, and the packages `request` asks for with what they
/// need, in that order.
pub(crate) fn wanted_packages(
    graph: &comb_recipes::PackageGraph,
    request: &BuildRequest,
) -> Result<(Vec<String>, Vec<String>)> {
    let order: Vec<String> = graph
        .topological_order()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let wanted: Vec<String> = if request.packages.is_empty() {
        order.clone()
    } else {
        for p in &request.packages {
            if graph.node(p).is_none() {
                return Err(Error::Input(format!(
                    "no recipe builds the source package {p:?}; `comb graph` lists them"
                )));
            }
        }
        needed_by(graph, &request.packages)
    };
    Ok((order, wanted))
}

/// The wanted packages and everything they need, in build order.
fn needed_by(graph: &comb_recipes::PackageGraph, wanted: &[String]) -> Vec<String> {
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    graph
        .needed_by(&wanted)
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// The snapshot's source records for the repository's `debian` recipes.
/// Each choice is a node (its record's text stored as a blob), so a run
/// that changes nothing does not parse the whole `Sources` index.
pub(crate) fn debian_sources<'a>(
    engine: &Engine,
    pinned: &Pinned,
    repo: &'a Repository,
) -> Result<HashMap<&'a str, SourcePackage>> {
    let all: std::sync::OnceLock<SourcesByName> = std::sync::OnceLock::new();
    let mut found = HashMap::new();
    for recipe in &repo.recipes {
        let Source::Debian { name, version } = &recipe.source else {
            continue;
        };
        let inputs = SourceChoiceInputs {
            index: NodeKey::known(&pinned.key),
            source: name.clone(),
            version: Wanted(version.clone()),
        };
        // A plan reads the index, with nothing stored per recipe.
        if engine.planning() {
            if all.get().is_none() {
                let _ = all.set(source_records(pinned)?);
            }
            let (source, _) = choose_source(all.get().expect("set above"), recipe, name, version)?;
            found.insert(recipe.name.as_str(), source.clone());
            continue;
        }
        let record = engine.node(
            NodeKind::Resolve,
            &format!("source:{name}"),
            &inputs,
            |_| {
                if all.get().is_none() {
                    let _ = all.set(source_records(pinned)?);
                }
                let (_, text) =
                    choose_source(all.get().expect("set above"), recipe, name, version)?;
                let digest = engine.store.put_blob_reader(&mut text.as_bytes())?;
                Ok((NodeOutput::Blob(digest), text.len() as u64))
            },
        )?;
        let NodeOutput::Blob(digest) = record.output else {
            return Err(Error::Environment(format!("source:{name} has no blob")));
        };
        let mut text = String::new();
        std::io::Read::read_to_string(&mut engine.store.open_blob(&digest)?, &mut text)
            .map_err(|e| Error::io("reading a stored source record", e))?;
        let parsed = comb_distro::parse_sources(&text, &format!("source:{name}"))?;
        let record = parsed
            .into_iter()
            .next()
            .ok_or_else(|| Error::Environment(format!("the stored record of {name} is empty")))?;
        found.insert(recipe.name.as_str(), record);
    }
    Ok(found)
}

/// The record of the source package `name` (at `version`, or its newest)
/// among the snapshot's, for `recipe`.
fn choose_source<'a>(
    all: &'a SourcesByName,
    recipe: &Recipe,
    name: &str,
    version: &Option<String>,
) -> Result<&'a (SourcePackage, String)> {
    let candidates: Vec<&(SourcePackage, String)> = all
        .get(name)
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let chosen = match version {
        Some(v) => candidates
            .iter()
            .find(|(s, _)| s.version.to_string() == *v)
            .copied(),
        None => candidates
            .iter()
            .copied()
            .max_by(|a, b| a.0.version.cmp(&b.0.version)),
    };
    let Some(chosen) = chosen else {
        let available: Vec<String> = candidates
            .iter()
            .map(|(s, _)| s.version.to_string())
            .collect();
        return Err(Error::Input(format!(
            "{}: the pinned snapshot has no source package {name}{}; {}",
            recipe.file.display(),
            version
                .as_deref()
                .map(|v| format!("={v}"))
                .unwrap_or_default(),
            if available.is_empty() {
                "no version of it at all".to_string()
            } else {
                format!("versions available: {}", available.join(", "))
            }
        )));
    };
    Ok(chosen)
}

/// The snapshot's source records (each with its text) by name.
type SourcesByName = HashMap<String, Vec<(SourcePackage, String)>>;

/// Every record of the snapshot's `Sources` indices, with its text, by
/// name.
fn source_records(pinned: &Pinned) -> Result<SourcesByName> {
    let snapshot = pinned.snapshot()?;
    if snapshot.sources.is_empty() {
        return Err(Error::Input(
            "recipes use `debian` sources, but the pinned snapshot has no Sources index".into(),
        ));
    }
    let mut all = SourcesByName::new();
    for f in &snapshot.sources {
        let text = std::fs::read_to_string(&f.local)
            .map_err(|e| Error::io(format!("reading {}", f.local.display()), e))?;
        for record in comb_distro::parse_sources_with_text(&text, &f.local.display().to_string())? {
            all.entry(record.0.name.clone()).or_default().push(record);
        }
    }
    Ok(all)
}

/// The binaries that more than one `debian` recipe's source lists for
/// this architecture (a distribution has some: a source that took
/// binaries over from another, a cross-toolchain's), each with the source
/// the snapshot's binary of that name comes from: the one recipe that
/// provides it. One the snapshot does not have is no recipe's (its owner
/// is empty): nothing can tell which would build it.
fn contested_owners(
    pinned: &Pinned,
    sources: &HashMap<&str, SourcePackage>,
) -> Result<HashMap<String, String>> {
    let arch = pinned.lock.architecture.as_str();
    let mut claims: HashMap<String, usize> = HashMap::new();
    for s in sources.values() {
        for b in s.binaries_on(arch) {
            *claims.entry(b).or_default() += 1;
        }
    }
    let contested: Vec<String> = claims
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(b, _)| b)
        .collect();
    if contested.is_empty() {
        return Ok(HashMap::new());
    }
    let sources_of = pinned.binary_sources()?;
    Ok(contested
        .into_iter()
        .map(|b| {
            let source = sources_of.get(&b).cloned().unwrap_or_default();
            (b, source)
        })
        .collect())
}

fn facts(
    recipe: &Recipe,
    sources: &HashMap<&str, SourcePackage>,
    owners: &HashMap<String, String>,
    arch: &str,
) -> SourceFacts {
    match sources.get(recipe.name.as_str()) {
        Some(s) => SourceFacts {
            binaries: s
                .binaries_on(arch)
                .into_iter()
                .filter(|b| owners.get(b).is_none_or(|owner| *owner == s.name))
                .collect(),
            build_depends: s.build_depends_for(arch),
        },
        None => SourceFacts {
            binaries: recipe.binaries().unwrap_or_default(),
            build_depends: Vec::new(),
        },
    }
}

/// What every build of a run shares.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    engine: &'a Engine,
    pinned: &'a Pinned,
    /// base-build: every pkg-env is over it.
    base: &'a Layer,
    /// Where builds run.
    executor: &'a dyn Executor,
    /// What a `comb check` rebuild varies (never a recorded build).
    variations: Option<&'a Variations>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn engine(&self) -> &'a Engine {
        self.engine
    }

    /// base-build, which every pkg-env is over.
    pub(crate) fn base_layer(&self) -> &'a Layer {
        self.base
    }

    /// The same, varying `variations` (a `comb check` rebuild).
    pub(crate) fn varying(&self, variations: Option<&'a Variations>) -> Ctx<'a> {
        Ctx {
            variations,
            ..*self
        }
    }
}

/// What one recipe needs from the recipes it depends on.
pub(crate) struct Needs<'a> {
    /// The `outputs` digest of each direct dependency.
    outputs: Vec<blake3::Hash>,
    /// Every package built by the recipes it needs, directly or not:
    /// computed only when the shortcut misses.
    local: &'a dyn Fn() -> Result<Vec<BuiltDeb>>,
}

/// Builds (or finds) one recipe's package.
///
/// The build's key holds its pkg-env's key, which takes a resolution and
/// a layer lookup to derive. On a run that changes nothing that is most of
/// the work, so first a *shortcut* is looked up: the key of everything
/// the build key is derived from (the recipe, its sources, the base
/// environment and the snapshot, the outputs of what it needs). A known
/// shortcut whose build is still recorded is a hit without deriving the
/// environment.
pub(crate) fn build_one(
    ctx: &Ctx,
    recipe: &Recipe,
    debian: Option<&SourcePackage>,
    needs: &Needs,
) -> Result<Built> {
    let Ctx {
        engine,
        pinned,
        base,
        ..
    } = *ctx;
    let requires = requires_of(recipe, debian, &pinned.lock.architecture);
    let inputs = build_inputs(engine, recipe, debian, &pinned.lock.architecture)?;
    let origin = EnvOriginInputs {
        resolver: Some(comb_distro::solver::RESOLVER.to_string()),
        index: NodeKey::known(&pinned.key),
        base: NodeKey::known(&base.key),
        requires: requires.clone(),
        needs: needs
            .outputs
            .iter()
            .map(|h| Hex(Hash::from_bytes(*h.as_bytes())))
            .collect(),
    };
    let shortcut = shortcut_key(&inputs, &origin)?;
    let remote = match ctx.variations {
        None => engine.remote()?,
        Some(_) => None,
    };
    let output = match engine.shortcut(NodeKind::Build, &recipe.name, &shortcut)? {
        Some((key, output)) => {
            if let Some(remote) = remote {
                if let Some(record) = engine.index().node(&key)? {
                    remote.share_build(engine, &record, &shortcut)?;
                }
            }
            output
        }
        None => {
            // Found in the remote cache, or built here (and shared).
            let fetched = match remote {
                Some(remote) => {
                    use crate::inputs::StageInputs;
                    let expected = inputs
                        .describe()
                        .finish()
                        .map_err(|e| Error::Environment(format!("describing a build: {e}")))?;
                    remote.fetch_build(engine, &recipe.name, &shortcut, &expected)?
                }
                None => None,
            };
            let record = match fetched {
                Some(record) => record,
                None => {
                    let record = build_node(ctx, recipe, debian, needs, &requires, inputs)?;
                    if let Some(remote) = remote {
                        remote.share_build(engine, &record, &shortcut)?;
                    }
                    record
                }
            };
            engine.remember_shortcut(&shortcut, &record.key)?;
            record.output
        }
    };
    let NodeOutput::Blob(digest) = &output else {
        return Err(Error::Environment(format!(
            "build {} has no manifest",
            recipe.name
        )));
    };
    let mut outputs = blake3::Hasher::new();
    outputs.update(digest.to_string().as_bytes());
    for h in &needs.outputs {
        outputs.update(h.as_bytes());
    }
    Ok(Built {
        digest: *digest,
        manifest: Default::default(),
        outputs: outputs.finalize(),
    })
}

/// A recipe's build requirements: its own, and a `debian` source's
/// `Build-Depends*`.
fn requires_of(recipe: &Recipe, debian: Option<&SourcePackage>, arch: &str) -> Vec<String> {
    requirements(recipe, debian, arch)
        .into_iter()
        .map(|r| r.text)
        .collect()
}

/// [`requires_of`], parsed.
pub(crate) fn requirements(
    recipe: &Recipe,
    debian: Option<&SourcePackage>,
    arch: &str,
) -> Vec<comb_recipes::Relation> {
    let mut requires: Vec<comb_recipes::Relation> = recipe
        .build_requires()
        .iter()
        .map(|r| r.relation.clone())
        .collect();
    if let Some(s) = debian {
        requires.extend(s.build_depends_for(arch));
    }
    requires
}

/// A recipe's build inputs, its environment not yet derived.
fn build_inputs(
    engine: &Engine,
    recipe: &Recipe,
    debian: Option<&SourcePackage>,
    architecture: &str,
) -> Result<BuildInputs> {
    let sha256 = |hex: &str, what: &str| -> Result<SourceEntry> {
        let hash = Hash::from_hex(hex)
            .map_err(|e| Error::Input(format!("{}: {what}: a bad sha256: {e}", recipe.name)))?;
        Ok(SourceEntry::file(FileHash::Sha256(hash)))
    };
    let (kind, source, version) = match (&recipe.source, debian) {
        (Source::Path { dir, .. }, _) => (
            SourceKind::Native,
            source::hash_tree(engine, dir)?.entries,
            recipe.version.clone().unwrap_or_default(),
        ),
        (Source::Debian { .. }, Some(s)) => (
            SourceKind::Debian,
            s.files
                .iter()
                .map(|f| Ok((f.name.clone(), sha256(&f.sha256, &f.name)?)))
                .collect::<Result<_>>()?,
            s.version.to_string(),
        ),
        (Source::Dsc(dsc), _) => {
            let dir = dsc.file.parent().unwrap_or(Path::new("."));
            let mut entries = BTreeMap::new();
            for f in &dsc.files {
                entries.insert(f.name.clone(), file_sha256(&dir.join(&f.name))?);
            }
            let name = dsc
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            entries.insert(name, file_sha256(&dsc.file)?);
            (SourceKind::Dsc, entries, dsc.version.clone())
        }
        (Source::Url { sha256: hex, .. }, _) => (
            SourceKind::Url,
            BTreeMap::from([("tarball".to_string(), sha256(hex, "its tarball")?)]),
            recipe.version.clone().unwrap_or_default(),
        ),
        (Source::Debian { .. }, None) => {
            return Err(Error::Environment(format!(
                "{}: source package missing",
                recipe.name
            )))
        }
    };
    Ok(BuildInputs {
        builder: builder().to_string(),
        kind,
        name: recipe.name.clone(),
        version,
        env: NodeKey::not_derived(),
        architecture: architecture.to_string(),
        source,
        script: recipe.build.script.clone().unwrap_or_default(),
        outputs: recipe.outputs.iter().map(output_text).collect(),
        package: recipe
            .source
            .kind()
            .is_native()
            .then(|| package_text(recipe, engine)),
    })
}

/// The build node of one recipe, its environment derived in full.
fn build_node(
    ctx: &Ctx,
    recipe: &Recipe,
    debian: Option<&SourcePackage>,
    needs: &Needs,
    requires: &[String],
    mut inputs: BuildInputs,
) -> Result<comb_cache::NodeRecord> {
    let engine = ctx.engine;
    let env_layer = env_for(ctx, recipe, requires, needs)?;
    inputs.env = NodeKey::known(&env_layer.key);
    let record = engine.node(NodeKind::Build, &recipe.name, &inputs, |_| {
        let manifest = make(ctx, recipe, debian, &env_layer, &inputs)?;
        let json = serde_json::to_vec(&manifest)
            .map_err(|e| Error::Environment(format!("serialising a manifest: {e}")))?;
        let digest = engine.store.put_blob_reader(&mut json.as_slice())?;
        Ok(Made {
            output: NodeOutput::Blob(digest),
            size: manifest.debs.iter().map(|d| d.size).sum(),
            refs: manifest.references(),
            worker: manifest.worker.clone(),
            fetched: None,
        })
    })?;
    Ok(record)
}

/// Builds a recipe again from source, in its (cached) environment, never
/// reading or writing its build node: what `comb check` compares with the
/// recorded build. With variations (`ctx.variations`), what of them apply
/// is put in `variations` as soon as the environment is known, so a failed
/// rebuild says it too.
pub(crate) fn rebuild(
    ctx: &Ctx,
    recipe: &Recipe,
    debian: Option<&SourcePackage>,
    needs: &Needs,
    variations: &mut Option<vary::VariationReport>,
) -> Result<Manifest> {
    let requires = requires_of(recipe, debian, &ctx.pinned.lock.architecture);
    let mut inputs = build_inputs(ctx.engine, recipe, debian, &ctx.pinned.lock.architecture)?;
    let env_layer = env_for(ctx, recipe, &requires, needs)?;
    inputs.env = NodeKey::known(&env_layer.key);
    *variations = ctx.variations.map(|v| vary::plan(v, &env_layer.paths));
    make(ctx, recipe, debian, &env_layer, &inputs)
}

/// The environment a recipe builds in: base-build, or its pkg-env over it.
fn env_for(ctx: &Ctx, recipe: &Recipe, requires: &[String], needs: &Needs) -> Result<Layer> {
    if requires.is_empty() {
        return Ok(ctx.base.clone());
    }
    let local = (needs.local)()?;
    env::pkg_env_for(
        ctx.engine,
        ctx.pinned,
        ctx.base,
        &recipe.name,
        requires,
        &local,
    )
}

/// Builds a recipe's packages in `env_layer`: runs the build, stores its
/// `.deb`s (as blobs) and log, and returns what it made. No node is
/// recorded: [`build_node`] records one, `comb check` compares.
fn make(
    ctx: &Ctx,
    recipe: &Recipe,
    debian: Option<&SourcePackage>,
    env_layer: &Layer,
    inputs: &BuildInputs,
) -> Result<Manifest> {
    let Ctx { engine, pinned, .. } = *ctx;
    // Each source entry with where this machine has its content.
    let located = |dir: &str, local: &dyn Fn(&str) -> Option<PathBuf>| -> Vec<ActionInput> {
        inputs
            .source
            .iter()
            .map(|(path, entry)| ActionInput {
                path: format!("{dir}/{path}"),
                entry: entry.clone(),
                local: local(path),
            })
            .collect()
    };
    match (&recipe.source, debian) {
        (Source::Path { dir, .. }, _) => {
            let files = located("src", &|path| Some(dir.join(path)));
            build_native(ctx, env_layer, recipe, inputs, files, None)
        }
        (Source::Url { url, sha256 }, _) => {
            let tarball = fetch_tarball(engine, recipe, url, sha256)?;
            let flag = compression_flag(&tarball)?;
            let files = inputs
                .source
                .values()
                .map(|entry| ActionInput {
                    path: "upstream.tar".into(),
                    entry: entry.clone(),
                    local: Some(tarball.clone()),
                })
                .collect();
            build_native(ctx, env_layer, recipe, inputs, files, Some(flag))
        }
        (Source::Debian { .. }, Some(s)) => {
            let blobs = fetch_source(engine, pinned, s)?;
            let files = located("sources", &|name| blobs.get(name).cloned());
            build_debian(ctx, env_layer, recipe, inputs, files)
        }
        (Source::Dsc(dsc), _) => {
            let dir = dsc.file.parent().unwrap_or(Path::new(".")).to_path_buf();
            let files = located("sources", &|name| Some(dir.join(name)));
            build_debian(ctx, env_layer, recipe, inputs, files)
        }
        _ => unreachable!("refused above"),
    }
}

/// The recipe's `[package]` fields that go into its packages (with the
/// repository's maintainer when it names none), as one line.
fn package_text(recipe: &Recipe, engine: &Engine) -> String {
    let p = &recipe.package;
    let maintainer = p.maintainer.as_ref().or(engine.repo.maintainer.as_ref());
    let mut t = String::new();
    for (k, v) in [
        ("maintainer", maintainer),
        ("license", p.license.as_ref()),
        ("copyright", p.copyright.as_ref()),
        ("homepage", p.homepage.as_ref()),
        ("summary", p.summary.as_ref()),
        ("description", p.description.as_ref()),
    ] {
        if let Some(v) = v {
            t.push_str(&format!("{k}={v:?} "));
        }
    }
    t.trim_end().to_string()
}

fn output_text(o: &comb_recipes::Output) -> String {
    let globs: Vec<&str> = o.files.iter().map(|g| g.as_str()).collect();
    let mut t = format!(
        "{} arch={:?} files={}",
        o.name,
        o.architecture,
        globs.join(" ")
    );
    for (field, deps) in o.relation_fields() {
        if !deps.is_empty() {
            let list: Vec<&str> = deps.iter().map(|d| d.relation.text.as_str()).collect();
            t.push_str(&format!(" {field}={}", list.join(", ")));
        }
    }
    for (k, v) in [
        ("section", &o.section),
        ("priority", &o.priority),
        ("summary", &o.summary),
        ("description", &o.description),
    ] {
        if let Some(v) = v {
            t.push_str(&format!(" {k}={v:?}"));
        }
    }
    for (k, on, default) in [
        ("strip", o.strip, true),
        ("dbgsym", o.dbgsym, true),
        ("symbols", o.symbols, false),
    ] {
        if on != default {
            t.push_str(&format!(" {k}={on}"));
        }
    }
    t
}

fn file_sha256(path: &Path) -> Result<SourceEntry> {
    let (sha, _) = comb_distro::fetch::hash_file(path)?;
    let hash = Hash::from_hex(&sha)
        .map_err(|e| Error::Environment(format!("hashing {}: {e}", path.display())))?;
    Ok(SourceEntry::file(FileHash::Sha256(hash)))
}

/// A `url` source's tarball, fetched once into the store and verified
/// against the recipe's sha256.
fn fetch_tarball(engine: &Engine, recipe: &Recipe, url: &str, sha256: &str) -> Result<PathBuf> {
    let expected = Hash::<Sha256>::from_hex(sha256)
        .map_err(|e| Error::Input(format!("{}: sha256: {e}", recipe.file.display())))?
        .expected(None);
    if let Some(path) = engine.store.find_blob(&expected) {
        return Ok(path);
    }
    let tmp = engine.store.tmp_path("tarball");
    let result = comb_distro::fetch_to(url, &tmp, None)
        .map_err(Error::from)
        .and_then(|_| {
            let mut file =
                std::fs::File::open(&tmp).map_err(|e| Error::io("opening a download", e))?;
            engine
                .store
                .put_blob_expecting(&mut file, expected)
                .map_err(|e| match e {
                    comb_cache::StoreError::HashMismatch { actual, .. } => Error::Input(format!(
                        "{}: {url} has sha256 {}, the recipe says {sha256}: nothing was kept; \
                     fix the url or the sha256",
                        recipe.file.display(),
                        actual.hex()
                    )),
                    e => e.into(),
                })
        });
    let _ = std::fs::remove_file(&tmp);
    let digest = result?;
    engine
        .store
        .blob_path(&digest)
        .ok_or_else(|| Error::Environment(format!("{url} vanished from the store")))
}

/// tar's flag for the tarball's compression, from its magic bytes (not
/// every tar detects it by itself).
fn compression_flag(tarball: &Path) -> Result<&'static str> {
    let mut magic = [0u8; 6];
    let mut file = std::fs::File::open(tarball).map_err(|e| Error::io("reading the tarball", e))?;
    let n = std::io::Read::read(&mut file, &mut magic)
        .map_err(|e| Error::io("reading the tarball", e))?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => "z",
        [0xfd, b'7', b'z', b'X', b'Z', 0] => "J",
        [b'B', b'Z', b'h', ..] => "j",
        _ => "",
    })
}

/// Builds a native recipe: its script as U with `DESTDIR`, then its
/// outputs packed from `DESTDIR` by comb. `tarball` is tar's flag for a
/// `url` source, which U unpacks first.
fn build_native(
    ctx: &Ctx,
    env_layer: &Layer,
    recipe: &Recipe,
    inputs: &BuildInputs,
    files: Vec<ActionInput>,
    tarball: Option<&str>,
) -> Result<Manifest> {
    let engine = ctx.engine;
    // Before building: its packages cannot be written without one.
    native::maintainer(engine, recipe)?;
    let root = vary::build_root(ctx.variations);
    let mut script = String::new();
    if let Some(flag) = tarball {
        // A single top directory (as most tarballs have) is stripped.
        script.push_str(&format!(
            "tops=$(tar -t{flag}f {root}/upstream.tar | sed 's|^\\./||' | cut -d/ -f1 | sort -u | grep -c .)\n\
             if [ \"$tops\" = 1 ]; then tar -x{flag}f {root}/upstream.tar --strip-components=1; \
             else tar -x{flag}f {root}/upstream.tar; fi\n",
        ));
    }
    script.push_str(&native::build_prelude(root));
    script.push_str(&inputs.script);
    let executed = ctx.executor.execute(&Action {
        name: &recipe.name,
        env: NodeKey::known(&env_layer.key),
        env_paths: &env_layer.paths,
        inputs: files,
        empty_dirs: vec!["src".into(), "dest".into(), native::ABOUT_DIR.into()],
        script,
        cwd: "src".into(),
        env_vars: vec![
            ("DESTDIR".into(), format!("{root}/dest")),
            (
                "SOURCE_DATE_EPOCH".into(),
                NATIVE_SOURCE_DATE_EPOCH.to_string(),
            ),
        ],
        variations: ctx.variations,
        limits: &recipe.build.limits,
        outputs: vec!["dest".into(), native::ABOUT_DIR.into()],
        build_flags: true,
    })?;
    let packing = native::Packing {
        engine,
        executor: ctx.executor,
        variations: ctx.variations,
    };
    let (debs, unclaimed, packaging_log) = native::pack(
        &packing,
        env_layer,
        recipe,
        &inputs.version,
        &inputs.architecture,
        &executed,
    )?;
    let mut log = executed.log.clone();
    log.push_str(&packaging_log);
    if !unclaimed.is_empty() {
        log.push_str(&format!(
            "comb: warning: no [[output]] holds these files of DESTDIR: {}\n",
            unclaimed.join(", ")
        ));
    }
    manifest(engine, debs, &log, &executed)
}

/// A build's record: its packages, and its log stored as a blob.
fn manifest(
    engine: &Engine,
    debs: Vec<BuiltDeb>,
    log: &str,
    executed: &crate::executor::Executed,
) -> Result<Manifest> {
    Ok(Manifest {
        debs,
        log: crate::logs::store(engine, log)?,
        confinement: Some(executed.confinement.clone()),
        worker: executed.worker.clone(),
    })
}

/// The files of a Debian source package, fetched into the store by the
/// sha256 the signed Sources index gives: each name's blob.
fn fetch_source(
    engine: &Engine,
    pinned: &Pinned,
    s: &SourcePackage,
) -> Result<HashMap<String, PathBuf>> {
    let mirror = pinned.lock.mirror();
    let mut blobs = HashMap::new();
    for f in &s.files {
        let digest = Hash::<Sha256>::from_hex(&f.sha256)
            .map_err(|e| Error::Environment(format!("{}: {e}", f.name)))?
            .digest(f.size);
        if engine.store.blob_path(&digest).is_none() {
            let tmp = engine.store.tmp_path("src");
            let uri = mirror.pool_url(&format!("{}/{}", s.directory, f.name));
            let fetched = comb_distro::fetch_to(&uri, &tmp, Some((&f.sha256, f.size)));
            let stored = fetched.map_err(Error::from).and_then(|_| {
                let mut file =
                    std::fs::File::open(&tmp).map_err(|e| Error::io("opening a download", e))?;
                Ok(engine.store.put_blob_expecting(&mut file, digest)?)
            });
            let _ = std::fs::remove_file(&tmp);
            stored?;
        }
        let blob = engine
            .store
            .blob_path(&digest)
            .ok_or_else(|| Error::Environment(format!("{} vanished from the store", f.name)))?;
        blobs.insert(f.name.clone(), blob);
    }
    Ok(blobs)
}

/// `dpkg-source -x` and `dpkg-buildpackage -b -uc -us` as U; `files` are
/// the `.dsc` (first) and the files it lists.
/// The directory `dpkg-source -x` unpacks `NAME_VERSION.dsc` into:
/// `NAME-UPSTREAM`, the version without its Debian revision.
fn unpack_dir(dsc: &str) -> String {
    let stem = dsc.strip_suffix(".dsc").unwrap_or(dsc);
    let (name, version) = stem.split_once('_').unwrap_or((stem, ""));
    let upstream = version.rsplit_once('-').map_or(version, |(u, _)| u);
    format!("{name}-{upstream}")
}

fn build_debian(
    ctx: &Ctx,
    env_layer: &Layer,
    recipe: &Recipe,
    inputs: &BuildInputs,
    files: Vec<ActionInput>,
) -> Result<Manifest> {
    let engine = ctx.engine;
    let root = vary::build_root(ctx.variations);
    let dsc = inputs
        .source
        .keys()
        .find(|name| name.ends_with(".dsc"))
        .ok_or_else(|| Error::Input(format!("{}: its source has no .dsc", recipe.name)))?;
    // Unpacked where dpkg-source puts it by default, SOURCE-UPSTREAM
    // (some build systems look at their directory's name), and built as
    // sbuild builds: a sanitized environment, fakeroot as the root command
    // where Rules-Requires-Root asks for one. The .debs land beside it.
    let dir = unpack_dir(dsc);
    let script = format!(
        "cd {root} && dpkg-source --no-check -x 'sources/{dsc}' '{dir}' && cd '{dir}' && \
         dpkg-buildpackage --sanitize-env -rfakeroot -b -uc -us && \
         find {root} -maxdepth 1 -name '*.deb' -type f -exec mv -t {root}/out {{}} +"
    );
    let executed = ctx.executor.execute(&Action {
        name: &recipe.name,
        env: NodeKey::known(&env_layer.key),
        env_paths: &env_layer.paths,
        inputs: files,
        empty_dirs: vec!["sources".into(), "out".into()],
        script,
        cwd: String::new(),
        env_vars: Vec::new(),
        variations: ctx.variations,
        limits: &recipe.build.limits,
        outputs: vec!["out".into()],
        build_flags: false,
    })?;
    let mut debs = Vec::new();
    let out = &executed.outputs[0];
    for (deb, entry) in &out.entries {
        let path = out.dir.join(deb);
        let is_deb = deb.extension().is_some_and(|x| x == "deb");
        if is_deb && deb.components().count() == 1 && matches!(entry, SourceEntry::File { .. }) {
            let control = comb_distro::deb::DebArchive::open(&path)?.control()?;
            debs.push(crate::manifest::store_deb(engine, &path, &control)?);
        }
    }
    if debs.is_empty() {
        // What is there instead, to say where the packages went.
        let work = executed.outputs[0].dir.parent().unwrap_or(Path::new("/"));
        let mut found: Vec<String> = std::fs::read_dir(work)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        return Err(Error::Stage {
            stage: "build",
            name: recipe.name.clone(),
            message: format!(
                "dpkg-buildpackage made no .deb (its directory holds: {})",
                found.join(", ")
            ),
            log: env::tail(&executed.log, 30),
            stored_log: crate::logs::store(engine, &executed.log).ok(),
        });
    }
    manifest(engine, debs, &executed.log, &executed)
}

/// Writes the given packages as a flat APT repository in `dir`.
pub fn write_repository(engine: &Engine, dir: &Path, debs: &[BuiltDeb]) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut entries = Vec::new();
    for d in debs {
        let digest = Hash::<Sha256>::from_hex(&d.sha256)
            .map_err(|e| Error::Environment(format!("{}: {e}", d.filename)))?
            .digest(d.size);
        let blob = engine.store.blob_path(&digest).ok_or_else(|| {
            Error::Environment(format!("{} is missing from the store", d.filename))
        })?;
        let target = dir.join(&d.filename);
        let _ = std::fs::remove_file(&target);
        std::fs::copy(&blob, &target)
            .map_err(|e| Error::io(format!("writing {}", target.display()), e))?;
        entries.push(comb_distro::aptrepo::RepoEntry::from_deb(
            &target,
            &d.filename,
        )?);
    }
    comb_distro::aptrepo::write_flat_repository(dir, &entries, NATIVE_SOURCE_DATE_EPOCH)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_unpack_where_dpkg_source_puts_them() {
        assert_eq!(unpack_dir("m4_1.4.19-3.dsc"), "m4-1.4.19");
        assert_eq!(unpack_dir("base-files_12.4.dsc"), "base-files-12.4");
        assert_eq!(
            unpack_dir("libpng1.6_1.6.39-2+deb12u1.dsc"),
            "libpng1.6-1.6.39"
        );
        assert_eq!(unpack_dir("a_1.0-rc1-2.dsc"), "a-1.0-rc1");
    }
}
