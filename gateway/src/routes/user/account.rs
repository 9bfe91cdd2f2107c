//! Sign-up, sessions, the caller's own account and API keys (user service), plus the public
//! key set and discovery metadata.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(unlock))
        .routes(routes!(logout_everywhere))
        .routes(routes!(change_password))
        .routes(routes!(me, update_me, delete_me))
        .routes(routes!(deletion_status))
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(revoke_api_key))
        .routes(routes!(jwks))
        .routes(routes!(discovery))
}


// === Shared shapes ===

/// A role, as the API names it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    User,
    Premium,
    Admin,
}

impl RoleName {
    pub fn from_wire(value: i32) -> Option<Self> {
        match pb::Role::try_from(value).ok()? {
            pb::Role::User => Some(Self::User),
            pb::Role::Premium => Some(Self::Premium),
            pb::Role::Admin => Some(Self::Admin),
            pb::Role::Unspecified => None,
        }
    }

    pub fn to_wire(self) -> i32 {
        match self {
            Self::User => pb::Role::User,
            Self::Premium => pb::Role::Premium,
            Self::Admin => pb::Role::Admin,
        }
        .into()
    }
}

pub fn roles_of(values: &[i32]) -> Vec<RoleName> {
    values
        .iter()
        .filter_map(|r| RoleName::from_wire(*r))
        .collect()
}

/// Lifecycle of an account.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Deleting,
    Deleted,
}

impl AccountStatus {
    pub fn from_wire(value: i32) -> Option<Self> {
        match pb::AccountStatus::try_from(value).ok()? {
            pb::AccountStatus::Active => Some(Self::Active),
            pb::AccountStatus::Deleting => Some(Self::Deleting),
            pb::AccountStatus::Deleted => Some(Self::Deleted),
            pb::AccountStatus::Unspecified => None,
        }
    }

    pub fn to_wire(self) -> i32 {
        match self {
            Self::Active => pb::AccountStatus::Active,
            Self::Deleting => pb::AccountStatus::Deleting,
            Self::Deleted => pb::AccountStatus::Deleted,
        }
        .into()
    }
}

/// An account as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    /// IANA time zone; quiet hours and digests use it.
    pub time_zone: String,
    /// BCP 47 locale.
    pub locale: String,
    /// Watched tickers, in the user's order.
    pub watchlist: Vec<String>,
    pub roles: Vec<RoleName>,
    pub status: Option<AccountStatus>,
    pub created_at: Option<DateTime<Utc>>,
    pub last_login_at: Option<DateTime<Utc>>,
    /// Set while a brute-force lockout is in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<DateTime<Utc>>,
}

impl From<pb::User> for User {
    fn from(u: pb::User) -> Self {
        Self {
            roles: roles_of(&u.roles),
            status: AccountStatus::from_wire(u.status),
            created_at: u.created_at.as_ref().and_then(wire::datetime),
            last_login_at: u.last_login_at.as_ref().and_then(wire::datetime),
            locked_until: u.locked_until.as_ref().and_then(wire::datetime),
            user_id: u.user_id,
            email: u.email,
            display_name: u.display_name,
            time_zone: u.time_zone,
            locale: u.locale,
            watchlist: u.watchlist,
        }
    }
}

pub fn user_of(user: Option<pb::User>) -> Result<User, Problem> {
    user.map(User::from)
        .ok_or_else(|| Problem::missing("a user"))
}

fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

// === Sign-up and sessions ===

/// Body of `POST /v1/auth/register`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub email: String,
    /// 12–128 characters; no composition rules; not a common password; not containing the email.
    pub password: String,
    pub display_name: Option<String>,
    pub time_zone: Option<String>,
    pub locale: Option<String>,
}

/// Creates an account (role `user`).
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth",
    request_body = Registration,
    responses(
        (status = 201, description = "The new account. An address that already has an account gets the same answer (its owner is told by email), so sign-up reveals no addresses", body = User),
        (status = 400, description = "Invalid email or password policy violation", body = Problem, content_type = "application/problem+json"),
    ))]
async fn register(
    State(state): State<AppState>,
    Client(client_context): Client,
    Json(body): Json<Registration>,
) -> Result<impl IntoResponse, Problem> {
    let response = state.upstreams.user()
        .register(pb::RegisterRequest {
            email: body.email,
            password: body.password,
            display_name: body.display_name,
            time_zone: body.time_zone,
            locale: body.locale,
            client: Some(client_context),
        })
        .await?;
    let user = user_of(response.into_inner().user)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, "/v1/me".to_owned())],
        axum::Json(user),
    ))
}

/// OAuth-style token answer (RFC 6749 §5.1 names).
#[derive(Debug, Serialize, ToSchema)]
pub struct Tokens {
    /// JWT (`typ: at+jwt`, EdDSA); send as `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires (at most 900).
    pub expires_in: i64,
    /// Opaque, one-time use: each refresh returns the next one.
    pub refresh_token: String,
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
}

fn tokens_of(tokens: Option<pb::TokenSet>, user: Option<pb::User>) -> Result<Response, Problem> {
    let tokens = tokens.ok_or_else(|| Problem::missing("tokens"))?;
    let body = Tokens {
        expires_in: tokens.access_token_expires_in.map_or(0, |d| d.seconds),
        refresh_token_expires_at: tokens
            .refresh_token_expires_at
            .as_ref()
            .and_then(wire::datetime),
        access_token: tokens.access_token,
        token_type: tokens.token_type,
        refresh_token: tokens.refresh_token,
        user: user.map(User::from),
    };
    // Tokens must never be cached (RFC 6749 §5.1).
    Ok((no_store(), axum::Json(body)).into_response())
}

/// Body of `POST /v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

/// Starts a session. An unknown email and a wrong password get the same `401`; repeated
/// failures lock out for a growing time (`429` + `Retry-After`): this account from this client
/// IP first, the client IP over all accounts, and the whole account only when the failures come
/// from several IPs (its owner is then emailed an unlock link).
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "Tokens of a new session", body = Tokens),
        (status = 401, description = "Invalid credentials", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Locked out; see Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
async fn login(
    State(state): State<AppState>,
    Client(client_context): Client,
    Json(body): Json<Credentials>,
) -> Result<Response, Problem> {
    let response = state.upstreams.user()
        .login(pb::LoginRequest {
            email: body.email,
            password: body.password,
            client: Some(client_context),
        })
        .await?
        .into_inner();
    tokens_of(response.tokens, response.user)
}

/// Body of `POST /v1/auth/refresh` and `/v1/auth/logout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshToken {
    pub refresh_token: String,
}

/// Spends a refresh token for a new access token and the next refresh token. Presenting a
/// spent one revokes the whole session (both the attacker's and the victim's tokens die).
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth",
    request_body = RefreshToken,
    responses(
        (status = 200, description = "New tokens", body = Tokens),
        (status = 401, description = "Unknown, expired, spent or revoked refresh token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn refresh(
    State(state): State<AppState>,
    Client(client_context): Client,
    Json(body): Json<RefreshToken>,
) -> Result<Response, Problem> {
    let response = state.upstreams.user()
        .refresh(pb::RefreshRequest {
            refresh_token: body.refresh_token,
            client: Some(client_context),
        })
        .await?
        .into_inner();
    tokens_of(response.tokens, None)
}

/// Ends the session the refresh token belongs to; idempotent.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    request_body = RefreshToken,
    responses(
        (status = 204, description = "Session revoked"),
        (status = 401, description = "Unknown refresh token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn logout(
    State(state): State<AppState>,
    Client(client_context): Client,
    Json(body): Json<RefreshToken>,
) -> Result<StatusCode, Problem> {
    state.upstreams.user()
        .logout(pb::LogoutRequest {
            refresh_token: body.refresh_token,
            client: Some(client_context),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /v1/auth/unlock`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockLink {
    /// The `token` query parameter of the emailed unlock link.
    pub token: String,
}

/// Lifts the lockout of an account with the single-use secret of the unlock link emailed to
/// its owner when guesses from several IPs locked it. The link opens a web page that posts here
/// (a link that unlocked on `GET` would be spent by mail scanners).
#[utoipa::path(post, path = "/v1/auth/unlock", tag = "auth", operation_id = "unlock_with_link",
    request_body = UnlockLink,
    responses(
        (status = 204, description = "Unlocked"),
        (status = 401, description = "Unknown, spent or expired link", body = Problem, content_type = "application/problem+json"),
    ))]
async fn unlock(
    State(state): State<AppState>,
    Client(client_context): Client,
    Json(body): Json<UnlockLink>,
) -> Result<StatusCode, Problem> {
    state.upstreams.user()
        .unlock_with_link(pb::UnlockWithLinkRequest {
            token: body.token,
            client: Some(client_context),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How many sessions were ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    pub revoked_sessions: u32,
}

/// Ends every session of the caller.
#[utoipa::path(post, path = "/v1/auth/logout-everywhere", tag = "auth",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Sessions revoked", body = Revoked),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ))]
async fn logout_everywhere(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Client(client_context): Client,
) -> Result<axum::Json<Revoked>, Problem> {
    let request = forward(
        pb::LogoutEverywhereRequest {
            user_id: principal.user_id.clone(),
            client: Some(client_context),
        },
        &principal,
    )?;
    let response = state.upstreams.user()
        .logout_everywhere(request)
        .await?
        .into_inner();
    Ok(axum::Json(Revoked {
        revoked_sessions: response.revoked_families,
    }))
}

/// Body of `POST /v1/me/password`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// Changes the password (a session, not an API key, is required). Every session ends; the
/// answer holds the tokens of a fresh one.
#[utoipa::path(post, path = "/v1/me/password", tag = "account",
    security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Tokens of the new session", body = Tokens),
        (status = 400, description = "The new password violates the policy", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong current password", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Called with an API key", body = Problem, content_type = "application/problem+json"),
    ))]
async fn change_password(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Client(client_context): Client,
    Json(body): Json<PasswordChange>,
) -> Result<Response, Problem> {
    let request = forward(
        pb::ChangePasswordRequest {
            user_id: principal.user_id.clone(),
            current_password: body.current_password,
            new_password: body.new_password,
            client: Some(client_context),
        },
        &principal,
    )?;
    let response = state.upstreams.user().change_password(request).await?.into_inner();
    tokens_of(response.tokens, None)
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
    let response = state.upstreams.user()
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
    let response = state.upstreams.user()
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
    let response = state.upstreams.user().create_api_key(request).await?.into_inner();
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
    let response = state.upstreams.user().list_api_keys(request).await?.into_inner();
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
    let response = state.upstreams.user().revoke_api_key(request).await?.into_inner();
    let key = response.api_key.ok_or_else(|| Problem::missing("a key"))?;
    Ok(axum::Json(ApiKey::from(key)))
}

// === Keys and discovery ===

/// The public keys access tokens are signed with (current, next, and recently retired), as a
/// JWK Set. Cacheable for the `max-age` it carries.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "JWK Set (RFC 7517)", content_type = "application/jwk-set+json", body = Object)))]
async fn jwks(State(state): State<AppState>) -> Result<Response, Problem> {
    let response = state.upstreams.user()
        .get_jwks(pb::GetJwksRequest {})
        .await?
        .into_inner();
    let max_age = response.max_age.map_or(300, |d| d.seconds.max(0));
    Ok((
        [
            (header::CONTENT_TYPE, "application/jwk-set+json".to_owned()),
            (header::CACHE_CONTROL, format!("public, max-age={max_age}")),
        ],
        response.json,
    )
        .into_response())
}

/// Authorization-server metadata (OIDC discovery style): issuer, JWKS URI, endpoints,
/// algorithms.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "auth",
    responses((status = 200, description = "Discovery document", content_type = "application/json", body = Object)))]
async fn discovery(State(state): State<AppState>) -> Result<Response, Problem> {
    let response = state.upstreams.user()
        .get_discovery_document(pb::GetDiscoveryDocumentRequest {
            public_base_url: state.public_url.clone(),
        })
        .await?
        .into_inner();
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CACHE_CONTROL, "public, max-age=3600".to_owned()),
        ],
        response.json,
    )
        .into_response())
}
