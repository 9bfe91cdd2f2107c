//! Conversions between domain values and their gRPC wire forms: timestamps, page tokens and
//! tickers (every service spells a symbol the way stock-data does).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

/// Free text a service stores (names, reasons, descriptions): at most `max_chars` characters
/// and no control characters (PostgreSQL cannot store NUL in `text`, and these are one line).
pub fn is_plain_text(text: &str, max_chars: usize) -> bool {
    text.chars().count() <= max_chars && !text.chars().any(char::is_control)
}

/// A UTC instant as a protobuf `Timestamp`.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// A protobuf `Timestamp` as a UTC instant; `None` when out of range.
pub fn datetime(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
}

/// A requested page size: `0` means `default`; anything else must be in `1..=max`.
pub fn page_size(requested: u32, default: u32, max: u32) -> Result<u32, tonic::Status> {
    match requested {
        0 => Ok(default),
        n if n <= max => Ok(n),
        n => Err(crate::error::invalid_argument(
            "page_size",
            format!("must be between 1 and {max}, got {n}"),
        )),
    }
}

/// An opaque page token carrying the last key of the previous page (keyset pagination).
pub fn page_token(last_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_key)
}

/// The key in a token from [`page_token`]; empty for the first page.
pub fn page_after(token: &str) -> Result<String, tonic::Status> {
    if token.is_empty() {
        return Ok(String::new());
    }
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| crate::error::invalid_argument("page_token", "not a token from this API"))
}

/// The id in a token from [`page_token`] whose key is a UUID (the last row's id); `None` for
/// the first page.
pub fn page_after_id(token: &str) -> Result<Option<uuid::Uuid>, tonic::Status> {
    let key = page_after(token)?;
    if key.is_empty() {
        return Ok(None);
    }
    key.parse()
        .map(Some)
        .map_err(|_| crate::error::invalid_argument("page_token", "not a token from this API"))
}

/// Trims `rows`, fetched with one row more than `limit`, to the page, and returns the token of
/// the next page (the last kept row's key), or an empty token when this is the last page.
pub fn next_page_token<T>(rows: &mut Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> String {
    if rows.len() <= limit {
        return String::new();
    }
    rows.truncate(limit);
    rows.last()
        .map(|row| page_token(&key(row)))
        .unwrap_or_default()
}

/// What a ticker is, for error messages.
pub const TICKER_RULE: &str = "1-10 of A-Z, 0-9, '.', '-', starting with a letter or digit";

/// The ticker in `raw`, trimmed and upper-cased, when it follows [`TICKER_RULE`].
pub fn ticker(raw: &str) -> Option<String> {
    let ticker = raw.trim().to_ascii_uppercase();
    let valid = (1..=10).contains(&ticker.len())
        && ticker.starts_with(|c: char| c.is_ascii_alphanumeric())
        && ticker
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '.' || c == '-');
    valid.then_some(ticker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let at = DateTime::parse_from_rfc3339("2024-02-29T13:14:15.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(datetime(&timestamp(at)), Some(at));
        assert_eq!(
            datetime(&prost_types::Timestamp {
                seconds: 0,
                nanos: -1
            }),
            None
        );
    }

    #[test]
    fn page_sizes_and_tokens() {
        assert_eq!(page_size(0, 20, 100).unwrap(), 20);
        assert_eq!(page_size(100, 20, 100).unwrap(), 100);
        let err = page_size(101, 20, 100).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().starts_with("page_size:"), "{}", err.message());
        assert_eq!(page_after(&page_token("BRK.B")).unwrap(), "BRK.B");
        assert_eq!(page_after("").unwrap(), "");
        assert_eq!(
            page_after("%%%").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let id = uuid::Uuid::new_v4();
        assert_eq!(
            page_after_id(&page_token(&id.to_string())).unwrap(),
            Some(id)
        );
        assert_eq!(page_after_id("").unwrap(), None);
        let err = page_after_id(&page_token("BRK.B")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().starts_with("page_token:"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn the_next_page_token_names_the_last_row_kept() {
        let mut rows = vec![1, 2, 3];
        assert_eq!(next_page_token(&mut rows, 3, i32::to_string), "");
        assert_eq!(rows.len(), 3);
        let token = next_page_token(&mut rows, 2, i32::to_string);
        assert_eq!(rows, [1, 2]);
        assert_eq!(page_after(&token).unwrap(), "2");
    }

    #[test]
    fn tickers_are_normalised_and_checked() {
        assert_eq!(ticker(" brk.b ").as_deref(), Some("BRK.B"));
        assert_eq!(ticker("9984").as_deref(), Some("9984"));
        for bad in ["", "-X", ".A", "TOOLONGTICKER", "A B", "Ä"] {
            assert_eq!(ticker(bad), None, "{bad}");
        }
    }
}
