//! Live streams for the frontend, as Server-Sent Events.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::{Stream, StreamExt as _};
use mirai_platform::grpc::client::OpenEnded;
use mirai_proto::stock::v1 as pb;
use mirai_proto::stock::v1::stock_data_service_client::StockDataServiceClient;
use serde::Deserialize;

use crate::problem::{Problem, Query};
use crate::routes::AppState;
use crate::symbols::Quote;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/stream/quotes", get(quotes))
}

/// Query of `GET /v1/stream/quotes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotesQuery {
    /// Comma-separated tickers, 1–500.
    pub symbols: String,
}

/// `GET /v1/stream/quotes?symbols=SPX,AAPL`: `event: quote` with the current quote of each
/// symbol first, then one per update; `data` is the same JSON as `GET …/quote` plus `dropped`
/// (updates this stream lost by reading too slowly). Keep-alive comments every 15 s.
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
