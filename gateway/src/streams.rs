//! Live quotes for the frontend, as Server-Sent Events or over a WebSocket (the same route).
//!
//! Either way the stock-data service's server stream feeds the client, a snapshot first. A
//! slow client never slows another: stock-data keeps a bounded buffer per stream and drops
//! the oldest update for a lagging reader, and the gateway does the same for a WebSocket's
//! outgoing queue; each message carries `dropped`, how many updates that client lost so far.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt as _, StreamExt as _};
use mirai_platform::grpc::client::OpenEnded;
use mirai_proto::stock::v1 as pb;
use mirai_proto::stock::v1::stock_data_service_client::StockDataServiceClient;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::fields::items;
use crate::problem::{Problem, Query};
use crate::routes::AppState;
use crate::symbols::Quote;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(quotes))
}

/// Most symbols one stream (or one WebSocket) may follow.
const MAX_SYMBOLS: usize = 500;
/// Outgoing messages a WebSocket may queue before its oldest are dropped.
const SOCKET_BUFFER: usize = 256;

/// Query of `GET /v1/stream/quotes`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QuotesQuery {
    /// Comma-separated tickers, 1–500 (required for SSE; optional for a WebSocket, which can
    /// subscribe later).
    pub symbols: Option<String>,
}

/// Opens stock-data's quote stream for `symbols`, without a deadline: it lives as long as the
/// client's connection.
async fn upstream(
    state: &AppState,
    symbols: Vec<String>,
) -> Result<tonic::Streaming<pb::StreamQuotesResponse>, tonic::Status> {
    let mut request = tonic::Request::new(pb::StreamQuotesRequest {
        symbols,
        skip_snapshot: false,
    });
    request.extensions_mut().insert(OpenEnded);
    let mut client = StockDataServiceClient::new(state.upstreams.stock_data.channel.clone());
    Ok(client.stream_quotes(request).await?.into_inner())
}

/// One update as JSON: the quote, whether it is part of the snapshot, and the drops so far.
fn quote_json(message: pb::StreamQuotesResponse, extra_dropped: u64) -> Option<Value> {
    let quote = Quote::from(message.quote?);
    let mut data = serde_json::to_value(&quote).ok()?;
    data["snapshot"] = message.snapshot.into();
    data["dropped"] = (message.dropped + extra_dropped).into();
    Some(data)
}

/// Live quotes. A plain GET answers **Server-Sent Events**: `event: quote` with the current
/// quote of each symbol first (`snapshot: true`), then one per update; `data` is the JSON of
/// `GET /v1/stocks/{symbol}/quote` plus `snapshot` and `dropped` (updates this stream lost by
/// reading too slowly). Keep-alive comments every 15 s.
///
/// With `Upgrade: websocket` it becomes a **WebSocket**: send
/// `{"action":"subscribe","symbols":["AAPL"]}` or `{"action":"unsubscribe","symbols":["AAPL"]}`
/// at any time; the server answers `{"type":"subscribed","symbols":[…]}` with the whole set,
/// sends `{"type":"quote", …}` messages shaped like the SSE data, and `{"type":"error",
/// "detail":…}` for a bad message or an unknown symbol (the socket stays open).
#[utoipa::path(get, path = "/v1/stream/quotes", tag = "streams",
    params(QuotesQuery),
    responses(
        (status = 200, description = "The event stream (SSE)", content_type = "text/event-stream", body = String),
        (status = 101, description = "Switched to a WebSocket"),
        (status = 400, description = "No symbols, or more than 500", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "An unknown symbol", body = Problem, content_type = "application/problem+json"),
    ))]
async fn quotes(
    State(state): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    Query(query): Query<QuotesQuery>,
) -> Result<Response, Problem> {
    let symbols: Vec<String> = items(query.symbols.as_deref()).map(str::to_owned).collect();
    if symbols.len() > MAX_SYMBOLS {
        return Err(too_many());
    }
    if let Ok(upgrade) = upgrade {
        return Ok(upgrade
            .max_message_size(64 * 1024)
            .on_upgrade(move |socket| websocket(socket, state, symbols)));
    }
    if symbols.is_empty() {
        return Err(tonic::Status::invalid_argument("symbols: at least one ticker").into());
    }
    let stop = state.streams_stop.clone().cancelled_owned();
    let events = upstream(&state, symbols)
        .await?
        .take_until(stop)
        .take_while(|message| std::future::ready(message.is_ok()))
        .filter_map(|message| async move {
            let data = quote_json(message.ok()?, 0)?;
            Some(Ok::<_, Infallible>(
                Event::default().event("quote").data(data.to_string()),
            ))
        });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn too_many() -> Problem {
    tonic::Status::invalid_argument(format!("symbols: at most {MAX_SYMBOLS} tickers")).into()
}

/// A client's message on the socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum Command {
    Subscribe { symbols: Vec<String> },
    Unsubscribe { symbols: Vec<String> },
}

/// One WebSocket: a task per subscribed symbol forwards its upstream stream into the socket's
/// broadcast queue (which drops the oldest for a slow reader and says how many).
async fn websocket(socket: WebSocket, state: AppState, initial: Vec<String>) {
    let (mut sink, mut source) = socket.split();
    let (queue, mut outgoing) = broadcast::channel::<Value>(SOCKET_BUFFER);
    let mut followed: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut dropped = 0u64;
    let stop = state.streams_stop.clone();

    let mut pending: Vec<Result<Command, String>> = Vec::new();
    if !initial.is_empty() {
        pending.push(Ok(Command::Subscribe { symbols: initial }));
    }
    'connection: loop {
        for command in std::mem::take(&mut pending) {
            let mut replies = Vec::new();
            match command {
                Err(error) => replies
                    .push(json!({ "type": "error", "detail": format!("bad message: {error}") })),
                Ok(Command::Subscribe { symbols }) => {
                    let mut symbols: Vec<String> = symbols
                        .iter()
                        .map(|s| s.trim().to_ascii_uppercase())
                        .filter(|s| !s.is_empty() && !followed.contains_key(s))
                        .collect();
                    symbols.dedup();
                    if followed.len() + symbols.len() > MAX_SYMBOLS {
                        replies.push(json!({ "type": "error", "detail": format!("at most {MAX_SYMBOLS} symbols per connection") }));
                    } else {
                        // Each stream is opened before answering, so the answer lists exactly
                        // what is followed and an unknown symbol is reported before it.
                        for symbol in symbols {
                            match upstream(&state, vec![symbol.clone()]).await {
                                Ok(stream) => {
                                    let task = tokio::spawn(follow(stream, queue.clone()));
                                    followed.insert(symbol, task);
                                }
                                Err(status) => replies.push(json!({
                                    "type": "error", "symbol": symbol, "detail": status.message()
                                })),
                            }
                        }
                        replies.push(subscribed(&followed));
                    }
                }
                Ok(Command::Unsubscribe { symbols }) => {
                    for symbol in symbols {
                        if let Some(task) = followed.remove(&symbol.trim().to_ascii_uppercase()) {
                            task.abort();
                        }
                    }
                    replies.push(subscribed(&followed));
                }
            }
            for reply in replies {
                if sink
                    .send(Message::Text(reply.to_string().into()))
                    .await
                    .is_err()
                {
                    break 'connection;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                break;
            }
            incoming = source.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    pending.push(serde_json::from_str::<Command>(&text).map_err(|e| e.to_string()));
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {} // pings are answered by axum; binary frames are ignored
            },
            out = outgoing.recv() => match out {
                Ok(mut message) => {
                    message["dropped"] = (message["dropped"].as_u64().unwrap_or(0) + dropped).into();
                    if sink.send(Message::Text(message.to_string().into())).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(lost)) => dropped += lost,
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    for task in followed.into_values() {
        task.abort();
    }
}

fn subscribed(followed: &HashMap<String, tokio::task::JoinHandle<()>>) -> Value {
    let mut symbols: Vec<&String> = followed.keys().collect();
    symbols.sort();
    json!({ "type": "subscribed", "symbols": symbols })
}

/// Forwards one symbol's upstream stream into the socket's queue until it ends or fails.
async fn follow(
    mut stream: tonic::Streaming<pb::StreamQuotesResponse>,
    queue: broadcast::Sender<Value>,
) {
    while let Some(Ok(message)) = stream.next().await {
        if let Some(mut data) = quote_json(message, 0) {
            data["type"] = "quote".into();
            if queue.send(data).is_err() {
                return;
            }
        }
    }
}
