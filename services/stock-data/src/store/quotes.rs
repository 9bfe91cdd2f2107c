//! The daily bars a quote is built from.

use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::stock::v1 as pb;
use sqlx::PgPool;

/// A stored daily bar, as a quote needs it.
pub struct DayRow {
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub source: String,
}

impl DayRow {
    /// The row as a daily bar of `symbol`.
    pub fn bar(&self, symbol: &str) -> pb::Bar {
        pb::Bar {
            symbol: symbol.to_owned(),
            timeframe: pb::Timeframe::OneDay.into(),
            start: Some(wire::timestamp(self.start_at)),
            end: Some(wire::timestamp(self.end_at)),
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.volume,
            source_bar_count: 1,
            complete: true,
            ..Default::default()
        }
    }
}

/// The two latest daily bars of `symbol`, newest first.
pub async fn latest_days(pool: &PgPool, symbol: &str) -> Result<Vec<DayRow>, sqlx::Error> {
    sqlx::query_as!(
        DayRow,
        "SELECT start_at, end_at, open, high, low, close, volume, source FROM bars
             WHERE symbol = $1 AND timeframe = $2 ORDER BY start_at DESC LIMIT 2",
        symbol,
        pb::Timeframe::OneDay as i16,
    )
    .fetch_all(pool)
    .await
}
