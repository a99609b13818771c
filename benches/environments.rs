//! The environment part of a first build, today's way and the new way, over
//! the corpus's build environments.
//!
//! The sets: for each package of `tests/corpus`, the packages of its newest
//! pkg-env recorded in a store that built the corpus
//! (`COMB_BENCH_SETS_FROM`, default `/var/cache/comb-corpus-store`, the
//! store `tests/corpus/README.md` fills). Each set is made, one at a time
//! and in the corpus's order, with `comb env build --with NAME=VERSION…`
//! in two fresh stores whose downloads are hard links to that store's (so
//! nothing is downloaded and both pay the same base layers):
//!
//! - **today's way** (`COMB_SHARE_LAYERS=0`): APT resolves the set, and
//!   the set is installed whole in a layer of its own, as every pkg-env was
//!   before environments stood on each other;
//! - **the new way**: each set stands on the largest environment already
//!   made that it contains, or on a new shared layer of what it has in
//!   common with one (`shared-env`), and installs only the rest.
//!
//! Printed: per set, its size and both layer times; then the sums, with
//! the resolution of the same packages: APT's (the `resolve` nodes of
//! today's way) and comb's resolver's in a build (the whole `plan_ms` of
//! `comb build --dry-run --all` of the corpus, which parses the snapshot's
//! `Packages` and resolves every package's build dependencies). The ratio is (new layers + comb's resolution) /
//! (today's layers + APT's resolution); the target is 0.5.
//!
//! `COMB_BENCH_PACKAGES` (all): a comma-separated list of corpus packages,
//! for a shorter run; `COMB_BENCH_DIR` (`/var/tmp`): where the scratch
//! directory is made (on the same file system as the sets' store). Skips
//! when not root, or when the store of sets has none. Run it with `cargo
//! bench --bench environments`, as root.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One corpus package's environment: `NAME=VERSION` of each package.
struct Set {
    package: String,
    packages: Vec<String>,
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        skip("needs root (comb attaches layers as idmapped mounts and builds them as R)");
    }
    let comb = PathBuf::from(env!("CARGO_BIN_EXE_comb"));
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let from = env_path("COMB_BENCH_SETS_FROM", "/var/cache/comb-corpus-store");
    let selected: Option<Vec<String>> = std::env::var("COMB_BENCH_PACKAGES")
        .ok()
        .map(|l| l.split(',').map(|s| s.trim().to_string()).collect());
    let sets = recorded_sets(&from, &corpus, selected.as_deref());
    if sets.is_empty() {
        skip(&format!(
            "{} holds no pkg-env of a corpus package: build the corpus into it first \
             (see tests/corpus/README.md)",
            from.display()
        ));
    }
    let base = env_path("COMB_BENCH_DIR", "/var/tmp");
    mkdir_all(&base);
    let scratch = tempfile::Builder::new()
        .prefix("comb-bench-environments-")
        .tempdir_in(&base)
        .unwrap_or_else(|e| abort(&format!("creating a directory in {}: {e}", base.display())));
    let repo = scratch.path().join("repo");
    mkdir_all(&repo);
    for file in ["comb.toml", "comb.lock"] {
        write(
            &repo.join(file),
            &std::fs::read(corpus.join(file)).unwrap_or_else(|e| abort(&format!("{file}: {e}"))),
        );
    }
    println!(
        "environments: {} sets of the corpus's packages, from {}",
        sets.len(),
        from.display()
    );

    let mut results = Vec::new();
    // Sets that hold a repository's build at a version the snapshot does
    // not have cannot be made from the snapshot: left out of both ways.
    let mut left_out: Vec<bool> = vec![false; sets.len()];
    for (way, share) in [("today's way", "0"), ("new way", "1")] {
        let store = scratch.path().join(format!("store-{share}"));
        seed_downloads(&comb, &store, &from);
        let base_wall = std::time::Instant::now();
        env_build(&comb, &repo, &store, share, &[]).unwrap_or_else(|e| abort(&e));
        let base_wall = base_wall.elapsed();
        let mut per_set = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            if left_out[i] {
                per_set.push(Times::default());
                continue;
            }
            match env_build(&comb, &repo, &store, share, &set.packages) {
                Ok(events) => per_set.push(Times::of(&events)),
                Err(e) if share == "0" => {
                    println!("  {}: left out: {}", set.package, tail(&e, 1));
                    left_out[i] = true;
                    per_set.push(Times::default());
                }
                Err(e) => abort(&e),
            }
        }
        println!(
            "{way}: base layers {:.1} s (not counted), {} sets made",
            base_wall.as_secs_f64(),
            left_out.iter().filter(|l| !**l).count()
        );
        results.push((store, per_set));
    }

    println!(
        "\n{:<28} {:>8} {:>12} {:>12} {:>12}",
        "package", "packages", "APT resolve", "layer today", "layer now"
    );
    let (mut resolve_today, mut today, mut now, mut shared) = (0u64, 0u64, 0u64, 0u64);
    for (i, set) in sets.iter().enumerate() {
        if left_out[i] {
            continue;
        }
        let (t, n) = (&results[0].1[i], &results[1].1[i]);
        println!(
            "{:<28} {:>8} {:>12.1} {:>12.1} {:>12.1}{}",
            set.package,
            set.packages.len(),
            t.resolve_ms as f64 / 1000.0,
            t.layer_ms as f64 / 1000.0,
            (n.layer_ms + n.shared_ms) as f64 / 1000.0,
            if n.shared_ms > 0 {
                format!(
                    "  (of which a shared layer {:.1} s)",
                    n.shared_ms as f64 / 1000.0
                )
            } else {
                String::new()
            }
        );
        resolve_today += t.resolve_ms;
        today += t.layer_ms;
        now += n.layer_ms + n.shared_ms;
        shared += n.shared_ms;
    }
    let resolve_now =
        comb_resolution_ms(&comb, &corpus, &scratch.path().join("plan"), &results[1].0);
    let secs = |ms: u64| ms as f64 / 1000.0;
    println!(
        "\nlayers: today {:.1} s, now {:.1} s ({:.1} s of it shared layers): {:.2}x",
        secs(today),
        secs(now),
        secs(shared),
        now as f64 / today.max(1) as f64
    );
    println!(
        "resolution: APT {:.1} s, comb's resolver {:.2} s (the corpus's whole dry run)",
        secs(resolve_today),
        secs(resolve_now)
    );
    let ratio = (now + resolve_now) as f64 / (today + resolve_today).max(1) as f64;
    println!(
        "environments: today {:.1} s, now {:.1} s: {ratio:.2}x (target 0.50x) {}",
        secs(today + resolve_today),
        secs(now + resolve_now),
        verdict(ratio <= 0.5)
    );
}

/// What one `comb env build` spent: the resolve and pkg-env nodes of the
/// set (built, not hits), and the shared layers made for it.
#[derive(Default)]
struct Times {
    resolve_ms: u64,
    layer_ms: u64,
    shared_ms: u64,
}

impl Times {
    fn of(events: &[Value]) -> Times {
        let mut t = Times::default();
        for e in events.iter().filter(|e| e["status"] == "built") {
            let ms = e["duration_ms"].as_u64().unwrap_or(0);
            let name = e["name"].as_str().unwrap_or("");
            match e["stage"].as_str() {
                Some("resolve") if name.starts_with("with:") => t.resolve_ms += ms,
                Some("pkg-env") if name == "shared-env" => t.shared_ms += ms,
                Some("pkg-env") => t.layer_ms += ms,
                _ => {}
            }
        }
        t
    }
}

/// `comb env build --json` of `packages` with `COMB_SHARE_LAYERS=share`:
/// its events, or why it failed.
fn env_build(
    comb: &Path,
    repo: &Path,
    store: &Path,
    share: &str,
    packages: &[String],
) -> Result<Vec<Value>, String> {
    let mut cmd = Command::new(comb);
    cmd.args(["env", "build", "--json"])
        .args(place(repo, store))
        .env("COMB_SHARE_LAYERS", share);
    for p in packages {
        cmd.args(["--with", p]);
    }
    let out = run(&mut cmd);
    if !out.ok {
        return Err(format!("comb env build failed: {}", tail(&out.stderr, 3)));
    }
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// comb's resolution of every corpus package's build dependencies, with
/// all it needs first (the snapshot's `Packages` parsed, the graph): the
/// `plan_ms` of `comb build --dry-run --all --json` over a copy of the
/// corpus, which resolves each package whose build is not cached.
fn comb_resolution_ms(comb: &Path, corpus: &Path, dir: &Path, store: &Path) -> u64 {
    command_ok(Command::new("cp").arg("-a").arg(corpus).arg(dir));
    let out = command_ok(
        Command::new(comb)
            .args(["build", "--dry-run", "--all", "--json"])
            .args(place(dir, store)),
    );
    let plan: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| abort(&format!("reading the plan: {e}")));
    plan["plan_ms"]
        .as_u64()
        .unwrap_or_else(|| abort(&format!("the plan has no plan_ms: {out}")))
}

/// The newest recorded pkg-env of each corpus package in `store`, in the
/// corpus's (alphabetical) order.
fn recorded_sets(store: &Path, corpus: &Path, only: Option<&[String]>) -> Vec<Set> {
    let Ok(db) = rusqlite::Connection::open_with_flags(
        store.join("index.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) else {
        return Vec::new();
    };
    let Ok(mut query) = db.prepare(
        "SELECT name, description FROM nodes WHERE kind = 'pkg-env' \
         AND name LIKE 'pkg-env:%' ORDER BY created_at",
    ) else {
        return Vec::new();
    };
    let mut newest: BTreeMap<String, String> = BTreeMap::new();
    let rows = query
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap_or_else(|e| abort(&format!("reading {}: {e}", store.display())));
    for (name, description) in rows.flatten() {
        let package = name.trim_start_matches("pkg-env:").to_string();
        let in_corpus = corpus.join(&package).join("recipe.toml").is_file();
        if in_corpus && only.is_none_or(|o| o.contains(&package)) {
            newest.insert(package, description);
        }
    }
    newest
        .into_iter()
        .map(|(package, description)| Set {
            package,
            packages: packages_of(&description),
        })
        .collect()
}

/// `NAME=VERSION` of each `packages.NAME:ARCH=VERSION sha256:…` line of a
/// layer's description.
fn packages_of(description: &str) -> Vec<String> {
    description
        .lines()
        .filter_map(|l| l.strip_prefix("packages."))
        .filter_map(|l| {
            let (name_arch, rest) = l.split_once('=')?;
            let name = name_arch.split(':').next()?;
            let version = rest.split(' ').next()?;
            Some(format!("{name}={version}"))
        })
        .collect()
}
