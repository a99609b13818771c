//! A repository that rebuilds libraries the base environment holds (`libmd`,
//! whose `libmd0` the snapshot has at the same version, and `bzip2`, whose
//! `libbz2-1.0` the snapshot has as a newer binNMU) and a package that
//! builds against them: its environment has the repository's bytes, not
//! the base's, as the `.deb`s installed there show. Against the real
//! mirror of the host's APT sources; the store is the real-mirror tests'
//! (`tests/real`). Needs root, like CI.

use crate::real;

use crate::root;

use std::path::Path;
use std::process::Command;

const PROBE: &str = r#"[package]
name = "probe"
version = "1.0-1"
summary = "What a build environment holds of the base's libraries"
license = "MIT"
maintainer = "comb tests <tests@comb-tests.example.org>"

[source]
path = "src"

[build]
requires = ["libmd-dev", "libbz2-dev"]
script = """
out="$DESTDIR/usr/share/probe"
mkdir -p "$out"
dpkg-query -W -f '${Package} ${Version}\n' libmd0 libbz2-1.0 > "$out/versions"
for lib in libmd.so.0 libbz2.so.1.0; do
  sha256sum "$(readlink -f "/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/$lib")" | cut -d' ' -f1 >> "$out/libraries"
done
"""

[[output]]
name = "probe"
architecture = "all"
files = ["usr/share/probe/*"]
"#;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The `.deb` of `package` in the repository `out`.
fn deb_in(out: &Path, package: &str) -> std::path::PathBuf {
    std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{package}_"))
        })
        .unwrap_or_else(|| panic!("no {package} in {}", out.display()))
}

fn field(deb: &Path, name: &str) -> String {
    let out = Command::new("dpkg-deb")
        .arg("--field")
        .arg(deb)
        .arg(name)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `dpkg-deb -x DEB DIR`.
fn unpack(deb: &Path, dir: &Path) {
    assert!(Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(dir)
        .status()
        .unwrap()
        .success());
}

/// The sha256 of the shared library `soname` that `deb` ships.
fn library_digest(deb: &Path, soname: &str, scratch: &Path) -> String {
    let dir = scratch.join(field(deb, "Package"));
    std::fs::create_dir_all(&dir).unwrap();
    unpack(deb, &dir);
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "sha256sum \"$(readlink -f \"$(find . -name '{soname}' | head -n1)\")\" | cut -d' ' -f1"
        ))
        .current_dir(&dir)
        .output()
        .unwrap();
    let digest = String::from_utf8(found.stdout).unwrap().trim().to_string();
    assert_eq!(digest.len(), 64, "no {soname} in {}", deb.display());
    digest
}

#[test]
fn the_repository_replaces_the_base_copies_of_what_it_builds() {
    if !root::is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    write(&repo.join("comb.toml"), "[distro]\n");
    write(
        &repo.join("libmd/recipe.toml"),
        "[source]\ndebian = \"libmd\"\n",
    );
    write(
        &repo.join("bzip2/recipe.toml"),
        "[source]\ndebian = \"bzip2\"\n",
    );
    write(&repo.join("probe/recipe.toml"), PROBE);
    // New bytes at every run: probe is built again (a cheap build), so its
    // environment's stages are in the run even when the store already
    // holds everything else.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    write(&repo.join("probe/src/README"), &format!("probe {nonce}\n"));
    assert!(real::comb(&repo, &["update"]).status.success());
    let out = dir.path().join("out");
    let built = real::comb(
        &repo,
        &["build", "--all", "-j", "2", "--out", out.to_str().unwrap()],
    );
    assert!(built.status.success());

    let probe = dir.path().join("probe");
    unpack(&deb_in(&out, "probe"), &probe);
    let seen =
        |file: &str| std::fs::read_to_string(probe.join("usr/share/probe").join(file)).unwrap();
    // The versions installed in probe's environment are the repository's.
    let versions = seen("versions");
    for package in ["libmd0", "libbz2-1.0"] {
        let ours = field(&deb_in(&out, package), "Version");
        assert!(
            versions.lines().any(|l| l == format!("{package} {ours}")),
            "{package} {ours} is not what the environment had:\n{versions}"
        );
    }
    // And so are the bytes, also where the version is the base's own.
    let scratch = dir.path().join("debs");
    let expected = [
        library_digest(&deb_in(&out, "libmd0"), "libmd.so.0", &scratch),
        library_digest(&deb_in(&out, "libbz2-1.0"), "libbz2.so.1.0", &scratch),
    ];
    let libraries = seen("libraries");
    assert_eq!(
        libraries.lines().collect::<Vec<_>>(),
        expected.iter().map(String::as_str).collect::<Vec<_>>(),
        "the environment's libraries are not the repository's"
    );

    // comb why names them, and what each replaced.
    let why = real::comb(&repo, &["why", "probe", "--json"]);
    assert!(why.status.success());
    let why: serde_json::Value = serde_json::from_slice(&why.stdout).unwrap();
    let listed: Vec<String> = why["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "resolve" && s["name"] == "pkg-env:probe")
        .map(|s| {
            s["from_repository"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect()
        })
        .expect("no resolve of probe's environment in comb why");
    for package in ["libmd0", "libbz2-1.0"] {
        assert!(
            listed
                .iter()
                .any(|l| l.starts_with(&format!("{package} ")) && l.contains("replaces the base's")),
            "{listed:?}"
        );
    }
    assert!(
        listed.iter().any(|l| l.starts_with("libmd-dev ")),
        "{listed:?}"
    );

    // The repository's own builds keep the snapshot's base: bzip2 was
    // built in an environment with the archive's libmd0 (checked below).
    let why_bzip2 = real::comb(&repo, &["why", "bzip2", "--json"]);
    let why_bzip2: serde_json::Value = serde_json::from_slice(&why_bzip2.stdout).unwrap();
    assert!(why_bzip2["stages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["from_repository"].as_array().unwrap().is_empty()));

    // [base] bootstrap: the base layers are made of the repository's
    // builds of libmd and bzip2, built first on the snapshot's base, and
    // probe builds on them with nothing left to replace.
    write(
        &repo.join("comb.toml"),
        "[distro]\n\n[base]\nbootstrap = true\n",
    );
    write(
        &repo.join("probe/src/README"),
        &format!("probe {nonce} bootstrapped\n"),
    );
    let out = dir.path().join("out-bootstrapped");
    let built = real::comb(
        &repo,
        &["build", "--all", "-j", "2", "--out", out.to_str().unwrap()],
    );
    assert!(built.status.success());
    let said = String::from_utf8_lossy(&built.stderr);
    assert!(
        said.contains("bootstrap: the base is made of the repository's builds of bzip2, libmd"),
        "{said}"
    );
    let probe = dir.path().join("probe-bootstrapped");
    unpack(&deb_in(&out, "probe"), &probe);
    let libraries = std::fs::read_to_string(probe.join("usr/share/probe/libraries")).unwrap();
    assert_eq!(
        libraries.lines().collect::<Vec<_>>(),
        expected.iter().map(String::as_str).collect::<Vec<_>>(),
        "the bootstrapped base's libraries are not the repository's"
    );
    let why = real::comb(&repo, &["why", "probe", "--json"]);
    let why: serde_json::Value = serde_json::from_slice(&why.stdout).unwrap();
    let stages = why["stages"].as_array().unwrap();
    // Two base-installs in the run: the snapshot's, for libmd and bzip2,
    // and the one made of their packages.
    let base_installs: std::collections::BTreeSet<&str> = stages
        .iter()
        .filter(|s| s["stage"] == "base-install")
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(base_installs.len(), 2, "{stages:?}");
    for s in stages {
        for p in s["from_repository"].as_array().unwrap() {
            assert!(!p.as_str().unwrap().contains("replaces"), "{s}");
        }
    }
}
