//! The caller's in-app notifications: `/v1/notifications` (list, mark read, unread count) and
//! their live stream `/v1/stream/notifications` (SSE).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt as _};
use mirai_platform::grpc::client::OpenEnded;
use mirai_proto::notification::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Caller, forward};
use crate::problem::{Json, Problem, Query};
use crate::routes::fields::{items, parse_name, time};
use crate::routes::market::streams::Watch;
use crate::routes::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(mark))
        .routes(routes!(unread_count))
        .routes(routes!(stream))
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

pub(super) fn categories_of(values: &[i32]) -> Vec<CategoryName> {
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
    let response = state
        .upstreams
        .notification()
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
    let r = state
        .upstreams
        .notification()
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
    let r = state
        .upstreams
        .notification()
        .get_unread_count(request)
        .await?
        .into_inner();
    Ok(axum::Json(UnreadCount {
        unread_count: r.unread_count,
    }))
}

/// Live notifications as Server-Sent Events: `event: notification` for each new in-app
/// notification of the caller, with the notification's id as the event's `id`; `data` is the
/// JSON of a notification plus `unread_count` and `dropped` (messages this stream lost by
/// reading too slowly — they stay listable). Keep-alive comments every 15 s.
///
/// Reconnecting with `Last-Event-ID` (as `EventSource` does) resumes: the notifications newer
/// than that one come first, oldest first (at most 200; list the rest), then the live ones.
/// A stream opened with an access token ends with `event: error`
/// (`{"code": "token_expired", …}`) when the token expires: reconnect with a fresh one.
#[utoipa::path(get, path = "/v1/stream/notifications", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    params(("Last-Event-ID" = Option<String>, Header, description = "Resume after this notification id (the last event's `id`)")),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "`Last-Event-ID` is not a notification id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many open notification streams for the caller (5 by default)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn stream(
    State(state): State<AppState>,
    Caller(principal): Caller,
    request: axum::extract::Request,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let after = match request.headers().get("last-event-id") {
        None => String::new(),
        Some(value) => value
            .to_str()
            .ok()
            .filter(|v| v.parse::<uuid::Uuid>().is_ok())
            .ok_or_else(|| {
                Problem::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid-last-event-id",
                    "Invalid Last-Event-ID",
                )
                .detail("Last-Event-ID must be the id of a notification event")
            })?
            .to_owned(),
    };
    let ended = Box::pin(Watch::of(&request, &state.streams).ended());
    let mut request = forward(
        pb::StreamNotificationsRequest {
            user_id: principal.user_id.clone(),
            after_notification_id: after,
        },
        &principal,
    )?;
    // No deadline: the upstream stream lives as long as the client's connection.
    request.extensions_mut().insert(OpenEnded);
    let upstream = state
        .upstreams
        .notification()
        .stream_notifications(request)
        .await?
        .into_inner();
    let stop = state.streams_stop.clone().cancelled_owned();
    let notifications = upstream
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
    // The credential's end is the stream's last event.
    let events = futures::stream::unfold(
        Some((notifications.boxed(), ended)),
        |state| async move {
            let (mut notifications, mut ended) = state?;
            tokio::select! {
                ending = &mut ended => Some((
                    Ok(Event::default().event("error").data(ending.json().to_string())),
                    None,
                )),
                next = notifications.next() => next.map(|event| (event, Some((notifications, ended)))),
            }
        },
    )
    .take_until(stop);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_map_both_ways() {
        for (api, wire) in CATEGORIES {
            assert_eq!(CategoryName::from_wire(wire as i32), Some(api));
            assert_eq!(api.to_wire(), wire as i32);
        }
    }
}
