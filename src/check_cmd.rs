//! `comb check`: rebuild packages from source and compare the bytes with
//! their recorded builds.

use crate::env_cmd::Place;
use anyhow::{Context, Result};
use clap::Args;
use comb_engine::Repository;
use comb_engine::{store_location, Engine, Quiet};
use comb_engine::{CheckRequest, Verdict};
use std::process::ExitCode;

#[derive(Args)]
pub struct CheckArgs {
    /// Source packages to check (what they need is built, not checked);
    /// default: all.
    packages: Vec<String>,
    /// Check every recipe (the default when no package is named).
    #[arg(long)]
    all: bool,
    /// Concurrent builds (default: the number of CPUs).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    jobs: Option<usize>,
    /// Retry a build from source that failed for infrastructure reasons
    /// (the sandbox, the store) up to N more times; build failures and
    /// mismatches are never retried.
    #[arg(long, value_name = "N", default_value_t = 1)]
    retry_fail: u32,
    /// Vary the rebuild: `all`, or some of build_path, hostname,
    /// domainname, uid, umask, timezone, locale, home, path, environment,
    /// cpus, aslr, kernel, time, directory_order (comma-separated).
    #[arg(long, value_name = "LIST", value_parser = comb_engine::Variations::parse)]
    vary: Option<comb_engine::Variations>,
    /// Compare packages built from `debian` sources with the official
    /// binaries of the same version in the pinned snapshot.
    #[arg(long)]
    against_distro: bool,
    /// Do not run diffoscope over BAD packages (it runs in a sandbox on an
    /// environment with the snapshot's diffoscope-minimal, made once).
    #[arg(long)]
    no_diffoscope: bool,
    #[command(flatten)]
    place: Place,
    /// One JSON object per package, then a summary.
    #[arg(long)]
    json: bool,
    /// Also write the report page of this run, with the check results.
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
    /// Print what would be built first and why, in build order, without
    /// building: then every checked package is built again from source
    /// and compared.
    #[arg(long, short = 'n', conflicts_with = "html")]
    dry_run: bool,
    #[command(flatten)]
    remote: crate::build_cmd::RemoteArgs,
}

pub fn check(args: CheckArgs) -> Result<ExitCode> {
    let mut repo_config = crate::env_cmd::repo_config(args.place.repo.as_deref())?;
    args.remote.apply(&mut repo_config)?;
    let repo = Repository::from_config(repo_config.clone())?;
    if args.dry_run {
        let request = comb_engine::BuildRequest {
            packages: if args.all {
                Vec::new()
            } else {
                args.packages.clone()
            },
            jobs: args.jobs.unwrap_or(1),
            keep_going: true,
        };
        let code = crate::build_cmd::dry_run(repo_config, &repo, &args.place, &request, args.json)?;
        if !args.json {
            eprintln!(
                "then each package checked is built again from source{} and compared{}",
                if args.vary.is_some() { ", varied," } else { "" },
                if args.against_distro {
                    " with the snapshot's binaries"
                } else {
                    ""
                }
            );
        }
        return Ok(code);
    }
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let engine = Engine::open(
        repo_config,
        store_location(args.place.store.clone())?,
        &command_line,
        Box::new(Quiet),
    )
    .context("opening the store")?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let request = CheckRequest {
        packages: if args.all {
            Vec::new()
        } else {
            args.packages.clone()
        },
        jobs,
        retry_fail: args.retry_fail,
        variations: args.vary.clone().map(|mut v| {
            v.prepare(engine.store());
            v
        }),
        against_distro: args.against_distro,
        diffoscope: !args.no_diffoscope,
    };
    let result = comb_engine::load_snapshot(&engine)
        .and_then(|p| comb_engine::check(&engine, &p, &repo, &request));
    let results = match result {
        Ok(r) => r,
        Err(e) => {
            engine.finish(false)?;
            return Err(e.into());
        }
    };
    let count = |v: Verdict| results.iter().filter(|r| r.state == v).count();
    let all_good = count(Verdict::Good) == results.len();
    engine.finish(all_good)?;
    if let Some(path) = &args.html {
        let index = engine.store().open_index()?;
        let run = index
            .run(engine.run_id())?
            .context("this run is missing from the index")?;
        let report = comb_engine::report(engine.store(), &index, &[run])?;
        std::fs::write(path, crate::report_html::page(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        for r in &results {
            println!("{}", serde_json::json!({"event": "package", "package": r}));
        }
        println!(
            "{}",
            serde_json::json!({
                "event": "summary",
                "run": engine.run_id().0,
                "good": count(Verdict::Good),
                "bad": count(Verdict::Bad),
                "fail": count(Verdict::Fail),
                "skipped": count(Verdict::Skipped),
            })
        );
    } else {
        for r in &results {
            let detail = match r.state {
                Verdict::Good => format!("{} .deb(s), the same bytes", r.rebuilt.len()),
                Verdict::Bad => format!(
                    "{} file(s) differ: {}",
                    r.differences.len(),
                    r.differences
                        .iter()
                        .take(5)
                        .map(|d| format!("{} {}:{}", d.deb, d.part, d.path))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Verdict::Fail => format!(
                    "{} failure: {}",
                    match r.failure {
                        Some(comb_engine::CheckFailure::Build) => "build",
                        _ => "infrastructure",
                    },
                    r.reason
                        .as_deref()
                        .unwrap_or("")
                        .lines()
                        .next()
                        .unwrap_or("")
                ),
                Verdict::Skipped => r.reason.clone().unwrap_or_default(),
            };
            let detail = crate::term::safe(&detail);
            println!("{:<8} {:<32} {detail}", r.state.as_str(), r.name);
            if let Some(v) = &r.variations {
                for (name, why) in &v.not_applied {
                    println!("         {:<32} variation {name} not applied: {why}", "");
                }
            }
        }
        println!(
            "{} packages: {} GOOD, {} BAD, {} FAIL, {} SKIPPED",
            results.len(),
            count(Verdict::Good),
            count(Verdict::Bad),
            count(Verdict::Fail),
            count(Verdict::Skipped)
        );
    }
    Ok(if engine.cancel().is_cancelled() {
        ExitCode::from(130)
    } else if all_good {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
