//! A pocket of `comb serve` is an APT repository that `apt-get` in a
//! sandbox installs from: the starter repository against the real mirror,
//! a pocket signed with a key made for the test, and the snapshot's own
//! apt in a comb environment, with no network.

use crate::real;
use crate::root;
use crate::users::{daemon_user, give_to, DAEMON};

use real::{comb, COMB};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn apt_get_in_a_sandbox_installs_from_a_signed_pocket() {
    if !root::is_root() {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let repo = dir.path().join("starter");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/starter"),
        &repo,
    );

    // Pin the host's suite (the lock is not part of the example).
    assert!(comb(&repo, &["update"]).status.success());

    // A signing key of the test's own.
    let gnupg = dir.path().join("gnupg");
    std::fs::create_dir(&gnupg).unwrap();
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(&gnupg)
            .args(["--batch", "--quiet"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    gpg(&[
        "--passphrase",
        "",
        "--quick-gen-key",
        "comb pocket test <pocket@test.invalid>",
        "ed25519",
        "sign",
        "never",
    ]);
    let listing = String::from_utf8(gpg(&["--with-colons", "--list-secret-keys"])).unwrap();
    let fingerprint = listing
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .and_then(|l| l.split(':').find(|f| f.len() == 40))
        .unwrap()
        .to_string();
    let key = dir.path().join("pocket.gpg");
    std::fs::write(&key, gpg(&["--export", &fingerprint])).unwrap();

    // A pocket of its own name: the store (and so the service's record of
    // pockets) is shared by every run of the tests.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let pocket = format!("t{nanos}");
    let apt = dir.path().join("apt");
    let mut toml = std::fs::read_to_string(repo.join("comb.toml")).unwrap();
    toml.push_str(&format!(
        "\n[pockets.{pocket}]\nusers = [\"root\"]\npublish = \"{}\"\nsign_with = \"{fingerprint}\"\n",
        apt.display()
    ));
    std::fs::write(repo.join("comb.toml"), toml).unwrap();

    // The daemon runs as its system user, with a store of its own kept
    // outside the checkout (like the tests' store) and the directories it
    // writes (its socket's, the pocket's) and its signing key its own.
    daemon_user();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::create_dir_all(&apt).unwrap();
    let daemon_store = Path::new("/var/cache/comb-test-daemon-store");
    std::fs::create_dir_all(daemon_store).unwrap();
    for owned in [&run, &apt, &gnupg, &daemon_store.to_path_buf()] {
        give_to(DAEMON, owned);
    }
    let socket = run.join("comb.sock");
    let log = dir.path().join("serve.log");
    let mut daemon = Command::new(COMB)
        .args(["serve", "--user", DAEMON])
        .arg("--repo")
        .arg(&repo)
        .arg("--store")
        .arg(daemon_store)
        .arg("--socket")
        .arg(&socket)
        .env("GNUPGHOME", &gnupg)
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline && daemon.try_wait().unwrap().is_none(),
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = Command::new(COMB)
        .args([
            "submit",
            "--pocket",
            &pocket,
            "greet-data",
            "--wait",
            "--socket",
        ])
        .arg(&socket)
        .output()
        .unwrap();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let served = std::fs::read_to_string(&log).unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\n{served}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(apt.join("InRelease").is_file() && apt.join("Release.gpg").is_file());

    // apt-get of the snapshot, as R in the base environment, sees only the
    // pocket (bound read-only), checks its signature and installs.
    let script = "set -e
echo 'deb [signed-by=/srv/pocket.gpg] file:/srv/pocket ./' > /tmp/pocket.list
o='-o Dir::Etc::SourceList=/tmp/pocket.list -o Dir::Etc::SourceParts=/nonexistent -o APT::Sandbox::User=root'
apt-get $o update 2>&1
apt-get $o install -y --no-install-recommends greet-data 2>&1
dpkg-query -W greet-data
cat /usr/share/greet/greetings.txt";
    let out = comb(
        &repo,
        &[
            "env",
            "run",
            "--as",
            "root",
            "--bind",
            &format!("{}:/srv/pocket", apt.display()),
            "--bind",
            &format!("{}:/srv/pocket.gpg", key.display()),
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("greet-data\t1.0-1"), "{text}");
    assert!(
        !text.contains("not signed") && !text.contains("NO_PUBKEY"),
        "{text}"
    );
    assert!(text.contains("Hello"), "{text}");
}
