//! `/v1/alerts`: the caller's price and forecast alerts (notification service).
//!
//! A new alert is `pending` until the market-data service confirms it can track the symbol
//! (then `active`) or refuses it (`rejected`, with the reason in `status_reason`); the caller
//! is told through a notification either way.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::notification::v1 as pb;
use pb::condition::Kind;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Caller, forward};
use crate::routes::fields::{items, parse_name};
use crate::problem::{Json, Path, Problem, Query};
use crate::routes::state::AppState;
use crate::routes::shapes::Timeframe;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get_one, update, delete))
}


// === Shapes ===

/// What a condition watches.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConditionKind {
    /// The price crosses `level` in either direction.
    Crossing,
    /// The price crosses `level` from below.
    CrossingUp,
    /// The price crosses `level` from above.
    CrossingDown,
    /// The price is above `level` (fires on entry, re-arms when it falls back).
    Above,
    /// The price is below `level`.
    Below,
    /// The price moves into [`lower`, `upper`].
    EnteringChannel,
    /// The price moves out of [`lower`, `upper`].
    ExitingChannel,
    /// The price rises by `amount` or `percent` within `window_seconds`.
    MovingUp,
    /// The price falls by `amount` or `percent` within `window_seconds`.
    MovingDown,
    /// The price leaves the champion forecast's prediction interval (`side`).
    ForecastIntervalExit,
    /// The forecast's probability of an up move is at least `threshold`.
    ProbabilityUpAtLeast,
    /// The point forecast crosses the current price (`direction`).
    ForecastCrossesPrice,
}

/// Which side of the forecast interval counts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Above,
    Below,
    Either,
}

/// Which crossing direction counts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Up,
    Down,
    Either,
}

/// A condition: its `kind` and the parameters that kind needs (the same shape as in the
/// public price-alert events).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "crossing_up", "level": 150.0, "hysteresis_percent": 0.1}))]
pub struct Condition {
    pub kind: ConditionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// 60 – 31,536,000 (one minute to 365 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
    /// In (0, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// After firing, the price must move back beyond the level by this percentage before the
    /// condition re-arms (jitter around a level does not fire again). Default 0.
    #[serde(default)]
    pub hysteresis_percent: f64,
}

fn need(value: Option<f64>, field: &str) -> Result<f64, Problem> {
    value.ok_or_else(|| Problem::invalid(format!("condition.{field} is required for this kind")))
}

impl Condition {
    pub fn to_wire(&self) -> Result<pb::Condition, Problem> {
        let level = |c: &Self| need(c.level, "level").map(|price| pb::PriceLevel { price });
        let channel = |c: &Self| {
            Ok::<_, Problem>(pb::PriceChannel {
                lower: need(c.lower, "lower")?,
                upper: need(c.upper, "upper")?,
            })
        };
        let price_move = |c: &Self| {
            let size = match (c.amount, c.percent) {
                (Some(a), None) => pb::price_move::Size::Amount(a),
                (None, Some(p)) => pb::price_move::Size::Percent(p),
                _ => {
                    return Err(Problem::invalid(
                        "condition: exactly one of amount and percent",
                    ));
                }
            };
            let window = c.window_seconds.ok_or_else(|| {
                Problem::invalid("condition.window_seconds is required for this kind")
            })?;
            Ok(pb::PriceMove {
                size: Some(size),
                window: Some(prost_types::Duration {
                    seconds: i64::try_from(window).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
            })
        };
        let kind = match self.kind {
            ConditionKind::Crossing => Kind::Crossing(level(self)?),
            ConditionKind::CrossingUp => Kind::CrossingUp(level(self)?),
            ConditionKind::CrossingDown => Kind::CrossingDown(level(self)?),
            ConditionKind::Above => Kind::Above(level(self)?),
            ConditionKind::Below => Kind::Below(level(self)?),
            ConditionKind::EnteringChannel => Kind::EnteringChannel(channel(self)?),
            ConditionKind::ExitingChannel => Kind::ExitingChannel(channel(self)?),
            ConditionKind::MovingUp => Kind::MovingUp(price_move(self)?),
            ConditionKind::MovingDown => Kind::MovingDown(price_move(self)?),
            ConditionKind::ForecastIntervalExit => {
                Kind::ForecastIntervalExit(pb::ForecastIntervalExit {
                    side: match self.side.unwrap_or(Side::Either) {
                        Side::Above => pb::IntervalSide::Above,
                        Side::Below => pb::IntervalSide::Below,
                        Side::Either => pb::IntervalSide::Unspecified,
                    }
                    .into(),
                })
            }
            ConditionKind::ProbabilityUpAtLeast => {
                Kind::ProbabilityUpAtLeast(pb::ProbabilityUpThreshold {
                    threshold: need(self.threshold, "threshold")?,
                })
            }
            ConditionKind::ForecastCrossesPrice => {
                Kind::ForecastCrossesPrice(pb::ForecastCrossesPrice {
                    direction: match self.direction.unwrap_or(Direction::Either) {
                        Direction::Up => pb::CrossDirection::Up,
                        Direction::Down => pb::CrossDirection::Down,
                        Direction::Either => pb::CrossDirection::Unspecified,
                    }
                    .into(),
                })
            }
        };
        Ok(pb::Condition {
            kind: Some(kind),
            hysteresis_percent: self.hysteresis_percent,
        })
    }

    pub fn from_wire(c: &pb::Condition) -> Option<Self> {
        let mut out = Self {
            kind: ConditionKind::Above,
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
        let set_move = |out: &mut Self, m: &pb::PriceMove| {
            match m.size {
                Some(pb::price_move::Size::Amount(a)) => out.amount = Some(a),
                Some(pb::price_move::Size::Percent(p)) => out.percent = Some(p),
                None => {}
            }
            out.window_seconds = m.window.map(|w| w.seconds.max(0) as u64);
        };
        match c.kind.as_ref()? {
            Kind::Crossing(l) => (out.kind, out.level) = (ConditionKind::Crossing, Some(l.price)),
            Kind::CrossingUp(l) => {
                (out.kind, out.level) = (ConditionKind::CrossingUp, Some(l.price));
            }
            Kind::CrossingDown(l) => {
                (out.kind, out.level) = (ConditionKind::CrossingDown, Some(l.price));
            }
            Kind::Above(l) => (out.kind, out.level) = (ConditionKind::Above, Some(l.price)),
            Kind::Below(l) => (out.kind, out.level) = (ConditionKind::Below, Some(l.price)),
            Kind::EnteringChannel(ch) => {
                (out.kind, out.lower, out.upper) = (
                    ConditionKind::EnteringChannel,
                    Some(ch.lower),
                    Some(ch.upper),
                );
            }
            Kind::ExitingChannel(ch) => {
                (out.kind, out.lower, out.upper) = (
                    ConditionKind::ExitingChannel,
                    Some(ch.lower),
                    Some(ch.upper),
                );
            }
            Kind::MovingUp(m) => {
                out.kind = ConditionKind::MovingUp;
                set_move(&mut out, m);
            }
            Kind::MovingDown(m) => {
                out.kind = ConditionKind::MovingDown;
                set_move(&mut out, m);
            }
            Kind::ForecastIntervalExit(f) => {
                out.kind = ConditionKind::ForecastIntervalExit;
                out.side = Some(match pb::IntervalSide::try_from(f.side) {
                    Ok(pb::IntervalSide::Above) => Side::Above,
                    Ok(pb::IntervalSide::Below) => Side::Below,
                    _ => Side::Either,
                });
            }
            Kind::ProbabilityUpAtLeast(p) => {
                (out.kind, out.threshold) =
                    (ConditionKind::ProbabilityUpAtLeast, Some(p.threshold));
            }
            Kind::ForecastCrossesPrice(f) => {
                out.kind = ConditionKind::ForecastCrossesPrice;
                out.direction = Some(match pb::CrossDirection::try_from(f.direction) {
                    Ok(pb::CrossDirection::Up) => Direction::Up,
                    Ok(pb::CrossDirection::Down) => Direction::Down,
                    _ => Direction::Either,
                });
            }
        }
        Some(out)
    }
}

/// How often an alert may fire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    /// Fires once, then the alert is `triggered`.
    Once,
    /// At most once per bar of `bar_timeframe`, on any price update.
    OncePerBar,
    /// Evaluated only on bar closes of `bar_timeframe`.
    OncePerBarClose,
    /// Every time, at most once per `cooldown_seconds`.
    EveryTime,
}

impl Frequency {
    fn to_wire(self) -> i32 {
        match self {
            Self::Once => pb::Frequency::Once,
            Self::OncePerBar => pb::Frequency::OncePerBar,
            Self::OncePerBarClose => pb::Frequency::OncePerBarClose,
            Self::EveryTime => pb::Frequency::EveryTime,
        }
        .into()
    }

    fn from_wire(value: i32) -> Self {
        match pb::Frequency::try_from(value) {
            Ok(pb::Frequency::OncePerBar) => Self::OncePerBar,
            Ok(pb::Frequency::OncePerBarClose) => Self::OncePerBarClose,
            Ok(pb::Frequency::EveryTime) => Self::EveryTime,
            _ => Self::Once,
        }
    }
}

/// A delivery channel.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelName {
    InApp,
    Email,
    Webhook,
    Push,
}

impl ChannelName {
    pub fn to_wire(self) -> i32 {
        match self {
            Self::InApp => pb::Channel::InApp,
            Self::Email => pb::Channel::Email,
            Self::Webhook => pb::Channel::Webhook,
            Self::Push => pb::Channel::Push,
        }
        .into()
    }

    pub fn from_wire(value: i32) -> Option<Self> {
        Some(match pb::Channel::try_from(value).ok()? {
            pb::Channel::InApp => Self::InApp,
            pb::Channel::Email => Self::Email,
            pb::Channel::Webhook => Self::Webhook,
            pb::Channel::Push => Self::Push,
            pb::Channel::Unspecified => return None,
        })
    }
}

/// Lifecycle of an alert.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Pending,
    Active,
    Triggered,
    Rejected,
    Expired,
    Disabled,
}

impl AlertStatus {
    fn to_wire(self) -> i32 {
        match self {
            Self::Pending => pb::AlertStatus::Pending,
            Self::Active => pb::AlertStatus::Active,
            Self::Triggered => pb::AlertStatus::Triggered,
            Self::Rejected => pb::AlertStatus::Rejected,
            Self::Expired => pb::AlertStatus::Expired,
            Self::Disabled => pb::AlertStatus::Disabled,
        }
        .into()
    }

    fn from_wire(value: i32) -> Option<Self> {
        Some(match pb::AlertStatus::try_from(value).ok()? {
            pb::AlertStatus::Pending => Self::Pending,
            pb::AlertStatus::Active => Self::Active,
            pb::AlertStatus::Triggered => Self::Triggered,
            pb::AlertStatus::Rejected => Self::Rejected,
            pb::AlertStatus::Expired => Self::Expired,
            pb::AlertStatus::Disabled => Self::Disabled,
            pb::AlertStatus::Unspecified => return None,
        })
    }
}

/// An alert as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Alert {
    pub alert_id: String,
    pub symbol: String,
    pub name: String,
    pub condition: Option<Condition>,
    pub frequency: Frequency,
    pub bar_timeframe: Timeframe,
    /// Minimum seconds between triggers (`every_time`).
    pub cooldown_seconds: i64,
    pub expires_at: Option<DateTime<Utc>>,
    pub message_template: String,
    pub channels: Vec<ChannelName>,
    pub webhook_endpoint_ids: Vec<String>,
    pub enabled: bool,
    pub status: Option<AlertStatus>,
    /// Why `rejected`, `expired` or `disabled`, for the user.
    pub status_reason: String,
    /// Whether a crossing-type condition may fire on the next crossing.
    pub armed: bool,
    pub trigger_count: u32,
    pub last_triggered_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub activated_at: Option<DateTime<Utc>>,
}

impl From<pb::Alert> for Alert {
    fn from(a: pb::Alert) -> Self {
        Self {
            condition: a.condition.as_ref().and_then(Condition::from_wire),
            frequency: Frequency::from_wire(a.frequency),
            bar_timeframe: Timeframe::from_wire(a.bar_timeframe),
            cooldown_seconds: a.cooldown.map_or(0, |c| c.seconds),
            expires_at: a.expires_at.as_ref().and_then(wire::datetime),
            channels: a
                .channels
                .iter()
                .filter_map(|c| ChannelName::from_wire(*c))
                .collect(),
            enabled: a.enabled.unwrap_or(true),
            status: AlertStatus::from_wire(a.status),
            last_triggered_at: a.last_triggered_at.as_ref().and_then(wire::datetime),
            created_at: a.created_at.as_ref().and_then(wire::datetime),
            updated_at: a.updated_at.as_ref().and_then(wire::datetime),
            activated_at: a.activated_at.as_ref().and_then(wire::datetime),
            alert_id: a.alert_id,
            symbol: a.symbol,
            name: a.name,
            message_template: a.message_template,
            webhook_endpoint_ids: a.webhook_endpoint_ids,
            status_reason: a.status_reason,
            armed: a.armed,
            trigger_count: a.trigger_count,
        }
    }
}

fn alert_of(alert: Option<pb::Alert>) -> Result<Alert, Problem> {
    alert
        .map(Alert::from)
        .ok_or_else(|| Problem::missing("an alert"))
}

fn seconds(s: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: s,
        nanos: 0,
    }
}

// === Routes ===

/// Body of `POST /v1/alerts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAlert {
    /// Ticker; immutable afterwards.
    pub symbol: String,
    /// Label shown with notifications, at most 100 characters.
    pub name: Option<String>,
    pub condition: Condition,
    /// Default `once`.
    pub frequency: Option<Frequency>,
    /// Default `1Day`.
    pub bar_timeframe: Option<Timeframe>,
    /// `every_time` only: at least 60, default 3,600.
    pub cooldown_seconds: Option<i64>,
    /// Open-ended when absent.
    pub expires_at: Option<DateTime<Utc>>,
    /// With placeholders `{{symbol}} {{price}} {{close}} {{time}} {{condition}} {{name}}
    /// {{p_up}} {{lower}} {{upper}}`; at most 1,000 characters.
    pub message_template: Option<String>,
    /// Default `["in_app"]`.
    pub channels: Option<Vec<ChannelName>>,
    /// For `webhook`: these endpoints only (default every enabled endpoint).
    pub webhook_endpoint_ids: Option<Vec<String>>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// Creates an alert. It is `pending` until the symbol's tracking is confirmed; follow it with
/// `GET /v1/alerts/{alert_id}`. `429` when the plan's limit of live alerts is reached.
#[utoipa::path(post, path = "/v1/alerts", tag = "alerts",
    security(("bearer" = []), ("api_key" = [])),
    request_body = NewAlert,
    responses(
        (status = 201, description = "The stored alert (pending)", body = Alert),
        (status = 400, description = "A field is invalid (named in detail)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The plan's limit of live alerts is reached", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Json(body): Json<NewAlert>,
) -> Result<impl IntoResponse, Problem> {
    let alert = pb::Alert {
        symbol: body.symbol,
        name: body.name.unwrap_or_default(),
        condition: Some(body.condition.to_wire()?),
        frequency: body.frequency.unwrap_or(Frequency::Once).to_wire(),
        bar_timeframe: body.bar_timeframe.unwrap_or(Timeframe::OneDay).to_wire(),
        cooldown: body.cooldown_seconds.map(seconds),
        expires_at: body.expires_at.map(wire::timestamp),
        message_template: body.message_template.unwrap_or_default(),
        channels: body
            .channels
            .unwrap_or_default()
            .into_iter()
            .map(ChannelName::to_wire)
            .collect(),
        webhook_endpoint_ids: body.webhook_endpoint_ids.unwrap_or_default(),
        enabled: body.enabled,
        ..Default::default()
    };
    let request = forward(
        pb::CreateAlertRequest {
            user_id: principal.user_id.clone(),
            alert: Some(alert),
        },
        &principal,
    )?;
    let created = alert_of(
        state.upstreams.notification()
            .create_alert(request)
            .await?
            .into_inner()
            .alert,
    )?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/alerts/{}", created.alert_id))],
        axum::Json(created),
    ))
}

/// Query of `GET /v1/alerts`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Comma-separated statuses, e.g. `pending,active`; all when absent.
    pub status: Option<String>,
    /// Only alerts on this ticker.
    pub symbol: Option<String>,
    /// 1–200, default 50.
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPage {
    pub alerts: Vec<Alert>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

fn statuses(raw: Option<&str>) -> Result<Vec<i32>, Problem> {
    items(raw)
        .map(|name| parse_name::<AlertStatus>("status", name).map(AlertStatus::to_wire))
        .collect()
}

/// The caller's alerts, newest first.
#[utoipa::path(get, path = "/v1/alerts", tag = "alerts", operation_id = "list_alerts",
    security(("bearer" = []), ("api_key" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "One page of alerts", body = AlertPage),
        (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<AlertPage>, Problem> {
    let request = forward(
        pb::ListAlertsRequest {
            user_id: principal.user_id.clone(),
            statuses: statuses(query.status.as_deref())?,
            symbol: query.symbol.unwrap_or_default(),
            page_size: query.page_size.unwrap_or_default(),
            page_token: query.page_token.unwrap_or_default(),
        },
        &principal,
    )?;
    let response = state.upstreams.notification().list_alerts(request).await?.into_inner();
    Ok(axum::Json(AlertPage {
        alerts: response.alerts.into_iter().map(Alert::from).collect(),
        next_page_token: response.next_page_token,
    }))
}

/// One of the caller's alerts.
#[utoipa::path(get, path = "/v1/alerts/{alert_id}", tag = "alerts", operation_id = "get_alert",
    security(("bearer" = []), ("api_key" = [])),
    params(("alert_id" = String, Path, description = "Alert id")),
    responses(
        (status = 200, description = "The alert", body = Alert),
        (status = 404, description = "No such alert of the caller", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_one(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(alert_id): Path<String>,
) -> Result<axum::Json<Alert>, Problem> {
    let request = forward(
        pb::GetAlertRequest {
            user_id: principal.user_id.clone(),
            alert_id,
        },
        &principal,
    )?;
    let response = state.upstreams.notification().get_alert(request).await?;
    Ok(axum::Json(alert_of(response.into_inner().alert)?))
}

/// Body of `PATCH /v1/alerts/{alert_id}`: the fields to change (absent = unchanged;
/// `expires_at: null` makes the alert open-ended).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertChange {
    pub name: Option<String>,
    /// Changing the condition re-arms it.
    pub condition: Option<Condition>,
    pub frequency: Option<Frequency>,
    pub bar_timeframe: Option<Timeframe>,
    pub cooldown_seconds: Option<i64>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub message_template: Option<String>,
    pub channels: Option<Vec<ChannelName>>,
    pub webhook_endpoint_ids: Option<Vec<String>>,
    /// False switches the alert off (`disabled`); true switches it back on (`pending` until
    /// tracking is confirmed again).
    pub enabled: Option<bool>,
}

/// `null` and absent told apart: `Some(None)` clears the value.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

/// Changes an alert.
#[utoipa::path(patch, path = "/v1/alerts/{alert_id}", tag = "alerts", operation_id = "update_alert",
    security(("bearer" = []), ("api_key" = [])),
    params(("alert_id" = String, Path, description = "Alert id")),
    request_body = AlertChange,
    responses(
        (status = 200, description = "The alert after the change", body = Alert),
        (status = 400, description = "A field is invalid (named in detail)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such alert of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The alert's state does not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Re-enabling would exceed the plan's limit", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(alert_id): Path<String>,
    Json(body): Json<AlertChange>,
) -> Result<axum::Json<Alert>, Problem> {
    let mut paths = Vec::new();
    let mut alert = pb::Alert {
        alert_id,
        ..Default::default()
    };
    if let Some(v) = body.name {
        paths.push("name");
        alert.name = v;
    }
    if let Some(v) = body.condition {
        paths.push("condition");
        alert.condition = Some(v.to_wire()?);
    }
    if let Some(v) = body.frequency {
        paths.push("frequency");
        alert.frequency = v.to_wire();
    }
    if let Some(v) = body.bar_timeframe {
        paths.push("bar_timeframe");
        alert.bar_timeframe = v.to_wire();
    }
    if let Some(v) = body.cooldown_seconds {
        paths.push("cooldown");
        alert.cooldown = Some(seconds(v));
    }
    if let Some(v) = body.expires_at {
        paths.push("expires_at");
        alert.expires_at = v.map(wire::timestamp);
    }
    if let Some(v) = body.message_template {
        paths.push("message_template");
        alert.message_template = v;
    }
    if let Some(v) = body.channels {
        paths.push("channels");
        alert.channels = v.into_iter().map(ChannelName::to_wire).collect();
    }
    if let Some(v) = body.webhook_endpoint_ids {
        paths.push("webhook_endpoint_ids");
        alert.webhook_endpoint_ids = v;
    }
    if let Some(v) = body.enabled {
        paths.push("enabled");
        alert.enabled = Some(v);
    }
    let request = forward(
        pb::UpdateAlertRequest {
            user_id: principal.user_id.clone(),
            alert: Some(alert),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.into_iter().map(str::to_owned).collect(),
            }),
        },
        &principal,
    )?;
    let response = state.upstreams.notification().update_alert(request).await?;
    Ok(axum::Json(alert_of(response.into_inner().alert)?))
}

/// Deletes an alert; idempotent.
#[utoipa::path(delete, path = "/v1/alerts/{alert_id}", tag = "alerts",
    security(("bearer" = []), ("api_key" = [])),
    params(("alert_id" = String, Path, description = "Alert id")),
    responses(
        (status = 204, description = "Deleted (or never existed)"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(alert_id): Path<String>,
) -> Result<StatusCode, Problem> {
    let request = forward(
        pb::DeleteAlertRequest {
            user_id: principal.user_id.clone(),
            alert_id,
        },
        &principal,
    )?;
    state.upstreams.notification().delete_alert(request).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_round_trip_between_json_and_the_wire() {
        for json in [
            serde_json::json!({"kind": "crossing_up", "level": 150.0, "hysteresis_percent": 0.1}),
            serde_json::json!({"kind": "exiting_channel", "lower": 1.0, "upper": 2.0, "hysteresis_percent": 0.0}),
            serde_json::json!({"kind": "moving_down", "percent": 5.0, "window_seconds": 3600, "hysteresis_percent": 0.0}),
            serde_json::json!({"kind": "forecast_interval_exit", "side": "below", "hysteresis_percent": 0.0}),
            serde_json::json!({"kind": "probability_up_at_least", "threshold": 0.7, "hysteresis_percent": 0.0}),
        ] {
            let c: Condition = serde_json::from_value(json.clone()).unwrap();
            let back = Condition::from_wire(&c.to_wire().unwrap()).unwrap();
            assert_eq!(serde_json::to_value(back).unwrap(), json);
        }
        let missing: Condition =
            serde_json::from_value(serde_json::json!({"kind": "above"})).unwrap();
        let problem = missing.to_wire().unwrap_err();
        assert_eq!(problem.status, 400);
        assert!(problem.detail.unwrap().contains("condition.level"));
    }
}
