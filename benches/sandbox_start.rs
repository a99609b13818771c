//! Sandbox start-up time: how long `comb sandbox run -- true` takes, next to
//! its peers, and whether it grows with the size of the root.
//!
//! A build runs many short commands in sandboxes, so the fixed cost of
//! entering one matters. This benchmark measures the wall time of a whole
//! run of `true` (spawn to exit, as a caller sees it) for:
//!
//! - `comb sandbox run --layer ROOT -- /bin/true`, as U (the default), on a
//!   busybox root of about 5 MB;
//! - `unshare -Urmpfin true`: the same kinds of namespaces with no root file
//!   system at all, the floor any sandbox pays;
//! - bubblewrap (when installed) with the same namespaces and the same root:
//!   the tool comb should be comparable to (target: at most 1.5x);
//! - comb again on a root of about 500 MB (the 5 MB root plus 4,950 files of
//!   100 KB in nested directories). Start-up must not grow with the size of
//!   the environment: the layers are attached and overlaid, which costs the
//!   same whatever they hold, unlike unpacking a tarball, which is linear in
//!   its size (target: at most 1.5x the 5 MB figure).
//!
//! comb and bubblewrap are both given `/bin/true`: with a bare `true` each
//! would search a different PATH (bubblewrap the caller's, comb the
//! buildd's), and the figure would measure the PATH, not the sandbox.
//!
//! The roots are written once into `/var/tmp/comb-bench-roots` (or
//! `$COMB_BENCH_ROOTS`) and reused by later runs. Each variant is warmed up
//! 5 times, then the variants are measured round-robin, `$COMB_BENCH_RUNS`
//! times each (default 100), so that drift in the machine's load affects them
//! all alike; the order is shuffled every round, so that no variant always
//! runs right after the same other one. Every run must exit 0, otherwise the
//! benchmark aborts with the run's stderr. Missing a target is reported as
//! MISSED, but the exit code stays 0: a benchmark reports, it does not fail.
//!
//! The runs follow each other closely. Some kernel costs depend on that: on
//! cgroup v1 the first migration into a cgroup after a quiet moment waits
//! for an RCU grace period, so sandboxes started after a pause can be slower
//! than the figures here, and the distribution of comb's times is bimodal.
//!
//! Run it with `cargo bench --bench sandbox_start`, as root (comb needs it
//! for the idmapped layers). Cargo builds `comb` (release profile) first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the roots are cached between runs.
const DEFAULT_ROOTS_DIR: &str = "/var/tmp/comb-bench-roots";
/// Runs of each variant before measuring.
const WARMUP_RUNS: usize = 5;
/// Size of every filler file.
const FILE_SIZE: usize = 100_000;
/// Filler files in the small root: busybox (~2 MB) + 3 MB is about 5 MB.
const SMALL_FILES: usize = 30;
/// Extra filler files in the large root: 495 MB more, about 500 MB in all.
const LARGE_EXTRA_FILES: usize = 4_950;
/// Busybox applets linked in the roots.
const APPLETS: [&str; 4] = ["sh", "true", "ls", "cat"];

/// One way of starting a sandbox that runs `true`.
struct Variant {
    label: String,
    program: PathBuf,
    args: Vec<String>,
    times: Vec<Duration>,
}

impl Variant {
    fn new(label: &str, program: impl Into<PathBuf>, args: &[&str]) -> Variant {
        Variant {
            label: label.to_string(),
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            times: Vec::new(),
        }
    }

    /// Runs the command once and returns its wall time; aborts the
    /// benchmark if it does not exit 0.
    fn run_once(&self) -> Duration {
        let start = Instant::now();
        let output = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        let elapsed = start.elapsed();
        match output {
            Ok(out) if out.status.success() => elapsed,
            Ok(out) => abort(&format!(
                "{} failed ({}): {}\nstderr:\n{}",
                self.label,
                out.status,
                self.command_line(),
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(e) => abort(&format!(
                "{}: cannot run {}: {e}",
                self.label,
                self.command_line()
            )),
        }
    }

    fn command_line(&self) -> String {
        let mut line = self.program.display().to_string();
        for arg in &self.args {
            line.push(' ');
            line.push_str(arg);
        }
        line
    }

    /// The `q`-quantile (0.0 to 1.0) of the measured times, nearest rank;
    /// the median is the mean of the two middle ones for an even count.
    fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.times.clone();
        sorted.sort();
        let n = sorted.len();
        if q == 0.5 && n % 2 == 0 {
            return (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        sorted[rank - 1]
    }

    fn median(&self) -> Duration {
        self.quantile(0.5)
    }
}

fn abort(message: &str) -> ! {
    eprintln!("sandbox_start: {message}");
    std::process::exit(1);
}

fn main() {
    let runs = match std::env::var("COMB_BENCH_RUNS") {
        Ok(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => abort(&format!(
                "COMB_BENCH_RUNS={text:?} is not a positive number"
            )),
        },
        Err(_) => 100,
    };
    // Cargo builds the package's binaries, with this benchmark's (release)
    // profile, before it runs a benchmark, and says where it put them.
    let comb = PathBuf::from(env!("CARGO_BIN_EXE_comb"));
    let roots_dir = std::env::var_os("COMB_BENCH_ROOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOTS_DIR));
    let small = cached_root(&roots_dir, "small-5mb", false);
    let large = cached_root(&roots_dir, "large-500mb", true);
    let (small_bytes, small_files) = tree_size(&small);
    let (large_bytes, large_files) = tree_size(&large);

    let small_str = small.to_str().expect("root path is UTF-8");
    let large_str = large.to_str().expect("root path is UTF-8");
    let mut variants = vec![
        Variant::new(
            "comb sandbox run -- true (5 MB root)",
            &comb,
            &["sandbox", "run", "--layer", small_str, "--", "/bin/true"],
        ),
        Variant::new(
            "comb sandbox run -- true (500 MB root)",
            &comb,
            &["sandbox", "run", "--layer", large_str, "--", "/bin/true"],
        ),
        Variant::new("unshare -Urmpfin true", "unshare", &["-Urmpfin", "true"]),
    ];
    if bwrap_installed() {
        variants.push(Variant::new(
            "bwrap (same namespaces, 5 MB root)",
            "bwrap",
            &[
                "--unshare-user",
                "--unshare-pid",
                "--unshare-net",
                "--unshare-ipc",
                "--unshare-uts",
                "--unshare-cgroup",
                "--bind",
                small_str,
                "/",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "--tmpfs",
                "/tmp",
                "--die-with-parent",
                "--",
                "/bin/true",
            ],
        ));
    }

    for variant in &variants {
        for _ in 0..WARMUP_RUNS {
            variant.run_once();
        }
    }
    // Round-robin, in a new random order every round, so that every variant
    // follows every other one equally often: a run can leave the kernel in a
    // state that makes the next one faster (comb's cgroup migration waits
    // for an RCU grace period unless another one happened just before).
    let mut order: Vec<usize> = (0..variants.len()).collect();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..runs {
        shuffle(&mut order, &mut seed);
        for &i in &order {
            let elapsed = variants[i].run_once();
            variants[i].times.push(elapsed);
        }
    }

    println!(
        "sandbox start-up, median of {runs} runs (p10 / p90), after {WARMUP_RUNS} warm-up runs"
    );
    println!(
        "  roots: {} ({} files), {} ({} files)",
        megabytes(small_bytes),
        small_files,
        megabytes(large_bytes),
        large_files
    );
    for v in &variants {
        println!(
            "  {:<40} {:>8}   ({} / {})",
            v.label,
            millis(v.median()),
            millis(v.quantile(0.1)),
            millis(v.quantile(0.9))
        );
    }
    let (comb_small, comb_large) = (&variants[0], &variants[1]);
    match variants.get(3) {
        Some(bwrap) => ratio_line("comb / bwrap", comb_small, bwrap, 1.5),
        None => println!("  comb / bwrap: bwrap is not installed, not measured"),
    }
    ratio_line("comb 500 MB root / 5 MB root", comb_large, comb_small, 1.5);
}

/// Prints `a / b` of the medians and whether it meets `target`.
fn ratio_line(label: &str, a: &Variant, b: &Variant, target: f64) {
    let ratio = a.median().as_secs_f64() / b.median().as_secs_f64();
    let verdict = if ratio <= target { "ok" } else { "MISSED" };
    println!("  {label:<40} {ratio:>7.2}x   target <= {target:.2}x   {verdict}");
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn bwrap_installed() -> bool {
    Command::new("bwrap")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The root `name` under `dir`, written on first use. It is built under a
/// temporary name and renamed when complete, so an interrupted run leaves
/// nothing that a later run would take for a finished root.
fn cached_root(dir: &Path, name: &str, large: bool) -> PathBuf {
    let root = dir.join(name);
    if root.is_dir() {
        return root;
    }
    let partial = dir.join(format!("{name}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .unwrap_or_else(|e| abort(&format!("removing {}: {e}", partial.display())));
    }
    eprintln!("sandbox_start: writing {} (once)", root.display());
    write_root(&partial, large)
        .unwrap_or_else(|e| abort(&format!("writing {}: {e}", partial.display())));
    std::fs::rename(&partial, &root)
        .unwrap_or_else(|e| abort(&format!("renaming to {}: {e}", root.display())));
    root
}

/// A busybox root plus filler files; the large one has 4,950 more.
fn write_root(root: &Path, large: bool) -> std::io::Result<()> {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy("/bin/busybox", bin.join("busybox"))?;
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet))?;
    }
    for dir in ["proc", "dev", "tmp"] {
        std::fs::create_dir(root.join(dir))?;
    }
    let mut data = vec![0u8; FILE_SIZE];
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let filler = root.join("usr/share/filler");
    std::fs::create_dir_all(&filler)?;
    for i in 0..SMALL_FILES {
        fill(&mut data, &mut seed);
        std::fs::write(filler.join(format!("{i:02}")), &data)?;
    }
    if large {
        // usr/share/bulk/NN/N/NNNN: 50 x 10 directories of 10 files (or fewer).
        for i in 0..LARGE_EXTRA_FILES {
            let dir = root.join(format!("usr/share/bulk/{:02}/{}", i / 100, i / 10 % 10));
            std::fs::create_dir_all(&dir)?;
            fill(&mut data, &mut seed);
            std::fs::write(dir.join(format!("{i:04}")), &data)?;
        }
    }
    Ok(())
}

/// The next number of a xorshift pseudo-random sequence.
fn next_random(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Puts `items` in a pseudo-random order (Fisher-Yates).
fn shuffle(items: &mut [usize], seed: &mut u64) {
    for i in (1..items.len()).rev() {
        let j = (next_random(seed) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Fills `data` with pseudo-random bytes, so that no file system can store
/// the filler more cheaply than real contents.
fn fill(data: &mut [u8], seed: &mut u64) {
    for chunk in data.chunks_mut(8) {
        chunk.copy_from_slice(&next_random(seed).to_le_bytes()[..chunk.len()]);
    }
}

/// Total size in bytes of the regular files below `dir`, and their number.
fn tree_size(dir: &Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut files = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| abort(&format!("reading {}: {e}", dir.display())));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| abort(&format!("reading {}: {e}", dir.display())));
            let meta = entry
                .metadata()
                .unwrap_or_else(|e| abort(&format!("stat {}: {e}", entry.path().display())));
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                bytes += meta.len();
                files += 1;
            }
        }
    }
    (bytes, files)
}
