//! Tickers.

use std::fmt;

/// A ticker: 1–10 of A–Z, 0–9, '.', '-', starting with a letter or digit (stock-data's rule;
/// input is trimmed and upper-cased). Whether it exists is stock-data's to say.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Symbol(String);

/// The text is not a ticker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a ticker ({rule})", rule = mirai_platform::wire::TICKER_RULE)]
pub struct SymbolError(pub String);

impl Symbol {
    pub fn parse(raw: &str) -> Result<Self, SymbolError> {
        match mirai_platform::wire::ticker(raw) {
            Some(ticker) => Ok(Self(ticker)),
            None => Err(SymbolError(raw.to_owned())),
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
        assert_eq!(Symbol::parse(" brk.b ").unwrap().as_str(), "BRK.B");
        assert_eq!(Symbol::parse("SPX").unwrap().to_string(), "SPX");
        for bad in ["", "-X", "TOOLONGTICKER", "A B", "Ä"] {
            assert!(Symbol::parse(bad).is_err(), "{bad}");
        }
    }
}
