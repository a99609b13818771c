//! Debian relation fields, by both of comb's parsers: the distribution
//! backend's (`comb_distro::parse_relations`, for indices and control
//! files) and the recipes' (`comb_recipes::parse_relations`, for recipes
//! and `.dsc` files). Each must reparse what it prints; and what the
//! stricter recipes parser accepts, the backend must read the same way,
//! since a recipe's requirements are resolved by the backend.
#![no_main]

use comb_recipes::Op as ROp;
use libfuzzer_sys::fuzz_target;

fn distro_op(op: ROp) -> comb_distro::Op {
    match op {
        ROp::Earlier => comb_distro::Op::Lt,
        ROp::EarlierOrEqual => comb_distro::Op::Le,
        ROp::Equal => comb_distro::Op::Eq,
        ROp::LaterOrEqual => comb_distro::Op::Ge,
        ROp::Later => comb_distro::Op::Gt,
    }
}

fn check_distro(text: &str) {
    let Ok(groups) = comb_distro::parse_relations("fuzz", "Depends", text) else {
        return;
    };
    let _ = comb_distro::deps::parse_relation_list("fuzz", "Provides", text);
    for r in groups.iter().flatten() {
        let _ = r.version_constraint();
        let _ = r.applies("amd64", &["nocheck"]);
        let printed = r.to_string();
        let again = comb_distro::parse_relations("fuzz", "Depends", &printed)
            .unwrap_or_else(|e| panic!("{printed:?} does not reparse: {e}"));
        assert_eq!(again, vec![vec![r.clone()]], "{printed:?}");
    }
}

fn check_recipes(text: &str) {
    let _ = comb_recipes::Relation::parse(text);
    let Ok(relations) = comb_recipes::parse_relations(text) else {
        return;
    };
    for r in &relations {
        let again = comb_recipes::Relation::parse(&r.text)
            .unwrap_or_else(|e| panic!("{:?} does not reparse: {e}", r.text));
        assert_eq!(&again, r);
        let _ = r.has_build_only_syntax();

        let backend = comb_distro::parse_relations("fuzz", "Build-Depends", &r.text)
            .unwrap_or_else(|e| panic!("recipes accept {:?}, the backend does not: {e}", r.text));
        assert_eq!(backend.len(), 1, "{:?}", r.text);
        let alternatives = &backend[0];
        assert_eq!(alternatives.len(), r.alternatives.len(), "{:?}", r.text);
        for (a, d) in r.alternatives.iter().zip(alternatives) {
            assert_eq!(a.name, d.name);
            assert_eq!(a.arch_qualifier, d.arch_qualifier);
            assert_eq!(
                a.version
                    .as_ref()
                    .map(|v| (distro_op(v.op), v.version.clone())),
                d.version.clone(),
                "{:?}",
                r.text
            );
            assert!(d.version_constraint().is_ok(), "{:?}", r.text);
            let archs: Vec<(bool, &str)> = a
                .architectures
                .iter()
                .flat_map(|x| x.architectures.iter().map(|n| (x.negated, n.as_str())))
                .collect();
            let backend_archs: Vec<(bool, &str)> = d
                .archs
                .iter()
                .map(|x| (x.negated, x.arch.as_str()))
                .collect();
            assert_eq!(archs, backend_archs, "{:?}", r.text);
            let profiles: Vec<Vec<(bool, &str)>> = a
                .profiles
                .iter()
                .map(|g| g.iter().map(|t| (t.negated, t.name.as_str())).collect())
                .collect();
            let backend_profiles: Vec<Vec<(bool, &str)>> = d
                .profiles
                .iter()
                .map(|g| g.iter().map(|t| (t.negated, t.name.as_str())).collect())
                .collect();
            assert_eq!(profiles, backend_profiles, "{:?}", r.text);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_distro(&text);
    check_recipes(&text);
});
