//! The `index` stage: a verified snapshot of the distribution's indices,
//! pinned by `comb.lock` beside `comb.toml`.
//!
//! `comb update` fetches and verifies a new snapshot, stores it as a tree
//! and writes the lock. Every other command reads the lock and uses the
//! stored snapshot, re-verified offline; it needs no network unless the
//! snapshot is missing from the store.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::inputs::{IndexInputs, StageInputs};
use comb_cache::{NodeKind, NodeOutput};
use comb_distro::{fetch_snapshot, MirrorConfig, Snapshot, SnapshotLock};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The lock's file name.
pub const LOCK_FILE: &str = "comb.lock";
const LOCK_FORMAT: u32 = 1;
/// The keyring used when neither comb.toml nor anything else names one.
pub const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

#[derive(Serialize, Deserialize)]
struct LockFile {
    format: u32,
    snapshot: SnapshotLock,
}

/// The snapshot a run resolves against. Its files are re-verified
/// against the lock (signature, digests) the first time a stage reads
/// them; a run whose every node is a hit never needs to.
pub struct Pinned {
    pub lock: SnapshotLock,
    /// The index node's key.
    pub key: String,
    /// The stored snapshot tree.
    pub tree: PathBuf,
    verified: std::sync::OnceLock<Snapshot>,
    /// The snapshot's binary packages, indexed for the resolver: parsed
    /// once per process, on first use.
    universe: std::sync::OnceLock<comb_distro::solver::Universe>,
    /// Each binary package of the snapshot with its source's name (cheaper
    /// than the universe: for the package graph of every run).
    binary_sources: std::sync::OnceLock<std::collections::HashMap<String, String>>,
    /// One private APT per snapshot and process: set up once, it resolves
    /// every set of the run.
    aptbox: std::sync::Mutex<Option<std::sync::Arc<comb_distro::aptbox::Aptbox>>>,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Ok(Some(apt)) = self.aptbox.get_mut().map(|a| a.take()) {
            let _ = std::fs::remove_dir_all(apt.work());
        }
    }
}

impl Pinned {
    fn new(lock: SnapshotLock, key: String, tree: PathBuf) -> Pinned {
        Pinned {
            lock,
            key,
            tree,
            verified: std::sync::OnceLock::new(),
            universe: std::sync::OnceLock::new(),
            binary_sources: std::sync::OnceLock::new(),
            aptbox: std::sync::Mutex::new(None),
        }
    }

    /// The snapshot's private APT, set up in `work` on first use.
    pub(crate) fn aptbox(
        &self,
        work: impl FnOnce() -> PathBuf,
    ) -> Result<std::sync::Arc<comb_distro::aptbox::Aptbox>> {
        let mut slot = self.aptbox.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(apt) = slot.as_ref() {
            return Ok(apt.clone());
        }
        let indices: Vec<PathBuf> = self
            .snapshot()?
            .packages
            .iter()
            .map(|f| f.local.clone())
            .collect();
        let work = work();
        let apt = comb_distro::aptbox::Aptbox::new(&work, &self.lock.architecture, &indices)
            .inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&work);
            })?;
        let apt = std::sync::Arc::new(apt);
        *slot = Some(apt.clone());
        Ok(apt)
    }

    /// The snapshot's binary packages of its architecture, for the
    /// resolver.
    pub(crate) fn universe(&self) -> Result<&comb_distro::solver::Universe> {
        if let Some(u) = self.universe.get() {
            return Ok(u);
        }
        let mut packages = Vec::new();
        for f in &self.snapshot()?.packages {
            let text = std::fs::read_to_string(&f.local)
                .map_err(|e| Error::io(format!("reading {}", f.local.display()), e))?;
            packages.extend(comb_distro::parse_packages(
                &text,
                &f.local.display().to_string(),
            )?);
        }
        let universe = comb_distro::solver::Universe::new(&self.lock.architecture, packages);
        Ok(self.universe.get_or_init(|| universe))
    }

    /// Each binary package of the snapshot, with the name of its source.
    pub(crate) fn binary_sources(&self) -> Result<&std::collections::HashMap<String, String>> {
        if let Some(b) = self.binary_sources.get() {
            return Ok(b);
        }
        let mut all = std::collections::HashMap::new();
        for f in &self.snapshot()?.packages {
            let text = std::fs::read_to_string(&f.local)
                .map_err(|e| Error::io(format!("reading {}", f.local.display()), e))?;
            all.extend(comb_distro::binary_sources(
                &text,
                &f.local.display().to_string(),
            )?);
        }
        Ok(self.binary_sources.get_or_init(|| all))
    }

    /// The names of the snapshot's source packages, sorted, each once.
    pub fn source_names(&self) -> Result<Vec<String>> {
        let mut names = std::collections::BTreeSet::new();
        for f in &self.snapshot()?.sources {
            let text = std::fs::read_to_string(&f.local)
                .map_err(|e| Error::io(format!("reading {}", f.local.display()), e))?;
            names.extend(comb_distro::package_names(
                &text,
                &f.local.display().to_string(),
            )?);
        }
        Ok(names.into_iter().collect())
    }

    /// The snapshot's verified files.
    pub fn snapshot(&self) -> Result<&Snapshot> {
        if let Some(s) = self.verified.get() {
            return Ok(s);
        }
        let snapshot = self.lock.verify(&self.tree)?;
        Ok(self.verified.get_or_init(|| snapshot))
    }
}

/// The mirror of `[distro]`, with what it leaves out taken from the host's
/// APT sources.
pub fn mirror_config(engine: &Engine) -> Result<MirrorConfig> {
    let d = &engine.repo.distro;
    let complete = d.mirror.is_some()
        && d.suite.is_some()
        && d.components.is_some()
        && d.architecture.is_some();
    let mut mirror = if complete {
        MirrorConfig {
            uri: String::new(),
            suite: String::new(),
            components: Vec::new(),
            architecture: String::new(),
            keyring: PathBuf::new(),
        }
    } else {
        MirrorConfig::from_host()?
    };
    if let Some(v) = &d.mirror {
        mirror.uri = v.clone();
    }
    if let Some(v) = &d.suite {
        mirror.suite = v.clone();
    }
    if let Some(v) = &d.components {
        mirror.components = v.clone();
    }
    if let Some(v) = &d.architecture {
        mirror.architecture = v.clone();
    }
    mirror.keyring = match &d.keyring {
        Some(k) => k.clone(),
        None => PathBuf::from(DEFAULT_KEYRING),
    };
    Ok(mirror)
}

fn lock_path(engine: &Engine) -> PathBuf {
    engine.repo.root.join(LOCK_FILE)
}

fn index_inputs(lock: &SnapshotLock, path: &Path) -> Result<IndexInputs> {
    let sha256 = |value: &str, what: &str| {
        value.parse().map_err(|e| Error::Lock {
            path: path.to_path_buf(),
            message: format!(
                "its {what} is not a sha256 ({e}); run `comb update` to write it again"
            ),
        })
    };
    Ok(IndexInputs {
        uri: lock.uri.clone(),
        suite: lock.suite.clone(),
        components: lock.components.clone(),
        architecture: lock.architecture.clone(),
        keyring_sha256: sha256(&lock.keyring_sha256, "keyring sha256")?,
        inrelease_sha256: sha256(&lock.inrelease_sha256, "InRelease sha256")?,
    })
}

fn node_name(lock: &SnapshotLock) -> String {
    format!("{}/{}", lock.suite, lock.architecture)
}

/// `comb update`: fetches and verifies the current snapshot, stores it
/// and writes the lock. Returns the pinned snapshot and whether the lock
/// changed.
pub fn update(engine: &Engine) -> Result<(Pinned, bool)> {
    let mirror = mirror_config(engine)?;
    let dir = engine.store.tmp_path("snapshot");
    let fetched = fetch_snapshot(&mirror, &dir, true);
    let snapshot = match fetched {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
    };
    let lock = snapshot.lock()?;
    let inputs = index_inputs(&lock, &lock_path(engine))?;
    let record = engine.node(NodeKind::Index, &node_name(&lock), &inputs, |key| {
        let name = format!("index-{key}");
        engine.store.publish_tree(&dir, &name)?;
        Ok((
            NodeOutput::Tree(name.clone()),
            engine.store.tree_size(&name)?,
        ))
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    let pinned = Pinned::new(lock, record.key.clone(), engine.tree_of(&record)?);
    pinned.snapshot()?;
    let path = lock_path(engine);
    let changed = write_lock(&path, &pinned.lock)?;
    remember_pin(engine, &path, &pinned.key)?;
    Ok((pinned, changed))
}

/// The snapshot `comb.lock` pins, from the store (fetched again, and
/// checked against the lock, only if the store lost it).
pub fn load(engine: &Engine) -> Result<Pinned> {
    let path = lock_path(engine);
    let lock = read_lock(&path)?;
    let inputs = index_inputs(&lock, &path)?;
    let record = engine.node(NodeKind::Index, &node_name(&lock), &inputs, |key| {
        let dir = engine.store.tmp_path("snapshot");
        let result = (|| {
            let snapshot = fetch_snapshot(&lock.mirror(), &dir, true)?;
            if snapshot.inrelease_sha256 != lock.inrelease_sha256 {
                return Err(Error::Lock {
                    path: path.clone(),
                    message: format!(
                        "the snapshot it pins is not in the store, and the mirror has moved on \
                         (InRelease sha256 {}, locked {}); run `comb update` to pin the current one",
                        snapshot.inrelease_sha256, lock.inrelease_sha256
                    ),
                });
            }
            lock.verify(&dir)?;
            let name = format!("index-{key}");
            engine.store.publish_tree(&dir, &name)?;
            Ok((NodeOutput::Tree(name.clone()), engine.store.tree_size(&name)?))
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    })?;
    let tree = engine.tree_of(&record)?;
    remember_pin(engine, &path, &record.key)?;
    Ok(Pinned::new(lock, record.key, tree))
}

/// Records that the lock at `path` pins the index node `key`, so garbage
/// collection keeps its snapshot (the mirror may no longer serve it).
fn remember_pin(engine: &Engine, path: &Path, key: &str) -> Result<()> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    engine
        .index()
        .remember_pin(path.as_os_str().as_encoded_bytes(), key)?;
    Ok(())
}

/// The key of the index node the lock file at `path` pins.
pub fn pinned_key(path: &Path) -> Result<String> {
    Ok(index_inputs(&read_lock(path)?, path)?.key()?)
}

fn read_lock(path: &Path) -> Result<SnapshotLock> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Lock {
                path: path.to_path_buf(),
                message: "no lock yet: run `comb update` to pin a snapshot of the distribution"
                    .into(),
            })
        }
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let file: LockFile = toml::from_str(&text).map_err(|e| Error::Lock {
        path: path.to_path_buf(),
        message: format!(
            "{}; it is written by `comb update`: run that to write it again",
            e.to_string().trim()
        ),
    })?;
    if file.format != LOCK_FORMAT {
        return Err(Error::Lock {
            path: path.to_path_buf(),
            message: format!(
                "lock format {} is not the {LOCK_FORMAT} this comb writes; run `comb update`",
                file.format
            ),
        });
    }
    Ok(file.snapshot)
}

/// Writes the lock atomically if its content changes; returns whether it did.
fn write_lock(path: &Path, lock: &SnapshotLock) -> Result<bool> {
    let body = toml::to_string(&LockFile {
        format: LOCK_FORMAT,
        snapshot: lock.clone(),
    })
    .map_err(|e| Error::Environment(format!("serialising the lock: {e}")))?;
    let text = format!(
        "# Pins the distribution snapshot every build resolves against.\n\
         # Written by `comb update`; do not edit by hand.\n{body}"
    );
    if std::fs::read_to_string(path).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    let tmp = path.with_extension("lock.tmp");
    std::fs::write(&tmp, &text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(format!("writing {}", path.display()), e)
        })?;
    Ok(true)
}

/// `comb import`: writes `NAME/recipe.toml` (`[source]`, `debian = "NAME"`)
/// under `root` for the snapshot's source packages `names` (all of them
/// when `None`). A directory already there is left alone. Returns how many
/// recipes were written and how many left.
pub fn import_recipes(
    pinned: &Pinned,
    root: &Path,
    names: Option<&[String]>,
) -> Result<(usize, usize)> {
    let available = pinned.source_names()?;
    let names = match names {
        None => available,
        Some(names) => {
            if let Some(missing) = names.iter().find(|n| available.binary_search(n).is_err()) {
                return Err(Error::Input(format!(
                    "the pinned snapshot has no source package {missing:?}"
                )));
            }
            names.to_vec()
        }
    };
    let (mut written, mut kept) = (0, 0);
    for name in &names {
        // Names come from a signed index; still, each must be a package
        // name (no `/`, no `..`) before it names a directory.
        if !comb_debian::name::is_package_name(name) {
            return Err(Error::Input(format!(
                "{name:?} is not a source package name"
            )));
        }
        let dir = root.join(name);
        if dir.exists() {
            kept += 1;
            continue;
        }
        std::fs::create_dir(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let recipe = dir.join(comb_recipes::RECIPE_FILE);
        std::fs::write(&recipe, format!("[source]\ndebian = \"{name}\"\n"))
            .map_err(|e| Error::io(format!("writing {}", recipe.display()), e))?;
        written += 1;
    }
    Ok((written, kept))
}
