//! Native recipes make Debian-policy packages: `lintian` accepts every
//! package the starter builds (but for the tags of
//! `tests/fixtures/lintian-accepted-tags`, each with its reason), a
//! program's `Depends` on a library of the repository is computed from
//! the library's `shlibs` file, and APT installs the program from the
//! output repository. Against the real mirror, as root (like CI); the
//! bad inputs run on the generated mirror.

use crate::build_starter::copy_dir;
use crate::real;
use crate::repo::Repo;
use crate::root;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The control fields of a `.deb`.
fn control(deb: &Path) -> String {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .output()
        .unwrap();
    ok(&out)
}

/// A control file of a `.deb` (`shlibs`, `triggers`), if it has one.
fn control_file(deb: &Path, name: &str) -> Option<String> {
    let out = Command::new("dpkg-deb")
        .args(["--ctrl-tarfile"])
        .arg(deb)
        .output()
        .unwrap();
    let tar = ok_bytes(out);
    let mut child = Command::new("tar")
        .args(["-xO", &format!("./{name}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&tar).unwrap();
    let out = child.wait_with_output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ok_bytes(out: std::process::Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The files of a `.deb`, as `dpkg-deb -c` lists them.
fn contents(deb: &Path) -> String {
    ok(&Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb)
        .output()
        .unwrap())
}

/// The `.deb` of `package` in `out`.
pub(crate) fn deb(out: &Path, package: &str) -> std::path::PathBuf {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{package}_"))
        })
        .unwrap_or_else(|| panic!("no {package}_*.deb in {}", out.display()))
}

/// The host's `lintian` over every `.deb` in `out`, in comb's sandbox as
/// the builder: a root of nothing but the host's `/usr` and `/etc`, read
/// only, and the packages. Its tags, as `(E|W, package, tag)`.
fn lintian(out: &Path) -> Vec<(String, String, String)> {
    assert!(
        Path::new("/usr/bin/lintian").exists(),
        "lintian is not installed: run .ci/install-deps"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for d in ["usr", "etc", "debs"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for l in ["bin", "sbin", "lib", "lib64"] {
        std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l)).unwrap();
    }
    let output = Command::new(real::COMB)
        .args(["sandbox", "run", "--layer"])
        .arg(&root)
        .args(["--bind", "/usr:/usr", "--bind", "/etc:/etc", "--bind"])
        .arg(format!("{}:/debs", out.display()))
        .args([
            "--",
            "sh",
            "-c",
            "lintian --tag-display-limit 0 /debs/*.deb",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!(
        "lintian:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // lintian exits 2 when it finds errors; anything else is a failure to run.
    assert!(
        matches!(output.status.code(), Some(0 | 2)),
        "lintian did not run: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| {
            let (level, rest) = l.split_once(": ")?;
            let (package, rest) = rest.split_once(": ")?;
            let tag = rest.split_whitespace().next()?;
            ["E", "W"]
                .contains(&level)
                .then(|| (level.to_string(), package.to_string(), tag.to_string()))
        })
        .collect()
}

/// The accepted tags, by name, with their reasons.
fn accepted_tags() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lintian-accepted-tags");
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (tag, reason) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            assert!(
                reason.trim().len() > 20,
                "{}: {tag} is accepted without a reason",
                path.display()
            );
            (tag.to_string(), reason.trim().to_string())
        })
        .collect()
}

#[test]
fn the_starters_packages_pass_lintian_and_carry_what_debhelper_adds() {
    if !root::is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("starter");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/starter"),
        &repo,
    );
    ok(&real::comb(&repo, &["update"]));
    let out = dir.path().join("out");
    ok(&real::comb(
        &repo,
        &["build", "--all", "--out", out.to_str().unwrap()],
    ));

    // greet's Depends are computed from its binary and libgreet1's shlibs.
    let greet = control(&deb(&out, "greet"));
    let depends = greet
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .unwrap_or_default();
    assert!(depends.contains("libgreet1 (>= 1.0)"), "{greet}");
    assert!(depends.contains("libc6 (>= "), "{greet}");
    assert!(greet.contains("Maintainer: Starter Maintainers <starter@example.org>"));
    assert!(greet.contains("Priority: optional"), "{greet}");
    // Stripped, its debug information in greet-dbgsym by build id.
    let files = contents(&deb(&out, "greet"));
    assert!(files.contains("./usr/share/doc/greet/copyright"), "{files}");
    assert!(
        files.contains("./usr/share/doc/greet/changelog.Debian.gz"),
        "{files}"
    );
    assert!(files.contains("./usr/share/man/man1/greet.1.gz"), "{files}");
    let dbgsym = deb(&out, "greet-dbgsym");
    let fields = control(&dbgsym);
    assert!(fields.contains("Build-Ids: "), "{fields}");
    assert!(fields.contains("Depends: greet (= 1.0-1)"), "{fields}");
    assert!(contents(&dbgsym).contains("./usr/lib/debug/.build-id/"));
    // libgreet1: a shlibs file with a version and the ldconfig trigger.
    let lib = deb(&out, "libgreet1");
    assert_eq!(
        control_file(&lib, "shlibs").as_deref(),
        Some("libgreet 1 libgreet1 (>= 1.0)\n")
    );
    assert!(control_file(&lib, "triggers")
        .unwrap()
        .contains("activate-noawait ldconfig"));

    // Every package, native or from Debian source, is lintian-clean but
    // for the accepted tags.
    let accepted = accepted_tags();
    let tags = lintian(&out);
    let refused: Vec<_> = tags
        .iter()
        .filter(|(_, _, tag)| !accepted.contains_key(tag))
        .collect();
    assert!(refused.is_empty(), "lintian tags not accepted: {refused:?}");
}

const LIBRARY: &str = r#"[package]
name = "libtally"
version = "2.1-3"
summary = "Count things (library)"
license = "BSD-3-Clause"
description = """
libtally counts things and says how many there were."""

[source]
path = "src"

[build]
script = """
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
libdir="$DESTDIR/usr/lib/$multiarch"
mkdir -p "$libdir" "$DESTDIR/usr/include"
cc $CFLAGS -fPIC -c tally.c -o tally.o
cc $LDFLAGS -shared -Wl,-soname,libtally.so.2 -o "$libdir/libtally.so.2.1.0" tally.o
ln -s libtally.so.2.1.0 "$libdir/libtally.so.2"
ln -s libtally.so.2 "$libdir/libtally.so"
cp tally.h "$DESTDIR/usr/include/"
"""

[[output]]
name = "libtally2"
section = "libs"
files = ["usr/lib/*/libtally.so.*"]
symbols = true

[[output]]
name = "libtally-dev"
section = "libdevel"
files = ["usr/include/*", "usr/lib/*/libtally.so"]
depends = ["libtally2 (= ${version})"]
"#;

const PROGRAM: &str = r#"[package]
name = "tally"
version = "1.0-1"
summary = "Count the lines of the standard input"
license = "MIT"
description = """
tally prints how many lines it read, counted by libtally."""

[source]
path = "src"

[build]
requires = ["libtally-dev"]
script = """
mkdir -p "$DESTDIR/usr/bin"
cc $CFLAGS $LDFLAGS -o "$DESTDIR/usr/bin/tally" main.c -ltally
"""

[[output]]
name = "tally"
section = "utils"
files = ["usr/bin/tally"]
dbgsym = false
"#;

#[test]
fn a_program_linking_a_repository_library_gets_its_depends_and_installs_with_apt() {
    if !root::is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let write = |path: &str, text: &str| {
        let p = repo.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    // New every run: the shared store must build these, not find them.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    write(
        "comb.toml",
        "[package]\nmaintainer = \"Tally Team <tally@example.org>\"\n",
    );
    write("libtally/recipe.toml", LIBRARY);
    write(
        "libtally/src/tally.c",
        &format!("/* {nonce} */\n#include \"tally.h\"\nint tally_count(int n) {{ return n; }}\n"),
    );
    write("libtally/src/tally.h", "int tally_count(int n);\n");
    write(
        "libtally/src/LICENSE",
        "Copyright (c) 2023 The Tally Authors\n\nRedistribution and use are permitted.\n",
    );
    write("tally/recipe.toml", PROGRAM);
    write(
        "tally/src/main.c",
        "#include <stdio.h>\n#include <tally.h>\nint main(void) { int c, n = 0;\n\
         while ((c = getchar()) != EOF) if (c == '\\n') n++;\n\
         printf(\"%d lines\\n\", tally_count(n)); return 0; }\n",
    );
    write(
        "tally/src/ChangeLog",
        "2024-01-01  Tally Team\n\n\t* Count lines.\n",
    );
    ok(&real::comb(&repo, &["update"]));
    let out = dir.path().join("out");
    ok(&real::comb(
        &repo,
        &["build", "--all", "--out", out.to_str().unwrap()],
    ));

    // The program names the library with the version of its shlibs file,
    // written by no one.
    let lib = deb(&out, "libtally2");
    assert_eq!(
        control_file(&lib, "shlibs").as_deref(),
        Some("libtally 2 libtally2 (>= 2.1)\n")
    );
    let symbols = control_file(&lib, "symbols").expect("a symbols file");
    assert!(
        symbols.starts_with("libtally.so.2 libtally2 #MINVER#"),
        "{symbols}"
    );
    assert!(symbols.contains(" tally_count@Base 2.1"), "{symbols}");
    let tally = control(&deb(&out, "tally"));
    assert!(tally.contains("libtally2 (>= 2.1)"), "{tally}");
    assert!(!out.join("tally-dbgsym_1.0-1_amd64.deb").exists());
    // The library's copyright takes the source's license text and notice;
    // the program's upstream ChangeLog is its changelog.gz.
    let doc = dir.path().join("doc");
    ok(&Command::new("dpkg-deb")
        .arg("-x")
        .arg(&lib)
        .arg(&doc)
        .output()
        .unwrap());
    let copyright = std::fs::read_to_string(doc.join("usr/share/doc/libtally2/copyright")).unwrap();
    assert!(
        copyright.contains("Copyright: 2023 The Tally Authors\n"),
        "{copyright}"
    );
    assert!(
        copyright.contains("License: BSD-3-clause\n Copyright (c) 2023"),
        "{copyright}"
    );
    assert!(contents(&deb(&out, "tally")).contains("./usr/share/doc/tally/changelog.gz"));

    // APT installs the program from the output repository into a fresh
    // environment, the library with it, and the program runs.
    let script = "set -e
echo 'deb [trusted=yes] file:/srv/repo ./' > /tmp/repo.list
o='-o Dir::Etc::SourceList=/tmp/repo.list -o Dir::Etc::SourceParts=/nonexistent -o APT::Sandbox::User=root'
apt-get $o update 2>&1
apt-get $o install -y --no-install-recommends tally 2>&1
dpkg-query -W libtally2
printf 'a\\nb\\nc\\n' | tally";
    let run = real::comb(
        &repo,
        &[
            "env",
            "run",
            "--as",
            "root",
            "--bind",
            &format!("{}:/srv/repo", out.display()),
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    let said = ok(&run);
    assert!(said.contains("libtally2\t2.1-3"), "{said}");
    assert!(said.trim_end().ends_with("3 lines"), "{said}");
}

#[test]
fn a_native_package_without_a_maintainer_or_a_license_text_is_refused_with_what_to_do() {
    if !root::is_root() {
        return;
    }
    let repo = Repo::new();
    // No maintainer anywhere.
    let toml = std::fs::read_to_string(repo.root.join("comb.toml")).unwrap();
    let bare = toml.split("\n[package]").next().unwrap().to_string();
    std::fs::write(repo.root.join("comb.toml"), &bare).unwrap();
    repo.recipe("plain", &crate::repo::native("plain", &[], ""), "data");
    let out = repo.comb(&["build", "plain"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plain/recipe.toml: no maintainer: set maintainer"),
        "{err}"
    );
    // A bogus address is refused where it is written.
    std::fs::write(
        repo.root.join("comb.toml"),
        format!("{bare}\n[package]\nmaintainer = \"me <me@localhost>\"\n"),
    )
    .unwrap();
    let out = repo.comb(&["build", "plain"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("comb.toml:") && err.contains("no address mail can reach"),
        "{err}"
    );
    // A license comb has no text of, and none in the source.
    std::fs::write(
        repo.root.join("comb.toml"),
        format!("{bare}\n[package]\nmaintainer = \"Me <me@example.org>\"\n"),
    )
    .unwrap();
    let recipe = crate::repo::native("plain", &[], "")
        .replace("license = \"MIT\"", "license = \"LicenseRef-Ours\"");
    repo.recipe("plain", &recipe, "data");
    let out = repo.comb(&["build", "plain"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("comb knows no text of the license \"LicenseRef-Ours\"")
            && err.contains("add the license text to the source as LICENSE"),
        "{err}"
    );
    // With the text in the source, it builds.
    std::fs::write(
        repo.root.join("plain/src/LICENSE"),
        "Ours. Copyright 2024 Us.\n",
    )
    .unwrap();
    let out = repo.comb(&["build", "plain"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
