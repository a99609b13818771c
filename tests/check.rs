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
