//! `comb report` end to end: a run with hits, rebuilds, a failure and a
//! skip, over the generated signed mirror; the JSON schema is checked key
//! by key (a change to it must be deliberate), and the HTML page is loaded
//! in headless Chromium (Debian's `chromium`): its table, its sorting, its
//! `why` rows and its graph must be there after the page's script ran. A
//! screenshot is kept in `target/test-artifacts/report.png`. Needs root
//! for the sandbox, like CI.

use crate::repo;

use repo::{is_root, native, Repo};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn report(repo: &Repo, extra: &[&str]) -> Value {
    let mut args = vec!["report", "--json"];
    args.extend(extra);
    let out = repo.comb(&args);
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// aa <- bb <- cc, dd alone, ee fails and ff needs it.
fn repository() -> Repo {
    let repo = Repo::new();
    repo.recipe("aa", &native("aa", &[], ""), "a1\n");
    repo.recipe(
        "bb",
        &native("bb", &["aa"], "cat /usr/share/aa/data > from-a"),
        "b\n",
    );
    repo.recipe(
        "cc",
        &native("cc", &["bb"], "cat /usr/share/bb/from-a > from-b"),
        "c\n",
    );
    repo.recipe("dd", &native("dd", &[], ""), "d\n");
    let (code, _, _) = repo.build(&[]);
    assert_eq!(code, Some(0));
    // The second run: aa changes (so bb and cc follow), ee fails, ff waits.
    std::fs::write(repo.root.join("aa/src/data"), "a2\n").unwrap();
    repo.recipe("ee", &native("ee", &[], "echo ee breaks; exit 7"), "e\n");
    repo.recipe("ff", &native("ff", &["ee"], ""), "f\n");
    let (code, _, _) = repo.build(&["--keep-going"]);
    assert_eq!(code, Some(1));
    repo
}

#[test]
fn the_report_counts_explains_and_renders() {
    if !is_root() {
        return;
    }
    let repo = repository();
    let r = report(&repo, &[]);

    // The schema, key by key.
    assert_eq!(
        keys(&r),
        set(&[
            "schema",
            "runs",
            "trend",
            "build_time_changes",
            "checks",
            "failing_since"
        ])
    );
    assert_eq!(r["schema"], 1);
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(
        keys(run),
        set(&[
            "id",
            "command",
            "status",
            "started_at",
            "duration_ms",
            "stages",
            "total",
            "hit_rate",
            "time_saved_ms",
            "time_spent_ms",
            "slowest",
            "critical_path",
            "failures",
            "packages",
            "graph",
            "cycles_cut",
            "checks",
        ])
    );
    let counts = set(&[
        "hit",
        "fetched",
        "built",
        "built_remotely",
        "failed",
        "skipped",
    ]);
    assert_eq!(keys(&run["total"]), counts);
    for (_, c) in run["stages"].as_object().unwrap() {
        assert_eq!(keys(c), counts);
    }
    assert_eq!(
        keys(&run["critical_path"]),
        set(&["duration_ms", "packages"])
    );
    for s in run["slowest"].as_array().unwrap() {
        assert_eq!(keys(s), set(&["name", "stage", "status", "duration_ms"]));
    }
    for f in run["failures"].as_array().unwrap() {
        assert_eq!(keys(f), set(&["name", "stage", "reason", "log"]));
    }
    let packages = run["packages"].as_array().unwrap();
    for p in packages {
        assert_eq!(
            keys(p),
            set(&[
                "name",
                "status",
                "stage",
                "duration_ms",
                "key",
                "reasons",
                "why",
                "error"
            ])
        );
        for w in p["why"].as_array().unwrap() {
            assert_eq!(
                keys(w),
                set(&["stage", "name", "status", "duration_ms", "reasons"])
            );
        }
    }
    for t in r["trend"].as_array().unwrap() {
        assert_eq!(keys(t), set(&["run", "started_at", "hit_rate"]));
    }

    // What the run did.
    assert_eq!(run["status"], "failed");
    let build = &run["stages"]["build"];
    assert_eq!(
        (
            &build["hit"],
            &build["built"],
            &build["failed"],
            &build["skipped"]
        ),
        (
            &Value::from(1),
            &Value::from(3),
            &Value::from(1),
            &Value::from(1)
        ),
        "{build}"
    );
    let status = |name: &str| {
        packages
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(status("dd")["status"], "hit");
    assert_eq!(status("ee")["status"], "failed");
    assert_eq!(status("ff")["status"], "skipped");
    assert!(status("ff")["error"].as_str().unwrap().contains("ee"));
    let aa = status("aa");
    assert_eq!(aa["status"], "built");
    assert!(
        aa["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("source file data changed"),
        "{aa}"
    );
    // bb's rebuild starts at its resolution, which names aa's new output.
    let bb = status("bb");
    assert_eq!(bb["stage"], "resolve", "{bb}");
    assert!(
        bb["why"][0]["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("build dependency aa now comes from aa 1.0-1"),
        "{bb}"
    );
    let failure = &run["failures"][0];
    assert_eq!(failure["name"], "ee");
    assert!(failure["reason"].as_str().unwrap().contains("ee breaks"));
    assert!(run["time_saved_ms"].as_u64().is_some());
    assert!(run["time_spent_ms"].as_u64().unwrap() > 0);
    assert_eq!(run["graph"]["cc"], serde_json::json!(["bb"]));
    assert_eq!(run["graph"]["ff"], serde_json::json!(["ee"]));
    let path: Vec<&str> = run["critical_path"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(!path.is_empty());

    // Two runs: a trend, oldest first.
    let two = report(&repo, &["--last", "2"]);
    let trend = two["trend"].as_array().unwrap();
    assert_eq!(trend.len(), 2);
    assert!(trend[0]["run"].as_i64() < trend[1]["run"].as_i64());
    assert_eq!(trend[0]["hit_rate"]["build"], 0.0);

    // The words.
    let out = repo.comb(&["report", "--last", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hit rate"), "{text}");
    assert!(text.contains("failures:"), "{text}");
    assert!(text.contains("ee breaks"), "{text}");
    assert!(
        text.contains("hit rate by stage, oldest run first:"),
        "{text}"
    );

    // The page, in a real browser.
    let page = repo.root.parent().unwrap().join("report.html");
    let out = repo.comb(&["report", "--html", page.to_str().unwrap()]);
    assert!(out.status.success());
    let html = std::fs::read_to_string(&page).unwrap();
    // Nothing is fetched: no external script, style, image or font.
    for external in [
        "src=",
        "href=\"http",
        "url(http",
        "url(//",
        "@import",
        "<link",
        "fetch(",
        "XMLHttpRequest",
    ] {
        assert!(
            !html.contains(external),
            "the page loads something: {external}"
        );
    }
    let dom = browser_dom(&page, "sort=duration_ms&dir=desc&open=bb");
    assert!(
        dom.contains("data-ready=\"yes\""),
        "the script did not finish:\n{dom}"
    );
    let rows = attribute_values(&dom, "tr class=\"pkg\" data-name=\"");
    assert_eq!(rows.len(), 6, "{rows:?}");
    let durations: Vec<u64> = rows
        .iter()
        .map(|n| status(n)["duration_ms"].as_u64().unwrap())
        .collect();
    let mut sorted = durations.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(
        durations, sorted,
        "rows {rows:?} are not by duration, longest first"
    );
    let why = dom
        .split("data-why=\"bb\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no why row for bb:\n{dom}"));
    assert!(
        why.contains("build dependency aa now comes from aa 1.0-1"),
        "{why}"
    );
    // Filtered to failures, sorted by name.
    let dom = browser_dom(&page, "status=failed");
    assert_eq!(
        attribute_values(&dom, "tr class=\"pkg\" data-name=\""),
        ["ee"]
    );
    let dom = browser_dom(&page, "sort=name&dir=desc");
    assert_eq!(
        attribute_values(&dom, "tr class=\"pkg\" data-name=\""),
        ["ff", "ee", "dd", "cc", "bb", "aa"]
    );
    // The graph: a node per package, the failure and the rebuilds marked.
    let nodes = attribute_values(&dom, "class=\"node status-");
    assert_eq!(nodes.len(), 6, "{nodes:?}");
    assert!(
        dom.contains("class=\"node status-failed\" data-name=\"ee\""),
        "{dom}"
    );
    assert!(dom.contains("class=\"node status-built\" data-name=\"aa\""));
    assert!(dom.contains("class=\"node status-skipped\" data-name=\"ff\""));
    assert!(dom.matches("class=\"edge\"").count() >= 3);
    screenshot(&page, &artifacts().join("report.png"));
}

/// Where tests keep what a person may want to look at.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chromium() -> Command {
    let found = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            Command::new("sh")
                .args(["-c", &format!("command -v {c}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| {
            panic!("headless Chromium is needed: install Debian's chromium (bash .ci/install-deps)")
        });
    let mut c = Command::new(found);
    c.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--virtual-time-budget=5000",
    ]);
    c
}

/// Runs headless Chromium with `args`; its standard output.
fn chromium_ok(args: &[String]) -> Vec<u8> {
    let out = chromium().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The page's DOM after its script ran, opened at `#fragment`.
fn browser_dom(page: &Path, fragment: &str) -> String {
    let dom = chromium_ok(&[
        "--dump-dom".into(),
        format!("file://{}#{fragment}", page.display()),
    ]);
    String::from_utf8_lossy(&dom).into_owned()
}

fn screenshot(page: &Path, png: &Path) {
    chromium_ok(&[
        format!("--screenshot={}", png.display()),
        "--window-size=1280,1400".into(),
        format!("file://{}#open=bb", page.display()),
    ]);
    let png_bytes = std::fs::read(png).unwrap();
    assert!(png_bytes.starts_with(b"\x89PNG") && png_bytes.len() > 10_000);
}

/// Every value that follows `prefix` up to the next `"`.
fn attribute_values(dom: &str, prefix: &str) -> Vec<String> {
    dom.split(prefix)
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}
