//! The symbol read model, fed by stock-data's symbol events.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use mirai_platform::events::Envelope;
use mirai_platform::events::consumer::Consumer;
use mirai_platform::wire;
use mirai_proto::analytics::v1 as pb;
use mirai_proto::events::v1 as ev;
use sqlx::{PgConnection, PgPool};

/// Registers the handlers on the service's stock-events consumer.
pub fn register(consumer: Consumer) -> Consumer {
    consumer
        .on::<ev::SymbolListed, _>("symbols.listed", on_listed)
        .on::<ev::SymbolUpdated, _>("symbols.updated", on_updated)
        .on::<ev::SymbolDelisted, _>("symbols.delisted", on_delisted)
}

/// The metadata both `symbol.listed` and `symbol.updated` carry.
struct Metadata {
    symbol: String,
    name: String,
    exchange_mic: String,
    currency: String,
    asset_type: i32,
}

fn on_listed<'a>(
    tx: &'a mut PgConnection,
    _: &'a Envelope,
    e: ev::SymbolListed,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(upsert(
        tx,
        Metadata {
            symbol: e.symbol,
            name: e.name,
            exchange_mic: e.exchange_mic,
            currency: e.currency,
            asset_type: e.asset_type,
        },
    ))
}

fn on_updated<'a>(
    tx: &'a mut PgConnection,
    _: &'a Envelope,
    e: ev::SymbolUpdated,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(upsert(
        tx,
        Metadata {
            symbol: e.symbol,
            name: e.name,
            exchange_mic: e.exchange_mic,
            currency: e.currency,
            asset_type: e.asset_type,
        },
    ))
}

async fn upsert(tx: &mut PgConnection, m: Metadata) -> anyhow::Result<()> {
    sqlx::query!(
        "INSERT INTO symbols (symbol, name, exchange_mic, currency, asset_type)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (symbol) DO UPDATE
            SET name = EXCLUDED.name, exchange_mic = EXCLUDED.exchange_mic,
                currency = EXCLUDED.currency, asset_type = EXCLUDED.asset_type,
                delisted = false, updated_at = now()",
        m.symbol,
        m.name,
        m.exchange_mic,
        m.currency,
        m.asset_type,
    )
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
        sqlx::query!(
            "UPDATE symbols SET delisted = true, updated_at = now() WHERE symbol = $1",
            event.symbol
        )
        .execute(tx)
        .await?;
        Ok(())
    })
}

struct Row {
    symbol: String,
    name: String,
    exchange_mic: String,
    currency: String,
    asset_type: i32,
    delisted: bool,
    updated_at: DateTime<Utc>,
}

/// One page of the read model by ticker, plus the next page's token.
pub async fn list(
    pool: &PgPool,
    request: &pb::ListSymbolsRequest,
) -> Result<pb::ListSymbolsResponse, tonic::Status> {
    let limit = wire::page_size(request.page_size, 500, 1000)?;
    let after = wire::page_after(&request.page_token)?;
    let mut rows: Vec<Row> = sqlx::query_as!(
        Row,
        "SELECT symbol, name, exchange_mic, currency, asset_type, delisted, updated_at
         FROM symbols WHERE symbol > $1 AND ($2 OR NOT delisted)
         ORDER BY symbol LIMIT $3",
        after,
        request.include_delisted,
        i64::from(limit) + 1,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| mirai_platform::db::status(e, "symbol"))?;
    let coverage = crate::store::bars::coverage(
        pool,
        &rows.iter().map(|r| r.symbol.clone()).collect::<Vec<_>>(),
    )
    .await
    .map_err(|e| mirai_platform::db::status(e, "symbol"))?;
    let next_page_token = wire::next_page_token(&mut rows, limit as usize, |r| r.symbol.clone());
    Ok(pb::ListSymbolsResponse {
        symbols: rows
            .into_iter()
            .map(|r| {
                let held = coverage.get(&r.symbol).cloned().unwrap_or_default();
                pb::ReadModelSymbol {
                    symbol: r.symbol,
                    name: r.name,
                    exchange_mic: r.exchange_mic,
                    currency: r.currency,
                    asset_type: r.asset_type,
                    delisted: r.delisted,
                    bar_count: held.count as u64,
                    first_bar: held.first.map(wire::timestamp),
                    last_bar: held.last.map(wire::timestamp),
                    updated_at: Some(wire::timestamp(r.updated_at)),
                }
            })
            .collect(),
        next_page_token,
    })
}
