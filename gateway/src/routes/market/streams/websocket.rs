//! The WebSocket side of `/v1/stream/quotes`: subscribe and unsubscribe messages (rate-limited
//! per socket), the quotes of the followed symbols, and the close codes.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::StreamMap;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::config::StreamLimits;

use super::{Ending, Following, QuoteHub, Slot, Update, Watch, tickers};

/// A client's message on the socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum Command {
    Subscribe { symbols: Vec<String> },
    Unsubscribe { symbols: Vec<String> },
}

type Governor = governor::DefaultDirectRateLimiter;

fn subscribe_limiter(limits: &StreamLimits) -> Governor {
    let rate = limits.subscribe_rate;
    let quota =
        governor::Quota::with_period((rate.window / rate.quota).max(Duration::from_nanos(1)))
            .expect("positive period")
            .allow_burst(NonZeroU32::new(rate.quota).expect("validated positive"));
    governor::RateLimiter::direct(quota)
}

/// One WebSocket: a receiver per followed symbol, merged, each symbol's shared feed held for
/// as long as the socket follows it.
pub(super) async fn websocket(
    socket: WebSocket,
    hub: Arc<QuoteHub>,
    _slot: Slot,
    watch: Watch,
    initial: Vec<String>,
) {
    let (mut sink, mut source) = socket.split();
    let mut followed: HashMap<String, Following> = HashMap::new();
    let mut streams: StreamMap<String, BroadcastStream<Update>> = StreamMap::new();
    let limiter = subscribe_limiter(&hub.limits);
    let ended = watch.ended();
    tokio::pin!(ended);

    let mut pending: Vec<Result<Command, String>> = Vec::new();
    let mut initial_command =
        (!initial.is_empty()).then_some(Command::Subscribe { symbols: initial });
    let close: Option<(u16, String)> = 'connection: loop {
        let mut commands: Vec<Result<Command, String>> =
            initial_command.take().map(Ok).into_iter().collect();
        for command in std::mem::take(&mut pending) {
            match limiter.check() {
                Ok(()) => commands.push(command),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(governor::clock::Clock::now(
                        &governor::clock::DefaultClock::default(),
                    ));
                    let reply = json!({
                        "type": "error", "code": "rate_limited",
                        "detail": format!(
                            "too many subscribe messages: at most {} per {}; retry in {} s",
                            hub.limits.subscribe_rate.quota,
                            humantime::format_duration(hub.limits.subscribe_rate.window),
                            wait.as_secs_f64().ceil() as u64
                        )
                    });
                    if sink
                        .send(Message::Text(reply.to_string().into()))
                        .await
                        .is_err()
                    {
                        break 'connection None;
                    }
                }
            }
        }
        for command in commands {
            let mut replies = Vec::new();
            match command {
                Err(error) => replies
                    .push(json!({ "type": "error", "detail": format!("bad message: {error}") })),
                Ok(Command::Subscribe { symbols }) => {
                    let symbols: Vec<String> = tickers(symbols.iter().map(String::as_str))
                        .into_iter()
                        .filter(|s| !followed.contains_key(s))
                        .collect();
                    let limit = hub.limits.symbols;
                    if followed.len() + symbols.len() > limit {
                        replies.push(json!({ "type": "error", "code": "too_many_symbols", "detail": format!("at most {limit} symbols per connection") }));
                    } else {
                        // Each symbol is followed before answering, so the answer lists exactly
                        // what is followed and an unknown symbol is reported before it.
                        let mut snapshots = Vec::new();
                        for symbol in symbols {
                            match hub.follow(&symbol).await {
                                Ok((following, receiver, latest)) => {
                                    followed.insert(symbol.clone(), following);
                                    streams.insert(symbol, BroadcastStream::new(receiver));
                                    snapshots.extend(latest);
                                }
                                Err(status) => replies.push(json!({
                                    "type": "error", "symbol": symbol, "detail": status.message()
                                })),
                            }
                        }
                        replies.push(subscribed(&followed));
                        replies.extend(snapshots.iter().map(|q| typed_quote(q)));
                    }
                }
                Ok(Command::Unsubscribe { symbols }) => {
                    for symbol in tickers(symbols.iter().map(String::as_str)) {
                        followed.remove(&symbol);
                        streams.remove(&symbol);
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
                    break 'connection None;
                }
            }
        }
        tokio::select! {
            _ = hub.stop.cancelled() => break Some((1001, "the gateway is shutting down".to_owned())),
            ending = &mut ended => {
                let _ = sink.send(Message::Text(ending.json().to_string().into())).await;
                break Some((ending.code().1, ending.code().0.to_owned()));
            }
            incoming = source.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    pending.push(serde_json::from_str::<Command>(&text).map_err(|e| e.to_string()));
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                Some(Ok(_)) => {} // pings are answered by axum; binary frames are ignored
            },
            Some((symbol, update)) = streams.next(), if !streams.is_empty() => match update {
                Ok(Update::Quote(data)) => {
                    if sink.send(Message::Text(typed_quote(&data).to_string().into())).await.is_err() {
                        break None;
                    }
                }
                Ok(Update::Ended(reason)) => {
                    followed.remove(&symbol);
                    streams.remove(&symbol);
                    let reply = json!({ "type": "error", "code": "ended", "symbol": symbol, "detail": &*reason });
                    if sink.send(Message::Text(reply.to_string().into())).await.is_err() {
                        break None;
                    }
                }
                Err(BroadcastStreamRecvError::Lagged(_)) => {
                    let ending = Ending::Lagging(symbol);
                    let _ = sink.send(Message::Text(ending.json().to_string().into())).await;
                    break Some((ending.code().1, ending.code().0.to_owned()));
                }
            },
        }
    };
    if let Some((code, reason)) = close {
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }
}

fn typed_quote(data: &Value) -> Value {
    let mut message = data.clone();
    message["type"] = "quote".into();
    message
}

fn subscribed(followed: &HashMap<String, Following>) -> Value {
    let mut symbols: Vec<&String> = followed.keys().collect();
    symbols.sort();
    json!({ "type": "subscribed", "symbols": symbols })
}
