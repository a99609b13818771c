//! Environments as layers, hasher's stages 4 to 6: `base-install` (the
//! install set unpacked, then configured by dpkg as R), `base-build` (the
//! build set on top) and `pkg-env` (a package's build dependencies on top).
//!
//! Each layer is a node keyed by the layer below's key and the exact list
//! of packages it adds (name, version, architecture, sha256), so a layer is
//! built once and shared by every environment that needs the same set.
//! A pkg-env's tree may stand on another pkg-env's (see [`stand_on`]): its
//! key and packages stay its own, only the installation is shared.
//! Entering an environment is an overlay of its layers plus a fresh upper
//! directory: nothing is copied or unpacked per use. base-install and
//! base-build are each one whole root (base-build hard-links what it keeps
//! of base-install), so a package's environment is two layers deep.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::inputs::{
    BuildDepsInputs, FetchInputs, Hex, InstallNames, InstallSetInputs, LayerInputs, LayerStage,
    NodeKey, OrNone, PackageArch, PackageRef, Replacement,
};
use crate::snapshot::Pinned;
use comb_cache::{Blake3, Digest, Hash, NodeKind, NodeOutput, NodeRecord, Sha256};
use comb_distro::aptbox::{essential_and_required_in, Aptbox, Resolved};
use comb_distro::deb::{self, UnpackOptions};
use comb_distro::{FetchItem, Fetcher};
use comb_sandbox::{Bind, Identity, Spec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Changes when the way layers are made changes, so old layers are not
/// reused for new ones.
const LAYER_RECIPE: &str = "comb-layers-4";
/// The file that marks a layer tree as a whole root: an environment of
/// it needs none of the layers below it (see [`make_whole`]).
const WHOLE: &str = "whole";
/// Where the packages to install are bound inside the sandbox.
const DEBS_INSIDE: &str = "/.comb/debs";
/// Debian's fixed gid of the `mail` group (base-passwd).
const MAIL_GID: u32 = 8;
/// Longest a layer's installation may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(3600);

/// An environment's dpkg status file and its digest.
type StatusFile = (PathBuf, Hash<Blake3>);

/// One layer node of an environment, with every layer below it.
#[derive(Debug, Clone)]
pub struct Layer {
    pub stage: NodeKind,
    pub key: String,
    /// The store tree holding this node's layer directories.
    pub tree: String,
    /// Every layer directory of the environment, bottom first.
    pub paths: Vec<PathBuf>,
    /// The packages this node added.
    pub added: Vec<Resolved>,
    /// Every package this layer and those below installed, as `name:arch`
    /// and the sha256 of its `.deb`.
    installed: std::sync::Arc<std::collections::BTreeSet<(String, String)>>,
    /// The environment's dpkg status file and its digest, read once: every
    /// package's pkg-env resolve over base-build asks for it.
    status: std::sync::Arc<std::sync::OnceLock<Option<StatusFile>>>,
}

impl Layer {
    /// The topmost dpkg status file of the environment and its digest.
    fn status(&self) -> Result<Option<&StatusFile>> {
        if let Some(known) = self.status.get() {
            return Ok(known.as_ref());
        }
        let found = match dpkg_status(&self.paths) {
            Some(path) => {
                let digest = blake3_file(&path)?;
                Some((path, digest))
            }
            None => None,
        };
        Ok(self.status.get_or_init(|| found).as_ref())
    }
}

/// A built environment: its three (or two) layer nodes.
#[derive(Debug, Clone)]
pub struct Environment {
    pub base_install: Layer,
    pub base_build: Layer,
    pub pkg_env: Option<Layer>,
}

impl Environment {
    /// The top layer node.
    pub fn top(&self) -> &Layer {
        self.pkg_env.as_ref().unwrap_or(&self.base_build)
    }
}

/// Builds (or finds) base-install, base-build and, when `with` is not
/// empty, the pkg-env that adds `with`.
pub fn environment(engine: &Engine, pinned: &Pinned, with: &[String]) -> Result<Environment> {
    let (base_install, base_build) = base_layers(engine, pinned, &[])?;
    let pkg_env = if with.is_empty() {
        None
    } else {
        let mut names = with.to_vec();
        names.sort();
        names.dedup();
        let name = format!("with:{}", names.join(","));
        Some(layer_on(
            engine,
            pinned,
            &base_build,
            (NodeKind::PkgEnv, &name),
            &names,
            &[],
        )?)
    };
    Ok(Environment {
        base_install,
        base_build,
        pkg_env,
    })
}

/// base-install and base-build, with `local` (the repository's builds of
/// packages they hold, for `[base] bootstrap`) in place of the snapshot's
/// packages of the same names.
pub(crate) fn base_layers(
    engine: &Engine,
    pinned: &Pinned,
    local: &[crate::manifest::BuiltDeb],
) -> Result<(Layer, Layer)> {
    let base_install = base_install(engine, pinned, local)?;
    let build_set = engine.repo.base.build.clone();
    let base_build = layer_on(
        engine,
        pinned,
        &base_install,
        (NodeKind::BaseBuild, "base-build"),
        &build_set,
        local,
    )?;
    Ok((base_install, base_build))
}

/// The pkg-env of one package: `requires` (Debian relations) resolved on
/// top of `below`, against the snapshot and the `local` packages built
/// from the repository, which replace the snapshot's packages of the same
/// names (hasher's reuse of earlier results).
pub(crate) fn pkg_env_for(
    engine: &Engine,
    pinned: &Pinned,
    below: &Layer,
    package: &str,
    requires: &[String],
    local: &[crate::manifest::BuiltDeb],
) -> Result<Layer> {
    let name = format!("pkg-env:{package}");
    let (index, status) = resolve_base(pinned, Some(below))?;
    let mut inputs = BuildDepsInputs {
        resolver: Some(comb_distro::solver::RESOLVER.to_string()),
        index,
        architecture: pinned.lock.architecture.clone(),
        status: status.digest,
        requires: sorted(requires),
        local: local_entries(local)?,
        replaces: None,
    };
    let status = status.path;
    // The repository's packages that the layers below hold a copy of, at
    // whatever version: this environment has the repository's instead.
    let installed = match &status {
        Some(path) => installed_in(path)?,
        None => Default::default(),
    };
    let replacing: Vec<(&crate::manifest::BuiltDeb, &str)> = local
        .iter()
        .filter(|l| {
            // Not when the layers below installed this very .deb (a
            // bootstrapped base).
            !below
                .installed
                .contains(&(format!("{}:{}", l.name, l.architecture), l.sha256.clone()))
        })
        .filter_map(|l| {
            installed
                .get(&(l.name.clone(), l.architecture.clone()))
                .map(|base| (l, base.as_str()))
        })
        .collect();
    if !replacing.is_empty() {
        inputs.replaces = Some(
            replacing
                .iter()
                .map(|(l, base)| {
                    let replacement = Replacement {
                        base: base.to_string(),
                        version: l.version.clone(),
                    };
                    (package_arch(l), replacement)
                })
                .collect(),
        );
    }
    let record = engine.node(NodeKind::Resolve, &name, &inputs, |_| {
        // The replacements are dependencies too, at their exact versions:
        // the installed copies move to them.
        let depends: Vec<String> = requires
            .iter()
            .cloned()
            .chain(
                replacing
                    .iter()
                    .map(|(l, _)| format!("{} (= {})", l.name, l.version)),
            )
            .collect();
        let request = comb_distro::relation_field(
            &format!("the build requirements of {package}"),
            "Depends",
            &depends.join(", "),
        )?;
        let system = comb_distro::solver::System::new(
            pinned.universe()?,
            status_packages(status.as_deref())?,
            local_packages(local)?,
            !replacing.is_empty(),
        );
        let mut resolved =
            system
                .resolve(&request)
                .map_err(|unmet| comb_distro::Error::Resolve {
                    names: requires.to_vec(),
                    resolver: "comb's resolver",
                    explanation: unmet.to_string().trim_end().to_string(),
                })?;
        // A copy at the same version is no change to the resolver:
        // installed again from the repository's .deb (see `layer_with`).
        for (l, _) in &replacing {
            if !resolved
                .iter()
                .any(|r| r.name == l.name && r.architecture == l.architecture)
            {
                resolved.push(Resolved {
                    name: l.name.clone(),
                    version: l.version.clone(),
                    architecture: l.architecture.clone(),
                    sha256: l.sha256.clone(),
                    size: l.size,
                    filename: l.filename.clone(),
                });
            }
        }
        resolved.sort();
        let json = serde_json::to_vec(&resolved)
            .map_err(|e| Error::Environment(format!("serialising a resolution: {e}")))?;
        let digest = engine.put_small_blob(&json)?;
        Ok((NodeOutput::Blob(digest), json.len() as u64))
    })?;
    let NodeOutput::Blob(digest) = record.output else {
        return Err(Error::Environment(format!(
            "resolve {name} has no blob output"
        )));
    };
    let added: Vec<Resolved> = serde_json::from_slice(&engine.read_small_blob(&digest)?)
        .map_err(|e| Error::Environment(format!("reading the stored resolution of {name}: {e}")))?;
    layer_with(engine, pinned, below, NodeKind::PkgEnv, &name, added, local)
}

/// The packages a dpkg status file lists, as the resolver takes them.
fn status_packages(status: Option<&Path>) -> Result<Vec<comb_distro::BinaryPackage>> {
    let Some(path) = status else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(comb_distro::parse_status(
        &text,
        &path.display().to_string(),
    )?)
}

/// The repository's packages as the resolver takes them: index records
/// whose `.deb` is the repository's own.
fn local_packages(local: &[crate::manifest::BuiltDeb]) -> Result<Vec<comb_distro::BinaryPackage>> {
    let mut text = String::new();
    for l in local {
        text.push_str(&format!(
            "{}\nFilename: ./{}\nSize: {}\nSHA256: {}\n\n",
            l.control.trim_end(),
            l.filename,
            l.size,
            l.sha256
        ));
    }
    Ok(comb_distro::parse_packages(
        &text,
        "the repository's packages",
    )?)
}

/// A private APT in `work` over the snapshot's indices with `local` (the
/// repository's builds) in place of the snapshot's packages of the same
/// names.
fn aptbox_with_local(
    pinned: &Pinned,
    work: &Path,
    local: &[crate::manifest::BuiltDeb],
) -> Result<Aptbox> {
    std::fs::create_dir(work).map_err(|e| Error::io(format!("creating {}", work.display()), e))?;
    let replaced: std::collections::BTreeSet<&str> =
        local.iter().map(|l| l.name.as_str()).collect();
    let mut indices = Vec::new();
    for (i, f) in pinned.snapshot()?.packages.iter().enumerate() {
        if replaced.is_empty() {
            indices.push(f.local.clone());
            continue;
        }
        let text = std::fs::read_to_string(&f.local)
            .map_err(|e| Error::io(format!("reading {}", f.local.display()), e))?;
        let kept = comb_distro::packages_without(&text, &replaced);
        let path = work.join(format!("snapshot-{i}-Packages"));
        std::fs::write(&path, kept)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        indices.push(path);
    }
    let mut own = String::new();
    for l in local {
        own.push_str(&format!(
            "{}\nFilename: ./{}\nSize: {}\nSHA256: {}\n\n",
            l.control, l.filename, l.size, l.sha256
        ));
    }
    let own_path = work.join("local-Packages");
    std::fs::write(&own_path, own).map_err(|e| Error::io("writing local-Packages", e))?;
    indices.push(own_path);
    Ok(Aptbox::new(
        &work.join("apt"),
        &pinned.lock.architecture,
        &indices,
    )?)
}

/// The resolve node: `names` resolved by APT against the pinned snapshot,
/// on top of the packages installed in `below`. With `local` (a bootstrap
/// from the repository's builds), those take the place of the snapshot's
/// packages of the same names.
fn resolve(
    engine: &Engine,
    pinned: &Pinned,
    set: &str,
    names: Option<&[String]>,
    below: Option<&Layer>,
    local: &[crate::manifest::BuiltDeb],
) -> Result<Vec<Resolved>> {
    let (index, status) = resolve_base(pinned, below)?;
    let inputs = InstallSetInputs {
        index,
        architecture: pinned.lock.architecture.clone(),
        status: status.digest,
        names: match names {
            Some(names) => InstallNames::Named(sorted(names)),
            // The default install set is a function of the snapshot alone.
            None => InstallNames::EssentialAndRequired,
        },
        local: if local.is_empty() {
            None
        } else {
            Some(local_entries(local)?)
        },
    };
    let status = status.path;
    let record = engine.node(NodeKind::Resolve, set, &inputs, |_| {
        let names = match names {
            Some(n) => n.to_vec(),
            None => {
                let mut texts = Vec::new();
                for f in &pinned.snapshot()?.packages {
                    texts.push(
                        std::fs::read_to_string(&f.local)
                            .map_err(|e| Error::io(format!("reading {}", f.local.display()), e))?,
                    );
                }
                essential_and_required_in(&texts.iter().map(String::as_str).collect::<Vec<_>>())
            }
        };
        let resolved = if local.is_empty() {
            let apt = pinned.aptbox(|| engine.store.tmp_path("aptbox"))?;
            apt.resolve(&names, status.as_deref())?
        } else {
            let work = engine.store.tmp_path("aptbox-local");
            let resolved = aptbox_with_local(pinned, &work, local)
                .and_then(|apt| Ok(apt.resolve_preferring_index(&names, status.as_deref())?));
            let _ = std::fs::remove_dir_all(&work);
            resolved?
        };
        let json = serde_json::to_vec(&resolved)
            .map_err(|e| Error::Environment(format!("serialising a resolution: {e}")))?;
        let digest = engine.put_small_blob(&json)?;
        Ok((NodeOutput::Blob(digest), json.len() as u64))
    })?;
    let NodeOutput::Blob(digest) = record.output else {
        return Err(Error::Environment(format!(
            "resolve {set} has no blob output"
        )));
    };
    serde_json::from_slice(&engine.read_small_blob(&digest)?)
        .map_err(|e| Error::Environment(format!("reading the stored resolution of {set}: {e}")))
}

/// The dpkg status of the layers below a resolution: its digest (an
/// input) and its path (for APT).
struct StatusBelow {
    digest: OrNone<Hash<Blake3>>,
    path: Option<PathBuf>,
}

/// What every resolve depends on besides its own inputs: the snapshot and
/// the dpkg status of the layer below.
fn resolve_base(pinned: &Pinned, below: Option<&Layer>) -> Result<(NodeKey, StatusBelow)> {
    let status = match below {
        Some(layer) => layer.status()?,
        None => None,
    };
    Ok((
        NodeKey::known(&pinned.key),
        StatusBelow {
            digest: OrNone(status.map(|(_, digest)| *digest)),
            path: status.map(|(path, _)| path.clone()),
        },
    ))
}

fn package_arch(l: &crate::manifest::BuiltDeb) -> PackageArch {
    PackageArch {
        name: l.name.clone(),
        architecture: l.architecture.clone(),
    }
}

/// The repository's packages as a resolve's inputs hold them.
fn local_entries(local: &[crate::manifest::BuiltDeb]) -> Result<BTreeMap<PackageArch, PackageRef>> {
    local
        .iter()
        .map(|l| {
            let sha256 = Hash::from_hex(&l.sha256).map_err(|e| {
                Error::Environment(format!("{} {}: a bad sha256: {e}", l.name, l.version))
            })?;
            Ok((
                package_arch(l),
                PackageRef {
                    version: l.version.clone(),
                    sha256,
                },
            ))
        })
        .collect()
}

/// The packages a dpkg status file lists as installed: (name,
/// architecture) to version.
fn installed_in(status: &Path) -> Result<std::collections::BTreeMap<(String, String), String>> {
    let text = std::fs::read_to_string(status)
        .map_err(|e| Error::io(format!("reading {}", status.display()), e))?;
    Ok(comb_distro::installed_packages(
        &text,
        &status.display().to_string(),
    )?)
}

fn sorted(names: &[String]) -> Vec<String> {
    let mut v = names.to_vec();
    v.sort();
    v
}

/// The SHA-256 the index gives for a resolved package's `.deb`.
fn sha256_of(r: &Resolved) -> Result<Hash<Sha256>> {
    Hash::from_hex(&r.sha256).map_err(|e| {
        Error::Environment(format!(
            "{} {}: the index gives a bad sha256: {e}",
            r.name, r.version
        ))
    })
}

/// The store digest of a resolved package's `.deb`.
fn deb_digest(r: &Resolved) -> Result<Digest> {
    Ok(sha256_of(r)?.digest(r.size))
}

/// The fetch nodes: every `.deb` of `packages` in the store, downloaded
/// in parallel and verified if missing. Returns their paths, in order.
pub(crate) fn fetch(
    engine: &Engine,
    pinned: &Pinned,
    packages: &[Resolved],
) -> Result<Vec<PathBuf>> {
    let mirror = pinned.lock.mirror();
    let mut missing = Vec::new();
    for r in packages {
        if engine.store.blob_path(&deb_digest(r)?).is_none() {
            missing.push(r);
        }
    }
    if !missing.is_empty() {
        let items: Vec<FetchItem> = missing
            .iter()
            .map(|r| FetchItem {
                uri: mirror.pool_url(&r.filename),
                dest: engine.store.tmp_path("deb"),
                sha256: r.sha256.clone(),
                size: r.size,
            })
            .collect();
        let results =
            Fetcher::default().parallel_fetch(&items, engine.jobs, |done, total, bytes| {
                engine.observer.fetch_progress(done, total, bytes)
            });
        let mut errors = Vec::new();
        for ((r, item), result) in missing.iter().zip(&items).zip(results) {
            let stored = result.map_err(Error::from).and_then(|_| {
                let digest = deb_digest(r)?;
                let mut file = std::fs::File::open(&item.dest)
                    .map_err(|e| Error::io(format!("opening {}", item.dest.display()), e))?;
                engine.store.put_blob_expecting(&mut file, digest)?;
                Ok(digest)
            });
            let _ = std::fs::remove_file(&item.dest);
            let inputs = FetchInputs {
                sha256: Hex(sha256_of(r)?),
                size: r.size,
            };
            let name = format!("{}_{}_{}", r.name, r.version, r.architecture);
            match stored {
                Ok(digest) => {
                    engine.node(NodeKind::Fetch, &name, &inputs, |_| {
                        Ok((NodeOutput::Blob(digest), r.size))
                    })?;
                }
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        if !errors.is_empty() {
            return Err(Error::Environment(format!(
                "{} of {} downloads failed (nothing corrupt was kept):\n  {}",
                errors.len(),
                items.len(),
                errors.join("\n  ")
            )));
        }
    }
    packages
        .iter()
        .map(|r| {
            let digest = deb_digest(r)?;
            engine
                .store
                .blob_path(&digest)
                .ok_or_else(|| Error::Environment(format!("{} vanished from the store", digest)))
        })
        .collect()
}

/// The inputs of a layer stage.
fn layer_inputs(stage: NodeKind, below: Option<&Layer>, added: &[Resolved]) -> Result<LayerInputs> {
    let mut packages = BTreeMap::new();
    for r in added {
        packages.insert(
            PackageArch {
                name: r.name.clone(),
                architecture: r.architecture.clone(),
            },
            PackageRef {
                version: r.version.clone(),
                sha256: sha256_of(r)?,
            },
        );
    }
    Ok(LayerInputs {
        stage: LayerStage(stage),
        recipe: LAYER_RECIPE.to_string(),
        below: OrNone(below.map(|l| NodeKey::known(&l.key))),
        packages,
    })
}

/// base-install: unpack the install set into an empty layer, then let
/// dpkg configure it inside the sandbox as R (the two stages of a
/// bootstrap). No maintainer script runs outside the sandbox. As sbuild
/// does, debconf is told that man-db need not rebuild its database, which
/// it would do in every environment that installs a manual page.
fn base_install(
    engine: &Engine,
    pinned: &Pinned,
    local: &[crate::manifest::BuiltDeb],
) -> Result<Layer> {
    let install = engine.repo.base.install.clone();
    let added = resolve(
        engine,
        pinned,
        "base-install",
        install.as_deref(),
        None,
        local,
    )?;
    if added.is_empty() {
        return Err(Error::Input(
            "the install set is empty: set [base] install in comb.toml".into(),
        ));
    }
    let inputs = layer_inputs(NodeKind::BaseInstall, None, &added)?;
    let record = engine.node(NodeKind::BaseInstall, "base-install", &inputs, |key| {
        let name = format!("base-install-{key}");
        let remote = shared_bases(engine, local)?;
        if let Some(made) = remote.map_or(Ok(None), |r| {
            r.fetch_layer(engine, "base-install", key, &name)
        })? {
            return Ok(made);
        }
        let debs = fetch(engine, pinned, &added)?;
        let tree = engine.store.begin_tree()?;
        let unpacked = tree.path().join("0");
        let configured = tree.path().join("1");
        // R's files, also when C is an ordinary user.
        let set_id =
            comb_sandbox::caller::as_layer_owner(|| unpack_base(&unpacked, &debs, &added))?;
        let script = "dpkg --force-depends --install /.comb/debs/*.deb && \
            dpkg --force-depends --configure --pending && \
            if ! grep -q '^builder:' /etc/passwd; then \
              echo 'builder:x:1000:1000:comb builder:/home/builder:/bin/sh' >> /etc/passwd && \
              echo 'builder:x:1000:' >> /etc/group; fi && \
            mkdir -p /home/builder && chown 1000:1000 /home/builder && \
            if command -v debconf-set-selections >/dev/null; then \
              echo 'man-db man-db/auto-update boolean false' | debconf-set-selections; fi";
        let packages = Packages {
            debs: &debs,
            added: &added,
            set_id: &set_id,
        };
        install_in_sandbox(
            engine,
            "base-install",
            std::slice::from_ref(&unpacked),
            &configured,
            &packages,
            script,
        )?;
        make_whole(tree.path(), &unpacked, &configured)?;
        tree.publish(&name)?;
        if let Some(remote) = remote {
            remote.share_layer(engine, key, &name)?;
        }
        Ok(crate::engine::Made::from((
            NodeOutput::Tree(name.clone()),
            engine.store.tree_size(&name)?,
        )))
    })?;
    layer_from(engine, &record, None, added)
}

/// A layer that installs `names` (with what they need) on top of `below`.
fn layer_on(
    engine: &Engine,
    pinned: &Pinned,
    below: &Layer,
    (stage, name): (NodeKind, &str),
    names: &[String],
    local: &[crate::manifest::BuiltDeb],
) -> Result<Layer> {
    let added = resolve(engine, pinned, name, Some(names), Some(below), local)?;
    layer_with(engine, pinned, below, stage, name, added, local)
}

/// The layer that installs exactly `added` on top of `below`.
///
/// A pkg-env's key is base-build's and its whole package set, however it
/// is made: it stands on the largest environment in the store whose
/// packages it all has (see [`stand_on`]) and installs only the rest, so
/// the packages most environments share are installed once.
fn layer_with(
    engine: &Engine,
    pinned: &Pinned,
    below: &Layer,
    stage: NodeKind,
    name: &str,
    added: Vec<Resolved>,
    local: &[crate::manifest::BuiltDeb],
) -> Result<Layer> {
    let inputs = layer_inputs(stage, Some(below), &added)?;
    // Chosen (and a shared layer made) before this node's own timing.
    let on = if stage == NodeKind::PkgEnv
        && added.len() > 1
        && sharing()
        && !engine.planning()
        && !engine.has_node(&inputs_key(&inputs)?)?
    {
        stand_on(engine, pinned, below, &inputs.packages, &added, local)?
    } else {
        None
    };
    let record = engine.node(stage, name, &inputs, |key| {
        let tree_name = format!("{}-{key}", stage.as_str());
        let remote = match stage {
            NodeKind::BaseBuild => shared_bases(engine, local)?,
            _ => None,
        };
        if let Some(made) =
            remote.map_or(Ok(None), |r| r.fetch_layer(engine, name, key, &tree_name))?
        {
            return Ok(made);
        }
        let tree = engine.store.begin_tree()?;
        let upper = tree.path().join("0");
        let (lower, install): (&[PathBuf], Vec<Resolved>) = match &on {
            Some(on) => (
                &on.paths,
                added.iter().filter(|r| !on.has(r)).cloned().collect(),
            ),
            None => (&below.paths, added.clone()),
        };
        if install.is_empty() {
            comb_sandbox::caller::as_layer_owner(|| std::fs::create_dir(&upper))
                .map_err(|e| Error::io(format!("creating {}", upper.display()), e))?;
        } else {
            let debs = fetch(engine, pinned, &install)?;
            let script = if lower.iter().any(|p| p.join("usr/bin/apt-get").exists()) {
                // What is installed below at the same version is a copy
                // the repository replaces (APT would see nothing to do).
                let same = match dpkg_status(lower) {
                    Some(path) => installed_in(&path)?,
                    None => Default::default(),
                };
                let (again, new): (Vec<Resolved>, Vec<Resolved>) =
                    install.iter().cloned().partition(|r| {
                        same.get(&(r.name.clone(), r.architecture.clone())) == Some(&r.version)
                    });
                apt_install_script(&new, &again)
            } else {
                dpkg_install_script(&debs, &install)?
            };
            let set_id = scan_set_id(&debs, &install)?;
            let packages = Packages {
                debs: &debs,
                added: &install,
                set_id: &set_id,
            };
            install_in_sandbox(engine, name, lower, &upper, &packages, &script)?;
        }
        if stage == NodeKind::BaseBuild {
            match &below.paths[..] {
                [whole] => make_whole(tree.path(), whole, &upper)?,
                _ => {
                    return Err(Error::Environment(format!(
                        "base-install has {} layers, not one: run `comb gc --max-age 0`",
                        below.paths.len()
                    )))
                }
            }
        }
        if let Some(on) = &on {
            tree.layer_on(std::slice::from_ref(&on.tree))?;
        }
        tree.publish(&tree_name)?;
        if let Some(remote) = remote {
            remote.share_layer(engine, key, &tree_name)?;
        }
        Ok(crate::engine::Made::from((
            NodeOutput::Tree(tree_name.clone()),
            engine.store.tree_size(&tree_name)?,
        )))
    })?;
    layer_from(engine, &record, Some(below), added)
}

/// The remote cache the base environments are shared through: the
/// snapshot's bases (a bootstrapped base, made of this repository's own
/// builds, is made where it is needed).
fn shared_bases<'e>(
    engine: &'e Engine,
    local: &[crate::manifest::BuiltDeb],
) -> Result<Option<&'e crate::remote::RemoteCache>> {
    match local.is_empty() {
        true => engine.remote(),
        false => Ok(None),
    }
}

fn inputs_key(inputs: &LayerInputs) -> Result<String> {
    use crate::inputs::StageInputs;
    inputs
        .key()
        .map_err(|e| Error::Environment(format!("describing a layer: {e}")))
}

/// Fewer packages than this in common with an environment already made
/// are not worth a layer of their own.
const MIN_SHARED: usize = 8;
/// Most trees a pkg-env stands on above base-build, itself included: each
/// is one more overlay layer.
const MAX_STACK: usize = 6;
/// The name of the layers made of what environments have in common.
const SHARED_NAME: &str = "shared-env";

/// Whether pkg-envs stand on each other: `COMB_SHARE_LAYERS=0` makes each
/// install its whole set in one layer, as comb did before (to compare).
fn sharing() -> bool {
    std::env::var_os("COMB_SHARE_LAYERS").is_none_or(|v| v != "0")
}

/// An environment in the store that a new pkg-env stands on.
struct Standing {
    tree: String,
    /// Its layer directories with those below it, bottom first.
    paths: Vec<PathBuf>,
    packages: BTreeMap<PackageArch, PackageRef>,
}

impl Standing {
    fn has(&self, r: &Resolved) -> bool {
        holds(&self.packages, r)
    }
}

/// What a new pkg-env of `want` (over `base`) stands on: the largest
/// pkg-env in the store whose packages it all has, or, when it has at
/// least [`MIN_SHARED`] more packages in common with another one, a new
/// layer of just those (the part that installs by itself), which both
/// and the next environments that share it then stand on. Which one it
/// stands on changes what is installed where, never the key or the
/// environment's packages.
fn stand_on(
    engine: &Engine,
    pinned: &Pinned,
    base: &Layer,
    want: &BTreeMap<PackageArch, PackageRef>,
    added: &[Resolved],
    local: &[crate::manifest::BuiltDeb],
) -> Result<Option<Standing>> {
    let made = environments_on(engine, base)?;
    let common = |packages: &BTreeMap<PackageArch, PackageRef>| {
        packages
            .iter()
            .filter(|(k, v)| want.get(*k) == Some(*v))
            .count()
    };
    let subset = made
        .iter()
        .filter(|m| m.packages.len() < want.len() && common(&m.packages) == m.packages.len())
        .max_by_key(|m| m.packages.len());
    let best = subset.map_or(0, |m| m.packages.len());
    let overlap = made
        .iter()
        .map(|m| (common(&m.packages), m))
        .filter(|(n, m)| *n < m.packages.len() && *n < want.len())
        .max_by_key(|(n, _)| *n);
    if let Some((n, other)) = overlap.filter(|(n, _)| *n >= best + MIN_SHARED) {
        let shared: Vec<Resolved> = added
            .iter()
            .filter(|r| holds(&other.packages, r))
            .cloned()
            .collect();
        debug_assert_eq!(shared.len(), n);
        let system = comb_distro::solver::System::new(
            pinned.universe()?,
            status_packages(base.status()?.map(|(path, _)| path.as_path()))?,
            local_packages(local)?,
            false,
        );
        // A set the resolver did not make (a `with:` list resolved by APT
        // with repository packages) may not check: then no shared layer.
        if let Ok(part) = system.installable_part(&shared) {
            if part.len() >= best + MIN_SHARED && part.len() < want.len() {
                let layer = layer_with(
                    engine,
                    pinned,
                    base,
                    NodeKind::PkgEnv,
                    SHARED_NAME,
                    part,
                    local,
                )?;
                let packages = layer_inputs(NodeKind::PkgEnv, Some(base), &layer.added)?.packages;
                return Ok(Some(Standing {
                    tree: layer.tree,
                    paths: layer.paths,
                    packages,
                }));
            }
        }
    }
    Ok(subset.map(|m| Standing {
        tree: m.tree.clone(),
        paths: m.paths.clone(),
        packages: m.packages.clone(),
    }))
}

/// Whether a layer's `packages` hold exactly the resolved package `r`.
fn holds(packages: &BTreeMap<PackageArch, PackageRef>, r: &Resolved) -> bool {
    let key = PackageArch {
        name: r.name.clone(),
        architecture: r.architecture.clone(),
    };
    packages
        .get(&key)
        .is_some_and(|p| p.version == r.version && sha256_of(r).is_ok_and(|h| h == p.sha256))
}

/// The pkg-envs in the store over `base` that a new one may stand on.
fn environments_on(engine: &Engine, base: &Layer) -> Result<Vec<Standing>> {
    let records = engine.index().nodes_of_kind(NodeKind::PkgEnv)?;
    let mut made = Vec::new();
    for record in records {
        let Some(inputs) = crate::inputs::layer_of_record(&record.description) else {
            continue;
        };
        if inputs.below.0.as_ref().map(ToString::to_string).as_deref() != Some(base.key.as_str()) {
            continue;
        }
        let NodeOutput::Tree(tree) = &record.output else {
            continue;
        };
        if !engine.store.has_output(&record.output) {
            continue;
        }
        let trees = tree_chain(engine, tree)?;
        if trees.len() >= MAX_STACK {
            continue;
        }
        let mut paths = base.paths.clone();
        for t in &trees {
            paths.extend(own_dirs(engine, t)?);
        }
        made.push(Standing {
            tree: tree.clone(),
            paths,
            packages: inputs.packages,
        });
    }
    Ok(made)
}

/// `tree` and the trees it is layered on, bottom first.
fn tree_chain(engine: &Engine, tree: &str) -> Result<Vec<String>> {
    let mut chain = vec![tree.to_string()];
    loop {
        let below = engine.store.tree_layered_on(&chain[0])?;
        if below.is_empty() {
            return Ok(chain);
        }
        if chain.len() + below.len() > 4 * MAX_STACK {
            return Err(Error::Environment(format!(
                "the layers under {tree} are too deep: run `comb gc --max-age 0` to start afresh"
            )));
        }
        chain.splice(0..0, below);
    }
}

/// A layer tree's own layer directories (`0`, `1`, …), bottom first.
fn own_dirs(engine: &Engine, tree: &str) -> Result<Vec<PathBuf>> {
    let root = engine
        .store
        .tree_path(tree)
        .ok_or_else(|| Error::Environment(format!("layer {tree} is missing from the store")))?;
    let mut own: Vec<(u32, PathBuf)> = std::fs::read_dir(&root)
        .map_err(|e| Error::io(format!("listing {}", root.display()), e))?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((n, e.path()))
        })
        .collect();
    own.sort();
    Ok(own.into_iter().map(|(_, p)| p).collect())
}

fn layer_from(
    engine: &Engine,
    record: &NodeRecord,
    below: Option<&Layer>,
    added: Vec<Resolved>,
) -> Result<Layer> {
    let mut installed = below.map(|b| (*b.installed).clone()).unwrap_or_default();
    installed.extend(
        added
            .iter()
            .map(|r| (format!("{}:{}", r.name, r.architecture), r.sha256.clone())),
    );
    let NodeOutput::Tree(name) = &record.output else {
        return Err(Error::Environment("a layer node without a tree".into()));
    };
    let chain = tree_chain(engine, name)?;
    let mut paths = match below {
        Some(b) if !is_whole(engine, &chain[0]) => b.paths.clone(),
        _ => Vec::new(),
    };
    for tree in chain {
        paths.extend(own_dirs(engine, &tree)?);
    }
    Ok(Layer {
        stage: record.kind,
        key: record.key.clone(),
        tree: name.clone(),
        paths,
        added,
        installed: std::sync::Arc::new(installed),
        status: Default::default(),
    })
}

/// Makes the tree being built at `dir` a whole root: `upper` applied to
/// `lower` as one layer `0`, then marked [`WHOLE`]. Every environment
/// stands on base-build, and each layer fewer under it saves every build
/// a few percent (overlayfs looks a path up in each layer in turn), so
/// base-install and base-build are one layer: base-install's files are
/// hard-linked, not copied, and both trees stay usable on their own.
fn make_whole(dir: &Path, lower: &Path, upper: &Path) -> Result<()> {
    let flat = dir.join("flat");
    let within = |p: &Path| p.parent() == Some(dir);
    comb_sandbox::caller::as_layer_owner(|| -> Result<()> {
        comb_sandbox::flatten::flatten(lower, upper, &flat).map_err(Error::Environment)?;
        for used in [upper, lower].into_iter().filter(|p| within(p)) {
            std::fs::remove_dir_all(used)
                .map_err(|e| Error::io(format!("removing {}", used.display()), e))?;
        }
        let layer = dir.join("0");
        std::fs::rename(&flat, &layer)
            .map_err(|e| Error::io(format!("renaming {}", flat.display()), e))
    })?;
    std::fs::write(dir.join(WHOLE), "")
        .map_err(|e| Error::io(format!("marking {} whole", dir.display()), e))
}

/// Whether the layer tree `tree` is a whole root (see [`make_whole`]).
fn is_whole(engine: &Engine, tree: &str) -> bool {
    engine
        .store
        .tree_path(tree)
        .is_some_and(|p| p.join(WHOLE).is_file())
}

/// The first stage of a bootstrap, as C: merged-/usr symlinks, every
/// package's data unpacked (without set-id bits), an empty dpkg database, and policy-rc.d so no
/// maintainer script starts a service.
fn unpack_base(root: &Path, debs: &[PathBuf], added: &[Resolved]) -> Result<Vec<deb::SetIdFile>> {
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|e| Error::io(format!("creating {}", p.display()), e))
    };
    let write = |p: &Path, text: &str, mode: u32| -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(p, text)
            .and_then(|()| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)))
            .map_err(|e| Error::io(format!("writing {}", p.display()), e))
    };
    for dir in [
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib64",
        "etc/dpkg/dpkg.cfg.d",
    ] {
        mkdir(&root.join(dir))?;
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(target, root.join(link))
            .map_err(|e| Error::io(format!("creating {link}"), e))?;
    }
    // In parallel: where two packages ship one path, which copy lands here
    // does not matter, as dpkg unpacks every package again above it.
    let set_id = on_every_core(debs.len(), |i| {
        let report = deb::unpack_data(
            &debs[i],
            root,
            &UnpackOptions {
                merged_usr: true,
                ..UnpackOptions::default()
            },
        )
        .map_err(|e| {
            Error::Environment(format!(
                "unpacking {} {}: {e}",
                added[i].name, added[i].version
            ))
        })?;
        Ok(report.set_id)
    })?;
    let dpkg = root.join("var/lib/dpkg");
    for dir in ["info", "updates", "triggers"] {
        mkdir(&dpkg.join(dir))?;
    }
    write(&dpkg.join("status"), "", 0o644)?;
    write(&dpkg.join("available"), "", 0o644)?;
    // Filled inside the sandbox, before dpkg runs, with the set-id files
    // that were unpacked without their bits.
    write(&dpkg.join("statoverride"), "", 0o644)?;
    // No fsync per file: a layer is published whole after a syncfs.
    write(
        &root.join("etc/dpkg/dpkg.cfg.d/comb-unsafe-io"),
        "force-unsafe-io\n",
        0o644,
    )?;
    // base-files' postinst makes /var/mail set-gid `mail` unless it
    // exists, and the sandbox refuses set-id modes: C makes it first.
    let mail = root.join("var/mail");
    mkdir(&mail)?;
    std::os::unix::fs::chown(&mail, Some(0), Some(MAIL_GID))
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&mail, std::fs::Permissions::from_mode(0o2775))
        })
        .map_err(|e| Error::io("creating var/mail", e))?;
    write(
        &root.join("usr/sbin/policy-rc.d"),
        "#!/bin/sh\n# comb: no service starts while an environment is built.\nexit 101\n",
        0o755,
    )?;
    Ok(set_id)
}

/// Installs the already resolved packages with the environment's own APT,
/// from a flat repository of exactly those `.deb`s: APT orders
/// pre-dependencies and triggers as it would on a real system, and has
/// nothing else to choose from.
fn apt_install_script(added: &[Resolved], again: &[Resolved]) -> String {
    let wanted: Vec<String> = added
        .iter()
        .map(|r| format!("'{}:{}={}'", r.name, r.architecture, r.version))
        .collect();
    // Installed again by dpkg from their own .debs: at the same version,
    // APT cannot tell the two copies apart.
    let again = if again.is_empty() {
        String::new()
    } else {
        let files: Vec<String> = again
            .iter()
            .map(|r| format!("/.comb/debs/'{}'", staged_name(r)))
            .collect();
        format!(" && dpkg --install {}", files.join(" "))
    };
    if wanted.is_empty() {
        return format!("true{again}");
    }
    let opts = "-o Dir::Etc::SourceList=/.comb/sources.list -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists=/tmp/comb-apt/lists -o Dir::Cache=/tmp/comb-apt/cache \
        -o Dir::Log=/tmp/comb-apt/log -o APT::Sandbox::User=root -o Debug::NoLocking=true \
        -o Acquire::Languages=none -o APT::Install-Recommends=false -o Dpkg::Use-Pty=false";
    format!(
        "mkdir -p /tmp/comb-apt/lists/partial /tmp/comb-apt/cache/archives/partial /tmp/comb-apt/log && \
         echo 'deb [trusted=yes] file:/.comb/debs ./' > /.comb/sources.list && \
         apt-get {opts} -q update && \
         apt-get {opts} -q -y --allow-downgrades install {}{again}",
        wanted.join(" ")
    )
}

/// Without APT in the environment, dpkg installs the packages in batches
/// ordered by their pre-dependencies (each batch's pre-dependencies are in
/// earlier batches), then configures whatever is left.
fn dpkg_install_script(debs: &[PathBuf], added: &[Resolved]) -> Result<String> {
    let mut pending: Vec<(String, Vec<String>)> = Vec::new();
    for (path, r) in debs.iter().zip(added) {
        let control = deb::DebArchive::open(path)
            .and_then(|d| d.control())
            .map_err(|e| Error::Environment(format!("reading {} {}: {e}", r.name, r.version)))?;
        let pre: Vec<String> = control
            .lines()
            .find_map(|l| l.strip_prefix("Pre-Depends:"))
            .map(|v| {
                v.split([',', '|'])
                    .filter_map(|alt| alt.split([' ', '(', ':']).find(|t| !t.is_empty()))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        pending.push((
            staged_name(r),
            pre.into_iter().filter(|n| *n != r.name).collect(),
        ));
    }
    let names: Vec<&str> = added.iter().map(|r| r.name.as_str()).collect();
    let mut waiting: Vec<(usize, &Vec<String>)> = pending
        .iter()
        .enumerate()
        .map(|(i, (_, pre))| (i, pre))
        .collect();
    let mut steps = Vec::new();
    while !waiting.is_empty() {
        let left: Vec<&str> = waiting.iter().map(|(i, _)| names[*i]).collect();
        let (ready, blocked): (Vec<_>, Vec<_>) = waiting
            .iter()
            .partition(|(_, pre)| !pre.iter().any(|p| left.contains(&p.as_str())));
        // A cycle of pre-dependencies: install the rest together.
        let batch = if ready.is_empty() {
            waiting.clone()
        } else {
            ready
        };
        let files: Vec<String> = batch
            .iter()
            .map(|(i, _)| format!("/.comb/debs/{}", pending[*i].0))
            .collect();
        steps.push(format!(
            "dpkg --force-depends --install {}",
            files.join(" ")
        ));
        waiting = if batch.len() == waiting.len() {
            Vec::new()
        } else {
            blocked
        };
    }
    steps.push("dpkg --configure --pending".to_string());
    Ok(steps.join(" && "))
}

/// The file name a package's `.deb` has in the staged directory.
fn staged_name(r: &Resolved) -> String {
    format!(
        "{}_{}_{}.deb",
        r.name,
        r.version.replace(':', "%3a"),
        r.architecture
    )
}

/// The packages a layer installs: their `.deb`s (in the store), what the
/// resolver said of them, and their set-id files.
#[derive(Clone, Copy)]
struct Packages<'a> {
    debs: &'a [PathBuf],
    added: &'a [Resolved],
    set_id: &'a [deb::SetIdFile],
}

/// Runs `script` as R in a sandbox over `lower`, with the `.deb`s bound at
/// `/.comb/debs`, keeping the upper layer at `upper`.
fn install_in_sandbox(
    engine: &Engine,
    what: &str,
    lower: &[PathBuf],
    upper: &Path,
    packages: &Packages,
    script: &str,
) -> Result<()> {
    let Packages {
        debs,
        added,
        set_id,
    } = *packages;
    let staging = engine.store.tmp_path("debs");
    let result = (|| {
        stage_debs(&staging, debs, added)?;
        // dpkg installs the set-id files of these packages without the
        // bits (the sandbox refuses set-id modes).
        let overrides = deb::statoverride_for(set_id);
        let prelude = if overrides.is_empty() {
            String::new()
        } else {
            std::fs::write(staging.join("statoverride"), &overrides)
                .map_err(|e| Error::io("writing statoverride", e))?;
            // Appended unless dpkg already has an override for the path
            // (it refuses two).
            "touch /var/lib/dpkg/statoverride && \
             while read -r owner group mode path; do \
               cut -d' ' -f4- /var/lib/dpkg/statoverride | grep -qxF \"$path\" || \
                 echo \"$owner $group $mode $path\" >> /var/lib/dpkg/statoverride; \
             done < /.comb/debs/statoverride && "
                .to_string()
        };
        let mut spec = Spec::new(
            lower.to_vec(),
            vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("set -e; {prelude}{script}"),
            ],
        );
        spec.identity = Identity::Root;
        spec.cancel = engine.cancel.clone();
        spec.keep_upper = Some(upper.to_path_buf());
        spec.binds.push(Bind {
            source: staging.clone(),
            target: PathBuf::from(DEBS_INSIDE),
            writable: false,
        });
        spec.env = vec![
            ("DEBIAN_FRONTEND".into(), "noninteractive".into()),
            ("DEBCONF_NONINTERACTIVE_SEEN".into(), "true".into()),
            ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ];
        spec.limits = engine.limits(None, INSTALL_TIMEOUT);
        spec.merge_output = true;
        let outcome = comb_sandbox::run_streaming(&engine.sandbox, &spec, |_, chunk| {
            engine.observer.output(what, chunk)
        })?;
        if !outcome.status.success() || outcome.killed_by.is_some() {
            let mut log = String::from_utf8_lossy(&outcome.stdout).into_owned();
            log.push_str(&String::from_utf8_lossy(&outcome.stderr));
            let message = match outcome.killed_by {
                Some(kill) => outcome.limits.reached(kill),
                None => format!("the installation exited with {}", outcome.status.code()),
            };
            let _ = std::fs::remove_dir_all(upper);
            return Err(Error::Stage {
                stage: "install",
                name: what.to_string(),
                message,
                log: tail(&log, 40),
                stored_log: crate::logs::store(engine, &log).ok(),
            });
        }
        // The bind's mount point is comb's, not the layer's.
        let _ = std::fs::remove_dir_all(upper.join(".comb"));
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// A directory of hard links to the `.deb` blobs, named as Debian names
/// them (dpkg does not care; people reading a log do), with a `Packages`
/// index for APT.
fn stage_debs(dir: &Path, debs: &[PathBuf], added: &[Resolved]) -> Result<()> {
    std::fs::create_dir(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut index = String::new();
    for (path, r) in debs.iter().zip(added) {
        let file = staged_name(r);
        let target = dir.join(&file);
        std::fs::hard_link(path, &target)
            .or_else(|_| std::fs::copy(path, &target).map(|_| ()))
            .map_err(|e| Error::io(format!("staging {}", path.display()), e))?;
        let control = deb::DebArchive::open(path)
            .and_then(|d| d.control())
            .map_err(|e| Error::Environment(format!("reading {} {}: {e}", r.name, r.version)))?;
        index.push_str(control.trim_end());
        index.push_str(&format!(
            "\nFilename: ./{file}\nSize: {}\nSHA256: {}\n\n",
            r.size, r.sha256
        ));
    }
    std::fs::write(dir.join("Packages"), index).map_err(|e| Error::io("writing Packages", e))?;
    Ok(())
}

/// `work(i)` for every `i < count`, in parallel on the current rayon
/// pool (the run's, inside a job); the results concatenated.
fn on_every_core<T: Send>(
    count: usize,
    work: impl Fn(usize) -> Result<Vec<T>> + Sync + Send,
) -> Result<Vec<T>> {
    use rayon::prelude::*;
    let parts: Vec<Vec<T>> = (0..count)
        .into_par_iter()
        .map(work)
        .collect::<Result<_>>()?;
    Ok(parts.into_iter().flatten().collect())
}

/// The set-id files of all `debs` (reading them means decompressing each
/// package's data once).
fn scan_set_id(debs: &[PathBuf], added: &[Resolved]) -> Result<Vec<deb::SetIdFile>> {
    on_every_core(debs.len(), |i| {
        set_id_files(&debs[i]).map_err(|e| {
            Error::Environment(format!(
                "reading {} {}: {e}",
                added[i].name, added[i].version
            ))
        })
    })
}

/// The set-id regular files a `.deb` would install, named as dpkg names
/// them (`/usr/bin/passwd`).
fn set_id_files(path: &Path) -> comb_distro::Result<Vec<deb::SetIdFile>> {
    let mut found = Vec::new();
    deb::DebArchive::open(path)?.data_entries(|entry, _| {
        if entry.kind == deb::EntryKind::File && entry.mode & 0o6000 != 0 {
            let name = entry.path.to_string_lossy();
            found.push(deb::SetIdFile {
                path: format!("/{}", name.trim_start_matches("./").trim_start_matches('/')),
                uid: entry.uid,
                gid: entry.gid,
                mode: entry.mode,
            });
        }
        Ok(())
    })?;
    Ok(found)
}

/// The dpkg status file of the topmost layer that has one.
fn dpkg_status(paths: &[PathBuf]) -> Option<PathBuf> {
    paths
        .iter()
        .rev()
        .map(|p| p.join("var/lib/dpkg/status"))
        .find(|p| p.is_file())
}

fn blake3_file(path: &Path) -> Result<Hash<Blake3>> {
    crate::source::blake3_of(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a command in an environment: an overlay of its layers and a fresh
/// upper directory, as R or U, with `binds` of the host.
pub fn run_in(
    engine: &Engine,
    env: &Environment,
    identity: Identity,
    binds: Vec<Bind>,
    command: Vec<String>,
) -> Result<comb_sandbox::Outcome> {
    let mut spec = Spec::new(env.top().paths.clone(), command);
    spec.identity = identity;
    spec.binds = binds;
    spec.cancel = engine.cancel.clone();
    if identity == Identity::Builder {
        spec.cwd = PathBuf::from("/home/builder");
    }
    Ok(comb_sandbox::run_streaming(
        &engine.sandbox,
        &spec,
        |stream, bytes| {
            use std::io::Write;
            let _ = match stream {
                comb_sandbox::Stream::Stdout => std::io::stdout().write_all(bytes),
                comb_sandbox::Stream::Stderr => std::io::stderr().write_all(bytes),
            };
        },
    )?)
}

/// What the base environment holds, for a plan: the packages the base
/// layers' dpkg status lists when they are built (`true`); when they are
/// not, what they would hold (`false`): base-install's resolution (APT's,
/// as a build makes it) and base-build's set resolved on it by comb's
/// resolver.
pub(crate) fn planned_base(
    engine: &Engine,
    pinned: &Pinned,
) -> Result<(Vec<comb_distro::BinaryPackage>, bool)> {
    match base_layers(engine, pinned, &[]) {
        Ok((_, base_build)) => {
            let installed = match base_build.status()? {
                Some((path, _)) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                    comb_distro::parse_status(&text, &path.display().to_string())?
                }
                None => Vec::new(),
            };
            Ok((installed, true))
        }
        Err(Error::WouldBuild(_)) => {
            let install = engine.repo.base.install.clone();
            let set = resolve(
                engine,
                pinned,
                "base-install",
                install.as_deref(),
                None,
                &[],
            )?;
            let universe = pinned.universe()?;
            let mut installed: Vec<comb_distro::BinaryPackage> = set
                .iter()
                .filter_map(|r| universe.find(&r.name, &r.version).cloned())
                .collect();
            let build = comb_distro::relation_field(
                "[base] build of comb.toml",
                "Depends",
                &engine.repo.base.build.join(", "),
            )?;
            let system =
                comb_distro::solver::System::new(universe, installed.clone(), Vec::new(), false);
            let added = system
                .resolve(&build)
                .map_err(|unmet| comb_distro::Error::Resolve {
                    names: engine.repo.base.build.clone(),
                    resolver: "comb's resolver",
                    explanation: unmet.to_string().trim_end().to_string(),
                })?;
            installed.extend(
                added
                    .iter()
                    .filter_map(|r| universe.find(&r.name, &r.version).cloned()),
            );
            Ok((installed, false))
        }
        Err(e) => Err(e),
    }
}
