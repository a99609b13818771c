//! The file patterns of `[[output]] files` (`Glob::new`, `Glob::matches`):
//! the first line of the input is the pattern, the rest paths to match,
//! as comb matches every file a build installs under `$DESTDIR`.
#![no_main]

use comb_recipes::Glob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let Ok(glob) = Glob::new(lines.next().unwrap_or("")) else {
        return;
    };
    assert_eq!(Glob::new(glob.as_str()).ok().as_ref(), Some(&glob));
    for path in lines.take(16) {
        let _ = glob.matches(path);
    }
});
