//! Typed views of the paragraphs of a `Packages` index (binary packages),
//! a `Sources` index and `.dsc` files (source packages).

use crate::error::{Error, Result};
use comb_debian::control::{self, Paragraph};
use comb_debian::relation::{parse_relations, Alternative, Relation, Rules};
use comb_debian::Version;

/// A parsed relationship field: each relation's alternatives.
pub type Relations = Vec<Relation>;

/// The Multi-Arch field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum MultiArch {
    #[default]
    No,
    Same,
    Foreign,
    Allowed,
}

/// One binary package of a `Packages` index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryPackage {
    pub name: String,
    pub version: Version,
    pub architecture: String,
    pub depends: Relations,
    pub pre_depends: Relations,
    pub provides: Vec<Relation>,
    pub conflicts: Vec<Relation>,
    pub breaks: Vec<Relation>,
    /// The names its `Recommends`, `Suggests`, `Replaces` and `Enhances`
    /// fields mention, in that order (APT numbers packages in the order an
    /// index first names them, which breaks its ties between providers).
    pub mentioned: Vec<String>,
    pub essential: bool,
    pub priority: Option<String>,
    /// Path of the `.deb`, relative to the mirror URI.
    pub filename: String,
    pub size: u64,
    /// Lowercase hex sha256 of the `.deb`.
    pub sha256: String,
    pub multi_arch: MultiArch,
    /// The source package's name (the package's own name if not given).
    pub source: String,
    /// The source package's version (the package's own version if not given).
    pub source_version: Version,
}

/// A file of a source package (from Checksums-Sha256).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// One source package of a `Sources` index, or a `.dsc` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePackage {
    pub name: String,
    pub version: Version,
    pub binaries: Vec<String>,
    /// `Package-List`: each binary package (`.deb`; installer `.udeb`s are
    /// left out: nothing build-depends on them) with the architectures it
    /// is built for (empty when the field is absent).
    pub package_list: Vec<(String, Vec<String>)>,
    pub architecture: Vec<String>,
    pub build_depends: Relations,
    pub build_depends_indep: Relations,
    pub build_depends_arch: Relations,
    pub build_conflicts: Relations,
    /// Directory of the files relative to the mirror URI (empty for a `.dsc`).
    pub directory: String,
    pub files: Vec<SourceFile>,
}

/// Parse a whole `Packages` index. `origin` names it in errors.
pub fn parse_packages(text: &str, origin: &str) -> Result<Vec<BinaryPackage>> {
    control::parse(text, origin)?
        .iter()
        .map(|p| BinaryPackage::from_paragraph(p, origin))
        .collect()
}

/// Parse a whole `Sources` index. `origin` names it in errors.
pub fn parse_sources(text: &str, origin: &str) -> Result<Vec<SourcePackage>> {
    control::parse(text, origin)?
        .iter()
        .map(|p| SourcePackage::from_paragraph(p, origin))
        .collect()
}

/// Each source package of a `Sources` index, with the text of its
/// paragraph (ending in a newline), for callers that keep a record as it
/// was signed.
pub fn parse_sources_with_text(text: &str, origin: &str) -> Result<Vec<(SourcePackage, String)>> {
    let mut out = Vec::new();
    for paragraph in control::paragraph_texts(text) {
        let paragraph = format!("{paragraph}\n");
        if let Some(s) = parse_sources(&paragraph, origin)?.into_iter().next() {
            out.push((s, paragraph));
        }
    }
    Ok(out)
}

/// The names of the binary packages a `Packages` index lists.
pub fn package_names(text: &str, origin: &str) -> Result<std::collections::HashSet<String>> {
    Ok(control::parse(text, origin)?
        .iter()
        .filter_map(|p| p.get("Package").map(str::to_string))
        .collect())
}

/// Each binary package a `Packages` index lists, with the name of its
/// source package (its `Source` field without a version, or its own name):
/// read without parsing relations, for a look-up over a whole index.
pub fn binary_sources(
    text: &str,
    origin: &str,
) -> Result<std::collections::HashMap<String, String>> {
    Ok(control::parse(text, origin)?
        .iter()
        .filter_map(|p| {
            let name = p.get("Package")?;
            let source = p
                .get("Source")
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or(name);
            Some((name.to_string(), source.to_string()))
        })
        .collect())
}

/// A `Packages` index without the paragraphs of the packages `names`, as
/// text: what an index of other packages takes the place of.
pub fn packages_without(text: &str, names: &std::collections::BTreeSet<&str>) -> String {
    let kept: Vec<&str> = control::paragraph_texts(text)
        .into_iter()
        .filter(|p| {
            // A field starts a line and a continuation never does: the
            // name is found without parsing the whole paragraph (an index
            // has tens of thousands).
            let name = p.lines().find_map(|l| l.strip_prefix("Package:"));
            !name.is_some_and(|n| names.contains(n.trim()))
        })
        .collect();
    kept.join("\n\n") + "\n"
}

/// The packages a dpkg status file lists as installed: (name,
/// architecture) to version.
pub fn installed_packages(
    status: &str,
    origin: &str,
) -> Result<std::collections::BTreeMap<(String, String), String>> {
    let mut installed = std::collections::BTreeMap::new();
    for p in control::parse(status, origin)? {
        let installed_ok = p
            .get("Status")
            .is_some_and(|s| s.split_whitespace().last() == Some("installed"));
        if let (true, Some(name), Some(arch), Some(version)) = (
            installed_ok,
            p.get("Package"),
            p.get("Architecture"),
            p.get("Version"),
        ) {
            installed.insert((name.to_string(), arch.to_string()), version.to_string());
        }
    }
    Ok(installed)
}

/// The packages a dpkg status file lists as installed, with their
/// relations, for resolving on top of them. They have no `.deb`: their
/// `filename` is empty, their `size` 0 and their `sha256` empty.
pub fn parse_status(status: &str, origin: &str) -> Result<Vec<BinaryPackage>> {
    let mut installed = Vec::new();
    for p in control::parse(status, origin)? {
        let installed_ok = p
            .get("Status")
            .is_some_and(|s| s.split_whitespace().last() == Some("installed"));
        if installed_ok {
            installed.push(BinaryPackage::read(&p, origin, false)?);
        }
    }
    Ok(installed)
}

/// Parse a `.dsc`. A clearsigned `.dsc` has its armor stripped *without*
/// checking the signature: a `.dsc`'s integrity comes from the sha256 that
/// the signed `Sources` index (or a recipe) gives for it.
pub fn parse_dsc(text: &str, origin: &str) -> Result<SourcePackage> {
    let body = if comb_debian::clearsigned::is_clearsigned(text) {
        comb_debian::clearsigned::split_clearsigned(text, origin)?.text
    } else {
        text.to_string()
    };
    let paragraphs = control::parse(&body, origin)?;
    match paragraphs.as_slice() {
        [p] => SourcePackage::from_paragraph(p, origin),
        _ => Err(Error::parse(
            origin,
            1,
            format!("a .dsc holds one paragraph, found {}", paragraphs.len()),
        )),
    }
}

fn context(origin: &str, p: &Paragraph, name: &str) -> String {
    format!("{origin}:{} (package {name})", p.line)
}

/// The package names a relationship field mentions, without parsing the
/// rest (version constraints, qualifiers, restrictions).
fn names_in(value: &str) -> impl Iterator<Item = String> + '_ {
    value.split([',', '|']).filter_map(|alternative| {
        let name = alternative
            .trim()
            .split(|c: char| c.is_whitespace() || "(:[<".contains(c))
            .next()?;
        (!name.is_empty()).then(|| name.to_string())
    })
}

fn relations(p: &Paragraph, field: &str, ctx: &str) -> Result<Relations> {
    match p.get(field) {
        Some(v) => relation_field(ctx, field, v),
        None => Ok(Vec::new()),
    }
}

fn relation_list(p: &Paragraph, field: &str, ctx: &str) -> Result<Vec<Relation>> {
    match p.get(field) {
        Some(v) => relation_list_field(ctx, field, v),
        None => Ok(Vec::new()),
    }
}

/// A relationship field (`Depends`, `Build-Depends`, …), read as dpkg
/// reads it; `origin` (file and package) and `field` name it in errors.
pub fn relation_field(origin: &str, field: &str, value: &str) -> Result<Relations> {
    parse_relations(value, Rules::Dpkg).map_err(|e| Error::Relation {
        origin: origin.to_string(),
        field: field.to_string(),
        value: value.to_string(),
        message: e.message,
    })
}

/// A field that may not have alternatives (`Provides`, `Conflicts`,
/// `Breaks`, `Replaces`).
pub fn relation_list_field(origin: &str, field: &str, value: &str) -> Result<Vec<Relation>> {
    let relations = relation_field(origin, field, value)?;
    if relations.iter().any(|r| r.alternatives.len() != 1) {
        return Err(Error::Relation {
            origin: origin.to_string(),
            field: field.to_string(),
            value: value.to_string(),
            message: "alternatives (`|`) are not allowed in this field".to_string(),
        });
    }
    Ok(relations)
}

fn version(p: &Paragraph, field: &str, value: &str, origin: &str) -> Result<Version> {
    Version::parse(value).map_err(|e| Error::parse(origin, p.line_of(field), e.to_string()))
}

fn size(p: &Paragraph, field: &str, value: &str, origin: &str) -> Result<u64> {
    value.parse().map_err(|_| {
        Error::parse(
            origin,
            p.line_of(field),
            format!("{field} must be a number of bytes, found {value:?}"),
        )
    })
}

/// Check and lowercase a sha256 hex digest.
pub(crate) fn sha256_hex(value: &str, origin: &str, line: usize) -> Result<String> {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(Error::parse(
            origin,
            line,
            format!("expected a sha256 (64 hex digits), found {value:?}"),
        ))
    }
}

impl BinaryPackage {
    /// Build from one paragraph of a `Packages` index.
    pub fn from_paragraph(p: &Paragraph, origin: &str) -> Result<BinaryPackage> {
        BinaryPackage::read(p, origin, true)
    }

    /// Build from a paragraph of an index (`with_file`: it names the
    /// `.deb`) or of a dpkg status (it does not).
    fn read(p: &Paragraph, origin: &str, with_file: bool) -> Result<BinaryPackage> {
        let name = p.require("Package", origin)?.to_string();
        let ctx = context(origin, p, &name);
        let version = version(p, "Version", p.require("Version", origin)?, origin)?;
        let (source, source_version) = match p.get("Source") {
            None => (name.clone(), version.clone()),
            Some(s) => match s.split_once('(') {
                None => (s.trim().to_string(), version.clone()),
                Some((n, v)) => {
                    let v = v.trim().strip_suffix(')').ok_or_else(|| {
                        Error::parse(
                            origin,
                            p.line_of("Source"),
                            format!("bad Source field {s:?}"),
                        )
                    })?;
                    (n.trim().to_string(), self::version(p, "Source", v, origin)?)
                }
            },
        };
        let multi_arch = match p.get("Multi-Arch").map(str::to_ascii_lowercase).as_deref() {
            None | Some("no") => MultiArch::No,
            Some("same") => MultiArch::Same,
            Some("foreign") => MultiArch::Foreign,
            Some("allowed") => MultiArch::Allowed,
            Some(other) => {
                return Err(Error::parse(
                    origin,
                    p.line_of("Multi-Arch"),
                    format!("unknown Multi-Arch value {other:?}"),
                ))
            }
        };
        Ok(BinaryPackage {
            architecture: p.require("Architecture", origin)?.to_string(),
            depends: relations(p, "Depends", &ctx)?,
            pre_depends: relations(p, "Pre-Depends", &ctx)?,
            provides: relation_list(p, "Provides", &ctx)?,
            conflicts: relation_list(p, "Conflicts", &ctx)?,
            breaks: relation_list(p, "Breaks", &ctx)?,
            mentioned: ["Recommends", "Suggests", "Replaces", "Enhances"]
                .iter()
                .filter_map(|f| p.get(f))
                .flat_map(names_in)
                .collect(),
            essential: p
                .get("Essential")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            priority: p.get("Priority").map(str::to_string),
            filename: match with_file {
                true => p.require("Filename", origin)?.to_string(),
                false => String::new(),
            },
            size: match with_file {
                true => size(p, "Size", p.require("Size", origin)?, origin)?,
                false => 0,
            },
            sha256: match with_file {
                true => sha256_hex(p.require("SHA256", origin)?, origin, p.line_of("SHA256"))?,
                false => String::new(),
            },
            multi_arch,
            source,
            source_version,
            version,
            name,
        })
    }
}

impl SourcePackage {
    /// Its build dependencies as a `Depends:` field takes them, for a
    /// build on `arch` without build profiles (`Build-Depends`, then
    /// `Build-Depends-Arch` and `Build-Depends-Indep`, as sbuild installs
    /// them for a full build): alternatives that do not apply to `arch` or
    /// need a profile are dropped, and the architecture restrictions with
    /// them; a qualifier other than `:any` too.
    pub fn build_depends_for(&self, arch: &str) -> Vec<Relation> {
        [
            &self.build_depends,
            &self.build_depends_arch,
            &self.build_depends_indep,
        ]
        .into_iter()
        .flatten()
        .filter_map(|relation| {
            let alternatives: Vec<Alternative> = relation
                .alternatives
                .iter()
                .filter(|a| a.applies(arch, &[]))
                .map(|a| Alternative {
                    name: a.name.clone(),
                    arch_qualifier: a.arch_qualifier.clone().filter(|q| q == "any"),
                    version: a.version.clone(),
                    architectures: None,
                    profiles: Vec::new(),
                })
                .collect();
            let text = alternatives
                .iter()
                .map(|a| {
                    let qualifier = a.arch_qualifier.as_ref().map_or("", |_| ":any");
                    match &a.version {
                        Some(v) => format!("{}{qualifier} ({} {})", a.name, v.op, v.version),
                        None => format!("{}{qualifier}", a.name),
                    }
                })
                .collect::<Vec<_>>()
                .join(" | ");
            (!alternatives.is_empty()).then_some(Relation { text, alternatives })
        })
        .collect()
    }

    /// The binary packages a build on `arch` makes, as `Package-List`
    /// gives them (those for an architecture pattern matching `arch`, or
    /// `all`; no `.udeb`); all of `Binary` when there is no `Package-List`.
    pub fn binaries_on(&self, arch: &str) -> Vec<String> {
        if self.package_list.is_empty() {
            return self.binaries.clone();
        }
        self.package_list
            .iter()
            .filter(|(_, archs)| {
                archs.is_empty()
                    || archs
                        .iter()
                        .any(|a| a == "all" || comb_debian::relation::arch_matches(a, arch))
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Does it build anything on `arch`: does its `Architecture` field
    /// name `all` or an architecture pattern that matches `arch`?
    pub fn builds_on(&self, arch: &str) -> bool {
        self.architecture
            .iter()
            .any(|a| a == "all" || comb_debian::relation::arch_matches(a, arch))
    }

    /// Build from one paragraph of a `Sources` index (field `Package`) or a
    /// `.dsc` (field `Source`).
    pub fn from_paragraph(p: &Paragraph, origin: &str) -> Result<SourcePackage> {
        let name = match p.get("Package") {
            Some(n) => n,
            None => p.require("Source", origin)?,
        }
        .to_string();
        let ctx = context(origin, p, &name);
        let version = version(p, "Version", p.require("Version", origin)?, origin)?;
        let split_list = |field: &str| -> Vec<String> {
            p.get(field)
                .map(|v| {
                    v.split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut files = Vec::new();
        if let Some(list) = p.get("Checksums-Sha256") {
            let first = p.line_of("Checksums-Sha256");
            for (i, line) in list.lines().enumerate() {
                // The list starts on the line after the field name.
                let line_no = first + 1 + i;
                let parts: Vec<&str> = line.split_whitespace().collect();
                let [hash, bytes, file] = parts.as_slice() else {
                    return Err(Error::parse(
                        origin,
                        line_no,
                        format!("expected `sha256 size name` in Checksums-Sha256, found {line:?}"),
                    ));
                };
                files.push(SourceFile {
                    name: safe_file_name(file, origin, line_no)?,
                    size: bytes.parse().map_err(|_| {
                        Error::parse(origin, line_no, format!("bad size {bytes:?}"))
                    })?,
                    sha256: sha256_hex(hash, origin, line_no)?,
                });
            }
        }
        Ok(SourcePackage {
            binaries: split_list("Binary"),
            package_list: p
                .get("Package-List")
                .map(|v| {
                    v.lines()
                        .filter_map(|line| {
                            let mut words = line.split_whitespace();
                            let name = words.next()?.to_string();
                            if words.next() == Some("udeb") {
                                return None;
                            }
                            let archs = words
                                .find_map(|w| w.strip_prefix("arch="))
                                .map(|a| a.split(',').map(str::to_string).collect())
                                .unwrap_or_default();
                            Some((name, archs))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            architecture: split_list("Architecture"),
            build_depends: relations(p, "Build-Depends", &ctx)?,
            build_depends_indep: relations(p, "Build-Depends-Indep", &ctx)?,
            build_depends_arch: relations(p, "Build-Depends-Arch", &ctx)?,
            build_conflicts: relations(p, "Build-Conflicts", &ctx)?,
            directory: p.get("Directory").unwrap_or_default().to_string(),
            files,
            version,
            name,
        })
    }
}

/// A source file name must be a plain name: it becomes a path on disk.
fn safe_file_name(name: &str, origin: &str, line: usize) -> Result<String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        Err(Error::parse(
            origin,
            line,
            format!("unsafe file name {name:?} in Checksums-Sha256"),
        ))
    } else {
        Ok(name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_source_s_binaries_on_an_architecture_are_package_list_s_without_udebs() {
        let text = "Package: linux\nVersion: 6.1-1\nBinary: linux-image-amd64, linux-image-686, \
                    xfs-modules-amd64-di, linux-doc\nArchitecture: any all\n\
                    Package-List:\n linux-image-amd64 deb kernel optional arch=amd64\n \
                    linux-image-686 deb kernel optional arch=i386\n \
                    xfs-modules-amd64-di udeb debian-installer standard arch=amd64\n \
                    linux-doc deb doc optional arch=all\nDirectory: pool/main/l/linux\n\n\
                    Package: old\nVersion: 1\nBinary: old-a, old-b\nArchitecture: powerpc\n\
                    Directory: pool/main/o/old\n";
        let sources = parse_sources(text, "Sources").unwrap();
        assert_eq!(
            sources[0].binaries_on("amd64"),
            ["linux-image-amd64", "linux-doc"]
        );
        assert_eq!(
            sources[0].binaries_on("i386"),
            ["linux-image-686", "linux-doc"]
        );
        assert!(sources[0].builds_on("amd64"));
        // No Package-List: all of Binary.
        assert_eq!(sources[1].binaries_on("amd64"), ["old-a", "old-b"]);
        assert!(!sources[1].builds_on("amd64"));
    }

    #[test]
    fn a_binary_s_source_is_its_source_field_s_name_or_its_own() {
        let text = "Package: libfoo1\nSource: foo (1.2-3)\nVersion: 1.2-3+b1\n\n\
                    Package: bar\nVersion: 1\n\nPackage: baz\nSource: qux\nVersion: 2\n";
        let sources = binary_sources(text, "Packages").unwrap();
        assert_eq!(sources["libfoo1"], "foo");
        assert_eq!(sources["bar"], "bar");
        assert_eq!(sources["baz"], "qux");
    }

    #[test]
    fn a_dpkg_status_gives_its_installed_packages_with_their_relations() {
        let status = "Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\
                      Depends: b (>= 2)\nProvides: v\n\n\
                      Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\
                      Architecture: amd64\n";
        let installed = parse_status(status, "status").unwrap();
        assert_eq!(installed.len(), 1);
        assert_eq!(installed[0].name, "a");
        assert_eq!(installed[0].depends[0].text, "b (>= 2)");
        assert_eq!(installed[0].provides[0].text, "v");
        assert!(installed[0].filename.is_empty());
    }

    #[test]
    fn binary_package() {
        let text = format!(
            "Package: libfoo1\nSource: foo (1.2-3)\nVersion: 1.2-3+b1\nArchitecture: amd64\n\
             Multi-Arch: same\nPre-Depends: libc6 (>= 2.34)\nDepends: a | b, c:any\n\
             Provides: libfoo (= 1.2)\nPriority: optional\nFilename: pool/main/f/foo/libfoo1.deb\n\
             Size: 1234\nSHA256: {}\nDescription: foo\n lib\n\n\
             Package: bash\nEssential: yes\nVersion: 5.2-2\nArchitecture: amd64\n\
             Filename: pool/main/b/bash/bash.deb\nSize: 1\nSHA256: {H}\n",
            H.to_uppercase()
        );
        let pkgs = parse_packages(&text, "Packages").unwrap();
        let p = &pkgs[0];
        assert_eq!(p.name, "libfoo1");
        assert_eq!(p.version.as_str(), "1.2-3+b1");
        assert_eq!(
            (p.source.as_str(), p.source_version.as_str()),
            ("foo", "1.2-3")
        );
        assert_eq!(p.multi_arch, MultiArch::Same);
        assert_eq!(p.depends.len(), 2);
        assert_eq!(p.depends[0].alternatives.len(), 2);
        assert_eq!(p.pre_depends[0].alternatives[0].name, "libc6");
        assert_eq!(p.provides[0].alternatives[0].name, "libfoo");
        assert_eq!(p.sha256, H);
        assert_eq!(p.size, 1234);
        assert!(!p.essential);
        let b = &pkgs[1];
        assert!(b.essential);
        assert_eq!(
            (b.source.as_str(), b.source_version.as_str()),
            ("bash", "5.2-2")
        );
    }

    #[test]
    fn binary_package_errors() {
        let base = format!(
            "Package: x\nVersion: 1\nArchitecture: all\nFilename: f\nSize: 1\nSHA256: {H}\n"
        );
        assert!(parse_packages(&base, "P").is_ok());
        let err = parse_packages(&base.replace("Size: 1", "Size: big"), "P").unwrap_err();
        assert_eq!(
            err.to_string(),
            "P:5: Size must be a number of bytes, found \"big\""
        );
        let err = parse_packages(&base.replace(H, "abc"), "P").unwrap_err();
        assert!(err.to_string().starts_with("P:6: expected a sha256"));
        let err = parse_packages(&format!("{base}Depends: a (>= )\n"), "P").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("P:1 (package x): field Depends:"),
            "{err}"
        );
        let err = parse_packages(&base.replace("Filename: f\n", ""), "P").unwrap_err();
        assert!(err.to_string().contains("no Filename field"));
    }

    #[test]
    fn source_package_and_dsc() {
        let text = format!(
            "Package: foo\nBinary: libfoo1, foo-bin\nVersion: 1.2-3\nArchitecture: any all\n\
             Build-Depends: debhelper-compat (= 13),\n libbar-dev [linux-any] <!nocheck>\n\
             Build-Depends-Indep: python3\nDirectory: pool/main/f/foo\n\
             Checksums-Sha256:\n {H} 100 foo_1.2-3.dsc\n {H} 2000 foo_1.2.orig.tar.xz\n"
        );
        let s = &parse_sources(&text, "Sources").unwrap()[0];
        assert_eq!(s.binaries, ["libfoo1", "foo-bin"]);
        assert_eq!(s.architecture, ["any", "all"]);
        assert_eq!(s.build_depends.len(), 2);
        assert_eq!(s.build_depends_indep[0].alternatives[0].name, "python3");
        assert_eq!(s.directory, "pool/main/f/foo");
        assert_eq!(s.files.len(), 2);
        assert_eq!(s.files[1].size, 2000);

        let dsc = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nFormat: 3.0 (quilt)\nSource: foo\n\
             Version: 1.2-3\nChecksums-Sha256:\n {H} 2000 foo_1.2.orig.tar.xz\n\
             -----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"
        );
        let d = parse_dsc(&dsc, "foo.dsc").unwrap();
        assert_eq!(d.name, "foo");
        assert_eq!(d.files[0].name, "foo_1.2.orig.tar.xz");

        let evil = text.replace("foo_1.2.orig.tar.xz", "../../etc/passwd");
        let err = parse_sources(&evil, "Sources").unwrap_err();
        assert!(err.to_string().contains("unsafe file name"), "{err}");
    }

    #[test]
    fn index_helpers_read_and_filter_paragraphs() {
        let index = "Package: aa\nVersion: 1\nDescription: a\n Package: not a field\n\n\
                     Package: bb\nVersion: 2\n\nPackage: cc\nVersion: 3\n";
        let names = package_names(index, "Packages").unwrap();
        assert_eq!(names.len(), 3);
        assert!(names.contains("bb"));
        let without = packages_without(index, &["bb"].into_iter().collect());
        assert_eq!(
            package_names(&without, "Packages").unwrap(),
            ["aa", "cc"].into_iter().map(String::from).collect()
        );
        let status = "Package: aa\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n\n\
                      Package: bb\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 2\n";
        let installed = installed_packages(status, "status").unwrap();
        assert_eq!(installed.len(), 1);
        assert_eq!(installed[&("aa".to_string(), "amd64".to_string())], "1");
        assert!(installed_packages("Package aa\n", "status").is_err());
    }
}
