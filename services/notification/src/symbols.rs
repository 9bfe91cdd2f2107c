//! The known-symbols read model, fed by stock-data's symbol events.

use futures::future::BoxFuture;
use mirai_platform::events::Envelope;
use mirai_platform::events::consumer::Consumer;
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::notification::v1 as pb;
use sqlx::{PgConnection, PgPool};

use crate::context::{Context, Shared, with};
use crate::store::symbols as store;

/// Registers the handlers on the service's stock-events consumer.
pub fn register(consumer: Consumer, ctx: &Shared) -> Consumer {
    consumer
        .on::<ev::SymbolListed, _>("known-symbols.listed", on_listed)
        .on::<ev::SymbolUpdated, _>("known-symbols.updated", on_updated)
        .on::<ev::SymbolDelisted, _>("known-symbols.delisted", with(ctx, on_delisted))
}

fn on_listed<'a>(
    tx: &'a mut PgConnection,
    _: &'a Envelope,
    event: ev::SymbolListed,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(
        async move { Ok(store::upsert(tx, event.symbol, event.name, event.exchange_mic).await?) },
    )
}

fn on_updated<'a>(
    tx: &'a mut PgConnection,
    _: &'a Envelope,
    event: ev::SymbolUpdated,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(
        async move { Ok(store::upsert(tx, event.symbol, event.name, event.exchange_mic).await?) },
    )
}

/// Marks the symbol delisted, and disables its live alerts (telling their owners).
fn on_delisted<'a>(
    ctx: &'a Context,
    tx: &'a mut PgConnection,
    envelope: &'a Envelope,
    event: ev::SymbolDelisted,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        store::mark_delisted(tx, &event.symbol).await?;
        crate::saga::disable_for_delisting(ctx, tx, envelope, &event.symbol, &event.reason).await
    })
}

/// One page of known symbols by ticker, plus the next page's token.
pub async fn list(
    pool: &PgPool,
    request: &pb::ListKnownSymbolsRequest,
) -> Result<pb::ListKnownSymbolsResponse, tonic::Status> {
    let limit = wire::page_size(request.page_size, 500, 1000)?;
    let after = wire::page_after(&request.page_token)?;
    let mut rows = store::list(pool, &after, request.include_delisted, i64::from(limit) + 1)
        .await
        .map_err(|e| mirai_platform::db::status(e, "symbol"))?;
    let next_page_token = wire::next_page_token(&mut rows, limit as usize, |r| r.symbol.clone());
    Ok(pb::ListKnownSymbolsResponse {
        symbols: rows
            .into_iter()
            .map(|r| pb::KnownSymbol {
                symbol: r.symbol,
                name: r.name,
                exchange_mic: r.exchange_mic,
                delisted: r.delisted,
                live_alerts: r.live_alerts.max(0) as u32,
                updated_at: Some(wire::timestamp(r.updated_at)),
            })
            .collect(),
        next_page_token,
    })
}
