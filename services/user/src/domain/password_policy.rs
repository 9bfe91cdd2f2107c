//! The password policy (NIST SP 800-63B) for new passwords. Hashing is in
//! [`crate::password`].

use std::collections::HashSet;
use std::sync::LazyLock;

use super::email::Email;
use crate::error::{Error, Result};

/// The bundled common-password list (see `data/README.md`), lower-cased.
static COMMON_PASSWORDS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    include_str!("../../data/common-passwords.txt")
        .lines()
        .map(|line| line.trim().to_lowercase())
        .filter(|line| !line.is_empty())
        .collect()
});

pub const PASSWORD_MIN_CHARS: usize = 12;
pub const PASSWORD_MAX_CHARS: usize = 128;

/// A new password that passed the NIST SP 800-63B policy: 12–128 code points, no composition
/// rules, not a common password, not containing the account's email or its local part.
/// `field` names the request field in errors (`password`, `new_password`).
pub fn check_new_password(password: &str, email: &Email, field: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < PASSWORD_MIN_CHARS {
        return Err(Error::invalid(
            field.to_owned(),
            format!("must be at least {PASSWORD_MIN_CHARS} characters"),
        ));
    }
    if chars > PASSWORD_MAX_CHARS {
        return Err(Error::invalid(
            field.to_owned(),
            format!("must be at most {PASSWORD_MAX_CHARS} characters"),
        ));
    }
    let lower = password.to_lowercase();
    if COMMON_PASSWORDS.contains(lower.trim()) {
        return Err(Error::invalid(
            field.to_owned(),
            "is a commonly used password; choose another",
        ));
    }
    let email_lower = email.as_str().to_lowercase();
    let local = email.local_part().to_lowercase();
    // A local part of 4+ characters inside the password (e.g. "alice.smith2024!") is the
    // first thing an attacker tries; shorter ones would refuse too many unrelated passwords.
    if lower.contains(&email_lower) || (local.chars().count() >= 4 && lower.contains(&local)) {
        return Err(Error::invalid(
            field.to_owned(),
            "must not contain your email address",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy() {
        let email = Email::parse("alice.smith@example.com").unwrap();
        let ok = |p: &str| check_new_password(p, &email, "password");
        assert!(ok("correct horse battery staple").is_ok());
        // No composition rules: all lower-case letters are fine.
        assert!(ok("abcdefghijkmnopq").is_ok());
        assert!(ok("short pass").is_err());
        assert!(ok(&"x".repeat(129)).is_err());
        assert!(ok(&"é".repeat(12)).is_ok(), "counts code points, not bytes");
        // On the bundled list (case-insensitively).
        let common = ok("UnBelievable").unwrap_err();
        assert!(common.to_string().contains("common"), "{common:?}");
        let own = ok("my alice.smith@example.com!").unwrap_err();
        assert!(own.to_string().contains("email"), "{own:?}");
        assert!(ok("ALICE.SMITH-rocks-2024").is_err());
    }
}
