//! The repository file `comb.toml` (`RepoConfig::parse`): the distro, base
//! sets, pockets and their access lists, hooks.
#![no_main]

use comb_fuzz::scratch;
use comb_recipes::RepoConfig;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn config_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = scratch().join("repo");
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("comb.toml")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(config) = RepoConfig::parse(config_path(), &text) else {
        return;
    };
    for (name, pocket) in &config.pockets {
        assert_eq!(name, &pocket.name);
        assert!(pocket.publish.is_absolute(), "{:?}", pocket.publish);
    }
    for (_, hook) in &config.hooks.run {
        assert!(hook.is_absolute(), "{hook:?}");
    }
    let _ = config.hooks.for_event("failed").count();
});
