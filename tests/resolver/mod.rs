//! comb's resolver beside APT's, on a pinned snapshot: what the test
//! `resolver_vs_apt` and the corpus bench share.
//!
//! The base both resolve on is APT's own answer for the default base
//! (`Essential: yes` and `Priority: required`, then `build-essential`,
//! `fakeroot` and `dpkg-dev`) from an empty system, written as a dpkg
//! status. Each source package of the sample has its build dependencies
//! (as comb builds it on the snapshot's architecture) resolved by comb's
//! resolver in this process and by APT, and the two install sets are
//! compared by name and version. Where they differ, both are checked
//! (every dependency met, no conflict) and the choices that differ are
//! named.
//!
//! APT answers through `apt_oracle.py` (libapt-pkg's own solver, in a
//! process that loads APT's cache once: a quarter of a second per answer
//! instead of a second for `apt-get`), for a dummy package per source
//! whose `Depends` are its build dependencies, indexed after every real
//! package (so APT's numbering of the real ones, which breaks its ties,
//! is unchanged). The first sources of the sample are also resolved by
//! `apt-get --simulate satisfy` itself, whose answers must be the
//! oracle's.
#![allow(dead_code)]

use comb_distro::solver::{System, Universe};
use comb_distro::{Aptbox, Resolved, SourcePackage};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The snapshot a `comb.lock` pins, as the store holds it.
pub struct Snapshot {
    pub architecture: String,
    pub packages: Vec<PathBuf>,
    pub sources: Vec<PathBuf>,
}

/// The decompressed indices of the snapshot `lock` pins in `store`.
pub fn snapshot(store: &Path, lock: &Path) -> Snapshot {
    let key = comb_engine::pinned_key(lock).expect("reading the lock");
    let tree = store.join("trees").join(format!("index-{key}"));
    let mut packages = Vec::new();
    let mut sources = Vec::new();
    let mut architecture = String::new();
    let mut dirs = vec![tree.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if let Some(arch) = name.strip_prefix("binary-") {
                    architecture = arch.to_string();
                }
                dirs.push(path);
            } else if name == "Packages" {
                packages.push(path);
            } else if name == "Sources" {
                sources.push(path);
            }
        }
    }
    packages.sort();
    sources.sort();
    assert!(
        !packages.is_empty() && !sources.is_empty(),
        "{} holds no Packages or no Sources",
        tree.display()
    );
    Snapshot {
        architecture,
        packages,
        sources,
    }
}

/// The snapshot's binary packages for the resolver, and its source
/// packages (the newest version of each name).
pub fn load(snapshot: &Snapshot) -> (Universe, Vec<SourcePackage>) {
    let mut packages = Vec::new();
    for p in &snapshot.packages {
        let text = std::fs::read_to_string(p).unwrap();
        packages.extend(comb_distro::parse_packages(&text, &p.display().to_string()).unwrap());
    }
    let mut sources: Vec<SourcePackage> = Vec::new();
    for p in &snapshot.sources {
        let text = std::fs::read_to_string(p).unwrap();
        sources.extend(comb_distro::parse_sources(&text, &p.display().to_string()).unwrap());
    }
    sources.sort_by(|a, b| a.name.cmp(&b.name).then(b.version.cmp(&a.version)));
    sources.dedup_by(|a, b| a.name == b.name);
    (Universe::new(&snapshot.architecture, packages), sources)
}

/// APT's install set for the default base from an empty system, as a
/// dpkg status (the index records, each with `Status: install ok
/// installed`).
pub fn base_status(apt: &Aptbox, snapshot: &Snapshot) -> String {
    let texts: Vec<String> = snapshot
        .packages
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let mut names = comb_distro::aptbox::essential_and_required_in(
        &texts.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    names.extend(["build-essential", "fakeroot", "dpkg-dev"].map(String::from));
    let base = apt.resolve(&names, None).expect("APT resolves the base");
    let wanted: BTreeSet<(String, String)> = base
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    let mut status = String::new();
    for text in &texts {
        for paragraph in text.split("\n\n") {
            let field = |f: &str| {
                paragraph
                    .lines()
                    .find_map(|l| l.strip_prefix(f))
                    .map(|v| v.trim().to_string())
            };
            if let (Some(name), Some(version)) = (field("Package:"), field("Version:")) {
                if wanted.contains(&(name, version)) {
                    status.push_str(paragraph.trim_end());
                    status.push_str("\nStatus: install ok installed\n\n");
                }
            }
        }
    }
    status
}

/// Every `step`-th source package that builds on `arch`, up to `count`.
pub fn sample<'a>(
    sources: &'a [SourcePackage],
    arch: &str,
    count: usize,
) -> Vec<&'a SourcePackage> {
    let building: Vec<&SourcePackage> = sources.iter().filter(|s| s.builds_on(arch)).collect();
    let step = (building.len() / count.max(1)).max(1);
    building.into_iter().step_by(step).take(count).collect()
}

/// One source package whose install sets differ.
pub struct Difference {
    pub source: String,
    pub comb_only: Vec<String>,
    pub apt_only: Vec<String>,
    /// `Ok(choices)`: both sets are valid; these dependencies were met
    /// with different packages. `Err`: what is wrong with which.
    pub explained: Result<Vec<String>, String>,
}

/// The outcome of a comparison.
#[derive(Default)]
pub struct Agreement {
    pub compared: usize,
    pub identical: usize,
    /// Both found no install set.
    pub both_unsatisfiable: usize,
    pub differences: Vec<Difference>,
    pub comb_time: Duration,
    pub apt_time: Duration,
    /// How many were also asked of `apt-get --simulate`, and those whose
    /// answer was not the oracle's.
    pub apt_get_checked: usize,
    pub apt_get_disagrees: Vec<String>,
}

fn names(set: &[Resolved]) -> BTreeSet<String> {
    set.iter()
        .map(|r| format!("{}={}", r.name, r.version))
        .collect()
}

/// The dummy package that carries the `i`-th source's build dependencies.
fn dummy(i: usize) -> String {
    format!("comb-satisfy-{i}")
}

/// An index of one dummy package per source of `sample` (see the module
/// doc), to set APT up with after the snapshot's own.
pub fn dummies_index(sample: &[&SourcePackage], arch: &str) -> String {
    let mut text = String::new();
    for (i, source) in sample.iter().enumerate() {
        let depends: Vec<String> = source
            .build_depends_for(arch)
            .into_iter()
            .map(|r| r.text)
            .collect();
        text.push_str(&format!(
            "Package: {}\nVersion: 0\nArchitecture: all\n",
            dummy(i)
        ));
        if !depends.is_empty() {
            text.push_str(&format!("Depends: {}\n", depends.join(", ")));
        }
        text.push_str(&format!(
            "Filename: ./{}.deb\nSize: 1\nSHA256: {}\nDescription: build dependencies of {}\n\n",
            dummy(i),
            "0".repeat(64),
            source.name
        ));
    }
    text
}

/// APT's answer for one dummy: what it installs, `None` if it cannot.
type Answer = Option<BTreeSet<String>>;

/// Ask `apt_oracle.py` (in `threads` processes) for the dummies `0..count`.
fn oracle(apt: &Aptbox, status: &Path, count: usize, threads: usize) -> Vec<Answer> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/resolver/apt_oracle.py");
    let per = count.div_ceil(threads.max(1)).max(1);
    let ranges: Vec<std::ops::Range<usize>> = (0..count)
        .step_by(per)
        .map(|start| start..(start + per).min(count))
        .collect();
    let parts: Vec<Vec<Answer>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .into_iter()
            .map(|range| {
                let script = &script;
                scope.spawn(move || ask_oracle(script, apt, status, range))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    parts.into_iter().flatten().collect()
}

fn ask_oracle(
    script: &Path,
    apt: &Aptbox,
    status: &Path,
    range: std::ops::Range<usize>,
) -> Vec<Answer> {
    use std::io::Write;
    let mut child = std::process::Command::new("/usr/bin/python3")
        .arg(script)
        .arg(status)
        .env("APT_CONFIG", apt.config_file())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running /usr/bin/python3 (install python3-apt)");
    let mut stdin = child.stdin.take().unwrap();
    let names: String = range.clone().map(|i| dummy(i) + "\n").collect();
    let writer = std::thread::spawn(move || stdin.write_all(names.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "apt_oracle.py failed: {}", out.status);
    let answers: Vec<Answer> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let installable = v["broken"] == 0 && v["remove"] == 0;
            installable.then(|| {
                v["install"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect()
            })
        })
        .collect();
    assert_eq!(answers.len(), range.len(), "apt_oracle.py answered too few");
    answers
}

/// Compare the install sets of `sample` (whose dummies `apt` indexes),
/// APT's answers from `threads` processes; the first `apt_get` are also
/// asked of `apt-get --simulate satisfy`, which must agree with the
/// oracle.
pub fn compare(
    system: &System,
    apt: &Aptbox,
    status: &Path,
    arch: &str,
    sample: &[&SourcePackage],
    threads: usize,
    apt_get: usize,
) -> Agreement {
    let mut agreement = Agreement::default();
    let t = Instant::now();
    let answers = oracle(apt, status, sample.len(), threads);
    agreement.apt_time = t.elapsed();
    for (i, source) in sample.iter().enumerate() {
        let request = source.build_depends_for(arch);
        if i < apt_get {
            let texts: Vec<String> = request.iter().map(|r| r.text.clone()).collect();
            let direct = apt
                .satisfy(&texts, Some(status))
                .ok()
                .map(|set| names(&set));
            agreement.apt_get_checked += 1;
            if direct != answers[i] {
                agreement.apt_get_disagrees.push(source.name.clone());
            }
        }
        let t = Instant::now();
        let ours = system.resolve(&request);
        agreement.comb_time += t.elapsed();
        agreement.compared += 1;
        match (ours, &answers[i]) {
            (Ok(a), Some(b)) if names(&a) == *b => agreement.identical += 1,
            (Err(_), None) => agreement.both_unsatisfiable += 1,
            (Ok(a), Some(b)) => {
                let b = records(b);
                let (na, nb) = (names(&a), names(&b));
                let explained = system
                    .check(&request, &a)
                    .map_err(|e| format!("comb's set is not valid: {e}"))
                    .and_then(|()| {
                        system
                            .check(&request, &b)
                            .map_err(|e| format!("APT's set is not valid: {e}"))
                    })
                    .and_then(|()| system.choices_between(&request, ("comb", &a), ("APT", &b)))
                    .and_then(|choices| {
                        if choices.is_empty() {
                            Err("no choice between them explains the difference".into())
                        } else {
                            Ok(choices)
                        }
                    });
                agreement.differences.push(Difference {
                    source: source.name.clone(),
                    comb_only: na.difference(&nb).cloned().collect(),
                    apt_only: nb.difference(&na).cloned().collect(),
                    explained,
                });
            }
            (Ok(a), None) => agreement.differences.push(Difference {
                source: source.name.clone(),
                comb_only: names(&a).into_iter().collect(),
                apt_only: Vec::new(),
                explained: system
                    .check(&request, &a)
                    .map(|()| vec!["APT found no install set, comb a valid one".to_string()])
                    .map_err(|c| format!("comb's set is not valid: {c}")),
            }),
            (Err(e), Some(b)) => agreement.differences.push(Difference {
                source: source.name.clone(),
                comb_only: Vec::new(),
                apt_only: b.iter().cloned().collect(),
                explained: Err(format!(
                    "comb found no install set, APT did; comb said: {e}"
                )),
            }),
        }
    }
    agreement
}

/// `name=version` answers as install records (name and version only).
fn records(set: &BTreeSet<String>) -> Vec<Resolved> {
    set.iter()
        .map(|nv| {
            let (name, version) = nv.split_once('=').unwrap();
            Resolved {
                name: name.to_string(),
                version: version.to_string(),
                architecture: String::new(),
                sha256: String::new(),
                size: 0,
                filename: String::new(),
            }
        })
        .collect()
}

/// The whole comparison: `count` source packages of `snapshot` (an even
/// sample), APT set up in `work` with their dummies, the base resolved by
/// APT, both resolvers asked; APT on every CPU, and `apt-get --simulate`
/// itself for the first 30.
pub fn compare_sample(snapshot: &Snapshot, count: usize, work: &Path) -> Agreement {
    let (universe, sources) = load(snapshot);
    let sample = sample(&sources, &snapshot.architecture, count);
    assert_eq!(
        sample.len(),
        count,
        "the snapshot has fewer source packages"
    );
    let dummies = work.join("dummies");
    std::fs::write(&dummies, dummies_index(&sample, &snapshot.architecture)).unwrap();
    let mut indices = snapshot.packages.clone();
    indices.push(dummies);
    let apt =
        Aptbox::new(&work.join("apt"), &snapshot.architecture, &indices).expect("setting up APT");
    let status_text = base_status(&apt, snapshot);
    let status = work.join("status");
    std::fs::write(&status, &status_text).unwrap();
    let installed = comb_distro::parse_status(&status_text, "the base").unwrap();
    assert!(
        installed.len() > 100,
        "the base holds {} packages",
        installed.len()
    );
    let system = System::new(&universe, installed, Vec::new(), false);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    compare(
        &system,
        &apt,
        &status,
        &snapshot.architecture,
        &sample,
        threads,
        30,
    )
}

impl Agreement {
    /// The summary line and one paragraph per difference.
    pub fn report(&self) -> String {
        let mut out = format!(
            "{} source packages: {} identical install sets, {} unsatisfiable for both, {} different \
             ({} explained); comb {:.2} s, APT {:.1} s; apt-get --simulate gave the same \
             answer for {} of the first {}\n",
            self.compared,
            self.identical,
            self.both_unsatisfiable,
            self.differences.len(),
            self.differences.iter().filter(|d| d.explained.is_ok()).count(),
            self.comb_time.as_secs_f64(),
            self.apt_time.as_secs_f64(),
            self.apt_get_checked - self.apt_get_disagrees.len(),
            self.apt_get_checked,
        );
        for d in &self.differences {
            out.push_str(&format!(
                "  {}: comb only {:?}, APT only {:?}\n",
                d.source, d.comb_only, d.apt_only
            ));
            match &d.explained {
                Ok(choices) => {
                    for c in choices {
                        out.push_str(&format!("    both valid; {c}\n"));
                    }
                }
                Err(e) => out.push_str(&format!("    NOT EXPLAINED: {e}\n")),
            }
        }
        out
    }
}
