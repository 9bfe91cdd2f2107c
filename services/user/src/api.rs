//! The `UserService` gRPC API: translation, and the flows of login, refresh and friends (the
//! deletion saga lives in [`crate::deletion`]).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mirai_platform::auth::Principal;
use mirai_platform::events::outbox;
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::user::v1 as pb;
use mirai_proto::user::v1::user_service_server::UserService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::SERVICE;

use crate::config::AuthConfig;
use crate::domain;
use crate::domain::email::Email;
use crate::error::{Error, Result, db};
use crate::keys::KeyRing;
use crate::password::Hasher;
use crate::principal;
use crate::store;
use crate::store::api_keys::{self, ApiKeyRow, KeyWithOwner};
use crate::store::audit::{self, Entry};
use crate::store::throttle::Scope;
use crate::store::users::UserRow;
use crate::tokens::{self, TokenIssuer};

type Kind = pb::AuditEventKind;

/// The one answer for every failed credential check: unknown email, wrong password, unusable
/// refresh token or API key. Never says which.
fn bad_credentials() -> Error {
    Error::Unauthenticated("invalid credentials".into())
}

/// RESOURCE_EXHAUSTED with the `retry-after` trailer in whole seconds (rounded up). The one
/// `Status` this service builds itself: [`Error`] has no room for trailers.
fn locked_out(until: DateTime<Utc>, now: DateTime<Utc>) -> Status {
    let seconds = ((until - now).num_milliseconds().max(0) as u64)
        .div_ceil(1000)
        .max(1);
    let mut status = Status::resource_exhausted("too many failed attempts; try again later");
    if let Ok(value) = seconds.to_string().parse() {
        status.metadata_mut().insert("retry-after", value);
    }
    status
}

/// The caller's IP as the gateway reported it (empty when unknown).
fn client_ip(client: Option<&pb::ClientContext>) -> &str {
    client.map_or("", |c| c.ip.trim())
}

fn user_id(raw: &str, field: &str) -> Result<Uuid> {
    Uuid::parse_str(raw.trim())
        .map_err(|_| Error::invalid(field.to_owned(), "not a user id (UUID)"))
}

pub struct Api {
    pool: PgPool,
    config: AuthConfig,
    hasher: Hasher,
    keys: Arc<KeyRing>,
    issuer: TokenIssuer,
}

impl Api {
    pub fn new(pool: PgPool, config: AuthConfig, keys: KeyRing) -> Result<Self, String> {
        let hasher =
            Hasher::new(config.argon2, config.max_concurrent_hashes).map_err(|e| e.to_string())?;
        Ok(Self {
            issuer: TokenIssuer {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                ttl: config.access_token_ttl,
            },
            pool,
            config,
            hasher,
            keys: Arc::new(keys),
        })
    }

    /// Access token for `user` plus the given refresh token, as a `TokenSet`.
    fn token_set(
        &self,
        user: &UserRow,
        refresh: store::sessions::IssuedRefresh,
        now: DateTime<Utc>,
    ) -> Result<pb::TokenSet> {
        let access = self
            .issuer
            .issue(&self.keys, &user.user_id.to_string(), &user.roles, now)
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

    /// Admits a password attempt, counting it *before* the password is hashed (concurrent
    /// guesses cannot all pass a check made before any of them failed); refuses while the
    /// (account, IP) pair, the IP or the account is locked out. Answers with a `Status`, for
    /// the lockout's trailer ([`locked_out`]): the RPCs call it before their flow.
    async fn admit(
        &self,
        account: &str,
        client: Option<&pb::ClientContext>,
        now: DateTime<Utc>,
    ) -> Result<(), Status> {
        store::throttle::admit_attempt(
            &self.pool,
            account,
            client_ip(client),
            &self.config.lockout,
            now,
        )
        .await
        .map_err(db("throttle"))?
        .map_err(|until| locked_out(until, now))
    }

    /// Settles a failed attempt: starts the lockouts it completes and audits them; a lockout
    /// of a known account also gets the owner an unlock link by email
    /// (`user.account.locked`).
    async fn count_failure(
        &self,
        account: &str,
        user: Option<Uuid>,
        client: Option<&pb::ClientContext>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let lockout = &self.config.lockout;
        let ip = client_ip(client);
        let started = store::throttle::record_failure(&self.pool, account, ip, lockout, now)
            .await
            .map_err(db("throttle"))?;
        for locked in started {
            let mut tx = self.pool.begin().await?;
            let mut entry = Entry::new(Kind::LockedOut, client)
                .detail("scope", locked.scope.as_str())
                .detail("locked_until", locked.until.to_rfc3339());
            if let (Scope::Account | Scope::Pair, Some(user)) = (locked.scope, user) {
                entry = entry.user(user);
            }
            if let (Scope::Account, Some(user)) = (locked.scope, user) {
                entry = entry.detail("distinct_ips", locked.ips.to_string());
                let expires_at = now
                    + chrono::Duration::from_std(lockout.unlock_link_ttl)
                        .unwrap_or(chrono::Duration::MAX);
                let secret = store::throttle::new_unlock_token(&mut *tx, user, expires_at)
                    .await
                    .map_err(db("throttle"))?;
                let event = ev::UserAccountLocked {
                    user_id: user.to_string(),
                    locked_until: Some(wire::timestamp(locked.until)),
                    unlock_url: format!("{}?token={secret}", lockout.unlock_url),
                    unlock_url_expires_at: Some(wire::timestamp(expires_at)),
                    distinct_ips: locked.ips,
                };
                outbox::enqueue(&mut tx, SERVICE, &event, None)
                    .await
                    .map_err(db("event"))?;
            }
            entry.write(&mut *tx).await.map_err(db("audit"))?;
            tx.commit().await?;
            tracing::warn!(message = "Login locked out.", scope = locked.scope.as_str(), until = %locked.until);
        }
        Ok(())
    }

    async fn load_user(&self, id: Uuid) -> Result<UserRow> {
        store::users::user_by_id(&self.pool, id)
            .await?
            .ok_or_else(|| Error::not_found("account"))
    }

    fn api_key_row_to_pb(row: ApiKeyRow) -> pb::ApiKey {
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

    /// Grants or revokes a role; `change` is (user id, role, reason, client) of the request.
    async fn change_role(
        &self,
        admin: &Principal,
        change: (String, i32, String, Option<pb::ClientContext>),
        grant: bool,
    ) -> Result<(pb::User, bool)> {
        let (target, role, reason, client) = change;
        let actor = user_id(&admin.user_id, "actor_user_id")?;
        let target = user_id(&target, "user_id")?;
        let role_name = domain::role::parse_role(role, "role")?;
        if reason.chars().count() > 500 {
            return Err(Error::invalid("reason", "at most 500 characters"));
        }
        if role_name == "user" {
            if grant {
                // Every account has `user`: granting it changes nothing.
                return Ok((self.load_user(target).await?.into(), false));
            }
            return Err(Error::FailedPrecondition(
                "the user role cannot be revoked".into(),
            ));
        }
        let mut tx = self.pool.begin().await?;
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
}

/// Prefix of every API key secret.
const API_KEY_PREFIX: &str = "mk_";
/// How stale an API key's `last_used_at` may be: it is written at most once per this interval
/// per key (each authentication would otherwise be a write).
const LAST_USED_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// The flows behind the RPCs: each answers with [`Error`], which its RPC converts once.
impl Api {
    async fn register_inner(&self, request: pb::RegisterRequest) -> Result<pb::RegisterResponse> {
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
        let phc = self
            .hasher
            .hash(&request.password)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
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

    /// Login after the attempt was admitted (see [`Self::admit`]).
    async fn login_inner(
        &self,
        request: pb::LoginRequest,
        email: Email,
        account: &str,
        now: DateTime<Utc>,
    ) -> Result<pb::LoginResponse> {
        let client = request.client.as_ref();
        let user = store::users::user_by_email(&self.pool, email.as_str()).await?;
        // Unknown email: the dummy hash is verified, at the same cost as a real one.
        let phc = user.as_ref().and_then(|u| u.password_hash.clone());
        let known_id = user.as_ref().map(|u| u.user_id);
        let matched = self
            .hasher
            .verify(&request.password, phc.as_deref())
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let Some(user) = user.filter(|_| matched) else {
            let mut entry = Entry::new(Kind::LoginFailed, client);
            if let Some(id) = known_id {
                entry = entry.user(id);
            }
            entry.write(&self.pool).await.map_err(db("audit"))?;
            self.count_failure(account, known_id, client, now).await?;
            return Err(bad_credentials());
        };
        store::throttle::record_success(&self.pool, account, client_ip(client))
            .await
            .map_err(db("throttle"))?;
        if !user.is_active() {
            return Err(Error::FailedPrecondition("account is being deleted".into()));
        }
        if let Some(phc) = &phc
            && self.hasher.needs_rehash(phc)
        {
            let rehashed = self
                .hasher
                .hash(&request.password)
                .await
                .map_err(|e| Error::Internal(e.to_string()))?;
            store::users::set_password_hash(&self.pool, user.user_id, &rehashed)
                .await
                .map_err(db("account"))?;
            tracing::info!(message = "Password rehashed with the current parameters.", user_id = %user.user_id);
        }
        let mut tx = self.pool.begin().await?;
        store::users::touch_login(&mut *tx, user.user_id)
            .await
            .map_err(db("account"))?;
        let refresh = store::sessions::new_family(
            &mut tx,
            user.user_id,
            now,
            self.config.refresh_idle_ttl,
            self.config.refresh_absolute_ttl,
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
        let tokens = self.token_set(&user, refresh, now)?;
        Ok(pb::LoginResponse {
            tokens: Some(tokens),
            user: Some(user.into()),
        })
    }

    async fn unlock_with_link_inner(
        &self,
        request: pb::UnlockWithLinkRequest,
    ) -> Result<pb::UnlockWithLinkResponse> {
        let secret = request.token.trim();
        if secret.is_empty() || secret.len() > 128 {
            return Err(bad_credentials());
        }
        let mut tx = self.pool.begin().await?;
        let id = store::throttle::spend_unlock_token(&mut *tx, secret, Utc::now())
            .await
            .map_err(db("throttle"))?
            .ok_or_else(bad_credentials)?;
        let user = store::users::user_by_id(&mut *tx, id)
            .await?
            .filter(UserRow::is_active)
            .ok_or_else(bad_credentials)?;
        let was_locked =
            store::throttle::clear_account(&mut tx, &store::throttle::account_key(&user.email))
                .await
                .map_err(db("throttle"))?;
        Entry::new(Kind::Unlocked, request.client.as_ref())
            .user(id)
            .detail("via", "email_link")
            .detail("was_locked", was_locked.to_string())
            .write(&mut *tx)
            .await
            .map_err(db("audit"))?;
        tx.commit().await?;
        tracing::info!(message = "Account unlocked with an emailed link.", user_id = %id);
        Ok(pb::UnlockWithLinkResponse {})
    }

    async fn refresh_inner(&self, request: pb::RefreshRequest) -> Result<pb::RefreshResponse> {
        let client = request.client.as_ref();
        if request.refresh_token.is_empty() || request.refresh_token.len() > 128 {
            return Err(bad_credentials());
        }
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
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
            self.config.refresh_idle_ttl,
        )
        .await
        .map_err(db("session"))?;
        tx.commit().await?;
        Ok(pb::RefreshResponse {
            tokens: Some(self.token_set(&user, refresh, now)?),
        })
    }

    async fn logout_inner(&self, request: pb::LogoutRequest) -> Result<pb::LogoutResponse> {
        if request.refresh_token.is_empty() || request.refresh_token.len() > 128 {
            return Err(bad_credentials());
        }
        let mut tx = self.pool.begin().await?;
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

    async fn logout_everywhere_inner(
        &self,
        id: Uuid,
        request: pb::LogoutEverywhereRequest,
    ) -> Result<pb::LogoutResponse> {
        let mut tx = self.pool.begin().await?;
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

    /// A password change after the attempt was admitted (see [`Self::admit`]).
    async fn change_password_inner(
        &self,
        user: UserRow,
        request: pb::ChangePasswordRequest,
        account: &str,
        now: DateTime<Utc>,
    ) -> Result<pb::ChangePasswordResponse> {
        let id = user.user_id;
        let client = request.client.as_ref();
        let matched = self
            .hasher
            .verify(&request.current_password, user.password_hash.as_deref())
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        if !matched {
            self.count_failure(account, Some(id), client, now).await?;
            return Err(bad_credentials());
        }
        store::throttle::record_success(&self.pool, account, client_ip(client))
            .await
            .map_err(db("throttle"))?;
        let email = Email::parse(&user.email)?;
        domain::password_policy::check_new_password(&request.new_password, &email, "new_password")?;
        let phc = self
            .hasher
            .hash(&request.new_password)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
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
            self.config.refresh_idle_ttl,
            self.config.refresh_absolute_ttl,
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
            tokens: Some(self.token_set(&user, refresh, now)?),
            revoked_families: revoked as u32,
        })
    }

    async fn introspect_token_inner(
        &self,
        request: pb::IntrospectTokenRequest,
    ) -> Result<pb::IntrospectTokenResponse> {
        let inactive = || Ok(pb::IntrospectTokenResponse::default());
        let Some(claims) = self.issuer.verify(&self.keys, &request.access_token) else {
            return inactive();
        };
        let Ok(id) = Uuid::parse_str(&claims.sub) else {
            return inactive();
        };
        let active = store::users::user_by_id(&self.pool, id)
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

    async fn update_profile_inner(
        &self,
        id: Uuid,
        request: pb::UpdateProfileRequest,
    ) -> Result<pb::UpdateProfileResponse> {
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let new = request.user.unwrap_or_default();
        let (mut display_name, mut time_zone, mut locale, mut watchlist) = (None, None, None, None);
        for path in &paths {
            match path.as_str() {
                "display_name" => {
                    display_name = Some(domain::profile::display_name(
                        &new.display_name,
                        "user.display_name",
                    )?)
                }
                "time_zone" => {
                    time_zone = Some(domain::profile::time_zone(
                        &new.time_zone,
                        "user.time_zone",
                    )?)
                }
                "locale" => locale = Some(domain::profile::locale(&new.locale, "user.locale")?),
                "watchlist" => watchlist = Some(domain::profile::watchlist(&new.watchlist)?),
                other => {
                    return Err(Error::invalid(
                        "update_mask",
                        format!(
                            "`{other}` cannot be changed (display_name, time_zone, locale, watchlist)"
                        ),
                    ));
                }
            }
        }
        let mut tx = self.pool.begin().await?;
        let before = store::users::user_for_update(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found("account"))?;
        if !before.is_active() {
            return Err(Error::FailedPrecondition("account is being deleted".into()));
        }
        if paths.is_empty() {
            return Ok(pb::UpdateProfileResponse {
                user: Some(before.into()),
            });
        }
        store::users::update_profile(
            &mut *tx,
            id,
            &store::users::ProfileUpdate {
                display_name: display_name.as_deref(),
                time_zone: time_zone.as_deref(),
                locale: locale.as_deref(),
                watchlist: watchlist.as_deref(),
            },
        )
        .await
        .map_err(db("account"))?;
        if let Some(symbols) = watchlist.filter(|w| *w != before.watchlist) {
            let added = symbols
                .iter()
                .filter(|s| !before.watchlist.contains(s))
                .cloned()
                .collect();
            let removed = before
                .watchlist
                .iter()
                .filter(|s| !symbols.contains(s))
                .cloned()
                .collect();
            let event = ev::UserWatchlistChanged {
                user_id: id.to_string(),
                symbols,
                added,
                removed,
            };
            outbox::enqueue(&mut tx, SERVICE, &event, None)
                .await
                .map_err(db("event"))?;
        }
        let user = store::users::user_by_id(&mut *tx, id)
            .await?
            .ok_or_else(|| Error::not_found("account"))?;
        tx.commit().await?;
        Ok(pb::UpdateProfileResponse {
            user: Some(user.into()),
        })
    }

    async fn create_api_key_inner(
        &self,
        id: Uuid,
        request: pb::CreateApiKeyRequest,
    ) -> Result<pb::CreateApiKeyResponse> {
        let name = request.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Error::invalid("name", "must be 1-100 characters"));
        }
        let expires_at = match &request.expires_at {
            Some(ts) => {
                let at = wire::datetime(ts)
                    .ok_or_else(|| Error::invalid("expires_at", "out of range"))?;
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
        let owner = self.load_user(id).await?;
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
        let mut tx = self.pool.begin().await?;
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
            api_key: Some(Self::api_key_row_to_pb(row)),
            secret,
        })
    }

    async fn list_api_keys_inner(
        &self,
        id: Uuid,
        request: pb::ListApiKeysRequest,
        size: u32,
        after: String,
    ) -> Result<pb::ListApiKeysResponse> {
        let after = if after.is_empty() {
            None
        } else {
            Some(
                Uuid::parse_str(&after)
                    .map_err(|_| Error::invalid("page_token", "not a token from this API"))?,
            )
        };
        let mut rows = api_keys::list(
            &self.pool,
            id,
            request.include_revoked,
            after,
            i64::from(size) + 1,
        )
        .await?;
        let next_page_token =
            wire::next_page_token(&mut rows, size as usize, |r| r.api_key_id.to_string());
        Ok(pb::ListApiKeysResponse {
            api_keys: rows.into_iter().map(Self::api_key_row_to_pb).collect(),
            next_page_token,
        })
    }

    async fn revoke_api_key_inner(
        &self,
        id: Uuid,
        caller: &Principal,
        request: pb::RevokeApiKeyRequest,
    ) -> Result<pb::RevokeApiKeyResponse> {
        let key_id = Uuid::parse_str(request.api_key_id.trim())
            .map_err(|_| Error::invalid("api_key_id", "not an API key id"))?;
        let mut tx = self.pool.begin().await?;
        let before = api_keys::for_update(&mut *tx, key_id, id)
            .await?
            .ok_or_else(|| Error::not_found("API key"))?;
        if before.revoked_at.is_some() {
            return Ok(pb::RevokeApiKeyResponse {
                api_key: Some(Self::api_key_row_to_pb(before)),
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
            api_key: Some(Self::api_key_row_to_pb(row)),
        })
    }

    async fn authenticate_api_key_inner(
        &self,
        request: pb::AuthenticateApiKeyRequest,
    ) -> Result<pb::AuthenticateApiKeyResponse> {
        let client = request.client.as_ref();
        let secret = request.secret.trim();
        let reject = |reason: &'static str| {
            let pool = self.pool.clone();
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
        let found = api_keys::by_secret(&self.pool, secret).await?;
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
            api_keys::touch_last_used(&self.pool, key.api_key_id, now)
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

    async fn list_users_inner(
        &self,
        request: pb::ListUsersRequest,
        size: u32,
        after: String,
    ) -> Result<pb::ListUsersResponse> {
        let after = if after.is_empty() {
            None
        } else {
            Some(
                Uuid::parse_str(&after)
                    .map_err(|_| Error::invalid("page_token", "not a token from this API"))?,
            )
        };
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
            &self.pool,
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

    async fn unlock_account_inner(
        &self,
        actor: Uuid,
        request: pb::UnlockAccountRequest,
    ) -> Result<pb::UnlockAccountResponse> {
        let id = user_id(&request.user_id, "user_id")?;
        let user = self.load_user(id).await?;
        let mut tx = self.pool.begin().await?;
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
            user: Some(self.load_user(id).await?.into()),
        })
    }

    async fn query_audit_log_inner(
        &self,
        request: pb::QueryAuditLogRequest,
        size: u32,
        after: String,
    ) -> Result<pb::QueryAuditLogResponse> {
        let optional_id = |raw: &str, field: &str| -> Result<Option<Uuid>> {
            if raw.trim().is_empty() {
                Ok(None)
            } else {
                user_id(raw, field).map(Some)
            }
        };
        let after = if after.is_empty() {
            None
        } else {
            Some(
                Uuid::parse_str(&after)
                    .map_err(|_| Error::invalid("page_token", "not a token from this API"))?,
            )
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
                    wire::datetime(ts)
                        .ok_or_else(|| Error::invalid(field.to_owned(), "out of range"))
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
        let mut rows = audit::query(&self.pool, &query).await?;
        let next_page_token =
            wire::next_page_token(&mut rows, size as usize, |r| r.audit_event_id.to_string());
        Ok(pb::QueryAuditLogResponse {
            events: rows.into_iter().map(Into::into).collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl UserService for Api {
    // === Sign-up and sessions ===

    #[tracing::instrument(skip_all)]
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        Ok(Response::new(
            self.register_inner(request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let request = request.into_inner();
        let email = Email::parse(&request.email)?;
        if request.password.is_empty() || request.password.chars().count() > 1024 {
            return Err(bad_credentials().into());
        }
        let account = store::throttle::account_key(email.as_str());
        let now = Utc::now();
        self.admit(&account, request.client.as_ref(), now).await?;
        Ok(Response::new(
            self.login_inner(request, email, &account, now).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn unlock_with_link(
        &self,
        request: Request<pb::UnlockWithLinkRequest>,
    ) -> Result<Response<pb::UnlockWithLinkResponse>, Status> {
        Ok(Response::new(
            self.unlock_with_link_inner(request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        Ok(Response::new(
            self.refresh_inner(request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        Ok(Response::new(
            self.logout_inner(request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn logout_everywhere(
        &self,
        request: Request<pb::LogoutEverywhereRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        principal::require_self(&request, &id.to_string(), true)?;
        Ok(Response::new(
            self.logout_everywhere_inner(id, request.into_inner())
                .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        principal::require_self_session(&request, &id.to_string())?;
        let request = request.into_inner();
        let user = self.load_user(id).await?;
        if !user.is_active() {
            return Err(Error::FailedPrecondition("account is being deleted".into()).into());
        }
        let account = store::throttle::account_key(&user.email);
        let now = Utc::now();
        self.admit(&account, request.client.as_ref(), now).await?;
        Ok(Response::new(
            self.change_password_inner(user, request, &account, now)
                .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn introspect_token(
        &self,
        request: Request<pb::IntrospectTokenRequest>,
    ) -> Result<Response<pb::IntrospectTokenResponse>, Status> {
        Ok(Response::new(
            self.introspect_token_inner(request.into_inner()).await?,
        ))
    }

    // === Signing keys and discovery ===

    async fn get_jwks(
        &self,
        _request: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::GetJwksResponse>, Status> {
        let (keys, json) = self.keys.jwks();
        Ok(Response::new(pb::GetJwksResponse {
            keys,
            json,
            max_age: Some(prost_types::Duration {
                seconds: self.config.keys.jwks_max_age.as_secs() as i64,
                nanos: 0,
            }),
        }))
    }

    async fn get_discovery_document(
        &self,
        request: Request<pb::GetDiscoveryDocumentRequest>,
    ) -> Result<Response<pb::GetDiscoveryDocumentResponse>, Status> {
        let base = request.into_inner().public_base_url;
        let base = if base.trim().is_empty() {
            self.config.issuer.clone()
        } else if base.starts_with("https://") || base.starts_with("http://") {
            base
        } else {
            return Err(
                Error::invalid("public_base_url", "must be an absolute http(s) URL").into(),
            );
        };
        let base = base.trim_end_matches('/');
        let response = pb::GetDiscoveryDocumentResponse {
            issuer: self.config.issuer.clone(),
            jwks_uri: format!("{base}/.well-known/jwks.json"),
            token_endpoint: format!("{base}/v1/auth/login"),
            revocation_endpoint: format!("{base}/v1/auth/logout"),
            token_signing_alg_values_supported: vec!["EdDSA".to_owned()],
            json: String::new(),
        };
        let json = serde_json::json!({
            "issuer": response.issuer,
            "jwks_uri": response.jwks_uri,
            "token_endpoint": response.token_endpoint,
            "revocation_endpoint": response.revocation_endpoint,
            "token_endpoint_auth_methods_supported": ["none"],
            "grant_types_supported": ["password", "refresh_token"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "token_signing_alg_values_supported": response.token_signing_alg_values_supported,
        })
        .to_string();
        Ok(Response::new(pb::GetDiscoveryDocumentResponse {
            json,
            ..response
        }))
    }

    // === Profile ===

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        principal::require_self(&request, &id.to_string(), true)?;
        Ok(Response::new(pb::GetProfileResponse {
            user: Some(self.load_user(id).await?.into()),
        }))
    }

    async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::UpdateProfileResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        principal::require_self(&request, &id.to_string(), false)?;
        Ok(Response::new(
            self.update_profile_inner(id, request.into_inner()).await?,
        ))
    }

    // === Account deletion saga ===

    #[tracing::instrument(skip_all)]
    async fn request_account_deletion(
        &self,
        request: Request<pb::RequestAccountDeletionRequest>,
    ) -> Result<Response<pb::RequestAccountDeletionResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        // The account itself with a session (a leaked script key must not delete it), or an
        // admin acting on it.
        let caller = principal::require_self(&request, &id.to_string(), true)?;
        if caller.user_id == id.to_string() && caller.api_key_id.is_some() {
            return Err(Error::PermissionDenied(
                "not allowed with an API key; sign in with your password".into(),
            )
            .into());
        }
        let actor = Uuid::parse_str(&caller.user_id).ok();
        let request = request.into_inner();
        let status = crate::deletion::request(
            &self.pool,
            &self.config.deletion,
            id,
            actor,
            request.client.as_ref(),
        )
        .await?;
        Ok(Response::new(pb::RequestAccountDeletionResponse {
            status: Some(status),
        }))
    }

    async fn get_deletion_status(
        &self,
        request: Request<pb::GetDeletionStatusRequest>,
    ) -> Result<Response<pb::GetDeletionStatusResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        principal::require_self(&request, &id.to_string(), true)?;
        Ok(Response::new(pb::GetDeletionStatusResponse {
            status: Some(crate::deletion::status(&self.pool, id).await?),
        }))
    }

    // === Personal API keys ===

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        principal::require_self_session(&request, &id.to_string())?;
        Ok(Response::new(
            self.create_api_key_inner(id, request.into_inner()).await?,
        ))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        principal::require_self(&request, &id.to_string(), true)?;
        let request = request.into_inner();
        let size = wire::page_size(request.page_size, 50, 100)?;
        let after = wire::page_after(&request.page_token)?;
        Ok(Response::new(
            self.list_api_keys_inner(id, request, size, after).await?,
        ))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let id = user_id(&request.get_ref().user_id, "user_id")?;
        let caller = principal::require_self(&request, &id.to_string(), true)?;
        Ok(Response::new(
            self.revoke_api_key_inner(id, &caller, request.into_inner())
                .await?,
        ))
    }

    async fn authenticate_api_key(
        &self,
        request: Request<pb::AuthenticateApiKeyRequest>,
    ) -> Result<Response<pb::AuthenticateApiKeyResponse>, Status> {
        Ok(Response::new(
            self.authenticate_api_key_inner(request.into_inner())
                .await?,
        ))
    }

    // === Administration ===

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        principal::require_admin(&request)?;
        let request = request.into_inner();
        let size = wire::page_size(request.page_size, 50, 500)?;
        let after = wire::page_after(&request.page_token)?;
        Ok(Response::new(
            self.list_users_inner(request, size, after).await?,
        ))
    }

    async fn grant_role(
        &self,
        request: Request<pb::GrantRoleRequest>,
    ) -> Result<Response<pb::GrantRoleResponse>, Status> {
        let admin = principal::require_admin(&request)?;
        let r = request.into_inner();
        let change = (r.user_id, r.role, r.reason, r.client);
        let (user, changed) = self.change_role(&admin, change, true).await?;
        Ok(Response::new(pb::GrantRoleResponse {
            user: Some(user),
            changed,
        }))
    }

    async fn revoke_role(
        &self,
        request: Request<pb::RevokeRoleRequest>,
    ) -> Result<Response<pb::RevokeRoleResponse>, Status> {
        let admin = principal::require_admin(&request)?;
        let r = request.into_inner();
        let change = (r.user_id, r.role, r.reason, r.client);
        let (user, changed) = self.change_role(&admin, change, false).await?;
        Ok(Response::new(pb::RevokeRoleResponse {
            user: Some(user),
            changed,
        }))
    }

    async fn unlock_account(
        &self,
        request: Request<pb::UnlockAccountRequest>,
    ) -> Result<Response<pb::UnlockAccountResponse>, Status> {
        let admin = principal::require_admin(&request)?;
        let actor = user_id(&admin.user_id, "actor_user_id")?;
        Ok(Response::new(
            self.unlock_account_inner(actor, request.into_inner())
                .await?,
        ))
    }

    async fn query_audit_log(
        &self,
        request: Request<pb::QueryAuditLogRequest>,
    ) -> Result<Response<pb::QueryAuditLogResponse>, Status> {
        principal::require_admin(&request)?;
        let request = request.into_inner();
        let size = wire::page_size(request.page_size, 100, 1000)?;
        let after = wire::page_after(&request.page_token)?;
        Ok(Response::new(
            self.query_audit_log_inner(request, size, after).await?,
        ))
    }
}
