//! `.dsc` files, by both readers: the recipes' `Dsc::parse` (a local
//! source package beside a recipe; it checks that the listed files are
//! beside the `.dsc`) and the backend's `parse_dsc` (a `.dsc` fetched from
//! the mirror). Listed files must be plain names.
#![no_main]

use comb_fuzz::scratch;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

/// A directory holding one of the files a `.dsc` may list.
fn dsc_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = scratch().join("dsc");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hello_2.10.orig.tar.gz"), b"").unwrap();
        dir.join("hello_2.10-3.dsc")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(dsc) = comb_recipes::Dsc::parse(dsc_path(), &text) {
        for f in &dsc.files {
            assert!(
                !f.name.starts_with('.') && !f.name.contains('/'),
                "{:?}",
                f.name
            );
        }
        for r in dsc.build_depends.iter().chain(&dsc.build_conflicts) {
            assert!(r.at.line >= 1 && r.at.column >= 1);
        }
    }
    if let Ok(source) = comb_distro::packages::parse_dsc(&text, "fuzz.dsc") {
        for f in &source.files {
            assert!(!f.name.is_empty() && !f.name.contains('/') && f.name != "..");
        }
    }
});
