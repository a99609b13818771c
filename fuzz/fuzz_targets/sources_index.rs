//! A `Sources` index (`parse_sources`): typed source packages, their build
//! dependencies and the files (names that become paths) they list.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(sources) = comb_distro::parse_sources(&text, "Sources") else {
        return;
    };
    for s in &sources {
        for f in &s.files {
            // A listed file is a plain name: it becomes a path on disk.
            assert!(!f.name.is_empty() && f.name != "." && f.name != "..");
            assert!(!f.name.contains('/') && !f.name.contains('\0'));
        }
        for relation in s.build_depends.iter().chain(&s.build_depends_indep) {
            for a in &relation.alternatives {
                let _ = a.applies("amd64", &[]);
            }
        }
    }
});
