//! The caller's notifications (notification service): `/v1/notifications` (list, mark read,
//! unread count), the live stream `/v1/stream/notifications` (SSE), webhook endpoints
//! `/v1/webhooks` (secrets, rotation, deliveries), the delivery log `/v1/deliveries` (resend),
//! push devices `/v1/push-devices`, `/v1/notification-preferences`, and email address
//! verification `/v1/notification-email/{confirm,resend}`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt as _};
use mirai_platform::grpc::client::OpenEnded;
use mirai_proto::notification::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::routes::notifications::alerts::ChannelName;
use crate::middleware::auth::{Caller, forward};
use crate::routes::fields::{items, parse_name, time};
use crate::problem::{Json, Path, Problem, Query};
use crate::routes::state::AppState;

pub mod alerts;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(alerts::routes())
        .routes(routes!(list))
        .routes(routes!(mark))
        .routes(routes!(unread_count))
        .routes(routes!(stream))
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(endpoint_deliveries))
        .routes(routes!(list_deliveries))
        .routes(routes!(resend))
        .routes(routes!(register_device, list_devices))
        .routes(routes!(unregister_device))
        .routes(routes!(get_preferences, update_preferences))
        .routes(routes!(confirm_email_link, confirm_email))
        .routes(routes!(resend_email_verification))
}

// === Notifications ===

/// What a notification is about; preferences are per channel and category.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CategoryName {
    PriceAlert,
    ForecastAlert,
    AlertStatus,
    Report,
    Account,
    System,
    Digest,
}

const CATEGORIES: [(CategoryName, pb::Category); 7] = [
    (CategoryName::PriceAlert, pb::Category::PriceAlert),
    (CategoryName::ForecastAlert, pb::Category::ForecastAlert),
    (CategoryName::AlertStatus, pb::Category::AlertStatus),
    (CategoryName::Report, pb::Category::Report),
    (CategoryName::Account, pb::Category::Account),
    (CategoryName::System, pb::Category::System),
    (CategoryName::Digest, pb::Category::Digest),
];

impl CategoryName {
    pub fn to_wire(self) -> i32 {
        CATEGORIES
            .iter()
            .find(|(api, _)| *api == self)
            .map_or(pb::Category::Unspecified, |(_, w)| *w)
            .into()
    }

    pub fn from_wire(value: i32) -> Option<Self> {
        CATEGORIES
            .iter()
            .find(|(_, w)| *w as i32 == value)
            .map(|(api, _)| *api)
    }
}

fn categories_of(values: &[i32]) -> Vec<CategoryName> {
    values
        .iter()
        .filter_map(|c| CategoryName::from_wire(*c))
        .collect()
}

/// A stored in-app notification.
#[derive(Debug, Serialize, ToSchema)]
pub struct Notification {
    pub notification_id: String,
    pub category: Option<CategoryName>,
    /// Critical notifications bypass preferences, quiet hours and digests.
    pub critical: bool,
    pub title: String,
    pub body: String,
    /// Details for clients, e.g. `{"alert_id": "…", "symbol": "AAPL", "price": "150.12"}`.
    pub data: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub alert_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub symbol: String,
    pub read: bool,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
}

impl From<pb::Notification> for Notification {
    fn from(n: pb::Notification) -> Self {
        Self {
            category: CategoryName::from_wire(n.category),
            read_at: time(&n.read_at),
            created_at: time(&n.created_at),
            data: n.data.into_iter().collect(),
            notification_id: n.notification_id,
            critical: n.critical,
            title: n.title,
            body: n.body,
            alert_id: n.alert_id,
            symbol: n.symbol,
            read: n.read,
        }
    }
}

/// Query of `GET /v1/notifications`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[serde(default)]
    pub unread_only: bool,
    /// Comma-separated categories, e.g. `price_alert,forecast_alert`; all when absent.
    pub category: Option<String>,
    /// 1–200, default 50.
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationPage {
    pub notifications: Vec<Notification>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", operation_id = "list_notifications",
    security(("bearer" = []), ("api_key" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "One page of notifications", body = NotificationPage),
        (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<NotificationPage>, Problem> {
    let categories = items(query.category.as_deref())
        .map(|raw| parse_name::<CategoryName>("category", raw).map(CategoryName::to_wire))
        .collect::<Result<Vec<_>, _>>()?;
    let request = forward(
        pb::ListNotificationsRequest {
            user_id: principal.user_id.clone(),
            unread_only: query.unread_only,
            categories,
            page_size: query.page_size.unwrap_or_default(),
            page_token: query.page_token.unwrap_or_default(),
        },
        &principal,
    )?;
    let response = state.upstreams.notification()
        .list_notifications(request)
        .await?
        .into_inner();
    Ok(axum::Json(NotificationPage {
        notifications: response
            .notifications
            .into_iter()
            .map(Notification::from)
            .collect(),
        next_page_token: response.next_page_token,
    }))
}

/// Body of `POST /v1/notifications/read`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    /// The notifications to mark; ignored with `all`. Unknown ids are ignored.
    #[serde(default)]
    pub notification_ids: Vec<String>,
    /// Every notification created up to now.
    #[serde(default)]
    pub all: bool,
    /// True (default) marks read, false unread.
    pub read: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Marked {
    /// Notifications whose state changed.
    pub updated: u32,
    pub unread_count: u32,
}

/// Marks notifications read (or unread).
#[utoipa::path(post, path = "/v1/notifications/read", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    request_body = Mark,
    responses(
        (status = 200, description = "What changed and the unread count after it", body = Marked),
    ))]
async fn mark(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Json(body): Json<Mark>,
) -> Result<axum::Json<Marked>, Problem> {
    let request = forward(
        pb::MarkNotificationsRequest {
            user_id: principal.user_id.clone(),
            notification_ids: body.notification_ids,
            all: body.all,
            read: body.read.unwrap_or(true),
        },
        &principal,
    )?;
    let r = state.upstreams.notification()
        .mark_notifications(request)
        .await?
        .into_inner();
    Ok(axum::Json(Marked {
        updated: r.updated,
        unread_count: r.unread_count,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCount {
    pub unread_count: u32,
}

/// Number of unread notifications.
#[utoipa::path(get, path = "/v1/notifications/unread-count", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The count", body = UnreadCount)))]
async fn unread_count(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<axum::Json<UnreadCount>, Problem> {
    let request = forward(
        pb::GetUnreadCountRequest {
            user_id: principal.user_id.clone(),
        },
        &principal,
    )?;
    let r = state.upstreams.notification().get_unread_count(request).await?.into_inner();
    Ok(axum::Json(UnreadCount {
        unread_count: r.unread_count,
    }))
}

/// Live notifications as Server-Sent Events: `event: notification` for each new in-app
/// notification of the caller; `data` is the JSON of a notification plus `unread_count` and
/// `dropped` (messages this stream lost by reading too slowly — they stay listable).
/// Keep-alive comments every 15 s.
#[utoipa::path(get, path = "/v1/stream/notifications", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many open notification streams for the caller (5 by default)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn stream(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let mut request = forward(
        pb::StreamNotificationsRequest {
            user_id: principal.user_id.clone(),
        },
        &principal,
    )?;
    // No deadline: the upstream stream lives as long as the client's connection.
    request.extensions_mut().insert(OpenEnded);
    let upstream = state.upstreams.notification()
        .stream_notifications(request)
        .await?
        .into_inner();
    let stop = state.streams_stop.clone().cancelled_owned();
    let events = upstream
        .take_until(stop)
        .take_while(|message| std::future::ready(message.is_ok()))
        .filter_map(|message| async move {
            let message = message.ok()?;
            let notification = Notification::from(message.notification?);
            let mut data = serde_json::to_value(&notification).ok()?;
            data["unread_count"] = message.unread_count.into();
            data["dropped"] = message.dropped.into();
            Some(Ok(Event::default()
                .event("notification")
                .id(notification.notification_id.clone())
                .data(data.to_string())))
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

// === Webhook endpoints ===

/// State of a webhook endpoint.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    Enabled,
    Disabled,
    /// Switched off by the service after failing too long; see `disabled_reason`.
    DisabledFailing,
}

/// A webhook endpoint (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpoint {
    pub webhook_endpoint_id: String,
    pub url: String,
    pub description: String,
    /// Only these categories are sent; all when empty.
    pub categories: Vec<CategoryName>,
    pub enabled: bool,
    pub status: Option<EndpointStatus>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub disabled_reason: String,
    /// First failure of the current run of failures.
    pub failing_since: Option<DateTime<Utc>>,
    /// While in the future, the previous secret still signs too.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<pb::WebhookEndpoint> for WebhookEndpoint {
    fn from(e: pb::WebhookEndpoint) -> Self {
        let status = match pb::EndpointStatus::try_from(e.status) {
            Ok(pb::EndpointStatus::Enabled) => Some(EndpointStatus::Enabled),
            Ok(pb::EndpointStatus::Disabled) => Some(EndpointStatus::Disabled),
            Ok(pb::EndpointStatus::DisabledFailing) => Some(EndpointStatus::DisabledFailing),
            _ => None,
        };
        Self {
            categories: categories_of(&e.categories),
            enabled: e.enabled.unwrap_or(false),
            failing_since: time(&e.failing_since),
            previous_secret_expires_at: time(&e.previous_secret_expires_at),
            created_at: time(&e.created_at),
            updated_at: time(&e.updated_at),
            webhook_endpoint_id: e.webhook_endpoint_id,
            url: e.url,
            description: e.description,
            status,
            disabled_reason: e.disabled_reason,
        }
    }
}

fn endpoint_of(e: Option<pb::WebhookEndpoint>) -> Result<WebhookEndpoint, Problem> {
    e.map(WebhookEndpoint::from)
        .ok_or_else(|| Problem::missing("an endpoint"))
}

/// An endpoint with its signing secret (shown only when it is created or rotated).
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointWithSecret {
    pub endpoint: WebhookEndpoint,
    /// `whsec_` + base64 of 32 random bytes; verify `webhook-signature` with it (Standard
    /// Webhooks).
    pub secret: String,
}

/// Body of `POST /v1/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// https, public hosts only.
    pub url: String,
    pub description: Option<String>,
    pub categories: Option<Vec<CategoryName>>,
    pub enabled: Option<bool>,
}

/// Registers a webhook endpoint. Deliveries are signed per Standard Webhooks
/// (`webhook-id`, `webhook-timestamp`, `webhook-signature`), retried with backoff, and the
/// endpoint is disabled after sustained failure.
#[utoipa::path(post, path = "/v1/webhooks", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    request_body = NewEndpoint,
    responses(
        (status = 201, description = "The endpoint and its secret (shown once)", body = EndpointWithSecret),
        (status = 400, description = "Invalid URL (not https, private or loopback target, credentials)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many endpoints", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_endpoint(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Json(body): Json<NewEndpoint>,
) -> Result<impl IntoResponse, Problem> {
    let request = forward(
        pb::CreateWebhookEndpointRequest {
            user_id: principal.user_id.clone(),
            endpoint: Some(pb::WebhookEndpoint {
                url: body.url,
                description: body.description.unwrap_or_default(),
                categories: body
                    .categories
                    .unwrap_or_default()
                    .into_iter()
                    .map(CategoryName::to_wire)
                    .collect(),
                enabled: body.enabled,
                ..Default::default()
            }),
        },
        &principal,
    )?;
    let r = state.upstreams.notification()
        .create_webhook_endpoint(request)
        .await?
        .into_inner();
    let endpoint = endpoint_of(r.endpoint)?;
    Ok((
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                format!("/v1/webhooks/{}", endpoint.webhook_endpoint_id),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        axum::Json(EndpointWithSecret {
            endpoint,
            secret: r.secret,
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub endpoints: Vec<WebhookEndpoint>,
}

/// The caller's webhook endpoints, oldest first.
#[utoipa::path(get, path = "/v1/webhooks", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The endpoints", body = EndpointList)))]
async fn list_endpoints(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<axum::Json<EndpointList>, Problem> {
    let request = forward(
        pb::ListWebhookEndpointsRequest {
            user_id: principal.user_id.clone(),
        },
        &principal,
    )?;
    let r = state.upstreams.notification()
        .list_webhook_endpoints(request)
        .await?
        .into_inner();
    Ok(axum::Json(EndpointList {
        endpoints: r.endpoints.into_iter().map(WebhookEndpoint::from).collect(),
    }))
}

/// One of the caller's webhook endpoints.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_endpoint_id}", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    params(("webhook_endpoint_id" = String, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookEndpoint),
        (status = 404, description = "No such endpoint of the caller", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_endpoint(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(webhook_endpoint_id): Path<String>,
) -> Result<axum::Json<WebhookEndpoint>, Problem> {
    let request = forward(
        pb::GetWebhookEndpointRequest {
            user_id: principal.user_id.clone(),
            webhook_endpoint_id,
        },
        &principal,
    )?;
    let r = state.upstreams.notification()
        .get_webhook_endpoint(request)
        .await?
        .into_inner();
    Ok(axum::Json(endpoint_of(r.endpoint)?))
}

/// Body of `PATCH /v1/webhooks/{webhook_endpoint_id}` (absent = unchanged).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub description: Option<String>,
    pub categories: Option<Vec<CategoryName>>,
    /// True re-enables (also an endpoint disabled for failures, clearing its failure state).
    pub enabled: Option<bool>,
}

/// Changes a webhook endpoint.
#[utoipa::path(patch, path = "/v1/webhooks/{webhook_endpoint_id}", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    params(("webhook_endpoint_id" = String, Path, description = "Endpoint id")),
    request_body = EndpointChange,
    responses(
        (status = 200, description = "The endpoint after the change", body = WebhookEndpoint),
        (status = 400, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint of the caller", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_endpoint(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(webhook_endpoint_id): Path<String>,
    Json(body): Json<EndpointChange>,
) -> Result<axum::Json<WebhookEndpoint>, Problem> {
    let mut paths = Vec::new();
    let mut endpoint = pb::WebhookEndpoint {
        webhook_endpoint_id,
        ..Default::default()
    };
    if let Some(v) = body.url {
        paths.push("url".to_owned());
        endpoint.url = v;
    }
    if let Some(v) = body.description {
        paths.push("description".to_owned());
        endpoint.description = v;
    }
    if let Some(v) = body.categories {
        paths.push("categories".to_owned());
        endpoint.categories = v.into_iter().map(CategoryName::to_wire).collect();
    }
    if let Some(v) = body.enabled {
        paths.push("enabled".to_owned());
        endpoint.enabled = Some(v);
    }
    let request = forward(
        pb::UpdateWebhookEndpointRequest {
            user_id: principal.user_id.clone(),
            endpoint: Some(endpoint),
            update_mask: Some(prost_types::FieldMask { paths }),
        },
        &principal,
    )?;
    let r = state.upstreams.notification()
        .update_webhook_endpoint(request)
        .await?
        .into_inner();
    Ok(axum::Json(endpoint_of(r.endpoint)?))
}

/// Deletes a webhook endpoint; queued deliveries to it end `failed` (kept in the log).
/// Idempotent.
#[utoipa::path(delete, path = "/v1/webhooks/{webhook_endpoint_id}", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    params(("webhook_endpoint_id" = String, Path, description = "Endpoint id")),
    responses((status = 204, description = "Deleted (or never existed)")))]
async fn delete_endpoint(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(webhook_endpoint_id): Path<String>,
) -> Result<StatusCode, Problem> {
    let request = forward(
        pb::DeleteWebhookEndpointRequest {
            user_id: principal.user_id.clone(),
            webhook_endpoint_id,
        },
        &principal,
    )?;
    state.upstreams.notification().delete_webhook_endpoint(request).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /v1/webhooks/{webhook_endpoint_id}/rotate-secret`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// How long the previous secret keeps signing alongside the new one: 0–604,800 seconds,
    /// default 86,400 (24 h).
    pub overlap_seconds: Option<i64>,
}

/// Issues a new signing secret. During the overlap both secrets sign, so
/// `webhook-signature` carries two signatures and receivers can switch at their pace.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_endpoint_id}/rotate-secret", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    params(("webhook_endpoint_id" = String, Path, description = "Endpoint id")),
    request_body = Rotation,
    responses(
        (status = 200, description = "The endpoint and its new secret (shown once)", body = EndpointWithSecret),
        (status = 404, description = "No such endpoint of the caller", body = Problem, content_type = "application/problem+json"),
    ))]
async fn rotate_secret(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(webhook_endpoint_id): Path<String>,
    Json(body): Json<Rotation>,
) -> Result<impl IntoResponse, Problem> {
    let request = forward(
        pb::RotateWebhookSecretRequest {
            user_id: principal.user_id.clone(),
            webhook_endpoint_id,
            overlap: body
                .overlap_seconds
                .map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
        },
        &principal,
    )?;
    let r = state.upstreams.notification()
        .rotate_webhook_secret(request)
        .await?
        .into_inner();
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(EndpointWithSecret {
            endpoint: endpoint_of(r.endpoint)?,
            secret: r.secret,
        }),
    ))
}

// === Deliveries ===

/// State of a delivery.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Queued,
    Sent,
    Delivered,
    Retrying,
    Failed,
    Deferred,
    Suppressed,
}

const DELIVERY_STATUSES: [(DeliveryStatus, pb::DeliveryStatus); 7] = [
    (DeliveryStatus::Queued, pb::DeliveryStatus::Queued),
    (DeliveryStatus::Sent, pb::DeliveryStatus::Sent),
    (DeliveryStatus::Delivered, pb::DeliveryStatus::Delivered),
    (DeliveryStatus::Retrying, pb::DeliveryStatus::Retrying),
    (DeliveryStatus::Failed, pb::DeliveryStatus::Failed),
    (DeliveryStatus::Deferred, pb::DeliveryStatus::Deferred),
    (DeliveryStatus::Suppressed, pb::DeliveryStatus::Suppressed),
];

/// Outcome of one attempt.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Succeeded,
    Failed,
    TimedOut,
    /// Not attempted: the target resolves to a private or loopback address.
    Blocked,
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct Attempt {
    pub attempt: u32,
    pub outcome: Option<AttemptOutcome>,
    pub started_at: Option<DateTime<Utc>>,
    pub duration_ms: i64,
    /// HTTP status or SMTP reply code; 0 without a response.
    pub response_code: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// One notification to one target on one channel, with every attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    /// Also the `webhook-id` header of webhook deliveries.
    pub delivery_id: String,
    pub notification_id: String,
    pub channel: Option<ChannelName>,
    /// Webhook endpoint id, email address or push device id; empty for in-app.
    pub target: String,
    pub status: Option<DeliveryStatus>,
    pub attempts: Vec<Attempt>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// The delivery this one re-sends.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resend_of: String,
}

impl From<pb::Delivery> for Delivery {
    fn from(d: pb::Delivery) -> Self {
        Self {
            channel: ChannelName::from_wire(d.channel),
            status: DELIVERY_STATUSES
                .iter()
                .find(|(_, w)| *w as i32 == d.status)
                .map(|(api, _)| *api),
            attempts: d
                .attempts
                .into_iter()
                .map(|a| Attempt {
                    attempt: a.attempt,
                    outcome: match pb::AttemptOutcome::try_from(a.outcome) {
                        Ok(pb::AttemptOutcome::Succeeded) => Some(AttemptOutcome::Succeeded),
                        Ok(pb::AttemptOutcome::Failed) => Some(AttemptOutcome::Failed),
                        Ok(pb::AttemptOutcome::TimedOut) => Some(AttemptOutcome::TimedOut),
                        Ok(pb::AttemptOutcome::Blocked) => Some(AttemptOutcome::Blocked),
                        _ => None,
                    },
                    started_at: time(&a.started_at),
                    duration_ms: a
                        .duration
                        .map_or(0, |d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000),
                    response_code: a.response_code,
                    error: a.error,
                })
                .collect(),
            next_attempt_at: time(&d.next_attempt_at),
            created_at: time(&d.created_at),
            updated_at: time(&d.updated_at),
            delivery_id: d.delivery_id,
            notification_id: d.notification_id,
            target: d.target,
            resend_of: d.resend_of,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub deliveries: Vec<Delivery>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

/// Query of the delivery logs.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only this channel.
    pub channel: Option<ChannelName>,
    /// Comma-separated statuses, e.g. `failed,retrying`.
    pub status: Option<String>,
    /// Only deliveries of this notification.
    pub notification_id: Option<String>,
    /// 1–200, default 50.
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

async fn deliveries(
    state: &AppState,
    principal: &mirai_platform::auth::Principal,
    webhook_endpoint_id: String,
    query: DeliveryQuery,
) -> Result<axum::Json<DeliveryPage>, Problem> {
    let mut statuses = Vec::new();
    for raw in items(query.status.as_deref()) {
        let status: DeliveryStatus = parse_name("status", raw)?;
        let wire = DELIVERY_STATUSES
            .iter()
            .find(|(api, _)| *api == status)
            .map_or(0, |(_, w)| *w as i32);
        statuses.push(wire);
    }
    let request = forward(
        pb::ListDeliveriesRequest {
            user_id: principal.user_id.clone(),
            webhook_endpoint_id,
            notification_id: query.notification_id.unwrap_or_default(),
            channel: query.channel.map_or(0, ChannelName::to_wire),
            statuses,
            page_size: query.page_size.unwrap_or_default(),
            page_token: query.page_token.unwrap_or_default(),
        },
        principal,
    )?;
    let r = state.upstreams.notification().list_deliveries(request).await?.into_inner();
    Ok(axum::Json(DeliveryPage {
        deliveries: r.deliveries.into_iter().map(Delivery::from).collect(),
        next_page_token: r.next_page_token,
    }))
}

/// Deliveries to one webhook endpoint, with every attempt, newest first.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_endpoint_id}/deliveries", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    params(("webhook_endpoint_id" = String, Path, description = "Endpoint id"), DeliveryQuery),
    responses(
        (status = 200, description = "One page of the delivery log", body = DeliveryPage),
        (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
    ))]
async fn endpoint_deliveries(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(webhook_endpoint_id): Path<String>,
    Query(query): Query<DeliveryQuery>,
) -> Result<axum::Json<DeliveryPage>, Problem> {
    deliveries(&state, &principal, webhook_endpoint_id, query).await
}

/// The caller's delivery log over every channel, with every attempt, newest first.
#[utoipa::path(get, path = "/v1/deliveries", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    params(DeliveryQuery),
    responses(
        (status = 200, description = "One page of the delivery log", body = DeliveryPage),
        (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_deliveries(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Query(query): Query<DeliveryQuery>,
) -> Result<axum::Json<DeliveryPage>, Problem> {
    deliveries(&state, &principal, String::new(), query).await
}

/// Queues the same notification to the same target again (also after it `failed`); the new
/// delivery names the original in `resend_of`.
#[utoipa::path(post, path = "/v1/deliveries/{delivery_id}/resend", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    params(("delivery_id" = String, Path, description = "Delivery id")),
    responses(
        (status = 202, description = "The new delivery (queued)", body = Delivery),
        (status = 404, description = "No such delivery of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The target is gone or disabled", body = Problem, content_type = "application/problem+json"),
    ))]
async fn resend(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(delivery_id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    let request = forward(
        pb::ResendDeliveryRequest {
            user_id: principal.user_id.clone(),
            delivery_id,
        },
        &principal,
    )?;
    let r = state.upstreams.notification().resend_delivery(request).await?.into_inner();
    let delivery = r
        .delivery
        .map(Delivery::from)
        .ok_or_else(|| Problem::missing("a delivery"))?;
    Ok((StatusCode::ACCEPTED, axum::Json(delivery)))
}

// === Push devices ===

/// Platform of a push device.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DevicePlatform {
    Android,
    Ios,
    Web,
}

/// A registered push device (FCM).
#[derive(Debug, Serialize, ToSchema)]
pub struct PushDevice {
    pub push_device_id: String,
    pub platform: Option<DevicePlatform>,
    pub name: String,
    /// Last 8 characters of the FCM token.
    pub token_suffix: String,
    pub created_at: Option<DateTime<Utc>>,
    pub last_delivered_at: Option<DateTime<Utc>>,
}

impl From<pb::PushDevice> for PushDevice {
    fn from(d: pb::PushDevice) -> Self {
        Self {
            platform: match pb::DevicePlatform::try_from(d.platform) {
                Ok(pb::DevicePlatform::Android) => Some(DevicePlatform::Android),
                Ok(pb::DevicePlatform::Ios) => Some(DevicePlatform::Ios),
                Ok(pb::DevicePlatform::Web) => Some(DevicePlatform::Web),
                _ => None,
            },
            created_at: time(&d.created_at),
            last_delivered_at: time(&d.last_delivered_at),
            push_device_id: d.push_device_id,
            name: d.name,
            token_suffix: d.token_suffix,
        }
    }
}

/// Body of `POST /v1/push-devices`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// FCM registration token.
    pub token: String,
    pub platform: DevicePlatform,
    pub name: Option<String>,
}

/// Registers a device for push; idempotent per token for its owner.
#[utoipa::path(post, path = "/v1/push-devices", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    request_body = NewDevice,
    responses(
        (status = 200, description = "The device", body = PushDevice),
        (status = 400, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The token is registered to another account (it is never moved silently; unregister it there first)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many push devices (10 by default)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn register_device(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Json(body): Json<NewDevice>,
) -> Result<axum::Json<PushDevice>, Problem> {
    let platform = match body.platform {
        DevicePlatform::Android => pb::DevicePlatform::Android,
        DevicePlatform::Ios => pb::DevicePlatform::Ios,
        DevicePlatform::Web => pb::DevicePlatform::Web,
    };
    let request = forward(
        pb::RegisterPushDeviceRequest {
            user_id: principal.user_id.clone(),
            token: body.token,
            platform: platform.into(),
            name: body.name.unwrap_or_default(),
        },
        &principal,
    )?;
    let r = state.upstreams.notification()
        .register_push_device(request)
        .await?
        .into_inner();
    Ok(axum::Json(
        r.device
            .map(PushDevice::from)
            .ok_or_else(|| Problem::missing("a device"))?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    pub devices: Vec<PushDevice>,
}

/// The caller's push devices.
#[utoipa::path(get, path = "/v1/push-devices", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The devices", body = DeviceList)))]
async fn list_devices(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<axum::Json<DeviceList>, Problem> {
    let request = forward(
        pb::ListPushDevicesRequest {
            user_id: principal.user_id.clone(),
        },
        &principal,
    )?;
    let r = state.upstreams.notification()
        .list_push_devices(request)
        .await?
        .into_inner();
    Ok(axum::Json(DeviceList {
        devices: r.devices.into_iter().map(PushDevice::from).collect(),
    }))
}

/// Removes a push device; idempotent.
#[utoipa::path(delete, path = "/v1/push-devices/{push_device_id}", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    params(("push_device_id" = String, Path, description = "Device id")),
    responses((status = 204, description = "Removed (or never existed)")))]
async fn unregister_device(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(push_device_id): Path<String>,
) -> Result<StatusCode, Problem> {
    let request = forward(
        pb::UnregisterPushDeviceRequest {
            user_id: principal.user_id.clone(),
            push_device_id,
        },
        &principal,
    )?;
    state.upstreams.notification().unregister_push_device(request).await?;
    Ok(StatusCode::NO_CONTENT)
}

// === Preferences ===

/// Whether one channel delivers one category.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelPreference {
    pub channel: ChannelName,
    pub category: CategoryName,
    pub enabled: bool,
}

/// A daily period in which non-critical email, push and webhook deliveries are held back
/// (in-app notifications are still stored).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub enabled: bool,
    /// Local "HH:MM".
    pub start: String,
    /// Local "HH:MM"; before `start` wraps past midnight.
    pub end: String,
    /// IANA time zone; the profile's when empty.
    #[serde(default)]
    pub time_zone: String,
}

/// How often non-critical notifications are bundled.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DigestFrequency {
    Off,
    Hourly,
    Daily,
}

/// Digest settings (email, push and webhook; in-app is never delayed).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Digest {
    pub frequency: DigestFrequency,
    /// Local "HH:MM" of the daily digest; default "08:00".
    #[serde(default)]
    pub deliver_at: String,
    /// Categories bundled; every non-critical one when empty.
    #[serde(default)]
    pub categories: Vec<CategoryName>,
}

/// The caller's delivery preferences.
#[derive(Debug, Serialize, ToSchema)]
pub struct Preferences {
    pub channels: Vec<ChannelPreference>,
    pub quiet_hours: Option<QuietHours>,
    pub digest: Option<Digest>,
    /// Address for email; the account's when empty.
    pub email: String,
    /// Unset while the defaults apply.
    pub updated_at: Option<DateTime<Utc>>,
}

fn preferences_of(p: Option<pb::Preferences>) -> Result<Preferences, Problem> {
    let p = p.ok_or_else(|| Problem::missing("preferences"))?;
    Ok(Preferences {
        channels: p
            .channels
            .iter()
            .filter_map(|c| {
                Some(ChannelPreference {
                    channel: ChannelName::from_wire(c.channel)?,
                    category: CategoryName::from_wire(c.category)?,
                    enabled: c.enabled,
                })
            })
            .collect(),
        quiet_hours: p.quiet_hours.map(|q| QuietHours {
            enabled: q.enabled,
            start: q.start,
            end: q.end,
            time_zone: q.time_zone,
        }),
        digest: p.digest.map(|d| Digest {
            frequency: match pb::DigestFrequency::try_from(d.frequency) {
                Ok(pb::DigestFrequency::Hourly) => DigestFrequency::Hourly,
                Ok(pb::DigestFrequency::Daily) => DigestFrequency::Daily,
                _ => DigestFrequency::Off,
            },
            deliver_at: d.deliver_at,
            categories: categories_of(&d.categories),
        }),
        email: p.email,
        updated_at: time(&p.updated_at),
    })
}

/// The caller's delivery preferences (defaults when never set).
#[utoipa::path(get, path = "/v1/notification-preferences", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The preferences", body = Preferences)))]
async fn get_preferences(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<axum::Json<Preferences>, Problem> {
    let request = forward(
        pb::GetPreferencesRequest {
            user_id: principal.user_id.clone(),
        },
        &principal,
    )?;
    let r = state.upstreams.notification().get_preferences(request).await?.into_inner();
    Ok(axum::Json(preferences_of(r.preferences)?))
}

/// Body of `PATCH /v1/notification-preferences` (absent = unchanged; `channels` replaces the
/// whole list).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesChange {
    pub channels: Option<Vec<ChannelPreference>>,
    pub quiet_hours: Option<QuietHours>,
    pub digest: Option<Digest>,
    pub email: Option<String>,
}

/// Changes delivery preferences. Critical system notifications ignore them.
#[utoipa::path(patch, path = "/v1/notification-preferences", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    request_body = PreferencesChange,
    responses(
        (status = 200, description = "The preferences after the change", body = Preferences),
        (status = 400, description = "A field is invalid (named in detail)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_preferences(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Json(body): Json<PreferencesChange>,
) -> Result<axum::Json<Preferences>, Problem> {
    let mut paths = Vec::new();
    let mut prefs = pb::Preferences::default();
    if let Some(channels) = body.channels {
        paths.push("channels".to_owned());
        prefs.channels = channels
            .into_iter()
            .map(|c| pb::ChannelPreference {
                channel: c.channel.to_wire(),
                category: c.category.to_wire(),
                enabled: c.enabled,
            })
            .collect();
    }
    if let Some(q) = body.quiet_hours {
        paths.push("quiet_hours".to_owned());
        prefs.quiet_hours = Some(pb::QuietHours {
            enabled: q.enabled,
            start: q.start,
            end: q.end,
            time_zone: q.time_zone,
        });
    }
    if let Some(d) = body.digest {
        paths.push("digest".to_owned());
        prefs.digest = Some(pb::Digest {
            frequency: match d.frequency {
                DigestFrequency::Off => pb::DigestFrequency::Off,
                DigestFrequency::Hourly => pb::DigestFrequency::Hourly,
                DigestFrequency::Daily => pb::DigestFrequency::Daily,
            }
            .into(),
            deliver_at: d.deliver_at,
            categories: d
                .categories
                .into_iter()
                .map(CategoryName::to_wire)
                .collect(),
        });
    }
    if let Some(email) = body.email {
        paths.push("email".to_owned());
        prefs.email = email;
    }
    let request = forward(
        pb::UpdatePreferencesRequest {
            user_id: principal.user_id.clone(),
            preferences: Some(prefs),
            update_mask: Some(prost_types::FieldMask { paths }),
        },
        &principal,
    )?;
    let r = state.upstreams.notification()
        .update_preferences(request)
        .await?
        .into_inner();
    Ok(axum::Json(preferences_of(r.preferences)?))
}

// === Email address verification ===

/// A verification link's token.
#[derive(Debug, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EmailToken {
    /// The `token` of the link in the verification email.
    pub token: String,
}

/// The address a link confirmed.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmailConfirmed {
    pub email: String,
    pub verified: bool,
}

async fn confirm_with(
    state: &AppState,
    token: String,
) -> Result<axum::Json<EmailConfirmed>, Problem> {
    // The signed, single-use token is the credential: the link works signed in or not.
    let r = state.upstreams.notification()
        .confirm_email_address(tonic::Request::new(pb::ConfirmEmailAddressRequest {
            token,
        }))
        .await?
        .into_inner();
    Ok(axum::Json(EmailConfirmed {
        email: r.email,
        verified: true,
    }))
}

/// Confirms an email address from the link in the verification email (alert email goes only
/// to confirmed addresses). Links expire (24 h by default) and work once.
#[utoipa::path(get, path = "/v1/notification-email/confirm", tag = "notifications",
    params(EmailToken),
    responses(
        (status = 200, description = "The address is verified", body = EmailConfirmed),
        (status = 400, description = "Not a token from this service", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Expired, already used, or replaced by a newer link", body = Problem, content_type = "application/problem+json"),
    ))]
async fn confirm_email_link(
    State(state): State<AppState>,
    Query(q): Query<EmailToken>,
) -> Result<axum::Json<EmailConfirmed>, Problem> {
    confirm_with(&state, q.token).await
}

/// Confirms an email address with the token of a verification link (for clients that
/// open the link themselves).
#[utoipa::path(post, path = "/v1/notification-email/confirm", tag = "notifications",
    request_body = EmailToken,
    responses(
        (status = 200, description = "The address is verified", body = EmailConfirmed),
        (status = 400, description = "Not a token from this service", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Expired, already used, or replaced by a newer link", body = Problem, content_type = "application/problem+json"),
    ))]
async fn confirm_email(
    State(state): State<AppState>,
    Json(body): Json<EmailToken>,
) -> Result<axum::Json<EmailConfirmed>, Problem> {
    confirm_with(&state, body.token).await
}

/// Where verification links were sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationSent {
    /// Empty when every address is already verified.
    pub sent_to: Vec<String>,
}

/// Sends a fresh verification link to each of the caller's unverified addresses (the
/// account's, and the one in the preferences). At most 3 links per address and 5 per user an
/// hour.
#[utoipa::path(post, path = "/v1/notification-email/resend", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Links sent", body = VerificationSent),
        (status = 409, description = "Email is not configured", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many links in the last hour", body = Problem, content_type = "application/problem+json"),
    ))]
async fn resend_email_verification(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<axum::Json<VerificationSent>, Problem> {
    let request = forward(
        pb::ResendEmailVerificationRequest {
            user_id: principal.user_id.clone(),
        },
        &principal,
    )?;
    let r = state.upstreams.notification()
        .resend_email_verification(request)
        .await?
        .into_inner();
    Ok(axum::Json(VerificationSent { sent_to: r.sent_to }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_and_statuses_map_both_ways() {
        for (api, wire) in CATEGORIES {
            assert_eq!(CategoryName::from_wire(wire as i32), Some(api));
            assert_eq!(api.to_wire(), wire as i32);
        }
        assert!(parse_name::<DeliveryStatus>("status", "retrying").is_ok());
        assert_eq!(
            parse_name::<DeliveryStatus>("status", "lost")
                .unwrap_err()
                .status,
            400
        );
    }
}
