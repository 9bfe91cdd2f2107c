//! Sign-up, sessions and tokens (`/v1/auth/…`, and the password change, which ends the other
//! sessions), plus the public key set and discovery metadata.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::user::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Caller, forward};
use crate::middleware::client::Client;
use crate::problem::{Json, Problem};
use crate::routes::state::AppState;

use super::{User, no_store, user_of};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(unlock))
        .routes(routes!(logout_everywhere))
        .routes(routes!(change_password))
        .routes(routes!(jwks))
        .routes(routes!(discovery))
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
    let response = state
        .upstreams
        .user()
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
    let response = state
        .upstreams
        .user()
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
    let response = state
        .upstreams
        .user()
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
    state
        .upstreams
        .user()
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
    state
        .upstreams
        .user()
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
    let response = state
        .upstreams
        .user()
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
    let response = state
        .upstreams
        .user()
        .change_password(request)
        .await?
        .into_inner();
    tokens_of(response.tokens, None)
}

// === Keys and discovery ===

/// The public keys access tokens are signed with (current, next, and recently retired), as a
/// JWK Set. Cacheable for the `max-age` it carries.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "JWK Set (RFC 7517)", content_type = "application/jwk-set+json", body = Object)))]
async fn jwks(State(state): State<AppState>) -> Result<Response, Problem> {
    let response = state
        .upstreams
        .user()
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
    let response = state
        .upstreams
        .user()
        .get_discovery_document(pb::GetDiscoveryDocumentRequest {
            public_base_url: state.public_url.to_string(),
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
