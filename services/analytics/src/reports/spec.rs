//! What a report job is about, parsed from `CreateReportRequest`.

use chrono::{DateTime, Duration, Utc};
use mirai_proto::analytics::v1 as pb;
use mirai_proto::prediction::v1 as prediction;

use crate::domain::{DomainError, Range, Symbol};
use crate::error::{Error, Result};

/// The subject of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Symbol(Symbol),
    /// 1–100 distinct tickers, in the user's order.
    Watchlist(Vec<Symbol>),
    Model {
        name: String,
        version: String,
    },
}

impl Subject {
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Symbol(_) => "symbol",
            Subject::Watchlist(_) => "watchlist",
            Subject::Model { .. } => "model",
        }
    }

    pub fn from_wire(subject: Option<&pb::ReportSubject>) -> Result<Self, DomainError> {
        use pb::report_subject::Subject as S;
        match subject.and_then(|s| s.subject.as_ref()) {
            None => Err(DomainError::new(
                "subject",
                "is required: a symbol, a watchlist or a model",
            )),
            Some(S::Symbol(raw)) => Ok(Subject::Symbol(Symbol::parse("subject.symbol", raw)?)),
            Some(S::Watchlist(list)) => {
                if list.symbols.is_empty() || list.symbols.len() > 100 {
                    return Err(DomainError::new(
                        "subject.watchlist.symbols",
                        format!("must hold 1 to 100 tickers, got {}", list.symbols.len()),
                    ));
                }
                let mut symbols: Vec<Symbol> = Vec::with_capacity(list.symbols.len());
                for raw in &list.symbols {
                    let symbol = Symbol::parse("subject.watchlist.symbols", raw)?;
                    if !symbols.contains(&symbol) {
                        symbols.push(symbol);
                    }
                }
                Ok(Subject::Watchlist(symbols))
            }
            Some(S::Model(model)) => {
                let ok = |s: &str| {
                    (1..=64).contains(&s.len())
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                };
                if !ok(&model.name) || !ok(&model.version) {
                    return Err(DomainError::new(
                        "subject.model",
                        "needs a name and a version (letters, digits, '.', '-', '_')",
                    ));
                }
                Ok(Subject::Model {
                    name: model.name.clone(),
                    version: model.version.clone(),
                })
            }
        }
    }

    pub fn to_wire(&self) -> pb::ReportSubject {
        use pb::report_subject::Subject as S;
        pb::ReportSubject {
            subject: Some(match self {
                Subject::Symbol(s) => S::Symbol(s.to_string()),
                Subject::Watchlist(list) => S::Watchlist(pb::Watchlist {
                    symbols: list.iter().map(Symbol::to_string).collect(),
                }),
                Subject::Model { name, version } => S::Model(prediction::ModelRef {
                    name: name.clone(),
                    version: version.clone(),
                }),
            }),
        }
    }

    /// Tickers of the subject (none for a model).
    pub fn symbols(&self) -> Vec<String> {
        match self {
            Subject::Symbol(s) => vec![s.to_string()],
            Subject::Watchlist(list) => list.iter().map(Symbol::to_string).collect(),
            Subject::Model { .. } => Vec::new(),
        }
    }

    /// Short label for titles and file names.
    pub fn label(&self) -> String {
        match self {
            Subject::Symbol(s) => s.to_string(),
            Subject::Watchlist(list) if list.len() <= 3 => list
                .iter()
                .map(Symbol::to_string)
                .collect::<Vec<_>>()
                .join("-"),
            Subject::Watchlist(list) => format!("watchlist-{}", list.len()),
            Subject::Model { name, version } => format!("{name}-{version}"),
        }
    }
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    Json,
    Csv,
    Png,
    Svg,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Json, Format::Csv, Format::Png, Format::Svg];

    pub fn from_wire(field: &'static str, value: i32) -> Result<Self, DomainError> {
        match pb::ReportFormat::try_from(value) {
            Ok(pb::ReportFormat::Json) => Ok(Format::Json),
            Ok(pb::ReportFormat::Csv) => Ok(Format::Csv),
            Ok(pb::ReportFormat::Png) => Ok(Format::Png),
            Ok(pb::ReportFormat::Svg) => Ok(Format::Svg),
            _ => Err(DomainError::new(
                field,
                format!("{value} is not a report format (JSON, CSV, PNG or SVG)"),
            )),
        }
    }

    pub fn to_wire(self) -> pb::ReportFormat {
        match self {
            Format::Json => pb::ReportFormat::Json,
            Format::Csv => pb::ReportFormat::Csv,
            Format::Png => pb::ReportFormat::Png,
            Format::Svg => pb::ReportFormat::Svg,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Png => "image/png",
            Format::Svg => "image/svg+xml",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Png => "png",
            Format::Svg => "svg",
        }
    }
}

/// A valid report request.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub subject: Subject,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub formats: Vec<Format>,
    pub benchmark: Option<Symbol>,
    pub title: String,
}

impl Spec {
    /// Parses a request; `now` is the default end.
    pub fn from_wire(r: &pb::CreateReportRequest, now: DateTime<Utc>) -> Result<Self> {
        let subject = Subject::from_wire(r.subject.as_ref())?;
        let range = Range::from_wire(r.start.as_ref(), r.end.as_ref())?;
        let end = range.end.unwrap_or(now);
        let start = range.start.unwrap_or(end - Duration::days(5 * 365));
        if end <= start {
            return Err(Error::invalid(
                "start",
                "must be before end (the range is inverted)",
            ));
        }
        let mut formats = r
            .formats
            .iter()
            .map(|f| Format::from_wire("formats", *f))
            .collect::<Result<Vec<_>, _>>()?;
        formats.sort();
        formats.dedup();
        if formats.is_empty() {
            formats = Format::ALL.to_vec();
        }
        let benchmark = match r.benchmark.trim() {
            "" => None,
            raw => Some(Symbol::parse("benchmark", raw)?),
        };
        let title = match r.title.trim() {
            "" => format!(
                "{} {} – {}",
                subject.label(),
                start.format("%Y-%m-%d"),
                end.format("%Y-%m-%d")
            ),
            t if !mirai_platform::wire::is_plain_text(t, 200) => {
                return Err(Error::invalid(
                    "title",
                    "must be at most 200 characters without control characters",
                ));
            }
            t => t.to_owned(),
        };
        Ok(Self {
            subject,
            start,
            end,
            formats,
            benchmark,
            title,
        })
    }

    /// `AAPL-2019-2020.png`.
    pub fn file_name(&self, format: Format) -> String {
        format!(
            "{}-{}-{}.{}",
            self.subject.label(),
            self.start.format("%Y%m%d"),
            self.end.format("%Y%m%d"),
            format.extension()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(subject: pb::report_subject::Subject) -> pb::CreateReportRequest {
        pb::CreateReportRequest {
            subject: Some(pb::ReportSubject {
                subject: Some(subject),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_fill_the_range_formats_and_title() {
        let now = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let spec = Spec::from_wire(
            &request(pb::report_subject::Subject::Symbol("aapl".into())),
            now,
        )
        .unwrap();
        assert_eq!(spec.end, now);
        assert_eq!(spec.start, now - Duration::days(1825));
        assert_eq!(spec.formats, Format::ALL.to_vec());
        assert_eq!(spec.title, "AAPL 2019-01-02 – 2024-01-01");
        assert_eq!(spec.file_name(Format::Png), "AAPL-20190102-20240101.png");
    }

    #[test]
    fn bad_requests_name_the_field() {
        let now = Utc::now();
        let mut r = request(pb::report_subject::Subject::Watchlist(pb::Watchlist {
            symbols: vec![],
        }));
        let err = Spec::from_wire(&r, now).unwrap_err().to_string();
        assert!(err.starts_with("subject.watchlist.symbols:"), "{err}");
        r = request(pb::report_subject::Subject::Symbol("X".into()));
        r.formats = vec![99];
        assert!(
            Spec::from_wire(&r, now)
                .unwrap_err()
                .to_string()
                .starts_with("formats:")
        );
        r.formats = vec![];
        r.start = Some(mirai_platform::wire::timestamp(now));
        r.end = Some(mirai_platform::wire::timestamp(now - Duration::days(1)));
        assert!(
            Spec::from_wire(&r, now)
                .unwrap_err()
                .to_string()
                .starts_with("end:")
        );
        assert!(
            Spec::from_wire(&pb::CreateReportRequest::default(), now)
                .unwrap_err()
                .to_string()
                .starts_with("subject:")
        );
    }
}
