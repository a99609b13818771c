//! The sandbox's file system, assembled by its pid 1 inside the new user
//! and mount namespaces: an overlay of the layers, fresh `/proc`, a minimal
//! `/dev`, a size-capped `/tmp`, the binds, then `pivot_root`.
//!
//! Layers and bind sources arrive as file descriptors opened on the host by
//! the monitor (idmapped when comb is root), and are reached through
//! `/proc/self/fd/N`, so no host path is resolved with the sandbox's ids.
//! Mount targets inside the new root are opened component by component
//! without following symlinks: a hostile layer cannot redirect a mount.

use nix::fcntl::{openat, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mkdirat, Mode};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Component, Path};

/// Where pid 1 mounts its staging tmpfs (in its own mount namespace, over
/// whatever the host has there): the overlay's options name the layers
/// and the upper directory below it, as `/proc/self/mountinfo` shows them
/// inside, so it must say nothing about the host.
pub(crate) const STAGE: &str = "/tmp";

/// The devices the sandbox gets, bound from the host's.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

pub(crate) type MountResult<T> = Result<T, String>;

/// What pid 1 needs to build the root.
pub(crate) struct RootPlan<'a> {
    pub stage: &'a Path,
    /// Layer fds, bottom first.
    pub layers: &'a [OwnedFd],
    /// Directory holding `upper/` and `work/` when the upper is kept.
    pub keep: Option<&'a OwnedFd>,
    pub binds: Vec<BindPlan<'a>>,
    pub idmapped: bool,
    pub upper_size: u64,
    pub tmp_size: u64,
    pub shm_size: u64,
    /// The sandbox's host name, for an `/etc/hosts` of its own where the
    /// layers have none (never in a kept upper layer).
    pub hostname: &'a str,
}

/// One bind: the source's fd (an idmapped detached tree when comb is root),
/// where it goes, and for a writable directory the overlay's way around it.
pub(crate) struct BindPlan<'a> {
    pub fd: &'a OwnedFd,
    pub target: &'a Path,
    pub writable: bool,
    pub aux: Option<BindAuxPlan<'a>>,
}

/// The source's parent directory as one tree (overlayfs wants its upper
/// and work directories on the same mount), with the names in it of the
/// source and of the sibling holding the empty `lower/` and `work/`.
pub(crate) struct BindAuxPlan<'a> {
    pub parent: &'a OwnedFd,
    pub source_name: &'a str,
    pub aux_name: &'a str,
}

/// A path for a layer fd that overlayfs can use. overlayfs clones its
/// layers' mounts, which it may only do for mounts in this namespace, so an
/// idmapped tree (detached, made by the host) is first attached below the
/// stage. A plain fd opened in this namespace is used as it is.
fn attach(plan: &RootPlan, fd: &OwnedFd, name: &str) -> MountResult<String> {
    if !plan.idmapped {
        return Ok(fd_path(fd.as_raw_fd()));
    }
    let target = plan.stage.join(name);
    std::fs::create_dir_all(&target).map_err(|e| format!("creating {}: {e}", target.display()))?;
    let target = target.display().to_string();
    move_mount(fd.as_raw_fd(), &target).map_err(|e| format!("attaching {name}: {e}"))?;
    Ok(target)
}

fn fd_path(fd: RawFd) -> String {
    format!("/proc/self/fd/{fd}")
}

fn errno(what: &str, e: nix::Error) -> String {
    format!("{what}: {e}")
}

/// The kept upper layer's tmpfs directory and its host destination,
/// still reachable through these fds after the pivot.
pub(crate) struct KeepCopy {
    pub from: OwnedFd,
    pub to: OwnedFd,
    /// The sandbox's own directories in the upper layer, not copied.
    pub skip: &'static [&'static str],
}

/// `/tmp` and `/dev`, made in the upper layer as opaque directories so that
/// nothing of the layers below shows through.
const FRESH_DIRS: [(&str, u32); 2] = [("tmp", 0o1777), ("dev", 0o755)];

/// Makes the fresh directories in the upper layer before the overlay is
/// mounted. False when the staging tmpfs takes no `user.*` xattrs (Linux
/// before 6.6): they are then separate mounts (`scratch_dir`).
fn fresh_dirs(upper: &Path) -> bool {
    FRESH_DIRS.iter().all(|(name, mode)| {
        let dir = upper.join(name);
        let made = std::fs::create_dir(&dir).and_then(|()| {
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(*mode))
        });
        made.is_ok() && set_opaque(&dir)
    })
}

/// Puts an `/etc/hosts` into the upper layer, so that `localhost` and the
/// sandbox's own name resolve as on Debian's buildds (test suites connect
/// to "localhost"), when the layers have an `/etc` and no `etc/hosts` (nor
/// a link or whiteout of that name). Made before the overlay is mounted, so
/// it needs no right to write the layers' `/etc`.
fn add_hosts(upper: &Path, lower: &[String], hostname: &str) {
    let has = |layer: &String, path: &str| Path::new(layer).join(path).symlink_metadata();
    if lower.iter().any(|l| has(l, "etc/hosts").is_ok())
        || !lower
            .iter()
            .any(|l| has(l, "etc").is_ok_and(|m| m.is_dir()))
    {
        return;
    }
    let etc = upper.join("etc");
    let made = std::fs::create_dir(&etc)
        .and_then(|()| {
            std::fs::set_permissions(&etc, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        })
        .and_then(|()| {
            std::fs::write(
                etc.join("hosts"),
                format!(
                    "127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                ),
            )
        });
    if made.is_err() {
        let _ = std::fs::remove_dir_all(&etc);
    }
}

fn set_opaque(dir: &Path) -> bool {
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: valid NUL-terminated strings and a one-byte value.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            c"user.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    rc == 0
}

/// Builds the root under `plan.stage` and pivots into it.
pub(crate) fn build_root(plan: &RootPlan) -> MountResult<Option<KeepCopy>> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| errno("making / private", e))?;
    // One tmpfs holds everything the sandbox writes in RAM: the upper
    // layer, /tmp, /dev and /dev/shm (see `scratch_dir`).
    let size = plan
        .upper_size
        .saturating_add(plan.tmp_size)
        .saturating_add(plan.shm_size);
    let tmpfs_opts = format!("size={size},mode=0755");
    mount(
        Some("tmpfs"),
        plan.stage,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(tmpfs_opts.as_str()),
    )
    .map_err(|e| errno("mounting the staging tmpfs", e))?;
    let root = plan.stage.join("root");
    for dir in [
        "root", "upper", "work", "layers", "binds", "empty", "scratch",
    ] {
        std::fs::create_dir(plan.stage.join(dir)).map_err(|e| format!("creating {dir}: {e}"))?;
    }
    // The upper layer is always on the size-capped tmpfs, so `--disk`
    // holds; a kept one is copied out by pid 1 at the end.
    let upper = plan.stage.join("upper").display().to_string();
    let work = plan.stage.join("work").display().to_string();
    let fresh = fresh_dirs(Path::new(&upper));
    if fresh {
        // Made on the tmpfs itself: through the overlay, every entry
        // would cost an overlay create.
        let dev = open_dir(libc::AT_FDCWD, &Path::new(&upper).join("dev"))?;
        dev_entries(&dev, 0o1777)?;
    } else {
        for (name, _) in FRESH_DIRS {
            let _ = std::fs::remove_dir(Path::new(&upper).join(name));
        }
    }
    let keep = match plan.keep {
        Some(fd) => {
            let base = attach(plan, fd, "keep")?;
            Some(KeepCopy {
                from: open_dir(libc::AT_FDCWD, Path::new(&upper))?,
                to: open_dir(libc::AT_FDCWD, &Path::new(&base).join("upper"))?,
                skip: if fresh { &["tmp", "dev"] } else { &[] },
            })
        }
        None => None,
    };
    let mut lower = Vec::new();
    for (i, fd) in plan.layers.iter().enumerate() {
        lower.push(attach(plan, fd, &format!("layers/{i}"))?);
    }
    // overlayfs lists the top layer first.
    lower.reverse();
    if plan.keep.is_none() {
        add_hosts(Path::new(&upper), &lower, plan.hostname);
    }
    // userxattr: an overlay mounted in a user namespace keeps its opaque
    // markers in user.overlay.*, so kept layers stack again later.
    let opts = format!(
        "lowerdir={},upperdir={upper},workdir={work},userxattr",
        lower.join(":")
    );
    mount(
        Some("overlay"),
        &root,
        Some("overlay"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(|e| errno("mounting the overlay of the layers", e))?;

    let root_fd = open_dir(libc::AT_FDCWD, &root)?;
    mount_system_dirs(&root_fd, plan, fresh)?;
    for (i, b) in plan.binds.iter().enumerate() {
        bind(plan, &root_fd, b, i)?;
    }
    drop(root_fd);
    pivot(&root)?;
    Ok(keep)
}

fn mount_system_dirs(root: &OwnedFd, plan: &RootPlan, fresh: bool) -> MountResult<()> {
    let noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let proc_dir = dir_in_root(root, Path::new("proc"))?;
    mount(
        Some("proc"),
        fd_path(proc_dir.as_raw_fd()).as_str(),
        Some("proc"),
        noexec,
        None::<&str>,
    )
    .map_err(|e| errno("mounting /proc", e))?;

    let dev = dir_in_root(root, Path::new("dev"))?;
    if !fresh {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
        scratch_dir(plan, &dev, "dev", 0o755, flags)?;
    }
    let dev = dir_in_root(root, Path::new("dev"))?; // the new one
    if !fresh {
        dev_entries(&dev, 0o755)?;
    }
    for name in DEVICES {
        let node = openat(
            &dev,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno(&format!("opening /dev/{name}"), e))?;
        let host = format!("/dev/{name}");
        mount(
            Some(host.as_str()),
            fd_path(node.as_raw_fd()).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| errno(&format!("binding /dev/{name}"), e))?;
    }
    let pts = open_dir(dev.as_raw_fd(), Path::new("pts"))?;
    mount(
        Some("devpts"),
        fd_path(pts.as_raw_fd()).as_str(),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        // No gid=: its host id would show in /proc/self/mountinfo.
        Some("newinstance,ptmxmode=0666,mode=620"),
    )
    .map_err(|e| errno("mounting /dev/pts", e))?;
    if fresh {
        // /dev/shm is a directory of the fresh /dev, on the staging tmpfs
        // like /tmp.
        return Ok(());
    }
    let shm = open_dir(dev.as_raw_fd(), Path::new("shm"))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    scratch_dir(plan, &shm, "shm", 0o1777, flags)?;
    let tmp = dir_in_root(root, Path::new("tmp"))?;
    scratch_dir(plan, &tmp, "tmp", 0o1777, flags)?;
    Ok(())
}

/// Fills an empty `/dev` (`dir`): a file for each device to bind over,
/// the usual links, `pts/` and `shm/` (of mode `shm_mode`).
fn dev_entries(dir: &OwnedFd, shm_mode: u32) -> MountResult<()> {
    for name in DEVICES {
        openat(
            dir,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(|e| errno(&format!("creating /dev/{name}"), e))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        nix::unistd::symlinkat(target, dir, link)
            .map_err(|e| errno(&format!("creating /dev/{link}"), e))?;
    }
    for (name, mode) in [("pts", 0o755), ("shm", shm_mode)] {
        mkdirat(dir, name, Mode::empty())
            .map_err(|e| errno(&format!("creating /dev/{name}"), e))?;
        let made = open_dir(dir.as_raw_fd(), Path::new(name))?;
        // fchmod: mkdirat's mode goes through the umask.
        nix::sys::stat::fchmod(&made, Mode::from_bits_truncate(mode))
            .map_err(|e| errno(&format!("setting the mode of /dev/{name}"), e))?;
    }
    Ok(())
}

/// Mounts a fresh, empty directory of the staging tmpfs (`/tmp`, `/dev`,
/// `/dev/shm`) onto `target`, where the upper layer cannot hold them as
/// opaque directories ([`fresh_dirs`]). It is an overlay over an empty
/// layer rather than a tmpfs of its own: a tmpfs made in the user namespace would show
/// the host ids of R in its options in `/proc/self/mountinfo`; these show
/// only stage paths. Their sizes are the staging tmpfs's.
fn scratch_dir(
    plan: &RootPlan,
    target: &OwnedFd,
    name: &str,
    mode: u32,
    flags: MsFlags,
) -> MountResult<()> {
    let base = plan.stage.join("scratch").join(name);
    for dir in ["", "upper", "work"] {
        let path = base.join(dir);
        std::fs::create_dir(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    }
    let upper = base.join("upper");
    std::fs::set_permissions(&upper, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(|e| format!("setting the mode of {}: {e}", upper.display()))?;
    let options = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        plan.stage.join("empty").display(),
        upper.display(),
        base.join("work").display()
    );
    mount(
        Some("overlay"),
        fd_path(target.as_raw_fd()).as_str(),
        Some("overlay"),
        flags,
        Some(options.as_str()),
    )
    .map_err(|e| errno(&format!("mounting /{name}"), e))
}

/// Mounts one bind. A directory is shown through an overlay where it can
/// be (read-only: the source over an empty layer; writable: the source as
/// the upper layer of an empty one, with a work directory beside it on
/// the same file system), so that `/proc/self/mountinfo` shows the stage's
/// paths instead of the source's host path, as a bind mount would.
fn bind(plan: &RootPlan, root: &OwnedFd, b: &BindPlan, index: usize) -> MountResult<()> {
    let (source, target, writable, idmapped) = (b.fd, b.target, b.writable, plan.idmapped);
    let rel = target.strip_prefix("/").unwrap_or(target);
    let source_is_dir = nix::sys::stat::fstat(source)
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .unwrap_or(true);
    let target_fd = if source_is_dir {
        dir_in_root(root, rel)?
    } else {
        file_in_root(root, rel)?
    };
    let target_path = fd_path(target_fd.as_raw_fd());
    if source_is_dir && (!writable || b.aux.is_some()) {
        let src = attach(plan, source, &format!("binds/{index}"))?;
        let empty = plan.stage.join("empty").display().to_string();
        // Held until the overlay is mounted: its options name them.
        let mut held = Vec::new();
        let (options, mut flags) = match &b.aux {
            Some(aux) if writable => {
                // An idmapped tree must be attached first; a plain fd is a
                // directory already.
                let attached = match plan.idmapped {
                    true => {
                        let path = attach(plan, aux.parent, &format!("binds/{index}.parent"))?;
                        Some(open_dir(libc::AT_FDCWD, Path::new(&path))?)
                    }
                    false => None,
                };
                let parent = attached.as_ref().unwrap_or(aux.parent);
                // By descriptor, so the options name no host directory.
                for rel in [
                    aux.source_name.to_string(),
                    format!("{}/lower", aux.aux_name),
                    format!("{}/work", aux.aux_name),
                ] {
                    held.push(open_dir(parent.as_raw_fd(), Path::new(&rel))?);
                }
                let [upper, lower, work] = [0, 1, 2].map(|i| fd_path(held[i].as_raw_fd()));
                (
                    format!("lowerdir={lower},upperdir={upper},workdir={work},userxattr"),
                    MsFlags::empty(),
                )
            }
            _ => (
                format!("lowerdir={src}:{empty},userxattr"),
                MsFlags::MS_RDONLY,
            ),
        };
        flags |= MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        let mounted = mount(
            Some("overlay"),
            target_path.as_str(),
            Some("overlay"),
            flags,
            Some(options.as_str()),
        );
        drop(held);
        if mounted.is_ok() {
            return Ok(());
        }
        // Say, a source that is a mount of another file system than its
        // parent's: shown as a plain bind.
        return plain_bind(
            &src,
            &target_path,
            target,
            writable,
            root,
            rel,
            source_is_dir,
        );
    }
    if idmapped {
        // The monitor made the source a detached, idmapped (and, if asked,
        // read-only) tree: attach it onto the opened target itself.
        move_mount_to_fd(source.as_raw_fd(), target_fd.as_raw_fd())
            .map_err(|e| format!("attaching bind {}: {e}", target.display()))?;
        return Ok(());
    }
    plain_bind(
        &fd_path(source.as_raw_fd()),
        &target_path,
        target,
        writable,
        root,
        rel,
        source_is_dir,
    )
}

/// A bind mount of `src` onto `target_path`, made read-only unless
/// `writable`.
fn plain_bind(
    src: &str,
    target_path: &str,
    target: &Path,
    writable: bool,
    root: &OwnedFd,
    rel: &Path,
    source_is_dir: bool,
) -> MountResult<()> {
    mount(
        Some(src),
        target_path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| errno(&format!("binding {}", target.display()), e))?;
    if !writable {
        // A bind remount keeps the flags the host locked (nosuid, nodev…),
        // so they must be repeated.
        let target_fd = if source_is_dir {
            dir_in_root(root, rel)?
        } else {
            file_in_root(root, rel)?
        };
        let target_path = fd_path(target_fd.as_raw_fd());
        let locked = nix::sys::statvfs::statvfs(target_path.as_str())
            .map(|s| s.flags())
            .map_err(|e| errno("reading bind flags", e))?;
        let mut flags =
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID;
        for (vfs, ms) in [
            (nix::sys::statvfs::FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (nix::sys::statvfs::FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        ] {
            if locked.contains(vfs) {
                flags |= ms;
            }
        }
        mount(
            None::<&str>,
            target_path.as_str(),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(|e| errno(&format!("making bind {} read-only", target.display()), e))?;
    }
    Ok(())
}

const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

fn move_mount(fd: RawFd, target: &str) -> std::io::Result<()> {
    let target = std::ffi::CString::new(target).map_err(std::io::Error::other)?;
    // SAFETY: plain system call on a valid fd and NUL-terminated strings.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches the detached tree `fd` onto the file or directory `target`.
fn move_mount_to_fd(fd: RawFd, target: RawFd) -> std::io::Result<()> {
    // SAFETY: plain system call on valid fds and empty paths.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            target,
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn pivot(root: &Path) -> MountResult<()> {
    nix::unistd::chdir(root).map_err(|e| errno("entering the new root", e))?;
    // pivot_root(".", ".") stacks the old root on the new one; detaching
    // it leaves no path back to the host.
    nix::unistd::pivot_root(".", ".").map_err(|e| errno("pivot_root", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| errno("unmounting the old root", e))?;
    nix::unistd::chdir("/").map_err(|e| errno("chdir /", e))?;
    Ok(())
}

fn open_dir(dirfd: RawFd, path: &Path) -> MountResult<OwnedFd> {
    // SAFETY: AT_FDCWD or a valid borrowed fd.
    let dirfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(dirfd) };
    openat(
        dirfd,
        path,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
        Mode::empty(),
    )
    .map_err(|e| errno(&format!("opening {}", path.display()), e))
}

fn components(rel: &Path) -> MountResult<Vec<&std::ffi::OsStr>> {
    rel.components()
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            Component::RootDir | Component::CurDir => Ok(std::ffi::OsStr::new(".")),
            Component::ParentDir | Component::Prefix(_) => {
                Err(format!("mount target {} climbs with ..", rel.display()))
            }
        })
        .filter(|c| c.as_ref().map_or(true, |n| *n != "."))
        .collect()
}

/// Opens (creating as needed) the directory `rel` below `root`, refusing
/// symlinks on the way.
pub(crate) fn dir_in_root(root: &OwnedFd, rel: &Path) -> MountResult<OwnedFd> {
    let mut current = open_dir(root.as_raw_fd(), Path::new("."))?;
    for name in components(rel)? {
        match mkdirat(&current, name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(errno(&format!("creating mount point {}", rel.display()), e)),
        }
        current = open_dir(current.as_raw_fd(), Path::new(name)).map_err(|e| {
            format!(
                "mount point {} is not a plain directory ({e})",
                rel.display()
            )
        })?;
    }
    Ok(current)
}

/// Opens (creating as needed) the file `rel` below `root` for a file bind.
fn file_in_root(root: &OwnedFd, rel: &Path) -> MountResult<OwnedFd> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let name = rel
        .file_name()
        .ok_or_else(|| format!("bind target {} has no file name", rel.display()))?;
    let dir = dir_in_root(root, parent)?;
    openat(
        &dir,
        name,
        OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| errno(&format!("creating bind target {}", rel.display()), e))
}

/// Brings the loopback interface up: the only network a sandbox has.
pub(crate) fn loopback_up() -> MountResult<()> {
    // SAFETY: ioctls on a fresh socket with a zeroed, NUL-terminated ifreq.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            rc = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(sock);
        if rc != 0 {
            return Err(format!("bringing up lo: {err}"));
        }
    }
    Ok(())
}
