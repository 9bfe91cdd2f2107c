//! The `StockDataService` gRPC API: parses requests, calls the modules, translates the answers
//! and errors. No rules live here.

use futures::StreamExt as _;
use mirai_platform::wire;
use mirai_proto::stock::v1 as pb;
use mirai_proto::stock::v1::stock_data_service_server::StockDataService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::bars_cache::BarsCache;
use crate::domain::bars::{Query, QueryError};
use crate::domain::import::Options;
use crate::domain::quality::ReportQuery;
use crate::domain::{DomainError, NewSymbol, Reference, Search, Ticker};
use crate::error::{Error, Result, db};
use crate::quotes::Quotes;
use crate::replay::Replays;
use crate::store::tracking::{self, Tracked};
use crate::{bars, import, quality};
use crate::{store, symbols};

/// The stream type tonic's generated trait expects (same as its private `BoxStream`).
type QuoteStream = futures::stream::BoxStream<'static, Result<pb::StreamQuotesResponse, Status>>;

pub struct Api {
    pool: PgPool,
    quotes: Quotes,
    replays: Replays,
    quality: quality::Settings,
    tracking_capacity: u32,
    bars: BarsCache,
}

impl Api {
    pub fn new(
        pool: PgPool,
        quotes: Quotes,
        replays: Replays,
        quality: quality::Settings,
        tracking_capacity: u32,
        bars: BarsCache,
    ) -> Self {
        Self {
            replays,
            quotes,
            pool,
            quality,
            tracking_capacity,
            bars,
        }
    }
}

/// Admin RPCs check the caller's role themselves too (defence in depth behind the gateway).
fn require_admin<T>(request: &Request<T>) -> Result<mirai_platform::auth::Principal, Status> {
    mirai_platform::auth::require(request, &[mirai_platform::auth::Role::Admin])
}

/// A ticker from the request, in the service's errors.
fn ticker(raw: &str) -> Result<Ticker> {
    Ok(Ticker::parse(raw)?)
}

/// A domain value that does not parse, as the caller sees it.
fn invalid(error: DomainError) -> Error {
    error.into()
}

#[tonic::async_trait]
impl StockDataService for Api {
    async fn stream_quotes(
        &self,
        request: Request<pb::StreamQuotesRequest>,
    ) -> Result<Response<QuoteStream>, Status> {
        let request = request.into_inner();
        if request.symbols.is_empty() || request.symbols.len() > 500 {
            return Err(Error::invalid("symbols", "1-500 tickers").into());
        }
        let mut wanted = std::collections::BTreeSet::new();
        for raw in &request.symbols {
            let ticker = ticker(raw)?;
            store::symbols::get(&self.pool, &ticker)
                .await
                .map_err(db("symbol"))?
                .ok_or_else(|| {
                    Error::invalid("symbols", format!("{} is not listed", ticker.as_str()))
                })?;
            wanted.insert(ticker.as_str().to_owned());
        }
        // Subscribe before reading the snapshot, so no update falls in between.
        let updates = self.quotes.subscribe();
        let mut snapshot = Vec::new();
        if !request.skip_snapshot {
            for symbol in &wanted {
                if let Some(quote) = self.quotes.get(symbol).await.map_err(db("quote"))? {
                    snapshot.push(Ok(pb::StreamQuotesResponse {
                        quote: Some(quote),
                        snapshot: true,
                        dropped: 0,
                    }));
                }
            }
        }
        let live = futures::stream::unfold(
            (updates, wanted, 0u64),
            |(mut updates, wanted, mut dropped)| async move {
                loop {
                    match updates.recv().await {
                        Ok(quote) if wanted.contains(&quote.symbol) => {
                            let message = pb::StreamQuotesResponse {
                                quote: Some(quote),
                                snapshot: false,
                                dropped,
                            };
                            return Some((Ok(message), (updates, wanted, dropped)));
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => dropped += n,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        );
        Ok(Response::new(
            futures::stream::iter(snapshot).chain(live).boxed(),
        ))
    }

    async fn add_symbol(
        &self,
        request: Request<pb::AddSymbolRequest>,
    ) -> Result<Response<pb::AddSymbolResponse>, Status> {
        require_admin(&request)?;
        let request = request.into_inner();
        let symbol = request
            .symbol
            .as_ref()
            .ok_or_else(|| Error::invalid("symbol", "required"))?;
        let new = NewSymbol::parse(symbol).map_err(invalid)?;
        let mut tx = self.pool.begin().await.map_err(db("symbol"))?;
        let row = store::symbols::list(&mut tx, &new)
            .await
            .map_err(db("symbol"))?
            .ok_or_else(|| {
                Error::AlreadyExists(format!("symbol {} is already listed", new.ticker.as_str()))
            })?;
        tx.commit().await.map_err(db("symbol"))?;
        tracing::info!(message = "Symbol listed.", symbol = %row.symbol, actor = %request.actor_user_id);
        Ok(Response::new(pb::AddSymbolResponse {
            symbol: Some(row.into()),
        }))
    }

    async fn delist_symbol(
        &self,
        request: Request<pb::DelistSymbolRequest>,
    ) -> Result<Response<pb::DelistSymbolResponse>, Status> {
        require_admin(&request)?;
        let request = request.into_inner();
        let ticker = ticker(&request.symbol)?;
        let reason = request.reason.trim();
        if !mirai_platform::wire::is_plain_text(reason, 500) {
            return Err(Error::invalid(
                "reason",
                "at most 500 characters without control characters",
            )
            .into());
        }
        let mut tx = self.pool.begin().await.map_err(db("symbol"))?;
        let row = store::symbols::delist(&mut tx, &ticker, reason)
            .await
            .map_err(db("symbol"))?
            .ok_or_else(|| not_found(&ticker))?;
        tx.commit().await.map_err(db("symbol"))?;
        Ok(Response::new(pb::DelistSymbolResponse {
            symbol: Some(row.into()),
        }))
    }

    async fn get_bars(
        &self,
        request: Request<pb::GetBarsRequest>,
    ) -> Result<Response<pb::GetBarsResponse>, Status> {
        let query = Query::parse(request.get_ref()).map_err(|e| match e {
            QueryError::Domain(e) => Status::from(invalid(e)),
            QueryError::PartialBars => Status::unimplemented(e.to_string()),
        })?;
        let page = self
            .bars
            .get_or_load(&query, bars::get(&self.pool, &query))
            .await?;
        Ok(Response::new(page))
    }

    async fn import_bars(
        &self,
        request: Request<tonic::Streaming<pb::ImportBarsRequest>>,
    ) -> Result<Response<pb::ImportBarsResponse>, Status> {
        require_admin(&request)?;
        use pb::import_bars_request::Part;
        let mut stream = request.into_inner();
        let options = match stream.message().await? {
            Some(pb::ImportBarsRequest {
                part: Some(Part::Options(options)),
            }) => Options::parse(&options).map_err(invalid)?,
            _ => {
                return Err(
                    Error::invalid("options", "the first message must carry the options").into(),
                );
            }
        };
        let mut body = Vec::new();
        while let Some(message) = stream.message().await? {
            match message.part {
                Some(Part::Data(chunk)) => {
                    if body.len() + chunk.len() > import::MAX_BYTES {
                        return Err(Error::ResourceExhausted(format!(
                            "uploads are limited to {} MiB; split the file",
                            import::MAX_BYTES >> 20
                        ))
                        .into());
                    }
                    body.extend_from_slice(&chunk);
                }
                _ => return Err(Error::invalid("options", "sent more than once").into()),
            }
        }
        let response = import::run(&self.pool, &self.quality, &options, &body).await;
        // Whatever committed (the file's symbols, a rejection's findings) is read at once.
        self.bars.forget_all();
        let response = response?;
        tracing::info!(
            message = "Bars imported.",
            import_id = %response.import_id,
            read = response.rows_read,
            inserted = response.rows_inserted,
            updated = response.rows_updated,
            rejected = response.rows_rejected,
        );
        Ok(Response::new(response))
    }

    async fn get_quote(
        &self,
        request: Request<pb::GetQuoteRequest>,
    ) -> Result<Response<pb::GetQuoteResponse>, Status> {
        let ticker = ticker(&request.get_ref().symbol)?;
        let quote = self
            .quotes
            .get(ticker.as_str())
            .await
            .map_err(db("quote"))?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no data for {} (unknown symbol or no bars)",
                    ticker.as_str()
                ))
            })?;
        Ok(Response::new(pb::GetQuoteResponse { quote: Some(quote) }))
    }

    async fn batch_get_quotes(
        &self,
        request: Request<pb::BatchGetQuotesRequest>,
    ) -> Result<Response<pb::BatchGetQuotesResponse>, Status> {
        let symbols = &request.get_ref().symbols;
        if symbols.is_empty() || symbols.len() > 500 {
            return Err(Error::invalid("symbols", "1-500 tickers").into());
        }
        let mut seen = std::collections::HashSet::new();
        let mut response = pb::BatchGetQuotesResponse::default();
        for raw in symbols {
            let ticker = ticker(raw)?;
            if !seen.insert(ticker.clone()) {
                continue;
            }
            match self
                .quotes
                .get(ticker.as_str())
                .await
                .map_err(db("quote"))?
            {
                Some(quote) => response.quotes.push(quote),
                None => response.missing.push(ticker.as_str().to_owned()),
            }
        }
        Ok(Response::new(response))
    }

    async fn start_replay(
        &self,
        request: Request<pb::StartReplayRequest>,
    ) -> Result<Response<pb::StartReplayResponse>, Status> {
        require_admin(&request)?;
        let status = self.replays.start(request.into_inner()).await?;
        Ok(Response::new(pb::StartReplayResponse {
            status: Some(status),
        }))
    }

    async fn stop_replay(
        &self,
        request: Request<pb::StopReplayRequest>,
    ) -> Result<Response<pb::StopReplayResponse>, Status> {
        require_admin(&request)?;
        let ticker = ticker(&request.get_ref().symbol)?;
        let status = self
            .replays
            .stop(ticker.as_str())
            .await
            .ok_or_else(|| no_replay(&ticker))?;
        Ok(Response::new(pb::StopReplayResponse {
            status: Some(status),
        }))
    }

    async fn get_replay_status(
        &self,
        request: Request<pb::GetReplayStatusRequest>,
    ) -> Result<Response<pb::GetReplayStatusResponse>, Status> {
        require_admin(&request)?;
        let ticker = ticker(&request.get_ref().symbol)?;
        let status = self
            .replays
            .status(ticker.as_str())
            .ok_or_else(|| no_replay(&ticker))?;
        Ok(Response::new(pb::GetReplayStatusResponse {
            status: Some(status),
        }))
    }

    async fn list_replays(
        &self,
        request: Request<pb::ListReplaysRequest>,
    ) -> Result<Response<pb::ListReplaysResponse>, Status> {
        require_admin(&request)?;
        Ok(Response::new(pb::ListReplaysResponse {
            replays: self.replays.list(),
        }))
    }

    async fn update_symbol(
        &self,
        request: Request<pb::UpdateSymbolRequest>,
    ) -> Result<Response<pb::UpdateSymbolResponse>, Status> {
        let principal = require_admin(&request)?;
        let request = request.into_inner();
        let update = request
            .symbol
            .as_ref()
            .ok_or_else(|| Error::invalid("symbol", "required"))?;
        let ticker = ticker(&update.symbol)?;
        let mask = request
            .update_mask
            .clone()
            .map(|m| m.paths)
            .unwrap_or_default();
        let mut tx = self.pool.begin().await.map_err(db("symbol"))?;
        let row = symbols::update(&mut tx, update, &mask)
            .await?
            .ok_or_else(|| not_found(&ticker))?;
        tx.commit().await.map_err(db("symbol"))?;
        tracing::info!(message = "Symbol updated.", symbol = %row.symbol, fields = ?mask, actor = %principal.user_id);
        Ok(Response::new(pb::UpdateSymbolResponse {
            symbol: Some(row.into()),
        }))
    }

    async fn get_quality_report(
        &self,
        request: Request<pb::GetQualityReportRequest>,
    ) -> Result<Response<pb::GetQualityReportResponse>, Status> {
        let query = ReportQuery::parse(request.get_ref()).map_err(invalid)?;
        Ok(Response::new(
            quality::report::report(&self.pool, &query).await?,
        ))
    }

    async fn track_symbol(
        &self,
        request: Request<pb::TrackSymbolRequest>,
    ) -> Result<Response<pb::TrackSymbolResponse>, Status> {
        require_admin(&request)?;
        let request = request.into_inner();
        let ticker = ticker(&request.symbol)?;
        let reference = Reference::parse(&request.reference).map_err(invalid)?;
        let status = db("tracking");
        let mut tx = self.pool.begin().await.map_err(&status)?;
        let outcome = tracking::track(&mut tx, &ticker, &reference, self.tracking_capacity)
            .await
            .map_err(&status)?;
        let (state, added) = match outcome {
            Tracked::Held { state, added } => (state, added),
            Tracked::Unknown => return Err(not_found(&ticker).into()),
            Tracked::Delisted(_) => {
                return Err(Error::FailedPrecondition(format!(
                    "symbol {} is delisted and cannot be tracked",
                    ticker.as_str()
                ))
                .into());
            }
            Tracked::Full(capacity) => {
                return Err(Error::ResourceExhausted(format!(
                    "the platform tracks at most {capacity} symbols"
                ))
                .into());
            }
        };
        tx.commit().await.map_err(&status)?;
        Ok(Response::new(pb::TrackSymbolResponse {
            state: Some(state.into()),
            added,
        }))
    }

    async fn untrack_symbol(
        &self,
        request: Request<pb::UntrackSymbolRequest>,
    ) -> Result<Response<pb::UntrackSymbolResponse>, Status> {
        require_admin(&request)?;
        let request = request.into_inner();
        let ticker = ticker(&request.symbol)?;
        let reference = Reference::parse(&request.reference).map_err(invalid)?;
        let status = db("tracking");
        let mut tx = self.pool.begin().await.map_err(&status)?;
        let (state, removed) = tracking::untrack(&mut tx, &ticker, &reference)
            .await
            .map_err(&status)?
            .ok_or_else(|| not_found(&ticker))?;
        tx.commit().await.map_err(&status)?;
        Ok(Response::new(pb::UntrackSymbolResponse {
            state: Some(state.into()),
            removed,
        }))
    }

    async fn list_tracked_symbols(
        &self,
        request: Request<pb::ListTrackedSymbolsRequest>,
    ) -> Result<Response<pb::ListTrackedSymbolsResponse>, Status> {
        let limit = wire::page_size(request.get_ref().page_size, 500, 1000)?;
        let after = wire::page_after(&request.get_ref().page_token)?;
        let mut rows = tracking::list(&self.pool, &after, limit)
            .await
            .map_err(db("tracking"))?;
        let next_page_token =
            wire::next_page_token(&mut rows, limit as usize, |r| r.symbol.clone());
        Ok(Response::new(pb::ListTrackedSymbolsResponse {
            symbols: rows.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn get_symbol(
        &self,
        request: Request<pb::GetSymbolRequest>,
    ) -> Result<Response<pb::GetSymbolResponse>, Status> {
        let ticker = ticker(&request.get_ref().symbol)?;
        let row = store::symbols::get(&self.pool, &ticker)
            .await
            .map_err(db("symbol"))?
            .ok_or_else(|| not_found(&ticker))?;
        Ok(Response::new(pb::GetSymbolResponse {
            symbol: Some(row.into()),
        }))
    }

    async fn search_symbols(
        &self,
        request: Request<pb::SearchSymbolsRequest>,
    ) -> Result<Response<pb::SearchSymbolsResponse>, Status> {
        let search = Search::parse(request.get_ref()).map_err(invalid)?;
        let mut rows = store::symbols::search(&self.pool, &search)
            .await
            .map_err(db("symbol"))?;
        let next_page_token = wire::next_page_token(&mut rows, search.limit as usize, |last| {
            store::symbols::search_key(&search.query, last)
        });
        Ok(Response::new(pb::SearchSymbolsResponse {
            symbols: rows.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }
}

fn no_replay(ticker: &Ticker) -> Error {
    Error::NotFound(format!(
        "no replay of {} since the service started",
        ticker.as_str()
    ))
}

fn not_found(ticker: &Ticker) -> Error {
    Error::NotFound(format!("symbol {} is not listed", ticker.as_str()))
}
