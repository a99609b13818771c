//! `comb serve` end to end: real local users talking to a real daemon over
//! its socket, pockets published as APT repositories, hooks, the audit
//! trail, a daemon killed mid-build, many clients and hostile requests.

use crate::repo;
use crate::users::{daemon_user, give_to, DAEMON};

use repo::{is_root, native, Repo, COMB};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ALICE: &str = "combtest-alice";
const BOB: &str = "combtest-bob";
const RELEASE_GROUP: &str = "combtest-release";
const CLIENTS_GROUP: &str = "combtest-clients";

/// What the daemon's user owns, as an administrator sets it up: the
/// directory around the repository and its socket's, pockets' and hooks'
/// directories (where they write), and the store. The repository, with
/// `comb.toml`, stays root's, which the daemon trusts.
fn hand_to_daemon(repo: &Repo, store: &Path) {
    let base = repo.root.parent().unwrap();
    for dir in ["run", "apt", "hooks"] {
        if base.join(dir).exists() {
            give_to(DAEMON, &base.join(dir));
        }
    }
    // A store root made (`comb update` in `Repo::new`) is root's: the
    // daemon makes its own, fetching the index the lock pins.
    let daemons = std::fs::metadata(store).is_ok_and(|m| m.uid() == daemon_uid());
    if !daemons {
        let _ = std::fs::remove_dir_all(store);
    }
    std::fs::create_dir_all(store).unwrap();
    give_to(DAEMON, store);
    std::os::unix::fs::chown(base, Some(daemon_uid()), Some(daemon_uid())).unwrap();
}

fn daemon_uid() -> u32 {
    crate::users::uid_of(DAEMON)
}

/// Makes the test users and groups (once per machine; they are kept).
fn users() -> (u32, u32) {
    daemon_user();
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
    // The daemon gives its socket to the clients' group: its user is a
    // member, as the README's setup makes `_comb` one.
    let status = Command::new("usermod")
        .args(["--append", "--groups", CLIENTS_GROUP, DAEMON])
        .status()
        .unwrap();
    assert!(status.success(), "usermod -aG {CLIENTS_GROUP} {DAEMON}");
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
        Daemon::start_with_store(repo, &repo.store, extra)
    }

    fn start_with_store(repo: &Repo, store: &Path, extra: &[&str]) -> Daemon {
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
        hand_to_daemon(repo, store);
        let mut args: Vec<String> = ["--group", CLIENTS_GROUP, "--user", DAEMON]
            .map(String::from)
            .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut d = Daemon {
            child: Command::new("true").spawn().unwrap(),
            socket: dir.join("comb.sock"),
            log: dir.join("serve.log"),
            args,
            repo_root: repo.root.clone(),
            store: store.to_path_buf(),
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

/// Appends `text` to the repository's comb.toml.
fn add_to_config(repo: &Repo, text: &str) {
    let mut toml = std::fs::read_to_string(repo.root.join("comb.toml")).unwrap();
    toml.push_str(text);
    std::fs::write(repo.root.join("comb.toml"), toml).unwrap();
}

/// Root's pocket `dev`, published in `dir/apt/dev`, and `hook` for every
/// event.
fn add_dev_pocket_and_hook(repo: &Repo, dir: &Path, hook: &Path) {
    add_to_config(
        repo,
        &format!(
            "\n[pockets.dev]\nusers = [\"root\"]\npublish = \"{}/apt/dev\"\n\n[hooks]\nany = [\"{}\"]\n",
            dir.display(),
            hook.display()
        ),
    );
}

/// A hook that appends each event it gets to `seen` (after `delay`).
fn recording_hook(dir: &Path, seen: &Path, delay: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let hook = dir.join("record");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\nsleep {delay}\ncat >> '{}'\n", seen.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    hook
}

/// The events a recording hook saw.
fn seen_events(seen: &Path) -> Vec<Value> {
    std::fs::read_to_string(seen)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The audit log as JSON, straight from the database.
fn audit_entries(store: &Path) -> Vec<Value> {
    let out = Command::new(COMB)
        .args(["audit", "show", "--json", "--store"])
        .arg(store)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until `cond` holds (checked every 100 ms), or panics with `what`.
fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_trickled_request_is_cut_off_at_its_deadline_and_others_are_served() {
    if !is_root() {
        return;
    }
    users();
    let repo = Repo::new();
    let deadline = Duration::from_secs(2);
    let daemon = Daemon::start(&repo, &["--request-deadline-ms", "2000"]);
    // Each trickles a queue request, a byte every half second: every read
    // is quick, the request as a whole is not (7.5 s).
    let tricklers: Vec<_> = (0..8)
        .map(|_| {
            let socket = daemon.socket.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let s = UnixStream::connect(&socket).unwrap();
                let mut writer = s.try_clone().unwrap();
                std::thread::spawn(move || {
                    for b in b"{\"op\":\"queue\"}\n" {
                        if writer.write_all(&[*b]).is_err() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(500));
                    }
                });
                let mut reader = s;
                reader
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                let mut answer = String::new();
                let _ = reader.read_to_string(&mut answer);
                (start.elapsed(), answer)
            })
        })
        .collect();
    // Meanwhile, others are answered at once.
    std::thread::sleep(Duration::from_millis(700));
    for _ in 0..3 {
        let t = Instant::now();
        let answer = raw(&daemon.socket, b"{\"op\":\"queue\"}\n");
        assert!(answer.contains("\"ok\":true"), "{answer}");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
    let t = Instant::now();
    let (ok, _) = daemon.last(Some(BOB), &["queue"]);
    assert!(ok);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    for t in tricklers {
        let (took, answer) = t.join().unwrap();
        assert!(
            answer.contains("\"refusal\":\"malformed\"")
                && answer.contains("not sent within 2.0 s"),
            "{answer}"
        );
        assert!(!answer.contains("\"queue\""), "{answer}");
        assert!(
            took >= deadline - Duration::from_millis(100)
                && took < deadline + Duration::from_millis(1500),
            "cut off after {took:?}"
        );
    }
}

/// The environment variable that makes [`flood_helper`] flood.
const FLOOD_ENV: &str = "COMB_TEST_FLOOD";

/// Not a test of its own: the flood of
/// `refusals_cost_little_and_a_legitimate_user_is_served`, run as another
/// user by executing this test binary again.
#[test]
#[ignore]
fn flood_helper() {
    let Ok(spec) = std::env::var(FLOOD_ENV) else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let socket = PathBuf::from(spec["socket"].as_str().unwrap());
    let line = spec["line"].as_str().unwrap().to_string();
    let start = Instant::now();
    let mut by = std::collections::BTreeMap::<String, u64>::new();
    let mut retry_after = 0;
    for _ in 0..spec["count"].as_u64().unwrap() {
        let answer = raw(&socket, line.as_bytes());
        let v: Value =
            serde_json::from_str(answer.lines().next().unwrap_or("null")).unwrap_or(Value::Null);
        if v["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0) {
            retry_after += 1;
        }
        let word =
            v["refusal"]
                .as_str()
                .unwrap_or(if v["ok"] == true { "ok" } else { "no answer" });
        *by.entry(word.to_string()).or_default() += 1;
    }
    println!(
        "FLOOD-RESULT {}",
        serde_json::json!({"by": by, "retry_after": retry_after,
                           "ms": start.elapsed().as_millis() as u64})
    );
}

#[test]
fn refusals_cost_little_and_a_legitimate_user_is_served() {
    if !is_root() {
        return;
    }
    let (alice, _) = users();
    // (Command::uid drops the supplementary groups: the socket's group is
    // given as the primary one.)
    let clients = nix::unistd::Group::from_name(CLIENTS_GROUP)
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    let repo = Repo::new();
    repo.recipe("greet", &native("greet", &[], ""), "g\n");
    let dir = repo.root.parent().unwrap().to_path_buf();
    let seen = dir.join("seen.jsonl");
    let hook = recording_hook(&dir.join("hooks"), &seen, "0");
    add_to_config(
        &repo,
        &format!(
            "\n[pockets.dev]\nusers = [\"{BOB}\"]\npublish = \"{}/apt/dev\"\n\n[hooks]\nany = [\"{}\"]\n",
            dir.display(),
            hook.display()
        ),
    );
    let daemon = Daemon::start(&repo, &[]);
    let rows_before = audit_entries(&repo.store).len();

    // alice, in no access list, sends 2000 submissions as fast as she can,
    // while others ask for the queue.
    let total = 2000;
    use std::os::unix::process::CommandExt;
    let mut flood = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "serve::flood_helper",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(
            FLOOD_ENV,
            serde_json::json!({"socket": daemon.socket, "count": total,
                "line": "{\"op\":\"submit\",\"pocket\":\"dev\",\"packages\":[\"greet\"]}\n"})
            .to_string(),
        )
        .uid(alice)
        .gid(clients)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut answered_meanwhile = 0;
    let mut slowest = Duration::ZERO;
    while flood.try_wait().unwrap().is_none() {
        let t = Instant::now();
        let answer = raw(&daemon.socket, b"{\"op\":\"queue\"}\n");
        assert!(answer.contains("\"ok\":true"), "{answer}");
        slowest = slowest.max(t.elapsed());
        answered_meanwhile += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    let (ok, queue) = daemon.last(Some(BOB), &["queue"]);
    assert!(ok, "{queue}");
    let bob_waited = t.elapsed();
    let out = flood.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: Value = stdout
        .lines()
        .find_map(|l| l.split_once("FLOOD-RESULT ").map(|(_, r)| r))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or_else(|| panic!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    eprintln!(
        "flood: {result}; {answered_meanwhile} answered meanwhile, the slowest in {slowest:?}; \
         bob waited {bob_waited:?}"
    );
    assert!(answered_meanwhile >= 1);
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");
    assert!(bob_waited < Duration::from_secs(3), "{bob_waited:?}");
    let by = &result["by"];
    let count = |w: &str| by[w].as_u64().unwrap_or(0);
    // Every one was answered: at most the burst (and what the rate gave
    // back meanwhile) got as far as the access list; the rest were told
    // when to come back.
    let secs = result["ms"].as_u64().unwrap() / 1000 + 1;
    let checked = count("not_in_access_list") + count("too_many_in_flight");
    assert_eq!(checked + count("rate_limited"), total, "{result}");
    assert!(checked >= 1 && checked <= 20 + 2 * secs, "{result}");
    assert_eq!(result["retry_after"], count("rate_limited"), "{result}");
    assert!(count("rate_limited") >= total - 100, "{result}");

    // Once the burst is over, it is one entry with counts.
    wait_until(
        Duration::from_secs(30),
        "the burst was never recorded",
        || {
            audit_entries(&repo.store)
                .iter()
                .any(|e| e["kind"] == "coalesced" && e["actor"] == ALICE)
        },
    );
    wait_until(
        Duration::from_secs(30),
        "the hook never heard of it",
        || {
            seen_events(&seen)
                .iter()
                .any(|e| e["coalesced"].as_u64().is_some())
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let entries = audit_entries(&repo.store);
    let of_alice: Vec<&Value> = entries.iter().filter(|e| e["actor"] == ALICE).collect();
    assert!(of_alice.len() <= 3, "{of_alice:#?}");
    let coalesced = of_alice.iter().find(|e| e["kind"] == "coalesced").unwrap();
    assert_eq!(coalesced["detail"]["count"], total - 1, "{coalesced}");
    assert_eq!(
        coalesced["detail"]["by"]["rate_limited"],
        count("rate_limited"),
        "{coalesced}"
    );
    let first = of_alice.iter().find(|e| e["kind"] == "refused").unwrap();
    assert_eq!(first["detail"]["refusal"], "not_in_access_list", "{first}");
    // All that 2000 refusals added: a handful of entries, a couple of hook
    // runs, and no request.
    let added = entries.len() - rows_before;
    assert!(added <= 12, "{added} entries: {entries:#?}");
    let hook_runs = seen_events(&seen)
        .iter()
        .filter(|e| e["user"] == ALICE)
        .count();
    assert!(hook_runs <= 3, "{hook_runs}");
    let db = rusqlite::Connection::open(repo.store.join("service.sqlite")).unwrap();
    let requests: i64 = db
        .query_row("SELECT count(*) FROM requests", [], |r| r.get(0))
        .unwrap();
    assert_eq!(requests, 0);
    // The rate comes back: alice is answered again (and her client waits
    // as long as the daemon says when it must).
    let (ok, answer) = daemon.last(Some(ALICE), &["submit", "--pocket", "dev", "greet"]);
    assert!(!ok);
    assert_eq!(refusal(&answer), "not_in_access_list", "{answer}");
    let out = daemon.audit(&["verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_full_hook_queue_drops_events_and_says_how_many() {
    if !is_root() {
        return;
    }
    users();
    let repo = Repo::new();
    repo.recipe("greet", &native("greet", &[], ""), "g\n");
    // Without the snapshot's lock, a request fails at once: events come
    // fast, with no build.
    std::fs::remove_file(repo.root.join("comb.lock")).unwrap();
    let dir = repo.root.parent().unwrap().to_path_buf();
    let seen = dir.join("seen.jsonl");
    let hook = recording_hook(&dir.join("hooks"), &seen, "0.3");
    add_to_config(
        &repo,
        &format!(
            "\n[pockets.dev]\nusers = [\"root\"]\nallow_backtracking = true\npublish = \"{}/apt/dev\"\n\n[hooks]\nany = [\"{}\"]\n",
            dir.display(),
            hook.display()
        ),
    );
    let daemon = Daemon::start(&repo, &["--hook-queue", "2"]);
    let mut ids = Vec::new();
    for _ in 0..10 {
        // (It may have failed already when it is answered.)
        let (_, v) = daemon.last(None, &["submit", "--pocket", "dev", "greet"]);
        ids.push(v["request"]["id"].as_i64().unwrap_or_else(|| panic!("{v}")));
    }
    let mut events = 0;
    for id in &ids {
        let row = daemon.wait_for(*id, Duration::from_secs(60));
        assert_eq!(row["state"], "failed", "{row}");
        // queued, started, failed
        events += 2 + row["attempts"].as_i64().unwrap();
    }
    // Let the queue drain, then one more event: it carries the count of
    // what was dropped before it.
    std::thread::sleep(Duration::from_secs(2));
    let (ok, _) = daemon.last(None, &["submit", "--pocket", "dev", "nosuch"]);
    assert!(!ok);
    events += 1;
    let dropped_in = |seen: &[Value]| -> i64 {
        seen.iter()
            .map(|e| {
                e["dropped"]
                    .as_i64()
                    .expect("every event says what was dropped")
            })
            .sum()
    };
    wait_until(
        Duration::from_secs(60),
        "the hook never saw the last event",
        || seen_events(&seen).iter().any(|e| e["event"] == "refused"),
    );
    let got = seen_events(&seen);
    let dropped = dropped_in(&got);
    assert!(dropped > 0, "nothing was dropped: {got:#?}");
    // Every event either ran its hook or was counted as dropped.
    assert_eq!(got.len() as i64 + dropped, events, "{got:#?}");
    // The audit log says so too.
    let entries = audit_entries(&repo.store);
    let audited: i64 = entries
        .iter()
        .filter(|e| e["kind"] == "hooks-dropped")
        .map(|e| e["detail"]["dropped"].as_i64().unwrap())
        .sum();
    assert_eq!(audited, dropped);
    assert!(daemon.log_text().contains("hook events were dropped"));
}

/// Starts `comb serve` expecting it to refuse to start; returns what it
/// said.
fn serve_refuses(repo: &Repo, socket: &Path) -> String {
    hand_to_daemon(repo, &repo.store);
    let mut child = Command::new(COMB)
        .args(["serve", "--user", DAEMON])
        .arg("--repo")
        .arg(&repo.root)
        .arg("--store")
        .arg(&repo.store)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(!status.success(), "{err}");
            return err;
        }
        if Instant::now() > deadline || UnixStream::connect(socket).is_ok() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("comb serve started");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_comb_toml_or_hook_others_may_write_is_refused() {
    if !is_root() {
        return;
    }
    users();
    let repo = Repo::new();
    let dir = repo.root.parent().unwrap().to_path_buf();
    for d in [&dir, &dir.parent().unwrap().to_path_buf()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let seen = dir.join("seen.jsonl");
    let hooks = dir.join("hooks");
    let hook = recording_hook(&hooks, &seen, "0");
    add_dev_pocket_and_hook(&repo, &dir, &hook);
    let socket = dir.join("run/comb.sock");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let config = repo.root.join("comb.toml");
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };

    // comb.toml in a world-writable directory: anyone could replace it.
    chmod(&repo.root, 0o777);
    let err = serve_refuses(&repo, &socket);
    assert!(!socket.exists(), "{err}");
    assert!(err.contains(&config.display().to_string()), "{err}");
    assert!(err.contains(&repo.root.display().to_string()), "{err}");
    assert!(err.contains("mode 0777"), "{err}");
    assert!(err.contains("chmod go-w"), "{err}");
    chmod(&repo.root, 0o755);
    // comb.toml writable by its group, or another user's.
    chmod(&config, 0o664);
    let err = serve_refuses(&repo, &socket);
    assert!(err.contains(&config.display().to_string()), "{err}");
    assert!(err.contains("group-writable (mode 0664"), "{err}");
    chmod(&config, 0o644);
    let (alice, _) = users();
    nix::unistd::chown(&config, Some(nix::unistd::Uid::from_raw(alice)), None).unwrap();
    let err = serve_refuses(&repo, &socket);
    assert!(err.contains(ALICE) && err.contains("mode 0644"), "{err}");
    nix::unistd::chown(&config, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    // A hook writable by its group or by anyone, or in such a directory.
    for (path, mode) in [(&hook, 0o775), (&hook, 0o757), (&hooks, 0o777)] {
        chmod(path, mode);
        let err = serve_refuses(&repo, &socket);
        assert!(err.contains(&hook.display().to_string()), "{err}");
        assert!(err.contains(&format!("mode {mode:04o}")), "{err}");
        chmod(path, 0o755);
    }

    // Without --repo, comb serve does not look for a comb.toml.
    let out = Command::new(COMB)
        .args(["serve", "--store"])
        .arg(&repo.store)
        .arg("--socket")
        .arg(&socket)
        .current_dir(&repo.root)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--repo"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!socket.exists());

    // While it runs: a hook made writable by others is not run, and a
    // comb.toml made so is not read.
    let daemon = Daemon::start(&repo, &[]);
    let (ok, v) = daemon.last(None, &["submit", "--pocket", "dev", "nosuch"]);
    assert!(!ok, "{v}");
    wait_until(Duration::from_secs(20), "the hook did not run", || {
        !seen_events(&seen).is_empty()
    });
    chmod(&hook, 0o777);
    let (_, v) = daemon.last(Some(BOB), &["submit", "--pocket", "dev", "nosuch"]);
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains(&hook.display().to_string()) && error.contains("mode 0777"),
        "{v}"
    );
    wait_until(Duration::from_secs(20), "no hook outcome", || {
        audit_entries(&repo.store).iter().any(|e| {
            e["kind"] == "hook"
                && e["detail"]["status"]
                    .as_str()
                    .is_some_and(|s| s.contains("mode 0777"))
        })
    });
    assert_eq!(seen_events(&seen).len(), 1, "the hook ran");
    chmod(&hook, 0o755);
    chmod(&config, 0o666);
    let (ok, v) = daemon.last(None, &["submit", "--pocket", "dev", "nosuch"]);
    assert!(!ok);
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains(&config.display().to_string()) && error.contains("mode 0666"),
        "{v}"
    );
    chmod(&config, 0o644);
}

#[test]
fn the_audit_head_goes_out_with_every_event_and_catches_truncation_and_rewrites() {
    if !is_root() {
        return;
    }
    users();
    let repo = Repo::new();
    repo.recipe("greet", &native("greet", &[], ""), "g\n");
    std::fs::remove_file(repo.root.join("comb.lock")).unwrap();
    let dir = repo.root.parent().unwrap().to_path_buf();
    let seen = dir.join("seen.jsonl");
    let hook = recording_hook(&dir.join("hooks"), &seen, "0");
    add_dev_pocket_and_hook(&repo, &dir, &hook);
    let mut daemon = Daemon::start(&repo, &[]);
    // The key: the daemon's user's only.
    let key = repo.store.join("service.key");
    let md = std::fs::symlink_metadata(&key).unwrap();
    assert_eq!((md.permissions().mode() & 0o7777, md.len()), (0o600, 32));

    let (ok, _) = daemon.last(None, &["submit", "--pocket", "dev", "greet", "--wait"]);
    assert!(!ok);
    let (ok, _) = daemon.last(Some(ALICE), &["submit", "--pocket", "dev", "greet"]);
    assert!(!ok);
    wait_until(Duration::from_secs(30), "the hooks did not run", || {
        seen_events(&seen).len() >= 4
    });
    std::thread::sleep(Duration::from_millis(500));
    let events = seen_events(&seen);
    let heads: Vec<String> = events
        .iter()
        .map(|e| {
            let n = e["audit_length"].as_i64().expect("audit_length");
            let h = e["audit_head"].as_str().expect("audit_head");
            assert_eq!(h.len(), 64);
            format!("{n}:{h}")
        })
        .collect();
    let mut args = vec!["verify"];
    for h in &heads {
        args.extend(["--expect", h]);
    }
    let out = daemon.audit(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("intact"), "{stdout}");
    // A head that was never the chain's is not.
    let last = heads.last().unwrap().clone();
    let (n, _) = last.split_once(':').unwrap();
    let out = daemon.audit(&["verify", "--expect", &format!("{n}:{}", "0".repeat(64))]);
    assert_eq!(out.status.code(), Some(1));

    // The intruder stops the daemon, deletes the last entries and resets
    // the counter: the chain is whole, but shorter than what went out.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let n: i64 = n.parse().unwrap();
    let db = rusqlite::Connection::open(repo.store.join("service.sqlite")).unwrap();
    db.execute_batch("DROP TRIGGER audit_no_delete").unwrap();
    db.execute("DELETE FROM audit WHERE id >= ?1", [n - 2])
        .unwrap();
    db.execute(
        "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'audit'",
        [n - 3],
    )
    .unwrap();
    drop(db);
    let out = daemon.audit(&["verify"]);
    assert!(out.status.success());
    let out = daemon.audit(&["verify", "--expect", &last]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("has {} entries, but entry {n} was seen", n - 3))
            && stderr.contains("removed from its end"),
        "{stderr}"
    );

    // Another key (the intruder's, or a key replaced) does not verify it.
    let good = std::fs::read(&key).unwrap();
    std::fs::write(&key, [0x5a; 32]).unwrap();
    let out = daemon.audit(&["verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("another key"), "{stderr}");
    // Nor does a key others may read.
    std::fs::write(&key, good).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = daemon.audit(&["verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("mode 0644"), "{stderr}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(daemon.audit(&["verify"]).status.success());
}

#[test]
fn a_link_at_the_socket_path_is_replaced_not_followed() {
    if !is_root() {
        return;
    }
    users();
    let repo = Repo::new();
    let dir = repo.root.parent().unwrap().to_path_buf();
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let socket = run.join("comb.sock");
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o640)).unwrap();
    let victim_dir = dir.join("victim-dir");
    std::fs::create_dir(&victim_dir).unwrap();
    std::fs::set_permissions(&victim_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let clients = nix::unistd::Group::from_name(CLIENTS_GROUP)
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for target in [&victim, &victim_dir] {
        std::os::unix::fs::symlink(target, &socket).unwrap();
        let daemon = Daemon::start(&repo, &[]);
        // What the link pointed to is as it was.
        let md = std::fs::metadata(target).unwrap();
        let mode = if target == &victim { 0o640 } else { 0o700 };
        assert_eq!(md.permissions().mode() & 0o7777, mode, "{target:?}");
        assert_eq!((md.uid(), md.gid()), (0, 0), "{target:?}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // The link is gone: the path is the daemon's socket, the clients'
        // group's.
        let md = std::fs::symlink_metadata(&socket).unwrap();
        assert!(md.file_type().is_socket());
        assert_eq!(md.permissions().mode() & 0o777, 0o660);
        assert_eq!(md.gid(), clients);
        let (ok, _) = daemon.last(Some(ALICE), &["queue"]);
        assert!(ok);
        // Nothing else was left in the directory.
        let names: Vec<_> = std::fs::read_dir(&run)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.iter().all(|n| n == "comb.sock" || n == "serve.log"),
            "{names:?}"
        );
        drop(daemon);
        let _ = std::fs::remove_file(&socket);
    }
    // A daemon stopping removes its socket, and nothing put in its place.
    let mut daemon = Daemon::start(&repo, &[]);
    std::fs::remove_file(&socket).unwrap();
    std::fs::write(&socket, "not the daemon's").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    daemon.child.wait().unwrap();
    assert_eq!(
        std::fs::read_to_string(&socket).unwrap(),
        "not the daemon's"
    );
    // And a path that is not a socket nor a link is not taken over.
    let err = serve_refuses(&repo, &socket);
    assert!(err.contains("exists and is not a socket"), "{err}");
}

#[test]
fn a_new_store_directory_works() {
    if !is_root() {
        return;
    }
    users();
    let repo = Repo::new();
    repo.recipe("greet", &native("greet", &[], ""), "g\n");
    let dir = repo.root.parent().unwrap().to_path_buf();
    add_to_config(
        &repo,
        &format!(
            "\n[pockets.dev]\nusers = [\"root\"]\npublish = \"{}/apt/dev\"\n",
            dir.display()
        ),
    );
    let store = dir.join("new-store");
    std::fs::create_dir(&store).unwrap();
    let daemon = Daemon::start_with_store(&repo, &store, &["--http", "127.0.0.1:0"]);
    let (ok, done) = daemon.last(None, &["submit", "--pocket", "dev", "greet", "--wait"]);
    assert!(ok, "{done}\n{}", daemon.log_text());
    assert_eq!(done["request"]["state"], "succeeded", "{done}");
    assert!(store.join("format").is_file());
    assert!(packages_file(&dir.join("apt/dev")).contains("Package: greet"));
    let out = daemon.audit(&["verify"]);
    assert!(out.status.success());
}

/// Root never serves: without `--user` it refuses and says how to set a
/// system user up; with it, the daemon, its store, its published pockets
/// and its hooks are that user's, and its builds run as ids of that
/// user's subordinate range.
#[test]
fn the_daemon_runs_as_its_system_user_never_as_root() {
    if !is_root() {
        return;
    }
    users();
    let repo = Repo::new();
    let dir = repo.root.parent().unwrap().to_path_buf();
    let socket = dir.join("run/comb.sock");
    let out = Command::new(COMB)
        .arg("serve")
        .arg("--repo")
        .arg(&repo.root)
        .arg("--socket")
        .arg(&socket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("does not run as root") && stderr.contains("--user"),
        "{stderr}"
    );
    assert!(!socket.exists());

    repo.recipe("greet", &native("greet", &[], ""), "g\n");
    let hooks = dir.join("hooks");
    let seen = dir.join("seen.jsonl");
    let hook = recording_hook(&hooks, &seen, "0");
    add_dev_pocket_and_hook(&repo, &dir, &hook);
    let daemon = Daemon::start(&repo, &[]);
    let (ok, done) = daemon.last(None, &["submit", "--pocket", "dev", "greet", "--wait"]);
    assert!(ok, "{done}\n{}", daemon.log_text());
    let uid = daemon_uid();
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uids.split_whitespace()
            .skip(1)
            .all(|u| u == uid.to_string()),
        "the daemon runs as {uids}, not as {DAEMON} ({uid})"
    );
    for path in [
        dir.join("apt/dev/Packages"),
        repo.store.join("index.sqlite"),
        seen.clone(),
    ] {
        wait_until(
            Duration::from_secs(20),
            &format!("{} to exist", path.display()),
            || path.exists(),
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().uid(),
            uid,
            "{}",
            path.display()
        );
    }
    // The build's layers are owned by ids of the daemon user's range.
    let layer = crate::users::tree_of(&repo.store, "base-install");
    let owner = std::fs::metadata(layer.join("0/usr")).unwrap().uid();
    assert!(
        (700_000..765_536).contains(&owner),
        "base-install's /usr is {owner}'s"
    );
}
