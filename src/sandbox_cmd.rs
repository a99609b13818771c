//! `comb sandbox run`: one command in a sandbox, for trying it out and for
//! the attack tests.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use comb_engine::sandbox::{self, Bind, Identity, SandboxConfig, Spec, Stream};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum SandboxCommand {
    /// Run CMD as R (root) or U (builder) in a sandbox made of layers.
    Run(RunArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum As {
    /// R: root inside the user namespace, for installing packages.
    Root,
    /// U: the unprivileged builder (uid 1000).
    Builder,
    /// U under other ids (uid 2000, user builder2), as `comb check --vary uid`
    /// builds.
    Builder2,
}

#[derive(Args)]
pub struct RunArgs {
    /// A read-only root file system layer; repeat to stack, last on top.
    #[arg(long = "layer", value_name = "DIR", required = true)]
    layers: Vec<PathBuf>,
    /// Who runs the command.
    #[arg(long = "as", value_enum, default_value = "builder")]
    identity: As,
    /// Make a host path visible: SRC:DST, read-only unless :rw is added.
    #[arg(long = "bind", value_name = "SRC:DST[:rw]")]
    binds: Vec<String>,
    /// Set an environment variable inside: NAME=VALUE.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Working directory inside the sandbox.
    #[arg(long, default_value = "/")]
    cwd: PathBuf,
    /// Kill everything after this many seconds.
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Kill everything after this many seconds without output.
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<f64>,
    /// Memory limit in bytes (suffixes K, M, G allowed).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    memory: Option<u64>,
    /// Maximum number of processes.
    #[arg(long, value_name = "N")]
    pids: Option<u64>,
    /// Largest file a process may write, in bytes.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    file_size: Option<u64>,
    /// CPU time limit in seconds.
    #[arg(long, value_name = "SECS")]
    cpu_time: Option<u64>,
    /// Everything the command may write, in bytes: the upper layer, /tmp
    /// and writable binds together.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    disk: Option<u64>,
    /// Keep the writable upper layer as a new layer in DIR (root only).
    #[arg(long, value_name = "DIR")]
    keep_upper: Option<PathBuf>,
    /// Print the outcome as one JSON object on stderr.
    #[arg(long)]
    json: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 512M"))?;
    let mult = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("unknown size unit in {text:?}; use K, M or G")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too large"))
}

pub(crate) fn parse_bind(text: &str) -> Result<Bind> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, writable) = match parts.as_slice() {
        [s, t] => (s, t, false),
        [s, t, "rw"] => (s, t, true),
        [s, t, "ro"] => (s, t, false),
        _ => bail!("--bind {text:?}: expected SRC:DST or SRC:DST:rw"),
    };
    let source = std::fs::canonicalize(source)
        .with_context(|| format!("--bind {text:?}: source {source}"))?;
    Ok(Bind {
        source,
        target: PathBuf::from(target),
        writable,
    })
}

fn seconds(s: Option<f64>) -> Result<Option<Duration>> {
    s.map(|s| {
        Duration::try_from_secs_f64(s).context("a timeout must be a positive number of seconds")
    })
    .transpose()
}

pub fn run(command: SandboxCommand) -> Result<ExitCode> {
    let SandboxCommand::Run(args) = command;
    let config = SandboxConfig::detect()?;
    let layers = args
        .layers
        .iter()
        .map(|l| std::fs::canonicalize(l).with_context(|| format!("--layer {}", l.display())))
        .collect::<Result<Vec<_>>>()?;
    let mut spec = Spec::new(layers, args.command);
    spec.identity = match args.identity {
        As::Root => Identity::Root,
        As::Builder => Identity::Builder,
        As::Builder2 => Identity::OtherBuilder,
    };
    spec.binds = args
        .binds
        .iter()
        .map(|b| parse_bind(b))
        .collect::<Result<_>>()?;
    spec.env = args
        .env
        .iter()
        .map(|e| {
            e.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--env {e:?}: expected NAME=VALUE"))
        })
        .collect::<Result<_>>()?;
    spec.cwd = args.cwd;
    spec.limits.wall_timeout = seconds(args.timeout)?;
    spec.limits.idle_timeout = seconds(args.idle_timeout)?;
    spec.limits.memory_bytes = args.memory;
    if args.pids.is_some() {
        spec.limits.pids = args.pids;
    }
    spec.limits.file_size_bytes = args.file_size;
    spec.limits.cpu_time = args.cpu_time.map(Duration::from_secs);
    if let Some(disk) = args.disk {
        spec.limits.disk_bytes = Some(disk);
        spec.limits.upper_size_bytes = disk;
        spec.limits.tmp_size_bytes = disk;
    }
    spec.keep_upper = args.keep_upper;
    let outcome = sandbox::run_streaming(&config, &spec, |stream, data| {
        // Output is passed through as it comes.
        let _ = match stream {
            Stream::Stdout => std::io::stdout().write_all(data),
            Stream::Stderr => std::io::stderr().write_all(data),
        };
    })?;
    if args.json {
        eprintln!("{}", serde_json::to_string(&outcome)?);
    } else if let Some(kill) = outcome.killed_by {
        eprintln!(
            "comb: the sandbox was killed: {}",
            outcome.limits.reached(kill)
        );
    }
    Ok(ExitCode::from(outcome.status.code().clamp(0, 255) as u8))
}
