//! `comb check` end to end over the generated signed mirror: a
//! deterministic package is GOOD, one that embeds a random id is BAD (with
//! the file that differs), a failing one is FAIL (a build failure) and what
//! needs it SKIPPED, and a BAD dependency does not stop its dependents from
//! being checked. Needs root for the sandbox, like CI.

mod mirror;
mod repo;

use repo::{is_root, native, Repo};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

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
        ])
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

    // Only what is named is checked; the text form.
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
    repo.recipe("plain", &native("plain", &[], ""), "x\n");

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
    ] {
        let (code, packages, _) = check(&repo, &["--vary", variation]);
        assert_eq!(code, Some(1), "--vary {variation}");
        for (name, p) in &packages {
            let want = if name == embeds { "BAD" } else { "GOOD" };
            assert_eq!(p["state"], want, "--vary {variation}: {name}: {p}");
            assert_eq!(p["variations"]["applied"], serde_json::json!([variation]));
        }
    }

    // Everything varied: the plain package stays GOOD, and what the host
    // cannot vary is said.
    let (_, packages, _) = check(&repo, &["--vary", "all", "plain"]);
    let plain = &packages["plain"];
    assert_eq!(plain["state"], "GOOD", "{plain}");
    let not_applied = plain["variations"]["not_applied"].as_object().unwrap();
    assert!(not_applied["uid"].as_str().unwrap().contains("uid 1000"));
    assert!(not_applied["directory_order"]
        .as_str()
        .unwrap()
        .contains("FUSE"));
    let applied = plain["variations"]["applied"].as_array().unwrap();
    assert!(applied.contains(&Value::from("hostname")) && applied.contains(&Value::from("locale")));

    // A name that is no variation is refused.
    let out = repo.comb(&["check", "--vary", "moon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown variation"));
}
