//! Account values that parse rather than validate: once one exists it is valid. No I/O here.

use std::collections::{BTreeSet, HashSet};
use std::sync::LazyLock;

use email_address::{EmailAddress, Options};
use mirai_proto::user::v1 as pb;
use unicode_normalization::UnicodeNormalization as _;

use crate::error::{Error, Result};

// === Email ===

/// A normalised email address: trimmed, NFC, domain lower-cased (the local part keeps its case,
/// as RFC 5321 allows it to matter; uniqueness is case-insensitive in the database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self> {
        let trimmed: String = raw.trim().nfc().collect();
        if trimmed.is_empty() {
            return Err(Error::invalid("email", "required"));
        }
        if trimmed.len() > 254 {
            return Err(Error::invalid("email", "at most 254 bytes"));
        }
        let options = Options::default()
            .with_required_tld()
            .without_domain_literal()
            .without_display_text();
        let parsed = EmailAddress::parse_with_options(&trimmed, options)
            .map_err(|_| Error::invalid("email", "not a valid email address"))?;
        Ok(Self(format!(
            "{}@{}",
            parsed.local_part(),
            parsed.domain().to_lowercase()
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or(&self.0, |(local, _)| local)
    }
}

// === Password policy ===

/// The bundled common-password list (see `data/README.md`), lower-cased.
static COMMON_PASSWORDS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
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

// === Profile fields ===

/// Display name: 1–100 characters after trimming.
pub fn display_name(raw: &str, field: &str) -> Result<String> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > 100 || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            field.to_owned(),
            "must be 1-100 characters without control characters",
        ));
    }
    Ok(name.to_owned())
}

/// An IANA time zone name known to `chrono-tz`, in its canonical spelling.
pub fn time_zone(raw: &str, field: &str) -> Result<String> {
    raw.trim()
        .parse::<chrono_tz::Tz>()
        .map(|tz| tz.name().to_owned())
        .map_err(|_| {
            Error::invalid(
                field.to_owned(),
                format!("`{raw}` is not an IANA time zone (e.g. Asia/Tokyo)"),
            )
        })
}

/// A BCP 47 language tag, syntactically: 2–3 letter language, then 1–8 alphanumeric subtags.
/// Canonical case: language lower, 2-letter region upper (e.g. `ja-JP`).
pub fn locale(raw: &str, field: &str) -> Result<String> {
    let bad = || {
        Error::invalid(
            field.to_owned(),
            format!("`{raw}` is not a BCP 47 tag (e.g. ja-JP)"),
        )
    };
    let raw_trimmed = raw.trim().replace('_', "-");
    let mut parts = raw_trimmed.split('-');
    let language = parts
        .next()
        .filter(|l| (2..=3).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphabetic()));
    let Some(language) = language else {
        return Err(bad());
    };
    let mut out = language.to_ascii_lowercase();
    for part in parts {
        if !(1..=8).contains(&part.len()) || !part.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad());
        }
        out.push('-');
        if part.len() == 2 && part.chars().all(|c| c.is_ascii_alphabetic()) {
            out.push_str(&part.to_ascii_uppercase());
        } else {
            out.push_str(part);
        }
    }
    if out.len() > 35 {
        return Err(bad());
    }
    Ok(out)
}

/// A watchlist: upper-case tickers, unique, at most 200, in the user's order.
pub fn watchlist(raw: &[String]) -> Result<Vec<String>> {
    if raw.len() > 200 {
        return Err(Error::invalid("user.watchlist", "at most 200 symbols"));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for symbol in raw {
        let Some(ticker) = mirai_platform::wire::ticker(symbol) else {
            return Err(Error::invalid(
                "user.watchlist",
                format!("`{symbol}` is not a ticker"),
            ));
        };
        if seen.insert(ticker.clone()) {
            out.push(ticker);
        }
    }
    Ok(out)
}

// === Roles ===

/// The stored name of a role; `None` for `ROLE_UNSPECIFIED`.
pub fn role_name(role: pb::Role) -> Option<&'static str> {
    match role {
        pb::Role::Unspecified => None,
        pb::Role::User => Some("user"),
        pb::Role::Premium => Some("premium"),
        pb::Role::Admin => Some("admin"),
    }
}

pub fn role_of(name: &str) -> pb::Role {
    match name {
        "user" => pb::Role::User,
        "premium" => pb::Role::Premium,
        "admin" => pb::Role::Admin,
        _ => pb::Role::Unspecified,
    }
}

/// A role from its wire value; INVALID_ARGUMENT naming `field` when unknown or unspecified.
pub fn parse_role(value: i32, field: &str) -> Result<&'static str> {
    pb::Role::try_from(value)
        .ok()
        .and_then(role_name)
        .ok_or_else(|| {
            Error::invalid(
                field.to_owned(),
                "must be ROLE_USER, ROLE_PREMIUM or ROLE_ADMIN",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        let email = Email::parse("  Alice.Smith@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "Alice.Smith@example.com");
        assert_eq!(email.local_part(), "Alice.Smith");
        // NFC: "e" + combining acute becomes "é".
        let email = Email::parse("jose\u{301}@example.com").unwrap();
        assert_eq!(email.as_str(), "jos\u{e9}@example.com");
        for bad in [
            "",
            "no-at-sign",
            "a@b",
            "Alice <a@example.com>",
            "a@[127.0.0.1]",
        ] {
            let error = Email::parse(bad).unwrap_err();
            assert!(error.to_string().starts_with("email:"), "{bad}: {error:?}");
        }
    }

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

    #[test]
    fn profile_fields() {
        assert_eq!(time_zone("Asia/Tokyo", "tz").unwrap(), "Asia/Tokyo");
        assert!(time_zone("Mars/Olympus", "tz").is_err());
        assert_eq!(locale("ja_jp", "l").unwrap(), "ja-JP");
        assert_eq!(locale("en-US", "l").unwrap(), "en-US");
        assert!(locale("english!", "l").is_err());
        assert_eq!(
            watchlist(&["aapl".into(), "MSFT".into(), "AAPL".into()]).unwrap(),
            ["AAPL", "MSFT"]
        );
        assert!(watchlist(&["not a ticker".into()]).is_err());
        assert!(display_name("  ", "d").is_err());
    }
}
