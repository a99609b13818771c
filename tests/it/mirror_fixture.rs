//! The test mirror (`tests/mirror/mod.rs`) checked on its own: it is signed
//! and hashed the way a Debian mirror is, its tamper helpers break what
//! they should, and comb's sandbox can bootstrap its busybox Debian by hand
//! the way comb's `base-install`, `base-build` and `pkg-env` stages will.
//! The sandbox runs need root, like CI.

use crate::mirror;
use crate::root;

use mirror::{shared, PackageSpec, TestMirror, BUILDER_ID};
use root::is_root;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

const COMB: &str = env!("CARGO_BIN_EXE_comb");
/// How comb runs dpkg in the layer: its own shell, a fixed PATH.
const PATH: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

/// A finished `comb sandbox run`.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    what: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\nexit {}\n--- stdout\n{}--- stderr\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

/// `comb sandbox run ARGS -- /bin/sh -c SCRIPT`, with comb's environment for dpkg.
fn sandbox(args: &[OsString], script: &str) -> Run {
    let mut cmd = Command::new(COMB);
    cmd.args(["sandbox", "run", "--timeout", "60"])
        .args(["--env", PATH, "--env", "DEBIAN_FRONTEND=noninteractive"])
        .args(args)
        .args(["--", "/bin/sh", "-c", script])
        .stdin(Stdio::null());
    let what = format!("{cmd:?}");
    let out = cmd.output().expect("starting comb");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        what,
    }
}

/// `--as WHO`, then `--layer L` for each layer.
fn args(who: &str, layers: &[&Path]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--as".into(), who.into()];
    for layer in layers {
        args.push("--layer".into());
        args.push(layer.into());
    }
    args
}

fn bind_debs(args: &mut Vec<OsString>, debs: &Path) {
    args.push("--bind".into());
    args.push(format!("{}:/.comb/debs", debs.display()).into());
}

fn keep(args: &mut Vec<OsString>, dir: &Path) {
    args.push("--keep-upper".into());
    args.push(dir.into());
}

/// A directory holding (hard links to) the .debs, to bind at `/.comb/debs`.
fn debs_dir(dir: &Path, debs: &[&mirror::MirrorPackage]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for p in debs {
        let to = dir.join(p.path.file_name().unwrap());
        if std::fs::hard_link(&p.path, &to).is_err() {
            std::fs::copy(&p.path, &to).unwrap();
        }
    }
    dir.to_path_buf()
}

/// What C prepares before unpacking: merged-/usr links and dpkg's database.
fn prepare_layer(layer: &Path) {
    for dir in [
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib64",
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
    ] {
        std::fs::create_dir_all(layer.join(dir)).unwrap();
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(target, layer.join(link)).unwrap();
    }
    for file in ["status", "available"] {
        std::fs::write(layer.join("var/lib/dpkg").join(file), "").unwrap();
    }
}

/// Unpacks a .deb's data into `layer` on the host. `dpkg-deb -x` would
/// replace the layer's `bin -> usr/bin` link by a directory (GNU tar's
/// default), so its tar stream goes through `tar --keep-directory-symlink`.
fn unpack_on_host(deb: &Path, layer: &Path) {
    let mut tarfile = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = Command::new("tar")
        .args(["-x", "--keep-directory-symlink", "-C"])
        .arg(layer)
        .stdin(tarfile.stdout.take().unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "unpacking {}", deb.display());
    assert!(
        tarfile.wait().unwrap().success(),
        "dpkg-deb --fsys-tarfile {}",
        deb.display()
    );
}

/// The paragraphs of a dpkg status file: (package, version, status).
fn status_of(layer: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(layer.join("var/lib/dpkg/status")).unwrap();
    text.split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let field = |name: &str| {
                p.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap_or_default()
                    .to_string()
            };
            (field("Package"), field("Version"), field("Status"))
        })
        .collect()
}

/// The base-install layers, made once: C's unpack, then R's `dpkg --install`.
struct Base {
    /// Prepared by C and unpacked on the host.
    layer: PathBuf,
    /// The upper layer kept from `dpkg --force-depends --install`.
    kept: PathBuf,
    install: Run,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let m = shared();
        let dir = mirror::scratch_dir().join("base");
        let layer = dir.join("layer");
        let kept = dir.join("kept");
        std::fs::create_dir_all(&layer).unwrap();
        let started = Instant::now();
        prepare_layer(&layer);
        let set = m.base_install();
        for p in &set {
            unpack_on_host(&p.path, &layer);
        }
        let unpacked = started.elapsed();
        let debs = debs_dir(&dir.join("debs"), &set);
        let mut a = args("root", &[&layer]);
        bind_debs(&mut a, &debs);
        keep(&mut a, &kept);
        let install = sandbox(&a, "dpkg --force-depends --install /.comb/debs/*.deb");
        eprintln!(
            "base-install by hand: host unpack {unpacked:.2?}, dpkg in the sandbox {:.2?}",
            started.elapsed() - unpacked
        );
        Base {
            layer,
            kept,
            install,
        }
    })
}

#[test]
fn the_mirror_is_signed_and_its_indices_hashed() {
    let m = shared();
    let dists = m.dists();
    let gpgv = |keyring: &Path| {
        Command::new("gpgv")
            .arg("--keyring")
            .arg(keyring)
            .arg(dists.join("InRelease"))
            .output()
            .unwrap()
    };
    let good = gpgv(&m.keyring);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let bad = gpgv(&m.other_keyring);
    assert!(!bad.status.success(), "the other key verified InRelease");
    let detached = Command::new("gpgv")
        .arg("--keyring")
        .arg(&m.keyring)
        .arg(dists.join("Release.gpg"))
        .arg(dists.join("Release"))
        .output()
        .unwrap();
    assert!(
        detached.status.success(),
        "{}",
        String::from_utf8_lossy(&detached.stderr)
    );

    // The signed text names every index with its size and hashes.
    let inrelease = std::fs::read_to_string(dists.join("InRelease")).unwrap();
    for (field, tool) in [("SHA256:", "sha256sum"), ("MD5Sum:", "md5sum")] {
        for name in [m.index_name(), format!("{}.xz", m.index_name())] {
            let path = dists.join(&name);
            let line = inrelease
                .split(field)
                .nth(1)
                .unwrap()
                .lines()
                .skip(1)
                .take_while(|l| l.starts_with(' '))
                .find(|l| l.ends_with(&format!(" {name}")))
                .unwrap_or_else(|| panic!("no {name} under {field} in\n{inrelease}"));
            let words: Vec<&str> = line.split_whitespace().collect();
            let out = Command::new(tool).arg(&path).output().unwrap();
            let sum = String::from_utf8(out.stdout).unwrap();
            assert_eq!(
                words[0],
                sum.split_whitespace().next().unwrap(),
                "{field} {name}"
            );
            assert_eq!(
                words[1],
                std::fs::metadata(&path).unwrap().len().to_string()
            );
        }
    }
    assert!(
        inrelease.contains("\nSuite: comb-test\n") && inrelease.contains("\nComponents: main\n")
    );
    assert!(inrelease.contains(&format!("\nArchitectures: {}\n", m.architecture)));

    // Packages.xz is Packages; every stanza's .deb is there with its size and sha256.
    let packages = std::fs::read_to_string(m.packages_index()).unwrap();
    let unxz = Command::new("xz")
        .args(["-dc"])
        .arg(m.packages_index().with_extension("xz"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(unxz.stdout).unwrap(), packages);
    let mut names = Vec::new();
    for stanza in packages.split("\n\n").filter(|s| !s.trim().is_empty()) {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("no {name} in\n{stanza}"))
        };
        let deb = m.dir.join(field("Filename"));
        assert_eq!(
            std::fs::metadata(&deb).unwrap().len().to_string(),
            field("Size")
        );
        let out = Command::new("sha256sum").arg(&deb).output().unwrap();
        assert!(String::from_utf8(out.stdout)
            .unwrap()
            .starts_with(field("SHA256")));
        // dpkg-deb agrees with the index on what the package is.
        let out = Command::new("dpkg-deb")
            .args(["--field"])
            .arg(&deb)
            .args(["Package", "Version"])
            .output()
            .unwrap();
        let control = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            control,
            format!(
                "Package: {}\nVersion: {}\n",
                field("Package"),
                field("Version")
            )
        );
        names.push(format!("{} {}", field("Package"), field("Version")));
    }
    for expected in [
        "busybox-base",
        "dpkg",
        "base-files",
        "base-passwd",
        "build-essential",
        "fakeroot",
        "dpkg-dev",
        "hello 2.10-1",
        "libgreeting 1.0-1",
        "libgreeting 2.0-1",
        "mail-user",
        "tiny-mta",
        "conflicting-a",
        "needs-missing",
    ] {
        assert!(
            names
                .iter()
                .any(|n| n == expected || n.starts_with(&format!("{expected} "))),
            "{expected} missing from {names:?}"
        );
    }
    let toml = m.distro_toml();
    assert!(toml.starts_with("[distro]\n") && toml.contains(&format!("mirror = \"{}\"", m.uri)));
    assert!(m.uri.starts_with("file:///"));
}

#[test]
fn the_tamper_helpers_break_what_they_should() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut m = TestMirror::build(dir.path());
    let dists = m.dists();
    let verify = |keyring: &Path| {
        Command::new("gpgv")
            .arg("--keyring")
            .arg(keyring)
            .arg(dists.join("InRelease"))
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    let sha256 = |path: &Path| {
        let out = Command::new("sha256sum").arg(path).output().unwrap();
        String::from_utf8(out.stdout).unwrap()[..64].to_string()
    };
    let listed = |m: &TestMirror| {
        let text = std::fs::read_to_string(m.dists().join("InRelease")).unwrap();
        let sha = text.split("SHA256:").nth(1).unwrap().to_string();
        sha.lines()
            .find(|l| l.ends_with(&format!(" {}", m.index_name())))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };

    // A new package: indexed, and signed again by the archive key with a later date.
    let date = |m: &TestMirror| {
        let text = std::fs::read_to_string(m.dists().join("Release")).unwrap();
        text.lines()
            .find(|l| l.starts_with("Date: "))
            .unwrap()
            .to_string()
    };
    let before = date(&m);
    m.add_package(
        &PackageSpec::new("hello", "2.11-1")
            .arch(&m.architecture.clone())
            .depends("libgreeting (>= 2.0)")
            .file("/usr/bin/hello", "#!/bin/sh\necho Hello again\n", 0o755),
    );
    assert!(verify(&m.keyring));
    assert_ne!(date(&m), before);
    assert_eq!(listed(&m), sha256(&m.packages_index()));
    let packages = std::fs::read_to_string(m.packages_index()).unwrap();
    assert!(packages.contains("Package: hello\nVersion: 2.10-1\n"));
    assert!(packages.contains("Package: hello\nVersion: 2.11-1\n"));
    assert_eq!(m.package("hello").spec.version, "2.11-1");

    // Packages no longer matches the signed hash.
    m.tamper_packages();
    assert!(verify(&m.keyring));
    assert_ne!(listed(&m), sha256(&m.packages_index()));
    let xz = m.packages_index().with_extension("xz");
    assert!(!std::fs::read_to_string(m.dists().join("InRelease"))
        .unwrap()
        .contains(&sha256(&xz)));

    // Signed by the key that is not in the keyring.
    m.sign_with_other_key();
    assert!(!verify(&m.keyring));
    assert!(verify(&m.other_keyring));

    // Same size, other bytes.
    let deb = m.package("hello").path.clone();
    let (size, sum) = (std::fs::metadata(&deb).unwrap().len(), sha256(&deb));
    assert_eq!(m.corrupt_deb("hello"), deb);
    assert_eq!(std::fs::metadata(&deb).unwrap().len(), size);
    assert_ne!(sha256(&deb), sum);
    assert_ne!(sha256(&deb), m.package("hello").sha256);
}

#[test]
fn the_base_system_bootstraps_and_hello_runs_as_builder() {
    if !is_root() {
        return;
    }
    let m = shared();
    let base = base();
    assert_eq!(base.install.code, 0, "{}", base.install);
    assert!(
        base.install.stdout.contains("Setting up base-files"),
        "{}",
        base.install
    );

    // Merged /usr survived both unpacks: /bin/sh (shipped under /bin/)
    // is in usr/bin, and the kept layer has no bin directory of its own.
    let layer_bin = std::fs::symlink_metadata(base.layer.join("bin")).unwrap();
    assert!(layer_bin.file_type().is_symlink());
    assert!(std::fs::symlink_metadata(base.layer.join("usr/bin/sh")).is_ok());
    if let Ok(kept_bin) = std::fs::symlink_metadata(base.kept.join("bin")) {
        assert!(!kept_bin.is_dir(), "the sandbox's dpkg made a real /bin");
    }

    // The maintainer script ran inside, as R (uid 0), with dpkg's argument.
    let marker = base.kept.join("var/lib/comb-test/base-files.postinst");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "uid=0 configure\n"
    );
    // ... and gave the builder its home (uid 1000 inside is 1000 on disk).
    let home = std::fs::metadata(base.kept.join("home/builder")).unwrap();
    assert_eq!((home.uid(), home.gid()), (BUILDER_ID, BUILDER_ID));

    // Every package of the install set is installed, in dpkg's own format.
    let status = status_of(&base.kept);
    for p in m.base_install() {
        assert!(
            status.contains(&(
                p.spec.name.clone(),
                p.spec.version.clone(),
                "install ok installed".to_string()
            )),
            "{} not installed: {status:?}",
            p.spec.name
        );
        assert!(base
            .kept
            .join(format!("var/lib/dpkg/info/{}.list", p.spec.name))
            .exists());
    }
    assert_eq!(status.len(), m.base_install().len(), "{status:?}");
    let names: Vec<&String> = status.iter().map(|(name, _, _)| name).collect();
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "not sorted as dpkg does: {names:?}"
    );
    // The host's real dpkg-query reads that database.
    let admin = mirror::scratch_dir().join("admin-copy");
    std::fs::create_dir_all(admin.join("info")).unwrap();
    std::fs::create_dir_all(admin.join("updates")).unwrap();
    std::fs::copy(base.kept.join("var/lib/dpkg/status"), admin.join("status")).unwrap();
    let out = Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.display()))
        .args([
            "--show",
            "--showformat=${Package} ${Version} ${db:Status-Abbrev}\n",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(listed.contains("busybox-base 1.35.0-1 ii \n"), "{listed}");
    assert!(listed.contains("base-files 12.4-comb1 ii \n"), "{listed}");

    // pkg-env: hello and the newer libgreeting, without --force-depends.
    let dir = tempfile::tempdir_in(mirror::scratch_dir()).unwrap();
    let kept2 = dir.path().join("kept2");
    let debs = debs_dir(
        &dir.path().join("debs"),
        &[
            m.package_version("hello", "2.10-1"),
            m.package_version("libgreeting", "2.0-1"),
        ],
    );
    let mut a = args("root", &[&base.layer, &base.kept]);
    bind_debs(&mut a, &debs);
    keep(&mut a, &kept2);
    let started = Instant::now();
    let run = sandbox(&a, "dpkg --install /.comb/debs/*.deb");
    eprintln!("pkg-env by hand: {:.2?}", started.elapsed());
    assert_eq!(run.code, 0, "{run}");
    let status = status_of(&kept2);
    for (name, version) in [("hello", "2.10-1"), ("libgreeting", "2.0-1")] {
        let entry = (name.into(), version.into(), "install ok installed".into());
        assert!(status.contains(&entry), "{name} {version}: {status:?}");
    }

    // The builder runs it.
    let a = args("builder", &[&base.layer, &base.kept, &kept2]);
    let run = sandbox(
        &a,
        "hello; id -un; cd && touch mine && echo home-ok; dpkg-query -W hello libgreeting",
    );
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        run.stdout, "Hello, world!\nbuilder\nhome-ok\nhello\t2.10-1\nlibgreeting\t2.0-1\n",
        "{run}"
    );
}

#[test]
fn the_dpkg_wrapper_checks_relations_and_runs_scripts_like_dpkg() {
    if !is_root() {
        return;
    }
    let m = shared();
    let base = base();
    assert_eq!(base.install.code, 0, "{}", base.install);
    let dir = tempfile::tempdir_in(mirror::scratch_dir()).unwrap();
    let kept = dir.path().join("kept");
    let all: Vec<&mirror::MirrorPackage> = m
        .packages
        .iter()
        .filter(|p| !p.spec.in_base_install())
        .collect();
    let debs = debs_dir(&dir.path().join("debs"), &all);
    let mut a = args("root", &[&base.layer, &base.kept]);
    bind_debs(&mut a, &debs);
    keep(&mut a, &kept);
    // Each step prints "[step] rc=N".
    let script = r#"
        d=/.comb/debs
        step() { name=$1; shift; "$@"; echo "[$name] rc=$?"; }
        step mail-user-alone dpkg --install $d/mail-user_*.deb
        step mail-user-state dpkg-query -W -f '${Package} ${db:Status-Abbrev}\n' mail-user
        step tiny-mta dpkg --install $d/tiny-mta_*.deb
        step pending dpkg --configure --pending
        step pending-again dpkg --configure --pending
        step needs-missing dpkg --install $d/needs-missing_*.deb
        step fakeroot-first dpkg --install $d/fakeroot_*.deb
        step libfakeroot dpkg --install $d/libfakeroot_*.deb
        step fakeroot dpkg --install $d/fakeroot_*.deb
        step greeting-1 dpkg --install $d/libgreeting_1.0-1_all.deb $d/hello_*.deb
        step hello-1 hello
        step greeting-2 dpkg --install $d/libgreeting_2.0-1_all.deb
        step greeting-version cat /usr/share/libgreeting/version
        step conflicting dpkg --install $d/conflicting-a_*.deb
        step build-set dpkg --install $d/make-tool_*.deb $d/fake-clang_*.deb $d/build-essential_*.deb $d/dpkg-dev_*.deb
        step arch dpkg --print-architecture
        step query dpkg-query --show --showformat='${binary:Package}=${Version};' libgreeting hello tiny-mta mail-user
        step pending-forced dpkg --configure --pending --force-depends
        echo
        step unknown-option dpkg --remove hello
    "#;
    let run = sandbox(&a, script);
    assert_eq!(run.code, 0, "{run}");
    let out = &run.stdout;
    for expected in [
        "[mail-user-alone] rc=1",
        "mail-user iU \n[mail-user-state] rc=0",
        "[tiny-mta] rc=0",
        "Setting up mail-user (1.0-1) ...\n[pending] rc=0",
        "[pending] rc=0\n[pending-again] rc=0",
        "[needs-missing] rc=1",
        "[fakeroot-first] rc=1",
        "[libfakeroot] rc=0",
        "[fakeroot] rc=0",
        "[greeting-1] rc=0",
        "Hello, world!\n[hello-1] rc=0",
        "Unpacking libgreeting (2.0-1) over (1.0-1) ...",
        "[greeting-2] rc=0",
        "2.0-1\n[greeting-version] rc=0",
        "[conflicting] rc=1",
        "[build-set] rc=0",
        &format!("{}\n[arch] rc=0", m.architecture),
        "hello=2.10-1;libgreeting=2.0-1;mail-user=1.0-1;tiny-mta=1.0-1;[query] rc=0",
        "Setting up needs-missing (1.0-1) ...\n[pending-forced] rc=0",
        "[unknown-option] rc=2",
    ] {
        assert!(out.contains(expected), "no {expected:?} in\n{run}");
    }
    for reason in [
        "dependency problems prevent configuration of mail-user:\n \
         mail-user depends on mail-transport-agent; however",
        "needs-missing depends on does-not-exist (>= 1.0); however",
        "fakeroot pre-depends on libfakeroot (= 1.31-comb1); however",
        "conflicting-a conflicts with hello\n",
        "conflicting packages - not installing conflicting-a",
    ] {
        assert!(run.stderr.contains(reason), "no {reason:?} in\n{run}");
    }
    assert_eq!(
        std::fs::read_to_string(kept.join("var/lib/comb-test/tiny-mta.preinst")).unwrap(),
        "uid=0 install\n"
    );
    let status = status_of(&kept);
    let state = |name: &str| {
        status
            .iter()
            .filter(|(p, _, _)| p == name)
            .map(|(_, v, s)| format!("{v} {s}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(state("libgreeting"), ["2.0-1 install ok installed"]);
    assert_eq!(state("mail-user"), ["1.0-1 install ok installed"]);
    assert_eq!(state("needs-missing"), ["1.0-1 install ok installed"]);
    assert!(state("conflicting-a").is_empty());
    assert_eq!(state("fake-clang"), ["14.0.6-comb1 install ok installed"]);
    assert!(state("fake-gcc").is_empty());
}
