//! The status page of `comb serve` as a browser sees it: served by
//! `comb_service::http::serve` from a fake source and loaded in headless
//! Chromium (Debian's `chromium`), whose DOM is read after the page's script
//! has had time to refresh it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use comb_service::http::{serve, HttpServer, StatusSource};
use serde_json::{json, Value};

/// Serves `first` for the first status asked (the page itself), then
/// `later` for every refresh.
struct Fake {
    first: Value,
    later: Value,
    calls: AtomicUsize,
}

impl StatusSource for Fake {
    fn status(&self) -> Value {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            self.first.clone()
        } else {
            self.later.clone()
        }
    }
    fn request(&self, _id: i64) -> Option<Value> {
        None
    }
    fn report(&self, _run: Option<i64>) -> Result<Value, String> {
        Err("no runs".into())
    }
    fn report_page(&self, _run: i64) -> Result<String, String> {
        Err("no runs".into())
    }
}

fn start(first: Value, later: Value) -> HttpServer {
    let source = Arc::new(Fake {
        first,
        later,
        calls: AtomicUsize::new(0),
    });
    serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), source).unwrap()
}

fn status() -> Value {
    json!({
        "daemon": {"started_at": 1764530000, "socket": "/run/comb/comb.sock",
                   "repo": "/srv/repo", "version": "0.1.0"},
        "queue": [
            {"id": 12, "state": "queued", "kind": "submit", "pocket": "dev",
             "packages": ["hello"], "user": "alice", "uid": 1001, "queued_at": 1764530100},
            {"id": 13, "state": "queued", "kind": "promote", "pocket": "prod",
             "packages": ["greet", "libfoo"], "user": "carol", "uid": 1003,
             "queued_at": 1764530160}
        ],
        "running": [
            {"id": 11, "state": "running", "kind": "submit", "pocket": "dev",
             "packages": ["hello", "greet"], "user": "bob", "uid": 1002,
             "queued_at": 1764530000, "started_at": 1764530050, "run": 815,
             "building": [
                {"package": "hello", "stage": "build", "elapsed_ms": 12000,
                 "log_tail": ["dh_auto_build", "make -j4", "gcc -O2 -c hello.c -o hello.o",
                              "make[1]: Leaving directory '/build/hello-2.10'"]},
                {"package": "greet", "stage": "fetch", "elapsed_ms": 125000, "log_tail": []}
             ]}
        ],
        "recent": {
            "dev": [
                {"id": 10, "state": "succeeded", "kind": "submit", "packages": ["hello"],
                 "user": "alice", "finished_at": 1764530040, "run": 814,
                 "versions": {"hello": "2.10-3"}, "reason": null},
                {"id": 8, "state": "cancelled", "kind": "submit", "packages": ["greet"],
                 "user": "bob", "finished_at": 1764529500, "run": null,
                 "reason": "cancelled by bob"}
            ],
            "prod": [
                {"id": 9, "state": "failed", "kind": "promote", "packages": ["libfoo"],
                 "user": "carol", "finished_at": 1764529000, "run": 813,
                 "reason": "libfoo: build failed at stage build"},
                {"id": 7, "state": "refused", "kind": "submit", "packages": ["hello"],
                 "user": "mallory", "finished_at": 1764528000, "run": null,
                 "reason": "mallory may not submit to prod"}
            ]
        },
        "pockets": {
            "dev": {"publish": "/srv/apt/dev", "signed": true, "frozen": false,
                    "packages": {"hello": "2.10-3", "greet": "1.0-1"}},
            "prod": {"publish": "/srv/apt/prod", "signed": true, "frozen": true,
                     "packages": {"hello": "2.10-2"}}
        }
    })
}

/// The status once request 11 has finished and request 14 has come in.
fn later_status() -> Value {
    let mut s = status();
    s["queue"].as_array_mut().unwrap().push(json!(
        {"id": 14, "state": "queued", "kind": "submit", "pocket": "dev",
         "packages": ["latecomer"], "user": "dave", "uid": 1004, "queued_at": 1764530200}
    ));
    s["running"] = json!([]);
    s["recent"]["dev"].as_array_mut().unwrap().insert(
        0,
        json!({"id": 11, "state": "succeeded", "kind": "submit", "packages": ["hello", "greet"],
               "user": "bob", "finished_at": 1764530190, "run": 815,
               "versions": {"hello": "2.10-4", "greet": "1.0-2"}}),
    );
    s
}

fn chromium() -> Option<Command> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })?;
    Some(Command::new(found))
}

/// Runs headless Chromium on `url` with `args`, in a profile of its own;
/// its standard output. None when Chromium is not installed.
fn chromium_run(url: &str, args: &[String]) -> Option<String> {
    let Some(mut cmd) = chromium() else {
        eprintln!("note: skipped: headless Chromium not found (install Debian's chromium)");
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let out = cmd
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The DOM after `budget_ms` of virtual time: under 2000 ms the page is as
/// the server rendered it, past it the script has refreshed it.
fn dump_dom(server: &HttpServer, budget_ms: u32) -> Option<String> {
    let args = [
        "--dump-dom".to_string(),
        format!("--virtual-time-budget={budget_ms}"),
    ];
    chromium_run(
        &format!("http://127.0.0.1:{}/", server.addr().port()),
        &args,
    )
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

fn assert_has(dom: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            dom.contains(needle),
            "{needle} missing from the DOM:\n{dom}"
        );
    }
}

#[test]
fn chromium_shows_queue_running_logs_recent_results_and_pockets() {
    let server = start(status(), status());
    let Some(dom) = dump_dom(&server, 5000) else {
        return;
    };
    assert_has(
        &dom,
        &[
            // The script has refreshed the page from /api/status.
            "<div id=\"conn\" class=\"conn-live\">live",
            "<section id=\"queue\"><h2>Queue <span class=\"count\">2</span></h2>",
            "<tr class=\"state-queued\" data-id=\"12\"><td class=\"pos\">1</td>\
             <td class=\"id\">12</td><td class=\"pocket\">dev</td><td class=\"kind\">submit</td>\
             <td class=\"packages\">hello</td><td class=\"user\">alice</td>\
             <td class=\"time\">2025-11-30 19:15:00</td></tr>",
            "<td class=\"packages\">greet, libfoo</td>",
            "<section id=\"running\"><h2>Running <span class=\"count\">1</span></h2>",
            "<div class=\"build state-running\" data-id=\"11\">",
            "<span class=\"run\">run 815</span>",
            "<pre class=\"log-tail\">dh_auto_build\nmake -j4\ngcc -O2 -c hello.c -o hello.o\n\
             make[1]: Leaving directory '/build/hello-2.10'</pre>",
            "<span class=\"elapsed\">12.0 s</span>",
            "<span class=\"elapsed\">2 min 05 s</span>",
            "<div class=\"pocket-results\" id=\"recent-dev\"><h3>dev</h3>",
            "<tr class=\"state-succeeded\" data-id=\"10\">",
            "<td class=\"packages\">hello 2.10-3</td>",
            "<a href=\"/report/814\">report</a> <a href=\"/api/report?run=814\">json</a>",
            "<div class=\"pocket-results\" id=\"recent-prod\"><h3>prod</h3>",
            "<tr class=\"state-failed\" data-id=\"9\">",
            "<div class=\"reason\">libfoo: build failed at stage build</div>",
            "<tr class=\"state-refused\" data-id=\"7\">",
            "<div class=\"pocket\" id=\"pocket-prod\"><h3>prod \
             <span class=\"flag flag-signed\">signed</span> \
             <span class=\"flag flag-frozen\">frozen</span></h3>",
            "<td class=\"package\">greet</td><td class=\"version\">1.0-1</td>",
            "<code>/srv/repo</code>",
        ],
    );

    let png = artifacts().join("serve-status.png");
    let _ = std::fs::remove_file(&png);
    let url = format!("http://127.0.0.1:{}/", server.addr().port());
    chromium_run(
        &url,
        &[
            "--virtual-time-budget=5000".into(),
            format!("--screenshot={}", png.display()),
            "--window-size=1200,900".into(),
        ],
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000);
}

#[test]
fn chromium_refreshes_the_page_when_the_status_changes() {
    let server = start(status(), later_status());
    // The first status (the one rendered into the page) has no request 14.
    let Some(dom) = dump_dom(&server, 5000) else {
        return;
    };
    assert_has(
        &dom,
        &[
            "<div id=\"conn\" class=\"conn-live\">live",
            "<section id=\"queue\"><h2>Queue <span class=\"count\">3</span></h2>",
            "<tr class=\"state-queued\" data-id=\"14\"><td class=\"pos\">3</td>",
            "<td class=\"packages\">latecomer</td><td class=\"user\">dave</td>",
            "<h2>Running <span class=\"count\">0</span></h2><p class=\"empty\">No build is running.</p>",
            "<tr class=\"state-succeeded\" data-id=\"11\">",
            "<td class=\"packages\">hello 2.10-4, greet 1.0-2</td>",
            "<a href=\"/report/815\">report</a>",
        ],
    );
    assert!(!dom.contains("<pre class=\"log-tail\">"), "{dom}");

    // Before the first refresh the page is the first status, as rendered
    // by the server: so the change above is the script's doing.
    let server = start(status(), later_status());
    let Some(dom) = dump_dom(&server, 1000) else {
        return;
    };
    assert_has(
        &dom,
        &[
            "<div id=\"conn\" class=\"conn-static\">rendered ",
            "<h2>Queue <span class=\"count\">2</span></h2>",
            "<pre class=\"log-tail\">dh_auto_build\n",
        ],
    );
    assert!(!dom.contains("latecomer"), "{dom}");
}

#[test]
fn chromium_shows_hostile_strings_as_text() {
    let mut hostile = status();
    let evil = "<img src=x onerror=\"document.title='pwned'\">";
    hostile["queue"][0]["packages"] = json!([evil, "\"quotes\" & ampersands"]);
    hostile["queue"][0]["user"] = json!("<script>alert(1)</script>");
    hostile["running"][0]["building"][0]["log_tail"] =
        json!(["</pre><script>alert(1)</script>", evil]);
    hostile["recent"]["dev"][0]["reason"] = json!(evil);
    hostile["pockets"]["dev"]["packages"] = json!({ evil: "1<2" });
    // Rendered by the server (no script), then by the script on refresh.
    for (first, script) in [(hostile.clone(), false), (status(), true)] {
        let server = start(first, hostile.clone());
        let Some(dom) = dump_dom(&server, if script { 5000 } else { 1000 }) else {
            return;
        };
        let conn = if script { "conn-live" } else { "conn-static" };
        assert!(
            dom.contains(&format!("<div id=\"conn\" class=\"{conn}\">")),
            "{dom}"
        );
        assert_has(
            &dom,
            &[
                "<title>comb serve</title>",
                "&lt;img src=x onerror=\"document.title='pwned'\"&gt;",
                "&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;",
                "&lt;script&gt;alert(1)&lt;/script&gt;",
                "\"quotes\" &amp; ampersands",
                "<td class=\"version\">1&lt;2</td>",
            ],
        );
        assert!(!dom.contains("<img"), "{dom}");
        assert!(!dom.contains("<script>alert"), "{dom}");
    }
}
