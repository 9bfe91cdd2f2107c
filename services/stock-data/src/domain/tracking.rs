//! Tracking references: who holds a symbol's tracking.

use super::DomainError;

/// A tracking reference: `alert:{id}` or `watchlist:{user_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference(String);

impl Reference {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let raw = raw.trim();
        let valid = raw.split_once(':').is_some_and(|(kind, id)| {
            matches!(kind, "alert" | "watchlist")
                && (1..=100).contains(&id.len())
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c))
        });
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DomainError::invalid(
                "reference",
                format!("`{raw}` is not `alert:{{id}}` or `watchlist:{{user_id}}`"),
            ))
        }
    }

    pub fn alert(alert_id: &str) -> Result<Self, DomainError> {
        Self::parse(&format!("alert:{alert_id}"))
    }

    pub fn watchlist(user_id: &str) -> Result<Self, DomainError> {
        Self::parse(&format!("watchlist:{user_id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_their_holder() {
        assert!(Reference::parse("alert:0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").is_ok());
        assert!(Reference::parse("watchlist:u1").is_ok());
        for bad in ["", "alert:", "portfolio:1", "alert:a b", "watchlist"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
