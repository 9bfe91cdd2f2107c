//! The `known_symbols` read model (stock-data's symbol events).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

/// Listing (again) or changing a symbol makes it known and active.
pub async fn upsert(
    tx: &mut PgConnection,
    symbol: String,
    name: String,
    exchange_mic: String,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO known_symbols (symbol, name, exchange_mic) VALUES ($1, $2, $3)
         ON CONFLICT (symbol) DO UPDATE
            SET name = EXCLUDED.name, exchange_mic = EXCLUDED.exchange_mic,
                delisted = false, updated_at = now()",
        symbol,
        name,
        exchange_mic,
    )
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn mark_delisted(tx: &mut PgConnection, symbol: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE known_symbols SET delisted = true, updated_at = now() WHERE symbol = $1",
        symbol
    )
    .execute(tx)
    .await?;
    Ok(())
}

pub struct Row {
    pub symbol: String,
    pub name: String,
    pub exchange_mic: String,
    pub delisted: bool,
    pub updated_at: DateTime<Utc>,
    pub live_alerts: i64,
}

/// Up to `limit` known symbols after `after` by ticker, with their live alert counts.
pub async fn list(
    pool: &PgPool,
    after: &str,
    include_delisted: bool,
    limit: i64,
) -> Result<Vec<Row>, sqlx::Error> {
    sqlx::query_as!(
        Row,
        r#"SELECT symbol, name, exchange_mic, delisted, updated_at,
            (SELECT count(*) FROM alerts a WHERE a.symbol = k.symbol
               AND a.status IN ('PENDING', 'ACTIVE')) AS "live_alerts!"
         FROM known_symbols k
         WHERE symbol > $1 AND ($2 OR NOT delisted)
         ORDER BY symbol LIMIT $3"#,
        after,
        include_delisted,
        limit,
    )
    .fetch_all(pool)
    .await
}
