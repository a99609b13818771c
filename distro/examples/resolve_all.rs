use comb_debian::relation::{Alternative, Relation};
use comb_distro::solver::{System, Universe};
use std::time::Instant;

fn relations_of(s: &comb_distro::SourcePackage, arch: &str) -> Vec<Relation> {
    [&s.build_depends, &s.build_depends_arch, &s.build_depends_indep]
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
            (!alternatives.is_empty()).then(|| Relation { text: r.text.clone(), alternatives })
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
        if only.is_some_and(|o| o != s.name) { continue; }
        let archs = &s.architecture;
        if !archs.iter().any(|a| a == "all" || comb_debian::relation::arch_matches(a, "amd64")) { continue; }
        total += 1;
        let rels = relations_of(s, "amd64");
        match system.resolve(&rels) {
            Ok(r) => if only.is_some() { for p in r { println!("{} {}", p.name, p.version); } },
            Err(e) => { unsat += 1; println!("{} {}: {e}", s.name, s.version); }
        }
    }
    eprintln!("resolved {total} in {:?}, {unsat} unsatisfiable", t2.elapsed());
    if let Ok(n) = std::env::var("COMPARE") {
        let n: usize = n.parse().unwrap();
        let apt = comb_distro::Aptbox::new(std::path::Path::new("/var/tmp/aptbox-cmp"), "amd64", &[args[1].clone().into()]).unwrap();
        let t3 = Instant::now();
        let step = sources.len() / n;
        let (mut same, mut differ, mut done) = (0, 0, 0);
        for s in sources.iter().step_by(step) {
            let rels = relations_of(s, "amd64");
            if rels.is_empty() { continue; }
            let texts: Vec<String> = rels.iter().map(|r| r.text.clone()).collect();
            let ours = system.resolve(&rels).map(|v| v.into_iter().map(|r| format!("{}={}", r.name, r.version)).collect::<std::collections::BTreeSet<_>>());
            let theirs = apt.satisfy(&texts, Some(std::path::Path::new(&args[3]))).map(|v| v.into_iter().map(|r| format!("{}={}", r.name, r.version)).collect::<std::collections::BTreeSet<_>>());
            done += 1;
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) if a == b => same += 1,
                (Ok(a), Ok(b)) => { differ += 1; println!("DIFF {}: ours-only {:?} apt-only {:?}", s.name, a.difference(b).collect::<Vec<_>>(), b.difference(a).collect::<Vec<_>>()); }
                (Err(_), Err(_)) => same += 1,
                (a, b) => { differ += 1; println!("DIFF {}: ours {:?} apt {:?}", s.name, a.as_ref().err().map(|e| e.to_string()), b.as_ref().err().map(|e| e.to_string())); }
            }
        }
        eprintln!("compared {done} in {:?}: {same} same, {differ} differ", t3.elapsed());
    }
}
