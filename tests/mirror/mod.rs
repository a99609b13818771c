//! An offline, signed, tiny Debian mirror that the end-to-end tests build
//! themselves, and on which comb can bootstrap a busybox-based Debian.
//!
//! Real Debian packages need the real dpkg, which a generated mirror cannot
//! carry, so the mirror holds a tiny Debian of its own:
//!
//! - the essential set: `busybox-base` (a copy of the host's static busybox
//!   whose `dpkg` applets are renamed away, see [`busybox_without_dpkg`];
//!   `/bin/sh` is shipped under `/bin/` to exercise merged-/usr), `dpkg` (a
//!   shell implementation of the dpkg forms comb calls, see [`DPKG_SH`]),
//!   `base-passwd` (root and `builder`, uid 1000) and `base-files`
//!   (`Priority: required` only; its postinst records who ran it);
//! - the build set: `build-essential` (needing `fake-gcc | fake-clang` and
//!   `make-tool`), `fakeroot` (pre-depending on `libfakeroot`), `dpkg-dev`;
//! - packages for build-environment tests: `hello` and two versions of
//!   `libgreeting`, `mail-user` needing the virtual `mail-transport-agent`
//!   that `tiny-mta` provides, `conflicting-a` (conflicts with `hello`) and
//!   `needs-missing` (depends on a package nobody has).
//!
//! The `.deb`s are built with `dpkg-deb --root-owner-group` under a fixed
//! `SOURCE_DATE_EPOCH`, so the same specification gives the same bytes. The
//! mirror has `Packages` and `Packages.xz`, a `Release` with their MD5Sum and
//! SHA256, and `InRelease` and `Release.gpg` signed by a throwaway ed25519
//! key made in a throwaway `GNUPGHOME` (its gpg-agent is killed afterwards).
//! A second throwaway key, which signed nothing, is there for
//! wrong-signature tests.

// Each test binary that includes this module uses a different subset.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// The suite (and codename) of every test mirror.
pub const SUITE: &str = "comb-test";
/// Its only component.
pub const COMPONENT: &str = "main";
/// File times in the `.deb`s and the first `Release` date: 2022-01-01.
pub const SOURCE_DATE_EPOCH: i64 = 1_640_995_200;
/// uid and gid of the `builder` user in `base-passwd`.
pub const BUILDER_ID: u32 = 1000;
/// Where the fixture's maintainer scripts leave their markers.
pub const MARKER_DIR: &str = "/var/lib/comb-test";

/// The busybox applets `busybox-base` links in `/usr/bin` (`sh` and `ash`
/// are shipped under `/bin/` instead). `dpkg` is left out on purpose: the
/// `dpkg` package owns that name.
#[rustfmt::skip]
pub const APPLETS: &[&str] = &[
    "[", "[[", "ar", "awk", "basename", "cat", "chgrp", "chmod", "chown", "cmp", "cp", "cut",
    "date", "diff", "dirname", "du", "echo", "egrep", "env", "expr", "false", "fgrep", "find",
    "grep", "gunzip", "gzip", "head", "hostname", "id", "kill", "ln", "ls", "md5sum", "mkdir",
    "mktemp", "mv", "nproc", "od", "patch", "printf", "ps", "pwd", "readlink", "realpath", "rm",
    "rmdir", "sed", "seq", "sha256sum", "sleep", "sort", "stat", "tail", "tar", "tee", "test",
    "timeout", "touch", "tr", "true", "uname", "uniq", "unxz", "wc", "which", "whoami", "xargs",
    "xz", "xzcat", "zcat",
];

/// How `dpkg-deb` compresses a package's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// dpkg-deb's default, as in the Debian archive.
    #[default]
    Xz,
    /// Level 1: quick for the 2 MB busybox.
    Gzip,
    /// Plain `data.tar` and `control.tar`, which dpkg also accepts.
    None,
}

/// One binary package of the mirror.
#[derive(Debug, Clone, Default)]
pub struct PackageSpec {
    pub name: String,
    pub version: String,
    /// `all` or the host architecture.
    pub architecture: String,
    /// Relation clauses, each one of `Depends:` (alternatives with ` | `).
    pub depends: Vec<String>,
    pub pre_depends: Vec<String>,
    pub provides: Vec<String>,
    pub conflicts: Vec<String>,
    pub essential: bool,
    /// `required`, `important`, `standard`, `optional` or `extra`.
    pub priority: String,
    pub section: String,
    /// The one-line summary; the name when empty.
    pub description: String,
    /// Regular files: absolute path, contents, mode (set-id bits refused).
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// Directories that must exist even if empty: absolute path, mode.
    pub dirs: Vec<(String, u32)>,
    /// Symbolic links: absolute path, target.
    pub symlinks: Vec<(String, String)>,
    pub preinst: Option<String>,
    pub postinst: Option<String>,
    pub prerm: Option<String>,
    pub postrm: Option<String>,
    pub compression: Compression,
}

impl PackageSpec {
    /// An `Architecture: all`, `Priority: optional` package with nothing in it.
    pub fn new(name: &str, version: &str) -> PackageSpec {
        PackageSpec {
            name: name.into(),
            version: version.into(),
            architecture: "all".into(),
            priority: "optional".into(),
            section: "misc".into(),
            ..PackageSpec::default()
        }
    }

    pub fn arch(mut self, architecture: &str) -> Self {
        self.architecture = architecture.into();
        self
    }

    pub fn depends(mut self, clause: &str) -> Self {
        self.depends.push(clause.into());
        self
    }

    pub fn pre_depends(mut self, clause: &str) -> Self {
        self.pre_depends.push(clause.into());
        self
    }

    pub fn provides(mut self, name: &str) -> Self {
        self.provides.push(name.into());
        self
    }

    pub fn conflicts(mut self, clause: &str) -> Self {
        self.conflicts.push(clause.into());
        self
    }

    pub fn essential(mut self) -> Self {
        self.essential = true;
        self
    }

    pub fn priority(mut self, priority: &str) -> Self {
        self.priority = priority.into();
        self
    }

    pub fn describe(mut self, summary: &str) -> Self {
        self.description = summary.into();
        self
    }

    pub fn file(mut self, path: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.push((path.into(), contents.into(), mode));
        self
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        self.dirs.push((path.into(), mode));
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.symlinks.push((path.into(), target.into()));
        self
    }

    pub fn preinst(mut self, script: &str) -> Self {
        self.preinst = Some(script.into());
        self
    }

    pub fn postinst(mut self, script: &str) -> Self {
        self.postinst = Some(script.into());
        self
    }

    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Part of comb's default install set (`Essential: yes` or `Priority: required`).
    pub fn in_base_install(&self) -> bool {
        self.essential || self.priority == "required"
    }

    /// The binary control file, in the Debian archive's field order.
    pub fn control(&self) -> String {
        let mut c = String::new();
        let _ = writeln!(c, "Package: {}", self.name);
        let _ = writeln!(c, "Version: {}", self.version);
        let _ = writeln!(c, "Architecture: {}", self.architecture);
        if self.essential {
            c.push_str("Essential: yes\n");
        }
        c.push_str("Maintainer: comb tests <tests@comb.invalid>\n");
        let _ = writeln!(c, "Installed-Size: {}", self.installed_size());
        for (field, list) in [
            ("Pre-Depends", &self.pre_depends),
            ("Depends", &self.depends),
            ("Conflicts", &self.conflicts),
            ("Provides", &self.provides),
        ] {
            if !list.is_empty() {
                let _ = writeln!(c, "{field}: {}", list.join(", "));
            }
        }
        let _ = writeln!(c, "Section: {}", self.section);
        let _ = writeln!(c, "Priority: {}", self.priority);
        let summary = if self.description.is_empty() {
            &self.name
        } else {
            &self.description
        };
        let _ = writeln!(
            c,
            "Description: {summary}\n A package of the test mirror that comb's tests build."
        );
        c
    }

    /// dpkg's estimate: KiB of the files, one per directory and link.
    fn installed_size(&self) -> u64 {
        let files: u64 = self
            .files
            .iter()
            .map(|(_, c, _)| (c.len() as u64).div_ceil(1024))
            .sum();
        files + self.dirs.len() as u64 + self.symlinks.len() as u64
    }

    /// `pool/main/h/hello/hello_2.10-1_amd64.deb` (epochs are not in file names).
    pub fn pool_path(&self) -> String {
        let prefix = if let Some(rest) = self.name.strip_prefix("lib") {
            format!("lib{}", rest.chars().next().unwrap_or('_'))
        } else {
            self.name.chars().take(1).collect()
        };
        let version = self
            .version
            .split_once(':')
            .map_or(&*self.version, |(_, v)| v);
        format!(
            "pool/{COMPONENT}/{prefix}/{}/{}_{version}_{}.deb",
            self.name, self.name, self.architecture
        )
    }
}

/// A package as it is in the mirror.
#[derive(Debug, Clone)]
pub struct MirrorPackage {
    pub spec: PackageSpec,
    /// The `.deb` in the pool.
    pub path: PathBuf,
    /// Its `Filename:`, relative to the mirror root.
    pub filename: String,
    pub size: u64,
    pub md5: String,
    pub sha256: String,
}

impl MirrorPackage {
    /// Its stanza in `Packages`.
    pub fn stanza(&self) -> String {
        let control = self.spec.control();
        let (head, description) = control
            .split_once("Description:")
            .expect("control() writes a Description");
        format!(
            "{head}Filename: {}\nSize: {}\nMD5sum: {}\nSHA256: {}\nDescription:{description}",
            self.filename, self.size, self.md5, self.sha256
        )
    }
}

/// A built test mirror.
#[derive(Debug)]
pub struct TestMirror {
    /// The mirror root; serve it as [`TestMirror::uri`].
    pub dir: PathBuf,
    /// `file:///…/mirror`.
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
    /// The host's (`dpkg --print-architecture`).
    pub architecture: String,
    /// The archive key (binary, for `gpgv --keyring`).
    pub keyring: PathBuf,
    /// A second throwaway key that did not sign the mirror.
    pub other_keyring: PathBuf,
    /// The directory given to [`TestMirror::build`]: the mirror, the keys
    /// and the package build trees are under it.
    pub work: PathBuf,
    /// By name, then version.
    pub packages: Vec<MirrorPackage>,
    key: String,
    other_key: String,
    /// Bumped at each signing, so a changed mirror has a later `Date:`.
    generation: u32,
}

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_scratch() {
    if let Some(dir) = SCRATCH.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A directory of this test process under the target's tmp dir, removed
/// when the process exits (and, if it was killed, by the next one).
pub fn scratch_dir() -> &'static Path {
    SCRATCH.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-mirror");
        std::fs::create_dir_all(&base).unwrap();
        for entry in std::fs::read_dir(&base).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("run-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = base.join(format!("run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(remove_scratch) };
        dir
    })
}

/// The default mirror, built once per test process (in [`scratch_dir`]).
/// Never change it: tests that tamper with a mirror build their own.
pub fn shared() -> &'static TestMirror {
    static SHARED: OnceLock<TestMirror> = OnceLock::new();
    SHARED.get_or_init(|| TestMirror::build(&scratch_dir().join("shared")))
}

/// The host's dpkg architecture.
pub fn host_architecture() -> String {
    static ARCH: OnceLock<String> = OnceLock::new();
    ARCH.get_or_init(|| {
        let out = run(Command::new("dpkg").arg("--print-architecture"));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
    .clone()
}

impl TestMirror {
    /// Builds the default mirror under `dir` (created; its `mirror/` is the
    /// mirror root). Takes well under two seconds.
    pub fn build(dir: &Path) -> TestMirror {
        let started = Instant::now();
        let arch = host_architecture();
        let root = dir.join("mirror");
        let keys = dir.join("keys");
        for d in [&root, &keys, &dir.join("build")] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
        let specs = default_packages(&arch);
        // The keys are made while the packages build.
        let (gpg, packages) = std::thread::scope(|s| {
            let keys = s.spawn(|| Gpg::generate(&keys));
            let packages = build_debs(dir, &root, &specs);
            (keys.join().expect("generating the keys"), packages)
        });
        let (gpg, key, other_key) = gpg;
        let mut mirror = TestMirror {
            uri: format!("file://{}", root.display()),
            dir: root,
            suite: SUITE.into(),
            components: vec![COMPONENT.into()],
            architecture: arch,
            keyring: keys.join("archive.gpg"),
            other_keyring: keys.join("other.gpg"),
            work: dir.to_path_buf(),
            packages,
            key,
            other_key,
            generation: 0,
        };
        mirror.sort();
        mirror.write_indices();
        let key = mirror.key.clone();
        mirror.sign_in(&gpg, &key);
        drop(gpg);
        eprintln!(
            "test mirror: {} packages in {} in {:.2?}",
            mirror.packages.len(),
            mirror.dir.display(),
            started.elapsed()
        );
        mirror
    }

    /// Adds a package, or replaces the one of the same name, version and
    /// architecture; then rewrites the indices and signs them again.
    pub fn add_package(&mut self, spec: &PackageSpec) {
        let built = build_debs(&self.work, &self.dir, std::slice::from_ref(spec))
            .pop()
            .unwrap();
        self.packages.retain(|p| {
            (&p.spec.name, &p.spec.version, &p.spec.architecture)
                != (&spec.name, &spec.version, &spec.architecture)
        });
        self.packages.push(built);
        self.sort();
        self.write_indices();
        self.sign(&self.key.clone());
    }

    /// `Packages` (and `Packages.xz`) no longer match what `InRelease`
    /// says of them: the first package gets epoch 9 (so it would win if the
    /// index were believed); `InRelease` is kept.
    pub fn tamper_packages(&self) {
        let path = self.packages_index();
        let text = std::fs::read_to_string(&path).unwrap();
        let tampered = text.replacen("\nVersion: ", "\nVersion: 9:", 1);
        assert_ne!(text, tampered, "no package in {}", path.display());
        std::fs::write(&path, &tampered).unwrap();
        std::fs::write(path.with_extension("xz"), xz(tampered.as_bytes())).unwrap();
    }

    /// Signs `InRelease` and `Release.gpg` again, with the key that is not
    /// in [`TestMirror::keyring`] (but is in [`TestMirror::other_keyring`]).
    pub fn sign_with_other_key(&self) {
        let gpg = Gpg::import(&self.work.join("keys"));
        sign_release(&gpg, &self.dists(), &self.other_key);
    }

    /// Changes bytes in the middle of `package`'s `.deb` (the newest version
    /// if several), keeping its size; returns its path.
    pub fn corrupt_deb(&self, package: &str) -> PathBuf {
        let p = self
            .packages
            .iter()
            .rev()
            .find(|p| p.spec.name == package)
            .unwrap_or_else(|| panic!("no package {package} in the test mirror"));
        let mut bytes = std::fs::read(&p.path).unwrap();
        let middle = bytes.len() / 2;
        let end = bytes.len().min(middle + 16);
        for b in &mut bytes[middle..end] {
            *b ^= 0x5a;
        }
        std::fs::write(&p.path, &bytes).unwrap();
        p.path.clone()
    }

    /// A `comb.toml` `[distro]` table that points at this mirror.
    pub fn distro_toml(&self) -> String {
        format!(
            "[distro]\nmirror = {}\nsuite = {}\ncomponents = [{}]\narchitecture = {}\nkeyring = {}\n\n\
             [package]\nmaintainer = \"comb tests <tests@comb-tests.example.org>\"\n",
            toml_string(&self.uri),
            toml_string(&self.suite),
            self.components.iter().map(|c| toml_string(c)).collect::<Vec<_>>().join(", "),
            toml_string(&self.architecture),
            toml_string(&self.keyring.to_string_lossy()),
        )
    }

    /// `dists/SUITE` under the mirror root.
    pub fn dists(&self) -> PathBuf {
        self.dir.join("dists").join(&self.suite)
    }

    /// The uncompressed `Packages` index.
    pub fn packages_index(&self) -> PathBuf {
        self.dists().join(self.index_name())
    }

    /// `main/binary-ARCH/Packages`, as `Release` names it.
    pub fn index_name(&self) -> String {
        format!("{COMPONENT}/binary-{}/Packages", self.architecture)
    }

    /// The package `name` (its newest version if the mirror has several).
    pub fn package(&self, name: &str) -> &MirrorPackage {
        self.packages
            .iter()
            .rev()
            .find(|p| p.spec.name == name)
            .unwrap_or_else(|| panic!("no package {name} in the test mirror"))
    }

    /// The package `name` at `version`.
    pub fn package_version(&self, name: &str, version: &str) -> &MirrorPackage {
        self.packages
            .iter()
            .find(|p| p.spec.name == name && p.spec.version == version)
            .unwrap_or_else(|| panic!("no package {name} {version} in the test mirror"))
    }

    /// comb's default install set: `Essential: yes` or `Priority: required`.
    pub fn base_install(&self) -> Vec<&MirrorPackage> {
        self.packages
            .iter()
            .filter(|p| p.spec.in_base_install())
            .collect()
    }

    fn sort(&mut self) {
        self.packages.sort_by(|a, b| {
            (&a.spec.name, &a.spec.architecture)
                .cmp(&(&b.spec.name, &b.spec.architecture))
                .then_with(|| debian_version_order(&a.spec.version, &b.spec.version))
        });
    }

    /// `Packages`, `Packages.xz` and the unsigned `Release`.
    fn write_indices(&mut self) {
        let dists = self.dists();
        let index = self.packages_index();
        std::fs::create_dir_all(index.parent().unwrap()).unwrap();
        let mut text = String::new();
        for p in &self.packages {
            text.push_str(&p.stanza());
            text.push('\n');
        }
        std::fs::write(&index, &text).unwrap();
        std::fs::write(index.with_extension("xz"), xz(text.as_bytes())).unwrap();

        let names = [self.index_name(), format!("{}.xz", self.index_name())];
        let paths: Vec<PathBuf> = names.iter().map(|n| dists.join(n)).collect();
        let md5 = hashes("md5sum", &paths);
        let sha256 = hashes("sha256sum", &paths);
        let mut release = format!(
            "Origin: comb-test\nLabel: comb-test\nSuite: {suite}\nCodename: {suite}\n\
             Date: {date}\nArchitectures: {arch}\nComponents: {components}\n\
             Description: comb's offline test mirror\n",
            suite = self.suite,
            date = rfc2822(SOURCE_DATE_EPOCH + 3600 * i64::from(self.generation)),
            arch = self.architecture,
            components = self.components.join(" "),
        );
        for (field, sums) in [("MD5Sum", &md5), ("SHA256", &sha256)] {
            let _ = writeln!(release, "{field}:");
            for ((name, path), sum) in names.iter().zip(&paths).zip(sums) {
                let size = std::fs::metadata(path).unwrap().len();
                let _ = writeln!(release, " {sum} {size:>16} {name}");
            }
        }
        std::fs::write(dists.join("Release"), release).unwrap();
    }

    /// Signs `Release` (as `InRelease` and `Release.gpg`) with `key`.
    fn sign(&mut self, key: &str) {
        let gpg = Gpg::import(&self.work.join("keys"));
        self.sign_in(&gpg, key);
    }

    fn sign_in(&mut self, gpg: &Gpg, key: &str) {
        self.generation += 1;
        sign_release(gpg, &self.dists(), key);
    }
}

/// Signs `dists/Release` as `InRelease` and `Release.gpg` with `key`.
fn sign_release(gpg: &Gpg, dists: &Path, key: &str) {
    let release = dists.join("Release");
    for (args, name) in [
        (&["--clearsign"][..], "InRelease"),
        (&["--armor", "--detach-sign"][..], "Release.gpg"),
    ] {
        let tmp = dists.join(format!(".{name}.tmp"));
        run(gpg
            .cmd()
            .args(["--yes", "--digest-algo", "SHA512", "--local-user"])
            .arg(format!("{key}!"))
            .args(args)
            .arg("--output")
            .arg(&tmp)
            .arg(&release));
        std::fs::rename(&tmp, dists.join(name)).unwrap();
    }
}

/// A throwaway `GNUPGHOME` (short, under `/tmp`: gpg-agent's socket path
/// must fit in 108 bytes); its agent is killed when it is dropped.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        let home = tempfile::Builder::new()
            .prefix("comb-gpg-")
            .tempdir_in("/tmp")
            .expect("making a GNUPGHOME under /tmp");
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        Gpg { home }
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.arg("--homedir")
            .arg(self.home.path())
            .args(["--batch", "--quiet", "--no-tty", "--no-auto-check-trustdb"])
            .args(["--pinentry-mode", "loopback", "--passphrase", ""])
            .env_remove("GNUPGHOME")
            .stdin(Stdio::null());
        cmd
    }

    /// Makes the archive key and the other key; writes their public keyrings
    /// and both secret keys (for signing again later) to `keys`. Returns the
    /// home and the two fingerprints.
    fn generate(keys: &Path) -> (Gpg, String, String) {
        let gpg = Gpg::new();
        let mut fingerprints = Vec::new();
        for uid in [
            "comb test archive <archive@comb.invalid>",
            "comb other key <other@comb.invalid>",
        ] {
            run(gpg
                .cmd()
                .args(["--quick-generate-key", uid, "ed25519", "sign", "never"]));
            let listed = run(gpg.cmd().args(["--with-colons", "--list-secret-keys", uid]));
            let text = String::from_utf8(listed.stdout).unwrap();
            let fpr = text
                .lines()
                .find_map(|l| l.strip_prefix("fpr:"))
                .and_then(|l| l.split(':').find(|f| f.len() == 40))
                .unwrap_or_else(|| panic!("no fingerprint for {uid} in {text}"))
                .to_string();
            fingerprints.push(fpr);
        }
        for (fpr, file) in fingerprints.iter().zip(["archive.gpg", "other.gpg"]) {
            let out = run(gpg.cmd().arg("--export").arg(fpr));
            std::fs::write(keys.join(file), out.stdout).unwrap();
        }
        let out = run(gpg.cmd().args(["--armor", "--export-secret-keys"]));
        std::fs::write(keys.join("secret.asc"), out.stdout).unwrap();
        let other = fingerprints.pop().unwrap();
        let archive = fingerprints.pop().unwrap();
        (gpg, archive, other)
    }

    /// A fresh home holding the secret keys that [`Gpg::generate`] wrote.
    fn import(keys: &Path) -> Gpg {
        let gpg = Gpg::new();
        run(gpg.cmd().arg("--import").arg(keys.join("secret.asc")));
        gpg
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Builds the `.deb`s of `specs` in parallel into the pool under `root`,
/// using `work/build` for their trees.
fn build_debs(work: &Path, root: &Path, specs: &[PackageSpec]) -> Vec<MirrorPackage> {
    let next = AtomicUsize::new(0);
    let built = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    std::thread::scope(|s| {
        for _ in 0..workers.min(specs.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(spec) = specs.get(i) else { break };
                let deb = build_deb(work, root, spec);
                built.lock().unwrap().push((i, deb));
            });
        }
    });
    let mut built = built.into_inner().unwrap();
    built.sort_by_key(|(i, _)| *i);
    let paths: Vec<PathBuf> = built.iter().map(|(_, p)| p.clone()).collect();
    let md5 = hashes("md5sum", &paths);
    let sha256 = hashes("sha256sum", &paths);
    specs
        .iter()
        .zip(paths)
        .zip(md5.into_iter().zip(sha256))
        .map(|((spec, path), (md5, sha256))| MirrorPackage {
            spec: spec.clone(),
            filename: spec.pool_path(),
            size: std::fs::metadata(&path).unwrap().len(),
            path,
            md5,
            sha256,
        })
        .collect()
}

fn build_deb(work: &Path, root: &Path, spec: &PackageSpec) -> PathBuf {
    let tree = work.join("build").join(format!(
        "{}_{}_{}",
        spec.name,
        spec.version.replace(':', "%3a"),
        spec.architecture
    ));
    let _ = std::fs::remove_dir_all(&tree);
    let mkdir = |dir: &Path, mode: u32| {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let inside = |path: &str| {
        let rel = path
            .strip_prefix('/')
            .unwrap_or_else(|| panic!("{path}: not absolute"));
        assert!(
            !rel.is_empty()
                && !rel
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == ".."),
            "{path}: not a plain absolute path"
        );
        tree.join(rel)
    };
    let parents = |path: &Path| {
        let mut missing = Vec::new();
        let mut p = path.parent().unwrap();
        while !p.exists() {
            missing.push(p.to_path_buf());
            p = p.parent().unwrap();
        }
        for d in missing.iter().rev() {
            mkdir(d, 0o755);
        }
    };
    mkdir(&tree, 0o755);
    mkdir(&tree.join("DEBIAN"), 0o755);
    std::fs::write(tree.join("DEBIAN/control"), spec.control()).unwrap();
    for (name, script) in [
        ("preinst", &spec.preinst),
        ("postinst", &spec.postinst),
        ("prerm", &spec.prerm),
        ("postrm", &spec.postrm),
    ] {
        if let Some(script) = script {
            let path = tree.join("DEBIAN").join(name);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    for (path, mode) in &spec.dirs {
        let dir = inside(path);
        parents(&dir);
        mkdir(&dir, *mode);
    }
    for (path, contents, mode) in &spec.files {
        assert_eq!(
            mode & 0o6000,
            0,
            "{path}: set-id modes are refused by the sandbox"
        );
        let file = inside(path);
        parents(&file);
        std::fs::write(&file, contents).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    for (path, target) in &spec.symlinks {
        let link = inside(path);
        parents(&link);
        std::os::unix::fs::symlink(target, &link).unwrap();
    }
    let deb = root.join(spec.pool_path());
    std::fs::create_dir_all(deb.parent().unwrap()).unwrap();
    let tmp = deb.with_extension("deb.tmp");
    let compression: &[&str] = match spec.compression {
        Compression::Xz => &["-Zxz"],
        Compression::Gzip => &["-Zgzip", "-z1"],
        Compression::None => &["-Znone"],
    };
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .args(compression)
        .arg(&tree)
        .arg(&tmp)
        .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.to_string())
        .stdout(Stdio::null()));
    std::fs::rename(&tmp, &deb).unwrap();
    deb
}

/// The packages of the default mirror.
pub fn default_packages(arch: &str) -> Vec<PackageSpec> {
    let busybox = busybox_without_dpkg();
    let mut busybox_base = PackageSpec::new("busybox-base", "1.35.0-1")
        .arch(arch)
        .essential()
        .priority("required")
        .describe("busybox as the base system")
        .compression(Compression::Gzip)
        .file("/usr/bin/busybox", busybox, 0o755)
        // Under /bin/ in the archive, in /usr/bin/ on a merged-/usr system.
        .symlink("/bin/sh", "busybox")
        .symlink("/bin/ash", "busybox");
    for applet in APPLETS {
        busybox_base = busybox_base.symlink(&format!("/usr/bin/{applet}"), "busybox");
    }

    let base_files_postinst = format!(
        "#!/bin/sh\nset -e\nmkdir -p {MARKER_DIR}\necho \"uid=$(id -u) $1\" >> {MARKER_DIR}/base-files.postinst\n\
         if [ \"$1\" = configure ]; then\n    chown builder:builder /home/builder\nfi\n"
    );
    let tiny_mta_preinst = format!(
        "#!/bin/sh\nset -e\nmkdir -p {MARKER_DIR}\necho \"uid=$(id -u) $1\" >> {MARKER_DIR}/tiny-mta.preinst\n"
    );
    let tool = |name: &str, text: &str| format!("#!/bin/sh\necho \"{name}: {text}\"\n");
    let libgreeting = |version: &str| {
        PackageSpec::new("libgreeting", version)
            .describe("the greeting that hello prints")
            .file(
                "/usr/lib/libgreeting/greeting.sh",
                "greet() {\n    echo \"Hello, world!\"\n}\n",
                0o644,
            )
            .file(
                "/usr/share/libgreeting/version",
                format!("{version}\n"),
                0o644,
            )
    };

    vec![
        busybox_base,
        PackageSpec::new("dpkg", "1.21.99-comb1")
            .arch(arch)
            .essential()
            .priority("required")
            .pre_depends("busybox-base (>= 1.30)")
            .describe("the dpkg forms comb calls, on busybox")
            .file("/usr/bin/dpkg", DPKG_SH.replace("@ARCH@", arch), 0o755)
            .file("/usr/bin/dpkg-query", DPKG_QUERY_SH, 0o755)
            .dir("/var/lib/dpkg/info", 0o755)
            .dir("/var/lib/dpkg/updates", 0o755),
        PackageSpec::new("base-passwd", "3.6.1-comb1")
            .essential()
            .priority("required")
            .describe("root and the builder user")
            .file(
                "/etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nbuilder:x:1000:1000:builder:/home/builder:/bin/sh\n",
                0o644,
            )
            .file("/etc/group", "root:x:0:\nbuilder:x:1000:\n", 0o644),
        PackageSpec::new("base-files", "12.4-comb1")
            .priority("required")
            .describe("the directories of the base system")
            .file("/etc/debian_version", "comb-test\n", 0o644)
            .file(
                "/etc/os-release",
                "PRETTY_NAME=\"comb test system\"\nNAME=\"comb-test\"\nID=comb-test\n",
                0o644,
            )
            .dir("/root", 0o700)
            .dir("/home/builder", 0o755)
            .dir("/tmp", 0o1777)
            .dir("/var/tmp", 0o1777)
            .postinst(&base_files_postinst),
        // The build set.
        PackageSpec::new("build-essential", "12.9-comb1")
            .arch(arch)
            .depends("fake-gcc | fake-clang")
            .depends("make-tool")
            .file("/usr/share/build-essential/list", "fake-gcc | fake-clang\nmake-tool\n", 0o644),
        PackageSpec::new("fake-gcc", "12.2.0-comb1")
            .arch(arch)
            .provides("c-compiler")
            .file("/usr/bin/fake-gcc", tool("fake-gcc", "compiled"), 0o755),
        PackageSpec::new("fake-clang", "14.0.6-comb1")
            .arch(arch)
            .provides("c-compiler")
            .file("/usr/bin/fake-clang", tool("fake-clang", "compiled"), 0o755),
        PackageSpec::new("make-tool", "4.3-comb1")
            .arch(arch)
            .compression(Compression::None)
            .file("/usr/bin/make-tool", tool("make-tool", "made"), 0o755),
        PackageSpec::new("fakeroot", "1.31-comb1")
            .arch(arch)
            .pre_depends("libfakeroot (= 1.31-comb1)")
            .file("/usr/bin/fakeroot", "#!/bin/sh\nFAKEROOTKEY=comb-test exec \"$@\"\n", 0o755),
        PackageSpec::new("libfakeroot", "1.31-comb1")
            .arch(arch)
            .file("/usr/lib/libfakeroot/libfakeroot.sh", "# nothing to fake\n", 0o644),
        PackageSpec::new("dpkg-dev", "1.21.99-comb1")
            .depends("make-tool")
            .depends("busybox-base (>= 1.30)")
            .file("/usr/bin/dpkg-buildpackage", tool("dpkg-buildpackage", "built"), 0o755),
        // For build environments.
        PackageSpec::new("hello", "2.10-1")
            .arch(arch)
            .depends("libgreeting (>= 1.0)")
            .describe("the classic greeting")
            .file(
                "/usr/bin/hello",
                "#!/bin/sh\n. /usr/lib/libgreeting/greeting.sh\ngreet\n",
                0o755,
            ),
        libgreeting("1.0-1"),
        libgreeting("2.0-1"),
        PackageSpec::new("mail-user", "1.0-1")
            .depends("mail-transport-agent")
            .file("/usr/bin/mail-user", tool("mail-user", "sent"), 0o755),
        PackageSpec::new("tiny-mta", "1.0-1")
            .provides("mail-transport-agent")
            .conflicts("mail-transport-agent")
            .preinst(&tiny_mta_preinst)
            .file("/usr/sbin/sendmail", tool("sendmail", "queued"), 0o755),
        PackageSpec::new("conflicting-a", "1.0-1")
            .conflicts("hello")
            .file("/usr/bin/conflicting-a", tool("conflicting-a", "here"), 0o755),
        PackageSpec::new("needs-missing", "1.0-1")
            .depends("does-not-exist (>= 1.0)")
            .file("/usr/bin/needs-missing", tool("needs-missing", "here"), 0o755),
    ]
}

/// The host's static busybox, with its `dpkg` and `dpkg-deb` applets
/// renamed out of the way.
///
/// Debian builds busybox with `FEATURE_SH_STANDALONE`: its shell runs an
/// applet of a command's name before looking in `PATH`, so `sh -c 'dpkg
/// ...'` would run busybox's own dpkg, never `/usr/bin/dpkg`. Busybox finds
/// applets in one sorted, NUL-separated table of names; renaming them to
/// `dpk_` and `dpk_-deb` keeps the lengths (so the offsets) and the order,
/// and every other applet is found as before.
pub fn busybox_without_dpkg() -> Vec<u8> {
    const NAMES: &[u8] = b"dos2unix\0dpkg\0dpkg-deb\0du\0";
    const RENAMED: &[u8] = b"dos2unix\0dpk_\0dpk_-deb\0du\0";
    let mut busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox is needed for the test mirror (apt-get install busybox-static)");
    let found: Vec<usize> = busybox
        .windows(NAMES.len())
        .enumerate()
        .filter(|(_, w)| *w == NAMES)
        .map(|(i, _)| i)
        .collect();
    match found[..] {
        [at] => busybox[at..at + NAMES.len()].copy_from_slice(RENAMED),
        // A busybox built without the applets needs no change.
        [] if !busybox.windows(6).any(|w| w == b"\0dpkg\0") => {}
        _ => panic!(
            "/bin/busybox: cannot find its dpkg applet's name exactly once in the applet table \
             (found {} times); the test mirror cannot take it out of the way",
            found.len()
        ),
    }
    busybox
}

/// Runs `cmd`, panicking with its stderr if it fails.
fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The hex digests of `paths` by `tool` (`md5sum`, `sha256sum`), in order.
fn hashes(tool: &str, paths: &[PathBuf]) -> Vec<String> {
    if paths.is_empty() {
        return Vec::new();
    }
    let out = run(Command::new(tool).args(paths));
    let text = String::from_utf8(out.stdout).unwrap();
    let sums: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(sums.len(), paths.len(), "{tool}: {text}");
    sums
}

/// `xz -c` of `data`.
fn xz(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("xz")
        .args(["-c", "-9"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("xz is needed for the test mirror");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "xz failed");
    out.stdout
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `Sat, 01 Jan 2022 00:00:00 UTC`, as in `Release` files.
pub fn rfc2822(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} UTC",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// dpkg's version order (enough for sorting the index).
pub fn debian_version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((upstream, revision)) => (epoch, upstream, revision),
            None => (epoch, rest, ""),
        }
    }
    fn order(c: Option<u8>) -> i32 {
        match c {
            None => 0,
            Some(b'~') => -1,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(c),
            Some(c) => i32::from(c) + 256,
        }
    }
    fn part(a: &str, b: &str) -> std::cmp::Ordering {
        let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
        while !a.is_empty() || !b.is_empty() {
            while a.first().is_some_and(|c| !c.is_ascii_digit())
                || b.first().is_some_and(|c| !c.is_ascii_digit())
            {
                let (x, y) = (order(a.first().copied()), order(b.first().copied()));
                if x != y {
                    return x.cmp(&y);
                }
                a = a.get(1..).unwrap_or_default();
                b = b.get(1..).unwrap_or_default();
            }
            let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
            let (na, nb) = (digits(a), digits(b));
            let trim = |s: &[u8]| {
                let z = s.iter().take_while(|c| **c == b'0').count();
                s[z..].to_vec()
            };
            let (x, y) = (trim(&a[..na]), trim(&b[..nb]));
            let o = x.len().cmp(&y.len()).then_with(|| x.cmp(&y));
            if o.is_ne() {
                return o;
            }
            a = &a[na..];
            b = &b[nb..];
        }
        std::cmp::Ordering::Equal
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| part(ua, ub))
        .then_with(|| part(ra, rb))
}

/// `/usr/bin/dpkg` of the fixture's `dpkg` package (`@ARCH@` is replaced).
const DPKG_SH: &str = r#"#!/bin/sh
# dpkg for comb's test mirror. A tiny busybox Debian cannot carry the real
# dpkg, and busybox's own dpkg applet runs maintainer scripts without their
# arguments, so this implements the forms comb calls with busybox applets:
#   dpkg --install [--force-depends] FILE...       (-i)
#   dpkg --configure --pending|PKG... [--force-depends]
#   dpkg --print-architecture
#   dpkg --status|--show ...                       (handed to dpkg-query)
# It keeps dpkg's own database format (status, info/PKG.list, info/PKG.*
# scripts), runs maintainer scripts with dpkg's arguments and checks
# Pre-Depends, Depends (with versions, alternatives and Provides) and
# Conflicts. It does not handle conffiles, triggers, Breaks or Replaces.
set -u
ARCH='@ARCH@'
admin=/var/lib/dpkg
status=$admin/status
info=$admin/info

# The status file, control paragraphs and dependency fields, in awk.
LIB='
function trim(s) { gsub(/^[ \t\n]+/, "", s); gsub(/[ \t\n]+$/, "", s); return s }
function get(f,   i, j, v, on) {
	v = ""; on = 0
	for (i = 1; i <= n; i++) {
		if (L[i] ~ /^[ \t]/) { if (on) v = v "\n" L[i]; continue }
		on = 0; j = index(L[i], ":")
		if (j && tolower(substr(L[i], 1, j - 1)) == tolower(f)) { on = 1; v = trim(substr(L[i], j + 1)) }
	}
	return v
}
function ordc(c,   i) {
	if (!CHN) { for (i = 1; i < 256; i++) CH[sprintf("%c", i)] = i; CHN = 1 }
	if (c == "" || c ~ /[0-9]/) return 0
	if (c == "~") return -1
	if (c ~ /[A-Za-z]/) return CH[c]
	return CH[c] + 256
}
# dpkg: verrevcmp()
function revcmp(a, b,   x, y) {
	while (a != "" || b != "") {
		while ((a != "" && substr(a, 1, 1) !~ /[0-9]/) || (b != "" && substr(b, 1, 1) !~ /[0-9]/)) {
			x = ordc(substr(a, 1, 1)); y = ordc(substr(b, 1, 1))
			if (x != y) return x - y
			a = substr(a, 2); b = substr(b, 2)
		}
		match(a, /^[0-9]*/); x = substr(a, 1, RLENGTH); a = substr(a, RLENGTH + 1)
		match(b, /^[0-9]*/); y = substr(b, 1, RLENGTH); b = substr(b, RLENGTH + 1)
		sub(/^0+/, "", x); sub(/^0+/, "", y)
		if (length(x) != length(y)) return length(x) - length(y)
		if ((x "") != (y "")) return (x "") < (y "") ? -1 : 1
	}
	return 0
}
function vercmp(a, b,   ea, eb, ra, rb, r) {
	ea = 0; eb = 0; ra = ""; rb = ""
	if (match(a, /^[0-9]+:/)) { ea = substr(a, 1, RLENGTH - 1) + 0; a = substr(a, RLENGTH + 1) }
	if (match(b, /^[0-9]+:/)) { eb = substr(b, 1, RLENGTH - 1) + 0; b = substr(b, RLENGTH + 1) }
	if (match(a, /-[^-]*$/)) { ra = substr(a, RSTART + 1); a = substr(a, 1, RSTART - 1) }
	if (match(b, /-[^-]*$/)) { rb = substr(b, RSTART + 1); b = substr(b, 1, RSTART - 1) }
	if (ea != eb) return ea - eb
	r = revcmp(a, b); if (r) return r
	return revcmp(ra, rb)
}
function relop(op, r) {
	if (op == ">=" || op == ">") return r >= 0
	if (op == "<=" || op == "<") return r <= 0
	if (op == ">>") return r > 0
	if (op == "<<") return r < 0
	return r == 0
}
# Splits "name:arch (op version) [archs]" into ANAME, AOP, AVER.
function atom(a,   p) {
	a = trim(a); AOP = ""; AVER = ""
	sub(/\[.*\]/, "", a)
	if (match(a, /\(.*\)/)) {
		p = trim(substr(a, RSTART + 1, RLENGTH - 2)); a = substr(a, 1, RSTART - 1)
		match(p, /^[<>=]+/); AOP = substr(p, 1, RLENGTH); AVER = trim(substr(p, RLENGTH + 1))
	}
	ANAME = trim(a); sub(/:.*$/, "", ANAME)
}
# Adds the current paragraph to the universe that relations are checked against.
function add(   k, m, i, P) {
	VER[get("Package")] = get("Version")
	m = split(get("Provides"), P, ",")
	for (i = 1; i <= m; i++) { atom(P[i]); if (ANAME != "") { k = ++PN[ANAME]; PV[ANAME, k] = AVER } }
}
function holds(a,   i, name, op, ver) {
	atom(a); name = ANAME; op = AOP; ver = AVER
	if (name in VER && (op == "" || relop(op, vercmp(VER[name], ver)))) return 1
	for (i = 1; i <= PN[name]; i++)
		if (op == "" || (PV[name, i] != "" && relop(op, vercmp(PV[name, i], ver)))) return 1
	return 0
}
# Prints each clause of rel that nothing satisfies.
function unmet(rel,   C, A, m, k, i, j, ok) {
	m = split(rel, C, ",")
	for (i = 1; i <= m; i++) {
		if (trim(C[i]) == "") continue
		k = split(C[i], A, "|"); ok = 0
		for (j = 1; j <= k; j++) if (holds(A[j])) ok = 1
		if (!ok) print trim(C[i])
	}
}
# Prints each atom of rel that something satisfies.
function met(rel, prefix,   A, m, i) {
	m = split(rel, A, ",")
	for (i = 1; i <= m; i++) if (trim(A[i]) != "" && holds(A[i])) print prefix trim(A[i])
}
function state() { s = get("Status"); sub(/.* /, "", s); return s }
function para(   pk, st, i, w) {
	pk = get("Package"); st = state()
	if (mode == "field") { if (!done) print get(f); done = 1 }
	else if (mode == "version") { if (pk == p) print get("Version") }
	else if (mode == "state") { if (pk == p) print st }
	else if (mode == "para") { if (pk == p) for (i = 1; i <= n; i++) print L[i] }
	else if (mode == "pending") { if (st == "unpacked" || st == "half-configured") print pk }
	else if (mode == "sort") { S[pk] = ""; for (i = 1; i <= n; i++) S[pk] = S[pk] L[i] "\n"; N[++ns] = pk }
	else if (mode == "remove" || mode == "setstatus") {
		if (pk == p && mode == "remove") { n = 0; return }
		for (i = 1; i <= n; i++) {
			if (pk == p && L[i] ~ /^Status:/) { print "Status: install ok " to; continue }
			if (pk == p && to == "installed" && L[i] ~ /^Config-Version:/) continue
			print L[i]
		}
		print ""
	}
	else if (mode == "relation") {
		w = (st == "") ? "new" : st
		if (pk != skip && (index(" " states " ", " " w " ") || (index(batch, " " pk " ") && st != "not-installed" && st != "config-files"))) add()
	}
	else if (mode == "rconflicts") {
		if (st == "") add()
		else if (pk != skip && index(" installed unpacked half-configured half-installed ", " " st " ")) met(get("Conflicts"), pk " conflicts with ")
	}
	n = 0
}
/^[ \t]*$/ { if (n) para(); next }
{ L[++n] = $0 }
END {
	if (n) para()
	if (mode == "sort") {
		# Like dpkg, by package name: the same packages give the same file.
		for (i = 2; i <= ns; i++) for (j = i; j > 1 && N[j - 1] > N[j]; j--) { k = N[j]; N[j] = N[j - 1]; N[j - 1] = k }
		for (i = 1; i <= ns; i++) printf "%s\n", S[N[i]]
	}
	else if (mode == "relation" && kind == "conflicts") met(rel, "")
	else if (mode == "relation") unmet(rel)
}
'

# The awk library over FILE operands; NAME=VALUE operands before a file set
# its variables (mode, p, f, to, rel, kind, states, batch, skip).
q() { awk "$LIB" "$@"; }

say() { printf '%s\n' "$*"; }
warn() { printf 'dpkg: warning: %s\n' "$*" >&2; }
fail() { printf 'dpkg: error: %s\n' "$*" >&2; exit 2; }
errors=
problem() { printf 'dpkg: error processing %s:\n %s\n' "$1" "$2" >&2; errors="$errors
 $3"; }

# Replaces the status file with stdin, atomically.
put_status() {
	cat >"$status-new" && mv "$status-new" "$status"
}

# Runs a maintainer script if the package has it, the way dpkg does:
# executed directly with its arguments, DPKG_MAINTSCRIPT_* in the environment.
run_script() {
	local pkg=$1 name=$2 file=$3
	shift 3
	[ -e "$file" ] || return 0
	DPKG_MAINTSCRIPT_PACKAGE=$pkg DPKG_MAINTSCRIPT_NAME=$name \
		DPKG_MAINTSCRIPT_ARCH=$ARCH DPKG_ADMINDIR=$admin DPKG_ROOT= \
		"$file" "$@"
}

# The tar flag that decompresses a .deb member.
zflag() {
	case $1 in
	*.xz) echo -J ;;
	*.gz) echo -z ;;
	*.bz2) echo -j ;;
	*.tar) ;;
	*) return 1 ;;
	esac
}

# Unpacks one .deb (sets $unpacked to its package name).
unpack_one() {
	local deb=$1 cm= dm= m pkg ver arch old oldstate bad zc zd
	unpacked=
	if [ ! -f "$deb" ]; then
		problem "archive $deb (--$action)" "cannot access archive: No such file or directory" "$deb"
		return 1
	fi
	for m in $(ar -t "$deb" 2>/dev/null); do
		case $m in
		control.tar*) cm=$m ;;
		data.tar*) dm=$m ;;
		esac
	done
	if [ -z "$cm" ] || [ -z "$dm" ] || ! zc=$(zflag "$cm") || ! zd=$(zflag "$dm"); then
		problem "archive $deb (--$action)" "not a Debian format archive (or an unsupported compression)" "$deb"
		return 1
	fi
	rm -rf "$admin/tmp.ci"
	mkdir "$admin/tmp.ci"
	if ! ar -p "$deb" "$cm" | tar -x $zc -C "$admin/tmp.ci" || [ ! -f "$admin/tmp.ci/control" ]; then
		problem "archive $deb (--$action)" "cannot extract its control member" "$deb"
		return 1
	fi
	pkg=$(q mode=field f=Package "$admin/tmp.ci/control")
	ver=$(q mode=field f=Version "$admin/tmp.ci/control")
	arch=$(q mode=field f=Architecture "$admin/tmp.ci/control")
	case $pkg in
	"" | *[!a-z0-9.+-]*)
		problem "archive $deb (--$action)" "bad package name '$pkg'" "$deb"
		return 1
		;;
	esac
	if [ "$arch" != all ] && [ "$arch" != "$ARCH" ]; then
		problem "archive $deb (--$action)" "package architecture ($arch) does not match system ($ARCH)" "$deb"
		return 1
	fi
	oldstate=$(q mode=state p="$pkg" "$status")
	old=
	case $oldstate in
	installed | unpacked | half-configured) old=$(q mode=version p="$pkg" "$status") ;;
	esac
	bad=$(
		q mode=relation kind=conflicts rel="$(q mode=field f=Conflicts "$admin/tmp.ci/control")" \
			states="installed unpacked half-configured half-installed" skip="$pkg" "$status" |
			sed "s/^/$pkg conflicts with /"
		q mode=rconflicts skip="$pkg" "$admin/tmp.ci/control" "$status"
	)
	if [ -n "$bad" ]; then
		printf 'dpkg: regarding %s containing %s:\n%s\n' "$deb" "$pkg" "$(echo "$bad" | sed 's/^/ /')" >&2
		problem "archive $deb (--$action)" "conflicting packages - not installing $pkg" "$deb"
		return 1
	fi
	bad=$(q mode=relation rel="$(q mode=field f=Pre-Depends "$admin/tmp.ci/control")" states=installed "$status")
	if [ -n "$bad" ]; then
		printf 'dpkg: regarding %s containing %s, pre-dependency problem:\n%s\n' "$deb" "$pkg" \
			"$(echo "$bad" | sed "s/^/ $pkg pre-depends on /; s/\$/; however it is not installed and configured./")" >&2
		if [ -z "$force_depends" ]; then
			problem "archive $deb (--$action)" "pre-dependency problem - not installing $pkg" "$deb"
			return 1
		fi
		warn "ignoring pre-dependency problem!"
	fi
	if [ -n "$old" ]; then
		say "Unpacking $pkg ($ver) over ($old) ..."
		if ! run_script "$pkg" prerm "$info/$pkg.prerm" upgrade "$ver"; then
			problem "archive $deb (--$action)" "old $pkg package pre-removal script subprocess returned error exit status $?" "$deb"
			return 1
		fi
		run_script "$pkg" preinst "$admin/tmp.ci/preinst" upgrade "$old"
	else
		say "Unpacking $pkg ($ver) ..."
		run_script "$pkg" preinst "$admin/tmp.ci/preinst" install
	fi || {
		problem "archive $deb (--$action)" "new $pkg package pre-installation script subprocess returned error exit status $?" "$deb"
		return 1
	}
	if ! ar -p "$deb" "$dm" | tar -x $zd -C /; then
		problem "archive $deb (--$action)" "cannot unpack its data member" "$deb"
		return 1
	fi
	# dpkg's file list: "/." for the root, no leading "." or trailing "/".
	ar -p "$deb" "$dm" | tar -t $zd | sed -e 's|^\./$|/.|' -e 's|^\./|/|' -e 's|/$||' >"$info/$pkg.list-new"
	if [ -n "$old" ] && [ -f "$info/$pkg.list" ]; then
		# Files of the old version that the new one no longer has.
		awk 'NR == FNR { keep[$0] = 1; next } !($0 in keep)' "$info/$pkg.list-new" "$info/$pkg.list" |
			while IFS= read -r m; do
				if [ -L "$m" ] || { [ -e "$m" ] && [ ! -d "$m" ]; }; then rm -f "$m"; fi
			done
		run_script "$pkg" postrm "$info/$pkg.postrm" upgrade "$ver" ||
			warn "old $pkg package post-removal script subprocess returned error exit status $?"
	fi
	for m in "$info/$pkg".*; do
		case $m in "$info/$pkg.list" | "$info/$pkg.list-new") ;; *) rm -f "$m" ;; esac
	done
	for m in "$admin/tmp.ci"/*; do
		case ${m##*/} in control) ;; *) mv "$m" "$info/$pkg.${m##*/}" ;; esac
	done
	mv "$info/$pkg.list-new" "$info/$pkg.list"
	{
		q mode=remove p="$pkg" "$status"
		say "Package: $pkg"
		say "Status: install ok unpacked"
		[ -n "$old" ] && [ "$oldstate" = installed ] && say "Config-Version: $old"
		grep -v -e '^Package:' -e '^[[:space:]]*$' "$admin/tmp.ci/control"
		say ""
	} | q mode=sort - | put_status
	rm -rf "$admin/tmp.ci"
	unpacked=$pkg
}

# Configures the unpacked package $1; the packages of $batch count as
# present for its dependencies.
configure_one() {
	local pkg=$1 st ver cv bad rc
	st=$(q mode=state p="$pkg" "$status")
	case $st in
	unpacked | half-configured) ;;
	installed)
		problem "package $pkg (--configure)" "package $pkg is already installed and configured" "$pkg"
		return 1
		;;
	*)
		problem "package $pkg (--configure)" "package $pkg is not ready for configuration" "$pkg"
		return 1
		;;
	esac
	ver=$(q mode=version p="$pkg" "$status")
	q mode=para p="$pkg" "$status" >"$admin/tmp.para"
	bad=$(q mode=relation rel="$(q mode=field f=Depends "$admin/tmp.para")" states=installed batch=" $batch " "$status")
	cv=$(q mode=field f=Config-Version "$admin/tmp.para")
	rm -f "$admin/tmp.para"
	if [ -n "$bad" ]; then
		if [ -z "$force_depends" ]; then
			say "dpkg: dependency problems prevent configuration of $pkg:" >&2
		else
			say "dpkg: $pkg: dependency problems, but configuring anyway as you requested:" >&2
		fi
		echo "$bad" | sed "s/^/ $pkg depends on /; s/\$/; however it is not installed./" >&2
		if [ -z "$force_depends" ]; then
			problem "package $pkg (--$action)" "dependency problems - leaving unconfigured" "$pkg"
			return 1
		fi
	fi
	say "Setting up $pkg ($ver) ..."
	q mode=setstatus p="$pkg" to=half-configured "$status" | put_status
	run_script "$pkg" postinst "$info/$pkg.postinst" configure "$cv"
	rc=$?
	if [ $rc != 0 ]; then
		problem "package $pkg (--configure)" "installed $pkg package post-installation script subprocess returned error exit status $rc" "$pkg"
		return 1
	fi
	q mode=setstatus p="$pkg" to=installed "$status" | put_status
}

action=
force_depends=
pending=
files=
for arg in "$@"; do
	case $arg in
	-i | --install) action=install ;;
	--configure) action=configure ;;
	-a | --pending) pending=1 ;;
	--force-depends) force_depends=1 ;;
	--print-architecture)
		say "$ARCH"
		exit 0
		;;
	-s | --status | -W | --show)
		exec dpkg-query "$@"
		;;
	-*) fail "unsupported option $arg (this dpkg knows --install, --configure, --force-depends, --pending, --print-architecture)" ;;
	*) files=1 ;;
	esac
done
[ -n "$action" ] || fail "need an action option (--install or --configure)"
[ -f "$status" ] || fail "$status is missing"
mkdir -p "$info"

batch=
if [ $action = install ]; then
	[ -n "$files" ] || fail "--install needs at least one package archive file argument"
	for arg in "$@"; do
		case $arg in -*) continue ;; esac
		unpack_one "$arg" && batch="$batch $unpacked"
		rm -rf "$admin/tmp.ci" "$info"/*.list-new
	done
else
	if [ -n "$pending" ]; then
		batch=$(q mode=pending "$status")
	else
		for arg in "$@"; do
			case $arg in -*) continue ;; esac
			batch="$batch $arg"
		done
	fi
fi
batch=$(echo $batch)
for pkg in $batch; do
	configure_one "$pkg"
done

if [ -n "$errors" ]; then
	printf 'Errors were encountered while processing:%s\n' "$errors" >&2
	exit 1
fi
exit 0
"#;

/// `/usr/bin/dpkg-query` of the fixture's `dpkg` package.
const DPKG_QUERY_SH: &str = r#"#!/bin/sh
# dpkg-query for comb's test mirror, over dpkg's status file:
#   dpkg-query --show|-W [--showformat=FORMAT|-f FORMAT] [PACKAGE...]
#   dpkg-query --status|-s PACKAGE...
# FORMAT knows ${Field}, ${binary:Package}, ${db:Status-Abbrev},
# ${db:Status-Want}, ${db:Status-Status} and the escapes \n, \t and \\.
set -u
status=/var/lib/dpkg/status
action=
format='${binary:Package}\t${Version}\n'
names=
while [ $# -gt 0 ]; do
	case $1 in
	-W | --show) action=show ;;
	-s | --status) action=status ;;
	-f | --showformat)
		[ $# -ge 2 ] || { echo "dpkg-query: error: $1 needs a value" >&2; exit 2; }
		format=$2
		shift
		;;
	--showformat=*) format=${1#--showformat=} ;;
	-*) echo "dpkg-query: error: unsupported option $1 (this dpkg-query knows --show, --showformat and --status)" >&2; exit 2 ;;
	*) names="$names $1" ;;
	esac
	shift
done
[ -n "$action" ] || { echo "dpkg-query: error: need an action option (--show or --status)" >&2; exit 2; }
[ $action = show ] || [ -n "$names" ] || { echo "dpkg-query: error: --status needs at least one package name argument" >&2; exit 2; }
# awk's -v turns the format's escapes into characters, as dpkg-query does.
exec awk -v action="$action" -v format="$format" -v names="$names " '
function get(f,   i, j, v, on) {
	v = ""; on = 0
	for (i = 1; i <= n; i++) {
		if (L[i] ~ /^[ \t]/) { if (on) v = v "\n" substr(L[i], 2); continue }
		on = 0; j = index(L[i], ":")
		if (j && tolower(substr(L[i], 1, j - 1)) == tolower(f)) { on = 1; v = substr(L[i], j + 1); sub(/^[ \t]+/, "", v); sub(/[ \t]+$/, "", v) }
	}
	return v
}
function value(f,   s, w, x) {
	sub(/;.*/, "", f)
	if (f == "binary:Package") return get("Package")
	s = get("Status"); w = s; sub(/ .*/, "", w); x = s; sub(/.* /, "", x)
	if (f == "db:Status-Want") return w
	if (f == "db:Status-Status") return x
	if (f == "db:Status-Abbrev") return substr(w, 1, 1) ABBR[x] " "
	return get(f)
}
function para(   pk, st, out, rest, i) {
	pk = get("Package"); st = get("Status"); sub(/.* /, "", st)
	if (pk == "" || (names != " " && !index(names, " " pk " "))) { n = 0; return }
	if (st == "not-installed" && names == " ") { n = 0; return }
	FOUND[pk] = 1
	if (action == "status") { for (i = 1; i <= n; i++) OUT[pk] = OUT[pk] L[i] "\n"; OUT[pk] = OUT[pk] "\n"; ORDER[++no] = pk; n = 0; return }
	out = ""; rest = format
	while ((i = index(rest, "${")) > 0) {
		out = out substr(rest, 1, i - 1); rest = substr(rest, i + 2)
		i = index(rest, "}")
		if (!i) { rest = "${" rest; break }
		out = out value(substr(rest, 1, i - 1)); rest = substr(rest, i + 1)
	}
	OUT[pk] = out rest; ORDER[++no] = pk
	n = 0
}
BEGIN {
	ABBR["not-installed"] = "n"; ABBR["config-files"] = "c"; ABBR["half-installed"] = "H"
	ABBR["unpacked"] = "U"; ABBR["half-configured"] = "F"; ABBR["triggers-awaited"] = "W"
	ABBR["triggers-pending"] = "t"; ABBR["installed"] = "i"
}
/^[ \t]*$/ { if (n) para(); next }
{ L[++n] = $0 }
END {
	if (n) para()
	# By package name, as dpkg-query lists them.
	for (i = 2; i <= no; i++) for (j = i; j > 1 && ORDER[j - 1] > ORDER[j]; j--) { k = ORDER[j]; ORDER[j] = ORDER[j - 1]; ORDER[j - 1] = k }
	for (i = 1; i <= no; i++) printf "%s", OUT[ORDER[i]]
	m = split(names, N, " "); bad = 0
	for (i = 1; i <= m; i++) if (!(N[i] in FOUND)) {
		if (action == "status") printf "dpkg-query: package '\''%s'\'' is not installed and no information is available\n", N[i] > "/dev/stderr"
		else printf "dpkg-query: no packages found matching %s\n", N[i] > "/dev/stderr"
		bad = 1
	}
	exit bad
}' "$status"
"#;
