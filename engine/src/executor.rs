//! Where a build's command runs: behind [`Executor`], the seam between the
//! scheduler's nodes and the running of their commands.
//!
//! An [`Action`] names what it needs by digest and by node key: the
//! environment by its top layer's key, every input file by its digest (a
//! local path beside each, where this machine has it), the command and
//! its limits. So an executor on another machine can fetch the
//! environment and the inputs by digest, run the command, and send the
//! outputs back by digest; [`LocalSandbox`] runs it here, in comb's
//! sandbox, as U. What comes back is the output directories, read only
//! through the safe walk of hostile trees, and the log.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::inputs::{FileHash, NodeKey, SourceEntry};
use crate::manifest::Confinement;
use crate::vary::{self, Variations};
use comb_cache::Hash;
use comb_sandbox::{Bind, Identity, Spec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest a build may take unless its recipe says otherwise.
const BUILD_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

/// One file, directory or symlink the command's work directory starts
/// with.
#[derive(Debug, Clone)]
pub(crate) struct ActionInput {
    /// Relative to the work directory.
    pub path: String,
    /// Its content, by digest.
    pub entry: SourceEntry,
    /// Where this machine has a file's content.
    pub local: Option<PathBuf>,
}

/// A command to run in an environment, everything it needs named.
#[derive(Debug)]
pub(crate) struct Action<'a> {
    /// The recipe it builds, for messages and its streamed output.
    pub name: &'a str,
    /// The environment: its top layer's node key, and the layers' local
    /// directories, bottom first.
    // The key tells a remote executor which actions share an environment;
    // this machine's sandbox has the directories.
    pub env: NodeKey,
    pub env_paths: &'a [PathBuf],
    /// The work directory's files, parents before children; U owns them.
    pub inputs: Vec<ActionInput>,
    /// Directories the work directory starts with, owned by U, empty.
    pub empty_dirs: Vec<String>,
    /// The command: a shell script, run with `set -e` in `cwd` (relative
    /// to the work directory). The work directory's place in the sandbox
    /// is `vary::build_root(variations)`.
    pub script: String,
    pub cwd: String,
    pub env_vars: Vec<(String, String)>,
    /// What a `comb check` rebuild varies (where the work directory is,
    /// who builds, and more).
    pub variations: Option<&'a Variations>,
    /// The recipe's `[build.limits]`.
    pub limits: &'a comb_recipes::LimitsConfig,
    /// The directories of the work directory that are its outputs.
    pub outputs: Vec<String>,
    /// The script evaluates `dpkg-buildflags`' flags, which the executor
    /// may give it in [`crate::buildflags::VAR`].
    pub build_flags: bool,
}

/// One output directory of an action: where it is on this machine, and
/// every entry of it by digest.
pub(crate) struct Output {
    pub dir: PathBuf,
    /// Every path below `dir`, sorted: a file by its BLAKE3 (and whether
    /// it is executable), a symlink by its target (never followed), a
    /// directory.
    pub entries: BTreeMap<PathBuf, SourceEntry>,
}

/// What an action made.
pub(crate) struct Executed {
    /// Each of [`Action::outputs`], read once, through the safe walk.
    pub outputs: Vec<Output>,
    /// Everything the command wrote, stdout and stderr merged.
    pub log: String,
    /// The limits it ran under, and how each was enforced.
    pub confinement: Confinement,
    /// The remote worker that ran it (`None`: this machine).
    pub worker: Option<String>,
    /// Removes the outputs when dropped.
    _scratch: Scratch,
}

impl Executed {
    /// What ran elsewhere, its output directories fetched into `scratch`.
    pub(crate) fn fetched(
        scratch: Scratch,
        outputs: Vec<PathBuf>,
        log: String,
        confinement: Confinement,
        worker: Option<String>,
    ) -> Result<Executed> {
        let outputs = outputs
            .into_iter()
            .map(|dir| {
                Ok(Output {
                    entries: digest_tree(&dir)?,
                    dir,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Executed {
            outputs,
            log,
            confinement,
            worker,
            _scratch: scratch,
        })
    }
}

/// Runs actions.
pub(crate) trait Executor: Sync {
    /// Runs `action`; a command that fails is an [`Error::Stage`] with its
    /// log's tail.
    fn execute(&self, action: &Action) -> Result<Executed>;
}

/// This machine's sandbox.
pub(crate) struct LocalSandbox<'a> {
    engine: &'a Engine,
    cpus: CpuShare,
}

impl<'a> LocalSandbox<'a> {
    pub fn new(engine: &'a Engine) -> LocalSandbox<'a> {
        LocalSandbox {
            engine,
            cpus: CpuShare::new(),
        }
    }
}

impl Executor for LocalSandbox<'_> {
    fn execute(&self, action: &Action) -> Result<Executed> {
        let engine = self.engine;
        let root = vary::build_root(action.variations);
        let builder = vary::builder(action.variations);
        // The work directory is inside a scratch directory of this
        // writer's: the sandbox makes what a writable bind needs beside the
        // bound directory, where no other comb cleaning the store's tmp/
        // takes it for debris.
        let scratch = Scratch::new(engine.store.tmp_path("build"))?;
        let work = scratch.0.join("work");
        make_dir(&work, builder)?;
        for dir in &action.empty_dirs {
            make_dir(&work.join(dir), builder)?;
        }
        for input in &action.inputs {
            materialize(&work, input, builder)?;
        }
        let mut spec = Spec::new(
            action.env_paths.to_vec(),
            vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("set -e\n{}", action.script),
            ],
        );
        spec.identity = builder;
        spec.cancel = engine.cancel.clone();
        spec.binds.push(Bind {
            source: work.clone(),
            target: PathBuf::from(root),
            writable: true,
        });
        spec.cwd = Path::new(root).join(&action.cwd);
        let (share, _running) = self.cpus.start();
        spec.env = vec![
            ("DEB_BUILD_OPTIONS".into(), format!("parallel={share}")),
            ("HOME".into(), spec.identity.home_and_user().0.into()),
        ];
        spec.env.extend(action.env_vars.iter().cloned());
        spec.limits = engine.limits(Some(action.limits), BUILD_TIMEOUT);
        spec.merge_output = true;
        spec.hostname = "comb-build".into();
        // A varied rebuild computes its flags itself, under its variations.
        if action.build_flags && action.variations.is_none() {
            if let Some(text) = crate::buildflags::flags(engine, &spec) {
                spec.env.push((crate::buildflags::VAR.into(), text));
            }
        }
        if let Some(v) = action.variations {
            vary::apply(v, &vary::plan(v, action.env_paths), &mut spec, share);
        }
        let outcome = comb_sandbox::run_streaming(&engine.sandbox, &spec, |_, chunk| {
            engine.observer.output(action.name, chunk)
        })?;
        let mut log = String::from_utf8_lossy(&outcome.stdout).into_owned();
        log.push_str(&String::from_utf8_lossy(&outcome.stderr));
        if !outcome.status.success() || outcome.killed_by.is_some() {
            let message = match outcome.killed_by {
                Some(kill) => outcome.limits.reached(kill),
                None => format!("the build exited with {}", outcome.status.code()),
            };
            return Err(Error::Stage {
                stage: "build",
                name: action.name.to_string(),
                message,
                log: crate::env::tail(&log, 30),
                stored_log: crate::logs::store(engine, &log).ok(),
            });
        }
        // Nothing runs in the sandbox any more: the tree is still.
        let mut outputs = Vec::new();
        for o in &action.outputs {
            let dir = work.join(o);
            let entries = digest_tree(&dir)?;
            outputs.push(Output { dir, entries });
        }
        Ok(Executed {
            outputs,
            log,
            confinement: Confinement {
                limits: outcome.limits,
                enforced_by: outcome.enforced_by,
            },
            worker: None,
            _scratch: scratch,
        })
    }
}

/// Every entry below `dir`, by digest, walked without following a link:
/// what the builder left there, read once.
fn digest_tree(dir: &Path) -> Result<BTreeMap<PathBuf, SourceEntry>> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut entries = BTreeMap::new();
    for rel in comb_distro::debwriter::list_tree(dir)? {
        let path = dir.join(&rel);
        let read = |e: std::io::Error| Error::io(format!("reading {}", path.display()), e);
        let md = std::fs::symlink_metadata(&path).map_err(read)?;
        let entry = if md.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(read)?;
            SourceEntry::Symlink(target.to_string_lossy().into_owned())
        } else if md.is_dir() {
            SourceEntry::Dir
        } else if md.is_file() {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(read)?;
            SourceEntry::File {
                hash: FileHash::Blake3(Hash::of_reader(&mut file).map_err(read)?),
                executable: md.permissions().mode() & 0o111 != 0,
            }
        } else {
            return Err(Error::Input(format!(
                "the build left {} in its output, which is neither a file, a directory nor a symlink",
                rel.display()
            )));
        };
        entries.insert(rel, entry);
    }
    Ok(entries)
}

/// A scratch directory under the store, removed when dropped.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new(path: PathBuf) -> Result<Scratch> {
        std::fs::create_dir(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(Scratch(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chown_builder(path: &Path, builder: Identity) -> Result<()> {
    let id = builder.inside_id();
    std::os::unix::fs::lchown(path, Some(id), Some(id))
        .map_err(|e| Error::io(format!("handing {} to the builder", path.display()), e))
}

fn make_dir(path: &Path, builder: Identity) -> Result<()> {
    std::fs::create_dir(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    chown_builder(path, builder)
}

/// Puts one input in the work directory, owned by the builder. A file's
/// mode is 0755 or 0644, as its digest says: the build sees nothing of a
/// file that its key does not hold.
fn materialize(work: &Path, input: &ActionInput, builder: Identity) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let relative = Path::new(&input.path);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(Error::Environment(format!(
            "an input path {:?} leaves the work directory",
            input.path
        )));
    }
    let target = work.join(relative);
    match &input.entry {
        SourceEntry::Dir => make_dir(&target, builder),
        SourceEntry::Symlink(to) => {
            std::os::unix::fs::symlink(to, &target)
                .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
            chown_builder(&target, builder)
        }
        SourceEntry::File { executable, .. } => {
            let local = input.local.as_ref().ok_or_else(|| {
                Error::Environment(format!(
                    "{}: its content ({}) is not on this machine",
                    input.path, input.entry
                ))
            })?;
            std::fs::copy(local, &target)
                .map_err(|e| Error::io(format!("copying {}", local.display()), e))?;
            let mode = if *executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io(format!("setting the mode of {}", target.display()), e))?;
            chown_builder(&target, builder)
        }
    }
}

/// The machine's CPUs, shared among the builds running at once: a build
/// gets `DEB_BUILD_OPTIONS=parallel=` of the CPUs divided by the builds
/// running when it starts, itself included, so a lone build gets them all.
struct CpuShare {
    cpus: usize,
    running: std::sync::atomic::AtomicUsize,
}

impl CpuShare {
    fn new() -> CpuShare {
        CpuShare {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            running: Default::default(),
        }
    }

    /// A build starts: its share, and a guard that ends it.
    fn start(&self) -> (usize, RunningBuild<'_>) {
        let running = self
            .running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        ((self.cpus / running).max(1), RunningBuild(self))
    }
}

/// A build counted by [`CpuShare`] until dropped.
struct RunningBuild<'a>(&'a CpuShare);

impl Drop for RunningBuild<'_> {
    fn drop(&mut self) {
        self.0
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_cannot_leave_the_work_directory() {
        let dir = std::env::temp_dir().join(format!("comb-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for path in ["../x", "/etc/passwd", "a/../../x"] {
            let input = ActionInput {
                path: path.into(),
                entry: SourceEntry::Dir,
                local: None,
            };
            let err = materialize(&dir, &input, Identity::Builder).unwrap_err();
            assert!(
                err.to_string().contains("leaves the work directory"),
                "{err}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
