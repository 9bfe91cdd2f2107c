//! A symbol to list, asset types, and the search filters.

use mirai_proto::stock::v1 as pb;

use super::{DomainError, Ticker};

/// The stored form of [`pb::AssetType`].
pub fn asset_type_name(asset_type: pb::AssetType) -> Option<&'static str> {
    Some(match asset_type {
        pb::AssetType::Unspecified => return None,
        pb::AssetType::Equity => "equity",
        pb::AssetType::Etf => "etf",
        pb::AssetType::Index => "index",
        pb::AssetType::Crypto => "crypto",
        pb::AssetType::Fx => "fx",
    })
}

/// The [`pb::AssetType`] of a stored name.
pub fn asset_type_of(name: &str) -> pb::AssetType {
    match name {
        "equity" => pb::AssetType::Equity,
        "etf" => pb::AssetType::Etf,
        "index" => pb::AssetType::Index,
        "crypto" => pb::AssetType::Crypto,
        "fx" => pb::AssetType::Fx,
        _ => pb::AssetType::Unspecified,
    }
}

/// A validated symbol to list.
#[derive(Debug, Clone)]
pub struct NewSymbol {
    pub ticker: Ticker,
    pub name: String,
    pub exchange_mic: String,
    pub currency: String,
    pub asset_type: &'static str,
}

impl NewSymbol {
    /// Validates the caller's fields; output-only fields are ignored.
    pub fn parse(symbol: &pb::Symbol) -> Result<Self, DomainError> {
        let name = symbol.name.trim();
        if name.is_empty() || !mirai_platform::wire::is_plain_text(name, 200) {
            return Err(DomainError::invalid(
                "symbol.name",
                "must be 1-200 characters without control characters",
            ));
        }
        let exchange_mic = symbol.exchange_mic.trim().to_ascii_uppercase();
        if exchange_mic.len() != 4 || !exchange_mic.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(DomainError::invalid(
                "symbol.exchange_mic",
                format!(
                    "`{}` is not an ISO 10383 MIC (4 letters or digits, e.g. XNAS)",
                    symbol.exchange_mic
                ),
            ));
        }
        let currency = symbol.currency.trim().to_ascii_uppercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(DomainError::invalid(
                "symbol.currency",
                format!(
                    "`{}` is not an ISO 4217 code (3 letters, e.g. USD)",
                    symbol.currency
                ),
            ));
        }
        let asset_type = pb::AssetType::try_from(symbol.asset_type)
            .ok()
            .and_then(asset_type_name)
            .ok_or_else(|| {
                DomainError::invalid(
                    "symbol.asset_type",
                    "required: one of EQUITY, ETF, INDEX, CRYPTO, FX",
                )
            })?;
        Ok(Self {
            ticker: Ticker::parse(&symbol.symbol)?,
            name: name.to_owned(),
            exchange_mic,
            currency,
            asset_type,
        })
    }
}

/// Search filters (already validated).
#[derive(Debug, Default)]
pub struct Search {
    /// Upper-cased query; empty lists everything.
    pub query: String,
    pub asset_type: Option<&'static str>,
    pub exchange_mic: Option<String>,
    pub include_delisted: bool,
    pub tracked_only: bool,
    /// Keyset: tickers after this one (only for the unranked listing).
    pub after: String,
    pub limit: u32,
}

impl Search {
    pub fn parse(request: &pb::SearchSymbolsRequest) -> Result<Self, DomainError> {
        let asset_type = match pb::AssetType::try_from(request.asset_type) {
            Ok(pb::AssetType::Unspecified) => None,
            Ok(other) => asset_type_name(other),
            Err(_) => {
                return Err(DomainError::invalid("asset_type", "unknown asset type"));
            }
        };
        let query = request.query.trim().to_ascii_uppercase();
        if !mirai_platform::wire::is_plain_text(&query, 100) {
            return Err(DomainError::invalid(
                "query",
                "at most 100 characters without control characters",
            ));
        }
        Ok(Self {
            query,
            asset_type,
            exchange_mic: Some(request.exchange_mic.trim().to_ascii_uppercase())
                .filter(|mic| !mic.is_empty()),
            include_delisted: request.include_delisted,
            tracked_only: request.tracked_only,
            after: super::page_after(&request.page_token)?,
            limit: super::page_size(request.page_size, 20, 100)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_symbols_are_validated_field_by_field() {
        let good = pb::Symbol {
            symbol: "aapl".into(),
            name: " Apple Inc. ".into(),
            exchange_mic: "xnas".into(),
            currency: "usd".into(),
            asset_type: pb::AssetType::Equity.into(),
            ..Default::default()
        };
        let parsed = NewSymbol::parse(&good).unwrap();
        assert_eq!(
            (
                parsed.ticker.as_str(),
                parsed.name.as_str(),
                parsed.exchange_mic.as_str(),
                parsed.currency.as_str(),
                parsed.asset_type
            ),
            ("AAPL", "Apple Inc.", "XNAS", "USD", "equity")
        );
        type Breaker = fn(&mut pb::Symbol);
        let cases: [(Breaker, &str); 4] = [
            (|s| s.name = " ".into(), "symbol.name:"),
            (|s| s.exchange_mic = "NASDAQ".into(), "symbol.exchange_mic:"),
            (|s| s.currency = "US$".into(), "symbol.currency:"),
            (|s| s.asset_type = 0, "symbol.asset_type:"),
        ];
        for (break_it, field) in cases {
            let mut bad = good.clone();
            break_it(&mut bad);
            let err = NewSymbol::parse(&bad).unwrap_err();
            assert!(err.to_string().starts_with(field), "{err}");
        }
    }
}
