//! `comb build` and `comb graph`: the repository's packages.

use crate::env_cmd::Place;
use crate::progress::{Mode, Reporter};
use anyhow::{Context, Result};
use clap::Args;
use comb_engine::BuildRequest;
use comb_engine::Repository;
use comb_engine::{store_location, Engine, JobState, NodeEvent, Observer};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
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
    /// Print only failures and the summary.
    #[arg(short, long, conflicts_with_all = ["verbose", "json"])]
    quiet: bool,
    /// Stream every build's log, each line prefixed with its package.
    #[arg(short, long, conflicts_with = "json")]
    verbose: bool,
    /// Print what would be built and why, in build order, without building
    /// (and every package whose build dependencies cannot be satisfied).
    #[arg(long, short = 'n', conflicts_with_all = ["out", "verbose"])]
    dry_run: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Where builds are shared between machines (`[remote]` of comb.toml).
#[derive(Args)]
pub struct RemoteArgs {
    /// A REAPI cache (grpc://HOST:PORT) to fetch builds from, in place of
    /// `[remote] cache` of comb.toml.
    #[arg(long, value_name = "URL")]
    remote_cache: Option<String>,
    /// A REAPI server (grpc://HOST:PORT) whose workers (`comb worker`) run
    /// the builds, in place of `[remote] execute` of comb.toml; its cache
    /// is the remote cache unless one is named.
    #[arg(long, value_name = "URL")]
    remote_execute: Option<String>,
    /// The REAPI server's instance name, in place of `[remote] instance`.
    #[arg(long, value_name = "NAME")]
    remote_instance: Option<String>,
    /// When the remote cache is unreachable: `local` builds here, `none`
    /// (the default) fails.
    #[arg(long, value_name = "local|none")]
    remote_fallback: Option<String>,
}

impl RemoteArgs {
    /// `config` with the command line's choices.
    pub fn apply(&self, config: &mut comb_engine::RepoConfig) -> Result<()> {
        if let Some(url) = &self.remote_cache {
            if !url.starts_with("grpc://") {
                anyhow::bail!("--remote-cache {url:?} is not grpc://HOST:PORT");
            }
            config.remote.cache = Some(url.clone());
        }
        if let Some(url) = &self.remote_execute {
            if !url.starts_with("grpc://") {
                anyhow::bail!("--remote-execute {url:?} is not grpc://HOST:PORT");
            }
            config.remote.execute = Some(url.clone());
            if self.remote_cache.is_none() {
                config.remote.cache = Some(url.clone());
            }
        }
        if let Some(instance) = &self.remote_instance {
            config.remote.instance = instance.clone();
        }
        match self.remote_fallback.as_deref() {
            None => {}
            Some("local") => config.remote.fallback_local = true,
            Some("none") => config.remote.fallback_local = false,
            Some(other) => anyhow::bail!("--remote-fallback {other:?} is not local or none"),
        }
        Ok(())
    }
}

#[derive(Args)]
pub struct ImportArgs {
    /// Source packages of the snapshot to write a recipe for.
    names: Vec<String>,
    /// Every source package of the snapshot.
    #[arg(long, conflicts_with = "names")]
    all: bool,
    #[command(flatten)]
    place: Place,
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

/// The first SIGINT or SIGTERM cancels: running sandboxes are killed and
/// nothing new starts, and the run is recorded as interrupted. A second
/// one ends comb at once (the sandboxes die with it: their monitors have
/// PDEATHSIG).
pub(crate) fn watch_signals(cancel: comb_engine::CancelToken) {
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
    let mut repo_config = crate::env_cmd::repo_config(args.place.repo.as_deref())?;
    args.remote.apply(&mut repo_config)?;
    let repo = Repository::from_config(repo_config.clone())?;
    let packages = if args.all {
        Vec::new()
    } else {
        args.packages.clone()
    };
    if args.dry_run {
        let request = BuildRequest {
            packages,
            jobs: args.jobs.unwrap_or(1),
            keep_going: true,
        };
        return dry_run(repo_config, &repo, &args.place, &request, args.json);
    }
    let mode = match (args.json, args.quiet, args.verbose) {
        (true, _, _) => Mode::Json,
        (_, true, _) => Mode::Quiet,
        (_, _, true) => Mode::Verbose,
        _ => Mode::Normal,
    };
    let reporter = Arc::new(Reporter::new(mode, std::io::stderr().is_terminal()));
    struct Shared(Arc<Reporter>);
    impl Observer for Shared {
        fn node(&self, e: &NodeEvent) {
            self.0.node(e)
        }
        fn started(&self, stage: comb_engine::NodeKind, name: &str) {
            self.0.started(stage, name)
        }
        fn output(&self, name: &str, chunk: &[u8]) {
            self.0.output(name, chunk)
        }
        fn plan(&self, packages: &[(String, u64)], jobs: usize) {
            self.0.plan(packages, jobs)
        }
        fn waiting(&self, what: &str) {
            self.0.waiting(what)
        }
        fn note(&self, text: &str) {
            self.0.note(text)
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
    watch_signals(engine.cancel().clone());
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let request = BuildRequest {
        packages,
        jobs,
        keep_going: args.keep_going,
    };
    let result = comb_engine::load_snapshot(&engine)
        .and_then(|p| comb_engine::build(&engine, &p, &repo, &request));
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
        comb_engine::write_repository(&engine, out, &debs)?;
    }
    engine.finish(!failed)?;
    reporter.finish();
    let [hit, built, failed_n, skipped, fetched, remote] = reporter
        .counts
        .each_ref()
        .map(|c| c.load(Ordering::Relaxed));
    let duration_ms = started.elapsed().as_millis() as u64;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"event": "summary", "hit": hit, "fetched": fetched, "built": built, "built_remotely": remote, "failed": failed_n, "skipped": skipped, "duration_ms": duration_ms})
        );
    } else {
        for r in &results {
            if let JobState::Skipped { because } = &r.state {
                eprintln!("skipped {}: {because}", r.name);
            }
        }
        eprintln!(
            "{} nodes: {hit} cache hits, {}{built} built{}, {failed_n} failed{} in {:.1}s",
            hit + fetched + built + failed_n + skipped,
            if fetched > 0 {
                format!("{fetched} fetched from the remote cache, ")
            } else {
                String::new()
            },
            if remote > 0 {
                format!(" ({remote} on remote workers, {} here)", built - remote)
            } else {
                String::new()
            },
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
    Ok(if engine.cancel().is_cancelled() {
        eprintln!("comb: interrupted");
        ExitCode::from(130)
    } else if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--dry-run`: the plan, printed (or as one JSON object). Exit 1 if a
/// package could not build (unsatisfiable build dependencies, a failed
/// plan), else 0.
pub fn dry_run(
    repo_config: comb_engine::RepoConfig,
    repo: &Repository,
    place: &crate::env_cmd::Place,
    request: &BuildRequest,
    json: bool,
) -> Result<ExitCode> {
    use comb_engine::PlannedAction as A;
    let engine = Engine::open_planning(
        repo_config,
        store_location(place.store.clone())?,
        Box::new(comb_engine::Quiet),
    )
    .context("opening the store")?;
    let pinned = comb_engine::load_snapshot(&engine)?;
    let plan = comb_engine::plan(&engine, &pinned, repo, request)?;
    let [cached, build, after, unsatisfiable, failed, elsewhere] = [
        A::Cached,
        A::Build,
        A::After,
        A::Unsatisfiable,
        A::Failed,
        A::Elsewhere,
    ]
    .map(|a| plan.count(a));
    if json {
        println!("{}", serde_json::to_string(&plan)?);
    } else {
        let mut out = String::new();
        if !plan.base_built {
            for w in &plan.base {
                out.push_str(&format!("build   {}: {}\n", w.stage, w.reason));
            }
        }
        for p in &plan.packages {
            let (word, detail) = match p.action {
                A::Cached => ("cached", String::new()),
                A::Build => (
                    "build",
                    format!(" ({}: {})", p.stage.as_deref().unwrap_or("build"), p.reason),
                ),
                A::After => ("after", format!(" (after {})", p.reason)),
                A::Unsatisfiable => ("cannot", format!(":\n{}", indent(&p.reason))),
                A::Failed => ("failed", format!(": {}", p.reason)),
                A::Elsewhere => ("skip", format!(" ({})", p.reason)),
            };
            out.push_str(&format!("{word:<7} {} {}{detail}\n", p.name, p.version));
        }
        for cut in &plan.cycles_cut {
            out.push_str(&format!(
                "cut     {} -> {}: {} builds against the snapshot's {}\n",
                cut.from,
                cut.to,
                cut.from,
                cut.binaries.join(", ")
            ));
        }
        print!("{out}");
        eprintln!(
            "{} packages: {cached} cached, {build} to build, {after} after them, \
             {unsatisfiable} with unsatisfiable build dependencies{}{}; {} cycle edges cut; \
             build dependencies resolved in {:.1}s{}, planned in {:.1}s",
            plan.packages.len(),
            if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            },
            if elsewhere > 0 {
                format!(", {elsewhere} not built for this architecture")
            } else {
                String::new()
            },
            plan.cycles_cut.len(),
            plan.resolve_ms as f64 / 1000.0,
            if plan.base_built {
                ""
            } else {
                " (against the base it would build)"
            },
            plan.plan_ms as f64 / 1000.0,
        );
    }
    Ok(if unsatisfiable + failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("          {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `comb import`: `NAME/recipe.toml` (`[source]` `debian = "NAME"`) in
/// the repository for each source package asked for; a directory that is
/// there already is left alone.
pub fn import(args: ImportArgs) -> Result<ExitCode> {
    let repo_config = crate::env_cmd::repo_config(args.place.repo.as_deref())?;
    let root = repo_config.root.clone();
    let engine = Engine::open_planning(
        repo_config,
        store_location(args.place.store.clone())?,
        Box::new(comb_engine::Quiet),
    )
    .context("opening the store")?;
    let pinned = comb_engine::load_snapshot(&engine)?;
    if !args.all && args.names.is_empty() {
        anyhow::bail!("name the source packages to import, or give --all");
    }
    let wanted = (!args.all).then_some(args.names.as_slice());
    let (written, kept) = comb_engine::import_recipes(&pinned, &root, wanted)?;
    eprintln!(
        "{written} recipes written in {}{}",
        root.display(),
        if kept > 0 {
            format!(", {kept} left as they were")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
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
