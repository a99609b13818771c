use comb_debian::relation::{Alternative, Relation};
use comb_distro::solver::{System, Universe};
use std::time::Instant;

fn relations_of(s: &comb_distro::SourcePackage, arch: &str) -> Vec<Relation> {
    [
        &s.build_depends,
        &s.build_depends_arch,
        &s.build_depends_indep,
    ]
    .into_iter()
    .flatten()
    .filter_map(|r| {
        let alternatives: Vec<Alternative> = r
            .alternatives
            .iter()
            .filter(|a| a.applies(arch, &[]))
            .map(|a| Alternative {
                arch_qualifier: a.arch_qualifier.clone().filter(|q| q == "any"),
                architectures: None,
                profiles: Vec::new(),
                ..a.clone()
            })
            .collect();
        (!alternatives.is_empty()).then(|| Relation {
            text: r.text.clone(),
            alternatives,
        })
    })
    .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let t = Instant::now();
    let packages = std::fs::read_to_string(&args[1]).unwrap();
    let packages = comb_distro::parse_packages(&packages, &args[1]).unwrap();
    eprintln!("parsed packages {:?}", t.elapsed());
    let universe = Universe::new("amd64", packages);
    eprintln!("universe {:?} {}", t.elapsed(), universe.len());
    let sources = std::fs::read_to_string(&args[2]).unwrap();
    let sources = comb_distro::parse_sources(&sources, &args[2]).unwrap();
    eprintln!("parsed sources {:?}", t.elapsed());
    let status = std::fs::read_to_string(&args[3]).unwrap();
    let installed = comb_distro::parse_status(&status, &args[3]).unwrap();
    let system = System::new(&universe, installed, Vec::new(), false);
    eprintln!("system {:?}", t.elapsed());
    let t2 = Instant::now();
    let only: Option<&str> = args.get(4).map(String::as_str);
    let mut unsat = 0;
    let mut total = 0;
    for s in &sources {
        if only.is_some_and(|o| o != s.name) {
            continue;
        }
        let archs = &s.architecture;
        if !archs
            .iter()
            .any(|a| a == "all" || comb_debian::relation::arch_matches(a, "amd64"))
        {
            continue;
        }
        total += 1;
        let rels = s.build_depends_for("amd64");
        match system.resolve(&rels) {
            Ok(r) => {
                if only.is_some() {
                    for p in r {
                        println!("{} {}", p.name, p.version);
                    }
                }
            }
            Err(e) => {
                unsat += 1;
                println!("{} {}: {e}", s.name, s.version);
            }
        }
    }
    eprintln!(
        "resolved {total} in {:?}, {unsat} unsatisfiable",
        t2.elapsed()
    );
    if let Ok(n) = std::env::var("COMPARE") {
        let n: usize = n.parse().unwrap();
        let step = sources.len() / n;
        let picked: Vec<_> = sources
            .iter()
            .step_by(step)
            .filter(|s| !s.build_depends_for("amd64").is_empty())
            .collect();
        let mut dummies = String::new();
        for (i, s) in picked.iter().enumerate() {
            let texts: Vec<String> = s
                .build_depends_for("amd64")
                .iter()
                .map(|r| r.text.clone())
                .collect();
            dummies.push_str(&format!("Package: comb-satisfy-{i}\nVersion: 0\nArchitecture: all\nDepends: {}\nFilename: x\nSize: 1\nSHA256: {}\n\n", texts.join(", "), "0".repeat(64)));
        }
        std::fs::write("/var/tmp/dummies-Packages", dummies).unwrap();
        let apt = comb_distro::Aptbox::new(
            std::path::Path::new("/var/tmp/aptbox-dummy"),
            "amd64",
            &[args[1].clone().into(), "/var/tmp/dummies-Packages".into()],
        )
        .unwrap();
        let t3 = Instant::now();
        let mut child = std::process::Command::new("/usr/bin/python3")
            .arg("/tmp/oracle.py")
            .arg(&args[3])
            .env("APT_CONFIG", apt.config_file())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            for i in 0..picked.len() {
                writeln!(stdin, "comb-satisfy-{i}").unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        eprintln!("oracle {} in {:?}", picked.len(), t3.elapsed());
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let (mut same, mut differ, mut aptsame, mut aptdiff) = (0, 0, 0, 0);
        for (i, s) in picked.iter().enumerate() {
            let rels = s.build_depends_for("amd64");
            let ours = system.resolve(&rels).map(|v| {
                v.into_iter()
                    .map(|r| format!("{}={}", r.name, r.version))
                    .collect::<std::collections::BTreeSet<_>>()
            });
            let o = &lines[i];
            let theirs: std::collections::BTreeSet<String> = o["install"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect();
            let ok = o["broken"].as_u64() == Some(0) && o["delete"].as_u64() == Some(0);
            match (&ours, ok) {
                (Ok(a), true) if *a == theirs => same += 1,
                (Err(_), false) => same += 1,
                _ => {
                    differ += 1;
                    println!(
                        "DIFF {}: ours {:?}\n oracle {:?} {}",
                        s.name, ours, theirs, o
                    );
                }
            }
            if i < 40 {
                let texts: Vec<String> = rels.iter().map(|r| r.text.clone()).collect();
                let real = apt
                    .satisfy(&texts, Some(std::path::Path::new(&args[3])))
                    .map(|v| {
                        v.into_iter()
                            .map(|r| format!("{}={}", r.name, r.version))
                            .collect::<std::collections::BTreeSet<_>>()
                    });
                match (&real, ok) {
                    (Ok(r), true) if *r == theirs => aptsame += 1,
                    (Err(_), false) => aptsame += 1,
                    _ => {
                        aptdiff += 1;
                        println!("APTDIFF {}: {:?} vs {:?}", s.name, real, theirs);
                    }
                }
            }
        }
        eprintln!("oracle vs ours: {same} same, {differ} differ; oracle vs apt-get: {aptsame} same, {aptdiff} differ");
    }
}
