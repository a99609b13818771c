//! Builds spread over machines: a real BuildGrid scheduling on loopback
//! (its PostgreSQL started here), `comb worker`s each with its own store,
//! and a client that sends every build through `Execute`
//! (`--remote-execute`).
//!
//! 1. **Makespan.** 200 recipes whose scripts `sleep` 0.05 to 1.0 s, with
//!    random dependencies (the graph and sleeps of part 2 of
//!    `benches/build_graph.rs`, same seed), built with every build node a
//!    miss (a run nonce in each script; the packages come out the same, so
//!    every pkg-env stays a hit) on 1, 2 and 3 workers, with two builds in
//!    flight per worker (`-j` 2, 4, 6: a worker takes its next build as it
//!    reports one, while this machine makes the packages of the last).
//!    Each makespan is printed against the lower bound max(critical path,
//!    total sleep / workers) and as a speedup over one worker; target:
//!    within 1.25x of the bound at 3 workers. The workers have the
//!    environments already (an untimed warm-up run on all three).
//! 2. **Shipping an environment.** A fresh worker's first build, against
//!    the same build on the same worker once it keeps the environment:
//!    the difference is what shipping base-build costs (its archive's
//!    size is printed).
//! 3. **A remote-cache hit against a local hit.** A copy of the client's
//!    store without its build nodes fetches all 200 builds from the
//!    server's cache (their results uploaded by the last timed run); the
//!    original store's no-op run has all 200 as local hits. Per build.
//!
//! Needs root, BuildGrid (`.ci/install-deps`), PostgreSQL, `sqlite3` and
//! the Debian mirror of the host's APT sources (pinned once by `comb
//! update`). Parameters: `COMB_BENCH_REMOTE_DIR`
//! (`/var/tmp/comb-bench-remote`), `COMB_BENCH_REMOTE_SIZE` (200),
//! `COMB_BENCH_REMOTE_WORKERS` (3), `COMB_BENCH_REMOTE_JOBS_PER_WORKER` (2).

#[path = "../remote/tests/buildgrid_server/mod.rs"]
mod buildgrid_server;
mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TARGET: f64 = 1.25;
const NATIVE_TOML: &[u8] =
    b"[package]\nmaintainer = \"comb bench <bench@comb-bench.example.org>\"\n";

fn name(r: usize) -> String {
    format!("sched{r:03}")
}

struct Setup {
    comb: PathBuf,
    dir: PathBuf,
    repo: PathBuf,
    store: PathBuf,
    dag: Dag,
    sleeps: Vec<f64>,
}

impl Setup {
    fn write(&self, nonce: &str) {
        for (r, deps) in self.dag.deps.iter().enumerate() {
            let deps: Vec<String> = deps.iter().map(|&d| name(d)).collect();
            let before = format!("# run {nonce}\nsleep {:.2}\n", self.sleeps[r]);
            write(
                &self.repo.join(name(r)).join("recipe.toml"),
                recipe_text(&name(r), &deps, &before).as_bytes(),
            );
        }
    }

    /// `comb build` of `packages` (all when empty) in `store`: the wall
    /// time, and the summary line.
    fn build(&self, store: &Path, packages: &[String], extra: &[&str]) -> (Duration, String) {
        let mut cmd = Command::new(&self.comb);
        cmd.args(["build", "--json"]);
        if packages.is_empty() {
            cmd.arg("--all");
        }
        cmd.args(packages)
            .args(extra)
            .args(place(&self.repo, store));
        let ran = run(&mut cmd);
        if !ran.ok {
            let failed: Vec<&str> = ran
                .stdout
                .lines()
                .filter(|l| l.contains("\"status\":\"failed\""))
                .collect();
            abort(&format!(
                "comb build failed:\n{}\n{}",
                failed.join("\n"),
                tail(&ran.stderr, 20)
            ));
        }
        let summary = ran.stdout.lines().last().unwrap_or_default().to_string();
        (ran.wall, summary)
    }
}

/// A `comb worker`, stopped when dropped.
struct Worker(Child);

impl Drop for Worker {
    /// SIGTERM first: the worker closes its session, so the server gives
    /// the next run's builds to no bot that is gone.
    fn drop(&mut self) {
        // SAFETY: a signal to this process's own child.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(setup: &Setup, url: &str, i: usize, store: &Path) -> Worker {
    // Appended to: the log of every run the worker took part in.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(setup.dir.join(format!("worker{i}.log")))
        .unwrap();
    let child = Command::new(&setup.comb)
        .args([
            "worker",
            "--remote",
            url,
            "--instance",
            "main",
            "--patience",
            "60",
        ])
        .args(["--name", &format!("bench-w{i}"), "--store"])
        .arg(store)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| abort(&format!("starting comb worker: {e}")));
    Worker(child)
}

fn summary_field(summary: &str, field: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(summary)
        .ok()
        .and_then(|v| v[field].as_u64())
        .unwrap_or(0)
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        skip("needs root (the workers' sandboxes attach idmapped layers)");
    }
    if !installed("sqlite3") {
        skip("`sqlite3` is not installed (apt-get install sqlite3)");
    }
    let n = env_count("COMB_BENCH_REMOTE_SIZE", 200);
    let most = env_count("COMB_BENCH_REMOTE_WORKERS", 3);
    // Builds in flight per worker: a worker takes its next build as it
    // reports one, while this machine packs the last one's outputs.
    let per_worker = env_count("COMB_BENCH_REMOTE_JOBS_PER_WORKER", 2);
    let dir = env_path("COMB_BENCH_REMOTE_DIR", "/var/tmp/comb-bench-remote");
    mkdir_all(&dir);
    let dag = Dag::generate(n, SCHED_SEED);
    let sleeps = sched_sleeps(n);
    let setup = Setup {
        comb: PathBuf::from(env!("CARGO_BIN_EXE_comb")),
        repo: dir.join("repo"),
        store: dir.join("store"),
        dir: dir.clone(),
        dag,
        sleeps,
    };
    mkdir_all(&setup.repo);
    write(&setup.repo.join("comb.toml"), NATIVE_TOML);
    if !setup.repo.join("comb.lock").is_file() {
        update_or_skip(&setup.comb, &setup.repo, &setup.store);
    }
    // A smaller graph than the last run's: the rest of the recipes go.
    for entry in read_dir(&setup.repo) {
        let file = entry.file_name().to_string_lossy().into_owned();
        let index = file
            .strip_prefix("sched")
            .and_then(|r| r.parse::<usize>().ok());
        if index.is_some_and(|r| r >= n) {
            remove_all(&entry.path());
        }
    }
    for r in 0..n {
        let src = setup.repo.join(name(r)).join("src");
        mkdir_all(&src);
        write(&src.join("data"), format!("{}\n", name(r)).as_bytes());
    }
    let seed = Path::new("/var/cache/comb-test-store");
    if !setup.store.exists() && seed.join("blobs/sha256").is_dir() {
        seed_downloads(&setup.comb, &setup.store, seed);
    }
    setup.write("setup");
    eprintln!("remote: setup: every recipe built here once (untimed)");
    setup.build(&setup.store, &[], &["-j", "2"]);

    let server = buildgrid_server::start_execution(true, 60);
    let url = server.server.url.clone();
    let execute = [
        "--remote-execute",
        url.as_str(),
        "--remote-instance",
        "main",
    ];
    let worker_store = |i: usize| dir.join(format!("worker{i}-store"));
    for i in 1..=most {
        remove_all(&worker_store(i));
        let _ = std::fs::remove_file(dir.join(format!("worker{i}.log")));
    }
    let work: f64 = setup.sleeps.iter().sum();
    let path = setup.dag.critical_path(&setup.sleeps);
    println!(
        "remote: {n} recipes sleeping 0.05 to 1.0 s (total {work:.1} s, critical path {path:.1} s, {} edges), every build node a miss, through BuildGrid 0.4.4 on loopback; {} CPUs",
        setup.dag.edges(),
        std::thread::available_parallelism().map_or(1, |c| c.get())
    );

    // 2. Shipping: worker 1, empty, builds one recipe; then again.
    let first = vec![name(0)];
    let shipping = {
        let _w = worker(&setup, &url, 1, &worker_store(1));
        setup.write(&format!("ship-1-{}", unix_now().as_nanos()));
        let (fresh, _) = setup.build(&setup.store, &first, &execute);
        setup.write(&format!("ship-2-{}", unix_now().as_nanos()));
        let (kept, _) = setup.build(&setup.store, &first, &execute);
        (fresh, kept)
    };
    let shipped_mb: f64 = std::fs::read_dir(setup.store.join("shipped"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("base-build-"))
                .filter_map(|e| std::fs::read(e.path()).ok())
                .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .filter_map(|v| v["size"].as_u64())
                .sum::<u64>() as f64
                / 1e6
        })
        .unwrap_or(0.0);

    // Warm-up: every worker gets base-build, one at a time (the server
    // prefers the worker that ran an environment last, so a run on all of
    // them may leave one without it), then the packages' environments.
    for i in 2..=most {
        let _w = worker(&setup, &url, i, &worker_store(i));
        setup.write(&format!("warm-up-{i}-{}", unix_now().as_nanos()));
        let (_, summary) = setup.build(&setup.store, &first, &execute);
        eprintln!("remote: warm-up of worker {i}: {summary}");
    }
    let workers: Vec<Worker> = (1..=most)
        .map(|i| worker(&setup, &url, i, &worker_store(i)))
        .collect();
    eprintln!("remote: warm-up on {most} workers (untimed)");
    setup.write(&format!("warm-up-{}", unix_now().as_nanos()));
    setup.build(
        &setup.store,
        &[],
        &[&execute[..], &["-j", &(most * per_worker).to_string()]].concat(),
    );
    drop(workers);

    // 1. Makespans.
    let mut makespans = Vec::new();
    for k in 1..=most {
        let _workers: Vec<Worker> = (1..=k)
            .map(|i| worker(&setup, &url, i, &worker_store(i)))
            .collect();
        let nonce = format!("{}-{k}", unix_now().as_nanos());
        setup.write(&nonce);
        // The last run shares its results (for part 3).
        if k == most {
            let toml = format!(
                "{}\n[remote]\nupload = true\n",
                String::from_utf8_lossy(NATIVE_TOML)
            );
            write(&setup.repo.join("comb.toml"), toml.as_bytes());
        }
        let started = Instant::now();
        let (_, summary) = setup.build(
            &setup.store,
            &[],
            &[&execute[..], &["-j", &(k * per_worker).to_string()]].concat(),
        );
        let wall = started.elapsed().as_secs_f64();
        let remote = summary_field(&summary, "built_remotely");
        if remote as usize != n {
            abort(&format!("{remote} of {n} builds ran remotely: {summary}"));
        }
        makespans.push(wall);
    }
    write(&setup.repo.join("comb.toml"), NATIVE_TOML);
    for (i, wall) in makespans.iter().enumerate() {
        let k = i + 1;
        let bound = path.max(work / k as f64);
        let ratio = wall / bound;
        let line = format!(
            "  {k} worker{}: makespan {wall:>6.1} s   bound {bound:>6.1} s   {ratio:.2}x the bound   speedup over 1 worker {:.2}x",
            if k == 1 { " " } else { "s" },
            makespans[0] / wall
        );
        if k == most {
            println!(
                "{line}   target <= {TARGET:.2}x   {}",
                verdict(ratio <= TARGET)
            );
        } else {
            println!("{line}");
        }
    }
    println!(
        "  shipping base-build ({shipped_mb:.0} MB compressed) to a fresh worker: its first build {:.1} s, the same build with the environment kept {:.1} s: {:.1} s to ship",
        shipping.0.as_secs_f64(),
        shipping.1.as_secs_f64(),
        (shipping.0.as_secs_f64() - shipping.1.as_secs_f64()).max(0.0)
    );

    // 3. A remote-cache hit against a local hit.
    let copy = dir.join("store-reader");
    remove_all(&copy);
    command_ok(Command::new("cp").arg("-a").arg(&setup.store).arg(&copy));
    command_ok(
        Command::new("sqlite3")
            .arg(copy.join("index.sqlite"))
            .arg("DELETE FROM nodes WHERE kind = 'build'"),
    );
    let (local, local_summary) = setup.build(&setup.store, &[], &[]);
    let remote_cache = ["--remote-cache", url.as_str(), "--remote-instance", "main"];
    let (fetched, summary) = setup.build(&copy, &[], &remote_cache);
    let got = summary_field(&summary, "fetched");
    if got as usize != n || summary_field(&local_summary, "hit") == 0 {
        abort(&format!("the reader fetched {got} of {n}: {summary}"));
    }
    println!(
        "  {n} builds as local hits {:.2} s ({:.1} ms each); as remote-cache hits {:.2} s ({:.1} ms each): {:.1}x",
        local.as_secs_f64(),
        local.as_secs_f64() * 1000.0 / n as f64,
        fetched.as_secs_f64(),
        fetched.as_secs_f64() * 1000.0 / n as f64,
        fetched.as_secs_f64() / local.as_secs_f64()
    );
    remove_all(&copy);
}
