//! deb822 paragraphs (`control::parse`, `control::paragraph_texts`), the
//! syntax under every index, control file, `.dsc` and APT `.sources` file
//! comb reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Paragraph texts are non-blank slices of the text, in order, none
    // holding a blank line.
    let texts = comb_debian::control::paragraph_texts(&text);
    for t in &texts {
        assert!(!t.trim().is_empty());
        assert!(!t.ends_with('\n'));
        assert!(t.split('\n').all(|line| !line.trim().is_empty()));
    }
    let Ok(paragraphs) = comb_debian::control::parse(&text, "control") else {
        return;
    };
    for p in &paragraphs {
        assert!(!p.fields.is_empty());
        for f in &p.fields {
            // Lookups are case-insensitive and find the field itself.
            assert_eq!(p.get(&f.name.to_ascii_uppercase()), Some(f.value.as_str()));
            assert!(f.line >= p.line);
            let _ = p.require(&f.name, "control");
        }
    }
});
