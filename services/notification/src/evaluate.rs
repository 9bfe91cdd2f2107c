//! Evaluation of alerts on `stock.price.updated`, `stock.bar.closed` and
//! `prediction.generated`.
//!
//! The [`Index`] holds, per symbol, the compiled rules of its ACTIVE alerts. It is built from
//! the database at start and kept current by `LISTEN mirai_alerts` (a trigger notifies at
//! commit whenever an alert's status or rule changes, on any replica), with a periodic full
//! reload as the fallback. An event on a symbol without active alerts costs nothing but its
//! inbox row.
//!
//! The index decides *which* symbols need work and saves re-parsing rules; it is never the
//! authority on state. The handler reads the symbol's active alerts with their persisted state
//! in its transaction, evaluates them in memory, and writes back only the alerts whose state
//! changed, guarded by `state_version`: if another replica evaluated the same alert in
//! between, the write affects no row, the transaction rolls back (inbox row included) and the
//! event is redelivered and evaluated on the fresh state. A firing writes the state, the
//! notification, its deliveries and the outgoing events in that same transaction, so a
//! crossing fires exactly once across redelivery, restarts and replicas.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use mirai_platform::events::Envelope;
use mirai_platform::events::outbox;
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::notification::v1 as pb;
use mirai_proto::prediction::v1 as prediction;
use mirai_proto::stock::v1::Timeframe;
use prost::Message as _;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::SERVICE;
use crate::context::Context;
use crate::domain::alert::{Cause, Frequency, Rule, State};
use crate::domain::condition::{ForecastView, Inputs, Observation, money};
use crate::domain::template::Template;
use crate::notify::Outgoing;
use crate::public;
use crate::saga;
use crate::store::{alerts, market};

// === The index ===

/// A compiled rule of one alert.
#[derive(Debug)]
pub struct Compiled {
    pub rule_version: i32,
    pub rule: Rule,
    pub template: Option<Template>,
}

/// Per symbol, the compiled rules of its ACTIVE alerts.
#[derive(Default)]
pub struct Index {
    symbols: RwLock<HashMap<String, HashMap<Uuid, Arc<Compiled>>>>,
}

fn compile_parts(
    rule_version: i32,
    condition: &[u8],
    frequency: i16,
    bar_timeframe: i16,
    cooldown_secs: i64,
    template: &str,
) -> anyhow::Result<Compiled> {
    let row = alerts::Row {
        alert_id: Uuid::nil(),
        user_id: Uuid::nil(),
        symbol: String::new(),
        name: String::new(),
        condition: condition.to_vec(),
        frequency,
        bar_timeframe,
        cooldown_secs,
        expires_at: None,
        message_template: template.to_owned(),
        channels: Vec::new(),
        webhook_endpoint_ids: Vec::new(),
        enabled: true,
        status: String::new(),
        status_reason: String::new(),
        armed_up: false,
        armed_down: false,
        move_ref_at: None,
        last_fired_bar: None,
        trigger_count: 0,
        last_triggered_at: None,
        state_version: 0,
        rule_version,
        saga_attempt: 0,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        activated_at: None,
    };
    Ok(Compiled {
        rule_version,
        rule: row.rule()?,
        template: row.template(),
    })
}

impl Index {
    /// Whether any active alert is on `symbol`.
    pub fn watches(&self, symbol: &str) -> bool {
        self.symbols
            .read()
            .expect("index lock")
            .get(symbol)
            .is_some_and(|m| !m.is_empty())
    }

    /// Number of indexed alerts.
    pub fn len(&self) -> usize {
        self.symbols
            .read()
            .expect("index lock")
            .values()
            .map(HashMap::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The compiled rule of `row`, from the index when current, else compiled now (and kept).
    pub fn compiled(&self, row: &alerts::Row) -> anyhow::Result<Arc<Compiled>> {
        if let Some(c) = self
            .symbols
            .read()
            .expect("index lock")
            .get(&row.symbol)
            .and_then(|m| m.get(&row.alert_id))
            .filter(|c| c.rule_version == row.rule_version)
        {
            return Ok(c.clone());
        }
        let compiled = Arc::new(compile_parts(
            row.rule_version,
            &row.condition,
            row.frequency,
            row.bar_timeframe,
            row.cooldown_secs,
            &row.message_template,
        )?);
        self.insert(&row.symbol, row.alert_id, compiled.clone());
        Ok(compiled)
    }

    fn insert(&self, symbol: &str, alert_id: Uuid, compiled: Arc<Compiled>) {
        self.symbols
            .write()
            .expect("index lock")
            .entry(symbol.to_owned())
            .or_default()
            .insert(alert_id, compiled);
    }

    fn remove(&self, alert_id: Uuid) {
        let mut symbols = self.symbols.write().expect("index lock");
        for rules in symbols.values_mut() {
            rules.remove(&alert_id);
        }
        symbols.retain(|_, rules| !rules.is_empty());
    }

    fn apply(&self, row: alerts::IndexRow) {
        self.remove(row.alert_id);
        if row.status != "ACTIVE" {
            return;
        }
        match compile_parts(
            row.rule_version,
            &row.condition,
            row.frequency,
            row.bar_timeframe,
            row.cooldown_secs,
            &row.message_template,
        ) {
            Ok(c) => self.insert(&row.symbol, row.alert_id, Arc::new(c)),
            Err(error) => {
                tracing::warn!(message = "Alert rule does not compile; not indexed.", alert_id = %row.alert_id, %error);
            }
        }
    }

    /// Replaces the whole index with the database's ACTIVE alerts.
    pub async fn rebuild(&self, pool: &PgPool) -> Result<usize, sqlx::Error> {
        let rows = alerts::index_rows(pool).await?;
        let mut fresh: HashMap<String, HashMap<Uuid, Arc<Compiled>>> = HashMap::new();
        for row in rows {
            if let Ok(c) = compile_parts(
                row.rule_version,
                &row.condition,
                row.frequency,
                row.bar_timeframe,
                row.cooldown_secs,
                &row.message_template,
            ) {
                fresh
                    .entry(row.symbol)
                    .or_default()
                    .insert(row.alert_id, Arc::new(c));
            }
        }
        let count = fresh.values().map(HashMap::len).sum();
        *self.symbols.write().expect("index lock") = fresh;
        Ok(count)
    }

    async fn reload_one(&self, pool: &PgPool, alert_id: Uuid) -> Result<(), sqlx::Error> {
        let row = alerts::index_row(pool, alert_id).await?;
        match row {
            Some(row) => self.apply(row),
            None => self.remove(alert_id),
        }
        Ok(())
    }

    /// Follows alert changes until `stop`: notifications as they commit, and a full reload
    /// every `full_reload` (and after the listener reconnects, since notifications sent while
    /// it was away are lost).
    pub async fn follow(&self, pool: PgPool, full_reload: Duration, stop: CancellationToken) {
        let mut listener: Option<sqlx::postgres::PgListener> = None;
        let mut next_reload = tokio::time::Instant::now() + full_reload;
        while !stop.is_cancelled() {
            if listener.is_none()
                && let Some(l) = mirai_platform::db::listen(&pool, "mirai_alerts").await
            {
                listener = Some(l);
                // Changes made while no one listened are only in the table.
                if let Err(error) = self.rebuild(&pool).await {
                    tracing::warn!(message = "Alert index reload failed.", %error);
                }
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|n| n.payload().to_owned()).map(Some),
                    None => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Ok(None)
                    }
                }
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(next_reload) => {
                    if let Err(error) = self.rebuild(&pool).await {
                        tracing::warn!(message = "Alert index reload failed.", %error);
                    }
                    next_reload = tokio::time::Instant::now() + full_reload;
                }
                received = notified => match received {
                    Ok(Some(payload)) => {
                        if let Ok(id) = payload.parse::<Uuid>()
                            && let Err(error) = self.reload_one(&pool, id).await
                        {
                            tracing::warn!(message = "Alert index update failed.", %error);
                        }
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(message = "Alert index listener lost; reconnecting.", %error);
                        listener = None;
                    }
                },
            }
        }
    }
}

// === Market inputs ===

fn timeframe_code(tf: i32) -> Timeframe {
    match Timeframe::try_from(tf) {
        Ok(Timeframe::Unspecified) | Err(_) => Timeframe::OneDay,
        Ok(tf) => tf,
    }
}

struct StoredForecast {
    view: ForecastView,
    forecast: prediction::Forecast,
}

async fn forecast_of(
    tx: &mut PgConnection,
    symbol: &str,
    timeframe: Timeframe,
) -> Result<Option<StoredForecast>, sqlx::Error> {
    let bytes = market::forecast(tx, symbol, timeframe).await?;
    Ok(bytes
        .and_then(|b| prediction::Forecast::decode(b.as_slice()).ok())
        .map(|f| StoredForecast {
            view: ForecastView {
                point: f.point,
                lower: f.lower,
                upper: f.upper,
                p_up: f.p_up,
            },
            forecast: f,
        }))
}

// === Handlers ===

/// One event to evaluate a symbol's alerts on.
struct Evaluation<'a> {
    symbol: &'a str,
    cause: Cause,
    /// The price (or bar close) observed; `None` when unknown (forecast before any price).
    observation: Option<Observation>,
    at: DateTime<Utc>,
    envelope: &'a Envelope,
}

pub fn on_price<'a>(
    ctx: &'a Context,
    tx: &'a mut PgConnection,
    envelope: &'a Envelope,
    e: ev::PriceUpdated,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        if !(ctx.index.watches(&e.symbol) && e.price.is_finite() && e.price > 0.0) {
            return Ok(());
        }
        let at = e
            .price_time
            .as_ref()
            .and_then(wire::datetime)
            .unwrap_or(envelope.time);
        let valid = |x: f64| x.is_finite() && x > 0.0;
        let observation = Observation {
            price: e.price,
            high: if valid(e.interval_high) {
                e.interval_high.max(e.price)
            } else {
                e.price
            },
            low: if valid(e.interval_low) {
                e.interval_low.min(e.price)
            } else {
                e.price
            },
        };
        market::record_price(tx, &e.symbol, observation, at).await?;
        evaluate(
            ctx,
            tx,
            Evaluation {
                symbol: &e.symbol,
                cause: Cause::Price,
                observation: Some(observation),
                at,
                envelope,
            },
        )
        .await
    })
}

pub fn on_bar<'a>(
    ctx: &'a Context,
    tx: &'a mut PgConnection,
    envelope: &'a Envelope,
    e: ev::BarClosed,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let Some(bar) = e.bar else {
            return Ok(());
        };
        let timeframe = timeframe_code(bar.timeframe);
        let start = bar
            .start
            .as_ref()
            .and_then(wire::datetime)
            .unwrap_or(envelope.time);
        // Kept for every symbol with alerts: the {{close}} placeholder.
        if !(ctx.index.watches(&bar.symbol) && bar.close.is_finite() && bar.close > 0.0) {
            return Ok(());
        }
        market::record_bar_close(tx, &bar.symbol, timeframe, bar.close, start).await?;
        evaluate(
            ctx,
            tx,
            Evaluation {
                symbol: &bar.symbol,
                cause: Cause::BarClose(timeframe),
                observation: Some(Observation::at(bar.close)),
                at: start,
                envelope,
            },
        )
        .await
    })
}

pub fn on_prediction<'a>(
    ctx: &'a Context,
    tx: &'a mut PgConnection,
    envelope: &'a Envelope,
    e: ev::PredictionGenerated,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        // The champion's forecast (the first; the role says so when set).
        let Some(champion) = e
            .forecasts
            .iter()
            .find(|f| f.role == prediction::ModelRole::Champion as i32)
            .or_else(|| e.forecasts.first())
        else {
            return Ok(());
        };
        if !ctx.index.watches(&e.symbol) {
            return Ok(());
        }
        let as_of = e
            .as_of
            .as_ref()
            .and_then(wire::datetime)
            .unwrap_or(envelope.time);
        market::record_forecast(
            tx,
            &e.symbol,
            timeframe_code(e.timeframe),
            champion.encode_to_vec(),
            as_of,
        )
        .await?;
        let last = market::last_price(tx, &e.symbol).await?;
        let price = last.or((e.last_close > 0.0).then_some(e.last_close));
        evaluate(
            ctx,
            tx,
            Evaluation {
                symbol: &e.symbol,
                cause: Cause::Forecast,
                observation: price.map(Observation::at),
                at: envelope.time,
                envelope,
            },
        )
        .await
    })
}

/// A concurrent evaluation changed an alert first; the event is redelivered.
#[derive(Debug, thiserror::Error)]
#[error("alert {0} changed concurrently; retrying the event")]
pub struct Conflict(Uuid);

async fn evaluate(ctx: &Context, tx: &mut PgConnection, ev: Evaluation<'_>) -> anyhow::Result<()> {
    let rows = alerts::active_on(tx, ev.symbol).await?;
    let mut changed: Vec<Changed> = Vec::new();
    let mut forecasts: HashMap<Timeframe, Option<Arc<StoredForecast>>> = HashMap::new();
    for row in rows {
        let compiled = match ctx.index.compiled(&row) {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(message = "Alert rule does not compile; skipped.", alert_id = %row.alert_id, %error);
                continue;
            }
        };
        let rule = &compiled.rule;
        if !rule.listens_to(ev.cause) {
            continue;
        }
        let forecast = if rule.condition.is_forecast() {
            match forecasts.get(&rule.timeframe) {
                Some(f) => f.clone(),
                None => {
                    let f = forecast_of(tx, ev.symbol, rule.timeframe)
                        .await?
                        .map(Arc::new);
                    forecasts.insert(rule.timeframe, f.clone());
                    f
                }
            }
        } else {
            None
        };
        let state = row.state();
        let window = match rule.condition.window() {
            Some(w) => {
                let start = ev.at - chrono::Duration::from_std(w).unwrap_or_default();
                let (since, after_firing) = match state.move_ref_at {
                    Some(r) if r > start => (r, true),
                    _ => (start, false),
                };
                let observed = ev.observation.map(|o| (o.low, o.high));
                market::window(tx, ev.symbol, since, after_firing)
                    .await?
                    .or(observed)
            }
            None => None,
        };
        let inputs = Inputs {
            observation: ev.observation,
            forecast: forecast.as_ref().map(|f| f.view),
            window,
        };
        let decision = rule.decide(state, &inputs, ev.cause, ev.at);
        if decision.state == state {
            continue;
        }
        changed.push(Changed {
            finished: decision.fire && rule.frequency == Frequency::Once,
            fire: decision.fire,
            trigger_price: decision.price,
            state: decision.state,
            row,
            compiled,
            forecast,
        });
    }
    // Every changed state in one statement (the first update of a symbol arms all its alerts);
    // then what the firings cause.
    let states: Vec<alerts::NewState<'_>> = changed
        .iter()
        .map(|c| alerts::NewState {
            alert_id: c.row.alert_id,
            expected_version: c.row.state_version,
            state: &c.state,
            finished: c.finished,
        })
        .collect();
    if let Some(&conflict) = alerts::store_states(tx, &states).await?.first() {
        return Err(Conflict(conflict).into());
    }
    for c in changed.iter().filter(|c| c.fire) {
        let price = ev.observation.map_or(0.0, |o| o.price);
        fire(
            ctx,
            tx,
            &c.row,
            &c.compiled,
            Firing {
                price,
                trigger_price: c.trigger_price.unwrap_or(price),
                at: ev.at,
                trigger_count: c.state.trigger_count,
                forecast: c.forecast.as_deref(),
                envelope: ev.envelope,
            },
        )
        .await?;
        if c.finished {
            saga::release(tx, c.row.alert_id, &c.row.symbol).await?;
        }
    }
    Ok(())
}

/// The message of an alert without a template: the price that met the condition when it is
/// not the last price (an extreme inside the interval), then the last price and when it was
/// observed, to the second (the event's `observed_at` keeps the full precision).
fn default_message(
    symbol: &str,
    condition: &str,
    trigger: f64,
    last: f64,
    at: DateTime<Utc>,
) -> String {
    let time = at.format("%Y-%m-%d %H:%M:%S UTC");
    if money(trigger) == money(last) {
        format!("{symbol} {condition}: last price {} at {time}", money(last))
    } else {
        format!(
            "{symbol} {condition}: reached {}, last price {} at {time}",
            money(trigger),
            money(last)
        )
    }
}

/// An alert whose state an evaluation changed.
struct Changed {
    row: alerts::Row,
    compiled: Arc<Compiled>,
    forecast: Option<Arc<StoredForecast>>,
    state: State,
    fire: bool,
    /// The price that met the condition, when it fired on one.
    trigger_price: Option<f64>,
    finished: bool,
}

struct Firing<'a> {
    /// The last price (or bar close) observed.
    price: f64,
    /// The price that met the condition: the extreme that crossed, or the last price.
    trigger_price: f64,
    at: DateTime<Utc>,
    trigger_count: u32,
    forecast: Option<&'a StoredForecast>,
    envelope: &'a Envelope,
}

/// Writes everything a trigger causes: the internal and public events, the notification and
/// its deliveries.
async fn fire(
    ctx: &Context,
    tx: &mut PgConnection,
    row: &alerts::Row,
    compiled: &Compiled,
    f: Firing<'_>,
) -> anyhow::Result<()> {
    let condition = &compiled.rule.condition;
    let condition_text = condition.to_string();
    let close = market::bar_close(tx, &row.symbol, compiled.rule.timeframe).await?;
    let time = public::rfc3339(f.at);
    let mut values: HashMap<&'static str, String> = HashMap::from([
        ("symbol", row.symbol.clone()),
        ("price", money(f.price)),
        ("trigger_price", money(f.trigger_price)),
        ("time", time.clone()),
        ("condition", condition_text.clone()),
        ("name", row.name.clone()),
    ]);
    if let Some(close) = close {
        values.insert("close", money(close));
    }
    if let Some(fc) = f.forecast {
        values.insert("p_up", format!("{:.0}%", fc.view.p_up * 100.0));
        values.insert("lower", money(fc.view.lower));
        values.insert("upper", money(fc.view.upper));
    }
    let message = match &compiled.template {
        Some(t) => t.render(&values),
        None => default_message(&row.symbol, &condition_text, f.trigger_price, f.price, f.at),
    };
    let title = if row.name.is_empty() {
        format!("{} {}", row.symbol, condition_text)
    } else {
        format!("{}: {} {}", row.name, row.symbol, condition_text)
    };
    let channels = row.channels();
    let triggered = ev::AlertTriggered {
        alert_id: row.alert_id.to_string(),
        user_id: row.user_id.to_string(),
        symbol: row.symbol.clone(),
        alert_name: row.name.clone(),
        condition: Some(condition.to_proto()),
        condition_text: condition_text.clone(),
        price: f.price,
        trigger_price: f.trigger_price,
        observed_at: Some(wire::timestamp(f.at)),
        message: message.clone(),
        channels: channels.iter().map(|c| *c as i32).collect(),
        webhook_endpoint_ids: row
            .webhook_endpoint_ids
            .iter()
            .map(Uuid::to_string)
            .collect(),
        trigger_count: f.trigger_count,
        cause_event_id: f.envelope.id.to_string(),
        cause_event_type: f.envelope.event_type.clone(),
        forecast: f.forecast.map(|fc| ev::ForecastSnapshot {
            forecast: Some(fc.forecast.clone()),
        }),
    };
    outbox::enqueue(tx, SERVICE, &triggered, Some(row.alert_id.to_string())).await?;
    let public_forecast = f.forecast.map(|fc| public::PublicForecast {
        model: fc
            .forecast
            .model
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default(),
        model_version: fc
            .forecast
            .model
            .as_ref()
            .map(|m| m.version.clone())
            .unwrap_or_default(),
        target_start: fc
            .forecast
            .target_start
            .as_ref()
            .and_then(wire::datetime)
            .map(public::rfc3339),
        point: fc.forecast.point,
        lower: fc.forecast.lower,
        upper: fc.forecast.upper,
        interval_level: fc.forecast.interval_level,
        p_up: fc.forecast.p_up,
    });
    let data = public::PriceAlert {
        alert_id: row.alert_id.to_string(),
        user_id: row.user_id.to_string(),
        symbol: row.symbol.clone(),
        alert_name: row.name.clone(),
        condition: public::PublicCondition::of(condition),
        condition_text: condition_text.clone(),
        price: f.price,
        trigger_price: f.trigger_price,
        observed_at: time.clone(),
        message: message.clone(),
        trigger_count: f.trigger_count,
        cause_event_id: f.envelope.id.to_string(),
        cause_event_type: f.envelope.event_type.clone(),
        forecast: public_forecast,
    };
    let event = public::enqueue(tx, &ctx.config.public_schema_url, data).await?;
    let category = if condition.is_forecast() {
        pb::Category::ForecastAlert
    } else {
        pb::Category::PriceAlert
    };
    let data = serde_json::json!({
        "alert_id": row.alert_id.to_string(),
        "symbol": row.symbol,
        "price": money(f.price),
        "trigger_price": money(f.trigger_price),
        "condition": condition_text,
        "observed_at": time,
        "trigger_count": f.trigger_count.to_string(),
        "event_id": event.id,
    });
    ctx.fanout
        .send(
            tx,
            &Outgoing {
                user_id: row.user_id,
                category,
                critical: false,
                title,
                body: message,
                data,
                alert_id: Some(row.alert_id),
                symbol: row.symbol.clone(),
                dedupe_key: Some(format!("trigger:{}:{}", row.alert_id, f.envelope.id)),
                channels,
                webhook_endpoint_ids: row.webhook_endpoint_ids.clone(),
            },
            Utc::now(),
        )
        .await?;
    tracing::info!(message = "Alert triggered.", alert_id = %row.alert_id, symbol = %row.symbol, price = f.price, cause = %f.envelope.event_type);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_message_names_the_price_that_crossed_when_it_is_not_the_last() {
        let at = DateTime::parse_from_rfc3339("2020-03-25T20:00:00.123456Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            default_message("SPX", "crossing up 800.00", 803.04, 794.35, at),
            "SPX crossing up 800.00: reached 803.04, last price 794.35 at 2020-03-25 20:00:00 UTC"
        );
        assert_eq!(
            default_message("SPX", "above 800.00", 801.0, 801.0, at),
            "SPX above 800.00: last price 801.00 at 2020-03-25 20:00:00 UTC"
        );
    }
}
