//! Sign-up and sessions: registration, login, refresh-token rotation, logout, password
//! changes and access-token introspection.

use chrono::{DateTime, Utc};
use mirai_platform::events::outbox;
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::user::v1 as pb;
use tonic::Status;
use uuid::Uuid;

use crate::SERVICE;
use crate::context::Context;
use crate::domain;
use crate::domain::email::Email;
use crate::error::{Error, Result, bad_credentials, db};
use crate::lockout::{self, client_ip};
use crate::store;
use crate::store::audit::{self, Entry};
use crate::store::users::UserRow;

type Kind = pb::AuditEventKind;

pub async fn register(ctx: &Context, request: pb::RegisterRequest) -> Result<pb::RegisterResponse> {
    let email = Email::parse(&request.email)?;
    domain::password_policy::check_new_password(&request.password, &email, "password")?;
    let display_name = match &request.display_name {
        Some(name) => domain::profile::display_name(name, "display_name")?,
        None => domain::profile::display_name(email.local_part(), "display_name")
            .unwrap_or_else(|_| "user".to_owned()),
    };
    let time_zone = match &request.time_zone {
        Some(tz) => domain::profile::time_zone(tz, "time_zone")?,
        None => "UTC".to_owned(),
    };
    let locale = match &request.locale {
        Some(locale) => domain::profile::locale(locale, "locale")?,
        None => "en-US".to_owned(),
    };
    let phc = ctx
        .hasher
        .hash(&request.password)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut tx = ctx.pool.begin().await?;
    let Some(user) = store::users::insert_user(
        &mut tx,
        &store::users::NewUser {
            email: email.as_str(),
            password_hash: &phc,
            display_name: &display_name,
            time_zone: &time_zone,
            locale: &locale,
        },
    )
    .await
    .map_err(db("account"))?
    else {
        // The address has an account. Answer as for a new one (the password was hashed
        // all the same) and tell the owner — at most once an hour, so sign-ups cannot
        // flood their mailbox — so registration reveals no addresses.
        if let Some(owner) = store::users::user_by_email(&mut *tx, email.as_str()).await? {
            let told = audit::recorded_since(
                &mut *tx,
                owner.user_id,
                Kind::RegistrationAttempted,
                Utc::now() - chrono::Duration::hours(1),
            )
            .await
            .map_err(db("audit"))?;
            if !told {
                let event = ev::UserRegistrationAttempted {
                    user_id: owner.user_id.to_string(),
                };
                outbox::enqueue(&mut tx, SERVICE, &event, None)
                    .await
                    .map_err(db("event"))?;
            }
            Entry::new(Kind::RegistrationAttempted, request.client.as_ref())
                .user(owner.user_id)
                .write(&mut *tx)
                .await
                .map_err(db("audit"))?;
        }
        tx.commit().await?;
        let now = Utc::now();
        let unsaved = UserRow {
            user_id: Uuid::now_v7(),
            email: email.as_str().to_owned(),
            password_hash: None,
            display_name,
            time_zone,
            locale,
            watchlist: Vec::new(),
            roles: vec!["user".to_owned()],
            status: "active".to_owned(),
            created_at: now,
            updated_at: now,
            last_login_at: None,
            locked_until: None,
        };
        return Ok(pb::RegisterResponse {
            user: Some(unsaved.into()),
        });
    };
    let event = ev::UserRegistered {
        user_id: user.user_id.to_string(),
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        time_zone: user.time_zone.clone(),
        locale: user.locale.clone(),
        roles: domain::role::role_values(&user.roles),
    };
    outbox::enqueue(&mut tx, SERVICE, &event, None)
        .await
        .map_err(db("event"))?;
    Entry::new(Kind::Registered, request.client.as_ref())
        .user(user.user_id)
        .write(&mut *tx)
        .await
        .map_err(db("audit"))?;
    tx.commit().await?;
    tracing::info!(message = "Account registered.", user_id = %user.user_id);
    Ok(pb::RegisterResponse {
        user: Some(user.into()),
    })
}

/// Login: the email parsed, the attempt admitted (see [`lockout::admit`]), then the flow.
/// Answers with a `Status`, for the lockout's `retry-after` trailer.
pub async fn login(ctx: &Context, request: pb::LoginRequest) -> Result<pb::LoginResponse, Status> {
    let email = Email::parse(&request.email)?;
    if request.password.is_empty() || request.password.chars().count() > 1024 {
        return Err(bad_credentials().into());
    }
    let account = store::throttle::account_key(email.as_str());
    let now = Utc::now();
    lockout::admit(ctx, &account, request.client.as_ref(), now).await?;
    Ok(login_inner(ctx, request, email, &account, now).await?)
}

/// Login after the attempt was admitted (see [`login`]).
async fn login_inner(
    ctx: &Context,
    request: pb::LoginRequest,
    email: Email,
    account: &str,
    now: DateTime<Utc>,
) -> Result<pb::LoginResponse> {
    let client = request.client.as_ref();
    let user = store::users::user_by_email(&ctx.pool, email.as_str()).await?;
    // Unknown email: the dummy hash is verified, at the same cost as a real one.
    let phc = user.as_ref().and_then(|u| u.password_hash.clone());
    let known_id = user.as_ref().map(|u| u.user_id);
    let matched = ctx
        .hasher
        .verify(&request.password, phc.as_deref())
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    let Some(user) = user.filter(|_| matched) else {
        let mut entry = Entry::new(Kind::LoginFailed, client);
        if let Some(id) = known_id {
            entry = entry.user(id);
        }
        entry.write(&ctx.pool).await.map_err(db("audit"))?;
        lockout::count_failure(ctx, account, known_id, client, now).await?;
        return Err(bad_credentials());
    };
    store::throttle::record_success(&ctx.pool, account, client_ip(client))
        .await
        .map_err(db("throttle"))?;
    if !user.is_active() {
        return Err(Error::FailedPrecondition("account is being deleted".into()));
    }
    if let Some(phc) = &phc
        && ctx.hasher.needs_rehash(phc)
    {
        let rehashed = ctx
            .hasher
            .hash(&request.password)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        store::users::set_password_hash(&ctx.pool, user.user_id, &rehashed)
            .await
            .map_err(db("account"))?;
        tracing::info!(message = "Password rehashed with the current parameters.", user_id = %user.user_id);
    }
    let mut tx = ctx.pool.begin().await?;
    store::users::touch_login(&mut *tx, user.user_id)
        .await
        .map_err(db("account"))?;
    let refresh = store::sessions::new_family(
        &mut tx,
        user.user_id,
        now,
        ctx.config.refresh_idle_ttl,
        ctx.config.refresh_absolute_ttl,
    )
    .await
    .map_err(db("session"))?;
    Entry::new(Kind::LoginSucceeded, client)
        .user(user.user_id)
        .write(&mut *tx)
        .await
        .map_err(db("audit"))?;
    let user = store::users::user_by_id(&mut *tx, user.user_id)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    tx.commit().await?;
    let tokens = token_set(ctx, &user, refresh, now)?;
    Ok(pb::LoginResponse {
        tokens: Some(tokens),
        user: Some(user.into()),
    })
}

pub async fn refresh(ctx: &Context, request: pb::RefreshRequest) -> Result<pb::RefreshResponse> {
    let client = request.client.as_ref();
    if request.refresh_token.is_empty() || request.refresh_token.len() > 128 {
        return Err(bad_credentials());
    }
    let now = Utc::now();
    let mut tx = ctx.pool.begin().await?;
    let presented = store::sessions::find_token(&mut tx, &request.refresh_token)
        .await?
        .ok_or_else(bad_credentials)?;
    if presented.family_revoked_at.is_some() {
        return Err(bad_credentials());
    }
    if presented.used_at.is_some() {
        // Reuse of a spent token: it leaked (or was replayed). Kill the whole family, so
        // the attacker's and the victim's current tokens both die (RFC 9700 §4.14.2).
        store::sessions::revoke_family(&mut *tx, presented.family_id, "reuse")
            .await
            .map_err(db("session"))?;
        Entry::new(Kind::RefreshTokenReused, client)
            .user(presented.user_id)
            .detail("family_id", presented.family_id.to_string())
            .write(&mut *tx)
            .await
            .map_err(db("audit"))?;
        tx.commit().await?;
        tracing::warn!(message = "Refresh token reused; family revoked.", user_id = %presented.user_id, family_id = %presented.family_id);
        return Err(bad_credentials());
    }
    if presented.token_expires_at <= now || presented.family_expires_at <= now {
        return Err(bad_credentials());
    }
    let user = store::users::user_by_id(&mut *tx, presented.user_id)
        .await?
        .filter(UserRow::is_active)
        .ok_or_else(bad_credentials)?;
    let refresh = store::sessions::rotate(
        &mut tx,
        &request.refresh_token,
        &presented,
        now,
        ctx.config.refresh_idle_ttl,
    )
    .await
    .map_err(db("session"))?;
    tx.commit().await?;
    Ok(pb::RefreshResponse {
        tokens: Some(token_set(ctx, &user, refresh, now)?),
    })
}

pub async fn logout(ctx: &Context, request: pb::LogoutRequest) -> Result<pb::LogoutResponse> {
    if request.refresh_token.is_empty() || request.refresh_token.len() > 128 {
        return Err(bad_credentials());
    }
    let mut tx = ctx.pool.begin().await?;
    let presented = store::sessions::find_token(&mut tx, &request.refresh_token)
        .await?
        .ok_or_else(bad_credentials)?;
    let revoked = store::sessions::revoke_family(&mut *tx, presented.family_id, "logout")
        .await
        .map_err(db("session"))?;
    if revoked {
        Entry::new(Kind::LoggedOut, request.client.as_ref())
            .user(presented.user_id)
            .detail("family_id", presented.family_id.to_string())
            .write(&mut *tx)
            .await
            .map_err(db("audit"))?;
    }
    tx.commit().await?;
    Ok(pb::LogoutResponse {
        revoked_families: u32::from(revoked),
    })
}

pub async fn logout_everywhere(
    ctx: &Context,
    id: Uuid,
    request: pb::LogoutEverywhereRequest,
) -> Result<pb::LogoutResponse> {
    let mut tx = ctx.pool.begin().await?;
    let revoked = store::sessions::revoke_all_families(&mut *tx, id, "logout_everywhere")
        .await
        .map_err(db("session"))?;
    Entry::new(Kind::LoggedOut, request.client.as_ref())
        .user(id)
        .detail("everywhere", "true")
        .detail("revoked_families", revoked.to_string())
        .write(&mut *tx)
        .await
        .map_err(db("audit"))?;
    tx.commit().await?;
    Ok(pb::LogoutResponse {
        revoked_families: revoked as u32,
    })
}

/// A password change of the active account `id`: the attempt admitted (see
/// [`lockout::admit`]), then the flow. Answers with a `Status`, for the lockout's
/// `retry-after` trailer.
pub async fn change_password(
    ctx: &Context,
    id: Uuid,
    request: pb::ChangePasswordRequest,
) -> Result<pb::ChangePasswordResponse, Status> {
    let user = ctx.load_user(id).await?;
    if !user.is_active() {
        return Err(Error::FailedPrecondition("account is being deleted".into()).into());
    }
    let account = store::throttle::account_key(&user.email);
    let now = Utc::now();
    lockout::admit(ctx, &account, request.client.as_ref(), now).await?;
    Ok(change_password_inner(ctx, user, request, &account, now).await?)
}

/// A password change after the attempt was admitted (see [`change_password`]).
async fn change_password_inner(
    ctx: &Context,
    user: UserRow,
    request: pb::ChangePasswordRequest,
    account: &str,
    now: DateTime<Utc>,
) -> Result<pb::ChangePasswordResponse> {
    let id = user.user_id;
    let client = request.client.as_ref();
    let matched = ctx
        .hasher
        .verify(&request.current_password, user.password_hash.as_deref())
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    if !matched {
        lockout::count_failure(ctx, account, Some(id), client, now).await?;
        return Err(bad_credentials());
    }
    store::throttle::record_success(&ctx.pool, account, client_ip(client))
        .await
        .map_err(db("throttle"))?;
    let email = Email::parse(&user.email)?;
    domain::password_policy::check_new_password(&request.new_password, &email, "new_password")?;
    let phc = ctx
        .hasher
        .hash(&request.new_password)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut tx = ctx.pool.begin().await?;
    store::users::set_password_hash(&mut *tx, id, &phc)
        .await
        .map_err(db("account"))?;
    let revoked = store::sessions::revoke_all_families(&mut *tx, id, "password_changed")
        .await
        .map_err(db("session"))?;
    let refresh = store::sessions::new_family(
        &mut tx,
        id,
        now,
        ctx.config.refresh_idle_ttl,
        ctx.config.refresh_absolute_ttl,
    )
    .await
    .map_err(db("session"))?;
    Entry::new(Kind::PasswordChanged, client)
        .user(id)
        .detail("revoked_families", revoked.to_string())
        .write(&mut *tx)
        .await
        .map_err(db("audit"))?;
    tx.commit().await?;
    Ok(pb::ChangePasswordResponse {
        tokens: Some(token_set(ctx, &user, refresh, now)?),
        revoked_families: revoked as u32,
    })
}

pub async fn introspect_token(
    ctx: &Context,
    request: pb::IntrospectTokenRequest,
) -> Result<pb::IntrospectTokenResponse> {
    let inactive = || Ok(pb::IntrospectTokenResponse::default());
    let Some(claims) = ctx.issuer.verify(&ctx.keys, &request.access_token) else {
        return inactive();
    };
    let Ok(id) = Uuid::parse_str(&claims.sub) else {
        return inactive();
    };
    let active = store::users::user_by_id(&ctx.pool, id)
        .await?
        .is_some_and(|u| u.is_active());
    if !active {
        return inactive();
    }
    Ok(pb::IntrospectTokenResponse {
        active: true,
        principal: Some(pb::Principal {
            user_id: claims.sub,
            roles: domain::role::role_values(&claims.roles),
            api_key_id: None,
        }),
        expires_at: DateTime::from_timestamp(claims.exp, 0).map(wire::timestamp),
        token_id: claims.jti,
    })
}

/// Access token for `user` plus the given refresh token, as a `TokenSet`.
fn token_set(
    ctx: &Context,
    user: &UserRow,
    refresh: store::sessions::IssuedRefresh,
    now: DateTime<Utc>,
) -> Result<pb::TokenSet> {
    let access = ctx
        .issuer
        .issue(&ctx.keys, &user.user_id.to_string(), &user.roles, now)
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(pb::TokenSet {
        access_token: access.token,
        token_type: "Bearer".to_owned(),
        access_token_expires_at: Some(wire::timestamp(access.expires_at)),
        access_token_expires_in: Some(prost_types::Duration {
            seconds: access.ttl.as_secs() as i64,
            nanos: 0,
        }),
        refresh_token: refresh.secret,
        refresh_token_expires_at: Some(wire::timestamp(refresh.expires_at)),
    })
}
