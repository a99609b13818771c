//! Attacks on `comb sandbox run`, made from inside by the multi-call program
//! `tests/fixtures/attack.c` (one attack per subcommand; it prints BLOCKED
//! or ESCAPED), as R and as U wherever both apply.
//!
//! Each test asserts on the attack's verdict, on comb's exit code and JSON
//! outcome, and on the host: files unchanged, host processes alive, and —
//! for every run, see `common` — no host process of the sandbox's slot
//! left behind.
//!
//! Needs root, like CI (idmapped layers, `--keep-upper`, the private id
//! range, and a test user made with `useradd` for the ordinary-user
//! caller); skipped otherwise. Every escape attack that applies to both is
//! made with comb run by root and by an ordinary user with a subordinate
//! id range ([`Caller`], `common::for_each_caller`), whose sandboxes nest
//! in its own user namespace; limits and root's own slots are root's.

use crate::common;

use common::{
    bytes_written, children_of, fixture, for_each_caller, is_root, processes_in_range, sandbox,
    uid_of, walk, Caller, FileState, Run, Who, COMB, SLOT_STRIDE,
};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A host file (in a fresh temp dir) that the sandbox must never reach.
fn host_file(dir: &tempfile::TempDir, name: &str, content: &str) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, content).unwrap();
    path
}

fn assert_no_setid_or_devices(layer: &Path) -> Vec<(PathBuf, fs::Metadata)> {
    let entries = walk(layer);
    for (path, meta) in &entries {
        assert_eq!(
            meta.mode() & 0o6000,
            0,
            "{} in the kept layer has mode {:o}",
            path.display(),
            meta.mode()
        );
        let ft = meta.file_type();
        assert!(
            !ft.is_block_device() && !ft.is_fifo() && !ft.is_socket(),
            "{} in the kept layer is a {:?}",
            path.display(),
            ft
        );
        if ft.is_char_device() {
            assert_eq!(
                meta.rdev(),
                0,
                "{} in the kept layer is a device other than a 0:0 whiteout",
                path.display()
            );
        }
    }
    entries
}

/// A host process the sandbox must not be able to signal.
struct HostProcess(Child);

impl HostProcess {
    fn sleep(uid: Option<u32>) -> HostProcess {
        let mut cmd = Command::new("sleep");
        cmd.arg("30").stdin(Stdio::null());
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        HostProcess(cmd.spawn().unwrap())
    }

    fn assert_alive(&mut self, after: &Run) {
        assert!(
            self.0.try_wait().unwrap().is_none(),
            "host process {} died during\n{after}",
            self.0.id()
        );
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// 1. Filesystem escapes ---------------------------------------------------

#[test]
fn chroot_escape_is_blocked() {
    if !is_root() {
        return;
    }
    for_each_caller(|| {
        // One marker under the host's /tmp (the sandbox has its own /tmp) and
        // one beside the fixture layer.
        let in_tmp = tempfile::Builder::new()
            .prefix("comb-host-marker-")
            .tempdir()
            .unwrap();
        let beside = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let markers = [
            host_file(&in_tmp, "marker", "host only\n"),
            host_file(&beside, "marker", "host only\n"),
        ];
        for who in Who::ALL {
            for marker in &markers {
                let run = sandbox()
                    .who(who)
                    .run(&["attack", "chroot-escape", s(marker)]);
                let details = run.assert_blocked("chroot-escape");
                assert!(
                    details.contains("before: marker not visible"),
                    "{who:?}: {details}"
                );
                for attempt in ["dotdot:", "fchdir:"] {
                    assert!(
                        details.contains(attempt),
                        "{who:?}: {attempt} not tried: {details}"
                    );
                }
            }
        }
        for marker in &markers {
            assert_eq!(fs::read_to_string(marker).unwrap(), "host only\n");
        }
    });
}

#[test]
fn proc_paths_reach_no_host_file_nor_the_comb_binary() {
    if !is_root() {
        return;
    }
    for_each_caller(|| {
        let dir = tempfile::Builder::new()
            .prefix("comb-host-marker-")
            .tempdir()
            .unwrap();
        let marker = host_file(&dir, "marker", "original\n");
        let marker_before = FileState::of(&marker);
        let comb_before = FileState::of(Path::new(COMB));
        // A careless caller leaks a directory fd of the host's / and a
        // read-only fd of the marker into comb: neither may reach the command.
        let host_root = fs::File::open("/").unwrap();
        let marker_ro = fs::File::open(&marker).unwrap();
        for who in Who::ALL {
            for target in [s(&marker), COMB] {
                let run = sandbox()
                    .who(who)
                    .inherit_fd(5, &host_root)
                    .inherit_fd(6, &marker_ro)
                    .run(&["attack", "proc-write", target]);
                let details = run.assert_blocked("proc-write");
                for attempt in [
                    "/proc/self/root",
                    "/proc/1/root",
                    "/proc/self/cwd",
                    "open(/proc/self/exe, O_WRONLY)",
                ] {
                    assert!(
                        details.contains(attempt),
                        "{who:?}: {attempt} not tried: {details}"
                    );
                }
                assert!(
                    !details.contains("/proc/self/fd/5") && !details.contains("/proc/self/fd/6"),
                    "{who:?}: the caller's fds reached the command: {details}"
                );
            }
            // By hand as well: through the root, cwd and every fd of every
            // process the sandbox can see.
            let script = format!(
                "for p in /proc/[0-9]*; do for f in $p/root $p/cwd $p/fd/*; do \
                 echo x >> \"$f{m}\"; echo x >> \"$f{c}\"; done; done 2>/dev/null; echo walked",
                m = marker.display(),
                c = COMB
            );
            let run = sandbox()
                .who(who)
                .inherit_fd(5, &host_root)
                .inherit_fd(6, &marker_ro)
                .run(&["sh", "-c", &script]);
            assert_eq!(run.code, 0, "{run}");
            assert!(run.stdout.contains("walked"), "{run}");
        }
        marker_before.assert_unchanged(&marker);
        comb_before.assert_unchanged(Path::new(COMB));
    });
}

// 3. Mounts and namespaces ------------------------------------------------

#[test]
fn mount_and_new_namespaces_are_blocked() {
    if !is_root() {
        return;
    }
    for_each_caller(|| {
        for who in Who::ALL {
            let run = sandbox().who(who).run(&["attack", "mount"]);
            let details = run.assert_blocked("mount");
            for attempt in [
                "open_tree",
                "fsopen",
                "mount tmpfs /mnt",
                "MS_REMOUNT",
                "umount2",
            ] {
                assert!(
                    details.contains(attempt),
                    "{who:?}: {attempt} not tried: {details}"
                );
            }
            let run = sandbox().who(who).run(&["attack", "unshare-user"]);
            let details = run.assert_blocked("unshare-user");
            for attempt in [
                "unshare(CLONE_NEWUSER|CLONE_NEWNS)",
                "unshare(CLONE_NEWNS)",
                "clone(CLONE_NEWUSER)",
            ] {
                assert!(
                    details.contains(attempt),
                    "{who:?}: {attempt} not tried: {details}"
                );
            }
        }
    });
}

/// Read-only binds of the caller's (host root's) files stay read-only for
/// R, whatever it tries. Also item 11: "R changes a file owned by C".
#[test]
fn read_only_binds_cannot_be_changed_from_inside() {
    if !is_root() {
        return;
    }
    for_each_caller(|| {
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro");
        fs::create_dir(&ro).unwrap();
        let file = ro.join("file");
        fs::write(&file, "caller's file\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let single = host_file(&dir, "single", "caller's single file\n");
        let file_before = FileState::of(&file);
        let single_before = FileState::of(&single);
        let script = "echo started; \
            echo x > /ro/file; echo x >> /ro-single; touch /ro/new; rm -f /ro/file; \
            chmod 4755 /ro/file; chown 1000:1000 /ro/file /ro-single; \
            attack write-file /ro/file; attack write-file /ro-single; \
            attack chown-file /ro/file 1000; attack setuid-chmod /ro-single; \
            attack xattr /ro/file";
        for who in Who::ALL {
            let run = sandbox()
                .who(who)
                .arg("--bind")
                .arg(format!("{}:/ro", ro.display()))
                .arg("--bind")
                .arg(format!("{}:/ro-single", single.display()))
                .run(&["sh", "-c", script]);
            assert!(
                run.stdout.contains("started"),
                "{who:?}: the sandbox with read-only binds did not start\n{run}"
            );
            for attack in ["write-file", "chown-file", "setuid-chmod", "xattr"] {
                run.blocked_in(attack);
            }
            file_before.assert_unchanged(&file);
            single_before.assert_unchanged(&single);
            let listing: Vec<_> = fs::read_dir(&ro)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert_eq!(listing, vec![std::ffi::OsString::from("file")], "{run}");
        }
    });
}

// 4. Network --------------------------------------------------------------

/// Polls a non-blocking accept for a little while.
fn accepts_within<T>(mut accept: impl FnMut() -> std::io::Result<T>, within: Duration) -> bool {
    let until = Instant::now() + within;
    loop {
        match accept() {
            Ok(_) => return true,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn tcp_to_a_host_listener_is_blocked() {
    if !is_root() {
        return;
    }
    for_each_caller(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        for who in Who::ALL {
            let run = sandbox()
                .who(who)
                .run(&["attack", "net-tcp", "127.0.0.1", &port]);
            let details = run.assert_blocked("net-tcp");
            assert!(details.starts_with("connect: "), "{details}");
            assert!(
                !accepts_within(|| listener.accept(), Duration::ZERO),
                "{who:?}: the host listener got a connection from the sandbox\n{run}"
            );
        }
        // The listener works: the check above could have failed.
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(accepts_within(|| listener.accept(), Duration::from_secs(2)));
    });
}

#[test]
fn ipv6_to_a_host_listener_is_blocked() {
    if !is_root() {
        return;
    }
    for_each_caller(|| {
        let listener = std::net::TcpListener::bind("[::1]:0").ok();
        let port = match &listener {
            Some(l) => {
                l.set_nonblocking(true).unwrap();
                l.local_addr().unwrap().port().to_string()
            }
            None => {
                eprintln!("::1 does not work on this host: only the sandbox side is checked");
                "9".to_string()
            }
        };
        for who in Who::ALL {
            let run = sandbox()
                .who(who)
                .run(&["attack", "net-ipv6", "::1", &port]);
            run.assert_blocked("net-ipv6");
            if let Some(l) = &listener {
                assert!(
                    !accepts_within(|| l.accept(), Duration::ZERO),
                    "{who:?}: the host's [::1]:{port} got a connection from the sandbox\n{run}"
                );
            }
        }
        if let Some(l) = &listener {
            let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            assert!(accepts_within(|| l.accept(), Duration::from_secs(2)));
        }
    });
}

fn first_ipv4_nameserver() -> Option<String> {
    let text = fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .map(str::trim)
        .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
}

#[test]
fn dns_over_udp_is_blocked() {
    if !is_root() {
        return;
    }
    for_each_caller(|| {
        // A host "DNS server" on 127.0.0.1:53 if the port is free.
        let local = std::net::UdpSocket::bind("127.0.0.1:53").ok();
        if let Some(sock) = &local {
            sock.set_nonblocking(true).unwrap();
        } else {
            eprintln!("127.0.0.1:53 is taken on the host: no host-side check of it");
        }
        let mut servers = vec!["127.0.0.1".to_string()];
        servers.extend(first_ipv4_nameserver());
        for who in Who::ALL {
            for server in &servers {
                let run = sandbox().who(who).run(&["attack", "net-udp-dns", server]);
                run.assert_blocked("net-udp-dns");
            }
        }
        if let Some(sock) = &local {
            let mut buf = [0u8; 512];
            assert!(
                !accepts_within(|| sock.recv_from(&mut buf), Duration::ZERO),
                "the host's 127.0.0.1:53 received a query from the sandbox"
            );
            let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            probe.send_to(b"probe", "127.0.0.1:53").unwrap();
            assert!(accepts_within(
                || sock.recv_from(&mut buf),
                Duration::from_secs(2)
            ));
        }
    });
}

#[test]
fn raw_sockets_are_blocked() {
    if !is_root() {
        return;
    }
    for_each_caller(|| {
        for who in Who::ALL {
            let run = sandbox().who(who).run(&["attack", "net-raw"]);
            let details = run.assert_blocked("net-raw");
            assert!(
                details.contains("AF_INET, SOCK_RAW") && details.contains("AF_PACKET"),
                "{details}"
            );
        }
    });
}

#[test]
fn abstract_unix_socket_of_the_host_is_unreachable() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
    if !is_root() {
        return;
    }
    let name = format!(
        "comb-attack-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = UnixListener::bind_addr(&addr).unwrap();
    listener.set_nonblocking(true).unwrap();
    for_each_caller(|| {
        for who in Who::ALL {
            let run = sandbox().who(who).run(&["attack", "net-abstract", &name]);
            run.assert_blocked("net-abstract");
            assert!(
                !accepts_within(|| listener.accept(), Duration::ZERO),
                "{who:?}: the host's abstract socket @{name} got a connection\n{run}"
            );
        }
    });
    let _client = UnixStream::connect_addr(&addr).unwrap();
    assert!(accepts_within(|| listener.accept(), Duration::from_secs(2)));
}

// 5. Devices and setuid files ---------------------------------------------

/// Which set-id bits a sandbox may set where it writes (the seccomp
/// filter's `Rules`): none where its writes reach the host and other users
/// (R with any writable bind, U with a reachable one); setgid for R whose
/// writes stay in its upper layer; both for U whose writes no other host
/// user can reach. Kept layers hold none either way.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SetIdRules {
    None,
    SetGid,
    Both,
}

/// Checks what the attacks `setuid-chmod`, `setuid-open` and
/// `setuid-mknod` saw against `rules`: the attempts whose bits the rules
/// allow left them set, every other attempt was refused.
fn assert_setid_attempts(run: &common::Run, rules: SetIdRules, case: &str) {
    // Each attempt and whether it asks for setuid: chmod 04755, 02755,
    // fchmod 06755, fchmodat 04755; open 04755, creat 02755; mknod 04755.
    let attempts: [(&str, &[bool]); 3] = [
        ("setuid-chmod", &[true, false, true, true]),
        ("setuid-open", &[true, false]),
        ("setuid-mknod", &[true]),
    ];
    for (attack, asks_setuid) in attempts {
        let allowed = asks_setuid
            .iter()
            .filter(|&&setuid| match rules {
                SetIdRules::None => false,
                SetIdRules::SetGid => !setuid,
                SetIdRules::Both => true,
            })
            .count();
        let line = run.result_line(attack);
        assert_eq!(
            line.matches("SETID BIT SET").count(),
            allowed,
            "{case}, {rules:?}: {line}\n{run}"
        );
        if rules != SetIdRules::Both {
            assert!(
                !line.contains("mode 4") && !line.contains("mode 6"),
                "{case}: a setuid bit was set: {line}"
            );
        }
        if allowed == 0 {
            run.blocked_in(attack);
        }
    }
}

#[test]
fn devices_setuid_files_and_file_capabilities_are_refused() {
    if !is_root() {
        return;
    }
    #[derive(Debug, PartialEq)]
    enum WritableBind {
        No,
        /// Writable by U, below a directory only root may enter (as a
        /// store is).
        Private,
        /// World-writable, in /tmp.
        Reachable,
    }
    let cases = [
        (Who::R, "/tmp", WritableBind::No, SetIdRules::SetGid),
        (Who::R, "/", WritableBind::No, SetIdRules::SetGid),
        (Who::R, "/tmp", WritableBind::Private, SetIdRules::None),
        (Who::R, "/out", WritableBind::Reachable, SetIdRules::None),
        (Who::U, "/tmp", WritableBind::No, SetIdRules::Both),
        (Who::U, "/out", WritableBind::Private, SetIdRules::Both),
        (Who::U, "/out", WritableBind::Reachable, SetIdRules::None),
        (
            Who::U,
            "/home/builder",
            WritableBind::Reachable,
            SetIdRules::None,
        ),
    ];
    // An ordinary caller's sandbox opens its binds as R, whose subordinate
    // id cannot enter a 0700 directory of the caller's, and sees the
    // fixture's /home/builder without idmapping (not U's): those two cases
    // are root's only (until builds run for ordinary users).
    let all = Caller::ALL
        .into_iter()
        .flat_map(|caller| cases.iter().map(move |case| (caller, case)))
        .filter(|(caller, (_, dir, bind, _))| {
            *caller == Caller::Root || (*bind != WritableBind::Private && *dir != "/home/builder")
        });
    for (caller, (who, dir, bind, rules)) in all {
        let reachable = shared_dir("comb-setid-bind-");
        // Entered by root alone (as a store is).
        let private_parent = tempfile::tempdir().unwrap();
        fs::set_permissions(private_parent.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let private = private_parent.path().join("w");
        fs::create_dir(&private).unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o777)).unwrap();
        let bind_source = match bind {
            WritableBind::No => None,
            WritableBind::Private => Some(private.as_path()),
            WritableBind::Reachable => Some(reachable.path()),
        };
        let d = dir.trim_end_matches('/');
        let script = format!(
            "attack mknod-dev {dir}; attack setuid-chmod {d}/s1; attack setuid-open {d}/s2; \
             attack setuid-mknod {d}/s3; touch {d}/x && attack xattr {d}/x; echo done"
        );
        let mut sandbox = sandbox().caller(caller).who(*who);
        if let Some(source) = bind_source {
            sandbox = sandbox
                .arg("--bind")
                .arg(format!("{}:/out:rw", source.display()));
        }
        let run = sandbox.run(&["sh", "-c", &script]);
        let case = format!("{caller:?}: {who:?} in {dir}, writable bind: {bind:?}");
        assert!(run.stdout.contains("done"), "{case}\n{run}");
        let details = run.blocked_in("mknod-dev");
        assert!(
            details.contains("mknod char 1:3") && details.contains("mknod block 8:0"),
            "{details}"
        );
        // The kernel refuses file capabilities (no CAP_SETFCAP) although
        // seccomp lets xattrs through; user.* ones are allowed.
        let details = run.blocked_in("xattr");
        assert!(
            details.contains("security.capability")
                && details.contains("user.comb-attack: allowed"),
            "{case}: {details}"
        );
        assert_setid_attempts(&run, *rules, &case);
        if *bind == WritableBind::Reachable {
            let left = walk(reachable.path());
            assert!(
                left.iter().all(|(_, m)| m.mode() & 0o6000 == 0),
                "{case}: a set-id file in a directory other users reach: {left:?}"
            );
        }
    }
}

/// What a maintainer script does (fontconfig's `chmod 2775
/// /usr/local/share/fonts`, a setfacl): R may, inside; the kept layer
/// holds the setgid directory, no setgid file and no attribute but
/// overlayfs's own.
#[test]
fn root_may_make_setgid_directories_and_set_attributes_that_stay_inside() {
    if !is_root() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let kept = out.path().join("kept");
    let script = "mkdir -p /usr/local/share/fonts && chmod 2775 /usr/local/share/fonts && \
                  touch /f && chmod 2755 /f && stat -c '%a %n' /usr/local/share/fonts /f && \
                  attack xattr /f && echo done";
    let run = sandbox()
        .who(Who::R)
        .arg("--keep-upper")
        .arg(&kept)
        .run(&["sh", "-c", script]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("2775 /usr/local/share/fonts"), "{run}");
    assert!(run.stdout.contains("2755 /f"), "{run}");
    assert!(
        run.blocked_in("xattr")
            .contains("user.comb-attack: allowed"),
        "{run}"
    );
    let fonts = fs::metadata(kept.join("usr/local/share/fonts")).unwrap();
    assert_eq!(
        fonts.mode() & 0o7777,
        0o2775,
        "the setgid directory lost its bit"
    );
    let f = fs::metadata(kept.join("f")).unwrap();
    assert_eq!(f.mode() & 0o7777, 0o755, "a setgid file left the sandbox");
    // With a writable bind, what R writes reaches the host directly: no
    // setgid bit at all.
    let bound = tempfile::tempdir().unwrap();
    let run = sandbox()
        .who(Who::R)
        .arg("--bind")
        .arg(format!("{}:/out:rw", bound.path().display()))
        .run(&[
            "sh",
            "-c",
            "mkdir /out/d && chmod 2775 /out/d; stat -c '%a' /out/d",
        ]);
    assert!(run.stdout.lines().any(|l| l.trim() == "755"), "{run}");
    assert_eq!(
        fs::metadata(bound.path().join("d")).unwrap().mode() & 0o7777,
        0o755
    );
}

#[test]
fn kept_layers_hold_no_setuid_files_or_devices() {
    if !is_root() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let cases = [
        (
            Who::R,
            "/",
            "attack setuid-root-leave /usr/bin/evil; rm /bin/ls; ",
        ),
        (Who::U, "/home/builder", ""),
    ];
    for (who, dir, extra) in cases {
        let kept = out.path().join(format!("kept-{who:?}"));
        let d = dir.trim_end_matches('/');
        let script = format!(
            "{extra}attack mknod-dev {dir}; attack setuid-chmod {d}/s1; attack setuid-open {d}/s2; \
             attack setuid-mknod {d}/s3; touch {d}/x && attack xattr {d}/x; echo done"
        );
        let run = sandbox()
            .who(who)
            .arg("--keep-upper")
            .arg(&kept)
            .run(&["sh", "-c", &script]);
        assert_eq!(run.code, 0, "{run}");
        assert_eq!(
            run.outcome()["kept_upper"].as_str(),
            Some(s(&kept)),
            "{run}"
        );
        for attack in ["mknod-dev", "xattr"] {
            run.blocked_in(attack);
        }
        // Inside, R may set setgid and U both (their writes reach no one);
        // the kept layer holds no set-id file all the same.
        let rules = if who == Who::R {
            SetIdRules::SetGid
        } else {
            SetIdRules::Both
        };
        assert_setid_attempts(&run, rules, &format!("{who:?} keeping its layer"));
        let entries = assert_no_setid_or_devices(&kept);
        // The walk saw the files the attacks left, so it could have failed.
        let s1 = kept.join(d.trim_start_matches('/')).join("s1");
        let s2 = kept.join(d.trim_start_matches('/')).join("s2");
        assert!(
            entries.iter().any(|(p, m)| *p == s1 && m.is_file())
                && entries.iter().any(|(p, m)| *p == s2 && m.is_file()),
            "{} or {} missing from the kept layer: {entries:?}",
            s2.display(),
            s1.display()
        );
        if who == Who::R {
            run.blocked_in("setuid-root-leave");
            let whiteout = kept.join("bin/ls");
            assert!(
                entries
                    .iter()
                    .any(|(p, m)| *p == whiteout && m.file_type().is_char_device()),
                "no whiteout for /bin/ls in {entries:?}"
            );
        }
    }
}

// 6. Other processes ------------------------------------------------------

#[test]
fn ptrace_is_blocked() {
    if !is_root() {
        return;
    }
    for_each_caller(|| {
        for who in Who::ALL {
            // pid 1 is the sandbox's init, running as R.
            let run = sandbox().who(who).run(&["attack", "ptrace", "1"]);
            let details = run.assert_blocked("ptrace");
            assert!(details.contains("PTRACE_ATTACH") && details.contains("PTRACE_SEIZE"));
            // A process of the same identity: seccomp refuses ptrace outright.
            let run = sandbox()
                .who(who)
                .run(&["sh", "-c", "sleep 5 & attack ptrace $!; kill $!"]);
            run.blocked_in("ptrace");
        }
    });
}

#[test]
fn kill_all_spares_host_processes() {
    if !is_root() {
        return;
    }
    for_each_caller(|| {
        // One host process of the caller (root) and one of host uid 1000,
        // which is U's uid inside but not U's host uid.
        let mut host = [HostProcess::sleep(None), HostProcess::sleep(Some(1000))];
        let pids: Vec<String> = host.iter().map(|h| h.0.id().to_string()).collect();
        // The shell ignores SIGTERM so that it survives kill-all's kill(-1).
        let script = format!(
            "trap '' TERM; attack kill-all; kill -9 {p} 2>/dev/null; kill -KILL -1; echo survived",
            p = pids.join(" ")
        );
        for who in Who::ALL {
            let run = sandbox().who(who).exclusive().run(&["sh", "-c", &script]);
            assert!(
                run.result_line("kill-all").starts_with("BLOCKED kill-all:"),
                "{run}"
            );
            assert!(run.stdout.contains("survived"), "{run}");
            for h in host.iter_mut() {
                h.assert_alive(&run);
                assert_eq!(
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(h.0.id() as i32), None),
                    Ok(())
                );
            }
        }
    });
}

// 7. Resource exhaustion --------------------------------------------------

#[test]
fn fork_bomb_is_stopped_by_the_pids_limit() {
    if !is_root() {
        return;
    }
    for who in Who::ALL {
        let run = sandbox()
            .who(who)
            .exclusive()
            .args(["--pids", "64", "--timeout", "10"])
            .run(&["attack", "fork-bomb"]);
        assert!(run.stdout.contains("STARTED fork-bomb"), "{run}");
        assert_eq!(run.code, 137, "{run}");
        assert_eq!(run.status(), ("signaled".to_string(), 9), "{run}");
        if run.enforced_by("pids").starts_with("cgroup") {
            assert_eq!(run.killed_by(), Some("pids"), "{run}");
            assert!(run.elapsed < Duration::from_secs(8), "{run}");
        } else {
            assert!(
                matches!(run.killed_by(), Some("pids" | "wall-timeout")),
                "{run}"
            );
        }
        // The host can still fork.
        assert!(Command::new("true").status().unwrap().success());
    }
}

#[test]
fn memory_hog_is_killed_by_the_memory_limit() {
    if !is_root() {
        return;
    }
    let run = sandbox()
        .exclusive()
        .args(["--memory", "128M", "--timeout", "20"])
        .run(&["attack", "eat-memory"]);
    let most = run
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("PROGRESS eat-memory: "))
        .filter_map(|l| l.trim_end_matches(" MiB").parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        most <= 128,
        "the command got {most} MiB under a 128 MiB limit\n{run}"
    );
    if run.enforced_by("memory").starts_with("cgroup") {
        assert_eq!(run.killed_by(), Some("memory"), "{run}");
        assert_eq!(run.code, 137, "{run}");
        let peak = run.outcome()["usage"]["peak_memory_bytes"]
            .as_u64()
            .unwrap();
        assert!(peak <= 160 << 20, "peak memory {peak}\n{run}");
        assert!(run.elapsed < Duration::from_secs(15), "{run}");
    } else {
        assert_ne!(run.enforced_by("memory"), "not-limited", "{run}");
        run.assert_blocked("eat-memory");
    }
}

#[test]
fn filling_the_disk_stops_at_the_disk_limit() {
    if !is_root() {
        return;
    }
    let cases = [
        (Who::U, "/tmp/big"),
        (Who::U, "/home/builder/big"),
        (Who::R, "/tmp/big"),
        (Who::R, "/big"),
    ];
    for (who, path) in cases {
        let run = sandbox()
            .who(who)
            .exclusive()
            .args(["--disk", "32M", "--timeout", "20"])
            .run(&["attack", "fill-disk", path]);
        let details = run.assert_blocked("fill-disk");
        assert!(
            details.starts_with("write: No space left on device"),
            "{who:?} {path}: {details}"
        );
        let written = bytes_written(details);
        assert!(written <= 32 << 20, "{who:?} {path}: wrote {written} bytes");
        assert!(written >= 16 << 20, "{who:?} {path}: only {written} bytes");
    }
}

#[test]
fn file_size_limit_gives_efbig() {
    if !is_root() {
        return;
    }
    for who in Who::ALL {
        let run = sandbox()
            .who(who)
            .exclusive()
            .args(["--file-size", "1M", "--timeout", "20"])
            .run(&["attack", "fill-disk", "/tmp/big"]);
        let details = run.assert_blocked("fill-disk");
        assert!(details.starts_with("write: File too large"), "{details}");
        assert_eq!(bytes_written(details), 1 << 20, "{details}");
        assert_eq!(run.enforced_by("file_size"), "rlimit", "{run}");
    }
}

/// `--disk` must cap the upper layer also when it is kept (written on the
/// host's disk rather than on a tmpfs), or comb must refuse the
/// combination; silently not limiting lets R fill the host's disk.
#[test]
fn disk_limit_holds_for_a_kept_upper_layer() {
    if !is_root() {
        return;
    }
    let out = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let kept = out.path().join("kept");
    // The short timeout bounds what a missing limit costs the host disk.
    let run = sandbox()
        .who(Who::R)
        .exclusive()
        .args(["--disk", "32M", "--timeout", "2"])
        .arg("--keep-upper")
        .arg(&kept)
        .run(&["attack", "fill-disk", "/big"]);
    let big = fs::metadata(kept.join("big")).map(|m| m.len()).unwrap_or(0);
    let _ = fs::remove_dir_all(&kept);
    if run.code == 2 && run.outcome.is_none() {
        assert!(
            run.stderr.contains("disk"),
            "refused, but not said why\n{run}"
        );
        return;
    }
    assert!(
        big <= 32 << 20,
        "--disk 32M is not enforced on a kept upper layer: the kept layer holds a \
         {big}-byte file (killed by {:?}; nothing in the outcome says the limit was off)\n{run}",
        run.killed_by()
    );
    let details = run.assert_blocked("fill-disk");
    assert!(
        details.starts_with("write: No space left on device")
            || details.starts_with("write: Disk quota exceeded"),
        "{details}"
    );
    assert!(bytes_written(details) <= 32 << 20, "{details}");
}

// 8. Leftovers and timeouts -----------------------------------------------

#[test]
fn wall_timeout_kills_every_process() {
    if !is_root() {
        return;
    }
    let cases: [(Who, &[&str], Option<&str>); 7] = [
        (Who::U, &["sleep", "1000000"], None),
        (
            Who::U,
            &["attack", "ignore-term"],
            Some("STARTED ignore-term"),
        ),
        (
            Who::R,
            &["attack", "ignore-term"],
            Some("STARTED ignore-term"),
        ),
        (
            Who::U,
            &["attack", "stop-self"],
            Some("STARTED stop-self: stopped child"),
        ),
        (
            Who::U,
            &["sh", "-c", "attack daemon; sleep 1000000"],
            Some("STARTED daemon"),
        ),
        (
            Who::R,
            &["sh", "-c", "attack daemon; sleep 1000000"],
            Some("STARTED daemon"),
        ),
        (
            Who::U,
            &["sh", "-c", "attack daemon-quiet; sleep 1000000"],
            Some("STARTED daemon-quiet"),
        ),
    ];
    for (who, command, started) in cases {
        let run = sandbox()
            .who(who)
            .exclusive()
            .args(["--timeout", "1"])
            .run(command);
        if let Some(started) = started {
            assert!(run.stdout.contains(started), "{run}");
        }
        assert_eq!(run.killed_by(), Some("wall-timeout"), "{run}");
        assert_eq!(run.code, 137, "{run}");
        assert_eq!(run.status(), ("signaled".to_string(), 9), "{run}");
        assert!(run.elapsed >= Duration::from_millis(900), "{run}");
        assert!(run.elapsed < Duration::from_secs(5), "{run}");
        // (No process of the slot is left: checked by `run`.)
    }
}

/// A daemon outlives its command only until the command exits: then the
/// sandbox ends at once with the command's status, and the daemon (even one
/// holding stdout open) is killed with it.
#[test]
fn daemons_die_with_their_command() {
    if !is_root() {
        return;
    }
    for_each_caller(|| {
        for (who, attack) in [
            (Who::U, "daemon"),
            (Who::R, "daemon"),
            (Who::U, "daemon-quiet"),
        ] {
            let run = sandbox()
                .who(who)
                .exclusive()
                .args(["--timeout", "3"])
                .run(&["attack", attack]);
            assert!(
                run.stdout
                    .contains(&format!("STARTED {attack}: grandchild pid")),
                "{run}"
            );
            assert_eq!(run.code, 0, "{run}");
            assert_eq!(run.status(), ("exited".to_string(), 0), "{run}");
            assert_eq!(run.killed_by(), None, "{run}");
            assert!(run.elapsed < Duration::from_secs(3), "{run}");
        }
    });
}

#[test]
fn idle_timeout_fires_without_output() {
    if !is_root() {
        return;
    }
    let run = sandbox().exclusive().args(["--idle-timeout", "1"]).run(&[
        "sh",
        "-c",
        "echo start; sleep 1000",
    ]);
    assert!(run.stdout.contains("start"), "{run}");
    assert_eq!(run.killed_by(), Some("idle-timeout"), "{run}");
    assert_eq!(run.code, 137, "{run}");
    assert!(run.elapsed < Duration::from_secs(5), "{run}");
    // Output keeps it alive past the idle time: it is not a wall timeout.
    let run = sandbox().args(["--idle-timeout", "1"]).run(&[
        "sh",
        "-c",
        "for i in 1 2 3 4; do echo tick; sleep 0.4; done",
    ]);
    assert_eq!(run.killed_by(), None, "{run}");
    assert_eq!(run.code, 0, "{run}");
    assert!(run.elapsed > Duration::from_millis(1500), "{run}");
}

#[test]
fn killing_comb_kills_its_sandbox() {
    if !is_root() {
        return;
    }
    for_each_caller(|| {
        let mut running = sandbox()
            .exclusive()
            .spawn(&["sh", "-c", "echo ready; sleep 1000"]);
        running.wait_for_stdout("ready", Duration::from_secs(10));
        // comb (its own monitor, as the caller) → pid 1 (as R) → sh, sleep (as
        // U); a multi-threaded caller has a monitor process in between.
        let comb = running.pid();
        let until = Instant::now() + Duration::from_secs(5);
        let (pid1, base) = loop {
            let children = children_of(comb);
            let grandchildren = children.iter().flat_map(|&c| children_of(c));
            let found = children
                .iter()
                .copied()
                .chain(grandchildren)
                .find_map(|p| uid_of(p).filter(|u| *u != 0).map(|u| (p, u)));
            if let Some(found) = found {
                break found;
            }
            assert!(Instant::now() < until, "no sandbox pid 1 below comb {comb}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let before = processes_in_range(base, base + SLOT_STRIDE);
        assert!(
            before.len() >= 2,
            "expected pid 1 ({pid1}) and the command in host uids {base}..: {before:?}"
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(comb),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        running.child.wait().unwrap();
        let until = Instant::now() + Duration::from_secs(3);
        loop {
            let left = processes_in_range(base, base + SLOT_STRIDE);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < until,
                "3 s after comb was killed, processes of its slot remain: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(running);
        // And the slot is usable again.
        let run = sandbox().run(&["true"]);
        assert_eq!(run.code, 0, "{run}");
    });
}

// 9. Kernel attack surface ------------------------------------------------

#[test]
fn kernel_attack_surface_is_blocked() {
    if !is_root() {
        return;
    }
    for_each_caller(|| {
        let attacks = [
            "keyctl",
            "bpf",
            "perf",
            "userfaultfd",
            "io-uring",
            "init-module",
            "settimeofday",
            "tiocsti",
            "keyctl32",
            "unshare32",
        ];
        for who in Who::ALL {
            for attack in attacks {
                let run = sandbox().who(who).run(&["attack", attack]);
                run.assert_blocked(attack);
            }
        }
    });
}

// 10. U against R's files, the layers and other sandboxes ------------------

#[test]
fn builder_cannot_write_roots_files() {
    if !is_root() {
        return;
    }
    // (a) A layer made on the host: uid 0 owns a file and a directory.
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer");
    fs::create_dir_all(layer.join("etc")).unwrap();
    fs::create_dir_all(layer.join("rootdir")).unwrap();
    fs::set_permissions(layer.join("rootdir"), fs::Permissions::from_mode(0o755)).unwrap();
    let file = layer.join("etc/rootfile");
    fs::write(&file, "R's\n").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let file_before = FileState::of(&file);
    // And a layer R made in a sandbox, as when it installs build
    // dependencies before U builds.
    let kept = dir.path().join("kept");
    let run = sandbox().who(Who::R).arg("--keep-upper").arg(&kept).run(&[
        "sh",
        "-c",
        "mkdir -p /var/rdir && echo R > /var/rdir/rfile && chmod 644 /var/rdir/rfile",
    ]);
    assert_eq!(run.code, 0, "{run}");
    let rfile = kept.join("var/rdir/rfile");
    let rfile_before = FileState::of(&rfile);
    assert_eq!(rfile_before.uid, 0, "R's file is uid 0 on disk");

    let script = "attack write-file /etc/rootfile; attack write-file /rootdir/new; \
        attack write-file /var/rdir/rfile; attack write-file /var/rdir/new; \
        attack chown-file /etc/rootfile 1000; attack xattr /etc/rootfile; \
        echo done; cat /etc/rootfile /var/rdir/rfile";
    let run = sandbox()
        .layer(&kept)
        .layer(&layer)
        .run(&["sh", "-c", script]);
    assert!(run.stdout.contains("done\nR's\nR\n"), "{run}");
    for line in run.stdout.lines().filter(|l| l.contains("write-file:")) {
        assert!(
            line.starts_with("BLOCKED write-file: open: Permission denied"),
            "{run}"
        );
    }
    assert_eq!(run.stdout.matches("BLOCKED write-file").count(), 4, "{run}");
    run.blocked_in("chown-file");
    run.blocked_in("xattr");
    file_before.assert_unchanged(&file);
    rfile_before.assert_unchanged(&rfile);
    assert!(!layer.join("rootdir/new").exists() && !kept.join("var/rdir/new").exists());
}

/// A layer with a file of U's, `/home/builder/mine`: (dir, layer, file).
fn layer_with_a_file_of_u() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer");
    fs::create_dir_all(layer.join("home/builder")).unwrap();
    let file = layer.join("home/builder/mine");
    fs::write(&file, "U's on the host\n").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&file, Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(layer.join("home/builder"), Some(1000), Some(1000)).unwrap();
    (dir, layer, file)
}

#[test]
fn builder_writes_to_its_own_lower_files_stay_in_the_upper_layer() {
    if !is_root() {
        return;
    }
    let (_dir, layer, file) = layer_with_a_file_of_u();
    let before = FileState::of(&file);
    let run = sandbox().layer(&layer).run(&[
        "sh",
        "-c",
        "attack write-file /home/builder/mine; cat /home/builder/mine",
    ]);
    // U may write it (the overlay copies it up into the sandbox's own
    // upper layer): the attack program calls that ESCAPED, and here it is
    // expected. What matters is the host file.
    assert!(
        run.stdout
            .contains("U's on the host\ncomb attack.c write-file was here"),
        "the write did not happen inside\n{run}"
    );
    before.assert_unchanged(&file);
}

#[test]
fn the_other_builder_has_its_own_ids_home_and_no_right_to_us_files() {
    if !is_root() {
        return;
    }
    let (_dir, layer, file) = layer_with_a_file_of_u();
    let before = FileState::of(&file);
    let run = sandbox().layer(&layer).who(Who::U2).run(&[
        "sh",
        "-c",
        "echo \"$(id -u):$(id -g) $(id -un) $HOME\"; touch \"$HOME/ok\" && echo home-writable; \
         attack write-file /home/builder/mine; attack write-file /home/builder/new; \
         attack chown-file /home/builder/mine 2000",
    ]);
    assert!(
        run.stdout
            .contains("2000:2000 builder2 /home/builder2\nhome-writable\n"),
        "{run}"
    );
    assert_eq!(run.stdout.matches("BLOCKED write-file").count(), 2, "{run}");
    run.blocked_in("chown-file");
    before.assert_unchanged(&file);
    assert!(!layer.join("home/builder/new").exists());
}

/// As root, two concurrent sandboxes hold slots of different host ids. An
/// ordinary user's sandboxes share the ids of its range (see
/// `comb_sandbox::caller`): their own pid, mount and IPC namespaces keep
/// them apart, which this checks for both callers: B, as R, neither sees
/// A's processes or files nor can signal or write them.
#[test]
fn concurrent_sandboxes_cannot_see_or_touch_each_other() {
    if !is_root() {
        return;
    }
    for caller in Caller::ALL {
        let mut a = sandbox().caller(caller).spawn(&[
            "sh",
            "-c",
            "echo secret-of-a > /tmp/a; echo ready; sleep 2; cat /tmp/a",
        ]);
        a.wait_for_stdout("ready", Duration::from_secs(10));
        let b = sandbox().caller(caller).who(Who::R).run(&[
            "sh",
            "-c",
            "for f in /proc/*/root/tmp/a; do [ -e \"$f\" ] && echo \"FOUND $f\"; done; \
             cat /proc/*/root/tmp/a; for f in /proc/*/root/tmp/a; do echo x >> $f; done; \
             ps -o pid,user,comm; kill -KILL -1; echo signalled",
        ]);
        let a = a.wait();
        assert_eq!(a.code, 0, "{caller:?}: A was killed or failed\n{a}");
        assert_eq!(
            a.stdout, "ready\nsecret-of-a\n",
            "{caller:?}: A's file was changed\n{a}"
        );
        assert!(!b.stdout.contains("secret-of-a"), "B read A's file\n{b}");
        assert!(!b.stdout.contains("FOUND"), "B found A's file\n{b}");
        assert!(
            !b.stdout.contains("sleep"),
            "B sees A's processes (its pid namespace should show only B)\n{b}"
        );
        assert!(
            b.stdout.lines().any(|l| l.trim_end().ends_with(" ps")),
            "B's ps listed nothing, so it could not have shown A\n{b}"
        );
        assert_ne!(a.slot(), b.slot(), "two concurrent sandboxes share a slot");
        let (ra, rb) = (a.host_root_uid(), b.host_root_uid());
        match caller {
            Caller::Root => assert!(
                ra.abs_diff(rb) >= SLOT_STRIDE,
                "host id ranges overlap: {ra} and {rb}"
            ),
            Caller::User => assert_eq!(ra, rb, "an ordinary user's R is one id of its range"),
        }
    }
}

// 11. The Invirtibuilder: R is root of nothing on the host -----------------

#[test]
fn root_cannot_leave_a_setuid_root_binary_in_a_kept_layer() {
    if !is_root() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let kept = out.path().join("kept");
    let run = sandbox().who(Who::R).arg("--keep-upper").arg(&kept).run(&[
        "attack",
        "setuid-root-leave",
        "/usr/bin/evil",
    ]);
    let details = run.assert_blocked("setuid-root-leave");
    assert!(details.contains("chmod 04755"), "{details}");
    let evil = kept.join("usr/bin/evil");
    if let Ok(meta) = fs::symlink_metadata(&evil) {
        // R's files belong to uid 0 on disk (the layer is idmapped): by
        // design. A setuid bit would make it a setuid-root binary.
        assert_eq!(meta.mode() & 0o6000, 0, "mode {:o}", meta.mode());
        assert!(meta.is_file());
    }
    assert_no_setid_or_devices(&kept);
}

#[test]
fn root_cannot_plant_a_setuid_file_through_a_writable_bind() {
    if !is_root() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let script = "echo started; touch /out/f; chown 0:0 /out/f; chmod 4755 /out/f; \
        attack setuid-root-leave /out/evil; attack setuid-chmod /out/g; \
        attack setuid-open /out/h; attack setuid-mknod /out/i; attack mknod-dev /out";
    let run = sandbox()
        .who(Who::R)
        .arg("--bind")
        .arg(format!("{}:/out:rw", out.path().display()))
        .run(&["sh", "-c", script]);
    assert!(
        run.stdout.contains("started"),
        "the sandbox with a writable bind did not start\n{run}"
    );
    for attack in [
        "setuid-root-leave",
        "setuid-chmod",
        "setuid-open",
        "setuid-mknod",
        "mknod-dev",
    ] {
        run.blocked_in(attack);
    }
    // Files R makes in a writable bind may be uid 0 on the host (binds are
    // idmapped, so R's uid 0 is written as 0): by design, the caller chose
    // to give R this directory. What must never appear is a setuid or
    // setgid file or a device.
    let entries = assert_no_setid_or_devices(out.path());
    let f = out.path().join("f");
    assert!(
        entries.iter().any(|(p, _)| *p == f),
        "/out/f was not created on the host: {entries:?}\n{run}"
    );
}

// 12. Hostile outputs, end to end ------------------------------------------

#[test]
fn a_fifo_in_a_kept_layer_is_rejected() {
    if !is_root() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let kept = out.path().join("kept");
    let run = sandbox()
        .who(Who::R)
        .arg("--keep-upper")
        .arg(&kept)
        .run(&["mkfifo", "/x"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.outcome.is_none(), "{run}");
    let names_it = run.stderr.lines().any(|line| {
        line.to_lowercase().contains("fifo")
            && line
                .split(|c: char| c.is_whitespace() || matches!(c, ':' | '"' | '\'' | '`'))
                .any(|word| word == "x" || word.ends_with("/x"))
    });
    assert!(
        names_it,
        "the error should name the path x and say FIFO\n{run}"
    );
    assert!(!kept.exists(), "the rejected layer was kept\n{run}");
    let left: Vec<_> = fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_hard_link_to_a_lower_file_changes_nothing_on_the_host() {
    if !is_root() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let kept = out.path().join("kept");
    let run = sandbox().who(Who::R).arg("--keep-upper").arg(&kept).run(&[
        "sh",
        "-c",
        "ln /bin/busybox /hl && echo linked; echo more >> /hl; chmod 4755 /hl; echo done",
    ]);
    assert!(matches!(run.code, 0 | 2), "{run}");
    let busybox = fixture().root.join("bin/busybox");
    fixture().busybox.assert_unchanged(&busybox);
    assert_eq!(fixture().busybox.nlink, 1);
    if kept.exists() {
        // Whatever comb accepted, it is a layer of plain files that link
        // to nothing outside it.
        for (path, meta) in assert_no_setid_or_devices(&kept) {
            if meta.is_file() {
                assert_ne!(meta.ino(), fixture().busybox.ino, "{}", path.display());
            }
        }
    }
}

// Honest limits ------------------------------------------------------------

#[test]
fn limits_are_reported_honestly() {
    if !is_root() {
        return;
    }
    let run = sandbox()
        .args(["--memory", "64M", "--pids", "50", "--file-size", "1M"])
        .run(&["true"]);
    assert_eq!(run.code, 0, "{run}");
    for limit in ["memory", "pids", "file_size"] {
        assert_ne!(run.enforced_by(limit), "not-limited", "{limit}\n{run}");
    }
    assert_eq!(run.enforced_by("cpu_time"), "not-limited", "{run}");
    assert_eq!(run.enforced_by("wall_timeout"), "not-limited", "{run}");
    let run = sandbox().run(&["true"]);
    assert_eq!(run.enforced_by("memory"), "not-limited", "{run}");
}

/// A CPU limit that is reported is enforced, and the outcome says it fired.
/// Repeated because the wrong answer (killed by SIGKILL, `killed_by` null)
/// comes from a race between the RLIMIT_CPU kill and the monitor's tick.
#[test]
fn cpu_time_limit_is_enforced_and_named() {
    if !is_root() {
        return;
    }
    for _ in 0..3 {
        let run = sandbox()
            .args(["--cpu-time", "1", "--timeout", "10"])
            .run(&["sh", "-c", "while :; do :; done"]);
        assert_ne!(run.enforced_by("cpu_time"), "not-limited", "{run}");
        assert_eq!(run.code, 128 + run.status().1 as i32, "{run}");
        assert_eq!(run.status().0, "signaled", "{run}");
        assert!(run.elapsed < Duration::from_secs(8), "{run}");
        assert_eq!(
            run.killed_by(),
            Some("cpu-time"),
            "killed after 1 s of CPU, but the outcome does not say by what\n{run}"
        );
    }
}

// 13. What a review found (issue 13), for root and for an ordinary user ----

/// A directory the sandbox's U may write, whoever runs comb.
fn shared_dir(name: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(name)
        .tempdir_in("/tmp")
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

#[test]
fn socket_families_pidfd_getfd_modify_ldt_and_personality_are_refused() {
    if !is_root() {
        return;
    }
    let attacks = [
        "socket-families",
        "socket32",
        "personality",
        "modify-ldt",
        "pidfd-getfd",
    ];
    let script = "attack socket-families; attack socket32; attack personality; \
                  attack modify-ldt; attack pidfd-getfd 1";
    for caller in Caller::ALL {
        for who in Who::ALL {
            let run = sandbox().caller(caller).who(who).run(&["sh", "-c", script]);
            for attack in attacks {
                let details = run.blocked_in(attack);
                assert!(!details.is_empty(), "{caller:?} {who:?} {attack}\n{run}");
            }
            let families = run.blocked_in("socket-families");
            for family in [
                "AF_VSOCK",
                "AF_PACKET",
                "AF_ALG",
                "AF_XDP",
                "AF_VSOCK with high bits",
            ] {
                assert!(
                    families.contains(&format!("socket({family}): Address family not supported")),
                    "{caller:?} {who:?}: {family}: {families}"
                );
            }
            for needed in ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK route"] {
                assert!(
                    families.contains(&format!("allowed: {needed}")),
                    "{caller:?} {who:?}: {needed} refused: {families}"
                );
            }
            assert!(
                run.blocked_in("socket32").contains(
                    "socketcall(SYS_SOCKET, AF_VSOCK) via int $0x80: Function not implemented"
                ),
                "{run}"
            );
            assert_eq!(run.code, 0, "{run}");
        }
    }
}

#[test]
fn a_memory_limit_counts_the_ram_backed_file_systems() {
    if !is_root() {
        return;
    }
    // 96 MiB into /tmp and 96 MiB into /dev/shm under a 64 MiB limit.
    let script = "dd if=/dev/zero of=/tmp/a bs=1M count=96 2>/dev/null; \
                  dd if=/dev/zero of=/dev/shm/b bs=1M count=96 2>/dev/null; \
                  echo stored $(( $(stat -c %s /tmp/a) + $(stat -c %s /dev/shm/b) ))";
    for caller in Caller::ALL {
        let run = sandbox()
            .caller(caller)
            .exclusive()
            .args(["--memory", "64M", "--timeout", "30"])
            .run(&["sh", "-c", script]);
        let how = run.enforced_by("memory").to_string();
        assert_ne!(how, "not-limited", "{caller:?}\n{run}");
        let ram = &run.outcome()["enforced_by"]["ram_filesystems"];
        let total: u64 = ["upper", "tmp", "shm"]
            .iter()
            .map(|k| ram[k].as_u64().unwrap())
            .sum();
        if how == "rlimit" {
            // No cgroup counts tmpfs pages: the file systems must fit.
            assert!(
                total <= 64 << 20,
                "{caller:?}: RAM file systems of {total} bytes\n{run}"
            );
            let stored: u64 = run
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix("stored "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("no stored line\n{run}"));
            assert!(
                stored <= 64 << 20,
                "{caller:?}: stored {stored} bytes in RAM\n{run}"
            );
            assert!(stored >= 32 << 20, "{caller:?}: only {stored} bytes\n{run}");
        } else {
            // A cgroup counts them: the sandbox is killed for memory.
            assert_eq!(run.killed_by(), Some("memory"), "{caller:?}\n{run}");
        }
    }
}

#[test]
fn the_disk_limit_counts_writable_binds() {
    if !is_root() {
        return;
    }
    for caller in Caller::ALL {
        let build = shared_dir("comb-disk-bind-");
        let run = sandbox()
            .caller(caller)
            .exclusive()
            .arg("--bind")
            .arg(format!("{}:/build:rw", build.path().display()))
            .args(["--disk", "32M", "--timeout", "60"])
            .run(&[
                "sh",
                "-c",
                "dd if=/dev/zero of=/build/big bs=1M count=4000; echo finished",
            ]);
        assert_eq!(run.killed_by(), Some("disk"), "{caller:?}\n{run}");
        assert_eq!(run.code, 137, "{caller:?}\n{run}");
        assert!(!run.stdout.contains("finished"), "{caller:?}\n{run}");
        assert_eq!(run.enforced_by("disk"), "measured", "{run}");
        let size = fs::metadata(build.path().join("big")).map_or(0, |m| m.len());
        assert!(
            size < 4000 << 20,
            "{caller:?}: the whole file was written\n{run}"
        );
        let peak = run.outcome()["usage"]["peak_disk_bytes"].as_u64().unwrap();
        assert!(peak > 32 << 20, "{caller:?}: peak {peak}\n{run}");
    }
}

/// Two sandboxes of one user with different environments take different
/// slots, and the second does not kill the first as a leftover.
#[test]
fn slots_depend_on_host_ids_not_on_the_environment() {
    if !is_root() {
        return;
    }
    for caller in Caller::ALL {
        let runtime = [shared_dir("comb-xdg-a-"), shared_dir("comb-xdg-b-")];
        let mut first = sandbox()
            .caller(caller)
            .host_env("XDG_RUNTIME_DIR", runtime[0].path())
            .spawn(&["sh", "-c", "echo started; sleep 3; echo finished"]);
        first.wait_for_stdout("started", Duration::from_secs(20));
        let second = sandbox()
            .caller(caller)
            .host_env("XDG_RUNTIME_DIR", runtime[1].path())
            .host_env("TMPDIR", runtime[1].path())
            .run(&["true"]);
        assert_eq!(second.code, 0, "{second}");
        let first = first.wait();
        assert_eq!(first.code, 0, "{caller:?}: the first sandbox died\n{first}");
        assert!(first.stdout.contains("finished"), "{first}");
        assert_ne!(first.slot(), second.slot(), "{caller:?}: one slot twice");
        if caller == Caller::Root {
            assert_ne!(
                first.host_root_uid(),
                second.host_root_uid(),
                "two live sandboxes of root shared host ids\n{first}\n{second}"
            );
        }
    }
}

#[test]
fn nothing_of_the_host_layout_is_visible_inside() {
    if !is_root() {
        return;
    }
    let script = "cat /proc/self/mountinfo; cat /proc/1/mountinfo 2>&1; \
                  tr '\\0' ' ' </proc/1/cmdline; echo; tr '\\0' ' ' </proc/self/cmdline; echo; \
                  cat /proc/1/environ 2>&1; cat /proc/self/environ; echo; \
                  ls -l /proc/1/exe /proc/1/cwd /proc/1/root 2>&1; \
                  cat /proc/self/cgroup; ls /tmp /; echo end";
    for caller in Caller::ALL {
        let writable = shared_dir("comb-host-layout-rw-");
        let readable = shared_dir("comb-host-layout-ro-");
        fs::write(readable.path().join("f"), "x").unwrap();
        for who in Who::ALL {
            let run = sandbox()
                .caller(caller)
                .who(who)
                .arg("--bind")
                .arg(format!("{}:/build:rw", writable.path().display()))
                .arg("--bind")
                .arg(format!("{}:/ro", readable.path().display()))
                .run(&["sh", "-c", script]);
            assert_eq!(run.code, 0, "{run}");
            assert!(run.stdout.contains("end"), "{run}");
            let host_ids = [run.host_root_uid(), run.host_builder_uid()];
            let fixture_root = fixture().root.display().to_string();
            let forbidden = [
                fixture_root.as_str(),
                writable.path().to_str().unwrap(),
                readable.path().to_str().unwrap(),
                "comb-host-layout",
                "/run/comb",
                "/tmp/comb-",
                "slots",
                COMB,
                env!("CARGO_MANIFEST_DIR"),
                "target/",
            ];
            for needle in forbidden {
                assert!(
                    !run.stdout.contains(needle),
                    "{caller:?} {who:?}: {needle:?} is visible inside:\n{run}"
                );
            }
            for id in host_ids {
                assert!(
                    !run.stdout.contains(&id.to_string()),
                    "{caller:?} {who:?}: host id {id} is visible inside:\n{run}"
                );
            }
        }
    }
}

/// `exec 9</secret; comb sandbox run ...`: fd 9 reaches neither comb (its
/// own monitor) nor pid 1 nor the command.
#[test]
fn the_callers_descriptors_reach_nothing_comb_starts() {
    if !is_root() {
        return;
    }
    let dir = shared_dir("comb-leaked-fd-");
    let secret = host_file(&dir, "secret", "secret\n");
    let file = fs::File::open(&secret).unwrap();
    for caller in Caller::ALL {
        let mut running = sandbox().caller(caller).inherit_fd(9, &file).spawn(&[
            "sh",
            "-c",
            "ls -l /proc/self/fd/; echo started; sleep 2",
        ]);
        running.wait_for_stdout("started", Duration::from_secs(20));
        let mut pids = vec![running.pid()];
        let mut i = 0;
        while i < pids.len() {
            pids.extend(children_of(pids[i]));
            i += 1;
        }
        // comb (its own monitor), pid 1 and the command (and sleep).
        assert!(pids.len() >= 3, "{caller:?}: only {pids:?}");
        for pid in &pids {
            let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                let target = fs::read_link(fd.path()).unwrap_or_default();
                assert_ne!(
                    target,
                    secret,
                    "{caller:?}: process {pid} holds the caller's fd {:?}",
                    fd.file_name()
                );
            }
        }
        let run = running.wait();
        assert_eq!(run.code, 0, "{run}");
        assert!(!run.stdout.contains("secret"), "{run}");
    }
}

#[test]
fn dev_stdout_dev_stderr_and_dev_fd_work() {
    if !is_root() {
        return;
    }
    // builder2 needs its user added to a root-owned /etc/passwd, which an
    // ordinary user's layers (seen without idmapping) do not allow.
    let cases = [
        (Caller::Root, Who::R),
        (Caller::Root, Who::U),
        (Caller::Root, Who::U2),
        (Caller::User, Who::R),
        (Caller::User, Who::U),
    ];
    for (caller, who) in cases {
        {
            let run = sandbox().caller(caller).who(who).run(&[
                "sh",
                "-c",
                "echo out > /dev/stdout && echo err > /dev/stderr && echo fd > /dev/fd/1 \
                 && echo fd2 >> /dev/fd/2 && cat /dev/stdin",
            ]);
            assert_eq!(run.code, 0, "{caller:?} {who:?}\n{run}");
            assert!(
                run.stdout.contains("out\nfd\n"),
                "{caller:?} {who:?}\n{run}"
            );
            assert!(
                run.stderr.contains("err\nfd2\n"),
                "{caller:?} {who:?}\n{run}"
            );
        }
    }
}

/// What a build starts with matches Debian's buildds where that weakens
/// nothing: every signal at its default (a Rust caller ignores SIGPIPE,
/// and an ignored signal survives exec), `localhost` and the sandbox's
/// name in `/etc/hosts`, a soft open-files limit of 1024 under the hard
/// one, stdin `/dev/null` open for reading and writing, no NIS domain.
#[test]
fn a_command_starts_as_on_a_buildd() {
    if !is_root() {
        return;
    }
    let script = "sh -c 'kill -PIPE $$'; echo \"pipe=$?\"; \
                  cat /etc/hosts; echo \"nofile=$(ulimit -n)\"; echo \"hard=$(ulimit -Hn)\"; \
                  echo written >&0 && echo \"stdin=rw\"; \
                  echo \"domain=$(cat /proc/sys/kernel/domainname)\"";
    for caller in Caller::ALL {
        for who in Who::ALL {
            let run = sandbox().caller(caller).who(who).run(&["sh", "-c", script]);
            assert_eq!(run.code, 0, "{caller:?} {who:?}: {run}");
            for expected in [
                "pipe=141",
                "127.0.0.1\tlocalhost",
                "127.0.1.1\tcomb",
                "nofile=1024",
                "stdin=rw",
                "domain=(none)",
            ] {
                assert!(
                    run.stdout.contains(expected),
                    "{caller:?} {who:?}: no {expected:?} in\n{run}"
                );
            }
            let hard: u64 = run
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix("hard="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            assert!(hard >= 1024, "{run}");
        }
    }
}
