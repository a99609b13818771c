//! A published pocket is an APT repository real tools accept: signed with
//! a throwaway GnuPG key, read by the host's own `apt-get` (with a private
//! configuration and state, so the host is left alone and nothing goes to
//! the network), and refused by it once its `InRelease` is tampered with.

use crate::root;

use comb_engine::publish::{list_tree, write_deb, BinarySpec};
use comb_service::publish::{check_deb, pool_path, write_pocket, PocketDeb, PublishError, Signer};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A GnuPG home of its own, whose agent is stopped when it goes.
struct GnupgHome(PathBuf);

impl GnupgHome {
    fn new(path: PathBuf) -> GnupgHome {
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
        GnupgHome(path)
    }

    fn gpg(&self) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.arg("--homedir")
            .arg(&self.0)
            .args(["--batch", "--no-tty"])
            .stdin(Stdio::null());
        cmd
    }

    /// Makes a signing key without a passphrase; returns its fingerprint.
    fn generate_key(&self) -> String {
        let out = self
            .gpg()
            .args(["--passphrase", "", "--quick-gen-key"])
            .args(["comb test <comb@test.invalid>", "ed25519", "sign", "never"])
            .output()
            .unwrap();
        assert!(out.status.success(), "gpg --quick-gen-key: {}", text(&out));
        let out = self
            .gpg()
            .args(["--list-secret-keys", "--with-colons"])
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| !f.is_empty()))
            .unwrap_or_else(|| panic!("no fingerprint in {listing}"))
            .to_string()
    }
}

impl Drop for GnupgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.0)
            .args(["--kill", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Writes a real `.deb` into `out`; returns its record and path.
fn make_deb(out: &Path, name: &str, version: &str, arch: &str) -> (PocketDeb, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let doc = root.path().join("usr/share/doc").join(name);
    fs::create_dir_all(&doc).unwrap();
    fs::write(doc.join("README"), format!("{name} {version}\n")).unwrap();
    let spec = BinarySpec {
        package: name.into(),
        version: version.into(),
        architecture: arch.into(),
        maintainer: "comb tests <comb@test.invalid>".into(),
        summary: format!("{name} for tests"),
        ..Default::default()
    };
    let files = list_tree(root.path()).unwrap();
    let w = write_deb(&spec, root.path(), &files, 1_700_000_000, out).unwrap();
    let deb = PocketDeb {
        name: name.into(),
        version: version.into(),
        architecture: arch.into(),
        filename: w.filename,
        sha256: w.sha256,
        size: w.size,
    };
    (deb, w.path)
}

/// The host's apt-get with its own configuration, state and cache under
/// `dir`, reading only `sources.list` there.
struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn new(dir: PathBuf, pocket: &Path, key: &Path) -> Apt {
        let empty = dir.join("empty");
        for d in [
            "empty",
            "state/lists/partial",
            "cache/archives/partial",
            "log",
            "download",
        ] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        fs::write(dir.join("state/status"), "").unwrap();
        fs::write(
            dir.join("sources.list"),
            format!(
                "deb [signed-by={}] file:{} ./\n",
                key.display(),
                pocket.display()
            ),
        )
        .unwrap();
        // Read before the host's apt.conf.d, which it then points away
        // from: none of the host's hooks or settings apply.
        let d = dir.display();
        let conf = format!(
            "Dir::Etc::main \"/dev/null\";\n\
             Dir::Etc::parts \"{e}\";\n\
             Dir::Etc::SourceList \"{d}/sources.list\";\n\
             Dir::Etc::SourceParts \"{e}\";\n\
             Dir::Etc::Trusted \"{d}/no-such-keyring.gpg\";\n\
             Dir::Etc::TrustedParts \"{e}\";\n\
             Dir::Etc::Preferences \"{d}/no-such-preferences\";\n\
             Dir::Etc::PreferencesParts \"{e}\";\n\
             Dir::State \"{d}/state\";\n\
             Dir::State::status \"{d}/state/status\";\n\
             Dir::Cache \"{d}/cache\";\n\
             Dir::Log \"{d}/log\";\n\
             APT::Sandbox::User \"root\";\n\
             Acquire::Languages \"none\";\n",
            e = empty.display()
        );
        fs::write(dir.join("apt.conf"), conf).unwrap();
        Apt { dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("apt-get")
            .env("APT_CONFIG", self.dir.join("apt.conf"))
            .env("LC_ALL", "C")
            .current_dir(self.dir.join("download"))
            .arg("-q")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `apt-get update`, which must succeed with nothing to warn about.
    fn update_cleanly(&self) {
        let out = self.run(&["update"]);
        let log = text(&out);
        assert!(out.status.success(), "apt-get update failed:\n{log}");
        for bad in ["W:", "E:", "NO_PUBKEY", "not signed", "insecure", "BADSIG"] {
            assert!(!log.contains(bad), "apt-get update said {bad:?}:\n{log}");
        }
    }
}

fn skip_unless_ready() -> bool {
    // apt-get must run as root.
    if !root::is_root() {
        return false;
    }
    for program in ["apt-get", "gpg", "gpgv"] {
        assert!(
            have(program),
            "{program} is not installed: run .ci/install-deps"
        );
    }
    true
}

#[test]
fn a_signed_pocket_is_a_repository_real_apt_trusts() {
    if !skip_unless_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let gnupg = GnupgHome::new(tmp.path().join("gnupg"));
    let fingerprint = gnupg.generate_key();
    let signer = Signer {
        key: fingerprint.clone(),
        gnupghome: Some(gnupg.0.clone()),
    };

    let host_arch = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "amd64".into());
    let store = tmp.path().join("store");
    fs::create_dir(&store).unwrap();
    let mut sources = BTreeMap::new();
    let mut debs = Vec::new();
    for (name, version, arch) in [
        ("comb-hello", "1.0-1", "all"),
        ("libcombtest1", "1:2.0-3", host_arch.as_str()),
    ] {
        let (deb, path) = make_deb(&store, name, version, arch);
        sources.insert(deb.sha256.clone(), path);
        debs.push(deb);
    }
    let source = |d: &PocketDeb| sources.get(&d.sha256).cloned();

    let pocket = tmp.path().join("pockets/dev");
    write_pocket(&pocket, Some(&signer), &debs, &source).unwrap();
    for name in [
        "InRelease",
        "Release.gpg",
        "Release",
        "Packages",
        "Packages.xz",
    ] {
        assert!(pocket.join(name).is_file(), "{name} is missing");
    }
    let release = fs::read_to_string(pocket.join("Release")).unwrap();
    let inrelease = fs::read_to_string(pocket.join("InRelease")).unwrap();
    assert!(inrelease.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n"));
    assert!(inrelease.contains(&release), "InRelease signs Release");
    for d in &debs {
        check_deb(&pocket, d).unwrap();
    }

    // The public key, as apt's signed-by takes it.
    let key = tmp.path().join("key.gpg");
    let out = gnupg
        .gpg()
        .arg("--export")
        .arg(&fingerprint)
        .output()
        .unwrap();
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "{}",
        text(&out)
    );
    fs::write(&key, &out.stdout).unwrap();

    // Release.gpg is a valid detached signature too.
    let out = Command::new("gpgv")
        .arg("--keyring")
        .arg(&key)
        .arg(pocket.join("Release.gpg"))
        .arg(pocket.join("Release"))
        .output()
        .unwrap();
    assert!(out.status.success(), "gpgv Release.gpg: {}", text(&out));

    let apt = Apt::new(tmp.path().join("apt"), &pocket, &key);
    apt.update_cleanly();
    let out = apt.run(&["download", "comb-hello", "libcombtest1"]);
    assert!(out.status.success(), "apt-get download:\n{}", text(&out));
    for d in &debs {
        // apt names downloads with the epoch, %3a-encoded.
        let got = fs::read_dir(apt.dir.join("download"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{}_", d.name))
            })
            .unwrap_or_else(|| panic!("apt-get download left no {}", d.name));
        assert_eq!(
            fs::read(&got).unwrap(),
            fs::read(&sources[&d.sha256]).unwrap()
        );
        assert_eq!(
            fs::read(pocket.join(pool_path(d))).unwrap(),
            fs::read(&got).unwrap()
        );
        fs::remove_file(got).unwrap();
    }

    // A later publication without comb-hello: apt sees it go.
    write_pocket(&pocket, Some(&signer), &debs[1..], &source).unwrap();
    assert!(!pocket.join(pool_path(&debs[0])).exists());
    apt.update_cleanly();
    let out = apt.run(&["download", "comb-hello"]);
    assert!(!out.status.success(), "comb-hello is still offered");
    let out = apt.run(&["download", "libcombtest1"]);
    assert!(out.status.success(), "{}", text(&out));

    // An edited InRelease no longer verifies, and apt refuses the pocket.
    let signed = fs::read_to_string(pocket.join("InRelease")).unwrap();
    assert!(signed.contains("Label: comb\n"));
    fs::write(
        pocket.join("InRelease"),
        signed.replace("Label: comb\n", "Label: evil\n"),
    )
    .unwrap();
    let fresh = Apt::new(tmp.path().join("apt-fresh"), &pocket, &key);
    let out = fresh.run(&["update"]);
    let log = text(&out);
    assert!(
        !out.status.success(),
        "apt-get update accepted a tampered InRelease:\n{log}"
    );
    assert!(
        log.contains("BADSIG") || log.contains("signatures were invalid"),
        "{log}"
    );
    // With indices from before, apt keeps them and warns (exit 0).
    let log = text(&apt.run(&["update"]));
    assert!(
        log.contains("BADSIG") && log.contains("The repository is not updated"),
        "{log}"
    );

    // Publishing unsigned drops the signatures; apt then refuses the
    // pocket as unsigned rather than trusting a stale InRelease.
    write_pocket(&pocket, None, &debs[1..], &source).unwrap();
    assert!(!pocket.join("InRelease").exists());
    assert!(!pocket.join("Release.gpg").exists());
    let out = fresh.run(&["update"]);
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("is not signed"), "{log}");
}

#[test]
fn an_unknown_signing_key_is_named_and_nothing_changes() {
    if !have("gpg") {
        eprintln!("skipped: gpg is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let gnupg = GnupgHome::new(tmp.path().join("gnupg"));
    let store = tmp.path().join("store");
    fs::create_dir(&store).unwrap();
    let (deb, path) = make_deb(&store, "comb-hello", "1.0", "all");
    let pocket = tmp.path().join("prod");
    write_pocket(&pocket, None, std::slice::from_ref(&deb), &|_| {
        Some(path.clone())
    })
    .unwrap();
    let before = fs::read(pocket.join("Release")).unwrap();

    let signer = Signer {
        key: "nobody@comb.invalid".into(),
        gnupghome: Some(gnupg.0.clone()),
    };
    let err = write_pocket(&pocket, Some(&signer), &[deb], &|_| Some(path.clone())).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PublishError::NoSecretKey { .. }), "{msg}");
    assert!(msg.contains("nobody@comb.invalid"), "{msg}");
    assert!(msg.contains(&gnupg.0.display().to_string()), "{msg}");
    assert_eq!(fs::read(pocket.join("Release")).unwrap(), before);
    assert!(!pocket.join("InRelease").exists());
}
