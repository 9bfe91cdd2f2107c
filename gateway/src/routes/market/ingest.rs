//! `/v1/admin/bars/import` and `/v1/admin/replays`: getting market data in (stock-data).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use mirai_platform::wire;
use mirai_proto::stock::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Admin, forward};
use crate::problem::{Json, Path, Problem, Query};
use crate::routes::shapes::Timeframe;
use crate::routes::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(import))
        .routes(routes!(start_replay, list_replays))
        .routes(routes!(replay_status))
        .routes(routes!(stop_replay))
}

/// Query of `POST /v1/admin/bars/import`; the body is the file.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Default `1Day`.
    pub timeframe: Option<Timeframe>,
    /// Ticker for rows without a `symbol` column.
    pub symbol: Option<String>,
    /// IANA zone of timestamps without an offset; default the exchange's.
    pub time_zone: Option<String>,
    /// Recorded on the bars; default `import`.
    pub source: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

/// Bulk import of bars (admin): the `text/csv` or `application/x-ndjson` body is streamed to
/// stock-data (PostgreSQL `COPY`). Good rows are kept, bad ones reported with line numbers and
/// reasons; re-importing the same rows changes nothing. Not subject to the body-size limit of
/// the other routes.
#[utoipa::path(post, path = "/v1/admin/bars/import", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    params(ImportQuery),
    request_body(content((String = "text/csv"), (String = "application/x-ndjson")), description = "The file"),
    responses(
        (status = 200, description = "The import report", body = ImportReport),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither CSV nor NDJSON", body = Problem, content_type = "application/problem+json"),
    ))]
async fn import(
    State(state): State<AppState>,
    Admin(admin): Admin,
    headers: HeaderMap,
    Query(query): Query<ImportQuery>,
    body: Body,
) -> Result<impl IntoResponse, Problem> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let format = match content_type.split(';').next().unwrap_or_default().trim() {
        "text/csv" => pb::ImportFormat::Csv,
        "application/x-ndjson" | "application/jsonl" => pb::ImportFormat::Ndjson,
        other => {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            )
            .detail(format!(
                "send text/csv or application/x-ndjson, not `{other}`"
            )));
        }
    };
    let options = pb::ImportOptions {
        format: format.into(),
        timeframe: pb::Timeframe::from(query.timeframe.unwrap_or(Timeframe::OneDay)).into(),
        adjustment: pb::Adjustment::Raw.into(),
        source: query.source.unwrap_or_default(),
        default_symbol: query.symbol.unwrap_or_default(),
        time_zone: query.time_zone.unwrap_or_default(),
        file_name: String::new(),
        dry_run: query.dry_run,
    };
    let first = futures::stream::once(async move {
        pb::ImportBarsRequest {
            part: Some(pb::import_bars_request::Part::Options(options)),
        }
    });
    // A broken upload ends the stream early; the service then reports what it received.
    let chunks = body
        .into_data_stream()
        .take_while(|chunk| std::future::ready(chunk.is_ok()))
        .filter_map(|chunk| async move { chunk.ok() })
        .map(|chunk| pb::ImportBarsRequest {
            part: Some(pb::import_bars_request::Part::Data(chunk.to_vec())),
        });
    let request = forward(first.chain(chunks), &admin)?;
    let report = state
        .upstreams
        .stock_data()
        .import_bars(request)
        .await?
        .into_inner();
    Ok(axum::Json(ImportReport::from(report)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RowError {
    pub line: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub column: String,
    pub reason: String,
}

/// The answer of an import.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    pub import_id: String,
    pub dry_run: bool,
    pub rows_read: u64,
    pub rows_inserted: u64,
    pub rows_unchanged: u64,
    pub rows_updated: u64,
    pub rows_rejected: u64,
    pub rows_flagged: u64,
    pub errors: Vec<RowError>,
    pub errors_truncated: bool,
    pub symbols: Vec<String>,
    pub first_bar_start: Option<DateTime<Utc>>,
    pub last_bar_start: Option<DateTime<Utc>>,
    pub bytes_read: u64,
}

impl From<pb::ImportBarsResponse> for ImportReport {
    fn from(r: pb::ImportBarsResponse) -> Self {
        Self {
            first_bar_start: r.first_bar_start.as_ref().and_then(wire::datetime),
            last_bar_start: r.last_bar_start.as_ref().and_then(wire::datetime),
            import_id: r.import_id,
            dry_run: r.dry_run,
            rows_read: r.rows_read,
            rows_inserted: r.rows_inserted,
            rows_unchanged: r.rows_unchanged,
            rows_updated: r.rows_updated,
            rows_rejected: r.rows_rejected,
            rows_flagged: r.rows_flagged,
            errors: r
                .errors
                .into_iter()
                .map(|e| RowError {
                    line: e.line,
                    column: e.column,
                    reason: e.reason,
                })
                .collect(),
            errors_truncated: r.errors_truncated,
            symbols: r.symbols,
            bytes_read: r.bytes_read,
        }
    }
}

/// Body of `POST /v1/admin/replays`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReplay {
    pub symbol: String,
    pub timeframe: Option<Timeframe>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Default 1 (one trading day per second for daily bars), at most 1,000.
    pub bars_per_second: Option<f64>,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub quotes_per_bar: u32,
}

/// A replay as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replay {
    pub symbol: String,
    /// `running`, `stopped`, `finished` or `failed`.
    pub state: String,
    pub bars_emitted: u64,
    pub bars_total: u64,
    pub position: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl From<pb::ReplayStatus> for Replay {
    fn from(s: pb::ReplayStatus) -> Self {
        Self {
            state: pb::ReplayState::try_from(s.state)
                .unwrap_or_default()
                .as_str_name()
                .trim_start_matches("REPLAY_STATE_")
                .to_ascii_lowercase(),
            position: s.position.as_ref().and_then(wire::datetime),
            started_at: s.started_at.as_ref().and_then(wire::datetime),
            ended_at: s.ended_at.as_ref().and_then(wire::datetime),
            symbol: s.symbol,
            bars_emitted: s.bars_emitted,
            bars_total: s.bars_total,
            error: s.error,
        }
    }
}

fn replay_of(status: Option<pb::ReplayStatus>) -> Result<Replay, Problem> {
    status
        .map(Replay::from)
        .ok_or_else(|| Problem::missing("a status"))
}

/// Starts playing a symbol's stored history forward as live bars and quotes (admin), emitting
/// the same events as live data.
#[utoipa::path(post, path = "/v1/admin/replays", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    request_body = NewReplay,
    responses(
        (status = 201, description = "The replay", body = Replay),
        (status = 409, description = "A replay of this symbol is running", body = Problem, content_type = "application/problem+json"),
    ))]
async fn start_replay(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Json(body): Json<NewReplay>,
) -> Result<impl IntoResponse, Problem> {
    let request = pb::StartReplayRequest {
        symbol: body.symbol,
        timeframe: pb::Timeframe::from(body.timeframe.unwrap_or(Timeframe::OneDay)).into(),
        from: body.from.map(wire::timestamp),
        to: body.to.map(wire::timestamp),
        bars_per_second: body.bars_per_second.unwrap_or(1.0),
        seed: body.seed,
        quotes_per_bar: body.quotes_per_bar,
        actor_user_id: admin.user_id.clone(),
    };
    let request = forward(request, &admin)?;
    let replay = replay_of(
        state
            .upstreams
            .stock_data()
            .start_replay(request)
            .await?
            .into_inner()
            .status,
    )?;
    let location = format!("/v1/admin/replays/{}", replay.symbol);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(replay),
    ))
}

/// Every replay this service instance knows (admin).
#[utoipa::path(get, path = "/v1/admin/replays", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "Replays", body = Vec<Replay>)))]
async fn list_replays(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> Result<axum::Json<Vec<Replay>>, Problem> {
    let request = forward(pb::ListReplaysRequest {}, &admin)?;
    let response = state
        .upstreams
        .stock_data()
        .list_replays(request)
        .await?
        .into_inner();
    Ok(axum::Json(
        response.replays.into_iter().map(Replay::from).collect(),
    ))
}

/// One replay's progress (admin).
#[utoipa::path(get, path = "/v1/admin/replays/{symbol}", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    params(("symbol" = String, Path, description = "Ticker")),
    responses(
        (status = 200, description = "The replay", body = Replay),
        (status = 404, description = "No replay of this symbol", body = Problem, content_type = "application/problem+json"),
    ))]
async fn replay_status(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(symbol): Path<String>,
) -> Result<axum::Json<Replay>, Problem> {
    let request = forward(pb::GetReplayStatusRequest { symbol }, &admin)?;
    let response = state
        .upstreams
        .stock_data()
        .get_replay_status(request)
        .await?;
    Ok(axum::Json(replay_of(response.into_inner().status)?))
}

/// Stops a replay (admin); idempotent.
#[utoipa::path(post, path = "/v1/admin/replays/{symbol}/stop", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    params(("symbol" = String, Path, description = "Ticker")),
    responses(
        (status = 200, description = "The replay, stopped", body = Replay),
        (status = 404, description = "No replay of this symbol is known", body = Problem, content_type = "application/problem+json"),
    ))]
async fn stop_replay(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(symbol): Path<String>,
) -> Result<axum::Json<Replay>, Problem> {
    let request = forward(pb::StopReplayRequest { symbol }, &admin)?;
    let response = state.upstreams.stock_data().stop_replay(request).await?;
    Ok(axum::Json(replay_of(response.into_inner().status)?))
}
