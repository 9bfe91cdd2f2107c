//! Small conversions the route modules share: comma-separated query values, enum names in
//! query strings and in upstream answers, and upstream timestamps.

use chrono::{DateTime, Utc};
use mirai_platform::wire;
use serde::Deserialize;

use crate::problem::Problem;

/// An upstream's optional timestamp as a time (absent or out of range → `None`).
pub fn time(ts: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    ts.as_ref().and_then(wire::datetime)
}

/// The non-empty, trimmed items of a comma-separated query value (none when absent).
pub fn items(raw: Option<&str>) -> impl Iterator<Item = &str> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Parses a snake_case enum name the way serde does (query strings carry plain text).
pub fn parse_name<T: for<'de> Deserialize<'de>>(field: &str, raw: &str) -> Result<T, Problem> {
    serde_json::from_value(serde_json::Value::String(raw.trim().to_owned()))
        .map_err(|_| Problem::invalid(format!("{field}: unknown value {raw:?}")))
}

/// A proto enum value's name without its prefix, lower case: `MA_REGIME_BULLISH` → `bullish`.
pub fn enum_name(str_name: Option<&str>, prefix: &str) -> String {
    str_name
        .map(|n| n.trim_start_matches(prefix).to_ascii_lowercase())
        .unwrap_or_else(|| "unspecified".to_owned())
}

/// The adjustment basis of bars on the wire as the API names it: `raw`, `split`, `all`.
pub fn adjustment_name(value: i32) -> String {
    use mirai_proto::stock::v1::Adjustment;
    enum_name(
        Adjustment::try_from(value).ok().map(|a| a.as_str_name()),
        "ADJUSTMENT_",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_skip_blanks_and_trim() {
        assert_eq!(items(Some(" a, ,b,")).collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(items(None).count(), 0);
    }

    #[test]
    fn enum_names_lose_their_prefix() {
        assert_eq!(
            adjustment_name(mirai_proto::stock::v1::Adjustment::Split as i32),
            "split"
        );
        assert_eq!(adjustment_name(99), "unspecified");
    }
}
