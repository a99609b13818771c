//! The signed text of a clearsigned OpenPGP message (`InRelease`, a
//! signed `.dsc`), refusing anything that is not exactly one such message.
//! Whether the signature is good is not this module's business: comb-distro
//! asks `gpgv`, and compares the text it verified with this text.

use crate::error::{Error, Result};

/// First line of a clearsigned message.
pub const SIGNED_HEADER: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const SIGNATURE_BEGIN: &str = "-----BEGIN PGP SIGNATURE-----";
const SIGNATURE_END: &str = "-----END PGP SIGNATURE-----";

/// The signed text of a clearsigned message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Dash-escaping undone, each line's trailing whitespace removed
    /// (OpenPGP does not sign it), ending with a newline.
    pub text: String,
    /// The line of the message its first line was (1-based): line `n` of
    /// `text` was line `n + first_line - 1`.
    pub first_line: usize,
}

/// Whether `text` is a clearsigned message (or tries to be one).
pub fn is_clearsigned(text: &str) -> bool {
    text.trim_start().starts_with(SIGNED_HEADER)
}

/// Take the signed text out of a clearsigned message, refusing anything that
/// is not exactly one signed message. This alone proves nothing: use
/// [`verify_clearsigned`] for text that is to be trusted.
///
/// The result has dash-escaping undone, trailing whitespace of each line
/// removed (OpenPGP does not sign it) and ends with a newline.
pub fn split_clearsigned(text: &str, origin: &str) -> Result<Signed> {
    let bad = |reason: String| Error::Clearsign {
        file: origin.to_string(),
        reason,
    };
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l));
    // Leading blank lines are tolerated, nothing else.
    loop {
        match lines.next() {
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((_, l)) if l.trim_end() == SIGNED_HEADER => break,
            Some((n, _)) => {
                return Err(bad(format!(
                    "line {n}: expected {SIGNED_HEADER} (text before the signed message)"
                )))
            }
            None => return Err(bad("no signed message in it".to_string())),
        }
    }
    // Armor headers ("Hash: SHA512") up to one empty line.
    let first_line = loop {
        match lines.next() {
            Some((n, l)) if l.trim().is_empty() => break n + 1,
            Some((_, l)) if l.starts_with("Hash:") => continue,
            Some((n, l)) => return Err(bad(format!("line {n}: unexpected armor header {l:?}"))),
            None => return Err(bad("it ends inside the armor headers".to_string())),
        }
    };
    let mut body = String::with_capacity(text.len());
    loop {
        match lines.next() {
            Some((_, l)) if l.trim_end() == SIGNATURE_BEGIN => break,
            Some((_, l)) if l.starts_with("- ") => {
                body.push_str(l[2..].trim_end_matches([' ', '\t']));
                body.push('\n');
            }
            Some((n, l)) if l.starts_with('-') => {
                return Err(bad(format!(
                    "line {n}: a line starting with '-' that is not dash-escaped: {l:?}"
                )))
            }
            Some((_, l)) => {
                body.push_str(l.trim_end_matches([' ', '\t']));
                body.push('\n');
            }
            None => return Err(bad("it has no signature block".to_string())),
        }
    }
    loop {
        match lines.next() {
            Some((_, l)) if l.trim_end() == SIGNATURE_END => break,
            Some((n, l)) if l.starts_with("-----") => {
                return Err(bad(format!(
                    "line {n}: unexpected {l:?} inside the signature"
                )))
            }
            Some(_) => continue,
            None => return Err(bad("the signature block is not terminated".to_string())),
        }
    }
    if let Some((n, _)) = lines.find(|(_, l)| !l.trim().is_empty()) {
        return Err(bad(format!(
            "line {n}: text after the signature, which is not signed"
        )));
    }
    Ok(Signed {
        text: body,
        first_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_strips_armor_and_dash_escapes() {
        let signed =
            "\n-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\n\nSuite: x  \n- - dash\n\
                      last\n-----BEGIN PGP SIGNATURE-----\n\nabc=\n-----END PGP SIGNATURE-----\n\n";
        assert_eq!(
            split_clearsigned(signed, "f").unwrap().text,
            "Suite: x\n- dash\nlast\n"
        );
        assert_eq!(split_clearsigned(signed, "f").unwrap().first_line, 5);
    }

    #[test]
    fn split_refuses_unsigned_text() {
        let good = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nA: 1\n\
                    -----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n";
        assert!(split_clearsigned(good, "f").is_ok());
        for (evil, why) in [
            (format!("A: 2\n{good}"), "text before the signed message"),
            (format!("{good}A: 2\n"), "text after the signature"),
            (format!("{good}{good}"), "text after the signature"),
            (
                good.replace("A: 1\n", "A: 1\n-----BEGIN PGP SIGNED MESSAGE-----\n"),
                "not dash-escaped",
            ),
            (
                good.replace("Hash: SHA256", "Hash: SHA256\nEvil: 1"),
                "unexpected armor header",
            ),
            (
                good.replace("-----END PGP SIGNATURE-----\n", ""),
                "not terminated",
            ),
            ("A: 1\n".to_string(), "text before the signed message"),
        ] {
            let err = split_clearsigned(&evil, "InRelease")
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{err}");
            assert!(err.starts_with("InRelease is not a well-formed"), "{err}");
        }
    }
}
