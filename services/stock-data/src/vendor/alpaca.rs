//! Alpaca Market Data API v2 (stocks), as documented by Alpaca.
//!
//! REST (history and gap backfill): `GET {data_url}/v2/stocks/{symbol}/bars` with `timeframe`,
//! `start`, `end`, `limit`, `feed`, `adjustment=raw` and `page_token` → `{"bars": [{"t", "o",
//! "h", "l", "c", "v", "n", "vw"}], "symbol", "next_page_token"}`; credentials in the
//! `APCA-API-KEY-ID` / `APCA-API-SECRET-KEY` headers. Requests pass a token bucket
//! (`governor`) at the configured rate; a `429` is honoured by waiting for `Retry-After` or,
//! failing that, `X-RateLimit-Reset` (epoch seconds) before retrying.
//!
//! Stream: `{stream_url}/v2/{feed}`; the server greets with `[{"T":"success","msg":"connected"}]`,
//! `{"action":"auth","key","secret"}` answers `authenticated`,
//! `{"action":"subscribe","bars":[..],"trades":[..]}` answers `{"T":"subscription",..}`; data
//! arrives in arrays of `{"T":"b",..}` minute bars and `{"T":"t",..}` trades; `{"T":"error",
//! "code","msg"}` reports failures (402 auth failed, 406 connection limit exceeded, …).
//!
//! On any disconnect the adapter reconnects after a capped exponential backoff with full
//! jitter, then backfills every subscribed symbol over REST from its last received bar
//! (bounded by `backfill_max`) before reading the live stream again. Bars re-delivered by the
//! overlap are identical and change nothing.

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{SinkExt as _, StreamExt as _};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use mirai_proto::stock::v1::Timeframe;
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{VendorError, backoff};
use crate::config::AlpacaConfig;
use crate::ingest::{Ingest, LiveBar, Price, Stored};

/// Recorded as the `source` of everything this adapter ingests.
pub const SOURCE: &str = "alpaca";

/// Retries of one REST request (429s and transient failures) before giving up.
const MAX_ATTEMPTS: u32 = 6;
/// Longest wait a `429` may impose; a reset further away is treated as this.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(120);
/// The stream must greet, authenticate and confirm a subscription within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A session that lasted this long counts as healthy: the next reconnect starts the backoff
/// from the bottom again. (Resetting at every successful handshake would let a server that
/// accepts and drops at once pull the client into a tight reconnect loop.)
const STABLE_SESSION: Duration = Duration::from_secs(30);

/// One bar in Alpaca's REST and stream formats (`S` only in the stream).
#[derive(Debug, Clone, Deserialize)]
pub struct WireBar {
    #[serde(rename = "S", default)]
    pub symbol: String,
    pub t: DateTime<Utc>,
    pub o: f64,
    pub h: f64,
    pub l: f64,
    pub c: f64,
    pub v: f64,
    #[serde(default)]
    pub n: Option<i64>,
    #[serde(default)]
    pub vw: Option<f64>,
}

impl WireBar {
    fn live(&self, symbol: &str) -> LiveBar {
        LiveBar {
            symbol: symbol.to_owned(),
            timeframe: Timeframe::OneMinute,
            start: self.t,
            end: self.t + chrono::Duration::minutes(1),
            open: self.o,
            high: self.h,
            low: self.l,
            close: self.c,
            volume: self.v,
            vwap: self.vw,
            trade_count: self.n,
        }
    }
}

#[derive(Debug, Deserialize)]
struct BarsPage {
    #[serde(default)]
    bars: Option<Vec<WireBar>>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// One stream message (`T` is the type).
#[derive(Debug, Deserialize)]
#[serde(tag = "T")]
enum StreamMessage {
    #[serde(rename = "success")]
    Success { msg: String },
    #[serde(rename = "error")]
    Error { code: i64, msg: String },
    #[serde(rename = "subscription")]
    Subscription {
        #[serde(default)]
        bars: Vec<String>,
    },
    #[serde(rename = "b")]
    Bar(WireBar),
    #[serde(rename = "t")]
    Trade {
        #[serde(rename = "S")]
        symbol: String,
        p: f64,
        t: DateTime<Utc>,
    },
    /// Quotes, updated and daily bars, statuses: not used.
    #[serde(other)]
    Other,
}

/// The adapter: REST client, rate limiter, and the stream loop. Cloned for each leadership
/// term (the clones share the rate limiter).
#[derive(Clone)]
pub struct Alpaca {
    config: AlpacaConfig,
    http: reqwest::Client,
    limiter: Arc<DefaultDirectRateLimiter>,
    ingest: Ingest,
}

impl Alpaca {
    pub fn new(config: AlpacaConfig, ingest: Ingest) -> Result<Self, VendorError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| VendorError::Transport(e.to_string()))?;
        let per_minute = NonZeroU32::new(config.requests_per_minute).unwrap_or(NonZeroU32::MIN);
        // Spread the allowance rather than spend a minute's worth in one burst.
        let burst =
            NonZeroU32::new(config.requests_per_minute.clamp(1, 10)).unwrap_or(NonZeroU32::MIN);
        let limiter = Arc::new(RateLimiter::direct(
            Quota::per_minute(per_minute).allow_burst(burst),
        ));
        Ok(Self {
            config,
            http,
            limiter,
            ingest,
        })
    }

    /// Minute bars of `symbol` with `start <= t <= end`, every page, oldest first.
    pub async fn bars(
        &self,
        symbol: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<LiveBar>, VendorError> {
        let url = format!("{}/v2/stocks/{symbol}/bars", self.config.data_url);
        let mut token: Option<String> = None;
        let mut bars = Vec::new();
        loop {
            let mut query = vec![
                ("timeframe", "1Min".to_owned()),
                (
                    "start",
                    start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ),
                (
                    "end",
                    end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ),
                ("limit", "10000".to_owned()),
                ("adjustment", "raw".to_owned()),
                ("feed", self.config.feed.clone()),
            ];
            if let Some(token) = &token {
                query.push(("page_token", token.clone()));
            }
            let page: BarsPage = self.get_json(&url, &query).await?;
            bars.extend(page.bars.unwrap_or_default().iter().map(|b| b.live(symbol)));
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(bars),
            }
        }
    }

    /// One GET through the rate limiter, honouring 429 and retrying transient failures.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        query: &[(&str, String)],
    ) -> Result<T, VendorError> {
        let mut attempt = 0;
        loop {
            self.limiter.until_ready().await;
            let sent = self
                .http
                .get(url)
                .query(query)
                .header("APCA-API-KEY-ID", self.config.key_id.expose_secret())
                .header(
                    "APCA-API-SECRET-KEY",
                    self.config.secret_key.expose_secret(),
                )
                .send()
                .await;
            let wait = match sent {
                Ok(response) if response.status().is_success() => {
                    return response
                        .json()
                        .await
                        .map_err(|e| VendorError::Protocol(e.to_string()));
                }
                Ok(response) if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                    let wait =
                        rate_limit_wait(response.headers(), Utc::now()).unwrap_or_else(|| {
                            backoff(self.config.backoff_base, self.config.backoff_max, attempt)
                        });
                    tracing::warn!(
                        message = "Alpaca rate limit reached; waiting.",
                        wait_ms = wait.as_millis() as u64,
                        url
                    );
                    wait
                }
                Ok(response) if response.status().is_server_error() => {
                    backoff(self.config.backoff_base, self.config.backoff_max, attempt)
                }
                Ok(response) => {
                    let code = i64::from(response.status().as_u16());
                    let message = response.text().await.unwrap_or_default();
                    return Err(VendorError::Refused {
                        code,
                        message: message.chars().take(300).collect(),
                    });
                }
                Err(error) => {
                    tracing::warn!(message = "Alpaca request failed.", %error, url);
                    backoff(self.config.backoff_base, self.config.backoff_max, attempt)
                }
            };
            attempt += 1;
            if attempt >= MAX_ATTEMPTS {
                return Err(VendorError::Transport(format!(
                    "{url}: gave up after {MAX_ATTEMPTS} attempts"
                )));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Streams until `shutdown`, reconnecting (with backoff) and backfilling after every drop.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut last_bar = match self.last_bars().await {
            Ok(last) => last,
            Err(error) => {
                tracing::warn!(message = "Could not read the last Alpaca bars; no backfill until the first bar.", %error);
                HashMap::new()
            }
        };
        let mut attempt = 0;
        while !shutdown.is_cancelled() {
            let began = tokio::time::Instant::now();
            match self.session(&mut last_bar, &shutdown).await {
                Ok(()) => break,
                Err(error) => {
                    if began.elapsed() >= STABLE_SESSION {
                        attempt = 0;
                    }
                    let delay = backoff(self.config.backoff_base, self.config.backoff_max, attempt);
                    tracing::warn!(message = "Alpaca stream lost; reconnecting.", %error, attempt, retry_in_ms = delay.as_millis() as u64);
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        tracing::info!(message = "Alpaca adapter stopped.");
    }

    /// The latest stored Alpaca minute bar per symbol (where backfills start after a restart).
    async fn last_bars(&self) -> Result<HashMap<String, DateTime<Utc>>, sqlx::Error> {
        let rows =
            crate::store::bars::newest_starts(self.ingest.pool(), SOURCE, Timeframe::OneMinute)
                .await?;
        Ok(rows.into_iter().collect())
    }

    async fn wanted(&self) -> Result<BTreeSet<String>, VendorError> {
        if !self.config.symbols.is_empty() {
            return Ok(self.config.symbols.iter().cloned().collect());
        }
        Ok(crate::store::tracking::tracked_symbols(self.ingest.pool())
            .await?
            .into_iter()
            .collect())
    }

    /// One connection: handshake, subscribe, backfill, then live data until it drops
    /// (`Err`) or shutdown (`Ok`).
    async fn session(
        &self,
        last_bar: &mut HashMap<String, DateTime<Utc>>,
        shutdown: &CancellationToken,
    ) -> Result<(), VendorError> {
        let url = format!("{}/v2/{}", self.config.stream_url, self.config.feed);
        let (socket, _) =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::connect_async(&url))
                .await
                .map_err(|_| VendorError::Transport(format!("{url}: connect timed out")))?
                .map_err(|e| VendorError::Transport(format!("{url}: {e}")))?;
        let (mut sink, mut stream) = socket.split();
        let mut next = async || -> Result<Vec<StreamMessage>, VendorError> {
            loop {
                let frame = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.next())
                    .await
                    .map_err(|_| VendorError::Protocol("no answer within 10 s".into()))?
                    .ok_or_else(|| VendorError::Transport("stream closed".into()))?
                    .map_err(|e| VendorError::Transport(e.to_string()))?;
                if let Some(messages) = decode(frame)? {
                    return Ok(messages);
                }
            }
        };
        expect_success(next().await?, "connected")?;
        let auth = serde_json::json!({
            "action": "auth",
            "key": self.config.key_id.expose_secret(),
            "secret": self.config.secret_key.expose_secret(),
        });
        send(&mut sink, &auth).await?;
        expect_success(next().await?, "authenticated")?;

        let mut subscribed = self.wanted().await?;
        if !subscribed.is_empty() {
            subscribe(&mut sink, "subscribe", &subscribed).await?;
            match next().await?.into_iter().next() {
                Some(StreamMessage::Subscription { bars }) => {
                    tracing::info!(message = "Alpaca stream subscribed.", bars = bars.len());
                }
                Some(StreamMessage::Error { code, msg }) => {
                    return Err(VendorError::Refused { code, message: msg });
                }
                other => {
                    return Err(VendorError::Protocol(format!(
                        "expected a subscription, got {other:?}"
                    )));
                }
            }
        }

        // Backfill what was missed while disconnected, before reading the live stream (its
        // messages wait in the socket meanwhile).
        for symbol in &subscribed {
            self.backfill(symbol, last_bar).await?;
        }

        let mut pending: HashMap<String, Price> = HashMap::new();
        let mut flush = tokio::time::interval(self.config.price_coalesce);
        let mut refresh = tokio::time::interval(self.config.refresh);
        refresh.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = sink.send(Message::Close(None)).await;
                    self.flush(&mut pending).await;
                    return Ok(());
                }
                _ = flush.tick() => self.flush(&mut pending).await,
                _ = refresh.tick(), if self.config.symbols.is_empty() => {
                    let wanted = self.wanted().await?;
                    let added: BTreeSet<String> = wanted.difference(&subscribed).cloned().collect();
                    let removed: BTreeSet<String> = subscribed.difference(&wanted).cloned().collect();
                    if !added.is_empty() {
                        subscribe(&mut sink, "subscribe", &added).await?;
                        for symbol in &added {
                            self.backfill(symbol, last_bar).await?;
                        }
                    }
                    if !removed.is_empty() {
                        subscribe(&mut sink, "unsubscribe", &removed).await?;
                    }
                    subscribed = wanted;
                }
                frame = stream.next() => {
                    let frame = frame
                        .ok_or_else(|| VendorError::Transport("stream closed".into()))?
                        .map_err(|e| VendorError::Transport(e.to_string()))?;
                    for message in decode(frame)?.unwrap_or_default() {
                        match message {
                            StreamMessage::Bar(bar) => {
                                let live = bar.live(&bar.symbol);
                                self.store(&live).await?;
                                let last = last_bar.entry(bar.symbol.clone()).or_insert(live.start);
                                *last = (*last).max(live.start);
                            }
                            StreamMessage::Trade { symbol, p, t } => {
                                let entry = pending.entry(symbol.clone()).or_insert(Price {
                                    symbol,
                                    price: p,
                                    at: t,
                                    interval_high: p,
                                    interval_low: p,
                                    coalesced: 0,
                                });
                                if t >= entry.at {
                                    entry.price = p;
                                    entry.at = t;
                                }
                                entry.interval_high = entry.interval_high.max(p);
                                entry.interval_low = entry.interval_low.min(p);
                                entry.coalesced += 1;
                            }
                            StreamMessage::Error { code, msg } => {
                                return Err(VendorError::Refused { code, message: msg });
                            }
                            StreamMessage::Success { .. }
                            | StreamMessage::Subscription { .. }
                            | StreamMessage::Other => {}
                        }
                    }
                }
            }
        }
    }

    async fn store(&self, bar: &LiveBar) -> Result<(), VendorError> {
        match self.ingest.bar(bar, SOURCE).await? {
            Stored::Refused(why) => {
                tracing::warn!(message = "Alpaca bar not stored.", symbol = %bar.symbol, reason = %why);
            }
            Stored::New | Stored::Changed | Stored::Unchanged => {}
        }
        Ok(())
    }

    /// Fetches and ingests the closed minute bars of `symbol` after its last received bar.
    async fn backfill(
        &self,
        symbol: &str,
        last_bar: &mut HashMap<String, DateTime<Utc>>,
    ) -> Result<(), VendorError> {
        let Some(last) = last_bar.get(symbol).copied() else {
            return Ok(()); // nothing received yet: nothing to fill
        };
        let now = Utc::now();
        let floor = now - chrono::Duration::from_std(self.config.backfill_max).unwrap_or_default();
        let start = (last + chrono::Duration::minutes(1)).max(floor);
        if start >= now {
            return Ok(());
        }
        let bars = self.bars(symbol, start, now).await?;
        let count = bars.len();
        for bar in bars.iter().filter(|b| b.end <= now) {
            self.store(bar).await?;
            let entry = last_bar.entry(symbol.to_owned()).or_insert(bar.start);
            *entry = (*entry).max(bar.start);
        }
        tracing::info!(message = "Alpaca gap backfilled.", symbol, from = %start, bars = count);
        Ok(())
    }

    async fn flush(&self, pending: &mut HashMap<String, Price>) {
        if pending.is_empty() {
            return;
        }
        let prices: Vec<Price> = pending.drain().map(|(_, p)| p).collect();
        if let Err(error) = self.ingest.prices(&prices, SOURCE).await {
            tracing::warn!(message = "Coalesced prices not stored.", %error, symbols = prices.len());
        }
    }
}

/// How long a `429` asks us to wait: `Retry-After` (seconds), else `X-RateLimit-Reset` (epoch
/// seconds) minus now; capped at [`MAX_RATE_LIMIT_WAIT`].
pub fn rate_limit_wait(
    headers: &reqwest::header::HeaderMap,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let number =
        |name: &str| -> Option<i64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    let wait = if let Some(seconds) = number("retry-after") {
        Duration::from_secs(seconds.max(0) as u64)
    } else {
        let reset = DateTime::from_timestamp(number("x-ratelimit-reset")?, 0)?;
        (reset - now).to_std().unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RATE_LIMIT_WAIT))
}

/// The messages of one frame; `None` for frames without data (pings, pongs).
fn decode(frame: Message) -> Result<Option<Vec<StreamMessage>>, VendorError> {
    let text = match frame {
        Message::Text(text) => text.as_str().to_owned(),
        Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Message::Close(frame) => {
            return Err(VendorError::Transport(format!(
                "closed by the server: {frame:?}"
            )));
        }
        _ => return Ok(None),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        VendorError::Protocol(format!(
            "{e}: {}",
            text.chars().take(200).collect::<String>()
        ))
    })
}

fn expect_success(messages: Vec<StreamMessage>, wanted: &str) -> Result<(), VendorError> {
    match messages.into_iter().next() {
        Some(StreamMessage::Success { msg }) if msg == wanted => Ok(()),
        Some(StreamMessage::Error { code, msg }) => {
            Err(VendorError::Refused { code, message: msg })
        }
        other => Err(VendorError::Protocol(format!(
            "expected `{wanted}`, got {other:?}"
        ))),
    }
}

type Sink = futures::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

async fn send(sink: &mut Sink, value: &serde_json::Value) -> Result<(), VendorError> {
    sink.send(Message::text(value.to_string()))
        .await
        .map_err(|e| VendorError::Transport(e.to_string()))
}

async fn subscribe(
    sink: &mut Sink,
    action: &str,
    symbols: &BTreeSet<String>,
) -> Result<(), VendorError> {
    let symbols: Vec<&String> = symbols.iter().collect();
    send(
        sink,
        &serde_json::json!({ "action": action, "bars": symbols, "trades": symbols }),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_messages_decode() {
        let frame = Message::text(
            r#"[{"T":"b","S":"SPY","o":388.985,"h":389.13,"l":388.975,"c":389.12,"v":49378,"t":"2021-02-22T19:15:00Z","n":461,"vw":389.062639},
                {"T":"t","i":96921,"S":"AAPL","x":"D","p":126.55,"s":1,"t":"2021-02-22T15:51:44.208Z","c":["@","I"],"z":"C"},
                {"T":"q","S":"AMD","bp":87.66,"ap":87.68}]"#,
        );
        let messages = decode(frame).unwrap().unwrap();
        assert!(
            matches!(&messages[0], StreamMessage::Bar(b) if b.symbol == "SPY" && b.n == Some(461))
        );
        assert!(
            matches!(&messages[1], StreamMessage::Trade { symbol, p, .. } if symbol == "AAPL" && *p == 126.55)
        );
        assert!(matches!(messages[2], StreamMessage::Other));
        let error = decode(Message::text(
            r#"[{"T":"error","code":406,"msg":"connection limit exceeded"}]"#,
        ))
        .unwrap()
        .unwrap();
        assert!(matches!(&error[0], StreamMessage::Error { code: 406, .. }));
    }

    #[test]
    fn a_429_names_its_wait() {
        let now = Utc::now();
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(rate_limit_wait(&headers, now), None);
        headers.insert(
            "x-ratelimit-reset",
            (now.timestamp() + 3).to_string().parse().unwrap(),
        );
        let wait = rate_limit_wait(&headers, now).unwrap();
        assert!(
            wait <= Duration::from_secs(3) && wait >= Duration::from_secs(2),
            "{wait:?}"
        );
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(rate_limit_wait(&headers, now), Some(Duration::from_secs(7)));
        headers.insert("retry-after", "100000".parse().unwrap());
        assert_eq!(rate_limit_wait(&headers, now), Some(MAX_RATE_LIMIT_WAIT));
    }
}
