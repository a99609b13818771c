//! A repository: `comb.toml` and every `recipe.toml` below it.

use crate::config::{RepoConfig, CONFIG_FILE};
use crate::error::{Error, Location, Result};
use crate::graph::{PackageGraph, SourceFacts};
use crate::recipe::{Recipe, Source, RECIPE_FILE};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A loaded repository: its configuration and its recipes, all valid.
#[derive(Debug, Clone)]
pub struct Repository {
    pub config: RepoConfig,
    /// The repository directory (absolute).
    pub root: PathBuf,
    /// Sorted by the path of their `recipe.toml`.
    pub recipes: Vec<Recipe>,
}

impl Repository {
    /// Loads the repository in `root` (a directory holding `comb.toml`, or
    /// that file itself). Every problem of every file is reported, one per
    /// line, in an [`Error::Many`] when there are several.
    pub fn load(root: &Path) -> Result<Repository> {
        let file = if root.is_dir() {
            root.join(CONFIG_FILE)
        } else {
            root.to_path_buf()
        };
        match RepoConfig::load(&file) {
            Ok(config) => Repository::from_config(config),
            Err(config_error) => {
                // Report the recipes' problems too, as a compiler would.
                let dir = file.parent().unwrap_or(Path::new("."));
                let mut errors = vec![config_error];
                if dir.is_dir() {
                    errors.extend(load_recipes(dir).1);
                }
                Err(Error::from_list(errors).expect("at least one error"))
            }
        }
    }

    /// Loads the recipes of the repository whose `comb.toml` is `config`
    /// (say, one found by [`RepoConfig::find`]).
    pub fn from_config(config: RepoConfig) -> Result<Repository> {
        let root = config.root.clone();
        let (recipes, errors) = load_recipes(&root);
        match Error::from_list(errors) {
            Some(e) => Err(e),
            None => Ok(Repository {
                config,
                root,
                recipes,
            }),
        }
    }

    /// The recipe of source package `name`.
    pub fn recipe(&self, name: &str) -> Option<&Recipe> {
        self.recipes.iter().find(|r| r.name == name)
    }

    /// The package graph, with `binaries` giving the binary packages each
    /// recipe builds: usually `r.binaries()`, and for a `debian` source
    /// the `Binary:` of its `Sources` entry. Only the recipes' own
    /// requirements make edges (see [`Repository::graph_with`] to add a
    /// `debian` source's `Build-Depends`).
    pub fn graph(&self, binaries: impl Fn(&Recipe) -> Vec<String>) -> Result<PackageGraph> {
        self.graph_with(|r| SourceFacts {
            binaries: binaries(r),
            build_depends: Vec::new(),
        })
    }

    /// The package graph, with `facts` telling what the recipes cannot:
    /// the binaries of every recipe and, for `debian` sources, the
    /// `Build-Depends*` of the snapshot's `Sources` entry.
    pub fn graph_with(&self, facts: impl Fn(&Recipe) -> SourceFacts) -> Result<PackageGraph> {
        PackageGraph::new(&self.recipes, facts)
    }

    /// [`Repository::graph_with`] without edges between the recipes (see
    /// [`PackageGraph::unlinked`]).
    pub fn graph_unlinked(&self, facts: impl Fn(&Recipe) -> SourceFacts) -> Result<PackageGraph> {
        PackageGraph::unlinked(&self.recipes, facts)
    }

    /// [`Repository::graph_with`], cutting the cycles that can be cut where
    /// the snapshot has the binaries an edge names (see
    /// [`PackageGraph::cutting`]).
    pub fn graph_cutting(
        &self,
        facts: impl Fn(&Recipe) -> SourceFacts,
        snapshot_has: impl Fn(&str) -> bool,
    ) -> Result<PackageGraph> {
        PackageGraph::cutting(&self.recipes, facts, snapshot_has)
    }
}

/// Every `recipe.toml` below `root` (not in `root` itself), sorted by path.
/// Hidden directories are skipped, directory links not followed, and a
/// directory that holds a recipe is not looked into further: what is
/// below it is that recipe's sources.
pub fn find_recipes(root: &Path) -> (Vec<PathBuf>, Vec<Error>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    // Level by level, each level's directories read in parallel: a
    // repository of thousands of recipes is thousands of directories.
    let mut level = vec![root.to_path_buf()];
    while !level.is_empty() {
        let scans = par_map(&level, |dir| scan(root, dir));
        level = Vec::new();
        for scan in scans {
            match scan {
                Ok(Scan::Recipe(file)) => found.push(file),
                Ok(Scan::Directories(dirs)) => level.extend(dirs),
                Err(e) => errors.push(e),
            }
        }
    }
    // Path order compares components: `a/` before `a-b/`, as a tree lists.
    found.sort();
    (found, errors)
}

enum Scan {
    Recipe(PathBuf),
    Directories(Vec<PathBuf>),
}

/// One directory: its recipe, or the directories to look into.
fn scan(root: &Path, dir: &Path) -> std::result::Result<Scan, Error> {
    // Most directories below the root hold a recipe: one stat finds it
    // without reading the directory.
    let candidate = dir.join(RECIPE_FILE);
    if dir != root && std::fs::symlink_metadata(&candidate).is_ok_and(|m| m.file_type().is_file()) {
        return Ok(Scan::Recipe(candidate));
    }
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut dirs = Vec::new();
    let mut recipe = None;
    for entry in entries.filter_map(|e| e.ok()) {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        if kind.is_dir() {
            if !name.to_string_lossy().starts_with('.') {
                dirs.push(entry.path());
            }
        } else if name == RECIPE_FILE {
            recipe = Some(entry.path());
        }
    }
    match recipe {
        Some(path) if dir == root => Err(Error::Invalid {
            path,
            line: 1,
            column: 1,
            message: "a recipe in the repository's root directory: move it, with its sources, into a directory of its own below it".into(),
        }),
        // A recipe's directory holds its sources, not more recipes: their
        // (possibly huge) trees are not walked.
        Some(path) => Ok(Scan::Recipe(path)),
        None => Ok(Scan::Directories(dirs)),
    }
}

/// `items.iter().map(f)`, on as many threads as there are CPUs when the
/// list is long enough to be worth it. The order is kept.
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cpus.min(items.len() / 64 + 1);
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Loads every recipe below `root`; checks names across recipes.
fn load_recipes(root: &Path) -> (Vec<Recipe>, Vec<Error>) {
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let (files, mut errors) = find_recipes(&root);
    // The scan follows no directory links, so a recipe's canonical
    // directory is the canonical root joined with its relative one.
    let canonical_root = std::fs::canonicalize(&root).ok();
    let loaded = par_map(&files, |file| {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
            path: file.clone(),
            source,
        })?;
        let dir = file.parent().unwrap_or(&root);
        let canonical = canonical_root
            .as_ref()
            .zip(dir.strip_prefix(&root).ok())
            .map(|(c, relative)| c.join(relative));
        Recipe::parse_in(file, &text, canonical.as_deref())
    });
    let mut recipes = Vec::new();
    for result in loaded {
        match result {
            Ok(r) => recipes.push(r),
            Err(e) => errors.extend(e.into_list()),
        }
    }
    let mut sources: HashMap<&str, &Recipe> = HashMap::new();
    let mut binaries: HashMap<String, (&Recipe, Location)> = HashMap::new();
    for r in &recipes {
        if let Some(first) = sources.insert(&r.name, r) {
            errors.push(r.name_at.error(format!(
                "source package {:?} has another recipe at {}: each source package has one recipe; rename or remove one",
                r.name, first.name_at
            )));
            // Keep the first one as the reference for later duplicates.
            sources.insert(&first.name, first);
        }
        for (binary, at) in declared_binaries(r) {
            match binaries.get(&binary) {
                Some((first, first_at)) => errors.push(at.error(format!(
                    "binary package {binary:?} is also built by {} at {first_at}: a binary package comes from one recipe; rename one",
                    first.name
                ))),
                None => {
                    binaries.insert(binary, (r, at));
                }
            }
        }
    }
    (recipes, errors)
}

/// The binaries a recipe says it builds, each where it says so.
pub(crate) fn declared_binaries(r: &Recipe) -> Vec<(String, Location)> {
    match &r.source {
        Source::Dsc(dsc) => dsc
            .binaries
            .iter()
            .map(|b| (b.clone(), r.source_at.clone()))
            .collect(),
        _ => r
            .outputs
            .iter()
            .map(|o| (o.name.clone(), o.name_at.clone()))
            .collect(),
    }
}
