//! Content digests: an algorithm, a 32-byte hash and the size of the content.
//!
//! The text form is `<algorithm>:<64 lowercase hex>:<size in bytes>`, e.g.
//! `blake3:af13…9c:1024`. It is also the serde form, so a digest in JSON or in
//! the index is the same string a user sees.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// A hash algorithm the store can address content by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Algorithm {
    /// BLAKE3, the store's own algorithm: fast and tree-parallel.
    #[default]
    Blake3,
    /// SHA-256, the algorithm Debian indices name `.deb`s by.
    Sha256,
}

impl Algorithm {
    /// Every algorithm, for walking the store.
    pub const ALL: [Algorithm; 2] = [Algorithm::Blake3, Algorithm::Sha256];

    /// The name used in digest strings and in the store layout.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Blake3 => "blake3",
            Algorithm::Sha256 => "sha256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, DigestError> {
        match s {
            "blake3" => Ok(Algorithm::Blake3),
            "sha256" => Ok(Algorithm::Sha256),
            other => Err(DigestError::UnknownAlgorithm(other.to_string())),
        }
    }
}

/// Why a digest string or an expected hash could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error(
        "malformed digest {0:?}: expected <algorithm>:<64 hex digits>:<size>, \
         e.g. blake3:<hash>:1024"
    )]
    Shape(String),
    #[error("unknown hash algorithm {0:?}: expected \"blake3\" or \"sha256\"")]
    UnknownAlgorithm(String),
    #[error("hash {hash:?} has {len} characters: expected 64 hex digits")]
    HashLength { hash: String, len: usize },
    #[error("hash {0:?} is not lowercase hexadecimal")]
    HashNotHex(String),
    #[error("size {0:?} is not a decimal number of bytes")]
    Size(String),
}

/// The address of a piece of content: which algorithm, its hash, its size.
///
/// Two digests are equal only if all three are: the size is part of the
/// address so a truncated copy can never pass for the whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    pub algorithm: Algorithm,
    pub hash: [u8; 32],
    pub size: u64,
}

impl Digest {
    /// The digest of a byte slice.
    pub fn of_bytes(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut h = Hasher::new(algorithm);
        h.update(data);
        h.finalize()
    }

    /// The digest of everything `reader` yields.
    pub fn of_reader(algorithm: Algorithm, reader: &mut impl Read) -> io::Result<Digest> {
        let mut h = Hasher::new(algorithm);
        io::copy(reader, &mut h)?;
        Ok(h.finalize())
    }

    /// The hash as 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.hash)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.algorithm, self.hex(), self.size)
    }
}

/// Parses 64 hex digits into a hash. `lowercase_only` keeps the canonical
/// digest form unique; expected hashes from elsewhere may be in either case.
pub(crate) fn parse_hash(s: &str, lowercase_only: bool) -> Result<[u8; 32], DigestError> {
    if s.len() != 64 {
        return Err(DigestError::HashLength {
            hash: s.to_string(),
            len: s.chars().count(),
        });
    }
    let ok = s.bytes().all(|b| {
        b.is_ascii_digit()
            || (b'a'..=b'f').contains(&b)
            || (!lowercase_only && (b'A'..=b'F').contains(&b))
    });
    if !ok {
        return Err(DigestError::HashNotHex(s.to_string()));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| DigestError::HashNotHex(s.to_string()))?;
    Ok(out)
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, DigestError> {
        let mut parts = s.split(':');
        let (Some(alg), Some(hash), Some(size), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(DigestError::Shape(s.to_string()));
        };
        let algorithm: Algorithm = alg.parse()?;
        let hash = parse_hash(hash, true)?;
        // u64::from_str accepts a leading '+'; the canonical form does not.
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DigestError::Size(size.to_string()));
        }
        let size = size
            .parse::<u64>()
            .map_err(|_| DigestError::Size(size.to_string()))?;
        Ok(Digest {
            algorithm,
            hash,
            size,
        })
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A hash algorithm as a type, for [`Hash`].
pub trait HashAlgorithm {
    const ALGORITHM: Algorithm;
}

/// BLAKE3 as a type: `Hash<Blake3>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Blake3 {}

/// SHA-256 as a type: `Hash<Sha256>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sha256 {}

impl HashAlgorithm for Blake3 {
    const ALGORITHM: Algorithm = Algorithm::Blake3;
}

impl HashAlgorithm for Sha256 {
    const ALGORITHM: Algorithm = Algorithm::Sha256;
}

/// A hash of one algorithm, known from its type, without a size: what a
/// Debian index names a file by (`Hash<Sha256>`) or a source file's
/// content (`Hash<Blake3>`). Its text form is `<algorithm>:<64 hex>`;
/// [`Hash::from_hex`] and [`Hash::hex`] give the bare hex.
pub struct Hash<A> {
    bytes: [u8; 32],
    algorithm: std::marker::PhantomData<A>,
}

impl<A: HashAlgorithm> Hash<A> {
    pub fn from_bytes(bytes: [u8; 32]) -> Hash<A> {
        Hash {
            bytes,
            algorithm: std::marker::PhantomData,
        }
    }

    /// 64 hex digits, either case (Debian indices are not canonical).
    pub fn from_hex(hex: &str) -> Result<Hash<A>, DigestError> {
        Ok(Hash::from_bytes(parse_hash(hex, false)?))
    }

    /// The hash as 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.bytes)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The store digest of content of `size` bytes with this hash.
    pub fn digest(&self, size: u64) -> Digest {
        Digest {
            algorithm: A::ALGORITHM,
            hash: self.bytes,
            size,
        }
    }

    /// What content with this hash (and `size`, when known) must hash to.
    pub fn expected(&self, size: Option<u64>) -> Expected {
        Expected {
            algorithm: A::ALGORITHM,
            hash: self.bytes,
            size,
        }
    }
}

impl Hash<Blake3> {
    /// The BLAKE3 of everything `reader` yields.
    pub fn of_reader(reader: &mut impl Read) -> io::Result<Hash<Blake3>> {
        let mut h = blake3::Hasher::new();
        io::copy(reader, &mut h)?;
        Ok(Hash::from_bytes(*h.finalize().as_bytes()))
    }
}

// Derives would bound `A`, which is never a value.
impl<A> Clone for Hash<A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A> Copy for Hash<A> {}
impl<A> PartialEq for Hash<A> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl<A> Eq for Hash<A> {}
impl<A> PartialOrd for Hash<A> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<A> Ord for Hash<A> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes.cmp(&other.bytes)
    }
}
impl<A> std::hash::Hash for Hash<A> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state)
    }
}

impl<A: HashAlgorithm> fmt::Debug for Hash<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<A: HashAlgorithm> fmt::Display for Hash<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", A::ALGORITHM, self.hex())
    }
}

impl<A: HashAlgorithm> FromStr for Hash<A> {
    type Err = DigestError;
    /// `<algorithm>:<64 lowercase hex>`, the algorithm being `A`'s.
    fn from_str(s: &str) -> Result<Self, DigestError> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(DigestError::Shape(s.to_string()));
        };
        if alg.parse::<Algorithm>()? != A::ALGORITHM {
            return Err(DigestError::UnknownAlgorithm(alg.to_string()));
        }
        Ok(Hash::from_bytes(parse_hash(hex, true)?))
    }
}

/// What a download is expected to hash to: an algorithm and hash, and the
/// size when it is known (Debian indices give both for a `.deb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub algorithm: Algorithm,
    pub hash: [u8; 32],
    pub size: Option<u64>,
}

impl Expected {
    /// A SHA-256 given as 64 hex digits (either case), size unknown.
    pub fn sha256_hex(hex: &str) -> Result<Expected, DigestError> {
        Ok(Expected {
            algorithm: Algorithm::Sha256,
            hash: parse_hash(hex.trim(), false)?,
            size: None,
        })
    }

    /// Also require the content to be exactly `size` bytes.
    pub fn with_size(mut self, size: u64) -> Expected {
        self.size = Some(size);
        self
    }

    /// Whether `actual` satisfies this expectation.
    pub fn matches(&self, actual: &Digest) -> bool {
        actual.algorithm == self.algorithm
            && actual.hash == self.hash
            && match self.size {
                Some(s) => s == actual.size,
                None => true,
            }
    }
}

impl From<Digest> for Expected {
    fn from(d: Digest) -> Expected {
        Expected {
            algorithm: d.algorithm,
            hash: d.hash,
            size: Some(d.size),
        }
    }
}

impl From<&Digest> for Expected {
    fn from(d: &Digest) -> Expected {
        Expected::from(*d)
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, hex::encode(self.hash))?;
        match self.size {
            Some(s) => write!(f, ":{s}"),
            None => f.write_str(" (any size)"),
        }
    }
}

enum State {
    Blake3(Box<blake3::Hasher>),
    Sha256(sha2::Sha256),
}

/// A streaming hasher: feed it bytes (it is a [`Write`]), get a [`Digest`]
/// with the byte count. Use [`HashingWriter`] / [`HashingReader`] to hash
/// while copying.
pub struct Hasher {
    state: State,
    size: u64,
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        let state = match algorithm {
            Algorithm::Blake3 => State::Blake3(Box::new(blake3::Hasher::new())),
            Algorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
        };
        Hasher { state, size: 0 }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.state {
            State::Blake3(_) => Algorithm::Blake3,
            State::Sha256(_) => Algorithm::Sha256,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Blake3(h) => {
                h.update(data);
            }
            State::Sha256(h) => h.update(data),
        }
        self.size += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finalize(self) -> Digest {
        let (algorithm, hash) = match self.state {
            State::Blake3(h) => (Algorithm::Blake3, *h.finalize().as_bytes()),
            State::Sha256(h) => (Algorithm::Sha256, h.finalize().into()),
        };
        Digest {
            algorithm,
            hash,
            size: self.size,
        }
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that hashes exactly the bytes its inner writer accepted.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W, algorithm: Algorithm) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(algorithm),
        }
    }

    /// The inner writer and the digest of everything written through.
    pub fn finish(self) -> (W, Digest) {
        (self.inner, self.hasher.finalize())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, algorithm: Algorithm) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(algorithm),
        }
    }

    /// The inner reader and the digest of everything read so far.
    pub fn finish(self) -> (R, Digest) {
        (self.inner, self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
