//! Live quotes for the frontend, as Server-Sent Events or over a WebSocket (the same route).
//!
//! # One upstream stream per symbol
//!
//! The gateway opens **one** stock-data quote stream per symbol, however many clients follow
//! it, and fans its updates out inside the gateway ([`QuoteHub`]): a broadcast channel per
//! symbol holding the last [`StreamLimits::buffer`] updates, and the latest quote, which a
//! client joining later receives first (`snapshot: true`). The upstream stream closes when the
//! last follower leaves. A client that falls more than `buffer` updates behind on any symbol is
//! told (`{"type":"error","code":"lagging"}` / `event: error`) and closed: it cannot make the
//! gateway hold updates for it. `dropped` in each message counts the updates the shared
//! upstream stream lost (stock-data drops the oldest for a lagging reader too).
//!
//! # Limits
//!
//! Open streams are counted per client IP (IPv6: per /64) and per signed-in principal; one
//! over either limit is refused before the upgrade with `429` problem+json. A stream follows at
//! most [`StreamLimits::symbols`] symbols, and a WebSocket's subscribe/unsubscribe messages are
//! rate-limited (GCRA per socket); both are answered with an error message and the socket stays
//! open.
//!
//! # Credentials end streams
//!
//! A stream opened with an access token closes when the token expires (close code
//! [`CLOSE_TOKEN_EXPIRED`], or `event: error` with `code: token_expired`): the client
//! reconnects with a fresh token, which a revoked session (logout, password change, account
//! deletion, reuse detection: the user service revokes the refresh family) cannot get. This is
//! the gateway's revocation mechanism for access tokens everywhere, streams included: the
//! user service publishes no revocation events and access tokens live at most 15 minutes. A
//! stream opened with an API key re-checks the key with the user service every
//! [`RECHECK_API_KEY`] and closes ([`CLOSE_REVOKED`]) once it is revoked or expired.

mod websocket;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use mirai_platform::auth::Principal;
use mirai_platform::grpc::client::{OpenEnded, UpstreamChannel};
use mirai_proto::stock::v1 as pb;
use mirai_proto::stock::v1::stock_data_service_client::StockDataServiceClient;
use mirai_proto::user::v1 as user_pb;
use mirai_proto::user::v1::user_service_client::UserServiceClient;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use tokio_stream::StreamMap;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::StreamLimits;
use crate::middleware::auth::CredentialExpiry;
use crate::middleware::ratelimit::client_key;
use crate::problem::{Problem, Query};
use crate::routes::fields::items;
use crate::routes::market::symbols::Quote;
use crate::routes::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(quotes))
}

/// WebSocket close code: the access token the socket was opened with expired.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// WebSocket close code: the API key the socket was opened with was revoked or expired.
pub const CLOSE_REVOKED: u16 = 4003;
/// WebSocket close code: the client read too slowly and fell more than the buffer behind.
pub const CLOSE_LAGGING: u16 = 4008;
/// How often a stream opened with an API key asks the user service whether the key still holds.
pub const RECHECK_API_KEY: Duration = Duration::from_secs(60);

/// Query of `GET /v1/stream/quotes`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QuotesQuery {
    /// Comma-separated tickers, 1 to `MIRAI_STREAM_MAX_SYMBOLS` (default 100; required for
    /// SSE, optional for a WebSocket, which can subscribe later).
    pub symbols: Option<String>,
}

/// What a symbol's shared stream sends its followers.
#[derive(Debug, Clone)]
enum Update {
    Quote(Arc<Value>),
    /// The upstream stream ended or failed; the symbol is no longer followed.
    Ended(Arc<str>),
}

#[derive(Debug, Clone)]
enum FeedState {
    Opening,
    Live,
    Failed(tonic::Code, String),
}

/// One symbol's shared upstream stream.
struct Feed {
    updates: broadcast::Sender<Update>,
    latest: Mutex<Option<Arc<Value>>>,
    state: watch::Sender<FeedState>,
    stop: CancellationToken,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The gateway's shared quote streams, its count of open client streams, and their limits.
pub struct QuoteHub {
    stock_data: UpstreamChannel,
    user: UpstreamChannel,
    limits: StreamLimits,
    /// Each followed symbol's feed and its number of followers.
    feeds: Mutex<HashMap<String, (Arc<Feed>, usize)>>,
    /// Open client streams per `ip:<key>` and `user:<id>`.
    open: Mutex<HashMap<String, usize>>,
    /// Fires when shutdown begins: every stream ends.
    stop: CancellationToken,
}

/// One client's hold on a symbol's feed; the last one dropped closes the upstream stream.
struct Following {
    hub: Arc<QuoteHub>,
    symbol: String,
    feed: Arc<Feed>,
}

impl Drop for Following {
    fn drop(&mut self) {
        let mut feeds = lock(&self.hub.feeds);
        if let Some((feed, followers)) = feeds.get_mut(&self.symbol)
            && Arc::ptr_eq(feed, &self.feed)
        {
            *followers -= 1;
            if *followers == 0 {
                feeds.remove(&self.symbol);
                self.feed.stop.cancel();
            }
        }
    }
}

/// One open client stream, counted against its IP and principal until dropped.
struct Slot {
    hub: Arc<QuoteHub>,
    keys: Vec<String>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.hub.open);
        for key in &self.keys {
            if let Some(count) = open.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    open.remove(key);
                }
            }
        }
    }
}

impl QuoteHub {
    pub fn new(
        stock_data: UpstreamChannel,
        user: UpstreamChannel,
        limits: StreamLimits,
        stop: CancellationToken,
    ) -> Self {
        Self {
            stock_data,
            user,
            limits,
            feeds: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
            stop,
        }
    }

    /// Counts a new stream against `ip` and `principal`, or refuses it with 429.
    fn open_slot(
        self: &Arc<Self>,
        ip: String,
        principal: Option<&Principal>,
    ) -> Result<Slot, Problem> {
        let mut keys = vec![(format!("ip:{ip}"), self.limits.per_ip, "address")];
        if let Some(principal) = principal {
            keys.push((
                format!("user:{}", principal.user_id),
                self.limits.per_user,
                "account",
            ));
        }
        let mut open = lock(&self.open);
        for (key, limit, whose) in &keys {
            if open.get(key).copied().unwrap_or(0) >= *limit {
                return Err(Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too-many-streams",
                    "Too many open streams",
                )
                .detail(format!(
                    "at most {limit} live streams per {whose}; close one before opening another"
                ))
                .retry_after(30));
            }
        }
        for (key, _, _) in &keys {
            *open.entry(key.clone()).or_insert(0) += 1;
        }
        Ok(Slot {
            hub: self.clone(),
            keys: keys.into_iter().map(|(key, _, _)| key).collect(),
        })
    }

    /// Follows `symbol`: its shared feed (opened if nobody follows it yet), a receiver of its
    /// updates, and the latest quote if one was seen (for a late joiner). Fails as stock-data
    /// refused to open the stream (an unknown symbol).
    async fn follow(
        self: &Arc<Self>,
        symbol: &str,
    ) -> Result<(Following, broadcast::Receiver<Update>, Option<Arc<Value>>), tonic::Status> {
        let (feed, receiver, latest) = {
            let mut feeds = lock(&self.feeds);
            let (feed, followers) = feeds
                .entry(symbol.to_owned())
                .or_insert_with(|| (self.open_feed(symbol), 0));
            *followers += 1;
            // Under the lock the feed updates `latest` and sends under: an update is either in
            // `latest` or still to come through the receiver, never both.
            let latest = lock(&feed.latest);
            (feed.clone(), feed.updates.subscribe(), latest.clone())
        };
        let following = Following {
            hub: self.clone(),
            symbol: symbol.to_owned(),
            feed: feed.clone(),
        };
        let mut state = feed.state.subscribe();
        let outcome = state
            .wait_for(|s| !matches!(s, FeedState::Opening))
            .await
            .map(|s| s.clone());
        match outcome {
            Ok(FeedState::Failed(code, message)) => Err(tonic::Status::new(code, message)),
            Ok(_) => {
                let latest = latest.map(|quote| {
                    let mut quote = (*quote).clone();
                    quote["snapshot"] = true.into();
                    Arc::new(quote)
                });
                Ok((following, receiver, latest))
            }
            Err(_) => Err(tonic::Status::unavailable("the quote stream ended")),
        }
    }

    /// A new feed for `symbol`, its upstream stream opened by a task of its own.
    fn open_feed(self: &Arc<Self>, symbol: &str) -> Arc<Feed> {
        let feed = Arc::new(Feed {
            updates: broadcast::channel(self.limits.buffer).0,
            latest: Mutex::new(None),
            state: watch::channel(FeedState::Opening).0,
            stop: self.stop.child_token(),
        });
        tokio::spawn(self.clone().run_feed(symbol.to_owned(), feed.clone()));
        feed
    }

    /// Reads `symbol`'s upstream stream into its feed until the last follower leaves, the
    /// gateway stops, or the stream ends.
    async fn run_feed(self: Arc<Self>, symbol: String, feed: Arc<Feed>) {
        let mut request = tonic::Request::new(pb::StreamQuotesRequest {
            symbols: vec![symbol.clone()],
            skip_snapshot: false,
        });
        // Without a deadline: the stream lives as long as it has followers.
        request.extensions_mut().insert(OpenEnded);
        let mut client = StockDataServiceClient::new(self.stock_data.clone());
        let opened = tokio::select! {
            _ = feed.stop.cancelled() => return,
            opened = client.stream_quotes(request) => opened,
        };
        let mut stream = match opened {
            Ok(stream) => stream.into_inner(),
            Err(status) => {
                self.forget(&symbol, &feed);
                feed.state.send_replace(FeedState::Failed(
                    status.code(),
                    status.message().to_owned(),
                ));
                return;
            }
        };
        feed.state.send_replace(FeedState::Live);
        loop {
            let message = tokio::select! {
                _ = feed.stop.cancelled() => return,
                message = stream.next() => message,
            };
            match message {
                Some(Ok(message)) => {
                    if let Some(quote) = quote_json(message) {
                        let mut latest = lock(&feed.latest);
                        *latest = Some(Arc::new(quote.clone()));
                        // No receiver means the last follower is leaving: nothing to do.
                        let _ = feed.updates.send(Update::Quote(Arc::new(quote)));
                    }
                }
                ended => {
                    let reason = match ended {
                        Some(Err(status)) => {
                            format!("the quote stream failed: {}", status.message())
                        }
                        _ => "the quote stream ended".to_owned(),
                    };
                    self.forget(&symbol, &feed);
                    let _ = feed.updates.send(Update::Ended(reason.into()));
                    return;
                }
            }
        }
    }

    /// Removes `feed` from the map (if it is still `symbol`'s), so the next follower opens a
    /// new upstream stream.
    fn forget(&self, symbol: &str, feed: &Arc<Feed>) {
        let mut feeds = lock(&self.feeds);
        if feeds
            .get(symbol)
            .is_some_and(|(current, _)| Arc::ptr_eq(current, feed))
        {
            feeds.remove(symbol);
        }
    }

    /// Whether the API key `secret` still authenticates (a failed call counts as yes: an
    /// outage of the user service must not close every stream).
    async fn key_holds(&self, secret: &str) -> bool {
        let answer = UserServiceClient::new(self.user.clone())
            .authenticate_api_key(user_pb::AuthenticateApiKeyRequest {
                secret: secret.to_owned(),
                client: None,
            })
            .await;
        !matches!(answer, Err(status) if status.code() == tonic::Code::Unauthenticated)
    }
}

/// One update as JSON: the quote, whether it is part of the snapshot, and the upstream's drops.
fn quote_json(message: pb::StreamQuotesResponse) -> Option<Value> {
    let quote = Quote::from(message.quote?);
    let mut data = serde_json::to_value(&quote).ok()?;
    data["snapshot"] = message.snapshot.into();
    data["dropped"] = message.dropped.into();
    Some(data)
}

/// Normalised tickers: trimmed, upper case, without empties or repeats (order kept).
fn tickers<'a>(symbols: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    symbols
        .into_iter()
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty() && seen.insert(s.clone()))
        .collect()
}

/// Why a client stream ends early.
pub(crate) enum Ending {
    TokenExpired,
    Revoked,
    Lagging(String),
}

impl Ending {
    fn code(&self) -> (&'static str, u16) {
        match self {
            Ending::TokenExpired => ("token_expired", CLOSE_TOKEN_EXPIRED),
            Ending::Revoked => ("revoked", CLOSE_REVOKED),
            Ending::Lagging(_) => ("lagging", CLOSE_LAGGING),
        }
    }

    fn detail(&self) -> String {
        match self {
            Ending::TokenExpired => {
                "the access token expired; reconnect with a fresh one".to_owned()
            }
            Ending::Revoked => "the API key was revoked or expired".to_owned(),
            Ending::Lagging(symbol) => format!(
                "too slow: updates of {symbol} were not read in time; reconnect and read faster"
            ),
        }
    }

    pub(crate) fn json(&self) -> Value {
        json!({ "type": "error", "code": self.code().0, "detail": self.detail() })
    }
}

/// What ends a client's stream besides the client: its credential.
pub(crate) struct Watch {
    expiry: Option<SystemTime>,
    api_key: Option<String>,
    hub: Arc<QuoteHub>,
}

impl Watch {
    pub(crate) fn of(request: &Request, hub: &Arc<QuoteHub>) -> Self {
        let principal = request.extensions().get::<Principal>();
        let api_key = principal
            .and_then(|p| p.api_key_id.as_ref())
            .and_then(|_| crate::middleware::auth::api_key_secret(request.headers()))
            .map(str::to_owned);
        Self {
            expiry: request
                .extensions()
                .get::<CredentialExpiry>()
                .map(|CredentialExpiry(at)| *at),
            api_key,
            hub: hub.clone(),
        }
    }

    /// Resolves when the credential no longer holds.
    pub(crate) async fn ended(self) -> Ending {
        let expired = async {
            match self.expiry {
                Some(at) => {
                    let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                    tokio::time::sleep(left).await;
                }
                None => std::future::pending().await,
            }
        };
        let revoked = async {
            match &self.api_key {
                Some(secret) => loop {
                    tokio::time::sleep(RECHECK_API_KEY).await;
                    if !self.hub.key_holds(secret).await {
                        return;
                    }
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = expired => Ending::TokenExpired,
            _ = revoked => Ending::Revoked,
        }
    }
}

/// Live quotes. A plain GET answers **Server-Sent Events**: `event: quote` with the current
/// quote of each symbol first (`snapshot: true`), then one per update; `data` is the JSON of
/// `GET /v1/stocks/{symbol}/quote` plus `snapshot` and `dropped` (updates the gateway's shared
/// upstream stream lost). Keep-alive comments every 15 s. The stream ends with `event: error`
/// (`{"code": "token_expired" | "revoked" | "lagging", "detail": …}`) when the access token
/// expires, the API key is revoked, or the client reads too slowly.
///
/// With `Upgrade: websocket` it becomes a **WebSocket**: send
/// `{"action":"subscribe","symbols":["AAPL"]}` or `{"action":"unsubscribe","symbols":["AAPL"]}`
/// at any time (rate-limited per socket, `MIRAI_STREAM_SUBSCRIBE_RATE`); the server answers
/// `{"type":"subscribed","symbols":[…]}` with the whole set, sends `{"type":"quote", …}`
/// messages shaped like the SSE data, and `{"type":"error", "detail":…}` for a bad message, an
/// unknown symbol, too many symbols or too many subscribe messages (the socket stays open).
/// The server closes the socket with code 4001 when the access token expires, 4003 when the
/// API key is revoked, 4008 when the client reads too slowly (each after an error message
/// with its `code`), and 1001 at shutdown.
///
/// Open streams are limited per client IP and per account: one more is refused with 429.
#[utoipa::path(get, path = "/v1/stream/quotes", tag = "streams",
    params(QuotesQuery),
    responses(
        (status = 200, description = "The event stream (SSE)", content_type = "text/event-stream", body = String),
        (status = 101, description = "Switched to a WebSocket"),
        (status = 400, description = "No symbols, or more than the limit", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "An unknown symbol", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many open streams from this address or account", body = Problem, content_type = "application/problem+json"),
    ))]
async fn quotes(
    State(state): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    Query(query): Query<QuotesQuery>,
    request: Request,
) -> Result<Response, Problem> {
    let hub = state.streams.clone();
    let symbols = tickers(items(query.symbols.as_deref()));
    if symbols.len() > hub.limits.symbols {
        return Err(too_many(hub.limits.symbols));
    }
    let ip = client_key(crate::middleware::client::client_ip(
        request.headers(),
        request.extensions(),
    ));
    let slot = hub.open_slot(ip, request.extensions().get::<Principal>())?;
    let watch = Watch::of(&request, &hub);
    if let Ok(upgrade) = upgrade {
        return Ok(upgrade
            .max_message_size(64 * 1024)
            .on_upgrade(move |socket| websocket::websocket(socket, hub, slot, watch, symbols)));
    }
    if symbols.is_empty() {
        return Err(tonic::Status::invalid_argument("symbols: at least one ticker").into());
    }
    let mut followed = Vec::new();
    let mut streams = StreamMap::new();
    let mut first = Vec::new();
    for symbol in symbols {
        let (following, receiver, latest) = hub.follow(&symbol).await?;
        followed.push(following);
        first.extend(latest);
        streams.insert(symbol, BroadcastStream::new(receiver));
    }
    let ended = Box::pin(watch.ended());
    let stop = hub.stop.clone().cancelled_owned();
    let events = async_stream(first, streams, ended, (slot, followed)).take_until(stop);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// The SSE events: the late joiner's snapshot, then the updates, until a symbol's stream ends,
/// the client lags, or its credential ends. `hold` keeps the slot and the follows for as long
/// as the stream lives.
fn async_stream<H: Send + 'static>(
    first: Vec<Arc<Value>>,
    streams: StreamMap<String, BroadcastStream<Update>>,
    ended: std::pin::Pin<Box<dyn std::future::Future<Output = Ending> + Send>>,
    hold: H,
) -> impl futures::Stream<Item = Result<Event, Infallible>> + Send {
    let quote = |data: &Value| Event::default().event("quote").data(data.to_string());
    let error = |data: Value| Event::default().event("error").data(data.to_string());
    let snapshot = futures::stream::iter(first.into_iter().map(move |q| Ok(quote(&q))));
    let live = futures::stream::unfold(Some((streams, ended, hold)), move |state| async move {
        let (mut streams, mut ended, hold) = state?;
        tokio::select! {
            ending = &mut ended => Some((Ok(error(ending.json())), None)),
            next = streams.next() => match next {
                Some((_, Ok(Update::Quote(data)))) => {
                    Some((Ok(quote(&data)), Some((streams, ended, hold))))
                }
                Some((symbol, Ok(Update::Ended(reason)))) => Some((
                    Ok(error(json!({ "type": "error", "code": "ended", "symbol": symbol, "detail": &*reason }))),
                    None,
                )),
                Some((symbol, Err(BroadcastStreamRecvError::Lagged(_)))) => {
                    Some((Ok(error(Ending::Lagging(symbol).json())), None))
                }
                None => None,
            },
        }
    });
    snapshot.chain(live)
}

fn too_many(limit: usize) -> Problem {
    tonic::Status::invalid_argument(format!("symbols: at most {limit} tickers")).into()
}
