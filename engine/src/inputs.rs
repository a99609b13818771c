//! What each stage's key holds, typed.
//!
//! Every stage has one struct of its inputs here, defined once with
//! `stage_inputs!`. From that one definition come the canonical description
//! that is hashed into the node's key and stored with it
//! ([`StageInputs::describe`]), the reading of a stored description back
//! into the struct ([`StageInputs::read`]), the comparison of two records
//! into [`MissReason`]s ([`reasons_between`]), what a node names in the
//! store for garbage collection ([`StageInputs::references`]), a build's
//! shortcut ([`shortcut_key`]) and the table of what each key holds
//! (`key_table`), which the engine's module documentation shows and a test
//! keeps current. No other code names an input (a test checks that too).

use crate::miss::{MissReason, UpstreamInput};
use comb_cache::{
    diff_descriptions, Blake3, Description, DescriptionError, Hash, HashAlgorithm, Input as Stored,
    NodeKind, NodeRef, ReadDescription, Sha256,
};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// How the comparison of two records words a change of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// comb's own way of making the stage.
    Builder,
    /// The key of the pinned snapshot's index node.
    Snapshot,
    /// A field of `comb.lock`.
    Lock,
    /// A recipe's input, by the name a user knows it under.
    Recipe(&'static str),
    /// A recipe's source files (a map by path).
    SourceFiles,
    /// A recipe's build script.
    Script,
    /// Another node's key: see that node's reasons.
    Upstream(UpstreamInput),
    /// Packages built by the repository (a map by `name:architecture`).
    BuildDependencies,
    /// The packages a layer adds (a map by `name:architecture`).
    Packages,
    /// Anything else, by its key.
    Other,
}

/// One input of a stage, for the key table and the comparison.
#[derive(Debug, Clone)]
// `kind` and `doc` are read by the key table, which tests generate.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct Field {
    pub key: &'static str,
    pub kind: String,
    pub role: Role,
    pub doc: &'static str,
}

/// An input as the comparison sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum View {
    Absent,
    One(String),
    List(Vec<String>),
    /// By entry key: the label a user knows the entry by, and its value.
    Map(BTreeMap<String, (String, String)>),
}

impl View {
    /// The whole input as one text, for reasons about it as a whole.
    fn text(&self) -> Option<String> {
        match self {
            View::Absent => None,
            View::One(v) => Some(v.clone()),
            View::List(items) => Some(items.join(", ")),
            View::Map(m) => Some(
                m.iter()
                    .map(|(k, (_, v))| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        }
    }
}

/// A value an input can hold.
pub(crate) trait Input: Sized {
    /// What the key table calls it.
    fn kind() -> String;
    fn write(&self, key: &str, d: &mut Description);
    fn read(stored: Option<&Stored>) -> Result<Self, String>;
    fn view(&self) -> View;
}

/// A value written as one line: its `Display` and `FromStr` are the
/// canonical text.
pub(crate) trait Scalar: fmt::Display + FromStr {
    const KIND: &'static str;
    /// What the key table calls it.
    fn kind() -> String {
        Self::KIND.to_string()
    }
}

/// The key of a map entry, and the name a user knows the entry by.
pub(crate) trait EntryKey: Scalar + Ord {
    fn label(&self) -> String {
        self.to_string()
    }
}

fn parse_scalar<T: Scalar>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a {}", T::kind()))
}

macro_rules! scalar_inputs {
    ($($t:ty),* $(,)?) => {$(
        impl Input for $t {
            fn kind() -> String {
                <$t as Scalar>::kind()
            }
            fn write(&self, key: &str, d: &mut Description) {
                d.field(key, self);
            }
            fn read(stored: Option<&Stored>) -> Result<Self, String> {
                match stored {
                    Some(Stored::One(v)) => parse_scalar(v),
                    Some(Stored::Entries(_)) => Err("expected one value, found entries".into()),
                    None => Err("missing".into()),
                }
            }
            fn view(&self) -> View {
                View::One(self.to_string())
            }
        }
    )*};
}

impl<T: Scalar> Input for Vec<T> {
    fn kind() -> String {
        format!("list of {}", T::kind())
    }
    fn write(&self, key: &str, d: &mut Description) {
        d.list(key, self);
    }
    fn read(stored: Option<&Stored>) -> Result<Self, String> {
        match stored {
            Some(Stored::Entries(entries)) => {
                let mut items = Vec::with_capacity(entries.len());
                for (i, (sub, v)) in entries.iter().enumerate() {
                    if *sub != i.to_string() {
                        return Err(format!("list entry {sub:?} is out of order"));
                    }
                    items.push(parse_scalar(v)?);
                }
                Ok(items)
            }
            Some(Stored::One(_)) => Err("expected a list, found one value".into()),
            None => Err("missing".into()),
        }
    }
    fn view(&self) -> View {
        View::List(self.iter().map(|v| v.to_string()).collect())
    }
}

impl<K: EntryKey, V: Scalar> Input for BTreeMap<K, V> {
    fn kind() -> String {
        format!("map of {} to {}", K::kind(), V::kind())
    }
    fn write(&self, key: &str, d: &mut Description) {
        d.map(key, self);
    }
    fn read(stored: Option<&Stored>) -> Result<Self, String> {
        match stored {
            Some(Stored::Entries(entries)) => {
                let mut map = BTreeMap::new();
                for (k, v) in entries {
                    map.insert(parse_scalar(k)?, parse_scalar(v)?);
                }
                Ok(map)
            }
            Some(Stored::One(_)) => Err("expected a map, found one value".into()),
            None => Err("missing".into()),
        }
    }
    fn view(&self) -> View {
        View::Map(
            self.iter()
                .map(|(k, v)| (k.to_string(), (k.label(), v.to_string())))
                .collect(),
        )
    }
}

/// An input that only some nodes of a stage have.
impl<T: Input> Input for Option<T> {
    fn kind() -> String {
        format!("{} (when any)", T::kind())
    }
    fn write(&self, key: &str, d: &mut Description) {
        if let Some(v) = self {
            v.write(key, d);
        }
    }
    fn read(stored: Option<&Stored>) -> Result<Self, String> {
        stored.map(|s| T::read(Some(s))).transpose()
    }
    fn view(&self) -> View {
        self.as_ref().map_or(View::Absent, Input::view)
    }
}

impl Scalar for String {
    const KIND: &'static str = "text";
}
impl EntryKey for String {}

impl Scalar for u64 {
    const KIND: &'static str = "number";
}

/// A node's key: the BLAKE3 of its description, 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeKey(String);

impl NodeKey {
    /// The key of a node whose key `key_of` gave.
    pub(crate) fn known(key: &str) -> NodeKey {
        debug_assert!(key.parse::<NodeKey>().is_ok(), "{key:?}");
        NodeKey(key.to_string())
    }

    /// Where a shortcut stands in for the environment it does not derive.
    pub(crate) fn not_derived() -> NodeKey {
        NodeKey("0".repeat(64))
    }
}

impl fmt::Display for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeKey {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let hex = s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        hex.then(|| NodeKey(s.to_string())).ok_or(())
    }
}

impl Scalar for NodeKey {
    const KIND: &'static str = "node key";
}

impl<A: HashAlgorithm> Scalar for Hash<A> {
    const KIND: &'static str = "digest";
}

/// A hash written as bare hex, as `comb.lock` and the indices give it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Hex<A>(pub Hash<A>);

impl<A: HashAlgorithm> fmt::Debug for Hex<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<A: HashAlgorithm> fmt::Display for Hex<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.hex())
    }
}

impl<A: HashAlgorithm> FromStr for Hex<A> {
    type Err = comb_cache::DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash::from_hex(s).map(Hex)
    }
}

impl<A: HashAlgorithm> Scalar for Hex<A> {
    const KIND: &'static str = "hex hash";
}

/// A value, or `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrNone<T>(pub Option<T>);

impl<T: fmt::Display> fmt::Display for OrNone<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("none"),
        }
    }
}

impl<T: FromStr> FromStr for OrNone<T> {
    type Err = T::Err;
    fn from_str(s: &str) -> Result<Self, T::Err> {
        match s {
            "none" => Ok(OrNone(None)),
            s => s.parse().map(|v| OrNone(Some(v))),
        }
    }
}

impl<T: Scalar> Scalar for OrNone<T> {
    const KIND: &'static str = T::KIND;
    fn kind() -> String {
        format!("{} or none", T::kind())
    }
}

/// A package by name and architecture, `name:arch`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PackageArch {
    pub name: String,
    pub architecture: String,
}

impl fmt::Display for PackageArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.architecture)
    }
}

impl FromStr for PackageArch {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (name, architecture) = s.split_once(':').ok_or(())?;
        Ok(PackageArch {
            name: name.to_string(),
            architecture: architecture.to_string(),
        })
    }
}

impl Scalar for PackageArch {
    const KIND: &'static str = "package:architecture";
}

impl EntryKey for PackageArch {
    fn label(&self) -> String {
        self.name.clone()
    }
}

/// One `.deb`: its version and the SHA-256 of its file, `VERSION sha256:HEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackageRef {
    pub version: String,
    pub sha256: Hash<Sha256>,
}

impl fmt::Display for PackageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.version, self.sha256)
    }
}

impl FromStr for PackageRef {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (version, sha256) = s.split_once(' ').ok_or(())?;
        Ok(PackageRef {
            version: version.to_string(),
            sha256: sha256.parse().map_err(|_| ())?,
        })
    }
}

impl Scalar for PackageRef {
    const KIND: &'static str = "version and sha256";
}

/// A repository package in place of the base's copy: `BASE -> VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replacement {
    /// The version the layers below hold.
    pub base: String,
    /// The repository's version.
    pub version: String,
}

impl fmt::Display for Replacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.base, self.version)
    }
}

impl FromStr for Replacement {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (base, version) = s.split_once(" -> ").ok_or(())?;
        Ok(Replacement {
            base: base.to_string(),
            version: version.to_string(),
        })
    }
}

impl Scalar for Replacement {
    const KIND: &'static str = "base version -> version";
}

/// The content of a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileHash {
    Blake3(Hash<Blake3>),
    Sha256(Hash<Sha256>),
}

/// One entry of a recipe's sources: a file (`x ` before an executable
/// one's digest), `-> TARGET` for a symlink, `dir` for a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SourceEntry {
    File { hash: FileHash, executable: bool },
    Symlink(String),
    Dir,
}

impl SourceEntry {
    pub fn file(hash: FileHash) -> SourceEntry {
        SourceEntry::File {
            hash,
            executable: false,
        }
    }
}

impl fmt::Display for SourceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceEntry::File { hash, executable } => {
                if *executable {
                    f.write_str("x ")?;
                }
                match hash {
                    FileHash::Blake3(h) => h.fmt(f),
                    FileHash::Sha256(h) => h.fmt(f),
                }
            }
            SourceEntry::Symlink(target) => write!(f, "-> {target}"),
            SourceEntry::Dir => f.write_str("dir"),
        }
    }
}

impl FromStr for SourceEntry {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        if s == "dir" {
            return Ok(SourceEntry::Dir);
        }
        if let Some(target) = s.strip_prefix("-> ") {
            return Ok(SourceEntry::Symlink(target.to_string()));
        }
        let (executable, digest) = match s.strip_prefix("x ") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let hash = match digest.parse() {
            Ok(h) => FileHash::Blake3(h),
            Err(_) => FileHash::Sha256(digest.parse().map_err(|_| ())?),
        };
        Ok(SourceEntry::File { hash, executable })
    }
}

impl Scalar for SourceEntry {
    const KIND: &'static str = "file digest, symlink or dir";
}

/// Where a build's sources come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKind {
    Native,
    Debian,
    Dsc,
    Url,
}

impl SourceKind {
    const ALL: [(SourceKind, &'static str); 4] = [
        (SourceKind::Native, "native"),
        (SourceKind::Debian, "debian"),
        (SourceKind::Dsc, "dsc"),
        (SourceKind::Url, "url"),
    ];
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (_, name) = SourceKind::ALL.iter().find(|(k, _)| k == self).unwrap();
        f.write_str(name)
    }
}

impl FromStr for SourceKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        SourceKind::ALL
            .iter()
            .find(|(_, name)| *name == s)
            .map(|(k, _)| *k)
            .ok_or(())
    }
}

impl Scalar for SourceKind {
    const KIND: &'static str = "native, debian, dsc or url";
}

/// Which version of a Debian source is wanted: `newest` or one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted(pub Option<String>);

impl fmt::Display for Wanted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_deref().unwrap_or("newest"))
    }
}

impl FromStr for Wanted {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(Wanted((s != "newest").then(|| s.to_string())))
    }
}

impl Scalar for Wanted {
    const KIND: &'static str = "version or newest";
}

/// The layer stage a layer node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerStage(pub NodeKind);

impl fmt::Display for LayerStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl FromStr for LayerStage {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.parse::<NodeKind>() {
            Ok(k @ (NodeKind::BaseInstall | NodeKind::BaseBuild | NodeKind::PkgEnv)) => {
                Ok(LayerStage(k))
            }
            _ => Err(()),
        }
    }
}

/// The packages a resolution installs: named, or the snapshot's
/// essential and required ones (`names=essential-and-required`, a function
/// of the snapshot alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InstallNames {
    EssentialAndRequired,
    Named(Vec<String>),
}

const ESSENTIAL_AND_REQUIRED: &str = "essential-and-required";

impl Input for InstallNames {
    fn kind() -> String {
        format!("{} or {ESSENTIAL_AND_REQUIRED}", Vec::<String>::kind())
    }
    fn write(&self, key: &str, d: &mut Description) {
        match self {
            InstallNames::EssentialAndRequired => d.field(key, ESSENTIAL_AND_REQUIRED),
            InstallNames::Named(names) => d.list(key, names),
        };
    }
    fn read(stored: Option<&Stored>) -> Result<Self, String> {
        match stored {
            Some(Stored::One(v)) if v == ESSENTIAL_AND_REQUIRED => {
                Ok(InstallNames::EssentialAndRequired)
            }
            other => Vec::read(other).map(InstallNames::Named),
        }
    }
    fn view(&self) -> View {
        match self {
            InstallNames::EssentialAndRequired => View::One(ESSENTIAL_AND_REQUIRED.into()),
            InstallNames::Named(names) => names.view(),
        }
    }
}

scalar_inputs!(
    String,
    u64,
    NodeKey,
    Hash<Blake3>,
    Hex<Sha256>,
    Hex<Blake3>,
    OrNone<NodeKey>,
    OrNone<Hash<Blake3>>,
    SourceKind,
    Wanted,
    Replacement,
);

/// The inputs of one stage.
pub(crate) trait StageInputs: Sized {
    /// Every input, in the order the description writes them.
    fn fields() -> Vec<Field>;
    /// The stage as its description names it.
    fn stage(&self) -> String;
    /// The canonical description, hashed into the node's key.
    fn describe(&self) -> Description;
    /// A stored description read back; `Err` names what does not fit.
    fn read(stored: &ReadDescription) -> Result<Self, String>;
    /// Every input as the comparison sees it, in [`StageInputs::fields`]'s order.
    fn views(&self) -> Vec<View>;

    /// The node's key.
    fn key(&self) -> Result<String, DescriptionError> {
        self.describe().key()
    }

    /// What the node names in the store through its inputs, recorded with
    /// it so that garbage collection keeps them: the node it is built on
    /// (an upstream input's key) and its source files kept as blobs (a
    /// source entry's SHA-256: a `url` tarball, a Debian source's files).
    fn references(&self) -> Vec<NodeRef> {
        let mut refs = Vec::new();
        for (field, view) in Self::fields().iter().zip(self.views()) {
            match (field.role, view) {
                (Role::Upstream(UpstreamInput::Env | UpstreamInput::Below), View::One(key)) => {
                    if let Ok(key) = key.parse::<NodeKey>() {
                        refs.push(NodeRef::Node(key.0));
                    }
                }
                (Role::SourceFiles, View::Map(entries)) => {
                    for (_, entry) in entries.values() {
                        if let Ok(SourceEntry::File {
                            hash: FileHash::Sha256(h),
                            ..
                        }) = entry.parse()
                        {
                            refs.push(NodeRef::Blob {
                                algorithm: comb_cache::Algorithm::Sha256,
                                hex: h.hex(),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        refs
    }
}

/// Defines a stage's inputs: a struct, and its [`StageInputs`]. Each field
/// is `/// doc` `name: Type = "key", role;`. The stage is a literal, or a
/// member of the struct that is not an input (`for stage: Type`).
macro_rules! stage_inputs {
    (@impl $name:ident, $stage_of:expr, $check:expr, [$($stage_field:ident)?],
        $( $(#[doc = $fdoc:literal])* $field:ident: $ty:ty = $key:literal, $role:expr; )*
    ) => {
        impl StageInputs for $name {
            fn fields() -> Vec<Field> {
                vec![$(Field {
                    key: $key,
                    kind: <$ty as Input>::kind(),
                    role: $role,
                    doc: concat!($($fdoc),*).trim_ascii(),
                }),*]
            }
            fn stage(&self) -> String {
                #[allow(clippy::redundant_closure_call)]
                ($stage_of)(self)
            }
            fn describe(&self) -> Description {
                let mut d = Description::new(&self.stage());
                $( self.$field.write($key, &mut d); )*
                d
            }
            fn read(stored: &ReadDescription) -> Result<Self, String> {
                for key in stored.keys() {
                    if ![$($key),*].contains(&key) {
                        return Err(format!("{} has no input {key:?}", stringify!($name)));
                    }
                }
                #[allow(clippy::redundant_closure_call)]
                let _stage = ($check)(stored.stage())?;
                Ok($name {
                    $($stage_field: _stage,)?
                    $( $field: Input::read(stored.input($key))
                        .map_err(|e| format!("input {}: {e}", $key))?, )*
                })
            }
            fn views(&self) -> Vec<View> {
                vec![$(self.$field.view()),*]
            }
        }
    };
    (
        $(#[doc = $doc:literal])*
        pub(crate) struct $name:ident for $stage:literal {
            $( $(#[doc = $fdoc:literal])* $field:ident: $ty:ty = $key:literal, $role:expr; )*
        }
    ) => {
        $(#[doc = $doc])*
        #[doc = concat!("\n\nStage `", $stage, "`.")]
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(crate) struct $name { $( $(#[doc = $fdoc])* pub $field: $ty, )* }

        stage_inputs!(@impl $name,
            |_: &$name| $stage.to_string(),
            |stage: &str| if stage == $stage {
                Ok(())
            } else {
                Err(format!("stage {stage:?} is not {:?}", $stage))
            },
            [],
            $( $(#[doc = $fdoc])* $field: $ty = $key, $role; )*
        );
    };
    (
        $(#[doc = $doc:literal])*
        pub(crate) struct $name:ident for stage: $stage_ty:ty {
            $( $(#[doc = $fdoc:literal])* $field:ident: $ty:ty = $key:literal, $role:expr; )*
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(crate) struct $name {
            /// The stage (not an input: the description's own).
            pub stage: $stage_ty,
            $( $(#[doc = $fdoc])* pub $field: $ty, )*
        }

        stage_inputs!(@impl $name,
            |s: &$name| s.stage.to_string(),
            |stage: &str| stage.parse::<$stage_ty>().map_err(|_| {
                format!("stage {stage:?} is not one of {}", stringify!($name))
            }),
            [stage],
            $( $(#[doc = $fdoc])* $field: $ty = $key, $role; )*
        );
    };
}

stage_inputs! {
    /// The distribution snapshot `comb.lock` pins: its `InRelease`, checked
    /// with its keyring, names every index.
    pub(crate) struct IndexInputs for "index" {
        /// The mirror's URI.
        uri: String = "uri", Role::Lock;
        /// The suite (e.g. `bookworm`).
        suite: String = "suite", Role::Lock;
        /// The components (e.g. `main`).
        components: Vec<String> = "components", Role::Lock;
        /// The architecture everything is built for.
        architecture: String = "architecture", Role::Lock;
        /// The SHA-256 of the keyring `InRelease` is checked with.
        keyring_sha256: Hex<Sha256> = "keyring-sha256", Role::Lock;
        /// The SHA-256 of the pinned `InRelease`.
        inrelease_sha256: Hex<Sha256> = "inrelease-sha256", Role::Lock;
    }
}

stage_inputs! {
    /// The snapshot's record of a `debian` recipe's source package.
    pub(crate) struct SourceChoiceInputs for "resolve" {
        /// The snapshot's index node.
        index: NodeKey = "index", Role::Snapshot;
        /// The source package's name.
        source: String = "source", Role::Other;
        /// The version the recipe asks for, or `newest`.
        version: Wanted = "version", Role::Recipe("version");
    }
}

stage_inputs! {
    /// A base layer's install set, resolved by APT.
    pub(crate) struct InstallSetInputs for "resolve" {
        /// The snapshot's index node.
        index: NodeKey = "index", Role::Snapshot;
        /// The architecture resolved for.
        architecture: String = "architecture", Role::Recipe("architecture");
        /// The BLAKE3 of the dpkg status of the layers below, or `none`.
        status: OrNone<Hash<Blake3>> = "status", Role::Upstream(UpstreamInput::Status);
        /// The packages asked for (`[base]` of `comb.toml`).
        names: InstallNames = "names", Role::Recipe("names");
        /// The repository's builds that replace the snapshot's packages
        /// (`[base] bootstrap`).
        local: Option<BTreeMap<PackageArch, PackageRef>> = "local", Role::BuildDependencies;
    }
}

stage_inputs! {
    /// A package's build dependencies, resolved by comb's resolver on its base.
    pub(crate) struct BuildDepsInputs for "resolve" {
        /// The resolver and its version (none in records made by APT,
        /// before comb had its own).
        resolver: Option<String> = "resolver", Role::Builder;
        /// The snapshot's index node.
        index: NodeKey = "index", Role::Snapshot;
        /// The architecture resolved for.
        architecture: String = "architecture", Role::Recipe("architecture");
        /// The BLAKE3 of the dpkg status of the layers below.
        status: OrNone<Hash<Blake3>> = "status", Role::Upstream(UpstreamInput::Status);
        /// The build requirements, Debian relations, sorted.
        requires: Vec<String> = "requires", Role::Recipe("build.requires");
        /// The packages built by the repository's recipes it needs.
        local: BTreeMap<PackageArch, PackageRef> = "local", Role::BuildDependencies;
        /// The repository's packages that replace a copy the layers below
        /// hold (`BASE-VERSION -> VERSION`).
        replaces: Option<BTreeMap<PackageArch, Replacement>> = "replaces", Role::Other;
    }
}

stage_inputs! {
    /// One `.deb` downloaded into the store.
    pub(crate) struct FetchInputs for "fetch" {
        /// Its SHA-256, from the index.
        sha256: Hex<Sha256> = "sha256", Role::Other;
        /// Its size in bytes, from the index.
        size: u64 = "size", Role::Other;
    }
}

stage_inputs! {
    /// An environment layer: packages unpacked and configured by R on the
    /// layers below. Stage `base-install`, `base-build` or `pkg-env`.
    pub(crate) struct LayerInputs for stage: LayerStage {
        /// comb's way of making layers.
        recipe: String = "recipe", Role::Builder;
        /// The layer below, or `none`.
        below: OrNone<NodeKey> = "below", Role::Upstream(UpstreamInput::Below);
        /// The packages it adds.
        packages: BTreeMap<PackageArch, PackageRef> = "packages", Role::Packages;
    }
}

stage_inputs! {
    /// One recipe's build, run by U in its environment.
    pub(crate) struct BuildInputs for "build" {
        /// comb's way of building.
        builder: String = "builder", Role::Builder;
        /// Where the sources come from.
        kind: SourceKind = "kind", Role::Recipe("kind");
        /// The recipe's name.
        name: String = "name", Role::Recipe("name");
        /// The version built.
        version: String = "version", Role::Recipe("version");
        /// The environment's top layer.
        env: NodeKey = "env", Role::Upstream(UpstreamInput::Env);
        /// The architecture built for.
        architecture: String = "architecture", Role::Recipe("architecture");
        /// Every source file by path.
        source: BTreeMap<String, SourceEntry> = "source", Role::SourceFiles;
        /// The recipe's build script (empty for Debian sources).
        script: String = "script", Role::Script;
        /// The recipe's outputs, each as one line.
        outputs: Vec<String> = "outputs", Role::Recipe("outputs");
        /// What a native recipe's packages say of themselves besides
        /// their outputs: maintainer, license, copyright, homepage,
        /// description (none in records made before comb wrote them).
        package: Option<String> = "package", Role::Recipe("package");
    }
}

stage_inputs! {
    /// What a build's environment is derived from. With the build's inputs
    /// (its `env` not derived) it keys the build's shortcut: a run that
    /// changes nothing finds the build without resolving its environment.
    pub(crate) struct EnvOriginInputs for "build-shortcut" {
        /// The resolver of the build dependencies and its version (none
        /// before comb had its own).
        resolver: Option<String> = "resolver", Role::Builder;
        /// The snapshot's index node.
        index: NodeKey = "index", Role::Snapshot;
        /// The base environment's top layer.
        base: NodeKey = "base", Role::Upstream(UpstreamInput::Below);
        /// The build requirements, Debian relations.
        requires: Vec<String> = "requires", Role::Recipe("build.requires");
        /// The outputs of the recipes it needs (each a BLAKE3).
        needs: Vec<Hex<Blake3>> = "needs", Role::BuildDependencies;
    }
}

/// The key of a build's shortcut: its inputs with the environment not yet
/// derived (`build.env` is [`NodeKey::not_derived`]), and what the
/// environment is derived from.
pub(crate) fn shortcut_key(
    build: &BuildInputs,
    origin: &EnvOriginInputs,
) -> Result<String, DescriptionError> {
    debug_assert_eq!(build.env, NodeKey::not_derived());
    let text = build.describe().finish()? + &origin.describe().finish()?;
    Ok(comb_cache::key_of(&text))
}

/// The node a miss is compared with.
#[derive(Debug, Clone)]
pub struct Previous {
    pub key: String,
    pub description: String,
    /// It is a failed attempt, not a recorded node.
    pub failed: bool,
}

/// The reasons a node of `stage` whose description is `new` (key `key`)
/// was not a hit, against `previous`.
pub(crate) fn miss_reasons(
    stage: NodeKind,
    key: &str,
    new: &str,
    previous: Option<&Previous>,
) -> Result<Vec<MissReason>, DescriptionError> {
    let Some(previous) = previous else {
        return Ok(vec![MissReason::FirstBuild]);
    };
    let mut reasons = Vec::new();
    if previous.failed {
        reasons.push(MissReason::PreviousFailed);
    }
    if previous.key == key {
        if !previous.failed {
            reasons.push(MissReason::OutputGone);
        }
        return Ok(reasons);
    }
    reasons.extend(reasons_between(stage, &previous.description, new)?);
    Ok(reasons)
}

/// Why a node whose description is `new` differs from one described
/// `old`. Descriptions of this comb's stages are compared input by input;
/// any other (an older comb's) input by input as text.
pub(crate) fn reasons_between(
    node: NodeKind,
    old: &str,
    new: &str,
) -> Result<Vec<MissReason>, DescriptionError> {
    let typed = ReadDescription::parse(old)
        .and_then(|o| Ok((o, ReadDescription::parse(new)?)))
        .ok()
        .and_then(|(o, n)| typed_reasons(node, &o, &n));
    if let Some(reasons) = typed {
        return Ok(reasons);
    }
    Ok(diff_descriptions(old, new)?
        .into_iter()
        .map(|c| MissReason::Other {
            input: c.key,
            old: c.old,
            new: c.new,
        })
        .collect())
}

/// The reasons between two records read as the same stage's struct.
fn typed_reasons(
    node: NodeKind,
    old: &ReadDescription,
    new: &ReadDescription,
) -> Option<Vec<MissReason>> {
    fn both<S: StageInputs>(
        node: NodeKind,
        old: &ReadDescription,
        new: &ReadDescription,
    ) -> Option<Vec<MissReason>> {
        let (old, new) = (S::read(old).ok()?, S::read(new).ok()?);
        Some(compare(node, &old, &new))
    }
    match node {
        NodeKind::Index => both::<IndexInputs>(node, old, new),
        NodeKind::Resolve => both::<SourceChoiceInputs>(node, old, new)
            .or_else(|| both::<BuildDepsInputs>(node, old, new))
            .or_else(|| both::<InstallSetInputs>(node, old, new)),
        NodeKind::Fetch => both::<FetchInputs>(node, old, new),
        NodeKind::BaseInstall | NodeKind::BaseBuild | NodeKind::PkgEnv => {
            both::<LayerInputs>(node, old, new)
        }
        NodeKind::Build => both::<BuildInputs>(node, old, new),
    }
}

/// A recorded description read as `S`'s, if it is one.
pub(crate) fn read_as<S: StageInputs>(description: &str) -> Option<S> {
    S::read(&ReadDescription::parse(description).ok()?).ok()
}

/// What a recorded node names through its inputs (see
/// [`StageInputs::references`]); nothing for a description this comb does
/// not read.
pub(crate) fn references_of_record(node: NodeKind, description: &str) -> Vec<NodeRef> {
    let Ok(read) = ReadDescription::parse(description) else {
        return Vec::new();
    };
    match node {
        NodeKind::Build => BuildInputs::read(&read).map(|i| i.references()),
        NodeKind::BaseInstall | NodeKind::BaseBuild | NodeKind::PkgEnv => {
            LayerInputs::read(&read).map(|i| i.references())
        }
        _ => Ok(Vec::new()),
    }
    .unwrap_or_default()
}

/// A layer node's inputs read back from its stored description, if they
/// read as this version's.
pub(crate) fn layer_of_record(description: &str) -> Option<LayerInputs> {
    let read = ReadDescription::parse(description).ok()?;
    LayerInputs::read(&read).ok()
}

/// Every input that differs from `old` to `new`, as reasons: a map whose
/// entries have their own reasons entry by entry, any other input whole.
pub(crate) fn compare<S: StageInputs>(node: NodeKind, old: &S, new: &S) -> Vec<MissReason> {
    fn entries(view: &View) -> Option<BTreeMap<String, (String, String)>> {
        match view {
            View::Map(m) => Some(m.clone()),
            View::Absent => Some(BTreeMap::new()),
            _ => None,
        }
    }
    let mut reasons = Vec::new();
    for ((field, old), new) in S::fields().iter().zip(old.views()).zip(new.views()) {
        if old == new {
            continue;
        }
        let by_entry = matches!(
            field.role,
            Role::SourceFiles | Role::BuildDependencies | Role::Packages
        );
        match (entries(&old), entries(&new)) {
            (Some(o), Some(n)) if by_entry => {
                for (key, (label, value)) in &n {
                    let was = o.get(key).map(|(_, v)| v.clone());
                    if was.as_ref() != Some(value) {
                        reasons.push(entry_reason(
                            node,
                            field.role,
                            label,
                            was,
                            Some(value.clone()),
                        ));
                    }
                }
                for (key, (label, value)) in &o {
                    if !n.contains_key(key) {
                        reasons.push(entry_reason(
                            node,
                            field.role,
                            label,
                            Some(value.clone()),
                            None,
                        ));
                    }
                }
            }
            _ => reasons.push(whole_reason(field, old.text(), new.text())),
        }
    }
    reasons
}

/// A changed entry of a map input.
fn entry_reason(
    node: NodeKind,
    role: Role,
    label: &str,
    old: Option<String>,
    new: Option<String>,
) -> MissReason {
    let label = label.to_string();
    match role {
        Role::SourceFiles => MissReason::SourceFile {
            path: label,
            old,
            new,
        },
        Role::Packages => MissReason::Package {
            layer: node.as_str().to_string(),
            package: label,
            old,
            new,
        },
        _ => MissReason::BuildDependency {
            package: label,
            recipe: None,
            old,
            new,
        },
    }
}

/// A changed input, taken whole.
fn whole_reason(field: &Field, old: Option<String>, new: Option<String>) -> MissReason {
    match field.role {
        Role::Builder => MissReason::Builder { old, new },
        Role::Snapshot => MissReason::Snapshot { old, new },
        Role::Script => MissReason::Script {
            diff: crate::miss::line_diff(
                old.as_deref().unwrap_or(""),
                new.as_deref().unwrap_or(""),
            ),
        },
        Role::Upstream(input) => MissReason::Upstream {
            input,
            old,
            new,
            node: None,
        },
        Role::Recipe(label) => MissReason::Recipe {
            field: label.to_string(),
            old,
            new,
        },
        Role::Lock | Role::Other | Role::SourceFiles | Role::BuildDependencies | Role::Packages => {
            MissReason::Other {
                input: field.key.to_string(),
                old,
                new,
            }
        }
    }
}

/// The table of what each stage's key holds, in Markdown: generated from
/// the structs above, shown in the engine's module documentation.
#[cfg(test)]
pub(crate) fn key_table() -> String {
    let mut out = String::from("| stage | input | holds | meaning |\n|---|---|---|---|\n");
    let mut rows = |stage: &str, fields: Vec<Field>| {
        for f in fields {
            out.push_str(&format!(
                "| {stage} | `{}` | {} | {} |\n",
                f.key,
                f.kind,
                f.doc.replace('\n', " ").replace("  ", " ")
            ));
        }
    };
    rows("index", IndexInputs::fields());
    rows("resolve (a `debian` source)", SourceChoiceInputs::fields());
    rows("resolve (a base layer)", InstallSetInputs::fields());
    rows("resolve (a pkg-env)", BuildDepsInputs::fields());
    rows("fetch", FetchInputs::fields());
    rows("base-install, base-build, pkg-env", LayerInputs::fields());
    rows("build", BuildInputs::fields());
    rows("build shortcut", EnvOriginInputs::fields());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(c: char) -> Hash<Sha256> {
        Hash::from_hex(&c.to_string().repeat(64)).unwrap()
    }

    fn key(c: char) -> NodeKey {
        c.to_string().repeat(64).parse().unwrap()
    }

    fn build() -> BuildInputs {
        BuildInputs {
            builder: "comb-build-3".into(),
            kind: SourceKind::Native,
            name: "greet".into(),
            version: "1.0-1".into(),
            env: key('e'),
            architecture: "amd64".into(),
            source: BTreeMap::from([
                (
                    "greet.c".into(),
                    SourceEntry::File {
                        hash: FileHash::Blake3(Hash::from_hex(&"b".repeat(64)).unwrap()),
                        executable: true,
                    },
                ),
                ("src".into(), SourceEntry::Dir),
                ("link".into(), SourceEntry::Symlink("greet.c".into())),
            ]),
            script: "make\nmake install".into(),
            outputs: vec!["greet arch=Any files=usr/bin/*".into()],
            package: None,
        }
    }

    fn layer() -> LayerInputs {
        LayerInputs {
            stage: LayerStage(NodeKind::PkgEnv),
            recipe: "comb-layers-3".into(),
            below: OrNone(Some(key('1'))),
            packages: BTreeMap::from([(
                PackageArch {
                    name: "make".into(),
                    architecture: "amd64".into(),
                },
                PackageRef {
                    version: "4.3-4.1".into(),
                    sha256: sha('a'),
                },
            )]),
        }
    }

    /// The canonical text is what comb wrote before the stages were typed,
    /// byte for byte: keys of an existing store still hit.
    #[test]
    fn descriptions_are_the_ones_stores_already_hold() {
        let b = "b".repeat(64);
        let e = "e".repeat(64);
        let build_text = Description::new("build")
            .field("builder", "comb-build-3")
            .field("kind", "native")
            .field("name", "greet")
            .field("version", "1.0-1")
            .field("env", &e)
            .field("architecture", "amd64")
            .map(
                "source",
                [
                    ("greet.c", format!("x blake3:{b}")),
                    ("src", "dir".into()),
                    ("link", "-> greet.c".into()),
                ],
            )
            .field("script", "make\nmake install")
            .list("outputs", ["greet arch=Any files=usr/bin/*"])
            .finish()
            .unwrap();
        assert_eq!(build().describe().finish().unwrap(), build_text);
        let layer_text = Description::new("pkg-env")
            .field("recipe", "comb-layers-3")
            .field("below", "1".repeat(64))
            .map(
                "packages",
                [("make:amd64", format!("4.3-4.1 sha256:{}", "a".repeat(64)))],
            )
            .finish()
            .unwrap();
        assert_eq!(layer().describe().finish().unwrap(), layer_text);
        let base = InstallSetInputs {
            index: key('2'),
            architecture: "amd64".into(),
            status: OrNone(None),
            names: InstallNames::EssentialAndRequired,
            local: None,
        };
        let base_text = Description::new("resolve")
            .field("index", "2".repeat(64))
            .field("architecture", "amd64")
            .field("status", "none")
            .field("names", "essential-and-required")
            .finish()
            .unwrap();
        assert_eq!(base.describe().finish().unwrap(), base_text);
        let fetch = FetchInputs {
            sha256: Hex(sha('c')),
            size: 42,
        };
        let fetch_text = Description::new("fetch")
            .field("sha256", "c".repeat(64))
            .field("size", 42)
            .finish()
            .unwrap();
        assert_eq!(fetch.describe().finish().unwrap(), fetch_text);
    }

    #[test]
    fn every_stage_reads_back_what_it_wrote() {
        fn round_trip<S: StageInputs + PartialEq + fmt::Debug>(inputs: S) {
            let text = inputs.describe().finish().unwrap();
            let read = S::read(&ReadDescription::parse(&text).unwrap()).unwrap();
            assert_eq!(read, inputs);
        }
        round_trip(build());
        round_trip(layer());
        round_trip(BuildDepsInputs {
            resolver: Some("comb-solver 1".into()),
            index: key('3'),
            architecture: "amd64".into(),
            status: OrNone(Some(Hash::from_hex(&"d".repeat(64)).unwrap())),
            requires: vec!["debhelper-compat (= 13)".into(), "libgreet-dev".into()],
            local: BTreeMap::new(),
            replaces: Some(BTreeMap::from([(
                PackageArch {
                    name: "sed".into(),
                    architecture: "amd64".into(),
                },
                Replacement {
                    base: "4.9-1".into(),
                    version: "4.9-2".into(),
                },
            )])),
        });
        round_trip(SourceChoiceInputs {
            index: key('4'),
            source: "hello".into(),
            version: Wanted(None),
        });
        round_trip(InstallSetInputs {
            index: key('5'),
            architecture: "amd64".into(),
            status: OrNone(None),
            names: InstallNames::Named(vec!["build-essential".into()]),
            local: Some(BTreeMap::new()),
        });
    }

    #[test]
    fn a_record_of_another_stage_or_with_unknown_inputs_is_not_read() {
        let text = layer().describe().finish().unwrap();
        let read = ReadDescription::parse(&text).unwrap();
        assert!(BuildInputs::read(&read).is_err());
        let extra = text + "colour=blue\n";
        let read = ReadDescription::parse(&extra).unwrap();
        let err = LayerInputs::read(&read).unwrap_err();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn changes_are_reasons_by_the_role_of_their_input() {
        let old = build();
        let mut new = build();
        new.source.remove("link");
        new.source.insert(
            "greet.c".into(),
            SourceEntry::file(FileHash::Blake3(Hash::from_hex(&"f".repeat(64)).unwrap())),
        );
        new.env = key('9');
        new.outputs
            .push("greet-doc arch=All files=usr/share/doc/*".into());
        new.script = "make".into();
        let words: Vec<String> = compare(NodeKind::Build, &old, &new)
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            words,
            [
                "its build environment changed (eeee… → 9999…)",
                "source file greet.c changed (x blake3 bbbb… → blake3 ffff…)",
                "source file link removed",
                "recipe build.script changed:\n    - make install",
                "recipe outputs changed: greet arch=Any files=usr/bin/* → \
                 greet arch=Any files=usr/bin/*, greet-doc arch=All files=usr/share/doc/*",
            ]
        );
        let mut newer = layer();
        newer
            .packages
            .values_mut()
            .for_each(|p| p.version = "4.4-1".into());
        let words: Vec<String> = compare(NodeKind::PkgEnv, &layer(), &newer)
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(words, ["pkg-env changed: make 4.3-4.1 → 4.4-1"]);
    }

    #[test]
    fn the_index_nodes_inputs_are_the_locks_not_a_recipes() {
        let lock = |components: &[&str], architecture: &str| IndexInputs {
            uri: "http://mirror/debian".into(),
            suite: "bookworm".into(),
            components: components.iter().map(|c| c.to_string()).collect(),
            architecture: architecture.into(),
            keyring_sha256: Hex(sha('a')),
            inrelease_sha256: Hex(sha('b')),
        };
        let old = lock(&["main"], "amd64").describe().finish().unwrap();
        let new = lock(&["main", "contrib"], "arm64")
            .describe()
            .finish()
            .unwrap();
        let words: Vec<String> = reasons_between(NodeKind::Index, &old, &new)
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            words,
            [
                "input components changed: main → main, contrib",
                "input architecture changed: amd64 → arm64",
            ]
        );
    }

    #[test]
    fn an_older_combs_record_is_compared_input_by_input() {
        let old = "comb-description=1\nstage=build\nbuilder=comb-build-1\nflavour=old\n";
        let new = build().describe().finish().unwrap();
        let reasons = reasons_between(NodeKind::Build, old, &new).unwrap();
        assert!(reasons.contains(&MissReason::Other {
            input: "flavour".into(),
            old: Some("old".into()),
            new: None,
        }));
    }

    /// The table in the engine's module documentation is this one.
    #[test]
    fn the_key_table_in_the_engine_doc_is_current() {
        let doc = include_str!("lib.rs");
        let table: String = key_table().lines().map(|l| format!("//! {l}\n")).collect();
        assert!(
            doc.contains(&table),
            "engine/src/lib.rs must show this table of what each stage's key holds:\n{table}"
        );
    }

    /// Only this module names an input: no other file of the engine
    /// writes a stage's input key or matches one.
    #[test]
    fn no_other_file_names_an_input() {
        let files = [
            ("build.rs", include_str!("build.rs")),
            ("env.rs", include_str!("env.rs")),
            ("snapshot.rs", include_str!("snapshot.rs")),
            ("why.rs", include_str!("why.rs")),
            ("engine.rs", include_str!("engine.rs")),
            ("report.rs", include_str!("report.rs")),
            ("check.rs", include_str!("check.rs")),
            ("miss.rs", include_str!("miss.rs")),
            ("gc.rs", include_str!("gc.rs")),
            ("executor.rs", include_str!("executor.rs")),
            ("source.rs", include_str!("source.rs")),
            ("vary.rs", include_str!("vary.rs")),
            ("manifest.rs", include_str!("manifest.rs")),
        ];
        let mut keys = Vec::new();
        for fields in [
            IndexInputs::fields(),
            SourceChoiceInputs::fields(),
            InstallSetInputs::fields(),
            BuildDepsInputs::fields(),
            FetchInputs::fields(),
            LayerInputs::fields(),
            BuildInputs::fields(),
            EnvOriginInputs::fields(),
        ] {
            keys.extend(fields.iter().map(|f| f.key));
        }
        for (file, text) in files {
            for key in &keys {
                let quoted = format!("\"{key}\"");
                for pattern in [
                    format!("{quoted} =>"),
                    format!("{quoted} |"),
                    format!("| {quoted}"),
                    format!("== {quoted}"),
                    format!(".field({quoted}"),
                    format!(".list({quoted}"),
                    format!(".map({quoted}"),
                    format!("\"{key}."),
                    format!("\"{key}="),
                ] {
                    assert!(
                        !text.contains(&pattern),
                        "{file} names the input {key:?}: name it in inputs.rs only"
                    );
                }
            }
        }
    }
}
