//! `comb gc` and `comb stats` are the cache's (`comb_cache::gc`): they
//! read what each node names from the index, where the engine records it
//! with the node. This fills it in, once, for the nodes a comb recorded
//! before it did that, from their typed inputs and a build's manifest.

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use comb_cache::gc::{GcOptions, GcReport, Stats};
use comb_cache::{Index, NodeKind, NodeOutput, NodeRecord, NodeRef, Store};

/// Collects garbage. The caller holds [`Store::collect_lock`].
pub fn collect(store: &Store, index: &Index, options: &GcOptions) -> Result<GcReport> {
    fill_in_references(store, index)?;
    Ok(comb_cache::gc::collect(store, index, options)?)
}

/// What the store holds, over the last `runs` runs.
pub fn stats(store: &Store, index: &Index, runs: usize) -> Result<Stats> {
    fill_in_references(store, index)?;
    Ok(comb_cache::gc::stats(store, index, runs)?)
}

/// Records what each node recorded without it names.
fn fill_in_references(store: &Store, index: &Index) -> Result<()> {
    let old = index.nodes_without_refs()?;
    if old.is_empty() {
        return Ok(());
    }
    let mut found = Vec::with_capacity(old.len());
    for node in &old {
        found.push((node.key.as_str(), references_of(store, node)?));
    }
    index.batch(|index| {
        for (key, refs) in &found {
            index.set_node_refs(key, refs)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// What a recorded node names: through its inputs, and a build through
/// its manifest (whose blob, if gone, names nothing more).
fn references_of(store: &Store, node: &NodeRecord) -> Result<Vec<NodeRef>> {
    let mut refs = crate::inputs::references_of_record(node.kind, &node.description);
    if let (NodeKind::Build, NodeOutput::Blob(digest)) = (node.kind, &node.output) {
        if let Ok(file) = store.open_blob(digest) {
            let manifest: Manifest = serde_json::from_reader(std::io::BufReader::new(file))
                .map_err(|e| {
                    Error::Environment(format!("reading the manifest of {}: {e}", node.name))
                })?;
            refs.extend(manifest.references());
        }
    }
    Ok(refs)
}
