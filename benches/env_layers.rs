//! Environments as layers: what a cached environment costs per build, what
//! building one from scratch costs, and what a second package environment
//! on top of a cached base-build costs, each next to its peer.
//!
//! 1. **Instantiating a cached base-build environment** for a command that
//!    runs `true`: `comb env run -- true`, every node a hit, against
//!    unpacking the same environment from a tarball, which is what sbuild,
//!    mock and hasher do for every build (target: comb under 20 ms and at
//!    least 100x faster). Two more lines show where comb's time goes:
//!    `comb sandbox run --as builder --layer L1 --layer L2 ... -- true` with
//!    the layer directories that `comb env build` prints (the overlay and
//!    the sandbox alone), and `comb env build` with every node a hit (the
//!    lookups alone, no sandbox). The tarball is made once from the real
//!    environment (`comb env run --as root -- tar -C / --one-file-system
//!    -cf - .`), checked against a count of the environment's entries made
//!    inside it, and kept until the environment changes. Each extraction
//!    goes to a fresh directory on the disk that holds the store (a sync
//!    first, untimed); a second line unpacks to a tmpfs instead, the
//!    unpacking builder's best case.
//! 2. **Building base-build from scratch** with every `.deb` already
//!    fetched: `comb env build` in a fresh store, against `mmdebstrap
//!    --variant=buildd` of the same suite from its own cache of `.deb`s
//!    (target: comb no slower). The fresh store is seeded with hard links
//!    (`cp -al`) to the main store's `blobs/` (the `.deb`s) and its
//!    `trees/index-*` snapshot trees, plus the index node's row of the
//!    store's SQLite index, copied with the `sqlite3` command: without that
//!    row, `comb` takes the snapshot for missing and fetches it again from
//!    the mirror (`engine/src/snapshot.rs`, `load`). Nothing else is seeded,
//!    so both resolutions, base-install and base-build are built. mmdebstrap
//!    fills its cache in one ordinary run (with the `sync-out` hooks its
//!    manual documents for a cache without a proxy, plus the APT lists);
//!    timed runs skip `apt-get update` and bring the lists and the `.deb`s
//!    in with `sync-in` setup hooks. It runs in `--mode=unshare` (set
//!    `COMB_BENCH_MMDEBSTRAP_MODE=root` for the other), which like comb runs
//!    the maintainer scripts as root in a user namespace. Both timed
//!    commands run under `unshare -n`, without a network, so neither can
//!    download anything unseen. Each run writes to a fresh directory. Before
//!    each timed run the file system is synced, untimed; comb's time
//!    includes its own `syncfs` before it publishes a layer, mmdebstrap's
//!    does not (the `sync` after it is printed beside it).
//! 3. **A second pkg-env that adds one package** to a cached base-build:
//!    `comb env build --with PKG --json` in a fresh store seeded as in 2
//!    with base-install and base-build already built (their trees and rows
//!    too), the `pkg-env` node's `duration_ms` against the time `dpkg
//!    --install` of exactly the `.deb`s that node adds takes in the same
//!    environment as R: `comb sandbox run --as root` on the same layers,
//!    with the `.deb`s bound read-only at `/debs` (`comb env run` has no
//!    way in for files), timed inside the sandbox around `dpkg` alone. The
//!    packages' `.deb`s are fetched once into a seed store under the bench
//!    directory, so timed runs download nothing (they run under
//!    `unshare -n` too). The pkg-env's resolution, a node of its own, is
//!    printed beside it.
//! 4. **An ordinary user against root.** A user with a subordinate range
//!    (`comb-bench-user`, made once with `useradd`) runs comb with a store
//!    of its own, whose layers are owned by its subordinate ids; comb then
//!    works in a user namespace of the user's (`newuidmap`), where root's
//!    works on the host. Both run from the same binary, started directly
//!    (no `su`). (a) Starting the cached base-build environment, `comb env
//!    run -- true`, every node a hit: root on the main store, the user on
//!    its store (its environment built once, untimed), alternating, as in
//!    part 1 (target: the user within 1.2x of root). (b) The whole first
//!    build of `examples/starter` (`comb build --all`, pinned to this
//!    benchmark's snapshot) in a fresh store seeded with the main store's
//!    downloads (hard links; the starter built once in the main store
//!    first, so they are all there) and its snapshot, as in 2: as root, and
//!    as the user (target: within 1.2x of root).
//!
//! Parameters (environment variables):
//!
//! - `COMB_BENCH_RUNS` (default 50): measured runs of the fast variants
//!   of 1, round-robin in a shuffled order after 3 warm-up runs each;
//! - `COMB_BENCH_TAR_RUNS` (default 5): tarball extractions;
//! - `COMB_BENCH_BUILD_RUNS` (default 3): from-scratch builds of each tool;
//! - `COMB_BENCH_PKG_RUNS` (default 2): rounds over the packages of 3;
//! - `COMB_BENCH_STARTER_RUNS` (default 1): first builds of the starter
//!   by each of root and the user in 4;
//! - `COMB_BENCH_PACKAGES` (default `hello,cowsay,figlet,sl,pv`);
//! - `COMB_BENCH_PARTS` (default `instantiate,scratch,pkg-env,rootless`);
//! - `COMB_BENCH_REPO` (default `/tmp/realrepo` if it has a `comb.toml`,
//!   else a repository with an empty one under the bench directory);
//! - `COMB_BENCH_STORE` (default `/var/cache/comb-test-store` if it
//!   exists, else a store under the bench directory);
//! - `COMB_BENCH_DIR` (default `/var/tmp/comb-bench-env`): all scratch
//!   data, reused by later runs;
//! - `COMB_BENCH_MMDEBSTRAP_MODE` (default `unshare`).
//!
//! The repository's `comb.lock` is used as it is: `comb update` runs only
//! if there is none (moving the pin would make every cached layer stale).
//! The benchmark skips (exit 0, with the reason) when not run as root,
//! when the environment cannot be built or the lock written (the mirror is
//! unreachable), and skips a part whose tools (`mmdebstrap`, `sqlite3`) are
//! missing or whose first, network-using run fails. Missing a target is
//! reported as MISSED; the exit code stays 0. It aborts (exit 1) only when
//! a timed command fails. Nothing printed names the mirror: its address is
//! replaced by `<mirror>` in any output passed on.
//!
//! Outputs of timed runs are removed only when the run ends, and a run
//! starts at least a minute after the last removal: on ext4 without a
//! journal (this machine's root) a freed inode is not reused for a minute,
//! and until then creating files right after removing thousands is up to
//! ten times slower (`tar -x` of the tarball: 9 s instead of 0.7 s), which
//! would measure the last removal rather than the command.
//!
//! Run it with `cargo bench --bench env_layers`, as root. The defaults take
//! about 5 minutes, plus about a minute of downloads the first time. The
//! outputs of a run need about 6 GB of disk until it ends.

mod common;
use common::*;
use serde_json::Value;
use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_DIR: &str = "/var/tmp/comb-bench-env";
const DEFAULT_REPO: &str = "/tmp/realrepo";
const DEFAULT_STORE: &str = "/var/cache/comb-test-store";
const DEFAULT_PACKAGES: &str = "hello,cowsay,figlet,sl,pv";
const ALL_PARTS: [&str; 4] = ["instantiate", "scratch", "pkg-env", "rootless"];
/// Runs of each fast variant of part 1 before measuring.
const WARMUP_RUNS: usize = 3;
/// Part 1: `comb env run -- true` must take less than this...
const INSTANTIATE_LIMIT_MS: f64 = 20.0;
/// ...and be at least this many times faster than unpacking a tarball.
const INSTANTIATE_MIN_SPEEDUP: f64 = 100.0;
/// Part 2: comb's time over mmdebstrap's.
const SCRATCH_MAX_RATIO: f64 = 1.0;
/// Part 4: an ordinary user's time over root's.
const ROOTLESS_MAX_RATIO: f64 = 1.2;
/// Part 4's ordinary user and its subordinate range (made once, kept).
const BENCH_USER: &str = "comb-bench-user";
const BENCH_USER_RANGE: &str = "800000:65536";
/// What a complete bookworm base-build tarball weighs, roughly (bytes).
const TARBALL_EXPECTED: (u64, u64) = (300_000_000, 700_000_000);
/// Scratch directories of the benchmark, removed at the end of a run (and
/// at the start of the next, if a run was interrupted).
const SCRATCH_NAMES: [&str; 6] = [
    "unpack",
    "scratch",
    "pkg-stores",
    "mmdebstrap-warm",
    "pkg-seed.partial",
    "rootless-first",
];
/// Mount points inside a sandbox whose contents are not the environment's;
/// `tar --one-file-system` keeps each as an empty directory.
const SANDBOX_MOUNTS: [&str; 3] = ["/proc", "/dev", "/tmp"];

fn main() {
    if !nix::unistd::geteuid().is_root() {
        skip("needs root (comb attaches the layers as idmapped mounts and builds layers as R)");
    }
    let parts = env_string("COMB_BENCH_PARTS", &ALL_PARTS.join(","));
    let parts: Vec<&str> = parts.split(',').map(str::trim).collect();
    if let Some(bad) = parts.iter().find(|p| !ALL_PARTS.contains(p)) {
        abort(&format!(
            "COMB_BENCH_PARTS names {bad:?}; the parts are {}",
            ALL_PARTS.join(", ")
        ));
    }
    let bench = Bench::open();
    let env = bench.environment();
    println!(
        "environment: {} {} base-build of {}, {} layers",
        bench.lock.suite,
        bench.lock.architecture,
        bench.repo.display(),
        env.layers.len()
    );
    if parts.contains(&"instantiate") {
        println!();
        instantiate(&bench, &env);
    }
    if parts.contains(&"scratch") {
        println!();
        scratch(&bench, &env);
    }
    if parts.contains(&"pkg-env") {
        println!();
        pkg_env(&bench, &env);
    }
    if parts.contains(&"rootless") {
        println!();
        rootless(&bench);
    }
    bench.clean_up();
}

// ------------------------------------------------------------------ setup

/// Where everything is, and the pinned snapshot.
struct Bench {
    comb: PathBuf,
    dir: PathBuf,
    repo: PathBuf,
    store: PathBuf,
    lock: Lock,
    /// Scratch outputs to remove at the end.
    trash: std::cell::RefCell<Vec<PathBuf>>,
}

/// The `[snapshot]` fields of `comb.lock` this benchmark needs.
struct Lock {
    uri: String,
    suite: String,
    components: Vec<String>,
    architecture: String,
}

/// The main store's cached base-build environment.
struct Env {
    /// Layer directories, bottom first, as `comb env build` prints them.
    layers: Vec<PathBuf>,
    /// Store trees holding base-install's and base-build's layers.
    base_install_tree: String,
    base_build_tree: String,
}

impl Bench {
    fn open() -> Bench {
        // Cargo builds the package's binaries (release profile for a
        // benchmark) before it runs one, and says where it put them.
        let comb = PathBuf::from(env!("CARGO_BIN_EXE_comb"));
        let dir = env_path("COMB_BENCH_DIR", DEFAULT_DIR);
        mkdir_all(&dir);
        let repo = match std::env::var_os("COMB_BENCH_REPO") {
            Some(p) => PathBuf::from(p),
            None if Path::new(DEFAULT_REPO).join("comb.toml").is_file() => {
                PathBuf::from(DEFAULT_REPO)
            }
            None => {
                let repo = dir.join("repo");
                mkdir_all(&repo);
                if !repo.join("comb.toml").exists() {
                    write(&repo.join("comb.toml"), b"");
                }
                repo
            }
        };
        let store = match std::env::var_os("COMB_BENCH_STORE") {
            Some(p) => PathBuf::from(p),
            None if Path::new(DEFAULT_STORE).is_dir() => PathBuf::from(DEFAULT_STORE),
            None => dir.join("store"),
        };
        let lock_path = repo.join("comb.lock");
        if !lock_path.exists() {
            eprintln!(
                "env_layers: no comb.lock in {}: comb update",
                repo.display()
            );
            let out = run(Command::new(&comb).arg("update").args(place(&repo, &store)));
            if !out.ok {
                // Its messages name the mirror, which nothing printed here
                // may: they go to a file.
                let log = dir.join("comb-update.log");
                write(&log, out.stderr.as_bytes());
                skip(&format!(
                    "`comb update` failed (is the mirror reachable?); its messages are in {}",
                    log.display()
                ));
            }
        }
        let text = std::fs::read_to_string(&lock_path)
            .unwrap_or_else(|e| abort(&format!("reading {}: {e}", lock_path.display())));
        let lock = Lock::parse(&text).unwrap_or_else(|| {
            abort(&format!(
                "{} has no [snapshot] uri, suite, components and architecture",
                lock_path.display()
            ))
        });
        let bench = Bench {
            comb,
            dir,
            repo,
            store,
            lock,
            trash: Default::default(),
        };
        // Leftovers of an interrupted run.
        let _ = run(Command::new("umount").arg(bench.dir.join("unpack-tmpfs")));
        for name in SCRATCH_NAMES {
            if bench.dir.join(name).exists() {
                bench.discard(bench.dir.join(name));
            }
        }
        bench.clean_up();
        bench.settle();
        bench
    }

    /// An empty directory `name` for throwaway outputs, removed at the
    /// end of the run.
    fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        remove_all(&path);
        mkdir_all(&path);
        self.discard(path.clone());
        path
    }

    /// Removes `path` at the end of the run.
    fn discard(&self, path: PathBuf) {
        self.trash.borrow_mut().push(path);
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

    /// Waits until the inodes this benchmark last freed can be reused
    /// (see [`INODE_REUSE_DELAY`]).
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
                "env_layers: waiting {:.0} s: inodes freed by the last removal of scratch data are not reused before then",
                wait.as_secs_f64()
            );
            std::thread::sleep(wait);
        }
    }

    /// The base-build environment of the main store, built if needed.
    fn environment(&self) -> Env {
        let out = run(Command::new(&self.comb)
            .args(["env", "build"])
            .args(place(&self.repo, &self.store)));
        if !out.ok {
            skip(&self.redact(&format!(
                "`comb env build` failed in {} (is the mirror reachable?):\n{}",
                self.store.display(),
                tail(&out.stderr, 10)
            )));
        }
        let layers: Vec<PathBuf> = out.stdout.lines().map(PathBuf::from).collect();
        let tree_of = |stage: &str| {
            layers
                .iter()
                .filter_map(|l| l.parent()?.file_name()?.to_str())
                .find(|t| t.starts_with(&format!("{stage}-")))
                .map(str::to_string)
                .unwrap_or_else(|| {
                    abort(&format!(
                        "`comb env build` printed no {stage} layer:\n{}",
                        out.stdout
                    ))
                })
        };
        Env {
            base_install_tree: tree_of("base-install"),
            base_build_tree: tree_of("base-build"),
            layers,
        }
    }

    /// `text` with the mirror's address replaced: no output of this
    /// benchmark names a registry.
    fn redact(&self, text: &str) -> String {
        redact_mirror(text, &self.lock.uri)
    }
}

impl Lock {
    /// The first `uri`, `suite`, `components` and `architecture` of the
    /// `[snapshot]` table (the lock is TOML that `comb update` writes).
    fn parse(text: &str) -> Option<Lock> {
        let mut in_snapshot = false;
        let (mut uri, mut suite, mut components, mut architecture) = (None, None, None, None);
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_snapshot = line == "[snapshot]";
                continue;
            }
            if !in_snapshot {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            let strings: Vec<String> = value
                .split('"')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            match key.trim() {
                "uri" => uri = strings.into_iter().next(),
                "suite" => suite = strings.into_iter().next(),
                "architecture" => architecture = strings.into_iter().next(),
                "components" => components = Some(strings),
                _ => {}
            }
        }
        Some(Lock {
            uri: uri?,
            suite: suite?,
            components: components.filter(|c| !c.is_empty())?,
            architecture: architecture?,
        })
    }
}

// ------------------------------------------------ part 1: instantiation

fn instantiate(bench: &Bench, env: &Env) {
    let runs = env_count("COMB_BENCH_RUNS", 50);
    let tar_runs = env_count("COMB_BENCH_TAR_RUNS", 5);
    let (tarball, entries) = tarball(bench, env);
    let tar_bytes = std::fs::metadata(&tarball).map_or(0, |m| m.len());

    let mut layer_args = vec![
        "sandbox".to_string(),
        "run".into(),
        "--as".into(),
        "builder".into(),
    ];
    for layer in &env.layers {
        layer_args.push("--layer".into());
        layer_args.push(layer.display().to_string());
    }
    layer_args.extend(["--".into(), "true".into()]);
    let place = place(&bench.repo, &bench.store);
    let mut env_run: Vec<String> = vec!["env".into(), "run".into()];
    env_run.extend(place.iter().cloned());
    env_run.extend(["--".into(), "true".into()]);
    let mut env_build: Vec<String> = vec!["env".into(), "build".into()];
    env_build.extend(place.iter().cloned());
    let mut variants = [
        Timed::new("comb env run -- true (all hits)", &bench.comb, env_run),
        Timed::new(
            &format!("comb sandbox run -- true ({} layers)", env.layers.len()),
            &bench.comb,
            layer_args,
        ),
        Timed::new(
            "comb env build (all hits, no sandbox)",
            &bench.comb,
            env_build,
        ),
    ];
    for variant in &variants {
        for _ in 0..WARMUP_RUNS {
            variant.run_once(bench);
        }
    }
    // Round-robin in a new order every round, so that drift in the
    // machine's load and the state one run leaves for the next affect
    // every variant alike.
    let mut order: Vec<usize> = (0..variants.len()).collect();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..runs {
        shuffle(&mut order, &mut seed);
        for &i in &order {
            let elapsed = variants[i].run_once(bench);
            variants[i].times.push(elapsed);
        }
    }

    // The tarball is read once so that every extraction finds it in the
    // page cache, as a builder's cached tarball would be.
    let _ = run_to(Command::new("cat").arg(&tarball), Stdio::null());
    // On disk, next to the store: each run into a directory of its own,
    // all removed at the very end (see `Bench::discard`).
    let on_disk = bench.scratch("unpack");
    let disk_times: Vec<Duration> = (0..tar_runs)
        .map(|i| {
            let dir = on_disk.join(i.to_string());
            mkdir_all(&dir);
            sync();
            untar(&tarball, &dir)
        })
        .collect();
    // On a tmpfs, the best case of an unpacking builder (no disk at all).
    let tmpfs = bench.dir.join("unpack-tmpfs");
    mkdir_all(&tmpfs);
    let mounted = run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2g,mode=0700", "comb-bench-tmpfs"])
        .arg(&tmpfs));
    let tmpfs_times: Vec<Duration> = if mounted.ok {
        let times = (0..tar_runs)
            .map(|i| {
                let dir = tmpfs.join(i.to_string());
                mkdir_all(&dir);
                let time = untar(&tarball, &dir);
                remove_all(&dir);
                time
            })
            .collect();
        command_ok(Command::new("umount").arg(&tmpfs));
        times
    } else {
        eprintln!(
            "env_layers: no tmpfs at {}: {}",
            tmpfs.display(),
            mounted.stderr.trim()
        );
        Vec::new()
    };

    println!(
        "1. instantiating the cached base-build environment for a build: median of {runs} runs (p10 / p90) after {WARMUP_RUNS} warm-up runs; tar: median of {tar_runs} (min / max)"
    );
    for v in &variants {
        println!(
            "  {:<44} {:>10}   ({} / {})",
            v.label,
            millis(median(&v.times)),
            millis(quantile(&v.times, 0.1)),
            millis(quantile(&v.times, 0.9))
        );
    }
    println!(
        "  tarball: {}, {entries} entries, made once from the environment",
        megabytes(tar_bytes)
    );
    let mut tars = vec![("tar -xf tarball, to the store's disk", disk_times)];
    if !tmpfs_times.is_empty() {
        tars.push(("tar -xf tarball, to a tmpfs", tmpfs_times));
    }
    for (label, times) in &tars {
        println!(
            "  {:<44} {:>10}   ({} / {})",
            label,
            millis(median(times)),
            millis(quantile(times, 0.0)),
            millis(quantile(times, 1.0))
        );
    }
    let comb = median(&variants[0].times);
    let bare = median(&variants[1].times);
    let lookups = median(&variants[2].times);
    println!(
        "  {:<44} {:>10}   target < {INSTANTIATE_LIMIT_MS:.0} ms      {}",
        "comb env run -- true",
        millis(comb),
        verdict(ms(comb) < INSTANTIATE_LIMIT_MS)
    );
    for (label, times) in &tars {
        let to = label.trim_start_matches("tar -xf tarball, ");
        let speedup = median(times).as_secs_f64() / comb.as_secs_f64();
        println!(
            "  {:<44} {:>9.0}x   target >= {INSTANTIATE_MIN_SPEEDUP:.0}x      {}",
            format!("tar -x ({to}) / comb env run"),
            speedup,
            verdict(speedup >= INSTANTIATE_MIN_SPEEDUP)
        );
    }
    for (label, times) in &tars {
        let to = label.trim_start_matches("tar -xf tarball, ");
        println!(
            "  {:<44} {:>9.0}x   (the overlay and sandbox alone)",
            format!("tar -x ({to}) / comb sandbox run"),
            median(times).as_secs_f64() / bare.as_secs_f64()
        );
    }
    println!(
        "  {:<44} {:>10}   (comb env build alone: {})",
        "comb env run - comb sandbox run",
        millis(comb.saturating_sub(bare)),
        millis(lookups)
    );
}

/// Unpacks `tarball` into `dir` and returns how long it took.
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

/// The base-build environment as a tarball, made once per environment and
/// checked complete; returns it and its number of entries.
fn tarball(bench: &Bench, env: &Env) -> (PathBuf, usize) {
    let tarball = bench.dir.join(format!("env-{}.tar", env.base_build_tree));
    let count_file = bench
        .dir
        .join(format!("env-{}.entries", env.base_build_tree));
    if let (true, Some(entries)) = (
        tarball.is_file(),
        std::fs::read_to_string(&count_file)
            .ok()
            .and_then(|t| t.trim().parse().ok()),
    ) {
        return (tarball, entries);
    }
    // Tarballs of environments that are no longer the current one.
    for entry in read_dir(&bench.dir) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("env-")
            && (name.ends_with(".tar") || name.ends_with(".entries") || name.ends_with(".partial"))
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    eprintln!("env_layers: writing {} (once)", tarball.display());
    let partial = bench
        .dir
        .join(format!("env-{}.tar.partial", env.base_build_tree));
    let file = File::create(&partial)
        .unwrap_or_else(|e| abort(&format!("creating {}: {e}", partial.display())));
    let out = run_to(
        Command::new(&bench.comb)
            .args(["env", "run", "--as", "root"])
            .args(place(&bench.repo, &bench.store))
            .args(["--", "tar", "-C", "/", "--one-file-system", "-cf", "-", "."]),
        file.into(),
    );
    if !out.ok {
        abort(&format!(
            "making the tarball failed:\n{}",
            bench.redact(&tail(&out.stderr, 10))
        ));
    }
    // Complete: one entry for every path of the environment as seen
    // inside it, plus the sandbox's mount points, kept empty.
    let listed = run(Command::new("tar").arg("-tf").arg(&partial));
    if !listed.ok {
        abort(&format!(
            "tar -tf {} failed:\n{}",
            partial.display(),
            tail(&listed.stderr, 10)
        ));
    }
    let entries = listed.stdout.lines().count();
    let prune: Vec<String> = SANDBOX_MOUNTS
        .iter()
        .map(|m| format!("-path {m} -prune -o"))
        .collect();
    let counted = run(Command::new(&bench.comb)
        .args(["env", "run", "--as", "root"])
        .args(place(&bench.repo, &bench.store))
        .args(["--", "sh", "-c"])
        .arg(format!("find / {} -print | wc -l", prune.join(" "))));
    let inside: usize = counted.stdout.trim().parse().unwrap_or_else(|_| {
        abort(&format!(
            "counting the environment's entries failed:\n{}",
            tail(&counted.stderr, 10)
        ))
    });
    if entries != inside + SANDBOX_MOUNTS.len() {
        abort(&format!(
            "the tarball is incomplete: {entries} entries, the environment has {inside} plus {} mount points",
            SANDBOX_MOUNTS.len()
        ));
    }
    let bytes = std::fs::metadata(&partial).map_or(0, |m| m.len());
    if bytes < TARBALL_EXPECTED.0 || bytes > TARBALL_EXPECTED.1 {
        eprintln!(
            "env_layers: the tarball has {} ({entries} entries), outside the {} to {} expected of a bookworm base-build",
            megabytes(bytes),
            megabytes(TARBALL_EXPECTED.0),
            megabytes(TARBALL_EXPECTED.1)
        );
    }
    rename(&partial, &tarball);
    write(&count_file, format!("{entries}\n").as_bytes());
    (tarball, entries)
}

/// One command measured many times.
struct Timed {
    label: String,
    program: PathBuf,
    args: Vec<String>,
    times: Vec<Duration>,
}

impl Timed {
    fn new(label: &str, program: &Path, args: Vec<String>) -> Timed {
        Timed {
            label: label.to_string(),
            program: program.to_path_buf(),
            args,
            times: Vec::new(),
        }
    }

    /// Runs the command once; aborts the benchmark unless it exits 0.
    fn run_once(&self, bench: &Bench) -> Duration {
        let out = run(Command::new(&self.program).args(&self.args));
        if !out.ok {
            abort(&bench.redact(&format!(
                "{} failed: {} {}\n{}",
                self.label,
                self.program.display(),
                self.args.join(" "),
                tail(&out.stderr, 10)
            )));
        }
        out.wall
    }
}

// ------------------------------------------------ part 2: from scratch

fn scratch(bench: &Bench, env: &Env) {
    let runs = env_count("COMB_BENCH_BUILD_RUNS", 3);
    let mode = env_string("COMB_BENCH_MMDEBSTRAP_MODE", "unshare");
    println!(
        "2. building base-build from scratch, every .deb already fetched, no network (unshare -n): {}",
        plural(runs, "run")
    );
    for tool in ["mmdebstrap", "sqlite3"] {
        if !installed(tool) {
            println!("  skipped: `{tool}` is not installed (apt-get install {tool})");
            return;
        }
    }
    let Some((debs, lists)) = mmdebstrap_cache(bench, &mode) else {
        return;
    };
    let deb_count = read_dir(&debs)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".deb"))
        .count();
    let index_trees: Vec<String> = read_dir(&bench.store.join("trees"))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("index-"))
        .collect();
    let scratch = bench.scratch("scratch");
    let base_build_key = env.base_build_tree.trim_start_matches("base-build-");

    let mut comb_times = Vec::new();
    let mut mm_times = Vec::new();
    let mut nodes: Vec<Vec<(String, u64)>> = Vec::new();
    let mut same_keys = true;
    let mut comb_packages = 0;
    for i in 0..runs {
        // Alternate which tool goes first, so that neither always runs
        // right after the other.
        let mut line = format!("  run {}:", i + 1);
        for tool in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            if tool == 0 {
                let fresh = scratch.join(format!("comb-{i}"));
                seed_store(bench, &bench.store, &fresh, &index_trees, "kind = 'index'");
                sync();
                let out = run(Command::new("unshare")
                    .arg("-n")
                    .arg(&bench.comb)
                    .args(["env", "build", "--json"])
                    .args(place(&bench.repo, &fresh)));
                if !out.ok {
                    abort(&bench.redact(&format!(
                        "comb env build in a fresh store failed:\n{}\n{}",
                        tail(&out.stdout, 10),
                        tail(&out.stderr, 10)
                    )));
                }
                let events = events(&out.stdout);
                let built: Vec<(String, u64)> = events
                    .iter()
                    .filter(|e| e.status == "built")
                    .map(|e| (e.label(), e.duration_ms))
                    .collect();
                same_keys &= events
                    .iter()
                    .any(|e| e.stage == "base-build" && e.key == base_build_key);
                comb_packages = resolved_count(&fresh, &events, "base-install")
                    + resolved_count(&fresh, &events, "base-build");
                let parts: Vec<String> = built
                    .iter()
                    .map(|(n, d)| format!("{n} {:.1}", *d as f64 / 1000.0))
                    .collect();
                line.push_str(&format!(
                    " comb {} ({})",
                    seconds(out.wall),
                    parts.join(" + ")
                ));
                comb_times.push(out.wall);
                nodes.push(built);
            } else {
                let target = scratch.join(format!("mmdebstrap-{i}"));
                sync();
                let log = bench.dir.join("mmdebstrap-last.log");
                let out = run(Command::new("unshare")
                    .arg("-n")
                    .arg("mmdebstrap")
                    .args(mmdebstrap_args(bench, &mode))
                    .args(["--skip=update", "--skip=essential/unlink"])
                    .arg(r#"--setup-hook=mkdir -p "$1"/var/cache/apt/archives/ "$1"/var/lib/apt/lists/"#)
                    .arg(format!("--setup-hook=sync-in {} /var/lib/apt/lists/", lists.display()))
                    .arg(format!("--setup-hook=sync-in {} /var/cache/apt/archives/", debs.display()))
                    .arg(&bench.lock.suite)
                    .arg(&target)
                    .arg(&bench.lock.uri));
                write(&log, bench.redact(&out.stderr).as_bytes());
                if !out.ok {
                    abort(&bench.redact(&format!(
                        "mmdebstrap from its cache failed (log: {}):\n{}",
                        log.display(),
                        tail(&out.stderr, 10)
                    )));
                }
                let synced = timed_sync();
                line.push_str(&format!(
                    " mmdebstrap {} (then sync {})",
                    seconds(out.wall),
                    seconds(synced)
                ));
                mm_times.push(out.wall);
            }
            line.push(',');
        }
        line.pop();
        println!("{line}");
    }
    let comb = median(&comb_times);
    let mm = median(&mm_times);
    println!(
        "  {:<44} {:>9}   ({} packages; runs: {})",
        "comb env build (fresh store)",
        seconds(comb),
        comb_packages,
        list_seconds(&comb_times)
    );
    println!(
        "  {:<44} {:>9}   ({deb_count} .debs; runs: {})",
        format!("mmdebstrap --mode={mode} --variant=buildd"),
        seconds(mm),
        list_seconds(&mm_times)
    );
    let ratio = comb.as_secs_f64() / mm.as_secs_f64();
    println!(
        "  {:<44} {:>8.2}x   target <= {SCRATCH_MAX_RATIO:.2}x    {}",
        "comb / mmdebstrap",
        ratio,
        verdict(ratio <= SCRATCH_MAX_RATIO)
    );
    if let Some(first) = nodes.first() {
        let medians: Vec<String> = first
            .iter()
            .enumerate()
            .map(|(k, (name, _))| {
                let times: Vec<Duration> = nodes
                    .iter()
                    .filter_map(|run| run.get(k))
                    .map(|(_, d)| Duration::from_millis(*d))
                    .collect();
                format!("{name} {}", seconds(median(&times)))
            })
            .collect();
        println!("  comb's nodes, median: {}", medians.join(", "));
    }
    println!(
        "  same base-build key as the cached environment: {}",
        if same_keys { "yes" } else { "NO" }
    );
}

/// mmdebstrap's cache of `.deb`s and APT lists, filled by one ordinary
/// run the first time; `None` (with the reason printed) if that fails.
fn mmdebstrap_cache(bench: &Bench, mode: &str) -> Option<(PathBuf, PathBuf)> {
    let cache = bench.dir.join(format!(
        "mmdebstrap-{}-{}",
        bench.lock.suite, bench.lock.architecture
    ));
    let (debs, lists) = (cache.join("debs"), cache.join("lists"));
    if cache.join("complete").is_file() {
        return Some((debs, lists));
    }
    eprintln!(
        "env_layers: filling mmdebstrap's cache {} (once, from the mirror)",
        cache.display()
    );
    remove_all(&cache);
    mkdir_all(&debs);
    mkdir_all(&lists);
    let target = bench.dir.join("mmdebstrap-warm");
    let out = run(Command::new("mmdebstrap")
        .args(mmdebstrap_args(bench, mode))
        .arg("--skip=essential/unlink")
        .arg(r#"--setup-hook=mkdir -p "$1"/var/cache/apt/archives/"#)
        .arg(format!(
            "--customize-hook=sync-out /var/cache/apt/archives {}",
            debs.display()
        ))
        .arg(format!(
            "--customize-hook=sync-out /var/lib/apt/lists {}",
            lists.display()
        ))
        .arg(&bench.lock.suite)
        .arg(&target)
        .arg(&bench.lock.uri));
    bench.discard(target);
    if !out.ok {
        println!(
            "  skipped: filling mmdebstrap's cache failed (is the mirror reachable?):\n{}",
            bench.redact(&tail(&out.stderr, 10))
        );
        remove_all(&cache);
        return None;
    }
    write(&cache.join("complete"), b"");
    Some((debs, lists))
}

/// The arguments every mmdebstrap run shares.
fn mmdebstrap_args(bench: &Bench, mode: &str) -> Vec<String> {
    vec![
        format!("--mode={mode}"),
        "--variant=buildd".into(),
        format!("--architectures={}", bench.lock.architecture),
        format!("--components={}", bench.lock.components.join(",")),
    ]
}

// ------------------------------------------------ part 3: a second pkg-env

fn pkg_env(bench: &Bench, env: &Env) {
    let rounds = env_count("COMB_BENCH_PKG_RUNS", 2);
    let packages = env_string("COMB_BENCH_PACKAGES", DEFAULT_PACKAGES);
    let packages: Vec<&str> = packages
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if let Some(bad) = packages.iter().find(|p| {
        !p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
    }) {
        abort(&format!(
            "COMB_BENCH_PACKAGES: {bad:?} is not a Debian package name"
        ));
    }
    println!(
        "3. a second pkg-env that adds one package to a cached base-build (fresh store each run, no network): {}",
        plural(rounds, "round")
    );
    if !installed("sqlite3") {
        println!("  skipped: `sqlite3` is not installed (apt-get install sqlite3)");
        return;
    }
    let seed = pkg_seed(bench, env);
    // Each package's .debs fetched once into the seed store (its own
    // pkg-env built there), and staged as files for dpkg.
    let mut ready: Vec<(&str, PathBuf, usize)> = Vec::new();
    for pkg in &packages {
        let out = run(Command::new(&bench.comb)
            .args(["env", "build", "--json", "--with", pkg])
            .args(place(&bench.repo, &seed)));
        if !out.ok {
            println!(
                "  {pkg}: skipped, its environment could not be built (is the mirror reachable?):\n{}",
                bench.redact(&tail(&out.stderr, 6))
            );
            continue;
        }
        let events = events(&out.stdout);
        let staged = bench.dir.join(format!("debs-{pkg}"));
        remove_all(&staged);
        mkdir_all(&staged);
        let added = resolved(&seed, &events, &format!("pkg-env:{pkg}"));
        for r in &added {
            let blob = seed
                .join("blobs/sha256")
                .join(&r.sha256[..2])
                .join(&r.sha256[2..]);
            let name = format!(
                "{}_{}_{}.deb",
                r.name,
                r.version.replace(':', "%3a"),
                r.architecture
            );
            std::fs::hard_link(&blob, staged.join(name))
                .unwrap_or_else(|e| abort(&format!("linking {}: {e}", blob.display())));
        }
        if added.is_empty() {
            println!("  {pkg}: skipped, base-build already has it");
            continue;
        }
        ready.push((pkg, staged, added.len()));
    }
    if ready.is_empty() {
        println!("  skipped: no package to measure");
        return;
    }

    let trees = [env.base_install_tree.clone(), env.base_build_tree.clone()];
    let mut seeded_trees: Vec<String> = read_dir(&seed.join("trees"))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("index-"))
        .collect();
    seeded_trees.extend(trees.iter().cloned());
    let rows = format!(
        "kind = 'index' OR output IN ('{}', '{}') OR (kind = 'resolve' AND name IN ('base-install', 'base-build'))",
        trees[0], trees[1]
    );
    let mut layer_args: Vec<String> =
        vec!["sandbox".into(), "run".into(), "--as".into(), "root".into()];
    for layer in &env.layers {
        layer_args.push("--layer".into());
        layer_args.push(layer.display().to_string());
    }
    let stores = bench.scratch("pkg-stores");
    let mut run_number = 0;
    let mut node_times = Vec::new();
    let mut dpkg_times = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..rounds {
        for (pkg, staged, debs) in &ready {
            run_number += 1;
            let fresh = stores.join(run_number.to_string());
            seed_store(bench, &seed, &fresh, &seeded_trees, &rows);
            sync();
            let out = run(Command::new("unshare")
                .arg("-n")
                .arg(&bench.comb)
                .args(["env", "build", "--json", "--with", pkg])
                .args(place(&bench.repo, &fresh)));
            if !out.ok {
                abort(&bench.redact(&format!(
                    "comb env build --with {pkg} failed:\n{}\n{}",
                    tail(&out.stdout, 10),
                    tail(&out.stderr, 10)
                )));
            }
            let events = events(&out.stdout);
            let built = |stage: &str| {
                events
                    .iter()
                    .find(|e| e.stage == stage && e.status == "built")
                    .map(|e| Duration::from_millis(e.duration_ms))
                    .unwrap_or_else(|| {
                        abort(&format!(
                            "comb env build --with {pkg} built no {stage} node:\n{}",
                            out.stdout
                        ))
                    })
            };
            let (resolve, node) = (built("resolve"), built("pkg-env"));

            let dpkg = dpkg_install(bench, &layer_args, staged, pkg);
            let ratio = node.as_secs_f64() / dpkg.as_secs_f64();
            println!(
                "  {:<18} pkg-env {:>9}   dpkg --install {:>9}   {:>5.1}x   (its resolve {}, comb env build {})",
                format!("{pkg} ({})", plural(*debs, ".deb")),
                millis(node),
                millis(dpkg),
                ratio,
                millis(resolve),
                millis(out.wall)
            );
            node_times.push(node);
            dpkg_times.push(dpkg);
            ratios.push(ratio);
        }
    }
    println!(
        "  {:<44} {:>10}",
        "pkg-env node (duration_ms), median",
        millis(median(&node_times))
    );
    println!(
        "  {:<44} {:>10}",
        "dpkg --install of its .debs alone, median",
        millis(median(&dpkg_times))
    );
    ratios.sort_by(f64::total_cmp);
    println!(
        "  {:<44} {:>9.1}x   (no target; 1.0x is the installation alone)",
        "pkg-env / dpkg --install, median of runs",
        ratios[ratios.len() / 2]
    );
}

/// A store with base-install and base-build built (and the packages'
/// `.deb`s, once fetched), seeded from the main store; one per
/// base-build, the others removed.
fn pkg_seed(bench: &Bench, env: &Env) -> PathBuf {
    let seed = bench.dir.join(format!("pkg-seed-{}", env.base_build_tree));
    if seed.join("format").is_file() {
        return seed;
    }
    for entry in read_dir(&bench.dir) {
        if entry.file_name().to_string_lossy().starts_with("pkg-seed-") {
            remove_all(&entry.path());
        }
    }
    let mut trees: Vec<String> = read_dir(&bench.store.join("trees"))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("index-"))
        .collect();
    trees.push(env.base_install_tree.clone());
    trees.push(env.base_build_tree.clone());
    let rows = format!(
        "kind = 'index' OR output IN ('{}', '{}') OR (kind = 'resolve' AND name IN ('base-install', 'base-build'))",
        env.base_install_tree, env.base_build_tree
    );
    let partial = bench.dir.join("pkg-seed.partial");
    seed_store(bench, &bench.store, &partial, &trees, &rows);
    rename(&partial, &seed);
    seed
}

/// How long `dpkg --install` of the `.deb`s in `staged` takes as R in the
/// environment, timed inside the sandbox around dpkg alone.
fn dpkg_install(bench: &Bench, layer_args: &[String], staged: &Path, pkg: &str) -> Duration {
    let script = "a=$(date +%s%N); \
        dpkg --install /debs/*.deb > /tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log >&2; exit 1; }; \
        b=$(date +%s%N); echo \"dpkg-ns $((b - a))\"";
    let out = run(Command::new(&bench.comb)
        .args(layer_args)
        .arg("--bind")
        .arg(format!("{}:/debs", staged.display()))
        .args(["--env", "DEBIAN_FRONTEND=noninteractive"])
        .args(["--", "sh", "-c", script]));
    let ns = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("dpkg-ns "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    match (out.ok, ns) {
        (true, Some(ns)) => Duration::from_nanos(ns),
        _ => abort(&bench.redact(&format!(
            "dpkg --install of {pkg}'s .debs failed:\n{}\n{}",
            tail(&out.stdout, 10),
            tail(&out.stderr, 10)
        ))),
    }
}

// ------------------------------------------------ stores and comb's output

/// A fresh store at `dst`: hard links to `src`'s blobs and to its `trees`,
/// and the rows of `src`'s node index that `rows` (SQL) selects, in an
/// index that comb itself creates.
fn seed_store(bench: &Bench, src: &Path, dst: &Path, trees: &[String], rows: &str) {
    remove_all(dst);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dst)
        .unwrap_or_else(|e| abort(&format!("creating {}: {e}", dst.display())));
    command_ok(
        Command::new("cp")
            .arg("-al")
            .arg(src.join("blobs"))
            .arg(dst),
    );
    mkdir_all(&dst.join("trees"));
    for tree in trees {
        command_ok(
            Command::new("cp")
                .arg("-al")
                .arg(src.join("trees").join(tree))
                .arg(dst.join("trees")),
        );
    }
    // Any command that opens the store creates its layout and index.
    command_ok(
        Command::new(&bench.comb)
            .args(["env", "list"])
            .arg("--store")
            .arg(dst),
    );
    let sql = format!(
        "ATTACH '{}' AS src; INSERT INTO nodes SELECT * FROM src.nodes WHERE {rows};",
        src.join("index.sqlite").display()
    );
    command_ok(
        Command::new("sqlite3")
            .arg(dst.join("index.sqlite"))
            .arg(sql),
    );
}

/// One line of `comb env build --json`.
struct Event {
    stage: String,
    name: String,
    key: String,
    status: String,
    duration_ms: u64,
}

impl Event {
    /// `resolve base-build`, or `base-build` where the name is the stage's.
    fn label(&self) -> String {
        if self.name == self.stage {
            self.name.clone()
        } else {
            format!("{} {}", self.stage, self.name)
        }
    }
}

fn events(stdout: &str) -> Vec<Event> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| abort(&format!("comb printed a bad JSON line ({e}): {line}")));
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            Event {
                stage: text("stage"),
                name: text("name"),
                key: text("key"),
                status: text("status"),
                duration_ms: v["duration_ms"].as_u64().unwrap_or(0),
            }
        })
        .collect()
}

/// A package a layer adds, as its resolve node stored it.
struct Resolved {
    name: String,
    version: String,
    architecture: String,
    sha256: String,
}

/// What the resolve node named `set` among `events` resolved to, read
/// from its blob in `store` (its row gives the blob).
fn resolved(store: &Path, events: &[Event], set: &str) -> Vec<Resolved> {
    let Some(event) = events
        .iter()
        .find(|e| e.stage == "resolve" && e.name == set)
    else {
        abort(&format!("comb env build resolved no {set}"));
    };
    let output = command_ok(
        Command::new("sqlite3")
            .arg(store.join("index.sqlite"))
            .arg(format!(
                "SELECT output FROM nodes WHERE key = '{}'",
                event.key
            )),
    );
    // "blake3:HEX:SIZE"
    let mut fields = output.trim().split(':');
    let (Some(algorithm), Some(hash)) = (fields.next(), fields.next()) else {
        abort(&format!("resolve {set} has no blob output: {output:?}"));
    };
    if hash.len() < 3 {
        abort(&format!("resolve {set} has a bad blob output: {output:?}"));
    }
    let blob = store
        .join("blobs")
        .join(algorithm)
        .join(&hash[..2])
        .join(&hash[2..]);
    let text = std::fs::read_to_string(&blob)
        .unwrap_or_else(|e| abort(&format!("reading {}: {e}", blob.display())));
    let list: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| abort(&format!("{} is not JSON: {e}", blob.display())));
    list.as_array()
        .map(|items| {
            items
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
        })
        .unwrap_or_default()
}

fn resolved_count(store: &Path, events: &[Event], set: &str) -> usize {
    resolved(store, events, set).len()
}

// ------------------------------------------------------------ plumbing

fn timed_sync() -> Duration {
    let start = Instant::now();
    sync();
    start.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", ms(d))
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn list_seconds(times: &[Duration]) -> String {
    times
        .iter()
        .map(|t| format!("{:.1}", t.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn megabytes(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

// ------------------------------------------- part 4: an ordinary user

/// The benchmark's ordinary user (made once, with a subordinate range):
/// its uid and gid.
fn bench_user() -> (u32, u32) {
    let exists = run(Command::new("id").arg(BENCH_USER)).ok;
    if !exists {
        command_ok(Command::new("useradd").args(["--no-create-home", BENCH_USER]));
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let entry = format!("{BENCH_USER}:{BENCH_USER_RANGE}");
        if !text.lines().any(|l| l == entry) {
            let mut lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with(&format!("{BENCH_USER}:")))
                .collect();
            lines.push(&entry);
            write(Path::new(file), (lines.join("\n") + "\n").as_bytes());
        }
    }
    let id = |flag: &str| -> u32 {
        command_ok(Command::new("id").arg(flag).arg(BENCH_USER))
            .trim()
            .parse()
            .unwrap_or_else(|_| abort(&format!("id {flag} {BENCH_USER}")))
    };
    (id("-u"), id("-g"))
}

/// `comb ARGS` as the benchmark's user (`ids`), or as root.
fn comb_as(bench: &Bench, ids: Option<(u32, u32)>, home: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(&bench.comb);
    if let Some((uid, gid)) = ids {
        command
            .uid(uid)
            .gid(gid)
            .env("HOME", home)
            .env_remove("XDG_CACHE_HOME");
    }
    command
}

/// Gives the directories under `dir` (and the index files) to `ids`; the
/// hard-linked downloads stay root's, readable.
fn give_dirs(dir: &Path, (uid, gid): (u32, u32)) {
    let owner = format!("{uid}:{gid}");
    command_ok(Command::new("find").arg(dir).args([
        "(",
        "-type",
        "d",
        "-o",
        "-name",
        "index.sqlite*",
        ")",
        "-exec",
        "chown",
        &owner,
        "{}",
        "+",
    ]));
}

/// A fresh store at `dst` seeded as in part 2 (downloads and snapshot),
/// made by `ids` (or root).
fn seed_store_for(bench: &Bench, dst: &Path, ids: Option<(u32, u32)>, home: &Path) {
    let index_trees: Vec<String> = read_dir(&bench.store.join("trees"))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("index-"))
        .collect();
    remove_all(dst);
    let Some(ids) = ids else {
        seed_store(bench, &bench.store, dst, &index_trees, "kind = 'index'");
        return;
    };
    // Laid out by the user (a store of root's is refused), then filled.
    mkdir_all(dst);
    give_dirs(dst, ids);
    command_ok(
        comb_as(bench, Some(ids), home)
            .args(["env", "list", "--store"])
            .arg(dst),
    );
    command_ok(
        Command::new("cp")
            .arg("-al")
            .arg(bench.store.join("blobs"))
            .arg(dst),
    );
    for tree in &index_trees {
        command_ok(
            Command::new("cp")
                .arg("-al")
                .arg(bench.store.join("trees").join(tree))
                .arg(dst.join("trees")),
        );
    }
    let sql = format!(
        "ATTACH '{}' AS src; INSERT INTO nodes SELECT * FROM src.nodes WHERE kind = 'index';",
        bench.store.join("index.sqlite").display()
    );
    command_ok(
        Command::new("sqlite3")
            .arg(dst.join("index.sqlite"))
            .arg(sql),
    );
    give_dirs(dst, ids);
}

fn rootless(bench: &Bench) {
    let runs = env_count("COMB_BENCH_RUNS", 50);
    let starter_runs = env_count("COMB_BENCH_STARTER_RUNS", 1);
    println!("4. an ordinary user with a subordinate range against root, the same binary");
    if !installed("sqlite3") {
        println!("  skipped: `sqlite3` is not installed (apt-get install sqlite3)");
        return;
    }
    let ids = bench_user();
    // The user's home and store: under the bench directory, which it may
    // traverse.
    let home = bench.dir.join("rootless");
    mkdir_all(&home);
    for dir in [&bench.dir, &home] {
        command_ok(Command::new("chmod").arg("755").arg(dir));
    }
    command_ok(
        Command::new("chown")
            .arg(format!("{}:{}", ids.0, ids.1))
            .arg(&home),
    );
    let user_store = home.join("store");
    if !user_store.join("index.sqlite").exists() {
        seed_store_for(bench, &user_store, Some(ids), &home);
    }
    let env_run = |who: Option<(u32, u32)>| {
        let store = if who.is_some() {
            &user_store
        } else {
            &bench.store
        };
        let mut command = comb_as(bench, who, &home);
        command
            .args(["env", "run"])
            .args(place(&bench.repo, store))
            .args(["--", "true"]);
        command
    };
    // (a) The cached environment, built once by the user (untimed).
    let built = run(comb_as(bench, Some(ids), &home)
        .args(["env", "build"])
        .args(place(&bench.repo, &user_store)));
    if !built.ok {
        abort(&bench.redact(&format!(
            "comb env build as {BENCH_USER} failed:\n{}",
            tail(&built.stderr, 10)
        )));
    }
    let mut times = [Vec::new(), Vec::new()];
    for round in 0..WARMUP_RUNS + runs {
        for (i, who) in [(0, None), (1, Some(ids))] {
            let started = Instant::now();
            let out = run(&mut env_run(who));
            let took = started.elapsed();
            if !out.ok {
                abort(&bench.redact(&format!(
                    "comb env run -- true failed:\n{}",
                    tail(&out.stderr, 10)
                )));
            }
            if round >= WARMUP_RUNS {
                times[i].push(took);
            }
        }
    }
    let (root, user) = (median(&times[0]), median(&times[1]));
    let ratio = ms(user) / ms(root);
    println!("  (a) starting the cached base-build environment, `comb env run -- true`: median of {runs} runs each");
    println!(
        "  root                                     {:>10}",
        millis(root)
    );
    println!(
        "  {BENCH_USER}, in its user namespace     {:>10}",
        millis(user)
    );
    println!(
        "  user / root                              {ratio:>9.2}x   target <= {ROOTLESS_MAX_RATIO:.1}x   {}",
        verdict(ratio <= ROOTLESS_MAX_RATIO)
    );

    // (b) The starter's first build, pinned to this benchmark's snapshot.
    let starter = home.join("starter");
    remove_all(&starter);
    command_ok(
        Command::new("cp")
            .arg("-r")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/starter"))
            .arg(&starter),
    );
    std::fs::copy(bench.repo.join("comb.lock"), starter.join("comb.lock"))
        .unwrap_or_else(|e| abort(&format!("copying the lock: {e}")));
    command_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&starter));
    let warm = run(Command::new(&bench.comb)
        .args(["build", "--all"])
        .args(place(&starter, &bench.store)));
    if !warm.ok {
        abort(&bench.redact(&format!(
            "the starter's build in the main store (to have its downloads) failed:\n{}",
            tail(&warm.stderr, 10)
        )));
    }
    let first = bench.scratch("rootless-first");
    command_ok(Command::new("chmod").arg("755").arg(&first));
    let mut times = [Vec::new(), Vec::new()];
    for round in 0..starter_runs {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let who = (i == 1).then_some(ids);
            let store = first.join(format!("{}-{round}", if i == 1 { "user" } else { "root" }));
            seed_store_for(bench, &store, who, &home);
            bench.settle();
            sync();
            let started = Instant::now();
            let out = run(comb_as(bench, who, &home)
                .args(["build", "--all"])
                .args(place(&starter, &store)));
            let took = started.elapsed();
            if !out.ok {
                abort(&bench.redact(&format!(
                    "the starter's first build as {} failed:\n{}",
                    if i == 1 { BENCH_USER } else { "root" },
                    tail(&out.stderr, 10)
                )));
            }
            times[i].push(took);
        }
    }
    let (root, user) = (median(&times[0]), median(&times[1]));
    let ratio = user.as_secs_f64() / root.as_secs_f64();
    println!(
        "  (b) the whole first build of examples/starter (`comb build --all`, downloads seeded): {}",
        plural(starter_runs, "run")
    );
    println!(
        "  root                                     {:>10}   (runs: {})",
        seconds(root),
        list_seconds(&times[0])
    );
    println!(
        "  {BENCH_USER}, in its user namespace     {:>10}   (runs: {})",
        seconds(user),
        list_seconds(&times[1])
    );
    println!(
        "  user / root                              {ratio:>9.2}x   target <= {ROOTLESS_MAX_RATIO:.1}x   {}",
        verdict(ratio <= ROOTLESS_MAX_RATIO)
    );
}
