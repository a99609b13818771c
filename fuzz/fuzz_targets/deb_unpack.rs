//! Unpacking a `.deb`'s data.tar into a layer, as comb does as root on the
//! host: the input is the (uncompressed) data.tar. The layer already holds
//! what earlier packages leave there (merged-/usr symlinks, a relative and
//! an absolute symlink that lead out of it); after each unpack the target
//! checks that nothing outside the layer was created or changed, and that
//! the layer holds no set-id file, device or FIFO.
#![no_main]

use comb_distro::deb::{unpack_data, DebArchive, UnpackOptions};
use comb_fuzz::{deb_of_tars, scratch, write_input, CONTENT_BUDGET};
use libfuzzer_sys::fuzz_target;
use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

fn layer_is_clean(dir: &Path) {
    for entry in fs::read_dir(dir).expect("reading the layer") {
        let path = entry.expect("reading the layer").path();
        let meta = fs::symlink_metadata(&path).expect("inspecting the layer");
        let t = meta.file_type();
        assert!(
            !(t.is_block_device() || t.is_char_device() || t.is_fifo() || t.is_socket()),
            "{path:?} is a special file"
        );
        if t.is_file() {
            assert_eq!(meta.permissions().mode() & 0o6000, 0, "{path:?} is set-id");
        }
        if t.is_dir() {
            layer_is_clean(&path);
        }
    }
}

/// What must not change about a file or directory outside the layer.
fn state(path: &Path) -> (u32, u32, u32, i64, i64, u64) {
    let m = fs::symlink_metadata(path).expect("inspecting outside the layer");
    (
        m.mode(),
        m.uid(),
        m.gid(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino(),
    )
}

fuzz_target!(|data: &[u8]| {
    let empty_tar = [0u8; 1024];
    let deb = write_input("input.deb", &deb_of_tars(&empty_tar, data));
    // Decompression aside, an uncompressed tar can still announce entries
    // far larger than the input; only unpack what fits the budget.
    let mut announced = 0u64;
    let fits = DebArchive::open(&deb)
        .and_then(|a| {
            a.data_entries(|entry, _| {
                announced = announced.saturating_add(entry.size);
                if announced > CONTENT_BUDGET {
                    return Err(comb_distro::Error::Io {
                        action: "reading",
                        path: deb.clone(),
                        source: std::io::Error::other("over the fuzz budget"),
                    });
                }
                Ok(())
            })
        })
        .is_ok();
    if !fits {
        return;
    }

    let base = scratch().join("unpack");
    let _ = fs::remove_dir_all(&base);
    let root = base.join("root");
    let outside = base.join("outside");
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("victim"), b"untouched").unwrap();
    symlink("usr/bin", root.join("bin")).unwrap();
    symlink("usr/lib", root.join("lib")).unwrap();
    symlink("../outside", root.join("escape")).unwrap();
    symlink(&outside, root.join("abs")).unwrap();
    fs::write(root.join("usr/bin/existing"), b"x").unwrap();
    let victim = outside.join("victim");
    let before = (state(&outside), state(&victim));

    let options = UnpackOptions {
        merged_usr: data.last().is_some_and(|b| b & 1 == 1),
        ..UnpackOptions::default()
    };
    let _ = unpack_data(&deb, &root, &options);

    let names: Vec<_> = fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "something was created beside the layer: {names:?}"
    );
    let outside_names: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        outside_names,
        ["victim"],
        "something was created outside the layer"
    );
    assert_eq!(
        (state(&outside), state(&victim)),
        before,
        "something outside the layer changed"
    );
    assert_eq!(
        fs::read(&victim).unwrap(),
        b"untouched",
        "the file outside was written"
    );
    layer_is_clean(&root);
    let _ = fs::remove_dir_all(&base);
});
