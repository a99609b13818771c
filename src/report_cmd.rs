//! `comb why` and `comb log`: what the store remembers about a package's
//! builds, read back for people (and, with `--json`, for machines).

use anyhow::{Context, Result};
use clap::Args;
use comb_engine::store_location;
use comb_engine::PackageWhy;
use comb_engine::{NodeKind, RunId, Store};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct StoreArg {
    /// The store (default: $COMB_STORE, else $XDG_CACHE_HOME/comb, or
    /// /var/cache/comb for root).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Taken like every command's; what is read is the store's record.
    #[arg(long, value_name = "DIR", hide = true)]
    pub repo: Option<PathBuf>,
}

#[derive(Args)]
pub struct WhyArgs {
    /// The source package.
    package: String,
    /// Only this stage (index, resolve, fetch, base-install, base-build,
    /// pkg-env, build).
    #[arg(long, value_name = "STAGE")]
    stage: Option<NodeKind>,
    /// The run to explain (default: the last one that built the package).
    #[arg(long, value_name = "ID")]
    run: Option<i64>,
    /// One JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArg,
}

#[derive(Args)]
pub struct LogArgs {
    /// The source package.
    package: String,
    /// The run (default: the last one that built the package).
    #[arg(long, value_name = "ID")]
    run: Option<i64>,
    /// The stage whose log to print (default: build).
    #[arg(long, value_name = "STAGE", default_value = "build")]
    stage: NodeKind,
    #[command(flatten)]
    store: StoreArg,
}

pub fn open_store(arg: &StoreArg) -> Result<Store> {
    let path = store_location(arg.store.clone())?;
    if !path.join(comb_engine::INDEX_FILE).exists() {
        anyhow::bail!(
            "no comb store at {}: build something first, or pass --store",
            path.display()
        );
    }
    Store::open(&path).with_context(|| format!("opening the store {}", path.display()))
}

pub fn why(args: WhyArgs) -> Result<ExitCode> {
    let store = open_store(&args.store)?;
    let index = store.open_index()?;
    let run = comb_engine::run_of(&index, &args.package, args.run.map(RunId))?;
    let binaries = comb_engine::binaries_of_run(&store, &index, run)?;
    let mut explained = comb_engine::explain(&index, &args.package, run, &binaries)?;
    comb_engine::limits_of(&store, &index, &mut explained)?;
    comb_engine::repository_packages_of(&store, &index, &mut explained)?;
    if let Some(stage) = args.stage {
        explained.stages.retain(|s| s.stage == stage);
    }
    if args.json {
        println!("{}", why_json(&explained));
    } else {
        print!("{}", crate::term::safe(&why_text(&explained)));
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON of `comb why`: each reason with its fields and its `text`.
pub fn why_json(w: &PackageWhy) -> serde_json::Value {
    serde_json::to_value(w).unwrap_or_default()
}

/// `comb why` in words: one line per stage, its reasons indented below.
pub fn why_text(w: &PackageWhy) -> String {
    let mut out = format!("{} in run {}:\n", w.package, w.run);
    if w.stages.is_empty() {
        out.push_str("  no stage of it was recorded in this run\n");
    }
    let build_hit = w
        .stages
        .iter()
        .any(|s| s.stage == NodeKind::Build && s.status.as_str() == "hit");
    for s in &w.stages {
        let status = match s.status.as_str() {
            "hit" | "fetched" => s.status.as_str().to_string(),
            other => format!(
                "{other}{} in {:.1}s",
                s.worker
                    .as_deref()
                    .map(|w| format!(" on {w}"))
                    .unwrap_or_default(),
                s.duration_ms as f64 / 1000.0
            ),
        };
        out.push_str(&format!(
            "  {:<13} {:<32} {status}\n",
            s.stage.as_str(),
            s.name
        ));
        for r in &s.reasons {
            for line in r.to_string().lines() {
                out.push_str(&format!("      {line}\n"));
            }
        }
        if let Some(error) = &s.error {
            let first = error.lines().next().unwrap_or("");
            out.push_str(&format!("      {first}\n"));
        }
        if let Some(limits) = &s.limits {
            out.push_str(&format!("      ran under: {limits}\n"));
        }
        if !s.from_repository.is_empty() {
            out.push_str("      from the repository:\n");
            for p in &s.from_repository {
                out.push_str(&format!("        {p}\n"));
            }
        }
    }
    if build_hit && !w.stages.iter().any(|s| s.stage == NodeKind::PkgEnv) {
        out.push_str("  (its build was a hit: its environment was not needed)\n");
    }
    for cut in &w.cycles_cut {
        out.push_str(&format!("  {}\n", cut_text(cut)));
    }
    out
}

/// A cut edge in words.
fn cut_text(cut: &comb_engine::CutEdge) -> String {
    format!(
        "build dependency cycle cut: {} built against the snapshot's {} instead of {}'s",
        cut.from,
        cut.binaries.join(", "),
        cut.to
    )
}

pub fn log(args: LogArgs) -> Result<ExitCode> {
    let store = open_store(&args.store)?;
    let index = store.open_index()?;
    let runs = match args.run {
        Some(id) => vec![comb_engine::run_of(&index, &args.package, Some(RunId(id)))?],
        // The newest run that left a log of it (a skipped build leaves none).
        None => index.runs(200)?.into_iter().map(|r| r.id).collect(),
    };
    for run in runs {
        if let Some(text) = comb_engine::log_of(&store, &index, &args.package, run, args.stage)? {
            // Byte for byte into a pipe or file; shown, not run, on a terminal.
            if std::io::stdout().is_terminal() {
                print!("{}", crate::term::safe(&text));
            } else {
                print!("{text}");
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    anyhow::bail!(
        "no {} log of {} is stored{} (logs are kept for builds and for failures)",
        args.stage,
        args.package,
        args.run
            .map(|r| format!(" for run {r}"))
            .unwrap_or_default()
    )
}

#[derive(Args)]
pub struct ReportArgs {
    /// Report this run.
    #[arg(long, value_name = "ID", conflicts_with = "last")]
    run: Option<i64>,
    /// Report the last N runs (default 1).
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    /// The report as one JSON object (schema in the README).
    #[arg(long)]
    json: bool,
    /// Also write the report as one self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArg,
}

pub fn report(args: ReportArgs) -> Result<ExitCode> {
    let store = open_store(&args.store)?;
    let index = store.open_index()?;
    let runs = match args.run {
        Some(id) => vec![index
            .run(RunId(id))?
            .with_context(|| format!("there is no run {id} in the store"))?],
        None => index.runs(args.last.unwrap_or(1).max(1))?,
    };
    if runs.is_empty() {
        anyhow::bail!("the store has no recorded run yet: run `comb build` first");
    }
    let report = comb_engine::report(&store, &index, &runs)?;
    if let Some(path) = &args.html {
        std::fs::write(path, crate::report_html::page(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report_text(&report));
        if let Some(path) = &args.html {
            println!("report page: {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Milliseconds as `1.2s`, `3m 04s` or `2h 01m`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    if s < 60 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0))
}

fn report_text(report: &comb_engine::Report) -> String {
    let mut out = String::new();
    for run in &report.runs {
        out.push_str(&format!(
            "run {}  {}  {}{}\n",
            run.id,
            run.status,
            run.duration_ms.map(duration).unwrap_or_else(|| "-".into()),
            format_args!("  {}", run.command)
        ));
        out.push_str(&format!(
            "  {:<13} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>9}\n",
            "stage", "hits", "fetched", "built", "remote", "failed", "skipped", "hit rate"
        ));
        let ordered = comb_engine::STAGES
            .iter()
            .filter_map(|s| run.stages.get(s.as_str()).map(|c| (s.as_str(), c)));
        for (stage, c) in ordered {
            out.push_str(&format!(
                "  {:<13} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>9}\n",
                stage,
                c.hit,
                c.fetched,
                c.built,
                c.built_remotely,
                c.failed,
                c.skipped,
                percent(c.hit_rate())
            ));
        }
        out.push_str(&format!(
            "  hit rate {}, time saved {}, time spent {}\n",
            percent(run.hit_rate),
            duration(run.time_saved_ms),
            duration(run.time_spent_ms)
        ));
        if !run.slowest.is_empty() {
            out.push_str("  slowest:\n");
            for s in &run.slowest {
                out.push_str(&format!(
                    "    {:<13} {:<32} {:>8} {}\n",
                    s.stage.as_str(),
                    s.name,
                    duration(s.duration_ms),
                    s.status
                ));
            }
        }
        for cut in &run.cycles_cut {
            out.push_str(&format!("  {}\n", cut_text(cut)));
        }
        if run.critical_path.packages.len() > 1 || run.critical_path.duration_ms > 0 {
            out.push_str(&format!(
                "  critical path ({}): {}\n",
                duration(run.critical_path.duration_ms),
                run.critical_path.packages.join(" -> ")
            ));
        }
        let rebuilt: Vec<_> = run
            .packages
            .iter()
            .filter(|p| p.status.as_str() == "built")
            .collect();
        if !rebuilt.is_empty() {
            out.push_str("  built:\n");
            for p in rebuilt {
                let first = p
                    .why
                    .first()
                    .and_then(|s| {
                        s.reasons
                            .first()
                            .map(|r| format!("{} {}: {r}", s.stage, s.name))
                    })
                    .unwrap_or_default();
                let name = match &p.worker {
                    Some(w) => format!("{} (on {w})", p.name),
                    None => p.name.clone(),
                };
                out.push_str(&format!(
                    "    {:<32} {}\n",
                    name,
                    first.lines().next().unwrap_or("")
                ));
            }
        }
        if !run.checks.is_empty() {
            out.push_str("  check results:\n");
            for c in &run.checks {
                let detail = if c.state == "BAD" {
                    c.differences.join(", ")
                } else {
                    c.reason
                        .as_deref()
                        .and_then(|r| r.lines().next())
                        .unwrap_or("")
                        .to_string()
                };
                out.push_str(&format!("    {:<8} {:<32} {detail}\n", c.state, c.package));
                if let Some(excerpt) = &c.diffoscope_excerpt {
                    for line in excerpt.lines().take(20) {
                        out.push_str(&format!("        {line}\n"));
                    }
                }
                if let Some(note) = &c.diffoscope_note {
                    out.push_str(&format!("        (no diffoscope: {note})\n"));
                }
            }
        }
        if !run.failures.is_empty() {
            out.push_str("  failures:\n");
            for f in &run.failures {
                out.push_str(&format!("    {} {}:\n", f.stage, f.name));
                for line in f.reason.lines() {
                    out.push_str(&format!("      {line}\n"));
                }
            }
        }
        out.push('\n');
    }
    if report.trend.len() > 1 {
        out.push_str("hit rate by stage, oldest run first:\n");
        for t in &report.trend {
            let rates: Vec<String> = t
                .hit_rate
                .iter()
                .map(|(s, r)| format!("{s} {}", percent(Some(*r))))
                .collect();
            out.push_str(&format!("  run {:<6} {}\n", t.run, rates.join(", ")));
        }
    }
    if !report.checks.is_empty() {
        out.push_str("comb check runs, oldest first:\n");
        for c in &report.checks {
            out.push_str(&format!(
                "  run {:<6} {} GOOD, {} BAD, {} FAIL, {} SKIPPED\n",
                c.run, c.good, c.bad, c.fail, c.skipped
            ));
        }
    }
    if !report.failing_since.is_empty() {
        out.push_str("failing since:\n");
        for f in &report.failing_since {
            out.push_str(&format!(
                "  {:<32} {:<5} since run {} ({}, {} check run{})\n",
                f.package,
                f.state,
                f.since_run,
                crate::env_cmd::ago(f.since),
                f.runs,
                if f.runs == 1 { "" } else { "s" }
            ));
        }
    }
    if !report.build_time_changes.is_empty() {
        out.push_str("build times that changed sharply:\n");
        for c in &report.build_time_changes {
            out.push_str(&format!(
                "  {:<32} {} -> {} (run {})\n",
                c.package,
                duration(c.before_ms),
                duration(c.after_ms),
                c.run
            ));
        }
    }
    out
}

#[derive(Args)]
pub struct GcArgs {
    /// Drop what no run used for this many days.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    max_age: u64,
    /// Then drop the least recently used until the store is at most this
    /// big (bytes, or with K, M, G, T: powers of 1024).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_size: Option<u64>,
    /// Say what would go; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// One JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArg,
}

#[derive(Args)]
pub struct StatsArgs {
    /// The hit rate is over this many recent runs.
    #[arg(long, value_name = "N", default_value_t = 20)]
    runs: usize,
    /// One JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArg,
}

/// `10G`, `512M`, `1.5T`, `4096`: bytes (suffixes are powers of 1024).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = t[digits.len()..].to_ascii_uppercase();
    let factor: u64 = match unit.trim_end_matches("IB").trim_end_matches('B') {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => {
            return Err(format!(
                "{text:?}: a size is a number with K, M, G or T, e.g. 20G"
            ))
        }
    };
    let n: f64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: a size is a number with K, M, G or T, e.g. 20G"))?;
    if n.is_nan() || n < 0.0 {
        return Err(format!("{text:?}: a size cannot be negative"));
    }
    Ok((n * factor as f64) as u64)
}

/// Bytes in words: `1.2 GiB`.
pub fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

pub fn gc(args: GcArgs) -> Result<ExitCode> {
    let store = open_store(&args.store)?;
    let _lock = match store.collect_lock(false)? {
        Some(lock) => lock,
        None => {
            eprintln!("comb gc: waiting for the running comb commands to finish");
            store
                .collect_lock(true)?
                .context("taking the store's lock")?
        }
    };
    let index = store.open_index()?;
    // Keep the snapshots that lock files still pin.
    let mut pinned = std::collections::HashSet::new();
    for (path, key) in index.pins()? {
        let lock = PathBuf::from(
            <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(path.clone()),
        );
        match comb_engine::pinned_key(&lock) {
            Ok(now) if now == key => {
                pinned.insert(key);
            }
            _ if !args.dry_run => index.forget_pin(&path)?,
            _ => {}
        }
    }
    let options = comb_engine::GcOptions {
        max_age_days: args.max_age,
        max_size: args.max_size,
        dry_run: args.dry_run,
        pinned,
    };
    let report = comb_engine::collect_garbage(&store, &index, &options)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for n in &report.nodes {
        println!(
            "{verb} {:<13} {:<32} {:>10}  last used {}",
            n.kind.as_str(),
            n.name,
            bytes(n.size),
            crate::env_cmd::ago(n.last_used_at)
        );
    }
    println!(
        "{verb} {} nodes, {} blobs and {} trees: {} freed ({} -> {}){}",
        report.nodes.len(),
        report.blobs,
        report.trees,
        bytes(report.freed_bytes),
        bytes(report.size_before),
        bytes(report.size_after),
        if report.runs_pruned > 0 {
            format!("; {} old runs forgotten", report.runs_pruned)
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub fn stats(args: StatsArgs) -> Result<ExitCode> {
    let store = open_store(&args.store)?;
    let index = store.open_index()?;
    let stats = comb_engine::store_stats(&store, &index, args.runs)?;
    if args.json {
        println!("{}", serde_json::to_string(&stats)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("store {}", store.root().display());
    let total: u64 = stats.size.values().sum();
    for (kind, size) in &stats.size {
        println!("  {kind:<10} {:>10}", bytes(*size));
    }
    println!("  {:<10} {:>10}", "total", bytes(total));
    let nodes: Vec<String> = stats
        .nodes
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!("nodes: {}", nodes.join(", "));
    println!(
        "hit rate over the last {} runs: {}",
        stats.runs,
        percent(stats.hit_rate)
    );
    if !stats.largest_layers.is_empty() {
        println!("largest layers:");
        for l in &stats.largest_layers {
            println!(
                "  {:<13} {:<32} {:>10}  {} package{} built on it",
                l.stage.as_str(),
                l.name,
                bytes(l.size),
                l.packages,
                if l.packages == 1 { "" } else { "s" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
