//! The bar loop and the other consumed events.
//!
//! On `stock.bar.closed` (daily bars), in the consumer's transaction:
//! 1. the symbol's series is extended with the bar (or fetched from stock-data up to it);
//! 2. the predictions made at the previous bar mature: outcomes and scores are written, each
//!    scored version's rolling scoreboard goes out as `model.performance.updated`, the
//!    champion's thresholds may raise `model.degraded`, a significantly better challenger is
//!    proposed or, when configured, promoted (`model.promoted`);
//! 3. every live version (champion, challengers, shadows) forecasts the next bar; the
//!    predictions are stored and published together as `prediction.generated`.
//!
//! Everything, events included, commits with the inbox row, so a redelivered bar has no
//! second effect. `symbol.delisted` drops the symbol's caches; `user.deletion.requested` purges
//! the user's stored predictions (the deletion saga).

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use mirai_platform::app::ServiceApp;
use mirai_platform::events::consumer::{Batching, Handler};
use mirai_platform::events::deletion::{self, Purge};
use mirai_platform::events::topology::topics;
use mirai_platform::events::{Envelope, outbox};
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::stock::v1 as stock;
use sqlx::PgConnection;

use crate::bars::{BarsError, bar_of};
use crate::context::Context;
use crate::domain::symbol::Symbol;
use crate::domain::traffic::Role;
use crate::store::predictions::{self, Origin, Stored};

/// Registers the stock-events and user-events handlers.
pub fn consume(app: &mut ServiceApp, context: Arc<Context>) {
    // Batched: bars of one symbol arrive back to back in a replay or a catch-up (one ordering
    // key, so one at a time), and a commit per bar would bound the bar loop at the disk's
    // fsync rate.
    let stock = app
        .consumer(topics::STOCK)
        .batched(Batching::default())
        .on::<ev::BarClosed, _>(
            "prediction.bar-closed",
            BarLoop {
                context: context.clone(),
            },
        )
        .on::<ev::SymbolDelisted, _>(
            "prediction.symbol-delisted",
            Delisted {
                context: context.clone(),
            },
        );
    app.consume(stock);
    let purge: Purge = Arc::new(|tx, user_id| {
        Box::pin(async move { Ok(predictions::purge_user(tx, user_id).await?) })
    });
    let users = deletion::participate(
        app.consumer(topics::USER),
        crate::SERVICE,
        topics::PREDICTION,
        purge,
    );
    app.consume(users);
}

struct BarLoop {
    context: Arc<Context>,
}

impl Handler<ev::BarClosed> for BarLoop {
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        envelope: &'a Envelope,
        event: ev::BarClosed,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.on_bar(tx, envelope, event))
    }
}

impl BarLoop {
    #[tracing::instrument(skip_all, fields(symbol, bar_start))]
    async fn on_bar(
        &self,
        tx: &mut PgConnection,
        envelope: &Envelope,
        event: ev::BarClosed,
    ) -> anyhow::Result<()> {
        let ctx = &self.context;
        let Some(raw) = event.bar.as_ref() else {
            anyhow::bail!("stock.bar.closed without a bar");
        };
        let timeframe = stock::Timeframe::try_from(raw.timeframe).unwrap_or_default();
        if !matches!(
            timeframe,
            stock::Timeframe::OneDay | stock::Timeframe::Unspecified
        ) {
            return Ok(()); // every model forecasts daily bars
        }
        let symbol = match Symbol::parse(&raw.symbol) {
            Ok(symbol) => symbol,
            Err(error) => {
                tracing::warn!(message = "Bar of an invalid symbol ignored.", %error);
                return Ok(());
            }
        };
        let bar = match bar_of(raw) {
            Ok(bar) => bar,
            Err(error) => {
                tracing::warn!(message = "Unusable bar ignored.", symbol = %symbol, %error);
                return Ok(());
            }
        };
        tracing::Span::current().record("symbol", symbol.as_str());
        tracing::Span::current().record("bar_start", tracing::field::display(bar.start));
        let snapshot = match ctx
            .predictor
            .bars
            .through(&symbol, bar, event.previous_close, event.adjustment)
            .await
        {
            Ok(snapshot) => snapshot,
            // Nothing to forecast from; not worth a redelivery.
            Err(error @ (BarsError::NotFound(_) | BarsError::Invalid { .. })) => {
                tracing::warn!(message = "Bar skipped.", symbol = %symbol, %error);
                return Ok(());
            }
            // stock-data down: fail, so Pub/Sub redelivers later.
            Err(error) => return Err(error.into()),
        };
        let correlation = envelope
            .correlation_id
            .clone()
            .or_else(|| Some(envelope.id.to_string()));
        let traffic = ctx.predictor.traffic.current();

        // 2. Maturing.
        let scored = crate::scoreboard::score_matured(tx, &snapshot).await?;
        if !scored.is_empty() {
            let promotion = crate::scoreboard::after_scoring(
                tx,
                &traffic,
                &scored,
                &ctx.scoring,
                &ctx.metrics,
                correlation.clone(),
            )
            .await?;
            if let Some(decision) = promotion
                && ctx.predictor.models.served(&decision.model).is_some()
            {
                crate::admin::promote_in(
                    tx,
                    &decision.model,
                    "system",
                    &decision.reason,
                    false,
                    true,
                    correlation.clone(),
                )
                .await?;
            }
        }

        // 3. Forecasting the next bar with every live version.
        let started = Instant::now();
        let live = traffic.traffic.live();
        let runs = live.iter().filter_map(|(model, role)| {
            let served = ctx.predictor.models.served(model)?;
            let snapshot = snapshot.clone();
            let predictor = ctx.predictor.clone();
            let role = *role;
            Some(async move {
                predictor
                    .forecast_many(&served, role, &[snapshot], Origin::Event, started)
                    .await
                    .pop()
                    .map(|r| (served.model().clone(), role, r))
            })
        });
        let results = futures::future::join_all(runs).await;
        let mut made = Vec::new();
        for (model, role, result) in results.into_iter().flatten() {
            match result {
                Ok(m) => made.push(m),
                Err(error) => {
                    tracing::info!(message = "Version did not forecast this bar.", model = %model, role = ?role, %error);
                }
            }
        }
        if made.is_empty() {
            return Ok(());
        }
        // Champion first, then challengers, then shadows (`live` order).
        made.sort_by_key(|m| match m.role {
            Role::Champion => 0,
            Role::Challenger => 1,
            Role::Shadow => 2,
            Role::Idle => 3,
        });
        let rows: Vec<Stored> = made
            .iter()
            .map(|m| Stored {
                made: m.clone(),
                origin: Origin::Event,
                served: false,
                user_id: None,
            })
            .collect();
        predictions::insert(tx, &rows).await?;
        let first = &made[0];
        outbox::enqueue(
            tx,
            crate::SERVICE,
            &ev::PredictionGenerated {
                symbol: symbol.as_str().to_owned(),
                timeframe: first.timeframe,
                as_of: Some(wire::timestamp(first.as_of)),
                target_start: Some(wire::timestamp(first.target_start)),
                last_close: first.last_close,
                forecasts: made.iter().map(|m| m.to_wire()).collect(),
                cause_event_id: envelope.id.to_string(),
            },
            correlation,
        )
        .await?;
        Ok(())
    }
}

struct Delisted {
    context: Arc<Context>,
}

impl Handler<ev::SymbolDelisted> for Delisted {
    fn handle<'a>(
        &'a self,
        _tx: &'a mut PgConnection,
        _envelope: &'a Envelope,
        event: ev::SymbolDelisted,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if let Ok(symbol) = Symbol::parse(&event.symbol) {
                self.context.predictor.bars.forget(&symbol);
                for info in self.context.predictor.models.list() {
                    if let Some(served) = info.served {
                        served.forget(symbol.as_str());
                    }
                }
            }
            Ok(())
        })
    }
}
