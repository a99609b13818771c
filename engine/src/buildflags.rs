//! The compiler flags `dpkg-buildflags --export=sh` gives a build,
//! computed once per environment and kept in the store.
//!
//! A native recipe's script starts by evaluating that command's output
//! (`native::build_prelude`), as `dpkg-buildpackage` does. The command is
//! a Perl program that costs tens of milliseconds of CPU on every build,
//! and its output depends only on what it reads: the environment's files
//! (dpkg's vendor and configuration, the compiler's triplet), the
//! variables the build starts with, and the path of the directory it runs
//! in (for `-ffile-prefix-map`). [`flags`] runs it alone in a sandbox of
//! the build's own kind (same layers, identity, variables and working
//! directory, the work directory bound read-only, no script of the
//! recipe's) and keeps its output under the hash of all of those; the
//! build gets the text in [`VAR`] and evaluates it instead of running
//! the command. The result is the same text the build would have made:
//! a run that fails or writes to stderr is not kept, and the build's
//! prelude then runs the command itself, as before.

use crate::engine::Engine;
use comb_sandbox::Spec;

/// The variable a build finds the flags' shell text in.
pub(crate) const VAR: &str = "COMB_BUILDFLAGS";
/// Where the store keeps them, one file per environment and start.
const DIR: &str = "buildflags";
/// Larger output is not passed in a variable (the build runs the command).
const MAX: usize = 64 << 10;
/// What the sandbox runs: the command, when the environment has it.
const COMMAND: &str =
    "if command -v dpkg-buildflags >/dev/null 2>&1; then exec dpkg-buildflags --export=sh; fi";

/// Everything `dpkg-buildflags` can read of a build about to run as
/// `spec`: its key in the store.
fn key(spec: &Spec) -> String {
    let mut env = spec.env.clone();
    env.sort();
    let binds: Vec<(&std::path::Path, bool)> = spec
        .binds
        .iter()
        .map(|b| (b.target.as_path(), b.writable))
        .collect();
    let what = serde_json::json!({
        "command": COMMAND,
        "layers": spec.layers,
        "identity": format!("{:?}", spec.identity),
        "env": env,
        "cwd": spec.cwd,
        "binds": binds,
        "hostname": spec.hostname,
        "domainname": spec.domainname,
        "umask": spec.umask,
    });
    blake3::hash(what.to_string().as_bytes())
        .to_hex()
        .to_string()
}

/// The shell text `dpkg-buildflags --export=sh` prints in the build
/// `spec` describes: kept from an earlier build of the same kind, or
/// computed now. `None` when it cannot be had cleanly; the build then
/// runs the command itself.
pub(crate) fn flags(engine: &Engine, spec: &Spec) -> Option<String> {
    let dir = engine.store.root().join(DIR);
    let file = dir.join(key(spec));
    if let Ok(text) = std::fs::read_to_string(&file) {
        return Some(text);
    }
    let mut run = spec.clone();
    run.command = vec!["/bin/sh".into(), "-c".into(), COMMAND.into()];
    for bind in &mut run.binds {
        bind.writable = false;
    }
    run.merge_output = false;
    run.keep_upper = None;
    run.output_cap_bytes = MAX + 1;
    let outcome = comb_sandbox::run(&engine.sandbox, &run).ok()?;
    if !outcome.status.success()
        || outcome.killed_by.is_some()
        || !outcome.stderr.is_empty()
        || outcome.stdout.len() > MAX
    {
        return None;
    }
    let text = String::from_utf8(outcome.stdout).ok()?;
    // Kept for the next build; a store that cannot take it only loses time.
    let _ = std::fs::create_dir_all(&dir).and_then(|()| {
        let partial = dir.join(format!(".{}.{}", std::process::id(), key(spec)));
        std::fs::write(&partial, &text)?;
        std::fs::rename(&partial, &file)
    });
    Some(text)
}
