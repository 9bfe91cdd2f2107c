//! `GET /v1/analytics/{symbol}/indicators`: technical indicators of a symbol's bars.

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::analytics::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Caller, forward};
use crate::problem::{Path, Problem, Query};
use crate::routes::fields::{adjustment_name, enum_name};
use crate::routes::shapes::Timeframe;
use crate::routes::state::AppState;

use super::{times, values};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(indicators))
}

// === Indicators ===

/// Query of `GET /v1/analytics/{symbol}/indicators`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IndicatorsQuery {
    /// 1–20 indicators, comma-separated, each `name` or `name(param=value,…)` with TA-Lib's
    /// parameter names and defaults, e.g. `sma(timeperiod=20),bbands(timeperiod=20,nbdevup=2),rsi,macd`.
    /// Names: sma, ema, wma, dema, tema, bbands, rsi, macd, stoch, adx, cci, mfi, obv, atr,
    /// natr, returns, log_returns. Two special parameters: `input` (open, high, low, close,
    /// volume; default close) and `alias` (prefix of the output names).
    pub indicators: String,
    /// Default `1Day`.
    pub timeframe: Option<Timeframe>,
    /// RFC 3339, inclusive.
    pub start: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive.
    pub end: Option<DateTime<Utc>>,
    /// `true`: bars before `start` feed the warm-up so values are defined from `start` on;
    /// default `false`: computed on the range alone, exactly as TA-Lib on that slice.
    #[serde(default)]
    pub warm_up: bool,
}

/// Splits `a(x=1,y=2),b` at the commas outside parentheses.
fn split_top_level(raw: &str) -> Result<Vec<&str>, Problem> {
    let (mut depth, mut from, mut parts) = (0i32, 0, Vec::new());
    for (i, c) in raw.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&raw[from..i]);
                from = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(Problem::invalid(format!(
                "indicators: unbalanced parentheses in {raw:?}"
            )));
        }
    }
    if depth != 0 {
        return Err(Problem::invalid(format!(
            "indicators: unbalanced parentheses in {raw:?}"
        )));
    }
    parts.push(&raw[from..]);
    Ok(parts.into_iter().map(str::trim).collect())
}

/// One `name(param=value,…)` item as the gRPC spec; unknown names and malformed values are
/// named in the error.
fn indicator_spec(item: &str) -> Result<pb::IndicatorSpec, Problem> {
    let (name, args) = match item.split_once('(') {
        Some((name, rest)) => {
            let args = rest.strip_suffix(')').ok_or_else(|| {
                Problem::invalid(format!("indicators: {item:?} must end with ')'"))
            })?;
            (name.trim(), args)
        }
        None => (item, ""),
    };
    let indicator = pb::Indicator::from_str_name(&format!("INDICATOR_{}", name.to_ascii_uppercase()))
        .filter(|i| *i != pb::Indicator::Unspecified)
        .ok_or_else(|| {
            Problem::invalid(format!(
                "indicators: unknown indicator {name:?}; known: sma, ema, wma, dema, tema, bbands, rsi, macd, stoch, adx, cci, mfi, obv, atr, natr, returns, log_returns"
            ))
        })?;
    let mut spec = pb::IndicatorSpec {
        indicator: indicator.into(),
        ..Default::default()
    };
    for arg in args.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let (key, value) = arg
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| {
                Problem::invalid(format!("indicators: {name}: {arg:?} is not param=value"))
            })?;
        match key {
            "alias" => spec.alias = value.to_owned(),
            "input" => {
                spec.input = pb::PriceField::from_str_name(&format!(
                    "PRICE_FIELD_{}",
                    value.to_ascii_uppercase()
                ))
                .filter(|f| *f != pb::PriceField::Unspecified)
                .ok_or_else(|| {
                    Problem::invalid(format!(
                        "indicators: {name}: input {value:?} is not open, high, low, close or volume"
                    ))
                })?
                .into();
            }
            _ => {
                let number = value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        Problem::invalid(format!(
                            "indicators: {name}: {key}={value:?} is not a number"
                        ))
                    })?;
                spec.params.insert(key.to_owned(), number);
            }
        }
    }
    Ok(spec)
}

/// One output series of one indicator, aligned to the response's `timestamps`.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndicatorLine {
    /// `{alias}` for single-output indicators, `{alias}.{output}` otherwise, e.g.
    /// `bbands_20_2_2.upper`.
    pub name: String,
    /// e.g. `bbands`.
    pub indicator: String,
    /// `value`, or one of several outputs (`upper`, `middle`, `lower`, `macd`, `signal`,
    /// `hist`, `slowk`, `slowd`).
    pub output: String,
    /// Parameters used, defaults filled in.
    pub params: BTreeMap<String, f64>,
    /// TA-Lib lookback: leading bars without a value.
    pub lookback: u32,
    /// One per timestamp; `null` during warm-up.
    pub values: Vec<Option<f64>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Indicators {
    pub symbol: String,
    pub timeframe: Timeframe,
    /// Adjustment basis of the bars (`raw`, `split`, `all`).
    pub adjustment: String,
    /// Bar start times, ascending.
    pub timestamps: Vec<DateTime<Utc>>,
    /// In request order; multi-output indicators contribute several.
    pub series: Vec<IndicatorLine>,
}

/// Technical indicators of a symbol (TA-Lib values and warm-up conventions) over a range of
/// the analytics read model's bars.
#[utoipa::path(get, path = "/v1/analytics/{symbol}/indicators", tag = "analytics",
    security(("bearer" = []), ("api_key" = [])),
    params(("symbol" = String, Path, description = "Ticker"), IndicatorsQuery),
    responses(
        (status = 200, description = "Series aligned to the bar timestamps", body = Indicators),
        (status = 400, description = "Unknown indicator or parameter, window longer than the data, inverted range", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No bars of the symbol", body = Problem, content_type = "application/problem+json"),
    ))]
async fn indicators(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(symbol): Path<String>,
    Query(query): Query<IndicatorsQuery>,
) -> Result<axum::Json<Indicators>, Problem> {
    let specs = split_top_level(&query.indicators)?
        .into_iter()
        .filter(|item| !item.is_empty())
        .map(indicator_spec)
        .collect::<Result<Vec<_>, _>>()?;
    let timeframe = query.timeframe.unwrap_or(Timeframe::OneDay);
    let request = forward(
        pb::GetIndicatorsRequest {
            symbol,
            timeframe: mirai_proto::stock::v1::Timeframe::from(timeframe).into(),
            start: query.start.map(wire::timestamp),
            end: query.end.map(wire::timestamp),
            indicators: specs,
            warm_up_from_history: query.warm_up,
        },
        &principal,
    )?;
    let r = state
        .upstreams
        .analytics()
        .get_indicators(request)
        .await?
        .into_inner();
    Ok(axum::Json(Indicators {
        symbol: r.symbol,
        timeframe,
        adjustment: adjustment_name(r.adjustment),
        timestamps: times(&r.timestamps),
        series: r
            .series
            .into_iter()
            .map(|s| IndicatorLine {
                indicator: enum_name(
                    pb::Indicator::try_from(s.indicator)
                        .ok()
                        .map(|i| i.as_str_name()),
                    "INDICATOR_",
                ),
                name: s.name,
                output: s.output,
                params: s.params.into_iter().collect(),
                lookback: s.lookback,
                values: values(s.values),
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indicator_lists_parse_with_their_parameters() {
        let items =
            split_top_level("sma(timeperiod=20), bbands(timeperiod=20,nbdevup=2),rsi").unwrap();
        assert_eq!(
            items,
            vec![
                "sma(timeperiod=20)",
                "bbands(timeperiod=20,nbdevup=2)",
                "rsi"
            ]
        );
        let bbands = indicator_spec(items[1]).unwrap();
        assert_eq!(bbands.indicator(), pb::Indicator::Bbands);
        assert_eq!(bbands.params["nbdevup"], 2.0);
        let high = indicator_spec("ema(input=high,alias=fast)").unwrap();
        assert_eq!(high.input(), pb::PriceField::High);
        assert_eq!(high.alias, "fast");
        assert_eq!(
            indicator_spec("log_returns").unwrap().indicator(),
            pb::Indicator::LogReturns
        );
    }

    #[test]
    fn malformed_indicator_lists_name_the_fault() {
        let detail = |raw: &str| {
            split_top_level(raw)
                .and_then(|items| {
                    items
                        .into_iter()
                        .map(indicator_spec)
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap_err()
                .detail
                .unwrap()
        };
        assert!(detail("smaa").contains("unknown indicator \"smaa\""));
        assert!(detail("unspecified").contains("unknown indicator"));
        assert!(detail("sma(timeperiod=20").contains("unbalanced"));
        assert!(detail("sma(timeperiod=x)").contains("timeperiod=\"x\" is not a number"));
        assert!(detail("sma(20)").contains("is not param=value"));
        assert!(detail("sma(input=vwap)").contains("input \"vwap\""));
    }
}
