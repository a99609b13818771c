//! Builds run on other machines (`[remote] execute`): an [`Executor`]
//! that sends each action through a REAPI server's `Execute`, where a
//! worker (`comb worker`, or `comb node run` under another server's own
//! worker) runs it in comb's sandbox and its outputs come back by digest.
//!
//! An action travels as a REAPI input root: `comb-action.json` (a
//! [`Spec`]: the command, its limits, its inputs and its environment by
//! digest) and `blobs/`, every file it names by its SHA-256. A layer of
//! the environment travels as its archive ([`comb_sandbox::ship`]) cut in
//! a few large chunks, packed once per layer on this machine (the digests
//! are kept beside the store's trees) and unpacked once per worker, which
//! keeps it in its own store. What comes back (the output directories as
//! REAPI trees, the log as stdout) is checked against its digests on
//! download. A `comb check` rebuild that varies its sandbox runs here.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::executor::{Action, Executed, Executor, LocalSandbox};
use crate::inputs::SourceEntry;
use comb_remote::{BlobDigest, Remote};
use prost::Message;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The input root's description of the action.
pub(crate) const SPEC_FILE: &str = "comb-action.json";
/// The input root's directory of blobs, each named by its SHA-256.
pub(crate) const BLOBS: &str = "blobs";
/// The output directories: `out/0`, `out/1`, … as [`Spec::outputs`].
pub(crate) const OUT: &str = "out";
/// The output file recording the limits the build ran under.
pub(crate) const CONFINEMENT: &str = "confinement.json";
/// What a shipped layer's archive is cut into.
pub(crate) const CHUNK: usize = 64 << 20;
/// What a spec says of its own format.
const FORMAT: u32 = 1;

/// An action as a worker receives it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Spec {
    pub format: u32,
    pub name: String,
    /// The environment's layer directories, bottom first.
    pub layers: Vec<ShippedLayer>,
    pub inputs: Vec<SpecInput>,
    pub empty_dirs: Vec<String>,
    pub script: String,
    pub cwd: String,
    pub env_vars: Vec<(String, String)>,
    pub limits: SpecLimits,
    pub outputs: Vec<String>,
    /// [`crate::executor::Action::build_flags`]; a worker that does not
    /// know it leaves the script to run `dpkg-buildflags` itself.
    #[serde(default)]
    pub build_flags: bool,
}

/// One layer directory as an archive: its SHA-256 names it (a worker
/// keeps it under that name), its chunks carry it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ShippedLayer {
    /// Where it came from (`base-build-…/0`), for messages.
    pub label: String,
    /// Which directory was packed (its inode and change time): a layer
    /// made again under the same name is packed again.
    #[serde(default)]
    pub made: String,
    pub sha256: String,
    pub size: u64,
    pub chunks: Vec<BlobDigest>,
}

impl ShippedLayer {
    /// The layer directory `dir` packed: its record (`label`, `made` as
    /// given) and its archive.
    pub(crate) fn pack(dir: &Path, label: String, made: String) -> Result<(ShippedLayer, Vec<u8>)> {
        let packed = comb_sandbox::ship::pack_layer(dir).map_err(Error::Environment)?;
        let layer = ShippedLayer {
            label,
            made,
            sha256: BlobDigest::of(&packed).sha256,
            size: packed.len() as u64,
            chunks: packed.chunks(CHUNK).map(BlobDigest::of).collect(),
        };
        Ok((layer, packed))
    }

    /// `archive`, the chunks of this layer put together, checked against
    /// the record and unpacked into a new store tree published as
    /// `tree_name` (a bad archive is [`Error::Input`]): the layer's
    /// directory.
    pub(crate) fn unpack(
        &self,
        engine: &Engine,
        archive: &[u8],
        tree_name: &str,
    ) -> Result<PathBuf> {
        let whole = BlobDigest::of(archive);
        if whole.sha256 != self.sha256 {
            return Err(Error::Input(format!(
                "the layer {}: its chunks hash to {}, not {}",
                self.label, whole.sha256, self.sha256
            )));
        }
        let tree = engine.store.begin_tree()?;
        let dir = tree.path().join("0");
        comb_sandbox::caller::as_layer_owner(|| std::fs::create_dir(&dir))
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        comb_sandbox::ship::unpack_layer(archive, &dir)
            .map_err(|e| Error::Input(format!("the layer {}: {e}", self.label)))?;
        Ok(tree.publish(tree_name)?.join("0"))
    }
}

/// One input: its path and entry as [`crate::executor::ActionInput`]
/// says, a file's content by its blob.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SpecInput {
    pub path: String,
    /// [`SourceEntry`] as text.
    pub entry: String,
    pub blob: Option<BlobDigest>,
}

/// The limits the client set, the repository's with the recipe's over them.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct SpecLimits {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpu_time_secs: Option<u64>,
    pub timeout_secs: Option<u64>,
    pub disk: Option<u64>,
    pub file_size: Option<u64>,
}

impl SpecLimits {
    fn of(l: &comb_recipes::LimitsConfig) -> SpecLimits {
        SpecLimits {
            memory: l.memory,
            pids: l.pids,
            cpu_time_secs: l.cpu_time.map(|d| d.as_secs()),
            timeout_secs: l.timeout.map(|d| d.as_secs()),
            disk: l.disk,
            file_size: l.file_size,
        }
    }

    pub(crate) fn config(&self) -> comb_recipes::LimitsConfig {
        use std::time::Duration;
        comb_recipes::LimitsConfig {
            memory: self.memory,
            pids: self.pids,
            cpu_time: self.cpu_time_secs.map(Duration::from_secs),
            timeout: self.timeout_secs.map(Duration::from_secs),
            disk: self.disk,
            file_size: self.file_size,
        }
    }
}

impl Spec {
    /// The spec in `bytes`, or why it is not one.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Spec> {
        let spec: Spec = serde_json::from_slice(bytes)
            .map_err(|e| Error::Input(format!("{SPEC_FILE}: not a comb action: {e}")))?;
        if spec.format != FORMAT {
            return Err(Error::Input(format!(
                "{SPEC_FILE}: format {} (this comb reads {FORMAT}): run the same comb on both ends",
                spec.format
            )));
        }
        Ok(spec)
    }
}

/// The REAPI command every comb action runs.
pub(crate) fn command(outputs: usize) -> comb_remote::Command {
    let mut output_paths: Vec<String> = (0..outputs).map(|i| format!("{OUT}/{i}")).collect();
    output_paths.push(CONFINEMENT.to_string());
    output_paths.sort();
    comb_remote::Command {
        arguments: vec!["comb".into(), "node".into(), "run".into()],
        // A server's own runner (bb_runner) gives the command no
        // environment but this: where to find comb.
        environment_variables: vec![comb_remote::EnvironmentVariable {
            name: "PATH".into(),
            value: "/usr/local/bin:/usr/bin:/bin".into(),
        }],
        output_paths,
        ..Default::default()
    }
}

/// Builds elsewhere through a REAPI server.
pub(crate) struct RemoteExecutor<'a> {
    engine: &'a Engine,
    remote: Remote,
    /// Where a `comb check` rebuild that varies its sandbox runs.
    local: LocalSandbox<'a>,
    /// The layers already shipped by this run; held while one is packed,
    /// so concurrent builds on one environment pack it once.
    shipped: std::sync::Mutex<BTreeMap<PathBuf, ShippedLayer>>,
    /// The server was lost: with `--remote-fallback local`, what is left
    /// builds here.
    lost: std::sync::atomic::AtomicBool,
}

impl<'a> RemoteExecutor<'a> {
    pub(crate) fn connect(engine: &'a Engine, url: &str) -> Result<RemoteExecutor<'a>> {
        let remote = Remote::connect(url, &engine.repo.remote.instance).map_err(|e| {
            Error::Environment(format!(
                "{e}: start it, or build without --remote-execute (or [remote] execute)"
            ))
        })?;
        Ok(RemoteExecutor {
            engine,
            remote,
            local: LocalSandbox::new(engine),
            shipped: Default::default(),
            lost: Default::default(),
        })
    }

    fn remote_error(&self, name: &str, e: comb_remote::Error) -> Error {
        if matches!(e, comb_remote::Error::Unreachable { .. }) {
            self.lost.store(true, std::sync::atomic::Ordering::SeqCst);
            let what = if self.engine.repo.remote.fallback_local {
                "building here (--remote-fallback local)"
            } else {
                "start it, or add --remote-fallback local to build here"
            };
            return Error::Environment(format!("{name}: remote execution: {e}: {what}"));
        }
        Error::Environment(format!("{name}: remote execution: {e}"))
    }

    fn is_lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The layer directory `dir` shipped: packed (once per layer on this
    /// machine) and its chunks uploaded where the server lacks them.
    fn ship(&self, dir: &Path) -> Result<ShippedLayer> {
        let mut shipped = self.shipped.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = shipped.get(dir) {
            return Ok(known.clone());
        }
        let label = layer_label(dir);
        let record = self
            .engine
            .store
            .root()
            .join("shipped")
            .join(label.replace('/', "-"));
        let made = {
            use std::os::unix::fs::MetadataExt;
            let md = std::fs::metadata(dir)
                .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
            format!("{}:{}.{}", md.ino(), md.ctime(), md.ctime_nsec())
        };
        let recorded: Option<ShippedLayer> = std::fs::read(&record)
            .ok()
            .and_then(|b| serde_json::from_slice::<ShippedLayer>(&b).ok())
            .filter(|l| l.made == made);
        let mut archive = None;
        let layer = match recorded {
            Some(layer) => layer,
            None => {
                let (layer, packed) = ShippedLayer::pack(dir, label.clone(), made)?;
                let json = serde_json::to_vec(&layer).expect("serialisable");
                let _ = std::fs::create_dir_all(record.parent().expect("in shipped/"));
                let tmp = record.with_extension("tmp");
                std::fs::write(&tmp, json)
                    .and_then(|()| std::fs::rename(&tmp, &record))
                    .map_err(|e| Error::io(format!("writing {}", record.display()), e))?;
                archive = Some(packed);
                layer
            }
        };
        let missing = self
            .remote
            .missing(&layer.chunks)
            .map_err(|e| self.remote_error(&label, e))?;
        if !missing.is_empty() {
            let packed = match archive {
                Some(p) => p,
                None => comb_sandbox::ship::pack_layer(dir).map_err(Error::Environment)?,
            };
            let chunks: Vec<&[u8]> = packed.chunks(CHUNK).collect();
            if chunks.iter().map(|c| BlobDigest::of(c)).collect::<Vec<_>>() != layer.chunks {
                // The layer changed under its record (it never should):
                // forget the record and ship it afresh next time.
                let _ = std::fs::remove_file(&record);
                return Err(Error::Environment(format!(
                    "the layer {label} no longer packs as it did: run again"
                )));
            }
            self.remote
                .upload(&chunks)
                .map_err(|e| self.remote_error(&label, e))?;
        }
        shipped.insert(dir.to_path_buf(), layer.clone());
        Ok(layer)
    }

    /// Writes a fetched output tree into `dir`.
    fn fetch_tree(&self, name: &str, tree: &BlobDigest, dir: &Path) -> Result<()> {
        let fail = |e| self.remote_error(name, e);
        let bytes = self.remote.download(tree, "an output tree").map_err(fail)?;
        let tree = comb_remote::Tree::decode(bytes.as_slice())
            .map_err(|e| Error::Environment(format!("{name}: a malformed output tree: {e}")))?;
        let children: BTreeMap<String, &comb_remote::Directory> = tree
            .children
            .iter()
            .map(|d| (BlobDigest::of(&d.encode_to_vec()).sha256, d))
            .collect();
        let root = tree
            .root
            .as_ref()
            .ok_or_else(|| Error::Environment(format!("{name}: an output tree without a root")))?;
        // Every file of the tree in as few calls as fit.
        let mut wanted = Vec::new();
        for d in std::iter::once(root).chain(&tree.children) {
            for f in &d.files {
                let digest = f.digest.as_ref().ok_or_else(|| {
                    Error::Environment(format!("{name}: a file without a digest"))
                })?;
                wanted.push(BlobDigest::from_proto(digest).map_err(fail)?);
            }
        }
        wanted.sort();
        wanted.dedup();
        let fetched = self
            .remote
            .download_all(&wanted, "an output file")
            .map_err(fail)?;
        let contents: BTreeMap<&BlobDigest, Vec<u8>> = wanted.iter().zip(fetched).collect();
        let mut todo = vec![(root, dir.to_path_buf(), 0)];
        while let Some((d, at, depth)) = todo.pop() {
            if depth > 256 {
                return Err(Error::Environment(format!(
                    "{name}: an output tree too deep"
                )));
            }
            std::fs::create_dir(&at)
                .map_err(|e| Error::io(format!("creating {}", at.display()), e))?;
            for f in &d.files {
                let path = at.join(entry_name(name, &f.name)?);
                let digest = f.digest.as_ref().map(BlobDigest::from_proto);
                let data = digest
                    .and_then(|d| d.ok())
                    .and_then(|d| contents.get(&d))
                    .ok_or_else(|| {
                        Error::Environment(format!("{name}: a file without a digest"))
                    })?;
                write_file(&path, data, f.is_executable)?;
            }
            for s in &d.symlinks {
                let path = at.join(entry_name(name, &s.name)?);
                std::os::unix::fs::symlink(&s.target, &path)
                    .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            }
            for sub in &d.directories {
                let path = at.join(entry_name(name, &sub.name)?);
                let digest = sub.digest.as_ref().map(|d| d.hash.to_ascii_lowercase());
                let child = digest.and_then(|h| children.get(&h)).ok_or_else(|| {
                    Error::Environment(format!("{name}: an output tree missing a directory"))
                })?;
                todo.push((child, path, depth + 1));
            }
        }
        Ok(())
    }
}

/// `trees/NAME/N` of a layer directory, as it is named in messages.
fn layer_label(dir: &Path) -> String {
    let n = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let tree = dir
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned());
    match (tree, n) {
        (Some(t), Some(n)) => format!("{t}/{n}"),
        _ => dir.display().to_string(),
    }
}

/// A name of a directory entry from elsewhere, refused unless it is one.
pub(crate) fn entry_name<'n>(what: &str, name: &'n str) -> Result<&'n str> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(Error::Environment(format!(
            "{what}: a directory entry named {name:?}: refused"
        )));
    }
    Ok(name)
}

/// Writes a new file (never through a link) with mode 0755 or 0644.
pub(crate) fn write_file(path: &Path, data: &[u8], executable: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// A `Directory` listing `files` (name → digest, executable), sorted.
pub(crate) fn directory(
    files: &BTreeMap<String, (BlobDigest, bool)>,
    dirs: &BTreeMap<String, BlobDigest>,
) -> comb_remote::Directory {
    comb_remote::Directory {
        files: files
            .iter()
            .map(|(name, (d, x))| comb_remote::FileNode {
                name: name.clone(),
                digest: Some(d.proto()),
                is_executable: *x,
                ..Default::default()
            })
            .collect(),
        directories: dirs
            .iter()
            .map(|(name, d)| comb_remote::DirectoryNode {
                name: name.clone(),
                digest: Some(d.proto()),
            })
            .collect(),
        ..Default::default()
    }
}

impl Executor for RemoteExecutor<'_> {
    fn execute(&self, action: &Action) -> Result<Executed> {
        let fallback = self.engine.repo.remote.fallback_local;
        if action.variations.is_some() || (fallback && self.is_lost()) {
            return self.local.execute(action);
        }
        match self.execute_remotely(action) {
            Err(e) if fallback && self.is_lost() => {
                self.engine.observer.note(&e.to_string());
                self.local.execute(action)
            }
            done => done,
        }
    }
}

impl RemoteExecutor<'_> {
    fn execute_remotely(&self, action: &Action) -> Result<Executed> {
        let name = action.name;
        let fail = |e| self.remote_error(name, e);
        let layers = action
            .env_paths
            .iter()
            .map(|p| self.ship(p))
            .collect::<Result<Vec<_>>>()?;
        let mut blobs: BTreeMap<String, (BlobDigest, bool)> = BTreeMap::new();
        let mut small: Vec<Vec<u8>> = Vec::new();
        let mut inputs = Vec::new();
        for input in &action.inputs {
            let blob = match (&input.entry, &input.local) {
                (SourceEntry::File { .. }, Some(local)) => {
                    let data = std::fs::read(local)
                        .map_err(|e| Error::io(format!("reading {}", local.display()), e))?;
                    let digest = BlobDigest::of(&data);
                    blobs.insert(digest.sha256.clone(), (digest.clone(), false));
                    small.push(data);
                    Some(digest)
                }
                (SourceEntry::File { .. }, None) => {
                    return Err(Error::Environment(format!(
                        "{}: its content ({}) is not on this machine",
                        input.path, input.entry
                    )))
                }
                _ => None,
            };
            inputs.push(SpecInput {
                path: input.path.clone(),
                entry: input.entry.to_string(),
                blob,
            });
        }
        for layer in &layers {
            for chunk in &layer.chunks {
                blobs.insert(chunk.sha256.clone(), (chunk.clone(), false));
            }
        }
        let spec = Spec {
            format: FORMAT,
            name: name.to_string(),
            layers,
            inputs,
            empty_dirs: action.empty_dirs.clone(),
            script: action.script.clone(),
            cwd: action.cwd.clone(),
            env_vars: action.env_vars.clone(),
            limits: SpecLimits::of(&self.engine.repo.limits.overridden_by(action.limits)),
            outputs: action.outputs.clone(),
            build_flags: action.build_flags,
        };
        let spec_json = serde_json::to_vec_pretty(&spec).expect("serialisable");
        let blobs_dir = directory(&blobs, &BTreeMap::new()).encode_to_vec();
        let root = directory(
            &BTreeMap::from([(SPEC_FILE.to_string(), (BlobDigest::of(&spec_json), false))]),
            &BTreeMap::from([(BLOBS.to_string(), BlobDigest::of(&blobs_dir))]),
        )
        .encode_to_vec();
        let command = command(action.outputs.len()).encode_to_vec();
        let reapi_action = comb_remote::Action {
            command_digest: Some(BlobDigest::of(&command).proto()),
            input_root_digest: Some(BlobDigest::of(&root).proto()),
            ..Default::default()
        }
        .encode_to_vec();
        let action_digest = BlobDigest::of(&reapi_action);
        small.extend([spec_json, blobs_dir, root, command, reapi_action]);
        let refs: Vec<&[u8]> = small.iter().map(Vec::as_slice).collect();
        self.remote.upload(&refs).map_err(fail)?;
        let executed = self
            .remote
            .execute(&action_digest, Some(&action.env.to_string()))
            .map_err(fail)?;
        let result = executed.result;
        let worker = result
            .execution_metadata
            .as_ref()
            .map(|m| m.worker.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "an unnamed worker".into());
        let read_stream =
            |raw: &[u8], digest: &Option<comb_remote::Digest>, what: &str| match digest {
                Some(d) if raw.is_empty() && d.size_bytes > 0 => {
                    let d = BlobDigest::from_proto(d).map_err(fail)?;
                    self.remote.download(&d, what).map_err(fail)
                }
                _ => Ok(raw.to_vec()),
            };
        let log = read_stream(&result.stdout_raw, &result.stdout_digest, "a build log")?;
        let log = String::from_utf8_lossy(&log).into_owned();
        if result.exit_code != 0 {
            let why = read_stream(&result.stderr_raw, &result.stderr_digest, "a message")?;
            let why = String::from_utf8_lossy(&why).trim().to_string();
            let why = if why.is_empty() {
                format!("the build exited with {}", result.exit_code)
            } else {
                why
            };
            return Err(Error::Stage {
                stage: "build",
                name: name.to_string(),
                message: format!("{why} (on {worker})"),
                log: crate::env::tail(&log, 30),
                stored_log: crate::logs::store(self.engine, &log).ok(),
            });
        }
        let scratch = self.engine.store.tmp_path("remote-build");
        let guard = crate::executor::Scratch::new(scratch.clone())?;
        let mut outputs = Vec::new();
        for i in 0..action.outputs.len() {
            let path = format!("{OUT}/{i}");
            let tree = result
                .output_directories
                .iter()
                .find(|d| d.path == path)
                .and_then(|d| d.tree_digest.as_ref())
                .ok_or_else(|| {
                    Error::Environment(format!("{name}: {worker} sent no output {path}"))
                })?;
            let tree = BlobDigest::from_proto(tree).map_err(fail)?;
            let dir = scratch.join(i.to_string());
            self.fetch_tree(name, &tree, &dir)?;
            outputs.push(dir);
        }
        let confinement = result
            .output_files
            .iter()
            .find(|f| f.path == CONFINEMENT)
            .and_then(|f| f.digest.as_ref())
            .ok_or_else(|| Error::Environment(format!("{name}: {worker} sent no {CONFINEMENT}")))?;
        let confinement = BlobDigest::from_proto(confinement).map_err(fail)?;
        let confinement = self
            .remote
            .download(&confinement, CONFINEMENT)
            .map_err(fail)?;
        let confinement = serde_json::from_slice(&confinement)
            .map_err(|e| Error::Environment(format!("{name}: {worker}'s {CONFINEMENT}: {e}")))?;
        Executed::fetched(guard, outputs, log, confinement, Some(worker))
    }
}
