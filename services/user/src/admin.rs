//! Administration: listing accounts, granting and revoking roles, unlocking accounts, and
//! the security audit log.

use mirai_platform::auth::Principal;
use mirai_platform::events::outbox;
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::user::v1 as pb;
use uuid::Uuid;

use crate::SERVICE;
use crate::context::Context;
use crate::domain::{self, user_id};
use crate::error::{Error, Result, db};
use crate::store;
use crate::store::audit::{self, Entry};

type Kind = pb::AuditEventKind;

pub async fn list_users(
    ctx: &Context,
    request: pb::ListUsersRequest,
    size: u32,
    after: Option<Uuid>,
) -> Result<pb::ListUsersResponse> {
    let role = match pb::Role::try_from(request.role) {
        Ok(pb::Role::Unspecified) => None,
        Ok(role) => domain::role::role_name(role),
        Err(_) => return Err(Error::invalid("role", "unknown role")),
    };
    let status = match pb::AccountStatus::try_from(request.status) {
        Ok(pb::AccountStatus::Unspecified) => None,
        Ok(pb::AccountStatus::Active) => Some("active"),
        Ok(pb::AccountStatus::Deleting) => Some("deleting"),
        Ok(pb::AccountStatus::Deleted) => Some("deleted"),
        Err(_) => return Err(Error::invalid("status", "unknown status")),
    };
    let mut rows = store::users::list_users(
        &ctx.pool,
        &store::users::UserFilter {
            query: request.query,
            role,
            status,
            after,
            limit: i64::from(size) + 1,
        },
    )
    .await?;
    let next_page_token =
        wire::next_page_token(&mut rows, size as usize, |r| r.user_id.to_string());
    Ok(pb::ListUsersResponse {
        users: rows.into_iter().map(Into::into).collect(),
        next_page_token,
    })
}

/// Grants or revokes a role; `change` is (user id, role, reason, client) of the request.
pub async fn change_role(
    ctx: &Context,
    admin: &Principal,
    change: (String, i32, String, Option<pb::ClientContext>),
    grant: bool,
) -> Result<(pb::User, bool)> {
    let (target, role, reason, client) = change;
    let actor = user_id(&admin.user_id, "actor_user_id")?;
    let target = user_id(&target, "user_id")?;
    let role_name = domain::role::parse_role(role, "role")?;
    // Free text bound for the audit log: PostgreSQL cannot store NUL in `text`.
    if !mirai_platform::wire::is_plain_text(&reason, 500) {
        return Err(Error::invalid(
            "reason",
            "at most 500 characters without control characters",
        ));
    }
    if role_name == "user" {
        if grant {
            // Every account has `user`: granting it changes nothing.
            return Ok((ctx.load_user(target).await?.into(), false));
        }
        return Err(Error::FailedPrecondition(
            "the user role cannot be revoked".into(),
        ));
    }
    let mut tx = ctx.pool.begin().await?;
    let user = store::users::user_for_update(&mut tx, target)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    let has = user.roles.iter().any(|r| r == role_name);
    if has == grant {
        return Ok((user.into(), false));
    }
    let roles: Vec<String> = if grant {
        user.roles
            .iter()
            .cloned()
            .chain([role_name.to_owned()])
            .collect()
    } else {
        user.roles
            .iter()
            .filter(|r| *r != role_name)
            .cloned()
            .collect()
    };
    store::users::set_roles(&mut *tx, target, &roles)
        .await
        .map_err(db("account"))?;
    let event = ev::UserRoleChanged {
        user_id: target.to_string(),
        role,
        granted: grant,
        roles: domain::role::role_values(&roles),
        actor_user_id: actor.to_string(),
        reason: reason.clone(),
    };
    outbox::enqueue(&mut tx, SERVICE, &event, None)
        .await
        .map_err(db("event"))?;
    // Access tokens carry the roles they were issued with: end every session so that the
    // stale roles live at most one access-token lifetime (the next refresh would renew
    // them).
    let revoked = store::sessions::revoke_all_families(&mut *tx, target, "role_changed")
        .await
        .map_err(db("session"))?;
    Entry::new(Kind::RoleChanged, client.as_ref())
        .user(target)
        .actor(actor)
        .detail("role", role_name)
        .detail("granted", grant.to_string())
        .detail("reason", reason)
        .detail("revoked_families", revoked.to_string())
        .write(&mut *tx)
        .await
        .map_err(db("audit"))?;
    let user = store::users::user_by_id(&mut *tx, target)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    tx.commit().await?;
    tracing::info!(message = "Role changed.", user_id = %target, role = role_name, granted = grant, actor = %actor);
    Ok((user.into(), true))
}

pub async fn unlock_account(
    ctx: &Context,
    actor: Uuid,
    request: pb::UnlockAccountRequest,
) -> Result<pb::UnlockAccountResponse> {
    let id = user_id(&request.user_id, "user_id")?;
    let user = ctx.load_user(id).await?;
    let mut tx = ctx.pool.begin().await?;
    let was_locked =
        store::throttle::clear_account(&mut tx, &store::throttle::account_key(&user.email))
            .await
            .map_err(db("throttle"))?;
    Entry::new(Kind::Unlocked, request.client.as_ref())
        .user(id)
        .actor(actor)
        .detail("via", "admin")
        .detail("was_locked", was_locked.to_string())
        .write(&mut *tx)
        .await
        .map_err(db("audit"))?;
    tx.commit().await?;
    Ok(pb::UnlockAccountResponse {
        user: Some(ctx.load_user(id).await?.into()),
    })
}

pub async fn query_audit_log(
    ctx: &Context,
    request: pb::QueryAuditLogRequest,
    size: u32,
    after: Option<Uuid>,
) -> Result<pb::QueryAuditLogResponse> {
    let optional_id = |raw: &str, field: &str| -> Result<Option<Uuid>> {
        if raw.trim().is_empty() {
            Ok(None)
        } else {
            user_id(raw, field).map(Some)
        }
    };
    let kinds = request
        .kinds
        .iter()
        .filter_map(|k| pb::AuditEventKind::try_from(*k).ok())
        .filter(|k| *k != pb::AuditEventKind::Unspecified)
        .map(|k| audit::kind_name(k).to_owned())
        .collect();
    let time = |ts: &Option<prost_types::Timestamp>, field: &str| {
        ts.as_ref()
            .map(|ts| {
                wire::datetime(ts).ok_or_else(|| Error::invalid(field.to_owned(), "out of range"))
            })
            .transpose()
    };
    let query = audit::Query {
        user_id: optional_id(&request.user_id, "user_id")?,
        actor_user_id: optional_id(&request.actor_user_id, "actor_user_id")?,
        kinds,
        ip: Some(request.ip.trim().to_owned()).filter(|ip| !ip.is_empty()),
        since: time(&request.since, "since")?,
        until: time(&request.until, "until")?,
        after,
        limit: i64::from(size) + 1,
    };
    let mut rows = audit::query(&ctx.pool, &query).await?;
    let next_page_token =
        wire::next_page_token(&mut rows, size as usize, |r| r.audit_event_id.to_string());
    Ok(pb::QueryAuditLogResponse {
        events: rows.into_iter().map(Into::into).collect(),
        next_page_token,
    })
}
