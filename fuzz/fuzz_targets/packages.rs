//! A `Packages` index (`parse_packages`): typed binary packages with their
//! versions, relations, sizes and digests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(packages) = comb_distro::parse_packages(&text, "Packages") else {
        return;
    };
    for p in &packages {
        assert_eq!(p.sha256.len(), 64);
        for relation in p.depends.iter().chain(&p.pre_depends) {
            for a in &relation.alternatives {
                let _ = a.applies("amd64", &["nocheck"]);
            }
        }
        let _ = p.version.cmp(&p.source_version);
    }
});
