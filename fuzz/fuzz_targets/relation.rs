//! Debian relation fields, by comb's one parser (`comb_debian`) under both
//! of its rules: dpkg's (indices, control files) and Debian Policy's
//! (recipes, `.dsc` files). Each relation must reparse from its text to
//! itself; what Policy accepts, dpkg must read the same way (a recipe's
//! requirements are resolved against what the distribution wrote); and
//! where an alternative applies is answered without a panic.
#![no_main]

use comb_debian::relation::{parse_relations, Relation, Rules};
use libfuzzer_sys::fuzz_target;

fn check(text: &str, rules: Rules) -> Option<Vec<Relation>> {
    let relations = parse_relations(text, rules).ok()?;
    for r in &relations {
        let again = parse_relations(&r.text, rules)
            .unwrap_or_else(|e| panic!("{:?} does not reparse: {e}", r.text));
        assert_eq!(again, vec![r.clone()], "{:?}", r.text);
        let _ = r.has_build_only_syntax();
        for a in &r.alternatives {
            let _ = a.applies("amd64", &["nocheck"]);
            if let Some(v) = &a.version {
                comb_debian::Version::parse(&v.version)
                    .unwrap_or_else(|e| panic!("{:?} was accepted: {e}", v.version));
            }
        }
    }
    Some(relations)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Relation::parse(&text);
    let policy = check(&text, Rules::Policy);
    let dpkg = check(&text, Rules::Dpkg);
    if policy.is_some() {
        assert_eq!(policy, dpkg, "{text:?}");
    }
});
