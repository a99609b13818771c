//! What Debian policy asks of a binary package beyond its files, made for
//! native recipes as debhelper makes it for a Debian maintainer:
//!
//! - `/usr/share/doc/PKG/copyright` in the machine-readable format (DEP-5),
//!   from the recipe's license and the source's own license file;
//! - `changelog.Debian.gz`, generated (or the source's own Debian-format
//!   changelog), compressed as `dh_compress` does (`gzip -9n`);
//! - the shared-library dependencies `dpkg-shlibdeps` computes, merged
//!   with those a recipe writes as `dpkg-gencontrol` merges them;
//! - the shell script that strips binaries into `-dbgsym` packages, writes
//!   `shlibs` (and `symbols`) files and runs `dpkg-shlibdeps`, as
//!   `dh_strip`, `dh_makeshlibs` and `dh_shlibdeps` do. It runs as the
//!   builder inside the build environment: comb never runs binutils on a
//!   build's binaries outside the sandbox.
//!
//! Everything here is a function of its arguments: the same recipe gives
//! the same bytes.

use crate::packages::relation_field;
use comb_debian::relation::{Op, Relation};
use comb_debian::Version;
use std::io::Write;

/// The `Format:` of a machine-readable copyright file.
pub const DEP5_FORMAT: &str = "https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/";

/// The trigger that runs `ldconfig` after a package with shared
/// libraries is installed or removed (what `dh_makeshlibs` adds).
pub const LDCONFIG_TRIGGER: &str = "# Triggers added by comb\nactivate-noawait ldconfig\n";

/// How a license's text reaches the copyright file.
enum LicenseText {
    /// In `/usr/share/common-licenses/FILE` on every Debian system.
    Common {
        file: &'static str,
        title: &'static str,
    },
    /// Short enough to be written out.
    Full(&'static str),
}

/// A license as the recipe names it (SPDX or DEP-5 short names), as DEP-5
/// names it, and where its text is.
fn known_license(name: &str) -> Option<(&'static str, LicenseText)> {
    use LicenseText::*;
    let gpl = |file, title| Common { file, title };
    Some(match name {
        "MIT" | "Expat" => ("Expat", Full(EXPAT)),
        "ISC" => ("ISC", Full(ISC)),
        "BSD-2-Clause" | "BSD-2-clause" => ("BSD-2-clause", Full(BSD_2)),
        "BSD-3-Clause" | "BSD-3-clause" => ("BSD-3-clause", Full(BSD_3)),
        "Zlib" => ("Zlib", Full(ZLIB)),
        "Apache-2.0" => (
            "Apache-2.0",
            gpl("Apache-2.0", "Apache License, Version 2.0"),
        ),
        "MPL-2.0" => (
            "MPL-2.0",
            gpl("MPL-2.0", "Mozilla Public License, Version 2.0"),
        ),
        "CC0-1.0" => ("CC0-1.0", gpl("CC0-1.0", "CC0 1.0 Universal")),
        "GPL-2.0-only" | "GPL-2" => (
            "GPL-2",
            gpl("GPL-2", "GNU General Public License version 2"),
        ),
        "GPL-2.0-or-later" | "GPL-2.0+" | "GPL-2+" => (
            "GPL-2+",
            gpl("GPL-2", "GNU General Public License version 2"),
        ),
        "GPL-3.0-only" | "GPL-3" => (
            "GPL-3",
            gpl("GPL-3", "GNU General Public License version 3"),
        ),
        "GPL-3.0-or-later" | "GPL-3.0+" | "GPL-3+" => (
            "GPL-3+",
            gpl("GPL-3", "GNU General Public License version 3"),
        ),
        "LGPL-2.1-only" | "LGPL-2.1" => (
            "LGPL-2.1",
            gpl("LGPL-2.1", "GNU Lesser General Public License version 2.1"),
        ),
        "LGPL-2.1-or-later" | "LGPL-2.1+" => (
            "LGPL-2.1+",
            gpl("LGPL-2.1", "GNU Lesser General Public License version 2.1"),
        ),
        "LGPL-3.0-only" | "LGPL-3" => (
            "LGPL-3",
            gpl("LGPL-3", "GNU Lesser General Public License version 3"),
        ),
        "LGPL-3.0-or-later" | "LGPL-3.0+" | "LGPL-3+" => (
            "LGPL-3+",
            gpl("LGPL-3", "GNU Lesser General Public License version 3"),
        ),
        _ => return None,
    })
}

/// What a copyright file is made of.
pub struct Copyright<'a> {
    /// The upstream name (the recipe's).
    pub name: &'a str,
    /// Where the upstream source lives (the recipe's homepage).
    pub source: Option<&'a str>,
    /// The recipe's `license`.
    pub license: &'a str,
    /// The `Copyright:` lines: the recipe's `copyright`, else those of the
    /// license text, else the maintainer.
    pub holders: Vec<String>,
    /// The source's own license text (`LICENSE`, `COPYING`), if any.
    pub license_text: Option<&'a str>,
}

/// The `Copyright ...` notices of a license text, without the word.
pub fn notices_in(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| {
            let rest = l
                .strip_prefix("Copyright")
                .or_else(|| l.strip_prefix("copyright"))?;
            let rest = rest.trim_start_matches([' ', ':']);
            let rest = rest
                .strip_prefix("(c)")
                .or_else(|| rest.strip_prefix("(C)"))
                .or_else(|| rest.strip_prefix('©'))
                .unwrap_or(rest)
                .trim();
            // "Copyright notice" and the like are prose, not a notice.
            rest.chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
                .then(|| rest.to_string())
        })
        .collect()
}

/// The DEP-5 copyright file, or why there can be none: a license comb
/// does not know the text of, and no text in the source.
pub fn copyright(c: &Copyright) -> Result<String, String> {
    let license = c.license.trim();
    if license.is_empty() || license.contains('\n') {
        return Err(format!("license {license:?} is not one license name"));
    }
    let known = known_license(license);
    let name = known.as_ref().map_or(license, |(n, _)| n);
    let body = match (c.license_text, &known) {
        (Some(text), _) => text.to_string(),
        (None, Some((_, LicenseText::Full(text)))) => text.to_string(),
        (None, Some((_, LicenseText::Common { file, title }))) => format!(
            "On Debian systems, the complete text of the {title} can be found in\n\
             \"/usr/share/common-licenses/{file}\"."
        ),
        (None, None) => {
            return Err(format!(
                "comb knows no text of the license {license:?}: add the license text to the \
                 source as LICENSE or COPYING (or a DEP-5 `copyright` file), or name one of \
                 MIT, ISC, BSD-2-Clause, BSD-3-Clause, Zlib, Apache-2.0, MPL-2.0, CC0-1.0, \
                 GPL-2.0-only, GPL-2.0-or-later, GPL-3.0-only, GPL-3.0-or-later, LGPL-2.1-only, \
                 LGPL-2.1-or-later, LGPL-3.0-only, LGPL-3.0-or-later"
            ))
        }
    };
    let mut out = format!("Format: {DEP5_FORMAT}\nUpstream-Name: {}\n", c.name);
    if let Some(source) = c.source {
        out.push_str(&format!("Source: {source}\n"));
    }
    out.push_str("\nFiles: *\nCopyright:");
    let holders: Vec<&str> = c
        .holders
        .iter()
        .map(|h| h.trim())
        .filter(|h| !h.is_empty())
        .collect();
    if holders.is_empty() {
        return Err("the copyright file needs a holder: set copyright in [package]".into());
    }
    match holders.as_slice() {
        [one] => out.push_str(&format!(" {one}\n")),
        many => {
            out.push('\n');
            for h in many {
                out.push_str(&format!(" {h}\n"));
            }
        }
    }
    out.push_str(&format!("License: {name}\n"));
    out.push_str(&continuation(&body));
    Ok(out)
}

/// Text as the continuation lines of a field: each line indented by one
/// space, empty lines as " .", surrounding empty lines dropped.
fn continuation(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let start = lines.iter().position(|l| !l.is_empty()).unwrap_or(0);
    let end = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |e| e + 1);
    let mut out = String::new();
    for line in lines.get(start..end).unwrap_or_default() {
        if line.is_empty() {
            out.push_str(" .\n");
        } else {
            out.push_str(&format!(" {line}\n"));
        }
    }
    out
}

/// Whether a source's `copyright` file is already machine-readable (then
/// it is shipped as it is).
pub fn is_dep5(text: &str) -> bool {
    text.lines()
        .next()
        .is_some_and(|l| l.starts_with("Format:") && l.contains("copyright-format"))
}

/// A date as a Debian changelog writes it (RFC 5322, UTC).
pub fn changelog_date(epoch: i64) -> String {
    let date = crate::release::format_date(epoch);
    format!("{} +0000", date.trim_end_matches(" UTC"))
}

/// A one-entry Debian changelog for a native recipe's version.
pub fn changelog(source: &str, version: &str, maintainer: &str, epoch: i64) -> String {
    format!(
        "{source} ({version}) unstable; urgency=medium\n\n  \
         * Built by comb from the recipe of {source}, version {version}.\n\n \
         -- {maintainer}  {}\n",
        changelog_date(epoch)
    )
}

/// Checks that a source's own Debian changelog is one of `source` whose
/// newest entry is `version`. `Ok(false)`: the text is not a Debian
/// changelog at all (an upstream one).
pub fn check_changelog(text: &str, source: &str, version: &str) -> Result<bool, String> {
    let Some(first) = text.lines().find(|l| !l.trim().is_empty()) else {
        return Ok(false);
    };
    // `NAME (VERSION) DIST...; urgency=...`
    let Some((name, rest)) = first.split_once(" (") else {
        return Ok(false);
    };
    let Some((top, tail)) = rest.split_once(')') else {
        return Ok(false);
    };
    if name.contains(char::is_whitespace) || !tail.contains("urgency=") {
        return Ok(false);
    }
    if name != source {
        return Err(format!(
            "its newest entry is of {name:?}, the recipe builds {source:?}: name the recipe {name:?} or fix the changelog"
        ));
    }
    if top != version {
        return Err(format!(
            "its newest entry is version {top}, the recipe's version is {version}: add an entry for {version} or fix the recipe"
        ));
    }
    Ok(true)
}

/// `gzip -9n`: no name, no time, maximum compression, as `dh_compress`
/// compresses documentation.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(3)
        .write(Vec::new(), flate2::Compression::best());
    out.write_all(data).expect("writing to memory");
    out.finish().expect("writing to memory")
}

/// The `Depends` of a package: those computed (`shlibs:Depends`) and
/// those the recipe writes, simplified as `dpkg-gencontrol` simplifies:
/// of two plain relations on one package, one that implies the other
/// stands for both (`libc6 (>= 2.34)` for `libc6` and `libc6 (>= 2.2)`).
pub fn merge_depends(lists: &[&[Relation]]) -> Vec<String> {
    let mut out: Vec<Relation> = Vec::new();
    for r in lists.iter().flat_map(|l| l.iter()) {
        if out.iter().any(|o| implies(o, r)) {
            continue;
        }
        out.retain(|o| !implies(r, o));
        out.push(r.clone());
    }
    out.into_iter().map(|r| r.text).collect()
}

/// Whether `a` holding means `b` holds: the same text, or both one
/// alternative on the same package and `a`'s constraint within `b`'s.
fn implies(a: &Relation, b: &Relation) -> bool {
    if a.text == b.text {
        return true;
    }
    let ([x], [y]) = (a.alternatives.as_slice(), b.alternatives.as_slice()) else {
        return false;
    };
    if x.name != y.name
        || x.arch_qualifier != y.arch_qualifier
        || x.architectures.is_some()
        || y.architectures.is_some()
        || !x.profiles.is_empty()
        || !y.profiles.is_empty()
    {
        return false;
    }
    let Some(want) = &y.version else {
        return true;
    };
    let Some(have) = &x.version else {
        return false;
    };
    let (Ok(hv), Ok(wv)) = (Version::parse(&have.version), Version::parse(&want.version)) else {
        return false;
    };
    match (have.op, want.op) {
        (Op::Equal, op) => op.satisfied_by(&hv, &wv),
        (Op::LaterOrEqual, Op::LaterOrEqual) => hv >= wv,
        (Op::Later, Op::LaterOrEqual) => hv >= wv,
        (Op::Later, Op::Later) => hv >= wv,
        (Op::LaterOrEqual, Op::Later) => hv > wv,
        (Op::EarlierOrEqual, Op::EarlierOrEqual) => hv <= wv,
        (Op::Earlier, Op::EarlierOrEqual) => hv <= wv,
        (Op::Earlier, Op::Earlier) => hv <= wv,
        (Op::EarlierOrEqual, Op::Earlier) => hv < wv,
        _ => false,
    }
}

/// The `shlibs:Depends` a `dpkg-shlibdeps` substvars file gives, read as
/// any relation field is. The file is the build's: it is checked, never
/// trusted.
pub fn shlibs_depends(substvars: &str, origin: &str) -> crate::Result<Vec<Relation>> {
    for line in substvars.lines() {
        if let Some(value) = line.strip_prefix("shlibs:Depends=") {
            return relation_field(origin, "shlibs:Depends", value);
        }
    }
    Ok(Vec::new())
}

/// Checks a `shlibs` file made in the sandbox: every line
/// `LIBRARY SOVERSION PACKAGE (>= VERSION)` naming `package`.
pub fn check_shlibs(text: &str, package: &str) -> Result<(), String> {
    let lib_char = |c: char| c.is_ascii_alphanumeric() || "._+-".contains(c);
    for (i, line) in text.lines().enumerate() {
        let mut parts = line.splitn(3, ' ');
        let (Some(lib), Some(version), Some(deps)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "line {}: {line:?} is not LIBRARY VERSION DEPENDENCY",
                i + 1
            ));
        };
        if lib.is_empty() || !lib.chars().all(lib_char) || !version.chars().all(lib_char) {
            return Err(format!("line {}: {line:?} names no library", i + 1));
        }
        let relations = relation_field("shlibs", "Depends", deps).map_err(|e| e.to_string())?;
        if relations.iter().any(|r| r.names().any(|n| n != package)) {
            return Err(format!("line {}: {line:?} names another package", i + 1));
        }
    }
    Ok(())
}

/// The packaging script: run in the build environment as the builder,
/// in a directory laid out as debhelper's (`debian/control`,
/// `debian/changelog`, `debian/PKG/` with each output's files). Its
/// inputs are the environment variables `COMB_PACKAGES` (one line per
/// output: `NAME STRIP DBGSYM SYMBOLS`, each flag `yes` or `no`),
/// `COMB_UPSTREAM_VERSION`, and `debian/.comb/NAME.elf`, the output's ELF
/// files (NUL-separated, relative to `debian/NAME`) as comb found them by
/// their first bytes. It leaves, per output, `debian/NAME/DEBIAN/shlibs`
/// and `symbols`, `debian/NAME.substvars`, and the debug files in
/// `debian/.dbgsym/NAME/` with their build ids in
/// `debian/.comb/NAME.build-ids`.
pub const PACKAGING_SCRIPT: &str = r#"
# The tools' output is parsed: untranslated, whatever locale a check
# varies (LANGUAGE wins over any locale but C).
export LC_ALL=C
unset LANGUAGE
fail() { echo "comb: $*" >&2; exit 3; }
need() {
  command -v "$1" >/dev/null ||
    fail "$1 is not in the build environment: add $2 to the recipe's [build] requires (or [base] build in comb.toml)"
}
need readelf binutils; need objcopy binutils; need strip binutils; need objdump binutils
need dpkg-shlibdeps dpkg-dev
# A library directory, as dh_makeshlibs looks in: lib, usr/lib and one
# level below them (the multiarch directory).
in_libdir() {
  case "$1" in
    lib/*/*/*|usr/lib/*/*/*) return 1 ;;
    lib/*|usr/lib/*) return 0 ;;
  esac
  return 1
}
while read -r pkg strip dbgsym symbols; do
  [ -n "$pkg" ] || continue
  root=debian/$pkg
  mkdir -p "$root/DEBIAN" debian/.comb
  : > "debian/.comb/$pkg.bins"
  mapfile -d '' elfs < "debian/.comb/$pkg.elf"
  for rel in "${elfs[@]}"; do
    f=$root/$rel
    info=$(readelf --wide -h -S -n -- "$f" 2>/dev/null) || continue
    type=$(awk '$1 == "Type:" { print $2; exit }' <<<"$info")
    case $type in EXEC|DYN) ;; *) continue ;; esac
    printf '%s\0' "$f" >> "debian/.comb/$pkg.bins"
    shared=no
    case ${rel##*/} in *.so|*.so.*) [ "$type" = DYN ] && shared=yes ;; esac
    if [ "$strip" = yes ] && grep -q ' \.symtab ' <<<"$info"; then
      id=$(sed -n 's/.*Build ID: *\([0-9a-f]*\).*/\1/p' <<<"$info" | head -n 1)
      debug=
      # Only what has debug information gets a debug file (a binary
      # built without -g is stripped of its symbol table alone).
      if [ "$dbgsym" = yes ] && [ "${#id}" -gt 2 ] && grep -q ' \.debug_info ' <<<"$info"; then
        debug=debian/.dbgsym/$pkg/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug
        mkdir -p "${debug%/*}"
        objcopy --only-keep-debug --compress-debug-sections -- "$f" "$debug"
        chmod 0644 "$debug"
        echo "$id" >> "debian/.comb/$pkg.build-ids"
      fi
      if [ "$shared" = yes ]; then
        strip --remove-section=.comment --remove-section=.note --strip-unneeded -- "$f"
      else
        strip --remove-section=.comment --remove-section=.note -- "$f"
      fi
      [ -z "$debug" ] || objcopy --add-gnu-debuglink="$debug" -- "$f"
    fi
    if [ "$shared" = yes ] && in_libdir "$rel"; then
      soname=$(objdump -p -- "$f" | sed -n 's/^ *SONAME *//p')
      if [[ $soname =~ ^(.+)\.so\.([^/]+)$ ]] || [[ $soname =~ ^(.+)-([0-9][^-/]*)\.so$ ]]; then
        echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]} $pkg (>= $COMB_UPSTREAM_VERSION)" >> "$root/DEBIAN/shlibs"
      fi
    fi
  done
  if [ -f "$root/DEBIAN/shlibs" ]; then
    LC_ALL=C sort -u -o "$root/DEBIAN/shlibs" "$root/DEBIAN/shlibs"
    if [ "$symbols" = yes ]; then
      dpkg-gensymbols -q -c0 -p"$pkg" -P"$root" -v"$COMB_UPSTREAM_VERSION" -O"$root/DEBIAN/symbols"
    fi
  fi
done <<<"$COMB_PACKAGES"
# Dependencies once every output's shlibs are there: a program may use a
# library another output of this recipe ships.
while read -r pkg strip dbgsym symbols; do
  [ -n "$pkg" ] || continue
  mapfile -d '' bins < "debian/.comb/$pkg.bins"
  [ "${#bins[@]}" -gt 0 ] || continue
  dpkg-shlibdeps -T"debian/$pkg.substvars" -x"$pkg" "${bins[@]}" ||
    fail "dpkg-shlibdeps could not compute the dependencies of $pkg (see above)"
done <<<"$COMB_PACKAGES"
"#;

const EXPAT: &str = "Permission is hereby granted, free of charge, to any person obtaining a
copy of this software and associated documentation files (the \"Software\"),
to deal in the Software without restriction, including without limitation
the rights to use, copy, modify, merge, publish, distribute, sublicense,
and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included
in all copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS
OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF
MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT.
IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY
CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT,
TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE
SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.";

const ISC: &str = "Permission to use, copy, modify, and/or distribute this software for any
purpose with or without fee is hereby granted, provided that the above
copyright notice and this permission notice appear in all copies.

THE SOFTWARE IS PROVIDED \"AS IS\" AND THE AUTHOR DISCLAIMS ALL WARRANTIES
WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF
MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR
ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN
ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF
OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.";

const BSD_2: &str = "Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice,
   this list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright
   notice, this list of conditions and the following disclaimer in the
   documentation and/or other materials provided with the distribution.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS \"AS IS\"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE
ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE
LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR
CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF
SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS
INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN
CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE)
ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE
POSSIBILITY OF SUCH DAMAGE.";

const BSD_3: &str = "Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice,
   this list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright
   notice, this list of conditions and the following disclaimer in the
   documentation and/or other materials provided with the distribution.

3. Neither the name of the copyright holder nor the names of its
   contributors may be used to endorse or promote products derived from
   this software without specific prior written permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS \"AS IS\"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE
ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE
LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR
CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF
SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS
INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN
CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE)
ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE
POSSIBILITY OF SUCH DAMAGE.";

const ZLIB: &str = "This software is provided 'as-is', without any express or implied
warranty. In no event will the authors be held liable for any damages
arising from the use of this software.

Permission is granted to anyone to use this software for any purpose,
including commercial applications, and to alter it and redistribute it
freely, subject to the following restrictions:

1. The origin of this software must not be misrepresented; you must not
   claim that you wrote the original software. If you use this software
   in a product, an acknowledgment in the product documentation would be
   appreciated but is not required.
2. Altered source versions must be plainly marked as such, and must not be
   misrepresented as being the original software.
3. This notice may not be removed or altered from any source distribution.";

#[cfg(test)]
mod tests {
    use super::*;

    fn relations(text: &str) -> Vec<Relation> {
        relation_field("test", "Depends", text).unwrap()
    }

    #[test]
    fn dates_are_what_date_r_prints() {
        assert_eq!(changelog_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            changelog_date(1_704_067_200),
            "Mon, 01 Jan 2024 00:00:00 +0000"
        );
        assert_eq!(
            changelog_date(951_827_696),
            "Tue, 29 Feb 2000 12:34:56 +0000"
        );
    }

    #[test]
    fn depends_merge_as_dpkg_gencontrol_simplifies() {
        let computed = relations("libc6 (>= 2.34), libgreet1 (>= 1.0)");
        let written = relations("libc6, libgreet1 (>= 1.1), foo | bar, libc6 (>= 2.2)");
        assert_eq!(
            merge_depends(&[&computed, &written]),
            ["libc6 (>= 2.34)", "libgreet1 (>= 1.1)", "foo | bar"]
        );
        let exact = relations("libgreet1 (= 1.0-1)");
        assert_eq!(
            merge_depends(&[&computed, &exact]),
            ["libc6 (>= 2.34)", "libgreet1 (= 1.0-1)"]
        );
    }

    #[test]
    fn a_copyright_file_is_dep5_with_the_license_text() {
        let text = copyright(&Copyright {
            name: "greet",
            source: Some("https://example.org/greet"),
            license: "MIT",
            holders: vec!["2024 Example Org".into()],
            license_text: None,
        })
        .unwrap();
        assert!(text.starts_with(&format!("Format: {DEP5_FORMAT}\nUpstream-Name: greet\nSource: https://example.org/greet\n\nFiles: *\nCopyright: 2024 Example Org\nLicense: Expat\n Permission is hereby granted")), "{text}");
        assert!(text.contains("\n .\n The above copyright notice"), "{text}");
        let gpl = copyright(&Copyright {
            name: "x",
            source: None,
            license: "GPL-2.0-or-later",
            holders: vec!["2020 A".into(), "2021 B".into()],
            license_text: None,
        })
        .unwrap();
        assert!(
            gpl.contains("Copyright:\n 2020 A\n 2021 B\nLicense: GPL-2+\n On Debian systems"),
            "{gpl}"
        );
        assert!(gpl.contains("/usr/share/common-licenses/GPL-2"), "{gpl}");
        let unknown = copyright(&Copyright {
            name: "x",
            source: None,
            license: "Proprietary",
            holders: vec!["2020 A".into()],
            license_text: None,
        });
        assert!(unknown.unwrap_err().contains("add the license text"));
    }

    #[test]
    fn notices_are_found_in_license_texts() {
        let text = "MIT License\n\nCopyright (c) 2019-2024 Jane Doe <jane@example.org>\nCopyright 2020 Example\nthe above copyright notice\n";
        assert_eq!(
            notices_in(text),
            ["2019-2024 Jane Doe <jane@example.org>", "2020 Example"]
        );
    }

    #[test]
    fn a_sources_changelog_must_match_the_recipe() {
        let log = "greet (1.0-1) unstable; urgency=medium\n\n  * New.\n\n -- A <a@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n";
        assert_eq!(check_changelog(log, "greet", "1.0-1"), Ok(true));
        assert!(check_changelog(log, "greet", "1.0-2")
            .unwrap_err()
            .contains("1.0-2"));
        assert_eq!(
            check_changelog("2024-01-01 Jane\n\t* new\n", "greet", "1.0-1"),
            Ok(false)
        );
        let made = changelog("greet", "1.0-1", "A <a@example.org>", 1_704_067_200);
        assert_eq!(check_changelog(&made, "greet", "1.0-1"), Ok(true));
        assert!(made.ends_with(" -- A <a@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n"));
    }

    #[test]
    fn gzip_is_deterministic_and_maximal() {
        let a = gzip(b"hello\n");
        assert_eq!(a, gzip(b"hello\n"));
        // No time, maximum compression (XFL 2), Unix.
        assert_eq!(&a[4..10], &[0, 0, 0, 0, 2, 3]);
    }

    #[test]
    fn shlibs_lines_are_checked() {
        assert!(check_shlibs("libgreet 1 libgreet1 (>= 1.0)\n", "libgreet1").is_ok());
        assert!(check_shlibs("libgreet 1 libc6 (>= 1.0)\n", "libgreet1").is_err());
        assert!(check_shlibs("lib/x 1 libgreet1\n", "libgreet1").is_err());
        assert!(check_shlibs("libgreet\n", "libgreet1").is_err());
    }
}
