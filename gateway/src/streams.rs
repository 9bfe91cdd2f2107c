//! Live streams for the frontend, as Server-Sent Events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt as _};
use mirai_platform::grpc::client::OpenEnded;
use mirai_proto::stock::v1 as pb;
use mirai_proto::stock::v1::stock_data_service_client::StockDataServiceClient;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::problem::{Problem, Query};
use crate::routes::AppState;
use crate::symbols::Quote;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(quotes))
}

/// Query of `GET /v1/stream/quotes`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QuotesQuery {
    /// Comma-separated tickers, 1–500.
    pub symbols: String,
}

/// Live quotes as Server-Sent Events: `event: quote` with the current quote of each symbol
/// first (`snapshot: true`), then one per update; `data` is the JSON of `GET
/// /v1/stocks/{symbol}/quote` plus `dropped` (updates this stream lost by reading too slowly —
/// a slow reader never slows the others). Keep-alive comments every 15 s.
#[utoipa::path(get, path = "/v1/stream/quotes", tag = "streams",
    params(QuotesQuery),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 404, description = "An unknown symbol", body = crate::problem::Problem, content_type = "application/problem+json"),
    ))]
async fn quotes(
    State(state): State<AppState>,
    Query(query): Query<QuotesQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let symbols: Vec<String> = query
        .symbols
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    // No deadline: the upstream stream lives as long as the client's connection.
    let mut request = tonic::Request::new(pb::StreamQuotesRequest {
        symbols,
        skip_snapshot: false,
    });
    request.extensions_mut().insert(OpenEnded);
    let mut client = StockDataServiceClient::new(state.upstreams.stock_data.channel.clone());
    let upstream = client.stream_quotes(request).await?.into_inner();
    let stop = state.streams_stop.clone().cancelled_owned();
    let events = upstream
        .take_until(stop)
        .take_while(|message| std::future::ready(message.is_ok()))
        .filter_map(|message| async move {
            let message = message.ok()?;
            let quote = Quote::from(message.quote?);
            let mut data = serde_json::to_value(&quote).ok()?;
            data["snapshot"] = message.snapshot.into();
            data["dropped"] = message.dropped.into();
            Some(Ok(Event::default().event("quote").data(data.to_string())))
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
