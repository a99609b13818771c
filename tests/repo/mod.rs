//! A test repository over the generated signed mirror
//! (`tests/mirror/mod.rs`), driven through the `comb` binary: what the
//! end-to-end tests of `comb build`, `comb why` and `comb log` share.
#![allow(dead_code)]

use crate::mirror::TestMirror;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

pub const COMB: &str = env!("CARGO_BIN_EXE_comb");

pub use crate::root::is_root;

pub struct Repo {
    _dir: tempfile::TempDir,
    pub mirror: TestMirror,
    pub root: PathBuf,
    pub store: PathBuf,
}

/// A recipe that installs `files` (name, contents) under
/// /usr/share/NAME, requires `requires`, and runs `extra` first.
pub fn native(name: &str, requires: &[&str], extra: &str) -> String {
    let requires: Vec<String> = requires.iter().map(|r| format!("{r:?}")).collect();
    format!(
        "[package]\nname = \"{name}\"\nversion = \"1.0-1\"\nsummary = \"test package {name}\"\nlicense = \"MIT\"\n\n\
         [source]\npath = \"src\"\n\n[build]\nrequires = [{}]\nscript = \"\"\"\n{extra}\n\
         mkdir -p \"$DESTDIR/usr/share/{name}\"\ncp -r . \"$DESTDIR/usr/share/{name}/\"\n\"\"\"\n\n\
         [[output]]\nname = \"{name}\"\narchitecture = \"all\"\nfiles = [\"usr/share/{name}/**\"]\n",
        requires.join(", ")
    )
}

impl Repo {
    pub fn new() -> Repo {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mirror = TestMirror::build(&dir.path().join("mirror"));
        let root = dir.path().join("repo");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("comb.toml"), mirror.distro_toml()).unwrap();
        let store = dir.path().join("store");
        let repo = Repo {
            _dir: dir,
            mirror,
            root,
            store,
        };
        assert!(repo.comb(&["update"]).status.success());
        repo
    }

    /// Adds (or replaces) a recipe with one source file.
    pub fn recipe(&self, name: &str, text: &str, file: &str) {
        let dir = self.root.join(name);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("recipe.toml"), text).unwrap();
        std::fs::write(dir.join("src/data"), file).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(COMB);
        c.args(args)
            .arg("--repo")
            .arg(&self.root)
            .arg("--store")
            .arg(&self.store);
        c
    }

    pub fn comb(&self, args: &[&str]) -> Output {
        logged(args, &mut self.command(args))
    }

    /// `comb build --all --json` (plus `extra`): the status of each
    /// package's build node, and the other events.
    pub fn build(&self, extra: &[&str]) -> (Option<i32>, BTreeMap<String, String>, Vec<Value>) {
        let mut args = vec!["build", "--all", "--json"];
        args.extend(extra);
        let out = self.comb(&args);
        let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let builds = events
            .iter()
            .filter(|e| e["stage"] == "build")
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (out.status.code(), builds, events)
    }
}

pub fn statuses(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Runs `command` (a comb invoked with `args`) and prints what it said,
/// for a failing test's log.
pub fn logged(args: &[&str], command: &mut Command) -> Output {
    let out = command.output().unwrap();
    eprintln!(
        "comb {args:?}: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
