//! Webhook endpoints and push devices.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::notification::v1 as pb;
use rand::RngCore as _;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::secrets::{self, Keyring};

/// A stored webhook endpoint: the columns every query of endpoints returns.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub webhook_endpoint_id: Uuid,
    pub user_id: Uuid,
    pub url: String,
    pub description: String,
    pub categories: Vec<i16>,
    pub status: String,
    pub disabled_reason: String,
    pub failing_since: Option<DateTime<Utc>>,
    pub last_error: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Endpoint {
    pub fn enabled(&self) -> bool {
        self.status == "ENABLED"
    }

    /// The secrets that sign now, opened: the current one, and the previous one during its
    /// overlap.
    pub fn signing_secrets(
        &self,
        now: DateTime<Utc>,
        keys: Option<&Keyring>,
    ) -> anyhow::Result<Vec<String>> {
        let aad = self.webhook_endpoint_id.as_bytes();
        let mut secrets = vec![secrets::open(keys, aad, &self.secret)?];
        if let (Some(previous), Some(until)) =
            (&self.previous_secret, self.previous_secret_expires_at)
            && until > now
        {
            secrets.push(secrets::open(keys, aad, previous)?);
        }
        Ok(secrets)
    }

    /// Whether this endpoint takes notifications of `category` (empty: all).
    pub fn takes(&self, category: i16) -> bool {
        self.categories.is_empty() || self.categories.contains(&category)
    }

    pub fn to_proto(&self) -> pb::WebhookEndpoint {
        let status = match self.status.as_str() {
            "ENABLED" => pb::EndpointStatus::Enabled,
            "DISABLED" => pb::EndpointStatus::Disabled,
            _ => pb::EndpointStatus::DisabledFailing,
        };
        pb::WebhookEndpoint {
            webhook_endpoint_id: self.webhook_endpoint_id.to_string(),
            user_id: self.user_id.to_string(),
            url: self.url.clone(),
            description: self.description.clone(),
            categories: self.categories.iter().map(|c| i32::from(*c)).collect(),
            enabled: Some(self.enabled()),
            status: status.into(),
            disabled_reason: self.disabled_reason.clone(),
            failing_since: self.failing_since.map(wire::timestamp),
            previous_secret_expires_at: self
                .previous_secret_expires_at
                .filter(|_| self.previous_secret.is_some())
                .map(wire::timestamp),
            created_at: Some(wire::timestamp(self.created_at)),
            updated_at: Some(wire::timestamp(self.updated_at)),
        }
    }
}

/// A new Standard Webhooks secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// Stores a new endpoint; `secret` is the sealed secret (see [`crate::secrets`]).
#[allow(clippy::too_many_arguments)]
pub async fn insert(
    tx: &mut PgConnection,
    id: Uuid,
    user_id: Uuid,
    url: &str,
    description: &str,
    categories: &[i16],
    enabled: bool,
    secret: &str,
) -> Result<Endpoint, sqlx::Error> {
    sqlx::query_as!(
        Endpoint,
        "INSERT INTO webhook_endpoints (webhook_endpoint_id, user_id, url, description, categories,
            status, secret)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING webhook_endpoint_id, user_id, url, description, categories,
                status, disabled_reason, failing_since, last_error, secret, previous_secret,
                previous_secret_expires_at, created_at, updated_at",
        id,
        user_id,
        url,
        description,
        categories,
        if enabled { "ENABLED" } else { "DISABLED" },
        secret,
    )
    .fetch_one(tx)
    .await
}

pub async fn get(
    conn: &mut PgConnection,
    user_id: Uuid,
    id: Uuid,
    lock: bool,
) -> Result<Option<Endpoint>, sqlx::Error> {
    if lock {
        sqlx::query_as!(
            Endpoint,
            "SELECT webhook_endpoint_id, user_id, url, description, categories,
                status, disabled_reason, failing_since, last_error, secret, previous_secret,
                previous_secret_expires_at, created_at, updated_at
               FROM webhook_endpoints
             WHERE webhook_endpoint_id = $1 AND user_id = $2 FOR UPDATE",
            id,
            user_id,
        )
        .fetch_optional(conn)
        .await
    } else {
        sqlx::query_as!(
            Endpoint,
            "SELECT webhook_endpoint_id, user_id, url, description, categories,
                status, disabled_reason, failing_since, last_error, secret, previous_secret,
                previous_secret_expires_at, created_at, updated_at
               FROM webhook_endpoints
             WHERE webhook_endpoint_id = $1 AND user_id = $2",
            id,
            user_id,
        )
        .fetch_optional(conn)
        .await
    }
}

pub async fn by_id(conn: &mut PgConnection, id: Uuid) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as!(
        Endpoint,
        "SELECT webhook_endpoint_id, user_id, url, description, categories,
                status, disabled_reason, failing_since, last_error, secret, previous_secret,
                previous_secret_expires_at, created_at, updated_at
           FROM webhook_endpoints WHERE webhook_endpoint_id = $1",
        id,
    )
    .fetch_optional(conn)
    .await
}

pub async fn list(conn: &mut PgConnection, user_id: Uuid) -> Result<Vec<Endpoint>, sqlx::Error> {
    sqlx::query_as!(
        Endpoint,
        "SELECT webhook_endpoint_id, user_id, url, description, categories,
                status, disabled_reason, failing_since, last_error, secret, previous_secret,
                previous_secret_expires_at, created_at, updated_at
           FROM webhook_endpoints WHERE user_id = $1
         ORDER BY created_at, webhook_endpoint_id",
        user_id,
    )
    .fetch_all(conn)
    .await
}

pub async fn count(conn: &mut PgConnection, user_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM webhook_endpoints WHERE user_id = $1"#,
        user_id
    )
    .fetch_one(conn)
    .await
}

pub async fn save(tx: &mut PgConnection, e: &Endpoint) -> Result<Endpoint, sqlx::Error> {
    sqlx::query_as!(
        Endpoint,
        "UPDATE webhook_endpoints SET url = $2, description = $3, categories = $4, status = $5,
            disabled_reason = $6, failing_since = $7, last_error = $8, secret = $9,
            previous_secret = $10, previous_secret_expires_at = $11, updated_at = now()
         WHERE webhook_endpoint_id = $1
         RETURNING webhook_endpoint_id, user_id, url, description, categories,
                status, disabled_reason, failing_since, last_error, secret, previous_secret,
                previous_secret_expires_at, created_at, updated_at",
        e.webhook_endpoint_id,
        &e.url,
        &e.description,
        &e.categories,
        &e.status,
        &e.disabled_reason,
        e.failing_since,
        &e.last_error,
        &e.secret,
        e.previous_secret.as_deref(),
        e.previous_secret_expires_at,
    )
    .fetch_one(tx)
    .await
}

// === Push devices ===

/// A stored push device: the columns every query of devices returns.
#[derive(Debug, Clone)]
pub struct Device {
    pub push_device_id: Uuid,
    pub user_id: Uuid,
    pub token: String,
    pub platform: i16,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_delivered_at: Option<DateTime<Utc>>,
}

impl Device {
    pub fn to_proto(&self) -> pb::PushDevice {
        let suffix: String = {
            let chars: Vec<char> = self.token.chars().collect();
            chars[chars.len().saturating_sub(8)..].iter().collect()
        };
        pb::PushDevice {
            push_device_id: self.push_device_id.to_string(),
            user_id: self.user_id.to_string(),
            platform: i32::from(self.platform),
            name: self.name.clone(),
            token_suffix: suffix,
            created_at: Some(wire::timestamp(self.created_at)),
            last_delivered_at: self.last_delivered_at.map(wire::timestamp),
        }
    }
}

pub async fn devices(conn: &mut PgConnection, user_id: Uuid) -> Result<Vec<Device>, sqlx::Error> {
    sqlx::query_as!(
        Device,
        "SELECT push_device_id, user_id, token, platform, name, created_at, last_delivered_at
           FROM push_devices WHERE user_id = $1 ORDER BY created_at, push_device_id",
        user_id,
    )
    .fetch_all(conn)
    .await
}

pub async fn device(conn: &mut PgConnection, id: Uuid) -> Result<Option<Device>, sqlx::Error> {
    sqlx::query_as!(
        Device,
        "SELECT push_device_id, user_id, token, platform, name, created_at, last_delivered_at
           FROM push_devices WHERE push_device_id = $1",
        id,
    )
    .fetch_optional(conn)
    .await
}

pub async fn device_count(conn: &mut PgConnection, user_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM push_devices WHERE user_id = $1"#,
        user_id
    )
    .fetch_one(conn)
    .await
}

/// Seals secrets stored in the clear and rewraps data keys still under an older KEK (see
/// [`crate::secrets`]); returns how many endpoints changed. Runs at start, before serving.
pub async fn reseal_all(pool: &sqlx::PgPool, keys: &Keyring) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query!(
        "SELECT webhook_endpoint_id, secret, previous_secret FROM webhook_endpoints FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut changed = 0;
    for row in rows {
        let (id, secret, previous) = (row.webhook_endpoint_id, row.secret, row.previous_secret);
        let aad = id.as_bytes();
        let new_secret = keys.reseal(aad, &secret)?;
        let new_previous = match &previous {
            Some(p) => keys.reseal(aad, p)?,
            None => None,
        };
        if new_secret.is_none() && new_previous.is_none() {
            continue;
        }
        sqlx::query!(
            "UPDATE webhook_endpoints SET secret = $2, previous_secret = $3 WHERE webhook_endpoint_id = $1",
            id,
            new_secret.unwrap_or(secret),
            new_previous.or(previous),
        )
        .execute(&mut *tx)
        .await?;
        changed += 1;
    }
    tx.commit().await?;
    Ok(changed)
}

/// Notes a successful push to the device.
pub async fn device_delivered(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE push_devices SET last_delivered_at = now() WHERE push_device_id = $1",
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes a device (FCM no longer knows its token).
pub async fn remove_device(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM push_devices WHERE push_device_id = $1", id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes a user's device; nothing when it is not theirs.
pub async fn unregister_device(
    pool: &sqlx::PgPool,
    id: Uuid,
    user_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM push_devices WHERE push_device_id = $1 AND user_id = $2",
        id,
        user_id
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The user who holds a device token, if any.
pub async fn token_holder(tx: &mut PgConnection, token: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!("SELECT user_id FROM push_devices WHERE token = $1", token)
        .fetch_optional(tx)
        .await
}

/// Registers a device token for the user, or updates the user's own registration of it;
/// `None` when another account holds the token.
pub async fn register_device(
    tx: &mut PgConnection,
    user_id: Uuid,
    token: &str,
    platform: i16,
    name: &str,
) -> Result<Option<Device>, sqlx::Error> {
    sqlx::query_as!(
        Device,
        "INSERT INTO push_devices (push_device_id, user_id, token, platform, name)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (token) DO UPDATE SET platform = EXCLUDED.platform,
                name = CASE WHEN EXCLUDED.name = '' THEN push_devices.name ELSE EXCLUDED.name END
             WHERE push_devices.user_id = EXCLUDED.user_id
             RETURNING push_device_id, user_id, token, platform, name, created_at, last_delivered_at",
        Uuid::now_v7(),
        user_id,
        token,
        platform,
        name,
    )
    .fetch_optional(tx)
    .await
}

/// Deletes a user's endpoint; returns whether it existed.
pub async fn delete(tx: &mut PgConnection, id: Uuid, user_id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "DELETE FROM webhook_endpoints WHERE webhook_endpoint_id = $1 AND user_id = $2",
        id,
        user_id,
    )
    .execute(tx)
    .await?
    .rows_affected()
        > 0)
}

/// A delivery to the endpoint succeeded: its run of failures ends.
pub async fn record_success(tx: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE webhook_endpoints SET failing_since = NULL, last_error = ''
                 WHERE webhook_endpoint_id = $1 AND failing_since IS NOT NULL",
        id,
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// A delivery to the endpoint failed: its run of failures starts (or goes on), and once it
/// started `disable_after` ago the endpoint is DISABLED_FAILING with `reason`. Returns the
/// endpoint's id when it is (now or already) disabled for failing.
pub async fn record_failure(
    tx: &mut PgConnection,
    id: Uuid,
    error: &str,
    disable_after: std::time::Duration,
    reason: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    Ok(sqlx::query_scalar!(
            "UPDATE webhook_endpoints SET
                failing_since = coalesce(failing_since, now()), last_error = $2,
                status = CASE WHEN status = 'ENABLED'
                              AND coalesce(failing_since, now()) <= now() - make_interval(secs => $3)
                         THEN 'DISABLED_FAILING' ELSE status END,
                disabled_reason = CASE WHEN status = 'ENABLED'
                              AND coalesce(failing_since, now()) <= now() - make_interval(secs => $3)
                         THEN $4 ELSE disabled_reason END,
                updated_at = now()
             WHERE webhook_endpoint_id = $1
             RETURNING CASE WHEN status = 'DISABLED_FAILING' THEN webhook_endpoint_id END",
            id,
            error,
            disable_after.as_secs_f64(),
            reason,
        )
        .fetch_optional(tx)
        .await?
        .flatten())
}
