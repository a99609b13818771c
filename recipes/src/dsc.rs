//! A local Debian source package's `.dsc` (a deb822 paragraph, possibly
//! inside a PGP signature), read for what the package graph needs: the
//! source name and version, the binary packages and the build
//! dependencies. Verifying the signature and the files' checksums is the
//! engine's job, which hashes them anyway.

use crate::error::{Error, Location, Result};
use crate::recipe::Requirement;
use comb_debian::clearsigned::{is_clearsigned, split_clearsigned};
use comb_debian::name::check_package_name;
use comb_debian::relation::{parse_relations, Rules};
use comb_debian::version::check_version;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The fields of a `.dsc` that comb uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsc {
    /// The `.dsc` file itself.
    pub file: PathBuf,
    /// `Source:`
    pub source: String,
    /// `Version:`
    pub version: String,
    /// `Format:`, e.g. `3.0 (quilt)`.
    pub format: Option<String>,
    /// `Binary:`: the binary packages it builds.
    pub binaries: Vec<String>,
    /// `Build-Depends`, `Build-Depends-Arch` and `Build-Depends-Indep`
    /// (`dpkg-buildpackage -b` builds both kinds), each at its place in the file.
    pub build_depends: Vec<Requirement>,
    /// `Build-Conflicts`, `Build-Conflicts-Arch` and `Build-Conflicts-Indep`.
    pub build_conflicts: Vec<Requirement>,
    /// The files of `Files:`/`Checksums-Sha256:`, all present beside the `.dsc`.
    pub files: Vec<DscFile>,
}

/// One file of the source package, beside the `.dsc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DscFile {
    pub name: String,
    pub size: u64,
    /// From `Checksums-Sha256:`, lowercase, if the `.dsc` has it.
    pub sha256: Option<String>,
}

struct Field<'a> {
    name: &'a str,
    /// Byte offset of the value in the text.
    offset: usize,
    /// The value, continuation lines included, exactly as in the text.
    value: &'a str,
}

impl Dsc {
    /// Reads and checks the `.dsc` at `file`. Every problem found is
    /// returned, each at its line.
    pub fn load(file: &Path) -> Result<Dsc> {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
            path: file.to_path_buf(),
            source,
        })?;
        Dsc::parse(file, &text)
    }

    /// Parses `text` as the contents of `file`; the listed files are
    /// looked for in `file`'s directory.
    pub fn parse(file: &Path, text: &str) -> Result<Dsc> {
        Dsc::parse_all(file, text)
            .map_err(|errors| Error::from_list(errors).expect("at least one error"))
    }

    fn parse_all(file: &Path, text: &str) -> std::result::Result<Dsc, Vec<Error>> {
        let origin = file.display().to_string();
        let line_one = |message: String| {
            Location {
                file: file.to_path_buf(),
                line: 1,
                column: 1,
            }
            .error(message)
        };
        // The signed text (the signature is not checked: the engine hashes
        // every file anyway), and the line of the file it starts at.
        let (body, first_line) = if is_clearsigned(text) {
            match split_clearsigned(text, &origin) {
                Ok(signed) => (Cow::Owned(signed.text), signed.first_line),
                Err(e) => return Err(vec![line_one(e.to_string())]),
            }
        } else {
            (Cow::Borrowed(text), 1)
        };
        let body = body.as_ref();
        let at = |offset: usize| {
            let mut place = Location::of_offset(file, body, offset);
            place.line += first_line - 1;
            place
        };
        let mut errors = Vec::new();
        let paragraph = match comb_debian::control::parse(body, &origin) {
            Ok(paragraphs) => paragraphs.into_iter().next(),
            Err(comb_debian::Error::Parse { line, message, .. }) => {
                return Err(vec![Location {
                    file: file.to_path_buf(),
                    line: line + first_line - 1,
                    column: 1,
                }
                .error(message)])
            }
            Err(e) => return Err(vec![line_one(e.to_string())]),
        };
        let fields: Vec<Field> = paragraph
            .iter()
            .flat_map(|p| &p.fields)
            .map(|f| Field {
                name: &f.name,
                offset: f.span.start,
                value: &body[f.span.clone()],
            })
            .collect();
        let get = |name: &str| fields.iter().find(|f| f.name.eq_ignore_ascii_case(name));
        let mut required = |name: &str| match get(name) {
            Some(f) => Some(f),
            None => {
                errors.push(at(0).error(format!(
                    "not a Debian source control file: it has no {name}: field"
                )));
                None
            }
        };
        let source = required("Source");
        let version = required("Version");
        let binary = required("Binary");
        let (Some(source), Some(version), Some(binary)) = (source, version, binary) else {
            return Err(errors);
        };
        let mut dsc = Dsc {
            file: file.to_path_buf(),
            source: source.value.trim().to_string(),
            version: version.value.trim().to_string(),
            format: get("Format").map(|f| f.value.trim().to_string()),
            binaries: Vec::new(),
            build_depends: Vec::new(),
            build_conflicts: Vec::new(),
            files: Vec::new(),
        };
        let lead = |f: &Field| f.offset + (f.value.len() - f.value.trim_start().len());
        if let Err(m) = check_package_name(&dsc.source) {
            errors.push(at(lead(source)).error(format!("Source: {m}")));
        }
        if let Err(m) = check_version(&dsc.version) {
            errors.push(at(lead(version)).error(format!("Version: {m}")));
        }
        let mut offset = binary.offset;
        for name in binary.value.split(',') {
            let trimmed = name.trim();
            let lead = offset + (name.len() - name.trim_start().len());
            offset += name.len() + 1;
            if trimmed.is_empty() {
                continue;
            }
            match check_package_name(trimmed) {
                Ok(()) => dsc.binaries.push(trimmed.to_string()),
                Err(m) => errors.push(at(lead).error(format!("Binary: {m}"))),
            }
        }
        for (names, into) in [
            (
                ["Build-Depends", "Build-Depends-Arch", "Build-Depends-Indep"],
                &mut dsc.build_depends,
            ),
            (
                [
                    "Build-Conflicts",
                    "Build-Conflicts-Arch",
                    "Build-Conflicts-Indep",
                ],
                &mut dsc.build_conflicts,
            ),
        ] {
            for name in names {
                let Some(f) = get(name) else { continue };
                match parse_relations(f.value, Rules::Policy) {
                    Ok(list) => {
                        // Each relation's place: its text's first occurrence
                        // from where the previous one was found.
                        let mut from = 0;
                        for relation in list {
                            let pos = f.value[from..].find(&relation.text).map_or(0, |p| p + from);
                            from = pos + relation.text.len();
                            into.push(Requirement {
                                relation,
                                at: at(f.offset + pos),
                            });
                        }
                    }
                    Err(e) => errors
                        .push(at(f.offset + e.offset).error(format!("{}: {}", f.name, e.message))),
                }
            }
        }
        dsc.files = files(&fields, &at, &mut errors);
        let dir = file.parent().unwrap_or(Path::new("."));
        for f in &dsc.files {
            let path = dir.join(&f.name);
            if !path.is_file() {
                let listed = get("Checksums-Sha256")
                    .or_else(|| get("Files"))
                    .map_or(0, |field| {
                        field.offset + field.value.find(&f.name).unwrap_or(0)
                    });
                errors.push(at(listed).error(format!(
                    "missing source file {}: the .dsc lists it; put it beside the .dsc",
                    path.display()
                )));
            }
        }
        if errors.is_empty() {
            Ok(dsc)
        } else {
            Err(errors)
        }
    }
}

/// The `Files:` and `Checksums-Sha256:` lists, merged by name.
fn files(
    fields: &[Field],
    at: &dyn Fn(usize) -> Location,
    errors: &mut Vec<Error>,
) -> Vec<DscFile> {
    let mut out: Vec<DscFile> = Vec::new();
    for (field, digest_len) in [("Files", 32), ("Checksums-Sha256", 64)] {
        let Some(f) = fields.iter().find(|f| f.name.eq_ignore_ascii_case(field)) else {
            continue;
        };
        let mut offset = f.offset;
        for line in f.value.split('\n') {
            let line_at = offset + (line.len() - line.trim_start().len());
            offset += line.len() + 1;
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.is_empty() {
                continue;
            }
            let bad = |why: &str| {
                at(line_at).error(format!(
                    "{field}: {why}; expected lines of `DIGEST SIZE NAME`"
                ))
            };
            let [digest, size, name] = parts[..] else {
                errors.push(bad("not three words"));
                continue;
            };
            if digest.len() != digest_len || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                errors.push(bad(&format!("{digest:?} is not {digest_len} hex digits")));
                continue;
            }
            let Ok(size) = size.parse::<u64>() else {
                errors.push(bad(&format!("{size:?} is not a size")));
                continue;
            };
            // The name becomes a path beside the .dsc: nothing that leaves it.
            if name.starts_with('.') || name.contains('/') || name.contains('\\') {
                errors.push(bad(&format!(
                    "{name:?} is not a plain file name beside the .dsc"
                )));
                continue;
            }
            match out.iter_mut().find(|x| x.name == name) {
                Some(existing) => {
                    if existing.size != size {
                        errors.push(bad(&format!(
                            "{name} has size {size} here but {} in an earlier list",
                            existing.size
                        )));
                    }
                    if digest_len == 64 {
                        existing.sha256 = Some(digest.to_ascii_lowercase());
                    }
                }
                None => out.push(DscFile {
                    name: name.to_string(),
                    size,
                    sha256: (digest_len == 64).then(|| digest.to_ascii_lowercase()),
                }),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DSC: &str = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n\
Format: 3.0 (quilt)\nSource: greet\nBinary: greet, libgreet1,\n libgreet-dev\nVersion: 1.0-1\n\
Build-Depends: debhelper-compat (= 13),\n libfoo-dev (>= 1.2) | libbar-dev,\n\
Build-Depends-Indep: texinfo\n\
Checksums-Sha256:\n 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 10 greet_1.0.orig.tar.gz\n\
Files:\n 0123456789abcdef0123456789abcdef 10 greet_1.0.orig.tar.gz\n\n\
-----BEGIN PGP SIGNATURE-----\n\nxxx\n-----END PGP SIGNATURE-----\n";

    #[test]
    fn signed_dsc_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("greet_1.0.orig.tar.gz"), "0123456789").unwrap();
        let file = dir.path().join("greet_1.0-1.dsc");
        let dsc = Dsc::parse(&file, DSC).unwrap();
        assert_eq!(dsc.source, "greet");
        assert_eq!(dsc.version, "1.0-1");
        assert_eq!(dsc.format.as_deref(), Some("3.0 (quilt)"));
        assert_eq!(dsc.binaries, ["greet", "libgreet1", "libgreet-dev"]);
        let deps: Vec<_> = dsc
            .build_depends
            .iter()
            .map(|r| (r.relation.text.as_str(), r.at.line, r.at.column))
            .collect();
        assert_eq!(
            deps,
            [
                ("debhelper-compat (= 13)", 9, 16),
                ("libfoo-dev (>= 1.2) | libbar-dev", 10, 2),
                ("texinfo", 11, 22)
            ]
        );
        assert_eq!(dsc.files.len(), 1);
        assert_eq!(dsc.files[0].size, 10);
        assert!(dsc.files[0].sha256.as_deref().unwrap().starts_with("0123"));
    }

    #[test]
    fn problems_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("greet_1.0-1.dsc");
        let text = DSC.replace("libfoo-dev (>= 1.2)", "libfoo-dev (> 1.2)");
        let errors: Vec<String> = Dsc::parse(&file, &text)
            .unwrap_err()
            .into_list()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains(":10:14: Build-Depends: the operator `>`"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains(":13:") && errors[1].contains("missing source file"),
            "{errors:?}"
        );
        let e = Dsc::parse(&file, "Format: 1.0\n").unwrap_err().to_string();
        assert!(e.contains("no Source: field"), "{e}");
        let text = DSC.replace(" 10 greet_1.0.orig", " 10 ../greet_1.0.orig");
        let e = Dsc::parse(&file, &text).unwrap_err().to_string();
        assert!(e.contains("not a plain file name"), "{e}");
    }
}
