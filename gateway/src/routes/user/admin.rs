//! `/v1/admin/users` and `/v1/admin/audit`: accounts, roles, lockouts and the security audit
//! log, for admins (the user service checks the role again).

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::user::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AccountStatus, RoleName, User, user_of};
use crate::middleware::auth::{Admin, forward};
use crate::middleware::client::Client;
use crate::problem::{Json, Path, Problem, Query};
use crate::routes::fields::items;
use crate::routes::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(get_user))
        .routes(routes!(grant_role))
        .routes(routes!(revoke_role))
        .routes(routes!(unlock))
        .routes(routes!(audit_log))
}

/// Query of `GET /v1/admin/users`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Case-insensitive prefix of the email or display name.
    #[serde(default)]
    pub q: String,
    pub role: Option<RoleName>,
    pub status: Option<AccountStatus>,
    /// 1–500, default 50.
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub users: Vec<User>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

/// Accounts, oldest first.
#[utoipa::path(get, path = "/v1/admin/users", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    params(UserQuery),
    responses(
        (status = 200, description = "Accounts", body = UserPage),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_users(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Query(query): Query<UserQuery>,
) -> Result<axum::Json<UserPage>, Problem> {
    let request = forward(
        pb::ListUsersRequest {
            query: query.q,
            role: query.role.map(RoleName::to_wire).unwrap_or_default(),
            status: query.status.map(AccountStatus::to_wire).unwrap_or_default(),
            page_size: query.page_size.unwrap_or_default(),
            page_token: query.page_token.unwrap_or_default(),
        },
        &admin,
    )?;
    let response = state
        .upstreams
        .user()
        .list_users(request)
        .await?
        .into_inner();
    Ok(axum::Json(UserPage {
        users: response.users.into_iter().map(User::from).collect(),
        next_page_token: response.next_page_token,
    }))
}

/// One account.
#[utoipa::path(get, path = "/v1/admin/users/{user_id}", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    params(("user_id" = String, Path, description = "Account id")),
    responses(
        (status = 200, description = "The account", body = User),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(user_id): Path<String>,
) -> Result<axum::Json<User>, Problem> {
    let request = forward(pb::GetProfileRequest { user_id }, &admin)?;
    let response = state
        .upstreams
        .user()
        .get_profile(request)
        .await?
        .into_inner();
    Ok(axum::Json(user_of(response.user)?))
}

/// Body of `POST /v1/admin/users/{user_id}/roles`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleGrant {
    /// `premium` or `admin` (every account has `user`).
    pub role: RoleName,
    /// Why, for the audit log (at most 500 characters).
    #[serde(default)]
    pub reason: String,
}

/// Query of `DELETE /v1/admin/users/{user_id}/roles/{role}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RevokeQuery {
    /// Why, for the audit log.
    #[serde(default)]
    pub reason: String,
}

/// The account after a role change.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleChange {
    pub user: User,
    /// False when nothing changed (the account already had, or lacked, the role).
    pub changed: bool,
}

/// Grants a role; idempotent.
#[utoipa::path(post, path = "/v1/admin/users/{user_id}/roles", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    params(("user_id" = String, Path, description = "Account id")),
    request_body = RoleGrant,
    responses(
        (status = 200, description = "The account after the change", body = RoleChange),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    ))]
async fn grant_role(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Client(client_context): Client,
    Path(user_id): Path<String>,
    Json(body): Json<RoleGrant>,
) -> Result<axum::Json<RoleChange>, Problem> {
    let request = forward(
        pb::GrantRoleRequest {
            actor_user_id: admin.user_id.clone(),
            user_id,
            role: body.role.to_wire(),
            reason: body.reason,
            client: Some(client_context),
        },
        &admin,
    )?;
    let response = state
        .upstreams
        .user()
        .grant_role(request)
        .await?
        .into_inner();
    Ok(axum::Json(RoleChange {
        user: user_of(response.user)?,
        changed: response.changed,
    }))
}

/// Revokes a role; idempotent. `user` cannot be revoked.
#[utoipa::path(delete, path = "/v1/admin/users/{user_id}/roles/{role}", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    params(
        ("user_id" = String, Path, description = "Account id"),
        ("role" = RoleName, Path, description = "`premium` or `admin`"),
        RevokeQuery,
    ),
    responses(
        (status = 200, description = "The account after the change", body = RoleChange),
        (status = 409, description = "The `user` role cannot be revoked", body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke_role(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Client(client_context): Client,
    Path((user_id, role)): Path<(String, RoleName)>,
    Query(query): Query<RevokeQuery>,
) -> Result<axum::Json<RoleChange>, Problem> {
    let request = forward(
        pb::RevokeRoleRequest {
            actor_user_id: admin.user_id.clone(),
            user_id,
            role: role.to_wire(),
            reason: query.reason,
            client: Some(client_context),
        },
        &admin,
    )?;
    let response = state
        .upstreams
        .user()
        .revoke_role(request)
        .await?
        .into_inner();
    Ok(axum::Json(RoleChange {
        user: user_of(response.user)?,
        changed: response.changed,
    }))
}

/// Lifts a brute-force lockout of the account.
#[utoipa::path(post, path = "/v1/admin/users/{user_id}/unlock", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    params(("user_id" = String, Path, description = "Account id")),
    responses((status = 200, description = "The account, unlocked", body = User)))]
async fn unlock(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Client(client_context): Client,
    Path(user_id): Path<String>,
) -> Result<axum::Json<User>, Problem> {
    let request = forward(
        pb::UnlockAccountRequest {
            actor_user_id: admin.user_id.clone(),
            user_id,
            client: Some(client_context),
        },
        &admin,
    )?;
    let response = state
        .upstreams
        .user()
        .unlock_account(request)
        .await?
        .into_inner();
    Ok(axum::Json(user_of(response.user)?))
}

/// Query of `GET /v1/admin/audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries about this account.
    pub user_id: Option<String>,
    /// Entries by this admin.
    pub actor_user_id: Option<String>,
    /// Comma-separated kinds, e.g. `login_failed,locked_out`.
    pub kinds: Option<String>,
    /// Exact client IP.
    pub ip: Option<String>,
    /// RFC 3339, inclusive.
    pub since: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive.
    pub until: Option<DateTime<Utc>>,
    /// 1–1000, default 100.
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

/// One security event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    pub audit_event_id: String,
    /// E.g. `login_failed`, `locked_out`, `refresh_token_reused`, `role_changed`.
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub actor_user_id: String,
    pub ip: String,
    pub user_agent: String,
    pub request_id: String,
    pub details: BTreeMap<String, String>,
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

fn kind_name(value: i32) -> String {
    pb::AuditEventKind::try_from(value)
        .map(|k| {
            k.as_str_name()
                .trim_start_matches("AUDIT_EVENT_KIND_")
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn kind_value(name: &str) -> Result<i32, Problem> {
    pb::AuditEventKind::from_str_name(&format!(
        "AUDIT_EVENT_KIND_{}",
        name.trim().to_ascii_uppercase()
    ))
    .filter(|k| *k != pb::AuditEventKind::Unspecified)
    .map(i32::from)
    .ok_or_else(|| {
        Problem::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query string",
        )
        .detail(format!("kinds: unknown audit kind `{name}`"))
    })
}

/// The security audit log, newest first; pages stay stable while new entries arrive.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "Entries", body = AuditPage),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ))]
async fn audit_log(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Query(query): Query<AuditQuery>,
) -> Result<axum::Json<AuditPage>, Problem> {
    let kinds = items(query.kinds.as_deref())
        .map(kind_value)
        .collect::<Result<Vec<_>, _>>()?;
    let request = forward(
        pb::QueryAuditLogRequest {
            user_id: query.user_id.unwrap_or_default(),
            actor_user_id: query.actor_user_id.unwrap_or_default(),
            kinds,
            ip: query.ip.unwrap_or_default(),
            since: query.since.map(wire::timestamp),
            until: query.until.map(wire::timestamp),
            page_size: query.page_size.unwrap_or_default(),
            page_token: query.page_token.unwrap_or_default(),
        },
        &admin,
    )?;
    let response = state
        .upstreams
        .user()
        .query_audit_log(request)
        .await?
        .into_inner();
    Ok(axum::Json(AuditPage {
        events: response
            .events
            .into_iter()
            .map(|e| AuditEvent {
                kind: kind_name(e.kind),
                occurred_at: e.occurred_at.as_ref().and_then(wire::datetime),
                details: e.details.into_iter().collect(),
                audit_event_id: e.audit_event_id,
                user_id: e.user_id,
                actor_user_id: e.actor_user_id,
                ip: e.ip,
                user_agent: e.user_agent,
                request_id: e.request_id,
            })
            .collect(),
        next_page_token: response.next_page_token,
    }))
}
