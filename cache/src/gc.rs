//! Keeping the store healthy: `comb gc` drops the nodes no recent run used
//! (least recently used first, down to a size if asked), then every blob
//! and tree that no remaining node has as its output or names (the
//! references recorded with it: a build's packages, log and sources) and
//! no recorded log is; `comb stats` says what the store holds. Nothing
//! here reads a manifest or a description: what a node names is recorded
//! with it ([`Index::record_node_referencing`]).
//!
//! Safety against a running comb: every command that uses the store's
//! outputs holds [`Store::use_lock`] (shared) for its whole run, and gc
//! holds it exclusively, so gc waits for running builds to end and builds
//! wait for gc; nothing a build reads can go while it runs.

use crate::digest::{Algorithm, Digest};
use crate::index::{unix_now, EventStatus, Index, NodeKind, NodeOutput, NodeRef, NodeSummary};
use crate::store::{Store, StoreError, INDEX_FILE};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Runs kept whatever their age, so the latest history is never lost.
pub const KEEP_RUNS: usize = 20;

/// What to drop.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Drop nodes no run used for this many days.
    pub max_age_days: u64,
    /// Then drop the least recently used nodes until the store (blobs and
    /// trees) is at most this many bytes.
    pub max_size: Option<u64>,
    /// Report, remove nothing.
    pub dry_run: bool,
    /// Node keys never dropped (the snapshot a repository's lock pins).
    pub pinned: HashSet<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RemovedNode {
    pub kind: NodeKind,
    pub name: String,
    pub key: String,
    pub size: u64,
    pub last_used_at: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub nodes: Vec<RemovedNode>,
    pub blobs: u64,
    pub trees: u64,
    /// Bytes the removed blobs and trees held.
    pub freed_bytes: u64,
    pub runs_pruned: usize,
    /// Store size (blobs and trees) before and after.
    pub size_before: u64,
    pub size_after: u64,
}

/// Collects garbage. The caller holds [`Store::collect_lock`].
pub fn collect(store: &Store, index: &Index, options: &GcOptions) -> Result<GcReport, StoreError> {
    let blobs = store.list_blobs()?;
    let trees = store.list_trees()?;
    let size_before: u64 =
        blobs.iter().map(|b| b.2).sum::<u64>() + trees.iter().map(|t| t.1).sum::<u64>();
    let cutoff = unix_now() - (options.max_age_days as i64).saturating_mul(86_400);
    let nodes = index.node_summaries()?;
    let mut drop: Vec<&NodeSummary> = Vec::new();
    let mut kept_size = size_before;
    let mut dropped = HashSet::new();
    // Least recently used first: by age, then by size.
    for n in &nodes {
        if options.pinned.contains(&n.key) {
            continue;
        }
        // `--max-age 0`: whatever was used before now, this second too.
        let too_old = options.max_age_days == 0 || n.last_used_at < cutoff;
        let too_big = options.max_size.is_some_and(|max| kept_size > max);
        if too_old || too_big {
            kept_size = kept_size.saturating_sub(n.size);
            dropped.insert(n.key.as_str());
            drop.push(n);
        }
    }
    let mut report = GcReport {
        dry_run: options.dry_run,
        size_before,
        nodes: drop
            .iter()
            .map(|n| RemovedNode {
                kind: n.kind,
                name: n.name.clone(),
                key: n.key.clone(),
                size: n.size,
                last_used_at: n.last_used_at,
            })
            .collect(),
        ..GcReport::default()
    };
    if !options.dry_run {
        index.batch(|index| {
            for n in &drop {
                index.remove_node(&n.key)?;
            }
            report.runs_pruned = index.prune(cutoff, KEEP_RUNS)?;
            Ok(())
        })?;
    }
    // Mark what the remaining nodes (and recorded logs) name.
    let (live_blobs, live_trees) = referenced(store, index, &nodes, &dropped)?;
    for (alg, hex, size) in &blobs {
        if !live_blobs.contains(&(*alg, hex.clone())) {
            report.blobs += 1;
            report.freed_bytes += size;
            if !options.dry_run {
                store.remove_blob(*alg, hex)?;
            }
        }
    }
    for (name, size) in &trees {
        if !live_trees.contains(name) {
            report.trees += 1;
            report.freed_bytes += size;
            if !options.dry_run {
                store.remove_tree(name)?;
            }
        }
    }
    report.size_after = size_before.saturating_sub(report.freed_bytes);
    Ok(report)
}

/// A blob as the store's layout names it: its algorithm and hex hash.
type BlobName = (Algorithm, String);

/// The blobs and trees the nodes not in `dropped` name: their outputs
/// (with the trees those are layered on), their references, and the logs
/// of recorded events.
fn referenced(
    store: &Store,
    index: &Index,
    nodes: &[NodeSummary],
    dropped: &HashSet<&str>,
) -> Result<(HashSet<BlobName>, HashSet<String>), StoreError> {
    let mut blobs = HashSet::new();
    let mut trees = HashSet::new();
    for n in nodes.iter().filter(|n| !dropped.contains(n.key.as_str())) {
        match &n.output {
            NodeOutput::Tree(name) => {
                trees.insert(name.clone());
            }
            NodeOutput::Blob(d) => {
                blobs.insert((d.algorithm, d.hex()));
            }
        }
    }
    let mut below: Vec<String> = trees.iter().cloned().collect();
    while let Some(name) = below.pop() {
        // A tree already gone names nothing; its node is a miss next time.
        for base in store.tree_layered_on(&name).unwrap_or_default() {
            if trees.insert(base.clone()) {
                below.push(base);
            }
        }
    }
    for (key, r) in index.node_refs()? {
        match r {
            NodeRef::Blob { algorithm, hex } | NodeRef::Log { algorithm, hex }
                if !dropped.contains(key.as_str()) =>
            {
                blobs.insert((algorithm, hex));
            }
            _ => {}
        }
    }
    for text in index.event_logs()? {
        if let Ok(d) = text.parse::<Digest>() {
            blobs.insert((d.algorithm, d.hex()));
        }
    }
    Ok((blobs, trees))
}

/// What `comb stats` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Bytes by kind: `blobs` (packages, manifests, resolutions),
    /// `logs`, `layers` (environment trees), `snapshots` (index trees),
    /// `index` (the SQLite files).
    pub size: BTreeMap<String, u64>,
    pub nodes: BTreeMap<String, u64>,
    /// Over the last `runs` runs.
    pub runs: usize,
    pub hit_rate: Option<f64>,
    /// Largest first.
    pub largest_layers: Vec<LayerStat>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerStat {
    pub stage: NodeKind,
    pub name: String,
    pub key: String,
    pub size: u64,
    /// Recorded packages (build nodes) built in it, directly or above it.
    pub packages: u64,
}

/// How many layers `comb stats` lists.
const LARGEST: usize = 10;

pub fn stats(store: &Store, index: &Index, runs: usize) -> Result<Stats, StoreError> {
    let nodes = index.node_summaries()?;
    let mut logs = HashSet::new();
    for text in index.event_logs()? {
        if let Ok(d) = text.parse::<Digest>() {
            logs.insert((d.algorithm, d.hex()));
        }
    }
    // Which environment each build used, and which layer each layer is on.
    let kinds: HashMap<&str, NodeKind> = nodes.iter().map(|n| (n.key.as_str(), n.kind)).collect();
    let mut env_of_build: Vec<String> = Vec::new();
    let mut below: HashMap<String, String> = HashMap::new();
    for (key, r) in index.node_refs()? {
        match (kinds.get(key.as_str()), r) {
            (_, NodeRef::Log { algorithm, hex }) => {
                logs.insert((algorithm, hex));
            }
            (Some(NodeKind::Build), NodeRef::Node(env)) => env_of_build.push(env),
            (Some(NodeKind::BaseBuild | NodeKind::PkgEnv), NodeRef::Node(b)) => {
                below.insert(key, b);
            }
            _ => {}
        }
    }
    let mut packages_on: HashMap<String, u64> = HashMap::new();
    for env in env_of_build {
        let mut at = Some(env);
        let mut depth = 0;
        while let Some(key) = at {
            *packages_on.entry(key.clone()).or_default() += 1;
            at = below.get(&key).cloned();
            depth += 1;
            if depth > 16 {
                break;
            }
        }
    }
    let mut size = BTreeMap::new();
    for (alg, hex, bytes) in store.list_blobs()? {
        let kind = if logs.contains(&(alg, hex)) {
            "logs"
        } else {
            "blobs"
        };
        *size.entry(kind.to_string()).or_insert(0) += bytes;
    }
    let tree_kind: HashMap<String, NodeKind> = nodes
        .iter()
        .filter_map(|n| match &n.output {
            NodeOutput::Tree(t) => Some((t.clone(), n.kind)),
            _ => None,
        })
        .collect();
    for (name, bytes) in store.list_trees()? {
        let kind = match tree_kind.get(&name) {
            Some(NodeKind::Index) => "snapshots",
            _ => "layers",
        };
        *size.entry(kind.to_string()).or_insert(0) += bytes;
    }
    let mut index_bytes = 0;
    for suffix in ["", "-wal", "-shm"] {
        let path = store.root().join(format!("{INDEX_FILE}{suffix}"));
        index_bytes += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    }
    size.insert("index".into(), index_bytes);
    let mut counts = BTreeMap::new();
    for n in &nodes {
        *counts.entry(n.kind.as_str().to_string()).or_insert(0) += 1;
    }
    let recent = index.runs(runs)?;
    let (mut hits, mut looked) = (0u64, 0u64);
    for r in &recent {
        for e in index.events(r.id)? {
            match e.status {
                EventStatus::Hit | EventStatus::Fetched => {
                    hits += 1;
                    looked += 1;
                }
                EventStatus::Built | EventStatus::Failed => looked += 1,
                EventStatus::Skipped => {}
            }
        }
    }
    let mut layers: Vec<LayerStat> = nodes
        .iter()
        .filter(|n| {
            matches!(
                n.kind,
                NodeKind::BaseInstall | NodeKind::BaseBuild | NodeKind::PkgEnv
            )
        })
        .map(|n| LayerStat {
            stage: n.kind,
            name: n.name.clone(),
            key: n.key.clone(),
            size: n.size,
            packages: packages_on.get(&n.key).copied().unwrap_or(0),
        })
        .collect();
    layers.sort_by(|a, b| b.size.cmp(&a.size).then(a.name.cmp(&b.name)));
    layers.truncate(LARGEST);
    Ok(Stats {
        size,
        nodes: counts,
        runs: recent.len(),
        hit_rate: (looked > 0).then(|| hits as f64 / looked as f64),
        largest_layers: layers,
    })
}
