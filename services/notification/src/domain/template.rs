//! Alert message templates: text with `{{placeholder}}`s from a fixed set.
//!
//! User-written templates are deliberately not a template language (no loops, filters or
//! expressions that could be abused or fail at fire time): a template is parsed once when the
//! alert is stored, unknown placeholders are refused then, and rendering cannot fail.

use std::collections::HashMap;

/// Every placeholder a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "symbol",
    "price",
    "trigger_price",
    "close",
    "time",
    "condition",
    "name",
    "p_up",
    "lower",
    "upper",
];

/// Longest template, in characters.
pub const MAX_LEN: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Placeholder(&'static str),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Why a template is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("at most {MAX_LEN} characters")]
    TooLong,
    #[error("control characters other than line breaks and tabs are not allowed")]
    Control,
    #[error("unknown placeholder {{{{{0}}}}} (known: {known})", known = PLACEHOLDERS.join(", "))]
    Unknown(String),
    #[error("`{{{{` without a closing `}}}}`")]
    Unclosed,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        if text.chars().count() > MAX_LEN {
            return Err(TemplateError::TooLong);
        }
        // Line breaks and tabs are text; NUL and the other C0 controls are not (PostgreSQL
        // cannot store NUL in `text` at all).
        if text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(TemplateError::Control);
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or(TemplateError::Unclosed)?;
            let name = after[..close].trim();
            let known = PLACEHOLDERS
                .iter()
                .find(|p| **p == name)
                .ok_or_else(|| TemplateError::Unknown(name.to_owned()))?;
            parts.push(Part::Placeholder(known));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// Renders with `values`; a placeholder without a value (e.g. `{{p_up}}` on a price
    /// alert) renders as `n/a`.
    pub fn render(&self, values: &HashMap<&'static str, String>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Placeholder(p) => match values.get(p) {
                    Some(v) => out.push_str(v),
                    None => out.push_str("n/a"),
                },
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled() {
        let t = Template::parse("{{symbol}} hit {{ price }} at {{time}} ({{p_up}})").unwrap();
        let values = HashMap::from([
            ("symbol", "AAPL".to_owned()),
            ("price", "150.12".to_owned()),
            ("time", "2026-01-02T15:04:05Z".to_owned()),
        ]);
        assert_eq!(
            t.render(&values),
            "AAPL hit 150.12 at 2026-01-02T15:04:05Z (n/a)"
        );
    }

    #[test]
    fn bad_templates_are_refused_at_parse_time() {
        assert_eq!(
            Template::parse("{{volume}}").unwrap_err(),
            TemplateError::Unknown("volume".into())
        );
        assert!(
            Template::parse("{{volume}}")
                .unwrap_err()
                .to_string()
                .starts_with("unknown placeholder {{volume}}")
        );
        assert_eq!(
            Template::parse("oops {{symbol").unwrap_err(),
            TemplateError::Unclosed
        );
        assert_eq!(
            Template::parse(&"x".repeat(1001)).unwrap_err(),
            TemplateError::TooLong
        );
        assert_eq!(
            Template::parse("nul \u{0} here").unwrap_err(),
            TemplateError::Control
        );
        assert!(Template::parse("two\nlines\tand a tab").is_ok());
        assert_eq!(
            Template::parse("plain text, no braces }}")
                .unwrap()
                .render(&HashMap::new()),
            "plain text, no braces }}"
        );
    }
}
