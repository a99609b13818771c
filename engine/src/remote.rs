//! Build results shared between machines through a REAPI cache (`[remote]`
//! of `comb.toml`): before a build runs, its result is looked up there;
//! after one runs on a machine that uploads, it is stored there.
//!
//! A build node is two actions: `build-shortcut SHORTCUT`, whose output
//! is the build's key (so a machine finds a build without making its
//! environment), and `build KEY`, whose outputs are the node's
//! description, its manifest, its `.deb`s and its log. Everything fetched
//! is checked before it is stored: the description must hash to the key
//! (a key is the BLAKE3 of its description), the `.deb`s to the SHA-256 of
//! the manifest, the log to its digest. A result that does not check is
//! reported and the package built here; so is one that went missing
//! between lookup and download.
//!
//! The base environments (base-install, base-build) are shared too, as
//! action `layer KEY`: their layer directory as one archive
//! ([`comb_sandbox::ship`]) cut into chunks, so a machine that only
//! reads derives the builds' keys without making an environment. A
//! fetched layer's archive must hash to what its record says, and is
//! unpacked by the same checks as a layer shipped to a worker.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::remote_exec::{ShippedLayer, CHUNK};
use comb_cache::{Algorithm, NodeKind, NodeOutput, NodeRecord};
use comb_recipes::RemoteConfig;
use comb_remote::{node_action, ActionResult, BlobDigest, OutputFile, Remote};

/// The action kinds of a build node.
const BUILD: &str = "build";
const SHORTCUT: &str = "build-shortcut";
/// The action kind of an environment's layer.
const LAYER: &str = "layer";
/// A record of a shared layer larger than this is not read.
const MAX_LAYER_RECORD: usize = 1 << 20;
/// A shared layer's archive larger than this is not fetched (it is held
/// in memory; a whole distribution's base compresses far below).
const MAX_LAYER_ARCHIVE: u64 = 8 << 30;

/// A connected remote cache.
pub(crate) struct RemoteCache {
    remote: Remote,
    upload: bool,
    fallback_local: bool,
    /// Only results these writers recorded are taken (`None`: any).
    trusted_writers: Option<Vec<String>>,
    /// Who this machine is, recorded with what it uploads.
    writer: String,
}

/// The remote cache of `config`, connected; `None` when there is none,
/// or when it is unreachable and the config says to build locally.
pub(crate) fn connect(
    config: &RemoteConfig,
    observer: &dyn crate::engine::Observer,
) -> Result<Option<RemoteCache>> {
    let Some(url) = &config.cache else {
        return Ok(None);
    };
    match Remote::connect(url, &config.instance) {
        Ok(remote) => Ok(Some(RemoteCache {
            remote,
            upload: config.upload,
            fallback_local: config.fallback_local,
            trusted_writers: config.trusted_writers.clone(),
            writer: writer(),
        })),
        Err(e) if config.fallback_local => {
            observer.note(&format!("{e}; building locally (--remote-fallback local)"));
            Ok(None)
        }
        Err(e) => Err(Error::Environment(format!(
            "{e}: start it, or add --remote-fallback local to build without it"
        ))),
    }
}

/// `comb@HOST (uid N)`: what a result records as its writer.
fn writer() -> String {
    let host = crate::host::name();
    // SAFETY: getuid cannot fail.
    format!("comb@{host} (uid {})", unsafe { libc::getuid() })
}

fn output_file(path: &str, data: &[u8]) -> OutputFile {
    OutputFile {
        path: path.to_string(),
        digest: Some(BlobDigest::of(data).proto()),
        ..Default::default()
    }
}

/// Whether two build descriptions say the same but for their
/// environment's key (which a machine derives only by making it).
fn same_but_env(a: &str, b: &str) -> bool {
    let without = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with("env="))
            .map(str::to_string)
            .collect()
    };
    without(a) == without(b)
}

/// The store digest of a `.deb` of a manifest.
fn deb_digest(deb: &crate::manifest::BuiltDeb) -> Option<comb_cache::Digest> {
    let hash = comb_cache::Hash::<comb_cache::Sha256>::from_hex(&deb.sha256).ok()?;
    Some(hash.digest(deb.size))
}

/// The output file `path` of a result and its digest.
fn file_of(result: &ActionResult, path: &str) -> Option<BlobDigest> {
    let file = result.output_files.iter().find(|f| f.path == path)?;
    BlobDigest::from_proto(file.digest.as_ref()?).ok()
}

impl RemoteCache {
    /// A problem with the cache mid-run: a note and a local build, or an
    /// error when the cache itself is gone and no fallback was asked for.
    fn trouble(&self, engine: &Engine, what: &str, e: comb_remote::Error) -> Result<()> {
        if matches!(e, comb_remote::Error::Unreachable { .. }) && !self.fallback_local {
            return Err(Error::Environment(format!(
                "{e}: start it, or add --remote-fallback local to build without it"
            )));
        }
        engine.observer.note(&format!("remote cache: {what}: {e}"));
        Ok(())
    }

    /// The build `name` found by its shortcut in the remote cache: fetched,
    /// checked, stored and recorded here. `None`: build it here.
    /// `expected` is the build's description as this machine derives it
    /// without its environment: the fetched one must say the same of
    /// everything else (so a pointer to another build is refused).
    pub(crate) fn fetch_build(
        &self,
        engine: &Engine,
        name: &str,
        shortcut: &str,
        expected: &str,
    ) -> Result<Option<NodeRecord>> {
        match self.try_fetch(engine, name, shortcut, expected) {
            Ok(found) => Ok(found),
            Err(e) => {
                self.trouble(engine, &format!("{name}: building it here"), e)?;
                Ok(None)
            }
        }
    }

    /// Who recorded `result`, if this cache may take it from them.
    fn trusted<'r>(&self, result: &'r ActionResult) -> Option<&'r str> {
        let writer = result
            .execution_metadata
            .as_ref()
            .map_or("", |m| m.worker.as_str());
        match &self.trusted_writers {
            Some(trusted) if !trusted.iter().any(|t| t == writer) => None,
            _ => Some(writer),
        }
    }

    fn try_fetch(
        &self,
        engine: &Engine,
        name: &str,
        shortcut: &str,
        expected: &str,
    ) -> std::result::Result<Option<NodeRecord>, comb_remote::Error> {
        let corrupt = |what: &str, why: String| comb_remote::Error::Corrupt {
            what: what.to_string(),
            expected: why,
            actual: "something else".into(),
        };
        let (pointer, ..) = node_action(SHORTCUT, shortcut);
        let Some(found) = self.remote.lookup(&pointer)? else {
            return Ok(None);
        };
        if self.trusted(&found).is_none() {
            engine.observer.note(&format!(
                "remote cache: {name}: not taken from a writer this machine does not trust"
            ));
            return Ok(None);
        }
        let Some(key_blob) = file_of(&found, "key") else {
            return Ok(None);
        };
        let key = String::from_utf8(self.remote.download(&key_blob, "a build key")?)
            .map_err(|_| corrupt("a build key", "text".into()))?;
        let (action, ..) = node_action(BUILD, &key);
        let Some(result) = self.remote.lookup(&action)? else {
            return Ok(None);
        };
        let Some(writer) = self.trusted(&result).map(str::to_string) else {
            return Ok(None);
        };
        let need = |path: &str| {
            file_of(&result, path)
                .ok_or_else(|| comb_remote::Error::Missing(format!("{path} of {name}'s result")))
        };
        let description = self
            .remote
            .download(&need("description")?, "a description")?;
        let description =
            String::from_utf8(description).map_err(|_| corrupt("a description", "text".into()))?;
        if comb_cache::key_of(&description) != key {
            return Err(corrupt(
                &format!("{name}'s description"),
                format!("one whose BLAKE3 is {key}"),
            ));
        }
        if !same_but_env(&description, expected) {
            return Err(corrupt(
                &format!("{name}'s build"),
                "this recipe's build (it describes another)".into(),
            ));
        }
        let json = self
            .remote
            .download(&need("manifest.json")?, "a manifest")?;
        let manifest: Manifest = serde_json::from_slice(&json)
            .map_err(|e| corrupt(&format!("{name}'s manifest"), e.to_string()))?;
        let store_err = |e: comb_cache::StoreError| comb_remote::Error::Call(e.to_string());
        for deb in &manifest.debs {
            let digest = need(&format!("debs/{}", deb.filename))?;
            if digest.sha256 != deb.sha256 || digest.size != deb.size {
                return Err(corrupt(&deb.filename, format!("sha256 {}", deb.sha256)));
            }
            if deb_digest(deb).is_some_and(|d| engine.store.has_blob(&d)) {
                continue;
            }
            let data = self.remote.download(&digest, &deb.filename)?;
            let stored = engine
                .store
                .put_blob_reader_as(&mut data.as_slice(), Algorithm::Sha256)
                .map_err(store_err)?;
            if stored.hex() != deb.sha256 {
                return Err(corrupt(&deb.filename, format!("sha256 {}", deb.sha256)));
            }
        }
        let log = self.remote.download(&need("log")?, "a build log")?;
        let stored_log = engine
            .store
            .put_blob_reader(&mut log.as_slice())
            .map_err(store_err)?;
        if stored_log.to_string() != manifest.log {
            return Err(corrupt(&format!("{name}'s log"), manifest.log.clone()));
        }
        let digest = engine
            .store
            .put_blob_reader(&mut json.as_slice())
            .map_err(store_err)?;
        let writer = if writer.is_empty() {
            "an unnamed writer".to_string()
        } else {
            writer
        };
        let size = manifest.debs.iter().map(|d| d.size).sum();
        let record = engine
            .record_fetched(
                NodeKind::Build,
                name,
                description,
                NodeOutput::Blob(digest),
                size,
                manifest.references(),
                &format!(
                    "fetched from the remote cache {}, written by {writer}",
                    self.remote.url()
                ),
            )
            .map_err(|e| comb_remote::Error::Call(e.to_string()))?;
        Ok(Some(record))
    }

    /// The layer node `key` found in the remote cache: its archive
    /// fetched, checked and unpacked into the store tree `tree_name`.
    /// `None`: make it here.
    pub(crate) fn fetch_layer(
        &self,
        engine: &Engine,
        name: &str,
        key: &str,
        tree_name: &str,
    ) -> Result<Option<crate::engine::Made>> {
        match self.try_fetch_layer(engine, name, key, tree_name) {
            Ok(found) => Ok(found),
            Err(e) => {
                self.trouble(engine, &format!("{name}: making it here"), e)?;
                Ok(None)
            }
        }
    }

    fn try_fetch_layer(
        &self,
        engine: &Engine,
        name: &str,
        key: &str,
        tree_name: &str,
    ) -> std::result::Result<Option<crate::engine::Made>, comb_remote::Error> {
        let call = |e: String| comb_remote::Error::Call(e);
        let (action, ..) = node_action(LAYER, key);
        let Some(found) = self.remote.lookup(&action)? else {
            return Ok(None);
        };
        let Some(writer) = self.trusted(&found).map(str::to_string) else {
            engine.observer.note(&format!(
                "remote cache: {name}: not taken from a writer this machine does not trust"
            ));
            return Ok(None);
        };
        let Some(record) = file_of(&found, "layer.json") else {
            return Ok(None);
        };
        if record.size > MAX_LAYER_RECORD as u64 {
            return Err(call(format!(
                "{name}: a layer record of {} bytes",
                record.size
            )));
        }
        let record: ShippedLayer =
            serde_json::from_slice(&self.remote.download(&record, "a layer record")?)
                .map_err(|e| call(format!("{name}: a bad layer record: {e}")))?;
        let chunks: u64 = record.chunks.iter().map(|c| c.size).sum();
        if chunks != record.size || record.size > MAX_LAYER_ARCHIVE {
            return Err(call(format!(
                "{name}: a layer record of {} bytes in chunks of {chunks} (at most {MAX_LAYER_ARCHIVE} taken)",
                record.size
            )));
        }
        let mut archive = Vec::new();
        for chunk in self.remote.download_all(&record.chunks, "a layer chunk")? {
            archive.extend(chunk);
        }
        record
            .unpack(engine, &archive, tree_name)
            .map_err(|e| call(format!("{name}: {e}")))?;
        let size = engine
            .store
            .tree_size(tree_name)
            .map_err(|e| call(e.to_string()))?;
        let writer = if writer.is_empty() {
            "an unnamed writer".to_string()
        } else {
            writer
        };
        Ok(Some(crate::engine::Made {
            output: NodeOutput::Tree(tree_name.to_string()),
            size,
            refs: Vec::new(),
            worker: None,
            fetched: Some(format!(
                "fetched from the remote cache {}, written by {writer}",
                self.remote.url()
            )),
        }))
    }

    /// Stores the layer node `key` (the store tree `tree_name`, made here)
    /// in the remote cache, when this machine uploads.
    pub(crate) fn share_layer(&self, engine: &Engine, key: &str, tree_name: &str) -> Result<()> {
        if !self.upload {
            return Ok(());
        }
        if let Err(e) = self.try_share_layer(engine, key, tree_name) {
            self.trouble(engine, &format!("storing {tree_name}"), e)?;
        }
        Ok(())
    }

    fn try_share_layer(
        &self,
        engine: &Engine,
        key: &str,
        tree_name: &str,
    ) -> std::result::Result<(), comb_remote::Error> {
        let call = |e: String| comb_remote::Error::Call(e);
        if self.complete(LAYER, key)? {
            return Ok(());
        }
        let dir = engine
            .store
            .tree_path(tree_name)
            .ok_or_else(|| call(format!("{tree_name} is missing from the local store")))?
            .join("0");
        let (record, archive) = ShippedLayer::pack(&dir, format!("{tree_name}/0"), String::new())
            .map_err(|e| call(e.to_string()))?;
        let chunks: Vec<&[u8]> = archive.chunks(CHUNK).collect();
        let record = serde_json::to_vec(&record).expect("serialisable");
        let (action, action_bytes, command) = node_action(LAYER, key);
        let mut blobs = chunks.clone();
        blobs.extend([
            record.as_slice(),
            action_bytes.as_slice(),
            command.as_slice(),
        ]);
        self.remote.upload(&blobs)?;
        let mut files = vec![output_file("layer.json", &record)];
        files.extend(
            chunks
                .iter()
                .enumerate()
                .map(|(i, c)| output_file(&format!("chunks/{i}"), c)),
        );
        self.remote.record(
            &action,
            ActionResult {
                output_files: files,
                execution_metadata: Some(comb_remote::ExecutedActionMetadata {
                    worker: self.writer.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
    }

    /// Stores a build made (or found) here in the remote cache, when this
    /// machine uploads. A cache that refuses it (it takes only what its
    /// own workers run) or fails is noted, never a failed build.
    pub(crate) fn share_build(
        &self,
        engine: &Engine,
        record: &NodeRecord,
        shortcut: &str,
    ) -> Result<()> {
        if !self.upload {
            return Ok(());
        }
        if let Err(e) = self.try_share(engine, record, shortcut) {
            self.trouble(engine, &format!("storing {}", record.name), e)?;
        }
        Ok(())
    }

    /// Whether the cache holds the node `key` (an action of `kind`) with
    /// every blob it names (a blob evicted since is uploaded again).
    fn complete(&self, kind: &str, key: &str) -> std::result::Result<bool, comb_remote::Error> {
        let (action, ..) = node_action(kind, key);
        let Some(result) = self.remote.lookup(&action)? else {
            return Ok(false);
        };
        let named: Vec<BlobDigest> = result
            .output_files
            .iter()
            .filter_map(|f| BlobDigest::from_proto(f.digest.as_ref()?).ok())
            .collect();
        Ok(self.remote.missing(&named)?.is_empty())
    }

    fn try_share(
        &self,
        engine: &Engine,
        record: &NodeRecord,
        shortcut: &str,
    ) -> std::result::Result<(), comb_remote::Error> {
        let (pointer, pointer_action, pointer_command) = node_action(SHORTCUT, shortcut);
        if self.remote.lookup(&pointer)?.is_some() && self.complete(BUILD, &record.key)? {
            return Ok(());
        }
        let read = |what: &str, path: Option<std::path::PathBuf>| {
            let path = path.ok_or_else(|| {
                comb_remote::Error::Call(format!("{what} is missing from the local store"))
            })?;
            std::fs::read(&path)
                .map_err(|e| comb_remote::Error::Call(format!("reading {}: {e}", path.display())))
        };
        let NodeOutput::Blob(manifest_digest) = &record.output else {
            return Ok(());
        };
        let json = read("the manifest", engine.store.blob_path(manifest_digest))?;
        let manifest: Manifest = serde_json::from_slice(&json)
            .map_err(|e| comb_remote::Error::Call(format!("the local manifest: {e}")))?;
        let mut files = vec![
            (
                "description".to_string(),
                record.description.as_bytes().to_vec(),
            ),
            ("manifest.json".to_string(), json),
        ];
        for deb in &manifest.debs {
            let digest = deb_digest(deb).ok_or_else(|| {
                comb_remote::Error::Call(format!("{}: a bad sha256", deb.filename))
            })?;
            files.push((
                format!("debs/{}", deb.filename),
                read(&deb.filename, engine.store.blob_path(&digest))?,
            ));
        }
        let log: comb_cache::Digest = manifest
            .log
            .parse()
            .map_err(|e| comb_remote::Error::Call(format!("the local log digest: {e}")))?;
        files.push((
            "log".to_string(),
            read("the log", engine.store.blob_path(&log))?,
        ));
        let (action, action_bytes, command) = node_action(BUILD, &record.key);
        let key = record.key.as_bytes().to_vec();
        let mut blobs: Vec<&[u8]> = files.iter().map(|(_, b)| b.as_slice()).collect();
        blobs.extend([
            action_bytes.as_slice(),
            command.as_slice(),
            pointer_action.as_slice(),
            pointer_command.as_slice(),
            key.as_slice(),
        ]);
        self.remote.upload(&blobs)?;
        let metadata = comb_remote::ExecutedActionMetadata {
            worker: self.writer.clone(),
            ..Default::default()
        };
        self.remote.record(
            &action,
            ActionResult {
                output_files: files.iter().map(|(p, b)| output_file(p, b)).collect(),
                execution_metadata: Some(metadata.clone()),
                ..Default::default()
            },
        )?;
        self.remote.record(
            &pointer,
            ActionResult {
                output_files: vec![output_file("key", &key)],
                execution_metadata: Some(metadata),
                ..Default::default()
            },
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_compared_but_for_the_environment() {
        let a = "stage=build\nname=greet\nenv=aaaa\nscript=make\n";
        assert!(same_but_env(
            a,
            "stage=build\nname=greet\nenv=bbbb\nscript=make\n"
        ));
        assert!(!same_but_env(
            a,
            "stage=build\nname=other\nenv=aaaa\nscript=make\n"
        ));
        assert!(!same_but_env(
            a,
            "stage=build\nname=greet\nenv=aaaa\nscript=make -j\n"
        ));
    }
}
