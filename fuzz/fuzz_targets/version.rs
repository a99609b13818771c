//! Debian versions (`Version::parse`) and dpkg's ordering of them. The
//! input is up to three versions, one per line; the ordering must be a
//! total order (reflexive, antisymmetric, transitive) and survive printing
//! and reparsing.
#![no_main]

use comb_debian::Version;
use libfuzzer_sys::fuzz_target;
use std::cmp::Ordering;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let versions: Vec<Version> = text
        .split('\n')
        .take(3)
        .filter_map(|line| Version::parse(line).ok())
        .collect();
    for v in &versions {
        assert_eq!(v.cmp(v), Ordering::Equal);
        let again = Version::parse(v.as_str()).expect("a parsed version reparses");
        assert_eq!(again.cmp(v), Ordering::Equal);
        assert_eq!(again.as_str(), v.as_str());
        assert_eq!(v.to_string(), v.as_str());
    }
    for a in &versions {
        for b in &versions {
            assert_eq!(a.cmp(b), b.cmp(a).reverse(), "{a} vs {b}");
            assert_eq!(
                comb_debian::version::compare_versions(a.as_str(), b.as_str()).ok(),
                Some(a.cmp(b))
            );
            for c in &versions {
                if a <= b && b <= c {
                    assert!(a <= c, "{a} <= {b} <= {c} but not {a} <= {c}");
                }
            }
        }
    }
});
