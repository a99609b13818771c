//! `comb build --remote-execute`: a real BuildGrid scheduling on loopback
//! (with its PostgreSQL), `comb worker`s each with its own store, and a
//! client whose builds all run on them. The `.deb`s are the bytes a local
//! build makes; a second machine gets every build from the cache; a
//! worker killed mid-build has its build run by another; a server gone
//! mid-run is an error that says so, or a local build when asked.

use crate::buildgrid_server::{start_execution, ExecutionServer};
use crate::remote_cache::{build_in, debs, scratch, set_remote};
use crate::repo::{native, Repo};
use crate::root;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `comb worker` process, killed when dropped.
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Worker {
    fn start(server: &ExecutionServer, name: &str, dir: &Path) -> Worker {
        let store = dir.join(format!("{name}-store"));
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(crate::repo::COMB)
            .args([
                "worker",
                "--remote",
                &server.server.url,
                "--instance",
                "main",
            ])
            .args(["--name", name, "--patience", "30", "--store"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Worker { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until it has taken a lease.
    fn wait_for_lease(&self) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while !self.log().contains("running lease") {
            assert!(Instant::now() < deadline, "no lease: {}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn repository() -> Repo {
    let repo = Repo::new();
    repo.recipe("exec-a", &native("exec-a", &[], ""), "a's data");
    repo.recipe("exec-b", &native("exec-b", &["exec-a"], ""), "b's data");
    repo
}

fn execute_toml(server: &ExecutionServer, upload: bool) -> String {
    format!(
        "[remote]\nexecute = \"{}\"\ninstance = \"main\"\nupload = {upload}\n",
        server.server.url
    )
}

#[test]
fn builds_run_on_workers_and_come_back_as_a_local_build_makes_them() {
    if !root::is_root() {
        return;
    }
    let repo = repository();
    // The bytes a local build makes.
    let local_store = scratch(&repo, "local-store");
    let out_local = scratch(&repo, "out-local");
    let (code, builds, stderr) = build_in(&repo, &local_store, &out_local, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(builds["exec-b"].0, "built");

    let server = start_execution(true, 5);
    let dir = scratch(&repo, "workers");
    let w1 = Worker::start(&server, "w1", &dir);
    let w2 = Worker::start(&server, "w2", &dir);
    set_remote(&repo, &execute_toml(&server, true));
    let out = scratch(&repo, "out-remote");
    let (code, builds, stderr) = build_in(&repo, &repo.store, &out, &[]);
    assert_eq!(
        code,
        Some(0),
        "{stderr}\nw1: {}\nw2: {}\nbgd: {}",
        w1.log(),
        w2.log(),
        server.server.log()
    );
    for name in ["exec-a", "exec-b"] {
        assert_eq!(builds[name].0, "built", "{builds:?}");
    }
    assert_eq!(
        debs(&out),
        debs(&out_local),
        "the same bytes as a local build"
    );
    assert_eq!(debs(&out).len(), 2);
    let ran = format!("{}{}", w1.log(), w2.log());
    assert!(
        ran.contains("running lease"),
        "no worker ran anything: {ran}"
    );
    // Each build named its environment, and BuildGrid recorded which
    // worker has it (what its locality assigner prefers).
    let hints = server
        .postgres
        .query("SELECT count(DISTINCT locality_hint) FROM bot_locality_hints");
    assert_eq!(hints, "2", "exec-a's and exec-b's environments");
    // The build records the worker that ran it.
    let log = repo.comb(&["report", "--json"]);
    let report = String::from_utf8_lossy(&log.stdout);
    assert!(
        report.contains("\"worker\":\"w1\"") || report.contains("\"worker\":\"w2\""),
        "the report names the worker: {report}"
    );
    assert!(report.contains("\"built_remotely\":2"), "{report}");
    let why = repo.comb(&["why", "exec-b"]);
    let why = String::from_utf8_lossy(&why.stdout);
    assert!(why.contains("built on w"), "{why}");

    // A second machine with an empty store builds nothing.
    set_remote(&repo, &execute_toml(&server, false));
    let store_b = scratch(&repo, "store-b");
    let out_b = scratch(&repo, "out-b");
    let (code, builds, stderr) = build_in(&repo, &store_b, &out_b, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    for name in ["exec-a", "exec-b", "base-install", "base-build"] {
        assert_eq!(builds[name].0, "fetched", "{builds:?}");
    }
    assert_eq!(debs(&out_b), debs(&out_local));
}

#[test]
fn a_worker_killed_mid_build_has_its_build_run_elsewhere() {
    if !root::is_root() {
        return;
    }
    let repo = Repo::new();
    repo.recipe("slow", &native("slow", &[], "sleep 6"), "slow data");
    let server = start_execution(true, 3);
    let dir = scratch(&repo, "workers");
    let first = Worker::start(&server, "doomed", &dir);
    set_remote(&repo, &execute_toml(&server, false));
    let out = scratch(&repo, "out");
    let client = {
        let (root, store, out) = (repo.root.clone(), repo.store.clone(), out.clone());
        std::thread::spawn(move || {
            Command::new(crate::repo::COMB)
                .args(["build", "--all", "--json", "--out"])
                .arg(out)
                .arg("--repo")
                .arg(root)
                .arg("--store")
                .arg(store)
                .output()
                .unwrap()
        })
    };
    first.wait_for_lease();
    drop(first);
    let second = Worker::start(&server, "survivor", &dir);
    let output = client.join().unwrap();
    assert!(
        output.status.success(),
        "{}\nsurvivor: {}\nbgd: {}",
        String::from_utf8_lossy(&output.stderr),
        second.log(),
        server.server.log()
    );
    assert!(second.log().contains("running lease"), "{}", second.log());
    assert_eq!(debs(&out).len(), 1);
}

#[test]
fn a_server_gone_mid_run_is_an_error_or_a_local_build() {
    if !root::is_root() {
        return;
    }
    let repo = Repo::new();
    repo.recipe("late", &native("late", &[], "sleep 4"), "late data");
    let mut server = start_execution(true, 5);
    let dir = scratch(&repo, "workers");
    let worker = Worker::start(&server, "w", &dir);
    set_remote(&repo, &execute_toml(&server, false));
    let run = |fallback: bool| {
        let (root, store) = (repo.root.clone(), repo.store.clone());
        let out = scratch(&repo, if fallback { "out-fallback" } else { "out" });
        std::thread::spawn(move || {
            let mut c = Command::new(crate::repo::COMB);
            c.args(["build", "--all", "--out"]).arg(out);
            if fallback {
                c.args(["--remote-fallback", "local"]);
            }
            c.arg("--repo")
                .arg(root)
                .arg("--store")
                .arg(store)
                .output()
                .unwrap()
        })
    };
    let client = run(false);
    worker.wait_for_lease();
    let _ = server.server.child.kill();
    let _ = server.server.child.wait();
    let output = client.join().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("unreachable") && stderr.contains("--remote-fallback local"),
        "{stderr}"
    );
    // Asked to, the same run builds here.
    let output = run(true).join().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("building here"), "{stderr}");
}

/// The README's repository checked on three workers: every package of
/// `examples/starter` rebuilt from source remotely (its environments
/// shipped to workers with empty stores) and compared with the build
/// recorded here: all GOOD, the same bytes.
#[test]
fn the_starter_is_checked_on_three_workers() {
    if !root::is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("starter");
    crate::build_starter::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/starter"),
        &repo,
    );
    assert!(crate::real::comb(&repo, &["update"]).status.success());
    let built = crate::real::comb(&repo, &["build", "--all"]);
    assert!(built.status.success());
    let server = start_execution(false, 10);
    let workers: Vec<Worker> = (1..=3)
        .map(|i| Worker::start(&server, &format!("starter-w{i}"), dir.path()))
        .collect();
    let check = crate::real::comb(
        &repo,
        &[
            "check",
            "--all",
            "--json",
            "--no-diffoscope",
            "-j",
            "3",
            "--remote-execute",
            &server.server.url,
            "--remote-instance",
            "main",
        ],
    );
    let logs: String = workers.iter().map(Worker::log).collect();
    assert!(check.status.success(), "workers: {logs}");
    let stdout = String::from_utf8_lossy(&check.stdout);
    let packages: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "package")
        .map(|v| v["package"].clone())
        .collect();
    assert!(packages.len() >= 8, "{stdout}");
    for p in &packages {
        assert_eq!(p["state"], "GOOD", "{p}");
    }
    let ran = workers
        .iter()
        .filter(|w| w.log().contains("running lease"))
        .count();
    assert!(ran >= 2, "the rebuilds spread over the workers: {logs}");
}
