//! What the benchmarks share: running and timing commands, reading their
//! parameters from the environment, file-system steps that abort with the
//! path on failure, and small statistics. Each benchmark uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Holds when the benchmark last removed a large tree (Unix seconds).
pub const REMOVED_STAMP: &str = "removed-at";

/// How long ext4 without a journal avoids reusing a freed inode.
pub const INODE_REUSE_DELAY: Duration = Duration::from_secs(61);

/// A finished command.
pub struct Ran {
    pub ok: bool,
    pub wall: Duration,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (stdin closed, stdout and stderr captured) and times it
/// from spawn to exit.
pub fn run(cmd: &mut Command) -> Ran {
    run_to(cmd, Stdio::piped())
}

/// [`run`], with stdout sent to `stdout` (captured only if a pipe).
pub fn run_to(cmd: &mut Command, stdout: Stdio) -> Ran {
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| abort(&format!("cannot run {:?}: {e}", cmd.get_program())));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| abort(&format!("waiting for {:?}: {e}", cmd.get_program())));
    Ran {
        ok: out.status.success(),
        wall: start.elapsed(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `cmd` and returns its stdout; aborts unless it exits 0.
pub fn command_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    if !out.ok {
        abort(&format!(
            "{:?} failed:\n{}",
            cmd.get_program(),
            tail(&out.stderr, 10)
        ));
    }
    out.stdout
}

pub fn installed(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn sync() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

pub fn unix_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// `--repo R --store S`.
pub fn place(repo: &Path, store: &Path) -> Vec<String> {
    vec![
        "--repo".into(),
        repo.display().to_string(),
        "--store".into(),
        store.display().to_string(),
    ]
}

pub fn env_string(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

pub fn env_path(name: &str, default: &str) -> PathBuf {
    std::env::var_os(name)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

pub fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => abort(&format!("{name}={text:?} is not a positive number")),
        },
        Err(_) => default,
    }
}

pub fn mkdir_all(dir: &Path) {
    std::fs::create_dir_all(dir)
        .unwrap_or_else(|e| abort(&format!("creating {}: {e}", dir.display())));
}

/// Removes a directory tree or a file, if there is one.
pub fn remove_all(path: &Path) {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(md) if !md.is_dir() => std::fs::remove_file(path),
        _ => std::fs::remove_dir_all(path),
    };
    match removed {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => abort(&format!("removing {}: {e}", path.display())),
    }
}

pub fn rename(from: &Path, to: &Path) {
    std::fs::rename(from, to).unwrap_or_else(|e| {
        abort(&format!(
            "renaming {} to {}: {e}",
            from.display(),
            to.display()
        ))
    });
}

pub fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data)
        .unwrap_or_else(|e| abort(&format!("writing {}: {e}", path.display())));
}

pub fn read_dir(dir: &Path) -> impl Iterator<Item = std::fs::DirEntry> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| abort(&format!("listing {}: {e}", dir.display())))
        .flatten()
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The `q`-quantile (0.0 to 1.0) of `times`, nearest rank; the median is
/// the mean of the two middle ones for an even count.
pub fn quantile(times: &[Duration], q: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    let n = sorted.len();
    if n == 0 {
        return Duration::ZERO;
    }
    if q == 0.5 && n % 2 == 0 {
        return (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

pub fn median(times: &[Duration]) -> Duration {
    quantile(times, 0.5)
}

/// Puts `items` in a pseudo-random order (Fisher-Yates, xorshift).
pub fn shuffle(items: &mut [usize], seed: &mut u64) {
    for i in (1..items.len()).rev() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let j = (*seed % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

/// `1 run`, `3 runs`.
pub fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

pub fn skip(reason: &str) -> ! {
    println!("{}: skipped: {reason}", env!("CARGO_CRATE_NAME"));
    std::process::exit(0);
}

pub fn abort(message: &str) -> ! {
    eprintln!("{}: {message}", env!("CARGO_CRATE_NAME"));
    std::process::exit(1);
}

/// `comb update` of `repo` into `store`; if it fails, the benchmark is
/// skipped with the reason (the mirror's address left out). Returns the
/// mirror's URI, for [`redact_mirror`], and how long the update took.
pub fn update_or_skip(comb: &Path, repo: &Path, store: &Path) -> (String, Duration) {
    let update = run(Command::new(comb).arg("update").args(place(repo, store)));
    let uri = std::fs::read_to_string(repo.join("comb.lock"))
        .ok()
        .and_then(|lock| lock_uri(&lock))
        .unwrap_or_default();
    if !update.ok {
        skip(&redact_mirror(
            &format!(
                "`comb update` failed (is the mirror reachable?): {}",
                tail(&update.stderr, 3)
            ),
            &uri,
        ));
    }
    (uri, update.wall)
}

/// The first `uri = "..."` of a `comb.lock`'s `[snapshot]` table.
pub fn lock_uri(lock: &str) -> Option<String> {
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
pub fn uri_host(uri: &str) -> Option<String> {
    uri.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

/// `text` with the mirror's address `uri` (and its host) replaced: a
/// benchmark's output names no mirror.
pub fn redact_mirror(text: &str, uri: &str) -> String {
    if uri.is_empty() {
        return text.to_string();
    }
    let mut text = text.replace(uri, "<mirror>");
    if let Some(host) = uri_host(uri) {
        text = text.replace(&host, "<mirror>");
    }
    text
}

/// Makes the store `store` (through `comb`, which lays it out) with hard
/// links to the downloads of `from`: its `blobs/sha256`, where comb keeps
/// `.deb`s and source files under the digests the signed index gives.
/// comb fetches only what is missing there; nothing else is seeded.
pub fn seed_downloads(comb: &Path, store: &Path, from: &Path) {
    let blobs = from.join("blobs/sha256");
    if !blobs.is_dir() {
        abort(&format!("{} has no blobs/sha256", from.display()));
    }
    command_ok(
        Command::new(comb)
            .args(["env", "list", "--store"])
            .arg(store),
    );
    let into = store.join("blobs");
    mkdir_all(&into);
    remove_all(&into.join("sha256"));
    command_ok(Command::new("cp").arg("-al").arg(&blobs).arg(&into));
}

/// The CPU time (user and system) of every child this process has waited
/// for, and of theirs that were waited for in turn: the difference over a
/// step is the step's CPU time.
pub fn children_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage of this process.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// A random acyclic graph: node `r` needs 0 to 3 distinct nodes below it.
/// Each node's edges depend only on the seed and `r`, so the first `n`
/// nodes of a larger graph are the graph of `n` nodes.
pub struct Dag {
    pub deps: Vec<Vec<usize>>,
}

impl Dag {
    pub fn generate(n: usize, seed: u64) -> Dag {
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

    pub fn len(&self) -> usize {
        self.deps.len()
    }

    pub fn edges(&self) -> usize {
        self.deps.iter().map(Vec::len).sum()
    }

    /// The largest sum of `weight` along a chain of dependencies.
    pub fn critical_path(&self, weight: &[f64]) -> f64 {
        let mut longest = vec![0.0_f64; self.len()];
        for r in 0..self.len() {
            // Dependencies are lower-numbered: already computed.
            let before = self.deps[r].iter().map(|&d| longest[d]).fold(0.0, f64::max);
            longest[r] = before + weight[r];
        }
        longest.into_iter().fold(0.0, f64::max)
    }
}

/// splitmix64: a small, good generator for seeded choices.
pub fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A native recipe that copies its source into `/usr/share/NAME`, after
/// `before` (more script lines).
pub fn recipe_text(name: &str, deps: &[String], before: &str) -> String {
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

/// The seed of the graph of sleeping recipes (`build_graph` part 2,
/// `remote`).
pub const SCHED_SEED: u64 = 0x7363_6865_642d_3031;

/// The sleeps of the scheduling graph's `n` recipes: 0.05 to 1.00 s in
/// steps of 10 ms, seeded (the first `n` of a larger graph's).
pub fn sched_sleeps(n: usize) -> Vec<f64> {
    (0..n)
        .map(|r| {
            let mut state = !SCHED_SEED ^ (r as u64).wrapping_mul(0xd1b5_4a32_d192_ed03);
            0.05 + (splitmix(&mut state) % 96) as f64 / 100.0
        })
        .collect()
}
