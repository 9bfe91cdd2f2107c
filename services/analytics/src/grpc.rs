//! The `AnalyticsService` gRPC API: parses requests into domain values, calls the analysis,
//! store and report modules, and translates the results. Role checks: every analysis and report
//! RPC needs an authenticated caller (reports only ever show their owner's jobs; an admin may
//! name another user); `Backfill` needs an admin; `ListSymbols` is public metadata.

use std::pin::Pin;
use std::sync::Arc;

use chrono::Utc;
use futures::Stream;
use mirai_platform::auth::{self, Principal, Role};
use mirai_platform::wire;
use mirai_proto::analytics::v1 as pb;
use mirai_proto::analytics::v1::analytics_service_server::AnalyticsService;
use sqlx::PgPool;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::analysis::{indicators as ind, statistics, trends};
use crate::backfill::StockData;
use crate::config::ReportSettings;
use crate::domain::{Range, Symbol, Timeframe};
use crate::error::{Error, Result};
use crate::reports::spec::{Format, Spec};
use crate::store::{bars, reports};
use crate::symbols;

/// What the RPCs share.
pub struct Api {
    pool: PgPool,
    stock_data: StockData,
    /// Wakes this replica's report workers when a job is queued.
    wake: Arc<Notify>,
    /// The per-user report caps.
    reports: ReportSettings,
}

impl Api {
    pub fn new(
        pool: PgPool,
        stock_data: StockData,
        wake: Arc<Notify>,
        reports: ReportSettings,
    ) -> Self {
        Self {
            pool,
            stock_data,
            wake,
            reports,
        }
    }

    /// The bars of `symbol` in `range`; NOT_FOUND when the read model holds none at all.
    async fn bars(
        &self,
        symbol: &Symbol,
        timeframe: Timeframe,
        range: &Range,
    ) -> Result<(crate::domain::BarSeries, i32)> {
        let loaded = bars::load(&self.pool, symbol, timeframe, range).await?;
        if loaded.0.is_empty() && !bars::exists(&self.pool, symbol, timeframe).await? {
            return Err(Error::NotFound(format!(
                "the read model holds no {} bars of {symbol}",
                timeframe.name()
            )));
        }
        Ok(loaded)
    }

    async fn indicators(&self, r: pb::GetIndicatorsRequest) -> Result<pb::GetIndicatorsResponse> {
        let symbol = Symbol::parse("symbol", &r.symbol)?;
        let timeframe = Timeframe::from_wire("timeframe", r.timeframe)?;
        let range = Range::from_wire(r.start.as_ref(), r.end.as_ref())?;
        let requests = ind::parse(&r.indicators)?;
        // With warm-up from history the indicators run over every bar before the range too
        // (recursive ones like the EMA depend on all of it, as in TA-Lib over the longer series).
        let load_range = if r.warm_up_from_history {
            Range {
                start: None,
                end: range.end,
            }
        } else {
            range
        };
        let (series, adjustment) = self.bars(&symbol, timeframe, &load_range).await?;
        let from = match range.start {
            Some(start) if r.warm_up_from_history => series.index_at(start),
            _ => 0,
        };
        let mut out = Vec::new();
        for (i, request) in requests.iter().enumerate() {
            let lines = ind::compute(i, request, &series, from)?;
            let params = ind::params_of(&request.indicator);
            let lookback = request.indicator.lookback().saturating_sub(from) as u32;
            out.extend(lines.into_iter().map(|line| pb::IndicatorSeries {
                name: line.name,
                indicator: request.kind.into(),
                output: line.output.to_owned(),
                params: params.clone().into_iter().collect(),
                lookback,
                values: statistics::optional_values(&line.values),
            }));
        }
        Ok(pb::GetIndicatorsResponse {
            symbol: symbol.to_string(),
            timeframe: timeframe.code(),
            adjustment,
            timestamps: series.start[from..]
                .iter()
                .map(|t| wire::timestamp(*t))
                .collect(),
            series: out,
        })
    }

    async fn statistics(&self, r: pb::GetStatisticsRequest) -> Result<pb::GetStatisticsResponse> {
        let symbol = Symbol::parse("symbol", &r.symbol)?;
        let timeframe = Timeframe::from_wire("timeframe", r.timeframe)?;
        if !timeframe.is_daily() {
            return Err(Error::invalid(
                "timeframe",
                "statistics are computed on daily bars (empyrical's 252-day annualisation)",
            ));
        }
        let range = Range::from_wire(r.start.as_ref(), r.end.as_ref())?;
        let options = statistics::Options::from_wire(&r)?;
        let (series, _) = self.bars(&symbol, timeframe, &range).await?;
        let benchmark = match r.benchmark.trim() {
            "" => None,
            raw => {
                let b = Symbol::parse("benchmark", raw)?;
                let (s, _) = self
                    .bars(&b, timeframe, &range)
                    .await
                    .map_err(|e| match e {
                        Error::NotFound(m) => Error::invalid("benchmark", m),
                        other => other,
                    })?;
                Some((b, s))
            }
        };
        let (stats, rolling) = statistics::compute(
            symbol.as_str(),
            &series,
            benchmark.as_ref().map(|(b, s)| (b.as_str(), s)),
            &options,
        )?;
        Ok(pb::GetStatisticsResponse {
            statistics: Some(stats),
            rolling,
        })
    }

    async fn trends(&self, r: pb::GetTrendsRequest) -> Result<pb::GetTrendsResponse> {
        let windows = trends::Windows::from_wire(&r)?;
        if r.symbols.len() > 1000 {
            return Err(Error::invalid("symbols", "at most 1,000 tickers"));
        }
        let symbols: Vec<Symbol> = if r.symbols.is_empty() {
            bars::active_symbols(&self.pool)
                .await?
                .iter()
                .filter_map(|s| Symbol::parse("symbols", s).ok())
                .collect()
        } else {
            let mut v = r
                .symbols
                .iter()
                .map(|s| Symbol::parse("symbols", s))
                .collect::<Result<Vec<_>, _>>()?;
            v.sort();
            v.dedup();
            v
        };
        let as_of = r
            .as_of
            .as_ref()
            .map(|t| {
                wire::datetime(t).ok_or_else(|| Error::invalid("as_of", "is not a valid timestamp"))
            })
            .transpose()?;
        let range = Range {
            start: None,
            // Inclusive of a bar starting exactly at as_of: one microsecond later, the
            // resolution of PostgreSQL's timestamptz (a nanosecond would round away).
            end: as_of.map(|t| t + chrono::Duration::microseconds(1)),
        };
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for symbol in symbols {
            let (series, _) = bars::load(&self.pool, &symbol, Timeframe::DAY, &range).await?;
            if series.is_empty() {
                missing.push(symbol.to_string());
            } else {
                found.push(trends::of(symbol.as_str(), &series, &windows));
            }
        }
        trends::rank(&mut found);
        Ok(pb::GetTrendsResponse {
            trends: found,
            missing,
        })
    }
}

/// The user a report RPC acts for: the caller, or (admins only) the user named.
fn owner(principal: &Principal, requested: &str) -> Result<Uuid> {
    let requested = requested.trim();
    let own = requested.is_empty() || requested.eq_ignore_ascii_case(&principal.user_id);
    if !own && !principal.has(Role::Admin) {
        return Err(Error::PermissionDenied(
            "reports belong to their owner: user_id must be the caller's".into(),
        ));
    }
    let id = if requested.is_empty() {
        &principal.user_id
    } else {
        requested
    };
    Uuid::parse_str(id).map_err(|_| Error::invalid("user_id", format!("{id:?} is not a UUID")))
}

fn report_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw.trim())
        .map_err(|_| Error::invalid("report_id", format!("{raw:?} is not a report id")))
}

/// Largest chunk of a download (the proto's limit).
const CHUNK: usize = 64 * 1024;

type DownloadStream =
    Pin<Box<dyn Stream<Item = Result<pb::DownloadReportResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AnalyticsService for Api {
    #[tracing::instrument(skip_all, fields(symbol = %request.get_ref().symbol))]
    async fn get_indicators(
        &self,
        request: Request<pb::GetIndicatorsRequest>,
    ) -> Result<Response<pb::GetIndicatorsResponse>, Status> {
        auth::require(&request, &[])?;
        Ok(Response::new(self.indicators(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(symbol = %request.get_ref().symbol))]
    async fn get_statistics(
        &self,
        request: Request<pb::GetStatisticsRequest>,
    ) -> Result<Response<pb::GetStatisticsResponse>, Status> {
        auth::require(&request, &[])?;
        Ok(Response::new(self.statistics(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn get_trends(
        &self,
        request: Request<pb::GetTrendsRequest>,
    ) -> Result<Response<pb::GetTrendsResponse>, Status> {
        auth::require(&request, &[])?;
        Ok(Response::new(self.trends(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn create_report(
        &self,
        request: Request<pb::CreateReportRequest>,
    ) -> Result<Response<pb::CreateReportResponse>, Status> {
        let principal = auth::require(&request, &[])?;
        let r = request.into_inner();
        let user = owner(&principal, &r.user_id)?;
        let spec = Spec::from_wire(&r, Utc::now())?;
        let job = reports::create(&self.pool, user, &spec, &self.reports).await?;
        self.wake.notify_one();
        tracing::info!(message = "Report queued.", report_id = %job.id, subject = spec.subject.kind());
        Ok(Response::new(pb::CreateReportResponse {
            report: Some(job.to_wire()),
        }))
    }

    async fn get_report(
        &self,
        request: Request<pb::GetReportRequest>,
    ) -> Result<Response<pb::GetReportResponse>, Status> {
        let principal = auth::require(&request, &[])?;
        let r = request.into_inner();
        let user = owner(&principal, &r.user_id)?;
        let id = report_id(&r.report_id)?;
        let job = reports::get(&self.pool, user, id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("report {id} not found")))?;
        Ok(Response::new(pb::GetReportResponse {
            report: Some(job.to_wire()),
        }))
    }

    async fn list_reports(
        &self,
        request: Request<pb::ListReportsRequest>,
    ) -> Result<Response<pb::ListReportsResponse>, Status> {
        let principal = auth::require(&request, &[])?;
        let r = request.into_inner();
        let user = owner(&principal, &r.user_id)?;
        let limit = wire::page_size(r.page_size, 20, 100)?;
        let before = wire::page_after_id(&r.page_token)?;
        let statuses = r
            .statuses
            .iter()
            .map(|s| {
                pb::ReportStatus::try_from(*s)
                    .ok()
                    .and_then(reports::status_text)
                    .ok_or_else(|| {
                        Error::invalid("statuses", format!("{s} is not a report status"))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut jobs = reports::list(&self.pool, user, &statuses, before, i64::from(limit) + 1)
            .await
            .map_err(Error::from)?;
        let next_page_token =
            wire::next_page_token(&mut jobs, limit as usize, |j| j.id.to_string());
        Ok(Response::new(pb::ListReportsResponse {
            reports: jobs.iter().map(reports::Job::to_wire).collect(),
            next_page_token,
        }))
    }

    async fn download_report(
        &self,
        request: Request<pb::DownloadReportRequest>,
    ) -> Result<Response<DownloadStream>, Status> {
        let principal = auth::require(&request, &[])?;
        let r = request.into_inner();
        let user = owner(&principal, &r.user_id)?;
        let id = report_id(&r.report_id)?;
        let format = Format::from_wire("format", r.format).map_err(Error::from)?;
        let job = reports::get(&self.pool, user, id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("report {id} not found")))?;
        if job.status != pb::ReportStatus::Succeeded {
            return Err(Error::FailedPrecondition(format!(
                "report {id} is {}; files can be downloaded once it has SUCCEEDED",
                job.status
                    .as_str_name()
                    .trim_start_matches("REPORT_STATUS_")
            ))
            .into());
        }
        let (meta, content) = reports::file(&self.pool, user, id, format)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "report {id} has no {} file (formats requested: {})",
                    format.extension(),
                    job.spec
                        .formats
                        .iter()
                        .map(|f| f.extension())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let mut messages = Vec::with_capacity(content.len() / CHUNK + 1);
        let mut chunks = content.chunks(CHUNK);
        messages.push(Ok(pb::DownloadReportResponse {
            file: Some(meta),
            data: chunks.next().map(<[u8]>::to_vec).unwrap_or_default(),
        }));
        messages.extend(chunks.map(|c| {
            Ok(pb::DownloadReportResponse {
                file: None,
                data: c.to_vec(),
            })
        }));
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }

    async fn delete_report(
        &self,
        request: Request<pb::DeleteReportRequest>,
    ) -> Result<Response<()>, Status> {
        let principal = auth::require(&request, &[])?;
        let r = request.into_inner();
        let user = owner(&principal, &r.user_id)?;
        let id = report_id(&r.report_id)?;
        reports::delete(&self.pool, user, id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(()))
    }

    #[tracing::instrument(skip_all, fields(symbol = %request.get_ref().symbol))]
    async fn backfill(
        &self,
        request: Request<pb::BackfillRequest>,
    ) -> Result<Response<pb::BackfillResponse>, Status> {
        auth::require(&request, &[Role::Admin])?;
        let r = request.into_inner();
        let symbol = Symbol::parse("symbol", &r.symbol).map_err(Error::from)?;
        let timeframe = Timeframe::from_wire("timeframe", r.timeframe).map_err(Error::from)?;
        let range = Range::from_wire(r.start.as_ref(), r.end.as_ref()).map_err(Error::from)?;
        let outcome = self
            .stock_data
            .backfill(&self.pool, &symbol, timeframe, range)
            .await?;
        tracing::info!(
            message = "Backfill done.",
            fetched = outcome.fetched,
            inserted = outcome.applied.inserted,
            updated = outcome.applied.updated
        );
        Ok(Response::new(pb::BackfillResponse {
            symbol: symbol.to_string(),
            bars_fetched: outcome.fetched,
            bars_inserted: outcome.applied.inserted,
            bars_updated: outcome.applied.updated,
            first_bar: outcome.first.map(wire::timestamp),
            last_bar: outcome.last.map(wire::timestamp),
            elapsed: prost_types::Duration::try_from(outcome.elapsed).ok(),
        }))
    }

    async fn list_symbols(
        &self,
        request: Request<pb::ListSymbolsRequest>,
    ) -> Result<Response<pb::ListSymbolsResponse>, Status> {
        symbols::list(&self.pool, request.get_ref())
            .await
            .map(Response::new)
    }
}
