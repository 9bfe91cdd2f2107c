//! Email addresses, normalised.

use email_address::{EmailAddress, Options};
use unicode_normalization::UnicodeNormalization as _;

use crate::error::{Error, Result};

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
}
