//! The replay feed: plays a symbol's stored history forward as live data.
//!
//! Each stored bar becomes a `stock.bar.closed` event (source `replay`), preceded by
//! `quotes_per_bar` synthetic `stock.price.updated` events along a seeded intra-bar path
//! (open → first extreme → other extreme → close, so every quote stays within the bar's range)
//! and followed by one at the close. Events go through the outbox like live data; the bars due
//! at one moment share a transaction (one at a time at low rates, several when a commit takes
//! longer than a bar's period). The same seed, speed and range give the same events. The bars were
//! checked when they were ingested; their quality flags travel in `bar.closed`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mirai_platform::events::outbox;
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::stock::v1 as pb;
use rand::{Rng as _, SeedableRng as _};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::SERVICE;
use crate::domain::Ticker;
use crate::error::{Error, Result, db};
use crate::quotes::{self, Quotes};
use crate::store;
use crate::store::replay::BarRow;

/// The most bars written in one transaction (when the replay is that far behind its rate).
const MAX_BATCH: usize = 100;

struct Entry {
    status: pb::ReplayStatus,
    stop: CancellationToken,
}

/// Every replay since the service started, by symbol. Replays start only while this replica
/// leads (see [`Replays::lead`]): the feed runs once per deployment, whatever the replica count.
#[derive(Clone)]
pub struct Replays {
    pool: PgPool,
    quotes: Quotes,
    entries: Arc<Mutex<BTreeMap<String, Entry>>>,
    /// The current leadership term's token; `None` while standing by.
    leadership: Arc<Mutex<Option<CancellationToken>>>,
    running: TaskTracker,
}

impl Replays {
    pub fn new(pool: PgPool, quotes: Quotes) -> Self {
        Self {
            pool,
            quotes,
            entries: Arc::default(),
            leadership: Arc::default(),
            running: TaskTracker::new(),
        }
    }

    /// Accepts replays for one leadership term: until `leadership` fires, then stops the
    /// running replays (state `STOPPED`, with the reason) and returns once they have ended.
    pub async fn lead(&self, leadership: CancellationToken) {
        *self.leadership.lock().unwrap_or_else(|e| e.into_inner()) = Some(leadership.clone());
        leadership.cancelled().await;
        self.leadership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // Every replay's stop token is a child of the term's, so all are stopping now.
        self.running.close();
        self.running.wait().await;
        self.running.reopen();
    }

    /// The current term's token, or `UNAVAILABLE` on a standby (a retry may reach the leader).
    fn leadership(&self) -> Result<CancellationToken> {
        self.leadership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|token| !token.is_cancelled())
            .ok_or_else(|| {
                Error::Unavailable(
                    "replays run on the leader replica and this one is standing by; retry".into(),
                )
            })
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Entry>) -> T) -> T {
        f(&mut self.entries.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub async fn start(&self, mut request: pb::StartReplayRequest) -> Result<pb::ReplayStatus> {
        let ticker = Ticker::parse(&request.symbol)?;
        request.symbol = ticker.as_str().to_owned();
        let timeframe = match pb::Timeframe::try_from(request.timeframe) {
            Ok(pb::Timeframe::Unspecified) => pb::Timeframe::OneDay,
            Ok(timeframe) => timeframe,
            Err(_) => return Err(Error::invalid("timeframe", "unknown timeframe")),
        };
        request.timeframe = timeframe.into();
        if request.bars_per_second == 0.0 {
            request.bars_per_second = 1.0;
        }
        if !(request.bars_per_second > 0.0 && request.bars_per_second <= 1000.0) {
            return Err(Error::invalid("bars_per_second", "must be in (0, 1000]"));
        }
        if request.quotes_per_bar > 100 {
            return Err(Error::invalid("quotes_per_bar", "must be 0-100"));
        }
        let leadership = self.leadership()?;
        let from = request.from.as_ref().and_then(wire::datetime);
        let to = request.to.as_ref().and_then(wire::datetime);
        let status = db("replay");
        let symbol = store::symbols::get(&self.pool, &ticker)
            .await
            .map_err(&status)?
            .ok_or_else(|| Error::NotFound(format!("symbol {} is not listed", ticker.as_str())))?;
        if symbol.status != "active" {
            return Err(Error::FailedPrecondition(format!(
                "symbol {} is delisted",
                ticker.as_str()
            )));
        }
        let total = store::replay::count(&self.pool, &ticker, timeframe, from, to)
            .await
            .map_err(&status)?;
        if total == 0 {
            return Err(Error::FailedPrecondition(format!(
                "no stored {} bars of {} in the range",
                timeframe.as_str_name(),
                ticker.as_str()
            )));
        }
        // Stopped by StopReplay, or with the leadership term (lost, or shutdown).
        let stop = leadership.child_token();
        let state = pb::ReplayStatus {
            symbol: ticker.as_str().to_owned(),
            state: pb::ReplayState::Running.into(),
            settings: Some(request.clone()),
            bars_emitted: 0,
            bars_total: total as u64,
            started_at: Some(wire::timestamp(Utc::now())),
            ..Default::default()
        };
        self.with(|entries| {
            if entries
                .get(ticker.as_str())
                .is_some_and(|e| e.status.state == pb::ReplayState::Running as i32)
            {
                return Err(Error::AlreadyExists(format!(
                    "a replay of {} is running",
                    ticker.as_str()
                )));
            }
            entries.insert(
                ticker.as_str().to_owned(),
                Entry {
                    status: state.clone(),
                    stop: stop.clone(),
                },
            );
            Ok(())
        })?;
        let this = self.clone();
        self.running.spawn(async move {
            let outcome = this.play(&request, timeframe, from, to, stop).await;
            this.with(|entries| {
                if let Some(entry) = entries.get_mut(&request.symbol) {
                    let (state, error) = match outcome {
                        Ok(true) => (pb::ReplayState::Finished, String::new()),
                        Ok(false) if leadership.is_cancelled() => (
                            pb::ReplayState::Stopped,
                            "this replica stopped leading (lease lost or shutdown)".to_owned(),
                        ),
                        Ok(false) => (pb::ReplayState::Stopped, String::new()),
                        Err(error) => (pb::ReplayState::Failed, error.to_string()),
                    };
                    entry.status.state = state.into();
                    entry.status.error = error;
                    entry.status.ended_at = Some(wire::timestamp(Utc::now()));
                }
            });
        });
        Ok(state)
    }

    /// Emits the bars; `Ok(true)` at the end of the range, `Ok(false)` when stopped.
    ///
    /// Bar `k` of the replay is due `k / bars_per_second` after the start. Every bar due by now
    /// goes out in one transaction (at most [`MAX_BATCH`]), so the rate holds whatever a commit
    /// costs; the events keep their order (one ordering key per symbol).
    async fn play(
        &self,
        request: &pb::StartReplayRequest,
        timeframe: pb::Timeframe,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        stop: CancellationToken,
    ) -> Result<bool, sqlx::Error> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(request.seed);
        let period = Duration::from_secs_f64(1.0 / request.bars_per_second);
        let started = tokio::time::Instant::now();
        let mut played: u32 = 0;
        let mut previous: Option<pb::Bar> = None;
        // The first page starts at `from` (inclusive), later ones after the last bar emitted.
        let mut after = from;
        let mut first = true;
        loop {
            let page =
                store::replay::page(&self.pool, &request.symbol, timeframe, after, to, first)
                    .await?;
            first = false;
            let Some(last) = page.last() else {
                return Ok(true);
            };
            after = Some(last.start_at);
            let mut rest = page.as_slice();
            while !rest.is_empty() {
                let next_due = started + period * played;
                tokio::select! {
                    // A stopped replay emits nothing more, even when the next bar is due.
                    biased;
                    _ = stop.cancelled() => return Ok(false),
                    _ = tokio::time::sleep_until(next_due) => {}
                }
                let due = (started.elapsed().as_secs_f64() * request.bars_per_second) as u32 + 1;
                let take =
                    (due.saturating_sub(played) as usize).clamp(1, MAX_BATCH.min(rest.len()));
                let (bars, later) = rest.split_at(take);
                rest = later;
                let emitted = self
                    .emit(request, timeframe, bars, previous.as_ref(), &mut rng)
                    .await?;
                played += take as u32;
                for (bar, row) in emitted.into_iter().zip(bars) {
                    if timeframe == pb::Timeframe::OneDay {
                        self.quotes.update(quotes::quote(
                            &request.symbol,
                            bar.clone(),
                            previous.take(),
                            "replay",
                        ));
                    }
                    previous = Some(bar);
                    self.with(|entries| {
                        if let Some(entry) = entries.get_mut(&request.symbol) {
                            entry.status.bars_emitted += 1;
                            entry.status.position = Some(wire::timestamp(row.start_at));
                        }
                    });
                }
            }
        }
    }

    /// Writes the events of `bars` (consecutive, oldest first) in one transaction; returns the
    /// emitted bars.
    async fn emit(
        &self,
        request: &pb::StartReplayRequest,
        timeframe: pb::Timeframe,
        bars: &[BarRow],
        previous: Option<&pb::Bar>,
        rng: &mut rand::rngs::StdRng,
    ) -> Result<Vec<pb::Bar>, sqlx::Error> {
        let mut events = outbox::Batch::default();
        let mut previous_close = previous.map(|b| b.close);
        let mut emitted = Vec::with_capacity(bars.len());
        for bar in bars {
            let closed = bar_events(request, timeframe, bar, previous_close, rng, &mut events);
            previous_close = Some(closed.close);
            emitted.push(closed);
        }
        let mut tx = self.pool.begin().await?;
        events.write(&mut tx).await?;
        tx.commit().await?;
        Ok(emitted)
    }

    /// Stops a running replay and returns its final state (idempotent).
    pub async fn stop(&self, symbol: &str) -> Option<pb::ReplayStatus> {
        self.with(|entries| entries.get(symbol).map(|entry| entry.stop.cancel()))?;
        for _ in 0..500 {
            let status = self.status(symbol)?;
            if status.state != pb::ReplayState::Running as i32 {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.status(symbol)
    }

    pub fn status(&self, symbol: &str) -> Option<pb::ReplayStatus> {
        self.with(|entries| entries.get(symbol).map(|e| e.status.clone()))
    }

    pub fn list(&self) -> Vec<pb::ReplayStatus> {
        self.with(|entries| entries.values().map(|e| e.status.clone()).collect())
    }
}

/// Pushes one bar's events: the intra-bar quotes, `bar.closed`, the quote at the close.
/// Returns the bar as `bar.closed` carries it.
fn bar_events(
    request: &pb::StartReplayRequest,
    timeframe: pb::Timeframe,
    bar: &BarRow,
    previous_close: Option<f64>,
    rng: &mut rand::rngs::StdRng,
    events: &mut outbox::Batch,
) -> pb::Bar {
    let span = (bar.end_at - bar.start_at).num_milliseconds().max(1);
    let path = intra_bar_path(bar, request.quotes_per_bar, rng);
    let n = path.len() as i64;
    let (mut running_high, mut running_low) = (bar.open, bar.open);
    for (i, price) in path.into_iter().enumerate() {
        running_high = running_high.max(price);
        running_low = running_low.min(price);
        let at = bar.start_at + chrono::Duration::milliseconds(span * (i as i64 + 1) / (n + 1));
        let event = ev::PriceUpdated {
            symbol: request.symbol.clone(),
            price,
            price_time: Some(wire::timestamp(at)),
            previous_close: previous_close.unwrap_or_default(),
            day_open: bar.open,
            day_high: running_high,
            day_low: running_low,
            day_volume: 0.0,
            interval_high: price,
            interval_low: price,
            coalesced: 1,
            source: "replay".to_owned(),
        };
        events.push(SERVICE, &event, None);
    }
    let bar_closed = pb::Bar {
        symbol: request.symbol.clone(),
        timeframe: timeframe.into(),
        start: Some(wire::timestamp(bar.start_at)),
        end: Some(wire::timestamp(bar.end_at)),
        open: bar.open,
        high: bar.high,
        low: bar.low,
        close: bar.close,
        volume: bar.volume,
        vwap: bar.vwap,
        trade_count: bar.trade_count.map(|n| n as u64),
        // The flags found when the bar was ingested travel with it.
        quality_flags: crate::quality::flags_of(bar.quality_flags)
            .map(|f| f as i32)
            .collect(),
        source_bar_count: 1,
        complete: true,
    };
    let closed = ev::BarClosed {
        bar: Some(bar_closed.clone()),
        adjustment: pb::Adjustment::Raw.into(),
        source: "replay".to_owned(),
        previous_close,
    };
    events.push(SERVICE, &closed, None);
    let at_close = ev::PriceUpdated {
        symbol: request.symbol.clone(),
        price: bar.close,
        price_time: Some(wire::timestamp(bar.end_at)),
        previous_close: previous_close.unwrap_or_default(),
        day_open: bar.open,
        day_high: bar.high,
        day_low: bar.low,
        day_volume: bar.volume,
        interval_high: bar.high.max(bar.close),
        interval_low: bar.low.min(bar.close),
        coalesced: 1,
        source: "replay".to_owned(),
    };
    events.push(SERVICE, &at_close, None);
    bar_closed
}

/// `quotes` prices inside the bar: open → first extreme → other extreme → close, linearly
/// interpolated, with the order of the extremes drawn from the seeded generator.
fn intra_bar_path(bar: &BarRow, quotes: u32, rng: &mut rand::rngs::StdRng) -> Vec<f64> {
    if quotes == 0 {
        return Vec::new();
    }
    let high_first: bool = rng.random();
    let (a, b) = if high_first {
        (bar.high, bar.low)
    } else {
        (bar.low, bar.high)
    };
    let anchors = [bar.open, a, b, bar.close];
    (1..=quotes)
        .map(|i| {
            // Position along the three legs, in (0, 3).
            let t = 3.0 * f64::from(i) / f64::from(quotes + 1);
            let leg = (t.floor() as usize).min(2);
            let frac = t - leg as f64;
            anchors[leg] + (anchors[leg + 1] - anchors[leg]) * frac
        })
        .collect()
}
