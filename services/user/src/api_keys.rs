//! Personal API keys: creation (the secret shown once), listing, revocation, and
//! authentication of a presented secret.

use chrono::Utc;
use mirai_platform::auth::Principal;
use mirai_platform::wire;
use mirai_proto::user::v1 as pb;
use uuid::Uuid;

use crate::context::Context;
use crate::domain;
use crate::error::{Error, Result, bad_credentials, db};
use crate::store::api_keys::{self, ApiKeyRow, KeyWithOwner};
use crate::store::audit::Entry;
use crate::tokens;

type Kind = pb::AuditEventKind;

/// Prefix of every API key secret.
const API_KEY_PREFIX: &str = "mk_";
/// How stale an API key's `last_used_at` may be: it is written at most once per this interval
/// per key (each authentication would otherwise be a write).
const LAST_USED_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

pub async fn create(
    ctx: &Context,
    id: Uuid,
    request: pb::CreateApiKeyRequest,
) -> Result<pb::CreateApiKeyResponse> {
    let name = request.name.trim();
    if name.is_empty() || !mirai_platform::wire::is_plain_text(name, 100) {
        return Err(Error::invalid(
            "name",
            "must be 1-100 characters without control characters",
        ));
    }
    let expires_at = match &request.expires_at {
        Some(ts) => {
            let at =
                wire::datetime(ts).ok_or_else(|| Error::invalid("expires_at", "out of range"))?;
            if at <= Utc::now() {
                return Err(Error::invalid("expires_at", "must be in the future"));
            }
            Some(at)
        }
        None => None,
    };
    let mut scopes: Vec<&'static str> = request
        .scopes
        .iter()
        .map(|s| domain::role::parse_role(*s, "scopes"))
        .collect::<Result<_, _>>()?;
    if scopes.is_empty() {
        scopes.push("user");
    }
    scopes.sort_unstable();
    scopes.dedup();
    let owner = ctx.load_user(id).await?;
    if !owner.is_active() {
        return Err(Error::FailedPrecondition("account is being deleted".into()));
    }
    if let Some(missing) = scopes.iter().find(|s| !owner.roles.iter().any(|r| r == *s)) {
        return Err(Error::PermissionDenied(format!(
            "scopes: you do not hold the role {missing}"
        )));
    }
    let secret = format!("{API_KEY_PREFIX}{}", tokens::new_secret());
    let prefix = secret[API_KEY_PREFIX.len()..API_KEY_PREFIX.len() + 8].to_owned();
    let key_id = Uuid::now_v7();
    let mut tx = ctx.pool.begin().await?;
    let row = api_keys::insert(
        &mut *tx,
        &api_keys::NewApiKey {
            api_key_id: key_id,
            user_id: id,
            name,
            prefix: &prefix,
            secret: &secret,
            scopes: &scopes,
            expires_at,
        },
    )
    .await
    .map_err(db("API key with this name"))?;
    Entry::new(Kind::ApiKeyCreated, request.client.as_ref())
        .user(id)
        .detail("api_key_id", key_id.to_string())
        .detail("scopes", scopes.join(","))
        .write(&mut *tx)
        .await
        .map_err(db("audit"))?;
    tx.commit().await?;
    Ok(pb::CreateApiKeyResponse {
        api_key: Some(to_pb(row)),
        secret,
    })
}

pub async fn list(
    ctx: &Context,
    id: Uuid,
    request: pb::ListApiKeysRequest,
    size: u32,
    after: Option<Uuid>,
) -> Result<pb::ListApiKeysResponse> {
    let mut rows = api_keys::list(
        &ctx.pool,
        id,
        request.include_revoked,
        after,
        i64::from(size) + 1,
    )
    .await?;
    let next_page_token =
        wire::next_page_token(&mut rows, size as usize, |r| r.api_key_id.to_string());
    Ok(pb::ListApiKeysResponse {
        api_keys: rows.into_iter().map(to_pb).collect(),
        next_page_token,
    })
}

pub async fn revoke(
    ctx: &Context,
    id: Uuid,
    caller: &Principal,
    request: pb::RevokeApiKeyRequest,
) -> Result<pb::RevokeApiKeyResponse> {
    let key_id = Uuid::parse_str(request.api_key_id.trim())
        .map_err(|_| Error::invalid("api_key_id", "not an API key id"))?;
    let mut tx = ctx.pool.begin().await?;
    let before = api_keys::for_update(&mut *tx, key_id, id)
        .await?
        .ok_or_else(|| Error::not_found("API key"))?;
    if before.revoked_at.is_some() {
        return Ok(pb::RevokeApiKeyResponse {
            api_key: Some(to_pb(before)),
        });
    }
    let row = api_keys::revoke(&mut *tx, key_id)
        .await
        .map_err(db("API key"))?;
    let mut entry = Entry::new(Kind::ApiKeyRevoked, request.client.as_ref())
        .user(id)
        .detail("api_key_id", key_id.to_string());
    if caller.user_id != id.to_string()
        && let Ok(actor) = Uuid::parse_str(&caller.user_id)
    {
        entry = entry.actor(actor);
    }
    entry.write(&mut *tx).await.map_err(db("audit"))?;
    tx.commit().await?;
    Ok(pb::RevokeApiKeyResponse {
        api_key: Some(to_pb(row)),
    })
}

pub async fn authenticate(
    ctx: &Context,
    request: pb::AuthenticateApiKeyRequest,
) -> Result<pb::AuthenticateApiKeyResponse> {
    let client = request.client.as_ref();
    let secret = request.secret.trim();
    let reject = |reason: &'static str| {
        let pool = ctx.pool.clone();
        async move {
            Entry::new(Kind::ApiKeyRejected, client)
                .detail("reason", reason)
                .write(&pool)
                .await
                .map_err(db("audit"))?;
            Err::<pb::AuthenticateApiKeyResponse, _>(bad_credentials())
        }
    };
    if !secret.starts_with(API_KEY_PREFIX) || secret.len() > 128 {
        return reject("malformed").await;
    }
    let now = Utc::now();
    let found = api_keys::by_secret(&ctx.pool, secret).await?;
    let Some(KeyWithOwner {
        key,
        owner_roles,
        owner_status,
    }) = found
    else {
        return reject("unknown").await;
    };
    if key.revoked_at.is_some() {
        return reject("revoked").await;
    }
    if key.expires_at.is_some_and(|at| at <= now) {
        return reject("expired").await;
    }
    if owner_status != "active" {
        return reject("owner_inactive").await;
    }
    // Effective roles: the key's scopes still held by the owner.
    let roles: Vec<String> = key
        .scopes
        .iter()
        .filter(|s| owner_roles.contains(s))
        .cloned()
        .collect();
    // `last_used_at` has a resolution of [`LAST_USED_RESOLUTION`]: a key used constantly
    // costs one write per minute, not one per request.
    if key
        .last_used_at
        .is_none_or(|at| now - at >= LAST_USED_RESOLUTION)
    {
        api_keys::touch_last_used(&ctx.pool, key.api_key_id, now)
            .await
            .map_err(db("API key"))?;
    }
    Ok(pb::AuthenticateApiKeyResponse {
        principal: Some(pb::Principal {
            user_id: key.user_id.to_string(),
            roles: domain::role::role_values(&roles),
            api_key_id: Some(key.api_key_id.to_string()),
        }),
        expires_at: key.expires_at.map(wire::timestamp),
    })
}

fn to_pb(row: ApiKeyRow) -> pb::ApiKey {
    pb::ApiKey {
        api_key_id: row.api_key_id.to_string(),
        user_id: row.user_id.to_string(),
        name: row.name,
        prefix: row.prefix,
        scopes: domain::role::role_values(&row.scopes),
        created_at: Some(wire::timestamp(row.created_at)),
        last_used_at: row.last_used_at.map(wire::timestamp),
        expires_at: row.expires_at.map(wire::timestamp),
        revoked_at: row.revoked_at.map(wire::timestamp),
    }
}
