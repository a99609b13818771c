//! Behaviour of the store and the index, on real files and real SQLite.
//! Every test builds its own store in a temporary directory.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use comb_cache::*;
use tempfile::TempDir;

fn new_store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("open store");
    (dir, store)
}

fn tmp_entries(store: &Store) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(store.root().join("tmp"))
        .expect("read tmp")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777
}

/// Holds an exclusive flock on `path` through its own open file description.
fn flock_file(path: &Path) -> File {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open lock file");
    // SAFETY: flock on a valid fd.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(r, 0, "test could not take the flock on {}", path.display());
    f
}

fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

// ------------------------------------------------------------------ digests

#[test]
fn digest_known_values_and_round_trip() {
    let s = Digest::of_bytes(Algorithm::Sha256, b"abc");
    assert_eq!(
        s.to_string(),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad:3"
    );
    let b = Digest::of_bytes(Algorithm::default(), b"abc");
    assert_eq!(b.algorithm, Algorithm::Blake3);
    assert_eq!(
        b.to_string(),
        "blake3:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85:3"
    );
    for d in [s, b, Digest::of_bytes(Algorithm::Blake3, b"")] {
        let parsed: Digest = d.to_string().parse().expect("parse");
        assert_eq!(parsed, d);
        let json = serde_json::to_string(&d).expect("json");
        assert_eq!(json, format!("\"{d}\""));
        let back: Digest = serde_json::from_str(&json).expect("from json");
        assert_eq!(back, d);
    }
    // Same hash, different size: a different address.
    let mut shorter = b;
    shorter.size = 2;
    assert_ne!(shorter, b);
}

#[test]
fn digest_parse_errors_say_what_is_wrong() {
    let h = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85";
    type Check = fn(&DigestError) -> bool;
    let cases: Vec<(String, Check)> = vec![
        ("".into(), |e| matches!(e, DigestError::Shape(_))),
        (format!("blake3:{h}"), |e| {
            matches!(e, DigestError::Shape(_))
        }),
        (format!("blake3:{h}:3:4"), |e| {
            matches!(e, DigestError::Shape(_))
        }),
        (
            format!("md5:{h}:3"),
            |e| matches!(e, DigestError::UnknownAlgorithm(a) if a == "md5"),
        ),
        (format!("blake3:{}:3", &h[..60]), |e| {
            matches!(e, DigestError::HashLength { len: 60, .. })
        }),
        (format!("blake3:{}:3", h.to_uppercase()), |e| {
            matches!(e, DigestError::HashNotHex(_))
        }),
        (format!("blake3:{}g:3", &h[..63]), |e| {
            matches!(e, DigestError::HashNotHex(_))
        }),
        (format!("blake3:{h}:"), |e| {
            matches!(e, DigestError::Size(_))
        }),
        (format!("blake3:{h}:+3"), |e| {
            matches!(e, DigestError::Size(_))
        }),
        (format!("blake3:{h}:-1"), |e| {
            matches!(e, DigestError::Size(_))
        }),
        (format!("blake3:{h}:99999999999999999999999"), |e| {
            matches!(e, DigestError::Size(_))
        }),
    ];
    for (input, check) in cases {
        let err = input.parse::<Digest>().expect_err(&input);
        assert!(check(&err), "{input:?} gave {err:?}");
        assert!(!err.to_string().is_empty());
    }
    let e = "nope".parse::<Digest>().expect_err("shape");
    assert!(
        e.to_string().contains("<algorithm>:<64 hex digits>:<size>"),
        "{e}"
    );
    assert!(serde_json::from_str::<Digest>("\"sha256:xyz:1\"").is_err());
}

#[test]
fn streaming_hashers_match_one_shot() {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for alg in Algorithm::ALL {
        let want = Digest::of_bytes(alg, &data);
        let mut h = Hasher::new(alg);
        for chunk in data.chunks(4097) {
            h.update(chunk);
        }
        assert_eq!(h.size(), data.len() as u64);
        assert_eq!(h.finalize(), want);

        let mut w = HashingWriter::new(Vec::new(), alg);
        w.write_all(&data).expect("write");
        let (copy, d) = w.finish();
        assert_eq!(copy, data);
        assert_eq!(d, want);

        let mut r = HashingReader::new(&data[..], alg);
        let mut sink = Vec::new();
        r.read_to_end(&mut sink).expect("read");
        assert_eq!(r.finish().1, want);
    }
}

// ------------------------------------------------------------------- layout

#[test]
fn open_creates_the_layout() {
    let (_dir, store) = new_store();
    let root = store.root();
    assert!(root.is_absolute());
    assert_eq!(mode(root), 0o700);
    for d in ["blobs/blake3", "blobs/sha256", "trees", "tmp", "locks"] {
        assert!(root.join(d).is_dir(), "{d} missing");
    }
    assert_eq!(
        fs::read_to_string(root.join("format")).expect("format"),
        "1\n"
    );
    let tag = fs::read_to_string(root.join("CACHEDIR.TAG")).expect("tag");
    assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55\n"));
    assert!(tag.lines().skip(1).all(|l| l.starts_with('#')), "{tag:?}");
    assert!(root.join(INDEX_FILE).is_file());
    assert!(tmp_entries(&store).is_empty(), "{:?}", tmp_entries(&store));
    // Reopening an existing store works and changes nothing.
    drop(store);
    let again = Store::open(root_of(&_dir)).expect("reopen");
    assert_eq!(
        fs::read_to_string(again.root().join("format")).expect("format"),
        "1\n"
    );
}

fn root_of(dir: &TempDir) -> PathBuf {
    dir.path().join("store")
}

#[test]
fn open_restricts_an_existing_root_to_0700() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("s");
    fs::create_dir(&root).expect("mkdir");
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod");
    let _s = Store::open(&root).expect("open");
    assert_eq!(mode(&root), 0o700);
}

#[test]
fn newer_format_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    drop(Store::open(&root).expect("create"));
    fs::write(root.join("format"), "2\n").expect("write format");
    let err = Store::open(&root).expect_err("newer format must be refused");
    assert!(
        matches!(
            err,
            StoreError::NewerFormat {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("format 2") && msg.contains("newer"), "{msg}");
    assert!(msg.contains("upgrade comb"), "{msg}");

    fs::write(root.join("format"), "banana").expect("write format");
    let err = Store::open(&root).expect_err("garbage format");
    assert!(matches!(err, StoreError::BadFormat { .. }), "{err:?}");
}

#[test]
fn a_foreign_directory_is_not_taken_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("thesis.tex"), "precious").expect("write");
    let err = Store::open(dir.path()).expect_err("must refuse");
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    assert!(err.to_string().contains("thesis.tex"));
    assert!(!dir.path().join("blobs").exists());
}

#[test]
fn newer_index_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    drop(Store::open(&root).expect("create"));
    let conn = rusqlite::Connection::open(root.join(INDEX_FILE)).expect("sqlite");
    conn.pragma_update(None, "user_version", 99)
        .expect("set version");
    drop(conn);
    let err = Store::open(&root).expect_err("newer schema");
    assert!(
        matches!(
            err,
            StoreError::Index(IndexError::NewerSchema { found: 99, .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade comb"));
}

#[test]
fn default_location_rules() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| std::ffi::OsString::from(v))
        }
    };
    let all = &[
        ("COMB_STORE", "/srv/comb"),
        ("XDG_CACHE_HOME", "/x"),
        ("HOME", "/home/u"),
    ];
    assert_eq!(
        default_location_from(env(all), false).expect("loc"),
        Path::new("/srv/comb")
    );
    assert_eq!(
        default_location_from(env(all), true).expect("loc"),
        Path::new("/srv/comb")
    );
    let no_override = &[("XDG_CACHE_HOME", "/x"), ("HOME", "/home/u")];
    assert_eq!(
        default_location_from(env(no_override), true).expect("loc"),
        Path::new("/var/cache/comb")
    );
    assert_eq!(
        default_location_from(env(no_override), false).expect("loc"),
        Path::new("/x/comb")
    );
    let relative_xdg = &[("XDG_CACHE_HOME", "rel"), ("HOME", "/home/u")];
    assert_eq!(
        default_location_from(env(relative_xdg), false).expect("loc"),
        Path::new("/home/u/.cache/comb")
    );
    let empty_store = &[("COMB_STORE", ""), ("HOME", "/home/u")];
    assert_eq!(
        default_location_from(env(empty_store), false).expect("loc"),
        Path::new("/home/u/.cache/comb")
    );
    assert!(matches!(
        default_location_from(env(&[]), false),
        Err(StoreError::NoLocation)
    ));
}

// -------------------------------------------------------------------- blobs

#[test]
fn blobs_are_stored_once_read_only_and_found_again() {
    let (_dir, store) = new_store();
    let data = b"hello, store".to_vec();
    let d1 = store.put_blob_reader(&mut &data[..]).expect("put");
    let d2 = store.put_blob_reader(&mut &data[..]).expect("put again");
    assert_eq!(d1, d2);
    assert_eq!(d1, Digest::of_bytes(Algorithm::Blake3, &data));
    let p = store.blob_path(&d1).expect("blob present");
    assert_eq!(fs::read(&p).expect("read"), data);
    assert_eq!(mode(&p), 0o444);
    let hex = d1.hex();
    assert_eq!(
        p,
        store
            .root()
            .join("blobs/blake3")
            .join(&hex[..2])
            .join(&hex[2..])
    );
    // Stored once: the fan-out directory holds exactly this file.
    assert_eq!(
        fs::read_dir(p.parent().expect("parent"))
            .expect("ls")
            .count(),
        1
    );
    assert!(tmp_entries(&store).is_empty());
    assert!(store.has_blob(&d1));
    let mut s = String::new();
    store
        .open_blob(&d1)
        .expect("open")
        .read_to_string(&mut s)
        .expect("read");
    assert_eq!(s.as_bytes(), data);
    store.verify_blob(&d1).expect("verify");

    let other = Digest::of_bytes(Algorithm::Blake3, b"not stored");
    assert!(!store.has_blob(&other));
    assert!(store.blob_path(&other).is_none());
    assert!(matches!(
        store.verify_blob(&other),
        Err(StoreError::BlobMissing(_))
    ));
    assert!(matches!(
        store.open_blob(&other),
        Err(StoreError::BlobMissing(_))
    ));

    // Another size at the same hash is another address.
    let mut wrong_size = d1;
    wrong_size.size += 1;
    assert!(!store.has_blob(&wrong_size));
}

#[test]
fn put_blob_file_copies_the_file() {
    let (dir, store) = new_store();
    let src = dir.path().join("input.bin");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 256) as u8).collect();
    fs::write(&src, &data).expect("write");
    let d = store.put_blob_file(&src).expect("put file");
    assert_eq!(d.size, data.len() as u64);
    assert_eq!(
        fs::read(store.blob_path(&d).expect("present")).expect("read"),
        data
    );
    let err = store
        .put_blob_file(&dir.path().join("missing"))
        .expect_err("missing file");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn wrong_expected_hash_keeps_nothing() {
    let (_dir, store) = new_store();
    let good = b"the real package".to_vec();
    let bad = b"the real packagf".to_vec();
    let want = Digest::of_bytes(Algorithm::Sha256, &good);

    let err = store
        .put_blob_expecting(&mut &bad[..], want)
        .expect_err("corrupt download must fail");
    let actual = Digest::of_bytes(Algorithm::Sha256, &bad);
    match &err {
        StoreError::HashMismatch {
            expected,
            actual: a,
        } => {
            assert!(expected.matches(&want));
            assert_eq!(*a, actual);
        }
        other => panic!("wrong error {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&want.hex()) && msg.contains(&actual.hex()),
        "{msg}"
    );
    assert!(!store.has_blob(&actual));
    assert!(!store.has_blob(&want));
    assert!(tmp_entries(&store).is_empty(), "{:?}", tmp_entries(&store));
    let sha_dir = store.root().join("blobs/sha256");
    assert_eq!(fs::read_dir(&sha_dir).expect("ls").count(), 0);

    // Right hash, wrong size: also refused.
    let exp = Expected::sha256_hex(&want.hex()).expect("hex").with_size(5);
    assert!(matches!(
        store.put_blob_expecting(&mut &good[..], exp),
        Err(StoreError::HashMismatch { .. })
    ));
    assert!(tmp_entries(&store).is_empty());

    // The right content, expected by an upper-case hex SHA-256 as some
    // indices print it, is stored under sha256.
    let exp = Expected::sha256_hex(&want.hex().to_uppercase()).expect("hex");
    let d = store
        .put_blob_expecting(&mut &good[..], exp)
        .expect("good download");
    assert_eq!(d, want);
    assert!(store
        .blob_path(&want)
        .expect("present")
        .starts_with(&sha_dir));
    assert!(Expected::sha256_hex("abc").is_err());
}

#[test]
fn verify_blob_detects_corruption() {
    let (_dir, store) = new_store();
    let d = store.put_blob_reader(&mut &b"12345678"[..]).expect("put");
    let p = store.blob_path(&d).expect("present");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(&p, b"12345679").expect("corrupt it");
    match store.verify_blob(&d) {
        Err(StoreError::BlobCorrupt {
            expected, actual, ..
        }) => {
            assert_eq!(expected, d);
            assert_eq!(actual, Digest::of_bytes(Algorithm::Blake3, b"12345679"));
        }
        other => panic!("corruption not detected: {other:?}"),
    }
}

#[test]
fn a_failing_reader_leaves_no_temp_file() {
    struct Broken(usize);
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("network went away"));
            }
            self.0 -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }
    let (_dir, store) = new_store();
    let err = store
        .put_blob_reader(&mut Broken(3))
        .expect_err("must fail");
    assert!(matches!(err, StoreError::Read(_)), "{err:?}");
    assert!(err.to_string().contains("network went away"));
    assert!(tmp_entries(&store).is_empty());
}

// -------------------------------------------------------------------- trees

#[test]
fn publish_tree_is_atomic_and_the_second_publisher_loses_cleanly() {
    let (_dir, store) = new_store();
    let t1 = store.begin_tree().expect("begin");
    assert!(t1.path().starts_with(store.root().join("tmp")));
    fs::write(t1.path().join("first"), "1").expect("write");
    let published = t1.publish("layer-a").expect("publish");
    assert_eq!(published, store.root().join("trees/layer-a"));
    assert_eq!(
        fs::read_to_string(published.join("first")).expect("read"),
        "1"
    );
    assert_eq!(store.tree_path("layer-a"), Some(published.clone()));
    assert!(tmp_entries(&store).is_empty());

    // A second writer of the same tree (same name, same content by
    // construction; different here to tell them apart) loses.
    let t2 = store.begin_tree().expect("begin");
    fs::write(t2.path().join("second"), "2").expect("write");
    let src2 = t2.path().to_path_buf();
    let again = t2.publish("layer-a").expect("second publish");
    assert_eq!(again, published);
    assert!(published.join("first").exists());
    assert!(!published.join("second").exists());
    assert!(!src2.exists());
    assert!(tmp_entries(&store).is_empty());

    // An empty published tree is not replaced either (a plain rename would).
    let e1 = store.begin_tree().expect("begin");
    e1.publish("empty").expect("publish empty");
    let src = store.tmp_path("by-someone-else");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("x"), "x").expect("write");
    let p = store
        .publish_tree(&src, "empty")
        .expect("publish over empty");
    assert_eq!(fs::read_dir(&p).expect("ls").count(), 0);
    assert!(!src.exists());

    // Bad names and non-directories are refused.
    let t3 = store.begin_tree().expect("begin");
    assert!(matches!(
        t3.publish("../evil"),
        Err(StoreError::BadName { .. })
    ));
    assert!(
        tmp_entries(&store).is_empty(),
        "failed publish left its tree"
    );
    let f = store.tmp_path("file");
    fs::write(&f, "x").expect("write");
    assert!(matches!(
        store.publish_tree(&f, "file"),
        Err(StoreError::NotATree(_))
    ));
    fs::remove_file(&f).expect("rm");
    assert_eq!(store.tree_path(".."), None);
    assert_eq!(store.tree_path("nope"), None);
}

#[test]
fn concurrent_publishers_agree_on_one_tree() {
    let (_dir, store) = new_store();
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let t = store.begin_tree().expect("begin");
                fs::create_dir(t.path().join("sub")).expect("mkdir");
                fs::write(t.path().join("sub/who"), format!("{i}")).expect("write");
                barrier.wait();
                t.publish("shared").expect("publish")
            })
        })
        .collect();
    let paths: Vec<PathBuf> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert!(paths.iter().all(|p| *p == paths[0]));
    let who: u32 = fs::read_to_string(paths[0].join("sub/who"))
        .expect("read")
        .parse()
        .expect("number");
    assert!(who < 6);
    assert!(tmp_entries(&store).is_empty(), "{:?}", tmp_entries(&store));
    assert_eq!(
        fs::read_dir(store.root().join("trees"))
            .expect("ls")
            .count(),
        1
    );
}

#[test]
fn dropped_tree_builder_removes_its_directory() {
    let (_dir, store) = new_store();
    let t = store.begin_tree().expect("begin");
    let p = t.path().to_path_buf();
    fs::create_dir(p.join("ro")).expect("mkdir");
    fs::write(p.join("ro/f"), "x").expect("write");
    fs::set_permissions(p.join("ro"), fs::Permissions::from_mode(0o555)).expect("chmod");
    drop(t);
    assert!(!p.exists());
    let t = store.begin_tree().expect("begin");
    let p = t.path().to_path_buf();
    t.abandon().expect("abandon");
    assert!(!p.exists());
}

#[test]
fn tree_size_counts_files_and_links_without_following() {
    let (dir, store) = new_store();
    let outside = dir.path().join("big");
    fs::write(&outside, vec![0u8; 100_000]).expect("write");
    let t = store.begin_tree().expect("begin");
    fs::create_dir(t.path().join("d")).expect("mkdir");
    fs::write(t.path().join("d/a"), vec![1u8; 1000]).expect("write");
    fs::hard_link(t.path().join("d/a"), t.path().join("a-again")).expect("link");
    fs::write(t.path().join("b"), vec![2u8; 24]).expect("write");
    let target = outside.to_str().expect("utf8");
    symlink(target, t.path().join("link")).expect("symlink");
    t.publish("sized").expect("publish");
    let size = store.tree_size("sized").expect("size");
    assert_eq!(size, 1000 + 24 + target.len() as u64);
    assert!(matches!(
        store.tree_size("absent"),
        Err(StoreError::TreeMissing(_))
    ));
}

#[test]
fn has_output_checks_blobs_and_trees() {
    let (_dir, store) = new_store();
    let d = store.put_blob_reader(&mut &b"out"[..]).expect("put");
    assert!(store.has_output(&NodeOutput::Blob(d)));
    assert!(!store.has_output(&NodeOutput::Blob(Digest::of_bytes(Algorithm::Blake3, b"x"))));
    assert!(!store.has_output(&NodeOutput::Tree("t".into())));
    store
        .begin_tree()
        .expect("begin")
        .publish("t")
        .expect("publish");
    assert!(store.has_output(&NodeOutput::Tree("t".into())));
}

// ----------------------------------------------------------- crash cleanup

#[test]
fn stale_tmp_entries_of_dead_writers_are_removed_live_ones_kept() {
    let (dir, store) = new_store();
    let root = store.root().to_path_buf();
    let writers = root.join("locks/writers");
    let tmp = root.join("tmp");

    // Something outside the store that a careless cleaner would destroy.
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(outside.join("keep-me"), "precious").expect("write");

    // A dead writer: its lock file exists but nobody holds the flock.
    let dead = "999999-deadbeefdeadbeef";
    File::create(writers.join(format!("{dead}.lock"))).expect("lock file");
    let dead_tree = tmp.join(format!("{dead}.0.tree"));
    fs::create_dir_all(dead_tree.join("usr/bin")).expect("mkdir");
    fs::write(dead_tree.join("usr/bin/tool"), "#!/bin/sh\n").expect("write");
    fs::create_dir(dead_tree.join("locked")).expect("mkdir");
    fs::write(dead_tree.join("locked/inside"), "x").expect("write");
    fs::set_permissions(dead_tree.join("locked"), fs::Permissions::from_mode(0o000))
        .expect("chmod 000");
    fs::set_permissions(dead_tree.join("usr/bin"), fs::Permissions::from_mode(0o555))
        .expect("chmod 555");
    symlink(&outside, dead_tree.join("to-outside-dir")).expect("symlink");
    symlink(outside.join("keep-me"), dead_tree.join("to-outside-file")).expect("symlink");
    fs::set_permissions(&dead_tree, fs::Permissions::from_mode(0o500)).expect("chmod 500");
    let dead_blob = tmp.join(format!("{dead}.1.blob"));
    fs::write(&dead_blob, "half a blob").expect("write");
    // A writer whose lock file is gone altogether, and a name no writer makes.
    let orphan = tmp.join("424242-0123456789abcdef.3.blob");
    fs::write(&orphan, "orphan").expect("write");
    let junk = tmp.join("junk");
    fs::write(&junk, "junk").expect("write");

    // A live writer simulated by hand: its lock held by another open file
    // description (this test's).
    let live = "777-1111111111111111";
    let live_lock = flock_file(&writers.join(format!("{live}.lock")));
    let live_entry = tmp.join(format!("{live}.0.tree"));
    fs::create_dir(&live_entry).expect("mkdir");
    fs::write(live_entry.join("f"), "in progress").expect("write");

    // A live writer for real: another Store on the same root.
    let other = Store::open(&root).expect("second store");
    let other_entry = other.tmp_path("sandbox-output");
    fs::create_dir(&other_entry).expect("mkdir");
    // What a helper of that writer makes beside its entry (a download's
    // partial file): a dot and the entry's name.
    let other_entry_name = other_entry.file_name().unwrap().to_str().unwrap();
    let helper = tmp.join(format!(".{other_entry_name}.123.0.part"));
    fs::write(&helper, "half a download").expect("write");
    // And one of a writer that is gone.
    let dead_helper = tmp.join(format!(".{dead}.2.deb.99.0.part"));
    fs::write(&dead_helper, "half").expect("write");

    let reopened = Store::open(&root).expect("reopen");
    assert!(
        reopened.cleanup_warnings().is_empty(),
        "{:?}",
        reopened.cleanup_warnings()
    );
    assert!(!dead_tree.exists(), "dead writer's tree kept");
    assert!(!dead_blob.exists(), "dead writer's blob kept");
    assert!(!orphan.exists(), "orphan kept");
    assert!(!junk.exists(), "junk kept");
    assert!(helper.exists(), "a live writer's helper file removed");
    assert!(!dead_helper.exists(), "a dead writer's helper file kept");
    assert!(
        !writers.join(format!("{dead}.lock")).exists(),
        "dead lock file kept"
    );
    assert_eq!(
        fs::read_to_string(outside.join("keep-me")).expect("outside file survives"),
        "precious"
    );
    assert!(live_entry.join("f").exists(), "live writer's entry removed");
    assert!(writers.join(format!("{live}.lock")).exists());
    assert!(other_entry.exists(), "live store's entry removed");
    assert!(writers.join(format!("{}.lock", other.writer_id())).exists());

    // Once the writers are gone, their entries go at the next open.
    drop(live_lock);
    drop(other);
    drop(reopened);
    drop(store);
    let third = Store::open(&root).expect("open again");
    assert!(!live_entry.exists());
    assert!(!other_entry.exists());
    assert_eq!(tmp_entries(&third), Vec::<String>::new());
    let locks: Vec<_> = fs::read_dir(&writers)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    let mine = format!("{}.lock", third.writer_id());
    assert!(locks.iter().all(|n| *n == *mine), "{locks:?}");
    assert!(locks.iter().any(|n| *n == *mine));
}

/// Helper run in a child process by the tests below (ignored otherwise).
/// Modes: "lock" holds node lock "k" until a release file appears; "writer"
/// starts a tree and then hangs until killed.
#[test]
#[ignore = "run as a child process by other tests"]
fn child_helper() {
    let Ok(store_path) = std::env::var("COMB_CACHE_TEST_STORE") else {
        return;
    };
    let mode = std::env::var("COMB_CACHE_TEST_MODE").expect("mode");
    let signal = PathBuf::from(std::env::var("COMB_CACHE_TEST_SIGNAL").expect("signal"));
    let store = Store::open(&store_path).expect("child open");
    match mode.as_str() {
        "lock" => {
            let _lock = store.lock_node("k").expect("child lock");
            fs::write(&signal, "locked").expect("signal");
            wait_for(&signal.with_extension("release"), "release");
        }
        "writer" => {
            let t = store.begin_tree().expect("begin");
            fs::create_dir(t.path().join("etc")).expect("mkdir");
            fs::write(t.path().join("etc/half"), "written").expect("write");
            fs::write(&signal, t.path().to_str().expect("utf8")).expect("signal");
            // The parent kills us with SIGKILL long before this ends; the
            // limit only stops an orphan from living forever.
            std::mem::forget(t);
            thread::sleep(Duration::from_secs(120));
        }
        other => panic!("unknown mode {other}"),
    }
}

/// Kills the child if the test fails before it is done with it, so a failing
/// test leaves no process behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(store: &Path, mode: &str, signal: &Path) -> Child {
    let child = Command::new(std::env::current_exe().expect("current exe"))
        .args(["--exact", "child_helper", "--ignored", "--test-threads=1"])
        .env("COMB_CACHE_TEST_STORE", store)
        .env("COMB_CACHE_TEST_MODE", mode)
        .env("COMB_CACHE_TEST_SIGNAL", signal)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn child");
    Child(child)
}

#[test]
fn a_killed_writers_tree_is_removed_at_the_next_open() {
    let (dir, store) = new_store();
    let signal = dir.path().join("writer.signal");
    let mut child = spawn_child(store.root(), "writer", &signal);
    wait_for(&signal, "the child to start its tree");
    thread::sleep(Duration::from_millis(50));
    let entry = PathBuf::from(fs::read_to_string(&signal).expect("read signal"));
    assert!(entry.join("etc/half").exists());
    // While the child lives, an open keeps its entry.
    drop(Store::open(store.root()).expect("open"));
    assert!(entry.exists(), "a live writer's tree was removed");
    child.0.kill().expect("kill");
    child.0.wait().expect("wait");
    drop(Store::open(store.root()).expect("open"));
    assert!(!entry.exists(), "a killed writer's tree survived");
}

// -------------------------------------------------------------- node locks

#[test]
fn node_lock_excludes_a_second_holder_and_releases_on_drop() {
    let (_dir, store) = new_store();
    let first = store.lock_node("abc123").expect("lock");
    assert!(first.path().ends_with("locks/abc123.lock"));
    // Another open file description in the same process conflicts.
    assert!(store.try_lock_node("abc123").expect("try").is_none());
    let other = Store::open(store.root()).expect("second store");
    assert!(other.try_lock_node("abc123").expect("try").is_none());
    // A different key is independent.
    let _b = other.try_lock_node("other").expect("try").expect("free");
    drop(first);
    let again = store.try_lock_node("abc123").expect("try");
    assert!(again.is_some());
    assert!(matches!(
        store.lock_node("../x"),
        Err(StoreError::BadName { .. })
    ));
}

#[test]
fn blocking_node_lock_waits_for_the_holder_thread() {
    let (_dir, store) = new_store();
    let store = Arc::new(store);
    let held = store.lock_node("k").expect("lock");
    let released = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (store, released) = (Arc::clone(&store), Arc::clone(&released));
        thread::spawn(move || {
            let _l = store.lock_node("k").expect("lock in thread");
            released.load(Ordering::SeqCst)
        })
    };
    thread::sleep(Duration::from_millis(200));
    assert!(!waiter.is_finished(), "second holder did not wait");
    released.store(true, Ordering::SeqCst);
    drop(held);
    assert!(waiter.join().expect("thread"), "lock taken before release");
}

#[test]
fn node_lock_excludes_another_process() {
    let (dir, store) = new_store();
    let signal = dir.path().join("lock.signal");
    let mut child = spawn_child(store.root(), "lock", &signal);
    wait_for(&signal, "the child to take the lock");
    assert!(
        store.try_lock_node("k").expect("try").is_none(),
        "lock not exclusive across processes"
    );
    let release = signal.with_extension("release");
    let waiter = {
        let root = store.root().to_path_buf();
        let release = release.clone();
        thread::spawn(move || {
            let s = Store::open(&root).expect("open");
            let _l = s.lock_node("k").expect("blocking lock");
            release.exists()
        })
    };
    thread::sleep(Duration::from_millis(200));
    assert!(
        !waiter.is_finished(),
        "blocking lock did not wait for the other process"
    );
    fs::write(&release, "").expect("release");
    assert!(waiter.join().expect("thread"));
    assert!(child.0.wait().expect("wait").success());
    assert!(store.try_lock_node("k").expect("try").is_some());
}

// -------------------------------------------------------------------- index

fn node(kind: NodeKind, name: &str, desc: &str, created: i64) -> NodeRecord {
    let mut n = NodeRecord::new(
        kind,
        name,
        desc,
        NodeOutput::Tree(format!("t-{name}")),
        10,
        5,
    );
    n.created_at = created;
    n.last_used_at = created;
    n
}

#[test]
fn migrations_are_idempotent_and_wal_is_on() {
    let (_dir, store) = new_store();
    let a = store.open_index().expect("index");
    let b = store.open_index().expect("index again");
    assert_eq!(
        a.schema_version().expect("version"),
        MIGRATIONS.len() as i64
    );
    assert_eq!(
        b.schema_version().expect("version"),
        MIGRATIONS.len() as i64
    );
    assert_eq!(a.journal_mode().expect("mode"), "wal");
    drop((a, b));
    drop(Index::open(&store.root().join(INDEX_FILE)).expect("open directly"));
    // WAL is a property of the file: a plain connection sees it too.
    let conn = rusqlite::Connection::open(store.root().join(INDEX_FILE)).expect("sqlite");
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'
             AND name IN ('nodes', 'runs', 'events')",
            [],
            |r| r.get(0),
        )
        .expect("tables");
    assert_eq!(tables, 3);
}

#[test]
fn nodes_are_recorded_and_looked_up() {
    let (_dir, store) = new_store();
    let idx = store.open_index().expect("index");
    let d = Digest::of_bytes(Algorithm::Sha256, b"deb");
    let n = NodeRecord::new(
        NodeKind::Fetch,
        "hello_2.10",
        "sha256=x\n",
        NodeOutput::Blob(d),
        3,
        42,
    );
    assert_eq!(n.key, key_of("sha256=x\n"));
    assert!(idx.node(&n.key).expect("lookup").is_none());
    idx.record_node(&n).expect("record");
    let got = idx.node(&n.key).expect("lookup").expect("present");
    assert_eq!(got, n);
    assert_eq!(got.output, NodeOutput::Blob(d));

    // Upsert: recording the same key again replaces, not duplicates.
    let mut n2 = n.clone();
    n2.size = 4;
    idx.record_node(&n2).expect("upsert");
    assert_eq!(idx.node(&n.key).expect("lookup").expect("present").size, 4);
    assert_eq!(
        idx.nodes_named(NodeKind::Fetch, "hello_2.10", 10)
            .expect("named")
            .len(),
        1
    );

    // A key that is not the hash of the description is refused.
    let mut bad = n.clone();
    bad.key = "0".repeat(64);
    assert!(matches!(
        idx.record_node(&bad),
        Err(IndexError::KeyMismatch { .. })
    ));

    assert!(idx.touch_node(&n.key).expect("touch"));
    assert!(!idx.touch_node("absent").expect("touch"));
    assert!(idx.remove_node(&n.key).expect("remove"));
    assert!(idx.node(&n.key).expect("lookup").is_none());
}

#[test]
fn last_node_named_returns_the_newest() {
    let (_dir, store) = new_store();
    let idx = store.open_index().expect("index");
    let old = node(NodeKind::Build, "hello", "v=1\n", 1_000);
    let new = node(NodeKind::Build, "hello", "v=2\n", 2_000);
    let same_second = node(NodeKind::Build, "hello", "v=3\n", 2_000);
    let other_kind = node(NodeKind::PkgEnv, "hello", "v=4\n", 3_000);
    let other_name = node(NodeKind::Build, "world", "v=5\n", 4_000);
    for n in [&old, &new, &other_kind, &other_name] {
        idx.record_node(n).expect("record");
    }
    let last = idx
        .last_node_named(NodeKind::Build, "hello")
        .expect("q")
        .expect("some");
    assert_eq!(last.description, "v=2\n");
    // Ties within one second go to the later recording.
    idx.record_node(&same_second).expect("record");
    let last = idx
        .last_node_named(NodeKind::Build, "hello")
        .expect("q")
        .expect("some");
    assert_eq!(last.description, "v=3\n");
    // A node used again (a hit) is the newest: it is what the last run used.
    idx.touch_node(&old.key).expect("touch");
    let last = idx
        .last_node_named(NodeKind::Build, "hello")
        .expect("q")
        .expect("some");
    assert_eq!(last.description, "v=1\n");
    let all = idx.nodes_named(NodeKind::Build, "hello", 10).expect("all");
    let descs: Vec<&str> = all.iter().map(|n| n.description.as_str()).collect();
    assert_eq!(descs, ["v=1\n", "v=3\n", "v=2\n"]);
    assert!(idx
        .last_node_named(NodeKind::Index, "hello")
        .expect("q")
        .is_none());
}

#[test]
fn runs_and_events() {
    let (_dir, store) = new_store();
    let idx = store.open_index().expect("index");
    let r1 = idx.begin_run("comb build hello", "/repo").expect("run");
    let r2 = idx.begin_run("comb build --all", "/repo").expect("run");
    assert_ne!(r1, r2);
    let hit = Event::new("k1", NodeKind::Fetch, "hello.deb", EventStatus::Hit);
    let mut failed = Event::new("k2", NodeKind::Build, "hello", EventStatus::Failed);
    failed.reason = Some("dpkg-buildpackage exited with status 2".into());
    failed.duration_ms = 1234;
    idx.record_event(r1, &hit).expect("event");
    idx.record_event(r1, &failed).expect("event");
    let skipped = Event::new("k3", NodeKind::Build, "world", EventStatus::Skipped);
    idx.record_event(r2, &skipped).expect("event");

    assert_eq!(idx.events(r1).expect("events"), vec![hit, failed]);
    assert_eq!(idx.events(r2).expect("events"), vec![skipped]);
    // A failed node is an event, never a node.
    assert!(idx.node("k2").expect("lookup").is_none());
    // Events must belong to a run (foreign keys are on).
    let orphan = Event::new("k", NodeKind::Build, "x", EventStatus::Built);
    assert!(idx.record_event(RunId(9_999), &orphan).is_err());

    idx.finish_run(r1, RunStatus::Failed).expect("finish");
    assert!(idx.finish_run(RunId(9_999), RunStatus::Success).is_err());
    let runs = idx.runs(10).expect("runs");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].id, r2);
    assert_eq!(runs[0].status, RunStatus::Running);
    assert_eq!(runs[0].finished_at, None);
    assert_eq!(runs[1].id, r1);
    assert_eq!(runs[1].status, RunStatus::Failed);
    assert_eq!(runs[1].command, "comb build hello");
    assert!(runs[1].finished_at.is_some());
    assert_eq!(idx.runs(1).expect("runs").len(), 1);
    let json = serde_json::to_value(&runs[1]).expect("json");
    assert_eq!(json["status"], "failed");
}

#[test]
fn hits_are_recorded_at_once_and_mark_their_nodes_used() {
    let (_dir, store) = new_store();
    let idx = store.open_index().expect("index");
    let a = node(NodeKind::Build, "a", "[a]\n", 100);
    let b = node(NodeKind::Build, "b", "[b]\n", 100);
    idx.record_node(&a).expect("a");
    idx.record_node(&b).expect("b");
    let run = idx.begin_run("comb build", "/repo").expect("run");
    let hits: Vec<Event> = (0..250)
        .map(|i| Event::new(&a.key, NodeKind::Build, format!("a{i}"), EventStatus::Hit))
        .collect();
    idx.batch(|i| i.record_hits(run, &hits)).expect("hits");
    assert_eq!(idx.events(run).expect("events"), hits);
    let now = unix_now();
    let used = idx.node(&a.key).expect("a").expect("a").last_used_at;
    assert!(used >= now - 5, "{used} vs {now}");
    // b had no hit: its last use stays.
    assert_eq!(idx.node(&b.key).expect("b").expect("b").last_used_at, 100);
    // Only hits go this way.
    let built = Event::new(&b.key, NodeKind::Build, "b", EventStatus::Built);
    assert!(idx.batch(|i| i.record_hits(run, &[built])).is_err());
    assert_eq!(idx.events(run).expect("events").len(), 250);
    // A removed node takes its use with it (foreign keys cascade).
    assert!(idx.remove_node(&a.key).expect("remove"));
    idx.record_node(&a).expect("again");
    assert_eq!(idx.node(&a.key).expect("a").expect("a").last_used_at, 100);
}

#[test]
fn an_index_of_schema_2_keeps_its_nodes_last_use() {
    let dir = TempDir::new().expect("tmp");
    let path = dir.path().join("index.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).expect("sqlite");
        conn.execute_batch(MIGRATIONS[0]).expect("1");
        conn.execute_batch(MIGRATIONS[1]).expect("2");
        conn.pragma_update(None, "user_version", 2)
            .expect("version");
        conn.execute(
            "INSERT INTO nodes (kind, name, key, description, output, size, created_at,
                                duration_ms, last_used_at)
             VALUES ('build', 'a', ?1, '[a]\n', 't-a', 1, 10, 5, 77)",
            [key_of("[a]\n")],
        )
        .expect("node");
    }
    let idx = Index::open(&path).expect("migrated");
    assert_eq!(
        idx.schema_version().expect("version"),
        MIGRATIONS.len() as i64
    );
    let a = idx.node(&key_of("[a]\n")).expect("lookup").expect("kept");
    assert_eq!(
        (a.name.as_str(), a.last_used_at, a.duration_ms),
        ("a", 77, 5)
    );
    // Recorded before references were: the engine fills them in once.
    let old: Vec<String> = idx
        .nodes_without_refs()
        .expect("old nodes")
        .into_iter()
        .map(|n| n.key)
        .collect();
    assert_eq!(old, std::slice::from_ref(&a.key));
    idx.set_node_refs(&a.key, &[NodeRef::Node("b".repeat(64))])
        .expect("refs");
    assert!(idx.nodes_without_refs().expect("old nodes").is_empty());
}

/// Garbage collection keeps what a kept node names besides its output,
/// and nothing else; it reads the references, not the blobs.
#[test]
fn gc_keeps_what_a_kept_node_names() {
    let (_dir, store) = new_store();
    let idx = store.open_index().expect("index");
    let blob = |text: &str| store.put_blob_reader(&mut text.as_bytes()).expect("blob");
    let (output, package, log, stray) = (
        blob("manifest"),
        blob("package"),
        blob("log"),
        blob("stray"),
    );
    let kept = NodeRecord::new(
        NodeKind::Build,
        "kept",
        "[kept]\n",
        NodeOutput::Blob(output),
        1,
        1,
    );
    let gone = NodeRecord::new(
        NodeKind::Build,
        "gone",
        "[gone]\n",
        NodeOutput::Blob(stray),
        1,
        1,
    );
    let refs = [
        NodeRef::Blob {
            algorithm: package.algorithm,
            hex: package.hex(),
        },
        NodeRef::Log {
            algorithm: log.algorithm,
            hex: log.hex(),
        },
    ];
    idx.record_node_referencing(&kept, &refs).expect("kept");
    idx.record_node(&gone).expect("gone");
    let options = |pinned: &[&str]| gc::GcOptions {
        max_age_days: 0,
        max_size: None,
        dry_run: false,
        pinned: pinned.iter().map(|k| k.to_string()).collect(),
    };
    let report = gc::collect(&store, &idx, &options(&[&kept.key])).expect("gc");
    assert_eq!((report.nodes.len(), report.blobs), (1, 1), "{report:?}");
    for d in [output, package, log] {
        assert!(store.blob_path(&d).is_some(), "{d} was collected");
    }
    assert!(store.blob_path(&stray).is_none());
    let stats = gc::stats(&store, &idx, 10).expect("stats");
    assert_eq!(stats.size.get("logs"), Some(&3), "{stats:?}");
    let report = gc::collect(&store, &idx, &options(&[])).expect("gc");
    assert_eq!((report.nodes.len(), report.blobs), (1, 3), "{report:?}");
}

/// A tree layered on another is present only with it, and garbage
/// collection keeps the tree below while it keeps the one above, even
/// when the node that made the tree below is dropped.
#[test]
fn a_layered_tree_keeps_the_tree_below_it() {
    let (_dir, store) = new_store();
    let idx = store.open_index().expect("index");
    let tree = |name: &str, on: &[String]| {
        let t = store.begin_tree().expect("tree");
        std::fs::create_dir(t.path().join("0")).expect("layer dir");
        if !on.is_empty() {
            t.layer_on(on).expect("layer on");
        }
        t.publish(name).expect("publish");
        NodeOutput::Tree(name.to_string())
    };
    let below = NodeRecord::new(
        NodeKind::PkgEnv,
        "below",
        "[b]\n",
        tree("t-below", &[]),
        1,
        1,
    );
    let above = NodeRecord::new(
        NodeKind::PkgEnv,
        "above",
        "[a]\n",
        tree("t-above", &["t-below".to_string()]),
        1,
        1,
    );
    idx.record_node(&below).expect("below");
    idx.record_node(&above).expect("above");
    assert_eq!(
        store.tree_layered_on("t-above").expect("read"),
        vec!["t-below".to_string()]
    );
    assert!(store.has_output(&above.output));
    let options = |pinned: &[&str]| gc::GcOptions {
        max_age_days: 0,
        max_size: None,
        dry_run: false,
        pinned: pinned.iter().map(|k| k.to_string()).collect(),
    };
    let report = gc::collect(&store, &idx, &options(&[&above.key])).expect("gc");
    assert_eq!((report.nodes.len(), report.trees), (1, 0), "{report:?}");
    assert!(store.tree_path("t-below").is_some(), "the tree below went");
    assert!(store.has_output(&above.output));
    let report = gc::collect(&store, &idx, &options(&[])).expect("gc");
    assert_eq!(report.trees, 2, "{report:?}");
    // A tree whose base is gone is not a usable output.
    tree("t-orphan", &["t-missing".to_string()]);
    assert!(!store.has_output(&NodeOutput::Tree("t-orphan".into())));
    // Nor is one whose file names something that is not a tree name.
    tree("t-bad", &[]);
    std::fs::write(
        store
            .tree_path("t-bad")
            .expect("t-bad")
            .join(comb_cache::LAYERED_ON),
        "../../etc\n",
    )
    .expect("write");
    assert!(store.tree_layered_on("t-bad").is_err());
    assert!(!store.has_output(&NodeOutput::Tree("t-bad".into())));
}

#[test]
fn last_use_follows_a_shared_node_and_pins_are_kept() {
    let (_dir, store) = new_store();
    let idx = store.open_index().expect("index");
    // One pkg-env node, recorded under the first package's name, used by two.
    let shared = node(NodeKind::PkgEnv, "env-a", "[env]\n", 100);
    idx.record_node(&shared).expect("node");
    assert_eq!(
        idx.last_used(NodeKind::PkgEnv, "pkg-env:b")
            .expect("lookup"),
        None
    );
    idx.remember_use(NodeKind::PkgEnv, "pkg-env:b", &shared.key)
        .expect("remember");
    assert_eq!(
        idx.last_used(NodeKind::PkgEnv, "pkg-env:b")
            .expect("lookup"),
        Some(shared.clone())
    );
    // A batch of hits records their last use too.
    let run = idx.begin_run("comb build", "/repo").expect("run");
    let other = node(NodeKind::PkgEnv, "env-c", "[other]\n", 100);
    idx.record_node(&other).expect("node");
    let hit = Event::new(&other.key, NodeKind::PkgEnv, "pkg-env:b", EventStatus::Hit);
    idx.batch(|i| i.record_hits(run, &[hit])).expect("hits");
    assert_eq!(
        idx.last_used(NodeKind::PkgEnv, "pkg-env:b")
            .expect("lookup")
            .map(|n| n.key),
        Some(other.key.clone())
    );
    // Pins.
    idx.remember_pin(b"/r/comb.lock", &shared.key).expect("pin");
    assert_eq!(
        idx.pins().expect("pins"),
        vec![(b"/r/comb.lock".to_vec(), shared.key.clone())]
    );
    idx.forget_pin(b"/r/comb.lock").expect("forget");
    assert!(idx.pins().expect("pins").is_empty());
}

#[test]
fn a_run_graph_is_stored_once_however_many_runs_have_it() {
    let (_dir, store) = new_store();
    let idx = store.open_index().expect("index");
    let graph: std::collections::BTreeMap<String, Vec<String>> = [
        ("a".to_string(), vec![]),
        ("b".to_string(), vec!["a".to_string()]),
    ]
    .into();
    let runs: Vec<RunId> = (0..3)
        .map(|_| idx.begin_run("comb build", "/repo").expect("run"))
        .collect();
    for r in &runs {
        idx.set_run_graph(*r, &graph).expect("graph");
    }
    for r in &runs {
        assert_eq!(idx.run_graph(*r).expect("graph"), graph);
    }
    let conn = rusqlite::Connection::open(store.root().join(INDEX_FILE)).expect("sqlite");
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM graphs", [], |r| r.get(0))
        .expect("count");
    assert_eq!(stored, 1);
    assert!(idx.run_graph(RunId(9_999)).expect("none").is_empty());
}

#[test]
fn shortcuts_lead_to_recorded_nodes_only() {
    let (_dir, store) = new_store();
    let idx = store.open_index().expect("index");
    let a = node(NodeKind::Build, "a", "[a]\n", 100);
    idx.record_node(&a).expect("a");
    assert_eq!(idx.shortcut("s1").expect("lookup"), None);
    idx.remember_shortcut("s1", &a.key).expect("remember");
    assert_eq!(
        idx.shortcut("s1").expect("lookup"),
        Some((a.key.clone(), a.output.clone()))
    );
    // Once the node is forgotten, the shortcut leads nowhere.
    idx.remove_node(&a.key).expect("remove");
    assert_eq!(idx.shortcut("s1").expect("lookup"), None);
}

#[test]
fn durations_are_those_of_the_newest_node_of_each_name() {
    let (_dir, store) = new_store();
    let idx = store.open_index().expect("index");
    for (name, desc, created, ms) in [
        ("a", "[a1]\n", 100, 7),
        ("a", "[a2]\n", 300, 9),
        ("a", "[a3]\n", 200, 8),
        ("b", "[b]\n", 100, 4),
    ] {
        let mut n = node(NodeKind::Build, name, desc, created);
        n.duration_ms = ms;
        idx.record_node(&n).expect("node");
    }
    idx.record_node(&node(NodeKind::PkgEnv, "c", "[c]\n", 100))
        .expect("other kind");
    let d = idx.durations(NodeKind::Build).expect("durations");
    assert_eq!(d.len(), 2);
    assert_eq!(d["a"], 9);
    assert_eq!(d["b"], 4);
}

#[test]
fn file_digests_are_read_by_directory() {
    let (_dir, store) = new_store();
    let idx = store.open_index().expect("index");
    let stat = FileStat {
        size: 1,
        mtime_ns: 2,
        ctime_ns: 3,
        inode: 4,
    };
    for path in ["/r/a/x", "/r/a/y/z", "/r/a0", "/r/a-b/x", "/r/b"] {
        idx.remember_file_digest(path.as_bytes(), &stat, &format!("d{path}"))
            .expect("remember");
    }
    let mut below: Vec<String> = idx
        .file_digests_under(b"/r/a")
        .expect("read")
        .into_iter()
        .map(|(p, s, d)| {
            assert_eq!(s, stat);
            assert_eq!(d, format!("d{}", String::from_utf8_lossy(&p)));
            String::from_utf8(p).expect("utf-8")
        })
        .collect();
    below.sort();
    assert_eq!(below, ["/r/a/x", "/r/a/y/z"]);
}

#[test]
fn two_connections_write_concurrently() {
    let (_dir, store) = new_store();
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|t| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            thread::spawn(move || {
                let idx = store.open_index().expect("index");
                barrier.wait();
                let run = idx.begin_run(&format!("writer {t}"), "/repo").expect("run");
                for i in 0..200 {
                    let desc = format!("writer={t}\ni={i}\n");
                    let n = NodeRecord::new(
                        NodeKind::Build,
                        format!("p{t}-{i}"),
                        desc,
                        NodeOutput::Tree(format!("t{t}-{i}")),
                        1,
                        1,
                    );
                    idx.record_node(&n).expect("record under contention");
                    idx.record_event(
                        run,
                        &Event::new(n.key, NodeKind::Build, n.name, EventStatus::Built),
                    )
                    .expect("event under contention");
                }
                idx.finish_run(run, RunStatus::Success).expect("finish");
                run
            })
        })
        .collect();
    let runs: Vec<RunId> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let idx = store.open_index().expect("index");
    for r in runs {
        assert_eq!(idx.events(r).expect("events").len(), 200);
    }
    let conn = rusqlite::Connection::open(store.root().join(INDEX_FILE)).expect("sqlite");
    let count: i64 = conn
        .query_row("SELECT count(*) FROM nodes", [], |r| r.get(0))
        .expect("count");
    assert_eq!(count, 400);
}

// -------------------------------------------------------------- descriptions

#[test]
fn description_is_canonical() {
    let text = Description::new("pkg-env")
        .field("base", "blake3:aa:1")
        .map(
            "deps",
            [("libc6", "2.36"), ("debhelper", "13"), ("a=b", "x\ny\\z")],
        )
        .list("cmd", ["make", "install"])
        .map("empty", Vec::<(String, String)>::new())
        .field("ctl", "tab\there\u{1}")
        .finish()
        .expect("description");
    assert_eq!(
        text,
        "comb-description=1\n\
         stage=pkg-env\n\
         base=blake3:aa:1\n\
         deps#=3\n\
         deps.a\\x3db=x\\ny\\\\z\n\
         deps.debhelper=13\n\
         deps.libc6=2.36\n\
         cmd#=2\n\
         cmd.0=make\n\
         cmd.1=install\n\
         empty#=0\n\
         ctl=tab\\there\\x01\n"
    );
    // Map order does not matter; list order does.
    let a = Description::new("s")
        .map("m", [("x", 1), ("y", 2)])
        .key()
        .expect("key");
    let b = Description::new("s")
        .map("m", [("y", 2), ("x", 1)])
        .key()
        .expect("key");
    assert_eq!(a, b);
    let c = Description::new("s").list("l", [1, 2]).key().expect("key");
    let d = Description::new("s").list("l", [2, 1]).key().expect("key");
    assert_ne!(c, d);
    assert_eq!(key_of("x"), blake3_hex("x"));
    assert_eq!(key_of(&text).len(), 64);

    // Values survive parsing.
    let pairs = parse_description(&text).expect("parse");
    assert!(pairs.contains(&("deps.a\\x3db".to_string(), "x\ny\\z".to_string())));
    assert!(pairs.contains(&("ctl".to_string(), "tab\there\u{1}".to_string())));
}

fn blake3_hex(s: &str) -> String {
    // Independent of key_of: the digest type's own BLAKE3.
    Digest::of_bytes(Algorithm::Blake3, s.as_bytes()).hex()
}

#[test]
fn description_errors() {
    let e = Description::new("s")
        .field("Bad Key", 1)
        .finish()
        .expect_err("bad key");
    assert_eq!(e, DescriptionError::BadKey("Bad Key".into()));
    let e = Description::new("s")
        .field("a", 1)
        .field("a", 2)
        .finish()
        .expect_err("dup");
    assert_eq!(e, DescriptionError::DuplicateKey("a".into()));
    let e = Description::new("s")
        .field("stage", "x")
        .finish()
        .expect_err("reserved");
    assert_eq!(e, DescriptionError::DuplicateKey("stage".into()));
    let e = Description::new("s")
        .map("m", [("k", 1), ("k", 2)])
        .finish()
        .expect_err("dup entry");
    assert!(matches!(e, DescriptionError::DuplicateEntry { .. }));
    assert!(Description::new("s").field("a.b", 1).finish().is_err());
    assert!(parse_description("no equals sign\n").is_err());
    assert!(parse_description("a=bad \\q escape\n").is_err());
}

#[test]
fn description_diff_names_the_changed_inputs() {
    let old = Description::new("build")
        .field("env", "blake3:11:1")
        .map("deps", [("libfoo", "1.0"), ("gone", "1")])
        .finish()
        .expect("old");
    let new = Description::new("build")
        .field("env", "blake3:11:1")
        .map("deps", [("libfoo", "1.1"), ("added", "2")])
        .finish()
        .expect("new");
    let changes = diff_descriptions(&old, &new).expect("diff");
    let ch = |k: &str, o: Option<&str>, n: Option<&str>| Change {
        key: k.into(),
        old: o.map(Into::into),
        new: n.map(Into::into),
    };
    assert_eq!(
        changes,
        vec![
            ch("deps.added", None, Some("2")),
            ch("deps.libfoo", Some("1.0"), Some("1.1")),
            ch("deps.gone", Some("1"), None),
        ]
    );
    assert!(diff_descriptions(&old, &old).expect("diff").is_empty());
}
