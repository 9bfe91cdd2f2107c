//! Profile fields: display name, time zone, locale, watchlist.

use std::collections::BTreeSet;

use crate::error::{Error, Result};

/// Display name: 1–100 characters after trimming.
pub fn display_name(raw: &str, field: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty() || !mirai_platform::wire::is_plain_text(name, 100) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
