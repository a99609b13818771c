//! `comb update` and `comb env build|run|list`: the pinned snapshot and the
//! cached environments.

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use comb_engine::Identity;
use comb_engine::RepoConfig;
use comb_engine::{store_location, Engine, NodeEvent, Observer};
use comb_engine::{NodeKind, NodeOutput, Store};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

/// Where the repository and the store are.
#[derive(Args, Clone)]
pub struct Place {
    /// The repository: a directory with comb.toml (default: the current
    /// directory or the nearest one above it that has one).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// The store (default: $COMB_STORE, else $XDG_CACHE_HOME/comb, or
    /// /var/cache/comb for root).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum EnvCommand {
    /// Build (or find) base-install, base-build and a pkg-env for --with.
    Build {
        #[command(flatten)]
        place: Place,
        /// A package the environment adds on top of base-build; repeat.
        #[arg(long = "with", value_name = "PKG")]
        with: Vec<String>,
        /// One JSON object per node on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Run a command in an environment (built first if needed).
    Run {
        #[command(flatten)]
        place: Place,
        #[arg(long = "with", value_name = "PKG")]
        with: Vec<String>,
        /// Who runs the command: root (R) or builder (U).
        #[arg(long = "as", value_enum, default_value = "builder")]
        identity: As,
        /// Also show a host directory or file inside (read-only unless
        /// `:rw`); repeat.
        #[arg(long = "bind", value_name = "SRC:DST[:rw]")]
        binds: Vec<String>,
        #[arg(required = true, last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// The cached layers: stage, key, size, last use.
    List {
        /// (--repo is accepted for symmetry; the list is the store's.)
        #[command(flatten)]
        place: Place,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum As {
    Root,
    Builder,
}

/// Prints node events as JSON lines or as words, and downloads as a bar
/// on a terminal.
struct Printer {
    json: bool,
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl Printer {
    fn new(json: bool) -> Printer {
        Printer {
            json,
            bar: Mutex::new(None),
        }
    }
}

impl Observer for Printer {
    fn waiting(&self, what: &str) {
        eprintln!("comb: waiting for {what} to finish");
    }

    fn node(&self, e: &NodeEvent) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
        if self.json {
            if let Ok(line) = serde_json::to_string(e) {
                println!("{line}");
            }
            return;
        }
        if e.stage == NodeKind::Fetch {
            return;
        }
        let key = &e.key[..e.key.len().min(12)];
        match &e.reason {
            None => eprintln!("{:<13} {:<28} hit    {key}", e.stage, e.name),
            Some(reason) => eprintln!(
                "{:<13} {:<28} {:<6} {key} in {:.1}s: {}",
                e.stage,
                e.name,
                e.status,
                e.duration_ms as f64 / 1000.0,
                reason.lines().next().unwrap_or("")
            ),
        }
    }

    fn started(&self, stage: NodeKind, name: &str) {
        if !self.json && stage != NodeKind::Fetch {
            eprintln!("{stage:<13} {name:<28} building…");
        }
    }

    fn fetch_progress(&self, done: usize, total: usize, bytes: u64) {
        if self.json || !std::io::stderr().is_terminal() {
            return;
        }
        let mut bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bar.get_or_insert_with(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "fetching {bar:30} {pos}/{len} .debs {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        bar.set_position(done as u64);
        bar.set_message(format!("{:.1} MB", bytes as f64 / 1e6));
    }
}

/// The `comb.toml` of `--repo DIR`, or of the nearest directory up from
/// the current one that has it.
pub fn repo_config(repo: Option<&std::path::Path>) -> Result<RepoConfig> {
    Ok(match repo {
        Some(dir) => RepoConfig::load(&dir.join(comb_engine::CONFIG_FILE))?,
        None => RepoConfig::find(&std::env::current_dir()?)?,
    })
}

fn open(place: &Place, json: bool, command_line: &str) -> Result<Engine> {
    let repo = repo_config(place.repo.as_deref())?;
    let store = store_location(place.store.clone())?;
    Engine::open(repo, store, command_line, Box::new(Printer::new(json)))
        .context("opening the store")
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// `comb update`.
pub fn update(place: Place) -> Result<ExitCode> {
    let engine = open(&place, false, &command_line())?;
    let result = comb_engine::update_snapshot(&engine);
    engine.finish(result.is_ok())?;
    let (pinned, changed) = result?;
    let lock = &pinned.lock;
    eprintln!(
        "{} {} {} ({}), {} index files, released {}{}",
        if changed { "pinned" } else { "unchanged:" },
        lock.suite,
        lock.architecture,
        lock.uri,
        lock.files.len(),
        lock.date,
        if changed {
            format!(
                " → {}",
                engine.repo().root.join(comb_engine::LOCK_FILE).display()
            )
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run(command: EnvCommand) -> Result<ExitCode> {
    match command {
        EnvCommand::Build { place, with, json } => {
            let engine = open(&place, json, &command_line())?;
            let result = comb_engine::load_snapshot(&engine)
                .and_then(|p| comb_engine::environment(&engine, &p, &with));
            engine.finish(result.is_ok())?;
            let environment = result?;
            if !json {
                let top = environment.top();
                eprintln!("environment ready: {} layers", top.paths.len());
                for p in &top.paths {
                    println!("{}", p.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::Run {
            place,
            with,
            identity,
            binds,
            command,
        } => {
            let binds = binds
                .iter()
                .map(|b| crate::sandbox_cmd::parse_bind(b))
                .collect::<Result<Vec<_>>>()?;
            let engine = open(&place, false, &command_line())?;
            let result = comb_engine::load_snapshot(&engine)
                .and_then(|p| comb_engine::environment(&engine, &p, &with));
            let environment = match result {
                Ok(e) => e,
                Err(e) => {
                    engine.finish(false)?;
                    return Err(e.into());
                }
            };
            let identity = match identity {
                As::Root => Identity::Root,
                As::Builder => Identity::Builder,
            };
            let outcome = comb_engine::run_in(&engine, &environment, identity, binds, command);
            engine.finish(outcome.is_ok())?;
            let outcome = outcome?;
            if let Some(kill) = outcome.killed_by {
                eprintln!("comb: killed by the {kill:?} limit");
            }
            Ok(ExitCode::from(outcome.status.code().clamp(0, 255) as u8))
        }
        EnvCommand::List { place, json } => list(place.store, json),
    }
}

fn list(store: Option<PathBuf>, json: bool) -> Result<ExitCode> {
    let store = Store::open(store_location(store)?)?;
    let index = store.open_index()?;
    let mut rows = Vec::new();
    for kind in [NodeKind::BaseInstall, NodeKind::BaseBuild, NodeKind::PkgEnv] {
        for node in index.nodes_of_kind(kind)? {
            let present = store.has_output(&node.output);
            rows.push((node, present));
        }
    }
    if json {
        for (node, present) in &rows {
            let tree = match &node.output {
                NodeOutput::Tree(name) => Some(name.clone()),
                NodeOutput::Blob(_) => None,
            };
            let line = serde_json::json!({
                "stage": node.kind,
                "name": node.name,
                "key": node.key,
                "tree": tree,
                "size": node.size,
                "created_at": node.created_at,
                "last_used_at": node.last_used_at,
                "build_ms": node.duration_ms,
                "present": present,
            });
            println!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<13} {:<32} {:<14} {:>10} {:>10}  last used",
        "stage", "name", "key", "size", "built in"
    );
    for (node, present) in &rows {
        println!(
            "{:<13} {:<32} {:<14} {:>10} {:>9.1}s  {}{}",
            node.kind,
            node.name,
            &node.key[..node.key.len().min(12)],
            human_size(node.size),
            node.duration_ms as f64 / 1000.0,
            ago(node.last_used_at),
            if *present { "" } else { "  (missing)" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

pub(crate) fn ago(at: i64) -> String {
    let secs = (comb_engine::unix_now() - at).max(0);
    match secs {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s if s < 172800 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86400),
    }
}
