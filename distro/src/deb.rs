//! Reading `.deb` archives, and unpacking their data into a layer directory
//! safely, as the first step of a Debian bootstrap (what mmdebstrap does
//! before it runs dpkg).
//!
//! A `.deb` is an `ar` archive of `debian-binary` (format "2.x"),
//! `control.tar[.gz|.xz|.zst]` and `data.tar[.gz|.xz|.zst|.bz2|.lzma]`.
//! The `ar` members and the tar streams are parsed here, by hand and with
//! limits, because packages are treated as hostile: a header never makes
//! comb allocate more than a bounded amount, and every malformed or
//! truncated archive is an error, never a panic.
//!
//! [`unpack_data`] runs on the host, as root, so it must be proof against
//! crafted archives. Every path is resolved one component at a time from a
//! directory file descriptor of the layer root with `openat(O_NOFOLLOW)`:
//! `..`, absolute names, NUL bytes, and paths through a symlink or a
//! non-directory are refused; symlinks are created, never followed; hard
//! links may only point at files this archive unpacked; devices and FIFOs
//! are skipped (the sandbox could not hold them); set-id bits are stripped
//! and reported so that dpkg can be told about them with a statoverride
//! file ([`statoverride_for`]). Nothing outside the root is created or
//! modified.

use crate::error::{Error, Result};
use crate::fsat::{cvt, open_dir, open_root, owned};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Default cap on the entries of one data.tar (Debian's largest packages
/// hold a few hundred thousand).
pub const MAX_ENTRIES: u64 = 1_000_000;
/// Default cap on the components of one path.
pub const MAX_DEPTH: usize = 256;

/// Cap on one member of control.tar, and on all of them together.
const MAX_CONTROL_FILE: u64 = 64 << 20;
const MAX_CONTROL_TOTAL: u64 = 256 << 20;
/// Cap on a GNU long name or link name (256 components of 255 bytes fit).
const MAX_LONG_NAME: u64 = 64 << 10;
/// Cap on a pax extended header.
const MAX_PAX: u64 = 1 << 20;
/// How much may follow the end-of-archive blocks of a tar (tar pads to
/// 10 KiB records); reading it to the end lets the decompressor check its
/// trailer.
const MAX_TRAILER: u64 = 1 << 20;
/// liblzma's memory cap: xz -9 needs 65 MiB.
const XZ_MEMLIMIT: u64 = 512 << 20;
/// Cap on the number of `ar` members (a .deb has three).
const MAX_MEMBERS: usize = 64;

const BLOCK: usize = 512;
const COPY_BUFFER: usize = 256 << 10;

/// How a tar member of a .deb is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
    /// The legacy `.lzma` format (lzma_alone).
    Lzma,
}

impl Compression {
    fn from_suffix(suffix: &str) -> Option<Compression> {
        Some(match suffix {
            "" => Compression::None,
            ".gz" => Compression::Gzip,
            ".xz" => Compression::Xz,
            ".zst" => Compression::Zstd,
            ".bz2" => Compression::Bzip2,
            ".lzma" => Compression::Lzma,
            _ => return None,
        })
    }
}

/// One `ar` member: where its bytes are in the file.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    offset: u64,
    size: u64,
    compression: Compression,
}

/// An opened `.deb`: its `debian-binary` was checked and its control and
/// data members located. Reading them decompresses on the fly; the
/// archive is never loaded whole.
#[derive(Debug)]
pub struct DebArchive {
    path: PathBuf,
    file: File,
    version: String,
    control: Member,
    data: Member,
}

/// What a data.tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    HardLink,
    Symlink,
    Directory,
    CharDevice,
    BlockDevice,
    Fifo,
}

/// The header of one data.tar entry, exactly as the archive gives it:
/// nothing in it has been checked for safety.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataEntry {
    /// The name as stored, usually `./usr/bin/foo`.
    pub path: PathBuf,
    pub kind: EntryKind,
    /// Permission bits, with the set-id and sticky bits (`& 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Bytes of content (regular files only; 0 for the other kinds).
    pub size: u64,
    /// The target of a symlink or hard link as stored; empty otherwise.
    pub link: PathBuf,
}

impl DebArchive {
    /// Opens `path`, checks that it is an `ar` archive whose first member
    /// `debian-binary` says "2.x", and finds `control.tar*` and
    /// `data.tar*` (in that order; members whose name starts with `_` are
    /// ignored, as dpkg does).
    pub fn open(path: &Path) -> Result<DebArchive> {
        let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("reading", path, e))?
            .len();
        let members = read_ar_members(path, &file, len)?;
        let bad = |member: &str, message: String| Error::BadDeb {
            deb: path.to_path_buf(),
            member: member.to_string(),
            message,
        };

        let mut members = members.into_iter().filter(|m| !m.name.starts_with('_'));
        let first = members
            .next()
            .ok_or_else(|| bad("", "the ar archive is empty".into()))?;
        if first.name != "debian-binary" {
            return Err(bad(
                &first.name,
                "the first member must be debian-binary".into(),
            ));
        }
        if first.size > 64 {
            return Err(bad(
                "debian-binary",
                format!("{} bytes, expected \"2.0\\n\"", first.size),
            ));
        }
        let mut raw = vec![0u8; first.size as usize];
        file.read_exact_at(&mut raw, first.offset)
            .map_err(|e| Error::io("reading", path, e))?;
        let version = String::from_utf8_lossy(&raw);
        let version = version.split('\n').next().unwrap_or("").trim().to_string();
        let major = version.split('.').next().unwrap_or("");
        if major != "2" || !version.contains('.') {
            return Err(bad(
                "debian-binary",
                format!("format version {version:?}; comb reads format 2.x"),
            ));
        }

        let mut find = |prefix: &str, allowed: &[Compression]| -> Result<Member> {
            let m = members
                .next()
                .ok_or_else(|| bad("", format!("the archive has no {prefix}* member")))?;
            match m
                .name
                .strip_prefix(prefix)
                .and_then(Compression::from_suffix)
            {
                Some(c) if allowed.contains(&c) => Ok(Member {
                    compression: c,
                    ..m
                }),
                _ => Err(bad(
                    &m.name,
                    format!("unexpected member, expected {prefix}*"),
                )),
            }
        };
        let control = find(
            "control.tar",
            &[
                Compression::None,
                Compression::Gzip,
                Compression::Xz,
                Compression::Zstd,
            ],
        )?;
        let data = find(
            "data.tar",
            &[
                Compression::None,
                Compression::Gzip,
                Compression::Xz,
                Compression::Zstd,
                Compression::Bzip2,
                Compression::Lzma,
            ],
        )?;
        if let Some(extra) = members.next() {
            return Err(bad(&extra.name, "unexpected member after data.tar".into()));
        }
        Ok(DebArchive {
            path: path.to_path_buf(),
            file,
            version,
            control,
            data,
        })
    }

    /// The path the archive was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format version from `debian-binary` ("2.0").
    pub fn format_version(&self) -> &str {
        &self.version
    }

    /// The name of the control member (`control.tar.xz`, ...).
    pub fn control_member(&self) -> &str {
        &self.control.name
    }

    /// The name of the data member (`data.tar.xz`, ...).
    pub fn data_member(&self) -> &str {
        &self.data.name
    }

    /// How the data member is compressed.
    pub fn data_compression(&self) -> Compression {
        self.data.compression
    }

    /// The control file (the `control` member of control.tar), as text.
    pub fn control(&self) -> Result<String> {
        let mut control = None;
        self.read_control_tar(|name, bytes| {
            if name == "control" {
                control = Some(bytes);
            }
        })?;
        let bytes = control.ok_or_else(|| self.bad(&self.control, "it holds no control file"))?;
        String::from_utf8(bytes)
            .map_err(|_| self.bad(&self.control, "its control file is not UTF-8"))
    }

    /// Names and contents of the other control.tar members (`preinst`,
    /// `postinst`, `conffiles`, `md5sums`, ...), in archive order.
    pub fn control_members(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        self.read_control_tar(|name, bytes| {
            if name != "control" {
                out.push((name.to_string(), bytes));
            }
        })?;
        Ok(out)
    }

    /// Streams the data.tar entries: `f` gets each header and a reader of
    /// its content (what `f` leaves unread is skipped). An error from `f`
    /// stops the walk and is returned. The stream is read to its end, so a
    /// corrupt compressed trailer is reported too.
    pub fn data_entries<F>(&self, mut f: F) -> Result<()>
    where
        F: FnMut(&DataEntry, &mut dyn Read) -> Result<()>,
    {
        let mut tar = TarReader::new(self, &self.data)?;
        while let Some(entry) = tar.next_entry()? {
            let mut content = EntryReader { tar: &mut tar };
            f(&entry, &mut content)?;
        }
        tar.finish()
    }

    /// Unpacks the data of this archive into `root`; see [`unpack_data`].
    pub fn unpack_data(&self, root: &Path, options: &UnpackOptions) -> Result<UnpackReport> {
        let root_fd = open_root(root).map_err(|e| Error::io("opening", root, e))?;
        let mut unpacker = Unpacker {
            deb: &self.path,
            member: &self.data.name,
            root_path: root,
            root: root_fd,
            options,
            stack: Vec::new(),
            files: HashMap::new(),
            implicit_dirs: HashSet::new(),
            dir_mtimes: Vec::new(),
            report: UnpackReport::default(),
            buf: vec![0; COPY_BUFFER],
            tmp_counter: 0,
            entries: 0,
        };
        self.data_entries(|entry, content| unpacker.entry(entry, content))?;
        unpacker.finish()
    }

    fn bad(&self, member: &Member, message: impl Into<String>) -> Error {
        Error::BadDeb {
            deb: self.path.clone(),
            member: member.name.clone(),
            message: message.into(),
        }
    }

    /// Reads every regular file of control.tar, with size limits, into
    /// `f(name, bytes)`.
    fn read_control_tar(&self, mut f: impl FnMut(&str, Vec<u8>)) -> Result<()> {
        let member = &self.control;
        let mut tar = TarReader::new(self, member)?;
        let mut total = 0u64;
        while let Some(entry) = tar.next_entry()? {
            let raw = entry.path.as_os_str().as_bytes();
            let comps = normalize(raw, MAX_DEPTH)
                .map_err(|reason| self.bad(member, format!("entry {:?}: {reason}", lossy(raw))))?;
            match (entry.kind, comps.as_slice()) {
                (EntryKind::Directory, []) => continue,
                (EntryKind::File, [name]) => {
                    let name = std::str::from_utf8(name).map_err(|_| {
                        self.bad(member, format!("entry {:?}: not UTF-8", lossy(raw)))
                    })?;
                    total += entry.size;
                    if entry.size > MAX_CONTROL_FILE || total > MAX_CONTROL_TOTAL {
                        return Err(self.bad(
                            member,
                            format!("entry {name:?}: control files larger than comb accepts"),
                        ));
                    }
                    let mut bytes = Vec::with_capacity(entry.size as usize);
                    EntryReader { tar: &mut tar }
                        .read_to_end(&mut bytes)
                        .map_err(|e| self.bad(member, format!("entry {name:?}: {e}")))?;
                    f(name, bytes);
                }
                _ => {
                    return Err(self.bad(
                        member,
                        format!(
                            "entry {:?}: control.tar may hold only plain files at its top",
                            lossy(raw)
                        ),
                    ))
                }
            }
        }
        tar.finish()
    }
}

/// How [`unpack_data`] lays the files out, and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Rewrite paths under `bin/ sbin/ lib/ lib32/ lib64/ libx32/` to
    /// `usr/...`, as dpkg ends up doing when the root has the merged-/usr
    /// symlinks (`bin -> usr/bin`, ...), which the caller creates itself. A
    /// top-level symlink named like one of them (base-files ships them in
    /// newer releases) is not rewritten.
    pub merged_usr: bool,
    /// Refuse an archive with more entries.
    pub max_entries: u64,
    /// Refuse a path with more components.
    pub max_depth: usize,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            merged_usr: false,
            max_entries: MAX_ENTRIES,
            max_depth: MAX_DEPTH,
        }
    }
}

/// A file that the archive wants set-id: it was unpacked without those
/// bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetIdFile {
    /// Absolute, as dpkg names it: the archive's path, before any
    /// merged-/usr rewriting (`/usr/bin/passwd`, `/bin/su`).
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    /// The mode from the archive, with the set-id bits.
    pub mode: u32,
}

/// What [`unpack_data`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// Regular files written (hard links not counted).
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub hard_links: u64,
    /// Devices and FIFOs that were not created, as dpkg names them
    /// (`/dev/null`).
    pub skipped: Vec<String>,
    /// Files unpacked without the set-id bits that the archive gives them.
    pub set_id: Vec<SetIdFile>,
}

/// Unpacks the data of `deb` into `root` (an existing directory), as
/// `dpkg --unpack` would lay it out, without running anything.
///
/// Every path is resolved below `root` without following a symlink; a
/// path that would leave it, pass through a symlink or non-directory, or
/// exceed the limits of `options` is an error naming the deb and the path.
/// Regular files that exist are replaced atomically; directories that
/// exist are kept as they are. Owners are the archive's numeric ids (so
/// this must run as root), modes the archive's without the set-id bits of
/// files (reported in [`UnpackReport::set_id`]), times the archive's.
/// Devices and FIFOs are skipped and listed in [`UnpackReport::skipped`].
///
/// On error the root holds a partial unpack: discard it.
pub fn unpack_data(deb: &Path, root: &Path, options: &UnpackOptions) -> Result<UnpackReport> {
    DebArchive::open(deb)?.unpack_data(root, options)
}

/// A dpkg statoverride file (`#uid #gid mode path` lines, mode in octal
/// without the set-id bits) for `files`, so that dpkg, when it installs
/// the packages later inside the sandbox (whose seccomp filter refuses
/// set-id modes), gives them their modes without those bits. One line per
/// path (dpkg refuses duplicates; the last entry wins), sorted by path.
/// A path holding a newline cannot be written in that format and is left
/// out ([`unpack_data`] never reports one).
pub fn statoverride_for(files: &[SetIdFile]) -> String {
    let mut by_path = BTreeMap::new();
    for file in files {
        if !file.path.contains('\n') {
            by_path.insert(file.path.as_str(), file);
        }
    }
    let mut out = String::new();
    for (path, f) in by_path {
        let _ = writeln!(out, "#{} #{} {:04o} {path}", f.uid, f.gid, f.mode & 0o1777);
    }
    out
}

// ---------------------------------------------------------------------------
// ar

fn read_ar_members(deb: &Path, file: &File, len: u64) -> Result<Vec<Member>> {
    let bad = |message: String| Error::BadDeb {
        deb: deb.to_path_buf(),
        member: String::new(),
        message,
    };
    let io_err = |e| Error::io("reading", deb, e);
    let mut magic = [0u8; 8];
    if len < 8 {
        return Err(bad("too short to be an ar archive".into()));
    }
    file.read_exact_at(&mut magic, 0).map_err(io_err)?;
    if &magic != b"!<arch>\n" {
        return Err(bad("not an ar archive (bad magic)".into()));
    }
    let mut members = Vec::new();
    let mut pos = 8u64;
    while pos < len {
        if members.len() == MAX_MEMBERS {
            return Err(bad(format!("more than {MAX_MEMBERS} ar members")));
        }
        if len - pos < 60 {
            return Err(bad(format!("truncated ar header at byte {pos}")));
        }
        let mut h = [0u8; 60];
        file.read_exact_at(&mut h, pos).map_err(io_err)?;
        if &h[58..60] != b"`\n" {
            return Err(bad(format!("bad ar header at byte {pos}")));
        }
        let name = std::str::from_utf8(&h[..16])
            .ok()
            .map(|n| n.trim_end_matches(' '))
            .map(|n| n.strip_suffix('/').unwrap_or(n))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| bad(format!("bad ar member name at byte {pos}")))?
            .to_string();
        let size = std::str::from_utf8(&h[48..58])
            .ok()
            .map(|s| s.trim_end_matches(' '))
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| bad(format!("bad size in the ar header of {name}")))?;
        let offset = pos + 60;
        if size > len - offset {
            return Err(Error::BadDeb {
                deb: deb.to_path_buf(),
                member: name,
                message: format!(
                    "truncated: {size} bytes announced, {} present",
                    len - offset
                ),
            });
        }
        members.push(Member {
            name,
            offset,
            size,
            compression: Compression::None,
        });
        // Members are padded to an even offset; the last pad may be absent.
        pos = offset + size + (size & 1);
    }
    Ok(members)
}

/// Reads one member's bytes with `pread`, so that `&DebArchive` suffices.
struct MemberReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for MemberReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            // The file shrank under us.
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += n as u64;
        Ok(n)
    }
}

fn decoder<'a>(
    deb: &DebArchive,
    member: &Member,
    raw: MemberReader<'a>,
) -> Result<Box<dyn Read + 'a>> {
    let bad = |e: io::Error| deb.bad(member, format!("cannot start decompressing: {e}"));
    let inner = BufReader::with_capacity(COPY_BUFFER, raw);
    let stream: Box<dyn Read + 'a> = match member.compression {
        Compression::None => return Ok(Box::new(inner)),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(inner)),
        Compression::Xz => {
            let stream =
                xz2::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, xz2::stream::CONCATENATED)
                    .map_err(|e| bad(e.into()))?;
            Box::new(xz2::bufread::XzDecoder::new_stream(inner, stream))
        }
        Compression::Lzma => {
            let stream =
                xz2::stream::Stream::new_lzma_decoder(XZ_MEMLIMIT).map_err(|e| bad(e.into()))?;
            Box::new(xz2::bufread::XzDecoder::new_stream(inner, stream))
        }
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(inner).map_err(bad)?)
        }
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(inner)),
    };
    // The tar reader reads 512-byte headers: buffer the decompressed side.
    Ok(Box::new(BufReader::with_capacity(COPY_BUFFER, stream)))
}

// ---------------------------------------------------------------------------
// tar

/// A streaming reader of ustar/GNU/pax tar, strict and bounded: headers
/// must have good checksums, extension headers have size caps, a stream
/// that ends inside a header or an entry is an error.
struct TarReader<'a> {
    deb: &'a DebArchive,
    member: &'a Member,
    inner: Box<dyn Read + 'a>,
    /// Offset in the decompressed stream, for error messages.
    offset: u64,
    /// Unread content of the current entry, then its padding.
    remaining: u64,
    padding: u64,
    skip_buf: Vec<u8>,
}

/// Pax records that override header fields.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<i64>,
}

impl<'a> TarReader<'a> {
    fn new(deb: &'a DebArchive, member: &'a Member) -> Result<TarReader<'a>> {
        let raw = MemberReader {
            file: &deb.file,
            pos: member.offset,
            end: member.offset + member.size,
        };
        Ok(TarReader {
            deb,
            member,
            inner: decoder(deb, member, raw)?,
            offset: 0,
            remaining: 0,
            padding: 0,
            skip_buf: Vec::new(),
        })
    }

    fn bad(&self, message: impl std::fmt::Display) -> Error {
        self.deb.bad(
            self.member,
            format!("at byte {} of the tar stream: {message}", self.offset),
        )
    }

    fn io_bad(&self, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            self.bad("unexpected end of the stream (truncated)")
        } else {
            self.bad(e)
        }
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` on a clean end of
    /// stream before the first byte.
    fn read_block(&mut self, buf: &mut [u8]) -> Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(self.bad("unexpected end of the stream inside a header")),
                Ok(n) => {
                    got += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_bad(e)),
            }
        }
        Ok(true)
    }

    fn skip(&mut self, mut n: u64) -> Result<()> {
        if self.skip_buf.is_empty() {
            self.skip_buf = vec![0; 64 << 10];
        }
        while n > 0 {
            let want = n.min(self.skip_buf.len() as u64) as usize;
            let got = match self.inner.read(&mut self.skip_buf[..want]) {
                Ok(0) => return Err(self.bad("unexpected end of the stream (truncated)")),
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_bad(e)),
            };
            n -= got as u64;
            self.offset += got as u64;
        }
        Ok(())
    }

    /// Reads the content of an extension header (long name, pax), capped.
    fn read_extension(&mut self, size: u64, cap: u64, what: &str) -> Result<Vec<u8>> {
        if size > cap {
            return Err(self.bad(format!("{what} of {size} bytes (at most {cap} accepted)")));
        }
        let mut buf = vec![0u8; size as usize];
        if !buf.is_empty() && !self.read_block(&mut buf)? {
            return Err(self.bad("unexpected end of the stream (truncated)"));
        }
        self.skip(pad(size))?;
        Ok(buf)
    }

    fn next_entry(&mut self) -> Result<Option<DataEntry>> {
        let (remaining, padding) = (self.remaining, self.padding);
        self.remaining = 0;
        self.padding = 0;
        self.skip(remaining + padding)?;

        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Pax> = None;
        let mut h = [0u8; BLOCK];
        loop {
            let header_at = self.offset;
            let pending = long_name.is_some() || long_link.is_some() || pax.is_some();
            if !self.read_block(&mut h)? {
                // Tar writers end with zero blocks: without them the stream
                // was cut at a block boundary, which would lose entries.
                return Err(
                    self.bad("the stream ends without the end-of-archive blocks (truncated)")
                );
            }
            if h.iter().all(|&b| b == 0) {
                if pending {
                    return Err(self.bad("extension header without an entry after it"));
                }
                return Ok(None);
            }
            let (deb, member) = (self.deb, self.member);
            let bad = |m: &str| deb.bad(member, format!("tar header at byte {header_at}: {m}"));
            let stored = parse_octal(&h[148..156]).ok_or_else(|| bad("bad checksum field"))?;
            let unsigned: u64 = h
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    if (148..156).contains(&i) {
                        32
                    } else {
                        b as u64
                    }
                })
                .sum();
            let signed: i64 = h
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    if (148..156).contains(&i) {
                        32
                    } else {
                        b as i8 as i64
                    }
                })
                .sum();
            if stored != unsigned && stored as i64 != signed {
                return Err(bad("checksum mismatch (corrupt archive)"));
            }
            let typeflag = h[156];
            let header_size = parse_numeric(&h[124..136]).ok_or_else(|| bad("bad size field"))?;
            match typeflag {
                b'L' | b'K' => {
                    let mut name =
                        self.read_extension(header_size, MAX_LONG_NAME, "GNU long name")?;
                    while name.last() == Some(&0) {
                        name.pop();
                    }
                    let slot = if typeflag == b'L' {
                        &mut long_name
                    } else {
                        &mut long_link
                    };
                    if slot.replace(name).is_some() {
                        return Err(self.bad("two GNU long names for one entry"));
                    }
                    continue;
                }
                b'x' => {
                    if pax.is_some() {
                        return Err(self.bad("two pax headers for one entry"));
                    }
                    let raw = self.read_extension(header_size, MAX_PAX, "pax header")?;
                    pax = Some(parse_pax(&raw).map_err(|m| self.bad(m))?);
                    continue;
                }
                b'g' => {
                    // Global pax defaults: nothing dpkg-deb writes; ignored.
                    self.read_extension(header_size, MAX_PAX, "pax global header")?;
                    continue;
                }
                _ => {}
            }
            // A pax size overrides the header's, as for every other field.
            let size = pax.as_ref().and_then(|p| p.size).unwrap_or(header_size);
            let kind = match typeflag {
                b'0' | 0 | b'7' => EntryKind::File,
                b'1' => EntryKind::HardLink,
                b'2' => EntryKind::Symlink,
                b'3' => EntryKind::CharDevice,
                b'4' => EntryKind::BlockDevice,
                b'5' => EntryKind::Directory,
                b'6' => EntryKind::Fifo,
                other => return Err(bad(&format!("unsupported entry type {:?}", other as char))),
            };
            if kind != EntryKind::File && size != 0 {
                return Err(bad("a non-file entry with content"));
            }
            let mut path = match long_name.take() {
                Some(name) => name,
                None => {
                    let mut name = cstr_field(&h[..100]).to_vec();
                    // POSIX ustar splits long names into prefix/name; GNU
                    // headers use that space for other things.
                    if &h[257..263] == b"ustar\0" {
                        let prefix = cstr_field(&h[345..500]);
                        if !prefix.is_empty() {
                            let mut full = prefix.to_vec();
                            full.push(b'/');
                            full.extend_from_slice(&name);
                            name = full;
                        }
                    }
                    name
                }
            };
            let mut link = long_link
                .take()
                .unwrap_or_else(|| cstr_field(&h[157..257]).to_vec());
            let mut uid = parse_numeric(&h[108..116]).ok_or_else(|| bad("bad uid field"))?;
            let mut gid = parse_numeric(&h[116..124]).ok_or_else(|| bad("bad gid field"))?;
            let mut mtime = parse_numeric(&h[136..148])
                .and_then(|t| i64::try_from(t).ok())
                .ok_or_else(|| bad("bad mtime field"))?;
            let mode = parse_numeric(&h[100..108]).ok_or_else(|| bad("bad mode field"))?;
            if let Some(p) = pax.take() {
                path = p.path.unwrap_or(path);
                link = p.linkpath.unwrap_or(link);
                uid = p.uid.unwrap_or(uid);
                gid = p.gid.unwrap_or(gid);
                mtime = p.mtime.unwrap_or(mtime);
            }
            let uid = u32::try_from(uid).map_err(|_| bad("uid out of range"))?;
            let gid = u32::try_from(gid).map_err(|_| bad("gid out of range"))?;
            if !matches!(kind, EntryKind::Symlink | EntryKind::HardLink) {
                link.clear();
            }
            self.remaining = size;
            self.padding = pad(size);
            return Ok(Some(DataEntry {
                path: PathBuf::from(std::ffi::OsString::from_vec(path)),
                kind,
                mode: (mode & 0o7777) as u32,
                uid,
                gid,
                mtime,
                size,
                link: PathBuf::from(std::ffi::OsString::from_vec(link)),
            }));
        }
    }

    /// After the end-of-archive block: reads what follows (padding) to the
    /// end, so that the decompressor verifies its trailer.
    fn finish(mut self) -> Result<()> {
        let mut rest = 0u64;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match self.inner.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    rest += n as u64;
                    self.offset += n as u64;
                    if rest > MAX_TRAILER {
                        return Err(self.bad("more than 1 MiB of data after the end of the tar"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_bad(e)),
            }
        }
    }
}

/// The content of the current tar entry.
struct EntryReader<'r, 'a> {
    tar: &'r mut TarReader<'a>,
}

impl Read for EntryReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = self.tar.remaining.min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.tar.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stream ends inside this entry (truncated)",
            ));
        }
        self.tar.remaining -= n as u64;
        self.tar.offset += n as u64;
        Ok(n)
    }
}

fn pad(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// The bytes of a NUL-terminated (or full) header field.
fn cstr_field(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// An octal field: optional leading spaces, digits, then NUL/space or the
/// end. Empty is 0.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    let mut bytes = field.iter().skip_while(|&&b| b == b' ').peekable();
    while let Some(&&b) = bytes.peek() {
        if !(b'0'..=b'7').contains(&b) {
            break;
        }
        value = value.checked_mul(8)?.checked_add((b - b'0') as u64)?;
        bytes.next();
    }
    bytes.all(|&b| b == 0 || b == b' ').then_some(value)
}

/// An octal field, or GNU's base-256 (high bit set; negative refused).
fn parse_numeric(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 == 0 {
        return parse_octal(field);
    }
    if field[0] & 0x40 != 0 {
        return None;
    }
    let mut value = (field[0] & 0x3f) as u64;
    for &b in &field[1..] {
        value = value.checked_mul(256)?.checked_add(b as u64)?;
    }
    Some(value)
}

/// Pax records: `LEN KEY=VALUE\n`.
fn parse_pax(mut raw: &[u8]) -> std::result::Result<Pax, String> {
    let mut pax = Pax::default();
    while !raw.is_empty() {
        if raw.iter().all(|&b| b == 0) {
            break;
        }
        let space = raw
            .iter()
            .position(|&b| b == b' ')
            .ok_or("malformed pax record")?;
        let len: usize = std::str::from_utf8(&raw[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&len| len > space + 1 && len <= raw.len())
            .ok_or("malformed pax record length")?;
        let record = &raw[space + 1..len];
        let record = record
            .strip_suffix(b"\n")
            .ok_or("pax record without newline")?;
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("pax record without '='")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let number = || -> std::result::Result<u64, String> {
            std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad pax {} value", String::from_utf8_lossy(key)))
        };
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.linkpath = Some(value.to_vec()),
            b"size" => pax.size = Some(number()?),
            b"uid" => pax.uid = Some(number()?),
            b"gid" => pax.gid = Some(number()?),
            b"mtime" => {
                // Seconds, maybe with a fraction: keep the whole seconds.
                let s = std::str::from_utf8(value).unwrap_or("");
                let whole = s.split('.').next().unwrap_or("");
                pax.mtime = Some(whole.parse().map_err(|_| "bad pax mtime value")?);
            }
            _ => {}
        }
        raw = &raw[len..];
    }
    Ok(pax)
}

// ---------------------------------------------------------------------------
// unpacking

/// The components of an archive path: `./` and empty components dropped;
/// absolute paths, `..`, NUL bytes and too many components refused.
fn normalize(raw: &[u8], max_depth: usize) -> std::result::Result<Vec<&[u8]>, String> {
    if raw.contains(&0) {
        return Err("the name contains a NUL byte".into());
    }
    if raw.starts_with(b"/") {
        return Err("absolute paths are not allowed".into());
    }
    let mut comps = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("a `..` component is not allowed".into()),
            _ => {
                if comps.len() == max_depth {
                    return Err(format!("more than {max_depth} path components"));
                }
                comps.push(comp);
            }
        }
    }
    Ok(comps)
}

const USR_ALIASES: [&[u8]; 6] = [b"bin", b"sbin", b"lib", b"lib32", b"lib64", b"libx32"];

fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

struct Unpacker<'a> {
    deb: &'a Path,
    member: &'a str,
    root_path: &'a Path,
    root: OwnedFd,
    options: &'a UnpackOptions,
    /// Open directories: the parent chain of the last entry, below root.
    stack: Vec<(Vec<u8>, OwnedFd)>,
    /// Layer paths of the regular files unpacked so far (the only hard
    /// link targets allowed), with their set-id mode if any.
    files: HashMap<Vec<u8>, Option<u32>>,
    /// Directories created as missing parents, not yet given their own
    /// entry's metadata.
    implicit_dirs: HashSet<Vec<u8>>,
    /// Directory mtimes, set at the end (their content changes them).
    dir_mtimes: Vec<(Vec<u8>, i64)>,
    report: UnpackReport,
    buf: Vec<u8>,
    tmp_counter: u64,
    entries: u64,
}

impl Unpacker<'_> {
    fn unsafe_entry(&self, raw: &[u8], reason: impl Into<String>) -> Error {
        Error::UnsafeDebEntry {
            deb: self.deb.to_path_buf(),
            path: lossy(raw),
            reason: reason.into(),
        }
    }

    fn io(&self, action: &'static str, layer_path: &[u8], source: io::Error) -> Error {
        Error::Unpack {
            deb: self.deb.to_path_buf(),
            root: self.root_path.to_path_buf(),
            path: lossy(layer_path),
            action,
            source,
        }
    }

    /// A set-id file's name goes into a statoverride file: one line of
    /// text per file.
    fn check_set_id_name(&self, raw: &[u8]) -> Result<()> {
        match std::str::from_utf8(raw) {
            Ok(name) if !name.contains('\n') => Ok(()),
            _ => Err(self.unsafe_entry(
                raw,
                "a set-id file whose name is not UTF-8 or holds a newline",
            )),
        }
    }

    /// The checked layer path of an archive path (after merged-/usr
    /// rewriting), and the path dpkg knows it by.
    fn resolve<'p>(&self, raw: &'p [u8], kind: EntryKind) -> Result<(Vec<&'p [u8]>, String)> {
        let mut comps =
            normalize(raw, self.options.max_depth).map_err(|r| self.unsafe_entry(raw, r))?;
        let dpkg_name = format!("/{}", lossy(&join(&comps)));
        if self.options.merged_usr
            && !comps.is_empty()
            && USR_ALIASES.contains(&comps[0])
            && (comps.len() > 1 || kind == EntryKind::Directory)
        {
            if comps.len() == self.options.max_depth {
                return Err(self.unsafe_entry(
                    raw,
                    format!("more than {} path components", self.options.max_depth),
                ));
            }
            comps.insert(0, b"usr");
        }
        Ok((comps, dpkg_name))
    }

    fn entry(&mut self, entry: &DataEntry, content: &mut dyn Read) -> Result<()> {
        let raw = entry.path.as_os_str().as_bytes();
        self.entries += 1;
        if self.entries > self.options.max_entries {
            return Err(self.unsafe_entry(
                raw,
                format!(
                    "the archive has more than {} entries (UnpackOptions::max_entries)",
                    self.options.max_entries
                ),
            ));
        }
        let (comps, dpkg_name) = self.resolve(raw, entry.kind)?;
        if entry.kind != EntryKind::Directory && raw.ends_with(b"/") {
            return Err(self.unsafe_entry(raw, "a non-directory whose name ends with '/'"));
        }
        let Some((&name, dirs)) = comps.split_last() else {
            if entry.kind == EntryKind::Directory {
                // `./`: the root itself belongs to the caller.
                return Ok(());
            }
            return Err(self.unsafe_entry(raw, "a non-directory entry for the root itself"));
        };
        let layer_path = join(&comps);
        match entry.kind {
            EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo => {
                // The sandbox could not create them either; dpkg would.
                self.report.skipped.push(dpkg_name);
                return Ok(());
            }
            _ => {}
        }
        let parent = self.walk(raw, dirs)?;
        let cname = cstring(name);
        match entry.kind {
            EntryKind::Directory => self.directory(entry, raw, parent, &cname, layer_path),
            EntryKind::File => {
                self.file(entry, content, raw, parent, &cname, layer_path, dpkg_name)
            }
            EntryKind::Symlink => self.symlink(entry, raw, parent, &cname, layer_path),
            EntryKind::HardLink => {
                self.hard_link(entry, raw, parent, &cname, layer_path, dpkg_name)
            }
            EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo => Ok(()),
        }
    }

    /// Opens (creating if missing) the directories `dirs` below root, never
    /// following a symlink, and returns the last one's fd. The chain stays
    /// open for the next entry, which is usually in the same directory.
    fn walk(&mut self, raw: &[u8], dirs: &[&[u8]]) -> Result<RawFd> {
        let common = self
            .stack
            .iter()
            .zip(dirs)
            .take_while(|((have, _), want)| have.as_slice() == **want)
            .count();
        self.stack.truncate(common);
        for i in common..dirs.len() {
            let parent = self.dir_fd(i);
            let name = cstring(dirs[i]);
            let fd = match open_dir(parent, &name) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    // dpkg-deb lists every directory; a hand-made tar may
                    // not. Create it as tar would.
                    let path = join(&dirs[..=i]);
                    if let Err(e) = mkdirat(parent, &name, 0o755) {
                        if e.raw_os_error() != Some(libc::EEXIST) {
                            return Err(self.io("creating directory", &path, e));
                        }
                    }
                    let fd = open_dir(parent, &name)
                        .map_err(|e| self.walk_error(raw, parent, &dirs[..=i], e))?;
                    fchmod(fd.as_raw_fd(), 0o755)
                        .map_err(|e| self.io("setting the mode of", &path, e))?;
                    self.implicit_dirs.insert(path);
                    fd
                }
                Err(e) => return Err(self.walk_error(raw, parent, &dirs[..=i], e)),
            };
            self.stack.push((dirs[i].to_vec(), fd));
        }
        Ok(self.dir_fd(dirs.len()))
    }

    fn dir_fd(&self, depth: usize) -> RawFd {
        if depth == 0 {
            self.root.as_raw_fd()
        } else {
            self.stack[depth - 1].1.as_raw_fd()
        }
    }

    /// The error for a failed `open_dir(parent, last of prefix)`.
    fn walk_error(&self, raw: &[u8], parent: RawFd, prefix: &[&[u8]], e: io::Error) -> Error {
        let what = lossy(&join(prefix));
        match e.raw_os_error() {
            // O_DIRECTORY|O_NOFOLLOW gives ENOTDIR (or ELOOP) on a symlink.
            Some(libc::ELOOP | libc::ENOTDIR) => {
                let name = cstring(prefix.last().copied().unwrap_or_default());
                let symlink = lstat_at(parent, &name)
                    .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK);
                let is = if symlink {
                    "a symlink"
                } else {
                    "not a directory"
                };
                self.unsafe_entry(raw, format!("its parent {what:?} is {is} in the layer"))
            }
            _ => self.io("opening directory", &join(prefix), e),
        }
    }

    /// Opens the parent directory of an existing path without creating
    /// anything or touching the cached chain.
    fn walk_existing(&self, raw: &[u8], dirs: &[&[u8]]) -> Result<OwnedFd> {
        let mut fd = dup(self.root.as_raw_fd()).map_err(|e| self.io("opening", b".", e))?;
        for (i, dir) in dirs.iter().enumerate() {
            fd = open_dir(fd.as_raw_fd(), &cstring(dir))
                .map_err(|e| self.walk_error(raw, fd.as_raw_fd(), &dirs[..=i], e))?;
        }
        Ok(fd)
    }

    fn directory(
        &mut self,
        entry: &DataEntry,
        raw: &[u8],
        parent: RawFd,
        name: &CStr,
        layer_path: Vec<u8>,
    ) -> Result<()> {
        self.report.directories += 1;
        let apply = match mkdirat(parent, name, 0o700) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                let st =
                    lstat_at(parent, name).map_err(|e| self.io("inspecting", &layer_path, e))?;
                match st.st_mode & libc::S_IFMT {
                    // An existing directory keeps its metadata, unless this
                    // unpack made it up as a missing parent.
                    libc::S_IFDIR => self.implicit_dirs.remove(&layer_path),
                    // As dpkg does, a symlink to a directory stands for it
                    // (its content will be refused: comb never follows it).
                    libc::S_IFLNK => return Ok(()),
                    _ => {
                        return Err(self.unsafe_entry(
                            raw,
                            "a directory where the layer already has a non-directory",
                        ))
                    }
                }
            }
            Err(e) => return Err(self.io("creating directory", &layer_path, e)),
        };
        if !apply {
            return Ok(());
        }
        let fd =
            open_dir(parent, name).map_err(|e| self.io("opening directory", &layer_path, e))?;
        fchown(fd.as_raw_fd(), entry.uid, entry.gid)
            .map_err(|e| self.io("setting the owner of", &layer_path, e))?;
        // setuid means nothing on a directory; setgid and sticky are kept
        // (/var/mail 2775, /tmp 1777).
        fchmod(fd.as_raw_fd(), entry.mode & 0o3777)
            .map_err(|e| self.io("setting the mode of", &layer_path, e))?;
        self.dir_mtimes.push((layer_path, entry.mtime));
        Ok(())
    }

    /// Checks that an existing `name` may be replaced by a non-directory:
    /// an existing directory is refused (dpkg refuses it too).
    fn replace_target(
        &mut self,
        raw: &[u8],
        parent: RawFd,
        name: &CStr,
        layer_path: &[u8],
    ) -> Result<()> {
        let st = match lstat_at(parent, name) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(self.io("inspecting", layer_path, e)),
        };
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            return Err(self.unsafe_entry(
                raw,
                "a non-directory where the layer already has a directory",
            ));
        }
        Ok(())
    }

    fn tmp_name(&mut self) -> CString {
        self.tmp_counter += 1;
        cstring(format!(".comb-unpack.{}.{}", std::process::id(), self.tmp_counter).as_bytes())
    }

    /// Renames `tmp` over `name`, or removes `tmp` on failure.
    fn rename_over(&self, parent: RawFd, tmp: &CStr, name: &CStr, layer_path: &[u8]) -> Result<()> {
        renameat(parent, tmp, name).map_err(|e| {
            let _ = unlinkat(parent, tmp);
            self.io("replacing", layer_path, e)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn file(
        &mut self,
        entry: &DataEntry,
        content: &mut dyn Read,
        raw: &[u8],
        parent: RawFd,
        name: &CStr,
        layer_path: Vec<u8>,
        dpkg_name: String,
    ) -> Result<()> {
        let set_id = entry.mode & 0o6000 != 0;
        if set_id {
            self.check_set_id_name(raw)?;
        }
        let (fd, tmp) = match create_excl(parent, name) {
            Ok(fd) => (fd, None),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.replace_target(raw, parent, name, &layer_path)?;
                loop {
                    let tmp = self.tmp_name();
                    match create_excl(parent, &tmp) {
                        Ok(fd) => break (fd, Some(tmp)),
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                        Err(e) => return Err(self.io("creating", &layer_path, e)),
                    }
                }
            }
            Err(e) => return Err(self.io("creating", &layer_path, e)),
        };
        let result = self.fill_file(entry, content, fd, &layer_path);
        if let Err(e) = result {
            if let Some(tmp) = &tmp {
                let _ = unlinkat(parent, tmp);
            }
            return Err(e);
        }
        if let Some(tmp) = &tmp {
            self.rename_over(parent, tmp, name, &layer_path)?;
        }
        self.report.files += 1;
        self.report.bytes += entry.size;
        self.files.insert(layer_path, set_id.then_some(entry.mode));
        if set_id {
            self.report.set_id.push(SetIdFile {
                path: dpkg_name,
                uid: entry.uid,
                gid: entry.gid,
                mode: entry.mode,
            });
        }
        Ok(())
    }

    fn fill_file(
        &mut self,
        entry: &DataEntry,
        content: &mut dyn Read,
        fd: OwnedFd,
        layer_path: &[u8],
    ) -> Result<()> {
        let mut file = File::from(fd);
        loop {
            let n = match content.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::BadDeb {
                        deb: self.deb.to_path_buf(),
                        member: self.member.to_string(),
                        message: format!(
                            "entry {:?}: {e}",
                            lossy(entry.path.as_os_str().as_bytes())
                        ),
                    })
                }
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| self.io("writing", layer_path, e))?;
        }
        let fd = file.as_raw_fd();
        fchown(fd, entry.uid, entry.gid)
            .map_err(|e| self.io("setting the owner of", layer_path, e))?;
        // After chown, which clears set-id bits anyway.
        fchmod(fd, entry.mode & 0o1777)
            .map_err(|e| self.io("setting the mode of", layer_path, e))?;
        set_times(fd, None, entry.mtime, 0)
            .map_err(|e| self.io("setting the time of", layer_path, e))
    }

    fn symlink(
        &mut self,
        entry: &DataEntry,
        raw: &[u8],
        parent: RawFd,
        name: &CStr,
        layer_path: Vec<u8>,
    ) -> Result<()> {
        let target = entry.link.as_os_str().as_bytes();
        if target.is_empty() {
            return Err(self.unsafe_entry(raw, "a symlink with an empty target"));
        }
        let target = CString::new(target)
            .map_err(|_| self.unsafe_entry(raw, "a symlink target with a NUL byte"))?;
        match symlinkat(&target, parent, name) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.replace_target(raw, parent, name, &layer_path)?;
                let tmp = loop {
                    let tmp = self.tmp_name();
                    match symlinkat(&target, parent, &tmp) {
                        Ok(()) => break tmp,
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                        Err(e) => return Err(self.io("creating symlink", &layer_path, e)),
                    }
                };
                self.rename_over(parent, &tmp, name, &layer_path)?;
            }
            Err(e) => return Err(self.io("creating symlink", &layer_path, e)),
        }
        fchownat_nofollow(parent, name, entry.uid, entry.gid)
            .map_err(|e| self.io("setting the owner of", &layer_path, e))?;
        set_times(parent, Some(name), entry.mtime, libc::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| self.io("setting the time of", &layer_path, e))?;
        self.files.remove(&layer_path);
        self.report.symlinks += 1;
        Ok(())
    }

    fn hard_link(
        &mut self,
        entry: &DataEntry,
        raw: &[u8],
        parent: RawFd,
        name: &CStr,
        layer_path: Vec<u8>,
        dpkg_name: String,
    ) -> Result<()> {
        let raw_target = entry.link.as_os_str().as_bytes();
        let (target, _) = self.resolve(raw_target, EntryKind::File).map_err(|_| {
            self.unsafe_entry(
                raw,
                format!(
                    "a hard link to {:?}, outside the archive",
                    lossy(raw_target)
                ),
            )
        })?;
        let target_path = join(&target);
        let Some(&set_id_mode) = self.files.get(&target_path) else {
            return Err(self.unsafe_entry(
                raw,
                format!(
                    "a hard link to {:?}, which is not a file unpacked earlier from this archive",
                    lossy(raw_target)
                ),
            ));
        };
        let Some((&tname, tdirs)) = target.split_last() else {
            return Err(self.unsafe_entry(raw, "a hard link to the root"));
        };
        let tparent = self.walk_existing(raw, tdirs)?;
        let tname = cstring(tname);
        let tst = lstat_at(tparent.as_raw_fd(), &tname)
            .map_err(|e| self.io("inspecting", &target_path, e))?;
        if tst.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(self.unsafe_entry(raw, "a hard link to something not a regular file"));
        }
        if set_id_mode.is_some() {
            self.check_set_id_name(raw)?;
        }
        match linkat(tparent.as_raw_fd(), &tname, parent, name) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.replace_target(raw, parent, name, &layer_path)?;
                let st =
                    lstat_at(parent, name).map_err(|e| self.io("inspecting", &layer_path, e))?;
                // rename() of two links to one inode does nothing.
                if (st.st_dev, st.st_ino) != (tst.st_dev, tst.st_ino) {
                    let tmp = loop {
                        let tmp = self.tmp_name();
                        match linkat(tparent.as_raw_fd(), &tname, parent, &tmp) {
                            Ok(()) => break tmp,
                            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                            Err(e) => return Err(self.io("creating hard link", &layer_path, e)),
                        }
                    };
                    self.rename_over(parent, &tmp, name, &layer_path)?;
                }
            }
            Err(e) => return Err(self.io("creating hard link", &layer_path, e)),
        }
        if let Some(mode) = set_id_mode {
            self.report.set_id.push(SetIdFile {
                path: dpkg_name,
                uid: tst.st_uid,
                gid: tst.st_gid,
                mode,
            });
        }
        self.files.insert(layer_path, set_id_mode);
        self.report.hard_links += 1;
        Ok(())
    }

    /// Gives the directories their archive mtimes, now that nothing more
    /// is written into them.
    fn finish(mut self) -> Result<UnpackReport> {
        self.stack.clear();
        let dir_mtimes = std::mem::take(&mut self.dir_mtimes);
        for (path, mtime) in dir_mtimes {
            let comps: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
            let Some((name, dirs)) = comps.split_last() else {
                continue;
            };
            // A directory that a later entry removed or shadowed is left.
            let Ok(parent) = self.walk_existing(&path, dirs) else {
                continue;
            };
            let Ok(fd) = open_dir(parent.as_raw_fd(), &cstring(name)) else {
                continue;
            };
            set_times(fd.as_raw_fd(), None, mtime, 0)
                .map_err(|e| self.io("setting the time of", &path, e))?;
        }
        Ok(self.report)
    }
}

// ---------------------------------------------------------------------------
// system calls

/// A C string of a name known to hold no NUL byte (checked by
/// [`normalize`]); a NUL would only shorten it.
fn cstring(name: &[u8]) -> CString {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    CString::new(&name[..end]).unwrap_or_default()
}

/// Creates a new regular file; fails (EEXIST) on anything existing,
/// including a symlink.
fn create_excl(parent: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: as above.
    let fd = cvt(unsafe {
        libc::openat(
            parent,
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    })?;
    Ok(owned(fd))
}

fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: duplicating a descriptor we hold.
    let fd = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    Ok(owned(fd))
}

fn mkdirat(parent: RawFd, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: as above.
    cvt(unsafe { libc::mkdirat(parent, name.as_ptr(), mode as libc::mode_t) }).map(drop)
}

fn symlinkat(target: &CStr, parent: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: as above.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), parent, name.as_ptr()) }).map(drop)
}

/// Links without following a symlink at the source (flags 0).
fn linkat(from_dir: RawFd, from: &CStr, to_dir: RawFd, to: &CStr) -> io::Result<()> {
    // SAFETY: as above.
    cvt(unsafe { libc::linkat(from_dir, from.as_ptr(), to_dir, to.as_ptr(), 0) }).map(drop)
}

fn renameat(dir: RawFd, from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: as above.
    cvt(unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) }).map(drop)
}

fn unlinkat(dir: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: as above.
    cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), 0) }).map(drop)
}

fn lstat_at(parent: RawFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: `st` is written by the kernel on success only.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    cvt(unsafe { libc::fstatat(parent, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

fn fchown(fd: RawFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: a descriptor we hold.
    cvt(unsafe { libc::fchown(fd, uid, gid) }).map(drop)
}

fn fchownat_nofollow(parent: RawFd, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: as above.
    cvt(unsafe { libc::fchownat(parent, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
        .map(drop)
}

fn fchmod(fd: RawFd, mode: u32) -> io::Result<()> {
    // SAFETY: a descriptor we hold.
    cvt(unsafe { libc::fchmod(fd, mode as libc::mode_t) }).map(drop)
}

/// Sets atime and mtime to `mtime`: of `fd` itself when `name` is None,
/// else of `name` in directory `fd` (with `flags`).
fn set_times(fd: RawFd, name: Option<&CStr>, mtime: i64, flags: libc::c_int) -> io::Result<()> {
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: `times` holds two timespecs; the name is a valid C string.
    cvt(unsafe {
        match name {
            None => libc::futimens(fd, times.as_ptr()),
            Some(name) => libc::utimensat(fd, name.as_ptr(), times.as_ptr(), flags),
        }
    })
    .map(drop)
}
