//! comb: build distribution packages from declarative recipes, in a
//! sandbox nothing can escape, never doing the same work twice.

mod build_cmd;
mod check_cmd;
mod env_cmd;
mod progress;
mod report_cmd;
mod report_html;
mod sandbox_cmd;
mod serve_cmd;
mod term;
mod worker_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit code for usage and input errors (DESIGN.md: 0 ok, 1 failed, 2 input).
pub const EXIT_USAGE: u8 = 2;
/// Exit code when the environment failed: network, mirror, store, sandbox
/// set-up, disk. Trying again, or fixing the machine, may help; changing
/// the input will not.
pub const EXIT_ENVIRONMENT: u8 = 3;

#[derive(Parser)]
#[command(
    name = "comb",
    version,
    about = "A secure, content-addressed builder of Debian packages"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the repository's packages.
    Build(build_cmd::BuildArgs),
    /// Rebuild packages from source and compare the bytes with their
    /// recorded builds: GOOD, BAD, FAIL or SKIPPED.
    Check(check_cmd::CheckArgs),
    /// Print the package graph.
    Graph(build_cmd::GraphArgs),
    /// Write a recipe (`debian = "NAME"`) for source packages of the pinned
    /// snapshot: those named, or every one with --all.
    Import(build_cmd::ImportArgs),
    /// Fetch and verify the distribution's indices and pin them in comb.lock.
    Update {
        #[command(flatten)]
        place: env_cmd::Place,
    },
    /// Build, enter and list cached environments.
    Env {
        #[command(subcommand)]
        command: env_cmd::EnvCommand,
    },
    /// Why each stage of a package was rebuilt (or reused) in a run.
    Why(report_cmd::WhyArgs),
    /// What recent runs reused, built and failed, and why.
    Report(report_cmd::ReportArgs),
    /// Drop what no recent run used (and no lock pins), oldest first.
    Gc(report_cmd::GcArgs),
    /// What the store holds: sizes, hit rate, the largest layers.
    Stats(report_cmd::StatsArgs),
    /// Print the stored log of a package's build (or failed stage).
    Log(report_cmd::LogArgs),
    /// Run the build service: a queue of requests for pockets, over a
    /// Unix socket.
    Serve(serve_cmd::ServeArgs),
    /// Queue a build of packages for a pocket of a running `comb serve`.
    Submit(serve_cmd::SubmitArgs),
    /// Copy packages built for one pocket into another, without a rebuild.
    Promote(serve_cmd::PromoteArgs),
    /// The requests a `comb serve` has queued and running.
    Queue(serve_cmd::SocketArg),
    /// Cancel a queued or running request.
    Cancel(serve_cmd::CancelArgs),
    /// Check or print the build service's audit log.
    Audit {
        #[command(subcommand)]
        command: serve_cmd::AuditCommand,
    },
    /// Run builds for a REAPI server (BuildGrid) as a Remote Workers API
    /// bot: other machines' `[remote] execute` builds run here.
    Worker(worker_cmd::WorkerArgs),
    /// Run one node's action another machine sent (the command of another
    /// server's own worker: Buildbarn's bb_runner, NativeLink's worker).
    Node {
        #[command(subcommand)]
        command: worker_cmd::NodeCommand,
    },
    /// Run commands in comb's sandbox directly.
    Sandbox {
        #[command(subcommand)]
        command: sandbox_cmd::SandboxCommand,
    },
}

fn main() -> ExitCode {
    // Must come first: this binary doubles as the sandbox's monitor (which
    // closes what it was not given itself).
    comb_engine::sandbox::helper_main_if_requested();
    // Whatever the caller left open (`exec 9</etc/shadow; comb ...`) must
    // not reach anything comb starts: closed before anything is forked.
    comb_engine::sandbox::close_inherited_fds(3);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // Before any thread: an ordinary user's comb does its work on R's
    // files in a user namespace of its own.
    if let Command::Serve(args) = &cli.command {
        if let Err(e) = serve_cmd::become_service_user(args) {
            eprintln!("comb: error: {e:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    if needs_caller_namespace(&cli.command) {
        let entered = match &cli.command {
            Command::Serve(_) => comb_engine::sandbox::caller::enter_as_server(),
            _ => comb_engine::sandbox::caller::enter(),
        };
        if let Err(e) = entered {
            eprintln!("comb: error: {e}");
            return ExitCode::from(EXIT_ENVIRONMENT);
        }
    }
    let result = match cli.command {
        Command::Sandbox { command } => sandbox_cmd::run(command),
        Command::Worker(args) => worker_cmd::worker(args),
        Command::Node { command } => worker_cmd::node(command),
        Command::Update { place } => env_cmd::update(place),
        Command::Build(args) => build_cmd::build(args),
        Command::Graph(args) => build_cmd::graph(args),
        Command::Import(args) => build_cmd::import(args),
        Command::Check(args) => check_cmd::check(args),
        Command::Env { command } => env_cmd::run(command),
        Command::Why(args) => report_cmd::why(args),
        Command::Log(args) => report_cmd::log(args),
        Command::Report(args) => report_cmd::report(args),
        Command::Gc(args) => report_cmd::gc(args),
        Command::Stats(args) => report_cmd::stats(args),
        Command::Serve(args) => serve_cmd::serve(args),
        Command::Submit(args) => serve_cmd::submit(args),
        Command::Promote(args) => serve_cmd::promote(args),
        Command::Queue(args) => serve_cmd::queue(args),
        Command::Cancel(args) => serve_cmd::cancel(args),
        Command::Audit { command } => serve_cmd::audit(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("comb: error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Whether `command` touches R's files or runs sandboxes, which an
/// ordinary user's comb does in its own user namespace
/// (`comb_sandbox::caller`); the rest only read the index or talk to a
/// daemon.
fn needs_caller_namespace(command: &Command) -> bool {
    matches!(
        command,
        Command::Build(_)
            | Command::Check(_)
            | Command::Env { .. }
            | Command::Gc(_)
            | Command::Stats(_)
            | Command::Serve(_)
            | Command::Sandbox { .. }
            | Command::Worker(_)
            | Command::Node { .. }
    )
}

/// The exit code of an error: the kind of the first typed error in its
/// chain. An error of comb's own commands (a bad argument) is input.
fn exit_code(e: &anyhow::Error) -> u8 {
    use comb_engine::ErrorKind;
    let kind = e
        .chain()
        .find_map(|cause| match cause.downcast_ref::<comb_service::Error>() {
            Some(e) => Some(e.kind()),
            None => comb_engine::error_kind_of(cause),
        });
    match kind.unwrap_or(ErrorKind::Input) {
        ErrorKind::Failed => 1,
        ErrorKind::Input => EXIT_USAGE,
        ErrorKind::Environment => EXIT_ENVIRONMENT,
    }
}
