//! A clearsigned `InRelease` (`split_clearsigned`, as comb runs it before
//! and after `gpgv`) and the `Release` fields in it: the SHA256 list,
//! dates and Valid-Until.
#![no_main]

use comb_debian::clearsigned::split_clearsigned;
use comb_distro::release::{format_date, parse_date};
use comb_distro::Release;
use libfuzzer_sys::fuzz_target;

fn check_date(s: &str) {
    if let Some(t) = parse_date(s) {
        let formatted = format_date(t);
        assert_eq!(
            parse_date(&formatted),
            Some(t),
            "{s:?} -> {t} -> {formatted:?}"
        );
    }
}

fn check_release(text: &str) {
    let Ok(release) = Release::parse(text, "InRelease") else {
        return;
    };
    check_date(&release.date);
    if let Some(until) = &release.valid_until {
        check_date(until);
    }
    let _ = release.check_valid_until(1_750_000_000, "InRelease");
    for e in &release.sha256 {
        assert!(!e.path.starts_with('/') && !e.path.split('/').any(|c| c == ".."));
        assert_eq!(release.entry(&e.path).map(|f| &f.path), Some(&e.path));
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match split_clearsigned(&text, "InRelease") {
        Ok(signed) => {
            assert!(signed.text.is_empty() || signed.text.ends_with('\n'));
            assert!(signed.first_line > 1);
            check_release(&signed.text);
        }
        Err(_) => check_release(&text),
    }
    // Dates on their own: the first line, as a Date field would give it.
    check_date(text.lines().next().unwrap_or(""));
});
