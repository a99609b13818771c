//! A parser for Debian's control-file format (deb822): paragraphs of
//! `Field: value` lines separated by blank lines, with continuation lines
//! that start with a space or tab. Used for Packages, Sources, Release,
//! `.dsc` and APT `.sources` files.
//!
//! Lines starting with `#` are comments and are skipped (APT `.sources` and
//! `debian/control` allow them; indices never contain them at line start).
//! Every field keeps the line it started on so later errors can point at it.

use crate::error::{Error, Result};

/// One `Name: value` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The value: the text after the colon with surrounding whitespace
    /// removed, then each continuation line (leading whitespace removed)
    /// after a `\n`. When the first line is empty (as in `SHA256:`), the
    /// value starts with the first continuation line.
    pub value: String,
    /// 1-based line number of the field's first line.
    pub line: usize,
    /// Where the value stands in the parsed text, as written: from after
    /// the colon to the end of its last continuation line.
    pub span: std::ops::Range<usize>,
}

/// One paragraph (stanza) of fields, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paragraph {
    pub fields: Vec<Field>,
    /// 1-based line number of the paragraph's first field.
    pub line: usize,
}

impl Paragraph {
    /// The field named `name` (field names are case-insensitive).
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The value of field `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.field(name).map(|f| f.value.as_str())
    }

    /// The value of field `name`, or an error naming `origin` and the
    /// paragraph's line.
    pub fn require(&self, name: &str, origin: &str) -> Result<&str> {
        self.get(name).ok_or_else(|| {
            Error::parse(
                origin,
                self.line,
                format!("paragraph has no {name} field, which is required here"),
            )
        })
    }

    /// The line of field `name`, or the paragraph's first line.
    pub fn line_of(&self, name: &str) -> usize {
        self.field(name).map_or(self.line, |f| f.line)
    }
}

/// The text of each paragraph of `text`, as it stands (without the
/// newline after its last line): paragraphs are separated by lines that
/// are empty or hold only whitespace (`\r` included), as in [`parse`], for
/// callers that keep or filter records as text.
pub fn paragraph_texts(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut start = None;
    let mut end = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim().is_empty() {
            if let Some(s) = start.take() {
                found.push(&text[s..end]);
            }
        } else {
            start.get_or_insert(offset);
            end = offset + line.trim_end_matches(['\n', '\r']).len();
        }
        offset += line.len();
    }
    if let Some(s) = start {
        found.push(&text[s..end]);
    }
    found
}

/// Parse `text` into paragraphs. `origin` (a file name or URL) is used in
/// errors. Empty paragraphs (runs of blank lines or comments) are skipped.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Paragraph>> {
    let mut paragraphs = Vec::new();
    let mut current: Option<Paragraph> = None;
    let mut offset = 0;
    for (index, raw) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let start = offset;
        offset += raw.len() + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            if let Some(p) = current.take() {
                paragraphs.push(p);
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let field = current
                .as_mut()
                .and_then(|p| p.fields.last_mut())
                .ok_or_else(|| {
                    Error::parse(origin, line_no, "continuation line before any field")
                })?;
            if !field.value.is_empty() {
                field.value.push('\n');
            }
            field.value.push_str(line.trim());
            field.span.end = start + line.len();
            continue;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| {
            Error::parse(
                origin,
                line_no,
                format!("expected `Field: value`, found {:?}", truncate(line)),
            )
        })?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(Error::parse(
                origin,
                line_no,
                format!("invalid field name {:?}", truncate(name)),
            ));
        }
        let paragraph = current.get_or_insert_with(|| Paragraph {
            fields: Vec::new(),
            line: line_no,
        });
        if paragraph.field(name).is_some() {
            return Err(Error::parse(
                origin,
                line_no,
                format!("field {name} appears twice in one paragraph"),
            ));
        }
        paragraph.fields.push(Field {
            name: name.to_string(),
            value: value.trim().to_string(),
            line: line_no,
            span: start + name.len() + 1..start + line.len(),
        });
    }
    if let Some(p) = current.take() {
        paragraphs.push(p);
    }
    Ok(paragraphs)
}

fn truncate(s: &str) -> String {
    const MAX: usize = 60;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn paragraph_texts_split_on_blank_lines_of_any_kind() {
        let text = "A: 1\nB: 2\n\n\nC: 3\r\n \t\r\nD: 4\n  more\n";
        assert_eq!(
            paragraph_texts(text),
            ["A: 1\nB: 2", "C: 3", "D: 4\n  more"]
        );
        assert_eq!(paragraph_texts("\n\n"), Vec::<&str>::new());
        assert_eq!(paragraph_texts("X: y"), ["X: y"]);
    }
    use super::*;

    #[test]
    fn paragraphs_fields_and_continuations() {
        let text = "# comment\nPackage: foo\nDescription: short\n more\n .\n end\n\n\n\
                    Package: bar\r\nSHA256:\n abc 1 x\n def 2 y\n";
        let ps = parse(text, "t").unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("package"), Some("foo"));
        assert_eq!(ps[0].get("Description"), Some("short\nmore\n.\nend"));
        assert_eq!(ps[0].line, 2);
        assert_eq!(ps[1].line, 9);
        assert_eq!(ps[1].get("Package"), Some("bar"));
        assert_eq!(ps[1].get("SHA256"), Some("abc 1 x\ndef 2 y"));
        assert_eq!(ps[1].line_of("SHA256"), 10);
    }

    #[test]
    fn comment_inside_paragraph_does_not_split_it() {
        let ps = parse("Types: deb\n# URIs: x\nSuites: a\n", "t").unwrap();
        assert_eq!(ps.len(), 1);
        assert_eq!(ps[0].fields.len(), 2);
    }

    #[test]
    fn errors_carry_line_numbers() {
        let err = parse("Package: a\nnot a field\n", "Packages").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Packages:2: expected `Field: value`, found \"not a field\""
        );
        let err = parse(" lead\n", "f").unwrap_err();
        assert!(err.to_string().starts_with("f:1: continuation"));
        let err = parse("A: 1\na: 2\n", "f").unwrap_err();
        assert!(err.to_string().contains("f:2: field a appears twice"));
        assert!(parse("A: 1\n: 2\n", "f").is_err());
    }
}
