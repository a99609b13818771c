//! Whether a file the daemon acts on may be trusted: `comb.toml` (it names
//! the hooks, which run as the daemon's user) and the hooks themselves.
//!
//! A file is trusted when nobody but the daemon's own user and root can
//! change what the daemon reads or runs at its path: the file, and every
//! directory on the way to it from `/`, including every directory a
//! symbolic link on the way passes through, is owned by one of them and
//! writable by no one else. Group- and world-writable count as writable by
//! others whoever the group is. A directory that is writable by others but
//! sticky (`/tmp`) is accepted only as a container: others cannot remove or
//! rename what they do not own there, so the entry in it must itself be
//! owned by the daemon's user or root (which every entry must anyway), and
//! a symbolic link in it likewise.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Links followed on one path before giving up (as the kernel does).
const MAX_LINKS: usize = 40;

/// Why a path is not trusted; the message names the file, its mode and
/// owner, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Untrusted(pub String);

/// Users whose files the daemon trusts: itself and root (host uids).
fn trusted_owner(uid: u32, me: u32) -> bool {
    uid == 0 || uid == me
}

fn mode_text(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

fn owner_text(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// Checks that `path` (a `what`, e.g. "configuration file" or "hook") is
/// trusted by a daemon running as `me` (see the module doc): a regular
/// file at the end of a trusted path.
pub fn check(path: &Path, what: &str, me: u32) -> Result<(), Untrusted> {
    let path = std::path::absolute(path)
        .map_err(|e| Untrusted(format!("the {what} {}: {e}", path.display())))?;
    let refuse = |at: &Path, why: String, fix: String| {
        Untrusted(if at == path {
            format!("refusing the {what} {}: it {why}; {fix}", path.display())
        } else {
            format!(
                "refusing the {what} {}: {} on its way {why}; {fix}",
                path.display(),
                at.display()
            )
        })
    };
    let fix_owner = |at: &Path| {
        format!(
            "give it to root or the daemon's user (chown root {}), or keep the {what} elsewhere",
            at.display()
        )
    };
    let fix_mode = |at: &Path| {
        format!(
            "make it writable only by its owner (chmod go-w {}), or keep the {what} elsewhere",
            at.display()
        )
    };

    // Components still to walk, front first; `at` is where we are, a
    // directory already found trusted (or sticky, see `container_sticky`).
    let mut todo: Vec<OsString> = Vec::new();
    push_front(&mut todo, &path);
    let mut at = PathBuf::from("/");
    check_dir(&at, me).map_err(|(why, mode_problem)| {
        refuse(
            &at,
            why,
            if mode_problem {
                fix_mode(&at)
            } else {
                fix_owner(&at)
            },
        )
    })?;
    let mut container_sticky = others_may_write(&at);
    let mut links = 0;
    while let Some(name) = todo.pop() {
        match name.to_str() {
            Some("/") => {
                at = PathBuf::from("/");
                container_sticky = others_may_write(&at);
                continue;
            }
            Some(".") => continue,
            Some("..") => {
                // The parent of a trusted directory is one we checked on
                // the way down (or `/`).
                at.pop();
                container_sticky = others_may_write(&at);
                continue;
            }
            _ => {}
        }
        let next = at.join(&name);
        let unreadable = |e: std::io::Error| {
            Untrusted(if next == path {
                format!("the {what} {}: {e}", path.display())
            } else {
                format!("the {what} {}: {}: {e}", path.display(), next.display())
            })
        };
        let md = std::fs::symlink_metadata(&next).map_err(unreadable)?;
        let uid = comb_engine::host::owner(&next, false).map_err(unreadable)?;
        if md.file_type().is_symlink() {
            // The link can be replaced by whoever may write its directory
            // (checked) or, in a sticky one, by its owner.
            if container_sticky && !trusted_owner(uid, me) {
                return Err(refuse(
                    &next,
                    format!(
                        "is a symbolic link owned by {} in a directory others may write",
                        owner_text(uid)
                    ),
                    fix_owner(&next),
                ));
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(Untrusted(format!(
                    "the {what} {}: too many symbolic links on the way",
                    path.display()
                )));
            }
            let target = std::fs::read_link(&next)
                .map_err(|e| Untrusted(format!("the {what} {}: {e}", next.display())))?;
            push_front(&mut todo, &target);
            continue;
        }
        if !trusted_owner(uid, me) {
            return Err(refuse(
                &next,
                format!(
                    "is owned by {} (mode {}): that user could change it",
                    owner_text(uid),
                    mode_text(md.mode())
                ),
                fix_owner(&next),
            ));
        }
        let last = todo.is_empty();
        if md.is_dir() {
            check_dir(&next, me).map_err(|(why, mode_problem)| {
                refuse(
                    &next,
                    why,
                    if mode_problem {
                        fix_mode(&next)
                    } else {
                        fix_owner(&next)
                    },
                )
            })?;
            container_sticky = md.mode() & 0o022 != 0;
            if last {
                return Err(Untrusted(format!(
                    "the {what} {} is a directory, not a file",
                    path.display()
                )));
            }
            at = next;
            continue;
        }
        if !last {
            return Err(Untrusted(format!(
                "the {what} {}: {} is not a directory",
                path.display(),
                next.display()
            )));
        }
        if !md.is_file() {
            return Err(Untrusted(format!(
                "the {what} {} is not a regular file",
                path.display()
            )));
        }
        if md.mode() & 0o022 != 0 {
            return Err(refuse(
                &next,
                format!(
                    "is {} (mode {}, owner {}): others could change it",
                    writable_by(md.mode()),
                    mode_text(md.mode()),
                    owner_text(uid)
                ),
                fix_mode(&next),
            ));
        }
        return Ok(());
    }
    Err(Untrusted(format!(
        "the {what} {} names no file",
        path.display()
    )))
}

/// `Err((why, is_the_mode))` when `dir` is not trusted as a directory on
/// the way: owned by someone else, or writable by others without the
/// sticky bit.
fn check_dir(dir: &Path, me: u32) -> Result<(), (String, bool)> {
    let md = std::fs::metadata(dir).map_err(|e| (format!("cannot be read: {e}"), false))?;
    let uid =
        comb_engine::host::owner(dir, true).map_err(|e| (format!("cannot be read: {e}"), false))?;
    if !trusted_owner(uid, me) {
        return Err((
            format!(
                "is owned by {} (mode {}): that user could replace what is in it",
                owner_text(uid),
                mode_text(md.mode())
            ),
            false,
        ));
    }
    if md.mode() & 0o022 != 0 && md.mode() & 0o1000 == 0 {
        return Err((
            format!(
                "is {} without the sticky bit (mode {}): others could replace what is in it",
                writable_by(md.mode()),
                mode_text(md.mode())
            ),
            true,
        ));
    }
    Ok(())
}

/// A directory already checked that others may write (so it is sticky).
fn others_may_write(dir: &Path) -> bool {
    std::fs::metadata(dir).map_or(true, |md| md.mode() & 0o022 != 0)
}

fn writable_by(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "group- and world-writable",
        (true, false) => "group-writable",
        _ => "world-writable",
    }
}

/// Puts `path`'s components in front of `todo` (which is used as a stack:
/// the next component is last).
fn push_front(todo: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .map(|c| match c {
            Component::RootDir | Component::Prefix(_) => OsString::from("/"),
            Component::CurDir => OsString::from("."),
            Component::ParentDir => OsString::from(".."),
            Component::Normal(n) => n.to_os_string(),
        })
        .collect();
    todo.extend(parts.into_iter().rev());
}

/// The daemon's own host uid (also inside its user namespace).
pub fn me() -> u32 {
    comb_engine::host::uid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A private directory to test in (tempdir is 0700, owned by us).
    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn file(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "x").unwrap();
        chmod(&p, mode);
        p
    }

    #[test]
    fn a_private_file_is_trusted() {
        let d = dir();
        let f = file(d.path(), "comb.toml", 0o644);
        check(&f, "configuration file", me()).unwrap();
        // Its mode alone does not matter as long as only the owner writes.
        chmod(&f, 0o400);
        check(&f, "configuration file", me()).unwrap();
    }

    #[test]
    fn a_file_writable_by_others_is_refused_naming_its_mode() {
        let d = dir();
        for (mode, words) in [
            (0o666, "group- and world-writable"),
            (0o664, "group-writable"),
            (0o646, "world-writable"),
            (0o775, "group-writable"),
        ] {
            let f = file(d.path(), "hook", mode);
            let e = check(&f, "hook", me()).unwrap_err().0;
            assert!(e.contains(&f.display().to_string()), "{e}");
            assert!(e.contains(&format!("mode {:04o}", mode)), "{e}");
            assert!(e.contains(words), "{e}");
            assert!(e.contains("chmod go-w"), "{e}");
        }
    }

    #[test]
    fn a_directory_above_writable_by_others_is_refused() {
        let d = dir();
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        let inner = open.join("repo");
        std::fs::create_dir(&inner).unwrap();
        let f = file(&inner, "comb.toml", 0o644);
        check(&f, "configuration file", me()).unwrap();
        chmod(&open, 0o777);
        let e = check(&f, "configuration file", me()).unwrap_err().0;
        assert!(e.contains(&f.display().to_string()), "{e}");
        assert!(e.contains(&open.display().to_string()), "{e}");
        assert!(e.contains("mode 0777"), "{e}");
        assert!(e.contains("without the sticky bit"), "{e}");
        chmod(&open, 0o775);
        assert!(check(&f, "configuration file", me())
            .unwrap_err()
            .0
            .contains("mode 0775"));
        // Sticky, like /tmp: entries we own are protected from others.
        chmod(&open, 0o1777);
        check(&f, "configuration file", me()).unwrap();
    }

    #[test]
    fn a_file_of_another_user_is_refused() {
        if me() != 0 {
            return; // only root can give files away
        }
        let d = dir();
        let f = file(d.path(), "comb.toml", 0o644);
        nix::unistd::chown(&f, Some(nix::unistd::Uid::from_raw(4_000_123)), None).unwrap();
        let e = check(&f, "configuration file", me()).unwrap_err().0;
        assert!(e.contains("uid 4000123"), "{e}");
        assert!(e.contains("mode 0644"), "{e}");
        // In a sticky world-writable directory, someone else's file is
        // what a stranger planted.
        let sticky = d.path().join("sticky");
        std::fs::create_dir(&sticky).unwrap();
        chmod(&sticky, 0o1777);
        let planted = file(&sticky, "comb.toml", 0o644);
        nix::unistd::chown(&planted, Some(nix::unistd::Uid::from_raw(4_000_123)), None).unwrap();
        assert!(check(&planted, "configuration file", me()).is_err());
        // So is a link a stranger planted there, whatever it points to.
        let mine = file(d.path(), "mine", 0o644);
        let link = sticky.join("link.toml");
        std::os::unix::fs::symlink(&mine, &link).unwrap();
        check(&link, "configuration file", me()).unwrap();
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &link,
            Some(nix::unistd::Uid::from_raw(4_000_123)),
            None,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let e = check(&link, "configuration file", me()).unwrap_err().0;
        assert!(e.contains("symbolic link owned by uid 4000123"), "{e}");
    }

    #[test]
    fn links_are_followed_and_every_directory_on_the_way_checked() {
        let d = dir();
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        let real = file(&open, "hook", 0o755);
        let link = d.path().join("hook");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        check(&link, "hook", me()).unwrap();
        chmod(&open, 0o757);
        let e = check(&link, "hook", me()).unwrap_err().0;
        assert!(e.contains(&open.display().to_string()), "{e}");
        assert!(e.contains("mode 0757"), "{e}");
        // A link to a link, relative.
        chmod(&open, 0o755);
        let second = d.path().join("second");
        std::os::unix::fs::symlink("hook", &second).unwrap();
        check(&second, "hook", me()).unwrap();
        // A loop ends.
        let a = d.path().join("a");
        std::os::unix::fs::symlink("b", &a).unwrap();
        std::os::unix::fs::symlink("a", d.path().join("b")).unwrap();
        assert!(check(&a, "hook", me()).unwrap_err().0.contains("too many"));
    }

    #[test]
    fn directories_and_missing_files_are_refused() {
        let d = dir();
        assert!(check(d.path(), "hook", me())
            .unwrap_err()
            .0
            .contains("is a directory"));
        assert!(check(&d.path().join("missing"), "hook", me()).is_err());
    }
}
