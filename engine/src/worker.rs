//! The other end of remote execution: running an action another machine
//! sent ([`run_node`], `comb node run`), and `comb worker`, a Remote
//! Workers API bot ([`serve`]) that takes actions from a REAPI server
//! (BuildGrid) and runs each that way.
//!
//! A worker trusts nothing it receives: every blob is checked against its
//! digest, a layer archive is unpacked by [`comb_sandbox::ship`] (which
//! refuses what no layer may hold), every path of the action stays inside
//! its work directory, and the command runs in this machine's sandbox as
//! U, exactly as a local build. Shipped layers are kept in the worker's
//! store (`shipped-SHA256` trees), so an environment crosses the network
//! once per worker.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::executor::{ActionInput, Executor, LocalSandbox};
use crate::inputs::SourceEntry;
use crate::remote_exec::{entry_name, Spec, BLOBS, CONFINEMENT, OUT, SPEC_FILE};
use comb_remote::bots::{self, BotSession, Lease};
use comb_remote::{BlobDigest, Remote};
use prost::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ACTION: &str = "build.bazel.remote.execution.v2.Action";
const DIGEST: &str = "build.bazel.remote.execution.v2.Digest";
const ACTION_RESULT: &str = "build.bazel.remote.execution.v2.ActionResult";
/// How often a bot reports to the server while it builds.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often an idle bot asks for work.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// What came of running an action.
pub struct NodeRun {
    /// 0 when it succeeded.
    pub exit_code: i32,
    /// Everything the build wrote.
    pub log: String,
    /// Why it failed, one line.
    pub message: String,
    /// How long making the layers this store lacked took.
    pub unpacking: Duration,
}

/// The store tree a shipped layer is kept in.
fn shipped_tree(sha256: &str) -> String {
    format!("shipped-{sha256}")
}

/// The layer `layer` of a spec as a directory of this store: kept from
/// an earlier action, or assembled from its chunks (`chunk` gives each
/// chunk's bytes) and unpacked.
fn ensure_layer(
    engine: &Engine,
    layer: &crate::remote_exec::ShippedLayer,
    chunk: &dyn Fn(&BlobDigest) -> Result<Vec<u8>>,
) -> Result<PathBuf> {
    let name = shipped_tree(&layer.sha256);
    if !comb_cache::is_valid_name(&name) || layer.sha256.len() != 64 {
        return Err(Error::Input(format!("a layer named {:?}", layer.sha256)));
    }
    if let Some(tree) = engine.store.tree_path(&name) {
        return Ok(tree.join("0"));
    }
    let started = std::time::Instant::now();
    let mut archive = Vec::new();
    for c in &layer.chunks {
        archive.extend(chunk(c)?);
    }
    let dir = layer.unpack(engine, &archive, &name)?;
    engine.observer.note(&format!(
        "the layer {} ({:.1} MB) fetched and unpacked in {} ms",
        layer.label,
        archive.len() as f64 / 1e6,
        started.elapsed().as_millis()
    ));
    Ok(dir)
}

/// Runs the action described in `dir` (an input root as
/// [`crate::remote_exec`] lays it out: `comb-action.json` and `blobs/`)
/// in this machine's sandbox, and writes its outputs to `dir/out/N` and
/// `dir/confinement.json`: what `comb node run` does in the directory a
/// server's own worker prepared.
pub fn run_node(engine: &Engine, dir: &Path) -> Result<NodeRun> {
    let spec_path = dir.join(SPEC_FILE);
    let spec = std::fs::read(&spec_path)
        .map_err(|e| Error::io(format!("reading {}", spec_path.display()), e))?;
    let spec = Spec::parse(&spec)?;
    let blob_path = |d: &BlobDigest| dir.join(BLOBS).join(&d.sha256);
    let read_blob = |d: &BlobDigest| -> Result<Vec<u8>> {
        let path = blob_path(d);
        let data = std::fs::read(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if BlobDigest::of(&data) != *d {
            return Err(Error::Input(format!(
                "{}: not the blob {d}",
                path.display()
            )));
        }
        Ok(data)
    };
    run_spec(engine, &spec, dir, &read_blob, &|d| blob_path(d))
}

fn run_spec(
    engine: &Engine,
    spec: &Spec,
    dir: &Path,
    chunk: &dyn Fn(&BlobDigest) -> Result<Vec<u8>>,
    input_path: &dyn Fn(&BlobDigest) -> PathBuf,
) -> Result<NodeRun> {
    let unpacking = std::time::Instant::now();
    let env_paths = spec
        .layers
        .iter()
        .map(|l| ensure_layer(engine, l, chunk))
        .collect::<Result<Vec<_>>>()?;
    let unpacking = unpacking.elapsed();
    let mut inputs = Vec::new();
    for i in &spec.inputs {
        let entry: SourceEntry = i
            .entry
            .parse()
            .map_err(|()| Error::Input(format!("{SPEC_FILE}: a bad entry {:?}", i.entry)))?;
        inputs.push(ActionInput {
            path: i.path.clone(),
            entry,
            local: i.blob.as_ref().map(input_path),
        });
    }
    let limits = spec.limits.config();
    let action = crate::executor::Action {
        name: &spec.name,
        env: crate::inputs::NodeKey::not_derived(),
        env_paths: &env_paths,
        inputs,
        empty_dirs: spec.empty_dirs.clone(),
        script: spec.script.clone(),
        cwd: spec.cwd.clone(),
        env_vars: spec.env_vars.clone(),
        variations: None,
        limits: &limits,
        outputs: spec.outputs.clone(),
        build_flags: spec.build_flags,
    };
    let executed = match LocalSandbox::new(engine).execute(&action) {
        Ok(e) => e,
        Err(Error::Stage { message, log, .. }) => {
            return Ok(NodeRun {
                exit_code: 1,
                log,
                message,
                unpacking,
            })
        }
        Err(e) => return Err(e),
    };
    let out = dir.join(OUT);
    std::fs::create_dir_all(&out)
        .map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
    for (i, output) in executed.outputs.iter().enumerate() {
        copy_output(&output.dir, &output.entries, &out.join(i.to_string()))?;
    }
    let confinement = serde_json::to_vec(&executed.confinement).expect("serialisable");
    crate::remote_exec::write_file(&dir.join(CONFINEMENT), &confinement, false)?;
    Ok(NodeRun {
        exit_code: 0,
        log: executed.log,
        message: String::new(),
        unpacking,
    })
}

/// Copies an output directory, as its entries say (read once, through the
/// safe walk): files, symlinks and directories, nothing else.
fn copy_output(from: &Path, entries: &BTreeMap<PathBuf, SourceEntry>, to: &Path) -> Result<()> {
    std::fs::create_dir(to).map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
    for (rel, entry) in entries {
        let target = to.join(rel);
        match entry {
            SourceEntry::Dir => std::fs::create_dir(&target)
                .map_err(|e| Error::io(format!("creating {}", target.display()), e))?,
            SourceEntry::Symlink(link) => std::os::unix::fs::symlink(link, &target)
                .map_err(|e| Error::io(format!("creating {}", target.display()), e))?,
            SourceEntry::File { executable, .. } => {
                let source = from.join(rel);
                let data = read_nofollow(&source)?;
                crate::remote_exec::write_file(&target, &data, *executable)?;
            }
        }
    }
    Ok(())
}

fn read_nofollow(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut data = Vec::new();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(data)
}

/// An output directory of a finished action as a REAPI `Tree`: its
/// digest, with the tree and every file it names added to `blobs`.
fn tree_of(dir: &Path, blobs: &mut Vec<Vec<u8>>) -> Result<BlobDigest> {
    let mut children = Vec::new();
    let root = directory_of(dir, &mut children, blobs)?;
    let tree = comb_remote::Tree {
        root: Some(root),
        children,
    }
    .encode_to_vec();
    let digest = BlobDigest::of(&tree);
    blobs.push(tree);
    Ok(digest)
}

/// The `Directory` of `dir` (files, symlinks, subdirectories), its
/// subdirectories' added to `children` and its files' bytes to `files`.
fn directory_of(
    dir: &Path,
    children: &mut Vec<comb_remote::Directory>,
    files: &mut Vec<Vec<u8>>,
) -> Result<comb_remote::Directory> {
    use std::os::unix::fs::PermissionsExt;
    let mut listing: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    listing.sort_by_key(|e| e.file_name());
    let mut d = comb_remote::Directory::default();
    for entry in listing {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let md = std::fs::symlink_metadata(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if md.file_type().is_symlink() {
            let target = std::fs::read_link(&path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            d.symlinks.push(comb_remote::SymlinkNode {
                name,
                target: target.to_string_lossy().into_owned(),
                ..Default::default()
            });
        } else if md.is_dir() {
            let child = directory_of(&path, children, files)?;
            let bytes = child.encode_to_vec();
            d.directories.push(comb_remote::DirectoryNode {
                name,
                digest: Some(BlobDigest::of(&bytes).proto()),
            });
            children.push(child);
        } else {
            let data = read_nofollow(&path)?;
            d.files.push(comb_remote::FileNode {
                name,
                digest: Some(BlobDigest::of(&data).proto()),
                is_executable: md.permissions().mode() & 0o111 != 0,
                ..Default::default()
            });
            files.push(data);
        }
    }
    Ok(d)
}

/// Where a lease's time went, for the worker's log.
struct Phases {
    fetch: Duration,
    unpack: Duration,
    run: Duration,
    upload: Duration,
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fetching {} ms, unpacking layers {} ms, running {} ms, uploading {} ms",
            self.fetch.as_millis(),
            self.unpack.as_millis(),
            self.run.as_millis(),
            self.upload.as_millis()
        )
    }
}

/// Runs one lease's action: fetched, run, its outputs uploaded. The
/// result, or why there is none.
fn run_lease(
    engine: &Engine,
    remote: &Remote,
    worker: &str,
    lease: &Lease,
) -> Result<(comb_remote::ActionResult, Phases)> {
    let began = std::time::Instant::now();
    let fail = |e: comb_remote::Error| Error::Environment(format!("lease {}: {e}", lease.id));
    let payload = lease
        .payload
        .as_ref()
        .ok_or_else(|| Error::Input(format!("lease {}: no payload", lease.id)))?;
    let action: comb_remote::Action = match comb_remote::from_any(ACTION, payload) {
        Some(a) => a,
        None => {
            let digest: comb_remote::Digest = comb_remote::from_any(DIGEST, payload)
                .ok_or_else(|| Error::Input(format!("lease {}: not an action", lease.id)))?;
            let digest = BlobDigest::from_proto(&digest).map_err(fail)?;
            let bytes = remote.download(&digest, "an action").map_err(fail)?;
            comb_remote::Action::decode(bytes.as_slice())
                .map_err(|e| Error::Input(format!("lease {}: a malformed action: {e}", lease.id)))?
        }
    };
    let digest_of = |d: &Option<comb_remote::Digest>, what: &str| -> Result<BlobDigest> {
        let d = d
            .as_ref()
            .ok_or_else(|| Error::Input(format!("lease {}: no {what}", lease.id)))?;
        BlobDigest::from_proto(d).map_err(fail)
    };
    let mut first = remote
        .download_all(
            &[
                digest_of(&action.command_digest, "command")?,
                digest_of(&action.input_root_digest, "input root")?,
            ],
            "an action",
        )
        .map_err(fail)?;
    let root = first.pop().expect("two asked");
    let command = first.pop().expect("two asked");
    let command = comb_remote::Command::decode(command.as_slice())
        .map_err(|e| Error::Input(format!("lease {}: a malformed command: {e}", lease.id)))?;
    if command.arguments.get(..3) != Some(&["comb".into(), "node".into(), "run".into()]) {
        return Err(Error::Input(format!(
            "lease {}: {:?} is not a comb action (this worker runs only `comb node run`)",
            lease.id, command.arguments
        )));
    }
    let root = comb_remote::Directory::decode(root.as_slice())
        .map_err(|e| Error::Input(format!("lease {}: a malformed input root: {e}", lease.id)))?;
    let spec_file = root
        .files
        .iter()
        .find(|f| f.name == SPEC_FILE)
        .ok_or_else(|| Error::Input(format!("lease {}: no {SPEC_FILE}", lease.id)))?;
    let spec = remote
        .download(&digest_of(&spec_file.digest, SPEC_FILE)?, SPEC_FILE)
        .map_err(fail)?;
    let spec = Spec::parse(&spec)?;
    let scratch = crate::executor::Scratch::new(engine.store.tmp_path("lease"))?;
    let dir = scratch.path().to_path_buf();
    let blobs = dir.join(BLOBS);
    std::fs::create_dir(&blobs)
        .map_err(|e| Error::io(format!("creating {}", blobs.display()), e))?;
    // Inputs are fetched now; layer chunks only when the layer is not kept.
    let mut inputs: Vec<BlobDigest> = spec.inputs.iter().filter_map(|i| i.blob.clone()).collect();
    inputs.sort();
    inputs.dedup();
    let data = remote.download_all(&inputs, "an input").map_err(fail)?;
    for (blob, data) in inputs.iter().zip(data) {
        let path = blobs.join(entry_name("a blob", &blob.sha256)?);
        crate::remote_exec::write_file(&path, &data, false)?;
    }
    let chunk = |d: &BlobDigest| remote.download(d, "a layer chunk").map_err(fail);
    let fetched = std::time::Instant::now();
    let run = run_spec(engine, &spec, &dir, &chunk, &|d| blobs.join(&d.sha256))?;
    let ran = std::time::Instant::now();
    let unpack = run.unpacking;
    let log = run.log.into_bytes();
    let message = run.message.into_bytes();
    let mut result = comb_remote::ActionResult {
        exit_code: run.exit_code,
        stdout_digest: Some(BlobDigest::of(&log).proto()),
        stderr_digest: Some(BlobDigest::of(&message).proto()),
        execution_metadata: Some(comb_remote::ExecutedActionMetadata {
            worker: worker.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut upload = vec![log, message];
    if run.exit_code == 0 {
        for i in 0..spec.outputs.len() {
            let path = format!("{OUT}/{i}");
            let tree = tree_of(&dir.join(&path), &mut upload)?;
            result
                .output_directories
                .push(comb_remote::OutputDirectory {
                    path,
                    tree_digest: Some(tree.proto()),
                    ..Default::default()
                });
        }
        let confinement = std::fs::read(dir.join(CONFINEMENT))
            .map_err(|e| Error::io(format!("reading {CONFINEMENT}"), e))?;
        result.output_files.push(comb_remote::OutputFile {
            path: CONFINEMENT.into(),
            digest: Some(BlobDigest::of(&confinement).proto()),
            ..Default::default()
        });
        upload.push(confinement);
    }
    // Everything in one call (and one to ask what the server lacks).
    let refs: Vec<&[u8]> = upload.iter().map(Vec::as_slice).collect();
    remote.upload(&refs).map_err(fail)?;
    let phases = Phases {
        fetch: fetched - began,
        unpack,
        run: (ran - fetched).saturating_sub(unpack),
        upload: ran.elapsed(),
    };
    Ok((result, phases))
}

/// `comb worker`: a bot of the REAPI server at `url` (instance
/// `instance`) named `name`, running one action at a time until the
/// server goes away for longer than `patience` (or forever when `None`).
pub fn serve(
    engine: &Engine,
    url: &str,
    instance: &str,
    name: &str,
    patience: Option<Duration>,
) -> Result<()> {
    let unreachable = |e: comb_remote::Error| Error::Environment(format!("comb worker: {e}"));
    let remote = Remote::connect(url, instance).map_err(unreachable)?;
    let mut session = remote
        .create_bot_session(BotSession {
            bot_id: name.to_string(),
            status: bots::BOT_OK,
            ..Default::default()
        })
        .map_err(unreachable)?;
    engine.observer.note(&format!(
        "comb worker {name}: serving {url} (session {})",
        session.name
    ));
    // The builds' own connection, kept across leases (one runs at a time).
    let for_leases = std::sync::Arc::new(Remote::connect(url, instance).map_err(unreachable)?);
    let (done_tx, done_rx) =
        std::sync::mpsc::channel::<(String, Result<(comb_remote::ActionResult, Phases)>)>();
    std::thread::scope(|scope| {
        let mut running: Option<String> = None;
        let mut started = std::time::Instant::now();
        let mut lost_since: Option<std::time::Instant> = None;
        loop {
            if engine.cancel.is_cancelled() {
                // Going: no new builds for this bot; the running one (its
                // sandbox killed) is given back to be run elsewhere.
                session.status = bots::BOT_TERMINATING;
                for lease in session.leases.iter_mut() {
                    if lease.state == bots::LEASE_ACTIVE {
                        lease.state = bots::LEASE_COMPLETED;
                        lease.status = Some(comb_remote::Status {
                            code: 14,
                            message: format!("the worker {name} is stopping"),
                            ..Default::default()
                        });
                    }
                }
                let _ = remote.update_bot_session(session.clone());
                engine
                    .observer
                    .note(&format!("comb worker {name}: stopped"));
                return Ok(());
            }
            // A finished lease is reported with its result, at once.
            let finished = match &running {
                Some(_) => done_rx.recv_timeout(HEARTBEAT).ok(),
                None => None,
            };
            if let Some((id, outcome)) = finished {
                running = None;
                let took = started.elapsed().as_millis();
                let how = match &outcome {
                    Ok((r, phases)) => format!("exit {}; {phases}", r.exit_code),
                    Err(_) => "failed".to_string(),
                };
                engine.observer.note(&format!(
                    "comb worker {name}: lease {id} done in {took} ms ({how})"
                ));
                for lease in session.leases.iter_mut().filter(|l| l.id == id) {
                    lease.state = bots::LEASE_COMPLETED;
                    match &outcome {
                        Ok((result, _)) => {
                            lease.status = Some(comb_remote::Status::default());
                            lease.result = Some(comb_remote::to_any(ACTION_RESULT, result));
                        }
                        Err(e) => {
                            engine.observer.note(&format!("comb worker {name}: {e}"));
                            lease.status = Some(comb_remote::Status {
                                // INVALID_ARGUMENT for what was sent, INTERNAL
                                // (retried elsewhere) for this machine's trouble.
                                code: if matches!(e, Error::Input(_)) { 3 } else { 13 },
                                message: e.to_string(),
                                ..Default::default()
                            });
                        }
                    }
                }
            }
            session.leases.retain(|l| l.state != bots::LEASE_CANCELLED);
            let reported = session
                .leases
                .iter()
                .any(|l| l.state == bots::LEASE_COMPLETED);
            let sent = session.clone();
            let asked = std::time::Instant::now();
            session = match remote.update_bot_session(sent.clone()) {
                Ok(s) => {
                    lost_since = None;
                    s
                }
                Err(e @ comb_remote::Error::Unreachable { .. }) => {
                    let since = *lost_since.get_or_insert_with(std::time::Instant::now);
                    if patience.is_some_and(|p| since.elapsed() > p) {
                        return Err(unreachable(e));
                    }
                    std::thread::sleep(HEARTBEAT);
                    sent
                }
                Err(e) => {
                    // The server forgot the session (restarted, or took
                    // this bot for dead): a new one; its jobs were requeued.
                    engine
                        .observer
                        .note(&format!("comb worker {name}: {e}: opening a new session"));
                    std::thread::sleep(HEARTBEAT);
                    let fresh = remote.create_bot_session(BotSession {
                        bot_id: name.to_string(),
                        status: bots::BOT_OK,
                        ..Default::default()
                    });
                    match fresh {
                        Ok(s) => s,
                        Err(e) => {
                            engine.observer.note(&format!("comb worker {name}: {e}"));
                            sent
                        }
                    }
                }
            };
            // Completed leases the server has taken are gone from its answer.
            for lease in session.leases.iter_mut() {
                // BuildGrid sends a new lease already ACTIVE; the protocol
                // says PENDING.
                let new = matches!(lease.state, bots::LEASE_PENDING | bots::LEASE_ACTIVE)
                    && running.as_ref() != Some(&lease.id);
                if new && running.is_none() {
                    lease.state = bots::LEASE_ACTIVE;
                    let (lease, id) = (lease.clone(), lease.id.clone());
                    let (remote, done) = (for_leases.clone(), done_tx.clone());
                    scope.spawn(move || {
                        let outcome = run_lease(engine, &remote, name, &lease);
                        let _ = done.send((lease.id.clone(), outcome));
                    });
                    engine
                        .observer
                        .note(&format!("comb worker {name}: running lease {id}"));
                    running = Some(id);
                    started = std::time::Instant::now();
                }
            }
            // A server that answers at once when it has no work is asked
            // again soon, not in a busy loop (BuildGrid waits for work,
            // but answers a report at once: then it is asked again now).
            if running.is_none() && !reported && asked.elapsed() < IDLE_POLL {
                std::thread::sleep(IDLE_POLL);
            }
        }
    })
}
