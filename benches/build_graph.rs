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
//!    `DEB_BUILD_OPTIONS=parallel=` that comb gives the build (all CPUs
//!    to a lone build): `dpkg-source -x` and `dpkg-buildpackage -b -uc
//!    -us` run directly in a prepared chroot (the base-build environment
//!    unpacked from a tarball, hello's build dependencies installed with
//!    APT from their `.deb`s, once; `unshare -mpfn`, `/proc`, `/dev`, a
//!    tmpfs `/tmp`, as uid 1000; target: comb at most 1.05x), and the same
//!    commands in `comb sandbox run` on exactly the layers of the pkg-env
//!    (comb's orchestration alone). Then the whole traditional cycle:
//!    unpack the tarball, `apt-get update` from a local repository of the
//!    `.deb`s, install them, build. comb removes each build's tree when it
//!    ends; on this machine's root (ext4 without a journal) creating files
//!    within a minute of removing thousands is slower, so every timed run
//!    starts a minute after comb's last removal (the peers keep their trees
//!    until the end). Each round runs the three in a new order; the median
//!    of the rounds' ratios is printed beside the ratio of the medians, and
//!    the CPU time (user and system) of each run's processes beside the
//!    wall time: on a machine whose identical runs differ by a quarter,
//!    CPU time says more steadily what comb adds.
//! 4. **Checks.** A copy of `examples/starter` (native recipes and Debian
//!    source packages, some built on others' `.deb`s), built once
//!    (untimed). `comb check --all -j 2` rebuilds every package from source
//!    in its cached environment and compares the bytes with the recorded
//!    `.deb`s. Its peer checks the packages one after another, in
//!    dependency order, the traditional way: unpack the base-build tarball
//!    of part 3 into a fresh directory, `apt-get update` from a flat
//!    repository of `.deb`s (made once, like a mirror), install the build
//!    dependencies, build as uid 1000, compare each `.deb` with comb's
//!    recorded one. The build dependencies installed are exactly the
//!    packages comb resolved for the package's pkg-env (its resolve node's
//!    list: name, version, sha256), snapshot `.deb`s and the repository's
//!    own (say `libgreet-dev` for `greet`, `libjansson-dev` for `jshon`,
//!    from comb's recorded outputs): both sides build in the same
//!    environment, and no second resolver can pick other versions. A Debian
//!    source is built with `dpkg-source -x` and `dpkg-buildpackage -b -uc
//!    -us` in `/build`, as comb does; a native recipe's script runs in
//!    `/build/src` with `DESTDIR` and comb's `SOURCE_DATE_EPOCH`, and the
//!    files of each `[[output]]` (the recipe's globs) are packed by the
//!    benchmark with a minimal control file and `dpkg-deb --build`: that
//!    packaging is the peer's, so those `.deb`s differ from comb's, and how
//!    many `.deb`s came out the same bytes is informative only. The builds
//!    get `DEB_BUILD_OPTIONS=parallel=` of every CPU, what comb gives a lone
//!    build. Each cycle is timed whole, from the unpacking to the
//!    comparison; the sum is compared with the median `comb check` run
//!    (target: less time). Every comb run starts a minute after the last
//!    one's removals; the traditional trees are kept until the end.
//!
//! Parameters (environment variables):
//!
//! - `COMB_BENCH_PARTS` (default `noop,schedule,real,check`);
//! - `COMB_BENCH_CHECK_RUNS` (3): timed `comb check` runs of part 4;
//! - `COMB_BENCH_TRAD_CHECK_RUNS` (1): runs of its traditional sequence
//!   (each builds every package; the median run is printed);
//! - `COMB_BENCH_SMALL` (1000), `COMB_BENCH_LARGE` (10000),
//!   `COMB_BENCH_FALLBACK` (3000): repository sizes of part 1;
//! - `COMB_BENCH_SETUP_BUDGET` (20): minutes the first full build of the
//!   large size may be expected to take before the fallback is used;
//! - `COMB_BENCH_RUNS` (10): measured no-op runs of each variant;
//! - `COMB_BENCH_SCHED_SIZE` (200), `COMB_BENCH_JOBS` (4),
//!   `COMB_BENCH_SCHED_RUNS` (3): part 2;
//! - `COMB_BENCH_REAL_SOURCE` (`hello=2.10-3`), `COMB_BENCH_REAL_RUNS`
//!   (5), `COMB_BENCH_TRAD_RUNS` (2): part 3;
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
//! builds the repositories (about 12 minutes for 1,000 recipes and 25 more
//! for 3,000 on two CPUs, resumable); later runs take about 20 minutes.

mod common;
use comb_engine::NATIVE_SOURCE_DATE_EPOCH;

/// The `comb.toml` of the generated repositories of native recipes: their
/// packages need a maintainer.
const NATIVE_TOML: &[u8] =
    b"[package]\nmaintainer = \"comb bench <bench@comb-bench.example.org>\"\n";
use comb_engine::{Architecture, Output, Recipe, Source};
use common::*;
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
const ALL_PARTS: [&str; 4] = ["noop", "schedule", "real", "check"];
/// Changes when the generated repositories change: older ones are
/// regenerated.
const GENERATOR: &str = "build_graph-2";
/// Seeds of the random graphs.
const NOOP_SEED: u64 = 0x6e6f_6f70_2d67_7261;
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
/// Scratch directories removed at the end of a run.
const SCRATCH_NAMES: [&str; 4] = ["trad", "chroot-builds", "sandbox-builds", "trad-check"];
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
    if parts.contains(&"check") {
        println!();
        check_part(&bench);
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
            command_ok(
                Command::new("cp")
                    .arg("-al")
                    .arg(seed.join("blobs"))
                    .arg(&partial),
            );
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
            command_ok(
                Command::new("sqlite3")
                    .arg(partial.join("index.sqlite"))
                    .arg(format!(
                        "ATTACH '{}' AS src; INSERT INTO nodes SELECT * FROM src.nodes;",
                        seed.join("index.sqlite").display()
                    )),
            );
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
        redact_mirror(text, &self.uri)
    }

    fn place(&self, repo: &Path) -> Vec<String> {
        place(repo, &self.store)
    }
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

fn noop_name(r: usize) -> String {
    format!("pkg{r:05}")
}

fn sched_name(r: usize) -> String {
    format!("sched{r:03}")
}

/// Whether `dir` was generated by this generator with `what`.
fn generated(dir: &Path, what: &str) -> bool {
    std::fs::read_to_string(dir.join(GENERATED_MARKER))
        .ok()
        .as_deref()
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

// ------------------------------------------------------ running commands

/// A finished `comb ... --json`: its lines with the time each arrived,
/// and what the kernel says the process used.
struct CombRun {
    ok: bool,
    wall: Duration,
    user: Duration,
    sys: Duration,
    max_rss_kb: u64,
    lines: Vec<(Duration, String)>,
    stderr: String,
}

/// One node line of `comb ... --json`.
struct Event {
    at: Duration,
    stage: String,
    name: String,
    key: String,
    status: String,
    duration_ms: u64,
    reason: String,
}

impl CombRun {
    fn events(&self) -> Vec<Event> {
        self.lines
            .iter()
            .filter_map(|(at, line)| {
                let v: Value = serde_json::from_str(line).ok()?;
                if v["event"] != "node" {
                    return None;
                }
                let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                Some(Event {
                    at: *at,
                    stage: text("stage"),
                    name: text("name"),
                    key: text("key"),
                    status: text("status"),
                    duration_ms: v["duration_ms"].as_u64().unwrap_or(0),
                    reason: text("reason"),
                })
            })
            .collect()
    }

    /// The final `summary` line's counter `field`.
    fn summary(&self, field: &str) -> Option<u64> {
        self.lines.iter().rev().find_map(|(_, line)| {
            let v: Value = serde_json::from_str(line).ok()?;
            (v["event"] == "summary").then(|| v[field].as_u64())?
        })
    }
}

/// Runs a comb command that prints JSON lines, noting when each line
/// arrives (comb's stdout is line-buffered even into a pipe); `each` sees
/// every line as it comes (for progress). The lines are parsed only after
/// the process has exited, so the parsing does not compete with it.
fn comb_json(cmd: &mut Command, each: &mut dyn FnMut(&str)) -> CombRun {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| abort(&format!("cannot run comb: {e}")));
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let at = start.elapsed();
        each(&line);
        lines.push((at, line));
    }
    // Reaped here rather than by `Child::wait`, for its resource usage.
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is this process's child, not yet reaped.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    drop(child);
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    CombRun {
        ok: reaped == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        wall,
        user: time(usage.ru_utime),
        sys: time(usage.ru_stime),
        max_rss_kb: usage.ru_maxrss as u64,
        lines,
        stderr: errors.join().unwrap_or_default(),
    }
}

/// `comb build ARGS --json` in `repo`; aborts if it fails.
fn comb_build(bench: &Bench, repo: &Path, args: &[&str], what: &str) -> CombRun {
    let out = comb_json(
        Command::new(&bench.comb)
            .arg("build")
            .args(args)
            .arg("--json")
            .args(bench.place(repo)),
        &mut |_| {},
    );
    if !out.ok {
        abort(&bench.redact(&format!(
            "{what}: comb build failed:\n{}\n{}",
            failures(&out),
            tail(&out.stderr, 10)
        )));
    }
    out
}

/// The failed nodes of a run, with the end of their reasons.
fn failures(out: &CombRun) -> String {
    out.events()
        .iter()
        .filter(|e| e.status == "failed")
        .take(5)
        .map(|e| format!("{} {}: {}", e.stage, e.name, tail(&e.reason, 8)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Builds everything of `repo` that is not built yet (untimed), with
/// progress on stderr every 30 s; aborts if anything fails. Returns the
/// run and how many recipes it built.
fn full_build(bench: &Bench, repo: &Path, recipes: usize, args: &[&str]) -> (CombRun, usize) {
    let started = Instant::now();
    let mut last = Instant::now();
    let mut built = 0;
    let mut hits = 0;
    let mut progress = |line: &str| {
        if line.contains("\"stage\":\"build\"") {
            if line.contains("\"status\":\"built\"") {
                built += 1;
            } else if line.contains("\"status\":\"hit\"") {
                hits += 1;
            }
        }
        if last.elapsed() >= Duration::from_secs(30) {
            last = Instant::now();
            eprintln!(
                "build_graph:   {}: {built} built, {hits} hits of {recipes} recipes, {:.0} s",
                repo.display(),
                started.elapsed().as_secs_f64()
            );
        }
    };
    let out = comb_json(
        Command::new(&bench.comb)
            .args(["build", "--all", "--keep-going", "--json"])
            .args(args)
            .args(bench.place(repo)),
        &mut progress,
    );
    if !out.ok || out.summary("failed") != Some(0) {
        abort(&bench.redact(&format!(
            "the full build of {} failed:\n{}\n{}",
            repo.display(),
            failures(&out),
            tail(&out.stderr, 10)
        )));
    }
    let built = out
        .events()
        .iter()
        .filter(|e| e.stage == "build" && e.status == "built")
        .count();
    (out, built)
}

// ------------------------------------------------------------ part 1: no-op

fn noop(bench: &Bench) {
    let small = env_count("COMB_BENCH_SMALL", 1000);
    let wanted = env_count("COMB_BENCH_LARGE", 10_000);
    let fallback = env_count("COMB_BENCH_FALLBACK", 3000);
    let budget_s = env_count("COMB_BENCH_SETUP_BUDGET", 20) as f64 * 60.0;
    let runs = env_count("COMB_BENCH_RUNS", 10);
    if wanted <= small || fallback <= small {
        abort("COMB_BENCH_LARGE and COMB_BENCH_FALLBACK must be larger than COMB_BENCH_SMALL");
    }
    println!(
        "1. no-op `comb build --all`, everything cached, against a no-op ninja on the same graph: median of {runs} runs (min / max) after {WARMUP_RUNS} warm-up runs"
    );
    let mut setups = Vec::new();
    let dag = Dag::generate(wanted.max(fallback), NOOP_SEED);
    let small_repo = noop_repo(bench, &dag, small);
    setups.push(setup_noop(bench, &small_repo, small));

    let large = if complete(bench, &noop_dir(bench, wanted)) {
        wanted
    } else {
        let remaining = wanted - largest_complete(bench, wanted);
        let (rate, measured) = setup_rate(bench);
        let estimate = remaining as f64 * rate;
        if estimate <= budget_s {
            wanted
        } else {
            println!(
                "  {} recipes: their first full build would take about {} here ({} recipes to build at {rate:.2} s each{}), over the {:.0} min budget (COMB_BENCH_SETUP_BUDGET): using {} recipes instead; the size target refers to {} / {} and is scaled linearly",
                thousands(wanted),
                minutes(estimate),
                thousands(remaining),
                if measured { ", as measured" } else { ", assumed" },
                budget_s / 60.0,
                thousands(fallback),
                thousands(wanted),
                thousands(small)
            );
            fallback
        }
    };
    let large_repo = noop_repo(bench, &dag, large);
    setups.push(setup_noop(bench, &large_repo, large));
    let sub = |n: usize| Dag {
        deps: dag.deps[..n].to_vec(),
    };
    let graphs: Vec<String> = [small, large]
        .iter()
        .map(|&n| {
            let g = sub(n);
            format!(
                "{}: {} edges, longest chain {}",
                thousands(n),
                thousands(g.edges()),
                g.critical_path(&vec![1.0; n]) as usize
            )
        })
        .collect();
    println!(
        "  graphs: 0-3 dependencies per recipe on lower-numbered ones (seeded); {}",
        graphs.join("; ")
    );
    println!("  first full builds (untimed): {}", setups.join("; "));

    let ninja = installed("ninja");
    let mut variants = vec![
        Variant::new(
            &format!("comb build --all ({} recipes)", thousands(small)),
            Kind::Comb(small_repo.clone()),
        ),
        Variant::new(
            &format!("comb build --all ({} recipes)", thousands(large)),
            Kind::Comb(large_repo.clone()),
        ),
        Variant::new(
            &format!("comb graph ({} recipes)", thousands(small)),
            Kind::Graph(small_repo.clone()),
        ),
        Variant::new(
            &format!("comb graph ({} recipes)", thousands(large)),
            Kind::Graph(large_repo.clone()),
        ),
    ];
    if ninja {
        for n in [small, large] {
            let dir = ninja_dir(bench, &sub(n), n);
            variants.push(Variant::new(
                &format!("ninja -C ({} packages)", thousands(n)),
                Kind::Ninja(dir),
            ));
        }
    } else {
        println!("  ninja: skipped, `ninja` is not installed (apt-get install ninja-build)");
    }
    for variant in &mut variants {
        for _ in 0..WARMUP_RUNS {
            variant.run_once(bench, false);
        }
    }
    let mut order: Vec<usize> = (0..variants.len()).collect();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..runs {
        shuffle(&mut order, &mut seed);
        for &i in &order {
            variants[i].run_once(bench, true);
        }
    }
    for v in &variants {
        println!(
            "  {:<48} {:>10}   ({} / {})",
            v.label,
            millis(median(&v.times)),
            millis(quantile(&v.times, 0.0)),
            millis(quantile(&v.times, 1.0))
        );
    }
    let comb = [median(&variants[0].times), median(&variants[1].times)];
    if ninja {
        for (k, n) in [small, large].iter().enumerate() {
            let ratio = comb[k].as_secs_f64() / median(&variants[4 + k].times).as_secs_f64();
            println!(
                "  {:<48} {:>9.0}x   target <= {NOOP_MAX_RATIO:.0}x      {}",
                format!("comb / ninja ({})", thousands(*n)),
                ratio,
                verdict(ratio <= NOOP_MAX_RATIO)
            );
        }
    }
    let scale = comb[1].as_secs_f64() / comb[0].as_secs_f64();
    let target = SCALE_MAX_RATIO / 10.0 * large as f64 / small as f64;
    println!(
        "  {:<48} {:>9.2}x   target <= {target:.1}x     {}   ({}x the recipes; {SCALE_MAX_RATIO:.0}x per 10x{})",
        format!("comb {} / comb {}", thousands(large), thousands(small)),
        scale,
        verdict(scale <= target),
        large as f64 / small as f64,
        if large == wanted {
            String::new()
        } else {
            format!(
                ", scaled: the target is for {} / {}",
                thousands(wanted),
                thousands(small)
            )
        }
    );
    if ninja {
        println!(
            "  {:<48} {:>9.2}x   (for comparison)",
            format!("ninja {} / ninja {}", thousands(large), thousands(small)),
            median(&variants[5].times).as_secs_f64() / median(&variants[4].times).as_secs_f64()
        );
    }
    noop_breakdown(bench, &variants, [small, large], &large_repo);
}

/// One way of doing nothing, measured.
struct Variant {
    label: String,
    kind: Kind,
    times: Vec<Duration>,
    /// comb's runs, split into phases.
    phases: Vec<Phases>,
}

enum Kind {
    Comb(PathBuf),
    Graph(PathBuf),
    Ninja(PathBuf),
}

impl Variant {
    fn new(label: &str, kind: Kind) -> Variant {
        Variant {
            label: label.to_string(),
            kind,
            times: Vec::new(),
            phases: Vec::new(),
        }
    }

    /// Runs once; keeps the time if `keep`. Aborts unless the command
    /// did nothing, successfully.
    fn run_once(&mut self, bench: &Bench, keep: bool) {
        let wall = match &self.kind {
            Kind::Comb(repo) => {
                let out = comb_build(bench, repo, &["--all"], &self.label);
                if out.summary("built") != Some(0) || out.summary("failed") != Some(0) {
                    abort(&format!(
                        "{}: not a no-op: {} nodes built",
                        self.label,
                        out.summary("built").unwrap_or(0)
                    ));
                }
                if keep {
                    self.phases.push(Phases::of(&out));
                }
                out.wall
            }
            Kind::Graph(repo) => {
                let out = run(Command::new(&bench.comb)
                    .args(["graph", "--repo"])
                    .arg(repo));
                if !out.ok {
                    abort(&format!(
                        "{} failed:\n{}",
                        self.label,
                        tail(&out.stderr, 10)
                    ));
                }
                out.wall
            }
            Kind::Ninja(dir) => {
                let out = run(Command::new("ninja").arg("-C").arg(dir));
                if !out.ok || !out.stdout.contains("no work to do") {
                    abort(&format!(
                        "{}: not a no-op:\n{}\n{}",
                        self.label,
                        tail(&out.stdout, 5),
                        tail(&out.stderr, 5)
                    ));
                }
                out.wall
            }
        };
        if keep {
            self.times.push(wall);
        }
    }
}

/// Picks one phase of a run.
type Pick = fn(&Phases) -> Duration;

/// Where one no-op run's time went, from when its JSON lines arrived.
struct Phases {
    /// Spawn to the first node line (the snapshot's index node): the
    /// recipes parsed, the store and its index opened.
    start: Duration,
    /// To the first node of a package: the snapshot, the base
    /// environment, the graph and the scheduler's costs.
    base: Duration,
    /// From the first to the last package node.
    packages: Duration,
    /// After the last node: the run recorded, the summary, exit.
    end: Duration,
    package_nodes: usize,
    /// Every node line (each one an event row and, for a hit, a
    /// last-used update in the index).
    nodes: usize,
    user: Duration,
    sys: Duration,
    max_rss_kb: u64,
}

impl Phases {
    fn of(out: &CombRun) -> Phases {
        let events = out.events();
        let is_package = |e: &Event| {
            e.stage == "build"
                || e.stage == "pkg-env"
                || (e.stage == "resolve" && e.name.starts_with("pkg-env:"))
        };
        let first = events.first().map_or(out.wall, |e| e.at);
        let first_package = events
            .iter()
            .find(|e| is_package(e))
            .map_or(first, |e| e.at);
        let last = events.last().map_or(out.wall, |e| e.at);
        Phases {
            start: first,
            base: first_package.saturating_sub(first),
            packages: last.saturating_sub(first_package),
            end: out.wall.saturating_sub(last),
            package_nodes: events.iter().filter(|e| is_package(e)).count(),
            nodes: events.len(),
            user: out.user,
            sys: out.sys,
            max_rss_kb: out.max_rss_kb,
        }
    }
}

/// Prints where comb's no-op time goes, for both sizes.
fn noop_breakdown(bench: &Bench, variants: &[Variant], sizes: [usize; 2], large_repo: &Path) {
    let phase = |k: usize, f: Pick| {
        let times: Vec<Duration> = variants[k].phases.iter().map(f).collect();
        median(&times)
    };
    let first = |k: usize, f: fn(&Phases) -> usize| variants[k].phases.first().map_or(0, f);
    let nodes = [0, 1].map(|k| first(k, |p| p.package_nodes));
    let all_nodes = first(1, |p| p.nodes);
    println!(
        "  where comb's no-op goes, medians ({} recipes / {} recipes):",
        thousands(sizes[0]),
        thousands(sizes[1])
    );
    let rows: [(&str, Pick); 4] = [
        (
            "start-up to the first node (parse recipes, open the store)",
            |p| p.start,
        ),
        (
            "snapshot, base environment, graph (to the first package node)",
            |p| p.base,
        ),
        ("package nodes (all hits)", |p| p.packages),
        ("after the last node (finish the run, exit)", |p| p.end),
    ];
    for (label, f) in rows {
        println!(
            "    {:<64} {:>10} {:>10}",
            label,
            millis(phase(0, f)),
            millis(phase(1, f))
        );
    }
    let per_recipe = |k: usize| phase(k, |p| p.packages).as_secs_f64() * 1e6 / sizes[k] as f64;
    println!(
        "    {:<64} {:>7.0} µs {:>7.0} µs   ({} / {} package nodes: a build hit by its shortcut each, resolve and pkg-env only where a shortcut missed)",
        "  per recipe",
        per_recipe(0),
        per_recipe(1),
        thousands(nodes[0]),
        thousands(nodes[1])
    );
    println!(
        "    {:<64} {:>10} {:>10}",
        "comb graph alone (parse the recipes, make the graph)",
        millis(median(&variants[2].times)),
        millis(median(&variants[3].times))
    );
    let cpu: [(&str, Pick); 2] = [("CPU, user", |p| p.user), ("CPU, system", |p| p.sys)];
    for (label, f) in cpu {
        println!(
            "    {:<64} {:>10} {:>10}",
            label,
            millis(phase(0, f)),
            millis(phase(1, f))
        );
    }
    let rss = |k: usize| {
        variants[k]
            .phases
            .iter()
            .map(|p| p.max_rss_kb)
            .max()
            .unwrap_or(0) as f64
            / 1024.0
    };
    println!(
        "    {:<64} {:>7.0} MB {:>7.0} MB",
        "peak RSS",
        rss(0),
        rss(1)
    );
    let index = bench.store.join("index.sqlite");
    let rows = command_ok(Command::new("sqlite3").arg(&index).arg(
        "SELECT count(*) FROM events; SELECT count(*) FROM runs; SELECT count(*) FROM nodes;",
    ));
    let counts: Vec<&str> = rows.lines().collect();
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    println!(
        "    the index: a no-op of {1} recipes records an event and a last use for each of its {0} nodes; it now holds {2} events of {3} runs, {4} nodes, {5:.0} MB (+ {6:.0} MB WAL)",
        thousands(all_nodes),
        thousands(sizes[1]),
        counts.first().unwrap_or(&"?"),
        counts.get(1).unwrap_or(&"?"),
        counts.get(2).unwrap_or(&"?"),
        size(&index) as f64 / 1e6,
        size(&bench.store.join("index.sqlite-wal")) as f64 / 1e6
    );
    if !installed("strace") {
        println!("    strace: skipped, not installed (apt-get install strace)");
        return;
    }
    let log = bench.dir.join("strace-noop.txt");
    let out = run_to(
        Command::new("strace")
            .args(["-c", "-f", "-o"])
            .arg(&log)
            .arg(&bench.comb)
            .args(["build", "--all", "--json"])
            .args(bench.place(large_repo)),
        Stdio::null(),
    );
    if !out.ok {
        println!(
            "    strace: the traced run failed: {}",
            tail(&out.stderr, 3)
        );
        return;
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    println!(
        "    strace -c -f of one no-op of {} recipes (slowed by tracing: {}), top system calls by time:",
        thousands(sizes[1]),
        millis(out.wall)
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    // Header, rule, the rows sorted by time, rule, total.
    for line in lines.iter().take(12) {
        println!("      {line}");
    }
    if let Some(total) = lines.last().filter(|l| l.contains("total")) {
        if lines.len() > 12 {
            println!("      {total}");
        }
    }
    // Columns: % time, seconds, usecs/call, calls, [errors,] syscall.
    let calls = |name: &str| {
        lines.iter().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.last() == Some(&name)).then(|| f.get(3)?.parse::<u64>().ok())?
        })
    };
    if let (Some(reads), Some(all)) = (calls("read"), calls("total")) {
        println!(
            "    per recipe: {:.0} system calls, {:.0} of them read(2)",
            all as f64 / sizes[1] as f64,
            reads as f64 / sizes[1] as f64
        );
    }
}

fn noop_dir(bench: &Bench, n: usize) -> PathBuf {
    bench.dir.join(format!("noop-{n}"))
}

/// The repository of the first `n` recipes of `dag`.
fn noop_repo(bench: &Bench, dag: &Dag, n: usize) -> PathBuf {
    let repo = noop_dir(bench, n);
    generate(&repo, &format!("noop {n} {NOOP_SEED:x}"), |dir| {
        eprintln!(
            "build_graph: writing {} recipes in {}",
            thousands(n),
            repo.display()
        );
        write(&dir.join("comb.toml"), NATIVE_TOML);
        for r in 0..n {
            let name = noop_name(r);
            let src = dir.join(&name).join("src");
            mkdir_all(&src);
            write(&src.join("data"), format!("{name}\n").as_bytes());
            let deps: Vec<String> = dag.deps[r].iter().map(|&d| noop_name(d)).collect();
            write(
                &dir.join(&name).join("recipe.toml"),
                recipe_text(&name, &deps, "").as_bytes(),
            );
        }
    });
    bench.pin(&repo);
    repo
}

/// Whether the repository was built completely into this store.
fn complete(bench: &Bench, repo: &Path) -> bool {
    std::fs::read_to_string(repo.join(COMPLETE_MARKER)).ok()
        == Some(format!("{}\n", bench.store_identity()))
}

/// The largest size up to `n` already built completely (its builds are
/// the first ones of `n`'s).
fn largest_complete(bench: &Bench, n: usize) -> usize {
    read_dir(&bench.dir)
        .filter_map(|e| {
            let size: usize = e
                .file_name()
                .to_str()?
                .strip_prefix("noop-")?
                .parse()
                .ok()?;
            (size <= n && complete(bench, &e.path())).then_some(size)
        })
        .max()
        .unwrap_or(0)
}

/// Seconds per recipe of a first build, as last measured here.
fn setup_rate(bench: &Bench) -> (f64, bool) {
    match std::fs::read_to_string(bench.dir.join("setup-rate"))
        .ok()
        .and_then(|t| t.trim().parse::<f64>().ok())
    {
        Some(rate) => (rate, true),
        None => (DEFAULT_SETUP_RATE, false),
    }
}

/// Builds the repository of `n` recipes fully (untimed) unless it is;
/// returns a note for the report.
fn setup_noop(bench: &Bench, repo: &Path, n: usize) -> String {
    if !complete(bench, repo) {
        let remaining = n - largest_complete(bench, n);
        let (rate, _) = setup_rate(bench);
        eprintln!(
            "build_graph: first full build of {} (once, untimed, resumable): about {}",
            repo.display(),
            minutes(remaining as f64 * rate)
        );
    }
    let (out, built) = full_build(bench, repo, n, &[]);
    if built >= 20 {
        write(
            &bench.dir.join("setup-rate"),
            format!("{:.3}\n", out.wall.as_secs_f64() / built as f64).as_bytes(),
        );
    }
    write(
        &repo.join(COMPLETE_MARKER),
        format!("{}\n", bench.store_identity()).as_bytes(),
    );
    if built == 0 {
        format!("{}: built before", thousands(n))
    } else {
        format!(
            "{}: {} recipes built now in {} ({:.2} s each)",
            thousands(n),
            thousands(built),
            minutes(out.wall.as_secs_f64()),
            out.wall.as_secs_f64() / built as f64
        )
    }
}

/// A ninja build of the same graph: one `touch` per package, from its
/// source file and its dependencies' outputs; built once.
fn ninja_dir(bench: &Bench, dag: &Dag, n: usize) -> PathBuf {
    let dir = bench.dir.join(format!("ninja-{n}"));
    generate(&dir, &format!("ninja {n} {NOOP_SEED:x}"), |dir| {
        let src = dir.join("src");
        mkdir_all(&src);
        let mut text = String::from(
            "# The graph of the comb repository of the same size (benches/build_graph.rs).\n\
             rule pkg\n  command = touch $out\n  description = PKG $out\n\n",
        );
        for r in 0..n {
            let name = noop_name(r);
            write(&src.join(&name), format!("{name}\n").as_bytes());
            text.push_str(&format!("build out/{name}: pkg src/{name}"));
            for &d in &dag.deps[r] {
                text.push_str(&format!(" out/{}", noop_name(d)));
            }
            text.push('\n');
        }
        write(&dir.join("build.ninja"), text.as_bytes());
    });
    let out = run(Command::new("ninja").arg("-C").arg(&dir));
    if !out.ok {
        abort(&format!(
            "the first ninja build in {} failed:\n{}",
            dir.display(),
            tail(&out.stdout, 10)
        ));
    }
    dir
}

// ------------------------------------------------------- part 2: scheduling

fn schedule(bench: &Bench) {
    let n = env_count("COMB_BENCH_SCHED_SIZE", 200);
    let jobs = env_count("COMB_BENCH_JOBS", 4);
    let runs = env_count("COMB_BENCH_SCHED_RUNS", 3);
    let dag = Dag::generate(n, SCHED_SEED);
    let sleeps = sched_sleeps(n);
    println!(
        "2. scheduling: {n} recipes whose builds sleep 0.05 to 1.0 s (seeded), 0-3 dependencies each; `comb build --all -j {jobs}` with every build node a miss and every pkg-env a hit: {} (median, min / max)",
        plural(runs, "run")
    );
    println!(
        "  {} CPUs, {jobs} jobs: {}",
        bench.cpus,
        if jobs > bench.cpus {
            "oversubscribed; the sleeps use no CPU, but each build's own work (sandbox, copies, the .deb) competes for the CPUs"
        } else {
            "not oversubscribed"
        }
    );
    let repo = bench.dir.join("sched");
    generate(&repo, &format!("sched {n} {SCHED_SEED:x}"), |dir| {
        write(&dir.join("comb.toml"), NATIVE_TOML);
        for r in 0..n {
            let src = dir.join(sched_name(r)).join("src");
            mkdir_all(&src);
            write(&src.join("data"), format!("{}\n", sched_name(r)).as_bytes());
        }
    });
    bench.pin(&repo);
    if !repo.join(sched_name(0)).join("recipe.toml").is_file() {
        write_sched(&repo, &dag, &sleeps, "setup");
    }
    // Untimed: the first time, every resolution and pkg-env; later, hits.
    let (setup, built) = full_build(bench, &repo, n, &["-j", &jobs.to_string()]);
    if built > 0 {
        println!(
            "  setup (untimed): {} built in {}, with their pkg-envs",
            plural(built, "recipe"),
            minutes(setup.wall.as_secs_f64())
        );
    }

    let mut walls = Vec::new();
    let mut took: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut env_rebuilt = 0;
    let mut busy = Vec::new();
    for k in 0..runs {
        let nonce = format!("{}-{k}", unix_now().as_nanos());
        write_sched(&repo, &dag, &sleeps, &nonce);
        let out = comb_build(
            bench,
            &repo,
            &["--all", "-j", &jobs.to_string()],
            "the scheduling run",
        );
        let events = out.events();
        let builds: Vec<&Event> = events
            .iter()
            .filter(|e| e.stage == "build" && e.status == "built")
            .collect();
        if builds.len() != n {
            abort(&format!(
                "the scheduling run built {} of {n} build nodes: the nonce did not make them misses",
                builds.len()
            ));
        }
        env_rebuilt += events
            .iter()
            .filter(|e| e.stage != "build" && e.status == "built")
            .count();
        let mut sum = 0.0;
        for e in builds {
            if let Some(r) = e
                .name
                .strip_prefix("sched")
                .and_then(|t| t.parse::<usize>().ok())
                .filter(|&r| r < n)
            {
                took[r].push(e.duration_ms as f64 / 1000.0);
                sum += e.duration_ms as f64 / 1000.0;
            }
        }
        busy.push(sum / out.wall.as_secs_f64());
        walls.push(out.wall);
    }

    let work: f64 = sleeps.iter().sum();
    let path = dag.critical_path(&sleeps);
    let bound = path.max(work / jobs as f64);
    let overhead: Vec<f64> = took
        .iter()
        .zip(&sleeps)
        .map(|(t, s)| median_f64(t) - s)
        .collect();
    let with: Vec<f64> = sleeps.iter().zip(&overhead).map(|(s, o)| s + o).collect();
    let work2: f64 = with.iter().sum();
    let path2 = dag.critical_path(&with);
    let bound2 = path2.max(work2 / jobs as f64);
    let wall = median(&walls).as_secs_f64();

    println!(
        "  sleeps: total {:.1} s, critical path {:.1} s (longest chain {} recipes), {} edges",
        work,
        path,
        dag.critical_path(&vec![1.0; n]) as usize,
        dag.edges()
    );
    println!(
        "  {:<52} {:>9}   (critical path {:.1} s, total / {jobs} {:.1} s)",
        "lower bound max(critical path, total / jobs)",
        format!("{bound:.1} s"),
        path,
        work / jobs as f64
    );
    println!(
        "  {:<52} {:>9}   ({} / {})",
        format!("comb build --all -j {jobs}"),
        seconds(median(&walls)),
        seconds(quantile(&walls, 0.0)),
        seconds(quantile(&walls, 1.0))
    );
    let ratio = wall / bound;
    println!(
        "  {:<52} {:>8.2}x   target <= {SCHED_MAX_RATIO:.2}x   {}",
        "comb / lower bound",
        ratio,
        verdict(ratio <= SCHED_MAX_RATIO)
    );
    let mut sorted = overhead.clone();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((q * sorted.len() as f64) as usize).min(sorted.len() - 1)];
    println!(
        "  {:<52} {:>9}   (p10 {:.0} ms, p90 {:.0} ms)",
        "per-build overhead: node duration_ms - sleep, median",
        format!("{:.0} ms", at(0.5) * 1000.0),
        at(0.1) * 1000.0,
        at(0.9) * 1000.0
    );
    println!(
        "  {:<52} {:>9}   (critical path {:.1} s, total / {jobs} {:.1} s)",
        "fairer bound: each build takes its overhead too",
        format!("{bound2:.1} s"),
        path2,
        work2 / jobs as f64
    );
    println!(
        "  {:<52} {:>8.2}x   (the scheduler's own loss)",
        "comb / fairer bound",
        wall / bound2
    );
    println!(
        "  {:<52} {:>9}   (sum of build nodes' durations / wall)",
        format!("builds running at once, of {jobs}"),
        format!("{:.2}", median_f64(&busy))
    );
    let noop = comb_build(
        bench,
        &repo,
        &["--all", "-j", &jobs.to_string()],
        "a no-op of the scheduling repository",
    );
    println!(
        "  {:<52} {:>9}   (start-up and {} hits: in every run)",
        "comb's fixed cost: a no-op of this repository",
        millis(noop.wall),
        noop.summary("hit").unwrap_or(0)
    );
    let layers = base_layers(bench, &repo);
    let sandbox: Vec<Duration> = (0..12)
        .map(|_| {
            let out = run(Command::new(&bench.comb)
                .args(["sandbox", "run", "--as", "builder"])
                .args(layer_args(&layers))
                .args(["--", "true"]));
            if !out.ok {
                abort(&format!(
                    "comb sandbox run -- true failed:\n{}",
                    tail(&out.stderr, 5)
                ));
            }
            out.wall
        })
        .skip(2)
        .collect();
    println!(
        "  {:<52} {:>9}   (of the overhead: entering the sandbox; the rest is copying the source, the .deb, the store, the index)",
        format!("comb sandbox run -- true on the {} base layers", layers.len()),
        millis(median(&sandbox))
    );
    if env_rebuilt > 0 {
        println!(
            "  note: {} resolution or pkg-env nodes were rebuilt during the timed runs (expected 0)",
            env_rebuilt
        );
    }
}

/// Writes the scheduling recipes, their scripts marked with `nonce` (a
/// comment: a new nonce makes every build node a miss, and the packages
/// the same bytes).
fn write_sched(repo: &Path, dag: &Dag, sleeps: &[f64], nonce: &str) {
    for (r, deps) in dag.deps.iter().enumerate() {
        let name = sched_name(r);
        let deps: Vec<String> = deps.iter().map(|&d| sched_name(d)).collect();
        let before = format!("# run {nonce}\nsleep {:.2}\n", sleeps[r]);
        write(
            &repo.join(&name).join("recipe.toml"),
            recipe_text(&name, &deps, &before).as_bytes(),
        );
    }
}

/// The layer directories of the repository's base-build environment,
/// bottom first, as `comb env build` prints them.
fn base_layers(bench: &Bench, repo: &Path) -> Vec<PathBuf> {
    let out = run(Command::new(&bench.comb)
        .args(["env", "build"])
        .args(bench.place(repo)));
    if !out.ok {
        abort(&bench.redact(&format!(
            "comb env build failed:\n{}",
            tail(&out.stderr, 10)
        )));
    }
    out.stdout.lines().map(PathBuf::from).collect()
}

fn layer_args(layers: &[PathBuf]) -> Vec<String> {
    layers
        .iter()
        .flat_map(|l| ["--layer".to_string(), l.display().to_string()])
        .collect()
}

// ---------------------------------------------------- part 3: a real build

/// A package a pkg-env adds, as its resolve node stored it.
struct Resolved {
    name: String,
    version: String,
    architecture: String,
    sha256: String,
}

/// What a real build needs, found once.
struct Real {
    name: String,
    repo: PathBuf,
    /// The build node's key: its row is deleted before every comb run.
    build_key: String,
    /// Every layer of the package's pkg-env, bottom first.
    layers: Vec<PathBuf>,
    /// The store tree of the pkg-env.
    pkg_env_tree: String,
    resolved: Vec<Resolved>,
    /// The source package's files (the `.dsc` first) in the store.
    sources: Vec<(String, PathBuf)>,
    /// `DEB_BUILD_OPTIONS=parallel=` as comb sets it at its default `-j`.
    parallel: usize,
}

fn real(bench: &Bench) {
    let source = env_string("COMB_BENCH_REAL_SOURCE", "hello=2.10-3");
    let runs = env_count("COMB_BENCH_REAL_RUNS", 5);
    let trad_runs = env_count("COMB_BENCH_TRAD_RUNS", 2);
    let name = source.split('=').next().unwrap_or_default().to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
    {
        abort(&format!(
            "COMB_BENCH_REAL_SOURCE={source:?} is not NAME or NAME=VERSION"
        ));
    }
    let real = real_setup(bench, &source, &name);
    println!(
        "3. a real build: {source} from Debian source, its pkg-env cached ({} packages over base-build), DEB_BUILD_OPTIONS=parallel={} everywhere (what `comb build` gives a lone build): median of {}",
        real.resolved.len(),
        real.parallel,
        plural(runs, "run")
    );
    let missing: Vec<&str> = ["unshare", "chroot", "tar", "dpkg-scanpackages"]
        .into_iter()
        .filter(|t| !installed(t))
        .collect();
    let chroot = if missing.is_empty() {
        Some(prepared_chroot(bench, &real))
    } else {
        println!(
            "  the chroot peers: skipped, missing {} (apt-get install dpkg-dev util-linux)",
            missing.join(", ")
        );
        None
    };
    let sandbox_dir = bench.scratch("sandbox-builds");
    // When the last removal of many files was: comb's of its build tree,
    // or here of an interrupted run's builds.
    let mut removed: Option<Instant> = None;
    let chroot_builds = chroot.as_ref().map(|c| {
        let builds = c.root.join("build");
        if builds.exists() {
            remove_all(&builds);
            removed = Some(Instant::now());
        }
        mkdir_all(&builds);
        bench.discard(builds.clone());
        builds
    });

    let labels = [
        "comb build (its build node a miss)",
        "dpkg-buildpackage in a prepared chroot",
        "dpkg-buildpackage in comb sandbox run, same layers",
    ];
    println!(
        "  every timed run starts {:.0} s after comb last removed a build tree (ext4 without a journal reuses no freed inode for a minute: creating files before that is slower)",
        INODE_REUSE_DELAY.as_secs_f64()
    );
    let mut times: [Vec<Duration>; 3] = Default::default();
    // CPU time (user and system, of every process of the run): steadier
    // than wall time on a machine whose runs of one command vary.
    let mut cpu: [Vec<Duration>; 3] = Default::default();
    let mut nodes = Vec::new();
    let mut order: Vec<usize> = (0..3).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..runs {
        shuffle(&mut order, &mut seed);
        for &v in &order {
            wait_after(removed);
            let cpu_before = children_cpu();
            let ran = match v {
                0 => {
                    let (wall, node) = comb_real(bench, &real);
                    // comb removes its build tree when the build ends.
                    removed = Some(Instant::now());
                    times[0].push(wall);
                    nodes.push(node);
                    true
                }
                1 => {
                    if let (Some(c), Some(builds)) = (&chroot, &chroot_builds) {
                        let dir = builds.join(format!("run-{round}"));
                        times[1].push(chroot_build(bench, &real, &c.root, &dir));
                        true
                    } else {
                        false
                    }
                }
                _ => {
                    times[2].push(sandbox_build(bench, &real, &sandbox_dir, round));
                    true
                }
            };
            if ran {
                cpu[v].push(children_cpu().saturating_sub(cpu_before));
            }
        }
    }
    for (label, t) in labels.iter().zip(&times) {
        if t.is_empty() {
            continue;
        }
        println!(
            "  {:<52} {:>9}   (runs: {})",
            label,
            seconds(median(t)),
            list_seconds(t)
        );
    }
    let comb = median(&times[0]);
    let node = median(&nodes);
    println!(
        "  {:<52} {:>9}   (the rest of comb's run: {}, start-up and lookups)",
        "  of which its build node (duration_ms)",
        seconds(node),
        millis(comb.saturating_sub(node))
    );
    // Each round's variants ran close together: the median of the
    // rounds' ratios is less sensitive to drift than the ratio of medians.
    let per_round = |a: &[Duration], b: &[Duration]| {
        let ratios: Vec<f64> = a
            .iter()
            .zip(b)
            .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64())
            .collect();
        median_f64(&ratios)
    };
    if !times[1].is_empty() {
        let ratio = comb.as_secs_f64() / median(&times[1]).as_secs_f64();
        println!(
            "  {:<52} {:>8.3}x   target <= {REAL_MAX_RATIO:.2}x   {}   (median of the rounds' ratios: {:.3}x)",
            "comb / prepared chroot",
            ratio,
            verdict(ratio <= REAL_MAX_RATIO),
            per_round(&times[0], &times[1])
        );
    }
    let bare = median(&times[2]);
    println!(
        "  {:<52} {:>8.3}x   (comb's orchestration alone; median of the rounds' ratios: {:.3}x; the build node / it: {:.3}x)",
        "comb / comb sandbox run on the same layers",
        comb.as_secs_f64() / bare.as_secs_f64(),
        per_round(&times[0], &times[2]),
        node.as_secs_f64() / bare.as_secs_f64()
    );
    // The same runs' CPU time, which the machine's load moves less.
    for (label, c) in labels.iter().zip(&cpu) {
        if !c.is_empty() {
            println!(
                "  {:<52} {:>9}   (runs: {})",
                format!("CPU, {label}"),
                seconds(median(c)),
                list_seconds(c)
            );
        }
    }
    if !cpu[1].is_empty() {
        println!(
            "  {:<52} {:>8.3}x   (median of the rounds' ratios: {:.3}x)",
            "CPU, comb / prepared chroot",
            median(&cpu[0]).as_secs_f64() / median(&cpu[1]).as_secs_f64(),
            per_round(&cpu[0], &cpu[1])
        );
    }
    wait_after(removed);
    if let Some(c) = &chroot {
        traditional(bench, &real, c, trad_runs, comb);
    }
}

/// Builds the real package once (untimed: the source record, the
/// resolution, the pkg-env, the fetches and the build), then finds what
/// the timed runs need.
fn real_setup(bench: &Bench, source: &str, name: &str) -> Real {
    let repo = bench.dir.join(format!("real-{name}"));
    generate(&repo, &format!("real {source}"), |dir| {
        write(&dir.join("comb.toml"), b"");
        mkdir_all(&dir.join(name));
        write(
            &dir.join(name).join("recipe.toml"),
            format!("[source]\ndebian = \"{source}\"\n").as_bytes(),
        );
    });
    bench.pin(&repo);
    let (out, _) = full_build(bench, &repo, 1, &[]);
    let base = base_layers(bench, &repo);
    found_package(bench, &repo, &out.events(), name, &base, true)
}

/// What the build of `name` in `repo` used: the nodes of a run's
/// `events` or, for those it did not print (a build found by its
/// shortcut prints no resolve or pkg-env node), the nodes the index says
/// each stage last used. A package with no build dependencies has no
/// pkg-env: it builds on base-build, whose tree stands for its pkg-env's
/// and which adds nothing. `debian`: a source package, whose source
/// record must be there.
fn found_package(
    bench: &Bench,
    repo: &Path,
    events: &[Event],
    name: &str,
    base: &[PathBuf],
    debian: bool,
) -> Real {
    let index = bench.store.join("index.sqlite");
    let find = |stage: &str, node: &str| {
        events
            .iter()
            .find(|e| e.stage == stage && e.name == node)
            .map(|e| e.key.clone())
            .or_else(|| {
                let key = command_ok(Command::new("sqlite3").arg(&index).arg(format!(
                    "SELECT node_key FROM last_use WHERE kind = '{stage}' AND name = '{node}'"
                )));
                let key = key.trim();
                (key.len() == 64).then(|| key.to_string())
            })
    };
    let need = |stage: &str, node: &str| {
        find(stage, node)
            .unwrap_or_else(|| abort(&format!("comb build {name} printed no {stage} {node} node")))
    };
    let build_key = need("build", name);
    let env_node = format!("pkg-env:{name}");
    let mut layers = base.to_vec();
    let (pkg_env_tree, resolved) = match find("pkg-env", &env_node) {
        Some(key) => {
            let tree = format!("pkg-env-{key}");
            let mut own: Vec<(u32, PathBuf)> = read_dir(&bench.store.join("trees").join(&tree))
                .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
                .collect();
            own.sort();
            layers.extend(own.into_iter().map(|(_, p)| p));
            (tree, resolved_by(bench, &need("resolve", &env_node)))
        }
        None => {
            let tree = base
                .last()
                .and_then(|l| l.parent()?.file_name()?.to_str())
                .filter(|t| t.starts_with("base-build-"))
                .unwrap_or_else(|| abort("the top base layer is not base-build's"));
            (tree.to_string(), Vec::new())
        }
    };
    let mut sources: Vec<(String, PathBuf)> = Vec::new();
    if debian {
        // The record's files, by sha256, from `Checksums-Sha256:`.
        let record = blob_of_node(bench, &need("resolve", &format!("source:{name}")));
        let mut in_field = false;
        for line in record.lines() {
            if !line.starts_with(' ') {
                in_field = line.starts_with("Checksums-Sha256:");
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let (true, [sha, _size, file]) = (in_field, fields.as_slice()) {
                sources.push((file.to_string(), sha256_blob(bench, sha)));
            }
        }
        sources.sort_by_key(|(f, _)| !f.ends_with(".dsc"));
        if !sources.first().is_some_and(|(f, _)| f.ends_with(".dsc")) {
            abort(&format!("the stored source record of {name} lists no .dsc"));
        }
    }
    Real {
        name: name.to_string(),
        repo: repo.to_path_buf(),
        build_key,
        layers,
        pkg_env_tree,
        resolved,
        sources,
        // A lone build gets every CPU (engine/src/build.rs, CpuShare).
        parallel: bench.cpus,
    }
}

/// The packages a resolve node's output lists.
fn resolved_by(bench: &Bench, key: &str) -> Vec<Resolved> {
    serde_json::from_str::<Value>(&blob_of_node(bench, key))
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            Resolved {
                name: text("name"),
                version: text("version"),
                architecture: text("architecture"),
                sha256: text("sha256"),
            }
        })
        .filter(|r| r.sha256.len() == 64)
        .collect()
}

/// The text of the blob a node's row names as its output.
fn blob_of_node(bench: &Bench, key: &str) -> String {
    let output = command_ok(
        Command::new("sqlite3")
            .arg(bench.store.join("index.sqlite"))
            .arg(format!("SELECT output FROM nodes WHERE key = '{key}'")),
    );
    // "blake3:HEX:SIZE"
    let mut fields = output.trim().split(':');
    let (Some(algorithm), Some(hash)) = (fields.next(), fields.next()) else {
        abort(&format!("node {key} has no blob output: {output:?}"));
    };
    if hash.len() < 3 {
        abort(&format!("node {key} has a bad blob output: {output:?}"));
    }
    let blob = bench
        .store
        .join("blobs")
        .join(algorithm)
        .join(&hash[..2])
        .join(&hash[2..]);
    std::fs::read_to_string(&blob)
        .unwrap_or_else(|e| abort(&format!("reading {}: {e}", blob.display())))
}

fn sha256_blob(bench: &Bench, sha: &str) -> PathBuf {
    if sha.len() != 64 {
        abort(&format!("{sha:?} is not a sha256"));
    }
    bench
        .store
        .join("blobs/sha256")
        .join(&sha[..2])
        .join(&sha[2..])
}

/// One comb run with the build node's row deleted: its wall time and
/// the build node's `duration_ms`.
fn comb_real(bench: &Bench, real: &Real) -> (Duration, Duration) {
    command_ok(
        Command::new("sqlite3")
            .arg(bench.store.join("index.sqlite"))
            .arg(format!(
                "DELETE FROM nodes WHERE key = '{}'",
                real.build_key
            )),
    );
    let out = comb_build(bench, &real.repo, &["--all"], "the real build");
    let events = out.events();
    let node = events
        .iter()
        .find(|e| e.stage == "build" && e.status == "built")
        .unwrap_or_else(|| abort(&format!("comb build {} built no build node", real.name)));
    if let Some(e) = events
        .iter()
        .find(|e| e.stage != "build" && e.status != "hit")
    {
        abort(&format!(
            "comb build {}: {} {} was {}, not a hit",
            real.name, e.stage, e.name, e.status
        ));
    }
    (out.wall, Duration::from_millis(node.duration_ms))
}

/// The commands comb runs for a `debian` build (engine/src/build.rs),
/// in `dir` holding the source files in `sources/`.
fn build_script(real: &Real, dir: &str) -> String {
    format!(
        "set -e\ncd {dir} && dpkg-source --no-check -x sources/{} src && cd src && dpkg-buildpackage -b -uc -us",
        real.sources[0].0
    )
}

/// `dir/sources/` with copies of the source files, owned by uid 1000.
fn stage_sources(real: &Real, dir: &Path) {
    let sources = dir.join("sources");
    mkdir_all(&sources);
    for (file, blob) in &real.sources {
        std::fs::copy(blob, sources.join(file))
            .unwrap_or_else(|e| abort(&format!("copying {}: {e}", blob.display())));
    }
    command_ok(Command::new("chown").args(["-R", "1000:1000"]).arg(dir));
}

/// Whether `dir` holds at least one `.deb`.
fn made_debs(dir: &Path) -> bool {
    read_dir(dir).any(|e| e.file_name().to_string_lossy().ends_with(".deb"))
}

fn sandbox_build(bench: &Bench, real: &Real, scratch: &Path, round: usize) -> Duration {
    let work = scratch.join(format!("run-{round}"));
    mkdir_all(&work);
    stage_sources(real, &work);
    let out = run(Command::new(&bench.comb)
        .args(["sandbox", "run", "--as", "builder"])
        .args(layer_args(&real.layers))
        .arg("--bind")
        .arg(format!("{}:/build:rw", work.display()))
        .args([
            "--env",
            &format!("DEB_BUILD_OPTIONS=parallel={}", real.parallel),
        ])
        .args(["--cwd", "/build", "--", "/bin/sh", "-c"])
        .arg(build_script(real, "/build")));
    if !out.ok || !made_debs(&work) {
        abort(&format!(
            "dpkg-buildpackage in comb sandbox run failed:\n{}\n{}",
            tail(&out.stdout, 10),
            tail(&out.stderr, 10)
        ));
    }
    out.wall
}

/// A chroot made from the base-build tarball with the package's build
/// dependencies installed, and what made it.
struct Chroot {
    root: PathBuf,
    tarball: PathBuf,
    /// A flat APT repository of the pkg-env's `.deb`s.
    debs: PathBuf,
}

/// Runs `script` in the chroot `root`: new mount, pid and network
/// namespaces, `/proc`, the host's `/dev`, a tmpfs `/tmp`, `debs` at
/// `/debs`; as uid 1000 or as root; with the environment comb's sandbox
/// gives a build.
fn in_chroot(
    root: &Path,
    builder: bool,
    debs: Option<&Path>,
    script: &str,
    parallel: usize,
) -> Ran {
    let (user, home, userspec) = if builder {
        ("builder", "/home/builder", "--userspec=1000:1000 ")
    } else {
        ("root", "/root", "")
    };
    let env = format!(
        "PATH={SANDBOX_PATH} HOME={home} USER={user} LOGNAME={user} TZ=UTC LC_ALL=C.UTF-8 SHELL=/bin/sh DEB_BUILD_OPTIONS=parallel={parallel} DEBIAN_FRONTEND=noninteractive"
    );
    let mut outer = String::from(
        "set -e; R=\"$1\"; S=\"$2\"; mount -t proc proc \"$R/proc\"; mount --rbind /dev \"$R/dev\"; \
         mount -t tmpfs -o size=4g,mode=1777 tmpfs \"$R/tmp\"; ",
    );
    if debs.is_some() {
        outer.push_str("mkdir -p \"$R/debs\"; mount --bind \"$3\" \"$R/debs\"; ");
    }
    outer.push_str(&format!(
        "exec chroot {userspec}\"$R\" /usr/bin/env -i {env} /bin/sh -c \"$S\""
    ));
    run(Command::new("unshare")
        .args([
            "--mount",
            "--pid",
            "--fork",
            "--net",
            "--propagation",
            "private",
        ])
        .args(["--", "sh", "-c", &outer, "sh"])
        .arg(root)
        .arg(script)
        .args(debs))
}

/// `dpkg-source -x` and `dpkg-buildpackage` as uid 1000 in the chroot,
/// in `dir` (inside the chroot's tree); its wall time.
fn chroot_build(bench: &Bench, real: &Real, root: &Path, dir: &Path) -> Duration {
    mkdir_all(dir);
    stage_sources(real, dir);
    let inside = Path::new("/").join(dir.strip_prefix(root).unwrap_or(dir));
    let out = in_chroot(
        root,
        true,
        None,
        &build_script(real, &inside.display().to_string()),
        real.parallel,
    );
    if !out.ok || !made_debs(dir) {
        abort(&bench.redact(&format!(
            "dpkg-buildpackage in the chroot {} failed:\n{}\n{}",
            root.display(),
            tail(&out.stdout, 10),
            tail(&out.stderr, 10)
        )));
    }
    out.wall
}

/// Installs the pkg-env's packages in the chroot with APT, from the
/// local repository; its wall time.
fn install_deps(bench: &Bench, real: &Real, root: &Path, debs: &Path) -> Duration {
    let wanted: Vec<String> = real
        .resolved
        .iter()
        .map(|r| format!("'{}:{}={}'", r.name, r.architecture, r.version))
        .collect();
    let opts = "-q -o Acquire::Languages=none -o APT::Sandbox::User=root -o Dpkg::Use-Pty=false";
    let script = format!(
        "set -e\nrm -f /etc/apt/sources.list.d/*\n\
         echo 'deb [trusted=yes] file:/debs ./' > /etc/apt/sources.list\n\
         apt-get {opts} update\n\
         apt-get {opts} -y --no-install-recommends --allow-downgrades install {}",
        wanted.join(" ")
    );
    let out = in_chroot(root, false, Some(debs), &script, real.parallel);
    if !out.ok {
        abort(&bench.redact(&format!(
            "installing the build dependencies in {} failed:\n{}\n{}",
            root.display(),
            tail(&out.stdout, 10),
            tail(&out.stderr, 10)
        )));
    }
    out.wall
}

/// The prepared chroot (made once per pkg-env), with the tarball and the
/// local repository it was made from.
fn prepared_chroot(bench: &Bench, real: &Real) -> Chroot {
    let tarball = base_tarball(bench, real);
    let debs = local_repository(bench, real);
    let root = bench.dir.join(format!("chroot-{}", real.pkg_env_tree));
    let ready = root.with_extension("ready");
    if !ready.is_file() {
        for entry in read_dir(&bench.dir) {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with("chroot-pkg-env-") && entry.path() != root {
                bench.discard(entry.path());
            }
        }
        eprintln!(
            "build_graph: preparing the chroot {} (once)",
            root.display()
        );
        remove_all(&root);
        mkdir_all(&root);
        untar(&tarball, &root);
        install_deps(bench, real, &root, &debs);
        write(&ready, b"");
    }
    Chroot {
        root,
        tarball,
        debs,
    }
}

/// The base-build environment as a tarball, made once per environment
/// from inside it (`tar --one-file-system` keeps the sandbox's mount
/// points as empty directories).
fn base_tarball(bench: &Bench, real: &Real) -> PathBuf {
    let tree = real
        .layers
        .iter()
        .filter_map(|l| l.parent()?.file_name()?.to_str())
        .find(|t| t.starts_with("base-build-"))
        .unwrap_or_else(|| abort("no base-build layer among the environment's layers"))
        .to_string();
    let tarball = bench.dir.join(format!("{tree}.tar"));
    if tarball.is_file() {
        return tarball;
    }
    eprintln!("build_graph: writing {} (once)", tarball.display());
    let partial = tarball.with_extension("partial");
    let file = std::fs::File::create(&partial)
        .unwrap_or_else(|e| abort(&format!("creating {}: {e}", partial.display())));
    let out = run_to(
        Command::new(&bench.comb)
            .args(["env", "run", "--as", "root"])
            .args(bench.place(&real.repo))
            .args(["--", "tar", "-C", "/", "--one-file-system", "-cf", "-", "."]),
        file.into(),
    );
    let size = std::fs::metadata(&partial).map_or(0, |m| m.len());
    if !out.ok || size < 50_000_000 {
        abort(&bench.redact(&format!(
            "making the tarball failed ({size} bytes):\n{}",
            tail(&out.stderr, 10)
        )));
    }
    rename(&partial, &tarball);
    tarball
}

/// A flat APT repository of the `.deb`s the pkg-env adds (hard links to
/// the store's blobs), made once.
fn local_repository(bench: &Bench, real: &Real) -> PathBuf {
    let dir = bench.dir.join(format!("debs-{}", real.pkg_env_tree));
    if dir.join("Packages").is_file() {
        return dir;
    }
    let partial = dir.with_extension("partial");
    remove_all(&partial);
    mkdir_all(&partial);
    for r in &real.resolved {
        let file = format!(
            "{}_{}_{}.deb",
            r.name,
            r.version.replace(':', "%3a"),
            r.architecture
        );
        let blob = sha256_blob(bench, &r.sha256);
        std::fs::hard_link(&blob, partial.join(file))
            .unwrap_or_else(|e| abort(&format!("linking {}: {e}", blob.display())));
    }
    let packages = command_ok(
        Command::new("dpkg-scanpackages")
            .args(["-m", "."])
            .current_dir(&partial),
    );
    write(&partial.join("Packages"), packages.as_bytes());
    rename(&partial, &dir);
    dir
}

fn untar(tarball: &Path, dir: &Path) -> Duration {
    let out = run(Command::new("tar")
        .arg("-xf")
        .arg(tarball)
        .arg("-C")
        .arg(dir));
    if !out.ok {
        abort(&format!(
            "tar -xf {} failed:\n{}",
            tarball.display(),
            tail(&out.stderr, 10)
        ));
    }
    out.wall
}

/// The whole traditional cycle: unpack, install the build dependencies
/// with APT, build; each in a fresh directory kept until the end.
fn traditional(bench: &Bench, real: &Real, chroot: &Chroot, runs: usize, comb: Duration) {
    let scratch = bench.scratch("trad");
    let mut phases: Vec<[Duration; 3]> = Vec::new();
    for k in 0..runs {
        let root = scratch.join(format!("run-{k}"));
        mkdir_all(&root);
        sync();
        let unpack = untar(&chroot.tarball, &root);
        let deps = install_deps(bench, real, &root, &chroot.debs);
        let build = chroot_build(bench, real, &root, &root.join("build/run"));
        phases.push([unpack, deps, build]);
    }
    let totals: Vec<Duration> = phases.iter().map(|p| p[0] + p[1] + p[2]).collect();
    let part = |i: usize| median(&phases.iter().map(|p| p[i]).collect::<Vec<_>>());
    println!(
        "  {:<52} {:>9}   (unpack {}, apt-get update + install {} .debs {}, build {}; runs: {})",
        format!("traditional cycle, median of {}", plural(runs, "run")),
        seconds(median(&totals)),
        seconds(part(0)),
        real.resolved.len(),
        seconds(part(1)),
        seconds(part(2)),
        list_seconds(&totals)
    );
    println!(
        "  {:<52} {:>8.2}x",
        "traditional cycle / comb",
        median(&totals).as_secs_f64() / comb.as_secs_f64()
    );
}

// ------------------------------------------------------------ part 4: checks

/// A package of the starter repository, as both checks see it.
struct Checked {
    /// Its build dependencies and sources, as comb's nodes recorded them.
    real: Real,
    /// The recipe of a native package; `None` for a Debian source package.
    native: Option<Recipe>,
    /// The `.deb`s comb recorded for it (its build node's manifest).
    recorded: Vec<RecordedDeb>,
}

struct RecordedDeb {
    name: String,
    architecture: String,
    filename: String,
    sha256: String,
}

/// One package's traditional cycle: its phases, and how many of its
/// `.deb`s came out the same bytes as comb's recorded ones.
#[derive(Default, Clone, Copy)]
struct Cycle {
    total: Duration,
    unpack: Duration,
    deps: Duration,
    build: Duration,
    compare: Duration,
    identical: usize,
    missing: usize,
}

/// Part 4: `comb check --all -j 2` of `examples/starter` against checking
/// its packages one after another the traditional way. Target: comb takes
/// less time (ratio below 1).
fn check_part(bench: &Bench) {
    let runs = env_count("COMB_BENCH_CHECK_RUNS", 3);
    let trad_runs = env_count("COMB_BENCH_TRAD_CHECK_RUNS", 1);
    let repo = starter_repo(bench);
    let recipes = repo_recipes(&repo);
    let (out, built) = full_build(bench, &repo, recipes.len(), &[]);
    // comb removed the build trees of whatever it built.
    let mut removed = (built > 0).then(Instant::now);
    let base = base_layers(bench, &repo);
    let events = out.events();
    let packages = in_dependency_order(
        recipes
            .into_iter()
            .map(|recipe| {
                let debian = !recipe.source.kind().is_native();
                let real = found_package(bench, &repo, &events, &recipe.name, &base, debian);
                let recorded = recorded_debs(bench, &real.build_key);
                Checked {
                    real,
                    native: (!debian).then_some(recipe),
                    recorded,
                }
            })
            .collect(),
    );
    if packages.is_empty() {
        abort(&format!("{} holds no recipe", repo.display()));
    }
    println!(
        "4. comb check of examples/starter ({}): `comb check --all -j 2` against checking each in the traditional way (unpack, apt-get update, install build dependencies, build, compare), one at a time",
        plural(packages.len(), "package")
    );

    let mut comb_runs = Vec::new();
    let mut verdicts = String::new();
    for _ in 0..runs {
        wait_after(removed);
        sync();
        let (wall, summary) = comb_check_all(bench, &repo);
        // comb removes each rebuild's tree when it ends.
        removed = Some(Instant::now());
        comb_runs.push(wall);
        verdicts = summary;
    }
    let comb = median(&comb_runs);
    println!(
        "  {:<52} {:>9}   (median of {}: {}; {verdicts})",
        "comb check --all -j 2",
        seconds(comb),
        plural(runs, "run"),
        list_seconds(&comb_runs)
    );

    let missing: Vec<&str> = ["unshare", "chroot", "tar", "dpkg-scanpackages"]
        .into_iter()
        .filter(|t| !installed(t))
        .collect();
    if !missing.is_empty() {
        println!(
            "  traditional, one at a time: skipped, missing {} (apt-get install dpkg-dev util-linux)",
            missing.join(", ")
        );
        return;
    }
    // Made once and kept, untimed: the traditional cycle starts from a
    // tarball and a repository of `.deb`s as it would from a mirror.
    let tarball = base_tarball(bench, &packages[0].real);
    let debs: Vec<PathBuf> = packages
        .iter()
        .map(|p| local_repository(bench, &p.real))
        .collect();
    let scratch = bench.scratch("trad-check");
    wait_after(removed);
    // Each package's tree is kept until the end: nothing is removed
    // between the cycles, so none waits.
    let cycles: Vec<Vec<Cycle>> = (0..trad_runs)
        .map(|k| {
            packages
                .iter()
                .zip(&debs)
                .map(|(p, debs)| {
                    let root = scratch.join(format!("run-{k}")).join(&p.real.name);
                    trad_cycle(bench, p, &tarball, debs, &root)
                })
                .collect()
        })
        .collect();
    let per_package = |i: usize| {
        let mut of: Vec<Cycle> = cycles.iter().map(|run| run[i]).collect();
        of.sort_by_key(|c| c.total);
        of[of.len() / 2]
    };
    let typical: Vec<Cycle> = (0..packages.len()).map(per_package).collect();
    let totals: Vec<Duration> = cycles
        .iter()
        .map(|run| run.iter().map(|c| c.total).sum())
        .collect();
    let trad = median(&totals);
    let each: Vec<String> = packages
        .iter()
        .zip(&typical)
        .map(|(p, c)| format!("{} {:.1} s", p.real.name, c.total.as_secs_f64()))
        .collect();
    let label = if trad_runs == 1 {
        "traditional, one at a time".to_string()
    } else {
        format!("traditional, one at a time, median of {trad_runs}")
    };
    println!(
        "  {:<52} {:>9}   ({})",
        label,
        seconds(trad),
        each.join(", ")
    );
    let sum = |f: fn(&Cycle) -> Duration| seconds(typical.iter().map(f).sum());
    let recorded: usize = packages.iter().map(|p| p.recorded.len()).sum();
    let identical: usize = typical.iter().map(|c| c.identical).sum();
    let absent: usize = typical.iter().map(|c| c.missing).sum();
    println!(
        "  {:<52} {:>9}   (unpack {}, apt-get update + install {}, build {}, compare {}; DEB_BUILD_OPTIONS=parallel={})",
        "  of which",
        "",
        sum(|c| c.unpack),
        sum(|c| c.deps),
        sum(|c| c.build),
        sum(|c| c.compare),
        bench.cpus
    );
    // Which packages came out the same bytes, and which did not (with
    // how many of their .debs did, if some).
    let (same, other): (Vec<_>, Vec<_>) = packages
        .iter()
        .zip(&typical)
        .partition(|(p, c)| c.identical == p.recorded.len());
    let list = |of: &[(&Checked, &Cycle)]| match of {
        [] => "none".to_string(),
        _ => of
            .iter()
            .map(|(p, c)| match c.identical {
                k if k == 0 || k == p.recorded.len() => p.real.name.clone(),
                k => format!("{} ({k} of {})", p.real.name, p.recorded.len()),
            })
            .collect::<Vec<_>>()
            .join(", "),
    };
    let mut detail = format!(
        "informative: all of {}; not: {}; the native packages are packed here with dpkg-deb, not by comb",
        list(&same),
        list(&other)
    );
    if absent > 0 {
        detail.push_str(&format!("; {absent} not made by the traditional builds"));
    }
    let count = format!("{identical} of {recorded}");
    println!(
        "  {:<52} {:>9}   ({detail})",
        "  .debs the same bytes as comb's recorded ones", count
    );
    let ratio = comb.as_secs_f64() / trad.as_secs_f64();
    println!(
        "  {:<52} {:>8.2}x   target < 1.00x   {}",
        "comb / traditional",
        ratio,
        verdict(ratio < 1.0)
    );
}

/// A copy of `examples/starter` in the scratch directory, copied again
/// when the example changes, pinned to the benchmark's snapshot.
fn starter_repo(bench: &Bench) -> PathBuf {
    let starter = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/starter");
    if !starter.join("comb.toml").is_file() {
        abort(&format!("{} has no comb.toml", starter.display()));
    }
    // Its files' names and bytes, but not its lock: the copy gets the
    // benchmark's own.
    let mut hasher = std::hash::DefaultHasher::new();
    for file in files_under(&starter) {
        if file != Path::new("comb.lock") {
            std::hash::Hash::hash(&file, &mut hasher);
            std::hash::Hash::hash(&std::fs::read(starter.join(&file)).ok(), &mut hasher);
        }
    }
    let repo = bench.dir.join("starter");
    let what = format!("starter {:016x}", std::hash::Hasher::finish(&hasher));
    generate(&repo, &what, |dir| {
        command_ok(Command::new("cp").arg("-a").arg(starter.join(".")).arg(dir));
        let _ = std::fs::remove_file(dir.join("comb.lock"));
    });
    bench.pin(&repo);
    repo
}

/// The recipes of a repository (one directory each), by name.
fn repo_recipes(repo: &Path) -> Vec<Recipe> {
    let mut recipes: Vec<Recipe> = read_dir(repo)
        .map(|e| e.path().join("recipe.toml"))
        .filter(|f| f.is_file())
        .map(|f| Recipe::load(&f).unwrap_or_else(|e| abort(&format!("{}: {e}", f.display()))))
        .collect();
    recipes.sort_by(|a, b| a.name.cmp(&b.name));
    recipes
}

/// The `.deb`s a build node's manifest lists.
fn recorded_debs(bench: &Bench, build_key: &str) -> Vec<RecordedDeb> {
    let manifest: Value = serde_json::from_str(&blob_of_node(bench, build_key))
        .unwrap_or_else(|e| abort(&format!("the manifest of build {build_key}: {e}")));
    let debs: Vec<RecordedDeb> = manifest["debs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let text = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            RecordedDeb {
                name: text("name"),
                architecture: text("architecture"),
                filename: text("filename"),
                sha256: text("sha256"),
            }
        })
        .collect();
    if debs.is_empty() || debs.iter().any(|d| d.filename.contains('/')) {
        abort(&format!(
            "the manifest of build {build_key} lists no good .debs"
        ));
    }
    debs
}

/// `packages` with every package after those whose `.deb`s its
/// environment holds (the recipes' `requires` and the Debian sources'
/// `Build-Depends` alike, as comb resolved them), else by name.
fn in_dependency_order(mut left: Vec<Checked>) -> Vec<Checked> {
    let needs = |a: &Checked, b: &Checked| {
        a.real
            .resolved
            .iter()
            .any(|r| b.recorded.iter().any(|d| d.sha256 == r.sha256))
    };
    let mut order = Vec::new();
    while !left.is_empty() {
        let ready = (0..left.len())
            .find(|&i| !(0..left.len()).any(|j| j != i && needs(&left[i], &left[j])))
            .unwrap_or_else(|| abort("the starter's packages need each other in a cycle"));
        order.push(left.remove(ready));
    }
    order
}

/// One `comb check --all -j 2 --json`: its wall time and its verdicts;
/// aborts unless every package was checked (GOOD or BAD).
fn comb_check_all(bench: &Bench, repo: &Path) -> (Duration, String) {
    let out = run(Command::new(&bench.comb)
        .args(["check", "--all", "-j", "2", "--json"])
        .args(bench.place(repo)));
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let summary = lines.iter().find(|v| v["event"] == "summary");
    let count = |k: &str| summary.and_then(|s| s[k].as_u64()).unwrap_or(0);
    if summary.is_none() || count("fail") > 0 || count("skipped") > 0 {
        abort(&bench.redact(&format!(
            "comb check --all -j 2 did not check every package:\n{}\n{}",
            tail(&out.stdout, 5),
            tail(&out.stderr, 5)
        )));
    }
    let bad: Vec<&str> = lines
        .iter()
        .filter(|v| v["event"] == "package" && v["package"]["state"] == "BAD")
        .filter_map(|v| v["package"]["name"].as_str())
        .collect();
    let verdicts = if bad.is_empty() {
        format!("{} GOOD", count("good"))
    } else {
        format!("{} GOOD, BAD: {}", count("good"), bad.join(", "))
    };
    (out.wall, verdicts)
}

/// The traditional check of one package in a fresh directory `root`:
/// unpack the base-build tarball, `apt-get update` from the local
/// repository and install the build dependencies, build, compare with the
/// recorded `.deb`s. The tree is kept until the end of the run.
fn trad_cycle(bench: &Bench, p: &Checked, tarball: &Path, debs: &Path, root: &Path) -> Cycle {
    mkdir_all(root);
    sync();
    let start = Instant::now();
    let unpack = untar(tarball, root);
    let deps = install_deps(bench, &p.real, root, debs);
    let building = Instant::now();
    // Where comb builds: /build, the source in /build/src.
    let dir = root.join("build");
    let made = match &p.native {
        Some(recipe) => native_build(bench, p, recipe, root, &dir),
        None => {
            chroot_build(bench, &p.real, root, &dir);
            dir
        }
    };
    let build = building.elapsed();
    let comparing = Instant::now();
    let mut cycle = Cycle::default();
    for d in &p.recorded {
        match std::fs::read(made.join(&d.filename)) {
            Ok(bytes) => {
                let recorded = std::fs::read(sha256_blob(bench, &d.sha256))
                    .unwrap_or_else(|e| abort(&format!("reading {}: {e}", d.filename)));
                cycle.identical += usize::from(bytes == recorded);
            }
            Err(_) => cycle.missing += 1,
        }
    }
    Cycle {
        total: start.elapsed(),
        unpack,
        deps,
        build,
        compare: comparing.elapsed(),
        ..cycle
    }
}

/// A native recipe built in the chroot `root` as comb builds it (its
/// source in `dir/src`, its script run there by `sh` as uid 1000 with
/// `DESTDIR` and comb's `SOURCE_DATE_EPOCH`), then packed by this peer:
/// each `[[output]]`'s files (chosen by the recipe's globs) with a
/// minimal control file, by `dpkg-deb --build`. Returns where the
/// `.deb`s are.
fn native_build(bench: &Bench, p: &Checked, recipe: &Recipe, root: &Path, dir: &Path) -> PathBuf {
    let Source::Path { dir: source, .. } = &recipe.source else {
        abort(&format!(
            "{}: only `path` sources are built the traditional way here",
            recipe.name
        ));
    };
    let src = dir.join("src");
    mkdir_all(&src);
    mkdir_all(&dir.join("dest"));
    command_ok(Command::new("cp").arg("-a").arg(source.join(".")).arg(&src));
    command_ok(Command::new("chown").args(["-R", "1000:1000"]).arg(dir));
    let script = format!(
        "set -e\nexport DESTDIR=/build/dest SOURCE_DATE_EPOCH={}\ncd /build/src\n{}",
        NATIVE_SOURCE_DATE_EPOCH,
        recipe.build.script.as_deref().unwrap_or_default()
    );
    let out = in_chroot(root, true, None, &script, p.real.parallel);
    if !out.ok {
        abort(&bench.redact(&format!(
            "the build script of {} in the chroot {} failed:\n{}\n{}",
            recipe.name,
            root.display(),
            tail(&out.stdout, 10),
            tail(&out.stderr, 10)
        )));
    }
    let dest = dir.join("dest");
    let files = files_under(&dest);
    for output in &recipe.outputs {
        let stage = dir.join("pkg").join(&output.name);
        mkdir_all(&stage.join("DEBIAN"));
        for file in files.iter().filter(|f| output.claims(&f.to_string_lossy())) {
            copy_entry(&dest.join(file), &stage.join(file));
        }
        write(
            &stage.join("DEBIAN/control"),
            control_file(p, recipe, output).as_bytes(),
        );
    }
    // SOURCE_DATE_EPOCH: dpkg-deb clamps the files' times to it.
    let pack = format!(
        "set -e\nexport SOURCE_DATE_EPOCH={NATIVE_SOURCE_DATE_EPOCH}\nmkdir -p /build/out\n\
         for p in /build/pkg/*; do dpkg-deb --root-owner-group --build \"$p\" /build/out; done"
    );
    let out = in_chroot(root, false, None, &pack, p.real.parallel);
    if !out.ok {
        abort(&format!(
            "dpkg-deb --build of {} failed:\n{}",
            recipe.name,
            tail(&out.stderr, 10)
        ));
    }
    dir.join("out")
}

/// The few fields `dpkg-deb --build` wants, and the relations.
fn control_file(p: &Checked, recipe: &Recipe, output: &Output) -> String {
    let architecture = match output.architecture {
        Architecture::All => "all".to_string(),
        // The build's own, as comb recorded it.
        Architecture::Any => p
            .recorded
            .iter()
            .find(|d| d.name == output.name)
            .map(|d| d.architecture.clone())
            .unwrap_or_else(|| abort(&format!("comb recorded no {} .deb", output.name))),
    };
    let mut text = format!(
        "Package: {}\nVersion: {}\nArchitecture: {architecture}\nMaintainer: {}\n",
        output.name,
        recipe.version.as_deref().unwrap_or("0"),
        recipe
            .package
            .maintainer
            .as_deref()
            .unwrap_or("nobody <nobody@localhost>")
    );
    for (field, relations) in output.relation_fields() {
        if !relations.is_empty() {
            let list: Vec<&str> = relations.iter().map(|d| d.relation.text.as_str()).collect();
            text.push_str(&format!("{field}: {}\n", list.join(", ")));
        }
    }
    if let Some(section) = &output.section {
        text.push_str(&format!("Section: {section}\n"));
    }
    text.push_str(&format!(
        "Description: {}\n",
        output.summary(recipe).unwrap_or(&output.name)
    ));
    text
}

/// Every entry under `dir` that is not a directory, relative, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for entry in read_dir(&dir.join(&rel)) {
            let path = rel.join(entry.file_name());
            match entry.file_type() {
                Ok(t) if t.is_dir() => todo.push(path),
                _ => found.push(path),
            }
        }
    }
    found.sort();
    found
}

/// Copies a file or a symbolic link (as a link), making its parents.
fn copy_entry(from: &Path, to: &Path) {
    if let Some(parent) = to.parent() {
        mkdir_all(parent);
    }
    let done = match std::fs::read_link(from) {
        Ok(target) => std::os::unix::fs::symlink(target, to),
        Err(_) => std::fs::copy(from, to).map(|_| ()),
    };
    done.unwrap_or_else(|e| abort(&format!("copying {}: {e}", from.display())));
}

// ------------------------------------------------------------ plumbing

fn median_f64(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 0 => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        n => sorted[n / 2],
    }
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn list_seconds(times: &[Duration]) -> String {
    times
        .iter()
        .map(|t| format!("{:.2}", t.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sleeps until [`INODE_REUSE_DELAY`] after `removed`.
fn wait_after(removed: Option<Instant>) {
    if let Some(wait) = removed.and_then(|at| INODE_REUSE_DELAY.checked_sub(at.elapsed())) {
        std::thread::sleep(wait);
    }
}

fn minutes(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 7200.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

/// `1,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
