//! The public `price-alerts` topic: every trigger as a JSON CloudEvent in structured mode
//! (`content-type: application/cloudevents+json`), described by the committed JSON Schema
//! `schemas/price-alert.v2.json`, so any language can subscribe without our protobufs.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use mirai_platform::events::outbox;
use mirai_platform::events::topology::topics;
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::condition::{Condition, Kind, MoveSize};

/// `type` of the public event.
pub const EVENT_TYPE: &str = "mirai.price_alert.triggered.v2";
/// `content-type` attribute of structured-mode CloudEvents.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// The CloudEvent (structured mode: the whole event is the message body).
#[derive(Debug, Clone, Serialize)]
pub struct CloudEvent {
    pub specversion: &'static str,
    pub id: String,
    pub source: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub subject: String,
    pub time: String,
    pub datacontenttype: &'static str,
    pub dataschema: String,
    pub data: PriceAlert,
}

/// `data` of the public event.
#[derive(Debug, Clone, Serialize)]
pub struct PriceAlert {
    pub alert_id: String,
    pub user_id: String,
    pub symbol: String,
    pub alert_name: String,
    pub condition: PublicCondition,
    pub condition_text: String,
    pub price: f64,
    pub trigger_price: f64,
    pub observed_at: String,
    pub message: String,
    pub trigger_count: u32,
    pub cause_event_id: String,
    pub cause_event_type: String,
    pub forecast: Option<PublicForecast>,
}

/// The condition, flattened: `kind` plus the parameters that kind has.
#[derive(Debug, Clone, Serialize)]
pub struct PublicCondition {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    pub hysteresis_percent: f64,
}

/// The forecast a forecast-based alert fired on.
#[derive(Debug, Clone, Serialize)]
pub struct PublicForecast {
    pub model: String,
    pub model_version: String,
    pub target_start: Option<String>,
    pub point: f64,
    pub lower: f64,
    pub upper: f64,
    pub interval_level: f64,
    pub p_up: f64,
}

fn sides(a: bool, b: bool, names: [&'static str; 3]) -> &'static str {
    match (a, b) {
        (true, false) => names[0],
        (false, true) => names[1],
        _ => names[2],
    }
}

impl PublicCondition {
    pub fn of(c: &Condition) -> Self {
        let mut p = Self {
            kind: "",
            level: None,
            lower: None,
            upper: None,
            amount: None,
            percent: None,
            window_seconds: None,
            side: None,
            threshold: None,
            direction: None,
            hysteresis_percent: c.hysteresis_percent,
        };
        let size = |p: &mut Self, s: MoveSize| match s {
            MoveSize::Amount(a) => p.amount = Some(a),
            MoveSize::Percent(x) => p.percent = Some(x),
        };
        match c.kind {
            Kind::Cross { level, up, down } => {
                p.kind = sides(up, down, ["crossing_up", "crossing_down", "crossing"]);
                p.level = Some(level);
            }
            Kind::Above(l) => (p.kind, p.level) = ("above", Some(l)),
            Kind::Below(l) => (p.kind, p.level) = ("below", Some(l)),
            Kind::EnterChannel { lower, upper } => {
                (p.kind, p.lower, p.upper) = ("entering_channel", Some(lower), Some(upper));
            }
            Kind::ExitChannel { lower, upper } => {
                (p.kind, p.lower, p.upper) = ("exiting_channel", Some(lower), Some(upper));
            }
            Kind::MoveUp { size: s, window } => {
                p.kind = "moving_up";
                size(&mut p, s);
                p.window_seconds = Some(window.as_secs());
            }
            Kind::MoveDown { size: s, window } => {
                p.kind = "moving_down";
                size(&mut p, s);
                p.window_seconds = Some(window.as_secs());
            }
            Kind::ForecastExit { above, below } => {
                p.kind = "forecast_interval_exit";
                p.side = Some(sides(above, below, ["above", "below", "either"]));
            }
            Kind::ProbabilityUp(t) => (p.kind, p.threshold) = ("probability_up_at_least", Some(t)),
            Kind::ForecastCross { up, down } => {
                p.kind = "forecast_crosses_price";
                p.direction = Some(sides(up, down, ["up", "down", "either"]));
            }
        }
        p
    }
}

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Builds the event and writes it to the outbox in the caller's transaction (ordering key:
/// the symbol). Returns the event.
pub async fn enqueue(
    tx: &mut PgConnection,
    schema_url: &str,
    data: PriceAlert,
) -> anyhow::Result<CloudEvent> {
    let id = Uuid::now_v7();
    let event = CloudEvent {
        specversion: "1.0",
        id: id.to_string(),
        source: "//mirai/notification",
        kind: EVENT_TYPE,
        subject: data.symbol.clone(),
        time: rfc3339(Utc::now()),
        datacontenttype: "application/json",
        dataschema: schema_url.to_owned(),
        data,
    };
    let payload = serde_json::to_vec(&event)?;
    let mut attributes = HashMap::from([("content-type".to_owned(), CONTENT_TYPE.to_owned())]);
    let span = tracing::Span::current();
    let context = tracing_opentelemetry::OpenTelemetrySpanExt::context(&span);
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut Injector(&mut attributes))
    });
    outbox::enqueue_raw(
        tx,
        id,
        topics::PRICE_ALERTS,
        &event.subject,
        EVENT_TYPE,
        &attributes,
        &payload,
    )
    .await?;
    Ok(event)
}

struct Injector<'a>(&'a mut HashMap<String, String>);
impl opentelemetry::propagation::Injector for Injector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}
