//! The corpus: `comb build --all` of `tests/corpus`, real bookworm source
//! packages chosen to cover what a distribution holds (see
//! `tests/corpus/README.md`), from a fresh store, `-j 2 --keep-going
//! --json`. It prints, per package, its state (the build node's status, or
//! the stage that failed), its build time (the `build` node's
//! `duration_ms`) and the time of its environment (its `resolve` and
//! `pkg-env` nodes, both named `pkg-env:NAME`; `hit` when they were hits:
//! an environment is shared by the packages with the same build
//! dependencies, and made for the first of them); then, overall, the packages
//! built of the total, the sum of the build times, the sum of the
//! environment times (with the `shared-env` layers of what environments
//! share) and their ratio (environment / build), the time of
//! the base environment shared by all (`base-install` and `base-build`),
//! the `.deb`s downloaded, and the run's wall time.
//!
//! A fresh store downloads every `.deb` and source file again (about 500
//! `.deb`s, 580 MB with the sources, for the corpus), so:
//!
//! - `COMB_BENCH_STORE=DIR` builds in that store as it is (say the one
//!   `tests/corpus/README.md` fills, `/var/cache/comb-corpus-store`):
//!   what it already holds is reported as hits, and for each hit the times
//!   recorded in the store when it was built are printed beside it (a run
//!   that changes nothing finds the builds by their shortcut and reports
//!   no environment node: the recorded environment is the pkg-env named in
//!   the build node's description, counted for the first package that
//!   uses it only, plus the newest `resolve` named `pkg-env:NAME`).
//! - `COMB_BENCH_DEBS_FROM=DIR` builds in a fresh store whose downloads
//!   (`blobs/sha256`: the `.deb`s and the source packages' files) are hard
//!   links to DIR's: everything is built again, nothing is downloaded (DIR
//!   must be on the same file system as the scratch directory).
//!
//! Other parameters (environment variables):
//!
//! - `COMB_BENCH_PACKAGES` (all): a comma-separated list of packages of
//!   the corpus to build (with what they need), for a shorter run;
//! - `COMB_BENCH_JOBS` (2): `comb build -j`;
//! - `COMB_BENCH_DIR` (`/var/tmp`): where the scratch directory (a copy of
//!   the corpus, and the fresh store) is made; it is removed at the end.
//!
//! It skips (exit 0, with the reason) when not run as root or when `comb
//! update` fails (the mirror is unreachable). A package that fails does
//! not stop the run: it is printed with the first lines of its failure
//! (`comb log PKG --store STORE` shows the rest while the store exists).
//! Nothing printed names the mirror.
//!
//! Run it with `cargo bench --bench corpus`, as root. From a fresh store it
//! takes about as long as the first build of the corpus (see the README).

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A `node` event of `comb build --json`.
struct Event {
    stage: String,
    name: String,
    key: String,
    status: String,
    duration_ms: u64,
    reason: String,
}

/// What the run did for one package.
#[derive(Default)]
struct Package {
    /// The build node's status, if it was reported.
    build_status: Option<String>,
    /// The build node's key (to find a hit's recorded time).
    build_key: Option<String>,
    build_ms: u64,
    env_ms: u64,
    /// Whether an environment node of it was a hit.
    env_hit: bool,
    /// Whether a node of it was skipped (it waited for a failed one).
    skipped: bool,
    /// The first failed node: its stage and reason.
    failure: Option<(String, String)>,
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        skip("needs root (comb attaches layers as idmapped mounts and builds them as R)");
    }
    let comb = PathBuf::from(env!("CARGO_BIN_EXE_comb"));
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let jobs = env_count("COMB_BENCH_JOBS", 2);
    let base = env_path("COMB_BENCH_DIR", "/var/tmp");
    mkdir_all(&base);
    let scratch = tempfile::Builder::new()
        .prefix("comb-bench-corpus-")
        .tempdir_in(&base)
        .unwrap_or_else(|e| abort(&format!("creating a directory in {}: {e}", base.display())));
    let repo = scratch.path().join("corpus");
    let recipes = copy_corpus(&corpus, &repo);

    let (store, what_store) = match std::env::var_os("COMB_BENCH_STORE") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let what = format!("reused: {}", dir.display());
            (dir, what)
        }
        None => {
            let store = scratch.path().join("store");
            let what = match std::env::var_os("COMB_BENCH_DEBS_FROM") {
                Some(from) => {
                    let from = PathBuf::from(from);
                    seed_downloads(&comb, &store, &from);
                    format!("fresh, its downloads linked from {}", from.display())
                }
                None => "fresh".to_string(),
            };
            (store, what)
        }
    };
    println!(
        "corpus: {} packages of {}, -j {jobs}, {} CPUs; store {what_store}",
        recipes.len(),
        corpus.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let (uri, update_wall) = update_or_skip(&comb, &repo, &store);

    // COMB_BENCH_PACKAGES: only these (with what they need).
    let selected: Vec<String> = std::env::var("COMB_BENCH_PACKAGES")
        .map(|list| {
            list.split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(unknown) = selected.iter().find(|p| !recipes.contains(p)) {
        abort(&format!(
            "COMB_BENCH_PACKAGES names {unknown:?}, not a package of the corpus"
        ));
    }
    if !selected.is_empty() {
        println!(
            "building only {} (with what they need)",
            selected.join(", ")
        );
    }
    let mut progress = Progress::new(selected.is_empty().then_some(recipes.len()));
    let started = Instant::now();
    let (ok, lines, stderr) = comb_json(
        Command::new(&comb)
            .args(["build", "--keep-going", "--json", "-j"])
            .arg(jobs.to_string())
            .args(if selected.is_empty() {
                vec!["--all".to_string()]
            } else {
                selected.clone()
            })
            .args(place(&repo, &store)),
        &mut |line| progress.see(line),
    );
    let wall = started.elapsed();
    let events: Vec<Event> = lines.iter().filter_map(|l| event(l)).collect();
    if events.is_empty() {
        abort(&redact_mirror(
            &format!("comb build printed no node:\n{}", tail(&stderr, 20)),
            &uri,
        ));
    }

    // Every package of the run: the ones asked for, and what they needed.
    let mut packages: BTreeMap<String, Package> = recipes
        .iter()
        .filter(|r| {
            selected.is_empty()
                || selected.contains(r)
                || events.iter().any(|e| e.stage == "build" && &e.name == *r)
        })
        .map(|r| (r.clone(), Package::default()))
        .collect();
    let (mut base_ms, mut shared_ms) = (0, 0);
    for e in &events {
        // Layers of what environments share, made for the first that
        // needed them: environment time of no one package.
        if e.stage == "pkg-env" && e.name == "shared-env" {
            if e.status != "hit" {
                shared_ms += e.duration_ms;
            }
            continue;
        }
        if e.name == "base-install" || e.name == "base-build" {
            if e.status != "hit" {
                base_ms += e.duration_ms;
            }
            continue;
        }
        let package = match (e.stage.as_str(), e.name.strip_prefix("pkg-env:")) {
            ("build", None) => packages.get_mut(&e.name),
            ("resolve" | "pkg-env", Some(name)) => packages.get_mut(name),
            _ => None,
        };
        let Some(p) = package else { continue };
        if e.status == "skipped" {
            p.skipped = true;
        }
        if e.status == "failed" && p.failure.is_none() {
            p.failure = Some((e.stage.clone(), e.reason.clone()));
        }
        if e.stage == "build" {
            p.build_status = Some(e.status.clone());
            p.build_key = Some(e.key.clone());
            if e.status != "hit" {
                p.build_ms += e.duration_ms;
            }
        } else {
            if e.status == "hit" {
                p.env_hit = true;
            } else {
                p.env_ms += e.duration_ms;
            }
        }
    }

    let recorded = Recorded::open(&store);
    let secs = |ms: u64| format!("{:.1}", ms as f64 / 1000.0);
    println!();
    println!(
        "{:<28} {:<22} {:>9} {:>9}   recorded (hits: build, environment)",
        "package", "state", "build s", "env s"
    );
    let (mut built, mut hits, mut failed, mut skipped) = (0, 0, 0, 0);
    let (mut build_sum, mut env_sum) = (0, 0);
    let (mut recorded_build, mut recorded_env) = (0, 0);
    let mut counted_envs = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for (name, p) in &packages {
        let state = match (&p.failure, p.build_status.as_deref()) {
            (Some((stage, _)), _) => format!("failed ({stage})"),
            (None, Some(status)) => status.to_string(),
            (None, None) if p.skipped => "skipped".to_string(),
            (None, None) => "not reported".to_string(),
        };
        if p.failure.is_some() {
            failed += 1;
        } else if state == "skipped" {
            skipped += 1;
        }
        match p.build_status.as_deref() {
            Some("built") if p.failure.is_none() => built += 1,
            Some("hit") => hits += 1,
            _ => {}
        }
        build_sum += p.build_ms;
        env_sum += p.env_ms;
        let mut note = String::new();
        if p.build_status.as_deref() == Some("hit") {
            let b = p
                .build_key
                .as_deref()
                .and_then(|k| recorded.by_key(k))
                .unwrap_or(0);
            // The pkg-env the build used (its key is in the build's
            // description), counted once however many packages share it,
            // and the newest resolve of this package's environment.
            let layer = p.build_key.as_deref().and_then(|k| recorded.env_of(k));
            let layer_ms = match &layer {
                Some(key) if counted_envs.insert(key.clone()) => recorded.by_key(key).unwrap_or(0),
                _ => 0,
            };
            let e = layer_ms
                + recorded
                    .last("resolve", &format!("pkg-env:{name}"))
                    .unwrap_or(0);
            recorded_build += b;
            recorded_env += e;
            note = format!("{} s, {} s", secs(b), secs(e));
        }
        // An environment made earlier (or in this run, for another package
        // with the same build dependencies) is a hit, not 0 s of work.
        let env = if p.env_ms == 0 && p.env_hit {
            "hit".to_string()
        } else {
            secs(p.env_ms)
        };
        println!(
            "{:<28} {:<22} {:>9} {:>9}   {note}",
            name,
            state,
            secs(p.build_ms),
            env
        );
        if let Some((stage, reason)) = &p.failure {
            // The reason's first line, then the end of the log it quotes.
            let reason = reason.trim();
            let first = reason.lines().next().unwrap_or_default();
            let rest = reason.strip_prefix(first).unwrap_or_default();
            failures.push(format!(
                "{name} ({stage}): {}",
                redact_mirror(&format!("{first}\n...\n{}", tail(rest.trim(), 4)), &uri)
                    .replace('\n', "\n    ")
            ));
        }
    }

    let total = packages.len();
    let ratio = |env: u64, build: u64| {
        if build == 0 {
            "-".to_string()
        } else {
            format!("{:.2}", env as f64 / build as f64)
        }
    };
    println!();
    if !failures.is_empty() {
        println!("failures:");
        for f in &failures {
            println!("  {f}");
        }
        println!();
    }
    println!("summary:");
    println!(
        "  packages built: {} of {total} ({built} built, {hits} hits, {failed} failed, {skipped} skipped)",
        built + hits
    );
    println!(
        "  build time (sum of build nodes run): {} s",
        secs(build_sum)
    );
    let env_sum = env_sum + shared_ms;
    println!(
        "  environment time (sum of resolve and pkg-env nodes run, shared layers too): {} s ({} s of shared layers)",
        secs(env_sum),
        secs(shared_ms)
    );
    println!("  environment / build: {}", ratio(env_sum, build_sum));
    println!(
        "  base environment (base-install and base-build, shared): {} s",
        secs(base_ms)
    );
    let fetched = events
        .iter()
        .filter(|e| e.stage == "fetch" && e.status == "built")
        .count();
    println!("  .debs downloaded: {fetched}");
    if hits > 0 {
        println!(
            "  the {hits} hits, as recorded when built: build {} s, environment {} s, environment / build {}",
            secs(recorded_build),
            secs(recorded_env),
            ratio(recorded_env, recorded_build)
        );
    }
    println!(
        "  wall time: {:.1} s ({:.1} min; comb update before it: {:.1} s); comb build {}",
        wall.as_secs_f64(),
        wall.as_secs_f64() / 60.0,
        update_wall.as_secs_f64(),
        if ok { "exited 0" } else { "exited non-zero" }
    );
}

/// Copies the corpus's `comb.toml` and recipes (not its `comb.lock`: the
/// copy is pinned by its own `comb update`) into `to`; returns the
/// recipes' directory names, sorted.
fn copy_corpus(from: &Path, to: &Path) -> Vec<String> {
    mkdir_all(to);
    let toml = std::fs::read(from.join("comb.toml"))
        .unwrap_or_else(|e| abort(&format!("reading {}/comb.toml: {e}", from.display())));
    write(&to.join("comb.toml"), &toml);
    let mut names = Vec::new();
    for entry in read_dir(from) {
        let recipe = entry.path().join("recipe.toml");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !recipe.is_file() {
            continue;
        }
        mkdir_all(&to.join(&name));
        let text = std::fs::read(&recipe)
            .unwrap_or_else(|e| abort(&format!("reading {}: {e}", recipe.display())));
        write(&to.join(&name).join("recipe.toml"), &text);
        names.push(name);
    }
    names.sort();
    if names.is_empty() {
        abort(&format!("no recipe in {}", from.display()));
    }
    names
}

/// Node durations recorded in a store's index, read-only.
struct Recorded {
    db: Option<rusqlite::Connection>,
}

impl Recorded {
    fn open(store: &Path) -> Recorded {
        let db = rusqlite::Connection::open_with_flags(
            store.join("index.sqlite"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok();
        Recorded { db }
    }

    fn by_key(&self, key: &str) -> Option<u64> {
        self.db
            .as_ref()?
            .query_row("SELECT duration_ms FROM nodes WHERE key = ?1", [key], |r| {
                r.get::<_, i64>(0)
            })
            .ok()
            .map(|ms| ms as u64)
    }

    /// The key of the pkg-env a build node was built in (`env=` of its
    /// description).
    fn env_of(&self, build_key: &str) -> Option<String> {
        let description: String = self
            .db
            .as_ref()?
            .query_row(
                "SELECT description FROM nodes WHERE key = ?1",
                [build_key],
                |r| r.get(0),
            )
            .ok()?;
        description
            .lines()
            .find_map(|l| l.strip_prefix("env="))
            .map(str::to_string)
    }

    /// The newest node of `kind` named `name`.
    fn last(&self, kind: &str, name: &str) -> Option<u64> {
        self.db
            .as_ref()?
            .query_row(
                "SELECT duration_ms FROM nodes WHERE kind = ?1 AND name = ?2 ORDER BY created_at DESC LIMIT 1",
                [kind, name],
                |r| r.get::<_, i64>(0),
            )
            .ok()
            .map(|ms| ms as u64)
    }
}

/// Prints, every minute, how far the build is.
struct Progress {
    /// The packages to build, when known (`--all`).
    total: Option<usize>,
    done: usize,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(total: Option<usize>) -> Progress {
        Progress {
            total,
            done: 0,
            started: Instant::now(),
            last: Instant::now(),
        }
    }

    fn see(&mut self, line: &str) {
        if line.contains("\"stage\":\"build\"") {
            self.done += 1;
        }
        if self.last.elapsed() >= Duration::from_secs(60) {
            self.last = Instant::now();
            let of = self.total.map(|t| format!(" of {t}")).unwrap_or_default();
            eprintln!(
                "corpus: {}{of} packages done, {:.0} min",
                self.done,
                self.started.elapsed().as_secs_f64() / 60.0
            );
        }
    }
}

fn event(line: &str) -> Option<Event> {
    let v: Value = serde_json::from_str(line).ok()?;
    if v["event"] != "node" {
        return None;
    }
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    Some(Event {
        stage: text("stage"),
        name: text("name"),
        key: text("key"),
        status: text("status"),
        duration_ms: v["duration_ms"].as_u64().unwrap_or(0),
        reason: text("reason"),
    })
}

/// Runs a command that prints JSON lines; `each` sees every line as it
/// comes. Returns whether it exited 0, its stdout's lines and its stderr.
fn comb_json(cmd: &mut Command, each: &mut dyn FnMut(&str)) -> (bool, Vec<String>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| abort(&format!("cannot run comb: {e}")));
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("stdout is piped")).lines() {
        let Ok(line) = line else { break };
        each(&line);
        lines.push(line);
    }
    let ok = child.wait().is_ok_and(|s| s.success());
    (ok, lines, errors.join().unwrap_or_default())
}
