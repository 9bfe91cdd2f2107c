//! What a report holds, independent of its format: the numbers (JSON), one time-series table
//! (CSV) and the chart panels (PNG, SVG). Built from the read model and, for a model, from the
//! prediction service.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A report, ready to render.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub title: String,
    pub subject: SubjectView,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    /// Statistics per symbol (empyrical conventions, fractions).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statistics: Vec<StatisticsView>,
    /// Watchlists: trends at the end of the range.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trends: Vec<TrendView>,
    /// Watchlists: correlation of daily returns, in `subject.symbols` order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation: Option<Vec<Vec<Option<f64>>>>,
    /// Models: the scoreboard over the range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scoreboard: Option<ScoreboardView>,
    /// Requested tickers with no bars in the range.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// The time series, as in the CSV.
    pub table: Table,
    /// What the PNG and SVG show.
    pub chart: Chart,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubjectView {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub symbols: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatisticsView {
    pub symbol: String,
    pub benchmark: Option<String>,
    pub bars: usize,
    pub cumulative_return: f64,
    pub annual_return: Option<f64>,
    pub annual_volatility: Option<f64>,
    pub sharpe: Option<f64>,
    pub sortino: Option<f64>,
    pub max_drawdown: f64,
    pub max_drawdown_bars: u32,
    pub calmar: Option<f64>,
    pub beta: Option<f64>,
    pub alpha: Option<f64>,
    pub correlation: Option<f64>,
    pub value_at_risk_95: Option<f64>,
    pub conditional_value_at_risk_95: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrendView {
    pub symbol: String,
    pub close: f64,
    pub ma_regime: String,
    pub last_cross: String,
    pub momentum: Option<f64>,
    pub momentum_rank: u32,
    pub from_52w_high: f64,
    pub from_52w_low: f64,
    pub volatility: Option<f64>,
    pub volatility_regime: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScoreboardView {
    pub model: String,
    pub role: String,
    pub count: u64,
    pub pending: u64,
    pub mae: f64,
    pub rmse: f64,
    pub mase: Option<f64>,
    pub hit_rate: f64,
    pub coverage: f64,
    pub nominal_coverage: f64,
    pub pinball_loss: f64,
}

/// One cell of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Cell {
    Text(String),
    /// Absent values are empty in the CSV and `null` in the JSON.
    Number(Option<f64>),
}

impl Cell {
    pub fn number(v: f64) -> Self {
        Cell::Number(v.is_finite().then_some(v))
    }
}

/// The report's time series: one row per bar (or prediction), the first column the time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// An RGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Serialize for Rgb {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("#{:02X}{:02X}{:02X}", self.0, self.1, self.2))
    }
}

/// Distinct line colours (matplotlib's tab10), so each series can be found in the image.
pub const PALETTE: [Rgb; 10] = [
    Rgb(0x1F, 0x77, 0xB4),
    Rgb(0xFF, 0x7F, 0x0E),
    Rgb(0x2C, 0xA0, 0x2C),
    Rgb(0xD6, 0x27, 0x28),
    Rgb(0x94, 0x67, 0xBD),
    Rgb(0x8C, 0x56, 0x4B),
    Rgb(0xE3, 0x77, 0xC2),
    Rgb(0x7F, 0x7F, 0x7F),
    Rgb(0xBC, 0xBD, 0x22),
    Rgb(0x17, 0xBE, 0xCF),
];

/// A line of a panel; NaN values are gaps.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub name: String,
    pub color: Rgb,
    #[serde(skip)]
    pub values: Vec<f64>,
    /// Finite values drawn.
    pub points: usize,
}

impl Line {
    pub fn new(name: impl Into<String>, color: Rgb, values: Vec<f64>) -> Self {
        let points = values.iter().filter(|v| v.is_finite()).count();
        Self {
            name: name.into(),
            color,
            values,
            points,
        }
    }
}

/// A shaded region between two series (Bollinger bands, a forecast interval, a drawdown down
/// from zero), drawn translucent under the lines.
#[derive(Debug, Clone, Serialize)]
pub struct Band {
    pub name: String,
    pub color: Rgb,
    #[serde(skip)]
    pub lower: Vec<f64>,
    #[serde(skip)]
    pub upper: Vec<f64>,
}

/// One chart of the tear sheet, over its own time axis.
#[derive(Debug, Clone, Serialize)]
pub struct Panel {
    pub title: String,
    pub y_label: String,
    #[serde(skip)]
    pub x: Vec<DateTime<Utc>>,
    pub bands: Vec<Band>,
    pub lines: Vec<Line>,
    /// Draw a horizontal line at zero (drawdowns, ratios).
    pub zero_line: bool,
    /// The values are fractions, labelled as percent on the axis (drawdowns: -0.5 is -50 %).
    pub percent: bool,
}

/// The tear sheet: panels stacked under a title, `width × height` pixels (the SVG's user
/// units and the PNG's pixels are the same).
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub panels: Vec<Panel>,
}

/// Width of every tear sheet.
pub const WIDTH: u32 = 1200;
/// Height of the title strip.
pub const HEADER: u32 = 60;
/// Height of each panel.
pub const PANEL: u32 = 360;

impl Chart {
    pub fn new(panels: Vec<Panel>) -> Self {
        Self {
            width: WIDTH,
            height: HEADER + PANEL * panels.len() as u32,
            panels,
        }
    }
}
