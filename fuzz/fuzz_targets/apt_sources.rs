//! The host's APT sources, in both formats: one-line `sources.list`
//! (`parse_one_line`) and deb822 `.sources` (`parse_deb822`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let list = Path::new("/etc/apt/sources.list");
    let sources = Path::new("/etc/apt/sources.list.d/debian.sources");
    for parsed in [
        comb_distro::sources::parse_one_line(&text, list),
        comb_distro::sources::parse_deb822(&text, sources),
    ] {
        for s in parsed.iter().flatten() {
            assert!(!s.types.is_empty() && !s.suites.is_empty());
            let _ = s.is_binary();
            let _ = s.keyring();
        }
    }
});
