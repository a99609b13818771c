//! Repositories written into temporary directories, read back through the
//! public API: what parses, what each bad input says and where, and the
//! package graph.

use comb_recipes::{
    Architecture, CutEdge, Error, PackageGraph, Recipe, Repository, Source, SourceFacts, SourceKind,
};
use std::path::{Path, PathBuf};

/// A repository made of `files` (path, contents); a path ending in `/` is
/// an empty directory. `comb.toml` is added if not given.
fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    if !files.iter().any(|(p, _)| *p == "comb.toml") {
        std::fs::write(dir.path().join("comb.toml"), "[distro]\n[base]\n").unwrap();
    }
    for (path, text) in files {
        let full = dir.path().join(path);
        if path.ends_with('/') {
            std::fs::create_dir_all(&full).unwrap();
        } else {
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, text).unwrap();
        }
    }
    dir
}

/// A native recipe building one output named after it.
fn native(name: &str, requires: &[&str]) -> String {
    let requires: Vec<String> = requires.iter().map(|r| format!("{r:?}")).collect();
    format!(
        "[package]\nname = \"{name}\"\nversion = \"1.0-1\"\nsummary = \"{name}\"\nlicense = \"MIT\"\n\n\
         [source]\npath = \"src\"\n\n[build]\nrequires = [{}]\nscript = \"true\"\n\n\
         [[output]]\nname = \"{name}\"\nfiles = [\"usr/share/{name}/*\"]\n",
        requires.join(", ")
    )
}

fn load(dir: &Path) -> Repository {
    match Repository::load(dir) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

/// The error text of loading `dir`, with the directory replaced by `R` so
/// assertions can name files.
fn load_err(dir: &Path) -> String {
    match Repository::load(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string().replace(&dir.display().to_string(), "R"),
    }
}

fn own_binaries(r: &Recipe) -> Vec<String> {
    r.binaries().unwrap_or_default()
}

fn graph(dir: &Path) -> PackageGraph {
    load(dir)
        .graph(own_binaries)
        .unwrap_or_else(|e| panic!("{e}"))
}

const LIBGREET: &str = r#"
[package]
name = "libgreet"            # source package name
version = "2:1.0~rc1-1"
summary = "Friendly greetings"
license = "MIT"
maintainer = "Jane Doe <jane@example.org>"
description = """
Long text."""

[source]
path = "src"

[build]
requires = ["pkg-config", "libfoo-dev (>= 1.2) | libbar-dev [amd64] <!nocheck>"]
script = """
make
make install DESTDIR="$DESTDIR" prefix=/usr
"""

[[output]]
name = "libgreet1"
files = ["usr/lib/*/libgreet.so.*"]
depends = ["libc6"]

[[output]]
name = "libgreet-dev"
summary = "Friendly greetings (development files)"
architecture = "all"
section = "libdevel"
priority = "optional"
files = ["usr/include/**", "usr/lib/*/libgreet.so"]
depends = ["libgreet1 (= ${version})"]
provides = ["libgreet-api (= ${version})"]
"#;

#[test]
fn a_valid_repository_parses() {
    let dir = repo(&[
        ("libs/libgreet/recipe.toml", LIBGREET),
        ("libs/libgreet/src/", ""),
        ("hello/recipe.toml", "[source]\ndebian = \"hello=2.10-3\"\n"),
        ("tarball/recipe.toml", &native("tarball", &[]).replace(
            "path = \"src\"",
            "url = \"file:///srv/t.tar.gz\"\nsha256 = \"ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\"",
        )),
        // Hidden directories are not looked into.
        (".git/recipe.toml", "not toml at all ["),
        ("x/.hidden/recipe.toml", "not toml at all ["),
        // Nor is a recipe's directory: below it are its sources.
        ("libs/libgreet/src/vendor/recipe.toml", "not toml at all ["),
    ]);
    let repo = load(dir.path());
    assert_eq!(
        repo.config.base.build,
        ["build-essential", "fakeroot", "dpkg-dev"]
    );
    let names: Vec<&str> = repo.recipes.iter().map(|r| r.name.as_str()).collect();
    // Sorted by path: hello/, libs/libgreet/, tarball/.
    assert_eq!(names, ["hello", "libgreet", "tarball"]);

    let hello = repo.recipe("hello").unwrap();
    assert_eq!(hello.source.kind(), SourceKind::Debian);
    assert_eq!(hello.version.as_deref(), Some("2.10-3"));
    assert!(hello.outputs.is_empty() && hello.binaries().is_none());

    let lib = repo.recipe("libgreet").unwrap();
    assert_eq!(lib.file, dir.path().join("libs/libgreet/recipe.toml"));
    assert_eq!(lib.version.as_deref(), Some("2:1.0~rc1-1"));
    assert_eq!(lib.package.license.as_deref(), Some("MIT"));
    assert_eq!(
        lib.package.maintainer.as_deref(),
        Some("Jane Doe <jane@example.org>")
    );
    assert_eq!(lib.package.description.as_deref(), Some("Long text."));
    match &lib.source {
        Source::Path { path, dir: src } => {
            assert_eq!(path, "src");
            assert_eq!(
                src,
                &dir.path().join("libs/libgreet/src").canonicalize().unwrap()
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        lib.build.script.as_deref(),
        Some("make\nmake install DESTDIR=\"$DESTDIR\" prefix=/usr\n")
    );
    let req = &lib.build.requires[1];
    assert_eq!(
        req.relation.names().collect::<Vec<_>>(),
        ["libfoo-dev", "libbar-dev"]
    );
    assert_eq!((req.at.line, req.at.column), (15, 28));
    assert_eq!(lib.declared_outputs(), ["libgreet1", "libgreet-dev"]);

    let [rt, dev] = &lib.outputs[..] else {
        panic!()
    };
    assert_eq!(rt.architecture, Architecture::Any);
    assert_eq!(rt.summary(lib), Some("Friendly greetings"));
    assert_eq!(
        dev.summary(lib),
        Some("Friendly greetings (development files)")
    );
    assert_eq!(dev.architecture, Architecture::All);
    assert_eq!(dev.section.as_deref(), Some("libdevel"));
    assert_eq!(dev.priority.as_deref(), Some("optional"));
    assert_eq!(dev.depends[0].raw, "libgreet1 (= ${version})");
    assert_eq!(dev.depends[0].relation.text, "libgreet1 (= 2:1.0~rc1-1)");
    assert_eq!(
        dev.depends[0].relation.alternatives[0]
            .version
            .as_ref()
            .unwrap()
            .version,
        "2:1.0~rc1-1"
    );
    assert_eq!(
        dev.provides[0].relation.text,
        "libgreet-api (= 2:1.0~rc1-1)"
    );
    let fields: Vec<&str> = dev
        .relation_fields()
        .iter()
        .filter(|(_, d)| !d.is_empty())
        .map(|(f, _)| *f)
        .collect();
    assert_eq!(fields, ["Depends", "Provides"]);
    assert!(rt.claims("usr/lib/x86_64-linux-gnu/libgreet.so.1"));
    assert!(!rt.claims("usr/lib/x86_64-linux-gnu/libgreet.so"));
    assert_eq!(
        lib.output_for("usr/include/greet/greet.h").unwrap().name,
        "libgreet-dev"
    );
    assert_eq!(
        lib.output_for("usr/lib/x86_64-linux-gnu/libgreet.so")
            .unwrap()
            .name,
        "libgreet-dev"
    );
    assert!(lib.output_for("usr/bin/greet").is_none());

    let tarball = repo.recipe("tarball").unwrap();
    assert_eq!(
        tarball.source,
        Source::Url {
            url: "file:///srv/t.tar.gz".into(),
            sha256: "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789".into()
        }
    );
}

/// Loads a repository of one recipe `text` in `pkg/` (with `pkg/src/`) and
/// returns the error text, the directory written as `R`.
fn one_bad(text: &str) -> String {
    let dir = repo(&[("pkg/recipe.toml", text), ("pkg/src/", "")]);
    load_err(dir.path())
}

#[track_caller]
fn assert_error(text: &str, expected: &[&str]) {
    let e = one_bad(text);
    for part in expected {
        assert!(e.contains(part), "expected {part:?} in:\n{e}");
    }
}

#[test]
fn each_bad_input_names_file_line_and_column() {
    let good = native("pkg", &[]);
    // Malformed TOML.
    assert_error(
        &good.replace("[build]", "[build"),
        &["R/pkg/recipe.toml:10:7:", "expected"],
    );
    // Unknown keys, with the expected ones listed.
    assert_error(
        &good.replace("license =", "licence ="),
        &["R/pkg/recipe.toml:5:1: unknown field `licence`, expected one of `name`, `version`, `summary`, `license`"],
    );
    assert_error(
        &good.replace("[[output]]", "[[outputs]]"),
        &["R/pkg/recipe.toml:14:3: unknown field `outputs`, expected one of `package`, `source`, `build`, `output`"],
    );
    // Missing keys.
    assert_error(
        &good.replace("version = \"1.0-1\"\n", ""),
        &["R/pkg/recipe.toml:1:1: [package] has no version: a path or url recipe needs it, e.g. version = \"1.0-1\""],
    );
    assert_error(
        &good.replace("script = \"true\"\n", ""),
        &["R/pkg/recipe.toml:10:1: [build] has no script"],
    );
    assert_error(
        &good.replace("name = \"pkg\"\nfiles", "files"),
        &["R/pkg/recipe.toml:14:1: [[output]] has no name"],
    );
    assert_error(
        &good.replace("files = [\"usr/share/pkg/*\"]\n", ""),
        &["R/pkg/recipe.toml:14:1: [[output]] has no files"],
    );
    let no_outputs = &good[..good.find("[[output]]").unwrap()];
    assert_error(
        no_outputs,
        &["R/pkg/recipe.toml:14:1: no [[output]]: a path recipe needs one or more"],
    );
    // Two sources, or none.
    assert_error(
        &good.replace("path = \"src\"", "path = \"src\"\ndebian = \"hello\""),
        &["R/pkg/recipe.toml:9:10: [source] gives both `path` and `debian`: give exactly one of"],
    );
    assert_error(
        &good.replace("path = \"src\"", ""),
        &["R/pkg/recipe.toml:7:1: [source] names no source: give exactly one of path"],
    );
    // Names and versions.
    assert_error(
        &good.replace("name = \"pkg\"\nversion", "name = \"Pkg_1\"\nversion"),
        &["R/pkg/recipe.toml:2:8: name: \"Pkg_1\" is not a Debian package name"],
    );
    assert_error(
        &good.replace("\"1.0-1\"", "\"v1.0\""),
        &["R/pkg/recipe.toml:3:11: version: \"v1.0\" is not a Debian version: the upstream version must start with a digit"],
    );
    assert_error(
        &good.replace("\"1.0-1\"", "\"1.0-1_2\""),
        &["R/pkg/recipe.toml:3:11:", "the revision may only hold"],
    );
    // Relations: the column points into the string.
    assert_error(
        &good.replace(
            "requires = []",
            "requires = [\"gcc\", \"libfoo-dev (> 1.2)\"]",
        ),
        &["R/pkg/recipe.toml:11:33: requires: the operator `>` is obsolete"],
    );
    assert_error(
        &good.replace("requires = []", "requires = [\"a, b\"]"),
        &["R/pkg/recipe.toml:11:14: requires: \"a\" is not a Debian package name"],
    );
    assert_error(
        &good.replace("requires = []", "requires = [\"libx-dev [amd64\"]"),
        &["R/pkg/recipe.toml:11:23: requires: unclosed `[`"],
    );
    assert_error(
        &good.replace("files = [", "depends = [\"libc6 [amd64]\"]\nfiles = ["),
        &["R/pkg/recipe.toml:16:13: depends: architecture restrictions `[...]` and build profiles `<...>` are for build requirements only"],
    );
    // Globs.
    assert_error(
        &good.replace("usr/share/pkg/*", "usr/share/pkg/**.txt"),
        &["R/pkg/recipe.toml:16:25: bad file pattern \"usr/share/pkg/**.txt\": `**` must be a whole path component"],
    );
    assert_error(
        &good.replace("usr/share/pkg/*", "/usr/share/pkg/*"),
        &["R/pkg/recipe.toml:16:11:", "it is absolute"],
    );
    // Output fields.
    assert_error(
        &good.replace("files = [", "architecture = \"amd64\"\nfiles = ["),
        &[
            "R/pkg/recipe.toml:16:16: architecture \"amd64\" is not \"any\"",
            "or \"all\"",
        ],
    );
    // Missing sources.
    assert_error(
        &good.replace("path = \"src\"", "path = \"source\""),
        &["R/pkg/recipe.toml:8:8: missing source directory R/pkg/source: create it beside recipe.toml or fix the name"],
    );
    assert_error(
        &good.replace("path = \"src\"", "path = \"../pkg/..\""),
        &["R/pkg/recipe.toml:8:8: source directory \"../pkg/..\" leads outside the recipe's directory (to R)"],
    );
    assert_error(
        &good.replace("path = \"src\"", "path = \"/usr\""),
        &["R/pkg/recipe.toml:8:8: source directory \"/usr\" must be a relative path"],
    );
    assert_error(
        "[source]\ndsc = \"pkg_1.0-1.dsc\"\n",
        &["R/pkg/recipe.toml:2:7: missing source file R/pkg/pkg_1.0-1.dsc"],
    );
    // Checksums and URLs.
    assert_error(
        &good.replace(
            "path = \"src\"",
            "url = \"https://example.org/p.tar.gz\"\nsha256 = \"abc123\"",
        ),
        &["R/pkg/recipe.toml:9:10: sha256 \"abc123\" is not 64 hex digits (6 characters)"],
    );
    assert_error(
        &good.replace("path = \"src\"", "url = \"https://example.org/p.tar.gz\""),
        &["R/pkg/recipe.toml:8:7: url needs sha256"],
    );
    assert_error(
        &good.replace("path = \"src\"", "url = \"ftp://example.org/p.tar.gz\"\nsha256 = \"x\""),
        &["R/pkg/recipe.toml:8:7: url \"ftp://example.org/p.tar.gz\" must start with http://, https:// or file:"],
    );
    // debian sources: no script, no outputs.
    assert_error(
        "[source]\ndebian = \"hello\"\n\n[build]\nscript = \"make\"\n",
        &["R/pkg/recipe.toml:5:10: script is not allowed for a debian source: comb builds it with dpkg-buildpackage -b -uc -us"],
    );
}

#[test]
fn a_source_directory_may_not_leave_through_a_link() {
    let dir = repo(&[("pkg/recipe.toml", &native("pkg", &[])), ("elsewhere/", "")]);
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), dir.path().join("pkg/src")).unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains(
            "R/pkg/recipe.toml:8:8: source directory \"src\" leads outside the recipe's directory"
        ),
        "{e}"
    );
}

#[test]
fn all_errors_of_a_repository_come_together() {
    let dir = repo(&[
        ("comb.toml", "[distro]\nsuite = \"book worm\"\n"),
        ("a/recipe.toml", "[package\n"),
        (
            "b/recipe.toml",
            &native("bb", &["Bad"]).replace("\"1.0-1\"", "\"x\""),
        ),
        ("b/src/", ""),
        ("c/recipe.toml", &native("cc", &[])),
        ("c/src/", ""),
        (
            "d/recipe.toml",
            "[source]\ndebian = \"hello\"\nsha256 = \"00\"\n",
        ),
    ]);
    let e = load_err(dir.path());
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 5, "{e}");
    assert!(
        lines[0].starts_with("R/comb.toml:2:9: suite \"book worm\""),
        "{e}"
    );
    assert!(lines[1].starts_with("R/a/recipe.toml:1:"), "{e}");
    assert!(
        lines[2].starts_with("R/b/recipe.toml:3:11: version:"),
        "{e}"
    );
    assert!(
        lines[3].starts_with("R/b/recipe.toml:11:14: requires: \"Bad\""),
        "{e}"
    );
    assert!(
        lines[4].starts_with("R/d/recipe.toml:3:10: sha256 goes with url only"),
        "{e}"
    );
    // The same, one by one.
    let err = Repository::load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Many(_)));
    assert_eq!(err.into_list().len(), 5);
}

#[test]
fn a_recipe_in_the_root_is_refused() {
    let dir = repo(&[("recipe.toml", &native("pkg", &[])), ("src/", "")]);
    let e = load_err(dir.path());
    assert!(
        e.starts_with("R/recipe.toml:1:1: a recipe in the repository's root directory"),
        "{e}"
    );
}

#[test]
fn duplicates_name_both_files() {
    let dir = repo(&[
        ("one/recipe.toml", &native("same", &[])),
        ("one/src/", ""),
        ("two/recipe.toml", &native("same", &[])),
        ("two/src/", ""),
    ]);
    let e = load_err(dir.path());
    assert!(
        e.contains("R/two/recipe.toml:2:8: source package \"same\" has another recipe at R/one/recipe.toml:2:8"),
        "{e}"
    );
    assert!(
        e.contains("R/two/recipe.toml:15:8: binary package \"same\" is also built by same at R/one/recipe.toml:15:8"),
        "{e}"
    );

    let dir = repo(&[
        ("one/recipe.toml", &native("one", &[])),
        ("one/src/", ""),
        (
            "two/recipe.toml",
            &native("two", &[]).replace("name = \"two\"\nfiles", "name = \"one\"\nfiles"),
        ),
        ("two/src/", ""),
    ]);
    let e = load_err(dir.path());
    assert_eq!(
        e,
        "R/two/recipe.toml:15:8: binary package \"one\" is also built by one at R/one/recipe.toml:15:8: a binary package comes from one recipe; rename one"
    );

    // A binary only the engine knows of, for a debian source, clashing with one declared.
    let dir = repo(&[
        ("greet/recipe.toml", &native("greet", &[])),
        ("greet/src/", ""),
        ("hello/recipe.toml", "[source]\ndebian = \"hello\"\n"),
    ]);
    let e = load(dir.path())
        .graph(|r| {
            r.binaries()
                .unwrap_or_else(|| vec!["hello".into(), "greet".into()])
        })
        .unwrap_err()
        .to_string()
        .replace(&dir.path().display().to_string(), "R");
    assert!(
        e.starts_with("R/hello/recipe.toml:2:10: binary package \"greet\" is also built by greet (R/greet/recipe.toml)"),
        "{e}"
    );
}

#[test]
fn a_cycle_is_printed_as_the_cycle() {
    let dir = repo(&[
        ("a/recipe.toml", &native("aa", &["bb"])),
        ("a/src/", ""),
        ("b/recipe.toml", &native("bb", &["gcc", "xx | cc (>= 1)"])),
        ("b/src/", ""),
        ("c/recipe.toml", &native("cc", &["aa:any"])),
        ("c/src/", ""),
        // Depends on the cycle without being on it: not reported.
        ("d/recipe.toml", &native("dd", &["aa"])),
        ("d/src/", ""),
        ("e/recipe.toml", &native("ee", &["ee"])),
        ("e/src/", ""),
    ]);
    let e = load(dir.path())
        .graph(own_binaries)
        .unwrap_err()
        .to_string()
        .replace(&dir.path().display().to_string(), "R");
    assert_eq!(
        e,
        "dependency cycle: aa -> bb -> cc -> aa; break it by removing one of these requirements\n\
         \x20 R/a/recipe.toml:11:14: aa requires \"bb\"; bb builds bb\n\
         \x20 R/b/recipe.toml:11:21: bb requires \"xx | cc (>= 1)\"; cc builds cc\n\
         \x20 R/c/recipe.toml:11:14: cc requires \"aa:any\"; aa builds aa\n\
         dependency cycle: ee -> ee; break it by removing one of these requirements\n\
         \x20 R/e/recipe.toml:11:14: ee requires \"ee\"; ee builds ee"
    );
}

/// A cycle is cut where the snapshot has the binary an edge names: that
/// recipe builds against the snapshot's package first. A cycle with no such
/// edge stays an error.
#[test]
fn a_cycle_is_cut_where_the_snapshot_has_the_binary() {
    let dir = repo(&[
        ("a/recipe.toml", &native("aa", &["bb"])),
        ("a/src/", ""),
        ("b/recipe.toml", &native("bb", &["aa (>= 1)"])),
        ("b/src/", ""),
        ("c/recipe.toml", &native("cc", &["aa"])),
        ("c/src/", ""),
    ]);
    let repository = load(dir.path());
    let facts = |r: &Recipe| SourceFacts {
        binaries: own_binaries(r),
        build_depends: Vec::new(),
    };
    let g = repository
        .graph_cutting(facts, |binary| binary == "aa")
        .unwrap();
    assert_eq!(
        g.cut_edges(),
        [CutEdge {
            from: "bb".into(),
            to: "aa".into(),
            binaries: vec!["aa".into()],
        }]
    );
    assert!(g.dependencies("bb").is_empty());
    assert_eq!(g.dependencies("aa"), ["bb"]);
    assert_eq!(g.topological_order(), ["bb", "aa", "cc"]);
    // Nothing the snapshot has: the cycle stays an error.
    let e = repository
        .graph_cutting(facts, |_| false)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("dependency cycle: aa -> bb -> aa"), "{e}");
    // And plain `graph` never cuts.
    assert!(repository.graph(own_binaries).is_err());
    // An archive rebuild has no edges between recipes at all.
    let g = repository.graph_unlinked(facts).unwrap();
    assert!(g.edges().is_empty());
    assert_eq!(g.topological_order(), ["aa", "bb", "cc"]);
    assert_eq!(g.node("aa").unwrap().external.len(), 1);
}

/// Many cycles through one component are all cut, each where the snapshot
/// has the binaries of an edge on it, and only there; a cycle whose only
/// such edge is not the one that closes it is cut at that edge.
#[test]
fn every_cycle_of_a_component_is_cut_where_it_can_be() {
    // aa -> bb -> cc -> aa, and bb -> aa, and cc -> dd -> cc.
    let dir = repo(&[
        ("a/recipe.toml", &native("aa", &["bb"])),
        ("a/src/", ""),
        ("b/recipe.toml", &native("bb", &["cc", "aa"])),
        ("b/src/", ""),
        ("c/recipe.toml", &native("cc", &["aa", "dd"])),
        ("c/src/", ""),
        ("d/recipe.toml", &native("dd", &["cc"])),
        ("d/src/", ""),
    ]);
    let repository = load(dir.path());
    let facts = |r: &Recipe| SourceFacts {
        binaries: own_binaries(r),
        build_depends: Vec::new(),
    };
    // The snapshot has aa and dd, not bb or cc.
    let g = repository
        .graph_cutting(facts, |binary| binary == "aa" || binary == "dd")
        .unwrap();
    let mut cut: Vec<(String, String)> = g
        .cut_edges()
        .iter()
        .map(|c| (c.from.clone(), c.to.clone()))
        .collect();
    cut.sort();
    assert_eq!(
        cut,
        [
            ("bb".to_string(), "aa".to_string()),
            ("cc".to_string(), "aa".to_string()),
            ("cc".to_string(), "dd".to_string()),
        ]
    );
    assert_eq!(g.topological_order(), ["cc", "bb", "aa", "dd"]);
}

/// A cycle through 10,000 recipes is found and printed without deep
/// recursion: on a thread with a small stack.
#[test]
fn a_cycle_through_ten_thousand_recipes_is_reported() {
    const N: usize = 10_000;
    let mut files = Vec::new();
    for i in 0..N {
        let name = format!("p{i:05}");
        let next = format!("p{:05}", (i + 1) % N);
        files.push((format!("{name}/recipe.toml"), native(&name, &[&next])));
        files.push((format!("{name}/src/"), String::new()));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let dir = repo(&files);
    let repository = load(dir.path());
    let e = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || repository.graph(own_binaries).unwrap_err().to_string())
        .unwrap()
        .join()
        .expect("no stack overflow");
    assert!(
        e.starts_with("dependency cycle: p00000 -> p00001 -> p00002"),
        "{}",
        &e[..200]
    );
    assert!(e.contains("p09999 -> p00000;"), "{}", &e[..200]);
    assert_eq!(e.matches("dependency cycle").count(), 1);
}

#[test]
fn edges_external_requirements_and_orders() {
    let dir = repo(&[
        (
            "base/recipe.toml",
            &native("base", &["debhelper-compat (= 13)"]),
        ),
        ("base/src/", ""),
        (
            "left/recipe.toml",
            &native("left", &["base (>= 1.0)", "zlib1g-dev"]),
        ),
        ("left/src/", ""),
        (
            "right/recipe.toml",
            &native("right", &["libnothere-dev | base:amd64 [amd64] <!nocheck>"]),
        ),
        ("right/src/", ""),
        (
            "top/recipe.toml",
            &native("top", &["right | left", "left", "gcc | clang"]),
        ),
        ("top/src/", ""),
        ("alone/recipe.toml", &native("alone", &[])),
        ("alone/src/", ""),
    ]);
    let g = graph(dir.path());
    assert_eq!(g.len(), 5);
    assert_eq!(
        g.edges(),
        [
            ("left", "base"),
            ("right", "base"),
            ("top", "left"),
            ("top", "right")
        ]
    );
    assert_eq!(g.dependencies("top"), ["left", "right"]);
    assert_eq!(g.reverse_dependencies("base"), ["left", "right"]);
    assert!(g.reverse_dependencies("top").is_empty());
    assert_eq!(
        g.topological_order(),
        ["alone", "base", "left", "right", "top"]
    );
    assert_eq!(g.affected(&["left"]), ["left", "top"]);
    assert_eq!(
        g.affected(&["base", "alone"]),
        ["alone", "base", "left", "right", "top"]
    );
    assert_eq!(g.needed_by(&["left"]), ["base", "left"]);
    assert_eq!(
        g.needed_by(&["top", "nothere"]),
        ["base", "left", "right", "top"]
    );
    assert_eq!(g.provider("right"), Some("right"));
    assert_eq!(g.provider("gcc"), None);

    let external = |n: &str| -> Vec<String> {
        g.node(n)
            .unwrap()
            .external
            .iter()
            .map(|r| r.relation.text.clone())
            .collect()
    };
    assert_eq!(external("base"), ["debhelper-compat (= 13)"]);
    assert_eq!(external("left"), ["zlib1g-dev"]);
    assert!(external("right").is_empty());
    assert_eq!(external("top"), ["gcc | clang"]);
    let right = g.node("right").unwrap();
    assert_eq!(
        right.internal[0].relation.text,
        "libnothere-dev | base:amd64 [amd64] <!nocheck>"
    );
    assert_eq!(right.file, dir.path().join("right/recipe.toml"));
    assert_eq!(right.binaries, ["right"]);
    let dot = g.to_dot();
    assert!(dot.contains("  \"top\" -> \"left\";\n"), "{dot}");
}

#[test]
fn dsc_sources_tell_their_binaries_and_build_depends() {
    let dsc = "Format: 3.0 (native)\nSource: cdb\nBinary: libcdb1, libcdb-dev\nVersion: 0.78\n\
               Build-Depends: debhelper (>= 7), base\nFiles:\n 0123456789abcdef0123456789abcdef 3 cdb_0.78.tar.xz\n";
    let dir = repo(&[
        (
            "cdb/recipe.toml",
            "[package]\nname = \"cdb\"\n\n[source]\ndsc = \"cdb_0.78.dsc\"\n",
        ),
        ("cdb/cdb_0.78.dsc", dsc),
        ("cdb/cdb_0.78.tar.xz", "xyz"),
        ("base/recipe.toml", &native("base", &[])),
        ("base/src/", ""),
        ("user/recipe.toml", &native("user", &["libcdb-dev"])),
        ("user/src/", ""),
    ]);
    let repo_ = load(dir.path());
    let cdb = repo_.recipe("cdb").unwrap();
    assert_eq!(cdb.version.as_deref(), Some("0.78"));
    assert_eq!(cdb.binaries().unwrap(), ["libcdb1", "libcdb-dev"]);
    let Source::Dsc(d) = &cdb.source else {
        panic!()
    };
    assert_eq!(d.files[0].name, "cdb_0.78.tar.xz");
    let g = repo_.graph(own_binaries).unwrap();
    assert_eq!(g.topological_order(), ["base", "cdb", "user"]);
    assert_eq!(g.dependencies("cdb"), ["base"]);
    let ext = &g.node("cdb").unwrap().external[0];
    assert_eq!(ext.relation.text, "debhelper (>= 7)");
    assert_eq!(
        (ext.at.file.clone(), ext.at.line, ext.at.column),
        (dir.path().join("cdb/cdb_0.78.dsc"), 5, 16)
    );

    // A name that does not match the .dsc's, and a file it lists that is missing.
    std::fs::remove_file(dir.path().join("cdb/cdb_0.78.tar.xz")).unwrap();
    std::fs::write(
        dir.path().join("cdb/recipe.toml"),
        "[package]\nname = \"tinycdb\"\n\n[source]\ndsc = \"cdb_0.78.dsc\"\n",
    )
    .unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("R/cdb/cdb_0.78.dsc:7:"), "{e}");
    assert!(
        e.contains("missing source file R/cdb/cdb_0.78.tar.xz"),
        "{e}"
    );
    std::fs::write(dir.path().join("cdb/cdb_0.78.tar.xz"), "xyz").unwrap();
    let e = load_err(dir.path());
    assert_eq!(
        e,
        "R/cdb/recipe.toml:2:8: name \"tinycdb\" does not match the dsc source package \"cdb\": fix it or leave it out"
    );
}

fn starter() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/starter")
}

/// What the snapshot's Sources index says of the starter's debian sources.
fn starter_facts(r: &Recipe) -> SourceFacts {
    let (binaries, build_depends): (&[&str], &str) = match r.name.as_str() {
        "hello" => (&["hello"], "debhelper-compat (= 13), help2man, texinfo"),
        "jansson" => (
            &["libjansson-dev", "libjansson-doc", "libjansson4"],
            "debhelper-compat (= 13)",
        ),
        "jshon" => (&["jshon"], "debhelper-compat (= 13), libjansson-dev"),
        _ => {
            return SourceFacts {
                binaries: r.binaries().expect("native"),
                build_depends: Vec::new(),
            }
        }
    };
    SourceFacts {
        binaries: binaries.iter().map(|b| b.to_string()).collect(),
        build_depends: comb_recipes::parse_relations(build_depends, comb_recipes::Rules::Dpkg)
            .unwrap(),
    }
}

#[test]
fn the_starter_repository_parses() {
    let repo = load(&starter());
    let names: Vec<&str> = repo.recipes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "greet",
            "greet-data",
            "greet-phrasebook",
            "greet-tour",
            "hello",
            "jansson",
            "jshon",
            "libgreet",
        ]
    );
    let hello = repo.recipe("hello").unwrap();
    assert_eq!(
        hello.source,
        Source::Debian {
            name: "hello".into(),
            version: Some("2.10-3".into())
        }
    );
    let lib = repo.recipe("libgreet").unwrap();
    assert_eq!(lib.declared_outputs(), ["libgreet1", "libgreet-dev"]);
    assert_eq!(
        lib.outputs[1].depends[0].relation.text,
        "libgreet1 (= 1.0-1)"
    );
    assert!(lib.outputs[0].claims("usr/lib/x86_64-linux-gnu/libgreet.so.1.0.0"));
    assert!(lib.outputs[0].claims("usr/lib/x86_64-linux-gnu/libgreet.so.1"));
    assert!(lib.outputs[1].claims("usr/lib/x86_64-linux-gnu/pkgconfig/greet.pc"));
    assert_eq!(
        repo.recipe("greet-data").unwrap().outputs[0].architecture,
        Architecture::All
    );

    // The closure of the brief: binaries only.
    let g = repo
        .graph(|r| r.binaries().unwrap_or_else(|| starter_facts(r).binaries))
        .unwrap();
    assert_eq!(
        g.edges(),
        [
            ("greet", "libgreet"),
            ("greet-phrasebook", "greet-data"),
            ("greet-tour", "greet"),
            ("greet-tour", "greet-phrasebook"),
            ("libgreet", "greet-data"),
        ]
    );
    // With the Sources index's Build-Depends, jshon needs jansson.
    let g = repo.graph_with(starter_facts).unwrap();
    assert_eq!(g.dependencies("jshon"), ["jansson"]);
    assert_eq!(g.provider("libjansson-dev"), Some("jansson"));
    assert_eq!(
        g.topological_order(),
        [
            "greet-data",
            "greet-phrasebook",
            "hello",
            "jansson",
            "jshon",
            "libgreet",
            "greet",
            "greet-tour",
        ]
    );
    assert_eq!(
        g.affected(&["greet-data"]),
        [
            "greet-data",
            "greet-phrasebook",
            "libgreet",
            "greet",
            "greet-tour"
        ]
    );
    let ext: Vec<&str> = g
        .node("hello")
        .unwrap()
        .external
        .iter()
        .map(|r| r.relation.text.as_str())
        .collect();
    assert_eq!(ext, ["debhelper-compat (= 13)", "help2man", "texinfo"]);
    assert_eq!(g.node("hello").unwrap().external[0].at, hello.source_at);
}
