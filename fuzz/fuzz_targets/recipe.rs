//! A `recipe.toml` (`Recipe::parse`): TOML, then every field validated,
//! relations parsed, file patterns compiled, sources checked on disk. The
//! recipe sits in a directory that holds a `src` directory and a `.dsc`,
//! so that `path` and `dsc` sources can resolve.
#![no_main]

use comb_fuzz::scratch;
use comb_recipes::{check_package_name, check_version, Recipe, Source};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

const DSC: &str = "Format: 3.0 (quilt)\nSource: hello\nBinary: hello\nVersion: 2.10-3\n\
Build-Depends: debhelper-compat (= 13)\n\
Checksums-Sha256:\n 0000000000000000000000000000000000000000000000000000000000000000 0 hello_2.10.orig.tar.gz\n\
Files:\n 00000000000000000000000000000000 0 hello_2.10.orig.tar.gz\n";

fn recipe_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = scratch().join("repo/hello");
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/main.c"), b"int main(void) { return 0; }\n").unwrap();
        std::fs::write(dir.join("hello_2.10-3.dsc"), DSC).unwrap();
        std::fs::write(dir.join("hello_2.10.orig.tar.gz"), b"").unwrap();
        dir.join("recipe.toml")
    })
}

fn one_line(v: &Option<String>) {
    if let Some(v) = v {
        assert!(!v.contains('\n') && !v.is_empty(), "{v:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(recipe) = Recipe::parse(recipe_path(), &text) else {
        return;
    };
    // What goes into control files is what the checks promise.
    assert!(
        check_package_name(&recipe.name).is_ok(),
        "{:?}",
        recipe.name
    );
    if let Some(v) = &recipe.version {
        assert!(check_version(v).is_ok(), "{v:?}");
    }
    one_line(&recipe.package.summary);
    one_line(&recipe.package.license);
    one_line(&recipe.package.maintainer);
    if let Source::Path { dir, .. } = &recipe.source {
        assert!(
            dir.starts_with(&recipe.dir),
            "{dir:?} is outside {:?}",
            recipe.dir
        );
    }
    for o in &recipe.outputs {
        assert!(check_package_name(&o.name).is_ok(), "{:?}", o.name);
        one_line(&o.summary);
        let _ = o.summary(&recipe);
        for (_, deps) in o.relation_fields() {
            for d in deps {
                assert!(!d.relation.text.contains('\n'), "{:?}", d.relation.text);
            }
        }
        let _ = o.claims("usr/bin/hello");
        let _ = o.claims("usr/share/doc/hello/copyright");
    }
    let _ = recipe.binaries();
    let _ = recipe.build_requires();
    let _ = recipe.output_for("usr/lib/x86_64-linux-gnu/libhello.so.1");
});
