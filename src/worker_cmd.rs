//! `comb worker` and `comb node run`: the worker's end of remote
//! execution (`[remote] execute`).

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use comb_engine::{store_location, Engine, RepoConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct WorkerArgs {
    /// The REAPI server (grpc://HOST:PORT) whose Remote Workers API
    /// (BuildGrid's bots service) hands out builds.
    #[arg(long, value_name = "URL")]
    remote: String,
    /// The server's instance name.
    #[arg(long, default_value = "")]
    instance: String,
    /// This worker's name, recorded with every result it makes (default:
    /// comb-worker@HOST-PID).
    #[arg(long)]
    name: Option<String>,
    /// Give up when the server has been unreachable this many seconds
    /// (default: keep trying).
    #[arg(long, value_name = "SECONDS")]
    patience: Option<u64>,
    /// The worker's store, where shipped environments are kept (default:
    /// $COMB_STORE or the user's cache).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum NodeCommand {
    /// Run the comb action laid out in DIR (default: the current
    /// directory), as another server's worker prepared it: its input root
    /// (comb-action.json and blobs/) there, its outputs written there. The
    /// build's log goes to stdout; the exit code is the build's.
    Run {
        dir: Option<PathBuf>,
        /// The store where shipped environments are kept.
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
}

/// What a worker says: one line each on stderr.
struct WorkerLog;

impl comb_engine::Observer for WorkerLog {
    fn note(&self, text: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let (secs, ms) = (now.as_secs() % 86_400, now.subsec_millis());
        eprintln!(
            "comb: {:02}:{:02}:{:02}.{ms:03} {text}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
    }
    fn waiting(&self, what: &str) {
        eprintln!("comb: waiting for {what} to finish");
    }
}

/// An engine over `store` with no repository: a worker builds what it is
/// sent, under the limits sent with it.
fn worker_engine(store: Option<PathBuf>, command_line: &str) -> Result<Engine> {
    let config = RepoConfig::parse(std::path::Path::new("(worker)"), "")?;
    let store = store_location(store)?;
    Engine::open(config, store, command_line, Box::new(WorkerLog)).context("opening the store")
}

pub fn worker(args: WorkerArgs) -> Result<ExitCode> {
    let name = args.name.unwrap_or_else(|| {
        format!(
            "comb-worker@{}-{}",
            comb_engine::host::name(),
            std::process::id()
        )
    });
    let engine = worker_engine(args.store, "comb worker")?;
    // SIGTERM or SIGINT: the worker tells the server it is going, so no
    // build waits for a bot that is gone.
    crate::build_cmd::watch_signals(engine.cancel().clone());
    comb_engine::serve_worker(
        &engine,
        &args.remote,
        &args.instance,
        &name,
        args.patience.map(std::time::Duration::from_secs),
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn node(command: NodeCommand) -> Result<ExitCode> {
    let NodeCommand::Run { dir, store } = command;
    let dir = match dir {
        Some(d) => d,
        None => std::env::current_dir()?,
    };
    let engine = worker_engine(store, "comb node run")?;
    let run = comb_engine::run_node(&engine, &dir)?;
    use std::io::Write;
    std::io::stdout().write_all(run.log.as_bytes())?;
    if run.exit_code != 0 {
        eprintln!("{}", run.message);
    }
    Ok(ExitCode::from(run.exit_code.clamp(0, 255) as u8))
}
