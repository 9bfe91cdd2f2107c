//! Bars of the read model and columns of them for the numerics.

use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::stock::v1 as stock;

use super::{DomainError, Symbol};
use crate::indicators;

/// A bar interval; unspecified on the wire means one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeframe(stock::Timeframe);

impl Timeframe {
    pub const DAY: Timeframe = Timeframe(stock::Timeframe::OneDay);

    pub fn from_wire(field: &'static str, value: i32) -> Result<Self, DomainError> {
        match stock::Timeframe::try_from(value) {
            Ok(stock::Timeframe::Unspecified) => Ok(Self::DAY),
            Ok(tf) => Ok(Self(tf)),
            Err(_) => Err(DomainError::new(
                field,
                format!("{value} is not a timeframe"),
            )),
        }
    }

    /// The number stored in the database and sent on the wire.
    pub fn code(self) -> i32 {
        self.0.into()
    }

    pub fn is_daily(self) -> bool {
        self == Self::DAY
    }

    pub fn name(self) -> &'static str {
        self.0.as_str_name()
    }
}

/// One OHLCV bar, checked: finite prices above zero, a finite volume of at least zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub symbol: Symbol,
    pub timeframe: Timeframe,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub vwap: Option<f64>,
    pub trade_count: Option<i64>,
}

impl Bar {
    /// A bar from stock-data (an event or a `GetBars` page).
    pub fn from_wire(bar: &stock::Bar) -> Result<Self, DomainError> {
        let symbol = Symbol::parse("bar.symbol", &bar.symbol)?;
        let timeframe = Timeframe::from_wire("bar.timeframe", bar.timeframe)?;
        let start = bar
            .start
            .as_ref()
            .and_then(wire::datetime)
            .ok_or_else(|| DomainError::new("bar.start", "is missing or invalid"))?;
        for (field, value) in [
            ("bar.open", bar.open),
            ("bar.high", bar.high),
            ("bar.low", bar.low),
            ("bar.close", bar.close),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(DomainError::new(
                    field,
                    format!("must be a positive price, got {value}"),
                ));
            }
        }
        if !(bar.volume.is_finite() && bar.volume >= 0.0) {
            return Err(DomainError::new(
                "bar.volume",
                format!("must be finite and ≥ 0, got {}", bar.volume),
            ));
        }
        Ok(Self {
            symbol,
            timeframe,
            start,
            end: bar.end.as_ref().and_then(wire::datetime),
            open: bar.open,
            high: bar.high,
            low: bar.low,
            close: bar.close,
            volume: bar.volume,
            vwap: bar.vwap.filter(|v| v.is_finite()),
            trade_count: bar.trade_count.and_then(|n| i64::try_from(n).ok()),
        })
    }
}

/// Bars of one symbol and timeframe as columns, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BarSeries {
    pub start: Vec<DateTime<Utc>>,
    pub open: Vec<f64>,
    pub high: Vec<f64>,
    pub low: Vec<f64>,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
}

impl BarSeries {
    pub fn len(&self) -> usize {
        self.start.len()
    }

    pub fn is_empty(&self) -> bool {
        self.start.is_empty()
    }

    pub fn push(&mut self, start: DateTime<Utc>, ohlcv: [f64; 5]) {
        let [o, h, l, c, v] = ohlcv;
        self.start.push(start);
        self.open.push(o);
        self.high.push(h);
        self.low.push(l);
        self.close.push(c);
        self.volume.push(v);
    }

    /// The columns for the indicators.
    pub fn bars(&self) -> indicators::Result<indicators::Bars<'_>> {
        indicators::Bars::new(&self.high, &self.low, &self.close, &self.volume)
    }

    /// The first index whose bar starts at or after `at`.
    pub fn index_at(&self, at: DateTime<Utc>) -> usize {
        self.start.partition_point(|s| *s < at)
    }

    /// The bars from index `from` on.
    pub fn tail(&self, from: usize) -> BarSeries {
        BarSeries {
            start: self.start[from..].to_vec(),
            open: self.open[from..].to_vec(),
            high: self.high[from..].to_vec(),
            low: self.low[from..].to_vec(),
            close: self.close[from..].to_vec(),
            volume: self.volume[from..].to_vec(),
        }
    }

    /// Simple returns close-to-close, one fewer than the bars.
    pub fn returns(&self) -> Vec<f64> {
        self.close.windows(2).map(|w| w[1] / w[0] - 1.0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_bar(close: f64) -> stock::Bar {
        stock::Bar {
            symbol: "aapl".into(),
            timeframe: 0,
            start: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            open: close,
            high: close,
            low: close,
            close,
            volume: 10.0,
            ..Default::default()
        }
    }

    #[test]
    fn bars_are_checked_and_normalised() {
        let bar = Bar::from_wire(&wire_bar(10.0)).unwrap();
        assert_eq!(bar.symbol.as_str(), "AAPL");
        assert_eq!(bar.timeframe, Timeframe::DAY);
        for bad in [0.0, -1.0, f64::NAN] {
            assert_eq!(
                Bar::from_wire(&wire_bar(bad)).unwrap_err().field,
                "bar.open"
            );
        }
        let mut no_start = wire_bar(1.0);
        no_start.start = None;
        assert_eq!(Bar::from_wire(&no_start).unwrap_err().field, "bar.start");
    }

    #[test]
    fn series_slices_by_time() {
        let mut s = BarSeries::default();
        for (i, c) in [10.0, 11.0, 12.1].into_iter().enumerate() {
            s.push(
                DateTime::from_timestamp(i as i64 * 10, 0).unwrap(),
                [c, c, c, c, 1.0],
            );
        }
        assert_eq!(s.index_at(DateTime::from_timestamp(5, 0).unwrap()), 1);
        assert_eq!(s.tail(1).close, vec![11.0, 12.1]);
        let r = s.returns();
        assert_eq!(r.len(), 2);
        assert!((r[0] - 0.1).abs() < 1e-12);
    }
}
