//! What comb adds to a native recipe's packages, as debhelper adds it to a
//! Debian maintainer's: stripped binaries with their debug information in
//! `-dbgsym` packages, `shlibs` (and `symbols`) files and the `ldconfig`
//! trigger for shared libraries, `Depends` computed by `dpkg-shlibdeps`,
//! a machine-readable copyright file and a changelog, and the control
//! fields policy asks for.
//!
//! Binutils and `dpkg-shlibdeps` run in a second action in the build's own
//! environment, as the builder (see [`comb_distro::policy::PACKAGING_SCRIPT`]):
//! comb itself reads nothing of a build's binaries but their first bytes.

use crate::engine::Engine;
use crate::env::Layer;
use crate::error::{Error, Result};
use crate::executor::{Action, ActionInput, Executed, Executor, Output};
use crate::inputs::{FileHash, NodeKey, SourceEntry};
use crate::manifest::{store_deb, BuiltDeb};
use crate::vary::Variations;
use comb_cache::Hash;
use comb_distro::debwriter::{self, BinarySpec, ControlFile, Generated, GeneratedFile};
use comb_distro::policy;
use comb_recipes::Recipe;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// SOURCE_DATE_EPOCH of native packages: fixed, so it never comes from
/// the clock or a checkout's mtimes (2024-01-01).
pub const NATIVE_SOURCE_DATE_EPOCH: i64 = 1_704_067_200;

/// Where a recipe's packaging runs: the build's own engine, executor and
/// variations.
pub(crate) struct Packing<'a> {
    pub engine: &'a Engine,
    pub executor: &'a dyn Executor,
    pub variations: Option<&'a Variations>,
}

/// The files of the source a package's documentation is made from,
/// copied by the build's script before it runs (see [`SOURCE_DOCS`]).
pub(crate) const ABOUT_DIR: &str = "about";
/// Which source files those are.
const SOURCE_DOCS: &[&str] = &[
    "copyright",
    "LICENSE",
    "LICENSE.txt",
    "LICENSE.md",
    "COPYING",
    "changelog",
    "ChangeLog",
    "CHANGELOG",
    "CHANGELOG.md",
    "CHANGELOG.txt",
];
/// A documentation file larger than this is not read.
const MAX_DOC: u64 = 4 << 20;
/// The Section of an output that names none.
const DEFAULT_SECTION: &str = "misc";
/// The Priority of an output that names none.
const DEFAULT_PRIORITY: &str = "optional";

/// The shell lines run in the source directory before the recipe's
/// script: they copy the source's documentation files into `ABOUT_DIR`
/// (before the build can change them), and export the compiler flags
/// `dpkg-buildflags` gives (debug information, hardening, the build
/// directory mapped away), as `dpkg-buildpackage` does for a Debian
/// package; the script may override them. The executor may have run
/// `dpkg-buildflags` already (`crate::buildflags`): its output is then in
/// a variable, evaluated the same way.
pub(crate) fn build_prelude(root: &str) -> String {
    format!(
        "for f in {}; do if [ -f \"$f\" ] && [ ! -L \"$f\" ]; then cp -- \"$f\" {root}/{ABOUT_DIR}/; fi; done\n\
         if [ -n \"${{{flags}+set}}\" ]; then eval \"${flags}\"; unset {flags}; \
         elif command -v dpkg-buildflags >/dev/null 2>&1; then eval \"$(dpkg-buildflags --export=sh)\"; fi\n",
        SOURCE_DOCS.join(" "),
        flags = crate::buildflags::VAR,
    )
}

/// The maintainer of a native recipe's packages: its own, else the
/// repository's, else an error saying where to write one.
pub(crate) fn maintainer(engine: &Engine, recipe: &Recipe) -> Result<String> {
    recipe
        .package
        .maintainer
        .clone()
        .or_else(|| engine.repo.maintainer.clone())
        .ok_or_else(|| {
            Error::Input(format!(
                "{}: no maintainer: set maintainer = \"Name <email>\" in its [package], or for \
                 every recipe in [package] of {}",
                recipe.file.display(),
                engine.repo.path.display()
            ))
        })
}

/// The files of one output and where they are.
struct Files {
    root: PathBuf,
    files: Vec<PathBuf>,
    /// What each path under `root` is, as the executor's walk found it.
    entries: BTreeMap<PathBuf, SourceEntry>,
}

impl Files {
    /// Compresses manual and info pages, and documentation over 4 KiB, as
    /// `dh_compress` does (`gzip -9n`, links to them renamed with them):
    /// they leave the listed files and come back as generated ones.
    fn compress(&mut self) -> Result<Vec<GeneratedFile>> {
        let mut out = Vec::new();
        let mut compressed = BTreeSet::new();
        for rel in &self.files {
            let size = match self.entries.get(rel) {
                Some(SourceEntry::File { .. }) => std::fs::symlink_metadata(self.root.join(rel))
                    .map(|m| m.len())
                    .unwrap_or(0),
                _ => continue,
            };
            if !wants_compression(rel, size) || size > MAX_DOC {
                continue;
            }
            let Some(text) = read_bytes(&self.root, rel, &self.entries)? else {
                continue;
            };
            let mut name = rel.clone().into_os_string();
            name.push(".gz");
            out.push(GeneratedFile {
                path: PathBuf::from(name),
                contents: Generated::File(policy::gzip(&text)),
            });
            compressed.insert(rel.clone());
        }
        // A link to a compressed page points at the .gz, under a .gz name.
        for rel in &self.files {
            let Some(SourceEntry::Symlink(target)) = self.entries.get(rel) else {
                continue;
            };
            let dir = rel.parent().unwrap_or(Path::new(""));
            let pointed = if target.starts_with('/') {
                PathBuf::from(target.trim_start_matches('/'))
            } else {
                normalize(&dir.join(target))
            };
            if compressed.contains(&pointed) {
                let mut name = rel.clone().into_os_string();
                name.push(".gz");
                out.push(GeneratedFile {
                    path: PathBuf::from(name),
                    contents: Generated::Symlink(format!("{target}.gz")),
                });
                compressed.insert(rel.clone());
            }
        }
        self.files.retain(|f| !compressed.contains(f));
        Ok(out)
    }
}

/// Whether `dh_compress` compresses a file of this path and size.
fn wants_compression(rel: &Path, size: u64) -> bool {
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let already = [
        ".gz", ".xz", ".bz2", ".zst", ".lz", ".zip", ".jpg", ".jpeg", ".png", ".gif", ".svg",
        ".pdf", ".html", ".htm", ".css", ".js", ".json", ".xhtml",
    ];
    if already.iter().any(|e| name.ends_with(e)) {
        return false;
    }
    if rel.starts_with("usr/share/man") || rel.starts_with("usr/share/info") {
        return true;
    }
    rel.starts_with("usr/share/doc")
        && size > 4096
        && name != "copyright"
        && !rel.components().any(|c| c.as_os_str() == "examples")
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Packs every output of `recipe` from what its build left: `dest` (the
/// `DESTDIR`) and `about` (the source's documentation files). Returns the
/// packages, the files no output holds, and what the packaging printed.
pub(crate) fn pack(
    ctx: &Packing,
    env_layer: &Layer,
    recipe: &Recipe,
    version: &str,
    architecture: &str,
    built: &Executed,
) -> Result<(Vec<BuiltDeb>, Vec<String>, String)> {
    let engine = ctx.engine;
    let (dest, about) = (&built.outputs[0], &built.outputs[1]);
    let maintainer = maintainer(engine, recipe)?;
    let all: Vec<&PathBuf> = dest.entries.keys().collect();
    let mut claimed = BTreeSet::new();
    let mut mine: BTreeMap<&str, Vec<PathBuf>> = BTreeMap::new();
    for output in &recipe.outputs {
        let files: Vec<PathBuf> = all
            .iter()
            .filter(|f| output.files.iter().any(|g| g.matches(&f.to_string_lossy())))
            .map(|f| f.to_path_buf())
            .collect();
        claimed.extend(files.iter().cloned());
        mine.insert(&output.name, files);
    }
    let unclaimed: Vec<String> = all
        .iter()
        .filter(|f| !claimed.contains(**f) && !matches!(dest.entries[**f], SourceEntry::Dir))
        .map(|f| f.display().to_string())
        .collect();

    // The outputs with ELF files to strip or analyse go through the
    // packaging action; the others are packed from DESTDIR as they are.
    let mut elves: BTreeMap<&str, Vec<PathBuf>> = BTreeMap::new();
    for output in &recipe.outputs {
        let elf: Vec<PathBuf> = mine[output.name.as_str()]
            .iter()
            .filter(|f| is_elf(dest, f))
            .cloned()
            .collect();
        if !elf.is_empty() {
            elves.insert(&output.name, elf);
        }
    }
    let packaged = if elves.is_empty() {
        None
    } else {
        Some(run_packaging(
            ctx,
            env_layer,
            recipe,
            version,
            &maintainer,
            dest,
            &mine,
            &elves,
        )?)
    };
    let log = packaged
        .as_ref()
        .map(|p| p.built.log.clone())
        .unwrap_or_default();

    let docs = Docs::read(recipe, about, version, &maintainer)?;
    let out = engine.store.tmp_path("debs");
    std::fs::create_dir(&out).map_err(|e| Error::io("creating the output directory", e))?;
    let written = (|| -> Result<Vec<BuiltDeb>> {
        let mut debs = Vec::new();
        for output in &recipe.outputs {
            let name = output.name.as_str();
            let mut spec = binary_spec(recipe, output, version, architecture, &maintainer);
            spec.section.get_or_insert_with(|| DEFAULT_SECTION.into());
            spec.priority.get_or_insert_with(|| DEFAULT_PRIORITY.into());
            let mut packed = match (&packaged, elves.contains_key(name)) {
                (Some(p), true) => p.files_of(name),
                _ => Files {
                    root: dest.dir.clone(),
                    files: mine[name].clone(),
                    entries: dest.entries.clone(),
                },
            };
            if let (Some(p), true) = (&packaged, elves.contains_key(name)) {
                p.add_control(name, &mut spec, &output.depends)?;
            }
            spec.generated = docs.for_package(name, &packed)?;
            spec.generated.extend(packed.compress()?);
            let deb = debwriter::write_deb(
                &spec,
                &packed.root,
                &packed.files,
                NATIVE_SOURCE_DATE_EPOCH,
                &out,
            )?;
            debs.push(store_deb(engine, &deb.path, &deb.control)?);
            if let Some(dbg) = packaged.as_ref().and_then(|p| p.dbgsym_of(&spec)) {
                let (spec, files) = dbg?;
                let deb = debwriter::write_deb(
                    &spec,
                    &files.root,
                    &files.files,
                    NATIVE_SOURCE_DATE_EPOCH,
                    &out,
                )?;
                debs.push(store_deb(engine, &deb.path, &deb.control)?);
            }
        }
        Ok(debs)
    })();
    let _ = std::fs::remove_dir_all(&out);
    Ok((written?, unclaimed, log))
}

/// Whether a file of the build's output is an ELF file, by its first
/// bytes (read without following a link: the executor's walk found it a
/// regular file, and nothing changes the tree since).
fn is_elf(dest: &Output, rel: &Path) -> bool {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    if !matches!(dest.entries.get(rel), Some(SourceEntry::File { .. })) {
        return false;
    }
    let mut magic = [0u8; 4];
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dest.dir.join(rel))
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == *b"\x7fELF")
}

/// What the packaging action left.
struct Packaged {
    /// Its `debian` directory and its log.
    built: Executed,
    version: String,
    recipe: String,
    dbgsym: BTreeMap<String, bool>,
}

impl Packaged {
    fn out(&self) -> &Output {
        &self.built.outputs[0]
    }

    /// The files under `prefix` of the action's output, relative to it.
    fn under(&self, prefix: &Path) -> Vec<PathBuf> {
        self.out()
            .entries
            .keys()
            .filter_map(|p| p.strip_prefix(prefix).ok())
            .filter(|p| !p.as_os_str().is_empty() && !p.starts_with("DEBIAN"))
            .map(Path::to_path_buf)
            .collect()
    }

    fn files_of(&self, package: &str) -> Files {
        let prefix = Path::new(package);
        Files {
            root: self.out().dir.join(package),
            files: self.under(prefix),
            entries: self.entries_under(prefix),
        }
    }

    /// The entries under `prefix`, relative to it.
    fn entries_under(&self, prefix: &Path) -> BTreeMap<PathBuf, SourceEntry> {
        self.out()
            .entries
            .iter()
            .filter_map(|(p, e)| Some((p.strip_prefix(prefix).ok()?.to_path_buf(), e.clone())))
            .collect()
    }

    /// A small regular file of the output, if the action left one there.
    fn text(&self, rel: &str) -> Result<Option<String>> {
        read_small(self.out(), Path::new(rel))
    }

    /// The control files and computed `Depends` of `package`.
    fn add_control(
        &self,
        package: &str,
        spec: &mut BinarySpec,
        written: &[comb_recipes::Dependency],
    ) -> Result<()> {
        let bad = |what: &str, e: String| Error::Stage {
            stage: "build",
            name: self.recipe.clone(),
            message: format!("the packaging of {package} left a bad {what}: {e}"),
            log: crate::env::tail(&self.built.log, 30),
            stored_log: None,
        };
        if let Some(shlibs) = self.text(&format!("{package}/DEBIAN/shlibs"))? {
            policy::check_shlibs(&shlibs, package).map_err(|e| bad("shlibs file", e))?;
            spec.control_files.push(ControlFile {
                name: "shlibs".into(),
                contents: shlibs.into_bytes(),
            });
            spec.control_files.push(ControlFile {
                name: "triggers".into(),
                contents: policy::LDCONFIG_TRIGGER.as_bytes().to_vec(),
            });
        }
        if let Some(symbols) = self.text(&format!("{package}/DEBIAN/symbols"))? {
            spec.control_files.push(ControlFile {
                name: "symbols".into(),
                contents: symbols.into_bytes(),
            });
        }
        let computed = match self.text(&format!("{package}.substvars"))? {
            Some(vars) => policy::shlibs_depends(&vars, &format!("{package}.substvars"))
                .map_err(|e| bad("substvars file", e.to_string()))?,
            None => Vec::new(),
        };
        let written: Vec<comb_recipes::Relation> =
            written.iter().map(|d| d.relation.clone()).collect();
        spec.depends = policy::merge_depends(&[&computed, &written]);
        Ok(())
    }

    /// The `-dbgsym` package of `spec`'s package, if its binaries had
    /// debug information to keep.
    fn dbgsym_of(&self, spec: &BinarySpec) -> Option<Result<(BinarySpec, Files)>> {
        if !self.dbgsym.get(&spec.package).copied().unwrap_or(false) {
            return None;
        }
        let ids = match self.text(&format!(".comb/{}.build-ids", spec.package)) {
            Ok(Some(ids)) => ids,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        let mut ids: Vec<&str> = ids.lines().collect();
        ids.sort();
        ids.dedup();
        if ids
            .iter()
            .any(|id| id.len() < 3 || !id.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Some(Err(Error::Input(format!(
                "the packaging of {} left bad build ids",
                spec.package
            ))));
        }
        let prefix = Path::new(".dbgsym").join(&spec.package);
        let files = Files {
            root: self.out().dir.join(&prefix),
            files: self.under(&prefix),
            entries: self.entries_under(&prefix),
        };
        let package = format!("{}-dbgsym", spec.package);
        let dbg = BinarySpec {
            package: package.clone(),
            version: self.version.clone(),
            architecture: spec.architecture.clone(),
            maintainer: spec.maintainer.clone(),
            summary: format!("debug symbols for {}", spec.package),
            section: Some("debug".into()),
            priority: Some(DEFAULT_PRIORITY.into()),
            source: Some(self.recipe.clone()),
            depends: vec![format!("{} (= {})", spec.package, self.version)],
            extra_fields: vec![
                ("Auto-Built-Package".into(), "debug-symbols".into()),
                ("Build-Ids".into(), ids.join(" ")),
            ],
            // Its documentation is its package's, as dh_strip links it.
            generated: vec![GeneratedFile {
                path: PathBuf::from(format!("usr/share/doc/{package}")),
                contents: Generated::Symlink(spec.package.clone()),
            }],
            ..BinarySpec::default()
        };
        Some(Ok((dbg, files)))
    }
}

/// Reads a regular file of an action's output, at most [`MAX_DOC`] bytes,
/// as text; `None` when there is no such file.
fn read_small(output: &Output, rel: &Path) -> Result<Option<String>> {
    let Some(bytes) = read_bytes(&output.dir, rel, &output.entries)? else {
        return Ok(None);
    };
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| Error::Input(format!("{} is not UTF-8 text", rel.display())))
}

/// Reads a regular file under `root` that `entries` (the executor's walk
/// of it) lists as one, at most [`MAX_DOC`] bytes; `None` when there is
/// no such file. Every directory above it is one the walk found, and
/// nothing changes the tree since, so no link is followed.
fn read_bytes(
    root: &Path,
    rel: &Path,
    entries: &BTreeMap<PathBuf, SourceEntry>,
) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    if !matches!(entries.get(rel), Some(SourceEntry::File { .. })) {
        return Ok(None);
    }
    let path = root.join(rel);
    let mut bytes = Vec::new();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .and_then(|f| f.take(MAX_DOC + 1).read_to_end(&mut bytes))
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if bytes.len() as u64 > MAX_DOC {
        return Err(Error::Input(format!(
            "{} is larger than {} MiB",
            rel.display(),
            MAX_DOC >> 20
        )));
    }
    Ok(Some(bytes))
}

/// Runs the packaging script over the outputs with ELF files.
#[allow(clippy::too_many_arguments)]
fn run_packaging(
    ctx: &Packing,
    env_layer: &Layer,
    recipe: &Recipe,
    version: &str,
    maintainer: &str,
    dest: &Output,
    mine: &BTreeMap<&str, Vec<PathBuf>>,
    elves: &BTreeMap<&str, Vec<PathBuf>>,
) -> Result<Packaged> {
    let engine = ctx.engine;
    let scratch = engine.store.tmp_path("packaging");
    std::fs::create_dir(&scratch)
        .map_err(|e| Error::io(format!("creating {}", scratch.display()), e))?;
    let result = (|| {
        let mut inputs = vec![dir_input("debian"), dir_input("debian/.comb")];
        let mut generated = |path: &str, contents: &[u8]| -> Result<()> {
            let local = scratch.join(path.replace('/', "_"));
            std::fs::write(&local, contents)
                .map_err(|e| Error::io(format!("writing {}", local.display()), e))?;
            inputs.push(ActionInput {
                path: path.to_string(),
                entry: SourceEntry::file(FileHash::Blake3(
                    Hash::of_reader(&mut &contents[..]).map_err(|e| Error::io("hashing", e))?,
                )),
                local: Some(local),
            });
            Ok(())
        };
        let mut control = format!("Source: {}\nMaintainer: {maintainer}\n", recipe.name);
        let mut packages = String::new();
        let mut dbgsym = BTreeMap::new();
        for output in recipe
            .outputs
            .iter()
            .filter(|o| elves.contains_key(o.name.as_str()))
        {
            control.push_str(&format!("\nPackage: {}\nArchitecture: any\n", output.name));
            let flag = |b: bool| if b { "yes" } else { "no" };
            packages.push_str(&format!(
                "{} {} {} {}\n",
                output.name,
                flag(output.strip),
                flag(output.strip && output.dbgsym),
                flag(output.symbols)
            ));
            dbgsym.insert(output.name.clone(), output.strip && output.dbgsym);
            let mut list = Vec::new();
            for f in &elves[output.name.as_str()] {
                list.extend_from_slice(f.as_os_str().as_encoded_bytes());
                list.push(0);
            }
            generated(&format!("debian/.comb/{}.elf", output.name), &list)?;
        }
        generated("debian/control", control.as_bytes())?;
        generated(
            "debian/changelog",
            policy::changelog(&recipe.name, version, maintainer, NATIVE_SOURCE_DATE_EPOCH)
                .as_bytes(),
        )?;
        generated(
            "debian/.comb/package.sh",
            policy::PACKAGING_SCRIPT.as_bytes(),
        )?;
        for name in elves.keys() {
            inputs.push(dir_input(&format!("debian/{name}")));
            // Every listed file with its parents, parents first.
            let mut paths = BTreeSet::new();
            for f in &mine[name] {
                paths.extend(f.ancestors().filter(|a| !a.as_os_str().is_empty()));
            }
            for rel in paths {
                let Some(entry) = dest.entries.get(rel) else {
                    continue;
                };
                inputs.push(ActionInput {
                    path: format!("debian/{name}/{}", rel.display()),
                    entry: entry.clone(),
                    local: matches!(entry, SourceEntry::File { .. }).then(|| dest.dir.join(rel)),
                });
            }
        }
        let built = ctx.executor.execute(&Action {
            name: &recipe.name,
            env: NodeKey::known(&env_layer.key),
            env_paths: &env_layer.paths,
            inputs,
            empty_dirs: vec![],
            script: "exec bash -eu -o pipefail debian/.comb/package.sh".into(),
            cwd: String::new(),
            env_vars: vec![
                ("COMB_PACKAGES".into(), packages),
                ("COMB_UPSTREAM_VERSION".into(), upstream_version(version)),
                (
                    "SOURCE_DATE_EPOCH".into(),
                    NATIVE_SOURCE_DATE_EPOCH.to_string(),
                ),
            ],
            variations: ctx.variations,
            limits: &recipe.build.limits,
            outputs: vec!["debian".into()],
            build_flags: false,
        })?;
        Ok(Packaged {
            built,
            version: version.to_string(),
            recipe: recipe.name.clone(),
            dbgsym,
        })
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn dir_input(path: &str) -> ActionInput {
    ActionInput {
        path: path.to_string(),
        entry: SourceEntry::Dir,
        local: None,
    }
}

/// A version without its epoch and Debian revision: what `shlibs` and
/// `symbols` files name.
fn upstream_version(version: &str) -> String {
    let no_epoch = version.split_once(':').map_or(version, |(_, v)| v);
    no_epoch
        .rsplit_once('-')
        .map_or(no_epoch, |(upstream, _)| upstream)
        .to_string()
}

/// The control fields of `output` as its recipe gives them.
fn binary_spec(
    recipe: &Recipe,
    output: &comb_recipes::Output,
    version: &str,
    arch: &str,
    maintainer: &str,
) -> BinarySpec {
    let list =
        |deps: &[comb_recipes::Dependency]| deps.iter().map(|d| d.relation.text.clone()).collect();
    BinarySpec {
        package: output.name.clone(),
        version: version.to_string(),
        architecture: match output.architecture {
            comb_recipes::Architecture::All => "all".into(),
            comb_recipes::Architecture::Any => arch.to_string(),
        },
        maintainer: maintainer.to_string(),
        summary: output.summary(recipe).unwrap_or(&output.name).to_string(),
        description: output
            .description
            .clone()
            .or_else(|| recipe.package.description.clone()),
        section: output.section.clone(),
        priority: output.priority.clone(),
        homepage: recipe.package.homepage.clone(),
        source: (output.name != recipe.name).then(|| recipe.name.clone()),
        depends: list(&output.depends),
        pre_depends: list(&output.pre_depends),
        recommends: list(&output.recommends),
        suggests: list(&output.suggests),
        conflicts: list(&output.conflicts),
        breaks: list(&output.breaks),
        replaces: list(&output.replaces),
        provides: list(&output.provides),
        ..BinarySpec::default()
    }
}

/// The documentation every package of a recipe gets.
struct Docs {
    copyright: Vec<u8>,
    changelog: Vec<u8>,
    upstream_changelog: Option<Vec<u8>>,
}

impl Docs {
    fn read(recipe: &Recipe, about: &Output, version: &str, maintainer: &str) -> Result<Docs> {
        // The source's text, whatever its encoding.
        let file = |name: &str| -> Result<Option<String>> {
            Ok(read_bytes(&about.dir, Path::new(name), &about.entries)?
                .map(|b| String::from_utf8_lossy(&b).into_owned()))
        };
        let recipe_err = |what: String| Error::Input(format!("{}: {what}", recipe.file.display()));
        let own = file("copyright")?;
        let copyright = match own.as_deref() {
            Some(text) if policy::is_dep5(text) => text.to_string(),
            own => {
                let mut text = own.map(str::to_string);
                for name in ["LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING"] {
                    if text.is_none() {
                        text = file(name)?;
                    }
                }
                let license = recipe.package.license.as_deref().ok_or_else(|| {
                    recipe_err(
                        "no license: set license in [package] (an SPDX name such as \"MIT\"), \
                         or ship a machine-readable `copyright` file in the source"
                            .into(),
                    )
                })?;
                let holders = match (&recipe.package.copyright, &text) {
                    (Some(c), _) => c.lines().map(str::to_string).collect(),
                    (None, Some(t)) if !policy::notices_in(t).is_empty() => policy::notices_in(t),
                    _ => vec![format!(
                        "{} {maintainer}",
                        &policy::changelog_date(NATIVE_SOURCE_DATE_EPOCH)[12..16]
                    )],
                };
                policy::copyright(&policy::Copyright {
                    name: &recipe.name,
                    source: recipe.package.homepage.as_deref(),
                    license,
                    holders,
                    license_text: text.as_deref(),
                })
                .map_err(recipe_err)?
            }
        };
        let mut upstream_changelog = None;
        let mut debian_changelog = None;
        for name in [
            "changelog",
            "ChangeLog",
            "CHANGELOG",
            "CHANGELOG.md",
            "CHANGELOG.txt",
        ] {
            let Some(text) = file(name)? else { continue };
            let is_debian = policy::check_changelog(&text, &recipe.name, version)
                .map_err(|e| recipe_err(format!("the source's {name}: {e}")))?;
            if is_debian {
                debian_changelog.get_or_insert(text);
            } else if upstream_changelog.is_none() {
                upstream_changelog = Some(policy::gzip(text.as_bytes()));
            }
        }
        let changelog = debian_changelog.unwrap_or_else(|| {
            policy::changelog(&recipe.name, version, maintainer, NATIVE_SOURCE_DATE_EPOCH)
        });
        Ok(Docs {
            copyright: copyright.into_bytes(),
            changelog: policy::gzip(changelog.as_bytes()),
            upstream_changelog,
        })
    }

    /// The files comb adds to `package`, leaving out any the build
    /// already put in it, and all when its documentation directory is
    /// not a plain directory of the build's (a link to another
    /// package's, as policy allows).
    fn for_package(&self, package: &str, packed: &Files) -> Result<Vec<GeneratedFile>> {
        let doc = PathBuf::from(format!("usr/share/doc/{package}"));
        let listed: BTreeSet<&Path> = packed.files.iter().map(PathBuf::as_path).collect();
        let blocked = doc
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .any(|a| {
                listed.contains(a) && !matches!(packed.entries.get(a), Some(SourceEntry::Dir))
            });
        if blocked {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut add = |name: &str, contents: &[u8]| {
            let path = doc.join(name);
            if !listed.contains(path.as_path()) {
                out.push(GeneratedFile {
                    path,
                    contents: Generated::File(contents.to_vec()),
                });
            }
        };
        add("copyright", &self.copyright);
        add("changelog.Debian.gz", &self.changelog);
        if let Some(log) = &self.upstream_changelog {
            add("changelog.gz", log);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_versions_drop_epoch_and_revision() {
        assert_eq!(upstream_version("1.0-1"), "1.0");
        assert_eq!(upstream_version("2:1.2.3-4+b1"), "1.2.3");
        assert_eq!(upstream_version("1.0"), "1.0");
        assert_eq!(upstream_version("1.0-rc1-2"), "1.0-rc1");
    }
}
