//! The options of a bulk import.

use mirai_proto::stock::v1 as pb;

use super::{DomainError, Ticker};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// The file's format.
pub enum Format {
    Csv,
    Ndjson,
}

/// Validated import options.
#[derive(Debug, Clone)]
pub struct Options {
    pub format: Format,
    pub timeframe: pb::Timeframe,
    pub source: String,
    pub default_symbol: Option<Ticker>,
    pub time_zone: Option<String>,
    pub dry_run: bool,
}

impl Options {
    pub fn parse(options: &pb::ImportOptions) -> Result<Self, DomainError> {
        let format = match pb::ImportFormat::try_from(options.format) {
            Ok(pb::ImportFormat::Csv) => Format::Csv,
            Ok(pb::ImportFormat::Ndjson) => Format::Ndjson,
            _ => {
                return Err(DomainError::invalid(
                    "options.format",
                    "required: CSV or NDJSON",
                ));
            }
        };
        let timeframe = match pb::Timeframe::try_from(options.timeframe) {
            Ok(pb::Timeframe::Unspecified) => pb::Timeframe::OneDay,
            Ok(timeframe) => timeframe,
            Err(_) => {
                return Err(DomainError::invalid(
                    "options.timeframe",
                    "unknown timeframe",
                ));
            }
        };
        if !matches!(
            pb::Adjustment::try_from(options.adjustment),
            Ok(pb::Adjustment::Unspecified | pb::Adjustment::Raw)
        ) {
            return Err(DomainError::Unsupported(
                "only raw (unadjusted) bars can be imported: no corporate actions are stored to relate other bases"
                    .into(),
            ));
        }
        let source = match options.source.trim() {
            "" => "import".to_owned(),
            s if s.len() <= 32 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
                s.to_ascii_lowercase()
            }
            _ => {
                return Err(DomainError::invalid(
                    "options.source",
                    "at most 32 letters, digits or '-'",
                ));
            }
        };
        let default_symbol = match options.default_symbol.trim() {
            "" => None,
            raw => Some(Ticker::parse(raw).map_err(|_| {
                DomainError::invalid("options.default_symbol", format!("`{raw}` is not a ticker"))
            })?),
        };
        Ok(Self {
            format,
            timeframe,
            source,
            default_symbol,
            time_zone: Some(options.time_zone.trim().to_owned()).filter(|tz| !tz.is_empty()),
            dry_run: options.dry_run,
        })
    }

    /// Whether the bars are shorter than a day (a timestamp, not a date, starts them).
    pub fn intraday(&self) -> bool {
        !matches!(
            self.timeframe,
            pb::Timeframe::OneDay | pb::Timeframe::OneWeek | pb::Timeframe::OneMonth
        )
    }
}
