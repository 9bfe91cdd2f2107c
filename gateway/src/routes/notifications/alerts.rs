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
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Caller, forward};
use crate::problem::{Json, Path, Problem, Query};
use crate::routes::fields::{items, parse_name};
use crate::routes::state::AppState;

use super::ChannelName;
use super::conditions::Condition;
use crate::routes::shapes::Timeframe;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get_one, update, delete))
}

// === Shapes ===

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
    /// With placeholders `{{symbol}} {{price}} {{trigger_price}} {{close}} {{time}}
    /// {{condition}} {{name}} {{p_up}} {{lower}} {{upper}}`; at most 1,000 characters.
    /// `price` is the last price, `trigger_price` the price that met the condition (the high
    /// or low that crossed, for conditions on the extremes).
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
        state
            .upstreams
            .notification()
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
    let response = state
        .upstreams
        .notification()
        .list_alerts(request)
        .await?
        .into_inner();
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
