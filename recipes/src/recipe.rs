//! `recipe.toml`: one source package, where its source comes from, how it
//! is built and which binary packages it makes.
//!
//! ```toml
//! [package]
//! name = "libgreet"            # source package name
//! version = "1.0-1"            # Debian version syntax
//! summary = "Friendly greetings"
//! license = "MIT"
//!
//! [source]                     # exactly one of path, url + sha256, debian, dsc
//! path = "src"
//!
//! [build]
//! requires = ["pkg-config", "libfoo-dev (>= 1.2)"]
//! script = "make && make install DESTDIR=\"$DESTDIR\" prefix=/usr"
//!
//! [[output]]
//! name = "libgreet-dev"
//! files = ["usr/include/**", "usr/lib/*/libgreet.so"]
//! depends = ["libgreet1 (= ${version})"]
//! ```

use crate::dsc::Dsc;
use crate::error::{Error, Location, Result};
use crate::glob::Glob;
use comb_debian::name::check_package_name;
use comb_debian::relation::{Op, Relation, SyntaxError};
use comb_debian::version::check_version;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A recipe file's name.
pub const RECIPE_FILE: &str = "recipe.toml";

/// A parsed, validated `recipe.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The `recipe.toml` file (absolute).
    pub file: PathBuf,
    /// Its directory (absolute).
    pub dir: PathBuf,
    /// The source package name: `[package] name`, or the name the
    /// `debian` or `dsc` source gives.
    pub name: String,
    /// Where the name comes from (for messages about it).
    pub name_at: Location,
    /// The source version: `[package] version`, the version pinned by
    /// `debian = "NAME=VERSION"`, or the `.dsc`'s. For an unpinned `debian`
    /// source it is `[package] version` if given (the engine must check it
    /// against the snapshot), else `None`: the snapshot decides.
    pub version: Option<String>,
    /// `[package]` as written.
    pub package: Package,
    pub source: Source,
    /// Where `[source]` chooses the source (the `path`/`url`/`debian`/`dsc` key).
    pub source_at: Location,
    pub build: Build,
    /// `[[output]]`: the binary packages of a native recipe; empty for
    /// `debian` and `dsc` sources.
    pub outputs: Vec<Output>,
}

/// `[package]` as written. For `debian` and `dsc` sources every field is
/// optional, and a name or version given must match the source package's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Package {
    pub name: Option<String>,
    pub version: Option<String>,
    /// One line: the synopsis of every output that has no summary of its own.
    pub summary: Option<String>,
    /// A license name or SPDX expression; not interpreted.
    pub license: Option<String>,
    /// `Name <email>`, for the `Maintainer:` field of the `.deb`s.
    pub maintainer: Option<String>,
    /// An `http(s)://` URL.
    pub homepage: Option<String>,
    /// The long description of every output that has none of its own.
    pub description: Option<String>,
    /// Who holds the copyright, one holder a line (`2024 Example Org`),
    /// for the copyright file of native packages.
    pub copyright: Option<String>,
}

/// `[source]`: exactly one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory inside the recipe's directory.
    Path {
        /// As written, relative to the recipe's directory.
        path: String,
        /// Canonical, and inside the recipe's (canonical) directory.
        dir: PathBuf,
    },
    /// A tarball, verified by its SHA-256.
    Url {
        /// `http://`, `https://` or `file:`.
        url: String,
        /// 64 lowercase hex digits.
        sha256: String,
    },
    /// A source package of the pinned snapshot's `Sources` index.
    Debian {
        name: String,
        /// `None`: the snapshot's version.
        version: Option<String>,
    },
    /// A local Debian source package: the `.dsc` and its files beside it.
    Dsc(Dsc),
}

/// The four kinds of source, for messages and matches that need no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Path,
    Url,
    Debian,
    Dsc,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Path => "path",
            SourceKind::Url => "url",
            SourceKind::Debian => "debian",
            SourceKind::Dsc => "dsc",
        }
    }

    /// `path` and `url` sources: comb runs `script` and writes the `.deb`s.
    pub fn is_native(self) -> bool {
        matches!(self, SourceKind::Path | SourceKind::Url)
    }
}

impl Source {
    pub fn kind(&self) -> SourceKind {
        match self {
            Source::Path { .. } => SourceKind::Path,
            Source::Url { .. } => SourceKind::Url,
            Source::Debian { .. } => SourceKind::Debian,
            Source::Dsc(_) => SourceKind::Dsc,
        }
    }
}

/// `[build]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Build {
    /// Build dependencies. For `debian`/`dsc` sources these are *added* to
    /// the source package's own `Build-Depends` (like sbuild's
    /// `--add-depends`).
    pub requires: Vec<Requirement>,
    /// The build script of a native recipe, run by `sh -e` as U in a copy
    /// of the source with `$DESTDIR` set. `None` for `debian`/`dsc` sources,
    /// which `dpkg-buildpackage -b` builds.
    pub script: Option<String>,
    /// `[build.limits]`: this build's limits, over the repository's.
    pub limits: crate::LimitsConfig,
}

/// A build requirement and the place it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub relation: Relation,
    pub at: Location,
}

/// `[[output]]`: one binary package of a native recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub name: String,
    /// Where the name is written.
    pub name_at: Location,
    /// Own summary, if any; see [`Output::summary`] for the effective one.
    pub summary: Option<String>,
    pub description: Option<String>,
    pub architecture: Architecture,
    /// E.g. `libs`, `devel`, `contrib/net`.
    pub section: Option<String>,
    /// `required`, `important`, `standard`, `optional` or `extra`.
    pub priority: Option<String>,
    /// Which files under `$DESTDIR` this package holds. Empty: a
    /// metapackage.
    pub files: Vec<Glob>,
    pub pre_depends: Vec<Dependency>,
    pub depends: Vec<Dependency>,
    pub recommends: Vec<Dependency>,
    pub suggests: Vec<Dependency>,
    pub breaks: Vec<Dependency>,
    pub conflicts: Vec<Dependency>,
    pub provides: Vec<Dependency>,
    pub replaces: Vec<Dependency>,
    /// Strip its ELF files as `dh_strip` does (default yes).
    pub strip: bool,
    /// Keep what is stripped in a `NAME-dbgsym` package (default yes).
    pub dbgsym: bool,
    /// Ship a `symbols` file for its shared libraries, made by
    /// `dpkg-gensymbols` (default no: a `shlibs` file only).
    pub symbols: bool,
}

/// `Architecture:` of an output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Architecture {
    /// `any`: built for, and only usable on, the build architecture.
    #[default]
    Any,
    /// `all`: the same on every architecture (data, scripts).
    All,
}

/// A relation of an output (`depends = [...]` and the like): as written,
/// and parsed after `${version}` became the package version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// As written, e.g. `libgreet1 (= ${version})`.
    pub raw: String,
    /// Substituted and parsed; `relation.text` is e.g. `libgreet1 (= 1.0-1)`.
    pub relation: Relation,
    pub at: Location,
}

impl Output {
    /// The output's summary, or the package's.
    pub fn summary<'a>(&'a self, recipe: &'a Recipe) -> Option<&'a str> {
        self.summary
            .as_deref()
            .or(recipe.package.summary.as_deref())
    }

    /// The relation fields in the order `dpkg` writes them, with their
    /// control-file names.
    pub fn relation_fields(&self) -> [(&'static str, &[Dependency]); 8] {
        [
            ("Pre-Depends", &self.pre_depends),
            ("Depends", &self.depends),
            ("Recommends", &self.recommends),
            ("Suggests", &self.suggests),
            ("Breaks", &self.breaks),
            ("Conflicts", &self.conflicts),
            ("Provides", &self.provides),
            ("Replaces", &self.replaces),
        ]
    }

    /// Whether this output claims `path` (relative to `$DESTDIR`).
    pub fn claims(&self, path: &str) -> bool {
        self.files.iter().any(|g| g.matches(path))
    }
}

impl Recipe {
    /// Reads and validates the recipe at `file`. All problems found are
    /// reported (as [`Error::Many`] when there are several).
    pub fn load(file: &Path) -> Result<Recipe> {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
            path: file.to_path_buf(),
            source,
        })?;
        let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        Recipe::parse(&file, &text)
    }

    /// Parses `text` as the contents of `file`. Source paths are checked
    /// against `file`'s directory.
    pub fn parse(file: &Path, text: &str) -> Result<Recipe> {
        Recipe::parse_in(file, text, None)
    }

    /// [`Recipe::parse`], with `file`'s directory known to be `canonical`
    /// (the repository scan knows it: this saves resolving it per recipe).
    pub(crate) fn parse_in(file: &Path, text: &str, canonical: Option<&Path>) -> Result<Recipe> {
        Parser {
            file,
            text,
            canonical,
        }
        .recipe()
        .map_err(|errors| Error::from_list(errors).expect("at least one error"))
    }

    /// The `[[output]]` names (empty for `debian`/`dsc` sources).
    pub fn declared_outputs(&self) -> Vec<String> {
        self.outputs.iter().map(|o| o.name.clone()).collect()
    }

    /// The binary packages this recipe builds, if the recipe alone tells:
    /// its outputs, or a `.dsc`'s `Binary:`. `None` for a `debian` source,
    /// whose binaries only the snapshot's `Sources` index knows.
    pub fn binaries(&self) -> Option<Vec<String>> {
        match &self.source {
            Source::Path { .. } | Source::Url { .. } => Some(self.declared_outputs()),
            Source::Dsc(dsc) => Some(dsc.binaries.clone()),
            Source::Debian { .. } => None,
        }
    }

    /// Every build requirement the recipe alone tells: `[build] requires`
    /// and a `.dsc`'s `Build-Depends*`. (A `debian` source's `Build-Depends`
    /// come from the snapshot.)
    pub fn build_requires(&self) -> Vec<&Requirement> {
        let mut out: Vec<&Requirement> = self.build.requires.iter().collect();
        if let Source::Dsc(dsc) = &self.source {
            out.extend(dsc.build_depends.iter());
        }
        out
    }

    /// The first output that claims `path` (relative to `$DESTDIR`).
    pub fn output_for(&self, path: &str) -> Option<&Output> {
        self.outputs.iter().find(|o| o.claims(path))
    }

    pub fn is_native(&self) -> bool {
        self.source.kind().is_native()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    package: Option<Spanned<RawPackage>>,
    source: Option<Spanned<RawSource>>,
    build: Option<Spanned<RawBuild>>,
    output: Option<Vec<Spanned<RawOutput>>>,
}

type Text = Option<Spanned<String>>;
type List = Option<Spanned<Vec<Spanned<String>>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    name: Text,
    version: Text,
    summary: Text,
    license: Text,
    maintainer: Text,
    homepage: Text,
    description: Text,
    copyright: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    path: Text,
    url: Text,
    sha256: Text,
    debian: Text,
    dsc: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    requires: List,
    script: Text,
    limits: Option<crate::limits::RawLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawOutput {
    name: Text,
    summary: Text,
    description: Text,
    architecture: Text,
    section: Text,
    priority: Text,
    files: List,
    pre_depends: List,
    depends: List,
    recommends: List,
    suggests: List,
    breaks: List,
    conflicts: List,
    provides: List,
    replaces: List,
    strip: Option<bool>,
    dbgsym: Option<bool>,
    symbols: Option<bool>,
}

/// `base.join(relative)`, canonical; `base` must be canonical. Plain
/// components without links are resolved with one `lstat` each, which
/// for a repository of thousands of recipes is much cheaper than
/// `realpath`; anything else is left to `canonicalize`.
fn resolve(base: &Path, relative: &str) -> std::io::Result<PathBuf> {
    use std::path::Component;
    let mut path = base.to_path_buf();
    for c in Path::new(relative).components() {
        let Component::Normal(name) = c else {
            return std::fs::canonicalize(base.join(relative));
        };
        path.push(name);
        if std::fs::symlink_metadata(&path)?.file_type().is_symlink() {
            return std::fs::canonicalize(base.join(relative));
        }
    }
    Ok(path)
}

const PRIORITIES: [&str; 5] = ["required", "important", "standard", "optional", "extra"];

/// What may stand for the package version in an output's relations.
const VERSION_VARIABLES: [&str; 3] = ["${version}", "${binary:Version}", "${source:Version}"];

const ONE_SOURCE: &str = "give exactly one of path = \"DIR\", url = \"URL\" with sha256 = \"HEX\", debian = \"NAME[=VERSION]\" or dsc = \"FILE.dsc\"";

struct Parser<'a> {
    file: &'a Path,
    text: &'a str,
    /// The canonical form of `file`'s directory, if known.
    canonical: Option<&'a Path>,
}

impl Parser<'_> {
    fn err(&self, offset: usize, message: impl Into<String>) -> Error {
        Error::at(self.file, self.text, Some(offset), message.into())
    }

    fn loc(&self, offset: usize) -> Location {
        Location::of_offset(self.file, self.text, offset)
    }

    /// Byte offset of character `inner` of a string value, when the TOML
    /// spells it without escapes; else the string's start.
    fn inner(&self, value: &Spanned<String>, inner: usize) -> usize {
        let span = value.span();
        let written = &self.text[span.clone()];
        let plain = (written.starts_with('"') || written.starts_with('\''))
            && !written.starts_with("\"\"\"")
            && !written.starts_with("'''")
            && written.len() == value.get_ref().len() + 2
            && &written[1..written.len() - 1] == value.get_ref();
        if plain {
            span.start + 1 + inner
        } else {
            span.start
        }
    }

    fn recipe(&self) -> std::result::Result<Recipe, Vec<Error>> {
        let raw: RawRecipe = toml::from_str(self.text).map_err(|e| {
            vec![self.err(
                e.span().map_or(0, |s| s.start),
                e.message().trim().to_string(),
            )]
        })?;
        let mut errors = Vec::new();
        let dir = self.file.parent().unwrap_or(Path::new(".")).to_path_buf();

        let package = match &raw.package {
            Some(p) => self.package(p.get_ref(), &mut errors),
            None => Package::default(),
        };
        let (source, source_at) = match &raw.source {
            None => {
                errors.push(self.err(0, format!("missing [source] table: {ONE_SOURCE}")));
                (None, self.loc(0))
            }
            Some(s) => self.source(s, &dir, &mut errors),
        };
        let kind = source.as_ref().map(Source::kind);
        let native = kind.is_none_or(SourceKind::is_native);

        // Name and version: written, or from the source package.
        let written_name = raw.package.as_ref().and_then(|p| p.get_ref().name.as_ref());
        let written_version = raw
            .package
            .as_ref()
            .and_then(|p| p.get_ref().version.as_ref());
        let (from_source, source_name_at): (Option<(String, Option<String>)>, _) = match &source {
            Some(Source::Debian { name, version }) => {
                (Some((name.clone(), version.clone())), source_at.clone())
            }
            Some(Source::Dsc(dsc)) => (
                Some((dsc.source.clone(), Some(dsc.version.clone()))),
                source_at.clone(),
            ),
            _ => (None, source_at.clone()),
        };
        let what = kind.map_or("source", SourceKind::as_str);
        let mut name = None;
        let mut name_at = source_name_at;
        let mut version;
        match &from_source {
            Some((src_name, src_version)) => {
                name = Some(src_name.clone());
                version = src_version.clone();
                if let Some(n) = written_name {
                    name_at = self.loc(n.span().start);
                    if n.get_ref() != src_name {
                        errors.push(self.err(
                            n.span().start,
                            format!(
                                "name {:?} does not match the {what} source package {src_name:?}: fix it or leave it out",
                                n.get_ref()
                            ),
                        ));
                    }
                }
                if let Some(v) = written_version {
                    match src_version {
                        Some(sv) if sv != v.get_ref() => errors.push(self.err(
                            v.span().start,
                            format!(
                                "version {:?} does not match the {what} source package's {sv:?}: fix it or leave it out",
                                v.get_ref()
                            ),
                        )),
                        Some(_) => {}
                        // debian = "NAME": the engine checks it against the snapshot.
                        None => version = Some(v.get_ref().clone()),
                    }
                }
            }
            None => {
                if let Some(n) = written_name {
                    name = Some(n.get_ref().clone());
                    name_at = self.loc(n.span().start);
                }
                version = written_version.map(|v| v.get_ref().clone());
                if native {
                    let at = raw.package.as_ref().map_or(0, |p| p.span().start);
                    if raw.package.is_none() {
                        errors.push(self.err(
                            0,
                            "missing [package] table: a path or url recipe needs name, version, summary and license",
                        ));
                    } else {
                        let p = raw.package.as_ref().map(|p| p.get_ref());
                        for (key, written, example) in [
                            (
                                "name",
                                p.is_some_and(|p| p.name.is_some()),
                                "name = \"greet\"",
                            ),
                            (
                                "version",
                                p.is_some_and(|p| p.version.is_some()),
                                "version = \"1.0-1\"",
                            ),
                            (
                                "summary",
                                p.is_some_and(|p| p.summary.is_some()),
                                "summary = \"Friendly greetings\"",
                            ),
                            (
                                "license",
                                p.is_some_and(|p| p.license.is_some()),
                                "license = \"MIT\"",
                            ),
                        ] {
                            if !written {
                                errors.push(self.err(
                                    at,
                                    format!("[package] has no {key}: a path or url recipe needs it, e.g. {example}"),
                                ));
                            }
                        }
                    }
                }
            }
        }

        let build = self.build(raw.build.as_ref(), kind, &mut errors);
        if native && raw.build.is_none() && source.is_some() {
            errors.push(self.err(
                0,
                format!(
                    "missing [build] table: a {what} recipe needs script = \"...\" (run by sh -e with $DESTDIR set)"
                ),
            ));
        }

        let mut outputs = Vec::new();
        match (&raw.output, native) {
            (Some(list), true) => {
                let subst = version.clone().unwrap_or_else(|| "0".to_string());
                for o in list {
                    if let Some(out) = self.output(o, &subst, &outputs, &mut errors) {
                        outputs.push(out);
                    }
                }
            }
            (Some(list), false) => {
                if let Some(first) = list.first() {
                    errors.push(self.err(
                        first.span().start,
                        format!(
                            "[[output]] is not allowed for a {what} source: its binary packages come from its debian/control; remove the [[output]] tables"
                        ),
                    ));
                }
            }
            (None, true) => {
                if source.is_some() {
                    errors.push(self.err(
                        self.text.len(),
                        format!(
                            "no [[output]]: a {what} recipe needs one or more [[output]] tables, each with name = \"...\" and files = [\"usr/bin/*\", ...]"
                        ),
                    ));
                }
            }
            (None, false) => {}
        }

        let (Some(source), Some(name), true) = (source, name, errors.is_empty()) else {
            if errors.is_empty() {
                // Unreachable in practice: a missing name was reported above.
                errors.push(self.err(0, "no source package name"));
            }
            errors.sort_by_key(|e| match e {
                Error::Invalid { line, column, .. } => (*line, *column),
                _ => (0, 0),
            });
            return Err(errors);
        };
        Ok(Recipe {
            file: self.file.to_path_buf(),
            dir,
            name,
            name_at,
            version,
            package,
            source,
            source_at,
            build,
            outputs,
        })
    }

    fn package(&self, raw: &RawPackage, errors: &mut Vec<Error>) -> Package {
        let mut p = Package::default();
        if let Some(n) = &raw.name {
            match check_package_name(n.get_ref()) {
                Ok(()) => p.name = Some(n.get_ref().clone()),
                Err(m) => errors.push(self.err(n.span().start, format!("name: {m}"))),
            }
        }
        if let Some(v) = &raw.version {
            match check_version(v.get_ref()) {
                Ok(()) => p.version = Some(v.get_ref().clone()),
                Err(m) => errors.push(self.err(v.span().start, format!("version: {m}"))),
            }
        }
        if let Some(s) = &raw.summary {
            p.summary = self.one_line(s, "summary", errors);
        }
        if let Some(l) = &raw.license {
            p.license = self.one_line(l, "license", errors);
        }
        if let Some(m) = &raw.maintainer {
            let v = m.get_ref().trim();
            match check_maintainer(v) {
                Ok(()) => p.maintainer = Some(v.to_string()),
                Err(e) => errors.push(self.err(m.span().start, e)),
            }
        }
        if let Some(c) = &raw.copyright {
            let v = c.get_ref().trim();
            if v.is_empty() {
                errors.push(self.err(c.span().start, "copyright is empty"));
            } else {
                p.copyright = Some(v.to_string());
            }
        }
        if let Some(h) = &raw.homepage {
            let v = h.get_ref();
            if (v.starts_with("http://") || v.starts_with("https://"))
                && !v.contains(char::is_whitespace)
            {
                p.homepage = Some(v.clone());
            } else {
                errors.push(self.err(
                    h.span().start,
                    format!("homepage {v:?} is not an http:// or https:// URL"),
                ));
            }
        }
        if let Some(d) = &raw.description {
            p.description = Some(d.get_ref().clone());
        }
        p
    }

    /// A non-empty value on one line.
    fn one_line(
        &self,
        value: &Spanned<String>,
        key: &str,
        errors: &mut Vec<Error>,
    ) -> Option<String> {
        let v = value.get_ref().trim();
        if v.is_empty() {
            errors.push(self.err(value.span().start, format!("{key} is empty")));
            None
        } else if v.contains('\n') {
            errors.push(self.err(
                value.span().start,
                format!("{key} must be one line; put more text in description"),
            ));
            None
        } else {
            Some(v.to_string())
        }
    }

    fn source(
        &self,
        raw: &Spanned<RawSource>,
        dir: &Path,
        errors: &mut Vec<Error>,
    ) -> (Option<Source>, Location) {
        let s = raw.get_ref();
        let given: Vec<(&str, &Spanned<String>)> = [
            ("path", &s.path),
            ("url", &s.url),
            ("debian", &s.debian),
            ("dsc", &s.dsc),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        let (key, value) = match given[..] {
            [] => {
                errors.push(self.err(
                    raw.span().start,
                    format!("[source] names no source: {ONE_SOURCE}"),
                ));
                return (None, self.loc(raw.span().start));
            }
            [one] => one,
            [(first, _), (second, v), ..] => {
                errors.push(self.err(
                    v.span().start,
                    format!("[source] gives both `{first}` and `{second}`: {ONE_SOURCE}"),
                ));
                return (None, self.loc(raw.span().start));
            }
        };
        let at = self.loc(value.span().start);
        if key != "url" {
            if let Some(sha) = &s.sha256 {
                errors.push(self.err(
                    sha.span().start,
                    format!("sha256 goes with url only; a {key} source is not a download"),
                ));
            }
        }
        let v = value.get_ref();
        let source = match key {
            "path" => {
                let dir = self
                    .inside(value, dir, "source directory", errors)
                    .filter(|p| {
                        let ok = p.is_dir();
                        if !ok {
                            errors.push(self.err(
                                value.span().start,
                                format!("source {} is not a directory", p.display()),
                            ));
                        }
                        ok
                    });
                dir.map(|dir| Source::Path {
                    path: v.clone(),
                    dir,
                })
            }
            "url" => {
                let mut ok = true;
                if !["http://", "https://", "file:"]
                    .iter()
                    .any(|scheme| v.starts_with(scheme))
                    || v.contains(char::is_whitespace)
                {
                    errors.push(self.err(
                        value.span().start,
                        format!("url {v:?} must start with http://, https:// or file:"),
                    ));
                    ok = false;
                }
                let sha256 = match &s.sha256 {
                    None => {
                        errors.push(self.err(
                            value.span().start,
                            "url needs sha256 = \"...\", the SHA-256 of the file (64 hex digits; `sha256sum FILE` prints it), so comb can verify it",
                        ));
                        None
                    }
                    Some(h) => {
                        let hex = h.get_ref();
                        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                            Some(hex.to_ascii_lowercase())
                        } else {
                            errors.push(self.err(
                                h.span().start,
                                format!(
                                    "sha256 {hex:?} is not 64 hex digits ({} characters); `sha256sum FILE` prints it",
                                    hex.chars().count()
                                ),
                            ));
                            None
                        }
                    }
                };
                match (ok, sha256) {
                    (true, Some(sha256)) => Some(Source::Url {
                        url: v.clone(),
                        sha256,
                    }),
                    _ => None,
                }
            }
            "debian" => {
                let (name, version) = match v.split_once('=') {
                    Some((n, ver)) => (n, Some(ver)),
                    None => (v.as_str(), None),
                };
                let mut ok = true;
                if let Err(m) = check_package_name(name) {
                    errors.push(self.err(self.inner(value, 0), format!("debian: {m}")));
                    ok = false;
                }
                if let Some(ver) = version {
                    if let Err(m) = check_version(ver) {
                        let offset = self.inner(value, name.len() + 1);
                        errors.push(self.err(offset, format!("debian: {m}")));
                        ok = false;
                    }
                }
                ok.then(|| Source::Debian {
                    name: name.to_string(),
                    version: version.map(str::to_string),
                })
            }
            _ => {
                if !v.ends_with(".dsc") {
                    errors.push(self.err(
                        value.span().start,
                        format!("dsc {v:?} is not a .dsc file name"),
                    ));
                    None
                } else {
                    let file = self.inside(value, dir, "source file", errors);
                    match file {
                        Some(f) if f.is_file() => match Dsc::load(&f) {
                            Ok(dsc) => Some(Source::Dsc(dsc)),
                            Err(e) => {
                                errors.extend(e.into_list());
                                None
                            }
                        },
                        Some(f) => {
                            errors.push(
                                self.err(
                                    value.span().start,
                                    format!("{} is not a file", f.display()),
                                ),
                            );
                            None
                        }
                        None => None,
                    }
                }
            }
        };
        (source, at)
    }

    /// `value` as a path in `dir` that exists and stays inside it after
    /// following links: canonical.
    fn inside(
        &self,
        value: &Spanned<String>,
        dir: &Path,
        what: &str,
        errors: &mut Vec<Error>,
    ) -> Option<PathBuf> {
        let v = value.get_ref();
        let at = value.span().start;
        if v.is_empty() || Path::new(v).is_absolute() {
            errors.push(self.err(
                at,
                format!("{what} {v:?} must be a relative path beside the recipe, e.g. \"src\""),
            ));
            return None;
        }
        let path = dir.join(v);
        let base = match self.canonical {
            Some(c) => c.to_path_buf(),
            None => std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
        };
        let canonical = match resolve(&base, v) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                errors.push(self.err(
                    at,
                    format!(
                        "missing {what} {}: create it beside {RECIPE_FILE} or fix the name",
                        path.display()
                    ),
                ));
                return None;
            }
            Err(e) => {
                errors.push(self.err(at, format!("{}: {e}", path.display())));
                return None;
            }
        };
        if !canonical.starts_with(&base) {
            errors.push(self.err(
                at,
                format!(
                    "{what} {v:?} leads outside the recipe's directory (to {}): sources must be inside {}",
                    canonical.display(),
                    base.display()
                ),
            ));
            return None;
        }
        Some(canonical)
    }

    fn build(
        &self,
        raw: Option<&Spanned<RawBuild>>,
        kind: Option<SourceKind>,
        errors: &mut Vec<Error>,
    ) -> Build {
        let mut build = Build::default();
        let Some(raw) = raw else { return build };
        let b = raw.get_ref();
        if let Some(list) = &b.requires {
            for item in list.get_ref() {
                if let Some(i) = item.get_ref().find("${") {
                    errors.push(self.err(
                        self.inner(item, i),
                        "requires: substitutions such as ${version} are only known in [[output]] relations",
                    ));
                    continue;
                }
                match Relation::parse(item.get_ref()) {
                    Ok(relation) => {
                        let lead = item.get_ref().len() - item.get_ref().trim_start().len();
                        build.requires.push(Requirement {
                            relation,
                            at: self.loc(self.inner(item, lead)),
                        })
                    }
                    Err(e) => errors.push(self.relation_error(item, "requires", e)),
                }
            }
        }
        if let Some(limits) = &b.limits {
            match limits.check() {
                Ok(l) => build.limits = l,
                Err((at, message)) => {
                    errors.push(self.err(at, format!("[build.limits] {message}")))
                }
            }
        }
        match (&b.script, kind) {
            (Some(s), Some(k)) if !k.is_native() => errors.push(self.err(
                s.span().start,
                format!(
                    "script is not allowed for a {} source: comb builds it with dpkg-buildpackage -b -uc -us, so debian/rules is its script; remove script",
                    k.as_str()
                ),
            )),
            (Some(s), _) if s.get_ref().trim().is_empty() => {
                errors.push(self.err(s.span().start, "script is empty"))
            }
            (Some(s), _) => build.script = Some(s.get_ref().clone()),
            (None, Some(k)) if k.is_native() => errors.push(self.err(
                raw.span().start,
                format!(
                    "[build] has no script: a {} recipe needs one, run by sh -e with $DESTDIR set, e.g. script = \"make install DESTDIR=\\\"$DESTDIR\\\"\"",
                    k.as_str()
                ),
            )),
            (None, _) => {}
        }
        build
    }

    fn relation_error(&self, item: &Spanned<String>, key: &str, e: SyntaxError) -> Error {
        self.err(self.inner(item, e.offset), format!("{key}: {}", e.message))
    }

    fn output(
        &self,
        raw: &Spanned<RawOutput>,
        version: &str,
        earlier: &[Output],
        errors: &mut Vec<Error>,
    ) -> Option<Output> {
        let o = raw.get_ref();
        let before = errors.len();
        let name = match &o.name {
            None => {
                errors.push(self.err(
                    raw.span().start,
                    "[[output]] has no name: give the binary package name, e.g. name = \"libgreet1\"",
                ));
                None
            }
            Some(n) => match check_package_name(n.get_ref()) {
                Err(m) => {
                    errors.push(self.err(n.span().start, format!("output name: {m}")));
                    None
                }
                Ok(()) => {
                    if let Some(first) = earlier.iter().find(|e| &e.name == n.get_ref()) {
                        errors.push(self.err(
                            n.span().start,
                            format!(
                                "output {:?} is declared twice in this recipe (first at line {})",
                                n.get_ref(),
                                first.name_at.line
                            ),
                        ));
                    }
                    Some(n)
                }
            },
        };
        let summary = o
            .summary
            .as_ref()
            .and_then(|s| self.one_line(s, "summary", errors));
        let architecture = match &o.architecture {
            None => Architecture::Any,
            Some(a) => match a.get_ref().as_str() {
                "any" => Architecture::Any,
                "all" => Architecture::All,
                other => {
                    errors.push(self.err(
                        a.span().start,
                        format!(
                            "architecture {other:?} is not \"any\" (built for the build architecture, the default) or \"all\" (the same everywhere)"
                        ),
                    ));
                    Architecture::Any
                }
            },
        };
        let section = o.section.as_ref().and_then(|s| {
            let v = s.get_ref();
            let ok = v.split('/').count() <= 2
                && v.split('/').all(|part| {
                    !part.is_empty()
                        && part.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b)
                        })
                });
            if !ok {
                errors.push(self.err(
                    s.span().start,
                    format!(
                        "section {v:?} is not a Debian section such as \"libs\", \"devel\" or \"contrib/net\""
                    ),
                ));
            }
            ok.then(|| v.clone())
        });
        let priority = o.priority.as_ref().and_then(|p| {
            let v = p.get_ref();
            let ok = PRIORITIES.contains(&v.as_str());
            if !ok {
                errors.push(self.err(
                    p.span().start,
                    format!("priority {v:?} is not one of {}", PRIORITIES.join(", ")),
                ));
            }
            ok.then(|| v.clone())
        });
        let mut files = Vec::new();
        match &o.files {
            None => errors.push(self.err(
                raw.span().start,
                "[[output]] has no files: list the files under $DESTDIR it holds, e.g. files = [\"usr/bin/*\"] (files = [] for a metapackage)",
            )),
            Some(list) => {
                for pattern in list.get_ref() {
                    match Glob::new(pattern.get_ref()) {
                        Ok(g) => files.push(g),
                        Err(e) => errors.push(self.err(self.inner(pattern, e.offset), e.message)),
                    }
                }
            }
        }
        let mut fields: [(&str, &List, Vec<Dependency>); 8] = [
            ("pre-depends", &o.pre_depends, Vec::new()),
            ("depends", &o.depends, Vec::new()),
            ("recommends", &o.recommends, Vec::new()),
            ("suggests", &o.suggests, Vec::new()),
            ("breaks", &o.breaks, Vec::new()),
            ("conflicts", &o.conflicts, Vec::new()),
            ("provides", &o.provides, Vec::new()),
            ("replaces", &o.replaces, Vec::new()),
        ];
        for (key, list, out) in fields.iter_mut() {
            let Some(list) = list else { continue };
            for item in list.get_ref() {
                match self.dependency(item, key, version) {
                    Ok(d) => out.push(d),
                    Err(e) => errors.push(e),
                }
            }
        }
        let [pre_depends, depends, recommends, suggests, breaks, conflicts, provides, replaces] =
            fields.map(|f| f.2);
        let name = name?;
        if errors.len() != before {
            return None;
        }
        Some(Output {
            name: name.get_ref().clone(),
            name_at: self.loc(name.span().start),
            summary,
            description: o.description.as_ref().map(|d| d.get_ref().clone()),
            architecture,
            section,
            priority,
            files,
            pre_depends,
            depends,
            recommends,
            suggests,
            breaks,
            conflicts,
            provides,
            replaces,
            strip: o.strip.unwrap_or(true),
            dbgsym: o.dbgsym.unwrap_or(true),
            symbols: o.symbols.unwrap_or(false),
        })
    }

    /// One output relation: `${version}` substituted, parsed, and held to
    /// what a binary package's control file may say.
    fn dependency(
        &self,
        item: &Spanned<String>,
        key: &str,
        version: &str,
    ) -> std::result::Result<Dependency, Error> {
        let raw = item.get_ref();
        // Substitute, remembering where each substitution landed so that a
        // parse error maps back to the text as written.
        let mut text = String::new();
        let mut shifts: Vec<(usize, isize)> = Vec::new();
        let mut rest = raw.as_str();
        let mut consumed = 0;
        while let Some(i) = rest.find("${") {
            text.push_str(&rest[..i]);
            let Some(var) = VERSION_VARIABLES.iter().find(|v| rest[i..].starts_with(*v)) else {
                let end = rest[i..].find('}').map_or(rest.len(), |e| i + e + 1);
                return Err(self.err(
                    self.inner(item, consumed + i),
                    format!(
                        "{key}: unknown substitution `{}`: only ${{version}} (the package version) is known",
                        &rest[i..end]
                    ),
                ));
            };
            text.push_str(version);
            shifts.push((text.len(), var.len() as isize - version.len() as isize));
            consumed += i + var.len();
            rest = &rest[i + var.len()..];
        }
        text.push_str(rest);
        let back = |offset: usize| -> usize {
            let shift: isize = shifts
                .iter()
                .filter(|(end, _)| *end <= offset)
                .map(|(_, s)| s)
                .sum();
            (offset as isize + shift).max(0) as usize
        };
        let lead = raw.len() - raw.trim_start().len();
        let relation = Relation::parse(&text).map_err(|e| {
            self.err(
                self.inner(item, back(e.offset)),
                format!("{key}: {}", e.message),
            )
        })?;
        let at = self.inner(item, lead);
        if relation.has_build_only_syntax() {
            return Err(self.err(
                at,
                format!(
                    "{key}: architecture restrictions `[...]` and build profiles `<...>` are for build requirements only"
                ),
            ));
        }
        if key == "provides" {
            let ok = relation.alternatives.len() == 1
                && relation.alternatives[0]
                    .version
                    .as_ref()
                    .is_none_or(|v| v.op == Op::Equal);
            if !ok {
                return Err(self.err(
                    at,
                    "provides: each entry is one name, optionally with an exact version `(= VERSION)`",
                ));
            }
        }
        Ok(Dependency {
            raw: raw.clone(),
            relation,
            at: self.loc(at),
        })
    }
}

/// Checks a `Maintainer` value: `Name <address>`, where the address is
/// one mail reaches (a host with a dot, not `localhost`), as lintian's
/// `bogus-mail-host` asks.
pub fn check_maintainer(value: &str) -> std::result::Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "maintainer {value:?} {why}: write `Name <email>`, e.g. \"Jane Doe <jane@example.org>\""
        ))
    };
    let Some((name, rest)) = value.split_once('<') else {
        return bad("has no address");
    };
    let Some(address) = rest.strip_suffix('>') else {
        return bad("does not end with `>`");
    };
    if name.trim().is_empty() || value.contains('\n') || value.contains(',') {
        return bad("is not one name and address");
    }
    let Some((local, host)) = address.split_once('@') else {
        return bad("has no `@` in its address");
    };
    let host = host.to_ascii_lowercase();
    let bogus = local.is_empty()
        || !host.contains('.')
        || host.contains(char::is_whitespace)
        || address.contains(char::is_whitespace)
        || host.ends_with('.')
        || ["localhost", "localdomain", "local", "invalid"]
            .iter()
            .any(|b| host == *b || host.ends_with(&format!(".{b}")));
    if bogus {
        return bad("has no address mail can reach");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Recipe> {
        Recipe::parse(Path::new("/nonexistent/r/recipe.toml"), text)
    }

    const DEBIAN: &str = "[source]\ndebian = \"hello=2.10-3\"\n";

    #[test]
    fn build_limits_are_read_and_bad_ones_named() {
        let r = parse(&format!(
            "{DEBIAN}[build.limits]\ndisk = \"40G\"\ncpu_time = \"2h\"\n"
        ))
        .unwrap();
        assert_eq!(r.build.limits.disk, Some(40 << 30));
        assert_eq!(
            r.build.limits.cpu_time,
            Some(std::time::Duration::from_secs(7200))
        );
        let e = parse(&format!("{DEBIAN}[build.limits]\nmemory = \"1K\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("recipe.toml:4:")
                && e.contains("[build.limits] memory")
                && e.contains("too small"),
            "{e}"
        );
    }

    #[test]
    fn debian_source_needs_nothing_else() {
        let r = parse(DEBIAN).unwrap();
        assert_eq!(r.name, "hello");
        assert_eq!(r.version.as_deref(), Some("2.10-3"));
        assert_eq!(r.name_at.line, 2);
        assert_eq!(
            r.source,
            Source::Debian {
                name: "hello".into(),
                version: Some("2.10-3".into())
            }
        );
        assert!(r.binaries().is_none());
        assert!(r.outputs.is_empty() && r.build.script.is_none());
    }

    #[test]
    fn debian_source_checks() {
        let e = parse("[package]\nname = \"hi\"\nversion = \"2.10-4\"\n[source]\ndebian = \"hello=2.10-3\"\n[build]\nscript = \"make\"\n[[output]]\nname = \"x\"\n")
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 4, "{e}");
        assert!(
            lines[0]
                .contains(":2:8: name \"hi\" does not match the debian source package \"hello\""),
            "{e}"
        );
        assert!(
            lines[1].contains(":3:11: version \"2.10-4\" does not match"),
            "{e}"
        );
        assert!(
            lines[2].contains(":7:10: script is not allowed for a debian source"),
            "{e}"
        );
        assert!(lines[3].contains(":8:1: [[output]] is not allowed"), "{e}");
        let e = parse("[source]\ndebian = \"hello=2.10_3\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":2:17: debian: \"2.10_3\" is not a Debian version"),
            "{e}"
        );
        let e = parse("[source]\ndebian = \"Hello\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":2:11: debian: \"Hello\" is not a Debian package name"),
            "{e}"
        );
        let r = parse("[package]\nversion = \"2.10-3\"\n[source]\ndebian = \"hello\"\n[build]\nrequires = [\"texinfo\"]\n").unwrap();
        assert_eq!(r.version.as_deref(), Some("2.10-3"));
        assert_eq!(r.build.requires[0].relation.text, "texinfo");
    }

    #[test]
    fn dependency_substitution_maps_errors_back() {
        let text = "[package]\nname = \"aa\"\nversion = \"1.0-1\"\nsummary = \"s\"\nlicense = \"MIT\"\n[source]\nurl = \"https://example.org/a.tar.gz\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n[build]\nscript = \"true\"\n[[output]]\nname = \"aa\"\nfiles = []\ndepends = [\"aa-data (= ${version}) | xx (> 1)\"]\n";
        let e = parse(text).unwrap_err().to_string();
        assert!(
            e.contains(":14:42: depends: the operator `>` is obsolete"),
            "{e}"
        );
        let text = text.replace(" | xx (> 1)", "");
        let r = parse(&text).unwrap();
        let d = &r.outputs[0].depends[0];
        assert_eq!(d.raw, "aa-data (= ${version})");
        assert_eq!(d.relation.text, "aa-data (= 1.0-1)");
        assert_eq!((d.at.line, d.at.column), (14, 13));
        let e = parse(&text.replace("${version}", "${Version}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":14:24: depends: unknown substitution `${Version}`"),
            "{e}"
        );
    }
}
