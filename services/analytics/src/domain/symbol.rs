//! Tickers.

use std::fmt;

use super::DomainError;

/// A ticker: 1–10 of A–Z, 0–9, '.', '-', starting with a letter or digit (stock-data's rule;
/// input is trimmed and upper-cased). Whether it exists is for the read model to say.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Symbol(String);

impl Symbol {
    /// Parses the request field `field`.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, DomainError> {
        match mirai_platform::wire::ticker(raw) {
            Some(ticker) => Ok(Self(ticker)),
            None => Err(DomainError::new(
                field,
                format!(
                    "{raw:?} is not a ticker ({})",
                    mirai_platform::wire::TICKER_RULE
                ),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickers_are_normalised_and_checked() {
        assert_eq!(
            Symbol::parse("symbol", " brk.b ").unwrap().as_str(),
            "BRK.B"
        );
        for bad in ["", "-X", "TOOLONGTICKER", "A B", "Ä"] {
            let err = Symbol::parse("symbol", bad).unwrap_err();
            assert_eq!(err.field, "symbol", "{bad}");
        }
    }
}
