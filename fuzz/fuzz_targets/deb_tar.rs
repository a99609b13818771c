//! The tar reader of `.deb` members, fed directly: the input is both the
//! `control.tar` and the `data.tar` of an otherwise well-formed, uncompressed
//! `.deb`, read as comb reads every package (control files, then the data
//! entries and their content).
#![no_main]

use comb_distro::deb::DebArchive;
use comb_fuzz::{deb_of_tars, write_input, CONTENT_BUDGET};
use libfuzzer_sys::fuzz_target;
use std::io::Read;

fuzz_target!(|data: &[u8]| {
    let path = write_input("input.deb", &deb_of_tars(data, data));
    let deb = DebArchive::open(&path).expect("the container is well-formed");
    let _ = deb.control();
    let _ = deb.control_members();
    let mut budget = CONTENT_BUDGET;
    let _ = deb.data_entries(|entry, content| {
        let mut got = Vec::new();
        content
            .take(budget)
            .read_to_end(&mut got)
            .map_err(|source| comb_distro::Error::Io {
                action: "reading",
                path: path.clone(),
                source,
            })?;
        budget -= got.len() as u64;
        // A file's content is exactly the size its header announced.
        if budget > 0 {
            assert_eq!(got.len() as u64, entry.size, "{entry:?}");
        }
        Ok(())
    });
});
