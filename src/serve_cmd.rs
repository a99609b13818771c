//! `comb serve` and its clients: `submit`, `promote`, `queue`, `cancel`,
//! and `audit`.

use crate::report_cmd::StoreArg;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use comb_engine::store_location;
use comb_service::daemon::{self, socket_location};
use comb_service::protocol::Request;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ServeArgs {
    /// The repository: the directory with the comb.toml the daemon reads
    /// (required: the daemon never searches for one). It, its hooks and
    /// every directory above them must be writable only by root and the
    /// daemon's user.
    #[arg(
        long,
        value_name = "DIR",
        required = true,
        long_help = "The repository: the directory with the comb.toml the daemon reads. \
                     Required: the daemon never searches for one, since the file names hooks \
                     it runs as its own user. comb.toml, its hooks and every directory above \
                     them must be writable only by root and the daemon's user."
    )]
    repo: PathBuf,
    /// The store the daemon owns (default: $COMB_STORE, else
    /// $XDG_CACHE_HOME/comb, or /var/cache/comb for root).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// The Unix socket clients connect to (default: $COMB_SOCKET, else
    /// /run/comb/comb.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Let this group's members connect (socket mode 0660); without it
    /// only the daemon's user can.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Serve the read-only status page and JSON API here (a port alone
    /// means loopback: 8470 is 127.0.0.1:8470).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Builds at once within a request (default: the CPUs).
    #[arg(short, long, value_name = "N")]
    jobs: Option<usize>,
    /// Queued and running requests one user may have.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_in_flight: u32,
    /// Requests a second one user may make on average (root and the
    /// daemon's own user are not limited).
    #[arg(long, value_name = "N", default_value_t = 2.0)]
    rate: f64,
    /// Requests one user may make at once before --rate applies.
    #[arg(long, value_name = "N", default_value_t = 20)]
    burst: u32,
    /// Time a client has from connecting to sending its request and
    /// reading the answer, in milliseconds (for tests).
    #[arg(long, value_name = "MS", hide = true)]
    request_deadline_ms: Option<u64>,
    /// Hook events that may wait; more are dropped and counted (for tests).
    #[arg(long, value_name = "N", hide = true)]
    hook_queue: Option<usize>,
    /// The system user the daemon runs as, when started as root (say
    /// `_comb`): root switches to it before anything else and never
    /// serves itself.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
}

/// Started as root, becomes `--user` (its groups, gid and uid, its home as
/// `HOME`) for good; root without `--user` is refused, and so is an
/// ordinary user naming another. Called before anything else runs.
pub fn become_service_user(args: &ServeArgs) -> Result<()> {
    let me = nix::unistd::geteuid();
    let Some(name) = &args.user else {
        anyhow::ensure!(
            !me.is_root(),
            "comb serve does not run as root: its builds, hooks and store belong to a system user \
             of their own. Create one with a subordinate range (adduser --system --group _comb; \
             usermod --add-subuids 200000-265535 --add-subgids 200000-265535 _comb), then start \
             comb serve as it, or as root with --user _comb (see the README's build service)"
        );
        return Ok(());
    };
    let user = nix::unistd::User::from_name(name)
        .with_context(|| format!("looking up --user {name}"))?
        .with_context(|| {
            format!("--user {name}: no such user; create it with adduser --system --group {name}")
        })?;
    if !me.is_root() {
        anyhow::ensure!(
            user.uid == me,
            "--user {name}: only root can switch to another user; start comb serve as {name}"
        );
        return Ok(());
    }
    anyhow::ensure!(
        !user.uid.is_root(),
        "--user {name}: that is root, which comb serve never runs as; name a system user"
    );
    let cname = std::ffi::CString::new(name.as_str()).context("--user: a name with a NUL")?;
    nix::unistd::initgroups(&cname, user.gid).context("setting the service user's groups")?;
    nix::unistd::setgid(user.gid).context("setting the service user's gid")?;
    nix::unistd::setuid(user.uid).context("setting the service user's uid")?;
    anyhow::ensure!(
        nix::unistd::setuid(nix::unistd::Uid::from_raw(0)).is_err(),
        "comb serve could regain root after switching to {name}"
    );
    // Still one thread: nothing reads the environment concurrently.
    std::env::set_var("HOME", &user.dir);
    std::env::set_var("USER", name);
    std::env::set_var("LOGNAME", name);
    std::env::remove_var("XDG_CACHE_HOME");
    std::env::remove_var("XDG_RUNTIME_DIR");
    Ok(())
}

#[derive(Args)]
pub struct SocketArg {
    /// The daemon's socket (default: $COMB_SOCKET, else /run/comb/comb.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The daemon's answers as JSON lines.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SubmitArgs {
    #[arg(long, value_name = "POCKET")]
    pocket: String,
    #[arg(required = true, value_name = "PKG")]
    packages: Vec<String>,
    /// Wait for the request to end, and say how it did.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    client: SocketArg,
}

#[derive(Args)]
pub struct PromoteArgs {
    #[arg(long, value_name = "POCKET")]
    from: String,
    #[arg(long, value_name = "POCKET")]
    to: String,
    #[arg(required = true, value_name = "PKG")]
    packages: Vec<String>,
    #[command(flatten)]
    client: SocketArg,
}

#[derive(Args)]
pub struct CancelArgs {
    /// The request's id (`comb queue` lists them).
    id: i64,
    #[command(flatten)]
    client: SocketArg,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's keyed hash chain: an edited or deleted entry
    /// fails. Run it as the daemon's user (or root): it reads the key.
    Verify {
        /// Also check what a hook sent off-site: the log still has entry N
        /// and its hash is HASH (an event's audit_length and audit_head),
        /// so a log cut short or rewritten since is caught.
        #[arg(long, value_name = "N:HASH")]
        expect: Vec<String>,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Print the audit log.
    Show {
        /// Only entries since: unix seconds, YYYY-MM-DD, or an age such as
        /// 30m, 12h, 7d.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArg,
    },
}

pub fn serve(args: ServeArgs) -> Result<ExitCode> {
    let repo = std::path::absolute(&args.repo)
        .with_context(|| format!("--repo {}", args.repo.display()))?;
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate {}: give a number of requests a second above 0",
        args.rate
    );
    let http = args
        .http
        .as_deref()
        .map(comb_service::http::parse_addr)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    daemon::serve(daemon::Options {
        repo,
        store: store_location(args.store)?,
        socket: socket_location(args.socket),
        socket_group: args.group,
        http,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        max_in_flight: args.max_in_flight.max(1),
        max_connections: 32,
        rate: comb_service::throttle::RateLimit {
            burst: args.burst.max(1),
            per_second: args.rate,
        },
        request_deadline: args
            .request_deadline_ms
            .map_or(daemon::REQUEST_DEADLINE, std::time::Duration::from_millis),
        hook_queue: args.hook_queue.unwrap_or(daemon::HOOK_QUEUE),
        report_page: Some(crate::report_html::page),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Sends a request and prints its answers; exit 0 when it went well, 1
/// when it was refused or failed.
fn call(client: &SocketArg, request: Request) -> Result<ExitCode> {
    let json = client.json;
    let last =
        comb_service::client::call(&socket_location(client.socket.clone()), &request, |v| {
            if json {
                println!("{v}");
            } else {
                print_answer(v);
            }
        })?;
    Ok(if last["ok"].as_bool() == Some(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_answer(v: &Value) {
    if let Some(error) = v["error"].as_str() {
        let id = v["request"]["id"]
            .as_i64()
            .map(|id| format!("request {id} "))
            .unwrap_or_default();
        eprintln!("comb: {id}refused: {error}");
        return;
    }
    if let Some(rows) = v["queue"].as_array() {
        if rows.is_empty() {
            println!("the queue is empty");
        }
        for r in rows {
            println!("{}", line_of(r));
        }
        return;
    }
    if v["request"].is_object() {
        let r = &v["request"];
        println!("{}", line_of(r));
        if let Some(versions) = r["versions"].as_object().filter(|m| !m.is_empty()) {
            for (package, version) in versions {
                println!("       {package} {}", version.as_str().unwrap_or(""));
            }
        }
    }
}

fn line_of(r: &Value) -> String {
    let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
    let packages: Vec<&str> = r["packages"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
        .unwrap_or_default();
    let pocket = match r["from_pocket"].as_str() {
        Some(from) => format!("{from}→{}", s("pocket")),
        None => s("pocket"),
    };
    format!(
        "{:>5}  {:<9}  {:<7}  {:<10}  {:<10}  {}{}",
        r["id"].as_i64().unwrap_or(0),
        s("state"),
        s("kind"),
        pocket,
        s("user"),
        packages.join(" "),
        r["reason"]
            .as_str()
            .map(|why| format!("  ({why})"))
            .unwrap_or_default()
    )
}

pub fn submit(args: SubmitArgs) -> Result<ExitCode> {
    call(
        &args.client,
        Request::Submit {
            pocket: args.pocket,
            packages: args.packages,
            wait: args.wait,
        },
    )
}

pub fn promote(args: PromoteArgs) -> Result<ExitCode> {
    call(
        &args.client,
        Request::Promote {
            from: args.from,
            to: args.to,
            packages: args.packages,
        },
    )
}

pub fn queue(args: SocketArg) -> Result<ExitCode> {
    call(&args, Request::Queue {})
}

pub fn cancel(args: CancelArgs) -> Result<ExitCode> {
    call(&args.client, Request::Cancel { id: args.id })
}

pub fn audit(command: AuditCommand) -> Result<ExitCode> {
    let (store, since, json, verify) = match command {
        AuditCommand::Verify { expect, store } => (store, None, false, Some(expect)),
        AuditCommand::Show { since, json, store } => (store, since, json, None),
    };
    let store = store_location(store.store)?;
    let path = store.join("service.sqlite");
    anyhow::ensure!(
        path.is_file(),
        "{} has no audit log: no comb serve has used this store (give its --store)",
        store.display()
    );
    let db = comb_service::db::Db::open(&path)?;
    if let Some(expect) = verify {
        let expected = expect
            .iter()
            .map(|e| comb_service::audit::parse_expectation(e))
            .collect::<std::result::Result<Vec<_>, String>>()
            .map_err(anyhow::Error::msg)?;
        let key = comb_service::audit::Key::load(&store)?;
        let checked = comb_service::audit::verify(db.conn(), key.as_ref()).and_then(|v| {
            for (n, hash) in &expected {
                comb_service::audit::expect(db.conn(), *n, hash)?;
            }
            Ok(v)
        });
        return Ok(match checked {
            Ok(v) => {
                let head = v
                    .head
                    .as_ref()
                    .map(|(n, h)| format!("; head {n}:{h}"))
                    .unwrap_or_default();
                let legacy = if v.legacy > 0 {
                    format!(
                        " (the first {} unkeyed, from before the key, sealed by the next)",
                        v.legacy
                    )
                } else {
                    String::new()
                };
                let seen = if expected.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; it has the {} entr{} seen off-site",
                        expected.len(),
                        if expected.len() == 1 { "y" } else { "ies" }
                    )
                };
                println!(
                    "the audit log is intact: {} entries{legacy}, each chained to the one \
                     before with the store's key{seen}{head}",
                    v.entries
                );
                ExitCode::SUCCESS
            }
            Err(
                e @ (comb_service::audit::AuditError::Key(_)
                | comb_service::audit::AuditError::Unkeyed { .. }
                | comb_service::audit::AuditError::NoKey { .. }),
            ) => {
                eprintln!("comb: the audit log cannot be verified: {e}");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("comb: the audit log was tampered with: {e}");
                ExitCode::from(1)
            }
        });
    }
    let since = since.as_deref().map(parse_since).transpose()?;
    for e in comb_service::audit::show(db.conn(), since)? {
        if json {
            println!("{}", serde_json::to_string(&e)?);
        } else {
            println!(
                "{:>6}  {}  {:<10}  {:<13}  {}  {}",
                e.id,
                comb_engine::publish::format_date(e.at),
                e.actor,
                e.kind,
                e.request.map(|r| format!("#{r}")).unwrap_or_default(),
                e.detail
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Unix seconds, a date (YYYY-MM-DD, UTC) or an age (30m, 12h, 7d).
fn parse_since(text: &str) -> Result<i64> {
    let now = comb_service::db::now();
    if let Ok(t) = text.parse::<i64>() {
        return Ok(t);
    }
    if let Some((n, unit)) = text
        .char_indices()
        .last()
        .map(|(i, c)| (&text[..i], c))
        .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        let n: i64 = n.parse().context("the age is too large")?;
        let seconds = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => anyhow::bail!("--since {text:?}: an age ends in s, m, h or d"),
        };
        return Ok(now - n * seconds);
    }
    (|| {
        let (y, rest) = text.split_once('-')?;
        let (m, d) = rest.split_once('-')?;
        let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
        ((1..=12).contains(&m) && (1..=31).contains(&d)).then(|| days_from_civil(y, m, d) * 86400)
    })()
    .with_context(|| {
        format!("--since {text:?}: give unix seconds, YYYY-MM-DD, or an age such as 12h")
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_seconds_dates_and_ages() {
        assert_eq!(parse_since("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(parse_since("2026-11-30").unwrap(), 1_795_996_800);
        let now = comb_service::db::now();
        assert!((parse_since("2h").unwrap() - (now - 7200)).abs() <= 1);
        assert!(parse_since("yesterday").is_err());
        assert!(parse_since("5w").is_err());
    }
}
