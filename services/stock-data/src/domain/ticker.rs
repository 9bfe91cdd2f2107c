//! Tickers.

use super::DomainError;

/// A ticker: 1–10 of `A–Z 0–9 . -`, starting with a letter or digit, stored upper-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticker(String);

impl Ticker {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        match mirai_platform::wire::ticker(raw) {
            Some(ticker) => Ok(Self(ticker)),
            None => Err(DomainError::invalid(
                "symbol",
                format!(
                    "`{raw}` is not a ticker ({})",
                    mirai_platform::wire::TICKER_RULE
                ),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickers_are_normalised_and_checked() {
        assert_eq!(Ticker::parse(" brk.b ").unwrap().as_str(), "BRK.B");
        for bad in ["", "-AB", "TOOLONGTICKER", "A B", "ÄPPLE", "A/B"] {
            let err = Ticker::parse(bad).unwrap_err();
            assert!(
                matches!(
                    &err,
                    DomainError::Invalid {
                        field: "symbol",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }
}
