//! The aptbox against the host's real APT: each test writes its own
//! `Packages` index (text only; simulation needs no `.deb`s) and dpkg
//! status files in a temporary directory.
//!
//! Needs: apt (apt-get, apt-config).

use comb_distro::aptbox::essential_and_required_in;
use comb_distro::fetch::sha256_hex;
use comb_distro::{essential_and_required, parse_packages, Aptbox, Error, Resolved};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

/// One `Packages` paragraph; `extra` holds further fields, one a line.
fn para(name: &str, version: &str, arch: &str, extra: &str) -> String {
    let deb = format!("{name}_{}_{arch}.deb", version.replace(':', "%3a"));
    let mut p = format!(
        "Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Test <test@invalid>\n"
    );
    for line in extra.lines().map(str::trim).filter(|l| !l.is_empty()) {
        p.push_str(line);
        p.push('\n');
    }
    p.push_str(&format!(
        "Filename: pool/main/{}/{name}/{deb}\nSize: {}\nSHA256: {}\nDescription: test package {name}\n\n",
        &name[..1],
        1000 + name.len() + version.len(),
        sha_of(name, version, arch)
    ));
    p
}

fn sha_of(name: &str, version: &str, arch: &str) -> String {
    sha256_hex(format!("{name} {version} {arch}").as_bytes())
}

/// One installed package of a dpkg status file.
fn installed(name: &str, version: &str, arch: &str, extra: &str) -> String {
    let mut p = format!(
        "Package: {name}\nStatus: install ok installed\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Test <test@invalid>\n"
    );
    for line in extra.lines().map(str::trim).filter(|l| !l.is_empty()) {
        p.push_str(line);
        p.push('\n');
    }
    p.push_str(&format!("Description: installed {name}\n\n"));
    p
}

/// The test archive, in two index files (as main and contrib would be).
fn indices(dir: &Path) -> Vec<PathBuf> {
    let main = [
        // A chain: app -> lib1 -> base.
        para("app", "1.0-1", "amd64", "Depends: lib1 (>= 1.0)"),
        para("lib1", "1.2-1", "amd64", "Depends: base\nMulti-Arch: same"),
        para("base", "1.0", "all", "Priority: required"),
        // Alternatives: the first is missing, then the first of two present.
        para(
            "alt",
            "1.0",
            "amd64",
            "Depends: not-there | second, third | fourth",
        ),
        para("second", "1.0", "all", ""),
        para("third", "1.0", "all", ""),
        para("fourth", "1.0", "all", ""),
        // A virtual package with one provider.
        para("mailer", "1.0", "amd64", "Depends: mail-transport-agent"),
        para(
            "postman",
            "3.1-2",
            "amd64",
            "Provides: mail-transport-agent",
        ),
        // Two versions of one package, in index order old then new.
        para("multi", "1.0", "amd64", ""),
        para("multi", "1:0.5", "amd64", ""),
        // An unsatisfiable dependency and a conflict.
        para("needsnew", "1.0", "amd64", "Depends: base (>= 2)"),
        para("enemy", "1.0", "amd64", "Conflicts: app"),
        // Multiarch qualifiers.
        para("tool", "2.0", "amd64", "Multi-Arch: allowed"),
        para("usetool", "1.0", "amd64", "Depends: tool:any, base:native"),
        // Essential.
        para(
            "shell",
            "5.2",
            "amd64",
            "Essential: yes\nPriority: required",
        ),
        para("coreish", "9.1", "amd64", "Essential: yes"),
        para("optional", "1.0", "amd64", "Priority: optional"),
    ]
    .concat();
    // The second index does not end with a blank line: concatenation must
    // still keep paragraphs apart.
    let contrib = para("extra", "0.1", "all", "Depends: app")
        .trim_end()
        .to_string();
    let a = dir.join("main-Packages");
    let b = dir.join("contrib-Packages");
    std::fs::write(&a, main).unwrap();
    std::fs::write(&b, contrib).unwrap();
    vec![a, b]
}

fn setup() -> (tempfile::TempDir, Aptbox) {
    let dir = tempfile::tempdir().unwrap();
    let idx = indices(dir.path());
    let aptbox = Aptbox::new(&dir.path().join("work"), "amd64", &idx).unwrap();
    (dir, aptbox)
}

fn req(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn names_versions(r: &[Resolved]) -> Vec<(String, String)> {
    r.iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect()
}

fn nv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn resolve_err(aptbox: &Aptbox, names: &[&str], status: Option<&Path>) -> (Vec<String>, String) {
    match aptbox.resolve(&req(names), status) {
        Err(Error::Resolve {
            names, explanation, ..
        }) => (names, explanation),
        other => panic!("expected Error::Resolve for {names:?}, got {other:?}"),
    }
}

#[test]
fn chain_with_records() {
    let (_dir, aptbox) = setup();
    let t = Instant::now();
    let r = aptbox.resolve(&req(&["app"]), None).unwrap();
    eprintln!("resolve of a chain: {:?}", t.elapsed());
    assert_eq!(
        names_versions(&r),
        nv(&[("app", "1.0-1"), ("base", "1.0"), ("lib1", "1.2-1")])
    );
    let base = &r[1];
    assert_eq!(
        base,
        &Resolved {
            name: "base".into(),
            version: "1.0".into(),
            architecture: "all".into(),
            sha256: sha_of("base", "1.0", "all"),
            size: 1000 + 4 + 3,
            filename: "pool/main/b/base/base_1.0_all.deb".into(),
        }
    );
    assert_eq!(r[0].architecture, "amd64");

    // A package from the second index, which had no final blank line.
    let r = aptbox.resolve(&req(&["extra"]), None).unwrap();
    assert_eq!(
        names_versions(&r),
        nv(&[
            ("app", "1.0-1"),
            ("base", "1.0"),
            ("extra", "0.1"),
            ("lib1", "1.2-1")
        ])
    );
    // Nothing asked, nothing to install.
    assert!(aptbox.resolve(&[], None).unwrap().is_empty());
}

#[test]
fn alternatives_virtual_and_multiarch() {
    let (_dir, aptbox) = setup();
    let r = aptbox.resolve(&req(&["alt"]), None).unwrap();
    assert_eq!(
        names_versions(&r),
        nv(&[("alt", "1.0"), ("second", "1.0"), ("third", "1.0")])
    );

    let r = aptbox.resolve(&req(&["mailer"]), None).unwrap();
    assert_eq!(
        names_versions(&r),
        nv(&[("mailer", "1.0"), ("postman", "3.1-2")])
    );
    // Asking for the virtual name itself picks its only provider.
    let r = aptbox
        .resolve(&req(&["mail-transport-agent"]), None)
        .unwrap();
    assert_eq!(names_versions(&r), nv(&[("postman", "3.1-2")]));

    let r = aptbox.resolve(&req(&["usetool"]), None).unwrap();
    assert_eq!(
        names_versions(&r),
        nv(&[("base", "1.0"), ("tool", "2.0"), ("usetool", "1.0")])
    );
    // An architecture qualifier for the native architecture.
    let r = aptbox.resolve(&req(&["tool:amd64"]), None).unwrap();
    assert_eq!(names_versions(&r), nv(&[("tool", "2.0")]));
}

#[test]
fn version_pinning() {
    let (_dir, aptbox) = setup();
    // The epoch makes 1:0.5 the newer one.
    let r = aptbox.resolve(&req(&["multi"]), None).unwrap();
    assert_eq!(names_versions(&r), nv(&[("multi", "1:0.5")]));
    let r = aptbox.resolve(&req(&["multi=1.0"]), None).unwrap();
    assert_eq!(names_versions(&r), nv(&[("multi", "1.0")]));
    assert_eq!(r[0].sha256, sha_of("multi", "1.0", "amd64"));
    let r = aptbox.resolve(&req(&["multi:amd64=1.0"]), None).unwrap();
    assert_eq!(names_versions(&r), nv(&[("multi", "1.0")]));
}

#[test]
fn on_top_of_a_status_file() {
    let (dir, aptbox) = setup();
    let status = dir.path().join("status");
    // base is installed at the needed version; lib1 at one too old for
    // app (>= 1.0).
    std::fs::write(
        &status,
        [
            installed("base", "1.0", "all", ""),
            installed("lib1", "0.9-1", "amd64", "Depends: base"),
            installed("local-only", "7", "amd64", ""),
        ]
        .concat(),
    )
    .unwrap();
    let before = std::fs::read(&status).unwrap();
    let r = aptbox.resolve(&req(&["app"]), Some(&status)).unwrap();
    // The status file given is only read.
    assert_eq!(std::fs::read(&status).unwrap(), before);
    // base is not returned; lib1 is upgraded.
    assert_eq!(
        names_versions(&r),
        nv(&[("app", "1.0-1"), ("lib1", "1.2-1")])
    );
    // Already installed at the right version: nothing to do.
    let r = aptbox.resolve(&req(&["base"]), Some(&status)).unwrap();
    assert!(r.is_empty(), "{r:?}");
    // An installed version that satisfies the dependency is kept, not
    // upgraded: APT changes as little of the layer below as it can.
    std::fs::write(
        &status,
        [
            installed("base", "1.0", "all", ""),
            installed("lib1", "1.0-1", "amd64", "Depends: base"),
        ]
        .concat(),
    )
    .unwrap();
    let r = aptbox.resolve(&req(&["app"]), Some(&status)).unwrap();
    assert_eq!(names_versions(&r), nv(&[("app", "1.0-1")]));
    // Unless the version is asked for.
    let r = aptbox
        .resolve(&req(&["app", "lib1=1.2-1"]), Some(&status))
        .unwrap();
    assert_eq!(
        names_versions(&r),
        nv(&[("app", "1.0-1"), ("lib1", "1.2-1")])
    );

    // Installing something that conflicts with an installed package would
    // remove it: refused, with APT's plan.
    std::fs::write(&status, installed("app", "1.0-1", "amd64", "")).unwrap();
    let (names, explanation) = resolve_err(&aptbox, &["enemy"], Some(&status));
    assert_eq!(names, ["enemy"]);
    assert!(explanation.contains("REMOVED"), "{explanation}");
    assert!(explanation.contains("app"), "{explanation}");
    assert!(explanation.contains("E: "), "{explanation}");
}

#[test]
fn failures_name_the_package_with_apts_text() {
    let (_dir, aptbox) = setup();

    let (names, explanation) = resolve_err(&aptbox, &["app", "nosuch"], None);
    assert_eq!(names, ["nosuch"]);
    assert!(
        explanation.contains("Unable to locate package nosuch"),
        "{explanation}"
    );
    assert!(!explanation.contains("Reading package lists"));

    let (names, explanation) = resolve_err(&aptbox, &["multi=3.0"], None);
    assert_eq!(names, ["multi"]);
    assert!(
        explanation.contains("Version '3.0' for 'multi' was not found"),
        "{explanation}"
    );

    let (names, explanation) = resolve_err(&aptbox, &["needsnew"], None);
    assert_eq!(names, ["needsnew"]);
    assert!(explanation.contains("base (>= 2)"), "{explanation}");
    let err = aptbox.resolve(&req(&["needsnew"]), None).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("cannot resolve needsnew"), "{message}");
    assert!(message.contains("APT says"), "{message}");

    // A conflict between two requested packages.
    let (names, explanation) = resolve_err(&aptbox, &["app", "enemy"], None);
    assert!(names.contains(&"enemy".to_string()), "{names:?}");
    assert!(explanation.contains("Conflicts: app"), "{explanation}");

    // Requests that are not plain names never reach APT as patterns or
    // options.
    for bad in ["-s", "ap*", "?essential", "app/stable", "Foo", "app=1.0 x"] {
        let (names, _) = resolve_err(&aptbox, &[bad], None);
        assert_eq!(names, [bad]);
    }
}

#[test]
fn deterministic_and_concurrent() {
    let dir = tempfile::tempdir().unwrap();
    let idx = indices(dir.path());
    let one = Aptbox::new(&dir.path().join("one"), "amd64", &idx).unwrap();
    // A work path with a space and a percent sign (quoted in the file: URI).
    let two = Aptbox::new(&dir.path().join("t w%o"), "amd64", &idx).unwrap();
    assert_eq!(one.digest(), two.digest());
    let set = req(&["mailer", "app", "alt", "usetool", "multi=1.0"]);
    let first = one.resolve(&set, None).unwrap();
    assert_eq!(first, one.resolve(&set, None).unwrap());
    assert_eq!(first, two.resolve(&set, None).unwrap());
    let mut reversed = set.clone();
    reversed.reverse();
    assert_eq!(first, one.resolve(&reversed, None).unwrap());
    let mut sorted = first.clone();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(first, sorted);

    // Several resolves at once on one Aptbox.
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| one.resolve(&set, None).unwrap()))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), first);
        }
    });
    // Each resolve cleans up after itself.
    let runs: Vec<_> = std::fs::read_dir(one.work().join("runs"))
        .unwrap()
        .collect();
    assert!(runs.is_empty(), "{runs:?}");
}

#[test]
fn update_runs_once_per_set_of_indices() {
    let dir = tempfile::tempdir().unwrap();
    let idx = indices(dir.path());
    let work = dir.path().join("work");
    let aptbox = Aptbox::new(&work, "amd64", &idx).unwrap();
    let cache = work.join("cache/srcpkgcache.bin");
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let built = mtime(&cache);
    std::thread::sleep(std::time::Duration::from_millis(20));

    // Resolves and a second Aptbox on the same indices reuse APT's cache.
    aptbox.resolve(&req(&["app"]), None).unwrap();
    let again = Aptbox::new(&work, "amd64", &idx).unwrap();
    assert_eq!(again.digest(), aptbox.digest());
    again.resolve(&req(&["app"]), None).unwrap();
    assert_eq!(mtime(&cache), built);

    // Other indices: set up again, and the new packages are seen.
    std::fs::write(&idx[1], para("newcomer", "1.0", "all", "")).unwrap();
    let changed = Aptbox::new(&work, "amd64", &idx).unwrap();
    assert_ne!(changed.digest(), aptbox.digest());
    let r = changed.resolve(&req(&["newcomer"]), None).unwrap();
    assert_eq!(names_versions(&r), nv(&[("newcomer", "1.0")]));
    let (names, _) = resolve_err(&changed, &["extra"], None);
    assert_eq!(names, ["extra"]);
}

#[test]
fn duplicate_versions_with_different_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let idx = indices(dir.path());
    // A local rebuild with the same version as an archive package.
    let mut local = para("base", "1.0", "all", "Priority: required");
    local = local.replace(&sha_of("base", "1.0", "all"), &sha_of("local", "1", "x"));
    let local_index = dir.path().join("local-Packages");
    std::fs::write(&local_index, local).unwrap();
    let mut all = idx.clone();
    all.push(local_index);
    let aptbox = Aptbox::new(&dir.path().join("work"), "amd64", &all).unwrap();
    let (names, explanation) = resolve_err(&aptbox, &["base"], None);
    assert_eq!(names, ["base"]);
    assert!(
        explanation.contains("two different packages"),
        "{explanation}"
    );
    // The same record twice is fine.
    let dup = dir.path().join("dup-Packages");
    std::fs::write(&dup, para("tool", "2.0", "amd64", "Multi-Arch: allowed")).unwrap();
    let mut all = idx.clone();
    all.push(dup);
    let aptbox = Aptbox::new(&dir.path().join("work2"), "amd64", &all).unwrap();
    let r = aptbox.resolve(&req(&["tool"]), None).unwrap();
    assert_eq!(names_versions(&r), nv(&[("tool", "2.0")]));
}

/// (path, mtime, size) of every entry under `root`, not following links.
fn tree_stamps(root: &Path, out: &mut BTreeMap<PathBuf, (SystemTime, u64)>) {
    let Ok(meta) = std::fs::symlink_metadata(root) else {
        return;
    };
    out.insert(root.to_path_buf(), (meta.modified().unwrap(), meta.len()));
    if meta.is_dir() {
        if let Ok(entries) = std::fs::read_dir(root) {
            for e in entries.flatten() {
                tree_stamps(&e.path(), out);
            }
        }
    }
}

#[test]
fn the_hosts_apt_is_never_used() {
    let host_roots = ["/etc/apt", "/var/lib/apt", "/var/cache/apt"];
    let mut before = BTreeMap::new();
    for root in host_roots {
        tree_stamps(Path::new(root), &mut before);
    }
    tree_stamps(Path::new("/var/lib/dpkg/status"), &mut before);

    let (dir, aptbox) = setup();
    let work = aptbox.work().to_path_buf();
    aptbox.resolve(&req(&["app", "mailer"]), None).unwrap();
    let _ = aptbox.resolve(&req(&["nosuch"]), None);

    // Every file APT would read or write, as APT itself resolves it from
    // the configuration, is inside the work directory (or /dev/null).
    let keys = [
        ("ETC_MAIN", "Dir::Etc::main/f"),
        ("ETC_PARTS", "Dir::Etc::parts/d"),
        ("SOURCELIST", "Dir::Etc::sourcelist/f"),
        ("SOURCEPARTS", "Dir::Etc::sourceparts/d"),
        ("PREFS", "Dir::Etc::preferences/f"),
        ("PREFPARTS", "Dir::Etc::preferencesparts/d"),
        ("TRUSTED", "Dir::Etc::trusted/f"),
        ("TRUSTEDPARTS", "Dir::Etc::trustedparts/d"),
        ("NETRC", "Dir::Etc::netrc/f"),
        ("NETRCPARTS", "Dir::Etc::netrcparts/d"),
        ("STATE", "Dir::State/d"),
        ("LISTS", "Dir::State::lists/d"),
        ("STATUS", "Dir::State::status/f"),
        ("EXTENDED", "Dir::State::extended_states/f"),
        ("CACHE", "Dir::Cache/d"),
        ("ARCHIVES", "Dir::Cache::archives/d"),
        ("SRCPKGCACHE", "Dir::Cache::srcpkgcache/f"),
        ("LOG", "Dir::Log/d"),
        ("ARCH", "APT::Architecture"),
    ];
    let mut cmd = Command::new("apt-config");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("APT_CONFIG", aptbox.config_file())
        .arg("shell");
    for (var, key) in keys {
        cmd.args([var, key]);
    }
    let out = cmd.output().expect("apt-config runs (install apt)");
    assert!(out.status.success(), "{out:?}");
    let shell = String::from_utf8(out.stdout).unwrap();
    let mut seen = 0;
    for line in shell.lines() {
        let (var, value) = line.split_once('=').unwrap();
        let value = value.trim_matches('\'');
        seen += 1;
        match var {
            "ARCH" => assert_eq!(value, "amd64", "{line}"),
            _ => assert!(
                value == "/dev/null" || Path::new(value).starts_with(&work),
                "{line} is outside {}",
                work.display()
            ),
        }
    }
    assert_eq!(seen, keys.len(), "{shell}");
    // Only the one architecture: APT never asks the host's dpkg for
    // foreign ones.
    let out = Command::new("apt-config")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("APT_CONFIG", aptbox.config_file())
        .arg("dump")
        .output()
        .unwrap();
    let dump = String::from_utf8(out.stdout).unwrap();
    let archs: Vec<&str> = dump
        .lines()
        .filter(|l| l.starts_with("APT::Architectures"))
        .collect();
    assert_eq!(
        archs,
        [
            "APT::Architectures \"\";",
            "APT::Architectures:: \"amd64\";"
        ]
    );

    // No link under the work directory leads out of it.
    let mut inside = BTreeMap::new();
    tree_stamps(&work, &mut inside);
    for path in inside.keys() {
        if let Ok(target) = std::fs::read_link(path) {
            let target = path.parent().unwrap().join(target);
            assert!(target.starts_with(&work), "{path:?} -> {target:?}");
        }
    }

    let mut after = BTreeMap::new();
    for root in host_roots {
        tree_stamps(Path::new(root), &mut after);
    }
    tree_stamps(Path::new("/var/lib/dpkg/status"), &mut after);
    assert_eq!(before, after, "the host's APT or dpkg state changed");
    drop(dir);
}

#[test]
fn essential_and_required_set() {
    let text = [
        para(
            "shell",
            "5.2",
            "amd64",
            "Essential: yes\nPriority: required",
        ),
        para(
            "coreish",
            "9.1",
            "amd64",
            "Essential: yes\nPriority: optional",
        ),
        para("base", "1.0", "all", "Priority: required"),
        para("base", "1.1", "all", "Priority: required"),
        para("libreq", "1.0", "amd64", "Priority: Required"),
        para("important", "1.0", "amd64", "Priority: important"),
        para(
            "optional",
            "1.0",
            "amd64",
            "Priority: optional\nEssential: no",
        ),
        para("plain", "1.0", "amd64", ""),
    ]
    .concat();
    let packages = parse_packages(&text, "test-Packages").unwrap();
    assert_eq!(
        essential_and_required(&packages),
        ["base", "coreish", "libreq", "shell"]
    );
    assert!(essential_and_required(&[]).is_empty());
    // The quick scan of the index text agrees, also when a description
    // line looks like a field.
    let tricky = format!(
        "{text}{}",
        para("described", "1.0", "all", "").replace(
            "Description: test package described\n",
            "Description: x\n Priority: required\n"
        )
    );
    assert_eq!(
        essential_and_required_in(&[&tricky]),
        ["base", "coreish", "libreq", "shell"]
    );
}

#[test]
fn the_default_install_set_resolves() {
    let (dir, aptbox) = setup();
    let text = std::fs::read_to_string(dir.path().join("main-Packages")).unwrap();
    let packages = parse_packages(&text, "main-Packages").unwrap();
    let set = essential_and_required(&packages);
    assert_eq!(set, ["base", "coreish", "shell"]);
    let r = aptbox.resolve(&set, None).unwrap();
    assert_eq!(
        names_versions(&r),
        nv(&[("base", "1.0"), ("coreish", "9.1"), ("shell", "5.2")])
    );
}

#[test]
fn bad_architecture_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let idx = indices(dir.path());
    let err = Aptbox::new(&dir.path().join("w"), "AMD 64", &idx).unwrap_err();
    assert!(err.to_string().contains("architecture"), "{err}");
}

/// Set COMB_TEST_PACKAGES to a real decompressed `Packages` index to time
/// the default install set of a whole archive (`cargo test -- --ignored`).
#[test]
#[ignore]
fn real_index_default_set() {
    let Some(index) = std::env::var_os("COMB_TEST_PACKAGES") else {
        eprintln!("COMB_TEST_PACKAGES not set; skipped");
        return;
    };
    let index = PathBuf::from(index);
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let aptbox = Aptbox::new(&dir.path().join("w"), "amd64", std::slice::from_ref(&index)).unwrap();
    eprintln!("setup (apt-get update): {:?}", t.elapsed());
    let t = Instant::now();
    let again = Aptbox::new(&dir.path().join("w"), "amd64", std::slice::from_ref(&index)).unwrap();
    eprintln!("setup again (cached): {:?}", t.elapsed());
    let text = std::fs::read_to_string(&index).unwrap();
    let packages = parse_packages(&text, "Packages").unwrap();
    let set = essential_and_required(&packages);
    let t = Instant::now();
    let r = again.resolve(&set, None).unwrap();
    eprintln!(
        "{} names -> {} packages in {:?}",
        set.len(),
        r.len(),
        t.elapsed()
    );
    let t = Instant::now();
    let r2 = aptbox.resolve(&req(&["hello"]), None).unwrap();
    eprintln!("hello -> {} packages in {:?}", r2.len(), t.elapsed());
    assert!(r.len() >= set.len());
}
