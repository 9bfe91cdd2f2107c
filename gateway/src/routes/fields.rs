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

/// Serializes an optional time exactly as chrono's `Serialize` does (RFC 3339 with `Z`,
/// fractional seconds only when present), formatted into one string first: chrono's own impl
/// goes through `collect_str`, and serde_json escapes each of the many small pieces the
/// formatter writes (a tenth of the gateway's CPU on a page of bars). For hot, large answers;
/// `#[serde(serialize_with = "fields::rfc3339")]`.
pub fn rfc3339<S: serde::Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => {
            serializer.serialize_str(&time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }
        None => serializer.serialize_none(),
    }
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
    fn times_serialize_as_chrono_serializes_them() {
        #[derive(serde::Serialize)]
        struct Ours(#[serde(serialize_with = "rfc3339")] Option<DateTime<Utc>>);
        for text in [
            "2019-01-02T14:30:00Z",
            "2019-01-02T14:30:00.5Z",
            "2019-01-02T14:30:00.123Z",
            "2019-01-02T14:30:00.000123Z",
            "2019-01-02T14:30:00.000000001Z",
            "1969-12-31T23:59:59.999Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            let time = Some(text.parse::<DateTime<Utc>>().unwrap());
            assert_eq!(
                serde_json::to_string(&Ours(time)).unwrap(),
                serde_json::to_string(&time).unwrap(),
                "{text}"
            );
        }
        assert_eq!(serde_json::to_string(&Ours(None)).unwrap(), "null");
    }

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
