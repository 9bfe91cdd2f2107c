//! The known-symbols read model, fed by stock-data's symbol events.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use mirai_platform::app::ServiceApp;
use mirai_platform::events::Envelope;
use mirai_platform::events::topology::topics;
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::notification::v1 as pb;
use sqlx::{PgConnection, PgPool};

/// Registers the handlers on the service's stock-events subscription.
pub fn consume(app: &mut ServiceApp) {
    let consumer = app
        .consumer(topics::STOCK)
        .on::<ev::SymbolListed, _>("known-symbols.listed", on_listed)
        .on::<ev::SymbolUpdated, _>("known-symbols.updated", on_updated)
        .on::<ev::SymbolDelisted, _>("known-symbols.delisted", on_delisted);
    app.consume(consumer);
}

fn on_listed<'a>(
    tx: &'a mut PgConnection,
    _: &'a Envelope,
    event: ev::SymbolListed,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(upsert(tx, event.symbol, event.name, event.exchange_mic))
}

fn on_updated<'a>(
    tx: &'a mut PgConnection,
    _: &'a Envelope,
    event: ev::SymbolUpdated,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(upsert(tx, event.symbol, event.name, event.exchange_mic))
}

/// Listing (again) or changing a symbol makes it known and active.
async fn upsert(
    tx: &mut PgConnection,
    symbol: String,
    name: String,
    exchange_mic: String,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO known_symbols (symbol, name, exchange_mic) VALUES ($1, $2, $3)
         ON CONFLICT (symbol) DO UPDATE
            SET name = EXCLUDED.name, exchange_mic = EXCLUDED.exchange_mic,
                delisted = false, updated_at = now()",
    )
    .bind(symbol)
    .bind(name)
    .bind(exchange_mic)
    .execute(tx)
    .await?;
    Ok(())
}

fn on_delisted<'a>(
    tx: &'a mut PgConnection,
    _: &'a Envelope,
    event: ev::SymbolDelisted,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        sqlx::query(
            "UPDATE known_symbols SET delisted = true, updated_at = now() WHERE symbol = $1",
        )
        .bind(event.symbol)
        .execute(tx)
        .await?;
        Ok(())
    })
}

#[derive(sqlx::FromRow)]
struct Row {
    symbol: String,
    name: String,
    exchange_mic: String,
    delisted: bool,
    updated_at: DateTime<Utc>,
}

/// One page of known symbols by ticker, plus the next page's token.
pub async fn list(
    pool: &PgPool,
    request: &pb::ListKnownSymbolsRequest,
) -> Result<pb::ListKnownSymbolsResponse, tonic::Status> {
    let limit = wire::page_size(request.page_size, 500, 1000)?;
    let after = wire::page_after(&request.page_token)?;
    let mut rows: Vec<Row> = sqlx::query_as(
        "SELECT symbol, name, exchange_mic, delisted, updated_at FROM known_symbols
         WHERE symbol > $1 AND ($2 OR NOT delisted)
         ORDER BY symbol LIMIT $3",
    )
    .bind(after)
    .bind(request.include_delisted)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await
    .map_err(|e| mirai_platform::db::status(e, "symbol"))?;
    let next_page_token = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last()
            .map(|r| wire::page_token(&r.symbol))
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok(pb::ListKnownSymbolsResponse {
        symbols: rows
            .into_iter()
            .map(|r| pb::KnownSymbol {
                symbol: r.symbol,
                name: r.name,
                exchange_mic: r.exchange_mic,
                delisted: r.delisted,
                // Alerts arrive with the alerts issue; until then there are none to count.
                live_alerts: 0,
                updated_at: Some(wire::timestamp(r.updated_at)),
            })
            .collect(),
        next_page_token,
    })
}
