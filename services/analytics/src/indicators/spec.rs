//! [`Indicator`]: what a user asks for (a name and parameters), parsed once into a value that
//! can only hold a valid request, then computed over [`Bars`].
//!
//! ```
//! use mirai_analytics::indicators::{Bars, Indicator, Params};
//!
//! let rsi = Indicator::parse("rsi", &Params::new().with("period", 14))?;
//! assert_eq!(rsi.lookback(), 14);
//! let close: Vec<f64> = (0..30).map(|i| 100.0 + f64::from(i % 7)).collect();
//! let out = rsi.compute(&Bars::close_only(&close)?)?;
//! assert_eq!(out.series[0].name, "value");
//! assert!(out.series[0].values[13].is_nan() && !out.series[0].values[14].is_nan());
//! # Ok::<(), mirai_analytics::indicators::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;

use super::bands::{self, bbands};
use super::momentum::{StochParams, adx, cci, macd, mfi, rsi, stoch};
use super::moving_average::{MaType, dema, ema, sma, tema, wma};
use super::returns::{log_returns, returns};
use super::volatility::{atr, natr};
use super::volume::obv;
use super::{Error, MAX_PERIOD, Result, check_finite, check_len};

/// Every indicator name [`Indicator::parse`] knows, in the order of the documentation.
pub const NAMES: &[&str] = &[
    "sma",
    "ema",
    "wma",
    "dema",
    "tema",
    "bbands",
    "rsi",
    "macd",
    "stoch",
    "adx",
    "cci",
    "mfi",
    "obv",
    "atr",
    "natr",
    "returns",
    "log_returns",
];

/// One parameter value as it arrives from a request: a JSON number or a query-string text.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// A number (periods must be whole numbers).
    Number(f64),
    /// Text: a number to be parsed ("14") or a name ("ema").
    Text(String),
}

impl From<f64> for ParamValue {
    fn from(v: f64) -> Self {
        ParamValue::Number(v)
    }
}

impl From<i32> for ParamValue {
    fn from(v: i32) -> Self {
        ParamValue::Number(f64::from(v))
    }
}

impl From<u32> for ParamValue {
    fn from(v: u32) -> Self {
        ParamValue::Number(f64::from(v))
    }
}

impl From<&str> for ParamValue {
    fn from(v: &str) -> Self {
        ParamValue::Text(v.to_owned())
    }
}

impl From<String> for ParamValue {
    fn from(v: String) -> Self {
        ParamValue::Text(v)
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Number(v) => write!(f, "{v}"),
            ParamValue::Text(t) => write!(f, "\"{t}\""),
        }
    }
}

/// Named parameters of a request. Names are case-sensitive snake_case (`period`,
/// `fast_period`, ...); a missing parameter takes TA-Lib's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(BTreeMap<String, ParamValue>);

impl Params {
    /// No parameters: every default.
    pub fn new() -> Self {
        Params::default()
    }

    /// Adds (or replaces) one parameter.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<ParamValue>) -> Self {
        self.insert(name, value);
        self
    }

    /// Adds (or replaces) one parameter.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<ParamValue>) {
        self.0.insert(name.into(), value.into());
    }

    /// The parameters, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl<K: Into<String>, V: Into<ParamValue>> FromIterator<(K, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Params(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// A valid indicator request. Build it with [`Indicator::parse`] from user input, or directly
/// in code (then [`Indicator::compute`] still rejects out-of-range parameters).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Indicator {
    /// Simple moving average of the close.
    Sma { period: usize },
    /// Exponential moving average of the close.
    Ema { period: usize },
    /// Weighted moving average of the close.
    Wma { period: usize },
    /// Double exponential moving average of the close.
    Dema { period: usize },
    /// Triple exponential moving average of the close.
    Tema { period: usize },
    /// Bollinger bands of the close.
    Bbands {
        period: usize,
        nbdev_up: f64,
        nbdev_dn: f64,
        ma_type: MaType,
    },
    /// Relative strength index of the close.
    Rsi { period: usize },
    /// MACD of the close.
    Macd {
        fast_period: usize,
        slow_period: usize,
        signal_period: usize,
    },
    /// Slow stochastic.
    Stoch(StochParams),
    /// Average directional index.
    Adx { period: usize },
    /// Commodity channel index.
    Cci { period: usize },
    /// Money flow index.
    Mfi { period: usize },
    /// On-balance volume.
    Obv,
    /// Average true range.
    Atr { period: usize },
    /// Normalised average true range (percent of the close).
    Natr { period: usize },
    /// Simple returns of the close over `period` bars.
    Returns { period: usize },
    /// Log returns of the close over `period` bars.
    LogReturns { period: usize },
}

/// One named output line of an indicator, aligned to the bars (NaN during the lookback).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// `value` for single-line indicators; `upper`/`middle`/`lower`, `macd`/`signal`/`hist`,
    /// `slowk`/`slowd` otherwise.
    pub name: &'static str,
    /// One value per bar.
    pub values: Vec<f64>,
}

/// What [`Indicator::compute`] returns: the output lines in a fixed order.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The lines, in the order of [`Indicator::output_names`].
    pub series: Vec<Series>,
}

impl Output {
    /// The line called `name`, if the indicator has one.
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        self.series
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.values.as_slice())
    }
}

/// The price and volume columns of a run of bars, oldest first, checked once: equal lengths,
/// every value finite.
#[derive(Debug, Clone, Copy)]
pub struct Bars<'a> {
    high: &'a [f64],
    low: &'a [f64],
    close: &'a [f64],
    volume: &'a [f64],
}

impl<'a> Bars<'a> {
    /// Checks the columns and wraps them.
    pub fn new(
        high: &'a [f64],
        low: &'a [f64],
        close: &'a [f64],
        volume: &'a [f64],
    ) -> Result<Self> {
        const NAME: &str = "bars";
        let n = close.len();
        check_len(NAME, "high", n, high)?;
        check_len(NAME, "low", n, low)?;
        check_len(NAME, "volume", n, volume)?;
        check_finite(NAME, "high", high)?;
        check_finite(NAME, "low", low)?;
        check_finite(NAME, "close", close)?;
        check_finite(NAME, "volume", volume)?;
        Ok(Bars {
            high,
            low,
            close,
            volume,
        })
    }

    /// Bars with only closes known: high = low = close and no volume. Enough for every
    /// close-based indicator; high/low/volume indicators then compute on the close alone.
    pub fn close_only(close: &'a [f64]) -> Result<Self> {
        check_finite("bars", "close", close)?;
        Ok(Bars {
            high: close,
            low: close,
            close,
            volume: &[],
        })
    }

    /// Number of bars.
    pub fn len(&self) -> usize {
        self.close.len()
    }

    /// Whether there are no bars.
    pub fn is_empty(&self) -> bool {
        self.close.is_empty()
    }

    /// Highs.
    pub fn high(&self) -> &'a [f64] {
        self.high
    }

    /// Lows.
    pub fn low(&self) -> &'a [f64] {
        self.low
    }

    /// Closes.
    pub fn close(&self) -> &'a [f64] {
        self.close
    }

    /// Volumes (empty for [`Bars::close_only`]).
    pub fn volume(&self) -> &'a [f64] {
        self.volume
    }
}

impl Indicator {
    /// Parses a request: `name` is one of [`NAMES`] (case-insensitive), `params` the
    /// indicator's parameters, each optional with TA-Lib's default:
    ///
    /// | name | parameters (default) |
    /// |---|---|
    /// | sma, ema, wma, dema, tema | period (30) |
    /// | bbands | period (5), nbdev_up (2), nbdev_dn (2), ma_type ("sma") |
    /// | rsi | period (14) |
    /// | macd | fast_period (12), slow_period (26), signal_period (9) |
    /// | stoch | fastk_period (5), slowk_period (3), slowk_ma_type ("sma"), slowd_period (3), slowd_ma_type ("sma") |
    /// | adx, mfi, atr, natr | period (14) |
    /// | cci | period (14) |
    /// | obv | none |
    /// | returns, log_returns | period (1) |
    ///
    /// `ma_type` is one of [`MaType::NAMES`] or TA-Lib's code 0..=4. Unknown names, unknown
    /// parameters, non-integer or out-of-range periods and MACD's fast ≥ slow are errors.
    pub fn parse(name: &str, params: &Params) -> Result<Indicator> {
        let key = name.trim().to_ascii_lowercase();
        let Some(&name) = NAMES.iter().find(|n| **n == key) else {
            return Err(Error::UnknownIndicator {
                name: name.to_owned(),
            });
        };
        let mut p = Reader::new(name, params);
        let indicator = match name {
            "sma" => Indicator::Sma {
                period: p.period("period", 30, 1)?,
            },
            "ema" => Indicator::Ema {
                period: p.period("period", 30, 1)?,
            },
            "wma" => Indicator::Wma {
                period: p.period("period", 30, 1)?,
            },
            "dema" => Indicator::Dema {
                period: p.period("period", 30, 1)?,
            },
            "tema" => Indicator::Tema {
                period: p.period("period", 30, 1)?,
            },
            "bbands" => Indicator::Bbands {
                period: p.period("period", 5, 2)?,
                nbdev_up: p.number("nbdev_up", 2.0)?,
                nbdev_dn: p.number("nbdev_dn", 2.0)?,
                ma_type: p.ma_type("ma_type")?,
            },
            "rsi" => Indicator::Rsi {
                period: p.period("period", 14, 2)?,
            },
            "macd" => {
                let fast_period = p.period("fast_period", 12, 2)?;
                let slow_period = p.period("slow_period", 26, 2)?;
                let signal_period = p.period("signal_period", 9, 1)?;
                if fast_period >= slow_period {
                    return Err(Error::InvalidParameter {
                        indicator: "macd",
                        parameter: "fast_period",
                        reason: format!(
                            "must be shorter than slow_period ({fast_period} ≥ {slow_period})"
                        ),
                    });
                }
                Indicator::Macd {
                    fast_period,
                    slow_period,
                    signal_period,
                }
            }
            "stoch" => Indicator::Stoch(StochParams {
                fastk_period: p.period("fastk_period", 5, 1)?,
                slowk_period: p.period("slowk_period", 3, 1)?,
                slowk_ma: p.ma_type("slowk_ma_type")?,
                slowd_period: p.period("slowd_period", 3, 1)?,
                slowd_ma: p.ma_type("slowd_ma_type")?,
            }),
            "adx" => Indicator::Adx {
                period: p.period("period", 14, 2)?,
            },
            "cci" => Indicator::Cci {
                period: p.period("period", 14, 2)?,
            },
            "mfi" => Indicator::Mfi {
                period: p.period("period", 14, 2)?,
            },
            "obv" => Indicator::Obv,
            "atr" => Indicator::Atr {
                period: p.period("period", 14, 1)?,
            },
            "natr" => Indicator::Natr {
                period: p.period("period", 14, 1)?,
            },
            "returns" => Indicator::Returns {
                period: p.period("period", 1, 1)?,
            },
            "log_returns" => Indicator::LogReturns {
                period: p.period("period", 1, 1)?,
            },
            _ => unreachable!("every name in NAMES has an arm"),
        };
        p.finish()?;
        Ok(indicator)
    }

    /// The canonical name (one of [`NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            Indicator::Sma { .. } => "sma",
            Indicator::Ema { .. } => "ema",
            Indicator::Wma { .. } => "wma",
            Indicator::Dema { .. } => "dema",
            Indicator::Tema { .. } => "tema",
            Indicator::Bbands { .. } => "bbands",
            Indicator::Rsi { .. } => "rsi",
            Indicator::Macd { .. } => "macd",
            Indicator::Stoch(_) => "stoch",
            Indicator::Adx { .. } => "adx",
            Indicator::Cci { .. } => "cci",
            Indicator::Mfi { .. } => "mfi",
            Indicator::Obv => "obv",
            Indicator::Atr { .. } => "atr",
            Indicator::Natr { .. } => "natr",
            Indicator::Returns { .. } => "returns",
            Indicator::LogReturns { .. } => "log_returns",
        }
    }

    /// The names of the output lines, in [`Output`] order.
    pub fn output_names(&self) -> &'static [&'static str] {
        match self {
            Indicator::Bbands { .. } => &["upper", "middle", "lower"],
            Indicator::Macd { .. } => &["macd", "signal", "hist"],
            Indicator::Stoch(_) => &["slowk", "slowd"],
            _ => &["value"],
        }
    }

    /// Bars before the first value (TA-Lib's lookback): the output's leading NaN count, and
    /// one less than the fewest bars [`Indicator::compute`] accepts. Assumes valid parameters.
    pub fn lookback(&self) -> usize {
        let minus1 = |p: usize| p.saturating_sub(1);
        match *self {
            Indicator::Sma { period } | Indicator::Ema { period } | Indicator::Wma { period } => {
                minus1(period)
            }
            Indicator::Dema { period } => 2 * minus1(period),
            Indicator::Tema { period } => 3 * minus1(period),
            Indicator::Bbands {
                period, ma_type, ..
            } => bands::lookback(period.max(1), ma_type),
            Indicator::Rsi { period }
            | Indicator::Mfi { period }
            | Indicator::Atr { period }
            | Indicator::Natr { period }
            | Indicator::Returns { period }
            | Indicator::LogReturns { period } => period,
            Indicator::Macd {
                slow_period,
                signal_period,
                ..
            } => minus1(slow_period) + minus1(signal_period),
            Indicator::Stoch(params) => StochParams {
                fastk_period: params.fastk_period.max(1),
                ..params
            }
            .lookback(),
            Indicator::Adx { period } => minus1(2 * period),
            Indicator::Cci { period } => minus1(period),
            Indicator::Obv => 0,
        }
    }

    /// Whether the indicator reads highs and lows (otherwise only closes, and maybe volume).
    pub fn uses_high_low(&self) -> bool {
        matches!(
            self,
            Indicator::Stoch(_)
                | Indicator::Adx { .. }
                | Indicator::Cci { .. }
                | Indicator::Mfi { .. }
                | Indicator::Atr { .. }
                | Indicator::Natr { .. }
        )
    }

    /// Whether the indicator reads volumes.
    pub fn uses_volume(&self) -> bool {
        matches!(self, Indicator::Mfi { .. } | Indicator::Obv)
    }

    /// Computes the indicator over `bars`.
    pub fn compute(&self, bars: &Bars<'_>) -> Result<Output> {
        let (h, l, c, v) = (bars.high(), bars.low(), bars.close(), bars.volume());
        let single = |values: Vec<f64>| Output {
            series: vec![Series {
                name: "value",
                values,
            }],
        };
        Ok(match *self {
            Indicator::Sma { period } => single(sma(c, period)?),
            Indicator::Ema { period } => single(ema(c, period)?),
            Indicator::Wma { period } => single(wma(c, period)?),
            Indicator::Dema { period } => single(dema(c, period)?),
            Indicator::Tema { period } => single(tema(c, period)?),
            Indicator::Bbands {
                period,
                nbdev_up,
                nbdev_dn,
                ma_type,
            } => {
                let b = bbands(c, period, nbdev_up, nbdev_dn, ma_type)?;
                Output {
                    series: vec![
                        Series {
                            name: "upper",
                            values: b.upper,
                        },
                        Series {
                            name: "middle",
                            values: b.middle,
                        },
                        Series {
                            name: "lower",
                            values: b.lower,
                        },
                    ],
                }
            }
            Indicator::Rsi { period } => single(rsi(c, period)?),
            Indicator::Macd {
                fast_period,
                slow_period,
                signal_period,
            } => {
                let m = macd(c, fast_period, slow_period, signal_period)?;
                Output {
                    series: vec![
                        Series {
                            name: "macd",
                            values: m.macd,
                        },
                        Series {
                            name: "signal",
                            values: m.signal,
                        },
                        Series {
                            name: "hist",
                            values: m.hist,
                        },
                    ],
                }
            }
            Indicator::Stoch(params) => {
                let s = stoch(h, l, c, params)?;
                Output {
                    series: vec![
                        Series {
                            name: "slowk",
                            values: s.slowk,
                        },
                        Series {
                            name: "slowd",
                            values: s.slowd,
                        },
                    ],
                }
            }
            Indicator::Adx { period } => single(adx(h, l, c, period)?),
            Indicator::Cci { period } => single(cci(h, l, c, period)?),
            Indicator::Mfi { period } => single(mfi(h, l, c, v, period)?),
            Indicator::Obv => single(obv(c, v)?),
            Indicator::Atr { period } => single(atr(h, l, c, period)?),
            Indicator::Natr { period } => single(natr(h, l, c, period)?),
            Indicator::Returns { period } => single(returns(c, period)?),
            Indicator::LogReturns { period } => single(log_returns(c, period)?),
        })
    }
}

impl fmt::Display for Indicator {
    /// `name(param=value, ...)`, the parameters in [`Indicator::parse`]'s names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match *self {
            Indicator::Sma { period }
            | Indicator::Ema { period }
            | Indicator::Wma { period }
            | Indicator::Dema { period }
            | Indicator::Tema { period }
            | Indicator::Rsi { period }
            | Indicator::Adx { period }
            | Indicator::Cci { period }
            | Indicator::Mfi { period }
            | Indicator::Atr { period }
            | Indicator::Natr { period }
            | Indicator::Returns { period }
            | Indicator::LogReturns { period } => write!(f, "{name}(period={period})"),
            Indicator::Bbands {
                period,
                nbdev_up,
                nbdev_dn,
                ma_type,
            } => write!(
                f,
                "{name}(period={period}, nbdev_up={nbdev_up}, nbdev_dn={nbdev_dn}, ma_type={})",
                ma_type.name()
            ),
            Indicator::Macd {
                fast_period,
                slow_period,
                signal_period,
            } => write!(
                f,
                "{name}(fast_period={fast_period}, slow_period={slow_period}, signal_period={signal_period})"
            ),
            Indicator::Stoch(p) => write!(
                f,
                "{name}(fastk_period={}, slowk_period={}, slowk_ma_type={}, slowd_period={}, slowd_ma_type={})",
                p.fastk_period,
                p.slowk_period,
                p.slowk_ma.name(),
                p.slowd_period,
                p.slowd_ma.name()
            ),
            Indicator::Obv => write!(f, "{name}()"),
        }
    }
}

// === impl Reader ===

/// Reads parameters for one indicator, remembering which it used so leftovers (typos) can be
/// reported with the list of accepted names.
struct Reader<'a> {
    indicator: &'static str,
    params: &'a Params,
    used: Vec<&'static str>,
}

impl<'a> Reader<'a> {
    fn new(indicator: &'static str, params: &'a Params) -> Self {
        Reader {
            indicator,
            params,
            used: Vec::new(),
        }
    }

    fn get(&mut self, name: &'static str) -> Option<&'a ParamValue> {
        self.used.push(name);
        self.params.0.get(name)
    }

    fn invalid(&self, parameter: &'static str, reason: String) -> Error {
        Error::InvalidParameter {
            indicator: self.indicator,
            parameter,
            reason,
        }
    }

    fn number(&mut self, name: &'static str, default: f64) -> Result<f64> {
        let value = match self.get(name) {
            None => return Ok(default),
            Some(ParamValue::Number(v)) => *v,
            Some(ParamValue::Text(t)) => t
                .trim()
                .parse::<f64>()
                .map_err(|_| self.invalid(name, format!("must be a number, got \"{t}\"")))?,
        };
        if !value.is_finite() {
            return Err(self.invalid(name, format!("must be a finite number, got {value}")));
        }
        Ok(value)
    }

    fn period(&mut self, name: &'static str, default: usize, min: usize) -> Result<usize> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        let value = match raw {
            ParamValue::Number(v) => *v,
            ParamValue::Text(t) => t
                .trim()
                .parse::<f64>()
                .map_err(|_| self.invalid(name, format!("must be a whole number, got \"{t}\"")))?,
        };
        if !(value.is_finite() && value.fract() == 0.0) {
            return Err(self.invalid(name, format!("must be a whole number, got {raw}")));
        }
        if value < min as f64 || value > MAX_PERIOD as f64 {
            return Err(self.invalid(
                name,
                format!("must be between {min} and {MAX_PERIOD}, got {value}"),
            ));
        }
        // In range and whole, so the conversion is exact.
        Ok(value as usize)
    }

    fn ma_type(&mut self, name: &'static str) -> Result<MaType> {
        let parsed = match self.get(name) {
            None => return Ok(MaType::Sma),
            Some(ParamValue::Number(v)) if v.fract() == 0.0 && (0.0..=4.0).contains(v) => {
                MaType::parse(&format!("{v}"))
            }
            Some(ParamValue::Number(_)) => None,
            Some(ParamValue::Text(t)) => MaType::parse(t),
        };
        parsed.ok_or_else(|| {
            let raw = self
                .params
                .0
                .get(name)
                .map(ToString::to_string)
                .unwrap_or_default();
            self.invalid(
                name,
                format!(
                    "must be one of {} (or TA-Lib's code 0..=4), got {raw}",
                    MaType::NAMES.join(", ")
                ),
            )
        })
    }

    /// Fails on the first parameter that was never read.
    fn finish(self) -> Result<()> {
        if let Some((name, _)) = self.params.iter().find(|(k, _)| !self.used.contains(k)) {
            let accepted = ACCEPTED
                .iter()
                .find(|(n, _)| *n == self.indicator)
                .map_or(&[][..], |(_, a)| *a);
            return Err(Error::UnknownParameter {
                indicator: self.indicator,
                parameter: name.to_owned(),
                accepted,
            });
        }
        Ok(())
    }
}

/// The parameter names of each indicator, for error messages.
const ACCEPTED: &[(&str, &[&str])] = &[
    ("sma", &["period"]),
    ("ema", &["period"]),
    ("wma", &["period"]),
    ("dema", &["period"]),
    ("tema", &["period"]),
    ("bbands", &["period", "nbdev_up", "nbdev_dn", "ma_type"]),
    ("rsi", &["period"]),
    ("macd", &["fast_period", "slow_period", "signal_period"]),
    (
        "stoch",
        &[
            "fastk_period",
            "slowk_period",
            "slowk_ma_type",
            "slowd_period",
            "slowd_ma_type",
        ],
    ),
    ("adx", &["period"]),
    ("cci", &["period"]),
    ("mfi", &["period"]),
    ("obv", &[]),
    ("atr", &["period"]),
    ("natr", &["period"]),
    ("returns", &["period"]),
    ("log_returns", &["period"]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_with_defaults() {
        for name in NAMES {
            let indicator = Indicator::parse(name, &Params::new()).unwrap();
            assert_eq!(indicator.name(), *name);
            assert!(ACCEPTED.iter().any(|(n, _)| n == name));
        }
    }

    #[test]
    fn names_are_case_insensitive_and_defaults_are_talibs() {
        assert_eq!(
            Indicator::parse(" MACD ", &Params::new()).unwrap(),
            Indicator::Macd {
                fast_period: 12,
                slow_period: 26,
                signal_period: 9
            }
        );
        assert_eq!(
            Indicator::parse("stoch", &Params::new()).unwrap(),
            Indicator::Stoch(StochParams::default())
        );
        assert_eq!(
            Indicator::parse("stoch", &Params::new())
                .unwrap()
                .lookback(),
            8
        );
        assert_eq!(
            Indicator::parse("macd", &Params::new()).unwrap().lookback(),
            33
        );
        assert_eq!(
            Indicator::parse("adx", &Params::new()).unwrap().lookback(),
            27
        );
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let err = Indicator::parse("rsx", &Params::new()).unwrap_err();
        assert_eq!(err, Error::UnknownIndicator { name: "rsx".into() });
        assert!(err.to_string().contains("sma, ema, wma"), "{err}");
    }

    #[test]
    fn an_unknown_parameter_is_reported_with_the_accepted_ones() {
        let err = Indicator::parse("rsi", &Params::new().with("perod", 14)).unwrap_err();
        assert_eq!(
            err,
            Error::UnknownParameter {
                indicator: "rsi",
                parameter: "perod".into(),
                accepted: &["period"]
            }
        );
        assert!(err.to_string().contains("accepted: period"), "{err}");
        let err = Indicator::parse("obv", &Params::new().with("period", 3)).unwrap_err();
        assert!(err.to_string().contains("accepted: none"), "{err}");
    }

    #[test]
    fn periods_must_be_whole_and_in_range() {
        for bad in [
            ParamValue::from(0),
            ParamValue::from(14.5),
            ParamValue::from(f64::NAN),
            ParamValue::from("fourteen"),
            ParamValue::from(-3),
            ParamValue::from(100_001),
        ] {
            let err = Indicator::parse("sma", &Params::new().with("period", bad.clone()));
            assert!(
                matches!(
                    err,
                    Err(Error::InvalidParameter {
                        parameter: "period",
                        ..
                    })
                ),
                "{bad}: {err:?}"
            );
        }
        // RSI needs two bars of change; TA-Lib rejects a period of 1.
        assert!(Indicator::parse("rsi", &Params::new().with("period", 1)).is_err());
        assert_eq!(
            Indicator::parse("sma", &Params::new().with("period", " 20 ")).unwrap(),
            Indicator::Sma { period: 20 }
        );
    }

    #[test]
    fn macd_periods_must_not_be_inverted() {
        let params: Params = [("fast_period", 26), ("slow_period", 12)]
            .into_iter()
            .collect();
        assert!(matches!(
            Indicator::parse("macd", &params),
            Err(Error::InvalidParameter {
                parameter: "fast_period",
                ..
            })
        ));
    }

    #[test]
    fn ma_types_parse_from_names_and_codes() {
        let b = Indicator::parse(
            "bbands",
            &Params::new()
                .with("period", 20)
                .with("ma_type", "EMA")
                .with("nbdev_up", "1.5"),
        )
        .unwrap();
        assert_eq!(
            b,
            Indicator::Bbands {
                period: 20,
                nbdev_up: 1.5,
                nbdev_dn: 2.0,
                ma_type: MaType::Ema
            }
        );
        let s = Indicator::parse("stoch", &Params::new().with("slowd_ma_type", 2)).unwrap();
        assert!(matches!(
            s,
            Indicator::Stoch(StochParams {
                slowd_ma: MaType::Wma,
                ..
            })
        ));
        for bad in [
            ParamValue::from("kama"),
            ParamValue::from(6),
            ParamValue::from(1.5),
        ] {
            assert!(matches!(
                Indicator::parse("bbands", &Params::new().with("ma_type", bad)),
                Err(Error::InvalidParameter {
                    parameter: "ma_type",
                    ..
                })
            ));
        }
    }

    #[test]
    fn compute_rejects_a_window_longer_than_the_data() {
        let close = [1.0, 2.0, 3.0];
        let bars = Bars::close_only(&close).unwrap();
        let err = Indicator::Sma { period: 4 }.compute(&bars).unwrap_err();
        assert_eq!(
            err,
            Error::NotEnoughData {
                indicator: "sma",
                needed: 4,
                got: 3
            }
        );
    }

    #[test]
    fn compute_rejects_out_of_range_parameters_built_in_code() {
        let close = [1.0; 10];
        let bars = Bars::close_only(&close).unwrap();
        assert!(matches!(
            Indicator::Ema { period: 0 }.compute(&bars),
            Err(Error::InvalidParameter { .. })
        ));
    }

    #[test]
    fn bars_must_have_equal_lengths_and_finite_values() {
        let a = [1.0, 2.0];
        assert!(matches!(
            Bars::new(&a, &a, &a, &[1.0]),
            Err(Error::LengthMismatch {
                input: "volume",
                ..
            })
        ));
        assert!(matches!(
            Bars::new(&a, &[1.0, f64::INFINITY], &a, &a),
            Err(Error::NonFinite {
                input: "low",
                index: 1,
                ..
            })
        ));
    }

    #[test]
    fn outputs_are_named_and_aligned() {
        let close: Vec<f64> = (0..50).map(|i| 100.0 + f64::from(i % 5)).collect();
        let bars = Bars::close_only(&close).unwrap();
        let m = Indicator::parse("macd", &Params::new()).unwrap();
        let out = m.compute(&bars).unwrap();
        let names: Vec<_> = out.series.iter().map(|s| s.name).collect();
        assert_eq!(names, m.output_names());
        for s in &out.series {
            assert_eq!(s.values.len(), 50);
            assert_eq!(
                s.values.iter().take_while(|v| v.is_nan()).count(),
                m.lookback()
            );
        }
        assert!(out.get("hist").is_some() && out.get("value").is_none());
    }

    #[test]
    fn display_shows_the_parsed_parameters() {
        let s = Indicator::parse("bbands", &Params::new().with("period", 20)).unwrap();
        assert_eq!(
            s.to_string(),
            "bbands(period=20, nbdev_up=2, nbdev_dn=2, ma_type=sma)"
        );
    }
}
