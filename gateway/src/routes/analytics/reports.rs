//! `/v1/reports`: asynchronous report jobs and their files.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use mirai_platform::wire;
use mirai_proto::analytics::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Caller, forward};
use crate::problem::{Json, Path, Problem, Query};
use crate::routes::fields::{enum_name, items, time};
use crate::routes::shapes::ModelRef;
use crate::routes::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_report, list_reports))
        .routes(routes!(get_report, delete_report))
        .routes(routes!(download_report))
}

// === Reports ===

/// A report file format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// Every number of the report (`application/json`).
    Json,
    /// The time series, one row per bar (`text/csv`).
    Csv,
    /// The charts as one tear sheet (`image/png`).
    Png,
    /// The charts as one tear sheet (`image/svg+xml`).
    Svg,
}

impl From<ReportFormat> for pb::ReportFormat {
    fn from(f: ReportFormat) -> Self {
        match f {
            ReportFormat::Json => Self::Json,
            ReportFormat::Csv => Self::Csv,
            ReportFormat::Png => Self::Png,
            ReportFormat::Svg => Self::Svg,
        }
    }
}

/// Body of `POST /v1/reports`: exactly one of `symbol`, `watchlist` and `model`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReport {
    /// One ticker: price with moving averages and Bollinger bands, drawdown, rolling Sharpe.
    pub symbol: Option<String>,
    /// 1–100 tickers: statistics side by side, growth, drawdowns, trends.
    pub watchlist: Option<Vec<String>>,
    /// A model version: its forecast interval against what happened, scoreboard, history.
    pub model: Option<ModelRef>,
    /// Inclusive start (RFC 3339); default five years before `end`.
    pub start: Option<DateTime<Utc>>,
    /// Exclusive end; default now.
    pub end: Option<DateTime<Utc>>,
    /// Default all four.
    #[serde(default)]
    pub formats: Vec<ReportFormat>,
    /// Benchmark ticker for the statistics, e.g. `SPY`.
    pub benchmark: Option<String>,
    /// At most 200 characters; default generated.
    pub title: Option<String>,
}

/// One produced file.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportFile {
    /// `json`, `csv`, `png` or `svg`.
    pub format: String,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: u64,
    /// Hex sha256 of the content.
    pub sha256: String,
    /// Where to download it.
    pub url: String,
}

/// A report job.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportJob {
    pub report_id: String,
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watchlist: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub formats: Vec<String>,
    pub title: String,
    /// `queued`, `running`, `succeeded` or `failed` (a job never stays running past its
    /// timeout).
    pub status: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Produced files (succeeded only).
    pub files: Vec<ReportFile>,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When the job and its files are deleted.
    pub expires_at: Option<DateTime<Utc>>,
}

fn format_name(value: i32) -> String {
    enum_name(
        pb::ReportFormat::try_from(value)
            .ok()
            .map(|f| f.as_str_name()),
        "REPORT_FORMAT_",
    )
}

fn job_of(job: Option<pb::ReportJob>) -> Result<ReportJob, Problem> {
    use pb::report_subject::Subject;
    let j = job.ok_or_else(|| Problem::missing("a report"))?;
    let (mut symbol, mut watchlist, mut model) = (None, None, None);
    match j.subject.and_then(|s| s.subject) {
        Some(Subject::Symbol(s)) => symbol = Some(s),
        Some(Subject::Watchlist(w)) => watchlist = Some(w.symbols),
        Some(Subject::Model(m)) => model = Some(ModelRef::from(m)),
        None => {}
    }
    let files = j
        .files
        .into_iter()
        .map(|f| {
            let format = format_name(f.format);
            ReportFile {
                url: format!("/v1/reports/{}/files/{format}", j.report_id),
                format,
                file_name: f.file_name,
                content_type: f.content_type,
                size_bytes: f.size_bytes,
                sha256: f.sha256,
            }
        })
        .collect();
    Ok(ReportJob {
        symbol,
        watchlist,
        model,
        start: time(&j.start),
        end: time(&j.end),
        formats: j.formats.iter().map(|f| format_name(*f)).collect(),
        status: enum_name(
            pb::ReportStatus::try_from(j.status)
                .ok()
                .map(|s| s.as_str_name()),
            "REPORT_STATUS_",
        ),
        files,
        created_at: time(&j.created_at),
        started_at: time(&j.started_at),
        finished_at: time(&j.finished_at),
        expires_at: time(&j.expires_at),
        report_id: j.report_id,
        user_id: j.user_id,
        title: j.title,
        error: j.error,
    })
}

/// Starts a report job for a symbol, a watchlist or a model version and answers at once with
/// the queued job; poll its `Location` until it has succeeded or failed (a
/// `report.completed` event is emitted too).
#[utoipa::path(post, path = "/v1/reports", tag = "analytics",
    security(("bearer" = []), ("api_key" = [])),
    request_body = CreateReport,
    responses(
        (status = 202, description = "The job, queued", body = ReportJob,
            headers(("location" = String, description = "The job's URL"))),
        (status = 400, description = "No or several subjects, bad tickers, inverted range, unknown format", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many reports queued or running, or stored (count or bytes), for the caller", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_report(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Json(body): Json<CreateReport>,
) -> Result<Response, Problem> {
    use pb::report_subject::Subject;
    let subject = match (body.symbol, body.watchlist, body.model) {
        (Some(symbol), None, None) => Subject::Symbol(symbol),
        (None, Some(symbols), None) => Subject::Watchlist(pb::Watchlist { symbols }),
        (None, None, Some(model)) => Subject::Model(model.into()),
        _ => {
            return Err(Problem::invalid(
                "subject: give exactly one of symbol, watchlist and model",
            ));
        }
    };
    let request = forward(
        pb::CreateReportRequest {
            user_id: principal.user_id.clone(),
            subject: Some(pb::ReportSubject {
                subject: Some(subject),
            }),
            start: body.start.map(wire::timestamp),
            end: body.end.map(wire::timestamp),
            formats: body
                .formats
                .into_iter()
                .map(|f| pb::ReportFormat::from(f).into())
                .collect(),
            benchmark: body.benchmark.unwrap_or_default(),
            title: body.title.unwrap_or_default(),
        },
        &principal,
    )?;
    let response = state
        .upstreams
        .analytics()
        .create_report(request)
        .await?
        .into_inner();
    let job = job_of(response.report)?;
    let location = format!("/v1/reports/{}", job.report_id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(job),
    )
        .into_response())
}

/// Query of `GET /v1/reports`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportsQuery {
    /// Comma-separated states to include (`queued`, `running`, `succeeded`, `failed`);
    /// default all.
    pub status: Option<String>,
    /// 1–100, default 20.
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportPage {
    /// Newest first.
    pub reports: Vec<ReportJob>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

/// The caller's report jobs, newest first.
#[utoipa::path(get, path = "/v1/reports", tag = "analytics",
    security(("bearer" = []), ("api_key" = [])),
    params(ReportsQuery),
    responses(
        (status = 200, description = "A page of jobs", body = ReportPage),
        (status = 400, description = "Unknown status or page token", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_reports(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Query(query): Query<ReportsQuery>,
) -> Result<axum::Json<ReportPage>, Problem> {
    let statuses = items(query.status.as_deref())
        .map(|s| {
            pb::ReportStatus::from_str_name(&format!("REPORT_STATUS_{}", s.to_ascii_uppercase()))
                .filter(|v| *v != pb::ReportStatus::Unspecified)
                .map(i32::from)
                .ok_or_else(|| {
                    Problem::invalid(format!(
                        "status: {s:?} is not queued, running, succeeded or failed"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let request = forward(
        pb::ListReportsRequest {
            user_id: principal.user_id.clone(),
            statuses,
            page_size: query.page_size.unwrap_or_default(),
            page_token: query.page_token.unwrap_or_default(),
        },
        &principal,
    )?;
    let response = state
        .upstreams
        .analytics()
        .list_reports(request)
        .await?
        .into_inner();
    Ok(axum::Json(ReportPage {
        reports: response
            .reports
            .into_iter()
            .map(|j| job_of(Some(j)))
            .collect::<Result<_, _>>()?,
        next_page_token: response.next_page_token,
    }))
}

/// One of the caller's report jobs: its state and, once it has succeeded, its files.
#[utoipa::path(get, path = "/v1/reports/{report_id}", tag = "analytics",
    security(("bearer" = []), ("api_key" = [])),
    params(("report_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = ReportJob),
        (status = 400, description = "Not a report id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such report of the caller", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_report(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(report_id): Path<String>,
) -> Result<axum::Json<ReportJob>, Problem> {
    let request = forward(
        pb::GetReportRequest {
            user_id: principal.user_id.clone(),
            report_id,
        },
        &principal,
    )?;
    let response = state
        .upstreams
        .analytics()
        .get_report(request)
        .await?
        .into_inner();
    Ok(axum::Json(job_of(response.report)?))
}

/// Deletes one of the caller's report jobs and its files; deleting one that is gone succeeds.
#[utoipa::path(delete, path = "/v1/reports/{report_id}", tag = "analytics",
    security(("bearer" = []), ("api_key" = [])),
    params(("report_id" = String, Path, description = "Job id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not a report id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_report(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(report_id): Path<String>,
) -> Result<StatusCode, Problem> {
    let request = forward(
        pb::DeleteReportRequest {
            user_id: principal.user_id.clone(),
            report_id,
        },
        &principal,
    )?;
    state.upstreams.analytics().delete_report(request).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A file's bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct FileBytes(pub Vec<u8>);

/// Downloads one file of a succeeded report, streamed, with its content type and file name.
#[utoipa::path(get, path = "/v1/reports/{report_id}/files/{format}", tag = "analytics",
    security(("bearer" = []), ("api_key" = [])),
    params(
        ("report_id" = String, Path, description = "Job id"),
        ("format" = ReportFormat, Path, description = "Which file"),
    ),
    responses(
        (status = 200, description = "The file, as an attachment",
            content((FileBytes = "application/json"), (FileBytes = "text/csv"), (FileBytes = "image/png"), (FileBytes = "image/svg+xml"))),
        (status = 400, description = "Not a report id or format", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such report, or a format the job did not produce", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has not succeeded (yet)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn download_report(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path((report_id, format)): Path<(String, ReportFormat)>,
) -> Result<Response, Problem> {
    let request = forward(
        pb::DownloadReportRequest {
            user_id: principal.user_id.clone(),
            report_id,
            format: pb::ReportFormat::from(format).into(),
        },
        &principal,
    )?;
    let mut stream = state
        .upstreams
        .analytics()
        .download_report(request)
        .await?
        .into_inner();
    // The first message carries the metadata; errors before it are the request's answer.
    let first = stream
        .message()
        .await?
        .ok_or_else(|| Problem::from(tonic::Status::internal("upstream sent no file")))?;
    let meta = first
        .file
        .ok_or_else(|| Problem::from(tonic::Status::internal("upstream sent no file metadata")))?;
    let rest = stream.map(|m| m.map(|m| Bytes::from(m.data)));
    let body = Body::from_stream(
        futures::stream::once(async move { Ok(Bytes::from(first.data)) }).chain(rest),
    );
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    let value = |text: &str| {
        HeaderValue::from_str(text)
            .map_err(|_| Problem::from(tonic::Status::internal("upstream sent a bad file name")))
    };
    headers.insert(header::CONTENT_TYPE, value(&meta.content_type)?);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size_bytes));
    headers.insert(
        header::CONTENT_DISPOSITION,
        value(&format!("attachment; filename=\"{}\"", meta.file_name))?,
    );
    Ok(response)
}
