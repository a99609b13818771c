//! `comb serve` end to end: real local users talking to a real daemon over
//! its socket, pockets published as APT repositories, hooks, the audit
//! trail, a daemon killed mid-build, many clients and hostile requests.

mod mirror;
mod repo;

use repo::{is_root, native, Repo, COMB};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ALICE: &str = "combtest-alice";
const BOB: &str = "combtest-bob";
const RELEASE_GROUP: &str = "combtest-release";
const CLIENTS_GROUP: &str = "combtest-clients";

/// Makes the test users and groups (once per machine; they are kept).
fn users() -> (u32, u32) {
    for group in [RELEASE_GROUP, CLIENTS_GROUP] {
        let _ = Command::new("groupadd").args(["--system", group]).output();
    }
    for (user, groups) in [
        (ALICE, CLIENTS_GROUP.to_string()),
        (BOB, format!("{CLIENTS_GROUP},{RELEASE_GROUP}")),
    ] {
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--user-group",
                "--groups",
                &groups,
                user,
            ])
            .output();
    }
    let uid = |name: &str| {
        nix::unistd::User::from_name(name)
            .unwrap()
            .unwrap_or_else(|| panic!("useradd {name} failed"))
            .uid
            .as_raw()
    };
    (uid(ALICE), uid(BOB))
}

struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    repo_root: PathBuf,
    store: PathBuf,
}

impl Daemon {
    fn start(repo: &Repo, extra: &[&str]) -> Daemon {
        // Everyone may reach the socket's directory; the socket itself is
        // the group's only.
        let dir = repo.root.parent().unwrap().join("run");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in [
            repo.root.parent().unwrap(),
            repo.root.parent().unwrap().parent().unwrap(),
        ] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut args: Vec<String> = ["--group", CLIENTS_GROUP].map(String::from).to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut d = Daemon {
            child: Command::new("true").spawn().unwrap(),
            socket: dir.join("comb.sock"),
            log: dir.join("serve.log"),
            args,
            repo_root: repo.root.clone(),
            store: repo.store.clone(),
        };
        d.restart();
        d
    }

    fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Command::new(COMB)
            .arg("serve")
            .arg("--repo")
            .arg(&self.repo_root)
            .arg("--store")
            .arg(&self.store)
            .arg("--socket")
            .arg(&self.socket)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(&self.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "comb serve did not start:\n{}",
                self.log_text()
            );
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "comb serve exited:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A client command, as `user` (None: root), with `--json`.
    fn client(&self, user: Option<&str>, args: &[&str]) -> (bool, Vec<Value>, String) {
        // runuser gives the user its groups too (Command::uid would not).
        let mut c = match user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", COMB]);
                c
            }
            None => Command::new(COMB),
        };
        c.args(args).arg("--socket").arg(&self.socket).arg("--json");
        let out = c.output().unwrap();
        let lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("{user:?} comb {args:?}: {}\n{stderr}", out.status);
        (out.status.success(), lines, stderr)
    }

    /// The final answer of a client command.
    fn last(&self, user: Option<&str>, args: &[&str]) -> (bool, Value) {
        let (ok, lines, stderr) = self.client(user, args);
        let last = lines
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("no answer to {args:?}: {stderr}\n{}", self.log_text()));
        (ok, last)
    }

    /// Waits until request `id` has ended; returns it.
    fn wait_for(&self, id: i64, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (_, v) = self.last(None, &["queue"]);
            let pending = v["queue"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"].as_i64() == Some(id));
            if !pending {
                let mut s = UnixStream::connect(&self.socket).unwrap();
                writeln!(s, "{{\"op\":\"status\",\"id\":{id}}}").unwrap();
                let mut line = String::new();
                BufReader::new(s).read_line(&mut line).unwrap();
                return serde_json::from_str::<Value>(&line).unwrap()["request"].clone();
            }
            assert!(
                Instant::now() < deadline,
                "request {id} did not end:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn audit(&self, args: &[&str]) -> Output {
        Command::new(COMB)
            .arg("audit")
            .args(args)
            .arg("--store")
            .arg(&self.store)
            .output()
            .unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn packages_file(pocket: &Path) -> String {
    std::fs::read_to_string(pocket.join("Packages")).unwrap_or_default()
}

fn set_version(repo: &Repo, name: &str, version: &str) {
    let path = repo.root.join(name).join("recipe.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("version = \"").unwrap() + "version = \"".len();
    let end = start + text[start..].find('"').unwrap();
    std::fs::write(
        &path,
        format!("{}{version}{}", &text[..start], &text[end..]),
    )
    .unwrap();
}

fn refusal(v: &Value) -> &str {
    v["refusal"].as_str().unwrap_or("")
}

#[test]
fn pockets_access_lists_versions_promotion_hooks_and_the_audit_trail() {
    if !is_root() {
        return;
    }
    users();
    let repo = Repo::new();
    repo.recipe("greet", &native("greet", &[], ""), "hello\n");
    let apt = repo.root.parent().unwrap().join("apt");
    let hooks = repo.root.parent().unwrap().join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let seen = hooks.join("seen.jsonl");
    for (name, body) in [
        ("record", format!("#!/bin/sh\ncat >> {}\n", seen.display())),
        (
            "fail",
            "#!/bin/sh\necho hook says no >&2\nexit 3\n".to_string(),
        ),
        ("hang", "#!/bin/sh\nsleep 60\n".to_string()),
    ] {
        std::fs::write(hooks.join(name), body).unwrap();
        std::fs::set_permissions(hooks.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut toml = std::fs::read_to_string(repo.root.join("comb.toml")).unwrap();
    toml.push_str(&format!(
        "\n[pockets.dev]\nusers = [\"{ALICE}\", \"{BOB}\"]\npublish = \"{apt}/dev\"\n\n\
         [pockets.prod]\ngroups = [\"{RELEASE_GROUP}\"]\npublish = \"{apt}/prod\"\n\n\
         [pockets.scratch]\nusers = [\"{ALICE}\"]\nallow_backtracking = true\npublish = \"{apt}/scratch\"\n\n\
         [pockets.attic]\nusers = [\"{ALICE}\"]\nfrozen = true\npublish = \"{apt}/attic\"\n\n\
         [hooks]\ntimeout = 2\nany = [\"{h}/record\"]\nstarted = [\"{h}/hang\"]\nsucceeded = [\"{h}/fail\"]\n",
        apt = apt.display(),
        h = hooks.display()
    ));
    std::fs::write(repo.root.join("comb.toml"), toml).unwrap();
    let daemon = Daemon::start(&repo, &[]);

    // The socket is the clients' group's only.
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "{mode:o}");

    // alice may submit to dev, and it is built and published there.
    let (ok, done) = daemon.last(
        Some(ALICE),
        &["submit", "--pocket", "dev", "greet", "--wait"],
    );
    assert!(ok, "{done}\n{}", daemon.log_text());
    assert_eq!(done["request"]["state"], "succeeded");
    assert_eq!(done["request"]["user"], ALICE);
    assert_eq!(done["request"]["versions"]["greet"], "1.0-1");
    assert!(packages_file(&apt.join("dev")).contains("Package: greet\nVersion: 1.0-1"));
    assert!(apt.join("dev/Release").is_file());

    // ... but not to prod: refused, said why, and recorded.
    let (ok, refused) = daemon.last(Some(ALICE), &["submit", "--pocket", "prod", "greet"]);
    assert!(!ok);
    assert_eq!(refusal(&refused), "not_in_access_list", "{refused}");
    assert!(refused["error"].as_str().unwrap().contains(ALICE));
    assert!(packages_file(&apt.join("prod")).is_empty());
    // bob is in prod's group.
    let (ok, done) = daemon.last(
        Some(BOB),
        &["submit", "--pocket", "prod", "greet", "--wait"],
    );
    assert!(ok, "{done}");
    assert!(packages_file(&apt.join("prod")).contains("Version: 1.0-1"));

    // A version must go up in dev...
    let (ok, refused) = daemon.last(Some(ALICE), &["submit", "--pocket", "dev", "greet"]);
    assert!(!ok);
    assert_eq!(refusal(&refused), "version_not_greater", "{refused}");
    set_version(&repo, "greet", "1.1-1");
    let (ok, done) = daemon.last(
        Some(ALICE),
        &["submit", "--pocket", "dev", "greet", "--wait"],
    );
    assert!(ok, "{done}");
    assert!(packages_file(&apt.join("dev")).contains("Version: 1.1-1"));
    assert!(!packages_file(&apt.join("dev")).contains("Version: 1.0-1"));
    // ... but may go down where backtracking is allowed.
    let (ok, _) = daemon.last(
        Some(ALICE),
        &["submit", "--pocket", "scratch", "greet", "--wait"],
    );
    assert!(ok);
    set_version(&repo, "greet", "1.0-1");
    let (ok, done) = daemon.last(
        Some(ALICE),
        &["submit", "--pocket", "scratch", "greet", "--wait"],
    );
    assert!(ok, "{done}");
    assert!(packages_file(&apt.join("scratch")).contains("Version: 1.0-1"));
    set_version(&repo, "greet", "1.1-1");

    // Other refusals.
    let (_, r) = daemon.last(Some(ALICE), &["submit", "--pocket", "attic", "greet"]);
    assert_eq!(refusal(&r), "pocket_frozen", "{r}");
    let (_, r) = daemon.last(Some(ALICE), &["submit", "--pocket", "dev", "nosuch"]);
    assert_eq!(refusal(&r), "unknown_package", "{r}");
    let (_, r) = daemon.last(Some(ALICE), &["submit", "--pocket", "moon", "greet"]);
    assert_eq!(refusal(&r), "unknown_pocket", "{r}");
    let (_, r) = daemon.last(
        Some(ALICE),
        &["promote", "--from", "dev", "--to", "prod", "greet"],
    );
    assert_eq!(refusal(&r), "not_in_access_list", "{r}");

    // Promotion: dev's greet 1.1-1 is the recorded output of greet's last
    // build, so bob copies it into prod, unbuilt: the same bytes.
    let (ok, done) = daemon.last(
        Some(BOB),
        &["promote", "--from", "dev", "--to", "prod", "greet"],
    );
    assert!(ok, "{done}\n{}", daemon.log_text());
    assert_eq!(done["request"]["versions"]["greet"], "1.1-1");
    let deb =
        |pocket: &str| std::fs::read(apt.join(pocket).join("pool/g/greet_1.1-1_all.deb")).unwrap();
    assert_eq!(deb("dev"), deb("prod"));

    // Not when the store no longer records the build that made dev's
    // bytes (as when gc has dropped it)...
    set_version(&repo, "greet", "1.2-1");
    let (ok, _) = daemon.last(
        Some(ALICE),
        &["submit", "--pocket", "dev", "greet", "--wait"],
    );
    assert!(ok);
    let index = rusqlite::Connection::open(repo.store.join("index.sqlite")).unwrap();
    index
        .execute(
            "DELETE FROM nodes WHERE kind = 'build' AND name = 'greet'",
            [],
        )
        .unwrap();
    drop(index);
    let (ok, failed) = daemon.last(
        Some(BOB),
        &["promote", "--from", "dev", "--to", "prod", "greet"],
    );
    assert!(!ok);
    let reason = failed["request"]["reason"].as_str().unwrap();
    assert!(reason.contains("not the recorded output"), "{failed}");
    assert!(!packages_file(&apt.join("prod")).contains("1.2-1"));
    repo.recipe(
        "greet",
        &native("greet", &[], "echo changed > extra"),
        "hello, again\n",
    );
    set_version(&repo, "greet", "1.3-1");
    // ... nor when dev's file is not what was built.
    let (ok, _) = daemon.last(
        Some(ALICE),
        &["submit", "--pocket", "dev", "greet", "--wait"],
    );
    assert!(ok);
    let pooled = apt.join("dev/pool/g/greet_1.3-1_all.deb");
    let mut bytes = std::fs::read(&pooled).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&pooled, bytes).unwrap();
    let (ok, failed) = daemon.last(
        Some(BOB),
        &["promote", "--from", "dev", "--to", "prod", "greet"],
    );
    assert!(!ok);
    assert!(
        failed["request"]["reason"]
            .as_str()
            .unwrap()
            .contains("sha256"),
        "{failed}"
    );
    assert!(!packages_file(&apt.join("prod")).contains("1.3-1"));

    // Only the submitter (or root) cancels; ended requests cannot be.
    let (_, r) = daemon.last(Some(BOB), &["cancel", "1"]);
    assert_eq!(refusal(&r), "not_yours", "{r}");
    let (_, r) = daemon.last(Some(ALICE), &["cancel", "1"]);
    assert_eq!(refusal(&r), "not_found", "{r}");

    // Hooks: every event reached the recording hook as JSON; the hanging
    // one was killed at its timeout and the failing one did not stop a
    // build (every build above succeeded).
    let deadline = Instant::now() + Duration::from_secs(60);
    let audit_text = loop {
        let out = daemon.audit(&["show", "--json"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let hook_runs = text
            .lines()
            .filter(|l| l.contains("\"kind\":\"hook\""))
            .count();
        // Three hooks per start, one per other event: wait until the
        // hook thread has caught up with the last promotion.
        if text.contains("\"event\":\"failed\"")
            && hook_runs >= 20
            && text
                .lines()
                .last()
                .is_some_and(|l| l.contains("\"kind\":\"hook\""))
        {
            break text;
        }
        assert!(Instant::now() < deadline, "hooks did not run:\n{text}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let seen_text = std::fs::read_to_string(&seen).unwrap();
    for event in [
        "queued",
        "started",
        "succeeded",
        "failed",
        "refused",
        "published",
        "promoted",
    ] {
        assert!(
            seen_text.contains(&format!("\"event\":\"{event}\"")),
            "no {event} event reached the hook:\n{seen_text}"
        );
    }
    let entries: Vec<Value> = audit_text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let hook_status = |name: &str| -> Vec<String> {
        entries
            .iter()
            .filter(|e| {
                e["kind"] == "hook" && e["detail"]["hook"].as_str().unwrap().ends_with(name)
            })
            .map(|e| e["detail"]["status"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        hook_status("/hang").iter().all(|s| s.contains("timeout")),
        "{:?}",
        hook_status("/hang")
    );
    assert!(
        hook_status("/fail").iter().all(|s| s == "exit 3"),
        "{:?}",
        hook_status("/fail")
    );
    assert!(!hook_status("/fail").is_empty() && !hook_status("/hang").is_empty());
    // The refusal of alice's prod submission is in the audit trail.
    assert!(entries.iter().any(|e| e["kind"] == "refused"
        && e["actor"] == ALICE
        && e["detail"]["refusal"] == "not_in_access_list"
        && e["detail"]["pocket"] == "prod"));
    assert!(entries
        .iter()
        .any(|e| e["kind"] == "promoted" && e["detail"]["to"] == "prod"));

    // The chain holds; an edited entry breaks it.
    let out = daemon.audit(&["verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(daemon);
    let db = rusqlite::Connection::open(repo.store.join("service.sqlite")).unwrap();
    // comb's own triggers refuse edits; someone with the file drops them.
    db.execute_batch("DROP TRIGGER audit_no_update").unwrap();
    let edited = db
        .execute(
            "UPDATE audit SET detail = replace(detail, 'not_in_access_list', 'granted') WHERE kind = 'refused'",
            [],
        )
        .unwrap();
    assert!(edited > 0);
    let out = Command::new(COMB)
        .args(["audit", "verify", "--store"])
        .arg(&repo.store)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tampered"));
}

/// Waits until `id` runs its build (its log shows the sleep started).
fn wait_until_running(daemon: &Daemon, id: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, v) = daemon.last(None, &["queue"]);
        let running = v["queue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"].as_i64() == Some(id) && r["state"] == "running");
        if running {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "request {id} never ran:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The status page as headless Chromium sees it after its script ran
/// (None, with a note, where Chromium is not installed).
fn status_page(daemon: &Daemon) -> Option<String> {
    let log = daemon.log_text();
    // The daemon started last says where it serves.
    let addr = log
        .lines()
        .filter_map(|l| l.strip_prefix("comb serve: status page on "))
        .next_back()
        .unwrap_or_else(|| panic!("no status page address:\n{log}"))
        .to_string();
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("note: skipped the status page: headless Chromium not found (Debian: chromium)");
        return None;
    };
    let out = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=3000",
            "--dump-dom",
        ])
        .arg(addr.trim())
        .output()
        .unwrap();
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn builds_of(store: &Path, name: &str) -> i64 {
    let db = rusqlite::Connection::open(store.join("index.sqlite")).unwrap();
    db.query_row(
        "SELECT count(*) FROM events WHERE kind = 'build' AND name = ?1 AND status = 'built'",
        [name],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_killed_daemon_resumes_its_queue_and_builds_nothing_twice() {
    if !is_root() {
        return;
    }
    users();
    let repo = Repo::new();
    repo.recipe(
        "slow",
        &native(
            "slow",
            &[],
            "echo slow build begins; echo '<b>bold</b>'; sleep 12",
        ),
        "s\n",
    );
    repo.recipe("quick", &native("quick", &[], ""), "q\n");
    let apt = repo.root.parent().unwrap().join("apt");
    let mut toml = std::fs::read_to_string(repo.root.join("comb.toml")).unwrap();
    toml.push_str(&format!(
        "\n[pockets.dev]\nusers = [\"root\"]\npublish = \"{}/dev\"\n",
        apt.display()
    ));
    std::fs::write(repo.root.join("comb.toml"), toml).unwrap();
    let mut daemon = Daemon::start(&repo, &["--max-in-flight", "2", "--http", "127.0.0.1:0"]);

    let (ok, first) = daemon.last(None, &["submit", "--pocket", "dev", "slow"]);
    assert!(ok, "{first}");
    let (ok, second) = daemon.last(None, &["submit", "--pocket", "dev", "quick"]);
    assert!(ok, "{second}");
    // Two in flight is root's limit here.
    let (ok, third) = daemon.last(None, &["submit", "--pocket", "dev", "quick"]);
    assert!(!ok);
    assert_eq!(refusal(&third), "too_many_in_flight", "{third}");
    let (first, second) = (
        first["request"]["id"].as_i64().unwrap(),
        second["request"]["id"].as_i64().unwrap(),
    );
    wait_until_running(&daemon, first);
    std::thread::sleep(Duration::from_millis(1500));
    // SIGKILL: no goodbye, the sandbox dies with its monitor.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    daemon.child.wait().unwrap();
    assert_eq!(builds_of(&repo.store, "slow"), 0);

    daemon.restart();
    wait_until_running(&daemon, first);
    std::thread::sleep(Duration::from_millis(1500));
    // The status page shows the queue and the running build's log as it
    // comes, as text.
    if let Some(dom) = status_page(&daemon) {
        assert!(dom.contains("id=\"queue\""), "{dom}");
        assert!(dom.contains("slow build begins"), "{dom}");
        assert!(
            dom.contains("&lt;b&gt;bold&lt;/b&gt;") && !dom.contains("<b>bold"),
            "{dom}"
        );
        assert!(dom.contains("quick"), "{dom}");
    }
    let slow = daemon.wait_for(first, Duration::from_secs(120));
    let quick = daemon.wait_for(second, Duration::from_secs(120));
    assert_eq!(slow["state"], "succeeded", "{slow}\n{}", daemon.log_text());
    assert_eq!(quick["state"], "succeeded", "{quick}");
    assert_eq!(slow["attempts"], 2, "{slow}");
    assert_eq!(quick["attempts"], 1, "{quick}");
    // Each was built exactly once, and both are published.
    assert_eq!(builds_of(&repo.store, "slow"), 1);
    assert_eq!(builds_of(&repo.store, "quick"), 1);
    let packages = packages_file(&apt.join("dev"));
    assert!(
        packages.contains("Package: slow") && packages.contains("Package: quick"),
        "{packages}"
    );
    let out = daemon.audit(&["show"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("requeued"));

    // Cancelling: a queued request never runs; a running one is stopped
    // (its sandbox killed) long before its build would end; a build that
    // fails fails its request, with why.
    repo.recipe("endless", &native("endless", &[], "sleep 300"), "e\n");
    repo.recipe(
        "broken",
        &native("broken", &[], "echo no luck; exit 7"),
        "b\n",
    );
    let id = |v: &Value| v["request"]["id"].as_i64().unwrap().to_string();
    let (_, endless) = daemon.last(None, &["submit", "--pocket", "dev", "endless"]);
    let (_, broken) = daemon.last(None, &["submit", "--pocket", "dev", "broken"]);
    let (ok, cancelled) = daemon.last(None, &["cancel", &id(&broken)]);
    assert!(ok, "{cancelled}");
    assert_eq!(cancelled["request"]["state"], "cancelled");
    wait_until_running(&daemon, endless["request"]["id"].as_i64().unwrap());
    let started = Instant::now();
    let (ok, cancelled) = daemon.last(None, &["cancel", &id(&endless)]);
    assert!(ok, "{cancelled}");
    let row = daemon.wait_for(
        endless["request"]["id"].as_i64().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(row["state"], "cancelled", "{row}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(builds_of(&repo.store, "broken"), 0);
    let (ok, failed) = daemon.last(None, &["submit", "--pocket", "dev", "broken", "--wait"]);
    assert!(!ok);
    assert_eq!(failed["request"]["state"], "failed", "{failed}");
    let reason = failed["request"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("broken failed") && reason.contains("exited with 7"),
        "{reason}"
    );
    assert!(!packages_file(&apt.join("dev")).contains("Package: endless"));

    // A daemon that dies after publishing but before it ends the request
    // runs it again, and its own publication is no older version.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let db = rusqlite::Connection::open(repo.store.join("service.sqlite")).unwrap();
    db.execute(
        "UPDATE requests SET state = 'running' WHERE id = ?1",
        [second],
    )
    .unwrap();
    drop(db);
    daemon.restart();
    let quick = daemon.wait_for(second, Duration::from_secs(60));
    assert_eq!(
        quick["state"],
        "succeeded",
        "{quick}\n{}",
        daemon.log_text()
    );
    assert_eq!(quick["attempts"], 2, "{quick}");
}

/// Sends raw bytes and returns what the daemon answered (until it closed).
fn raw(socket: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(bytes);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

#[test]
fn many_clients_are_answered_and_bad_requests_are_refused() {
    if !is_root() {
        return;
    }
    users();
    let repo = Repo::new();
    repo.recipe("greet", &native("greet", &[], ""), "g\n");
    let apt = repo.root.parent().unwrap().join("apt");
    let mut toml = std::fs::read_to_string(repo.root.join("comb.toml")).unwrap();
    toml.push_str(&format!(
        "\n[pockets.dev]\nusers = [\"root\"]\nallow_backtracking = true\npublish = \"{}/dev\"\n",
        apt.display()
    ));
    std::fs::write(repo.root.join("comb.toml"), toml).unwrap();
    let daemon = Daemon::start(&repo, &["--max-in-flight", "1000"]);

    // Hostile input first: each is refused, logged, and the daemon stays.
    let answer = raw(&daemon.socket, b"this is not json\n");
    assert!(answer.contains("\"refusal\":\"malformed\""), "{answer}");
    let answer = raw(
        &daemon.socket,
        b"{\"op\":\"submit\",\"pocket\":\"dev\",\"packages\":[\"greet\"],\"evil\":1}\n",
    );
    assert!(answer.contains("\"refusal\":\"malformed\""), "{answer}");
    let mut big = b"{\"op\":\"queue\",\"pad\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 1 << 20));
    let answer = raw(&daemon.socket, &big);
    assert!(answer.contains("larger than"), "{answer}");
    let answer = raw(&daemon.socket, &[0xff, 0xfe, 0x00, b'\n']);
    assert!(answer.contains("\"refusal\":\"malformed\""), "{answer}");
    assert!(daemon.log_text().contains("sent a bad request"));

    // 200 submissions from 8 clients at once: every one is answered.
    let socket = daemon.socket.clone();
    let ids: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let socket = socket.clone();
                s.spawn(move || {
                    (0..25)
                        .map(|_| {
                            let line = raw(
                                &socket,
                                b"{\"op\":\"submit\",\"pocket\":\"dev\",\"packages\":[\"greet\"]}\n",
                            );
                            let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{line}: {e}"));
                            assert_eq!(v["ok"], true, "{v}");
                            v["request"]["id"].as_i64().unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(ids.len(), 200);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 200);
    // The queue drains, every request succeeds, and greet was built once.
    let last = *unique.last().unwrap();
    let row = daemon.wait_for(last, Duration::from_secs(600));
    assert_eq!(row["state"], "succeeded", "{row}");
    let (_, queue) = daemon.last(None, &["queue"]);
    assert_eq!(queue["queue"], serde_json::json!([]));
    let db = rusqlite::Connection::open(repo.store.join("service.sqlite")).unwrap();
    let succeeded: i64 = db
        .query_row(
            "SELECT count(*) FROM requests WHERE state = 'succeeded'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(succeeded, 200);
    assert_eq!(builds_of(&repo.store, "greet"), 1);
    let out = daemon.audit(&["verify"]);
    assert!(out.status.success());
}
