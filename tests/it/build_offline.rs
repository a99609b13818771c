//! `comb build` freshness, in the style of cargo's freshness tests: a
//! repository of small native recipes over the generated signed mirror
//! (`tests/mirror/mod.rs`), asserting on the `--json` events. No network;
//! the sandbox needs root, like CI.

use crate::repo;

use repo::{is_root, native, statuses, Repo};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// a <- b <- c (b and c copy what they depend on into their own output,
/// so a change flows down), and d on its own.
fn chain(repo: &Repo) {
    repo.recipe("aa", &native("aa", &[], ""), "a1\n");
    repo.recipe(
        "bb",
        &native("bb", &["aa"], "cat /usr/share/aa/data > from-a"),
        "b1\n",
    );
    repo.recipe(
        "cc",
        &native("cc", &["bb"], "cat /usr/share/bb/from-a > from-b"),
        "c1\n",
    );
    repo.recipe("dd", &native("dd", &[], ""), "d1\n");
}

#[test]
fn freshness_of_a_repository() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    chain(&repo);
    let (code, builds, events) = repo.build(&[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        builds,
        statuses(&[
            ("aa", "built"),
            ("bb", "built"),
            ("cc", "built"),
            ("dd", "built")
        ])
    );
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["failed"], 0);

    // A second run is all hits.
    let (code, _, events) = repo.build(&[]);
    assert_eq!(code, Some(0));
    for e in &events[..events.len() - 1] {
        assert_eq!(e["status"], "hit", "{e}");
    }
    assert_eq!(events.last().unwrap()["built"], 0);

    // Touching a file without changing its bytes rebuilds nothing.
    let data = repo.root.join("aa/src/data");
    let bytes = std::fs::read(&data).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&data, &bytes).unwrap();
    let (_, builds, _) = repo.build(&[]);
    assert!(builds.values().all(|s| s == "hit"), "{builds:?}");

    // Changing the leaf's source rebuilds it and what depends on it.
    std::fs::write(&data, "a2\n").unwrap();
    let (_, builds, _) = repo.build(&[]);
    assert_eq!(
        builds,
        statuses(&[
            ("aa", "built"),
            ("bb", "built"),
            ("cc", "built"),
            ("dd", "hit")
        ])
    );

    // A script change that does not change the output rebuilds that
    // package only: its dependents are hits (early cutoff).
    repo.recipe(
        "bb",
        &native(
            "bb",
            &["aa"],
            "echo an extra line\ncat /usr/share/aa/data > from-a",
        ),
        "b1\n",
    );
    let (_, builds, _) = repo.build(&[]);
    assert_eq!(
        builds,
        statuses(&[("aa", "hit"), ("bb", "built"), ("cc", "hit"), ("dd", "hit")])
    );
}

#[test]
fn packages_with_the_same_build_dependencies_share_one_pkg_env() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    repo.recipe("ee", &native("ee", &["hello"], "hello > greeting"), "e\n");
    repo.recipe("ff", &native("ff", &["hello"], "hello > greeting"), "f\n");
    let (code, _, events) = repo.build(&["-j", "1"]);
    assert_eq!(code, Some(0));
    let envs: Vec<&Value> = events.iter().filter(|e| e["stage"] == "pkg-env").collect();
    assert_eq!(envs.len(), 2, "{envs:?}");
    assert_eq!(envs[0]["key"], envs[1]["key"]);
    let built = envs.iter().filter(|e| e["status"] == "built").count();
    assert_eq!(built, 1, "{envs:?}");
}

#[test]
fn keep_going_builds_what_it_can_and_names_what_was_waited_for() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    repo.recipe("ok", &native("ok", &[], ""), "fine\n");
    repo.recipe(
        "broken",
        &native("broken", &[], "echo about to fail; exit 3"),
        "x\n",
    );
    repo.recipe(
        "needs-broken",
        &native("needs-broken", &["broken"], ""),
        "y\n",
    );
    let (code, builds, events) = repo.build(&["--keep-going"]);
    assert_eq!(code, Some(1));
    assert_eq!(builds["ok"], "built");
    assert_eq!(builds["broken"], "failed");
    assert_eq!(builds["needs-broken"], "skipped");
    let failed = events
        .iter()
        .find(|e| e["name"] == "broken" && e["status"] == "failed")
        .unwrap();
    assert!(
        failed["reason"].as_str().unwrap().contains("about to fail"),
        "{failed}"
    );
    let skipped = events.iter().find(|e| e["name"] == "needs-broken").unwrap();
    assert!(
        skipped["reason"].as_str().unwrap().contains("broken"),
        "{skipped}"
    );
    let summary = events.last().unwrap();
    assert_eq!(
        (summary["failed"].as_u64(), summary["skipped"].as_u64()),
        (Some(1), Some(1))
    );
}

#[test]
fn bad_repositories_get_their_errors() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    repo.recipe("pp", &native("pp", &["qq"], ""), "p\n");
    repo.recipe("qq", &native("qq", &["pp"], ""), "q\n");
    let out = repo.comb(&["build", "--all"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("cycle") && err.contains("pp -> qq -> pp") || err.contains("qq -> pp -> qq"),
        "{err}"
    );

    std::fs::remove_dir_all(repo.root.join("qq")).unwrap();
    repo.recipe("pp", &native("pp", &["nobody-provides-this"], ""), "p\n");
    let out = repo.comb(&["build", "--all"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("nobody-provides-this"), "{err}");

    repo.recipe("pp2", &native("pp", &[], ""), "p\n");
    let out = repo.comb(&["build", "--all"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("pp/recipe.toml") && err.contains("pp2/recipe.toml"),
        "{err}"
    );
}

/// Starts `comb build --all` and reads its stderr until a build starts:
/// the child, and the rest of its stderr.
fn build_until_building(
    repo: &Repo,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
) {
    let mut child = repo
        .command(&["build", "--all"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        eprintln!("{line}");
        if line.starts_with("build") && line.contains("building") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120));
    }
    (child, lines)
}

#[test]
fn a_killed_build_is_finished_by_the_next_run() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    repo.recipe(
        "slow",
        &native("slow", &[], "echo starting; sleep 5"),
        "s\n",
    );
    let (mut child, _) = build_until_building(&repo);
    std::thread::sleep(Duration::from_millis(1000));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let (code, builds, _) = repo.build(&[]);
    assert_eq!(code, Some(0));
    assert_eq!(builds["slow"], "built");
    let tmp: Vec<_> = std::fs::read_dir(repo.store.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "{tmp:?}");
}

/// A build-dependency cycle that the snapshot can break is cut there: the
/// recipe whose requirement the snapshot's binary satisfies builds against
/// it first, and comb says which edge it cut.
#[test]
fn a_cycle_the_snapshot_can_break_is_cut_and_said() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    // `hello` is also the mirror's binary; `cycle-b` is only the repository's.
    repo.recipe("hello", &native("hello", &["cycle-b"], ""), "h\n");
    repo.recipe("cycle-b", &native("cycle-b", &["hello"], ""), "b\n");
    let out = repo.comb(&["build", "--all"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "build dependency cycle cut: cycle-b builds against the snapshot's hello instead of \
             hello's, then hello builds on it"
        ),
        "{stderr}"
    );
    // comb why and comb report say it too.
    let why = repo.comb(&["why", "cycle-b"]);
    let why = String::from_utf8_lossy(&why.stdout);
    let cut = "build dependency cycle cut: cycle-b built against the snapshot's hello instead of \
               hello's";
    assert!(why.contains(cut), "{why}");
    let report = repo.comb(&["report"]);
    assert!(String::from_utf8_lossy(&report.stdout).contains(cut));
    let report = repo.comb(&["report", "--json"]);
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(
        report["runs"][0]["cycles_cut"],
        serde_json::json!([{"from": "cycle-b", "to": "hello", "binaries": ["hello"]}])
    );
    let (_, builds, _) = repo.build(&[]);
    assert_eq!(builds["hello"], "hit");
    assert_eq!(builds["cycle-b"], "hit");
    // With nothing of the snapshot to break it, a cycle stays an error.
    repo.recipe("cycle-c", &native("cycle-c", &["cycle-d"], ""), "c\n");
    repo.recipe("cycle-d", &native("cycle-d", &["cycle-c"], ""), "d\n");
    let out = repo.comb(&["build", "--all"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cycle-c -> cycle-d -> cycle-c"), "{stderr}");
}

/// `[build] archive-rebuild`: every package builds against the snapshot's
/// binaries, none against another recipe's, so a cycle between recipes is
/// no cycle at all.
#[test]
fn an_archive_rebuild_builds_against_the_snapshot_only() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    repo.recipe("hello", &native("hello", &[], ""), "h\n");
    repo.recipe("uses-hello", &native("uses-hello", &["hello"], ""), "u\n");
    let from_repository = |repo: &Repo| -> Vec<Value> {
        let out = repo.comb(&["why", "uses-hello", "--json"]);
        assert!(out.status.success(), "{out:?}");
        let why: Value = serde_json::from_slice(&out.stdout).unwrap();
        why["stages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["stage"] == "resolve" && s["name"] == "pkg-env:uses-hello")
            .flat_map(|s| s["from_repository"].as_array().unwrap().clone())
            .collect()
    };
    let (code, _, _) = repo.build(&[]);
    assert_eq!(code, Some(0));
    assert_eq!(from_repository(&repo), [Value::from("hello 1.0-1")]);
    let toml = repo.root.join("comb.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str("\n[build]\narchive-rebuild = true\n");
    std::fs::write(&toml, text).unwrap();
    let (code, builds, _) = repo.build(&[]);
    assert_eq!(code, Some(0), "{builds:?}");
    assert_eq!(builds["uses-hello"], "built");
    assert!(from_repository(&repo).is_empty());
}

/// Other combs opening the store (each removes what writers that are gone
/// left in its tmp/) while builds run leave the running builds alone:
/// their work directories, and what the sandbox makes beside one for a
/// writable bind, belong to the building writer. Many short builds, so
/// that the sandboxes' setting up meets the cleaning.
#[test]
fn other_combs_opening_the_store_leave_running_builds_alone() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    let names: Vec<String> = (0..16).map(|i| format!("quick{i:02}")).collect();
    for name in &names {
        repo.recipe(name, &native(name, &[], "true"), "q\n");
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    let (code, builds, _) = std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let out = repo.comb(&["stats"]);
                    assert!(out.status.success(), "{out:?}");
                }
            });
        }
        let result = repo.build(&["-j", "2"]);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    });
    assert_eq!(code, Some(0), "{builds:?}");
    for name in &names {
        assert_eq!(builds[name], "built", "{builds:?}");
    }
}

#[test]
fn ctrl_c_kills_the_running_builds_and_the_next_run_finishes() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    repo.recipe(
        "sleepy",
        &native("sleepy", &[], "echo starting; sleep 600"),
        "s\n",
    );
    let (mut child, lines) = build_until_building(&repo);
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    assert!(rest.iter().any(|l| l.contains("FAILED")), "{rest:?}");
    // No sandbox process is left.
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).contains("sleep 600"));
    // A quick build of the same recipe now succeeds, and nothing failed
    // was kept.
    repo.recipe("sleepy", &native("sleepy", &[], "echo quick"), "s\n");
    let (code, builds, _) = repo.build(&[]);
    assert_eq!(code, Some(0));
    assert_eq!(builds["sleepy"], "built");
}

#[test]
fn a_url_source_is_verified_then_built() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    let staging = repo.root.parent().unwrap().join("tarball-src");
    std::fs::create_dir_all(staging.join("tool-1.0")).unwrap();
    std::fs::write(staging.join("tool-1.0/README"), "from a tarball\n").unwrap();
    let tarball = repo.root.parent().unwrap().join("tool-1.0.tar.gz");
    let tar = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&staging)
        .arg("tool-1.0")
        .status()
        .unwrap();
    assert!(tar.success());
    let sha = {
        let out = Command::new("sha256sum").arg(&tarball).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let recipe = |sha: &str| {
        format!(
            "[package]\nname = \"tool\"\nversion = \"1.0-1\"\nsummary = \"a tool\"\nlicense = \"MIT\"\n\n\
             [source]\nurl = \"file://{}\"\nsha256 = \"{sha}\"\n\n[build]\nscript = \"\"\"\n\
             mkdir -p \"$DESTDIR/usr/share/doc/tool\"\ncp README \"$DESTDIR/usr/share/doc/tool/\"\n\"\"\"\n\n\
             [[output]]\nname = \"tool\"\narchitecture = \"all\"\nfiles = [\"usr/share/doc/tool/**\"]\n",
            tarball.display()
        )
    };
    let dir = repo.root.join("tool");
    std::fs::create_dir_all(&dir).unwrap();
    let wrong = "0".repeat(64);
    std::fs::write(dir.join("recipe.toml"), recipe(&wrong)).unwrap();
    let out = repo.comb(&["build", "--all"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("tool/recipe.toml") && err.contains(&sha) && err.contains(&wrong),
        "{err}"
    );

    std::fs::write(dir.join("recipe.toml"), recipe(&sha)).unwrap();
    let out_dir = repo.root.parent().unwrap().join("out");
    let (code, builds, _) = repo.build(&["--out", out_dir.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert_eq!(builds["tool"], "built");
    let deb = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap();
    let listing = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).contains("./usr/share/doc/tool/README"));
}

/// A build runs under the repository's `[limits]`, a recipe's
/// `[build.limits]` override them, a build that goes over one is killed
/// with a failure that names it, and `comb why` says what a build ran
/// under.
#[test]
fn builds_run_under_limits_that_name_themselves_when_they_fire() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    let toml = repo.root.join("comb.toml");
    let mut config = std::fs::read_to_string(&toml).unwrap();
    config.push_str("\n[limits]\ndisk = \"48M\"\nfile_size = \"40M\"\n");
    std::fs::write(&toml, config).unwrap();
    // Writes 96 MiB into its work directory (on the host's disk, not a
    // tmpfs) in 8 MiB files, then waits for pid 1 to measure it.
    let fill = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do dd if=/dev/zero of=fill$i bs=1M count=8 2>/dev/null; done; sleep 3; rm -f fill*";
    repo.recipe("filler", &native("filler", &[], fill), "f\n");
    // The same with its own, larger disk limit.
    let roomy = format!(
        "{}\n[build.limits]\ndisk = \"1G\"\n",
        native("roomy", &[], fill)
    );
    repo.recipe("roomy", &roomy, "r\n");
    // One file larger than the repository's file size limit.
    let big = "dd if=/dev/zero of=one bs=1M count=64 2>/dev/null; rm -f one";
    let bigfile = format!(
        "{}\n[build.limits]\ndisk = \"1G\"\n",
        native("bigfile", &[], big)
    );
    repo.recipe("bigfile", &bigfile, "b\n");

    let (code, builds, events) = repo.build(&["--keep-going"]);
    assert_eq!(code, Some(1), "{events:?}");
    assert_eq!(
        builds,
        statuses(&[
            ("bigfile", "failed"),
            ("filler", "failed"),
            ("roomy", "built")
        ])
    );
    let reason = |name: &str| {
        events
            .iter()
            .find(|e| e["stage"] == "build" && e["name"] == name)
            .and_then(|e| e["reason"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        reason("filler").contains("disk limit 48 MiB reached"),
        "{}",
        reason("filler")
    );
    let bigfile_reason = reason("bigfile");
    assert!(
        bigfile_reason.contains("file size limit 40 MiB reached"),
        "{bigfile_reason}"
    );

    let out = repo.comb(&["why", "roomy"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("ran under:")
            && text.contains("disk limit 1 GiB (measured)")
            && text.contains("file size limit 40 MiB (rlimit)"),
        "{text}"
    );
}

/// A build's escape sequences reach the user's terminal as text: the
/// failure's log tail and `-v`'s stream show them escaped, and the stored
/// log keeps them byte for byte.
#[test]
fn a_build_log_cannot_drive_the_terminal() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    repo.recipe(
        "hostile",
        &native("hostile", &[], "cat data; exit 3"),
        "title \x1b]0;pwned\x07 clear \x1b[2J \u{9b} line\r\n",
    );
    let out = repo.comb(&["build", "--all", "-v"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r"title \x1b]0;pwned\x07 clear \x1b[2J"),
        "{err}"
    );
    for raw in [0x1b_u8, 0x07, 0xc2, b'\r'] {
        assert!(
            !out.stderr.contains(&raw),
            "byte {raw:#x} reached stderr: {err}"
        );
    }
    let log = repo.comb(&["log", "hostile"]);
    assert!(
        log.stdout.windows(4).any(|w| w == b"\x1b]0;"),
        "the stored log is not byte-exact: {}",
        String::from_utf8_lossy(&log.stdout)
    );
}

/// A build's stdout and stderr are one stream, as on Debian's buildds: its
/// stored log has what it printed in the order it printed it.
#[test]
fn a_build_log_keeps_the_order_of_stdout_and_stderr() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    let script = "for i in 1 2 3; do echo \"out $i\"; echo \"err $i\" >&2; done";
    repo.recipe("talker", &native("talker", &[], script), "t\n");
    let (code, _, events) = repo.build(&[]);
    assert_eq!(code, Some(0), "{events:?}");
    let log = repo.comb(&["log", "talker"]);
    let text = String::from_utf8_lossy(&log.stdout);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("out ") || l.starts_with("err "))
        .collect();
    assert_eq!(
        lines,
        ["out 1", "err 1", "out 2", "err 2", "out 3", "err 3"],
        "{text}"
    );
}

/// `comb build --dry-run --json` of `repo`: the plan, and comb's exit code.
fn plan(repo: &Repo, packages: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["build", "--dry-run", "--json"];
    args.extend(packages);
    let out = repo.comb(&args);
    let plan = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), plan)
}

/// Each package of a plan with its action.
fn actions(plan: &Value) -> std::collections::BTreeMap<String, String> {
    plan["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The runs the store's index holds.
fn runs(repo: &Repo) -> i64 {
    rusqlite::Connection::open(repo.store.join("index.sqlite"))
        .unwrap()
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap()
}

/// `--dry-run` says what a run would build and why, in build order, and
/// records and builds nothing; the run that follows builds exactly that.
#[test]
fn a_dry_run_plans_what_a_build_then_does() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    chain(&repo);

    // A cold store: the base comes first, everything waits for it.
    let runs_before = runs(&repo);
    let (code, cold) = plan(&repo, &[]);
    assert_eq!(code, Some(0), "{cold}");
    assert_eq!(cold["base_built"], false);
    let stages: Vec<&str> = cold["base"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["base-install"], "{cold}");
    assert!(actions(&cold).values().all(|a| a == "after"), "{cold}");
    let order: Vec<&str> = cold["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let at = |n: &str| order.iter().position(|o| *o == n).unwrap();
    assert!(at("aa") < at("bb") && at("bb") < at("cc"), "{order:?}");
    assert_eq!(runs(&repo), runs_before, "a plan records no run");
    assert!(!repo.store.join("trees").read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("base-")));

    let (code, _, _) = repo.build(&[]);
    assert_eq!(code, Some(0));
    let runs_after_build = runs(&repo);

    // Built: all cached.
    let (code, warm) = plan(&repo, &[]);
    assert_eq!(code, Some(0));
    assert!(actions(&warm).values().all(|a| a == "cached"), "{warm}");

    // A change: the changed package would build, saying why; what needs
    // it comes after; the rest is cached.
    std::fs::write(repo.root.join("aa/src/data"), "a2\n").unwrap();
    let (code, changed) = plan(&repo, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        actions(&changed),
        statuses(&[
            ("aa", "build"),
            ("bb", "after"),
            ("cc", "after"),
            ("dd", "cached")
        ])
    );
    let aa = &changed["packages"].as_array().unwrap()[at("aa")];
    assert_eq!(aa["stage"], "build", "{aa}");
    assert!(aa["reason"].as_str().unwrap().contains("data"), "{aa}");
    let bb = &changed["packages"].as_array().unwrap()[at("bb")];
    assert_eq!(bb["reason"], "aa", "{bb}");
    // The human form says the same.
    let out = repo.comb(&["build", "--dry-run", "cc"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("build   aa 1.0-1 (build: "), "{text}");
    assert!(text.contains("after   cc 1.0-1 (after bb)"), "{text}");
    assert!(!text.contains("dd"), "only what cc needs: {text}");
    assert_eq!(runs(&repo), runs_after_build, "a plan records no run");

    // The run builds what the plan said.
    let (_, builds, _) = repo.build(&[]);
    assert_eq!(
        builds,
        statuses(&[
            ("aa", "built"),
            ("bb", "built"),
            ("cc", "built"),
            ("dd", "hit")
        ])
    );
}

/// A package whose build dependencies cannot be satisfied is named by the
/// plan with the resolver's explanation, whatever it waits for; the plan
/// exits 1.
#[test]
fn a_dry_run_names_unsatisfiable_build_dependencies() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    repo.recipe("fine", &native("fine", &[], ""), "f\n");
    repo.recipe(
        "broken",
        &native("broken", &["fine", "no-such-package (>= 2)"], ""),
        "b\n",
    );
    let (code, plan) = plan(&repo, &[]);
    assert_eq!(code, Some(1), "{plan}");
    assert_eq!(
        actions(&plan),
        statuses(&[("broken", "unsatisfiable"), ("fine", "after")])
    );
    let broken = plan["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "broken")
        .unwrap();
    let why = broken["reason"].as_str().unwrap();
    assert!(
        why.contains("comb-build-deps : Depends: no-such-package (>= 2) but it is not installable"),
        "{why}"
    );
    // The repository's own package is taken as there.
    assert!(!why.contains("fine"), "{why}");
}

/// A `dpkg-buildflags` of the generated mirror: what it says names the
/// directory it ran in and whether that directory was writable (the
/// build's is; the executor's run ahead of the build binds it
/// read-only). `warning` is written to stderr when given.
fn fake_dpkg_buildflags(version: &str, warning: &str) -> crate::mirror::PackageSpec {
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = --export=sh ] || exit 2\n\
         if (: >.w) 2>/dev/null; then rm .w; how=in-build; else how=ahead; fi\n\
         echo 'export CFLAGS=\"-O2 -ffile-prefix-map='\"$(pwd)\"'=.\"'\n\
         echo \"export FLAGS_HOW=$how\"\n\
         [ -z '{warning}' ] || echo 'dpkg-buildflags: warning: {warning}' >&2\n"
    );
    crate::mirror::PackageSpec::new("fake-dpkg-dev", version).file(
        "/usr/bin/dpkg-buildflags",
        script,
        0o755,
    )
}

/// The `flags` file the probe recipe wrote, from its package in `out`.
fn probed_flags(repo: &Repo, out: &std::path::Path) -> String {
    let (code, _, events) = repo.build(&["--out", out.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{events:?}");
    let deb = crate::native_packages::deb(out, "probe");
    let unpacked = out.join("unpacked");
    let _ = std::fs::remove_dir_all(&unpacked);
    let x = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
    std::fs::read_to_string(unpacked.join("usr/share/probe/flags")).unwrap()
}

/// A native build's compiler flags are `dpkg-buildflags`' output, run once
/// per environment ahead of the build and kept in the store; the build
/// evaluates the kept text (and sees no trace of how it came). A run that
/// writes to stderr is not kept: the build runs the command itself and
/// its warning stays in the build's log.
#[test]
fn dpkg_buildflags_runs_once_per_environment_and_its_output_is_what_builds_see() {
    if !is_root() {
        return;
    }
    let mut repo = Repo::new();
    repo.mirror.add_package(&fake_dpkg_buildflags("1", ""));
    assert!(repo.comb(&["update"]).status.success());
    let probe = |repo: &Repo, nonce: &str| {
        let script = "printf '%s\\n' \"CFLAGS=$CFLAGS\" \"how=$FLAGS_HOW\" \
                      \"passed=${COMB_BUILDFLAGS-unset}\" > flags";
        repo.recipe("probe", &native("probe", &["fake-dpkg-dev"], script), nonce);
    };
    let out = repo.root.parent().unwrap().join("out");
    probe(&repo, "1\n");
    let flags = probed_flags(&repo, &out);
    assert_eq!(
        flags,
        "CFLAGS=-O2 -ffile-prefix-map=/build/src=.\nhow=ahead\npassed=unset\n"
    );
    let kept: Vec<_> = std::fs::read_dir(repo.store.join("buildflags"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        std::fs::read_to_string(&kept[0]).unwrap(),
        "export CFLAGS=\"-O2 -ffile-prefix-map=/build/src=.\"\nexport FLAGS_HOW=ahead\n"
    );

    // The next build of that environment takes the kept text as it is.
    std::fs::write(&kept[0], "export CFLAGS=kept\nexport FLAGS_HOW=kept\n").unwrap();
    probe(&repo, "2\n");
    let flags = probed_flags(&repo, &out);
    assert!(flags.starts_with("CFLAGS=kept\nhow=kept\n"), "{flags}");

    // Another environment, whose dpkg-buildflags warns: run in the build.
    repo.mirror
        .add_package(&fake_dpkg_buildflags("2", "a feature unknown"));
    assert!(repo.comb(&["update"]).status.success());
    probe(&repo, "3\n");
    let flags = probed_flags(&repo, &out);
    assert_eq!(
        flags,
        "CFLAGS=-O2 -ffile-prefix-map=/build/src=.\nhow=in-build\npassed=unset\n"
    );
    let log = repo.comb(&["log", "probe"]);
    assert!(
        String::from_utf8_lossy(&log.stdout)
            .contains("dpkg-buildflags: warning: a feature unknown"),
        "{}",
        String::from_utf8_lossy(&log.stdout)
    );
    assert_eq!(
        std::fs::read_dir(repo.store.join("buildflags"))
            .unwrap()
            .count(),
        1
    );
}
