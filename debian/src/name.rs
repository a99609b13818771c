//! Package names (Debian Policy 5.6.1).

/// Lowercase letters, digits, `+ - .`, at least two characters, starting
/// with a letter or digit.
pub fn is_package_name(name: &str) -> bool {
    name.len() >= 2 && is_dpkg_package_name(name)
}

/// What dpkg reads as a package name: as [`is_package_name`], but one
/// character is enough.
pub fn is_dpkg_package_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+.-".contains(&c))
}

/// [`is_package_name`], with a message that says what a name may hold.
pub fn check_package_name(name: &str) -> Result<(), String> {
    if is_package_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a Debian package name: expected lowercase letters, digits, `+`, `-` and `.`, at least two characters, starting with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_package_name("libgreet-dev").is_ok());
        assert!(check_package_name("g++").is_ok());
        assert!(check_package_name("0ad").is_ok());
        for bad in ["a", "-a", "lib_greet", "Foo", "", "ü8"] {
            assert!(check_package_name(bad).is_err(), "{bad}");
        }
    }
}
