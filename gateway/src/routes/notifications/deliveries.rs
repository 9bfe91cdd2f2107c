//! The delivery log: `/v1/deliveries` and each webhook endpoint's deliveries, and resending one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use mirai_proto::notification::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Caller, forward};
use crate::problem::{Path, Problem, Query};
use crate::routes::fields::{items, parse_name, time};
use crate::routes::state::AppState;

use super::ChannelName;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(endpoint_deliveries))
        .routes(routes!(list_deliveries))
        .routes(routes!(resend))
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
    let r = state
        .upstreams
        .notification()
        .list_deliveries(request)
        .await?
        .into_inner();
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
    let r = state
        .upstreams
        .notification()
        .resend_delivery(request)
        .await?
        .into_inner();
    let delivery = r
        .delivery
        .map(Delivery::from)
        .ok_or_else(|| Problem::missing("a delivery"))?;
    Ok((StatusCode::ACCEPTED, axum::Json(delivery)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::fields::parse_name;

    #[test]
    fn delivery_statuses_parse_by_name() {
        assert!(parse_name::<DeliveryStatus>("status", "retrying").is_ok());
        assert_eq!(
            parse_name::<DeliveryStatus>("status", "lost")
                .unwrap_err()
                .status,
            400
        );
    }
}
