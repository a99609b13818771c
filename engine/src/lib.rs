//! comb-engine: the stages of a package build as content-addressed nodes.
//!
//! A node's key is the blake3 of its canonical input description; a node
//! whose key is recorded and whose output is in the store is a hit and is
//! not run again. The stages, hasher's pipeline: the index snapshot pinned
//! by `comb.lock` ([`load_snapshot`]), resolution (the base sets by APT,
//! each package's build dependencies by comb-distro's resolver), fetching,
//! the environment layers built by R ([`environment`]) and the build run
//! by U ([`build()`]). Every node, hit or built or failed, is recorded in
//! the store's index with the run it belongs to, and every miss with the
//! inputs that differ from the node it was compared with ([`explain`]). An
//! engine opened to plan ([`Engine::open_planning`], [`plan()`]) looks every
//! node up the same way and records and builds nothing.
//!
//! # What each stage's key holds
//!
//! Each stage's inputs are one struct (in `inputs.rs`); this table is
//! generated from them, and a test keeps it current. A build also has a
//! *shortcut*: its inputs with the environment not yet derived, plus what
//! the environment is derived from (the last rows), so a run that changes
//! nothing finds the build without resolving its environment.
//!
//! | stage | input | holds | meaning |
//! |---|---|---|---|
//! | index | `uri` | text | The mirror's URI. |
//! | index | `suite` | text | The suite (e.g. `bookworm`). |
//! | index | `components` | list of text | The components (e.g. `main`). |
//! | index | `architecture` | text | The architecture everything is built for. |
//! | index | `keyring-sha256` | hex hash | The SHA-256 of the keyring `InRelease` is checked with. |
//! | index | `inrelease-sha256` | hex hash | The SHA-256 of the pinned `InRelease`. |
//! | resolve (a `debian` source) | `index` | node key | The snapshot's index node. |
//! | resolve (a `debian` source) | `source` | text | The source package's name. |
//! | resolve (a `debian` source) | `version` | version or newest | The version the recipe asks for, or `newest`. |
//! | resolve (a base layer) | `index` | node key | The snapshot's index node. |
//! | resolve (a base layer) | `architecture` | text | The architecture resolved for. |
//! | resolve (a base layer) | `status` | digest or none | The BLAKE3 of the dpkg status of the layers below, or `none`. |
//! | resolve (a base layer) | `names` | list of text or essential-and-required | The packages asked for (`[base]` of `comb.toml`). |
//! | resolve (a base layer) | `local` | map of package:architecture to version and sha256 (when any) | The repository's builds that replace the snapshot's packages (`[base] bootstrap`). |
//! | resolve (a pkg-env) | `resolver` | text (when any) | The resolver and its version (none in records made by APT, before comb had its own). |
//! | resolve (a pkg-env) | `index` | node key | The snapshot's index node. |
//! | resolve (a pkg-env) | `architecture` | text | The architecture resolved for. |
//! | resolve (a pkg-env) | `status` | digest or none | The BLAKE3 of the dpkg status of the layers below. |
//! | resolve (a pkg-env) | `requires` | list of text | The build requirements, Debian relations, sorted. |
//! | resolve (a pkg-env) | `local` | map of package:architecture to version and sha256 | The packages built by the repository's recipes it needs. |
//! | resolve (a pkg-env) | `replaces` | map of package:architecture to base version -> version (when any) | The repository's packages that replace a copy the layers below hold (`BASE-VERSION -> VERSION`). |
//! | fetch | `sha256` | hex hash | Its SHA-256, from the index. |
//! | fetch | `size` | number | Its size in bytes, from the index. |
//! | base-install, base-build, pkg-env | `recipe` | text | comb's way of making layers. |
//! | base-install, base-build, pkg-env | `below` | node key or none | The layer below, or `none`. |
//! | base-install, base-build, pkg-env | `packages` | map of package:architecture to version and sha256 | The packages it adds. |
//! | build | `builder` | text | comb's way of building. |
//! | build | `kind` | native, debian, dsc or url | Where the sources come from. |
//! | build | `name` | text | The recipe's name. |
//! | build | `version` | text | The version built. |
//! | build | `env` | node key | The environment's top layer. |
//! | build | `architecture` | text | The architecture built for. |
//! | build | `source` | map of text to file digest, symlink or dir | Every source file by path. |
//! | build | `script` | text | The recipe's build script (empty for Debian sources). |
//! | build | `outputs` | list of text | The recipe's outputs, each as one line. |
//! | build | `package` | text (when any) | What a native recipe's packages say of themselves besides their outputs: maintainer, license, copyright, homepage, description (none in records made before comb wrote them). |
//! | build shortcut | `resolver` | text (when any) | The resolver of the build dependencies and its version (none before comb had its own). |
//! | build shortcut | `index` | node key | The snapshot's index node. |
//! | build shortcut | `base` | node key | The base environment's top layer. |
//! | build shortcut | `requires` | list of text | The build requirements, Debian relations. |
//! | build shortcut | `needs` | list of hex hash | The outputs of the recipes it needs (each a BLAKE3). |

mod build;
mod buildflags;
mod check;
mod engine;
mod env;
mod error;
mod executor;
mod gc;
mod inputs;
mod logs;
mod manifest;
mod miss;
mod native;
mod plan;
mod remote;
mod remote_exec;
mod report;
mod scheduler;
mod snapshot;
mod source;
mod vary;
mod why;
mod worker;

// The engine's API: what the binary and the build service call. The
// modules are private; everything a caller uses is named here.
pub use build::{build, recorded_builds, write_repository, BuildRequest, Built, PackageResult};
pub use check::{
    check, CheckRequest, DebDigest, Failure as CheckFailure, FileDifference, FileFacts,
    PackageCheck, Verdict,
};
pub use comb_cache::gc::{
    GcOptions, GcReport, LayerStat, RemovedNode, Stats as StoreStats, KEEP_RUNS,
};
pub use engine::{store_location, Engine, NodeEvent, Observer, Quiet};
pub use env::{environment, run_in, Environment, Layer};
pub use error::{error_kind_of, Error, ErrorKind, Result, WouldBuild};
pub use gc::{collect as collect_garbage, stats as store_stats};
pub use manifest::{BuiltDeb, Confinement, Manifest};
pub use native::NATIVE_SOURCE_DATE_EPOCH;
pub use plan::{plan, Action as PlannedAction, Plan, PlannedPackage};
pub use report::{
    report, CheckRow, CheckRun, Counts, CriticalPath, FailingSince, Failure as ReportedFailure,
    PackageRow, Report, RunReport, Slow, StageLine, TimeChange, TrendPoint,
    SCHEMA as REPORT_SCHEMA, STAGES,
};
pub use scheduler::JobState;
pub use snapshot::{
    import_recipes, load as load_snapshot, mirror_config, pinned_key, update as update_snapshot,
    Pinned, DEFAULT_KEYRING, LOCK_FILE,
};
pub use vary::{Variation, VariationReport, Variations};
pub use why::{
    binaries_of_run, explain, explain_events, limits_of, log_of, manifest_of,
    repository_packages_of, run_of, MissReason, PackageWhy, StageWhy, UpstreamInput,
};
pub use worker::{run_node, serve as serve_worker, NodeRun};

// The types of the crates below that the API above speaks in.
pub use comb_cache::{unix_now, Hash, NodeKind, NodeOutput, RunId, Sha256, Store, INDEX_FILE};
pub use comb_recipes::{
    Architecture, CutEdge, HooksConfig, Output, PocketConfig, Recipe, RepoConfig, Repository,
    Source, CONFIG_FILE,
};
pub use comb_sandbox::{CancelToken, Identity};

/// The sandbox itself, for `comb sandbox run` and the helper process the
/// engine starts.
pub mod sandbox {
    pub use comb_sandbox::{
        caller, close_inherited_fds, helper_main_if_requested, run_streaming, Bind, Identity,
        SandboxConfig, Spec, Stream,
    };
}

/// Who a client or a file belongs to as the host knows it, also from
/// inside an ordinary user's (or the build service's) user namespace,
/// where every other user shows as one overflow id: what the build service
/// decides trust and access by.
pub mod host {
    use std::os::fd::BorrowedFd;
    use std::path::Path;

    /// This machine's host name (`unknown` when the kernel does not say).
    pub fn name() -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    }

    /// This process's uid on the host.
    pub fn uid() -> u32 {
        comb_sandbox::caller::host_uid()
    }

    /// A connected Unix socket's peer (`SO_PEERCRED`): uid, gid, pid.
    pub fn peer(socket: BorrowedFd) -> std::io::Result<(u32, u32, i32)> {
        comb_sandbox::caller::peer_credentials(socket)
    }

    /// The uid owning `path` (a link itself unless `follow`).
    pub fn owner(path: &Path, follow: bool) -> std::io::Result<u32> {
        comb_sandbox::caller::host_owner(path, follow)
    }

    /// Gives the file `fd` (opened with `O_PATH`) to group `gid`, of which
    /// this user must be a member.
    pub fn chgrp(fd: BorrowedFd, gid: u32) -> std::io::Result<()> {
        comb_sandbox::caller::host_chgrp(fd, gid)
    }
}

/// What the build service publishes pockets with: `.deb`s checked and
/// written into signed APT repositories.
pub mod publish {
    pub use comb_debian::control;
    pub use comb_debian::name::is_package_name;
    pub use comb_debian::version::{compare_versions, Version};
    pub use comb_debian::Error as DebianError;
    pub use comb_distro::aptrepo::{write_flat_repository, RepoEntry};
    pub use comb_distro::debwriter::{list_tree, write_deb, BinarySpec};
    pub use comb_distro::release::format_date;
    pub use comb_distro::Error;
}

#[cfg(test)]
mod tests {
    use petgraph::graphmap::DiGraphMap;

    /// Every file of the engine, and the files of the engine it uses.
    const FILES: &[(&str, &str)] = &[
        ("build", include_str!("build.rs")),
        ("buildflags", include_str!("buildflags.rs")),
        ("check", include_str!("check.rs")),
        ("engine", include_str!("engine.rs")),
        ("env", include_str!("env.rs")),
        ("error", include_str!("error.rs")),
        ("executor", include_str!("executor.rs")),
        ("gc", include_str!("gc.rs")),
        ("inputs", include_str!("inputs.rs")),
        ("logs", include_str!("logs.rs")),
        ("manifest", include_str!("manifest.rs")),
        ("miss", include_str!("miss.rs")),
        ("remote_exec", include_str!("remote_exec.rs")),
        ("report", include_str!("report.rs")),
        ("scheduler", include_str!("scheduler.rs")),
        ("snapshot", include_str!("snapshot.rs")),
        ("source", include_str!("source.rs")),
        ("vary", include_str!("vary.rs")),
        ("why", include_str!("why.rs")),
        ("worker", include_str!("worker.rs")),
    ];

    /// No two files of the engine use each other, directly or in a
    /// circle: each can be read knowing only the files below it.
    #[test]
    fn the_engines_files_use_each_other_in_one_direction() {
        let mut graph = DiGraphMap::<&str, ()>::new();
        for (name, text) in FILES {
            graph.add_node(name);
            for (i, _) in text.match_indices("crate::") {
                let used: String = text[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if let Some((file, _)) = FILES.iter().find(|(f, _)| *f == used) {
                    if file != name {
                        graph.add_edge(name, file, ());
                    }
                }
            }
        }
        assert_eq!(graph.node_count(), FILES.len());
        let cycles: Vec<Vec<&str>> = petgraph::algo::tarjan_scc(&graph)
            .into_iter()
            .filter(|c| c.len() > 1)
            .collect();
        assert!(cycles.is_empty(), "files that use each other: {cycles:?}");
        let lib = include_str!("lib.rs");
        for (name, _) in FILES {
            assert!(
                lib.contains(&format!("\nmod {name};"))
                    || lib.contains(&format!("\npub mod {name};")),
                "lib.rs does not declare {name}: add it to FILES"
            );
        }
    }
}
