//! `/v1/symbols`: listing, looking up, searching and delisting symbols, and their bars
//! (stock-data).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use mirai_platform::telemetry::Metrics;
use mirai_platform::wire;
use mirai_proto::stock::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Admin, forward};
use crate::problem::{Json, Path, Problem, Query};
use crate::routes::fields;
use crate::routes::shapes::Timeframe;
use crate::routes::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add, search))
        .routes(routes!(get_one, update))
        .routes(routes!(delist))
        .routes(routes!(bars))
        .routes(routes!(quote))
        .routes(routes!(quality))
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssetType {
    Equity,
    Etf,
    Index,
    Crypto,
    Fx,
}

impl From<AssetType> for pb::AssetType {
    fn from(value: AssetType) -> Self {
        match value {
            AssetType::Equity => Self::Equity,
            AssetType::Etf => Self::Etf,
            AssetType::Index => Self::Index,
            AssetType::Crypto => Self::Crypto,
            AssetType::Fx => Self::Fx,
        }
    }
}

impl AssetType {
    fn from_wire(value: i32) -> Option<Self> {
        Some(match pb::AssetType::try_from(value).ok()? {
            pb::AssetType::Unspecified => return None,
            pb::AssetType::Equity => Self::Equity,
            pb::AssetType::Etf => Self::Etf,
            pb::AssetType::Index => Self::Index,
            pb::AssetType::Crypto => Self::Crypto,
            pb::AssetType::Fx => Self::Fx,
        })
    }
}

/// Body of `POST /v1/symbols`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSymbol {
    pub symbol: String,
    pub name: String,
    pub exchange_mic: String,
    pub currency: String,
    pub asset_type: AssetType,
}

/// A symbol as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Symbol {
    pub symbol: String,
    pub name: String,
    pub exchange_mic: String,
    pub currency: String,
    pub asset_type: Option<AssetType>,
    /// `active` or `delisted`.
    #[schema(value_type = String)]
    pub status: &'static str,
    pub listed_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delisted_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub delisting_reason: String,
}

impl From<pb::Symbol> for Symbol {
    fn from(s: pb::Symbol) -> Self {
        Self {
            asset_type: AssetType::from_wire(s.asset_type),
            status: if s.status == pb::SymbolStatus::Delisted as i32 {
                "delisted"
            } else {
                "active"
            },
            listed_at: s.listed_at.as_ref().and_then(wire::datetime),
            updated_at: s.updated_at.as_ref().and_then(wire::datetime),
            delisted_at: s.delisted_at.as_ref().and_then(wire::datetime),
            symbol: s.symbol,
            name: s.name,
            exchange_mic: s.exchange_mic,
            currency: s.currency,
            delisting_reason: s.delisting_reason,
        }
    }
}

fn symbol_of(symbol: Option<pb::Symbol>) -> Result<Symbol, Problem> {
    symbol
        .map(Symbol::from)
        .ok_or_else(|| Problem::missing("a symbol"))
}

/// Lists a symbol (admin); `201 Created` with its location. Emits `symbol.listed`.
#[utoipa::path(post, path = "/v1/symbols", tag = "market-data",
    security(("bearer" = []), ("api_key" = [])),
    request_body = NewSymbol,
    responses(
        (status = 201, description = "The listed symbol", body = Symbol),
        (status = 400, description = "Invalid field (named in detail)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already listed", body = Problem, content_type = "application/problem+json"),
    ))]
async fn add(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Json(body): Json<NewSymbol>,
) -> Result<impl IntoResponse, Problem> {
    let request = pb::AddSymbolRequest {
        symbol: Some(pb::Symbol {
            symbol: body.symbol,
            name: body.name,
            exchange_mic: body.exchange_mic,
            currency: body.currency,
            asset_type: pb::AssetType::from(body.asset_type).into(),
            ..Default::default()
        }),
        actor_user_id: admin.user_id.clone(),
    };
    let request = forward(request, &admin)?;
    let symbol = symbol_of(
        state
            .upstreams
            .stock_data()
            .add_symbol(request)
            .await?
            .into_inner()
            .symbol,
    )?;
    let mut headers = HeaderMap::new();
    if let Ok(location) = format!("/v1/symbols/{}", symbol.symbol).parse() {
        headers.insert(header::LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, axum::Json(symbol)))
}

/// One symbol's metadata.
#[utoipa::path(get, path = "/v1/symbols/{symbol}", tag = "market-data",
    params(("symbol" = String, Path, description = "Ticker, e.g. `AAPL`")),
    responses(
        (status = 200, description = "The symbol", body = Symbol),
        (status = 404, description = "Unknown symbol", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_one(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
) -> Result<axum::Json<Symbol>, Problem> {
    let response = state
        .upstreams
        .stock_data()
        .get_symbol(pb::GetSymbolRequest { symbol })
        .await?;
    Ok(axum::Json(symbol_of(response.into_inner().symbol)?))
}

/// Body of `PATCH /v1/symbols/{symbol}`: the fields to change (absent = unchanged).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SymbolChange {
    pub name: Option<String>,
    pub exchange_mic: Option<String>,
    pub currency: Option<String>,
    pub asset_type: Option<AssetType>,
}

/// Changes a symbol's metadata (admin). Emits `symbol.updated` when something changed.
#[utoipa::path(patch, path = "/v1/symbols/{symbol}", tag = "market-data",
    security(("bearer" = []), ("api_key" = [])),
    params(("symbol" = String, Path, description = "Ticker")),
    request_body = SymbolChange,
    responses(
        (status = 200, description = "The symbol after the change", body = Symbol),
        (status = 400, description = "Invalid field (named in detail)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown symbol", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(symbol): Path<String>,
    Json(body): Json<SymbolChange>,
) -> Result<axum::Json<Symbol>, Problem> {
    let mut paths = Vec::new();
    let mut changed = pb::Symbol {
        symbol,
        ..Default::default()
    };
    if let Some(v) = body.name {
        paths.push("name".to_owned());
        changed.name = v;
    }
    if let Some(v) = body.exchange_mic {
        paths.push("exchange_mic".to_owned());
        changed.exchange_mic = v;
    }
    if let Some(v) = body.currency {
        paths.push("currency".to_owned());
        changed.currency = v;
    }
    if let Some(v) = body.asset_type {
        paths.push("asset_type".to_owned());
        changed.asset_type = pb::AssetType::from(v).into();
    }
    let request = forward(
        pb::UpdateSymbolRequest {
            symbol: Some(changed),
            update_mask: Some(prost_types::FieldMask { paths }),
            actor_user_id: admin.user_id.clone(),
        },
        &admin,
    )?;
    let response = state.upstreams.stock_data().update_symbol(request).await?;
    Ok(axum::Json(symbol_of(response.into_inner().symbol)?))
}

/// Query of `GET /v1/symbols`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Ticker prefix or part of the name.
    #[serde(default)]
    pub q: String,
    pub asset_type: Option<AssetType>,
    pub exchange_mic: Option<String>,
    #[serde(default)]
    pub include_delisted: bool,
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SymbolPage {
    pub symbols: Vec<Symbol>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

/// Searches symbols by ticker prefix or name, best matches first, paged.
#[utoipa::path(get, path = "/v1/symbols", tag = "market-data",
    params(SearchQuery),
    responses(
        (status = 200, description = "Matching symbols", body = SymbolPage),
        (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
    ))]
async fn search(
    State(state): State<AppState>,
    Query(query): Query<SearchQuery>,
) -> Result<axum::Json<SymbolPage>, Problem> {
    let request = pb::SearchSymbolsRequest {
        query: query.q,
        asset_type: query
            .asset_type
            .map(|a| pb::AssetType::from(a).into())
            .unwrap_or_default(),
        exchange_mic: query.exchange_mic.unwrap_or_default(),
        tracked_only: false,
        include_delisted: query.include_delisted,
        page_size: query.page_size.unwrap_or_default(),
        page_token: query.page_token.unwrap_or_default(),
    };
    let response = state
        .upstreams
        .stock_data()
        .search_symbols(request)
        .await?
        .into_inner();
    Ok(axum::Json(SymbolPage {
        symbols: response.symbols.into_iter().map(Symbol::from).collect(),
        next_page_token: response.next_page_token,
    }))
}

/// Body of `POST /v1/symbols/{symbol}/delist`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Delisting {
    #[serde(default)]
    pub reason: String,
}

/// Delists a symbol (admin); idempotent. Emits `symbol.delisted`.
#[utoipa::path(post, path = "/v1/symbols/{symbol}/delist", tag = "market-data",
    security(("bearer" = []), ("api_key" = [])),
    params(("symbol" = String, Path, description = "Ticker")),
    request_body = Delisting,
    responses(
        (status = 200, description = "The symbol, delisted", body = Symbol),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown symbol", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delist(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(symbol): Path<String>,
    Json(body): Json<Delisting>,
) -> Result<axum::Json<Symbol>, Problem> {
    let request = forward(
        pb::DelistSymbolRequest {
            symbol,
            reason: body.reason,
            actor_user_id: admin.user_id.clone(),
        },
        &admin,
    )?;
    let response = state.upstreams.stock_data().delist_symbol(request).await?;
    Ok(axum::Json(symbol_of(response.into_inner().symbol)?))
}

/// Query of `GET /v1/stocks/{symbol}/bars`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BarsQuery {
    /// Default `1Day`.
    pub timeframe: Option<Timeframe>,
    /// RFC 3339, inclusive.
    pub start: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive.
    pub end: Option<DateTime<Utc>>,
    /// 1–10,000, default 1,000.
    pub limit: Option<u32>,
    pub page_token: Option<String>,
    #[serde(default)]
    pub newest_first: bool,
}

/// One bar as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bar {
    #[serde(serialize_with = "fields::rfc3339")]
    pub start: Option<DateTime<Utc>>,
    #[serde(serialize_with = "fields::rfc3339")]
    pub end: Option<DateTime<Utc>>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    /// Stored bars aggregated into this one.
    pub source_bars: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quality_flags: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BarPage {
    pub symbol: String,
    /// Always `raw` for now: no corporate actions are stored to adjust with.
    #[schema(value_type = String)]
    pub adjustment: &'static str,
    pub source: String,
    pub bars: Vec<Bar>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

/// OHLCV bars over a range, aggregated from stored ones to coarser timeframes (open of the
/// first, high max, low min, close of the last, volume sum); intervals without trades have no
/// bar. Paged with an opaque token that stays valid while new bars arrive.
#[utoipa::path(get, path = "/v1/stocks/{symbol}/bars", tag = "market-data",
    params(("symbol" = String, Path, description = "Ticker"), BarsQuery),
    responses(
        (status = 200, description = "Bars, with the adjustment basis and source", body = BarPage),
        (status = 400, description = "Invalid query (inverted range, bad timeframe, limit > 10,000)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown symbol", body = Problem, content_type = "application/problem+json"),
    ))]
async fn bars(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    Query(query): Query<BarsQuery>,
) -> Result<axum::Json<BarPage>, Problem> {
    let request = pb::GetBarsRequest {
        symbol,
        timeframe: pb::Timeframe::from(query.timeframe.unwrap_or(Timeframe::OneDay)).into(),
        start: query.start.map(wire::timestamp),
        end: query.end.map(wire::timestamp),
        limit: query.limit.unwrap_or_default(),
        page_token: query.page_token.unwrap_or_default(),
        adjustment: pb::Adjustment::Unspecified.into(),
        newest_first: query.newest_first,
        include_partial: false,
    };
    let response = state
        .upstreams
        .stock_data()
        .get_bars(request)
        .await?
        .into_inner();
    Ok(axum::Json(BarPage {
        symbol: response.symbol,
        adjustment: "raw",
        source: response.source,
        bars: response
            .bars
            .into_iter()
            .map(|b| Bar {
                start: b.start.as_ref().and_then(wire::datetime),
                end: b.end.as_ref().and_then(wire::datetime),
                open: b.open,
                high: b.high,
                low: b.low,
                close: b.close,
                volume: b.volume,
                source_bars: b.source_bar_count,
                quality_flags: b.quality_flags.iter().map(|f| flag_name(*f)).collect(),
            })
            .collect(),
        next_page_token: response.next_page_token,
    }))
}

/// A latest quote as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Quote {
    pub symbol: String,
    pub last_price: f64,
    pub last_time: Option<DateTime<Utc>>,
    pub previous_close: f64,
    pub change: f64,
    pub change_percent: f64,
    pub day_open: Option<f64>,
    pub day_high: Option<f64>,
    pub day_low: Option<f64>,
    pub day_volume: Option<f64>,
    pub source: String,
    #[schema(value_type = String)]
    pub adjustment: &'static str,
    /// When stock-data last changed this quote (its freshness).
    pub updated_at: Option<DateTime<Utc>>,
    /// Present only when stock-data could not be reached and this answer comes from the
    /// gateway's memory: how many seconds ago the gateway got it (also the `Age` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_seconds_ago: Option<u64>,
}

/// The last quote the gateway served per symbol, for answering while stock-data is unavailable
/// (a quote that old is still a true statement about the past; the age says how old).
pub struct QuoteCache {
    max_age: std::time::Duration,
    quotes: std::sync::Mutex<std::collections::HashMap<String, (pb::Quote, std::time::Instant)>>,
    /// Fallback lookups (made only while stock-data is unavailable): a hit is a stale answer,
    /// a miss a 503.
    lookups: mirai_platform::telemetry::CacheCounter,
}

impl QuoteCache {
    /// Keeps quotes for `max_age` (zero: never answers from memory); counts its lookups in
    /// `metrics` as `mirai_cache_requests_total{cache="quote_fallback"}`.
    pub fn new(max_age: std::time::Duration, metrics: &Metrics) -> Self {
        Self {
            max_age,
            quotes: Default::default(),
            lookups: mirai_platform::telemetry::CacheMetrics::register(metrics)
                .cache("quote_fallback"),
        }
    }

    fn remember(&self, quote: &pb::Quote) {
        if self.max_age.is_zero() {
            return;
        }
        self.quotes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                quote.symbol.clone(),
                (quote.clone(), std::time::Instant::now()),
            );
    }

    fn recall(&self, symbol: &str) -> Option<(pb::Quote, u64)> {
        let quotes = self
            .quotes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = quotes
            .get(&symbol.to_ascii_uppercase())
            .filter(|(_, at)| at.elapsed() <= self.max_age)
            .map(|(quote, at)| (quote.clone(), at.elapsed().as_secs()));
        self.lookups.record(found.is_some());
        found
    }
}

/// The latest quote: last price, change against the previous close, today's bar. Served
/// from memory, kept current by ingestion. While stock-data is unavailable, a quote the gateway
/// served in the last `MIRAI_QUOTE_FALLBACK_MAX_AGE` is answered instead, with an `Age` header
/// and `cached_seconds_ago`; without one, 503 with `Retry-After`.
#[utoipa::path(get, path = "/v1/stocks/{symbol}/quote", tag = "market-data",
    params(("symbol" = String, Path, description = "Ticker")),
    responses(
        (status = 200, description = "The quote (with an `Age` header when it comes from the gateway's memory)", body = Quote),
        (status = 404, description = "Unknown symbol or no data yet", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "stock-data is unavailable and no recent quote is known", body = Problem, content_type = "application/problem+json"),
    ))]
async fn quote(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
) -> Result<axum::response::Response, Problem> {
    let answer = state
        .upstreams
        .stock_data()
        .get_quote(pb::GetQuoteRequest {
            symbol: symbol.clone(),
        })
        .await;
    let quote = match answer {
        Ok(response) => response
            .into_inner()
            .quote
            .ok_or_else(|| Problem::missing("a quote"))?,
        Err(status) => {
            let problem = Problem::from(status);
            if problem.status == StatusCode::SERVICE_UNAVAILABLE.as_u16()
                && let Some((quote, age)) = state.quotes.recall(&symbol)
            {
                let mut body = Quote::from(quote);
                body.cached_seconds_ago = Some(age);
                return Ok(([(header::AGE, age.to_string())], axum::Json(body)).into_response());
            }
            return Err(problem);
        }
    };
    state.quotes.remember(&quote);
    Ok(axum::Json(Quote::from(quote)).into_response())
}

impl From<pb::Quote> for Quote {
    fn from(quote: pb::Quote) -> Self {
        let day = quote.day_bar.as_ref();
        Self {
            last_time: quote.last_time.as_ref().and_then(wire::datetime),
            day_open: day.map(|b| b.open),
            day_high: day.map(|b| b.high),
            day_low: day.map(|b| b.low),
            day_volume: day.map(|b| b.volume),
            symbol: quote.symbol,
            last_price: quote.last_price,
            previous_close: quote.previous_close,
            change: quote.change,
            change_percent: quote.change_percent,
            source: quote.source,
            adjustment: "raw",
            updated_at: quote.updated_at.as_ref().and_then(wire::datetime),
            cached_seconds_ago: None,
        }
    }
}

/// A quality flag's name as the API shows it (`ohlc_inconsistent`, `gap_before`, ...).
fn flag_name(value: i32) -> String {
    pb::QualityFlag::try_from(value)
        .map(|f| {
            f.as_str_name()
                .trim_start_matches("QUALITY_FLAG_")
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Query of `GET /v1/stocks/{symbol}/quality`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QualityQuery {
    /// Stored timeframe to check; default `1Day`.
    pub timeframe: Option<Timeframe>,
    /// RFC 3339, inclusive.
    pub start: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive.
    pub end: Option<DateTime<Utc>>,
    /// Issues per page, 1–10,000, default 1,000 (counts always cover the whole range).
    pub max_issues: Option<u32>,
    pub page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlagCount {
    pub flag: String,
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QualityIssue {
    pub flag: String,
    pub bar_start: Option<DateTime<Utc>>,
    pub detail: String,
    pub detected_at: Option<DateTime<Utc>>,
}

/// What the quality checks found in a range.
#[derive(Debug, Serialize, ToSchema)]
pub struct QualityReport {
    pub symbol: String,
    pub first_bar_start: Option<DateTime<Utc>>,
    pub last_bar_start: Option<DateTime<Utc>>,
    pub bars_checked: u64,
    pub bars_clean: u64,
    /// Per flag, the bars carrying it.
    pub counts: Vec<FlagCount>,
    /// Flagged bars, oldest first (one page).
    pub issues: Vec<QualityIssue>,
    pub issues_truncated: bool,
    /// Trading sessions missing from the data, per the calendar.
    pub missing_sessions: Vec<DateTime<Utc>>,
    /// Calendar used for gaps, e.g. `XNYS`.
    pub calendar: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

/// The data-quality report of a symbol's bars: anomalies are flagged on ingest (OHLC
/// inconsistency, non-positive prices or volume, duplicates, out-of-order bars, gaps against
/// the exchange calendar, outlier returns by robust z-score) and reported here; nothing is
/// silently repaired.
#[utoipa::path(get, path = "/v1/stocks/{symbol}/quality", tag = "market-data",
    params(("symbol" = String, Path, description = "Ticker"), QualityQuery),
    responses(
        (status = 200, description = "The report", body = QualityReport),
        (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown symbol", body = Problem, content_type = "application/problem+json"),
    ))]
async fn quality(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    Query(query): Query<QualityQuery>,
) -> Result<axum::Json<QualityReport>, Problem> {
    let r = state
        .upstreams
        .stock_data()
        .get_quality_report(pb::GetQualityReportRequest {
            symbol,
            timeframe: pb::Timeframe::from(query.timeframe.unwrap_or(Timeframe::OneDay)).into(),
            start: query.start.map(wire::timestamp),
            end: query.end.map(wire::timestamp),
            max_issues: query.max_issues.unwrap_or_default(),
            page_token: query.page_token.unwrap_or_default(),
        })
        .await?
        .into_inner();
    Ok(axum::Json(QualityReport {
        first_bar_start: r.first_bar_start.as_ref().and_then(wire::datetime),
        last_bar_start: r.last_bar_start.as_ref().and_then(wire::datetime),
        bars_checked: r.bars_checked,
        bars_clean: r.bars_clean,
        counts: r
            .counts
            .iter()
            .map(|c| FlagCount {
                flag: flag_name(c.flag),
                count: c.count,
            })
            .collect(),
        issues: r
            .issues
            .iter()
            .map(|i| QualityIssue {
                flag: flag_name(i.flag),
                bar_start: i.bar_start.as_ref().and_then(wire::datetime),
                detail: i.detail.clone(),
                detected_at: i.detected_at.as_ref().and_then(wire::datetime),
            })
            .collect(),
        issues_truncated: r.issues_truncated,
        missing_sessions: r
            .missing_sessions
            .iter()
            .filter_map(wire::datetime)
            .collect(),
        calendar: r.calendar,
        next_page_token: r.next_page_token,
        symbol: r.symbol,
    }))
}
