//! A whole distribution, planned: every source package of the pinned
//! snapshot as a recipe (`debian = "NAME"`, the newest version of each
//! name, written by `comb import --all`), `comb build --dry-run --all` over them with the
//! default settings (build-dependency cycles cut where the snapshot has
//! the binaries), beside Debian's `dose-builddebcheck` checking the same
//! `Packages` and `Sources` in the same run. It prints:
//!
//! - dose's time and peak memory, and the packages it finds broken;
//! - the plan's time and peak memory (the whole of `comb build
//!   --dry-run`: reading the snapshot and 34,000 recipes, the graph and
//!   its cycles, every package's build dependencies resolved exactly, with
//!   versions and sha256, and each node looked up), the part of it spent
//!   resolving, and the ratios to dose's: the targets are a resolution in
//!   at most 2x dose's time within 2 GiB, and a plan within that budget
//!   plus one minute;
//! - what the plan found: packages, cycle edges cut, unsatisfiable build
//!   dependencies (which dose also names, for the versions both check);
//! - comb's install sets beside APT's on a sample of the snapshot's
//!   source packages (`COMB_BENCH_APT_SAMPLE`, 2000; 0 to leave it out):
//!   see `tests/resolver/mod.rs`.
//!
//! Parameters: `COMB_BENCH_STORE` (a fresh store in the scratch
//! directory: `comb update` then downloads the indices), `COMB_BENCH_DIR`
//! (`/var/tmp`, where the scratch directory is made). It skips (exit 0,
//! with the reason) when `dose-builddebcheck` is not installed or `comb
//! update` fails. Nothing printed names the mirror.
//!
//! Run it with `cargo bench --bench distribution`; no root needed.

mod common;
#[path = "../tests/resolver/mod.rs"]
mod resolver;
use common::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A finished command with its peak memory.
struct Measured {
    ok: bool,
    wall: Duration,
    /// Peak resident memory, KiB (the child's, from wait4).
    max_rss_kib: u64,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` and measures its wall time and its peak memory.
fn measure(cmd: &mut Command) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let started = Instant::now();
    // Reaped by wait4 below, which also gives its peak memory.
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| abort(&format!("running {cmd:?}: {e}")));
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, with valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    if pid < 0 {
        abort(&format!(
            "waiting for {cmd:?}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Measured {
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) <= 1,
        wall,
        max_rss_kib: usage.ru_maxrss as u64,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

fn main() {
    if !installed("dose-builddebcheck") {
        skip("dose-builddebcheck is not installed (apt-get install dose-builddebcheck)");
    }
    let comb = PathBuf::from(env!("CARGO_BIN_EXE_comb"));
    let base = env_path("COMB_BENCH_DIR", "/var/tmp");
    mkdir_all(&base);
    let scratch = tempfile::Builder::new()
        .prefix("comb-bench-distribution-")
        .tempdir_in(&base)
        .unwrap_or_else(|e| abort(&format!("creating a directory in {}: {e}", base.display())));
    let store = env_path(
        "COMB_BENCH_STORE",
        &scratch.path().join("store").display().to_string(),
    );
    let repo = scratch.path().join("distribution");
    mkdir_all(&repo);
    write(&repo.join("comb.toml"), b"[distro]\n");
    let (uri, _) = update_or_skip(&comb, &repo, &store);
    let snapshot = resolver::snapshot(&store, &repo.join("comb.lock"));
    let import = run(Command::new(&comb)
        .args(["import", "--all"])
        .args(place(&repo, &store)));
    if !import.ok {
        abort(&format!(
            "comb import --all failed: {}",
            tail(&import.stderr, 3)
        ));
    }
    let recipes = read_dir(&repo).filter(|e| e.path().is_dir()).count();
    println!(
        "distribution: {recipes} source packages of the snapshot ({}), one recipe each; {} CPUs",
        snapshot.architecture,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // dose first, then comb: neither runs beside the other.
    let dose = measure(
        Command::new("dose-builddebcheck")
            .arg(format!("--deb-native-arch={}", snapshot.architecture))
            .args(["--failures", "--explain"])
            .args(&snapshot.packages)
            .args(&snapshot.sources),
    );
    if !dose.ok {
        abort(&format!(
            "dose-builddebcheck failed: {}",
            tail(&dose.stderr, 5)
        ));
    }
    let dose_broken = dose.stdout.matches("status: broken").count();
    let plan = measure(
        Command::new(&comb)
            .args(["build", "--dry-run", "--all", "--json"])
            .args(place(&repo, &store)),
    );
    if !plan.ok {
        abort(&redact_mirror(
            &format!("comb build --dry-run failed: {}", tail(&plan.stderr, 5)),
            &uri,
        ));
    }
    let json: serde_json::Value = serde_json::from_str(plan.stdout.trim())
        .unwrap_or_else(|e| abort(&format!("reading the plan: {e}")));
    let packages = json["packages"].as_array().cloned().unwrap_or_default();
    let count = |action: &str| packages.iter().filter(|p| p["action"] == action).count();
    let resolve = Duration::from_millis(json["resolve_ms"].as_u64().unwrap_or(0));
    let gib = 1024.0 * 1024.0;
    let ratio = |ours: Duration| ours.as_secs_f64() / dose.wall.as_secs_f64();
    println!(
        "dose-builddebcheck: {:.1} s, {:.2} GiB; {dose_broken} source package versions broken",
        dose.wall.as_secs_f64(),
        dose.max_rss_kib as f64 / gib
    );
    println!(
        "comb build --dry-run --all: {:.1} s ({:.2}x dose; target <= 2x + 60 s = {:.1} s: {}), {:.2} GiB (target <= 2 GiB: {})",
        plan.wall.as_secs_f64(),
        ratio(plan.wall),
        2.0 * dose.wall.as_secs_f64() + 60.0,
        verdict(plan.wall.as_secs_f64() <= 2.0 * dose.wall.as_secs_f64() + 60.0),
        plan.max_rss_kib as f64 / gib,
        verdict(plan.max_rss_kib as f64 <= 2.0 * gib),
    );
    println!(
        "  of which resolving every package's build dependencies exactly: {:.1} s ({:.2}x dose; \
         the whole plan is {:.2}x: target <= 2x: {})",
        resolve.as_secs_f64(),
        ratio(resolve),
        ratio(plan.wall),
        verdict(ratio(plan.wall) <= 2.0),
    );
    let unsatisfiable: Vec<String> = packages
        .iter()
        .filter(|p| p["action"] == "unsatisfiable")
        .map(|p| {
            format!(
                "{} {}",
                p["name"].as_str().unwrap_or(""),
                p["version"].as_str().unwrap_or("")
            )
        })
        .collect();
    println!(
        "  plan: {} packages, {} cycle edges cut, {} cached, {} to build, {} after them, {} not built for {}, \
         {} with unsatisfiable build dependencies: {}",
        packages.len(),
        json["cycles_cut"].as_array().map_or(0, Vec::len),
        count("cached"),
        count("build"),
        count("after"),
        count("elsewhere"),
        snapshot.architecture,
        unsatisfiable.len(),
        unsatisfiable.join(", ")
    );

    // 0 leaves the comparison out (env_count wants a positive number).
    let sample_size: usize = env_string("COMB_BENCH_APT_SAMPLE", "2000")
        .parse()
        .unwrap_or_else(|_| abort("COMB_BENCH_APT_SAMPLE must be a number"));
    if sample_size == 0 {
        return;
    }
    let work = scratch.path().join("apt");
    mkdir_all(&work);
    let agreement = resolver::compare_sample(&snapshot, sample_size, &work);
    print!("comb beside APT: {}", agreement.report());
}
