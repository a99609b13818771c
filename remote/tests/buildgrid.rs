//! comb-remote against a real BuildGrid (see `buildgrid_server`).

mod buildgrid_server;

use buildgrid_server::start;
use comb_remote::{node_action, ActionResult, BlobDigest, Error, OutputFile, Remote};
use std::time::{Duration, Instant};

fn result_of(files: &[(&str, &[u8])]) -> ActionResult {
    ActionResult {
        output_files: files
            .iter()
            .map(|(path, data)| {
                let d = BlobDigest::of(data);
                OutputFile {
                    path: path.to_string(),
                    digest: Some(d.proto()),
                    ..Default::default()
                }
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn blobs_and_results_round_trip_and_bad_bytes_are_refused() {
    let server = start(true);
    let remote = Remote::connect(&server.url, "main").unwrap();
    let small = b"a small blob".to_vec();
    // Over the batch limit: ByteStream both ways.
    let large: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    remote.upload(&[&small, &large]).unwrap();
    assert!(remote
        .missing(&[BlobDigest::of(&small), BlobDigest::of(&large)])
        .unwrap()
        .is_empty());
    assert_eq!(
        remote.download(&BlobDigest::of(&small), "small").unwrap(),
        small
    );
    assert_eq!(
        remote.download(&BlobDigest::of(&large), "large").unwrap(),
        large
    );

    let (action, ..) = node_action("build", &"c".repeat(64));
    assert!(remote.lookup(&action).unwrap().is_none());
    remote
        .record(&action, result_of(&[("manifest.json", &small)]))
        .unwrap();
    let got = remote.lookup(&action).unwrap().expect("a recorded result");
    assert_eq!(got.output_files[0].path, "manifest.json");

    // A blob never stored is missing, not an error of another kind.
    let absent = BlobDigest::of(b"never stored");
    assert!(matches!(
        remote.download(&absent, "absent"),
        Err(Error::Missing(_))
    ));
    // Bytes changed on the server's disk are refused on read.
    let on_disk = server.blob_files(&BlobDigest::of(&small).sha256);
    assert!(!on_disk.is_empty(), "where BuildGrid keeps the blob");
    for p in &on_disk {
        std::fs::write(p, b"a smell blob").unwrap();
    }
    let err = remote
        .download(&BlobDigest::of(&small), "the manifest")
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains("does not hash to its digest"),
        "{err}"
    );
}

#[test]
fn a_cache_that_takes_only_executed_results_refuses_a_clients_upload() {
    let server = start(false);
    let remote = Remote::connect(&server.url, "main").unwrap();
    let data = b"planted".to_vec();
    remote.upload(&[&data]).unwrap();
    let (action, ..) = node_action("build", &"d".repeat(64));
    let err = remote
        .record(&action, result_of(&[("manifest.json", &data)]))
        .unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err}");
    // Nothing planted is served.
    assert!(remote.lookup(&action).unwrap().is_none());
}

#[test]
fn a_server_that_goes_away_is_unreachable_not_a_hang() {
    let mut server = start(true);
    let remote = Remote::connect(&server.url, "main").unwrap();
    let _ = server.child.kill();
    let _ = server.child.wait();
    let started = Instant::now();
    let (action, ..) = node_action("build", &"e".repeat(64));
    let err = remote.lookup(&action).unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
}
