//! A repository as a build graph: what a no-op `comb build --all` costs
//! next to ninja, how close the scheduler comes to the lower bound on a
//! graph of sleeps, and what comb adds to a real Debian package build,
//! each next to its peer.
//!
//! 1. **No-op.** Repositories of small native recipes (copy one file
//!    into `$DESTDIR`) with random dependencies: each recipe `requires`
//!    0 to 3 others, chosen at random (seeded) among the lower-numbered
//!    ones, so the graph is acyclic and a repository of `n` recipes is
//!    the first `n` of every larger one: a larger repository reuses the
//!    smaller one's builds (same keys) and its first build only adds the
//!    rest. Each repository is built once, fully (untimed, resumable,
//!    kept across runs), then `comb build --all --json` is timed with
//!    everything a hit, against `ninja -C DIR` on a `build.ninja` of the
//!    same graph (one `touch` per package, from its source file and its
//!    dependencies' outputs), built once, then timed when it has nothing
//!    to do. Targets: comb at most 10x ninja, and the large repository at
//!    most 12x the small one for 10x the recipes (1.2x linear). The first
//!    full build is measured (every recipe with dependencies gets its own
//!    resolution and pkg-env, about a second each here); if the large size
//!    (10,000) would take longer than the budget (20 minutes), a smaller
//!    one (3,000) is used instead, said so, and the size target is scaled
//!    linearly. Where comb's no-op time goes: the time of each JSON line
//!    as it arrives splits a run into start-up (to the first node),
//!    the base environment and the graph (to the first package's node),
//!    the package nodes, and the end; `comb graph` alone (parsing the
//!    recipes); the CPU time and peak memory of the process (`wait4`);
//!    the rows a no-op adds to the index; and one run under
//!    `strace -c -f` (the binary is stripped, so `perf` would show no
//!    symbols of comb's own).
//! 2. **Scheduling.** 200 recipes whose scripts `sleep` 0.05 to 1.0 s
//!    (seeded, 10 ms steps), with random dependencies as above, built at
//!    `-j 4`. Every timed run makes every build node a miss by changing a
//!    comment in each script (a run nonce): the packages come out the same
//!    bytes, so the pkg-envs of their dependents stay hits (their keys
//!    hold the dependencies' *output* digests, `engine/src/build.rs`) and
//!    the run measures the builds and the scheduler, not 150 resolutions
//!    of a second each. The whole run's wall time is compared with the
//!    lower bound max(critical path, total work / 4) of the sleeps
//!    (target: at most 1.10x), and with a fairer bound in which each
//!    build also takes comb's measured per-build overhead (its node's
//!    `duration_ms` minus its sleep). The machine's CPU count is printed:
//!    sleeps use no CPU, but the per-build work of 4 jobs competes for it.
//! 3. **Overhead on a real build.** `hello=2.10-3` from Debian source,
//!    its source record, resolution and pkg-env cached; before every timed
//!    run the build node's row is deleted from the store's index with
//!    `sqlite3` (the key stays the same, so only that node runs: a fresh
//!    store would also need every other row re-seeded, and changing the
//!    recipe would change the pkg-env). Peers, all with the same
//!    `DEB_BUILD_OPTIONS=parallel=` that comb gives the build (CPUs / jobs
//!    at the default `-j`): `dpkg-source -x` and `dpkg-buildpackage -b -uc
//!    -us` run directly in a prepared chroot (the base-build environment
//!    unpacked from a tarball, hello's build dependencies installed with
//!    APT from their `.deb`s, once; `unshare -mpfn`, `/proc`, `/dev`, a
//!    tmpfs `/tmp`, as uid 1000; target: comb at most 1.05x), and the same
//!    commands in `comb sandbox run` on exactly the layers of the pkg-env
//!    (comb's orchestration alone). Then the whole traditional cycle:
//!    unpack the tarball, `apt-get update` from a local repository of the
//!    `.deb`s, install them, build.
//!
//! Parameters (environment variables):
//!
//! - `COMB_BENCH_PARTS` (default `noop,schedule,real`);
//! - `COMB_BENCH_SMALL` (1000), `COMB_BENCH_LARGE` (10000),
//!   `COMB_BENCH_FALLBACK` (3000): repository sizes of part 1;
//! - `COMB_BENCH_SETUP_BUDGET` (20): minutes the first full build of the
//!   large size may be expected to take before the fallback is used;
//! - `COMB_BENCH_RUNS` (10): measured no-op runs of each variant;
//! - `COMB_BENCH_SCHED_SIZE` (200), `COMB_BENCH_JOBS` (4),
//!   `COMB_BENCH_SCHED_RUNS` (3): part 2;
//! - `COMB_BENCH_REAL_SOURCE` (`hello=2.10-3`), `COMB_BENCH_REAL_RUNS`
//!   (3), `COMB_BENCH_TRAD_RUNS` (2): part 3;
//! - `COMB_BENCH_SEED_STORE` (`/var/cache/comb-test-store`): the private
//!   store is seeded from it once (hard links to its blobs and trees, a
//!   copy of its node rows), so its environments are hits;
//! - `COMB_BENCH_LOCK`: a `comb.lock` to pin the first time (default: the
//!   one of `examples/starter`, else `comb update`);
//! - `COMB_BENCH_DIR` (default `/var/tmp/comb-bench-graph`): all scratch
//!   data, reused by later runs (its own `comb.lock` pins the snapshot for
//!   good: moving it would make every cached build stale).
//!
//! It skips (exit 0, with the reason) when not run as root or when the
//! mirror of the pinned snapshot is unreachable; it skips a part whose
//! tools are missing (`ninja`, `sqlite3`, `strace`, `dpkg-scanpackages`),
//! saying so. Missing a target is reported as MISSED; the exit code stays
//! 0. It aborts (exit 1) when a command it measures fails. Nothing printed
//! names the mirror.
//!
//! Outputs of timed runs that hold many files (the traditional cycle's
//! unpacked trees) are removed only when the run ends, and a run starts at
//! least a minute after the last removal: this machine's root is ext4
//! without a journal, which does not reuse a freed inode for a minute, and
//! creating files right after removing thousands is then much slower.
//!
//! Run it with `cargo bench --bench build_graph`, as root. The first run
//! builds the repositories (about 15 minutes for 1,000 recipes and 35 more
//! for 3,000 on two CPUs, resumable); later runs take about 10 minutes.

use serde_json::Value;
use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_DIR: &str = "/var/tmp/comb-bench-graph";
const DEFAULT_SEED_STORE: &str = "/var/cache/comb-test-store";
const ALL_PARTS: [&str; 3] = ["noop", "schedule", "real"];
/// Changes when the generated repositories change: older ones are
/// regenerated.
const GENERATOR: &str = "build_graph-1";
/// Seeds of the random graphs.
const NOOP_SEED: u64 = 0x6e6f_6f70_2d67_7261;
const SCHED_SEED: u64 = 0x7363_6865_642d_3031;
/// No-op runs of each variant before measuring.
const WARMUP_RUNS: usize = 2;
/// Part 1: comb's no-op over ninja's.
const NOOP_MAX_RATIO: f64 = 10.0;
/// Part 1: the large repository over the small one, per 10x the size.
const SCALE_MAX_RATIO: f64 = 12.0;
/// Part 2: the whole run over the lower bound.
const SCHED_MAX_RATIO: f64 = 1.10;
/// Part 3: comb's build over the prepared chroot's.
const REAL_MAX_RATIO: f64 = 1.05;
/// Seconds per recipe of a first full build when none was measured yet
/// (this machine, two CPUs: resolution 1.7 s, pkg-env 0.3 s, build 0.05 s
/// for a recipe with dependencies, two at a time).
const DEFAULT_SETUP_RATE: f64 = 1.1;
/// How long ext4 without a journal avoids reusing a freed inode.
const INODE_REUSE_DELAY: Duration = Duration::from_secs(61);
/// Holds when the benchmark last removed a large tree (Unix seconds).
const REMOVED_STAMP: &str = "removed-at";
/// Scratch directories removed at the end of a run.
const SCRATCH_NAMES: [&str; 3] = ["trad", "chroot-builds", "sandbox-builds"];
/// Written in a repository once all of it is built in the store named
/// inside.
const COMPLETE_MARKER: &str = ".comb-bench-complete";
const GENERATED_MARKER: &str = ".comb-bench-generated";
/// The clean environment comb's sandbox gives a build (sandbox/src/init.rs).
const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn main() {
    if !nix::unistd::geteuid().is_root() {
        skip("needs root (comb attaches layers as idmapped mounts; the peers chroot)");
    }
    let parts = env_string("COMB_BENCH_PARTS", &ALL_PARTS.join(","));
    let parts: Vec<&str> = parts.split(',').map(str::trim).collect();
    if let Some(bad) = parts.iter().find(|p| !ALL_PARTS.contains(p)) {
        abort(&format!(
            "COMB_BENCH_PARTS names {bad:?}; the parts are {}",
            ALL_PARTS.join(", ")
        ));
    }
    if !installed("sqlite3") {
        skip("`sqlite3` is not installed (apt-get install sqlite3): the store is seeded with it");
    }
    let bench = Bench::open();
    println!(
        "machine: {} CPUs; store {} (seeded from {})",
        bench.cpus,
        bench.store.display(),
        bench.seeded_from
    );
    if parts.contains(&"noop") {
        println!();
        noop(&bench);
    }
    if parts.contains(&"schedule") {
        println!();
        schedule(&bench);
    }
    if parts.contains(&"real") {
        println!();
        real(&bench);
    }
    bench.clean_up();
}

// ------------------------------------------------------------------ setup

/// Where everything is.
struct Bench {
    comb: PathBuf,
    dir: PathBuf,
    store: PathBuf,
    /// The pinned snapshot every generated repository uses.
    lock: String,
    /// The mirror's address, never printed.
    uri: String,
    cpus: usize,
    seeded_from: String,
    /// Scratch outputs to remove at the end.
    trash: RefCell<Vec<PathBuf>>,
}

impl Bench {
    fn open() -> Bench {
        // Cargo builds the package's binaries (release profile for a
        // benchmark) before it runs one, and says where it put them.
        let comb = PathBuf::from(env!("CARGO_BIN_EXE_comb"));
        let dir = env_path("COMB_BENCH_DIR", DEFAULT_DIR);
        mkdir_all(&dir);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut bench = Bench {
            comb,
            store: dir.join("store"),
            dir,
            lock: String::new(),
            uri: String::new(),
            cpus,
            seeded_from: String::new(),
            trash: Default::default(),
        };
        bench.lock = bench.pinned_lock();
        bench.uri = lock_uri(&bench.lock)
            .unwrap_or_else(|| abort("the pinned comb.lock has no [snapshot] uri"));
        if let Err(why) = probe(&bench.uri) {
            skip(&format!(
                "the mirror of the pinned snapshot is unreachable ({why})"
            ));
        }
        bench.seeded_from = bench.seed_store();
        for name in SCRATCH_NAMES {
            if bench.dir.join(name).exists() {
                bench.discard(bench.dir.join(name));
            }
        }
        bench.clean_up();
        bench.settle();
        bench
    }

    /// The benchmark's own `comb.lock`, pinned the first time.
    fn pinned_lock(&self) -> String {
        let path = self.dir.join("comb.lock");
        if let Ok(text) = std::fs::read_to_string(&path) {
            return text;
        }
        let starter = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/starter/comb.lock");
        let from = std::env::var_os("COMB_BENCH_LOCK")
            .map(PathBuf::from)
            .or_else(|| starter.is_file().then_some(starter));
        let text = match from {
            Some(from) => std::fs::read_to_string(&from)
                .unwrap_or_else(|e| abort(&format!("reading {}: {e}", from.display()))),
            None => {
                let repo = self.dir.join("lock-repo");
                mkdir_all(&repo);
                write(&repo.join("comb.toml"), b"");
                eprintln!("build_graph: no comb.lock to start from: comb update");
                let out = run(Command::new(&self.comb)
                    .arg("update")
                    .args(place(&repo, &self.store)));
                if !out.ok {
                    skip("`comb update` failed: is the mirror reachable?");
                }
                std::fs::read_to_string(repo.join("comb.lock"))
                    .unwrap_or_else(|e| abort(&format!("reading the new comb.lock: {e}")))
            }
        };
        write(&path, text.as_bytes());
        text
    }

    /// The private store, seeded once from the seed store if there is one:
    /// hard links to its blobs and trees and a copy of its node rows (so
    /// its environments, fetched `.deb`s and sources are hits here).
    fn seed_store(&self) -> String {
        let seed = env_path("COMB_BENCH_SEED_STORE", DEFAULT_SEED_STORE);
        let note = self.store.join("seeded-from");
        if self.store.join("format").is_file() {
            return std::fs::read_to_string(note).unwrap_or_else(|_| "nothing".into());
        }
        let partial = self.dir.join("store.partial");
        remove_all(&partial);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&partial)
            .unwrap_or_else(|e| abort(&format!("creating {}: {e}", partial.display())));
        let seeded = seed.join("format").is_file();
        if seeded {
            eprintln!(
                "build_graph: seeding the store {} from {} (once)",
                self.store.display(),
                seed.display()
            );
            command_ok(Command::new("cp").arg("-al").arg(seed.join("blobs")).arg(&partial));
            mkdir_all(&partial.join("trees"));
            for tree in read_dir(&seed.join("trees")) {
                command_ok(
                    Command::new("cp")
                        .arg("-al")
                        .arg(tree.path())
                        .arg(partial.join("trees")),
                );
            }
        }
        // Any command that opens the store creates its layout and index.
        command_ok(
            Command::new(&self.comb)
                .args(["env", "list", "--store"])
                .arg(&partial),
        );
        if seeded {
            command_ok(Command::new("sqlite3").arg(partial.join("index.sqlite")).arg(
                format!(
                    "ATTACH '{}' AS src; INSERT INTO nodes SELECT * FROM src.nodes;",
                    seed.join("index.sqlite").display()
                ),
            ));
        }
        let text = if seeded {
            seed.display().to_string()
        } else {
            "nothing".to_string()
        };
        write(&partial.join("seeded-from"), text.as_bytes());
        rename(&partial, &self.store);
        text
    }

    /// Something that names this store: a repository marked complete in
    /// another store is not complete in this one.
    fn store_identity(&self) -> String {
        let inode = std::fs::metadata(self.store.join("index.sqlite")).map_or(0, |m| m.ino());
        format!("{} {inode}", self.store.display())
    }

    /// Writes the pinned lock into `repo` (if it differs).
    fn pin(&self, repo: &Path) {
        let path = repo.join("comb.lock");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(self.lock.as_str()) {
            write(&path, self.lock.as_bytes());
        }
    }

    /// Removes `path` at the end of the run.
    fn discard(&self, path: PathBuf) {
        self.trash.borrow_mut().push(path);
    }

    /// An empty directory `name` for throwaway outputs, removed at the end.
    fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        remove_all(&path);
        mkdir_all(&path);
        self.discard(path.clone());
        path
    }

    /// Removes what was discarded, and notes when.
    fn clean_up(&self) {
        let trash = std::mem::take(&mut *self.trash.borrow_mut());
        if trash.is_empty() {
            return;
        }
        for path in &trash {
            remove_all(path);
        }
        sync();
        write(
            &self.dir.join(REMOVED_STAMP),
            format!("{}\n", unix_now().as_secs()).as_bytes(),
        );
    }

    /// Waits until the inodes this benchmark last freed can be reused.
    fn settle(&self) {
        let Some(removed) = std::fs::read_to_string(self.dir.join(REMOVED_STAMP))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
        else {
            return;
        };
        let ready = Duration::from_secs(removed) + INODE_REUSE_DELAY;
        if let Some(wait) = ready.checked_sub(unix_now()) {
            eprintln!(
                "build_graph: waiting {:.0} s: inodes freed by the last removal of scratch data are not reused before then",
                wait.as_secs_f64()
            );
            std::thread::sleep(wait);
        }
    }

    /// `text` with the mirror's address replaced.
    fn redact(&self, text: &str) -> String {
        let mut text = text.replace(&self.uri, "<mirror>");
        if let Some(host) = uri_host(&self.uri) {
            text = text.replace(&host, "<mirror>");
        }
        text
    }

    fn place(&self, repo: &Path) -> Vec<String> {
        place(repo, &self.store)
    }
}

/// The first `uri = "..."` of the lock's `[snapshot]` table.
fn lock_uri(lock: &str) -> Option<String> {
    let mut in_snapshot = false;
    for line in lock.lines().map(str::trim) {
        if line.starts_with('[') {
            in_snapshot = line == "[snapshot]";
            continue;
        }
        if let (true, Some((key, value))) = (in_snapshot, line.split_once('=')) {
            if key.trim() == "uri" {
                return value.split('"').nth(1).map(str::to_string);
            }
        }
    }
    None
}

/// `host` or `host:port` of a URI.
fn uri_host(uri: &str) -> Option<String> {
    uri.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

/// Whether a TCP connection to the mirror opens (5 s at most per address).
fn probe(uri: &str) -> Result<(), String> {
    let host = uri_host(uri).ok_or("the lock's uri has no host")?;
    let port = if uri.starts_with("https:") { 443 } else { 80 };
    let target = if host.contains(':') && !host.starts_with('[') {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    let addrs: Vec<_> = target
        .to_socket_addrs()
        .map_err(|_| "its name does not resolve".to_string())?
        .collect();
    for addr in &addrs {
        if TcpStream::connect_timeout(addr, Duration::from_secs(5)).is_ok() {
            return Ok(());
        }
    }
    Err("no connection to it opens".into())
}

// ------------------------------------------------------- generated graphs

/// A random acyclic graph: node `r` needs 0 to 3 distinct nodes below it.
/// Each node's edges depend only on the seed and `r`, so the first `n`
/// nodes of a larger graph are the graph of `n` nodes.
struct Dag {
    deps: Vec<Vec<usize>>,
}

impl Dag {
    fn generate(n: usize, seed: u64) -> Dag {
        let deps = (0..n)
            .map(|r| {
                let mut state = seed ^ (r as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let count = ((splitmix(&mut state) % 4) as usize).min(r);
                let mut picked: Vec<usize> = Vec::new();
                while picked.len() < count {
                    let d = (splitmix(&mut state) % r as u64) as usize;
                    if !picked.contains(&d) {
                        picked.push(d);
                    }
                }
                picked.sort_unstable();
                picked
            })
            .collect();
        Dag { deps }
    }

    fn len(&self) -> usize {
        self.deps.len()
    }

    fn edges(&self) -> usize {
        self.deps.iter().map(Vec::len).sum()
    }

    /// The largest sum of `weight` along a chain of dependencies.
    fn critical_path(&self, weight: &[f64]) -> f64 {
        let mut longest = vec![0.0_f64; self.len()];
        for r in 0..self.len() {
            // Dependencies are lower-numbered: already computed.
            let before = self.deps[r]
                .iter()
                .map(|&d| longest[d])
                .fold(0.0, f64::max);
            longest[r] = before + weight[r];
        }
        longest.into_iter().fold(0.0, f64::max)
    }
}

/// splitmix64: a small, good generator for seeded choices.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn noop_name(r: usize) -> String {
    format!("pkg{r:05}")
}

fn sched_name(r: usize) -> String {
    format!("sched{r:03}")
}

/// A native recipe that copies its source into `/usr/share/NAME`, after
/// `before` (more script lines).
fn recipe_text(name: &str, deps: &[String], before: &str) -> String {
    let requires: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        r#"[package]
name = "{name}"
version = "1.0-1"
summary = "generated by benches/build_graph.rs"
license = "MIT"

[source]
path = "src"

[build]
requires = [{}]
script = """
{before}mkdir -p "$DESTDIR/usr/share/{name}"
cp -r . "$DESTDIR/usr/share/{name}/"
"""

[[output]]
name = "{name}"
architecture = "all"
files = ["usr/share/{name}/**"]
"#,
        requires.join(", ")
    )
}

/// Whether `dir` was generated by this generator with `what`.
fn generated(dir: &Path, what: &str) -> bool {
    std::fs::read_to_string(dir.join(GENERATED_MARKER)).ok().as_deref()
        == Some(&format!("{GENERATOR} {what}\n"))
}

/// `dir`, made by `fill` in a temporary directory unless already there.
fn generate(dir: &Path, what: &str, fill: impl FnOnce(&Path)) {
    if generated(dir, what) {
        return;
    }
    let partial = dir.with_extension("partial");
    remove_all(&partial);
    mkdir_all(&partial);
    fill(&partial);
    write(
        &partial.join(GENERATED_MARKER),
        format!("{GENERATOR} {what}\n").as_bytes(),
    );
    remove_all(dir);
    rename(&partial, dir);
}
