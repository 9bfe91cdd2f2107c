//! Indicator requests: the wire's `IndicatorSpec` parsed through [`Indicator::parse`], and
//! their series over a run of bars.

use std::collections::{BTreeMap, HashSet};

use mirai_proto::analytics::v1 as pb;

use crate::domain::BarSeries;
use crate::error::{Error, Result};
use crate::indicators::{self, Bars, Indicator, Params};

/// TA-Lib's parameter names (as the proto documents them, and as TA-Lib's Python binding
/// spells them) mapped to [`Indicator::parse`]'s; any other name is passed on unchanged, so
/// both spellings work and typos are still reported with the accepted names.
const ALIASES: &[(&str, &str)] = &[
    ("timeperiod", "period"),
    ("nbdevup", "nbdev_up"),
    ("nbdevdn", "nbdev_dn"),
    ("matype", "ma_type"),
    ("fast", "fast_period"),
    ("fastperiod", "fast_period"),
    ("slow", "slow_period"),
    ("slowperiod", "slow_period"),
    ("signal", "signal_period"),
    ("signalperiod", "signal_period"),
    ("slowk_matype", "slowk_ma_type"),
    ("slowd_matype", "slowd_ma_type"),
];

/// Which column a single-input indicator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Open,
    High,
    Low,
    Close,
    Volume,
}

impl Input {
    fn from_wire(value: i32) -> Result<Self, String> {
        Ok(match pb::PriceField::try_from(value) {
            Ok(pb::PriceField::Unspecified | pb::PriceField::Close) => Input::Close,
            Ok(pb::PriceField::Open) => Input::Open,
            Ok(pb::PriceField::High) => Input::High,
            Ok(pb::PriceField::Low) => Input::Low,
            Ok(pb::PriceField::Volume) => Input::Volume,
            Err(_) => return Err(format!("{value} is not a price field")),
        })
    }

    fn column(self, bars: &BarSeries) -> &[f64] {
        match self {
            Input::Open => &bars.open,
            Input::High => &bars.high,
            Input::Low => &bars.low,
            Input::Close => &bars.close,
            Input::Volume => &bars.volume,
        }
    }
}

/// One requested indicator, valid.
#[derive(Debug, Clone)]
pub struct Request {
    pub indicator: Indicator,
    pub kind: pb::Indicator,
    pub input: Input,
    /// Prefix of the output names, unique in the request.
    pub alias: String,
}

impl Request {
    /// Whether the indicator reads one column (MAs, BBANDS, RSI, MACD, returns).
    fn single_input(&self) -> bool {
        !self.indicator.uses_high_low() && !self.indicator.uses_volume()
    }
}

/// The wire name of an indicator's enum value ("sma", "log_returns").
pub fn wire_name(kind: pb::Indicator) -> String {
    kind.as_str_name()
        .trim_start_matches("INDICATOR_")
        .to_ascii_lowercase()
}

/// The enum value of an indicator name, as [`indicators::spec::NAMES`] spells them.
pub fn kind_of(name: &str) -> Option<pb::Indicator> {
    pb::Indicator::from_str_name(&format!("INDICATOR_{}", name.trim().to_ascii_uppercase()))
        .filter(|k| *k != pb::Indicator::Unspecified)
}

/// Parses the request's specs: 1–20, each a known indicator with valid parameters, aliases
/// unique. Errors name the spec by position.
pub fn parse(specs: &[pb::IndicatorSpec]) -> Result<Vec<Request>> {
    if specs.is_empty() || specs.len() > 20 {
        return Err(Error::invalid(
            "indicators",
            format!("between 1 and 20 indicators, got {}", specs.len()),
        ));
    }
    let mut seen = HashSet::new();
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let at = |message: String| Error::invalid("indicators", format!("[{i}]: {message}"));
            let kind = pb::Indicator::try_from(spec.indicator)
                .ok()
                .filter(|k| *k != pb::Indicator::Unspecified)
                .ok_or_else(|| {
                    at(indicators::Error::UnknownIndicator {
                        name: format!("#{}", spec.indicator),
                    }
                    .to_string())
                })?;
            let params: Params = spec
                .params
                .iter()
                .map(|(name, value)| {
                    let name = ALIASES
                        .iter()
                        .find(|(alias, _)| alias == name)
                        .map_or(name.as_str(), |(_, canonical)| canonical);
                    (name.to_owned(), *value)
                })
                .collect();
            let indicator =
                Indicator::parse(&wire_name(kind), &params).map_err(|e| at(e.to_string()))?;
            let input = Input::from_wire(spec.input).map_err(at)?;
            let alias = if spec.alias.trim().is_empty() {
                default_alias(&indicator)
            } else {
                spec.alias.trim().to_owned()
            };
            if !seen.insert(alias.clone()) {
                return Err(at(format!("alias {alias:?} is used twice")));
            }
            Ok(Request {
                indicator,
                kind,
                input,
                alias,
            })
        })
        .collect()
}

/// The parameters of an indicator with defaults filled in, in [`Indicator::parse`]'s names
/// (moving-average types as TA-Lib's codes).
pub fn params_of(indicator: &Indicator) -> BTreeMap<String, f64> {
    let p = |pairs: &[(&str, f64)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect::<BTreeMap<_, _>>()
    };
    match *indicator {
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
        | Indicator::LogReturns { period } => p(&[("period", period as f64)]),
        Indicator::Bbands {
            period,
            nbdev_up,
            nbdev_dn,
            ma_type,
        } => p(&[
            ("period", period as f64),
            ("nbdev_up", nbdev_up),
            ("nbdev_dn", nbdev_dn),
            ("ma_type", f64::from(ma_type.code())),
        ]),
        Indicator::Macd {
            fast_period,
            slow_period,
            signal_period,
        } => p(&[
            ("fast_period", fast_period as f64),
            ("slow_period", slow_period as f64),
            ("signal_period", signal_period as f64),
        ]),
        Indicator::Stoch(s) => p(&[
            ("fastk_period", s.fastk_period as f64),
            ("slowk_period", s.slowk_period as f64),
            ("slowk_ma_type", f64::from(s.slowk_ma.code())),
            ("slowd_period", s.slowd_period as f64),
            ("slowd_ma_type", f64::from(s.slowd_ma.code())),
        ]),
        Indicator::Obv => BTreeMap::new(),
    }
}

/// `sma_20`, `bbands_20_2_2`, `macd_12_26_9`, `obv`: the name and its main parameters.
pub fn default_alias(indicator: &Indicator) -> String {
    let number = |v: f64| format!("{v}");
    let parts: Vec<String> = match *indicator {
        Indicator::Bbands {
            period,
            nbdev_up,
            nbdev_dn,
            ..
        } => vec![period.to_string(), number(nbdev_up), number(nbdev_dn)],
        Indicator::Macd {
            fast_period,
            slow_period,
            signal_period,
        } => vec![
            fast_period.to_string(),
            slow_period.to_string(),
            signal_period.to_string(),
        ],
        Indicator::Stoch(s) => vec![
            s.fastk_period.to_string(),
            s.slowk_period.to_string(),
            s.slowd_period.to_string(),
        ],
        _ => params_of(indicator).values().map(|v| number(*v)).collect(),
    };
    let mut alias = indicator.name().to_owned();
    for part in parts {
        alias.push('_');
        alias.push_str(&part);
    }
    alias
}

/// One output line, aligned to the bars from `from` on (NaN for no value).
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub output: &'static str,
    pub values: Vec<f64>,
}

/// Computes `request` over `bars` and keeps the values from bar `from` on. A window longer
/// than the data (or any other numerics error) is INVALID_ARGUMENT naming the spec.
pub fn compute(
    position: usize,
    request: &Request,
    bars: &BarSeries,
    from: usize,
) -> Result<Vec<Line>> {
    let output = if request.single_input() {
        Bars::close_only(request.input.column(bars))
    } else {
        bars.bars()
    }
    .and_then(|b| request.indicator.compute(&b))
    .map_err(|e| {
        let hint = match e {
            indicators::Error::NotEnoughData { .. } => " (the window is longer than the data)",
            _ => "",
        };
        Error::invalid(
            "indicators",
            format!("[{position}] {}: {e}{hint}", request.alias),
        )
    })?;
    let multi = output.series.len() > 1;
    Ok(output
        .series
        .into_iter()
        .map(|s| Line {
            name: if multi {
                format!("{}.{}", request.alias, s.name)
            } else {
                request.alias.clone()
            },
            output: s.name,
            values: s.values[from..].to_vec(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: pb::Indicator, params: &[(&str, f64)]) -> pb::IndicatorSpec {
        pb::IndicatorSpec {
            indicator: kind.into(),
            params: params.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn ta_lib_names_and_ours_both_parse() {
        let parsed = parse(&[
            spec(
                pb::Indicator::Bbands,
                &[("timeperiod", 20.0), ("nbdevup", 2.0)],
            ),
            spec(pb::Indicator::Macd, &[("fast", 5.0), ("slow_period", 10.0)]),
            spec(pb::Indicator::LogReturns, &[]),
        ])
        .unwrap();
        assert_eq!(parsed[0].alias, "bbands_20_2_2");
        assert_eq!(parsed[1].alias, "macd_5_10_9");
        assert_eq!(parsed[2].alias, "log_returns_1");
        assert_eq!(kind_of("log_returns"), Some(pb::Indicator::LogReturns));
        assert_eq!(kind_of("nope"), None);
    }

    #[test]
    fn bad_specs_name_their_position() {
        let err = parse(&[
            spec(pb::Indicator::Sma, &[]),
            spec(pb::Indicator::Unspecified, &[]),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("indicators: [1]: unknown indicator"),
            "{err}"
        );
        let err = parse(&[spec(pb::Indicator::Rsi, &[("perod", 3.0)])]).unwrap_err();
        assert!(
            err.to_string().contains("unknown parameter \"perod\""),
            "{err}"
        );
        let err =
            parse(&[spec(pb::Indicator::Sma, &[]), spec(pb::Indicator::Sma, &[])]).unwrap_err();
        assert!(err.to_string().contains("used twice"), "{err}");
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn a_window_longer_than_the_data_says_so() {
        let request = &parse(&[spec(pb::Indicator::Sma, &[("period", 50.0)])]).unwrap()[0];
        let mut bars = BarSeries::default();
        for i in 0..10 {
            let c = 10.0 + f64::from(i);
            bars.push(
                chrono::DateTime::from_timestamp(i64::from(i), 0).unwrap(),
                [c, c, c, c, 1.0],
            );
        }
        let err = compute(0, request, &bars, 0).unwrap_err().to_string();
        assert!(err.contains("needs at least 50 bars, got 10"), "{err}");
        assert!(err.contains("longer than the data"), "{err}");
    }
}
