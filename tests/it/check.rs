//! `comb check` end to end over the generated signed mirror: a
//! deterministic package is GOOD, one that embeds a random id is BAD (with
//! the file that differs), a failing one is FAIL (a build failure) and what
//! needs it SKIPPED, and a BAD dependency does not stop its dependents from
//! being checked. Needs root for the sandbox, like CI.

use crate::repo;

use repo::{is_root, native, Repo};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `comb check --json`: each package's object by name, and the summary.
fn check(repo: &Repo, extra: &[&str]) -> (Option<i32>, BTreeMap<String, Value>, Value) {
    let mut args = vec!["check", "--json"];
    args.extend(extra);
    let out = repo.comb(&args);
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = lines.last().cloned().unwrap_or(Value::Null);
    let packages = lines
        .iter()
        .filter(|l| l["event"] == "package")
        .map(|l| {
            (
                l["package"]["name"].as_str().unwrap().to_string(),
                l["package"].clone(),
            )
        })
        .collect();
    (out.status.code(), packages, summary)
}

#[test]
fn good_bad_fail_and_skipped() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    repo.recipe("steady", &native("steady", &[], ""), "s\n");
    repo.recipe(
        "dated",
        &native("dated", &[], "cat /proc/sys/kernel/random/uuid > stamp"),
        "d\n",
    );
    repo.recipe("after-dated", &native("after-dated", &["dated"], ""), "a\n");
    repo.recipe(
        "broken",
        &native("broken", &[], "echo it breaks; exit 4"),
        "b\n",
    );
    repo.recipe(
        "needs-broken",
        &native("needs-broken", &["broken"], ""),
        "n\n",
    );

    let (code, packages, summary) = check(&repo, &[]);
    assert_eq!(code, Some(1));
    let state = |name: &str| packages[name]["state"].as_str().unwrap().to_string();
    assert_eq!(state("steady"), "GOOD");
    assert_eq!(state("dated"), "BAD");
    assert_eq!(
        state("after-dated"),
        "GOOD",
        "a BAD dependency stops nothing"
    );
    assert_eq!(state("broken"), "FAIL");
    assert_eq!(packages["broken"]["failure"], "build");
    assert!(packages["broken"]["reason"]
        .as_str()
        .unwrap()
        .contains("it breaks"));
    assert_eq!(state("needs-broken"), "SKIPPED");
    assert!(packages["needs-broken"]["reason"]
        .as_str()
        .unwrap()
        .contains("broken"));
    assert_eq!(
        (
            &summary["good"],
            &summary["bad"],
            &summary["fail"],
            &summary["skipped"]
        ),
        (
            &Value::from(2),
            &Value::from(1),
            &Value::from(1),
            &Value::from(1)
        ),
        "{summary}"
    );

    // The schema, and what a BAD package says.
    let keys: BTreeSet<&str> = packages["dated"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "name",
            "state",
            "failure",
            "recorded",
            "rebuilt",
            "differences",
            "reason",
            "log",
            "attempts",
            "duration_ms",
            "variations",
            "compared_with",
            "not_in_distro",
            "diffoscope",
            "diffoscope_note",
        ])
    );
    // The generated mirror has no diffoscope-minimal: said, not hidden.
    assert!(packages["dated"]["diffoscope"].is_null());
    assert!(
        packages["dated"]["diffoscope_note"]
            .as_str()
            .unwrap()
            .contains("diffoscope"),
        "{}",
        packages["dated"]
    );
    let differences = packages["dated"]["differences"].as_array().unwrap();
    let stamp = differences
        .iter()
        .find(|d| d["path"] == "./usr/share/dated/stamp")
        .unwrap_or_else(|| panic!("{differences:?}"));
    assert_eq!(stamp["part"], "data");
    assert_ne!(stamp["recorded"]["sha256"], stamp["rebuilt"]["sha256"]);
    // The md5sums of the control part differ with it.
    assert!(differences
        .iter()
        .any(|d| d["part"] == "control" && d["path"] == "md5sums"));
    assert_ne!(
        packages["dated"]["recorded"][0]["sha256"],
        packages["dated"]["rebuilt"][0]["sha256"]
    );
    assert_eq!(
        packages["steady"]["recorded"], packages["steady"]["rebuilt"],
        "{}",
        packages["steady"]
    );

    // The recorded builds stay what they were: a build is all hits.
    let (_, builds, _) = repo.build(&["--keep-going"]);
    assert_eq!(builds["steady"], "hit");
    assert_eq!(builds["dated"], "hit");

    // The history: a second check run, and the report's "failing since".
    let (_, again, _) = check(&repo, &[]);
    assert_eq!(again["broken"]["state"], "FAIL");
    let out = repo.comb(&["report", "--json"]);
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = report["checks"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{report}");
    assert_eq!(
        (&runs[0]["good"], &runs[0]["bad"]),
        (&Value::from(2), &Value::from(1))
    );
    let failing = report["failing_since"].as_array().unwrap();
    let broken = failing.iter().find(|f| f["package"] == "broken").unwrap();
    assert_eq!(broken["state"], "FAIL");
    assert_eq!(broken["runs"], 2);
    assert_eq!(broken["since_run"], runs[0]["run"]);
    assert!(broken["reason"].as_str().unwrap().contains("it breaks"));
    assert!(failing
        .iter()
        .any(|f| f["package"] == "dated" && f["state"] == "BAD"));
    assert!(!failing.iter().any(|f| f["package"] == "steady"));
    let out = repo.comb(&["report"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("failing since:"), "{text}");

    // Another repository in the same store has a history of its own: its
    // `broken` builds, and the first repository's failures are not its.
    let other = repo.root.parent().unwrap().join("other");
    std::fs::create_dir_all(other.join("broken/src")).unwrap();
    for file in ["comb.toml", "comb.lock"] {
        std::fs::copy(repo.root.join(file), other.join(file)).unwrap();
    }
    std::fs::write(other.join("broken/recipe.toml"), native("broken", &[], "")).unwrap();
    std::fs::write(other.join("broken/src/data"), "fine here\n").unwrap();
    let in_other = |args: &[&str]| {
        let mut c = Command::new(repo::COMB);
        c.args(args)
            .arg("--repo")
            .arg(&other)
            .arg("--store")
            .arg(&repo.store);
        repo::logged(args, &mut c)
    };
    assert!(in_other(&["check", "--all"]).status.success());
    let out = in_other(&["report", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["checks"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["failing_since"], serde_json::json!([]), "{report}");

    // The report page of a check run.
    let page = repo.root.parent().unwrap().join("check.html");
    let out = repo.comb(&["check", "--html", page.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("\"failing_since\":[") && html.contains("\"package\":\"broken\""));
    // The run's own results, each with what differs or failed.
    let out = repo.comb(&["report", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = report["runs"][0]["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 5, "{checks:?}");
    let dated = checks.iter().find(|c| c["package"] == "dated").unwrap();
    assert_eq!(dated["state"], "BAD");
    assert!(dated["differences"]
        .as_array()
        .unwrap()
        .contains(&Value::from("dated data:./usr/share/dated/stamp")));

    // Only what is named is checked: what it needs is built (found), not
    // checked.
    let (code, named, _) = check(&repo, &["after-dated"]);
    assert_eq!(code, Some(0));
    assert_eq!(named.keys().collect::<Vec<_>>(), ["after-dated"]);
    // A named package whose dependency fails is SKIPPED, and the failure
    // is shown.
    let (_, named, _) = check(&repo, &["needs-broken"]);
    assert_eq!(named["needs-broken"]["state"], "SKIPPED");
    assert_eq!(named["broken"]["state"], "FAIL");

    // The text form.
    let out = repo.comb(&["check", "steady"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("GOOD     steady"), "{text}");
    assert!(
        text.contains("1 packages: 1 GOOD, 0 BAD, 0 FAIL, 0 SKIPPED"),
        "{text}"
    );
}

#[test]
fn a_variation_shows_what_a_build_embeds() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    repo.recipe("host", &native("host", &[], "hostname > host"), "h\n");
    repo.recipe("place", &native("place", &[], "pwd > place"), "p\n");
    repo.recipe("zone", &native("zone", &[], "date +%Z > zone"), "z\n");
    repo.recipe("mask", &native("mask", &[], "umask > mask"), "m\n");
    repo.recipe(
        "owner",
        &native(
            "owner",
            &[],
            "echo \"$(id -u) $(id -un) $HOME\" > owner && touch \"$HOME/ok\"",
        ),
        "o\n",
    );
    repo.recipe("plain", &native("plain", &[], ""), "x\n");
    // Builds only on the host name it always had.
    repo.recipe(
        "picky",
        &native("picky", &[], "test \"$(hostname)\" = comb-build"),
        "p\n",
    );

    // Pinned (the default), everything is GOOD.
    let (code, packages, _) = check(&repo, &[]);
    assert_eq!(code, Some(0));
    assert!(
        packages.values().all(|p| p["state"] == "GOOD"),
        "{packages:?}"
    );
    assert!(packages["plain"]["variations"].is_null());

    // Each variation shows the package that embeds what it varies, and
    // only that one.
    for (variation, embeds) in [
        ("hostname", "host"),
        ("build_path", "place"),
        ("timezone", "zone"),
        ("umask", "mask"),
        ("uid", "owner"),
    ] {
        let (code, packages, _) = check(&repo, &["--vary", variation]);
        assert_eq!(code, Some(1), "--vary {variation}");
        for (name, p) in &packages {
            let want = match (name.as_str(), variation) {
                (n, _) if n == embeds => "BAD",
                ("picky", "hostname") => "FAIL",
                _ => "GOOD",
            };
            assert_eq!(p["state"], want, "--vary {variation}: {name}: {p}");
            // A failed rebuild says what was varied too.
            assert_eq!(p["variations"]["applied"], serde_json::json!([variation]));
        }
    }

    // Everything varied: the plain package stays GOOD, and what the host
    // cannot vary is said.
    let (_, packages, _) = check(&repo, &["--vary", "all", "plain"]);
    let plain = &packages["plain"];
    assert_eq!(plain["state"], "GOOD", "{plain}");
    let not_applied = plain["variations"]["not_applied"].as_object().unwrap();
    assert!(!not_applied.contains_key("uid"), "{plain}");
    // Directory order is reversed by a preloaded library compiled with the
    // host's C compiler (CI has gcc).
    assert!(!not_applied.contains_key("directory_order"), "{plain}");
    let applied = plain["variations"]["applied"].as_array().unwrap();
    assert!(applied.contains(&Value::from("hostname")) && applied.contains(&Value::from("locale")));

    // A name that is no variation is refused.
    let out = repo.comb(&["check", "--vary", "moon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown variation"));
}

/// Kills the first sandbox monitor that `parent` starts, once it has run a
/// while: an infrastructure failure of the build it was running.
fn kill_a_monitor(parent: u32, deadline: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < deadline {
        let ps = Command::new("ps")
            .args(["-eo", "pid=,ppid=,args="])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&ps.stdout).into_owned();
        let mine = text.lines().find_map(|l| {
            let mut fields = l.split_whitespace();
            let pid: i32 = fields.next()?.parse().ok()?;
            let ppid: u32 = fields.next()?.parse().ok()?;
            (ppid == parent && l.contains("__comb-sandbox-monitor")).then_some(pid)
        });
        if let Some(pid) = mine {
            std::thread::sleep(Duration::from_millis(300));
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn an_infrastructure_failure_is_kept_apart_and_retried() {
    if !is_root() {
        return;
    }
    let repo = Repo::new();
    repo.recipe("slow", &native("slow", &[], "sleep 2"), "s\n");
    // Recorded first, so the only sandbox of the checks is the rebuild's.
    assert!(repo.comb(&["build", "slow"]).status.success());

    for (retries, state, attempts) in [("0", "FAIL", 1), ("1", "GOOD", 2)] {
        let child = repo
            .command(&["check", "slow", "--json", "--retry-fail", retries])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(
            kill_a_monitor(child.id(), Duration::from_secs(60)),
            "no sandbox appeared"
        );
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let package: Value = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|l| l["event"] == "package")
            .unwrap_or_else(|| panic!("{text}\n{}", String::from_utf8_lossy(&out.stderr)))
            ["package"]
            .clone();
        assert_eq!(package["state"], state, "--retry-fail {retries}: {package}");
        assert_eq!(package["attempts"], attempts, "{package}");
        if state == "FAIL" {
            assert_eq!(package["failure"], "infrastructure", "{package}");
        }
    }
}
