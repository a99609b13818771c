//! `comb build` and `comb graph`: the repository's packages.

use crate::env_cmd::Place;
use anyhow::{Context, Result};
use clap::Args;
use comb_engine::build::{self, BuildRequest};
use comb_engine::recipes::Repository;
use comb_engine::{snapshot, store_location, Engine, JobState, NodeEvent, Observer};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Args)]
pub struct BuildArgs {
    /// Source packages to build (with what they need); default: all.
    packages: Vec<String>,
    /// Build every recipe (the default when no package is named).
    #[arg(long)]
    all: bool,
    /// Concurrent builds (default: the number of CPUs).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    jobs: Option<usize>,
    /// Go on past a failure; what depends on it is skipped.
    #[arg(long)]
    keep_going: bool,
    #[command(flatten)]
    place: Place,
    /// Copy the resulting .debs here, with a Packages index for apt.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// One JSON object per line for every node, then a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct GraphArgs {
    /// The repository (default: the nearest directory with comb.toml).
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    /// Print Graphviz dot instead of one line per package.
    #[arg(long)]
    dot: bool,
}

/// Counts events and prints them, as JSON lines or words.
struct Reporter {
    json: bool,
    counts: [AtomicU64; 4],
    interactive: bool,
    /// On a terminal: packages done out of those asked for.
    bar: Option<indicatif::ProgressBar>,
}

impl Reporter {
    /// A line above the bar, or on stderr.
    fn say(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl Observer for Reporter {
    fn node(&self, e: &NodeEvent) {
        let slot = match e.status.as_str() {
            "hit" => 0,
            "built" => 1,
            "failed" => 2,
            _ => 3,
        };
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        if let (Some(bar), "build") = (&self.bar, e.stage.as_str()) {
            bar.inc(1);
            bar.set_message(e.name.clone());
        }
        if self.json {
            let line = serde_json::json!({
                "event": "node",
                "name": e.name,
                "stage": e.stage,
                "key": e.key,
                "status": e.status,
                "duration_ms": e.duration_ms,
                "reason": e.reason,
            });
            println!("{line}");
            return;
        }
        if e.stage.as_str() == "fetch"
            || (self.interactive && e.status.as_str() == "hit" && e.stage.as_str() != "build")
        {
            return;
        }
        let reason = e
            .reason
            .as_deref()
            .and_then(|r| r.lines().next())
            .unwrap_or("");
        self.say(match e.status.as_str() {
            "hit" => format!("{:<13} {:<32} hit", e.stage, e.name),
            "failed" => format!(
                "{:<13} {:<32} FAILED after {:.1}s\n{}",
                e.stage,
                e.name,
                e.duration_ms as f64 / 1000.0,
                e.reason.as_deref().unwrap_or("")
            ),
            status => format!(
                "{:<13} {:<32} {status} in {:.1}s ({reason})",
                e.stage,
                e.name,
                e.duration_ms as f64 / 1000.0
            ),
        })
    }

    fn started(&self, stage: comb_engine::cache::NodeKind, name: &str) {
        if !self.json && stage.as_str() != "fetch" {
            self.say(format!("{stage:<13} {name:<32} building…"));
        }
    }
}

/// The first SIGINT or SIGTERM cancels: running sandboxes are killed and
/// nothing new starts, and the run is recorded as interrupted. A second
/// one ends comb at once (the sandboxes die with it: their monitors have
/// PDEATHSIG).
fn watch_signals(cancel: comb_engine::sandbox::CancelToken) {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    let _ = set.thread_block();
    std::thread::spawn(move || loop {
        if let Ok(sig) = set.wait() {
            if cancel.flag().swap(true, Ordering::SeqCst) {
                std::process::exit(128 + sig as i32);
            }
            eprintln!("comb: {sig:?}: stopping the running builds; again to exit at once");
        }
    });
}

pub fn build(args: BuildArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let repo_config = crate::env_cmd::repo_config(args.place.repo.as_deref())?;
    let repo = Repository::from_config(repo_config.clone())?;
    let packages = if args.all {
        Vec::new()
    } else {
        args.packages.clone()
    };
    let interactive = std::io::stderr().is_terminal();
    let bar = (interactive && !args.json).then(|| {
        let total = if packages.is_empty() {
            repo.recipes.len()
        } else {
            packages.len()
        };
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed:>4} [{bar:30}] {pos}/{len} packages  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    });
    let reporter = Arc::new(Reporter {
        json: args.json,
        counts: Default::default(),
        interactive,
        bar,
    });
    struct Shared(Arc<Reporter>);
    impl Observer for Shared {
        fn node(&self, e: &NodeEvent) {
            self.0.node(e)
        }
        fn started(&self, stage: comb_engine::cache::NodeKind, name: &str) {
            self.0.started(stage, name)
        }
    }
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let engine = Engine::open(
        repo_config,
        store_location(args.place.store.clone())?,
        &command_line,
        Box::new(Shared(reporter.clone())),
    )
    .context("opening the store")?;
    watch_signals(engine.cancel.clone());
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let request = BuildRequest {
        packages,
        jobs,
        keep_going: args.keep_going,
    };
    let result = snapshot::load(&engine).and_then(|p| build::build(&engine, &p, &repo, &request));
    let results = match result {
        Ok(r) => r,
        Err(e) => {
            engine.finish(false)?;
            return Err(e.into());
        }
    };
    let failed = results
        .iter()
        .any(|r| !matches!(r.state, JobState::Done(_)));
    let mut debs = Vec::new();
    if let Some(out) = &args.out {
        for r in &results {
            if let JobState::Done(built) = &r.state {
                debs.extend(built.manifest(&engine)?.debs.iter().cloned());
            }
        }
        build::write_repository(&engine, out, &debs)?;
    }
    engine.finish(!failed)?;
    if let Some(bar) = &reporter.bar {
        bar.finish_and_clear();
    }
    let [hit, built, failed_n, skipped] = reporter
        .counts
        .each_ref()
        .map(|c| c.load(Ordering::Relaxed));
    let duration_ms = started.elapsed().as_millis() as u64;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"event": "summary", "hit": hit, "built": built, "failed": failed_n, "skipped": skipped, "duration_ms": duration_ms})
        );
    } else {
        for r in &results {
            if let JobState::Skipped { because } = &r.state {
                eprintln!("skipped {}: {because}", r.name);
            }
        }
        eprintln!(
            "{} nodes: {hit} cache hits, {built} built, {failed_n} failed{} in {:.1}s",
            hit + built + failed_n + skipped,
            if skipped > 0 {
                format!(", {skipped} skipped")
            } else {
                String::new()
            },
            duration_ms as f64 / 1000.0
        );
        if let Some(out) = &args.out {
            eprintln!(
                "{} packages in {} (deb [trusted=yes] file:{} ./)",
                debs.len(),
                out.display(),
                out.display()
            );
        }
    }
    Ok(if engine.cancel.is_cancelled() {
        eprintln!("comb: interrupted");
        ExitCode::from(130)
    } else if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn graph(args: GraphArgs) -> Result<ExitCode> {
    let repo = Repository::from_config(crate::env_cmd::repo_config(args.repo.as_deref())?)?;
    // `debian` recipes' binaries and build dependencies come from the
    // snapshot at build time; the graph here has the edges recipes declare.
    let graph = repo.graph(|r| r.binaries().unwrap_or_default())?;
    if args.dot {
        print!("{}", graph.to_dot());
        return Ok(ExitCode::SUCCESS);
    }
    for name in graph.topological_order() {
        let deps = graph.dependencies(name);
        if deps.is_empty() {
            println!("{name}");
        } else {
            println!("{name} <- {}", deps.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
