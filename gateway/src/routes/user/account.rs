//! The caller's own account (`/v1/me`: profile, deletion) and API keys.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::user::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Caller, forward};
use crate::middleware::client::Client;
use crate::problem::{Json, Path, Problem, Query};
use crate::routes::state::AppState;

use super::{AccountStatus, RoleName, User, no_store, roles_of, user_of};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me, update_me, delete_me))
        .routes(routes!(deletion_status))
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(revoke_api_key))
}

// === The caller's account ===

/// The caller's account.
#[utoipa::path(get, path = "/v1/me", tag = "account",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The account", body = User),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ))]
async fn me(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<axum::Json<User>, Problem> {
    let request = forward(
        pb::GetProfileRequest {
            user_id: principal.user_id.clone(),
        },
        &principal,
    )?;
    let response = state.upstreams.user().get_profile(request).await?;
    Ok(axum::Json(user_of(response.into_inner().user)?))
}

/// Body of `PATCH /v1/me`: the fields to change (JSON merge-patch style: absent = unchanged).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileChange {
    pub display_name: Option<String>,
    pub time_zone: Option<String>,
    pub locale: Option<String>,
    /// Replaces the whole watchlist (upper-case tickers, at most 200).
    pub watchlist: Option<Vec<String>>,
}

/// Changes profile fields.
#[utoipa::path(patch, path = "/v1/me", tag = "account",
    security(("bearer" = []), ("api_key" = [])),
    request_body = ProfileChange,
    responses(
        (status = 200, description = "The account after the change", body = User),
        (status = 400, description = "A field is invalid (named in detail)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The account is being deleted", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_me(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Client(client_context): Client,
    Json(body): Json<ProfileChange>,
) -> Result<axum::Json<User>, Problem> {
    let mut paths = Vec::new();
    let mut user = pb::User::default();
    if let Some(v) = body.display_name {
        paths.push("display_name".to_owned());
        user.display_name = v;
    }
    if let Some(v) = body.time_zone {
        paths.push("time_zone".to_owned());
        user.time_zone = v;
    }
    if let Some(v) = body.locale {
        paths.push("locale".to_owned());
        user.locale = v;
    }
    if let Some(v) = body.watchlist {
        paths.push("watchlist".to_owned());
        user.watchlist = v;
    }
    let request = forward(
        pb::UpdateProfileRequest {
            user_id: principal.user_id.clone(),
            user: Some(user),
            update_mask: Some(prost_types::FieldMask { paths }),
            client: Some(client_context),
        },
        &principal,
    )?;
    let response = state.upstreams.user().update_profile(request).await?;
    Ok(axum::Json(user_of(response.into_inner().user)?))
}

/// One participant's part in an account deletion.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantProgress {
    /// The service, e.g. `stock-data`.
    pub participant: String,
    pub purged: bool,
    pub purged_at: Option<DateTime<Utc>>,
    pub items_purged: u64,
    /// Times the request was sent again because this participant had not answered.
    pub reminders_sent: u32,
    pub last_requested_at: Option<DateTime<Utc>>,
}

/// Progress of an account deletion.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletionStatus {
    pub user_id: String,
    /// `deleting` until every participant confirmed, then `deleted`.
    pub status: Option<AccountStatus>,
    pub requested_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub participants: Vec<ParticipantProgress>,
    pub correlation_id: String,
}

impl From<pb::DeletionStatus> for DeletionStatus {
    fn from(s: pb::DeletionStatus) -> Self {
        Self {
            status: AccountStatus::from_wire(s.account_status),
            requested_at: s.requested_at.as_ref().and_then(wire::datetime),
            completed_at: s.completed_at.as_ref().and_then(wire::datetime),
            participants: s
                .participants
                .into_iter()
                .map(|p| ParticipantProgress {
                    purged_at: p.purged_at.as_ref().and_then(wire::datetime),
                    last_requested_at: p.last_requested_at.as_ref().and_then(wire::datetime),
                    participant: p.participant,
                    purged: p.purged,
                    items_purged: p.items_purged,
                    reminders_sent: p.reminders_sent,
                })
                .collect(),
            user_id: s.user_id,
            correlation_id: s.correlation_id,
        }
    }
}

fn deletion_of(status: Option<pb::DeletionStatus>) -> Result<DeletionStatus, Problem> {
    status
        .map(DeletionStatus::from)
        .ok_or_else(|| Problem::missing("a status"))
}

/// Deletes the caller's account: sessions and API keys end at once, every service purges the
/// user's data, and the account is erased when all have confirmed. `202` with the progress;
/// follow it at `GET /v1/me/deletion`. Repeating the request is harmless.
#[utoipa::path(delete, path = "/v1/me", tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Deletion under way", body = DeletionStatus),
        (status = 403, description = "Called with an API key", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_me(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Client(client_context): Client,
) -> Result<Response, Problem> {
    let request = forward(
        pb::RequestAccountDeletionRequest {
            user_id: principal.user_id.clone(),
            client: Some(client_context),
        },
        &principal,
    )?;
    let response = state
        .upstreams
        .user()
        .request_account_deletion(request)
        .await?
        .into_inner();
    let status = deletion_of(response.status)?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, "/v1/me/deletion")],
        axum::Json(status),
    )
        .into_response())
}

/// Progress of the caller's account deletion (the access token used must still be valid: it
/// keeps working until it expires, at most 15 minutes).
#[utoipa::path(get, path = "/v1/me/deletion", tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The deletion's progress", body = DeletionStatus),
        (status = 404, description = "No deletion was requested", body = Problem, content_type = "application/problem+json"),
    ))]
async fn deletion_status(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<axum::Json<DeletionStatus>, Problem> {
    let request = forward(
        pb::GetDeletionStatusRequest {
            user_id: principal.user_id.clone(),
        },
        &principal,
    )?;
    let response = state
        .upstreams
        .user()
        .get_deletion_status(request)
        .await?
        .into_inner();
    Ok(axum::Json(deletion_of(response.status)?))
}

// === API keys ===

/// A personal API key (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    pub api_key_id: String,
    pub name: String,
    /// The first characters after `mk_`, to recognise the key.
    pub prefix: String,
    /// Roles the key may use (re-checked against the owner's roles on every use).
    pub scopes: Vec<RoleName>,
    pub created_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<pb::ApiKey> for ApiKey {
    fn from(k: pb::ApiKey) -> Self {
        Self {
            scopes: roles_of(&k.scopes),
            created_at: k.created_at.as_ref().and_then(wire::datetime),
            last_used_at: k.last_used_at.as_ref().and_then(wire::datetime),
            expires_at: k.expires_at.as_ref().and_then(wire::datetime),
            revoked_at: k.revoked_at.as_ref().and_then(wire::datetime),
            api_key_id: k.api_key_id,
            name: k.name,
            prefix: k.prefix,
        }
    }
}

/// Body of `POST /v1/me/api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// 1–100 characters, unique among your usable keys.
    pub name: String,
    /// A subset of your roles; default `["user"]`.
    #[serde(default)]
    pub scopes: Vec<RoleName>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A new key with its secret — shown this once only.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    pub api_key: ApiKey,
    /// Send as `X-API-Key` or `Authorization: ApiKey <secret>`.
    pub secret: String,
}

/// Creates an API key (a session, not another API key, is required).
#[utoipa::path(post, path = "/v1/me/api-keys", tag = "account",
    security(("bearer" = [])),
    request_body = NewApiKey,
    responses(
        (status = 201, description = "The key and its secret", body = CreatedApiKey),
        (status = 403, description = "A scope you do not hold, or called with an API key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A usable key with this name exists", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_api_key(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Client(client_context): Client,
    Json(body): Json<NewApiKey>,
) -> Result<Response, Problem> {
    let request = forward(
        pb::CreateApiKeyRequest {
            user_id: principal.user_id.clone(),
            name: body.name,
            scopes: body.scopes.iter().map(|r| r.to_wire()).collect(),
            expires_at: body.expires_at.map(wire::timestamp),
            client: Some(client_context),
        },
        &principal,
    )?;
    let response = state
        .upstreams
        .user()
        .create_api_key(request)
        .await?
        .into_inner();
    let api_key = ApiKey::from(response.api_key.ok_or_else(|| Problem::missing("a key"))?);
    let mut headers = HeaderMap::new();
    headers.extend(no_store());
    Ok((
        StatusCode::CREATED,
        headers,
        axum::Json(CreatedApiKey {
            api_key,
            secret: response.secret,
        }),
    )
        .into_response())
}

/// Query of `GET /v1/me/api-keys`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApiKeyQuery {
    /// Include revoked and expired keys.
    #[serde(default)]
    pub include_revoked: bool,
    /// 1–100, default 50.
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyPage {
    pub api_keys: Vec<ApiKey>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

/// The caller's API keys, newest first.
#[utoipa::path(get, path = "/v1/me/api-keys", tag = "account",
    security(("bearer" = []), ("api_key" = [])),
    params(ApiKeyQuery),
    responses((status = 200, description = "Keys", body = ApiKeyPage)))]
async fn list_api_keys(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Query(query): Query<ApiKeyQuery>,
) -> Result<axum::Json<ApiKeyPage>, Problem> {
    let request = forward(
        pb::ListApiKeysRequest {
            user_id: principal.user_id.clone(),
            include_revoked: query.include_revoked,
            page_size: query.page_size.unwrap_or_default(),
            page_token: query.page_token.unwrap_or_default(),
        },
        &principal,
    )?;
    let response = state
        .upstreams
        .user()
        .list_api_keys(request)
        .await?
        .into_inner();
    Ok(axum::Json(ApiKeyPage {
        api_keys: response.api_keys.into_iter().map(ApiKey::from).collect(),
        next_page_token: response.next_page_token,
    }))
}

/// Revokes one of the caller's API keys; idempotent.
#[utoipa::path(delete, path = "/v1/me/api-keys/{api_key_id}", tag = "account",
    security(("bearer" = []), ("api_key" = [])),
    params(("api_key_id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The key, revoked", body = ApiKey),
        (status = 404, description = "No such key of yours", body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke_api_key(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Client(client_context): Client,
    Path(api_key_id): Path<String>,
) -> Result<axum::Json<ApiKey>, Problem> {
    let request = forward(
        pb::RevokeApiKeyRequest {
            user_id: principal.user_id.clone(),
            api_key_id,
            client: Some(client_context),
        },
        &principal,
    )?;
    let response = state
        .upstreams
        .user()
        .revoke_api_key(request)
        .await?
        .into_inner();
    let key = response.api_key.ok_or_else(|| Problem::missing("a key"))?;
    Ok(axum::Json(ApiKey::from(key)))
}
