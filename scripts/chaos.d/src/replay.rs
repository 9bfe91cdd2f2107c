//! The replay of SPX daily bars that fires the alerts: started through the gateway's admin
//! API on the stock-data leader, and started again from the first bar not yet emitted when a
//! fault stopped it (a killed leader ends its replays `STOPPED`; the new leader starts none on
//! its own). Progress is read from stock-data's outbox (the `stock.bar.closed` events
//! committed), not from the per-replica replay status.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use prost::Message;
use serde_json::json;

use crate::invariants::Databases;
use crate::stack::Kind;
use crate::workload::Workload;

/// Bars replayed per second, and quote updates generated inside each bar.
pub const BARS_PER_SECOND: f64 = 4.0;
const QUOTES_PER_BAR: u32 = 3;

/// The daily SPX bars stored by stock-data (start instants, oldest first) and their low/high.
pub async fn stored_bars(dbs: &Databases) -> Result<Vec<(DateTime<Utc>, f64, f64)>> {
    Ok(sqlx::query_as(
        "SELECT start_at, low, high FROM bars WHERE symbol = 'SPX' AND timeframe = $1 ORDER BY start_at",
    )
    .bind(mirai_proto::stock::v1::Timeframe::OneDay as i16)
    .fetch_all(dbs.pool(Kind::StockData))
    .await?)
}

/// Bar starts of the `stock.bar.closed` events committed since `since`.
async fn emitted(dbs: &Databases, since: DateTime<Utc>) -> Result<BTreeSet<DateTime<Utc>>> {
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE event_type = 'mirai.stock.bar.closed.v1' AND created_at >= $1",
    )
    .bind(since)
    .fetch_all(dbs.pool(Kind::StockData))
    .await?;
    let mut starts = BTreeSet::new();
    for payload in payloads {
        let event = mirai_proto::events::v1::BarClosed::decode(payload.as_slice())?;
        if let Some(start) = event.bar.and_then(|b| b.start)
            && let Some(at) = DateTime::from_timestamp(start.seconds, start.nanos as u32)
        {
            starts.insert(at);
        }
    }
    Ok(starts)
}

/// Replays `bars` (consecutive stored bars) until every one was emitted or `limit` passes.
/// Returns how many times it had to be started.
pub async fn run(
    workload: Arc<Workload>,
    admin_token: String,
    dbs: Arc<Databases>,
    bars: Vec<DateTime<Utc>>,
    seed: u64,
    limit: Duration,
) -> Result<u32> {
    let since = Utc::now() - chrono::Duration::seconds(1);
    let started = Instant::now();
    let end = *bars.last().expect("bars to replay") + chrono::Duration::hours(1);
    let mut starts = 0;
    let mut last_progress = (0usize, Instant::now() - Duration::from_secs(60));
    loop {
        let done = emitted(&dbs, since).await?;
        let missing: Vec<_> = bars.iter().filter(|b| !done.contains(b)).collect();
        let Some(first_missing) = missing.first() else {
            return Ok(starts);
        };
        if started.elapsed() > limit {
            bail!(
                "replay: {} of {} bars not emitted after {limit:?}",
                missing.len(),
                bars.len()
            );
        }
        if done.len() != last_progress.0 {
            last_progress = (done.len(), Instant::now());
        }
        // No progress for 5 s (or never started): start it (again) from the first missing bar.
        if last_progress.1.elapsed() > Duration::from_secs(5) {
            let body = json!({
                "symbol": "SPX",
                "timeframe": "1Day",
                "from": first_missing.to_rfc3339(),
                "to": end.to_rfc3339(),
                "bars_per_second": BARS_PER_SECOND,
                "quotes_per_bar": QUOTES_PER_BAR,
                "seed": seed,
            });
            match workload
                .call("POST", "/v1/admin/replays", Some(&admin_token), Some(body))
                .await
            {
                Ok((201, _)) => {
                    starts += 1;
                    last_progress.1 = Instant::now();
                }
                // Already running on the leader.
                Ok((409, _)) => last_progress.1 = Instant::now(),
                // A standby was asked, or there is no leader yet: ask again.
                Ok((status, _)) if status >= 500 => {}
                Ok((status, body)) => bail!("starting the replay: {status} {body}"),
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
