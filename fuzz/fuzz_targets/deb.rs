//! A whole `.deb` from the network or the store: the `ar` container, the
//! compressed control and data members, and the control file in them.
//! The input is written to a file, as `DebArchive::open` takes a path.
#![no_main]

use comb_distro::deb::DebArchive;
use comb_fuzz::{write_input, CONTENT_BUDGET};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = write_input("input.deb", data);
    let Ok(deb) = DebArchive::open(&path) else {
        return;
    };
    let _ = deb.format_version();
    let _ = deb.data_compression();
    if let Ok(control) = deb.control() {
        if let Ok(paragraphs) = comb_debian::control::parse(&control, "control") {
            for p in &paragraphs {
                let _ = comb_distro::BinaryPackage::from_paragraph(p, "control");
                if let Some(depends) = p.get("Depends") {
                    let _ = comb_distro::relation_field("control", "Depends", depends);
                }
            }
        }
    }
    let _ = deb.control_members();
    let mut budget = CONTENT_BUDGET;
    let mut buf = vec![0u8; 64 << 10];
    let _ = deb.data_entries(|entry, content| {
        let _ = (entry.kind, entry.mode, entry.size, &entry.link);
        loop {
            let n = content
                .read(&mut buf)
                .map_err(|source| comb_distro::Error::Io {
                    action: "reading",
                    path: path.clone(),
                    source,
                })?;
            if n == 0 {
                return Ok(());
            }
            budget = budget.saturating_sub(n as u64);
            if budget == 0 {
                return Err(comb_distro::Error::Io {
                    action: "reading",
                    path: path.clone(),
                    source: std::io::Error::other("fuzz content budget spent"),
                });
            }
        }
    });
});
