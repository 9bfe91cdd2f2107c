//! `/v1/webhooks`: the caller's webhook endpoints, their secrets and rotation.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use mirai_proto::notification::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Caller, forward};
use crate::problem::{Json, Path, Problem};
use crate::routes::fields::time;
use crate::routes::state::AppState;

use super::inbox::{CategoryName, categories_of};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
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
    let r = state
        .upstreams
        .notification()
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
    let r = state
        .upstreams
        .notification()
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
    let r = state
        .upstreams
        .notification()
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
    let r = state
        .upstreams
        .notification()
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
    state
        .upstreams
        .notification()
        .delete_webhook_endpoint(request)
        .await?;
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
    let r = state
        .upstreams
        .notification()
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
