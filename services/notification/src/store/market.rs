//! The market inputs alerts are evaluated on: `last_prices`, `price_minutes`, `price_days`,
//! `bar_closes` and `forecasts`.

use chrono::{DateTime, Utc};
use mirai_proto::stock::v1::Timeframe;
use sqlx::{PgConnection, PgPool};

use crate::domain::condition::Observation;

/// Records a price: the latest price, and the minute and day ranges.
pub async fn record_price(
    tx: &mut PgConnection,
    symbol: &str,
    o: Observation,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    // One statement (three data-modifying parts on three tables): one round trip per price.
    sqlx::query!(
        "WITH latest AS (
             INSERT INTO last_prices (symbol, price, price_at) VALUES ($1, $2, $3)
             ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price, price_at = EXCLUDED.price_at
             WHERE last_prices.price_at <= EXCLUDED.price_at
         ), minute AS (
             INSERT INTO price_minutes (symbol, minute, low, high)
             VALUES ($1, date_trunc('minute', $3::timestamptz), $4, $5)
             ON CONFLICT (symbol, minute) DO UPDATE
                SET low = least(price_minutes.low, EXCLUDED.low),
                    high = greatest(price_minutes.high, EXCLUDED.high)
         )
         INSERT INTO price_days (symbol, day, low, high)
         VALUES ($1, ($3::timestamptz AT TIME ZONE 'UTC')::date, $4, $5)
         ON CONFLICT (symbol, day) DO UPDATE
            SET low = least(price_days.low, EXCLUDED.low),
                high = greatest(price_days.high, EXCLUDED.high)",
        symbol,
        o.price,
        at,
        o.low,
        o.high,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Lowest and highest price of `symbol` since `since`: minute buckets for the last two days,
/// day buckets before that (a long window's old end is resolved to the day).
///
/// After a firing the window starts at the firing (`after_firing`): the firing's minute bucket
/// is left out, since it holds the prices that led to the firing; the current observation is
/// added by the caller.
pub async fn window(
    tx: &mut PgConnection,
    symbol: &str,
    since: DateTime<Utc>,
    after_firing: bool,
) -> Result<Option<(f64, f64)>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT min(low), max(high) FROM (
             SELECT low, high FROM price_minutes
              WHERE symbol = $1 AND (minute > date_trunc('minute', $2::timestamptz)
                                     OR (NOT $3 AND minute = date_trunc('minute', $2::timestamptz)))
             UNION ALL
             SELECT low, high FROM price_days
              WHERE symbol = $1 AND day >= ($2::timestamptz AT TIME ZONE 'UTC')::date
                AND day < ((now() - interval '2 days') AT TIME ZONE 'UTC')::date
         ) w",
        symbol,
        since,
        after_firing,
    )
    .fetch_one(tx)
    .await?;
    Ok(match (row.min, row.max) {
        (Some(low), Some(high)) => Some((low, high)),
        _ => None,
    })
}

/// Prunes history no condition can look at any more.
pub async fn prune_history(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let minutes =
        sqlx::query!("DELETE FROM price_minutes WHERE minute < now() - interval '3 days'")
            .execute(pool)
            .await?
            .rows_affected();
    let days =
        sqlx::query!("DELETE FROM price_days WHERE day < (now() - interval '400 days')::date")
            .execute(pool)
            .await?
            .rows_affected();
    Ok(minutes + days)
}

/// The latest price of `symbol`.
pub async fn last_price(tx: &mut PgConnection, symbol: &str) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar!("SELECT price FROM last_prices WHERE symbol = $1", symbol)
        .fetch_optional(tx)
        .await
}

/// Records a bar's close (a newer bar wins).
pub async fn record_bar_close(
    tx: &mut PgConnection,
    symbol: &str,
    timeframe: Timeframe,
    close: f64,
    start: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO bar_closes (symbol, timeframe, close, bar_start) VALUES ($1, $2, $3, $4)
             ON CONFLICT (symbol, timeframe) DO UPDATE
                SET close = EXCLUDED.close, bar_start = EXCLUDED.bar_start
             WHERE bar_closes.bar_start <= EXCLUDED.bar_start",
        symbol,
        timeframe as i16,
        close,
        start,
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// The latest bar close of `symbol` in `timeframe`.
pub async fn bar_close(
    tx: &mut PgConnection,
    symbol: &str,
    timeframe: Timeframe,
) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT close FROM bar_closes WHERE symbol = $1 AND timeframe = $2",
        symbol,
        timeframe as i16
    )
    .fetch_optional(tx)
    .await
}

/// Records a forecast (an encoded `prediction.v1.Forecast`; a newer one wins).
pub async fn record_forecast(
    tx: &mut PgConnection,
    symbol: &str,
    timeframe: Timeframe,
    forecast: Vec<u8>,
    as_of: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO forecasts (symbol, timeframe, forecast, as_of) VALUES ($1, $2, $3, $4)
             ON CONFLICT (symbol, timeframe) DO UPDATE
                SET forecast = EXCLUDED.forecast, as_of = EXCLUDED.as_of
             WHERE forecasts.as_of <= EXCLUDED.as_of",
        symbol,
        timeframe as i16,
        forecast,
        as_of,
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// The encoded latest forecast of `symbol`: the `timeframe`'s first, then any (most alerts
/// are daily and so are the models).
pub async fn forecast(
    tx: &mut PgConnection,
    symbol: &str,
    timeframe: Timeframe,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT forecast FROM forecasts WHERE symbol = $1
         ORDER BY (timeframe = $2) DESC, as_of DESC LIMIT 1",
        symbol,
        timeframe as i16,
    )
    .fetch_optional(tx)
    .await
}
